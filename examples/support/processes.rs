//! The mesh as separate processes (`shopmesh serve <component>`) on
//! Postgres + NATS, for the benchmarks that measure processes.

// Each benchmark uses the part it needs.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use platform::ServiceId;

pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        if TcpListener::bind(("127.0.0.2", port)).is_ok() {
            return port;
        }
    }
}

/// The `shopmesh` binary beside this example's directory.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("shopmesh");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release --bin shopmesh` first",
        bin.display()
    );
    bin
}

pub struct Proc {
    pub child: Child,
    pub service: Option<ServiceId>,
    pub metrics: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the mesh as processes: `replicas(service)` of each service (on
/// 127.0.0.1, .2… behind one name, `GRPC_HOSTS`) and a gateway, with
/// `extra` in every process's environment. Returns them and the
/// gateway's base URL.
pub fn start(
    replicas: impl Fn(ServiceId) -> u8,
    db: &str,
    nats: &str,
    tag: &str,
    extra: &[(String, String)],
) -> (Vec<Proc>, String) {
    let key_pem = platform::auth::SigningKey::generate().to_pem();
    let http_port = free_port();
    let ports: Vec<(ServiceId, u16)> = ServiceId::ALL.iter().map(|&id| (id, free_port())).collect();
    let mut names: Vec<&str> = ServiceId::ALL.iter().map(|id| id.binary()).collect();
    names.push("gateway");
    let (keys, public) = platform::auth::generate_mesh(&names);
    let mut env: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), db.into()),
        ("DATABASE_SCHEMA_PREFIX".into(), tag.into()),
        ("DATABASE_MAX_CONNECTIONS".into(), "16".into()),
        (
            "STORE_CURSOR_KEY".into(),
            platform::testing::TEST_CURSOR_KEY.into(),
        ),
        ("NATS_URL".into(), nats.into()),
        ("NATS_STREAM".into(), tag.to_uppercase()),
        ("NATS_SUBJECT_PREFIX".into(), tag.into()),
        ("ADMIN_EMAIL".into(), "bench@example.com".into()),
        ("ADMIN_PASSWORD".into(), "bench-password".into()),
        ("JWT_PRIVATE_KEY_PEM".into(), key_pem),
        ("RATE_LIMIT_RPS".into(), "0".into()),
        ("SEED_DEMO".into(), "false".into()),
        ("ORDER_MAX_UNPAID_PER_CUSTOMER".into(), "1000".into()),
        ("HTTP_ADDR".into(), format!("127.0.0.1:{http_port}")),
        ("MESH_PUBLIC_KEYS".into(), public.to_env()),
        ("RUST_LOG".into(), "error".into()),
    ];
    env.extend(extra.iter().cloned());
    let mut hosts = Vec::new();
    for &(id, port) in &ports {
        let n = replicas(id);
        let name = format!("{}.bench.test", id.name());
        let ips: Vec<String> = (1..=n).map(|i| format!("127.0.0.{i}")).collect();
        hosts.push(format!("{name}={}", ips.join(",")));
        env.push((id.addr_var().into(), format!("{name}:{port}")));
    }
    env.push(("GRPC_HOSTS".into(), hosts.join(";")));
    let key_of = |name: &str| {
        keys.iter()
            .find(|(n, _)| n == name)
            .expect("key")
            .1
            .expose()
            .to_string()
    };
    let bin = binary();
    let mut procs = Vec::new();
    let spawn = |component: &str, key: String, extra: Vec<(String, String)>| {
        Command::new(&bin)
            .args(["serve", component])
            .envs(env.iter().cloned())
            .env("MESH_KEY", key)
            .envs(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("a component starts")
    };
    for &(id, port) in &ports {
        let n = replicas(id);
        for i in 1..=n {
            let addr = SocketAddr::from(([127, 0, 0, i], port));
            let metrics = SocketAddr::from(([127, 0, 0, i], free_port()));
            let child = spawn(
                id.name(),
                key_of(id.binary()),
                vec![
                    ("GRPC_ADDR".into(), addr.to_string()),
                    ("METRICS_ADDR".into(), metrics.to_string()),
                ],
            );
            procs.push(Proc {
                child,
                service: Some(id),
                metrics,
            });
            wait_listening(addr);
        }
    }
    let gateway_metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = spawn("gateway", key_of("gateway"), vec![]);
    procs.push(Proc {
        child,
        service: None,
        metrics: gateway_metrics,
    });
    wait_listening(SocketAddr::from(([127, 0, 0, 1], http_port)));
    (procs, format!("http://127.0.0.1:{http_port}"))
}

/// The stream and subjects of a [`start`] under `tag`.
fn bus_settings(tag: &str) -> platform::events::nats::NatsSettings {
    platform::events::nats::NatsSettings {
        stream: tag.to_uppercase(),
        prefix: tag.to_string(),
        ..Default::default()
    }
}

/// Drops the schemas and the stream a [`start`] under `tag` made.
pub async fn cleanup(db: &str, nats: &str, tag: &str) {
    for id in ServiceId::ALL {
        if let Ok(pg) = platform::store::postgres::PostgresBackend::connect(
            db,
            &format!("{tag}_{}", id.name()),
            &Default::default(),
        )
        .await
        {
            let _ = pg.drop_schema().await;
        }
    }
    if let Ok(bus) = platform::events::nats::NatsBus::connect(nats, bus_settings(tag)).await {
        let _ = bus.delete_stream().await;
    }
}

/// Waits until the consumers of the stream a [`start`] under `tag` made
/// have handled every event (at most `longest`); how long that took.
pub async fn quiesce(nats: &str, tag: &str, longest: Duration) -> Duration {
    let started = Instant::now();
    let Ok(bus) = platform::events::nats::NatsBus::connect(nats, bus_settings(tag)).await else {
        return Duration::ZERO;
    };
    while started.elapsed() < longest {
        if bus
            .backlog()
            .await
            .is_ok_and(|backlog| backlog.unhandled.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}
