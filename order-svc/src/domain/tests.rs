//! The order status machine's transition table, and the order's rules
//! for payment attempts, cancels, steps and request validation.

use super::OrderEvent as E;
use super::OrderStatus as S;
use super::*;

#[test]
fn every_allowed_transition() {
    let allowed = [
        (S::PendingPayment, E::PaymentSucceeded, S::Paid),
        (S::PendingPayment, E::PaymentFailed, S::PaymentFailed),
        (S::PendingPayment, E::Cancel, S::Cancelled),
        (S::PaymentFailed, E::PaymentSucceeded, S::Paid),
        (S::PaymentFailed, E::PaymentFailed, S::PaymentFailed),
        (S::PaymentFailed, E::Cancel, S::Cancelled),
        (S::Paid, E::Refunded, S::Refunded),
        (S::Paid, E::Shipped, S::Shipped),
        (S::Shipped, E::Delivered, S::Delivered),
    ];
    for (from, event, to) in allowed {
        assert_eq!(transition(from, event), Ok(to), "{from:?} + {event:?}");
    }
    // Every other pair is forbidden.
    let mut forbidden = 0;
    for from in S::ALL {
        for event in E::ALL {
            if !allowed.iter().any(|(f, e, _)| *f == from && *e == event) {
                assert_eq!(
                    transition(from, event),
                    Err(TransitionError { from, event }),
                    "{from:?} + {event:?}"
                );
                forbidden += 1;
            }
        }
    }
    assert_eq!(forbidden, 7 * 6 - allowed.len());
}

#[test]
fn terminal_states_accept_nothing() {
    for from in [S::Delivered, S::Cancelled, S::Refunded] {
        for event in E::ALL {
            assert!(transition(from, event).is_err(), "{from:?} + {event:?}");
        }
    }
}

fn open_order(expires_at: i64) -> Order {
    let mut order = sample();
    order.expires_at = Some(expires_at);
    order
}

#[test]
fn a_payment_attempt_excludes_cancel_and_expiry_while_it_is_live() {
    let mut order = open_order(10_000);
    assert_eq!(order.plan_cancel(0), Ok(CancelPlan::Cancel));
    order.begin_payment("k1", 1_000).unwrap();
    assert_eq!(
        order.plan_cancel(2_000),
        Err(CancelRefusal::PaymentInProgress)
    );
    assert!(
        !order.is_expired(15_000),
        "past its time, but the attempt is live"
    );
    assert_eq!(
        order.begin_payment("k2", 2_000),
        Err(PayRefusal::InProgress)
    );
    assert_eq!(
        order.begin_payment("k1", 2_000),
        Ok(()),
        "a retry of the same attempt"
    );
    // Once the attempt is stale, cancel and expiry go ahead; a late
    // success is then compensated by the caller.
    let stale = 1_000 + ATTEMPT_LIVE_MS;
    assert_eq!(order.plan_cancel(stale), Ok(CancelPlan::Cancel));
    assert!(order.is_expired(stale));
}

#[test]
fn a_cancelled_or_expired_order_takes_no_payment() {
    let mut order = open_order(10_000);
    assert_eq!(order.begin_payment("k", 10_000), Err(PayRefusal::Expired));
    order.status = S::Cancelled;
    assert_eq!(
        order.begin_payment("k", 0),
        Err(PayRefusal::NotPayable(S::Cancelled))
    );
    order.status = S::Paid;
    assert_eq!(
        order.begin_payment("k", 0),
        Err(PayRefusal::NotPayable(S::Paid))
    );
}

#[test]
fn finished_attempts_are_remembered_for_replays() {
    let mut order = open_order(10_000);
    order.begin_payment("k1", 0).unwrap();
    order.end_payment("k1", "p1");
    assert!(order.payment_attempt.is_none());
    assert_eq!(order.finished_attempt("k1").unwrap().payment_id, "p1");
    assert!(order.finished_attempt("k2").is_none());
    order.end_payment("k1", "p2");
    assert_eq!(
        order.finished_attempt("k1").unwrap().payment_id,
        "p1",
        "the first answer stays"
    );
}

#[test]
fn cancel_plans_by_state() {
    let mut order = open_order(10_000);
    for (status, plan) in [
        (S::PendingPayment, Ok(CancelPlan::Cancel)),
        (S::PaymentFailed, Ok(CancelPlan::Cancel)),
        (S::Paid, Ok(CancelPlan::VoidThenRefund)),
        (S::Shipped, Err(CancelRefusal::Shipped)),
        (S::Delivered, Err(CancelRefusal::Shipped)),
        (S::Cancelled, Ok(CancelPlan::Nothing)),
        (S::Refunded, Ok(CancelPlan::Nothing)),
    ] {
        order.status = status;
        assert_eq!(order.plan_cancel(0), plan, "{status:?}");
    }
    order.status = S::Paid;
    order.steps.add(
        Step::CancelPaid {
            reason: reason::CUSTOMER.into(),
        },
        "s1".into(),
        0,
    );
    assert_eq!(
        order.plan_cancel(0),
        Ok(CancelPlan::Nothing),
        "already under way"
    );
}

#[test]
fn steps_are_added_once_and_removed_by_id() {
    let mut steps = Steps::default();
    steps.add(Step::CommitStock, "a".into(), 0);
    steps.add(Step::CommitStock, "b".into(), 1);
    assert_eq!(steps.count, 1, "an equal step is already pending");
    steps.add(Step::ReleaseStock, "c".into(), 2);
    assert_eq!(steps.count, 2);
    assert!(steps.remove("a") && !steps.remove("a"));
    assert_eq!(steps.count, 1);
    assert!(steps.contains("c") && !steps.is_empty());
    let json = serde_json::to_value(&steps).unwrap();
    assert_eq!(json["items"][0]["kind"], "release_stock");
    assert_eq!(serde_json::from_value::<Steps>(json).unwrap(), steps);
}

fn sample() -> Order {
    Order {
        user_id: "u".into(),
        currency: "USD".into(),
        total: 100,
        ..Order::default()
    }
}

#[test]
fn an_event_id_applies_once() {
    let mut order = sample();
    assert_eq!(order.apply(E::PaymentFailed, Some("ev1")), Ok(true));
    assert_eq!(order.apply(E::PaymentFailed, Some("ev1")), Ok(false));
    assert_eq!(order.apply(E::PaymentSucceeded, Some("ev2")), Ok(true));
    assert_eq!(order.status, S::Paid);
    assert!(order.apply(E::Cancel, Some("ev3")).is_err());
}

#[test]
fn requests_are_validated() {
    let address = Address {
        name: "A".into(),
        line1: "1 St".into(),
        city: "X".into(),
        postal_code: "1".into(),
        country: "us".into(),
        ..Default::default()
    };
    assert_eq!(
        validate_request(&[Line::new("p", 1)], Some(&address), "", 1000)
            .unwrap()
            .country,
        "US"
    );
    let errors = validate_request(&[], None, &"x".repeat(1001), 1000).unwrap_err();
    let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "items",
            "shipping_address.name",
            "shipping_address.line1",
            "shipping_address.city",
            "shipping_address.postal_code",
            "shipping_address.country",
            "notes"
        ]
    );
    let errors = validate_request(
        &[Line::new("p", 0), Line::new("", 1001)],
        Some(&address),
        "",
        1000,
    )
    .unwrap_err();
    let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "items[0].quantity",
            "items[1].product_id",
            "items[1].quantity"
        ]
    );
    assert!(validate_request(&vec![Line::new("p", 1); 51], Some(&address), "", 1000).is_err());
    // Each product once: two lines of one product would pass the per-line
    // cap twice.
    let twice = validate_request(
        &[Line::new("p", 100), Line::new("q", 1), Line::new("p", 100)],
        Some(&address),
        "",
        100,
    )
    .unwrap_err();
    assert_eq!(twice.len(), 1);
    assert_eq!(twice[0].field, "items[2].product_id");
    for notes in ["n\u{0}", "a\u{7}b", "\u{9b}"] {
        let errors = validate_request(&[Line::new("p", 1)], Some(&address), notes, 10).unwrap_err();
        assert_eq!(errors[0].field, "notes", "{notes:?}");
    }
    assert!(
        validate_request(
            &[Line::new("p", 1)],
            Some(&address),
            "ring twice\n\tthanks",
            10
        )
        .is_ok()
    );
    let long_name = Address {
        name: "n".repeat(101),
        ..address
    };
    let errors = validate_request(&[Line::new("p", 1)], Some(&long_name), "", 1000).unwrap_err();
    assert_eq!(
        errors,
        [FieldError::new(
            "shipping_address.name",
            "must be at most 100 characters"
        )]
    );
}
