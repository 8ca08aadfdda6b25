//! notification-svc over real gRPC, with the real user-svc for contacts,
//! events on the in-process bus, a real SMTP server and fake SMS and push
//! services: every channel delivers, failures are retried per channel, one
//! failing channel holds up no other, and redelivered events add nothing.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use platform::Running;
use platform::events::memory::InProcessBus;
use platform::events::{
    BusError, ConsumerConfig, Delivery, EventBus, Handler, HandlerError, Subscription, envelope,
};
use platform::runtime::Deps;
use platform::testing::TestService;
use proto::common::Money;
use proto::events::envelope::Payload;
use proto::notification::notification_service_client::NotificationServiceClient;
use proto::notification::*;
use proto::user::user_service_client::UserServiceClient;
use proto::user::{RegisterRequest, UpdateProfileRequest};
use support::{Browser, Recorder, SmtpServer, wait_for};

/// Deliveries fully handled, by event type.
type Handled = Arc<Mutex<HashMap<String, usize>>>;

/// A bus that hands every delivery to the handler twice at once, as a
/// redelivery racing the first attempt would.
#[derive(Debug)]
struct Redelivering {
    inner: InProcessBus,
    handled: Handled,
}

struct Twice {
    inner: Arc<dyn Handler>,
    handled: Handled,
}

#[async_trait::async_trait]
impl Handler for Twice {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let (a, b) = tokio::join!(self.inner.handle(delivery), self.inner.handle(delivery));
        *self
            .handled
            .lock()
            .unwrap()
            .entry(delivery.envelope.r#type.clone())
            .or_default() += 1;
        a.and(b)
    }
}

#[async_trait::async_trait]
impl EventBus for Redelivering {
    async fn publish(&self, envelope: &proto::events::Envelope) -> Result<(), BusError> {
        self.inner.publish(envelope).await
    }
    async fn subscribe(
        &self,
        config: ConsumerConfig,
        handler: Arc<dyn Handler>,
    ) -> Result<Subscription, BusError> {
        let handler = Arc::new(Twice {
            inner: handler,
            handled: self.handled.clone(),
        });
        self.inner.subscribe(config, handler).await
    }
    async fn broadcast(&self, topic: &str, payload: Vec<u8>) -> Result<(), BusError> {
        self.inner.broadcast(topic, payload).await
    }
    async fn listen(&self, topic: &str) -> Result<platform::events::Listener, BusError> {
        self.inner.listen(topic).await
    }
    fn prefix(&self) -> &str {
        self.inner.prefix()
    }
    fn name(&self) -> &'static str {
        "redelivering"
    }
}

struct Harness {
    bus: Arc<dyn EventBus>,
    handled: Handled,
    users: UserServiceClient<platform::grpc::GrpcChannel>,
    notifications: NotificationServiceClient<platform::grpc::GrpcChannel>,
    _running: Vec<Running>,
}

const ADMIN: &str = "admin-1";

/// A user's request, or with role `service` one from component
/// `svc:<name>` on its own behalf.
fn as_caller<T>(message: T, user_id: &str, role: &str) -> tonic::Request<T> {
    let identity = platform::testing::identity();
    match user_id.strip_prefix("svc:") {
        Some(component) if role == "service" => identity.as_service(message, component),
        _ => identity.as_user(message, user_id, role),
    }
}

impl Harness {
    async fn start(vars: &[(&str, &str)]) -> Harness {
        let handled = Handled::default();
        let bus: Arc<dyn EventBus> = Arc::new(Redelivering {
            inner: InProcessBus::new("shop"),
            handled: handled.clone(),
        });
        let base = TestService::new("user-svc", false, &[]);
        let users_running = user_svc::serve(
            base.config.clone(),
            TestService::listener().await,
            Deps { bus: bus.clone() },
        )
        .await
        .unwrap();
        let user_addr = users_running.addr().to_string();
        let mut all = vars.to_vec();
        all.push(("USER_ADDR", &user_addr));
        let service = TestService::new("notification-svc", false, &all);
        let running = notification_svc::serve(
            service.config.clone(),
            TestService::listener().await,
            Deps { bus: bus.clone() },
        )
        .await
        .unwrap();
        let channel = |a| service.channel(a);
        let addr = running.addr();
        Harness {
            bus,
            handled,
            users: UserServiceClient::new(channel(users_running.addr())),
            notifications: NotificationServiceClient::new(channel(addr)),
            _running: vec![users_running, running],
        }
    }

    /// Registers a user (which publishes user.registered); returns (id, email).
    async fn register(&self, phone: Option<&str>) -> (String, String) {
        let email = format!("user-{}@example.com", uuid::Uuid::now_v7().simple());
        let user = self
            .users
            .clone()
            .register(RegisterRequest {
                email: email.clone(),
                password: "correct horse battery".into(),
                name: "Ada Lovelace".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        if let Some(phone) = phone {
            self.users
                .clone()
                .update_profile(as_caller(
                    UpdateProfileRequest {
                        phone: Some(phone.into()),
                        ..Default::default()
                    },
                    &user.id,
                    "customer",
                ))
                .await
                .unwrap();
        }
        (user.id, email)
    }

    async fn publish_payment_failed(&self, user_id: &str) -> proto::events::Envelope {
        let order_id = uuid::Uuid::now_v7().to_string();
        let event = envelope(
            "payment.failed",
            &order_id,
            "payment-svc",
            Payload::PaymentFailed(proto::events::PaymentFailed {
                payment_id: uuid::Uuid::now_v7().to_string(),
                order_id: order_id.clone(),
                user_id: user_id.to_string(),
                amount: Some(Money {
                    amount: 1299,
                    currency: "USD".into(),
                }),
                failure_reason: "Your card was declined.".into(),
                failure_code: "card_declined".into(),
            }),
        );
        let event = platform::testing::signed(&event);
        self.bus.publish(&event).await.unwrap();
        event
    }

    async fn deliveries(&self, user_id: &str) -> Vec<Delivery_> {
        self.notifications
            .clone()
            .list_deliveries(as_caller(
                ListDeliveriesRequest {
                    user_id: user_id.into(),
                    page: Some(proto::common::PageRequest {
                        limit: 100,
                        cursor: String::new(),
                    }),
                },
                ADMIN,
                "admin",
            ))
            .await
            .unwrap()
            .into_inner()
            .deliveries
    }

    /// Waits until the user's deliveries satisfy `done`.
    async fn deliveries_until(
        &self,
        user_id: &str,
        what: &str,
        done: impl Fn(&[Delivery_]) -> bool,
    ) -> Vec<Delivery_> {
        wait_for(what, 20, || async {
            let d = self.deliveries(user_id).await;
            done(&d).then_some(d)
        })
        .await
    }

    fn handled(&self, event_type: &str) -> usize {
        self.handled
            .lock()
            .unwrap()
            .get(event_type)
            .copied()
            .unwrap_or(0)
    }

    /// Waits until `n` deliveries of `event_type` were fully handled.
    async fn handled_at_least(&self, event_type: &str, n: usize) {
        wait_for(&format!("{n} {event_type} handled"), 20, || async {
            (self.handled(event_type) >= n).then_some(())
        })
        .await
    }

    async fn feed(&self, user_id: &str) -> Vec<Notification> {
        self.notifications
            .clone()
            .list_notifications(as_caller(
                ListNotificationsRequest::default(),
                user_id,
                "customer",
            ))
            .await
            .unwrap()
            .into_inner()
            .notifications
    }
}

type Delivery_ = proto::notification::Delivery;

/// Settings of the SMS channel, with the fake provider at `url`.
fn sms(url: &str) -> [(&'static str, &str); 4] {
    [
        ("TWILIO_BASE_URL", url),
        ("TWILIO_ACCOUNT_SID", "AC1"),
        ("TWILIO_AUTH_TOKEN", "token"),
        ("TWILIO_FROM", "+15005550006"),
    ]
}

/// Settings of the push channel with VAPID `key`, plain-http endpoints allowed.
fn push(key: &str) -> [(&'static str, &str); 3] {
    [
        ("VAPID_PRIVATE_KEY", key),
        ("VAPID_SUBJECT", "mailto:ops@shop.example"),
        ("PUSH_ALLOW_HTTP", "true"),
    ]
}

fn find<'a>(d: &'a [Delivery_], kind: &str, channel: Channel) -> Option<&'a Delivery_> {
    d.iter()
        .find(|d| d.kind == kind && d.channel == channel as i32)
}

fn settled(d: &[Delivery_], kind: &str, channel: Channel) -> bool {
    find(d, kind, channel).is_some_and(|d| d.state != DeliveryState::Pending as i32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_delivers_and_failures_are_retried_with_backoff() {
    let smtp = SmtpServer::start().await;
    // The SMS provider fails twice before accepting.
    let twilio = Recorder::start(&[(500, "oops"), (503, "busy")], 201).await;
    let push_service = Recorder::start(&[], 201).await;
    let smtp_url = smtp.url();
    let key = notification_svc::channels::push::WebPush::generate_key().unwrap();
    let h = Harness::start(
        &[
            &sms(&twilio.url)[..],
            &push(&key),
            &[
                ("SMTP_URL", &smtp_url),
                ("SMTP_FROM", "Shop <no-reply@shop.example>"),
                ("DELIVERY_RETRY_BASE_MS", "40"),
                ("DELIVERY_MAX_ATTEMPTS", "4"),
            ],
        ]
        .concat(),
    )
    .await;

    // Registration: welcome email (email only), to the address on file.
    let (user_id, address) = h.register(Some("+14155550100")).await;
    let welcome = smtp.wait_for_messages(1).await;
    assert!(
        welcome[0].contains(&format!("X-RcptTo: {address}")),
        "{}",
        welcome[0]
    );
    assert!(
        welcome[0].contains("Subject: Welcome to shopmesh"),
        "{}",
        welcome[0]
    );

    let mut browser = Browser::new();
    let endpoint = format!("{}/push/ada", push_service.url);
    h.notifications
        .clone()
        .register_push_subscription(as_caller(
            RegisterPushSubscriptionRequest {
                endpoint: endpoint.clone(),
                keys: Some(PushKeys {
                    p256dh: browser.p256dh.clone(),
                    auth: browser.auth.clone(),
                }),
            },
            &user_id,
            "customer",
        ))
        .await
        .unwrap();

    // A failed payment goes out everywhere: email, SMS and push.
    h.publish_payment_failed(&user_id).await;
    let emails = smtp.wait_for_messages(2).await;
    let failed = emails
        .iter()
        .find(|m| m.contains("Subject: Payment failed"))
        .expect("the payment-failed email");
    let text = support::unfolded(failed);
    assert!(
        text.contains("did not go through: Your card was declined."),
        "{text}"
    );
    assert!(text.contains("12.99 USD"), "{text}");

    let pushed = push_service.wait_for_requests(1).await;
    let payload: serde_json::Value =
        serde_json::from_slice(&browser.decrypt(&pushed[0].body)).unwrap();
    assert_eq!(payload["kind"], "payment.failed");
    assert_eq!(payload["title"], "Payment failed");

    let sms = twilio.wait_for_requests(3).await;
    assert!(sms.iter().all(|s| s.form()["To"] == "+14155550100"));
    assert!(
        sms[2].form()["Body"].starts_with("Payment failed: "),
        "{:?}",
        sms[2].form()
    );

    let d = h
        .deliveries_until(&user_id, "every delivery settled", |d| {
            settled(d, "payment.failed", Channel::Email)
                && settled(d, "payment.failed", Channel::Sms)
                && settled(d, "payment.failed", Channel::Push)
        })
        .await;
    let sms = find(&d, "payment.failed", Channel::Sms).unwrap();
    assert_eq!(sms.state, DeliveryState::Sent as i32, "{sms:?}");
    assert_eq!(sms.attempts, 3, "two failures, then sent: {sms:?}");
    assert!(sms.last_error.is_empty());
    for channel in [Channel::Email, Channel::Push] {
        let one = find(&d, "payment.failed", channel).unwrap();
        assert_eq!(
            (one.state, one.attempts),
            (DeliveryState::Sent as i32, 1),
            "{one:?}"
        );
    }
    let welcome = find(&d, "user.registered", Channel::Email).unwrap();
    assert_eq!(welcome.state, DeliveryState::Sent as i32);
    assert!(
        find(&d, "user.registered", Channel::Sms).is_none(),
        "no SMS for a welcome"
    );

    // The in-app feed has both, for this user only.
    let feed = h.feed(&user_id).await;
    let kinds: Vec<&str> = feed.iter().map(|n| n.kind.as_str()).collect();
    assert_eq!(kinds, ["payment.failed", "user.registered"], "{feed:?}");
    assert!(h.feed("someone-else").await.is_empty());

    // Reading: one by id, then all; other users' ids are ignored.
    let mut client = h.notifications.clone();
    let mark = |ids: Vec<String>, all: bool, who: &str| {
        as_caller(
            MarkReadRequest {
                notification_ids: ids,
                all,
            },
            who,
            "customer",
        )
    };
    let first = feed[0].id.clone();
    let r = client
        .mark_read(mark(vec![first.clone()], false, "someone-else"))
        .await
        .unwrap();
    assert_eq!(r.into_inner().updated, 0);
    let r = client
        .mark_read(mark(vec![first], false, &user_id))
        .await
        .unwrap();
    assert_eq!(r.into_inner().updated, 1);
    let r = client
        .mark_read(mark(vec![], true, &user_id))
        .await
        .unwrap();
    assert_eq!(r.into_inner().updated, 1, "only the one still unread");
    assert!(h.feed(&user_id).await.iter().all(|n| n.read));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_channel_never_holds_up_the_others() {
    let twilio = Recorder::start(&[], 201).await;
    let h = Harness::start(
        &[
            &sms(&twilio.url)[..],
            &[
                // Nothing listens on port 1: every email attempt fails.
                ("SMTP_URL", "smtp://127.0.0.1:1"),
                ("DELIVERY_RETRY_BASE_MS", "30"),
                ("DELIVERY_MAX_ATTEMPTS", "3"),
            ],
        ]
        .concat(),
    )
    .await;
    let (user_id, _) = h.register(Some("+14155550100")).await;
    h.publish_payment_failed(&user_id).await;
    let sms = twilio.wait_for_requests(1).await;
    assert_eq!(sms[0].form()["To"], "+14155550100");

    let d = h
        .deliveries_until(&user_id, "the email to give up", |d| {
            settled(d, "payment.failed", Channel::Email)
                && settled(d, "payment.failed", Channel::Sms)
        })
        .await;
    let email = find(&d, "payment.failed", Channel::Email).unwrap();
    assert_eq!(email.state, DeliveryState::Failed as i32, "{email:?}");
    assert_eq!(email.attempts, 3);
    assert!(!email.last_error.is_empty());
    let sms = find(&d, "payment.failed", Channel::Sms).unwrap();
    assert_eq!((sms.state, sms.attempts), (DeliveryState::Sent as i32, 1));
    // The feed does not depend on any channel.
    assert!(
        h.feed(&user_id)
            .await
            .iter()
            .any(|n| n.kind == "payment.failed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_events_make_one_notification_and_one_delivery_per_channel() {
    let smtp = SmtpServer::start().await;
    let smtp_url = smtp.url();
    let h = Harness::start(&[("SMTP_URL", &smtp_url), ("DELIVERY_RETRY_BASE_MS", "30")]).await;
    let (user_id, _) = h.register(None).await;
    h.publish_payment_failed(&user_id).await;
    // Both concurrent runs of the handler are done.
    h.handled_at_least("payment.failed", 1).await;
    let d = h
        .deliveries_until(&user_id, "the email sent", |d| {
            settled(d, "payment.failed", Channel::Email)
        })
        .await;
    let emails: Vec<_> = d.iter().filter(|d| d.kind == "payment.failed").collect();
    assert_eq!(emails.len(), 1, "{d:?}");
    assert_eq!(
        (emails[0].state, emails[0].attempts),
        (DeliveryState::Sent as i32, 1)
    );
    let feed = h.feed(&user_id).await;
    assert_eq!(
        feed.iter().filter(|n| n.kind == "payment.failed").count(),
        1,
        "{feed:?}"
    );
    let received = smtp.wait_for_messages(2).await;
    assert_eq!(
        received
            .iter()
            .filter(|m| m.contains("Subject: Payment failed"))
            .count(),
        1
    );
}

#[tokio::test]
async fn send_notification_checks_the_caller_the_user_and_reports_the_channels_used() {
    let twilio = Recorder::start(&[], 201).await;
    let h = Harness::start(&sms(&twilio.url)).await;
    let (with_phone, _) = h.register(Some("+14155550100")).await;
    let (without_phone, _) = h.register(None).await;
    let send = |user_id: &str, caller: (&str, &str), channels: Vec<Channel>| {
        let request = as_caller(
            SendNotificationRequest {
                user_id: user_id.to_string(),
                kind: "promo".into(),
                title: "Spring sale".into(),
                body: "Everything 20% off".into(),
                channels: channels.into_iter().map(|c| c as i32).collect(),
            },
            caller.0,
            caller.1,
        );
        let mut client = h.notifications.clone();
        async move { client.send_notification(request).await }
    };
    let all = vec![Channel::InApp, Channel::Email, Channel::Sms, Channel::Push];

    let used = send(&with_phone, (ADMIN, "admin"), all.clone())
        .await
        .unwrap()
        .into_inner();
    let channels: Vec<i32> = used.notifications.iter().map(|n| n.channel).collect();
    // Email and push are not configured here; SMS and the feed are.
    assert_eq!(channels, [Channel::InApp as i32, Channel::Sms as i32]);
    let sms = twilio.wait_for_requests(1).await;
    assert_eq!(sms[0].form()["Body"], "Spring sale: Everything 20% off");

    let used = send(&without_phone, ("svc:cart-svc", "service"), all.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        used.notifications
            .iter()
            .map(|n| n.channel)
            .collect::<Vec<_>>(),
        [Channel::InApp as i32],
        "no phone, no SMS"
    );

    let err = send(
        "0190f0e0-0000-7000-8000-000000000000",
        (ADMIN, "admin"),
        vec![],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = send(&with_phone, (&without_phone, "customer"), vec![])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    // Only cart-svc of the components sends notifications of its own.
    let err = send(&with_phone, ("svc:order-svc", "service"), vec![])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let err = send(&with_phone, (ADMIN, "admin"), vec![Channel::Unspecified])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = h
        .notifications
        .clone()
        .list_deliveries(as_caller(
            ListDeliveriesRequest {
                user_id: with_phone.clone(),
                page: None,
            },
            &with_phone,
            "customer",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn a_push_subscription_the_service_reports_gone_is_forgotten() {
    let push_service = Recorder::start(&[(410, "unsubscribed")], 201).await;
    let key = notification_svc::channels::push::WebPush::generate_key().unwrap();
    let h = Harness::start(&push(&key)).await;
    let (user_id, _) = h.register(None).await;
    let browser = Browser::new();
    let subscribe = || {
        let mut client = h.notifications.clone();
        let request = as_caller(
            RegisterPushSubscriptionRequest {
                endpoint: format!("{}/push/gone", push_service.url),
                keys: Some(PushKeys {
                    p256dh: browser.p256dh.clone(),
                    auth: browser.auth.clone(),
                }),
            },
            &user_id,
            "customer",
        );
        async move { client.register_push_subscription(request).await }
    };
    subscribe().await.unwrap();
    // Registering the same endpoint again is idempotent.
    subscribe().await.unwrap();
    h.publish_payment_failed(&user_id).await;
    let d = h
        .deliveries_until(&user_id, "the push attempt", |d| {
            settled(d, "payment.failed", Channel::Push)
        })
        .await;
    let push = find(&d, "payment.failed", Channel::Push).unwrap();
    assert_eq!(push.state, DeliveryState::Failed as i32);
    assert!(push.last_error.contains("410"), "{push:?}");
    assert_eq!(
        d.iter()
            .filter(|d| d.channel == Channel::Push as i32)
            .count(),
        1
    );

    // The subscription is gone: the next event has no push delivery.
    h.publish_payment_failed(&user_id).await;
    h.handled_at_least("payment.failed", 2).await;
    assert_eq!(
        h.feed(&user_id)
            .await
            .iter()
            .filter(|n| n.kind == "payment.failed")
            .count(),
        2
    );
    let d = h.deliveries(&user_id).await;
    assert_eq!(
        d.iter()
            .filter(|d| d.channel == Channel::Push as i32)
            .count(),
        1,
        "{d:?}"
    );
    assert_eq!(push_service.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_newest_push_subscriptions_are_kept() {
    let push_service = Recorder::start(&[], 201).await;
    let key = notification_svc::channels::push::WebPush::generate_key().unwrap();
    let h = Harness::start(&push(&key)).await;
    let (user_id, _) = h.register(None).await;
    let browser = Browser::new();
    for i in 0..12 {
        let request = as_caller(
            RegisterPushSubscriptionRequest {
                endpoint: format!("{}/push/{i}", push_service.url),
                keys: Some(PushKeys {
                    p256dh: browser.p256dh.clone(),
                    auth: browser.auth.clone(),
                }),
            },
            &user_id,
            "customer",
        );
        h.notifications
            .clone()
            .register_push_subscription(request)
            .await
            .unwrap();
    }
    h.publish_payment_failed(&user_id).await;
    h.handled_at_least("payment.failed", 1).await;
    let d = h.deliveries(&user_id).await;
    assert_eq!(
        d.iter()
            .filter(|d| d.channel == Channel::Push as i32)
            .count(),
        10,
        "{d:?}"
    );
    push_service.wait_for_requests(10).await;
}
