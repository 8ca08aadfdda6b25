//! The services the order saga calls, as traits: the catalog and stock of
//! product-svc, the payments of payment-svc, the shipments of shipping-svc.
//!
//! Each method takes the `tonic::Request` the saga built (its deadline or
//! budget, its credentials) and returns the peer's answer or its status.
//! Production uses the tonic clients (the impls below, one call each);
//! tests put in-process fakes in their place.

use std::fmt::Debug;
use std::sync::Arc;

use anyhow::Context as _;
use platform::grpc::GrpcChannel;
use platform::{Config, ServiceId};
use proto::payment::payment_service_client::PaymentServiceClient;
use proto::payment::{
    CreatePaymentRequest, CreatePaymentResponse, ProcessRefundRequest, ProcessRefundResponse,
};
use proto::product::product_service_client::ProductServiceClient;
use proto::product::{
    CommitStockRequest, CommitStockResponse, ReleaseStockRequest, ReleaseStockResponse,
    ReserveStockRequest, ReserveStockResponse, ValidateProductsRequest, ValidateProductsResponse,
};
use proto::shipping::shipping_service_client::ShippingServiceClient;
use proto::shipping::{VoidShipmentRequest, VoidShipmentResponse};
use tonic::{Request, Status};

/// product-svc: prices and availability, and the stock reserved per order.
#[tonic::async_trait]
pub trait Catalog: Send + Sync + Debug {
    /// `ValidateProducts`: one answer per id, in request order.
    async fn validate_products(
        &self,
        request: Request<ValidateProductsRequest>,
    ) -> Result<ValidateProductsResponse, Status>;

    /// `ReserveStock`: holds the lines for the order (idempotent per order).
    async fn reserve_stock(
        &self,
        request: Request<ReserveStockRequest>,
    ) -> Result<ReserveStockResponse, Status>;

    /// `ReleaseStock`: gives the order's units back (idempotent).
    async fn release_stock(
        &self,
        request: Request<ReleaseStockRequest>,
    ) -> Result<ReleaseStockResponse, Status>;

    /// `CommitStock`: the order's reserved units become a sale (idempotent).
    async fn commit_stock(
        &self,
        request: Request<CommitStockRequest>,
    ) -> Result<CommitStockResponse, Status>;
}

/// payment-svc: charges and refunds.
#[tonic::async_trait]
pub trait Payments: Send + Sync + Debug {
    /// `CreatePayment`: charges the order once per idempotency key.
    async fn create_payment(
        &self,
        request: Request<CreatePaymentRequest>,
    ) -> Result<CreatePaymentResponse, Status>;

    /// `ProcessRefund`: refunds a payment once per idempotency key.
    async fn process_refund(
        &self,
        request: Request<ProcessRefundRequest>,
    ) -> Result<ProcessRefundResponse, Status>;
}

/// shipping-svc: the order's shipment.
#[tonic::async_trait]
pub trait Shipments: Send + Sync + Debug {
    /// `VoidShipment`: cancels the shipment unless the carrier has it
    /// (FAILED_PRECONDITION then).
    async fn void_shipment(
        &self,
        request: Request<VoidShipmentRequest>,
    ) -> Result<VoidShipmentResponse, Status>;
}

/// The peers the saga calls.
#[derive(Clone, Debug)]
pub struct Peers {
    pub catalog: Arc<dyn Catalog>,
    pub payments: Arc<dyn Payments>,
    pub shipments: Arc<dyn Shipments>,
}

impl Peers {
    /// The tonic clients of the peers `config` names (`<SVC>_ADDR`).
    pub fn connect(config: &Config) -> anyhow::Result<Peers> {
        let channel = |peer: ServiceId| {
            platform::grpc::channel_for(peer, config.peers.get(peer), &config.grpc)
                .with_context(|| format!("a channel to {}", peer.name()))
        };
        Ok(Peers {
            catalog: Arc::new(ProductServiceClient::new(channel(ServiceId::Product)?)),
            payments: Arc::new(PaymentServiceClient::new(channel(ServiceId::Payment)?)),
            shipments: Arc::new(ShippingServiceClient::new(channel(ServiceId::Shipping)?)),
        })
    }
}

// The tonic clients are cheap handles on a channel: each call clones one and
// names the client's own method by its path (a method call would pick the
// trait's method of the same name, which takes `&self`).

#[tonic::async_trait]
impl Catalog for ProductServiceClient<GrpcChannel> {
    async fn validate_products(
        &self,
        request: Request<ValidateProductsRequest>,
    ) -> Result<ValidateProductsResponse, Status> {
        let reply = ProductServiceClient::validate_products(&mut self.clone(), request).await?;
        Ok(reply.into_inner())
    }

    async fn reserve_stock(
        &self,
        request: Request<ReserveStockRequest>,
    ) -> Result<ReserveStockResponse, Status> {
        let reply = ProductServiceClient::reserve_stock(&mut self.clone(), request).await?;
        Ok(reply.into_inner())
    }

    async fn release_stock(
        &self,
        request: Request<ReleaseStockRequest>,
    ) -> Result<ReleaseStockResponse, Status> {
        let reply = ProductServiceClient::release_stock(&mut self.clone(), request).await?;
        Ok(reply.into_inner())
    }

    async fn commit_stock(
        &self,
        request: Request<CommitStockRequest>,
    ) -> Result<CommitStockResponse, Status> {
        let reply = ProductServiceClient::commit_stock(&mut self.clone(), request).await?;
        Ok(reply.into_inner())
    }
}

#[tonic::async_trait]
impl Payments for PaymentServiceClient<GrpcChannel> {
    async fn create_payment(
        &self,
        request: Request<CreatePaymentRequest>,
    ) -> Result<CreatePaymentResponse, Status> {
        let reply = PaymentServiceClient::create_payment(&mut self.clone(), request).await?;
        Ok(reply.into_inner())
    }

    async fn process_refund(
        &self,
        request: Request<ProcessRefundRequest>,
    ) -> Result<ProcessRefundResponse, Status> {
        let reply = PaymentServiceClient::process_refund(&mut self.clone(), request).await?;
        Ok(reply.into_inner())
    }
}

#[tonic::async_trait]
impl Shipments for ShippingServiceClient<GrpcChannel> {
    async fn void_shipment(
        &self,
        request: Request<VoidShipmentRequest>,
    ) -> Result<VoidShipmentResponse, Status> {
        let reply = ShippingServiceClient::void_shipment(&mut self.clone(), request).await?;
        Ok(reply.into_inner())
    }
}
