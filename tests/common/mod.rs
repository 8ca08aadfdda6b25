//! Harness for end-to-end tests: a whole mesh on free loopback ports per
//! test, typed gRPC clients, and an HTTP client for the gateway.

#![allow(dead_code)]

use std::collections::HashMap;

pub mod backends;
pub mod careful;
pub mod invariants;

use platform::config::PeerAddr;
use platform::{Config, ServiceId};
use shopmesh::{Mesh, MeshAddrs};

pub struct TestMesh {
    pub mesh: Mesh,
    pub http: reqwest::Client,
    pub config: Config,
}

impl TestMesh {
    /// Embedded defaults (memory store, in-process bus) plus `vars`.
    pub async fn start_with(vars: &[(&str, &str)]) -> TestMesh {
        platform::telemetry::init_for_tests();
        let vars: HashMap<&str, &str> = vars.iter().copied().collect();
        let config = Config::from_source("e2e", &vars).expect("test config is valid");
        let mesh = Mesh::start(config.clone(), &MeshAddrs::ephemeral())
            .await
            .expect("mesh starts");
        TestMesh {
            mesh,
            http: reqwest::Client::new(),
            config,
        }
    }

    pub async fn start() -> TestMesh {
        Self::start_with(&[]).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.mesh.gateway_url())
    }

    /// A client channel to one service, built like the services build theirs.
    pub fn channel(&self, id: ServiceId) -> platform::grpc::GrpcChannel {
        platform::grpc::channel(
            &PeerAddr::from_socket(self.mesh.grpc_addr(id)),
            &self.config.grpc,
        )
        .expect("valid address")
    }

    /// A request from component `name` of this mesh (`order-svc`…) on its
    /// own behalf, with that component's service token.
    pub fn as_service<T>(&self, message: T, name: &str) -> tonic::Request<T> {
        self.mesh
            .component(name)
            .expect("a component of the mesh")
            .request(message)
    }

    /// A request carrying a user's access token, as the gateway forwards it.
    pub fn as_user<T>(&self, message: T, token: &str) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ASCII token"),
        );
        request
    }

    pub async fn shutdown(self) {
        self.mesh.shutdown().await;
    }
}

/// A JSON response: status, headers and body.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestMesh {
    /// Sends `body` as JSON with an optional bearer token.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Reply {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("gateway answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: serde_json::Value) -> Reply {
        self.send(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    /// The body of `GET path` as text (`/metrics`, `/docs`).
    pub async fn text(&self, path: &str) -> String {
        let response = self.http.get(self.url(path)).send().await;
        response
            .expect("gateway answers")
            .text()
            .await
            .expect("body")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    /// POSTs `body` as JSON with a bearer token and an `Idempotency-Key`.
    pub async fn post_keyed(
        &self,
        path: &str,
        token: &str,
        key: &str,
        body: serde_json::Value,
    ) -> Reply {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .expect("gateway answers");
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.json().await.unwrap_or(serde_json::Value::Null),
        }
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: serde_json::Value) -> Reply {
        self.send(reqwest::Method::PUT, path, token, Some(body))
            .await
    }

    /// Registers a fresh customer and logs in: (user id, access, refresh).
    pub async fn customer(&self) -> (String, String, String) {
        let email = format!("user-{}@example.com", uuid::Uuid::now_v7().simple());
        let r = self.post("/api/v1/auth/register", None, serde_json::json!({"email": email, "password": "correct horse", "name": "Test User"})).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let id = r.body["id"].as_str().unwrap().to_string();
        let (access, refresh) = self.login(&email, "correct horse").await;
        (id, access, refresh)
    }

    pub async fn login(&self, email: &str, password: &str) -> (String, String) {
        let r = self
            .post(
                "/api/v1/auth/login",
                None,
                serde_json::json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        (
            r.body["access_token"].as_str().unwrap().to_string(),
            r.body["refresh_token"].as_str().unwrap().to_string(),
        )
    }
}

/// Asserts a problem document with `status`.
pub fn assert_problem(reply: &Reply, status: u16) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json"),
        "{}",
        reply.body
    );
    assert_eq!(reply.body["status"], status);
    assert!(
        reply.body["title"].is_string()
            && reply.body["type"].is_string()
            && reply.body["detail"].is_string()
    );
}

/// One part of a multipart form: name, file name (a file part), bytes.
pub type FormPart<'a> = (&'a str, Option<&'a str>, &'a [u8]);

/// A `multipart/form-data` body and its content type.
pub fn multipart(parts: &[FormPart<'_>]) -> (String, Vec<u8>) {
    let boundary = format!("----shopmesh{}", uuid::Uuid::now_v7().simple());
    let mut body = Vec::new();
    for (name, filename, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: image/jpeg\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The carrier webhook secret the shipping tests configure.
pub const WEBHOOK_SECRET: &str = "webhook-test-secret";

/// GETs `path` until `cond` holds on a 200 body (see
/// [`platform::testing::eventually`]); the last body.
pub async fn eventually(
    t: &TestMesh,
    path: &str,
    token: &str,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    platform::testing::eventually(what, async || {
        let r = t.get(path, Some(token)).await;
        let done = r.status == 200 && cond(&r.body);
        last = r.body;
        done
    })
    .await;
    last
}

/// POSTs a carrier webhook with an optional `X-Signature`.
pub async fn webhook(t: &TestMesh, body: &serde_json::Value, signature: Option<String>) -> Reply {
    let raw = serde_json::to_vec(body).unwrap();
    let mut request = t
        .http
        .post(t.url("/api/v1/shipping/webhook"))
        .header("content-type", "application/json")
        .body(raw.clone());
    if let Some(sig) = signature {
        request = request.header("x-signature", sig);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Reply {
        status,
        headers,
        body: response.json().await.unwrap_or(serde_json::Value::Null),
    }
}

/// The signature of `body` under [`WEBHOOK_SECRET`].
pub fn signed(body: &serde_json::Value) -> Option<String> {
    Some(gateway::routes::shipping::sign(
        WEBHOOK_SECRET.as_bytes(),
        &serde_json::to_vec(body).unwrap(),
    ))
}

/// A shipping address the API accepts.
pub fn address() -> serde_json::Value {
    serde_json::json!({"name": "Ada", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"})
}

/// A payment body with card `number` (the provider's test cards).
pub fn card(number: &str) -> serde_json::Value {
    serde_json::json!({"card": {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"}})
}

impl TestMesh {
    /// Orders `quantity` of `product_id`; asserts 201 and returns the order id.
    pub async fn order(
        &self,
        token: &str,
        product_id: &serde_json::Value,
        quantity: u32,
    ) -> String {
        let body = serde_json::json!({"items": [{"product_id": product_id, "quantity": quantity}], "shipping_address": address()});
        let r = self.post("/api/v1/orders", Some(token), body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    }

    /// Pays order `oid` with card `number`; returns the payment.
    pub async fn pay(&self, token: &str, oid: &str, number: &str) -> serde_json::Value {
        self.post(
            &format!("/api/v1/orders/{oid}/payment"),
            Some(token),
            card(number),
        )
        .await
        .body
    }
}

impl TestMesh {
    /// [`careful::send`] to the gateway (30 s budget).
    pub async fn careful(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        key: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Reply {
        careful::send(
            &self.http,
            method,
            &self.url(path),
            Some(token),
            key,
            body.as_ref(),
            std::time::Duration::from_secs(30),
            |_| {},
        )
        .await
    }
}

/// Runs `command` with its output in a file in `dir` (a pipe would fill
/// up), killing it after `bound`: its status (None if killed) and output.
pub async fn run_bounded(
    mut command: std::process::Command,
    dir: &std::path::Path,
    bound: std::time::Duration,
) -> (Option<std::process::ExitStatus>, String) {
    let log = dir.join("output.txt");
    let file = std::fs::File::create(&log).unwrap();
    command
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    let mut child = command.spawn().expect("the program starts");
    let status = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + bound;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    })
    .await
    .unwrap();
    (status, std::fs::read_to_string(&log).unwrap_or_default())
}
