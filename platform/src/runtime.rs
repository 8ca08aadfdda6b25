//! Process lifecycle: a running component, its background tasks, signals,
//! and the `main` of every single-service binary.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

pub use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ServiceId};

/// A started component (a gRPC service or the gateway): where it listens,
/// and the tasks that stop together when it shuts down.
#[derive(Debug)]
pub struct Running {
    name: String,
    addr: SocketAddr,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Running {
    pub fn new(name: impl Into<String>, addr: SocketAddr) -> Self {
        Self {
            name: name.into(),
            addr,
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address actually bound (the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cancelled when shutdown begins; background tasks watch it.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Runs `task` until it ends; shutdown waits for it. The task must end
    /// soon after [`Running::cancel_token`] is cancelled.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Resolves when shutdown has begun (from [`Running::shutdown`] or a
    /// task that gave up).
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// Stops accepting work, lets in-flight requests finish, waits for every
    /// task.
    pub async fn shutdown(self) {
        tracing::info!(component = %self.name, "shutting down");
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        tracing::info!(component = %self.name, "stopped");
    }
}

/// Runs `pass` now and then every `interval` until `cancel`, on whichever
/// replica holds the lease `name` in `store` ([`crate::store::Lease`]): the
/// others skip their rounds, so N replicas scan the store about as often as
/// one. A pass that fails is logged and tried again on the next round. The lease lives three
/// intervals (at least a second); a stopping replica gives it up, a killed
/// one loses it when it expires.
pub fn spawn_leased<F, Fut, T, E>(
    name: impl Into<String>,
    store: crate::store::Store,
    interval: std::time::Duration,
    cancel: CancellationToken,
    mut pass: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send,
    E: std::fmt::Display,
{
    use crate::store::Lease;
    let ttl = (interval * 3).max(std::time::Duration::from_secs(1));
    let name: String = name.into();
    tokio::spawn(async move {
        let mut lease: Option<Lease> = None;
        loop {
            if lease.is_none() {
                match Lease::open(&store, &name, store.instance(), ttl).await {
                    Ok(opened) => lease = Some(opened),
                    Err(err) => {
                        tracing::warn!(error = %err, "{name}: cannot open its lease; will retry")
                    }
                }
            }
            let holds = match &lease {
                Some(lease) => lease.hold().await.unwrap_or_else(|err| {
                    tracing::warn!(error = %err, "{name}: cannot take its lease; will retry");
                    false
                }),
                None => false,
            };
            if holds && let Err(err) = pass().await {
                tracing::warn!(error = %err, "{name} failed; will retry");
            }
            tokio::select! {
                () = cancel.cancelled() => {
                    if let Some(lease) = &lease
                        && let Err(err) = lease.release().await
                    {
                        tracing::debug!(error = %err, "{name}: lease not released");
                    }
                    return;
                }
                () = tokio::time::sleep(interval) => {}
            }
        }
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

/// Loads the configuration or explains in one line why it cannot.
pub fn load_config(program: &str) -> Result<Config, ExitCode> {
    Config::from_env(program).map_err(|err| {
        eprintln!("{program}: configuration error: {err}");
        ExitCode::from(2)
    })
}

/// The whole `main` of a single-service binary: config, telemetry, build,
/// wait for a signal, shut down. Errors end the process with one line on
/// stderr and a non-zero status, never a panic.
pub fn run_service<F, Fut>(service: ServiceId, build: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = anyhow::Result<Running>>,
{
    let program = service.binary();
    let config = match load_config(program) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if std::env::args().nth(1).as_deref() == Some("health") {
        return health_check(service, &config);
    }
    run_main(program, &config, |config| async move {
        let metrics_listener = match config.metrics_addr {
            Some(addr) => Some(bind(addr).await.map_err(|e| e.context("METRICS_ADDR"))?),
            None => None,
        };
        let running = build(config).await?;
        tracing::info!(service = %service, addr = %running.addr(), grpc = service.grpc_service(), "serving");
        if let Some(listener) = metrics_listener {
            tracing::info!(addr = ?listener.local_addr().ok(), "serving /metrics");
            let cancel = running.cancel_token();
            running.spawn(async move {
                let _ = crate::metrics::serve(listener, cancel, None).await;
            });
        }
        tokio::select! {
            () = shutdown_signal() => {}
            () = running.cancelled() => tracing::warn!("a task stopped the service"),
        }
        running.shutdown().await;
        Ok(())
    })
}

/// `<binary> health`: asks the service listening on `GRPC_ADDR` (on this
/// host) for the readiness of its own gRPC service name over
/// `grpc.health.v1`; exit status 0 when SERVING, 1 otherwise. The
/// container image has no probe tools: compose's healthchecks run this.
fn health_check(service: ServiceId, config: &Config) -> ExitCode {
    let mut addr = config.grpc_listen_addr(service);
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let check = async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(std::time::Duration::from_secs(2))
            .timeout(std::time::Duration::from_secs(2))
            .connect()
            .await?;
        let reply = tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.grpc_service().to_string(),
            })
            .await?;
        anyhow::Ok(reply.into_inner().status)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match runtime.map(|rt| rt.block_on(check)) {
        Ok(Ok(status))
            if status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 =>
        {
            ExitCode::SUCCESS
        }
        Ok(Ok(status)) => {
            eprintln!("{}: not serving (status {status})", service.binary());
            ExitCode::FAILURE
        }
        Ok(Err(err)) => {
            eprintln!("{}: health check failed: {err:#}", service.binary());
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("{}: {err}", service.binary());
            ExitCode::FAILURE
        }
    }
}

/// Builds the runtime, starts telemetry and runs `body` to completion,
/// turning any error into one line on stderr and exit status 1.
pub fn run_main<F, Fut>(program: &str, config: &Config, body: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{program}: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let _guard = crate::telemetry::init(&config.telemetry)?;
        if let Some(path) = &config.flags_file {
            crate::flags::load(path).map_err(anyhow::Error::msg)?;
            tracing::info!(file = %path.display(), "fault flags read; reloaded when the file changes");
            crate::flags::watch(
                path.clone(),
                std::time::Duration::from_secs(1),
                CancellationToken::new(),
            );
        }
        body(config.clone()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{program}: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Binds a TCP listener, with the address in the error.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context as _;
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// What the services of one process share: the event bus (one in-process
/// bus for the whole all-in-one binary, or a NATS connection).
#[derive(Clone, Debug)]
pub struct Deps {
    pub bus: std::sync::Arc<dyn crate::events::EventBus>,
}

impl Deps {
    /// Connects what `config` names (`NATS_URL`, else in-process).
    pub async fn connect(config: &Config) -> anyhow::Result<Deps> {
        use anyhow::Context as _;
        let bus = crate::events::connect(config)
            .await
            .context("connecting the event bus (NATS_URL)")?;
        Ok(Deps { bus })
    }

    /// The same, as `component` sees it, with its key from `config`
    /// (see [`Deps::signed_by`]). Services call it first thing, so every
    /// way of starting one (its binary, the all-in-one process, a test)
    /// signs and verifies.
    pub fn signed_for(&self, component: &str, config: &Config) -> anyhow::Result<Deps> {
        if self.bus.signer() == Some(component) {
            return Ok(self.clone());
        }
        let users = crate::auth::UserKeys::fixed(&Default::default(), "", "");
        let mesh = crate::auth::MeshAuth::with_users(component, config, users)?;
        Ok(self.signed_by(&mesh))
    }

    /// The same, as component `mesh` sees it: what it publishes is signed
    /// with its key, and its consumers get only events signed by their
    /// type's owner ([`crate::events::signed`]).
    pub fn signed_by(&self, mesh: &crate::auth::MeshAuth) -> Deps {
        Deps {
            bus: std::sync::Arc::new(crate::events::signed::SignedBus::new(
                self.bus.clone(),
                mesh.clone(),
            )),
        }
    }
}
