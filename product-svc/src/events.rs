//! What product-svc consumes: media-svc's uploads and deletions, which
//! change the images a product shows.

use platform::events::{Delivery, Handler, HandlerError};
use proto::events::envelope::Payload;

use crate::api::ProductApi;

pub const EVENT_TYPES: &[&str] = &["media.uploaded", "media.deleted"];

pub struct ProductEvents {
    pub api: ProductApi,
}

#[async_trait::async_trait]
impl Handler for ProductEvents {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        // Each change is decided by the product document (an image shown
        // once, a removal remembered), so a repeat or any order of arrival
        // ends the same; a store that is down is waited out.
        let outcome = match &delivery.envelope.payload {
            Some(Payload::MediaUploaded(e)) => match &e.media {
                Some(media) => self.api.show_image(media).await,
                None => {
                    return Err(HandlerError::Permanent(
                        "media.uploaded without media".into(),
                    ));
                }
            },
            Some(Payload::MediaDeleted(e)) => self.api.hide_image(&e.product_id, &e.media_id).await,
            _ => {
                return Err(HandlerError::Permanent(format!(
                    "unexpected event {}",
                    delivery.envelope.r#type
                )));
            }
        };
        outcome.map_err(|e| HandlerError::from_store(&e))
    }
}
