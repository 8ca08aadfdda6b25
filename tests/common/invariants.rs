//! The saga invariants of DESIGN.md ("Invariants of the order saga"),
//! checked against the services' stores directly.
//!
//! Documents are read as plain JSON (`serde_json::Value`), so the checker
//! does not depend on the services' Rust types and tolerates fields that
//! older or newer code does not write (`steps`, `payment_attempt`,
//! `expires_at`, ...). [`settle_and_check`] waits (with a deadline) until
//! nothing is in flight any more — no staged events, no pending saga steps,
//! no reservation half-way through a move, no pending payment or refund, no
//! paid order still waiting for its label, no notification still to come —
//! and then reports every violation, each naming the documents involved.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use platform::events::nats::{Backlog, NatsBus, NatsSettings};
use platform::store::{Collection, CollectionSpec, FieldType, IndexSpec, Query, Store};
use platform::{Config, ServiceId};
use serde_json::Value;

/// Order statuses in which the order's units count as sold and its total
/// must be captured.
const SOLD: [&str; 3] = ["PAID", "SHIPPED", "DELIVERED"];
/// Order statuses in which nothing may stay captured.
const UNSOLD: [&str; 4] = ["CANCELLED", "REFUNDED", "PAYMENT_FAILED", "PENDING_PAYMENT"];
/// Orders that still take a payment (their stock is legitimately reserved).
const LIVE: [&str; 2] = ["PENDING_PAYMENT", "PAYMENT_FAILED"];
/// Payment states in which money was captured.
const CAPTURED: [&str; 3] = ["succeeded", "partially_refunded", "refunded"];
/// Reservation states half-way through a move.
const MOVING: [&str; 4] = ["reserving", "committing", "releasing", "restocking"];
/// Shipment states at which a label exists (or the parcel left).
const LABELLED: [&str; 4] = [
    "LABEL_CREATED",
    "IN_TRANSIT",
    "OUT_FOR_DELIVERY",
    "DELIVERED",
];

/// How late an unpaid order may expire (the sweeper's period and load).
const EXPIRY_GRACE_MS: i64 = 10_000;
/// How long settling waits for a payment attempt to finish.
const ATTEMPT_WAIT_MS: i64 = 20_000;

/// Handles on every collection the invariants read.
pub struct Stores {
    orders: Collection<Value>,
    keys: Collection<Value>,
    products: Collection<Value>,
    reservations: Collection<Value>,
    payments: Collection<Value>,
    shipments: Collection<Value>,
    notifications: Collection<Value>,
    /// The mesh's JetStream, when it runs on NATS (its consumers' backlog
    /// and dead letters): where it is, and the connection once made.
    nats: Option<(String, NatsSettings)>,
    bus: tokio::sync::Mutex<Option<NatsBus>>,
}

impl Stores {
    /// Opens each service's store as `config` says (same schema prefix).
    pub async fn open(config: &Config) -> anyhow::Result<Stores> {
        let order = Store::from_config(config, ServiceId::Order.name()).await?;
        let product = Store::from_config(config, ServiceId::Product.name()).await?;
        let payment = Store::from_config(config, ServiceId::Payment.name()).await?;
        let shipping = Store::from_config(config, ServiceId::Shipping.name()).await?;
        let notification = Store::from_config(config, ServiceId::Notification.name()).await?;
        // Connected when first read: NATS may still be coming back.
        let nats = config
            .nats_url
            .as_ref()
            .map(|url| (url.clone(), NatsSettings::from_config(config)));
        Ok(Stores {
            nats,
            bus: Default::default(),
            orders: order.collection(order_svc::store::orders()).await?,
            keys: order.collection(order_svc::idempotency::spec()).await?,
            products: product.collection(product_svc::store::products()).await?,
            reservations: product
                .collection(product_svc::store::reservations())
                .await?,
            payments: payment.collection(payment_svc::store::payments()).await?,
            shipments: shipping
                .collection(shipping_svc::store::shipments())
                .await?,
            notifications: notification
                .collection(
                    CollectionSpec::new("notifications")
                        .index(IndexSpec::new("user_id", FieldType::String))
                        .index(IndexSpec::new("created_at", FieldType::Int))
                        .index(IndexSpec::new("state", FieldType::String)),
                )
                .await?,
        })
    }

    /// Every document of every collection, now.
    pub async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        // The bus first: an event handled after this read shows in the
        // stores read below, never the other way round.
        let bus = self.backlog().await?;
        Ok(Snapshot {
            orders: all(&self.orders).await?.into_iter().collect(),
            keys: all(&self.keys).await?,
            products: all(&self.products).await?.into_iter().collect(),
            reservations: all(&self.reservations).await?.into_iter().collect(),
            payments: all(&self.payments).await?,
            shipments: all(&self.shipments).await?,
            notifications: all(&self.notifications).await?,
            bus,
        })
    }

    async fn backlog(&self) -> anyhow::Result<Option<Backlog>> {
        let Some((url, settings)) = &self.nats else {
            return Ok(None);
        };
        let mut bus = self.bus.lock().await;
        if bus.is_none() {
            *bus = Some(NatsBus::attach(url, settings.clone()).await?);
        }
        let backlog = bus.as_ref().expect("connected above").backlog().await?;
        Ok(Some(backlog))
    }

    /// Initial stock per product: what the conservation law starts from.
    /// Take it before any traffic (or at any quiet moment).
    pub async fn baseline(&self) -> anyhow::Result<Baseline> {
        let snapshot = self.snapshot().await?;
        let mut stock = BTreeMap::new();
        for (id, product) in &snapshot.products {
            let sold = snapshot.sold_units(id);
            stock.insert(
                id.clone(),
                int(product, "stock_available") + held_units(product) + sold,
            );
        }
        Ok(Baseline { stock })
    }
}

async fn all(collection: &Collection<Value>) -> anyhow::Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = collection
            .find(&Query::new().limit(100).after(cursor.take()))
            .await?;
        out.extend(page.items.into_iter().map(|d| (d.id, d.value)));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
}

/// Initial stock per product id.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    pub stock: BTreeMap<String, i64>,
}

/// One create request a client made: its key and every order id the
/// gateway answered it with (retries included).
#[derive(Debug, Clone, Default)]
pub struct CreateKey {
    pub user_id: String,
    pub key: String,
    pub order_ids: BTreeSet<String>,
    /// The client learned the outcome (a 201 or a definite refusal).
    pub outcome_known: bool,
}

/// What the test knows beyond the stores.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub baseline: Baseline,
    /// Create requests with their keys. When given, every order of these
    /// users must be the answer to one of them.
    pub creates: Vec<CreateKey>,
    /// `ORDER_PAYMENT_TIMEOUT` of the mesh: every unpaid order must expire
    /// (settling waits until they have, or their deadline plus a grace passed).
    pub payment_timeout: Option<Duration>,
    /// Check notification counts (the mesh's notification-svc was running).
    pub notifications: bool,
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// Which invariant.
    pub rule: &'static str,
    /// The documents involved and what is wrong with them.
    pub detail: String,
    /// Something that may still be in flight (waiting longer may fix it).
    pub in_flight: bool,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.rule, self.detail)
    }
}

/// The outcome of [`settle_and_check`].
#[derive(Debug)]
pub struct Report {
    pub violations: Vec<Violation>,
    /// How long it took until nothing was in flight (None: it never got there).
    pub settled_after: Option<Duration>,
    /// Orders per status, payments per state, ...: context for a reader.
    pub summary: BTreeMap<String, usize>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// Counts per rule.
    pub fn by_rule(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for v in &self.violations {
            *counts.entry(v.rule).or_default() += 1;
        }
        counts
    }

    /// Panics with every violation listed (the first 200) unless clean.
    pub fn assert_clean(&self, context: &str) {
        assert!(self.is_clean(), "{context}: {self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.settled_after {
            Some(d) => writeln!(f, "settled after {:.1} s", d.as_secs_f64())?,
            None => writeln!(f, "did NOT settle before the deadline")?,
        }
        writeln!(f, "state: {:?}", self.summary)?;
        writeln!(
            f,
            "{} violation(s): {:?}",
            self.violations.len(),
            self.by_rule()
        )?;
        for v in self.violations.iter().take(200) {
            writeln!(f, "  {v}")?;
        }
        if self.violations.len() > 200 {
            writeln!(f, "  ... and {} more", self.violations.len() - 200)?;
        }
        Ok(())
    }
}

/// Waits until nothing is in flight (or `deadline` passes), then checks
/// every invariant on one snapshot.
pub async fn settle_and_check(stores: &Stores, expect: &Expect, deadline: Duration) -> Report {
    let started = Instant::now();
    loop {
        let snapshot = match stores.snapshot().await {
            Ok(s) => s,
            Err(err) => {
                assert!(
                    started.elapsed() < deadline,
                    "the stores could not be read: {err:#}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let violations = snapshot.check(expect);
        let settled = !violations.iter().any(|v| v.in_flight);
        if settled || started.elapsed() >= deadline {
            return Report {
                violations,
                settled_after: settled.then(|| started.elapsed()),
                summary: snapshot.summary(),
            };
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every document, by collection.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub orders: BTreeMap<String, Value>,
    pub keys: Vec<(String, Value)>,
    pub products: BTreeMap<String, Value>,
    pub reservations: BTreeMap<String, Value>,
    pub payments: Vec<(String, Value)>,
    pub shipments: Vec<(String, Value)>,
    pub notifications: Vec<(String, Value)>,
    /// What the bus's consumers have not handled yet, and dead letters.
    pub bus: Option<Backlog>,
}

fn text<'a>(doc: &'a Value, field: &str) -> &'a str {
    doc.get(field).and_then(Value::as_str).unwrap_or("")
}

fn int(doc: &Value, field: &str) -> i64 {
    doc.get(field).and_then(Value::as_i64).unwrap_or(0)
}

/// Entries of an outbox-like field: `{count, events|items}` or a list.
fn pending_entries(doc: &Value, field: &str) -> i64 {
    match doc.get(field) {
        Some(Value::Array(items)) => items.len() as i64,
        Some(Value::Object(o)) => {
            let listed = ["events", "items"]
                .iter()
                .filter_map(|k| o.get(*k).and_then(Value::as_array))
                .map(|a| a.len() as i64)
                .max()
                .unwrap_or(0);
            listed.max(o.get("count").and_then(Value::as_i64).unwrap_or(0))
        }
        _ => 0,
    }
}

/// Units a product holds for orders: its `reservations` map, else
/// `stock_reserved`.
fn held_units(product: &Value) -> i64 {
    match product.get("reservations").and_then(Value::as_object) {
        Some(map) => map.values().filter_map(Value::as_i64).sum(),
        None => int(product, "stock_reserved"),
    }
}

/// Lines of a reservation: `[[product, qty], ...]` or `[{product_id, quantity}]`.
fn reservation_lines(reservation: &Value) -> Vec<(String, i64)> {
    let Some(lines) = reservation.get("lines").and_then(Value::as_array) else {
        return Vec::new();
    };
    lines
        .iter()
        .filter_map(|line| match line {
            Value::Array(pair) if pair.len() == 2 => {
                Some((pair[0].as_str()?.to_string(), pair[1].as_i64()?))
            }
            Value::Object(_) => Some((text(line, "product_id").to_string(), int(line, "quantity"))),
            _ => None,
        })
        .collect()
}

/// The tombstone of a creation that failed half-way.
fn abandoned(order: &Value) -> bool {
    order
        .get("abandoned")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

impl Snapshot {
    /// Orders that were placed: not the tombstones of creations that
    /// failed half-way (`abandoned`), which no client ever saw.
    pub fn placed(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.orders.iter().filter(|(_, o)| !abandoned(o))
    }

    /// Units of `product` sold by orders in a sold status.
    pub fn sold_units(&self, product: &str) -> i64 {
        self.orders
            .values()
            .filter(|o| SOLD.contains(&text(o, "status")))
            .flat_map(|o| {
                o.get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|item| text(item, "product_id") == product)
            .map(|item| int(&item, "quantity"))
            .sum()
    }

    /// Orders per status, payments per state, shipments per status.
    pub fn summary(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for o in self.orders.values() {
            *out.entry(format!("order {}", text(o, "status")))
                .or_default() += 1;
        }
        for (_, p) in &self.payments {
            *out.entry(format!("payment {}", text(p, "state")))
                .or_default() += 1;
        }
        for (_, s) in &self.shipments {
            *out.entry(format!("shipment {}", text(s, "status")))
                .or_default() += 1;
        }
        for r in self.reservations.values() {
            *out.entry(format!("reservation {}", text(r, "state")))
                .or_default() += 1;
        }
        out
    }

    /// Every violation of every invariant in this snapshot.
    pub fn check(&self, expect: &Expect) -> Vec<Violation> {
        let mut out = Vec::new();
        self.check_events(&mut out);
        self.check_in_flight(expect, &mut out);
        self.check_keys(expect, &mut out);
        self.check_money(&mut out);
        self.check_stock(expect, &mut out);
        self.check_reservations(&mut out);
        self.check_shipments(&mut out);
        if expect.notifications {
            self.check_notifications(&mut out);
        }
        out.sort();
        out
    }

    /// Every event is handled once per consumer: none waits (a delivery
    /// backing off counts as waiting), none was given up on.
    fn check_events(&self, out: &mut Vec<Violation>) {
        let Some(bus) = &self.bus else { return };
        for (consumer, n) in &bus.unhandled {
            out.push(Violation {
                rule: "every event handled",
                detail: format!("consumer {consumer} has {n} event(s) not handled yet"),
                in_flight: true,
            });
        }
        for (subject, n) in &bus.dead_lettered {
            out.push(Violation {
                rule: "every event handled",
                detail: format!("{n} event(s) dead-lettered on {subject}"),
                in_flight: false,
            });
        }
    }

    fn check_in_flight(&self, expect: &Expect, out: &mut Vec<Violation>) {
        let mut push = |rule, detail: String| {
            out.push(Violation {
                rule,
                detail,
                in_flight: true,
            })
        };
        for (id, o) in &self.orders {
            let staged = pending_entries(o, "outbox");
            if staged > 0 {
                push(
                    "events published",
                    format!("order {id} still has {staged} staged event(s)"),
                );
            }
            let steps = pending_entries(o, "steps");
            if steps > 0 {
                push(
                    "saga steps done",
                    format!(
                        "order {id} ({}) still has {steps} pending saga step(s): {}",
                        text(o, "status"),
                        o["steps"]
                    ),
                );
            }
            if let Some(timeout) = expect.payment_timeout {
                // Its own deadline where the order has one, else creation + timeout.
                let expires_at = o
                    .get("expires_at")
                    .and_then(Value::as_i64)
                    .unwrap_or(int(o, "created_at") + timeout.as_millis() as i64);
                // Every unpaid order must expire: settling waits for it.
                let late = platform::clock::now().millis() - expires_at;
                if LIVE.contains(&text(o, "status")) && !abandoned(o) {
                    let detail = if late > EXPIRY_GRACE_MS {
                        format!(
                            "order {id} is still {} {late} ms after it should have expired (timeout {timeout:?})",
                            text(o, "status")
                        )
                    } else {
                        format!(
                            "order {id} is {} and expires in {} ms",
                            text(o, "status"),
                            -late
                        )
                    };
                    push("unpaid orders expire", detail);
                }
            }
            if let Some(attempt) = o.get("payment_attempt").filter(|a| a.is_object()) {
                // A live attempt holds cancel and expiry off for a while.
                if platform::clock::now().millis() - int(attempt, "started_at") < ATTEMPT_WAIT_MS {
                    push(
                        "saga steps done",
                        format!("order {id} has a payment attempt under way: {attempt}"),
                    );
                }
            }
        }
        for (what, docs) in [
            (
                "product",
                self.products
                    .iter()
                    .map(|(k, v)| (k.as_str(), v))
                    .collect::<Vec<_>>(),
            ),
            (
                "payment",
                self.payments.iter().map(|(k, v)| (k.as_str(), v)).collect(),
            ),
            (
                "shipment",
                self.shipments
                    .iter()
                    .map(|(k, v)| (k.as_str(), v))
                    .collect(),
            ),
        ] {
            for (id, doc) in docs {
                let staged = pending_entries(doc, "outbox");
                if staged > 0 {
                    push(
                        "events published",
                        format!("{what} {id} still has {staged} staged event(s)"),
                    );
                }
            }
        }
        for (id, r) in &self.reservations {
            let state = text(r, "state");
            if MOVING.contains(&state) {
                push(
                    "reservations settle",
                    format!("reservation {id} is stuck in {state}"),
                );
            }
        }
        for (id, p) in &self.payments {
            if text(p, "state") == "pending" {
                push(
                    "payments settle",
                    format!(
                        "payment {id} (order {}) is still pending",
                        text(p, "order_id")
                    ),
                );
            }
            for refund in p
                .get("refunds")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if text(refund, "state") == "pending" {
                    push(
                        "payments settle",
                        format!(
                            "refund {} of payment {id} (order {}) is still pending",
                            text(refund, "id"),
                            text(p, "order_id")
                        ),
                    );
                }
            }
        }
    }

    fn check_keys(&self, expect: &Expect, out: &mut Vec<Violation>) {
        let mut push = |detail: String| {
            out.push(Violation {
                rule: "one order per idempotency key",
                detail,
                in_flight: false,
            })
        };
        // Orders that carry their key: group by it.
        let mut by_key: BTreeMap<(String, String), Vec<&str>> = BTreeMap::new();
        for (id, o) in &self.orders {
            let key = text(o, "idempotency_key");
            if !key.is_empty() {
                by_key
                    .entry((text(o, "user_id").to_string(), key.to_string()))
                    .or_default()
                    .push(id);
            }
        }
        for ((user, key), ids) in &by_key {
            if ids.len() > 1 {
                push(format!("user {user} key {key:?} has orders {ids:?}"));
            }
        }
        // What the clients were answered.
        let mut answered: BTreeMap<&str, &str> = BTreeMap::new();
        let mut unsure_users = BTreeSet::new();
        let mut users = BTreeSet::new();
        for create in &expect.creates {
            users.insert(create.user_id.as_str());
            if !create.outcome_known {
                unsure_users.insert(create.user_id.as_str());
            }
            if create.order_ids.len() > 1 {
                push(format!(
                    "user {} key {:?} was answered with orders {:?}",
                    create.user_id, create.key, create.order_ids
                ));
            }
            for id in &create.order_ids {
                answered.insert(id, &create.key);
                if !self.orders.contains_key(id) {
                    push(format!(
                        "order {id} answered for key {:?} does not exist",
                        create.key
                    ));
                }
            }
        }
        for (id, o) in self.placed() {
            let user = text(o, "user_id");
            if users.contains(user)
                && !answered.contains_key(id.as_str())
                && !unsure_users.contains(user)
            {
                push(format!(
                    "order {id} ({}, user {user}) is the answer to none of the user's create requests: an orphan of a retried key",
                    text(o, "status")
                ));
            }
        }
    }

    /// Captured payments and refunds per order.
    fn money_by_order(&self) -> BTreeMap<&str, (Vec<&str>, i64, i64)> {
        let mut by_order: BTreeMap<&str, (Vec<&str>, i64, i64)> = BTreeMap::new();
        for (id, p) in &self.payments {
            if !CAPTURED.contains(&text(p, "state")) {
                continue;
            }
            let entry = by_order.entry(text(p, "order_id")).or_default();
            entry.0.push(id);
            entry.1 += int(p, "amount");
            entry.2 += p
                .get("refunds")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|r| text(r, "state") == "succeeded")
                .map(|r| int(r, "amount"))
                .sum::<i64>();
        }
        by_order
    }

    fn check_money(&self, out: &mut Vec<Violation>) {
        let by_order = self.money_by_order();
        for (order_id, (payments, captured, refunded)) in &by_order {
            if payments.len() > 1 {
                out.push(Violation {
                    rule: "at most one capture per order",
                    detail: format!("order {order_id} has captured payments {payments:?}"),
                    in_flight: false,
                });
            }
            if refunded > captured {
                out.push(Violation {
                    rule: "captured - refunded = sold",
                    detail: format!("order {order_id}: refunded {refunded} > captured {captured} (payments {payments:?})"),
                    in_flight: false,
                });
            }
            if !self.orders.contains_key(*order_id) && captured != refunded {
                out.push(Violation {
                    rule: "captured - refunded = sold",
                    detail: format!(
                        "payments {payments:?} keep {} captured for order {order_id}, which does not exist",
                        captured - refunded
                    ),
                    in_flight: false,
                });
            }
        }
        for (id, o) in &self.orders {
            let status = text(o, "status");
            let (payments, captured, refunded) =
                by_order.get(id.as_str()).cloned().unwrap_or_default();
            let net = captured - refunded;
            let total = int(o, "total");
            let expected = if SOLD.contains(&status) {
                total
            } else if UNSOLD.contains(&status) {
                0
            } else {
                out.push(Violation {
                    rule: "known order status",
                    detail: format!("order {id} has status {status:?}"),
                    in_flight: false,
                });
                continue;
            };
            if net != expected {
                out.push(Violation {
                    rule: "captured - refunded = sold",
                    detail: format!(
                        "order {id} is {status} (total {total}) but captured {captured} - refunded {refunded} = {net} (payments {payments:?})"
                    ),
                    in_flight: false,
                });
            }
            for pid in &payments {
                let currency = self
                    .payments
                    .iter()
                    .find(|(p, _)| p == pid)
                    .map(|(_, p)| text(p, "currency"))
                    .unwrap_or("");
                if currency != text(o, "currency") {
                    out.push(Violation {
                        rule: "captured - refunded = sold",
                        detail: format!(
                            "payment {pid} is in {currency:?}, order {id} in {:?}",
                            text(o, "currency")
                        ),
                        in_flight: false,
                    });
                }
            }
        }
    }

    fn check_stock(&self, expect: &Expect, out: &mut Vec<Violation>) {
        for (id, product) in &self.products {
            let available = int(product, "stock_available");
            let held = held_units(product);
            let sold = self.sold_units(id);
            if available < 0 || int(product, "stock_reserved") < 0 {
                out.push(Violation {
                    rule: "stock conserved",
                    detail: format!(
                        "product {id}: negative stock (available {available}, reserved {})",
                        int(product, "stock_reserved")
                    ),
                    in_flight: false,
                });
            }
            if product.get("reservations").is_some() && held != int(product, "stock_reserved") {
                out.push(Violation {
                    rule: "stock conserved",
                    detail: format!(
                        "product {id}: stock_reserved {} but its reservations hold {held}",
                        int(product, "stock_reserved")
                    ),
                    in_flight: false,
                });
            }
            let Some(initial) = expect.baseline.stock.get(id) else {
                continue;
            };
            if available + held + sold != *initial {
                out.push(Violation {
                    rule: "stock conserved",
                    detail: format!(
                        "product {id}: initial {initial} != available {available} + reserved {held} + sold {sold} (off by {})",
                        available + held + sold - initial
                    ),
                    in_flight: false,
                });
            }
            // Units held for an order must be held for a live one.
            for (order_id, units) in product
                .get("reservations")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let status = self.orders.get(order_id).map(|o| text(o, "status"));
                if !status.is_some_and(|s| LIVE.contains(&s)) {
                    out.push(Violation {
                        rule: "no reservation without a live order",
                        detail: format!(
                            "product {id} holds {units} unit(s) for order {order_id}, which is {}",
                            status.unwrap_or("missing")
                        ),
                        // An orphan is released by the sweeper after a grace.
                        in_flight: status.is_none(),
                    });
                }
            }
        }
    }

    fn check_reservations(&self, out: &mut Vec<Violation>) {
        for (order_id, r) in &self.reservations {
            let state = text(r, "state");
            let order = self.orders.get(order_id);
            let status = order.map(|o| text(o, "status")).unwrap_or("missing");
            let bad = match state {
                "active" | "reserving" => !LIVE.contains(&status),
                "committed" | "committing" => !SOLD.contains(&status),
                // Released or restocked: the order must not be sold.
                _ => SOLD.contains(&status),
            };
            if bad {
                out.push(Violation {
                    rule: "no reservation without a live order",
                    detail: format!(
                        "reservation {order_id} is {state} ({:?}) but its order is {status}",
                        reservation_lines(r)
                    ),
                    in_flight: MOVING.contains(&state) || order.is_none(),
                });
            }
        }
        for (id, o) in self.placed() {
            let status = text(o, "status");
            if !self.reservations.contains_key(id)
                && (LIVE.contains(&status) || SOLD.contains(&status))
            {
                out.push(Violation {
                    rule: "no reservation without a live order",
                    detail: format!("order {id} is {status} but has no reservation"),
                    in_flight: false,
                });
            }
        }
    }

    fn check_shipments(&self, out: &mut Vec<Violation>) {
        let mut by_order: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
        for (id, s) in &self.shipments {
            by_order
                .entry(text(s, "order_id"))
                .or_default()
                .push((id, text(s, "status")));
        }
        for (order_id, shipments) in &by_order {
            let open: Vec<_> = shipments
                .iter()
                .filter(|(_, s)| *s != "CANCELLED")
                .collect();
            let status = self
                .orders
                .get(*order_id)
                .map(|o| text(o, "status"))
                .unwrap_or("missing");
            if SOLD.contains(&status) && open.len() > 1 {
                out.push(Violation {
                    rule: "one shipment per paid order",
                    detail: format!("order {order_id} ({status}) has shipments {open:?}"),
                    in_flight: false,
                });
            }
            if !SOLD.contains(&status) {
                for (sid, s) in shipments.iter().filter(|(_, s)| LABELLED.contains(s)) {
                    out.push(Violation {
                        rule: "nothing ships for an unpaid, cancelled or refunded order",
                        detail: format!("order {order_id} is {status} but shipment {sid} is {s}"),
                        in_flight: false,
                    });
                }
            }
        }
        for (id, o) in &self.orders {
            let status = text(o, "status");
            if !SOLD.contains(&status) {
                continue;
            }
            let open: Vec<&(&str, &str)> = by_order
                .get(id.as_str())
                .into_iter()
                .flatten()
                .filter(|(_, s)| *s != "CANCELLED")
                .collect();
            match open.as_slice() {
                [] => out.push(Violation {
                    rule: "one shipment per paid order",
                    detail: format!(
                        "order {id} is {status} but has no live shipment ({:?})",
                        by_order.get(id.as_str())
                    ),
                    in_flight: true,
                }),
                [(sid, s)] => {
                    let ok = match status {
                        "PAID" => LABELLED.contains(s),
                        "SHIPPED" => ["IN_TRANSIT", "OUT_FOR_DELIVERY", "DELIVERED"].contains(s),
                        _ => *s == "DELIVERED",
                    };
                    if !ok {
                        out.push(Violation {
                            rule: "one shipment per paid order",
                            detail: format!("order {id} is {status} but shipment {sid} is {s}"),
                            in_flight: *s == "PENDING",
                        });
                    }
                }
                _ => {}
            }
        }
    }

    /// Per user and kind: one notification per order created, per capture
    /// and per refund; a notification naming its order is checked per order.
    fn check_notifications(&self, out: &mut Vec<Violation>) {
        let mut want: BTreeMap<(String, &'static str), i64> = BTreeMap::new();
        let users: BTreeSet<&str> = self.orders.values().map(|o| text(o, "user_id")).collect();
        for (_, o) in self.placed() {
            *want
                .entry((text(o, "user_id").to_string(), "order.created"))
                .or_default() += 1;
        }
        for (_, p) in &self.payments {
            if !self.orders.contains_key(text(p, "order_id")) {
                continue;
            }
            let user = text(p, "user_id").to_string();
            if CAPTURED.contains(&text(p, "state")) {
                *want.entry((user.clone(), "payment.processed")).or_default() += 1;
            }
            let refunds = p
                .get("refunds")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|r| text(r, "state") == "succeeded")
                .count() as i64;
            if refunds > 0 {
                *want.entry((user, "payment.refunded")).or_default() += refunds;
            }
        }
        let mut have: BTreeMap<(String, &'static str), Vec<&str>> = BTreeMap::new();
        let mut per_order: BTreeMap<(String, String, String), Vec<&str>> = BTreeMap::new();
        for (id, n) in &self.notifications {
            let user = text(n, "user_id");
            if !users.contains(user) {
                continue;
            }
            let kind = text(n, "kind");
            if let Some(kind) = ["order.created", "payment.processed", "payment.refunded"]
                .into_iter()
                .find(|k| *k == kind)
            {
                have.entry((user.to_string(), kind)).or_default().push(id);
            }
            let order = text(n, "order_id");
            if !order.is_empty() && kind != "payment.failed" {
                per_order
                    .entry((
                        user.to_string(),
                        kind.to_string(),
                        format!("{order} {}", text(n, "title")),
                    ))
                    .or_default()
                    .push(id);
            }
        }
        for ((user, kind, order), ids) in &per_order {
            if ids.len() > 1 {
                out.push(Violation {
                    rule: "no duplicate notification",
                    detail: format!(
                        "user {user}: {kind} for order {order} {} times: {ids:?}",
                        ids.len()
                    ),
                    in_flight: false,
                });
            }
        }
        let keys: BTreeSet<_> = want.keys().chain(have.keys()).cloned().collect();
        for key in keys {
            let wanted = want.get(&key).copied().unwrap_or(0);
            let got = have.get(&key).map(Vec::len).unwrap_or(0) as i64;
            if got > wanted {
                out.push(Violation {
                    rule: "no duplicate notification",
                    detail: format!(
                        "user {}: {} {} notifications for {wanted} fact(s): {:?}",
                        key.0,
                        got,
                        key.1,
                        have.get(&key)
                    ),
                    in_flight: false,
                });
            } else if got < wanted {
                out.push(Violation {
                    rule: "no missing notification",
                    detail: format!(
                        "user {}: {got} {} notification(s) for {wanted} fact(s)",
                        key.0, key.1
                    ),
                    in_flight: true,
                });
            }
        }
    }
}
