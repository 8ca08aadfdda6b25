//! Access-token verification in the gateway: tokens are checked locally
//! (a token seen lately is not checked again until it expires) against
//! the JWKS fetched from user-svc ([`platform::auth::UserKeys`]:
//! cached; fetched again, at most once a second, when a token names an
//! unknown `kid`, as after a key rotation).

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use platform::auth::{TokenError, VerifyError};

use crate::extract::Authentication;
use crate::state::AppState;

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
                match state.mesh().verify_user_token(token.trim()).await {
                    Ok(claims) if claims.role == platform::auth::ROLE_SERVICE => {
                        Authentication::Invalid("the access token is invalid")
                    }
                    Ok(claims) => Authentication::Valid(claims, token.trim().into()),
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
