//! What a request may ask for: limits, ids, categories and preferences.

use std::collections::BTreeSet;

/// Largest `limit` a request may ask for.
pub const MAX_LIMIT: u32 = 100;
/// `limit` when a request leaves it at 0.
pub const DEFAULT_LIMIT: u32 = 10;
/// Most categories a user may prefer.
pub const MAX_PREFERRED_CATEGORIES: usize = 20;
/// Longest category name.
pub const MAX_CATEGORY_LEN: usize = 64;

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
