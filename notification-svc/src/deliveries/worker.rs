//! The dispatcher: claims due records, sends them on their channel, records
//! the outcome, and prunes finished records.

use std::time::Duration;

use platform::store::{Bound, Query, StoreError, Versioned};

use super::{BATCH, Deliveries, LEASE, PRUNE_BATCH, PRUNE_EVERY, RETENTION, Record, id_of, slot};
use crate::channels::{Message, SendError, Target};
use crate::domain::{self, Outcome, State, Via};

impl Deliveries {
    /// Runs the dispatcher until `cancel`.
    pub async fn run(self, cancel: platform::runtime::CancellationToken) {
        let idle = self.retry.base.min(Duration::from_secs(1));
        let mut next_prune = tokio::time::Instant::now();
        loop {
            if cancel.is_cancelled() {
                return;
            }
            if tokio::time::Instant::now() >= next_prune {
                next_prune += PRUNE_EVERY;
                let cutoff = platform::clock::now().millis() - RETENTION.as_millis() as i64;
                match self.prune(cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "pruned old delivery records"),
                    Err(err) => tracing::warn!(error = %err, "could not prune delivery records"),
                }
            }
            let busy = match self.dispatch_due().await {
                Ok(busy) => busy,
                Err(err) => {
                    tracing::warn!(error = %err, "could not read due deliveries");
                    false
                }
            };
            if busy {
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(idle) => {}
            }
        }
    }

    /// Deletes finished records created before `cutoff_ms` (a bounded
    /// number per call; the next pass takes the rest). Pending ones stay.
    pub async fn prune(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        let mut deleted = 0;
        for state in [State::Sent, State::Failed, State::Skipped] {
            while deleted < PRUNE_BATCH {
                let page = self
                    .records
                    .find(
                        &Query::new()
                            .eq("state", state.name())
                            .range("created_at", None, Some(Bound::Exclusive(cutoff_ms.into())))
                            .limit(100),
                    )
                    .await?;
                for item in &page.items {
                    match self.records.delete(&item.id, Some(item.version)).await {
                        Ok(()) => deleted += 1,
                        Err(StoreError::NotFound) | Err(StoreError::VersionConflict) => {}
                        Err(err) => return Err(err),
                    }
                }
                if page.items.len() < 100 {
                    break;
                }
            }
        }
        Ok(deleted)
    }

    /// Claims and starts due attempts; true if a full batch was claimed
    /// (more may be due right away).
    async fn dispatch_due(&self) -> Result<bool, StoreError> {
        let mut claimed = 0;
        // Each channel reads its own due records, as many as it has free
        // send slots: a backlog on one never hides the others' records.
        for via in [Via::Email, Via::Sms, Via::Push] {
            if self.channels.get(via).is_none() {
                continue;
            }
            let free = self.in_flight[slot(via)].available_permits().min(BATCH);
            if free == 0 {
                continue;
            }
            let now = platform::clock::now().millis();
            let due = self
                .records
                .find(
                    &Query::new()
                        .eq("state", State::Pending.name())
                        .eq("channel", via.name())
                        .range("next_attempt_at", None, Some(Bound::Inclusive(now.into())))
                        .sort("next_attempt_at", false)
                        .limit(free),
                )
                .await?;
            for item in due.items {
                let Ok(permit) = self.in_flight[slot(via)].clone().try_acquire_owned() else {
                    break;
                };
                let mut record = item.value;
                record.attempts += 1;
                record.next_attempt_at = now + LEASE.as_millis() as i64;
                record.updated_at = now;
                let claimed_copy = match self
                    .records
                    .replace(&item.id, item.version, record.clone())
                    .await
                {
                    Ok(claimed_copy) => claimed_copy,
                    // Another dispatcher took it.
                    Err(StoreError::VersionConflict) | Err(StoreError::NotFound) => continue,
                    Err(err) => return Err(err),
                };
                claimed += 1;
                let this = self.clone();
                tokio::spawn(async move {
                    // The lease must outlast the attempt, or another
                    // dispatcher would send it again.
                    let outcome =
                        tokio::time::timeout(LEASE / 2, this.attempt(&item.id, via, &record))
                            .await
                            .unwrap_or_else(|_| Outcome::Retryable("the attempt timed out".into()));
                    this.finish(claimed_copy, outcome).await;
                    drop(permit);
                    // A slot is free: more may go out now.
                    this.wake.notify_one();
                });
            }
        }
        Ok(claimed > 0)
    }

    async fn attempt(&self, id: &str, via: Via, record: &Record) -> Outcome {
        let Some(channel) = self.channels.get(via) else {
            return Outcome::Skipped(format!("the {} channel is not configured", via.name()));
        };
        let target = match self.target(via, record).await {
            Ok(target) => target,
            Err(outcome) => return outcome,
        };
        let message = Message {
            id,
            kind: &record.kind,
            title: &record.title,
            body: &record.body,
        };
        match channel.send(&target, message).await {
            Ok(()) => Outcome::Sent,
            Err(SendError::Retryable(e)) => Outcome::Retryable(e),
            Err(SendError::Permanent(e)) => Outcome::Permanent(e),
            Err(SendError::Gone(e)) => {
                if let Some(subscription) = &record.subscription_id {
                    match self.subscriptions.delete(subscription, None).await {
                        Ok(()) | Err(StoreError::NotFound) => {}
                        Err(err) => {
                            tracing::warn!(error = %err, "could not remove a dead push subscription")
                        }
                    }
                }
                Outcome::Permanent(e)
            }
        }
    }

    /// Where this record goes now (contacts are read at send time, so a
    /// changed email or phone number is used).
    async fn target(&self, via: Via, record: &Record) -> Result<Target, Outcome> {
        if via == Via::Push {
            let id = record.subscription_id.as_deref().unwrap_or_default();
            return match self.subscriptions.find_by_id(id).await {
                Ok(Some(s)) => Ok(Target::Push {
                    endpoint: s.value.endpoint,
                    p256dh: s.value.p256dh,
                    auth: s.value.auth,
                }),
                Ok(None) => Err(Outcome::Skipped("the push subscription was removed".into())),
                Err(err) => Err(Outcome::Retryable(format!(
                    "reading the subscription: {err}"
                ))),
            };
        }
        let contact = match self.directory.contact(&record.user_id).await {
            Ok(Some(contact)) => contact,
            Ok(None) => return Err(Outcome::Permanent("no such user".into())),
            Err(status) => {
                return Err(Outcome::Retryable(format!(
                    "looking up the user: {}",
                    status.message()
                )));
            }
        };
        match (via, contact.phone) {
            (Via::Sms, Some(phone)) => Ok(Target::Sms { phone }),
            (Via::Sms, None) => Err(Outcome::Skipped("the user has no phone number".into())),
            _ => Ok(Target::Email {
                address: contact.email,
                name: contact.name,
            }),
        }
    }

    /// Records the outcome of the attempt that claimed `claimed` (the copy
    /// its claim wrote, so the usual case is one write and no read).
    async fn finish(&self, claimed: Versioned<Record>, outcome: Outcome) {
        let id = claimed.id.clone();
        let id = id.as_str();
        let attempts = claimed.value.attempts;
        let state = domain::after_attempt(&outcome, attempts, self.retry.max_attempts);
        let jitter =
            f64::from(u8::from_str_radix(&id_of(&format!("{id}{attempts}"))[..2], 16).unwrap_or(0))
                / 255.0;
        let delay = domain::retry_delay(attempts, self.retry.base, jitter);
        let error = match &outcome {
            Outcome::Sent => None,
            Outcome::Skipped(e) | Outcome::Retryable(e) | Outcome::Permanent(e) => Some(e.clone()),
        };
        // Provider messages often repeat the address or phone number: they
        // stay in the record (ListDeliveries, admins only), not in logs.
        match &outcome {
            Outcome::Sent => tracing::info!(delivery = id, attempts, "delivered"),
            Outcome::Skipped(_) => tracing::info!(delivery = id, "delivery skipped"),
            Outcome::Retryable(_) if state == State::Pending => tracing::warn!(
                delivery = id,
                attempts,
                retry_in_ms = delay.as_millis() as u64,
                "delivery failed, will retry"
            ),
            Outcome::Retryable(_) | Outcome::Permanent(_) => {
                tracing::error!(delivery = id, attempts, "delivery failed for good")
            }
        }
        let result = self
            .records
            .update_from(claimed, |r| {
                // A newer claim (after our lease expired) owns the record now.
                if r.attempts != attempts || r.state != State::Pending.name() {
                    return Err(());
                }
                let now = platform::clock::now().millis();
                r.state = state.name().to_string();
                r.last_error = error.clone();
                r.updated_at = now;
                if state == State::Pending {
                    r.next_attempt_at = now + delay.as_millis() as i64;
                }
                Ok(())
            })
            .await;
        if let Ok(Ok(record)) = &result {
            let counted = match (&outcome, state) {
                (Outcome::Retryable(_), State::Pending) => "retry",
                (Outcome::Sent, _) => "sent",
                (Outcome::Skipped(_), _) => "skipped",
                _ => "failed",
            };
            platform::metrics::count(
                &platform::metrics::DELIVERIES,
                &[&record.value.channel, counted],
            );
        }
        if let Err(err) = result {
            // The lease runs out and the attempt is made again.
            tracing::warn!(delivery = id, error = %err, "could not record a delivery outcome");
        }
    }
}
