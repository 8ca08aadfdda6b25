//! Rate limits: GCRA (a token bucket without a timer) per key, kept in
//! Redis when `REDIS_URL` is set so every gateway replica shares them, in
//! memory otherwise. A Redis outage lets requests through (logged): the
//! limiter protects the service, it must not take it down. Redis keys
//! start with `REDIS_KEY_PREFIX`, so environments sharing a Redis do not
//! share limits.
//!
//! A slot can be taken first and given back later ([`Limiter::refund`]):
//! the failed-login limit takes one before the password is checked and
//! returns it when the login succeeds, so concurrent guesses can never run
//! more checks than the limit allows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument as _;

/// `rate` events per `per`, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub burst: u32,
    pub per: Duration,
    pub rate: u32,
}

impl Quota {
    pub fn per_second(rate: u32, burst: u32) -> Self {
        Self {
            rate,
            burst: burst.max(1),
            per: Duration::from_secs(1),
        }
    }

    pub fn per_minute(rate: u32) -> Self {
        Self {
            rate,
            burst: rate.max(1),
            per: Duration::from_secs(60),
        }
    }

    /// Milliseconds between tokens (emission interval).
    fn interval_ms(&self) -> u64 {
        (self.per.as_millis() as u64 / self.rate.max(1) as u64).max(1)
    }
}

#[derive(Clone)]
pub enum Limiter {
    /// Theoretical arrival times, in ms since `base` (tokio time, so tests
    /// can pause and advance it).
    Memory(Arc<Mutex<HashMap<String, u64>>>, tokio::time::Instant),
    Redis {
        manager: redis::aio::ConnectionManager,
        /// `REDIS_KEY_PREFIX`.
        prefix: String,
    },
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limiter::Memory(..) => "Limiter::Memory",
            Limiter::Redis { .. } => "Limiter::Redis",
        })
    }
}

const GCRA: &str = r#"
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local consume = ARGV[3] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > tau then return new_tat - now - tau end
if consume then redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now + 1000) end
return 0
"#;

/// Gives one event's interval back (never below now).
const REFUND: &str = r#"
local interval = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat then return 0 end
local new_tat = tat - interval
if new_tat <= now then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now + 1000) end
return 0
"#;

/// Where the limit of `key` lives in Redis.
fn redis_key(prefix: &str, key: &str) -> String {
    format!("{prefix}:rl:{key}")
}

/// One GCRA step over `tat` (theoretical arrival time, ms): Ok(new tat) or
/// Err(ms to wait).
fn gcra(tat: Option<u64>, now: u64, quota: Quota) -> Result<u64, u64> {
    let interval = quota.interval_ms();
    let tau = interval * quota.burst as u64;
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + interval;
    if new_tat - now > tau {
        Err(new_tat - now - tau)
    } else {
        Ok(new_tat)
    }
}

impl Limiter {
    pub fn memory() -> Self {
        Limiter::Memory(
            Arc::new(Mutex::new(HashMap::new())),
            tokio::time::Instant::now(),
        )
    }

    /// Limits kept in Redis at `url`, under keys starting with `prefix`.
    pub async fn redis(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_millis(500))
            .set_number_of_retries(1);
        let manager = redis::aio::ConnectionManager::new_with_config(client, config).await?;
        Ok(Limiter::Redis {
            manager,
            prefix: prefix.to_string(),
        })
    }

    /// Whether an event under `key` fits `quota`; with `consume`, counts it.
    /// `Err(retry_after)` when it does not fit.
    pub async fn check(&self, key: &str, quota: Quota, consume: bool) -> Result<(), Duration> {
        let wait_ms = match self {
            Limiter::Memory(map, base) => {
                // Offset so the first events never look like the distant past.
                let now = base.elapsed().as_millis() as u64 + 1_000_000;
                let mut map = map.lock().expect("limiter lock");
                if map.len() > 100_000 {
                    map.retain(|_, tat| *tat > now);
                }
                match gcra(map.get(key).copied(), now, quota) {
                    Ok(new_tat) => {
                        if consume {
                            map.insert(key.to_string(), new_tat);
                        }
                        0
                    }
                    Err(wait) => wait,
                }
            }
            Limiter::Redis { manager, prefix } => {
                let interval = quota.interval_ms();
                let tau = interval * quota.burst as u64;
                let span = platform::telemetry::redis_span("EVALSHA");
                let result: redis::RedisResult<u64> = redis::Script::new(GCRA)
                    .key(redis_key(prefix, key))
                    .arg(interval)
                    .arg(tau)
                    .arg(if consume { "1" } else { "0" })
                    .invoke_async(&mut manager.clone())
                    .instrument(span.clone())
                    .await;
                match result {
                    Ok(wait) => wait,
                    Err(err) => {
                        platform::telemetry::record_error(&span, "redis", &err);
                        tracing::warn!(error = %err, "rate limiter unavailable; letting the request through");
                        0
                    }
                }
            }
        };
        if wait_ms == 0 {
            Ok(())
        } else {
            Err(Duration::from_millis(wait_ms))
        }
    }

    /// Gives back one event counted under `key` (a slot taken for work
    /// that turned out not to count).
    pub async fn refund(&self, key: &str, quota: Quota) {
        let interval = quota.interval_ms();
        match self {
            Limiter::Memory(map, base) => {
                let now = base.elapsed().as_millis() as u64 + 1_000_000;
                let mut map = map.lock().expect("limiter lock");
                if let Some(tat) = map.get_mut(key) {
                    *tat = tat.saturating_sub(interval).max(now);
                }
            }
            Limiter::Redis { manager, prefix } => {
                let span = platform::telemetry::redis_span("EVALSHA");
                let result: redis::RedisResult<u64> = redis::Script::new(REFUND)
                    .key(redis_key(prefix, key))
                    .arg(interval)
                    .invoke_async(&mut manager.clone())
                    .instrument(span.clone())
                    .await;
                if let Err(err) = result {
                    platform::telemetry::record_error(&span, "redis", &err);
                    tracing::warn!(error = %err, "rate limiter unavailable; a slot was not given back");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_the_burst_then_the_rate() {
        let quota = Quota::per_second(10, 3);
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(gcra(tat, 1_000, quota).expect("within the burst"));
        }
        let wait = gcra(tat, 1_000, quota).unwrap_err();
        assert!(wait > 0 && wait <= 100, "{wait}");
        assert!(
            gcra(tat, 1_000 + wait, quota).is_ok(),
            "allowed again after the wait"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn limited_then_recovers_after_the_window() {
        let limiter = Limiter::memory();
        let quota = Quota::per_minute(5);
        for _ in 0..5 {
            limiter.check("login:acct:a", quota, true).await.unwrap();
        }
        let wait = limiter
            .check("login:acct:a", quota, false)
            .await
            .unwrap_err();
        assert!(wait <= Duration::from_secs(12), "{wait:?}");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(
            limiter.check("login:acct:a", quota, false).await.is_err(),
            "still limited before the wait is over"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            limiter.check("login:acct:a", quota, true).await.is_ok(),
            "one more after a token's interval"
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..5 {
            limiter.check("login:acct:a", quota, true).await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refunded_slot_can_be_taken_again() {
        let limiter = Limiter::memory();
        let quota = Quota::per_minute(2);
        limiter.check("k", quota, true).await.unwrap();
        limiter.check("k", quota, true).await.unwrap();
        assert!(limiter.check("k", quota, true).await.is_err());
        limiter.refund("k", quota).await;
        limiter.check("k", quota, true).await.unwrap();
        assert!(
            limiter.check("k", quota, true).await.is_err(),
            "one slot only"
        );
        // A refund never banks credit beyond the burst.
        limiter.refund("fresh", quota).await;
        for _ in 0..5 {
            limiter.refund("k", quota).await;
        }
        limiter.check("k", quota, true).await.unwrap();
        limiter.check("k", quota, true).await.unwrap();
        assert!(limiter.check("k", quota, true).await.is_err());
    }

    #[tokio::test]
    async fn peeking_does_not_consume() {
        let limiter = Limiter::memory();
        let quota = Quota::per_minute(2);
        for _ in 0..5 {
            assert!(limiter.check("k", quota, false).await.is_ok());
        }
        assert!(limiter.check("k", quota, true).await.is_ok());
        assert!(limiter.check("k", quota, true).await.is_ok());
        let retry = limiter.check("k", quota, false).await.unwrap_err();
        assert!(retry > Duration::from_secs(20), "{retry:?}");
        assert!(
            limiter.check("other", quota, false).await.is_ok(),
            "keys are independent"
        );
    }
}
