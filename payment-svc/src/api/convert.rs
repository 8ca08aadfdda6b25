//! Domain payments and refunds as their proto messages.

use proto::payment::{Payment, PaymentStatus};

use crate::domain::{self, PaymentState, RefundState};

pub(super) fn timestamp(secs: i64) -> Option<prost_types::Timestamp> {
    Some(proto::ext::from_secs(secs))
}

pub(super) fn money(amount: i64, currency: &str) -> Option<proto::common::Money> {
    Some(proto::common::Money::new(amount, currency))
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

pub(super) fn refund_to_proto(
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
