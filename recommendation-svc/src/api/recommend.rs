//! Recommendations: GetRecommendations and GetSimilarProducts, from model
//! scores through the catalog check to the ranked list.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use proto::recommendation::{
    GetRecommendationsRequest, GetRecommendationsResponse, GetSimilarProductsRequest,
    GetSimilarProductsResponse, ScoredProduct, reason,
};
use tonic::{Request, Response, Status};

use super::{RecommendationApi, invalid, may_act_for};
use crate::catalog;
use crate::domain::{self, History, Reason};
use crate::model::{Model, Scored};

/// How much a preferred category lifts a personalised score.
const PREFERENCE_BOOST: f32 = 1.25;

/// A candidate product before the catalog check.
struct Candidate {
    product_id: String,
    score: f32,
    reason: Reason,
    personal: bool,
}

fn reason_proto(reason: &Reason) -> proto::recommendation::Reason {
    let (kind, product_id, category) = match reason {
        Reason::BoughtWith(p) => (reason::Kind::BoughtWith, p.clone(), String::new()),
        Reason::Popular => (reason::Kind::Popular, String::new(), String::new()),
        Reason::PreferredCategory(c) => (reason::Kind::PreferredCategory, String::new(), c.clone()),
        Reason::SameCategory(c) => (reason::Kind::SameCategory, String::new(), c.clone()),
    };
    proto::recommendation::Reason {
        kind: kind as i32,
        product_id,
        category,
    }
}

/// Final list: personalised first (boosted by preference), then the
/// fallbacks in the order given; only what the catalog says can be bought;
/// scores decrease with rank.
fn rank(
    candidates: Vec<Candidate>,
    products: &HashMap<String, Arc<catalog::Listing>>,
    preferred: &HashSet<String>,
    category: Option<&str>,
    limit: usize,
) -> Vec<ScoredProduct> {
    let mut personal = Vec::new();
    let mut rest = Vec::new();
    let mut seen = HashSet::new();
    for mut c in candidates {
        let Some(p) = products.get(&c.product_id) else {
            continue;
        };
        let product_category = &p.category;
        if !p.buyable
            || category.is_some_and(|want| want != product_category)
            || !seen.insert(c.product_id.clone())
        {
            continue;
        }
        if c.personal {
            if preferred.contains(product_category) {
                c.score *= PREFERENCE_BOOST;
            }
            personal.push(c);
        } else {
            rest.push(c);
        }
    }
    personal.sort_by(|a, b| b.score.total_cmp(&a.score));
    personal
        .into_iter()
        .chain(rest)
        .take(limit)
        .enumerate()
        .map(|(rank, c)| ScoredProduct {
            product_id: c.product_id,
            score: if c.personal {
                f64::from(c.score)
            } else {
                1.0 / (rank as f64 + 2.0)
            },
            reason: Some(reason_proto(&c.reason)),
        })
        .collect()
}

fn candidates_from(
    model: &Model,
    scored: Vec<Scored>,
    personal: bool,
) -> impl Iterator<Item = Candidate> + '_ {
    scored.into_iter().map(move |s| Candidate {
        product_id: model.product(s.item).to_string(),
        score: s.score,
        reason: s.reason,
        personal,
    })
}

impl RecommendationApi {
    fn current_model(&self) -> (Option<std::sync::Arc<crate::training::Current>>, String) {
        let current = self.serving.get();
        let version = current
            .as_ref()
            .map(|c| c.meta.version.clone())
            .unwrap_or_default();
        (current, version)
    }

    /// GetRecommendations: personalised scores, then the user's preferred
    /// categories and overall popularity as fallbacks.
    pub(super) async fn recommendations(
        &self,
        request: Request<GetRecommendationsRequest>,
    ) -> Result<Response<GetRecommendationsResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let r = request.into_inner();
        // No user: a visitor without an account gets what is popular.
        let user_id = match r.user_id.as_str() {
            "" => None,
            id => {
                let id = domain::id("user_id", id).map_err(invalid)?;
                may_act_for(&caller, &id)?;
                Some(id)
            }
        };
        let limit = domain::limit(r.limit).map_err(invalid)?;
        let category = match r.category.trim() {
            "" => None,
            c => Some(domain::category(c).map_err(invalid)?),
        };
        let (orders, profile) = match &user_id {
            Some(id) => tokio::try_join!(self.store.orders_of(id), self.store.profile(id))?,
            None => (Vec::new(), Default::default()),
        };
        let history = History::build(&orders, &profile);
        let (current, model_version) = self.current_model();
        // A model that knows no purchase yet: popularity counted live.
        let live;
        let model: &Model = match current.as_ref().filter(|c| c.model.interactions > 0) {
            Some(c) => &c.model,
            None => {
                live = self.trainer.live_popularity().await;
                &live
            }
        };

        let bought: HashSet<u32> = history
            .bought
            .iter()
            .filter_map(|p| model.index_of(p))
            .collect();
        let wrong_category = |i: u32| {
            category
                .as_deref()
                .is_some_and(|want| !model.category(i).is_empty() && model.category(i) != want)
        };
        let skip = |i: u32| bought.contains(&i) || wrong_category(i);
        // Enough candidates that the catalog check rarely leaves fewer than
        // `limit`, all checked in one batched call.
        let pool = (limit * 3).clamp(30, catalog::BATCH);
        let weights: Vec<(String, f32)> = history.items.keys().map(|p| (p.clone(), 1.0)).collect();
        let personal = model.score_history(&weights, &skip, pool);
        let preferred: Vec<String> = match &category {
            Some(c) => vec![c.clone()],
            None => profile.categories.clone(),
        };
        let mut candidates: Vec<Candidate> = candidates_from(model, personal, true).collect();
        for c in &preferred {
            candidates.extend(candidates_from(
                model,
                model.popular(Some(c), &skip, pool),
                false,
            ));
        }
        if category.is_none() {
            candidates.extend(candidates_from(
                model,
                model.popular(None, &skip, pool),
                false,
            ));
        }
        let mut ids: Vec<String> = Vec::new();
        let mut unique = HashSet::new();
        for c in &candidates {
            if !history.bought.contains(&c.product_id) && unique.insert(c.product_id.clone()) {
                ids.push(c.product_id.clone());
            }
        }
        ids.truncate(catalog::BATCH);
        let products = self.catalog.lookup(&ids).await?;
        let candidates = candidates
            .into_iter()
            .filter(|c| !history.bought.contains(&c.product_id))
            .collect();
        let preferred: HashSet<String> = profile.categories.iter().cloned().collect();
        let products = rank(
            candidates,
            &products,
            &preferred,
            category.as_deref(),
            limit,
        );
        let fallback = !products.iter().any(|p| {
            p.reason
                .as_ref()
                .is_some_and(|r| r.kind == reason::Kind::BoughtWith as i32)
        });
        Ok(Response::new(GetRecommendationsResponse {
            products,
            model_version,
            fallback,
        }))
    }

    /// GetSimilarProducts: what is bought together with the product, else
    /// products of its category.
    pub(super) async fn similar_products(
        &self,
        request: Request<GetSimilarProductsRequest>,
    ) -> Result<Response<GetSimilarProductsResponse>, Status> {
        let r = request.into_inner();
        let product_id = domain::id("product_id", &r.product_id).map_err(invalid)?;
        let limit = domain::limit(r.limit).map_err(invalid)?;
        let (current, model_version) = self.current_model();
        if let Some(current) = &current {
            let model = &current.model;
            if let Some(item) = model.index_of(&product_id) {
                let similar = model.similar(item, catalog::BATCH - 1);
                if !similar.is_empty() {
                    let mut ids: Vec<String> = vec![product_id.clone()];
                    ids.extend(similar.iter().map(|s| model.product(s.item).to_string()));
                    let products = self.catalog.lookup(&ids).await?;
                    if !products.contains_key(&product_id) {
                        return Err(Status::not_found("no such product"));
                    }
                    let found = rank(
                        candidates_from(model, similar, true).collect(),
                        &products,
                        &HashSet::new(),
                        None,
                        limit,
                    );
                    if !found.is_empty() {
                        return Ok(Response::new(GetSimilarProductsResponse {
                            products: found,
                            model_version,
                            fallback: false,
                        }));
                    }
                }
            }
        }
        // Nothing bought together: same-category products.
        let products = self
            .catalog
            .lookup(std::slice::from_ref(&product_id))
            .await?;
        let product = products
            .get(&product_id)
            .ok_or_else(|| Status::not_found("no such product"))?;
        let category = product.category.clone();
        let same = self
            .catalog
            .in_category(&category, limit as u32 + 1)
            .await?;
        let products = same
            .into_iter()
            .filter(|p| p.id != product_id)
            .take(limit)
            .enumerate()
            .map(|(rank, p)| ScoredProduct {
                product_id: p.id,
                score: 1.0 / (rank as f64 + 2.0),
                reason: Some(reason_proto(&Reason::SameCategory(category.to_lowercase()))),
            })
            .collect();
        Ok(Response::new(GetSimilarProductsResponse {
            products,
            model_version,
            fallback: true,
        }))
    }
}
