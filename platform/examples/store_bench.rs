//! Micro-benchmark of the document store: operations per second for insert,
//! get and compare-and-swap replace on every available backend.
//!
//! ```sh
//! cargo run --release -p platform --example store_bench
//! ```
//! Postgres from `TEST_DATABASE_URL` (default local trust), MongoDB when
//! `MONGODB_URI` is set. Each run uses a throw-away schema / database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::store::mongo::MongoBackend;
use platform::store::postgres::PostgresBackend;
use platform::store::{Collection, CollectionSpec, FieldType, IndexSpec, Store, StoreSettings};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Doc {
    sku: String,
    category: String,
    price: i64,
    name: String,
    stock: i64,
}

const N: usize = 2_000;
const CONCURRENCY: usize = 16;

fn spec() -> CollectionSpec {
    CollectionSpec::new("bench")
        .index(IndexSpec::new("sku", FieldType::String).unique())
        .index(IndexSpec::new("category", FieldType::String))
        .index(IndexSpec::new("price", FieldType::Int))
        .text("name")
}

/// Runs `op(i)` for i in 0..N over CONCURRENCY tasks; returns ops/s.
async fn measure<F, Fut>(op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..CONCURRENCY {
        let op = op.clone();
        tasks.spawn(async move {
            let mut i = worker;
            while i < N {
                op(i).await;
                i += CONCURRENCY;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("bench task");
    }
    N as f64 / started.elapsed().as_secs_f64()
}

async fn bench(name: &str, store: Store) {
    let c: Collection<Doc> = store.collection(spec()).await.expect("collection");
    let doc = |i: usize| Doc {
        sku: format!("SKU-{i}"),
        category: format!("cat-{}", i % 10),
        price: i as i64,
        name: format!("Product {i}"),
        stock: 100,
    };
    let insert = {
        let c = c.clone();
        measure(move |i| {
            let c = c.clone();
            async move {
                c.insert(&format!("{i:08}"), doc(i)).await.expect("insert");
            }
        })
        .await
    };
    let get = {
        let c = c.clone();
        measure(move |i| {
            let c = c.clone();
            async move {
                c.get(&format!("{:08}", (i * 7919) % N)).await.expect("get");
            }
        })
        .await
    };
    let cas = {
        let c = c.clone();
        measure(move |i| {
            let c = c.clone();
            async move {
                let current = c.get(&format!("{i:08}")).await.expect("get");
                let mut next = current.value;
                next.stock -= 1;
                c.replace(&current.id, current.version, next)
                    .await
                    .expect("cas");
            }
        })
        .await
    };
    let contended = {
        let c = c.clone();
        measure(move |_| {
            let c = c.clone();
            async move {
                c.update::<(), _>("00000000", |d| {
                    d.stock -= 1;
                    Ok(())
                })
                .await
                .expect("update")
                .expect("change");
            }
        })
        .await
    };
    println!(
        "{name:>9}: insert {insert:>9.0} ops/s | get {get:>9.0} ops/s | CAS read+replace {cas:>8.0} ops/s | CAS on one hot document {contended:>8.0} ops/s  ({N} ops, {CONCURRENCY} concurrent)"
    );
}

#[tokio::main]
async fn main() {
    let settings = StoreSettings {
        timeout: Duration::from_secs(10),
        max_connections: CONCURRENCY as u32,
        ..Default::default()
    };
    let namespace = format!("bench_{}", uuid::Uuid::now_v7().simple());
    bench("memory", Store::memory()).await;

    let url = platform::testing::postgres_url();
    match PostgresBackend::connect(&url, &namespace, &settings).await {
        Ok(pg) => {
            bench("postgres", Store::with_backend(Arc::new(pg.clone()))).await;
            let _ = pg.drop_schema().await;
        }
        Err(err) => println!("postgres: skipped ({err})"),
    }

    match std::env::var("MONGODB_URI") {
        Ok(uri) => match MongoBackend::connect(&uri, &namespace, &settings).await {
            Ok(mongo) => {
                bench("mongodb", Store::with_backend(Arc::new(mongo.clone()))).await;
                let _ = mongo.drop_database().await;
            }
            Err(err) => println!("mongodb: skipped ({err})"),
        },
        Err(_) => println!("  mongodb: skipped (MONGODB_URI is not set)"),
    }
}
