//! The whole saga on the production backends: Postgres for every service
//! (a schema per service, prefixed per test) and NATS JetStream (a stream
//! per test), through the gateway.

mod common;

use common::TestMesh;
use serde_json::json;

struct Backends {
    schemas: platform::testing::SchemaPrefix,
    stream: String,
    subjects: String,
}

fn nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

impl Backends {
    fn new() -> Self {
        let tag = uuid::Uuid::now_v7().simple().to_string();
        Self {
            schemas: platform::testing::SchemaPrefix::new(),
            stream: format!("E{tag}"),
            subjects: format!("e{tag}"),
        }
    }

    async fn mesh(&self) -> TestMesh {
        let mut vars = self.schemas.vars();
        vars.extend([
            ("NATS_URL".to_string(), nats_url()),
            ("NATS_STREAM".to_string(), self.stream.clone()),
            ("NATS_SUBJECT_PREFIX".to_string(), self.subjects.clone()),
        ]);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        TestMesh::start_with(&vars).await
    }

    async fn cleanup(&self) {
        let services: Vec<&str> = platform::ServiceId::ALL
            .iter()
            .map(|id| id.name())
            .collect();
        self.schemas.drop(&services).await;
        let settings = platform::events::nats::NatsSettings {
            stream: self.stream.clone(),
            prefix: self.subjects.clone(),
            ..Default::default()
        };
        let nats = nats_url();
        if let Ok(bus) = platform::events::nats::NatsBus::connect(&nats, settings).await {
            let _ = bus.delete_stream().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_pay_cancel_on_postgres_and_nats() {
    let backends = Backends::new();
    let t = backends.mesh().await;
    let (_, token, _) = t.customer().await;
    let products = t.get("/api/v1/products?q=yoga", None).await;
    let mat = products.body["items"][0].clone();
    let mid = mat["id"].as_str().unwrap().to_string();
    let before = mat["stock_available"].as_i64().unwrap();
    let address = json!({"name": "Ada", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"});
    let order = t
        .post(
            "/api/v1/orders",
            Some(&token),
            json!({"items": [{"product_id": mid, "quantity": 3}], "shipping_address": address}),
        )
        .await;
    assert_eq!(order.status, 201, "{}", order.body);
    let oid = order.body["id"].as_str().unwrap().to_string();
    let card = json!({"card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"}});
    let paid = t
        .post(&format!("/api/v1/orders/{oid}/payment"), Some(&token), card)
        .await;
    assert_eq!(paid.body["status"], "SUCCEEDED", "{}", paid.body);
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
    let body = json!({"items": [{"product_id": mid, "quantity": 1}], "shipping_address": address});
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
    let card = |number: &str| json!({"card": {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"}});
    let declined = t
        .post(
            &format!("/api/v1/orders/{second}/payment"),
            Some(&token),
            card("4000000000000002"),
        )
        .await;
    assert_eq!(declined.body["status"], "FAILED");
    assert_eq!(
        t.get(&format!("/api/v1/orders/{second}"), Some(&token))
            .await
            .body["status"],
        "PAYMENT_FAILED"
    );
    let ok = t
        .post(
            &format!("/api/v1/orders/{second}/payment"),
            Some(&token),
            card("4242424242424242"),
        )
        .await;
    assert_eq!(ok.body["status"], "SUCCEEDED");
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
