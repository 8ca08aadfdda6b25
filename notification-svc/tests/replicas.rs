//! Two notification-svc replicas on one Postgres store and the real NATS:
//! a client streaming from one replica hears what the other creates.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use platform::events::EventBus;
use platform::events::nats::{NatsBus, NatsSettings};
use platform::runtime::Deps;
use platform::{Config, PeerAddr, Running};
use proto::notification::notification_service_client::NotificationServiceClient;
use proto::notification::{SendNotificationRequest, StreamNotificationsRequest};
use proto::user::RegisterRequest;
use proto::user::user_service_client::UserServiceClient;

fn nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_one_replica_hears_notifications_created_on_another() {
    platform::telemetry::init_for_tests();
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let settings = NatsSettings {
        stream: format!("N{tag}"),
        prefix: format!("n{tag}"),
        ..NatsSettings::default()
    };
    let nats = NatsBus::connect(&nats_url(), settings.clone())
        .await
        .expect("NATS reachable (TEST_NATS_URL)");
    let schemas = platform::testing::SchemaPrefix::new();
    let mut vars: HashMap<String, String> = schemas.vars().into_iter().collect();
    let mut base = Config::from_source("replicas-test", &vars).unwrap();
    platform::testing::identity().configure(&mut base, "user-svc");

    // Each process has its own connection to NATS.
    let connect = || async {
        let bus: Arc<dyn EventBus> = Arc::new(
            NatsBus::connect(&nats_url(), settings.clone())
                .await
                .unwrap(),
        );
        Deps { bus }
    };
    let user_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let user_addr = user_listener.local_addr().unwrap();
    let users_running = user_svc::serve(base, user_listener, connect().await)
        .await
        .unwrap();
    vars.insert("USER_ADDR".into(), user_addr.to_string());
    let mut config = Config::from_source("replicas-test", &vars).unwrap();
    platform::testing::identity().configure(&mut config, "notification-svc");
    let mut replicas: Vec<(
        Running,
        NotificationServiceClient<platform::grpc::GrpcChannel>,
    )> = Vec::new();
    for _ in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let running = notification_svc::serve(config.clone(), listener, connect().await)
            .await
            .unwrap();
        let channel = platform::grpc::channel(&PeerAddr::from_socket(addr), &config.grpc).unwrap();
        replicas.push((running, NotificationServiceClient::new(channel)));
    }

    let user = UserServiceClient::new(
        platform::grpc::channel(&PeerAddr::from_socket(user_addr), &config.grpc).unwrap(),
    )
    .register(RegisterRequest {
        email: format!("r-{tag}@example.com"),
        password: "correct horse battery".into(),
        name: "Ada".into(),
    })
    .await
    .unwrap()
    .into_inner()
    .user
    .unwrap();

    let mut stream = replicas[0]
        .1
        .clone()
        .stream_notifications(platform::testing::identity().as_user(
            StreamNotificationsRequest {},
            &user.id,
            "customer",
        ))
        .await
        .unwrap()
        .into_inner();
    // Sent through the other replica; the stream may also carry the
    // welcome notification (from whichever replica consumed user.registered).
    let sent = replicas[1]
        .1
        .clone()
        .send_notification(platform::testing::identity().as_user(
            SendNotificationRequest {
                user_id: user.id.clone(),
                kind: "promo".into(),
                title: "Across replicas".into(),
                body: "Hello from the other side".into(),
                channels: vec![],
            },
            "admin-1",
            "admin",
        ))
        .await
        .unwrap()
        .into_inner();
    let sent_id = sent.notifications[0].id.clone();
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let message = stream.message().await.unwrap().expect("stream open");
            let n = message.notification.unwrap();
            if n.id == sent_id {
                return n;
            }
        }
    })
    .await
    .expect("the notification reached the other replica's stream within 10 s");
    assert_eq!(heard.title, "Across replicas");
    assert_eq!(heard.user_id, user.id);

    drop(stream);
    for (running, _) in replicas {
        running.shutdown().await;
    }
    users_running.shutdown().await;
    schemas
        .drop(&[notification_svc::SERVICE.name(), user_svc::SERVICE.name()])
        .await;
    nats.delete_stream().await.unwrap();
}
