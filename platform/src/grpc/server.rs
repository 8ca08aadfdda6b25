//! The server every service runs: health, reflection, tracing, limits,
//! readiness and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tonic::service::Routes;
use tonic_health::ServingStatus;

use crate::config::{GrpcSettings, ServiceId};
use crate::runtime::Running;

use super::trace::GrpcTraceLayer;

/// What a service needs to serve requests: answers `Err(why)` when it
/// cannot (its store or bus unreachable).
pub type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// How often readiness is checked, and how long one check may take.
const READINESS_EVERY: Duration = Duration::from_secs(2);
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness of a service on `store` and `bus`: the store answers a ping
/// and the bus is connected.
pub fn store_and_bus(
    store: crate::store::Store,
    bus: Arc<dyn crate::events::EventBus>,
) -> ReadinessCheck {
    Arc::new(move || {
        let (store, bus) = (store.clone(), bus.clone());
        Box::pin(async move {
            store.ping().await.map_err(|e| format!("store: {e}"))?;
            if !bus.is_connected() {
                return Err(format!("event bus ({}) not connected", bus.name()));
            }
            Ok(())
        })
    })
}

/// Builds and starts the gRPC server of one service.
///
/// Health: the overall status (`""`, what liveness probes ask) is SERVING
/// while the process serves; the service's own name (what readiness probes
/// ask) is SERVING only while its [`readiness`](GrpcServer::readiness)
/// check passes, so a replica that lost its database leaves the load
/// balancer without being restarted.
pub struct GrpcServer {
    service: ServiceId,
    settings: GrpcSettings,
    descriptor_sets: Vec<&'static [u8]>,
    readiness: Option<ReadinessCheck>,
    /// HTTP/2 flow-control windows (stream, connection) when not hyper's.
    windows: Option<(u32, u32)>,
}

impl GrpcServer {
    /// `descriptor_set` is the encoded `FileDescriptorSet` holding the
    /// service (`proto::FILE_DESCRIPTOR_SET`).
    pub fn new(service: ServiceId, settings: &GrpcSettings, descriptor_set: &'static [u8]) -> Self {
        Self {
            service,
            settings: settings.clone(),
            descriptor_sets: vec![descriptor_set],
            readiness: None,
            windows: None,
        }
    }

    /// HTTP/2 flow-control windows: how much one request stream, and all
    /// of a connection's together, may send before the server reads. A
    /// service that lets requests wait unread (uploads awaiting their turn)
    /// sets a connection window many times the stream window, so the
    /// waiting ones cannot use up the connection's and stall those being
    /// read.
    pub fn flow_windows(mut self, stream: u32, connection: u32) -> Self {
        self.windows = Some((stream, connection));
        self
    }

    /// Checks `check` every 2 s and reports the result as the health of
    /// the service's own name.
    pub fn readiness(mut self, check: ReadinessCheck) -> Self {
        self.readiness = Some(check);
        self
    }

    /// Serves `routes` (the service's own tonic servers) plus health and
    /// reflection on `listener` until the returned [`Running`] shuts down.
    pub async fn serve(
        self,
        routes: Routes,
        listener: tokio::net::TcpListener,
    ) -> anyhow::Result<Running> {
        let addr = listener.local_addr().context("reading the bound address")?;
        let grpc_service = self.service.grpc_service();

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status(grpc_service, ServingStatus::Serving)
            .await;

        let descriptor_sets = self.descriptor_sets.clone();
        let reflection = || {
            let mut builder = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .with_service_name(grpc_service)
                .with_service_name("grpc.health.v1.Health");
            for set in &descriptor_sets {
                builder = builder.register_encoded_file_descriptor_set(set);
            }
            builder
        };
        let reflection_v1 = reflection().build_v1().context("building reflection v1")?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .context("building reflection v1alpha")?;

        let routes = routes
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);

        let running = Running::new(self.service.binary(), addr);
        let cancel = running.cancel_token();
        if let Some(check) = self.readiness.clone() {
            let (health, cancel) = (health.clone(), cancel.clone());
            running.spawn(async move {
                let mut ready = true;
                loop {
                    let outcome = match tokio::time::timeout(READINESS_TIMEOUT, check()).await {
                        Ok(outcome) => outcome,
                        Err(_) => Err("readiness check timed out".to_string()),
                    };
                    if cancel.is_cancelled() {
                        return;
                    }
                    let now_ready = outcome.is_ok();
                    if now_ready != ready {
                        match &outcome {
                            Ok(()) => tracing::info!(service = grpc_service, "ready again"),
                            Err(why) => {
                                tracing::warn!(service = grpc_service, reason = %why, "not ready")
                            }
                        }
                        let status = if now_ready {
                            ServingStatus::Serving
                        } else {
                            ServingStatus::NotServing
                        };
                        health.set_service_status(grpc_service, status).await;
                        ready = now_ready;
                    }
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(READINESS_EVERY) => {}
                    }
                }
            });
        }
        let server = tonic::transport::Server::builder()
            .timeout(self.settings.server_timeout)
            .concurrency_limit_per_connection(self.settings.concurrency_limit_per_connection)
            .load_shed(true)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .max_connection_age(self.settings.max_connection_age)
            .max_connection_age_grace(self.settings.max_connection_age_grace)
            .initial_stream_window_size(self.windows.map(|(stream, _)| stream))
            .initial_connection_window_size(self.windows.map(|(_, connection)| connection))
            .layer(GrpcTraceLayer {
                service: self.service,
            })
            .add_routes(routes);
        let incoming = nodelay_incoming(listener);
        let shutdown = {
            let cancel = cancel.clone();
            let health = health.clone();
            let drain_delay = self.settings.drain_delay;
            async move {
                cancel.cancelled().await;
                // Tell load balancers first, keep serving while they leave,
                // then stop accepting and drain.
                health
                    .set_service_status(grpc_service, ServingStatus::NotServing)
                    .await;
                health
                    .set_service_status("", ServingStatus::NotServing)
                    .await;
                if !drain_delay.is_zero() {
                    tracing::info!(
                        service = grpc_service,
                        ?drain_delay,
                        "draining: answering NOT_SERVING before stopping"
                    );
                    tokio::time::sleep(drain_delay).await;
                }
            }
        };
        running.spawn(async move {
            if let Err(err) = server
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
            {
                tracing::error!(error = &err as &dyn std::error::Error, "gRPC server failed");
                cancel.cancel();
            }
        });
        Ok(running)
    }
}

impl std::fmt::Debug for GrpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServer")
            .field("service", &self.service)
            .finish()
    }
}

/// The accepted connections of `listener`, each with TCP_NODELAY set.
///
/// tonic applies `Server::tcp_nodelay` only to listeners it binds itself, not
/// to `serve_with_incoming`; without it a small HTTP/2 frame that follows
/// another waits for the peer's delayed ACK (~40 ms). A stream whose option
/// cannot be set is logged and served anyway.
pub fn nodelay_incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static {
    use futures::StreamExt as _;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(error = %err, "could not set TCP_NODELAY on an accepted stream");
            }
        })
    })
}

/// Binds `addr` (port 0 for any free port).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    crate::runtime::bind(addr).await
}
