//! Live updates for the pages, as server-sent events with ids: the
//! notification feed (the API's resumable stream) and an order's status.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::pages::error_page;
use super::session::Visitor;
use crate::problem::Problem;
use crate::routes::notifications::{last_event_id, resumable_stream};
use crate::routes::{orders, shipping};
use crate::state::AppState;

/// How often an open order page's status is looked at.
const ORDER_POLL: Duration = Duration::from_secs(1);

fn unauthenticated(visitor: &Visitor) -> Response {
    error_page(
        &Problem::new(
            platform::ErrorKind::Unauthenticated,
            "sign in to follow this",
        ),
        Some(visitor),
    )
}

#[derive(Debug, Deserialize, Default)]
pub struct AfterQuery {
    /// The newest notification the page showed: the first connection
    /// resumes after it (a reconnection sends `Last-Event-ID`).
    after: Option<String>,
}

pub async fn notification_events(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    Query(query): Query<AfterQuery>,
) -> Response {
    let Some(user) = visitor.user.clone() else {
        return unauthenticated(&visitor);
    };
    let last = last_event_id(&headers).or(query.after.filter(|a| !a.is_empty() && a.len() <= 128));
    match resumable_stream(&state, user, last).await {
        Ok(response) => response,
        Err(problem) => error_page(&problem, Some(&visitor)),
    }
}

/// Statuses after which an order no longer changes.
const FINAL: &[&str] = &["DELIVERED", "CANCELLED", "REFUNDED"];

/// An order's status (and its shipment's) each time it changes, event
/// `status` with id `<order status>/<shipment status>`; a reconnecting
/// page that saw the current one gets nothing until the next change. The
/// stream ends at a final status or when the session's token expires.
pub async fn order_events(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(user) = visitor.user.clone() else {
        return unauthenticated(&visitor);
    };
    // Unknown or someone else's: 404 now rather than an empty stream.
    if let Err(problem) = orders::get(State(state.clone()), user.clone(), Path(id.clone())).await {
        return error_page(&problem, Some(&visitor));
    }
    let seen = last_event_id(&headers);
    let left = Duration::from_secs(
        user.0
            .exp
            .saturating_sub(platform::clock::now().secs() as u64),
    );
    let events = futures::stream::unfold(
        (state, user, id, seen, false),
        |(state, user, id, mut seen, done)| async move {
            if done {
                return None;
            }
            loop {
                let order = orders::get(State(state.clone()), user.clone(), Path(id.clone())).await;
                let Ok(order) = order else {
                    tokio::time::sleep(ORDER_POLL).await;
                    continue;
                };
                let status = order.0.status.clone();
                let shipment =
                    match shipping::shipment(State(state.clone()), user.clone(), Path(id.clone()))
                        .await
                    {
                        Ok(s) => s.0.status.clone(),
                        Err(_) => String::new(),
                    };
                let event_id = format!("{status}/{shipment}");
                if seen.as_deref() != Some(event_id.as_str()) {
                    let data = serde_json::json!({ "status": status, "shipment_status": shipment });
                    let event = Event::default()
                        .event("status")
                        .id(event_id.clone())
                        .data(data.to_string());
                    let last = FINAL.contains(&status.as_str());
                    seen = Some(event_id);
                    return Some((
                        Ok::<Event, Infallible>(event),
                        (state, user, id, seen, last),
                    ));
                }
                tokio::time::sleep(ORDER_POLL).await;
            }
        },
    );
    let events = futures::StreamExt::take_until(events, tokio::time::sleep(left));
    Sse::new(events)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(15))
                .text("heartbeat"),
        )
        .into_response()
}
