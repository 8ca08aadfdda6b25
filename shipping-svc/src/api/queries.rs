//! Reading shipments (by id, order or tracking number) and quoting rates.

use platform::auth::Caller;
use platform::error::invalid_fields;
use platform::store::{Query, Versioned};
use proto::shipping::*;
use tonic::Status;

use super::ShippingApi;
use super::convert::{events_to_proto, status_to_proto, to_proto, ts};
use crate::domain::{self, Shipment, Status as St};

impl ShippingApi {
    fn may_see(caller: &Caller, s: &Shipment) -> bool {
        caller.is_admin() || caller.user_id == s.user_id
    }

    /// The shipment when `caller` may see it; NotFound otherwise, as if
    /// there were none.
    fn seen_by(
        caller: &Caller,
        shipment: Versioned<Shipment>,
    ) -> Result<Versioned<Shipment>, Status> {
        if !Self::may_see(caller, &shipment.value) {
            return Err(Status::not_found("shipment not found"));
        }
        Ok(shipment)
    }

    pub(super) async fn lookup(
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

    /// `GetShipment`: by shipment or order id.
    pub(super) async fn shipment(
        &self,
        caller: &Caller,
        lookup: Option<get_shipment_request::Lookup>,
    ) -> Result<GetShipmentResponse, Status> {
        let shipment = match lookup {
            Some(get_shipment_request::Lookup::ShipmentId(id)) => {
                self.lookup(Some(&id), None, None).await?
            }
            Some(get_shipment_request::Lookup::OrderId(id)) => {
                self.lookup(None, Some(&id), None).await?
            }
            None => self.lookup(None, None, None).await?,
        };
        let shipment = Self::seen_by(caller, shipment)?;
        Ok(GetShipmentResponse {
            shipment: Some(to_proto(&shipment.id, &shipment.value)),
        })
    }

    /// `TrackShipment`: the tracking history and an estimated delivery.
    pub(super) async fn tracking(
        &self,
        caller: &Caller,
        lookup: Option<track_shipment_request::Lookup>,
    ) -> Result<TrackShipmentResponse, Status> {
        let s = match lookup {
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
        let s = Self::seen_by(caller, s)?;
        let days = domain::rates(&s.value.address.country, s.value.weight_grams)[0].3 as i64;
        let estimated = s
            .value
            .events
            .iter()
            .find(|e| e.status == St::LabelCreated)
            .map(|e| e.at + days * 86_400);
        Ok(TrackShipmentResponse {
            shipment_id: s.id.clone(),
            order_id: s.value.order_id.clone(),
            status: status_to_proto(s.value.status) as i32,
            carrier: s.value.carrier.clone(),
            tracking_number: s.value.tracking_number.clone().unwrap_or_default(),
            events: events_to_proto(&s.value.events),
            estimated_delivery: estimated.and_then(ts),
        })
    }

    /// `QuoteShipping`: the carriers' rates to a country, in USD.
    pub(super) fn quote(&self, r: QuoteShippingRequest) -> Result<QuoteShippingResponse, Status> {
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
                amount: Some(proto::common::Money::new(cents, &currency)),
                estimated_days: days,
            })
            .collect();
        Ok(QuoteShippingResponse { rates })
    }
}
