//! MongoDB backend (official driver): a database per service, a native
//! collection per declared collection holding `{_id, v, d}` — the id, the
//! version used for compare-and-swap, and the document — and a native index
//! per declared field on `d.<field>` (unique ones are partial, so documents
//! without the field never collide).
//!
//! Index names carry a hash of their definition (`d_<field>_<hash>`), so a
//! changed [`IndexSpec`] creates a new index beside the old one instead of
//! failing start-up with IndexKeySpecsConflict; indexes named `d_…` that no
//! longer match the spec are then dropped. Other indexes (an operator's) are
//! left alone.
//!
//! MongoDB uses a partial index only for a query that implies its filter, so
//! an equality on a unique field also states the index's `$type` clause.

use std::future::IntoFuture;
use std::time::Duration;

use futures::TryStreamExt as _;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::error::{ErrorKind as MongoErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, ClientOptions, IndexOptions, WriteConcern};
use mongodb::{Client, Collection, Database, IndexModel};
use serde_json::Value;

use super::{
    Backend, Bound, Cause, CollectionSpec, FieldType, IndexSpec, PlannedQuery, RawDocument, Result,
    StoreError, StoreSettings, WriteAcknowledgment,
};

#[derive(Debug, Clone)]
pub struct MongoBackend {
    client: Client,
    db: Database,
    timeout: Duration,
}

const DUPLICATE_KEY: i32 = 11000;
const NAMESPACE_NOT_FOUND: i32 = 26;
const INDEX_NOT_FOUND: i32 = 27;
/// Names of the indexes this backend manages start with it.
const INDEX_PREFIX: &str = "d_";

/// Server error codes that mean "not now": elections, step-downs,
/// shutdowns, network trouble seen by the server, write-concern timeouts.
/// A retry (with the same idempotency key) may succeed.
const TRANSIENT_CODES: [i32; 16] = [
    6,     // HostUnreachable
    7,     // HostNotFound
    50,    // MaxTimeMSExpired
    64,    // WriteConcernFailed (wtimeout)
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
    10058, // LegacyNotPrimary
    133,   // FailedToSatisfyReadPreference
];

/// The partial filter of a unique index: only documents holding the field
/// with its declared type are indexed.
fn partial_filter(index: &IndexSpec) -> Document {
    let ty = match index.ty {
        FieldType::String => "string",
        FieldType::Int => "long",
    };
    doc! { path(&index.field): {"$type": ty} }
}

/// The native index for a declared one, named after its definition.
fn index_model(index: &IndexSpec) -> IndexModel {
    let keys = doc! { path(&index.field): 1 };
    let partial = index.unique.then(|| partial_filter(index));
    let definition = format!(
        "{keys}|unique={}|partial={}",
        index.unique,
        partial
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    let mut options = IndexOptions::builder()
        .name(index_name(index, &definition))
        .build();
    if index.unique {
        options.unique = Some(true);
        options.partial_filter_expression = partial;
    }
    IndexModel::builder().keys(keys).options(options).build()
}

fn index_name(index: &IndexSpec, definition: &str) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(definition.as_bytes());
    let tail: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{INDEX_PREFIX}{}_{tail}", index.field.replace('.', "_"))
}

fn model_name(model: &IndexModel) -> Option<&str> {
    model.options.as_ref()?.name.as_deref()
}

/// Whether an existing index is one this backend made (and may drop).
fn is_managed(model: &IndexModel) -> bool {
    model_name(model).is_some_and(|n| n.starts_with(INDEX_PREFIX))
        && model.keys.len() == 1
        && model.keys.keys().all(|k| k.starts_with("d."))
}

fn path(field: &str) -> String {
    format!("d.{field}")
}

fn to_bson(value: &Value) -> Result<Bson> {
    bson::to_bson(value)
        .map_err(|e| StoreError::Invalid(format!("document cannot be stored in MongoDB: {e}")))
}

/// The server's error code, if the error carries one.
fn server_code(err: &mongodb::error::Error) -> Option<i32> {
    match err.kind.as_ref() {
        MongoErrorKind::Command(e) => Some(e.code),
        MongoErrorKind::Write(WriteFailure::WriteError(e)) => Some(e.code),
        MongoErrorKind::Write(WriteFailure::WriteConcernError(e)) => Some(e.code),
        _ => None,
    }
}

/// The index a duplicate-key message names: `E11000 duplicate key error
/// collection: db.items index: d_sku_1a2b3c4d dup key: { … }`.
fn duplicate_index_name(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("index: ")?;
    rest.split_whitespace().next()
}

/// What a duplicate on index `name` means for `spec`: the id (`_id_`), a
/// declared field, or an index the spec does not know (reported by its
/// name, never as a clash on the id).
fn duplicate(spec: &CollectionSpec, message: &str) -> StoreError {
    let name = duplicate_index_name(message);
    let index = match name {
        Some("_id_") => "id".to_string(),
        Some(name) => match spec
            .indexes
            .iter()
            .find(|i| model_name(&index_model(i)) == Some(name))
        {
            Some(declared) => declared.field.clone(),
            None => {
                tracing::warn!(
                    collection = %spec.name,
                    index = name,
                    "duplicate key on an index the store did not declare"
                );
                format!("index {name}")
            }
        },
        None => {
            tracing::warn!(collection = %spec.name, %message, "duplicate key on an unnamed index");
            "unknown index".to_string()
        }
    };
    StoreError::AlreadyExists { index }
}

fn map_err(spec: &CollectionSpec, err: mongodb::error::Error) -> StoreError {
    match err.kind.as_ref() {
        MongoErrorKind::Write(WriteFailure::WriteError(e)) if e.code == DUPLICATE_KEY => {
            return duplicate(spec, &e.message);
        }
        MongoErrorKind::Command(e) if e.code == DUPLICATE_KEY => {
            return duplicate(spec, &e.message);
        }
        MongoErrorKind::ServerSelection { .. }
        | MongoErrorKind::Io(_)
        | MongoErrorKind::ConnectionPoolCleared { .. }
        | MongoErrorKind::DnsResolve { .. } => {
            return StoreError::Unavailable(Cause::with_source("MongoDB unreachable", err));
        }
        _ => {}
    }
    let transient = server_code(&err).is_some_and(|code| TRANSIENT_CODES.contains(&code))
        || err.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR)
        || err.contains_label("TransientTransactionError");
    if transient {
        StoreError::Unavailable(Cause::with_source("transient MongoDB failure", err))
    } else {
        StoreError::Backend(Cause::chain(&err))
    }
}

fn to_raw(doc: Document) -> Result<RawDocument> {
    let id = doc
        .get_str("_id")
        .map_err(|e| StoreError::Backend(format!("bad _id: {e}")))?
        .to_string();
    let version = match doc.get("v") {
        Some(Bson::Int64(v)) => *v as u64,
        Some(Bson::Int32(v)) => *v as u64,
        _ => return Err(StoreError::Backend(format!("document {id} has no version"))),
    };
    let body = doc
        .get("d")
        .cloned()
        .unwrap_or(Bson::Null)
        .into_relaxed_extjson();
    Ok(RawDocument { id, version, body })
}

/// Escapes regex metacharacters so a needle matches literally. (A NUL,
/// which MongoDB refuses inside a pattern, never gets here: the planner
/// rejects it as an invalid request.)
fn escape_regex(needle: &str) -> String {
    let mut out = String::with_capacity(needle.len());
    for c in needle.chars() {
        if "\\^$.|?*+()[]{}/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn typed(index: &IndexSpec, value: &Value) -> Result<Bson> {
    Ok(match index.ty {
        FieldType::Int => Bson::Int64(value.as_i64().unwrap_or_default()),
        FieldType::String => to_bson(value)?,
    })
}

/// The filter and sort of a planned query.
fn filter_and_sort(query: &PlannedQuery) -> Result<(Document, Document)> {
    let mut conditions: Vec<Document> = Vec::new();
    for (index, value) in &query.filters {
        conditions.push(doc! { path(&index.field): typed(index, value)? });
        if index.unique {
            // Implies the partial index's filter, so the planner may use it.
            conditions.push(partial_filter(index));
        }
    }
    if let Some((index, lower, upper)) = &query.range {
        let mut range = Document::new();
        for (bound, incl, excl) in [(lower, "$gte", "$gt"), (upper, "$lte", "$lt")] {
            match bound {
                None => {}
                Some(Bound::Inclusive(v)) => {
                    range.insert(incl, typed(index, v)?);
                }
                Some(Bound::Exclusive(v)) => {
                    range.insert(excl, typed(index, v)?);
                }
            }
        }
        conditions.push(doc! { path(&index.field): range });
    }
    if let Some((field, needle)) = &query.text {
        conditions.push(doc! { path(field): {"$regex": escape_regex(needle), "$options": "i"} });
    }
    let (dir, cmp) = if query.descending {
        (-1, "$lt")
    } else {
        (1, "$gt")
    };
    if let Some((sort_value, id)) = &query.after {
        match &query.sort {
            Some(index) => {
                let v = typed(index, sort_value)?;
                let p = path(&index.field);
                conditions.push(doc! {"$or": [
                    { p.clone(): { cmp: v.clone() } },
                    { p: v, "_id": { cmp: id.as_str() } },
                ]});
            }
            None => conditions.push(doc! {"_id": { cmp: id.as_str() }}),
        }
    }
    let filter = if conditions.is_empty() {
        Document::new()
    } else {
        doc! {"$and": conditions}
    };
    let sort = match &query.sort {
        Some(index) => doc! { path(&index.field): dir, "_id": dir },
        None => doc! {"_id": dir},
    };
    Ok((filter, sort))
}

/// Whether an explain answer's winning plan reads index `name`; `None` if
/// the answer has no MongoDB query planner section (a stand-in server).
pub fn plan_uses_index(explain: &Document, name: &str) -> Option<bool> {
    fn walk(value: &Bson, name: &str) -> bool {
        match value {
            Bson::Document(d) => {
                d.get_str("indexName").is_ok_and(|n| n == name) || d.values().any(|v| walk(v, name))
            }
            Bson::Array(items) => items.iter().any(|v| walk(v, name)),
            _ => false,
        }
    }
    let winning = explain
        .get_document("queryPlanner")
        .ok()?
        .get("winningPlan")?;
    Some(walk(winning, name))
}

impl MongoBackend {
    pub async fn connect(url: &str, namespace: &str, settings: &StoreSettings) -> Result<Self> {
        let mut options = ClientOptions::parse(url)
            .await
            .map_err(|e| StoreError::Invalid(format!("invalid MongoDB URL: {e}")))?;
        options.app_name = Some("shopmesh".into());
        options.server_selection_timeout = Some(settings.timeout);
        options.connect_timeout = Some(settings.timeout);
        options.max_pool_size = Some(settings.max_connections);
        if let Some(retry) = settings.retry_writes {
            options.retry_writes = Some(retry);
        }
        if let Some(w) = &settings.write_concern {
            // Bounded like every operation: a majority that cannot be
            // reached is a timeout (unavailable), not a hang.
            let mut concern = WriteConcern::builder()
                .w(match w {
                    WriteAcknowledgment::Majority => Acknowledgment::Majority,
                    WriteAcknowledgment::Nodes(n) => Acknowledgment::Nodes(*n),
                })
                .build();
            concern.w_timeout = Some(settings.timeout);
            options.write_concern = Some(concern);
        }
        let client =
            Client::with_options(options).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let db = client.database(namespace);
        Ok(Self {
            client,
            db,
            timeout: settings.timeout,
        })
    }

    /// Drops the whole database (tests).
    pub async fn drop_database(&self) -> Result<()> {
        let spec = CollectionSpec::new(self.db.name());
        self.bounded(&spec, self.db.drop()).await
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The service's database.
    pub fn database_name(&self) -> &str {
        self.db.name()
    }

    fn coll(&self, spec: &CollectionSpec) -> Collection<Document> {
        self.db.collection(&spec.name)
    }

    async fn bounded<T>(
        &self,
        spec: &CollectionSpec,
        op: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<T> {
        self.timed(op).await?.map_err(|e| map_err(spec, e))
    }

    /// Runs `op` within the timeout, leaving its own error for the caller.
    async fn timed<T>(
        &self,
        op: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<mongodb::error::Result<T>> {
        tokio::time::timeout(self.timeout + Duration::from_millis(500), op.into_future())
            .await
            .map_err(|_| StoreError::Unavailable("MongoDB operation timed out".into()))
    }

    /// The collection's indexes (none if it does not exist yet).
    async fn existing_indexes(&self, spec: &CollectionSpec) -> Result<Vec<IndexModel>> {
        let coll = self.coll(spec);
        let listed = self
            .timed(async { coll.list_indexes().await?.try_collect::<Vec<_>>().await })
            .await?;
        match listed {
            Ok(models) => Ok(models),
            Err(err) if server_code(&err) == Some(NAMESPACE_NOT_FOUND) => Ok(Vec::new()),
            Err(err) => Err(map_err(spec, err)),
        }
    }

    /// Drops an index; one already gone (a concurrent replica) is fine.
    async fn drop_index(&self, spec: &CollectionSpec, name: &str) -> Result<()> {
        let coll = self.coll(spec);
        let dropped = self.timed(coll.drop_index(name)).await?;
        match dropped {
            Ok(()) => Ok(()),
            Err(err)
                if matches!(
                    server_code(&err),
                    Some(INDEX_NOT_FOUND | NAMESPACE_NOT_FOUND)
                ) =>
            {
                Ok(())
            }
            Err(err) => Err(map_err(spec, err)),
        }
    }

    /// Names of the collection's indexes, as the server lists them.
    pub async fn index_names(&self, spec: &CollectionSpec) -> Result<Vec<String>> {
        Ok(self
            .existing_indexes(spec)
            .await?
            .iter()
            .filter_map(model_name)
            .map(str::to_string)
            .collect())
    }

    /// The native index name of a declared one.
    pub fn native_index_name(index: &IndexSpec) -> String {
        model_name(&index_model(index))
            .unwrap_or_default()
            .to_string()
    }

    /// The server's `explain` (queryPlanner verbosity) of the find a query
    /// runs as; see [`plan_uses_index`].
    pub async fn explain_find(
        &self,
        spec: &CollectionSpec,
        query: &PlannedQuery,
    ) -> Result<Document> {
        let (filter, sort) = filter_and_sort(query)?;
        let command = doc! {
            "explain": {
                "find": spec.name.as_str(),
                "filter": filter,
                "sort": sort,
                "limit": (query.limit + 1) as i64,
            },
            "verbosity": "queryPlanner",
        };
        self.bounded(spec, self.db.run_command(command)).await
    }

    async fn exists(&self, spec: &CollectionSpec, id: &str) -> Result<bool> {
        Ok(self
            .bounded(spec, self.coll(spec).count_documents(doc! {"_id": id}))
            .await?
            > 0)
    }
}

#[async_trait::async_trait]
impl Backend for MongoBackend {
    async fn ensure_collection(&self, spec: &CollectionSpec) -> Result<()> {
        // createIndexes is idempotent for identical definitions and creates
        // the collection; concurrent replicas are fine. A name carries its
        // definition, so a changed spec means a new name.
        let coll = self.coll(spec);
        let wanted: Vec<IndexModel> = spec.indexes.iter().map(index_model).collect();
        let existing = self.existing_indexes(spec).await?;
        for model in &wanted {
            let name = model_name(model).unwrap_or_default();
            if existing.iter().any(|e| model_name(e) == Some(name)) {
                continue;
            }
            match self.timed(coll.create_index(model.clone())).await? {
                Ok(_) => {}
                Err(err) => {
                    // An index of ours on the same key under an older
                    // definition may be in the way (IndexOptionsConflict,
                    // IndexKeySpecsConflict): drop it and create again.
                    let stale: Vec<&str> = existing
                        .iter()
                        .filter(|e| e.keys == model.keys && is_managed(e))
                        .filter_map(model_name)
                        .collect();
                    if stale.is_empty() {
                        return Err(map_err(spec, err));
                    }
                    tracing::info!(collection = %spec.name, index = name, error = %err, "replacing an index of an older definition");
                    for old in stale {
                        self.drop_index(spec, old).await?;
                    }
                    self.bounded(spec, coll.create_index(model.clone())).await?;
                }
            }
        }
        // Indexes of ours that the spec no longer declares.
        for old in existing.iter().filter(|e| is_managed(e)) {
            let name = model_name(old).unwrap_or_default();
            if !wanted.iter().any(|w| model_name(w) == Some(name)) {
                tracing::info!(collection = %spec.name, index = name, "dropping an index the spec no longer declares");
                self.drop_index(spec, name).await?;
            }
        }
        if spec.indexes.is_empty() {
            let names = self.bounded(spec, self.db.list_collection_names()).await?;
            if !names.contains(&spec.name) {
                // A concurrent creator may win; that is fine.
                let _ = self
                    .bounded(spec, self.db.create_collection(&spec.name))
                    .await;
            }
        }
        Ok(())
    }

    async fn insert(&self, spec: &CollectionSpec, id: &str, body: &Value) -> Result<()> {
        let document = doc! {"_id": id, "v": 1i64, "d": to_bson(body)?};
        self.bounded(spec, self.coll(spec).insert_one(document))
            .await
            .map(|_| ())
    }

    async fn get(&self, spec: &CollectionSpec, id: &str) -> Result<Option<RawDocument>> {
        self.bounded(spec, self.coll(spec).find_one(doc! {"_id": id}))
            .await?
            .map(to_raw)
            .transpose()
    }

    async fn replace(
        &self,
        spec: &CollectionSpec,
        id: &str,
        expected: u64,
        body: &Value,
    ) -> Result<()> {
        let filter = doc! {"_id": id, "v": expected as i64};
        let replacement = doc! {"_id": id, "v": (expected + 1) as i64, "d": to_bson(body)?};
        let result = self
            .bounded(spec, self.coll(spec).replace_one(filter, replacement))
            .await?;
        if result.matched_count == 1 {
            Ok(())
        } else if self.exists(spec, id).await? {
            Err(StoreError::VersionConflict)
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn delete(&self, spec: &CollectionSpec, id: &str, expected: Option<u64>) -> Result<()> {
        let mut filter = doc! {"_id": id};
        if let Some(v) = expected {
            filter.insert("v", v as i64);
        }
        let result = self
            .bounded(spec, self.coll(spec).delete_one(filter))
            .await?;
        if result.deleted_count == 1 {
            Ok(())
        } else if self.exists(spec, id).await? {
            Err(StoreError::VersionConflict)
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn find(&self, spec: &CollectionSpec, query: &PlannedQuery) -> Result<Vec<RawDocument>> {
        let (filter, sort) = filter_and_sort(query)?;
        let coll = self.coll(spec);
        let limit = (query.limit + 1) as i64;
        self.bounded(spec, async {
            let mut cursor = coll.find(filter).sort(sort).limit(limit).await?;
            let mut docs = Vec::new();
            while cursor.advance().await? {
                docs.push(cursor.deserialize_current()?);
            }
            Ok(docs)
        })
        .await?
        .into_iter()
        .map(to_raw)
        .collect()
    }

    async fn ping(&self) -> Result<()> {
        let spec = CollectionSpec::new(self.db.name());
        self.bounded(&spec, self.db.run_command(doc! {"ping": 1}))
            .await
            .map(|_| ())
    }

    fn name(&self) -> &'static str {
        "mongodb"
    }
}

#[cfg(test)]
mod tests {
    use crate::store::mongo::{
        MongoBackend, duplicate, filter_and_sort, index_model, map_err, plan_uses_index,
    };
    use crate::store::{Cause, CollectionSpec, FieldType, IndexSpec, PlannedQuery, StoreError};
    use mongodb::bson::{self, doc};
    use mongodb::error::ErrorKind as MongoErrorKind;
    use serde_json::Value;

    fn users() -> CollectionSpec {
        CollectionSpec::new("users")
            .index(IndexSpec::new("email", FieldType::String).unique())
            .index(IndexSpec::new("age", FieldType::Int).unique().optional())
            .index(IndexSpec::new("city", FieldType::String))
    }

    fn query(filters: &[(&str, Value)]) -> PlannedQuery {
        let spec = users();
        PlannedQuery {
            filters: filters
                .iter()
                .map(|(f, v)| (spec.find_index(f).unwrap().clone(), v.clone()))
                .collect(),
            range: None,
            text: None,
            sort: None,
            descending: false,
            limit: 1,
            after: None,
        }
    }

    #[test]
    fn equality_on_a_unique_field_states_the_partial_filter() {
        let (filter, _) = filter_and_sort(&query(&[("email", "a@b.c".into())])).unwrap();
        assert_eq!(
            filter,
            doc! {"$and": [{"d.email": "a@b.c"}, {"d.email": {"$type": "string"}}]}
        );
        let (filter, _) = filter_and_sort(&query(&[("age", 42.into())])).unwrap();
        assert_eq!(
            filter,
            doc! {"$and": [{"d.age": 42i64}, {"d.age": {"$type": "long"}}]}
        );
        // The clause is the index's own partial filter, word for word.
        let model = index_model(&users().indexes[0]);
        assert_eq!(
            model.options.unwrap().partial_filter_expression,
            Some(doc! {"d.email": {"$type": "string"}})
        );
    }

    #[test]
    fn equality_on_a_plain_field_has_no_type_clause() {
        let (filter, _) = filter_and_sort(&query(&[("city", "Paris".into())])).unwrap();
        assert_eq!(filter, doc! {"$and": [{"d.city": "Paris"}]});
    }

    #[test]
    fn index_names_change_with_the_definition_only() {
        let plain = IndexSpec::new("email", FieldType::String);
        let unique = plain.clone().unique();
        let name = |i: &IndexSpec| MongoBackend::native_index_name(i);
        assert_ne!(name(&plain), name(&unique));
        assert_ne!(
            name(&unique),
            name(&IndexSpec::new("email", FieldType::Int).unique())
        );
        assert_eq!(
            name(&unique),
            name(&unique.clone().optional()),
            "optional is not stored"
        );
        assert!(name(&plain).starts_with("d_email_"), "{}", name(&plain));
        assert_eq!(
            name(&plain),
            name(&IndexSpec::new("email", FieldType::String))
        );
    }

    #[test]
    fn duplicate_key_errors_name_the_index_they_hit() {
        let spec = users();
        let email = MongoBackend::native_index_name(&spec.indexes[0]);
        let msg = |index: &str| {
            format!(
                "E11000 duplicate key error collection: t.users index: {index} dup key: {{ d.email: \"x\" }}"
            )
        };
        assert_eq!(
            duplicate(&spec, &msg("_id_")),
            StoreError::AlreadyExists { index: "id".into() }
        );
        assert_eq!(
            duplicate(&spec, &msg(&email)),
            StoreError::AlreadyExists {
                index: "email".into()
            }
        );
        assert_eq!(
            duplicate(&spec, &msg("ops_email_lower")),
            StoreError::AlreadyExists {
                index: "index ops_email_lower".into()
            }
        );
        assert_ne!(
            duplicate(&spec, "E11000 duplicate key error"),
            StoreError::AlreadyExists { index: "id".into() }
        );
    }

    fn command_error(code: i32, name: &str, message: &str) -> mongodb::error::Error {
        let e: mongodb::error::CommandError =
            bson::from_document(doc! {"code": code, "codeName": name, "errmsg": message}).unwrap();
        mongodb::error::Error::from(MongoErrorKind::Command(e))
    }

    #[test]
    fn step_downs_and_elections_are_unavailable_not_our_fault() {
        let spec = users();
        for (code, name) in [
            (189, "PrimarySteppedDown"),
            (10107, "NotWritablePrimary"),
            (11602, "InterruptedDueToReplStateChange"),
            (13435, "NotPrimaryNoSecondaryOk"),
            (91, "ShutdownInProgress"),
            (64, "WriteConcernFailed"),
        ] {
            let err = map_err(&spec, command_error(code, name, "not now"));
            assert!(matches!(err, StoreError::Unavailable(_)), "{name}: {err:?}");
            // The driver's error stays attached for the log at the edge.
            let chain = Cause::chain(&err);
            assert!(chain.contains("not now"), "{name}: {chain}");
        }
        let err = map_err(&spec, command_error(2, "BadValue", "bad"));
        assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
        let email = MongoBackend::native_index_name(&spec.indexes[0]);
        let err = map_err(
            &spec,
            command_error(
                11000,
                "DuplicateKey",
                &format!(
                    "E11000 duplicate key error collection: t.users index: {email} dup key: {{}}"
                ),
            ),
        );
        assert_eq!(
            err,
            StoreError::AlreadyExists {
                index: "email".into()
            }
        );
    }

    #[test]
    fn explain_answers_are_read_for_the_winning_index() {
        let ixscan = doc! {"queryPlanner": {"winningPlan": {"stage": "FETCH", "inputStage": {"stage": "IXSCAN", "indexName": "d_email_1"}}}};
        assert_eq!(plan_uses_index(&ixscan, "d_email_1"), Some(true));
        let collscan = doc! {"queryPlanner": {"winningPlan": {"stage": "COLLSCAN"}}};
        assert_eq!(plan_uses_index(&collscan, "d_email_1"), Some(false));
        // MongoDB 7+ nests the classic plan under queryPlan.
        let sbe = doc! {"queryPlanner": {"winningPlan": {"queryPlan": {"stage": "EXPRESS_IXSCAN", "indexName": "d_email_1"}}}};
        assert_eq!(plan_uses_index(&sbe, "d_email_1"), Some(true));
        assert_eq!(plan_uses_index(&doc! {"plan": "scan"}, "d_email_1"), None);
    }
}
