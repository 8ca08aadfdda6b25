//! What the carrier's news does to an order: shipped, then delivered.

use tonic::Status;

use super::Saga;
use crate::domain::{OrderEvent, OrderStatus as S};

impl Saga {
    /// `shipping.updated`: the carrier has the parcel, or delivered it.
    pub(crate) async fn on_shipping(
        &self,
        order_id: &str,
        delivered: bool,
        event_id: Option<&str>,
    ) -> Result<(), Status> {
        let _ = self
            .change::<()>(order_id, |o| {
                let now = platform::clock::now().millis();
                let mut changed = false;
                if o.status == S::Paid {
                    // The carrier took it before any cancel could void it.
                    changed |= o.apply(OrderEvent::Shipped, None).is_ok();
                }
                if delivered {
                    changed |= o.apply(OrderEvent::Delivered, event_id).is_ok();
                } else if let Some(e) = event_id
                    && !o.applied_events.iter().any(|x| x == e)
                {
                    o.applied_events.push(e.to_string());
                }
                if !changed {
                    return Err(());
                }
                o.updated_at = now;
                Ok(())
            })
            .await?;
        Ok(())
    }
}
