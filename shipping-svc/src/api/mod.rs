//! gRPC surface of `ShippingService`, and the changes events make.
//!
//! The tonic methods check who calls and delegate: `shipments` (prepare,
//! label), `updates` (carrier updates, void, cancel), `queries` (get,
//! track, quote); `convert` maps to and from proto.

use std::sync::Arc;

use platform::Component;
use platform::deadline::Budget;
use platform::events::outbox::OutboxRelay;
use platform::store::{Collection, Query, Versioned};
use proto::events::envelope::Payload;
use proto::shipping::shipping_service_server::ShippingService;
use proto::shipping::*;
use tonic::{Request, Response, Status};

use crate::carrier::Carrier;
use crate::domain::{Shipment, Status as St, TrackingEvent};

mod convert;
mod queries;
mod shipments;
mod updates;

pub use convert::status_to_proto;
use convert::{to_proto, ts};

#[derive(Clone, Debug)]
pub struct ShippingApi {
    pub(crate) shipments: Collection<Shipment>,
    pub(crate) relay: OutboxRelay<Shipment>,
    pub(crate) carrier: Arc<dyn Carrier>,
    /// order-svc, asked whether an order is paid before its label is bought.
    pub(crate) orders:
        proto::order::order_service_client::OrderServiceClient<platform::grpc::GrpcChannel>,
    /// Verifies who calls.
    pub(crate) mesh: platform::auth::MeshAuth,
}

use platform::clock::now;

/// Records a move to `status` and stages `shipping.updated` (in the same write).
fn record(id: &str, s: &mut Shipment, status: St, at: i64, location: &str, description: &str) {
    s.status = status;
    s.events.push(TrackingEvent {
        status,
        at,
        location: location.to_string(),
        description: description.to_string(),
    });
    s.updated_at = now().secs();
    let event = platform::events::event(
        &s.order_id,
        "shipping-svc",
        Payload::ShippingUpdated(proto::events::ShippingUpdated {
            shipment_id: id.to_string(),
            order_id: s.order_id.clone(),
            user_id: s.user_id.clone(),
            status: status_to_proto(status) as i32,
            tracking_number: s.tracking_number.clone().unwrap_or_default(),
            carrier: s.carrier.clone(),
            location: location.to_string(),
            status_at: ts(at),
        }),
    );
    s.outbox.stage(&event);
}

impl ShippingApi {
    async fn by_order(&self, order_id: &str) -> Result<Option<Versioned<Shipment>>, Status> {
        Ok(self
            .shipments
            .find_one(Query::new().eq("order_id", order_id))
            .await?)
    }
}

#[tonic::async_trait]
impl ShippingService for ShippingApi {
    async fn get_shipment(
        &self,
        request: Request<GetShipmentRequest>,
    ) -> Result<Response<GetShipmentResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        self.shipment(&caller, request.into_inner().lookup)
            .await
            .map(Response::new)
    }

    async fn track_shipment(
        &self,
        request: Request<TrackShipmentRequest>,
    ) -> Result<Response<TrackShipmentResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        self.tracking(&caller, request.into_inner().lookup)
            .await
            .map(Response::new)
    }

    async fn update_shipment_status(
        &self,
        request: Request<UpdateShipmentStatusRequest>,
    ) -> Result<Response<UpdateShipmentStatusResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        // The gateway relays the carrier's signed webhook.
        caller.require_admin_or(&[Component::GATEWAY])?;
        self.apply_carrier_update(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn void_shipment(
        &self,
        request: Request<VoidShipmentRequest>,
    ) -> Result<Response<VoidShipmentResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        // The order saga voids the label of an order it refunds.
        caller.require_admin_or(&[Component::ORDER])?;
        let budget = Budget::from_metadata(request.metadata(), updates::VOID_WAIT);
        let r = request.into_inner();
        let shipment = self.void(&r.order_id, r.reason.trim(), &budget).await?;
        Ok(Response::new(VoidShipmentResponse {
            shipment: Some(to_proto(&shipment.id, &shipment.value)),
        }))
    }

    async fn quote_shipping(
        &self,
        request: Request<QuoteShippingRequest>,
    ) -> Result<Response<QuoteShippingResponse>, Status> {
        self.quote(request.into_inner()).map(Response::new)
    }
}
