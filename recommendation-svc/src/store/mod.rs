//! The service's collections: the interaction log (orders folded from
//! events, user profiles with preferences, ratings and imports), trained
//! models (metadata plus the artifact in chunks) and the training lease.
//!
//! Every write is one document with compare-and-swap, so replicas on one
//! database share the log, the models and the lease.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use platform::store::{Collection, CollectionSpec, FieldType, IndexSpec, Query, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::domain::{OrderFact, OrderRecord, Profile};
use crate::model::{self, Algorithm, Model};

/// Bytes of artifact per chunk document (base64 makes it 4/3 larger).
pub const CHUNK_BYTES: usize = 1 << 20;
/// Id of the lease and pointer documents.
const TRAINING: &str = "training";
const CURRENT: &str = "current";

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

/// The part of the artifact that is not the weights.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    algorithm: String,
    items: Vec<String>,
    categories: Vec<String>,
    popular: Vec<(u32, f32)>,
    interactions: u64,
    users: u64,
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

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
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

    /// Folds an order fact into its record (creating it if needed).
    pub async fn apply_order(&self, order_id: &str, fact: &OrderFact) -> Result<(), StoreError> {
        upsert(&self.orders, order_id, |r| {
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
        upsert(&self.profiles, user_id, change).await?;
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

    /// Takes the training lease for `ttl_ms` unless another replica holds a
    /// live one. `Ok(Err(version))` names the run in progress.
    pub async fn acquire_lease(
        &self,
        holder: &str,
        version: &str,
        ttl_ms: i64,
    ) -> Result<Result<(), String>, StoreError> {
        let now = now_millis();
        let lease = Control {
            holder: holder.to_string(),
            version: version.to_string(),
            expires_at: now + ttl_ms,
        };
        loop {
            match self.control.find_by_id(TRAINING).await? {
                None => match self.control.insert(TRAINING, lease.clone()).await {
                    Ok(_) => return Ok(Ok(())),
                    Err(StoreError::AlreadyExists { .. }) => continue,
                    Err(err) => return Err(err),
                },
                Some(doc) if doc.value.expires_at > now && !doc.value.holder.is_empty() => {
                    return Ok(Err(doc.value.version));
                }
                Some(doc) => match self
                    .control
                    .replace(TRAINING, doc.version, lease.clone())
                    .await
                {
                    Ok(_) => return Ok(Ok(())),
                    Err(StoreError::VersionConflict) => continue,
                    Err(err) => return Err(err),
                },
            }
        }
    }

    /// Frees the lease if `holder` still holds it for `version`.
    pub async fn release_lease(&self, holder: &str, version: &str) -> Result<(), StoreError> {
        let result = self
            .control
            .update(TRAINING, |lease| {
                if lease.holder == holder && lease.version == version {
                    *lease = Control::default();
                    Ok(())
                } else {
                    Err(())
                }
            })
            .await;
        match result {
            Ok(_) | Err(StoreError::NotFound) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The run in progress, if a live lease names one.
    pub async fn training_in_progress(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .control
            .find_by_id(TRAINING)
            .await?
            .map(|d| d.value)
            .filter(|l| !l.holder.is_empty() && l.expires_at > now_millis())
            .map(|l| l.version))
    }

    /// Stores a trained model (chunks first, then its metadata, then the
    /// pointer), so a replica that sees the pointer finds it complete.
    pub async fn save_model(
        &self,
        version: &str,
        model: &Model,
        metrics: BTreeMap<String, f64>,
    ) -> Result<ModelMeta, StoreError> {
        let blob = encode(model)?;
        let mut chunks = 0u32;
        for piece in blob.chunks(CHUNK_BYTES) {
            let id = chunk_id(version, chunks);
            let chunk = Chunk {
                data: STANDARD.encode(piece),
            };
            match self.chunks.insert(&id, chunk).await {
                Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
                Err(err) => return Err(err),
            }
            chunks += 1;
        }
        let meta = ModelMeta {
            version: version.to_string(),
            algorithm: model.algorithm.name().to_string(),
            trained_at: now_millis(),
            interactions: model.interactions,
            products: model.items.len() as u64,
            users: model.users,
            metrics,
            chunks,
            bytes: blob.len() as u64,
        };
        match self.models.insert(version, meta.clone()).await {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(err) => return Err(err),
        }
        self.point_to(version).await?;
        Ok(meta)
    }

    /// Moves the current pointer to `version` unless a later one is current.
    async fn point_to(&self, version: &str) -> Result<(), StoreError> {
        let pointer = Control {
            version: version.to_string(),
            ..Default::default()
        };
        loop {
            match self.control.find_by_id(CURRENT).await? {
                None => match self.control.insert(CURRENT, pointer.clone()).await {
                    Ok(_) => return Ok(()),
                    Err(StoreError::AlreadyExists { .. }) => continue,
                    Err(err) => return Err(err),
                },
                Some(doc) if doc.value.version.as_str() >= version => return Ok(()),
                Some(doc) => match self
                    .control
                    .replace(CURRENT, doc.version, pointer.clone())
                    .await
                {
                    Ok(_) => return Ok(()),
                    Err(StoreError::VersionConflict) => continue,
                    Err(err) => return Err(err),
                },
            }
        }
    }

    /// Version of the current model, if any.
    pub async fn current_version(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .control
            .find_by_id(CURRENT)
            .await?
            .map(|d| d.value.version)
            .filter(|v| !v.is_empty()))
    }

    /// Loads a stored model.
    pub async fn load_model(&self, version: &str) -> Result<(ModelMeta, Model), StoreError> {
        let meta = self.models.get(version).await?.value;
        let mut blob = Vec::with_capacity(meta.bytes as usize);
        for n in 0..meta.chunks {
            let chunk = self.chunks.get(&chunk_id(version, n)).await?.value;
            let bytes = STANDARD
                .decode(chunk.data)
                .map_err(|e| StoreError::Backend(format!("model chunk {n} of {version}: {e}")))?;
            blob.extend_from_slice(&bytes);
        }
        let model = decode(&blob)
            .ok_or_else(|| StoreError::Backend(format!("model {version} does not decode")))?;
        Ok((meta, model))
    }
}

fn chunk_id(version: &str, n: u32) -> String {
    format!("{version}:{n:05}")
}

/// Reads, changes and writes back a document with CAS, creating it from
/// the default when missing.
async fn upsert<T>(
    collection: &Collection<T>,
    id: &str,
    mut change: impl FnMut(&mut T) + Send,
) -> Result<(), StoreError>
where
    T: Default + Serialize + serde::de::DeserializeOwned + Send + Sync,
{
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
            Some(_) => {
                return collection.modify(id, &mut change).await.map(|_| ());
            }
        }
    }
}

/// The artifact: a length-prefixed JSON header, then the weights.
fn encode(model: &Model) -> Result<Vec<u8>, StoreError> {
    let header = Header {
        algorithm: model.algorithm.name().to_string(),
        items: model.items.clone(),
        categories: model.categories.clone(),
        popular: model.popular.clone(),
        interactions: model.interactions,
        users: model.users,
    };
    let header = serde_json::to_vec(&header)
        .map_err(|e| StoreError::Invalid(format!("model header: {e}")))?;
    let mut out = Vec::with_capacity(header.len() + 8);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&model::encode_neighbors(&model.neighbors));
    Ok(out)
}

fn decode(blob: &[u8]) -> Option<Model> {
    let len = u64::from_le_bytes(blob.get(..8)?.try_into().ok()?) as usize;
    let header: Header = serde_json::from_slice(blob.get(8..8usize.checked_add(len)?)?).ok()?;
    let n = header.items.len();
    if header.categories.len() != n || header.popular.iter().any(|(i, _)| *i as usize >= n) {
        return None;
    }
    let neighbors = model::decode_neighbors(&blob[8 + len..], n)?;
    Some(Model::new(
        Algorithm::parse(&header.algorithm)?,
        header.items,
        header.categories,
        neighbors,
        header.popular,
        header.interactions,
        header.users,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TrainParams, TrainingData, UserItems};

    fn model() -> Model {
        let users = (0..10)
            .map(|i| UserItems::from([(format!("p{}", i % 3), 1), (format!("p{}", i % 3 + 1), 2)]))
            .collect();
        let data = TrainingData {
            users,
            categories: [("p1".to_string(), "toys".to_string())].into(),
        };
        model::train(&data, &TrainParams::default()).unwrap()
    }

    #[tokio::test]
    async fn a_saved_model_loads_back_identical_across_chunks() {
        let store = RecStore::open(&Store::memory()).await.unwrap();
        let m = model();
        let meta = store
            .save_model("v1", &m, BTreeMap::from([("recall_at_10".into(), 0.5)]))
            .await
            .unwrap();
        assert_eq!(
            store.current_version().await.unwrap().as_deref(),
            Some("v1")
        );
        let (loaded_meta, loaded) = store.load_model("v1").await.unwrap();
        assert_eq!(loaded, m);
        assert_eq!(loaded_meta, meta);
        assert!(decode(&encode(&m).unwrap()[..20]).is_none());
    }

    #[tokio::test]
    async fn the_pointer_never_moves_back_to_an_older_version() {
        let store = RecStore::open(&Store::memory()).await.unwrap();
        let m = model();
        store.save_model("v2", &m, BTreeMap::new()).await.unwrap();
        store.save_model("v1", &m, BTreeMap::new()).await.unwrap();
        assert_eq!(
            store.current_version().await.unwrap().as_deref(),
            Some("v2")
        );
    }

    #[tokio::test]
    async fn one_lease_at_a_time_until_released_or_expired() {
        let store = RecStore::open(&Store::memory()).await.unwrap();
        assert_eq!(
            store.acquire_lease("a", "v1", 60_000).await.unwrap(),
            Ok(())
        );
        assert_eq!(
            store.acquire_lease("b", "v2", 60_000).await.unwrap(),
            Err("v1".to_string())
        );
        assert_eq!(
            store.training_in_progress().await.unwrap().as_deref(),
            Some("v1")
        );
        store.release_lease("b", "v2").await.unwrap();
        assert!(
            store.training_in_progress().await.unwrap().is_some(),
            "only the holder frees it"
        );
        store.release_lease("a", "v1").await.unwrap();
        assert_eq!(store.training_in_progress().await.unwrap(), None);
        assert_eq!(store.acquire_lease("b", "v2", -1).await.unwrap(), Ok(()));
        assert_eq!(
            store.acquire_lease("c", "v3", 60_000).await.unwrap(),
            Ok(()),
            "an expired lease is taken over"
        );
    }
}
