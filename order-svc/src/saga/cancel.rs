//! Cancelling an order: at once while unpaid, through a voided shipment
//! and a refund once paid; expiry of unpaid orders; and a full refund made
//! by other means, which cancels a paid order.

use platform::auth::Caller;
use platform::store::Versioned;
use proto::events::envelope::Payload;
use tonic::Status;

use super::Saga;
use super::new_id;
use crate::convert::{lines_of, status_to_proto};
use crate::domain::{CancelPlan, CancelRefusal, Order, OrderEvent, OrderStatus as S, Step, reason};

/// Stages `order.cancelled` in the order's outbox (same write as the change).
pub(super) fn stage_cancelled(id: &str, order: &mut Order, previous: S) {
    let event = platform::events::event(
        id,
        "order-svc",
        Payload::OrderCancelled(proto::events::OrderCancelled {
            order_id: id.to_string(),
            user_id: order.user_id.clone(),
            previous_status: status_to_proto(previous) as i32,
            status: status_to_proto(order.status) as i32,
            reason: order.cancel_reason.clone(),
            payment_id: order.payment_id.clone(),
            items: lines_of(order),
        }),
    );
    order.outbox.stage(&event);
}

/// Cancels an unpaid order for `why`, in one write: CANCELLED, the release
/// of its stock owed, `order.cancelled` staged.
fn cancel_unpaid(id: &str, order: &mut Order, why: &str, now: i64) -> bool {
    let previous = order.status;
    if order.apply(OrderEvent::Cancel, None).is_err() {
        return false;
    }
    order.cancel_reason = why.to_string();
    order.close();
    order.steps.add(Step::ReleaseStock, new_id(), now);
    stage_cancelled(id, order, previous);
    true
}

impl Saga {
    /// CancelOrder. Unpaid orders are CANCELLED at once; paid ones once
    /// shipping-svc has voided the shipment (REFUNDED); shipped ones not.
    pub(crate) async fn cancel(
        &self,
        caller: &Caller,
        order: &Versioned<Order>,
    ) -> Result<Versioned<Order>, Status> {
        let id = order.id.as_str();
        let why = if caller.user_id != order.value.user_id && caller.is_admin() {
            reason::ADMIN
        } else {
            reason::CUSTOMER
        };
        let mut plan = CancelPlan::Nothing;
        let decided = self
            .change_from::<Option<CancelRefusal>>(id, Some(order.clone()), |o| {
                let now = platform::clock::now().millis();
                plan = o.plan_cancel(now).map_err(Some)?;
                match plan {
                    CancelPlan::Cancel => {
                        cancel_unpaid(id, o, why, now);
                        o.updated_at = now;
                    }
                    CancelPlan::VoidThenRefund => o.steps.add(
                        Step::CancelPaid {
                            reason: why.to_string(),
                        },
                        new_id(),
                        now,
                    ),
                    // Nothing to write.
                    CancelPlan::Nothing => return Err(None),
                }
                Ok(())
            })
            .await?;
        let written = match decided {
            Err(Some(CancelRefusal::PaymentInProgress)) => {
                return Err(Status::aborted(
                    "a payment for this order is in progress; retry shortly",
                ));
            }
            Err(Some(CancelRefusal::Shipped)) => {
                return Err(Status::failed_precondition(
                    "the order has shipped and can no longer be cancelled",
                ));
            }
            Ok(written) => Some(self.after_write(written).await),
            Err(None) => {
                self.run_steps(id).await;
                None
            }
        };
        let current = match written {
            // Cancelled at once: what is left to do (the release) does not
            // change the status, so the order as written answers.
            Some(order) if plan == CancelPlan::Cancel => order,
            // A paid order moves on when its shipment is void: read it.
            _ => self.orders.get(id).await?,
        };
        match current.value.status {
            S::Cancelled | S::Refunded => Ok(current),
            S::Shipped | S::Delivered => Err(Status::failed_precondition(
                "the order has shipped and can no longer be cancelled",
            )),
            S::Paid if current.value.steps.cancelling() => Err(Status::unavailable(
                "the cancellation is under way and will complete; retry to see it",
            )),
            S::Paid => Err(Status::failed_precondition(
                "the carrier has the parcel; the order can no longer be cancelled",
            )),
            _ => Ok(current),
        }
    }

    /// Expires the order if its time to pay has run out.
    pub(super) async fn expire(&self, id: &str) -> Result<bool, Status> {
        let changed = self
            .change::<()>(id, |o| {
                let now = platform::clock::now().millis();
                if !o.is_expired(now) || !cancel_unpaid(id, o, reason::PAYMENT_TIMEOUT, now) {
                    return Err(());
                }
                o.updated_at = now;
                Ok(())
            })
            .await?;
        let expired = changed.is_ok();
        if let Ok(written) = changed {
            tracing::info!(order = id, "unpaid order cancelled: payment timeout");
            self.after_write(written).await;
        }
        Ok(expired)
    }

    /// `payment.refunded` in full. After a cancel the order is REFUNDED
    /// already; a refund made by other means (an admin) refunds a paid
    /// order: its shipment is voided and its stock put back.
    pub(crate) async fn on_refunded(
        &self,
        order_id: &str,
        payment_id: &str,
        event_id: Option<&str>,
    ) -> Result<(), Status> {
        let changed = self
            .change::<()>(order_id, |o| {
                if o.payment_id != payment_id {
                    return Err(());
                }
                match o.status {
                    S::Paid if !o.steps.cancelling() => {
                        o.apply(OrderEvent::Refunded, event_id).map_err(|_| ())?;
                        let now = platform::clock::now().millis();
                        o.cancel_reason = reason::ADMIN.to_string();
                        o.steps.add(Step::VoidShipment, new_id(), now);
                        o.steps.add(Step::ReleaseStock, new_id(), now);
                        stage_cancelled(order_id, o, S::Paid);
                        o.updated_at = now;
                        Ok(())
                    }
                    S::Shipped | S::Delivered
                        if !o.attention.iter().any(|a| a.contains(payment_id)) =>
                    {
                        o.attention.push(format!(
                            "payment {payment_id} refunded after the order shipped"
                        ));
                        Ok(())
                    }
                    _ => Err(()),
                }
            })
            .await?;
        if let Ok(written) = changed {
            self.after_write(written).await;
        }
        Ok(())
    }
}
