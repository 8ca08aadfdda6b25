//! Group commit for inserts and compare-and-swap replaces on Postgres.
//!
//! Under load many requests write the same table at once (orders,
//! reservations, feed entries, saga steps), each paying a commit of its
//! own. The first write of a kind into a table goes at once; writes of that
//! kind that arrive while it is in flight queue up and go together in the
//! next statement, one commit:
//! - inserts: one multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING id`;
//! - replaces: one `UPDATE … FROM UNNEST(…) WHERE id = … AND version = …
//!   RETURNING id`, each row checked against its own expected version.
//!
//! Each document still gets its own outcome: a row the statement did not
//! write (a taken id or unique field, a version that moved, a missing
//! document) is written again on its own, so its error is exactly the one
//! a single write would give. Two writes of one id never share a statement.
//! With nothing in flight a write goes at once, so batching adds no wait.
//!
//! This is not a multi-document transaction: no invariant rests on two
//! documents being written together, and each one's outcome is its own
//! compare-and-swap or insert.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::oneshot;

use super::PostgresBackend;
use crate::store::lanes::Lanes;
use crate::store::{CollectionSpec, Result, StoreError};
use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;

/// Most rows in one statement.
const MAX_ROWS: usize = 100;

/// The kind of a write: writes of one kind into one table share statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Insert,
    /// CAS on the version the writer read.
    Replace {
        expected: u64,
    },
}

struct Pending {
    spec: CollectionSpec,
    id: String,
    op: Op,
    body: Value,
    done: oneshot::Sender<Result<()>>,
}

/// Queued writes per table and kind (see the module).
#[derive(Default)]
pub(super) struct WriteBatcher {
    lanes: Lanes<Pending>,
}

impl std::fmt::Debug for WriteBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBatcher").finish_non_exhaustive()
    }
}

impl WriteBatcher {
    /// Writes `body` under `id` into `table` (`op`), together with
    /// whatever other writes of that kind into it are waiting.
    pub(super) async fn write(
        backend: &PostgresBackend,
        table: &str,
        spec: &CollectionSpec,
        id: &str,
        op: Op,
        body: &Value,
    ) -> Result<()> {
        let (done, answer) = oneshot::channel();
        let pending = Pending {
            spec: spec.clone(),
            id: id.to_string(),
            op,
            body: body.clone(),
            done,
        };
        let queue = match op {
            Op::Insert => format!("insert {table}"),
            Op::Replace { .. } => format!("replace {table}"),
        };
        let table = table.to_string();
        let lead = backend.batcher().lanes.push(&queue, pending);
        if lead {
            // Its own task: a caller that gives up must not strand the
            // writes queued behind its own.
            let backend = backend.clone();
            tokio::spawn(async move { write_until_empty(&backend, &queue, &table).await });
        }
        answer
            .await
            .map_err(|_| StoreError::Backend("the batch writer stopped".into()))?
    }
}

/// Writes the batches of `queue` (into `table`) until none waits, then
/// lets the next write lead.
async fn write_until_empty(backend: &PostgresBackend, queue: &str, table: &str) {
    while let Some(batch) = backend.batcher().lanes.next(queue, MAX_ROWS) {
        write(backend, table, batch).await;
    }
}

/// One statement for the batch; each document's outcome to its caller.
async fn write(backend: &PostgresBackend, table: &str, batch: Vec<Pending>) {
    // A second document under an id already in this batch goes alone, so
    // that only one of them can be told it was inserted.
    let mut seen = HashSet::new();
    let (together, alone): (Vec<Pending>, Vec<Pending>) =
        batch.into_iter().partition(|p| seen.insert(p.id.clone()));
    if together.len() == 1 {
        for pending in together.into_iter().chain(alone) {
            write_alone(backend, table, pending).await;
        }
        return;
    }
    let mut retry = alone;
    let statement = match together[0].op {
        Op::Insert => backend.insert_rows(table, &together).await,
        Op::Replace { .. } => backend.replace_rows(table, &together).await,
    };
    match statement {
        Ok(written) => {
            for pending in together {
                if written.contains(&pending.id) {
                    let _ = pending.done.send(Ok(()));
                } else {
                    retry.push(pending);
                }
            }
        }
        // The statement may have landed or not: every document's outcome
        // is unknown, as a single insert's would be.
        Err(StoreError::Unavailable(cause)) => {
            for pending in together {
                let _ = pending
                    .done
                    .send(Err(StoreError::Unavailable(cause.clone())));
            }
        }
        // Refused as a whole (a document Postgres cannot store): nothing
        // was written; each one on its own finds out which.
        Err(_) => retry.extend(together),
    }
    for pending in retry {
        write_alone(backend, table, pending).await;
    }
}

/// One write in a statement of its own, with the outcome a single write has.
async fn write_alone(backend: &PostgresBackend, table: &str, pending: Pending) {
    let outcome = match pending.op {
        Op::Insert => {
            backend
                .insert_one(table, &pending.spec, &pending.id, &pending.body)
                .await
        }
        Op::Replace { expected } => {
            backend
                .replace_one(table, &pending.spec, &pending.id, expected, &pending.body)
                .await
        }
    };
    let _ = pending.done.send(outcome);
}

impl PostgresBackend {
    /// The rows of `batch` in one statement; the ids it inserted.
    async fn insert_rows(&self, table: &str, batch: &[Pending]) -> Result<HashSet<String>> {
        let spec = &batch[0].spec;
        let ids: Vec<&str> = batch.iter().map(|p| p.id.as_str()).collect();
        let docs: Vec<String> = batch.iter().map(|p| p.body.to_string()).collect();
        let sql = format!(
            "INSERT INTO {table} (id, version, doc) \
             SELECT u.id, 1, u.doc::jsonb FROM UNNEST($1::text[], $2::text[]) AS u(id, doc) \
             ON CONFLICT DO NOTHING RETURNING id"
        );
        self.written_ids(spec, sqlx::query_as(&sql).bind(&ids).bind(&docs))
            .await
    }

    /// The CAS replaces of `batch` in one statement, each on its own
    /// expected version; the ids it wrote.
    async fn replace_rows(&self, table: &str, batch: &[Pending]) -> Result<HashSet<String>> {
        let spec = &batch[0].spec;
        let ids: Vec<&str> = batch.iter().map(|p| p.id.as_str()).collect();
        let expected: Vec<i64> = batch
            .iter()
            .map(|p| match p.op {
                Op::Replace { expected } => expected as i64,
                Op::Insert => -1,
            })
            .collect();
        let docs: Vec<String> = batch.iter().map(|p| p.body.to_string()).collect();
        let sql = format!(
            "UPDATE {table} AS t SET version = t.version + 1, doc = u.doc::jsonb \
             FROM UNNEST($1::text[], $2::bigint[], $3::text[]) AS u(id, expected, doc) \
             WHERE t.id = u.id AND t.version = u.expected RETURNING t.id"
        );
        self.written_ids(
            spec,
            sqlx::query_as(&sql).bind(&ids).bind(&expected).bind(&docs),
        )
        .await
    }

    /// Runs a statement that returns the id of each row it wrote.
    async fn written_ids<'q>(
        &self,
        spec: &CollectionSpec,
        statement: QueryAs<'q, Postgres, (String,), PgArguments>,
    ) -> Result<HashSet<String>> {
        let rows = self.bounded(spec, statement.fetch_all(self.pool())).await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}

/// Shared with the backend's clones.
pub(super) type Batcher = Arc<WriteBatcher>;
