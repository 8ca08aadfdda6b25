//! Carts through the gateway: guest carts and their tokens, prices from the
//! catalog, merge at sign-in, checkout and its idempotency, bad input; then
//! the races on Postgres + NATS (at least 30 trials each, both orders of
//! arrival): concurrent adds, an add during checkout, two checkouts with
//! one key and with two, a merge racing an add on the guest cart.

mod common;

use std::time::Duration;

use common::backends::Backends;
use common::{Reply, TestMesh, address, assert_problem};
use futures::StreamExt as _;
use serde_json::{Value, json};

const ADMIN_EMAIL: &str = "admin@example.com";
const ADMIN_PASSWORD: &str = "admin-password";
const TRIALS: usize = 30;
const PARALLEL: usize = 6;
const GOOD_CARD: &str = "4242424242424242";

fn vars<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut vars = vec![
        ("ADMIN_EMAIL", ADMIN_EMAIL),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("RATE_LIMIT_RPS", "0"),
        ("SEED_DEMO", "false"),
        ("ORDER_MAX_UNPAID_PER_CUSTOMER", "500"),
        ("DATABASE_TIMEOUT_MS", "10000"),
        ("DATABASE_MAX_CONNECTIONS", "5"),
    ];
    vars.extend_from_slice(extra);
    vars
}

/// A request with an optional bearer, cart token and idempotency key.
async fn send(
    t: &TestMesh,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    cart_token: Option<&str>,
    key: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut request = t.http.request(method, t.url(path));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    if let Some(token) = cart_token {
        request = request.header("x-cart-token", token);
    }
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the gateway answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Reply {
        status,
        headers,
        body: response.json().await.unwrap_or(Value::Null),
    }
}

const GET: reqwest::Method = reqwest::Method::GET;
const POST: reqwest::Method = reqwest::Method::POST;
const PUT: reqwest::Method = reqwest::Method::PUT;
const DELETE: reqwest::Method = reqwest::Method::DELETE;

async fn add_item(
    t: &TestMesh,
    bearer: Option<&str>,
    cart_token: Option<&str>,
    product: &str,
    quantity: Value,
) -> Reply {
    let body = json!({"product_id": product, "quantity": quantity});
    send(
        t,
        POST,
        "/api/v1/cart/items",
        bearer,
        cart_token,
        None,
        Some(body),
    )
    .await
}

async fn merge(t: &TestMesh, bearer: &str, cart_token: &str) -> Reply {
    let body = json!({"cart_token": cart_token});
    send(
        t,
        POST,
        "/api/v1/cart/merge",
        Some(bearer),
        None,
        None,
        Some(body),
    )
    .await
}

async fn cart_of(t: &TestMesh, bearer: Option<&str>) -> Reply {
    send(t, GET, "/api/v1/cart", bearer, None, None, None).await
}

async fn checkout(t: &TestMesh, bearer: Option<&str>, key: Option<&str>, card: bool) -> Reply {
    send(
        t,
        POST,
        "/api/v1/cart/checkout",
        bearer,
        None,
        key,
        Some(checkout_body(card)),
    )
    .await
}

async fn product(t: &TestMesh, admin: &str, price: i64, stock: u32) -> String {
    let sku = format!("CART-{}", uuid::Uuid::now_v7().simple());
    let r = t
        .post(
            "/api/v1/products",
            Some(admin),
            json!({"sku": sku, "name": format!("Item {sku}"), "description": "d", "category": "test",
                   "price": {"amount": price, "currency": "USD"}, "stock": stock}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

fn quantities(cart: &Value) -> Vec<(String, u64)> {
    let mut lines: Vec<(String, u64)> = cart["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["product_id"].as_str().unwrap().to_string(),
                l["quantity"].as_u64().unwrap(),
            )
        })
        .collect();
    lines.sort();
    lines
}

fn quantity_of(cart: &Value, product: &str) -> u64 {
    quantities(cart)
        .into_iter()
        .find(|(p, _)| p == product)
        .map_or(0, |(_, q)| q)
}

fn checkout_body(card: bool) -> Value {
    let mut body = json!({"shipping_address": address()});
    if card {
        body["card"] =
            json!({"number": GOOD_CARD, "exp_month": 12, "exp_year": 2031, "cvc": "123"});
    }
    body
}

async fn orders_of(t: &TestMesh, token: &str) -> Vec<Value> {
    let r = t.get("/api/v1/orders?limit=100", Some(token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_fills_a_cart_signs_in_merges_and_checks_out() {
    let t = TestMesh::start_with(&vars(&[("CART_MAX_LINES", "3")])).await;
    let (admin, _) = t.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let mug = product(&t, &admin, 1299, 50).await;
    let pen = product(&t, &admin, 250, 3).await;

    // A guest cart.
    let r = send(&t, POST, "/api/v1/cart", None, None, None, None).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let token = r.body["cart_token"].as_str().unwrap().to_string();
    let guest = Some(token.as_str());
    let add = |product: String, quantity: Value, cart_token: Option<String>| {
        let t = &t;
        async move {
            send(
                t,
                POST,
                "/api/v1/cart/items",
                None,
                cart_token.as_deref(),
                None,
                Some(json!({"product_id": product, "quantity": quantity})),
            )
            .await
        }
    };
    let r = add(mug.clone(), json!(2), Some(token.clone())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = add(mug.clone(), json!(1), Some(token.clone())).await;
    assert_eq!(quantity_of(&r.body, &mug), 3, "adds add up: {}", r.body);
    let r = add(pen.clone(), json!(2), Some(token.clone())).await;
    assert_eq!(
        r.body["subtotal"]["amount"],
        3 * 1299 + 2 * 250,
        "{}",
        r.body
    );
    assert_eq!(r.body["items"][0]["price_changed"], false);

    // Bad input: nothing changes.
    assert_problem(
        &add(
            uuid::Uuid::now_v7().to_string(),
            json!(1),
            Some(token.clone()),
        )
        .await,
        404,
    );
    for quantity in [json!(0), json!(-1), json!(1_000_000_000), json!(101)] {
        assert_problem(&add(mug.clone(), quantity, Some(token.clone())).await, 422);
    }
    // Over the per-product cap by adding.
    assert_problem(&add(mug.clone(), json!(98), Some(token.clone())).await, 422);
    // A forged token, and no credential at all.
    let forged = format!("{}x", &token[..token.len() - 1]);
    assert_problem(
        &send(&t, GET, "/api/v1/cart", None, Some(&forged), None, None).await,
        401,
    );
    assert_problem(
        &send(&t, GET, "/api/v1/cart", None, None, None, None).await,
        401,
    );
    // The line cap (3 here).
    let a = product(&t, &admin, 100, 10).await;
    let b = product(&t, &admin, 100, 10).await;
    assert_eq!(
        add(a.clone(), json!(1), Some(token.clone())).await.status,
        200
    );
    let refused = add(b.clone(), json!(1), Some(token.clone())).await;
    assert_problem(&refused, 422);
    assert_eq!(refused.body["errors"][0]["field"], "product_id");
    let r = send(
        &t,
        DELETE,
        &format!("/api/v1/cart/items/{a}"),
        None,
        guest,
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(&t, GET, "/api/v1/cart", None, guest, None, None).await;
    assert_eq!(quantities(&r.body), {
        let mut v = vec![(mug.clone(), 3), (pen.clone(), 2)];
        v.sort();
        v
    });

    // The price changes: the cart shows the new one and flags it.
    let r = t
        .put(
            &format!("/api/v1/products/{mug}"),
            Some(&admin),
            json!({"price": {"amount": 1499, "currency": "USD"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(&t, GET, "/api/v1/cart", None, guest, None, None).await;
    let line = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["product_id"] == mug.as_str())
        .unwrap()
        .clone();
    assert_eq!(line["unit_price"]["amount"], 1499);
    assert_eq!(line["price_changed"], true, "{line}");

    // Sign in, merge: the guest cart is gone.
    let (_, customer, _) = t.customer().await;
    let r = add_item(&t, Some(&customer), None, &mug, json!(1)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = merge(&t, &customer, &token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(quantity_of(&r.body, &mug), 4, "quantities add: {}", r.body);
    assert_eq!(quantity_of(&r.body, &pen), 2);
    assert_problem(
        &send(&t, GET, "/api/v1/cart", None, guest, None, None).await,
        401,
    );
    // A repeated merge adds nothing twice.
    let r = merge(&t, &customer, &token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(quantity_of(&r.body, &mug), 4, "{}", r.body);

    // Too few pens in stock for an extra one: 409, the cart as it was.
    let r = send(
        &t,
        PUT,
        &format!("/api/v1/cart/items/{pen}"),
        Some(&customer),
        None,
        None,
        Some(json!({"quantity": 4})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["product_id"] == pen.as_str())
            .unwrap()["available"],
        false
    );
    let r = checkout(&t, Some(&customer), Some("k-stock"), true).await;
    assert_problem(&r, 409);
    let r = cart_of(&t, Some(&customer)).await;
    assert_eq!(quantity_of(&r.body, &pen), 4, "kept: {}", r.body);
    assert!(orders_of(&t, &customer).await.is_empty());
    let r = send(
        &t,
        PUT,
        &format!("/api/v1/cart/items/{pen}"),
        Some(&customer),
        None,
        None,
        Some(json!({"quantity": 2})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Checkout and pay: the ordered lines leave the cart.
    let r = checkout(&t, Some(&customer), Some("k1"), true).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let order = r.body["order"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["order"]["status"], "PAID", "{}", r.body);
    assert_eq!(r.body["payment"]["status"], "SUCCEEDED");
    assert_eq!(r.body["order"]["total"]["amount"], 4 * 1499 + 2 * 250);
    let r = cart_of(&t, Some(&customer)).await;
    assert!(quantities(&r.body).is_empty(), "{}", r.body);
    // A replay answers the first response; another key on the empty cart is 409.
    let r = checkout(&t, Some(&customer), Some("k1"), true).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["order"]["id"], order.as_str());
    assert_problem(&checkout(&t, Some(&customer), Some("k2"), true).await, 409);
    // The same key with another body is refused.
    assert_problem(&checkout(&t, Some(&customer), Some("k1"), false).await, 409);
    assert_eq!(orders_of(&t, &customer).await.len(), 1);
    // A bad card is refused before any order.
    add_item(&t, Some(&customer), None, &mug, json!(1)).await;
    let mut bad = checkout_body(true);
    bad["card"]["number"] = json!("4242424242424241");
    assert_problem(
        &send(
            &t,
            POST,
            "/api/v1/cart/checkout",
            Some(&customer),
            None,
            Some("k3"),
            Some(bad),
        )
        .await,
        422,
    );
    assert_eq!(orders_of(&t, &customer).await.len(), 1);
    // DELETE empties it.
    let r = send(
        &t,
        DELETE,
        "/api/v1/cart",
        Some(&customer),
        None,
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    let r = cart_of(&t, Some(&customer)).await;
    assert!(quantities(&r.body).is_empty());
    t.shutdown().await;
}

/// Runs `trial(i)` for `0..TRIALS`, `PARALLEL` at a time.
async fn trials<F, Fut>(trial: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    futures::stream::iter((0..TRIALS).map(trial))
        .buffer_unordered(PARALLEL)
        .collect::<Vec<()>>()
        .await;
}

/// A few random milliseconds, so the second request lands just behind the first.
async fn jitter() {
    tokio::time::sleep(Duration::from_millis(rand_ms())).await;
}

fn rand_ms() -> u64 {
    u64::from(uuid::Uuid::now_v7().as_bytes()[15] % 8)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cart_races_on_postgres_and_nats_lose_no_line_and_order_once() {
    let backends = Backends::new();
    let mesh = backends.mesh_with(&vars(&[])).await;
    let t = &mesh;
    let (admin, _) = t.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let stock = 1_000_000;
    let hot = product(t, &admin, 500, stock).await;
    let other = product(t, &admin, 700, stock).await;
    let (hot, other) = (&hot, &other);

    // 20 concurrent adds of one product: exactly 20 x each add.
    trials(|i| async move {
        let (_, customer, _) = t.customer().await;
        let each = 1 + (i % 4) as u64;
        let answers = futures::future::join_all((0..20).map(|_| {
            let customer = customer.clone();
            async move {
                add_item(t, Some(&customer), None, hot, json!(each))
                    .await
                    .status
            }
        }))
        .await;
        assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
        let r = cart_of(t, Some(&customer)).await;
        assert_eq!(
            quantity_of(&r.body, hot),
            20 * each,
            "trial {i}: {}",
            r.body
        );
    })
    .await;

    // An add during checkout: it is ordered or stays in the cart, never
    // both, never lost; both orders of arrival.
    trials(|i| async move {
        let (_, customer, _) = t.customer().await;
        add_item(t, Some(&customer), None, hot, json!(2)).await;
        let checkout = async {
            if i % 2 == 1 {
                jitter().await;
            }
            t.careful(
                POST,
                "/api/v1/cart/checkout",
                &customer,
                Some(&format!("add-{i}")),
                Some(checkout_body(i % 3 == 0)),
            )
            .await
        };
        let add = async {
            if i % 2 == 0 {
                jitter().await;
            }
            add_item(t, Some(&customer), None, other, json!(3)).await
        };
        let (checkout, add) = tokio::join!(checkout, add);
        assert_eq!(checkout.status, 201, "trial {i}: {}", checkout.body);
        assert_eq!(add.status, 200, "trial {i}: {}", add.body);
        let ordered: u64 = checkout.body["order"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["product_id"] == other.as_str())
            .map(|l| l["quantity"].as_u64().unwrap())
            .sum();
        let cart = cart_of(t, Some(&customer)).await.body;
        assert_eq!(
            ordered + quantity_of(&cart, other),
            3,
            "trial {i}: the added line is ordered or kept, once: order {} cart {cart}",
            checkout.body["order"]
        );
        assert_eq!(
            quantity_of(&cart, hot),
            0,
            "trial {i}: the ordered line left: {cart}"
        );
    })
    .await;

    // Two checkouts at once, with one key and with two: one order.
    trials(|i| async move {
        let (_, customer, _) = t.customer().await;
        add_item(t, Some(&customer), None, hot, json!(1)).await;
        let same_key = i % 2 == 0;
        let (first_key, second_key) = if same_key {
            (format!("one-{i}"), format!("one-{i}"))
        } else {
            (format!("a-{i}"), format!("b-{i}"))
        };
        // Careful clients: an answer that says "retry" (503, 409 with
        // Retry-After) is retried with the same key until it is final.
        let customer_ref = customer.as_str();
        let careful = |key: String| async move {
            t.careful(
                POST,
                "/api/v1/cart/checkout",
                customer_ref,
                Some(&key),
                Some(checkout_body(true)),
            )
            .await
        };
        let (a, b) = tokio::join!(careful(first_key), async {
            jitter().await;
            careful(second_key).await
        });
        let created: Vec<&Reply> = [&a, &b].into_iter().filter(|r| r.status == 201).collect();
        let shown = format!("{} {} / {} {}", a.status, a.body, b.status, b.body);
        if same_key {
            assert_eq!(created.len(), 2, "trial {i}: {shown}");
            assert_eq!(
                created[0].body["order"]["id"], created[1].body["order"]["id"],
                "trial {i}: one key, one order"
            );
        } else {
            assert_eq!(created.len(), 1, "trial {i}: {shown}");
            let other = if a.status == 201 { &b } else { &a };
            assert_eq!(other.status, 409, "trial {i}: {shown}");
        }
        let orders = orders_of(t, &customer).await;
        assert_eq!(
            orders.len(),
            1,
            "trial {i} (same key: {same_key}): {orders:?}"
        );
        let cart = cart_of(t, Some(&customer)).await.body;
        assert!(quantities(&cart).is_empty(), "trial {i}: {cart}");
    })
    .await;

    // A merge racing an add on the guest cart: the add is merged, or
    // refused; never answered 200 and lost.
    trials(|i| async move {
        let (_, customer, _) = t.customer().await;
        let r = send(t, POST, "/api/v1/cart", None, None, None, None).await;
        let token = r.body["cart_token"].as_str().unwrap().to_string();
        add_item(t, None, Some(&token), hot, json!(1)).await;
        let merge = async {
            if i % 2 == 1 {
                jitter().await;
            }
            merge(t, &customer, &token).await
        };
        let add = async {
            if i % 2 == 0 {
                jitter().await;
            }
            add_item(t, None, Some(&token), other, json!(2)).await
        };
        let (merge, add) = tokio::join!(merge, add);
        assert_eq!(merge.status, 200, "trial {i}: {}", merge.body);
        assert!(
            matches!(add.status, 200 | 401 | 409),
            "trial {i}: {} {}",
            add.status,
            add.body
        );
        let cart = cart_of(t, Some(&customer)).await.body;
        assert_eq!(quantity_of(&cart, hot), 1, "trial {i}: {cart}");
        let expected = if add.status == 200 { 2 } else { 0 };
        assert_eq!(
            quantity_of(&cart, other),
            expected,
            "trial {i}: add {} — {cart}",
            add.status
        );
    })
    .await;

    mesh.shutdown().await;
    backends.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_cart_gets_one_reminder() {
    let t = TestMesh::start_with(&vars(&[
        ("CART_REMINDER_AFTER", "1s"),
        ("CART_SWEEP_INTERVAL_MS", "200"),
    ]))
    .await;
    let (admin, _) = t.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let mug = product(&t, &admin, 1299, 50).await;
    let (_, customer, _) = t.customer().await;
    let (_, emptied, _) = t.customer().await;
    for who in [&customer, &emptied] {
        let r = add_item(&t, Some(who), None, &mug, json!(2)).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // An emptied cart is due nothing.
    assert_eq!(
        send(&t, DELETE, "/api/v1/cart", Some(&emptied), None, None, None)
            .await
            .status,
        204
    );
    let reminders = |feed: &Value| {
        feed["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["kind"] == "cart.abandoned")
            .count()
    };
    let feed = common::eventually(
        &t,
        "/api/v1/notifications",
        &customer,
        "a cart reminder",
        |feed| reminders(feed) > 0,
    )
    .await;
    assert!(
        feed["items"][0]["body"]
            .as_str()
            .unwrap()
            .contains("2 items"),
        "{feed}"
    );
    // Several more sweeps: still one.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let feed = t.get("/api/v1/notifications", Some(&customer)).await.body;
    assert_eq!(reminders(&feed), 1, "{feed}");
    let feed = t.get("/api/v1/notifications", Some(&emptied)).await.body;
    assert_eq!(reminders(&feed), 0, "{feed}");
    t.shutdown().await;
}
