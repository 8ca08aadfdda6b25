//! The one table that maps error kinds to a gRPC [`Code`] and an HTTP status.
//!
//! Services return `tonic::Status` built from an [`ErrorKind`]; the gateway
//! turns any `Status` back into a kind and from there into the HTTP status of
//! its problem document. Keeping both directions in one table means a new
//! kind cannot be mapped on one side and forgotten on the other.

use http::StatusCode;
use tonic::Code;

/// What went wrong, independent of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Well-formed request with invalid fields (gRPC INVALID_ARGUMENT, HTTP 422).
    InvalidArgument,
    /// Request body could not be parsed at all (HTTP 400). Over gRPC it is an
    /// INVALID_ARGUMENT too: gRPC has no separate code for it.
    Malformed,
    /// Missing, invalid or expired credentials (401).
    Unauthenticated,
    /// Authenticated but not allowed (403).
    PermissionDenied,
    /// Unknown resource, or one the caller may not see (404).
    NotFound,
    /// Unique constraint hit: duplicate email, SKU… (409).
    AlreadyExists,
    /// Operation not allowed in the resource's current state: insufficient
    /// stock, invalid state transition (409).
    FailedPrecondition,
    /// Concurrent modification or idempotency key reused with another body (409).
    Aborted,
    /// Refund or amount beyond what is allowed (409 over HTTP, OUT_OF_RANGE over gRPC).
    OutOfRange,
    /// Request body larger than allowed (413). gRPC answers RESOURCE_EXHAUSTED
    /// for oversized messages, which maps back to [`ErrorKind::RateLimited`].
    PayloadTooLarge,
    /// Body in a format the endpoint does not take (415; INVALID_ARGUMENT over gRPC).
    UnsupportedMediaType,
    /// Known path, wrong method (405; UNIMPLEMENTED over gRPC).
    MethodNotAllowed,
    /// Rate limited or overloaded (429).
    RateLimited,
    /// RPC or operation not implemented (501).
    Unimplemented,
    /// A dependency is down; retry later (503).
    Unavailable,
    /// The deadline ran out (504).
    DeadlineExceeded,
    /// The call was cut before an answer came: tonic reports its own
    /// client deadline as CANCELLED ("Timeout expired"). Over HTTP it is the
    /// gateway's deadline, 504 like [`ErrorKind::DeadlineExceeded`]: a live
    /// client never sees a 499.
    Cancelled,
    /// A dependency failed mid-call (connection reset, broken stream): tonic
    /// reports it as UNKNOWN "transport error". 502; safe to retry with the
    /// same idempotency key.
    BadGateway,
    /// Our fault. Clients see a generic message (500).
    Internal,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Mapping {
    pub kind: ErrorKind,
    pub code: Code,
    pub http: u16,
    /// Short human title used in problem documents.
    pub title: &'static str,
    /// Whether a caller may retry the same request unchanged.
    pub retryable: bool,
}

/// The order in which [`ErrorKind::from_grpc_code`] and
/// [`ErrorKind::from_http_status`] look for a kind: for a code or HTTP status
/// that several kinds share, the first row wins when mapping back. The rows
/// themselves come from [`ErrorKind::mapping`].
pub const TABLE: &[Mapping] = &[
    *ErrorKind::InvalidArgument.mapping(),
    *ErrorKind::Malformed.mapping(),
    *ErrorKind::Unauthenticated.mapping(),
    *ErrorKind::PermissionDenied.mapping(),
    *ErrorKind::NotFound.mapping(),
    *ErrorKind::AlreadyExists.mapping(),
    *ErrorKind::FailedPrecondition.mapping(),
    *ErrorKind::Aborted.mapping(),
    *ErrorKind::OutOfRange.mapping(),
    *ErrorKind::RateLimited.mapping(),
    *ErrorKind::PayloadTooLarge.mapping(),
    *ErrorKind::UnsupportedMediaType.mapping(),
    *ErrorKind::MethodNotAllowed.mapping(),
    *ErrorKind::Unimplemented.mapping(),
    *ErrorKind::Unavailable.mapping(),
    *ErrorKind::DeadlineExceeded.mapping(),
    *ErrorKind::Cancelled.mapping(),
    *ErrorKind::BadGateway.mapping(),
    *ErrorKind::Internal.mapping(),
];

// Each kind appears once in the table, so lookups by kind and back agree.
const _: () = {
    let mut i = 0;
    while i < TABLE.len() {
        let mut j = i + 1;
        while j < TABLE.len() {
            assert!(
                TABLE[i].kind as usize != TABLE[j].kind as usize,
                "a kind appears twice in TABLE"
            );
            j += 1;
        }
        i += 1;
    }
};

/// One row of the mapping, as a `&'static` constant.
macro_rules! row {
    ($kind:ident, $code:ident, $http:literal, $title:literal, $retryable:literal) => {{
        const ROW: Mapping = Mapping {
            kind: ErrorKind::$kind,
            code: Code::$code,
            http: $http,
            title: $title,
            retryable: $retryable,
        };
        &ROW
    }};
}

impl ErrorKind {
    /// Every kind, in table order.
    pub fn all() -> impl Iterator<Item = ErrorKind> {
        TABLE.iter().map(|m| m.kind)
    }

    /// The kind's gRPC code, HTTP status, title and retryability. The match
    /// is exhaustive: a new kind does not compile until it has its row.
    pub const fn mapping(self) -> &'static Mapping {
        match self {
            ErrorKind::InvalidArgument => {
                row!(
                    InvalidArgument,
                    InvalidArgument,
                    422,
                    "Invalid request",
                    false
                )
            }
            ErrorKind::Malformed => {
                row!(Malformed, InvalidArgument, 400, "Malformed request", false)
            }
            ErrorKind::Unauthenticated => {
                row!(
                    Unauthenticated,
                    Unauthenticated,
                    401,
                    "Unauthenticated",
                    false
                )
            }
            ErrorKind::PermissionDenied => {
                row!(PermissionDenied, PermissionDenied, 403, "Forbidden", false)
            }
            ErrorKind::NotFound => row!(NotFound, NotFound, 404, "Not found", false),
            ErrorKind::AlreadyExists => {
                row!(AlreadyExists, AlreadyExists, 409, "Already exists", false)
            }
            ErrorKind::FailedPrecondition => {
                row!(
                    FailedPrecondition,
                    FailedPrecondition,
                    409,
                    "Conflict",
                    false
                )
            }
            ErrorKind::Aborted => row!(Aborted, Aborted, 409, "Conflict", true),
            ErrorKind::OutOfRange => row!(OutOfRange, OutOfRange, 409, "Out of range", false),
            ErrorKind::RateLimited => {
                row!(
                    RateLimited,
                    ResourceExhausted,
                    429,
                    "Too many requests",
                    true
                )
            }
            ErrorKind::PayloadTooLarge => {
                row!(
                    PayloadTooLarge,
                    ResourceExhausted,
                    413,
                    "Payload too large",
                    false
                )
            }
            ErrorKind::UnsupportedMediaType => {
                row!(
                    UnsupportedMediaType,
                    InvalidArgument,
                    415,
                    "Unsupported media type",
                    false
                )
            }
            ErrorKind::MethodNotAllowed => {
                row!(
                    MethodNotAllowed,
                    Unimplemented,
                    405,
                    "Method not allowed",
                    false
                )
            }
            ErrorKind::Unimplemented => {
                row!(Unimplemented, Unimplemented, 501, "Not implemented", false)
            }
            ErrorKind::Unavailable => {
                row!(Unavailable, Unavailable, 503, "Service unavailable", true)
            }
            ErrorKind::DeadlineExceeded => {
                row!(
                    DeadlineExceeded,
                    DeadlineExceeded,
                    504,
                    "Gateway timeout",
                    true
                )
            }
            ErrorKind::Cancelled => row!(Cancelled, Cancelled, 504, "Gateway timeout", true),
            ErrorKind::BadGateway => row!(BadGateway, Unknown, 502, "Bad gateway", true),
            ErrorKind::Internal => row!(Internal, Internal, 500, "Internal error", false),
        }
    }

    pub fn grpc_code(self) -> Code {
        self.mapping().code
    }

    pub fn http_status(self) -> StatusCode {
        StatusCode::from_u16(self.mapping().http).expect("table holds valid HTTP statuses")
    }

    pub fn title(self) -> &'static str {
        self.mapping().title
    }

    pub fn is_retryable(self) -> bool {
        self.mapping().retryable
    }

    /// The kind a gRPC code stands for. Codes with no row of their own
    /// (DATA_LOSS) are internal errors.
    pub fn from_grpc_code(code: Code) -> ErrorKind {
        TABLE
            .iter()
            .find(|m| m.code == code)
            .map(|m| m.kind)
            .unwrap_or(ErrorKind::Internal)
    }

    /// The kind an HTTP status stands for, for statuses in the table; other
    /// 4xx are invalid requests and other 5xx internal errors.
    pub fn from_http_status(status: StatusCode) -> Option<ErrorKind> {
        if let Some(m) = TABLE.iter().find(|m| m.http == status.as_u16()) {
            return Some(m.kind);
        }
        if status.is_client_error() {
            Some(ErrorKind::InvalidArgument)
        } else if status.is_server_error() {
            Some(ErrorKind::Internal)
        } else {
            None
        }
    }

    /// A `tonic::Status` of this kind with a message for the client.
    pub fn status(self, message: impl Into<String>) -> tonic::Status {
        tonic::Status::new(self.grpc_code(), message)
    }
}

impl From<Code> for ErrorKind {
    fn from(code: Code) -> Self {
        ErrorKind::from_grpc_code(code)
    }
}

impl From<ErrorKind> for Code {
    fn from(kind: ErrorKind) -> Self {
        kind.grpc_code()
    }
}

#[cfg(test)]
mod tests {
    use crate::ErrorKind;
    use crate::error::TABLE;
    use http::StatusCode;
    use tonic::Code;

    #[test]
    fn every_kind_has_exactly_one_row() {
        for kind in ErrorKind::all() {
            assert_eq!(
                TABLE.iter().filter(|m| m.kind == kind).count(),
                1,
                "{kind:?}"
            );
        }
        // Every variant of the enum appears (match is exhaustive: adding a
        // variant without a row fails to compile here).
        for kind in ErrorKind::all() {
            match kind {
                ErrorKind::InvalidArgument
                | ErrorKind::Malformed
                | ErrorKind::Unauthenticated
                | ErrorKind::PermissionDenied
                | ErrorKind::NotFound
                | ErrorKind::AlreadyExists
                | ErrorKind::FailedPrecondition
                | ErrorKind::Aborted
                | ErrorKind::OutOfRange
                | ErrorKind::PayloadTooLarge
                | ErrorKind::UnsupportedMediaType
                | ErrorKind::MethodNotAllowed
                | ErrorKind::RateLimited
                | ErrorKind::Unimplemented
                | ErrorKind::Unavailable
                | ErrorKind::DeadlineExceeded
                | ErrorKind::Cancelled
                | ErrorKind::BadGateway
                | ErrorKind::Internal => {}
            }
        }
        assert_eq!(TABLE.len(), 19);
        for kind in ErrorKind::all() {
            assert_eq!(kind.mapping().kind, kind);
        }
    }

    #[test]
    fn every_kind_round_trips_through_grpc_to_the_same_http_status() {
        for kind in ErrorKind::all() {
            let back = ErrorKind::from_grpc_code(kind.grpc_code());
            assert_eq!(back.grpc_code(), kind.grpc_code(), "{kind:?}");
            // Kinds that own their code come back unchanged.
            let shared = TABLE.iter().filter(|m| m.code == kind.grpc_code()).count() > 1;
            if !shared {
                assert_eq!(back, kind, "{kind:?} via {:?}", kind.grpc_code());
            }
        }
    }

    #[test]
    fn every_kind_round_trips_through_http() {
        for kind in ErrorKind::all() {
            let back = ErrorKind::from_http_status(kind.http_status()).expect("error status");
            assert_eq!(back.http_status(), kind.http_status(), "{kind:?}");
            let shared = TABLE
                .iter()
                .filter(|m| m.http == kind.mapping().http)
                .count()
                > 1;
            if !shared {
                assert_eq!(back, kind, "{kind:?}");
            }
        }
    }

    #[test]
    fn every_grpc_code_maps_to_an_http_error_status() {
        let codes = [
            Code::Ok,
            Code::Cancelled,
            Code::Unknown,
            Code::InvalidArgument,
            Code::DeadlineExceeded,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unimplemented,
            Code::Internal,
            Code::Unavailable,
            Code::DataLoss,
            Code::Unauthenticated,
        ];
        for code in codes {
            let status = ErrorKind::from_grpc_code(code).http_status();
            assert!(status.as_u16() >= 400, "{code:?} -> {status}");
        }
    }

    #[test]
    fn conventions_of_the_shared_table_hold() {
        assert_eq!(ErrorKind::NotFound.http_status(), StatusCode::NOT_FOUND);
        assert_eq!(ErrorKind::from(Code::InvalidArgument).http_status(), 422);
        assert_eq!(ErrorKind::from(Code::AlreadyExists).http_status(), 409);
        assert_eq!(ErrorKind::from(Code::Aborted).http_status(), 409);
        assert_eq!(ErrorKind::from(Code::FailedPrecondition).http_status(), 409);
        assert_eq!(ErrorKind::from(Code::ResourceExhausted).http_status(), 429);
        assert_eq!(ErrorKind::from(Code::Unavailable).http_status(), 503);
        assert_eq!(ErrorKind::from(Code::DeadlineExceeded).http_status(), 504);
        assert_eq!(ErrorKind::from(Code::Unknown).http_status(), 502);
        assert_eq!(ErrorKind::from(Code::Cancelled).http_status(), 504);
        assert!(ErrorKind::from(Code::Unknown).is_retryable());
        assert_eq!(ErrorKind::from(Code::DataLoss).http_status(), 500);
        assert_eq!(
            ErrorKind::from_http_status(StatusCode::PAYLOAD_TOO_LARGE),
            Some(ErrorKind::PayloadTooLarge)
        );
        assert_eq!(
            ErrorKind::from_http_status(StatusCode::BAD_REQUEST),
            Some(ErrorKind::Malformed)
        );
        assert_eq!(
            ErrorKind::from_http_status(StatusCode::IM_A_TEAPOT),
            Some(ErrorKind::InvalidArgument)
        );
        assert_eq!(ErrorKind::from_http_status(StatusCode::OK), None);
        assert!(ErrorKind::Unavailable.is_retryable());
        assert!(!ErrorKind::InvalidArgument.is_retryable());
        let status = ErrorKind::NotFound.status("no such order");
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "no such order");
    }
}

/// Parses an optional field: `None` stays `None`; a parse error goes into
/// `errors` (and gives `None`) so that every bad field is reported at once.
pub fn parse_optional<I, T, E>(
    value: Option<I>,
    parse: impl FnOnce(I) -> Result<T, E>,
    errors: &mut Vec<E>,
) -> Option<T> {
    match value.map(parse) {
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            errors.push(e);
            None
        }
        None => None,
    }
}

/// One invalid input field: the vocabulary every service's validation
/// speaks (`items[0].quantity`, `shipping_address.city`…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `INVALID_ARGUMENT` listing `errors` (see [`invalid_fields`]).
pub fn invalid(errors: impl IntoIterator<Item = FieldError>) -> tonic::Status {
    let errors: Vec<FieldError> = errors.into_iter().collect();
    invalid_fields(errors.iter().map(|e| (e.field.as_str(), e.message.clone())))
}

/// `INVALID_ARGUMENT` carrying a `google.rpc.BadRequest` with one violation
/// per field, so the gateway can answer 422 with field errors.
pub fn invalid_fields<'a>(
    violations: impl IntoIterator<Item = (&'a str, String)>,
) -> tonic::Status {
    use tonic_types::{ErrorDetails, StatusExt};
    let violations: Vec<tonic_types::FieldViolation> = violations
        .into_iter()
        .map(|(field, message)| tonic_types::FieldViolation::new(field, message))
        .collect();
    let summary = violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ");
    tonic::Status::with_error_details(
        tonic::Code::InvalidArgument,
        summary,
        ErrorDetails::with_bad_request(violations),
    )
}

/// The field violations of a status built by [`invalid_fields`].
pub fn field_violations(status: &tonic::Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| {
            b.field_violations
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}

/// The `google.rpc.ErrorInfo` domain of statuses built by [`refused`].
const ERROR_DOMAIN: &str = "shopmesh";

/// A kind whose gRPC code others share (413 and 415 travel as
/// RESOURCE_EXHAUSTED and INVALID_ARGUMENT), and the reason naming it.
const NAMED_KINDS: [(ErrorKind, &str); 2] = [
    (ErrorKind::PayloadTooLarge, "PAYLOAD_TOO_LARGE"),
    (ErrorKind::UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE"),
];

/// A refusal of `kind` whose code is shared with other kinds, carrying a
/// `google.rpc.ErrorInfo` that names it, so [`kind_of`] (the gateway) maps
/// it back to its own HTTP status.
pub fn refused(kind: ErrorKind, message: impl Into<String>) -> tonic::Status {
    use tonic_types::{ErrorDetails, StatusExt};
    match NAMED_KINDS.iter().find(|(k, _)| *k == kind) {
        Some((_, reason)) => tonic::Status::with_error_details(
            kind.grpc_code(),
            message,
            ErrorDetails::with_error_info(*reason, ERROR_DOMAIN, std::collections::HashMap::new()),
        ),
        None => kind.status(message),
    }
}

/// The kind of an upstream's status: the one its `ErrorInfo` names (see
/// [`refused`]), else the one its code stands for.
pub fn kind_of(status: &tonic::Status) -> ErrorKind {
    use tonic_types::StatusExt;
    status
        .get_details_error_info()
        .filter(|info| info.domain == ERROR_DOMAIN)
        .and_then(|info| {
            NAMED_KINDS
                .iter()
                .find(|(kind, reason)| *reason == info.reason && kind.grpc_code() == status.code())
                .map(|(kind, _)| *kind)
        })
        .unwrap_or_else(|| ErrorKind::from_grpc_code(status.code()))
}

/// UNAVAILABLE from a server that is alive but shedding work it cannot take
/// now, with a `google.rpc.RetryInfo` saying when to try again. The circuit
/// breaker does not count it as a failure of the peer (the peer answered at
/// once), and the gateway turns the delay into `Retry-After`.
pub fn overloaded(message: impl Into<String>, retry_after: std::time::Duration) -> tonic::Status {
    use tonic_types::{ErrorDetails, StatusExt};
    tonic::Status::with_error_details(
        tonic::Code::Unavailable,
        message,
        ErrorDetails::with_retry_info(Some(retry_after)),
    )
}

/// RESOURCE_EXHAUSTED for a caller over a limit (429 over HTTP), with a
/// `google.rpc.RetryInfo` saying when it may try again.
pub fn limited(message: impl Into<String>, retry_after: std::time::Duration) -> tonic::Status {
    use tonic_types::{ErrorDetails, StatusExt};
    tonic::Status::with_error_details(
        tonic::Code::ResourceExhausted,
        message,
        ErrorDetails::with_retry_info(Some(retry_after)),
    )
}

/// The retry delay a status carries (`google.rpc.RetryInfo`), if any.
pub fn retry_after(status: &tonic::Status) -> Option<std::time::Duration> {
    use tonic_types::StatusExt;
    status.get_details_retry_info()?.retry_delay
}

#[cfg(test)]
mod details_tests {
    use super::ErrorKind;

    #[test]
    fn refusals_keep_their_kind_across_grpc() {
        for kind in [ErrorKind::PayloadTooLarge, ErrorKind::UnsupportedMediaType] {
            let status = super::refused(kind, "no");
            assert_eq!(status.code(), kind.grpc_code());
            assert_eq!(super::kind_of(&status), kind);
        }
        let plain = super::refused(ErrorKind::InvalidArgument, "no");
        assert_eq!(super::kind_of(&plain), ErrorKind::InvalidArgument);
        let exhausted = tonic::Status::resource_exhausted("slow down");
        assert_eq!(super::kind_of(&exhausted), ErrorKind::RateLimited);
    }

    #[test]
    fn overloaded_carries_its_retry_delay() {
        let status = super::overloaded("busy", std::time::Duration::from_millis(1500));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), "busy");
        assert_eq!(
            super::retry_after(&status),
            Some(std::time::Duration::from_millis(1500))
        );
        assert_eq!(
            super::retry_after(&tonic::Status::unavailable("down")),
            None
        );
    }

    #[test]
    fn field_violations_round_trip() {
        let status = super::invalid_fields([
            ("email", "must be valid".to_string()),
            ("password", "too short".to_string()),
        ]);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("email: must be valid"));
        assert_eq!(
            super::field_violations(&status),
            vec![
                ("email".into(), "must be valid".into()),
                ("password".into(), "too short".into())
            ]
        );
        assert!(super::field_violations(&tonic::Status::not_found("x")).is_empty());
    }
}
