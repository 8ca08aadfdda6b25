//! The service's collections.

use platform::events::outbox::outbox_index;
use platform::store::{CollectionSpec, FieldType, IndexSpec};

pub fn shipments() -> CollectionSpec {
    CollectionSpec::new("shipments")
        .index(IndexSpec::new("order_id", FieldType::String).unique())
        .index(
            IndexSpec::new("tracking_number", FieldType::String)
                .unique()
                .optional(),
        )
        .index(outbox_index())
}
