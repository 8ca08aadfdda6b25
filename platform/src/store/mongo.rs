//! MongoDB backend (official driver): a database per service, a native
//! collection per declared collection holding `{_id, v, d}` — the id, the
//! version used for compare-and-swap, and the document — and a native index
//! per declared field on `d.<field>` (unique ones are partial, so documents
//! without the field never collide).

use std::future::IntoFuture;
use std::time::Duration;

use mongodb::bson::{self, Bson, Document, doc};
use mongodb::error::{ErrorKind as MongoErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use serde_json::Value;

use super::{
    Backend, Bound, CollectionSpec, FieldType, IndexSpec, PlannedQuery, RawDocument, Result,
    StoreError, StoreSettings,
};

#[derive(Debug, Clone)]
pub struct MongoBackend {
    client: Client,
    db: Database,
    timeout: Duration,
}

const DUPLICATE_KEY: i32 = 11000;

fn index_name(index: &IndexSpec) -> String {
    format!("d_{}", index.field.replace('.', "_"))
}

fn path(field: &str) -> String {
    format!("d.{field}")
}

fn to_bson(value: &Value) -> Result<Bson> {
    bson::to_bson(value)
        .map_err(|e| StoreError::Invalid(format!("document cannot be stored in MongoDB: {e}")))
}

fn map_err(spec: &CollectionSpec, err: mongodb::error::Error) -> StoreError {
    let duplicate = |message: &str| {
        let index = spec
            .indexes
            .iter()
            .find(|i| message.contains(&format!("index: {} ", index_name(i))))
            .map(|i| i.field.clone())
            .unwrap_or_else(|| "id".to_string());
        StoreError::AlreadyExists { index }
    };
    match err.kind.as_ref() {
        MongoErrorKind::Write(WriteFailure::WriteError(e)) if e.code == DUPLICATE_KEY => {
            duplicate(&e.message)
        }
        MongoErrorKind::Command(e) if e.code == DUPLICATE_KEY => duplicate(&e.message),
        MongoErrorKind::ServerSelection { .. }
        | MongoErrorKind::Io(_)
        | MongoErrorKind::ConnectionPoolCleared { .. }
        | MongoErrorKind::DnsResolve { .. } => StoreError::Unavailable(err.to_string()),
        _ => StoreError::Backend(err.to_string()),
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

/// Escapes regex metacharacters so a needle matches literally.
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

impl MongoBackend {
    pub async fn connect(url: &str, namespace: &str, settings: &StoreSettings) -> Result<Self> {
        let mut options = ClientOptions::parse(url)
            .await
            .map_err(|e| StoreError::Invalid(format!("invalid MongoDB URL: {e}")))?;
        options.app_name = Some("shopmesh".into());
        options.server_selection_timeout = Some(settings.timeout);
        options.connect_timeout = Some(settings.timeout);
        options.max_pool_size = Some(settings.max_connections);
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

    fn coll(&self, spec: &CollectionSpec) -> Collection<Document> {
        self.db.collection(&spec.name)
    }

    async fn bounded<T>(
        &self,
        spec: &CollectionSpec,
        op: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout + Duration::from_millis(500), op.into_future())
            .await
        {
            Ok(result) => result.map_err(|e| map_err(spec, e)),
            Err(_) => Err(StoreError::Unavailable(
                "MongoDB operation timed out".into(),
            )),
        }
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
        // createIndex is idempotent for identical definitions, and creates
        // the collection; concurrent replicas are fine.
        for index in &spec.indexes {
            let mut options = IndexOptions::builder().name(index_name(index)).build();
            if index.unique {
                options.unique = Some(true);
                let ty = match index.ty {
                    FieldType::String => "string",
                    FieldType::Int => "long",
                };
                options.partial_filter_expression =
                    Some(doc! { path(&index.field): {"$type": ty} });
            }
            let model = IndexModel::builder()
                .keys(doc! { path(&index.field): 1 })
                .options(options)
                .build();
            self.bounded(spec, self.coll(spec).create_index(model))
                .await?;
        }
        if spec.indexes.is_empty() {
            let existing = self.bounded(spec, self.db.list_collection_names()).await?;
            if !existing.contains(&spec.name) {
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
        let mut conditions: Vec<Document> = Vec::new();
        for (index, value) in &query.filters {
            conditions.push(doc! { path(&index.field): typed(index, value)? });
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
            conditions
                .push(doc! { path(field): {"$regex": escape_regex(needle), "$options": "i"} });
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
