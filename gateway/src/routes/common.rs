//! What every area of the API shares: integers written either way, money,
//! query strings whose errors are problem documents, paging and times.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use platform::ErrorKind;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::AuthUser;
use crate::problem::{FieldError, Problem};

/// An integer member, written `4` or `4.0`: JSON Schema's `integer` is any
/// number without a fractional part, so clients (and the document) may
/// send either.
pub(crate) fn integer<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    let value = match value.as_f64() {
        // Integral floats of the i64 range convert exactly.
        Some(f) if value.is_f64() && f.fract() == 0.0 && (-9.2e18..9.2e18).contains(&f) => {
            serde_json::Value::from(f as i64)
        }
        _ => value,
    };
    T::deserialize(value).map_err(serde::de::Error::custom)
}

/// [`integer`] for a member that may be absent or null.
pub(crate) fn optional_integer<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    match Option::<serde_json::Value>::deserialize(deserializer)? {
        None => Ok(None),
        Some(value) => integer(value).map(Some).map_err(serde::de::Error::custom),
    }
}

/// An amount of money in integer minor units.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Money {
    /// Minor units (cents).
    #[serde(deserialize_with = "integer")]
    pub amount: i64,
    /// ISO 4217 code, e.g. `USD`.
    pub currency: String,
}

impl From<proto::common::Money> for Money {
    fn from(m: proto::common::Money) -> Self {
        Self {
            amount: m.amount,
            currency: m.currency,
        }
    }
}

impl From<Money> for proto::common::Money {
    fn from(m: Money) -> Self {
        Self {
            amount: m.amount,
            currency: m.currency,
        }
    }
}

/// Query parameters whose errors are problem documents (422).
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        crate::extract::refuse_control_characters(query.as_bytes())?;
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| {
                Problem::new(ErrorKind::InvalidArgument, "invalid query parameters").with_errors(
                    vec![FieldError {
                        field: String::new(),
                        message: e.to_string(),
                    }],
                )
            })
    }
}

pub(crate) fn page(
    limit: Option<u32>,
    cursor: Option<String>,
) -> Result<proto::common::PageRequest, Problem> {
    let limit = limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Problem::new(
            ErrorKind::InvalidArgument,
            "limit must be between 1 and 100",
        )
        .with_errors(vec![FieldError {
            field: "limit".into(),
            message: "must be between 1 and 100".into(),
        }]));
    }
    Ok(proto::common::PageRequest {
        limit,
        cursor: cursor.unwrap_or_default(),
    })
}

pub(crate) fn cursor(next: String) -> Option<String> {
    Some(next).filter(|c| !c.is_empty())
}

/// RFC 3339 of a time a service answered, in whole seconds (Unix epoch
/// when absent): every time in a response is formatted here.
pub(crate) fn rfc3339(ts: Option<prost_types::Timestamp>) -> String {
    platform::clock::rfc3339(ts.map(|t| t.seconds).unwrap_or_default())
}

/// Paging parameters.
#[derive(Debug, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

pub(crate) fn money(m: Option<proto::common::Money>) -> Money {
    m.map(Money::from).unwrap_or(Money {
        amount: 0,
        currency: "USD".into(),
    })
}

/// Listing parameters; admins may filter by user.
#[derive(Debug, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Admins only: whose items to list.
    pub user_id: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<String, Problem> {
    match headers.get("idempotency-key") {
        None => Ok(String::new()),
        Some(v) => v
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 255)
            .map(str::to_string)
            .ok_or_else(|| {
                Problem::new(
                    ErrorKind::InvalidArgument,
                    "Idempotency-Key must be 1 to 255 visible characters",
                )
            }),
    }
}

pub(crate) fn uuid_or_404(id: &str, what: &str) -> Result<String, Problem> {
    uuid::Uuid::parse_str(id)
        .map(|_| id.to_string())
        .map_err(|_| Problem::new(ErrorKind::NotFound, format!("{what} not found")))
}

pub(crate) fn filter_user(user: &AuthUser, requested: Option<String>) -> Result<String, Problem> {
    match requested.filter(|u| !u.is_empty()) {
        Some(other) if !user.is_admin() && other != user.0.sub => Err(Problem::new(
            ErrorKind::PermissionDenied,
            "only admins list other users' items",
        )),
        Some(other) => Ok(other),
        None => Ok(String::new()),
    }
}
