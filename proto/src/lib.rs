//! The gRPC contracts of shopmesh.
//!
//! Every package `shop.<svc>.v1` is generated from `proto/shop/**` with
//! messages, a client and a server trait. RPCs a server does not override
//! answer `UNIMPLEMENTED`. [`FILE_DESCRIPTOR_SET`] holds every file (imports
//! included) so servers can offer reflection without `.proto` files.

#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/shop.rs"));

/// Encoded `google.protobuf.FileDescriptorSet` of every shopmesh proto file
/// and its imports, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/shop_descriptor.bin"));

pub mod ext;

/// Most images a product shows (product-svc keeps to it; media-svc refuses
/// an upload to a product that has them all).
pub const MAX_PRODUCT_IMAGES: usize = 20;

pub use shop::cart::v1 as cart;
pub use shop::common::v1 as common;
pub use shop::events::v1 as events;
pub use shop::media::v1 as media;
pub use shop::notification::v1 as notification;
pub use shop::order::v1 as order;
pub use shop::payment::v1 as payment;
pub use shop::product::v1 as product;
pub use shop::recommendation::v1 as recommendation;
pub use shop::shipping::v1 as shipping;
pub use shop::user::v1 as user;

/// Fully-qualified gRPC service names, as reflection lists them.
pub mod service_names {
    pub const USER: &str = "shop.user.v1.UserService";
    pub const PRODUCT: &str = "shop.product.v1.ProductService";
    pub const ORDER: &str = "shop.order.v1.OrderService";
    pub const PAYMENT: &str = "shop.payment.v1.PaymentService";
    pub const SHIPPING: &str = "shop.shipping.v1.ShippingService";
    pub const NOTIFICATION: &str = "shop.notification.v1.NotificationService";
    pub const RECOMMENDATION: &str = "shop.recommendation.v1.RecommendationService";
    pub const CART: &str = "shop.cart.v1.CartService";
    pub const MEDIA: &str = "shop.media.v1.MediaService";
}

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn descriptor_set_holds_every_service_and_its_imports() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET)
            .expect("descriptor set decodes");
        let services: Vec<String> = set
            .file
            .iter()
            .flat_map(|f| {
                let pkg = f.package().to_string();
                f.service.iter().map(move |s| format!("{pkg}.{}", s.name()))
            })
            .collect();
        use super::service_names::*;
        for name in [
            USER,
            PRODUCT,
            ORDER,
            PAYMENT,
            SHIPPING,
            NOTIFICATION,
            RECOMMENDATION,
        ] {
            assert!(
                services.iter().any(|s| s == name),
                "{name} missing from {services:?}"
            );
        }
        assert!(
            set.file
                .iter()
                .any(|f| f.name() == "google/protobuf/timestamp.proto"),
            "imports must be included for reflection clients"
        );
    }
}

/// The type of each event, from its payload: one exhaustive match, so a new
/// payload cannot be published or subscribed to under a made-up name.
impl events::envelope::Payload {
    pub fn event_type(&self) -> &'static str {
        use events::envelope::Payload::*;
        match self {
            UserRegistered(_) => "user.registered",
            OrderCreated(_) => "order.created",
            OrderCancelled(_) => "order.cancelled",
            PaymentProcessed(_) => "payment.processed",
            PaymentFailed(_) => "payment.failed",
            PaymentRefunded(_) => "payment.refunded",
            ShippingUpdated(_) => "shipping.updated",
            InventoryLow(_) => "inventory.low",
            ReviewCreated(_) => "review.created",
            MediaUploaded(_) => "media.uploaded",
            MediaDeleted(_) => "media.deleted",
        }
    }

    /// Every event type there is.
    pub const ALL_TYPES: [&'static str; 11] = [
        "user.registered",
        "order.created",
        "order.cancelled",
        "payment.processed",
        "payment.failed",
        "payment.refunded",
        "shipping.updated",
        "inventory.low",
        "review.created",
        "media.uploaded",
        "media.deleted",
    ];
}

#[cfg(test)]
mod event_type_tests {
    use super::events::envelope::Payload;
    use super::events::*;

    #[test]
    fn every_payload_has_its_own_listed_type() {
        let payloads = [
            Payload::UserRegistered(UserRegistered::default()),
            Payload::OrderCreated(OrderCreated::default()),
            Payload::OrderCancelled(OrderCancelled::default()),
            Payload::PaymentProcessed(PaymentProcessed::default()),
            Payload::PaymentFailed(PaymentFailed::default()),
            Payload::PaymentRefunded(PaymentRefunded::default()),
            Payload::ShippingUpdated(ShippingUpdated::default()),
            Payload::InventoryLow(InventoryLow::default()),
            Payload::ReviewCreated(ReviewCreated::default()),
            Payload::MediaUploaded(MediaUploaded::default()),
            Payload::MediaDeleted(MediaDeleted::default()),
        ];
        let types: Vec<&str> = payloads.iter().map(Payload::event_type).collect();
        assert_eq!(types, Payload::ALL_TYPES);
    }
}
