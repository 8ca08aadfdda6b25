//! The settings of one concern each: gRPC limits, telemetry, tokens, mesh
//! identity, NATS credentials and outgoing integrations.

use std::time::Duration;

use super::{ConfigError, Secret, Vars};

/// gRPC server and client limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcSettings {
    /// Longest a server spends on one request (`GRPC_SERVER_TIMEOUT_MS`, 30 s).
    pub server_timeout: Duration,
    /// Concurrent requests per connection (`GRPC_CONCURRENCY_LIMIT`, 256);
    /// beyond it requests are shed with RESOURCE_EXHAUSTED.
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
    /// Whether a peer named by host name is balanced over every address
    /// the name resolves to (`GRPC_CLIENT_BALANCING`, true). Off where a
    /// service mesh (Linkerd, Istio) balances requests itself: one
    /// connection per peer name then.
    pub client_balancing: bool,
    /// How often a balanced peer's name is resolved again and each of its
    /// addresses asked for its health (`GRPC_RESOLVE_INTERVAL_MS`, 5 s); a
    /// call that finds no answer starts a round at once.
    pub resolve_interval: Duration,
    /// Longest a server keeps one connection (`GRPC_MAX_CONNECTION_AGE_SECS`,
    /// 300 s), so clients that never resolve again (grpcurl, other
    /// languages) still reach replicas added since; then the connection is
    /// closed gracefully, its calls given `GRPC_MAX_CONNECTION_AGE_GRACE_SECS`
    /// (30 s) to finish.
    pub max_connection_age: Duration,
    pub max_connection_age_grace: Duration,
    /// How long a stopping server keeps serving after it answers
    /// NOT_SERVING to health checks (`GRPC_DRAIN_DELAY_MS`, 0), so balancing
    /// clients and Kubernetes readiness leave it before it stops accepting.
    /// Set it above `GRPC_RESOLVE_INTERVAL_MS` and the readiness probe's
    /// period where replicas are stopped under load.
    pub drain_delay: Duration,
    /// Names resolved without DNS, as lines of `/etc/hosts` would
    /// (`GRPC_HOSTS`: `name=ip,ip;name=ip`): fixed hosts, and tests that
    /// put replicas on several loopback addresses behind one name.
    pub hosts: Vec<(String, Vec<std::net::IpAddr>)>,
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
            client_balancing: true,
            resolve_interval: Duration::from_secs(5),
            max_connection_age: Duration::from_secs(300),
            max_connection_age_grace: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            hosts: Vec::new(),
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
    /// that made them (the all-in-one binary, where every service and the
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

pub(super) fn parse_mesh_public_keys(value: &str) -> Result<crate::auth::MeshKeys, String> {
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
        let (name, key) = (name.trim().to_string(), key.trim().to_string());
        // One key under two names would let one component sign as the
        // other (an easy slip while a key rotates).
        if let Some((other, _)) = keys.iter().find(|(n, k)| *k == key && *n != name) {
            return Err(format!("{name} and {other} are given the same public key"));
        }
        if !keys.contains(&(name.clone(), key.clone())) {
            keys.push((name, key));
        }
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

impl GrpcSettings {
    /// `GRPC_*`.
    pub fn from_vars(v: &Vars<'_>) -> Result<Self, ConfigError> {
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
            client_balancing: v
                .bool("GRPC_CLIENT_BALANCING")?
                .unwrap_or(defaults.client_balancing),
            resolve_interval: v
                .positive_millis("GRPC_RESOLVE_INTERVAL_MS", defaults.resolve_interval)?,
            max_connection_age: v.positive_secs(
                "GRPC_MAX_CONNECTION_AGE_SECS",
                defaults.max_connection_age.as_secs(),
            )?,
            max_connection_age_grace: v.positive_secs(
                "GRPC_MAX_CONNECTION_AGE_GRACE_SECS",
                defaults.max_connection_age_grace.as_secs(),
            )?,
            drain_delay: v
                .millis("GRPC_DRAIN_DELAY_MS")?
                .unwrap_or(defaults.drain_delay),
            hosts: v.parse_with("GRPC_HOSTS", parse_hosts)?.unwrap_or_default(),
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
        Ok(grpc)
    }
}

impl TelemetryConfig {
    /// `OTEL_*`, `LOG_FORMAT`, `RUST_LOG`; `program` names the default service.
    pub fn from_vars(v: &Vars<'_>, program: &str) -> Result<Self, ConfigError> {
        let log_format = v
            .parse_with("LOG_FORMAT", |s| match s {
                "json" => Ok(LogFormat::Json),
                "pretty" | "text" => Ok(LogFormat::Pretty),
                _ => Err("expected json or pretty".to_string()),
            })?
            .unwrap_or(LogFormat::Json);
        Ok(TelemetryConfig {
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
        })
    }
}

impl JwtConfig {
    /// `JWT_*`.
    pub fn from_vars(v: &Vars<'_>) -> Result<Self, ConfigError> {
        Ok(JwtConfig {
            issuer: v.raw("JWT_ISSUER").unwrap_or_else(|| "shopmesh".into()),
            audience: v
                .raw("JWT_AUDIENCE")
                .unwrap_or_else(|| "shopmesh-api".into()),
            private_key_pem: v.raw("JWT_PRIVATE_KEY_PEM").map(Secret),
            access_ttl: v.positive_secs("JWT_ACCESS_TTL_SECS", 900)?,
            refresh_ttl: v.positive_secs("JWT_REFRESH_TTL_SECS", 30 * 24 * 3600)?,
        })
    }
}

impl NatsAuth {
    /// `NATS_USER` and `NATS_PASSWORD`, both or neither.
    pub fn from_vars(v: &Vars<'_>) -> Result<Self, ConfigError> {
        Ok(match (v.raw("NATS_USER"), v.raw("NATS_PASSWORD")) {
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
        })
    }
}

impl MeshConfig {
    /// `MESH_KEY`, `MESH_PUBLIC_KEYS`.
    pub fn from_vars(v: &Vars<'_>) -> Result<Self, ConfigError> {
        Ok(MeshConfig {
            key: match v.raw("MESH_KEY") {
                None => None,
                Some(seed) => {
                    crate::auth::SigningKey::from_seed(&seed)
                        .map_err(|e| ConfigError::new("MESH_KEY", "<redacted>", e.to_string()))?;
                    Some(Secret(seed))
                }
            },
            public_keys: v
                .parse_with("MESH_PUBLIC_KEYS", parse_mesh_public_keys)?
                .unwrap_or_default(),
            user_jwks: None,
        })
    }
}

impl Integrations {
    /// `SMTP_*`, `TWILIO_*`, `STRIPE_*`, `CARRIER_*`, `VAPID_*`, deliveries.
    pub fn from_vars(v: &Vars<'_>) -> Result<Self, ConfigError> {
        let i = Integrations {
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
        };
        if i.vapid_private_key.is_some() && i.vapid_subject.is_none() {
            return Err(ConfigError::new(
                "VAPID_SUBJECT",
                "",
                "must be set when VAPID_PRIVATE_KEY is (a mailto: or https: contact)",
            ));
        }
        Ok(i)
    }
}

/// `name=ip,ip;name=ip` (`GRPC_HOSTS`).
fn parse_hosts(text: &str) -> Result<Vec<(String, Vec<std::net::IpAddr>)>, String> {
    text.split(';')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (name, ips) = entry
                .split_once('=')
                .ok_or_else(|| format!("expected name=ip,ip in {entry:?}"))?;
            let name = name.trim();
            if name.is_empty() || name.parse::<std::net::IpAddr>().is_ok() {
                return Err(format!("{name:?} is not a host name"));
            }
            let ips = ips
                .split(',')
                .map(|ip| {
                    ip.trim()
                        .parse::<std::net::IpAddr>()
                        .map_err(|_| format!("{ip:?} is not an IP address"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((name.to_ascii_lowercase(), ips))
        })
        .collect()
}

/// Pool and timeout settings of the network backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// Longest any single operation (including waiting for a connection)
    /// may take before it fails with `StoreError::Unavailable`.
    pub timeout: Duration,
    pub max_connections: u32,
    /// MongoDB: how many members must acknowledge a write
    /// (`MONGODB_WRITE_CONCERN`); `None` keeps the URL's (or the server's)
    /// default. Waiting for it is bounded by `timeout`.
    pub write_concern: Option<WriteAcknowledgment>,
    /// MongoDB: retry a write once after a step-down or network error
    /// (`MONGODB_RETRY_WRITES`); `None` keeps the URL's (or the driver's,
    /// on) default. Replica sets only.
    pub retry_writes: Option<bool>,
}

/// A MongoDB write concern's `w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAcknowledgment {
    /// A majority of the replica set's voting members.
    Majority,
    /// That many members (1: the primary alone).
    Nodes(u32),
}

impl std::str::FromStr for WriteAcknowledgment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "majority" => Ok(Self::Majority),
            n => match n.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(Self::Nodes(n)),
                _ => Err("expected majority or a number of members (at least 1)".into()),
            },
        }
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3),
            max_connections: 10,
            write_concern: None,
            retry_writes: None,
        }
    }
}
