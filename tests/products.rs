//! Catalog routes through the gateway, with the statuses of the API contract.

mod common;

use common::{TestMesh, assert_problem};
use serde_json::json;

const ADMIN: &[(&str, &str)] = &[
    ("ADMIN_EMAIL", "admin@example.com"),
    ("ADMIN_PASSWORD", "admin-password"),
];

async fn admin_token(t: &TestMesh) -> String {
    t.login("admin@example.com", "admin-password").await.0
}

fn product_body(sku: &str) -> serde_json::Value {
    json!({"sku": sku, "name": format!("Thing {sku}"), "description": "A fine thing", "category": "things",
           "price": {"amount": 1999, "currency": "USD"}, "stock": 10})
}

#[tokio::test]
async fn admins_manage_the_catalog_and_customers_cannot() {
    let t = TestMesh::start_with(ADMIN).await;
    let admin = admin_token(&t).await;
    let (_, customer, _) = t.customer().await;

    assert_problem(
        &t.post("/api/v1/products", None, product_body("NOAUTH-1"))
            .await,
        401,
    );
    assert_problem(
        &t.post("/api/v1/products", Some(&customer), product_body("CUST-1"))
            .await,
        403,
    );

    let created = t
        .post("/api/v1/products", Some(&admin), product_body("ADM-1"))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        created.body["price"],
        json!({"amount": 1999, "currency": "USD"})
    );
    assert_eq!(created.body["stock_available"], 10);
    assert!(created.body["created_at"].as_str().unwrap().ends_with('Z'));

    assert_problem(
        &t.post("/api/v1/products", Some(&admin), product_body("adm-1"))
            .await,
        409,
    );
    let mut negative = product_body("NEG-1");
    negative["price"]["amount"] = json!(-1);
    let neg = t.post("/api/v1/products", Some(&admin), negative).await;
    assert_problem(&neg, 422);
    assert_eq!(neg.body["errors"][0]["field"], "price.amount");
    assert_problem(
        &t.post("/api/v1/products", Some(&admin), json!({"sku": "X"}))
            .await,
        422,
    );

    let path = format!("/api/v1/products/{id}");
    for (method, body) in [
        (reqwest::Method::PUT, Some(json!({"name": "Nope"}))),
        (reqwest::Method::DELETE, None),
    ] {
        assert_problem(&t.send(method, &path, Some(&customer), body).await, 403);
    }
    assert_problem(
        &t.put(
            &format!("{path}/stock"),
            Some(&customer),
            json!({"stock": 1}),
        )
        .await,
        403,
    );

    let updated = t
        .put(
            &path,
            Some(&admin),
            json!({"name": "Renamed", "price": {"amount": 2500, "currency": "usd"}}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["name"], "Renamed");
    assert_eq!(t.get(&path, None).await.body["price"]["amount"], 2500);

    let stock = t
        .put(&format!("{path}/stock"), Some(&admin), json!({"stock": 3}))
        .await;
    assert_eq!(stock.body["stock_available"], 3);
    let stock = t
        .put(&format!("{path}/stock"), Some(&admin), json!({"delta": 4}))
        .await;
    assert_eq!(stock.body["stock_available"], 7);
    assert_problem(
        &t.put(&format!("{path}/stock"), Some(&admin), json!({"delta": -8}))
            .await,
        409,
    );
    assert_problem(
        &t.put(
            &format!("{path}/stock"),
            Some(&admin),
            json!({"stock": 1, "delta": 1}),
        )
        .await,
        422,
    );
    assert_problem(
        &t.put(&format!("{path}/stock"), Some(&admin), json!({"stock": -1}))
            .await,
        422,
    );

    let deleted = t
        .send(reqwest::Method::DELETE, &path, Some(&admin), None)
        .await;
    assert_eq!(deleted.status, 204);
    assert_problem(&t.get(&path, None).await, 404);
    t.shutdown().await;
}

#[tokio::test]
async fn browsing_searching_and_paging_the_demo_catalog() {
    let t = TestMesh::start().await;
    let first = t.get("/api/v1/products?limit=5", None).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["items"].as_array().unwrap().len(), 5);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_string();
    let second = t
        .get(&format!("/api/v1/products?limit=5&cursor={cursor}"), None)
        .await;
    assert_eq!(second.status, 200);
    assert_ne!(first.body["items"][0]["id"], second.body["items"][0]["id"]);

    let books = t.get("/api/v1/products?category=books", None).await;
    assert!(
        books.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["category"] == "books")
    );
    assert!(books.body["next_cursor"].is_null());
    let search = t.get("/api/v1/products?q=keyboard", None).await;
    assert_eq!(search.body["items"][0]["sku"], "EL-KB-101");

    assert_problem(&t.get("/api/v1/products?limit=0", None).await, 422);
    assert_problem(&t.get("/api/v1/products?limit=101", None).await, 422);
    assert_problem(&t.get("/api/v1/products?limit=many", None).await, 422);
    assert_problem(&t.get("/api/v1/products?cursor=forged", None).await, 422);
    // A NUL cannot reach the store (MongoDB and Postgres refuse it).
    let nul = t.get("/api/v1/products?q=a%00b", None).await;
    assert_problem(&nul, 422);
    assert!(
        nul.body.to_string().contains("\"q\""),
        "names the field: {}",
        nul.body
    );
    assert_problem(
        &t.get(&format!("/api/v1/products/{}", uuid::Uuid::now_v7()), None)
            .await,
        404,
    );
    assert_problem(&t.get("/api/v1/products/not-an-id", None).await, 404);

    let id = search.body["items"][0]["id"].as_str().unwrap();
    let similar = t.get(&format!("/api/v1/products/{id}/similar"), None).await;
    assert_eq!(similar.status, 200);
    let items = similar.body["items"].as_array().unwrap();
    assert!(
        !items.is_empty()
            && items
                .iter()
                .all(|p| p["category"] == "electronics" && p["id"] != id)
    );
    t.shutdown().await;
}

#[tokio::test]
async fn customers_review_products() {
    let t = TestMesh::start().await;
    let (_, customer, _) = t.customer().await;
    let products = t.get("/api/v1/products?q=chess", None).await;
    let id = products.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/v1/products/{id}/reviews");
    assert_problem(
        &t.post(&path, None, json!({"rating": 5, "comment": "great"}))
            .await,
        401,
    );
    let six = t
        .post(
            &path,
            Some(&customer),
            json!({"rating": 6, "comment": "too good"}),
        )
        .await;
    assert_problem(&six, 422);
    assert_eq!(six.body["errors"][0]["field"], "rating");
    let ok = t
        .post(
            &path,
            Some(&customer),
            json!({"rating": 4, "comment": "solid"}),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(ok.body["rating"], 4);
    let list = t.get(&path, None).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    let product = t.get(&format!("/api/v1/products/{id}"), None).await;
    assert_eq!(product.body["rating_avg"], 4.0);
    assert_problem(
        &t.post(
            &format!("/api/v1/products/{}/reviews", uuid::Uuid::now_v7()),
            Some(&customer),
            json!({"rating": 3}),
        )
        .await,
        404,
    );
    t.shutdown().await;
}

/// Runs `sql` on the test Postgres server.
async fn admin_sql(sql: &str) {
    let pool = sqlx::PgPool::connect(&platform::testing::postgres_url())
        .await
        .expect("the test Postgres answers");
    sqlx::raw_sql(sql).execute(&pool).await.expect(sql);
    pool.close().await;
}

/// Two environments that share a Redis and differ only by the database
/// they use (no schema or key prefix set) never answer from each other's
/// cache: a product created and read in one is unknown to the other, by id
/// and in the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_on_one_redis_keep_their_caches_apart() {
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let names = [
        format!("shopmesh_env_a_{tag}"),
        format!("shopmesh_env_b_{tag}"),
    ];
    for name in &names {
        admin_sql(&format!("CREATE DATABASE {name}")).await;
    }
    let server = platform::testing::postgres_url();
    let base = server.rsplit_once('/').expect("a database in the URL").0;
    let redis = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut shops = Vec::new();
    for name in &names {
        let url = format!("{base}/{name}");
        let mut vars = ADMIN.to_vec();
        vars.extend([
            ("DATABASE_URL", url.as_str()),
            ("STORE_CURSOR_KEY", platform::testing::TEST_CURSOR_KEY),
            ("REDIS_URL", redis.as_str()),
            ("SEED_DEMO", "false"),
            ("RATE_LIMIT_RPS", "0"),
        ]);
        let shop = TestMesh::start_with(&vars).await;
        assert_ne!(
            shops
                .first()
                .map(|s: &TestMesh| s.config.redis_key_prefix.clone()),
            Some(shop.config.redis_key_prefix.clone()),
            "each database gets its own key prefix"
        );
        shops.push(shop);
    }
    let (a, b) = (&shops[0], &shops[1]);
    let token = admin_token(a).await;
    let created = a
        .post(
            "/api/v1/products",
            Some(&token),
            product_body(&format!("ENV-{tag}")),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().expect("an id").to_string();
    // Read twice in A: the second answer comes from the cache.
    for _ in 0..2 {
        assert_eq!(
            a.get(&format!("/api/v1/products/{id}"), None).await.status,
            200
        );
        let list = a.get("/api/v1/products", None).await;
        assert_eq!(
            list.body["items"].as_array().map(Vec::len),
            Some(1),
            "{}",
            list.body
        );
    }
    let other = b.get(&format!("/api/v1/products/{id}"), None).await;
    assert_problem(&other, 404);
    let list = b.get("/api/v1/products", None).await;
    assert_eq!(list.status, 200);
    assert_eq!(
        list.body["items"].as_array().map(Vec::len),
        Some(0),
        "B lists only its own products: {}",
        list.body
    );
    for shop in shops {
        shop.shutdown().await;
    }
    for name in &names {
        admin_sql(&format!("DROP DATABASE {name} WITH (FORCE)")).await;
    }
}
