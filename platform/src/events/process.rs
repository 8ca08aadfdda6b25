//! The spans and metrics of publishing, and running a handler for one
//! delivery.

use std::time::Duration;

use proto::events::Envelope;
use tracing::Instrument;

use super::{BusError, ConsumerConfig, Delivery, Handler, HandlerError, subject};

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
