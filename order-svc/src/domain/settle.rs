//! Settling a payment on an order: what a success or a failure reported by
//! the payment call or by an event does to it. Pure; the saga applies these
//! in one CAS write.

use super::{Order, OrderEvent, Step};

/// A payment that succeeded, as order-svc learnt it.
#[derive(Debug, Clone, Copy)]
pub struct Success<'a> {
    pub payment_id: &'a str,
    /// What was captured, in minor units of `currency`.
    pub amount: i64,
    pub currency: &'a str,
    /// The Idempotency-Key of the attempt, when the payment call itself
    /// learnt it.
    pub key: Option<&'a str>,
    /// The event that told it, when an event did.
    pub event_id: Option<&'a str>,
}

/// What a success did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The order is PAID: its stock is committed, its attempt over.
    Paid,
    /// The order no longer took this payment (cancelled or expired
    /// meanwhile, paid already, or the wrong amount): it is refunded.
    Refunding,
    /// Known already (the same payment or event): nothing changed.
    Unchanged,
}

impl Order {
    /// Applies a successful payment at `now`; `step_id` names the step it
    /// adds (a commit or a refund).
    pub fn settle_success(&mut self, paid: Success<'_>, now: i64, step_id: String) -> Settled {
        if paid
            .event_id
            .is_some_and(|e| self.applied_events.iter().any(|x| x == e))
            || self.payment_id == paid.payment_id
            || self.compensated.iter().any(|p| p == paid.payment_id)
        {
            return Settled::Unchanged;
        }
        let attempt_key = paid
            .key
            .map(str::to_string)
            .or_else(|| self.payment_attempt.as_ref().map(|a| a.key.clone()))
            .unwrap_or_default();
        let matches =
            paid.amount == self.total && paid.currency.eq_ignore_ascii_case(&self.currency);
        let settled = if self.is_open() && matches {
            if self
                .apply(OrderEvent::PaymentSucceeded, paid.event_id)
                .is_err()
            {
                return Settled::Unchanged;
            }
            self.payment_id = paid.payment_id.to_string();
            self.end_payment(&attempt_key, paid.payment_id);
            self.close();
            self.steps.add(Step::CommitStock, step_id, now);
            Settled::Paid
        } else {
            if self.is_open() {
                self.attention.push(format!(
                    "payment {} captured {} {} for a total of {} {}; refunded",
                    paid.payment_id, paid.amount, paid.currency, self.total, self.currency
                ));
                let _ = self.apply(OrderEvent::PaymentFailed, None);
            }
            self.end_payment(&attempt_key, paid.payment_id);
            self.compensated.push(paid.payment_id.to_string());
            self.steps.add(
                Step::Refund {
                    payment_id: paid.payment_id.to_string(),
                    key: format!("compensate:{}", paid.payment_id),
                },
                step_id,
                now,
            );
            if let Some(e) = paid.event_id {
                self.applied_events.push(e.to_string());
            }
            Settled::Refunding
        };
        self.updated_at = now;
        settled
    }

    /// Applies a failed payment at `now`: the order may be paid again.
    /// `attempt` is the (key, payment) of the call that learnt it; an event
    /// alone leaves an attempt under way alone. Whether anything changed.
    pub fn settle_failure(
        &mut self,
        attempt: Option<(&str, &str)>,
        event_id: Option<&str>,
        now: i64,
    ) -> bool {
        let mut changed = match attempt {
            Some((key, payment_id)) => {
                self.end_payment(key, payment_id);
                true
            }
            None if self.live_attempt(now).is_some() => return false,
            None => false,
        };
        // A failure after a success (or a cancel), or one applied before,
        // changes nothing.
        if matches!(self.apply(OrderEvent::PaymentFailed, event_id), Ok(true)) {
            self.updated_at = now;
            changed = true;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::{Settled, Success};
    use crate::domain::{Attempt, Order, OrderStatus as S, Step};

    const NOW: i64 = 1_000_000;

    fn order(status: S) -> Order {
        Order {
            status,
            total: 700,
            currency: "USD".into(),
            expires_at: Some(NOW + 60_000),
            ..Order::default()
        }
    }

    fn success(payment_id: &'static str, amount: i64) -> Success<'static> {
        Success {
            payment_id,
            amount,
            currency: "usd",
            key: Some("k1"),
            event_id: None,
        }
    }

    #[test]
    fn a_success_settles_by_the_orders_state_and_the_amount() {
        // (status before, amount, outcome, status after, the step it adds)
        let refund = |p: &str| Step::Refund {
            payment_id: p.into(),
            key: format!("compensate:{p}"),
        };
        let table = [
            (
                S::PendingPayment,
                700,
                Settled::Paid,
                S::Paid,
                Some(Step::CommitStock),
            ),
            (
                S::PaymentFailed,
                700,
                Settled::Paid,
                S::Paid,
                Some(Step::CommitStock),
            ),
            (
                S::PendingPayment,
                699,
                Settled::Refunding,
                S::PaymentFailed,
                Some(refund("p1")),
            ),
            (
                S::PendingPayment,
                701,
                Settled::Refunding,
                S::PaymentFailed,
                Some(refund("p1")),
            ),
            (
                S::Cancelled,
                700,
                Settled::Refunding,
                S::Cancelled,
                Some(refund("p1")),
            ),
            (
                S::Paid,
                700,
                Settled::Refunding,
                S::Paid,
                Some(refund("p1")),
            ),
            (
                S::Refunded,
                700,
                Settled::Refunding,
                S::Refunded,
                Some(refund("p1")),
            ),
            (
                S::Shipped,
                700,
                Settled::Refunding,
                S::Shipped,
                Some(refund("p1")),
            ),
        ];
        for (before, amount, outcome, after, step) in table {
            let mut o = order(before);
            o.payment_attempt = Some(Attempt {
                key: "k1".into(),
                started_at: NOW,
            });
            let got = o.settle_success(success("p1", amount), NOW, "s1".into());
            let case = format!("{before:?} paid {amount}");
            assert_eq!(got, outcome, "{case}");
            assert_eq!(o.status, after, "{case}");
            assert_eq!(
                o.steps.items.first().map(|p| p.step.clone()),
                step,
                "{case}"
            );
            assert_eq!(o.payment_attempt, None, "{case}: the attempt is over");
            assert_eq!(
                o.finished_attempt("k1").map(|a| a.payment_id.as_str()),
                Some("p1")
            );
            if outcome == Settled::Paid {
                assert_eq!(o.payment_id, "p1");
                assert_eq!(o.expires_at, None, "{case}: a paid order never expires");
            } else {
                assert_eq!(o.compensated, vec!["p1".to_string()], "{case}");
                assert_eq!(o.payment_id, "", "{case}");
            }
            assert_eq!(o.updated_at, NOW);
        }
    }

    #[test]
    fn a_success_known_before_changes_nothing() {
        let mut o = order(S::PendingPayment);
        assert_eq!(
            o.settle_success(success("p1", 700), NOW, "s1".into()),
            Settled::Paid
        );
        let paid = o.clone();
        // The same payment again, from the call or from its event.
        for event_id in [None, Some("e1")] {
            let again = Success {
                event_id,
                ..success("p1", 700)
            };
            assert_eq!(
                o.settle_success(again, NOW + 1, "s2".into()),
                Settled::Unchanged
            );
        }
        assert_eq!(o.steps, paid.steps);
        // A refunded stray payment, reported again.
        let mut o = order(S::Cancelled);
        o.settle_success(success("p2", 700), NOW, "s1".into());
        assert_eq!(
            o.settle_success(success("p2", 700), NOW, "s2".into()),
            Settled::Unchanged
        );
        assert_eq!(o.steps.items.len(), 1, "one refund");
        // An event applied before.
        let mut o = order(S::PendingPayment);
        o.applied_events.push("e9".into());
        let seen = Success {
            event_id: Some("e9"),
            ..success("p3", 700)
        };
        assert_eq!(o.settle_success(seen, NOW, "s1".into()), Settled::Unchanged);
        assert_eq!(o.status, S::PendingPayment);
    }

    #[test]
    fn a_failure_frees_the_order_to_be_paid_again() {
        // (status, attempt under way, reported by the call, changed, status after)
        let table = [
            (S::PendingPayment, false, false, true, S::PaymentFailed),
            (S::PendingPayment, true, false, false, S::PendingPayment),
            (S::PendingPayment, true, true, true, S::PaymentFailed),
            // Another failure of a payable order: recorded (its time).
            (S::PaymentFailed, false, false, true, S::PaymentFailed),
            (S::PaymentFailed, false, true, true, S::PaymentFailed),
            (S::Paid, false, false, false, S::Paid),
            (S::Cancelled, false, false, false, S::Cancelled),
        ];
        for (before, live, by_call, changed, after) in table {
            let mut o = order(before);
            if live {
                o.payment_attempt = Some(Attempt {
                    key: "k1".into(),
                    started_at: NOW - 10,
                });
            }
            let attempt = by_call.then_some(("k1", "p1"));
            let case = format!("{before:?} live={live} by_call={by_call}");
            assert_eq!(o.settle_failure(attempt, None, NOW), changed, "{case}");
            assert_eq!(o.status, after, "{case}");
            if by_call {
                assert_eq!(o.payment_attempt, None, "{case}");
                assert!(o.finished_attempt("k1").is_some(), "{case}");
            }
        }
        // An event applied before changes nothing.
        let mut o = order(S::PendingPayment);
        assert!(o.settle_failure(None, Some("e1"), NOW));
        let once = o.clone();
        assert!(!o.settle_failure(None, Some("e1"), NOW + 5));
        assert_eq!(o.updated_at, once.updated_at);
    }
}
