//! Orders as proto messages: the API's answers and the events' lines.

use proto::order::{OrderItem, OrderStatus};

use crate::domain::{Order, OrderStatus as S};

pub fn money(amount: i64, currency: &str) -> Option<proto::common::Money> {
    Some(proto::common::Money::new(amount, currency))
}

pub fn status_to_proto(s: S) -> OrderStatus {
    match s {
        S::PendingPayment => OrderStatus::PendingPayment,
        S::Paid => OrderStatus::Paid,
        S::PaymentFailed => OrderStatus::PaymentFailed,
        S::Shipped => OrderStatus::Shipped,
        S::Delivered => OrderStatus::Delivered,
        S::Cancelled => OrderStatus::Cancelled,
        S::Refunded => OrderStatus::Refunded,
    }
}

pub fn to_proto(id: &str, o: &Order) -> proto::order::Order {
    proto::order::Order {
        id: id.to_string(),
        user_id: o.user_id.clone(),
        status: status_to_proto(o.status) as i32,
        items: o
            .items
            .iter()
            .map(|i| OrderItem {
                product_id: i.product_id.clone(),
                name: i.name.clone(),
                sku: i.sku.clone(),
                unit_price: money(i.unit_price, &o.currency),
                quantity: i.quantity as u32,
                line_total: money(i.line_total, &o.currency),
            })
            .collect(),
        total: money(o.total, &o.currency),
        shipping_address: Some(proto::common::Address::from(&o.shipping_address)),
        notes: o.notes.clone(),
        payment_id: o.payment_id.clone(),
        cancel_reason: o.cancel_reason.clone(),
        created_at: Some(proto::ext::from_millis(o.created_at)),
        updated_at: Some(proto::ext::from_millis(o.updated_at)),
    }
}

pub fn lines_of(o: &Order) -> Vec<proto::events::OrderLine> {
    o.items
        .iter()
        .map(|i| proto::events::OrderLine {
            product_id: i.product_id.clone(),
            sku: i.sku.clone(),
            name: i.name.clone(),
            quantity: i.quantity as u32,
            unit_price: money(i.unit_price, &o.currency),
            line_total: money(i.line_total, &o.currency),
            weight_grams: i.weight_grams,
            category: i.category.clone(),
        })
        .collect()
}
