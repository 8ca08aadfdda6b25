//! Bounded retries of idempotent calls.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tonic::Code;
use tower::retry::budget::{Budget, TpsBudget};

use crate::config::GrpcSettings;

/// Bounded retries of idempotent calls: only retryable codes, exponential
/// backoff with jitter, and a shared budget so that retries never multiply
/// load on a struggling peer (at most ~20 % extra requests, plus a floor).
#[derive(Clone, Debug)]
pub struct Retry {
    max_retries: u32,
    base_backoff: Duration,
    budget: Arc<TpsBudget>,
}

impl Retry {
    pub fn new(max_retries: u32) -> Self {
        Self {
            max_retries,
            base_backoff: Duration::from_millis(25),
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
        }
    }

    pub fn from_settings(settings: &GrpcSettings) -> Self {
        Self::new(settings.client_retries)
    }

    /// Codes after which an idempotent call may be sent again.
    pub fn is_retryable(code: Code) -> bool {
        matches!(
            code,
            Code::Unavailable | Code::ResourceExhausted | Code::Aborted
        )
    }

    /// Whether an idempotent call that failed with `status` may be sent
    /// again: a retryable code, or a connection that broke mid-call, before
    /// the answer or while its body was read (a replica killed or cut off),
    /// which another replica can answer. Such a failure is UNKNOWN with the
    /// local transport's error as its source; an UNKNOWN a server sent has
    /// no source.
    pub fn may_retry(status: &tonic::Status) -> bool {
        Self::is_retryable(status.code())
            || (status.code() == Code::Unknown && std::error::Error::source(status).is_some())
    }

    /// Runs `call` until it succeeds, fails with a non-retryable code, runs
    /// out of attempts, or the budget says no. Only for idempotent calls.
    pub async fn run<T, F, Fut>(&self, mut call: F) -> Result<T, tonic::Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        self.budget.deposit();
        let mut attempt = 0u32;
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(status)
                    if attempt < self.max_retries
                        && Self::may_retry(&status)
                        && self.budget.withdraw() =>
                {
                    attempt += 1;
                    let backoff = self.base_backoff * 2u32.pow(attempt - 1);
                    // Full jitter from the clock's sub-microsecond bits: no RNG dependency needed.
                    let jitter = u64::from(
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.subsec_nanos())
                            .unwrap_or(0),
                    ) % (backoff.as_millis() as u64 + 1);
                    tracing::debug!(attempt, code = ?status.code(), "retrying idempotent call");
                    tokio::time::sleep(backoff / 2 + Duration::from_millis(jitter / 2)).await;
                }
                Err(status) => return Err(status),
            }
        }
    }
}
