//! Client-side checks of a running gRPC server: health and reflection.
//!
//! Used by the test suites and handy from operational tooling: they speak
//! to a real server over a real connection, as grpcurl would.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

async fn connect(addr: SocketAddr) -> anyhow::Result<Channel> {
    Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))
}

/// `grpc.health.v1.Health/Check` for `service` ("" = the whole server).
pub async fn health(addr: SocketAddr, service: &str) -> anyhow::Result<ServingStatus> {
    let mut client = tonic_health::pb::health_client::HealthClient::new(connect(addr).await?);
    let response = client
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_string(),
        })
        .await?
        .into_inner();
    ServingStatus::try_from(response.status).context("unknown serving status")
}

/// Which reflection protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reflection {
    V1,
    V1Alpha,
}

macro_rules! reflection_client {
    ($module:ident) => {
        mod $module {
            use tonic_reflection::pb::$module::ServerReflectionRequest;
            use tonic_reflection::pb::$module::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$module::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$module::server_reflection_response::MessageResponse;

            use super::Answer;

            pub(super) async fn ask(
                channel: tonic::transport::Channel,
                list: bool,
                symbol: &str,
            ) -> anyhow::Result<Answer> {
                let mut client = ServerReflectionClient::new(channel);
                let message = if list {
                    MessageRequest::ListServices(String::new())
                } else {
                    MessageRequest::FileContainingSymbol(symbol.to_string())
                };
                let request = ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(message),
                };
                let mut stream = client
                    .server_reflection_info(tokio_stream::once(request))
                    .await?
                    .into_inner();
                let response = stream
                    .message()
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("empty reflection stream"))?;
                Ok(match response.message_response {
                    Some(MessageResponse::ListServicesResponse(list)) => {
                        Answer::Services(list.service.into_iter().map(|s| s.name).collect())
                    }
                    Some(MessageResponse::FileDescriptorResponse(files)) => {
                        Answer::Files(files.file_descriptor_proto)
                    }
                    Some(MessageResponse::ErrorResponse(e)) => {
                        Answer::Error(e.error_code, e.error_message)
                    }
                    _ => anyhow::bail!("unexpected reflection answer"),
                })
            }
        }
    };
}

reflection_client!(v1);
reflection_client!(v1alpha);

enum Answer {
    Services(Vec<String>),
    Files(Vec<Vec<u8>>),
    Error(i32, String),
}

async fn ask(
    addr: SocketAddr,
    protocol: Reflection,
    list: bool,
    symbol: &str,
) -> anyhow::Result<Answer> {
    let channel = connect(addr).await?;
    Ok(match protocol {
        Reflection::V1 => v1::ask(channel, list, symbol).await?,
        Reflection::V1Alpha => v1alpha::ask(channel, list, symbol).await?,
    })
}

/// The services a server lists over reflection (`grpcurl list`).
pub async fn list_services(addr: SocketAddr, protocol: Reflection) -> anyhow::Result<Vec<String>> {
    match ask(addr, protocol, true, "").await? {
        Answer::Services(mut names) => {
            names.sort();
            Ok(names)
        }
        Answer::Error(code, message) => bail!("reflection error {code}: {message}"),
        Answer::Files(_) => bail!("unexpected file answer to a list request"),
    }
}

/// The encoded file descriptors that define `symbol` (`grpcurl describe`).
pub async fn file_containing_symbol(
    addr: SocketAddr,
    protocol: Reflection,
    symbol: &str,
) -> anyhow::Result<Vec<Vec<u8>>> {
    match ask(addr, protocol, false, symbol).await? {
        Answer::Files(files) => Ok(files),
        Answer::Error(code, message) => bail!("reflection error {code}: {message}"),
        Answer::Services(_) => bail!("unexpected list answer to a symbol request"),
    }
}

/// A TCP proxy in front of a backend (Postgres, NATS…) that a test can cut
/// and restore, to see what a service does when its backend goes away:
/// [`TcpProxy::stop`] closes the listener and every open connection,
/// [`TcpProxy::start`] listens again on the same port.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    running: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl TcpProxy {
    /// Starts a proxy to `upstream` on a free loopback port.
    pub async fn start_to(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let proxy = Self {
            addr: listener.local_addr()?,
            upstream,
            running: std::sync::Mutex::new(None),
        };
        proxy.serve(listener);
        Ok(proxy)
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let upstream = self.upstream;
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        *self.running.lock().expect("proxy lock") = Some(task);
    }

    /// Cuts every connection and stops listening.
    pub async fn stop(&self) {
        let task = self.running.lock().expect("proxy lock").take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn start(&self) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await
                }
                Err(err) => return Err(err).context("re-binding the proxy port"),
            }
        };
        self.serve(listener);
        Ok(())
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(task) = self.running.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

/// The Postgres tests and benchmarks use: `TEST_DATABASE_URL`, default the
/// local server with trust authentication.
pub fn postgres_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A unique `DATABASE_SCHEMA_PREFIX` on the test Postgres (or a MongoDB
/// server), so each test's services get schemas (databases) of their own,
/// dropped afterwards.
#[derive(Debug, Clone)]
pub struct SchemaPrefix {
    pub url: String,
    pub prefix: String,
}

/// The cursor key of test and benchmark configurations on real databases.
pub const TEST_CURSOR_KEY: &str = "test-cursor-key-0123456789abcdef0123";

impl Default for SchemaPrefix {
    fn default() -> Self {
        Self::new()
    }
}

impl SchemaPrefix {
    /// On the test Postgres ([`postgres_url`]).
    pub fn new() -> Self {
        Self::on(postgres_url())
    }

    /// On the server `url` names (`postgres://…` or `mongodb://…`).
    pub fn on(url: String) -> Self {
        // Random, not time-based: tests starting in the same millisecond
        // must not share schemas (a prefix is at most 24 characters).
        let prefix = format!(
            "t{:016x}{:04x}",
            rand::random::<u64>(),
            rand::random::<u16>()
        );
        Self { url, prefix }
    }

    /// `DATABASE_URL`, `DATABASE_SCHEMA_PREFIX` and a `STORE_CURSOR_KEY`
    /// for a service config.
    pub fn vars(&self) -> Vec<(String, String)> {
        vec![
            ("DATABASE_URL".into(), self.url.clone()),
            ("DATABASE_SCHEMA_PREFIX".into(), self.prefix.clone()),
            ("STORE_CURSOR_KEY".into(), TEST_CURSOR_KEY.into()),
        ]
    }

    /// Drops the schemas (databases) of `services` (their short names:
    /// `user`, `product`…).
    pub async fn drop(&self, services: &[&str]) {
        use crate::store::mongo::MongoBackend;
        use crate::store::postgres::PostgresBackend;
        let settings = crate::store::StoreSettings::default();
        for service in services {
            let schema = format!("{}_{service}", self.prefix);
            let dropped = if self.url.starts_with("mongodb") {
                match MongoBackend::connect(&self.url, &schema, &settings).await {
                    Ok(backend) => backend.drop_database().await,
                    Err(err) => Err(err),
                }
            } else {
                match PostgresBackend::connect(&self.url, &schema, &settings).await {
                    Ok(backend) => {
                        let dropped = backend.drop_schema().await;
                        backend.close().await;
                        dropped
                    }
                    Err(err) => Err(err),
                }
            };
            if let Err(err) = dropped {
                tracing::warn!(%schema, error = %err, "test schema not dropped");
            }
        }
    }
}

/// Credentials for tests that call services directly: a user key that signs
/// access tokens and a key for every component of the mesh, the same for
/// every test of a process. [`TestIdentity::configure`] makes a service
/// trust them.
pub struct TestIdentity {
    user_key: crate::auth::SigningKey,
    components: Vec<(String, crate::config::Secret)>,
    public: crate::auth::MeshKeys,
}

/// Components a test may speak as.
pub const TEST_COMPONENTS: [&str; 10] = [
    "gateway",
    "user-svc",
    "product-svc",
    "order-svc",
    "payment-svc",
    "shipping-svc",
    "notification-svc",
    "recommendation-svc",
    "cart-svc",
    "media-svc",
];

/// `envelope` as the owner of its type publishes it: from that component,
/// signed with its test key (see [`crate::events::signed`]).
pub fn signed(envelope: &proto::events::Envelope) -> proto::events::Envelope {
    let owner = crate::events::signed::owner(&envelope.r#type)
        .unwrap_or_else(|| panic!("no component owns {}", envelope.r#type));
    let mut from_owner = envelope.clone();
    from_owner.source = owner.to_string();
    crate::events::signed::sign(&identity().component(owner), &from_owner)
        .expect("signed by its source")
}

/// The process's test identity.
pub fn identity() -> &'static TestIdentity {
    static IDENTITY: std::sync::OnceLock<TestIdentity> = std::sync::OnceLock::new();
    IDENTITY.get_or_init(|| {
        let (components, public) = crate::auth::generate_mesh(&TEST_COMPONENTS);
        TestIdentity {
            user_key: crate::auth::SigningKey::generate(),
            components,
            public,
        }
    })
}

impl TestIdentity {
    /// Makes a service configured by `config` run as `component`, trust the
    /// test components' keys and verify users' tokens with the test user key
    /// (user-svc signs with it).
    pub fn configure(&self, config: &mut crate::Config, component: &str) {
        config.mesh.key = self
            .components
            .iter()
            .find(|(name, _)| name == component)
            .map(|(_, key)| key.clone());
        config.mesh.public_keys = self.public.clone();
        config.mesh.user_jwks = Some(crate::auth::JwkSet {
            keys: vec![self.user_key.jwk()],
        });
        config.jwt.private_key_pem = Some(crate::config::Secret(self.user_key.to_pem()));
        config.jwt.issuer = "shopmesh".into();
        config.jwt.audience = "shopmesh-api".into();
    }

    /// An access token of `user_id` with `role`, as user-svc would issue.
    pub fn token(&self, user_id: &str, role: &str) -> String {
        self.user_key.sign(&crate::auth::Claims::new(
            user_id,
            role,
            "shopmesh",
            "shopmesh-api",
            std::time::Duration::from_secs(900),
        ))
    }

    /// A request of `user_id` with `role`, as the gateway forwards it.
    pub fn as_user<T>(&self, message: T, user_id: &str, role: &str) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let value = format!("Bearer {}", self.token(user_id, role))
            .parse()
            .expect("a token is ASCII");
        request.metadata_mut().insert("authorization", value);
        request
    }

    /// Component `name` of the mesh, signing with its test key.
    pub fn component(&self, name: &str) -> crate::auth::MeshAuth {
        let key = self
            .components
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, key)| key.expose());
        crate::auth::MeshAuth::new(
            name,
            key,
            &self.public,
            crate::auth::UserKeys::fixed(
                &crate::auth::JwkSet {
                    keys: vec![self.user_key.jwk()],
                },
                "shopmesh",
                "shopmesh-api",
            ),
        )
        .expect("test keys are valid")
    }

    /// A request from component `name` on its own behalf.
    pub fn as_service<T>(&self, message: T, name: &str) -> tonic::Request<T> {
        self.component(name).request(message)
    }
}

/// Longest [`eventually`] waits.
pub const EVENTUALLY: std::time::Duration = std::time::Duration::from_secs(20);

/// Waits until `cond` holds, looking every 25 ms; fails the test naming
/// `what` after [`EVENTUALLY`].
pub async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {EVENTUALLY:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// What every service's tests set up first: the configuration of one
/// component (embedded defaults, or a Postgres schema prefix of its own),
/// with the test identity of that component, plus the test's variables.
#[derive(Debug)]
pub struct TestService {
    pub config: crate::Config,
    /// The schemas to drop afterwards, on Postgres.
    pub schemas: Option<SchemaPrefix>,
}

impl TestService {
    /// `component` (`product-svc`…) on Postgres or embedded, with `vars`
    /// on top.
    pub fn new(component: &str, postgres: bool, vars: &[(&str, &str)]) -> TestService {
        crate::telemetry::init_for_tests();
        let schemas = postgres.then(SchemaPrefix::new);
        let mut all: std::collections::HashMap<String, String> =
            schemas.iter().flat_map(SchemaPrefix::vars).collect();
        all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut config = crate::Config::from_source(&format!("{component}-test"), &all)
            .expect("the test configuration is valid");
        identity().configure(&mut config, component);
        TestService { config, schemas }
    }

    /// A listener on a free loopback port.
    pub async fn listener() -> tokio::net::TcpListener {
        crate::grpc::bind("127.0.0.1:0".parse().expect("an address"))
            .await
            .expect("a free loopback port")
    }

    /// A channel to a server of the test, built as the services build theirs.
    pub fn channel(&self, addr: SocketAddr) -> crate::grpc::GrpcChannel {
        crate::grpc::channel(&crate::PeerAddr::from_socket(addr), &self.config.grpc)
            .expect("a loopback address")
    }

    /// Drops the schemas of `services` (short names), on Postgres.
    pub async fn cleanup(&self, services: &[&str]) {
        if let Some(schemas) = &self.schemas {
            schemas.drop(services).await;
        }
    }
}
