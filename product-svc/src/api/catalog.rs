//! The catalog: validate, read, create, update, delete and list products,
//! with the Redis cache in front of reads.

use std::collections::BTreeMap;

use platform::error::{invalid_fields, parse_optional};
use platform::store::{Query, StoreError};
use prost::Message as _;
use proto::product::*;
use tonic::Status;

use super::{ProductApi, invalid, lookup_err, now, to_proto};
use crate::convert::validation_of;
use crate::domain::{self, FieldError, Money, Product};

impl ProductApi {
    /// ValidateProducts.
    pub(super) async fn validate(
        &self,
        r: ValidateProductsRequest,
    ) -> Result<ValidateProductsResponse, Status> {
        let ids = r.product_ids;
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
                Some(p) => validation_of(id, &p.value),
                None => ProductValidation {
                    product_id: id,
                    found: false,
                    ..Default::default()
                },
            });
        }
        Ok(ValidateProductsResponse { products })
    }

    /// GetProductDetails, served from the cache when it holds the product.
    pub(super) async fn details(
        &self,
        r: GetProductDetailsRequest,
    ) -> Result<GetProductDetailsResponse, Status> {
        let id = r.product_id;
        let namespace = format!("product:{id}");
        let lookup = self.cache.get(&namespace, "v").await;
        if let Some(product) = lookup
            .as_ref()
            .and_then(|l| l.value.as_ref())
            .and_then(|b| proto::product::Product::decode(b.as_slice()).ok())
        {
            return Ok(GetProductDetailsResponse {
                product: Some(product),
            });
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
        Ok(GetProductDetailsResponse {
            product: Some(product),
        })
    }

    /// BatchGetProducts: the products found, unknown ids left out.
    pub(super) async fn batch_get(
        &self,
        r: BatchGetProductsRequest,
    ) -> Result<BatchGetProductsResponse, Status> {
        let ids = r.product_ids;
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
        Ok(BatchGetProductsResponse { products })
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
                errors.push(FieldError::new("price", "is required"));
                None
            }
        };
        if i64::from(r.stock) > domain::MAX_STOCK {
            errors.push(FieldError::new("stock", "is too large"));
        }
        let (Some(sku), Some(name), Some(description), Some(category), Some(price), true) =
            (sku, name, description, category, price, errors.is_empty())
        else {
            return Err(invalid(errors));
        };
        let now = now().secs();
        let mut product = Product {
            search_text: domain::search_text(&name, &description),
            sku,
            name,
            description,
            category,
            price,
            images: Vec::new(),
            removed_images: Vec::new(),
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
        self.stock.stage_low_stock(&id, &mut product, i64::MAX);
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

    /// UpdateProduct: the fields given, validated all at once.
    pub(super) async fn update(
        &self,
        r: UpdateProductRequest,
    ) -> Result<UpdateProductResponse, Status> {
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
                p.updated_at = now().secs();
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
        Ok(UpdateProductResponse {
            product: Some(to_proto(&id, &updated.value)),
        })
    }

    /// DeleteProduct: refused while stock is reserved for open orders.
    pub(super) async fn delete(
        &self,
        r: DeleteProductRequest,
    ) -> Result<DeleteProductResponse, Status> {
        let id = r.product_id;
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
        Ok(DeleteProductResponse {})
    }

    /// ListProducts: search, category filter and cursor paging, cached per
    /// query.
    pub(super) async fn list(
        &self,
        r: ListProductsRequest,
    ) -> Result<ListProductsResponse, Status> {
        let include_inactive = r.include_inactive;
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
            return Ok(hit.clone());
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
        Ok(response)
    }
}
