//! `/api/v1/orders*` and `/api/v1/payments*`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use platform::ServiceId;
use proto::ext::{Required as _, ShortName as _};
use proto::order::order_service_client::OrderServiceClient;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{
    ApiQuery, ListParams, Money, filter_user, idempotency_key, money, page, rfc3339, uuid_or_404,
};
use super::grpc;
use super::payments::{PaymentCreate, PaymentOut};
use super::users::AddressBody;
use crate::extract::{ApiJson, AuthUser};
use crate::problem::Problem;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
pub struct OrderLineIn {
    pub product_id: String,
    /// At most `ORDER_MAX_UNITS_PER_LINE` (default 100).
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(deserialize_with = "super::common::integer")]
    pub quantity: u32,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct OrderCreate {
    /// Prices come from the catalog.
    #[schema(min_items = 1, max_items = 50)]
    pub items: Vec<OrderLineIn>,
    pub shipping_address: AddressBody,
    #[serde(default)]
    pub notes: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderItemOut {
    pub product_id: String,
    pub name: String,
    pub unit_price: Money,
    pub quantity: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderOut {
    pub id: String,
    pub user_id: String,
    /// PENDING_PAYMENT, PAID, PAYMENT_FAILED, SHIPPED, DELIVERED, CANCELLED or REFUNDED.
    pub status: String,
    pub items: Vec<OrderItemOut>,
    pub total: Money,
    pub shipping_address: AddressBody,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub notes: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub payment_id: String,
    /// Why a CANCELLED or REFUNDED order was cancelled: `customer`,
    /// `payment_timeout` or `admin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancellation_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderList {
    pub items: Vec<OrderOut>,
    pub next_cursor: Option<String>,
}

fn order_status(status: i32) -> String {
    proto::order::OrderStatus::try_from(status)
        .map(|s| s.short_name().to_string())
        .unwrap_or_else(|_| "UNKNOWN".into())
}

impl From<proto::order::Order> for OrderOut {
    fn from(o: proto::order::Order) -> Self {
        Self {
            id: o.id,
            user_id: o.user_id,
            status: order_status(o.status),
            items: o
                .items
                .into_iter()
                .map(|i| OrderItemOut {
                    product_id: i.product_id,
                    name: i.name,
                    unit_price: money(i.unit_price),
                    quantity: i.quantity,
                })
                .collect(),
            total: money(o.total),
            shipping_address: o
                .shipping_address
                .map(AddressBody::from)
                .unwrap_or_else(|| AddressBody::from(proto::common::Address::default())),
            notes: o.notes,
            payment_id: o.payment_id,
            cancellation_reason: Some(o.cancel_reason).filter(|r| !r.is_empty()),
            created_at: rfc3339(o.created_at),
            updated_at: rfc3339(o.updated_at),
        }
    }
}

fn orders(state: &AppState) -> OrderServiceClient<platform::grpc::GrpcChannel> {
    OrderServiceClient::new(state.channel(ServiceId::Order))
}

/// Place an order. Prices come from the catalog; stock is reserved.
#[utoipa::path(operation_id = "create_order", post, path = "/api/v1/orders", tag = "orders", security(("bearer" = [])), request_body = OrderCreate,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeat safely: the same key and body return the first response")),
    responses(
        (status = 201, description = "Order placed (PENDING_PAYMENT)", body = OrderOut),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Insufficient stock, too many unpaid orders, key reused with another body, or the first request with this key still running (retry after Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Empty items, quantity < 1, unknown product, bad address", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "A dependency failed mid-call; retry with the same key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down; retry with the same key after Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "A dependency was too slow; retry with the same key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<OrderCreate>,
) -> Result<Response, Problem> {
    let request = proto::order::CreateOrderRequest {
        idempotency_key: idempotency_key(&headers)?,
        items: body
            .items
            .into_iter()
            .map(|i| proto::order::OrderItemInput {
                product_id: i.product_id,
                quantity: i.quantity,
            })
            .collect(),
        shipping_address: Some(body.shipping_address.into()),
        notes: body.notes,
    };
    let r = orders(&state)
        .create_order(grpc(request, Some(&user.caller())))
        .await?
        .into_inner();
    Ok((
        StatusCode::CREATED,
        Json(OrderOut::from(r.order.required("order")?)),
    )
        .into_response())
}

/// The caller's orders, newest first (admins: anyone's, or `user_id`'s).
#[utoipa::path(operation_id = "list_orders", get, path = "/api/v1/orders", tag = "orders", security(("bearer" = [])), params(ListParams),
    responses(
        (status = 200, description = "A page of orders", body = OrderList),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's orders", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid parameters", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<OrderList>, Problem> {
    let request = proto::order::ListOrdersRequest {
        user_id: filter_user(&user, params.user_id)?,
        page: Some(page(params.limit, params.cursor)?),
    };
    let r = orders(&state)
        .list_orders(grpc(request, Some(&user.caller())))
        .await?
        .into_inner();
    Ok(Json(OrderList {
        items: r.orders.into_iter().map(OrderOut::from).collect(),
        next_cursor: Some(r.next_cursor).filter(|c| !c.is_empty()),
    }))
}

/// One order (404 for other users' orders).
#[utoipa::path(operation_id = "get_order", get, path = "/api/v1/orders/{id}", tag = "orders", security(("bearer" = [])), params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order", body = OrderOut),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown or not yours", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<OrderOut>, Problem> {
    let request = proto::order::GetOrderRequest {
        order_id: uuid_or_404(&id, "order")?,
    };
    let r = orders(&state)
        .get_order(grpc(request, Some(&user.caller())))
        .await?
        .into_inner();
    Ok(Json(OrderOut::from(r.order.required("order")?)))
}

/// Cancel an order: CANCELLED before payment, REFUNDED after; 409 once shipped.
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = "orders", security(("bearer" = [])), params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "The cancelled or refunded order", body = OrderOut),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown or not yours", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already shipped, or a payment is in progress (retry after Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The cancellation is under way; retry to see it", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<OrderOut>, Problem> {
    let request = proto::order::CancelOrderRequest {
        order_id: uuid_or_404(&id, "order")?,
        reason: String::new(),
    };
    let r = orders(&state)
        .cancel_order(grpc(request, Some(&user.caller())))
        .await?
        .into_inner();
    Ok(Json(OrderOut::from(r.order.required("order")?)))
}

/// Pay an order by card. A FAILED payment leaves the order PAYMENT_FAILED
/// and it may be paid again.
#[utoipa::path(post, path = "/api/v1/orders/{id}/payment", tag = "orders", security(("bearer" = [])), request_body = PaymentCreate,
    params(("id" = String, Path, description = "Order id"), ("Idempotency-Key" = Option<String>, Header, description = "Repeat safely")),
    responses(
        (status = 201, description = "Payment SUCCEEDED or FAILED", body = PaymentOut),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown or not yours", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already paid or cancelled, another payment in progress, or key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid card (Luhn, expiry, CVC)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Provider did not answer; retry with the same key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn pay(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PaymentCreate>,
) -> Result<Response, Problem> {
    let request = proto::order::ProcessPaymentRequest {
        order_id: uuid_or_404(&id, "order")?,
        idempotency_key: idempotency_key(&headers)?,
        card: Some(proto::payment::Card {
            number: body.card.number,
            exp_month: body.card.exp_month,
            exp_year: body.card.exp_year,
            cvc: body.card.cvc,
        }),
    };
    let r = orders(&state)
        .process_payment(grpc(request, Some(&user.caller())))
        .await?
        .into_inner();
    Ok((
        StatusCode::CREATED,
        Json(PaymentOut::from(r.payment.required("payment")?)),
    )
        .into_response())
}
