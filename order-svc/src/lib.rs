//! order-svc: orders and the order saga.
//!
//! CreateOrder reserves stock keyed by the order id and prices the lines
//! from the catalog's answer to that reserve (the product versions that
//! took the units), then stores the order PENDING_PAYMENT with
//! `order.created` in the same write. One catalog call checks and prices
//! the lines; ValidateProducts is asked only when a reserve is refused (so
//! a request the catalog rejects as a whole, for an unknown or withdrawn
//! product or mixed currencies, gets the same 422 whatever the stock) and
//! to price a repeated reserve that took nothing. ProcessPayment charges
//! through payment-svc; payment and shipping events move the order on.
//! Keys in `Idempotency-Key` make creation and payment safe to retry.

pub mod api;
pub mod convert;
pub mod domain;
pub mod events;
pub mod idempotency;
pub mod peers;
pub mod saga;
pub mod store;

use std::time::Duration;

use anyhow::Context as _;
use platform::events::ConsumerConfig;
use platform::events::outbox::OutboxRelay;
use platform::grpc::Retry;
use platform::runtime::Deps;
use platform::store::Store;
use platform::{Config, Running, ServiceId};
use proto::order::order_service_server::OrderServiceServer;

use crate::peers::Peers;

/// Which service this crate is.
pub const SERVICE: ServiceId = ServiceId::Order;

/// Binds `GRPC_ADDR` (default `127.0.0.1:50052`) and serves.
pub async fn build(config: Config) -> anyhow::Result<Running> {
    let listener = platform::grpc::bind(config.grpc_listen_addr(SERVICE)).await?;
    let deps = Deps::connect(&config).await?;
    serve(config, listener, deps).await
}

/// The service's API on the peers `config` names (tonic clients).
pub async fn api(config: &Config, deps: &Deps) -> anyhow::Result<(api::OrderApi, Store)> {
    api_with(config, deps, Peers::connect(config)?).await
}

/// The service's API calling `peers`.
pub async fn api_with(
    config: &Config,
    deps: &Deps,
    peers: Peers,
) -> anyhow::Result<(api::OrderApi, Store)> {
    let deps = &deps.signed_for(SERVICE.binary(), config)?;
    // Orders created and cancelled are what these events state, once each.
    use platform::metrics::{ORDERS, count_when_published};
    count_when_published("order.created", &ORDERS, "created");
    count_when_published("order.cancelled", &ORDERS, "cancelled");
    let store = Store::from_config(config, SERVICE.name())
        .await
        .context("opening the order store")?;
    let orders = store
        .collection(store::orders())
        .await
        .context("declaring orders")?;
    let keys = store
        .collection(idempotency::spec())
        .await
        .context("declaring idempotency keys")?;
    let saga = saga::Saga {
        relay: OutboxRelay::new(orders.clone(), deps.bus.clone()),
        orders,
        keys: idempotency::Keys::new(keys),
        catalog: peers.catalog,
        payments: peers.payments,
        shipments: peers.shipments,
        retry: Retry::from_settings(&config.grpc),
        mesh: platform::auth::MeshAuth::from_config(SERVICE.binary(), config)?,
        settings: config.saga.clone(),
    };
    Ok((
        api::OrderApi {
            saga,
            server_timeout: config.grpc.server_timeout,
        },
        store,
    ))
}

/// Serves on an already-bound listener and consumes payment and shipping events.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    deps: Deps,
) -> anyhow::Result<Running> {
    let peers = Peers::connect(&config)?;
    serve_with(config, listener, deps, peers).await
}

/// [`serve`], calling `peers` instead of the services `config` names.
pub async fn serve_with(
    config: Config,
    listener: tokio::net::TcpListener,
    deps: Deps,
    peers: Peers,
) -> anyhow::Result<Running> {
    let deps = deps.signed_for(SERVICE.binary(), &config)?;
    let (api, store) = api_with(&config, &deps, peers).await?;
    // No processed-event records of its own: every handler checks and
    // records the event on the order it changes, in the same CAS write
    // (`Order::applied_events`, the payment id, the state machine), so the
    // order document is the record and a redelivery writes nothing.
    let handler = std::sync::Arc::new(events::OrderEvents {
        saga: api.saga.clone(),
    });
    // These events move money-bearing state (a refund made by an admin
    // reaches the order only this way): retried soon after an outage ends,
    // and a store or peer that is down is waited out, never dead-lettered.
    let consumer = ConsumerConfig::prompt("order-svc", events::EVENT_TYPES);
    let subscription = deps
        .bus
        .subscribe(consumer, handler)
        .await
        .context("subscribing to payment and shipping events")?;
    let relay = api.saga.relay.clone();
    let keys = api.saga.keys.clone();
    let saga = api.saga.clone();
    let routes = tonic::service::Routes::new(OrderServiceServer::new(api));
    let running =
        platform::grpc::GrpcServer::new(SERVICE, &config.grpc, proto::FILE_DESCRIPTOR_SET)
            .readiness(platform::grpc::store_and_bus(
                store.clone(),
                deps.bus.clone(),
            ))
            .serve(routes, listener)
            .await?;
    let sweeper = relay.spawn_sweeper(config.outbox_sweep_interval, running.cancel_token());
    // Retries pending saga steps and expires unpaid orders.
    let saga_sweeper = platform::runtime::spawn_leased(
        "saga-sweep",
        store.clone(),
        config.saga.sweep_interval,
        running.cancel_token(),
        move || {
            let saga = saga.clone();
            async move {
                let (steps, expired) = saga.sweep().await?;
                if steps + expired > 0 {
                    tracing::info!(steps, expired, "saga sweeper pass");
                }
                Ok::<_, platform::store::StoreError>(())
            }
        },
    );
    let cancel = running.cancel_token();
    running.spawn(async move {
        loop {
            if let Err(err) = keys.prune().await {
                tracing::warn!(error = %err, "pruning idempotency keys failed");
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(3600)) => {}
            }
        }
        subscription.stop().await;
        let _ = sweeper.await;
        let _ = saga_sweeper.await;
    });
    Ok(running)
}
