//! Access tokens: EdDSA (Ed25519) JWTs with a `kid`, and the JWKS that
//! publishes their public keys.
//!
//! The algorithm is pinned: a token whose header says anything but `EdDSA`
//! is rejected before any key is looked at, and the `kid` selects a key
//! from our own set only. `sub`, `role`, `iss`, `aud`, `exp`, `nbf`, `iat`
//! and `jti` are required; `iss`, `aud`, `exp` and `nbf` are checked (with
//! a small leeway for clock skew).

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer, Verifier as _};
use serde::{Deserialize, Serialize};
use sha2::Digest;

mod caller;
mod mesh;
pub use caller::{Caller, SIGNED_OUT_TOPIC, SignedOut};
pub use mesh::{
    MESH_ISSUER, MeshAuth, MeshKeys, SERVICE_TOKEN_METADATA, SERVICE_TOKEN_TTL, UserKeys,
    VerifyError, generate_mesh, generate_mesh_key,
};

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(30);

/// Roles a user can have.
pub const ROLE_CUSTOMER: &str = "customer";
pub const ROLE_ADMIN: &str = "admin";
/// Role of the mesh's own components calling each other: only in service
/// tokens, never accepted from a user's access token.
pub const ROLE_SERVICE: &str = "service";

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm")]
    Algorithm,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("bad token signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issued for another issuer or audience")]
    WrongAudience,
    #[error("invalid key: {0}")]
    Key(String),
}

/// Claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: String,
    pub iss: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
}

impl Claims {
    /// Claims for `user_id` with `role`, valid from now for `ttl`.
    pub fn new(user_id: &str, role: &str, issuer: &str, audience: &str, ttl: Duration) -> Self {
        let now = crate::clock::now().secs() as u64;
        Self {
            sub: user_id.to_string(),
            role: role.to_string(),
            iss: issuer.to_string(),
            aud: audience.to_string(),
            exp: now + ttl.as_secs(),
            nbf: now,
            iat: now,
            jti: uuid::Uuid::now_v7().to_string(),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == ROLE_ADMIN
    }
}

/// A JSON Web Key (public part of an Ed25519 key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub x: String,
}

impl From<proto::user::Jwk> for Jwk {
    fn from(k: proto::user::Jwk) -> Self {
        Self {
            kty: k.kty,
            crv: k.crv,
            kid: k.kid,
            alg: k.alg,
            use_: k.r#use,
            x: k.x,
        }
    }
}

impl From<&Jwk> for proto::user::Jwk {
    fn from(k: &Jwk) -> Self {
        Self {
            kty: k.kty.clone(),
            crv: k.crv.clone(),
            kid: k.kid.clone(),
            alg: k.alg.clone(),
            r#use: k.use_.clone(),
            x: k.x.clone(),
            n: String::new(),
            e: String::new(),
        }
    }
}

impl JwkSet {
    pub fn from_proto(keys: Vec<proto::user::Jwk>) -> Self {
        Self {
            keys: keys.into_iter().map(Jwk::from).collect(),
        }
    }
}

/// `{"keys": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// A signing key with its id.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn kid_of(public: &ed25519_dalek::VerifyingKey) -> String {
    // Thumbprint of the public key (RFC 7638 members, fixed order).
    let x = URL_SAFE_NO_PAD.encode(public.as_bytes());
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(&sha2::Sha256::digest(canonical.as_bytes())[..12])
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Self {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        Self::from_secret(secret)
    }

    fn from_secret(secret: [u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(&secret);
        Self {
            kid: kid_of(&key.verifying_key()),
            key,
        }
    }

    /// From a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(pem: &str) -> Result<Self, TokenError> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem.trim()).map_err(|e| {
            TokenError::Key(format!("expected an Ed25519 PKCS#8 PEM private key: {e}"))
        })?;
        Ok(Self {
            kid: kid_of(&key.verifying_key()),
            key,
        })
    }

    pub fn to_pem(&self) -> String {
        self.key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map(|pem| pem.to_string())
            .expect("an Ed25519 key always encodes")
    }

    /// From the base64url encoding of its 32-byte secret (a `MESH_KEY`).
    pub fn from_seed(seed: &str) -> Result<Self, TokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(seed.trim())
            .map_err(|e| TokenError::Key(format!("expected base64url: {e}")))?;
        let secret = <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| TokenError::Key("expected a 32-byte Ed25519 secret".into()))?;
        Ok(Self::from_secret(secret))
    }

    /// The base64url encoding of its 32-byte secret.
    pub fn seed(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.to_bytes())
    }

    /// The same key under another `kid`.
    pub fn with_kid(mut self, kid: &str) -> Self {
        self.kid = kid.to_string();
        self
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            kid: self.kid.clone(),
            alg: "EdDSA".into(),
            use_: "sig".into(),
            x: URL_SAFE_NO_PAD.encode(self.key.verifying_key().as_bytes()),
        }
    }

    /// The Ed25519 signature of `message` (64 bytes).
    pub fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(message).to_bytes().to_vec()
    }

    /// A signed compact JWT.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"))
        );
        let signature = self.key.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

/// Verifies access tokens against a set of public keys.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    keys: HashMap<String, ed25519_dalek::VerifyingKey>,
    issuer: String,
    audience: String,
}

impl TokenVerifier {
    pub fn new(issuer: &str, audience: &str) -> Self {
        Self {
            keys: HashMap::new(),
            issuer: issuer.into(),
            audience: audience.into(),
        }
    }

    /// Adds every usable Ed25519 key of `set`; others are ignored.
    pub fn with_jwks(mut self, set: &JwkSet) -> Self {
        for jwk in &set.keys {
            if jwk.kty != "OKP"
                || jwk.crv != "Ed25519"
                || (!jwk.alg.is_empty() && jwk.alg != "EdDSA")
            {
                continue;
            }
            let Ok(bytes) = URL_SAFE_NO_PAD.decode(&jwk.x) else {
                continue;
            };
            let Ok(bytes) = <[u8; 32]>::try_from(bytes.as_slice()) else {
                continue;
            };
            if let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&bytes) {
                self.keys.insert(jwk.kid.clone(), key);
            }
        }
        self
    }

    /// Whether the key `kid` made `signature` over `message`; false for an
    /// unknown key or a malformed signature.
    pub fn verify_bytes(&self, kid: &str, message: &[u8], signature: &[u8]) -> bool {
        let (Some(key), Ok(signature)) = (
            self.keys.get(kid),
            ed25519_dalek::Signature::from_slice(signature),
        ) else {
            return false;
        };
        key.verify(message, &signature).is_ok()
    }

    pub fn knows(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// Whether any key is loaded.
    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The `kid` a token names, without verifying anything.
    pub fn kid_of(token: &str) -> Option<String> {
        let header = token.split('.').next()?;
        let header: Header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        header.kid
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if header.alg != "EdDSA" {
            return Err(TokenError::Algorithm);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(TokenError::UnknownKey)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        let signature =
            ed25519_dalek::Signature::from_slice(&signature).map_err(|_| TokenError::Malformed)?;
        let signing_input = &token[..token.rfind('.').expect("three parts")];
        key.verify(signing_input.as_bytes(), &signature)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        let now = crate::clock::now().secs() as u64;
        if claims.exp + LEEWAY.as_secs() <= now {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now + LEEWAY.as_secs() {
            return Err(TokenError::NotYetValid);
        }
        if claims.iss != self.issuer || claims.aud != self.audience {
            return Err(TokenError::WrongAudience);
        }
        if claims.sub.is_empty() || claims.jti.is_empty() {
            return Err(TokenError::Malformed);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::Engine as _;

    use super::{Claims, JwkSet, ROLE_ADMIN, ROLE_CUSTOMER, SigningKey, TokenError, TokenVerifier};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn setup() -> (SigningKey, TokenVerifier) {
        let key = SigningKey::generate();
        let verifier = TokenVerifier::new("shopmesh", "api").with_jwks(&JwkSet {
            keys: vec![key.jwk()],
        });
        (key, verifier)
    }

    fn claims() -> Claims {
        Claims::new(
            "user-1",
            ROLE_CUSTOMER,
            "shopmesh",
            "api",
            Duration::from_secs(900),
        )
    }

    fn forge(header: serde_json::Value, claims: &Claims, signature: &str) -> String {
        format!(
            "{}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
        )
    }

    #[test]
    fn signed_tokens_verify_and_carry_their_claims() {
        let (key, verifier) = setup();
        let c = claims();
        assert_eq!(verifier.verify(&key.sign(&c)).unwrap(), c);
        assert_eq!(
            TokenVerifier::kid_of(&key.sign(&c)).as_deref(),
            Some(key.kid())
        );
    }

    #[test]
    fn other_algorithms_are_refused() {
        let (key, verifier) = setup();
        for alg in ["none", "HS256", "RS256", "ES256", "eddsa"] {
            let token = forge(
                serde_json::json!({"alg": alg, "kid": key.kid()}),
                &claims(),
                "",
            );
            assert_eq!(verifier.verify(&token), Err(TokenError::Algorithm), "{alg}");
        }
    }

    #[test]
    fn tampering_and_foreign_keys_are_refused() {
        let (key, verifier) = setup();
        let token = key.sign(&claims());
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut admin = claims();
        admin.role = ROLE_ADMIN.into();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&admin).unwrap());
        parts[1] = &payload;
        assert_eq!(
            verifier.verify(&parts.join(".")),
            Err(TokenError::Signature)
        );
        let stranger = SigningKey::generate();
        assert_eq!(
            verifier.verify(&stranger.sign(&claims())),
            Err(TokenError::UnknownKey)
        );
        for garbage in ["", "a.b", "a.b.c.d", "!!.??.##"] {
            assert!(verifier.verify(garbage).is_err(), "{garbage}");
        }
    }

    #[test]
    fn time_issuer_and_audience_are_checked() {
        let (key, verifier) = setup();
        let mut expired = claims();
        expired.exp = (crate::clock::now().secs() as u64) - 120;
        assert_eq!(
            verifier.verify(&key.sign(&expired)),
            Err(TokenError::Expired)
        );
        let mut early = claims();
        early.nbf = (crate::clock::now().secs() as u64) + 3600;
        assert_eq!(
            verifier.verify(&key.sign(&early)),
            Err(TokenError::NotYetValid)
        );
        let mut other = claims();
        other.iss = "evil".into();
        assert_eq!(
            verifier.verify(&key.sign(&other)),
            Err(TokenError::WrongAudience)
        );
        let mut other = claims();
        other.aud = "another-api".into();
        assert_eq!(
            verifier.verify(&key.sign(&other)),
            Err(TokenError::WrongAudience)
        );
        let missing_claims = forge(
            serde_json::json!({"alg": "EdDSA", "kid": key.kid()}),
            &claims(),
            "x",
        )
        .replace(
            &URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap()),
            &URL_SAFE_NO_PAD.encode(r#"{"sub":"u"}"#),
        );
        assert!(verifier.verify(&missing_claims).is_err());
    }

    #[test]
    fn rotation_publishes_several_keys_at_once() {
        let (old, new) = (SigningKey::generate(), SigningKey::generate());
        let verifier = TokenVerifier::new("shopmesh", "api").with_jwks(&JwkSet {
            keys: vec![old.jwk(), new.jwk()],
        });
        assert!(verifier.verify(&old.sign(&claims())).is_ok());
        assert!(verifier.verify(&new.sign(&claims())).is_ok());
        assert_ne!(old.kid(), new.kid());
    }

    #[test]
    fn keys_round_trip_through_pem() {
        let key = SigningKey::generate();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(back.kid(), key.kid());
        assert!(SigningKey::from_pem("not a key").is_err());
    }
}

#[cfg(test)]
mod time_tests {}
