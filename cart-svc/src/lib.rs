//! cart-svc: carts for guests and customers, merged at sign-in, checked
//! out into orders without losing or repeating a line.
//!
//! Each cart is one document changed by compare-and-swap (`domain` holds
//! the rules, `api` the gRPC surface). A guest cart is reached by a signed
//! token and expires after `CART_GUEST_TTL` untouched; a sweeper removes
//! expired ones, and reminds a customer once of a cart left untouched for
//! `CART_REMINDER_AFTER`. A checkout is recorded on the cart before order-svc is
//! asked for the order, under an order key derived from the client's key,
//! so a crash at any point resumes into the same order.

pub mod api;
pub mod domain;
pub mod token;

use anyhow::Context as _;
use platform::runtime::Deps;
use platform::store::{Bound, CollectionSpec, FieldType, IndexSpec, Query, Store, StoreError};
use platform::{Config, Running, ServiceId};
use proto::cart::cart_service_server::CartServiceServer;

/// Which service this crate is.
pub const SERVICE: ServiceId = ServiceId::Cart;

/// The carts collection: guest carts by expiry and customers' carts by
/// when they are due a reminder, for the sweeper.
pub fn carts() -> CollectionSpec {
    CollectionSpec::new("carts")
        .index(IndexSpec::new("expires_at", FieldType::Int).optional())
        .index(IndexSpec::new("remind_at", FieldType::Int).optional())
}

/// Binds `GRPC_ADDR` (default `127.0.0.1:50059`) and serves.
pub async fn build(config: Config) -> anyhow::Result<Running> {
    let listener = platform::grpc::bind(config.grpc_listen_addr(SERVICE)).await?;
    let deps = Deps::connect(&config).await?;
    serve(config, listener, deps).await
}

/// Serves on an already-bound listener.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    deps: Deps,
) -> anyhow::Result<Running> {
    let store = Store::from_config(&config, SERVICE.name())
        .await
        .context("opening the cart store")?;
    let carts = store.collection(carts()).await.context("declaring carts")?;
    // Every replica signs guest tokens with the same key: derived from the
    // cursor key they already share (required with a real database).
    let secret = config
        .cursor_key
        .as_ref()
        .map_or(platform::store::cursor::DEFAULT_KEY, |k| {
            k.expose().as_bytes()
        });
    let channel = |id: ServiceId| {
        platform::grpc::channel_for(id, config.peers.get(id), &config.grpc)
            .with_context(|| format!("a channel to {}", id.name()))
    };
    let api = api::CartApi {
        carts: carts.clone(),
        tokens: token::Tokens::new(secret),
        mesh: platform::auth::MeshAuth::from_config(SERVICE.binary(), &config)?,
        catalog: proto::product::product_service_client::ProductServiceClient::new(channel(
            ServiceId::Product,
        )?),
        orders: proto::order::order_service_client::OrderServiceClient::new(channel(
            ServiceId::Order,
        )?),
        notifications:
            proto::notification::notification_service_client::NotificationServiceClient::new(
                channel(ServiceId::Notification)?,
            ),
        caps: domain::Caps {
            units_per_line: config.saga.max_units_per_line,
            lines: config.cart.max_lines,
        },
        guest_ttl: config.cart.guest_ttl,
        reminder_after: config.cart.reminder_after,
    };
    let sweeping = api.clone();
    let routes = tonic::service::Routes::new(CartServiceServer::new(api));
    let running =
        platform::grpc::GrpcServer::new(SERVICE, &config.grpc, proto::FILE_DESCRIPTOR_SET)
            .readiness(platform::grpc::store_and_bus(
                store.clone(),
                deps.bus.clone(),
            ))
            .serve(routes, listener)
            .await?;
    let sweeper = platform::runtime::spawn_leased(
        "cart-sweep",
        store,
        config.cart.sweep_interval,
        running.cancel_token(),
        move || {
            let (carts, api) = (carts.clone(), sweeping.clone());
            async move {
                let now = platform::clock::now().millis();
                let removed = remove_expired(&carts, now)
                    .await
                    .map_err(|e| e.to_string())?;
                if removed > 0 {
                    tracing::info!(removed, "removed expired guest carts");
                }
                let reminded = api
                    .send_reminders(now)
                    .await
                    .map_err(|s| s.message().to_string())?;
                if reminded > 0 {
                    tracing::info!(reminded, "sent reminders of abandoned carts");
                }
                Ok::<_, String>(())
            }
        },
    );
    running.spawn(async move {
        let _ = sweeper.await;
    });
    Ok(running)
}

/// Deletes guest carts that expired before `now_ms` (each only if it did
/// not change since it was read); returns how many.
pub async fn remove_expired(
    carts: &platform::store::Collection<domain::Cart>,
    now_ms: i64,
) -> Result<usize, StoreError> {
    let mut removed = 0;
    loop {
        let page = carts
            .find(
                &Query::new()
                    .range("expires_at", None, Some(Bound::Exclusive(now_ms.into())))
                    .limit(100),
            )
            .await?;
        let full = page.items.len() == 100;
        for cart in page.items {
            match carts.delete(&cart.id, Some(cart.version)).await {
                Ok(()) => removed += 1,
                Err(StoreError::NotFound | StoreError::VersionConflict) => {}
                Err(err) => return Err(err),
            }
        }
        if !full {
            return Ok(removed);
        }
    }
}
