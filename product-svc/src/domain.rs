//! Catalog and inventory rules: pure types, no I/O.
//!
//! Stock lives on the product: `stock_available` can be sold,
//! `stock_reserved` is held for orders awaiting payment, and
//! `reservations` maps each such order to its quantity, so reserving,
//! releasing and committing for an order are idempotent single-document
//! changes (applied with compare-and-swap by the store).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use platform::events::outbox::{HasOutbox, Outbox};

pub mod reservation;
pub use reservation::{Reservation, ReservationState};

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

fn err(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// Integer minor units and an ISO 4217 code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount: i64,
    pub currency: String,
}

impl Money {
    pub fn parse(amount: i64, currency: &str) -> Result<Money, FieldError> {
        // Nothing is given away: a free line would leave its order with
        // nothing to pay and no way past PENDING_PAYMENT.
        if amount < 1 {
            return Err(err("price.amount", "must be at least 1 minor unit"));
        }
        if amount > 10_000_000_000 {
            return Err(err(
                "price.amount",
                "must be at most 10,000,000,000 minor units",
            ));
        }
        let currency = currency.trim().to_ascii_uppercase();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(err(
                "price.currency",
                "must be a three-letter ISO 4217 code",
            ));
        }
        Ok(Money { amount, currency })
    }
}

/// Stock-keeping unit: 1 to 64 of `A-Z 0-9 - _ .`, stored upper case.
pub fn parse_sku(raw: &str) -> Result<String, FieldError> {
    let sku = raw.trim().to_ascii_uppercase();
    let ok = (1..=64).contains(&sku.len())
        && sku
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(sku)
    } else {
        Err(err(
            "sku",
            "must be 1 to 64 letters, digits, '-', '_' or '.'",
        ))
    }
}

pub fn parse_name(raw: &str) -> Result<String, FieldError> {
    let name = raw.trim();
    match name.chars().count() {
        0 => Err(err("name", "must not be empty")),
        1..=200 => Ok(name.to_string()),
        _ => Err(err("name", "must be at most 200 characters")),
    }
}

pub fn parse_description(raw: &str) -> Result<String, FieldError> {
    if raw.chars().count() > 5000 {
        Err(err("description", "must be at most 5000 characters"))
    } else {
        Ok(raw.trim().to_string())
    }
}

/// Category slug: lower case, 1 to 50 of `a-z 0-9 -`.
pub fn parse_category(raw: &str) -> Result<String, FieldError> {
    let c = raw.trim().to_lowercase();
    let ok = (1..=50).contains(&c.len())
        && c.chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
    if ok {
        Ok(c)
    } else {
        Err(err(
            "category",
            "must be 1 to 50 lower-case letters, digits or '-'",
        ))
    }
}

pub fn parse_image_urls(raw: &[String]) -> Result<Vec<String>, FieldError> {
    if raw.len() > 10 {
        return Err(err("image_urls", "at most 10 images"));
    }
    raw.iter()
        .map(|u| {
            let u = u.trim();
            let ok = (u.starts_with("https://") || u.starts_with("http://"))
                && u.len() <= 2048
                && !u.contains(char::is_whitespace);
            if ok {
                Ok(u.to_string())
            } else {
                Err(err("image_urls", "each must be an http(s) URL"))
            }
        })
        .collect()
}

/// A review rating: 1 to 5.
pub fn parse_rating(raw: u32) -> Result<u8, FieldError> {
    if (1..=5).contains(&raw) {
        Ok(raw as u8)
    } else {
        Err(err("rating", "must be from 1 to 5"))
    }
}

pub fn parse_comment(raw: &str) -> Result<String, FieldError> {
    if raw.chars().count() > 2000 {
        Err(err("comment", "must be at most 2000 characters"))
    } else {
        Ok(raw.trim().to_string())
    }
}

/// A stored product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub price: Money,
    #[serde(default)]
    pub image_urls: Vec<String>,
    #[serde(default)]
    pub weight_grams: u32,
    /// `active` or `inactive` (hidden from listings, cannot be ordered).
    pub status: String,
    /// Lower-cased name and description: the searchable text.
    pub search_text: String,
    pub stock_available: i64,
    pub stock_reserved: i64,
    /// Active reservations: order id -> quantity.
    #[serde(default)]
    pub reservations: BTreeMap<String, i64>,
    /// Orders whose committed stock was put back (refund after payment);
    /// the most recent ones, so a repeated restock is recognised.
    #[serde(default)]
    pub restocked: Vec<String>,
    /// Orders released before any reservation of theirs reached this
    /// product (a release that overtook its reserve); the most recent ones,
    /// so the late reserve is refused instead of holding stock for nobody.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<String>,
    #[serde(default)]
    pub rating_sum: i64,
    #[serde(default)]
    pub rating_count: i64,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(default)]
    pub outbox: Outbox,
}

impl HasOutbox for Product {
    fn outbox(&self) -> &Outbox {
        &self.outbox
    }
    fn outbox_mut(&mut self) -> &mut Outbox {
        &mut self.outbox
    }
}

pub const ACTIVE: &str = "active";
pub const INACTIVE: &str = "inactive";
const RESTOCK_MEMORY: usize = 500;

pub fn search_text(name: &str, description: &str) -> String {
    format!("{} {}", name, description).to_lowercase()
}

/// Why stock could not move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockError {
    /// Not enough available stock.
    Insufficient { available: i64, requested: i64 },
    /// The product is inactive.
    Inactive,
    /// Setting stock below what is reserved for orders.
    BelowReserved { reserved: i64 },
    /// A quantity outside 1..=1000, or a stock beyond the maximum.
    BadQuantity,
    /// The order's reservation was released before it reached this product.
    Released,
}

/// Largest stock a product may hold.
pub const MAX_STOCK: i64 = 1_000_000_000;

impl Product {
    pub fn is_active(&self) -> bool {
        self.status == ACTIVE
    }

    pub fn rating_avg(&self) -> Option<f64> {
        (self.rating_count > 0).then(|| self.rating_sum as f64 / self.rating_count as f64)
    }

    /// Holds `quantity` for `order_id`. Doing it again for the same order
    /// changes nothing. Returns whether anything changed.
    pub fn reserve(&mut self, order_id: &str, quantity: i64) -> Result<bool, StockError> {
        if !(1..=1000).contains(&quantity) {
            return Err(StockError::BadQuantity);
        }
        if self.reservations.contains_key(order_id) {
            return Ok(false);
        }
        if self.released.iter().any(|o| o == order_id) {
            return Err(StockError::Released);
        }
        if !self.is_active() {
            return Err(StockError::Inactive);
        }
        if self.stock_available < quantity {
            return Err(StockError::Insufficient {
                available: self.stock_available,
                requested: quantity,
            });
        }
        self.stock_available -= quantity;
        self.stock_reserved += quantity;
        self.reservations.insert(order_id.to_string(), quantity);
        Ok(true)
    }

    /// Puts an uncommitted reservation back on sale (idempotent). With
    /// nothing held for the order, remembers it so that a reserve still on
    /// its way is refused. Returns whether the document changed.
    pub fn release(&mut self, order_id: &str) -> bool {
        match self.reservations.remove(order_id) {
            Some(quantity) => {
                self.stock_reserved -= quantity;
                self.stock_available += quantity;
                true
            }
            None if self.released.iter().any(|o| o == order_id) => false,
            None => {
                self.released.push(order_id.to_string());
                if self.released.len() > RESTOCK_MEMORY {
                    self.released.remove(0);
                }
                true
            }
        }
    }

    /// Whether units are held for `order_id` on this product.
    pub fn holds(&self, order_id: &str) -> bool {
        self.reservations.contains_key(order_id)
    }

    /// The reservation became a sale (idempotent).
    pub fn commit(&mut self, order_id: &str) -> bool {
        match self.reservations.remove(order_id) {
            Some(quantity) => {
                self.stock_reserved -= quantity;
                true
            }
            None => false,
        }
    }

    /// Puts sold stock back (a paid order was cancelled or refunded);
    /// repeated calls for the same order change nothing.
    pub fn restock(&mut self, order_id: &str, quantity: i64) -> bool {
        if self.restocked.iter().any(|o| o == order_id) {
            return false;
        }
        self.stock_available = (self.stock_available + quantity).min(MAX_STOCK);
        self.restocked.push(order_id.to_string());
        if self.restocked.len() > RESTOCK_MEMORY {
            self.restocked.remove(0);
        }
        true
    }

    /// Sets the units on hand (`absolute`: available + reserved) or moves
    /// the available units (`delta`); refuses to leave fewer units on hand
    /// than are reserved for orders.
    pub fn set_stock(
        &mut self,
        absolute: Option<i64>,
        delta: Option<i64>,
    ) -> Result<(), StockError> {
        let target = match (absolute, delta) {
            (Some(on_hand), _) => on_hand - self.stock_reserved,
            (None, Some(delta)) => self.stock_available + delta,
            (None, None) => return Err(StockError::BadQuantity),
        };
        if target < 0 {
            return Err(StockError::BelowReserved {
                reserved: self.stock_reserved,
            });
        }
        if target > MAX_STOCK {
            return Err(StockError::BadQuantity);
        }
        self.stock_available = target;
        Ok(())
    }
}

/// Whether going from `before` to `after` available units crosses the
/// low-stock threshold (or runs out): the moment to say so, once.
pub fn crosses_low_stock(before: i64, after: i64, threshold: i64) -> bool {
    (before >= threshold && after < threshold) || (before > 0 && after == 0)
}

/// A stored review (one per user and product; id `<product>:<user>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub product_id: String,
    pub user_id: String,
    pub rating: u8,
    pub comment: String,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(default)]
    pub outbox: Outbox,
}

impl HasOutbox for Review {
    fn outbox(&self) -> &Outbox {
        &self.outbox
    }
    fn outbox_mut(&mut self) -> &mut Outbox {
        &mut self.outbox
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(stock: i64) -> Product {
        Product {
            sku: "SKU".into(),
            name: "n".into(),
            description: String::new(),
            category: "c".into(),
            price: Money {
                amount: 100,
                currency: "USD".into(),
            },
            image_urls: vec![],
            weight_grams: 0,
            status: ACTIVE.into(),
            search_text: String::new(),
            stock_available: stock,
            stock_reserved: 0,
            reservations: BTreeMap::new(),
            restocked: vec![],
            released: vec![],
            rating_sum: 0,
            rating_count: 0,
            created_at: 0,
            updated_at: 0,
            outbox: Outbox::default(),
        }
    }

    #[test]
    fn money_sku_and_fields_are_validated() {
        assert_eq!(
            Money::parse(1999, "usd").unwrap(),
            Money {
                amount: 1999,
                currency: "USD".into()
            }
        );
        assert_eq!(Money::parse(-1, "USD").unwrap_err().field, "price.amount");
        assert_eq!(
            Money::parse(0, "USD").unwrap_err().field,
            "price.amount",
            "nothing is free"
        );
        assert_eq!(Money::parse(1, "US").unwrap_err().field, "price.currency");
        assert_eq!(parse_sku(" kb-101 ").unwrap(), "KB-101");
        assert!(parse_sku("has space").is_err() && parse_sku("").is_err());
        assert!(parse_name("").is_err() && parse_name(&"x".repeat(201)).is_err());
        assert_eq!(parse_category("Home-Office").unwrap(), "home-office");
        assert!(parse_category("a b").is_err());
        assert!(parse_image_urls(&["ftp://x".into()]).is_err());
        assert!(parse_image_urls(&["https://cdn.example.com/a.png".into()]).is_ok());
        assert!(
            parse_comment(&"x".repeat(2001)).is_err() && parse_comment(&"x".repeat(2000)).is_ok()
        );
    }

    #[test]
    fn ratings_are_one_to_five() {
        for ok in 1..=5 {
            assert!(parse_rating(ok).is_ok());
        }
        assert!(parse_rating(0).is_err() && parse_rating(6).is_err());
    }

    #[test]
    fn reserve_is_idempotent_per_order_and_never_oversells() {
        let mut p = product(10);
        assert_eq!(p.reserve("o1", 4), Ok(true));
        assert_eq!(
            p.reserve("o1", 4),
            Ok(false),
            "a retry reserves nothing more"
        );
        assert_eq!((p.stock_available, p.stock_reserved), (6, 4));
        assert_eq!(
            p.reserve("o2", 7),
            Err(StockError::Insufficient {
                available: 6,
                requested: 7
            })
        );
        assert_eq!(p.reserve("o2", 0), Err(StockError::BadQuantity));
        assert_eq!(p.reserve("o2", 1001), Err(StockError::BadQuantity));
        p.status = INACTIVE.into();
        assert_eq!(p.reserve("o3", 1), Err(StockError::Inactive));
    }

    #[test]
    fn release_commit_and_restock() {
        let mut p = product(10);
        p.reserve("o1", 3).unwrap();
        p.reserve("o2", 2).unwrap();
        assert!(p.release("o1"));
        p.release("o1");
        assert!(!p.release("o1"), "idempotent");
        assert_eq!(
            (p.stock_available, p.stock_reserved),
            (8, 2),
            "units come back once"
        );
        assert!(p.commit("o2"));
        assert!(!p.commit("o2"));
        assert_eq!(
            (p.stock_available, p.stock_reserved),
            (8, 0),
            "sold stock leaves the reserved count"
        );
        assert!(p.restock("o2", 2));
        assert!(!p.restock("o2", 2), "a refund restocks once");
        assert_eq!(p.stock_available, 10);
    }

    #[test]
    fn a_release_that_overtakes_its_reserve_wins() {
        let mut p = product(10);
        assert!(p.release("o1"), "remembered");
        assert!(!p.release("o1"), "once");
        assert_eq!(p.reserve("o1", 2), Err(StockError::Released));
        assert_eq!((p.stock_available, p.stock_reserved), (10, 0));
        assert_eq!(p.reserve("o2", 2), Ok(true), "other orders are unaffected");
        assert!(p.holds("o2") && !p.holds("o1"));
    }

    #[test]
    fn stock_updates_respect_bounds() {
        let mut p = product(5);
        p.reserve("o1", 2).unwrap();
        assert!(matches!(
            p.set_stock(Some(1), None),
            Err(StockError::BelowReserved { reserved: 2 })
        ));
        p.set_stock(Some(22), None).unwrap();
        assert_eq!(p.stock_available, 20);
        p.set_stock(None, Some(-5)).unwrap();
        assert_eq!(p.stock_available, 15);
        assert!(matches!(
            p.set_stock(None, Some(-16)),
            Err(StockError::BelowReserved { .. })
        ));
        assert!(matches!(
            p.set_stock(Some(-1), None),
            Err(StockError::BelowReserved { .. })
        ));
        assert_eq!(
            p.set_stock(Some(MAX_STOCK + 3), None),
            Err(StockError::BadQuantity)
        );
        assert_eq!(p.set_stock(None, None), Err(StockError::BadQuantity));
    }

    #[test]
    fn low_stock_is_announced_on_crossing_only() {
        assert!(crosses_low_stock(5, 4, 5));
        assert!(!crosses_low_stock(4, 3, 5), "already low");
        assert!(crosses_low_stock(3, 0, 5), "out of stock");
        assert!(!crosses_low_stock(0, 0, 5));
        assert!(!crosses_low_stock(10, 6, 5));
    }

    #[test]
    fn rating_average() {
        let mut p = product(1);
        assert_eq!(p.rating_avg(), None);
        p.rating_sum = 9;
        p.rating_count = 2;
        assert_eq!(p.rating_avg(), Some(4.5));
    }
}
