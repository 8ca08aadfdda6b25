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
pub mod memory;
pub mod mongo;
pub mod postgres;
mod traced;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use coalesce::Coalescer;

use crate::config::DatabaseUrl;
use crate::error::ErrorKind;

/// Largest document accepted, in bytes of JSON (MongoDB's own limit).
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
/// Largest page a query may ask for.
pub const MAX_PAGE: usize = 1000;

/// What can go wrong with a store operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("document not found")]
    NotFound,
    /// A unique index (or the id) already holds the value.
    #[error("a document with the same {index} already exists")]
    AlreadyExists { index: String },
    /// The document changed since it was read.
    #[error("version conflict: the document changed since it was read")]
    VersionConflict,
    /// The backend cannot be reached (or timed out); retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The request itself is wrong: undeclared field, bad cursor, wrong type…
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// Anything else the backend reported: our fault.
    #[error("store failure: {0}")]
    Backend(String),
}

impl StoreError {
    /// Kind for the shared error table.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound => ErrorKind::NotFound,
            StoreError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            StoreError::VersionConflict => ErrorKind::Aborted,
            StoreError::Unavailable(_) => ErrorKind::Unavailable,
            StoreError::Invalid(_) => ErrorKind::InvalidArgument,
            StoreError::Backend(_) => ErrorKind::Internal,
        }
    }
}

impl StoreError {
    /// For a listing: a rejected query here means the client's cursor.
    pub fn into_list_status(self) -> tonic::Status {
        match self {
            StoreError::Invalid(_) => {
                crate::error::invalid_fields([("cursor", "invalid cursor".to_string())])
            }
            other => other.into(),
        }
    }
}

impl From<StoreError> for tonic::Status {
    fn from(err: StoreError) -> Self {
        let kind = err.kind();
        match kind {
            ErrorKind::Internal => {
                tracing::error!(error = %err, "store failure");
                kind.status("internal error")
            }
            ErrorKind::Unavailable => {
                tracing::warn!(error = %err, "store unavailable");
                kind.status("storage is unavailable, retry later")
            }
            _ => kind.status(err.to_string()),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Type of an indexed field, which fixes how it compares and sorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// Compared byte-wise (UTF-8), like Rust's `str` ordering.
    String,
    /// Signed 64-bit integer.
    Int,
}

/// A secondary index on one field (a dotted path such as `address.city`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub field: String,
    pub ty: FieldType,
    pub unique: bool,
    /// Whether documents may lack the field (or hold null). Only required
    /// fields can be sorted on; a missing value never collides in a unique
    /// index.
    pub optional: bool,
}

impl IndexSpec {
    pub fn new(field: &str, ty: FieldType) -> Self {
        Self {
            field: field.to_string(),
            ty,
            unique: false,
            optional: false,
        }
    }
    pub fn unique(mut self) -> Self {
        self.unique = true;
        self
    }
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
}

/// A collection and its indexes, declared by the service that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionSpec {
    pub name: String,
    pub indexes: Vec<IndexSpec>,
    /// The one string field that [`Query::text`] searches (case-insensitive
    /// "contains").
    pub text_field: Option<String>,
}

impl CollectionSpec {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            indexes: Vec::new(),
            text_field: None,
        }
    }

    pub fn index(mut self, index: IndexSpec) -> Self {
        self.indexes.push(index);
        self
    }

    pub fn text(mut self, field: &str) -> Self {
        self.text_field = Some(field.to_string());
        self
    }

    pub fn find_index(&self, field: &str) -> Option<&IndexSpec> {
        self.indexes.iter().find(|i| i.field == field)
    }

    /// Names are used as SQL identifiers and index names: keep them plain.
    pub fn validate(&self) -> Result<()> {
        let plain = |s: &str, dots: bool| {
            !s.is_empty()
                && s.len() <= 48
                && s.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || (dots && c == '.')
                })
                && !s.starts_with(['.', '_'])
        };
        if !plain(&self.name, false) {
            return Err(StoreError::Invalid(format!(
                "collection name {:?} must be [a-z0-9_]",
                self.name
            )));
        }
        for index in &self.indexes {
            if !plain(&index.field, true) || index.field == "id" {
                return Err(StoreError::Invalid(format!(
                    "index field {:?} must be [a-z0-9_.] and not id",
                    index.field
                )));
            }
        }
        if let Some(text) = &self.text_field
            && !plain(text, true)
        {
            return Err(StoreError::Invalid(format!(
                "text field {text:?} must be [a-z0-9_.]"
            )));
        }
        Ok(())
    }

    /// Checks a document before a write: every indexed field has its type,
    /// and required ones are present.
    pub fn check_document(&self, doc: &Value) -> Result<()> {
        if !doc.is_object() {
            return Err(StoreError::Invalid(
                "a document must be a JSON object".into(),
            ));
        }
        for index in &self.indexes {
            match lookup(doc, &index.field) {
                None | Some(Value::Null) if index.optional => {}
                None | Some(Value::Null) => {
                    return Err(StoreError::Invalid(format!(
                        "indexed field {} is missing",
                        index.field
                    )));
                }
                Some(value) => check_type(&index.field, index.ty, value)?,
            }
        }
        Ok(())
    }
}

/// The value at a dotted path.
pub fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(doc, |v, key| v.get(key))
}

fn check_type(field: &str, ty: FieldType, value: &Value) -> Result<()> {
    let ok = match ty {
        FieldType::String => value.is_string(),
        FieldType::Int => value.is_i64(),
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "field {field} must be {}",
            match ty {
                FieldType::String => "a string",
                FieldType::Int => "a 64-bit integer",
            }
        )))
    }
}

/// A stored document as the backends see it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawDocument {
    pub id: String,
    pub version: u64,
    pub body: Value,
}

/// A bound of a range condition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Bound {
    Inclusive(Value),
    Exclusive(Value),
}

/// `lower <? field <? upper` on one indexed field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Range {
    pub field: String,
    pub lower: Option<Bound>,
    pub upper: Option<Bound>,
}

/// A query on one collection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Query {
    /// Equality on indexed fields.
    pub filters: Vec<(String, Value)>,
    pub range: Option<Range>,
    /// Case-insensitive "contains" on the collection's text field.
    pub text: Option<String>,
    /// Indexed field to sort by (`None`: by id, which for UUIDv7 ids is
    /// creation order); ties are broken by id.
    pub sort_by: Option<String>,
    pub descending: bool,
    #[serde(skip)]
    pub limit: usize,
    #[serde(skip)]
    pub cursor: Option<String>,
}

impl Default for Query {
    fn default() -> Self {
        Self {
            filters: Vec::new(),
            range: None,
            text: None,
            sort_by: None,
            descending: false,
            limit: 20,
            cursor: None,
        }
    }
}

impl Query {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn eq(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.filters.push((field.to_string(), value.into()));
        self
    }
    pub fn range(mut self, field: &str, lower: Option<Bound>, upper: Option<Bound>) -> Self {
        self.range = Some(Range {
            field: field.to_string(),
            lower,
            upper,
        });
        self
    }
    pub fn text(mut self, needle: &str) -> Self {
        self.text = Some(needle.to_string());
        self
    }
    pub fn sort(mut self, field: &str, descending: bool) -> Self {
        self.sort_by = Some(field.to_string());
        self.descending = descending;
        self
    }
    pub fn sort_by_id(mut self, descending: bool) -> Self {
        self.sort_by = None;
        self.descending = descending;
        self
    }
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
    pub fn after(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }

    /// The page an API request asks for: limit 0 means 20, at most 100; an
    /// empty cursor means the first page.
    pub fn page(self, page: Option<&proto::common::PageRequest>) -> Self {
        let limit = match page.map(|p| p.limit).unwrap_or(0) {
            0 => 20,
            n => (n as usize).min(100),
        };
        let cursor = page.map(|p| p.cursor.clone()).filter(|c| !c.is_empty());
        self.limit(limit).after(cursor)
    }
}

/// A query checked against its collection, with the cursor decoded: what a
/// backend executes.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedQuery {
    pub filters: Vec<(IndexSpec, Value)>,
    pub range: Option<(IndexSpec, Option<Bound>, Option<Bound>)>,
    /// (field, needle) for the collection's text field.
    pub text: Option<(String, String)>,
    /// `None`: sort by id only.
    pub sort: Option<IndexSpec>,
    pub descending: bool,
    pub limit: usize,
    /// Position after which the page starts: (sort value or null, id).
    pub after: Option<(Value, String)>,
}

impl PlannedQuery {
    /// Sort key of a document under this query.
    pub fn sort_key(&self, doc: &RawDocument) -> Value {
        match &self.sort {
            Some(index) => lookup(&doc.body, &index.field)
                .cloned()
                .unwrap_or(Value::Null),
            None => Value::Null,
        }
    }
}

fn plan(
    spec: &CollectionSpec,
    query: &Query,
    cursors: &cursor::CursorCodec,
) -> Result<PlannedQuery> {
    if query.limit == 0 || query.limit > MAX_PAGE {
        return Err(StoreError::Invalid(format!("limit must be 1..={MAX_PAGE}")));
    }
    let indexed = |field: &str| {
        spec.find_index(field).cloned().ok_or_else(|| {
            StoreError::Invalid(format!("{field} is not an indexed field of {}", spec.name))
        })
    };
    let mut filters = Vec::new();
    for (field, value) in &query.filters {
        let index = indexed(field)?;
        check_type(field, index.ty, value)?;
        filters.push((index, value.clone()));
    }
    let range = match &query.range {
        None => None,
        Some(r) => {
            let index = indexed(&r.field)?;
            for bound in [&r.lower, &r.upper].into_iter().flatten() {
                let (Bound::Inclusive(v) | Bound::Exclusive(v)) = bound;
                check_type(&r.field, index.ty, v)?;
            }
            Some((index, r.lower.clone(), r.upper.clone()))
        }
    };
    let text = match &query.text {
        None => None,
        Some(needle) if needle.contains('\0') => {
            // MongoDB refuses a pattern holding NUL and Postgres text cannot
            // hold one: a request error on every backend.
            return Err(StoreError::Invalid(
                "text search must not contain a NUL character".into(),
            ));
        }
        Some(needle) => {
            let field = spec
                .text_field
                .clone()
                .ok_or_else(|| StoreError::Invalid(format!("{} has no text field", spec.name)))?;
            Some((field, needle.clone()))
        }
    };
    let sort = match &query.sort_by {
        None => None,
        Some(field) => {
            let index = indexed(field)?;
            if index.optional {
                return Err(StoreError::Invalid(format!(
                    "cannot sort on optional field {field}"
                )));
            }
            Some(index)
        }
    };
    let after = match &query.cursor {
        None => None,
        Some(token) => Some(cursors.decode(&spec.name, query, token)?),
    };
    Ok(PlannedQuery {
        filters,
        range,
        text,
        sort,
        descending: query.descending,
        limit: query.limit,
        after,
    })
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Opaque; `None` on the last page.
    pub next_cursor: Option<String>,
}

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

/// Pool and timeout settings of the network backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// Longest any single operation (including waiting for a connection)
    /// may take before it fails with [`StoreError::Unavailable`].
    pub timeout: Duration,
    pub max_connections: u32,
    /// MongoDB: how many members must acknowledge a write
    /// (`MONGODB_WRITE_CONCERN`); `None` keeps the URL's (or the server's)
    /// default. Waiting for it is bounded by `timeout`.
    pub write_concern: Option<WriteAcknowledgment>,
    /// MongoDB: retry a write once after a step-down or network error
    /// (`MONGODB_RETRY_WRITES`); `None` keeps the URL's (or the driver's,
    /// on) default. Replica sets only.
    pub retry_writes: Option<bool>,
}

/// A MongoDB write concern's `w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAcknowledgment {
    /// A majority of the replica set's voting members.
    Majority,
    /// That many members (1: the primary alone).
    Nodes(u32),
}

impl std::str::FromStr for WriteAcknowledgment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "majority" => Ok(Self::Majority),
            n => match n.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(Self::Nodes(n)),
                _ => Err("expected majority or a number of members (at least 1)".into()),
            },
        }
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3),
            max_connections: 10,
            write_concern: None,
            retry_writes: None,
        }
    }
}

/// A connection to one service's data: its schema (Postgres), database
/// (MongoDB) or private memory.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Arc<dyn Backend>,
    cursors: Arc<cursor::CursorCodec>,
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
        }
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

/// A document with its id and the version a CAS write must name.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub id: String,
    pub version: u64,
    pub value: T,
}

/// Typed access to one collection.
pub struct Collection<T> {
    store: Store,
    spec: Arc<CollectionSpec>,
    _type: PhantomData<fn() -> T>,
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
    pub async fn update<E, F>(&self, id: &str, mut change: F) -> Result<Result<Versioned<T>, E>>
    where
        F: FnMut(&mut T) -> Result<(), E> + Send,
        E: Send,
    {
        for attempt in 0..MAX_UPDATE_ATTEMPTS {
            let mut current = self.get(id).await?;
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
    pub async fn modify<F>(&self, id: &str, mut change: F) -> Result<Versioned<T>>
    where
        F: FnMut(&mut T) + Send,
    {
        match self
            .update::<std::convert::Infallible, _>(id, |doc| {
                change(doc);
                Ok(())
            })
            .await?
        {
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

fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control()) {
        return Err(StoreError::Invalid(
            "id must be 1..=128 printable characters".into(),
        ));
    }
    Ok(())
}

/// Compares two JSON values of one indexed field (strings byte-wise,
/// integers numerically, null first).
pub fn compare_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Number(x), Value::Number(y)) => x.as_i64().cmp(&y.as_i64()),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// Escapes `%`, `_` and `\` for a LIKE pattern.
pub(crate) fn escape_like(needle: &str) -> String {
    let mut out = String::with_capacity(needle.len() + 2);
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
