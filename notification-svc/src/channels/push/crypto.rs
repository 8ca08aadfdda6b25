//! Web Push cryptography: the payload encrypted for the browser (RFC 8291,
//! `aes128gcm` content coding of RFC 8188), the VAPID key loaded from
//! PKCS#8 and the ES256 JWT that signs each request (RFC 8292).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use ring::{aead, agreement, hkdf};

use super::{SendError, WebPush, origin};

/// RFC 8188 record size; our payloads always fit in one record.
const RECORD_SIZE: u32 = 4096;
/// Largest payload that fits one record (record minus tag and delimiter).
pub const MAX_PAYLOAD: usize = RECORD_SIZE as usize - 16 - 1 - 86;

/// base64url without padding, as Web Push spells keys.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url with or without padding (browsers differ).
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim().trim_end_matches('=')).ok()
}

/// PKCS#8 DER from PEM text or base64url.
pub(super) fn pkcs8_der(key: &str) -> anyhow::Result<Vec<u8>> {
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

impl WebPush {
    /// A new VAPID key as PKCS#8 base64url (for development set-ups).
    pub fn generate_key() -> anyhow::Result<String> {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| anyhow::anyhow!("key generation failed"))?;
        Ok(b64url(doc.as_ref()))
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
