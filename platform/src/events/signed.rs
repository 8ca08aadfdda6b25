//! Signed events: a message on the bus is believed only if the component
//! that owns its type signed it.
//!
//! NATS credentials keep strangers off the bus, but not every deployment
//! has them (the all-in-one binary's in-process bus, a NATS without auth),
//! and a component that holds credentials can still publish on any subject
//! it is allowed. So the envelope carries its publisher's Ed25519
//! signature, made with the same mesh key (`MESH_KEY`) that signs its
//! service tokens, over the envelope encoded with `signature` empty.
//! A consumer acts on an event only when
//! - the signature is there and a key of `source` (`MESH_PUBLIC_KEYS`)
//!   made it, and
//! - `source` is the component that owns the event type ([`owner`]):
//!   only payment-svc may say a payment was processed.
//!
//! Anything else is dead-lettered at once with the reason (so an operator
//! sees it, and a replay cannot make it pass) and counted in
//! `messaging_refused_total`.
//!
//! [`SignedBus`] does both for one component: every event it publishes is
//! signed with the component's key, every delivery to its consumers is
//! verified before the handler sees it.

use std::sync::Arc;

use prost::Message as _;
use proto::events::Envelope;

use super::{BusError, ConsumerConfig, Delivery, EventBus, Handler, HandlerError, Listener};
use crate::auth::MeshAuth;

/// The component that publishes events of `event_type`, or none for a type
/// the mesh does not know.
pub fn owner(event_type: &str) -> Option<&'static str> {
    let (family, _) = event_type.split_once('.')?;
    use crate::Component;
    let owner = match family {
        "user" => Component::USER,
        "order" => Component::ORDER,
        "payment" => Component::PAYMENT,
        "shipping" => Component::SHIPPING,
        "inventory" | "review" => Component::PRODUCT,
        "media" => Component::MEDIA,
        _ => return None,
    };
    Some(owner.name())
}

/// The bytes a signature covers: the envelope without its signature.
fn signed_bytes(envelope: &Envelope) -> Vec<u8> {
    if envelope.signature.is_empty() {
        return envelope.encode_to_vec();
    }
    let mut unsigned = envelope.clone();
    unsigned.signature.clear();
    unsigned.encode_to_vec()
}

/// `envelope` signed by `mesh`'s component, which must be its `source`.
/// Without a key it stays unsigned (consumers will refuse it; the
/// component already warned at start that it has no `MESH_KEY`).
pub fn sign(mesh: &MeshAuth, envelope: &Envelope) -> Result<Envelope, BusError> {
    if envelope.source != mesh.name() {
        return Err(BusError::Invalid(format!(
            "{} cannot publish an event as {:?}",
            mesh.name(),
            envelope.source
        )));
    }
    let mut signed = envelope.clone();
    signed.signature = mesh.sign_bytes(&signed_bytes(envelope)).unwrap_or_default();
    Ok(signed)
}

/// Why an event was not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No signature.
    Unsigned,
    /// No key of `source` made the signature.
    BadSignature,
    /// Signed by `source`, which does not own the event type.
    NotOwner,
}

impl Refusal {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Unsigned => "unsigned",
            Refusal::BadSignature => "bad_signature",
            Refusal::NotOwner => "not_owner",
        }
    }
}

/// Whether `mesh`'s component may believe `envelope`.
pub fn verify(mesh: &MeshAuth, envelope: &Envelope) -> Result<(), (Refusal, String)> {
    if envelope.signature.is_empty() {
        return Err((
            Refusal::Unsigned,
            format!(
                "refused: {} event {} carries no signature",
                envelope.r#type, envelope.id
            ),
        ));
    }
    if !mesh.verify_signature(
        &envelope.source,
        &signed_bytes(envelope),
        &envelope.signature,
    ) {
        return Err((
            Refusal::BadSignature,
            format!(
                "refused: the signature of {} event {} is not {:?}'s",
                envelope.r#type, envelope.id, envelope.source
            ),
        ));
    }
    match owner(&envelope.r#type) {
        Some(owner) if owner == envelope.source => Ok(()),
        owner => Err((
            Refusal::NotOwner,
            format!(
                "refused: {} event {} comes from {:?}; only {} publishes it",
                envelope.r#type,
                envelope.id,
                envelope.source,
                owner.unwrap_or("no component")
            ),
        )),
    }
}

/// One component's view of the bus: it signs what it publishes and
/// verifies what its consumers receive.
#[derive(Clone)]
pub struct SignedBus {
    inner: Arc<dyn EventBus>,
    mesh: MeshAuth,
}

impl std::fmt::Debug for SignedBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedBus")
            .field("component", &self.mesh.name())
            .field("inner", &self.inner)
            .finish()
    }
}

impl SignedBus {
    pub fn new(inner: Arc<dyn EventBus>, mesh: MeshAuth) -> Self {
        Self { inner, mesh }
    }
}

/// A handler that sees only events it may believe.
struct Verifying {
    inner: Arc<dyn Handler>,
    mesh: MeshAuth,
}

#[async_trait::async_trait]
impl Handler for Verifying {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        if let Err((refusal, reason)) = verify(&self.mesh, &delivery.envelope) {
            crate::metrics::count(
                &crate::metrics::REFUSED_EVENTS,
                &[
                    &delivery.consumer,
                    &delivery.envelope.r#type,
                    refusal.label(),
                ],
            );
            return Err(HandlerError::Permanent(reason));
        }
        self.inner.handle(delivery).await
    }
}

#[async_trait::async_trait]
impl EventBus for SignedBus {
    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        self.inner.publish(&sign(&self.mesh, envelope)?).await
    }

    async fn subscribe(
        &self,
        config: ConsumerConfig,
        handler: Arc<dyn Handler>,
    ) -> Result<super::Subscription, BusError> {
        let handler = Arc::new(Verifying {
            inner: handler,
            mesh: self.mesh.clone(),
        });
        self.inner.subscribe(config, handler).await
    }

    async fn broadcast(&self, topic: &str, payload: Vec<u8>) -> Result<(), BusError> {
        self.inner.broadcast(topic, payload).await
    }

    async fn listen(&self, topic: &str) -> Result<Listener, BusError> {
        self.inner.listen(topic).await
    }

    fn prefix(&self) -> &str {
        self.inner.prefix()
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    fn signer(&self) -> Option<&str> {
        Some(self.mesh.name())
    }
}

#[cfg(test)]
mod tests {
    use crate::events::signed::{Refusal, owner, sign, verify};
    use prost::Message as _;
    use proto::events::Envelope;
    use proto::events::envelope::Payload;

    fn paid(source: &str) -> Envelope {
        super::super::event(
            "o1",
            source,
            Payload::PaymentProcessed(proto::events::PaymentProcessed {
                order_id: "o1".into(),
                ..Default::default()
            }),
        )
    }

    #[test]
    fn only_the_owner_signature_is_believed() {
        let id = crate::testing::identity();
        let payments = id.component("payment-svc");
        let orders = id.component("order-svc");
        let signed = sign(&payments, &paid("payment-svc")).unwrap();
        assert!(verify(&orders, &signed).is_ok());

        let unsigned = paid("payment-svc");
        assert_eq!(verify(&orders, &unsigned).unwrap_err().0, Refusal::Unsigned);

        let mut tampered = signed.clone();
        tampered.aggregate_id = "o2".into();
        assert_eq!(
            verify(&orders, &tampered).unwrap_err().0,
            Refusal::BadSignature
        );

        // Another component's key under payment-svc's name.
        let mut forged = paid("payment-svc");
        forged.signature = id
            .component("recommendation-svc")
            .sign_bytes(&forged.encode_to_vec())
            .unwrap();
        assert_eq!(
            verify(&orders, &forged).unwrap_err().0,
            Refusal::BadSignature
        );

        // Signed truly, by a component that does not own the type.
        let recs = id.component("recommendation-svc");
        let not_owner = sign(&recs, &paid("recommendation-svc")).unwrap();
        assert_eq!(
            verify(&orders, &not_owner).unwrap_err().0,
            Refusal::NotOwner
        );

        // A component cannot sign as another.
        assert!(sign(&recs, &paid("payment-svc")).is_err());
    }

    #[test]
    fn every_published_type_has_an_owner() {
        for event_type in Payload::ALL_TYPES {
            assert!(owner(event_type).is_some(), "{event_type}");
        }
        assert_eq!(owner("anything.else"), None);
        assert_eq!(owner("nodot"), None);
    }
}
