//! Recommendations through the gateway: purchases become interactions,
//! training learns what is bought together, and the REST routes serve it.

mod common;

use common::{TestMesh, assert_problem};
use serde_json::{Value, json};

const VARS: &[(&str, &str)] = &[
    ("ADMIN_EMAIL", "admin@example.com"),
    ("ADMIN_PASSWORD", "admin-password"),
    ("RATE_LIMIT_RPS", "0"),
];

async fn product(t: &TestMesh, admin: &str, sku: &str, category: &str) -> String {
    let body = json!({"sku": sku, "name": format!("Product {sku}"), "description": "d", "category": category,
        "price": {"amount": 1500, "currency": "USD"}, "stock": 100});
    let r = t.post("/api/v1/products", Some(admin), body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

/// A new customer who ordered and paid for `products` in one order.
async fn buyer(t: &TestMesh, products: &[&str]) -> String {
    let (_, token, _) = t.customer().await;
    let items: Vec<Value> = products
        .iter()
        .map(|p| json!({"product_id": p, "quantity": 1}))
        .collect();
    let r = t
        .post(
            "/api/v1/orders",
            Some(&token),
            json!({"items": items, "shipping_address": common::address()}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let paid = t
        .pay(&token, r.body["id"].as_str().unwrap(), "4242424242424242")
        .await;
    assert_eq!(paid["status"], "SUCCEEDED", "{paid}");
    token
}

/// Trains until the model has seen `interactions` (events are consumed
/// asynchronously); returns the model document.
async fn train_until(t: &TestMesh, admin: &str, interactions: u64) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = t
            .post(
                "/api/v1/admin/recommendations/train",
                Some(admin),
                json!({}),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.body);
        let version = r.body["model_version"].as_str().unwrap().to_string();
        let model = common::eventually(
            t,
            "/api/v1/admin/recommendations/model",
            admin,
            "the trained model",
            |b| b["model_version"] == version.as_str(),
        )
        .await;
        if model["interactions"].as_u64() >= Some(interactions) {
            return model;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the log never reached {interactions}: {model}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn recommendations_learn_from_purchases_and_respect_the_rules() {
    let t = TestMesh::start_with(VARS).await;
    let admin = t.login("admin@example.com", "admin-password").await.0;
    let a = product(&t, &admin, "REC-A", "kitchen").await;
    let b = product(&t, &admin, "REC-B", "kitchen").await;
    let c = product(&t, &admin, "REC-C", "garden").await;
    for _ in 0..3 {
        buyer(&t, &[&a, &b]).await;
    }
    for _ in 0..4 {
        buyer(&t, &[&c]).await;
    }
    let shopper = buyer(&t, &[&a]).await;

    // Before any training nothing personal is known, and that is no error.
    let r = t.get("/api/v1/recommendations", Some(&shopper)).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let model = train_until(&t, &admin, 11).await;
    assert_eq!(model["algorithm"], "ease");
    assert!(model["products"].as_u64() >= Some(3));
    assert!(model["metrics"]["train_seconds"].is_number(), "{model}");

    let r = t
        .get("/api/v1/recommendations?limit=5", Some(&shopper))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(
        items[0]["id"],
        b.as_str(),
        "co-purchased outranks popular: {}",
        r.body
    );
    assert_eq!(items[0]["reason"]["kind"], "bought_with");
    assert_eq!(items[0]["reason"]["product_id"], a.as_str());
    assert!(
        items.iter().all(|i| i["id"] != a.as_str()),
        "never what was bought: {}",
        r.body
    );
    assert!(
        items.iter().any(|i| i["id"] == c.as_str()),
        "popular fills in: {}",
        r.body
    );

    let similar = t
        .get(&format!("/api/v1/products/{a}/similar?limit=3"), None)
        .await;
    assert_eq!(similar.status, 200, "{}", similar.body);
    assert_eq!(
        similar.body["items"][0]["id"],
        b.as_str(),
        "{}",
        similar.body
    );
    assert_problem(
        &t.get(
            "/api/v1/products/00000000-0000-7000-8000-000000000000/similar",
            None,
        )
        .await,
        404,
    );

    // A new customer: popular items of their preferred category first.
    let (_, newcomer, _) = t.customer().await;
    let r = t
        .put(
            "/api/v1/users/me/preferences",
            Some(&newcomer),
            json!({"categories": ["kitchen"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = t.get("/api/v1/recommendations", Some(&newcomer)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["items"][0]["reason"]["kind"], "preferred_category",
        "{}",
        r.body
    );
    assert_eq!(r.body["items"][0]["category"], "kitchen", "{}", r.body);

    // A visitor without an account: the popular products, on the
    // storefront's home page.
    let home = t.text("/").await;
    let popular = home
        .split("id=\"for-you\"")
        .nth(1)
        .and_then(|rest| rest.split("</section>").next())
        .unwrap_or_else(|| panic!("the home page shows popular products: {home}"));
    assert!(popular.contains("Popular now"), "{home}");
    for id in [&a, &b, &c] {
        assert!(
            popular.contains(&format!("/products/{id}")),
            "{id} is popular: {home}"
        );
    }

    for bad in ["0", "101", "x"] {
        assert_problem(
            &t.get(
                &format!("/api/v1/recommendations?limit={bad}"),
                Some(&shopper),
            )
            .await,
            422,
        );
    }
    assert_problem(
        &t.post(
            "/api/v1/admin/recommendations/train",
            Some(&shopper),
            json!({}),
        )
        .await,
        403,
    );
    assert_problem(
        &t.get("/api/v1/admin/recommendations/model", Some(&shopper))
            .await,
        403,
    );
    assert_problem(&t.get("/api/v1/recommendations", None).await, 401);

    let doc = t.get("/openapi.json", None).await.body;
    for path in [
        "/api/v1/recommendations",
        "/api/v1/admin/recommendations/train",
        "/api/v1/admin/recommendations/model",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    t.shutdown().await;
}
