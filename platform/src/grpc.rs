//! gRPC server and client plumbing shared by every service.
//!
//! [`GrpcServer`] always adds `grpc.health.v1.Health` and server reflection
//! (v1 and v1alpha), a tracing layer that continues the caller's W3C trace,
//! a per-request timeout, a per-connection concurrency limit with load
//! shedding, and graceful shutdown. [`channel`] builds a lazily-connecting
//! client channel with a deadline, a concurrency limit and trace-context
//! injection; [`Retry`] retries idempotent calls within a budget.

use crate::balance::PeerChannel;
use crate::breaker::Breaker;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tonic::Code;
use tonic::service::Routes;
use tonic::transport::Endpoint;
use tonic_health::ServingStatus;
use tower::retry::budget::{Budget, TpsBudget};
use tracing::Instrument;

use crate::config::{GrpcSettings, PeerAddr, ServiceId};
use crate::error::ErrorKind;
use crate::runtime::Running;

/// What a service needs to serve requests: answers `Err(why)` when it
/// cannot (its store or bus unreachable).
pub type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// How often readiness is checked, and how long one check may take.
const READINESS_EVERY: Duration = Duration::from_secs(2);
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness of a service on `store` and `bus`: the store answers a ping
/// and the bus is connected.
pub fn store_and_bus(
    store: crate::store::Store,
    bus: Arc<dyn crate::events::EventBus>,
) -> ReadinessCheck {
    Arc::new(move || {
        let (store, bus) = (store.clone(), bus.clone());
        Box::pin(async move {
            store.ping().await.map_err(|e| format!("store: {e}"))?;
            if !bus.is_connected() {
                return Err(format!("event bus ({}) not connected", bus.name()));
            }
            Ok(())
        })
    })
}

/// Builds and starts the gRPC server of one service.
///
/// Health: the overall status (`""`, what liveness probes ask) is SERVING
/// while the process serves; the service's own name (what readiness probes
/// ask) is SERVING only while its [`readiness`](GrpcServer::readiness)
/// check passes, so a replica that lost its database leaves the load
/// balancer without being restarted.
pub struct GrpcServer {
    service: ServiceId,
    settings: GrpcSettings,
    descriptor_sets: Vec<&'static [u8]>,
    readiness: Option<ReadinessCheck>,
    /// HTTP/2 flow-control windows (stream, connection) when not hyper's.
    windows: Option<(u32, u32)>,
}

impl GrpcServer {
    /// `descriptor_set` is the encoded `FileDescriptorSet` holding the
    /// service (`proto::FILE_DESCRIPTOR_SET`).
    pub fn new(service: ServiceId, settings: &GrpcSettings, descriptor_set: &'static [u8]) -> Self {
        Self {
            service,
            settings: settings.clone(),
            descriptor_sets: vec![descriptor_set],
            readiness: None,
            windows: None,
        }
    }

    /// HTTP/2 flow-control windows: how much one request stream, and all
    /// of a connection's together, may send before the server reads. A
    /// service that lets requests wait unread (uploads awaiting their turn)
    /// sets a connection window many times the stream window, so the
    /// waiting ones cannot use up the connection's and stall those being
    /// read.
    pub fn flow_windows(mut self, stream: u32, connection: u32) -> Self {
        self.windows = Some((stream, connection));
        self
    }

    /// Checks `check` every 2 s and reports the result as the health of
    /// the service's own name.
    pub fn readiness(mut self, check: ReadinessCheck) -> Self {
        self.readiness = Some(check);
        self
    }

    /// Serves `routes` (the service's own tonic servers) plus health and
    /// reflection on `listener` until the returned [`Running`] shuts down.
    pub async fn serve(
        self,
        routes: Routes,
        listener: tokio::net::TcpListener,
    ) -> anyhow::Result<Running> {
        let addr = listener.local_addr().context("reading the bound address")?;
        let grpc_service = self.service.grpc_service();

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status(grpc_service, ServingStatus::Serving)
            .await;

        let descriptor_sets = self.descriptor_sets.clone();
        let reflection = || {
            let mut builder = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .with_service_name(grpc_service)
                .with_service_name("grpc.health.v1.Health");
            for set in &descriptor_sets {
                builder = builder.register_encoded_file_descriptor_set(set);
            }
            builder
        };
        let reflection_v1 = reflection().build_v1().context("building reflection v1")?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .context("building reflection v1alpha")?;

        let routes = routes
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);

        let running = Running::new(self.service.binary(), addr);
        let cancel = running.cancel_token();
        if let Some(check) = self.readiness.clone() {
            let (health, cancel) = (health.clone(), cancel.clone());
            running.spawn(async move {
                let mut ready = true;
                loop {
                    let outcome = match tokio::time::timeout(READINESS_TIMEOUT, check()).await {
                        Ok(outcome) => outcome,
                        Err(_) => Err("readiness check timed out".to_string()),
                    };
                    if cancel.is_cancelled() {
                        return;
                    }
                    let now_ready = outcome.is_ok();
                    if now_ready != ready {
                        match &outcome {
                            Ok(()) => tracing::info!(service = grpc_service, "ready again"),
                            Err(why) => {
                                tracing::warn!(service = grpc_service, reason = %why, "not ready")
                            }
                        }
                        let status = if now_ready {
                            ServingStatus::Serving
                        } else {
                            ServingStatus::NotServing
                        };
                        health.set_service_status(grpc_service, status).await;
                        ready = now_ready;
                    }
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(READINESS_EVERY) => {}
                    }
                }
            });
        }
        let server = tonic::transport::Server::builder()
            .timeout(self.settings.server_timeout)
            .concurrency_limit_per_connection(self.settings.concurrency_limit_per_connection)
            .load_shed(true)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .max_connection_age(self.settings.max_connection_age)
            .max_connection_age_grace(self.settings.max_connection_age_grace)
            .initial_stream_window_size(self.windows.map(|(stream, _)| stream))
            .initial_connection_window_size(self.windows.map(|(_, connection)| connection))
            .layer(GrpcTraceLayer {
                service: self.service,
            })
            .add_routes(routes);
        let incoming = nodelay_incoming(listener);
        let shutdown = {
            let cancel = cancel.clone();
            let health = health.clone();
            let drain_delay = self.settings.drain_delay;
            async move {
                cancel.cancelled().await;
                // Tell load balancers first, keep serving while they leave,
                // then stop accepting and drain.
                health
                    .set_service_status(grpc_service, ServingStatus::NotServing)
                    .await;
                health
                    .set_service_status("", ServingStatus::NotServing)
                    .await;
                if !drain_delay.is_zero() {
                    tracing::info!(
                        service = grpc_service,
                        ?drain_delay,
                        "draining: answering NOT_SERVING before stopping"
                    );
                    tokio::time::sleep(drain_delay).await;
                }
            }
        };
        running.spawn(async move {
            if let Err(err) = server
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
            {
                tracing::error!(error = &err as &dyn std::error::Error, "gRPC server failed");
                cancel.cancel();
            }
        });
        Ok(running)
    }
}

impl std::fmt::Debug for GrpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServer")
            .field("service", &self.service)
            .finish()
    }
}

/// Server-side span per RPC, continuing the caller's trace.
#[derive(Clone, Copy, Debug)]
struct GrpcTraceLayer {
    service: ServiceId,
}

impl<S> tower::Layer<S> for GrpcTraceLayer {
    type Service = GrpcTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTrace {
            inner,
            service: self.service,
        }
    }
}

#[derive(Clone, Debug)]
struct GrpcTrace<S> {
    inner: S,
    service: ServiceId,
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for GrpcTrace<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>> + Send,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let path = request.uri().path().trim_start_matches('/');
        let (rpc_service, rpc_method) = rpc_names(path);
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %path,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %rpc_service,
            rpc.method = %rpc_method,
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let service = self.service.binary();
        let _ = span.set_parent(crate::telemetry::with_service(
            crate::telemetry::extract(request.headers()),
            service,
        ));
        // Fault flags act on the shop's own services, never on health
        // checks or reflection (a probe must keep telling the truth).
        let (delay, fail) = if rpc_service.starts_with("shop.") {
            span.in_scope(|| {
                (
                    crate::flags::delay(crate::flags::SERVICE_LATENCY, Some(service)),
                    crate::flags::hits(crate::flags::SERVICE_ERROR_RATE, Some(service)),
                )
            })
        } else {
            (None, false)
        };
        let (rpc_service, rpc_method) = (rpc_service.to_string(), rpc_method.to_string());
        let started = Instant::now();
        let future = (!fail).then(|| self.inner.call(request));
        Box::pin(
            async move {
                if let Some(delay) = delay {
                    tokio::time::sleep(delay).await;
                }
                let result = match future {
                    Some(future) => future.await,
                    None => Ok(tonic::Status::unavailable(format!(
                        "{service} is failing calls (fault flag {})",
                        crate::flags::SERVICE_ERROR_RATE
                    ))
                    .into_http()),
                };
                if let Ok(response) = &result {
                    let code = response_code(response.headers());
                    record_status(&tracing::Span::current(), code, response.headers());
                    crate::metrics::observe(
                        &crate::metrics::RPC_SERVER_DURATION,
                        &[service, &rpc_service, &rpc_method, code_name(code)],
                        started.elapsed(),
                    );
                    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
                    match ErrorKind::from_grpc_code(code) {
                        _ if code == Code::Ok => tracing::debug!(elapsed_ms, "rpc ok"),
                        ErrorKind::Internal => tracing::error!(elapsed_ms, ?code, "rpc failed"),
                        _ => tracing::info!(elapsed_ms, ?code, "rpc rejected"),
                    }
                }
                result
            }
            .instrument(span),
        )
    }
}

/// `rpc.service` and `rpc.method` of a gRPC path
/// (`shop.order.v1.OrderService/CreateOrder`, leading `/` removed).
fn rpc_names(path: &str) -> (&str, &str) {
    path.split_once('/').unwrap_or((path, ""))
}

/// Records a call's status on its span: the numeric code, and ERROR with
/// the message and `error.type` when the code is a server fault.
fn record_status(span: &tracing::Span, code: Code, headers: &http::HeaderMap) {
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
fn response_code(headers: &http::HeaderMap) -> Code {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
        .unwrap_or(Code::Ok)
}

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

/// The client channel type every service client is built on.
pub type GrpcChannel = TraceContext<Breaker<PeerChannel>>;

/// Builds a channel to `peer` that connects on first use (so services can
/// start in any order), with the configured deadline, connect timeout,
/// in-flight limit and circuit breaker, and that carries the caller's trace
/// context. A peer named by host name is balanced over every replica
/// ([`crate::balance`]); health checks ask for the server as a whole.
pub fn channel(peer: &PeerAddr, settings: &GrpcSettings) -> anyhow::Result<GrpcChannel> {
    build_channel(peer, settings, "")
}

/// As [`channel`], to a peer that is service `id`: a replica whose own
/// readiness fails (its store unreachable) or that is draining leaves the
/// balanced set.
pub fn channel_for(
    id: ServiceId,
    peer: &PeerAddr,
    settings: &GrpcSettings,
) -> anyhow::Result<GrpcChannel> {
    build_channel(peer, settings, id.grpc_service())
}

/// As [`channel_for`], for a peer some of whose calls may take up to
/// `longest` (an upload): calls still get the configured deadline unless
/// they set a longer one of their own (`Request::set_timeout`), which the
/// channel then honours up to `longest`.
pub fn channel_for_long_calls(
    id: ServiceId,
    peer: &PeerAddr,
    settings: &GrpcSettings,
    longest: Duration,
) -> anyhow::Result<GrpcChannel> {
    let mut long = settings.clone();
    long.client_timeout = longest.max(settings.client_timeout);
    let mut channel = build_channel(peer, &long, id.grpc_service())?;
    channel.default_timeout = settings.client_timeout;
    Ok(channel)
}

fn build_channel(
    peer: &PeerAddr,
    settings: &GrpcSettings,
    health_service: &'static str,
) -> anyhow::Result<GrpcChannel> {
    let uri: http::Uri = peer
        .uri()
        .parse()
        .with_context(|| format!("invalid peer address {}", peer.uri()))?;
    let host_port = Arc::new((
        uri.host().unwrap_or_default().to_string(),
        uri.port_u16().unwrap_or(80),
    ));
    let endpoint_settings = settings.clone();
    let make = move |uri: &str| -> anyhow::Result<Endpoint> {
        Ok(Endpoint::from_shared(uri.to_string())
            .with_context(|| format!("invalid peer address {uri}"))?
            .connect_timeout(endpoint_settings.connect_timeout)
            .timeout(endpoint_settings.client_timeout)
            .concurrency_limit(endpoint_settings.client_concurrency_limit)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true))
    };
    let peer_channel = crate::balance::peer_channel(&uri, settings, health_service, make)?;
    Ok(TraceContext {
        inner: Breaker::new(peer_channel, settings.breaker, peer.uri()),
        default_timeout: settings.client_timeout,
        peer: host_port,
    })
}

/// The client side of every call: a CLIENT span (continuing the caller's
/// trace, its context sent as `traceparent` / `tracestate`, so the server's
/// span is its child), the call's duration in `rpc_client_duration_seconds`,
/// and the channel's deadline as `grpc-timeout` when the caller set none,
/// so the server knows when its caller gives up (the channel's own timeout
/// is enforced here but not sent).
#[derive(Clone, Debug)]
pub struct TraceContext<S> {
    inner: S,
    default_timeout: Duration,
    /// `host` and `port` of the peer (`server.address`, `server.port`).
    peer: Arc<(String, u16)>,
}

impl<S> TraceContext<Breaker<S>> {
    /// Whether the channel's circuit breaker refuses calls right now.
    pub fn is_open(&self) -> bool {
        self.inner.is_open()
    }
}

impl<S, B, RB> tower::Service<http::Request<B>> for TraceContext<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let path = request.uri().path().trim_start_matches('/').to_string();
        let (rpc_service, rpc_method) = rpc_names(&path);
        let span = tracing::info_span!(
            "grpc.client",
            otel.name = %path,
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = %rpc_service,
            rpc.method = %rpc_method,
            server.address = %self.peer.0,
            server.port = self.peer.1 as i64,
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        crate::telemetry::inject(&span.context(), request.headers_mut());
        if !request.headers().contains_key("grpc-timeout") {
            let millis = self.default_timeout.as_millis().clamp(1, 99_999_999);
            if let Ok(value) = http::HeaderValue::from_str(&format!("{millis}m")) {
                request.headers_mut().insert("grpc-timeout", value);
            }
        }
        let caller = crate::telemetry::current_service();
        let (rpc_service, rpc_method) = (rpc_service.to_string(), rpc_method.to_string());
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(
            async move {
                let result = future.await;
                let span = tracing::Span::current();
                let code = match &result {
                    Ok(response) => {
                        let code = response_code(response.headers());
                        record_status(&span, code, response.headers());
                        code
                    }
                    Err(_) => {
                        // No answer at all (connect failure, deadline): the
                        // caller sees UNAVAILABLE or DEADLINE_EXCEEDED.
                        let code = Code::Unavailable;
                        span.record("rpc.grpc.status_code", code as i64);
                        crate::telemetry::record_error(
                            &span,
                            "transport",
                            &"no answer from the peer",
                        );
                        code
                    }
                };
                crate::metrics::observe(
                    &crate::metrics::RPC_CLIENT_DURATION,
                    &[
                        caller.as_deref().unwrap_or("unknown"),
                        &rpc_service,
                        &rpc_method,
                        code_name(code),
                    ],
                    started.elapsed(),
                );
                result
            }
            .instrument(span),
        )
    }
}

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

/// The accepted connections of `listener`, each with TCP_NODELAY set.
///
/// tonic applies `Server::tcp_nodelay` only to listeners it binds itself, not
/// to `serve_with_incoming`; without it a small HTTP/2 frame that follows
/// another waits for the peer's delayed ACK (~40 ms). A stream whose option
/// cannot be set is logged and served anyway.
pub fn nodelay_incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static {
    use futures::StreamExt as _;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(error = %err, "could not set TCP_NODELAY on an accepted stream");
            }
        })
    })
}

/// Binds `addr` (port 0 for any free port).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    crate::runtime::bind(addr).await
}

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
