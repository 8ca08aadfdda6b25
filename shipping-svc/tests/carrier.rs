//! The HTTP carrier adapter against a local fake carrier, and the rate
//! quotes over gRPC.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use shipping_svc::carrier::{Carrier, CarrierError, HttpCarrier, SimulatedCarrier};

#[tokio::test]
async fn the_http_carrier_sends_an_idempotent_label_request() {
    use axum::http::HeaderMap;
    use axum::routing::post;
    use axum::{Json, Router};
    let seen: Arc<Mutex<Vec<(HashMap<String, String>, serde_json::Value)>>> = Arc::default();
    let sink = seen.clone();
    let app = Router::new().route(
        "/labels",
        post(move |headers: HeaderMap, Json(body): Json<serde_json::Value>| {
            let sink = sink.clone();
            async move {
                let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string())).collect();
                sink.lock().unwrap().push((headers, body));
                Json(serde_json::json!({"carrier": "acme", "service": "ground", "tracking_number": "ACME123"}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let carrier = HttpCarrier::new(&url, Some("carrier-key".into())).unwrap();
    let label = carrier.create_label("ship-1", "US", 1200).await.unwrap();
    assert_eq!(
        (
            label.carrier.as_str(),
            label.service.as_str(),
            label.tracking_number.as_str()
        ),
        ("acme", "ground", "ACME123")
    );
    {
        let seen = seen.lock().unwrap();
        let (headers, body) = &seen[0];
        assert_eq!(headers["idempotency-key"], "ship-1");
        assert_eq!(headers["authorization"], "Bearer carrier-key");
        assert_eq!(
            body,
            &serde_json::json!({"reference": "ship-1", "country": "US", "weight_grams": 1200})
        );
    }

    let down = HttpCarrier::new("http://127.0.0.1:1", None).unwrap();
    assert!(
        matches!(
            down.create_label("ship-2", "US", 1).await,
            Err(CarrierError::Unavailable(_))
        ),
        "an unreachable carrier is an outage, not a label"
    );
}

#[tokio::test]
async fn carrier_failures_are_told_apart_outage_from_refusal() {
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;
    let app = Router::new()
        .route(
            "/busy/labels",
            post(|| async { StatusCode::SERVICE_UNAVAILABLE }),
        )
        .route(
            "/slow-down/labels",
            post(|| async { StatusCode::TOO_MANY_REQUESTS }),
        )
        .route(
            "/refuse/labels",
            post(|| async { StatusCode::UNPROCESSABLE_ENTITY }),
        )
        .route("/garbled/labels", post(|| async { "not json" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    for (path, outage) in [
        ("busy", true),
        ("slow-down", true),
        ("refuse", false),
        ("garbled", false),
    ] {
        let carrier = HttpCarrier::new(&format!("{url}/{path}"), None).unwrap();
        let failure = carrier.create_label("ship-3", "US", 1).await.unwrap_err();
        assert_eq!(
            matches!(failure, CarrierError::Unavailable(_)),
            outage,
            "{path}: {failure:?}"
        );
    }
}

#[tokio::test]
async fn simulated_tracking_numbers_are_deterministic() {
    let a = SimulatedCarrier
        .create_label("ship-1", "US", 1)
        .await
        .unwrap();
    let b = SimulatedCarrier
        .create_label("ship-1", "US", 1)
        .await
        .unwrap();
    let c = SimulatedCarrier
        .create_label("ship-2", "US", 1)
        .await
        .unwrap();
    assert_eq!(a, b, "asking again gives the same label");
    assert_ne!(a.tracking_number, c.tracking_number);
}

#[tokio::test]
async fn quotes_over_grpc() {
    use proto::shipping::QuoteShippingRequest;
    use proto::shipping::shipping_service_client::ShippingServiceClient;
    let service = platform::testing::TestService::new("shipping-svc", false, &[]);
    let config = &service.config;
    let listener = platform::testing::TestService::listener().await;
    let deps = platform::runtime::Deps {
        bus: Arc::new(platform::events::memory::InProcessBus::new("shop")),
    };
    let running = shipping_svc::serve(config.clone(), listener, deps)
        .await
        .unwrap();
    let mut client = ShippingServiceClient::new(service.channel(running.addr()));
    let destination = |country: &str| {
        Some(proto::common::Address {
            country: country.into(),
            ..Default::default()
        })
    };
    let rates = client
        .quote_shipping(QuoteShippingRequest {
            destination: destination("US"),
            weight_grams: 1500,
            currency: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .rates;
    assert_eq!(rates.len(), 2);
    assert_eq!(rates[0].amount.as_ref().unwrap().amount, 499 + 2 * 150);
    let bad = client
        .quote_shipping(QuoteShippingRequest {
            destination: destination("USA"),
            weight_grams: 1,
            currency: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    running.shutdown().await;
}
