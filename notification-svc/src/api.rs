//! gRPC surface of `NotificationService`: the in-app feed, its live
//! stream, direct sends and push subscriptions.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use platform::Component;
use platform::auth::Caller;
use platform::error::invalid_fields;
use platform::store::{Collection, Query, StoreError};
use proto::notification::notification_service_server::NotificationService;
use proto::notification::*;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};

use crate::deliveries::{Deliveries, MAX_SUBSCRIPTIONS, Outgoing, Subscription, id_of};
use crate::domain::Via;

/// Recipient of notifications meant for every admin.
pub const ADMINS: &str = "role:admin";

/// A stored in-app notification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub user_id: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Indexed for the unread filter.
    pub state: ReadState,
}

/// Whether the user has read a notification (stored `unread` / `read`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadState {
    Unread,
    Read,
}

impl ReadState {
    /// As stored, for queries on the index.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadState::Unread => "unread",
            ReadState::Read => "read",
        }
    }
}

#[derive(Clone, Debug)]
pub struct NotificationApi {
    pub(crate) feed: Collection<Item>,
    pub(crate) subscriptions: Collection<Subscription>,
    /// This process's live subscribers, fed from the bus's `notifications`
    /// broadcast (so a client sees what every replica creates).
    pub(crate) live: broadcast::Sender<proto::notification::Notification>,
    /// Users who signed out, heard from user-svc on every replica.
    pub(crate) signed_out: broadcast::Sender<platform::auth::SignedOut>,
    /// Cancelled when the server stops: open streams end, so stopping
    /// does not wait for them.
    pub(crate) stopping: platform::runtime::CancellationToken,
    pub(crate) bus: std::sync::Arc<dyn platform::events::EventBus>,
    pub(crate) deliveries: Deliveries,
    /// `PUSH_ALLOW_HTTP`: accept plain-http push endpoints (development).
    pub(crate) allow_http_endpoints: bool,
    /// Verifies who calls.
    pub(crate) mesh: platform::auth::MeshAuth,
    /// Admins' messages to many customers, and who they go to.
    pub(crate) promotions: Collection<crate::promotions::Promotion>,
    pub(crate) audience: Collection<crate::promotions::Member>,
    pub(crate) joined: crate::promotions::Joined,
}

pub(crate) fn to_proto(id: &str, n: &Item) -> proto::notification::Notification {
    proto::notification::Notification {
        id: id.to_string(),
        user_id: n.user_id.clone(),
        kind: n.kind.clone(),
        title: n.title.clone(),
        body: n.body.clone(),
        channel: Channel::InApp as i32,
        created_at: Some(proto::ext::from_millis(n.created_at)),
        read: n.state == ReadState::Read,
    }
}

/// Whose feeds a caller reads: its own, and the admins' one if it is an admin.
fn recipients(caller: &Caller) -> Vec<String> {
    let mut out = vec![caller.user_id.clone()];
    if caller.is_admin() {
        out.push(ADMINS.to_string());
    }
    out
}

/// Broadcast topic of new feed notifications.
pub const LIVE_TOPIC: &str = "notifications";

impl NotificationApi {
    /// Tells every replica's live subscribers (best effort: the feed is the
    /// record). If the bus cannot take it, at least this replica's hear it.
    async fn announce(&self, notification: &proto::notification::Notification) {
        use prost::Message as _;
        if let Err(err) = self
            .bus
            .broadcast(LIVE_TOPIC, notification.encode_to_vec())
            .await
        {
            tracing::warn!(error = %err, "live broadcast failed; only local streams get it");
            let _ = self.live.send(notification.clone());
        }
    }

    /// Stores a notification once per `key` (an event id and recipient) and
    /// streams it to connected clients. Returns None if it existed already.
    pub async fn deliver(
        &self,
        key: &str,
        user_id: &str,
        kind: &str,
        title: String,
        body: String,
    ) -> Result<Option<proto::notification::Notification>, Status> {
        let id = id_of(key);
        let item = Item {
            user_id: user_id.to_string(),
            kind: kind.to_string(),
            title,
            body,
            created_at: platform::clock::now().millis(),
            state: ReadState::Unread,
        };
        match self.feed.insert(&id, item.clone()).await {
            Ok(_) => {
                let notification = to_proto(&id, &item);
                self.announce(&notification).await;
                Ok(Some(notification))
            }
            Err(StoreError::AlreadyExists { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }
}

type LiveStream = Pin<Box<dyn Stream<Item = Result<StreamNotificationsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl NotificationService for NotificationApi {
    async fn list_notifications(
        &self,
        request: Request<ListNotificationsRequest>,
    ) -> Result<Response<ListNotificationsResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let r = request.into_inner();
        // Admins read two feeds; a merged page keeps it simple: their own
        // feed, then the admins' one, each newest first.
        let mut notifications = Vec::new();
        let mut next_cursor = String::new();
        for recipient in recipients(&caller).iter().take(
            if r.page.as_ref().is_some_and(|p| !p.cursor.is_empty()) {
                1
            } else {
                2
            },
        ) {
            let mut query = Query::new()
                .eq("user_id", recipient.as_str())
                .sort("created_at", true)
                .page(r.page.as_ref());
            if r.unread_only {
                query = query.eq("state", ReadState::Unread.as_str());
            }
            let page = self
                .feed
                .find(&query)
                .await
                .map_err(StoreError::into_list_status)?;
            notifications.extend(page.items.iter().map(|n| to_proto(&n.id, &n.value)));
            if next_cursor.is_empty() {
                next_cursor = page.next_cursor.unwrap_or_default();
            }
        }
        notifications.sort_by(|a, b| {
            b.created_at
                .as_ref()
                .map(|t| (t.seconds, t.nanos))
                .cmp(&a.created_at.as_ref().map(|t| (t.seconds, t.nanos)))
        });
        Ok(Response::new(ListNotificationsResponse {
            notifications,
            next_cursor,
        }))
    }

    async fn send_notification(
        &self,
        request: Request<SendNotificationRequest>,
    ) -> Result<Response<SendNotificationResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        // cart-svc reminds customers of the carts they left.
        caller.require_admin_or(&[Component::CART])?;
        let r = request.into_inner();
        let mut errors = Vec::new();
        if r.user_id.trim().is_empty() {
            errors.push(("user_id", "is required".to_string()));
        }
        if r.title.trim().is_empty() || r.title.chars().count() > 200 {
            errors.push(("title", "must be 1 to 200 characters".to_string()));
        }
        if r.body.trim().is_empty() || r.body.chars().count() > 5000 {
            errors.push(("body", "must be 1 to 5000 characters".to_string()));
        }
        if r.kind.chars().count() > 64 {
            errors.push(("kind", "must be at most 64 characters".to_string()));
        }
        let mut in_app = r.channels.is_empty();
        let mut vias = Vec::new();
        for (i, c) in r.channels.iter().enumerate() {
            match Channel::try_from(*c) {
                Ok(Channel::InApp) => in_app = true,
                Ok(c) if Via::from_proto(c).is_some() => {
                    vias.extend(Via::from_proto(c).filter(|v| !vias.contains(v)))
                }
                _ => errors.push(("channels", format!("channels[{i}] is not a channel"))),
            }
        }
        if !errors.is_empty() {
            return Err(invalid_fields(errors));
        }
        let Some(contact) = self.deliveries.directory().contact(&r.user_id).await? else {
            return Err(Status::not_found("user not found"));
        };
        if contact.phone.is_none() {
            vias.retain(|v| *v != Via::Sms);
        }
        let kind = if r.kind.is_empty() {
            "message".to_string()
        } else {
            r.kind
        };
        let key = format!("send:{}", uuid::Uuid::now_v7());
        let mut notifications = Vec::new();
        if in_app {
            notifications.extend(
                self.deliver(&key, &r.user_id, &kind, r.title.clone(), r.body.clone())
                    .await?,
            );
        }
        let out = Outgoing {
            key: &key,
            user_id: &r.user_id,
            kind: &kind,
            title: &r.title,
            body: &r.body,
        };
        // Channels that are not configured, and push for a user without
        // subscriptions, yield no record: they are skipped.
        let records = self.deliveries.enqueue(&out, &vias).await?;
        notifications.extend(records.iter().map(|(id, r)| r.to_notification(id)));
        Ok(Response::new(SendNotificationResponse { notifications }))
    }

    async fn stream_notifications(
        &self,
        request: Request<StreamNotificationsRequest>,
    ) -> Result<Response<LiveStream>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let wanted = Arc::new(recipients(&caller));
        let receiver = self.live.subscribe();
        let sign_outs = self.signed_out.subscribe();
        // The stream lives as long as the token that opened it: then, or
        // when the user signs out, it ends with UNAUTHENTICATED, and the
        // client reconnects with a fresh token (what it missed is in the
        // feed).
        let expiry = caller.expires_at().map(|exp| {
            let left = exp.saturating_sub(platform::clock::now().secs() as u64);
            tokio::time::Instant::now() + std::time::Duration::from_secs(left)
        });
        let caller = Arc::new(caller);
        let stopping = self.stopping.clone();
        let stream = futures::stream::unfold(Some((receiver, sign_outs)), move |state| {
            let wanted = wanted.clone();
            let caller = caller.clone();
            let stopping = stopping.clone();
            async move {
                let (mut receiver, mut sign_outs) = state?;
                let expired = async {
                    match expiry {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::pin!(expired);
                loop {
                    let next = tokio::select! {
                        next = receiver.recv() => next,
                        () = &mut expired => {
                            let ended = Status::unauthenticated(
                                "the access token has expired; reconnect with a fresh one",
                            );
                            return Some((Err(ended), None));
                        }
                        () = stopping.cancelled() => {
                            let ended = Status::unavailable(
                                "notification-svc is stopping; reconnect",
                            );
                            return Some((Err(ended), None));
                        }
                        Ok(signed_out) = sign_outs.recv() => {
                            if caller.signed_out_by(&signed_out) {
                                let ended = Status::unauthenticated("signed out");
                                return Some((Err(ended), None));
                            }
                            continue;
                        }
                    };
                    match next {
                        Ok(n) if wanted.contains(&n.user_id) => {
                            return Some((
                                Ok(StreamNotificationsResponse {
                                    notification: Some(n),
                                }),
                                Some((receiver, sign_outs)),
                            ));
                        }
                        // Others' notifications; or a slow client missed some (they are in the feed).
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn register_push_subscription(
        &self,
        request: Request<RegisterPushSubscriptionRequest>,
    ) -> Result<Response<RegisterPushSubscriptionResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let r = request.into_inner();
        let keys = r.keys.unwrap_or_default();
        let mut errors = Vec::new();
        if let Err(why) =
            crate::channels::push::check_endpoint(&r.endpoint, self.allow_http_endpoints)
        {
            errors.push(("endpoint", why.to_string()));
        }
        use crate::channels::push::b64url_decode;
        if !b64url_decode(&keys.p256dh).is_some_and(|k| k.len() == 65 && k[0] == 4) {
            errors.push((
                "keys.p256dh",
                "must be an uncompressed P-256 public key, base64url".to_string(),
            ));
        }
        if b64url_decode(&keys.auth).is_none_or(|a| a.len() != 16) {
            errors.push(("keys.auth", "must be 16 bytes, base64url".to_string()));
        }
        if !errors.is_empty() {
            return Err(invalid_fields(errors));
        }
        let id = id_of(&format!("{}|{}", caller.user_id, r.endpoint));
        let subscription = Subscription {
            user_id: caller.user_id.clone(),
            endpoint: r.endpoint.clone(),
            p256dh: keys.p256dh,
            auth: keys.auth,
            created_at: platform::clock::now().millis(),
        };
        match self.subscriptions.insert(&id, subscription.clone()).await {
            Ok(_) => {}
            // The browser re-subscribed: same endpoint, maybe new keys.
            Err(StoreError::AlreadyExists { .. }) => {
                let (p256dh, auth) = (subscription.p256dh.clone(), subscription.auth.clone());
                self.subscriptions
                    .modify(&id, |s| {
                        s.p256dh = p256dh.clone();
                        s.auth = auth.clone();
                        s.created_at = subscription.created_at;
                    })
                    .await?;
            }
            Err(err) => return Err(err.into()),
        }
        // Keep the newest few: old browsers and profiles fade away.
        let older = self
            .subscriptions
            .find(
                &Query::new()
                    .eq("user_id", caller.user_id.as_str())
                    .sort("created_at", true)
                    .limit(MAX_SUBSCRIPTIONS + 20),
            )
            .await?;
        for stale in older.items.iter().skip(MAX_SUBSCRIPTIONS) {
            match self.subscriptions.delete(&stale.id, None).await {
                Ok(()) | Err(StoreError::NotFound) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(Response::new(RegisterPushSubscriptionResponse {
            subscription: Some(PushSubscription {
                id,
                user_id: caller.user_id,
                endpoint: r.endpoint,
                created_at: Some(proto::ext::from_secs(subscription.created_at / 1000)),
            }),
        }))
    }

    async fn mark_read(
        &self,
        request: Request<MarkReadRequest>,
    ) -> Result<Response<MarkReadResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let r = request.into_inner();
        let mut updated = 0;
        if r.all {
            // In bounded pages; whatever arrives meanwhile stays unread.
            for recipient in recipients(&caller) {
                for _ in 0..50 {
                    let page = self
                        .feed
                        .find(
                            &Query::new()
                                .eq("user_id", recipient.as_str())
                                .eq("state", ReadState::Unread.as_str())
                                .limit(100),
                        )
                        .await?;
                    for n in &page.items {
                        self.feed
                            .modify(&n.id, |n| n.state = ReadState::Read)
                            .await?;
                        updated += 1;
                    }
                    if page.items.len() < 100 {
                        break;
                    }
                }
            }
            return Ok(Response::new(MarkReadResponse { updated }));
        }
        for id in r.notification_ids.iter().take(100) {
            if let Ok(Some(n)) = self.feed.find_by_id(id).await
                && recipients(&caller).contains(&n.value.user_id)
                && n.value.state != ReadState::Read
            {
                self.feed.modify(id, |n| n.state = ReadState::Read).await?;
                updated += 1;
            }
        }
        Ok(Response::new(MarkReadResponse { updated }))
    }

    async fn start_promotion(
        &self,
        request: Request<StartPromotionRequest>,
    ) -> Result<Response<StartPromotionResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        caller.require_admin()?;
        let promotion = self.begin_promotion(request.into_inner()).await?;
        Ok(Response::new(StartPromotionResponse {
            promotion: Some(promotion),
        }))
    }

    async fn list_promotions(
        &self,
        request: Request<ListPromotionsRequest>,
    ) -> Result<Response<ListPromotionsResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        caller.require_admin()?;
        Ok(Response::new(ListPromotionsResponse {
            promotions: self.newest_promotions().await?,
        }))
    }

    async fn list_deliveries(
        &self,
        request: Request<ListDeliveriesRequest>,
    ) -> Result<Response<ListDeliveriesResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        caller.require_admin()?;
        let r = request.into_inner();
        if r.user_id.trim().is_empty() {
            return Err(invalid_fields([("user_id", "is required".to_string())]));
        }
        let page = self
            .deliveries
            .records
            .find(
                &Query::new()
                    .eq("user_id", r.user_id.as_str())
                    .sort("created_at", true)
                    .page(r.page.as_ref()),
            )
            .await
            .map_err(StoreError::into_list_status)?;
        Ok(Response::new(ListDeliveriesResponse {
            deliveries: page.items.iter().map(|d| d.value.to_proto(&d.id)).collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        }))
    }

    async fn get_push_key(
        &self,
        _request: Request<GetPushKeyRequest>,
    ) -> Result<Response<GetPushKeyResponse>, Status> {
        match &self.deliveries.channels.push_public_key {
            Some(key) => Ok(Response::new(GetPushKeyResponse {
                application_server_key: key.clone(),
            })),
            None => Err(Status::not_found("Web Push is not enabled")),
        }
    }
}
