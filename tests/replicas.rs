//! Scale-out: three replicas of product-svc as separate processes
//! (`shopmesh serve product`) on 127.0.0.1, 127.0.0.2 and 127.0.0.3, the
//! same port on each, behind one name (the in-process hosts table of
//! `platform::balance`), and a client channel built as every service and
//! the gateway build theirs. Each replica's calls are read from its own
//! `/metrics`.
//!
//! - calls spread evenly (within ±20 %) over the replicas the name has;
//! - a replica added to the name gets its share within the re-resolution
//!   period;
//! - a replica stopped gracefully (SIGTERM, with a drain delay) costs no
//!   call, not even without retries;
//! - a replica killed with `kill -9` is dropped, and no idempotent call
//!   fails past its retries;
//! - calls with an affinity key all go to one replica per key, and when
//!   that replica is killed only its keys move.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use platform::config::{GrpcSettings, PeerAddr};
use platform::grpc::{GrpcChannel, Retry};
use platform::{ServiceId, balance};
use proto::product::ListProductsRequest;
use proto::product::product_service_client::ProductServiceClient;

const NAME: &str = "product.replicas.test";
const RESOLVE_EVERY: Duration = Duration::from_millis(300);
/// How long a stopping replica answers NOT_SERVING before it stops.
const DRAIN: Duration = Duration::from_millis(1500);

fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// A port free on all three addresses.
fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        if (2..=3).all(|n| TcpListener::bind(SocketAddr::new(ip(n), port)).is_ok()) {
            return port;
        }
    }
}

struct Replica {
    n: u8,
    metrics: SocketAddr,
    child: Option<Child>,
}

impl Replica {
    fn start(n: u8, port: u16) -> Replica {
        let metrics = SocketAddr::new(ip(n), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_shopmesh"))
            .args(["serve", "product"])
            .env("GRPC_ADDR", SocketAddr::new(ip(n), port).to_string())
            .env("METRICS_ADDR", metrics.to_string())
            .env("GRPC_DRAIN_DELAY_MS", DRAIN.as_millis().to_string())
            .env("DATABASE_URL", "memory://")
            .env_remove("NATS_URL")
            .env_remove("REDIS_URL")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("starting a product-svc replica");
        let replica = Replica {
            n,
            metrics,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&SocketAddr::new(ip(n), port), Duration::from_millis(200))
            .is_err()
            || TcpStream::connect_timeout(&metrics, Duration::from_millis(200)).is_err()
        {
            assert!(
                Instant::now() < deadline,
                "replica {n} did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        replica
    }

    /// `kill -9`.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as Kubernetes stops a pod; returns once it has exited.
    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("replica {} did not stop after SIGTERM", self.n);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// ListProducts calls this replica has served, from its `/metrics`.
    async fn served(&self) -> u64 {
        let text = reqwest::get(format!("http://{}/metrics", self.metrics))
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|l| {
                l.starts_with("rpc_server_duration_seconds_count")
                    && l.contains("rpc_method=\"ListProducts\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

fn client(name: &str, port: u16) -> ProductServiceClient<GrpcChannel> {
    let settings = GrpcSettings {
        resolve_interval: RESOLVE_EVERY,
        // Every failure is counted here, not hidden by an open breaker.
        breaker: platform::breaker::BreakerSettings {
            failures: 0,
            ..Default::default()
        },
        ..GrpcSettings::default()
    };
    let peer: PeerAddr = format!("{name}:{port}").parse().expect("a peer address");
    ProductServiceClient::new(
        platform::grpc::channel_for(ServiceId::Product, &peer, &settings).expect("a channel"),
    )
}

/// What a batch of calls saw.
#[derive(Debug, Default)]
struct Outcome {
    ok: usize,
    /// Calls that failed in the end.
    failed: usize,
    /// Attempts that failed (retries included).
    failed_attempts: usize,
}

/// `calls` ListProducts calls, 8 at a time; with `retry`, each is retried
/// as an idempotent call.
async fn run_calls(
    client: &ProductServiceClient<GrpcChannel>,
    calls: usize,
    retry: Option<&Retry>,
) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let failed_attempts = Arc::new(AtomicUsize::new(0));
    let workers = (0..8).map(|_| {
        let (client, next, failed_attempts) =
            (client.clone(), next.clone(), failed_attempts.clone());
        async move {
            let (mut ok, mut failed) = (0, 0);
            while next.fetch_add(1, Ordering::SeqCst) < calls {
                let attempt = || {
                    let mut client = client.clone();
                    let failed_attempts = failed_attempts.clone();
                    async move {
                        let result = client.list_products(ListProductsRequest::default()).await;
                        if let Err(status) = &result
                            && failed_attempts.fetch_add(1, Ordering::SeqCst) < 3
                        {
                            println!("a failed attempt: {status:?}");
                        }
                        result
                    }
                };
                let result = match retry {
                    Some(retry) => retry.run(attempt).await,
                    None => attempt().await,
                };
                match result {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
            }
            (ok, failed)
        }
    });
    let mut outcome = Outcome::default();
    for (ok, failed) in futures::future::join_all(workers).await {
        outcome.ok += ok;
        outcome.failed += failed;
    }
    outcome.failed_attempts = failed_attempts.load(Ordering::SeqCst);
    outcome
}

async fn counts(replicas: &[&Replica]) -> Vec<u64> {
    let mut counts = Vec::new();
    for r in replicas {
        counts.push(r.served().await);
    }
    counts
}

fn assert_even(label: &str, before: &[u64], after: &[u64], total: usize) {
    let share = total as f64 / before.len() as f64;
    let got: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    println!("{label}: {got:?} of {total} calls");
    assert_eq!(
        got.iter().sum::<u64>(),
        total as u64,
        "{label}: every call was served once"
    );
    for (i, &n) in got.iter().enumerate() {
        assert!(
            (n as f64 - share).abs() <= 0.2 * share,
            "{label}: replica {} served {n} calls, more than 20 % away from {share}: {got:?}",
            i + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_every_replica_and_survive_losing_one() {
    let port = free_port();
    let r1 = Replica::start(1, port);
    let mut r2 = Replica::start(2, port);
    let r3 = Replica::start(3, port);
    balance::hosts::set(NAME, vec![ip(1), ip(2)]);
    let client = client(NAME, port);

    // Two replicas behind the name.
    let before = counts(&[&r1, &r2, &r3]).await;
    let outcome = run_calls(&client, 400, None).await;
    assert_eq!(outcome.failed, 0, "{outcome:?}");
    let after = counts(&[&r1, &r2, &r3]).await;
    assert_eq!(
        after[2], before[2],
        "the replica not behind the name gets nothing"
    );
    assert_even("two replicas", &before[..2], &after[..2], 400);

    // A third joins the name: it gets calls within the re-resolution
    // period, then its share.
    balance::hosts::set(NAME, vec![ip(1), ip(2), ip(3)]);
    let joined = Instant::now();
    loop {
        run_calls(&client, 8, None).await;
        if r3.served().await > before[2] {
            break;
        }
        assert!(
            joined.elapsed() < RESOLVE_EVERY * 10,
            "the new replica got no call within {:?}",
            joined.elapsed()
        );
    }
    println!(
        "a new replica got its first call {:?} after joining",
        joined.elapsed()
    );
    assert!(
        joined.elapsed() < RESOLVE_EVERY * 3,
        "{:?}",
        joined.elapsed()
    );
    let before = counts(&[&r1, &r2, &r3]).await;
    let outcome = run_calls(&client, 900, None).await;
    assert_eq!(outcome.failed, 0, "{outcome:?}");
    let after = counts(&[&r1, &r2, &r3]).await;
    assert_even("three replicas", &before, &after, 900);

    // A graceful stop (SIGTERM): the replica answers NOT_SERVING, clients
    // leave it, then it stops. Calls without any retry all succeed.
    let (outcome, ()) = tokio::join!(run_calls(&client, 1500, None), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tokio::task::block_in_place(|| r2.terminate());
    });
    println!("calls while a replica stopped gracefully: {outcome:?}");
    assert_eq!(outcome.failed, 0, "a graceful stop cost calls: {outcome:?}");
    assert!(r2.child.is_none());

    // kill -9 of a replica under load: it is dropped; with retries no
    // idempotent call fails.
    let r2 = Replica::start(2, port);
    let deadline = Instant::now() + Duration::from_secs(10);
    let back = r2.served().await;
    while r2.served().await == back {
        run_calls(&client, 8, None).await;
        assert!(
            Instant::now() < deadline,
            "the restarted replica got no call"
        );
    }
    let mut r3 = r3;
    let retry = Retry::new(GrpcSettings::default().client_retries);
    let (outcome, ()) = tokio::join!(run_calls(&client, 1500, Some(&retry)), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        r3.kill();
    });
    println!("calls while a replica was killed (kill -9): {outcome:?}");
    assert_eq!(
        outcome.failed, 0,
        "a call failed past its retries: {outcome:?}"
    );
    let before = counts(&[&r1, &r2]).await;
    let outcome = run_calls(&client, 400, None).await;
    assert_eq!(
        outcome.failed, 0,
        "the killed replica is no longer picked: {outcome:?}"
    );
    let after = counts(&[&r1, &r2]).await;
    assert_even("after the kill", &before, &after, 400);
    balance::hosts::remove(NAME);
}

/// `calls` ListProducts calls with affinity key `key`, one at a time, with
/// retries; which replica served each, from the replicas' counts.
async fn keyed_calls(
    client: &ProductServiceClient<GrpcChannel>,
    replicas: &[&Replica],
    key: &str,
    calls: u64,
) -> Vec<u64> {
    let retry = Retry::new(GrpcSettings::default().client_retries);
    let before = counts(replicas).await;
    for _ in 0..calls {
        retry
            .run(|| {
                let mut client = client.clone();
                let mut request = tonic::Request::new(ListProductsRequest::default());
                balance::with_affinity(&mut request, key);
                async move { client.list_products(request).await }
            })
            .await
            .unwrap_or_else(|status| panic!("a keyed call failed: {status:?}"));
    }
    let after = counts(replicas).await;
    after.iter().zip(&before).map(|(a, b)| a - b).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_calls_stay_on_one_replica_and_only_a_lost_replicas_keys_move() {
    const KEYED: &str = "keyed.replicas.test";
    const CALLS: u64 = 6;
    let port = free_port();
    let mut replicas = [
        Replica::start(1, port),
        Replica::start(2, port),
        Replica::start(3, port),
    ];
    balance::hosts::set(KEYED, vec![ip(1), ip(2), ip(3)]);
    let client = client(KEYED, port);
    // Until every replica is in the balanced set (unkeyed calls reach it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while counts(&replicas.iter().collect::<Vec<_>>())
        .await
        .contains(&0)
    {
        assert!(Instant::now() < deadline, "a replica never joined");
        run_calls(&client, 8, None).await;
    }

    let keys: Vec<String> = (0..12).map(|i| format!("product-{i}")).collect();
    let mut owners = Vec::new();
    for key in &keys {
        let all: Vec<&Replica> = replicas.iter().collect();
        let served = keyed_calls(&client, &all, key, CALLS).await;
        let owner = served.iter().position(|&n| n == CALLS);
        assert!(
            owner.is_some() && served.iter().sum::<u64>() == CALLS,
            "{key}: its calls were spread over replicas: {served:?}"
        );
        owners.push(owner.unwrap());
    }
    println!("owners of 12 keys: {owners:?}");
    let distinct: HashSet<usize> = owners.iter().copied().collect();
    assert!(distinct.len() >= 2, "every key on one replica: {owners:?}");

    // kill -9 of the first key's owner: its keys move (each to one
    // survivor), the others stay where they were.
    let lost = owners[0];
    replicas[lost].kill();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != lost).collect();
    for (key, &owner) in keys.iter().zip(&owners) {
        let alive: Vec<&Replica> = survivors.iter().map(|&i| &replicas[i]).collect();
        let served = keyed_calls(&client, &alive, key, CALLS).await;
        let now = served
            .iter()
            .position(|&n| n == CALLS)
            .map(|i| survivors[i]);
        if owner == lost {
            assert!(
                now.is_some() && served.iter().sum::<u64>() == CALLS,
                "{key} did not move to one survivor: {served:?}"
            );
        } else {
            assert_eq!(now, Some(owner), "{key} moved though its replica lives");
        }
    }
    balance::hosts::remove(KEYED);
}

#[tokio::test]
async fn a_peer_given_as_an_address_keeps_one_connection() {
    let settings = GrpcSettings::default();
    let by_ip = platform::grpc::channel(&"127.0.0.1:1".parse().unwrap(), &settings).unwrap();
    assert!(format!("{by_ip:?}").contains("Single"), "{by_ip:?}");
    let by_name = platform::grpc::channel(&"some-peer.test:1".parse().unwrap(), &settings).unwrap();
    assert!(format!("{by_name:?}").contains("Balanced"), "{by_name:?}");
    let off = GrpcSettings {
        client_balancing: false,
        ..GrpcSettings::default()
    };
    let meshed = platform::grpc::channel(&"some-peer.test:1".parse().unwrap(), &off).unwrap();
    assert!(format!("{meshed:?}").contains("Single"), "{meshed:?}");
}

#[tokio::test]
async fn the_hosts_table_answers_before_dns() {
    balance::hosts::set("Two.Replicas.Test", vec![ip(3), ip(2), ip(3)]);
    let addrs = balance::resolve("two.replicas.test", 7).await.unwrap();
    assert_eq!(
        addrs,
        vec![SocketAddr::new(ip(2), 7), SocketAddr::new(ip(3), 7)]
    );
    balance::hosts::remove("two.replicas.test");
}
