//! Orders and payments through the gateway: the saga end to end.

mod common;

use common::{TestMesh, address, assert_problem, card};
use serde_json::{Value, json};

const ADMIN: &[(&str, &str)] = &[
    ("ADMIN_EMAIL", "admin@example.com"),
    ("ADMIN_PASSWORD", "admin-password"),
];

async fn product(t: &TestMesh, q: &str) -> Value {
    let r = t.get(&format!("/api/v1/products?q={q}"), None).await;
    r.body["items"][0].clone()
}

#[tokio::test]
async fn order_then_pay_then_paid() {
    let t = TestMesh::start().await;
    let (user_id, token, _) = t.customer().await;
    let mug = product(&t, "mug").await;
    let lamp = product(&t, "lamp").await;
    let order = t.post("/api/v1/orders", Some(&token), json!({"items": [{"product_id": mug["id"], "quantity": 2}, {"product_id": lamp["id"], "quantity": 1}], "shipping_address": address()})).await;
    assert_eq!(order.status, 201, "{}", order.body);
    assert_eq!(order.body["status"], "PENDING_PAYMENT");
    assert_eq!(order.body["user_id"], user_id.as_str());
    let expected =
        mug["price"]["amount"].as_i64().unwrap() * 2 + lamp["price"]["amount"].as_i64().unwrap();
    assert_eq!(
        order.body["total"]["amount"], expected,
        "prices come from the catalog"
    );
    assert_eq!(order.body["items"][0]["unit_price"], mug["price"]);
    let mug_after = t
        .get(
            &format!("/api/v1/products/{}", mug["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        mug_after.body["stock_available"],
        mug["stock_available"].as_i64().unwrap() - 2,
        "stock reserved"
    );

    let id = order.body["id"].as_str().unwrap();
    let paid = t
        .post(
            &format!("/api/v1/orders/{id}/payment"),
            Some(&token),
            card("4242424242424242"),
        )
        .await;
    assert_eq!(paid.status, 201, "{}", paid.body);
    assert_eq!(paid.body["status"], "SUCCEEDED");
    assert_eq!(paid.body["amount"]["amount"], expected);
    assert_eq!(paid.body["card_last4"], "4242");
    assert_eq!(
        t.get(&format!("/api/v1/orders/{id}"), Some(&token))
            .await
            .body["status"],
        "PAID"
    );
    assert_problem(
        &t.post(
            &format!("/api/v1/orders/{id}/payment"),
            Some(&token),
            card("4242424242424242"),
        )
        .await,
        409,
    );

    let payments = t.get("/api/v1/payments", Some(&token)).await;
    assert_eq!(payments.body["items"].as_array().unwrap().len(), 1);
    let payment_id = paid.body["id"].as_str().unwrap();
    assert_eq!(
        t.get(&format!("/api/v1/payments/{payment_id}"), Some(&token))
            .await
            .body["order_id"],
        id
    );
    let (_, stranger, _) = t.customer().await;
    assert_problem(
        &t.get(&format!("/api/v1/payments/{payment_id}"), Some(&stranger))
            .await,
        404,
    );
    t.shutdown().await;
}

#[tokio::test]
async fn a_declined_card_can_be_retried_with_another() {
    let t = TestMesh::start().await;
    let (_, token, _) = t.customer().await;
    let mug = product(&t, "mug").await;
    let order = t.post("/api/v1/orders", Some(&token), json!({"items": [{"product_id": mug["id"], "quantity": 1}], "shipping_address": address()})).await;
    let id = order.body["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/orders/{id}/payment");
    let declined = t.post(&path, Some(&token), card("4000000000000002")).await;
    assert_eq!(declined.status, 201, "{}", declined.body);
    assert_eq!(declined.body["status"], "FAILED");
    assert!(
        declined.body["failure_reason"]
            .as_str()
            .unwrap()
            .contains("declined")
    );
    assert_eq!(
        t.get(&format!("/api/v1/orders/{id}"), Some(&token))
            .await
            .body["status"],
        "PAYMENT_FAILED"
    );
    let broke = t.post(&path, Some(&token), card("4000000000009995")).await;
    assert_eq!(broke.body["status"], "FAILED");
    assert!(
        broke.body["failure_reason"]
            .as_str()
            .unwrap()
            .contains("insufficient")
    );
    let bad = t.post(&path, Some(&token), card("4242424242424241")).await;
    assert_problem(&bad, 422);
    assert_eq!(bad.body["errors"][0]["field"], "card.number");
    let ok = t.post(&path, Some(&token), card("4242424242424242")).await;
    assert_eq!(ok.body["status"], "SUCCEEDED");
    assert_eq!(
        t.get(&format!("/api/v1/orders/{id}"), Some(&token))
            .await
            .body["status"],
        "PAID"
    );
    t.shutdown().await;
}

#[tokio::test]
async fn bad_orders_are_refused_with_the_contract_statuses() {
    let t = TestMesh::start().await;
    let (_, token, _) = t.customer().await;
    let mug = product(&t, "mug").await;
    let crab = product(&t, "crab").await; // out of stock in the demo catalog
    assert_problem(
        &t.post(
            "/api/v1/orders",
            None,
            json!({"items": [], "shipping_address": address()}),
        )
        .await,
        401,
    );
    let empty = t
        .post(
            "/api/v1/orders",
            Some(&token),
            json!({"items": [], "shipping_address": address()}),
        )
        .await;
    assert_problem(&empty, 422);
    assert_eq!(empty.body["errors"][0]["field"], "items");
    let zero = t.post("/api/v1/orders", Some(&token), json!({"items": [{"product_id": mug["id"], "quantity": 0}], "shipping_address": address()})).await;
    assert_problem(&zero, 422);
    let unknown = t.post("/api/v1/orders", Some(&token), json!({"items": [{"product_id": uuid::Uuid::now_v7().to_string(), "quantity": 1}], "shipping_address": address()})).await;
    assert_problem(&unknown, 422);
    assert_eq!(unknown.body["errors"][0]["field"], "items[0].product_id");
    // An unknown product is refused as such even beside a line that has no
    // stock: the request is wrong whatever the stock.
    let both = t.post("/api/v1/orders", Some(&token), json!({"items": [{"product_id": crab["id"], "quantity": 1}, {"product_id": uuid::Uuid::now_v7().to_string(), "quantity": 1}], "shipping_address": address()})).await;
    assert_problem(&both, 422);
    assert_eq!(both.body["errors"][0]["field"], "items[1].product_id");
    // Each product once: two lines of one product would each pass the
    // per-line cap.
    let twice = t.post("/api/v1/orders", Some(&token), json!({"items": [{"product_id": mug["id"], "quantity": 1}, {"product_id": mug["id"], "quantity": 1}], "shipping_address": address()})).await;
    assert_problem(&twice, 422);
    assert_eq!(twice.body["errors"][0]["field"], "items[1].product_id");
    let no_stock = t.post("/api/v1/orders", Some(&token), json!({"items": [{"product_id": crab["id"], "quantity": 1}], "shipping_address": address()})).await;
    assert_problem(&no_stock, 409);
    let bad_address = t.post("/api/v1/orders", Some(&token), json!({"items": [{"product_id": mug["id"], "quantity": 1}], "shipping_address": {"name": "A", "line1": "x", "city": "y", "postal_code": "1", "country": "USA"}})).await;
    assert_problem(&bad_address, 422);
    assert_problem(
        &t.get(
            &format!("/api/v1/orders/{}", uuid::Uuid::now_v7()),
            Some(&token),
        )
        .await,
        404,
    );
    t.shutdown().await;
}

#[tokio::test]
async fn idempotency_keys_replay_and_guard_against_other_bodies() {
    let t = TestMesh::start().await;
    let (_, token, _) = t.customer().await;
    let mug = product(&t, "mug").await;
    let before = mug["stock_available"].as_i64().unwrap();
    let body =
        json!({"items": [{"product_id": mug["id"], "quantity": 1}], "shipping_address": address()});
    let key = uuid::Uuid::now_v7().to_string();
    let calls = (0..20).map(|_| t.post_keyed("/api/v1/orders", &token, &key, body.clone()));
    let replies = futures::future::join_all(calls).await;
    for r in &replies {
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(
            r.body, replies[0].body,
            "every duplicate gets the first response"
        );
    }
    let listed = t.get("/api/v1/orders", Some(&token)).await;
    assert_eq!(
        listed.body["items"].as_array().unwrap().len(),
        1,
        "exactly one order"
    );
    let mug_after = t
        .get(
            &format!("/api/v1/products/{}", mug["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        mug_after.body["stock_available"],
        before - 1,
        "and one reservation"
    );

    let mut other = body.clone();
    other["items"][0]["quantity"] = json!(2);
    assert_problem(
        &t.post_keyed("/api/v1/orders", &token, &key, other).await,
        409,
    );
    // Keys are scoped per user.
    let (_, someone, _) = t.customer().await;
    assert_eq!(
        t.post_keyed("/api/v1/orders", &someone, &key, body)
            .await
            .status,
        201
    );

    let id = replies[0].body["id"].as_str().unwrap();
    let pay_key = uuid::Uuid::now_v7().to_string();
    let first = t
        .post_keyed(
            &format!("/api/v1/orders/{id}/payment"),
            &token,
            &pay_key,
            card("4242424242424242"),
        )
        .await;
    let again = t
        .post_keyed(
            &format!("/api/v1/orders/{id}/payment"),
            &token,
            &pay_key,
            card("4242424242424242"),
        )
        .await;
    assert_eq!((first.status, again.status), (201, 201));
    assert_eq!(first.body["id"], again.body["id"], "one charge");
    assert_problem(
        &t.post_keyed(
            &format!("/api/v1/orders/{id}/payment"),
            &token,
            &pay_key,
            card("5555555555554444"),
        )
        .await,
        409,
    );
    t.shutdown().await;
}

#[tokio::test]
async fn cancelling_releases_or_refunds() {
    let t = TestMesh::start_with(ADMIN).await;
    let (_, token, _) = t.customer().await;
    let kettle = product(&t, "kettle").await;
    let kid = kettle["id"].as_str().unwrap().to_string();
    let stock = |r: common::Reply| r.body["stock_available"].as_i64().unwrap();
    let before = stock(t.get(&format!("/api/v1/products/{kid}"), None).await);
    let new_order = || {
        t.post(
            "/api/v1/orders",
            Some(&token),
            json!({"items": [{"product_id": kid, "quantity": 2}], "shipping_address": address()}),
        )
    };

    let unpaid = new_order().await;
    let uid = unpaid.body["id"].as_str().unwrap();
    let cancelled = t
        .post(
            &format!("/api/v1/orders/{uid}/cancel"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "CANCELLED");
    assert_eq!(
        stock(t.get(&format!("/api/v1/products/{kid}"), None).await),
        before,
        "stock released"
    );
    assert_problem(
        &t.post(
            &format!("/api/v1/orders/{uid}/payment"),
            Some(&token),
            card("4242424242424242"),
        )
        .await,
        409,
    );

    let paid = new_order().await;
    let pid = paid.body["id"].as_str().unwrap();
    let payment = t
        .post(
            &format!("/api/v1/orders/{pid}/payment"),
            Some(&token),
            card("4242424242424242"),
        )
        .await;
    assert_eq!(
        stock(t.get(&format!("/api/v1/products/{kid}"), None).await),
        before - 2,
        "sold"
    );
    let refunded = t
        .post(
            &format!("/api/v1/orders/{pid}/cancel"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(refunded.body["status"], "REFUNDED", "{}", refunded.body);
    assert_eq!(
        stock(t.get(&format!("/api/v1/products/{kid}"), None).await),
        before,
        "restocked"
    );
    let payment_id = payment.body["id"].as_str().unwrap();
    assert_eq!(
        t.get(&format!("/api/v1/payments/{payment_id}"), Some(&token))
            .await
            .body["status"],
        "REFUNDED"
    );
    let again = t
        .post(
            &format!("/api/v1/orders/{pid}/cancel"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(
        again.body["status"], "REFUNDED",
        "cancelling twice changes nothing"
    );
    assert_eq!(
        stock(t.get(&format!("/api/v1/products/{kid}"), None).await),
        before
    );
    t.shutdown().await;
}

#[tokio::test]
async fn refunds_are_admin_only_and_never_exceed_the_payment() {
    let t = TestMesh::start_with(ADMIN).await;
    let admin = t.login("admin@example.com", "admin-password").await.0;
    let (user_id, token, _) = t.customer().await;
    let mug = product(&t, "mug").await;
    let order = t.post("/api/v1/orders", Some(&token), json!({"items": [{"product_id": mug["id"], "quantity": 1}], "shipping_address": address()})).await;
    let oid = order.body["id"].as_str().unwrap();
    let payment = t
        .post(
            &format!("/api/v1/orders/{oid}/payment"),
            Some(&token),
            card("4242424242424242"),
        )
        .await;
    let pid = payment.body["id"].as_str().unwrap();
    let total = payment.body["amount"]["amount"].as_i64().unwrap();
    let path = format!("/api/v1/payments/{pid}/refund");

    assert_problem(
        &t.post(&path, Some(&token), json!({"reason": "please"}))
            .await,
        403,
    );
    let key = uuid::Uuid::now_v7().to_string();
    let part = json!({"amount": {"amount": 100, "currency": "USD"}, "reason": "scratched"});
    let first = t.post_keyed(&path, &admin, &key, part.clone()).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.body["status"], "SUCCEEDED");
    let replay = t.post_keyed(&path, &admin, &key, part).await;
    assert_eq!(
        replay.body["id"], first.body["id"],
        "the same key refunds once"
    );
    let over = t
        .post(
            &path,
            Some(&admin),
            json!({"amount": {"amount": total, "currency": "USD"}, "reason": "too much"}),
        )
        .await;
    assert_problem(&over, 409);
    let rest = t
        .post(&path, Some(&admin), json!({"reason": "the rest"}))
        .await;
    assert_eq!(rest.body["amount"]["amount"], total - 100);
    assert_problem(
        &t.post(&path, Some(&admin), json!({"reason": "nothing left"}))
            .await,
        409,
    );
    let status = t
        .get(&format!("/api/v1/payments/{pid}"), Some(&admin))
        .await;
    assert_eq!(status.body["status"], "REFUNDED");
    assert_eq!(status.body["refunded_amount"]["amount"], total);

    let mine = t
        .get(&format!("/api/v1/orders?user_id={user_id}"), Some(&admin))
        .await;
    assert_eq!(
        mine.body["items"].as_array().unwrap().len(),
        1,
        "admins filter by user"
    );
    assert_problem(
        &t.get(
            &format!("/api/v1/orders?user_id={}", uuid::Uuid::now_v7()),
            Some(&token),
        )
        .await,
        403,
    );
    assert_eq!(t.get("/api/v1/orders", Some(&admin)).await.status, 200);
    t.shutdown().await;
}

#[tokio::test]
async fn duplicate_payment_events_change_nothing() {
    use proto::events::envelope::Payload;
    let t = TestMesh::start().await;
    let (user_id, token, _) = t.customer().await;
    let lamp = product(&t, "lamp").await;
    let lid = lamp["id"].as_str().unwrap().to_string();
    let order = t
        .post(
            "/api/v1/orders",
            Some(&token),
            json!({"items": [{"product_id": lid, "quantity": 1}], "shipping_address": address()}),
        )
        .await;
    let oid = order.body["id"].as_str().unwrap().to_string();
    let payment = t
        .post(
            &format!("/api/v1/orders/{oid}/payment"),
            Some(&token),
            card("4242424242424242"),
        )
        .await;
    let stock_after_sale =
        t.get(&format!("/api/v1/products/{lid}"), None).await.body["stock_available"].clone();

    let bus = t.mesh.bus();
    let processed = Payload::PaymentProcessed(proto::events::PaymentProcessed {
        payment_id: payment.body["id"].as_str().unwrap().into(),
        order_id: oid.clone(),
        user_id: user_id.clone(),
        ..Default::default()
    });
    let failed = Payload::PaymentFailed(proto::events::PaymentFailed {
        order_id: oid.clone(),
        user_id,
        ..Default::default()
    });
    let signed = |e| t.mesh.signed(&e).unwrap();
    let e1 = platform::events::envelope("payment.processed", &oid, "test", processed);
    bus.publish(&signed(e1.clone())).await.unwrap();
    let mut e2 = e1.clone();
    e2.id = uuid::Uuid::now_v7().to_string();
    bus.publish(&signed(e2)).await.unwrap();
    let late_failure = platform::events::envelope("payment.failed", &oid, "test", failed);
    bus.publish(&signed(late_failure)).await.unwrap();
    // Sentinel: a cancel goes through the same service; once it answers, the
    // events above have had their chance (and we check the state stayed).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let o = t.get(&format!("/api/v1/orders/{oid}"), Some(&token)).await;
        assert_eq!(
            o.body["status"], "PAID",
            "duplicates and late failures change nothing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        t.get(&format!("/api/v1/products/{lid}"), None).await.body["stock_available"],
        stock_after_sale
    );
    t.shutdown().await;
}
