//! The bytes of images, through `object_store`: in memory, in a directory
//! or in an S3-compatible bucket, chosen by `MEDIA_STORE_URL`.

use std::ops::Range;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt as _, PutPayload};
use platform::config::MediaSettings;

/// An object as listed: its path and when it was written.
#[derive(Debug, Clone)]
pub struct Listed {
    pub path: String,
    /// Unix milliseconds.
    pub modified_ms: i64,
}

/// A stored object being read: its size and the requested bytes.
pub struct Reading {
    pub total: u64,
    pub range: Range<u64>,
    pub chunks: BoxStream<'static, object_store::Result<Bytes>>,
}

/// Where image bytes live.
#[derive(Debug, Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    backend: &'static str,
}

impl Objects {
    /// The store `MEDIA_STORE_URL` names.
    pub fn from_settings(settings: &MediaSettings) -> anyhow::Result<Self> {
        let url = settings.store_url.as_str();
        if url.starts_with("memory://") {
            return Ok(Self::memory());
        }
        if let Some(dir) = url.strip_prefix("file://") {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
                .with_context(|| format!("opening {dir}"))?;
            return Ok(Self {
                store: Arc::new(store),
                backend: "file",
            });
        }
        if let Some(bucket) = url.strip_prefix("s3://") {
            let bucket = bucket.trim_end_matches('/');
            let mut builder =
                object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(endpoint) = &settings.s3_endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            let store = builder
                .build()
                .with_context(|| format!("configuring bucket {bucket}"))?;
            return Ok(Self {
                store: Arc::new(store),
                backend: "s3",
            });
        }
        anyhow::bail!("MEDIA_STORE_URL {url:?}: expected memory://, file:///dir or s3://bucket")
    }

    pub fn memory() -> Self {
        Self {
            store: Arc::new(object_store::memory::InMemory::new()),
            backend: "memory",
        }
    }

    /// `memory`, `file` or `s3`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Stores `bytes` at `path`. Keys are content hashes, so writing over
    /// an object writes the same bytes; it renews the object's age.
    pub async fn put(&self, path: &str, bytes: Vec<u8>) -> object_store::Result<()> {
        self.store
            .put(&Path::from(path), PutPayload::from(Bytes::from(bytes)))
            .await
            .map(|_| ())
    }

    /// Reads `path`, all of it or `range` (clamped to the object's size).
    /// `Ok(None)` when there is no such object.
    pub async fn read(
        &self,
        path: &str,
        range: Option<Range<u64>>,
    ) -> object_store::Result<Option<Reading>> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        match self.store.get_opts(&Path::from(path), options).await {
            Ok(result) => Ok(Some(Reading {
                total: result.meta.size,
                range: result.range.clone(),
                chunks: result.into_stream(),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// When the object at `path` was last written (Unix milliseconds), if
    /// there is one.
    pub async fn modified_ms(&self, path: &str) -> object_store::Result<Option<i64>> {
        match self.store.head(&Path::from(path)).await {
            Ok(meta) => Ok(Some(meta.last_modified.timestamp_millis())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The size of the object at `path`, if there is one.
    pub async fn size(&self, path: &str) -> object_store::Result<Option<u64>> {
        match self.store.head(&Path::from(path)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Every stored object.
    pub async fn list(&self) -> object_store::Result<Vec<Listed>> {
        self.store
            .list(None)
            .map_ok(|meta| Listed {
                path: meta.location.to_string(),
                modified_ms: meta.last_modified.timestamp_millis(),
            })
            .try_collect()
            .await
    }

    /// Removes `path`; removing what is not there succeeds.
    pub async fn delete(&self, path: &str) -> object_store::Result<()> {
        match self.store.delete(&Path::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Reads the whole object at `path` (tests and tools).
    pub async fn read_all(&self, path: &str) -> object_store::Result<Option<Vec<u8>>> {
        let Some(reading) = self.read(path, None).await? else {
            return Ok(None);
        };
        let chunks: Vec<Bytes> = reading.chunks.try_collect().await?;
        Ok(Some(chunks.concat()))
    }

    /// Whether the store answers (readiness): a listing of nothing.
    pub async fn ping(&self) -> object_store::Result<()> {
        let mut listing = self.store.list(Some(&Path::from("ping-absent")));
        match listing.next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(err)) => Err(err),
        }
    }
}
