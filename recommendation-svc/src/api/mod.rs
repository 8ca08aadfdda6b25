//! gRPC surface of `RecommendationService`: proto <-> domain.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use platform::auth::Caller;
use proto::recommendation::recommendation_service_server::RecommendationService;
use proto::recommendation::{
    GetModelStatusRequest, GetModelStatusResponse, GetRecommendationsRequest,
    GetRecommendationsResponse, GetSimilarProductsRequest, GetSimilarProductsResponse,
    ImportSummary, Interaction, ModelInfo, RejectedInteraction, ScoredProduct, TrainModelRequest,
    TrainModelResponse, UpdateUserPreferencesRequest, UpdateUserPreferencesResponse, interaction,
    reason,
};
use tonic::{Request, Response, Status, Streaming};

use crate::catalog::{self, Catalog};
use crate::domain::{self, History, ImportedPurchase, InvalidRequest, Rating, Reason};
use crate::model::{Model, Scored};
use crate::store::{ModelMeta, RecStore};
use crate::training::{Serving, Trainer};

/// Interactions an import buffers before writing them.
const IMPORT_BATCH: usize = 5000;
/// Refusals an import summary lists.
const MAX_REJECTIONS: usize = 100;
/// How much a preferred category lifts a personalised score.
const PREFERENCE_BOOST: f32 = 1.25;

/// The tonic implementation of `shop.recommendation.v1.RecommendationService`.
#[derive(Debug, Clone)]
pub struct RecommendationApi {
    pub store: RecStore,
    pub catalog: Catalog,
    pub serving: Serving,
    pub trainer: Trainer,
    /// Verifies who calls.
    pub mesh: platform::auth::MeshAuth,
}

fn invalid(err: InvalidRequest) -> Status {
    let field = match &err {
        InvalidRequest::Limit => "limit",
        InvalidRequest::Missing(f) | InvalidRequest::Field { field: f, .. } => f,
    };
    platform::error::invalid_fields([(field, err.to_string())])
}

/// A customer only for itself; admins and services for anyone.
fn may_act_for(caller: &Caller, user_id: &str) -> Result<(), Status> {
    if caller.is_admin() || caller.is_service() || caller.user_id == user_id {
        Ok(())
    } else {
        Err(Status::permission_denied("only for your own account"))
    }
}

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

fn timestamp(millis: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn model_info(meta: &ModelMeta) -> ModelInfo {
    ModelInfo {
        model_version: meta.version.clone(),
        algorithm: meta.algorithm.clone(),
        trained_at: Some(timestamp(meta.trained_at)),
        interaction_count: meta.interactions,
        product_count: meta.products,
        user_count: meta.users,
        metrics: meta.metrics.clone().into_iter().collect(),
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

    /// Stores a batch of validated imports, one profile write per user.
    async fn flush_import(
        &self,
        batch: &mut HashMap<String, Vec<Interaction>>,
    ) -> Result<(), Status> {
        for (user, interactions) in batch.drain() {
            self.store
                .update_profile(&user, |profile| {
                    let mut purchases = Vec::new();
                    for i in &interactions {
                        let at = i
                            .occurred_at
                            .as_ref()
                            .map(|t| t.seconds)
                            .unwrap_or_default();
                        if !i.category.is_empty() {
                            profile
                                .imported_categories
                                .insert(i.product_id.clone(), i.category.clone());
                        }
                        if i.kind == interaction::Kind::Rating as i32 {
                            profile.rate(
                                &i.product_id,
                                Rating {
                                    rating: i.rating,
                                    at,
                                },
                            );
                        } else {
                            purchases.push(ImportedPurchase {
                                product_id: i.product_id.clone(),
                                quantity: i.quantity,
                                at,
                            });
                        }
                    }
                    profile.import(purchases);
                })
                .await?;
        }
        Ok(())
    }
}

/// Checks one imported interaction; normalises ids and category.
fn validate_interaction(mut i: Interaction) -> Result<Interaction, String> {
    i.user_id = domain::id("user_id", &i.user_id).map_err(|e| e.to_string())?;
    i.product_id = domain::id("product_id", &i.product_id).map_err(|e| e.to_string())?;
    match interaction::Kind::try_from(i.kind) {
        Ok(interaction::Kind::Purchase) if i.quantity >= 1 => {}
        Ok(interaction::Kind::Purchase) => return Err("quantity must be at least 1".into()),
        Ok(interaction::Kind::Rating) if (1..=5).contains(&i.rating) => {}
        Ok(interaction::Kind::Rating) => return Err("rating must be 1..5".into()),
        _ => return Err("kind must be PURCHASE or RATING".into()),
    }
    let now = crate::store::now_millis() / 1000;
    match &i.occurred_at {
        Some(t) if t.seconds > 0 && t.seconds <= now + 86_400 => {}
        Some(_) => return Err("occurred_at must be after 1970 and not in the future".into()),
        None => return Err("occurred_at is required".into()),
    }
    if !i.category.is_empty() {
        i.category = domain::category(&i.category).map_err(|e| e.to_string())?;
    }
    Ok(i)
}

#[tonic::async_trait]
impl RecommendationService for RecommendationApi {
    async fn get_recommendations(
        &self,
        request: Request<GetRecommendationsRequest>,
    ) -> Result<Response<GetRecommendationsResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let r = request.into_inner();
        let user_id = domain::id("user_id", &r.user_id).map_err(invalid)?;
        may_act_for(&caller, &user_id)?;
        let limit = domain::limit(r.limit).map_err(invalid)?;
        let category = match r.category.trim() {
            "" => None,
            c => Some(domain::category(c).map_err(invalid)?),
        };
        let (orders, profile) =
            tokio::try_join!(self.store.orders_of(&user_id), self.store.profile(&user_id))?;
        let history = History::build(&orders, &profile);
        let (current, model_version) = self.current_model();
        let empty = Model::empty();
        let model = current.as_ref().map(|c| &c.model).unwrap_or(&empty);

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

    async fn get_similar_products(
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

    async fn train_model(
        &self,
        request: Request<TrainModelRequest>,
    ) -> Result<Response<TrainModelResponse>, Status> {
        self.mesh
            .caller(request.metadata())
            .await?
            .require_admin_or_service()?;
        let started = self.trainer.start().await?;
        Ok(Response::new(TrainModelResponse {
            model_version: started.version,
            trained_at: None,
            interaction_count: 0,
            already_running: started.already_running,
        }))
    }

    async fn get_model_status(
        &self,
        request: Request<GetModelStatusRequest>,
    ) -> Result<Response<GetModelStatusResponse>, Status> {
        self.mesh
            .caller(request.metadata())
            .await?
            .require_admin_or_service()?;
        // A model another replica just trained is served here too.
        if let Err(err) = self.serving.refresh(&self.store).await {
            tracing::warn!(error = %err, "loading the current model failed");
        }
        let training_version = self.store.training_in_progress().await?.unwrap_or_default();
        Ok(Response::new(GetModelStatusResponse {
            current: self.serving.get().map(|c| model_info(&c.meta)),
            training_version,
        }))
    }

    async fn update_user_preferences(
        &self,
        request: Request<UpdateUserPreferencesRequest>,
    ) -> Result<Response<UpdateUserPreferencesResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let r = request.into_inner();
        let user_id = domain::id("user_id", &r.user_id).map_err(invalid)?;
        may_act_for(&caller, &user_id)?;
        let categories = domain::preferences(&r.categories).map_err(invalid)?;
        let profile = self
            .store
            .update_profile(&user_id, |p| p.categories = categories.clone())
            .await?;
        Ok(Response::new(UpdateUserPreferencesResponse {
            categories: profile.categories,
        }))
    }

    async fn import_interactions(
        &self,
        request: Request<Streaming<Interaction>>,
    ) -> Result<Response<ImportSummary>, Status> {
        self.mesh
            .caller(request.metadata())
            .await?
            .require_admin()?;
        let mut stream = request.into_inner();
        let mut summary = ImportSummary::default();
        let mut batch: HashMap<String, Vec<Interaction>> = HashMap::new();
        let mut buffered = 0usize;
        let mut users = HashSet::new();
        while let Some(item) = stream.message().await? {
            summary.received += 1;
            let line = item.line;
            match validate_interaction(item) {
                Ok(i) => {
                    summary.imported += 1;
                    users.insert(i.user_id.clone());
                    batch.entry(i.user_id.clone()).or_default().push(i);
                    buffered += 1;
                    if buffered >= IMPORT_BATCH {
                        self.flush_import(&mut batch).await?;
                        buffered = 0;
                    }
                }
                Err(reason) => {
                    summary.rejected += 1;
                    if summary.rejections.len() < MAX_REJECTIONS {
                        summary
                            .rejections
                            .push(RejectedInteraction { line, reason });
                    }
                }
            }
        }
        self.flush_import(&mut batch).await?;
        summary.users = users.len() as u64;
        tracing::info!(
            received = summary.received,
            imported = summary.imported,
            rejected = summary.rejected,
            "interactions imported"
        );
        Ok(Response::new(summary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interaction() -> Interaction {
        Interaction {
            user_id: "u1".into(),
            product_id: "p1".into(),
            kind: interaction::Kind::Purchase as i32,
            quantity: 2,
            rating: 0,
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_300_000_000,
                nanos: 0,
            }),
            category: "Gifts".into(),
            line: 7,
        }
    }

    #[test]
    fn imported_interactions_are_checked_field_by_field() {
        let ok = validate_interaction(interaction()).unwrap();
        assert_eq!(ok.category, "gifts");
        let cases: Vec<(fn(&mut Interaction), &str)> = vec![
            (|i| i.user_id.clear(), "user_id"),
            (|i| i.product_id = "a\u{7}".into(), "product_id"),
            (|i| i.quantity = 0, "quantity"),
            (|i| i.kind = 0, "kind"),
            (
                |i| {
                    i.kind = interaction::Kind::Rating as i32;
                    i.rating = 6;
                },
                "rating",
            ),
            (|i| i.occurred_at = None, "occurred_at"),
            (
                |i| {
                    i.occurred_at = Some(prost_types::Timestamp {
                        seconds: 99_999_999_999,
                        nanos: 0,
                    })
                },
                "occurred_at",
            ),
        ];
        for (spoil, field) in cases {
            let mut i = interaction();
            spoil(&mut i);
            let err = validate_interaction(i).unwrap_err();
            assert!(err.contains(field), "{err} should name {field}");
        }
    }
}
