//! Postgres backend (sqlx): one table per collection in the service's own
//! schema — `id text COLLATE "C" PRIMARY KEY, version bigint, doc jsonb` —
//! and an expression index per declared field. Strings compare with the
//! "C" collation so that order (and so cursors) match the other backends.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row};

use super::query::escape_like;
use super::{
    Backend, Bound, Cause, CollectionSpec, FieldType, IndexSpec, PlannedQuery, RawDocument, Result,
    StoreError, StoreSettings,
};
use write_batch::{Op, WriteBatcher};

mod write_batch;

#[derive(Debug, Clone)]
pub struct PostgresBackend {
    pool: PgPool,
    schema: String,
    timeout: Duration,
    /// Inserts and CAS replaces waiting to go together (see `write_batch`).
    batcher: write_batch::Batcher,
}

/// The outcome of a versioned write that answers how many rows it changed
/// (in column `changed`) and whether the row is there at all (`present`).
fn cas_outcome(spec: &CollectionSpec, row: &PgRow, changed: &str) -> Result<()> {
    let changed: i64 = row.try_get(changed).map_err(|e| map_err(spec, e))?;
    let present: bool = row.try_get("present").map_err(|e| map_err(spec, e))?;
    match (changed, present) {
        (1, _) => Ok(()),
        (_, true) => Err(StoreError::VersionConflict),
        (_, false) => Err(StoreError::NotFound),
    }
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// SQL expression for a declared field; indexes and queries use the same
/// text so the planner matches them.
fn field_expr(index: &IndexSpec) -> String {
    let path = index.field.replace('.', ",");
    match index.ty {
        FieldType::String => format!("((doc #>> '{{{path}}}') COLLATE \"C\")"),
        FieldType::Int => format!("((doc #>> '{{{path}}}')::bigint)"),
    }
}

fn index_name(collection: &str, index: &IndexSpec) -> String {
    let readable = format!("{collection}__{}", index.field.replace('.', "_"));
    if readable.len() <= 60 {
        readable
    } else {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(readable.as_bytes());
        let tail: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}_{tail}", &collection[..collection.len().min(40)])
    }
}

/// Maps a driver error: connection trouble is `Unavailable`, unique
/// violations name the index, everything else is ours.
fn map_err(spec: &CollectionSpec, err: sqlx::Error) -> StoreError {
    let unavailable =
        |message: &str, err: sqlx::Error| StoreError::Unavailable(Cause::with_source(message, err));
    match &err {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            if code == "23505" {
                let constraint = db.constraint().unwrap_or_default();
                let declared = spec
                    .indexes
                    .iter()
                    .find(|i| index_name(&spec.name, i) == constraint);
                let index = match declared {
                    Some(i) => i.field.clone(),
                    None if constraint == format!("{}_pkey", spec.name) => "id".to_string(),
                    None => {
                        // An index the spec does not know (an operator's):
                        // a clash, but not on the id.
                        tracing::warn!(collection = %spec.name, constraint, "unique violation on an undeclared index");
                        format!("index {constraint}")
                    }
                };
                StoreError::AlreadyExists { index }
            } else if code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") {
                unavailable(&format!("database unavailable (SQLSTATE {code})"), err)
            } else if code == "57014" {
                unavailable("statement timed out", err)
            } else {
                StoreError::Backend(format!("SQLSTATE {code}: {}", Cause::chain(&err)))
            }
        }
        sqlx::Error::PoolTimedOut => {
            unavailable("timed out waiting for a database connection", err)
        }
        sqlx::Error::Io(_) => unavailable("database connection failed", err),
        sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            unavailable("database pool closed", err)
        }
        sqlx::Error::Tls(_) => unavailable("database TLS failed", err),
        sqlx::Error::Protocol(_) => unavailable("database protocol error", err),
        _ => StoreError::Backend(Cause::chain(&err)),
    }
}

enum Param {
    Text(String),
    Int(i64),
}

fn param(index: &IndexSpec, value: &Value) -> Param {
    match index.ty {
        FieldType::String => Param::Text(value.as_str().unwrap_or_default().to_string()),
        FieldType::Int => Param::Int(value.as_i64().unwrap_or_default()),
    }
}

impl PostgresBackend {
    /// Connects (lazily: the first operation opens connections) and creates
    /// the schema `namespace` if missing.
    pub async fn connect(url: &str, namespace: &str, settings: &StoreSettings) -> Result<Self> {
        let plain = !namespace.is_empty()
            && namespace.len() <= 48
            && namespace
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            return Err(StoreError::Invalid(format!(
                "schema name {namespace:?} must be [a-z0-9_]"
            )));
        }
        let timeout_ms = settings.timeout.as_millis().to_string();
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("invalid postgres URL: {e}")))?
            .options([
                ("statement_timeout", timeout_ms.as_str()),
                ("lock_timeout", timeout_ms.as_str()),
            ])
            .application_name("shopmesh");
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(0)
            .acquire_timeout(settings.timeout)
            .idle_timeout(Some(Duration::from_secs(300)))
            .test_before_acquire(true)
            .connect_lazy_with(options);
        let backend = Self {
            pool,
            schema: namespace.to_string(),
            timeout: settings.timeout,
            batcher: Default::default(),
        };
        let ddl = format!("CREATE SCHEMA IF NOT EXISTS {}", quote(namespace));
        let spec = CollectionSpec::new(namespace);
        backend
            .bounded(&spec, async {
                // Concurrent CREATE SCHEMA IF NOT EXISTS can still collide;
                // serialise on an advisory lock.
                let mut tx = backend.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(namespace)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(&ddl).execute(&mut *tx).await?;
                tx.commit().await
            })
            .await?;
        Ok(backend)
    }

    /// The pool, for tests and tools (e.g. dropping a test schema).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Drops the schema and everything in it.
    pub async fn drop_schema(&self) -> Result<()> {
        let spec = CollectionSpec::new(&self.schema);
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(&self.schema));
        self.bounded(&spec, sqlx::query(&sql).execute(&self.pool))
            .await
            .map(|_| ())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn batcher(&self) -> &write_batch::WriteBatcher {
        &self.batcher
    }

    /// One plain insert.
    pub(super) async fn insert_one(
        &self,
        table: &str,
        spec: &CollectionSpec,
        id: &str,
        body: &Value,
    ) -> Result<()> {
        let sql = format!("INSERT INTO {table} (id, version, doc) VALUES ($1, 1, $2)");
        self.bounded(
            spec,
            sqlx::query(&sql)
                .bind(id)
                .bind(sqlx::types::Json(body))
                .execute(&self.pool),
        )
        .await
        .map(|_| ())
    }

    /// One plain CAS replace.
    pub(super) async fn replace_one(
        &self,
        table: &str,
        spec: &CollectionSpec,
        id: &str,
        expected: u64,
        body: &Value,
    ) -> Result<()> {
        // One round trip: the update, and whether the row exists at all.
        let sql = format!(
            "WITH updated AS (UPDATE {table} SET version = version + 1, doc = $3 WHERE id = $1 AND version = $2 RETURNING 1) \
             SELECT (SELECT count(*) FROM updated) AS updated, EXISTS (SELECT 1 FROM {table} WHERE id = $1) AS present"
        );
        let row = self
            .bounded(
                spec,
                sqlx::query(&sql)
                    .bind(id)
                    .bind(expected as i64)
                    .bind(sqlx::types::Json(body))
                    .fetch_one(&self.pool),
            )
            .await?;
        cas_outcome(spec, &row, "updated")
    }

    fn table(&self, spec: &CollectionSpec) -> String {
        format!("{}.{}", quote(&self.schema), quote(&spec.name))
    }

    /// Runs `op` within the configured timeout, mapping errors.
    pub(super) async fn bounded<T>(
        &self,
        spec: &CollectionSpec,
        op: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout + Duration::from_millis(500), op).await {
            Ok(result) => result.map_err(|e| map_err(spec, e)),
            Err(_) => Err(StoreError::Unavailable(
                "database operation timed out".into(),
            )),
        }
    }
}

fn row_to_doc(row: &PgRow) -> Result<RawDocument, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let version: i64 = row.try_get("version")?;
    let body: sqlx::types::Json<Value> = row.try_get("doc")?;
    Ok(RawDocument {
        id,
        version: version as u64,
        body: body.0,
    })
}

#[async_trait::async_trait]
impl Backend for PostgresBackend {
    async fn ensure_collection(&self, spec: &CollectionSpec) -> Result<()> {
        let table = self.table(spec);
        let mut statements = vec![format!(
            "CREATE TABLE IF NOT EXISTS {table} (id text COLLATE \"C\" PRIMARY KEY, version bigint NOT NULL, doc jsonb NOT NULL)"
        )];
        for index in &spec.indexes {
            statements.push(format!(
                "CREATE {}INDEX IF NOT EXISTS {} ON {table} ({})",
                if index.unique { "UNIQUE " } else { "" },
                quote(&index_name(&spec.name, index)),
                field_expr(index),
            ));
        }
        let lock_key = format!("{}.{}", self.schema, spec.name);
        self.bounded(spec, async {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(&lock_key)
                .execute(&mut *tx)
                .await?;
            for sql in &statements {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            tx.commit().await
        })
        .await
    }

    async fn insert(&self, spec: &CollectionSpec, id: &str, body: &Value) -> Result<()> {
        WriteBatcher::write(self, &self.table(spec), spec, id, Op::Insert, body).await
    }

    async fn get(&self, spec: &CollectionSpec, id: &str) -> Result<Option<RawDocument>> {
        let sql = format!(
            "SELECT id, version, doc FROM {} WHERE id = $1",
            self.table(spec)
        );
        let row = self
            .bounded(spec, sqlx::query(&sql).bind(id).fetch_optional(&self.pool))
            .await?;
        row.map(|r| row_to_doc(&r).map_err(|e| map_err(spec, e)))
            .transpose()
    }

    async fn replace(
        &self,
        spec: &CollectionSpec,
        id: &str,
        expected: u64,
        body: &Value,
    ) -> Result<()> {
        let table = self.table(spec);
        WriteBatcher::write(self, &table, spec, id, Op::Replace { expected }, body).await
    }

    async fn delete(&self, spec: &CollectionSpec, id: &str, expected: Option<u64>) -> Result<()> {
        let table = self.table(spec);
        let sql = format!(
            "WITH deleted AS (DELETE FROM {table} WHERE id = $1 AND ($2::bigint IS NULL OR version = $2) RETURNING 1) \
             SELECT (SELECT count(*) FROM deleted) AS deleted, EXISTS (SELECT 1 FROM {table} WHERE id = $1) AS present"
        );
        let row = self
            .bounded(
                spec,
                sqlx::query(&sql)
                    .bind(id)
                    .bind(expected.map(|v| v as i64))
                    .fetch_one(&self.pool),
            )
            .await?;
        cas_outcome(spec, &row, "deleted")
    }

    async fn find(&self, spec: &CollectionSpec, query: &PlannedQuery) -> Result<Vec<RawDocument>> {
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        let next = |p: Param, params: &mut Vec<Param>| {
            params.push(p);
            format!("${}", params.len())
        };
        for (index, value) in &query.filters {
            let n = next(param(index, value), &mut params);
            conditions.push(format!("{} = {n}", field_expr(index)));
        }
        if let Some((index, lower, upper)) = &query.range {
            for (bound, incl, excl) in [(lower, ">=", ">"), (upper, "<=", "<")] {
                match bound {
                    None => {}
                    Some(Bound::Inclusive(v)) => {
                        let n = next(param(index, v), &mut params);
                        conditions.push(format!("{} {incl} {n}", field_expr(index)));
                    }
                    Some(Bound::Exclusive(v)) => {
                        let n = next(param(index, v), &mut params);
                        conditions.push(format!("{} {excl} {n}", field_expr(index)));
                    }
                }
            }
        }
        if let Some((field, needle)) = &query.text {
            let n = next(
                Param::Text(format!("%{}%", escape_like(needle))),
                &mut params,
            );
            conditions.push(format!(
                "(doc #>> '{{{}}}') ILIKE {n} ESCAPE '\\'",
                field.replace('.', ",")
            ));
        }
        let (dir, cmp) = if query.descending {
            ("DESC", "<")
        } else {
            ("ASC", ">")
        };
        let order = match &query.sort {
            Some(index) => format!("{} {dir}, id {dir}", field_expr(index)),
            None => format!("id {dir}"),
        };
        if let Some((sort_value, id)) = &query.after {
            match &query.sort {
                Some(index) => {
                    let v = next(param(index, sort_value), &mut params);
                    let i = next(Param::Text(id.clone()), &mut params);
                    conditions.push(format!("({}, id) {cmp} ({v}, {i})", field_expr(index)));
                }
                None => {
                    let i = next(Param::Text(id.clone()), &mut params);
                    conditions.push(format!("id {cmp} {i}"));
                }
            }
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT id, version, doc FROM {} {where_clause} ORDER BY {order} LIMIT {}",
            self.table(spec),
            query.limit + 1
        );
        let mut q = sqlx::query::<Postgres>(&sql);
        for p in params {
            q = match p {
                Param::Text(s) => q.bind(s),
                Param::Int(i) => q.bind(i),
            };
        }
        let rows = self.bounded(spec, q.fetch_all(&self.pool)).await?;
        rows.iter()
            .map(|r| row_to_doc(r).map_err(|e| map_err(spec, e)))
            .collect()
    }

    async fn ping(&self) -> Result<()> {
        let spec = CollectionSpec::new(&self.schema);
        self.bounded(&spec, sqlx::query("SELECT 1").execute(&self.pool))
            .await
            .map(|_| ())
    }

    fn name(&self) -> &'static str {
        "postgres"
    }
}

#[cfg(test)]
mod tests {
    use crate::store::postgres::map_err;
    use crate::store::{Cause, CollectionSpec, StoreError};
    use std::error::Error as _;

    #[test]
    fn connection_failures_keep_the_driver_error_as_their_source() {
        let spec = CollectionSpec::new("things");
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused by peer");
        let err = map_err(&spec, sqlx::Error::Io(io));
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "store unavailable: database connection failed"
        );
        assert!(err.source().is_some());
        let chain = Cause::chain(&err);
        assert!(chain.contains("refused by peer"), "{chain}");
        assert_eq!(chain.matches("refused by peer").count(), 1, "{chain}");

        let err = map_err(&spec, sqlx::Error::PoolTimedOut);
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(err.source().is_some());
    }

    #[test]
    fn other_failures_are_ours_with_the_whole_chain() {
        let spec = CollectionSpec::new("things");
        let err = map_err(&spec, sqlx::Error::RowNotFound);
        assert!(
            matches!(&err, StoreError::Backend(m) if m.contains("no rows")),
            "{err:?}"
        );
    }
}
