//! Memory of the all-in-one binary under password load: RSS at start, at its
//! peak and once idle again after 300 registrations and a login run at 64
//! connections (argon2id takes 19 MiB per hash).
//!
//! ```sh
//! cargo build --release && cargo run --release --example memory_bench
//! ```
//! It starts the `shopmesh` binary next to this example (or `SHOPMESH_BIN`)
//! on free loopback ports with the embedded backends (or `DATABASE_URL` …
//! passed through), and reads `VmRSS` / `VmHWM` from `/proc`. Linux only.

#[path = "support/proc_status.rs"]
mod proc_status;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

const REGISTRATIONS: usize = 300;
const CONNECTIONS: usize = 64;
const LOGINS: usize = 640;

fn binary() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("SHOPMESH_BIN") {
        return path.into();
    }
    // target/<profile>/examples/memory_bench -> target/<profile>/shopmesh
    let exe = std::env::current_exe().expect("own path");
    exe.parent()
        .and_then(|examples| examples.parent())
        .map(|profile| profile.join("shopmesh"))
        .expect("a target directory")
}

/// `VmRSS` and `VmHWM` (peak) of `pid`, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    proc_status::memory(&pid.to_string())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// RSS once it stops falling: sampled every 250 ms until it has not
/// dropped for 3 s (at most 30 s).
async fn settled_rss(pid: u32) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut best = memory(pid).0;
    let mut since = Instant::now();
    while Instant::now() < deadline && since.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = memory(pid).0;
        if now < best - 0.5 {
            best = now;
            since = Instant::now();
        }
    }
    best
}

/// The status of a JSON POST from client address `client` (0 when nothing
/// answered); a 503 (shed) is counted in `shed` and sent again after a
/// second, as clients honouring `Retry-After` do.
async fn post_retrying(
    http: &reqwest::Client,
    url: &str,
    client: &str,
    body: &serde_json::Value,
    shed: &AtomicUsize,
) -> u16 {
    loop {
        let status = http
            .post(url)
            .header("x-forwarded-for", client)
            .json(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if status != 503 {
            return status;
        }
        shed.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The address of shopper `worker`, as the proxy in front reports it.
fn client(worker: usize) -> String {
    format!("10.1.{}.{}", worker / 250, worker % 250 + 1)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bin = binary();
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it first (cargo build --release)",
        bin.display()
    );
    let port = free_port();
    let mut command = Command::new(&bin);
    command
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("RATE_LIMIT_RPS", "0")
        // Each connection is a shopper of its own behind one proxy, as in
        // production: the failed-login limit per address then counts each
        // shopper's attempts, not all of them together.
        .env("TRUSTED_PROXY_HOPS", "1")
        .env("RUST_LOG", "error")
        .env("ADMIN_EMAIL", "memory-bench@example.com")
        .env("ADMIN_PASSWORD", "memory-bench-password")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for id in platform::ServiceId::ALL {
        command.env(id.addr_var(), "127.0.0.1:0");
    }
    let server = Server(command.spawn()?);
    let pid = server.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = http.get(format!("{base}/ready")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the mesh did not become ready in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = settled_rss(pid).await;

    let run = format!("{:x}", std::process::id());
    let email = move |i: usize| format!("mem-{run}-{i}@example.com");
    let shed = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));

    // Registrations: 300 at 16 connections.
    let next = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..16 {
        let (http, base, next, shed, failed) = (
            http.clone(),
            base.clone(),
            next.clone(),
            shed.clone(),
            failed.clone(),
        );
        let email = email.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= REGISTRATIONS {
                    break;
                }
                let body =
                    json!({"email": email(i), "password": "memory bench pw", "name": "Bench"});
                let url = format!("{base}/api/v1/auth/register");
                if post_retrying(&http, &url, &client(worker), &body, &shed).await != 201 {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let registered_in = began.elapsed();
    let after_registrations = memory(pid).0;

    // Logins: 640 at 64 connections.
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let login_shed = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let mut workers = Vec::new();
    let login_failed = Arc::new(AtomicUsize::new(0));
    for worker in 0..CONNECTIONS {
        let (http, base, next, ok, login_shed, failed) = (
            http.clone(),
            base.clone(),
            next.clone(),
            ok.clone(),
            login_shed.clone(),
            login_failed.clone(),
        );
        let email = email.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= LOGINS {
                    break;
                }
                let body =
                    json!({"email": email(i % REGISTRATIONS), "password": "memory bench pw"});
                let url = format!("{base}/api/v1/auth/login");
                match post_retrying(&http, &url, &client(worker), &body, &login_shed).await {
                    200 => ok.fetch_add(1, Ordering::SeqCst),
                    _ => failed.fetch_add(1, Ordering::SeqCst),
                };
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let logged_in = began.elapsed();
    let (_, peak) = memory(pid);
    let idle = settled_rss(pid).await;

    println!("memory_bench: {} (allocator as built)", bin.display());
    println!("  started, idle                      {started:>8.1} MiB");
    println!(
        "  after {REGISTRATIONS} registrations             {after_registrations:>8.1} MiB   ({:.1} s, {} shed and retried, {} failed)",
        registered_in.as_secs_f64(),
        shed.load(Ordering::SeqCst),
        failed.load(Ordering::SeqCst)
    );
    println!(
        "  {LOGINS} logins at {CONNECTIONS} connections         {:>8} ok, {} shed (503) and retried, {} other failures, {:.0} logins/s",
        ok.load(Ordering::SeqCst),
        login_shed.load(Ordering::SeqCst),
        login_failed.load(Ordering::SeqCst),
        LOGINS as f64 / logged_in.as_secs_f64()
    );
    println!("  peak RSS (VmHWM)                   {peak:>8.1} MiB");
    println!("  idle RSS after the run             {idle:>8.1} MiB");
    let failures = failed.load(Ordering::SeqCst) + login_failed.load(Ordering::SeqCst);
    anyhow::ensure!(
        failures == 0,
        "{failures} requests failed: the figures above do not describe the load they name"
    );
    Ok(())
}
