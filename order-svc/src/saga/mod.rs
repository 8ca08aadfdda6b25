//! The order saga: placing, paying, cancelling and expiring orders, and the
//! steps each of those owes other services.
//!
//! Conflicting commands on one order (pay, cancel, expire, carrier and
//! payment news) are decided by the order document's CAS. A payment attempt
//! is recorded on the order before the provider is called, so a cancel or
//! an expiry that comes while it is under way waits for it; a success that
//! arrives for an order that no longer takes it is refunded. What the saga
//! owes other services (commit, release, refund, void) is written as a
//! [`Step`](crate::domain::Step) in the same write as the state change,
//! tried at once and retried by the sweeper until the peer confirms.
//!
//! Timings, chosen together:
//! - the gateway gives each call 5 s (`GRPC_CLIENT_TIMEOUT_MS`) and the
//!   budget travels on (`grpc-timeout`), so nothing here works for a caller
//!   that gave up;
//! - a duplicate of a create still running waits at most 1 s, then gets
//!   409 with `Retry-After: 1`; a key whose first request died is taken over
//!   after 10 s (two budgets), so a careful client's retry succeeds within
//!   about 10 s of a crash;
//! - a payment attempt keeps cancel and expiry away for 15 s
//!   ([`domain::ATTEMPT_LIVE_MS`](crate::domain::ATTEMPT_LIVE_MS));
//! - product-svc asks about a reservation whose order it cannot see after
//!   60 s (`RESERVATION_ORPHAN_GRACE_MS`), longer than any creation runs.

mod cancel;
mod create;
mod delivery;
mod pay;
mod read;
mod steps;

use std::sync::Arc;
use std::time::Duration;

use platform::auth::{Caller, MeshAuth};
use platform::config::SagaSettings;
use platform::deadline::Budget;
use platform::events::outbox::OutboxRelay;
use platform::grpc::Retry;
use platform::store::{Collection, StoreError, Versioned};
use tonic::{Code, Status};

use crate::domain::Order;
use crate::idempotency::Keys;
use crate::peers::{Catalog, Payments, Shipments};

/// The order saga: every operation on orders, whoever asks (the gRPC face
/// in [`crate::api`], the event consumers in [`crate::events`], the
/// sweeper).
#[derive(Clone, Debug)]
pub struct Saga {
    pub(crate) orders: Collection<Order>,
    pub(crate) keys: Keys,
    pub(crate) relay: OutboxRelay<Order>,
    /// product-svc: prices, stock reservations.
    pub(crate) catalog: Arc<dyn Catalog>,
    /// payment-svc: charges and refunds.
    pub(crate) payments: Arc<dyn Payments>,
    /// shipping-svc: voids shipments of cancelled orders.
    pub(crate) shipments: Arc<dyn Shipments>,
    pub(crate) retry: Retry,
    /// Signs order-svc's own calls and forwards a caller's credentials.
    pub(crate) mesh: MeshAuth,
    pub(crate) settings: SagaSettings,
}

pub(crate) use pay::Paid;

/// Deadline of the calls a step makes in the background.
const STEP_CALL_TIMEOUT: Duration = Duration::from_secs(3);

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl Saga {
    /// A call order-svc makes on its own behalf, in the background.
    fn step_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = self.mesh.request(message);
        request.set_timeout(STEP_CALL_TIMEOUT);
        request
    }

    /// A stock call (reserve, commit, release) of an order of `product_ids`,
    /// keyed by its lowest product id: the product-svc replica that owns
    /// that product writes its stock, so its batches and held copy stay
    /// whole (see `platform::balance`).
    fn keyed_by_product<'a, T>(
        mut request: tonic::Request<T>,
        product_ids: impl IntoIterator<Item = &'a str>,
    ) -> tonic::Request<T> {
        if let Some(key) = product_ids.into_iter().min() {
            platform::balance::with_affinity(&mut request, key);
        }
        request
    }

    /// A call made for `caller` within `budget`.
    fn budget_request<T>(&self, budget: &Budget, message: T, caller: &Caller) -> tonic::Request<T> {
        let mut request = budget.request(message);
        self.mesh.apply(caller, &mut request);
        request
    }
}

/// Whether a failed call may have done its work anyway (no answer came).
fn ambiguous(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

impl Saga {
    /// Applies `change` to the order with CAS; NOT_FOUND for an unknown id.
    pub(crate) async fn change<E: Send>(
        &self,
        id: &str,
        change: impl FnMut(&mut Order) -> Result<(), E> + Send,
    ) -> Result<Result<Versioned<Order>, E>, Status> {
        self.orders.update(id, change).await.map_err(not_found)
    }

    /// [`Saga::change`] from a copy of order `id` the caller holds (one
    /// it just read or wrote), if it holds one: one CAS write, and a read
    /// only if another write came in between.
    pub(crate) async fn change_from<E: Send>(
        &self,
        id: &str,
        known: Option<Versioned<Order>>,
        change: impl FnMut(&mut Order) -> Result<(), E> + Send,
    ) -> Result<Result<Versioned<Order>, E>, Status> {
        match known {
            Some(known) => self.orders.update_from(known, change).await,
            None => self.orders.update(id, change).await,
        }
        .map_err(not_found)
    }

    /// After a write: publish what it staged, then do what it owes.
    /// `written` is the document the write returned, so neither starts with
    /// a read. Returns the order as it stood after its events went out
    /// (before any step ran).
    pub(crate) async fn after_write(&self, written: Versioned<Order>) -> Versioned<Order> {
        let order = self.relay.flush_or_defer_written(written).await;
        if !order.value.steps.items.is_empty() {
            self.run_steps_of(order.clone()).await;
        }
        order
    }
}

/// NOT_FOUND for an order the caller may not know of, or that is not there.
fn order_not_found() -> Status {
    Status::not_found("order not found")
}

fn not_found(err: StoreError) -> Status {
    match err {
        StoreError::NotFound => order_not_found(),
        other => other.into(),
    }
}
