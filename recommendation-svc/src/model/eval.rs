//! Offline evaluation: held-out cases, ranking metrics (recall, NDCG,
//! coverage) and a training that reports them.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use super::{
    Algorithm, Model, TrainError, TrainParams, TrainingData, UserItems, history_weights, train,
};

/// A held-out case: what the user had, and what they went on to buy.
#[derive(Debug, Clone)]
pub struct TestCase {
    pub user: String,
    pub history: UserItems,
    pub relevant: HashSet<String>,
}

/// Ranking quality over test cases.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    /// hits in the top k / min(k, relevant), averaged over cases.
    pub recall: f64,
    /// Binary-relevance NDCG at k, averaged over cases.
    pub ndcg: f64,
    /// Distinct products recommended / products the model knows.
    pub coverage: f64,
    pub cases: usize,
}

/// Top-k product ids the model serves for a history (bought products are
/// never recommended; personalised first, then popular).
pub fn recommend_ids(model: &Model, history: &UserItems, k: usize) -> Vec<String> {
    let own: HashSet<u32> = history.keys().filter_map(|p| model.index_of(p)).collect();
    let skip = |i: u32| own.contains(&i);
    let mut out = model.score_history(&history_weights(history), &skip, k);
    if out.len() < k {
        let have: HashSet<u32> = out.iter().map(|s| s.item).collect();
        let skip = |i: u32| own.contains(&i) || have.contains(&i);
        let fill = model.popular(None, &skip, k - out.len());
        out.extend(fill);
    }
    out.into_iter()
        .map(|s| model.product(s.item).to_string())
        .collect()
}

/// Recall@k, NDCG@k and coverage of `model` on `cases`.
pub fn evaluate(model: &Model, cases: &[TestCase], k: usize) -> Metrics {
    evaluate_with(cases, k, model.items.len(), |c| {
        recommend_ids(model, &c.history, k)
    })
}

/// The metrics of any recommender (a function from case to ranked ids).
pub fn evaluate_with(
    cases: &[TestCase],
    k: usize,
    catalog: usize,
    mut recommend: impl FnMut(&TestCase) -> Vec<String>,
) -> Metrics {
    let mut m = Metrics::default();
    let mut seen: HashSet<String> = HashSet::new();
    for case in cases.iter().filter(|c| !c.relevant.is_empty()) {
        let ranked = recommend(case);
        let mut hits = 0usize;
        let mut dcg = 0.0;
        for (rank, id) in ranked.iter().take(k).enumerate() {
            if case.relevant.contains(id) {
                hits += 1;
                dcg += 1.0 / ((rank + 2) as f64).log2();
            }
        }
        let ideal: f64 = (0..case.relevant.len().min(k))
            .map(|r| 1.0 / ((r + 2) as f64).log2())
            .sum();
        m.recall += hits as f64 / case.relevant.len().min(k) as f64;
        m.ndcg += dcg / ideal;
        m.cases += 1;
        seen.extend(ranked.into_iter().take(k));
    }
    if m.cases > 0 {
        m.recall /= m.cases as f64;
        m.ndcg /= m.cases as f64;
    }
    m.coverage = if catalog == 0 {
        0.0
    } else {
        seen.len() as f64 / catalog as f64
    };
    m
}

/// A training with its offline check: the latest interaction of every
/// tenth user (with at least three) is held out, the model is trained on
/// the rest, and both it and popularity are scored on the held-out
/// products. The model served is this one: what it misses is a sliver of
/// history, while serving reads each user's full live history anyway.
pub fn train_with_metrics(
    data: &TrainingData,
    params: &TrainParams,
) -> Result<(Model, BTreeMap<String, f64>), TrainError> {
    let started = Instant::now();
    let mut train_data = data.clone();
    let mut cases = Vec::new();
    for (n, user) in train_data.users.iter_mut().enumerate() {
        if n % 10 != 0 || user.len() < 3 {
            continue;
        }
        let Some((latest, _)) = user
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(p, at)| (p.clone(), *at))
        else {
            continue;
        };
        user.remove(&latest);
        cases.push(TestCase {
            user: n.to_string(),
            history: user.clone(),
            relevant: HashSet::from([latest]),
        });
    }
    let model = train(&train_data, params)?;
    let seconds = started.elapsed().as_secs_f64();
    let mut metrics = BTreeMap::new();
    metrics.insert("train_seconds".to_string(), seconds);
    if !cases.is_empty() {
        let m = evaluate(&model, &cases, 10);
        metrics.insert("recall_at_10".into(), m.recall);
        metrics.insert("ndcg_at_10".into(), m.ndcg);
        metrics.insert("coverage_at_10".into(), m.coverage);
        metrics.insert("holdout_users".into(), m.cases as f64);
        if params.algorithm != Algorithm::Popularity {
            let pop = TrainParams {
                algorithm: Algorithm::Popularity,
                ..params.clone()
            };
            let baseline = train(&train_data, &pop)?;
            let b = evaluate(&baseline, &cases, 10);
            metrics.insert("popularity_recall_at_10".into(), b.recall);
            metrics.insert("popularity_ndcg_at_10".into(), b.ndcg);
        }
    }
    Ok((model, metrics))
}
