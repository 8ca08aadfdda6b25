//! The service's collections.

use platform::events::outbox::outbox_index;
use platform::store::{CollectionSpec, FieldType, IndexSpec};

pub fn orders() -> CollectionSpec {
    CollectionSpec::new("orders")
        .index(IndexSpec::new("user_id", FieldType::String))
        .index(IndexSpec::new("created_at", FieldType::Int))
        .index(IndexSpec::new("status", FieldType::String))
        .index(IndexSpec::new("expires_at", FieldType::Int).optional())
        .index(IndexSpec::new("steps.count", FieldType::Int))
        .index(outbox_index())
}
