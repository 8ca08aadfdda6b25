//! GetRecommendations latency with 32 concurrent clients, idle and while
//! a training runs:
//!
//! ```sh
//! cargo run --release -p recommendation-svc --example recommend_bench [-- --requests 20000]
//! ```
//!
//! Starts product-svc and recommendation-svc in this process (memory
//! store, in-process bus, real gRPC on loopback), creates 300 products,
//! imports a synthetic history of 3,000 users over them plus 3,000 products
//! the catalog does not sell (so the EASE solve is 3,300 wide and takes
//! seconds), trains, then measures.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use platform::config::PeerAddr;
use platform::{Config, ServiceId};
use proto::recommendation::recommendation_service_client::RecommendationServiceClient;
use proto::recommendation::{Interaction, interaction};

type Client = RecommendationServiceClient<platform::grpc::GrpcChannel>;

fn admin<T>(m: T) -> tonic::Request<T> {
    platform::testing::identity().as_user(m, "bench-admin", "admin")
}

async fn load(client: &Client, users: usize, requests: usize) -> (Vec<Duration>, usize) {
    let per = requests / 32;
    let tasks: Vec<_> = (0..32)
        .map(|w| {
            let mut c = client.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per);
                let mut empty = 0;
                for n in 0..per {
                    let user = format!("u{}", (w * 7919 + n * 104_729) % users);
                    let started = Instant::now();
                    let r = c
                        .get_recommendations(platform::testing::identity().as_user(
                            proto::recommendation::GetRecommendationsRequest {
                                user_id: user.clone(),
                                limit: 10,
                                category: String::new(),
                            },
                            &user,
                            "customer",
                        ))
                        .await
                        .expect("recommendations");
                    lat.push(started.elapsed());
                    empty += usize::from(r.into_inner().products.is_empty());
                }
                (lat, empty)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut empty = 0;
    for t in tasks {
        let (lat, e) = t.await.unwrap();
        all.extend(lat);
        empty += e;
    }
    all.sort();
    (all, empty)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

async fn status(client: &Client) -> proto::recommendation::GetModelStatusResponse {
    client
        .clone()
        .get_model_status(admin(proto::recommendation::GetModelStatusRequest {}))
        .await
        .unwrap()
        .into_inner()
}

// The allocator every shopmesh binary uses.
#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let requests: usize = std::env::args()
        .skip_while(|a| a != "--requests")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let map: HashMap<&str, &str> = [("GRPC_CONCURRENCY_LIMIT", "1024")].into();
    let mut config = Config::from_source("recommend-bench", &map)?;
    platform::testing::identity().configure(&mut config, "recommendation-svc");
    let deps = platform::runtime::Deps::connect(&config).await?;
    let products = platform::grpc::bind("127.0.0.1:0".parse()?).await?;
    config.peers.set(
        ServiceId::Product,
        PeerAddr::from_socket(products.local_addr()?),
    );
    let _product = product_svc::serve(config.clone(), products, deps.clone()).await?;
    let listener = platform::grpc::bind("127.0.0.1:0".parse()?).await?;
    let addr = listener.local_addr()?;
    // RECOMMENDATION_CATALOG_TTL_MS=0 measures without the catalog cache.
    let settings = recommendation_svc::RecommendationConfig {
        train_interval: None,
        ..recommendation_svc::RecommendationConfig::from_env()?
    };
    println!("catalog answers reused for {:?}", settings.catalog_ttl);
    let _rec = recommendation_svc::serve_with(config.clone(), settings, listener, deps).await?;
    let channel = platform::grpc::channel(&PeerAddr::from_socket(addr), &config.grpc)?;
    let client: Client = RecommendationServiceClient::new(channel);
    let mut catalog = proto::product::product_service_client::ProductServiceClient::new(
        platform::grpc::channel(config.peers.get(ServiceId::Product), &config.grpc)?,
    );
    let mut ids = Vec::new();
    for i in 0..300 {
        let p = catalog
            .create_product(admin(proto::product::CreateProductRequest {
                sku: format!("BENCH-{i}"),
                name: format!("Bench product {i}"),
                description: "d".into(),
                category: format!("c{}", i % 10),
                price: Some(proto::common::Money {
                    amount: 100,
                    currency: "USD".into(),
                }),
                stock: 1000,
                weight_grams: 0,
            }))
            .await?
            .into_inner()
            .product
            .unwrap();
        ids.push(p.id);
    }
    // Users buy within a cluster of ten real products and some unsold ones.
    let users = 3000;
    let mut rows = Vec::new();
    let mut seed = 12345u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for u in 0..users {
        let cluster = (u % 30) * 10;
        for _ in 0..8 {
            let product = if next() % 3 == 0 {
                format!("unsold-{}", next() % 3000)
            } else {
                ids[cluster + (next() % 10) as usize].clone()
            };
            rows.push(Interaction {
                user_id: format!("u{u}"),
                product_id: product,
                kind: interaction::Kind::Purchase as i32,
                quantity: 1,
                rating: 0,
                occurred_at: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000 + (next() % 10_000_000) as i64,
                    nanos: 0,
                }),
                category: String::new(),
                line: 0,
            });
        }
    }
    let summary = client
        .clone()
        .import_interactions(admin(futures::stream::iter(rows)))
        .await?
        .into_inner();
    println!(
        "imported {} interactions of {} users",
        summary.imported, summary.users
    );

    let train = |c: Client| async move {
        c.clone()
            .train_model(admin(proto::recommendation::TrainModelRequest {}))
            .await
            .unwrap()
            .into_inner()
            .model_version
    };
    let started = Instant::now();
    let version = train(client.clone()).await;
    while status(&client)
        .await
        .current
        .is_none_or(|c| c.model_version != version)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let info = status(&client).await.current.unwrap();
    println!(
        "trained {} products from {} interactions in {:.2} s (metrics {:?})",
        info.product_count,
        info.interaction_count,
        started.elapsed().as_secs_f64(),
        info.metrics
    );

    let _ = load(&client, users, 2000).await; // warm-up
    let started = Instant::now();
    let (idle, empty) = load(&client, users, requests).await;
    let idle_rps = idle.len() as f64 / started.elapsed().as_secs_f64();

    // Again while a training runs (measure only requests that overlap it).
    let version = train(client.clone()).await;
    let mut during = Vec::new();
    loop {
        let before = status(&client).await;
        if before.training_version != version {
            break;
        }
        let (lat, _) = load(&client, users, 320).await;
        during.extend(lat);
    }
    during.sort();
    println!("\n| GetRecommendations, 32 clients | requests | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    println!(
        "| idle ({idle_rps:.0} req/s, {empty} empty) | {} | {:.2} | {:.2} | {:.2} |",
        idle.len(),
        pct(&idle, 0.5),
        pct(&idle, 0.99),
        pct(&idle, 1.0)
    );
    if !during.is_empty() {
        println!(
            "| while training | {} | {:.2} | {:.2} | {:.2} |",
            during.len(),
            pct(&during, 0.5),
            pct(&during, 0.99),
            pct(&during, 1.0)
        );
    }
    Ok(())
}
