//! The service's collections.

use platform::events::outbox::outbox_index;
use platform::store::{CollectionSpec, FieldType, IndexSpec};

pub fn payments() -> CollectionSpec {
    CollectionSpec::new("payments")
        .index(IndexSpec::new("idempotency", FieldType::String).unique())
        .index(
            IndexSpec::new("charge_lock", FieldType::String)
                .unique()
                .optional(),
        )
        .index(IndexSpec::new("order_id", FieldType::String))
        .index(IndexSpec::new("user_id", FieldType::String))
        .index(IndexSpec::new("state", FieldType::String))
        .index(outbox_index())
}
