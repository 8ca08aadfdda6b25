//! Charging: a payment is created pending, the provider is asked, and its
//! decision is settled once; payments whose answer was lost are reconciled.

use platform::error::{invalid, invalid_fields};
use platform::store::{Query, StoreError, Versioned};
use proto::events::envelope::Payload;
use proto::payment::{CreatePaymentRequest, CreatePaymentResponse};
use tonic::Status;

use super::convert::{money, to_proto};
use super::{PaymentApi, now};
use crate::domain::{self, Card, PaymentState};
use crate::provider::{ChargeOutcome, ChargeRequest, ProviderError};

/// This month, as (year, month): what a card's expiry is checked against.
pub fn year_month_now() -> (u32, u32) {
    let date = platform::clock::rfc3339(platform::clock::now().secs());
    let year = date[0..4].parse().unwrap_or(1970);
    let month = date[5..7].parse().unwrap_or(1);
    (year, month)
}

fn created(id: &str, p: &domain::Payment) -> CreatePaymentResponse {
    CreatePaymentResponse {
        payment: Some(to_proto(id, p)),
    }
}

/// Answers a request whose idempotency key was seen before: the stored
/// payment when it is the same request, a rejection otherwise.
fn replay(
    existing: &Versioned<domain::Payment>,
    same_request: impl Fn(&domain::Payment) -> bool,
) -> Result<CreatePaymentResponse, Status> {
    if !same_request(&existing.value) {
        return Err(Status::already_exists(
            "idempotency key reused with a different request",
        ));
    }
    platform::metrics::count(&platform::metrics::IDEMPOTENCY_REPLAYS, &["payment-svc"]);
    Ok(created(&existing.id, &existing.value))
}

impl PaymentApi {
    /// `CreatePayment` once the caller is known to be the order saga.
    pub(super) async fn charge(
        &self,
        r: CreatePaymentRequest,
    ) -> Result<CreatePaymentResponse, Status> {
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
        .map_err(invalid)?;
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
            created_at: now().secs(),
            updated_at: now().secs(),
            outbox: Default::default(),
        };
        let inserted = match self.payments.insert(&id, payment).await {
            Ok(inserted) => inserted,
            // Taken: by this attempt before (same key: replay its outcome),
            // or by another attempt that holds the order's charge. The
            // insert comes first because a first attempt is the usual case;
            // the key is looked up only when it collides.
            Err(StoreError::AlreadyExists { index }) => {
                if let Some(existing) = self
                    .payments
                    .find_one(Query::new().eq("idempotency", idempotency.as_str()))
                    .await?
                {
                    return replay(&existing, same_request);
                }
                if index == "idempotency" {
                    return Err(Status::aborted("retry"));
                }
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
        };
        let charge = ChargeRequest {
            key: &id,
            amount: amount.amount,
            currency: &amount.currency,
            card: &card,
        };
        let outcome = match self.provider.charge(charge).await {
            Ok(outcome) => outcome,
            Err(ProviderError::Unavailable(reason)) => {
                tracing::warn!(%reason, payment = %id, "provider did not answer; the payment stays pending for reconciliation");
                return Err(Status::unavailable(
                    "the payment provider did not answer; the payment will be reconciled, retry with the same idempotency key",
                ));
            }
            Err(ProviderError::Rejected(reason)) => {
                let outcome = ChargeOutcome::Declined {
                    code: "processing_error".into(),
                    reason: "The payment could not be processed.".into(),
                };
                tracing::error!(%reason, payment = %id, "provider rejected the charge request");
                outcome
            }
        };
        let settled = self.settle(inserted, &outcome).await?;
        Ok(created(&id, &settled.value))
    }

    /// Records the provider's decision on a pending payment (once), staging
    /// `payment.processed` or `payment.failed`. `known` is the payment as
    /// last read or written: the write starts from it (no read unless
    /// another write came in between).
    async fn settle(
        &self,
        known: Versioned<domain::Payment>,
        outcome: &ChargeOutcome,
    ) -> Result<Versioned<domain::Payment>, Status> {
        let id = known.id.clone();
        let id = id.as_str();
        let settled = self
            .payments
            .modify_from(known, |p| {
                if p.state != PaymentState::Pending {
                    return;
                }
                p.updated_at = now().secs();
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
                p.outbox.stage(&platform::events::event(
                    &p.order_id,
                    "payment-svc",
                    payload,
                ));
            })
            .await?;
        Ok(self.relay.flush_or_defer_written(settled).await)
    }

    /// Asks the provider about payments left pending (their answer was
    /// lost) and records the outcome; a charge the provider never received
    /// fails. Returns how many were settled.
    pub async fn reconcile(&self) -> Result<usize, Status> {
        let cutoff = now().secs() - self.reconcile_after.as_secs() as i64;
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
            let outcome = match self.provider.lookup(&payment.id).await {
                Ok(Some(outcome)) => outcome,
                Ok(None) => ChargeOutcome::Declined {
                    code: "processing_error".into(),
                    reason: "The payment provider never received the charge.".into(),
                },
                Err(err) => {
                    tracing::warn!(error = %err, payment = %payment.id, "reconciliation deferred");
                    continue;
                }
            };
            self.settle(payment.clone(), &outcome).await?;
            settled += 1;
        }
        Ok(settled)
    }
}
