//! Per-user data: ratings, imported purchases, preferences, and the
//! history the models read.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::OrderRecord;

/// Ratings at or above this count as liking the product (an interaction);
/// at or below [`DISLIKED_RATING`] they take a purchase back out.
pub const LIKED_RATING: u32 = 4;
pub const DISLIKED_RATING: u32 = 2;

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
