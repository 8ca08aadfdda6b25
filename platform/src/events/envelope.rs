//! Envelopes and subjects: building an event, the headers it travels
//! with, and the subject it is stored on.

use prost::Message as _;
use proto::events::Envelope;

use super::BusError;
use super::consumer::validate_subject_pattern;

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
