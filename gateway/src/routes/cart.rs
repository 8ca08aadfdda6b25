//! `/api/v1/cart*`: the signed-in customer's cart (Bearer) or a guest's
//! (`X-Cart-Token`), and checkout.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use platform::{ErrorKind, ServiceId};
use proto::cart::CartRef;
use proto::cart::cart_service_client::CartServiceClient;
use proto::ext::Required as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{Money, rfc3339};
use super::common::{idempotency_key, money};
use super::grpc;
use super::orders::OrderOut;
use super::payments::{CardIn, PaymentOut};
use super::products::ImageOut;
use super::users::AddressBody;
use crate::extract::{ApiJson, AuthUser};
use crate::problem::Problem;
use crate::state::AppState;

/// The header a guest's cart token travels in.
pub const CART_TOKEN: &str = "x-cart-token";

/// Whose cart: a guest's by its token (which wins when both are sent),
/// else the signed-in caller's.
pub enum CartOwner {
    Guest(String),
    User(AuthUser),
}

impl CartOwner {
    fn request<T>(
        &self,
        state: &AppState,
        message: impl FnOnce(Option<CartRef>) -> T,
    ) -> tonic::Request<T> {
        match self {
            CartOwner::Guest(token) => state.mesh().request(message(Some(CartRef {
                cart_token: token.clone(),
            }))),
            CartOwner::User(user) => grpc(message(None), Some(&user.caller())),
        }
    }
}

impl FromRequestParts<AppState> for CartOwner {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        if let Some(value) = parts.headers.get(CART_TOKEN) {
            return value
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|t| !t.is_empty() && t.len() <= 512)
                .map(|t| CartOwner::Guest(t.to_string()))
                .ok_or_else(|| {
                    Problem::new(ErrorKind::Unauthenticated, "the cart token is not valid")
                });
        }
        AuthUser::from_request_parts(parts, state)
            .await
            .map(CartOwner::User)
    }
}

fn carts(state: &AppState) -> CartServiceClient<platform::grpc::GrpcChannel> {
    CartServiceClient::new(state.channel(ServiceId::Cart))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GuestCartOut {
    pub cart_id: String,
    /// Send it as `X-Cart-Token` on the cart's requests.
    pub cart_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CartLineOut {
    pub product_id: String,
    /// Empty when the product no longer exists.
    pub name: String,
    /// The catalog's price now.
    pub unit_price: Money,
    pub quantity: u32,
    pub line_total: Money,
    /// False when the product is gone, not for sale, or has fewer units in
    /// stock than the line holds.
    pub available: bool,
    /// The price differs from the one shown when the line was last changed.
    pub price_changed: bool,
    pub stock_available: u32,
    /// The product's primary image, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CartOut {
    pub id: String,
    pub items: Vec<CartLineOut>,
    /// Sum of the available lines.
    pub subtotal: Money,
    /// Absent until the cart is first changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

impl From<proto::cart::Cart> for CartOut {
    fn from(c: proto::cart::Cart) -> Self {
        Self {
            id: c.id,
            items: c
                .items
                .into_iter()
                .map(|l| CartLineOut {
                    product_id: l.product_id,
                    name: l.name,
                    unit_price: money(l.unit_price),
                    quantity: l.quantity,
                    line_total: money(l.line_total),
                    available: l.available,
                    price_changed: l.price_changed,
                    stock_available: l.stock_available,
                    image: l.image.map(ImageOut::from),
                })
                .collect(),
            subtotal: money(c.subtotal),
            updated_at: c.updated_at.map(|t| rfc3339(Some(t))),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CartItemIn {
    pub product_id: String,
    /// Units to add; the line may hold at most `ORDER_MAX_UNITS_PER_LINE`.
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "super::common::integer")]
    pub quantity: u32,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CartQuantityIn {
    /// 0 removes the line.
    #[serde(deserialize_with = "super::common::integer")]
    pub quantity: u32,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CartMergeIn {
    /// The guest cart's token.
    pub cart_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CheckoutIn {
    pub shipping_address: AddressBody,
    /// Pay at once; without it the order waits for payment.
    #[serde(default)]
    pub card: Option<CardIn>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckoutOut {
    pub order: OrderOut,
    /// The payment attempt, when a card was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentOut>,
}

fn cart_out(r: proto::cart::CartResponse) -> Result<Json<CartOut>, Problem> {
    Ok(Json(CartOut::from(r.cart.required("cart")?)))
}

/// Start a guest cart: its id and the token that reaches it.
#[utoipa::path(operation_id = "create_guest_cart", post, path = "/api/v1/cart", tag = "cart",
    responses(
        (status = 201, description = "A new, empty guest cart", body = GuestCartOut),
    ))]
pub async fn create_guest(State(state): State<AppState>) -> Result<Response, Problem> {
    let r = carts(&state)
        .create_guest_cart(state.mesh().request(proto::cart::CreateGuestCartRequest {}))
        .await?
        .into_inner();
    Ok((
        StatusCode::CREATED,
        Json(GuestCartOut {
            cart_id: r.cart_id,
            cart_token: r.cart_token,
        }),
    )
        .into_response())
}

/// The cart, priced now: changed prices and lines that cannot be bought are flagged.
#[utoipa::path(operation_id = "get_cart", get, path = "/api/v1/cart", tag = "cart", security(("bearer" = []), ()),
    params(("X-Cart-Token" = Option<String>, Header, description = "A guest's cart token; without it, the signed-in customer's cart")),
    responses(
        (status = 200, description = "The cart", body = CartOut),
        (status = 401, description = "No access token and no cart token, or a token that is not valid (or whose cart expired)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    owner: CartOwner,
) -> Result<Json<CartOut>, Problem> {
    let request = owner.request(&state, |cart| proto::cart::GetCartRequest { cart });
    cart_out(carts(&state).get_cart(request).await?.into_inner())
}

/// Empty the cart.
#[utoipa::path(operation_id = "clear_cart", delete, path = "/api/v1/cart", tag = "cart", security(("bearer" = []), ()),
    params(("X-Cart-Token" = Option<String>, Header, description = "A guest's cart token; without it, the signed-in customer's cart")),
    responses(
        (status = 204, description = "The cart is empty"),
        (status = 401, description = "No access token and no cart token, or a token that is not valid (or whose cart expired)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The guest cart was merged into a customer's cart", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn clear(State(state): State<AppState>, owner: CartOwner) -> Result<StatusCode, Problem> {
    let request = owner.request(&state, |cart| proto::cart::ClearCartRequest { cart });
    carts(&state).clear_cart(request).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add units of a product to the cart (its line grows, or a new line).
#[utoipa::path(operation_id = "add_cart_item", post, path = "/api/v1/cart/items", tag = "cart", security(("bearer" = []), ()), request_body = CartItemIn,
    params(("X-Cart-Token" = Option<String>, Header, description = "A guest's cart token; without it, the signed-in customer's cart")),
    responses(
        (status = 200, description = "The cart", body = CartOut),
        (status = 401, description = "No access token and no cart token, or a token that is not valid (or whose cart expired)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product for sale", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The guest cart was merged into a customer's cart", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Quantity below 1 or above the per-product cap, a cart of too many products, or a malformed product id", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn add_item(
    State(state): State<AppState>,
    owner: CartOwner,
    ApiJson(body): ApiJson<CartItemIn>,
) -> Result<Json<CartOut>, Problem> {
    let request = owner.request(&state, |cart| proto::cart::AddItemRequest {
        cart,
        product_id: body.product_id,
        quantity: body.quantity,
    });
    cart_out(carts(&state).add_item(request).await?.into_inner())
}

/// Set a line's quantity (0 removes it).
#[utoipa::path(operation_id = "set_cart_item", put, path = "/api/v1/cart/items/{product_id}", tag = "cart", security(("bearer" = []), ()), request_body = CartQuantityIn,
    params(("product_id" = String, Path, description = "Product id"),
        ("X-Cart-Token" = Option<String>, Header, description = "A guest's cart token; without it, the signed-in customer's cart")),
    responses(
        (status = 200, description = "The cart", body = CartOut),
        (status = 401, description = "No access token and no cart token, or a token that is not valid (or whose cart expired)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product for sale", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The guest cart was merged into a customer's cart", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Quantity above the per-product cap, a cart of too many products, or a malformed product id", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn set_item(
    State(state): State<AppState>,
    owner: CartOwner,
    Path(product_id): Path<String>,
    ApiJson(body): ApiJson<CartQuantityIn>,
) -> Result<Json<CartOut>, Problem> {
    let request = owner.request(&state, |cart| proto::cart::SetQuantityRequest {
        cart,
        product_id,
        quantity: body.quantity,
    });
    cart_out(carts(&state).set_quantity(request).await?.into_inner())
}

/// Remove a product from the cart.
#[utoipa::path(operation_id = "remove_cart_item", delete, path = "/api/v1/cart/items/{product_id}", tag = "cart", security(("bearer" = []), ()),
    params(("product_id" = String, Path, description = "Product id"),
        ("X-Cart-Token" = Option<String>, Header, description = "A guest's cart token; without it, the signed-in customer's cart")),
    responses(
        (status = 200, description = "The cart", body = CartOut),
        (status = 401, description = "No access token and no cart token, or a token that is not valid (or whose cart expired)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The guest cart was merged into a customer's cart", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove_item(
    State(state): State<AppState>,
    owner: CartOwner,
    Path(product_id): Path<String>,
) -> Result<Json<CartOut>, Problem> {
    let request = owner.request(&state, |cart| proto::cart::RemoveItemRequest {
        cart,
        product_id,
    });
    cart_out(carts(&state).remove_item(request).await?.into_inner())
}

/// Move a guest cart into the signed-in customer's cart (quantities add,
/// capped per product); the guest cart is gone afterwards.
#[utoipa::path(operation_id = "merge_carts", post, path = "/api/v1/cart/merge", tag = "cart", security(("bearer" = [])), request_body = CartMergeIn,
    responses(
        (status = 200, description = "The customer's cart with the guest's lines added", body = CartOut),
        (status = 401, description = "Not authenticated, or a guest cart token that is not valid (or whose cart expired)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A body without a cart token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn merge(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<CartMergeIn>,
) -> Result<Json<CartOut>, Problem> {
    let request = proto::cart::MergeCartsRequest {
        cart_token: body.cart_token,
    };
    cart_out(
        carts(&state)
            .merge_carts(grpc(request, Some(&user.caller())))
            .await?
            .into_inner(),
    )
}

/// Order the cart, and pay when a card is given. Exactly the ordered lines
/// and quantities leave the cart; a repeat with the same key answers the
/// first response.
#[utoipa::path(operation_id = "checkout_cart", post, path = "/api/v1/cart/checkout", tag = "cart", security(("bearer" = [])), request_body = CheckoutIn,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeat safely: the same key and body return the first response")),
    responses(
        (status = 201, description = "The order (and its payment)", body = CheckoutOut),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An empty cart, insufficient stock, too many unpaid orders, the key reused with another body, or another checkout in progress (retry after Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad address or card, or a product that can no longer be ordered", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "A dependency failed mid-call; retry with the same key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down; retry with the same key after Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "A dependency was too slow; retry with the same key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn checkout(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CheckoutIn>,
) -> Result<Response, Problem> {
    let key = match idempotency_key(&headers)? {
        key if key.is_empty() => uuid::Uuid::now_v7().to_string(),
        key => key,
    };
    let request = proto::cart::CheckoutRequest {
        idempotency_key: key,
        shipping_address: Some(body.shipping_address.into()),
        card: body.card.map(|card| proto::payment::Card {
            number: card.number,
            exp_month: card.exp_month,
            exp_year: card.exp_year,
            cvc: card.cvc,
        }),
    };
    let r = carts(&state)
        .checkout(grpc(request, Some(&user.caller())))
        .await?
        .into_inner();
    Ok((
        StatusCode::CREATED,
        Json(CheckoutOut {
            order: OrderOut::from(r.order.required("order")?),
            payment: r.payment.map(PaymentOut::from),
        }),
    )
        .into_response())
}
