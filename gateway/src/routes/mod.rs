//! REST handlers, one module per area of the API.

pub mod auth;
pub mod cart;
pub mod common;
pub mod flags;
pub mod media;
pub mod notifications;
pub mod orders;
pub mod payments;
pub mod products;
pub mod recommendations;
pub mod reviews;
pub mod shipping;
pub mod users;

use platform::auth::Caller;

/// A gRPC request carrying the caller's access token (if any): the
/// services verify it themselves. The gateway does not add a service token
/// of its own here, so an anonymous request stays anonymous inside.
pub(crate) fn grpc<T>(message: T, caller: Option<&Caller>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(caller) = caller {
        caller.forward(&mut request);
    }
    request
}
