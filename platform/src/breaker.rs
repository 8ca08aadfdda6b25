//! A circuit breaker for outgoing gRPC channels, as a tower service.
//!
//! After `failures` consecutive failed calls to a peer (no answer at all,
//! or UNAVAILABLE / DEADLINE_EXCEEDED from it) the circuit opens: calls fail
//! at once with UNAVAILABLE instead of each waiting for a timeout, so a dead
//! peer does not hold callers' threads, connections and deadlines. After
//! `open_for` one trial call goes through (half-open): if it succeeds the
//! circuit closes, if it fails it opens again. Any other answer (OK,
//! NOT_FOUND, INVALID_ARGUMENT…) shows the peer is alive and resets the
//! count.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tonic::Code;

/// When a circuit opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the circuit; 0 turns the breaker off.
    pub failures: u32,
    /// How long it stays open before a trial call.
    pub open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failures: 5,
            open_for: Duration::from_secs(5),
        }
    }
}

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A trial call is out; others are refused until it ends.
    HalfOpen,
}

/// What the breaker does with one call.
enum Admit {
    Call { trial: bool },
    Refuse,
}

#[derive(Clone, Debug)]
pub struct Breaker<S> {
    inner: S,
    state: Arc<Mutex<State>>,
    settings: BreakerSettings,
    peer: Arc<str>,
}

impl<S> Breaker<S> {
    pub fn new(inner: S, settings: BreakerSettings, peer: &str) -> Self {
        Self {
            inner,
            state: Arc::new(Mutex::new(State::Closed { failures: 0 })),
            settings,
            peer: peer.into(),
        }
    }

    /// Whether calls are refused right now.
    pub fn is_open(&self) -> bool {
        matches!(
            *self.lock(),
            State::Open { until } if Instant::now() < until
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain value: a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admit(&self) -> Admit {
        if self.settings.failures == 0 {
            return Admit::Call { trial: false };
        }
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Admit::Call { trial: false },
            State::Open { until } if Instant::now() < until => Admit::Refuse,
            State::Open { .. } => {
                *state = State::HalfOpen;
                Admit::Call { trial: true }
            }
            State::HalfOpen => Admit::Refuse,
        }
    }

    fn record(state: &Mutex<State>, settings: BreakerSettings, peer: &str, trial: bool, ok: bool) {
        if settings.failures == 0 {
            return;
        }
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        let open = || State::Open {
            until: Instant::now() + settings.open_for,
        };
        let gauge = || crate::metrics::BREAKER_OPEN.with_label_values(&[peer]);
        match (&*state, ok) {
            (_, true) => {
                if trial {
                    tracing::info!(peer, "circuit closed: the peer answers again");
                    gauge().set(0);
                }
                *state = State::Closed { failures: 0 };
            }
            (State::HalfOpen, false) if trial => {
                tracing::warn!(peer, "trial call failed; circuit open again");
                *state = open();
            }
            (State::Closed { failures }, false) => {
                let failures = failures + 1;
                if failures >= settings.failures {
                    tracing::warn!(
                        peer,
                        failures,
                        open_for_ms = settings.open_for.as_millis() as u64,
                        "circuit open: calls fail fast"
                    );
                    gauge().set(1);
                    *state = open();
                } else {
                    *state = State::Closed { failures };
                }
            }
            // A call admitted before the circuit opened: already counted.
            (_, false) => {}
        }
    }
}

/// Whether an answer shows the peer is failing (not merely refusing). An
/// UNAVAILABLE that says when to retry ([`crate::error::overloaded`]) comes
/// from a live peer shedding load: opening the circuit would turn its few
/// refusals into refusing everything.
fn is_failure(status: &tonic::Status) -> bool {
    match status.code() {
        Code::DeadlineExceeded => true,
        Code::Unavailable => crate::error::retry_after(status).is_none(),
        _ => false,
    }
}

/// A trailers-only gRPC answer: UNAVAILABLE, circuit open.
fn refusal<B: Default>(peer: &str) -> http::Response<B> {
    let mut response = http::Response::new(B::default());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert(
        "grpc-status",
        http::HeaderValue::from(Code::Unavailable as i32),
    );
    let message = format!("{peer} is unavailable (circuit open)");
    if let Ok(value) = http::HeaderValue::from_str(&message) {
        headers.insert("grpc-message", value);
    }
    response
}

impl<S, B, RB> tower::Service<http::Request<B>> for Breaker<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let trial = match self.admit() {
            Admit::Refuse => {
                let response = refusal(&self.peer);
                return Box::pin(async move { Ok(response) });
            }
            Admit::Call { trial } => trial,
        };
        let future = self.inner.call(request);
        let state = self.state.clone();
        let settings = self.settings;
        let peer = self.peer.clone();
        Box::pin(async move {
            let result = future.await;
            let ok = match &result {
                Err(_) => false,
                Ok(response) => !tonic::Status::from_header_map(response.headers())
                    .is_some_and(|status| is_failure(&status)),
            };
            Self::record(&state, settings, &peer, trial, ok);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::breaker::{Breaker, BreakerSettings};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
    use std::task::Context;
    use std::task::Poll;
    use std::time::Duration;
    use tonic::Code;
    use tower::{Service, ServiceExt};

    /// A peer whose answer is set by the test: 0 = OK, a gRPC code,
    /// [`SHED`], or u32::MAX for no answer at all (a transport error).
    #[derive(Clone)]
    struct Peer {
        answer: Arc<AtomicU32>,
        calls: Arc<AtomicUsize>,
    }

    /// UNAVAILABLE with a retry delay: a live peer shedding load.
    const SHED: u32 = u32::MAX - 1;

    impl Service<http::Request<()>> for Peer {
        type Response = http::Response<String>;
        type Error = &'static str;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let answer = self.answer.load(Ordering::SeqCst);
            std::future::ready(if answer == u32::MAX {
                Err("connection refused")
            } else if answer == SHED {
                let mut r = http::Response::new(String::new());
                let status = crate::error::overloaded("busy", Duration::from_secs(1));
                status.add_header(r.headers_mut()).unwrap();
                Ok(r)
            } else {
                let mut r = http::Response::new(String::new());
                if answer != 0 {
                    r.headers_mut()
                        .insert("grpc-status", http::HeaderValue::from(answer));
                }
                Ok(r)
            })
        }
    }

    fn breaker(failures: u32) -> (Breaker<Peer>, Arc<AtomicU32>, Arc<AtomicUsize>) {
        let answer = Arc::new(AtomicU32::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let peer = Peer {
            answer: answer.clone(),
            calls: calls.clone(),
        };
        let settings = BreakerSettings {
            failures,
            open_for: Duration::from_secs(5),
        };
        (Breaker::new(peer, settings, "product-svc"), answer, calls)
    }

    async fn call(b: &mut Breaker<Peer>) -> Result<Code, &'static str> {
        let r = b.ready().await?.call(http::Request::new(())).await?;
        Ok(tonic::Status::from_header_map(r.headers()).map_or(Code::Ok, |s| s.code()))
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_open_the_circuit_then_a_trial_closes_it() {
        let (mut b, answer, calls) = breaker(3);
        answer.store(u32::MAX, Ordering::SeqCst);
        for _ in 0..3 {
            assert!(call(&mut b).await.is_err());
        }
        assert!(b.is_open());
        // Refused without reaching the peer.
        assert_eq!(call(&mut b).await, Ok(Code::Unavailable));
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        // After the cool-down one trial goes through; it fails: open again.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(call(&mut b).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(call(&mut b).await, Ok(Code::Unavailable));
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        // The peer is back: the next trial closes the circuit.
        answer.store(0, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(call(&mut b).await, Ok(Code::Ok));
        assert!(!b.is_open());
        assert_eq!(call(&mut b).await, Ok(Code::Ok));
        assert_eq!(calls.load(Ordering::SeqCst), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn unavailable_answers_count_and_refusals_of_the_request_do_not() {
        let (mut b, answer, _) = breaker(2);
        answer.store(Code::Unavailable as u32, Ordering::SeqCst);
        call(&mut b).await.unwrap();
        // NOT_FOUND: the peer is alive; the count starts over.
        answer.store(Code::NotFound as u32, Ordering::SeqCst);
        assert_eq!(call(&mut b).await, Ok(Code::NotFound));
        answer.store(Code::DeadlineExceeded as u32, Ordering::SeqCst);
        call(&mut b).await.unwrap();
        assert!(!b.is_open(), "one failure since the last answer");
        call(&mut b).await.unwrap();
        assert!(b.is_open());
        let refused = b
            .ready()
            .await
            .unwrap()
            .call(http::Request::new(()))
            .await
            .unwrap();
        let status = tonic::Status::from_header_map(refused.headers()).unwrap();
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            status.message().contains("product-svc"),
            "{}",
            status.message()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_shedding_with_a_retry_delay_keeps_the_circuit_closed() {
        let (mut b, answer, calls) = breaker(2);
        answer.store(SHED, Ordering::SeqCst);
        for _ in 0..10 {
            let r = b
                .ready()
                .await
                .unwrap()
                .call(http::Request::new(()))
                .await
                .unwrap();
            let status = tonic::Status::from_header_map(r.headers()).unwrap();
            assert_eq!(status.code(), Code::Unavailable);
            assert_eq!(
                status.message(),
                "busy",
                "the peer's own answer, not a refusal"
            );
        }
        assert!(!b.is_open());
        assert_eq!(calls.load(Ordering::SeqCst), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_failures_turns_the_breaker_off() {
        let (mut b, answer, calls) = breaker(0);
        answer.store(u32::MAX, Ordering::SeqCst);
        for _ in 0..10 {
            assert!(call(&mut b).await.is_err());
        }
        assert!(!b.is_open());
        assert_eq!(calls.load(Ordering::SeqCst), 10);
    }
}
