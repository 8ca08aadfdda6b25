//! Reviews: one per user and product, kept in step with the product's
//! rating; a first review announces `review.created` through the outbox.

use platform::auth::Caller;
use platform::store::{Query, StoreError};
use proto::events::ReviewCreated;
use proto::events::envelope::Payload;
use proto::product::*;
use tonic::Status;

use super::{ProductApi, invalid, lookup_err, now};
use crate::domain::{self, Review};

fn review_to_proto(id: &str, r: &Review) -> proto::product::Review {
    proto::product::Review {
        id: id.to_string(),
        product_id: r.product_id.clone(),
        user_id: r.user_id.clone(),
        rating: r.rating as u32,
        comment: r.comment.clone(),
        created_at: Some(proto::ext::from_secs(r.created_at)),
    }
}

impl ProductApi {
    /// AddReview: adds the caller's review of a product, or replaces it.
    pub(super) async fn review(
        &self,
        caller: &Caller,
        r: AddReviewRequest,
    ) -> Result<AddReviewResponse, Status> {
        let mut errors = Vec::new();
        let rating = domain::parse_rating(r.rating)
            .map_err(|e| errors.push(e))
            .ok();
        let comment = domain::parse_comment(&r.comment)
            .map_err(|e| errors.push(e))
            .ok();
        let (Some(rating), Some(comment)) = (rating, comment) else {
            return Err(invalid(errors));
        };
        let product_id = r.product_id;
        self.get_product(&product_id).await?;
        let review_id = format!("{product_id}:{}", caller.user_id);
        // A second review by the same user replaces the first.
        let replace = || {
            self.reviews.modify(&review_id, |rv| {
                rv.rating = rating;
                rv.comment = comment.clone();
                rv.updated_at = now().secs();
            })
        };
        let review = match self.reviews.find_by_id(&review_id).await? {
            Some(_) => replace().await?,
            None => {
                let mut review = Review {
                    product_id: product_id.clone(),
                    user_id: caller.user_id.clone(),
                    rating,
                    comment: comment.clone(),
                    created_at: now().secs(),
                    updated_at: now().secs(),
                    outbox: Default::default(),
                };
                review.outbox.stage(&platform::events::event(
                    &review_id,
                    "product-svc",
                    Payload::ReviewCreated(ReviewCreated {
                        review_id: review_id.clone(),
                        product_id: product_id.clone(),
                        user_id: caller.user_id.clone(),
                        rating: rating as u32,
                    }),
                ));
                match self.reviews.insert(&review_id, review).await {
                    Ok(stored) => stored,
                    // Two first reviews at once: the other won; apply ours on top.
                    Err(StoreError::AlreadyExists { .. }) => replace().await?,
                    Err(err) => return Err(err.into()),
                }
            }
        };
        self.review_relay.flush_or_defer(&review_id).await;
        self.recompute_rating(&product_id).await?;
        self.after_write(&[&product_id]).await;
        Ok(AddReviewResponse {
            review: Some(review_to_proto(&review_id, &review.value)),
        })
    }

    /// ListReviews: a product's reviews, oldest first, by cursor.
    pub(super) async fn reviews_page(
        &self,
        r: ListReviewsRequest,
    ) -> Result<ListReviewsResponse, Status> {
        self.get_product(&r.product_id).await?;
        let query = Query::new()
            .eq("product_id", r.product_id.as_str())
            .sort("created_at", true)
            .page(r.page.as_ref());
        let page = self
            .reviews
            .find(&query)
            .await
            .map_err(StoreError::into_list_status)?;
        Ok(ListReviewsResponse {
            reviews: page
                .items
                .iter()
                .map(|rv| review_to_proto(&rv.id, &rv.value))
                .collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        })
    }

    /// Sets the product's rating sum and count from its reviews. The
    /// product's version is read before the reviews, so a concurrent
    /// recomputation that saw fewer reviews loses its CAS and runs again.
    async fn recompute_rating(&self, product_id: &str) -> Result<(), Status> {
        for _ in 0..platform::store::MAX_UPDATE_ATTEMPTS {
            let product = self.get_product(product_id).await?;
            let (mut sum, mut count, mut cursor) = (0i64, 0i64, None);
            loop {
                let page = self
                    .reviews
                    .find(
                        &Query::new()
                            .eq("product_id", product_id)
                            .limit(500)
                            .after(cursor),
                    )
                    .await?;
                for review in &page.items {
                    sum += i64::from(review.value.rating);
                    count += 1;
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            let mut next = product.value;
            next.rating_sum = sum;
            next.rating_count = count;
            match self
                .products
                .replace(product_id, product.version, next)
                .await
            {
                Ok(_) => return Ok(()),
                Err(StoreError::VersionConflict) => continue,
                Err(err) => return Err(lookup_err(err)),
            }
        }
        Err(Status::aborted(
            "too much contention on this product; retry",
        ))
    }
}
