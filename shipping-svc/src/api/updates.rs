//! Changes after the label: carrier status updates, and voiding a shipment
//! (on request, or when its order is cancelled).

use std::time::Duration;

use platform::deadline::Budget;
use platform::error::invalid_fields;
use platform::store::{StoreError, Versioned};
use proto::shipping::update_shipment_status_request::Target;
use proto::shipping::{UpdateShipmentStatusRequest, UpdateShipmentStatusResponse};
use tonic::Status;

use super::convert::{status_from_proto, to_proto};
use super::{ShippingApi, now, record};
use crate::domain::{self, Shipment, Status as St, TrackingEvent, Update, Void};

/// How often a void waiting for a label purchase looks again.
const LABEL_POLL: Duration = Duration::from_millis(25);

/// The longest a void waits for a label purchase under way (longer than
/// the carrier call's timeout): `order.cancelled`'s wait, and
/// `VoidShipment`'s when its caller set no deadline.
pub(super) const VOID_WAIT: Duration = Duration::from_secs(12);

fn decide(current: St, next: St) -> Update {
    domain::decide(current, next)
}

impl ShippingApi {
    /// `UpdateShipmentStatus` once the caller is known to be allowed: moves
    /// the shipment forward, or records what the carrier said about a
    /// voided one.
    pub(super) async fn apply_carrier_update(
        &self,
        r: UpdateShipmentStatusRequest,
    ) -> Result<UpdateShipmentStatusResponse, Status> {
        let next = status_from_proto(r.status)
            .ok_or_else(|| invalid_fields([("status", "must be a carrier status".to_string())]))?;
        let shipment = match r.target {
            Some(Target::ShipmentId(id)) => self.lookup(Some(&id), None, None).await?,
            Some(Target::TrackingNumber(n)) => self.lookup(None, None, Some(&n)).await?,
            None => {
                return Err(invalid_fields([(
                    "target",
                    "give a shipment id or a tracking number".to_string(),
                )]));
            }
        };
        let at = r
            .occurred_at
            .map(|t| t.seconds)
            .unwrap_or_else(|| now().secs());
        let location: String = r.location.chars().take(200).collect();
        let description: String = r.description.chars().take(500).collect();
        let id = shipment.id.clone();
        let updated = self
            .shipments
            .update(&id, |s| match decide(s.status, next) {
                // The shipment was voided: the carrier says otherwise.
                // Keep what it said for people to look at; apply nothing.
                _ if s.status == St::Cancelled && next != St::Cancelled => {
                    s.flagged_updates.push(TrackingEvent {
                        status: next,
                        at,
                        location: location.clone(),
                        description: description.clone(),
                    });
                    if s.flagged_updates.len() > 50 {
                        s.flagged_updates.remove(0);
                    }
                    s.updated_at = now().secs();
                    tracing::warn!(shipment = %id, status = ?next, "carrier update for a voided shipment recorded, not applied");
                    Ok(())
                }
                Update::Advance => {
                    record(&id, s, next, at, &location, &description);
                    Ok(())
                }
                Update::Ignore => Ok(()),
                Update::Refuse => Err(Status::failed_precondition(format!(
                    "a {:?} shipment cannot become {next:?}",
                    s.status
                ))),
            })
            .await??;
        self.relay.flush_or_defer(&id).await;
        Ok(UpdateShipmentStatusResponse {
            shipment: Some(to_proto(&id, &updated.value)),
        })
    }

    /// Voids the order's shipment (see `VoidShipment`); an order never seen
    /// gets a cancelled shipment so nothing is prepared for it later.
    pub async fn void(
        &self,
        order_id: &str,
        reason: &str,
        budget: &Budget,
    ) -> Result<Versioned<Shipment>, Status> {
        if order_id.trim().is_empty() || order_id.len() > 128 {
            return Err(invalid_fields([("order_id", "is required".to_string())]));
        }
        let description = if reason.is_empty() {
            "order cancelled".to_string()
        } else {
            reason.chars().take(200).collect()
        };
        let existing = match self.by_order(order_id).await? {
            Some(existing) => existing,
            None => {
                let mut tombstone = Shipment {
                    order_id: order_id.to_string(),
                    user_id: String::new(),
                    status: St::Cancelled,
                    carrier: String::new(),
                    service: String::new(),
                    tracking_number: None,
                    address: domain::Address::default(),
                    weight_grams: 0,
                    events: Vec::new(),
                    created_at: now().secs(),
                    updated_at: now().secs(),
                    label_pending_since: None,
                    flagged_updates: Vec::new(),
                    outbox: Default::default(),
                };
                tombstone.events.push(TrackingEvent {
                    status: St::Cancelled,
                    at: now().secs(),
                    location: String::new(),
                    description: format!("{description} before the shipment was prepared"),
                });
                let id = uuid::Uuid::now_v7().to_string();
                match self.shipments.insert(&id, tombstone).await {
                    Ok(stored) => return Ok(stored),
                    Err(StoreError::AlreadyExists { .. }) => self
                        .by_order(order_id)
                        .await?
                        .ok_or_else(|| Status::aborted("the shipment is being created; retry"))?,
                    Err(err) => return Err(err.into()),
                }
            }
        };
        // A label being bought is waited for (within the caller's budget),
        // then voided with the shipment: a cancel sent right after paying
        // meets that purchase often, and should not be told to retry.
        let mut existing = existing;
        while domain::decide_void(
            existing.value.status,
            existing.value.label_pending_since,
            now().secs(),
        ) == Void::Wait
            && budget.remaining() > LABEL_POLL * 2
        {
            tokio::time::sleep(LABEL_POLL).await;
            existing = self
                .by_order(order_id)
                .await?
                .ok_or_else(|| Status::aborted("the shipment went away; retry"))?;
        }
        // A void of a void (`order.cancelled` after the cancel's own void)
        // answers the shipment as it is, without a write (publishing what
        // an earlier write may have left staged).
        if domain::decide_void(
            existing.value.status,
            existing.value.label_pending_since,
            now().secs(),
        ) == Void::AlreadyVoid
        {
            return Ok(self.relay.flush_or_defer_written(existing).await);
        }
        let id = existing.id.clone();
        let voided = self
            .shipments
            .update_from(existing, |s| {
                match domain::decide_void(s.status, s.label_pending_since, now().secs()) {
                    Void::Cancel => {
                        s.label_pending_since = None;
                        record(&id, s, St::Cancelled, now().secs(), "", &description);
                        Ok(())
                    }
                    Void::AlreadyVoid => Ok(()),
                    Void::Wait => Err(Status::aborted(
                        "a label is being bought for this shipment; retry shortly",
                    )),
                    Void::TooLate => Err(Status::failed_precondition(
                        "the carrier has the parcel; the shipment can no longer be voided",
                    )),
                }
            })
            .await??;
        Ok(self.relay.flush_or_defer_written(voided).await)
    }

    /// `order.cancelled`: a shipment not yet moving is voided.
    pub async fn cancel(&self, order_id: &str) -> Result<(), Status> {
        let budget = Budget::new(VOID_WAIT);
        match self.void(order_id, "order cancelled", &budget).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                tracing::warn!(
                    order = order_id,
                    "an order was cancelled after its parcel left"
                );
                Ok(())
            }
            Err(status) => Err(status),
        }
    }
}
