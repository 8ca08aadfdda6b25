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

mod consumer;
mod envelope;
mod error;
mod process;

use std::fmt;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub(crate) use consumer::validate_consumer_name;
pub use consumer::{ConsumerConfig, Delivery, FnHandler, Handler, handler_fn, subject_matches};
pub use envelope::{
    DLQ_ATTEMPTS_HEADER, DLQ_ERROR_HEADER, DLQ_SEQUENCE_HEADER, DLQ_SUBJECT_HEADER, MSG_ID_HEADER,
    dlq_subject, envelope, event, live_subject, subject,
};
pub(crate) use envelope::{encode, publish_headers};
pub use error::{BusError, HandlerError};
pub(crate) use process::{Outcome, process, producer_span, published};
pub use proto::events::Envelope;

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
