//! The directory of users: contact details looked up in user-svc, as the
//! notification service.

use platform::grpc::GrpcChannel;
use proto::user::GetUserRequest;
use proto::user::user_service_client::UserServiceClient;
use tonic::Status;

/// Where to reach a user, from user-svc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub email: String,
    pub name: String,
    pub phone: Option<String>,
}

/// Looks users up in user-svc, as the notification service.
#[derive(Debug, Clone)]
pub struct Directory {
    users: UserServiceClient<GrpcChannel>,
    mesh: platform::auth::MeshAuth,
}

impl Directory {
    pub fn new(channel: GrpcChannel, mesh: platform::auth::MeshAuth) -> Directory {
        Directory {
            users: UserServiceClient::new(channel),
            mesh,
        }
    }

    /// The user's contact details; None if there is no such user.
    pub async fn contact(&self, user_id: &str) -> Result<Option<Contact>, Status> {
        let request = self.mesh.request(GetUserRequest {
            user_id: user_id.to_string(),
        });
        match self.users.clone().get_user(request).await {
            Ok(response) => Ok(response.into_inner().user.map(|u| Contact {
                email: u.email,
                name: u.name,
                phone: u.phone.filter(|p| !p.is_empty()),
            })),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(status),
        }
    }
}
