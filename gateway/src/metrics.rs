//! Prometheus metrics: request count and latency by route and status.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::state::AppState;

#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests handled by the gateway",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to answer an HTTP request",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(latency.clone()))
            .expect("registered once");
        Self {
            registry,
            requests,
            latency,
        }
    }

    /// The gateway's own families and the process's (every service's
    /// RED, store, bus and business metrics: all of them in the all-in-one
    /// binary).
    /// The gateway's own families.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Names of the gateway's own families.
    pub fn family_names(&self) -> Vec<String> {
        use prometheus::core::Collector as _;
        [self.requests.desc(), self.latency.desc()]
            .into_iter()
            .flatten()
            .map(|d| d.fq_name.clone())
            .collect()
    }

    pub fn render(&self) -> String {
        platform::metrics::render(Some(&self.registry))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Records every request; unmatched paths share one label so the series
/// count stays bounded.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Borrowed labels: the matched path is shared, method and status are
    // static strings, so recording allocates nothing.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    let labels = [
        method.as_str(),
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        status.as_str(),
    ];
    let metrics = state.metrics();
    metrics.requests.with_label_values(&labels).inc();
    metrics
        .latency
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics", body = String, content_type = "text/plain")))]
pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, platform::metrics::CONTENT_TYPE)],
        state.metrics().render(),
    )
}
