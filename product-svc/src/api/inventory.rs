//! Stock: an admin's stock changes, and the order saga's reserve, release
//! and commit of an order's reservation (the moves themselves live in
//! `crate::stock`).

use platform::error::invalid_fields;
use proto::product::*;
use tonic::Status;

use super::{ProductApi, lookup_err, now, to_proto};
use crate::domain::{Reservation, ReservationState};

fn reservation_to_proto(order_id: &str, r: &Reservation) -> proto::product::Reservation {
    use ReservationState::*;
    let status = match r.state {
        Reserving | Active => ReservationStatus::Active,
        Committing | Committed => ReservationStatus::Committed,
        Releasing | Released | Restocking | Restocked => ReservationStatus::Released,
    };
    proto::product::Reservation {
        order_id: order_id.to_string(),
        lines: r
            .lines
            .iter()
            .map(|(p, q)| StockLine {
                product_id: p.clone(),
                quantity: *q as u32,
            })
            .collect(),
        status: status as i32,
        created_at: Some(proto::ext::from_secs(r.created_at)),
        updated_at: Some(proto::ext::from_secs(r.updated_at)),
    }
}

/// Counts a reservation move under `outcome` and answers with the
/// reservation as it now stands.
fn moved(
    order_id: &str,
    reservation: &Reservation,
    outcome: &str,
) -> Option<proto::product::Reservation> {
    platform::metrics::count(&platform::metrics::RESERVATIONS, &[outcome]);
    Some(reservation_to_proto(order_id, reservation))
}

impl ProductApi {
    /// UpdateStock: an absolute level or a delta, never below what is
    /// reserved.
    pub(super) async fn set_stock(
        &self,
        r: UpdateStockRequest,
    ) -> Result<UpdateStockResponse, Status> {
        let (absolute, delta) = match r.change {
            Some(update_stock_request::Change::Stock(s)) => (Some(i64::from(s)), None),
            Some(update_stock_request::Change::Delta(d)) => (None, Some(i64::from(d))),
            None => {
                return Err(invalid_fields([(
                    "stock",
                    "give stock or delta".to_string(),
                )]));
            }
        };
        let id = r.product_id;
        let updated = self
            .products
            .update(&id, |p| {
                let before = p.stock_available;
                p.set_stock(absolute, delta)?;
                p.updated_at = now().secs();
                self.stock.stage_low_stock(&id, p, before);
                Ok(())
            })
            .await
            .map_err(lookup_err)?
            .map_err(|e| crate::stock::stock_error(&id, e))?;
        self.after_write(&[&id]).await;
        Ok(UpdateStockResponse {
            product: Some(to_proto(&id, &updated.value)),
        })
    }

    /// ReserveStock.
    pub(super) async fn reserve_lines(
        &self,
        r: ReserveStockRequest,
    ) -> Result<ReserveStockResponse, Status> {
        if r.order_id.trim().is_empty() || r.order_id.len() > 128 {
            return Err(invalid_fields([("order_id", "is required".to_string())]));
        }
        let lines = crate::stock::merge_lines(&r.lines)?;
        let (reservation, products) = self.stock.reserve(&r.order_id, lines).await?;
        Ok(ReserveStockResponse {
            reservation: moved(&r.order_id, &reservation, "held"),
            products,
        })
    }

    /// ReleaseStock.
    pub(super) async fn release_order(
        &self,
        r: ReleaseStockRequest,
    ) -> Result<ReleaseStockResponse, Status> {
        let reservation = self.stock.release(&r.order_id).await?;
        Ok(ReleaseStockResponse {
            reservation: moved(&r.order_id, &reservation, "released"),
        })
    }

    /// CommitStock.
    pub(super) async fn commit_order(
        &self,
        r: CommitStockRequest,
    ) -> Result<CommitStockResponse, Status> {
        let reservation = self.stock.commit(&r.order_id).await?;
        Ok(CommitStockResponse {
            reservation: moved(&r.order_id, &reservation, "committed"),
        })
    }
}
