//! recommendation-svc: interaction log, model training, recommendations.
//!
//! Consumes `order.created`, `payment.processed`, `order.cancelled`,
//! `payment.refunded` and `review.created` into an interaction log in its
//! own store; trains a popularity baseline and EASE ([`model`]) off the
//! async runtime, on request and on a schedule, one run at a time across
//! replicas ([`training`]); stores each model versioned so every replica
//! serves the latest; serves personalised and similar-item
//! recommendations of products that can be bought ([`api`]).
//!
//! [`build`] binds the configured address and serves with health and
//! reflection; [`serve`] does the same on a listener the caller bound
//! (port 0 in tests, or the all-in-one binary wiring peers first).

pub mod api;
pub mod catalog;
pub mod config;
pub mod dataset;
pub mod domain;
pub mod events;
pub mod model;
pub mod store;
pub mod training;

use std::sync::Arc;

use anyhow::Context as _;
use platform::events::ConsumerConfig;
use platform::runtime::Deps;
use platform::store::Store;
use platform::{Config, Running, ServiceId};
use proto::recommendation::recommendation_service_server::RecommendationServiceServer;

pub use config::RecommendationConfig;

/// Which service this crate is.
pub const SERVICE: ServiceId = ServiceId::Recommendation;

/// Binds `GRPC_ADDR` (default `127.0.0.1:50054`) and serves.
pub async fn build(config: Config) -> anyhow::Result<Running> {
    let listener = platform::grpc::bind(config.grpc_listen_addr(SERVICE)).await?;
    let deps = Deps::connect(&config).await?;
    serve(config, listener, deps).await
}

/// Serves on an already-bound listener with the settings of the
/// environment (`RECOMMENDATION_*`).
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    deps: Deps,
) -> anyhow::Result<Running> {
    let settings = RecommendationConfig::from_env().map_err(|e| anyhow::anyhow!("{e}"))?;
    serve_with(config, settings, listener, deps).await
}

/// Serves with explicit settings (tests, benchmarks).
pub async fn serve_with(
    config: Config,
    settings: RecommendationConfig,
    listener: tokio::net::TcpListener,
    deps: Deps,
) -> anyhow::Result<Running> {
    let deps = deps.signed_for(SERVICE.binary(), &config)?;
    let base = Store::from_config(&config, SERVICE.name())
        .await
        .context("opening the recommendation store")?;
    let store = store::RecStore::open(&base)
        .await
        .context("declaring the recommendation collections")?;
    let products = platform::grpc::channel_for(
        ServiceId::Product,
        config.peers.get(ServiceId::Product),
        &config.grpc,
    )?;
    let catalog = catalog::Catalog::new(products, settings.catalog_ttl);
    let serving = training::Serving::default();
    if let Err(err) = serving.refresh(&store).await {
        tracing::warn!(error = %err, "the current model could not be loaded; serving popularity once trained");
    }
    let trainer = training::Trainer {
        store: store.clone(),
        catalog: catalog.clone(),
        serving: serving.clone(),
        params: settings.params.clone(),
        lease_ttl: settings.lease_ttl,
        holder: uuid::Uuid::now_v7().to_string(),
        live: Default::default(),
    };
    // With scheduled training on, a store with no model gets one now, not
    // at the first scheduled run (the lease keeps replicas starting
    // together from training twice).
    if settings.train_interval.is_some() && serving.get().is_none() {
        match trainer.start().await {
            Ok(started) => tracing::info!(version = %started.version,
                already_running = started.already_running, "training the first model"),
            Err(err) => tracing::warn!(error = %err, "the first training did not start"),
        }
    }
    let api = api::RecommendationApi {
        store: store.clone(),
        catalog,
        serving: serving.clone(),
        trainer: trainer.clone(),
        mesh: platform::auth::MeshAuth::from_config(SERVICE.binary(), &config)?,
    };
    let consumer = ConsumerConfig::prompt("recommendation-svc", events::EVENT_TYPES);
    // No processed-event records: each event folds into one document by
    // rules that give the same result however often it comes (see
    // `events`), so the document is the record.
    let handler = Arc::new(events::RecommendationEvents {
        store: store.clone(),
    });
    let subscription = deps
        .bus
        .subscribe(consumer, handler)
        .await
        .context("subscribing to order, payment and review events")?;
    let routes = tonic::service::Routes::new(RecommendationServiceServer::new(api));
    let running =
        platform::grpc::GrpcServer::new(SERVICE, &config.grpc, proto::FILE_DESCRIPTOR_SET)
            .readiness(platform::grpc::store_and_bus(
                base.clone(),
                deps.bus.clone(),
            ))
            .serve(routes, listener)
            .await?;
    let cancel = running.cancel_token();
    let refresher = serving.spawn_refresher(store, settings.model_refresh, cancel.clone());
    let schedule = settings
        .train_interval
        .map(|every| trainer.spawn_schedule(every, cancel.clone()));
    running.spawn(async move {
        cancel.cancelled().await;
        subscription.stop().await;
        let _ = refresher.await;
        if let Some(schedule) = schedule {
            let _ = schedule.await;
        }
    });
    Ok(running)
}
