//! Orders: the status machine and the order document. Pure, no I/O.

mod request;
mod settle;
mod steps;
#[cfg(test)]
mod tests;

pub use request::{FieldError, Line, validate_request};
pub use settle::{Settled, Success};
pub use steps::{PendingStep, Step, Steps};

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
    /// The product's category at order time (empty in orders stored
    /// before lines kept it).
    #[serde(default)]
    pub category: String,
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
pub use proto::ext::cancel_reason as reason;

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
