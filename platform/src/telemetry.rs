//! Logs and traces.
//!
//! [`init`] installs one `tracing` subscriber per process: JSON log lines
//! (or a compact human format) that carry the OpenTelemetry `trace_id` and
//! `span_id` of the span they happen in, and an OpenTelemetry layer whose
//! spans are exported over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set (Jaeger ingests OTLP directly). Trace ids exist even without an
//! exporter, so logs can always be correlated and the gateway can always
//! answer with a `traceparent`.
//!
//! W3C trace context crosses process boundaries through [`extract`] and
//! [`inject`] over HTTP headers and gRPC metadata.

use std::fmt;
use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter, SpanProcessor};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};

/// Flushes and shuts down the exporter when dropped. Keep it alive for the
/// life of the process.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports every finished span now (tests, and before a planned exit).
    pub fn flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(err) = provider.force_flush()
        {
            tracing::debug!(error = %err, "trace flush failed");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("telemetry: exporter shutdown failed: {err}");
        }
    }
}

impl fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("exporting", &self.provider.is_some())
            .finish()
    }
}

fn propagator() -> &'static TraceContextPropagator {
    static PROPAGATOR: OnceLock<TraceContextPropagator> = OnceLock::new();
    PROPAGATOR.get_or_init(TraceContextPropagator::new)
}

/// Installs the process-wide subscriber. A second call (tests starting
/// several meshes in one process) keeps the first subscriber and returns a
/// guard that does nothing.
pub fn init(config: &TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // The sampler is the SDK's default, which follows OTEL_TRACES_SAMPLER
    // and OTEL_TRACES_SAMPLER_ARG (default parentbased_always_on: a caller's
    // W3C sampled flag decides, new traces are sampled).
    let mut builder = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name(config.service_name.clone())
            .build(),
    );
    let exporting = config.otlp_endpoint.is_some();
    if let Some(endpoint) = &config.otlp_endpoint {
        let exporter = otlp_exporter(endpoint)?;
        if config.per_service_names {
            let mut services = vec![GATEWAY_SERVICE.to_string()];
            services.extend(
                crate::ServiceId::ALL
                    .iter()
                    .map(|id| id.binary().to_string()),
            );
            let mut exporters = std::collections::HashMap::new();
            for service in services {
                exporters.insert(service, otlp_exporter(endpoint)?);
            }
            builder = builder
                .with_span_processor(ServiceTagger)
                .with_batch_exporter(ServiceRouter {
                    default: exporter,
                    exporters,
                });
        } else {
            builder = builder.with_batch_exporter(exporter);
        }
    }
    let provider = builder.build();
    let tracer = provider.tracer(config.service_name.clone());

    let installed = subscriber(config, tracer)?.try_init().is_ok();
    if installed {
        opentelemetry::global::set_tracer_provider(provider.clone());
        if exporting {
            tracing::info!(endpoint = ?config.otlp_endpoint, "exporting traces over OTLP");
        }
        Ok(TelemetryGuard {
            provider: Some(provider),
        })
    } else {
        let _ = provider.shutdown();
        Ok(TelemetryGuard { provider: None })
    }
}

fn otlp_exporter(endpoint: &str) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    use opentelemetry_otlp::WithExportConfig;
    opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.to_string())
        .build()
        .with_context(|| format!("building the OTLP exporter for {endpoint}"))
}

/// `service.name` of the gateway's spans.
pub const GATEWAY_SERVICE: &str = "gateway";

/// The service a span belongs to, carried in the OpenTelemetry context so
/// every span below a service's entry point (server, consumer, producer
/// span) inherits it.
#[derive(Clone, Debug)]
struct ServiceName(Arc<str>);

/// `cx` marked as belonging to `service`: spans parented on it (and their
/// descendants) belong to that service.
pub fn with_service(cx: opentelemetry::Context, service: &str) -> opentelemetry::Context {
    cx.with_value(ServiceName(service.into()))
}

/// The service of the current span, as [`with_service`] set it upstream.
pub fn current_service() -> Option<Arc<str>> {
    current_context().get::<ServiceName>().map(|s| s.0.clone())
}

/// Span attribute naming the span's service until export.
const SERVICE_ATTRIBUTE: &str = "service.name";

/// Stamps each span, as it starts, with the service its parent context
/// belongs to.
#[derive(Debug)]
struct ServiceTagger;

impl SpanProcessor for ServiceTagger {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        use opentelemetry::trace::Span as _;
        if let Some(ServiceName(name)) = cx.get::<ServiceName>() {
            span.set_attribute(KeyValue::new(SERVICE_ATTRIBUTE, name.to_string()));
        }
    }

    fn on_end(&self, _span: SpanData) {}

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: std::time::Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Exports each span with the resource (`service.name`) of its service:
/// one OTLP exporter per service, so the all-in-one process shows in
/// Jaeger as the mesh it is. Spans of no service go out under the
/// process's own name.
#[derive(Debug)]
struct ServiceRouter {
    default: opentelemetry_otlp::SpanExporter,
    exporters: std::collections::HashMap<String, opentelemetry_otlp::SpanExporter>,
}

impl SpanExporter for ServiceRouter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut groups: std::collections::HashMap<Option<String>, Vec<SpanData>> =
            std::collections::HashMap::new();
        for mut span in batch {
            let service = span
                .attributes
                .iter()
                .position(|kv| kv.key.as_str() == SERVICE_ATTRIBUTE)
                .map(|at| span.attributes.swap_remove(at).value.to_string())
                .filter(|name| self.exporters.contains_key(name));
            groups.entry(service).or_default().push(span);
        }
        let mut outcome = Ok(());
        for (service, spans) in groups {
            let exporter = service
                .and_then(|name| self.exporters.get(&name))
                .unwrap_or(&self.default);
            if let Err(err) = exporter.export(spans).await {
                outcome = Err(err);
            }
        }
        outcome
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        let mut outcome = self.default.shutdown_with_timeout(timeout);
        for exporter in self.exporters.values() {
            if let Err(err) = exporter.shutdown_with_timeout(timeout) {
                outcome = Err(err);
            }
        }
        outcome
    }

    fn force_flush(&self) -> OTelSdkResult {
        let mut outcome = self.default.force_flush();
        for exporter in self.exporters.values() {
            if let Err(err) = exporter.force_flush() {
                outcome = Err(err);
            }
        }
        outcome
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.default.set_resource(resource);
        for (service, exporter) in &mut self.exporters {
            let attributes = resource
                .iter()
                .filter(|(key, _)| key.as_str() != SERVICE_ATTRIBUTE)
                .map(|(key, value)| KeyValue::new(key.clone(), value.clone()));
            let resource = opentelemetry_sdk::Resource::builder_empty()
                .with_attributes(attributes)
                .with_service_name(service.clone())
                .build();
            exporter.set_resource(&resource);
        }
    }
}

/// Logs filtered by `RUST_LOG` and spans traced as `OTEL_TRACES_FILTER`
/// says, each layer with its own filter: a quiet log level never turns
/// tracing (and the `traceparent` of responses) off.
fn subscriber(
    config: &TelemetryConfig,
    tracer: opentelemetry_sdk::trace::Tracer,
) -> anyhow::Result<impl tracing::Subscriber + Send + Sync> {
    let log_filter = EnvFilter::try_new(&config.log_filter)
        .with_context(|| format!("invalid RUST_LOG={:?}", config.log_filter))?;
    let trace_filter = EnvFilter::try_new(&config.trace_filter)
        .with_context(|| format!("invalid OTEL_TRACES_FILTER={:?}", config.trace_filter))?;
    let fmt_layer = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(JsonWithTrace)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().compact().boxed(),
    };
    Ok(tracing_subscriber::registry()
        .with(fmt_layer.with_filter(log_filter))
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(trace_filter),
        ))
}

/// For tests: traces without export; logs only when `TEST_LOG` is set.
pub fn init_for_tests() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let config = TelemetryConfig {
            service_name: "test".into(),
            otlp_endpoint: None,
            log_format: LogFormat::Pretty,
            log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            trace_filter: "info".into(),
            per_service_names: false,
        };
        if std::env::var_os("TEST_LOG").is_some() {
            std::mem::forget(init(&config));
        } else {
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            let provider = SdkTracerProvider::builder().build();
            let tracer = provider.tracer("test");
            let _ = tracing_subscriber::registry()
                .with(tracing_opentelemetry::layer().with_tracer(tracer))
                .try_init();
            opentelemetry::global::set_tracer_provider(provider);
        }
    });
}

/// Marks `span` as failed: ERROR status with `message`, and `error.type`.
/// The span must declare `otel.status_code`, `otel.status_description` and
/// `error.type` (as `tracing::field::Empty`).
pub fn record_error(span: &tracing::Span, error_type: &str, message: &dyn fmt::Display) {
    span.record("otel.status_code", "ERROR");
    span.record("otel.status_description", message.to_string());
    span.record("error.type", error_type);
}

/// A CLIENT span for one Redis call (`db.operation.name`: `GET`, `SET`,
/// `EVALSHA`…); mark it with [`record_error`] when Redis fails.
pub fn redis_span(operation: &'static str) -> tracing::Span {
    tracing::info_span!(
        "redis",
        otel.name = operation,
        otel.kind = "client",
        db.system.name = "redis",
        db.operation.name = operation,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// Reads W3C trace context from HTTP headers (and so from gRPC metadata,
/// which travels as HTTP/2 headers).
pub fn extract(headers: &http::HeaderMap) -> opentelemetry::Context {
    propagator().extract(&HeaderExtractor(headers))
}

/// Writes the trace context of `cx` as `traceparent` / `tracestate`.
pub fn inject(cx: &opentelemetry::Context, headers: &mut http::HeaderMap) {
    propagator().inject_context(cx, &mut HeaderInjector(headers));
}

/// Writes the trace context of `cx` into gRPC request metadata.
pub fn inject_metadata(cx: &opentelemetry::Context, metadata: &mut tonic::metadata::MetadataMap) {
    propagator().inject_context(cx, &mut MetadataInjector(metadata));
}

/// The OpenTelemetry context of the current `tracing` span.
pub fn current_context() -> opentelemetry::Context {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    tracing::Span::current().context()
}

/// The `traceparent` value of the current span, if it is sampled into a trace.
pub fn current_traceparent() -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    // What the W3C propagator writes, without a header map in between.
    let cx = current_context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            (sc.trace_flags() & opentelemetry::trace::TraceFlags::SAMPLED).to_u8()
        )
    })
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// One JSON object per line: timestamp, level, target, message, the event's
/// fields, the current span and its fields, and the trace and span ids.
struct JsonWithTrace;

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = serde_json::Map::new();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        line.insert("timestamp".into(), timestamp.into());
        let meta = event.metadata();
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());

        let mut visitor = JsonVisitor::default();
        event.record(&mut visitor);
        if let Some(message) = visitor.fields.remove("message") {
            line.insert("message".into(), message);
        }
        if !visitor.fields.is_empty() {
            line.insert("fields".into(), visitor.fields.into());
        }

        if let Some(span) = ctx.lookup_current() {
            let trace = tracing::dispatcher::get_default(|dispatch| {
                tracing_opentelemetry::get_otel_context(&span.id(), dispatch)
            });
            if let Some(cx) = trace {
                let span_context = cx.span().span_context().clone();
                if span_context.is_valid() {
                    line.insert(
                        "trace_id".into(),
                        span_context.trace_id().to_string().into(),
                    );
                    line.insert("span_id".into(), span_context.span_id().to_string().into());
                }
            }
            line.insert("span".into(), span.name().into());
            let extensions = span.extensions();
            if let Some(fields) = extensions.get::<FormattedFields<N>>()
                && let Ok(serde_json::Value::Object(map)) =
                    serde_json::from_str::<serde_json::Value>(fields)
                && !map.is_empty()
            {
                line.insert("span_fields".into(), map.into());
            }
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

#[derive(Default)]
struct JsonVisitor {
    fields: serde_json::Map<String, serde_json::Value>,
}

impl tracing::field::Visit for JsonVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.fields
            .insert(field.name().into(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.fields.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.fields.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.fields.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.fields.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.fields.insert(field.name().into(), value.into());
    }

    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        // The whole cause chain, so logs show why.
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        self.fields.insert(field.name().into(), text.into());
    }
}

#[cfg(test)]
mod tests {
    use crate::telemetry::{
        LogFormat, TelemetryConfig, current_context, current_traceparent, extract, init_for_tests,
        inject, inject_metadata, subscriber,
    };
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    #[test]
    fn a_quiet_log_level_does_not_turn_tracing_off() {
        let config = |log: &str, trace: &str| TelemetryConfig {
            service_name: "filters".into(),
            otlp_endpoint: None,
            log_format: LogFormat::Pretty,
            log_filter: log.into(),
            trace_filter: trace.into(),
            per_service_names: false,
        };
        let traced = |config: TelemetryConfig| {
            let provider = SdkTracerProvider::builder().build();
            let subscriber = subscriber(&config, provider.tracer("filters")).unwrap();
            tracing::subscriber::with_default(subscriber, || {
                let span = tracing::info_span!("request");
                let _entered = span.enter();
                current_traceparent().is_some()
            })
        };
        assert!(
            traced(config("warn", "info")),
            "RUST_LOG=warn keeps info spans traced"
        );
        assert!(
            !traced(config("info", "warn")),
            "the trace filter is the one that decides"
        );
        assert!(
            subscriber(
                &config("info", "not a filter[["),
                SdkTracerProvider::builder().build().tracer("x")
            )
            .is_err()
        );
    }

    #[test]
    fn trace_context_round_trips_through_headers_and_metadata() {
        init_for_tests();
        let span = tracing::info_span!("outer");
        let _entered = span.enter();
        let cx = current_context();
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid(), "the test subscriber creates real trace ids");

        let mut headers = http::HeaderMap::new();
        inject(&cx, &mut headers);
        let traceparent = headers
            .get("traceparent")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            traceparent.contains(&sc.trace_id().to_string()),
            "{traceparent}"
        );

        let back = extract(&headers);
        assert_eq!(back.span().span_context().trace_id(), sc.trace_id());

        let mut metadata = tonic::metadata::MetadataMap::new();
        inject_metadata(&cx, &mut metadata);
        let back = extract(&metadata.into_headers());
        assert_eq!(back.span().span_context().trace_id(), sc.trace_id());
        assert_eq!(current_traceparent().as_deref(), Some(traceparent.as_str()));
    }

    #[test]
    fn the_traceparent_of_a_span_is_what_the_propagator_writes() {
        init_for_tests();
        let span = tracing::info_span!("traceparent-test");
        let _entered = span.enter();
        let mut headers = http::HeaderMap::new();
        inject(&current_context(), &mut headers);
        let written = headers
            .get("traceparent")
            .expect("a sampled span")
            .to_str()
            .unwrap();
        assert_eq!(current_traceparent().as_deref(), Some(written));
        assert_eq!(written.len(), 55, "{written}");
    }

    #[test]
    fn garbage_traceparent_is_ignored() {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", http::HeaderValue::from_static("not-a-trace"));
        assert!(!extract(&headers).span().span_context().is_valid());
    }
}
