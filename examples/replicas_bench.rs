//! Scale-out benchmark: the mesh as separate processes (`shopmesh serve
//! <component>`) on Postgres + NATS, first with one process per service,
//! then with two replicas each of order-, product- and payment-svc (on
//! 127.0.0.1 and 127.0.0.2 behind one name, `GRPC_HOSTS`). Each run prints
//! order+pay/s and p50/p99 through the gateway at 16 connections (as fast
//! as they go), p50/p99 at a fixed rate below both set-ups' capacity, and
//! each replica's share of the calls its service served (read from its own
//! `/metrics`).
//!
//! ```sh
//! cargo build --release --bin shopmesh
//! cargo run --release --example replicas_bench
//! ```
//! Postgres from `TEST_DATABASE_URL`, NATS from `TEST_NATS_URL` (local
//! defaults); `BENCH_ORDERS` (default 1500) orders per run, `BENCH_RATE`
//! (default 30) orders per second in the fixed-rate phase, `BENCH_REPLICAS`
//! (default `1,2`) the set-ups in the order they run. Throw-away
//! schemas and streams are removed afterwards.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use platform::ServiceId;
use serde_json::{Value, json};

#[path = "support/processes.rs"]
mod processes;
use processes::Proc;

const CONNECTIONS: usize = 16;
/// How long the fixed-rate phase sends orders.
const FIXED_RATE_SECS: f64 = 20.0;
const SCALED: [ServiceId; 3] = [ServiceId::Order, ServiceId::Product, ServiceId::Payment];

/// Starts the mesh with `replicas` processes of each of [`SCALED`].
fn start(replicas: u8, db: &str, nats: &str, tag: &str) -> (Vec<Proc>, String) {
    processes::start(
        |id| if SCALED.contains(&id) { replicas } else { 1 },
        db,
        nats,
        tag,
        &[],
    )
}

async fn post(
    http: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut r = http.post(url).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    match r.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

async fn login(http: &reqwest::Client, base: &str, email: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = post(
            http,
            format!("{base}/api/v1/auth/login"),
            None,
            json!({"email": email, "password": "bench-password"}),
        )
        .await;
        if status == 200 {
            return body["access_token"].as_str().expect("token").to_string();
        }
        assert!(
            Instant::now() < deadline,
            "login kept failing: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// gRPC calls each replica of a service served (health checks aside).
async fn served(http: &reqwest::Client, metrics: SocketAddr) -> u64 {
    let Ok(response) = http.get(format!("http://{metrics}/metrics")).send().await else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.starts_with("rpc_server_duration_seconds_count") && !l.contains("grpc.health")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One order and its payment; the status of the call that ended it.
async fn order_and_pay(http: &reqwest::Client, base: &str, token: &str, body: &Value) -> u16 {
    let (status, order) = post(
        http,
        format!("{base}/api/v1/orders"),
        Some(token),
        body.clone(),
    )
    .await;
    if status != 201 {
        return status;
    }
    let id = order["id"].as_str().unwrap_or_default();
    let card = json!({"card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"}});
    post(
        http,
        format!("{base}/api/v1/orders/{id}/payment"),
        Some(token),
        card,
    )
    .await
    .0
}

async fn run(replicas: u8, db: &str, nats: &str, total: usize, rate_per_s: f64) {
    let tag = format!("r{}", &uuid::Uuid::now_v7().simple().to_string()[..20]);
    let (procs, base) = start(replicas, db, nats, &tag);
    let http = reqwest::Client::new();
    let admin = login(&http, &base, "bench@example.com").await;
    let mut tokens = Vec::new();
    for _ in 0..CONNECTIONS {
        let email = format!("buyer-{}@example.com", uuid::Uuid::now_v7().simple());
        post(
            &http,
            format!("{base}/api/v1/auth/register"),
            None,
            json!({"email": email, "password": "bench-password", "name": "Buyer"}),
        )
        .await;
        tokens.push(login(&http, &base, &email).await);
    }
    let mut products = Vec::new();
    for _ in 0..16 {
        let sku = format!("BENCH-{}", uuid::Uuid::now_v7().simple());
        let (_, product) = post(&http, format!("{base}/api/v1/products"), Some(&admin),
            json!({"sku": sku, "name": "Bench", "category": "bench", "price": {"amount": 500, "currency": "USD"}, "stock": 10_000_000})).await;
        products.push(product["id"].as_str().expect("product").to_string());
    }
    let body_of = |w: usize| {
        json!({"items": [{"product_id": products[w % products.len()], "quantity": 1}],
            "shipping_address": {"name": "B", "line1": "1 St", "city": "C", "postal_code": "1", "country": "US"}})
    };
    let order_pay = |total: usize| {
        let (http, base, tokens) = (http.clone(), base.clone(), tokens.clone());
        async move {
            let latencies = Arc::new(Mutex::new(Vec::new()));
            let failures = Arc::new(Mutex::new(BTreeMap::<u16, usize>::new()));
            let started = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for (w, token) in tokens.iter().enumerate() {
                let (http, base, token) = (http.clone(), base.clone(), token.clone());
                let (latencies, failures) = (latencies.clone(), failures.clone());
                let body = body_of(w);
                tasks.spawn(async move {
                    let mut i = w;
                    while i < total {
                        let t = Instant::now();
                        let status = order_and_pay(&http, &base, &token, &body).await;
                        if status == 201 {
                            latencies.lock().unwrap().push(t.elapsed());
                        } else {
                            *failures.lock().unwrap().entry(status).or_default() += 1;
                        }
                        i += CONNECTIONS;
                    }
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.unwrap();
            }
            let elapsed = started.elapsed().as_secs_f64();
            let mut l = latencies.lock().unwrap().clone();
            l.sort();
            let failures = failures.lock().unwrap().clone();
            (
                l.len() as f64 / elapsed,
                pct(&l, 0.5),
                pct(&l, 0.99),
                failures,
            )
        }
    };
    // Warm pools, caches and connections.
    order_pay(200).await;
    let pg = sqlx::PgPool::connect(db).await.expect("postgres");
    let commits = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&pg)
        .await
        .unwrap_or_default()
    };
    let commits_before = commits().await;
    let before: Vec<u64> =
        futures::future::join_all(procs.iter().map(|p| served(&http, p.metrics))).await;
    let (rate, p50, p99, failures) = order_pay(total).await;
    let after: Vec<u64> =
        futures::future::join_all(procs.iter().map(|p| served(&http, p.metrics))).await;
    let per_order = (commits().await - commits_before) as f64 / total as f64;
    println!(
        "{replicas} replica(s) of order, product, payment: {rate:>6.0} order+pay/s, p50 {p50:>7.1?}, p99 {p99:>7.1?}, {per_order:.1} Postgres commits per order, failures {failures:?}"
    );
    // The same flow at a fixed rate below both set-ups' capacity: the
    // latency a client sees at a given load, not the queue of a saturated
    // machine. Each order is timed from when it was due, so a stall that
    // delays later orders counts against them too.
    let due_every = Duration::from_secs_f64(1.0 / rate_per_s);
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..(rate_per_s * FIXED_RATE_SECS) as usize {
        let due = started + due_every * i as u32;
        tokio::time::sleep_until(due).await;
        let (http, base, token, body) = (
            http.clone(),
            base.clone(),
            tokens[i % CONNECTIONS].clone(),
            body_of(i),
        );
        tasks.spawn(async move {
            let status = order_and_pay(&http, &base, &token, &body).await;
            (status, due.elapsed())
        });
    }
    let mut latencies = Vec::new();
    let mut failures = BTreeMap::<u16, usize>::new();
    while let Some(done) = tasks.join_next().await {
        match done.expect("an order task") {
            (201, took) => latencies.push(took),
            (status, _) => *failures.entry(status).or_default() += 1,
        }
    }
    latencies.sort();
    println!(
        "    at a fixed {rate_per_s:.0} order+pay/s for {FIXED_RATE_SECS:.0} s: p50 {:>7.1?}, p99 {:>7.1?}, failures {failures:?}",
        pct(&latencies, 0.5),
        pct(&latencies, 0.99)
    );
    for id in SCALED {
        let calls: Vec<u64> = procs
            .iter()
            .zip(before.iter().zip(&after))
            .filter(|(p, _)| p.service == Some(id))
            .map(|(_, (b, a))| a - b)
            .collect();
        let sum: u64 = calls.iter().sum();
        let shares: Vec<String> = calls
            .iter()
            .map(|c| format!("{:.1} %", 100.0 * *c as f64 / sum.max(1) as f64))
            .collect();
        println!(
            "    {:<8} calls per replica {calls:?} = {}",
            id.name(),
            shares.join(" / ")
        );
    }
    drop(procs);
    processes::cleanup(db, nats, &tag).await;
}

#[tokio::main]
async fn main() {
    let db = platform::testing::postgres_url();
    let nats = std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let total = std::env::var("BENCH_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    println!(
        "order+pay through the gateway, {CONNECTIONS} connections, {total} orders per run, 16 products"
    );
    let rate = std::env::var("BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30.0);
    // `BENCH_REPLICAS=2,1` runs the two set-ups the other way round, to
    // see what the order of the runs does to them.
    let order: Vec<u8> = std::env::var("BENCH_REPLICAS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2]);
    for replicas in order {
        run(replicas, &db, &nats, total, rate).await;
    }
}
