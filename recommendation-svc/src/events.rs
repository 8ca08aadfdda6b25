//! What recommendation-svc consumes: order lines (`order.created`), their
//! payment (`payment.processed`), their reversal (`order.cancelled`, a
//! full `payment.refunded`) and ratings (`review.created`).
//!
//! Each event folds into one document with CAS (the order's record, or
//! the reviewer's profile) by rules that give the same result in any
//! order and any number of times, so a redelivery needs no record of its
//! own.

use platform::events::{Delivery, Handler, HandlerError};
use proto::events::envelope::Payload;

use crate::domain::{Line, OrderFact, Rating};
use crate::store::RecStore;

pub const EVENT_TYPES: &[&str] = &[
    "order.created",
    "order.cancelled",
    "payment.processed",
    "payment.refunded",
    "review.created",
];

pub struct RecommendationEvents {
    pub store: RecStore,
}

fn seconds(delivery: &Delivery) -> i64 {
    delivery
        .envelope
        .occurred_at
        .as_ref()
        .map(|t| t.seconds)
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl Handler for RecommendationEvents {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let retry = |e: platform::store::StoreError| HandlerError::from_store(&e);
        let permanent = |what: &str| HandlerError::Permanent(format!("{what} without an id"));
        let (order_id, fact) = match &delivery.envelope.payload {
            Some(Payload::OrderCreated(e)) => (
                e.order_id.clone(),
                OrderFact::Created {
                    user_id: e.user_id.clone(),
                    lines: e
                        .items
                        .iter()
                        .filter(|l| !l.product_id.is_empty() && l.quantity > 0)
                        .map(|l| Line {
                            product_id: l.product_id.clone(),
                            quantity: l.quantity,
                        })
                        .collect(),
                    placed_at: seconds(delivery),
                },
            ),
            Some(Payload::PaymentProcessed(e)) => (
                e.order_id.clone(),
                OrderFact::Paid {
                    user_id: e.user_id.clone(),
                },
            ),
            Some(Payload::OrderCancelled(e)) => (
                e.order_id.clone(),
                OrderFact::Cancelled {
                    user_id: e.user_id.clone(),
                },
            ),
            Some(Payload::PaymentRefunded(e)) => (
                e.order_id.clone(),
                OrderFact::Refunded {
                    user_id: e.user_id.clone(),
                    fully: e.fully_refunded,
                },
            ),
            Some(Payload::ReviewCreated(e)) => {
                if e.user_id.is_empty() || e.product_id.is_empty() {
                    return Err(permanent("review"));
                }
                let rating = Rating {
                    rating: e.rating.clamp(1, 5),
                    at: seconds(delivery),
                };
                self.store
                    .update_profile(&e.user_id, |p| {
                        p.rate(&e.product_id, rating.clone());
                    })
                    .await
                    .map_err(retry)?;
                return Ok(());
            }
            _ => {
                return Err(HandlerError::Permanent(format!(
                    "unexpected event {}",
                    delivery.envelope.r#type
                )));
            }
        };
        if order_id.is_empty() {
            return Err(permanent("order event"));
        }
        self.store
            .apply_order(&order_id, &fact)
            .await
            .map_err(retry)
    }
}
