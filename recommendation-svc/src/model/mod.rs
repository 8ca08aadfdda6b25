//! The models, pure and synchronous (training is CPU work: callers run it
//! off the async runtime).
//!
//! * **Popularity**: distinct buyers per product, each weighted by how
//!   recent their latest interaction is (exponential decay, half-life
//!   [`TrainParams::half_life_days`], relative to the newest interaction in
//!   the data); ranked globally and per category.
//! * **EASE** (Steck, "Embarrassingly Shallow Autoencoders for Sparse
//!   Data", WWW 2019): item-item weights `B = I - P·diag(1/diag(P))` with
//!   `P = (XᵀX + λI)⁻¹`, from a Cholesky factorisation by `faer`. The dense
//!   item×item matrix is bounded: only the [`TrainParams::max_items`] most
//!   bought products enter it (others are still served by popularity), so
//!   memory and time stay bounded when the catalog grows (5,000 items:
//!   ~200 MB and a few seconds while training). What is kept and served
//!   is sparse: each product's [`TrainParams::neighbors`] strongest
//!   positive weights.
//!
//! A user's scores are the sum of the kept weights of the products in
//! their history; each recommendation names the history product that
//! contributed most (`bought_with`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use faer::Mat;
use faer::linalg::solvers::DenseSolveCore as _;

use crate::domain::Reason;

/// Which model a training produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Ease,
    Popularity,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Ease => "ease",
            Algorithm::Popularity => "popularity",
        }
    }

    pub fn parse(s: &str) -> Option<Algorithm> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ease" => Some(Algorithm::Ease),
            "popularity" => Some(Algorithm::Popularity),
            _ => None,
        }
    }
}

/// Knobs of a training, chosen by offline evaluation (the `evaluate`
/// example).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainParams {
    pub algorithm: Algorithm,
    /// L2 regularisation of EASE.
    pub lambda: f64,
    /// Products in the dense EASE solve (the most bought ones).
    pub max_items: usize,
    /// Weights kept per product.
    pub neighbors: usize,
    /// Half-life of the popularity decay.
    pub half_life_days: f64,
}

impl Default for TrainParams {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Ease,
            lambda: 250.0,
            max_items: 5000,
            neighbors: 200,
            half_life_days: 30.0,
        }
    }
}

/// One user's interactions: product id -> latest instant (unix seconds).
pub type UserItems = BTreeMap<String, i64>;

/// What a training reads.
#[derive(Debug, Clone, Default)]
pub struct TrainingData {
    pub users: Vec<UserItems>,
    /// Product id -> category, where known.
    pub categories: HashMap<String, String>,
}

impl TrainingData {
    pub fn interactions(&self) -> usize {
        self.users.iter().map(BTreeMap::len).sum()
    }
}

/// A trained model: everything serving needs, small enough to keep in
/// memory on every replica (a few MB for thousands of products).
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub algorithm: Algorithm,
    /// Product ids; index = position. The EASE products come first.
    pub items: Vec<String>,
    /// Category of each product ("" when unknown).
    pub categories: Vec<String>,
    /// Per product: the strongest (product, weight) pairs, best first;
    /// empty for products outside the EASE set (and for popularity).
    pub neighbors: Vec<Vec<(u32, f32)>>,
    /// (product, decayed popularity), best first.
    pub popular: Vec<(u32, f32)>,
    /// Distinct user-product pairs and users it was trained on.
    pub interactions: u64,
    pub users: u64,
    index: HashMap<String, u32>,
    popular_by_category: HashMap<String, Vec<(u32, f32)>>,
}

/// A scored candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub item: u32,
    pub score: f32,
    pub reason: Reason,
}

impl Model {
    /// Assembles a model and its lookup tables.
    pub fn new(
        algorithm: Algorithm,
        items: Vec<String>,
        categories: Vec<String>,
        neighbors: Vec<Vec<(u32, f32)>>,
        popular: Vec<(u32, f32)>,
        interactions: u64,
        users: u64,
    ) -> Model {
        let index = items
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i as u32))
            .collect();
        let mut popular_by_category: HashMap<String, Vec<(u32, f32)>> = HashMap::new();
        for &(item, score) in &popular {
            if let Some(c) = categories.get(item as usize).filter(|c| !c.is_empty()) {
                popular_by_category
                    .entry(c.clone())
                    .or_default()
                    .push((item, score));
            }
        }
        Model {
            algorithm,
            items,
            categories,
            neighbors,
            popular,
            interactions,
            users,
            index,
            popular_by_category,
        }
    }

    /// A model that knows nothing (serves nothing personalised).
    pub fn empty() -> Model {
        Model::new(Algorithm::Popularity, vec![], vec![], vec![], vec![], 0, 0)
    }

    pub fn index_of(&self, product_id: &str) -> Option<u32> {
        self.index.get(product_id).copied()
    }

    pub fn product(&self, item: u32) -> &str {
        &self.items[item as usize]
    }

    pub fn category(&self, item: u32) -> &str {
        self.categories
            .get(item as usize)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Personalised scores for a history (product id -> weight of that
    /// interaction), best first, at most `k`, skipping `skip`.
    pub fn score_history(
        &self,
        history: &[(String, f32)],
        skip: &dyn Fn(u32) -> bool,
        k: usize,
    ) -> Vec<Scored> {
        // item -> (score, strongest contributor, its contribution)
        let mut acc: HashMap<u32, (f32, u32, f32)> = HashMap::new();
        for (product, weight) in history {
            let Some(i) = self.index_of(product) else {
                continue;
            };
            for &(j, w) in &self.neighbors[i as usize] {
                let c = w * weight;
                let e = acc.entry(j).or_insert((0.0, i, f32::MIN));
                e.0 += c;
                if c > e.2 {
                    e.1 = i;
                    e.2 = c;
                }
            }
        }
        let mut out: Vec<Scored> = acc
            .into_iter()
            .filter(|(j, (s, _, _))| *s > 0.0 && !skip(*j))
            .map(|(j, (s, by, _))| Scored {
                item: j,
                score: s,
                reason: Reason::BoughtWith(self.items[by as usize].clone()),
            })
            .collect();
        top_k(&mut out, k);
        out
    }

    /// Products bought together with `item`, best first.
    pub fn similar(&self, item: u32, k: usize) -> Vec<Scored> {
        self.neighbors[item as usize]
            .iter()
            .filter(|&&(j, w)| j != item && w > 0.0)
            .take(k)
            .map(|&(j, w)| Scored {
                item: j,
                score: w,
                reason: Reason::BoughtWith(self.items[item as usize].clone()),
            })
            .collect()
    }

    /// Most popular products (of `category` when given), skipping `skip`.
    pub fn popular(
        &self,
        category: Option<&str>,
        skip: &dyn Fn(u32) -> bool,
        k: usize,
    ) -> Vec<Scored> {
        let list = match category {
            None => &self.popular,
            Some(c) => match self.popular_by_category.get(c) {
                Some(list) => list,
                None => return vec![],
            },
        };
        list.iter()
            .filter(|(i, _)| !skip(*i))
            .take(k)
            .map(|&(item, score)| Scored {
                item,
                score,
                reason: match category {
                    Some(c) => Reason::PreferredCategory(c.to_string()),
                    None => Reason::Popular,
                },
            })
            .collect()
    }

    /// Bytes the served tables take, roughly.
    pub fn memory_bytes(&self) -> usize {
        let strings: usize = self.items.iter().map(|s| s.len() + 24).sum::<usize>()
            + self.categories.iter().map(|s| s.len() + 24).sum::<usize>();
        let neighbors: usize = self.neighbors.iter().map(|n| n.len() * 8 + 24).sum();
        strings * 2 + neighbors + self.popular.len() * 16
    }
}

fn top_k(v: &mut Vec<Scored>, k: usize) {
    v.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
    v.truncate(k);
}

/// Why a training failed (only a numerical breakdown can).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrainError {
    #[error("the regularised Gram matrix is not positive definite (raise lambda)")]
    NotPositiveDefinite,
}

/// Trains a model. With no interactions it is an empty popularity model.
pub fn train(data: &TrainingData, params: &TrainParams) -> Result<Model, TrainError> {
    let newest = data
        .users
        .iter()
        .flat_map(|u| u.values())
        .copied()
        .max()
        .unwrap_or(0);
    let decay = std::f64::consts::LN_2 / (params.half_life_days.max(0.01) * 86_400.0);
    // Distinct buyers, and decayed popularity, per product.
    let mut buyers: HashMap<&str, (u32, f64)> = HashMap::new();
    for user in &data.users {
        for (product, &at) in user {
            let e = buyers.entry(product).or_default();
            e.0 += 1;
            e.1 += (-(newest - at).max(0) as f64 * decay).exp();
        }
    }
    // Index order: most buyers first, so the EASE set is a prefix.
    let mut items: Vec<(&str, u32, f64)> = buyers.iter().map(|(p, &(n, s))| (*p, n, s)).collect();
    items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let ids: Vec<String> = items.iter().map(|(p, _, _)| p.to_string()).collect();
    let categories: Vec<String> = ids
        .iter()
        .map(|p| data.categories.get(p).cloned().unwrap_or_default())
        .collect();
    let mut popular: Vec<(u32, f32)> = items
        .iter()
        .enumerate()
        .map(|(i, (_, _, s))| (i as u32, *s as f32))
        .collect();
    popular.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));

    let mut neighbors = vec![Vec::new(); ids.len()];
    let n = ids.len().min(params.max_items);
    if params.algorithm == Algorithm::Ease && n > 1 {
        let index: HashMap<&str, usize> = ids[..n]
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_str(), i))
            .collect();
        let weights = ease(data, &index, n, params.lambda)?;
        for (i, row) in weights.into_iter().enumerate() {
            neighbors[i] = strongest(row, i, params.neighbors);
        }
    }
    Ok(Model::new(
        params.algorithm,
        ids,
        categories,
        neighbors,
        popular,
        data.interactions() as u64,
        data.users.len() as u64,
    ))
}

/// The dense EASE solve on the first `n` products: row i holds B[i][j].
fn ease(
    data: &TrainingData,
    index: &HashMap<&str, usize>,
    n: usize,
    lambda: f64,
) -> Result<Vec<Vec<f32>>, TrainError> {
    let mut gram = Mat::<f64>::zeros(n, n);
    let mut row: Vec<usize> = Vec::new();
    for user in &data.users {
        row.clear();
        row.extend(user.keys().filter_map(|p| index.get(p.as_str()).copied()));
        for &a in &row {
            for &b in &row {
                gram[(a, b)] += 1.0;
            }
        }
    }
    for i in 0..n {
        gram[(i, i)] += lambda;
    }
    let llt = gram
        .llt(faer::Side::Lower)
        .map_err(|_| TrainError::NotPositiveDefinite)?;
    drop(gram);
    let p = llt.inverse();
    drop(llt);
    // B[i][j] = -P[i][j] / P[j][j], B[i][i] = 0.
    let diag: Vec<f64> = (0..n).map(|j| p[(j, j)]).collect();
    Ok((0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    if i == j {
                        0.0
                    } else {
                        (-p[(i, j)] / diag[j]) as f32
                    }
                })
                .collect()
        })
        .collect())
}

/// The `k` weights of a row largest in magnitude (negative ones matter:
/// they push down what is rarely bought with the product), best first.
fn strongest(row: Vec<f32>, own: usize, k: usize) -> Vec<(u32, f32)> {
    let mut kept: Vec<(u32, f32)> = row
        .into_iter()
        .enumerate()
        .filter(|&(j, w)| j != own && w != 0.0)
        .map(|(j, w)| (j as u32, w))
        .collect();
    kept.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
    kept.truncate(k);
    kept.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    kept
}

/// How a user's history weighs in scoring: every product counts once.
pub fn history_weights(items: &UserItems) -> Vec<(String, f32)> {
    items.keys().map(|p| (p.clone(), 1.0)).collect()
}

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

/// Binary form of the per-product weights (little-endian: per product a
/// u32 count, then count × (u32 product, f32 weight)).
pub fn encode_neighbors(neighbors: &[Vec<(u32, f32)>]) -> Vec<u8> {
    let total: usize = neighbors.iter().map(|n| 4 + n.len() * 8).sum();
    let mut out = Vec::with_capacity(total);
    for list in neighbors {
        out.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for &(j, w) in list {
            out.extend_from_slice(&j.to_le_bytes());
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    out
}

/// Reads [`encode_neighbors`]' output back for `items` products, checking
/// every index; `None` when the bytes are not such an encoding.
pub fn decode_neighbors(bytes: &[u8], items: usize) -> Option<Vec<Vec<(u32, f32)>>> {
    let mut at = 0usize;
    let u32_at = |at: &mut usize| -> Option<u32> {
        let b = bytes.get(*at..*at + 4)?;
        *at += 4;
        Some(u32::from_le_bytes(b.try_into().ok()?))
    };
    let mut out = Vec::with_capacity(items);
    for _ in 0..items {
        let n = u32_at(&mut at)? as usize;
        if n > items {
            return None;
        }
        let mut list = Vec::with_capacity(n);
        for _ in 0..n {
            let j = u32_at(&mut at)?;
            let w = f32::from_bits(u32_at(&mut at)?);
            if j as usize >= items || !w.is_finite() {
                return None;
            }
            list.push((j, w));
        }
        out.push(list);
    }
    (at == bytes.len()).then_some(out)
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn weights_round_trip_and_garbage_is_refused() {
        let n = vec![vec![(1, 0.5), (2, 0.25)], vec![], vec![(0, 1.0)]];
        let bytes = encode_neighbors(&n);
        assert_eq!(decode_neighbors(&bytes, 3), Some(n));
        assert_eq!(decode_neighbors(&bytes, 2), None);
        assert_eq!(decode_neighbors(&bytes[..bytes.len() - 1], 3), None);
    }
}
