//! The service's collections.

use platform::events::outbox::outbox_index;
use platform::store::{CollectionSpec, FieldType, IndexSpec};

pub fn products() -> CollectionSpec {
    CollectionSpec::new("products")
        .index(IndexSpec::new("sku", FieldType::String).unique())
        .index(IndexSpec::new("category", FieldType::String))
        .index(IndexSpec::new("status", FieldType::String))
        .index(outbox_index())
        .text("search_text")
}

pub fn reservations() -> CollectionSpec {
    CollectionSpec::new("reservations")
        .index(IndexSpec::new("settle_at", FieldType::Int).optional())
}

pub fn reviews() -> CollectionSpec {
    CollectionSpec::new("reviews")
        .index(IndexSpec::new("product_id", FieldType::String))
        .index(IndexSpec::new("created_at", FieldType::Int))
        .index(outbox_index())
}
