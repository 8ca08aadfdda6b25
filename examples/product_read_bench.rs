//! The gateway's cached product read against a bare axum JSON handler, in
//! one run with one client driver: requests/s, p50/p99 and the ratio.
//!
//! ```sh
//! cargo run --release --example product_read_bench
//! ```
//! The mesh runs embedded with the product cache in Redis (`REDIS_URL`,
//! default `redis://127.0.0.1:6379`; `REDIS_URL=` for none). The bare
//! handler answers the same JSON document. The driver is a minimal
//! HTTP/1.1 keep-alive client (like wrk): `BENCH_CONNECTIONS` connections
//! (32), rounds of `BENCH_SECS` seconds (3) alternating between the two
//! servers, three rounds each.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::get;
use platform::Config;
use shopmesh::{Mesh, MeshAddrs};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

// The allocator of the shopmesh binaries, so the mesh runs as it does there.
#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Requests answered 200 and the latency of each, in microseconds.
struct Round {
    ok: u64,
    failed: u64,
    latencies: Vec<u32>,
    elapsed: Duration,
}

/// One keep-alive connection sending `GET path` until `deadline`.
async fn connection(addr: SocketAddr, path: String, deadline: Instant) -> std::io::Result<Round> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n");
    let mut buf = vec![0u8; 16 * 1024];
    let mut round = Round {
        ok: 0,
        failed: 0,
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
    };
    while Instant::now() < deadline {
        let began = Instant::now();
        stream.write_all(request.as_bytes()).await?;
        let mut filled = 0;
        let (head_end, length, status) = loop {
            let n = stream.read(&mut buf[filled..]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            filled += n;
            if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..end]).unwrap_or_default();
                let status = head.get(9..12).unwrap_or("000").to_string();
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                break (end + 4, length, status);
            }
            if filled == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
        };
        while filled < head_end + length {
            if buf.len() < head_end + length {
                buf.resize(head_end + length, 0);
            }
            let n = stream.read(&mut buf[filled..]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            filled += n;
        }
        round.latencies.push(began.elapsed().as_micros() as u32);
        if status == "200" {
            round.ok += 1;
        } else {
            round.failed += 1;
        }
    }
    Ok(round)
}

async fn drive(addr: SocketAddr, path: &str, connections: usize, secs: u64) -> Round {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(connection(addr, path.to_string(), deadline)))
        .collect();
    let mut total = Round {
        ok: 0,
        failed: 0,
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        match task.await {
            Ok(Ok(r)) => {
                total.ok += r.ok;
                total.failed += r.failed;
                total.latencies.extend(r.latencies);
            }
            _ => total.failed += 1,
        }
    }
    total.elapsed = started.elapsed();
    total
}

struct Totals {
    ok: u64,
    failed: u64,
    secs: f64,
    latencies: Vec<u32>,
}

impl Totals {
    fn add(&mut self, r: Round) {
        self.ok += r.ok;
        self.failed += r.failed;
        self.secs += r.elapsed.as_secs_f64();
        self.latencies.extend(r.latencies);
    }

    fn rps(&self) -> f64 {
        self.ok as f64 / self.secs.max(1e-9)
    }

    fn pct(&mut self, p: f64) -> f64 {
        self.latencies.sort_unstable();
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = ((p * self.latencies.len() as f64) as usize).min(self.latencies.len() - 1);
        f64::from(self.latencies[i]) / 1000.0
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let connections = env_or("BENCH_CONNECTIONS", 32usize);
    let secs = env_or("BENCH_SECS", 3u64);
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut vars: HashMap<String, String> = [
        ("RATE_LIMIT_RPS", "0"),
        ("RUST_LOG", "error"),
        ("ADMIN_EMAIL", "bench@example.com"),
        ("ADMIN_PASSWORD", "bench-password"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if !redis.is_empty() {
        vars.insert("REDIS_URL".into(), redis.clone());
    }
    let config = Config::from_source("product-read-bench", &vars)?;
    let mesh = Mesh::start(config, &MeshAddrs::ephemeral()).await?;
    let base = mesh.gateway_url();
    let http = reqwest::Client::new();
    let list: serde_json::Value = http
        .get(format!("{base}/api/v1/products?limit=1"))
        .send()
        .await?
        .json()
        .await?;
    let id = list["items"][0]["id"]
        .as_str()
        .expect("the demo catalog has products")
        .to_string();
    let path = format!("/api/v1/products/{id}");
    // The first read fills the cache.
    let document: serde_json::Value = http
        .get(format!("{base}{path}"))
        .send()
        .await?
        .json()
        .await?;

    let bare = {
        let document = document.clone();
        axum::Router::new().route(
            "/api/v1/products/{id}",
            get(move || {
                let document = document.clone();
                async move { axum::Json(document) }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(gateway::nodelay(listener), bare).await });
    let gateway_addr: SocketAddr = base.trim_start_matches("http://").parse()?;

    let empty = || Totals {
        ok: 0,
        failed: 0,
        secs: 0.0,
        latencies: Vec::new(),
    };
    let (mut through_gateway, mut through_bare) = (empty(), empty());
    // Warm-up, then alternate so that other load on the machine hits both.
    drive(gateway_addr, &path, connections, 1).await;
    drive(bare_addr, &path, connections, 1).await;
    for _ in 0..3 {
        through_gateway.add(drive(gateway_addr, &path, connections, secs).await);
        through_bare.add(drive(bare_addr, &path, connections, secs).await);
    }

    println!(
        "product_read_bench: GET /api/v1/products/{{id}}, {connections} connections, 3 x {secs} s each, cache: {}",
        if redis.is_empty() { "none" } else { "redis" }
    );
    println!(
        "{:<26} {:>10} {:>9} {:>9} {:>8}",
        "", "req/s", "p50 ms", "p99 ms", "failed"
    );
    for (name, t) in [
        ("gateway (cached read)", &mut through_gateway),
        ("bare axum JSON handler", &mut through_bare),
    ] {
        let (p50, p99) = (t.pct(0.50), t.pct(0.99));
        println!(
            "{name:<26} {:>10.0} {p50:>9.2} {p99:>9.2} {:>8}",
            t.rps(),
            t.failed
        );
    }
    println!(
        "ratio gateway / bare: {:.2}x",
        through_gateway.rps() / through_bare.rps().max(1e-9)
    );
    mesh.shutdown().await;
    Ok(())
}
