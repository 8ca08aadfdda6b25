//! The service's collections.

use platform::events::outbox::outbox_index;
use platform::store::{CollectionSpec, FieldType, IndexSpec};

pub fn users() -> CollectionSpec {
    CollectionSpec::new("users")
        .index(IndexSpec::new("email", FieldType::String).unique())
        .index(outbox_index())
}

pub fn refresh_tokens() -> CollectionSpec {
    CollectionSpec::new("refresh_tokens")
        .index(IndexSpec::new("family_id", FieldType::String))
        .index(IndexSpec::new("user_id", FieldType::String))
        .index(IndexSpec::new("expires_at", FieldType::Int))
}
