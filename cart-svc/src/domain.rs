//! A cart and the rules of changing it: pure functions over one document,
//! applied inside a compare-and-swap write (so they may run more than once).

use serde::{Deserialize, Serialize};

/// A price as the shopper last saw it on a line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub amount: i64,
    pub currency: String,
}

/// One product in a cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub product_id: String,
    pub quantity: u32,
    /// The catalog price when the line was last added to or changed; a
    /// read flags the line when the catalog's price differs.
    #[serde(default)]
    pub seen_price: Option<Price>,
}

/// A checkout recorded on the cart before the order is asked for, so a
/// crash at any point is resumed with the same order key: the cart is
/// never lost and never ordered twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The client's idempotency key.
    pub key: String,
    /// What the request asked for (address, card or not), to tell a repeat
    /// from another request under the same key.
    pub fingerprint: String,
    /// Exactly what is being ordered: these leave the cart afterwards.
    pub lines: Vec<(String, u32)>,
    /// Unix milliseconds.
    pub started_at: i64,
}

/// What a finished checkout answered, for repeats of its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    pub key: String,
    pub fingerprint: String,
    /// The encoded `CheckoutResponse` (base64), or the refusal.
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    Ordered { response: String },
    Refused { code: i32, message: String },
}

/// Finished checkouts kept for repeats.
pub const KEPT_CHECKOUTS: usize = 20;

/// One cart document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Cart {
    /// The customer's user id; empty for a guest cart.
    #[serde(default)]
    pub owner: String,
    pub lines: Vec<Line>,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// A guest cart expires then (Unix milliseconds); customers' never do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout: Option<Pending>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub done: Vec<Done>,
    /// A guest cart being merged into this customer's cart: it takes no
    /// more changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    /// Guest carts already merged into this one (the latest few), so a
    /// repeated merge adds nothing twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged: Vec<String>,
    /// A customer's cart with lines: when it is due a reminder (Unix
    /// milliseconds). Set by every change, cleared when the reminder is
    /// sent, so a reminder goes out once per abandonment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remind_at: Option<i64>,
}

/// The caps a change must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Most units of one product (`ORDER_MAX_UNITS_PER_LINE`).
    pub units_per_line: u32,
    /// Most products in one cart (`CART_MAX_LINES`).
    pub lines: u32,
}

/// Why a change is refused (INVALID_ARGUMENT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub field: &'static str,
    pub message: String,
}

fn refused(field: &'static str, message: String) -> Refused {
    Refused { field, message }
}

fn over_cap(caps: Caps) -> Refused {
    refused(
        "quantity",
        format!("at most {} units per product", caps.units_per_line),
    )
}

impl Cart {
    fn line_mut(&mut self, product_id: &str) -> Option<&mut Line> {
        self.lines.iter_mut().find(|l| l.product_id == product_id)
    }

    /// A new line, if the cart has room for one more product.
    fn push_line(
        &mut self,
        product_id: &str,
        quantity: u32,
        seen_price: Option<Price>,
        caps: Caps,
    ) -> Result<(), Refused> {
        if self.lines.len() >= caps.lines as usize {
            return Err(refused(
                "product_id",
                format!("a cart holds at most {} products", caps.lines),
            ));
        }
        self.lines.push(Line {
            product_id: product_id.to_string(),
            quantity,
            seen_price,
        });
        Ok(())
    }

    /// Adds `quantity` units (at least 1) of a product priced `price` now.
    pub fn add(
        &mut self,
        product_id: &str,
        quantity: u32,
        price: Price,
        caps: Caps,
    ) -> Result<(), Refused> {
        if quantity == 0 {
            return Err(refused("quantity", "must be at least 1".into()));
        }
        match self.line_mut(product_id) {
            Some(line) => {
                let total = line.quantity.saturating_add(quantity);
                if total > caps.units_per_line {
                    return Err(refused(
                        "quantity",
                        format!(
                            "the cart would hold {total} units of this product; at most {} per product",
                            caps.units_per_line
                        ),
                    ));
                }
                line.quantity = total;
                line.seen_price = Some(price);
            }
            None if quantity > caps.units_per_line => return Err(over_cap(caps)),
            None => self.push_line(product_id, quantity, Some(price), caps)?,
        }
        Ok(())
    }

    /// Sets a line's quantity; 0 removes it. Setting a product that is not
    /// in the cart adds it.
    pub fn set(
        &mut self,
        product_id: &str,
        quantity: u32,
        price: Option<Price>,
        caps: Caps,
    ) -> Result<(), Refused> {
        if quantity == 0 {
            self.remove(product_id);
            return Ok(());
        }
        if quantity > caps.units_per_line {
            return Err(over_cap(caps));
        }
        match self.line_mut(product_id) {
            Some(line) => {
                line.quantity = quantity;
                if price.is_some() {
                    line.seen_price = price;
                }
            }
            None => self.push_line(product_id, quantity, price, caps)?,
        }
        Ok(())
    }

    pub fn remove(&mut self, product_id: &str) {
        self.lines.retain(|l| l.product_id != product_id);
    }

    /// Adds another cart's lines: quantities add up to the per-line cap;
    /// products beyond the line cap are left out (and counted).
    pub fn merge(&mut self, other: &[Line], caps: Caps) -> usize {
        let mut left_out = 0;
        for line in other {
            let lines = self.lines.len();
            match self.line_mut(&line.product_id) {
                Some(mine) => {
                    mine.quantity = mine
                        .quantity
                        .saturating_add(line.quantity)
                        .min(caps.units_per_line);
                }
                None if lines < caps.lines as usize => {
                    let mut line = line.clone();
                    line.quantity = line.quantity.min(caps.units_per_line);
                    self.lines.push(line);
                }
                None => left_out += 1,
            }
        }
        left_out
    }

    /// Takes ordered units out of the cart: a line drops by what was
    /// ordered of it (units added meanwhile stay), and goes at zero.
    pub fn subtract(&mut self, ordered: &[(String, u32)]) {
        for (product_id, quantity) in ordered {
            if let Some(line) = self.line_mut(product_id) {
                line.quantity = line.quantity.saturating_sub(*quantity);
            }
        }
        self.lines.retain(|l| l.quantity > 0);
    }

    /// Ends checkout `pending` with `outcome`. An order takes exactly the
    /// pending lines out of the cart, once (a repeat, or a refusal that a
    /// concurrent attempt recorded first, changes nothing twice); a
    /// refusal only ends a checkout still pending, leaving the cart as it
    /// was.
    pub fn finish(&mut self, pending: &Pending, outcome: Outcome) {
        let key = pending.key.as_str();
        if self
            .finished(key)
            .is_some_and(|d| matches!(d.outcome, Outcome::Ordered { .. }))
        {
            return;
        }
        let still_pending = self.checkout.as_ref().is_some_and(|p| p.key == key);
        match outcome {
            Outcome::Ordered { .. } => self.subtract(&pending.lines),
            Outcome::Refused { .. } if !still_pending => return,
            Outcome::Refused { .. } => {}
        }
        if still_pending {
            self.checkout = None;
        }
        self.done.retain(|d| d.key != key);
        self.done.push(Done {
            key: key.to_string(),
            fingerprint: pending.fingerprint.clone(),
            outcome,
        });
        if self.done.len() > KEPT_CHECKOUTS {
            let extra = self.done.len() - KEPT_CHECKOUTS;
            self.done.drain(..extra);
        }
    }

    /// After a change of a customer's cart at `now`: a reminder is due
    /// `after` later if it holds lines, none if it is empty.
    pub fn schedule_reminder(&mut self, now: i64, after_ms: i64) {
        self.remind_at = (!self.lines.is_empty()).then(|| now.saturating_add(after_ms));
    }

    pub fn finished(&self, key: &str) -> Option<&Done> {
        self.done.iter().find(|d| d.key == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps {
        units_per_line: 10,
        lines: 3,
    };

    fn usd(amount: i64) -> Price {
        Price {
            amount,
            currency: "USD".into(),
        }
    }

    fn quantities(cart: &Cart) -> Vec<(&str, u32)> {
        cart.lines
            .iter()
            .map(|l| (l.product_id.as_str(), l.quantity))
            .collect()
    }

    #[test]
    fn adds_add_up_within_the_caps() {
        let mut cart = Cart::default();
        cart.add("a", 2, usd(100), CAPS).unwrap();
        cart.add("a", 3, usd(120), CAPS).unwrap();
        cart.add("b", 1, usd(5), CAPS).unwrap();
        assert_eq!(quantities(&cart), vec![("a", 5), ("b", 1)]);
        assert_eq!(
            cart.lines[0].seen_price,
            Some(usd(120)),
            "the latest price seen"
        );
        assert_eq!(
            cart.add("a", 6, usd(1), CAPS).unwrap_err().field,
            "quantity"
        );
        assert_eq!(
            cart.add("a", 0, usd(1), CAPS).unwrap_err().field,
            "quantity"
        );
        assert_eq!(
            cart.add("c", 11, usd(1), CAPS).unwrap_err().field,
            "quantity"
        );
        cart.add("c", 1, usd(1), CAPS).unwrap();
        assert_eq!(
            cart.add("d", 1, usd(1), CAPS).unwrap_err().field,
            "product_id"
        );
        assert_eq!(quantities(&cart), vec![("a", 5), ("b", 1), ("c", 1)]);
    }

    #[test]
    fn set_zero_removes_and_set_respects_the_cap() {
        let mut cart = Cart::default();
        cart.add("a", 2, usd(100), CAPS).unwrap();
        cart.set("a", 7, None, CAPS).unwrap();
        assert_eq!(quantities(&cart), vec![("a", 7)]);
        assert!(cart.set("a", 11, None, CAPS).is_err());
        cart.set("a", 0, None, CAPS).unwrap();
        assert!(cart.lines.is_empty());
    }

    #[test]
    fn merge_adds_quantities_capped_and_keeps_the_line_cap() {
        let mut mine = Cart::default();
        mine.add("a", 8, usd(1), CAPS).unwrap();
        mine.add("b", 1, usd(1), CAPS).unwrap();
        let mut guest = Cart::default();
        guest.add("a", 5, usd(1), CAPS).unwrap();
        guest.add("c", 2, usd(1), CAPS).unwrap();
        guest.add("d", 1, usd(1), CAPS).unwrap();
        let left_out = mine.merge(&guest.lines, CAPS);
        assert_eq!(quantities(&mine), vec![("a", 10), ("b", 1), ("c", 2)]);
        assert_eq!(left_out, 1);
    }

    #[test]
    fn a_finished_checkout_takes_out_exactly_what_was_ordered() {
        let mut cart = Cart::default();
        cart.add("a", 2, usd(1), CAPS).unwrap();
        cart.add("b", 1, usd(1), CAPS).unwrap();
        let pending = Pending {
            key: "k".into(),
            fingerprint: "f".into(),
            lines: vec![("a".into(), 2), ("b".into(), 1)],
            started_at: 0,
        };
        cart.checkout = Some(pending.clone());
        // Added while the checkout ran: they stay.
        cart.add("a", 3, usd(1), CAPS).unwrap();
        cart.add("c", 1, usd(1), CAPS).unwrap();
        cart.finish(
            &pending,
            Outcome::Ordered {
                response: "r".into(),
            },
        );
        assert_eq!(quantities(&cart), vec![("a", 3), ("c", 1)]);
        assert!(cart.checkout.is_none());
        assert_eq!(cart.finished("k").unwrap().fingerprint, "f");
        // Finishing again (a replayed write), or a late refusal from a
        // concurrent attempt, changes nothing.
        let before = cart.clone();
        cart.finish(
            &pending,
            Outcome::Ordered {
                response: "r".into(),
            },
        );
        cart.finish(
            &pending,
            Outcome::Refused {
                code: 9,
                message: "late".into(),
            },
        );
        assert_eq!(cart, before);
    }

    #[test]
    fn a_refused_checkout_keeps_the_cart() {
        let mut cart = Cart::default();
        cart.add("a", 2, usd(1), CAPS).unwrap();
        let pending = Pending {
            key: "k".into(),
            fingerprint: "f".into(),
            lines: vec![("a".into(), 2)],
            started_at: 0,
        };
        cart.checkout = Some(pending.clone());
        cart.finish(
            &pending,
            Outcome::Refused {
                code: 9,
                message: "insufficient stock".into(),
            },
        );
        assert_eq!(quantities(&cart), vec![("a", 2)]);
        assert!(matches!(
            cart.finished("k").unwrap().outcome,
            Outcome::Refused { code: 9, .. }
        ));
        // A concurrent attempt under the same key that did order wins.
        cart.finish(
            &pending,
            Outcome::Ordered {
                response: "r".into(),
            },
        );
        assert!(cart.lines.is_empty());
        assert!(matches!(
            cart.finished("k").unwrap().outcome,
            Outcome::Ordered { .. }
        ));
    }

    #[test]
    fn only_the_latest_checkouts_are_kept() {
        let mut cart = Cart::default();
        for i in 0..KEPT_CHECKOUTS + 5 {
            let pending = Pending {
                key: format!("k{i}"),
                fingerprint: String::new(),
                lines: vec![],
                started_at: 0,
            };
            cart.checkout = Some(pending.clone());
            cart.finish(
                &pending,
                Outcome::Refused {
                    code: 9,
                    message: String::new(),
                },
            );
        }
        assert_eq!(cart.done.len(), KEPT_CHECKOUTS);
        assert!(cart.finished("k0").is_none());
        assert!(cart.finished(&format!("k{}", KEPT_CHECKOUTS + 4)).is_some());
    }
}
