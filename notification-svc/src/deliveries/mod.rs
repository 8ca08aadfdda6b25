//! Deliveries over email, SMS and Web Push.
//!
//! Each notification gets one stored record per outside channel (per
//! subscription for push), written idempotently under a key derived from
//! the event, so a redelivered event adds nothing. A dispatcher claims due
//! records with a compare-and-swap (the claim pushes `next_attempt_at` a
//! lease ahead, so a replica that dies mid-send leaves the record to be
//! retried, and two replicas never send the same attempt), sends, and
//! records the outcome: sent, skipped, retried later with exponential
//! backoff, or failed for good. Every channel has its own bound on sends in
//! flight: a slow or failing channel never holds up the others.
//!
//! Delivery is at least once: a crash between the provider accepting a
//! message and the record being updated sends it again on the retry (email
//! carries a stable Message-ID and push a stable id for receivers to
//! drop duplicates).

use std::sync::Arc;
use std::time::Duration;

use platform::grpc::GrpcChannel;
use platform::store::{Bound, Collection, CollectionSpec, FieldType, IndexSpec, Query, StoreError};
use proto::user::GetUserRequest;
use proto::user::user_service_client::UserServiceClient;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};
use tonic::Status;

use crate::api::Subscription;
use crate::channels::{Channels, Message, SendError, Target};
use crate::domain::{self, Outcome, State, Via};

/// How long a claimed attempt may take before another dispatcher may retry it.
const LEASE: Duration = Duration::from_secs(120);
/// Sends in flight per channel.
const PER_CHANNEL_IN_FLIGHT: usize = 16;
/// Records claimed per channel and pass, at most.
const BATCH: usize = 64;
/// Push subscriptions kept per user (the newest; browsers re-subscribe).
pub const MAX_SUBSCRIPTIONS: usize = 10;
/// Finished records (sent, failed, skipped) are kept this long.
pub const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often old records are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Records deleted per prune pass, at most.
const PRUNE_BATCH: usize = 500;

/// One notification's delivery over one channel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub user_id: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    /// `email`, `sms` or `push`.
    pub channel: String,
    /// Push only: which subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// `pending`, `sent`, `failed` or `skipped`.
    pub state: String,
    pub attempts: u32,
    /// Unix ms: when a pending record is due (or its claim expires).
    pub next_attempt_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub fn spec() -> CollectionSpec {
    CollectionSpec::new("deliveries")
        .index(IndexSpec::new("user_id", FieldType::String))
        .index(IndexSpec::new("state", FieldType::String))
        .index(IndexSpec::new("channel", FieldType::String))
        .index(IndexSpec::new("next_attempt_at", FieldType::Int))
        .index(IndexSpec::new("created_at", FieldType::Int))
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A stable id from a key: 32 hex digits of its SHA-256.
pub(crate) fn id_of(key: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

impl Record {
    pub fn to_proto(&self, id: &str) -> proto::notification::Delivery {
        let state = State::parse(&self.state);
        proto::notification::Delivery {
            id: id.to_string(),
            user_id: self.user_id.clone(),
            kind: self.kind.clone(),
            title: self.title.clone(),
            channel: Via::parse(&self.channel).map_or(0, |v| v.proto() as i32),
            state: state.proto() as i32,
            attempts: self.attempts,
            last_error: self.last_error.clone().unwrap_or_default(),
            created_at: Some(timestamp(self.created_at)),
            updated_at: Some(timestamp(self.updated_at)),
            next_attempt_at: (state == State::Pending).then(|| timestamp(self.next_attempt_at)),
        }
    }

    /// The notification as the caller of SendNotification sees it.
    pub fn to_notification(&self, id: &str) -> proto::notification::Notification {
        proto::notification::Notification {
            id: id.to_string(),
            user_id: self.user_id.clone(),
            kind: self.kind.clone(),
            title: self.title.clone(),
            body: self.body.clone(),
            channel: Via::parse(&self.channel).map_or(0, |v| v.proto() as i32),
            created_at: Some(timestamp(self.created_at)),
            read: false,
        }
    }
}

/// Where to reach a user, from user-svc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub email: String,
    pub name: String,
    pub phone: Option<String>,
}

/// Looks users up in user-svc, as the notification service.
#[derive(Debug, Clone)]
pub struct Directory {
    users: UserServiceClient<GrpcChannel>,
    mesh: platform::auth::MeshAuth,
}

impl Directory {
    pub fn new(channel: GrpcChannel, mesh: platform::auth::MeshAuth) -> Directory {
        Directory {
            users: UserServiceClient::new(channel),
            mesh,
        }
    }

    /// The user's contact details; None if there is no such user.
    pub async fn contact(&self, user_id: &str) -> Result<Option<Contact>, Status> {
        let request = self.mesh.request(GetUserRequest {
            user_id: user_id.to_string(),
        });
        match self.users.clone().get_user(request).await {
            Ok(response) => Ok(response.into_inner().user.map(|u| Contact {
                email: u.email,
                name: u.name,
                phone: u.phone.filter(|p| !p.is_empty()),
            })),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(status),
        }
    }
}

/// Retry settings.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max_attempts: u32,
}

#[derive(Debug, Clone)]
pub struct Deliveries {
    pub(crate) records: Collection<Record>,
    pub(crate) subscriptions: Collection<Subscription>,
    pub(crate) channels: Channels,
    directory: Directory,
    retry: RetryPolicy,
    wake: Arc<Notify>,
    in_flight: Arc<[Arc<Semaphore>; 3]>,
}

fn slot(via: Via) -> usize {
    match via {
        Via::Email => 0,
        Via::Sms => 1,
        Via::Push => 2,
    }
}

/// What to enqueue.
pub struct Outgoing<'a> {
    /// Idempotency key: the event id and recipient, or a send id.
    pub key: &'a str,
    pub user_id: &'a str,
    pub kind: &'a str,
    pub title: &'a str,
    pub body: &'a str,
}

impl Deliveries {
    pub fn new(
        records: Collection<Record>,
        subscriptions: Collection<Subscription>,
        channels: Channels,
        directory: Directory,
        retry: RetryPolicy,
    ) -> Deliveries {
        Deliveries {
            records,
            subscriptions,
            channels,
            directory,
            retry,
            wake: Arc::new(Notify::new()),
            in_flight: Arc::new(std::array::from_fn(|_| {
                Arc::new(Semaphore::new(PER_CHANNEL_IN_FLIGHT))
            })),
        }
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Stores one pending record per configured channel in `vias` (one per
    /// push subscription), once per key, and wakes the dispatcher. Returns
    /// the records that exist for the key, new or not.
    pub async fn enqueue(
        &self,
        out: &Outgoing<'_>,
        vias: &[Via],
    ) -> Result<Vec<(String, Record)>, StoreError> {
        let now = now_ms();
        let record = |via: Via, subscription_id: Option<String>| Record {
            user_id: out.user_id.to_string(),
            kind: out.kind.to_string(),
            title: out.title.to_string(),
            body: out.body.to_string(),
            channel: via.name().to_string(),
            subscription_id,
            state: State::Pending.name().to_string(),
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            created_at: now,
            updated_at: now,
        };
        let mut wanted = Vec::new();
        for &via in vias {
            if self.channels.get(via).is_none() {
                continue;
            }
            if via == Via::Push {
                let subscriptions = self
                    .subscriptions
                    .find(
                        &Query::new()
                            .eq("user_id", out.user_id)
                            .sort("created_at", true)
                            .limit(MAX_SUBSCRIPTIONS),
                    )
                    .await?;
                for s in subscriptions.items {
                    let id = id_of(&format!("{}|push|{}", out.key, s.id));
                    wanted.push((id, record(via, Some(s.id))));
                }
            } else {
                wanted.push((
                    id_of(&format!("{}|{}", out.key, via.name())),
                    record(via, None),
                ));
            }
        }
        let mut stored = Vec::with_capacity(wanted.len());
        for (id, r) in wanted {
            match self.records.insert(&id, r.clone()).await {
                Ok(_) => stored.push((id, r)),
                Err(StoreError::AlreadyExists { .. }) => {
                    let existing = self.records.get(&id).await?;
                    stored.push((id, existing.value));
                }
                Err(err) => return Err(err),
            }
        }
        if !stored.is_empty() {
            self.wake.notify_one();
        }
        Ok(stored)
    }

    /// Runs the dispatcher until `cancel`.
    pub async fn run(self, cancel: platform::runtime::CancellationToken) {
        let idle = self.retry.base.min(Duration::from_secs(1));
        let mut next_prune = tokio::time::Instant::now();
        loop {
            if cancel.is_cancelled() {
                return;
            }
            if tokio::time::Instant::now() >= next_prune {
                next_prune += PRUNE_EVERY;
                let cutoff = now_ms() - RETENTION.as_millis() as i64;
                match self.prune(cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "pruned old delivery records"),
                    Err(err) => tracing::warn!(error = %err, "could not prune delivery records"),
                }
            }
            let busy = match self.dispatch_due().await {
                Ok(busy) => busy,
                Err(err) => {
                    tracing::warn!(error = %err, "could not read due deliveries");
                    false
                }
            };
            if busy {
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(idle) => {}
            }
        }
    }

    /// Deletes finished records created before `cutoff_ms` (a bounded
    /// number per call; the next pass takes the rest). Pending ones stay.
    pub async fn prune(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        let mut deleted = 0;
        for state in [State::Sent, State::Failed, State::Skipped] {
            while deleted < PRUNE_BATCH {
                let page = self
                    .records
                    .find(
                        &Query::new()
                            .eq("state", state.name())
                            .range("created_at", None, Some(Bound::Exclusive(cutoff_ms.into())))
                            .limit(100),
                    )
                    .await?;
                for item in &page.items {
                    match self.records.delete(&item.id, Some(item.version)).await {
                        Ok(()) => deleted += 1,
                        Err(StoreError::NotFound) | Err(StoreError::VersionConflict) => {}
                        Err(err) => return Err(err),
                    }
                }
                if page.items.len() < 100 {
                    break;
                }
            }
        }
        Ok(deleted)
    }

    /// Claims and starts due attempts; true if a full batch was claimed
    /// (more may be due right away).
    async fn dispatch_due(&self) -> Result<bool, StoreError> {
        let mut claimed = 0;
        // Each channel reads its own due records, as many as it has free
        // send slots: a backlog on one never hides the others' records.
        for via in [Via::Email, Via::Sms, Via::Push] {
            if self.channels.get(via).is_none() {
                continue;
            }
            let free = self.in_flight[slot(via)].available_permits().min(BATCH);
            if free == 0 {
                continue;
            }
            let now = now_ms();
            let due = self
                .records
                .find(
                    &Query::new()
                        .eq("state", State::Pending.name())
                        .eq("channel", via.name())
                        .range("next_attempt_at", None, Some(Bound::Inclusive(now.into())))
                        .sort("next_attempt_at", false)
                        .limit(free),
                )
                .await?;
            for item in due.items {
                let Ok(permit) = self.in_flight[slot(via)].clone().try_acquire_owned() else {
                    break;
                };
                let mut record = item.value;
                record.attempts += 1;
                record.next_attempt_at = now + LEASE.as_millis() as i64;
                record.updated_at = now;
                match self
                    .records
                    .replace(&item.id, item.version, record.clone())
                    .await
                {
                    Ok(_) => {}
                    // Another dispatcher took it.
                    Err(StoreError::VersionConflict) | Err(StoreError::NotFound) => continue,
                    Err(err) => return Err(err),
                }
                claimed += 1;
                let this = self.clone();
                tokio::spawn(async move {
                    // The lease must outlast the attempt, or another
                    // dispatcher would send it again.
                    let outcome =
                        tokio::time::timeout(LEASE / 2, this.attempt(&item.id, via, &record))
                            .await
                            .unwrap_or_else(|_| Outcome::Retryable("the attempt timed out".into()));
                    this.finish(&item.id, record.attempts, outcome).await;
                    drop(permit);
                    // A slot is free: more may go out now.
                    this.wake.notify_one();
                });
            }
        }
        Ok(claimed > 0)
    }

    async fn attempt(&self, id: &str, via: Via, record: &Record) -> Outcome {
        let Some(channel) = self.channels.get(via) else {
            return Outcome::Skipped(format!("the {} channel is not configured", via.name()));
        };
        let target = match self.target(via, record).await {
            Ok(target) => target,
            Err(outcome) => return outcome,
        };
        let message = Message {
            id,
            kind: &record.kind,
            title: &record.title,
            body: &record.body,
        };
        match channel.send(&target, message).await {
            Ok(()) => Outcome::Sent,
            Err(SendError::Retryable(e)) => Outcome::Retryable(e),
            Err(SendError::Permanent(e)) => Outcome::Permanent(e),
            Err(SendError::Gone(e)) => {
                if let Some(subscription) = &record.subscription_id {
                    match self.subscriptions.delete(subscription, None).await {
                        Ok(()) | Err(StoreError::NotFound) => {}
                        Err(err) => {
                            tracing::warn!(error = %err, "could not remove a dead push subscription")
                        }
                    }
                }
                Outcome::Permanent(e)
            }
        }
    }

    /// Where this record goes now (contacts are read at send time, so a
    /// changed email or phone number is used).
    async fn target(&self, via: Via, record: &Record) -> Result<Target, Outcome> {
        if via == Via::Push {
            let id = record.subscription_id.as_deref().unwrap_or_default();
            return match self.subscriptions.find_by_id(id).await {
                Ok(Some(s)) => Ok(Target::Push {
                    endpoint: s.value.endpoint,
                    p256dh: s.value.p256dh,
                    auth: s.value.auth,
                }),
                Ok(None) => Err(Outcome::Skipped("the push subscription was removed".into())),
                Err(err) => Err(Outcome::Retryable(format!(
                    "reading the subscription: {err}"
                ))),
            };
        }
        let contact = match self.directory.contact(&record.user_id).await {
            Ok(Some(contact)) => contact,
            Ok(None) => return Err(Outcome::Permanent("no such user".into())),
            Err(status) => {
                return Err(Outcome::Retryable(format!(
                    "looking up the user: {}",
                    status.message()
                )));
            }
        };
        match (via, contact.phone) {
            (Via::Sms, Some(phone)) => Ok(Target::Sms { phone }),
            (Via::Sms, None) => Err(Outcome::Skipped("the user has no phone number".into())),
            _ => Ok(Target::Email {
                address: contact.email,
                name: contact.name,
            }),
        }
    }

    async fn finish(&self, id: &str, attempts: u32, outcome: Outcome) {
        let state = domain::after_attempt(&outcome, attempts, self.retry.max_attempts);
        let jitter =
            f64::from(u8::from_str_radix(&id_of(&format!("{id}{attempts}"))[..2], 16).unwrap_or(0))
                / 255.0;
        let delay = domain::retry_delay(attempts, self.retry.base, jitter);
        let error = match &outcome {
            Outcome::Sent => None,
            Outcome::Skipped(e) | Outcome::Retryable(e) | Outcome::Permanent(e) => Some(e.clone()),
        };
        // Provider messages often repeat the address or phone number: they
        // stay in the record (ListDeliveries, admins only), not in logs.
        match &outcome {
            Outcome::Sent => tracing::info!(delivery = id, attempts, "delivered"),
            Outcome::Skipped(_) => tracing::info!(delivery = id, "delivery skipped"),
            Outcome::Retryable(_) if state == State::Pending => tracing::warn!(
                delivery = id,
                attempts,
                retry_in_ms = delay.as_millis() as u64,
                "delivery failed, will retry"
            ),
            Outcome::Retryable(_) | Outcome::Permanent(_) => {
                tracing::error!(delivery = id, attempts, "delivery failed for good")
            }
        }
        let result = self
            .records
            .update(id, |r| {
                // A newer claim (after our lease expired) owns the record now.
                if r.attempts != attempts || r.state != State::Pending.name() {
                    return Err(());
                }
                let now = now_ms();
                r.state = state.name().to_string();
                r.last_error = error.clone();
                r.updated_at = now;
                if state == State::Pending {
                    r.next_attempt_at = now + delay.as_millis() as i64;
                }
                Ok(())
            })
            .await;
        if let Ok(Ok(record)) = &result {
            let counted = match (&outcome, state) {
                (Outcome::Retryable(_), State::Pending) => "retry",
                (Outcome::Sent, _) => "sent",
                (Outcome::Skipped(_), _) => "skipped",
                _ => "failed",
            };
            platform::metrics::count(
                &platform::metrics::DELIVERIES,
                &[&record.value.channel, counted],
            );
        }
        if let Err(err) = result {
            // The lease runs out and the attempt is made again.
            tracing::warn!(delivery = id, error = %err, "could not record a delivery outcome");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::store::Store;

    async fn deliveries() -> Deliveries {
        let store = Store::memory();
        let nowhere = platform::grpc::channel(
            &platform::PeerAddr::from_socket(([127, 0, 0, 1], 1).into()),
            &platform::config::GrpcSettings::default(),
        )
        .unwrap();
        Deliveries::new(
            store.collection(spec()).await.unwrap(),
            store
                .collection(crate::api::subscriptions_spec())
                .await
                .unwrap(),
            Channels::default(),
            Directory::new(
                nowhere,
                platform::auth::MeshAuth::keyless("notification-svc"),
            ),
            RetryPolicy {
                base: Duration::from_secs(1),
                max_attempts: 3,
            },
        )
    }

    fn record(state: State, created_at: i64) -> Record {
        Record {
            user_id: "u1".into(),
            kind: "order.created".into(),
            title: "t".into(),
            body: "b".into(),
            channel: "email".into(),
            subscription_id: None,
            state: state.name().into(),
            attempts: 1,
            next_attempt_at: created_at,
            last_error: None,
            created_at,
            updated_at: created_at,
        }
    }

    #[tokio::test]
    async fn pruning_removes_old_finished_records_and_keeps_pending_and_recent_ones() {
        let d = deliveries().await;
        let rows = [
            ("old-sent", State::Sent, 1_000),
            ("old-failed", State::Failed, 1_000),
            ("old-skipped", State::Skipped, 1_000),
            ("old-pending", State::Pending, 1_000),
            ("new-sent", State::Sent, 9_000),
        ];
        for (id, state, at) in rows {
            d.records.insert(id, record(state, at)).await.unwrap();
        }
        assert_eq!(d.prune(5_000).await.unwrap(), 3);
        for (id, _, _) in rows {
            let kept = d.records.find_by_id(id).await.unwrap().is_some();
            assert_eq!(kept, id == "old-pending" || id == "new-sent", "{id}");
        }
        assert_eq!(d.prune(5_000).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn channels_that_are_not_configured_get_no_records() {
        let d = deliveries().await;
        let out = Outgoing {
            key: "evt-1:u1",
            user_id: "u1",
            kind: "payment.failed",
            title: "t",
            body: "b",
        };
        let stored = d
            .enqueue(&out, &[Via::Email, Via::Sms, Via::Push])
            .await
            .unwrap();
        assert!(stored.is_empty(), "{stored:?}");
    }
}
