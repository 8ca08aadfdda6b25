//! `/api/v1/recommendations` and `/api/v1/admin/recommendations/*`:
//! personalised recommendations and the model behind them.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use platform::{ErrorKind, ServiceId};
use proto::product::product_service_client::ProductServiceClient;
use proto::recommendation::recommendation_service_client::RecommendationServiceClient;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::grpc;
use super::products::{ApiQuery, ProductList, ProductOut, product_id};
use crate::extract::{AdminUser, AuthUser};
use crate::problem::Problem;
use crate::state::AppState;

pub(crate) fn recommendations(
    state: &AppState,
) -> RecommendationServiceClient<platform::grpc::GrpcChannel> {
    RecommendationServiceClient::new(state.channel(ServiceId::Recommendation))
}

/// `?limit=` of the recommendation routes: 1 to 100, default 10.
pub(crate) fn limit(limit: Option<u32>) -> Result<u32, Problem> {
    Ok(super::common::page(Some(limit.unwrap_or(10)), None)?.limit)
}

/// The products behind recommended ids, in the order given (ids the
/// catalog no longer has are left out).
pub(crate) async fn products_in_order(
    state: &AppState,
    ids: &[String],
) -> Result<Vec<ProductOut>, Problem> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let found = ProductServiceClient::new(state.channel(ServiceId::Product))
        .batch_get_products(grpc(
            proto::product::BatchGetProductsRequest {
                product_ids: ids.to_vec(),
            },
            None,
        ))
        .await?
        .into_inner()
        .products;
    let mut by_id: HashMap<String, proto::product::Product> =
        found.into_iter().map(|p| (p.id.clone(), p)).collect();
    Ok(ids
        .iter()
        .filter_map(|id| by_id.remove(id))
        .map(ProductOut::from)
        .collect())
}

/// Why a product is recommended.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReasonOut {
    /// `bought_with`, `popular`, `preferred_category` or `same_category`.
    pub kind: String,
    /// The product the user bought that led to it (`bought_with`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    /// The category that led to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

impl From<proto::recommendation::Reason> for ReasonOut {
    fn from(r: proto::recommendation::Reason) -> Self {
        use proto::recommendation::reason::Kind;
        let kind = match Kind::try_from(r.kind).unwrap_or(Kind::Popular) {
            Kind::BoughtWith => "bought_with",
            Kind::PreferredCategory => "preferred_category",
            Kind::SameCategory => "same_category",
            Kind::Popular | Kind::Unspecified => "popular",
        };
        Self {
            kind: kind.to_string(),
            product_id: Some(r.product_id).filter(|p| !p.is_empty()),
            category: Some(r.category).filter(|c| !c.is_empty()),
        }
    }
}

/// A recommended product: the product, why, and its score.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecommendedProduct {
    #[serde(flatten)]
    pub product: ProductOut,
    pub reason: ReasonOut,
    /// Higher is better; comparable within one response only.
    pub score: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecommendationList {
    pub items: Vec<RecommendedProduct>,
    /// Model that produced them; empty before the first training.
    pub model_version: String,
    /// True when nothing is personalised (popular items only).
    pub fallback: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecommendationParams {
    /// How many, 1 to 100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Only products of this category.
    pub category: Option<String>,
}

/// Products recommended to the caller: bought together with what they
/// bought, else popular in their preferred categories, else popular; never
/// products they bought or that cannot be bought.
#[utoipa::path(operation_id = "list_recommendations", get, path = "/api/v1/recommendations", tag = "recommendations", security(("bearer" = [])),
    params(RecommendationParams),
    responses(
        (status = 200, description = "Recommended products, best first", body = RecommendationList),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid parameters", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(params): ApiQuery<RecommendationParams>,
) -> Result<Json<RecommendationList>, Problem> {
    let request = proto::recommendation::GetRecommendationsRequest {
        user_id: user.0.sub.clone(),
        limit: limit(params.limit)?,
        category: params.category.unwrap_or_default(),
    };
    recommended(&state, grpc(request, Some(&user.caller())))
        .await
        .map(Json)
}

/// The most popular products, for a visitor without an account (the
/// storefront's home page).
pub(crate) async fn popular(state: &AppState, count: u32) -> Result<RecommendationList, Problem> {
    let request = proto::recommendation::GetRecommendationsRequest {
        user_id: String::new(),
        limit: limit(Some(count))?,
        category: String::new(),
    };
    recommended(state, state.mesh().request(request)).await
}

/// Asks recommendation-svc and answers its products, in its order, as
/// the catalog has them now.
async fn recommended(
    state: &AppState,
    request: tonic::Request<proto::recommendation::GetRecommendationsRequest>,
) -> Result<RecommendationList, Problem> {
    let r = recommendations(state)
        .get_recommendations(request)
        .await?
        .into_inner();
    let ids: Vec<String> = r.products.iter().map(|p| p.product_id.clone()).collect();
    let mut scored: HashMap<String, proto::recommendation::ScoredProduct> = r
        .products
        .into_iter()
        .map(|p| (p.product_id.clone(), p))
        .collect();
    let items = products_in_order(state, &ids)
        .await?
        .into_iter()
        .filter_map(|product| {
            let s = scored.remove(&product.id)?;
            Some(RecommendedProduct {
                product,
                reason: s.reason.unwrap_or_default().into(),
                score: s.score,
            })
        })
        .collect();
    Ok(RecommendationList {
        items,
        model_version: r.model_version,
        fallback: r.fallback,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrainingStarted {
    /// Version the model will have once trained.
    pub model_version: String,
    /// True when a training was already running (its version is returned).
    pub already_running: bool,
}

/// Start training a new model (admin); it runs in the background.
#[utoipa::path(post, path = "/api/v1/admin/recommendations/train", tag = "recommendations", security(("bearer" = [])),
    responses(
        (status = 202, description = "Training started", body = TrainingStarted),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn train(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> Result<(StatusCode, Json<TrainingStarted>), Problem> {
    let r = recommendations(&state)
        .train_model(grpc(
            proto::recommendation::TrainModelRequest {},
            Some(&admin.caller()),
        ))
        .await?
        .into_inner();
    Ok((
        StatusCode::ACCEPTED,
        Json(TrainingStarted {
            model_version: r.model_version,
            already_running: r.already_running,
        }),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelOut {
    pub model_version: String,
    /// `ease` or `popularity`.
    pub algorithm: String,
    /// RFC 3339.
    pub trained_at: String,
    /// Distinct user-product interactions it was trained on.
    pub interactions: u64,
    /// Products it knows.
    pub products: u64,
    pub users: u64,
    /// Offline metrics of that training (held-out recall_at_10, ndcg_at_10…).
    pub metrics: BTreeMap<String, f64>,
    /// Version being trained now, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub training_version: Option<String>,
}

/// The model being served (admin).
#[utoipa::path(get, path = "/api/v1/admin/recommendations/model", tag = "recommendations", security(("bearer" = [])),
    responses(
        (status = 200, description = "The current model", body = ModelOut),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No model trained yet", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn model(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> Result<Json<ModelOut>, Problem> {
    let r = recommendations(&state)
        .get_model_status(grpc(
            proto::recommendation::GetModelStatusRequest {},
            Some(&admin.caller()),
        ))
        .await?
        .into_inner();
    let current = r
        .current
        .ok_or_else(|| Problem::new(ErrorKind::NotFound, "no model has been trained yet"))?;
    Ok(Json(ModelOut {
        model_version: current.model_version,
        algorithm: current.algorithm,
        trained_at: super::common::rfc3339(current.trained_at),
        interactions: current.interaction_count,
        products: current.product_count,
        users: current.user_count,
        metrics: current.metrics.into_iter().collect(),
        training_version: Some(r.training_version).filter(|v| !v.is_empty()),
    }))
}

/// Products bought together with this one (from the recommendation
/// model); same-category products when it knows none.
#[utoipa::path(get, path = "/api/v1/products/{id}/similar", tag = "products",
    params(("id" = String, Path, description = "Product id"), SimilarParams),
    responses(
        (status = 200, description = "Similar products", body = ProductList),
        (status = 404, description = "Unknown product", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid parameters", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn similar(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<SimilarParams>,
) -> Result<Json<ProductList>, Problem> {
    let request = proto::recommendation::GetSimilarProductsRequest {
        product_id: product_id(&id)?,
        limit: limit(params.limit)?,
    };
    let r = recommendations(&state)
        .get_similar_products(grpc(request, None))
        .await?
        .into_inner();
    let ids: Vec<String> = r.products.into_iter().map(|p| p.product_id).collect();
    Ok(Json(ProductList {
        items: products_in_order(&state, &ids).await?,
        next_cursor: None,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SimilarParams {
    /// How many, 1 to 100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}
