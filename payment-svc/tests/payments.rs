//! payment-svc over real gRPC: reconciliation after a lost provider answer,
//! one charge per order under concurrency, and the Stripe adapter against a
//! local fake of Stripe's API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use payment_svc::provider::{
    ChargeOutcome, ChargeRequest, PaymentProvider, SimulatedProvider, StripeProvider,
};
use platform::Running;
use platform::events::memory::InProcessBus;
use platform::runtime::Deps;
use proto::payment::payment_service_client::PaymentServiceClient;
use proto::payment::*;
use tonic::Code;

type Client = PaymentServiceClient<platform::grpc::GrpcChannel>;

async fn start(
    vars: &[(&str, &str)],
    provider: Option<Arc<SimulatedProvider>>,
) -> (Running, Client, InProcessBus) {
    let service = platform::testing::TestService::new("payment-svc", false, vars);
    let config = &service.config;
    let bus = InProcessBus::new("shop");
    let listener = platform::testing::TestService::listener().await;
    let deps = Deps {
        bus: Arc::new(bus.clone()),
    };
    let provider: Arc<dyn PaymentProvider> = match provider {
        Some(p) => p,
        None => payment_svc::provider(config).unwrap(),
    };
    let running = payment_svc::serve_with(
        config.clone(),
        listener,
        deps,
        provider,
        Duration::ZERO,
        Duration::from_millis(100),
    )
    .await
    .unwrap();
    let client = PaymentServiceClient::new(service.channel(running.addr()));
    (running, client, bus)
}

fn create(order: &str, key: &str, number: &str) -> CreatePaymentRequest {
    CreatePaymentRequest {
        order_id: order.into(),
        user_id: "user-1".into(),
        amount: Some(proto::common::Money {
            amount: 2599,
            currency: "USD".into(),
        }),
        idempotency_key: key.into(),
        card: Some(Card {
            number: number.into(),
            exp_month: 12,
            exp_year: 2031,
            cvc: "123".into(),
        }),
    }
}

fn admin<T>(message: T) -> tonic::Request<T> {
    platform::testing::identity().as_user(message, "admin", "admin")
}

/// A request as the order saga (order-svc) sends it.
fn saga<T>(message: T) -> tonic::Request<T> {
    platform::testing::identity().as_service(message, "order-svc")
}

/// Charges `request` as the order saga and returns the payment it answers.
async fn charged(client: &mut Client, request: CreatePaymentRequest) -> Payment {
    client
        .create_payment(saga(request))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap()
}

#[tokio::test]
async fn only_the_order_saga_may_charge() {
    let (running, mut client, _bus) = start(&[], None).await;
    let identity = platform::testing::identity();
    let attempts = [
        (
            "anonymous",
            tonic::Request::new(create("o", "k", "4242424242424242")),
            tonic::Code::Unauthenticated,
        ),
        (
            "a customer",
            identity.as_user(create("o", "k", "4242424242424242"), "user-1", "customer"),
            tonic::Code::PermissionDenied,
        ),
        (
            "an admin",
            admin(create("o", "k", "4242424242424242")),
            tonic::Code::PermissionDenied,
        ),
        (
            "another service",
            identity.as_service(create("o", "k", "4242424242424242"), "shipping-svc"),
            tonic::Code::PermissionDenied,
        ),
    ];
    for (who, request, code) in attempts {
        let status = client.create_payment(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{who}: {status:?}");
    }
    let mut forged = tonic::Request::new(create("o", "k", "4242424242424242"));
    forged
        .metadata_mut()
        .insert("x-user-id", "svc:order-svc".parse().unwrap());
    forged
        .metadata_mut()
        .insert("x-user-roles", "service".parse().unwrap());
    assert_eq!(
        client.create_payment(forged).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    let paid = client
        .create_payment(saga(create("o", "k", "4242424242424242")))
        .await
        .unwrap()
        .into_inner();
    assert!(paid.payment.is_some());
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_provider_answer_is_reconciled_without_a_second_charge() {
    let provider = Arc::new(SimulatedProvider::new());
    let (running, mut client, bus) = start(&[], Some(provider.clone())).await;
    provider.lose_responses(1);
    let status = client
        .create_payment(saga(create("order-1", "key-1", "4242424242424242")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);

    let deadline = Instant::now() + Duration::from_secs(10);
    let payment = loop {
        let listed = client
            .list_payments(admin(ListPaymentsRequest {
                order_id: "order-1".into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        if let Some(p) = listed
            .payments
            .into_iter()
            .find(|p| p.status == PaymentStatus::Succeeded as i32)
        {
            break p;
        }
        assert!(Instant::now() < deadline, "never reconciled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The client retries with its key: the same payment, no new charge.
    let retried = charged(&mut client, create("order-1", "key-1", "4242424242424242")).await;
    assert_eq!(retried.id, payment.id);
    assert_eq!(provider.charges(), 1, "charged exactly once");
    let deadline = Instant::now() + Duration::from_secs(5);
    while bus.count("shop.payment.processed") < 1 {
        assert!(Instant::now() < deadline, "payment.processed not published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(bus.count("shop.payment.processed"), 1);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_payments_of_one_order_charge_once() {
    let provider = Arc::new(SimulatedProvider::new());
    let (running, client, _) = start(&[], Some(provider.clone())).await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..10 {
        let mut client = client.clone();
        tasks.spawn(async move {
            client
                .create_payment(saga(create(
                    "order-2",
                    &format!("key-{n}"),
                    "4242424242424242",
                )))
                .await
        });
    }
    let mut succeeded = 0;
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(r) => {
                assert_eq!(
                    r.into_inner().payment.unwrap().status,
                    PaymentStatus::Succeeded as i32
                );
                succeeded += 1;
            }
            Err(status) => assert!(
                matches!(status.code(), Code::FailedPrecondition | Code::Aborted),
                "{status:?}"
            ),
        }
    }
    assert_eq!(succeeded, 1);
    assert_eq!(provider.charges(), 1);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_numbers_are_never_stored() {
    let (running, mut client, _) = start(&[], None).await;
    let payment = charged(&mut client, create("order-3", "k", "4242 4242 4242 4242")).await;
    assert_eq!(
        (payment.card_brand.as_str(), payment.card_last4.as_str()),
        ("visa", "4242")
    );
    let bad = client
        .create_payment(saga(create("order-3b", "k", "4242424242424241")))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let mut expired = create("order-3c", "k", "4242424242424242");
    expired.card.as_mut().unwrap().exp_year = 2020;
    assert_eq!(
        client
            .create_payment(saga(expired))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    running.shutdown().await;
}

/// What the fake Stripe saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, HashMap<String, String>, HashMap<String, String>)>>>);

async fn fake_stripe() -> (String, Seen) {
    use axum::extract::{Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    use axum::{Form, Json, Router};
    use serde_json::json;

    fn record(seen: &Seen, path: &str, headers: &HeaderMap, form: &HashMap<String, String>) {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        seen.0
            .lock()
            .unwrap()
            .push((path.to_string(), headers, form.clone()));
    }

    let seen = Seen::default();
    let app = Router::new()
        .route(
            "/v1/payment_intents",
            post(|State(seen): State<Seen>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>| async move {
                record(&seen, "/v1/payment_intents", &headers, &form);
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer sk_test_fake") {
                    return (StatusCode::UNAUTHORIZED, Json(json!({"error": {"type": "invalid_request_error", "message": "bad key"}})));
                }
                match form.get("payment_method_data[card][number]").map(String::as_str) {
                    Some("4000000000000002") => (
                        StatusCode::PAYMENT_REQUIRED,
                        Json(json!({"error": {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline", "message": "Your card was declined."}})),
                    ),
                    _ => (StatusCode::OK, Json(json!({"id": "pi_123", "status": "succeeded"}))),
                }
            }),
        )
        .route(
            "/v1/payment_intents/search",
            get(|State(seen): State<Seen>, headers: HeaderMap, Query(query): Query<HashMap<String, String>>| async move {
                record(&seen, "/v1/payment_intents/search", &headers, &query);
                Json(json!({"data": [{"id": "pi_123", "status": "succeeded"}]}))
            }),
        )
        .route(
            "/v1/refunds",
            post(|State(seen): State<Seen>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>| async move {
                record(&seen, "/v1/refunds", &headers, &form);
                Json(json!({"id": "re_9", "status": "succeeded"}))
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn the_stripe_adapter_speaks_stripe() {
    let (url, seen) = fake_stripe().await;
    let stripe = StripeProvider::new(&url, "sk_test_fake", Duration::from_secs(5)).unwrap();
    let card =
        payment_svc::domain::Card::parse("4242424242424242", 12, 2031, "123", 2026, 1).unwrap();
    let outcome = stripe
        .charge(ChargeRequest {
            key: "pay_1",
            amount: 2599,
            currency: "USD",
            card: &card,
        })
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ChargeOutcome::Succeeded {
            provider_ref: "pi_123".into()
        }
    );
    let declined_card =
        payment_svc::domain::Card::parse("4000000000000002", 12, 2031, "123", 2026, 1).unwrap();
    let declined = stripe
        .charge(ChargeRequest {
            key: "pay_2",
            amount: 100,
            currency: "USD",
            card: &declined_card,
        })
        .await
        .unwrap();
    assert_eq!(
        declined,
        ChargeOutcome::Declined {
            code: "generic_decline".into(),
            reason: "Your card was declined.".into()
        }
    );
    assert_eq!(
        stripe.lookup("pay_1").await.unwrap(),
        Some(ChargeOutcome::Succeeded {
            provider_ref: "pi_123".into()
        })
    );
    assert_eq!(
        stripe.refund("ref_1", "pi_123", 500, "USD").await.unwrap(),
        "re_9"
    );

    let seen = seen.0.lock().unwrap().clone();
    let (path, headers, form) = &seen[0];
    assert_eq!(path, "/v1/payment_intents");
    assert_eq!(
        headers["idempotency-key"], "pay_1",
        "our id is Stripe's idempotency key"
    );
    assert_eq!(headers["authorization"], "Bearer sk_test_fake");
    assert_eq!(
        (
            form["amount"].as_str(),
            form["currency"].as_str(),
            form["confirm"].as_str()
        ),
        ("2599", "usd", "true")
    );
    assert_eq!(form["metadata[payment_id]"], "pay_1");
    assert_eq!(seen[2].2["query"], "metadata['payment_id']:'pay_1'");
    let (_, refund_headers, refund_form) = &seen[3];
    assert_eq!(refund_headers["idempotency-key"], "ref_1");
    assert_eq!(
        (
            refund_form["payment_intent"].as_str(),
            refund_form["amount"].as_str()
        ),
        ("pi_123", "500")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_uses_stripe_when_configured() {
    let (url, _) = fake_stripe().await;
    let (running, mut client, _) = start(
        &[
            ("STRIPE_API_KEY", "sk_test_fake"),
            ("STRIPE_BASE_URL", &url),
        ],
        None,
    )
    .await;
    let payment = charged(&mut client, create("order-4", "k", "4242424242424242")).await;
    assert_eq!(
        (payment.provider.as_str(), payment.provider_ref.as_str()),
        ("stripe", "pi_123")
    );
    assert_eq!(payment.status, PaymentStatus::Succeeded as i32);
    let refund = client
        .process_refund(admin(ProcessRefundRequest {
            payment_id: payment.id.clone(),
            amount: None,
            reason: "test".into(),
            idempotency_key: "r1".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refund.refund.unwrap().provider_ref, "re_9");
    assert_eq!(
        refund.payment.unwrap().status,
        PaymentStatus::Refunded as i32
    );
    running.shutdown().await;
}
