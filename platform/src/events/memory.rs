//! In-process event bus: the embedded default. It keeps the semantics of
//! the JetStream backend within one process — a log of published events,
//! dedup by event id, durable named consumers (for the life of the
//! process) shared by competing instances, redelivery with backoff, ack
//! deadlines and dead letters — so services behave the same on both.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use proto::events::Envelope;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    BusError, ConsumerConfig, DLQ_ATTEMPTS_HEADER, DLQ_ERROR_HEADER, DLQ_SUBJECT_HEADER, Delivery,
    EventBus, Handler, Outcome, Subscription, dlq_subject, subject, subject_matches,
};

/// How long a published id is remembered for deduplication.
const DEDUP_WINDOW: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
struct Stored {
    subject: String,
    payload: Vec<u8>,
    headers: HashMap<String, String>,
}

#[derive(Debug)]
struct Pending {
    attempts: u32,
    /// Deliveries that ended in [`Outcome::Wait`].
    waits: u32,
    not_before: Instant,
    leased_until: Option<Instant>,
}

#[derive(Debug)]
struct ConsumerState {
    filters: Vec<String>,
    next: usize,
    pending: BTreeMap<usize, Pending>,
}

#[derive(Debug, Default)]
struct State {
    log: Vec<Stored>,
    /// Ids published within the dedup window, and when, oldest first.
    seen: std::collections::HashSet<String>,
    seen_order: std::collections::VecDeque<(Instant, String)>,
    consumers: HashMap<String, ConsumerState>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    notify: Notify,
    /// Broadcast topics.
    live: Mutex<HashMap<String, tokio::sync::broadcast::Sender<Vec<u8>>>>,
}

/// The in-process bus. Clones share the same log and consumers.
#[derive(Debug, Clone)]
pub struct InProcessBus {
    prefix: String,
    inner: Arc<Inner>,
}

impl InProcessBus {
    fn live_topics(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, tokio::sync::broadcast::Sender<Vec<u8>>>> {
        self.inner.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                notify: Notify::new(),
                live: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Events stored on subjects matching `pattern` (tests, tools).
    pub fn count(&self, pattern: &str) -> usize {
        let state = self.inner.state.lock().expect("bus lock");
        state
            .log
            .iter()
            .filter(|m| subject_matches(pattern, &m.subject))
            .count()
    }

    fn append(&self, state: &mut State, id: &str, message: Stored) {
        let now = Instant::now();
        while let Some((at, _)) = state.seen_order.front() {
            if now.duration_since(*at) < DEDUP_WINDOW {
                break;
            }
            if let Some((_, old)) = state.seen_order.pop_front() {
                state.seen.remove(&old);
            }
        }
        if !state.seen.insert(id.to_string()) {
            return;
        }
        state.seen_order.push_back((now, id.to_string()));
        state.log.push(message);
        self.inner.notify.notify_waiters();
    }

    /// The next delivery due for consumer `name`, leased to the caller, or
    /// when to look again.
    fn next_due(
        &self,
        name: &str,
        ack_wait: Duration,
    ) -> Result<(usize, Stored, u32, u32), Option<Instant>> {
        let mut state = self.inner.state.lock().expect("bus lock");
        let State { log, consumers, .. } = &mut *state;
        let consumer = consumers
            .get_mut(name)
            .expect("consumer registered on subscribe");
        let now = Instant::now();
        while consumer.next < log.len() {
            let index = consumer.next;
            consumer.next += 1;
            if consumer
                .filters
                .iter()
                .any(|f| subject_matches(f, &log[index].subject))
            {
                consumer.pending.insert(
                    index,
                    Pending {
                        attempts: 0,
                        waits: 0,
                        not_before: now,
                        leased_until: None,
                    },
                );
            }
        }
        crate::metrics::CONSUMER_PENDING
            .with_label_values(&[name, name])
            .set(consumer.pending.len() as i64);
        let mut wake: Option<Instant> = None;
        for (&index, pending) in consumer.pending.iter_mut() {
            let due = match pending.leased_until {
                Some(until) => until,
                None => pending.not_before,
            };
            if due <= now {
                pending.attempts += 1;
                pending.leased_until = Some(now + ack_wait);
                return Ok((index, log[index].clone(), pending.attempts, pending.waits));
            }
            wake = Some(wake.map_or(due, |w: Instant| w.min(due)));
        }
        Err(wake)
    }

    fn settle(&self, name: &str, index: usize, attempt: u32, stored: &Stored, outcome: Outcome) {
        let mut state = self.inner.state.lock().expect("bus lock");
        let consumer = state.consumers.get_mut(name).expect("consumer registered");
        // A lease that expired was handed to another instance: its outcome wins.
        let still_ours = consumer
            .pending
            .get(&index)
            .is_some_and(|p| p.attempts == attempt);
        if !still_ours {
            return;
        }
        match outcome {
            Outcome::Ack => {
                consumer.pending.remove(&index);
            }
            Outcome::Retry(delay) | Outcome::Wait(delay) => {
                let pending = consumer.pending.get_mut(&index).expect("checked above");
                if matches!(outcome, Outcome::Wait(_)) {
                    pending.waits += 1;
                }
                pending.leased_until = None;
                pending.not_before = Instant::now() + delay;
                self.inner.notify.notify_waiters();
            }
            Outcome::DeadLetter(error) => {
                consumer.pending.remove(&index);
                let mut headers = stored.headers.clone();
                let id = format!(
                    "{}:dlq:{name}",
                    headers
                        .get(super::MSG_ID_HEADER)
                        .cloned()
                        .unwrap_or_default()
                );
                headers.insert(DLQ_ERROR_HEADER.into(), error);
                headers.insert(DLQ_SUBJECT_HEADER.into(), stored.subject.clone());
                headers.insert(DLQ_ATTEMPTS_HEADER.into(), attempt.to_string());
                let message = Stored {
                    subject: dlq_subject(&self.prefix, name),
                    payload: stored.payload.clone(),
                    headers,
                };
                self.append(&mut state, &id, message);
            }
        }
    }

    async fn run(
        self,
        config: ConsumerConfig,
        handler: Arc<dyn Handler>,
        cancel: CancellationToken,
    ) {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.next_due(&config.name, config.ack_wait) {
                Ok((index, stored, attempt, waits)) => {
                    let outcome = match Envelope::decode(stored.payload.as_slice()) {
                        Ok(envelope) => {
                            let delivery = Delivery {
                                envelope,
                                subject: stored.subject.clone(),
                                attempt,
                                waits,
                                consumer: config.name.clone(),
                                headers: stored.headers.clone(),
                            };
                            super::process(handler.as_ref(), &config, "memory", delivery).await
                        }
                        Err(err) => Outcome::DeadLetter(format!("undecodable envelope: {err}")),
                    };
                    self.settle(&config.name, index, attempt, &stored, outcome);
                    if cancel.is_cancelled() {
                        return;
                    }
                }
                Err(wake) => {
                    let wait = wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = &mut notified => {}
                        () = tokio::time::sleep_until(wait) => {}
                    }
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl EventBus for InProcessBus {
    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        let span = super::producer_span(envelope, self.name(), &self.prefix);
        let result = span.in_scope(|| {
            let payload = super::encode(envelope)?;
            let headers = super::publish_headers(envelope).into_iter().collect();
            let message = Stored {
                subject: subject(&self.prefix, &envelope.r#type),
                payload,
                headers,
            };
            let mut state = self.inner.state.lock().expect("bus lock");
            self.append(&mut state, &envelope.id, message);
            Ok(())
        });
        super::published(&span, envelope, &result);
        result
    }

    async fn subscribe(
        &self,
        config: ConsumerConfig,
        handler: Arc<dyn Handler>,
    ) -> Result<Subscription, BusError> {
        config.validate()?;
        let filters: Vec<String> = config
            .event_types
            .iter()
            .map(|t| subject(&self.prefix, t))
            .collect();
        {
            let mut state = self.inner.state.lock().expect("bus lock");
            let consumer = state
                .consumers
                .entry(config.name.clone())
                .or_insert_with(|| ConsumerState {
                    filters: filters.clone(),
                    next: 0,
                    pending: BTreeMap::new(),
                });
            consumer.filters = filters;
        }
        let cancel = CancellationToken::new();
        let task = tokio::spawn(self.clone().run(config, handler, cancel.clone()));
        Ok(Subscription::new(cancel, vec![task]))
    }

    async fn broadcast(&self, topic: &str, payload: Vec<u8>) -> Result<(), BusError> {
        let subject = super::live_subject(&self.prefix, topic)?;
        if let Some(sender) = self.live_topics().get(&subject) {
            // No listener is not an error.
            let _ = sender.send(payload);
        }
        Ok(())
    }

    async fn listen(&self, topic: &str) -> Result<super::Listener, BusError> {
        let subject = super::live_subject(&self.prefix, topic)?;
        let receiver = self
            .live_topics()
            .entry(subject)
            .or_insert_with(|| tokio::sync::broadcast::channel(1024).0)
            .subscribe();
        Ok(Box::pin(futures::stream::unfold(
            receiver,
            |mut receiver| async move {
                loop {
                    match receiver.recv().await {
                        Ok(message) => return Some((message, receiver)),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        )))
    }

    fn prefix(&self) -> &str {
        &self.prefix
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}
