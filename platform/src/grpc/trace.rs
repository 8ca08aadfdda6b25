//! The server-side span of each RPC, continuing the caller's trace.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::Code;
use tracing::Instrument;

use crate::config::ServiceId;
use crate::error::ErrorKind;

use super::status::{code_name, record_status, response_code, rpc_names};

/// Server-side span per RPC, continuing the caller's trace.
#[derive(Clone, Copy, Debug)]
pub(super) struct GrpcTraceLayer {
    pub(super) service: ServiceId,
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
pub(super) struct GrpcTrace<S> {
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
