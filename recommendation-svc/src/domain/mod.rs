//! Pure types and rules of the interaction log: what counts as a purchase,
//! how events fold into an order's record whatever order they arrive in,
//! and what a request may ask for. No I/O.
//!
//! Request checks are in `request`, the order fold in `order`, user
//! profiles and histories in `profile`.

mod order;
mod profile;
mod request;

pub use order::{Line, OrderFact, OrderRecord};
pub use profile::{DISLIKED_RATING, History, ImportedPurchase, LIKED_RATING, Profile, Rating};
pub use request::{
    DEFAULT_LIMIT, InvalidRequest, MAX_CATEGORY_LEN, MAX_LIMIT, MAX_PREFERRED_CATEGORIES, category,
    id, limit, preferences,
};

/// Why an item is recommended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    BoughtWith(String),
    Popular,
    PreferredCategory(String),
    SameCategory(String),
}

#[cfg(test)]
mod tests;
