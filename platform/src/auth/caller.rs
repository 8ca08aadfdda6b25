//! Who is calling an internal service, as the gateway (or a service) states
//! it in the call's metadata.

use super::*;

/// Metadata keys carrying the caller's identity on internal calls (set by
/// the gateway after it verified the access token).
pub const USER_ID_METADATA: &str = "x-user-id";
pub const USER_ROLES_METADATA: &str = "x-user-roles";

/// Who is calling an internal service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub roles: Vec<String>,
}

impl Caller {
    /// The caller named in `metadata`, or `UNAUTHENTICATED`.
    pub fn from_metadata(metadata: &tonic::metadata::MetadataMap) -> Result<Caller, tonic::Status> {
        let user_id = metadata
            .get(USER_ID_METADATA)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| tonic::Status::unauthenticated("no caller identity (x-user-id)"))?;
        let roles = metadata
            .get(USER_ROLES_METADATA)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .map(|r| r.trim().to_string())
                    .filter(|r| !r.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Caller {
            user_id: user_id.to_string(),
            roles,
        })
    }

    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == ROLE_ADMIN)
    }

    /// Another service of the mesh, calling on its own behalf.
    pub fn service(name: &str) -> Caller {
        Caller {
            user_id: format!("svc:{name}"),
            roles: vec![ROLE_SERVICE.to_string()],
        }
    }

    pub fn is_service(&self) -> bool {
        self.roles.iter().any(|r| r == ROLE_SERVICE)
    }

    /// `PERMISSION_DENIED` unless the caller is an admin or a service.
    pub fn require_admin_or_service(&self) -> Result<(), tonic::Status> {
        if self.is_admin() || self.is_service() {
            Ok(())
        } else {
            Err(tonic::Status::permission_denied(
                "admin or internal caller required",
            ))
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

    /// A request carrying `message` on behalf of `user_id` with one `role`.
    pub fn request_as<T>(message: T, user_id: &str, role: &str) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        Caller {
            user_id: user_id.to_string(),
            roles: vec![role.to_string()],
        }
        .apply(&mut request);
        request
    }

    /// Writes this identity into outgoing request metadata.
    pub fn apply<T>(&self, request: &mut tonic::Request<T>) {
        let metadata = request.metadata_mut();
        if let Ok(v) = self.user_id.parse() {
            metadata.insert(USER_ID_METADATA, v);
        }
        if let Ok(v) = self.roles.join(",").parse() {
            metadata.insert(USER_ROLES_METADATA, v);
        }
    }
}
