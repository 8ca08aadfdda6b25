//! Pure rules of notification delivery: which outside channels a kind of
//! notification uses, how retries are spaced, and the states a delivery
//! goes through. No I/O here.

use std::time::Duration;

use proto::notification::{Channel as ChannelKind, DeliveryState};
use proto::shipping::ShipmentStatus;

/// An outside channel (the in-app feed is always used and not listed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    Email,
    Sms,
    Push,
}

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Via::Email => "email",
            Via::Sms => "sms",
            Via::Push => "push",
        }
    }

    pub fn parse(name: &str) -> Option<Via> {
        [Via::Email, Via::Sms, Via::Push]
            .into_iter()
            .find(|v| v.name() == name)
    }

    pub fn proto(self) -> ChannelKind {
        match self {
            Via::Email => ChannelKind::Email,
            Via::Sms => ChannelKind::Sms,
            Via::Push => ChannelKind::Push,
        }
    }

    pub fn from_proto(kind: ChannelKind) -> Option<Via> {
        match kind {
            ChannelKind::Email => Some(Via::Email),
            ChannelKind::Sms => Some(Via::Sms),
            ChannelKind::Push => Some(Via::Push),
            ChannelKind::InApp | ChannelKind::Unspecified => None,
        }
    }
}

use Via::{Email, Push, Sms};

/// The outside channels a user's notification of `kind` goes out on. SMS
/// costs money and interrupts, so only what needs attention now uses it:
/// a failed payment and a parcel out for delivery.
pub fn channels_for(kind: &str, shipment: Option<ShipmentStatus>) -> &'static [Via] {
    match (kind, shipment) {
        ("user.registered", _) => &[Email],
        ("order.created", _) | ("payment.processed", _) => &[Email, Push],
        ("payment.failed", _) => &[Email, Sms, Push],
        ("payment.refunded", _) | ("order.cancelled", _) => &[Email],
        ("shipping.updated", Some(ShipmentStatus::OutForDelivery)) => &[Sms, Push],
        ("shipping.updated", Some(ShipmentStatus::LabelCreated)) => &[Push],
        ("shipping.updated", Some(_)) => &[Email, Push],
        _ => &[],
    }
}

/// Delay before attempt `attempts + 1` after `attempts` failed ones:
/// exponential from `base`, capped at an hour, with `jitter` (0..1) taking
/// up to half of it off so retries of many deliveries spread out.
pub fn retry_delay(attempts: u32, base: Duration, jitter: f64) -> Duration {
    let exponent = attempts.saturating_sub(1).min(20);
    let full = base
        .saturating_mul(1u32 << exponent)
        .min(Duration::from_secs(3600));
    full.mul_f64(1.0 - 0.5 * jitter.clamp(0.0, 1.0))
}

/// Where a delivery stands, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Sent,
    Failed,
    Skipped,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Sent => "sent",
            State::Failed => "failed",
            State::Skipped => "skipped",
        }
    }

    pub fn parse(name: &str) -> State {
        match name {
            "sent" => State::Sent,
            "failed" => State::Failed,
            "skipped" => State::Skipped,
            _ => State::Pending,
        }
    }

    pub fn proto(self) -> DeliveryState {
        match self {
            State::Pending => DeliveryState::Pending,
            State::Sent => DeliveryState::Sent,
            State::Failed => DeliveryState::Failed,
            State::Skipped => DeliveryState::Skipped,
        }
    }
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// The user cannot receive it over this channel.
    Skipped(String),
    Retryable(String),
    Permanent(String),
}

/// The state after an attempt (the `attempts`-th) ended with `outcome`.
pub fn after_attempt(outcome: &Outcome, attempts: u32, max_attempts: u32) -> State {
    match outcome {
        Outcome::Sent => State::Sent,
        Outcome::Skipped(_) => State::Skipped,
        Outcome::Retryable(_) if attempts < max_attempts => State::Pending,
        Outcome::Retryable(_) | Outcome::Permanent(_) => State::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_event_kind_has_channels_and_sms_is_kept_for_urgent_ones() {
        for kind in [
            "user.registered",
            "order.created",
            "payment.processed",
            "payment.failed",
            "payment.refunded",
        ] {
            assert!(channels_for(kind, None).contains(&Email), "{kind}");
        }
        assert!(channels_for("payment.failed", None).contains(&Sms));
        assert!(!channels_for("order.created", None).contains(&Sms));
        assert_eq!(
            channels_for("shipping.updated", Some(ShipmentStatus::OutForDelivery)),
            &[Sms, Push]
        );
        assert_eq!(
            channels_for("shipping.updated", Some(ShipmentStatus::Delivered)),
            &[Email, Push]
        );
        assert!(channels_for("inventory.low", None).is_empty());
        assert!(channels_for("message", None).is_empty());
    }

    #[test]
    fn retries_back_off_exponentially_with_a_cap_and_jitter() {
        let base = Duration::from_secs(2);
        assert_eq!(retry_delay(1, base, 0.0), Duration::from_secs(2));
        assert_eq!(retry_delay(2, base, 0.0), Duration::from_secs(4));
        assert_eq!(retry_delay(5, base, 0.0), Duration::from_secs(32));
        assert_eq!(retry_delay(30, base, 0.0), Duration::from_secs(3600));
        assert_eq!(retry_delay(3, base, 1.0), Duration::from_secs(4));
        assert_eq!(retry_delay(3, base, 7.0), Duration::from_secs(4));
        assert_eq!(retry_delay(0, base, 0.0), Duration::from_secs(2));
    }

    #[test]
    fn attempts_end_in_the_right_state() {
        let retry = Outcome::Retryable("503".into());
        assert_eq!(after_attempt(&Outcome::Sent, 1, 3), State::Sent);
        assert_eq!(after_attempt(&retry, 1, 3), State::Pending);
        assert_eq!(after_attempt(&retry, 3, 3), State::Failed);
        assert_eq!(
            after_attempt(&Outcome::Permanent("550".into()), 1, 3),
            State::Failed
        );
        assert_eq!(
            after_attempt(&Outcome::Skipped("no phone".into()), 1, 3),
            State::Skipped
        );
        for s in [State::Pending, State::Sent, State::Failed, State::Skipped] {
            assert_eq!(State::parse(s.name()), s);
        }
        for v in [Email, Sms, Push] {
            assert_eq!(Via::parse(v.name()), Some(v));
            assert_eq!(Via::from_proto(v.proto()), Some(v));
        }
    }
}
