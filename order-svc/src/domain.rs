//! Orders: the status machine and the order document. Pure, no I/O.

use serde::{Deserialize, Serialize};

use platform::events::outbox::{HasOutbox, Outbox};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    #[default]
    PendingPayment,
    Paid,
    PaymentFailed,
    Shipped,
    Delivered,
    Cancelled,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        OrderStatus::PendingPayment,
        OrderStatus::Paid,
        OrderStatus::PaymentFailed,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
        OrderStatus::Refunded,
    ];
}

/// What can happen to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderEvent {
    PaymentSucceeded,
    PaymentFailed,
    Cancel,
    Refunded,
    Shipped,
    Delivered,
}

impl OrderEvent {
    pub const ALL: [OrderEvent; 6] = [
        OrderEvent::PaymentSucceeded,
        OrderEvent::PaymentFailed,
        OrderEvent::Cancel,
        OrderEvent::Refunded,
        OrderEvent::Shipped,
        OrderEvent::Delivered,
    ];
}

/// An event that is not allowed in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransitionError {
    pub from: OrderStatus,
    pub event: OrderEvent,
}

/// The order status machine:
///
/// ```text
/// PENDING_PAYMENT --paid--> PAID --shipped--> SHIPPED --delivered--> DELIVERED
///        |   ^                |
///  failed|   |paid            +--refunded--> REFUNDED
///        v   |
/// PAYMENT_FAILED (may be paid again)
/// PENDING_PAYMENT / PAYMENT_FAILED --cancel--> CANCELLED
/// ```
pub fn transition(from: OrderStatus, event: OrderEvent) -> Result<OrderStatus, TransitionError> {
    use OrderEvent as E;
    use OrderStatus as S;
    match (from, event) {
        (S::PendingPayment | S::PaymentFailed, E::PaymentSucceeded) => Ok(S::Paid),
        (S::PendingPayment | S::PaymentFailed, E::PaymentFailed) => Ok(S::PaymentFailed),
        (S::PendingPayment | S::PaymentFailed, E::Cancel) => Ok(S::Cancelled),
        (S::Paid, E::Refunded) => Ok(S::Refunded),
        (S::Paid, E::Shipped) => Ok(S::Shipped),
        (S::Shipped, E::Delivered) => Ok(S::Delivered),
        _ => Err(TransitionError { from, event }),
    }
}

/// One priced line, prices from the catalog at order time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub product_id: String,
    pub sku: String,
    pub name: String,
    pub unit_price: i64,
    pub quantity: i64,
    pub line_total: i64,
    pub weight_grams: u32,
}

pub use platform::address::Address;

/// A stored order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Order {
    pub user_id: String,
    pub status: OrderStatus,
    pub items: Vec<Item>,
    pub currency: String,
    pub total: i64,
    pub shipping_address: Address,
    pub notes: String,
    #[serde(default)]
    pub payment_id: String,
    #[serde(default)]
    pub cancel_reason: String,
    /// Ids of events already applied (the most recent ones).
    #[serde(default)]
    pub applied_events: Vec<String>,
    /// Unix milliseconds (indexed for listing newest first).
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(default)]
    pub outbox: Outbox,
    /// Saga steps that must still happen (indexed: the relay finds them).
    #[serde(default)]
    pub steps: Steps,
    /// The payment attempt under way, recorded before the provider is
    /// called: while it is live, cancel and expiry wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_attempt: Option<Attempt>,
    /// Finished attempts (key and payment), so a retry with a key that was
    /// used gets that payment back whatever happened to the order since.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<FinishedAttempt>,
    /// While unpaid: when the order is cancelled for want of payment
    /// (Unix milliseconds, indexed); absent in every other state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Payments that succeeded for the order when it no longer took them,
    /// refunded automatically.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compensated: Vec<String>,
    /// What people should look at (a carrier that had the parcel of a
    /// refunded order, a commit that found its stock released).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attention: Vec<String>,
    /// Never placed: recorded so that an order id whose stock was given
    /// back (its creation failed half-way) cannot be placed later.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abandoned: bool,
}

/// Why an order was cancelled (`cancellation_reason`).
pub mod reason {
    pub const CUSTOMER: &str = "customer";
    pub const PAYMENT_TIMEOUT: &str = "payment_timeout";
    pub const ADMIN: &str = "admin";
}

/// A payment attempt under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub key: String,
    /// Unix milliseconds.
    pub started_at: i64,
}

/// A payment attempt that came to an end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedAttempt {
    pub key: String,
    pub payment_id: String,
}

/// How long a payment attempt keeps cancel and expiry away (ms): longer
/// than the payment call may take (its deadline is the gateway's 5 s). A
/// success reported after that, for an order cancelled meanwhile, is refunded.
pub const ATTEMPT_LIVE_MS: i64 = 15_000;

/// A step of the saga that must eventually succeed, written in the same
/// write as the state change that needs it and retried until the peer
/// confirms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    /// The order was paid: its reserved units become a sale.
    CommitStock,
    /// The order will not be sold (cancelled, expired, refunded): its
    /// units go back on sale.
    ReleaseStock,
    /// Refund `payment_id` in full, idempotently under `key`.
    Refund { payment_id: String, key: String },
    /// A paid order is being cancelled: void its shipment; if the carrier
    /// does not have it, the order becomes REFUNDED with a refund and a
    /// restock; if it does, the cancel is refused and the order ships.
    CancelPaid { reason: String },
    /// The payment was refunded in full by other means (an admin): void
    /// the shipment so that nothing ships for it.
    VoidShipment,
}

/// A step waiting to be done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingStep {
    pub id: String,
    #[serde(flatten)]
    pub step: Step,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// The order's pending steps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Steps {
    /// Number of pending steps (indexed: the relay looks for `count > 0`).
    pub count: i64,
    pub items: Vec<PendingStep>,
}

impl Steps {
    /// Adds `step` unless an equal one is already pending.
    pub fn add(&mut self, step: Step, id: String, now: i64) {
        if !self.items.iter().any(|p| p.step == step) {
            self.items.push(PendingStep {
                id,
                step,
                created_at: now,
            });
        }
        self.count = self.items.len() as i64;
    }

    /// Removes the step `id`; whether it was there.
    pub fn remove(&mut self, id: &str) -> bool {
        let before = self.items.len();
        self.items.retain(|p| p.id != id);
        self.count = self.items.len() as i64;
        before != self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.items.iter().any(|p| p.id == id)
    }

    pub fn cancelling(&self) -> bool {
        self.items
            .iter()
            .any(|p| matches!(p.step, Step::CancelPaid { .. }))
    }
}

/// Why a payment cannot start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayRefusal {
    /// The order is not awaiting payment (paid, cancelled…).
    NotPayable(OrderStatus),
    /// Another attempt (another key) is under way.
    InProgress,
    /// The time to pay has run out; the order is being cancelled.
    Expired,
}

/// Why an order cannot be cancelled now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelRefusal {
    /// A payment attempt is under way: decided when it ends.
    PaymentInProgress,
    /// Shipped or delivered.
    Shipped,
}

/// What a cancel does to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelPlan {
    /// Unpaid: CANCELLED now, stock released.
    Cancel,
    /// Paid: the shipment is voided first (a `CancelPaid` step).
    VoidThenRefund,
    /// Already cancelled or refunded, or a cancel of the paid order is under way.
    Nothing,
}

impl Order {
    pub fn is_open(&self) -> bool {
        matches!(
            self.status,
            OrderStatus::PendingPayment | OrderStatus::PaymentFailed
        )
    }

    /// The attempt under way at `now`, if any.
    pub fn live_attempt(&self, now: i64) -> Option<&Attempt> {
        self.payment_attempt
            .as_ref()
            .filter(|a| now - a.started_at < ATTEMPT_LIVE_MS)
    }

    /// The payment a finished attempt with `key` made.
    pub fn finished_attempt(&self, key: &str) -> Option<&FinishedAttempt> {
        self.attempts.iter().find(|a| a.key == key)
    }

    /// Records a payment attempt under `key`. A retry of the attempt under
    /// way (same key) goes ahead: the payment service makes it once.
    pub fn begin_payment(&mut self, key: &str, now: i64) -> Result<(), PayRefusal> {
        if !self.is_open() {
            return Err(PayRefusal::NotPayable(self.status));
        }
        match self.live_attempt(now) {
            Some(a) if a.key == key => return Ok(()),
            Some(_) => return Err(PayRefusal::InProgress),
            None => {}
        }
        if self.expires_at.is_some_and(|t| t <= now) {
            return Err(PayRefusal::Expired);
        }
        self.payment_attempt = Some(Attempt {
            key: key.to_string(),
            started_at: now,
        });
        Ok(())
    }

    /// Ends the attempt under `key` (if it is the current one) with `payment_id`.
    pub fn end_payment(&mut self, key: &str, payment_id: &str) {
        if self.payment_attempt.as_ref().is_some_and(|a| a.key == key) {
            self.payment_attempt = None;
        }
        if !key.is_empty() && self.finished_attempt(key).is_none() {
            self.attempts.push(FinishedAttempt {
                key: key.to_string(),
                payment_id: payment_id.to_string(),
            });
            if self.attempts.len() > 20 {
                self.attempts.remove(0);
            }
        }
    }

    /// What a cancel does now.
    pub fn plan_cancel(&self, now: i64) -> Result<CancelPlan, CancelRefusal> {
        match self.status {
            OrderStatus::Cancelled | OrderStatus::Refunded => Ok(CancelPlan::Nothing),
            OrderStatus::Shipped | OrderStatus::Delivered => Err(CancelRefusal::Shipped),
            OrderStatus::PendingPayment | OrderStatus::PaymentFailed => {
                if self.live_attempt(now).is_some() {
                    Err(CancelRefusal::PaymentInProgress)
                } else {
                    Ok(CancelPlan::Cancel)
                }
            }
            OrderStatus::Paid if self.steps.cancelling() => Ok(CancelPlan::Nothing),
            OrderStatus::Paid => Ok(CancelPlan::VoidThenRefund),
        }
    }

    /// Whether the order should be cancelled for want of payment at `now`.
    pub fn is_expired(&self, now: i64) -> bool {
        self.is_open()
            && self.expires_at.is_some_and(|t| t <= now)
            && self.live_attempt(now).is_none()
    }

    /// The record of an order id that was never placed (see `abandoned`).
    pub fn tombstone(now: i64) -> Order {
        Order {
            status: OrderStatus::Cancelled,
            cancel_reason: "abandoned".into(),
            created_at: now,
            updated_at: now,
            abandoned: true,
            ..Order::default()
        }
    }

    /// Leaves the open states: no more expiry, no attempt under way.
    pub fn close(&mut self) {
        self.expires_at = None;
        self.payment_attempt = None;
    }
}

impl HasOutbox for Order {
    fn outbox(&self) -> &Outbox {
        &self.outbox
    }
    fn outbox_mut(&mut self) -> &mut Outbox {
        &mut self.outbox
    }
}

impl Order {
    /// Applies `event` once: an event id seen before changes nothing.
    pub fn apply(
        &mut self,
        event: OrderEvent,
        event_id: Option<&str>,
    ) -> Result<bool, TransitionError> {
        if let Some(id) = event_id
            && self.applied_events.iter().any(|e| e == id)
        {
            return Ok(false);
        }
        self.status = transition(self.status, event)?;
        if let Some(id) = event_id {
            self.applied_events.push(id.to_string());
            if self.applied_events.len() > 50 {
                self.applied_events.remove(0);
            }
        }
        Ok(true)
    }
}

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Checks the shape of an order request: 1 to 50 lines, quantities 1 to
/// `max_units` (at most 1000), a complete address, notes of at most 1000
/// characters.
pub fn validate_request(
    lines: &[(String, u32)],
    address: Option<&Address>,
    notes: &str,
    max_units: u32,
) -> Result<Address, Vec<FieldError>> {
    let max_units = max_units.clamp(1, 1000);
    let mut errors = Vec::new();
    let mut push = |field: String, message: &str| {
        errors.push(FieldError {
            field,
            message: message.to_string(),
        })
    };
    if lines.is_empty() {
        push("items".into(), "at least one item is required");
    } else if lines.len() > 50 {
        push("items".into(), "at most 50 items");
    }
    for (i, (product_id, quantity)) in lines.iter().enumerate() {
        if product_id.trim().is_empty() {
            push(format!("items[{i}].product_id"), "is required");
        }
        if !(1..=max_units).contains(quantity) {
            push(
                format!("items[{i}].quantity"),
                &format!("must be 1 to {max_units}"),
            );
        }
    }
    let mut address = address.cloned().unwrap_or_default();
    for (field, value) in [
        ("name", &address.name),
        ("line1", &address.line1),
        ("city", &address.city),
        ("postal_code", &address.postal_code),
    ] {
        if value.trim().is_empty() {
            push(format!("shipping_address.{field}"), "is required");
        } else if value.chars().count() > 200 {
            push(format!("shipping_address.{field}"), "is too long");
        }
    }
    address.country = address.country.trim().to_ascii_uppercase();
    if address.country.len() != 2 || !address.country.chars().all(|c| c.is_ascii_uppercase()) {
        push(
            "shipping_address.country".into(),
            "must be a two-letter ISO 3166-1 code",
        );
    }
    if notes.chars().count() > 1000 {
        push("notes".into(), "must be at most 1000 characters");
    }
    if errors.is_empty() {
        Ok(address)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::OrderEvent as E;
    use super::OrderStatus as S;
    use super::*;

    #[test]
    fn every_allowed_transition() {
        let allowed = [
            (S::PendingPayment, E::PaymentSucceeded, S::Paid),
            (S::PendingPayment, E::PaymentFailed, S::PaymentFailed),
            (S::PendingPayment, E::Cancel, S::Cancelled),
            (S::PaymentFailed, E::PaymentSucceeded, S::Paid),
            (S::PaymentFailed, E::PaymentFailed, S::PaymentFailed),
            (S::PaymentFailed, E::Cancel, S::Cancelled),
            (S::Paid, E::Refunded, S::Refunded),
            (S::Paid, E::Shipped, S::Shipped),
            (S::Shipped, E::Delivered, S::Delivered),
        ];
        for (from, event, to) in allowed {
            assert_eq!(transition(from, event), Ok(to), "{from:?} + {event:?}");
        }
        // Every other pair is forbidden.
        let mut forbidden = 0;
        for from in S::ALL {
            for event in E::ALL {
                if !allowed.iter().any(|(f, e, _)| *f == from && *e == event) {
                    assert_eq!(
                        transition(from, event),
                        Err(TransitionError { from, event }),
                        "{from:?} + {event:?}"
                    );
                    forbidden += 1;
                }
            }
        }
        assert_eq!(forbidden, 7 * 6 - allowed.len());
    }

    #[test]
    fn terminal_states_accept_nothing() {
        for from in [S::Delivered, S::Cancelled, S::Refunded] {
            for event in E::ALL {
                assert!(transition(from, event).is_err(), "{from:?} + {event:?}");
            }
        }
    }

    fn open_order(expires_at: i64) -> Order {
        let mut order = sample();
        order.expires_at = Some(expires_at);
        order
    }

    #[test]
    fn a_payment_attempt_excludes_cancel_and_expiry_while_it_is_live() {
        let mut order = open_order(10_000);
        assert_eq!(order.plan_cancel(0), Ok(CancelPlan::Cancel));
        order.begin_payment("k1", 1_000).unwrap();
        assert_eq!(
            order.plan_cancel(2_000),
            Err(CancelRefusal::PaymentInProgress)
        );
        assert!(
            !order.is_expired(15_000),
            "past its time, but the attempt is live"
        );
        assert_eq!(
            order.begin_payment("k2", 2_000),
            Err(PayRefusal::InProgress)
        );
        assert_eq!(
            order.begin_payment("k1", 2_000),
            Ok(()),
            "a retry of the same attempt"
        );
        // Once the attempt is stale, cancel and expiry go ahead; a late
        // success is then compensated by the caller.
        let stale = 1_000 + ATTEMPT_LIVE_MS;
        assert_eq!(order.plan_cancel(stale), Ok(CancelPlan::Cancel));
        assert!(order.is_expired(stale));
    }

    #[test]
    fn a_cancelled_or_expired_order_takes_no_payment() {
        let mut order = open_order(10_000);
        assert_eq!(order.begin_payment("k", 10_000), Err(PayRefusal::Expired));
        order.status = S::Cancelled;
        assert_eq!(
            order.begin_payment("k", 0),
            Err(PayRefusal::NotPayable(S::Cancelled))
        );
        order.status = S::Paid;
        assert_eq!(
            order.begin_payment("k", 0),
            Err(PayRefusal::NotPayable(S::Paid))
        );
    }

    #[test]
    fn finished_attempts_are_remembered_for_replays() {
        let mut order = open_order(10_000);
        order.begin_payment("k1", 0).unwrap();
        order.end_payment("k1", "p1");
        assert!(order.payment_attempt.is_none());
        assert_eq!(order.finished_attempt("k1").unwrap().payment_id, "p1");
        assert!(order.finished_attempt("k2").is_none());
        order.end_payment("k1", "p2");
        assert_eq!(
            order.finished_attempt("k1").unwrap().payment_id,
            "p1",
            "the first answer stays"
        );
    }

    #[test]
    fn cancel_plans_by_state() {
        let mut order = open_order(10_000);
        for (status, plan) in [
            (S::PendingPayment, Ok(CancelPlan::Cancel)),
            (S::PaymentFailed, Ok(CancelPlan::Cancel)),
            (S::Paid, Ok(CancelPlan::VoidThenRefund)),
            (S::Shipped, Err(CancelRefusal::Shipped)),
            (S::Delivered, Err(CancelRefusal::Shipped)),
            (S::Cancelled, Ok(CancelPlan::Nothing)),
            (S::Refunded, Ok(CancelPlan::Nothing)),
        ] {
            order.status = status;
            assert_eq!(order.plan_cancel(0), plan, "{status:?}");
        }
        order.status = S::Paid;
        order.steps.add(
            Step::CancelPaid {
                reason: reason::CUSTOMER.into(),
            },
            "s1".into(),
            0,
        );
        assert_eq!(
            order.plan_cancel(0),
            Ok(CancelPlan::Nothing),
            "already under way"
        );
    }

    #[test]
    fn steps_are_added_once_and_removed_by_id() {
        let mut steps = Steps::default();
        steps.add(Step::CommitStock, "a".into(), 0);
        steps.add(Step::CommitStock, "b".into(), 1);
        assert_eq!(steps.count, 1, "an equal step is already pending");
        steps.add(Step::ReleaseStock, "c".into(), 2);
        assert_eq!(steps.count, 2);
        assert!(steps.remove("a") && !steps.remove("a"));
        assert_eq!(steps.count, 1);
        assert!(steps.contains("c") && !steps.is_empty());
        let json = serde_json::to_value(&steps).unwrap();
        assert_eq!(json["items"][0]["kind"], "release_stock");
        assert_eq!(serde_json::from_value::<Steps>(json).unwrap(), steps);
    }

    fn sample() -> Order {
        Order {
            user_id: "u".into(),
            currency: "USD".into(),
            total: 100,
            ..Order::default()
        }
    }

    #[test]
    fn an_event_id_applies_once() {
        let mut order = sample();
        assert_eq!(order.apply(E::PaymentFailed, Some("ev1")), Ok(true));
        assert_eq!(order.apply(E::PaymentFailed, Some("ev1")), Ok(false));
        assert_eq!(order.apply(E::PaymentSucceeded, Some("ev2")), Ok(true));
        assert_eq!(order.status, S::Paid);
        assert!(order.apply(E::Cancel, Some("ev3")).is_err());
    }

    #[test]
    fn requests_are_validated() {
        let address = Address {
            name: "A".into(),
            line1: "1 St".into(),
            city: "X".into(),
            postal_code: "1".into(),
            country: "us".into(),
            ..Default::default()
        };
        assert_eq!(
            validate_request(&[("p".into(), 1)], Some(&address), "", 1000)
                .unwrap()
                .country,
            "US"
        );
        let errors = validate_request(&[], None, &"x".repeat(1001), 1000).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "items",
                "shipping_address.name",
                "shipping_address.line1",
                "shipping_address.city",
                "shipping_address.postal_code",
                "shipping_address.country",
                "notes"
            ]
        );
        let errors = validate_request(
            &[("p".into(), 0), ("".into(), 1001)],
            Some(&address),
            "",
            1000,
        )
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "items[0].quantity",
                "items[1].product_id",
                "items[1].quantity"
            ]
        );
        assert!(
            validate_request(&vec![("p".to_string(), 1); 51], Some(&address), "", 1000).is_err()
        );
    }
}
