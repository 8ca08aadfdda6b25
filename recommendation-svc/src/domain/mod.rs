//! Pure types and rules of the interaction log: what counts as a purchase,
//! how events fold into an order's record whatever order they arrive in,
//! and what a request may ask for. No I/O.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Largest `limit` a request may ask for.
pub const MAX_LIMIT: u32 = 100;
/// `limit` when a request leaves it at 0.
pub const DEFAULT_LIMIT: u32 = 10;
/// Most categories a user may prefer.
pub const MAX_PREFERRED_CATEGORIES: usize = 20;
/// Longest category name.
pub const MAX_CATEGORY_LEN: usize = 64;
/// Ratings at or above this count as liking the product (an interaction);
/// at or below [`DISLIKED_RATING`] they take a purchase back out.
pub const LIKED_RATING: u32 = 4;
pub const DISLIKED_RATING: u32 = 2;

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    #[error("limit must be between 1 and {MAX_LIMIT}")]
    Limit,
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{field}: {reason}")]
    Field { field: &'static str, reason: String },
}

/// A request's `limit`: 0 means the default, above [`MAX_LIMIT`] is refused.
pub fn limit(requested: u32) -> Result<usize, InvalidRequest> {
    match requested {
        0 => Ok(DEFAULT_LIMIT as usize),
        n if n <= MAX_LIMIT => Ok(n as usize),
        _ => Err(InvalidRequest::Limit),
    }
}

/// An id as events and requests carry it: non-empty, printable, bounded.
pub fn id(field: &'static str, value: &str) -> Result<String, InvalidRequest> {
    let value = value.trim();
    if value.is_empty() {
        return Err(InvalidRequest::Missing(field));
    }
    if value.len() > 128 || value.chars().any(char::is_control) {
        return Err(InvalidRequest::Field {
            field,
            reason: "must be 1..=128 printable characters".into(),
        });
    }
    Ok(value.to_string())
}

/// Category names are compared case-insensitively and stored lower case.
pub fn category(value: &str) -> Result<String, InvalidRequest> {
    let value = value.trim().to_lowercase();
    if value.is_empty()
        || value.chars().count() > MAX_CATEGORY_LEN
        || value.chars().any(char::is_control)
    {
        return Err(InvalidRequest::Field {
            field: "categories",
            reason: format!("a category is 1..={MAX_CATEGORY_LEN} printable characters"),
        });
    }
    Ok(value)
}

/// Stated preferences: normalised, deduplicated, in the order given.
pub fn preferences(categories: &[String]) -> Result<Vec<String>, InvalidRequest> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for c in categories {
        let c = category(c)?;
        if seen.insert(c.clone()) {
            out.push(c);
        }
    }
    if out.len() > MAX_PREFERRED_CATEGORIES {
        return Err(InvalidRequest::Field {
            field: "categories",
            reason: format!("at most {MAX_PREFERRED_CATEGORIES} categories"),
        });
    }
    Ok(out)
}

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

/// A purchase imported from another system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedPurchase {
    pub product_id: String,
    pub quantity: u32,
    /// Unix seconds.
    pub at: i64,
}

/// A rating, from a review or an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rating {
    pub rating: u32,
    /// Unix seconds; the latest rating of a product wins.
    pub at: i64,
}

/// Per-user part of the log: preferences, ratings and imported history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default)]
    pub categories: Vec<String>,
    /// Product id -> latest rating.
    #[serde(default)]
    pub ratings: BTreeMap<String, Rating>,
    /// Sorted by (product, at); one entry per product and instant.
    #[serde(default)]
    pub imported: Vec<ImportedPurchase>,
    /// Product id -> category, as imports told.
    #[serde(default)]
    pub imported_categories: BTreeMap<String, String>,
}

impl Profile {
    /// Records a rating unless a later one of the same product is known.
    pub fn rate(&mut self, product_id: &str, rating: Rating) -> bool {
        match self.ratings.get(product_id) {
            Some(existing) if existing.at > rating.at => false,
            Some(existing) if *existing == rating => false,
            _ => {
                self.ratings.insert(product_id.to_string(), rating);
                true
            }
        }
    }

    /// Adds imported purchases; the same product at the same instant is
    /// stored once, so importing a file twice changes nothing.
    pub fn import(&mut self, purchases: impl IntoIterator<Item = ImportedPurchase>) {
        self.imported.extend(purchases);
        self.imported
            .sort_by(|a, b| (&a.product_id, a.at).cmp(&(&b.product_id, b.at)));
        self.imported
            .dedup_by(|a, b| a.product_id == b.product_id && a.at == b.at);
    }
}

/// A user's history as the models read it: the products they showed
/// interest in (bought, or rated well), with the latest instant, minus
/// what they rated badly.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Product id -> latest interaction (unix seconds).
    pub items: BTreeMap<String, i64>,
    /// Everything the user bought (never recommended back).
    pub bought: BTreeSet<String>,
}

impl History {
    /// Builds the history from the user's orders and profile.
    pub fn build<'a>(orders: impl IntoIterator<Item = &'a OrderRecord>, profile: &Profile) -> Self {
        let mut history = History::default();
        let add = |h: &mut History, product: &str, at: i64, bought: bool| {
            let entry = h.items.entry(product.to_string()).or_insert(at);
            *entry = (*entry).max(at);
            if bought {
                h.bought.insert(product.to_string());
            }
        };
        for order in orders.into_iter().filter(|o| o.is_purchase()) {
            for line in &order.lines {
                add(&mut history, &line.product_id, order.placed_at, true);
            }
        }
        for p in &profile.imported {
            add(&mut history, &p.product_id, p.at, true);
        }
        for (product, r) in &profile.ratings {
            if r.rating >= LIKED_RATING {
                add(&mut history, product, r.at, false);
            } else if r.rating <= DISLIKED_RATING {
                history.items.remove(product);
            }
        }
        history
    }
}

/// Why an item is recommended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    BoughtWith(String),
    Popular,
    PreferredCategory(String),
    SameCategory(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created() -> OrderFact {
        OrderFact::Created {
            user_id: "u".into(),
            lines: vec![
                Line {
                    product_id: "b".into(),
                    quantity: 1,
                },
                Line {
                    product_id: "a".into(),
                    quantity: 2,
                },
                Line {
                    product_id: "b".into(),
                    quantity: 3,
                },
            ],
            placed_at: 100,
        }
    }

    fn paid() -> OrderFact {
        OrderFact::Paid {
            user_id: "u".into(),
        }
    }

    fn fold(facts: &[OrderFact]) -> OrderRecord {
        let mut r = OrderRecord::default();
        for f in facts {
            r.apply(f);
        }
        r
    }

    #[test]
    fn a_paid_order_is_a_purchase_whatever_the_order_of_its_events() {
        let a = fold(&[created(), paid()]);
        let b = fold(&[paid(), created(), paid()]);
        assert_eq!(a, b);
        assert!(a.is_purchase());
        assert_eq!(a.lines.len(), 2, "lines of one product are merged");
        assert_eq!(a.lines[1].quantity, 4);
        assert!(!fold(&[created()]).is_purchase(), "unpaid is no purchase");
    }

    #[test]
    fn cancellation_and_full_refund_take_the_purchase_back_in_any_order() {
        let cancel = OrderFact::Cancelled {
            user_id: "u".into(),
        };
        assert!(!fold(&[cancel.clone(), created(), paid()]).is_purchase());
        assert!(!fold(&[created(), paid(), cancel]).is_purchase());
        let full = OrderFact::Refunded {
            user_id: "u".into(),
            fully: true,
        };
        let partial = OrderFact::Refunded {
            user_id: "u".into(),
            fully: false,
        };
        assert!(!fold(&[full.clone(), paid(), created()]).is_purchase());
        assert!(fold(&[created(), paid(), partial.clone()]).is_purchase());
        assert!(!fold(&[created(), partial, paid(), full]).is_purchase());
    }

    #[test]
    fn applying_a_fact_twice_changes_nothing_the_second_time() {
        let mut r = OrderRecord::default();
        assert!(r.apply(&created()));
        assert!(!r.apply(&created()));
        assert!(r.apply(&paid()));
        assert!(!r.apply(&paid()));
    }

    #[test]
    fn limits_outside_the_range_are_refused() {
        assert_eq!(limit(0), Ok(10));
        assert_eq!(limit(1), Ok(1));
        assert_eq!(limit(100), Ok(100));
        assert_eq!(limit(101), Err(InvalidRequest::Limit));
    }

    #[test]
    fn preferences_are_normalised_and_bounded() {
        let p = preferences(&["Books".into(), " books ".into(), "Games".into()]).unwrap();
        assert_eq!(p, vec!["books".to_string(), "games".to_string()]);
        assert!(preferences(&["".into()]).is_err());
        assert!(preferences(&["a\u{0}b".into()]).is_err());
        let many: Vec<String> = (0..21).map(|i| format!("c{i}")).collect();
        assert!(preferences(&many).is_err());
    }

    #[test]
    fn history_counts_purchases_imports_and_good_ratings_but_not_bad_ones() {
        let order = fold(&[created(), paid()]);
        let pending = fold(&[OrderFact::Created {
            user_id: "u".into(),
            lines: vec![Line {
                product_id: "pending".into(),
                quantity: 1,
            }],
            placed_at: 5,
        }]);
        let mut profile = Profile::default();
        profile.import([ImportedPurchase {
            product_id: "old".into(),
            quantity: 1,
            at: 7,
        }]);
        profile.rate("liked", Rating { rating: 5, at: 9 });
        profile.rate("a", Rating { rating: 1, at: 9 });
        let h = History::build([&order, &pending], &profile);
        let items: Vec<&str> = h.items.keys().map(String::as_str).collect();
        assert_eq!(items, vec!["b", "liked", "old"]);
        assert!(
            h.bought.contains("a"),
            "a bought product is never recommended back"
        );
        assert!(!h.bought.contains("liked"));
        assert!(!h.items.contains_key("pending"));
    }

    #[test]
    fn the_latest_rating_wins_and_imports_are_idempotent() {
        let mut p = Profile::default();
        assert!(p.rate("x", Rating { rating: 5, at: 10 }));
        assert!(!p.rate("x", Rating { rating: 1, at: 5 }));
        assert_eq!(p.ratings["x"].rating, 5);
        let purchase = ImportedPurchase {
            product_id: "x".into(),
            quantity: 2,
            at: 3,
        };
        p.import([purchase.clone()]);
        p.import([purchase]);
        assert_eq!(p.imported.len(), 1);
    }
}
