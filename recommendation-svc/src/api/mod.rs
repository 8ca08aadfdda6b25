//! gRPC surface of `RecommendationService`: proto <-> domain.
//!
//! Recommendation handlers are in `recommend`, the interaction import in
//! `import`; model status and user preferences are here.

mod import;
mod recommend;

use platform::auth::Caller;
use proto::recommendation::recommendation_service_server::RecommendationService;
use proto::recommendation::{
    GetModelStatusRequest, GetModelStatusResponse, GetRecommendationsRequest,
    GetRecommendationsResponse, GetSimilarProductsRequest, GetSimilarProductsResponse,
    ImportSummary, Interaction, ModelInfo, TrainModelRequest, TrainModelResponse,
    UpdateUserPreferencesRequest, UpdateUserPreferencesResponse,
};
use tonic::{Request, Response, Status, Streaming};

use crate::catalog::Catalog;
use crate::domain::{self, InvalidRequest};
use crate::store::{ModelMeta, RecStore};
use crate::training::{Serving, Trainer};

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

/// A customer only for itself; admins for anyone.
fn may_act_for(caller: &Caller, user_id: &str) -> Result<(), Status> {
    if caller.is_admin() || caller.user_id == user_id {
        Ok(())
    } else {
        Err(Status::permission_denied("only for your own account"))
    }
}

fn model_info(meta: &ModelMeta) -> ModelInfo {
    ModelInfo {
        model_version: meta.version.clone(),
        algorithm: meta.algorithm.clone(),
        trained_at: Some(proto::ext::from_millis(meta.trained_at)),
        interaction_count: meta.interactions,
        product_count: meta.products,
        user_count: meta.users,
        metrics: meta.metrics.clone().into_iter().collect(),
    }
}

#[tonic::async_trait]
impl RecommendationService for RecommendationApi {
    async fn get_recommendations(
        &self,
        request: Request<GetRecommendationsRequest>,
    ) -> Result<Response<GetRecommendationsResponse>, Status> {
        self.recommendations(request).await
    }

    async fn get_similar_products(
        &self,
        request: Request<GetSimilarProductsRequest>,
    ) -> Result<Response<GetSimilarProductsResponse>, Status> {
        self.similar_products(request).await
    }

    async fn train_model(
        &self,
        request: Request<TrainModelRequest>,
    ) -> Result<Response<TrainModelResponse>, Status> {
        self.mesh
            .caller(request.metadata())
            .await?
            .require_admin()?;
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
            .require_admin()?;
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
        self.import(request).await
    }
}
