//! Guest cart tokens: the cart id and an HMAC of it, so only the holder of
//! a token this service issued can reach that guest cart.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks guest cart tokens. Every replica must use the same key
/// (derived from `STORE_CURSOR_KEY`, which they already share).
#[derive(Clone)]
pub struct Tokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(…)")
    }
}

impl Tokens {
    pub fn new(secret: &[u8]) -> Tokens {
        // A key of its own, not the cursor key itself.
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(b"shopmesh cart tokens");
        Tokens {
            key: mac.finalize().into_bytes().to_vec(),
        }
    }

    fn mac(&self, cart_id: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"cart:");
        mac.update(cart_id.as_bytes());
        mac
    }

    /// `<cart id>.<signature>`.
    pub fn issue(&self, cart_id: &str) -> String {
        let signature = URL_SAFE_NO_PAD.encode(self.mac(cart_id).finalize().into_bytes());
        format!("{cart_id}.{signature}")
    }

    /// The cart id a token names, if this service issued it.
    pub fn verify(&self, token: &str) -> Option<String> {
        let (cart_id, signature) = token.trim().rsplit_once('.')?;
        if cart_id.is_empty() || cart_id.len() > 64 {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        self.mac(cart_id)
            .verify_slice(&signature)
            .ok()
            .map(|()| cart_id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_forged_ones_do_not() {
        let tokens = Tokens::new(b"a shared secret of enough length");
        let token = tokens.issue("0190-cart");
        assert_eq!(tokens.verify(&token).as_deref(), Some("0190-cart"));
        let other = Tokens::new(b"another secret of enough length!!");
        assert_eq!(other.verify(&token), None, "another key");
        let (_, signature) = token.rsplit_once('.').unwrap();
        assert_eq!(
            tokens.verify(&format!("0190-cars.{signature}")),
            None,
            "another id"
        );
        for bad in ["", ".", "0190-cart", "0190-cart.", "0190-cart.!!", ".abc"] {
            assert_eq!(tokens.verify(bad), None, "{bad:?}");
        }
    }
}
