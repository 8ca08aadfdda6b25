//! The order saga: placing, paying, cancelling and expiring orders, and the
//! steps each of those owes other services.
//!
//! Conflicting commands on one order (pay, cancel, expire, carrier and
//! payment news) are decided by the order document's CAS. A payment attempt
//! is recorded on the order before the provider is called, so a cancel or
//! an expiry that comes while it is under way waits for it; a success that
//! arrives for an order that no longer takes it is refunded. What the saga
//! owes other services (commit, release, refund, void) is written as a
//! [`Step`] in the same write as the state change, tried at once and
//! retried by the sweeper until the peer confirms.
//!
//! Timings, chosen together:
//! - the gateway gives each call 5 s (`GRPC_CLIENT_TIMEOUT_MS`) and the
//!   budget travels on (`grpc-timeout`), so nothing here works for a caller
//!   that gave up;
//! - a duplicate of a create still running waits at most 1 s, then gets
//!   409 with `Retry-After: 1`; a key whose first request died is taken over
//!   after 10 s (two budgets), so a careful client's retry succeeds within
//!   about 10 s of a crash;
//! - a payment attempt keeps cancel and expiry away for 15 s
//!   ([`domain::ATTEMPT_LIVE_MS`]);
//! - product-svc asks about a reservation whose order it cannot see after
//!   60 s (`RESERVATION_ORPHAN_GRACE_MS`), longer than any creation runs.

use std::time::Duration;

use platform::auth::Caller;
use platform::deadline::Budget;
use platform::error::invalid_fields;
use platform::store::{Bound, Query, StoreError, Versioned};
use proto::events::envelope::Payload;
use proto::order::CreateOrderRequest;
use tonic::{Code, Status};

use crate::api::{OrderApi, lines_of, money, status_to_proto, to_proto};
use crate::domain::{
    self, CancelPlan, CancelRefusal, Item, Order, OrderEvent, OrderStatus as S, PayRefusal,
    PendingStep, Step, reason,
};

/// Deadline of the calls a step makes in the background.
const STEP_CALL_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl OrderApi {
    /// A call order-svc makes on its own behalf, in the background.
    fn step_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = self.mesh.request(message);
        request.set_timeout(STEP_CALL_TIMEOUT);
        request
    }

    /// A call made for `caller` within `budget`.
    fn budget_request<T>(&self, budget: &Budget, message: T, caller: &Caller) -> tonic::Request<T> {
        let mut request = budget.request(message);
        self.mesh.apply(caller, &mut request);
        request
    }
}

/// Whether a failed call may have done its work anyway (no answer came).
fn ambiguous(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

/// Stages `order.cancelled` in the order's outbox (same write as the change).
fn stage_cancelled(id: &str, order: &mut Order, previous: S) {
    let event = platform::events::envelope(
        "order.cancelled",
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

/// What a step's peer answered.
enum Outcome {
    /// Done; the step goes.
    Done,
    /// The peer refused for good; the step goes, with a note for people.
    Refused(String),
    /// Not now; the sweeper tries again.
    Later(Status),
}

/// How a creation failed, and whether its key may be used again at once.
pub(crate) struct CreateFailure {
    pub status: Status,
    /// The outcome is unknown (the order may exist): keep the key in
    /// progress so the retry takes it over and finds out.
    pub keep_key: bool,
}

impl From<Status> for CreateFailure {
    fn from(status: Status) -> Self {
        CreateFailure {
            status,
            keep_key: false,
        }
    }
}

impl From<StoreError> for CreateFailure {
    fn from(err: StoreError) -> Self {
        Status::from(err).into()
    }
}

impl OrderApi {
    /// Applies `change` to the order with CAS; NOT_FOUND for an unknown id.
    pub(crate) async fn change<E: Send>(
        &self,
        id: &str,
        change: impl FnMut(&mut Order) -> Result<(), E> + Send,
    ) -> Result<Result<Versioned<Order>, E>, Status> {
        self.orders.update(id, change).await.map_err(|e| match e {
            StoreError::NotFound => Status::not_found("order not found"),
            other => other.into(),
        })
    }

    /// After a write: publish what it staged, then do what it owes.
    pub(crate) async fn after_write(&self, id: &str) {
        if let Err(err) = self.relay.flush(id).await {
            tracing::warn!(error = %err, order = id, "event publish deferred to the outbox sweeper");
        }
        self.run_steps(id).await;
    }

    /// Places an order under `order_id` (the same id on a retry of the
    /// same Idempotency-Key).
    pub(crate) async fn create(
        &self,
        caller: &Caller,
        order_id: &str,
        r: &CreateOrderRequest,
        budget: &Budget,
    ) -> Result<proto::order::Order, CreateFailure> {
        let lines: Vec<(String, u32)> = r
            .items
            .iter()
            .map(|i| (i.product_id.clone(), i.quantity))
            .collect();
        let address = r.shipping_address.clone().map(domain::Address::from);
        let address = domain::validate_request(
            &lines,
            address.as_ref(),
            &r.notes,
            self.saga.max_units_per_line,
        )
        .map_err(|errors| {
            invalid_fields(errors.iter().map(|e| (e.field.as_str(), e.message.clone())))
        })?;
        if let Some(existing) = self.orders.find_by_id(order_id).await? {
            if existing.value.abandoned || existing.value.user_id != caller.user_id {
                return Err(
                    Status::aborted("the order could not be placed; place it again").into(),
                );
            }
            return Ok(to_proto(order_id, &existing.value));
        }
        self.check_unpaid_cap(&caller.user_id).await?;

        // Prices and availability from the catalog, never from the client.
        let ids: Vec<String> = lines.iter().map(|(p, _)| p.clone()).collect();
        let validation = self
            .retry
            .run(|| {
                let mut products = self.products.clone();
                let request = self.budget_request(
                    budget,
                    proto::product::ValidateProductsRequest {
                        product_ids: ids.clone(),
                    },
                    &self.mesh.own_caller(),
                );
                async move { products.validate_products(request).await }
            })
            .await?
            .into_inner()
            .products;
        let (items, currency) = priced_items(&lines, &validation)?;
        let total: i64 = items.iter().map(|i| i.line_total).sum();
        if total <= 0 {
            return Err(invalid_fields([(
                "items",
                "an order must have something to pay".to_string(),
            )])
            .into());
        }

        let stock_lines: Vec<proto::product::StockLine> = items
            .iter()
            .map(|i| proto::product::StockLine {
                product_id: i.product_id.clone(),
                quantity: i.quantity as u32,
            })
            .collect();
        let reserved = self
            .retry
            .run(|| {
                let mut products = self.products.clone();
                let request = self.budget_request(
                    budget,
                    proto::product::ReserveStockRequest {
                        order_id: order_id.to_string(),
                        lines: stock_lines.clone(),
                    },
                    &self.mesh.own_caller(),
                );
                async move { products.reserve_stock(request).await }
            })
            .await;
        if let Err(status) = reserved {
            if ambiguous(&status) {
                // The reserve may have happened: give it back (a release
                // also refuses the reserve if it is still on its way). If
                // this fails too, product-svc's sweeper finds the
                // reservation without an order and releases it.
                self.release_now(order_id).await;
            }
            return Err(match status.code() {
                Code::NotFound => invalid_fields([("items", status.message().to_string())]),
                _ => status,
            }
            .into());
        }

        let now = now_ms();
        let mut order = Order {
            user_id: caller.user_id.clone(),
            items,
            currency: currency.clone(),
            total,
            shipping_address: address,
            notes: r.notes.trim().to_string(),
            created_at: now,
            updated_at: now,
            expires_at: Some(now + self.saga.payment_timeout.as_millis() as i64),
            ..Order::default()
        };
        order.outbox.stage(&platform::events::envelope(
            "order.created",
            order_id,
            "order-svc",
            Payload::OrderCreated(proto::events::OrderCreated {
                order_id: order_id.to_string(),
                user_id: order.user_id.clone(),
                items: lines_of(&order),
                total: money(total, &currency),
                shipping_address: Some(proto::common::Address::from(&order.shipping_address)),
            }),
        ));
        match self.orders.insert(order_id, order).await {
            Ok(stored) => {
                self.after_write(order_id).await;
                Ok(to_proto(order_id, &stored.value))
            }
            Err(StoreError::AlreadyExists { .. }) => {
                let existing = self.orders.get(order_id).await?;
                if existing.value.abandoned {
                    return Err(
                        Status::aborted("the order could not be placed; place it again").into(),
                    );
                }
                Ok(to_proto(order_id, &existing.value))
            }
            Err(err) => {
                // The write may have landed: leave the stock held and the
                // key in progress; the retry (or product-svc's sweeper,
                // asking this service) settles it.
                Err(CreateFailure {
                    status: err.into(),
                    keep_key: true,
                })
            }
        }
    }

    /// Refuses a new order when the customer already holds the most unpaid ones.
    async fn check_unpaid_cap(&self, user_id: &str) -> Result<(), Status> {
        let cap = self.saga.max_unpaid_per_customer as usize;
        let mut open = 0;
        for status in ["PENDING_PAYMENT", "PAYMENT_FAILED"] {
            open += self
                .orders
                .find(
                    &Query::new()
                        .eq("user_id", user_id)
                        .eq("status", status)
                        .limit((cap + 1).min(platform::store::MAX_PAGE)),
                )
                .await?
                .items
                .len();
        }
        if open >= cap {
            return Err(Status::failed_precondition(format!(
                "at most {cap} orders may await payment at once; pay or cancel one first"
            )));
        }
        Ok(())
    }

    /// Releases `order_id`'s stock now, best effort (a fresh short deadline:
    /// the request's own may be spent).
    async fn release_now(&self, order_id: &str) {
        let request = self.step_request(proto::product::ReleaseStockRequest {
            order_id: order_id.to_string(),
        });
        if let Err(status) = self.products.clone().release_stock(request).await {
            tracing::warn!(order = order_id, code = ?status.code(), "stock not released after a failed creation; the reservation sweeper will");
        }
    }

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
        // A retry of an attempt that ended gets its answer again, whatever
        // happened to the order since: the payment service replays it for
        // the same key and card (and refuses another card under that key).
        let replay = order.value.finished_attempt(&key).is_some();
        let started = if replay {
            Ok(order.clone())
        } else {
            self.change(&id, |o| o.begin_payment(&key, now_ms()))
                .await?
        };
        if let Err(refusal) = started {
            return Err(match refusal {
                PayRefusal::NotPayable(S::Paid | S::Shipped | S::Delivered) => {
                    Status::failed_precondition("the order is already paid")
                }
                PayRefusal::NotPayable(status) => Status::failed_precondition(format!(
                    "the order is {} and cannot be paid",
                    status_to_proto(status)
                        .as_str_name()
                        .trim_start_matches("ORDER_STATUS_")
                )),
                PayRefusal::InProgress => {
                    Status::aborted("a payment for this order is in progress; retry shortly")
                }
                PayRefusal::Expired => Status::failed_precondition(
                    "the time to pay this order has run out; it is being cancelled",
                ),
            });
        }
        let request = self.budget_request(
            budget,
            proto::payment::CreatePaymentRequest {
                order_id: id.clone(),
                user_id: order.value.user_id.clone(),
                amount: money(order.value.total, &order.value.currency),
                idempotency_key: key.clone(),
                card,
            },
            caller,
        );
        let reply = self.payments.clone().create_payment(request).await;
        let payment = match reply {
            Ok(reply) => reply.into_inner().payment.ok_or_else(|| {
                Status::internal("the payment service answered without a payment")
            })?,
            Err(status) => {
                if !ambiguous(&status) && status.code() != Code::Aborted {
                    // Nothing was charged (a bad card, a reused key): the
                    // attempt is over.
                    let _ = self
                        .change::<std::convert::Infallible>(&id, |o| {
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
        match P::try_from(payment.status) {
            Ok(P::Succeeded | P::PartiallyRefunded | P::Refunded) => {
                let amount = payment.amount.clone().unwrap_or_default();
                self.on_paid(&id, &payment.id, &amount, Some(&key), None)
                    .await?
            }
            Ok(P::Failed) => {
                self.on_payment_failed(&id, Some((&key, &payment.id)), None)
                    .await?
            }
            _ => {
                return Err(Status::unavailable(
                    "the payment provider has not answered yet; retry with the same Idempotency-Key",
                ));
            }
        }
        // The payment as it was made (SUCCEEDED or FAILED), even if a cancel
        // refunded it a moment later: the order's status says where it stands.
        let status = self.orders.get(&id).await?.value.status;
        Ok((payment, status))
    }

    /// A payment succeeded (answer of the payment call, or
    /// `payment.processed`): the order is PAID and its stock committed,
    /// or, if it no longer takes payment, the payment is refunded.
    pub(crate) async fn on_paid(
        &self,
        order_id: &str,
        payment_id: &str,
        amount: &proto::common::Money,
        key: Option<&str>,
        event_id: Option<&str>,
    ) -> Result<(), Status> {
        let changed = self
            .change::<()>(order_id, |o| {
                if event_id.is_some_and(|e| o.applied_events.iter().any(|x| x == e))
                    || o.payment_id == payment_id
                    || o.compensated.iter().any(|p| p == payment_id)
                {
                    return Err(());
                }
                let now = now_ms();
                let attempt_key = key
                    .map(str::to_string)
                    .or_else(|| o.payment_attempt.as_ref().map(|a| a.key.clone()))
                    .unwrap_or_default();
                let matches =
                    amount.amount == o.total && amount.currency.eq_ignore_ascii_case(&o.currency);
                if o.is_open() && matches {
                    o.apply(OrderEvent::PaymentSucceeded, event_id)
                        .map_err(|_| ())?;
                    o.payment_id = payment_id.to_string();
                    o.end_payment(&attempt_key, payment_id);
                    o.close();
                    o.steps.add(Step::CommitStock, new_id(), now);
                } else {
                    // Not what the order was waiting for: cancelled or
                    // expired meanwhile, paid already, or the wrong amount.
                    if o.is_open() {
                        o.attention.push(format!(
                            "payment {payment_id} captured {} {} for a total of {} {}; refunded",
                            amount.amount, amount.currency, o.total, o.currency
                        ));
                        let _ = o.apply(OrderEvent::PaymentFailed, None);
                    }
                    o.end_payment(&attempt_key, payment_id);
                    o.compensated.push(payment_id.to_string());
                    o.steps.add(
                        Step::Refund {
                            payment_id: payment_id.to_string(),
                            key: format!("compensate:{payment_id}"),
                        },
                        new_id(),
                        now,
                    );
                    if let Some(e) = event_id {
                        o.applied_events.push(e.to_string());
                    }
                    tracing::warn!(order = %order_id, payment = %payment_id, "a payment arrived for an order that no longer takes it; refunding it");
                }
                o.updated_at = now;
                Ok(())
            })
            .await?;
        if let Ok(order) = &changed {
            if order.value.payment_id == payment_id {
                platform::metrics::count(&platform::metrics::ORDERS, &["paid"]);
            }
            self.after_write(order_id).await;
        }
        Ok(())
    }

    /// A payment failed: the order may be paid again. `attempt` is the
    /// (key, payment) of the call that learnt it; an event alone leaves an
    /// attempt under way alone.
    pub(crate) async fn on_payment_failed(
        &self,
        order_id: &str,
        attempt: Option<(&str, &str)>,
        event_id: Option<&str>,
    ) -> Result<(), Status> {
        let _ = self
            .change::<()>(order_id, |o| {
                let now = now_ms();
                match attempt {
                    Some((key, payment_id)) => o.end_payment(key, payment_id),
                    None if o.live_attempt(now).is_some() => return Err(()),
                    None => {}
                }
                // A failure after a success (or a cancel) changes nothing.
                if o.apply(OrderEvent::PaymentFailed, event_id).is_ok() {
                    o.updated_at = now;
                }
                Ok(())
            })
            .await?;
        Ok(())
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
                        let now = now_ms();
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
        if changed.is_ok() {
            self.after_write(order_id).await;
        }
        Ok(())
    }

    /// `shipping.updated`: the carrier has the parcel, or delivered it.
    pub(crate) async fn on_shipping(
        &self,
        order_id: &str,
        delivered: bool,
        event_id: Option<&str>,
    ) -> Result<(), Status> {
        let _ = self
            .change::<()>(order_id, |o| {
                let now = now_ms();
                let mut changed = false;
                if o.status == S::Paid {
                    // The carrier took it before any cancel could void it.
                    changed |= o.apply(OrderEvent::Shipped, None).is_ok();
                }
                if delivered {
                    changed |= o.apply(OrderEvent::Delivered, event_id).is_ok();
                } else if let Some(e) = event_id
                    && !o.applied_events.iter().any(|x| x == e)
                {
                    o.applied_events.push(e.to_string());
                }
                if !changed {
                    return Err(());
                }
                o.updated_at = now;
                Ok(())
            })
            .await?;
        Ok(())
    }

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
            .change::<Option<CancelRefusal>>(id, |o| {
                let now = now_ms();
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
        match decided {
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
            Ok(_) | Err(None) => {}
        }
        if plan != CancelPlan::Nothing {
            self.after_write(id).await;
        } else {
            self.run_steps(id).await;
        }
        let current = self.orders.get(id).await?;
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

    /// Does the order's pending steps, each until its peer confirms; what
    /// fails stays for the sweeper.
    pub(crate) async fn run_steps(&self, id: &str) {
        let order = match self.orders.find_by_id(id).await {
            Ok(Some(order)) => order,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(error = %err, order = id, "pending steps deferred to the sweeper");
                return;
            }
        };
        for pending in order.value.steps.items.clone() {
            let outcome = self.execute(id, &order.value, &pending).await;
            match outcome {
                Outcome::Done => self.finish_step(id, &pending, None).await,
                Outcome::Refused(why) => self.finish_step(id, &pending, Some(why)).await,
                Outcome::Later(status) => {
                    tracing::warn!(order = id, step = ?pending.step, code = ?status.code(), message = status.message(), "saga step deferred; will retry");
                }
            }
        }
    }

    async fn execute(&self, id: &str, order: &Order, pending: &PendingStep) -> Outcome {
        let order_id = id.to_string();
        let result = match &pending.step {
            Step::CommitStock => self
                .products
                .clone()
                .commit_stock(self.step_request(proto::product::CommitStockRequest { order_id }))
                .await
                .map(|_| ()),
            Step::ReleaseStock => self
                .products
                .clone()
                .release_stock(self.step_request(proto::product::ReleaseStockRequest { order_id }))
                .await
                .map(|_| ()),
            Step::Refund { payment_id, key } => self
                .payments
                .clone()
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
                .shipping
                .clone()
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

    /// Removes a done (or refused) step, with what follows from it, in one write.
    async fn finish_step(&self, id: &str, pending: &PendingStep, refused: Option<String>) {
        let result = self
            .change::<()>(id, |o| {
                if !o.steps.remove(&pending.id) {
                    return Err(());
                }
                let now = now_ms();
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
            })
            .await;
        match result {
            Ok(Ok(_)) => {
                if let Some(why) = &refused {
                    tracing::warn!(order = id, step = ?pending.step, why, "saga step refused by its peer");
                }
                if matches!(pending.step, Step::CancelPaid { .. }) && refused.is_none() {
                    // New steps were written with the change: do them now.
                    Box::pin(self.after_write(id)).await;
                }
            }
            Ok(Err(())) => {}
            Err(status) => {
                tracing::warn!(order = id, code = ?status.code(), "finishing a saga step deferred");
            }
        }
    }

    /// Expires the order if its time to pay has run out.
    async fn expire(&self, id: &str) -> Result<bool, Status> {
        let changed = self
            .change::<()>(id, |o| {
                let now = now_ms();
                if !o.is_expired(now) || !cancel_unpaid(id, o, reason::PAYMENT_TIMEOUT, now) {
                    return Err(());
                }
                o.updated_at = now;
                Ok(())
            })
            .await?;
        if changed.is_ok() {
            tracing::info!(order = id, "unpaid order cancelled: payment timeout");
            self.after_write(id).await;
        }
        Ok(changed.is_ok())
    }

    /// One pass of the sweeper: steps left behind, and unpaid orders whose
    /// time has run out. Returns (steps looked at, orders expired).
    pub async fn sweep(&self) -> Result<(usize, usize), StoreError> {
        let now = now_ms();
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
                self.run_steps(&order.id).await;
                looked += 1;
            }
        }
        Ok((looked, expired))
    }

    /// GetOrderStatus with `abandon_if_missing`: records an unknown id as
    /// never placed, atomically, so a creation still under way for it
    /// cannot complete after its stock was released.
    pub(crate) async fn abandon_if_missing(&self, id: &str) -> Result<Versioned<Order>, Status> {
        let tombstone = Order::tombstone(now_ms());
        match self.orders.insert(id, tombstone).await {
            Ok(stored) => Ok(stored),
            Err(StoreError::AlreadyExists { .. }) => Ok(self.orders.get(id).await?),
            Err(err) => Err(err.into()),
        }
    }
}

/// Lines priced from the catalog, and their one currency.
fn priced_items(
    lines: &[(String, u32)],
    validation: &[proto::product::ProductValidation],
) -> Result<(Vec<Item>, String), Status> {
    let mut items = Vec::new();
    let mut currencies = Vec::new();
    let mut errors = Vec::new();
    for (i, (product_id, quantity)) in lines.iter().enumerate() {
        let Some(v) = validation.get(i).filter(|v| v.found && v.active) else {
            errors.push((
                format!("items[{i}].product_id"),
                format!("unknown product {product_id}"),
            ));
            continue;
        };
        let price = v.price.clone().unwrap_or_default();
        currencies.push(price.currency.clone());
        items.push(Item {
            product_id: product_id.clone(),
            sku: v.sku.clone(),
            name: v.name.clone(),
            unit_price: price.amount,
            quantity: i64::from(*quantity),
            line_total: price.amount * i64::from(*quantity),
            weight_grams: v.weight_grams,
        });
    }
    if !errors.is_empty() {
        return Err(invalid_fields(
            errors.iter().map(|(f, m)| (f.as_str(), m.clone())),
        ));
    }
    let currency = currencies.first().cloned().unwrap_or_default();
    if currencies.iter().any(|c| *c != currency) {
        return Err(invalid_fields([(
            "items",
            "all items must be priced in one currency".to_string(),
        )]));
    }
    Ok((items, currency))
}
