//! `/api/v1/products/{id}/reviews`: customers' reviews of a product.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use proto::ext::Required as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{ApiQuery, PageParams, cursor, integer, page, rfc3339};
use super::grpc;
use super::products::{product_id, products};
use crate::extract::{ApiJson, AuthUser};
use crate::problem::Problem;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewOut {
    pub id: String,
    pub product_id: String,
    pub user_id: String,
    pub rating: u32,
    pub comment: String,
    pub created_at: String,
}

impl From<proto::product::Review> for ReviewOut {
    fn from(r: proto::product::Review) -> Self {
        Self {
            id: r.id,
            product_id: r.product_id,
            user_id: r.user_id,
            rating: r.rating,
            comment: r.comment,
            created_at: rfc3339(r.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewList {
    pub items: Vec<ReviewOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ReviewCreate {
    #[schema(minimum = 1, maximum = 5)]
    #[serde(deserialize_with = "integer")]
    pub rating: u32,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub comment: String,
}

/// Review a product; a second review by the same user replaces the first.
#[utoipa::path(post, path = "/api/v1/products/{id}/reviews", tag = "products", security(("bearer" = [])), request_body = ReviewCreate,
    params(("id" = String, Path, description = "Product id")),
    responses(
        (status = 201, description = "Stored", body = ReviewOut),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown product", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Rating outside 1..5 or comment too long", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn add_review(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReviewCreate>,
) -> Result<Response, Problem> {
    let request = proto::product::AddReviewRequest {
        product_id: product_id(&id)?,
        rating: body.rating,
        comment: body.comment,
    };
    let r = products(&state)
        .add_review(grpc(request, Some(&user.caller())))
        .await?
        .into_inner();
    Ok((
        StatusCode::CREATED,
        Json(ReviewOut::from(r.review.required("review")?)),
    )
        .into_response())
}

/// Reviews of a product, newest first.
#[utoipa::path(get, path = "/api/v1/products/{id}/reviews", tag = "products",
    params(("id" = String, Path, description = "Product id"), PageParams),
    responses(
        (status = 200, description = "A page of reviews", body = ReviewList),
        (status = 404, description = "Unknown product", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid parameters", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reviews(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<ReviewList>, Problem> {
    let request = proto::product::ListReviewsRequest {
        product_id: product_id(&id)?,
        page: Some(page(params.limit, params.cursor)?),
    };
    let r = products(&state)
        .list_reviews(grpc(request, None))
        .await?
        .into_inner();
    Ok(Json(ReviewList {
        items: r.reviews.into_iter().map(ReviewOut::from).collect(),
        next_cursor: cursor(r.next_cursor),
    }))
}
