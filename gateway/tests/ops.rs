//! Operational endpoints through the pure router, no socket.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use platform::Config;
use tower::ServiceExt;

/// Config whose peers all point at a port nobody listens on.
fn config_with_dead_peers() -> Config {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("127.0.0.1:{port}");
    let vars: HashMap<String, String> = platform::ServiceId::ALL
        .iter()
        .map(|id| (id.addr_var().to_string(), dead.clone()))
        .chain([("GRPC_CONNECT_TIMEOUT_MS".to_string(), "200".to_string())])
        .collect();
    Config::from_source("gateway-test", &vars).unwrap()
}

async fn call(
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    platform::telemetry::init_for_tests();
    let app = gateway::router(gateway::AppState::connect(&config_with_dead_peers()).unwrap());
    let mut request = Request::builder().uri(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = app
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (parts.status, parts.headers, json)
}

#[tokio::test]
async fn health_is_ok_without_any_upstream() {
    let (status, _, body) = call("/health", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn ready_is_503_problem_with_retry_after_without_a_key_set() {
    let (status, headers, body) = call("/ready", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(body["status"], 503);
    assert_eq!(body["checks"]["key_set"], "missing");
}

#[tokio::test]
async fn dependencies_report_every_upstream_without_failing() {
    let (status, _, body) = call("/health/dependencies", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["product"], "unreachable");
    assert_eq!(
        body["checks"].as_object().unwrap().len(),
        platform::ServiceId::ALL.len()
    );
    assert_eq!(
        body["breakers"].as_object().unwrap().len(),
        platform::ServiceId::ALL.len()
    );
}

#[tokio::test]
async fn unknown_routes_are_404_problem_documents() {
    let (status, headers, body) = call("/api/v1/nothing-here", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(body["status"], 404);
    assert_eq!(body["title"], "Not found");
    assert!(body["type"].as_str().unwrap().starts_with("https://"));
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("/api/v1/nothing-here")
    );
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let (_, headers, _) = call("/health", &[("x-request-id", "abc-123")]).await;
    assert_eq!(headers["x-request-id"], "abc-123");
    let (_, headers, _) = call("/health", &[]).await;
    let generated = headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
}

#[tokio::test]
async fn traceparent_continues_the_callers_trace() {
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let incoming = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let (_, headers, _) = call("/health", &[("traceparent", &incoming)]).await;
    let traceparent = headers["traceparent"].to_str().unwrap();
    assert!(
        traceparent.starts_with(&format!("00-{trace_id}-")),
        "{traceparent}"
    );
    assert_ne!(traceparent, incoming, "the gateway's own span id");

    let (_, headers, _) = call("/health", &[]).await;
    let fresh = headers["traceparent"].to_str().unwrap();
    assert_eq!(fresh.split('-').count(), 4, "{fresh}");
    assert!(!fresh.contains(trace_id));
}

#[test]
fn every_api_operation_documents_the_errors_the_gateway_can_answer() {
    let (_, document) = gateway::api();
    let json = serde_json::to_value(&document).unwrap();
    let mut checked = 0;
    for (path, item) in json["paths"].as_object().unwrap() {
        if !path.starts_with("/api/") {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            if !["get", "post", "put", "delete"].contains(&method.as_str()) {
                continue;
            }
            let responses = operation["responses"].as_object().unwrap();
            let mut expected = vec!["429", "503", "504"];
            if operation.get("requestBody").is_some() {
                expected.extend(["400", "413", "415"]);
            }
            for code in expected {
                assert!(
                    responses.contains_key(code),
                    "{method} {path} does not document {code}"
                );
            }
            for code in ["429", "503"] {
                if responses[code].get("$ref").is_none() {
                    assert!(
                        responses[code]["headers"]["Retry-After"].is_object(),
                        "{method} {path} {code} does not declare Retry-After"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} operations");
}

#[test]
fn every_operation_has_its_own_operation_id() {
    let (_, document) = gateway::api();
    let json = serde_json::to_value(&document).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for (path, item) in json["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(id) = operation.get("operationId").and_then(|v| v.as_str()) else {
                continue;
            };
            if let Some(first) = seen.insert(id.to_string(), format!("{method} {path}")) {
                panic!("operationId {id:?} is used by {first} and {method} {path}");
            }
        }
    }
    assert!(seen.len() >= 25, "only {} operations", seen.len());
}
