//! Fault flags for admins: which are on and what each threatens; in
//! development (`FLAGS_WRITABLE=true`), switching one. In production a
//! flag is changed by changing the flags file, which every process reloads.

use axum::Json;
use axum::extract::{Path, State};
use platform::ErrorKind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::extract::{AdminUser, ApiJson};
use crate::problem::Problem;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct FlagOut {
    /// The flag's key in the flags file, e.g. `paymentDeclineRate`.
    pub key: String,
    /// What it does, the invariant it threatens and what keeps it.
    pub description: String,
    /// Whether the fault is on: the flag is ENABLED and its variant's
    /// value does something.
    pub on: bool,
    /// The variant in force; absent when the file does not name the flag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The variant's value (a rate, milliseconds, a switch, or one of those
    /// per component).
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
    /// The variants the file offers.
    pub variants: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FlagList {
    pub flags: Vec<FlagOut>,
    /// Whether `PUT /api/v1/admin/flags/{key}` may switch them here.
    pub writable: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct FlagChange {
    /// One of the flag's variants, e.g. `off`.
    pub variant: String,
}

fn doing(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|x| x > 0.0),
        serde_json::Value::Object(o) => o.values().any(doing),
        _ => false,
    }
}

/// Every flag as this gateway's process has it.
pub(crate) fn list_flags(state: &AppState) -> FlagList {
    let flags = platform::flags::snapshot();
    let out = flags
        .all()
        .into_iter()
        .map(|(flag, state)| {
            let (on, variant, value, variants) = match state {
                Some(s) => (
                    s.enabled && doing(&s.value),
                    Some(s.variant.clone()),
                    if s.enabled {
                        s.value.clone()
                    } else {
                        serde_json::json!({})
                    },
                    s.variants.keys().cloned().collect(),
                ),
                None => (false, None, serde_json::json!({}), Vec::new()),
            };
            FlagOut {
                key: flag.key.to_string(),
                description: flag.description.to_string(),
                on,
                variant,
                value: match value {
                    serde_json::Value::Object(_) => value,
                    other => serde_json::json!({ "value": other }),
                },
                variants,
            }
        })
        .collect();
    FlagList {
        flags: out,
        writable: state.config().flags_writable && state.config().flags_file.is_some(),
    }
}

/// The fault flags and which are on (admin).
#[utoipa::path(get, path = "/api/v1/admin/flags", tag = "operations", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every fault flag", body = FlagList),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(State(state): State<AppState>, AdminUser(_admin): AdminUser) -> Json<FlagList> {
    Json(list_flags(&state))
}

/// Switches a flag to one of its variants (admin; only with
/// `FLAGS_WRITABLE=true`, for development: it rewrites the flags file).
#[utoipa::path(put, path = "/api/v1/admin/flags/{key}", tag = "operations", security(("bearer" = [])), request_body = FlagChange,
    params(("key" = String, Path, description = "Flag key, e.g. paymentDeclineRate")),
    responses(
        (status = 200, description = "The flag as it now is", body = FlagOut),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such flag in the flags file", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Flags are read-only here (FLAGS_WRITABLE unset)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No such variant", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn set(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
    Path(key): Path<String>,
    ApiJson(change): ApiJson<FlagChange>,
) -> Result<Json<FlagOut>, Problem> {
    set_flag(&state, &key, &change.variant)
}

pub(crate) fn set_flag(
    state: &AppState,
    key: &str,
    variant: &str,
) -> Result<Json<FlagOut>, Problem> {
    let config = state.config();
    let path = match (&config.flags_file, config.flags_writable) {
        (Some(path), true) => path.clone(),
        _ => {
            return Err(Problem::new(
                ErrorKind::FailedPrecondition,
                "flags are changed by changing the flags file here (FLAGS_WRITABLE is not set)",
            ));
        }
    };
    let known = platform::flags::snapshot()
        .all()
        .iter()
        .any(|(f, s)| f.key == key && s.is_some());
    if !known {
        return Err(Problem::new(
            ErrorKind::NotFound,
            format!("the flags file has no flag {key:?}"),
        ));
    }
    platform::flags::write_variant(&path, key, variant)
        .map_err(|e| Problem::new(ErrorKind::InvalidArgument, e))?;
    list_flags(state)
        .flags
        .into_iter()
        .find(|f| f.key == key)
        .map(Json)
        .ok_or_else(|| Problem::new(ErrorKind::Internal, "the flag went missing"))
}
