//! What a gRPC status means for a span: a server fault or the caller's.

use tonic::Code;

/// Whether `code` answered by a server is the server's fault, so its span
/// is an ERROR (OpenTelemetry's gRPC conventions: UNKNOWN,
/// DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS);
/// a client's mistake (INVALID_ARGUMENT, NOT_FOUND…) is not.
pub fn is_server_fault(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// The status code's name as `error.type` carries it (`UNAVAILABLE`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `rpc.service` and `rpc.method` of a gRPC path
/// (`shop.order.v1.OrderService/CreateOrder`, leading `/` removed).
pub(super) fn rpc_names(path: &str) -> (&str, &str) {
    path.split_once('/').unwrap_or((path, ""))
}

/// Records a call's status on its span: the numeric code, and ERROR with
/// the message and `error.type` when the code is a server fault.
pub(super) fn record_status(span: &tracing::Span, code: Code, headers: &http::HeaderMap) {
    span.record("rpc.grpc.status_code", code as i64);
    if is_server_fault(code) {
        let message = headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        crate::telemetry::record_error(span, code_name(code), &message);
    }
}

/// The status of a gRPC response from its headers: errors come back as
/// trailers-only responses, so a missing `grpc-status` means OK so far
/// (the final status of a success travels in the trailers).
pub(super) fn response_code(headers: &http::HeaderMap) -> Code {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
        .unwrap_or(Code::Ok)
}
