//! Idempotent consumption: each event applied once per consumer, however
//! often it is delivered.
//!
//! [`Idempotent`] wraps a handler and records the ids it processed in the
//! consumer's own store, for much longer than the JetStream dedup window
//! (7 days by default, pruned by [`Idempotent::prune`]). A redelivered or
//! republished event whose id is recorded is acked without running the
//! handler again.
//!
//! The record is written after the handler succeeds, so a crash in between
//! runs the handler again on redelivery: handlers still make their own
//! writes safe to repeat (CAS on state, keyed ids), and this wrapper keeps
//! the repeat rare and cheap.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Delivery, Handler, HandlerError};
use crate::store::{
    Bound, Collection, CollectionSpec, FieldType, IndexSpec, Query, Store, StoreError,
};

/// How long processed ids are remembered.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Processed {
    pub consumer: String,
    pub event_id: String,
    /// Unix milliseconds.
    pub processed_at: i64,
}

pub fn processed_spec() -> CollectionSpec {
    CollectionSpec::new("processed_events").index(IndexSpec::new("processed_at", FieldType::Int))
}

fn retryable(err: StoreError) -> HandlerError {
    HandlerError::from_store(&err).context("recording processed events")
}

/// A handler that skips events it has already processed.
pub struct Idempotent {
    inner: Arc<dyn Handler>,
    processed: Collection<Processed>,
}

impl Idempotent {
    pub async fn new(store: &Store, inner: Arc<dyn Handler>) -> Result<Arc<Self>, StoreError> {
        let processed = store.collection(processed_spec()).await?;
        Ok(Arc::new(Self { inner, processed }))
    }

    fn key(delivery: &Delivery) -> String {
        format!("{}:{}", delivery.consumer, delivery.envelope.id)
    }

    /// Forgets ids processed longer than `retention` ago.
    pub async fn prune(&self, retention: Duration) -> Result<usize, StoreError> {
        let cutoff = crate::clock::now().millis() - retention.as_millis() as i64;
        let query = Query::new()
            .range("processed_at", None, Some(Bound::Inclusive(cutoff.into())))
            .limit(500);
        let mut removed = 0;
        loop {
            let page = self.processed.find(&query).await?;
            if page.items.is_empty() {
                return Ok(removed);
            }
            for doc in page.items {
                match self.processed.delete(&doc.id, None).await {
                    Ok(()) | Err(StoreError::NotFound) => removed += 1,
                    Err(err) => return Err(err),
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Handler for Idempotent {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let key = Self::key(delivery);
        if self
            .processed
            .find_by_id(&key)
            .await
            .map_err(retryable)?
            .is_some()
        {
            tracing::debug!(event = %delivery.envelope.id, "already processed; skipping");
            return Ok(());
        }
        self.inner.handle(delivery).await?;
        let record = Processed {
            consumer: delivery.consumer.clone(),
            event_id: delivery.envelope.id.clone(),
            processed_at: crate::clock::now().millis(),
        };
        match self.processed.insert(&key, record).await {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(err) => Err(retryable(err)),
        }
    }
}
