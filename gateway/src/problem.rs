//! RFC 9457 problem documents (`application/problem+json`), with statuses
//! from the shared error table.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use platform::ErrorKind;
use serde::Serialize;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// One invalid field.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Extra members (e.g. readiness checks).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip)]
    pub retry_after_secs: Option<u64>,
    #[serde(skip)]
    pub challenge: bool,
}

impl Problem {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        let status = kind.http_status();
        Self {
            kind_uri: format!("https://shopmesh.dev/problems/{}", slug(kind)),
            title: kind.title().to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            extra: None,
            retry_after_secs: match kind {
                ErrorKind::Unavailable | ErrorKind::RateLimited => Some(1),
                _ => None,
            },
            challenge: false,
        }
    }

    /// Adds `WWW-Authenticate: Bearer` (401 responses).
    pub fn bearer_challenge(mut self) -> Self {
        self.challenge = true;
        self
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn with_extra(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extra
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), value);
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// A gRPC failure from an upstream. Client faults keep the upstream's
    /// message; our own faults get a generic one, the cause is logged.
    pub fn from_status(status: &tonic::Status) -> Self {
        let kind = ErrorKind::from_grpc_code(status.code());
        match kind {
            ErrorKind::Internal => {
                tracing::error!(code = ?status.code(), message = status.message(), "upstream failed");
                Problem::new(kind, "something went wrong on our side; it has been logged")
            }
            ErrorKind::Unavailable if platform::error::retry_after(status).is_some() => {
                // A live service shedding load says when to come back.
                let wait = platform::error::retry_after(status).unwrap_or_default();
                tracing::info!(message = status.message(), ?wait, "upstream overloaded");
                Problem::new(
                    kind,
                    "a service this request needs is overloaded; try again shortly",
                )
                .retry_after(wait.as_secs_f64().ceil().max(1.0) as u64)
            }
            ErrorKind::Unavailable | ErrorKind::DeadlineExceeded => {
                tracing::warn!(code = ?status.code(), message = status.message(), "upstream unavailable");
                Problem::new(
                    kind,
                    "a service this request needs is unavailable; try again shortly",
                )
            }
            ErrorKind::InvalidArgument => {
                let errors: Vec<FieldError> = platform::error::field_violations(status)
                    .into_iter()
                    .map(|(field, message)| FieldError { field, message })
                    .collect();
                Problem::new(kind, status.message()).with_errors(errors)
            }
            _ => Problem::new(kind, status.message()),
        }
    }
}

fn slug(kind: ErrorKind) -> String {
    kind.title().to_ascii_lowercase().replace(' ', "-")
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.retry_after_secs;
        let challenge = self.challenge;
        let mut response = (status, axum::Json(self)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if challenge {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<tonic::Status> for Problem {
    fn from(status: tonic::Status) -> Self {
        Problem::from_status(&status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_shedding_service_is_a_503_with_its_retry_delay() {
        let status = platform::error::overloaded("too many logins", Duration::from_millis(2500));
        let response = Problem::from(status).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
    }

    #[test]
    fn a_plain_unavailable_is_a_503_retried_after_a_second() {
        let response = Problem::from(tonic::Status::unavailable("down")).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
