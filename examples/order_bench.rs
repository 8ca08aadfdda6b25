//! Order benchmark through the gateway: create-order/s and create+pay/s
//! with p50/p99 latency, on the embedded backends and on Postgres + NATS;
//! on Postgres also the insert ceiling of the same server (pgbench-style
//! single-row commits), 16 and 64 connections on one hot product and on 16
//! products, Postgres commits per order, and memory. Then the cart on the
//! same mesh: cart adds/s, checkouts/s and checkout+pay/s (each shopper
//! sets one line, then checks out), commits per checkout, beside direct
//! order+pay/s measured right before.
//!
//! ```sh
//! cargo run --release --example order_bench
//! ```
//! Postgres from `TEST_DATABASE_URL`, NATS from `TEST_NATS_URL` (local
//! defaults); a throw-away schema prefix and stream are removed afterwards.

#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

#[path = "support/proc_status.rs"]
mod proc_status;

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
    map.insert("ORDER_MAX_UNPAID_PER_CUSTOMER".into(), "1000".into());
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
    // Sixteen accounts, each logged into by one client at a time: the
    // failed-login limit counts attempts in flight per account.
    let mut emails = Vec::new();
    for _ in 0..CONCURRENCY {
        let email = format!("reader-{}@example.com", uuid::Uuid::now_v7().simple());
        run.post(
            "/api/v1/auth/register",
            None,
            json!({"email": email, "password": "bench-password", "name": "Reader"}),
        )
        .await;
        emails.push(email);
    }
    let email = emails[0].clone();
    let (r, emails) = (run.clone(), Arc::new(emails));
    // Logins beyond what the hashing pool takes are shed at once (503).
    let shed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = shed.clone();
    let (logins, l50, l99) = measure(160, move || {
        let (r, emails, shed, next) = (r.clone(), emails.clone(), counted.clone(), next.clone());
        async move {
            let e = &emails[next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % emails.len()];
            let (status, _) = r
                .post(
                    "/api/v1/auth/login",
                    None,
                    json!({"email": e, "password": "bench-password"}),
                )
                .await;
            if status != 200 {
                assert!(
                    matches!(status, 429 | 503),
                    "a login is answered or refused: {status}"
                );
                shed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    })
    .await;
    let shed = shed.load(std::sync::atomic::Ordering::Relaxed);
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
        "{name:>16}: login {logins:>6.0}/s (p50 {l50:.1?}, p99 {l99:.1?}, {shed} of 160 refused) | GET /users/me {reads:>6.0}/s (p50 {r50:.1?}, p99 {r99:.1?})"
    );
}

/// A buyer per connection, so no customer's unpaid-order limit is in play.
async fn buyers(run: &Run, n: usize) -> Vec<String> {
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        let email = format!("buyer-{}@example.com", uuid::Uuid::now_v7().simple());
        run.post(
            "/api/v1/auth/register",
            None,
            json!({"email": email, "password": "bench-password", "name": "Buyer"}),
        )
        .await;
        tokens.push(run.token(&email, "bench-password").await);
    }
    tokens
}

async fn products(run: &Run, admin: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let sku = format!("BENCH-{}", uuid::Uuid::now_v7().simple());
        let (_, product) = run
            .post("/api/v1/products", Some(admin), json!({"sku": sku, "name": "Bench", "category": "bench", "price": {"amount": 500, "currency": "USD"}, "stock": 10_000_000}))
            .await;
        ids.push(product["id"].as_str().expect("product").to_string());
    }
    ids
}

/// What one measured run did.
struct Outcome {
    rate: f64,
    p50: Duration,
    p99: Duration,
    /// Answers other than the expected one, by status.
    failures: std::collections::BTreeMap<u16, usize>,
}

impl Outcome {
    fn failures(&self) -> String {
        if self.failures.is_empty() {
            "none".into()
        } else {
            self.failures
                .iter()
                .map(|(status, n)| format!("{n}x{status}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    }
}

/// `total` orders (and payments with `pay`) from `connections` buyers at
/// once, each on product `products[worker % len]`.
async fn orders(
    run: &Arc<Run>,
    tokens: &[String],
    products: &[String],
    connections: usize,
    total: usize,
    pay: bool,
) -> Outcome {
    let products = Arc::new(products.to_vec());
    drive(run, tokens, connections, total, move |run, token, w, _| {
        let body = json!({"items": [{"product_id": products[w % products.len()], "quantity": 1}],
            "shipping_address": {"name": "B", "line1": "1 St", "city": "C", "postal_code": "1", "country": "US"}});
        Box::pin(async move {
            let t = Instant::now();
            let (status, order) = run.post("/api/v1/orders", Some(&token), body).await;
            if status != 201 || !pay {
                return (status == 201, status, t.elapsed());
            }
            let id = order["id"].as_str().expect("order");
            let card = json!({"card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"}});
            let (status, payment) = run
                .post(&format!("/api/v1/orders/{id}/payment"), Some(&token), card)
                .await;
            (status == 201 && payment["status"] == "SUCCEEDED", status, t.elapsed())
        })
    })
    .await
}

/// One step of a driven run: whether it succeeded, the last status, and
/// how long its timed part took.
type Step = std::pin::Pin<Box<dyn std::future::Future<Output = (bool, u16, Duration)> + Send>>;

/// Runs `total` steps from `connections` workers at once (worker `w`
/// uses `tokens[w]` and takes steps `w`, `w + connections`, …): the rate
/// of successful steps over the whole run, their p50/p99, and the failed
/// steps by status.
async fn drive<F>(
    run: &Arc<Run>,
    tokens: &[String],
    connections: usize,
    total: usize,
    step: F,
) -> Outcome
where
    F: Fn(Arc<Run>, String, usize, usize) -> Step + Send + Sync + 'static,
{
    let step = Arc::new(step);
    let failures = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (w, token) in tokens.iter().enumerate().take(connections) {
        let (run, failures, latencies) = (run.clone(), failures.clone(), latencies.clone());
        let (token, step) = (token.clone(), step.clone());
        tasks.spawn(async move {
            let mut i = w;
            while i < total {
                let (ok, status, took) = step(run.clone(), token.clone(), w, i).await;
                if ok {
                    latencies.lock().unwrap().push(took);
                } else {
                    *failures.lock().unwrap().entry(status).or_insert(0) += 1;
                }
                i += connections;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    let zero = Duration::ZERO;
    Outcome {
        rate: l.len() as f64 / elapsed,
        p50: if l.is_empty() { zero } else { pct(&l, 0.5) },
        p99: if l.is_empty() { zero } else { pct(&l, 0.99) },
        failures: std::mem::take(&mut *failures.lock().unwrap()),
    }
}

/// The cart on Postgres + NATS, at 16 and 64 connections (one shopper
/// each, 16 products): adds, checkouts and checkouts with payment, with
/// direct order+pay measured right before each for the ratio.
async fn cart(run: &Arc<Run>, pg: &sqlx::PgPool, tokens: &[String], products: &[String]) {
    println!(
        "{:>16} {:>6} {:>9} {:>9} {:>9} {:>17}  failures",
        "cart", "conns", "per s", "p50", "p99", "commits/checkout"
    );
    for connections in [16, 64] {
        let direct = orders(run, tokens, products, connections, 600, true).await;
        println!(
            "{:>16} {connections:>6} {:>9.0} {:>9.1?} {:>9.1?} {:>17}  {}",
            "order+pay",
            direct.rate,
            direct.p50,
            direct.p99,
            "",
            direct.failures()
        );
        for (label, total) in [("add", 2000), ("checkout", 600), ("checkout+pay", 600)] {
            let before = commits(pg).await;
            let o = cart_ops(run, tokens, products, connections, total, label).await;
            let per = (commits(pg).await - before) as f64 / total as f64;
            let per = if label == "add" {
                String::new()
            } else {
                format!("{per:.1}")
            };
            println!(
                "{label:>16} {connections:>6} {:>9.0} {:>9.1?} {:>9.1?} {per:>17}  {}",
                o.rate,
                o.p50,
                o.p99,
                o.failures()
            );
            if label == "checkout+pay" && direct.rate > 0.0 {
                println!(
                    "{:>16} {connections:>6} checkout+pay / direct order+pay = {:.2}",
                    "",
                    o.rate / direct.rate
                );
            }
        }
    }
}

/// `total` cart operations from `connections` shoppers: `add` adds one
/// unit of a product (rotating over `products`); `checkout` sets one line
/// and checks out (the checkout call alone is timed; the rate counts
/// checkouts over the whole run); `checkout+pay` the same with a card.
async fn cart_ops(
    run: &Arc<Run>,
    tokens: &[String],
    products: &[String],
    connections: usize,
    total: usize,
    op: &'static str,
) -> Outcome {
    // Each phase starts from empty carts.
    for token in tokens.iter().take(connections) {
        cart_call(
            run,
            token,
            reqwest::Method::DELETE,
            "/api/v1/cart".into(),
            None,
            Value::Null,
        )
        .await;
    }
    let products = Arc::new(products.to_vec());
    drive(run, tokens, connections, total, move |run, token, _, i| {
        // Each shopper goes round the products.
        let product = products[(i / connections) % products.len()].clone();
        Box::pin(async move {
            if op == "add" {
                let t = Instant::now();
                let body = json!({"product_id": product, "quantity": 1});
                let status = cart_call(&run, &token, reqwest::Method::POST, "/api/v1/cart/items".into(), None, body).await;
                return (status == 200, status, t.elapsed());
            }
            let set = cart_call(&run, &token, reqwest::Method::PUT, format!("/api/v1/cart/items/{product}"), None, json!({"quantity": 1})).await;
            if set != 200 {
                return (false, set, Duration::ZERO);
            }
            let mut body = json!({"shipping_address": {"name": "B", "line1": "1 St", "city": "C", "postal_code": "1", "country": "US"}});
            if op == "checkout+pay" {
                body["card"] = json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"});
            }
            let t = Instant::now();
            let key = Some(uuid::Uuid::now_v7().to_string());
            let status = cart_call(&run, &token, reqwest::Method::POST, "/api/v1/cart/checkout".into(), key, body).await;
            (status == 201, status, t.elapsed())
        })
    })
    .await
}

/// One cart request as `token`'s shopper; its status (0: no answer).
async fn cart_call(
    run: &Run,
    token: &str,
    method: reqwest::Method,
    path: String,
    key: Option<String>,
    body: Value,
) -> u16 {
    let mut r = run
        .http
        .request(method, format!("{}{path}", run.base))
        .bearer_auth(token)
        .json(&body);
    if let Some(key) = key {
        r = r.header("idempotency-key", key);
    }
    match r.send().await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

/// Committed transactions of the whole database so far.
async fn commits(pg: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(pg)
    .await
    .expect("pg_stat_database")
}

/// pgbench-style ceiling: single-row autocommit INSERTs per second from
/// `connections` connections for `secs` seconds, on the same Postgres.
async fn insert_ceiling(url: &str, schema: &str, connections: usize, secs: u64) -> f64 {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(connections as u32)
        .connect(url)
        .await
        .expect("postgres");
    let table = format!("{schema}_ceiling");
    sqlx::query(&format!(
        "CREATE UNLOGGED TABLE IF NOT EXISTS {table} (id bigint, body jsonb)"
    ))
    .execute(&pool)
    .await
    .expect("table");
    // Logged like the store's tables: commit cost is what is measured.
    sqlx::query(&format!("ALTER TABLE {table} SET LOGGED"))
        .execute(&pool)
        .await
        .expect("logged");
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..connections {
        let (pool, count, table) = (pool.clone(), count.clone(), table.clone());
        tasks.spawn(async move {
            let sql = format!("INSERT INTO {table} (id, body) VALUES ($1, '{{\"k\": 1}}')");
            let mut i = w as i64;
            while Instant::now() < until {
                sqlx::query(&sql)
                    .bind(i)
                    .execute(&pool)
                    .await
                    .expect("insert");
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                i += connections as i64;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let _ = sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&pool)
        .await;
    count.load(std::sync::atomic::Ordering::Relaxed) as f64 / secs as f64
}

/// Resident and peak resident memory of this process (the whole mesh and
/// the driver), in MiB.
fn rss() -> (f64, f64) {
    proc_status::memory("self")
}

/// The embedded figures: logins, reads, orders at 16 connections.
async fn embedded(run: Run) {
    let admin = run.token("bench@example.com", "bench-password").await;
    let run = Arc::new(run);
    auth("embedded", run.clone()).await;
    let tokens = buyers(&run, CONCURRENCY).await;
    let hot = products(&run, &admin, 1).await;
    let create = orders(&run, &tokens, &hot, CONCURRENCY, 1000, false).await;
    let pay = orders(&run, &tokens, &hot, CONCURRENCY, 500, true).await;
    println!(
        "{:>16}: create-order {:>6.0}/s (p50 {:.1?}, p99 {:.1?}) | create+pay {:>6.0}/s (p50 {:.1?}, p99 {:.1?})  [{CONCURRENCY} connections, one product; failures {} / {}]",
        "embedded",
        create.rate,
        create.p50,
        create.p99,
        pay.rate,
        pay.p50,
        pay.p99,
        create.failures(),
        pay.failures()
    );
    if let Ok(run) = Arc::try_unwrap(run) {
        run.mesh.shutdown().await;
    }
}

/// The Postgres + NATS matrix: the insert ceiling, then orders and
/// order+pay at 16 and 64 connections on one hot product and on 16
/// products, with commits per order and memory.
async fn postgres(run: Run, db: &str, schema: &str) {
    let pg = sqlx::PgPool::connect(db).await.expect("postgres");
    for connections in [16, 64] {
        let tps = insert_ceiling(db, schema, connections, 5).await;
        println!("postgres ceiling: {tps:>6.0} single-row inserts/s at {connections} connections");
    }
    let admin = run.token("bench@example.com", "bench-password").await;
    let run = Arc::new(run);
    auth("postgres + nats", run.clone()).await;
    let tokens = buyers(&run, 64).await;
    let hot = products(&run, &admin, 1).await;
    let spread = products(&run, &admin, 16).await;
    // Warm the pools and caches.
    orders(&run, &tokens, &spread, 16, 200, true).await;
    let (idle, _) = rss();
    println!(
        "{:>16} {:>6} {:>11} {:>9} {:>9} {:>9} {:>14}  failures",
        "", "conns", "products", "per s", "p50", "p99", "commits/order"
    );
    for connections in [16, 64] {
        for (label, products) in [("1 (hot)", &hot), ("16", &spread)] {
            for pay in [false, true] {
                let total = if pay { 600 } else { 1200 };
                let before = commits(&pg).await;
                let o = orders(&run, &tokens, products, connections, total, pay).await;
                let per_order = (commits(&pg).await - before) as f64 / total as f64;
                println!(
                    "{:>16} {connections:>6} {label:>11} {:>9.0} {:>9.1?} {:>9.1?} {per_order:>14.1}  {}",
                    if pay { "order+pay" } else { "order" },
                    o.rate,
                    o.p50,
                    o.p99,
                    o.failures()
                );
            }
        }
    }
    cart(&run, &pg, &tokens, &spread).await;
    // Where the writes went: rows written per table over the whole run.
    let tables: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT schemaname::text, relname::text, (n_tup_ins + n_tup_upd + n_tup_del)::bigint AS writes
         FROM pg_stat_user_tables WHERE schemaname LIKE $1 ORDER BY writes DESC LIMIT 12",
    )
    .bind(format!("{schema}%"))
    .fetch_all(&pg)
    .await
    .unwrap_or_default();
    println!("rows written per table over the run (inserts + updates + deletes):");
    for (schema, table, writes) in tables {
        println!("  {writes:>8}  {schema}.{table}");
    }
    let (now, peak) = rss();
    println!(
        "memory (mesh and driver in one process): {idle:.0} MiB before the matrix, {now:.0} MiB after, {peak:.0} MiB peak"
    );
    if let Ok(run) = Arc::try_unwrap(run) {
        run.mesh.shutdown().await;
    }
}

#[tokio::main]
async fn main() {
    embedded(start(&[("SEED_DEMO", "false".into())]).await).await;

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
    postgres(start(&vars).await, &db, &prefix).await;
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
