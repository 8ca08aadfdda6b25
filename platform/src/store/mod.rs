//! A small document store with three backends behind one interface.
//!
//! Services keep their aggregates as JSON documents in collections they
//! declare at start ([`CollectionSpec`]): an id, a version number for
//! compare-and-swap writes, and secondary indexes on declared fields (unique
//! or not). Queries are equality on indexed fields, at most one range, an
//! optional case-insensitive "contains" on the collection's text field, a
//! sort on one indexed field (ties broken by id), and opaque keyset cursors.
//!
//! There are no multi-document transactions: every invariant is kept by a
//! single-document atomic write (insert with unique indexes, or replace
//! conditioned on the version read), which all three backends give.
//!
//! Backends are chosen by `DATABASE_URL`: [`memory`] (embedded default,
//! tests), [`postgres`] (one table per collection with a jsonb column and
//! expression indexes, in a schema per service) and [`mongo`] (native
//! collections and indexes, in a database per service).

pub mod coalesce;
pub mod cursor;
mod lanes;
mod lease;
pub mod memory;
pub mod mongo;
pub mod postgres;
mod traced;

mod collection;
mod error;
mod query;
mod spec;

pub use collection::{Collection, MAX_UPDATE_ATTEMPTS, Versioned};
pub use error::{Cause, Result, StoreError};
pub use lease::{LEASES, Lease};
pub use query::{Bound, Page, PlannedQuery, Query, Range, RawDocument, compare_values};
pub use spec::{CollectionSpec, FieldType, IndexSpec, lookup};

use collection::check_id;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde_json::Value;

pub use coalesce::Coalescer;

use crate::config::DatabaseUrl;
pub use crate::config::{StoreSettings, WriteAcknowledgment};

/// Largest document accepted, in bytes of JSON (MongoDB's own limit).
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
/// Largest page a query may ask for.
pub const MAX_PAGE: usize = 1000;
const _: () = assert!(crate::config::saga::MAX_UNPAID_PER_CUSTOMER as usize <= MAX_PAGE);

/// What each backend implements. Services use [`Store`] and [`Collection`].
#[async_trait::async_trait]
pub trait Backend: Send + Sync + fmt::Debug {
    /// Creates the collection and its indexes if missing; safe to run from
    /// several replicas at once.
    async fn ensure_collection(&self, spec: &CollectionSpec) -> Result<()>;
    /// Stores a new document with version 1.
    async fn insert(&self, spec: &CollectionSpec, id: &str, body: &Value) -> Result<()>;
    async fn get(&self, spec: &CollectionSpec, id: &str) -> Result<Option<RawDocument>>;
    /// Replaces the document if its version is still `expected`; the new
    /// version is `expected + 1`.
    async fn replace(
        &self,
        spec: &CollectionSpec,
        id: &str,
        expected: u64,
        body: &Value,
    ) -> Result<()>;
    /// Deletes the document (if `expected` is given, only at that version).
    async fn delete(&self, spec: &CollectionSpec, id: &str, expected: Option<u64>) -> Result<()>;
    /// Up to `query.limit + 1` documents in query order (the extra one tells
    /// whether there is a next page).
    async fn find(&self, spec: &CollectionSpec, query: &PlannedQuery) -> Result<Vec<RawDocument>>;
    /// Whether the backend answers.
    async fn ping(&self) -> Result<()>;
    fn name(&self) -> &'static str;
}

/// A connection to one service's data: its schema (Postgres), database
/// (MongoDB) or private memory.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Arc<dyn Backend>,
    cursors: Arc<cursor::CursorCodec>,
    /// This connection's name among the replicas sharing the data (a
    /// [`Lease`]'s holder): unique per connect.
    instance: Arc<str>,
}

impl Store {
    /// Connects to `url`, keeping this service's data under `namespace`
    /// (a schema in Postgres, a database in MongoDB).
    pub async fn connect(
        url: &DatabaseUrl,
        namespace: &str,
        settings: &StoreSettings,
    ) -> Result<Store> {
        let backend: Arc<dyn Backend> = match url {
            DatabaseUrl::Memory => Arc::new(memory::MemoryBackend::new()),
            DatabaseUrl::Postgres(url) => {
                Arc::new(postgres::PostgresBackend::connect(url, namespace, settings).await?)
            }
            DatabaseUrl::MongoDb(url) => {
                Arc::new(mongo::MongoBackend::connect(url, namespace, settings).await?)
            }
        };
        Ok(Self::named(backend, namespace))
    }

    /// Connects as `config` says (`DATABASE_URL`, pool settings, cursor key).
    pub async fn from_config(config: &crate::Config, namespace: &str) -> Result<Store> {
        let namespace = match &config.schema_prefix {
            Some(prefix) => format!("{prefix}_{namespace}"),
            None => namespace.to_string(),
        };
        let store = Self::connect(&config.database_url, &namespace, &config.store).await?;
        Ok(match &config.cursor_key {
            Some(key) => store.with_cursor_key(key.expose().as_bytes()),
            None => store,
        })
    }

    /// A fresh in-memory store.
    pub fn memory() -> Store {
        Self::with_backend(Arc::new(memory::MemoryBackend::new()))
    }

    pub fn with_backend(backend: Arc<dyn Backend>) -> Store {
        Self::named(backend, "default")
    }

    /// Every operation on `backend` traced and timed under `namespace`.
    fn named(backend: Arc<dyn Backend>, namespace: &str) -> Store {
        Store {
            backend: Arc::new(traced::Traced::new(backend, namespace)),
            cursors: Arc::new(cursor::CursorCodec::default()),
            instance: uuid::Uuid::now_v7().to_string().into(),
        }
    }

    /// This connection's name among the replicas that share its data,
    /// unique per connect: the holder of the leases it takes.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Replaces the key cursors are signed with (`STORE_CURSOR_KEY`), so
    /// every replica accepts the others' cursors.
    pub fn with_cursor_key(mut self, key: &[u8]) -> Store {
        self.cursors = Arc::new(cursor::CursorCodec::new(key));
        self
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    pub async fn ping(&self) -> Result<()> {
        self.backend.ping().await
    }

    /// Declares a collection (created with its indexes if missing) and
    /// returns its typed handle.
    pub async fn collection<T>(&self, spec: CollectionSpec) -> Result<Collection<T>> {
        spec.validate()?;
        self.backend.ensure_collection(&spec).await?;
        Ok(Collection {
            store: self.clone(),
            spec: Arc::new(spec),
            _type: PhantomData,
        })
    }
}
