//! gRPC surface of `OrderService`: proto <-> domain.
//!
//! RPCs not overridden here answer `UNIMPLEMENTED`.

use proto::order::order_service_server::OrderService;

/// The tonic implementation of `shop.order.v1.OrderService`.
#[derive(Debug, Default)]
pub struct OrderApi {}

#[tonic::async_trait]
impl OrderService for OrderApi {}
