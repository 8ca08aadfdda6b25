//! A product's images: shown when media-svc announces an upload, hidden
//! when it announces a deletion, ordered by admins.

use platform::store::StoreError;
use proto::media::Media;
use proto::product::{SetImageOrderRequest, SetImageOrderResponse};
use tonic::Status;

use super::{ProductApi, image_from_proto, invalid, lookup_err, now, to_proto};

impl ProductApi {
    /// SetImageOrder: the product's images in the order given.
    pub(super) async fn set_image_order(
        &self,
        r: SetImageOrderRequest,
    ) -> Result<SetImageOrderResponse, Status> {
        let id = r.product_id;
        let updated = self
            .products
            .update(&id, |p| {
                p.order_images(&r.image_ids)?;
                p.updated_at = now().secs();
                Ok(())
            })
            .await
            .map_err(lookup_err)?
            .map_err(|e| invalid(vec![e]))?;
        self.after_write(&[&id]).await;
        Ok(SetImageOrderResponse {
            product: Some(to_proto(&id, &updated.value)),
        })
    }

    /// `media.uploaded`: shows the image last. A repeat, an image removed
    /// before its upload was heard of, or a product that is gone changes
    /// nothing.
    pub async fn show_image(&self, media: &Media) -> Result<(), StoreError> {
        let image = image_from_proto(media);
        let shown = self
            .products
            .update(&media.product_id, |p| {
                if p.add_image(image.clone()) {
                    p.updated_at = now().secs();
                    Ok(())
                } else {
                    Err(())
                }
            })
            .await;
        self.changed_images(&media.product_id, shown).await
    }

    /// `media.deleted`: hides the image and remembers it was removed.
    pub async fn hide_image(&self, product_id: &str, media_id: &str) -> Result<(), StoreError> {
        let hidden = self
            .products
            .update(product_id, |p| {
                if p.remove_image(media_id) {
                    p.updated_at = now().secs();
                    Ok(())
                } else {
                    Err(())
                }
            })
            .await;
        self.changed_images(product_id, hidden).await
    }

    async fn changed_images<T>(
        &self,
        product_id: &str,
        outcome: Result<Result<T, ()>, StoreError>,
    ) -> Result<(), StoreError> {
        match outcome {
            Ok(Ok(_)) => {
                // The next read, cached or not, shows the change.
                self.after_write(&[product_id]).await;
                Ok(())
            }
            // Applied before: by a delivery that may have died between its
            // write and making the cached copies stale, so make them stale.
            Ok(Err(())) => {
                self.stock.invalidate(&[product_id]).await;
                Ok(())
            }
            Err(StoreError::NotFound | StoreError::Invalid(_)) => Ok(()),
            Err(err) => Err(err),
        }
    }
}
