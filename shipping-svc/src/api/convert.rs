//! Domain shipments and statuses as their proto messages, and back.

use proto::shipping::{ShipmentEvent, ShipmentStatus};

use crate::domain::{Shipment, Status as St, TrackingEvent};

pub(super) fn ts(secs: i64) -> Option<prost_types::Timestamp> {
    Some(proto::ext::from_secs(secs))
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

pub(super) fn status_from_proto(s: i32) -> Option<St> {
    match ShipmentStatus::try_from(s).ok()? {
        ShipmentStatus::LabelCreated => Some(St::LabelCreated),
        ShipmentStatus::InTransit => Some(St::InTransit),
        ShipmentStatus::OutForDelivery => Some(St::OutForDelivery),
        ShipmentStatus::Delivered => Some(St::Delivered),
        ShipmentStatus::Cancelled => Some(St::Cancelled),
        ShipmentStatus::Pending | ShipmentStatus::Unspecified => None,
    }
}

pub(super) fn events_to_proto(events: &[TrackingEvent]) -> Vec<ShipmentEvent> {
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
