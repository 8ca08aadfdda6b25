//! What can go wrong with a store operation, and how it maps to gRPC.

use crate::ErrorKind;
use std::fmt;
use std::sync::Arc;

/// What can go wrong with a store operation.
///
/// `Display` gives this error's own message; the driver error behind an
/// [`StoreError::Unavailable`] is its [`std::error::Error::source`], so the
/// edge can log the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    NotFound,
    /// A unique index (or the id) already holds the value.
    AlreadyExists {
        index: String,
    },
    /// The document changed since it was read.
    VersionConflict,
    /// The backend cannot be reached (or timed out); retry later.
    Unavailable(Cause),
    /// The request itself is wrong: undeclared field, bad cursor, wrong type…
    Invalid(String),
    /// Anything else the backend reported: our fault. Drivers' errors are
    /// flattened with their whole chain (see [`Cause::chain`]).
    Backend(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound => f.write_str("document not found"),
            StoreError::AlreadyExists { index } => {
                write!(f, "a document with the same {index} already exists")
            }
            StoreError::VersionConflict => {
                f.write_str("version conflict: the document changed since it was read")
            }
            StoreError::Unavailable(cause) => write!(f, "store unavailable: {cause}"),
            StoreError::Invalid(message) => write!(f, "invalid store request: {message}"),
            StoreError::Backend(message) => write!(f, "store failure: {message}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Unavailable(cause) => cause.source(),
            _ => None,
        }
    }
}

/// Why a backend failed: a message of ours and, when a driver reported it,
/// the driver's error (with its own chain). Equal when the messages are.
#[derive(Debug, Clone)]
pub struct Cause {
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Cause {
    /// A cause with no underlying error.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// A cause with the error that produced it as its source.
    pub fn with_source(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Arc::new(source)),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The underlying error, if any.
    pub fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }

    /// `err` and its sources as one line, `outer: inner: …`, skipping a
    /// source whose text the line already holds (errors that repeat their
    /// source in their own message).
    pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
        let mut text = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            let line = cause.to_string();
            if !text.contains(&line) {
                text.push_str(": ");
                text.push_str(&line);
            }
            source = cause.source();
        }
        text
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl Eq for Cause {}

impl From<String> for Cause {
    fn from(message: String) -> Self {
        Cause::new(message)
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Self {
        Cause::new(message)
    }
}

impl StoreError {
    /// Kind for the shared error table.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound => ErrorKind::NotFound,
            StoreError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            StoreError::VersionConflict => ErrorKind::Aborted,
            StoreError::Unavailable(_) => ErrorKind::Unavailable,
            StoreError::Invalid(_) => ErrorKind::InvalidArgument,
            StoreError::Backend(_) => ErrorKind::Internal,
        }
    }
}

impl StoreError {
    /// For a listing: a rejected query here means the client's cursor.
    pub fn into_list_status(self) -> tonic::Status {
        match self {
            StoreError::Invalid(_) => {
                crate::error::invalid_fields([("cursor", "invalid cursor".to_string())])
            }
            other => other.into(),
        }
    }
}

impl From<StoreError> for tonic::Status {
    /// Logs our faults once, here, with the whole cause chain; the client
    /// sees a generic message for them.
    fn from(err: StoreError) -> Self {
        let kind = err.kind();
        match kind {
            ErrorKind::Internal => {
                tracing::error!(error = %Cause::chain(&err), "store failure");
                kind.status("internal error")
            }
            ErrorKind::Unavailable => {
                tracing::warn!(error = %Cause::chain(&err), "store unavailable");
                kind.status("storage is unavailable, retry later")
            }
            _ => kind.status(err.to_string()),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use crate::store::{Cause, StoreError};
    use std::error::Error as _;
    use std::fmt;

    fn refused() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused")
    }

    #[test]
    fn unavailable_keeps_the_driver_error_as_its_source() {
        let err =
            StoreError::Unavailable(Cause::with_source("database connection failed", refused()));
        assert_eq!(
            err.to_string(),
            "store unavailable: database connection failed"
        );
        let source = err.source().expect("a source");
        assert_eq!(source.to_string(), "connection refused");
        assert_eq!(
            Cause::chain(&err),
            "store unavailable: database connection failed: connection refused"
        );
        // A clone shares the source.
        assert!(err.clone().source().is_some());
    }

    #[test]
    fn the_chain_skips_sources_the_message_already_repeats() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "error communicating with database: {}", self.0)
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let err = StoreError::Unavailable(Cause::with_source(
            "database connection failed",
            Wrapper(refused()),
        ));
        assert_eq!(
            Cause::chain(&err),
            "store unavailable: database connection failed: error communicating with database: connection refused"
        );
    }

    #[test]
    fn errors_compare_by_kind_and_message() {
        let a = StoreError::Unavailable(Cause::with_source("down", refused()));
        assert_eq!(a, StoreError::Unavailable("down".into()));
        assert_ne!(a, StoreError::Unavailable("other".into()));
        assert_ne!(a, StoreError::Backend("down".into()));
        assert_ne!(StoreError::VersionConflict, StoreError::NotFound);
    }

    #[test]
    fn clients_see_the_same_statuses() {
        let status: tonic::Status =
            StoreError::Unavailable(Cause::with_source("database connection failed", refused()))
                .into();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), "storage is unavailable, retry later");
        let status: tonic::Status = StoreError::Backend("SQLSTATE 42P01: no table".into()).into();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "internal error");
        let status: tonic::Status = StoreError::Invalid("bad field".into()).into();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "invalid store request: bad field");
        let status: tonic::Status = StoreError::AlreadyExists {
            index: "email".into(),
        }
        .into();
        assert_eq!(status.code(), tonic::Code::AlreadyExists);
        assert_eq!(
            status.message(),
            "a document with the same email already exists"
        );
        let status: tonic::Status = StoreError::NotFound.into();
        assert_eq!(status.message(), "document not found");
        let status: tonic::Status = StoreError::VersionConflict.into();
        assert_eq!(status.code(), tonic::Code::Aborted);
        assert_eq!(
            status.message(),
            "version conflict: the document changed since it was read"
        );
    }
}
