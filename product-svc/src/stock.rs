//! Reservations: reserve, commit and release an order's stock, and the
//! sweeper that settles what a crash or a lost call left open.
//!
//! Every move of a reservation goes through [`reservation::next`] and a CAS
//! from the state it was decided in, so reserve, commit and release of one
//! order are decided once whatever their timing (see `domain/reservation.rs`).

use std::collections::BTreeMap;

use platform::error::invalid_fields;
use platform::store::{Bound, Query, StoreError, Versioned};
use proto::order::OrderStatus;
use tonic::Status;

use platform::config::SagaSettings;
use platform::events::outbox::OutboxRelay;
use platform::grpc::GrpcChannel;
use platform::store::{Coalescer, Collection};
use proto::events::InventoryLow;
use proto::events::envelope::Payload;
use proto::order::order_service_client::OrderServiceClient;

use crate::cache::{self, Cache};
use crate::convert::validation_of;
use crate::domain::reservation::{self, Command, Refusal, Transition, Work};
use crate::domain::{self, Product, Reservation, ReservationState as S, StockError};

/// Stock levels and the order saga's reservations of them.
#[derive(Clone, Debug)]
pub struct Stock {
    /// Stock moves of reservations, written in batches per product so a
    /// best-seller's concurrent orders do not fight over its document.
    pub(crate) stock_writes: Coalescer<Product>,
    pub(crate) reservations: Collection<Reservation>,
    pub(crate) product_relay: OutboxRelay<Product>,
    pub(crate) cache: Cache,
    /// `inventory.low` is announced when available stock drops below this.
    pub(crate) low_stock_threshold: i64,
    /// Asked what became of an order whose reservation outlived it.
    pub(crate) orders: OrderServiceClient<GrpcChannel>,
    /// Signs product-svc's own calls.
    pub(crate) mesh: platform::auth::MeshAuth,
    pub(crate) saga: SagaSettings,
}

/// A reservation caught between two states is looked at again after this
/// long (seconds): longer than any single call that could still be moving it.
const STUCK_AFTER_SECS: i64 = 30;

use platform::clock::now;

/// Stages `inventory.low` in `product`'s outbox when this change took its
/// available stock below `threshold` (from `before`).
pub(crate) fn stage_low_stock(threshold: i64, id: &str, product: &mut Product, before: i64) {
    if domain::crosses_low_stock(before, product.stock_available, threshold) {
        let event = platform::events::event(
            id,
            "product-svc",
            Payload::InventoryLow(InventoryLow {
                product_id: id.to_string(),
                sku: product.sku.clone(),
                name: product.name.clone(),
                stock_available: product.stock_available.max(0) as u32,
                threshold: threshold as u32,
            }),
        );
        product.outbox.stage(&event);
    }
}

pub(crate) fn stock_error(product_id: &str, err: StockError) -> Status {
    match err {
        StockError::Insufficient {
            available,
            requested,
        } => Status::failed_precondition(format!(
            "insufficient stock for product {product_id}: {available} available, {requested} requested"
        )),
        StockError::Inactive => {
            Status::failed_precondition(format!("product {product_id} is not available for sale"))
        }
        StockError::BelowReserved { reserved } => Status::failed_precondition(format!(
            "stock cannot go below the {reserved} units reserved for orders"
        )),
        StockError::BadQuantity => invalid_fields([("quantity", "out of range".to_string())]),
        StockError::Released => released(),
    }
}

/// The order's reservation was given back: the order id cannot hold stock
/// again. ABORTED, so the caller starts over under a new order.
fn released() -> Status {
    Status::aborted("this order's reservation was released; place the order again")
}

fn refusal(r: Refusal) -> Status {
    match r {
        Refusal::NotComplete => Status::failed_precondition("the reservation is not complete"),
        Refusal::Released => Status::failed_precondition("the reservation was released"),
    }
}

/// Merges request lines per product, checking quantities.
pub(crate) fn merge_lines(
    lines: &[proto::product::StockLine],
) -> Result<Vec<(String, i64)>, Status> {
    if lines.is_empty() || lines.len() > 50 {
        return Err(invalid_fields([("lines", "1 to 50 lines".to_string())]));
    }
    let mut merged: BTreeMap<String, i64> = BTreeMap::new();
    for line in lines {
        if !(1..=1000).contains(&line.quantity) {
            return Err(invalid_fields([(
                "lines.quantity",
                "must be 1 to 1000".to_string(),
            )]));
        }
        *merged.entry(line.product_id.clone()).or_default() += i64::from(line.quantity);
    }
    Ok(merged.into_iter().collect())
}

impl Stock {
    /// After stock moves whose stored documents the caller holds
    /// (`written`, in the order written; `ids`, every product touched):
    /// only a document that staged an event is published and cleared, from
    /// its latest copy, with no read first; cached copies go stale.
    pub(crate) async fn after_stock_writes(&self, written: Vec<Versioned<Product>>, ids: &[&str]) {
        let mut latest: BTreeMap<String, Versioned<Product>> = BTreeMap::new();
        for doc in written {
            match latest.get(&doc.id) {
                Some(seen) if seen.version >= doc.version => {}
                _ => {
                    latest.insert(doc.id.clone(), doc);
                }
            }
        }
        for doc in latest.into_values() {
            if !doc.value.outbox.is_empty() {
                self.product_relay.flush_or_defer_written(doc).await;
            }
        }
        self.invalidate(ids).await;
    }

    /// Makes the cached copies of products `ids` (and the lists) stale.
    pub(crate) async fn invalidate(&self, ids: &[&str]) {
        let namespaces: Vec<String> = ids
            .iter()
            .flat_map(|id| cache::namespaces_of(id))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        self.cache.invalidate(&namespaces).await;
    }

    /// [`stage_low_stock`] at this service's threshold.
    pub(crate) fn stage_low_stock(&self, id: &str, product: &mut Product, before: i64) {
        stage_low_stock(self.low_stock_threshold, id, product, before)
    }

    fn lookup_reservation(err: StoreError) -> Status {
        match err {
            StoreError::NotFound | StoreError::Invalid(_) => {
                Status::not_found("no reservation for this order")
            }
            other => other.into(),
        }
    }

    /// Moves the reservation from `from` to `to`, only if it is still in
    /// `from`; from `known` (the reservation as last read or written) when
    /// the caller holds it, so the common case is one write and no read.
    async fn move_reservation(
        &self,
        known: Versioned<Reservation>,
        from: S,
        to: S,
    ) -> Result<Result<Versioned<Reservation>, S>, Status> {
        let recheck = self.recheck_secs(to);
        self.reservations
            .update_from(known, |r| {
                if r.state != from {
                    return Err(r.state);
                }
                r.enter(to, now().secs(), recheck);
                Ok(())
            })
            .await
            .map_err(Self::lookup_reservation)
    }

    fn recheck_secs(&self, state: S) -> i64 {
        match state {
            S::Active => self.saga.orphan_grace.as_secs().max(1) as i64,
            _ => STUCK_AFTER_SECS,
        }
    }

    /// One product change for `order_id`: `work` on product `product_id`.
    async fn apply_line(
        &self,
        order_id: &str,
        product_id: &str,
        quantity: i64,
        work: Work,
    ) -> Result<Option<Versioned<Product>>, Status> {
        let order_id = order_id.to_string();
        let changed = self
            .stock_writes
            .update(product_id, move |p| {
                let order_id = order_id.as_str();
                let changed = match work {
                    Work::Release => p.release(order_id),
                    Work::Commit => p.commit(order_id),
                    // A line the commit had not reached is still held.
                    Work::Restock if p.holds(order_id) => p.release(order_id),
                    Work::Restock => p.restock(order_id, quantity),
                };
                if !changed {
                    // Done before: no write.
                    return Err(());
                }
                p.updated_at = now().secs();
                Ok(())
            })
            .await;
        match changed {
            Ok(Ok(written)) => Ok(Some(written)),
            Ok(Err(())) | Err(StoreError::NotFound) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Runs `command` on the reservation of `order_id` to its end.
    pub(crate) async fn settle_reservation(
        &self,
        order_id: &str,
        command: Command,
    ) -> Result<Versioned<Reservation>, Status> {
        loop {
            let current = self
                .reservations
                .get(order_id)
                .await
                .map_err(Self::lookup_reservation)?;
            let (marker, work, done) = match reservation::next(current.value.state, command) {
                Ok(Transition::Done) => return Ok(current),
                Ok(Transition::Run { marker, work, done }) => (marker, work, done),
                Ok(other) => {
                    return Err(Status::internal(format!(
                        "{command:?} does not settle a reservation ({other:?})"
                    )));
                }
                Err(r) => return Err(refusal(r)),
            };
            let lines = current.value.lines.clone();
            let marked = if current.value.state != marker {
                let state = current.value.state;
                match self.move_reservation(current, state, marker).await? {
                    Ok(marked) => marked,
                    // Someone else moved it first: plan again from there.
                    Err(_) => continue,
                }
            } else {
                current
            };
            let mut written = Vec::new();
            for (product_id, quantity) in &lines {
                written.extend(
                    self.apply_line(order_id, product_id, *quantity, work)
                        .await?,
                );
            }
            let ids: Vec<&str> = lines.iter().map(|(p, _)| p.as_str()).collect();
            self.after_stock_writes(written, &ids).await;
            match self.move_reservation(marked, marker, done).await? {
                Ok(finished) => return Ok(finished),
                // The other command overtook this one; it finishes the job.
                // Plan again to report where it stands.
                Err(_) => continue,
            }
        }
    }

    /// ReserveStock: all lines or none, once per order. With the
    /// reservation, each product as the write that took its units left it
    /// (none when this call took nothing: a repeat of a finished reserve).
    pub(crate) async fn reserve(
        &self,
        order_id: &str,
        lines: Vec<(String, i64)>,
    ) -> Result<(Reservation, Vec<proto::product::ProductValidation>), Status> {
        let at = now().secs();
        let intent = Reservation {
            lines: lines.clone(),
            state: S::Reserving,
            created_at: at,
            updated_at: at,
            expires_at: at + (self.saga.payment_timeout + self.saga.orphan_grace).as_secs() as i64,
            settle_at: Some(at + STUCK_AFTER_SECS),
        };
        let existing = match self.reservations.insert(order_id, intent).await {
            Ok(created) => created,
            Err(StoreError::AlreadyExists { .. }) => {
                let existing = self.reservations.get(order_id).await?;
                if existing.value.lines != lines {
                    return Err(if existing.value.state == S::Released {
                        released()
                    } else {
                        Status::failed_precondition(
                            "this order already holds a different reservation",
                        )
                    });
                }
                existing
            }
            Err(err) => return Err(err.into()),
        };
        let from = existing.value.state;
        let (done, failed) = match reservation::next(from, Command::Reserve) {
            // New, or a retry of a reserve still under way (or cut short):
            // the per-product changes are idempotent, go on.
            Ok(Transition::Take { done, failed }) => (done, failed),
            Ok(_) => return Ok((existing.value, Vec::new())),
            Err(_) => return Err(released()),
        };
        let mut failure = None;
        let mut written = Vec::new();
        for (reached, (product_id, quantity)) in lines.iter().enumerate() {
            let (order, quantity, threshold, id) = (
                order_id.to_string(),
                *quantity,
                self.low_stock_threshold,
                product_id.clone(),
            );
            let outcome = self
                .stock_writes
                .update(product_id, move |p| {
                    let before = p.stock_available;
                    if p.reserve(&order, quantity)? {
                        p.updated_at = now().secs();
                        stage_low_stock(threshold, &id, p, before);
                    }
                    Ok(())
                })
                .await;
            match outcome {
                Ok(Ok(doc)) => written.push(doc),
                Ok(Err(stock)) => {
                    failure = Some((stock_error(product_id, stock), reached));
                    break;
                }
                Err(StoreError::NotFound) | Err(StoreError::Invalid(_)) => {
                    failure = Some((
                        Status::not_found(format!("product {product_id} not found")),
                        reached,
                    ));
                    break;
                }
                Err(err) => {
                    // The write may have landed: release this line too.
                    failure = Some((err.into(), reached + 1));
                    break;
                }
            }
        }
        if let Some((status, reached)) = failure {
            // Give back the lines taken before the one that failed; if that
            // fails too, the sweeper finds the reservation still RESERVING
            // and finishes the job.
            for (product_id, quantity) in &lines[..reached] {
                written.extend(
                    self.apply_line(order_id, product_id, *quantity, Work::Release)
                        .await?,
                );
            }
            if self
                .move_reservation(existing, from, failed)
                .await?
                .is_err()
            {
                // Moved meanwhile (a retry, a release): settle it in full.
                self.settle_reservation(order_id, Command::Release).await?;
            }
            let ids: Vec<&str> = lines.iter().map(|(p, _)| p.as_str()).collect();
            self.after_stock_writes(written, &ids).await;
            return Err(status);
        }
        let ids: Vec<&str> = lines.iter().map(|(p, _)| p.as_str()).collect();
        match self.move_reservation(existing, from, done).await? {
            Ok(active) => {
                let products = written
                    .iter()
                    .map(|p| validation_of(p.id.clone(), &p.value))
                    .collect();
                self.after_stock_writes(written, &ids).await;
                Ok((active.value, products))
            }
            Err(moved) => match reservation::next(moved, Command::Reserve) {
                // A concurrent retry of this reserve finished first.
                Ok(Transition::Done) => {
                    Ok((self.reservations.get(order_id).await?.value, Vec::new()))
                }
                _ => {
                    // Released while the lines were being taken: the release
                    // may have run before some of them, so give them back again.
                    self.settle_reservation(order_id, Command::Release).await?;
                    Err(released())
                }
            },
        }
    }

    /// ReleaseStock. An order that reserved nothing (yet) gets a released
    /// record, so a reserve still on its way is refused.
    pub(crate) async fn release(&self, order_id: &str) -> Result<Reservation, Status> {
        if order_id.trim().is_empty() || order_id.len() > 128 {
            return Err(invalid_fields([("order_id", "is required".to_string())]));
        }
        let at = now().secs();
        let tombstone = Reservation {
            lines: Vec::new(),
            state: S::Released,
            created_at: at,
            updated_at: at,
            expires_at: at,
            settle_at: None,
        };
        match self.reservations.find_by_id(order_id).await? {
            Some(_) => {}
            None => match self.reservations.insert(order_id, tombstone.clone()).await {
                Ok(_) => return Ok(tombstone),
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(err) => return Err(err.into()),
            },
        }
        Ok(self
            .settle_reservation(order_id, Command::Release)
            .await?
            .value)
    }

    /// CommitStock.
    pub(crate) async fn commit(&self, order_id: &str) -> Result<Reservation, Status> {
        Ok(self
            .settle_reservation(order_id, Command::Commit)
            .await?
            .value)
    }

    /// What the order a reservation belongs to says should happen to it.
    async fn owner_verdict(&self, order_id: &str) -> Result<Option<Command>, Status> {
        // An order that does not exist is recorded as abandoned in the same
        // call, so it cannot be placed after its stock was given back.
        let mut request = self.mesh.request(proto::order::GetOrderStatusRequest {
            order_id: order_id.to_string(),
            abandon_if_missing: true,
        });
        request.set_timeout(std::time::Duration::from_secs(2));
        match self.orders.clone().get_order_status(request).await {
            Ok(reply) => {
                let status = OrderStatus::try_from(reply.into_inner().status)
                    .unwrap_or(OrderStatus::Unspecified);
                Ok(match status {
                    OrderStatus::Paid | OrderStatus::Shipped | OrderStatus::Delivered => {
                        Some(Command::Commit)
                    }
                    OrderStatus::Cancelled | OrderStatus::Refunded => Some(Command::Release),
                    // Still open: its own payment timeout will decide.
                    _ => None,
                })
            }
            // No order with this id: it was never placed (its creation
            // failed or was cut short after reserving).
            Err(status) if status.code() == tonic::Code::NotFound => Ok(Some(Command::Release)),
            Err(status) => Err(status),
        }
    }

    /// One pass of the sweeper: settles reservations whose time to be
    /// looked at has come. Returns how many it moved.
    pub async fn sweep_reservations(&self) -> Result<usize, Status> {
        let due = self
            .reservations
            .find(
                &Query::new()
                    .range(
                        "settle_at",
                        None,
                        Some(Bound::Inclusive(now().secs().into())),
                    )
                    .limit(100),
            )
            .await?;
        let mut moved = 0;
        for doc in due.items {
            let id = doc.id.as_str();
            let command = match reservation::next(doc.value.state, Command::Sweep) {
                // Cut short mid-way: finish what was started.
                Ok(Transition::Settle(command)) => Some(command),
                Ok(Transition::AskOwner) => match self.owner_verdict(id).await {
                    Ok(verdict) => verdict,
                    Err(status) => {
                        tracing::warn!(order = id, code = ?status.code(), "cannot ask order-svc about a reservation; will retry");
                        None
                    }
                },
                _ => None,
            };
            let result = match command {
                Some(command) => self.settle_reservation(id, command).await.map(|_| ()),
                None => {
                    // Look again later.
                    let recheck = self.recheck_secs(doc.value.state);
                    self.reservations
                        .modify(id, |r| {
                            if !r.state.is_final() {
                                r.settle_at = Some(now().secs() + recheck);
                            }
                        })
                        .await
                        .map(|_| ())
                        .map_err(Status::from)
                }
            };
            match result {
                Ok(()) if command.is_some() => {
                    tracing::info!(order = id, ?command, "sweeper settled a reservation");
                    moved += 1;
                }
                Ok(()) => {}
                Err(status) => {
                    tracing::warn!(order = id, code = ?status.code(), message = status.message(), "settling a reservation failed; will retry")
                }
            }
        }
        Ok(moved)
    }
}
