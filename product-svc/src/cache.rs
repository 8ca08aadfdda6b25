//! Redis cache-aside for product details and list pages.
//!
//! Keys are versioned by generation counters: a product's value lives at
//! `product:<id>:<gen>` and every write to the product increments
//! `product:<id>:gen` (and the list generation) after the store write. A
//! reader that raced a writer can only fill an old generation nobody reads
//! any more, so a read after an update never sees the old value. Values
//! expire after the TTL. Every Redis call has a short timeout; any Redis
//! failure reads and writes through to the store as if there were no
//! cache, and a background task reconnects.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::ConnectionManager;

const GET_SCRIPT: &str = r#"
local gen = redis.call('GET', KEYS[1]) or '0'
local value = redis.call('GET', KEYS[2] .. ':' .. gen)
return {gen, value}
"#;

#[derive(Clone)]
pub struct Cache {
    conn: Arc<RwLock<Option<ConnectionManager>>>,
    ttl: Duration,
    enabled: bool,
    /// `REDIS_KEY_PREFIX`: keys are `<prefix>:cache:<namespace>:…`.
    prefix: String,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("enabled", &self.enabled)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// A cached value and the generation it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub generation: String,
    pub value: Option<Vec<u8>>,
}

async fn connect_once(url: &str) -> Option<ConnectionManager> {
    let client = redis::Client::open(url).ok()?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_millis(500))
        .set_response_timeout(Duration::from_millis(250))
        .set_number_of_retries(1);
    ConnectionManager::new_with_config(client, config)
        .await
        .ok()
}

impl Cache {
    /// No cache (no `REDIS_URL`).
    pub fn disabled() -> Self {
        Self {
            conn: Arc::new(RwLock::new(None)),
            ttl: Duration::from_secs(60),
            enabled: false,
            prefix: String::new(),
        }
    }

    /// Connects to `url`, retrying in the background while Redis is down;
    /// every key starts with `prefix`.
    pub async fn connect(url: &str, ttl: Duration, prefix: &str) -> Self {
        let cache = Self {
            conn: Arc::new(RwLock::new(connect_once(url).await)),
            ttl,
            enabled: true,
            prefix: prefix.to_string(),
        };
        if cache.conn.read().expect("cache lock").is_none() {
            tracing::warn!("Redis unreachable; serving from the store until it is back");
            let slot = cache.conn.clone();
            let url = url.to_string();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    if let Some(conn) = connect_once(&url).await {
                        *slot.write().expect("cache lock") = Some(conn);
                        tracing::info!("Redis reachable; cache enabled");
                        return;
                    }
                }
            });
        }
        cache
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// `<prefix>:cache:<namespace>:<rest>`.
    fn key(&self, namespace: &str, rest: &str) -> String {
        format!("{}:cache:{namespace}:{rest}", self.prefix)
    }

    fn conn(&self) -> Option<ConnectionManager> {
        if self.enabled && platform::flags::on(platform::flags::CACHE_OUTAGE) {
            return None;
        }
        self.conn.read().expect("cache lock").clone()
    }

    /// Runs one Redis call in its span, for at most 300 ms; a failure is
    /// a miss, never an error for the caller.
    async fn bounded<T>(
        operation: &'static str,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        use tracing::Instrument as _;
        let span = platform::telemetry::redis_span(operation);
        match tokio::time::timeout(Duration::from_millis(300), op.instrument(span.clone())).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(err)) => {
                platform::telemetry::record_error(&span, "redis", &err);
                tracing::debug!(error = %err, "cache unavailable");
                None
            }
            Err(_) => {
                platform::telemetry::record_error(&span, "timeout", &"no answer within 300 ms");
                None
            }
        }
    }

    /// `namespace` is `product:<id>` or `list`.
    pub async fn get(&self, namespace: &str, key: &str) -> Option<Lookup> {
        let mut conn = self.conn()?;
        let gen_key = self.key(namespace, "gen");
        let value_key = self.key(namespace, key);
        let (generation, value): (String, Option<Vec<u8>>) = Self::bounded(
            "EVALSHA",
            redis::Script::new(GET_SCRIPT)
                .key(gen_key)
                .key(value_key)
                .invoke_async(&mut conn),
        )
        .await?;
        Some(Lookup { generation, value })
    }

    /// Stores `value` under the generation read by [`Cache::get`].
    pub async fn put(&self, namespace: &str, key: &str, generation: &str, value: &[u8]) {
        let Some(mut conn) = self.conn() else { return };
        let value_key = self.key(namespace, &format!("{key}:{generation}"));
        let ttl = self.ttl.as_millis() as u64;
        let _: Option<()> = Self::bounded(
            "SET",
            redis::cmd("SET")
                .arg(value_key)
                .arg(value)
                .arg("PX")
                .arg(ttl)
                .query_async(&mut conn),
        )
        .await;
    }

    /// Makes every cached value of `namespaces` stale.
    pub async fn invalidate(&self, namespaces: &[String]) {
        let Some(mut conn) = self.conn() else { return };
        let mut pipe = redis::pipe();
        for ns in namespaces {
            pipe.incr(self.key(ns, "gen"), 1).ignore();
        }
        let done: Option<()> = Self::bounded("INCR", pipe.query_async(&mut conn)).await;
        if done.is_none() {
            tracing::warn!(
                ?namespaces,
                "cache invalidation failed; entries expire with their TTL"
            );
        }
    }
}

/// The cache namespaces a change of product `id` makes stale: its own
/// entry and every list.
pub fn namespaces_of(id: &str) -> Vec<String> {
    vec![format!("product:{id}"), "list".to_string()]
}
