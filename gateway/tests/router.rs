//! Handlers through the pure router with `oneshot`, no socket: what the
//! gateway answers on its own, before or instead of any upstream call.
//! Every peer points at a closed port, so a call that does reach a service
//! shows how an unreachable dependency is answered.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::IntoResponse as _;
use http_body_util::BodyExt;
use platform::Config;
use platform::auth::{Claims, JwkSet, ROLE_CUSTOMER, SigningKey};
use proto::ext::Required as _;
use tower::ServiceExt;

/// A valid order id (the path is checked before any call).
const ORDER_ID: &str = "0b6f5b1e-8a7e-4a43-9a55-3f1d6f0c2b9a";

/// The router of a gateway whose peers are all unreachable and which trusts
/// user tokens signed by one known key only.
struct Gateway {
    app: axum::Router,
    key: SigningKey,
    config: Config,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: serde_json::Value,
}

impl Gateway {
    fn new() -> Self {
        platform::telemetry::init_for_tests();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let closed = format!("127.0.0.1:{port}");
        let vars: HashMap<String, String> = platform::ServiceId::ALL
            .iter()
            .map(|id| (id.addr_var().to_string(), closed.clone()))
            .chain([("GRPC_CONNECT_TIMEOUT_MS".to_string(), "200".to_string())])
            .collect();
        let mut config = Config::from_source("gateway-test", &vars).unwrap();
        let key = SigningKey::generate();
        config.mesh.user_jwks = Some(JwkSet {
            keys: vec![key.jwk()],
        });
        let app = gateway::router(gateway::AppState::connect(&config).unwrap());
        Self { app, key, config }
    }

    fn token_signed_by(&self, key: &SigningKey) -> String {
        key.sign(&Claims::new(
            "7d1c2a34-5b6e-4f70-8a91-b2c3d4e5f607",
            ROLE_CUSTOMER,
            &self.config.jwt.issuer,
            &self.config.jwt.audience,
            std::time::Duration::from_secs(300),
        ))
    }

    /// An access token the gateway accepts.
    fn token(&self) -> String {
        self.token_signed_by(&self.key)
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        }
    }

    async fn get(&self, uri: &str, token: Option<&str>) -> Answer {
        let mut request = Request::builder().uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    /// An authenticated POST with `body` and extra `headers`.
    async fn post(&self, uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Answer {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header("authorization", format!("Bearer {}", self.token()));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(body.into()).unwrap()).await
    }
}

fn assert_problem(answer: &Answer, status: StatusCode) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(
        answer.headers["content-type"], "application/problem+json",
        "{}",
        answer.body
    );
    assert_eq!(answer.body["status"], status.as_u16(), "{}", answer.body);
    assert!(answer.body["title"].is_string(), "{}", answer.body);
    assert!(answer.body["detail"].is_string(), "{}", answer.body);
}

fn card_payment() -> String {
    serde_json::json!({
        "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2099, "cvc": "123"}
    })
    .to_string()
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    let gateway = Gateway::new();
    let answer = gateway.get("/api/v1/no-such-thing", None).await;
    assert_problem(&answer, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_protected_route_without_a_token_is_a_401_problem_with_a_challenge() {
    let gateway = Gateway::new();
    let answer = gateway.get("/api/v1/orders", None).await;
    assert_problem(&answer, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.headers["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn a_token_signed_by_another_key_is_a_401_problem() {
    let gateway = Gateway::new();
    // Same key id as the trusted key, another private key.
    let impostor = SigningKey::generate().with_kid(gateway.key.kid());
    let forged = gateway.token_signed_by(&impostor);
    assert_problem(
        &gateway.get("/api/v1/orders", Some(&forged)).await,
        StatusCode::UNAUTHORIZED,
    );
    // A key id the gateway does not know at all.
    let stranger = gateway.token_signed_by(&SigningKey::generate());
    assert_problem(
        &gateway.get("/api/v1/orders", Some(&stranger)).await,
        StatusCode::UNAUTHORIZED,
    );
    assert_problem(
        &gateway.get("/api/v1/orders", Some("not-a-jwt")).await,
        StatusCode::UNAUTHORIZED,
    );
}

#[tokio::test]
async fn an_empty_idempotency_key_is_a_422_problem() {
    let gateway = Gateway::new();
    let answer = gateway
        .post(
            &format!("/api/v1/orders/{ORDER_ID}/payment"),
            &[JSON, ("idempotency-key", "")],
            card_payment(),
        )
        .await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415_problem() {
    let gateway = Gateway::new();
    let answer = gateway
        .post(
            &format!("/api/v1/orders/{ORDER_ID}/payment"),
            &[("content-type", "text/plain")],
            card_payment(),
        )
        .await;
    assert_problem(&answer, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let gateway = Gateway::new();
    let answer = gateway
        .post(
            &format!("/api/v1/orders/{ORDER_ID}/payment"),
            &[JSON],
            r#"{"card": {"number": "4242"#,
        )
        .await;
    assert_problem(&answer, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem() {
    let gateway = Gateway::new();
    let padding = "x".repeat(gateway::BODY_LIMIT + 1);
    let body = format!(r#"{{"card": {{"number": "{padding}"}}}}"#);
    let answer = gateway
        .post(&format!("/api/v1/orders/{ORDER_ID}/payment"), &[JSON], body)
        .await;
    assert_problem(&answer, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn every_answer_has_nosniff_and_a_request_id() {
    let gateway = Gateway::new();
    for answer in [
        gateway.get("/health", None).await,
        gateway.get("/api/v1/no-such-thing", None).await,
        gateway.get("/api/v1/orders", None).await,
    ] {
        assert_eq!(answer.headers["x-content-type-options"], "nosniff");
        let id = answer.headers["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    }
    let echoed = gateway
        .send(
            Request::builder()
                .uri("/api/v1/no-such-thing")
                .header("x-request-id", "req-42")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(echoed.headers["x-request-id"], "req-42");
}

#[tokio::test]
async fn an_unreachable_service_is_a_503_problem_with_retry_after() {
    let gateway = Gateway::new();
    let public = gateway.get("/api/v1/products", None).await;
    assert_problem(&public, StatusCode::SERVICE_UNAVAILABLE);
    assert!(public.headers.contains_key("retry-after"));

    let token = gateway.token();
    let protected = gateway.get("/api/v1/orders", Some(&token)).await;
    assert_problem(&protected, StatusCode::SERVICE_UNAVAILABLE);
    assert!(protected.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn a_reply_without_its_object_is_a_500_problem_with_a_generic_message() {
    platform::telemetry::init_for_tests();
    let status = None::<proto::order::Order>.required("order").unwrap_err();
    let response = gateway::problem::Problem::from(status).into_response();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["status"], 500);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        !detail.contains("order"),
        "the cause stays in the log: {detail}"
    );
}
