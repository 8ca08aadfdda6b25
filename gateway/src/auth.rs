//! Access-token verification in the gateway: tokens are checked locally
//! against the JWKS fetched from user-svc (cached; fetched again, at most
//! once a second, when a token names an unknown `kid`, as after a key
//! rotation).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use platform::auth::{Claims, JwkSet, TokenError, TokenVerifier};
use platform::grpc::GrpcChannel;
use proto::user::user_service_client::UserServiceClient;

use crate::extract::Authentication;
use crate::state::AppState;

const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Jwks {
    client: UserServiceClient<GrpcChannel>,
    verifier: RwLock<Arc<TokenVerifier>>,
    /// Held while fetching, so concurrent requests with a new `kid` wait
    /// for one fetch instead of failing or fetching again.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    issuer: String,
    audience: String,
}

/// Why a token could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    Token(TokenError),
    /// The key set could not be fetched.
    Unavailable,
}

impl Jwks {
    pub fn new(channel: GrpcChannel, issuer: &str, audience: &str) -> Self {
        Self {
            client: UserServiceClient::new(channel),
            verifier: RwLock::new(Arc::new(TokenVerifier::new(issuer, audience))),
            last_fetch: tokio::sync::Mutex::new(None),
            issuer: issuer.into(),
            audience: audience.into(),
        }
    }

    fn current(&self) -> Arc<TokenVerifier> {
        self.verifier.read().expect("jwks lock").clone()
    }

    /// Fetches the key set again, unless another request just did so and
    /// it now knows `kid`, or the last fetch was less than a second ago.
    async fn refresh(&self, kid: Option<&str>) -> Result<(), VerifyError> {
        let mut last = self.last_fetch.lock().await;
        if kid.is_some_and(|kid| self.current().knows(kid)) {
            return Ok(());
        }
        if last.is_some_and(|at| at.elapsed() < MIN_REFRESH_INTERVAL) {
            return Ok(());
        }
        let set = self.key_set().await.map_err(|status| {
            tracing::warn!(code = ?status.code(), "cannot fetch the JWKS from user-svc");
            VerifyError::Unavailable
        })?;
        *last = Some(Instant::now());
        let verifier = TokenVerifier::new(&self.issuer, &self.audience).with_jwks(&set);
        *self.verifier.write().expect("jwks lock") = Arc::new(verifier);
        Ok(())
    }

    /// Whether a key set is loaded (fetching it now if none is): the
    /// gateway can verify tokens.
    pub async fn ensure_loaded(&self) -> bool {
        if self.current().has_keys() {
            return true;
        }
        self.refresh(None).await.is_ok() && self.current().has_keys()
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        match self.current().verify(token) {
            Err(TokenError::UnknownKey) => {
                self.refresh(TokenVerifier::kid_of(token).as_deref())
                    .await?;
                self.current().verify(token).map_err(VerifyError::Token)
            }
            other => other.map_err(VerifyError::Token),
        }
    }

    /// The published key set, fetched from user-svc (also served at
    /// `/.well-known/jwks.json`).
    pub async fn key_set(&self) -> Result<JwkSet, tonic::Status> {
        let mut request = tonic::Request::new(proto::user::GetJwksRequest {});
        request.set_timeout(Duration::from_secs(2));
        let keys = self
            .client
            .clone()
            .get_jwks(request)
            .await?
            .into_inner()
            .keys;
        Ok(JwkSet::from_proto(keys))
    }
}

/// Verifies a bearer token if one is sent and records the outcome for the
/// extractors (and the rate limiter, which keys on the user).
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(header) = header {
        let outcome = match header.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
            {
                match state.jwks().verify(token.trim()).await {
                    Ok(claims) => Authentication::Valid(claims),
                    Err(VerifyError::Token(TokenError::Expired)) => {
                        Authentication::Invalid("the access token has expired")
                    }
                    Err(VerifyError::Token(_)) => {
                        Authentication::Invalid("the access token is invalid")
                    }
                    Err(VerifyError::Unavailable) => Authentication::Unavailable,
                }
            }
            _ => Authentication::Invalid("expected Authorization: Bearer <token>"),
        };
        request.extensions_mut().insert(outcome);
    }
    next.run(request).await
}
