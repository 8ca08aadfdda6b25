//! The service's collections: the interaction log (orders folded from
//! events, user profiles with preferences, ratings and imports), trained
//! models (metadata plus the artifact in chunks) and the training lease.
//!
//! Every write is one document with compare-and-swap, so replicas on one
//! database share the log, the models and the lease.

//!
//! The training lease is in `lease`, stored models and the current
//! pointer in `artifact`.

mod artifact;
mod lease;

use std::collections::BTreeMap;

use platform::store::{Collection, CollectionSpec, FieldType, IndexSpec, Query, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::domain::{OrderFact, OrderRecord, Profile};

pub use artifact::CHUNK_BYTES;

pub fn orders() -> CollectionSpec {
    CollectionSpec::new("orders").index(IndexSpec::new("user_id", FieldType::String).optional())
}

pub fn profiles() -> CollectionSpec {
    CollectionSpec::new("profiles")
}

pub fn models() -> CollectionSpec {
    CollectionSpec::new("models")
}

pub fn model_chunks() -> CollectionSpec {
    CollectionSpec::new("model_chunks")
}

pub fn control() -> CollectionSpec {
    CollectionSpec::new("control")
}

/// Metadata of a stored model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub version: String,
    pub algorithm: String,
    /// Unix milliseconds.
    pub trained_at: i64,
    pub interactions: u64,
    pub products: u64,
    pub users: u64,
    pub metrics: BTreeMap<String, f64>,
    /// Chunks of the artifact, `model_chunks` ids `<version>:<n>`.
    pub chunks: u32,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Chunk {
    data: String,
}

/// The lease on training (one run at a time across replicas) or the
/// pointer to the current model, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    /// Lease: the replica holding it; empty when free.
    #[serde(default)]
    pub holder: String,
    /// Lease: the version being trained. Pointer: the current version.
    #[serde(default)]
    pub version: String,
    /// Lease: unix milliseconds after which it is free again.
    #[serde(default)]
    pub expires_at: i64,
}

/// Typed access to the service's data.
#[derive(Debug, Clone)]
pub struct RecStore {
    pub orders: Collection<OrderRecord>,
    pub profiles: Collection<Profile>,
    pub models: Collection<ModelMeta>,
    chunks: Collection<Chunk>,
    control: Collection<Control>,
}

impl RecStore {
    pub async fn open(store: &Store) -> Result<RecStore, StoreError> {
        Ok(RecStore {
            orders: store.collection(orders()).await?,
            profiles: store.collection(profiles()).await?,
            models: store.collection(models()).await?,
            chunks: store.collection(model_chunks()).await?,
            control: store.collection(control()).await?,
        })
    }

    /// Folds an order fact into its record (creating it if needed). An
    /// order's first fact is nearly always its creation, which tries the
    /// insert first: one write and no read.
    pub async fn apply_order(&self, order_id: &str, fact: &OrderFact) -> Result<(), StoreError> {
        let likely_new = matches!(fact, OrderFact::Created { .. });
        upsert(&self.orders, order_id, likely_new, |r| {
            r.apply(fact);
        })
        .await
    }

    /// Changes a user's profile (creating it if needed).
    pub async fn update_profile(
        &self,
        user_id: &str,
        change: impl FnMut(&mut Profile) + Send,
    ) -> Result<Profile, StoreError> {
        upsert(&self.profiles, user_id, false, change).await?;
        self.profile(user_id).await
    }

    pub async fn profile(&self, user_id: &str) -> Result<Profile, StoreError> {
        Ok(self
            .profiles
            .find_by_id(user_id)
            .await?
            .map(|d| d.value)
            .unwrap_or_default())
    }

    /// A user's orders (newest 1000 are plenty for a history).
    pub async fn orders_of(&self, user_id: &str) -> Result<Vec<OrderRecord>, StoreError> {
        let page = self
            .orders
            .find(&Query::new().eq("user_id", user_id).limit(1000))
            .await?;
        Ok(page.items.into_iter().map(|d| d.value).collect())
    }

    /// Every document of a collection, page by page.
    pub async fn scan<T>(
        collection: &Collection<T>,
        mut each: impl FnMut(String, T),
    ) -> Result<(), StoreError>
    where
        T: Serialize + serde::de::DeserializeOwned + Send + Sync,
    {
        let mut cursor = None;
        loop {
            let page = collection
                .find(&Query::new().limit(500).after(cursor))
                .await?;
            for doc in page.items {
                each(doc.id, doc.value);
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(()),
            }
        }
    }
}

/// Reads, changes and writes back a document with CAS, creating it from
/// the default when missing; `likely_new`: try the insert before reading.
async fn upsert<T>(
    collection: &Collection<T>,
    id: &str,
    likely_new: bool,
    mut change: impl FnMut(&mut T) + Send,
) -> Result<(), StoreError>
where
    T: Default + Serialize + serde::de::DeserializeOwned + Send + Sync,
{
    if likely_new {
        let mut fresh = T::default();
        change(&mut fresh);
        match collection.insert(id, fresh).await {
            Ok(_) => return Ok(()),
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(err) => return Err(err),
        }
    }
    loop {
        match collection.find_by_id(id).await? {
            None => {
                let mut fresh = T::default();
                change(&mut fresh);
                match collection.insert(id, fresh).await {
                    Ok(_) => return Ok(()),
                    Err(StoreError::AlreadyExists { .. }) => continue,
                    Err(err) => return Err(err),
                }
            }
            // From the copy just read: one write unless another came first.
            Some(existing) => {
                return collection
                    .modify_from(existing, &mut change)
                    .await
                    .map(|_| ());
            }
        }
    }
}
