//! gRPC surface of `ProductService`: proto <-> domain.
//!
//! RPCs not overridden here answer `UNIMPLEMENTED`.

use proto::product::product_service_server::ProductService;

/// The tonic implementation of `shop.product.v1.ProductService`.
#[derive(Debug, Default)]
pub struct ProductApi {}

#[tonic::async_trait]
impl ProductService for ProductApi {}
