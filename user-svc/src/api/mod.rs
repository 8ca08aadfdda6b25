//! gRPC surface of `UserService`: proto <-> domain.
//!
//! The tonic methods check who calls and delegate: `accounts` (register,
//! profile, preferences), `tokens` (login, refresh, logout, JWKS), `admin`
//! (bootstrap of the admin account); `convert` maps to proto.

use std::sync::Arc;
use std::time::Duration;

use platform::Component;
use platform::error::invalid;
use platform::events::outbox::OutboxRelay;
use platform::store::{Collection, Query, StoreError};
use proto::user::user_service_server::UserService;
use proto::user::*;
use tonic::{Request, Response, Status};

use crate::domain::{Email, RefreshToken, User};
use crate::keys::KeyRing;
use crate::passwords::Hasher;

mod accounts;
mod admin;
mod convert;
mod tokens;

/// Token lifetimes and claims.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

/// The tonic implementation of `shop.user.v1.UserService`.
#[derive(Clone)]
pub struct UserApi {
    pub(crate) users: Collection<User>,
    pub(crate) tokens: Collection<RefreshToken>,
    pub(crate) relay: OutboxRelay<User>,
    pub(crate) hasher: Hasher,
    pub(crate) keys: Arc<KeyRing>,
    /// Verifies who calls (users' tokens against this service's own keys).
    pub(crate) mesh: platform::auth::MeshAuth,
    pub(crate) settings: TokenSettings,
    /// Where sign-outs are announced to the live streams.
    pub(crate) bus: Arc<dyn platform::events::EventBus>,
    /// Accounts registered lately by callers other than the gateway.
    pub(crate) direct_signups: Arc<std::sync::Mutex<crate::domain::Window>>,
}

use platform::clock::now;

/// A user that is not there is NotFound; other store errors pass through.
fn missing_user(err: StoreError) -> Status {
    match err {
        StoreError::NotFound => Status::not_found("user not found"),
        other => other.into(),
    }
}

impl UserApi {
    pub(crate) async fn find_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<platform::store::Versioned<User>>, Status> {
        Ok(self
            .users
            .find_one(Query::new().eq("email", email.as_str()))
            .await?)
    }
}

#[tonic::async_trait]
impl UserService for UserApi {
    #[tracing::instrument(skip_all)]
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        // The gateway limits sign-ups per client address; anyone else who
        // reaches this port shares a small allowance.
        let caller = self.mesh.optional_caller(request.metadata()).await?;
        if !caller.is_some_and(|c| c.is_from(Component::GATEWAY) || c.is_admin()) {
            let taken = self
                .direct_signups
                .lock()
                .map_err(|_| Status::internal("sign-up limiter poisoned"))?
                .take(now().secs(), crate::domain::DIRECT_SIGNUPS_PER_MINUTE, 60);
            if let Err(wait) = taken {
                return Err(platform::error::limited(
                    "too many accounts registered directly; register through the gateway",
                    std::time::Duration::from_secs(wait),
                ));
            }
        }
        self.register_customer(request.into_inner())
            .await
            .map(Response::new)
    }

    #[tracing::instrument(skip_all)]
    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        self.log_in(request.into_inner()).await.map(Response::new)
    }

    #[tracing::instrument(skip_all)]
    async fn refresh_token(
        &self,
        request: Request<RefreshTokenRequest>,
    ) -> Result<Response<RefreshTokenResponse>, Status> {
        let token = request.into_inner().refresh_token;
        self.rotate(token).await.map(Response::new)
    }

    #[tracing::instrument(skip_all)]
    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let token = request.into_inner().refresh_token;
        self.log_out(&caller, token).await.map(Response::new)
    }

    async fn get_profile(
        &self,
        request: Request<GetProfileRequest>,
    ) -> Result<Response<GetProfileResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        self.profile(&caller).await.map(Response::new)
    }

    async fn update_profile(
        &self,
        request: Request<UpdateProfileRequest>,
    ) -> Result<Response<UpdateProfileResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        self.update_own_profile(&caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_jwks(
        &self,
        _: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        Ok(Response::new(self.jwks()))
    }

    async fn update_preferences(
        &self,
        request: Request<UpdatePreferencesRequest>,
    ) -> Result<Response<UpdatePreferencesResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        self.update_own_preferences(&caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_preferences(
        &self,
        request: Request<GetPreferencesRequest>,
    ) -> Result<Response<GetPreferencesResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        self.own_preferences(&caller).await.map(Response::new)
    }

    async fn get_user(
        &self,
        request: Request<GetUserRequest>,
    ) -> Result<Response<GetUserResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let user_id = request.into_inner().user_id;
        // notification-svc reads contact details (email, phone).
        if user_id != caller.user_id {
            caller.require_admin_or(&[Component::NOTIFICATION])?;
        }
        self.user(&user_id).await.map(Response::new)
    }
}
