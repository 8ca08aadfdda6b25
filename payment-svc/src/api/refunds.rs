//! Refunds: staged on the payment (reserving their amount), sent to the
//! provider, then settled with `payment.refunded`.

use platform::error::invalid_fields;
use proto::events::envelope::Payload;
use proto::payment::{ProcessRefundRequest, ProcessRefundResponse};
use tonic::Status;

use super::convert::{money, refund_to_proto, to_proto};
use super::{PaymentApi, lookup_err, now};
use crate::domain::{self, RefundError, RefundState};

/// Whether a refund stored with `stored` is the one asked for with `key`.
/// Refunds staged before admins' keys got their prefix were stored with
/// the bare key; order-svc's own keys (`cancel:…`) never match an admin's.
fn same_key(stored: &str, key: &str) -> bool {
    stored == key
        || key
            .strip_prefix(super::ADMIN_KEYS)
            .is_some_and(|bare| stored == bare && !stored.starts_with("cancel:"))
}

/// The response for the refund with idempotency `key` on payment `id`.
fn refund_response(id: &str, p: &domain::Payment, key: &str) -> ProcessRefundResponse {
    let refund = p
        .refunds
        .iter()
        .find(|x| same_key(&x.key, key))
        .expect("the refund is kept on its payment");
    ProcessRefundResponse {
        refund: Some(refund_to_proto(id, p, refund)),
        payment: Some(to_proto(id, p)),
    }
}

impl PaymentApi {
    /// `ProcessRefund` once the caller is known to be allowed to refund.
    pub(super) async fn refund(
        &self,
        r: ProcessRefundRequest,
    ) -> Result<ProcessRefundResponse, Status> {
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
            .update_from(current, |p| {
                if let Some(existing) = p.refunds.iter_mut().find(|x| same_key(&x.key, &key)) {
                    if requested.is_some_and(|a| a != existing.amount) {
                        return Err(Status::already_exists(
                            "idempotency key reused with a different refund",
                        ));
                    }
                    if existing.state == RefundState::Failed {
                        // A retry of a refund that failed: try again if it still fits.
                        let amount = existing.amount;
                        p.refundable(Some(amount)).map_err(refund_status)?;
                        if let Some(again) = p.refunds.iter_mut().find(|x| same_key(&x.key, &key)) {
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
                    created_at: now().secs(),
                });
                p.updated_at = now().secs();
                Ok(())
            })
            .await
            .map_err(lookup_err)??;
        let refund = staged
            .value
            .refunds
            .iter()
            .find(|x| same_key(&x.key, &key))
            .cloned()
            .expect("staged above");
        if refund.state == RefundState::Succeeded {
            return Ok(refund_response(&id, &staged.value, &key));
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
            .modify_from(staged, |p| {
                let Some(x) = p.refunds.iter_mut().find(|x| same_key(&x.key, &key)) else {
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
                        p.outbox.stage(&platform::events::event(
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
                p.updated_at = now().secs();
            })
            .await?;
        let settled = self.relay.flush_or_defer_written(settled).await;
        if let Err(err) = result {
            return Err(Status::unavailable(format!(
                "the refund did not go through ({err}); retry with the same idempotency key"
            )));
        }
        Ok(refund_response(&id, &settled.value, &key))
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

#[cfg(test)]
mod tests {
    use super::same_key;

    #[test]
    fn admins_keys_match_their_own_refunds_only() {
        assert!(same_key("admin:k1", "admin:k1"));
        assert!(same_key("cancel:o1", "cancel:o1"), "order-svc's own");
        assert!(same_key("k1", "admin:k1"), "staged before the prefix");
        assert!(
            !same_key("cancel:o1", "admin:cancel:o1"),
            "never order-svc's"
        );
        assert!(!same_key("admin:k1", "k1"));
        assert!(!same_key("k2", "admin:k1"));
    }
}
