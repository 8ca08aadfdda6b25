//! What order-svc consumes: payment and shipping outcomes move orders
//! through their states. Each event applies once: its id (or the payment
//! it names) is recorded on the order in the write that applies it, and a
//! handler that finds it there writes nothing.

use platform::events::{Delivery, Handler, HandlerError};
use proto::events::envelope::Payload;

use crate::saga::{Paid, Saga};

/// Event types the order service subscribes to.
pub const EVENT_TYPES: &[&str] = &[
    "payment.processed",
    "payment.failed",
    "payment.refunded",
    "shipping.updated",
];

pub struct OrderEvents {
    pub saga: Saga,
}

/// An unknown order is dead-lettered; a store or peer that is down is
/// waited out, however long (the event may be an order's only news of a
/// refund); anything else is retried a bounded number of times.
fn retry(status: tonic::Status) -> HandlerError {
    match status.code() {
        tonic::Code::NotFound => {
            HandlerError::Permanent(format!("unknown order: {}", status.message()))
        }
        _ => HandlerError::from_status(&status),
    }
}

#[async_trait::async_trait]
impl Handler for OrderEvents {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let id = Some(delivery.envelope.id.as_str());
        match &delivery.envelope.payload {
            Some(Payload::PaymentProcessed(e)) => self
                .saga
                .on_paid(
                    &e.order_id,
                    None,
                    Paid {
                        payment_id: &e.payment_id,
                        amount: &e.amount.clone().unwrap_or_default(),
                        key: None,
                        event_id: id,
                    },
                )
                .await
                .map(drop)
                .map_err(retry),
            Some(Payload::PaymentFailed(e)) => self
                .saga
                .on_payment_failed(&e.order_id, None, None, id)
                .await
                .map(drop)
                .map_err(retry),
            Some(Payload::PaymentRefunded(e)) if e.fully_refunded => self
                .saga
                .on_refunded(&e.order_id, &e.payment_id, id)
                .await
                .map_err(retry),
            Some(Payload::PaymentRefunded(_)) => Ok(()),
            Some(Payload::ShippingUpdated(e)) => {
                use proto::shipping::ShipmentStatus as St;
                match St::try_from(e.status) {
                    Ok(St::Delivered) => self
                        .saga
                        .on_shipping(&e.order_id, true, id)
                        .await
                        .map_err(retry),
                    Ok(St::InTransit | St::OutForDelivery) => self
                        .saga
                        .on_shipping(&e.order_id, false, id)
                        .await
                        .map_err(retry),
                    _ => Ok(()),
                }
            }
            _ => Err(HandlerError::Permanent(format!(
                "unexpected event {}",
                delivery.envelope.r#type
            ))),
        }
    }
}
