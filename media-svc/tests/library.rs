//! The media core on the memory store and on Postgres: concurrent and
//! repeated uploads of one image make one record and one event; a crash
//! between the bytes and the record leaves nothing after the sweep; media
//! of a deleted product are deleted and their bytes swept; a deletion whose
//! event is not on the bus yet keeps its record and bytes until it is.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use media_svc::domain::{self, Limits, Processed};
use media_svc::library::Library;
use media_svc::samples;
use platform::events::memory::InProcessBus;
use platform::events::outbox::OutboxRelay;
use platform::events::{BusError, ConsumerConfig, EventBus, Handler, handler_fn};
use platform::runtime::Deps;

const TRIALS: usize = 30;

struct Harness {
    library: Library,
    events: Arc<Mutex<Vec<String>>>,
    _subscription: platform::events::Subscription,
    service: platform::testing::TestService,
}

impl Harness {
    async fn start(postgres: bool) -> Harness {
        let service =
            platform::testing::TestService::new("media-svc", postgres, &[("MEDIA_GRACE", "1s")]);
        let config = &service.config;
        let bus = Arc::new(InProcessBus::new("shop"));
        let library = media_svc::library(config, &Deps { bus: bus.clone() })
            .await
            .unwrap();
        let events: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = events.clone();
        let subscription = platform::events::EventBus::subscribe(
            bus.as_ref(),
            ConsumerConfig::new("watch", &["media.uploaded", "media.deleted"]),
            handler_fn(move |d| {
                let seen = seen.clone();
                async move {
                    seen.lock()
                        .unwrap()
                        .push(format!("{} {}", d.envelope.r#type, d.envelope.aggregate_id));
                    Ok(())
                }
            }),
        )
        .await
        .unwrap();
        Harness {
            library,
            events,
            _subscription: subscription,
            service,
        }
    }

    async fn stop(self) {
        self.service.cleanup(&["media"]).await;
    }

    /// Waits for `n` events (5 s deadline) and returns them.
    async fn events(&self, n: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let seen = self.events.lock().unwrap().clone();
            if seen.len() >= n || tokio::time::Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn object_paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self
            .library
            .objects
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.path)
            .collect();
        paths.sort();
        paths
    }
}

fn processed(seed: u64) -> Processed {
    let limits = Limits {
        max_bytes: 10 << 20,
        max_pixels: 40_000_000,
        decode_memory: 256 << 20,
        thumbnail_widths: vec![160, 480],
    };
    domain::process(
        &samples::jpeg(&samples::picture(600, 400, seed), 85),
        &limits,
    )
    .unwrap()
}

async fn concurrent_uploads_make_one_record(postgres: bool) {
    let h = Harness::start(postgres).await;
    let image = processed(1);
    for trial in 0..TRIALS {
        let product = uuid::Uuid::now_v7().to_string();
        // Both orders of arrival: a repeat after the first, or all at once.
        let outcomes = if trial % 2 == 0 {
            let first = h.library.store(&product, "", image.clone()).await.unwrap();
            let again = h.library.store(&product, "", image.clone()).await.unwrap();
            vec![first, again]
        } else {
            let racing = (0..4).map(|_| h.library.store(&product, "", image.clone()));
            futures::future::join_all(racing)
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect()
        };
        let created = outcomes.iter().filter(|(_, created)| *created).count();
        assert_eq!(created, 1, "trial {trial}: one upload creates the record");
        assert!(outcomes.iter().all(|(doc, _)| doc.id == outcomes[0].0.id));
        assert_eq!(h.library.of_product(&product).await.unwrap().len(), 1);
    }
    let events = h.events(TRIALS).await;
    assert_eq!(
        events.len(),
        TRIALS,
        "one media.uploaded per record: {events:?}"
    );
    // The bytes were written once per key (they are the same image).
    assert_eq!(h.object_paths().await.len(), 3);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uploads_make_one_record_in_memory() {
    concurrent_uploads_make_one_record(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uploads_make_one_record_on_postgres() {
    concurrent_uploads_make_one_record(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_between_bytes_and_record_leaves_no_orphan_after_the_sweep() {
    let h = Harness::start(true).await;
    // The upload that crashed: its bytes are stored, its record never was.
    let crashed = processed(2);
    for t in &crashed.thumbnails {
        h.library
            .objects
            .put(&domain::object_path(&crashed.key, t.width), t.bytes.clone())
            .await
            .unwrap();
    }
    h.library
        .objects
        .put(
            &domain::object_path(&crashed.key, 0),
            crashed.image.bytes.clone(),
        )
        .await
        .unwrap();
    // A complete one, and one deleted.
    let product = uuid::Uuid::now_v7().to_string();
    let (kept, _) = h
        .library
        .store(&product, "kept", processed(3))
        .await
        .unwrap();
    let (deleted, _) = h
        .library
        .store(&product, "deleted", processed(4))
        .await
        .unwrap();
    h.library.delete(&deleted.id).await.unwrap();
    h.library.delete(&deleted.id).await.unwrap();
    assert_eq!(h.object_paths().await.len(), 9);

    // Before the grace period nothing goes.
    let early = h
        .library
        .sweep(platform::clock::now().millis() - 60_000)
        .await
        .unwrap();
    assert_eq!((early.records, early.keys), (0, 0));
    assert_eq!(h.object_paths().await.len(), 9);

    let swept = h
        .library
        .sweep(platform::clock::now().millis() + 2_000)
        .await
        .unwrap();
    assert_eq!(
        (swept.records, swept.keys),
        (1, 2),
        "the deleted record, and two keys"
    );
    let left = h.object_paths().await;
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left.iter().all(|p| p.starts_with(&kept.value.key)));
    assert!(h.library.get(&deleted.id).await.is_err());
    assert_eq!(h.library.get(&kept.id).await.unwrap().id, kept.id);
    let events = h.events(3).await;
    assert_eq!(
        events.len(),
        3,
        "two uploads and one deletion, each once: {events:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn media_of_a_deleted_product_are_deleted_and_swept() {
    let h = Harness::start(false).await;
    let (gone, keep) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    let (orphan, _) = h.library.store(&gone, "", processed(5)).await.unwrap();
    let (shown, _) = h.library.store(&keep, "", processed(6)).await.unwrap();
    // The catalog cannot answer: nothing is deleted.
    let none = h
        .library
        .orphaned_by_products(|_| async { None })
        .await
        .unwrap();
    assert_eq!(none, 0);
    let keep_id = keep.clone();
    let deleted = h
        .library
        .orphaned_by_products(move |ids| {
            let keep_id = keep_id.clone();
            async move { Some(ids.into_iter().filter(|id| *id == keep_id).collect()) }
        })
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert!(h.library.get(&orphan.id).await.is_err());
    h.library
        .sweep(platform::clock::now().millis() + 2_000)
        .await
        .unwrap();
    let left = h.object_paths().await;
    assert!(
        left.iter().all(|p| p.starts_with(&shown.value.key)),
        "{left:?}"
    );
    let events = h.events(3).await;
    assert!(
        events.contains(&format!("media.deleted {}", orphan.id)),
        "{events:?}"
    );
    h.stop().await;
}

/// A bus that is down: nothing can be published.
#[derive(Debug)]
struct DownBus;

#[async_trait::async_trait]
impl EventBus for DownBus {
    async fn publish(&self, _: &proto::events::Envelope) -> Result<(), BusError> {
        Err(BusError::Unavailable("the bus is down".into()))
    }
    async fn subscribe(
        &self,
        _: ConsumerConfig,
        _: Arc<dyn Handler>,
    ) -> Result<platform::events::Subscription, BusError> {
        Err(BusError::Unavailable("the bus is down".into()))
    }
    async fn broadcast(&self, _: &str, _: Vec<u8>) -> Result<(), BusError> {
        Err(BusError::Unavailable("the bus is down".into()))
    }
    async fn listen(&self, _: &str) -> Result<platform::events::Listener, BusError> {
        Err(BusError::Unavailable("the bus is down".into()))
    }
    fn prefix(&self) -> &str {
        "shop"
    }
    fn name(&self) -> &'static str {
        "down"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deletion_not_yet_on_the_bus_keeps_its_record_and_bytes_until_it_is() {
    let h = Harness::start(true).await;
    let product = uuid::Uuid::now_v7().to_string();
    let (media, _) = h.library.store(&product, "", processed(7)).await.unwrap();
    // Deleted while the bus is down: media.deleted waits in the outbox.
    let cut_off = Library {
        relay: OutboxRelay::new(h.library.media.clone(), Arc::new(DownBus)),
        ..h.library.clone()
    };
    cut_off.delete(&media.id).await.unwrap();
    let stored = h.object_paths().await;
    assert_eq!(stored.len(), 3, "{stored:?}");

    // Past the grace period the record and bytes stay: removing the record
    // would lose the event, and the product would show the image forever.
    let later = platform::clock::now().millis() + 2_000;
    let swept = h.library.sweep(later).await.unwrap();
    assert_eq!((swept.records, swept.keys), (0, 0));
    assert_eq!(h.object_paths().await, stored);

    // The bus is back and the outbox sweeper sends the event: now both go.
    assert_eq!(h.library.relay.sweep().await.unwrap(), 1);
    let events = h.events(2).await;
    assert!(
        events.contains(&format!("media.deleted {}", media.id)),
        "{events:?}"
    );
    let swept = h.library.sweep(later).await.unwrap();
    assert_eq!((swept.records, swept.keys), (1, 1));
    assert!(h.object_paths().await.is_empty());
    h.stop().await;
}
