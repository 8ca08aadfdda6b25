//! What the service asks product-svc: whether products can be bought now
//! and their categories, and same-category products for the similar-items
//! fallback.
//!
//! Serving checks every candidate against the catalog. Asking product-svc
//! on every request (one batched call of up to [`BATCH`] products) made
//! that call most of a recommendation's cost, so answers are kept for a
//! short while (`RECOMMENDATION_CATALOG_TTL_MS`, default 1 s): a product
//! that goes out of stock or is withdrawn stops being recommended within
//! that time, which is no worse than the batched answer itself (stock can
//! change right after it). Only what ranking needs is kept (buyable or not,
//! category), the cache is bounded, and a TTL of 0 asks every time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use platform::grpc::GrpcChannel;
use proto::product::Product;
use proto::product::product_service_client::ProductServiceClient;

/// Most ids one BatchGetProducts call takes.
pub const BATCH: usize = 100;

/// Most products remembered; past it, stale entries go, then all.
const CACHE_CAPACITY: usize = 50_000;

/// A product that can be recommended: active and in stock.
pub fn can_be_bought(p: &Product) -> bool {
    p.active && p.stock_available > 0
}

/// What ranking needs to know of a product the catalog has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Active and in stock.
    pub buyable: bool,
    /// Lower case.
    pub category: String,
}

impl Listing {
    fn of(p: &Product) -> Self {
        Self {
            buyable: can_be_bought(p),
            category: p.category.to_lowercase(),
        }
    }
}

/// A remembered answer; `None`: the catalog does not have the product.
#[derive(Debug, Clone)]
struct Entry {
    listing: Option<Arc<Listing>>,
    at: Instant,
}

/// product-svc, as seen from here.
#[derive(Debug, Clone)]
pub struct Catalog {
    client: ProductServiceClient<GrpcChannel>,
    ttl: Duration,
    cache: Arc<RwLock<HashMap<String, Entry>>>,
}

impl Catalog {
    /// A catalog whose answers are reused for `ttl` (zero: never).
    pub fn new(channel: GrpcChannel, ttl: Duration) -> Self {
        Self {
            client: ProductServiceClient::new(channel),
            ttl,
            cache: Arc::default(),
        }
    }

    /// The products among `ids` (at most [`BATCH`]) the catalog has;
    /// unknown and deleted ones are missing from the answer. Fresh
    /// remembered answers are used; the rest is asked in one call.
    pub async fn lookup(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, Arc<Listing>>, tonic::Status> {
        let ids = &ids[..ids.len().min(BATCH)];
        let mut found = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        if self.ttl.is_zero() {
            missing.extend(ids.iter().cloned());
        } else {
            let now = Instant::now();
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            for id in ids {
                match cache.get(id) {
                    Some(e) if now.duration_since(e.at) < self.ttl => {
                        if let Some(l) = &e.listing {
                            found.insert(id.clone(), l.clone());
                        }
                    }
                    _ => missing.push(id.clone()),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let at = Instant::now();
        let mut products: HashMap<String, Arc<Listing>> = self
            .client
            .clone()
            .batch_get_products(proto::product::BatchGetProductsRequest {
                product_ids: missing.clone(),
            })
            .await?
            .into_inner()
            .products
            .iter()
            .map(|p| (p.id.clone(), Arc::new(Listing::of(p))))
            .collect();
        if !self.ttl.is_zero() {
            let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
            if cache.len() + missing.len() > CACHE_CAPACITY {
                let ttl = self.ttl;
                cache.retain(|_, e| at.duration_since(e.at) < ttl);
                if cache.len() + missing.len() > CACHE_CAPACITY {
                    cache.clear();
                }
            }
            for id in &missing {
                let listing = products.get(id).cloned();
                cache.insert(id.clone(), Entry { listing, at });
            }
        }
        found.extend(missing.into_iter().filter_map(|id| {
            let l = products.remove(&id)?;
            Some((id, l))
        }));
        Ok(found)
    }

    /// Categories of many products, [`BATCH`] at a time (for training).
    pub async fn categories(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, String>, tonic::Status> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(BATCH) {
            for (id, l) in self.lookup(chunk).await? {
                if !l.category.is_empty() {
                    out.insert(id, l.category.clone());
                }
            }
        }
        Ok(out)
    }

    /// Buyable products of `category` (first page of the listing).
    pub async fn in_category(
        &self,
        category: &str,
        limit: u32,
    ) -> Result<Vec<Product>, tonic::Status> {
        let request = proto::product::ListProductsRequest {
            query: String::new(),
            category: category.to_string(),
            page: Some(proto::common::PageRequest {
                limit: limit.clamp(1, 100),
                cursor: String::new(),
            }),
            include_inactive: false,
        };
        let products = self
            .client
            .clone()
            .list_products(request)
            .await?
            .into_inner()
            .products;
        Ok(products.into_iter().filter(can_be_bought).collect())
    }
}
