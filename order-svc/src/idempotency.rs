//! Idempotency keys with Stripe's semantics: the first response is stored
//! and replayed for the same key and the same request; the same key with
//! another request is refused; a duplicate that arrives while the first is
//! still running waits for it. Keys are scoped per user and operation and
//! kept at least 24 hours (pruned after 48).

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use platform::store::{
    Bound, Collection, CollectionSpec, FieldType, IndexSpec, Query, StoreError, Versioned,
};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tonic::Status;

/// How long records are kept.
pub const RETENTION: Duration = Duration::from_secs(48 * 3600);
/// After this long an unfinished first request is presumed dead and a
/// duplicate may take over: twice the longest a request can run (its
/// budget, the gateway's 5 s deadline), so a careful client retrying after
/// a crash succeeds within seconds.
pub const TAKEOVER_AFTER: Duration = Duration::from_secs(10);
/// Longest a duplicate waits for the first request to finish before it is
/// told to retry (409 with `Retry-After`).
pub const DUPLICATE_WAIT: Duration = Duration::from_secs(1);

/// How keyed work failed, and whether its key may be used again at once.
#[derive(Debug)]
pub struct Failure {
    pub status: Status,
    /// The outcome is unknown (the resource may exist): keep the key in
    /// progress so the retry takes it over and finds out.
    pub keep_key: bool,
}

impl From<Status> for Failure {
    fn from(status: Status) -> Self {
        Failure {
            status,
            keep_key: false,
        }
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Status::from(err).into()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub request_hash: String,
    pub done: bool,
    /// Base64 of the encoded response.
    #[serde(default)]
    pub response: String,
    /// Id of the resource the request creates (the same on a retry).
    pub resource_id: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

pub fn spec() -> CollectionSpec {
    CollectionSpec::new("idempotency_keys").index(IndexSpec::new("created_at", FieldType::Int))
}

pub enum Claim {
    /// First time: do the work for the record's `resource_id`, then
    /// [`Keys::complete`] (or [`Keys::release`]) the record.
    Proceed {
        record: Versioned<Record>,
        /// Whether this is the key's first request (not a take-over of
        /// one that died), so nothing can exist yet under `resource_id`.
        fresh: bool,
    },
    /// Done before: answer with this response.
    Replay(Vec<u8>),
}

#[derive(Clone, Debug)]
pub struct Keys {
    records: Collection<Record>,
}

pub fn hash(request: &[u8]) -> String {
    sha2::Sha256::digest(request)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Keys {
    pub fn new(records: Collection<Record>) -> Self {
        Self { records }
    }

    pub async fn claim(
        &self,
        user: &str,
        operation: &str,
        key: &str,
        request_hash: &str,
        budget: &platform::deadline::Budget,
    ) -> Result<Claim, Status> {
        if key.is_empty()
            || key.len() > 255
            || !key.chars().all(|c| c.is_ascii_graphic() || c == ' ')
        {
            return Err(platform::error::invalid_fields([(
                "Idempotency-Key",
                "must be 1 to 255 printable ASCII characters".to_string(),
            )]));
        }
        let record_id = format!("{user}:{operation}:{}", hash(key.as_bytes()));
        let fresh = Record {
            request_hash: request_hash.into(),
            done: false,
            response: String::new(),
            resource_id: uuid::Uuid::now_v7().to_string(),
            created_at: platform::clock::now().millis(),
        };
        match self.records.insert(&record_id, fresh).await {
            Ok(record) => {
                return Ok(Claim::Proceed {
                    record,
                    fresh: true,
                });
            }
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(err) => return Err(err.into()),
        }
        let deadline = Instant::now() + DUPLICATE_WAIT.min(budget.remaining() / 2);
        loop {
            let existing = match self.records.get(&record_id).await {
                Ok(existing) => existing,
                // The first request failed and let go of the key: take it.
                Err(StoreError::NotFound) => {
                    return Box::pin(self.claim(user, operation, key, request_hash, budget)).await;
                }
                Err(err) => return Err(err.into()),
            };
            if existing.value.request_hash != request_hash {
                return Err(Status::already_exists(
                    "this Idempotency-Key was used with a different request",
                ));
            }
            if existing.value.done {
                let bytes = STANDARD
                    .decode(&existing.value.response)
                    .map_err(|_| Status::internal("stored response unreadable"))?;
                platform::metrics::count(&platform::metrics::IDEMPOTENCY_REPLAYS, &["order-svc"]);
                return Ok(Claim::Replay(bytes));
            }
            if platform::clock::now().millis() - existing.value.created_at
                > TAKEOVER_AFTER.as_millis() as i64
            {
                // Take it over in one write, so two duplicates do not both proceed.
                let stale = existing.value.created_at;
                let taken = self
                    .records
                    .update_from(existing, |r| {
                        if r.done || r.created_at != stale {
                            return Err(());
                        }
                        r.created_at = platform::clock::now().millis();
                        Ok(())
                    })
                    .await;
                match taken {
                    Ok(Ok(record)) => {
                        return Ok(Claim::Proceed {
                            record,
                            fresh: false,
                        });
                    }
                    Ok(Err(())) | Err(StoreError::NotFound) => continue,
                    Err(err) => return Err(err.into()),
                }
            }
            if Instant::now() > deadline {
                return Err(Status::aborted(
                    "a request with this Idempotency-Key is still in progress; retry shortly",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `work` once for `request` under (`user`, `operation`, `key`):
    /// the first request runs it with the resource id the key holds (and
    /// whether no earlier attempt used that id), and its response is stored;
    /// the same request again gets that response, another request with the
    /// key is refused, and a duplicate of a request still running waits
    /// briefly for it. Work that fails gives the key back, unless its
    /// outcome is unknown; work cut short by the budget keeps it, so the
    /// retry takes it over and finds out.
    pub async fn run_once<Req, Resp, Fut>(
        &self,
        user: &str,
        operation: &str,
        key: &str,
        request: &Req,
        budget: &platform::deadline::Budget,
        work: impl FnOnce(String, bool) -> Fut,
    ) -> Result<Resp, Status>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
        Fut: Future<Output = Result<Resp, Failure>>,
    {
        let request_hash = hash(&request.encode_to_vec());
        let (record, fresh) = match self
            .claim(user, operation, key, &request_hash, budget)
            .await?
        {
            Claim::Replay(bytes) => {
                return Resp::decode(bytes.as_slice())
                    .map_err(|_| Status::internal("stored response unreadable"));
            }
            Claim::Proceed { record, fresh } => (record, fresh),
        };
        let resource_id = record.value.resource_id.clone();
        let done = match tokio::time::timeout(budget.remaining(), work(resource_id, fresh)).await {
            Ok(done) => done,
            Err(_) => Err(Failure {
                status: Status::deadline_exceeded("the caller's deadline passed"),
                keep_key: true,
            }),
        };
        match done {
            Ok(response) => {
                self.complete(record, &response.encode_to_vec()).await?;
                Ok(response)
            }
            Err(failure) => {
                if !failure.keep_key {
                    self.release(&record.id).await;
                }
                Err(failure.status)
            }
        }
    }

    /// Stores the response of the request that claimed `record` (one CAS
    /// from the claim's own version when nothing raced it).
    pub async fn complete(&self, record: Versioned<Record>, response: &[u8]) -> Result<(), Status> {
        let encoded = STANDARD.encode(response);
        self.records
            .modify_from(record, |r| {
                r.done = true;
                r.response = encoded.clone();
            })
            .await?;
        Ok(())
    }

    /// Lets go of a key whose request failed, so a retry runs again.
    pub async fn release(&self, record_id: &str) {
        if let Err(err) = self.records.delete(record_id, None).await
            && err != StoreError::NotFound
        {
            tracing::warn!(error = %err, "could not release an idempotency key");
        }
    }

    /// Forgets records older than [`RETENTION`].
    pub async fn prune(&self) -> Result<usize, StoreError> {
        let cutoff = platform::clock::now().millis() - RETENTION.as_millis() as i64;
        let old = self
            .records
            .find(
                &Query::new()
                    .range("created_at", None, Some(Bound::Exclusive(cutoff.into())))
                    .limit(500),
            )
            .await?;
        for record in &old.items {
            let _ = self.records.delete(&record.id, None).await;
        }
        Ok(old.items.len())
    }
}
