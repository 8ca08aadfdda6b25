//! The steps the saga owes other services (commit, release, refund, void
//! a shipment): done right after the write that records them, and retried
//! by the sweeper until the peer confirms. The sweeper also expires unpaid
//! orders.

use platform::store::{Bound, Query, StoreError, Versioned};
use tonic::{Code, Status};

use super::Saga;
use super::cancel::stage_cancelled;
use super::new_id;
use crate::domain::{Order, OrderEvent, OrderStatus as S, PendingStep, Step};

/// What a step's peer answered.
enum Outcome {
    /// Done; the step goes.
    Done,
    /// The peer refused for good; the step goes, with a note for people.
    Refused(String),
    /// Not now; the sweeper tries again.
    Later(Status),
}

impl Saga {
    /// Does the order's pending steps, each until its peer confirms; what
    /// fails stays for the sweeper.
    pub(crate) async fn run_steps(&self, id: &str) {
        match self.orders.find_by_id(id).await {
            Ok(Some(order)) => self.run_steps_of(order).await,
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(error = %err, order = id, "pending steps deferred to the sweeper");
            }
        }
    }

    /// [`Saga::run_steps`] of an order the caller holds: each step's
    /// removal is a CAS from the version the last write left.
    pub(crate) async fn run_steps_of(&self, order: Versioned<Order>) {
        let id = order.id.clone();
        let mut known = Some(order.clone());
        for pending in order.value.steps.items.clone() {
            let outcome = self.execute(&id, &order.value, &pending).await;
            let refused = match outcome {
                Outcome::Done => None,
                Outcome::Refused(why) => Some(why),
                Outcome::Later(status) => {
                    tracing::warn!(order = %id, step = ?pending.step, code = ?status.code(), message = status.message(), "saga step deferred; will retry");
                    continue;
                }
            };
            known = self.finish_step(&id, known.take(), &pending, refused).await;
        }
    }

    async fn execute(&self, id: &str, order: &Order, pending: &PendingStep) -> Outcome {
        let order_id = id.to_string();
        let products = || order.items.iter().map(|i| i.product_id.as_str());
        let result = match &pending.step {
            Step::CommitStock => self
                .catalog
                .commit_stock(Self::keyed_by_product(
                    self.step_request(proto::product::CommitStockRequest { order_id }),
                    products(),
                ))
                .await
                .map(|_| ()),
            Step::ReleaseStock => self
                .catalog
                .release_stock(Self::keyed_by_product(
                    self.step_request(proto::product::ReleaseStockRequest { order_id }),
                    products(),
                ))
                .await
                .map(|_| ()),
            Step::Refund { payment_id, key } => self
                .payments
                .process_refund(self.step_request(proto::payment::ProcessRefundRequest {
                    payment_id: payment_id.clone(),
                    amount: None,
                    reason: if order.compensated.contains(payment_id) {
                        "payment arrived for an order that no longer took it".into()
                    } else {
                        "order cancelled".into()
                    },
                    idempotency_key: key.clone(),
                }))
                .await
                .map(|_| ()),
            Step::CancelPaid { .. } | Step::VoidShipment => self
                .shipments
                .void_shipment(self.step_request(proto::shipping::VoidShipmentRequest {
                    order_id,
                    reason: "order cancelled".into(),
                }))
                .await
                .map(|_| ()),
        };
        match (result, &pending.step) {
            (Ok(()), _) => Outcome::Done,
            // Nothing left to refund: refunded already.
            (Err(s), Step::Refund { .. }) if s.code() == Code::OutOfRange => Outcome::Done,
            (Err(s), Step::CancelPaid { .. }) if s.code() == Code::FailedPrecondition => {
                Outcome::Refused(format!("cancel refused: {}", s.message()))
            }
            (Err(s), Step::VoidShipment) if s.code() == Code::FailedPrecondition => {
                Outcome::Refused(format!(
                    "refunded, but the carrier has the parcel: {}",
                    s.message()
                ))
            }
            (Err(s), Step::CommitStock)
                if s.code() == Code::FailedPrecondition && s.message().contains("released")
                    || s.code() == Code::NotFound =>
            {
                Outcome::Refused(format!(
                    "paid, but its stock could not be committed: {}",
                    s.message()
                ))
            }
            (Err(s), Step::Refund { .. })
                if matches!(s.code(), Code::FailedPrecondition | Code::NotFound) =>
            {
                Outcome::Refused(format!("refund refused: {}", s.message()))
            }
            (Err(s), _) => Outcome::Later(s),
        }
    }

    /// Removes a done (or refused) step, with what follows from it, in one
    /// write (from `known` when the caller holds the order). Returns the
    /// order as written, if this wrote it and did nothing after.
    async fn finish_step(
        &self,
        id: &str,
        known: Option<Versioned<Order>>,
        pending: &PendingStep,
        refused: Option<String>,
    ) -> Option<Versioned<Order>> {
        let change = |o: &mut Order| {
            if !o.steps.remove(&pending.id) {
                return Err(());
            }
            let now = platform::clock::now().millis();
            match (&pending.step, &refused) {
                (Step::CancelPaid { reason }, None) if o.status == S::Paid => {
                    // The shipment is void: refund and restock.
                    let _ = o.apply(OrderEvent::Refunded, None);
                    o.cancel_reason = reason.clone();
                    o.steps.add(
                        Step::Refund {
                            payment_id: o.payment_id.clone(),
                            key: format!("cancel:{id}"),
                        },
                        new_id(),
                        now,
                    );
                    o.steps.add(Step::ReleaseStock, new_id(), now);
                    stage_cancelled(id, o, S::Paid);
                }
                (Step::CancelPaid { .. }, None) => {
                    o.attention.push(format!(
                        "shipment voided while the order was {:?}",
                        o.status
                    ));
                }
                (Step::CancelPaid { .. }, Some(_)) => {}
                (_, Some(why)) => o.attention.push(why.clone()),
                (_, None) => {}
            }
            o.updated_at = now;
            Ok(())
        };
        let result = self.change_from::<()>(id, known, change).await;
        match result {
            Ok(Ok(written)) => {
                if let Some(why) = &refused {
                    tracing::warn!(order = id, step = ?pending.step, why, "saga step refused by its peer");
                }
                if matches!(pending.step, Step::CancelPaid { .. }) && refused.is_none() {
                    // New steps were written with the change: do them now.
                    Box::pin(self.after_write(written)).await;
                    return None;
                }
                Some(written)
            }
            Ok(Err(())) => None,
            Err(status) => {
                tracing::warn!(order = id, code = ?status.code(), "finishing a saga step deferred");
                None
            }
        }
    }

    /// One pass of the sweeper: steps left behind, and unpaid orders whose
    /// time has run out. Returns (steps looked at, orders expired).
    pub async fn sweep(&self) -> Result<(usize, usize), StoreError> {
        let now = platform::clock::now().millis();
        // Expiry first: a backlog of steps must not keep unpaid orders
        // holding stock past their time.
        let due = self
            .orders
            .find(
                &Query::new()
                    .range("expires_at", None, Some(Bound::Inclusive(now.into())))
                    .limit(100),
            )
            .await?;
        let mut expired = 0;
        for order in &due.items {
            match self.expire(&order.id).await {
                Ok(true) => expired += 1,
                Ok(false) => {}
                Err(status) => {
                    tracing::warn!(order = %order.id, code = ?status.code(), "expiry deferred")
                }
            }
        }
        let pending = self
            .orders
            .find(
                &Query::new()
                    .range("steps.count", Some(Bound::Exclusive(0.into())), None)
                    .limit(100),
            )
            .await?;
        let mut looked = 0;
        for order in &pending.items {
            // Steps written a moment ago are being done by their writer.
            if order
                .value
                .steps
                .items
                .iter()
                .any(|s| now - s.created_at >= 1000)
            {
                self.run_steps_of(order.clone()).await;
                looked += 1;
            }
        }
        Ok((looked, expired))
    }
}
