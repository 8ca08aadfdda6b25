//! `/api/v1/payments*`: payments and refunds (paying an order is
//! `POST /orders/{id}/payment`, in `orders`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use platform::ServiceId;
use proto::ext::{Required as _, ShortName as _};
use proto::payment::payment_service_client::PaymentServiceClient;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{
    ApiQuery, ListParams, Money, filter_user, idempotency_key, money, page, rfc3339, uuid_or_404,
};
use super::grpc;
use crate::extract::{AdminUser, ApiJson, AuthUser};
use crate::problem::Problem;
use crate::state::AppState;

pub(super) fn payments(state: &AppState) -> PaymentServiceClient<platform::grpc::GrpcChannel> {
    PaymentServiceClient::new(state.channel(ServiceId::Payment))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CardIn {
    pub number: String,
    #[serde(deserialize_with = "super::common::integer")]
    pub exp_month: u32,
    #[serde(deserialize_with = "super::common::integer")]
    pub exp_year: u32,
    pub cvc: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PaymentCreate {
    pub card: CardIn,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentOut {
    pub id: String,
    pub order_id: String,
    /// PENDING, SUCCEEDED, FAILED, PARTIALLY_REFUNDED or REFUNDED.
    pub status: String,
    pub amount: Money,
    pub refunded_amount: Money,
    pub card_brand: String,
    pub card_last4: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    pub created_at: String,
}

impl From<proto::payment::Payment> for PaymentOut {
    fn from(p: proto::payment::Payment) -> Self {
        Self {
            id: p.id,
            order_id: p.order_id,
            status: proto::payment::PaymentStatus::try_from(p.status)
                .map(|s| s.short_name().to_string())
                .unwrap_or_else(|_| "UNKNOWN".into()),
            amount: money(p.amount),
            refunded_amount: money(p.refunded_amount),
            card_brand: p.card_brand,
            card_last4: p.card_last4,
            failure_reason: Some(p.failure_reason).filter(|r| !r.is_empty()),
            created_at: rfc3339(p.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentList {
    pub items: Vec<PaymentOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefundCreate {
    /// Defaults to everything not yet refunded.
    pub amount: Option<Money>,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefundOut {
    pub id: String,
    pub payment_id: String,
    pub order_id: String,
    pub amount: Money,
    /// PENDING, SUCCEEDED or FAILED.
    pub status: String,
    pub reason: String,
    pub created_at: String,
}

/// The caller's payments (admins: anyone's, or `user_id`'s).
#[utoipa::path(get, path = "/api/v1/payments", tag = "payments", security(("bearer" = [])), params(ListParams),
    responses(
        (status = 200, description = "A page of payments", body = PaymentList),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's payments", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid parameters", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_payments(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<PaymentList>, Problem> {
    let request = proto::payment::ListPaymentsRequest {
        user_id: filter_user(&user, params.user_id)?,
        order_id: String::new(),
        page: Some(page(params.limit, params.cursor)?),
    };
    let r = payments(&state)
        .list_payments(grpc(request, Some(&user.caller())))
        .await?
        .into_inner();
    Ok(Json(PaymentList {
        items: r.payments.into_iter().map(PaymentOut::from).collect(),
        next_cursor: Some(r.next_cursor).filter(|c| !c.is_empty()),
    }))
}

/// One payment (404 for other users' payments).
#[utoipa::path(get, path = "/api/v1/payments/{id}", tag = "payments", security(("bearer" = [])), params(("id" = String, Path, description = "Payment id")),
    responses(
        (status = 200, description = "The payment", body = PaymentOut),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown or not yours", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_payment(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<PaymentOut>, Problem> {
    let request = proto::payment::GetPaymentStatusRequest {
        payment_id: uuid_or_404(&id, "payment")?,
    };
    let r = payments(&state)
        .get_payment_status(grpc(request, Some(&user.caller())))
        .await?
        .into_inner();
    Ok(Json(PaymentOut::from(r.payment.required("payment")?)))
}

/// Refund a payment, fully or partly (admin); 409 beyond what was captured.
#[utoipa::path(post, path = "/api/v1/payments/{id}/refund", tag = "payments", security(("bearer" = [])), request_body = RefundCreate,
    params(("id" = String, Path, description = "Payment id"), ("Idempotency-Key" = Option<String>, Header, description = "Repeat safely")),
    responses(
        (status = 201, description = "Refund made", body = RefundOut),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown payment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Over-refund, not captured, or key reused", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid amount", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn refund(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RefundCreate>,
) -> Result<Response, Problem> {
    let request = proto::payment::ProcessRefundRequest {
        payment_id: uuid_or_404(&id, "payment")?,
        amount: body.amount.map(Into::into),
        reason: body.reason,
        idempotency_key: idempotency_key(&headers)?,
    };
    let r = payments(&state)
        .process_refund(grpc(request, Some(&admin.caller())))
        .await?
        .into_inner();
    let refund = r.refund.required("refund")?;
    let out = RefundOut {
        id: refund.id,
        payment_id: refund.payment_id,
        order_id: refund.order_id,
        amount: money(refund.amount),
        status: proto::payment::RefundStatus::try_from(refund.status)
            .map(|s| s.short_name().to_string())
            .unwrap_or_else(|_| "UNKNOWN".into()),
        reason: refund.reason,
        created_at: rfc3339(refund.created_at),
    };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}
