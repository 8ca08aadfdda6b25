//! Prometheus metrics shared by every service.
//!
//! Every family lives in the process-wide registry
//! ([`prometheus::default_registry`]), so the all-in-one binary serves the
//! metrics of all its services at once (the gateway's `/metrics`) and a
//! single-service binary serves its own on `METRICS_ADDR` ([`serve`]).
//! Series carry a `service` label (the binary name, `order-svc`), so the
//! two deployments give the same series.
//!
//! | family | type | labels | what |
//! |---|---|---|---|
//! | `rpc_server_duration_seconds` | histogram | service, rpc_service, rpc_method, code | every gRPC call served (RED: rate, errors by code, duration) |
//! | `rpc_client_duration_seconds` | histogram | service, rpc_service, rpc_method, code | every gRPC call made (code `UNAVAILABLE` when no answer came) |
//! | `rpc_client_breaker_open` | gauge | peer | 1 while the circuit to the peer is open |
//! | `db_client_operation_duration_seconds` | histogram | service, db_system, operation, collection, outcome | store operations |
//! | `messaging_published_total` | counter | service, type | events published (orders created, payments processed… by event type) |
//! | `messaging_consumed_total` | counter | consumer, type, outcome | deliveries handled: `ack`, `retry`, `dead_letter` |
//! | `messaging_consumer_pending` | gauge | consumer, durable | events stored but not yet acknowledged by the consumer (lag) |
//! | `outbox_pending_events` | gauge | collection | staged events found by the last sweep |
//! | `outbox_oldest_event_age_seconds` | gauge | collection | age of the oldest staged event at the last sweep |
//! | `shop_reservations_total` | counter | outcome | stock reservation calls answered: `held`, `committed`, `released` |
//! | `shop_payments_total` | counter | outcome | payment events published: `succeeded`, `failed`, `refunded` |
//! | `shop_orders_total` | counter | state | orders `created`, `paid`, `cancelled` |
//! | `shop_deliveries_total` | counter | channel, state | notification delivery attempts: `sent`, `retry`, `failed`, `skipped` |
//! | `shop_idempotency_replays_total` | counter | service | requests answered from an idempotency record |

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, TextEncoder,
};

/// Latency buckets (seconds) of every duration histogram.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let vec = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .expect("valid histogram");
    register(Box::new(vec.clone()));
    vec
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    register(Box::new(vec.clone()));
    vec
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
    register(Box::new(vec.clone()));
    vec
}

fn register(collector: Box<dyn prometheus::core::Collector>) {
    // Each family is created once (LazyLock), so this cannot collide.
    let _ = prometheus::default_registry().register(collector);
}

pub static RPC_SERVER_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram(
        "rpc_server_duration_seconds",
        "Time to serve a gRPC call, by service, method and status code",
        &["service", "rpc_service", "rpc_method", "code"],
    )
});

pub static RPC_CLIENT_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram(
        "rpc_client_duration_seconds",
        "Time for an outgoing gRPC call to be answered, by caller, method and status code",
        &["service", "rpc_service", "rpc_method", "code"],
    )
});

pub static BREAKER_OPEN: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "rpc_client_breaker_open",
        "1 while the circuit breaker to the peer refuses calls",
        &["peer"],
    )
});

pub static DB_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram(
        "db_client_operation_duration_seconds",
        "Time of one document-store operation",
        &["service", "db_system", "operation", "collection", "outcome"],
    )
});

pub static PUBLISHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "messaging_published_total",
        "Events stored on the bus, by publishing service and event type",
        &["service", "type"],
    )
});

pub static CONSUMED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "messaging_consumed_total",
        "Deliveries handled by a durable consumer: ack, retry or dead_letter",
        &["consumer", "type", "outcome"],
    )
});

pub static CONSUMER_PENDING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "messaging_consumer_pending",
        "Events stored for a durable consumer and not yet acknowledged (its lag)",
        &["consumer", "durable"],
    )
});

pub static OUTBOX_PENDING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "outbox_pending_events",
        "Staged events the last outbox sweep found unpublished",
        &["collection"],
    )
});

pub static OUTBOX_OLDEST_AGE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "outbox_oldest_event_age_seconds",
        "Age of the oldest unpublished staged event at the last outbox sweep",
        &["collection"],
    )
});

pub static RESERVATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "shop_reservations_total",
        "Stock reservation calls answered, by outcome: held, committed, released",
        &["outcome"],
    )
});

pub static PAYMENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "shop_payments_total",
        "Payment outcomes published: succeeded, failed, refunded",
        &["outcome"],
    )
});

pub static ORDERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "shop_orders_total",
        "Orders entering a state: created, paid, cancelled",
        &["state"],
    )
});

pub static DELIVERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "shop_deliveries_total",
        "Notification delivery attempts by channel and result",
        &["channel", "state"],
    )
});

pub static IDEMPOTENCY_REPLAYS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "shop_idempotency_replays_total",
        "Requests answered from a stored idempotency record instead of running again",
        &["service"],
    )
});

pub static REFUSED_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "messaging_refused_total",
        "Deliveries dead-lettered unread because their signature was missing, wrong or not \
         their type's owner's (reason: unsigned, bad_signature, not_owner)",
        &["consumer", "type", "reason"],
    )
});

pub static FEATURE_FLAGS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "shop_feature_flag",
        "1 for the variant each fault flag is on (absent: not in the flags file)",
        &["flag", "variant"],
    )
});

pub static FAULTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "shop_fault_injected_total",
        "Faults a flag injected (a declined charge, an added delay, a failed call...)",
        &["flag"],
    )
});

/// Business counters an event states exactly, declared by the service
/// that owns the event type ([`count_when_published`]).
static ON_PUBLISH: LazyLock<
    std::sync::RwLock<std::collections::HashMap<String, (&'static IntCounterVec, &'static str)>>,
> = LazyLock::new(Default::default);

/// Counts `label` on `counter` each time an event of `event_type` is
/// published (e.g. order-svc: `order.created` is an order created).
pub fn count_when_published(
    event_type: &str,
    counter: &'static IntCounterVec,
    label: &'static str,
) {
    ON_PUBLISH
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(event_type.to_string(), (counter, label));
}

/// Counts what [`count_when_published`] declared for `event_type`.
pub(crate) fn count_published(event_type: &str) {
    let declared = ON_PUBLISH.read().unwrap_or_else(|e| e.into_inner());
    if let Some((counter, label)) = declared.get(event_type) {
        counter.with_label_values(&[label]).inc();
    }
}

/// Every family of this module, created (registered) now.
fn collectors() -> [&'static dyn prometheus::core::Collector; 17] {
    [
        &*RPC_SERVER_DURATION,
        &*RPC_CLIENT_DURATION,
        &*BREAKER_OPEN,
        &*DB_DURATION,
        &*PUBLISHED,
        &*CONSUMED,
        &*CONSUMER_PENDING,
        &*OUTBOX_PENDING,
        &*OUTBOX_OLDEST_AGE,
        &*RESERVATIONS,
        &*PAYMENTS,
        &*ORDERS,
        &*DELIVERIES,
        &*IDEMPOTENCY_REPLAYS,
        &*REFUSED_EVENTS,
        &*FEATURE_FLAGS,
        &*FAULTS,
    ]
}

/// Creates every family now, so a scrape lists the ones that have series
/// from the first scrape on.
pub fn register_all() {
    collectors();
}

/// Names of the families of this module (dashboards and alert rules may
/// use only these, and the gateway's own).
pub fn family_names() -> Vec<String> {
    collectors()
        .iter()
        .flat_map(|c| c.desc())
        .map(|d| d.fq_name.clone())
        .collect()
}

/// Records one duration on `histogram`.
pub fn observe(histogram: &HistogramVec, labels: &[&str], elapsed: Duration) {
    histogram
        .with_label_values(labels)
        .observe(elapsed.as_secs_f64());
}

/// Adds one to `counter`.
pub fn count(counter: &IntCounterVec, labels: &[&str]) {
    counter.with_label_values(labels).inc();
}

/// Every family of the process registry in the text exposition format,
/// plus the families of `extra` (the gateway's own registry).
pub fn render(extra: Option<&prometheus::Registry>) -> String {
    register_all();
    let mut families = prometheus::gather();
    if let Some(registry) = extra {
        families.extend(registry.gather());
    }
    let mut out = Vec::new();
    if let Err(err) = TextEncoder::new().encode(&families, &mut out) {
        tracing::warn!(error = %err, "metrics did not encode");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `GET /metrics` (every other path is 404) on `listener` until
/// `cancel`: the process's families plus `extra`'s. The metrics endpoint of
/// `METRICS_ADDR`, apart from the service's own port so it is never exposed
/// with it.
pub fn serve(
    listener: tokio::net::TcpListener,
    cancel: tokio_util::sync::CancellationToken,
    extra: Option<prometheus::Registry>,
) -> tokio::task::JoinHandle<()> {
    let page = move || {
        let body = render(extra.as_ref());
        async move { ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], body) }
    };
    let app = axum::Router::new().route("/metrics", axum::routing::get(page));
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        if let Err(err) = served {
            tracing::warn!(error = %err, "the metrics endpoint stopped");
        }
    })
}

#[cfg(test)]
mod tests {
    use crate::metrics::{ORDERS, RPC_SERVER_DURATION, count, observe, serve};
    use std::time::Duration;

    #[tokio::test]
    async fn the_metrics_endpoint_serves_the_process_registry() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        count(&ORDERS, &["created"]);
        // A family is listed once it has a series.
        observe(
            &RPC_SERVER_DURATION,
            &["test-svc", "shop.test.v1.Test", "Call", "OK"],
            Duration::from_millis(1),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        let task = serve(listener, cancel.clone(), None);
        let get = |path: &'static str| async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(
                    format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await
                .unwrap();
            let mut out = String::new();
            stream.read_to_string(&mut out).await.unwrap();
            out
        };
        let page = get("/metrics").await;
        assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
        assert!(
            page.contains("shop_orders_total{state=\"created\"}"),
            "{page}"
        );
        assert!(
            page.contains("# TYPE rpc_server_duration_seconds histogram"),
            "{page}"
        );
        assert!(get("/other").await.starts_with("HTTP/1.1 404"));
        cancel.cancel();
        task.await.unwrap();
    }
}
