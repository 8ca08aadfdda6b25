//! The NATS configuration the deployment ships (`deploy/nats/nats.conf`),
//! run by a real nats-server: every service logs in as itself, publishes
//! its own events and consumes others', and cannot publish an event that
//! belongs to another service — a forged `payment.processed` from anyone
//! but payment-svc never reaches the stream.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use platform::config::{NatsAuth, Secret};
use platform::events::nats::{NatsBus, NatsSettings};
use platform::events::{ConsumerConfig, EventBus, envelope, handler_fn};
use proto::events::envelope::Payload;

/// Every service's name, which is also its NATS user.
fn services() -> impl Iterator<Item = &'static str> {
    platform::ServiceId::ALL.iter().map(|id| id.binary())
}

fn password(service: &str) -> String {
    format!("pw-{service}")
}

fn nats_server() -> Option<PathBuf> {
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

struct Server {
    child: Child,
    port: u16,
    _dir: tempfile_dir::Dir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

mod tempfile_dir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn start(binary: &Path) -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("shopmesh-nats-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nats/nats.conf");
    let mut command = Command::new(binary);
    command
        .arg("-c")
        .arg(&config)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for service in services() {
        let var = format!("NATS_PASSWORD_{}", service.to_uppercase().replace('-', "_"));
        command.env(var, password(service));
    }
    let child = command.spawn().expect("nats-server starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server {
        child,
        port,
        _dir: tempfile_dir::Dir(dir),
    }
}

fn settings(auth: NatsAuth) -> NatsSettings {
    NatsSettings {
        publish_timeout: Duration::from_secs(2),
        auth,
        ..NatsSettings::default()
    }
}

async fn connect_as(server: &Server, service: &str) -> NatsBus {
    NatsBus::connect(
        &format!("nats://127.0.0.1:{}", server.port),
        settings(NatsAuth::UserPassword {
            user: service.into(),
            password: Secret(password(service)),
        }),
    )
    .await
    .unwrap_or_else(|e| panic!("{service} connects: {e}"))
}

fn payment_processed(order: &str) -> proto::events::Envelope {
    envelope(
        "payment.processed",
        order,
        "test",
        Payload::PaymentProcessed(proto::events::PaymentProcessed {
            payment_id: "pay-1".into(),
            order_id: order.into(),
            user_id: "user-1".into(),
            ..Default::default()
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_publishes_only_its_own_events() {
    let Some(binary) = nats_server() else {
        eprintln!("skipped: no nats-server binary (apt-get install nats-server)");
        return;
    };
    let server = start(&binary).await;

    // Nobody gets in without a password, or with another service's.
    let url = format!("nats://127.0.0.1:{}", server.port);
    assert!(
        NatsBus::connect(&url, settings(NatsAuth::None))
            .await
            .is_err(),
        "an anonymous connection is refused"
    );
    assert!(
        NatsBus::connect(
            &url,
            settings(NatsAuth::UserPassword {
                user: "payment-svc".into(),
                password: Secret(password("order-svc")),
            })
        )
        .await
        .is_err(),
        "a wrong password is refused"
    );
    // Credentials in the URL work as NATS_USER/NATS_PASSWORD do.
    let in_url = format!(
        "nats://order-svc:{}@127.0.0.1:{}",
        password("order-svc"),
        server.port
    );
    NatsBus::connect(&in_url, settings(NatsAuth::None))
        .await
        .expect("credentials in NATS_URL");

    let payment = connect_as(&server, "payment-svc").await;
    let order = connect_as(&server, "order-svc").await;
    let shipping = connect_as(&server, "shipping-svc").await;

    // shipping-svc consumes payment.processed, as deployed.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let _subscription = shipping
        .subscribe(
            ConsumerConfig::new("shipping-svc", &["payment.processed"]),
            {
                let seen = seen.clone();
                handler_fn(move |delivery| {
                    let seen = seen.clone();
                    async move {
                        seen.lock()
                            .unwrap()
                            .push(delivery.envelope.aggregate_id.clone());
                        Ok(())
                    }
                })
            },
        )
        .await
        .expect("shipping-svc creates its consumer");

    // order-svc publishes its own event…
    order
        .publish(&envelope(
            "order.created",
            "order-1",
            "test",
            Payload::OrderCreated(proto::events::OrderCreated {
                order_id: "order-1".into(),
                user_id: "user-1".into(),
                ..Default::default()
            }),
        ))
        .await
        .expect("order-svc publishes order.created");
    // …but not payment-svc's: a forged payment is refused by the server.
    assert!(
        order.publish(&payment_processed("forged")).await.is_err(),
        "order-svc must not publish payment.processed"
    );
    assert!(
        shipping
            .publish(&payment_processed("forged"))
            .await
            .is_err(),
        "shipping-svc must not publish payment.processed"
    );
    payment
        .publish(&payment_processed("real"))
        .await
        .expect("payment-svc publishes payment.processed");

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if seen.lock().unwrap().iter().any(|id| id == "real") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the real payment reaches shipping-svc"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One consumer of one stream gets messages in stream order: had a forged
    // payment been stored, it would have come before the real one.
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["real".to_string()],
        "no forged payment was delivered"
    );
}

#[test]
fn the_dev_overlay_ships_the_same_nats_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = std::fs::read_to_string(root.join("deploy/nats/nats.conf")).unwrap();
    let overlay = std::fs::read_to_string(root.join("deploy/k8s/overlays/dev/nats.conf"))
        .expect("the dev overlay has a copy (kustomize reads files below it only)");
    assert_eq!(shipped, overlay);
    for service in services() {
        assert!(
            shipped.contains(&format!("user: {service}")),
            "{service} has a NATS user"
        );
    }
}
