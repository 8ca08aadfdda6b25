//! Stored delivery records: one notification's delivery over one channel,
//! its collection, its proto forms, and the retry settings.

use std::time::Duration;

use platform::store::{CollectionSpec, FieldType, IndexSpec};
use proto::ext::from_millis;
use serde::{Deserialize, Serialize};

use crate::domain::{State, Via};

/// One notification's delivery over one channel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub user_id: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    /// `email`, `sms` or `push`.
    pub channel: String,
    /// Push only: which subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// `pending`, `sent`, `failed` or `skipped`.
    pub state: String,
    pub attempts: u32,
    /// Unix ms: when a pending record is due (or its claim expires).
    pub next_attempt_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub fn spec() -> CollectionSpec {
    CollectionSpec::new("deliveries")
        .index(IndexSpec::new("user_id", FieldType::String))
        .index(IndexSpec::new("state", FieldType::String))
        .index(IndexSpec::new("channel", FieldType::String))
        .index(IndexSpec::new("next_attempt_at", FieldType::Int))
        .index(IndexSpec::new("created_at", FieldType::Int))
}

/// A stable id from a key: 32 hex digits of its SHA-256.
pub(crate) fn id_of(key: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Record {
    pub fn to_proto(&self, id: &str) -> proto::notification::Delivery {
        let state = State::parse(&self.state);
        proto::notification::Delivery {
            id: id.to_string(),
            user_id: self.user_id.clone(),
            kind: self.kind.clone(),
            title: self.title.clone(),
            channel: Via::parse(&self.channel).map_or(0, |v| v.proto() as i32),
            state: state.proto() as i32,
            attempts: self.attempts,
            last_error: self.last_error.clone().unwrap_or_default(),
            created_at: Some(from_millis(self.created_at)),
            updated_at: Some(from_millis(self.updated_at)),
            next_attempt_at: (state == State::Pending).then(|| from_millis(self.next_attempt_at)),
        }
    }

    /// The notification as the caller of SendNotification sees it.
    pub fn to_notification(&self, id: &str) -> proto::notification::Notification {
        proto::notification::Notification {
            id: id.to_string(),
            user_id: self.user_id.clone(),
            kind: self.kind.clone(),
            title: self.title.clone(),
            body: self.body.clone(),
            channel: Via::parse(&self.channel).map_or(0, |v| v.proto() as i32),
            created_at: Some(from_millis(self.created_at)),
            read: false,
        }
    }
}

/// Retry settings.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max_attempts: u32,
}
