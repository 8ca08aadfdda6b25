//! What can go wrong on the bus, and what a handler says went wrong.

use crate::error::ErrorKind;

/// What can go wrong talking to the bus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The broker cannot be reached or did not confirm in time; retry later.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    /// A malformed subject, consumer name or envelope.
    #[error("invalid event bus request: {0}")]
    Invalid(String),
    /// Anything else the broker said.
    #[error("event bus failure: {0}")]
    Backend(String),
}

impl BusError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BusError::Unavailable(_) => ErrorKind::Unavailable,
            BusError::Invalid(_) => ErrorKind::InvalidArgument,
            BusError::Backend(_) => ErrorKind::Internal,
        }
    }
}

/// Why a handler did not process a delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// The handler failed on this event; try again later, at most
    /// `max_deliver` times in all, then dead-letter it.
    #[error("retryable: {0}")]
    Retryable(String),
    /// What the handler needs (its store, a peer) could not be reached, or
    /// not in time. The event is not at fault: it is redelivered with the
    /// backoff for as long as the outage lasts, never dead-lettered, and
    /// such deliveries do not count against `max_deliver`, so an outage
    /// cannot drop a step the saga owes (an order's refund, a paid order's
    /// label) nor use up the retries of a later real failure. The
    /// consumer's backlog (`messaging_consumer_pending`) shows the wait.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Will never succeed (undecodable, violates an invariant): dead-letter now.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl HandlerError {
    /// A failed gRPC call (or a service's own operation answered as a
    /// status): a peer or store that is down or did not answer in time
    /// (UNAVAILABLE, DEADLINE_EXCEEDED) is [`HandlerError::Unavailable`];
    /// anything else, a conflict or a refusal included, is
    /// [`HandlerError::Retryable`], so it cannot be retried for ever.
    pub fn from_status(status: &tonic::Status) -> Self {
        use tonic::Code;
        let message = status.message().to_string();
        match status.code() {
            Code::Unavailable | Code::DeadlineExceeded => HandlerError::Unavailable(message),
            _ => HandlerError::Retryable(message),
        }
    }

    /// A failed store operation: [`HandlerError::Unavailable`] when the
    /// backend could not be reached, else [`HandlerError::Retryable`].
    pub fn from_store(err: &crate::store::StoreError) -> Self {
        match err {
            crate::store::StoreError::Unavailable(_) => HandlerError::Unavailable(err.to_string()),
            other => HandlerError::Retryable(other.to_string()),
        }
    }

    /// The same failure, its message prefixed with what was being done.
    pub fn context(self, doing: &str) -> Self {
        match self {
            HandlerError::Retryable(m) => HandlerError::Retryable(format!("{doing}: {m}")),
            HandlerError::Unavailable(m) => HandlerError::Unavailable(format!("{doing}: {m}")),
            HandlerError::Permanent(m) => HandlerError::Permanent(format!("{doing}: {m}")),
        }
    }
}
