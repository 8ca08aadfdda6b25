//! Unit tests of the order fold, request checks, history and profiles.

use super::*;

fn created() -> OrderFact {
    OrderFact::Created {
        user_id: "u".into(),
        lines: vec![
            Line {
                product_id: "b".into(),
                quantity: 1,
            },
            Line {
                product_id: "a".into(),
                quantity: 2,
            },
            Line {
                product_id: "b".into(),
                quantity: 3,
            },
        ],
        placed_at: 100,
    }
}

fn paid() -> OrderFact {
    OrderFact::Paid {
        user_id: "u".into(),
    }
}

fn fold(facts: &[OrderFact]) -> OrderRecord {
    let mut r = OrderRecord::default();
    for f in facts {
        r.apply(f);
    }
    r
}

#[test]
fn a_paid_order_is_a_purchase_whatever_the_order_of_its_events() {
    let a = fold(&[created(), paid()]);
    let b = fold(&[paid(), created(), paid()]);
    assert_eq!(a, b);
    assert!(a.is_purchase());
    assert_eq!(a.lines.len(), 2, "lines of one product are merged");
    assert_eq!(a.lines[1].quantity, 4);
    assert!(!fold(&[created()]).is_purchase(), "unpaid is no purchase");
}

#[test]
fn cancellation_and_full_refund_take_the_purchase_back_in_any_order() {
    let cancel = OrderFact::Cancelled {
        user_id: "u".into(),
    };
    assert!(!fold(&[cancel.clone(), created(), paid()]).is_purchase());
    assert!(!fold(&[created(), paid(), cancel]).is_purchase());
    let full = OrderFact::Refunded {
        user_id: "u".into(),
        fully: true,
    };
    let partial = OrderFact::Refunded {
        user_id: "u".into(),
        fully: false,
    };
    assert!(!fold(&[full.clone(), paid(), created()]).is_purchase());
    assert!(fold(&[created(), paid(), partial.clone()]).is_purchase());
    assert!(!fold(&[created(), partial, paid(), full]).is_purchase());
}

#[test]
fn applying_a_fact_twice_changes_nothing_the_second_time() {
    let mut r = OrderRecord::default();
    assert!(r.apply(&created()));
    assert!(!r.apply(&created()));
    assert!(r.apply(&paid()));
    assert!(!r.apply(&paid()));
}

#[test]
fn limits_outside_the_range_are_refused() {
    assert_eq!(limit(0), Ok(10));
    assert_eq!(limit(1), Ok(1));
    assert_eq!(limit(100), Ok(100));
    assert_eq!(limit(101), Err(InvalidRequest::Limit));
}

#[test]
fn preferences_are_normalised_and_bounded() {
    let p = preferences(&["Books".into(), " books ".into(), "Games".into()]).unwrap();
    assert_eq!(p, vec!["books".to_string(), "games".to_string()]);
    assert!(preferences(&["".into()]).is_err());
    assert!(preferences(&["a\u{0}b".into()]).is_err());
    let many: Vec<String> = (0..21).map(|i| format!("c{i}")).collect();
    assert!(preferences(&many).is_err());
}

#[test]
fn history_counts_purchases_imports_and_good_ratings_but_not_bad_ones() {
    let order = fold(&[created(), paid()]);
    let pending = fold(&[OrderFact::Created {
        user_id: "u".into(),
        lines: vec![Line {
            product_id: "pending".into(),
            quantity: 1,
        }],
        placed_at: 5,
    }]);
    let mut profile = Profile::default();
    profile.import([ImportedPurchase {
        product_id: "old".into(),
        quantity: 1,
        at: 7,
    }]);
    profile.rate("liked", Rating { rating: 5, at: 9 });
    profile.rate("a", Rating { rating: 1, at: 9 });
    let h = History::build([&order, &pending], &profile);
    let items: Vec<&str> = h.items.keys().map(String::as_str).collect();
    assert_eq!(items, vec!["b", "liked", "old"]);
    assert!(
        h.bought.contains("a"),
        "a bought product is never recommended back"
    );
    assert!(!h.bought.contains("liked"));
    assert!(!h.items.contains_key("pending"));
}

#[test]
fn the_latest_rating_wins_and_imports_are_idempotent() {
    let mut p = Profile::default();
    assert!(p.rate("x", Rating { rating: 5, at: 10 }));
    assert!(!p.rate("x", Rating { rating: 1, at: 5 }));
    assert_eq!(p.ratings["x"].rating, 5);
    let purchase = ImportedPurchase {
        product_id: "x".into(),
        quantity: 2,
        at: 3,
    };
    p.import([purchase.clone()]);
    p.import([purchase]);
    assert_eq!(p.imported.len(), 1);
}
