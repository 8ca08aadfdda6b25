//! What shipping-svc consumes: new orders (prepare a shipment), payments
//! (buy the label), cancellations.

use platform::events::{Delivery, Handler, HandlerError};
use proto::events::envelope::Payload;

use crate::api::ShippingApi;

pub const EVENT_TYPES: &[&str] = &["order.created", "order.cancelled", "payment.processed"];

pub struct ShippingEvents {
    pub api: ShippingApi,
}

#[async_trait::async_trait]
impl Handler for ShippingEvents {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        // A payment may overtake its order.created (different subjects):
        // NotFound is retried with backoff like any other transient failure;
        // a carrier or store that is down is waited out, never dead-lettered.
        let retry = |s: tonic::Status| HandlerError::from_status(&s);
        match &delivery.envelope.payload {
            Some(Payload::OrderCreated(e)) => self.api.prepare(e).await.map_err(retry),
            Some(Payload::PaymentProcessed(e)) => self
                .api
                .label_paid(e, delivery.envelope.occurred_at.as_ref())
                .await
                .map_err(retry),
            Some(Payload::OrderCancelled(e)) => self.api.cancel(&e.order_id).await.map_err(retry),
            _ => Err(HandlerError::Permanent(format!(
                "unexpected event {}",
                delivery.envelope.r#type
            ))),
        }
    }
}
