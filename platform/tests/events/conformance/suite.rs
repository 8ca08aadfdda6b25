//! The bus conformance suite: each function gets a fresh bus.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use platform::events::{
    ConsumerConfig, DLQ_ATTEMPTS_HEADER, DLQ_ERROR_HEADER, DLQ_SUBJECT_HEADER, Delivery, EventBus,
    Handler, HandlerError, envelope,
};
use proto::events::envelope::Payload;
use proto::events::{Envelope, OrderCreated, PaymentFailed, ShippingUpdated};

const DEADLINE: Duration = Duration::from_secs(20);

pub fn order_created(order_id: &str) -> Envelope {
    envelope(
        "order.created",
        order_id,
        "test",
        Payload::OrderCreated(OrderCreated {
            order_id: order_id.into(),
            ..Default::default()
        }),
    )
}

fn of_type(event_type: &str, id: &str) -> Envelope {
    let payload = match event_type.split('.').next() {
        Some("payment") => Payload::PaymentFailed(PaymentFailed {
            order_id: id.into(),
            ..Default::default()
        }),
        Some("shipping") => Payload::ShippingUpdated(ShippingUpdated {
            order_id: id.into(),
            ..Default::default()
        }),
        _ => Payload::OrderCreated(OrderCreated {
            order_id: id.into(),
            ..Default::default()
        }),
    };
    envelope(event_type, id, "test", payload)
}

fn fast(name: &str, types: &[&str]) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(name, types);
    c.backoff = vec![Duration::from_millis(100), Duration::from_millis(200)];
    c.ack_wait = Duration::from_secs(2);
    c
}

/// Records deliveries; optionally fails or stalls.
#[derive(Clone, Default)]
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<(Delivery, Instant, String)>>>,
    behaviour: Arc<Mutex<Option<Arc<dyn Fn(&Delivery) -> Result<(), HandlerError> + Send + Sync>>>>,
    delay: Duration,
    tag: String,
}

impl Recorder {
    pub fn tagged(tag: &str) -> Self {
        Self {
            tag: tag.into(),
            ..Self::default()
        }
    }

    pub fn slow(tag: &str, delay: Duration) -> Self {
        Self {
            tag: tag.into(),
            delay,
            ..Self::default()
        }
    }

    pub fn failing(
        f: impl Fn(&Delivery) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> Self {
        let r = Self::default();
        *r.behaviour.lock().unwrap() = Some(Arc::new(f));
        r
    }

    pub fn handler(&self) -> Arc<dyn Handler> {
        Arc::new(self.clone())
    }

    pub fn ids(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(d, _, _)| d.envelope.id.clone())
            .collect()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Waits until `cond` holds over the deliveries, or panics at the deadline.
    pub async fn wait_for(
        &self,
        what: &str,
        cond: impl Fn(&[(Delivery, Instant, String)]) -> bool,
    ) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if cond(&self.seen.lock().unwrap()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; saw {:?}",
                self.ids()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[async_trait::async_trait]
impl Handler for Recorder {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let trace = platform::telemetry::current_traceparent().unwrap_or_default();
        self.seen.lock().unwrap().push((
            delivery.clone(),
            Instant::now(),
            format!("{}|{trace}", self.tag),
        ));
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let behaviour = self.behaviour.lock().unwrap().clone();
        match behaviour {
            Some(f) => f(delivery),
            None => Ok(()),
        }
    }
}

pub async fn publish_then_consume(bus: Arc<dyn EventBus>) {
    let r = Recorder::default();
    let sub = bus
        .subscribe(fast("c1", &["order.created"]), r.handler())
        .await
        .unwrap();
    let sent = order_created("o-1");
    bus.publish(&sent).await.unwrap();
    r.wait_for("one delivery", |s| s.len() == 1).await;
    let (delivery, _, _) = r.seen.lock().unwrap()[0].clone();
    assert_eq!(delivery.envelope, sent);
    assert_eq!(delivery.attempt, 1);
    assert_eq!(delivery.consumer, "c1");
    assert_eq!(delivery.subject, format!("{}.order.created", bus.prefix()));
    sub.stop().await;
}

pub async fn fan_out_to_two_consumers(bus: Arc<dyn EventBus>) {
    let (a, b) = (Recorder::default(), Recorder::default());
    let sa = bus
        .subscribe(fast("shipping", &["order.created"]), a.handler())
        .await
        .unwrap();
    let sb = bus
        .subscribe(fast("notification", &["order.created"]), b.handler())
        .await
        .unwrap();
    for n in 0..5 {
        bus.publish(&order_created(&format!("o-{n}")))
            .await
            .unwrap();
    }
    a.wait_for("5 at shipping", |s| s.len() >= 5).await;
    b.wait_for("5 at notification", |s| s.len() >= 5).await;
    assert_eq!(a.ids(), b.ids());
    sa.stop().await;
    sb.stop().await;
}

pub async fn competing_instances_share_work(bus: Arc<dyn EventBus>) {
    let (one, two) = (
        Recorder::slow("one", Duration::from_millis(40)),
        Recorder::slow("two", Duration::from_millis(40)),
    );
    let s1 = bus
        .subscribe(fast("workers", &["order.created"]), one.handler())
        .await
        .unwrap();
    let s2 = bus
        .subscribe(fast("workers", &["order.created"]), two.handler())
        .await
        .unwrap();
    for n in 0..30 {
        bus.publish(&order_created(&format!("o-{n}")))
            .await
            .unwrap();
    }
    let total = || one.count() + two.count();
    let deadline = Instant::now() + DEADLINE;
    while total() < 30 {
        assert!(
            Instant::now() < deadline,
            "only {} of 30 processed",
            total()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ids = one.ids();
    ids.extend(two.ids());
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 30, "every event processed");
    assert_eq!(ids.len(), 30, "and by one instance only");
    assert!(
        one.count() > 0 && two.count() > 0,
        "both instances worked: {} / {}",
        one.count(),
        two.count()
    );
    s1.stop().await;
    s2.stop().await;
}

pub async fn at_least_once_after_a_crash_before_ack(bus: Arc<dyn EventBus>) {
    // The first instance takes the event and dies while handling it.
    let stalled = Recorder::slow("doomed", Duration::from_secs(3600));
    let mut config = fast("crashy", &["order.created"]);
    config.ack_wait = Duration::from_secs(1);
    let doomed = bus
        .subscribe(config.clone(), stalled.handler())
        .await
        .unwrap();
    let sent = order_created("o-crash");
    bus.publish(&sent).await.unwrap();
    stalled
        .wait_for("the doomed instance to take it", |s| s.len() == 1)
        .await;
    doomed.abort();

    let survivor = Recorder::tagged("survivor");
    let sub = bus.subscribe(config, survivor.handler()).await.unwrap();
    survivor
        .wait_for("redelivery to the survivor", |s| !s.is_empty())
        .await;
    let (delivery, _, _) = survivor.seen.lock().unwrap()[0].clone();
    assert_eq!(delivery.envelope.id, sent.id);
    assert!(
        delivery.attempt >= 2,
        "counted as a redelivery: {}",
        delivery.attempt
    );
    sub.stop().await;
}

pub async fn redelivers_after_nak_with_backoff(bus: Arc<dyn EventBus>) {
    let r = Recorder::failing(|d| {
        if d.attempt < 3 {
            Err(HandlerError::Retryable("flaky".into()))
        } else {
            Ok(())
        }
    });
    let sub = bus
        .subscribe(fast("flaky", &["order.created"]), r.handler())
        .await
        .unwrap();
    bus.publish(&order_created("o-flaky")).await.unwrap();
    r.wait_for("three attempts", |s| s.len() >= 3).await;
    let seen = r.seen.lock().unwrap().clone();
    let attempts: Vec<u32> = seen.iter().map(|(d, _, _)| d.attempt).collect();
    assert_eq!(&attempts[..3], &[1, 2, 3]);
    let gap1 = seen[1].1 - seen[0].1;
    let gap2 = seen[2].1 - seen[1].1;
    assert!(gap1 >= Duration::from_millis(90), "first backoff {gap1:?}");
    assert!(
        gap2 >= Duration::from_millis(180),
        "second backoff {gap2:?}"
    );
    sub.stop().await;
    assert_eq!(r.count(), 3, "acked after the success: no further delivery");
}

pub async fn dead_letter_after_max_deliver_failures(bus: Arc<dyn EventBus>) {
    let r = Recorder::failing(|_| Err(HandlerError::Retryable("database on fire".into())));
    let mut config = fast("doomed", &["order.created"]);
    config.max_deliver = 3;
    config.backoff = vec![Duration::from_millis(50)];
    let sub = bus.subscribe(config, r.handler()).await.unwrap();
    let dlq = Recorder::default();
    let dlq_sub = bus
        .subscribe(fast("dlq-reader", &["dlq.doomed"]), dlq.handler())
        .await
        .unwrap();
    let sent = order_created("o-doomed");
    bus.publish(&sent).await.unwrap();
    dlq.wait_for("the dead letter", |s| !s.is_empty()).await;
    let (letter, _, _) = dlq.seen.lock().unwrap()[0].clone();
    assert_eq!(letter.envelope, sent, "the event itself is kept");
    assert!(
        letter.headers[DLQ_ERROR_HEADER].contains("database on fire"),
        "{:?}",
        letter.headers
    );
    assert_eq!(letter.headers[DLQ_ATTEMPTS_HEADER], "3");
    assert_eq!(
        letter.headers[DLQ_SUBJECT_HEADER],
        format!("{}.order.created", bus.prefix())
    );
    assert_eq!(r.count(), 3, "exactly max_deliver attempts");
    sub.stop().await;
    dlq_sub.stop().await;
}

pub async fn an_unavailable_dependency_is_waited_out_past_max_deliver(bus: Arc<dyn EventBus>) {
    // The handler's store is down for five deliveries, then back.
    let r = Recorder::failing(|d| {
        if d.attempt <= 5 {
            Err(HandlerError::Unavailable("database restarting".into()))
        } else {
            Ok(())
        }
    });
    let mut config = fast("patient", &["order.created"]);
    config.max_deliver = 2;
    config.backoff = vec![Duration::from_millis(20)];
    let sub = bus.subscribe(config, r.handler()).await.unwrap();
    let dlq = Recorder::default();
    let dlq_sub = bus
        .subscribe(fast("dlq-reader-patient", &["dlq.patient"]), dlq.handler())
        .await
        .unwrap();
    bus.publish(&order_created("o-patient")).await.unwrap();
    // A dead letter after max_deliver would end the deliveries at two.
    r.wait_for("the delivery after the outage", |s| {
        s.iter().any(|(d, _, _)| d.attempt == 6)
    })
    .await;
    let attempts: Vec<u32> = r
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(d, _, _)| d.attempt)
        .collect();
    assert_eq!(attempts, [1, 2, 3, 4, 5, 6]);
    assert_eq!(dlq.count(), 0, "nothing dead-lettered for an outage");
    sub.stop().await;
    dlq_sub.stop().await;
}

pub async fn an_outage_does_not_spend_the_retry_budget(bus: Arc<dyn EventBus>) {
    // Three deliveries meet an outage, then the handler fails on its own:
    // it still gets its max_deliver attempts before the dead letter.
    let calls = Arc::new(Mutex::new(0u32));
    let counter = calls.clone();
    let r = Recorder::failing(move |_| {
        let mut n = counter.lock().unwrap();
        *n += 1;
        if *n <= 3 {
            Err(HandlerError::Unavailable("database restarting".into()))
        } else {
            Err(HandlerError::Retryable("no such template".into()))
        }
    });
    let mut config = fast("budget", &["order.created"]);
    config.max_deliver = 2;
    config.backoff = vec![Duration::from_millis(20)];
    let sub = bus.subscribe(config, r.handler()).await.unwrap();
    let dlq = Recorder::default();
    let dlq_sub = bus
        .subscribe(fast("dlq-reader-budget", &["dlq.budget"]), dlq.handler())
        .await
        .unwrap();
    bus.publish(&order_created("o-budget")).await.unwrap();
    dlq.wait_for("the dead letter", |s| !s.is_empty()).await;
    assert_eq!(
        r.count(),
        5,
        "three outage deliveries, then max_deliver attempts"
    );
    assert_eq!(
        dlq.seen.lock().unwrap()[0].0.headers[DLQ_ATTEMPTS_HEADER],
        "5"
    );
    sub.stop().await;
    dlq_sub.stop().await;
}

pub async fn permanent_failure_goes_straight_to_dead_letter(bus: Arc<dyn EventBus>) {
    let r = Recorder::failing(|_| Err(HandlerError::Permanent("unknown order".into())));
    let sub = bus
        .subscribe(fast("strict", &["order.created"]), r.handler())
        .await
        .unwrap();
    let dlq = Recorder::default();
    let dlq_sub = bus
        .subscribe(fast("dlq-strict", &["dlq.strict"]), dlq.handler())
        .await
        .unwrap();
    bus.publish(&order_created("o-bad")).await.unwrap();
    dlq.wait_for("the dead letter", |s| !s.is_empty()).await;
    assert_eq!(r.count(), 1, "no retry for a permanent error");
    assert_eq!(
        dlq.seen.lock().unwrap()[0].0.headers[DLQ_ATTEMPTS_HEADER],
        "1"
    );
    sub.stop().await;
    dlq_sub.stop().await;
}

pub async fn duplicate_publish_is_delivered_once(bus: Arc<dyn EventBus>) {
    let r = Recorder::default();
    let sub = bus
        .subscribe(fast("dedup", &["order.created"]), r.handler())
        .await
        .unwrap();
    let sent = order_created("o-dup");
    for _ in 0..3 {
        bus.publish(&sent).await.unwrap();
    }
    // Same subject, published after: once it arrives, any stored duplicate
    // would have arrived before it.
    let sentinel = order_created("o-sentinel");
    bus.publish(&sentinel).await.unwrap();
    r.wait_for("the sentinel", |s| {
        s.iter().any(|(d, _, _)| d.envelope.id == sentinel.id)
    })
    .await;
    assert_eq!(r.ids(), vec![sent.id.clone(), sentinel.id.clone()]);
    sub.stop().await;
}

pub async fn ordering_per_subject(bus: Arc<dyn EventBus>) {
    let r = Recorder::default();
    let sub = bus
        .subscribe(fast("ordered", &["order.created"]), r.handler())
        .await
        .unwrap();
    let sent: Vec<Envelope> = (0..30)
        .map(|n| order_created(&format!("o-{n:02}")))
        .collect();
    for e in &sent {
        bus.publish(e).await.unwrap();
    }
    r.wait_for("30 events", |s| s.len() >= 30).await;
    assert_eq!(
        r.ids(),
        sent.iter().map(|e| e.id.clone()).collect::<Vec<_>>()
    );
    sub.stop().await;
}

pub async fn trace_context_round_trips(bus: Arc<dyn EventBus>) {
    use tracing::Instrument;
    let r = Recorder::default();
    let sub = bus
        .subscribe(fast("traced", &["order.created"]), r.handler())
        .await
        .unwrap();
    let span = tracing::info_span!("publisher");
    let (sent, trace_id) = async {
        let traceparent =
            platform::telemetry::current_traceparent().expect("test subscriber traces");
        let trace_id = traceparent.split('-').nth(1).unwrap().to_string();
        let sent = order_created("o-traced");
        bus.publish(&sent).await.unwrap();
        (sent, trace_id)
    }
    .instrument(span)
    .await;
    r.wait_for("the traced event", |s| !s.is_empty()).await;
    let (delivery, _, tag) = r.seen.lock().unwrap()[0].clone();
    assert_eq!(delivery.envelope.id, sent.id);
    assert!(
        sent.traceparent.contains(&trace_id),
        "the envelope records the trace"
    );
    assert!(
        delivery
            .headers
            .get("traceparent")
            .is_some_and(|t| t.contains(&trace_id)),
        "{:?}",
        delivery.headers
    );
    assert!(
        tag.contains(&trace_id),
        "the consumer's span continues the publisher's trace: {tag}"
    );
    sub.stop().await;
}

pub async fn consumer_receives_only_subscribed_subjects(bus: Arc<dyn EventBus>) {
    let r = Recorder::default();
    let sub = bus
        .subscribe(fast("picky", &["order.created", "payment.*"]), r.handler())
        .await
        .unwrap();
    for (t, id) in [
        ("order.cancelled", "x1"),
        ("shipping.updated", "x2"),
        ("order.created", "a"),
        ("payment.failed", "b"),
        ("orders.created", "x3"),
    ] {
        bus.publish(&of_type(t, id)).await.unwrap();
    }
    // Sentinels on each subscribed subject, published last.
    bus.publish(&of_type("order.created", "s1")).await.unwrap();
    bus.publish(&of_type("payment.refunded", "s2"))
        .await
        .unwrap();
    r.wait_for("both sentinels", |s| {
        ["s1", "s2"]
            .iter()
            .all(|id| s.iter().any(|(d, _, _)| d.envelope.aggregate_id == *id))
    })
    .await;
    let mut got: Vec<String> = r
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(d, _, _)| d.envelope.aggregate_id.clone())
        .collect();
    got.sort();
    assert_eq!(
        got,
        ["a", "b", "s1", "s2"],
        "only subscribed subjects arrive"
    );
    sub.stop().await;
}

pub async fn events_published_before_subscribing_are_delivered(bus: Arc<dyn EventBus>) {
    let early = order_created("o-early");
    bus.publish(&early).await.unwrap();
    let r = Recorder::default();
    let sub = bus
        .subscribe(fast("late", &["order.created"]), r.handler())
        .await
        .unwrap();
    r.wait_for("the earlier event", |s| !s.is_empty()).await;
    assert_eq!(r.ids(), vec![early.id]);
    sub.stop().await;
}

pub async fn nats_down_at_publish_is_unavailable_then_recovers() {
    use platform::events::BusError;
    use platform::events::nats::NatsBus;
    use platform::testing::TcpProxy;
    platform::telemetry::init_for_tests();
    let url = super::nats_url();
    let upstream = url
        .trim_start_matches("nats://")
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("TEST_NATS_URL is nats://IP:port");
    let proxy = TcpProxy::start_to(upstream).await.unwrap();
    let mut settings = super::nats_settings();
    settings.publish_timeout = Duration::from_secs(1);
    let bus = NatsBus::connect(&format!("nats://{}", proxy.addr()), settings)
        .await
        .unwrap();
    bus.publish(&order_created("o-before")).await.unwrap();

    proxy.stop().await;
    let started = Instant::now();
    let err = bus.publish(&order_created("o-during")).await.unwrap_err();
    assert!(matches!(err, BusError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "fails within the publish timeout: {:?}",
        started.elapsed()
    );

    proxy.start().await.unwrap();
    let after = order_created("o-after");
    let deadline = Instant::now() + DEADLINE;
    loop {
        match bus.publish(&after).await {
            Ok(()) => break,
            Err(BusError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(other) => panic!("publish did not recover: {other:?}"),
        }
    }
    let r = Recorder::default();
    let sub = bus
        .subscribe(fast("after-outage", &["order.created"]), r.handler())
        .await
        .unwrap();
    r.wait_for("both stored events", |s| s.len() >= 2).await;
    let ids: Vec<String> = r
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(d, _, _)| d.envelope.aggregate_id.clone())
        .collect();
    assert!(
        ids.contains(&"o-before".to_string()) && ids.contains(&"o-after".to_string()),
        "{ids:?}"
    );
    sub.stop().await;
    bus.delete_stream().await.unwrap();
}

pub async fn broadcast_reaches_every_listener_and_no_consumer(bus: Arc<dyn EventBus>) {
    use futures::StreamExt as _;
    let r = Recorder::default();
    // A consumer of every event type: broadcasts must not reach it.
    let sub = bus
        .subscribe(fast("all-events", &[">"]), r.handler())
        .await
        .unwrap();
    // Nobody listening yet: sent, and lost.
    bus.broadcast("notifications", b"before".to_vec())
        .await
        .unwrap();
    let mut a = bus.listen("notifications").await.unwrap();
    let mut b = bus.listen("notifications").await.unwrap();
    let mut other = bus.listen("other-topic").await.unwrap();
    for m in ["one", "two", "three"] {
        bus.broadcast("notifications", m.as_bytes().to_vec())
            .await
            .unwrap();
    }
    for listener in [&mut a, &mut b] {
        let mut got = Vec::new();
        while got.len() < 3 {
            let next = tokio::time::timeout(std::time::Duration::from_secs(5), listener.next())
                .await
                .expect("a broadcast within 5 s")
                .expect("the listener is open");
            got.push(String::from_utf8(next).unwrap());
        }
        assert_eq!(got, ["one", "two", "three"]);
    }
    bus.broadcast("other-topic", b"x".to_vec()).await.unwrap();
    let first_other = tokio::time::timeout(std::time::Duration::from_secs(5), other.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first_other, b"x", "topics are separate");
    assert!(bus.broadcast("bad topic!", vec![]).await.is_err());
    // An event published after the broadcasts is the consumer's first delivery.
    bus.publish(&order_created("o-after")).await.unwrap();
    r.wait_for("the event", |s| !s.is_empty()).await;
    assert_eq!(r.seen.lock().unwrap()[0].0.envelope.aggregate_id, "o-after");
    sub.stop().await;
}

/// A NATS bus on a stream of its own, the same bus as `dyn EventBus`, and
/// its subject prefix.
async fn own_nats() -> (platform::events::nats::NatsBus, Arc<dyn EventBus>, String) {
    platform::telemetry::init_for_tests();
    let settings = super::nats_settings();
    let prefix = settings.prefix.clone();
    let bus = platform::events::nats::NatsBus::connect(&super::nats_url(), settings)
        .await
        .unwrap();
    (bus.clone(), Arc::new(bus), prefix)
}

/// A recorder that fails with `failure` until the switch it returns is on.
fn failing_until(failure: HandlerError) -> (Recorder, Arc<AtomicBool>) {
    let on = Arc::new(AtomicBool::new(false));
    let switch = on.clone();
    let r = Recorder::failing(move |_| {
        if switch.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(failure.clone())
        }
    });
    (r, on)
}

/// `NatsBus::backlog`: what a consumer has not handled yet (a delivery
/// waiting out its backoff included), and what was dead-lettered.
pub async fn nats_backlog_shows_unhandled_events_and_dead_letters() {
    let (bus, dyn_bus, prefix) = own_nats().await;
    assert_eq!(bus.backlog().await.unwrap(), Default::default());

    let (slow, up) = failing_until(HandlerError::Unavailable("store down".into()));
    let mut config = fast("slow", &["order.created"]);
    config.backoff = vec![Duration::from_millis(50)];
    let slow_sub = dyn_bus.subscribe(config, slow.handler()).await.unwrap();
    let strict = Recorder::failing(|_| Err(HandlerError::Permanent("unknown order".into())));
    let strict_sub = dyn_bus
        .subscribe(fast("strict", &["order.created"]), strict.handler())
        .await
        .unwrap();
    dyn_bus.publish(&order_created("o-backlog")).await.unwrap();

    let dlq = format!("{prefix}.dlq.strict");
    let deadline = Instant::now() + DEADLINE;
    let waiting = loop {
        let backlog = bus.backlog().await.unwrap();
        if backlog.dead_lettered.get(&dlq) == Some(&1) && slow.count() >= 2 {
            break backlog;
        }
        assert!(
            Instant::now() < deadline,
            "backlog never showed both: {backlog:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        waiting.unhandled.get("slow__order_created"),
        Some(&1),
        "the event the slow consumer keeps retrying: {waiting:?}"
    );
    assert!(
        !waiting.unhandled.contains_key("strict__order_created"),
        "a dead letter is not pending: {waiting:?}"
    );

    up.store(true, Ordering::SeqCst);
    loop {
        let backlog = bus.backlog().await.unwrap();
        if backlog.unhandled.is_empty() {
            assert_eq!(backlog.dead_lettered.len(), 1, "{backlog:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backlog never drained: {backlog:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    slow_sub.stop().await;
    strict_sub.stop().await;
    bus.delete_stream().await.unwrap();
}

/// Dead letters are listed with why they died, and once the cause is fixed
/// a replay sends them round again and clears them.
pub async fn nats_dead_letters_are_listed_and_replayed() {
    use platform::events::BusError;
    use prost::Message as _;
    let (bus, dyn_bus, prefix) = own_nats().await;
    let (picky, fixed) = failing_until(HandlerError::Permanent("template missing".into()));
    let picky_sub = dyn_bus
        .subscribe(fast("picky", &["order.created"]), picky.handler())
        .await
        .unwrap();
    let sent = [order_created("o-dead-1"), order_created("o-dead-2")];
    for event in &sent {
        dyn_bus.publish(event).await.unwrap();
    }
    let dlq = format!("{prefix}.dlq.picky");
    let deadline = Instant::now() + DEADLINE;
    while bus.backlog().await.unwrap().dead_lettered.get(&dlq) != Some(&2) {
        assert!(
            Instant::now() < deadline,
            "the two events were never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let letters = bus.dead_letters(Some("picky")).await.unwrap();
    assert_eq!(letters.len(), 2);
    for (letter, event) in letters.iter().zip(&sent) {
        assert_eq!(letter.consumer, "picky");
        assert_eq!(letter.subject, format!("{prefix}.order.created"));
        assert!(letter.error.contains("template missing"), "{letter:?}");
        assert_eq!(letter.attempts, 1);
        assert_eq!(letter.envelope.as_ref(), Some(event));
    }
    assert_eq!(bus.dead_letters(None).await.unwrap().len(), 2);
    assert!(bus.dead_letters(Some("nobody")).await.unwrap().is_empty());
    assert!(matches!(
        bus.replay_dead_letters("picky.>").await,
        Err(BusError::Invalid(_))
    ));
    assert!(matches!(
        bus.dead_letters(Some("picky.*")).await,
        Err(BusError::Invalid(_))
    ));

    // The cause is fixed: a replay hands both over again, same events.
    fixed.store(true, Ordering::SeqCst);
    let replay = bus.replay_dead_letters("picky").await.unwrap();
    assert_eq!(
        (replay.replayed, replay.skipped.len()),
        (2, 0),
        "{replay:?}"
    );
    picky
        .wait_for("both events again", |seen| {
            sent.iter().all(|e| {
                seen.iter()
                    .filter(|(d, _, _)| d.envelope.id == e.id)
                    .count()
                    == 2
            })
        })
        .await;
    loop {
        let backlog = bus.backlog().await.unwrap();
        if backlog.unhandled.is_empty() {
            assert!(backlog.dead_lettered.is_empty(), "cleared: {backlog:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replay was not handled: {backlog:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(bus.dead_letters(Some("picky")).await.unwrap().is_empty());
    assert_eq!(
        bus.replay_dead_letters("picky").await.unwrap(),
        Default::default()
    );

    // A letter any service could write (each may publish its dead letters)
    // is never replayed from its own copy: without a stored original to
    // point at, or pointing at one that is not there, it stays.
    let forged = order_created("o-forged");
    for sequence in [None, Some("999999")] {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            DLQ_SUBJECT_HEADER,
            format!("{prefix}.order.created").as_str(),
        );
        if let Some(sequence) = sequence {
            headers.insert(platform::events::DLQ_SEQUENCE_HEADER, sequence);
        }
        bus.client()
            .publish_with_headers(dlq.clone(), headers, forged.encode_to_vec().into())
            .await
            .unwrap();
    }
    bus.client().flush().await.unwrap();
    while bus.dead_letters(Some("picky")).await.unwrap().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the forged letters never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let replay = bus.replay_dead_letters("picky").await.unwrap();
    assert_eq!(
        (replay.replayed, replay.skipped.len()),
        (0, 2),
        "{replay:?}"
    );
    assert_eq!(bus.dead_letters(Some("picky")).await.unwrap().len(), 2);
    assert!(
        !picky.ids().contains(&forged.id),
        "the forged event reached no consumer"
    );
    picky_sub.stop().await;
    bus.delete_stream().await.unwrap();
}
