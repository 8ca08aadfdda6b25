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

pub use platform::error::FieldError;

fn err(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError::new(field, message)
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
    platform::text::check("name", name)?;
    match name.chars().count() {
        0 => Err(err("name", "must not be empty")),
        1..=200 => Ok(name.to_string()),
        _ => Err(err("name", "must be at most 200 characters")),
    }
}

pub fn parse_description(raw: &str) -> Result<String, FieldError> {
    platform::text::check("description", raw)?;
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

/// A review rating: 1 to 5.
pub fn parse_rating(raw: u32) -> Result<u8, FieldError> {
    if (1..=5).contains(&raw) {
        Ok(raw as u8)
    } else {
        Err(err("rating", "must be from 1 to 5"))
    }
}

pub fn parse_comment(raw: &str) -> Result<String, FieldError> {
    platform::text::check("comment", raw)?;
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
    /// Images from media-svc, primary first.
    #[serde(default)]
    pub images: Vec<Image>,
    /// Ids of images removed (the most recent ones), so an upload event
    /// that arrives after its deletion does not bring the image back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_images: Vec<String>,
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

/// A thumbnail of a product image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thumbnail {
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub content_type: String,
}

/// An image of a product, stored by media-svc under `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub key: String,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub alt: String,
    pub thumbnails: Vec<Thumbnail>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// Most images a product shows. media-svc holds each product to
/// [`proto::MAX_PRODUCT_IMAGES`] live images in one write; an upload's
/// event may still arrive before the event of a delete that made room for
/// it, so the product document allows twice as many, which bounds it
/// without dropping an image media-svc accepted.
pub const MAX_IMAGES: usize = 2 * proto::MAX_PRODUCT_IMAGES;
const REMOVED_IMAGE_MEMORY: usize = 200;

impl Product {
    /// Shows `image` last; false (no change) when it is shown already,
    /// was removed before, or the product shows the most it may.
    pub fn add_image(&mut self, image: Image) -> bool {
        if self.images.iter().any(|i| i.id == image.id)
            || self.removed_images.contains(&image.id)
            || self.images.len() >= MAX_IMAGES
        {
            return false;
        }
        self.images.push(image);
        true
    }

    /// Stops showing image `id` and remembers it was removed; false when
    /// it was removed already.
    pub fn remove_image(&mut self, id: &str) -> bool {
        if self.removed_images.iter().any(|r| r == id) {
            return false;
        }
        self.images.retain(|i| i.id != id);
        self.removed_images.push(id.to_string());
        if self.removed_images.len() > REMOVED_IMAGE_MEMORY {
            self.removed_images.remove(0);
        }
        true
    }

    /// Puts the images in the order of `ids`, which must name each of
    /// them exactly once.
    pub fn order_images(&mut self, ids: &[String]) -> Result<(), FieldError> {
        let mut seen = std::collections::HashSet::new();
        let same = ids.len() == self.images.len()
            && ids
                .iter()
                .all(|id| seen.insert(id) && self.images.iter().any(|i| &i.id == id));
        if !same {
            return Err(err(
                "image_ids",
                "must list each of the product's images exactly once",
            ));
        }
        self.images
            .sort_by_key(|i| ids.iter().position(|id| id == &i.id));
        Ok(())
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
mod tests;
