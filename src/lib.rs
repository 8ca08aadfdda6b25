//! The all-in-one shopmesh process: every gRPC service and the gateway,
//! talking real gRPC to each other over loopback.
//!
//! [`Mesh::start`] binds every listener first (port 0 is fine), points each
//! service's peers at the addresses actually bound, then starts them, so
//! tests run whole meshes side by side and `cargo run` uses the default
//! ports.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;

mod dead_letters;

use anyhow::Context as _;
use platform::config::{ConfigError, PeerAddr, Secret};
use platform::runtime::Deps;
use platform::{Config, Running, ServiceId};

/// Where each part of the mesh listens.
#[derive(Debug, Clone)]
pub struct MeshAddrs {
    pub services: HashMap<ServiceId, SocketAddr>,
    pub gateway: SocketAddr,
}

impl MeshAddrs {
    /// Every service and the gateway on a free loopback port.
    pub fn ephemeral() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            services: ServiceId::ALL.iter().map(|&id| (id, any)).collect(),
            gateway: any,
        }
    }

    /// From `<SVC>_ADDR` and `HTTP_ADDR` (defaults: the loopback default
    /// ports). In one process these are listen addresses, so they must be
    /// `IP:port`.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let mut services = HashMap::new();
        for id in ServiceId::ALL {
            let peer = config.peers.get(id);
            let addr = peer
                .uri()
                .trim_start_matches("http://")
                .parse::<SocketAddr>()
                .map_err(|_| {
                    ConfigError::new(
                        id.addr_var(),
                        peer.uri(),
                        "the all-in-one binary listens there, so it must be IP:port",
                    )
                })?;
            services.insert(id, addr);
        }
        Ok(Self {
            services,
            gateway: config.http_addr,
        })
    }
}

/// A running mesh.
#[derive(Debug)]
pub struct Mesh {
    config: Config,
    /// Each component's `MESH_KEY`.
    mesh_keys: Vec<(String, Secret)>,
    deps: Deps,
    services: Vec<Running>,
    service_addrs: HashMap<ServiceId, SocketAddr>,
    gateway: Running,
}

type ServeFn = fn(
    Config,
    tokio::net::TcpListener,
    Deps,
) -> Pin<Box<dyn Future<Output = anyhow::Result<Running>> + Send>>;

fn serve_fn(id: ServiceId) -> ServeFn {
    match id {
        ServiceId::User => |c, l, d| Box::pin(user_svc::serve(c, l, d)),
        ServiceId::Product => |c, l, d| Box::pin(product_svc::serve(c, l, d)),
        ServiceId::Order => |c, l, d| Box::pin(order_svc::serve(c, l, d)),
        ServiceId::Payment => |c, l, d| Box::pin(payment_svc::serve(c, l, d)),
        ServiceId::Shipping => |c, l, d| Box::pin(shipping_svc::serve(c, l, d)),
        ServiceId::Notification => |c, l, d| Box::pin(notification_svc::serve(c, l, d)),
        ServiceId::Recommendation => |c, l, d| Box::pin(recommendation_svc::serve(c, l, d)),
        ServiceId::Cart => |c, l, d| Box::pin(cart_svc::serve(c, l, d)),
        ServiceId::Media => |c, l, d| Box::pin(media_svc::serve(c, l, d)),
    }
}

impl Mesh {
    /// Binds everything, wires peers to the bound addresses, starts every
    /// service and then the gateway.
    pub async fn start(mut config: Config, addrs: &MeshAddrs) -> anyhow::Result<Mesh> {
        let mut listeners = Vec::new();
        let mut service_addrs = HashMap::new();
        for id in ServiceId::ALL {
            let listener = platform::runtime::bind(addrs.services[&id])
                .await
                .with_context(|| format!("{id} (set {} to move it)", id.addr_var()))?;
            let addr = listener.local_addr()?;
            config.peers.set(id, PeerAddr::from_socket(addr));
            service_addrs.insert(id, addr);
            listeners.push((id, listener));
        }
        let gateway_listener = platform::runtime::bind(addrs.gateway)
            .await
            .context("gateway (set HTTP_ADDR to move it)")?;

        // Each part gets a key of its own, known only in this process; all
        // of them trust the others' public keys.
        if let Some(warning) = ignored_mesh_settings(&config) {
            tracing::warn!("{warning}");
        }
        let mut names: Vec<&str> = ServiceId::ALL.iter().map(|id| id.binary()).collect();
        names.push(gateway::GATEWAY);
        let (mesh_keys, public_keys) = platform::auth::generate_mesh(&names);
        config.mesh.public_keys = public_keys;
        let config_of = |name: &str| {
            let mut config = config.clone();
            config.mesh.key = mesh_keys
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, key)| key.clone());
            config
        };

        // One bus for the whole process: with the in-process backend the
        // services must share it to see each other's events.
        let deps = Deps::connect(&config).await?;
        let mut services = Vec::new();
        for (id, listener) in listeners {
            match serve_fn(id)(config_of(id.binary()), listener, deps.clone()).await {
                Ok(running) => services.push(running),
                Err(err) => {
                    for running in services {
                        running.shutdown().await;
                    }
                    return Err(err.context(format!("starting {id}")));
                }
            }
        }
        let gateway = match gateway::serve(config_of(gateway::GATEWAY), gateway_listener).await {
            Ok(gateway) => gateway,
            Err(err) => {
                for running in services {
                    running.shutdown().await;
                }
                return Err(err.context("starting the gateway"));
            }
        };
        Ok(Mesh {
            config,
            mesh_keys,
            deps,
            services,
            service_addrs,
            gateway,
        })
    }

    /// Component `name` of this mesh (`order-svc`…, `gateway`), signing
    /// with its key: for tests that call a service as another one would.
    pub fn component(&self, name: &str) -> anyhow::Result<platform::auth::MeshAuth> {
        let mut config = self.config.clone();
        config.mesh.key = self
            .mesh_keys
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, key)| key.clone());
        anyhow::ensure!(
            config.mesh.key.is_some(),
            "no component {name} in this mesh"
        );
        platform::auth::MeshAuth::from_config(name, &config)
    }

    /// `envelope` as the owner of its type publishes it on this mesh: from
    /// that component, signed with its key.
    pub fn signed(
        &self,
        envelope: &platform::events::Envelope,
    ) -> anyhow::Result<platform::events::Envelope> {
        let owner = platform::events::signed::owner(&envelope.r#type)
            .ok_or_else(|| anyhow::anyhow!("no component owns {}", envelope.r#type))?;
        let mut from_owner = envelope.clone();
        from_owner.source = owner.to_string();
        Ok(platform::events::signed::sign(
            &self.component(owner)?,
            &from_owner,
        )?)
    }

    /// The configuration the parts run with, peers pointing at the bound addresses.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The event bus the services share.
    pub fn bus(&self) -> std::sync::Arc<dyn platform::events::EventBus> {
        self.deps.bus.clone()
    }

    pub fn gateway_addr(&self) -> SocketAddr {
        self.gateway.addr()
    }

    /// `http://IP:port` of the gateway.
    pub fn gateway_url(&self) -> String {
        format!("http://{}", self.gateway.addr())
    }

    pub fn grpc_addr(&self, id: ServiceId) -> SocketAddr {
        self.service_addrs[&id]
    }

    /// Resolves when any part stops on its own (a server failed).
    pub async fn any_stopped(&self) {
        let parts = self.services.iter().chain(std::iter::once(&self.gateway));
        let waits: Vec<_> = parts.map(|r| Box::pin(r.cancelled())).collect();
        futures::future::select_all(waits).await;
    }

    /// Stops one service (the rest keep running), as an outage of that
    /// service would: its peers get no answer from its address.
    pub async fn stop(&mut self, id: ServiceId) {
        if let Some(at) = self.services.iter().position(|r| r.name() == id.binary()) {
            self.services.remove(at).shutdown().await;
        }
    }

    /// Gateway first (stop taking requests), then the services.
    pub async fn shutdown(self) {
        self.gateway.shutdown().await;
        for running in self.services {
            running.shutdown().await;
        }
    }
}

/// Admin account the all-in-one binary creates when none is configured.
/// What the all-in-one process says when it was given mesh keys: it makes
/// its own for every component, so `MESH_KEY` and `MESH_PUBLIC_KEYS` change
/// nothing here (they are for the components run as separate processes).
pub fn ignored_mesh_settings(config: &Config) -> Option<&'static str> {
    (config.mesh.key.is_some() || !config.mesh.public_keys.0.is_empty()).then_some(
        "MESH_KEY and MESH_PUBLIC_KEYS are ignored: the all-in-one process makes a key for each \
         of its components, known only to it (they apply to `shopmesh serve <component>`)",
    )
}

pub const DEFAULT_ADMIN_EMAIL: &str = "admin@shopmesh.local";

/// Without `ADMIN_EMAIL`/`ADMIN_PASSWORD`, makes up a random password for
/// [`DEFAULT_ADMIN_EMAIL`] and returns it so it can be printed.
fn ensure_admin_credentials(config: &mut Config) -> Option<String> {
    if config.admin_email.is_some() {
        return None;
    }
    let mut bytes = [0u8; 12];
    rand::fill(&mut bytes);
    let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    config.admin_email = Some(DEFAULT_ADMIN_EMAIL.to_string());
    config.admin_password = Some(Secret(password.clone()));
    Some(password)
}

/// The `main` of the all-in-one binary: with no arguments every service
/// and the gateway in one process; `serve <component>` runs one of them
/// alone, exactly as its own binary does (`serve gateway`, `serve order`,
/// `serve product-svc`, ...), for running the mesh as separate processes
/// from this one executable; `mesh-keys` prints service-token keys and
/// `dead-letters` lists or replays what consumers gave up on.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => all_in_one(),
        [serve, component] if serve == "serve" => serve_one(component),
        [keys] if keys == "mesh-keys" => {
            print!("{}", mesh_keys_env());
            ExitCode::SUCCESS
        }
        [command, rest @ ..] if command == "dead-letters" => dead_letters::main(rest),
        [keys, names @ ..] if keys == "mesh-keys" => match mesh_key_rotation(names) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("shopmesh: {err}");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!(
                "usage: shopmesh [serve <gateway|{}> | mesh-keys [component…] | dead-letters [<consumer>] | dead-letters replay <consumer>]",
                component_names().join("|")
            );
            ExitCode::from(2)
        }
    }
}

/// A fresh key set for a deployment, as environment lines: the shared
/// `MESH_PUBLIC_KEYS` and each component's `MESH_KEY` (under
/// `<COMPONENT>_MESH_KEY`; give each component only its own).
pub fn mesh_keys_env() -> String {
    let (keys, public) = platform::auth::generate_mesh(&mesh_components());
    let mut out = String::from("# Every component: the keys whose service tokens it accepts.\n");
    out.push_str(&format!("MESH_PUBLIC_KEYS={}\n", public.to_env()));
    out.push_str("# Each component's own MESH_KEY (a secret: give each only its own).\n");
    out.push_str(&mesh_key_lines(keys));
    out
}

/// New keys for `names` (components as their binaries are named:
/// `order-svc`, `gateway`…), with the steps that rotate them without a
/// refused call.
pub fn mesh_key_rotation(names: &[String]) -> Result<String, String> {
    let known = mesh_components();
    let mut chosen = Vec::new();
    for name in names {
        let name = known
            .iter()
            .find(|k| **k == name.as_str())
            .ok_or_else(|| format!("unknown component {name:?}; one of {}", known.join(", ")))?;
        if !chosen.contains(name) {
            chosen.push(*name);
        }
    }
    let (keys, public) = platform::auth::generate_mesh(&chosen);
    let mut out = String::from(
        "# 1. Add these to MESH_PUBLIC_KEYS beside the current entries (a component may\n\
         #    be listed twice) and roll out every component.\n",
    );
    for (name, x) in &public.0 {
        out.push_str(&format!("{name}={x}\n"));
    }
    out.push_str("# 2. Give each its new MESH_KEY (a secret) and roll it out.\n");
    out.push_str(&mesh_key_lines(keys));
    out.push_str("# 3. Remove their old entries from MESH_PUBLIC_KEYS and roll out again.\n");
    Ok(out)
}

/// Every component that signs service tokens, by its binary's name.
fn mesh_components() -> Vec<&'static str> {
    let mut names: Vec<&str> = ServiceId::ALL.iter().map(|id| id.binary()).collect();
    names.push(gateway::GATEWAY);
    names
}

/// `<COMPONENT>_MESH_KEY=<secret>` lines.
fn mesh_key_lines(keys: Vec<(String, Secret)>) -> String {
    keys.into_iter()
        .map(|(name, key)| {
            let var = name.to_uppercase().replace('-', "_");
            format!("{var}_MESH_KEY={}\n", key.expose())
        })
        .collect()
}

fn component_names() -> Vec<&'static str> {
    ServiceId::ALL.iter().map(|id| id.name()).collect()
}

/// Runs one component as its own binary would.
fn serve_one(component: &str) -> ExitCode {
    if component == "gateway" {
        return gateway::main();
    }
    let Some(&id) = ServiceId::ALL
        .iter()
        .find(|id| id.name() == component || id.binary() == component)
    else {
        eprintln!(
            "shopmesh: unknown component {component:?}; one of gateway, {}",
            component_names().join(", ")
        );
        return ExitCode::from(2);
    };
    use platform::runtime::run_service;
    match id {
        ServiceId::User => run_service(id, user_svc::build),
        ServiceId::Product => run_service(id, product_svc::build),
        ServiceId::Order => run_service(id, order_svc::build),
        ServiceId::Payment => run_service(id, payment_svc::build),
        ServiceId::Shipping => run_service(id, shipping_svc::build),
        ServiceId::Notification => run_service(id, notification_svc::build),
        ServiceId::Recommendation => run_service(id, recommendation_svc::build),
        ServiceId::Cart => run_service(id, cart_svc::build),
        ServiceId::Media => run_service(id, media_svc::build),
    }
}

fn all_in_one() -> ExitCode {
    let config = match platform::runtime::load_config("shopmesh") {
        Ok(config) => config,
        Err(code) => return code,
    };
    let addrs = match MeshAddrs::from_config(&config) {
        Ok(addrs) => addrs,
        Err(err) => {
            eprintln!("shopmesh: configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    let mut config = config;
    // Seven services and the gateway in one process: each keeps its own
    // service.name in traces, as in the per-service deployment.
    config.telemetry.per_service_names = true;
    let generated_admin = ensure_admin_credentials(&mut config);
    platform::runtime::run_main("shopmesh", &config, |config| async move {
        let mesh = Mesh::start(config, &addrs).await?;
        for id in ServiceId::ALL {
            tracing::info!(service = %id, addr = %mesh.grpc_addr(id), grpc = id.grpc_service(), "serving");
        }
        tracing::info!(addr = %mesh.gateway_addr(), "gateway listening");
        println!(
            "shopmesh is up: gateway on {} (GET /health, /ready, /docs)",
            mesh.gateway_url()
        );
        if let Some(password) = &generated_admin {
            println!(
                "admin account: {DEFAULT_ADMIN_EMAIL} / {password} (set ADMIN_EMAIL and ADMIN_PASSWORD to choose)"
            );
        }
        tokio::select! {
            () = platform::runtime::shutdown_signal() => {}
            () = mesh.any_stopped() => tracing::error!("a component stopped; shutting down"),
        }
        mesh.shutdown().await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    #[test]
    fn given_mesh_keys_are_reported_as_ignored() {
        let config = |vars: &HashMap<&str, &str>| platform::Config::from_source("t", vars).unwrap();
        assert_eq!(super::ignored_mesh_settings(&config(&HashMap::new())), None);
        let (_, public) = platform::auth::generate_mesh(&["order-svc"]);
        let public = public.to_env();
        let given = config(&HashMap::from([("MESH_PUBLIC_KEYS", public.as_str())]));
        let warning = super::ignored_mesh_settings(&given).expect("a warning");
        assert!(warning.contains("MESH_KEY and MESH_PUBLIC_KEYS are ignored"));
    }
}
