//! product-svc benchmark over real gRPC on loopback: GetProductDetails
//! requests per second without and with the Redis cache (Postgres store),
//! and ReserveStock calls per second contending on one product.
//!
//! ```sh
//! cargo run --release -p product-svc --example product_bench
//! ```
//! Uses `TEST_DATABASE_URL` (default local Postgres) and `TEST_REDIS_URL`
//! (default `redis://127.0.0.1:6379`); schemas are dropped afterwards.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use platform::events::memory::InProcessBus;
use platform::runtime::Deps;
use platform::{Config, PeerAddr};
use proto::product::product_service_client::ProductServiceClient;
use proto::product::*;

const CONCURRENCY: usize = 32;

type Client = ProductServiceClient<platform::grpc::GrpcChannel>;

async fn start(vars: &[(&str, String)]) -> (platform::Running, Client, Config) {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let mut config = Config::from_source("product-bench", &map).expect("config");
    platform::testing::identity().configure(&mut config, "product-svc");
    let listener = platform::grpc::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let running = product_svc::serve(
        config.clone(),
        listener,
        Deps {
            bus: Arc::new(InProcessBus::new("shop")),
        },
    )
    .await
    .unwrap();
    let channel =
        platform::grpc::channel(&PeerAddr::from_socket(running.addr()), &config.grpc).unwrap();
    (running, ProductServiceClient::new(channel), config)
}

async fn run<F, Fut>(total: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..CONCURRENCY {
        let op = op.clone();
        tasks.spawn(async move {
            let mut i = w;
            while i < total {
                op(i).await;
                i += CONCURRENCY;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn details_rps(client: &Client, ids: Arc<Vec<String>>) -> f64 {
    let client = client.clone();
    run(10_000, move |i| {
        let (mut client, id) = (client.clone(), ids[i % ids.len()].clone());
        async move {
            client
                .get_product_details(GetProductDetailsRequest { product_id: id })
                .await
                .expect("details");
        }
    })
    .await
}

async fn create(client: &mut Client, sku: &str, stock: u32) -> String {
    let request = tonic::Request::new(CreateProductRequest {
        sku: sku.into(),
        name: sku.into(),
        description: "bench".into(),
        category: "bench".into(),
        price: Some(proto::common::Money {
            amount: 100,
            currency: "USD".into(),
        }),
        stock,
        weight_grams: 1,
    });
    let request = platform::testing::identity().as_user(request.into_inner(), "bench", "admin");
    client
        .create_product(request)
        .await
        .expect("create")
        .into_inner()
        .product
        .unwrap()
        .id
}

#[tokio::main]
async fn main() {
    let db = platform::testing::postgres_url();
    let redis = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("bench{}", &uuid::Uuid::now_v7().simple().to_string()[..12]);
    let base = vec![
        ("SEED_DEMO", "false".to_string()),
        ("DATABASE_URL", db.clone()),
        ("DATABASE_SCHEMA_PREFIX", prefix.clone()),
        (
            "STORE_CURSOR_KEY",
            platform::testing::TEST_CURSOR_KEY.to_string(),
        ),
        ("DATABASE_MAX_CONNECTIONS", "32".to_string()),
    ];

    let (running, mut client, _) = start(&base).await;
    let mut ids = Vec::new();
    for n in 0..100 {
        ids.push(create(&mut client, &format!("BENCH-{n}"), 1_000_000).await);
    }
    let ids = Arc::new(ids);
    let uncached = details_rps(&client, ids.clone()).await;

    let hot = create(&mut client, "BENCH-HOT", 1_000_000).await;
    let reserves = {
        let client = client.clone();
        run(2_000, move |i| {
            let (mut client, hot) = (client.clone(), hot.clone());
            async move {
                let request = ReserveStockRequest {
                    order_id: format!("order-{i}"),
                    lines: vec![StockLine {
                        product_id: hot,
                        quantity: 1,
                    }],
                };
                let request = platform::testing::identity().as_service(request, "order-svc");
                client.reserve_stock(request).await.expect("reserve");
            }
        })
        .await
    };
    running.shutdown().await;

    let mut with_redis = base.clone();
    with_redis.push(("REDIS_URL", redis));
    let (running, client, _) = start(&with_redis).await;
    details_rps(&client, ids.clone()).await; // warm the cache
    let cached = details_rps(&client, ids).await;
    running.shutdown().await;

    let backend = platform::store::postgres::PostgresBackend::connect(
        &db,
        &format!("{prefix}_product"),
        &Default::default(),
    )
    .await
    .unwrap();
    backend.drop_schema().await.unwrap();

    println!(
        "GetProductDetails (Postgres store, {CONCURRENCY} concurrent): uncached {uncached:.0} req/s | Redis-cached {cached:.0} req/s"
    );
    println!(
        "ReserveStock on one hot product ({CONCURRENCY} concurrent orders): {reserves:.0} reservations/s"
    );
}
