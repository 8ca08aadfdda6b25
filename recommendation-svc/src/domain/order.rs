//! Orders folded from their events: every flag only ever goes from false
//! to true, so events may arrive in any order, any number of times.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub product_id: String,
    pub quantity: u32,
}

/// What the log knows about one order, folded from its events. Every flag
/// only ever goes from false to true, so applying the same events in any
/// order, any number of times, gives the same record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    /// Empty until an event naming the buyer arrives.
    #[serde(default)]
    pub user_id: String,
    /// From `order.created` (empty before it arrives).
    #[serde(default)]
    pub lines: Vec<Line>,
    /// Unix seconds the order was placed (0 before `order.created`).
    #[serde(default)]
    pub placed_at: i64,
    #[serde(default)]
    pub created: bool,
    /// `payment.processed` seen.
    #[serde(default)]
    pub paid: bool,
    /// `order.cancelled` seen: a tombstone that wins over anything later.
    #[serde(default)]
    pub cancelled: bool,
    /// `payment.refunded` with the payment refunded in full.
    #[serde(default)]
    pub refunded: bool,
}

/// An event about an order, reduced to what the log needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderFact {
    Created {
        user_id: String,
        lines: Vec<Line>,
        placed_at: i64,
    },
    Paid {
        user_id: String,
    },
    Cancelled {
        user_id: String,
    },
    Refunded {
        user_id: String,
        fully: bool,
    },
}

impl OrderRecord {
    /// Folds one fact in. Returns whether anything changed.
    pub fn apply(&mut self, fact: &OrderFact) -> bool {
        let before = self.clone();
        let user = match fact {
            OrderFact::Created {
                user_id,
                lines,
                placed_at,
            } => {
                self.created = true;
                self.lines = merge_lines(lines);
                self.placed_at = *placed_at;
                user_id
            }
            OrderFact::Paid { user_id } => {
                self.paid = true;
                user_id
            }
            OrderFact::Cancelled { user_id } => {
                self.cancelled = true;
                user_id
            }
            OrderFact::Refunded { user_id, fully } => {
                self.refunded |= *fully;
                user_id
            }
        };
        if self.user_id.is_empty() {
            self.user_id = user.clone();
        }
        *self != before
    }

    /// The order counts as a purchase of its lines: placed, paid, and
    /// neither cancelled nor refunded in full.
    pub fn is_purchase(&self) -> bool {
        self.created && self.paid && !self.cancelled && !self.refunded
    }
}

/// Lines with the same product added together, sorted by product.
fn merge_lines(lines: &[Line]) -> Vec<Line> {
    let mut by_product: BTreeMap<&str, u32> = BTreeMap::new();
    for line in lines {
        *by_product.entry(&line.product_id).or_default() += line.quantity;
    }
    by_product
        .into_iter()
        .map(|(product_id, quantity)| Line {
            product_id: product_id.to_string(),
            quantity,
        })
        .collect()
}
