//! media-svc: product images. An upload is checked (type from its bytes,
//! size, pixels, decode memory), re-encoded without metadata, given
//! thumbnails and stored by the SHA-256 of its bytes through
//! `object_store` (memory, a directory, or an S3-compatible bucket). Its
//! record and `media.uploaded` are one write; product-svc shows the image.
//!
//! `domain` holds the pure rules and image work, `library` the core
//! (records, objects, sweeping), `api` the gRPC face, `objects` the byte
//! store, `samples` images made in code (the demo catalog's pictures).

pub mod api;
pub mod convert;
pub mod domain;
pub mod library;
pub mod objects;
pub mod samples;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use platform::events::outbox::{OutboxRelay, outbox_index};
use platform::grpc::GrpcChannel;
use platform::runtime::Deps;
use platform::store::{CollectionSpec, FieldType, IndexSpec, Store};
use platform::{Config, Running, ServiceId};
use proto::media::media_service_server::MediaServiceServer;
use proto::product::product_service_client::ProductServiceClient;

use crate::library::Library;

/// Which service this crate is.
pub const SERVICE: ServiceId = ServiceId::Media;

/// The media collection: by product (ListMedia), by key (is it still
/// referenced?), by the live product/key pair (one per product), by the
/// live product/slot pair (at most 20 per product), and by deletion time
/// (the sweeper).
pub fn media() -> CollectionSpec {
    CollectionSpec::new("media")
        .index(IndexSpec::new("product_id", FieldType::String))
        .index(IndexSpec::new("key", FieldType::String))
        .index(
            IndexSpec::new("live", FieldType::String)
                .unique()
                .optional(),
        )
        .index(
            IndexSpec::new("slot", FieldType::String)
                .unique()
                .optional(),
        )
        .index(IndexSpec::new("deleted_at", FieldType::Int).optional())
        .index(outbox_index())
}

/// Binds `GRPC_ADDR` (default `127.0.0.1:50058`) and serves.
pub async fn build(config: Config) -> anyhow::Result<Running> {
    let listener = platform::grpc::bind(config.grpc_listen_addr(SERVICE)).await?;
    let deps = Deps::connect(&config).await?;
    serve(config, listener, deps).await
}

/// The core over `config`'s store and object store.
pub async fn library(config: &Config, deps: &Deps) -> anyhow::Result<Library> {
    let deps = &deps.signed_for(SERVICE.binary(), config)?;
    let store = Store::from_config(config, SERVICE.name())
        .await
        .context("opening the media store")?;
    let media = store.collection(media()).await.context("declaring media")?;
    let objects = objects::Objects::from_settings(&config.media)?;
    Ok(Library {
        relay: OutboxRelay::new(media.clone(), deps.bus.clone()),
        media,
        objects,
        limits: Arc::new(domain::Limits::from_settings(&config.media)),
        work: Arc::new(tokio::sync::Semaphore::new(config.media.workers)),
        intake: Arc::new(tokio::sync::Semaphore::new(config.media.workers * 2)),
        grace: config.media.grace,
    })
}

/// Serves on an already-bound listener.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    deps: Deps,
) -> anyhow::Result<Running> {
    let library = library(&config, &deps).await?;
    let catalog = ProductServiceClient::new(
        platform::grpc::channel_for(
            ServiceId::Product,
            config.peers.get(ServiceId::Product),
            &config.grpc,
        )
        .context("a channel to product")?,
    );
    let api = api::MediaApi {
        library: library.clone(),
        catalog: catalog.clone(),
        mesh: platform::auth::MeshAuth::from_config(SERVICE.binary(), &config)?,
    };
    let store = library.media.store().clone();
    let ready = {
        let store_and_bus = platform::grpc::store_and_bus(store.clone(), deps.bus.clone());
        let objects = library.objects.clone();
        let check: platform::grpc::ReadinessCheck = Arc::new(move || {
            let (first, objects) = (store_and_bus.clone(), objects.clone());
            Box::pin(async move {
                first().await?;
                objects
                    .ping()
                    .await
                    .map_err(|e| format!("object storage ({}): {e}", objects.backend()))
            })
        });
        check
    };
    let routes = tonic::service::Routes::new(MediaServiceServer::new(api.clone()));
    let running =
        platform::grpc::GrpcServer::new(SERVICE, &config.grpc, proto::FILE_DESCRIPTOR_SET)
            .readiness(ready)
            // Uploads waiting their turn hold at most 256 KiB each.
            .flow_windows(256 * 1024, 32 * 1024 * 1024)
            .serve(routes, listener)
            .await?;
    let relay = library
        .relay
        .spawn_sweeper(config.outbox_sweep_interval, running.cancel_token());
    let sweeping = (library.clone(), catalog.clone(), api.mesh.clone());
    let sweeper = platform::runtime::spawn_leased(
        "media-sweep",
        store,
        config.media.sweep_interval,
        running.cancel_token(),
        move || {
            let (library, catalog, mesh) = sweeping.clone();
            async move {
                let gone = library
                    .orphaned_by_products(|ids| {
                        existing_products(catalog.clone(), mesh.clone(), ids)
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                if gone > 0 {
                    tracing::info!(deleted = gone, "deleted media of deleted products");
                }
                let swept = library
                    .sweep(platform::clock::now().millis())
                    .await
                    .map_err(|e| e.to_string())?;
                if swept != Default::default() {
                    tracing::info!(records = swept.records, keys = swept.keys, "swept media");
                }
                Ok::<_, String>(())
            }
        },
    );
    if config.seed_demo {
        let (library, catalog) = (library.clone(), catalog.clone());
        let cancel = running.cancel_token();
        running.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                seeded = seed_demo_images(&library, catalog) => match seeded {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(images = n, "stored the demo catalog's pictures"),
                    Err(err) => tracing::warn!(error = %err, "demo pictures not stored"),
                },
            }
        });
    }
    running.spawn(async move {
        let _ = sweeper.await;
        let _ = relay.await;
    });
    Ok(running)
}

/// Which of `ids` the catalog holds; `None` when it cannot say.
async fn existing_products(
    catalog: ProductServiceClient<GrpcChannel>,
    mesh: platform::auth::MeshAuth,
    ids: Vec<String>,
) -> Option<HashSet<String>> {
    let request = mesh.request(proto::product::BatchGetProductsRequest { product_ids: ids });
    match catalog.clone().batch_get_products(request).await {
        Ok(found) => Some(
            found
                .into_inner()
                .products
                .into_iter()
                .map(|p| p.id)
                .collect(),
        ),
        Err(status) => {
            tracing::warn!(code = ?status.code(), message = status.message(), "catalog did not answer the media sweep");
            None
        }
    }
}

/// Gives every product of the catalog that shows no image a picture made
/// from its SKU, through the same checks and storage as an upload.
/// Waits (up to a minute) for the catalog to answer; returns how many
/// pictures it stored.
pub async fn seed_demo_images(
    library: &Library,
    catalog: ProductServiceClient<GrpcChannel>,
) -> anyhow::Result<usize> {
    let mut products = Vec::new();
    let mut cursor = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let request = proto::product::ListProductsRequest {
            page: Some(proto::common::PageRequest {
                limit: 100,
                cursor: cursor.clone(),
            }),
            ..Default::default()
        };
        match catalog.clone().list_products(request).await {
            Ok(page) => {
                let page = page.into_inner();
                products.extend(page.products);
                if page.next_cursor.is_empty() {
                    break;
                }
                cursor = page.next_cursor;
            }
            Err(status) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(message = status.message(), "waiting for the catalog");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(status) => anyhow::bail!("the catalog did not answer: {}", status.message()),
        }
    }
    let mut stored = 0;
    for product in products.iter().filter(|p| p.images.is_empty()) {
        if !library.of_product(&product.id).await?.is_empty() {
            continue;
        }
        let done = library.process(samples::demo_picture(&product.sku)).await?;
        let (_, created) = library
            .store(&product.id, &format!("Picture of {}", product.name), done)
            .await?;
        stored += usize::from(created);
    }
    Ok(stored)
}
