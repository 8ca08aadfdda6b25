//! The pages against the JSON API, in one run on the all-in-one mesh:
//! the product page (HTML) beside the JSON product read, each alone at
//! full load, then the browser-like mix (home, search, product page,
//! cart and checkout through their forms) with pages/s and p50/p99 per
//! page.
//!
//! ```sh
//! cargo run --release --example pages_bench
//! ```
//! The mesh runs embedded (memory store, in-process bus, demo catalog
//! with its pictures; `REDIS_URL` for the product cache, default
//! `redis://127.0.0.1:6379`, `REDIS_URL=` for none). `BENCH_USERS`
//! virtual users (64), `BENCH_SECS` seconds per run (20);
//! `BENCH_ONLY=page` runs the product page alone (for a profiler).

use std::time::{Duration, Instant};

use platform::Config;
use shopmesh::{Mesh, MeshAddrs};
use shopmesh_load::{Op, Options};

// The allocator of the shopmesh binaries, so the mesh runs as it does there.
#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const ADMIN: (&str, &str) = ("bench-admin@example.com", "bench-admin-password");

async fn run(base: &str, mix: Vec<(Op, u32)>, users: usize, secs: u64) -> shopmesh_load::Report {
    let options = Options {
        base_url: base.to_string(),
        users,
        duration: Duration::from_secs(secs),
        ramp_up: Duration::from_secs(1),
        mix,
        progress: false,
        ..Options::default()
    };
    shopmesh_load::run(options)
        .await
        .expect("the load run completes")
}

fn rps(report: &shopmesh_load::Report, op: Op) -> f64 {
    report
        .operation(op.name())
        .map(|s| s.ok as f64 / report.elapsed_secs.max(1e-9))
        .unwrap_or_default()
}

/// Whether the whole catalog is listed with a picture for each product.
async fn all_pictured(http: &reqwest::Client, base: &str, count: &mut usize) -> bool {
    let mut cursor = String::new();
    *count = 0;
    loop {
        let url = format!("{base}/api/v1/products?limit=100&cursor={cursor}");
        let Ok(response) = http.get(url).send().await else {
            return false;
        };
        let Ok(body) = response.json::<serde_json::Value>().await else {
            return false;
        };
        let Some(items) = body["items"].as_array() else {
            return false;
        };
        *count += items.len();
        if items
            .iter()
            .any(|p| p["images"].as_array().is_none_or(|i| i.is_empty()))
        {
            return false;
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => return *count >= 20,
        }
    }
}

#[tokio::main]
async fn main() {
    let users = env_or("BENCH_USERS", 64usize);
    let secs = env_or("BENCH_SECS", 20u64);
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut vars = vec![
        ("ADMIN_EMAIL", ADMIN.0.to_string()),
        ("ADMIN_PASSWORD", ADMIN.1.to_string()),
        ("RATE_LIMIT_RPS", "0".to_string()),
        ("ORDER_MAX_UNPAID_PER_CUSTOMER", "1000".to_string()),
    ];
    if !redis.is_empty() {
        vars.push(("REDIS_URL", redis));
    }
    let vars: std::collections::HashMap<&str, &str> =
        vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let config = Config::from_source("pages-bench", &vars).expect("valid configuration");
    let mesh = Mesh::start(config, &MeshAddrs::ephemeral())
        .await
        .expect("the mesh starts");
    let base = mesh.gateway_url();
    // The demo catalog and its pictures are seeded in the background:
    // wait until every listed product shows its picture.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut products = 0;
    while !all_pictured(&http, &base, &mut products).await {
        assert!(
            Instant::now() < deadline,
            "the demo catalog never got its pictures"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("{products} demo products, each with its picture");
    println!("{users} users, {secs} s per run, all-in-one mesh (memory store, in-process bus)");
    if std::env::var("BENCH_ONLY").is_ok_and(|only| only == "page") {
        // For a profiler: the product page alone.
        let page = run(&base, vec![(Op::PageProduct, 1)], users, secs).await;
        println!("{}", page.table());
        return;
    }
    let json = run(&base, vec![(Op::Product, 1)], users, secs).await;
    let page = run(&base, vec![(Op::PageProduct, 1)], users, secs).await;
    let (json_rps, page_rps) = (rps(&json, Op::Product), rps(&page, Op::PageProduct));
    println!("\nJSON product read alone:\n{}", json.table());
    println!("\nProduct page (HTML) alone:\n{}", page.table());
    println!(
        "\nproduct page / JSON product read: {page_rps:.0} / {json_rps:.0} requests/s = {:.2}x (target at least 0.70x)",
        page_rps / json_rps.max(1e-9)
    );
    let mix = run(&base, shopmesh_load::browser_mix(), users, secs).await;
    println!("\nBrowser-like mix (pages/s per page):\n{}", mix.table());
    mesh.shutdown().await;
}
