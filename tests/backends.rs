//! The whole saga on the production backends: Postgres for every service
//! (a schema per service, prefixed per test) and NATS JetStream (a stream
//! per test), through the gateway.

mod common;
// The SMTP server and fakes of the notification tests.
#[path = "../notification-svc/tests/support/mod.rs"]
mod support;

use common::backends::{Backends, nats_url};
use common::{WEBHOOK_SECRET, eventually, signed, webhook};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_pay_cancel_on_postgres_and_nats() {
    let backends = Backends::new();
    let t = backends.mesh().await;
    let (_, token, _) = t.customer().await;
    let products = t.get("/api/v1/products?q=yoga", None).await;
    let mat = products.body["items"][0].clone();
    let mid = mat["id"].as_str().unwrap().to_string();
    let before = mat["stock_available"].as_i64().unwrap();
    let oid = t.order(&token, &json!(mid), 3).await;
    let paid = t.pay(&token, &oid, "4242424242424242").await;
    assert_eq!(paid["status"], "SUCCEEDED", "{paid}");
    assert_eq!(
        t.get(&format!("/api/v1/orders/{oid}"), Some(&token))
            .await
            .body["status"],
        "PAID"
    );
    assert_eq!(
        t.get(&format!("/api/v1/products/{mid}"), None).await.body["stock_available"],
        before - 3
    );
    let refunded = t
        .post(
            &format!("/api/v1/orders/{oid}/cancel"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(refunded.body["status"], "REFUNDED", "{}", refunded.body);
    assert_eq!(
        t.get(&format!("/api/v1/products/{mid}"), None).await.body["stock_available"],
        before
    );

    // A second order placed twice with one key, a declined card, then a good one.
    let key = uuid::Uuid::now_v7().to_string();
    let body = json!({"items": [{"product_id": mid, "quantity": 1}], "shipping_address": common::address()});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = t
            .http
            .post(t.url("/api/v1/orders"))
            .bearer_auth(&token)
            .header("Idempotency-Key", &key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        ids.push(r.json::<serde_json::Value>().await.unwrap()["id"].clone());
    }
    assert_eq!(ids[0], ids[1], "one order for one key");
    let second = ids[0].as_str().unwrap().to_string();
    let declined = t.pay(&token, &second, "4000000000000002").await;
    assert_eq!(declined["status"], "FAILED");
    assert_eq!(
        t.get(&format!("/api/v1/orders/{second}"), Some(&token))
            .await
            .body["status"],
        "PAYMENT_FAILED"
    );
    let ok = t.pay(&token, &second, "4242424242424242").await;
    assert_eq!(ok["status"], "SUCCEEDED");
    assert_eq!(
        t.get(&format!("/api/v1/products/{mid}"), None).await.body["stock_available"],
        before - 1
    );

    // The events reached the stream (order.created, payment.processed, payment.refunded, order.cancelled).
    let nats = nats_url();
    let settings = platform::events::nats::NatsSettings {
        stream: backends.stream.clone(),
        prefix: backends.subjects.clone(),
        ..Default::default()
    };
    let bus = platform::events::nats::NatsBus::connect(&nats, settings)
        .await
        .unwrap();
    use platform::events::EventBus;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let sink = seen.clone();
    let kinds = [
        "order.created",
        "payment.processed",
        "payment.refunded",
        "order.cancelled",
    ];
    let sub = bus
        .subscribe(
            platform::events::ConsumerConfig::new("test-reader", &["order.*", "payment.*"]),
            platform::events::handler_fn(move |d: platform::events::Delivery| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().insert(d.envelope.r#type.clone());
                    Ok(())
                }
            }),
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !kinds.iter().all(|k| seen.lock().unwrap().contains(*k)) {
        assert!(
            std::time::Instant::now() < deadline,
            "saw only {:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    sub.stop().await;
    t.shutdown().await;
    backends.cleanup().await;
}

/// Flow 5 and 6 on the production backends: the order is shipped and
/// delivered through carrier webhooks, the order follows over NATS, and the
/// customer gets the emails from a real SMTP server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_delivered_and_emailed_on_postgres_and_nats() {
    let smtp = support::SmtpServer::start().await;
    let backends = Backends::new();
    let smtp_url = smtp.url();
    let t = backends
        .mesh_with(&[
            ("SHIPPING_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("SMTP_URL", &smtp_url),
        ])
        .await;
    let (_, token, _) = t.customer().await;
    let me = t.get("/api/v1/users/me", Some(&token)).await.body;
    let email = me["email"].as_str().unwrap().to_string();
    let welcome = smtp.wait_for_messages(1).await;
    assert!(
        welcome[0].contains(&format!("X-RcptTo: {email}")),
        "{}",
        welcome[0]
    );

    let mug = t.get("/api/v1/products?q=mug", None).await.body["items"][0]["id"].clone();
    let oid = t.order(&token, &mug, 1).await;
    let paid = t.pay(&token, &oid, "4242424242424242").await;
    assert_eq!(paid["status"], "SUCCEEDED", "{paid}");
    let shipment_path = format!("/api/v1/orders/{oid}/shipment");
    let labelled = eventually(&t, &shipment_path, &token, "a label", |b| {
        b["status"] == "LABEL_CREATED"
    })
    .await;
    let tracking = labelled["tracking_number"].as_str().unwrap().to_string();
    for status in ["IN_TRANSIT", "OUT_FOR_DELIVERY", "DELIVERED"] {
        let update =
            json!({"tracking_number": tracking, "status": status, "location": "Springfield"});
        let r = webhook(&t, &update, signed(&update)).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    eventually(
        &t,
        &format!("/api/v1/orders/{oid}"),
        &token,
        "the order DELIVERED",
        |b| b["status"] == "DELIVERED",
    )
    .await;
    // Welcome, order received, payment received, shipped, delivered.
    let mails = smtp.wait_for_messages(5).await;
    let subjects: Vec<String> = mails
        .iter()
        .filter_map(|m| m.lines().find_map(|l| l.strip_prefix("Subject: ")))
        .map(str::to_string)
        .collect();
    for subject in [
        "Welcome to shopmesh",
        "Order received",
        "Payment received",
        "Delivered",
    ] {
        assert!(
            subjects.iter().any(|s| s == subject),
            "{subject} in {subjects:?}"
        );
    }
    assert!(
        mails
            .iter()
            .all(|m| m.contains(&format!("X-RcptTo: {email}")))
    );
    t.shutdown().await;
    backends.cleanup().await;
}
