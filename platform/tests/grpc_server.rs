//! The shared gRPC server builder against a real client on port 0.

use std::net::SocketAddr;
use std::time::Duration;

use platform::config::{GrpcSettings, PeerAddr};
use platform::grpc::{GrpcServer, Retry};
use platform::testing::{self, Reflection};
use platform::{Running, ServiceId};
use proto::user::user_service_client::UserServiceClient;
use proto::user::user_service_server::{UserService, UserServiceServer};
use proto::user::{GetJwksRequest, GetJwksResponse, RegisterRequest};
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;

/// Implements one RPC slowly; every other RPC keeps the UNIMPLEMENTED default.
#[derive(Default)]
struct SlowJwks {
    delay: Duration,
}

#[tonic::async_trait]
impl UserService for SlowJwks {
    async fn get_jwks(
        &self,
        _: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        tokio::time::sleep(self.delay).await;
        Ok(Response::new(GetJwksResponse::default()))
    }
}

async fn start(settings: GrpcSettings, delay: Duration) -> Running {
    let listener = platform::grpc::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let routes = tonic::service::Routes::new(UserServiceServer::new(SlowJwks { delay }));
    GrpcServer::new(ServiceId::User, &settings, proto::FILE_DESCRIPTOR_SET)
        .serve(routes, listener)
        .await
        .unwrap()
}

fn client(addr: SocketAddr) -> UserServiceClient<platform::grpc::GrpcChannel> {
    let settings = GrpcSettings::default();
    UserServiceClient::new(
        platform::grpc::channel(&PeerAddr::from_socket(addr), &settings).unwrap(),
    )
}

#[tokio::test]
async fn server_on_port_zero_answers_health_for_itself_and_overall() {
    let server = start(GrpcSettings::default(), Duration::ZERO).await;
    assert_ne!(server.addr().port(), 0);
    assert_eq!(
        testing::health(server.addr(), "shop.user.v1.UserService")
            .await
            .unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(
        testing::health(server.addr(), "").await.unwrap(),
        ServingStatus::Serving
    );
    let unknown = testing::health(server.addr(), "shop.nope.v1.Nope")
        .await
        .unwrap_err();
    assert!(
        unknown.to_string().to_lowercase().contains("not found")
            || format!("{unknown:?}").contains("NotFound"),
        "{unknown:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn reflection_lists_only_this_service_over_v1_and_v1alpha() {
    let server = start(GrpcSettings::default(), Duration::ZERO).await;
    for protocol in [Reflection::V1, Reflection::V1Alpha] {
        let services = testing::list_services(server.addr(), protocol)
            .await
            .unwrap();
        assert!(
            services.contains(&"shop.user.v1.UserService".to_string()),
            "{protocol:?}: {services:?}"
        );
        assert!(
            services.contains(&"grpc.health.v1.Health".to_string()),
            "{protocol:?}: {services:?}"
        );
        assert!(
            !services.iter().any(|s| s.starts_with("shop.order")),
            "{protocol:?}: {services:?}"
        );
        let files =
            testing::file_containing_symbol(server.addr(), protocol, "shop.user.v1.UserService")
                .await
                .unwrap();
        assert!(!files.is_empty(), "describe returns the defining file");
        let missing =
            testing::file_containing_symbol(server.addr(), protocol, "shop.nope.v1.Nope").await;
        assert!(
            missing.is_err(),
            "{protocol:?}: unknown symbols are an error"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn rpcs_without_an_implementation_answer_unimplemented() {
    let server = start(GrpcSettings::default(), Duration::ZERO).await;
    let status = client(server.addr())
        .register(RegisterRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    server.shutdown().await;
}

#[tokio::test]
async fn slow_requests_hit_the_server_timeout() {
    let settings = GrpcSettings {
        server_timeout: Duration::from_millis(100),
        ..GrpcSettings::default()
    };
    let server = start(settings, Duration::from_secs(5)).await;
    let started = std::time::Instant::now();
    let status = client(server.addr())
        .get_jwks(GetJwksRequest::default())
        .await
        .unwrap_err();
    // tonic reports its server-side timeout as CANCELLED.
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    server.shutdown().await;
}

#[tokio::test]
async fn requests_beyond_the_connection_limit_are_shed() {
    let settings = GrpcSettings {
        concurrency_limit_per_connection: 1,
        ..GrpcSettings::default()
    };
    let server = start(settings, Duration::from_millis(500)).await;
    // One connection, two concurrent calls: the second is shed at once.
    let c = client(server.addr());
    let (mut first, mut second) = (c.clone(), c.clone());
    let (a, b) = tokio::join!(first.get_jwks(GetJwksRequest::default()), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        second.get_jwks(GetJwksRequest::default()).await
    });
    let codes = [a.err().map(|s| s.code()), b.err().map(|s| s.code())];
    assert!(codes.contains(&Some(Code::ResourceExhausted)), "{codes:?}");
    assert!(
        codes.contains(&None),
        "the first call still succeeds: {codes:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_then_stops_listening() {
    let server = start(GrpcSettings::default(), Duration::from_millis(300)).await;
    let addr = server.addr();
    let c = client(addr);
    let in_flight = tokio::spawn(async move {
        let mut c = c;
        c.get_jwks(GetJwksRequest::default()).await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .expect("shutdown finishes");
    assert!(
        in_flight.await.unwrap().is_ok(),
        "the in-flight request completed"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn a_peer_that_is_down_gives_unavailable_after_bounded_retries() {
    // Bind then drop to get a port nobody listens on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let c = client(addr);
    let retry = Retry::new(2);
    let mut attempts = 0;
    let status = retry
        .run(|| {
            attempts += 1;
            let mut c = c.clone();
            async move { c.get_jwks(GetJwksRequest::default()).await }
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(attempts, 3);
}

/// Health of `service` on `addr`, polled until it is `want` (20 s at most).
async fn wait_health(addr: SocketAddr, service: &str, want: ServingStatus) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = testing::health(addr, service).await.ok();
        if now == Some(want) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{service:?} stayed {now:?}, wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_service_cut_off_from_its_database_is_not_ready_but_still_alive() {
    let pg = testing::postgres_url();
    let upstream: SocketAddr = pg
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .map(|host| host.replace("localhost", "127.0.0.1"))
        .and_then(|host| host.parse().ok())
        .expect("TEST_DATABASE_URL names host:port");
    let proxy = testing::TcpProxy::start_to(upstream).await.unwrap();
    let schema =
        testing::SchemaPrefix::on(format!("postgres://postgres@{}/postgres", proxy.addr()));
    let mut vars: std::collections::HashMap<String, String> = schema.vars().into_iter().collect();
    vars.insert("DATABASE_TIMEOUT_MS".into(), "500".into());
    let config = platform::Config::from_source("ready-test", &vars).unwrap();
    let store = platform::store::Store::from_config(&config, "ready")
        .await
        .unwrap();
    let bus: std::sync::Arc<dyn platform::events::EventBus> =
        std::sync::Arc::new(platform::events::memory::InProcessBus::new("shop"));

    let listener = platform::grpc::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let routes = tonic::service::Routes::new(UserServiceServer::new(SlowJwks::default()));
    let server = GrpcServer::new(
        ServiceId::User,
        &GrpcSettings::default(),
        proto::FILE_DESCRIPTOR_SET,
    )
    .readiness(platform::grpc::store_and_bus(store, bus))
    .serve(routes, listener)
    .await
    .unwrap();
    let (addr, name) = (server.addr(), "shop.user.v1.UserService");
    wait_health(addr, name, ServingStatus::Serving).await;

    proxy.stop().await;
    wait_health(addr, name, ServingStatus::NotServing).await;
    assert_eq!(
        testing::health(addr, "").await.unwrap(),
        ServingStatus::Serving,
        "liveness must not fail with the database"
    );

    proxy.start().await.unwrap();
    wait_health(addr, name, ServingStatus::Serving).await;
    server.shutdown().await;
    schema.drop(&["ready"]).await;
}
