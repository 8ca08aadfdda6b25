//! Group commit for inserts on Postgres.
//!
//! Under load many requests insert into the same table at once (orders,
//! reservations, feed entries), each paying a commit of its own. The first
//! insert into a table writes at once; inserts that arrive while it is in
//! flight queue up and go together in the next statement: one multi-row
//! `INSERT … ON CONFLICT DO NOTHING RETURNING id`, one commit. Each document
//! still gets its own outcome: a row the statement did not insert (a
//! taken id or unique field) is inserted again on its own, so its error
//! names the index exactly as a single insert's would. With nothing in
//! flight an insert is written at once, so batching adds no wait.
//!
//! This is not a multi-document transaction: no invariant rests on two
//! documents being written together, and each one's outcome is its own.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::oneshot;

use super::postgres::PostgresBackend;
use super::{CollectionSpec, Result, StoreError};

/// Most rows in one statement.
const MAX_ROWS: usize = 100;

struct Pending {
    spec: CollectionSpec,
    id: String,
    body: Value,
    done: oneshot::Sender<Result<()>>,
}

/// Queued inserts per table (see the module).
#[derive(Default)]
pub(super) struct InsertBatcher {
    queues: Mutex<HashMap<String, Vec<Pending>>>,
}

impl std::fmt::Debug for InsertBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsertBatcher").finish_non_exhaustive()
    }
}

impl InsertBatcher {
    /// Inserts `body` under `id` into `table`, together with whatever
    /// other inserts into it are waiting.
    pub(super) async fn insert(
        backend: &PostgresBackend,
        table: String,
        spec: &CollectionSpec,
        id: &str,
        body: &Value,
    ) -> Result<()> {
        let (done, answer) = oneshot::channel();
        let pending = Pending {
            spec: spec.clone(),
            id: id.to_string(),
            body: body.clone(),
            done,
        };
        let lead = {
            let mut queues = backend
                .batcher()
                .queues
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match queues.get_mut(&table) {
                Some(queue) => {
                    queue.push(pending);
                    false
                }
                None => {
                    queues.insert(table.clone(), vec![pending]);
                    true
                }
            }
        };
        if lead {
            // Its own task: a caller that gives up must not strand the
            // inserts queued behind its own.
            let backend = backend.clone();
            tokio::spawn(async move { write_until_empty(&backend, &table).await });
        }
        answer
            .await
            .map_err(|_| StoreError::Backend("the insert writer stopped".into()))?
    }
}

/// Writes batches for `table` until none waits, then lets the next insert
/// lead.
async fn write_until_empty(backend: &PostgresBackend, table: &str) {
    loop {
        let batch = {
            let mut queues = backend
                .batcher()
                .queues
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let Some(queue) = queues.get_mut(table) else {
                return;
            };
            if queue.is_empty() {
                queues.remove(table);
                return;
            }
            let take = queue.len().min(MAX_ROWS);
            queue.drain(..take).collect::<Vec<_>>()
        };
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
            let outcome = backend
                .insert_one(table, &pending.spec, &pending.id, &pending.body)
                .await;
            let _ = pending.done.send(outcome);
        }
        return;
    }
    let mut retry = alone;
    match backend.insert_rows(table, &together).await {
        Ok(inserted) => {
            for pending in together {
                if inserted.contains(&pending.id) {
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
        let outcome = backend
            .insert_one(table, &pending.spec, &pending.id, &pending.body)
            .await;
        let _ = pending.done.send(outcome);
    }
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
        let rows: Vec<(String,)> = self
            .bounded(
                spec,
                sqlx::query_as(&sql)
                    .bind(&ids)
                    .bind(&docs)
                    .fetch_all(self.pool()),
            )
            .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}

/// Shared with the backend's clones.
pub(super) type Batcher = Arc<InsertBatcher>;
