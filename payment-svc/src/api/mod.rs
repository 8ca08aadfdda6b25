//! gRPC surface of `PaymentService`: proto <-> domain.

use std::sync::Arc;
use std::time::Duration;

use platform::auth::{Caller, MeshAuth};
use platform::error::invalid_fields;
use platform::events::outbox::OutboxRelay;
use platform::store::{Collection, Query, StoreError, Versioned};
use proto::events::envelope::Payload;
use proto::payment::payment_service_server::PaymentService;
use proto::payment::*;
use tonic::{Request, Response, Status};

use crate::domain::{self, Card, PaymentState, RefundError, RefundState};
use crate::provider::{ChargeOutcome, ChargeRequest, PaymentProvider, ProviderError};

/// Role of internal callers (other services acting on their own behalf).

#[derive(Clone, Debug)]
pub struct PaymentApi {
    pub(crate) payments: Collection<domain::Payment>,
    pub(crate) relay: OutboxRelay<domain::Payment>,
    pub(crate) provider: Arc<dyn PaymentProvider>,
    /// Verifies who calls.
    pub(crate) mesh: MeshAuth,
    /// Pending payments older than this are reconciled with the provider.
    pub(crate) reconcile_after: Duration,
}

fn now() -> i64 {
    platform::auth::unix_now() as i64
}

fn timestamp(secs: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    })
}

fn money(amount: i64, currency: &str) -> Option<proto::common::Money> {
    Some(proto::common::Money {
        amount,
        currency: currency.to_string(),
    })
}

fn year_month_now() -> (u32, u32) {
    let days = (platform::auth::unix_now() / 86_400) as i64;
    let date = platform::auth::rfc3339(days * 86_400);
    let year = date[0..4].parse().unwrap_or(1970);
    let month = date[5..7].parse().unwrap_or(1);
    (year, month)
}

pub(crate) fn to_proto(id: &str, p: &domain::Payment) -> Payment {
    let status = match p.state {
        PaymentState::Pending => PaymentStatus::Pending,
        PaymentState::Succeeded => PaymentStatus::Succeeded,
        PaymentState::Failed => PaymentStatus::Failed,
        PaymentState::PartiallyRefunded => PaymentStatus::PartiallyRefunded,
        PaymentState::Refunded => PaymentStatus::Refunded,
    };
    Payment {
        id: id.to_string(),
        order_id: p.order_id.clone(),
        user_id: p.user_id.clone(),
        status: status as i32,
        amount: money(p.amount, &p.currency),
        refunded_amount: money(p.refunded_settled(), &p.currency),
        card_brand: p.card_brand.clone(),
        card_last4: p.card_last4.clone(),
        failure_reason: p.failure_reason.clone(),
        failure_code: p.failure_code.clone(),
        provider: p.provider.clone(),
        provider_ref: p.provider_ref.clone(),
        refunds: p
            .refunds
            .iter()
            .map(|r| refund_to_proto(id, p, r))
            .collect(),
        created_at: timestamp(p.created_at),
        updated_at: timestamp(p.updated_at),
    }
}

fn refund_to_proto(
    payment_id: &str,
    p: &domain::Payment,
    r: &domain::Refund,
) -> proto::payment::Refund {
    let status = match r.state {
        RefundState::Pending => proto::payment::RefundStatus::Pending,
        RefundState::Succeeded => proto::payment::RefundStatus::Succeeded,
        RefundState::Failed => proto::payment::RefundStatus::Failed,
    };
    proto::payment::Refund {
        id: r.id.clone(),
        payment_id: payment_id.to_string(),
        order_id: p.order_id.clone(),
        amount: money(r.amount, &p.currency),
        reason: r.reason.clone(),
        status: status as i32,
        provider_ref: r.provider_ref.clone(),
        failure_reason: r.failure_reason.clone(),
        created_at: timestamp(r.created_at),
    }
}

fn lookup_err(err: StoreError) -> Status {
    match err {
        StoreError::NotFound | StoreError::Invalid(_) => Status::not_found("payment not found"),
        other => other.into(),
    }
}

impl PaymentApi {
    /// Records the provider's decision on a pending payment (once), staging
    /// `payment.processed` or `payment.failed`.
    async fn settle(
        &self,
        id: &str,
        outcome: &ChargeOutcome,
    ) -> Result<Versioned<domain::Payment>, Status> {
        let settled = self
            .payments
            .modify(id, |p| {
                if p.state != PaymentState::Pending {
                    return;
                }
                p.updated_at = now();
                let payload = match outcome {
                    ChargeOutcome::Succeeded { provider_ref } => {
                        p.state = PaymentState::Succeeded;
                        p.provider_ref = provider_ref.clone();
                        Payload::PaymentProcessed(proto::events::PaymentProcessed {
                            payment_id: id.to_string(),
                            order_id: p.order_id.clone(),
                            user_id: p.user_id.clone(),
                            amount: money(p.amount, &p.currency),
                            card_brand: p.card_brand.clone(),
                            card_last4: p.card_last4.clone(),
                            provider: p.provider.clone(),
                        })
                    }
                    ChargeOutcome::Declined { code, reason } => {
                        p.state = PaymentState::Failed;
                        p.charge_lock = None;
                        p.failure_code = code.clone();
                        p.failure_reason = reason.clone();
                        Payload::PaymentFailed(proto::events::PaymentFailed {
                            payment_id: id.to_string(),
                            order_id: p.order_id.clone(),
                            user_id: p.user_id.clone(),
                            amount: money(p.amount, &p.currency),
                            failure_reason: reason.clone(),
                            failure_code: code.clone(),
                        })
                    }
                };
                let kind = if matches!(outcome, ChargeOutcome::Succeeded { .. }) {
                    "payment.processed"
                } else {
                    "payment.failed"
                };
                p.outbox.stage(&platform::events::envelope(
                    kind,
                    &p.order_id,
                    "payment-svc",
                    payload,
                ));
            })
            .await?;
        self.flush(id).await;
        Ok(settled)
    }

    async fn flush(&self, id: &str) {
        if let Err(err) = self.relay.flush(id).await {
            tracing::warn!(error = %err, payment = id, "event publish deferred to the outbox sweeper");
        }
    }

    /// Asks the provider about payments left pending (their answer was
    /// lost) and records the outcome; a charge the provider never received
    /// fails. Returns how many were settled.
    pub async fn reconcile(&self) -> Result<usize, Status> {
        let cutoff = now() - self.reconcile_after.as_secs() as i64;
        let pending = self
            .payments
            .find(&Query::new().eq("state", "pending").limit(100))
            .await?;
        let mut settled = 0;
        for payment in pending
            .items
            .iter()
            .filter(|p| p.value.updated_at <= cutoff)
        {
            match self.provider.lookup(&payment.id).await {
                Ok(Some(outcome)) => {
                    self.settle(&payment.id, &outcome).await?;
                    settled += 1;
                }
                Ok(None) => {
                    let never = ChargeOutcome::Declined {
                        code: "processing_error".into(),
                        reason: "The payment provider never received the charge.".into(),
                    };
                    self.settle(&payment.id, &never).await?;
                    settled += 1;
                }
                Err(err) => {
                    tracing::warn!(error = %err, payment = %payment.id, "reconciliation deferred")
                }
            }
        }
        Ok(settled)
    }

    fn may_read(caller: &Caller, payment: &domain::Payment) -> bool {
        caller.is_admin() || caller.is_service() || caller.user_id == payment.user_id
    }
}

#[tonic::async_trait]
impl PaymentService for PaymentApi {
    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn create_payment(
        &self,
        request: Request<CreatePaymentRequest>,
    ) -> Result<Response<CreatePaymentResponse>, Status> {
        // Only the order saga charges: it decided the amount from the order,
        // and it records the attempt before the provider is called.
        self.mesh
            .caller(request.metadata())
            .await?
            .require_from(&["order-svc"])?;
        let r = request.into_inner();
        let amount = r.amount.clone().unwrap_or_default();
        if r.order_id.is_empty() || r.user_id.is_empty() {
            return Err(invalid_fields([(
                "order_id",
                "order and user are required".to_string(),
            )]));
        }
        if amount.amount <= 0 || amount.currency.len() != 3 {
            return Err(invalid_fields([(
                "amount",
                "must be positive with a currency".to_string(),
            )]));
        }
        let card = r.card.unwrap_or_default();
        let (year, month) = year_month_now();
        let card = Card::parse(
            &card.number,
            card.exp_month,
            card.exp_year,
            &card.cvc,
            year,
            month,
        )
        .map_err(|errors| invalid_fields(errors.into_iter().map(|e| (e.field, e.message))))?;
        let key = if r.idempotency_key.is_empty() {
            uuid::Uuid::now_v7().to_string()
        } else {
            r.idempotency_key.clone()
        };
        let idempotency = format!("{}:{key}", r.order_id);
        let card_exp = format!("{:02}/{}", card.exp_month, card.exp_year);
        let same_request = |p: &domain::Payment| {
            p.amount == amount.amount && p.card_last4 == card.last4() && p.card_exp == card_exp
        };

        if let Some(existing) = self
            .payments
            .find_one(Query::new().eq("idempotency", idempotency.as_str()))
            .await?
        {
            if !same_request(&existing.value) {
                return Err(Status::already_exists(
                    "idempotency key reused with a different request",
                ));
            }
            platform::metrics::count(&platform::metrics::IDEMPOTENCY_REPLAYS, &["payment-svc"]);
            return Ok(Response::new(CreatePaymentResponse {
                payment: Some(to_proto(&existing.id, &existing.value)),
            }));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let payment = domain::Payment {
            order_id: r.order_id.clone(),
            user_id: r.user_id.clone(),
            amount: amount.amount,
            currency: amount.currency.to_ascii_uppercase(),
            state: PaymentState::Pending,
            card_brand: card.brand().into(),
            card_last4: card.last4(),
            card_exp: card_exp.clone(),
            idempotency: idempotency.clone(),
            charge_lock: Some(r.order_id.clone()),
            provider: self.provider.name().into(),
            provider_ref: String::new(),
            failure_reason: String::new(),
            failure_code: String::new(),
            refunds: Vec::new(),
            created_at: now(),
            updated_at: now(),
            outbox: Default::default(),
        };
        match self.payments.insert(&id, payment).await {
            Ok(_) => {}
            Err(StoreError::AlreadyExists { index }) if index == "idempotency" => {
                let existing = self
                    .payments
                    .find_one(Query::new().eq("idempotency", idempotency.as_str()))
                    .await?
                    .ok_or_else(|| Status::aborted("retry"))?;
                if !same_request(&existing.value) {
                    return Err(Status::already_exists(
                        "idempotency key reused with a different request",
                    ));
                }
                platform::metrics::count(&platform::metrics::IDEMPOTENCY_REPLAYS, &["payment-svc"]);
                return Ok(Response::new(CreatePaymentResponse {
                    payment: Some(to_proto(&existing.id, &existing.value)),
                }));
            }
            Err(StoreError::AlreadyExists { .. }) => {
                let holder = self
                    .payments
                    .find_one(Query::new().eq("charge_lock", r.order_id.as_str()))
                    .await?;
                return Err(match holder {
                    Some(p) if p.value.state != PaymentState::Pending => {
                        Status::failed_precondition("the order is already paid")
                    }
                    _ => Status::aborted("a payment for this order is in progress"),
                });
            }
            Err(err) => return Err(err.into()),
        }
        let charge = ChargeRequest {
            key: &id,
            amount: amount.amount,
            currency: &amount.currency,
            card: &card,
        };
        match self.provider.charge(charge).await {
            Ok(outcome) => {
                let settled = self.settle(&id, &outcome).await?;
                Ok(Response::new(CreatePaymentResponse {
                    payment: Some(to_proto(&id, &settled.value)),
                }))
            }
            Err(ProviderError::Unavailable(reason)) => {
                tracing::warn!(%reason, payment = %id, "provider did not answer; the payment stays pending for reconciliation");
                Err(Status::unavailable(
                    "the payment provider did not answer; the payment will be reconciled, retry with the same idempotency key",
                ))
            }
            Err(ProviderError::Rejected(reason)) => {
                let outcome = ChargeOutcome::Declined {
                    code: "processing_error".into(),
                    reason: "The payment could not be processed.".into(),
                };
                tracing::error!(%reason, payment = %id, "provider rejected the charge request");
                let settled = self.settle(&id, &outcome).await?;
                Ok(Response::new(CreatePaymentResponse {
                    payment: Some(to_proto(&id, &settled.value)),
                }))
            }
        }
    }

    async fn get_payment_status(
        &self,
        request: Request<GetPaymentStatusRequest>,
    ) -> Result<Response<GetPaymentStatusResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let id = request.into_inner().payment_id;
        let payment = self.payments.get(&id).await.map_err(lookup_err)?;
        if !Self::may_read(&caller, &payment.value) {
            return Err(Status::not_found("payment not found"));
        }
        Ok(Response::new(GetPaymentStatusResponse {
            payment: Some(to_proto(&id, &payment.value)),
        }))
    }

    #[tracing::instrument(skip_all, fields(payment_id = %request.get_ref().payment_id))]
    async fn process_refund(
        &self,
        request: Request<ProcessRefundRequest>,
    ) -> Result<Response<ProcessRefundResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        // Admins, and order-svc settling what a cancel or a late payment owes.
        if !caller.is_admin() && !(caller.is_service() && caller.is_from("order-svc")) {
            return Err(Status::permission_denied("refunds are for admins"));
        }
        let r = request.into_inner();
        let id = r.payment_id;
        let requested = r.amount.as_ref().map(|m| m.amount);
        let reason = r.reason.trim().chars().take(500).collect::<String>();
        let key = if r.idempotency_key.is_empty() {
            uuid::Uuid::now_v7().to_string()
        } else {
            r.idempotency_key
        };
        let current = self.payments.get(&id).await.map_err(lookup_err)?;
        if let Some(m) = &r.amount
            && !m.currency.eq_ignore_ascii_case(&current.value.currency)
        {
            return Err(invalid_fields([(
                "amount.currency",
                format!("must be {}", current.value.currency),
            )]));
        }
        // Stage (or find) the refund, reserving its amount.
        let staged = self
            .payments
            .update(&id, |p| {
                if let Some(existing) = p.refunds.iter_mut().find(|x| x.key == key) {
                    if requested.is_some_and(|a| a != existing.amount) {
                        return Err(Status::already_exists(
                            "idempotency key reused with a different refund",
                        ));
                    }
                    if existing.state == RefundState::Failed {
                        // A retry of a refund that failed: try again if it still fits.
                        let amount = existing.amount;
                        p.refundable(Some(amount)).map_err(refund_status)?;
                        if let Some(again) = p.refunds.iter_mut().find(|x| x.key == key) {
                            again.state = RefundState::Pending;
                        }
                    }
                    return Ok(());
                }
                let amount = p.refundable(requested).map_err(refund_status)?;
                p.refunds.push(domain::Refund {
                    id: uuid::Uuid::now_v7().to_string(),
                    key: key.clone(),
                    amount,
                    reason: reason.clone(),
                    state: RefundState::Pending,
                    provider_ref: String::new(),
                    failure_reason: String::new(),
                    created_at: now(),
                });
                p.updated_at = now();
                Ok(())
            })
            .await
            .map_err(lookup_err)??;
        let refund = staged
            .value
            .refunds
            .iter()
            .find(|x| x.key == key)
            .cloned()
            .expect("staged above");
        if refund.state == RefundState::Succeeded {
            return Ok(Response::new(ProcessRefundResponse {
                refund: Some(refund_to_proto(&id, &staged.value, &refund)),
                payment: Some(to_proto(&id, &staged.value)),
            }));
        }
        let result = self
            .provider
            .refund(
                &refund.id,
                &staged.value.provider_ref,
                refund.amount,
                &staged.value.currency,
            )
            .await;
        let settled = self
            .payments
            .modify(&id, |p| {
                let Some(x) = p.refunds.iter_mut().find(|x| x.key == key) else {
                    return;
                };
                if x.state != RefundState::Pending {
                    return;
                }
                match &result {
                    Ok(provider_ref) => {
                        x.state = RefundState::Succeeded;
                        x.provider_ref = provider_ref.clone();
                        let (refund_id, amount, reason) =
                            (x.id.clone(), x.amount, x.reason.clone());
                        p.settle_state();
                        let total = p.refunded_settled();
                        p.outbox.stage(&platform::events::envelope(
                            "payment.refunded",
                            &p.order_id,
                            "payment-svc",
                            Payload::PaymentRefunded(proto::events::PaymentRefunded {
                                refund_id,
                                payment_id: id.clone(),
                                order_id: p.order_id.clone(),
                                user_id: p.user_id.clone(),
                                amount: money(amount, &p.currency),
                                refunded_total: money(total, &p.currency),
                                fully_refunded: total >= p.amount,
                                reason,
                            }),
                        ));
                    }
                    Err(err) => {
                        x.state = RefundState::Failed;
                        x.failure_reason = err.to_string();
                    }
                }
                p.updated_at = now();
            })
            .await?;
        self.flush(&id).await;
        if let Err(err) = result {
            return Err(Status::unavailable(format!(
                "the refund did not go through ({err}); retry with the same idempotency key"
            )));
        }
        let refund = settled
            .value
            .refunds
            .iter()
            .find(|x| x.key == key)
            .cloned()
            .expect("kept");
        Ok(Response::new(ProcessRefundResponse {
            refund: Some(refund_to_proto(&id, &settled.value, &refund)),
            payment: Some(to_proto(&id, &settled.value)),
        }))
    }

    async fn list_payments(
        &self,
        request: Request<ListPaymentsRequest>,
    ) -> Result<Response<ListPaymentsResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let r = request.into_inner();
        let privileged = caller.is_admin() || caller.is_service();
        let user = if r.user_id.is_empty() {
            if privileged {
                None
            } else {
                Some(caller.user_id.clone())
            }
        } else if privileged || r.user_id == caller.user_id {
            Some(r.user_id.clone())
        } else {
            return Err(Status::permission_denied(
                "customers list only their own payments",
            ));
        };
        let mut query = Query::new().sort_by_id(true).page(r.page.as_ref());
        if let Some(user) = &user {
            query = query.eq("user_id", user.as_str());
        }
        if !r.order_id.is_empty() {
            query = query.eq("order_id", r.order_id.as_str());
        }
        let page = self
            .payments
            .find(&query)
            .await
            .map_err(StoreError::into_list_status)?;
        Ok(Response::new(ListPaymentsResponse {
            payments: page
                .items
                .iter()
                .map(|p| to_proto(&p.id, &p.value))
                .collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        }))
    }
}

fn refund_status(err: RefundError) -> Status {
    match err {
        RefundError::NotCaptured => Status::failed_precondition("the payment was not captured"),
        RefundError::OverRefund { refundable } => {
            Status::out_of_range(format!("at most {refundable} can still be refunded"))
        }
        RefundError::BadAmount => invalid_fields([("amount", "must be positive".to_string())]),
    }
}
