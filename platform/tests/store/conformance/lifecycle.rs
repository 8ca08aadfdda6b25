//! Restart and outage behaviour of the Postgres backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::store::postgres::PostgresBackend;
use platform::store::{Store, StoreError};
use platform::testing::TcpProxy;

use super::suite::{Item, item, spec};
use super::{postgres_url, settings, unique_namespace};

pub async fn postgres_data_survives_a_reconnect() {
    let namespace = unique_namespace();
    let first = PostgresBackend::connect(&postgres_url(), &namespace, &settings())
        .await
        .unwrap();
    let c = Store::with_backend(Arc::new(first.clone()))
        .collection::<Item>(spec())
        .await
        .unwrap();
    c.insert("a", item("S1", "k", 1, "kept")).await.unwrap();
    first.close().await;

    let second = PostgresBackend::connect(&postgres_url(), &namespace, &settings())
        .await
        .unwrap();
    let c = Store::with_backend(Arc::new(second.clone()))
        .collection::<Item>(spec())
        .await
        .unwrap();
    let got = c.get("a").await;
    second.drop_schema().await.unwrap();
    second.close().await;
    assert_eq!(got.unwrap().value.name, "kept");
}

/// The Postgres URL with its host and port replaced by `addr`.
fn url_through(addr: std::net::SocketAddr) -> (String, std::net::SocketAddr) {
    let url = postgres_url();
    let uri: http::Uri = url.parse().expect("TEST_DATABASE_URL parses as a URI");
    let host = uri.host().expect("host");
    let port = uri.port_u16().unwrap_or(5432);
    let upstream = format!(
        "{}:{port}",
        if host == "localhost" {
            "127.0.0.1"
        } else {
            host
        }
    )
    .parse()
    .expect("TEST_DATABASE_URL names an IP host for the outage test");
    (
        url.replacen(&format!("{host}:{port}"), &addr.to_string(), 1),
        upstream,
    )
}

pub async fn postgres_down_is_unavailable_then_recovers() {
    let (_, upstream) = url_through("127.0.0.1:1".parse().unwrap());
    let proxy = TcpProxy::start_to(upstream).await.unwrap();
    let (url, _) = url_through(proxy.addr());
    let namespace = unique_namespace();
    let backend = PostgresBackend::connect(&url, &namespace, &settings())
        .await
        .unwrap();
    let store = Store::with_backend(Arc::new(backend.clone()));
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
    backend.drop_schema().await.unwrap();
    backend.close().await;
}
