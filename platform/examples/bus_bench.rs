//! Event-bus benchmark: publish+ack throughput and end-to-end latency
//! percentiles (publish → handler) for each backend.
//!
//! ```sh
//! cargo run --release -p platform --example bus_bench
//! ```
//! NATS from `TEST_NATS_URL` (default `nats://127.0.0.1:4222`), in a
//! throw-away stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use platform::events::memory::InProcessBus;
use platform::events::nats::{NatsBus, NatsSettings};
use platform::events::{ConsumerConfig, Delivery, EventBus, Handler, HandlerError, envelope};
use proto::events::OrderCreated;
use proto::events::envelope::Payload;

const N: usize = 5_000;
const CONCURRENCY: usize = 32;

struct Latency {
    sent: Arc<Mutex<HashMap<String, Instant>>>,
    samples: Arc<Mutex<Vec<Duration>>>,
}

#[async_trait::async_trait]
impl Handler for Latency {
    async fn handle(&self, d: &Delivery) -> Result<(), HandlerError> {
        let now = Instant::now();
        if let Some(at) = self.sent.lock().unwrap().get(&d.envelope.id) {
            self.samples.lock().unwrap().push(now - *at);
        }
        Ok(())
    }
}

fn event(n: usize) -> proto::events::Envelope {
    envelope(
        "order.created",
        &n.to_string(),
        "bench",
        Payload::OrderCreated(OrderCreated {
            order_id: n.to_string(),
            ..Default::default()
        }),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn bench(name: &str, bus: Arc<dyn EventBus>) {
    // Throughput: publish N, each awaiting its acknowledgement, CONCURRENCY at a time.
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..CONCURRENCY {
        let bus = bus.clone();
        tasks.spawn(async move {
            let mut i = w;
            while i < N {
                bus.publish(&event(i)).await.expect("publish");
                i += CONCURRENCY;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let throughput = N as f64 / started.elapsed().as_secs_f64();

    // Latency: a consumer on a fresh type; events paced so queueing does not dominate.
    let sent = Arc::new(Mutex::new(HashMap::new()));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let mut config = ConsumerConfig::new("bench-latency", &["bench.latency"]);
    config.ack_wait = Duration::from_secs(30);
    let sub = bus
        .subscribe(
            config,
            Arc::new(Latency {
                sent: sent.clone(),
                samples: samples.clone(),
            }),
        )
        .await
        .unwrap();
    let rounds = 1_000;
    for n in 0..rounds {
        let mut e = event(n);
        e.r#type = "bench.latency".into();
        sent.lock().unwrap().insert(e.id.clone(), Instant::now());
        bus.publish(&e).await.unwrap();
        if n % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while samples.lock().unwrap().len() < rounds && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sub.stop().await;
    let mut s = samples.lock().unwrap().clone();
    s.sort();
    println!(
        "{name:>7}: publish+ack {throughput:>8.0} events/s ({N} events, {CONCURRENCY} concurrent) | end-to-end latency p50 {:?} p95 {:?} p99 {:?} ({} samples)",
        percentile(&s, 0.50),
        percentile(&s, 0.95),
        percentile(&s, 0.99),
        s.len()
    );
}

#[tokio::main]
async fn main() {
    bench("memory", Arc::new(InProcessBus::new("shop"))).await;
    let url = std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let settings = NatsSettings {
        stream: format!("BENCH{tag}"),
        prefix: format!("bench{tag}"),
        ..NatsSettings::default()
    };
    match NatsBus::connect(&url, settings).await {
        Ok(bus) => {
            bench("nats", Arc::new(bus.clone())).await;
            let _ = bus.delete_stream().await;
        }
        Err(err) => println!("   nats: skipped ({err})"),
    }
}
