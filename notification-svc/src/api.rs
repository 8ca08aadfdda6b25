//! gRPC surface of `NotificationService`: proto <-> domain.
//!
//! RPCs not overridden here answer `UNIMPLEMENTED`.

use proto::notification::notification_service_server::NotificationService;

/// The tonic implementation of `shop.notification.v1.NotificationService`.
#[derive(Debug, Default)]
pub struct NotificationApi {}

#[tonic::async_trait]
impl NotificationService for NotificationApi {}
