//! Scale-out benchmark: the mesh as separate processes (`shopmesh serve
//! <component>`) on Postgres + NATS, one process per service beside two
//! replicas each of order-, product- and payment-svc (on 127.0.0.1 and
//! 127.0.0.2 behind one name, `GRPC_HOSTS`).
//!
//! The two set-ups take turns in the order A B B A A B B A…, so that what
//! the machine does meanwhile (a checkpoint, a slow minute) falls on both
//! alike. Each turn starts its set-up afresh on its own schemas and
//! stream, warms it with 200 orders, measures both phases below and
//! removes it. Each set-up's figures are summed over its turns:
//! - order+pay/s, p50 and p99 through the gateway at 16 connections, as
//!   fast as they go, with the mesh's CPU time (by service), Postgres
//!   commits and store operations per order;
//! - p50 and p99 at a fixed rate below both set-ups' capacity: the latency
//!   a client sees at a given load;
//! - each replica's share of the calls its service served (read from its
//!   own `/metrics`).
//!
//! ```sh
//! cargo build --release --bin shopmesh
//! cargo run --release --example replicas_bench
//! ```
//! Postgres from `TEST_DATABASE_URL`, NATS from `TEST_NATS_URL` (local
//! defaults); `BENCH_ORDERS` (default 2000) orders per set-up as fast as
//! they go, `BENCH_RATE` (default 30) orders per second and
//! `BENCH_FIXED_SECS` (default 60) seconds per set-up at the fixed rate,
//! `BENCH_TURNS` (default 4) turns per set-up. Throw-away
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
const SCALED: [ServiceId; 3] = [ServiceId::Order, ServiceId::Product, ServiceId::Payment];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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

/// What one process's `/metrics` counts: gRPC calls served (health checks
/// aside), store operations, and those of them that lost a
/// compare-and-swap to another writer.
#[derive(Clone, Default)]
struct Counts {
    calls: u64,
    store_ops: u64,
    /// Lost compare-and-swaps, by collection.
    conflicts: BTreeMap<String, u64>,
}

async fn counts(http: &reqwest::Client, metrics: SocketAddr) -> Counts {
    let mut counts = Counts::default();
    let Ok(response) = http.get(format!("http://{metrics}/metrics")).send().await else {
        return counts;
    };
    let text = response.text().await.unwrap_or_default();
    for line in text.lines() {
        let Some(n) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let n = n as u64;
        if line.starts_with("rpc_server_duration_seconds_count") && !line.contains("grpc.health") {
            counts.calls += n;
        } else if line.starts_with("db_client_operation_duration_seconds_count") {
            counts.store_ops += n;
            if line.contains("outcome=\"version_conflict\"") {
                let collection = line
                    .split("collection=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or("?");
                *counts.conflicts.entry(collection.to_string()).or_default() += n;
            }
        }
    }
    counts
}

/// CPU time (user + system) a process has used, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32, tick: f64) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which ends with the last ')': state
    // is the 3rd field of the line, utime the 14th and stime the 15th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Duration::from_secs_f64((ticks(11) + ticks(12)) / tick)
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
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

/// What one set-up measured over all its turns of a phase.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    failures: BTreeMap<u16, usize>,
    elapsed: Duration,
    /// CPU time of the set-up's processes, by service.
    cpu: BTreeMap<String, Duration>,
    commits: i64,
    store_ops: u64,
    /// Lost compare-and-swaps, by collection.
    conflicts: BTreeMap<String, u64>,
    /// p99 of each turn.
    turns: Vec<Duration>,
}

impl Tally {
    fn add(&mut self, mut latencies: Vec<Duration>, failures: BTreeMap<u16, usize>) {
        latencies.sort();
        self.turns.push(pct(&latencies, 0.99));
        self.latencies.extend(latencies);
        for (status, n) in failures {
            *self.failures.entry(status).or_default() += n;
        }
    }

    fn p(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        pct(&l, p)
    }

    fn orders(&self) -> usize {
        self.latencies.len() + self.failures.values().sum::<usize>()
    }
}

/// One set-up, started and ready to take orders.
struct Mesh {
    procs: Vec<Proc>,
    base: String,
    tokens: Vec<String>,
    products: Vec<String>,
    tag: String,
}

impl Mesh {
    async fn start(replicas: u8, db: &str, nats: &str, http: &reqwest::Client) -> Mesh {
        let tag = format!("r{}", &uuid::Uuid::now_v7().simple().to_string()[..20]);
        let (procs, base) = processes::start(
            |id| if SCALED.contains(&id) { replicas } else { 1 },
            db,
            nats,
            &tag,
            &[],
        );
        let admin = login(http, &base, "bench@example.com").await;
        let mut tokens = Vec::new();
        for _ in 0..CONNECTIONS {
            let email = format!("buyer-{}@example.com", uuid::Uuid::now_v7().simple());
            post(
                http,
                format!("{base}/api/v1/auth/register"),
                None,
                json!({"email": email, "password": "bench-password", "name": "Buyer"}),
            )
            .await;
            tokens.push(login(http, &base, &email).await);
        }
        let mut products = Vec::new();
        for _ in 0..16 {
            let sku = format!("BENCH-{}", uuid::Uuid::now_v7().simple());
            let (_, product) = post(http, format!("{base}/api/v1/products"), Some(&admin),
                json!({"sku": sku, "name": "Bench", "category": "bench", "price": {"amount": 500, "currency": "USD"}, "stock": 10_000_000})).await;
            products.push(product["id"].as_str().expect("product").to_string());
        }
        Mesh {
            procs,
            base,
            tokens,
            products,
            tag,
        }
    }

    fn body(&self, i: usize) -> Value {
        json!({"items": [{"product_id": self.products[i % self.products.len()], "quantity": 1}],
            "shipping_address": {"name": "B", "line1": "1 St", "city": "C", "postal_code": "1", "country": "US"}})
    }

    /// CPU time each process has used, by the service it serves.
    fn cpu(&self, tick: f64) -> Vec<(String, Duration)> {
        self.procs
            .iter()
            .map(|p| {
                let service = p.service.map_or("gateway", |id| id.name());
                (service.to_string(), cpu_time(p.child.id(), tick))
            })
            .collect()
    }

    /// Waits (a minute at most) until every consumer has caught up.
    async fn quiesce(&self, nats: &str) {
        processes::quiesce(nats, &self.tag, Duration::from_secs(60)).await;
    }

    async fn counts(&self, http: &reqwest::Client) -> Vec<Counts> {
        futures::future::join_all(self.procs.iter().map(|p| counts(http, p.metrics))).await
    }

    /// `total` order+pay over [`CONNECTIONS`] connections, as fast as they go.
    async fn saturate(
        &self,
        http: &reqwest::Client,
        total: usize,
    ) -> (Vec<Duration>, BTreeMap<u16, usize>) {
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(BTreeMap::<u16, usize>::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for (w, token) in self.tokens.iter().enumerate() {
            let (http, base, token) = (http.clone(), self.base.clone(), token.clone());
            let (latencies, failures) = (latencies.clone(), failures.clone());
            let body = self.body(w);
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
        let latencies = latencies.lock().unwrap().clone();
        let failures = failures.lock().unwrap().clone();
        (latencies, failures)
    }

    /// Order+pay at `rate` per second for `secs`, each timed from when it
    /// was due, so a stall that delays later orders counts against them too.
    async fn fixed_rate(
        &self,
        http: &reqwest::Client,
        rate: f64,
        secs: f64,
    ) -> (Vec<Duration>, BTreeMap<u16, usize>) {
        let due_every = Duration::from_secs_f64(1.0 / rate);
        let started = tokio::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..(rate * secs) as usize {
            let due = started + due_every * i as u32;
            tokio::time::sleep_until(due).await;
            let (http, base, token, body) = (
                http.clone(),
                self.base.clone(),
                self.tokens[i % CONNECTIONS].clone(),
                self.body(i),
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
        (latencies, failures)
    }
}

/// Which set-up takes turn `k`: A B B A A B B A…
fn turn(k: usize) -> usize {
    (k + k / 2) % 2
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let db = platform::testing::postgres_url();
    let nats = std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let total: usize = env_or("BENCH_ORDERS", 2000);
    let rate: f64 = env_or("BENCH_RATE", 30.0);
    let fixed_secs: f64 = env_or("BENCH_FIXED_SECS", 60.0);
    let turns: usize = env_or("BENCH_TURNS", 4).max(1);
    let tick = clock_ticks_per_second();
    println!(
        "order+pay through the gateway, 16 products; the two set-ups take {turns} turns each (A B B A…)"
    );
    let http = reqwest::Client::new();
    let pg = sqlx::PgPool::connect(&db).await.expect("postgres");
    let commits = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&pg)
        .await
        .unwrap_or_default()
    };
    const REPLICAS: [u8; 2] = [1, 2];
    let mut saturated = [Tally::default(), Tally::default()];
    let mut fixed = [Tally::default(), Tally::default()];
    // Calls each replica of each scaled service served, per set-up.
    let mut calls: [BTreeMap<&str, Vec<u64>>; 2] = Default::default();
    for k in 0..2 * turns {
        let s = turn(k);
        let mesh = Mesh::start(REPLICAS[s], &db, &nats, &http).await;
        // Warm pools, caches and connections.
        mesh.saturate(&http, 200).await;
        mesh.quiesce(&nats).await;
        let before = mesh.counts(&http).await;
        let (c0, cpu0, t0) = (commits().await, mesh.cpu(tick), Instant::now());
        let (latencies, failures) = mesh.saturate(&http, total / turns).await;
        let tally = &mut saturated[s];
        tally.elapsed += t0.elapsed();
        for ((service, before), (_, after)) in cpu0.iter().zip(mesh.cpu(tick)) {
            *tally.cpu.entry(service.clone()).or_default() += after - *before;
        }
        tally.commits += commits().await - c0;
        let during = mesh.counts(&http).await;
        for (b, a) in before.iter().zip(&during) {
            tally.store_ops += a.store_ops - b.store_ops;
            for (collection, n) in &a.conflicts {
                let was = b.conflicts.get(collection).copied().unwrap_or(0);
                *tally.conflicts.entry(collection.clone()).or_default() += n - was;
            }
        }
        tally.add(latencies, failures);
        // The events the burst left (labels, notices) are handled before
        // the fixed-rate phase, which would otherwise measure their
        // draining.
        mesh.quiesce(&nats).await;
        let (latencies, failures) = mesh
            .fixed_rate(&http, rate, fixed_secs / turns as f64)
            .await;
        fixed[s].add(latencies, failures);
        let after = mesh.counts(&http).await;
        for id in SCALED {
            let served: Vec<u64> = mesh
                .procs
                .iter()
                .zip(before.iter().zip(&after))
                .filter(|(p, _)| p.service == Some(id))
                .map(|(_, (b, a))| a.calls - b.calls)
                .collect();
            let sum = calls[s]
                .entry(id.name())
                .or_insert_with(|| vec![0; served.len()]);
            for (total, n) in sum.iter_mut().zip(served) {
                *total += n;
            }
        }
        let tag = mesh.tag.clone();
        drop(mesh);
        processes::cleanup(&db, &nats, &tag).await;
    }

    println!(
        "\nas fast as they go, {CONNECTIONS} connections, {} orders each:",
        total / turns * turns
    );
    for (replicas, t) in REPLICAS.iter().zip(&saturated) {
        let n = t.orders() as f64;
        println!(
            "  {replicas} replica(s): {:>5.0} order+pay/s, p50 {:>6.1} ms, p99 {:>6.1} ms (turns {:?}), CPU {:.1} ms and {:.1} Postgres commits per order, failures {:?}",
            t.latencies.len() as f64 / t.elapsed.as_secs_f64(),
            ms(t.p(0.5)),
            ms(t.p(0.99)),
            t.turns.iter().map(|d| ms(*d).round()).collect::<Vec<_>>(),
            ms(t.cpu.values().sum()) / n,
            t.commits as f64 / n,
            t.failures,
        );
        let by_collection: Vec<String> = t
            .conflicts
            .iter()
            .filter(|(_, lost)| **lost > 0)
            .map(|(collection, lost)| format!("{collection} {:.2}", *lost as f64 / n))
            .collect();
        println!(
            "      {:.1} store operations per order, {:.2} of them compare-and-swaps lost to another writer ({})",
            t.store_ops as f64 / n,
            t.conflicts.values().sum::<u64>() as f64 / n,
            by_collection.join(", ")
        );
    }
    println!("  CPU per order by service (ms), 1 replica / 2 replicas:");
    for (service, one) in &saturated[0].cpu {
        let two = saturated[1].cpu.get(service).copied().unwrap_or_default();
        println!(
            "    {service:<15} {:>5.2} / {:>5.2}",
            ms(*one) / saturated[0].orders() as f64,
            ms(two) / saturated[1].orders() as f64
        );
    }
    println!("\nat a fixed {rate:.0} order+pay/s, {fixed_secs:.0} s each:");
    for (replicas, t) in REPLICAS.iter().zip(&fixed) {
        println!(
            "  {replicas} replica(s): p50 {:>6.1} ms, p99 {:>6.1} ms (turns {:?}), failures {:?}",
            ms(t.p(0.5)),
            ms(t.p(0.99)),
            t.turns.iter().map(|d| ms(*d).round()).collect::<Vec<_>>(),
            t.failures,
        );
    }
    let ratio = |t: &[Tally; 2], p: f64| ms(t[1].p(p)) / ms(t[0].p(p)).max(f64::EPSILON);
    println!(
        "\n2 replicas against 1: p99 {:+.0} % at the fixed rate, {:+.0} % as fast as they go; throughput {:+.0} %",
        100.0 * (ratio(&fixed, 0.99) - 1.0),
        100.0 * (ratio(&saturated, 0.99) - 1.0),
        100.0
            * ((saturated[1].latencies.len() as f64 / saturated[1].elapsed.as_secs_f64())
                / (saturated[0].latencies.len() as f64 / saturated[0].elapsed.as_secs_f64())
                - 1.0),
    );
    println!("\ncalls per replica, both phases:");
    for (replicas, calls) in REPLICAS.iter().zip(&calls) {
        for (service, calls) in calls {
            let sum: u64 = calls.iter().sum();
            let shares: Vec<String> = calls
                .iter()
                .map(|c| format!("{:.1} %", 100.0 * *c as f64 / sum.max(1) as f64))
                .collect();
            println!(
                "  {replicas} replica(s), {service:<8} {calls:?} = {}",
                shares.join(" / ")
            );
        }
    }
}
