//! gRPC surface of `ShippingService`: proto <-> domain.
//!
//! RPCs not overridden here answer `UNIMPLEMENTED`.

use proto::shipping::shipping_service_server::ShippingService;

/// The tonic implementation of `shop.shipping.v1.ShippingService`.
#[derive(Debug, Default)]
pub struct ShippingApi {}

#[tonic::async_trait]
impl ShippingService for ShippingApi {}
