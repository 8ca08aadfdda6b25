//! The all-in-one mesh: every service and the gateway on port 0, reached
//! through real clients.

mod common;

use std::process::Command;

use common::TestMesh;
use platform::ServiceId;
use platform::testing::{self, Reflection};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test]
async fn every_service_answers_health_and_reflection() {
    let t = TestMesh::start().await;
    for id in ServiceId::ALL {
        let addr = t.mesh.grpc_addr(id);
        assert_ne!(addr.port(), 0);
        assert_eq!(
            testing::health(addr, id.grpc_service()).await.unwrap(),
            ServingStatus::Serving,
            "{id}"
        );
        for protocol in [Reflection::V1, Reflection::V1Alpha] {
            let services = testing::list_services(addr, protocol).await.unwrap();
            assert!(
                services.iter().any(|s| s == id.grpc_service()),
                "{id} {protocol:?}: {services:?}"
            );
            let files = testing::file_containing_symbol(addr, protocol, id.grpc_service())
                .await
                .unwrap();
            assert!(
                !files.is_empty(),
                "{id}: describe works without .proto files"
            );
        }
    }
    t.shutdown().await;
}

#[tokio::test]
async fn gateway_health_and_readiness_over_http() {
    let t = TestMesh::start().await;
    let health = t.http.get(t.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("x-request-id"));
    assert!(health.headers().contains_key("traceparent"));

    let ready = t.http.get(t.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["key_set"], "loaded");

    let deps = t
        .http
        .get(t.url("/health/dependencies"))
        .send()
        .await
        .unwrap();
    assert_eq!(deps.status(), 200);
    let body: serde_json::Value = deps.json().await.unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    for id in ServiceId::ALL {
        assert_eq!(body["checks"][id.name()], "serving", "{id}");
        assert_eq!(body["breakers"][id.name()], "closed", "{id}");
    }
    t.shutdown().await;
}

#[tokio::test]
async fn two_meshes_run_side_by_side() {
    let (a, b) = tokio::join!(TestMesh::start(), TestMesh::start());
    assert_ne!(a.mesh.gateway_addr(), b.mesh.gateway_addr());
    for t in [&a, &b] {
        assert_eq!(
            t.http.get(t.url("/health")).send().await.unwrap().status(),
            200
        );
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_every_listener() {
    let t = TestMesh::start().await;
    let addrs: Vec<_> = ServiceId::ALL
        .iter()
        .map(|&id| t.mesh.grpc_addr(id))
        .chain([t.mesh.gateway_addr()])
        .collect();
    t.shutdown().await;
    for addr in addrs {
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "{addr} still listening"
        );
    }
}

#[tokio::test]
async fn training_asks_who_is_calling() {
    // Straight at the service port: no identity, a customer's, or another
    // component's, is refused with the proper code; an admin starts a
    // training.
    let t = TestMesh::start_with(&[
        ("ADMIN_EMAIL", "admin@example.com"),
        ("ADMIN_PASSWORD", "admin-password"),
    ])
    .await;
    let mut client =
        proto::recommendation::recommendation_service_client::RecommendationServiceClient::new(
            t.channel(ServiceId::Recommendation),
        );
    let anonymous = client
        .train_model(proto::recommendation::TrainModelRequest::default())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let (_, token, _) = t.customer().await;
    let customer = client
        .train_model(t.as_user(proto::recommendation::TrainModelRequest::default(), &token))
        .await
        .unwrap_err();
    assert_eq!(customer.code(), Code::PermissionDenied);
    // Claiming a role in metadata, as the gateway once did, proves nothing.
    let mut forged = tonic::Request::new(proto::recommendation::TrainModelRequest::default());
    forged
        .metadata_mut()
        .insert("x-user-id", "admin-1".parse().unwrap());
    forged
        .metadata_mut()
        .insert("x-user-roles", "admin".parse().unwrap());
    assert_eq!(
        client.train_model(forged).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    // Nor does a service token signed by a key the mesh does not know.
    let stranger = platform::auth::MeshAuth::new(
        "order-svc",
        Some(platform::auth::generate_mesh_key().0.expose()),
        &Default::default(),
        platform::auth::UserKeys::fixed(&Default::default(), "", ""),
    )
    .unwrap();
    assert_eq!(
        client
            .train_model(stranger.request(proto::recommendation::TrainModelRequest::default()))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let component = client
        .train_model(t.as_service(
            proto::recommendation::TrainModelRequest::default(),
            "order-svc",
        ))
        .await
        .unwrap_err();
    assert_eq!(component.code(), Code::PermissionDenied);
    let (admin, _) = t.login("admin@example.com", "admin-password").await;
    let started = client
        .train_model(t.as_user(proto::recommendation::TrainModelRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert!(!started.model_version.is_empty());
    t.shutdown().await;
}

fn run_binary_with(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shopmesh"));
    for (k, v) in vars {
        command.env(k, v);
    }
    // Never collide with a shopmesh already running on the default ports.
    command.env(
        "HTTP_ADDR",
        vars.iter()
            .find(|(k, _)| *k == "HTTP_ADDR")
            .map_or("127.0.0.1:0", |(_, v)| v),
    );
    let output = command.output().expect("the binary runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_one_clear_line(stderr: &str, var: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line, got: {stderr}");
    assert!(lines[0].contains(var), "the line names {var}: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

#[test]
fn unknown_database_scheme_exits_non_zero_with_one_line() {
    let (code, stderr) = run_binary_with(&[("DATABASE_URL", "mysql://localhost/shop")]);
    assert_eq!(code, Some(2));
    assert_one_clear_line(&stderr, "DATABASE_URL");
}

#[test]
fn unparseable_address_exits_non_zero_with_one_line() {
    let (code, stderr) = run_binary_with(&[("HTTP_ADDR", "localhost:eighty")]);
    assert_eq!(code, Some(2));
    assert_one_clear_line(&stderr, "HTTP_ADDR");
    let (code, stderr) = run_binary_with(&[("ORDER_ADDR", "order-svc:50052")]);
    assert_eq!(code, Some(2));
    assert_one_clear_line(&stderr, "ORDER_ADDR");
}

#[test]
fn a_port_already_taken_exits_non_zero_naming_the_component() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let others: Vec<(String, String)> = ServiceId::ALL
        .iter()
        .filter(|id| **id != ServiceId::Payment)
        .map(|id| (id.addr_var().to_string(), "127.0.0.1:0".to_string()))
        .collect();
    let mut vars: Vec<(&str, &str)> = others
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    vars.push(("PAYMENT_ADDR", &addr));
    vars.push(("LOG_FORMAT", "json"));
    vars.push(("RUST_LOG", "off"));
    let (code, stderr) = run_binary_with(&vars);
    assert_eq!(code, Some(1));
    assert_one_clear_line(&stderr, "PAYMENT_ADDR");
    assert!(stderr.contains(&addr), "{stderr}");
}

#[test]
fn mesh_keys_for_a_rotation_print_a_new_key_and_the_steps() {
    let output = Command::new(env!("CARGO_BIN_EXE_shopmesh"))
        .args(["mesh-keys", "order-svc"])
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line in {stdout}"))
            .to_string()
    };
    let public = value("order-svc=");
    let seed = value("ORDER_SVC_MESH_KEY=");
    assert_eq!(
        platform::auth::SigningKey::from_seed(&seed)
            .unwrap()
            .jwk()
            .x,
        public,
        "the public key to add is the new key's"
    );
    assert!(
        !stdout.contains("PAYMENT_SVC_MESH_KEY"),
        "only the named component: {stdout}"
    );
    // Listed beside the current key, the configuration takes both.
    let (_, current) = platform::auth::generate_mesh(&["order-svc"]);
    let both = format!("{},order-svc={public}", current.to_env());
    let config = platform::Config::from_source(
        "rotation",
        &std::collections::HashMap::from([("MESH_PUBLIC_KEYS", both.as_str())]),
    )
    .unwrap();
    assert_eq!(config.mesh.public_keys.0.len(), 2);

    let output = Command::new(env!("CARGO_BIN_EXE_shopmesh"))
        .args(["mesh-keys", "no-such-svc"])
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(2));
    assert_one_clear_line(&String::from_utf8_lossy(&output.stderr), "no-such-svc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed_from_the_command_line() {
    use platform::events::nats::{NatsBus, NatsSettings};
    use platform::events::{ConsumerConfig, EventBus as _, HandlerError, handler_fn};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let tag = uuid::Uuid::now_v7().simple().to_string();
    let (stream, prefix) = (format!("T{tag}"), format!("t{tag}"));
    let settings = NatsSettings {
        stream: stream.clone(),
        prefix: prefix.clone(),
        ..Default::default()
    };
    let bus = NatsBus::connect(&common::backends::nats_url(), settings)
        .await
        .expect("NATS reachable (TEST_NATS_URL)");
    // A consumer that refuses its first delivery of each event for good.
    let deliveries = Arc::new(AtomicUsize::new(0));
    let seen = deliveries.clone();
    let subscription = bus
        .subscribe(
            ConsumerConfig::new("labels", &["payment.processed"]),
            handler_fn(move |_| {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        Err(HandlerError::Permanent("carrier account closed".into()))
                    } else {
                        Ok(())
                    }
                }
            }),
        )
        .await
        .unwrap();
    let event = platform::events::event(
        "order-1",
        "payment-svc",
        proto::events::envelope::Payload::PaymentProcessed(proto::events::PaymentProcessed {
            order_id: "order-1".into(),
            payment_id: "payment-1".into(),
            ..Default::default()
        }),
    );
    bus.publish(&event).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while bus.backlog().await.unwrap().dead_lettered.is_empty() {
        assert!(std::time::Instant::now() < deadline, "never dead-lettered");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_shopmesh"))
            .arg("dead-letters")
            .args(args)
            .env("NATS_URL", common::backends::nats_url())
            .env("NATS_STREAM", &stream)
            .env("NATS_SUBJECT_PREFIX", &prefix)
            .output()
            .expect("the binary runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (code, listed) = run(&[]);
    assert_eq!(code, Some(0), "{listed}");
    assert!(
        listed.contains(&event.id)
            && listed.contains("labels")
            && listed.contains("payment.processed")
            && listed.contains("carrier account closed")
            && listed.contains("1 dead letter(s)"),
        "{listed}"
    );
    let (code, replayed) = run(&["replay", "labels"]);
    assert_eq!(code, Some(0), "{replayed}");
    assert!(
        replayed.contains("1 dead letter(s) of labels published again, 0 skipped"),
        "{replayed}"
    );
    while deliveries.load(Ordering::SeqCst) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the replay never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (code, listed) = run(&["labels"]);
    assert_eq!((code, listed.trim()), (Some(0), "0 dead letter(s)"));
    assert_eq!(run(&["replay"]).0, Some(2), "a replay names its consumer");
    subscription.stop().await;
    bus.delete_stream().await.unwrap();
}
