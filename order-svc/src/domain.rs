//! Orders: the status machine and the order document. Pure, no I/O.

use serde::{Deserialize, Serialize};

use platform::events::outbox::{HasOutbox, Outbox};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
        if let Some(id) = event_id {
            if self.applied_events.iter().any(|e| e == id) {
                return Ok(false);
            }
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
/// 1000, a complete address, notes of at most 1000 characters.
pub fn validate_request(
    lines: &[(String, u32)],
    address: Option<&Address>,
    notes: &str,
) -> Result<Address, Vec<FieldError>> {
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
        if !(1..=1000).contains(quantity) {
            push(format!("items[{i}].quantity"), "must be 1 to 1000");
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

    #[test]
    fn an_event_id_applies_once() {
        let mut order = Order {
            user_id: "u".into(),
            status: S::PendingPayment,
            items: vec![],
            currency: "USD".into(),
            total: 0,
            shipping_address: Address::default(),
            notes: String::new(),
            payment_id: String::new(),
            cancel_reason: String::new(),
            applied_events: vec![],
            created_at: 0,
            updated_at: 0,
            outbox: Outbox::default(),
        };
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
            validate_request(&[("p".into(), 1)], Some(&address), "")
                .unwrap()
                .country,
            "US"
        );
        let errors = validate_request(&[], None, &"x".repeat(1001)).unwrap_err();
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
        let errors = validate_request(&[("p".into(), 0), ("".into(), 1001)], Some(&address), "")
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
        assert!(validate_request(&vec![("p".to_string(), 1); 51], Some(&address), "").is_err());
    }
}
