//! shipping-svc: shipments, carrier adapter, tracking, carrier updates.
//!
//! Consumes `order.created` (prepare a shipment), `payment.processed` (buy
//! the label once order-svc has the order PAID) and `order.cancelled`; publishes `shipping.updated` through
//! the outbox on every status change. Shipments only move forward, so
//! replayed or out-of-order carrier updates change nothing.

pub mod api;
pub mod carrier;
pub mod domain;
pub mod events;
pub mod store;

use std::sync::Arc;

use anyhow::Context as _;
use platform::events::ConsumerConfig;
use platform::events::outbox::OutboxRelay;
use platform::runtime::Deps;
use platform::store::Store;
use platform::{Config, Running, ServiceId};
use proto::shipping::shipping_service_server::ShippingServiceServer;

/// Which service this crate is.
pub const SERVICE: ServiceId = ServiceId::Shipping;

/// Binds `GRPC_ADDR` (default `127.0.0.1:50056`) and serves.
pub async fn build(config: Config) -> anyhow::Result<Running> {
    let listener = platform::grpc::bind(config.grpc_listen_addr(SERVICE)).await?;
    let deps = Deps::connect(&config).await?;
    serve(config, listener, deps).await
}

/// The carrier `config` asks for: an HTTP carrier API when
/// `CARRIER_BASE_URL` is set, else the simulated one.
pub fn carrier(config: &Config) -> anyhow::Result<Arc<dyn carrier::Carrier>> {
    Ok(match &config.integrations.carrier_base_url {
        Some(url) => Arc::new(carrier::HttpCarrier::new(
            url,
            config
                .integrations
                .carrier_api_key
                .as_ref()
                .map(|k| k.expose().to_string()),
        )?),
        None => Arc::new(carrier::SimulatedCarrier),
    })
}

/// Serves on an already-bound listener and consumes order and payment events.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    deps: Deps,
) -> anyhow::Result<Running> {
    let deps = deps.signed_for(SERVICE.binary(), &config)?;
    let store = Store::from_config(&config, SERVICE.name())
        .await
        .context("opening the shipping store")?;
    let shipments = store
        .collection(store::shipments())
        .await
        .context("declaring shipments")?;
    let api = api::ShippingApi {
        relay: OutboxRelay::new(shipments.clone(), deps.bus.clone()),
        shipments,
        carrier: carrier(&config)?,
        orders: proto::order::order_service_client::OrderServiceClient::new(
            platform::grpc::channel_for(
                ServiceId::Order,
                config.peers.get(ServiceId::Order),
                &config.grpc,
            )
            .context("a channel to order")?,
        ),
        mesh: platform::auth::MeshAuth::from_config(SERVICE.binary(), &config)?,
    };
    let consumer = ConsumerConfig::prompt("shipping-svc", events::EVENT_TYPES);
    // No processed-event records: each handler is decided by the
    // shipment's own state (one shipment per order by a unique index; a
    // label only from PENDING; a void of a void changes nothing), so a
    // redelivered event finds its work done and buys nothing twice.
    let handler = Arc::new(events::ShippingEvents { api: api.clone() });
    let subscription = deps
        .bus
        .subscribe(consumer, handler)
        .await
        .context("subscribing to order and payment events")?;
    let relay = api.relay.clone();
    let routes = tonic::service::Routes::new(ShippingServiceServer::new(api));
    let running =
        platform::grpc::GrpcServer::new(SERVICE, &config.grpc, proto::FILE_DESCRIPTOR_SET)
            .readiness(platform::grpc::store_and_bus(
                store.clone(),
                deps.bus.clone(),
            ))
            .serve(routes, listener)
            .await?;
    let sweeper = relay.spawn_sweeper(config.outbox_sweep_interval, running.cancel_token());
    let cancel = running.cancel_token();
    running.spawn(async move {
        cancel.cancelled().await;
        subscription.stop().await;
        let _ = sweeper.await;
    });
    Ok(running)
}
