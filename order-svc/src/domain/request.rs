//! The shape of an order request, checked before anything is priced or
//! reserved.

use super::Address;

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Checks the shape of an order request: 1 to 50 lines, quantities 1 to
/// `max_units` (at most 1000), a complete address, notes of at most 1000
/// characters.
pub fn validate_request(
    lines: &[(String, u32)],
    address: Option<&Address>,
    notes: &str,
    max_units: u32,
) -> Result<Address, Vec<FieldError>> {
    let max_units = max_units.clamp(1, 1000);
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
        if !(1..=max_units).contains(quantity) {
            push(
                format!("items[{i}].quantity"),
                &format!("must be 1 to {max_units}"),
            );
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
