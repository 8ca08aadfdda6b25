//! Each outside channel against a real or fake peer: email into a real SMTP
//! server, SMS into a fake Twilio API, Web Push into a fake push service
//! that checks the VAPID signature and decrypts the payload.

mod support;

use notification_svc::channels::email::Email;
use notification_svc::channels::push::WebPush;
use notification_svc::channels::sms::Twilio;
use notification_svc::channels::{Channel, Message, SendError, Target};
use support::{Browser, Recorder, SmtpServer, verify_vapid};

const MESSAGE: Message<'static> = Message {
    id: "0190f0e0-delivery",
    kind: "order.created",
    title: "Order received – thank you",
    body: "We received order 0190ab for 2 items.\nTotal: 12.00 USD",
};

#[tokio::test]
async fn email_reaches_a_real_smtp_server_with_subject_body_and_a_stable_message_id() {
    let smtp = SmtpServer::start().await;
    let email = Email::new(&smtp.url(), "Shop <no-reply@shop.example>").unwrap();
    let target = Target::Email {
        address: "ada@example.com".into(),
        name: "Ada Lovelace".into(),
    };
    email.send(&target, MESSAGE).await.expect("sent");
    let messages = smtp.wait_for_messages(1).await;
    assert_eq!(messages.len(), 1);
    let raw = &messages[0];
    assert!(raw.contains("X-RcptTo: ada@example.com"), "{raw}");
    assert!(raw.contains("X-MailFrom: no-reply@shop.example"), "{raw}");
    assert!(
        raw.contains("To: \"Ada Lovelace\" <ada@example.com>"),
        "{raw}"
    );
    assert!(
        raw.contains("Message-ID: <0190f0e0-delivery@shop.example>"),
        "{raw}"
    );
    // Non-ASCII words are RFC 2047 encoded ("–" is E2 80 93).
    assert!(
        raw.contains("Subject: Order received =?utf-8?b?4oCT?= thank you"),
        "{raw}"
    );
    assert!(
        raw.contains("We received order 0190ab for 2 items."),
        "{raw}"
    );
    assert!(raw.contains("Total: 12.00 USD"), "{raw}");

    let bad = Target::Email {
        address: "not an address".into(),
        name: String::new(),
    };
    assert!(matches!(
        email.send(&bad, MESSAGE).await,
        Err(SendError::Permanent(_))
    ));
    drop(smtp);
}

#[tokio::test]
async fn an_unreachable_smtp_server_is_a_retryable_failure() {
    let email = Email::new("smtp://127.0.0.1:1", "no-reply@shop.example").unwrap();
    let target = Target::Email {
        address: "ada@example.com".into(),
        name: String::new(),
    };
    assert!(matches!(
        email.send(&target, MESSAGE).await,
        Err(SendError::Retryable(_))
    ));
    assert!(Email::new("smtp://127.0.0.1:1", "not a mailbox").is_err());
}

#[tokio::test]
async fn sms_posts_a_twilio_form_with_basic_auth_and_classifies_refusals() {
    let twilio = Recorder::start(
        &[
            (201, r#"{"sid":"SM123","status":"queued"}"#),
            (503, "busy"),
            (
                400,
                r#"{"code":21211,"message":"The 'To' number is not a valid phone number."}"#,
            ),
            (429, "slow down"),
            (401, r#"{"code":20003,"message":"Authenticate"}"#),
        ],
        201,
    )
    .await;
    let sms = Twilio::new(&twilio.url, "AC0001", "secret-token", "+15005550006").unwrap();
    let target = Target::Sms {
        phone: "+14155550100".into(),
    };
    sms.send(&target, MESSAGE).await.expect("sent");
    let seen = &twilio.seen()[0];
    assert_eq!(seen.path, "/2010-04-01/Accounts/AC0001/Messages.json");
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("AC0001:secret-token");
    assert_eq!(seen.header("authorization"), format!("Basic {basic}"));
    let form = seen.form();
    assert_eq!(form["To"], "+14155550100");
    assert_eq!(form["From"], "+15005550006");
    assert!(
        form["Body"].starts_with("Order received – thank you: We received order 0190ab"),
        "{form:?}"
    );

    assert!(matches!(
        sms.send(&target, MESSAGE).await,
        Err(SendError::Retryable(_))
    ));
    match sms.send(&target, MESSAGE).await {
        Err(SendError::Permanent(e)) => assert!(e.contains("not a valid phone number"), "{e}"),
        other => panic!("a 400 is permanent: {other:?}"),
    }
    assert!(matches!(
        sms.send(&target, MESSAGE).await,
        Err(SendError::Retryable(_))
    ));
    // Refused credentials (a rotation in progress): kept for later.
    assert!(matches!(
        sms.send(&target, MESSAGE).await,
        Err(SendError::Retryable(_))
    ));
}

#[tokio::test]
async fn web_push_is_signed_with_vapid_and_decrypts_in_the_browser() {
    let service = Recorder::start(&[(201, ""), (410, "unsubscribed"), (413, "too big")], 201).await;
    let push = WebPush::new(&WebPush::generate_key().unwrap(), "mailto:ops@shop.example").unwrap();
    let mut browser = Browser::new();
    let target = Target::Push {
        endpoint: format!("{}/wpush/v2/token-abc", service.url),
        p256dh: browser.p256dh.clone(),
        auth: browser.auth.clone(),
    };
    push.send(&target, MESSAGE).await.expect("sent");
    let seen = &service.seen()[0];
    assert_eq!(seen.path, "/wpush/v2/token-abc");
    assert_eq!(seen.header("content-encoding"), "aes128gcm");
    assert_eq!(seen.header("content-type"), "application/octet-stream");
    assert_eq!(seen.header("ttl"), "86400");
    let claims = verify_vapid(seen.header("authorization"), &service.url);
    assert_eq!(claims["sub"], "mailto:ops@shop.example");
    assert!(seen.header("authorization").ends_with(push.public_key()));
    let payload: serde_json::Value = serde_json::from_slice(&browser.decrypt(&seen.body)).unwrap();
    assert_eq!(payload["title"], MESSAGE.title);
    assert_eq!(payload["body"], MESSAGE.body);
    assert_eq!(payload["kind"], "order.created");
    assert_eq!(payload["id"], MESSAGE.id);

    assert!(matches!(
        push.send(&target, MESSAGE).await,
        Err(SendError::Gone(_))
    ));
    assert!(matches!(
        push.send(&target, MESSAGE).await,
        Err(SendError::Permanent(_))
    ));
}
