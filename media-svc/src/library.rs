//! The core of media-svc: accepted uploads become objects plus a record
//! (whose outbox carries `media.uploaded`), deletes become `media.deleted`,
//! and a sweeper removes what nothing references any more. Speaks domain
//! types; the gRPC face is `api`.

use std::sync::Arc;
use std::time::Duration;

use platform::events::outbox::OutboxRelay;
use platform::store::{Bound, Collection, Query, StoreError, Versioned};
use proto::events::envelope::Payload;
use proto::events::{MediaDeleted, MediaUploaded};
use tokio::sync::Semaphore;

use crate::convert;
use crate::domain::{self, Limits, Media, Processed, Refusal, Thumb};
use crate::objects::Objects;

/// Why a store, bus or object call failed: ours, not the caller's.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("media not found")]
    NotFound,
    #[error("storing media: {0}")]
    Store(#[from] StoreError),
    #[error("object storage: {0}")]
    Objects(#[from] object_store::Error),
    #[error("image work was cancelled: {0}")]
    Worker(String),
}

/// Media records, their bytes, and the bound on image work.
#[derive(Clone, Debug)]
pub struct Library {
    pub media: Collection<Media>,
    pub relay: OutboxRelay<Media>,
    pub objects: Objects,
    pub limits: Arc<Limits>,
    /// Images decoded and encoded at once.
    pub work: Arc<Semaphore>,
    /// Uploads received at once (twice the workers): a further upload
    /// waits before its body is read, so HTTP/2 flow control holds its
    /// bytes at the sender instead of in this process's memory.
    pub intake: Arc<Semaphore>,
    /// Deleted records and unreferenced bytes are kept this long.
    pub grace: Duration,
}

/// What [`Library::sweep`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub records: usize,
    pub keys: usize,
}

impl Library {
    /// Checks and converts an upload on a blocking thread, waiting for a
    /// turn when as many are running as allowed.
    pub async fn process(&self, bytes: Vec<u8>) -> Result<Processed, LibraryError> {
        let _turn = self
            .work
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| LibraryError::Worker(e.to_string()))?;
        let limits = self.limits.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| domain::process(&bytes, &limits)))
            .await
            .map_err(|e| LibraryError::Worker(e.to_string()))?
            .map_err(LibraryError::from)
    }

    /// The live record showing `key` on `product_id`, if any.
    async fn live(
        &self,
        product_id: &str,
        key: &str,
    ) -> Result<Option<Versioned<Media>>, StoreError> {
        self.media
            .find_one(Query::new().eq("live", Media::live_key(product_id, key)))
            .await
    }

    /// Stores a processed upload for a product: the bytes first (the same
    /// bytes land on the same keys), then the record with `media.uploaded`
    /// in one write. The same image for the same product answers its
    /// existing record (`false`: nothing new was made). A product that
    /// already has the most live images is refused; the record takes one
    /// of the product's slots in the same write, so racing uploads cannot
    /// pass the limit either.
    pub async fn store(
        &self,
        product_id: &str,
        alt: &str,
        done: Processed,
    ) -> Result<(Versioned<Media>, bool), LibraryError> {
        if let Some(existing) = self.live(product_id, &done.key).await? {
            return Ok((existing, false));
        }
        self.free_slot(product_id).await?;
        // Written even when present: the write renews the objects' age, so
        // a sweep that found them unreferenced leaves them alone.
        for thumb in &done.thumbnails {
            self.objects
                .put(
                    &domain::object_path(&done.key, thumb.width),
                    thumb.bytes.clone(),
                )
                .await?;
        }
        self.objects
            .put(&domain::object_path(&done.key, 0), done.image.bytes.clone())
            .await?;
        let id = uuid::Uuid::now_v7().to_string();
        let mut media = Media {
            product_id: product_id.to_string(),
            key: done.key.clone(),
            content_type: done.image.content_type.to_string(),
            width: done.image.width,
            height: done.image.height,
            bytes: done.image.bytes.len() as u64,
            alt: alt.to_string(),
            thumbnails: done
                .thumbnails
                .iter()
                .map(|t| Thumb {
                    width: t.width,
                    height: t.height,
                    bytes: t.bytes.len() as u64,
                    content_type: t.content_type.to_string(),
                })
                .collect(),
            created_at: platform::clock::now().millis(),
            live: Some(Media::live_key(product_id, &done.key)),
            slot: None,
            deleted_at: None,
            outbox: Default::default(),
        };
        let event = platform::events::event(
            &id,
            crate::SERVICE.binary(),
            Payload::MediaUploaded(MediaUploaded {
                media: Some(convert::media(&id, &media)),
            }),
        );
        media.outbox.stage(&event);
        // A slot taken meanwhile by a racing upload: look again. Each lost
        // race means another upload won, so this ends.
        for _ in 0..domain::MAX_IMAGES * 2 {
            media.slot = Some(Media::slot_key(
                product_id,
                self.free_slot(product_id).await?,
            ));
            match self.media.insert(&id, media.clone()).await {
                Ok(doc) => {
                    let doc = self.relay.flush_or_defer_written(doc).await;
                    return Ok((doc, true));
                }
                Err(StoreError::AlreadyExists { .. }) => {
                    // The same upload, concurrently: its twin won.
                    if let Some(existing) = self.live(product_id, &done.key).await? {
                        return Ok((existing, false));
                    }
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(LibraryError::Store(StoreError::VersionConflict))
    }

    /// A slot the product's next image may take, or the refusal that it
    /// has the most images already.
    pub async fn free_slot(&self, product_id: &str) -> Result<usize, LibraryError> {
        let live = self.of_product(product_id).await?;
        let live: Vec<&Media> = live.iter().map(|m| &m.value).collect();
        domain::free_slot(product_id, &live).ok_or(LibraryError::Refused(Refusal::ProductFull {
            limit: domain::MAX_IMAGES,
        }))
    }

    /// A live record by id.
    pub async fn get(&self, id: &str) -> Result<Versioned<Media>, LibraryError> {
        match self.media.find_by_id(id).await {
            Ok(Some(doc)) if doc.value.deleted_at.is_none() => Ok(doc),
            Ok(_) | Err(StoreError::Invalid(_)) => Err(LibraryError::NotFound),
            Err(err) => Err(err.into()),
        }
    }

    /// A product's live media, oldest first.
    pub async fn of_product(
        &self,
        product_id: &str,
    ) -> Result<Vec<Versioned<Media>>, LibraryError> {
        // Deleted records stay for the grace period, so however many there
        // are, every page is read.
        let mut live = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .media
                .find(
                    &Query::new()
                        .eq("product_id", product_id)
                        .sort_by_id(false)
                        .limit(200)
                        .after(cursor),
                )
                .await?;
            live.extend(
                page.items
                    .into_iter()
                    .filter(|m| m.value.deleted_at.is_none()),
            );
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(live),
            }
        }
    }

    /// Marks a record deleted with `media.deleted` in the same write.
    /// Deleting a deleted record changes nothing; an unknown id is
    /// NotFound.
    pub async fn delete(&self, id: &str) -> Result<(), LibraryError> {
        let current = match self.media.find_by_id(id).await {
            Ok(Some(doc)) => doc,
            Ok(None) | Err(StoreError::Invalid(_)) => return Err(LibraryError::NotFound),
            Err(err) => return Err(err.into()),
        };
        self.delete_doc(current).await
    }

    async fn delete_doc(&self, current: Versioned<Media>) -> Result<(), LibraryError> {
        let id = current.id.clone();
        let written = self
            .media
            .update_from(current, |media: &mut Media| {
                if !media.delete(platform::clock::now().millis()) {
                    return Err(());
                }
                let event = platform::events::event(
                    &id,
                    crate::SERVICE.binary(),
                    Payload::MediaDeleted(MediaDeleted {
                        media_id: id.clone(),
                        product_id: media.product_id.clone(),
                    }),
                );
                media.outbox.stage(&event);
                Ok(())
            })
            .await?;
        if let Ok(doc) = written {
            self.relay.flush_or_defer_written(doc).await;
        }
        Ok(())
    }

    /// Deletes the live media of products that no longer exist
    /// (`exists` answers which of up to 100 ids do); returns how many.
    pub async fn orphaned_by_products<F, Fut>(&self, exists: F) -> Result<usize, LibraryError>
    where
        F: Fn(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Option<std::collections::HashSet<String>>>,
    {
        let mut deleted = 0;
        let mut cursor = None;
        loop {
            let page = self
                .media
                .find(&Query::new().sort_by_id(false).limit(100).after(cursor))
                .await?;
            let live: Vec<Versioned<Media>> = page
                .items
                .into_iter()
                .filter(|m| m.value.deleted_at.is_none())
                .collect();
            let mut ids: Vec<String> = live.iter().map(|m| m.value.product_id.clone()).collect();
            ids.sort();
            ids.dedup();
            if !ids.is_empty() {
                // A catalog that cannot answer deletes nothing.
                let Some(found) = exists(ids).await else {
                    return Ok(deleted);
                };
                for media in live {
                    if !found.contains(&media.value.product_id) {
                        self.delete_doc(media).await?;
                        deleted += 1;
                    }
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(deleted),
            }
        }
    }

    /// Removes records deleted more than the grace period ago whose
    /// `media.deleted` is on the bus (a record still holding it in its
    /// outbox, the bus down since, stays until the outbox sweeper has sent
    /// it: removing it would lose the event, and the product would show
    /// the image forever), then the bytes of every key that no record
    /// references and that nobody wrote within the grace period (a crash
    /// between the bytes and the record leaves such bytes).
    pub async fn sweep(&self, now: i64) -> Result<Swept, LibraryError> {
        let mut swept = Swept::default();
        let before = now - self.grace.as_millis() as i64;
        let mut cursor = None;
        loop {
            let page = self
                .media
                .find(
                    &Query::new()
                        .range("deleted_at", None, Some(Bound::Exclusive(before.into())))
                        .sort_by_id(false)
                        .limit(100)
                        .after(cursor),
                )
                .await?;
            for doc in page.items {
                if !doc.value.outbox.is_empty() {
                    continue;
                }
                match self.media.delete(&doc.id, Some(doc.version)).await {
                    Ok(()) => swept.records += 1,
                    Err(StoreError::NotFound | StoreError::VersionConflict) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let mut keys: std::collections::BTreeMap<String, (i64, Vec<String>)> = Default::default();
        for object in self.objects.list().await? {
            let Some(key) = domain::key_of_path(&object.path) else {
                continue;
            };
            let entry = keys.entry(key.to_string()).or_default();
            entry.0 = entry.0.max(object.modified_ms);
            entry.1.push(object.path);
        }
        for (key, (newest, paths)) in keys {
            if newest >= before {
                continue;
            }
            if self
                .media
                .find_one(Query::new().eq("key", key.as_str()))
                .await?
                .is_some()
            {
                continue;
            }
            for path in paths {
                // Renewed since the listing: an upload of these bytes is
                // under way.
                if self
                    .objects
                    .modified_ms(&path)
                    .await?
                    .is_some_and(|m| m >= before)
                {
                    continue;
                }
                self.objects.delete(&path).await?;
            }
            swept.keys += 1;
        }
        Ok(swept)
    }
}
