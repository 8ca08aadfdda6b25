//! Operational endpoints and cross-cutting middleware.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use platform::ErrorKind;
use serde_json::json;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tracing::Instrument;

use crate::problem::Problem;
use crate::state::AppState;

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, description = "Up", body = Object)))]
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// This gateway can serve: it is listening and has a key set to verify
/// tokens with. Upstreams are not checked here: one service being down must
/// not take every gateway out of its load balancer (see
/// `/health/dependencies` for them).
#[utoipa::path(get, path = "/ready", tag = "operations", responses(
    (status = 200, description = "Ready", body = Object),
    (status = 503, description = "No key set to verify tokens with yet", body = Problem, content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "Seconds to wait"))),
))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let loaded = tokio::time::timeout(Duration::from_secs(2), state.jwks().ensure_loaded())
        .await
        .unwrap_or(false);
    if loaded {
        Json(json!({"status": "ready", "checks": {"listener": "up", "key_set": "loaded"}}))
            .into_response()
    } else {
        Problem::new(
            ErrorKind::Unavailable,
            "not ready: no key set to verify tokens with (user-svc unreachable)",
        )
        .with_extra("checks", json!({"listener": "up", "key_set": "missing"}))
        .retry_after(5)
        .into_response()
    }
}

/// The state of every upstream service, for people and dashboards: its
/// gRPC health check (through a channel without circuit breaker) and
/// whether the breaker of the gateway's own channel to it is open.
#[utoipa::path(get, path = "/health/dependencies", tag = "operations", responses(
    (status = 200, description = "State of every dependency", body = Object),
))]
pub async fn dependencies(State(state): State<AppState>) -> Json<serde_json::Value> {
    let checks = futures::future::join_all(state.probes().iter().map(|(id, channel)| {
        let mut client = HealthClient::new(channel.clone());
        let id = *id;
        async move {
            let mut request = tonic::Request::new(HealthCheckRequest {
                service: id.grpc_service().to_string(),
            });
            request.set_timeout(Duration::from_secs(1));
            let state = match tokio::time::timeout(Duration::from_secs(2), client.check(request))
                .await
            {
                Ok(Ok(response)) if response.get_ref().status == ServingStatus::Serving as i32 => {
                    "serving"
                }
                Ok(Ok(_)) => "not_serving",
                Ok(Err(_)) | Err(_) => "unreachable",
            };
            (id.name(), state)
        }
    }))
    .await;
    let checks: BTreeMap<&str, &str> = checks.into_iter().collect();
    let breakers: BTreeMap<&str, &str> = state
        .upstreams()
        .iter()
        .map(|(id, channel)| (id.name(), if channel.is_open() { "open" } else { "closed" }))
        .collect();
    let status = if checks.values().all(|s| *s == "serving") {
        "ok"
    } else {
        "degraded"
    };
    Json(json!({"status": status, "checks": checks, "breakers": breakers}))
}

/// A known path with another method.
pub async fn method_not_allowed(request: Request) -> Problem {
    Problem::new(
        ErrorKind::MethodNotAllowed,
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Unknown routes: a problem document, or a page for a browser asking
/// for one outside the API.
pub async fn not_found(request: Request) -> Response {
    let problem = Problem::new(
        ErrorKind::NotFound,
        format!("no route for {} {}", request.method(), request.uri().path()),
    );
    let wants_page = !request.uri().path().starts_with("/api/")
        && request
            .headers()
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"));
    if wants_page {
        crate::web::pages::error_page(&problem, None)
    } else {
        problem.into_response()
    }
}

/// A server span per request that continues the caller's W3C trace, and a
/// `traceparent` on every response so clients can find the trace.
pub async fn trace_request(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    // Unmatched paths are not routes: the span is named by the method
    // alone, so a scan of random URLs cannot grow the span names.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string());
    let method = request.method().clone();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let client = crate::extract::client_addr(request.headers(), request.extensions());
    let span = tracing::info_span!(
        "http.server",
        otel.name = %match &route {
            Some(route) => format!("{method} {route}"),
            None => method.to_string(),
        },
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        url.path = %request.uri().path(),
        url.scheme = "http",
        server.address = %host.rsplit_once(':').map_or(host, |(h, _)| h),
        client.address = %client,
        error.type = tracing::field::Empty,
        request_id = %request_id,
    );
    if let Some(route) = &route {
        span.record("http.route", route.as_str());
    }
    let _ = span.set_parent(platform::telemetry::with_service(
        platform::telemetry::extract(request.headers()),
        platform::telemetry::GATEWAY_SERVICE,
    ));
    let timeout = state.config().request_timeout;
    let started = std::time::Instant::now();
    async move {
        let mut response = match tokio::time::timeout(timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => Problem::new(ErrorKind::DeadlineExceeded, "the request took too long")
                .into_response(),
        };
        let status = response.status();
        let span = tracing::Span::current();
        // An integer attribute (a u64 would be exported as a string).
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", status.as_str());
        }
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        // One access-log line per request (`RUST_LOG=info,access=off` turns
        // it off); the span's trace id is on it.
        let route = route.as_deref().unwrap_or("(unmatched)");
        if status.is_server_error() {
            tracing::error!(target: "access", %method, route, status = status.as_u16(), duration_ms, "request failed");
        } else {
            tracing::info!(target: "access", %method, route, status = status.as_u16(), duration_ms, "request");
        }
        if let Some(traceparent) = platform::telemetry::current_traceparent()
            && let Ok(value) = HeaderValue::from_str(&traceparent) {
                response.headers_mut().insert("traceparent", value);
            }
        response
    }
    .instrument(span)
    .await
}
