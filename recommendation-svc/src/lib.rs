//! recommendation-svc: interaction log, model training, recommendations.
//!
//! [`build`] binds the configured address and serves `shop.recommendation.v1.RecommendationService`
//! with health and reflection; [`serve`] does the same on a listener the caller
//! bound (port 0 in tests, or the all-in-one binary wiring peers first).

pub mod api;

use platform::{Config, Running, ServiceId};
use proto::recommendation::recommendation_service_server::RecommendationServiceServer;

/// Which service this crate is.
pub const SERVICE: ServiceId = ServiceId::Recommendation;

/// Binds `GRPC_ADDR` (default `127.0.0.1:{port}`) and serves.
pub async fn build(config: Config) -> anyhow::Result<Running> {
    let listener = platform::grpc::bind(config.grpc_listen_addr(SERVICE)).await?;
    let deps = platform::runtime::Deps::connect(&config).await?;
    serve(config, listener, deps).await
}

/// Serves on an already-bound listener.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    _deps: platform::runtime::Deps,
) -> anyhow::Result<Running> {
    let routes = tonic::service::Routes::new(RecommendationServiceServer::new(
        api::RecommendationApi::default(),
    ));
    platform::grpc::GrpcServer::new(SERVICE, &config.grpc, proto::FILE_DESCRIPTOR_SET)
        .serve(routes, listener)
        .await
}
