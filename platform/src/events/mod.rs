//! The event bus: durable, at-least-once delivery of
//! `shop.events.v1.Envelope`s between services.
//!
//! Two backends share one interface and one conformance suite:
//! [`memory::InProcessBus`] (embedded default: one process, same semantics)
//! and [`nats::NatsBus`] (JetStream: stream `SHOP` on `shop.>`, file
//! storage, durable pull consumers, explicit acks, `Nats-Msg-Id` dedup).
//!
//! * Publishing returns once the event is stored (JetStream PubAck). An id
//!   published twice within the dedup window is stored once.
//! * A durable consumer has a name; several instances with the same name
//!   share the work; different names each get every event (fan-out).
//! * A delivery is acked when its handler returns `Ok`; a retryable error is
//!   negatively acked and redelivered after a backoff; after `max_deliver`
//!   attempts (or at once for a permanent error) it is moved to
//!   `<prefix>.dlq.<consumer>` with the error in the `Shop-Dlq-Error` header.
//!   A handler whose store or peer is down says so
//!   ([`HandlerError::Unavailable`]): its event waits out the outage with
//!   the same backoff and is never dead-lettered for it.
//!   A consumer that dies before acking gets the event again after
//!   `ack_wait`.
//! * W3C trace context travels in the message headers; the consumer's span
//!   continues the publisher's trace.
//!
//! Reliable publishing (an event stored in the same atomic write as the
//! change that causes it) is in [`outbox`]; idempotent consumption (each
//! event applied once even when delivered again) in [`idempotent`].

pub mod idempotent;
pub mod memory;
pub mod nats;
pub mod outbox;
pub mod signed;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
pub use proto::events::Envelope;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::ErrorKind;

/// Header carrying the event id (JetStream deduplicates on it).
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";
/// Headers of a dead letter.
pub const DLQ_ERROR_HEADER: &str = "Shop-Dlq-Error";
pub const DLQ_SUBJECT_HEADER: &str = "Shop-Dlq-Subject";
pub const DLQ_ATTEMPTS_HEADER: &str = "Shop-Dlq-Attempts";
/// The stream sequence of the event a dead letter stands for (NATS): a
/// replay republishes that stored original, never the letter's own copy,
/// which a service could have written.
pub const DLQ_SEQUENCE_HEADER: &str = "Shop-Dlq-Sequence";

/// What can go wrong talking to the bus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The broker cannot be reached or did not confirm in time; retry later.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    /// A malformed subject, consumer name or envelope.
    #[error("invalid event bus request: {0}")]
    Invalid(String),
    /// Anything else the broker said.
    #[error("event bus failure: {0}")]
    Backend(String),
}

impl BusError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BusError::Unavailable(_) => ErrorKind::Unavailable,
            BusError::Invalid(_) => ErrorKind::InvalidArgument,
            BusError::Backend(_) => ErrorKind::Internal,
        }
    }
}

/// Why a handler did not process a delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// The handler failed on this event; try again later, at most
    /// `max_deliver` times in all, then dead-letter it.
    #[error("retryable: {0}")]
    Retryable(String),
    /// What the handler needs (its store, a peer) could not be reached, or
    /// not in time. The event is not at fault: it is redelivered with the
    /// backoff for as long as the outage lasts, never dead-lettered, and
    /// such deliveries do not count against `max_deliver`, so an outage
    /// cannot drop a step the saga owes (an order's refund, a paid order's
    /// label) nor use up the retries of a later real failure. The
    /// consumer's backlog (`messaging_consumer_pending`) shows the wait.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Will never succeed (undecodable, violates an invariant): dead-letter now.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl HandlerError {
    /// A failed gRPC call (or a service's own operation answered as a
    /// status): a peer or store that is down or did not answer in time
    /// (UNAVAILABLE, DEADLINE_EXCEEDED) is [`HandlerError::Unavailable`];
    /// anything else, a conflict or a refusal included, is
    /// [`HandlerError::Retryable`], so it cannot be retried for ever.
    pub fn from_status(status: &tonic::Status) -> Self {
        use tonic::Code;
        let message = status.message().to_string();
        match status.code() {
            Code::Unavailable | Code::DeadlineExceeded => HandlerError::Unavailable(message),
            _ => HandlerError::Retryable(message),
        }
    }

    /// A failed store operation: [`HandlerError::Unavailable`] when the
    /// backend could not be reached, else [`HandlerError::Retryable`].
    pub fn from_store(err: &crate::store::StoreError) -> Self {
        match err {
            crate::store::StoreError::Unavailable(_) => HandlerError::Unavailable(err.to_string()),
            other => HandlerError::Retryable(other.to_string()),
        }
    }

    /// The same failure, its message prefixed with what was being done.
    pub fn context(self, doing: &str) -> Self {
        match self {
            HandlerError::Retryable(m) => HandlerError::Retryable(format!("{doing}: {m}")),
            HandlerError::Unavailable(m) => HandlerError::Unavailable(format!("{doing}: {m}")),
            HandlerError::Permanent(m) => HandlerError::Permanent(format!("{doing}: {m}")),
        }
    }
}

/// One delivery of an event to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub envelope: Envelope,
    pub subject: String,
    /// 1 on first delivery.
    pub attempt: u32,
    /// How many earlier deliveries ended with the handler's dependencies
    /// unavailable ([`HandlerError::Unavailable`]): they do not count
    /// against `max_deliver`, so an outage leaves the retries of a real
    /// failure intact.
    pub waits: u32,
    pub consumer: String,
    pub headers: HashMap<String, String>,
}

/// Processes deliveries of a consumer.
#[async_trait::async_trait]
pub trait Handler: Send + Sync {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError>;
}

/// A handler from an async closure.
pub struct FnHandler<F>(pub F);

#[async_trait::async_trait]
impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Delivery) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = Result<(), HandlerError>> + Send,
{
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        (self.0)(delivery.clone()).await
    }
}

pub fn handler_fn<F, Fut>(f: F) -> Arc<dyn Handler>
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    Arc::new(FnHandler(f))
}

/// A durable consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Durable name, e.g. `shipping-svc`. `[A-Za-z0-9_-]`.
    pub name: String,
    /// Event types (subjects below the prefix), NATS wildcards allowed:
    /// `order.created`, `payment.*`, `shipping.>`.
    pub event_types: Vec<String>,
    /// Attempts before a delivery is dead-lettered.
    pub max_deliver: u32,
    /// Delay before redelivery after the n-th failure (the last one repeats).
    pub backoff: Vec<Duration>,
    /// How long an unacked delivery stays with a consumer instance before it
    /// is given to another (the instance is presumed dead).
    pub ack_wait: Duration,
}

impl ConsumerConfig {
    pub fn new(name: &str, event_types: &[&str]) -> Self {
        Self {
            name: name.to_string(),
            event_types: event_types.iter().map(|s| s.to_string()).collect(),
            max_deliver: 5,
            backoff: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ],
            ack_wait: Duration::from_secs(30),
        }
    }

    /// A consumer whose events move the saga along (an order's payment or
    /// refund, a paid order's label, the facts recommendations learn
    /// from): retried soon after a failure (0.2, 1, then every 5 s), up to
    /// 10 attempts of its own.
    pub fn prompt(name: &str, event_types: &[&str]) -> Self {
        Self {
            max_deliver: 10,
            backoff: vec![
                Duration::from_millis(200),
                Duration::from_secs(1),
                Duration::from_secs(5),
            ],
            ..Self::new(name, event_types)
        }
    }

    pub fn backoff_after(&self, attempt: u32) -> Duration {
        let i = (attempt.max(1) as usize - 1).min(self.backoff.len().saturating_sub(1));
        self.backoff
            .get(i)
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }

    fn validate(&self) -> Result<(), BusError> {
        validate_consumer_name(&self.name)?;
        if self.event_types.is_empty() {
            return Err(BusError::Invalid(
                "a consumer needs at least one event type".into(),
            ));
        }
        for t in &self.event_types {
            validate_subject_pattern(t)?;
        }
        if self.max_deliver == 0 {
            return Err(BusError::Invalid("max_deliver must be at least 1".into()));
        }
        Ok(())
    }
}

/// A durable consumer's name: 1 to 64 of `[A-Za-z0-9_-]` (it is also a
/// subject token of its dead letters).
pub(crate) fn validate_consumer_name(name: &str) -> Result<(), BusError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(BusError::Invalid(format!(
            "consumer name {name:?} must be [A-Za-z0-9_-]"
        )))
    }
}

fn validate_subject_pattern(pattern: &str) -> Result<(), BusError> {
    let tokens: Vec<&str> = pattern.split('.').collect();
    let ok = tokens.iter().enumerate().all(|(i, t)| {
        !t.is_empty()
            && (*t == "*"
                || (*t == ">" && i == tokens.len() - 1)
                || t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    });
    if ok {
        Ok(())
    } else {
        Err(BusError::Invalid(format!(
            "invalid event type pattern {pattern:?}"
        )))
    }
}

/// NATS subject matching: `*` is one token, `>` the rest.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A running consumer instance. Dropping it leaves it running in the
/// background; stop it explicitly.
#[derive(Debug)]
pub struct Subscription {
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Subscription {
    pub(crate) fn new(cancel: CancellationToken, tasks: Vec<tokio::task::JoinHandle<()>>) -> Self {
        Self { cancel, tasks }
    }

    /// Finishes the delivery in hand, then stops.
    pub async fn stop(self) {
        self.cancel.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Stops at once, as a crash would: a delivery in hand is not acked and
    /// comes back (to another instance) after `ack_wait`.
    pub fn abort(self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The bus interface.
#[async_trait::async_trait]
pub trait EventBus: Send + Sync + fmt::Debug {
    /// Stores the event on subject `<prefix>.<type>`; returns once it is
    /// durable. The same id twice within the dedup window is stored once.
    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError>;

    /// Starts an instance of the durable consumer `config.name` feeding
    /// `handler`.
    async fn subscribe(
        &self,
        config: ConsumerConfig,
        handler: Arc<dyn Handler>,
    ) -> Result<Subscription, BusError>;

    /// Best-effort fan-out, outside the durable stream: every listener of
    /// `topic`, in every process on this bus, gets each message sent while
    /// it listens (NATS core pub/sub; nothing stored, nothing redelivered).
    /// For live views whose source of truth is elsewhere.
    async fn broadcast(&self, topic: &str, payload: Vec<u8>) -> Result<(), BusError>;

    /// Messages broadcast on `topic` from now on. A listener that falls far
    /// behind loses the oldest.
    async fn listen(&self, topic: &str) -> Result<Listener, BusError>;

    /// Subject prefix (`shop`).
    fn prefix(&self) -> &str;

    fn name(&self) -> &'static str;

    /// Whether the bus can take events now (readiness).
    fn is_connected(&self) -> bool {
        true
    }

    /// The component that signs what this bus publishes
    /// ([`signed::SignedBus`]); none for the bus itself.
    fn signer(&self) -> Option<&str> {
        None
    }
}

/// Messages of a broadcast topic.
pub type Listener = futures::stream::BoxStream<'static, Vec<u8>>;

/// Subject of a broadcast topic: beside the stream's `<prefix>.>`
/// subjects, never stored by it.
pub fn live_subject(prefix: &str, topic: &str) -> Result<String, BusError> {
    if topic.is_empty()
        || !topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(BusError::Invalid(format!("bad broadcast topic {topic:?}")));
    }
    Ok(format!("{prefix}_live.{topic}"))
}

/// Subject of an event type.
pub fn subject(prefix: &str, event_type: &str) -> String {
    format!("{prefix}.{event_type}")
}

/// Dead-letter subject of a consumer.
pub fn dlq_subject(prefix: &str, consumer: &str) -> String {
    format!("{prefix}.dlq.{consumer}")
}

/// A new envelope of `payload`, typed by it: UUIDv7 id, now, and the
/// current trace context.
pub fn event(
    aggregate_id: &str,
    source: &str,
    payload: proto::events::envelope::Payload,
) -> Envelope {
    envelope(payload.event_type(), aggregate_id, source, payload)
}

/// A new envelope under any `event_type`: UUIDv7 id, now, and the current
/// trace context. Services publish with [`event`], which takes the type
/// from the payload; this one is for tests and tools of the bus itself
/// (subject filtering, dead letters) that need made-up types.
pub fn envelope(
    event_type: &str,
    aggregate_id: &str,
    source: &str,
    payload: proto::events::envelope::Payload,
) -> Envelope {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut headers = http::HeaderMap::new();
    crate::telemetry::inject(&crate::telemetry::current_context(), &mut headers);
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    Envelope {
        id: uuid::Uuid::now_v7().to_string(),
        r#type: event_type.to_string(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: now.as_secs() as i64,
            nanos: now.subsec_nanos() as i32,
        }),
        aggregate_id: aggregate_id.to_string(),
        traceparent: header("traceparent"),
        tracestate: header("tracestate"),
        source: source.to_string(),
        signature: Vec::new(),
        payload: Some(payload),
    }
}

/// Checks an envelope before publishing and encodes it.
pub(crate) fn encode(envelope: &Envelope) -> Result<Vec<u8>, BusError> {
    if envelope.id.is_empty() {
        return Err(BusError::Invalid("an event needs an id".into()));
    }
    validate_subject_pattern(&envelope.r#type)
        .ok()
        .filter(|_| !envelope.r#type.contains(['*', '>']))
        .ok_or_else(|| BusError::Invalid(format!("invalid event type {:?}", envelope.r#type)))?;
    Ok(envelope.encode_to_vec())
}

/// Headers a publish carries: the id, and the trace context (the
/// envelope's, else the current span's).
pub(crate) fn publish_headers(envelope: &Envelope) -> Vec<(String, String)> {
    let mut out = vec![(MSG_ID_HEADER.to_string(), envelope.id.clone())];
    let mut headers = http::HeaderMap::new();
    crate::telemetry::inject(&crate::telemetry::current_context(), &mut headers);
    let current = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let traceparent = current("traceparent")
        .or_else(|| Some(envelope.traceparent.clone()).filter(|s| !s.is_empty()));
    if let Some(tp) = traceparent {
        out.push(("traceparent".into(), tp));
    }
    let tracestate = current("tracestate")
        .or_else(|| Some(envelope.tracestate.clone()).filter(|s| !s.is_empty()));
    if let Some(ts) = tracestate {
        out.push(("tracestate".into(), ts));
    }
    out
}

/// The PRODUCER span of publishing `envelope` on `system` (`nats`, or
/// `memory` for the in-process bus): a child of the context the event was
/// created in (its `traceparent`, else the current span), in the service
/// that created it. Publish under it, so the headers carry its context and
/// the consumer's span is its child.
pub(crate) fn producer_span(
    envelope: &Envelope,
    system: &'static str,
    prefix: &str,
) -> tracing::Span {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let destination = subject(prefix, &envelope.r#type);
    let span = tracing::info_span!(
        "messaging.publish",
        otel.name = %format!("publish {destination}"),
        otel.kind = "producer",
        messaging.system = system,
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = %destination,
        messaging.message.id = %envelope.id,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    let parent = if envelope.traceparent.is_empty() {
        crate::telemetry::current_context()
    } else {
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("traceparent", &envelope.traceparent),
            ("tracestate", &envelope.tracestate),
        ] {
            if let Ok(value) = http::HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
        crate::telemetry::extract(&headers)
    };
    let parent = match envelope.source.as_str() {
        "" => parent,
        source => crate::telemetry::with_service(parent, source),
    };
    let _ = span.set_parent(parent);
    span
}

/// Records how a publish ended: ERROR on its span, or the event counted.
pub(crate) fn published(span: &tracing::Span, envelope: &Envelope, result: &Result<(), BusError>) {
    match result {
        Ok(()) => {
            crate::metrics::count(
                &crate::metrics::PUBLISHED,
                &[&envelope.source, &envelope.r#type],
            );
            crate::metrics::count_published(&envelope.r#type);
        }
        Err(err) => {
            let kind = match err {
                BusError::Unavailable(_) => "unavailable",
                BusError::Invalid(_) => "invalid",
                BusError::Backend(_) => "backend",
            };
            crate::telemetry::record_error(span, kind, err);
        }
    }
}

/// What to do with a delivery after its handler ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ack,
    Retry(Duration),
    /// Redeliver after the delay without spending an attempt: the
    /// handler's store or peer was unavailable.
    Wait(Duration),
    DeadLetter(String),
}

/// Runs the handler for one delivery inside a span that continues the
/// publisher's trace, and decides the outcome.
pub(crate) async fn process(
    handler: &dyn Handler,
    config: &ConsumerConfig,
    system: &'static str,
    delivery: Delivery,
) -> Outcome {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::info_span!(
        "messaging.process",
        otel.name = %format!("process {}", delivery.subject),
        otel.kind = "consumer",
        messaging.system = system,
        messaging.operation.type = "process",
        messaging.destination.name = %delivery.subject,
        messaging.message.id = %delivery.envelope.id,
        messaging.consumer.group.name = %config.name,
        attempt = delivery.attempt,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    let mut headers = http::HeaderMap::new();
    for (k, v) in &delivery.headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            headers.insert(k, v);
        }
    }
    let _ = span.set_parent(crate::telemetry::with_service(
        crate::telemetry::extract(&headers),
        &config.name,
    ));
    let attempt = delivery.attempt;
    // Attempts spent by the handler itself; deliveries that met an outage
    // are not among them.
    let spent = attempt.saturating_sub(delivery.waits).max(1);
    let outcome = async {
        let handled = if crate::flags::hits(crate::flags::EVENT_FAILURE_RATE, Some(config.name.as_str())) {
            Err(HandlerError::Retryable(format!(
                "{} failed this delivery (fault flag {})",
                config.name,
                crate::flags::EVENT_FAILURE_RATE
            )))
        } else {
            handler.handle(&delivery).await
        };
        match handled {
            Ok(()) => Outcome::Ack,
            Err(HandlerError::Retryable(reason)) if spent < config.max_deliver => {
                tracing::warn!(%reason, attempt, "event handling failed; will retry");
                crate::telemetry::record_error(&tracing::Span::current(), "retryable", &reason);
                Outcome::Retry(config.backoff_after(attempt))
            }
            Err(HandlerError::Unavailable(reason)) => {
                tracing::warn!(%reason, attempt, "a dependency of the handler is unavailable; will retry");
                crate::telemetry::record_error(&tracing::Span::current(), "unavailable", &reason);
                Outcome::Wait(config.backoff_after(attempt))
            }
            Err(err) => {
                tracing::error!(error = %err, attempt, "event dead-lettered");
                crate::telemetry::record_error(&tracing::Span::current(), "dead_letter", &err);
                Outcome::DeadLetter(err.to_string())
            }
        }
    }
    .instrument(span)
    .await;
    let label = match &outcome {
        Outcome::Ack => "ack",
        Outcome::Retry(_) | Outcome::Wait(_) => "retry",
        Outcome::DeadLetter(_) => "dead_letter",
    };
    crate::metrics::count(
        &crate::metrics::CONSUMED,
        &[&config.name, &delivery.envelope.r#type, label],
    );
    outcome
}

/// Builds the bus `config` asks for: NATS when `NATS_URL` is set, else in-process.
pub async fn connect(config: &crate::Config) -> Result<Arc<dyn EventBus>, BusError> {
    match &config.nats_url {
        Some(url) => {
            let settings = nats::NatsSettings::from_config(config);
            Ok(Arc::new(nats::NatsBus::connect(url, settings).await?))
        }
        None => Ok(Arc::new(memory::InProcessBus::new(&config.nats_prefix))),
    }
}

#[cfg(test)]
mod tests {
    use crate::events::{ConsumerConfig, subject_matches};
    use std::time::Duration;

    #[test]
    fn subjects_match_like_nats() {
        assert!(subject_matches("shop.order.created", "shop.order.created"));
        assert!(subject_matches("shop.order.*", "shop.order.created"));
        assert!(!subject_matches("shop.order.*", "shop.order.created.v2"));
        assert!(subject_matches("shop.>", "shop.order.created"));
        assert!(!subject_matches("shop.>", "shop"));
        assert!(!subject_matches(
            "shop.order.created",
            "shop.order.cancelled"
        ));
        assert!(!subject_matches("shop.order", "shop.order.created"));
    }

    #[test]
    fn consumer_config_is_validated() {
        assert!(
            ConsumerConfig::new("shipping-svc", &["order.created", "payment.*"])
                .validate()
                .is_ok()
        );
        assert!(
            ConsumerConfig::new("bad.name", &["order.created"])
                .validate()
                .is_err()
        );
        assert!(ConsumerConfig::new("ok", &[]).validate().is_err());
        assert!(
            ConsumerConfig::new("ok", &["order..created"])
                .validate()
                .is_err()
        );
        assert!(ConsumerConfig::new("ok", &[">.x"]).validate().is_err());
    }

    #[test]
    fn backoff_repeats_its_last_step() {
        let mut c = ConsumerConfig::new("c", &["a"]);
        c.backoff = vec![Duration::from_millis(10), Duration::from_millis(20)];
        assert_eq!(c.backoff_after(1), Duration::from_millis(10));
        assert_eq!(c.backoff_after(2), Duration::from_millis(20));
        assert_eq!(c.backoff_after(9), Duration::from_millis(20));
    }
}
