//! Rules a service states hold whoever calls it, not only behind the
//! gateway: straight at the service ports on Postgres, text with a NUL
//! (which Postgres cannot store) is INVALID_ARGUMENT and nothing is
//! reserved; one order cannot name a product twice; an admin's
//! idempotency key cannot be taken for one order-svc makes itself; a
//! component's key is good only for the calls that component makes.

mod common;

use common::backends::Backends;
use platform::ServiceId;
use proto::common::Address;
use serde_json::json;
use tonic::Code;

const ADMIN: (&str, &str) = ("admin@example.com", "admin-password");
const VARS: &[(&str, &str)] = &[
    ("ADMIN_EMAIL", ADMIN.0),
    ("ADMIN_PASSWORD", ADMIN.1),
    ("RATE_LIMIT_RPS", "0"),
    ("SEED_DEMO", "false"),
];

/// Creates a product of 20 units priced `cents`; returns its id.
async fn product(t: &common::TestMesh, admin: &str, sku: &str, cents: i64) -> serde_json::Value {
    let created = t
        .post(
            "/api/v1/products",
            Some(admin),
            json!({"sku": sku, "name": "Mug", "category": "kitchen",
                   "price": {"amount": cents, "currency": "USD"}, "stock": 20}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    created.body["id"].clone()
}

/// A customer's paid order of a product priced `cents`: (customer id,
/// customer token, order id, payment).
async fn paid_order(
    t: &common::TestMesh,
    admin: &str,
    sku: &str,
    cents: i64,
) -> (String, String, String, serde_json::Value) {
    let (customer_id, customer, _) = t.customer().await;
    let mug = product(t, admin, sku, cents).await;
    let order = t.order(&customer, &mug, 1).await;
    let payment = t.pay(&customer, &order, "4242424242424242").await;
    assert_eq!(payment["status"], "SUCCEEDED", "{payment}");
    (customer_id, customer, order, payment)
}

/// A mesh on Postgres and NATS with its admin signed in, a customer and a
/// product `sku` priced `cents`.
struct Shop {
    backends: Backends,
    t: common::TestMesh,
    admin: String,
    customer_id: String,
    customer: String,
    product: serde_json::Value,
}

async fn shop_on_postgres(sku: &str, cents: i64) -> Shop {
    let backends = Backends::new();
    let t = backends.mesh_with(VARS).await;
    let (admin, _) = t.login(ADMIN.0, ADMIN.1).await;
    let (customer_id, customer, _) = t.customer().await;
    let product = product(&t, &admin, sku, cents).await;
    Shop {
        backends,
        t,
        admin,
        customer_id,
        customer,
        product,
    }
}

/// The shipment of `order_id` once it is `status` (one of `statuses`).
async fn shipment_reaches(
    t: &common::TestMesh,
    customer: &str,
    order_id: &str,
    what: &str,
    statuses: &[&str],
) {
    common::eventually(
        t,
        &format!("/api/v1/orders/{order_id}/shipment"),
        customer,
        what,
        |s| statuses.iter().any(|status| s["status"] == *status),
    )
    .await;
}

/// A real payment for `order_id`, and the label it buys.
async fn pay_and_see_the_label(t: &common::TestMesh, customer: &str, order_id: &str) {
    let payment = t.pay(customer, order_id, "4242424242424242").await;
    assert_eq!(payment["status"], "SUCCEEDED", "{payment}");
    shipment_reaches(
        t,
        customer,
        order_id,
        "the label bought for the paid order",
        &["LABEL_CREATED", "IN_TRANSIT"],
    )
    .await;
}

/// A feed notification for `user_id`, as cart-svc's reminders send it.
fn reminder(user_id: &str, title: &str) -> proto::notification::SendNotificationRequest {
    proto::notification::SendNotificationRequest {
        user_id: user_id.to_string(),
        kind: "cart_reminder".into(),
        title: title.into(),
        body: "Your cart".into(),
        channels: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_characters_and_repeated_products_are_refused_at_the_services() {
    let Shop {
        backends,
        t,
        customer,
        product,
        ..
    } = shop_on_postgres("TRUST-1", 500).await;
    let product = product.as_str().unwrap().to_string();

    let mut users =
        proto::user::user_service_client::UserServiceClient::new(t.channel(ServiceId::User));
    let profile = users
        .update_profile(t.as_user(
            proto::user::UpdateProfileRequest {
                name: Some("a\u{0}b".into()),
                ..Default::default()
            },
            &customer,
        ))
        .await
        .unwrap_err();
    assert_eq!(profile.code(), Code::InvalidArgument, "{profile:?}");
    let register = users
        .register(proto::user::RegisterRequest {
            email: format!("nul-{}@example.com", uuid::Uuid::now_v7().simple()),
            password: "a long enough password".into(),
            name: "a\u{0}b".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(register.code(), Code::InvalidArgument, "{register:?}");

    let mut catalog = proto::product::product_service_client::ProductServiceClient::new(
        t.channel(ServiceId::Product),
    );
    let review = catalog
        .add_review(t.as_user(
            proto::product::AddReviewRequest {
                product_id: product.clone(),
                rating: 5,
                comment: "ok\u{0}".into(),
            },
            &customer,
        ))
        .await
        .unwrap_err();
    assert_eq!(review.code(), Code::InvalidArgument, "{review:?}");

    let address = Address {
        name: "Ada".into(),
        line1: "1 Main St".into(),
        city: "Paris".into(),
        postal_code: "75001".into(),
        country: "FR".into(),
        ..Default::default()
    };
    let mut orders =
        proto::order::order_service_client::OrderServiceClient::new(t.channel(ServiceId::Order));
    let line = |quantity| proto::order::OrderItemInput {
        product_id: product.clone(),
        quantity,
    };
    let refused = [
        // A NUL in the notes.
        proto::order::CreateOrderRequest {
            idempotency_key: uuid::Uuid::now_v7().to_string(),
            items: vec![line(10)],
            shipping_address: Some(address.clone()),
            notes: "n\u{0}".into(),
        },
        // A NUL in the address.
        proto::order::CreateOrderRequest {
            idempotency_key: uuid::Uuid::now_v7().to_string(),
            items: vec![line(10)],
            shipping_address: Some(Address {
                city: "Par\u{0}is".into(),
                ..address.clone()
            }),
            notes: String::new(),
        },
        // One product on two lines (each within the per-line cap).
        proto::order::CreateOrderRequest {
            idempotency_key: uuid::Uuid::now_v7().to_string(),
            items: vec![line(10), line(10)],
            shipping_address: Some(address.clone()),
            notes: String::new(),
        },
    ];
    for request in refused {
        let status = orders
            .create_order(t.as_user(request, &customer))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    // Nothing was reserved by any of them.
    let after = t.get(&format!("/api/v1/products/{product}"), None).await;
    assert_eq!(after.body["stock_available"], 20, "{}", after.body);

    t.shutdown().await;
    backends.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admins_refund_key_never_stands_for_an_internal_one() {
    let t = common::TestMesh::start_with(VARS).await;
    let (admin, _) = t.login(ADMIN.0, ADMIN.1).await;
    let (_, customer, order, payment) = paid_order(&t, &admin, "TRUST-KEY", 700).await;
    let payment_id = payment["id"].as_str().unwrap();

    // An admin refunds 50 cents under the key order-svc uses when the
    // customer cancels.
    let refund = |key: String| {
        t.http
            .post(t.url(&format!("/api/v1/payments/{payment_id}/refund")))
            .bearer_auth(&admin)
            .header("idempotency-key", key)
            .json(&json!({"amount": {"amount": 50, "currency": "USD"}, "reason": "goodwill"}))
            .send()
    };
    let first = refund(format!("cancel:{order}")).await.unwrap();
    assert_eq!(first.status().as_u16(), 201);
    let first: serde_json::Value = first.json().await.unwrap();

    // The customer's cancel refunds the rest, and says so.
    let cancelled = t
        .post(
            &format!("/api/v1/orders/{order}/cancel"),
            Some(&customer),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "REFUNDED", "{}", cancelled.body);
    let settled = common::eventually(
        &t,
        &format!("/api/v1/payments/{payment_id}"),
        &admin,
        "the whole payment refunded",
        |p| p["refunded_amount"]["amount"] == 700,
    )
    .await;
    assert_eq!(settled["status"], "REFUNDED", "{settled}");

    // The admin's retry still answers the admin's own refund.
    let again: serde_json::Value = refund(format!("cancel:{order}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["id"], first["id"], "{again}");
    assert_eq!(again["amount"]["amount"], 50, "{again}");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_components_key_is_refused_for_calls_it_does_not_make() {
    // Each privileged call names the components that make it. Another
    // component's key, valid as it is, gets PERMISSION_DENIED (or, for a
    // read, NOT_FOUND as a stranger would), and the owner still may.
    use proto::notification::notification_service_client::NotificationServiceClient;
    use proto::order::order_service_client::OrderServiceClient;
    use proto::payment::payment_service_client::PaymentServiceClient;
    use proto::shipping::shipping_service_client::ShippingServiceClient;
    use proto::user::user_service_client::UserServiceClient;

    let t = common::TestMesh::start_with(VARS).await;
    let (admin, _) = t.login(ADMIN.0, ADMIN.1).await;
    let (customer_id, customer, order, paid) = paid_order(&t, &admin, "TRUST-OWN", 900).await;

    let mut orders = OrderServiceClient::new(t.channel(ServiceId::Order));
    let mut payments = PaymentServiceClient::new(t.channel(ServiceId::Payment));
    let mut shipping = ShippingServiceClient::new(t.channel(ServiceId::Shipping));
    let mut notifications = NotificationServiceClient::new(t.channel(ServiceId::Notification));
    let mut users = UserServiceClient::new(t.channel(ServiceId::User));
    let stranger = "recommendation-svc";

    // An order: product-svc asks about reservations; nobody else reads it.
    let status_of = |abandon_if_missing| proto::order::GetOrderStatusRequest {
        order_id: order.clone(),
        abandon_if_missing,
    };
    for abandon in [false, true] {
        let refused = orders
            .get_order_status(t.as_service(status_of(abandon), stranger))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    }
    let seen = orders
        .get_order_status(t.as_service(status_of(false), "product-svc"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.order_id, order);

    // Payments: customers read their own, admins any; no component.
    let listing = proto::payment::ListPaymentsRequest {
        user_id: customer_id.clone(),
        ..Default::default()
    };
    let refused = payments
        .list_payments(t.as_service(listing.clone(), "order-svc"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let by_id = proto::payment::GetPaymentStatusRequest {
        payment_id: paid["id"].as_str().unwrap().to_string(),
    };
    let refused = payments
        .get_payment_status(t.as_service(by_id, stranger))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");

    // Shipments: the carrier's updates come through the gateway, voids
    // from the order saga.
    let delivered = proto::shipping::UpdateShipmentStatusRequest {
        target: Some(
            proto::shipping::update_shipment_status_request::Target::ShipmentId(
                uuid::Uuid::now_v7().to_string(),
            ),
        ),
        status: proto::shipping::ShipmentStatus::Delivered as i32,
        ..Default::default()
    };
    let refused = shipping
        .update_shipment_status(t.as_service(delivered, stranger))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let void = proto::shipping::VoidShipmentRequest {
        order_id: order.clone(),
        reason: "forged".into(),
    };
    let refused = shipping
        .void_shipment(t.as_service(void, "notification-svc"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // A notification to anyone: cart-svc's reminders.
    let note = || reminder(&customer_id, "Your cart");
    let refused = notifications
        .send_notification(t.as_service(note(), stranger))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    notifications
        .send_notification(t.as_service(note(), "cart-svc"))
        .await
        .expect("cart-svc reminds customers");

    // Contact details: notification-svc's deliveries.
    let contact = || proto::user::GetUserRequest {
        user_id: customer_id.clone(),
    };
    let refused = users
        .get_user(t.as_service(contact(), stranger))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let found = users
        .get_user(t.as_service(contact(), "notification-svc"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.user.unwrap().id, customer_id);

    // None of it changed the order.
    let r = t
        .get(&format!("/api/v1/orders/{order}"), Some(&customer))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(r.body["status"], "CANCELLED", "{}", r.body);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_payments_under_one_key_all_answer_the_first_payment() {
    // On Postgres: 20 requests to pay one order under one Idempotency-Key,
    // all at once or the first a moment ahead of the rest. Every one
    // answers 201 with the same payment, and one payment exists.
    let Shop {
        backends,
        t,
        admin,
        customer,
        product: mug,
        ..
    } = shop_on_postgres("TRUST-SAME-KEY", 1500).await;
    let mut payments = proto::payment::payment_service_client::PaymentServiceClient::new(
        t.channel(ServiceId::Payment),
    );
    for round in 0..6 {
        let order = t.order(&customer, &mug, 1).await;
        let path = format!("/api/v1/orders/{order}/payment");
        let key = format!("pay-{order}");
        let first_ahead = round % 2 == 1;
        let answers = futures::future::join_all((0..20).map(|i| {
            let (t, path, key, customer) = (&t, &path, &key, &customer);
            async move {
                if first_ahead && i > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
                }
                t.post_keyed(path, customer, key, common::card("4242424242424242"))
                    .await
            }
        }))
        .await;
        let first = answers[0].body["id"].clone();
        for (i, answer) in answers.iter().enumerate() {
            assert_eq!(
                answer.status, 201,
                "round {round}, request {i}: {}",
                answer.body
            );
            assert_eq!(answer.body["id"], first, "round {round}, request {i}");
            assert_eq!(answer.body["status"], "SUCCEEDED", "{}", answer.body);
        }
        let listed = payments
            .list_payments(t.as_user(
                proto::payment::ListPaymentsRequest {
                    order_id: order.clone(),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner()
            .payments;
        assert_eq!(listed.len(), 1, "round {round}: {listed:?}");
    }
    t.shutdown().await;
    backends.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_and_sign_ups_straight_at_user_svc_are_limited() {
    // Behind the gateway, its limits come first; straight at user-svc's
    // port the account's own limit holds: after MAX_FAILED_LOGINS wrong
    // passwords even the right one is refused with RESOURCE_EXHAUSTED and
    // a retry delay. Accounts registered without the gateway share a
    // small allowance.
    use proto::user::user_service_client::UserServiceClient;
    use user_svc::domain::{DIRECT_SIGNUPS_PER_MINUTE, MAX_FAILED_LOGINS};

    let t = common::TestMesh::start_with(VARS).await;
    let mut users = UserServiceClient::new(t.channel(ServiceId::User));
    let email = format!("guess-{}@example.com", uuid::Uuid::now_v7().simple());
    let r = t
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": email, "password": "correct horse", "name": "Target"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let login = |password: &str| proto::user::LoginRequest {
        email: email.clone(),
        password: password.to_string(),
    };
    let mut refused_at = None;
    for attempt in 1..=60u32 {
        let status = users.login(login("wrong horse")).await.unwrap_err();
        match status.code() {
            Code::Unauthenticated => assert!(attempt <= MAX_FAILED_LOGINS, "attempt {attempt}"),
            Code::ResourceExhausted => {
                let wait = platform::error::retry_after(&status).expect("a retry delay");
                assert!(wait.as_secs() >= 1, "{wait:?}");
                refused_at.get_or_insert(attempt);
            }
            other => panic!("attempt {attempt}: {other:?} {status:?}"),
        }
    }
    assert_eq!(refused_at, Some(MAX_FAILED_LOGINS + 1));
    let right = users.login(login("correct horse")).await.unwrap_err();
    assert_eq!(right.code(), Code::ResourceExhausted, "{right:?}");
    // Through the gateway too: the account's limit is the service's.
    let r = t
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": "correct horse"}),
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());

    // Another account is not affected, and a right password gives its
    // slot back: the limit counts failures only.
    let (_, _, _) = t.customer().await;
    let other = format!("other-{}@example.com", uuid::Uuid::now_v7().simple());
    let r = t
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": other, "password": "correct horse", "name": "Other"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    for _ in 0..MAX_FAILED_LOGINS + 5 {
        let ok = users
            .login(proto::user::LoginRequest {
                email: other.clone(),
                password: "correct horse".into(),
            })
            .await;
        assert!(ok.is_ok(), "{ok:?}");
    }

    // Sign-ups with no credential, straight at the port.
    let sign_up = |i: u32| proto::user::RegisterRequest {
        email: format!("direct-{i}-{}@example.com", uuid::Uuid::now_v7().simple()),
        password: "correct horse".into(),
        name: "Direct".into(),
    };
    let mut created = 0;
    let mut limited = 0;
    for i in 0..DIRECT_SIGNUPS_PER_MINUTE + 5 {
        match users.register(sign_up(i)).await {
            Ok(_) => created += 1,
            Err(status) if status.code() == Code::ResourceExhausted => limited += 1,
            Err(status) => panic!("{status:?}"),
        }
    }
    assert!(created <= DIRECT_SIGNUPS_PER_MINUTE, "{created}");
    assert!(limited >= 5, "{limited}");
    // The gateway's sign-ups are its own to limit.
    let (_, _, _) = t.customer().await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_stream_ends_when_its_token_expires() {
    // Access tokens live 3 s here. A stream opened straight at
    // notification-svc, and one through the gateway, deliver while the
    // token is good and end once it has expired.
    use futures::StreamExt as _;
    use proto::notification::notification_service_client::NotificationServiceClient;

    let mut vars = VARS.to_vec();
    vars.push(("JWT_ACCESS_TTL_SECS", "3"));
    let t = common::TestMesh::start_with(&vars).await;
    let (user_id, token, _) = t.customer().await;
    let opened = std::time::Instant::now();
    let mut notifications = NotificationServiceClient::new(t.channel(ServiceId::Notification));
    let mut stream = notifications
        .stream_notifications(t.as_user(
            proto::notification::StreamNotificationsRequest::default(),
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let sse = t
        .http
        .get(t.url("/api/v1/notifications/stream"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let sse_body = tokio::spawn(async move { sse.bytes().await.map(|b| b.len()) });

    notifications
        .send_notification(t.as_service(reminder(&user_id, "Still there"), "cart-svc"))
        .await
        .unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(3), stream.next())
        .await
        .expect("delivered while the token is good")
        .expect("an item")
        .expect("a notification");
    assert_eq!(first.notification.unwrap().title, "Still there");

    let ended = tokio::time::timeout(std::time::Duration::from_secs(8), stream.next())
        .await
        .expect("the stream ends after the token expires");
    let status = ended.expect("a final status").unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(opened.elapsed() >= std::time::Duration::from_secs(2));
    let sse_done = tokio::time::timeout(std::time::Duration::from_secs(8), sse_body)
        .await
        .expect("the gateway's stream ends too");
    assert!(sse_done.unwrap().is_ok());
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_ends_the_users_notification_streams() {
    // A stream straight at notification-svc and one through the gateway,
    // both opened with the user's token, end once the user signs out; a
    // stream opened after signing in again delivers.
    use futures::StreamExt as _;
    use proto::notification::notification_service_client::NotificationServiceClient;

    let t = common::TestMesh::start_with(VARS).await;
    let email = format!("leaving-{}@example.com", uuid::Uuid::now_v7().simple());
    let r = t
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": email, "password": "correct horse", "name": "Leaving"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let user_id = r.body["id"].as_str().unwrap().to_string();
    let (token, refresh) = t.login(&email, "correct horse").await;
    let mut notifications = NotificationServiceClient::new(t.channel(ServiceId::Notification));
    let open = |token: String| {
        let mut client = notifications.clone();
        let request = t.as_user(
            proto::notification::StreamNotificationsRequest::default(),
            &token,
        );
        async move {
            client
                .stream_notifications(request)
                .await
                .unwrap()
                .into_inner()
        }
    };
    let mut stream = open(token.clone()).await;
    let sse = t
        .http
        .get(t.url("/api/v1/notifications/stream"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let sse_body = tokio::spawn(async move { sse.bytes().await.map(|b| b.len()) });

    let r = t
        .post(
            "/api/v1/auth/logout",
            Some(&token),
            json!({"refresh_token": refresh}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
        .await
        .expect("the stream ends at sign-out");
    let status = ended.expect("a final status").unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("signed out"), "{status:?}");
    let sse_done = tokio::time::timeout(std::time::Duration::from_secs(5), sse_body)
        .await
        .expect("the gateway's stream ends too");
    assert!(sse_done.unwrap().is_ok());

    // Signed in again: a stream opened after the sign-out delivers.
    let (token, _) = t.login(&email, "correct horse").await;
    let mut stream = open(token).await;
    notifications
        .send_notification(t.as_service(reminder(&user_id, "Welcome back"), "cart-svc"))
        .await
        .unwrap();
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
        .await
        .expect("delivered")
        .expect("an item")
        .expect("a notification");
    assert_eq!(next.notification.unwrap().title, "Welcome back");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_payment_events_on_a_plain_nats_change_nothing() {
    // A NATS without credentials, as anyone next to it can publish: a
    // `payment.processed` for an unpaid order with its exact total,
    // unsigned, signed by another component's key under payment-svc's
    // name, and signed truly by a component that does not own payments.
    // The order stays unpaid, no label is bought, the customer is told
    // nothing, and each consumer dead-letters every forgery with the
    // reason; a real payment afterwards goes through.
    let Shop {
        backends,
        t,
        customer_id,
        customer,
        product: mug,
        ..
    } = shop_on_postgres("TRUST-FORGED", 700).await;
    let order_id = t.order(&customer, &mug, 1).await;
    let order = t
        .get(&format!("/api/v1/orders/{order_id}"), Some(&customer))
        .await;
    assert_eq!(order.body["status"], "PENDING_PAYMENT", "{}", order.body);
    let total = order.body["total"]["amount"].as_i64().unwrap();
    shipment_reaches(
        &t,
        &customer,
        &order_id,
        "the shipment prepared",
        &["PENDING"],
    )
    .await;

    let forged = |source: &str| payment_processed(&order_id, &customer_id, total, source);
    let unsigned = forged("payment-svc");
    let recommendations = t.mesh.component("recommendation-svc").unwrap();
    let not_owner =
        platform::events::signed::sign(&recommendations, &forged("recommendation-svc")).unwrap();
    // Another component's signature, the event relabelled as payment-svc's.
    let mut other_key =
        platform::events::signed::sign(&recommendations, &forged("recommendation-svc")).unwrap();
    other_key.source = "payment-svc".into();
    let nats = backends.nats().await;
    use platform::events::EventBus as _;
    for event in [&unsigned, &other_key, &not_owner] {
        nats.publish(event).await.unwrap();
    }

    // Every consumer of payments refuses all three at once.
    let forgeries = [&unsigned.id, &other_key.id, &not_owner.id];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    for consumer in ["order-svc", "shipping-svc", "notification-svc"] {
        loop {
            let letters = nats.dead_letters(Some(consumer)).await.unwrap();
            let refused: Vec<_> = letters
                .iter()
                .filter(|l| {
                    l.envelope
                        .as_ref()
                        .is_some_and(|e| forgeries.contains(&&e.id))
                })
                .collect();
            if refused.len() == forgeries.len() {
                for letter in refused {
                    assert!(letter.error.contains("refused"), "{}", letter.error);
                    assert_eq!(letter.attempts, 1, "refused on first sight");
                }
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{consumer} dead-lettered {} of the forgeries",
                refused.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let order = t
        .get(&format!("/api/v1/orders/{order_id}"), Some(&customer))
        .await;
    assert_eq!(order.body["status"], "PENDING_PAYMENT", "{}", order.body);
    let shipment = t
        .get(
            &format!("/api/v1/orders/{order_id}/shipment"),
            Some(&customer),
        )
        .await;
    assert_eq!(shipment.body["status"], "PENDING", "{}", shipment.body);
    let feed = t.get("/api/v1/notifications", Some(&customer)).await;
    assert_eq!(feed.status, 200);
    assert!(
        feed.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["kind"] != "payment.processed"),
        "the customer was told of a payment: {}",
        feed.body
    );
    let metrics = t.text("/metrics").await;
    for reason in ["unsigned", "bad_signature", "not_owner"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("messaging_refused_total{")
                    && l.contains("consumer=\"order-svc\"")
                    && l.contains(&format!("reason=\"{reason}\""))),
            "no {reason} refusal counted"
        );
    }

    // The real thing, signed by payment-svc, still moves the order.
    pay_and_see_the_label(&t, &customer, &order_id).await;
    common::eventually(
        &t,
        "/api/v1/notifications",
        &customer,
        "the customer told of the real payment",
        |feed| {
            feed["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|n| n["kind"] == "payment.processed"))
        },
    )
    .await;
    t.shutdown().await;
    backends.cleanup().await;
}

/// A `payment.processed` of `cents` USD for the order, from `source`
/// (unsigned).
fn payment_processed(
    order_id: &str,
    user_id: &str,
    cents: i64,
    source: &str,
) -> proto::events::Envelope {
    platform::events::event(
        order_id,
        source,
        proto::events::envelope::Payload::PaymentProcessed(proto::events::PaymentProcessed {
            payment_id: uuid::Uuid::now_v7().to_string(),
            order_id: order_id.to_string(),
            user_id: user_id.to_string(),
            amount: Some(proto::common::Money::new(cents, "USD")),
            card_brand: "visa".into(),
            card_last4: "4242".into(),
            provider: "simulated".into(),
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_the_order_did_not_take_buys_no_label() {
    // payment-svc's own, truly signed `payment.processed` for the wrong
    // amount: order-svc refuses it (the order stays payable, the payment
    // is refunded), and shipping-svc, which asks order-svc before buying,
    // buys no label for it. A real payment afterwards gets its label.

    let Shop {
        backends,
        t,
        customer_id,
        customer,
        product: mug,
        ..
    } = shop_on_postgres("TRUST-LABEL", 700).await;
    let order_id = t.order(&customer, &mug, 1).await;
    shipment_reaches(
        &t,
        &customer,
        &order_id,
        "the shipment prepared",
        &["PENDING"],
    )
    .await;
    let payments = t.mesh.component("payment-svc").unwrap();
    let wrong = platform::events::signed::sign(
        &payments,
        &payment_processed(&order_id, &customer_id, 1, "payment-svc"),
    )
    .unwrap();
    let nats = backends.nats().await;
    use platform::events::EventBus as _;
    nats.publish(&wrong).await.unwrap();

    // order-svc refuses it; shipping-svc has been handed it more than once
    // (it asked order-svc, was told the order is not paid, and waits).
    common::eventually(
        &t,
        &format!("/api/v1/orders/{order_id}"),
        &customer,
        "the wrong amount refused",
        |o| o["status"] == "PAYMENT_FAILED",
    )
    .await;
    let stream = async_nats::jetstream::new(nats.client().clone())
        .get_stream(&backends.stream)
        .await
        .unwrap();
    platform::testing::eventually("shipping-svc to have looked twice", async || {
        stream
            .clone()
            .consumer_info("shipping-svc__payment_processed")
            .await
            .is_ok_and(|info| info.num_redelivered >= 1)
    })
    .await;
    let shipment = t
        .get(
            &format!("/api/v1/orders/{order_id}/shipment"),
            Some(&customer),
        )
        .await;
    assert_eq!(shipment.body["status"], "PENDING", "{}", shipment.body);

    pay_and_see_the_label(&t, &customer, &order_id).await;
    t.shutdown().await;
    backends.cleanup().await;
}
