//! What a Jaeger and Prometheus user sees of the all-in-one binary: every
//! exported span caught by an in-process OTLP receiver (the collector's
//! TraceService), and the gateway's `/metrics` scraped.
//!
//! One test in this binary: telemetry is process-wide, so it is installed
//! once, exporting to the receiver, with `RUST_LOG=warn` (the level
//! operators run with), before the mesh starts.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use platform::ServiceId;
use platform::config::{LogFormat, TelemetryConfig};
use serde_json::json;

use common::{TestMesh, address, card};

/// One exported span with the `service.name` of its resource.
#[derive(Clone, Debug)]
struct Span {
    service: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    name: String,
    kind: i32,
    attributes: HashMap<String, Any>,
    status: i32,
}

impl Span {
    fn str(&self, key: &str) -> Option<&str> {
        match self.attributes.get(key) {
            Some(Any::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    fn is(&self, kind: SpanKind) -> bool {
        self.kind == kind as i32
    }
}

#[derive(Default, Clone)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.clone())
                .map(|v| match v {
                    Any::StringValue(s) => s,
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Span {
                        service: service.clone(),
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent: span.parent_span_id,
                        name: span.name,
                        kind: span.kind,
                        attributes: span
                            .attributes
                            .into_iter()
                            .filter_map(|kv| Some((kv.key, kv.value?.value?)))
                            .collect(),
                        status: span.status.map_or(0, |s| s.code),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Flushes the exporter until `done` holds on the spans received (10 s).
async fn received(
    guard: &platform::telemetry::TelemetryGuard,
    receiver: &Receiver,
    what: &str,
    done: impl Fn(&[Span]) -> bool,
) -> Vec<Span> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        guard.flush();
        let spans = receiver.spans.lock().unwrap().clone();
        if done(&spans) {
            return spans;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_and_its_payment_are_one_trace_across_the_mesh_and_every_service_has_red_metrics()
{
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tokio_stream_of(listener)),
    );
    let guard = platform::telemetry::init(&TelemetryConfig {
        service_name: "shopmesh".into(),
        otlp_endpoint: Some(format!("http://{otlp}")),
        log_format: LogFormat::Pretty,
        log_filter: "warn".into(),
        trace_filter: "info".into(),
        per_service_names: true,
    })
    .unwrap();

    let mut t = TestMesh::start().await;
    let (_, token, _) = t.customer().await;
    let products = t.get("/api/v1/products?q=mug", None).await;
    let mug = products.body["items"][0]["id"].clone();

    // The client starts the trace: both requests continue it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let send = |path: String, body: serde_json::Value| {
        t.http
            .post(t.url(&path))
            .bearer_auth(&token)
            .header("traceparent", &traceparent)
            .json(&body)
            .send()
    };
    let order = send(
        "/api/v1/orders".into(),
        json!({"items": [{"product_id": mug, "quantity": 1}], "shipping_address": address()}),
    )
    .await
    .unwrap();
    assert_eq!(order.status(), 201);
    assert!(
        order.headers()["traceparent"]
            .to_str()
            .unwrap()
            .contains(trace_id),
        "the response names the trace, with RUST_LOG=warn"
    );
    let order: serde_json::Value = order.json().await.unwrap();
    let oid = order["id"].as_str().unwrap();
    let paid = send(
        format!("/api/v1/orders/{oid}/payment"),
        card("4242424242424242"),
    )
    .await
    .unwrap();
    assert_eq!(paid.status(), 201);

    // The whole flow, asynchronous consumers included, is one trace.
    let in_trace = |spans: &[Span]| -> Vec<Span> {
        spans
            .iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .cloned()
            .collect()
    };
    let spans = received(&guard, &receiver, "the flow's spans", |spans| {
        let spans = in_trace(spans);
        let services: HashSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
        [
            "gateway",
            "order-svc",
            "product-svc",
            "payment-svc",
            "shipping-svc",
        ]
        .iter()
        .all(|s| services.contains(s))
            && spans.iter().any(|s| {
                s.is(SpanKind::Consumer)
                    && s.str("messaging.destination.name") == Some("shop.payment.processed")
            })
            && spans.iter().any(|s| s.name.ends_with("/CommitStock"))
            // Steps after the payment (committing stock, consumers) run
            // after its answer: wait for every span they hang from too.
            && spans
                .iter()
                .filter(|s| s.is(SpanKind::Consumer) || s.str("rpc.system") == Some("grpc"))
                .all(|s| spans.iter().any(|p| p.span_id == s.parent))
    })
    .await;
    let spans = in_trace(&spans);
    let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (s.span_id.as_slice(), s)).collect();

    // The gateway's request spans: integer status, route as the name.
    let requests: Vec<&Span> = spans
        .iter()
        .filter(|s| s.service == "gateway" && s.is(SpanKind::Server))
        .collect();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    for request in &requests {
        assert!(
            matches!(
                request.attributes.get("http.response.status_code"),
                Some(Any::IntValue(201))
            ),
            "{request:#?}"
        );
        assert!(
            request
                .str("http.route")
                .is_some_and(|r| r.starts_with("/api/v1/orders"))
        );
    }

    // Every gRPC server span is the child of a CLIENT span of its caller.
    let servers: Vec<&Span> = spans
        .iter()
        .filter(|s| s.is(SpanKind::Server) && s.str("rpc.system") == Some("grpc"))
        .collect();
    assert!(
        servers.len() >= 4,
        "order, reserve, payment, commit: {servers:#?}"
    );
    for server in &servers {
        let client = by_id
            .get(server.parent.as_slice())
            .unwrap_or_else(|| panic!("the parent of {} was exported", server.name));
        assert!(client.is(SpanKind::Client), "{client:#?}");
        assert_eq!(client.name, server.name, "same method on both sides");
        assert_ne!(client.service, server.service, "a hop between services");
        assert!(matches!(
            server.attributes.get("rpc.grpc.status_code"),
            Some(Any::IntValue(0))
        ));
    }
    let hops: HashSet<(&str, &str)> = servers
        .iter()
        .map(|s| {
            (
                by_id[s.parent.as_slice()].service.as_str(),
                s.service.as_str(),
            )
        })
        .collect();
    for hop in [
        ("gateway", "order-svc"),
        ("order-svc", "product-svc"),
        ("order-svc", "payment-svc"),
    ] {
        assert!(hops.contains(&hop), "{hop:?} in {hops:?}");
    }

    // A PRODUCER span per published event, each consumer its child.
    let producers: Vec<&Span> = spans.iter().filter(|s| s.is(SpanKind::Producer)).collect();
    for event in ["shop.order.created", "shop.payment.processed"] {
        assert!(
            producers
                .iter()
                .any(|p| p.str("messaging.destination.name") == Some(event)),
            "{event} published in the trace"
        );
    }
    let consumers: Vec<&Span> = spans.iter().filter(|s| s.is(SpanKind::Consumer)).collect();
    assert!(!consumers.is_empty());
    for consumer in &consumers {
        let producer = by_id[consumer.parent.as_slice()];
        assert!(producer.is(SpanKind::Producer), "{consumer:#?}");
        assert_eq!(
            producer.str("messaging.destination.name"),
            consumer.str("messaging.destination.name")
        );
        assert_eq!(consumer.str("messaging.system"), Some("memory"));
        assert!(consumer.name.starts_with("process "), "{}", consumer.name);
    }

    // Store spans, under the service that made them.
    let store: Vec<&Span> = spans
        .iter()
        .filter(|s| s.str("db.system.name") == Some("memory"))
        .collect();
    for service in ["order-svc", "product-svc", "payment-svc"] {
        assert!(
            store.iter().any(|s| s.service == service
                && s.is(SpanKind::Client)
                && s.str("db.operation.name").is_some()
                && s.str("db.collection.name").is_some()),
            "store spans of {service}"
        );
    }
    assert!(
        spans.iter().all(|s| s.status != StatusCode::Error as i32),
        "a flow that worked has no ERROR span"
    );

    // Every service answers something through the gateway, so each has
    // served calls (the RED series checked below).
    for path in [
        format!("/api/v1/orders/{oid}/shipment"),
        "/api/v1/notifications".to_string(),
        "/api/v1/users/me".to_string(),
        "/api/v1/recommendations".to_string(),
    ] {
        let r = t.get(&path, Some(&token)).await;
        assert!(r.status < 500, "{path}: {}", r.status);
    }

    // A dependency that is down: the caller's CLIENT span is an ERROR.
    t.mesh.stop(ServiceId::Recommendation).await;
    let down = t
        .http
        .get(t.url("/api/v1/recommendations"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(down.status().is_server_error(), "{}", down.status());
    let failed_trace = down.headers()["traceparent"].to_str().unwrap()[3..35].to_string();
    let spans = received(&guard, &receiver, "the failed call's spans", |spans| {
        spans.iter().any(|s| {
            hex(&s.trace_id) == failed_trace
                && s.is(SpanKind::Client)
                && s.status == StatusCode::Error as i32
        })
    })
    .await;
    let failed = spans
        .iter()
        .find(|s| hex(&s.trace_id) == failed_trace && s.is(SpanKind::Client))
        .unwrap();
    assert_eq!(failed.service, "gateway");
    assert!(failed.str("error.type").is_some(), "{failed:#?}");
    assert!(
        spans.iter().any(|s| hex(&s.trace_id) == failed_trace
            && s.is(SpanKind::Server)
            && s.status == StatusCode::Error as i32),
        "the gateway's request span too"
    );

    // Every service's RED series on the gateway's /metrics (the cart is
    // read once, and an image asked for, so cart-svc and media-svc have
    // served a call too).
    let cart = t.get("/api/v1/cart", Some(&token)).await;
    assert_eq!(cart.status, 200, "{}", cart.body);
    let image = t.get(&format!("/media/{}", "0".repeat(64)), None).await;
    assert_eq!(image.status, 404, "{}", image.body);
    let page = t.text("/metrics").await;
    let series = |prefix: &str| -> Vec<String> {
        page.lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect()
    };
    let served = series("rpc_server_duration_seconds_count{");
    for id in ServiceId::ALL {
        assert!(
            served
                .iter()
                .any(|l| l.contains(&format!("service=\"{}\"", id.binary()))),
            "RED series of {id}: {served:#?}"
        );
    }
    assert!(
        series("rpc_client_duration_seconds_count{")
            .iter()
            .any(|l| l.contains("service=\"gateway\"") && l.contains("code=\"UNAVAILABLE\"")),
        "the gateway's failed calls are counted by code"
    );
    for family in [
        "shop_orders_total{state=\"created\"}",
        "shop_orders_total{state=\"paid\"}",
        "shop_payments_total{outcome=\"succeeded\"}",
        "shop_reservations_total{outcome=\"held\"}",
        "messaging_published_total{",
        "messaging_consumed_total{",
        "db_client_operation_duration_seconds_count{",
        "http_requests_total{",
    ] {
        assert!(!series(family).is_empty(), "{family} in /metrics");
    }
    for family in ["outbox_pending_events", "messaging_consumer_pending"] {
        assert!(page.contains(&format!("# TYPE {family} gauge")), "{family}");
    }
    t.shutdown().await;
}

fn tokio_stream_of(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    platform::grpc::nodelay_incoming(listener)
}
