//! gRPC surface of `ProductService`: proto <-> domain.
//!
//! The tonic methods check who calls and delegate: `catalog` (products,
//! search, cache), `inventory` (admin stock changes and the order saga's
//! reservations), `reviews`.

use platform::Component;
use platform::auth::Caller;
use platform::events::outbox::OutboxRelay;
use platform::store::{Collection, StoreError, Versioned};
use proto::product::product_service_server::ProductService;
use proto::product::*;
use tonic::{Request, Response, Status};

use crate::cache::Cache;
pub(crate) use crate::convert::{image_from_proto, to_proto};
use crate::domain::{FieldError, Product, Review};
use crate::stock::Stock;

mod catalog;
mod images;
mod inventory;
mod reviews;

/// The tonic implementation of `shop.product.v1.ProductService`.
#[derive(Clone, Debug)]
pub struct ProductApi {
    pub(crate) products: Collection<Product>,
    pub(crate) reviews: Collection<Review>,
    pub(crate) product_relay: OutboxRelay<Product>,
    pub(crate) review_relay: OutboxRelay<Review>,
    pub(crate) cache: Cache,
    /// Stock levels and the order saga's reservations.
    pub(crate) stock: Stock,
    /// Verifies who calls.
    pub(crate) mesh: platform::auth::MeshAuth,
}

use platform::clock::now;

fn invalid(errors: Vec<FieldError>) -> Status {
    platform::error::invalid(errors)
}

fn not_found() -> Status {
    Status::not_found("product not found")
}

/// Store errors on a lookup by id: an id that cannot exist is simply not found.
fn lookup_err(err: StoreError) -> Status {
    match err {
        StoreError::NotFound | StoreError::Invalid(_) => not_found(),
        other => other.into(),
    }
}

impl ProductApi {
    /// After a write: publish staged events, make cached copies stale.
    pub(crate) async fn after_write(&self, ids: &[&str]) {
        for id in ids {
            self.product_relay.flush_or_defer(id).await;
        }
        self.stock.invalidate(ids).await;
    }

    async fn get_product(&self, id: &str) -> Result<Versioned<Product>, Status> {
        self.products.get(id).await.map_err(lookup_err)
    }
}

impl ProductApi {
    async fn require_admin(
        &self,
        request_metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Caller, Status> {
        let caller = self.mesh.caller(request_metadata).await?;
        caller.require_admin()?;
        Ok(caller)
    }

    /// Reservations are moved by the order saga only.
    async fn require_order_saga(
        &self,
        request_metadata: &tonic::metadata::MetadataMap,
    ) -> Result<(), Status> {
        let caller = self.mesh.caller(request_metadata).await?;
        caller.require_from(&[Component::ORDER])
    }
}

#[tonic::async_trait]
impl ProductService for ProductApi {
    async fn validate_products(
        &self,
        request: Request<ValidateProductsRequest>,
    ) -> Result<Response<ValidateProductsResponse>, Status> {
        self.validate(request.into_inner()).await.map(Response::new)
    }

    async fn get_product_details(
        &self,
        request: Request<GetProductDetailsRequest>,
    ) -> Result<Response<GetProductDetailsResponse>, Status> {
        self.details(request.into_inner()).await.map(Response::new)
    }

    async fn batch_get_products(
        &self,
        request: Request<BatchGetProductsRequest>,
    ) -> Result<Response<BatchGetProductsResponse>, Status> {
        self.batch_get(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn update_stock(
        &self,
        request: Request<UpdateStockRequest>,
    ) -> Result<Response<UpdateStockResponse>, Status> {
        self.require_admin(request.metadata()).await?;
        self.set_stock(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn create_product(
        &self,
        request: Request<CreateProductRequest>,
    ) -> Result<Response<CreateProductResponse>, Status> {
        self.require_admin(request.metadata()).await?;
        let product = self.create(request.into_inner()).await?;
        Ok(Response::new(CreateProductResponse {
            product: Some(product),
        }))
    }

    async fn set_image_order(
        &self,
        request: Request<SetImageOrderRequest>,
    ) -> Result<Response<SetImageOrderResponse>, Status> {
        self.require_admin(request.metadata()).await?;
        self.set_image_order(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn update_product(
        &self,
        request: Request<UpdateProductRequest>,
    ) -> Result<Response<UpdateProductResponse>, Status> {
        self.require_admin(request.metadata()).await?;
        self.update(request.into_inner()).await.map(Response::new)
    }

    async fn delete_product(
        &self,
        request: Request<DeleteProductRequest>,
    ) -> Result<Response<DeleteProductResponse>, Status> {
        self.require_admin(request.metadata()).await?;
        self.delete(request.into_inner()).await.map(Response::new)
    }

    async fn list_products(
        &self,
        request: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        let include_inactive = request.get_ref().include_inactive;
        if include_inactive {
            self.require_admin(request.metadata()).await?;
        }
        self.list(request.into_inner()).await.map(Response::new)
    }

    async fn reserve_stock(
        &self,
        request: Request<ReserveStockRequest>,
    ) -> Result<Response<ReserveStockResponse>, Status> {
        self.require_order_saga(request.metadata()).await?;
        self.reserve_lines(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn release_stock(
        &self,
        request: Request<ReleaseStockRequest>,
    ) -> Result<Response<ReleaseStockResponse>, Status> {
        self.require_order_saga(request.metadata()).await?;
        self.release_order(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn commit_stock(
        &self,
        request: Request<CommitStockRequest>,
    ) -> Result<Response<CommitStockResponse>, Status> {
        self.require_order_saga(request.metadata()).await?;
        self.commit_order(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn add_review(
        &self,
        request: Request<AddReviewRequest>,
    ) -> Result<Response<AddReviewResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        self.review(&caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_reviews(
        &self,
        request: Request<ListReviewsRequest>,
    ) -> Result<Response<ListReviewsResponse>, Status> {
        self.reviews_page(request.into_inner())
            .await
            .map(Response::new)
    }
}
