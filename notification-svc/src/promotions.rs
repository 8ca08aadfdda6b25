//! Promotions: one message from an admin to every customer, or to the
//! customers who ordered from a category.
//!
//! The audience is kept here, from the events this service hears anyway:
//! `user.registered` adds a customer to everyone, `order.created` adds
//! the buyer to everyone and to each category of the order's lines. A
//! promotion is a document with a cursor into its audience; one replica at
//! a time (a lease) sends it a batch at a time: each customer's copy is
//! keyed by promotion and customer, so a batch sent again after a crash
//! gives nobody a second one, and the cursor and the count move on only
//! once the batch is out.

use platform::error::invalid_fields;
use platform::store::{CollectionSpec, FieldType, IndexSpec, Query, StoreError};
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::api::NotificationApi;
use crate::deliveries::{Outgoing, id_of};
use crate::domain::Via;

/// Customers sent to per batch.
pub const BATCH: u32 = 50;
/// Notification kind of a promotion's copies.
pub const KIND: &str = "promotion";

/// A stored promotion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    pub title: String,
    pub body: String,
    /// Lowercase; empty: every customer.
    pub category: String,
    /// The admin's idempotency key (unique).
    pub key: String,
    /// `running` or `done` (indexed: the sender looks for running ones).
    pub state: String,
    /// Where the next batch starts in the audience; none: at the start.
    pub cursor: Option<String>,
    /// Customers sent to so far.
    pub sent: u64,
    /// Unix milliseconds.
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

pub fn promotions_spec() -> CollectionSpec {
    CollectionSpec::new("promotions")
        .index(IndexSpec::new("key", FieldType::String).unique())
        .index(IndexSpec::new("state", FieldType::String))
        .index(IndexSpec::new("created_at", FieldType::Int))
}

/// A customer in one audience segment (`all`, or `category:<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub segment: String,
    pub user_id: String,
}

pub fn audience_spec() -> CollectionSpec {
    CollectionSpec::new("audience")
        .index(IndexSpec::new("segment", FieldType::String))
        .index(IndexSpec::new("user_id", FieldType::String))
}

const EVERYONE: &str = "all";

fn segment(category: &str) -> String {
    match category.trim() {
        "" => EVERYONE.to_string(),
        c => format!("category:{}", c.to_lowercase()),
    }
}

pub(crate) fn to_proto(id: &str, p: &Promotion) -> proto::notification::Promotion {
    proto::notification::Promotion {
        id: id.to_string(),
        title: p.title.clone(),
        body: p.body.clone(),
        category: p.category.clone(),
        done: p.state == "done",
        sent: p.sent,
        created_at: Some(proto::ext::from_millis(p.created_at)),
        finished_at: p.finished_at.map(proto::ext::from_millis),
    }
}

/// Audience memberships this process knows are stored (none is ever
/// removed), so a customer's next order does not insert them again.
#[derive(Clone, Debug, Default)]
pub(crate) struct Joined(std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>);

/// How many memberships [`Joined`] holds before it starts over.
const JOINED_HELD: usize = 100_000;

impl Joined {
    fn holds(&self, id: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }

    fn add(&self, id: String) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if held.len() >= JOINED_HELD {
            held.clear();
        }
        held.insert(id);
    }
}

impl NotificationApi {
    /// Adds `user_id` to everyone and to the buyers of `categories`
    /// (each once, whatever is delivered twice).
    pub(crate) async fn join_audience(
        &self,
        user_id: &str,
        categories: &[&str],
    ) -> Result<(), StoreError> {
        let mut segments = vec![EVERYONE.to_string()];
        for c in categories.iter().filter(|c| !c.trim().is_empty()) {
            let s = segment(c);
            if !segments.contains(&s) {
                segments.push(s);
            }
        }
        for s in segments {
            let id = id_of(&format!("{s}\n{user_id}"));
            if self.joined.holds(&id) {
                continue;
            }
            let member = Member {
                segment: s.clone(),
                user_id: user_id.to_string(),
            };
            match self.audience.insert(&id, member).await {
                Ok(_) | Err(StoreError::AlreadyExists { .. }) => self.joined.add(id),
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// StartPromotion, for an admin.
    pub(crate) async fn begin_promotion(
        &self,
        r: proto::notification::StartPromotionRequest,
    ) -> Result<proto::notification::Promotion, Status> {
        let mut errors = Vec::new();
        if r.title.trim().is_empty() || r.title.chars().count() > 200 {
            errors.push(("title", "must be 1 to 200 characters".to_string()));
        }
        if r.body.trim().is_empty() || r.body.chars().count() > 5000 {
            errors.push(("body", "must be 1 to 5000 characters".to_string()));
        }
        if r.category.chars().count() > 100 {
            errors.push(("category", "must be at most 100 characters".to_string()));
        }
        if r.idempotency_key.trim().is_empty() || r.idempotency_key.len() > 200 {
            errors.push(("idempotency_key", "must be 1 to 200 bytes".to_string()));
        }
        for (field, text) in [
            ("title", &r.title),
            ("body", &r.body),
            ("category", &r.category),
        ] {
            if let Err(e) = platform::text::check(field, text) {
                errors.push((field, e.message));
            }
        }
        if !errors.is_empty() {
            return Err(invalid_fields(errors));
        }
        let promotion = Promotion {
            title: r.title.trim().to_string(),
            body: r.body.trim().to_string(),
            category: r.category.trim().to_lowercase(),
            key: r.idempotency_key.clone(),
            state: "running".into(),
            cursor: None,
            sent: 0,
            created_at: platform::clock::now().millis(),
            finished_at: None,
        };
        let id = uuid::Uuid::now_v7().to_string();
        match self.promotions.insert(&id, promotion).await {
            Ok(stored) => Ok(to_proto(&stored.id, &stored.value)),
            Err(StoreError::AlreadyExists { .. }) => {
                let first = self
                    .promotions
                    .find_one(Query::new().eq("key", r.idempotency_key.as_str()))
                    .await?
                    .ok_or_else(|| Status::aborted("the promotion of this key is gone"))?;
                Ok(to_proto(&first.id, &first.value))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// ListPromotions: the 20 newest.
    pub(crate) async fn newest_promotions(
        &self,
    ) -> Result<Vec<proto::notification::Promotion>, Status> {
        let page = self
            .promotions
            .find(&Query::new().sort("created_at", true).limit(20))
            .await?;
        Ok(page
            .items
            .iter()
            .map(|p| to_proto(&p.id, &p.value))
            .collect())
    }

    /// Sends the next batch of every running promotion; how many copies
    /// it sent.
    pub async fn promotion_pass(&self) -> Result<u64, Status> {
        let running = self
            .promotions
            .find(
                &Query::new()
                    .eq("state", "running")
                    .sort("created_at", false)
                    .limit(10),
            )
            .await?;
        let mut sent = 0;
        for promotion in running.items {
            sent += self.send_batch(promotion).await?;
        }
        Ok(sent)
    }

    async fn send_batch(
        &self,
        promotion: platform::store::Versioned<Promotion>,
    ) -> Result<u64, Status> {
        let p = &promotion.value;
        let page = self
            .audience
            .find(
                &Query::new()
                    .eq("segment", segment(&p.category).as_str())
                    .sort("user_id", false)
                    .page(Some(&proto::common::PageRequest {
                        limit: BATCH,
                        cursor: p.cursor.clone().unwrap_or_default(),
                    })),
            )
            .await?;
        let promotion_id = promotion.id.clone();
        for member in &page.items {
            let user_id = &member.value.user_id;
            let key = format!("{KIND}:{promotion_id}:{user_id}");
            self.deliver(&key, user_id, KIND, p.title.clone(), p.body.clone())
                .await?;
            let out = Outgoing {
                key: &key,
                user_id,
                kind: KIND,
                title: &p.title,
                body: &p.body,
            };
            self.deliveries
                .enqueue(&out, &[Via::Email, Via::Push])
                .await?;
        }
        let count = page.items.len() as u64;
        let next = page.next_cursor.clone();
        self.promotions
            .modify_from(promotion, |p| {
                p.sent += count;
                match &next {
                    Some(cursor) => p.cursor = Some(cursor.clone()),
                    None => {
                        p.state = "done".into();
                        p.finished_at = Some(platform::clock::now().millis());
                    }
                }
            })
            .await?;
        Ok(count)
    }
}
