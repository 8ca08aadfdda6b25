//! payment-svc: payments through a provider (simulated, or Stripe when
//! `STRIPE_API_KEY` is set), refunds, idempotency and reconciliation.
//!
//! An order is charged at most once at a time (a unique lock on the order
//! id while a payment is pending or succeeded); every provider call carries
//! our id as its idempotency key; a charge whose answer was lost stays
//! pending until the reconciler asks the provider what happened.
//! `payment.processed`, `payment.failed` and `payment.refunded` leave
//! through the outbox.

pub mod api;
pub mod domain;
pub mod provider;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use platform::events::outbox::OutboxRelay;
use platform::runtime::Deps;
use platform::store::Store;
use platform::{Config, Running, ServiceId};
use proto::payment::payment_service_server::PaymentServiceServer;

/// Which service this crate is.
pub const SERVICE: ServiceId = ServiceId::Payment;

/// Binds `GRPC_ADDR` (default `127.0.0.1:50053`) and serves.
pub async fn build(config: Config) -> anyhow::Result<Running> {
    let listener = platform::grpc::bind(config.grpc_listen_addr(SERVICE)).await?;
    let deps = Deps::connect(&config).await?;
    serve(config, listener, deps).await
}

/// The provider `config` asks for.
pub fn provider(config: &Config) -> anyhow::Result<Arc<dyn provider::PaymentProvider>> {
    Ok(match &config.integrations.stripe_api_key {
        Some(key) => Arc::new(provider::StripeProvider::new(
            &config.integrations.stripe_base_url,
            key.expose(),
            Duration::from_secs(10),
        )?),
        None => Arc::new(provider::SimulatedProvider::new()),
    })
}

pub async fn api(
    config: &Config,
    deps: &Deps,
    provider: Arc<dyn provider::PaymentProvider>,
) -> anyhow::Result<api::PaymentApi> {
    let deps = &deps.signed_for(SERVICE.binary(), config)?;
    // Payment outcomes are what these events state, once each.
    use platform::metrics::{PAYMENTS, count_when_published};
    count_when_published("payment.processed", &PAYMENTS, "succeeded");
    count_when_published("payment.failed", &PAYMENTS, "failed");
    count_when_published("payment.refunded", &PAYMENTS, "refunded");
    let store = Store::from_config(config, SERVICE.name())
        .await
        .context("opening the payment store")?;
    let payments = store
        .collection(store::payments())
        .await
        .context("declaring payments")?;
    Ok(api::PaymentApi {
        relay: OutboxRelay::new(payments.clone(), deps.bus.clone()),
        payments,
        provider,
        mesh: platform::auth::MeshAuth::from_config(SERVICE.binary(), config)?,
        reconcile_after: Duration::from_secs(30),
    })
}

/// Serves on an already-bound listener with the configured provider.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    deps: Deps,
) -> anyhow::Result<Running> {
    let provider = provider(&config)?;
    serve_with(
        config,
        listener,
        deps,
        provider,
        Duration::from_secs(30),
        Duration::from_secs(10),
    )
    .await
}

/// Serves with a given provider; pending payments older than
/// `reconcile_after` are reconciled every `reconcile_every`.
pub async fn serve_with(
    config: Config,
    listener: tokio::net::TcpListener,
    deps: Deps,
    provider: Arc<dyn provider::PaymentProvider>,
    reconcile_after: Duration,
    reconcile_every: Duration,
) -> anyhow::Result<Running> {
    let deps = deps.signed_for(SERVICE.binary(), &config)?;
    let mut api = api(&config, &deps, provider).await?;
    api.reconcile_after = reconcile_after;
    let background = api.clone();
    let ready = platform::grpc::store_and_bus(api.payments.store().clone(), deps.bus.clone());
    let routes = tonic::service::Routes::new(PaymentServiceServer::new(api));
    let running =
        platform::grpc::GrpcServer::new(SERVICE, &config.grpc, proto::FILE_DESCRIPTOR_SET)
            .readiness(ready)
            .serve(routes, listener)
            .await?;
    let sweeper = background
        .relay
        .spawn_sweeper(config.outbox_sweep_interval, running.cancel_token());
    let store = background.payments.store().clone();
    let reconciler = platform::runtime::spawn_leased(
        "payment-reconcile",
        store,
        reconcile_every,
        running.cancel_token(),
        move || {
            let background = background.clone();
            async move {
                let settled = background
                    .reconcile()
                    .await
                    .map_err(|s| s.message().to_string())?;
                if settled > 0 {
                    tracing::info!(settled, "reconciled pending payments");
                }
                Ok::<_, String>(())
            }
        },
    );
    running.spawn(async move {
        let _ = reconciler.await;
        let _ = sweeper.await;
    });
    Ok(running)
}
