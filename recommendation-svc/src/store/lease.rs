//! The training lease: one run at a time across replicas, taken and freed
//! with compare-and-swap on one control document.

use platform::store::StoreError;

use super::{Control, RecStore};

/// Id of the lease document.
const TRAINING: &str = "training";

impl RecStore {
    /// Takes the training lease for `ttl_ms` unless another replica holds a
    /// live one. `Ok(Err(version))` names the run in progress.
    pub async fn acquire_lease(
        &self,
        holder: &str,
        version: &str,
        ttl_ms: i64,
    ) -> Result<Result<(), String>, StoreError> {
        let now = platform::clock::now().millis();
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
            .filter(|l| !l.holder.is_empty() && l.expires_at > platform::clock::now().millis())
            .map(|l| l.version))
    }
}

#[cfg(test)]
mod tests {
    use platform::store::Store;

    use super::*;

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
