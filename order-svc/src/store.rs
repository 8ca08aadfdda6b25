//! The service's collections.

use platform::events::outbox::outbox_index;
use platform::store::{CollectionSpec, FieldType, IndexSpec};

pub fn orders() -> CollectionSpec {
    CollectionSpec::new("orders")
        .index(IndexSpec::new("user_id", FieldType::String))
        .index(IndexSpec::new("created_at", FieldType::Int))
        .index(outbox_index())
}
