//! The pages people open in a browser: the storefront at `/` and the
//! admin pages at `/admin`, rendered on the server from templates built
//! into the binary, with htmx and one stylesheet served from here.
//!
//! A page calls the same REST handler the JSON API runs for that action
//! (`crate::routes`), with the visitor's session in place of a bearer
//! token, and renders what it answers; no rule of the shop lives here.

pub mod admin;
pub mod extract;
pub mod live;
pub mod pages;
pub mod session;
pub mod shop;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::state::AppState;

/// What the pages keep between requests.
#[derive(Debug, Default)]
pub struct WebState {
    pub refreshes: session::Refreshes,
    /// Parts of pages that change seldom and cost calls to services:
    /// a product's similar items and first reviews (by product id), the
    /// catalog's categories (`categories`).
    pub page_parts: Recent<minijinja::Value>,
}

/// A small map of values kept for a while: entries expire after the
/// time given on reading; when it holds `LIMIT` entries it starts afresh.
#[derive(Debug)]
pub struct Recent<T> {
    entries: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, T)>>,
}

impl<T> Default for Recent<T> {
    fn default() -> Self {
        Self {
            entries: Default::default(),
        }
    }
}

impl<T: Clone> Recent<T> {
    const LIMIT: usize = 10_000;

    /// The value kept for `key` if it is younger than `ttl`.
    pub fn get(&self, key: &str, ttl: std::time::Duration) -> Option<T> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, value)| value.clone())
    }

    pub fn put(&self, key: String, value: T) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= Self::LIMIT {
            entries.clear();
        }
        entries.insert(key, (std::time::Instant::now(), value));
    }

    pub fn forget(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(key);
    }
}

/// Content Security Policy of the pages: only this site's scripts,
/// styles and images; forms post only here; never framed.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
    connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The page routes (merged beside the API by [`crate::router`]).
pub fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(shop::home))
        .route("/search", get(shop::search))
        .route("/products/{id}", get(shop::product))
        .route("/products/{id}/reviews", post(shop::review))
        .route("/cart", get(shop::cart))
        .route("/cart/items", post(shop::add_to_cart))
        .route("/cart/items/{product_id}", post(shop::set_quantity))
        .route(
            "/cart/items/{product_id}/remove",
            post(shop::remove_from_cart),
        )
        .route("/checkout", get(shop::checkout_form).post(shop::checkout))
        .route("/orders", get(shop::orders))
        .route("/orders/{id}", get(shop::order))
        .route("/orders/{id}/pay", post(shop::pay))
        .route("/orders/{id}/cancel", post(shop::cancel))
        .route("/orders/{id}/events", get(live::order_events))
        .route("/notifications", get(shop::notifications))
        .route("/notifications/events", get(live::notification_events))
        .route("/signin", get(shop::signin_form).post(shop::signin))
        .route("/signup", get(shop::signup_form).post(shop::signup))
        .route("/signout", post(shop::signout))
        .route("/account", get(shop::account).post(shop::update_account))
        .route("/admin", get(admin::dashboard))
        .route(
            "/admin/products",
            get(admin::products).post(admin::create_product),
        )
        .route(
            "/admin/products/{id}",
            get(admin::product).post(admin::update_product),
        )
        .route("/admin/products/{id}/stock", post(admin::set_stock))
        .route("/admin/products/{id}/images", post(admin::upload_image))
        .route(
            "/admin/products/{id}/images/{image_id}/delete",
            post(admin::delete_image),
        )
        .route(
            "/admin/products/{id}/images/{image_id}/first",
            post(admin::image_first),
        )
        .route("/admin/orders", get(admin::orders))
        .route("/admin/orders/{id}", get(admin::order))
        .route("/admin/orders/{id}/cancel", post(admin::cancel_order))
        .route("/admin/orders/{id}/refund", post(admin::refund))
        .route("/admin/orders/{id}/carrier", post(admin::carrier_update))
        .route("/admin/payments", get(admin::payments))
        .route(
            "/admin/promotions",
            get(admin::promotions).post(admin::start_promotion),
        )
        .route("/admin/flags", get(admin::flags).post(admin::set_flag))
        .route("/admin/dead-letters", get(admin::dead_letters))
        .route(
            "/admin/dead-letters/replay",
            post(admin::replay_dead_letters),
        )
        .route("/admin/recommendations", get(admin::recommendations))
        .route("/admin/recommendations/train", post(admin::train))
        .layer(from_fn_with_state(state, session::middleware))
        .layer(axum::middleware::from_fn(page_headers));
    Router::new()
        .route("/static/{file}", get(asset))
        .merge(pages)
}

async fn page_headers(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Files served under `/static`, built into the binary.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/static/htmx.min.js"),
    ),
    (
        "simple.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../web/static/simple.min.css"),
    ),
    (
        "shop.css",
        "text/css; charset=utf-8",
        include_bytes!("../../web/static/shop.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/static/app.js"),
    ),
];

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                // Names do not change with versions: revalidate hourly.
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=3600"),
                ),
            ],
            *bytes,
        )
            .into_response(),
        None => pages::error_page(
            &crate::problem::Problem::new(platform::ErrorKind::NotFound, "no such file"),
            None,
        ),
    }
}
