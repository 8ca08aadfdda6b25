//! gRPC surface of `PaymentService`: proto <-> domain.
//!
//! The tonic methods check who calls and delegate: `charge` (create,
//! settle, reconcile), `refunds`, `queries`; `convert` maps to proto.

use std::sync::Arc;
use std::time::Duration;

use platform::Component;
use platform::auth::MeshAuth;
use platform::events::outbox::OutboxRelay;
use platform::store::{Collection, StoreError};
use proto::payment::payment_service_server::PaymentService;
use proto::payment::*;
use tonic::{Request, Response, Status};

use crate::domain;
use crate::provider::PaymentProvider;

mod charge;
pub use charge::year_month_now;
mod convert;
mod queries;
mod refunds;

/// The tonic implementation of `shop.payment.v1.PaymentService`.
#[derive(Clone, Debug)]
pub struct PaymentApi {
    pub(crate) payments: Collection<domain::Payment>,
    pub(crate) relay: OutboxRelay<domain::Payment>,
    pub(crate) provider: Arc<dyn PaymentProvider>,
    /// Verifies who calls.
    pub(crate) mesh: MeshAuth,
    /// Pending payments older than this are reconciled with the provider.
    pub(crate) reconcile_after: Duration,
}

use platform::clock::now;

fn lookup_err(err: StoreError) -> Status {
    match err {
        StoreError::NotFound | StoreError::Invalid(_) => Status::not_found("payment not found"),
        other => other.into(),
    }
}

/// The prefix of the idempotency keys of refunds an admin asked for.
pub(crate) const ADMIN_KEYS: &str = "admin:";

#[tonic::async_trait]
impl PaymentService for PaymentApi {
    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn create_payment(
        &self,
        request: Request<CreatePaymentRequest>,
    ) -> Result<Response<CreatePaymentResponse>, Status> {
        // Only the order saga charges: it decided the amount from the order,
        // and it records the attempt before the provider is called.
        self.mesh
            .caller(request.metadata())
            .await?
            .require_from(&[Component::ORDER])?;
        self.charge(request.into_inner()).await.map(Response::new)
    }

    async fn get_payment_status(
        &self,
        request: Request<GetPaymentStatusRequest>,
    ) -> Result<Response<GetPaymentStatusResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let id = request.into_inner().payment_id;
        self.payment_status(&caller, id).await.map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(payment_id = %request.get_ref().payment_id))]
    async fn process_refund(
        &self,
        request: Request<ProcessRefundRequest>,
    ) -> Result<Response<ProcessRefundResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        // Admins, and order-svc settling what a cancel or a late payment owes.
        if !(caller.is_admin() || (caller.is_service() && caller.is_from(Component::ORDER))) {
            return Err(Status::permission_denied("refunds are for admins"));
        }
        let mut r = request.into_inner();
        // A person's keys live in a space of their own, so an admin's key
        // can never be taken for order-svc's (`cancel:<order>`).
        if !caller.is_service() && !r.idempotency_key.is_empty() {
            r.idempotency_key = format!("{ADMIN_KEYS}{}", r.idempotency_key);
        }
        self.refund(r).await.map(Response::new)
    }

    async fn list_payments(
        &self,
        request: Request<ListPaymentsRequest>,
    ) -> Result<Response<ListPaymentsResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        self.list(&caller, request.into_inner())
            .await
            .map(Response::new)
    }
}
