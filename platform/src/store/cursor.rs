//! Opaque, signed keyset cursors.
//!
//! A cursor holds the sort value and id of the last document of a page and
//! a fingerprint of the query that produced it, signed with HMAC-SHA256, so
//! a client can neither forge a position nor reuse a cursor with another
//! query: either is [`StoreError::Invalid`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Query, StoreError};

type HmacSha256 = Hmac<Sha256>;

/// The key of the embedded default (memory store, no `STORE_CURSOR_KEY`);
/// a real database requires a key of its own.
pub const DEFAULT_KEY: &[u8] = b"shopmesh-store-cursor-v1";

#[derive(Clone)]
pub struct CursorCodec {
    key: Vec<u8>,
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec")
    }
}

impl Default for CursorCodec {
    fn default() -> Self {
        Self::new(DEFAULT_KEY)
    }
}

impl CursorCodec {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    fn fingerprint(collection: &str, query: &Query) -> String {
        let mut hash = Sha256::new();
        hash.update(collection.as_bytes());
        hash.update([0]);
        hash.update(serde_json::to_vec(query).unwrap_or_default());
        hex(&hash.finalize()[..8])
    }

    fn mac(&self, payload: &[u8]) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload);
        mac.finalize().into_bytes()[..16].to_vec()
    }

    pub fn encode(&self, collection: &str, query: &Query, sort_value: &Value, id: &str) -> String {
        let payload = json!({"k": sort_value, "i": id, "f": Self::fingerprint(collection, query)})
            .to_string();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(self.mac(payload.as_bytes()))
        )
    }

    pub fn decode(
        &self,
        collection: &str,
        query: &Query,
        token: &str,
    ) -> Result<(Value, String), StoreError> {
        let invalid = || StoreError::Invalid("invalid cursor".into());
        let (payload, signature) = token.split_once('.').ok_or_else(invalid)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| invalid())?;
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(&payload);
        mac.verify_truncated_left(&signature)
            .map_err(|_| invalid())?;
        let value: Value = serde_json::from_slice(&payload).map_err(|_| invalid())?;
        if value["f"].as_str() != Some(Self::fingerprint(collection, query).as_str()) {
            return Err(StoreError::Invalid(
                "the cursor belongs to another query".into(),
            ));
        }
        let id = value["i"].as_str().ok_or_else(invalid)?.to_string();
        Ok((value["k"].clone(), id))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::CursorCodec;
    use crate::store::{Query, StoreError};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::{Value, json};

    #[test]
    fn cursor_round_trips_and_rejects_tampering() {
        let codec = CursorCodec::default();
        let q = Query::new().eq("category", "books").sort("price", false);
        let token = codec.encode("products", &q, &json!(1200), "abc");
        assert_eq!(
            codec.decode("products", &q, &token).unwrap(),
            (json!(1200), "abc".to_string())
        );
        // Another query, another collection, another key.
        assert!(
            codec
                .decode(
                    "products",
                    &Query::new().eq("category", "toys").sort("price", false),
                    &token
                )
                .is_err()
        );
        assert!(codec.decode("orders", &q, &token).is_err());
        assert!(
            CursorCodec::new(b"other")
                .decode("products", &q, &token)
                .is_err()
        );
        // Flip a byte of the payload, keep the signature.
        let (payload, sig) = token.split_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(payload).unwrap();
        let text = String::from_utf8(raw.clone())
            .unwrap()
            .replace("1200", "1201");
        raw = text.into_bytes();
        let forged = format!("{}.{sig}", URL_SAFE_NO_PAD.encode(raw));
        assert!(matches!(
            codec.decode("products", &q, &forged),
            Err(StoreError::Invalid(_))
        ));
        for garbage in ["", ".", "abc", "a.b", "!!!.???"] {
            assert!(codec.decode("products", &q, garbage).is_err(), "{garbage}");
        }
    }

    #[test]
    fn limit_does_not_change_the_fingerprint() {
        let codec = CursorCodec::default();
        let q = Query::new().limit(5);
        let token = codec.encode("c", &q, &Value::Null, "x");
        assert!(codec.decode("c", &Query::new().limit(50), &token).is_ok());
    }
}
