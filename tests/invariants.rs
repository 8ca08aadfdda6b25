//! The saga invariant checker on hand-made snapshots: a consistent state is
//! clean, and each kind of broken state is reported with its ids.

mod common;

use common::invariants::{Baseline, CreateKey, Expect, Snapshot};
use serde_json::{Value, json};

const P: &str = "prod-1";

fn order(user: &str, status: &str, quantity: i64) -> Value {
    json!({"user_id": user, "status": status, "currency": "USD", "total": 500 * quantity,
           "items": [{"product_id": P, "quantity": quantity}], "created_at": 0,
           "outbox": {"count": 0, "events": []}})
}

fn payment(order: &str, user: &str, state: &str, amount: i64, refunded: i64) -> Value {
    let refunds: Vec<Value> = if refunded > 0 {
        vec![json!({"id": "r1", "amount": refunded, "state": "succeeded"})]
    } else {
        vec![]
    };
    json!({"order_id": order, "user_id": user, "state": state, "amount": amount, "currency": "USD", "refunds": refunds})
}

fn notification(user: &str, kind: &str) -> Value {
    json!({"user_id": user, "kind": kind, "title": "t", "body": "b"})
}

/// Three orders of one customer: one paid and labelled, one cancelled
/// before paying, one still waiting for payment.
fn consistent() -> (Snapshot, Expect) {
    let mut s = Snapshot::default();
    s.orders.insert("o-paid".into(), order("u", "PAID", 2));
    s.orders
        .insert("o-cancelled".into(), order("u", "CANCELLED", 1));
    s.orders
        .insert("o-open".into(), order("u", "PENDING_PAYMENT", 3));
    s.products.insert(
        P.into(),
        json!({"stock_available": 95, "stock_reserved": 3, "reservations": {"o-open": 3}}),
    );
    for (id, state, q) in [
        ("o-paid", "committed", 2),
        ("o-cancelled", "released", 1),
        ("o-open", "active", 3),
    ] {
        s.reservations
            .insert(id.into(), json!({"lines": [[P, q]], "state": state}));
    }
    s.payments
        .push(("pay-1".into(), payment("o-paid", "u", "succeeded", 1000, 0)));
    s.shipments.push((
        "s-1".into(),
        json!({"order_id": "o-paid", "status": "LABEL_CREATED"}),
    ));
    s.shipments.push((
        "s-2".into(),
        json!({"order_id": "o-cancelled", "status": "CANCELLED"}),
    ));
    for (i, kind) in [
        "order.created",
        "order.created",
        "order.created",
        "payment.processed",
    ]
    .iter()
    .enumerate()
    {
        s.notifications
            .push((format!("n{i}"), notification("u", kind)));
    }
    let expect = Expect {
        baseline: Baseline {
            stock: [(P.to_string(), 100)].into_iter().collect(),
        },
        creates: ["o-paid", "o-cancelled", "o-open"]
            .iter()
            .map(|id| CreateKey {
                user_id: "u".into(),
                key: format!("k-{id}"),
                order_ids: [id.to_string()].into_iter().collect(),
                outcome_known: true,
            })
            .collect(),
        payment_timeout: None,
        notifications: true,
    };
    (s, expect)
}

fn rules(s: &Snapshot, expect: &Expect) -> Vec<(&'static str, String)> {
    s.check(expect)
        .into_iter()
        .map(|v| (v.rule, v.detail))
        .collect()
}

#[test]
fn a_consistent_state_is_clean() {
    let (s, expect) = consistent();
    assert_eq!(rules(&s, &expect), vec![]);
}

#[test]
fn a_cancelled_order_with_an_unrefunded_capture_is_reported() {
    let (mut s, expect) = consistent();
    s.payments.push((
        "pay-2".into(),
        payment("o-cancelled", "u", "succeeded", 500, 0),
    ));
    s.notifications
        .push(("n9".into(), notification("u", "payment.processed")));
    let found = rules(&s, &expect);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "captured - refunded = sold");
    assert!(
        found[0].1.contains("o-cancelled") && found[0].1.contains("pay-2"),
        "{found:?}"
    );
}

#[test]
fn two_captures_of_one_order_are_reported() {
    let (mut s, expect) = consistent();
    s.payments.push((
        "pay-2".into(),
        payment("o-paid", "u", "refunded", 1000, 1000),
    ));
    s.notifications
        .push(("n9".into(), notification("u", "payment.processed")));
    s.notifications
        .push(("n10".into(), notification("u", "payment.refunded")));
    let found = rules(&s, &expect);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "at most one capture per order");
    assert!(found[0].1.contains("pay-1") && found[0].1.contains("pay-2"));
}

#[test]
fn lost_or_doubled_stock_is_reported_per_product() {
    let (mut s, expect) = consistent();
    s.products.get_mut(P).unwrap()["stock_available"] = json!(94);
    let found = rules(&s, &expect);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "stock conserved");
    assert!(found[0].1.contains("off by -1"), "{found:?}");
}

#[test]
fn units_held_for_a_cancelled_order_are_reported() {
    let (mut s, expect) = consistent();
    let product = s.products.get_mut(P).unwrap();
    product["stock_available"] = json!(94);
    product["stock_reserved"] = json!(4);
    product["reservations"]["o-cancelled"] = json!(1);
    s.reservations.get_mut("o-cancelled").unwrap()["state"] = json!("active");
    let found = rules(&s, &expect);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(
        |(rule, detail)| *rule == "no reservation without a live order"
            && detail.contains("o-cancelled")
    ));
}

#[test]
fn a_label_for_a_refunded_order_and_a_paid_order_without_one_are_reported() {
    let (mut s, expect) = consistent();
    s.shipments[1].1["status"] = json!("LABEL_CREATED");
    s.shipments[0].1["status"] = json!("CANCELLED");
    let found = rules(&s, &expect);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        found[0].0,
        "nothing ships for an unpaid, cancelled or refunded order"
    );
    assert!(found[0].1.contains("o-cancelled") && found[0].1.contains("s-2"));
    assert_eq!(found[1].0, "one shipment per paid order");
    assert!(found[1].1.contains("o-paid"));
}

#[test]
fn an_orphan_order_of_a_retried_key_is_reported() {
    let (mut s, expect) = consistent();
    s.orders
        .insert("o-orphan".into(), order("u", "CANCELLED", 1));
    s.reservations.insert(
        "o-orphan".into(),
        json!({"lines": [[P, 1]], "state": "released"}),
    );
    s.notifications
        .push(("n9".into(), notification("u", "order.created")));
    let found = rules(&s, &expect);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "one order per idempotency key");
    assert!(found[0].1.contains("o-orphan"));
}

#[test]
fn duplicate_and_missing_notifications_are_reported() {
    let (mut s, expect) = consistent();
    s.notifications[3].1["kind"] = json!("order.created");
    let found = rules(&s, &expect);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].0, "no duplicate notification");
    assert_eq!(found[1].0, "no missing notification");
}

#[test]
fn work_in_flight_is_marked_so_settling_waits_for_it() {
    let (mut s, expect) = consistent();
    s.orders.get_mut("o-open").unwrap()["steps"] =
        json!({"count": 1, "items": [{"kind": "release"}]});
    s.reservations.get_mut("o-cancelled").unwrap()["state"] = json!("releasing");
    let violations = s.check(&expect);
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(violations.iter().all(|v| v.in_flight), "{violations:?}");
}

#[test]
fn with_a_payment_timeout_unpaid_orders_must_expire() {
    let (mut s, mut expect) = consistent();
    expect.payment_timeout = Some(std::time::Duration::from_secs(1));
    // created_at 0: long past its deadline.
    let found = s.check(&expect);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].rule, "unpaid orders expire");
    assert!(found[0].detail.contains("o-open") && found[0].detail.contains("should have expired"));
    // Its own deadline, not yet reached: still in flight.
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 60_000;
    s.orders.get_mut("o-open").unwrap()["expires_at"] = json!(soon);
    let found = s.check(&expect);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].in_flight && found[0].detail.contains("expires in"),
        "{found:?}"
    );
}
