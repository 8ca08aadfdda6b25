//! argon2id password hashing off the async runtime, with a bound on how
//! many hashes run at once (each takes ~19 MiB and tens of milliseconds)
//! and on how many may wait for one: beyond that a caller is turned away at
//! once ([`HashError::Busy`]) instead of queueing into its deadline.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;
use tracing::Instrument;

/// Hashes that may wait for a worker, per worker: with ~30 ms a hash the
/// last one admitted waits about a second, well within a login's deadline.
const QUEUE_PER_WORKER: usize = 32;

/// What a shed caller is told to wait before trying again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Result of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    pub matches: bool,
    /// The hash was made with other parameters: store a fresh one.
    pub needs_rehash: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every worker is busy and the queue is full: try again later.
    #[error("too many password checks at once")]
    Busy,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<HashError> for tonic::Status {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy => platform::error::overloaded(
                "too many sign-ins at once; try again shortly",
                RETRY_AFTER,
            ),
            HashError::Failed(err) => {
                tracing::error!(error = format!("{err:#}"), "password hashing failed");
                tonic::Status::internal("internal error")
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Hasher {
    params: Params,
    /// One per hash allowed to run at once.
    workers: Arc<Semaphore>,
    /// One per hash admitted: running or waiting for a worker.
    admitted: Arc<Semaphore>,
    /// Permits of `admitted` when nothing is admitted.
    capacity: usize,
    /// A hash of a random password, verified against when the account does
    /// not exist so that unknown emails take as long as wrong passwords.
    dummy: Arc<String>,
}

impl Hasher {
    /// OWASP parameters: m = 19456 KiB, t = 2, p = 1; one worker per core.
    pub fn owasp() -> anyhow::Result<Self> {
        Self::with_params(19_456, 2, 1)
    }

    pub fn with_params(m_cost: u32, t_cost: u32, p_cost: u32) -> anyhow::Result<Self> {
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Self::with_limits(m_cost, t_cost, p_cost, workers, workers * QUEUE_PER_WORKER)
    }

    /// At most `workers` hashes run at once and at most `queue` more wait.
    pub fn with_limits(
        m_cost: u32,
        t_cost: u32,
        p_cost: u32,
        workers: usize,
        queue: usize,
    ) -> anyhow::Result<Self> {
        let params = Params::new(m_cost, t_cost, p_cost, None)
            .map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?;
        let workers = workers.max(1);
        let mut random = [0u8; 24];
        rand::fill(&mut random);
        let dummy = hash_now(&params, &base64_encode(&random))?;
        Ok(Self {
            params,
            workers: Arc::new(Semaphore::new(workers)),
            admitted: Arc::new(Semaphore::new(workers + queue)),
            capacity: workers + queue,
            dummy: Arc::new(dummy),
        })
    }

    fn argon(params: &Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
    }

    /// Runs `work` on the blocking pool once a worker is free. Both permits
    /// move into the blocking closure: a caller that gives up (a cancelled
    /// login) leaves them held until its hash has really finished, so the
    /// bounds hold for the work, not for the futures waiting on it.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| HashError::Busy)?;
        let worker = self
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| anyhow::anyhow!("hasher closed"))?;
        let span = tracing::Span::current();
        let queue = self.admitted.clone();
        let idle = self.capacity;
        tokio::task::spawn_blocking(move || {
            let out = span.in_scope(work);
            drop((admitted, worker));
            // The last hash of a burst gives its buffers back to the system.
            if queue.available_permits() == idle {
                platform::release_free_memory();
            }
            out
        })
        .await
        .map_err(|e| HashError::Failed(anyhow::anyhow!("hashing task failed: {e}")))
    }

    /// A PHC string for `password`.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let (params, password) = (self.params.clone(), password.to_string());
        Ok(self
            .blocking(move || hash_now(&params, &password))
            .instrument(tracing::info_span!("argon2.hash"))
            .await??)
    }

    /// Checks `password` against `phc`; an unparseable hash never matches.
    pub async fn verify(&self, password: &str, phc: &str) -> Result<Verification, HashError> {
        let (params, password, phc) = (self.params.clone(), password.to_string(), phc.to_string());
        self.blocking(move || {
            let Ok(parsed) = PasswordHash::new(&phc) else {
                return Verification {
                    matches: false,
                    needs_rehash: true,
                };
            };
            let matches = Self::argon(&params)
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            let same_params = parsed.algorithm.as_str() == "argon2id"
                && Params::try_from(&parsed).is_ok_and(|p| {
                    p.m_cost() == params.m_cost()
                        && p.t_cost() == params.t_cost()
                        && p.p_cost() == params.p_cost()
                });
            Verification {
                matches,
                needs_rehash: !same_params,
            }
        })
        .instrument(tracing::info_span!("argon2.verify"))
        .await
    }

    /// Spends the time of a verification without a real account.
    pub async fn verify_dummy(&self, password: &str) -> Result<(), HashError> {
        let dummy = self.dummy.clone();
        self.verify(password, &dummy).await.map(|_| ())
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

fn hash_now(params: &Params, password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Hasher::argon(params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::testing::eventually;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Gauge {
        running: AtomicUsize,
        peak: AtomicUsize,
        started: AtomicUsize,
        finished: AtomicUsize,
    }

    impl Gauge {
        /// Blocking work that takes `ms` and records how many ran at once.
        fn job(self: &Arc<Self>, ms: u64) -> impl FnOnce() + Send + 'static {
            let gauge = self.clone();
            move || {
                gauge.started.fetch_add(1, Ordering::SeqCst);
                let now = gauge.running.fetch_add(1, Ordering::SeqCst) + 1;
                gauge.peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(ms));
                gauge.running.fetch_sub(1, Ordering::SeqCst);
                gauge.finished.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancelled_callers_keep_their_worker_until_the_hash_ends() {
        let hasher = Hasher::with_limits(8, 1, 1, 2, 64).unwrap();
        let gauge = Arc::new(Gauge::default());
        // Callers that give up long before their work ends (a client that
        // disconnects mid-login), then callers that wait for theirs.
        let mut impatient = Vec::new();
        for _ in 0..12 {
            let (hasher, job) = (hasher.clone(), gauge.job(40));
            impatient.push(tokio::spawn(async move {
                tokio::time::timeout(Duration::from_millis(5), hasher.blocking(job))
                    .await
                    .is_ok()
            }));
        }
        let mut patient = Vec::new();
        for _ in 0..6 {
            let (hasher, job) = (hasher.clone(), gauge.job(40));
            patient.push(tokio::spawn(async move { hasher.blocking(job).await }));
        }
        for caller in impatient {
            assert!(
                !caller.await.unwrap(),
                "work of 40 ms cannot end within 5 ms"
            );
        }
        for caller in patient {
            caller.await.unwrap().unwrap();
        }
        eventually("every started hash ends", async || {
            gauge.finished.load(Ordering::SeqCst) == gauge.started.load(Ordering::SeqCst)
        })
        .await;
        assert!(gauge.started.load(Ordering::SeqCst) >= 6);
        assert_eq!(
            gauge.peak.load(Ordering::SeqCst),
            2,
            "never more hashes at once than workers, and the workers are used"
        );
        eventually("every permit comes back", async || {
            hasher.workers.available_permits() == 2 && hasher.admitted.available_permits() == 66
        })
        .await;
    }

    #[tokio::test]
    async fn a_full_queue_sheds_at_once_and_admits_again_once_drained() {
        let hasher = Hasher::with_limits(8, 1, 1, 1, 1).unwrap();
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let first = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.blocking(move || blocked.recv().is_ok()).await })
        };
        eventually("the only worker is taken", async || {
            hasher.workers.available_permits() == 0
        })
        .await;
        let second = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.blocking(|| true).await })
        };
        eventually("the queue is full", async || {
            hasher.admitted.available_permits() == 0
        })
        .await;

        // Decided on the first poll: no waiting for a worker or a deadline.
        let dummy = hasher.dummy.clone();
        let shed = tokio::time::timeout(Duration::ZERO, hasher.verify("pw", &dummy)).await;
        assert!(matches!(shed, Ok(Err(HashError::Busy))), "{shed:?}");
        assert!(matches!(hasher.hash("pw").await, Err(HashError::Busy)));

        release.send(()).unwrap();
        assert!(first.await.unwrap().unwrap());
        assert!(second.await.unwrap().unwrap());
        let verified = hasher.verify("pw", &dummy).await.unwrap();
        assert!(!verified.matches, "the dummy matches no password");
    }

    #[test]
    fn a_shed_caller_gets_unavailable_with_a_retry_delay() {
        let status = tonic::Status::from(HashError::Busy);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(platform::error::retry_after(&status), Some(RETRY_AFTER));
        let status = tonic::Status::from(HashError::Failed(anyhow::anyhow!("disk on fire")));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(
            !status.message().contains("fire"),
            "our faults stay in the logs"
        );
    }

    #[tokio::test]
    async fn hashes_verify_and_are_argon2id_with_owasp_parameters() {
        let hasher = Hasher::owasp().unwrap();
        let phc = hasher.hash("correct horse").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_eq!(
            hasher.verify("correct horse", &phc).await.unwrap(),
            Verification {
                matches: true,
                needs_rehash: false
            }
        );
        assert!(!hasher.verify("wrong horse", &phc).await.unwrap().matches);
        assert!(!hasher.verify("x", "not a hash").await.unwrap().matches);
        assert_ne!(phc, hasher.hash("correct horse").await.unwrap(), "salted");
    }

    #[tokio::test]
    async fn old_parameters_ask_for_a_rehash() {
        let weak = Hasher::with_params(8, 1, 1).unwrap();
        let old = weak.hash("correct horse").await.unwrap();
        let v = Hasher::owasp()
            .unwrap()
            .verify("correct horse", &old)
            .await
            .unwrap();
        assert_eq!(
            v,
            Verification {
                matches: true,
                needs_rehash: true
            }
        );
    }
}
