//! Training runs and the model being served.
//!
//! [`Trainer::start`] takes the training lease in the store (one run at a
//! time across every replica on that store), answers the new version at
//! once and trains in the background: the log is read on the async
//! runtime, the CPU work runs on a thread of its own at a low CPU priority
//! ([`train_off_runtime`]), so the serving threads win the CPU while it
//! runs, the artifact is stored, then served. Every replica polls the store's
//! current-model pointer ([`Serving::refresh`]) so all of them serve the
//! same version without training themselves.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use platform::store::StoreError;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::domain::History;
use crate::model::{self, Model, TrainParams, TrainingData};
use crate::store::{ModelMeta, RecStore};

/// A model with its metadata.
#[derive(Debug)]
pub struct Current {
    pub meta: ModelMeta,
    pub model: Model,
}

/// The model this replica serves (swapped whole; readers never wait on a
/// training).
#[derive(Debug, Clone, Default)]
pub struct Serving {
    current: Arc<RwLock<Option<Arc<Current>>>>,
}

impl Serving {
    pub fn get(&self) -> Option<Arc<Current>> {
        self.current.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// Serves `current` unless a later version is already served.
    pub fn install(&self, current: Current) {
        if let Ok(mut slot) = self.current.write()
            && slot
                .as_ref()
                .is_none_or(|c| c.meta.version < current.meta.version)
        {
            tracing::info!(version = %current.meta.version, algorithm = %current.meta.algorithm,
                    products = current.meta.products, "serving model");
            *slot = Some(Arc::new(current));
        }
    }

    /// Loads the store's current model if it is newer than the one served.
    pub async fn refresh(&self, store: &RecStore) -> Result<(), StoreError> {
        let Some(version) = store.current_version().await? else {
            return Ok(());
        };
        if self.get().is_some_and(|c| c.meta.version >= version) {
            return Ok(());
        }
        let (meta, model) = store.load_model(&version).await?;
        self.install(Current { meta, model });
        Ok(())
    }

    /// Polls the store every `every` until `cancel`.
    pub fn spawn_refresher(
        &self,
        store: RecStore,
        every: Duration,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let serving = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(err) = serving.refresh(&store).await {
                    tracing::warn!(error = %err, "loading the current model failed");
                }
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
            }
        })
    }
}

/// What [`Trainer::start`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub version: String,
    /// Another run (here or on another replica) holds the lease.
    pub already_running: bool,
}

/// Starts trainings.
#[derive(Debug, Clone)]
pub struct Trainer {
    pub store: RecStore,
    pub catalog: Catalog,
    pub serving: Serving,
    pub params: TrainParams,
    pub lease_ttl: Duration,
    /// This replica's name in the lease.
    pub holder: String,
    /// Popularity from the log as it is, while no model knows a purchase.
    pub live: LivePopularity,
}

/// How long a popularity count made from the live log is served before it
/// is counted again.
pub const LIVE_POPULARITY_TTL: Duration = Duration::from_secs(5);

/// Popularity counted from the interaction log as it is now: what a shop
/// whose model knows no purchase yet (none trained, or trained before the
/// first order) recommends, so its first customers see what others buy
/// without waiting for the scheduled training. Counted at most once per
/// [`LIVE_POPULARITY_TTL`], by one request at a time.
#[derive(Debug, Clone, Default)]
pub struct LivePopularity {
    slot: Arc<tokio::sync::Mutex<Option<(tokio::time::Instant, Arc<Model>)>>>,
}

impl Trainer {
    /// Takes the lease and trains in the background; returns at once.
    pub async fn start(&self) -> Result<Started, StoreError> {
        let version = uuid::Uuid::now_v7().to_string();
        let ttl = self.lease_ttl.as_millis() as i64;
        match self
            .store
            .acquire_lease(&self.holder, &version, ttl)
            .await?
        {
            Err(running) => Ok(Started {
                version: running,
                already_running: true,
            }),
            Ok(()) => {
                let trainer = self.clone();
                let v = version.clone();
                tokio::spawn(async move {
                    if let Err(err) = trainer.run(&v).await {
                        tracing::error!(version = %v, error = format!("{err:#}"), "training failed");
                    }
                    if let Err(err) = trainer.store.release_lease(&trainer.holder, &v).await {
                        tracing::warn!(version = %v, error = %err, "releasing the training lease failed");
                    }
                });
                Ok(Started {
                    version,
                    already_running: false,
                })
            }
        }
    }

    /// Reads the log, trains off the runtime, stores and serves the model.
    async fn run(&self, version: &str) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let data = self
            .training_data()
            .await
            .context("reading the interaction log")?;
        let params = self.params.clone();
        let (model, metrics) = train_off_runtime(move || model::train_with_metrics(&data, &params))
            .await
            .context("training thread")??;
        let meta = self
            .store
            .save_model(version, &model, metrics)
            .await
            .context("storing the model")?;
        tracing::info!(version, interactions = meta.interactions, products = meta.products,
            metrics = ?meta.metrics, "model trained");
        self.serving.install(Current { meta, model });
        Ok(())
    }

    /// A popularity model of the log as it is now (see [`LivePopularity`]);
    /// an empty one when the log cannot be read.
    pub async fn live_popularity(&self) -> Arc<Model> {
        let mut slot = self.live.slot.lock().await;
        if let Some((at, model)) = slot.as_ref()
            && at.elapsed() < LIVE_POPULARITY_TTL
        {
            return model.clone();
        }
        let params = TrainParams {
            algorithm: model::Algorithm::Popularity,
            ..self.params.clone()
        };
        let model = match self.training_data().await {
            Ok(data) => model::train(&data, &params).unwrap_or_else(|_| Model::empty()),
            Err(err) => {
                tracing::warn!(error = %err, "counting live popularity failed");
                Model::empty()
            }
        };
        let model = Arc::new(model);
        *slot = Some((tokio::time::Instant::now(), model.clone()));
        model
    }

    /// Every user's history, and the categories of their products (from
    /// product-svc; imports' own categories where it does not know them).
    pub async fn training_data(&self) -> Result<TrainingData, StoreError> {
        let mut orders: HashMap<String, Vec<crate::domain::OrderRecord>> = HashMap::new();
        RecStore::scan(&self.store.orders, |_, order| {
            if order.is_purchase() && !order.user_id.is_empty() {
                orders.entry(order.user_id.clone()).or_default().push(order);
            }
        })
        .await?;
        let mut profiles: HashMap<String, crate::domain::Profile> = HashMap::new();
        RecStore::scan(&self.store.profiles, |id, profile| {
            profiles.insert(id, profile);
        })
        .await?;
        let mut users: Vec<String> = orders.keys().chain(profiles.keys()).cloned().collect();
        users.sort();
        users.dedup();
        let empty = crate::domain::Profile::default();
        let mut data = TrainingData::default();
        for user in users {
            let profile = profiles.get(&user).unwrap_or(&empty);
            let history = History::build(orders.get(&user).into_iter().flatten(), profile);
            for (product, category) in &profile.imported_categories {
                data.categories.insert(product.clone(), category.clone());
            }
            if !history.items.is_empty() {
                data.users.push(history.items.into_iter().collect());
            }
        }
        let mut products: Vec<String> = data.users.iter().flat_map(|u| u.keys().cloned()).collect();
        products.sort();
        products.dedup();
        match self.catalog.categories(&products).await {
            Ok(categories) => data.categories.extend(categories),
            Err(status) => tracing::warn!(error = %status.message(),
                "product categories unavailable; training without them"),
        }
        Ok(data)
    }

    /// Starts a training every `every` (the lease keeps replicas from
    /// training together) until `cancel`.
    pub fn spawn_schedule(
        &self,
        every: Duration,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let trainer = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                match trainer.start().await {
                    Ok(started) => tracing::info!(version = %started.version,
                        already_running = started.already_running, "scheduled training"),
                    Err(err) => tracing::warn!(error = %err, "scheduled training not started"),
                }
            }
        })
    }
}

/// Runs `work` on a new thread whose CPU priority is lowered (nice 10 on
/// Linux, where the nice value belongs to the thread): training takes
/// seconds of a core, and at the same priority it takes that core from the
/// requests being served (figures: `examples/recommend_bench.rs` and the
/// README). The caller's span follows the thread.
pub async fn train_off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let span = tracing::Span::current();
    std::thread::Builder::new()
        .name("rec-training".into())
        .spawn(move || {
            let _entered = span.enter();
            lower_thread_priority();
            let _ = tx.send(work());
        })?;
    Ok(rx.await?)
}

/// The calling thread's kernel id (what per-thread `setpriority` takes).
#[cfg(target_os = "linux")]
fn thread_id() -> libc::id_t {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::id_t }
}

#[cfg(target_os = "linux")]
fn lower_thread_priority() {
    // SAFETY: changes the calling thread's own nice value only.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, thread_id(), 10) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "training runs at normal priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_thread_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    fn own_nice() -> i32 {
        // SAFETY: reads the calling thread's nice value.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, thread_id()) }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn training_work_runs_at_a_lower_priority_than_serving() {
        let serving = own_nice();
        let (value, training) = train_off_runtime(|| (42, own_nice())).await.unwrap();
        assert_eq!(value, 42);
        assert!(
            training > serving,
            "training nice {training}, serving {serving}"
        );
        assert_eq!(own_nice(), serving, "the caller's priority is untouched");
    }

    #[tokio::test]
    async fn a_panicking_training_is_an_error_not_a_hang() {
        let r = train_off_runtime(|| -> u8 { panic!("boom") }).await;
        assert!(r.is_err());
    }
}
