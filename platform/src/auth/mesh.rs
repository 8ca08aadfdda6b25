//! Who may call an internal service: zero trust inside the mesh.
//!
//! A service never believes identity it cannot verify. A call carries
//! one or both of:
//! - the end user's access token (`authorization: Bearer …`), forwarded by
//!   the gateway and by services acting for that user, and verified here
//!   against the user service's JWKS, like the gateway does;
//! - a short-lived service token (`x-service-token`), an EdDSA JWT that a
//!   component of the mesh signs with its own key (`MESH_KEY`). Its `kid`
//!   and `sub` are the component's name, and it is accepted only with the
//!   public key configured for that name (`MESH_PUBLIC_KEYS`), so one
//!   component cannot speak as another.
//!
//! A component may have several public keys in `MESH_PUBLIC_KEYS` (its
//! name listed twice), and a token signed by any of them is accepted. That
//! is how a key is rotated without refusing a single call: add the new
//! public key beside the old one everywhere and roll out; give the
//! component its new `MESH_KEY` and roll it out; then drop the old public
//! key (`shopmesh mesh-keys <component>` prints a new key and says so).
//!
//! Metadata such as `x-user-roles` is never read: a process that reaches a
//! service port without a valid token is anonymous, whatever it claims.
//! Keys are per component, so a service that checks *which* component
//! calls (payment-svc takes `CreatePayment` only from order-svc) relies on
//! a key only that component holds.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::{
    Caller, Claims, Jwk, JwkSet, LEEWAY, ROLE_SERVICE, SigningKey, TokenError, TokenVerifier,
};
use crate::config::Secret;
use crate::grpc::GrpcChannel;
use proto::user::user_service_client::UserServiceClient;

/// Metadata key of the calling component's service token.
pub const SERVICE_TOKEN_METADATA: &str = "x-service-token";
/// Issuer and audience of service tokens.
pub const MESH_ISSUER: &str = "shopmesh-mesh";
/// How long a service token is valid; a fresh one is signed when less than
/// half of that is left.
pub const SERVICE_TOKEN_TTL: Duration = Duration::from_secs(300);

const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Why a token could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    Token(TokenError),
    /// The key set could not be fetched.
    Unavailable,
}

/// The public keys of end users' access tokens: given (tests, user-svc
/// itself) or fetched from user-svc and cached, fetched again at most once
/// a second when a token names an unknown `kid`, as after a key rotation.
#[derive(Debug)]
pub struct UserKeys {
    client: Option<UserServiceClient<GrpcChannel>>,
    verifier: RwLock<Arc<TokenVerifier>>,
    /// Held while fetching, so concurrent requests with a new `kid` wait
    /// for one fetch instead of failing or fetching again.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    issuer: String,
    audience: String,
}

impl UserKeys {
    /// Keys fetched from user-svc over `channel`.
    pub fn fetched(channel: GrpcChannel, issuer: &str, audience: &str) -> Self {
        Self {
            client: Some(UserServiceClient::new(channel)),
            verifier: RwLock::new(Arc::new(TokenVerifier::new(issuer, audience))),
            last_fetch: tokio::sync::Mutex::new(None),
            issuer: issuer.into(),
            audience: audience.into(),
        }
    }

    /// A fixed key set.
    pub fn fixed(set: &JwkSet, issuer: &str, audience: &str) -> Self {
        Self {
            client: None,
            verifier: RwLock::new(Arc::new(
                TokenVerifier::new(issuer, audience).with_jwks(set),
            )),
            last_fetch: tokio::sync::Mutex::new(None),
            issuer: issuer.into(),
            audience: audience.into(),
        }
    }

    fn current(&self) -> Arc<TokenVerifier> {
        self.verifier.read().expect("jwks lock").clone()
    }

    /// Fetches the key set again, unless another request just did so and
    /// it now knows `kid`, or the last fetch was less than a second ago.
    async fn refresh(&self, kid: Option<&str>) -> Result<(), VerifyError> {
        if self.client.is_none() {
            return Ok(());
        }
        let mut last = self.last_fetch.lock().await;
        if kid.is_some_and(|kid| self.current().knows(kid)) {
            return Ok(());
        }
        if last.is_some_and(|at| at.elapsed() < MIN_REFRESH_INTERVAL) {
            return Ok(());
        }
        let set = self.key_set().await.map_err(|status| {
            tracing::warn!(code = ?status.code(), "cannot fetch the JWKS from user-svc");
            VerifyError::Unavailable
        })?;
        *last = Some(Instant::now());
        let verifier = TokenVerifier::new(&self.issuer, &self.audience).with_jwks(&set);
        *self.verifier.write().expect("jwks lock") = Arc::new(verifier);
        Ok(())
    }

    /// Whether a key set is loaded (fetching it now if none is).
    pub async fn ensure_loaded(&self) -> bool {
        if self.current().has_keys() {
            return true;
        }
        self.refresh(None).await.is_ok() && self.current().has_keys()
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        match self.current().verify(token) {
            Err(TokenError::UnknownKey) => {
                self.refresh(TokenVerifier::kid_of(token).as_deref())
                    .await?;
                self.current().verify(token).map_err(VerifyError::Token)
            }
            other => other.map_err(VerifyError::Token),
        }
    }

    /// The published key set, fetched from user-svc (or the fixed one).
    pub async fn key_set(&self) -> Result<JwkSet, tonic::Status> {
        let Some(client) = &self.client else {
            return Err(tonic::Status::unavailable("no key source"));
        };
        let mut request = tonic::Request::new(proto::user::GetJwksRequest {});
        request.set_timeout(Duration::from_secs(2));
        let keys = client.clone().get_jwks(request).await?.into_inner().keys;
        Ok(JwkSet::from_proto(keys))
    }
}

/// The mesh's public keys by component name (`MESH_PUBLIC_KEYS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshKeys(pub Vec<(String, String)>);

impl MeshKeys {
    /// The keys as key sets with at most one key per component (its `kid`
    /// is the component's name): the first set holds each component's
    /// first key, the second each one's second key (while it rotates), …
    fn key_sets(&self) -> Vec<JwkSet> {
        let mut sets: Vec<JwkSet> = Vec::new();
        let mut seen: std::collections::HashMap<&str, usize> = Default::default();
        for (name, x) in &self.0 {
            let n = seen.entry(name.as_str()).or_default();
            if sets.len() <= *n {
                sets.push(JwkSet::default());
            }
            sets[*n].keys.push(Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                kid: name.clone(),
                alg: "EdDSA".into(),
                use_: "sig".into(),
                x: x.clone(),
            });
            *n += 1;
        }
        sets
    }

    /// `name=<key>` pairs, comma-separated (the `MESH_PUBLIC_KEYS` format).
    pub fn to_env(&self) -> String {
        self.0
            .iter()
            .map(|(name, x)| format!("{name}={x}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// This component's view of the mesh: its own key, its peers' public keys
/// and the users' key set. Cheap to clone.
#[derive(Clone)]
pub struct MeshAuth {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    key: Option<SigningKey>,
    /// One verifier per key set (see [`MeshKeys::key_sets`]); a service
    /// token is good if one of them accepts it.
    peers: Vec<TokenVerifier>,
    users: UserKeys,
    token: Mutex<Option<(Arc<str>, Instant)>>,
    verified: Verified,
}

/// Tokens already verified, with their claims: a user's token and a peer's
/// service token come again on every call for minutes, and a signature
/// check costs far more than a lookup. A hit still checks expiry; the map
/// is emptied when full rather than tracking ages.
#[derive(Default)]
struct Verified(Mutex<std::collections::HashMap<String, Claims>>);

const VERIFIED_CAPACITY: usize = 4096;

impl Verified {
    fn get(&self, token: &str) -> Option<Claims> {
        let claims = self.0.lock().expect("verified lock").get(token).cloned()?;
        (claims.exp > (crate::clock::now().secs() as u64)).then_some(claims)
    }

    fn put(&self, token: &str, claims: &Claims) {
        let mut map = self.0.lock().expect("verified lock");
        if map.len() >= VERIFIED_CAPACITY {
            map.clear();
        }
        map.insert(token.to_string(), claims.clone());
    }
}

impl std::fmt::Debug for MeshAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshAuth")
            .field("name", &self.inner.name)
            .field("has_key", &self.inner.key.is_some())
            .finish_non_exhaustive()
    }
}

impl MeshAuth {
    /// `name` signs with `key` (base64url Ed25519 seed; none: its calls carry
    /// no service token and peers treat them as anonymous), accepts service
    /// tokens of `peers` and users' tokens verified by `users`.
    pub fn new(
        name: &str,
        key: Option<&str>,
        peers: &MeshKeys,
        users: UserKeys,
    ) -> Result<Self, TokenError> {
        let key = key
            .map(|seed| SigningKey::from_seed(seed).map(|k| k.with_kid(name)))
            .transpose()?;
        if key.is_none() {
            tracing::warn!(
                component = name,
                "MESH_KEY is not set: peers will refuse this component's own calls"
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.to_string(),
                key,
                peers: peers
                    .key_sets()
                    .iter()
                    .map(|set| TokenVerifier::new(MESH_ISSUER, MESH_ISSUER).with_jwks(set))
                    .collect(),
                users,
                token: Mutex::new(None),
                verified: Verified::default(),
            }),
        })
    }

    /// A component without a key that accepts no credential at all (for
    /// tests of code that makes calls nobody answers).
    pub fn keyless(name: &str) -> Self {
        Self::new(
            name,
            None,
            &MeshKeys::default(),
            UserKeys::fixed(&JwkSet::default(), "", ""),
        )
        .expect("no key to parse")
    }

    /// From the configuration: `MESH_KEY`, `MESH_PUBLIC_KEYS`, and the users'
    /// keys given in the configuration or fetched from user-svc.
    pub fn from_config(name: &str, config: &crate::config::Config) -> anyhow::Result<Self> {
        let users = match &config.mesh.user_jwks {
            Some(set) => UserKeys::fixed(set, &config.jwt.issuer, &config.jwt.audience),
            None => UserKeys::fetched(
                crate::grpc::channel_for(
                    crate::config::ServiceId::User,
                    config.peers.get(crate::config::ServiceId::User),
                    &config.grpc,
                )?,
                &config.jwt.issuer,
                &config.jwt.audience,
            ),
        };
        Self::with_users(name, config, users)
    }

    /// As [`MeshAuth::from_config`], with the users' keys given.
    pub fn with_users(
        name: &str,
        config: &crate::config::Config,
        users: UserKeys,
    ) -> anyhow::Result<Self> {
        Ok(Self::new(
            name,
            config.mesh.key.as_ref().map(|k| k.expose()),
            &config.mesh.public_keys,
            users,
        )?)
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The users' key set this component verifies access tokens with.
    pub fn users(&self) -> &UserKeys {
        &self.inner.users
    }

    /// This component's current service token (signed anew when less than
    /// half its life is left), or none without a key.
    pub fn service_token(&self) -> Option<Arc<str>> {
        let key = self.inner.key.as_ref()?;
        let mut cached = self.inner.token.lock().expect("token lock");
        if let Some((token, at)) = cached.as_ref()
            && at.elapsed() < SERVICE_TOKEN_TTL / 2
        {
            return Some(token.clone());
        }
        let claims = Claims::new(
            &self.inner.name,
            ROLE_SERVICE,
            MESH_ISSUER,
            MESH_ISSUER,
            SERVICE_TOKEN_TTL,
        );
        let token: Arc<str> = key.sign(&claims).into();
        *cached = Some((token.clone(), Instant::now()));
        Some(token)
    }

    /// `message` signed with this component's key, or none without a key
    /// (signed events, see [`crate::events::signed`]).
    pub fn sign_bytes(&self, message: &[u8]) -> Option<Vec<u8>> {
        Some(self.inner.key.as_ref()?.sign_bytes(message))
    }

    /// Whether a key of `component` (any of its keys while it rotates)
    /// made `signature` over `message`.
    pub fn verify_signature(&self, component: &str, message: &[u8], signature: &[u8]) -> bool {
        self.inner
            .peers
            .iter()
            .any(|peers| peers.verify_bytes(component, message, signature))
    }

    /// Adds this component's service token to an outgoing request.
    pub fn stamp<T>(&self, request: &mut tonic::Request<T>) {
        if let Some(token) = self.service_token()
            && let Ok(value) = token.parse()
        {
            request.metadata_mut().insert(SERVICE_TOKEN_METADATA, value);
        }
    }

    /// A request from this component acting on its own behalf.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        self.stamp(&mut request);
        request
    }

    /// Adds `caller`'s credential (the user's token) and this component's
    /// service token to an outgoing request made for `caller`.
    pub fn apply<T>(&self, caller: &Caller, request: &mut tonic::Request<T>) {
        caller.forward(request);
        self.stamp(request);
    }

    /// This component as a caller (for work it does on its own behalf).
    pub fn own_caller(&self) -> Caller {
        Caller::service(&self.inner.name)
    }

    /// Who is calling: the verified user (and the verified component acting
    /// for them), or a verified component on its own behalf.
    /// `UNAUTHENTICATED` without a valid credential, `UNAVAILABLE` when the
    /// users' keys cannot be fetched.
    pub async fn caller(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Caller, tonic::Status> {
        let service = match metadata.get(SERVICE_TOKEN_METADATA) {
            None => None,
            Some(value) => {
                let token = value
                    .to_str()
                    .map_err(|_| tonic::Status::unauthenticated("malformed service token"))?;
                Some(self.verify_service(token)?)
            }
        };
        let bearer = match metadata.get("authorization") {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(|v| v.split_once(' '))
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, token)| token.trim())
                    .filter(|token| !token.is_empty())
                    .ok_or_else(|| {
                        tonic::Status::unauthenticated("expected authorization: Bearer <token>")
                    })?,
            ),
        };
        match (bearer, service) {
            (Some(token), service) => {
                let claims = self.verify_user(token).await?;
                if claims.role == ROLE_SERVICE {
                    return Err(tonic::Status::unauthenticated(
                        "an access token cannot carry the service role",
                    ));
                }
                Ok(Caller::user(&claims, token).via(service))
            }
            (None, Some(service)) => Ok(Caller::service(&service)),
            (None, None) => Err(tonic::Status::unauthenticated(
                "no credential: an access token or a service token is required",
            )),
        }
    }

    /// A user's access token verified; one seen lately is not checked
    /// again until it expires (see [`Verified`]).
    pub async fn verify_user_token(&self, token: &str) -> Result<Claims, VerifyError> {
        if let Some(claims) = self.inner.verified.get(token) {
            return Ok(claims);
        }
        let claims = self.inner.users.verify(token).await?;
        self.inner.verified.put(token, &claims);
        Ok(claims)
    }

    async fn verify_user(&self, token: &str) -> Result<Claims, tonic::Status> {
        self.verify_user_token(token).await.map_err(|e| match e {
            VerifyError::Unavailable => {
                tonic::Status::unavailable("cannot verify the access token now")
            }
            VerifyError::Token(TokenError::Expired) => {
                tonic::Status::unauthenticated("the access token has expired")
            }
            VerifyError::Token(_) => tonic::Status::unauthenticated("the access token is invalid"),
        })
    }

    /// The caller if the call carries a credential, `None` if it carries
    /// none (anonymous), an error if it carries an invalid one.
    pub async fn optional_caller(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Option<Caller>, tonic::Status> {
        if metadata.get(SERVICE_TOKEN_METADATA).is_none() && metadata.get("authorization").is_none()
        {
            return Ok(None);
        }
        self.caller(metadata).await.map(Some)
    }

    fn verify_service(&self, token: &str) -> Result<String, tonic::Status> {
        // Cached under a prefix, so a user's token can never be taken for
        // a service token or the other way round.
        let cache_key = format!("svc {token}");
        if let Some(claims) = self.inner.verified.get(&cache_key) {
            return Ok(claims.sub);
        }
        let mut refusal = TokenError::UnknownKey;
        let mut accepted = None;
        for peers in &self.inner.peers {
            match peers.verify(token) {
                Ok(claims) => {
                    accepted = Some(claims);
                    break;
                }
                // A key of another set may still take it. The most telling
                // refusal is kept: one about the token itself (expired, for
                // another audience…) over a signature that this set's key
                // does not match, over a key this set does not have.
                Err(TokenError::UnknownKey) => {}
                Err(TokenError::Signature) => {
                    if refusal == TokenError::UnknownKey {
                        refusal = TokenError::Signature;
                    }
                }
                Err(err) => refusal = err,
            }
        }
        let claims = accepted.ok_or_else(|| {
            tonic::Status::unauthenticated(format!("service token refused: {refusal}"))
        })?;
        // The key is chosen by `kid`, the component's name: a token is only
        // good for the component whose key signed it.
        if TokenVerifier::kid_of(token).as_deref() != Some(claims.sub.as_str())
            || claims.role != ROLE_SERVICE
        {
            return Err(tonic::Status::unauthenticated(
                "service token refused: it names another component",
            ));
        }
        // Components sign tokens that live minutes. One made to live longer
        // (or dated in the future) is refused: a token that leaked must
        // stop working soon, whoever signed it.
        let most = SERVICE_TOKEN_TTL.as_secs() + LEEWAY.as_secs();
        if claims.exp.saturating_sub(claims.iat) > most
            || claims.iat > (crate::clock::now().secs() as u64) + LEEWAY.as_secs()
        {
            return Err(tonic::Status::unauthenticated(format!(
                "service token refused: it may live at most {} s",
                SERVICE_TOKEN_TTL.as_secs()
            )));
        }
        self.inner.verified.put(&cache_key, &claims);
        Ok(claims.sub)
    }
}

/// A fresh key for a component: its `MESH_KEY` value and its public key
/// for `MESH_PUBLIC_KEYS`.
pub fn generate_mesh_key() -> (Secret, String) {
    let key = SigningKey::generate();
    (Secret(key.seed()), key.jwk().x)
}

/// Keys for a whole mesh of `names`: each one's `MESH_KEY` and the shared
/// `MESH_PUBLIC_KEYS`.
pub fn generate_mesh(names: &[&str]) -> (Vec<(String, Secret)>, MeshKeys) {
    let mut private = Vec::new();
    let mut public = Vec::new();
    for name in names {
        let (key, x) = generate_mesh_key();
        private.push((name.to_string(), key));
        public.push((name.to_string(), x));
    }
    (private, MeshKeys(public))
}

#[cfg(test)]
mod tests {
    use crate::auth::{
        Claims, JwkSet, MESH_ISSUER, MeshAuth, MeshKeys, ROLE_ADMIN, ROLE_CUSTOMER, ROLE_SERVICE,
        SERVICE_TOKEN_METADATA, SERVICE_TOKEN_TTL, SigningKey, UserKeys, generate_mesh,
        generate_mesh_key,
    };
    use crate::config::Secret;
    use std::time::Duration;

    fn mesh(names: &[&str]) -> (Vec<(String, Secret)>, MeshKeys, SigningKey) {
        let (private, public) = generate_mesh(names);
        (private, public, SigningKey::generate())
    }

    fn auth(
        name: &str,
        private: &[(String, Secret)],
        public: &MeshKeys,
        user: &SigningKey,
    ) -> MeshAuth {
        let key = private
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, k)| k.expose());
        let users = UserKeys::fixed(
            &JwkSet {
                keys: vec![user.jwk()],
            },
            "shopmesh",
            "api",
        );
        MeshAuth::new(name, key, public, users).unwrap()
    }

    fn user_token(key: &SigningKey, role: &str) -> String {
        key.sign(&Claims::new(
            "user-1",
            role,
            "shopmesh",
            "api",
            Duration::from_secs(60),
        ))
    }

    #[tokio::test]
    async fn a_peer_service_token_is_accepted_as_that_service() {
        let (private, public, user) = mesh(&["order-svc", "payment-svc"]);
        let order = auth("order-svc", &private, &public, &user);
        let payment = auth("payment-svc", &private, &public, &user);
        let request = order.request(());
        let caller = payment.caller(request.metadata()).await.unwrap();
        assert!(caller.is_service());
        assert_eq!(caller.service.as_deref(), Some("order-svc"));
    }

    #[tokio::test]
    async fn forged_identity_metadata_is_refused() {
        let (private, public, user) = mesh(&["order-svc"]);
        let order = auth("order-svc", &private, &public, &user);
        let mut request = tonic::Request::new(());
        request
            .metadata_mut()
            .insert("x-user-id", "admin-1".parse().unwrap());
        request
            .metadata_mut()
            .insert("x-user-roles", "admin".parse().unwrap());
        let status = order.caller(request.metadata()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }

    #[tokio::test]
    async fn a_token_signed_by_one_component_cannot_name_another() {
        let (private, public, user) = mesh(&["order-svc", "recommendation-svc"]);
        let target = auth("order-svc", &private, &public, &user);
        // recommendation-svc's key, signing a token that says order-svc.
        let rogue = SigningKey::from_seed(private[1].1.expose())
            .unwrap()
            .with_kid("recommendation-svc");
        let claims = Claims::new(
            "order-svc",
            ROLE_SERVICE,
            MESH_ISSUER,
            MESH_ISSUER,
            SERVICE_TOKEN_TTL,
        );
        let mut request = tonic::Request::new(());
        request
            .metadata_mut()
            .insert(SERVICE_TOKEN_METADATA, rogue.sign(&claims).parse().unwrap());
        let status = target.caller(request.metadata()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        // And a key the mesh does not know at all.
        let stranger = SigningKey::generate().with_kid("order-svc");
        let mut request = tonic::Request::new(());
        request.metadata_mut().insert(
            SERVICE_TOKEN_METADATA,
            stranger.sign(&claims).parse().unwrap(),
        );
        assert_eq!(
            target.caller(request.metadata()).await.unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }

    /// Whom `to` takes a call from `from` to be (None: refused).
    async fn seen_as(from: &MeshAuth, to: &MeshAuth) -> Option<String> {
        let request = from.request(());
        match to.caller(request.metadata()).await {
            Ok(caller) => caller.service,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unauthenticated);
                None
            }
        }
    }

    #[tokio::test]
    async fn a_key_rotates_without_a_refused_call() {
        let (private, public, user) = mesh(&["order-svc", "payment-svc"]);
        let (new_key, new_public) = generate_mesh_key();
        let renewed = [("order-svc".to_string(), new_key)];
        // First every component learns the new public key beside the old.
        let mut both = public.clone();
        both.0.push(("order-svc".into(), new_public.clone()));
        let payment = auth("payment-svc", &private, &both, &user);
        let old_order = auth("order-svc", &private, &both, &user);
        let new_order = auth("order-svc", &renewed, &both, &user);
        assert_eq!(
            seen_as(&old_order, &payment).await.as_deref(),
            Some("order-svc")
        );
        assert_eq!(
            seen_as(&new_order, &payment).await.as_deref(),
            Some("order-svc")
        );
        // The new key speaks only for its own component.
        let impostor = auth("payment-svc", &renewed, &both, &user);
        assert_eq!(seen_as(&impostor, &old_order).await, None);
        // Once every order-svc signs with the new key, the old one goes.
        let rotated = MeshKeys(
            public
                .0
                .iter()
                .filter(|(name, _)| name != "order-svc")
                .cloned()
                .chain([("order-svc".to_string(), new_public)])
                .collect(),
        );
        let payment = auth("payment-svc", &private, &rotated, &user);
        assert_eq!(
            seen_as(&new_order, &payment).await.as_deref(),
            Some("order-svc")
        );
        assert_eq!(seen_as(&old_order, &payment).await, None);

        // While both keys are listed, an expired token is refused as
        // expired, not as a signature the other key does not match.
        let payment = auth("payment-svc", &private, &both, &user);
        let old_key = SigningKey::from_seed(private[0].1.expose())
            .unwrap()
            .with_kid("order-svc");
        let mut claims = Claims::new(
            "order-svc",
            ROLE_SERVICE,
            MESH_ISSUER,
            MESH_ISSUER,
            SERVICE_TOKEN_TTL,
        );
        claims.exp = claims.iat.saturating_sub(60);
        let mut request = tonic::Request::new(());
        request.metadata_mut().insert(
            SERVICE_TOKEN_METADATA,
            old_key.sign(&claims).parse().unwrap(),
        );
        let status = payment.caller(request.metadata()).await.unwrap_err();
        assert!(status.message().contains("expired"), "{status:?}");
    }

    #[tokio::test]
    async fn a_service_token_made_to_live_long_is_refused() {
        let (private, public, user) = mesh(&["order-svc", "payment-svc"]);
        let payment = auth("payment-svc", &private, &public, &user);
        let key = SigningKey::from_seed(private[0].1.expose())
            .unwrap()
            .with_kid("order-svc");
        let sent = |claims: &Claims| {
            let mut request = tonic::Request::new(());
            request
                .metadata_mut()
                .insert(SERVICE_TOKEN_METADATA, key.sign(claims).parse().unwrap());
            request
        };
        let ten_years = Duration::from_secs(10 * 365 * 24 * 3600);
        let long = Claims::new(
            "order-svc",
            ROLE_SERVICE,
            MESH_ISSUER,
            MESH_ISSUER,
            ten_years,
        );
        let status = payment.caller(sent(&long).metadata()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(status.message().contains("at most"), "{status:?}");
        // Dated an hour ahead, so that it seems short-lived for a while.
        let mut ahead = Claims::new(
            "order-svc",
            ROLE_SERVICE,
            MESH_ISSUER,
            MESH_ISSUER,
            SERVICE_TOKEN_TTL,
        );
        ahead.iat += 3600;
        ahead.exp += 3600;
        let status = payment.caller(sent(&ahead).metadata()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        let fine = Claims::new(
            "order-svc",
            ROLE_SERVICE,
            MESH_ISSUER,
            MESH_ISSUER,
            SERVICE_TOKEN_TTL,
        );
        let caller = payment.caller(sent(&fine).metadata()).await.unwrap();
        assert!(caller.is_from(crate::Component::ORDER));
    }

    #[tokio::test]
    async fn a_user_token_gives_the_user_and_the_component_acting_for_them() {
        let (private, public, user) = mesh(&["order-svc", "payment-svc"]);
        let order = auth("order-svc", &private, &public, &user);
        let payment = auth("payment-svc", &private, &public, &user);
        let mut incoming = tonic::Request::new(());
        incoming.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", user_token(&user, ROLE_CUSTOMER))
                .parse()
                .unwrap(),
        );
        let caller = order.caller(incoming.metadata()).await.unwrap();
        assert_eq!(caller.user_id, "user-1");
        assert!(!caller.is_admin() && !caller.is_service());
        assert_eq!(caller.service, None);

        let mut onward = tonic::Request::new(());
        order.apply(&caller, &mut onward);
        let seen = payment.caller(onward.metadata()).await.unwrap();
        assert_eq!(seen.user_id, "user-1");
        assert_eq!(seen.service.as_deref(), Some("order-svc"));
        assert!(!seen.is_service(), "a user's call gets no service rights");
    }

    #[tokio::test]
    async fn a_user_token_signed_by_another_key_is_refused() {
        let (private, public, user) = mesh(&["order-svc"]);
        let order = auth("order-svc", &private, &public, &user);
        let mut request = tonic::Request::new(());
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", user_token(&SigningKey::generate(), ROLE_ADMIN))
                .parse()
                .unwrap(),
        );
        assert_eq!(
            order.caller(request.metadata()).await.unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }

    #[tokio::test]
    async fn without_a_key_calls_carry_no_service_token() {
        let (_, public, user) = mesh(&["order-svc"]);
        let keyless = auth("order-svc", &[], &public, &user);
        assert!(
            keyless
                .request(())
                .metadata()
                .get(SERVICE_TOKEN_METADATA)
                .is_none()
        );
        assert_eq!(
            keyless.optional_caller(&Default::default()).await.unwrap(),
            None
        );
    }
}
