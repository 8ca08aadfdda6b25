//! The consuming side: deliveries, handlers and consumer settings.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proto::events::Envelope;

use super::{BusError, HandlerError};

/// One delivery of an event to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub envelope: Envelope,
    pub subject: String,
    /// 1 on first delivery.
    pub attempt: u32,
    /// How many earlier deliveries ended with the handler's dependencies
    /// unavailable ([`HandlerError::Unavailable`]): they do not count
    /// against `max_deliver`, so an outage leaves the retries of a real
    /// failure intact.
    pub waits: u32,
    pub consumer: String,
    pub headers: HashMap<String, String>,
}

/// Processes deliveries of a consumer.
#[async_trait::async_trait]
pub trait Handler: Send + Sync {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError>;
}

/// A handler from an async closure.
pub struct FnHandler<F>(pub F);

#[async_trait::async_trait]
impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Delivery) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = Result<(), HandlerError>> + Send,
{
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        (self.0)(delivery.clone()).await
    }
}

pub fn handler_fn<F, Fut>(f: F) -> Arc<dyn Handler>
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    Arc::new(FnHandler(f))
}

/// A durable consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Durable name, e.g. `shipping-svc`. `[A-Za-z0-9_-]`.
    pub name: String,
    /// Event types (subjects below the prefix), NATS wildcards allowed:
    /// `order.created`, `payment.*`, `shipping.>`.
    pub event_types: Vec<String>,
    /// Attempts before a delivery is dead-lettered.
    pub max_deliver: u32,
    /// Delay before redelivery after the n-th failure (the last one repeats).
    pub backoff: Vec<Duration>,
    /// How long an unacked delivery stays with a consumer instance before it
    /// is given to another (the instance is presumed dead).
    pub ack_wait: Duration,
}

impl ConsumerConfig {
    pub fn new(name: &str, event_types: &[&str]) -> Self {
        Self {
            name: name.to_string(),
            event_types: event_types.iter().map(|s| s.to_string()).collect(),
            max_deliver: 5,
            backoff: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ],
            ack_wait: Duration::from_secs(30),
        }
    }

    /// A consumer whose events move the saga along (an order's payment or
    /// refund, a paid order's label, the facts recommendations learn
    /// from): retried soon after a failure (0.2, 1, then every 5 s), up to
    /// 10 attempts of its own.
    pub fn prompt(name: &str, event_types: &[&str]) -> Self {
        Self {
            max_deliver: 10,
            backoff: vec![
                Duration::from_millis(200),
                Duration::from_secs(1),
                Duration::from_secs(5),
            ],
            ..Self::new(name, event_types)
        }
    }

    pub fn backoff_after(&self, attempt: u32) -> Duration {
        let i = (attempt.max(1) as usize - 1).min(self.backoff.len().saturating_sub(1));
        self.backoff
            .get(i)
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }

    pub(crate) fn validate(&self) -> Result<(), BusError> {
        validate_consumer_name(&self.name)?;
        if self.event_types.is_empty() {
            return Err(BusError::Invalid(
                "a consumer needs at least one event type".into(),
            ));
        }
        for t in &self.event_types {
            validate_subject_pattern(t)?;
        }
        if self.max_deliver == 0 {
            return Err(BusError::Invalid("max_deliver must be at least 1".into()));
        }
        Ok(())
    }
}

/// A durable consumer's name: 1 to 64 of `[A-Za-z0-9_-]` (it is also a
/// subject token of its dead letters).
pub(crate) fn validate_consumer_name(name: &str) -> Result<(), BusError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(BusError::Invalid(format!(
            "consumer name {name:?} must be [A-Za-z0-9_-]"
        )))
    }
}

pub(super) fn validate_subject_pattern(pattern: &str) -> Result<(), BusError> {
    let tokens: Vec<&str> = pattern.split('.').collect();
    let ok = tokens.iter().enumerate().all(|(i, t)| {
        !t.is_empty()
            && (*t == "*"
                || (*t == ">" && i == tokens.len() - 1)
                || t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    });
    if ok {
        Ok(())
    } else {
        Err(BusError::Invalid(format!(
            "invalid event type pattern {pattern:?}"
        )))
    }
}

/// NATS subject matching: `*` is one token, `>` the rest.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}
