//! What can go wrong with a store operation, and how it maps to gRPC.

use super::*;

/// What can go wrong with a store operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("document not found")]
    NotFound,
    /// A unique index (or the id) already holds the value.
    #[error("a document with the same {index} already exists")]
    AlreadyExists { index: String },
    /// The document changed since it was read.
    #[error("version conflict: the document changed since it was read")]
    VersionConflict,
    /// The backend cannot be reached (or timed out); retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The request itself is wrong: undeclared field, bad cursor, wrong type…
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// Anything else the backend reported: our fault.
    #[error("store failure: {0}")]
    Backend(String),
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
    fn from(err: StoreError) -> Self {
        let kind = err.kind();
        match kind {
            ErrorKind::Internal => {
                tracing::error!(error = %err, "store failure");
                kind.status("internal error")
            }
            ErrorKind::Unavailable => {
                tracing::warn!(error = %err, "store unavailable");
                kind.status("storage is unavailable, retry later")
            }
            _ => kind.status(err.to_string()),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
