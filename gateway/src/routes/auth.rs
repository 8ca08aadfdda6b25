//! `/api/v1/auth/*`: register, login, refresh, logout.

use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use platform::{ErrorKind, ServiceId};
use proto::ext::Required as _;
use proto::user::user_service_client::UserServiceClient;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::grpc;
use crate::extract::{ApiJson, AuthUser, ClientAddr, body_bytes, parse_json};
use crate::problem::{FieldError, Problem};
use crate::ratelimit::Quota;
use crate::routes::users::UserOut;
use crate::state::AppState;

/// Failed logins allowed per account, per minute.
pub const FAILED_LOGINS_PER_ACCOUNT: u32 = 5;
/// Failed logins allowed per client address, per minute.
pub const FAILED_LOGINS_PER_ADDRESS: u32 = 20;

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterBody {
    pub email: String,
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginBody {
    pub email: String,
    pub password: String,
}

/// OAuth2-style form login (`application/x-www-form-urlencoded`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginForm {
    /// The account's email.
    pub username: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshBody {
    pub refresh_token: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u32,
}

fn users(state: &AppState) -> UserServiceClient<platform::grpc::GrpcChannel> {
    UserServiceClient::new(state.channel(ServiceId::User))
}

fn too_many(wait: Duration) -> Problem {
    Problem::new(
        ErrorKind::RateLimited,
        "too many failed logins; try again later",
    )
    .retry_after(wait.as_secs().max(1))
}

/// Create an account (role `customer`).
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = RegisterBody,
    responses(
        (status = 201, description = "Account created", body = UserOut),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email already registered", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid email, password shorter than 8, or missing fields", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<Response, Problem> {
    let request = proto::user::RegisterRequest {
        email: body.email,
        password: body.password,
        name: body.name,
    };
    let user = users(&state)
        .register(state.mesh().request(request))
        .await?
        .into_inner()
        .user
        .required("user")?;
    Ok((StatusCode::CREATED, Json(UserOut::from(user))).into_response())
}

/// Exchange credentials for an access token and a refresh token. Takes JSON
/// `{email, password}` or a form `username=&password=`. Failed attempts are
/// limited per account and per client address.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body(content(
        (LoginBody = "application/json"),
        (LoginForm = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Tokens", body = TokenPair),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Bad credentials", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON nor a form", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing fields", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed logins", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    request: Request,
) -> Result<Response, Problem> {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let bytes = body_bytes(request, &state).await?;
    let (email, password) = match content_type.as_str() {
        "application/json" => {
            let body: LoginBody = parse_json(&bytes)?;
            (body.email, body.password)
        }
        "application/x-www-form-urlencoded" => {
            crate::extract::refuse_control_characters(&bytes)?;
            let form: LoginForm = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
                Problem::new(ErrorKind::InvalidArgument, "the form has invalid fields").with_errors(
                    vec![FieldError {
                        field: String::new(),
                        message: e.to_string(),
                    }],
                )
            })?;
            (form.username, form.password)
        }
        _ => {
            return Err(Problem::new(
                ErrorKind::UnsupportedMediaType,
                "expected application/json or application/x-www-form-urlencoded",
            ));
        }
    };
    let account_key = format!("login:acct:{}", email.trim().to_lowercase());
    let address_key = format!("login:addr:{addr}");
    let (per_account, per_address) = (
        Quota::per_minute(FAILED_LOGINS_PER_ACCOUNT),
        Quota::per_minute(FAILED_LOGINS_PER_ADDRESS),
    );
    // Take a slot of both limits before the password is checked, so
    // concurrent guesses cannot run more checks than the limits allow; a
    // login that is not a failed guess gives its slots back.
    let limiter = state.limiter();
    limiter
        .check(&account_key, per_account, true)
        .await
        .map_err(too_many)?;
    if let Err(wait) = limiter.check(&address_key, per_address, true).await {
        limiter.refund(&account_key, per_account).await;
        return Err(too_many(wait));
    }
    let outcome = users(&state)
        .login(grpc(proto::user::LoginRequest { email, password }, None))
        .await;
    if !matches!(&outcome, Err(status) if status.code() == tonic::Code::Unauthenticated) {
        limiter.refund(&account_key, per_account).await;
        limiter.refund(&address_key, per_address).await;
    }
    let r = outcome?.into_inner();
    Ok(tokens(TokenPair {
        access_token: r.access_token,
        refresh_token: r.refresh_token,
        token_type: r.token_type,
        expires_in: r.expires_in,
    }))
}

/// A token pair as the answer; responses carrying tokens must not be kept
/// by any cache.
fn tokens(pair: TokenPair) -> Response {
    let mut response = Json(pair).into_response();
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// Exchange a refresh token for a new pair. The old refresh token stops
/// working; presenting it again revokes every token of its family.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshBody,
    responses(
        (status = 200, description = "New tokens", body = TokenPair),
        (status = 401, description = "Invalid, expired, revoked or reused refresh token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing refresh_token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Response, Problem> {
    Ok(tokens(refresh_pair(&state, body.refresh_token).await?))
}

/// A new token pair for a refresh token (which stops working).
pub(crate) async fn refresh_pair(
    state: &AppState,
    refresh_token: String,
) -> Result<TokenPair, Problem> {
    let r = users(state)
        .refresh_token(grpc(
            proto::user::RefreshTokenRequest { refresh_token },
            None,
        ))
        .await?
        .into_inner();
    Ok(TokenPair {
        access_token: r.access_token,
        refresh_token: r.refresh_token,
        token_type: r.token_type,
        expires_in: r.expires_in,
    })
}

/// End the session of a refresh token (its whole family is revoked).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshBody, security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing refresh_token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<StatusCode, Problem> {
    users(&state)
        .logout(grpc(
            proto::user::LogoutRequest {
                refresh_token: body.refresh_token,
            },
            Some(&user.caller()),
        ))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
