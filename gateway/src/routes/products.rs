//! `/api/v1/products*`: catalog, stock and similar items (reviews are in
//! `reviews`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use platform::{ErrorKind, ServiceId};
use proto::ext::Required as _;
use proto::product::product_service_client::ProductServiceClient;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub use super::common::{ApiQuery, Money};
use super::common::{cursor, integer, optional_integer, page, rfc3339};
use super::grpc;
use crate::extract::{AdminUser, ApiJson};
use crate::problem::{FieldError, Problem};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductOut {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub price: Money,
    pub stock_available: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rating_avg: Option<f64>,
    pub rating_count: u32,
    /// Primary first.
    pub images: Vec<ImageOut>,
    pub weight_grams: u32,
    pub active: bool,
    /// RFC 3339.
    pub created_at: String,
    pub updated_at: String,
}

impl From<proto::product::Product> for ProductOut {
    fn from(p: proto::product::Product) -> Self {
        Self {
            id: p.id,
            sku: p.sku,
            name: p.name,
            description: p.description,
            category: p.category,
            price: p.price.map(Money::from).unwrap_or(Money {
                amount: 0,
                currency: "USD".into(),
            }),
            stock_available: p.stock_available,
            rating_avg: p.rating_avg,
            rating_count: p.rating_count,
            images: p.images.into_iter().map(ImageOut::from).collect(),
            weight_grams: p.weight_grams,
            active: p.active,
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
        }
    }
}

/// A smaller copy of an image.
#[derive(Debug, Serialize, ToSchema)]
pub struct ThumbnailOut {
    pub width: u32,
    pub height: u32,
    /// Path of the thumbnail on this host: `/media/{key}/{width}`.
    pub url: String,
}

/// An image of a product.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageOut {
    pub id: String,
    /// SHA-256 of the stored bytes: its name under `/media` and its ETag.
    pub key: String,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    /// Text alternative.
    pub alt: String,
    /// Path of the image on this host: `/media/{key}`.
    pub url: String,
    /// Smallest first.
    pub thumbnails: Vec<ThumbnailOut>,
}

impl From<proto::media::Media> for ImageOut {
    fn from(m: proto::media::Media) -> Self {
        Self {
            url: format!("/media/{}", m.key),
            thumbnails: m
                .thumbnails
                .iter()
                .map(|t| ThumbnailOut {
                    width: t.width,
                    height: t.height,
                    url: format!("/media/{}/{}", m.key, t.width),
                })
                .collect(),
            id: m.id,
            key: m.key,
            content_type: m.content_type,
            width: m.width,
            height: m.height,
            bytes: m.bytes,
            alt: m.alt,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductList {
    pub items: Vec<ProductOut>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ProductCreate {
    pub sku: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub category: String,
    pub price: Money,
    /// Units on hand.
    #[serde(default, deserialize_with = "integer")]
    pub stock: u32,
    #[serde(default, deserialize_with = "integer")]
    pub weight_grams: u32,
}

/// Fields to change; absent ones stay.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ProductUpdate {
    pub sku: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub price: Option<Money>,
    #[serde(default, deserialize_with = "optional_integer")]
    pub weight_grams: Option<u32>,
    /// Inactive products are hidden and cannot be ordered.
    pub active: Option<bool>,
}

/// Exactly one of `stock` (units on hand) or `delta` (change of the available units).
#[derive(Debug, Deserialize, ToSchema)]
pub struct StockUpdate {
    #[serde(default, deserialize_with = "optional_integer")]
    pub stock: Option<u32>,
    #[serde(default, deserialize_with = "optional_integer")]
    pub delta: Option<i32>,
}

/// Paging (and search) parameters.
#[derive(Debug, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Text to find in the name or description.
    pub q: Option<String>,
    pub category: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

pub(super) fn products(state: &AppState) -> ProductServiceClient<platform::grpc::GrpcChannel> {
    ProductServiceClient::new(state.channel(ServiceId::Product))
}

/// Ids are UUIDs; anything else cannot exist.
pub(crate) fn product_id(id: &str) -> Result<String, Problem> {
    uuid::Uuid::parse_str(id)
        .map(|_| id.to_string())
        .map_err(|_| Problem::new(ErrorKind::NotFound, "product not found"))
}

/// Search and browse active products, newest first.
#[utoipa::path(operation_id = "list_products", get, path = "/api/v1/products", tag = "products", params(ListParams),
    responses(
        (status = 200, description = "A page of products", body = ProductList),
        (status = 422, description = "Invalid parameters or cursor", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<ProductList>, Problem> {
    let request = proto::product::ListProductsRequest {
        query: params.q.unwrap_or_default(),
        category: params.category.unwrap_or_default(),
        page: Some(page(params.limit, params.cursor)?),
        include_inactive: false,
    };
    let r = products(&state)
        .list_products(grpc(request, None))
        .await?
        .into_inner();
    Ok(Json(ProductList {
        items: r.products.into_iter().map(ProductOut::from).collect(),
        next_cursor: cursor(r.next_cursor),
    }))
}

/// Add a product (admin).
#[utoipa::path(operation_id = "create_product", post, path = "/api/v1/products", tag = "products", security(("bearer" = [])), request_body = ProductCreate,
    responses(
        (status = 201, description = "Created", body = ProductOut),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Duplicate SKU", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (e.g. negative price)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ApiJson(body): ApiJson<ProductCreate>,
) -> Result<Response, Problem> {
    let request = proto::product::CreateProductRequest {
        sku: body.sku,
        name: body.name,
        description: body.description,
        category: body.category,
        price: Some(body.price.into()),
        stock: body.stock,
        weight_grams: body.weight_grams,
    };
    let r = products(&state)
        .create_product(grpc(request, Some(&admin.caller())))
        .await?
        .into_inner();
    Ok((
        StatusCode::CREATED,
        Json(ProductOut::from(r.product.required("product")?)),
    )
        .into_response())
}

/// One product.
#[utoipa::path(operation_id = "get_product", get, path = "/api/v1/products/{id}", tag = "products", params(("id" = String, Path, description = "Product id")),
    responses(
        (status = 200, description = "The product", body = ProductOut),
        (status = 404, description = "Unknown product", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ProductOut>, Problem> {
    let request = proto::product::GetProductDetailsRequest {
        product_id: product_id(&id)?,
    };
    let r = products(&state)
        .get_product_details(grpc(request, None))
        .await?
        .into_inner();
    Ok(Json(ProductOut::from(r.product.required("product")?)))
}

/// Change a product (admin).
#[utoipa::path(put, path = "/api/v1/products/{id}", tag = "products", security(("bearer" = [])), request_body = ProductUpdate,
    params(("id" = String, Path, description = "Product id")),
    responses(
        (status = 200, description = "Updated", body = ProductOut),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown product", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Duplicate SKU", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ProductUpdate>,
) -> Result<Json<ProductOut>, Problem> {
    let request = proto::product::UpdateProductRequest {
        product_id: product_id(&id)?,
        sku: body.sku,
        name: body.name,
        description: body.description,
        category: body.category,
        price: body.price.map(Into::into),
        weight_grams: body.weight_grams,
        active: body.active,
    };
    let r = products(&state)
        .update_product(grpc(request, Some(&admin.caller())))
        .await?
        .into_inner();
    Ok(Json(ProductOut::from(r.product.required("product")?)))
}

/// Remove a product (admin).
#[utoipa::path(delete, path = "/api/v1/products/{id}", tag = "products", security(("bearer" = [])),
    params(("id" = String, Path, description = "Product id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown product", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Stock reserved for open orders", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let request = proto::product::DeleteProductRequest {
        product_id: product_id(&id)?,
    };
    products(&state)
        .delete_product(grpc(request, Some(&admin.caller())))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set the units on hand (`stock`) or move the available units (`delta`) (admin).
#[utoipa::path(put, path = "/api/v1/products/{id}/stock", tag = "products", security(("bearer" = [])), request_body = StockUpdate,
    params(("id" = String, Path, description = "Product id")),
    responses(
        (status = 200, description = "Updated", body = ProductOut),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown product", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Below the reserved units", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Neither or both of stock and delta", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stock(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StockUpdate>,
) -> Result<Json<ProductOut>, Problem> {
    use proto::product::update_stock_request::Change;
    let change = match (body.stock, body.delta) {
        (Some(stock), None) => Change::Stock(stock),
        (None, Some(delta)) => Change::Delta(delta),
        _ => {
            return Err(Problem::new(
                ErrorKind::InvalidArgument,
                "give exactly one of stock or delta",
            )
            .with_errors(vec![FieldError {
                field: "stock".into(),
                message: "give exactly one of stock or delta".into(),
            }]));
        }
    };
    let request = proto::product::UpdateStockRequest {
        product_id: product_id(&id)?,
        change: Some(change),
    };
    let r = products(&state)
        .update_stock(grpc(request, Some(&admin.caller())))
        .await?
        .into_inner();
    Ok(Json(ProductOut::from(r.product.required("product")?)))
}
