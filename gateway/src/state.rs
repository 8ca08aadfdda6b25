//! What every handler shares: channels to the internal services.

use std::sync::Arc;

use platform::grpc::GrpcChannel;
use platform::{Config, ServiceId};

/// Cheap to clone; built once per gateway.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    upstreams: Vec<(ServiceId, GrpcChannel)>,
}

impl AppState {
    /// Channels to every peer in `config` (connected lazily).
    pub fn connect(config: &Config) -> anyhow::Result<Self> {
        let upstreams = ServiceId::ALL
            .iter()
            .map(|&id| {
                Ok((
                    id,
                    platform::grpc::channel(config.peers.get(id), &config.grpc)?,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            inner: Arc::new(Inner { upstreams }),
        })
    }

    /// Every upstream service and its channel.
    pub fn upstreams(&self) -> &[(ServiceId, GrpcChannel)] {
        &self.inner.upstreams
    }

    pub fn channel(&self, id: ServiceId) -> GrpcChannel {
        self.inner
            .upstreams
            .iter()
            .find(|(s, _)| *s == id)
            .map(|(_, c)| c.clone())
            .expect("AppState holds a channel for every service")
    }
}
