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
                ErrorKind::Unavailable
                | ErrorKind::RateLimited
                | ErrorKind::DeadlineExceeded
                | ErrorKind::Cancelled
                | ErrorKind::BadGateway => Some(RETRY_AFTER_SECS),
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
        let kind = platform::error::kind_of(status);
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
            ErrorKind::Unavailable => {
                tracing::warn!(code = ?status.code(), message = status.message(), "upstream unavailable");
                Problem::new(
                    kind,
                    "a service this request needs is unavailable; retry shortly with the same Idempotency-Key",
                )
            }
            ErrorKind::DeadlineExceeded | ErrorKind::Cancelled => {
                tracing::warn!(code = ?status.code(), message = status.message(), "upstream too slow");
                Problem::new(
                    ErrorKind::DeadlineExceeded,
                    "a service this request needs did not answer in time; retry with the same Idempotency-Key",
                )
            }
            ErrorKind::BadGateway => {
                tracing::warn!(code = ?status.code(), message = status.message(), "upstream failed mid-call");
                Problem::new(
                    kind,
                    "a service this request needs failed while answering; retry with the same Idempotency-Key",
                )
            }
            ErrorKind::RateLimited if platform::error::retry_after(status).is_some() => {
                let wait = platform::error::retry_after(status).unwrap_or_default();
                Problem::new(kind, status.message())
                    .retry_after(wait.as_secs_f64().ceil().max(1.0) as u64)
            }
            ErrorKind::Aborted => {
                Problem::new(kind, status.message()).retry_after(RETRY_AFTER_SECS)
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

/// `Retry-After` of answers a careful client retries (502, 503, 504, and
/// 409 for a request with the same Idempotency-Key still in progress).
pub const RETRY_AFTER_SECS: u64 = 1;

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

    fn answer(status: tonic::Status) -> (u16, Option<String>) {
        let response = Problem::from_status(&status).into_response();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_string());
        (response.status().as_u16(), retry)
    }

    #[test]
    fn a_dependency_failing_is_502_503_or_504_with_retry_after_never_500_or_499() {
        let one = Some("1".to_string());
        // A peer killed mid-call: tonic reports a transport error as UNKNOWN.
        assert_eq!(
            answer(tonic::Status::unknown("transport error")),
            (502, one.clone())
        );
        assert_eq!(
            answer(tonic::Status::unavailable("tcp connect error")),
            (503, one.clone())
        );
        // The channel's own deadline comes back as CANCELLED "Timeout expired".
        assert_eq!(
            answer(tonic::Status::cancelled("Timeout expired")),
            (504, one.clone())
        );
        assert_eq!(
            answer(tonic::Status::deadline_exceeded("slow")),
            (504, one.clone())
        );
        // The first request with this key still running: retry it.
        assert_eq!(
            answer(tonic::Status::aborted("still in progress")),
            (409, one)
        );
        assert_eq!(
            answer(tonic::Status::failed_precondition("shipped")),
            (409, None)
        );
        assert_eq!(answer(tonic::Status::internal("bug")).0, 500);
    }

    #[test]
    fn a_shedding_service_is_a_503_with_its_retry_delay() {
        let status =
            platform::error::overloaded("too many logins", std::time::Duration::from_millis(2500));
        let response = Problem::from(status).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
    }
}
