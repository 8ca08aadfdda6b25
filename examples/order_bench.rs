//! Order benchmark through the gateway: create-order/s and create+pay/s
//! with p50/p99 latency, on the embedded backends and on Postgres + NATS.
//!
//! ```sh
//! cargo run --release --example order_bench
//! ```
//! Postgres from `TEST_DATABASE_URL`, NATS from `TEST_NATS_URL` (local
//! defaults); a throw-away schema prefix and stream are removed afterwards.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::Config;
use serde_json::{Value, json};
use shopmesh::{Mesh, MeshAddrs};

const CONCURRENCY: usize = 16;

struct Run {
    mesh: Mesh,
    http: reqwest::Client,
    base: String,
}

async fn start(vars: &[(&str, String)]) -> Run {
    let mut map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    map.insert("RATE_LIMIT_RPS".into(), "0".into());
    map.insert("ADMIN_EMAIL".into(), "bench@example.com".into());
    map.insert("ADMIN_PASSWORD".into(), "bench-password".into());
    map.insert("RUST_LOG".into(), "error".into());
    let config = Config::from_source("order-bench", &map).expect("config");
    let mesh = Mesh::start(config, &MeshAddrs::ephemeral())
        .await
        .expect("mesh");
    let base = mesh.gateway_url();
    Run {
        mesh,
        http: reqwest::Client::new(),
        base,
    }
}

impl Run {
    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut r = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let response = r.send().await.expect("gateway");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn token(&self, email: &str, password: &str) -> String {
        let (_, body) = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        body["access_token"].as_str().expect("login").to_string()
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs `total` operations, CONCURRENCY at a time; returns (ops/s, p50, p99).
async fn measure<F, Fut>(total: usize, op: F) -> (f64, Duration, Duration)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..CONCURRENCY {
        let (op, latencies) = (op.clone(), latencies.clone());
        tasks.spawn(async move {
            let mut i = w;
            while i < total {
                let t = Instant::now();
                op().await;
                latencies.lock().unwrap().push(t.elapsed());
                i += CONCURRENCY;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    (rate, pct(&l, 0.5), pct(&l, 0.99))
}

/// Logins per second (argon2-bound) and authenticated reads per second.
async fn auth(name: &str, run: Arc<Run>) {
    let email = format!("reader-{}@example.com", uuid::Uuid::now_v7().simple());
    run.post(
        "/api/v1/auth/register",
        None,
        json!({"email": email, "password": "bench-password", "name": "Reader"}),
    )
    .await;
    let (r, e) = (run.clone(), email.clone());
    let (logins, l50, l99) = measure(100, move || {
        let (r, e) = (r.clone(), e.clone());
        async move {
            r.token(&e, "bench-password").await;
        }
    })
    .await;
    let token = run.token(&email, "bench-password").await;
    let (r, t) = (run.clone(), token);
    let (reads, r50, r99) = measure(3000, move || {
        let (r, t) = (r.clone(), t.clone());
        async move {
            let response = r
                .http
                .get(format!("{}/api/v1/users/me", r.base))
                .bearer_auth(&t)
                .send()
                .await
                .expect("gateway");
            assert_eq!(response.status(), 200);
        }
    })
    .await;
    println!(
        "{name:>16}: login {logins:>6.0}/s (p50 {l50:.1?}, p99 {l99:.1?}) | GET /users/me {reads:>6.0}/s (p50 {r50:.1?}, p99 {r99:.1?})"
    );
}

async fn bench(name: &str, run: Run) {
    let admin = run.token("bench@example.com", "bench-password").await;
    let sku = format!("BENCH-{}", uuid::Uuid::now_v7().simple());
    let (_, product) = run
        .post("/api/v1/products", Some(&admin), json!({"sku": sku, "name": "Bench", "category": "bench", "price": {"amount": 500, "currency": "USD"}, "stock": 1_000_000}))
        .await;
    let product_id = product["id"].as_str().expect("product").to_string();
    let email = format!("buyer-{}@example.com", uuid::Uuid::now_v7().simple());
    run.post(
        "/api/v1/auth/register",
        None,
        json!({"email": email, "password": "bench-password", "name": "Buyer"}),
    )
    .await;
    let token = run.token(&email, "bench-password").await;
    let order_body = json!({"items": [{"product_id": product_id, "quantity": 1}],
        "shipping_address": {"name": "B", "line1": "1 St", "city": "C", "postal_code": "1", "country": "US"}});
    let run = Arc::new(run);
    auth(name, run.clone()).await;

    let (r, t, b) = (run.clone(), token.clone(), order_body.clone());
    let (create_rate, c50, c99) = measure(400, move || {
        let (r, t, b) = (r.clone(), t.clone(), b.clone());
        async move {
            let (status, _) = r.post("/api/v1/orders", Some(&t), b).await;
            assert_eq!(status, 201);
        }
    })
    .await;
    let (r, t, b) = (run.clone(), token.clone(), order_body.clone());
    let (pay_rate, p50, p99) = measure(200, move || {
        let (r, t, b) = (r.clone(), t.clone(), b.clone());
        async move {
            let (_, order) = r.post("/api/v1/orders", Some(&t), b).await;
            let id = order["id"].as_str().expect("order").to_string();
            let card = json!({"card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"}});
            let (status, payment) = r.post(&format!("/api/v1/orders/{id}/payment"), Some(&t), card).await;
            assert_eq!((status, payment["status"].as_str()), (201, Some("SUCCEEDED")));
        }
    })
    .await;
    println!(
        "{name:>16}: create-order {create_rate:>6.0}/s (p50 {c50:.1?}, p99 {c99:.1?}) | create+pay {pay_rate:>6.0}/s (p50 {p50:.1?}, p99 {p99:.1?})  [{CONCURRENCY} concurrent clients]"
    );
    match Arc::try_unwrap(run) {
        Ok(run) => run.mesh.shutdown().await,
        Err(_) => {}
    }
}

#[tokio::main]
async fn main() {
    bench("embedded", start(&[("SEED_DEMO", "false".into())]).await).await;

    let db = platform::testing::postgres_url();
    let nats = std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let prefix = format!("b{}", &tag[..20]);
    let vars = vec![
        ("SEED_DEMO", "false".to_string()),
        ("DATABASE_URL", db.clone()),
        ("DATABASE_SCHEMA_PREFIX", prefix.clone()),
        (
            "STORE_CURSOR_KEY",
            platform::testing::TEST_CURSOR_KEY.into(),
        ),
        ("DATABASE_MAX_CONNECTIONS", "16".into()),
        ("NATS_URL", nats.clone()),
        ("NATS_STREAM", format!("B{tag}")),
        ("NATS_SUBJECT_PREFIX", format!("b{tag}")),
    ];
    bench("postgres + nats", start(&vars).await).await;
    for id in platform::ServiceId::ALL {
        if let Ok(pg) = platform::store::postgres::PostgresBackend::connect(
            &db,
            &format!("{prefix}_{}", id.name()),
            &Default::default(),
        )
        .await
        {
            let _ = pg.drop_schema().await;
        }
    }
    let settings = platform::events::nats::NatsSettings {
        stream: format!("B{tag}"),
        prefix: format!("b{tag}"),
        ..Default::default()
    };
    if let Ok(bus) = platform::events::nats::NatsBus::connect(&nats, settings).await {
        let _ = bus.delete_stream().await;
    }
}
