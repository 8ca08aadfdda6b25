//! user-svc: accounts, argon2id passwords, JWT issuing, refresh tokens, JWKS.
//!
//! [`build`] binds the configured address and serves `shop.user.v1.UserService`
//! with health and reflection; [`serve`] does the same on a listener the
//! caller bound (port 0 in tests, or the all-in-one binary wiring peers
//! first). Users live in the document store (unique, case-insensitive
//! email); `user.registered` leaves through the outbox.

pub mod api;
pub mod domain;
pub mod keys;
pub mod passwords;
pub mod store;

use std::sync::Arc;

use anyhow::Context as _;
use platform::events::outbox::OutboxRelay;
use platform::runtime::Deps;
use platform::store::Store;
use platform::{Config, Running, ServiceId};
use proto::user::user_service_server::UserServiceServer;

/// Which service this crate is.
pub const SERVICE: ServiceId = ServiceId::User;

/// Binds `GRPC_ADDR` (default `127.0.0.1:50055`) and serves.
pub async fn build(config: Config) -> anyhow::Result<Running> {
    let listener = platform::grpc::bind(config.grpc_listen_addr(SERVICE)).await?;
    let deps = Deps::connect(&config).await?;
    serve(config, listener, deps).await
}

/// Builds the API over `config`'s store (used by [`serve`] and tests).
pub async fn api(
    config: &Config,
    deps: &Deps,
    hasher: passwords::Hasher,
) -> anyhow::Result<api::UserApi> {
    let deps = &deps.signed_for(SERVICE.binary(), config)?;
    let store = Store::from_config(config, SERVICE.name())
        .await
        .context("opening the user store")?;
    let users = store
        .collection(store::users())
        .await
        .context("declaring users")?;
    let tokens = store
        .collection(store::refresh_tokens())
        .await
        .context("declaring refresh tokens")?;
    let pems = config
        .jwt
        .private_key_pem
        .as_ref()
        .map(|s| s.expose().to_string());
    let keys = keys::KeyRing::load(pems.as_deref(), &store)
        .await
        .context("loading signing keys")?;
    let mesh = platform::auth::MeshAuth::with_users(
        SERVICE.binary(),
        config,
        platform::auth::UserKeys::fixed(&keys.jwks, &config.jwt.issuer, &config.jwt.audience),
    )?;
    Ok(api::UserApi {
        mesh,
        relay: OutboxRelay::new(users.clone(), deps.bus.clone()),
        bus: deps.bus.clone(),
        users,
        tokens,
        hasher,
        keys: Arc::new(keys),
        settings: api::TokenSettings {
            issuer: config.jwt.issuer.clone(),
            audience: config.jwt.audience.clone(),
            access_ttl: config.jwt.access_ttl,
            refresh_ttl: config.jwt.refresh_ttl,
        },
        direct_signups: Default::default(),
    })
}

/// Serves on an already-bound listener.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    deps: Deps,
) -> anyhow::Result<Running> {
    let deps = deps.signed_for(SERVICE.binary(), &config)?;
    let api = api(&config, &deps, passwords::Hasher::owasp()?).await?;
    if let (Some(email), Some(password)) = (&config.admin_email, &config.admin_password) {
        api.ensure_admin(email, password.expose())
            .await
            .context("bootstrapping the admin account")?;
    }
    let ready = platform::grpc::store_and_bus(api.users.store().clone(), deps.bus.clone());
    let relay = api.relay.clone();
    let routes = tonic::service::Routes::new(UserServiceServer::new(api));
    let running =
        platform::grpc::GrpcServer::new(SERVICE, &config.grpc, proto::FILE_DESCRIPTOR_SET)
            .readiness(ready)
            .serve(routes, listener)
            .await?;
    let sweeper = relay.spawn_sweeper(config.outbox_sweep_interval, running.cancel_token());
    running.spawn(async move {
        let _ = sweeper.await;
    });
    Ok(running)
}
