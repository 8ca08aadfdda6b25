//! gRPC surface of `ProductService`: proto <-> domain.
//!
//! The tonic methods check who calls and delegate: `catalog` (products,
//! search, cache), `inventory` (admin stock changes and the order saga's
//! reservations), `reviews`.

use platform::auth::Caller;
use platform::events::outbox::OutboxRelay;
use platform::store::{Coalescer, Collection, StoreError, Versioned};
use proto::events::InventoryLow;
use proto::events::envelope::Payload;
use proto::product::product_service_server::ProductService;
use proto::product::*;
use tonic::{Request, Response, Status};

use platform::config::SagaSettings;
use platform::grpc::GrpcChannel;
use proto::order::order_service_client::OrderServiceClient;

use crate::cache::Cache;
use crate::domain::{self, FieldError, Product, Reservation, Review};

mod catalog;
pub(crate) use catalog::validation_of;
mod images;
mod inventory;
mod reviews;

/// The tonic implementation of `shop.product.v1.ProductService`.
#[derive(Clone, Debug)]
pub struct ProductApi {
    pub(crate) products: Collection<Product>,
    /// Stock moves of reservations, written in batches per product so a
    /// best-seller's concurrent orders do not fight over its document.
    pub(crate) stock_writes: Coalescer<Product>,
    pub(crate) reservations: Collection<Reservation>,
    pub(crate) reviews: Collection<Review>,
    pub(crate) product_relay: OutboxRelay<Product>,
    pub(crate) review_relay: OutboxRelay<Review>,
    pub(crate) cache: Cache,
    /// `inventory.low` is announced when available stock drops below this.
    pub(crate) low_stock_threshold: i64,
    /// Asked what became of an order whose reservation outlived it.
    pub(crate) orders: OrderServiceClient<GrpcChannel>,
    /// Verifies who calls and signs product-svc's own calls.
    pub(crate) mesh: platform::auth::MeshAuth,
    pub(crate) saga: SagaSettings,
}

fn now() -> i64 {
    platform::auth::unix_now() as i64
}

/// Stages `inventory.low` in `product`'s outbox when this change took its
/// available stock below `threshold` (from `before`).
pub(crate) fn stage_low_stock(threshold: i64, id: &str, product: &mut Product, before: i64) {
    if domain::crosses_low_stock(before, product.stock_available, threshold) {
        let event = platform::events::event(
            id,
            "product-svc",
            Payload::InventoryLow(InventoryLow {
                product_id: id.to_string(),
                sku: product.sku.clone(),
                name: product.name.clone(),
                stock_available: product.stock_available.max(0) as u32,
                threshold: threshold as u32,
            }),
        );
        product.outbox.stage(&event);
    }
}

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

pub(crate) fn to_proto(id: &str, p: &Product) -> proto::product::Product {
    proto::product::Product {
        id: id.to_string(),
        sku: p.sku.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        category: p.category.clone(),
        price: Some(proto::common::Money::new(p.price.amount, &p.price.currency)),
        stock_available: p.stock_available.max(0) as u32,
        stock_reserved: p.stock_reserved.max(0) as u32,
        rating_avg: p.rating_avg(),
        rating_count: p.rating_count.max(0) as u32,
        weight_grams: p.weight_grams,
        active: p.is_active(),
        created_at: Some(proto::ext::from_secs(p.created_at)),
        updated_at: Some(proto::ext::from_secs(p.updated_at)),
        images: p.images.iter().map(|i| image_to_proto(id, i)).collect(),
    }
}

pub(crate) fn image_to_proto(product_id: &str, i: &domain::Image) -> proto::media::Media {
    proto::media::Media {
        id: i.id.clone(),
        product_id: product_id.to_string(),
        key: i.key.clone(),
        content_type: i.content_type.clone(),
        width: i.width,
        height: i.height,
        bytes: i.bytes,
        alt: i.alt.clone(),
        thumbnails: i
            .thumbnails
            .iter()
            .map(|t| proto::media::Thumbnail {
                width: t.width,
                height: t.height,
                bytes: t.bytes,
                content_type: t.content_type.clone(),
            })
            .collect(),
        created_at: Some(proto::ext::from_millis(i.created_at)),
    }
}

/// The image a `media.uploaded` event announces.
pub(crate) fn image_from_proto(m: &proto::media::Media) -> domain::Image {
    domain::Image {
        id: m.id.clone(),
        key: m.key.clone(),
        content_type: m.content_type.clone(),
        width: m.width,
        height: m.height,
        bytes: m.bytes,
        alt: m.alt.clone(),
        thumbnails: m
            .thumbnails
            .iter()
            .map(|t| domain::Thumbnail {
                width: t.width,
                height: t.height,
                bytes: t.bytes,
                content_type: t.content_type.clone(),
            })
            .collect(),
        created_at: m
            .created_at
            .as_ref()
            .map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000),
    }
}

impl ProductApi {
    fn cache_namespaces(id: &str) -> Vec<String> {
        vec![format!("product:{id}"), "list".to_string()]
    }

    /// After a write: publish staged events, make cached copies stale.
    pub(crate) async fn after_write(&self, ids: &[&str]) {
        for id in ids {
            self.product_relay.flush_or_defer(id).await;
        }
        self.invalidate(ids).await;
    }

    /// [`ProductApi::after_write`] for stock moves whose stored documents
    /// the caller holds (`written`, in the order written; `ids`, every
    /// product touched): only a document that staged an event is published
    /// and cleared, from its latest copy, with no read first.
    pub(crate) async fn after_stock_writes(&self, written: Vec<Versioned<Product>>, ids: &[&str]) {
        let mut latest: std::collections::BTreeMap<String, Versioned<Product>> =
            std::collections::BTreeMap::new();
        for doc in written {
            match latest.get(&doc.id) {
                Some(seen) if seen.version >= doc.version => {}
                _ => {
                    latest.insert(doc.id.clone(), doc);
                }
            }
        }
        for doc in latest.into_values() {
            if !doc.value.outbox.is_empty() {
                self.product_relay.flush_or_defer_written(doc).await;
            }
        }
        self.invalidate(ids).await;
    }

    async fn invalidate(&self, ids: &[&str]) {
        let namespaces: Vec<String> = ids
            .iter()
            .flat_map(|id| Self::cache_namespaces(id))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        self.cache.invalidate(&namespaces).await;
    }

    pub(crate) fn stage_low_stock(&self, id: &str, product: &mut Product, before: i64) {
        stage_low_stock(self.low_stock_threshold, id, product, before)
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
        caller.require_from(&["order-svc"])
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
