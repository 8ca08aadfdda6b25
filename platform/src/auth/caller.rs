//! Who is calling an internal service, once [`MeshAuth`](super::MeshAuth)
//! has verified the call's credentials.

use std::sync::Arc;

use super::*;

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
        }
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
        }
    }

    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == ROLE_ADMIN)
    }

    /// A component calling on its own behalf (not for a user).
    pub fn is_service(&self) -> bool {
        self.roles.iter().any(|r| r == ROLE_SERVICE)
    }

    /// Whether the call came from component `name` (on its own behalf or
    /// for a user).
    pub fn is_from(&self, name: &str) -> bool {
        self.service.as_deref() == Some(name)
    }

    /// `PERMISSION_DENIED` unless the call came from one of `components`.
    pub fn require_from(&self, components: &[&str]) -> Result<(), tonic::Status> {
        if self.is_from_any(components) {
            Ok(())
        } else {
            Err(tonic::Status::permission_denied(format!(
                "only {} may call this",
                components.join(", ")
            )))
        }
    }

    /// Whether the call came from one of `components` (on its own behalf
    /// or for a user).
    pub fn is_from_any(&self, components: &[&str]) -> bool {
        components.iter().any(|c| self.is_from(c))
    }

    /// `PERMISSION_DENIED` unless the caller is an admin or the call came
    /// from one of `components`: each privileged call names the components
    /// that make it, never "any service".
    pub fn require_admin_or(&self, components: &[&str]) -> Result<(), tonic::Status> {
        if self.is_admin() || self.is_from_any(components) {
            Ok(())
        } else {
            Err(tonic::Status::permission_denied(format!(
                "only an admin or {} may call this",
                components.join(", ")
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
