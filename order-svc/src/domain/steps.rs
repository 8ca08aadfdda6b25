//! The saga steps an order owes other services, pending until done.

use serde::{Deserialize, Serialize};

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
