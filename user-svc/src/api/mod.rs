//! gRPC surface of `UserService`: proto <-> domain.

use std::sync::Arc;
use std::time::Duration;

use platform::auth::{Caller, Claims};
use platform::error::{invalid_fields, parse_optional};
use platform::events::outbox::OutboxRelay;
use platform::store::{Collection, Query, StoreError};
use proto::events::UserRegistered;
use proto::events::envelope::Payload;
use proto::user::user_service_server::UserService;
use proto::user::*;
use sha2::Digest;
use tonic::{Request, Response, Status};

use crate::domain::{
    self, AddressExt, Email, FieldError, Password, RefreshDecision, RefreshToken, Role,
    TokenStatus, User,
};
use crate::keys::KeyRing;
use crate::passwords::Hasher;

const BAD_CREDENTIALS: &str = "invalid email or password";

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
}

fn now() -> i64 {
    platform::auth::unix_now() as i64
}

fn timestamp(secs: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    })
}

fn invalid(errors: Vec<FieldError>) -> Status {
    invalid_fields(errors.into_iter().map(|e| (e.field, e.message)))
}

fn token_hash(token: &str) -> String {
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn to_proto(id: &str, user: &User) -> proto::user::User {
    proto::user::User {
        id: id.to_string(),
        email: user.email.clone(),
        name: user.name.clone(),
        role: match user.role {
            Role::Customer => proto::user::Role::Customer as i32,
            Role::Admin => proto::user::Role::Admin as i32,
        },
        phone: user.phone.clone(),
        address: user.address.as_ref().map(proto::common::Address::from),
        created_at: timestamp(user.created_at),
        updated_at: timestamp(user.updated_at),
    }
}

impl UserApi {
    /// Creates a user (staging `user.registered` in the same write) and
    /// publishes the event.
    pub(crate) async fn create_user(
        &self,
        email: Email,
        password: &Password,
        name: String,
        role: Role,
    ) -> Result<(String, User), Status> {
        let password_hash = self.hasher.hash(password.expose()).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let now = now();
        let mut user = User {
            email: email.as_str().to_string(),
            name,
            role,
            password_hash,
            phone: None,
            address: None,
            categories: Vec::new(),
            created_at: now,
            updated_at: now,
            preferences_updated_at: 0,
            outbox: Default::default(),
        };
        let event = platform::events::envelope(
            "user.registered",
            &id,
            "user-svc",
            Payload::UserRegistered(UserRegistered {
                user_id: id.clone(),
                role: role.as_str().to_string(),
            }),
        );
        user.outbox.stage(&event);
        match self.users.insert(&id, user).await {
            Ok(stored) => {
                self.flush(&id).await;
                Ok((id, stored.value))
            }
            Err(StoreError::AlreadyExists { .. }) => {
                Err(Status::already_exists("email is already registered"))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Publishes staged events now; on failure the sweeper retries.
    async fn flush(&self, id: &str) {
        if let Err(err) = self.relay.flush(id).await {
            tracing::warn!(error = %err, user = id, "event publish deferred to the outbox sweeper");
        }
    }

    pub(crate) async fn find_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<platform::store::Versioned<User>>, Status> {
        Ok(self
            .users
            .find_one(Query::new().eq("email", email.as_str()))
            .await?)
    }

    async fn issue_tokens(
        &self,
        user_id: &str,
        role: Role,
        family: Option<String>,
    ) -> Result<(String, String), Status> {
        let claims = Claims::new(
            user_id,
            role.as_str(),
            &self.settings.issuer,
            &self.settings.audience,
            self.settings.access_ttl,
        );
        let access = self.keys.signing.sign(&claims);
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        use base64::Engine as _;
        let refresh = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        let record = RefreshToken {
            user_id: user_id.to_string(),
            family_id: family.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            status: TokenStatus::Active,
            expires_at: now() + self.settings.refresh_ttl.as_secs() as i64,
            created_at: now(),
        };
        self.tokens.insert(&token_hash(&refresh), record).await?;
        Ok((access, refresh))
    }

    async fn revoke_family(&self, family_id: &str) -> Result<(), Status> {
        let query = Query::new().eq("family_id", family_id).limit(100);
        let mut cursor = None;
        loop {
            let page = self.tokens.find(&query.clone().after(cursor)).await?;
            for token in &page.items {
                if token.value.status != TokenStatus::Revoked {
                    let revoked = self
                        .tokens
                        .modify(&token.id, |t| t.status = TokenStatus::Revoked)
                        .await;
                    match revoked {
                        Ok(_) | Err(StoreError::NotFound) => {}
                        Err(err) => return Err(err.into()),
                    }
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(()),
            }
        }
    }

    fn token_pair(&self, access: String, refresh: String) -> (String, String, String, u32, u32) {
        (
            access,
            refresh,
            "Bearer".into(),
            self.settings.access_ttl.as_secs() as u32,
            self.settings.refresh_ttl.as_secs() as u32,
        )
    }

    async fn caller_user(
        &self,
        caller: &Caller,
    ) -> Result<platform::store::Versioned<User>, Status> {
        match self.users.get(&caller.user_id).await {
            Ok(user) => Ok(user),
            Err(StoreError::NotFound) => Err(Status::not_found("user not found")),
            Err(err) => Err(err.into()),
        }
    }

    /// Makes sure `email` is an admin with `password` (bootstrap).
    pub async fn ensure_admin(&self, email: &str, password: &str) -> anyhow::Result<()> {
        let email =
            Email::parse(email).map_err(|e| anyhow::anyhow!("ADMIN_EMAIL {}", e.message))?;
        let password = Password::parse(password)
            .map_err(|e| anyhow::anyhow!("ADMIN_PASSWORD {}", e.message))?;
        match self
            .find_by_email(&email)
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        {
            None => {
                self.create_user(
                    email.clone(),
                    &password,
                    "Administrator".into(),
                    Role::Admin,
                )
                .await
                .map_err(|s| anyhow::anyhow!("creating the admin: {}", s.message()))?;
                tracing::info!(email = email.as_str(), "admin account created");
            }
            Some(existing) => {
                let matches = self
                    .hasher
                    .verify(password.expose(), &existing.value.password_hash)
                    .await?
                    .matches;
                let hash = if matches {
                    None
                } else {
                    Some(self.hasher.hash(password.expose()).await?)
                };
                if existing.value.role != Role::Admin || hash.is_some() {
                    self.users
                        .modify(&existing.id, |u| {
                            u.role = Role::Admin;
                            if let Some(h) = &hash {
                                u.password_hash = h.clone();
                            }
                            u.updated_at = now();
                        })
                        .await?;
                    tracing::info!(email = email.as_str(), "admin account updated");
                }
            }
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl UserService for UserApi {
    #[tracing::instrument(skip_all)]
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let r = request.into_inner();
        let mut errors = Vec::new();
        let email = Email::parse(&r.email).map_err(|e| errors.push(e)).ok();
        let password = Password::parse(&r.password)
            .map_err(|e| errors.push(e))
            .ok();
        let name = domain::parse_name(&r.name).map_err(|e| errors.push(e)).ok();
        let (Some(email), Some(password), Some(name)) = (email, password, name) else {
            return Err(invalid(errors));
        };
        let (id, user) = self
            .create_user(email, &password, name, Role::Customer)
            .await?;
        Ok(Response::new(RegisterResponse {
            user: Some(to_proto(&id, &user)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let r = request.into_inner();
        let Ok(email) = Email::parse(&r.email) else {
            self.hasher.verify_dummy(&r.password).await?;
            return Err(Status::unauthenticated(BAD_CREDENTIALS));
        };
        let Some(user) = self.find_by_email(&email).await? else {
            self.hasher.verify_dummy(&r.password).await?;
            return Err(Status::unauthenticated(BAD_CREDENTIALS));
        };
        let check = self
            .hasher
            .verify(&r.password, &user.value.password_hash)
            .await?;
        if !check.matches {
            return Err(Status::unauthenticated(BAD_CREDENTIALS));
        }
        if check.needs_rehash
            && let Ok(fresh) = self.hasher.hash(&r.password).await
        {
            let updated = self
                .users
                .modify(&user.id, |u| u.password_hash = fresh.clone())
                .await;
            if let Err(err) = updated {
                tracing::warn!(error = %err, "password rehash not stored");
            }
        }
        let (access, refresh) = self.issue_tokens(&user.id, user.value.role, None).await?;
        let (access_token, refresh_token, token_type, expires_in, refresh_expires_in) =
            self.token_pair(access, refresh);
        Ok(Response::new(LoginResponse {
            access_token,
            refresh_token,
            token_type,
            expires_in,
            refresh_expires_in,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn refresh_token(
        &self,
        request: Request<RefreshTokenRequest>,
    ) -> Result<Response<RefreshTokenResponse>, Status> {
        let token = request.into_inner().refresh_token;
        let rejected = || Status::unauthenticated("invalid or expired refresh token");
        if token.is_empty() || token.len() > 200 {
            return Err(rejected());
        }
        let id = token_hash(&token);
        let stored = match self.tokens.get(&id).await {
            Ok(stored) => stored,
            Err(StoreError::NotFound) => return Err(rejected()),
            Err(err) => return Err(err.into()),
        };
        match stored.value.decide(now()) {
            RefreshDecision::Reject => return Err(rejected()),
            RefreshDecision::ReuseDetected => {
                tracing::warn!(family = %stored.value.family_id, "refresh token reuse: revoking the family");
                self.revoke_family(&stored.value.family_id).await?;
                return Err(rejected());
            }
            RefreshDecision::Rotate => {}
        }
        // Rotate with CAS: of two concurrent uses, one wins and the other
        // counts as reuse.
        let rotated = self
            .tokens
            .update(&id, |t| match t.decide(now()) {
                RefreshDecision::Rotate => {
                    t.status = TokenStatus::Rotated;
                    Ok(())
                }
                other => Err(other),
            })
            .await?;
        if let Err(decision) = rotated {
            if decision == RefreshDecision::ReuseDetected {
                self.revoke_family(&stored.value.family_id).await?;
            }
            return Err(rejected());
        }
        let user = match self.users.get(&stored.value.user_id).await {
            Ok(user) => user,
            Err(StoreError::NotFound) => return Err(rejected()),
            Err(err) => return Err(err.into()),
        };
        let (access, refresh) = self
            .issue_tokens(
                &user.id,
                user.value.role,
                Some(stored.value.family_id.clone()),
            )
            .await?;
        let (access_token, refresh_token, token_type, expires_in, refresh_expires_in) =
            self.token_pair(access, refresh);
        Ok(Response::new(RefreshTokenResponse {
            access_token,
            refresh_token,
            token_type,
            expires_in,
            refresh_expires_in,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let token = request.into_inner().refresh_token;
        if let Ok(stored) = self.tokens.get(&token_hash(&token)).await {
            // Only the owner can end a session; anything else is a no-op.
            if stored.value.user_id == caller.user_id {
                self.revoke_family(&stored.value.family_id).await?;
            }
        }
        Ok(Response::new(LogoutResponse {}))
    }

    async fn get_profile(
        &self,
        request: Request<GetProfileRequest>,
    ) -> Result<Response<GetProfileResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let user = self.caller_user(&caller).await?;
        Ok(Response::new(GetProfileResponse {
            user: Some(to_proto(&user.id, &user.value)),
        }))
    }

    async fn update_profile(
        &self,
        request: Request<UpdateProfileRequest>,
    ) -> Result<Response<UpdateProfileResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let r = request.into_inner();
        let mut errors = Vec::new();
        let name = parse_optional(r.name.as_deref(), domain::parse_name, &mut errors);
        // An empty phone removes it.
        let phone = match r.phone.as_deref().map(str::trim) {
            None => None,
            Some("") => Some(None),
            Some(p) => domain::parse_phone(p)
                .map(|p| Some(Some(p)))
                .map_err(|e| errors.push(e))
                .ok()
                .flatten(),
        };
        let address = match r.address {
            None => None,
            Some(a) => domain::Address::from(a)
                .parse()
                .map_err(|e| errors.extend(e))
                .ok(),
        };
        if !errors.is_empty() {
            return Err(invalid(errors));
        }
        let updated = self
            .users
            .modify(&caller.user_id, |u| {
                if let Some(name) = &name {
                    u.name = name.clone();
                }
                if let Some(phone) = &phone {
                    u.phone = phone.clone();
                }
                if r.clear_address {
                    u.address = None;
                }
                if let Some(address) = &address {
                    u.address = Some(address.clone());
                }
                u.updated_at = now();
            })
            .await;
        let user = match updated {
            Ok(user) => user,
            Err(StoreError::NotFound) => return Err(Status::not_found("user not found")),
            Err(err) => return Err(err.into()),
        };
        Ok(Response::new(UpdateProfileResponse {
            user: Some(to_proto(&user.id, &user.value)),
        }))
    }

    async fn get_jwks(
        &self,
        _: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        let keys = self.keys.jwks.keys.iter().map(Jwk::from).collect();
        Ok(Response::new(GetJwksResponse { keys }))
    }

    async fn update_preferences(
        &self,
        request: Request<UpdatePreferencesRequest>,
    ) -> Result<Response<UpdatePreferencesResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let categories = domain::parse_categories(&request.into_inner().categories)
            .map_err(|e| invalid(vec![e]))?;
        let updated = self
            .users
            .modify(&caller.user_id, |u| {
                u.categories = categories.clone();
                u.preferences_updated_at = now();
            })
            .await;
        let user = match updated {
            Ok(user) => user,
            Err(StoreError::NotFound) => return Err(Status::not_found("user not found")),
            Err(err) => return Err(err.into()),
        };
        Ok(Response::new(UpdatePreferencesResponse {
            preferences: Some(Preferences {
                categories: user.value.categories,
                updated_at: timestamp(user.value.preferences_updated_at),
            }),
        }))
    }

    async fn get_preferences(
        &self,
        request: Request<GetPreferencesRequest>,
    ) -> Result<Response<GetPreferencesResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let user = self.caller_user(&caller).await?;
        Ok(Response::new(GetPreferencesResponse {
            preferences: Some(Preferences {
                categories: user.value.categories,
                updated_at: timestamp(user.value.preferences_updated_at),
            }),
        }))
    }

    async fn get_user(
        &self,
        request: Request<GetUserRequest>,
    ) -> Result<Response<GetUserResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let user_id = request.into_inner().user_id;
        // Services read contact details (notification-svc: email, phone).
        if user_id != caller.user_id {
            caller.require_admin_or_service()?;
        }
        match self.users.get(&user_id).await {
            Ok(user) => Ok(Response::new(GetUserResponse {
                user: Some(to_proto(&user.id, &user.value)),
            })),
            Err(StoreError::NotFound) | Err(StoreError::Invalid(_)) => {
                Err(Status::not_found("user not found"))
            }
            Err(err) => Err(err.into()),
        }
    }
}
