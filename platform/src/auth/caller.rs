//! Who is calling an internal service, once [`MeshAuth`](super::MeshAuth)
//! has verified the call's credentials.

use super::{Claims, ROLE_ADMIN, ROLE_SERVICE};
use crate::config::Component;
use std::sync::Arc;

/// Broadcast topic on which user-svc says that a user signed out.
pub const SIGNED_OUT_TOPIC: &str = "sessions";

/// A user signed out at `at_ms` (Unix milliseconds): live streams opened
/// with the user's tokens issued until then end (best effort; a stream
/// ends at its token's expiry anyway).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignedOut {
    pub user_id: String,
    pub at_ms: i64,
}

impl SignedOut {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<SignedOut> {
        serde_json::from_slice(bytes).ok()
    }
}

/// `a, b` of the components' names.
fn names(components: &[Component]) -> String {
    components
        .iter()
        .map(|c| c.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Who is calling an internal service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user, or `svc:<component>` for a component on its own behalf.
    pub user_id: String,
    pub roles: Vec<String>,
    /// The component of the mesh that made the call, when it proved it
    /// with its service token.
    pub service: Option<String>,
    /// The user's access token, forwarded on calls made for them.
    bearer: Option<Arc<str>>,
    /// When that token expires (Unix seconds).
    expires_at: Option<u64>,
    /// When that token was issued (Unix seconds).
    issued_at: Option<u64>,
}

impl Caller {
    /// The user of verified access-token `claims`; `token` is forwarded on
    /// calls made for them.
    pub fn user(claims: &Claims, token: &str) -> Caller {
        Caller {
            user_id: claims.sub.clone(),
            roles: vec![claims.role.clone()],
            service: None,
            bearer: Some(token.into()),
            expires_at: Some(claims.exp),
            issued_at: Some(claims.iat),
        }
    }

    /// When the user's access token expires (Unix seconds); `None` for a
    /// component on its own behalf. A stream opened with the token ends
    /// then.
    pub fn expires_at(&self) -> Option<u64> {
        self.expires_at
    }

    /// Whether the user's token was issued before (or in the second of)
    /// `signed_out`: a stream it opened ends at sign-out.
    pub fn signed_out_by(&self, signed_out: &SignedOut) -> bool {
        self.bearer.is_some()
            && signed_out.user_id == self.user_id
            && self
                .issued_at
                .is_some_and(|iat| (iat as i64).saturating_mul(1000) <= signed_out.at_ms)
    }

    /// The same user, reached through the component `service`.
    pub fn via(mut self, service: Option<String>) -> Caller {
        self.service = service;
        self
    }

    /// A component of the mesh, calling on its own behalf.
    pub fn service(name: &str) -> Caller {
        Caller {
            user_id: format!("svc:{name}"),
            roles: vec![ROLE_SERVICE.to_string()],
            service: Some(name.to_string()),
            bearer: None,
            expires_at: None,
            issued_at: None,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == ROLE_ADMIN)
    }

    /// A component calling on its own behalf (not for a user).
    pub fn is_service(&self) -> bool {
        self.roles.iter().any(|r| r == ROLE_SERVICE)
    }

    /// Whether the call came from `component` (on its own behalf or for a
    /// user).
    pub fn is_from(&self, component: Component) -> bool {
        self.service.as_deref() == Some(component.name())
    }

    /// `PERMISSION_DENIED` unless the call came from one of `components`.
    pub fn require_from(&self, components: &[Component]) -> Result<(), tonic::Status> {
        if self.is_from_any(components) {
            Ok(())
        } else {
            Err(tonic::Status::permission_denied(format!(
                "only {} may call this",
                names(components)
            )))
        }
    }

    /// Whether the call came from one of `components` (on its own behalf
    /// or for a user).
    pub fn is_from_any(&self, components: &[Component]) -> bool {
        components.iter().any(|c| self.is_from(*c))
    }

    /// `PERMISSION_DENIED` unless the caller is an admin or the call came
    /// from one of `components`: each privileged call names the components
    /// that make it, never "any service".
    pub fn require_admin_or(&self, components: &[Component]) -> Result<(), tonic::Status> {
        if self.is_admin() || self.is_from_any(components) {
            Ok(())
        } else {
            Err(tonic::Status::permission_denied(format!(
                "only an admin or {} may call this",
                names(components)
            )))
        }
    }

    /// `PERMISSION_DENIED` unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), tonic::Status> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(tonic::Status::permission_denied("admin role required"))
        }
    }

    /// Puts the user's access token (if this caller is a user) on an
    /// outgoing request, so the next service can verify who it is for.
    pub fn forward<T>(&self, request: &mut tonic::Request<T>) {
        if let Some(token) = &self.bearer
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            request.metadata_mut().insert("authorization", value);
        }
    }
}
