//! gRPC surface of `ShippingService`, and the changes events make.

use std::sync::Arc;

use platform::auth::Caller;
use platform::error::invalid_fields;
use platform::events::outbox::OutboxRelay;
use platform::store::{Collection, Query, StoreError, Versioned};
use proto::events::envelope::Payload;
use proto::shipping::shipping_service_server::ShippingService;
use proto::shipping::*;
use tonic::{Request, Response, Status};

use crate::carrier::Carrier;
use crate::domain::{self, Shipment, Status as St, TrackingEvent, Update, Void};

#[derive(Clone, Debug)]
pub struct ShippingApi {
    pub(crate) shipments: Collection<Shipment>,
    pub(crate) relay: OutboxRelay<Shipment>,
    pub(crate) carrier: Arc<dyn Carrier>,
    /// Verifies who calls.
    pub(crate) mesh: platform::auth::MeshAuth,
}

fn now() -> i64 {
    platform::auth::unix_now() as i64
}

fn ts(secs: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    })
}

pub fn status_to_proto(s: St) -> ShipmentStatus {
    match s {
        St::Pending => ShipmentStatus::Pending,
        St::LabelCreated => ShipmentStatus::LabelCreated,
        St::InTransit => ShipmentStatus::InTransit,
        St::OutForDelivery => ShipmentStatus::OutForDelivery,
        St::Delivered => ShipmentStatus::Delivered,
        St::Cancelled => ShipmentStatus::Cancelled,
    }
}

fn status_from_proto(s: i32) -> Option<St> {
    match ShipmentStatus::try_from(s).ok()? {
        ShipmentStatus::LabelCreated => Some(St::LabelCreated),
        ShipmentStatus::InTransit => Some(St::InTransit),
        ShipmentStatus::OutForDelivery => Some(St::OutForDelivery),
        ShipmentStatus::Delivered => Some(St::Delivered),
        ShipmentStatus::Cancelled => Some(St::Cancelled),
        ShipmentStatus::Pending | ShipmentStatus::Unspecified => None,
    }
}

fn events_to_proto(events: &[TrackingEvent]) -> Vec<ShipmentEvent> {
    events
        .iter()
        .map(|e| ShipmentEvent {
            status: status_to_proto(e.status) as i32,
            at: ts(e.at),
            location: e.location.clone(),
            description: e.description.clone(),
        })
        .collect()
}

pub(crate) fn to_proto(id: &str, s: &Shipment) -> proto::shipping::Shipment {
    proto::shipping::Shipment {
        id: id.to_string(),
        order_id: s.order_id.clone(),
        user_id: s.user_id.clone(),
        status: status_to_proto(s.status) as i32,
        carrier: s.carrier.clone(),
        service: s.service.clone(),
        tracking_number: s.tracking_number.clone().unwrap_or_default(),
        address: Some(proto::common::Address::from(&s.address)),
        weight_grams: s.weight_grams,
        events: events_to_proto(&s.events),
        created_at: ts(s.created_at),
        updated_at: ts(s.updated_at),
        flagged_updates: events_to_proto(&s.flagged_updates),
    }
}

/// Records a move to `status` and stages `shipping.updated` (in the same write).
fn record(id: &str, s: &mut Shipment, status: St, at: i64, location: &str, description: &str) {
    s.status = status;
    s.events.push(TrackingEvent {
        status,
        at,
        location: location.to_string(),
        description: description.to_string(),
    });
    s.updated_at = now();
    let event = platform::events::envelope(
        "shipping.updated",
        &s.order_id,
        "shipping-svc",
        Payload::ShippingUpdated(proto::events::ShippingUpdated {
            shipment_id: id.to_string(),
            order_id: s.order_id.clone(),
            user_id: s.user_id.clone(),
            status: status_to_proto(status) as i32,
            tracking_number: s.tracking_number.clone().unwrap_or_default(),
            carrier: s.carrier.clone(),
            location: location.to_string(),
            status_at: ts(at),
        }),
    );
    s.outbox.stage(&event);
}

impl ShippingApi {
    async fn flush(&self, id: &str) {
        if let Err(err) = self.relay.flush(id).await {
            tracing::warn!(error = %err, shipment = id, "event publish deferred to the outbox sweeper");
        }
    }

    async fn by_order(&self, order_id: &str) -> Result<Option<Versioned<Shipment>>, Status> {
        Ok(self
            .shipments
            .find_one(Query::new().eq("order_id", order_id))
            .await?)
    }

    /// `order.created`: prepare the shipment (once per order).
    pub async fn prepare(&self, order: &proto::events::OrderCreated) -> Result<(), Status> {
        let a = order.shipping_address.clone().unwrap_or_default();
        let shipment = Shipment {
            order_id: order.order_id.clone(),
            user_id: order.user_id.clone(),
            status: St::Pending,
            carrier: String::new(),
            service: String::new(),
            tracking_number: None,
            address: domain::Address::from(a),
            weight_grams: order
                .items
                .iter()
                .map(|i| i.weight_grams * i.quantity)
                .sum(),
            events: vec![TrackingEvent {
                status: St::Pending,
                at: now(),
                location: String::new(),
                description: "awaiting payment".into(),
            }],
            created_at: now(),
            updated_at: now(),
            label_pending_since: None,
            flagged_updates: Vec::new(),
            outbox: Default::default(),
        };
        // One shipment per order (unique index): a redelivery, or an order
        // voided before its creation was seen, leaves the existing one.
        match self
            .shipments
            .insert(&uuid::Uuid::now_v7().to_string(), shipment)
            .await
        {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// `payment.processed`: buy the label (once; the carrier call is keyed
    /// by the shipment id). NotFound while `order.created` is on its way.
    /// The purchase is announced on the shipment first, so a void waits for
    /// it instead of racing it: no label is bought for a voided shipment.
    pub async fn label(&self, order_id: &str) -> Result<(), Status> {
        let shipment = self
            .by_order(order_id)
            .await?
            .ok_or_else(|| Status::not_found("no shipment for this order yet"))?;
        let id = shipment.id.clone();
        let claimed = self
            .shipments
            .update(&id, |s| {
                if s.status != St::Pending {
                    return Err(false);
                }
                let at = now();
                if s.label_pending_since
                    .is_some_and(|t| at - t < domain::LABEL_PURCHASE_SECS)
                {
                    return Err(true);
                }
                s.label_pending_since = Some(at);
                Ok(())
            })
            .await?;
        let shipment = match claimed {
            Ok(claimed) => claimed,
            // Voided, or labelled already.
            Err(false) => return Ok(()),
            Err(true) => {
                return Err(Status::unavailable(
                    "a label is being bought for this shipment",
                ));
            }
        };
        let label = self
            .carrier
            .create_label(
                &shipment.id,
                &shipment.value.address.country,
                shipment.value.weight_grams,
            )
            .await;
        let label = match label {
            Ok(label) => label,
            Err(e) => {
                let _ = self
                    .shipments
                    .modify(&id, |s| s.label_pending_since = None)
                    .await;
                return Err(Status::unavailable(e.to_string()));
            }
        };
        self.shipments
            .modify(&id, |s| {
                s.label_pending_since = None;
                if decide_ok(s.status, St::LabelCreated) {
                    s.carrier = label.carrier.clone();
                    s.service = label.service.clone();
                    s.tracking_number = Some(label.tracking_number.clone());
                    record(&id, s, St::LabelCreated, now(), "", "label created");
                }
            })
            .await?;
        self.flush(&id).await;
        Ok(())
    }

    /// Voids the order's shipment (see `VoidShipment`); an order never seen
    /// gets a cancelled shipment so nothing is prepared for it later.
    pub async fn void(&self, order_id: &str, reason: &str) -> Result<Versioned<Shipment>, Status> {
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
                    created_at: now(),
                    updated_at: now(),
                    label_pending_since: None,
                    flagged_updates: Vec::new(),
                    outbox: Default::default(),
                };
                tombstone.events.push(TrackingEvent {
                    status: St::Cancelled,
                    at: now(),
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
        let id = existing.id.clone();
        let voided = self
            .shipments
            .update(&id, |s| {
                match domain::decide_void(s.status, s.label_pending_since, now()) {
                    Void::Cancel => {
                        s.label_pending_since = None;
                        record(&id, s, St::Cancelled, now(), "", &description);
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
        self.flush(&id).await;
        Ok(voided)
    }

    /// `order.cancelled`: a shipment not yet moving is voided.
    pub async fn cancel(&self, order_id: &str) -> Result<(), Status> {
        match self.void(order_id, "order cancelled").await {
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

    fn may_see(caller: &Caller, s: &Shipment) -> bool {
        caller.is_admin() || caller.is_service() || caller.user_id == s.user_id
    }

    async fn lookup(
        &self,
        shipment_id: Option<&str>,
        order_id: Option<&str>,
        tracking: Option<&str>,
    ) -> Result<Versioned<Shipment>, Status> {
        let found = if let Some(id) = shipment_id {
            self.shipments.find_by_id(id).await.unwrap_or(None)
        } else if let Some(order) = order_id {
            self.by_order(order).await?
        } else if let Some(number) = tracking {
            self.shipments
                .find_one(Query::new().eq("tracking_number", number))
                .await?
        } else {
            return Err(invalid_fields([(
                "lookup",
                "give a shipment id, an order id or a tracking number".to_string(),
            )]));
        };
        found.ok_or_else(|| Status::not_found("shipment not found"))
    }
}

fn decide(current: St, next: St) -> Update {
    domain::decide(current, next)
}

fn decide_ok(current: St, next: St) -> bool {
    domain::decide(current, next) == Update::Advance
}

#[tonic::async_trait]
impl ShippingService for ShippingApi {
    async fn get_shipment(
        &self,
        request: Request<GetShipmentRequest>,
    ) -> Result<Response<GetShipmentResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let shipment = match request.into_inner().lookup {
            Some(get_shipment_request::Lookup::ShipmentId(id)) => {
                self.lookup(Some(&id), None, None).await?
            }
            Some(get_shipment_request::Lookup::OrderId(id)) => {
                self.lookup(None, Some(&id), None).await?
            }
            None => self.lookup(None, None, None).await?,
        };
        if !Self::may_see(&caller, &shipment.value) {
            return Err(Status::not_found("shipment not found"));
        }
        Ok(Response::new(GetShipmentResponse {
            shipment: Some(to_proto(&shipment.id, &shipment.value)),
        }))
    }

    async fn track_shipment(
        &self,
        request: Request<TrackShipmentRequest>,
    ) -> Result<Response<TrackShipmentResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let s = match request.into_inner().lookup {
            Some(track_shipment_request::Lookup::ShipmentId(id)) => {
                self.lookup(Some(&id), None, None).await?
            }
            Some(track_shipment_request::Lookup::OrderId(id)) => {
                self.lookup(None, Some(&id), None).await?
            }
            Some(track_shipment_request::Lookup::TrackingNumber(n)) => {
                self.lookup(None, None, Some(&n)).await?
            }
            None => self.lookup(None, None, None).await?,
        };
        if !Self::may_see(&caller, &s.value) {
            return Err(Status::not_found("shipment not found"));
        }
        let days = domain::rates(&s.value.address.country, s.value.weight_grams)[0].3 as i64;
        let estimated = s
            .value
            .events
            .iter()
            .find(|e| e.status == St::LabelCreated)
            .map(|e| e.at + days * 86_400);
        Ok(Response::new(TrackShipmentResponse {
            shipment_id: s.id.clone(),
            order_id: s.value.order_id.clone(),
            status: status_to_proto(s.value.status) as i32,
            carrier: s.value.carrier.clone(),
            tracking_number: s.value.tracking_number.clone().unwrap_or_default(),
            events: events_to_proto(&s.value.events),
            estimated_delivery: estimated.and_then(ts),
        }))
    }

    async fn update_shipment_status(
        &self,
        request: Request<UpdateShipmentStatusRequest>,
    ) -> Result<Response<UpdateShipmentStatusResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        caller.require_admin_or_service()?;
        let r = request.into_inner();
        let next = status_from_proto(r.status)
            .ok_or_else(|| invalid_fields([("status", "must be a carrier status".to_string())]))?;
        let shipment = match r.target {
            Some(update_shipment_status_request::Target::ShipmentId(id)) => {
                self.lookup(Some(&id), None, None).await?
            }
            Some(update_shipment_status_request::Target::TrackingNumber(n)) => {
                self.lookup(None, None, Some(&n)).await?
            }
            None => {
                return Err(invalid_fields([(
                    "target",
                    "give a shipment id or a tracking number".to_string(),
                )]));
            }
        };
        let at = r.occurred_at.map(|t| t.seconds).unwrap_or_else(now);
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
                    s.updated_at = now();
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
        self.flush(&id).await;
        Ok(Response::new(UpdateShipmentStatusResponse {
            shipment: Some(to_proto(&id, &updated.value)),
        }))
    }

    async fn void_shipment(
        &self,
        request: Request<VoidShipmentRequest>,
    ) -> Result<Response<VoidShipmentResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        caller.require_admin_or_service()?;
        let r = request.into_inner();
        let shipment = self.void(&r.order_id, r.reason.trim()).await?;
        Ok(Response::new(VoidShipmentResponse {
            shipment: Some(to_proto(&shipment.id, &shipment.value)),
        }))
    }

    async fn quote_shipping(
        &self,
        request: Request<QuoteShippingRequest>,
    ) -> Result<Response<QuoteShippingResponse>, Status> {
        let r = request.into_inner();
        let country = r.destination.map(|a| a.country).unwrap_or_default();
        if country.len() != 2 {
            return Err(invalid_fields([(
                "destination.country",
                "must be a two-letter code".to_string(),
            )]));
        }
        let currency = if r.currency.is_empty() {
            "USD".to_string()
        } else {
            r.currency.to_ascii_uppercase()
        };
        if currency != "USD" {
            return Err(invalid_fields([(
                "currency",
                "rates are quoted in USD".to_string(),
            )]));
        }
        let rates = domain::rates(&country, r.weight_grams)
            .into_iter()
            .map(|(carrier, service, cents, days)| Rate {
                carrier: carrier.into(),
                service: service.into(),
                amount: Some(proto::common::Money {
                    amount: cents,
                    currency: currency.clone(),
                }),
                estimated_days: days,
            })
            .collect();
        Ok(Response::new(QuoteShippingResponse { rates }))
    }
}
