//! `/api/v1/notifications*`: the feed, its live stream (SSE) and push
//! subscriptions.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use platform::ServiceId;
use proto::ext::{Required as _, ShortName as _};
use proto::notification::notification_service_client::NotificationServiceClient;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{ApiQuery, PageParams, page, rfc3339};
use super::grpc;
use crate::extract::{ApiJson, AuthUser};
use crate::problem::Problem;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationOut {
    pub id: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    /// `in_app`, `email`, `sms` or `push`.
    pub channel: String,
    pub created_at: String,
    pub read: bool,
}

impl From<proto::notification::Notification> for NotificationOut {
    fn from(n: proto::notification::Notification) -> Self {
        let channel = proto::notification::Channel::try_from(n.channel)
            .map(|c| c.short_name().to_ascii_lowercase())
            .unwrap_or_else(|_| "in_app".into());
        Self {
            id: n.id,
            kind: n.kind,
            title: n.title,
            body: n.body,
            channel,
            created_at: rfc3339(n.created_at),
            read: n.read,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationList {
    pub items: Vec<NotificationOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PushKeysIn {
    pub p256dh: String,
    pub auth: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PushSubscriptionIn {
    /// The push service URL (https).
    pub endpoint: String,
    pub keys: PushKeysIn,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PushSubscriptionOut {
    pub id: String,
    pub endpoint: String,
}

fn notifications(state: &AppState) -> NotificationServiceClient<platform::grpc::GrpcChannel> {
    NotificationServiceClient::new(state.channel(ServiceId::Notification))
}

/// The caller's notifications, newest first.
#[utoipa::path(operation_id = "list_notifications", get, path = "/api/v1/notifications", tag = "notifications", security(("bearer" = [])), params(PageParams),
    responses(
        (status = 200, description = "A page of notifications", body = NotificationList),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid parameters", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<NotificationList>, Problem> {
    let request = proto::notification::ListNotificationsRequest {
        page: Some(page(params.limit, params.cursor)?),
        unread_only: false,
    };
    let r = notifications(&state)
        .list_notifications(grpc(request, Some(&user.caller())))
        .await?
        .into_inner();
    Ok(Json(NotificationList {
        items: r
            .notifications
            .into_iter()
            .map(NotificationOut::from)
            .collect(),
        next_cursor: Some(r.next_cursor).filter(|c| !c.is_empty()),
    }))
}

/// Each new notification as it happens (`text/event-stream`, event
/// `notification` with the notification's id as the event id, JSON data),
/// with a heartbeat comment every 15 s. A client that reconnects with
/// `Last-Event-ID` first gets what it missed, oldest first, then the live
/// ones, none twice. The stream ends when the access token expires; the
/// client reconnects with a fresh one and resumes.
#[utoipa::path(get, path = "/api/v1/notifications/stream", tag = "notifications", security(("bearer" = [])),
    params(("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received: resume after it")),
    responses(
        (status = 200, description = "Server-sent events", content_type = "text/event-stream", body = String),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    resumable_stream(&state, user, last_event_id(&headers)).await
}

/// The `Last-Event-ID` a reconnecting client sends.
pub fn last_event_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
}

/// How many of the newest notifications are searched for the one a
/// reconnecting client saw last.
const RESUME_WINDOW: u32 = 100;

/// The caller's notifications as server-sent events, after `last_seen`
/// when given (see [`stream`]); pages use it too.
pub async fn resumable_stream(
    state: &AppState,
    user: AuthUser,
    last_seen: Option<String>,
) -> Result<Response, Problem> {
    let request = proto::notification::StreamNotificationsRequest {};
    let mut call = grpc(request, Some(&user.caller()));
    // A stream outlives the per-call deadline; it ends with the token.
    let left = user
        .0
        .exp
        .saturating_sub(platform::clock::now().secs() as u64);
    call.set_timeout(Duration::from_secs(left.max(1)));
    // Subscribed first: what is created from now on arrives live, what
    // came before is in the feed.
    let upstream = notifications(state)
        .stream_notifications(call)
        .await?
        .into_inner();
    let mut missed = Vec::new();
    if let Some(last) = last_seen {
        let request = proto::notification::ListNotificationsRequest {
            page: Some(page(Some(RESUME_WINDOW), None)?),
            unread_only: false,
        };
        let feed = notifications(state)
            .list_notifications(grpc(request, Some(&user.caller())))
            .await?
            .into_inner()
            .notifications;
        // Newest first: those before the last one seen are missed.
        if let Some(at) = feed.iter().position(|n| n.id == last) {
            missed = feed.into_iter().take(at).collect::<Vec<_>>();
            missed.reverse();
        }
    }
    let sent: std::collections::HashSet<String> = missed.iter().map(|n| n.id.clone()).collect();
    let backlog = futures::stream::iter(missed.into_iter().map(Ok));
    let live = upstream
        .take_while(|item| futures::future::ready(item.is_ok()))
        .filter_map(|item| futures::future::ready(item.ok().and_then(|r| r.notification)))
        .filter(move |n| futures::future::ready(!sent.contains(&n.id)))
        .map(Ok);
    let expires = tokio::time::sleep(Duration::from_secs(left));
    let events = backlog.chain(live).take_until(expires).filter_map(
        |item: Result<proto::notification::Notification, Infallible>| async move {
            let notification = item.ok()?;
            let id = notification.id.clone();
            let data = serde_json::to_string(&NotificationOut::from(notification)).ok()?;
            Some(Ok::<Event, Infallible>(
                Event::default().event("notification").id(id).data(data),
            ))
        },
    );
    Ok(Sse::new(events)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(15))
                .text("heartbeat"),
        )
        .into_response())
}

/// Store a Web Push subscription for the caller.
#[utoipa::path(post, path = "/api/v1/notifications/push-subscriptions", tag = "notifications", security(("bearer" = [])), request_body = PushSubscriptionIn,
    responses(
        (status = 201, description = "Stored", body = PushSubscriptionOut),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid subscription", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn subscribe_push(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<PushSubscriptionIn>,
) -> Result<Response, Problem> {
    let request = proto::notification::RegisterPushSubscriptionRequest {
        endpoint: body.endpoint,
        keys: Some(proto::notification::PushKeys {
            p256dh: body.keys.p256dh,
            auth: body.keys.auth,
        }),
    };
    let r = notifications(&state)
        .register_push_subscription(grpc(request, Some(&user.caller())))
        .await?
        .into_inner();
    let s = r.subscription.required("subscription")?;
    Ok((
        StatusCode::CREATED,
        Json(PushSubscriptionOut {
            id: s.id,
            endpoint: s.endpoint,
        }),
    )
        .into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PushKeyOut {
    /// VAPID public key (uncompressed P-256, base64url): the
    /// `applicationServerKey` of `PushManager.subscribe`.
    pub application_server_key: String,
}

/// The key browsers subscribe to Web Push with.
#[utoipa::path(get, path = "/api/v1/notifications/push-key", tag = "notifications",
    responses(
        (status = 200, description = "The application server key", body = PushKeyOut),
        (status = 404, description = "Web Push is not enabled", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn push_key(State(state): State<AppState>) -> Result<Json<PushKeyOut>, Problem> {
    let r = notifications(&state)
        .get_push_key(grpc(proto::notification::GetPushKeyRequest {}, None))
        .await?
        .into_inner();
    Ok(Json(PushKeyOut {
        application_server_key: r.application_server_key,
    }))
}

/// Starts a promotion for the admin page (no JSON route: promotions are
/// sent from the admin pages).
pub(crate) async fn start_promotion(
    state: &AppState,
    admin: &AuthUser,
    request: proto::notification::StartPromotionRequest,
) -> Result<proto::notification::Promotion, Problem> {
    let started = notifications(state)
        .start_promotion(grpc(request, Some(&admin.caller())))
        .await?
        .into_inner();
    started
        .promotion
        .ok_or_else(|| Problem::new(platform::ErrorKind::Internal, "no promotion in the answer"))
}

/// The newest promotions with their progress, for the admin page.
pub(crate) async fn promotions(
    state: &AppState,
    admin: &AuthUser,
) -> Result<Vec<proto::notification::Promotion>, Problem> {
    Ok(notifications(state)
        .list_promotions(grpc(
            proto::notification::ListPromotionsRequest {},
            Some(&admin.caller()),
        ))
        .await?
        .into_inner()
        .promotions)
}
