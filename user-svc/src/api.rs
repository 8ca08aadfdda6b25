//! gRPC surface of `UserService`: proto <-> domain.
//!
//! RPCs not overridden here answer `UNIMPLEMENTED`.

use proto::user::user_service_server::UserService;

/// The tonic implementation of `shop.user.v1.UserService`.
#[derive(Debug, Default)]
pub struct UserApi {}

#[tonic::async_trait]
impl UserService for UserApi {}
