//! Deadlines that travel with a call.
//!
//! A caller puts its remaining time in the `grpc-timeout` header; the
//! server reads it into a [`Budget`] and gives every call it makes on the
//! request's behalf what is left (less a small margin for the answer to
//! travel back), so a chain of calls never outlives the request that started
//! it and a service stops working for a caller that has given up.

use std::time::Duration;

use tokio::time::Instant;

/// Time kept back from each outgoing call so the caller still has time to
/// turn the answer into its own reply.
pub const MARGIN: Duration = Duration::from_millis(50);

/// What is left of a request's time.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    deadline: Instant,
}

impl Budget {
    /// A budget of `total` from now.
    pub fn new(total: Duration) -> Budget {
        Budget {
            deadline: Instant::now() + total,
        }
    }

    /// The budget an incoming request was sent with (`grpc-timeout`), never
    /// more than `cap` (the server's own limit); `cap` when the caller set none.
    pub fn from_metadata(metadata: &tonic::metadata::MetadataMap, cap: Duration) -> Budget {
        let sent = metadata
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        Budget::new(sent.map_or(cap, |d| d.min(cap)))
    }

    /// Time left (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    pub fn is_spent(&self) -> bool {
        self.remaining().is_zero()
    }

    /// The budget of a call made now on this request's behalf.
    pub fn for_call(&self) -> Duration {
        self.remaining()
            .saturating_sub(MARGIN)
            .max(Duration::from_millis(1))
    }

    /// A request carrying what is left as its `grpc-timeout`.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.for_call());
        request
    }

    /// Runs `work` within the budget; DEADLINE_EXCEEDED when it runs out.
    pub async fn run<T>(
        &self,
        work: impl Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        match tokio::time::timeout_at(self.deadline, work).await {
            Ok(result) => result,
            Err(_) => Err(tonic::Status::deadline_exceeded(
                "the caller's deadline passed",
            )),
        }
    }
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use crate::deadline::{Budget, parse_grpc_timeout};
    use std::time::Duration;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "S", "5", "5x", "123456789S", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_is_capped_and_shrinks() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert("grpc-timeout", "2S".parse().unwrap());
        let budget = Budget::from_metadata(&metadata, Duration::from_secs(30));
        assert_eq!(budget.remaining(), Duration::from_secs(2));
        let capped = Budget::from_metadata(&metadata, Duration::from_secs(1));
        assert_eq!(capped.remaining(), Duration::from_secs(1));
        let unset =
            Budget::from_metadata(&tonic::metadata::MetadataMap::new(), Duration::from_secs(3));
        assert_eq!(unset.remaining(), Duration::from_secs(3));
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(budget.remaining(), Duration::from_millis(500));
        assert_eq!(budget.for_call(), Duration::from_millis(450));
        let request = budget.request(());
        assert_eq!(
            request
                .metadata()
                .get("grpc-timeout")
                .unwrap()
                .to_str()
                .unwrap(),
            "450000u"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(budget.is_spent());
    }

    #[tokio::test(start_paused = true)]
    async fn work_past_the_budget_is_cut_with_deadline_exceeded() {
        let budget = Budget::new(Duration::from_millis(100));
        let result: Result<(), tonic::Status> = budget
            .run(async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(())
            })
            .await;
        assert_eq!(result.unwrap_err().code(), tonic::Code::DeadlineExceeded);
        let quick = Budget::new(Duration::from_secs(1))
            .run(async { Ok(7) })
            .await;
        assert_eq!(quick.unwrap(), 7);
    }
}
