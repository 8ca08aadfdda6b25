//! product-svc: catalog, search, inventory with reservations, reviews, and
//! a Redis cache.
//!
//! [`build`] binds the configured address and serves
//! `shop.product.v1.ProductService` with health and reflection; [`serve`]
//! does the same on a listener the caller bound. `inventory.low` and
//! `review.created` leave through the outbox; `media.uploaded` and
//! `media.deleted` change the images a product shows.

pub mod api;
pub mod cache;
pub mod convert;
pub mod domain;
pub mod events;
pub mod seed;
pub mod stock;
pub mod store;

use anyhow::Context as _;
use std::sync::Arc;

use platform::events::ConsumerConfig;
use platform::events::outbox::OutboxRelay;
use platform::runtime::Deps;
use platform::store::Store;
use platform::{Config, Running, ServiceId};
use proto::product::product_service_server::ProductServiceServer;

/// Which service this crate is.
pub const SERVICE: ServiceId = ServiceId::Product;

/// Binds `GRPC_ADDR` (default `127.0.0.1:50051`) and serves.
pub async fn build(config: Config) -> anyhow::Result<Running> {
    let listener = platform::grpc::bind(config.grpc_listen_addr(SERVICE)).await?;
    let deps = Deps::connect(&config).await?;
    serve(config, listener, deps).await
}

/// Builds the API over `config`'s store and cache.
pub async fn api(config: &Config, deps: &Deps) -> anyhow::Result<api::ProductApi> {
    let deps = &deps.signed_for(SERVICE.binary(), config)?;
    let store = Store::from_config(config, SERVICE.name())
        .await
        .context("opening the product store")?;
    let products = store
        .collection(store::products())
        .await
        .context("declaring products")?;
    let reservations = store
        .collection(store::reservations())
        .await
        .context("declaring reservations")?;
    let reviews = store
        .collection(store::reviews())
        .await
        .context("declaring reviews")?;
    let cache = match &config.redis_url {
        Some(url) => {
            cache::Cache::connect(url, config.product_cache_ttl, &config.redis_key_prefix).await
        }
        None => cache::Cache::disabled(),
    };
    let product_relay = OutboxRelay::new(products.clone(), deps.bus.clone());
    let mesh = platform::auth::MeshAuth::from_config(SERVICE.binary(), config)?;
    let stock = stock::Stock {
        stock_writes: platform::store::Coalescer::new(products.clone()),
        reservations,
        product_relay: product_relay.clone(),
        cache: cache.clone(),
        low_stock_threshold: i64::from(config.low_stock_threshold),
        orders: proto::order::order_service_client::OrderServiceClient::new(
            platform::grpc::channel_for(
                ServiceId::Order,
                config.peers.get(ServiceId::Order),
                &config.grpc,
            )?,
        ),
        mesh: mesh.clone(),
        saga: config.saga.clone(),
    };
    Ok(api::ProductApi {
        product_relay,
        review_relay: OutboxRelay::new(reviews.clone(), deps.bus.clone()),
        products,
        reviews,
        cache,
        stock,
        mesh,
    })
}

/// Serves on an already-bound listener.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    deps: Deps,
) -> anyhow::Result<Running> {
    let deps = deps.signed_for(SERVICE.binary(), &config)?;
    let api = api(&config, &deps).await?;
    if config.seed_demo {
        let created = seed::seed_demo(&api).await?;
        if created > 0 {
            tracing::info!(created, "seeded the demo catalog");
        }
    }
    let subscription = deps
        .bus
        .subscribe(
            ConsumerConfig::prompt("product-svc", events::EVENT_TYPES),
            Arc::new(events::ProductEvents { api: api.clone() }),
        )
        .await
        .context("subscribing to media events")?;
    let (product_relay, review_relay) = (api.product_relay.clone(), api.review_relay.clone());
    let stock = api.stock.clone();
    let store = api.products.store().clone();
    let ready = platform::grpc::store_and_bus(store.clone(), deps.bus.clone());
    let routes = tonic::service::Routes::new(ProductServiceServer::new(api));
    let running =
        platform::grpc::GrpcServer::new(SERVICE, &config.grpc, proto::FILE_DESCRIPTOR_SET)
            .readiness(ready)
            .serve(routes, listener)
            .await?;
    let sweepers = [
        product_relay.spawn_sweeper(config.outbox_sweep_interval, running.cancel_token()),
        review_relay.spawn_sweeper(config.outbox_sweep_interval, running.cancel_token()),
        // Settles reservations that a crash or a lost call left open.
        platform::runtime::spawn_leased(
            "reservation-sweep",
            store,
            config.saga.sweep_interval,
            running.cancel_token(),
            move || {
                let stock = stock.clone();
                async move {
                    stock
                        .sweep_reservations()
                        .await
                        .map(|_| ())
                        .map_err(|s| s.message().to_string())
                }
            },
        ),
    ];
    let cancel = running.cancel_token();
    running.spawn(async move {
        cancel.cancelled().await;
        subscription.stop().await;
    });
    running.spawn(async move {
        for sweeper in sweepers {
            let _ = sweeper.await;
        }
    });
    Ok(running)
}
