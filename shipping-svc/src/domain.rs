//! Shipments: forward-only status, pure rules, no I/O.

use serde::{Deserialize, Serialize};

use platform::events::outbox::{HasOutbox, Outbox};

/// Shipment states, in the order a parcel goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Prepared from the order; waiting for payment.
    Pending,
    LabelCreated,
    InTransit,
    OutForDelivery,
    Delivered,
    /// The order was cancelled before shipping.
    Cancelled,
}

/// What an update does to a shipment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// The shipment moves forward.
    Advance,
    /// Already there or past it (a replay or an out-of-order update): ignored.
    Ignore,
    /// Not possible (cancelled, or a label is needed first).
    Refuse,
}

/// Decides an update: shipments only ever move forward.
pub fn decide(current: Status, next: Status) -> Update {
    match (current, next) {
        (Status::Cancelled, _) => Update::Refuse,
        (_, Status::Cancelled) if current >= Status::InTransit => Update::Refuse,
        (_, Status::Cancelled) => Update::Advance,
        (Status::Pending, s) if s > Status::LabelCreated => Update::Refuse,
        (c, n) if n > c => Update::Advance,
        _ => Update::Ignore,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackingEvent {
    pub status: Status,
    /// Unix seconds.
    pub at: i64,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub description: String,
}

pub use platform::address::Address;

/// A stored shipment (one per order).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shipment {
    pub order_id: String,
    pub user_id: String,
    pub status: Status,
    #[serde(default)]
    pub carrier: String,
    #[serde(default)]
    pub service: String,
    /// Set with the label; unique.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    pub address: Address,
    pub weight_grams: u32,
    pub events: Vec<TrackingEvent>,
    pub created_at: i64,
    pub updated_at: i64,
    /// While a label is being bought (Unix seconds): a void waits for it,
    /// so no label is ever bought for a voided shipment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_pending_since: Option<i64>,
    /// Carrier updates received after the shipment was voided: kept for
    /// people to look at, never applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flagged_updates: Vec<TrackingEvent>,
    #[serde(default)]
    pub outbox: Outbox,
}

/// How long a label purchase may run before another may take it over
/// (seconds): longer than the carrier call's timeout.
pub const LABEL_PURCHASE_SECS: i64 = 30;

/// How long after a payment shipping-svc waits for order-svc to record it
/// before it concludes the order was not paid by it (seconds). order-svc
/// records a payment within a second normally, and after an outage of its
/// own as soon as it is back (shipping-svc waits out that outage apart).
pub const PAYMENT_RECORDED_SECS: i64 = 600;

/// What voiding does to a shipment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Void {
    /// It becomes CANCELLED now.
    Cancel,
    /// Already cancelled.
    AlreadyVoid,
    /// A label is being bought: wait for it, then void.
    Wait,
    /// The carrier has the parcel: too late.
    TooLate,
}

/// Whether a shipment in `status` can be voided at `now`.
pub fn decide_void(status: Status, label_pending_since: Option<i64>, now: i64) -> Void {
    match status {
        Status::Cancelled => Void::AlreadyVoid,
        Status::InTransit | Status::OutForDelivery | Status::Delivered => Void::TooLate,
        Status::Pending if label_pending_since.is_some_and(|t| now - t < LABEL_PURCHASE_SECS) => {
            Void::Wait
        }
        Status::Pending | Status::LabelCreated => Void::Cancel,
    }
}

impl HasOutbox for Shipment {
    fn outbox(&self) -> &Outbox {
        &self.outbox
    }
    fn outbox_mut(&mut self) -> &mut Outbox {
        &mut self.outbox
    }
}

/// A shipping rate for a destination and weight: a base per zone plus a
/// price per started kilogram, in cents.
pub fn rates(country: &str, weight_grams: u32) -> Vec<(&'static str, &'static str, i64, u32)> {
    let kilos = i64::from(weight_grams.div_ceil(1000).max(1));
    let domestic = country.eq_ignore_ascii_case("US");
    let (base, per_kg, days) = if domestic {
        (499, 150, 5)
    } else {
        (1499, 450, 10)
    };
    vec![
        ("shopmesh-post", "standard", base + per_kg * kilos, days),
        (
            "shopmesh-post",
            "express",
            (base + per_kg * kilos) * 2,
            days.div_ceil(3),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::Status::*;
    use super::*;

    #[test]
    fn voiding_is_possible_only_before_the_carrier_has_the_parcel() {
        assert_eq!(decide_void(Pending, None, 100), Void::Cancel);
        assert_eq!(decide_void(LabelCreated, None, 100), Void::Cancel);
        assert_eq!(decide_void(Cancelled, None, 100), Void::AlreadyVoid);
        for moving in [InTransit, OutForDelivery, Delivered] {
            assert_eq!(decide_void(moving, None, 100), Void::TooLate, "{moving:?}");
        }
        assert_eq!(
            decide_void(Pending, Some(90), 100),
            Void::Wait,
            "a label is being bought"
        );
        assert_eq!(
            decide_void(Pending, Some(100 - LABEL_PURCHASE_SECS), 100),
            Void::Cancel,
            "a purchase that never finished does not block forever"
        );
    }

    #[test]
    fn shipments_only_move_forward() {
        assert_eq!(decide(Pending, LabelCreated), Update::Advance);
        assert_eq!(decide(LabelCreated, InTransit), Update::Advance);
        assert_eq!(
            decide(InTransit, Delivered),
            Update::Advance,
            "steps may be skipped"
        );
        assert_eq!(
            decide(OutForDelivery, InTransit),
            Update::Ignore,
            "never backwards"
        );
        assert_eq!(
            decide(Delivered, Delivered),
            Update::Ignore,
            "replays change nothing"
        );
        assert_eq!(
            decide(Pending, InTransit),
            Update::Refuse,
            "no movement before a label"
        );
        assert_eq!(decide(Pending, Cancelled), Update::Advance);
        assert_eq!(decide(LabelCreated, Cancelled), Update::Advance);
        assert_eq!(
            decide(InTransit, Cancelled),
            Update::Refuse,
            "too late to cancel"
        );
        assert_eq!(decide(Cancelled, InTransit), Update::Refuse);
    }

    #[test]
    fn rates_grow_with_weight_and_distance() {
        let light = rates("US", 500);
        let heavy = rates("US", 2500);
        let abroad = rates("FR", 500);
        assert_eq!(light[0].2, 499 + 150);
        assert_eq!(heavy[0].2, 499 + 150 * 3);
        assert!(abroad[0].2 > light[0].2);
        assert!(
            light[1].2 > light[0].2 && light[1].3 < light[0].3,
            "express costs more, arrives sooner"
        );
    }
}
