//! gRPC surface of `RecommendationService`: proto <-> domain.
//!
//! RPCs not overridden here answer `UNIMPLEMENTED`.

use proto::recommendation::recommendation_service_server::RecommendationService;

/// The tonic implementation of `shop.recommendation.v1.RecommendationService`.
#[derive(Debug, Default)]
pub struct RecommendationApi {}

#[tonic::async_trait]
impl RecommendationService for RecommendationApi {}
