//! The pages, driven as a browser without JavaScript would (plain HTTP
//! with cookies, following no redirect by itself): the core journey,
//! CSRF refusals, the session cookies and their refresh, the admin wall,
//! and server-sent events resuming from `Last-Event-ID`. The same
//! journeys in a real browser, with the accessibility check, are in
//! `tests/browser.rs`.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{TestMesh, WEBHOOK_SECRET};
use serde_json::json;

const ADMIN_EMAIL: &str = "admin@example.com";
const ADMIN_PASSWORD: &str = "admin-password";

async fn shop() -> TestMesh {
    TestMesh::start_with(&[
        ("ADMIN_EMAIL", ADMIN_EMAIL),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("RATE_LIMIT_RPS", "0"),
        ("SEED_DEMO", "false"),
        ("SHIPPING_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ])
    .await
}

/// A cookie-keeping client that sees every redirect.
struct Visitor {
    http: reqwest::Client,
    base: String,
    jar: HashMap<String, String>,
    /// Every `Set-Cookie` received, as sent.
    set_cookies: Vec<String>,
}

struct Page {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Visitor {
    fn new(t: &TestMesh) -> Visitor {
        Visitor {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: t.mesh.gateway_url(),
            jar: HashMap::new(),
            set_cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn take(&mut self, response: reqwest::Response) -> Page {
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap().to_string();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if text.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_string(), value.to_string());
            }
            self.set_cookies.push(text);
        }
        Page {
            status: response.status().as_u16(),
            location: response
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string()),
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.take(response).await
    }

    async fn post_with(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        self.take(response).await
    }

    /// Posts a form of the page with its CSRF token, as a browser would.
    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let csrf = self.jar.get("sm_csrf").cloned().expect("a CSRF cookie");
        let mut fields = form.to_vec();
        fields.push(("csrf", &csrf));
        let origin = self.base.clone();
        self.post_with(path, &fields, &[("origin", &origin)]).await
    }

    /// GETs `path` until its page contains `text` (15 s deadline).
    async fn until_shows(&mut self, path: &str, text: &str) -> Page {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let page = self.get(path).await;
            if page.status == 200 && page.body.contains(text) {
                return page;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never showed {text:?}: {} {}",
                page.status,
                page.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn admin_token(t: &TestMesh) -> String {
    t.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.0
}

async fn product(t: &TestMesh, admin: &str, name: &str, cents: i64) -> String {
    let sku = format!("SKU-{}", uuid::Uuid::now_v7().simple());
    let r = t
        .post(
            "/api/v1/products",
            Some(admin),
            json!({"sku": sku, "name": name, "category": "Kitchen", "price": {"amount": cents, "currency": "USD"}, "stock": 50}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

const ADDRESS: &[(&str, &str)] = &[
    ("name", "Ada Lovelace"),
    ("line1", "1 Main St"),
    ("city", "Springfield"),
    ("postal_code", "12345"),
    ("country", "US"),
];

fn hidden(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field"))
        + marker.len();
    body[start..start + body[start..].find('"').unwrap()].to_string()
}

async fn checkout(v: &mut Visitor, card: &str) -> Page {
    let form = v.get("/checkout").await;
    assert_eq!(form.status, 200, "{}", form.body);
    let key = hidden(&form.body, "key");
    let mut fields = ADDRESS.to_vec();
    fields.extend([
        ("key", key.as_str()),
        ("card_number", card),
        ("exp_month", "12"),
        ("exp_year", "2031"),
        ("cvc", "123"),
    ]);
    v.post("/checkout", &fields).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_journey_works_without_javascript() {
    let t = shop().await;
    let admin = admin_token(&t).await;
    let mug = product(&t, &admin, "Enamel mug", 1250).await;
    let lamp = product(&t, &admin, "Desk lamp", 3999).await;
    let mut v = Visitor::new(&t);

    // A guest browses and searches.
    let home = v.get("/").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("Enamel mug") && home.body.contains("Desk lamp"));
    let found = v.get("/search?q=mug").await;
    assert!(
        found.body.contains("Enamel mug") && !found.body.contains("Desk lamp"),
        "{}",
        found.body
    );
    let page = v.get(&format!("/products/{mug}")).await;
    assert!(page.body.contains("12.50 USD") && page.body.contains("Add to cart"));

    // Two items into a guest cart.
    let added = v
        .post("/cart/items", &[("product_id", &mug), ("quantity", "2")])
        .await;
    assert_eq!(
        (added.status, added.location.as_deref()),
        (303, Some("/cart")),
        "{}",
        added.body
    );
    assert!(v.jar.contains_key("sm_cart"), "a guest cart cookie");
    v.post("/cart/items", &[("product_id", &lamp), ("quantity", "1")])
        .await;
    let cart = v.get("/cart").await;
    assert!(
        cart.body.contains("Enamel mug")
            && cart.body.contains("Desk lamp")
            && cart.body.contains("64.99 USD"),
        "{}",
        cart.body
    );

    // Checkout needs an account; signing up brings the cart along.
    let to_signin = v.get("/checkout").await;
    assert_eq!(to_signin.status, 303);
    assert_eq!(
        to_signin.location.as_deref(),
        Some("/signin?next=%2Fcheckout")
    );
    let email = format!("ada-{}@example.com", uuid::Uuid::now_v7().simple());
    let signed_up = v
        .post(
            "/signup",
            &[
                ("name", "Ada"),
                ("email", &email),
                ("password", "correct horse"),
                ("next", "/checkout"),
            ],
        )
        .await;
    assert_eq!(
        (signed_up.status, signed_up.location.as_deref()),
        (303, Some("/checkout")),
        "{}",
        signed_up.body
    );
    assert!(
        !v.jar.contains_key("sm_cart"),
        "the guest cart was merged and forgotten"
    );
    let access = v.jar.get("sm_session").cloned().expect("a session cookie");

    // The session cookies: HttpOnly, SameSite=Lax, not Secure on localhost.
    for name in ["sm_session", "sm_refresh", "sm_csrf"] {
        let cookie = v
            .set_cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .expect(name);
        assert!(
            cookie.contains("HttpOnly")
                && cookie.contains("SameSite=Lax")
                && !cookie.contains("Secure"),
            "{cookie}"
        );
    }

    let paid = checkout(&mut v, "4242424242424242").await;
    assert_eq!(paid.status, 303, "{}", paid.body);
    let order_path = paid.location.unwrap();
    assert!(order_path.starts_with("/orders/"), "{order_path}");
    let order = v.until_shows(&order_path, "data-status=\"PAID\"").await;
    assert!(order.body.contains("Enamel mug") && order.body.contains("64.99 USD"));
    // No token in a page.
    assert!(!order.body.contains(&access) && !order.body.contains(v.jar["sm_refresh"].as_str()));
    let cart = v.get("/cart").await;
    assert!(
        cart.body.contains("Your cart is empty"),
        "the ordered lines left the cart"
    );
    // The profile keeps an address, which checkout then fills in.
    let mut fields: Vec<(&str, &str)> = ADDRESS
        .iter()
        .filter(|(k, _)| *k != "line1")
        .copied()
        .collect();
    fields.extend([("phone", "+15551234567"), ("line1", "9 Elm Road")]);
    let saved = v.post("/account", &fields).await;
    assert_eq!(
        (saved.status, saved.location.as_deref()),
        (303, Some("/account?saved=1")),
        "{}",
        saved.body
    );
    let bad = v
        .post("/account", &[("name", "Ada"), ("phone", "not a phone")])
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains("role=\"alert\""), "{}", bad.body);
    v.post("/cart/items", &[("product_id", &lamp)]).await;
    let form = v.get("/checkout").await;
    assert!(form.body.contains("value=\"9 Elm Road\""), "{}", form.body);
    for path in [
        "/",
        "/orders",
        "/notifications",
        "/account",
        "/search?category=Kitchen",
    ] {
        let page = v.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
    }

    // A declined card: the message in place, then paid again.
    v.post("/cart/items", &[("product_id", &mug), ("quantity", "1")])
        .await;
    let declined = checkout(&mut v, "4000000000000002").await;
    assert_eq!(declined.status, 303, "{}", declined.body);
    let declined_path = declined.location.unwrap();
    let page = v
        .until_shows(&declined_path, "The payment was declined")
        .await;
    let key = hidden(&page.body, "key");
    let again = v
        .post(
            &format!("{declined_path}/pay"),
            &[
                ("key", &key),
                ("card_number", "4242424242424242"),
                ("exp_month", "12"),
                ("exp_year", "2031"),
                ("cvc", "123"),
            ],
        )
        .await;
    assert_eq!(again.status, 303, "{}", again.body);
    v.until_shows(&declined_path, "data-status=\"PAID\"").await;

    // Bad checkout input is shown in place (422), not an error page.
    v.post("/cart/items", &[("product_id", &lamp), ("quantity", "1")])
        .await;
    let form = v.get("/checkout").await;
    let key = hidden(&form.body, "key");
    let bad = v
        .post(
            "/checkout",
            &[
                ("key", &key),
                ("name", "Ada"),
                ("line1", "1 Main St"),
                ("city", "X"),
                ("postal_code", "1"),
                ("country", "ZZZ"),
                ("card_number", "4242424242424242"),
                ("exp_month", "12"),
                ("exp_year", "2031"),
                ("cvc", "123"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(
        bad.body.contains("role=\"alert\"") && bad.body.contains("Desk lamp"),
        "{}",
        bad.body
    );

    // A customer is kept out of every admin page and form.
    let order_id = &order_path["/orders/".len()..];
    for path in [
        "/admin".to_string(),
        "/admin/products".into(),
        format!("/admin/products/{mug}"),
        "/admin/orders".into(),
        format!("/admin/orders/{order_id}"),
        "/admin/payments".into(),
        "/admin/recommendations".into(),
        "/admin/dead-letters".into(),
        "/admin/promotions".into(),
        "/admin/flags".into(),
    ] {
        assert_eq!(v.get(&path).await.status, 403, "{path}");
    }
    let refused = v
        .post(&format!("/admin/products/{mug}/stock"), &[("stock", "0")])
        .await;
    assert_eq!(refused.status, 403);
    let refused = v
        .post(&format!("/admin/orders/{order_id}/cancel"), &[])
        .await;
    assert_eq!(refused.status, 403);
    let product = t.get(&format!("/api/v1/products/{mug}"), None).await;
    assert!(
        product.body["stock_available"].as_u64() > Some(0),
        "{}",
        product.body
    );
    v.until_shows(&order_path, "data-status=\"PAID\"").await;

    // An expired session is renewed from the refresh token, once, even
    // when several requests carry the old one at the same time.
    v.jar.remove("sm_session");
    let (a, b) = {
        let mut w = Visitor::new(&t);
        w.jar = v.jar.clone();
        let mut x = Visitor::new(&t);
        x.jar = v.jar.clone();
        tokio::join!(async move { w.get("/orders").await.status }, async move {
            x.get("/orders").await.status
        })
    };
    assert_eq!((a, b), (200, 200));
    let orders = v.get("/orders").await;
    assert_eq!(orders.status, 200);
    assert!(orders.body.contains(&order_path[8..16]), "{}", orders.body);

    // Signing out revokes the refresh token.
    let refresh = v.jar["sm_refresh"].clone();
    let out = v.post("/signout", &[]).await;
    assert_eq!(out.status, 303);
    assert!(!v.jar.contains_key("sm_session") && !v.jar.contains_key("sm_refresh"));
    let r = t
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh}),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_the_csrf_token_or_from_elsewhere_change_nothing() {
    let t = shop().await;
    let admin = admin_token(&t).await;
    let mug = product(&t, &admin, "Enamel mug", 1250).await;
    let mut v = Visitor::new(&t);
    v.get("/").await;
    let csrf = v.jar["sm_csrf"].clone();
    let origin = v.base.clone();

    let cases: Vec<(&str, Vec<(&str, &str)>, Vec<(&str, &str)>)> = vec![
        (
            "no token",
            vec![("product_id", &mug)],
            vec![("origin", &origin)],
        ),
        (
            "wrong token",
            vec![
                ("product_id", &mug),
                ("csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            ],
            vec![("origin", &origin)],
        ),
        (
            "another origin",
            vec![("product_id", &mug), ("csrf", &csrf)],
            vec![("origin", "http://evil.example")],
        ),
        (
            "a cross-site fetch",
            vec![("product_id", &mug), ("csrf", &csrf)],
            vec![("sec-fetch-site", "cross-site")],
        ),
        (
            "a wrong header",
            vec![("product_id", &mug)],
            vec![("x-csrf-token", "nope")],
        ),
    ];
    for (what, form, headers) in cases {
        let page = v.post_with("/cart/items", &form, &headers).await;
        assert_eq!(page.status, 403, "{what}: {}", page.body);
        assert!(!v.jar.contains_key("sm_cart"), "{what}: no cart was made");
    }
    // The token in htmx's header works as the form field does.
    let page = v
        .post_with(
            "/cart/items",
            &[("product_id", &mug)],
            &[("x-csrf-token", &csrf), ("origin", &origin)],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);

    // Sign-in is a form too: without the token nobody is signed in.
    let page = v
        .post_with(
            "/signin",
            &[("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
            &[],
        )
        .await;
    assert_eq!(page.status, 403);
    assert!(!v.jar.contains_key("sm_session"));

    // The JSON API ignores the cookies: Bearer only.
    let page = v
        .post(
            "/signin",
            &[
                ("email", ADMIN_EMAIL),
                ("password", ADMIN_PASSWORD),
                ("next", "/admin"),
            ],
        )
        .await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some("/admin"))
    );
    let r = v
        .http
        .get(format!("{}/api/v1/users/me", v.base))
        .header("cookie", v.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let dashboard = v.get("/admin").await;
    assert_eq!(dashboard.status, 200);
    assert!(
        dashboard
            .body
            .contains("<th scope=\"row\">product</th><td>serving</td>"),
        "{}",
        dashboard.body
    );
    t.shutdown().await;
}

/// Reads server-sent events from `response` until `count` arrived (10 s).
async fn events(response: &mut reqwest::Response, count: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut buffer = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} events: {out:?}", out.len()))
            .unwrap()
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let id = block
                .lines()
                .find_map(|l| l.strip_prefix("id:"))
                .map(|s| s.trim().to_string());
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data:"))
                .map(|s| s.trim().to_string());
            if let (Some(id), Some(data)) = (id, data) {
                out.push((id, data));
            }
        }
    }
    out
}

async fn notify(t: &TestMesh, admin: &str, user_id: &str, title: &str) {
    use proto::notification::notification_service_client::NotificationServiceClient;
    let mut client = NotificationServiceClient::new(t.channel(platform::ServiceId::Notification));
    let request = proto::notification::SendNotificationRequest {
        user_id: user_id.into(),
        title: title.into(),
        body: format!("{title} body"),
        kind: "message".into(),
        channels: vec![],
    };
    client
        .send_notification(t.as_user(request, admin))
        .await
        .expect("sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_streams_resume_after_the_last_event_id() {
    let t = shop().await;
    let admin = admin_token(&t).await;
    let (user_id, token, _) = t.customer().await;
    let open = |last: Option<String>| {
        let mut request = t
            .http
            .get(t.url("/api/v1/notifications/stream"))
            .bearer_auth(&token);
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        request.send()
    };
    for round in 0..3 {
        let mut first = open(None).await.unwrap();
        assert_eq!(first.status().as_u16(), 200);
        // Subscribed once the response started; the first arrives live.
        let deadline = Instant::now() + Duration::from_secs(10);
        notify(&t, &admin, &user_id, &format!("r{round}-one")).await;
        let seen = events(&mut first, 1).await;
        assert!(seen[0].1.contains(&format!("r{round}-one")), "{seen:?}");
        drop(first);
        // Missed while away.
        for n in ["two", "three"] {
            notify(&t, &admin, &user_id, &format!("r{round}-{n}")).await;
        }
        let mut again = open(Some(seen[0].0.clone())).await.unwrap();
        let missed = events(&mut again, 2).await;
        notify(&t, &admin, &user_id, &format!("r{round}-four")).await;
        let live = events(&mut again, 1).await;
        let title = |(_, data): &(String, String)| {
            serde_json::from_str::<serde_json::Value>(data).unwrap()["title"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let mut missed_titles: Vec<String> = missed.iter().map(title).collect();
        missed_titles.sort();
        assert_eq!(
            missed_titles,
            [format!("r{round}-three"), format!("r{round}-two")],
            "what was missed, once each"
        );
        assert_eq!(
            title(&live[0]),
            format!("r{round}-four"),
            "then the live one"
        );
        let ids: std::collections::HashSet<_> = missed
            .iter()
            .chain(live.iter())
            .map(|(id, _)| id.clone())
            .collect();
        assert_eq!(ids.len(), 3);
        assert!(Instant::now() < deadline + Duration::from_secs(20));
    }
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_page_follows_its_status_and_resumes_after_the_last_event_id() {
    let t = shop().await;
    let admin = admin_token(&t).await;
    let mug = product(&t, &admin, "Enamel mug", 1250).await;
    let mut v = Visitor::new(&t);
    v.get("/").await;
    v.post("/cart/items", &[("product_id", &mug)]).await;
    let email = format!("bo-{}@example.com", uuid::Uuid::now_v7().simple());
    v.post(
        "/signup",
        &[
            ("name", "Bo"),
            ("email", &email),
            ("password", "correct horse"),
            ("next", "/checkout"),
        ],
    )
    .await;
    let paid = checkout(&mut v, "4242424242424242").await;
    let order_path = paid.location.expect("the order page");
    let order_id = order_path.trim_start_matches("/orders/").to_string();
    let open = |last: Option<&str>| {
        let mut request = v
            .http
            .get(format!("{}{order_path}/events", v.base))
            .header("cookie", v.cookie_header());
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        request.send()
    };
    // The status now, then each change; PAID comes once the saga is done.
    let mut stream = open(None).await.unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let mut seen = events(&mut stream, 1).await;
    while !seen.last().unwrap().0.starts_with("PAID/LABEL_CREATED") {
        seen.extend(events(&mut stream, 1).await);
    }
    let last = seen.last().unwrap().0.clone();
    drop(stream);

    // Reconnecting with the last id: nothing until the next change.
    let mut again = open(Some(&last)).await.unwrap();
    let tracking = {
        let r = t
            .get(&format!("/api/v1/orders/{order_id}/shipment"), Some(&admin))
            .await;
        r.body["tracking_number"].as_str().unwrap().to_string()
    };
    let update = json!({"tracking_number": tracking, "status": "IN_TRANSIT", "location": "Depot"});
    assert_eq!(
        common::webhook(&t, &update, common::signed(&update))
            .await
            .status,
        200
    );
    let next = events(&mut again, 1).await;
    assert_ne!(next[0].0, last, "the status already seen is not sent again");
    let data: serde_json::Value = serde_json::from_str(&next[0].1).unwrap();
    assert_eq!(data["shipment_status"], "IN_TRANSIT", "{data}");

    // Someone else's order: refused, not streamed.
    let mut w = Visitor::new(&t);
    w.get("/").await;
    let other = format!("other-{}@example.com", uuid::Uuid::now_v7().simple());
    w.post(
        "/signup",
        &[
            ("name", "Cy"),
            ("email", &other),
            ("password", "correct horse"),
        ],
    )
    .await;
    assert_eq!(w.get(&format!("{order_path}/events")).await.status, 404);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sees_the_dead_letters_and_replays_them() {
    // On NATS: an event nobody may believe (unsigned) is dead-lettered by
    // every consumer of its type; the page lists it under each with why,
    // and replaying a consumer's letters publishes the stored original
    // again, which is refused again (replay cannot make a forgery pass).
    use platform::events::EventBus as _;
    let backends = common::backends::Backends::new();
    let t = backends
        .mesh_with(&[
            ("ADMIN_EMAIL", ADMIN_EMAIL),
            ("ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("RATE_LIMIT_RPS", "0"),
            ("SEED_DEMO", "false"),
        ])
        .await;
    let mut v = Visitor::new(&t);
    v.get("/signin").await;
    let signed_in = v
        .post(
            "/signin",
            &[("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
        )
        .await;
    assert_eq!(signed_in.status, 303);
    let empty = v.get("/admin/dead-letters").await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert!(
        empty.body.contains("None: every consumer"),
        "{}",
        empty.body
    );

    let order_id = uuid::Uuid::now_v7().to_string();
    let forged = platform::events::event(
        &order_id,
        "payment-svc",
        proto::events::envelope::Payload::PaymentProcessed(proto::events::PaymentProcessed {
            payment_id: "pay-forged".into(),
            order_id: order_id.clone(),
            ..Default::default()
        }),
    );
    let nats = backends.nats().await;
    nats.publish(&forged).await.unwrap();
    let page = v
        .until_shows("/admin/dead-letters", "<h2 id=\"dl-shipping-svc\"")
        .await;
    let page = if page.body.contains("<h2 id=\"dl-order-svc\"") {
        page
    } else {
        v.until_shows("/admin/dead-letters", "<h2 id=\"dl-order-svc\"")
            .await
    };
    assert!(page.body.contains(&forged.id), "{}", page.body);
    assert!(page.body.contains("carries no signature"), "{}", page.body);
    let first = nats.dead_letters(Some("order-svc")).await.unwrap();
    assert_eq!(first.len(), 1, "{first:?}");

    let replayed = v
        .post("/admin/dead-letters/replay", &[("consumer", "order-svc")])
        .await;
    assert_eq!(replayed.status, 303);
    let back = replayed.location.unwrap();
    let page = v.get(&back).await;
    assert!(
        page.body.contains("order-svc: 1 published again"),
        "{}",
        page.body
    );
    // Refused again, as a new letter of the same event.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let again = nats.dead_letters(Some("order-svc")).await.unwrap();
        if let [letter] = again.as_slice()
            && letter.sequence != first[0].sequence
        {
            assert_eq!(letter.envelope.as_ref().unwrap().id, forged.id);
            break;
        }
        assert!(Instant::now() < deadline, "not refused again: {again:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Without the form's token nothing is replayed.
    let refused = v
        .post_with(
            "/admin/dead-letters/replay",
            &[("consumer", "order-svc")],
            &[],
        )
        .await;
    assert_eq!(refused.status, 403);
    t.shutdown().await;
    backends.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sends_a_promotion_to_everyone_or_to_a_categorys_buyers() {
    let t = shop().await;
    let admin = admin_token(&t).await;
    let kitchen = product(&t, &admin, "Kettle", 2500).await;
    // Two buyers of the kitchen category, one customer who bought nothing,
    // and 120 more customers heard of only through their sign-up event
    // (three batches in all).
    let bus = t.mesh.bus();
    for _ in 0..120 {
        let user_id = uuid::Uuid::now_v7().to_string();
        let registered = platform::events::event(
            &user_id,
            "user-svc",
            proto::events::envelope::Payload::UserRegistered(proto::events::UserRegistered {
                user_id: user_id.clone(),
                role: "customer".into(),
            }),
        );
        bus.publish(&t.mesh.signed(&registered).unwrap())
            .await
            .unwrap();
    }
    let (_, first_buyer, _) = t.customer().await;
    let (_, second_buyer, _) = t.customer().await;
    let (_, browser, _) = t.customer().await;
    for buyer in [&first_buyer, &second_buyer] {
        t.order(buyer, &serde_json::json!(kitchen), 1).await;
    }
    // Once each has heard of its sign-up and orders, the audience holds
    // them (it is written before the notification), and the sign-ups
    // published before theirs.
    let heard = |kind: &'static str| {
        move |feed: &serde_json::Value| {
            feed["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|n| n["kind"] == kind))
        }
    };
    for buyer in [&first_buyer, &second_buyer] {
        common::eventually(
            &t,
            "/api/v1/notifications",
            buyer,
            "the order heard of",
            heard("order.created"),
        )
        .await;
    }
    common::eventually(
        &t,
        "/api/v1/notifications",
        &browser,
        "the sign-up heard of",
        |feed| {
            feed["items"]
                .as_array()
                .is_some_and(|items| !items.is_empty())
        },
    )
    .await;

    let mut v = Visitor::new(&t);
    v.get("/signin").await;
    v.post(
        "/signin",
        &[("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
    )
    .await;
    let page = v.get("/admin/promotions").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let key = hidden(&page.body, "key");
    let form = [
        ("title", "Spring sale"),
        ("body", "Everything 10% off this week."),
        ("category", ""),
        ("key", key.as_str()),
    ];
    // Sent twice (a double click, a retry): one promotion.
    for _ in 0..2 {
        let sent = v.post("/admin/promotions", &form).await;
        assert_eq!(sent.status, 303, "{}", sent.body);
    }
    let done = v
        .until_shows("/admin/promotions", "data-sent=\"123\"")
        .await;
    assert_eq!(done.body.matches("data-promotion=").count(), 1);
    assert!(done.body.contains(">done<"), "{}", done.body);

    let deals = |feed: &serde_json::Value, title: &str| {
        feed["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["kind"] == "promotion" && n["title"] == title)
            .count()
    };
    for customer in [&first_buyer, &second_buyer, &browser] {
        let feed = t.get("/api/v1/notifications", Some(customer)).await.body;
        assert_eq!(deals(&feed, "Spring sale"), 1, "{feed}");
    }

    // To the kitchen's buyers only.
    let page = v.get("/admin/promotions").await;
    let key = hidden(&page.body, "key");
    let sent = v
        .post(
            "/admin/promotions",
            &[
                ("title", "Kettle deal"),
                ("body", "Descaler free with your next order."),
                ("category", "kitchen"),
                ("key", key.as_str()),
            ],
        )
        .await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    let page = v.until_shows("/admin/promotions", "data-sent=\"2\"").await;
    assert!(page.body.contains("buyers of kitchen"), "{}", page.body);
    for buyer in [&first_buyer, &second_buyer] {
        let feed = common::eventually(&t, "/api/v1/notifications", buyer, "the deal", |feed| {
            deals(feed, "Kettle deal") == 1
        })
        .await;
        assert_eq!(deals(&feed, "Kettle deal"), 1);
    }
    let feed = t.get("/api/v1/notifications", Some(&browser)).await.body;
    assert_eq!(deals(&feed, "Kettle deal"), 0, "{feed}");

    // A form with an empty title is shown again with the error, nothing sent.
    let page = v.get("/admin/promotions").await;
    let key = hidden(&page.body, "key");
    let refused = v
        .post(
            "/admin/promotions",
            &[("title", ""), ("body", "x"), ("key", key.as_str())],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.body.matches("data-promotion=").count(), 2);
    t.shutdown().await;
}
