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

//!
//! The stored records and retry settings are in `record`, the user
//! lookup in `directory`, the dispatcher in `worker`.

mod directory;
mod record;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use platform::store::{Collection, CollectionSpec, FieldType, IndexSpec, Query, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};

use crate::channels::Channels;
use crate::domain::{State, Via};

pub use directory::{Contact, Directory};
pub(crate) use record::id_of;
pub use record::{Record, RetryPolicy, spec};

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

/// A browser's Web Push subscription (RFC 8030), one of a user's
/// devices.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subscription {
    pub user_id: String,
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
    pub created_at: i64,
}

pub fn subscriptions_spec() -> CollectionSpec {
    CollectionSpec::new("push_subscriptions")
        .index(IndexSpec::new("user_id", FieldType::String))
        .index(IndexSpec::new("created_at", FieldType::Int))
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
        let now = platform::clock::now().millis();
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
}

#[cfg(test)]
mod tests;
