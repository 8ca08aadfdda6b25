//! Outbox relay on the Postgres store, and idempotent consumption.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use platform::events::idempotent::Idempotent;
use platform::events::memory::InProcessBus;
use platform::events::nats::NatsBus;
use platform::events::outbox::{HasOutbox, Outbox, OutboxRelay, outbox_index};
use platform::events::{Delivery, EventBus, Handler, HandlerError};
use platform::store::postgres::PostgresBackend;
use platform::store::{Collection, CollectionSpec, Store, StoreSettings};
use serde::{Deserialize, Serialize};

use super::conformance::suite::order_created;
use super::conformance::{nats_settings, nats_url};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    status: String,
    #[serde(default)]
    outbox: Outbox,
}

impl HasOutbox for Order {
    fn outbox(&self) -> &Outbox {
        &self.outbox
    }
    fn outbox_mut(&mut self) -> &mut Outbox {
        &mut self.outbox
    }
}

async fn postgres() -> PostgresBackend {
    let url = platform::testing::postgres_url();
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    PostgresBackend::connect(&url, &schema, &StoreSettings::default())
        .await
        .expect("Postgres reachable")
}

async fn orders(pg: &PostgresBackend) -> Collection<Order> {
    Store::with_backend(Arc::new(pg.clone()))
        .collection(CollectionSpec::new("orders").index(outbox_index()))
        .await
        .unwrap()
}

/// Writes an order with one staged event, as a service does, and "crashes"
/// before publishing it.
async fn write_and_crash(c: &Collection<Order>, id: &str) -> proto::events::Envelope {
    let event = order_created(id);
    let mut order = Order {
        status: "PENDING_PAYMENT".into(),
        outbox: Outbox::default(),
    };
    order.outbox.stage(&event);
    c.insert(id, order).await.unwrap();
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_write_and_publish_still_publishes_exactly_one_event_after_restart() {
    platform::telemetry::init_for_tests();
    let pg = postgres().await;
    let bus = NatsBus::connect(&nats_url(), nats_settings())
        .await
        .unwrap();
    let c = orders(&pg).await;
    write_and_crash(&c, "o-1").await;

    // After the restart two replicas sweep at once.
    let relay_a = OutboxRelay::new(
        orders(&pg).await,
        Arc::new(bus.clone()) as Arc<dyn EventBus>,
    );
    let relay_b = relay_a.clone();
    let (a, b) = tokio::join!(relay_a.sweep(), relay_b.sweep());
    let published = a.unwrap() + b.unwrap();
    assert!(published >= 1);

    let subject = format!("{}.order.created", bus.prefix());
    assert_eq!(
        bus.count(&subject).await.unwrap(),
        1,
        "exactly one event is stored"
    );
    assert!(
        c.get("o-1").await.unwrap().value.outbox.is_empty(),
        "the outbox is cleared"
    );
    assert_eq!(relay_a.sweep().await.unwrap(), 0, "nothing left to sweep");

    bus.delete_stream().await.unwrap();
    pg.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_publish_before_clear_does_not_publish_twice() {
    platform::telemetry::init_for_tests();
    let pg = postgres().await;
    let bus = NatsBus::connect(&nats_url(), nats_settings())
        .await
        .unwrap();
    let c = orders(&pg).await;
    let event = write_and_crash(&c, "o-2").await;
    // The relay published, then died before clearing the outbox.
    bus.publish(&event).await.unwrap();

    let relay = OutboxRelay::new(c.clone(), Arc::new(bus.clone()) as Arc<dyn EventBus>);
    relay.sweep().await.unwrap();
    assert_eq!(
        bus.count(&format!("{}.order.created", bus.prefix()))
            .await
            .unwrap(),
        1
    );
    assert!(c.get("o-2").await.unwrap().value.outbox.is_empty());

    bus.delete_stream().await.unwrap();
    pg.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_publishes_staged_events_in_order_and_clears_them() {
    platform::telemetry::init_for_tests();
    let pg = postgres().await;
    let bus = InProcessBus::new("shop");
    let c = orders(&pg).await;
    let mut order = Order {
        status: "PAID".into(),
        outbox: Outbox::default(),
    };
    let events: Vec<_> = (0..3).map(|n| order_created(&format!("o-3-{n}"))).collect();
    for e in &events {
        order.outbox.stage(e);
    }
    assert_eq!(order.outbox.count, 3);
    c.insert("o-3", order).await.unwrap();
    let relay = OutboxRelay::new(c.clone(), Arc::new(bus.clone()) as Arc<dyn EventBus>);
    assert_eq!(relay.flush("o-3").await.unwrap(), 3);
    assert_eq!(
        relay.flush("o-3").await.unwrap(),
        0,
        "a second flush has nothing to do"
    );
    assert_eq!(bus.count("shop.order.created"), 3);
    let stored = c.get("o-3").await.unwrap().value;
    assert_eq!((stored.outbox.count, stored.status.as_str()), (0, "PAID"));
    assert_eq!(relay.flush("missing").await.unwrap(), 0);
    pg.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushing_the_written_copy_clears_only_its_events_even_after_a_later_write() {
    platform::telemetry::init_for_tests();
    let pg = postgres().await;
    let bus = InProcessBus::new("shop");
    let c = orders(&pg).await;
    let first = order_created("o-4-a");
    let mut order = Order {
        status: "PENDING_PAYMENT".into(),
        outbox: Outbox::default(),
    };
    order.outbox.stage(&first);
    let written = c.insert("o-4", order).await.unwrap();
    // Another write lands before the relay clears: its own staged event and
    // status must survive the clear made from the older copy.
    let second = order_created("o-4-b");
    c.modify("o-4", |o| {
        o.status = "PAID".into();
        o.outbox.stage(&second);
    })
    .await
    .unwrap();
    let relay = OutboxRelay::new(c.clone(), Arc::new(bus.clone()) as Arc<dyn EventBus>);
    let after = relay.flush_or_defer_written(written).await;
    assert_eq!(bus.count("shop.order.created"), 1, "only the copy's event");
    let stored = c.get("o-4").await.unwrap();
    assert_eq!(stored.version, after.version);
    assert_eq!(stored.value.status, "PAID");
    let left: Vec<&str> = stored
        .value
        .outbox
        .events
        .iter()
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(left, vec![second.id.as_str()]);
    pg.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeper_task_republishes_leftovers_and_stops_on_cancel() {
    platform::telemetry::init_for_tests();
    let pg = postgres().await;
    let bus = InProcessBus::new("shop");
    let c = orders(&pg).await;
    write_and_crash(&c, "o-4").await;
    let relay = OutboxRelay::new(c.clone(), Arc::new(bus.clone()) as Arc<dyn EventBus>);
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = relay.spawn_sweeper(Duration::from_millis(50), cancel.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while bus.count("shop.order.created") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "sweeper never published"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("sweeper stops")
        .unwrap();
    pg.drop_schema().await.unwrap();
}

struct Counting(AtomicUsize);

#[async_trait::async_trait]
impl Handler for Counting {
    async fn handle(&self, _: &Delivery) -> Result<(), HandlerError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn delivery(consumer: &str, envelope: &proto::events::Envelope, attempt: u32) -> Delivery {
    Delivery {
        envelope: envelope.clone(),
        subject: "shop.order.created".into(),
        attempt,
        waits: 0,
        consumer: consumer.into(),
        headers: Default::default(),
    }
}

#[tokio::test]
async fn idempotent_consumers_apply_a_redelivered_event_once() {
    let store = Store::memory();
    let inner = Arc::new(Counting(AtomicUsize::new(0)));
    let handler = Idempotent::new(&store, inner.clone()).await.unwrap();
    let event = order_created("o-5");
    handler
        .handle(&delivery("shipping", &event, 1))
        .await
        .unwrap();
    handler
        .handle(&delivery("shipping", &event, 2))
        .await
        .unwrap();
    assert_eq!(
        inner.0.load(Ordering::SeqCst),
        1,
        "the redelivery is skipped"
    );
    handler
        .handle(&delivery("notification", &event, 1))
        .await
        .unwrap();
    assert_eq!(
        inner.0.load(Ordering::SeqCst),
        2,
        "another consumer still processes it"
    );
    handler
        .handle(&delivery("shipping", &order_created("o-6"), 1))
        .await
        .unwrap();
    assert_eq!(inner.0.load(Ordering::SeqCst), 3);

    assert_eq!(
        handler.prune(Duration::from_secs(3600)).await.unwrap(),
        0,
        "recent ids are kept"
    );
    assert_eq!(
        handler.prune(Duration::ZERO).await.unwrap(),
        3,
        "old ids are pruned"
    );
}

/// `find` calls on `collection` so far, from the store's metrics.
fn finds_on(collection: &str) -> u64 {
    platform::metrics::render(None)
        .lines()
        .filter(|l| {
            l.starts_with("db_client_operation_duration_seconds_count")
                && l.contains("operation=\"find\"")
                && l.contains(&format!("collection=\"{collection}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Two replicas (two connections to one schema) each run the sweeper: every
/// leftover event is published once, and the store sees about one sweep
/// per interval, not two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sweep_as_often_as_one_and_publish_each_leftover_once() {
    platform::telemetry::init_for_tests();
    let pg = postgres().await;
    let collection = |pg: PostgresBackend| async move {
        Store::with_backend(Arc::new(pg))
            .collection::<Order>(CollectionSpec::new("swept_orders").index(outbox_index()))
            .await
            .unwrap()
    };
    let (replica_a, replica_b) = (collection(pg.clone()).await, collection(pg.clone()).await);
    assert_ne!(replica_a.store().instance(), replica_b.store().instance());
    for i in 0..40 {
        write_and_crash(&replica_a, &format!("o-{i}")).await;
    }
    let bus = InProcessBus::new("shop");
    let interval = Duration::from_millis(100);
    let cancel = tokio_util::sync::CancellationToken::new();
    let finds_before = finds_on("swept_orders");
    let tasks = [replica_a, replica_b].map(|c| {
        OutboxRelay::new(c, Arc::new(bus.clone()) as Arc<dyn EventBus>)
            .spawn_sweeper(interval, cancel.clone())
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while bus.count("shop.order.created") < 40 {
        assert!(
            std::time::Instant::now() < deadline,
            "leftovers not published"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let watched = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rounds = watched.elapsed().as_secs_f64() / interval.as_secs_f64();
    assert_eq!(bus.count("shop.order.created"), 40, "each leftover once");
    cancel.cancel();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("sweeper stops")
            .unwrap();
    }
    // One replica sweeps each round (one find per round, the leftovers
    // took a few more); two unleased replicas would make twice the rounds.
    let finds = finds_on("swept_orders") - finds_before;
    println!(
        "{finds} sweep queries in {:.0} rounds of two replicas",
        rounds + 1.0
    );
    assert!(
        (finds as f64) <= rounds * 1.3 + 5.0,
        "{finds} sweep queries for {rounds:.0} rounds"
    );
    assert!(
        finds as f64 >= rounds * 0.5,
        "the sweeper kept running: {finds}"
    );
    pg.drop_schema().await.unwrap();
}
