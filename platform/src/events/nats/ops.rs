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
    BusError, DLQ_ATTEMPTS_HEADER, DLQ_ERROR_HEADER, DLQ_SEQUENCE_HEADER, DLQ_SUBJECT_HEADER,
    MSG_ID_HEADER, dlq_subject, validate_consumer_name,
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
    /// Where the letter is in the stream.
    pub sequence: u64,
    /// The consumer that gave up on it.
    pub consumer: String,
    /// The subject the event was first published on.
    pub subject: String,
    /// Why the consumer gave up, and after how many deliveries.
    pub error: String,
    pub attempts: u32,
    /// Where the original event is in the stream (what a replay sends).
    pub original: Option<u64>,
    /// The event as the letter carries it (None if it does not decode).
    pub envelope: Option<Envelope>,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// Letters whose original event was published again (and removed).
    pub replayed: usize,
    /// Letters left where they are, with why.
    pub skipped: Vec<(u64, String)>,
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
            // Readers of tools (ephemeral) are nobody's backlog.
            if info.config.durable_name.is_none() {
                continue;
            }
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
        if let Some(consumer) = consumer {
            validate_consumer_name(consumer)?;
        }
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
        let letters = self.read_letters(&mut reader).await;
        let name = reader.cached_info().name.clone();
        if let Err(err) = stream.delete_consumer(&name).await {
            tracing::debug!(error = %err, "reader left to expire");
        }
        letters
    }

    async fn read_letters(
        &self,
        reader: &mut async_nats::jetstream::consumer::Consumer<pull::Config>,
    ) -> Result<Vec<DeadLetter>, BusError> {
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
                let header = |name: &str| {
                    message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(name))
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
                    original: header(DLQ_SEQUENCE_HEADER).parse().ok(),
                    envelope: Envelope::decode(message.payload.as_ref()).ok(),
                });
            }
            if letters.len() == before {
                break;
            }
        }
        Ok(letters)
    }

    /// Publishes the events behind the dead letters of `consumer` again,
    /// on the subjects they were first published on, and removes each
    /// letter once its event is out. What goes out is the original as the
    /// stream stored it (the letter only points at it: a letter's own copy
    /// could have been written by any service allowed to dead-letter).
    /// Every consumer of those subjects gets the events again; consumers
    /// are idempotent per event id, so those that handled an event the
    /// first time change nothing. A letter whose original is gone (past the
    /// stream's age limit), is not an event of this mesh or does not decode
    /// stays, and is reported as skipped.
    pub async fn replay_dead_letters(&self, consumer: &str) -> Result<Replay, BusError> {
        let letters = self.dead_letters(Some(consumer)).await?;
        let stream = self
            .js
            .get_stream(&self.settings.stream)
            .await
            .map_err(unavailable)?;
        let events = format!("{}.", self.settings.prefix);
        let dead = dlq_subject(&self.settings.prefix, "");
        let mut replay = Replay::default();
        for letter in &letters {
            let Some(original) = letter.original else {
                replay
                    .skipped
                    .push((letter.sequence, "it does not say where its event is".into()));
                continue;
            };
            let stored = match stream.get_raw_message(original).await {
                Ok(stored) => stored,
                Err(err) => {
                    replay.skipped.push((
                        letter.sequence,
                        format!("its event #{original} is gone: {err}"),
                    ));
                    continue;
                }
            };
            let subject = stored.subject.to_string();
            if !subject.starts_with(&events) || subject.starts_with(&dead) {
                replay.skipped.push((
                    letter.sequence,
                    format!("#{original} on {subject} is not an event"),
                ));
                continue;
            }
            let Ok(envelope) = Envelope::decode(stored.payload.as_ref()) else {
                replay
                    .skipped
                    .push((letter.sequence, format!("#{original} does not decode")));
                continue;
            };
            let mut headers = HeaderMap::new();
            for (name, values) in stored.headers.iter() {
                if name.to_string().eq_ignore_ascii_case(MSG_ID_HEADER) {
                    continue;
                }
                for value in values {
                    headers.append(name.clone(), value.clone());
                }
            }
            // A message id of its own: the stream would drop the event's
            // first id as a duplicate within its window.
            let id = format!("{}:replay:{}", envelope.id, letter.sequence);
            self.publish_raw(subject, &id, headers, stored.payload.to_vec())
                .await?;
            stream
                .delete_message(letter.sequence)
                .await
                .map_err(|e| unavailable(format!("replayed, but the letter stays: {e}")))?;
            replay.replayed += 1;
        }
        Ok(replay)
    }
}
