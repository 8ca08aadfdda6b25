//! Typed configuration from environment variables (12-factor).
//!
//! Every variable has a default that runs embedded (memory store, in-process
//! bus, no cache, no exporter), so `cargo run` needs nothing set. A value
//! that is set but wrong is an error naming the variable, never a silent
//! fallback.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

pub mod saga;
pub use saga::SagaSettings;

/// A configuration value that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: String,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(var: &str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            var: var.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Where configuration values come from: the process environment, or a map
/// in tests.
pub trait Source {
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

impl Source for HashMap<&str, &str> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).map(|v| v.to_string())
    }
}

/// Typed access to a [`Source`]; empty values count as unset.
pub struct Vars<'a>(pub &'a dyn Source);

impl Vars<'_> {
    pub fn raw(&self, key: &str) -> Option<String> {
        self.0
            .get(key)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// Parses `key` with `parse`, which explains what it expected on failure.
    pub fn parse_with<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.raw(key) {
            None => Ok(None),
            Some(value) => parse(&value)
                .map(Some)
                .map_err(|reason| ConfigError::new(key, &value, reason)),
        }
    }

    pub fn socket_addr(&self, key: &str) -> Result<Option<SocketAddr>, ConfigError> {
        self.parse_with(key, parse_socket_addr)
    }

    pub fn number<T: FromStr>(&self, key: &str, what: &str) -> Result<Option<T>, ConfigError> {
        self.parse_with(key, |v| {
            v.parse::<T>().map_err(|_| format!("expected {what}"))
        })
    }

    pub fn millis(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        Ok(self
            .number::<u64>(key, "a whole number of milliseconds")?
            .map(Duration::from_millis))
    }

    /// A duration in milliseconds that must be above zero; `default` if unset.
    pub fn positive_millis(&self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.millis(key)? {
            Some(d) if d.is_zero() => Err(ConfigError::new(key, "0", "must be greater than zero")),
            Some(d) => Ok(d),
            None => Ok(default),
        }
    }

    /// A count that must be above zero; `default` if unset.
    pub fn positive_number(&self, key: &str, default: u32) -> Result<u32, ConfigError> {
        match self.number::<u32>(key, "a positive whole number")? {
            Some(0) => Err(ConfigError::new(key, "0", "must be greater than zero")),
            Some(n) => Ok(n),
            None => Ok(default),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.parse_with(key, |v| match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err("expected true or false".into()),
        })
    }

    pub fn url(&self, key: &str, schemes: &[&str]) -> Result<Option<String>, ConfigError> {
        self.parse_with(key, |v| {
            let scheme = v.split_once("://").map(|(s, _)| s).ok_or_else(|| {
                format!(
                    "expected a URL starting with {}",
                    schemes.join("://, ") + "://"
                )
            })?;
            if schemes.contains(&scheme) {
                Ok(v.to_string())
            } else {
                Err(format!(
                    "unsupported scheme {scheme:?}; expected one of {schemes:?}"
                ))
            }
        })
    }
}

/// Shortest `STORE_CURSOR_KEY` taken with a real database.
pub const MIN_CURSOR_KEY_LEN: usize = 32;

/// `TRUSTED_PROXY_HOPS`; the former `TRUST_FORWARDED_FOR` took the
/// client-written first entry and is refused rather than ignored.
fn trusted_proxy_hops(v: &Vars<'_>) -> Result<usize, ConfigError> {
    if let Some(old) = v.raw("TRUST_FORWARDED_FOR") {
        return Err(ConfigError::new(
            "TRUST_FORWARDED_FOR",
            &old,
            "replaced by TRUSTED_PROXY_HOPS (the number of proxies in front of the gateway)",
        ));
    }
    let hops = v
        .number::<usize>("TRUSTED_PROXY_HOPS", "a whole number of proxies")?
        .unwrap_or(0);
    if hops > 16 {
        return Err(ConfigError::new(
            "TRUSTED_PROXY_HOPS",
            &hops.to_string(),
            "at most 16",
        ));
    }
    Ok(hops)
}

/// One NATS name or subject token: letters, digits, `_` and `-`.
fn name_token(value: &str) -> Result<String, String> {
    if !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        Ok(value.to_string())
    } else {
        Err("expected 1 to 64 letters, digits, _ or -".to_string())
    }
}

fn parse_socket_addr(value: &str) -> Result<SocketAddr, String> {
    value
        .parse::<SocketAddr>()
        .map_err(|_| "expected an IP address and port such as 127.0.0.1:50051".to_string())
}

/// A secret value: shown as `<redacted>` by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The seven internal services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceId {
    Product,
    Order,
    Payment,
    Recommendation,
    User,
    Shipping,
    Notification,
}

impl ServiceId {
    pub const ALL: [ServiceId; 7] = [
        ServiceId::Product,
        ServiceId::Order,
        ServiceId::Payment,
        ServiceId::Recommendation,
        ServiceId::User,
        ServiceId::Shipping,
        ServiceId::Notification,
    ];

    /// Short name: `product`, `order`…
    pub fn name(self) -> &'static str {
        match self {
            ServiceId::Product => "product",
            ServiceId::Order => "order",
            ServiceId::Payment => "payment",
            ServiceId::Recommendation => "recommendation",
            ServiceId::User => "user",
            ServiceId::Shipping => "shipping",
            ServiceId::Notification => "notification",
        }
    }

    /// Crate and binary name: `product-svc`…
    pub fn binary(self) -> &'static str {
        match self {
            ServiceId::Product => "product-svc",
            ServiceId::Order => "order-svc",
            ServiceId::Payment => "payment-svc",
            ServiceId::Recommendation => "recommendation-svc",
            ServiceId::User => "user-svc",
            ServiceId::Shipping => "shipping-svc",
            ServiceId::Notification => "notification-svc",
        }
    }

    /// Fully-qualified gRPC service name.
    pub fn grpc_service(self) -> &'static str {
        match self {
            ServiceId::Product => "shop.product.v1.ProductService",
            ServiceId::Order => "shop.order.v1.OrderService",
            ServiceId::Payment => "shop.payment.v1.PaymentService",
            ServiceId::Recommendation => "shop.recommendation.v1.RecommendationService",
            ServiceId::User => "shop.user.v1.UserService",
            ServiceId::Shipping => "shop.shipping.v1.ShippingService",
            ServiceId::Notification => "shop.notification.v1.NotificationService",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            ServiceId::Product => 50051,
            ServiceId::Order => 50052,
            ServiceId::Payment => 50053,
            ServiceId::Recommendation => 50054,
            ServiceId::User => 50055,
            ServiceId::Shipping => 50056,
            ServiceId::Notification => 50057,
        }
    }

    /// The variable naming where this service listens / is reached: `PRODUCT_ADDR`…
    pub fn addr_var(self) -> &'static str {
        match self {
            ServiceId::Product => "PRODUCT_ADDR",
            ServiceId::Order => "ORDER_ADDR",
            ServiceId::Payment => "PAYMENT_ADDR",
            ServiceId::Recommendation => "RECOMMENDATION_ADDR",
            ServiceId::User => "USER_ADDR",
            ServiceId::Shipping => "SHIPPING_ADDR",
            ServiceId::Notification => "NOTIFICATION_ADDR",
        }
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.binary())
    }
}

/// Where a service keeps its documents (`DATABASE_URL`).
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `memory://` — embedded default, nothing survives a restart.
    Memory,
    /// `postgres://…` or `postgresql://…`.
    Postgres(String),
    /// `mongodb://…` or `mongodb+srv://…`.
    MongoDb(String),
}

impl DatabaseUrl {
    pub fn scheme(&self) -> &'static str {
        match self {
            DatabaseUrl::Memory => "memory",
            DatabaseUrl::Postgres(_) => "postgres",
            DatabaseUrl::MongoDb(_) => "mongodb",
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    // Never print credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({}://…)", self.scheme())
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = value
            .split_once("://")
            .ok_or("expected a URL such as memory://, postgres://host/db or mongodb://host/db")?;
        match scheme {
            "memory" => Ok(DatabaseUrl::Memory),
            "postgres" | "postgresql" if !rest.is_empty() => {
                Ok(DatabaseUrl::Postgres(value.to_string()))
            }
            "mongodb" | "mongodb+srv" if !rest.is_empty() => {
                Ok(DatabaseUrl::MongoDb(value.to_string()))
            }
            "postgres" | "postgresql" | "mongodb" | "mongodb+srv" => {
                Err("the URL has no host".into())
            }
            other => Err(format!(
                "unknown scheme {other:?}; expected memory, postgres, postgresql, mongodb or mongodb+srv"
            )),
        }
    }
}

/// Address of a peer service, as a URI tonic can dial (`http://host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr(pub String);

impl PeerAddr {
    pub fn from_socket(addr: SocketAddr) -> Self {
        PeerAddr(format!("http://{addr}"))
    }

    pub fn uri(&self) -> &str {
        &self.0
    }
}

impl FromStr for PeerAddr {
    type Err = String;

    /// Accepts `host:port` or `http(s)://host:port`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let with_scheme = if value.contains("://") {
            value.to_string()
        } else {
            format!("http://{value}")
        };
        let uri: http::Uri = with_scheme
            .parse()
            .map_err(|_| "expected host:port or http://host:port".to_string())?;
        match (uri.scheme_str(), uri.host(), uri.port_u16()) {
            (Some("http" | "https"), Some(_), Some(_)) => {
                Ok(PeerAddr(with_scheme.trim_end_matches('/').to_string()))
            }
            (Some("http" | "https"), Some(_), None) => Err("the address has no port".into()),
            _ => Err("expected host:port or http://host:port".into()),
        }
    }
}

/// Where to reach every peer (`<SVC>_ADDR`). Defaults to the loopback
/// default ports, as the all-in-one binary uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peers(HashMap<ServiceId, PeerAddr>);

impl Peers {
    pub fn get(&self, id: ServiceId) -> &PeerAddr {
        &self.0[&id]
    }

    pub fn set(&mut self, id: ServiceId, addr: PeerAddr) {
        self.0.insert(id, addr);
    }

    pub fn defaults() -> Self {
        Peers(
            ServiceId::ALL
                .iter()
                .map(|&id| {
                    (
                        id,
                        PeerAddr(format!("http://127.0.0.1:{}", id.default_port())),
                    )
                })
                .collect(),
        )
    }
}

/// gRPC server and client limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcSettings {
    /// Longest a server spends on one request (`GRPC_SERVER_TIMEOUT_MS`, 30 s).
    pub server_timeout: Duration,
    /// Concurrent requests per connection (`GRPC_CONCURRENCY_LIMIT`, 256);
    /// beyond it requests are shed with UNAVAILABLE.
    pub concurrency_limit_per_connection: usize,
    /// Default deadline of an outgoing call (`GRPC_CLIENT_TIMEOUT_MS`, 5 s).
    pub client_timeout: Duration,
    /// Connect timeout of an outgoing channel (`GRPC_CONNECT_TIMEOUT_MS`, 2 s).
    pub connect_timeout: Duration,
    /// In-flight requests per outgoing channel (`GRPC_CLIENT_CONCURRENCY`, 512).
    pub client_concurrency_limit: usize,
    /// Extra attempts for idempotent calls (`GRPC_CLIENT_RETRIES`, 2).
    pub client_retries: u32,
    /// Circuit breaker of outgoing channels (`GRPC_BREAKER_FAILURES`, 5
    /// consecutive failures, 0 = off; `GRPC_BREAKER_OPEN_MS`, 5000).
    pub breaker: crate::breaker::BreakerSettings,
}

impl Default for GrpcSettings {
    fn default() -> Self {
        Self {
            server_timeout: Duration::from_secs(30),
            concurrency_limit_per_connection: 256,
            client_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            client_concurrency_limit: 512,
            client_retries: 2,
            breaker: crate::breaker::BreakerSettings::default(),
        }
    }
}

/// Log output format (`LOG_FORMAT`: `json`, the default, or `pretty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// `OTEL_SERVICE_NAME`; defaults to the binary's name.
    pub service_name: String,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (OTLP over gRPC, e.g. `http://jaeger:4317`);
    /// unset = spans are not exported (trace ids still appear in logs).
    pub otlp_endpoint: Option<String>,
    pub log_format: LogFormat,
    /// `RUST_LOG` filter, default `info`: what is logged.
    pub log_filter: String,
    /// `OTEL_TRACES_FILTER`, default `info`: which spans are traced,
    /// whatever `RUST_LOG` says (operators log at `warn` and still need
    /// traces and `traceparent`).
    pub trace_filter: String,
    /// Whether spans are exported under the `service.name` of the service
    /// that made them (the all-in-one binary, where seven services and the
    /// gateway share one process) rather than all under `service_name`.
    pub per_service_names: bool,
}

/// Access-token settings (`JWT_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// `JWT_ISSUER` (default `shopmesh`).
    pub issuer: String,
    /// `JWT_AUDIENCE` (default `shopmesh-api`).
    pub audience: String,
    /// `JWT_PRIVATE_KEY_PEM`: signing key; unset = generated and persisted on
    /// first start in embedded mode.
    pub private_key_pem: Option<Secret>,
    /// `JWT_ACCESS_TTL_SECS` (default 900).
    pub access_ttl: Duration,
    /// `JWT_REFRESH_TTL_SECS` (default 30 days).
    pub refresh_ttl: Duration,
}

/// NATS credentials of this component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NatsAuth {
    /// None, or whatever `NATS_URL` carries (`nats://user:password@host`).
    #[default]
    None,
    /// `NATS_USER` and `NATS_PASSWORD`.
    UserPassword { user: String, password: Secret },
}

/// Identity inside the mesh (`MESH_*`): see [`crate::auth::MeshAuth`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshConfig {
    /// `MESH_KEY`: this component's Ed25519 key (base64url of its 32-byte
    /// secret) that signs its service tokens. Unset: its calls carry no
    /// service token, so peers refuse what needs one.
    pub key: Option<Secret>,
    /// `MESH_PUBLIC_KEYS`: `name=<base64url public key>,…` for every
    /// component whose service tokens are accepted.
    pub public_keys: crate::auth::MeshKeys,
    /// The users' access-token keys, when given directly (tests, embedders);
    /// unset, they are fetched from user-svc.
    pub user_jwks: Option<crate::auth::JwkSet>,
}

fn parse_mesh_public_keys(value: &str) -> Result<crate::auth::MeshKeys, String> {
    let mut keys = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, key) = entry
            .split_once('=')
            .ok_or_else(|| format!("expected name=<public key>, got {entry:?}"))?;
        let bytes = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            key.trim(),
        )
        .map_err(|_| format!("the key of {name} is not base64url"))?;
        if bytes.len() != 32 || name.trim().is_empty() {
            return Err(format!(
                "the key of {name} is not a 32-byte Ed25519 public key"
            ));
        }
        keys.push((name.trim().to_string(), key.trim().to_string()));
    }
    Ok(crate::auth::MeshKeys(keys))
}

/// Outgoing integrations; each is off while its variables are unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integrations {
    /// `SMTP_URL` (`smtp://`, `smtps://`), `SMTP_FROM`.
    pub smtp_url: Option<String>,
    pub smtp_from: String,
    /// `TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN`, `TWILIO_FROM`, `TWILIO_BASE_URL`.
    pub twilio_account_sid: Option<String>,
    pub twilio_auth_token: Option<Secret>,
    pub twilio_from: Option<String>,
    pub twilio_base_url: String,
    /// `STRIPE_API_KEY`, `STRIPE_BASE_URL`.
    pub stripe_api_key: Option<Secret>,
    pub stripe_base_url: String,
    /// `CARRIER_BASE_URL`, `CARRIER_API_KEY`: the carrier's label API;
    /// unset = simulated carrier.
    pub carrier_base_url: Option<String>,
    pub carrier_api_key: Option<Secret>,
    /// `SHIPPING_WEBHOOK_SECRET`: key of the carrier webhook's HMAC-SHA256
    /// signature; unset = the webhook refuses every call.
    pub shipping_webhook_secret: Option<Secret>,
    /// `VAPID_PRIVATE_KEY`: the Web Push (VAPID, RFC 8292) signing key, a
    /// P-256 key as PKCS#8 PEM or base64url DER; unset = no push channel
    /// (subscriptions are still stored). `VAPID_SUBJECT`: contact URI the
    /// push services see, required with the key (`mailto:` an address that
    /// receives mail, or an `https:` page; Apple's push service refuses
    /// made-up ones).
    pub vapid_private_key: Option<Secret>,
    pub vapid_subject: Option<String>,
    /// `PUSH_ALLOW_HTTP` (default false): accept `http://` push endpoints,
    /// for local push services in development and tests only.
    pub push_allow_http: bool,
    /// `DELIVERY_RETRY_BASE_MS` (default 5000) and `DELIVERY_MAX_ATTEMPTS`
    /// (default 15): email, SMS and push deliveries that fail are retried
    /// with exponential backoff from the base (each wait capped at an
    /// hour), up to that many attempts: with the defaults a delivery rides
    /// out a provider outage of about three to five hours.
    pub delivery_retry_base: Duration,
    pub delivery_max_attempts: u32,
}

/// The whole configuration of a process. Services read what they need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `GRPC_ADDR`: where a single-service binary listens (default
    /// `127.0.0.1:<the service's port>`; containers set `0.0.0.0:…`).
    pub grpc_addr: Option<SocketAddr>,
    /// `HTTP_ADDR`: where the gateway listens (default `127.0.0.1:8080`).
    pub http_addr: SocketAddr,
    /// `METRICS_ADDR`: where a single-service binary serves `GET /metrics`
    /// (unset: nowhere). The all-in-one binary serves every service's
    /// metrics on the gateway's `/metrics` instead.
    pub metrics_addr: Option<SocketAddr>,
    pub database_url: DatabaseUrl,
    /// `DATABASE_TIMEOUT_MS` (3000), `DATABASE_MAX_CONNECTIONS` (10),
    /// and for MongoDB `MONGODB_WRITE_CONCERN` (`majority` or a number) and
    /// `MONGODB_RETRY_WRITES` (both unset: the URL's or driver's default).
    pub store: crate::store::StoreSettings,
    /// `DATABASE_SCHEMA_PREFIX`: prefix of each service's schema (Postgres)
    /// or database (MongoDB) name, for several environments on one server.
    pub schema_prefix: Option<String>,
    /// `STORE_CURSOR_KEY`: key that signs paging cursors; set the same value
    /// on every replica of a service so their cursors interoperate.
    pub cursor_key: Option<Secret>,
    /// `NATS_URL`; unset = in-process bus.
    pub nats_url: Option<String>,
    /// `NATS_STREAM` (default `SHOP`) and `NATS_SUBJECT_PREFIX` (default
    /// `shop`): the JetStream stream and the subjects it holds (`<prefix>.>`).
    pub nats_stream: String,
    pub nats_prefix: String,
    /// How this component proves itself to NATS: `NATS_USER` and
    /// `NATS_PASSWORD`, or credentials in `NATS_URL`.
    pub nats_auth: NatsAuth,
    /// `REDIS_URL`; unset = no cache, in-memory rate limits.
    pub redis_url: Option<String>,
    /// `REDIS_KEY_PREFIX`: first part of every Redis key (cache, rate
    /// limits), so environments sharing one Redis never read each other's
    /// entries. Default: `DATABASE_SCHEMA_PREFIX` if set, else the NATS
    /// subject prefix.
    pub redis_key_prefix: String,
    pub peers: Peers,
    pub grpc: GrpcSettings,
    pub telemetry: TelemetryConfig,
    pub jwt: JwtConfig,
    pub mesh: MeshConfig,
    pub integrations: Integrations,
    /// `ADMIN_EMAIL` / `ADMIN_PASSWORD`: bootstrap admin account.
    pub admin_email: Option<String>,
    pub admin_password: Option<Secret>,
    /// `SEED_DEMO` (default true): seed the demo catalog.
    pub seed_demo: bool,
    /// `RATE_LIMIT_RPS` (default 100; 0 turns the general limit off).
    pub rate_limit_rps: u32,
    /// `RATE_LIMIT_BURST` (default twice the rate).
    pub rate_limit_burst: u32,
    /// `CORS_ALLOWED_ORIGINS`: comma-separated origins, or `*`; unset = no
    /// cross-origin access.
    pub cors_allowed_origins: Vec<String>,
    /// `REQUEST_TIMEOUT_MS` (default 30000): longest the gateway works on a request.
    pub request_timeout: Duration,
    /// `LOW_STOCK_THRESHOLD` (default 5): `inventory.low` when available
    /// stock drops below it.
    pub low_stock_threshold: u32,
    /// `PRODUCT_CACHE_TTL_SECS` (default 60): how long product pages stay cached.
    pub product_cache_ttl: Duration,
    /// `TRUSTED_PROXY_HOPS` (default 0): how many proxies in front of the
    /// gateway append to `X-Forwarded-For`; the client address is the entry
    /// that many from the right (0: the socket peer).
    pub trusted_proxy_hops: usize,
    /// Payment timeout, caps and sweeper timing of the order saga.
    pub saga: SagaSettings,
}

impl Config {
    /// Reads the process environment. `program` names the default
    /// `OTEL_SERVICE_NAME`.
    pub fn from_env(program: &str) -> Result<Self, ConfigError> {
        Self::from_source(program, &ProcessEnv)
    }

    pub fn from_source(program: &str, source: &dyn Source) -> Result<Self, ConfigError> {
        let v = Vars(source);
        let mut peers = Peers::defaults();
        for id in ServiceId::ALL {
            if let Some(addr) = v.parse_with(id.addr_var(), |s| s.parse::<PeerAddr>())? {
                peers.set(id, addr);
            }
        }
        let defaults = GrpcSettings::default();
        let grpc = GrpcSettings {
            server_timeout: v
                .millis("GRPC_SERVER_TIMEOUT_MS")?
                .unwrap_or(defaults.server_timeout),
            concurrency_limit_per_connection: v
                .number("GRPC_CONCURRENCY_LIMIT", "a positive whole number")?
                .filter(|n: &usize| *n > 0)
                .unwrap_or(defaults.concurrency_limit_per_connection),
            client_timeout: v
                .millis("GRPC_CLIENT_TIMEOUT_MS")?
                .unwrap_or(defaults.client_timeout),
            connect_timeout: v
                .millis("GRPC_CONNECT_TIMEOUT_MS")?
                .unwrap_or(defaults.connect_timeout),
            client_concurrency_limit: v
                .number("GRPC_CLIENT_CONCURRENCY", "a positive whole number")?
                .filter(|n: &usize| *n > 0)
                .unwrap_or(defaults.client_concurrency_limit),
            client_retries: v
                .number("GRPC_CLIENT_RETRIES", "a whole number from 0 to 10")?
                .map(|n: u32| {
                    if n <= 10 {
                        Ok(n)
                    } else {
                        Err(ConfigError::new(
                            "GRPC_CLIENT_RETRIES",
                            &n.to_string(),
                            "at most 10",
                        ))
                    }
                })
                .transpose()?
                .unwrap_or(defaults.client_retries),
            breaker: crate::breaker::BreakerSettings {
                failures: v
                    .number("GRPC_BREAKER_FAILURES", "a whole number of failures")?
                    .unwrap_or(defaults.breaker.failures),
                open_for: v.positive_millis("GRPC_BREAKER_OPEN_MS", defaults.breaker.open_for)?,
            },
        };
        for (var, value) in [
            ("GRPC_SERVER_TIMEOUT_MS", grpc.server_timeout),
            ("GRPC_CLIENT_TIMEOUT_MS", grpc.client_timeout),
            ("GRPC_CONNECT_TIMEOUT_MS", grpc.connect_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(var, "0", "must be greater than zero"));
            }
        }
        let log_format = v
            .parse_with("LOG_FORMAT", |s| match s {
                "json" => Ok(LogFormat::Json),
                "pretty" | "text" => Ok(LogFormat::Pretty),
                _ => Err("expected json or pretty".to_string()),
            })?
            .unwrap_or(LogFormat::Json);
        let secs = |key: &str, default: u64| -> Result<Duration, ConfigError> {
            let n = v
                .number::<u64>(key, "a whole number of seconds")?
                .unwrap_or(default);
            if n == 0 {
                return Err(ConfigError::new(key, "0", "must be greater than zero"));
            }
            Ok(Duration::from_secs(n))
        };
        let admin_email = v.raw("ADMIN_EMAIL");
        let admin_password = v.raw("ADMIN_PASSWORD").map(Secret);
        match (&admin_email, &admin_password) {
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "ADMIN_PASSWORD",
                    "",
                    "must be set when ADMIN_EMAIL is",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "ADMIN_EMAIL",
                    "",
                    "must be set when ADMIN_PASSWORD is",
                ));
            }
            _ => {}
        }
        let rate_limit_rps: u32 = v
            .number("RATE_LIMIT_RPS", "a whole number of requests per second")?
            .unwrap_or(100);
        let mut config = Config {
            grpc_addr: v.socket_addr("GRPC_ADDR")?,
            http_addr: v
                .socket_addr("HTTP_ADDR")?
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            metrics_addr: v.socket_addr("METRICS_ADDR")?,
            database_url: v
                .parse_with("DATABASE_URL", |s| s.parse::<DatabaseUrl>())?
                .unwrap_or(DatabaseUrl::Memory),
            store: crate::store::StoreSettings {
                timeout: v.positive_millis(
                    "DATABASE_TIMEOUT_MS",
                    crate::store::StoreSettings::default().timeout,
                )?,
                max_connections: v.positive_number(
                    "DATABASE_MAX_CONNECTIONS",
                    crate::store::StoreSettings::default().max_connections,
                )?,
                write_concern: v.parse_with("MONGODB_WRITE_CONCERN", |s| s.parse())?,
                retry_writes: v.bool("MONGODB_RETRY_WRITES")?,
            },
            cursor_key: v.raw("STORE_CURSOR_KEY").map(Secret),
            schema_prefix: v.parse_with("DATABASE_SCHEMA_PREFIX", |s| {
                if s.len() <= 24
                    && s.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    Ok(s.to_string())
                } else {
                    Err("expected at most 24 of a-z, 0-9 and _".to_string())
                }
            })?,
            nats_url: v.url("NATS_URL", &["nats", "tls", "ws", "wss"])?,
            redis_url: v.url("REDIS_URL", &["redis", "rediss"])?,
            redis_key_prefix: String::new(),
            nats_auth: match (v.raw("NATS_USER"), v.raw("NATS_PASSWORD")) {
                (Some(user), Some(password)) => NatsAuth::UserPassword {
                    user,
                    password: Secret(password),
                },
                (Some(user), None) => {
                    return Err(ConfigError::new(
                        "NATS_PASSWORD",
                        "",
                        format!("NATS_USER={user} needs NATS_PASSWORD"),
                    ));
                }
                (None, Some(_)) => {
                    return Err(ConfigError::new(
                        "NATS_USER",
                        "",
                        "NATS_PASSWORD is set without NATS_USER",
                    ));
                }
                (None, None) => NatsAuth::None,
            },
            nats_stream: v
                .parse_with("NATS_STREAM", name_token)?
                .unwrap_or_else(|| "SHOP".into()),
            nats_prefix: v
                .parse_with("NATS_SUBJECT_PREFIX", name_token)?
                .unwrap_or_else(|| "shop".into()),
            peers,
            grpc,
            telemetry: TelemetryConfig {
                service_name: v
                    .raw("OTEL_SERVICE_NAME")
                    .unwrap_or_else(|| program.to_string()),
                otlp_endpoint: v.url("OTEL_EXPORTER_OTLP_ENDPOINT", &["http", "https"])?,
                log_format,
                log_filter: v.raw("RUST_LOG").unwrap_or_else(|| "info".to_string()),
                trace_filter: v
                    .raw("OTEL_TRACES_FILTER")
                    .unwrap_or_else(|| "info".to_string()),
                per_service_names: false,
            },
            jwt: JwtConfig {
                issuer: v.raw("JWT_ISSUER").unwrap_or_else(|| "shopmesh".into()),
                audience: v
                    .raw("JWT_AUDIENCE")
                    .unwrap_or_else(|| "shopmesh-api".into()),
                private_key_pem: v.raw("JWT_PRIVATE_KEY_PEM").map(Secret),
                access_ttl: secs("JWT_ACCESS_TTL_SECS", 900)?,
                refresh_ttl: secs("JWT_REFRESH_TTL_SECS", 30 * 24 * 3600)?,
            },
            mesh: MeshConfig {
                key: match v.raw("MESH_KEY") {
                    None => None,
                    Some(seed) => {
                        crate::auth::SigningKey::from_seed(&seed).map_err(|e| {
                            ConfigError::new("MESH_KEY", "<redacted>", e.to_string())
                        })?;
                        Some(Secret(seed))
                    }
                },
                public_keys: v
                    .parse_with("MESH_PUBLIC_KEYS", parse_mesh_public_keys)?
                    .unwrap_or_default(),
                user_jwks: None,
            },
            integrations: Integrations {
                smtp_url: v.url("SMTP_URL", &["smtp", "smtps"])?,
                smtp_from: v
                    .raw("SMTP_FROM")
                    .unwrap_or_else(|| "shopmesh <no-reply@shopmesh.local>".into()),
                twilio_account_sid: v.raw("TWILIO_ACCOUNT_SID"),
                twilio_auth_token: v.raw("TWILIO_AUTH_TOKEN").map(Secret),
                twilio_from: v.raw("TWILIO_FROM"),
                twilio_base_url: v
                    .url("TWILIO_BASE_URL", &["http", "https"])?
                    .unwrap_or_else(|| "https://api.twilio.com".into()),
                stripe_api_key: v.raw("STRIPE_API_KEY").map(Secret),
                stripe_base_url: v
                    .url("STRIPE_BASE_URL", &["http", "https"])?
                    .unwrap_or_else(|| "https://api.stripe.com".into()),
                carrier_base_url: v.url("CARRIER_BASE_URL", &["http", "https"])?,
                carrier_api_key: v.raw("CARRIER_API_KEY").map(Secret),
                shipping_webhook_secret: v.raw("SHIPPING_WEBHOOK_SECRET").map(Secret),
                vapid_private_key: v.raw("VAPID_PRIVATE_KEY").map(Secret),
                vapid_subject: v.parse_with("VAPID_SUBJECT", |s| {
                    if s.starts_with("mailto:") || s.starts_with("https://") {
                        Ok(s.to_string())
                    } else {
                        Err("expected a mailto: or https:// URI".to_string())
                    }
                })?,
                push_allow_http: v.bool("PUSH_ALLOW_HTTP")?.unwrap_or(false),
                delivery_retry_base: v
                    .positive_millis("DELIVERY_RETRY_BASE_MS", Duration::from_secs(5))?,
                delivery_max_attempts: v.positive_number("DELIVERY_MAX_ATTEMPTS", 15)?,
            },
            admin_email,
            admin_password,
            seed_demo: v.bool("SEED_DEMO")?.unwrap_or(true),
            rate_limit_rps,
            rate_limit_burst: v
                .number("RATE_LIMIT_BURST", "a whole number of requests")?
                .unwrap_or(rate_limit_rps.saturating_mul(2)),
            cors_allowed_origins: v
                .raw("CORS_ALLOWED_ORIGINS")
                .map(|s| {
                    s.split(',')
                        .map(|o| o.trim().to_string())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            request_timeout: v.positive_millis("REQUEST_TIMEOUT_MS", Duration::from_secs(30))?,
            trusted_proxy_hops: trusted_proxy_hops(&v)?,
            saga: SagaSettings::from_vars(&v)?,
            low_stock_threshold: v
                .number("LOW_STOCK_THRESHOLD", "a whole number of units")?
                .unwrap_or(5),
            product_cache_ttl: secs("PRODUCT_CACHE_TTL_SECS", 60)?,
        };
        config.redis_key_prefix = match v.parse_with("REDIS_KEY_PREFIX", name_token)? {
            Some(prefix) => prefix,
            None => config
                .schema_prefix
                .clone()
                .unwrap_or_else(|| config.nats_prefix.clone()),
        };
        if config.database_url != DatabaseUrl::Memory {
            let key_len = config.cursor_key.as_ref().map_or(0, |k| k.expose().len());
            if key_len < MIN_CURSOR_KEY_LEN {
                return Err(ConfigError::new(
                    "STORE_CURSOR_KEY",
                    "",
                    format!(
                        "must be set to a random secret of at least {MIN_CURSOR_KEY_LEN} characters \
                         (the same on every replica, e.g. `openssl rand -hex 32`) when DATABASE_URL \
                         is a real database: the built-in key signs cursors anyone can forge"
                    ),
                ));
            }
        }
        let i = &config.integrations;
        if i.vapid_private_key.is_some() && i.vapid_subject.is_none() {
            return Err(ConfigError::new(
                "VAPID_SUBJECT",
                "",
                "must be set when VAPID_PRIVATE_KEY is (a mailto: or https: contact)",
            ));
        }
        Ok(config)
    }

    /// Where a single-service binary of `id` listens.
    pub fn grpc_listen_addr(&self, id: ServiceId) -> SocketAddr {
        self.grpc_addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], id.default_port())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        Config::from_source("test-svc", &map)
    }

    #[test]
    fn defaults_run_embedded() {
        let c = load(&[]).unwrap();
        assert_eq!(c.database_url, DatabaseUrl::Memory);
        assert_eq!(c.nats_url, None);
        assert_eq!(c.redis_url, None);
        assert_eq!(c.telemetry.otlp_endpoint, None);
        assert_eq!(c.telemetry.service_name, "test-svc");
        assert_eq!(c.http_addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            c.grpc_listen_addr(ServiceId::Product),
            "127.0.0.1:50051".parse().unwrap()
        );
        assert_eq!(
            c.grpc_listen_addr(ServiceId::Notification),
            "127.0.0.1:50057".parse().unwrap()
        );
        assert_eq!(c.peers.get(ServiceId::User).uri(), "http://127.0.0.1:50055");
        assert_eq!(c.jwt.access_ttl, Duration::from_secs(900));
        assert!(c.seed_demo);
        assert_eq!(c.rate_limit_rps, 100);
    }

    #[test]
    fn every_service_has_a_distinct_port_and_variable() {
        let ports: std::collections::HashSet<_> =
            ServiceId::ALL.iter().map(|s| s.default_port()).collect();
        let vars: std::collections::HashSet<_> =
            ServiceId::ALL.iter().map(|s| s.addr_var()).collect();
        assert_eq!(ports.len(), 7);
        assert_eq!(vars.len(), 7);
    }

    #[test]
    fn values_are_read() {
        let c = load(&[
            ("GRPC_ADDR", "0.0.0.0:6000"),
            ("HTTP_ADDR", "[::1]:9000"),
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/shop"),
            ("STORE_CURSOR_KEY", "0123456789abcdef0123456789abcdef"),
            ("NATS_URL", "nats://127.0.0.1:4222"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("PRODUCT_ADDR", "product-svc:50051"),
            ("ORDER_ADDR", "http://order-svc:7000/"),
            ("GRPC_CLIENT_TIMEOUT_MS", "750"),
            ("LOG_FORMAT", "pretty"),
            ("SEED_DEMO", "false"),
            ("RATE_LIMIT_RPS", "0"),
        ])
        .unwrap();
        assert_eq!(
            c.grpc_listen_addr(ServiceId::Product),
            "0.0.0.0:6000".parse().unwrap()
        );
        assert_eq!(c.http_addr, "[::1]:9000".parse().unwrap());
        assert!(matches!(c.database_url, DatabaseUrl::Postgres(_)));
        assert_eq!(c.nats_url.as_deref(), Some("nats://127.0.0.1:4222"));
        assert_eq!(
            c.peers.get(ServiceId::Product).uri(),
            "http://product-svc:50051"
        );
        assert_eq!(c.peers.get(ServiceId::Order).uri(), "http://order-svc:7000");
        assert_eq!(c.grpc.client_timeout, Duration::from_millis(750));
        assert_eq!(c.telemetry.log_format, LogFormat::Pretty);
        assert!(!c.seed_demo);
        assert_eq!(c.rate_limit_rps, 0);
        assert!(matches!(
            load(&[
                ("DATABASE_URL", "mongodb://m:27017/x"),
                ("STORE_CURSOR_KEY", "0123456789abcdef0123456789abcdef")
            ])
            .unwrap()
            .database_url,
            DatabaseUrl::MongoDb(_)
        ));
    }

    #[test]
    fn a_real_database_needs_a_cursor_key_of_its_own() {
        assert!(load(&[]).is_ok(), "embedded: the built-in key is fine");
        for key in [None, Some("short")] {
            let mut vars = vec![("DATABASE_URL", "postgres://127.0.0.1/shop")];
            vars.extend(key.map(|k| ("STORE_CURSOR_KEY", k)));
            assert_eq!(load(&vars).unwrap_err().var, "STORE_CURSOR_KEY");
        }
    }

    #[test]
    fn redis_keys_and_proxy_hops() {
        let c = load(&[]).unwrap();
        assert_eq!(c.redis_key_prefix, "shop", "the subject prefix");
        assert_eq!(c.trusted_proxy_hops, 0, "the socket peer");
        let c = load(&[("DATABASE_SCHEMA_PREFIX", "staging")]).unwrap();
        assert_eq!(c.redis_key_prefix, "staging");
        let c = load(&[
            ("DATABASE_SCHEMA_PREFIX", "staging"),
            ("REDIS_KEY_PREFIX", "shop-eu"),
            ("TRUSTED_PROXY_HOPS", "2"),
        ])
        .unwrap();
        assert_eq!(c.redis_key_prefix, "shop-eu");
        assert_eq!(c.trusted_proxy_hops, 2);
        for (var, value) in [
            ("REDIS_KEY_PREFIX", "a:b"),
            ("TRUSTED_PROXY_HOPS", "-1"),
            ("TRUSTED_PROXY_HOPS", "17"),
            ("TRUST_FORWARDED_FOR", "true"),
        ] {
            assert_eq!(load(&[(var, value)]).unwrap_err().var, var);
        }
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = load(&[("DATABASE_URL", ""), ("NATS_URL", "  ")]).unwrap();
        assert_eq!(c.database_url, DatabaseUrl::Memory);
        assert_eq!(c.nats_url, None);
    }

    #[test]
    fn bad_values_are_rejected_naming_the_variable() {
        let cases: &[(&str, &str)] = &[
            ("GRPC_ADDR", "localhost"),
            ("HTTP_ADDR", "8080"),
            ("DATABASE_URL", "mysql://db/shop"),
            ("DATABASE_URL", "shop.db"),
            ("DATABASE_URL", "postgres://"),
            ("NATS_URL", "http://127.0.0.1:4222"),
            ("REDIS_URL", "127.0.0.1:6379"),
            ("PRODUCT_ADDR", "product-svc"),
            ("USER_ADDR", "ftp://user:1"),
            ("GRPC_CLIENT_TIMEOUT_MS", "soon"),
            ("GRPC_SERVER_TIMEOUT_MS", "0"),
            ("GRPC_CLIENT_RETRIES", "99"),
            ("LOG_FORMAT", "xml"),
            ("SEED_DEMO", "maybe"),
            ("RATE_LIMIT_RPS", "-1"),
            ("JWT_ACCESS_TTL_SECS", "0"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "jaeger:4317"),
            ("SMTP_URL", "mail.example.com"),
            ("DATABASE_TIMEOUT_MS", "0"),
            ("DATABASE_MAX_CONNECTIONS", "many"),
            ("VAPID_SUBJECT", "ops@example.com"),
            ("PUSH_ALLOW_HTTP", "sometimes"),
            ("DELIVERY_RETRY_BASE_MS", "0"),
            ("DELIVERY_MAX_ATTEMPTS", "0"),
            ("MONGODB_WRITE_CONCERN", "most"),
            ("MONGODB_WRITE_CONCERN", "0"),
            ("MONGODB_RETRY_WRITES", "perhaps"),
        ];
        for &(var, value) in cases {
            let err = load(&[(var, value)]).expect_err(&format!("{var}={value} must be rejected"));
            assert_eq!(err.var, var);
            let line = err.to_string();
            assert!(line.starts_with(&format!("invalid {var}=")), "{line}");
            assert!(!line.contains('\n'), "one line: {line}");
        }
    }

    #[test]
    fn mongodb_write_settings_default_to_the_url_and_can_be_set() {
        use crate::store::WriteAcknowledgment;
        let c = load(&[]).unwrap();
        assert_eq!((c.store.write_concern, c.store.retry_writes), (None, None));
        let c = load(&[
            ("MONGODB_WRITE_CONCERN", "majority"),
            ("MONGODB_RETRY_WRITES", "false"),
        ])
        .unwrap();
        assert_eq!(c.store.write_concern, Some(WriteAcknowledgment::Majority));
        assert_eq!(c.store.retry_writes, Some(false));
        let c = load(&[("MONGODB_WRITE_CONCERN", "2")]).unwrap();
        assert_eq!(c.store.write_concern, Some(WriteAcknowledgment::Nodes(2)));
    }

    #[test]
    fn delivery_settings_have_defaults_and_can_be_set() {
        let c = load(&[]).unwrap();
        let i = &c.integrations;
        assert_eq!(i.vapid_subject, None);
        assert!(i.vapid_private_key.is_none() && !i.push_allow_http);
        assert_eq!(
            (i.delivery_retry_base, i.delivery_max_attempts),
            (Duration::from_secs(5), 15)
        );
        let c = load(&[
            ("VAPID_SUBJECT", "https://shop.example.com/contact"),
            ("PUSH_ALLOW_HTTP", "true"),
            ("DELIVERY_RETRY_BASE_MS", "250"),
            ("DELIVERY_MAX_ATTEMPTS", "3"),
        ])
        .unwrap();
        let i = &c.integrations;
        assert_eq!(
            i.vapid_subject.as_deref(),
            Some("https://shop.example.com/contact")
        );
        assert!(i.push_allow_http);
        assert_eq!(
            (i.delivery_retry_base, i.delivery_max_attempts),
            (Duration::from_millis(250), 3)
        );
    }

    #[test]
    fn a_vapid_key_needs_a_subject() {
        let err = load(&[("VAPID_PRIVATE_KEY", "key")]).unwrap_err();
        assert_eq!(err.var, "VAPID_SUBJECT");
        assert!(
            load(&[
                ("VAPID_PRIVATE_KEY", "key"),
                ("VAPID_SUBJECT", "mailto:a@b.c")
            ])
            .is_ok()
        );
    }

    #[test]
    fn admin_credentials_come_in_pairs() {
        let err = load(&[("ADMIN_EMAIL", "a@b.c")]).unwrap_err();
        assert_eq!(err.var, "ADMIN_PASSWORD");
        let c = load(&[("ADMIN_EMAIL", "a@b.c"), ("ADMIN_PASSWORD", "secret-pass")]).unwrap();
        assert_eq!(c.admin_email.as_deref(), Some("a@b.c"));
    }

    #[test]
    fn secrets_do_not_reach_debug_output() {
        let c = load(&[
            ("DATABASE_URL", "postgres://u:hunter2@db/shop"),
            ("JWT_PRIVATE_KEY_PEM", "-----BEGIN PRIVATE KEY-----hunter2"),
            ("STRIPE_API_KEY", "sk_test_hunter2"),
            ("ADMIN_EMAIL", "root@example.com"),
            ("ADMIN_PASSWORD", "hunter2hunter2"),
            (
                "STORE_CURSOR_KEY",
                "hunter2-hunter2-hunter2-hunter2-hunter2",
            ),
        ])
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
