//! Delivery throughput: SendNotification over real gRPC with the SMS
//! channel, a local fake Twilio answering 201 at once, and the real
//! user-svc for the phone lookup. Prints how fast notifications are
//! accepted and how fast they reach the provider.
//!
//! ```sh
//! cargo run --release -p notification-svc --example delivery_bench
//! BENCH_POSTGRES=1 cargo run --release -p notification-svc --example delivery_bench
//! ```
//! With `BENCH_POSTGRES=1` both services use the local Postgres
//! (`TEST_DATABASE_URL`) in schemas that are dropped afterwards.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use platform::events::memory::InProcessBus;
use platform::runtime::Deps;
use platform::{Config, PeerAddr};
use proto::notification::notification_service_client::NotificationServiceClient;
use proto::notification::{Channel, SendNotificationRequest};
use proto::user::user_service_client::UserServiceClient;
use proto::user::{RegisterRequest, UpdateProfileRequest};

const SENDS: usize = 2000;
const CONCURRENCY: usize = 32;

fn with_caller<T>(message: T, user_id: &str, role: &str) -> tonic::Request<T> {
    platform::testing::identity().as_user(message, user_id, role)
}

#[tokio::main]
async fn main() {
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let twilio = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            (axum::http::StatusCode::CREATED, r#"{"sid":"SM1"}"#)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let twilio_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, twilio).await.unwrap() });

    let postgres = std::env::var("BENCH_POSTGRES").is_ok_and(|v| v == "1");
    let schemas = platform::testing::SchemaPrefix::new();
    let mut vars: HashMap<String, String> = if postgres {
        schemas.vars().into_iter().collect()
    } else {
        HashMap::new()
    };
    let bus = Arc::new(InProcessBus::new("shop"));
    let identity = platform::testing::identity();
    let mut base = Config::from_source("delivery-bench", &vars).expect("config");
    identity.configure(&mut base, "user-svc");
    let user_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let user_addr = user_listener.local_addr().unwrap();
    let users_running = user_svc::serve(base.clone(), user_listener, Deps { bus: bus.clone() })
        .await
        .unwrap();
    vars.extend([
        ("USER_ADDR".to_string(), user_addr.to_string()),
        ("TWILIO_BASE_URL".to_string(), twilio_url),
        ("TWILIO_ACCOUNT_SID".to_string(), "AC1".to_string()),
        ("TWILIO_AUTH_TOKEN".to_string(), "token".to_string()),
        ("TWILIO_FROM".to_string(), "+15005550006".to_string()),
        ("RUST_LOG".to_string(), "warn".to_string()),
    ]);
    let mut config = Config::from_source("delivery-bench", &vars).expect("config");
    identity.configure(&mut config, "notification-svc");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let running = notification_svc::serve(config.clone(), listener, Deps { bus })
        .await
        .unwrap();
    let channel = |a| platform::grpc::channel(&PeerAddr::from_socket(a), &config.grpc).unwrap();
    let mut users = UserServiceClient::new(channel(user_addr));
    let user = users
        .register(RegisterRequest {
            email: "bench@example.com".into(),
            password: "correct horse battery".into(),
            name: "Bench".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    users
        .update_profile(with_caller(
            UpdateProfileRequest {
                phone: Some("+14155550100".into()),
                ..Default::default()
            },
            &user.id,
            "customer",
        ))
        .await
        .unwrap();
    let client = NotificationServiceClient::new(channel(addr));

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, next, user_id) = (client.clone(), next.clone(), user.id.clone());
        workers.push(tokio::spawn(async move {
            let mut client = client;
            while next.fetch_add(1, Ordering::Relaxed) < SENDS {
                let request = SendNotificationRequest {
                    user_id: user_id.clone(),
                    kind: "promo".into(),
                    title: "Sale".into(),
                    body: "Everything 20% off".into(),
                    channels: vec![Channel::Sms as i32],
                };
                client
                    .send_notification(with_caller(request, "bench-admin", "admin"))
                    .await
                    .expect("send");
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let accepted = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    while received.load(Ordering::Relaxed) < SENDS {
        assert!(
            Instant::now() < deadline,
            "deliveries stalled at {}",
            received.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivered = started.elapsed();
    let store = if postgres { "postgres" } else { "memory" };
    println!(
        "{store}: {SENDS} SendNotification(SMS) with {CONCURRENCY} clients: accepted {:.0}/s ({:.2} s), delivered to the provider {:.0}/s ({:.2} s to the last)",
        SENDS as f64 / accepted.as_secs_f64(),
        accepted.as_secs_f64(),
        SENDS as f64 / delivered.as_secs_f64(),
        delivered.as_secs_f64()
    );
    running.shutdown().await;
    users_running.shutdown().await;
    if postgres {
        schemas
            .drop(&[notification_svc::SERVICE.name(), user_svc::SERVICE.name()])
            .await;
    }
}
