//! Media benchmark: the mesh as separate processes on Postgres + NATS, with
//! media-svc storing bytes in a directory. Prints
//! - media-svc's peak RSS while 16 uploads of a ~10 MiB JPEG run at once
//!   (target: under 400 MiB),
//! - uploads/s with thumbnails and p50/p99 for 1 MP and 12 MP JPEGs at 4
//!   and 16 concurrent uploads (through the gateway, each to a product of
//!   its own, answered once the product shows the image),
//! - `GET /media/{key}/{width}` requests/s for a thumbnail the gateway
//!   keeps in memory, beside a bare axum handler serving the same bytes
//!   with the same headers, in the same run and with the same client.
//!
//! ```sh
//! cargo build --release --bin shopmesh
//! cargo run --release --example media_bench
//! ```
//! Postgres from `TEST_DATABASE_URL`, NATS from `TEST_NATS_URL` (local
//! defaults). Throw-away schemas, streams and files are removed afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use media_svc::samples;
use platform::ServiceId;
use serde_json::{Value, json};

#[path = "support/proc_status.rs"]
mod proc_status;
#[path = "support/processes.rs"]
mod processes;

const ADMIN: (&str, &str) = ("bench@example.com", "bench-password");

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn login(http: &reqwest::Client, base: &str) -> String {
    let r: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": ADMIN.0, "password": ADMIN.1}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login body");
    r["access_token"].as_str().expect("a token").to_string()
}

async fn products(http: &reqwest::Client, base: &str, token: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let r: Value = http
            .post(format!("{base}/api/v1/products"))
            .bearer_auth(token)
            .json(&json!({"sku": format!("MB-{i}-{}", uuid::Uuid::now_v7().simple()), "name": "Bench item",
                   "category": "bench", "price": {"amount": 100, "currency": "USD"}, "stock": 1}))
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("product");
        ids.push(r["id"].as_str().expect("an id").to_string());
    }
    ids
}

fn form(file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----mediabench";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Uploads `file` once to each product, `concurrency` at a time; returns
/// each upload's latency (all must answer 201) and the wall time.
async fn uploads(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    products: &[String],
    file: &[u8],
    concurrency: usize,
) -> (Vec<Duration>, Duration) {
    let (content_type, body) = form(file);
    let body = axum::body::Bytes::from(body);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, base, token, next) = (
            http.clone(),
            base.to_string(),
            token.to_string(),
            next.clone(),
        );
        let (content_type, body, products) =
            (content_type.clone(), body.clone(), products.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(product) = products.get(i) else {
                    return latencies;
                };
                let t = Instant::now();
                let r = http
                    .post(format!("{base}/api/v1/products/{product}/images"))
                    .bearer_auth(&token)
                    .header("content-type", &content_type)
                    .body(body.clone())
                    .send()
                    .await
                    .expect("the gateway answers");
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                assert_eq!(status, 201, "upload: {text}");
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("an upload worker"));
    }
    all.sort();
    (all, started.elapsed())
}

/// GETs `url` from 16 connections for `duration`; returns requests/s.
async fn hammer(http: &reqwest::Client, url: &str, duration: Duration) -> f64 {
    let done = Arc::new(AtomicUsize::new(0));
    let end = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (http, url, done) = (http.clone(), url.to_string(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let r = http.get(&url).send().await.expect("an answer");
                assert_eq!(r.status(), 200);
                r.bytes().await.expect("a body");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.expect("a reader");
    }
    done.load(Ordering::Relaxed) as f64 / duration.as_secs_f64()
}

/// The bare handler: the same bytes and headers from a plain axum route.
async fn bare_server(bytes: Vec<u8>, etag: String) -> String {
    use axum::http::header;
    let bytes = axum::body::Bytes::from(bytes);
    let app = axum::Router::new().route(
        "/thumb",
        axum::routing::get(move || {
            let (bytes, etag) = (bytes.clone(), etag.clone());
            async move {
                (
                    [
                        (header::CONTENT_TYPE, "image/jpeg".to_string()),
                        (header::ETAG, etag),
                        (
                            header::CACHE_CONTROL,
                            "public, max-age=31536000, immutable".to_string(),
                        ),
                    ],
                    bytes,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/thumb")
}

#[tokio::main]
async fn main() {
    let db = platform::testing::postgres_url();
    let nats = std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let tag = format!("mb{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let dir = std::env::temp_dir().join(format!("shopmesh-media-bench-{tag}"));
    let extra = vec![(
        "MEDIA_STORE_URL".to_string(),
        format!("file://{}", dir.display()),
    )];
    let (procs, base) = processes::start(|_| 1, &db, &nats, &tag, &extra);
    let media_pid = procs
        .iter()
        .find(|p| p.service == Some(ServiceId::Media))
        .expect("media-svc")
        .child
        .id()
        .to_string();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("a client");
    let token = login(&http, &base).await;

    println!("making images…");
    let one_mp = samples::jpeg(&samples::grainy(samples::picture(1155, 866, 1), 1), 90);
    let twelve_mp = samples::jpeg(&samples::grainy(samples::picture(4000, 3000, 2), 2), 85);
    let mut large = samples::jpeg(&samples::grainy(samples::picture(4000, 3000, 3), 3), 97);
    let limit = 10 * 1024 * 1024;
    let mut quality = 97;
    while large.len() > limit && quality > 80 {
        quality -= 2;
        large = samples::jpeg(
            &samples::grainy(samples::picture(4000, 3000, 3), 3),
            quality,
        );
    }
    println!(
        "files: 1 MP {:.1} MiB, 12 MP {:.1} MiB, large {:.1} MiB (quality {quality})",
        one_mp.len() as f64 / 1048576.0,
        twelve_mp.len() as f64 / 1048576.0,
        large.len() as f64 / 1048576.0
    );

    // Peak memory first, while media-svc's high-water mark is still its own.
    let (idle, _) = proc_status::memory(&media_pid);
    let targets = products(&http, &base, &token, 16).await;
    let (lat, wall) = uploads(&http, &base, &token, &targets, &large, 16).await;
    let (_, peak) = proc_status::memory(&media_pid);
    println!(
        "16 uploads of {:.1} MiB at once: {:.1} s, media-svc RSS {idle:.0} MiB idle, peak {peak:.0} MiB (target < 400), p99 {:.2} s",
        large.len() as f64 / 1048576.0,
        wall.as_secs_f64(),
        pct(&lat, 0.99).as_secs_f64()
    );

    for (name, file, n) in [("1 MP", &one_mp, 48), ("12 MP", &twelve_mp, 16)] {
        for concurrency in [4, 16] {
            let targets = products(&http, &base, &token, n).await;
            let (lat, wall) = uploads(&http, &base, &token, &targets, file, concurrency).await;
            println!(
                "{name} uploads at {concurrency:>2} at once: {:.1} uploads/s, p50 {:.0} ms, p99 {:.0} ms ({} uploads)",
                lat.len() as f64 / wall.as_secs_f64(),
                pct(&lat, 0.5).as_secs_f64() * 1000.0,
                pct(&lat, 0.99).as_secs_f64() * 1000.0,
                lat.len()
            );
        }
    }

    // A thumbnail the gateway keeps, next to the bare handler.
    let product: Value = http
        .get(format!("{base}/api/v1/products/{}", targets[0]))
        .send()
        .await
        .expect("product")
        .json()
        .await
        .expect("product body");
    let thumb = product["images"][0]["thumbnails"][1].clone();
    let url = format!("{base}{}", thumb["url"].as_str().expect("a thumbnail"));
    let first = http.get(&url).send().await.expect("thumbnail");
    let etag = first.headers()["etag"].to_str().expect("etag").to_string();
    let bytes = first.bytes().await.expect("bytes").to_vec();
    let bare = bare_server(bytes.clone(), etag).await;
    let window = Duration::from_secs(5);
    let bare_rps = hammer(&http, &bare, window).await;
    let media_rps = hammer(&http, &url, window).await;
    println!(
        "GET a {} B thumbnail: gateway {media_rps:.0} req/s, bare axum handler {bare_rps:.0} req/s ({:.2}x)",
        bytes.len(),
        media_rps / bare_rps
    );

    drop(procs);
    processes::cleanup(&db, &nats, &tag).await;
    let _ = std::fs::remove_dir_all(&dir);
}
