//! Web Push: the payload encrypted for the browser (RFC 8291, `aes128gcm`
//! content coding of RFC 8188) and the request signed for the push service
//! with VAPID (RFC 8292, an ES256 JWT).
//!
//! The VAPID key is a P-256 key in PKCS#8 (PEM, or base64url DER), e.g.
//! `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`. Its
//! public half is what browsers pass as `applicationServerKey` when they
//! subscribe.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use ring::{aead, agreement, hkdf};

use super::{Channel, Message, SendError, Target};

/// How long a push service keeps an undelivered message (seconds).
const TTL_SECS: u32 = 24 * 3600;
/// RFC 8188 record size; our payloads always fit in one record.
const RECORD_SIZE: u32 = 4096;
/// Largest payload that fits one record (record minus tag and delimiter).
pub const MAX_PAYLOAD: usize = RECORD_SIZE as usize - 16 - 1 - 86;

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

/// base64url without padding, as Web Push spells keys.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url with or without padding (browsers differ).
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim().trim_end_matches('=')).ok()
}

/// PKCS#8 DER from PEM text or base64url.
fn pkcs8_der(key: &str) -> anyhow::Result<Vec<u8>> {
    let key = key.trim();
    if key.starts_with("-----BEGIN") {
        if key.contains("BEGIN EC PRIVATE KEY") {
            anyhow::bail!(
                "a SEC1 key (BEGIN EC PRIVATE KEY); convert it with `openssl pkcs8 -topk8 -nocrypt`"
            );
        }
        let body: String = key
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::trim)
            .collect();
        STANDARD
            .decode(body)
            .map_err(|e| anyhow::anyhow!("bad PEM body: {e}"))
    } else {
        b64url_decode(key).ok_or_else(|| anyhow::anyhow!("neither PEM nor base64url"))
    }
}

/// A push service name that resolves to no public address (loopback,
/// private, link-local…): refused, so subscriptions cannot reach inside.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves to no public address")]
pub struct NotPublic(String);

/// Resolves names to their public addresses only.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(NotPublic(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether `ip` is reachable on the public internet (not loopback,
/// private, link-local, shared, unique-local, documentation or reserved).
pub fn is_public(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (b & 0xc0) == 64)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

impl WebPush {
    /// Sends only to public addresses; see [`WebPush::allowing_private_addresses`].
    pub fn new(private_key: &str, subject: &str) -> anyhow::Result<WebPush> {
        let rng = SystemRandom::new();
        let der = pkcs8_der(private_key)?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|e| anyhow::anyhow!("not a PKCS#8 P-256 key: {e}"))?;
        let http = super::http_client_builder()
            .dns_resolver(std::sync::Arc::new(PublicOnly))
            .build()
            .map_err(|e| anyhow::anyhow!("building the HTTP client: {e}"))?;
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

    /// A new VAPID key as PKCS#8 base64url (for development set-ups).
    pub fn generate_key() -> anyhow::Result<String> {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| anyhow::anyhow!("key generation failed"))?;
        Ok(b64url(doc.as_ref()))
    }

    /// The application server key browsers subscribe with (base64url).
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// `vapid t=<jwt>, k=<public key>` for a push service `endpoint`.
    pub fn authorization(&self, endpoint: &str, now_secs: u64) -> Result<String, SendError> {
        let audience = origin(endpoint)
            .ok_or_else(|| SendError::Permanent("push endpoint is not an http(s) URL".into()))?;
        let header = b64url(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = b64url(
            serde_json::json!({
                "aud": audience,
                // At most 24 hours ahead (RFC 8292 section 2).
                "exp": now_secs + 12 * 3600,
                "sub": self.subject,
            })
            .to_string()
            .as_bytes(),
        );
        let signing_input = format!("{header}.{claims}");
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| SendError::Retryable("VAPID signing failed".into()))?;
        Ok(format!(
            "vapid t={signing_input}.{}, k={}",
            b64url(signature.as_ref()),
            self.public_key
        ))
    }
}

/// Whether `endpoint` may be a push service: an https URL on a public DNS
/// name. IP literals, single-label and local names are refused, so a
/// subscription cannot make the service post to internal addresses (with
/// `allow_http`, for development, anything goes). A public name that
/// resolves to a private address is for the egress policy to stop.
pub fn check_endpoint(endpoint: &str, allow_http: bool) -> Result<(), &'static str> {
    const INVALID: &str = "must be an https URL of a push service";
    if endpoint.len() > 2048 {
        return Err("must be at most 2048 characters");
    }
    let url = reqwest::Url::parse(endpoint).map_err(|_| INVALID)?;
    if allow_http {
        return if matches!(url.scheme(), "https" | "http") && url.has_host() {
            Ok(())
        } else {
            Err(INVALID)
        };
    }
    if url.scheme() != "https" || !url.username().is_empty() || url.password().is_some() {
        return Err(INVALID);
    }
    // `domain()` is None for IP literals.
    let Some(host) = url.domain() else {
        return Err("must name a push service by its DNS name, not an address");
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let local = [
        "localhost",
        ".localhost",
        ".local",
        ".internal",
        ".lan",
        ".home.arpa",
        ".cluster.local",
    ]
    .iter()
    .any(|suffix| host == suffix.trim_start_matches('.') || host.ends_with(suffix));
    if local || !host.contains('.') {
        return Err("must be a public push service");
    }
    Ok(())
}

/// `scheme://host[:port]` of a URL.
pub fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf(salt: &[u8], ikm: &[u8], info: &[&[u8]], len: usize) -> Vec<u8> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let mut out = vec![0; len];
    // Lengths here are at most 32 bytes, far below HKDF's 255 * 32 limit.
    prk.expand(info, Len(len))
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF output length is within bounds");
    out
}

/// RFC 8291 section 3 from the ECDH secret: one `aes128gcm` record with
/// its header (salt, record size, sender key).
pub fn seal(
    ecdh_secret: &[u8],
    auth_secret: &[u8],
    ua_public: &[u8],
    as_public: &[u8],
    salt: &[u8; 16],
    plaintext: &[u8],
) -> Vec<u8> {
    let key_info: &[&[u8]] = &[b"WebPush: info\0", ua_public, as_public];
    let ikm = hkdf(auth_secret, ecdh_secret, key_info, 32);
    let cek = hkdf(salt, &ikm, &[b"Content-Encoding: aes128gcm\0"], 16);
    let nonce = hkdf(salt, &ikm, &[b"Content-Encoding: nonce\0"], 12);
    // The last (and only) record ends with the delimiter 0x02, no padding.
    let mut record = Vec::with_capacity(plaintext.len() + 17);
    record.extend_from_slice(plaintext);
    record.push(2);
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::AES_128_GCM, &cek).expect("CEK is 16 bytes"),
    );
    let nonce = aead::Nonce::try_assume_unique_for_key(&nonce).expect("nonce is 12 bytes");
    key.seal_in_place_append_tag(nonce, aead::Aad::empty(), &mut record)
        .expect("one record is far below AES-GCM's length limit");
    let mut body = Vec::with_capacity(21 + as_public.len() + record.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(as_public.len() as u8);
    body.extend_from_slice(as_public);
    body.extend_from_slice(&record);
    body
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

/// Encrypts `plaintext` for a subscription with a fresh sender key and salt.
pub fn encrypt(
    rng: &dyn SecureRandom,
    p256dh: &str,
    auth: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, SendError> {
    let ua_public = b64url_decode(p256dh)
        .filter(|k| k.len() == 65 && k[0] == 4)
        .ok_or_else(|| SendError::Permanent("p256dh is not an uncompressed P-256 key".into()))?;
    let auth = b64url_decode(auth)
        .filter(|a| a.len() == 16)
        .ok_or_else(|| SendError::Permanent("auth is not a 16-byte secret".into()))?;
    if plaintext.len() > MAX_PAYLOAD {
        return Err(SendError::Permanent("push payload too large".into()));
    }
    let failed = |_| SendError::Retryable("random number generator failed".into());
    let sender =
        agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, rng).map_err(failed)?;
    let as_public = sender.compute_public_key().map_err(failed)?;
    let mut salt = [0u8; 16];
    rng.fill(&mut salt).map_err(failed)?;
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, &ua_public);
    agreement::agree_ephemeral(sender, &peer, |secret| {
        seal(
            secret,
            &auth,
            &ua_public,
            as_public.as_ref(),
            &salt,
            plaintext,
        )
    })
    .map_err(|_| SendError::Permanent("p256dh is not a point on P-256".into()))
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
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
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
    use super::*;

    fn b64(s: &str) -> Vec<u8> {
        b64url_decode(s).expect("test vector is base64url")
    }

    /// RFC 8291 appendix A, from the documented ECDH secret to the body sent.
    #[test]
    fn seal_matches_the_rfc_8291_example() {
        let salt: [u8; 16] = b64("DGv6ra1nlYgDCS1FRnbzlw").try_into().unwrap();
        let body = seal(
            &b64("kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs"),
            &b64("BTBZMqHH6r4Tts7J_aSIgg"),
            &b64(
                "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
            ),
            &b64(
                "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8",
            ),
            &salt,
            b"When I grow up, I want to be a watermelon",
        );
        assert_eq!(
            b64url(&body),
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
        );
    }

    #[test]
    fn only_public_https_push_services_are_accepted() {
        for ok in [
            "https://fcm.googleapis.com/fcm/send/abc:def",
            "https://updates.push.services.mozilla.com/wpush/v2/gAAA",
            "https://web.push.apple.com/QGuQ",
        ] {
            assert_eq!(check_endpoint(ok, false), Ok(()), "{ok}");
        }
        for bad in [
            "http://fcm.googleapis.com/x",
            "https://10.0.3.7:8443/admin",
            "https://[::1]/x",
            "https://127.0.0.1/x",
            "https://localhost/x",
            "https://user-svc/x",
            "https://user-svc.shopmesh.svc.cluster.local/x",
            "https://printer.local/x",
            "https://metadata.internal/x",
            "https://user:pw@push.example.com/x",
            "https://exa mple.com/",
            "not a url",
            "",
        ] {
            assert!(check_endpoint(bad, false).is_err(), "{bad}");
        }
        assert_eq!(check_endpoint("http://127.0.0.1:9000/push", true), Ok(()));
        assert!(check_endpoint("ftp://127.0.0.1/push", true).is_err());
        assert!(
            check_endpoint(
                &format!("https://push.example.com/{}", "a".repeat(2048)),
                false
            )
            .is_err()
        );
    }

    #[test]
    fn only_public_addresses_count_as_public() {
        for ip in [
            "8.8.8.8",
            "142.250.74.46",
            "2a00:1450:4001:82b::200a",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

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

    #[test]
    fn bad_subscription_keys_are_permanent_errors() {
        let rng = SystemRandom::new();
        let auth = b64url(&[7u8; 16]);
        for p256dh in ["", "not base64!", &b64url(&[4u8; 65]), &b64url(&[1u8; 33])] {
            assert!(
                matches!(
                    encrypt(&rng, p256dh, &auth, b"x"),
                    Err(SendError::Permanent(_))
                ),
                "{p256dh:?}"
            );
        }
        let key = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).unwrap();
        let p256dh = b64url(key.compute_public_key().unwrap().as_ref());
        assert!(matches!(
            encrypt(&rng, &p256dh, &b64url(&[1u8; 5]), b"x"),
            Err(SendError::Permanent(_))
        ));
        assert!(matches!(
            encrypt(&rng, &p256dh, &auth, &vec![b'a'; MAX_PAYLOAD + 1]),
            Err(SendError::Permanent(_))
        ));
        assert_eq!(
            encrypt(&rng, &p256dh, &auth, b"hello").unwrap().len(),
            86 + 5 + 1 + 16
        );
    }

    #[test]
    fn vapid_header_is_a_verifiable_es256_jwt_for_the_endpoint_origin() {
        let push =
            WebPush::new(&WebPush::generate_key().unwrap(), "mailto:ops@example.com").unwrap();
        let header = push
            .authorization(
                "https://push.example.com:8443/wpush/v2/abc?x=1",
                1_700_000_000,
            )
            .unwrap();
        let (token, k) = header
            .strip_prefix("vapid t=")
            .and_then(|rest| rest.split_once(", k="))
            .expect("vapid t=…, k=…");
        assert_eq!(k, push.public_key());
        let (signing_input, signature) = token.rsplit_once('.').unwrap();
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, b64(k))
            .verify(signing_input.as_bytes(), &b64(signature))
            .expect("signature verifies with k");
        let claims: serde_json::Value =
            serde_json::from_slice(&b64(signing_input.split_once('.').unwrap().1)).unwrap();
        assert_eq!(claims["aud"], "https://push.example.com:8443");
        assert_eq!(claims["sub"], "mailto:ops@example.com");
        assert_eq!(claims["exp"], 1_700_000_000u64 + 12 * 3600);
        assert!(push.authorization("ftp://x/y", 0).is_err());
    }

    #[test]
    fn keys_load_from_pem_or_base64url_and_sec1_is_explained() {
        let der = b64(&WebPush::generate_key().unwrap());
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(&der)
        );
        let a = WebPush::new(&pem, "mailto:a@b.c").unwrap();
        let b = WebPush::new(&b64url(&der), "mailto:a@b.c").unwrap();
        assert_eq!(a.public_key(), b.public_key());
        let err = WebPush::new(
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----",
            "mailto:a@b.c",
        )
        .unwrap_err();
        assert!(err.to_string().contains("pkcs8"), "{err}");
        assert!(WebPush::new("garbage", "mailto:a@b.c").is_err());
    }
}
