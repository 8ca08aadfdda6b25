//! Typed configuration from environment variables (12-factor).
//!
//! Every variable has a default that runs embedded (memory store, in-process
//! bus, no cache, no exporter), so `cargo run` needs nothing set. A value
//! that is set but wrong is an error naming the variable, never a silent
//! fallback.

use std::net::SocketAddr;
use std::time::Duration;
use vars::name_token;

pub mod cart;
pub mod media;
pub mod saga;
mod sections;
mod services;
mod vars;

pub use cart::CartSettings;
pub use media::MediaSettings;
pub use saga::SagaSettings;
pub use sections::{
    GrpcSettings, Integrations, JwtConfig, LogFormat, MeshConfig, NatsAuth, StoreSettings,
    TelemetryConfig, WriteAcknowledgment,
};
pub use services::{Component, DatabaseUrl, PeerAddr, Peers, ServiceId};
pub use vars::{ConfigError, ProcessEnv, Secret, Source, Vars};

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
    pub store: StoreSettings,
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
    /// subject prefix, then a digest of the database's identity (see
    /// [`default_redis_key_prefix`]).
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
    /// `OUTBOX_SWEEP_INTERVAL_MS` (default 5000): how often each service
    /// republishes events a crash or a bus outage left in its outbox.
    pub outbox_sweep_interval: Duration,
    /// Payment timeout, caps and sweeper timing of the order saga.
    pub saga: SagaSettings,
    /// Guest cart lifetime and cart caps.
    pub cart: CartSettings,
    /// Where media bytes live and what an upload may be.
    pub media: MediaSettings,
    /// `FLAGS_FILE`: fault flags (flagd format), reloaded when it changes;
    /// unset: every fault off.
    pub flags_file: Option<std::path::PathBuf>,
    /// `FLAGS_WRITABLE` (default false): admins may switch flags from the
    /// gateway, which rewrites `FLAGS_FILE` (development only).
    pub flags_writable: bool,
}

impl Config {
    /// Reads the process environment. `program` names the default
    /// `OTEL_SERVICE_NAME`.
    pub fn from_env(program: &str) -> Result<Self, ConfigError> {
        Self::from_source(program, &ProcessEnv)
    }

    pub fn from_source(program: &str, source: &dyn Source) -> Result<Self, ConfigError> {
        let v = Vars(source);
        let peers = Peers::from_vars(&v)?;
        let grpc = GrpcSettings::from_vars(&v)?;
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
            store: StoreSettings {
                timeout: v
                    .positive_millis("DATABASE_TIMEOUT_MS", StoreSettings::default().timeout)?,
                max_connections: v.positive_number(
                    "DATABASE_MAX_CONNECTIONS",
                    StoreSettings::default().max_connections,
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
            nats_auth: NatsAuth::from_vars(&v)?,
            nats_stream: v
                .parse_with("NATS_STREAM", name_token)?
                .unwrap_or_else(|| "SHOP".into()),
            nats_prefix: v
                .parse_with("NATS_SUBJECT_PREFIX", name_token)?
                .unwrap_or_else(|| "shop".into()),
            peers,
            grpc,
            telemetry: TelemetryConfig::from_vars(&v, program)?,
            jwt: JwtConfig::from_vars(&v)?,
            mesh: MeshConfig::from_vars(&v)?,
            integrations: Integrations::from_vars(&v)?,
            admin_email,
            admin_password,
            seed_demo: v.bool("SEED_DEMO")?.unwrap_or(true),
            flags_file: v
                .raw("FLAGS_FILE")
                .filter(|s| !s.trim().is_empty())
                .map(std::path::PathBuf::from),
            flags_writable: v.bool("FLAGS_WRITABLE")?.unwrap_or(false),
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
            outbox_sweep_interval: v
                .positive_millis("OUTBOX_SWEEP_INTERVAL_MS", Duration::from_secs(5))?,
            saga: SagaSettings::from_vars(&v)?,
            cart: CartSettings::from_vars(&v)?,
            media: MediaSettings::from_vars(&v)?,
            low_stock_threshold: v
                .number("LOW_STOCK_THRESHOLD", "a whole number of units")?
                .unwrap_or(5),
            product_cache_ttl: v.positive_secs("PRODUCT_CACHE_TTL_SECS", 60)?,
        };
        config.redis_key_prefix = match v.parse_with("REDIS_KEY_PREFIX", name_token)? {
            Some(prefix) => prefix,
            None => default_redis_key_prefix(
                &config.database_url,
                config.schema_prefix.as_deref(),
                &config.nats_prefix,
            ),
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
        Ok(config)
    }

    /// Where a single-service binary of `id` listens.
    pub fn grpc_listen_addr(&self, id: ServiceId) -> SocketAddr {
        self.grpc_addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], id.default_port())))
    }
}

#[cfg(test)]
mod tests;

/// The Redis key prefix of an environment that names none: its schema
/// prefix (else `nats_prefix`), a dash and 8 hex digits of a SHA-256 over
/// the database's identity: scheme, host, port, database name and schema
/// prefix, never the credentials or options. Two environments on one Redis
/// that differ in any of these never share a key; every replica of one
/// environment agrees. An in-memory database belongs to the one
/// configuration that opens it, so its digest is random.
pub fn default_redis_key_prefix(
    database: &DatabaseUrl,
    schema_prefix: Option<&str>,
    nats_prefix: &str,
) -> String {
    use sha2::Digest;
    let identity = match database {
        // Its own configuration's: nothing else can read that database.
        DatabaseUrl::Memory => format!("memory:{:016x}", rand::random::<u64>()),
        DatabaseUrl::Postgres(url) | DatabaseUrl::MongoDb(url) => database_identity(url),
    };
    let digest = sha2::Sha256::digest(format!("{identity}|{}", schema_prefix.unwrap_or("")));
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", schema_prefix.unwrap_or(nats_prefix))
}

/// `scheme://host:port/database` of a database URL, without user,
/// password or query: what tells one database from another.
fn database_identity(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let scheme = if scheme == "postgresql" {
        "postgres"
    } else {
        scheme
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let database = path.split(['?', '#']).next().unwrap_or("");
    format!("{scheme}://{}/{database}", hosts.to_ascii_lowercase())
}
