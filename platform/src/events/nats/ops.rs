//! The bus as an operator sees it: what consumers have not handled yet,
//! what they gave up on (dead letters), and sending dead letters round
//! again once their cause is fixed (`shopmesh dead-letters`).

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures::{StreamExt as _, TryStreamExt as _};
use prost::Message as _;
use proto::events::Envelope;

use super::{NatsBus, unavailable};
use crate::events::{
    BusError, DLQ_ATTEMPTS_HEADER, DLQ_ERROR_HEADER, DLQ_SUBJECT_HEADER, MSG_ID_HEADER, dlq_subject,
};

/// See [`NatsBus::backlog`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Durable consumer → events not yet delivered to it, plus those
    /// delivered and not acknowledged (being handled, or waiting out a
    /// retry's backoff).
    pub unhandled: BTreeMap<String, u64>,
    /// Dead-letter subject → events on it.
    pub dead_lettered: BTreeMap<String, u64>,
}

/// An event a consumer gave up on, as kept on `<prefix>.dlq.<consumer>`.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Where it is in the stream.
    pub sequence: u64,
    /// The consumer that gave up on it.
    pub consumer: String,
    /// The subject it was first published on, where a replay sends it.
    pub subject: String,
    /// Why the consumer gave up, and after how many deliveries.
    pub error: String,
    pub attempts: u32,
    /// The event (None if it does not decode).
    pub envelope: Option<Envelope>,
    headers: HeaderMap,
    payload: Vec<u8>,
}

/// How long reading dead letters waits for the next batch.
const READ_WAIT: Duration = Duration::from_secs(1);

impl NatsBus {
    /// What the stream's consumers have not finished, and what they gave
    /// up on. An operator's view of the bus (and the test of "every event
    /// is handled once per consumer"): a backlog that does not drain, or
    /// anything dead-lettered, needs a person.
    pub async fn backlog(&self) -> Result<Backlog, BusError> {
        let stream = self
            .js
            .get_stream(&self.settings.stream)
            .await
            .map_err(unavailable)?;
        let mut backlog = Backlog::default();
        let mut consumers = stream.consumers();
        while let Some(info) = consumers.try_next().await.map_err(unavailable)? {
            let unhandled = info.num_pending + info.num_ack_pending as u64;
            if unhandled > 0 {
                backlog.unhandled.insert(info.name.clone(), unhandled);
            }
        }
        let mut subjects = stream
            .info_with_subjects(dlq_subject(&self.settings.prefix, ">"))
            .await
            .map_err(unavailable)?;
        while let Some((subject, count)) = subjects.try_next().await.map_err(unavailable)? {
            if count > 0 {
                backlog.dead_lettered.insert(subject, count as u64);
            }
        }
        Ok(backlog)
    }

    /// The dead letters of `consumer` (every consumer's when None), oldest
    /// first. Reading takes nothing away.
    pub async fn dead_letters(&self, consumer: Option<&str>) -> Result<Vec<DeadLetter>, BusError> {
        let stream = self
            .js
            .get_stream(&self.settings.stream)
            .await
            .map_err(unavailable)?;
        let filter = dlq_subject(&self.settings.prefix, consumer.unwrap_or("*"));
        // An ephemeral reader: acks nothing, so the letters stay.
        let mut reader = stream
            .create_consumer(pull::Config {
                filter_subject: filter.clone(),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(format!("cannot read {filter}: {e}")))?;
        let total = reader.info().await.map_err(unavailable)?.num_pending as usize;
        let dlq_prefix = dlq_subject(&self.settings.prefix, "");
        let mut letters = Vec::with_capacity(total);
        while letters.len() < total {
            let mut batch = reader
                .fetch()
                .max_messages((total - letters.len()).min(256))
                .expires(READ_WAIT)
                .messages()
                .await
                .map_err(unavailable)?;
            let before = letters.len();
            while let Some(message) = batch.next().await {
                let message = message.map_err(unavailable)?;
                let headers = message.headers.clone().unwrap_or_default();
                let header = |name: &str| {
                    headers
                        .get(name)
                        .map(|v| v.as_str().to_string())
                        .unwrap_or_default()
                };
                letters.push(DeadLetter {
                    sequence: message.info().map(|i| i.stream_sequence).unwrap_or(0),
                    consumer: message
                        .subject
                        .as_str()
                        .strip_prefix(&dlq_prefix)
                        .unwrap_or_default()
                        .to_string(),
                    subject: header(DLQ_SUBJECT_HEADER),
                    error: header(DLQ_ERROR_HEADER),
                    attempts: header(DLQ_ATTEMPTS_HEADER).parse().unwrap_or(0),
                    envelope: Envelope::decode(message.payload.as_ref()).ok(),
                    headers,
                    payload: message.payload.to_vec(),
                });
            }
            if letters.len() == before {
                break;
            }
        }
        Ok(letters)
    }

    /// Publishes the dead letters of `consumer` again on the subjects they
    /// were first published on, then removes them from its dead-letter
    /// subject; returns how many went round again. Every consumer of those
    /// subjects gets them again; consumers are idempotent per event id, so
    /// those that handled an event the first time change nothing. A letter
    /// that arrives while this runs stays for the next replay.
    pub async fn replay_dead_letters(&self, consumer: &str) -> Result<usize, BusError> {
        if consumer.is_empty()
            || !consumer
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(BusError::Invalid(format!(
                "consumer {consumer:?} must be [A-Za-z0-9_-]"
            )));
        }
        let letters = self.dead_letters(Some(consumer)).await?;
        let Some(last) = letters.iter().map(|l| l.sequence).max() else {
            return Ok(0);
        };
        for letter in &letters {
            if letter.subject.is_empty() {
                return Err(BusError::Invalid(format!(
                    "dead letter {} does not say where it was published",
                    letter.sequence
                )));
            }
            let mut headers = HeaderMap::new();
            for (name, values) in letter.headers.iter() {
                let name = name.to_string();
                if [
                    DLQ_ERROR_HEADER,
                    DLQ_SUBJECT_HEADER,
                    DLQ_ATTEMPTS_HEADER,
                    MSG_ID_HEADER,
                ]
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&name))
                {
                    continue;
                }
                if let Some(value) = values.first() {
                    headers.insert(name.as_str(), value.as_str());
                }
            }
            // A message id of its own: the stream would drop the event's
            // first id as a duplicate within its window.
            let id = match &letter.envelope {
                Some(envelope) => format!("{}:replay:{}", envelope.id, letter.sequence),
                None => format!("replay:{}", letter.sequence),
            };
            self.publish_raw(letter.subject.clone(), &id, headers, letter.payload.clone())
                .await?;
        }
        let stream = self
            .js
            .get_stream(&self.settings.stream)
            .await
            .map_err(unavailable)?;
        stream
            .purge()
            .filter(dlq_subject(&self.settings.prefix, consumer))
            .sequence(last + 1)
            .await
            .map_err(|e| unavailable(format!("replayed, but not removed: {e}")))?;
        Ok(letters.len())
    }
}
