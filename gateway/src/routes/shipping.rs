//! `/api/v1/orders/{id}/shipment` and the carrier webhook.

use axum::Json;
use axum::extract::{Path, Request, State};
use platform::{ErrorKind, ServiceId};
use proto::ext::{Required as _, ShortName as _};
use proto::shipping::shipping_service_client::ShippingServiceClient;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::rfc3339;
use super::grpc;
use crate::extract::{AuthUser, body_bytes, parse_json};
use crate::problem::Problem;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct TrackingEventOut {
    pub status: String,
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShipmentOut {
    pub id: String,
    pub order_id: String,
    /// PENDING, LABEL_CREATED, IN_TRANSIT, OUT_FOR_DELIVERY, DELIVERED or CANCELLED.
    pub status: String,
    pub carrier: String,
    pub tracking_number: String,
    pub events: Vec<TrackingEventOut>,
}

fn status_name(s: i32) -> String {
    proto::shipping::ShipmentStatus::try_from(s)
        .map(|s| s.short_name().to_string())
        .unwrap_or_else(|_| "UNKNOWN".into())
}

impl From<proto::shipping::Shipment> for ShipmentOut {
    fn from(s: proto::shipping::Shipment) -> Self {
        Self {
            id: s.id,
            order_id: s.order_id,
            status: status_name(s.status),
            carrier: s.carrier,
            tracking_number: s.tracking_number,
            events: s
                .events
                .into_iter()
                .map(|e| TrackingEventOut {
                    status: status_name(e.status),
                    at: rfc3339(e.at),
                    location: Some(e.location).filter(|l| !l.is_empty()),
                })
                .collect(),
        }
    }
}

/// A carrier's status update.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CarrierUpdate {
    pub tracking_number: String,
    /// IN_TRANSIT, OUT_FOR_DELIVERY or DELIVERED.
    pub status: String,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub description: String,
}

fn shipping(state: &AppState) -> ShippingServiceClient<platform::grpc::GrpcChannel> {
    ShippingServiceClient::new(state.channel(ServiceId::Shipping))
}

/// The shipment of an order (404 for other users' orders).
#[utoipa::path(get, path = "/api/v1/orders/{id}/shipment", tag = "orders", security(("bearer" = [])), params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "The shipment", body = ShipmentOut),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown, not yours, or not prepared yet", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn shipment(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<ShipmentOut>, Problem> {
    uuid::Uuid::parse_str(&id).map_err(|_| Problem::new(ErrorKind::NotFound, "order not found"))?;
    let request = proto::shipping::GetShipmentRequest {
        lookup: Some(proto::shipping::get_shipment_request::Lookup::OrderId(id)),
    };
    let r = shipping(&state)
        .get_shipment(grpc(request, Some(&user.caller())))
        .await?
        .into_inner();
    Ok(Json(ShipmentOut::from(r.shipment.required("shipment")?)))
}

fn hex_decode(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The `X-Signature` value for `body` under `secret` (for carriers and tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `body`
/// under `secret`, compared in constant time.
pub fn signature_valid(secret: &[u8], body: &[u8], signature: &str) -> bool {
    use hmac::{Hmac, Mac};
    let Some(expected) = signature
        .trim()
        .strip_prefix("sha256=")
        .and_then(hex_decode)
    else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Carrier status updates, signed with `X-Signature: sha256=<hex HMAC-SHA256 of the body>`.
/// Shipments only move forward: replays and late updates change nothing.
#[utoipa::path(post, path = "/api/v1/shipping/webhook", tag = "orders", request_body = CarrierUpdate,
    params(("X-Signature" = String, Header, description = "sha256=<hex HMAC-SHA256 of the raw body>")),
    responses(
        (status = 200, description = "Applied (or already applied)", body = ShipmentOut),
        (status = 401, description = "Missing or bad signature", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tracking number", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not possible in the shipment's state", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid update", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn webhook(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<ShipmentOut>, Problem> {
    let signature = request
        .headers()
        .get("x-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = body_bytes(request, &state).await?;
    let valid = state
        .config()
        .integrations
        .shipping_webhook_secret
        .as_ref()
        .is_some_and(|secret| signature_valid(secret.expose().as_bytes(), &bytes, &signature));
    if !valid {
        return Err(Problem::new(
            ErrorKind::Unauthenticated,
            "missing or invalid X-Signature",
        ));
    }
    let update: CarrierUpdate = parse_json(&bytes)?;
    let status = proto::shipping::ShipmentStatus::from_str_name(&format!(
        "SHIPMENT_STATUS_{}",
        update.status.to_ascii_uppercase()
    ))
    .filter(|s| {
        matches!(
            s,
            proto::shipping::ShipmentStatus::InTransit
                | proto::shipping::ShipmentStatus::OutForDelivery
                | proto::shipping::ShipmentStatus::Delivered
        )
    })
    .ok_or_else(|| {
        Problem::new(ErrorKind::InvalidArgument, "unknown status").with_errors(vec![
            crate::problem::FieldError {
                field: "status".into(),
                message: "must be IN_TRANSIT, OUT_FOR_DELIVERY or DELIVERED".into(),
            },
        ])
    })?;
    let request = proto::shipping::UpdateShipmentStatusRequest {
        target: Some(
            proto::shipping::update_shipment_status_request::Target::TrackingNumber(
                update.tracking_number,
            ),
        ),
        status: status as i32,
        location: update.location,
        occurred_at: None,
        description: update.description,
    };
    // The carrier proved itself with the signature; the gateway vouches for
    // the update with its own service token.
    let r = shipping(&state)
        .update_shipment_status(state.mesh().request(request))
        .await?
        .into_inner();
    Ok(Json(ShipmentOut::from(r.shipment.required("shipment")?)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn signatures_are_checked() {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(b"{}");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(super::signature_valid(
            b"secret",
            b"{}",
            &format!("sha256={hex}")
        ));
        assert!(!super::signature_valid(
            b"other",
            b"{}",
            &format!("sha256={hex}")
        ));
        assert!(!super::signature_valid(
            b"secret",
            b"{ }",
            &format!("sha256={hex}")
        ));
        for bad in ["", "sha256=", "sha256=zz", &hex, "md5=00"] {
            assert!(!super::signature_valid(b"secret", b"{}", bad), "{bad}");
        }
    }
}
