//! Unit tests of training, scoring and the ranking metrics.

use std::collections::HashSet;

use super::*;

fn user(items: &[&str]) -> UserItems {
    items.iter().map(|p| (p.to_string(), 0)).collect()
}

/// Three groups of products always bought together, plus a product
/// everybody buys.
fn clustered() -> TrainingData {
    let mut users = Vec::new();
    for _ in 0..20 {
        users.push(user(&["a1", "a2", "a3", "pop"]));
        users.push(user(&["b1", "b2", "b3", "pop"]));
        users.push(user(&["c1", "c2", "pop"]));
    }
    TrainingData {
        users,
        categories: HashMap::from([("b1".to_string(), "books".to_string())]),
    }
}

#[test]
fn ease_recommends_what_is_bought_together() {
    let model = train(&clustered(), &TrainParams::default()).unwrap();
    let recs = recommend_ids(&model, &user(&["a1", "a2"]), 2);
    assert_eq!(recs[0], "a3", "{recs:?}");
    let pop = train(
        &clustered(),
        &TrainParams {
            algorithm: Algorithm::Popularity,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(recommend_ids(&pop, &user(&["a1", "a2"]), 1), vec!["pop"]);
    let b1 = model.index_of("b1").unwrap();
    let similar: Vec<&str> = model
        .similar(b1, 2)
        .iter()
        .map(|s| model.product(s.item))
        .collect();
    assert!(
        similar.contains(&"b2") && similar.contains(&"b3"),
        "{similar:?}"
    );
    assert!(model.similar(b1, 10).iter().all(|s| s.item != b1));
}

#[test]
fn the_reason_names_the_strongest_history_product() {
    let model = train(&clustered(), &TrainParams::default()).unwrap();
    let skip = |_: u32| false;
    let recs = model.score_history(&[("c1".into(), 1.0)], &skip, 1);
    assert_eq!(model.product(recs[0].item), "c2");
    assert_eq!(recs[0].reason, Reason::BoughtWith("c1".into()));
}

#[test]
fn the_dense_model_is_bounded_to_the_most_bought_products() {
    let params = TrainParams {
        max_items: 3,
        ..Default::default()
    };
    let model = train(&clustered(), &params).unwrap();
    assert_eq!(model.items[0], "pop");
    let with_weights = model.neighbors.iter().filter(|n| !n.is_empty()).count();
    assert!(with_weights <= 3);
    assert!(model.neighbors[3..].iter().all(Vec::is_empty));
    assert_eq!(model.items.len(), 9, "popularity still knows every product");
}

#[test]
fn popularity_decays_with_age_and_knows_categories() {
    let mut data = TrainingData::default();
    for _ in 0..3 {
        data.users.push(UserItems::from([("old".to_string(), 0)]));
    }
    for _ in 0..2 {
        data.users
            .push(UserItems::from([("new".to_string(), 200 * 86_400)]));
    }
    data.categories.insert("new".into(), "toys".into());
    let model = train(&data, &TrainParams::default()).unwrap();
    let skip = |_: u32| false;
    let top = model.popular(None, &skip, 2);
    assert_eq!(
        model.product(top[0].item),
        "new",
        "recent beats many-but-old"
    );
    let toys = model.popular(Some("toys"), &skip, 5);
    assert_eq!(toys.len(), 1);
    assert_eq!(toys[0].reason, Reason::PreferredCategory("toys".into()));
    assert!(model.popular(Some("none"), &skip, 5).is_empty());
}

#[test]
fn no_interactions_train_an_empty_model() {
    let model = train(&TrainingData::default(), &TrainParams::default()).unwrap();
    assert!(model.items.is_empty());
    assert!(recommend_ids(&model, &user(&["x"]), 5).is_empty());
    let (_, metrics) =
        train_with_metrics(&TrainingData::default(), &TrainParams::default()).unwrap();
    assert!(metrics.contains_key("train_seconds"));
    assert!(!metrics.contains_key("recall_at_10"));
}

#[test]
fn metrics_are_computed_against_known_answers() {
    let cases = vec![
        TestCase {
            user: "1".into(),
            history: UserItems::new(),
            relevant: HashSet::from(["x".to_string()]),
        },
        TestCase {
            user: "2".into(),
            history: UserItems::new(),
            relevant: HashSet::from(["z".to_string()]),
        },
    ];
    let m = evaluate_with(&cases, 2, 4, |c| {
        if c.user == "1" {
            vec!["y".into(), "x".into()]
        } else {
            vec!["y".into(), "w".into()]
        }
    });
    assert!((m.recall - 0.5).abs() < 1e-9);
    assert!((m.ndcg - 0.5 * (1.0 / 3f64.log2())).abs() < 1e-9);
    assert!((m.coverage - 0.75).abs() < 1e-9);
}
