//! Client channels: lazily connecting, balanced over replicas, with a
//! deadline, a breaker and the caller's trace context.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tonic::Code;
use tonic::transport::Endpoint;
use tracing::Instrument;

use crate::balance::PeerChannel;
use crate::breaker::Breaker;
use crate::config::{GrpcSettings, PeerAddr, ServiceId};

use super::status::{code_name, record_status, response_code, rpc_names};

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
