//! ImportInteractions: a stream of purchases and ratings from another
//! system, checked one by one and stored in batches per user.

use std::collections::{HashMap, HashSet};

use proto::recommendation::{ImportSummary, Interaction, RejectedInteraction, interaction};
use tonic::{Request, Response, Status, Streaming};

use super::RecommendationApi;
use crate::domain::{self, ImportedPurchase, Rating};

/// Interactions an import buffers before writing them.
const IMPORT_BATCH: usize = 5000;
/// Refusals an import summary lists.
const MAX_REJECTIONS: usize = 100;

impl RecommendationApi {
    /// ImportInteractions (admins only): a summary of what was stored and
    /// what was refused.
    pub(super) async fn import(
        &self,
        request: Request<Streaming<Interaction>>,
    ) -> Result<Response<ImportSummary>, Status> {
        self.mesh
            .caller(request.metadata())
            .await?
            .require_admin()?;
        let mut stream = request.into_inner();
        let mut summary = ImportSummary::default();
        let mut batch: HashMap<String, Vec<Interaction>> = HashMap::new();
        let mut buffered = 0usize;
        let mut users = HashSet::new();
        while let Some(item) = stream.message().await? {
            summary.received += 1;
            let line = item.line;
            match validate_interaction(item) {
                Ok(i) => {
                    summary.imported += 1;
                    users.insert(i.user_id.clone());
                    batch.entry(i.user_id.clone()).or_default().push(i);
                    buffered += 1;
                    if buffered >= IMPORT_BATCH {
                        self.flush_import(&mut batch).await?;
                        buffered = 0;
                    }
                }
                Err(reason) => {
                    summary.rejected += 1;
                    if summary.rejections.len() < MAX_REJECTIONS {
                        summary
                            .rejections
                            .push(RejectedInteraction { line, reason });
                    }
                }
            }
        }
        self.flush_import(&mut batch).await?;
        summary.users = users.len() as u64;
        tracing::info!(
            received = summary.received,
            imported = summary.imported,
            rejected = summary.rejected,
            "interactions imported"
        );
        Ok(Response::new(summary))
    }

    /// Stores a batch of validated imports, one profile write per user.
    async fn flush_import(
        &self,
        batch: &mut HashMap<String, Vec<Interaction>>,
    ) -> Result<(), Status> {
        for (user, interactions) in batch.drain() {
            self.store
                .update_profile(&user, |profile| {
                    let mut purchases = Vec::new();
                    for i in &interactions {
                        let at = i
                            .occurred_at
                            .as_ref()
                            .map(|t| t.seconds)
                            .unwrap_or_default();
                        if !i.category.is_empty() {
                            profile
                                .imported_categories
                                .insert(i.product_id.clone(), i.category.clone());
                        }
                        if i.kind == interaction::Kind::Rating as i32 {
                            profile.rate(
                                &i.product_id,
                                Rating {
                                    rating: i.rating,
                                    at,
                                },
                            );
                        } else {
                            purchases.push(ImportedPurchase {
                                product_id: i.product_id.clone(),
                                quantity: i.quantity,
                                at,
                            });
                        }
                    }
                    profile.import(purchases);
                })
                .await?;
        }
        Ok(())
    }
}

/// Checks one imported interaction; normalises ids and category.
fn validate_interaction(mut i: Interaction) -> Result<Interaction, String> {
    i.user_id = domain::id("user_id", &i.user_id).map_err(|e| e.to_string())?;
    i.product_id = domain::id("product_id", &i.product_id).map_err(|e| e.to_string())?;
    match interaction::Kind::try_from(i.kind) {
        Ok(interaction::Kind::Purchase) if i.quantity >= 1 => {}
        Ok(interaction::Kind::Purchase) => return Err("quantity must be at least 1".into()),
        Ok(interaction::Kind::Rating) if (1..=5).contains(&i.rating) => {}
        Ok(interaction::Kind::Rating) => return Err("rating must be 1..5".into()),
        _ => return Err("kind must be PURCHASE or RATING".into()),
    }
    let now = platform::clock::now().millis() / 1000;
    match &i.occurred_at {
        Some(t) if t.seconds > 0 && t.seconds <= now + 86_400 => {}
        Some(_) => return Err("occurred_at must be after 1970 and not in the future".into()),
        None => return Err("occurred_at is required".into()),
    }
    if !i.category.is_empty() {
        i.category = domain::category(&i.category).map_err(|e| e.to_string())?;
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interaction() -> Interaction {
        Interaction {
            user_id: "u1".into(),
            product_id: "p1".into(),
            kind: interaction::Kind::Purchase as i32,
            quantity: 2,
            rating: 0,
            occurred_at: Some(proto::ext::from_secs(1_300_000_000)),
            category: "Gifts".into(),
            line: 7,
        }
    }

    #[test]
    fn imported_interactions_are_checked_field_by_field() {
        let ok = validate_interaction(interaction()).unwrap();
        assert_eq!(ok.category, "gifts");
        let cases: Vec<(fn(&mut Interaction), &str)> = vec![
            (|i| i.user_id.clear(), "user_id"),
            (|i| i.product_id = "a\u{7}".into(), "product_id"),
            (|i| i.quantity = 0, "quantity"),
            (|i| i.kind = 0, "kind"),
            (
                |i| {
                    i.kind = interaction::Kind::Rating as i32;
                    i.rating = 6;
                },
                "rating",
            ),
            (|i| i.occurred_at = None, "occurred_at"),
            (
                |i| i.occurred_at = Some(proto::ext::from_secs(99_999_999_999)),
                "occurred_at",
            ),
        ];
        for (spoil, field) in cases {
            let mut i = interaction();
            spoil(&mut i);
            let err = validate_interaction(i).unwrap_err();
            assert!(err.contains(field), "{err} should name {field}");
        }
    }
}
