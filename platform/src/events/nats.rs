//! NATS JetStream backend (`async-nats`).
//!
//! * One stream (`SHOP` on `shop.>` by default), created or updated at
//!   start, file storage, a 2-minute duplicate window on `Nats-Msg-Id`.
//! * Publishing waits for the PubAck; no answer in time is `Unavailable`.
//! * A consumer subscribed to several event types gets one durable pull
//!   consumer per type (`<name>__<type>`), each with a single
//!   `filter_subject`: NATS 2.9 ignores the newer `filter_subjects` list
//!   and would deliver everything.
//! * Explicit acks; a retryable failure is NAKed with the consumer's
//!   backoff as delay; redeliveries are counted by the server, and after
//!   `max_deliver` attempts the event is published to
//!   `<prefix>.dlq.<consumer>` (with its stream sequence, so a replay can
//!   republish the original) and then acked. A handler whose store or
//!   peer is unavailable gets the event again after the backoff, never a
//!   dead letter, and those deliveries are not counted as attempts.
//! * `ops`: the backlog and dead letters as an operator sees them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, Consumer, DeliverPolicy, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt as _;
use prost::Message as _;
use proto::events::Envelope;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

mod ops;
pub use ops::{Backlog, DeadLetter, Replay};

use super::{
    BusError, ConsumerConfig, DLQ_ATTEMPTS_HEADER, DLQ_ERROR_HEADER, DLQ_SEQUENCE_HEADER,
    DLQ_SUBJECT_HEADER, Delivery, EventBus, Handler, Outcome, Subscription, dlq_subject, subject,
};

/// How often a consumer's lag is read from JetStream, and how long the
/// read may take.
const LAG_EVERY: Duration = Duration::from_secs(10);
const LAG_TIMEOUT: Duration = Duration::from_secs(2);
/// Events of one consumer whose outage deliveries are tracked at once.
const MAX_TRACKED_WAITS: usize = 10_000;

/// Stream and timing settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSettings {
    /// Stream name (`SHOP`).
    pub stream: String,
    /// Subject prefix; the stream holds `<prefix>.>` (`shop`).
    pub prefix: String,
    /// How long a publish waits for the PubAck.
    pub publish_timeout: Duration,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// How long events are kept.
    pub max_age: Duration,
    /// Credentials of this connection.
    pub auth: crate::config::NatsAuth,
}

impl NatsSettings {
    /// The stream, subject prefix and credentials `config` names.
    pub fn from_config(config: &crate::Config) -> Self {
        Self {
            stream: config.nats_stream.clone(),
            prefix: config.nats_prefix.clone(),
            auth: config.nats_auth.clone(),
            ..Default::default()
        }
    }
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            stream: "SHOP".into(),
            prefix: "shop".into(),
            publish_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            max_age: Duration::from_secs(7 * 24 * 3600),
            auth: crate::config::NatsAuth::None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    js: jetstream::Context,
    settings: NatsSettings,
}

/// The warning for a service that connects to a NATS server beyond this
/// machine with no credentials: anything that reaches that server could
/// publish the events the services act on. A server on the loopback
/// interface (development, the all-in-one binary) is left alone.
fn missing_credentials(url: &str, settings: &NatsSettings) -> Option<String> {
    let (bare, in_url) = split_credentials(url);
    if in_url.is_some() || !matches!(settings.auth, crate::config::NatsAuth::None) {
        return None;
    }
    let host = bare
        .split("://")
        .nth(1)
        .unwrap_or(&bare)
        .split(',')
        .next()
        .unwrap_or_default();
    let host = host
        .rsplit_once(':')
        .map_or(host, |(h, _)| h)
        .trim_matches(['[', ']']);
    let local = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!local).then(|| {
        format!(
            "connecting to NATS at {bare} without credentials: any process that reaches it can publish events this service acts on; give each service its own user (NATS_USER, NATS_PASSWORD; see deploy/nats/nats.conf)"
        )
    })
}

/// `nats://user:password@host:port` as the URL without its user part and
/// the (percent-decoded) user and password.
fn split_credentials(url: &str) -> (String, Option<(String, String)>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return (url.to_string(), None);
    };
    let (userinfo, host) = (&rest[..at], &rest[at + 1..]);
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let decode = |s: &str| percent_decode(s).unwrap_or_else(|| s.to_string());
    (
        format!("{scheme}://{host}"),
        Some((decode(user), decode(password))),
    )
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn unavailable(err: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(err.to_string())
}

impl NatsBus {
    /// Connects and creates (or updates) the stream.
    pub async fn connect(url: &str, settings: NatsSettings) -> Result<Self, BusError> {
        if let Some(warning) = missing_credentials(url, &settings) {
            tracing::warn!("{warning}");
        }
        let bus = Self::attach_unchecked(url, settings).await?;
        bus.ensure_stream().await?;
        Ok(bus)
    }

    /// Connects to a stream that must already exist, changing nothing
    /// about it: for tools that look at a running deployment.
    pub async fn attach(url: &str, settings: NatsSettings) -> Result<Self, BusError> {
        let bus = Self::attach_unchecked(url, settings).await?;
        bus.js
            .get_stream(&bus.settings.stream)
            .await
            .map_err(|e| unavailable(format!("no stream {}: {e}", bus.settings.stream)))?;
        Ok(bus)
    }

    async fn attach_unchecked(url: &str, settings: NatsSettings) -> Result<Self, BusError> {
        // async-nats does not read credentials from the URL: take them out
        // (so no message ever shows the password) and pass them on.
        let (url, in_url) = split_credentials(url);
        let url = url.as_str();
        let options = match (&settings.auth, in_url) {
            (crate::config::NatsAuth::UserPassword { user, password }, _) => {
                async_nats::ConnectOptions::with_user_and_password(
                    user.clone(),
                    password.expose().to_string(),
                )
            }
            (crate::config::NatsAuth::None, Some((user, password))) => {
                async_nats::ConnectOptions::with_user_and_password(user, password)
            }
            (crate::config::NatsAuth::None, None) => async_nats::ConnectOptions::new(),
        };
        let client = options
            .name("shopmesh")
            .connection_timeout(settings.connect_timeout)
            .request_timeout(Some(settings.publish_timeout))
            // Reconnect quickly after an outage: 100 ms, 200 ms, … up to 1 s.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64 * 100).min(1000))
            })
            .connect(url)
            .await
            .map_err(|e| unavailable(format!("cannot connect to NATS at {url}: {e}")))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(settings.publish_timeout);
        Ok(Self {
            client,
            js,
            settings,
        })
    }

    async fn ensure_stream(&self) -> Result<(), BusError> {
        let config = StreamConfig {
            name: self.settings.stream.clone(),
            subjects: vec![format!("{}.>", self.settings.prefix)],
            storage: StorageType::File,
            duplicate_window: Duration::from_secs(120),
            max_age: self.settings.max_age,
            ..Default::default()
        };
        self.js.create_or_update_stream(config).await.map_err(|e| {
            unavailable(format!(
                "cannot create stream {}: {e}",
                self.settings.stream
            ))
        })?;
        Ok(())
    }

    /// Messages currently in the stream on `subject` (tests, tools).
    pub async fn count(&self, subject: &str) -> Result<u64, BusError> {
        let stream = self
            .js
            .get_stream(&self.settings.stream)
            .await
            .map_err(unavailable)?;
        let info = stream
            .info_with_subjects(subject)
            .await
            .map_err(unavailable)?;
        let mut total = 0;
        let mut subjects = info;
        while let Some(entry) = subjects.next().await {
            total += entry.map_err(unavailable)?.1 as u64;
        }
        Ok(total)
    }

    /// Deletes the stream (tests).
    pub async fn delete_stream(&self) -> Result<(), BusError> {
        self.js
            .delete_stream(&self.settings.stream)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    async fn publish_raw(
        &self,
        subject: String,
        id: &str,
        headers: HeaderMap,
        payload: Vec<u8>,
    ) -> Result<(), BusError> {
        let message = PublishMessage::build()
            .payload(payload.into())
            .headers(headers)
            .message_id(id);
        let publish = async {
            let ack = self
                .js
                .send_publish(subject, message)
                .await
                .map_err(unavailable)?;
            ack.await.map_err(unavailable)
        };
        match tokio::time::timeout(self.settings.publish_timeout, publish).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(BusError::Unavailable(
                "NATS did not acknowledge the publish in time".into(),
            )),
        }
    }

    /// One durable consumer per event type (see the module docs).
    async fn consumer(
        &self,
        config: &ConsumerConfig,
        event_type: &str,
    ) -> Result<Consumer<pull::Config>, BusError> {
        let durable = format!(
            "{}__{}",
            config.name,
            event_type
                .replace('.', "_")
                .replace('*', "STAR")
                .replace('>', "ALL")
        );
        let stream = self
            .js
            .get_stream(&self.settings.stream)
            .await
            .map_err(unavailable)?;
        let consumer_config = pull::Config {
            durable_name: Some(durable.clone()),
            filter_subject: subject(&self.settings.prefix, event_type),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: config.ack_wait,
            // Redelivery is bounded by us (dead letter after max_deliver).
            max_deliver: -1,
            max_ack_pending: 1000,
            ..Default::default()
        };
        stream
            .get_or_create_consumer(&durable, consumer_config)
            .await
            .map_err(|e| unavailable(format!("cannot create consumer {durable}: {e}")))
    }

    async fn dead_letter(
        &self,
        consumer: &str,
        message: &jetstream::Message,
        error: &str,
        attempt: u32,
    ) -> Result<(), BusError> {
        let mut headers = message.headers.clone().unwrap_or_default();
        let id = headers
            .get(super::MSG_ID_HEADER)
            .map(|v| v.as_str().to_string())
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        headers.insert(DLQ_ERROR_HEADER, error.replace(['\r', '\n'], " "));
        headers.insert(DLQ_SUBJECT_HEADER, message.subject.as_str());
        headers.insert(DLQ_ATTEMPTS_HEADER, attempt.to_string());
        if let Ok(info) = message.info() {
            headers.insert(DLQ_SEQUENCE_HEADER, info.stream_sequence.to_string());
        }
        let subject = dlq_subject(&self.settings.prefix, consumer);
        self.publish_raw(
            subject,
            &format!("{id}:dlq:{consumer}"),
            headers,
            message.payload.to_vec(),
        )
        .await
    }

    /// One delivery. `waits` counts, per stream sequence, the deliveries of
    /// this consumer that met an outage (kept by this process only: after
    /// a restart an outage's deliveries count as attempts again).
    async fn handle_message(
        &self,
        config: &ConsumerConfig,
        handler: &dyn Handler,
        message: jetstream::Message,
        waits: &mut HashMap<u64, u32>,
    ) {
        let (attempt, sequence) = message
            .info()
            .map(|i| (i.delivered.max(1) as u32, i.stream_sequence))
            .unwrap_or((1, 0));
        let headers: HashMap<String, String> = message
            .headers
            .iter()
            .flat_map(|h| h.iter())
            .filter_map(|(k, values)| {
                values
                    .first()
                    .map(|v| (k.to_string(), v.as_str().to_string()))
            })
            .collect();
        let outcome = match Envelope::decode(message.payload.as_ref()) {
            Ok(envelope) => {
                let delivery = Delivery {
                    envelope,
                    subject: message.subject.to_string(),
                    attempt,
                    waits: waits.get(&sequence).copied().unwrap_or(0),
                    consumer: config.name.clone(),
                    headers,
                };
                super::process(handler, config, "nats", delivery).await
            }
            Err(err) => Outcome::DeadLetter(format!("undecodable envelope: {err}")),
        };
        if matches!(outcome, Outcome::Wait(_)) {
            if waits.len() >= MAX_TRACKED_WAITS {
                waits.clear();
            }
            *waits.entry(sequence).or_default() += 1;
        } else if !matches!(outcome, Outcome::Retry(_)) {
            waits.remove(&sequence);
        }
        let acked = match outcome {
            Outcome::Ack => message.ack().await,
            Outcome::Retry(delay) | Outcome::Wait(delay) => {
                message.ack_with(AckKind::Nak(Some(delay))).await
            }
            Outcome::DeadLetter(error) => match self
                .dead_letter(&config.name, &message, &error, attempt)
                .await
            {
                Ok(()) => message.ack_with(AckKind::Term).await,
                Err(err) => {
                    // Not dead-lettered: leave it for redelivery.
                    tracing::warn!(error = %err, "dead-lettering failed; the event will be redelivered");
                    message
                        .ack_with(AckKind::Nak(Some(config.backoff_after(attempt))))
                        .await
                }
            },
        };
        if let Err(err) = acked {
            tracing::warn!(error = %err, "ack failed; the event will be redelivered after ack_wait");
        }
    }

    /// Keeps `messaging_consumer_pending` of one durable consumer current:
    /// events not yet delivered plus those delivered and not acked.
    async fn report_lag(self, consumer: String, durable: String, cancel: CancellationToken) {
        let gauge = crate::metrics::CONSUMER_PENDING.with_label_values(&[&consumer, &durable]);
        loop {
            let info = async {
                let stream = self.js.get_stream(&self.settings.stream).await.ok()?;
                stream.consumer_info(&durable).await.ok()
            };
            if let Ok(Some(info)) = tokio::time::timeout(LAG_TIMEOUT, info).await {
                gauge.set((info.num_pending + info.num_ack_pending as u64) as i64);
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(LAG_EVERY) => {}
            }
        }
    }

    async fn run(
        self,
        consumer: Consumer<pull::Config>,
        config: ConsumerConfig,
        handler: Arc<dyn Handler>,
        cancel: CancellationToken,
    ) {
        let mut waits = HashMap::new();
        loop {
            let messages = tokio::select! {
                () = cancel.cancelled() => return,
                messages = consumer.stream().max_messages_per_batch(10).heartbeat(Duration::from_secs(5)).messages() => messages,
            };
            let mut messages = match messages {
                Ok(messages) => messages,
                Err(err) => {
                    tracing::warn!(error = %err, consumer = %config.name, "cannot pull; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    () = cancel.cancelled() => return,
                    next = messages.next() => next,
                };
                match next {
                    Some(Ok(message)) => {
                        self.handle_message(&config, handler.as_ref(), message, &mut waits)
                            .await
                    }
                    Some(Err(err)) => {
                        tracing::debug!(error = %err, consumer = %config.name, "pull stream error");
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_millis(200)) => {}
                        }
                        break;
                    }
                    None => break,
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl EventBus for NatsBus {
    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        let span = super::producer_span(envelope, self.name(), &self.settings.prefix);
        let result = async {
            let payload = super::encode(envelope)?;
            let mut headers = HeaderMap::new();
            for (k, v) in super::publish_headers(envelope) {
                if k != super::MSG_ID_HEADER {
                    headers.insert(k.as_str(), v.as_str());
                }
            }
            self.publish_raw(
                subject(&self.settings.prefix, &envelope.r#type),
                &envelope.id,
                headers,
                payload,
            )
            .await
        }
        .instrument(span.clone())
        .await;
        super::published(&span, envelope, &result);
        result
    }

    async fn subscribe(
        &self,
        config: ConsumerConfig,
        handler: Arc<dyn Handler>,
    ) -> Result<Subscription, BusError> {
        config.validate()?;
        let cancel = CancellationToken::new();
        let mut tasks = Vec::new();
        for event_type in &config.event_types {
            let consumer = self.consumer(&config, event_type).await?;
            tasks.push(tokio::spawn(self.clone().report_lag(
                config.name.clone(),
                consumer.cached_info().name.clone(),
                cancel.clone(),
            )));
            tasks.push(tokio::spawn(self.clone().run(
                consumer,
                config.clone(),
                handler.clone(),
                cancel.clone(),
            )));
        }
        Ok(Subscription::new(cancel, tasks))
    }

    async fn broadcast(&self, topic: &str, payload: Vec<u8>) -> Result<(), BusError> {
        let subject = super::live_subject(&self.settings.prefix, topic)?;
        self.client
            .publish(subject, payload.into())
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))
    }

    async fn listen(&self, topic: &str) -> Result<super::Listener, BusError> {
        use futures::StreamExt as _;
        let subject = super::live_subject(&self.settings.prefix, topic)?;
        let subscriber = self
            .client
            .subscribe(subject)
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        Ok(Box::pin(subscriber.map(|message| message.payload.to_vec())))
    }

    fn prefix(&self) -> &str {
        &self.settings.prefix
    }

    fn name(&self) -> &'static str {
        "nats"
    }

    fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

#[cfg(test)]
mod tests {
    use super::{NatsSettings, missing_credentials, split_credentials};

    #[test]
    fn a_remote_server_without_credentials_is_warned_about() {
        let none = NatsSettings::default();
        for local in [
            "nats://127.0.0.1:4222",
            "nats://localhost:4222",
            "nats://[::1]:4222",
        ] {
            assert_eq!(missing_credentials(local, &none), None, "{local}");
        }
        assert_eq!(missing_credentials("nats://svc:pw@nats:4222", &none), None);
        let warning = missing_credentials("nats://nats.shop.svc:4222", &none).expect("a warning");
        assert!(warning.contains("nats://nats.shop.svc:4222"), "{warning}");
        assert!(!warning.contains("pw"));
    }

    #[test]
    fn credentials_are_taken_out_of_the_url() {
        assert_eq!(
            split_credentials("nats://order-svc:p%40ss@nats:4222"),
            (
                "nats://nats:4222".to_string(),
                Some(("order-svc".to_string(), "p@ss".to_string()))
            )
        );
        assert_eq!(
            split_credentials("nats://127.0.0.1:4222"),
            ("nats://127.0.0.1:4222".to_string(), None)
        );
        assert_eq!(
            split_credentials("tls://u:p@a:1,b:2"),
            ("tls://a:1,b:2".to_string(), Some(("u".into(), "p".into())))
        );
    }
}
