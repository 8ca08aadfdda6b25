//! What the service asks product-svc: whether products can be bought now
//! and their categories (one batched call per request), and same-category
//! products for the similar-items fallback.

use std::collections::HashMap;

use platform::grpc::GrpcChannel;
use proto::product::Product;
use proto::product::product_service_client::ProductServiceClient;

/// Most ids one BatchGetProducts call takes.
pub const BATCH: usize = 100;

/// product-svc, as seen from here.
#[derive(Debug, Clone)]
pub struct Catalog {
    client: ProductServiceClient<GrpcChannel>,
}

/// A product that can be recommended: active and in stock.
pub fn can_be_bought(p: &Product) -> bool {
    p.active && p.stock_available > 0
}

impl Catalog {
    pub fn new(channel: GrpcChannel) -> Self {
        Self {
            client: ProductServiceClient::new(channel),
        }
    }

    /// The products among `ids` (at most [`BATCH`]) the catalog has;
    /// unknown and deleted ones are missing from the answer.
    pub async fn lookup(&self, ids: &[String]) -> Result<HashMap<String, Product>, tonic::Status> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let request = proto::product::BatchGetProductsRequest {
            product_ids: ids.iter().take(BATCH).cloned().collect(),
        };
        let products = self
            .client
            .clone()
            .batch_get_products(request)
            .await?
            .into_inner()
            .products;
        Ok(products.into_iter().map(|p| (p.id.clone(), p)).collect())
    }

    /// Categories of many products, [`BATCH`] at a time (for training).
    pub async fn categories(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, String>, tonic::Status> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(BATCH) {
            for (id, p) in self.lookup(chunk).await? {
                if !p.category.is_empty() {
                    out.insert(id, p.category.to_lowercase());
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
