//! Notifications from events, the feed, and the live SSE stream.

mod common;

use std::time::{Duration, Instant};

use common::{TestMesh, assert_problem};
use serde_json::{Value, json};

const ADMIN: &[(&str, &str)] = &[
    ("ADMIN_EMAIL", "admin@example.com"),
    ("ADMIN_PASSWORD", "admin-password"),
];

async fn feed_until(
    t: &TestMesh,
    token: &str,
    what: &str,
    cond: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = t.get("/api/v1/notifications?limit=100", Some(token)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let items = r.body["items"].as_array().cloned().unwrap_or_default();
        if cond(&items) {
            return items;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {items:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn titles(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|n| n["title"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_right_feed_and_the_live_stream() {
    let t = TestMesh::start_with(ADMIN).await;
    let (_, token, _) = t.customer().await;
    let (_, stranger, _) = t.customer().await;
    let welcome = feed_until(&t, &token, "the welcome", |items| {
        titles(items).contains(&"Welcome to shopmesh".to_string())
    })
    .await;
    assert_eq!(welcome.len(), 1, "one welcome: {welcome:?}");
    assert_eq!(welcome[0]["channel"], "in_app");
    assert_eq!(welcome[0]["read"], false);

    // Listen before ordering.
    let mut live = t
        .http
        .get(t.url("/api/v1/notifications/stream"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert!(
        live.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );

    let robot = t.get("/api/v1/products?q=robot", None).await.body["items"][0].clone();
    let stock = robot["stock_available"].as_i64().unwrap();
    let address = common::address();
    // Enough to drop the stock below the low-stock threshold (5).
    let quantity = stock - 4;
    let order = t.post("/api/v1/orders", Some(&token), json!({"items": [{"product_id": robot["id"], "quantity": quantity}], "shipping_address": address})).await;
    assert_eq!(order.status, 201, "{}", order.body);

    let deadline = Instant::now() + Duration::from_secs(15);
    let mut received = String::new();
    while !received.contains("Order received") {
        let remaining = deadline.saturating_duration_since(Instant::now());
        assert!(!remaining.is_zero(), "no live event; got {received:?}");
        if let Ok(Ok(Some(chunk))) = tokio::time::timeout(remaining, live.chunk()).await {
            received.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(received.contains("event: notification"), "{received}");
    drop(live);

    let oid = order.body["id"].as_str().unwrap();
    let card = common::card("4242424242424242");
    t.post(&format!("/api/v1/orders/{oid}/payment"), Some(&token), card)
        .await;
    let mine = feed_until(&t, &token, "payment and label notifications", |items| {
        let titles = titles(items);
        titles.contains(&"Payment received".to_string())
            && titles.contains(&"Your order is being prepared".to_string())
    })
    .await;
    assert!(titles(&mine).contains(&"Order received".to_string()));
    let body = mine
        .iter()
        .find(|n| n["title"] == "Payment received")
        .unwrap()["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(body.contains("visa ending 4242"), "{body}");

    let theirs = titles(
        &t.get("/api/v1/notifications", Some(&stranger)).await.body["items"]
            .as_array()
            .unwrap()
            .clone(),
    );
    assert!(
        !theirs.contains(&"Order received".to_string()),
        "only the owner hears about an order: {theirs:?}"
    );

    let admin = t.login("admin@example.com", "admin-password").await.0;
    let alerts = feed_until(&t, &admin, "a low-stock alert", |items| {
        titles(items).iter().any(|t| t.starts_with("Low stock"))
    })
    .await;
    assert!(alerts.iter().any(|n| n["kind"] == "inventory.low"));
    assert!(
        !titles(&mine).iter().any(|t| t.starts_with("Low stock")),
        "customers do not get stock alerts"
    );
    t.shutdown().await;
}

#[tokio::test]
async fn push_subscriptions_are_validated() {
    let t = TestMesh::start().await;
    let (_, token, _) = t.customer().await;
    // A browser's keys (the published example of RFC 8291).
    let p256dh =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    let auth = "BTBZMqHH6r4Tts7J_aSIgg";
    let path = "/api/v1/notifications/push-subscriptions";
    let ok = t.post(path, Some(&token), json!({"endpoint": "https://push.example.com/abc", "keys": {"p256dh": p256dh, "auth": auth}})).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(ok.body["endpoint"], "https://push.example.com/abc");
    let again = t.post(path, Some(&token), json!({"endpoint": "https://push.example.com/abc", "keys": {"p256dh": p256dh, "auth": auth}})).await;
    assert_eq!(
        again.body["id"], ok.body["id"],
        "one subscription per endpoint"
    );
    for (body, field) in [
        (
            json!({"endpoint": "http://insecure.example/x", "keys": {"p256dh": p256dh, "auth": auth}}),
            "endpoint",
        ),
        (
            json!({"endpoint": "https://push.example.com/abc", "keys": {"p256dh": "BNcR", "auth": auth}}),
            "keys.p256dh",
        ),
        (
            json!({"endpoint": "https://push.example.com/abc", "keys": {"p256dh": p256dh, "auth": "tBHI"}}),
            "keys.auth",
        ),
    ] {
        let bad = t.post(path, Some(&token), body).await;
        assert_problem(&bad, 422);
        assert_eq!(bad.body["errors"][0]["field"], field, "{}", bad.body);
    }
    assert_problem(&t.get("/api/v1/notifications", None).await, 401);
    // Push delivery is off without a VAPID key.
    assert_problem(&t.get("/api/v1/notifications/push-key", None).await, 404);
    t.shutdown().await;
}

#[tokio::test]
async fn browsers_get_the_vapid_public_key_to_subscribe_with() {
    use notification_svc::channels::push::WebPush;
    let key = WebPush::generate_key().unwrap();
    let expected = WebPush::new(&key, "mailto:ops@example.com").unwrap();
    let t = TestMesh::start_with(&[
        ("VAPID_PRIVATE_KEY", &key),
        ("VAPID_SUBJECT", "mailto:ops@example.com"),
    ])
    .await;
    let r = t.get("/api/v1/notifications/push-key", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["application_server_key"], expected.public_key());
    t.shutdown().await;
}
