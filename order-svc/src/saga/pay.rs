//! Paying an order: the attempt recorded before payment-svc is called,
//! then the outcome settled on the order (PAID with its stock committed, or
//! PAYMENT_FAILED and payable again); a success for an order that no longer
//! takes it is refunded.

use platform::auth::Caller;
use platform::deadline::Budget;
use platform::store::Versioned;
use proto::ext::ShortName;
use tonic::{Code, Status};

use super::Saga;
use super::{ambiguous, new_id};
use crate::convert::{money, status_to_proto};
use crate::domain::{Order, OrderStatus as S, PayRefusal, Settled, Success};

/// Longest a duplicate payment request waits for the attempt under its
/// key to be answered.
const ATTEMPT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

fn pay_refused(refusal: PayRefusal) -> Status {
    match refusal {
        PayRefusal::NotPayable(S::Paid | S::Shipped | S::Delivered) => {
            Status::failed_precondition("the order is already paid")
        }
        PayRefusal::NotPayable(status) => Status::failed_precondition(format!(
            "the order is {} and cannot be paid",
            status_to_proto(status).short_name()
        )),
        PayRefusal::InProgress => {
            Status::aborted("a payment for this order is in progress; retry shortly")
        }
        PayRefusal::Expired => Status::failed_precondition(
            "the time to pay this order has run out; it is being cancelled",
        ),
    }
}

impl Saga {
    /// ProcessPayment: the attempt is recorded, then the payment made.
    pub(crate) async fn pay(
        &self,
        caller: &Caller,
        order: Versioned<Order>,
        key: String,
        card: Option<proto::payment::Card>,
        budget: &Budget,
    ) -> Result<(proto::payment::Payment, S), Status> {
        let id = order.id.clone();
        let started = self.claim_attempt(order, &key, budget).await?;
        let request = self.budget_request(
            budget,
            proto::payment::CreatePaymentRequest {
                order_id: id.clone(),
                user_id: started.value.user_id.clone(),
                amount: money(started.value.total, &started.value.currency),
                idempotency_key: key.clone(),
                card,
            },
            caller,
        );
        let reply = self.payments.create_payment(request).await;
        let payment = match reply {
            Ok(reply) => reply.payment.ok_or_else(|| {
                Status::internal("the payment service answered without a payment")
            })?,
            Err(status) => {
                if !ambiguous(&status) && status.code() != Code::Aborted {
                    // Nothing was charged (a bad card, a reused key): the
                    // attempt is over.
                    let _ = self
                        .change_from::<std::convert::Infallible>(&id, Some(started), |o| {
                            if o.payment_attempt.as_ref().is_some_and(|a| a.key == key) {
                                o.payment_attempt = None;
                            }
                            Ok(())
                        })
                        .await;
                }
                // Otherwise the attempt stays: a retry with the same key
                // gets the same payment from the payment service.
                return Err(status);
            }
        };
        use proto::payment::PaymentStatus as P;
        let settled = match P::try_from(payment.status) {
            Ok(P::Succeeded | P::PartiallyRefunded | P::Refunded) => {
                let amount = payment.amount.clone().unwrap_or_default();
                let paid = Paid {
                    payment_id: &payment.id,
                    amount: &amount,
                    key: Some(&key),
                    event_id: None,
                };
                self.on_paid(&id, Some(started), paid).await?
            }
            Ok(P::Failed) => {
                self.on_payment_failed(&id, Some(started), Some((&key, &payment.id)), None)
                    .await?
            }
            _ => {
                return Err(Status::unavailable(
                    "the payment provider has not answered yet; retry with the same Idempotency-Key",
                ));
            }
        };
        // The payment as it was made (SUCCEEDED or FAILED), even if a cancel
        // refunded it a moment later: the order's status says where it stands
        // (as this call's own write left it, when it wrote).
        let status = match settled {
            Some(order) => order.value.status,
            None => self.orders.get(&id).await?.value.status,
        };
        Ok((payment, status))
    }

    /// Records the attempt under `key`, or finds it made already. A retry
    /// of an attempt that ended gets its answer again, whatever
    /// happened to the order since: the payment service replays it for the
    /// same key and card (and refuses another card under that key). A
    /// duplicate that arrives while the attempt under the same key is
    /// still being answered waits for it (a while), then answers the same.
    async fn claim_attempt(
        &self,
        mut order: Versioned<Order>,
        key: &str,
        budget: &Budget,
    ) -> Result<Versioned<Order>, Status> {
        enum Begin {
            Refused(PayRefusal),
            /// The attempt under `key` ended, or another request is making it.
            Made,
        }
        let id = order.id.clone();
        let mut waited = false;
        loop {
            if order.value.finished_attempt(key).is_some() {
                return Ok(order);
            }
            let begun = self
                .change_from(&id, Some(order.clone()), |o| {
                    let under_way = o
                        .live_attempt(platform::clock::now().millis())
                        .is_some_and(|a| a.key == key);
                    if o.finished_attempt(key).is_some() || (under_way && !waited) {
                        return Err(Begin::Made);
                    }
                    o.begin_payment(key, platform::clock::now().millis())
                        .map_err(Begin::Refused)
                })
                .await?;
            match begun {
                Ok(started) => return Ok(started),
                Err(Begin::Made) => {
                    order = self.attempt_settled(&id, key, budget).await?;
                    waited = true;
                }
                Err(Begin::Refused(refusal)) => return Err(pay_refused(refusal)),
            }
        }
    }

    /// The order once the attempt under `key` is no longer under way, or
    /// as it stands after [`ATTEMPT_WAIT`] (or half the caller's budget):
    /// a first request that died leaves its attempt live, and its retry
    /// then goes ahead.
    async fn attempt_settled(
        &self,
        id: &str,
        key: &str,
        budget: &Budget,
    ) -> Result<Versioned<Order>, Status> {
        let deadline = tokio::time::Instant::now() + ATTEMPT_WAIT.min(budget.remaining() / 2);
        loop {
            let order = self.orders.get(id).await.map_err(super::not_found)?;
            let under_way = order
                .value
                .live_attempt(platform::clock::now().millis())
                .is_some_and(|a| a.key == key);
            if !under_way || tokio::time::Instant::now() >= deadline {
                return Ok(order);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A payment succeeded (answer of the payment call, or
    /// `payment.processed`): the order is PAID and its stock committed,
    /// or, if it no longer takes payment, the payment is refunded.
    /// `known` is the order as the caller last wrote it, if it holds it.
    /// Returns the order as this call left it, if it wrote it.
    pub(crate) async fn on_paid(
        &self,
        order_id: &str,
        known: Option<Versioned<Order>>,
        paid: Paid<'_>,
    ) -> Result<Option<Versioned<Order>>, Status> {
        let success = Success {
            payment_id: paid.payment_id,
            amount: paid.amount.amount,
            currency: &paid.amount.currency,
            key: paid.key,
            event_id: paid.event_id,
        };
        let change = |o: &mut Order| match o.settle_success(
            success,
            platform::clock::now().millis(),
            new_id(),
        ) {
            Settled::Unchanged => Err(()),
            Settled::Refunding => {
                tracing::warn!(order = %order_id, payment = %paid.payment_id,
                        "a payment arrived for an order that no longer takes it; refunding it");
                Ok(())
            }
            Settled::Paid => Ok(()),
        };
        let changed = self.change_from::<()>(order_id, known, change).await?;
        match changed {
            Ok(order) => {
                if order.value.payment_id == paid.payment_id {
                    platform::metrics::count(&platform::metrics::ORDERS, &["paid"]);
                }
                Ok(Some(self.after_write(order).await))
            }
            Err(()) => Ok(None),
        }
    }

    /// A payment failed: the order may be paid again. `attempt` is the
    /// (key, payment) of the call that learnt it; an event alone leaves an
    /// attempt under way alone.
    pub(crate) async fn on_payment_failed(
        &self,
        order_id: &str,
        known: Option<Versioned<Order>>,
        attempt: Option<(&str, &str)>,
        event_id: Option<&str>,
    ) -> Result<Option<Versioned<Order>>, Status> {
        let change = |o: &mut Order| {
            if o.settle_failure(attempt, event_id, platform::clock::now().millis()) {
                Ok(())
            } else {
                Err(())
            }
        };
        let changed = self.change_from::<()>(order_id, known, change).await?;
        Ok(changed.ok())
    }
}

/// A payment that succeeded, as the payment call or `payment.processed`
/// reported it.
pub(crate) struct Paid<'a> {
    pub payment_id: &'a str,
    pub amount: &'a proto::common::Money,
    /// The Idempotency-Key of the attempt, when the call itself learnt it.
    pub key: Option<&'a str>,
    /// The event that told it, when an event did.
    pub event_id: Option<&'a str>,
}
