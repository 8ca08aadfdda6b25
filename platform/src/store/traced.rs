//! A span and a duration sample for every store operation.
//!
//! [`Traced`] wraps whichever backend `DATABASE_URL` chose: each operation
//! runs in a CLIENT span named `<operation> <collection>` with the
//! OpenTelemetry database attributes (`db.system.name` `postgresql`,
//! `mongodb` or `memory`, `db.operation.name`, `db.collection.name`,
//! `db.namespace`), and lands in `db_client_operation_duration_seconds`.
//! Expected answers (not found, version conflict, duplicate) are outcomes,
//! not errors; an unreachable or failing backend marks the span ERROR.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tracing::Instrument as _;

use super::{Backend, CollectionSpec, PlannedQuery, RawDocument, Result, StoreError};

#[derive(Debug)]
pub(super) struct Traced {
    inner: Arc<dyn Backend>,
    system: &'static str,
    namespace: Arc<str>,
    /// The component whose data this is (`order-svc` for `<prefix>_order`),
    /// as fault flags name it.
    component: String,
}

impl Traced {
    pub(super) fn new(inner: Arc<dyn Backend>, namespace: &str) -> Self {
        let system = match inner.name() {
            "postgres" => "postgresql",
            other => other,
        };
        Self {
            inner,
            system,
            namespace: namespace.into(),
            component: format!("{}-svc", namespace.rsplit('_').next().unwrap_or(namespace)),
        }
    }

    async fn run<T>(
        &self,
        operation: &'static str,
        collection: &str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let span = tracing::info_span!(
            "db",
            otel.name = %format!("{operation} {collection}"),
            otel.kind = "client",
            db.system.name = self.system,
            db.operation.name = operation,
            db.collection.name = %collection,
            db.namespace = %self.namespace,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let started = Instant::now();
        let slowed = async {
            crate::flags::pause(crate::flags::STORE_LATENCY, Some(self.component.as_str())).await;
            work.await
        };
        let result = slowed.instrument(span.clone()).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(StoreError::NotFound) => "not_found",
            Err(StoreError::AlreadyExists { .. }) => "already_exists",
            Err(StoreError::VersionConflict) => "version_conflict",
            Err(StoreError::Invalid(_)) => "invalid",
            Err(err @ (StoreError::Unavailable(_) | StoreError::Backend(_))) => {
                let kind = if matches!(err, StoreError::Unavailable(_)) {
                    "unavailable"
                } else {
                    "backend"
                };
                crate::telemetry::record_error(&span, kind, err);
                kind
            }
        };
        crate::metrics::observe(
            &crate::metrics::DB_DURATION,
            &[&self.namespace, self.system, operation, collection, outcome],
            started.elapsed(),
        );
        result
    }
}

#[async_trait::async_trait]
impl Backend for Traced {
    async fn ensure_collection(&self, spec: &CollectionSpec) -> Result<()> {
        self.run(
            "ensure_collection",
            &spec.name,
            self.inner.ensure_collection(spec),
        )
        .await
    }

    async fn insert(&self, spec: &CollectionSpec, id: &str, body: &Value) -> Result<()> {
        self.run("insert", &spec.name, self.inner.insert(spec, id, body))
            .await
    }

    async fn get(&self, spec: &CollectionSpec, id: &str) -> Result<Option<RawDocument>> {
        self.run("get", &spec.name, self.inner.get(spec, id)).await
    }

    async fn replace(
        &self,
        spec: &CollectionSpec,
        id: &str,
        expected: u64,
        body: &Value,
    ) -> Result<()> {
        self.run(
            "replace",
            &spec.name,
            self.inner.replace(spec, id, expected, body),
        )
        .await
    }

    async fn delete(&self, spec: &CollectionSpec, id: &str, expected: Option<u64>) -> Result<()> {
        self.run("delete", &spec.name, self.inner.delete(spec, id, expected))
            .await
    }

    async fn find(&self, spec: &CollectionSpec, query: &PlannedQuery) -> Result<Vec<RawDocument>> {
        self.run("find", &spec.name, self.inner.find(spec, query))
            .await
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }
}
