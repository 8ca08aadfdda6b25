//! The shape of an order request, checked before anything is priced or
//! reserved.

use super::Address;

pub use platform::error::FieldError;

/// One line of an order request: a product and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub product_id: String,
    pub quantity: u32,
}

impl Line {
    pub fn new(product_id: &str, quantity: u32) -> Line {
        Line {
            product_id: product_id.to_string(),
            quantity,
        }
    }
}

/// Checks the shape of an order request: 1 to 50 lines, each product at
/// most once (so the per-line cap is a per-product cap), quantities 1 to
/// `max_units` (at most 1000), a complete address (platform's
/// [`Address::parse`] rules), notes of at most 1000 characters without
/// control characters ([`platform::text`]).
pub fn validate_request(
    lines: &[Line],
    address: Option<&Address>,
    notes: &str,
    max_units: u32,
) -> Result<Address, Vec<FieldError>> {
    let max_units = max_units.clamp(1, 1000);
    let mut errors = Vec::new();
    let mut push = |field: String, message: &str| errors.push(FieldError::new(field, message));
    if lines.is_empty() {
        push("items".into(), "at least one item is required");
    } else if lines.len() > 50 {
        push("items".into(), "at most 50 items");
    }
    for (
        i,
        Line {
            product_id,
            quantity,
        },
    ) in lines.iter().enumerate()
    {
        if product_id.trim().is_empty() {
            push(format!("items[{i}].product_id"), "is required");
        } else if lines[..i]
            .iter()
            .any(|earlier| earlier.product_id == *product_id)
        {
            push(
                format!("items[{i}].product_id"),
                "is already in the order: each product at most once, with its whole quantity",
            );
        }
        if !(1..=max_units).contains(quantity) {
            push(
                format!("items[{i}].quantity"),
                &format!("must be 1 to {max_units}"),
            );
        }
    }
    let address = address
        .cloned()
        .unwrap_or_default()
        .parse("shipping_address")
        .map_err(|e| errors.extend(e))
        .ok();
    if notes.chars().count() > 1000 {
        errors.push(FieldError::new("notes", "must be at most 1000 characters"));
    } else if let Err(error) = platform::text::check("notes", notes) {
        errors.push(error);
    }
    match address {
        Some(address) if errors.is_empty() => Ok(address),
        _ => Err(errors),
    }
}
