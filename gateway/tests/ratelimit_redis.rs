//! The Redis-backed limiter against the real Redis (`TEST_REDIS_URL`,
//! default `redis://127.0.0.1:6379`).

use std::time::{Duration, Instant};

use gateway::ratelimit::{Limiter, Quota};
use platform::testing::TcpProxy;

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique_key() -> String {
    format!("test:{}", uuid::Uuid::now_v7().simple())
}

#[tokio::test]
async fn two_gateway_replicas_share_the_same_limits() {
    let (a, b) = (
        Limiter::redis(&redis_url(), "test").await.unwrap(),
        Limiter::redis(&redis_url(), "test").await.unwrap(),
    );
    let key = unique_key();
    let quota = Quota::per_minute(3);
    a.check(&key, quota, true).await.unwrap();
    b.check(&key, quota, true).await.unwrap();
    a.check(&key, quota, true).await.unwrap();
    let wait = b.check(&key, quota, false).await.unwrap_err();
    assert!(
        wait > Duration::from_secs(10) && wait <= Duration::from_secs(20),
        "{wait:?}"
    );
    assert!(a.check(&key, quota, true).await.is_err());
    assert!(a.check(&unique_key(), quota, true).await.is_ok());
}

#[tokio::test]
async fn a_slot_given_back_on_one_replica_is_free_on_the_other() {
    let (a, b) = (
        Limiter::redis(&redis_url(), "test").await.unwrap(),
        Limiter::redis(&redis_url(), "test").await.unwrap(),
    );
    let key = unique_key();
    let quota = Quota::per_minute(2);
    a.check(&key, quota, true).await.unwrap();
    b.check(&key, quota, true).await.unwrap();
    assert!(a.check(&key, quota, true).await.is_err());
    b.refund(&key, quota).await;
    a.check(&key, quota, true).await.unwrap();
    assert!(
        b.check(&key, quota, true).await.is_err(),
        "exactly one slot"
    );
}

#[tokio::test]
async fn prefixes_keep_environments_apart() {
    let (staging, prod) = (
        Limiter::redis(&redis_url(), "staging").await.unwrap(),
        Limiter::redis(&redis_url(), "prod").await.unwrap(),
    );
    let key = unique_key();
    let quota = Quota::per_minute(1);
    staging.check(&key, quota, true).await.unwrap();
    assert!(staging.check(&key, quota, true).await.is_err());
    assert!(
        prod.check(&key, quota, true).await.is_ok(),
        "prod has its own limits"
    );
}

#[tokio::test]
async fn a_redis_outage_lets_requests_through_quickly() {
    let upstream = redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .replace("localhost", "127.0.0.1")
        .parse()
        .unwrap();
    let proxy = TcpProxy::start_to(upstream).await.unwrap();
    let limiter = Limiter::redis(&format!("redis://{}", proxy.addr()), "test")
        .await
        .unwrap();
    let key = unique_key();
    let quota = Quota::per_minute(1);
    limiter.check(&key, quota, true).await.unwrap();
    assert!(
        limiter.check(&key, quota, true).await.is_err(),
        "limited while Redis is up"
    );
    proxy.stop().await;
    let started = Instant::now();
    assert!(limiter.check(&key, quota, true).await.is_ok(), "fails open");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
