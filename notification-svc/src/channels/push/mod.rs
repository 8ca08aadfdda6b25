//! Web Push: the payload encrypted for the browser (RFC 8291, `aes128gcm`
//! content coding of RFC 8188) and the request signed for the push service
//! with VAPID (RFC 8292, an ES256 JWT).
//!
//! The VAPID key is a P-256 key in PKCS#8 (PEM, or base64url DER), e.g.
//! `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`. Its
//! public half is what browsers pass as `applicationServerKey` when they
//! subscribe.
//!
//! The HTTP client that reaches public push services only is in `client`,
//! the encryption and signing in `crypto`.

mod client;
mod crypto;

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};

use super::{Channel, Message, SendError, Target};

pub use client::{NotPublic, check_endpoint, is_public, origin};
pub use crypto::{MAX_PAYLOAD, b64url, b64url_decode, encrypt, seal};

/// How long a push service keeps an undelivered message (seconds).
const TTL_SECS: u32 = 24 * 3600;

pub struct WebPush {
    http: reqwest::Client,
    key: EcdsaKeyPair,
    /// Uncompressed public key, base64url: the `k=` of the Authorization header.
    public_key: String,
    subject: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for WebPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebPush")
            .field("public_key", &self.public_key)
            .field("subject", &self.subject)
            .finish()
    }
}

impl WebPush {
    /// Sends only to public addresses; see [`WebPush::allowing_private_addresses`].
    pub fn new(private_key: &str, subject: &str) -> anyhow::Result<WebPush> {
        let rng = SystemRandom::new();
        let der = crypto::pkcs8_der(private_key)?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|e| anyhow::anyhow!("not a PKCS#8 P-256 key: {e}"))?;
        let http = client::public_only_client()?;
        Ok(WebPush {
            http,
            public_key: b64url(key.public_key().as_ref()),
            key,
            subject: subject.to_string(),
            rng,
        })
    }

    /// Also sends to local and private addresses (development push
    /// services, tests; `PUSH_ALLOW_HTTP`).
    pub fn allowing_private_addresses(mut self) -> WebPush {
        if let Ok(http) = super::http_client() {
            self.http = http;
        }
        self
    }

    /// The application server key browsers subscribe with (base64url).
    pub fn public_key(&self) -> &str {
        &self.public_key
    }
}

/// The JSON the service worker receives, shortened to fit one record (the
/// limit is in bytes, and JSON escapes and multi-byte characters count).
pub fn payload(message: Message<'_>) -> Result<String, SendError> {
    let mut title: String = message.title.chars().take(200).collect();
    let mut body: String = message.body.chars().take(2000).collect();
    for _ in 0..16 {
        let json = serde_json::json!({
            "id": message.id,
            "kind": message.kind,
            "title": title,
            "body": body,
        })
        .to_string();
        if json.len() <= MAX_PAYLOAD {
            return Ok(json);
        }
        let keep = body.chars().count() / 2;
        body = body.chars().take(keep).collect::<String>() + "…";
        if keep == 0 {
            title = title.chars().take(title.chars().count() / 2).collect();
        }
    }
    Err(SendError::Permanent("push payload too large".into()))
}

#[async_trait::async_trait]
impl Channel for WebPush {
    async fn send(&self, target: &Target, message: Message<'_>) -> Result<(), SendError> {
        let Target::Push {
            endpoint,
            p256dh,
            auth,
        } = target
        else {
            return Err(SendError::Permanent("not a push target".into()));
        };
        let body = encrypt(&self.rng, p256dh, auth, payload(message)?.as_bytes())?;
        let now = platform::clock::now().secs() as u64;
        let response = self
            .http
            .post(endpoint)
            .header("Authorization", self.authorization(endpoint, now)?)
            .header("Content-Encoding", "aes128gcm")
            .header("Content-Type", "application/octet-stream")
            .header("TTL", TTL_SECS.to_string())
            .header("Urgency", "normal")
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::from_transport(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let detail = response.text().await.unwrap_or_default();
        // 404/410: the subscription expired or the user unsubscribed.
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
            return Err(SendError::Gone(format!(
                "push subscription is gone (HTTP {})",
                status.as_u16()
            )));
        }
        Err(SendError::from_http_status(status, &detail))
    }
}

#[cfg(test)]
mod tests {
    use ring::agreement;

    use super::*;

    #[tokio::test]
    async fn a_name_that_resolves_inside_is_refused_for_good() {
        let push =
            WebPush::new(&WebPush::generate_key().unwrap(), "mailto:ops@example.com").unwrap();
        let rng = SystemRandom::new();
        let browser =
            agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).unwrap();
        let target = Target::Push {
            endpoint: "http://localhost:9/push".into(),
            p256dh: b64url(browser.compute_public_key().unwrap().as_ref()),
            auth: b64url(&[1u8; 16]),
        };
        let message = Message {
            id: "d",
            kind: "k",
            title: "t",
            body: "b",
        };
        match push.send(&target, message).await {
            Err(SendError::Permanent(e)) => assert!(e.contains("no public address"), "{e}"),
            other => panic!("expected a permanent refusal, got {other:?}"),
        }
    }

    #[test]
    fn payloads_are_shortened_to_fit_in_bytes() {
        let body = "🍉".repeat(1900);
        let title = "é".repeat(300);
        let message = Message {
            id: "d1",
            kind: "promo",
            title: &title,
            body: &body,
        };
        let json = payload(message).unwrap();
        assert!(json.len() <= MAX_PAYLOAD, "{}", json.len());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(v["body"].as_str().unwrap().starts_with("🍉🍉"));
        assert_eq!(v["title"].as_str().unwrap().chars().count(), 200);
        let short = Message {
            id: "d2",
            kind: "promo",
            title: "Hi",
            body: "there",
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&payload(short).unwrap()).unwrap()["body"],
            "there"
        );
    }
}
