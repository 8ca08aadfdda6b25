//! The order saga's rules through the gateway (embedded backends): unpaid
//! orders expire, caps on what one customer may hold, cancel of a paid order
//! voids its shipment first, carrier news for a voided shipment is kept but
//! not applied, and replays answer what the first request answered.

mod common;

use common::{
    TestMesh, WEBHOOK_SECRET, address, assert_problem, card, eventually, signed, webhook,
};
use serde_json::json;

const ADMIN: (&str, &str) = ("ADMIN_EMAIL", "admin@example.com");
const ADMIN_PASSWORD: (&str, &str) = ("ADMIN_PASSWORD", "admin-password");

async fn product_id(t: &TestMesh, q: &str) -> String {
    let r = t.get(&format!("/api/v1/products?q={q}"), None).await;
    r.body["items"][0]["id"].as_str().unwrap().to_string()
}

async fn stock(t: &TestMesh, id: &str) -> i64 {
    t.get(&format!("/api/v1/products/{id}"), None).await.body["stock_available"]
        .as_i64()
        .unwrap()
}

/// Orders `quantity` of `product`, pays, and waits for the label: (order
/// id, shipment path, the labelled shipment).
async fn paid_and_labelled(
    t: &TestMesh,
    token: &str,
    product: &str,
    quantity: u32,
) -> (String, String, serde_json::Value) {
    let oid = t.order(token, &json!(product), quantity).await;
    assert_eq!(
        t.pay(token, &oid, "4242424242424242").await["status"],
        "SUCCEEDED"
    );
    let shipment_path = format!("/api/v1/orders/{oid}/shipment");
    let labelled = eventually(t, &shipment_path, token, "a label", |b| {
        b["status"] == "LABEL_CREATED"
    })
    .await;
    (oid, shipment_path, labelled)
}

#[tokio::test]
async fn an_unpaid_order_expires_its_stock_comes_back_and_the_customer_is_told() {
    let t = TestMesh::start_with(&[
        ("ORDER_PAYMENT_TIMEOUT", "1s"),
        ("SAGA_SWEEP_INTERVAL_MS", "100"),
    ])
    .await;
    let (_, token, _) = t.customer().await;
    let mug = product_id(&t, "mug").await;
    let before = stock(&t, &mug).await;
    let oid = t.order(&token, &json!(mug), 3).await;
    assert_eq!(stock(&t, &mug).await, before - 3, "held while unpaid");
    let order = eventually(
        &t,
        &format!("/api/v1/orders/{oid}"),
        &token,
        "expiry",
        |b| b["status"] == "CANCELLED",
    )
    .await;
    assert_eq!(order["cancellation_reason"], "payment_timeout");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while stock(&t, &mug).await != before {
        assert!(
            std::time::Instant::now() < deadline,
            "stock never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let feed = eventually(&t, "/api/v1/notifications", &token, "a notification", |b| {
        b["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|n| n["kind"] == "order.cancelled"))
    })
    .await;
    let told = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "order.cancelled")
        .unwrap()
        .clone();
    assert!(
        told["body"].as_str().unwrap().contains("not paid in time"),
        "{told}"
    );
    // A payment after the deadline is refused; nothing is charged.
    let late = t
        .post(
            &format!("/api/v1/orders/{oid}/payment"),
            Some(&token),
            card("4242424242424242"),
        )
        .await;
    assert_problem(&late, 409);
    let payments = t.get("/api/v1/payments", Some(&token)).await;
    assert_eq!(
        payments.body["items"].as_array().unwrap().len(),
        0,
        "{}",
        payments.body
    );
    t.shutdown().await;
}

#[tokio::test]
async fn one_customer_cannot_hold_the_catalogue() {
    let t = TestMesh::start_with(&[
        ("ORDER_MAX_UNPAID_PER_CUSTOMER", "2"),
        ("ORDER_MAX_UNITS_PER_LINE", "5"),
    ])
    .await;
    let (_, token, _) = t.customer().await;
    let mug = product_id(&t, "mug").await;
    let too_many = t
        .post(
            "/api/v1/orders",
            Some(&token),
            json!({"items": [{"product_id": mug, "quantity": 6}], "shipping_address": address()}),
        )
        .await;
    assert_problem(&too_many, 422);
    assert_eq!(too_many.body["errors"][0]["field"], "items[0].quantity");
    let first = t.order(&token, &json!(mug), 5).await;
    t.order(&token, &json!(mug), 1).await;
    let third = t
        .post(
            "/api/v1/orders",
            Some(&token),
            json!({"items": [{"product_id": mug, "quantity": 1}], "shipping_address": address()}),
        )
        .await;
    assert_problem(&third, 409);
    assert!(
        third.body["detail"]
            .as_str()
            .unwrap()
            .contains("await payment")
    );
    // Paying one frees a place, and so does cancelling one; other
    // customers were never limited.
    let paid = t.pay(&token, &first, "4242424242424242").await;
    assert_eq!(paid["status"], "SUCCEEDED", "{paid}");
    let second = t.order(&token, &json!(mug), 1).await;
    let full = t
        .post(
            "/api/v1/orders",
            Some(&token),
            json!({"items": [{"product_id": mug, "quantity": 1}], "shipping_address": address()}),
        )
        .await;
    assert_problem(&full, 409);
    let cancelled = t
        .post(
            &format!("/api/v1/orders/{second}/cancel"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    t.order(&token, &json!(mug), 1).await;
    let (_, other, _) = t.customer().await;
    t.order(&other, &json!(mug), 1).await;
    t.shutdown().await;
}

#[tokio::test]
async fn cancelling_a_paid_order_voids_its_shipment_and_late_carrier_news_is_only_recorded() {
    let t = TestMesh::start_with(&[("SHIPPING_WEBHOOK_SECRET", WEBHOOK_SECRET)]).await;
    let (_, token, _) = t.customer().await;
    let mug = product_id(&t, "mug").await;
    let before = stock(&t, &mug).await;
    let (oid, shipment_path, labelled) = paid_and_labelled(&t, &token, &mug, 2).await;
    let cancelled = t
        .post(
            &format!("/api/v1/orders/{oid}/cancel"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "REFUNDED");
    assert_eq!(cancelled.body["cancellation_reason"], "customer");
    eventually(&t, &shipment_path, &token, "a void", |b| {
        b["status"] == "CANCELLED"
    })
    .await;
    // The carrier scans the parcel after all: kept for people, not applied.
    let scan = json!({"tracking_number": labelled["tracking_number"], "status": "IN_TRANSIT", "location": "Depot"});
    let r = webhook(&t, &scan, signed(&scan)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let shipment = t.get(&shipment_path, Some(&token)).await;
    assert_eq!(shipment.body["status"], "CANCELLED", "{}", shipment.body);
    let order = t.get(&format!("/api/v1/orders/{oid}"), Some(&token)).await;
    assert_eq!(order.body["status"], "REFUNDED");
    let payments = t.get("/api/v1/payments", Some(&token)).await;
    assert_eq!(
        payments.body["items"][0]["status"], "REFUNDED",
        "{}",
        payments.body
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while stock(&t, &mug).await != before {
        assert!(
            std::time::Instant::now() < deadline,
            "stock never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    t.shutdown().await;
}

#[tokio::test]
async fn a_paid_order_cannot_be_cancelled_once_the_carrier_has_it() {
    let t = TestMesh::start_with(&[("SHIPPING_WEBHOOK_SECRET", WEBHOOK_SECRET)]).await;
    let (_, token, _) = t.customer().await;
    let mug = product_id(&t, "mug").await;
    let (oid, _, labelled) = paid_and_labelled(&t, &token, &mug, 1).await;
    let scan = json!({"tracking_number": labelled["tracking_number"], "status": "IN_TRANSIT"});
    assert_eq!(webhook(&t, &scan, signed(&scan)).await.status, 200);
    let refused = t
        .post(
            &format!("/api/v1/orders/{oid}/cancel"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_problem(&refused, 409);
    let payments = t.get("/api/v1/payments", Some(&token)).await;
    assert_eq!(
        payments.body["items"][0]["status"], "SUCCEEDED",
        "nothing refunded"
    );
    eventually(
        &t,
        &format!("/api/v1/orders/{oid}"),
        &token,
        "shipped",
        |b| b["status"] == "SHIPPED",
    )
    .await;
    t.shutdown().await;
}

#[tokio::test]
async fn a_payment_replay_answers_the_first_response_after_a_refund() {
    let t = TestMesh::start_with(&[ADMIN, ADMIN_PASSWORD]).await;
    let (_, token, _) = t.customer().await;
    let mug = product_id(&t, "mug").await;
    let oid = t.order(&token, &json!(mug), 1).await;
    let key = uuid::Uuid::now_v7().to_string();
    let path = format!("/api/v1/orders/{oid}/payment");
    let first = t
        .post_keyed(&path, &token, &key, card("4242424242424242"))
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let cancelled = t
        .post(
            &format!("/api/v1/orders/{oid}/cancel"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.body["status"], "REFUNDED", "{}", cancelled.body);
    let again = t
        .post_keyed(&path, &token, &key, card("4242424242424242"))
        .await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.body["id"], first.body["id"], "the same payment");
    // A new key is a new request, refused for a refunded order.
    let fresh = t
        .post_keyed(&path, &token, "another-key", card("4242424242424242"))
        .await;
    assert_problem(&fresh, 409);
    // Empty or oversized keys are refused before anything happens.
    assert_problem(
        &t.post_keyed(&path, &token, &"k".repeat(256), card("4242424242424242"))
            .await,
        422,
    );
    t.shutdown().await;
}

#[tokio::test]
async fn a_cancel_for_an_order_shipping_never_saw_wins_over_its_creation() {
    // shipping-svc hears of the cancellation before the creation (its
    // consumers are per event type): the shipment is voided ahead, and the
    // paid-then-cancelled order never gets a label.
    let t = TestMesh::start().await;
    let mut shipping = proto::shipping::shipping_service_client::ShippingServiceClient::new(
        t.channel(platform::ServiceId::Shipping),
    );
    let order_id = uuid::Uuid::now_v7().to_string();
    let request = t.as_service(
        proto::shipping::VoidShipmentRequest {
            order_id: order_id.clone(),
            reason: "order cancelled".into(),
        },
        "order-svc",
    );
    let voided = shipping.void_shipment(request).await.unwrap().into_inner();
    assert_eq!(
        voided.shipment.unwrap().status,
        proto::shipping::ShipmentStatus::Cancelled as i32
    );
    // A void by a customer is refused.
    let (_, token, _) = t.customer().await;
    let by_customer = t.as_user(
        proto::shipping::VoidShipmentRequest {
            order_id: order_id.clone(),
            reason: String::new(),
        },
        &token,
    );
    assert_eq!(
        shipping
            .void_shipment(by_customer)
            .await
            .unwrap_err()
            .code(),
        tonic::Code::PermissionDenied
    );
    // And so is one that only claims to be order-svc or an admin.
    let mut forged = tonic::Request::new(proto::shipping::VoidShipmentRequest {
        order_id,
        reason: String::new(),
    });
    forged
        .metadata_mut()
        .insert("x-user-id", "svc:order-svc".parse().unwrap());
    forged
        .metadata_mut()
        .insert("x-user-roles", "service,admin".parse().unwrap());
    assert_eq!(
        shipping.void_shipment(forged).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    t.shutdown().await;
}
