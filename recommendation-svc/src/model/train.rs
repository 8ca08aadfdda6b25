//! Training: distinct buyers and decayed popularity per product, and the
//! dense EASE solve on the most bought ones, kept sparse.

use std::collections::HashMap;

use faer::Mat;
use faer::linalg::solvers::DenseSolveCore as _;

use super::{Algorithm, Model, TrainParams, TrainingData};

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
