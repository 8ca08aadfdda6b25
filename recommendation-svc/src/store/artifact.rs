//! Stored models: the artifact (a JSON header and the weights) in chunks,
//! its metadata, and the pointer to the current version.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use platform::store::StoreError;
use serde::{Deserialize, Serialize};

use super::{Chunk, Control, ModelMeta, RecStore};
use crate::model::{self, Algorithm, Model};

/// Bytes of artifact per chunk document (base64 makes it 4/3 larger).
pub const CHUNK_BYTES: usize = 1 << 20;
/// Id of the pointer document.
const CURRENT: &str = "current";

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

impl RecStore {
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
            trained_at: platform::clock::now().millis(),
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
    use platform::store::Store;

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
}
