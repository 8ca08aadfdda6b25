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
//!
//! Training is in `train`, offline evaluation in `eval`, the stored
//! form of the weights in `encoding`.

mod encoding;
mod eval;
mod train;

use std::collections::{BTreeMap, HashMap};

use crate::domain::Reason;

pub use encoding::{decode_neighbors, encode_neighbors};
pub use eval::{Metrics, TestCase, evaluate, evaluate_with, recommend_ids, train_with_metrics};
pub use train::{TrainError, train};

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

/// How a user's history weighs in scoring: every product counts once.
pub fn history_weights(items: &UserItems) -> Vec<(String, f32)> {
    items.keys().map(|p| (p.clone(), 1.0)).collect()
}

#[cfg(test)]
mod tests;
