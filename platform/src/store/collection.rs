//! Typed access to one collection: encode, check, CAS writes, pages.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::query::plan;
use super::{
    CollectionSpec, MAX_DOCUMENT_BYTES, Page, PlannedQuery, Query, RawDocument, Result, Store,
    StoreError,
};

/// A document with its id and the version a CAS write must name.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub id: String,
    pub version: u64,
    pub value: T,
}

/// Typed access to one collection.
pub struct Collection<T> {
    pub(super) store: Store,
    pub(super) spec: Arc<CollectionSpec>,
    pub(super) _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Collection<T> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            spec: self.spec.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> Collection<T> {
    /// The store this collection lives in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The collection's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }
}

impl<T> fmt::Debug for Collection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collection")
            .field("name", &self.spec.name)
            .field("backend", &self.store.backend_name())
            .finish()
    }
}

/// Most times [`Collection::update`] re-reads and re-applies after a
/// version conflict before giving up with [`StoreError::VersionConflict`].
pub const MAX_UPDATE_ATTEMPTS: u32 = 64;

impl<T: Serialize + DeserializeOwned + Send + Sync> Collection<T> {
    pub fn spec(&self) -> &CollectionSpec {
        &self.spec
    }

    fn encode(&self, value: &T) -> Result<Value> {
        let body = serde_json::to_value(value)
            .map_err(|e| StoreError::Invalid(format!("cannot encode document: {e}")))?;
        self.spec.check_document(&body)?;
        let size = serde_json::to_vec(&body)
            .map(|b| b.len())
            .unwrap_or(usize::MAX);
        if size > MAX_DOCUMENT_BYTES {
            return Err(StoreError::Invalid(format!(
                "document is {size} bytes; the limit is {MAX_DOCUMENT_BYTES}"
            )));
        }
        Ok(body)
    }

    fn decode(&self, raw: RawDocument) -> Result<Versioned<T>> {
        let value = serde_json::from_value(raw.body).map_err(|e| {
            StoreError::Backend(format!("stored document {} does not decode: {e}", raw.id))
        })?;
        Ok(Versioned {
            id: raw.id,
            version: raw.version,
            value,
        })
    }

    /// Stores a new document (version 1). [`StoreError::AlreadyExists`]
    /// names the index (or `id`) that already holds the value.
    pub async fn insert(&self, id: &str, value: T) -> Result<Versioned<T>> {
        check_id(id)?;
        let body = self.encode(&value)?;
        self.store.backend.insert(&self.spec, id, &body).await?;
        Ok(Versioned {
            id: id.to_string(),
            version: 1,
            value,
        })
    }

    /// The document, or [`StoreError::NotFound`].
    pub async fn get(&self, id: &str) -> Result<Versioned<T>> {
        self.find_by_id(id).await?.ok_or(StoreError::NotFound)
    }

    pub async fn find_by_id(&self, id: &str) -> Result<Option<Versioned<T>>> {
        check_id(id)?;
        match self.store.backend.get(&self.spec, id).await? {
            Some(raw) => self.decode(raw).map(Some),
            None => Ok(None),
        }
    }

    /// Replaces the document if it is still at `expected_version`;
    /// [`StoreError::VersionConflict`] if another write came first.
    pub async fn replace(&self, id: &str, expected_version: u64, value: T) -> Result<Versioned<T>> {
        check_id(id)?;
        let body = self.encode(&value)?;
        self.store
            .backend
            .replace(&self.spec, id, expected_version, &body)
            .await?;
        Ok(Versioned {
            id: id.to_string(),
            version: expected_version + 1,
            value,
        })
    }

    /// Read, apply `change`, write back with CAS; on a conflict, read again
    /// and re-apply. `change` must be a pure function of the document (it
    /// may run several times). An `Err` from it stops without writing.
    pub async fn update<E, F>(&self, id: &str, change: F) -> Result<Result<Versioned<T>, E>>
    where
        F: FnMut(&mut T) -> Result<(), E> + Send,
        E: Send,
    {
        self.update_seeded(id, None, change).await
    }

    /// [`Collection::update`] starting from a copy of the document the
    /// caller already holds (e.g. the one its last write returned), so the
    /// common case is one CAS write and no read; a conflict reads again.
    pub async fn update_from<E, F>(
        &self,
        current: Versioned<T>,
        change: F,
    ) -> Result<Result<Versioned<T>, E>>
    where
        F: FnMut(&mut T) -> Result<(), E> + Send,
        E: Send,
    {
        let id = current.id.clone();
        self.update_seeded(&id, Some(current), change).await
    }

    async fn update_seeded<E, F>(
        &self,
        id: &str,
        mut seed: Option<Versioned<T>>,
        mut change: F,
    ) -> Result<Result<Versioned<T>, E>>
    where
        F: FnMut(&mut T) -> Result<(), E> + Send,
        E: Send,
    {
        for attempt in 0..MAX_UPDATE_ATTEMPTS {
            let mut current = match seed.take() {
                Some(known) => known,
                None => self.get(id).await?,
            };
            if let Err(err) = change(&mut current.value) {
                return Ok(Err(err));
            }
            match self.replace(id, current.version, current.value).await {
                Ok(updated) => return Ok(Ok(updated)),
                Err(StoreError::VersionConflict) => {
                    // Back off a little so contending writers spread out.
                    if attempt > 2 {
                        tokio::time::sleep(Duration::from_micros(50 * u64::from(attempt.min(40))))
                            .await;
                    } else {
                        tokio::task::yield_now().await;
                    }
                }
                Err(other) => return Err(other),
            }
        }
        Err(StoreError::VersionConflict)
    }

    /// [`Collection::update`] for a change that cannot fail.
    pub async fn modify<F>(&self, id: &str, change: F) -> Result<Versioned<T>>
    where
        F: FnMut(&mut T) + Send,
    {
        self.modify_seeded(id, None, change).await
    }

    /// [`Collection::modify`] starting from a document the caller holds
    /// (see [`Collection::update_from`]).
    pub async fn modify_from<F>(&self, current: Versioned<T>, change: F) -> Result<Versioned<T>>
    where
        F: FnMut(&mut T) + Send,
    {
        let id = current.id.clone();
        self.modify_seeded(&id, Some(current), change).await
    }

    async fn modify_seeded<F>(
        &self,
        id: &str,
        seed: Option<Versioned<T>>,
        mut change: F,
    ) -> Result<Versioned<T>>
    where
        F: FnMut(&mut T) + Send,
    {
        let infallible = |doc: &mut T| -> std::result::Result<(), std::convert::Infallible> {
            change(doc);
            Ok(())
        };
        match self.update_seeded(id, seed, infallible).await? {
            Ok(updated) => Ok(updated),
            Err(never) => match never {},
        }
    }

    /// Deletes the document; with `expected_version`, only at that version.
    pub async fn delete(&self, id: &str, expected_version: Option<u64>) -> Result<()> {
        check_id(id)?;
        self.store
            .backend
            .delete(&self.spec, id, expected_version)
            .await
    }

    /// The query as the backend would run it (for tools and tests, e.g.
    /// asking MongoDB to `explain` it).
    pub fn plan(&self, query: &Query) -> Result<PlannedQuery> {
        plan(&self.spec, query, &self.store.cursors)
    }

    /// One page of the query's results, and the cursor of the next page.
    /// A cursor only works with the query that produced it.
    pub async fn find(&self, query: &Query) -> Result<Page<Versioned<T>>> {
        let planned = plan(&self.spec, query, &self.store.cursors)?;
        let mut raws = self.store.backend.find(&self.spec, &planned).await?;
        let next_cursor = if raws.len() > planned.limit {
            raws.truncate(planned.limit);
            let last = raws.last().expect("limit is at least 1");
            Some(self.store.cursors.encode(
                &self.spec.name,
                query,
                &planned.sort_key(last),
                &last.id,
            ))
        } else {
            None
        };
        let items = raws
            .into_iter()
            .map(|raw| self.decode(raw))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page { items, next_cursor })
    }

    /// The first document matching the query (e.g. a lookup by a unique field).
    pub async fn find_one(&self, query: Query) -> Result<Option<Versioned<T>>> {
        Ok(self.find(&query.limit(1)).await?.items.into_iter().next())
    }
}

pub(super) fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control()) {
        return Err(StoreError::Invalid(
            "id must be 1..=128 printable characters".into(),
        ));
    }
    Ok(())
}
