//! The public door of shopmesh: an axum router that turns REST into gRPC
//! calls to the internal services.
//!
//! [`router`] is a pure function of [`AppState`], so handlers are tested with
//! `tower::ServiceExt::oneshot` without a socket; [`build`] / [`serve`] put
//! it on a listener with graceful shutdown.

pub mod ops;
pub mod problem;
pub mod state;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use platform::{Config, Running};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

pub use state::AppState;

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let request_id = http::HeaderName::from_static("x-request-id");
    Router::new()
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .fallback(ops::not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn(ops::trace_request))
        // Outermost: the id exists before tracing starts and is echoed back.
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// Binds `HTTP_ADDR` and serves.
pub async fn build(config: Config) -> anyhow::Result<Running> {
    let listener = platform::runtime::bind(config.http_addr).await?;
    serve(config, listener).await
}

/// Serves on an already-bound listener until the returned [`Running`] shuts
/// down; in-flight requests get up to 10 s to finish.
pub async fn serve(config: Config, listener: tokio::net::TcpListener) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    let state = AppState::connect(&config)?;
    let app = router(state);
    let running = Running::new("gateway", addr);
    let cancel = running.cancel_token();
    running.spawn(async move {
        let shutdown = cancel.clone().cancelled_owned();
        let server = axum::serve(listener, app).with_graceful_shutdown(shutdown);
        let drained = async {
            cancel.cancelled().await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        };
        tokio::select! {
            result = server => {
                if let Err(err) = result {
                    tracing::error!(error = &err as &dyn std::error::Error, "HTTP server failed");
                    cancel.cancel();
                }
            }
            () = drained => tracing::warn!("in-flight requests did not finish within 10 s"),
        }
    });
    Ok(running)
}
