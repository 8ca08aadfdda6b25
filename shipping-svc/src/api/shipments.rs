//! Shipments and labels: a shipment is prepared when the order is created
//! and gets its label from the carrier once the order is paid.

use platform::store::StoreError;
use tonic::Status;

use super::{ShippingApi, now, record};
use crate::carrier::CarrierError;
use crate::domain::{self, Shipment, Status as St, TrackingEvent, Update};

/// How long one delivery of `payment.processed` keeps asking order-svc
/// whether it has recorded the payment, and how often.
const RECORDED_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
const RECORDED_POLL: std::time::Duration = std::time::Duration::from_millis(50);

fn decide_ok(current: St, next: St) -> bool {
    domain::decide(current, next) == Update::Advance
}

impl ShippingApi {
    /// `order.created`: prepare the shipment (once per order).
    pub async fn prepare(&self, order: &proto::events::OrderCreated) -> Result<(), Status> {
        let a = order.shipping_address.clone().unwrap_or_default();
        let shipment = Shipment {
            order_id: order.order_id.clone(),
            user_id: order.user_id.clone(),
            status: St::Pending,
            carrier: String::new(),
            service: String::new(),
            tracking_number: None,
            address: domain::Address::from(a),
            weight_grams: order
                .items
                .iter()
                .map(|i| i.weight_grams * i.quantity)
                .sum(),
            events: vec![TrackingEvent {
                status: St::Pending,
                at: now().secs(),
                location: String::new(),
                description: "awaiting payment".into(),
            }],
            created_at: now().secs(),
            updated_at: now().secs(),
            label_pending_since: None,
            flagged_updates: Vec::new(),
            outbox: Default::default(),
        };
        // One shipment per order (unique index): a redelivery, or an order
        // voided before its creation was seen, leaves the existing one.
        match self
            .shipments
            .insert(&uuid::Uuid::now_v7().to_string(), shipment)
            .await
        {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// `payment.processed`: buy the label, once order-svc says the order
    /// is PAID. A payment event alone is not enough: an order that ended
    /// otherwise (cancelled meanwhile, the payment refunded as the wrong
    /// amount) gets no label. The event often arrives before order-svc has
    /// recorded the payment: that is waited out, not retried, for up to
    /// [`domain::PAYMENT_RECORDED_SECS`] after the payment.
    pub async fn label_paid(
        &self,
        paid: &proto::events::PaymentProcessed,
        occurred_at: Option<&prost_types::Timestamp>,
    ) -> Result<(), Status> {
        use proto::order::OrderStatus as O;
        // order-svc records the payment a moment after payment-svc
        // announces it: asked again for a short while, so the common case
        // needs no redelivery.
        let asked = tokio::time::Instant::now();
        loop {
            let mut request = self.mesh.request(proto::order::GetOrderStatusRequest {
                order_id: paid.order_id.clone(),
                abandon_if_missing: false,
            });
            request.set_timeout(std::time::Duration::from_secs(5));
            let status = match self.orders.clone().get_order_status(request).await {
                Ok(answer) => answer.into_inner().status(),
                Err(s) if s.code() == tonic::Code::NotFound => {
                    tracing::warn!(order = %paid.order_id, "a payment for an order order-svc does not know; no label");
                    return Ok(());
                }
                Err(s) => return Err(s),
            };
            match status {
                O::Paid | O::Shipped | O::Delivered => return self.label(&paid.order_id).await,
                O::PendingPayment | O::PaymentFailed | O::Unspecified
                    if occurred_at.is_none_or(|at| {
                        now().secs() - at.seconds < domain::PAYMENT_RECORDED_SECS
                    }) =>
                {
                    if asked.elapsed() >= RECORDED_WAIT {
                        return Err(Status::unavailable(
                            "order-svc has not recorded the payment yet",
                        ));
                    }
                    tokio::time::sleep(RECORDED_POLL).await;
                }
                other => {
                    tracing::warn!(order = %paid.order_id, status = ?other, "the order was not paid by this payment; no label");
                    return Ok(());
                }
            }
        }
    }

    /// Buys the label (once; the carrier call is keyed
    /// by the shipment id). NotFound while `order.created` is on its way.
    /// The purchase is announced on the shipment first, so a void waits for
    /// it instead of racing it: no label is bought for a voided shipment.
    pub async fn label(&self, order_id: &str) -> Result<(), Status> {
        let shipment = self
            .by_order(order_id)
            .await?
            .ok_or_else(|| Status::not_found("no shipment for this order yet"))?;
        let id = shipment.id.clone();
        let claimed = self
            .shipments
            .update_from(shipment, |s| {
                if s.status != St::Pending {
                    return Err(false);
                }
                let at = now().secs();
                if s.label_pending_since
                    .is_some_and(|t| at - t < domain::LABEL_PURCHASE_SECS)
                {
                    return Err(true);
                }
                s.label_pending_since = Some(at);
                Ok(())
            })
            .await?;
        let shipment = match claimed {
            Ok(claimed) => claimed,
            // Voided, or labelled already.
            Err(false) => return Ok(()),
            Err(true) => {
                return Err(Status::unavailable(
                    "a label is being bought for this shipment",
                ));
            }
        };
        let label = self
            .carrier
            .create_label(
                &shipment.id,
                &shipment.value.address.country,
                shipment.value.weight_grams,
            )
            .await;
        let label = match label {
            Ok(label) => label,
            Err(e) => {
                let _ = self
                    .shipments
                    .modify_from(shipment, |s| s.label_pending_since = None)
                    .await;
                // An outage is waited out; a refusal is retried a few
                // times, then dead-lettered for a person to look at.
                return Err(match e {
                    CarrierError::Unavailable(_) => Status::unavailable(e.to_string()),
                    CarrierError::Refused(_) => Status::failed_precondition(e.to_string()),
                });
            }
        };
        let labelled = self
            .shipments
            .modify_from(shipment, |s| {
                s.label_pending_since = None;
                if decide_ok(s.status, St::LabelCreated) {
                    s.carrier = label.carrier.clone();
                    s.service = label.service.clone();
                    s.tracking_number = Some(label.tracking_number.clone());
                    record(&id, s, St::LabelCreated, now().secs(), "", "label created");
                }
            })
            .await?;
        self.relay.flush_or_defer_written(labelled).await;
        Ok(())
    }
}
