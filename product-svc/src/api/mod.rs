//! gRPC surface of `ProductService`: proto <-> domain.

use std::collections::BTreeMap;

use platform::auth::Caller;
use platform::error::invalid_fields;
use platform::error::parse_optional;
use platform::events::outbox::OutboxRelay;
use platform::store::{Coalescer, Collection, Query, StoreError, Versioned};
use prost::Message as _;
use proto::events::envelope::Payload;
use proto::events::{InventoryLow, ReviewCreated};
use proto::product::product_service_server::ProductService;
use proto::product::*;
use tonic::{Request, Response, Status};

use platform::config::SagaSettings;
use platform::grpc::GrpcChannel;
use proto::order::order_service_client::OrderServiceClient;

use crate::cache::Cache;
use crate::domain::{self, FieldError, Money, Product, Reservation, ReservationState, Review};

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
        let event = platform::events::envelope(
            "inventory.low",
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

fn timestamp(secs: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    })
}

fn invalid(errors: Vec<FieldError>) -> Status {
    invalid_fields(errors.into_iter().map(|e| (e.field, e.message)))
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
        price: Some(proto::common::Money {
            amount: p.price.amount,
            currency: p.price.currency.clone(),
        }),
        image_urls: p.image_urls.clone(),
        stock_available: p.stock_available.max(0) as u32,
        stock_reserved: p.stock_reserved.max(0) as u32,
        rating_avg: p.rating_avg(),
        rating_count: p.rating_count.max(0) as u32,
        weight_grams: p.weight_grams,
        active: p.is_active(),
        created_at: timestamp(p.created_at),
        updated_at: timestamp(p.updated_at),
    }
}

fn review_to_proto(id: &str, r: &Review) -> proto::product::Review {
    proto::product::Review {
        id: id.to_string(),
        product_id: r.product_id.clone(),
        user_id: r.user_id.clone(),
        rating: r.rating as u32,
        comment: r.comment.clone(),
        created_at: timestamp(r.created_at),
    }
}

fn reservation_to_proto(order_id: &str, r: &Reservation) -> proto::product::Reservation {
    use ReservationState::*;
    let status = match r.state {
        Reserving | Active => ReservationStatus::Active,
        Committing | Committed => ReservationStatus::Committed,
        Releasing | Released | Restocking | Restocked => ReservationStatus::Released,
    };
    proto::product::Reservation {
        order_id: order_id.to_string(),
        lines: r
            .lines
            .iter()
            .map(|(p, q)| StockLine {
                product_id: p.clone(),
                quantity: *q as u32,
            })
            .collect(),
        status: status as i32,
        created_at: timestamp(r.created_at),
        updated_at: timestamp(r.updated_at),
    }
}

impl ProductApi {
    fn cache_namespaces(id: &str) -> Vec<String> {
        vec![format!("product:{id}"), "list".to_string()]
    }

    /// After a write: publish staged events, make cached copies stale.
    pub(crate) async fn after_write(&self, ids: &[&str]) {
        for id in ids {
            if let Err(err) = self.product_relay.flush(id).await {
                tracing::warn!(error = %err, product = id, "event publish deferred to the outbox sweeper");
            }
        }
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

    /// Creates a product (used by the RPC and the demo seed).
    pub async fn create(&self, r: CreateProductRequest) -> Result<proto::product::Product, Status> {
        let mut errors = Vec::new();
        let sku = domain::parse_sku(&r.sku).map_err(|e| errors.push(e)).ok();
        let name = domain::parse_name(&r.name).map_err(|e| errors.push(e)).ok();
        let description = domain::parse_description(&r.description)
            .map_err(|e| errors.push(e))
            .ok();
        let category = domain::parse_category(&r.category)
            .map_err(|e| errors.push(e))
            .ok();
        let price = match &r.price {
            Some(m) => Money::parse(m.amount, &m.currency)
                .map_err(|e| errors.push(e))
                .ok(),
            None => {
                errors.push(FieldError {
                    field: "price",
                    message: "is required".into(),
                });
                None
            }
        };
        let images = domain::parse_image_urls(&r.image_urls)
            .map_err(|e| errors.push(e))
            .ok();
        if i64::from(r.stock) > domain::MAX_STOCK {
            errors.push(FieldError {
                field: "stock",
                message: "is too large".into(),
            });
        }
        let (
            Some(sku),
            Some(name),
            Some(description),
            Some(category),
            Some(price),
            Some(image_urls),
            true,
        ) = (
            sku,
            name,
            description,
            category,
            price,
            images,
            errors.is_empty(),
        )
        else {
            return Err(invalid(errors));
        };
        let now = now();
        let mut product = Product {
            search_text: domain::search_text(&name, &description),
            sku,
            name,
            description,
            category,
            price,
            image_urls,
            weight_grams: r.weight_grams,
            status: domain::ACTIVE.into(),
            stock_available: i64::from(r.stock),
            stock_reserved: 0,
            reservations: BTreeMap::new(),
            restocked: Vec::new(),
            released: Vec::new(),
            rating_sum: 0,
            rating_count: 0,
            created_at: now,
            updated_at: now,
            outbox: Default::default(),
        };
        let id = uuid::Uuid::now_v7().to_string();
        self.stage_low_stock(&id, &mut product, i64::MAX);
        match self.products.insert(&id, product).await {
            Ok(stored) => {
                self.after_write(&[&id]).await;
                Ok(to_proto(&id, &stored.value))
            }
            Err(StoreError::AlreadyExists { .. }) => Err(Status::already_exists(
                "a product with this SKU already exists",
            )),
            Err(err) => Err(err.into()),
        }
    }

    async fn cached_list(&self, key: &str) -> Option<(String, Option<ListProductsResponse>)> {
        let lookup = self.cache.get("list", key).await?;
        let value = lookup
            .value
            .and_then(|bytes| ListProductsResponse::decode(bytes.as_slice()).ok());
        Some((lookup.generation, value))
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
        let ids = request.into_inner().product_ids;
        if ids.len() > 100 {
            return Err(invalid_fields([("product_ids", "at most 100".to_string())]));
        }
        let mut products = Vec::with_capacity(ids.len());
        for id in ids {
            let found = match self.products.find_by_id(&id).await {
                Ok(found) => found,
                Err(StoreError::Invalid(_)) => None,
                Err(err) => return Err(err.into()),
            };
            products.push(match found {
                Some(p) => ProductValidation {
                    product_id: id,
                    found: true,
                    active: p.value.is_active(),
                    name: p.value.name.clone(),
                    sku: p.value.sku.clone(),
                    price: Some(proto::common::Money {
                        amount: p.value.price.amount,
                        currency: p.value.price.currency.clone(),
                    }),
                    stock_available: p.value.stock_available.max(0) as u32,
                    weight_grams: p.value.weight_grams,
                },
                None => ProductValidation {
                    product_id: id,
                    found: false,
                    ..Default::default()
                },
            });
        }
        Ok(Response::new(ValidateProductsResponse { products }))
    }

    async fn get_product_details(
        &self,
        request: Request<GetProductDetailsRequest>,
    ) -> Result<Response<GetProductDetailsResponse>, Status> {
        let id = request.into_inner().product_id;
        let namespace = format!("product:{id}");
        let lookup = self.cache.get(&namespace, "v").await;
        if let Some(product) = lookup
            .as_ref()
            .and_then(|l| l.value.as_ref())
            .and_then(|b| proto::product::Product::decode(b.as_slice()).ok())
        {
            return Ok(Response::new(GetProductDetailsResponse {
                product: Some(product),
            }));
        }
        let stored = self.get_product(&id).await?;
        let product = to_proto(&stored.id, &stored.value);
        if let Some(lookup) = lookup {
            self.cache
                .put(
                    &namespace,
                    "v",
                    &lookup.generation,
                    &product.encode_to_vec(),
                )
                .await;
        }
        Ok(Response::new(GetProductDetailsResponse {
            product: Some(product),
        }))
    }

    async fn batch_get_products(
        &self,
        request: Request<BatchGetProductsRequest>,
    ) -> Result<Response<BatchGetProductsResponse>, Status> {
        let ids = request.into_inner().product_ids;
        if ids.len() > 100 {
            return Err(invalid_fields([("product_ids", "at most 100".to_string())]));
        }
        let mut products = Vec::new();
        for id in ids {
            match self.products.find_by_id(&id).await {
                Ok(Some(p)) => products.push(to_proto(&p.id, &p.value)),
                Ok(None) | Err(StoreError::Invalid(_)) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(Response::new(BatchGetProductsResponse { products }))
    }

    async fn update_stock(
        &self,
        request: Request<UpdateStockRequest>,
    ) -> Result<Response<UpdateStockResponse>, Status> {
        self.require_admin(request.metadata()).await?;
        let r = request.into_inner();
        let (absolute, delta) = match r.change {
            Some(update_stock_request::Change::Stock(s)) => (Some(i64::from(s)), None),
            Some(update_stock_request::Change::Delta(d)) => (None, Some(i64::from(d))),
            None => {
                return Err(invalid_fields([(
                    "stock",
                    "give stock or delta".to_string(),
                )]));
            }
        };
        let id = r.product_id;
        let updated = self
            .products
            .update(&id, |p| {
                let before = p.stock_available;
                p.set_stock(absolute, delta)?;
                p.updated_at = now();
                self.stage_low_stock(&id, p, before);
                Ok(())
            })
            .await
            .map_err(lookup_err)?
            .map_err(|e| crate::inventory::stock_error(&id, e))?;
        self.after_write(&[&id]).await;
        Ok(Response::new(UpdateStockResponse {
            product: Some(to_proto(&id, &updated.value)),
        }))
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

    async fn update_product(
        &self,
        request: Request<UpdateProductRequest>,
    ) -> Result<Response<UpdateProductResponse>, Status> {
        self.require_admin(request.metadata()).await?;
        let r = request.into_inner();
        let mut errors = Vec::new();
        let sku = parse_optional(r.sku.as_deref(), domain::parse_sku, &mut errors);
        let name = parse_optional(r.name.as_deref(), domain::parse_name, &mut errors);
        let description = parse_optional(
            r.description.as_deref(),
            domain::parse_description,
            &mut errors,
        );
        let category = parse_optional(r.category.as_deref(), domain::parse_category, &mut errors);
        let price = parse_optional(
            r.price.as_ref(),
            |m| Money::parse(m.amount, &m.currency),
            &mut errors,
        );
        let images = parse_optional(
            r.image_urls.as_ref(),
            |i| domain::parse_image_urls(&i.urls),
            &mut errors,
        );
        if !errors.is_empty() {
            return Err(invalid(errors));
        }
        let id = r.product_id;
        let updated = self
            .products
            .modify(&id, |p| {
                if let Some(v) = &sku {
                    p.sku = v.clone();
                }
                if let Some(v) = &name {
                    p.name = v.clone();
                }
                if let Some(v) = &description {
                    p.description = v.clone();
                }
                if let Some(v) = &category {
                    p.category = v.clone();
                }
                if let Some(v) = &price {
                    p.price = v.clone();
                }
                if let Some(v) = &images {
                    p.image_urls = v.clone();
                }
                if let Some(w) = r.weight_grams {
                    p.weight_grams = w;
                }
                if let Some(active) = r.active {
                    p.status = if active {
                        domain::ACTIVE
                    } else {
                        domain::INACTIVE
                    }
                    .into();
                }
                p.search_text = domain::search_text(&p.name, &p.description);
                p.updated_at = now();
            })
            .await;
        let updated = match updated {
            Ok(updated) => updated,
            Err(StoreError::AlreadyExists { .. }) => {
                return Err(Status::already_exists(
                    "a product with this SKU already exists",
                ));
            }
            Err(err) => return Err(lookup_err(err)),
        };
        self.after_write(&[&id]).await;
        Ok(Response::new(UpdateProductResponse {
            product: Some(to_proto(&id, &updated.value)),
        }))
    }

    async fn delete_product(
        &self,
        request: Request<DeleteProductRequest>,
    ) -> Result<Response<DeleteProductResponse>, Status> {
        self.require_admin(request.metadata()).await?;
        let id = request.into_inner().product_id;
        let current = self.get_product(&id).await?;
        if current.value.stock_reserved > 0 {
            return Err(Status::failed_precondition(
                "the product has stock reserved for open orders; deactivate it instead",
            ));
        }
        self.products
            .delete(&id, Some(current.version))
            .await
            .map_err(lookup_err)?;
        self.after_write(&[&id]).await;
        Ok(Response::new(DeleteProductResponse {}))
    }

    async fn list_products(
        &self,
        request: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        let include_inactive = request.get_ref().include_inactive;
        if include_inactive {
            self.require_admin(request.metadata()).await?;
        }
        let r = request.into_inner();
        let mut query = Query::new().sort_by_id(true).page(r.page.as_ref());
        if !r.category.trim().is_empty() {
            let category = domain::parse_category(&r.category).map_err(|e| invalid(vec![e]))?;
            query = query.eq("category", category);
        }
        if !include_inactive {
            query = query.eq("status", domain::ACTIVE);
        }
        let text = r.query.trim().to_lowercase();
        if text.chars().count() > 200 {
            return Err(invalid_fields([(
                "q",
                "at most 200 characters".to_string(),
            )]));
        }
        if text.contains('\0') {
            return Err(invalid_fields([(
                "q",
                "must not contain NUL characters".to_string(),
            )]));
        }
        if !text.is_empty() {
            query = query.text(&text);
        }
        let key = format!(
            "{}|{}|{}|{}|{}",
            include_inactive,
            r.category.trim(),
            text,
            query.limit,
            query.cursor.clone().unwrap_or_default()
        );
        let cached = self.cached_list(&key).await;
        if let Some((_, Some(hit))) = &cached {
            return Ok(Response::new(hit.clone()));
        }
        let page = self
            .products
            .find(&query)
            .await
            .map_err(StoreError::into_list_status)?;
        let response = ListProductsResponse {
            products: page
                .items
                .iter()
                .map(|p| to_proto(&p.id, &p.value))
                .collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        };
        if let Some((generation, None)) = cached {
            self.cache
                .put("list", &key, &generation, &response.encode_to_vec())
                .await;
        }
        Ok(Response::new(response))
    }

    async fn reserve_stock(
        &self,
        request: Request<ReserveStockRequest>,
    ) -> Result<Response<ReserveStockResponse>, Status> {
        self.require_order_saga(request.metadata()).await?;
        let r = request.into_inner();
        if r.order_id.trim().is_empty() || r.order_id.len() > 128 {
            return Err(invalid_fields([("order_id", "is required".to_string())]));
        }
        let lines = crate::inventory::merge_lines(&r.lines)?;
        let reservation = self.reserve(&r.order_id, lines).await?;
        platform::metrics::count(&platform::metrics::RESERVATIONS, &["held"]);
        Ok(Response::new(ReserveStockResponse {
            reservation: Some(reservation_to_proto(&r.order_id, &reservation)),
        }))
    }

    async fn release_stock(
        &self,
        request: Request<ReleaseStockRequest>,
    ) -> Result<Response<ReleaseStockResponse>, Status> {
        self.require_order_saga(request.metadata()).await?;
        let order_id = request.into_inner().order_id;
        let reservation = self.release(&order_id).await?;
        platform::metrics::count(&platform::metrics::RESERVATIONS, &["released"]);
        Ok(Response::new(ReleaseStockResponse {
            reservation: Some(reservation_to_proto(&order_id, &reservation)),
        }))
    }

    async fn commit_stock(
        &self,
        request: Request<CommitStockRequest>,
    ) -> Result<Response<CommitStockResponse>, Status> {
        self.require_order_saga(request.metadata()).await?;
        let order_id = request.into_inner().order_id;
        let reservation = self.commit(&order_id).await?;
        platform::metrics::count(&platform::metrics::RESERVATIONS, &["committed"]);
        Ok(Response::new(CommitStockResponse {
            reservation: Some(reservation_to_proto(&order_id, &reservation)),
        }))
    }

    async fn add_review(
        &self,
        request: Request<AddReviewRequest>,
    ) -> Result<Response<AddReviewResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let r = request.into_inner();
        let mut errors = Vec::new();
        let rating = domain::parse_rating(r.rating)
            .map_err(|e| errors.push(e))
            .ok();
        let comment = domain::parse_comment(&r.comment)
            .map_err(|e| errors.push(e))
            .ok();
        let (Some(rating), Some(comment)) = (rating, comment) else {
            return Err(invalid(errors));
        };
        let product_id = r.product_id;
        self.get_product(&product_id).await?;
        let review_id = format!("{product_id}:{}", caller.user_id);
        let review = match self.reviews.find_by_id(&review_id).await? {
            Some(_) => {
                self.reviews
                    .modify(&review_id, |rv| {
                        rv.rating = rating;
                        rv.comment = comment.clone();
                        rv.updated_at = now();
                    })
                    .await?
            }
            None => {
                let mut review = Review {
                    product_id: product_id.clone(),
                    user_id: caller.user_id.clone(),
                    rating,
                    comment: comment.clone(),
                    created_at: now(),
                    updated_at: now(),
                    outbox: Default::default(),
                };
                review.outbox.stage(&platform::events::envelope(
                    "review.created",
                    &review_id,
                    "product-svc",
                    Payload::ReviewCreated(ReviewCreated {
                        review_id: review_id.clone(),
                        product_id: product_id.clone(),
                        user_id: caller.user_id.clone(),
                        rating: rating as u32,
                    }),
                ));
                match self.reviews.insert(&review_id, review).await {
                    Ok(stored) => stored,
                    // Two first reviews at once: the other won; apply ours on top.
                    Err(StoreError::AlreadyExists { .. }) => {
                        self.reviews
                            .modify(&review_id, |rv| {
                                rv.rating = rating;
                                rv.comment = comment.clone();
                                rv.updated_at = now();
                            })
                            .await?
                    }
                    Err(err) => return Err(err.into()),
                }
            }
        };
        if let Err(err) = self.review_relay.flush(&review_id).await {
            tracing::warn!(error = %err, "review event deferred to the outbox sweeper");
        }
        self.recompute_rating(&product_id).await?;
        self.after_write(&[&product_id]).await;
        Ok(Response::new(AddReviewResponse {
            review: Some(review_to_proto(&review_id, &review.value)),
        }))
    }

    async fn list_reviews(
        &self,
        request: Request<ListReviewsRequest>,
    ) -> Result<Response<ListReviewsResponse>, Status> {
        let r = request.into_inner();
        self.get_product(&r.product_id).await?;
        let query = Query::new()
            .eq("product_id", r.product_id.as_str())
            .sort("created_at", true)
            .page(r.page.as_ref());
        let page = self
            .reviews
            .find(&query)
            .await
            .map_err(StoreError::into_list_status)?;
        Ok(Response::new(ListReviewsResponse {
            reviews: page
                .items
                .iter()
                .map(|rv| review_to_proto(&rv.id, &rv.value))
                .collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        }))
    }
}

impl ProductApi {
    /// Sets the product's rating sum and count from its reviews. The
    /// product's version is read before the reviews, so a concurrent
    /// recomputation that saw fewer reviews loses its CAS and runs again.
    async fn recompute_rating(&self, product_id: &str) -> Result<(), Status> {
        for _ in 0..platform::store::MAX_UPDATE_ATTEMPTS {
            let product = self.get_product(product_id).await?;
            let (mut sum, mut count, mut cursor) = (0i64, 0i64, None);
            loop {
                let page = self
                    .reviews
                    .find(
                        &Query::new()
                            .eq("product_id", product_id)
                            .limit(500)
                            .after(cursor),
                    )
                    .await?;
                for review in &page.items {
                    sum += i64::from(review.value.rating);
                    count += 1;
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            let mut next = product.value;
            next.rating_sum = sum;
            next.rating_count = count;
            match self
                .products
                .replace(product_id, product.version, next)
                .await
            {
                Ok(_) => return Ok(()),
                Err(StoreError::VersionConflict) => continue,
                Err(err) => return Err(lookup_err(err)),
            }
        }
        Err(Status::aborted(
            "too much contention on this product; retry",
        ))
    }
}
