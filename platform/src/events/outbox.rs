//! Reliable publishing through an outbox kept inside the document.
//!
//! A write that must emit an event stages it in the document's [`Outbox`]
//! and stores both in one atomic (CAS) write, so the change and the event
//! exist together or not at all. [`OutboxRelay::flush`] then publishes the
//! staged events and removes them from the document; a sweeper
//! ([`OutboxRelay::spawn_sweeper`]) republishes whatever a crash left
//! behind, at start and periodically. An event published twice (a crash
//! between publish and clear) carries the same id, so JetStream drops the
//! copy within its window and idempotent consumers ignore it after.
//!
//! Collections with an outbox declare [`outbox_index`] so the sweeper finds
//! documents with pending events without a scan.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use prost::Message as _;
use proto::events::Envelope;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{BusError, EventBus};
use crate::store::{Bound, Collection, FieldType, IndexSpec, Query, StoreError, Versioned};

/// Events staged in a document, waiting to be published.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbox {
    /// Number of staged events (indexed: the sweeper looks for `count > 0`).
    pub count: i64,
    pub events: Vec<StagedEvent>,
}

/// One staged event: its id and the encoded envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedEvent {
    pub id: String,
    /// Base64 of the protobuf `Envelope`.
    pub envelope: String,
}

impl Outbox {
    /// Stages `envelope`, to be stored with the document's next write.
    pub fn stage(&mut self, envelope: &Envelope) {
        self.events.push(StagedEvent {
            id: envelope.id.clone(),
            envelope: STANDARD.encode(envelope.encode_to_vec()),
        });
        self.count = self.events.len() as i64;
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    fn remove(&mut self, ids: &[String]) {
        self.events.retain(|e| !ids.contains(&e.id));
        self.count = self.events.len() as i64;
    }
}

/// Documents that carry an outbox.
pub trait HasOutbox {
    fn outbox(&self) -> &Outbox;
    fn outbox_mut(&mut self) -> &mut Outbox;
}

/// The index every collection with an outbox declares (field `outbox`).
pub fn outbox_index() -> IndexSpec {
    IndexSpec::new("outbox.count", FieldType::Int)
}

/// Why a flush did not complete. Whatever was not cleared stays staged and
/// the sweeper retries it.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("staged event {0} does not decode")]
    Corrupt(String),
}

/// Publishes and clears the staged events of one collection.
pub struct OutboxRelay<T> {
    collection: Collection<T>,
    bus: Arc<dyn EventBus>,
}

impl<T> std::fmt::Debug for OutboxRelay<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("collection", &self.collection)
            .finish()
    }
}

impl<T> Clone for OutboxRelay<T> {
    fn clone(&self) -> Self {
        Self {
            collection: self.collection.clone(),
            bus: self.bus.clone(),
        }
    }
}

impl<T> OutboxRelay<T>
where
    T: HasOutbox + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    pub fn new(collection: Collection<T>, bus: Arc<dyn EventBus>) -> Self {
        Self { collection, bus }
    }

    /// After a write that staged events: publishes them now, or leaves them
    /// to the sweeper (which retries) when the bus or store fails, saying so.
    pub async fn flush_or_defer(&self, id: &str) {
        if let Err(err) = self.flush(id).await {
            self.deferred(id, &err);
        }
    }

    /// [`OutboxRelay::flush_or_defer`] for the document a write just
    /// returned: no read first. Returns the latest copy this process holds:
    /// the document after the clear, or as given when publishing was
    /// deferred (or the document was deleted meanwhile).
    pub async fn flush_or_defer_written(&self, doc: Versioned<T>) -> Versioned<T> {
        let id = doc.id.clone();
        match self.flush_written(doc).await {
            Ok((_, latest)) => latest,
            Err((err, doc)) => {
                self.deferred(&id, &err);
                doc
            }
        }
    }

    fn deferred(&self, id: &str, err: &RelayError) {
        tracing::warn!(
            error = %err,
            collection = self.collection.name(),
            document = id,
            "event publish deferred to the outbox sweeper"
        );
    }

    /// Publishes the staged events of document `id` in order, then removes
    /// them from it. Returns how many were published.
    pub async fn flush(&self, id: &str) -> Result<usize, RelayError> {
        let doc = match self.collection.get(id).await {
            Ok(doc) => doc,
            Err(StoreError::NotFound) => return Ok(0),
            Err(err) => return Err(err.into()),
        };
        self.flush_written(doc)
            .await
            .map(|(published, _)| published)
            .map_err(|(err, _)| err)
    }

    /// Publishes the staged events of `doc` (a copy the caller holds), then
    /// removes them with a CAS from that copy's version, reading again only
    /// when another write came first. Returns how many were published and
    /// the latest copy (after the clear; the copy given if the document was
    /// deleted); on failure, the error and the copy given.
    async fn flush_written(
        &self,
        doc: Versioned<T>,
    ) -> Result<(usize, Versioned<T>), (RelayError, Versioned<T>)> {
        let staged = doc.value.outbox().events.clone();
        if staged.is_empty() {
            return Ok((0, doc));
        }
        for event in &staged {
            let envelope = match STANDARD
                .decode(&event.envelope)
                .ok()
                .and_then(|bytes| Envelope::decode(bytes.as_slice()).ok())
            {
                Some(envelope) => envelope,
                None => return Err((RelayError::Corrupt(event.id.clone()), doc)),
            };
            if let Err(err) = self.bus.publish(&envelope).await {
                return Err((err.into(), doc));
            }
        }
        let ids: Vec<String> = staged.iter().map(|e| e.id.clone()).collect();
        let given = doc.clone();
        match self
            .collection
            .modify_from(doc, |doc| doc.outbox_mut().remove(&ids))
            .await
        {
            Ok(cleared) => Ok((staged.len(), cleared)),
            Err(StoreError::NotFound) => Ok((staged.len(), given)),
            Err(err) => Err((err.into(), given)),
        }
    }

    /// Flushes every document that still has staged events. Returns how
    /// many events were published.
    pub async fn sweep(&self) -> Result<usize, RelayError> {
        let query = Query::new()
            .range("outbox.count", Some(Bound::Exclusive(0.into())), None)
            .limit(100);
        let mut published = 0;
        let mut cursor = None;
        let (mut pending, mut oldest) = (0usize, None::<i64>);
        loop {
            let page = self.collection.find(&query.clone().after(cursor)).await?;
            for doc in page.items {
                let events = &doc.value.outbox().events;
                pending += events.len();
                for event in events {
                    let occurred = STANDARD
                        .decode(&event.envelope)
                        .ok()
                        .and_then(|bytes| Envelope::decode(bytes.as_slice()).ok())
                        .and_then(|envelope| envelope.occurred_at)
                        .map(|at| at.seconds);
                    if let Some(at) = occurred {
                        oldest = Some(oldest.map_or(at, |o| o.min(at)));
                    }
                }
                published += self.flush_written(doc).await.map_err(|(err, _)| err)?.0;
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        // What this sweep found waiting: a backlog that stays, or grows
        // old, means events are not getting out.
        let collection = &self.collection.spec().name;
        crate::metrics::OUTBOX_PENDING
            .with_label_values(&[collection])
            .set(pending as i64);
        let now = crate::clock::now().secs();
        crate::metrics::OUTBOX_OLDEST_AGE
            .with_label_values(&[collection])
            .set(oldest.map_or(0, |at| (now - at).max(0)));
        Ok(published)
    }

    /// Sweeps now and then every `interval` until `cancel`, on whichever
    /// replica holds the lease `outbox.<collection>`; failures are logged
    /// and retried on the next round.
    pub fn spawn_sweeper(
        &self,
        interval: Duration,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let relay = self.clone();
        crate::runtime::spawn_leased(
            format!("outbox.{}", self.collection.spec().name),
            self.collection.store().clone(),
            interval,
            cancel,
            move || {
                let relay = relay.clone();
                async move {
                    let published = relay.sweep().await?;
                    if published > 0 {
                        tracing::info!(published, "outbox sweeper republished staged events");
                    }
                    Ok::<_, RelayError>(())
                }
            },
        )
    }
}
