//! Accounts and tokens through the gateway, against a whole mesh.

mod common;

use common::{TestMesh, assert_problem};
use serde_json::json;

fn unique_email() -> String {
    format!("ada-{}@example.com", uuid::Uuid::now_v7().simple())
}

#[tokio::test]
async fn register_login_and_read_the_profile() {
    let t = TestMesh::start().await;
    let email = unique_email();
    let r = t
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": email.to_uppercase(), "password": "correct horse", "name": "Ada"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["email"], email, "emails are stored lower-case");
    assert_eq!(r.body["role"], "customer");
    assert!(uuid::Uuid::parse_str(r.body["id"].as_str().unwrap()).is_ok());

    let login = t
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": "correct horse"}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(login.body["token_type"], "Bearer");
    assert_eq!(login.body["expires_in"], 900);
    let access = login.body["access_token"].as_str().unwrap();

    let me = t.get("/api/v1/users/me", Some(access)).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["email"], email);
    assert_eq!(me.body["name"], "Ada");
    assert_eq!(me.body["id"], r.body["id"]);
    t.shutdown().await;
}

#[tokio::test]
async fn registration_rejects_bad_input_with_the_right_status() {
    let t = TestMesh::start().await;
    let r = t
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "not-an-email", "password": "short", "name": "A"}),
        )
        .await;
    assert_problem(&r, 422);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "password"]);

    let missing = t
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": unique_email(), "name": "A"}),
        )
        .await;
    assert_problem(&missing, 422);
    assert!(
        missing.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("password"),
        "{}",
        missing.body
    );

    let wrong_type = t
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": 5, "password": "correct horse", "name": "A"}),
        )
        .await;
    assert_problem(&wrong_type, 422);
    assert_eq!(wrong_type.body["errors"][0]["field"], "email");

    let email = unique_email();
    let ok = t
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": email, "password": "correct horse", "name": "A"}),
        )
        .await;
    assert_eq!(ok.status, 201);
    let dup = t
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": email.to_uppercase(), "password": "correct horse", "name": "B"}),
        )
        .await;
    assert_problem(&dup, 409);

    let malformed = t
        .http
        .post(t.url("/api/v1/auth/register"))
        .header("content-type", "application/json")
        .body("{\"email\":")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(
        malformed.headers()["content-type"],
        "application/problem+json"
    );

    let text = t
        .http
        .post(t.url("/api/v1/auth/register"))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 415);

    let huge = json!({"email": unique_email(), "password": "correct horse", "name": "x".repeat(2 * 1024 * 1024)});
    let too_big = t.post("/api/v1/auth/register", None, huge).await;
    assert_problem(&too_big, 413);
    t.shutdown().await;
}

#[tokio::test]
async fn login_takes_a_form_and_refuses_bad_credentials() {
    let t = TestMesh::start().await;
    let email = unique_email();
    t.post(
        "/api/v1/auth/register",
        None,
        json!({"email": email, "password": "correct horse", "name": "A"}),
    )
    .await;
    let form = t
        .http
        .post(t.url("/api/v1/auth/login"))
        .form(&[("username", email.as_str()), ("password", "correct horse")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    let body: serde_json::Value = form.json().await.unwrap();
    assert!(body["access_token"].as_str().unwrap().split('.').count() == 3);

    let wrong = t
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": "wrong horse"}),
        )
        .await;
    assert_problem(&wrong, 401);
    let unknown = t
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": unique_email(), "password": "correct horse"}),
        )
        .await;
    assert_problem(&unknown, 401);
    assert_eq!(
        wrong.body["detail"], unknown.body["detail"],
        "no hint whether the account exists"
    );
    t.shutdown().await;
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let t = TestMesh::start().await;
    let (_, _, first) = t.customer().await;
    let r = t
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": first}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let second = r.body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert_eq!(
        t.get("/api/v1/users/me", r.body["access_token"].as_str())
            .await
            .status,
        200
    );

    // The rotated token is presented again: refused, and the family dies.
    assert_problem(
        &t.post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": first}),
        )
        .await,
        401,
    );
    assert_problem(
        &t.post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": second}),
        )
        .await,
        401,
    );
    assert_problem(
        &t.post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": "made-up"}),
        )
        .await,
        401,
    );
    assert_problem(&t.post("/api/v1/auth/refresh", None, json!({})).await, 422);
    t.shutdown().await;
}

#[tokio::test]
async fn logout_ends_the_session() {
    let t = TestMesh::start().await;
    let (_, access, refresh) = t.customer().await;
    assert_problem(
        &t.post(
            "/api/v1/auth/logout",
            None,
            json!({"refresh_token": refresh}),
        )
        .await,
        401,
    );
    let out = t
        .post(
            "/api/v1/auth/logout",
            Some(&access),
            json!({"refresh_token": refresh}),
        )
        .await;
    assert_eq!(out.status, 204);
    assert_problem(
        &t.post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh}),
        )
        .await,
        401,
    );
    t.shutdown().await;
}

#[tokio::test]
async fn protected_routes_need_a_valid_token() {
    let t = TestMesh::start().await;
    let none = t.get("/api/v1/users/me", None).await;
    assert_problem(&none, 401);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    assert_problem(&t.get("/api/v1/users/me", Some("garbage")).await, 401);
    let forged = platform::auth::SigningKey::generate().sign(&platform::auth::Claims::new(
        "someone",
        "admin",
        "shopmesh",
        "shopmesh-api",
        std::time::Duration::from_secs(60),
    ));
    assert_problem(&t.get("/api/v1/users/me", Some(&forged)).await, 401);
    let basic = t
        .http
        .get(t.url("/api/v1/users/me"))
        .header("authorization", "Basic YTpi")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    t.shutdown().await;
}

#[tokio::test]
async fn failed_logins_are_limited_per_account() {
    let t = TestMesh::start().await;
    let email = unique_email();
    t.post(
        "/api/v1/auth/register",
        None,
        json!({"email": email, "password": "correct horse", "name": "A"}),
    )
    .await;
    for _ in 0..5 {
        assert_problem(
            &t.post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": "wrong horse"}),
            )
            .await,
            401,
        );
    }
    let limited = t
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": "correct horse"}),
        )
        .await;
    assert_problem(&limited, 429);
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Another account from the same address is not locked out yet.
    let (_, _, _) = t.customer().await;
    t.shutdown().await;
}

#[tokio::test]
async fn the_general_limit_answers_429_with_retry_after() {
    let t = TestMesh::start_with(&[("RATE_LIMIT_RPS", "1"), ("RATE_LIMIT_BURST", "3")]).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(t.get("/api/v1/users/me", None).await);
    }
    let limited: Vec<_> = statuses.iter().filter(|r| r.status == 429).collect();
    assert!(
        !limited.is_empty(),
        "{:?}",
        statuses.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(limited[0].header("retry-after").is_some());
    assert_eq!(
        t.get("/health", None).await.status,
        200,
        "probes are not limited"
    );
    t.shutdown().await;
}

#[tokio::test]
async fn profile_and_preferences_update() {
    let t = TestMesh::start().await;
    let (_, access, _) = t.customer().await;
    let address = json!({"name": "Ada", "line1": "1 Main St", "city": "Paris", "postal_code": "75001", "country": "fr"});
    let r = t
        .put(
            "/api/v1/users/me",
            Some(&access),
            json!({"name": "Ada L.", "phone": "+33 1 23 45 67 89", "address": address}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"], "Ada L.");
    assert_eq!(r.body["phone"], "+33123456789");
    assert_eq!(r.body["address"]["country"], "FR");

    let bad = t
        .put(
            "/api/v1/users/me",
            Some(&access),
            json!({"phone": "call me"}),
        )
        .await;
    assert_problem(&bad, 422);
    assert_eq!(bad.body["errors"][0]["field"], "phone");

    let cleared = t
        .put(
            "/api/v1/users/me",
            Some(&access),
            json!({"address": null, "phone": ""}),
        )
        .await;
    assert_eq!(cleared.status, 200);
    assert!(
        cleared.body.get("address").is_none() && cleared.body.get("phone").is_none(),
        "{}",
        cleared.body
    );
    assert_eq!(cleared.body["name"], "Ada L.", "untouched fields stay");

    let prefs = t
        .put(
            "/api/v1/users/me/preferences",
            Some(&access),
            json!({"categories": ["Books", "books", "Games"]}),
        )
        .await;
    assert_eq!(prefs.status, 200, "{}", prefs.body);
    assert_eq!(prefs.body["categories"], json!(["books", "games"]));
    assert_problem(
        &t.put(
            "/api/v1/users/me/preferences",
            Some(&access),
            json!({"categories": [""]}),
        )
        .await,
        422,
    );
    t.shutdown().await;
}

#[tokio::test]
async fn configured_admin_exists_at_start() {
    let t = TestMesh::start_with(&[
        ("ADMIN_EMAIL", "Root@Example.com"),
        ("ADMIN_PASSWORD", "admin-password"),
    ])
    .await;
    let (access, _) = t.login("root@example.com", "admin-password").await;
    let me = t.get("/api/v1/users/me", Some(&access)).await;
    assert_eq!(me.body["role"], "admin");
    t.shutdown().await;
}

#[tokio::test]
async fn jwks_publishes_the_key_that_signs_tokens() {
    let t = TestMesh::start().await;
    let (_, access, _) = t.customer().await;
    let kid = platform::auth::TokenVerifier::kid_of(&access).unwrap();
    let jwks = t.get("/.well-known/jwks.json", None).await;
    assert_eq!(jwks.status, 200);
    let key = &jwks.body["keys"][0];
    assert_eq!(key["kid"], kid.as_str());
    assert_eq!(
        (
            key["kty"].as_str(),
            key["crv"].as_str(),
            key["alg"].as_str()
        ),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    t.shutdown().await;
}

#[tokio::test]
async fn openapi_docs_and_metrics_are_served() {
    let t = TestMesh::start().await;
    let spec = t.get("/openapi.json", None).await;
    assert_eq!(spec.status, 200);
    for path in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/users/me",
        "/api/v1/users/me/preferences",
        "/.well-known/jwks.json",
        "/health",
        "/ready",
    ] {
        assert!(spec.body["paths"].get(path).is_some(), "{path} documented");
    }
    assert!(spec.body["components"]["securitySchemes"]["bearer"].is_object());
    let docs = t.http.get(t.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(
        docs.text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("swagger")
    );

    t.get("/api/v1/users/me", None).await;
    let metrics = t.text("/metrics").await;
    assert!(
        metrics
            .contains(r#"http_requests_total{method="GET",route="/api/v1/users/me",status="401"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("http_request_duration_seconds_bucket"));
    let wrong_method = t
        .send(reqwest::Method::DELETE, "/api/v1/users/me", None, None)
        .await;
    assert_problem(&wrong_method, 405);
    t.shutdown().await;
}

/// Registers `email` with the password "correct horse".
async fn register(t: &TestMesh, email: &str) {
    let r = t
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": email, "password": "correct horse", "name": "A"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

async fn log_in(t: &TestMesh, email: &str, password: &str) -> common::Reply {
    t.post(
        "/api/v1/auth/login",
        None,
        json!({"email": email, "password": password}),
    )
    .await
}

/// The status of a wrong login for a new account, through a proxy that
/// sent `forwarded` as `X-Forwarded-For`.
async fn wrong_login_via(t: &TestMesh, forwarded: &str) -> u16 {
    t.http
        .post(t.url("/api/v1/auth/login"))
        .header("x-forwarded-for", forwarded)
        .json(&json!({"email": unique_email(), "password": "wrong horse"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// 30 wrong passwords for one account at once: no more than the limit may
/// reach the password check (the slot is taken before it), the rest are 429.
async fn concurrent_guesses_stay_within_the_limit(vars: &[(&str, &str)]) {
    let t = TestMesh::start_with(vars).await;
    let email = unique_email();
    register(&t, &email).await;
    let guesses = (0..30).map(|_| log_in(&t, &email, "wrong horse"));
    let replies = futures::future::join_all(guesses).await;
    let checked = replies.iter().filter(|r| r.status == 401).count();
    let limited = replies.iter().filter(|r| r.status == 429).count();
    assert_eq!(checked + limited, 30, "only 401 and 429");
    assert!(
        (1..=gateway::routes::auth::FAILED_LOGINS_PER_ACCOUNT as usize).contains(&checked),
        "{checked} passwords checked"
    );
    let right = log_in(&t, &email, "correct horse").await;
    assert_problem(&right, 429);
    t.shutdown().await;
}

#[tokio::test]
async fn concurrent_guesses_cannot_exceed_the_failed_login_limit() {
    concurrent_guesses_stay_within_the_limit(&[]).await;
}

#[tokio::test]
async fn concurrent_guesses_cannot_exceed_the_failed_login_limit_in_redis() {
    let redis = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    concurrent_guesses_stay_within_the_limit(&[("REDIS_URL", &redis)]).await;
}

#[tokio::test]
async fn successful_logins_give_their_slot_back() {
    let t = TestMesh::start().await;
    let email = unique_email();
    register(&t, &email).await;
    for _ in 0..(2 * gateway::routes::auth::FAILED_LOGINS_PER_ACCOUNT) {
        let r = log_in(&t, &email, "correct horse").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    t.shutdown().await;
}

/// Behind one trusted proxy the client address is the entry the proxy
/// appended; a client-written first entry changes nothing.
#[tokio::test]
async fn a_forged_forwarded_for_does_not_escape_the_address_limit() {
    let t = TestMesh::start_with(&[("TRUSTED_PROXY_HOPS", "1")]).await;
    let limit = gateway::routes::auth::FAILED_LOGINS_PER_ADDRESS as usize;
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    for i in 0..limit + 5 {
        // What the client wrote, then what the proxy saw.
        let forwarded = format!("10.9.{}.{}, 203.0.113.9", i / 250, i % 250);
        statuses.push(wrong_login_via(&t, &forwarded).await);
    }
    // The quota gives one attempt back every minute / limit: a slow run
    // may earn one or two more, never one per forged entry.
    let earned = (started.elapsed().as_secs_f64() / (60.0 / limit as f64)) as usize;
    let answered = statuses.iter().filter(|&&s| s == 401).count();
    assert!(statuses[..limit].iter().all(|&s| s == 401), "{statuses:?}");
    assert!(answered <= limit + earned, "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(
        statuses.iter().all(|&s| s == 401 || s == 429),
        "{statuses:?}"
    );
    // Another client behind the same proxy is not locked out.
    assert_eq!(wrong_login_via(&t, "203.0.113.10").await, 401);
    t.shutdown().await;
}

#[tokio::test]
async fn responses_carry_the_security_headers() {
    let t = TestMesh::start().await;
    let health = t.get("/health", None).await;
    assert_eq!(health.header("x-content-type-options"), Some("nosniff"));
    let problem = t.get("/api/v1/users/me", None).await;
    assert_problem(&problem, 401);
    assert_eq!(problem.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(problem.header("x-frame-options"), Some("DENY"));
    let docs = t.http.get(t.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status().as_u16(), 200);
    let csp = docs
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp:?}");
    let email = unique_email();
    register(&t, &email).await;
    let login = log_in(&t, &email, "correct horse").await;
    assert_eq!(login.header("cache-control"), Some("no-store"));
    let refresh = t
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": login.body["refresh_token"]}),
        )
        .await;
    assert_eq!(refresh.status, 200, "{}", refresh.body);
    assert_eq!(refresh.header("cache-control"), Some("no-store"));
    t.shutdown().await;
}

/// NUL and other control characters are refused at the edge with 422 on
/// every backend (Postgres cannot store NUL; it was a 500 there).
#[tokio::test]
async fn control_characters_in_text_are_422_on_postgres() {
    let schema = platform::testing::SchemaPrefix::new();
    let vars = schema.vars();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let t = TestMesh::start_with(&vars).await;
    let email = unique_email();
    for body in [
        json!({"email": email, "password": "correct horse", "name": "A\u{0}B"}),
        json!({"email": format!("{email}\u{0}"), "password": "correct horse", "name": "A"}),
        json!({"email": email, "password": "correct horse", "name": "bell\u{7}"}),
    ] {
        let r = t.post("/api/v1/auth/register", None, body).await;
        assert_problem(&r, 422);
    }
    let r = t.get("/api/v1/products?q=a%00b", None).await;
    assert_problem(&r, 422);
    assert_eq!(r.body["errors"][0]["field"], "q");
    let form = t
        .http
        .post(t.url("/api/v1/auth/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=a%00%40example.com&password=x")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status().as_u16(), 422);
    // Nothing was stored: the same email registers cleanly afterwards.
    register(&t, &email).await;
    t.shutdown().await;
    schema
        .drop(&[
            "user",
            "product",
            "order",
            "payment",
            "shipping",
            "notification",
            "recommendation",
        ])
        .await;
}
