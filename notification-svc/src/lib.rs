//! notification-svc: turns events into notifications, rendered from
//! template files, in each user's in-app feed (admins share one for stock
//! and review alerts), streamed live, and sent over email (SMTP), SMS
//! (Twilio-compatible API) and Web Push where configured.
//!
//! Everything is idempotent per event and recipient. Outside channels are
//! delivered by [`deliveries`] with per-channel records and retries.
//!
//! The live stream crosses replicas: each new feed item is broadcast on the
//! bus (NATS core pub/sub, outside the durable stream) and every replica
//! forwards what it hears to its own connected clients. It is best effort;
//! the feed (ListNotifications) is the record.

pub mod api;
pub mod channels;
pub mod deliveries;
pub mod domain;
pub mod events;
pub mod promotions;
pub mod templates;

use std::sync::Arc;

use anyhow::Context as _;
use platform::events::ConsumerConfig;
use platform::runtime::Deps;
use platform::store::{CollectionSpec, FieldType, IndexSpec, Store};
use platform::{Config, Running, ServiceId};

use crate::channels::Channels;
use proto::notification::notification_service_server::NotificationServiceServer;

/// Which service this crate is.
pub const SERVICE: ServiceId = ServiceId::Notification;

/// Binds `GRPC_ADDR` (default `127.0.0.1:50057`) and serves.
pub async fn build(config: Config) -> anyhow::Result<Running> {
    let listener = platform::grpc::bind(config.grpc_listen_addr(SERVICE)).await?;
    let deps = Deps::connect(&config).await?;
    serve(config, listener, deps).await
}

/// Serves on an already-bound listener and consumes the events users hear
/// about, with the channels the configuration enables.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    deps: Deps,
) -> anyhow::Result<Running> {
    let channels = Channels::from_config(&config)?;
    serve_with(config, listener, deps, channels).await
}

/// [`serve`] with the given channels.
pub async fn serve_with(
    config: Config,
    listener: tokio::net::TcpListener,
    deps: Deps,
    channels: Channels,
) -> anyhow::Result<Running> {
    let deps = deps.signed_for(SERVICE.binary(), &config)?;
    let store = Store::from_config(&config, SERVICE.name())
        .await
        .context("opening the notification store")?;
    let feed = store
        .collection(
            CollectionSpec::new("notifications")
                .index(IndexSpec::new("user_id", FieldType::String))
                .index(IndexSpec::new("created_at", FieldType::Int))
                .index(IndexSpec::new("state", FieldType::String)),
        )
        .await?;
    let subscriptions = store.collection(deliveries::subscriptions_spec()).await?;
    let promotions = store.collection(promotions::promotions_spec()).await?;
    let audience = store.collection(promotions::audience_spec()).await?;
    tracing::info!(
        email = channels.email.is_some(),
        sms = channels.sms.is_some(),
        push = channels.push.is_some(),
        "outside notification channels"
    );
    let records = store.collection(deliveries::spec()).await?;
    let users = platform::grpc::channel_for(
        ServiceId::User,
        config.peers.get(ServiceId::User),
        &config.grpc,
    )?;
    let mesh = platform::auth::MeshAuth::from_config(SERVICE.binary(), &config)?;
    let deliveries = deliveries::Deliveries::new(
        records,
        subscriptions.clone(),
        channels,
        deliveries::Directory::new(users, mesh.clone()),
        deliveries::RetryPolicy {
            base: config.integrations.delivery_retry_base,
            max_attempts: config.integrations.delivery_max_attempts,
        },
    );
    let (live, _) = tokio::sync::broadcast::channel(1024);
    let heard = deps
        .bus
        .listen(api::LIVE_TOPIC)
        .await
        .context("listening for live notifications")?;
    let (signed_out, _) = tokio::sync::broadcast::channel(256);
    let stopping = platform::runtime::CancellationToken::new();
    let sign_outs = deps
        .bus
        .listen(platform::auth::SIGNED_OUT_TOPIC)
        .await
        .context("listening for sign-outs")?;
    let api = api::NotificationApi {
        feed,
        subscriptions,
        live: live.clone(),
        signed_out: signed_out.clone(),
        stopping: stopping.clone(),
        bus: deps.bus.clone(),
        deliveries: deliveries.clone(),
        allow_http_endpoints: config.integrations.push_allow_http,
        mesh,
        promotions,
        audience,
        joined: Default::default(),
    };
    let promoting = api.clone();
    let handler = Arc::new(events::NotificationEvents {
        api: api.clone(),
        templates: templates::Templates::load()?,
    });
    let subscription = deps
        .bus
        .subscribe(
            ConsumerConfig::new("notification-svc", events::EVENT_TYPES),
            handler,
        )
        .await
        .context("subscribing to events")?;
    let routes = tonic::service::Routes::new(NotificationServiceServer::new(api));
    let running =
        platform::grpc::GrpcServer::new(SERVICE, &config.grpc, proto::FILE_DESCRIPTOR_SET)
            .readiness(platform::grpc::store_and_bus(
                store.clone(),
                deps.bus.clone(),
            ))
            .serve(routes, listener)
            .await?;
    running.spawn(deliveries.run(running.cancel_token()));
    // Promotions go out from one replica at a time, a batch per pass.
    let sender = platform::runtime::spawn_leased(
        "promotions",
        store.clone(),
        std::time::Duration::from_millis(500),
        running.cancel_token(),
        move || {
            let api = promoting.clone();
            async move { api.promotion_pass().await }
        },
    );
    running.spawn(async move {
        let _ = sender.await;
    });
    let cancel = running.cancel_token();
    running.spawn(async move {
        cancel.cancelled().await;
        stopping.cancel();
    });
    forward(&running, heard, live, "live notifications", |bytes| {
        use prost::Message as _;
        proto::notification::Notification::decode(bytes).ok()
    });
    forward(
        &running,
        sign_outs,
        signed_out,
        "sign-outs",
        platform::auth::SignedOut::decode,
    );
    let cancel = running.cancel_token();
    running.spawn(async move {
        cancel.cancelled().await;
        subscription.stop().await;
    });
    Ok(running)
}

/// Passes what `heard` brings (decoded) to this replica's streams until
/// the server stops. Best effort: a listener that ends is logged, and the
/// streams then get only what this replica makes itself.
fn forward<T: Send + 'static>(
    running: &Running,
    mut heard: platform::events::Listener,
    to: tokio::sync::broadcast::Sender<T>,
    what: &'static str,
    decode: fn(&[u8]) -> Option<T>,
) {
    let cancel = running.cancel_token();
    running.spawn(async move {
        use futures::StreamExt as _;
        loop {
            let bytes = tokio::select! {
                _ = cancel.cancelled() => return,
                next = heard.next() => match next {
                    Some(bytes) => bytes,
                    None => {
                        tracing::warn!("the listener for {what} ended; streams get this replica's own only");
                        return;
                    }
                },
            };
            if let Some(item) = decode(&bytes) {
                let _ = to.send(item);
            }
        }
    });
}
