//! Restart and outage behaviour of the network backends, and what only a
//! real server can show (indexes made outside the spec, query plans).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::store::mongo::{MongoBackend, plan_uses_index};
use platform::store::postgres::PostgresBackend;
use platform::store::{Query, Store, StoreError};
use platform::testing::TcpProxy;

use super::suite::{self, Item, item, spec};
use super::{mongodb_uri, postgres_url, settings, unique_namespace, with_mongodb_backend};

/// A document written through `first` is read through `second` (another
/// pool on the same namespace) after `first` is closed.
async fn data_survives_a_reconnect(
    first: Store,
    close_first: impl Future<Output = ()>,
    second: Store,
) {
    let c = first.collection::<Item>(spec()).await.unwrap();
    c.insert("a", item("S1", "k", 1, "kept")).await.unwrap();
    close_first.await;
    let c = second.collection::<Item>(spec()).await.unwrap();
    assert_eq!(c.get("a").await.unwrap().value.name, "kept");
}

pub async fn postgres_data_survives_a_reconnect() {
    let namespace = unique_namespace();
    let (url, settings) = (postgres_url(), settings());
    let connect = || PostgresBackend::connect(&url, &namespace, &settings);
    let (first, second) = (connect().await.unwrap(), connect().await.unwrap());
    let first_store = Store::with_backend(Arc::new(first.clone()));
    let second_store = Store::with_backend(Arc::new(second.clone()));
    let outcome = tokio::spawn(async move {
        data_survives_a_reconnect(
            first_store,
            async move { first.close().await },
            second_store,
        )
        .await
    })
    .await;
    second.drop_schema().await.unwrap();
    second.close().await;
    outcome.unwrap();
}

pub async fn mongodb_data_survives_a_reconnect() {
    let namespace = unique_namespace();
    let (url, settings) = (mongodb_uri(), settings());
    let connect = || MongoBackend::connect(&url, &namespace, &settings);
    let (first, second) = (connect().await.unwrap(), connect().await.unwrap());
    let first_store = Store::with_backend(Arc::new(first.clone()));
    let second_store = Store::with_backend(Arc::new(second.clone()));
    let outcome = tokio::spawn(async move {
        let close = async move { first.client().clone().shutdown().await };
        data_survives_a_reconnect(first_store, close, second_store).await
    })
    .await;
    second.drop_database().await.unwrap();
    outcome.unwrap();
}

/// `url` with its host and port replaced by `addr`, and the upstream
/// address it named.
fn url_through(url: &str, default_port: u16, addr: SocketAddr) -> (String, SocketAddr) {
    let uri: http::Uri = url.parse().expect("the test URL parses as a URI");
    let host = uri.host().expect("host");
    let port = uri.port_u16().unwrap_or(default_port);
    let upstream = format!(
        "{}:{port}",
        if host == "localhost" {
            "127.0.0.1"
        } else {
            host
        }
    )
    .parse()
    .expect("the test URL names an IP host for the outage test");
    (
        url.replacen(&format!("{host}:{port}"), &addr.to_string(), 1),
        upstream,
    )
}

/// A proxy in front of the server `url` names, and the URL through it.
async fn proxied(url: &str, default_port: u16) -> (TcpProxy, String) {
    let (_, upstream) = url_through(url, default_port, "127.0.0.1:1".parse().unwrap());
    let proxy = TcpProxy::start_to(upstream).await.unwrap();
    let (through, _) = url_through(url, default_port, proxy.addr());
    (proxy, through)
}

/// With the link cut, reads, writes and pings fail fast as unavailable;
/// once it is back the store recovers without a restart.
async fn down_is_unavailable_then_recovers(store: Store, proxy: &TcpProxy) {
    let c = store.collection::<Item>(spec()).await.unwrap();
    c.insert("a", item("S1", "k", 1, "x")).await.unwrap();

    proxy.stop().await;
    let started = Instant::now();
    let err = c.get("a").await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = c.insert("b", item("S2", "k", 1, "x")).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(err.kind(), platform::ErrorKind::Unavailable);
    assert!(
        started.elapsed() < settings().timeout * 2 + Duration::from_secs(2),
        "no hang: {:?}",
        started.elapsed()
    );
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));

    proxy.start().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let got = loop {
        match c.get("a").await {
            Ok(doc) => break doc,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(other) => panic!("store did not recover: {other:?}"),
        }
    };
    assert_eq!(got.value.sku, "S1");
    c.insert("b", item("S2", "k", 1, "x")).await.unwrap();
}

pub async fn postgres_down_is_unavailable_then_recovers() {
    let (proxy, url) = proxied(&postgres_url(), 5432).await;
    let backend = PostgresBackend::connect(&url, &unique_namespace(), &settings())
        .await
        .unwrap();
    down_is_unavailable_then_recovers(Store::with_backend(Arc::new(backend.clone())), &proxy).await;
    backend.drop_schema().await.unwrap();
    backend.close().await;
}

pub async fn mongodb_down_is_unavailable_then_recovers() {
    let (proxy, url) = proxied(&mongodb_uri(), 27017).await;
    let backend = MongoBackend::connect(&url, &unique_namespace(), &settings())
        .await
        .unwrap();
    down_is_unavailable_then_recovers(Store::with_backend(Arc::new(backend.clone())), &proxy).await;
    backend.drop_database().await.unwrap();
}

pub async fn postgres_clash_on_an_undeclared_index() {
    let backend = PostgresBackend::connect(&postgres_url(), &unique_namespace(), &settings())
        .await
        .unwrap();
    let store = Store::with_backend(Arc::new(backend.clone()));
    let sql = format!(
        "CREATE UNIQUE INDEX ops_name ON \"{}\".items ((doc->>'name'), (doc->>'category'))",
        backend.schema()
    );
    let pool = backend.pool().clone();
    suite::a_clash_on_an_undeclared_index_is_not_an_id_clash(store, || async move {
        sqlx::query(&sql).execute(&pool).await.unwrap();
    })
    .await;
    backend.drop_schema().await.unwrap();
    backend.close().await;
}

pub async fn mongodb_clash_on_an_undeclared_index() {
    with_mongodb_backend(|store, backend| async move {
        let client = backend.client().clone();
        let db = store_database(&backend);
        suite::a_clash_on_an_undeclared_index_is_not_an_id_clash(store, || async move {
            let model = mongodb::IndexModel::builder()
                .keys(mongodb::bson::doc! {"d.name": 1, "d.category": 1})
                .options(
                    mongodb::options::IndexOptions::builder()
                        .name("ops_name".to_string())
                        .unique(true)
                        .build(),
                )
                .build();
            client
                .database(&db)
                .collection::<mongodb::bson::Document>("items")
                .create_index(model)
                .await
                .unwrap();
        })
        .await;
    })
    .await;
}

fn store_database(backend: &MongoBackend) -> String {
    backend.database_name().to_string()
}

pub async fn mongodb_changed_index_spec() {
    with_mongodb_backend(|store, backend| async move {
        suite::a_changed_index_spec_does_not_break_start_up(store.clone()).await;
        // Only the current spec's indexes (and the id's) are left.
        let mut names = backend.index_names(&spec()).await.unwrap();
        names.sort();
        let mut expected: Vec<String> = spec()
            .indexes
            .iter()
            .map(MongoBackend::native_index_name)
            .chain(["_id_".to_string()])
            .collect();
        expected.sort();
        assert_eq!(names, expected);
    })
    .await;
}

/// MongoDB uses a partial unique index only for a query that implies its
/// filter. Proven with `explain` where the server has MongoDB's planner;
/// the stand-in used in CI (mongoeco) has none, and the test says so.
pub async fn mongodb_unique_lookups_use_their_index() {
    with_mongodb_backend(|store, backend| async move {
        let c = store.collection::<Item>(spec()).await.unwrap();
        for n in 0..50 {
            c.insert(&format!("id-{n}"), item(&format!("S{n}"), "k", n, "x"))
                .await
                .unwrap();
        }
        // explain is slow on the stand-in: give it time of its own.
        let patient = platform::store::StoreSettings {
            timeout: Duration::from_secs(20),
            ..settings()
        };
        let explainer = MongoBackend::connect(&mongodb_uri(), backend.database_name(), &patient)
            .await
            .unwrap();
        let sku = spec().find_index("sku").unwrap().clone();
        let code = spec().find_index("code").unwrap().clone();
        for (index, query) in [
            (&sku, Query::new().eq("sku", "S7").limit(1)),
            (&code, Query::new().eq("code", "PROMO").limit(1)),
        ] {
            let planned = c.plan(&query).unwrap();
            let explain = explainer.explain_find(c.spec(), &planned).await.unwrap();
            let name = MongoBackend::native_index_name(index);
            match plan_uses_index(&explain, &name) {
                Some(used) => assert!(used, "{name} not in the winning plan: {explain}"),
                None => eprintln!(
                    "skipped: this server's explain has no MongoDB query planner \
                     (mongoeco); on MongoDB the winning plan must scan {name}"
                ),
            }
        }
        assert_eq!(
            c.find_one(Query::new().eq("sku", "S7"))
                .await
                .unwrap()
                .unwrap()
                .id,
            "id-7"
        );
    })
    .await;
}
