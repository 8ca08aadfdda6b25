//! Sessions: login, refresh-token rotation (reuse revokes the family),
//! logout, and the public keys that verify access tokens.

use platform::auth::{Caller, Claims};
use platform::store::{Query, StoreError};
use proto::user::*;
use sha2::Digest;
use tonic::Status;

use super::{UserApi, now};
use crate::domain::{Email, RefreshDecision, RefreshToken, Role, TokenStatus};

const BAD_CREDENTIALS: &str = "invalid email or password";

fn token_hash(token: &str) -> String {
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl UserApi {
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
            expires_at: now().secs() + self.settings.refresh_ttl.as_secs() as i64,
            created_at: now().secs(),
        };
        self.tokens.insert(&token_hash(&refresh), record).await?;
        Ok((access, refresh))
    }

    /// Issues a token pair (in refresh-token `family`, or a new one) and
    /// answers with it the way login and refresh both do.
    async fn sign_in(
        &self,
        user_id: &str,
        role: Role,
        family: Option<String>,
    ) -> Result<LoginResponse, Status> {
        let (access, refresh) = self.issue_tokens(user_id, role, family).await?;
        Ok(LoginResponse {
            access_token: access,
            refresh_token: refresh,
            token_type: "Bearer".into(),
            expires_in: self.settings.access_ttl.as_secs() as u32,
            refresh_expires_in: self.settings.refresh_ttl.as_secs() as u32,
        })
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

    /// `Login`: the same answer, and about the same time, for an unknown
    /// email as for a wrong password.
    pub(super) async fn log_in(&self, r: LoginRequest) -> Result<LoginResponse, Status> {
        let Ok(email) = Email::parse(&r.email) else {
            self.hasher.verify_dummy(&r.password).await?;
            return Err(Status::unauthenticated(BAD_CREDENTIALS));
        };
        let Some(user) = self.find_by_email(&email).await? else {
            self.hasher.verify_dummy(&r.password).await?;
            return Err(Status::unauthenticated(BAD_CREDENTIALS));
        };
        // The account's own limit, whoever calls (the gateway's limits per
        // account and per address come first for its clients).
        let guarded = self
            .users
            .update_from(user, |u| u.login_guard.take_login(now().secs()))
            .await?;
        let user = match guarded {
            Ok(user) => user,
            Err(wait) => {
                tracing::warn!("failed-login limit reached for an account");
                return Err(platform::error::limited(
                    "too many failed logins for this account; try again later",
                    std::time::Duration::from_secs(wait),
                ));
            }
        };
        let check = self
            .hasher
            .verify(&r.password, &user.value.password_hash)
            .await?;
        if !check.matches {
            return Err(Status::unauthenticated(BAD_CREDENTIALS));
        }
        let user = self
            .users
            .modify_from(user, |u| u.login_guard.give_back())
            .await?;
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
        self.sign_in(&user.id, user.value.role, None).await
    }

    /// `RefreshToken`: rotates the presented token within its family.
    pub(super) async fn rotate(&self, token: String) -> Result<RefreshTokenResponse, Status> {
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
        match stored.value.decide(now().secs()) {
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
            .update(&id, |t| match t.decide(now().secs()) {
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
        let LoginResponse {
            access_token,
            refresh_token,
            token_type,
            expires_in,
            refresh_expires_in,
        } = self
            .sign_in(
                &user.id,
                user.value.role,
                Some(stored.value.family_id.clone()),
            )
            .await?;
        Ok(RefreshTokenResponse {
            access_token,
            refresh_token,
            token_type,
            expires_in,
            refresh_expires_in,
        })
    }

    /// `Logout`: ends the session (token family) the caller owns.
    pub(super) async fn log_out(
        &self,
        caller: &Caller,
        token: String,
    ) -> Result<LogoutResponse, Status> {
        if let Ok(stored) = self.tokens.get(&token_hash(&token)).await {
            // Only the owner can end a session; anything else is a no-op.
            if stored.value.user_id == caller.user_id {
                self.revoke_family(&stored.value.family_id).await?;
                // Streams opened with the user's tokens end now rather than
                // at those tokens' expiry.
                let signed_out = platform::auth::SignedOut {
                    user_id: caller.user_id.clone(),
                    at_ms: platform::clock::now().millis(),
                };
                if let Err(err) = self
                    .bus
                    .broadcast(platform::auth::SIGNED_OUT_TOPIC, signed_out.encode())
                    .await
                {
                    tracing::warn!(error = %err, "sign-out not announced; live streams end at their tokens' expiry");
                }
            }
        }
        Ok(LogoutResponse {})
    }

    /// `GetJwks`: the public keys of this service's signing key set.
    pub(super) fn jwks(&self) -> GetJwksResponse {
        let keys = self.keys.jwks.keys.iter().map(Jwk::from).collect();
        GetJwksResponse { keys }
    }
}
