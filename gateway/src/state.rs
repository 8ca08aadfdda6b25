//! What every handler shares: channels to the internal services, the token
//! verifier, the rate limiter, metrics and settings.

use std::sync::Arc;

use platform::grpc::GrpcChannel;
use platform::{Config, ServiceId};

use crate::metrics::Metrics;
use crate::ratelimit::Limiter;
use platform::auth::{MeshAuth, UserKeys};

/// The gateway's name in the mesh (`MESH_PUBLIC_KEYS`).
pub const GATEWAY: &str = "gateway";

/// Cheap to clone; built once per gateway.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    upstreams: Vec<(ServiceId, GrpcChannel)>,
    /// Plain channels for health checks: they bypass the circuit breaker,
    /// so a dashboard's probes neither trip it nor use up its trial call.
    probes: Vec<(ServiceId, tonic::transport::Channel)>,
    /// The gateway's identity in the mesh, and the users' keys.
    mesh: MeshAuth,
    limiter: Limiter,
    metrics: Metrics,
    config: Config,
    /// Small images, kept in memory (they never change).
    media_cache: Arc<crate::routes::media::MediaCache>,
    /// What the pages keep between requests.
    web: crate::web::WebState,
    /// The deployment's NATS stream, for the dead-letter page: attached on
    /// first use.
    dead_letters: tokio::sync::OnceCell<platform::events::nats::NatsBus>,
}

impl AppState {
    /// Channels to every peer in `config` (connected lazily) and an
    /// in-memory rate limiter.
    pub fn connect(config: &Config) -> anyhow::Result<Self> {
        Self::with_limiter(config, Limiter::memory())
    }

    /// As [`AppState::connect`], with the Redis limiter when `REDIS_URL` is set.
    pub async fn connect_with_backends(config: &Config) -> anyhow::Result<Self> {
        let limiter = match &config.redis_url {
            Some(url) => Limiter::redis(url, &config.redis_key_prefix)
                .await
                .map_err(|e| anyhow::anyhow!("connecting to Redis (REDIS_URL): {e}"))?,
            None => Limiter::memory(),
        };
        Self::with_limiter(config, limiter)
    }

    pub fn with_limiter(config: &Config, limiter: Limiter) -> anyhow::Result<Self> {
        let upstreams = ServiceId::ALL
            .iter()
            .map(|&id| {
                let peer = config.peers.get(id);
                let channel = match id {
                    // Uploads stream and convert whole images.
                    ServiceId::Media => platform::grpc::channel_for_long_calls(
                        id,
                        peer,
                        &config.grpc,
                        crate::routes::media::UPLOAD_DEADLINE,
                    )?,
                    _ => platform::grpc::channel_for(id, peer, &config.grpc)?,
                };
                Ok((id, channel))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let user_channel = upstreams
            .iter()
            .find(|(id, _)| *id == ServiceId::User)
            .expect("user channel")
            .1
            .clone();
        let probes = ServiceId::ALL
            .iter()
            .map(|&id| {
                let endpoint = tonic::transport::Endpoint::from_shared(
                    config.peers.get(id).uri().to_string(),
                )?
                .connect_timeout(std::time::Duration::from_secs(1))
                .tcp_nodelay(true);
                Ok((id, endpoint.connect_lazy()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let users = match &config.mesh.user_jwks {
            Some(set) => UserKeys::fixed(set, &config.jwt.issuer, &config.jwt.audience),
            None => UserKeys::fetched(user_channel, &config.jwt.issuer, &config.jwt.audience),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                mesh: MeshAuth::with_users(GATEWAY, config, users)?,
                upstreams,
                probes,
                limiter,
                metrics: Metrics::new(),
                config: config.clone(),
                media_cache: crate::routes::media::new_cache(),
                web: crate::web::WebState::default(),
                dead_letters: tokio::sync::OnceCell::new(),
            }),
        })
    }

    /// Every upstream service and its channel.
    pub fn upstreams(&self) -> &[(ServiceId, GrpcChannel)] {
        &self.inner.upstreams
    }

    /// Every upstream service and a breaker-free channel for health checks.
    pub fn probes(&self) -> &[(ServiceId, tonic::transport::Channel)] {
        &self.inner.probes
    }

    pub fn channel(&self, id: ServiceId) -> GrpcChannel {
        self.inner
            .upstreams
            .iter()
            .find(|(s, _)| *s == id)
            .map(|(_, c)| c.clone())
            .expect("AppState holds a channel for every service")
    }

    /// The users' key set (fetched from user-svc).
    pub fn jwks(&self) -> &UserKeys {
        self.inner.mesh.users()
    }

    /// The gateway as a component of the mesh.
    pub fn mesh(&self) -> &MeshAuth {
        &self.inner.mesh
    }

    pub fn limiter(&self) -> &Limiter {
        &self.inner.limiter
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn web(&self) -> &crate::web::WebState {
        &self.inner.web
    }

    pub fn media_cache(&self) -> &crate::routes::media::MediaCache {
        &self.inner.media_cache
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The stream that keeps the consumers' dead letters (`NATS_URL`),
    /// attached on first use and kept. Without `NATS_URL`:
    /// FAILED_PRECONDITION.
    pub async fn dead_letters(
        &self,
    ) -> Result<&platform::events::nats::NatsBus, crate::problem::Problem> {
        use crate::problem::Problem;
        use platform::ErrorKind;
        let Some(url) = self.inner.config.nats_url.clone() else {
            return Err(Problem::new(
                ErrorKind::FailedPrecondition,
                "dead letters are kept by NATS JetStream, and this gateway has no NATS_URL (the \
                 in-process bus keeps none to list): give it one, or run `shopmesh dead-letters` \
                 where NATS is reachable",
            ));
        };
        let settings = platform::events::nats::NatsSettings::from_config(&self.inner.config);
        self.inner
            .dead_letters
            .get_or_try_init(|| async move {
                let attach = platform::events::nats::NatsBus::attach(&url, settings);
                match tokio::time::timeout(std::time::Duration::from_secs(5), attach).await {
                    Ok(Ok(bus)) => Ok(bus),
                    Ok(Err(err)) => Err(Problem::new(ErrorKind::Unavailable, err.to_string())),
                    Err(_) => Err(Problem::new(
                        ErrorKind::Unavailable,
                        "NATS did not answer in time",
                    )),
                }
            })
            .await
    }
}
