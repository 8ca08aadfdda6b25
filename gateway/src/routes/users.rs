//! `/api/v1/users/me*` and the public JWKS.

use axum::Json;
use axum::extract::State;
use platform::ServiceId;
use proto::ext::Required as _;
use proto::user::user_service_client::UserServiceClient;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::grpc;
use crate::extract::{ApiJson, AuthUser};
use crate::problem::Problem;
use crate::state::AppState;

/// A postal address.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AddressBody {
    pub name: String,
    pub line1: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub line2: String,
    pub city: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

impl From<proto::common::Address> for AddressBody {
    fn from(a: proto::common::Address) -> Self {
        Self {
            name: a.name,
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            region: a.region,
            postal_code: a.postal_code,
            country: a.country,
        }
    }
}

impl From<AddressBody> for proto::common::Address {
    fn from(a: AddressBody) -> Self {
        Self {
            name: a.name,
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            region: a.region,
            postal_code: a.postal_code,
            country: a.country,
        }
    }
}

/// A user's profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    pub id: String,
    pub email: String,
    pub name: String,
    /// `customer` or `admin`.
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<AddressBody>,
}

impl From<proto::user::User> for UserOut {
    fn from(u: proto::user::User) -> Self {
        let role = match proto::user::Role::try_from(u.role) {
            Ok(proto::user::Role::Admin) => "admin",
            _ => "customer",
        };
        Self {
            id: u.id,
            email: u.email,
            name: u.name,
            role: role.into(),
            phone: u.phone,
            address: u.address.map(AddressBody::from),
        }
    }
}

/// Partial profile update; `phone: ""` removes the phone, `address: null` the address.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ProfileUpdate {
    pub name: Option<String>,
    pub phone: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<AddressBody>)]
    pub address: Option<Option<AddressBody>>,
}

/// Tells a missing field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<AddressBody>>, D::Error> {
    Option::<AddressBody>::deserialize(d).map(Some)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PreferencesBody {
    /// Preferred product categories (at most 20).
    pub categories: Vec<String>,
}

fn users(state: &AppState) -> UserServiceClient<platform::grpc::GrpcChannel> {
    UserServiceClient::new(state.channel(ServiceId::User))
}

/// The caller's profile.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "Profile", body = UserOut),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn me(State(state): State<AppState>, user: AuthUser) -> Result<Json<UserOut>, Problem> {
    let r = users(&state)
        .get_profile(grpc(
            proto::user::GetProfileRequest {},
            Some(&user.caller()),
        ))
        .await?
        .into_inner();
    Ok(Json(UserOut::from(r.user.required("user")?)))
}

/// Update the caller's name, phone or address.
#[utoipa::path(put, path = "/api/v1/users/me", tag = "users", security(("bearer" = [])), request_body = ProfileUpdate,
    responses(
        (status = 200, description = "Updated profile", body = UserOut),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_me(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<ProfileUpdate>,
) -> Result<Json<UserOut>, Problem> {
    let (address, clear_address) = match body.address {
        None => (None, false),
        Some(None) => (None, true),
        Some(Some(a)) => (Some(a.into()), false),
    };
    let request = proto::user::UpdateProfileRequest {
        name: body.name,
        phone: body.phone,
        address,
        clear_address,
    };
    let r = users(&state)
        .update_profile(grpc(request, Some(&user.caller())))
        .await?
        .into_inner();
    Ok(Json(UserOut::from(r.user.required("user")?)))
}

/// Replace the caller's preferred categories (used for recommendations).
#[utoipa::path(put, path = "/api/v1/users/me/preferences", tag = "users", security(("bearer" = [])), request_body = PreferencesBody,
    responses(
        (status = 200, description = "Stored preferences", body = PreferencesBody),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid categories", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_preferences(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<PreferencesBody>,
) -> Result<Json<PreferencesBody>, Problem> {
    let request = proto::user::UpdatePreferencesRequest {
        categories: body.categories,
    };
    let r = users(&state)
        .update_preferences(grpc(request, Some(&user.caller())))
        .await?
        .into_inner();
    let categories = r.preferences.required("preferences")?.categories;
    // Recommendations boost these categories. PUT is safe to repeat, so a
    // failure here is answered and the client retries the whole update.
    let forwarded = proto::recommendation::UpdateUserPreferencesRequest {
        user_id: user.0.sub.clone(),
        categories: categories.clone(),
    };
    super::recommendations::recommendations(&state)
        .update_user_preferences(grpc(forwarded, Some(&user.caller())))
        .await?;
    Ok(Json(PreferencesBody { categories }))
}

/// A JSON Web Key (Ed25519).
#[derive(Debug, Serialize, ToSchema)]
pub struct JwkOut {
    pub kty: String,
    pub crv: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub x: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JwksOut {
    pub keys: Vec<JwkOut>,
}

/// Public keys that verify access tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses(
        (status = 200, description = "Key set", body = JwksOut),
        (status = 503, description = "user-svc unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn jwks(State(state): State<AppState>) -> Result<Json<JwksOut>, Problem> {
    let set = state.jwks().key_set().await?;
    Ok(Json(JwksOut {
        keys: set
            .keys
            .into_iter()
            .map(|k| JwkOut {
                kty: k.kty,
                crv: k.crv,
                kid: k.kid,
                alg: k.alg,
                use_: k.use_,
                x: k.x,
            })
            .collect(),
    }))
}
