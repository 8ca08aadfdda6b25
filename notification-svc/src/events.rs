//! Events turned into notifications: rendered from the templates, stored
//! once per event and recipient, streamed live.

use platform::events::{Delivery, Handler, HandlerError};
use proto::events::envelope::Payload;
use proto::ext::cancel_reason;

use crate::api::{ADMINS, NotificationApi};
use crate::deliveries::Outgoing;
use crate::domain::{Via, channels_for};
use crate::templates::{Templates, money};

/// Every event there is (media changes notify nobody and are skipped).
pub const EVENT_TYPES: &[&str] = &Payload::ALL_TYPES;

pub struct NotificationEvents {
    pub api: NotificationApi,
    pub templates: Templates,
}

fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

impl NotificationEvents {
    /// Who gets it, the template context, and the outside channels it
    /// goes out on besides the feed.
    fn address(
        payload: &Payload,
        kind: &str,
    ) -> Option<(String, minijinja::Value, &'static [Via])> {
        use minijinja::context;
        let (recipient, context) = match payload {
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
                let status = S::try_from(e.status).unwrap_or(S::Unspecified);
                let (headline, detail) = match status {
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
                return Some((
                    e.user_id.clone(),
                    context! {headline => headline, detail => detail, short_order => short(&e.order_id), tracking_number => e.tracking_number.clone(), carrier => e.carrier.clone(), location => e.location.clone()},
                    channels_for(kind, Some(status)),
                ));
            }
            Payload::InventoryLow(e) => (
                ADMINS.to_string(),
                context! {name => e.name.clone(), sku => e.sku.clone(), stock => e.stock_available, threshold => e.threshold},
            ),
            Payload::ReviewCreated(e) => (
                ADMINS.to_string(),
                context! {product_id => e.product_id.clone(), rating => e.rating},
            ),
            // The customer who cancels knows; an order cancelled for want of
            // payment, or by the shop, is told.
            Payload::OrderCancelled(e)
                if e.reason == cancel_reason::PAYMENT_TIMEOUT
                    || e.reason == cancel_reason::ADMIN =>
            {
                (
                    e.user_id.clone(),
                    context! {short_order => short(&e.order_id), reason => e.reason.clone(), refunded => !e.payment_id.is_empty()},
                )
            }
            Payload::OrderCancelled(_) => return None,
            // Images changing tell nobody.
            Payload::MediaUploaded(_) | Payload::MediaDeleted(_) => return None,
        };
        // Admin alerts stay in the admins' feed.
        let vias = if recipient == ADMINS {
            &[]
        } else {
            channels_for(kind, None)
        };
        Some((recipient, context, vias))
    }
}

#[async_trait::async_trait]
impl Handler for NotificationEvents {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let Some(payload) = &delivery.envelope.payload else {
            return Err(HandlerError::Permanent("event without payload".into()));
        };
        let kind = payload.event_type();
        // Who promotions reach: every customer, and each category's buyers.
        let joined = match payload {
            Payload::UserRegistered(e) if e.role != "admin" => {
                Some((e.user_id.as_str(), Vec::new()))
            }
            Payload::OrderCreated(e) => Some((
                e.user_id.as_str(),
                e.items.iter().map(|l| l.category.as_str()).collect(),
            )),
            _ => None,
        };
        if let Some((user_id, categories)) = joined {
            self.api
                .join_audience(user_id, &categories)
                .await
                .map_err(|e| HandlerError::from_store(&e))?;
        }
        let Some((recipient, context, vias)) = Self::address(payload, kind) else {
            return Ok(());
        };
        let (title, body) = self
            .templates
            .render(kind, context)
            .map_err(|e| HandlerError::Permanent(format!("template {kind}: {e}")))?;
        let key = format!("{}:{recipient}", delivery.envelope.id);
        self.api
            .deliver(&key, &recipient, kind, title.clone(), body.clone())
            .await
            .map_err(|s| HandlerError::from_status(&s))?;
        // Written after the feed item and idempotent too, so a redelivery
        // after a crash in between completes what is missing.
        let out = Outgoing {
            key: &key,
            user_id: &recipient,
            kind,
            title: &title,
            body: &body,
        };
        self.api
            .deliveries
            .enqueue(&out, vias)
            .await
            .map_err(|e| HandlerError::from_store(&e))?;
        Ok(())
    }
}
