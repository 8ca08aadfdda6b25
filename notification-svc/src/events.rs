//! Events turned into notifications: rendered from the templates, stored
//! once per event and recipient, streamed live.

use platform::events::{Delivery, Handler, HandlerError};
use proto::events::envelope::Payload;

use crate::api::{ADMINS, NotificationApi};
use crate::templates::{Templates, money};

pub const EVENT_TYPES: &[&str] = &[
    "user.registered",
    "order.created",
    "payment.processed",
    "payment.failed",
    "payment.refunded",
    "shipping.updated",
    "inventory.low",
    "review.created",
];

pub struct NotificationEvents {
    pub api: NotificationApi,
    pub templates: Templates,
}

fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

impl NotificationEvents {
    /// Who gets it, and the template context.
    fn address(payload: &Payload) -> Option<(String, minijinja::Value)> {
        use minijinja::context;
        Some(match payload {
            Payload::UserRegistered(e) => (e.user_id.clone(), context! {}),
            Payload::OrderCreated(e) => (
                e.user_id.clone(),
                context! {short_order => short(&e.order_id), items => e.items.iter().map(|i| i.quantity).sum::<u32>(), total => money(&e.total)},
            ),
            Payload::PaymentProcessed(e) => (
                e.user_id.clone(),
                context! {short_order => short(&e.order_id), amount => money(&e.amount), card_brand => e.card_brand.clone(), card_last4 => e.card_last4.clone()},
            ),
            Payload::PaymentFailed(e) => (
                e.user_id.clone(),
                context! {short_order => short(&e.order_id), amount => money(&e.amount), reason => e.failure_reason.clone()},
            ),
            Payload::PaymentRefunded(e) => (
                e.user_id.clone(),
                context! {short_order => short(&e.order_id), amount => money(&e.amount), fully_refunded => e.fully_refunded},
            ),
            Payload::ShippingUpdated(e) => {
                use proto::shipping::ShipmentStatus as S;
                let (headline, detail) = match S::try_from(e.status).unwrap_or(S::Unspecified) {
                    S::LabelCreated => (
                        "Your order is being prepared",
                        "a shipping label was created.",
                    ),
                    S::InTransit => ("Your order has shipped", "it is on its way."),
                    S::OutForDelivery => ("Out for delivery", "it arrives today."),
                    S::Delivered => ("Delivered", "it was delivered."),
                    S::Cancelled => ("Shipment cancelled", "the shipment was cancelled."),
                    _ => return None,
                };
                (
                    e.user_id.clone(),
                    context! {headline => headline, detail => detail, short_order => short(&e.order_id), tracking_number => e.tracking_number.clone(), carrier => e.carrier.clone(), location => e.location.clone()},
                )
            }
            Payload::InventoryLow(e) => (
                ADMINS.to_string(),
                context! {name => e.name.clone(), sku => e.sku.clone(), stock => e.stock_available, threshold => e.threshold},
            ),
            Payload::ReviewCreated(e) => (
                ADMINS.to_string(),
                context! {product_id => e.product_id.clone(), rating => e.rating},
            ),
            Payload::OrderCancelled(_) => return None,
        })
    }
}

#[async_trait::async_trait]
impl Handler for NotificationEvents {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let Some(payload) = &delivery.envelope.payload else {
            return Err(HandlerError::Permanent("event without payload".into()));
        };
        let Some((recipient, context)) = Self::address(payload) else {
            return Ok(());
        };
        let kind = delivery.envelope.r#type.clone();
        let (title, body) = self
            .templates
            .render(&kind, context)
            .map_err(|e| HandlerError::Permanent(format!("template {kind}: {e}")))?;
        let key = format!("{}:{recipient}", delivery.envelope.id);
        self.api
            .deliver(&key, &recipient, &kind, title, body)
            .await
            .map_err(|s| HandlerError::Retryable(s.message().to_string()))?;
        Ok(())
    }
}
