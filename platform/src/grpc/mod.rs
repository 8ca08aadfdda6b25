//! gRPC server and client plumbing shared by every service.
//!
//! [`GrpcServer`] always adds `grpc.health.v1.Health` and server reflection
//! (v1 and v1alpha), a tracing layer that continues the caller's W3C trace,
//! a per-request timeout, a per-connection concurrency limit with load
//! shedding, and graceful shutdown. [`channel`] builds a lazily-connecting
//! client channel with a deadline, a concurrency limit and trace-context
//! injection; [`Retry`] retries idempotent calls within a budget.

mod client;
mod retry;
mod server;
mod status;
mod trace;

pub use client::{GrpcChannel, TraceContext, channel, channel_for, channel_for_long_calls};
pub use retry::Retry;
pub use server::{GrpcServer, ReadinessCheck, bind, nodelay_incoming, store_and_bus};
pub use status::{code_name, is_server_fault};

#[cfg(test)]
mod tests {
    use crate::ServiceId;
    use crate::grpc::{GrpcServer, Retry, code_name, is_server_fault, nodelay_incoming};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;
    use tonic::Code;
    use tonic::service::Routes;
    use tonic::transport::Endpoint;

    #[test]
    fn only_server_faults_mark_a_span_as_an_error() {
        for code in [
            Code::Unavailable,
            Code::Internal,
            Code::DeadlineExceeded,
            Code::Unknown,
        ] {
            assert!(is_server_fault(code), "{code:?}");
        }
        for code in [
            Code::Ok,
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::FailedPrecondition,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::Aborted,
        ] {
            assert!(!is_server_fault(code), "{code:?}");
        }
        assert_eq!(code_name(Code::Unavailable), "UNAVAILABLE");
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
    }

    async fn count_until_ok(
        retry: &Retry,
        fail_times: u32,
        code: Code,
    ) -> (Result<u32, tonic::Status>, u32) {
        let calls = AtomicU32::new(0);
        let result = retry
            .run(|| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < fail_times {
                        Err(tonic::Status::new(code, "boom"))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        (result, calls.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn accepted_streams_have_nodelay_set() {
        use futures::StreamExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = Box::pin(nodelay_incoming(listener));
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Linux leaves it off by default: the adapter is what turns it on.
        assert!(!client.nodelay().unwrap());
        let accepted = tokio::time::timeout(Duration::from_secs(5), incoming.next())
            .await
            .expect("a connection is accepted")
            .expect("the stream goes on")
            .expect("accept succeeds");
        assert_eq!(accepted.peer_addr().unwrap(), client.local_addr().unwrap());
        assert!(
            accepted.nodelay().unwrap(),
            "TCP_NODELAY on the server side"
        );
    }

    #[tokio::test]
    async fn the_server_serves_through_the_nodelay_adapter() {
        let settings = crate::config::GrpcSettings::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = GrpcServer::new(ServiceId::User, &settings, proto::FILE_DESCRIPTOR_SET)
            .serve(Routes::default(), listener)
            .await
            .unwrap();
        let channel = Endpoint::from_shared(format!("http://{}", running.addr()))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let reply = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
        assert_eq!(reply.into_inner().status, 1, "SERVING");
        running.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_failures_are_retried_until_success() {
        let (result, calls) = count_until_ok(&Retry::new(2), 2, Code::Unavailable).await;
        assert_eq!(result.unwrap(), 2);
        assert_eq!(calls, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_at_the_limit() {
        let (result, calls) = count_until_ok(&Retry::new(2), 10, Code::Unavailable).await;
        assert_eq!(result.unwrap_err().code(), Code::Unavailable);
        assert_eq!(calls, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn client_faults_are_never_retried() {
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::PermissionDenied,
            Code::Internal,
            Code::DeadlineExceeded,
        ] {
            let (result, calls) = count_until_ok(&Retry::new(5), 1, code).await;
            assert_eq!(result.unwrap_err().code(), code);
            assert_eq!(calls, 1, "{code:?}");
        }
    }

    #[test]
    fn a_broken_connection_may_be_retried_but_a_servers_unknown_not() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let broken = tonic::Status::from_error(Box::new(reset));
        assert_eq!(broken.code(), Code::Unknown);
        assert!(Retry::may_retry(&broken), "{broken:?}");
        assert!(!Retry::may_retry(&tonic::Status::unknown(
            "the handler failed"
        )));
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_caps_retries_across_calls() {
        let retry = Retry::new(1);
        let mut total = 0;
        // 1000 failing calls: without a budget there would be 1000 retries;
        // the budget allows its reserve (10/s over 10 s) plus 20 % of calls.
        for _ in 0..1000 {
            total += count_until_ok(&retry, u32::MAX, Code::Unavailable).await.1;
        }
        let retries = total - 1000;
        assert!(
            retries <= 100 + 200 + 10,
            "budget allowed {retries} retries"
        );
        assert!(
            retries >= 10,
            "the floor still allows some retries: {retries}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_waits_between_attempts() {
        let started = tokio::time::Instant::now();
        let _ = count_until_ok(&Retry::new(3), 3, Code::Unavailable).await;
        // 25 ms * (1 + 2 + 4), at least half of each.
        assert!(
            started.elapsed() >= Duration::from_millis(87),
            "{:?}",
            started.elapsed()
        );
    }
}
