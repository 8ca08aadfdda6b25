//! The public door of shopmesh: an axum router that turns REST into gRPC
//! calls to the internal services.
//!
//! [`router`] is a pure function of [`AppState`], so handlers are tested with
//! `tower::ServiceExt::oneshot` without a socket; [`build`] / [`serve`] put
//! it on a listener with graceful shutdown.

pub mod auth;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod problem;
pub mod ratelimit;
pub mod routes;
pub mod state;
pub mod web;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use platform::{Config, Running};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

pub use state::{AppState, GATEWAY};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The routes and the OpenAPI document describing them.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::dependencies))
        .routes(routes!(metrics::render))
        .routes(routes!(routes::users::jwks))
        .routes(routes!(routes::auth::register))
        .routes(routes!(routes::auth::login))
        .routes(routes!(routes::auth::refresh))
        .routes(routes!(routes::auth::logout))
        .routes(routes!(routes::users::me, routes::users::update_me))
        .routes(routes!(routes::users::update_preferences))
        .routes(routes!(routes::products::list, routes::products::create))
        .routes(routes!(
            routes::products::get,
            routes::products::update,
            routes::products::delete
        ))
        .routes(routes!(routes::products::stock))
        .routes(routes!(
            routes::reviews::add_review,
            routes::reviews::reviews
        ))
        .routes(routes!(routes::recommendations::similar))
        // Uploads enforce MEDIA_MAX_UPLOAD_BYTES themselves, as they stream.
        .merge(
            OpenApiRouter::new()
                .routes(routes!(routes::media::upload))
                .layer(DefaultBodyLimit::disable()),
        )
        .routes(routes!(routes::media::delete))
        .routes(routes!(routes::media::order))
        .routes(routes!(routes::media::original))
        .routes(routes!(routes::media::thumbnail))
        .routes(routes!(
            routes::cart::create_guest,
            routes::cart::get,
            routes::cart::clear
        ))
        .routes(routes!(routes::cart::add_item))
        .routes(routes!(routes::cart::set_item, routes::cart::remove_item))
        .routes(routes!(routes::cart::merge))
        .routes(routes!(routes::cart::checkout))
        .routes(routes!(routes::orders::create, routes::orders::list))
        .routes(routes!(routes::orders::get))
        .routes(routes!(routes::orders::cancel))
        .routes(routes!(routes::orders::pay))
        .routes(routes!(routes::payments::list_payments))
        .routes(routes!(routes::payments::get_payment))
        .routes(routes!(routes::payments::refund))
        .routes(routes!(routes::shipping::shipment))
        .routes(routes!(routes::shipping::webhook))
        .routes(routes!(routes::notifications::list))
        .routes(routes!(routes::notifications::stream))
        .routes(routes!(routes::notifications::subscribe_push))
        .routes(routes!(routes::notifications::push_key))
        .routes(routes!(routes::recommendations::list))
        .routes(routes!(routes::recommendations::train))
        .routes(routes!(routes::recommendations::model))
        .routes(routes!(routes::flags::list))
        .routes(routes!(routes::flags::set))
        .split_for_parts();
    utoipa::Modify::modify(&openapi::CommonErrors, &mut document);
    (router, document)
}

fn cors(origins: &[String]) -> CorsLayer {
    use axum::http::{HeaderName, Method};
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static(routes::cart::CART_TOKEN),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("traceparent"),
        ])
        .max_age(Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        layer.allow_origin(AllowOrigin::any())
    } else {
        let list: Vec<_> = origins.iter().filter_map(|o| o.parse().ok()).collect();
        layer.allow_origin(AllowOrigin::list(list))
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let (routes, openapi) = api();
    let request_id = http::HeaderName::from_static("x-request-id");
    let trust = extract::TrustedProxyHops(state.config().trusted_proxy_hops);
    let cors = cors(&state.config().cors_allowed_origins);
    routes
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi))
        .merge(web::router(state.clone()))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(from_fn_with_state(state.clone(), ratelimit_middleware))
        .layer(from_fn_with_state(state.clone(), auth::authenticate))
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(from_fn_with_state(state.clone(), ops::trace_request))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CompressionLayer::new())
        .layer(cors)
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::Extension(trust))
        // Outermost: the id exists before tracing starts and is echoed back.
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// Content Security Policy of Swagger UI (`/docs`): its own scripts and
/// styles (it sets inline styles), images inline, never framed.
const DOCS_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
    object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Headers every response carries: no MIME sniffing, no framing; the
/// documentation page also gets its CSP.
async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use http::HeaderValue;
    use http::header::{CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS};
    let docs = request.uri().path().starts_with("/docs");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if docs {
        headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCS_CSP));
    }
    response
}

/// The general limit: per user when authenticated, else per client address.
async fn ratelimit_middleware(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let rps = state.config().rate_limit_rps;
    if rps == 0 || !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let key = match request.extensions().get::<extract::Authentication>() {
        Some(extract::Authentication::Valid(claims, _)) => format!("general:user:{}", claims.sub),
        _ => format!(
            "general:addr:{}",
            extract::client_addr(request.headers(), request.extensions())
        ),
    };
    let quota = ratelimit::Quota::per_second(rps, state.config().rate_limit_burst);
    match state.limiter().check(&key, quota, true).await {
        Ok(()) => next.run(request).await,
        Err(wait) => problem::Problem::new(
            platform::ErrorKind::RateLimited,
            "rate limit exceeded; slow down",
        )
        .retry_after(wait.as_secs().max(1))
        .into_response(),
    }
}

/// `listener` with TCP_NODELAY set on every accepted connection, so a small
/// response written after its headers does not wait for a delayed ACK.
pub fn nodelay(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt as _;
    fn set(stream: &mut tokio::net::TcpStream) {
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY on an accepted connection");
        }
    }
    listener.tap_io(set as fn(&mut tokio::net::TcpStream))
}

/// The whole `main` of the gateway binary: configuration from the
/// environment, then [`build`] until Ctrl-C or SIGTERM.
pub fn main() -> std::process::ExitCode {
    let config = match platform::runtime::load_config("gateway") {
        Ok(config) => config,
        Err(code) => return code,
    };
    platform::runtime::run_main("gateway", &config, |config| async move {
        let running = build(config).await?;
        tracing::info!(addr = %running.addr(), "gateway listening");
        tokio::select! {
            () = platform::runtime::shutdown_signal() => {}
            () = running.cancelled() => tracing::warn!("the HTTP server stopped"),
        }
        running.shutdown().await;
        Ok(())
    })
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
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(platform::runtime::bind(addr).await?),
        None => None,
    };
    let state = AppState::connect_with_backends(&config).await?;
    let registry = state.metrics().registry().clone();
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let running = Running::new("gateway", addr);
    let cancel = running.cancel_token();
    if let Some(listener) = metrics_listener {
        // `/metrics` apart from the public port, for scrapers: the ingress
        // never routes it.
        let cancel = cancel.clone();
        running.spawn(async move {
            let _ = platform::metrics::serve(listener, cancel, Some(registry)).await;
        });
    }
    running.spawn(async move {
        let shutdown = cancel.clone().cancelled_owned();
        let server = axum::serve(nodelay(listener), app).with_graceful_shutdown(shutdown);
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

#[cfg(test)]
mod tests {
    use axum::serve::Listener as _;

    #[tokio::test]
    async fn accepted_connections_have_nodelay_set() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener = super::nodelay(listener);
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(!client.nodelay().unwrap(), "off unless someone sets it");
        let (accepted, peer) =
            tokio::time::timeout(std::time::Duration::from_secs(5), listener.accept())
                .await
                .expect("a connection is accepted");
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(
            accepted.nodelay().unwrap(),
            "TCP_NODELAY on the server side"
        );
    }
}
