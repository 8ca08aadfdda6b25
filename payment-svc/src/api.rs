//! gRPC surface of `PaymentService`: proto <-> domain.
//!
//! RPCs not overridden here answer `UNIMPLEMENTED`.

use proto::payment::payment_service_server::PaymentService;

/// The tonic implementation of `shop.payment.v1.PaymentService`.
#[derive(Debug, Default)]
pub struct PaymentApi {}

#[tonic::async_trait]
impl PaymentService for PaymentApi {}
