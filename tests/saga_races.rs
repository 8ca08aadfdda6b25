//! Conflicting commands on one order, raced on Postgres + NATS: pay/cancel,
//! cancel/carrier update, pay/expiry, refund/refund and commit/release. Each
//! pair gets its own mesh (schemas and stream), runs at least 30 trials with
//! both orders of arrival (the second request a few random milliseconds
//! behind the first, alternating which goes first), checks the answers each
//! request got, and checks the saga invariants against the stores after
//! every batch.

mod common;

use std::time::Duration;

use common::backends::Backends;
use common::invariants::{Expect, Stores, settle_and_check};
use common::{Reply, TestMesh, WEBHOOK_SECRET, signed, webhook};
use futures::StreamExt as _;
use serde_json::{Value, json};

const TRIALS: usize = 32;
const BATCH: usize = 16;
/// Trials in flight at once.
const PARALLEL: usize = 8;
const CUSTOMERS: usize = 8;
const ADMIN_EMAIL: &str = "admin@example.com";
const ADMIN_PASSWORD: &str = "admin-password";
/// How long the stores may take to settle after a batch.
const SETTLE: Duration = Duration::from_secs(30);
/// How long an unpaid order may outlive its payment timeout: a refused
/// payment attempt holds expiry off for up to 15 s (`ATTEMPT_LIVE_MS`),
/// then the sweeper needs a pass.
const EXPIRY: Duration = Duration::from_secs(25);
const GOOD_CARD: &str = "4242424242424242";
const POST: reqwest::Method = reqwest::Method::POST;
const GET: reqwest::Method = reqwest::Method::GET;

/// One pair's mesh, customers, product and invariant expectations.
struct Race {
    backends: Backends,
    t: TestMesh,
    admin: String,
    customers: Vec<String>,
    product: String,
    stores: Stores,
    expect: Expect,
    name: &'static str,
}

impl Race {
    async fn start(name: &'static str, extra: &[(&str, &str)]) -> Race {
        let backends = Backends::new();
        let mut vars = vec![
            ("ADMIN_EMAIL", ADMIN_EMAIL),
            ("ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("RATE_LIMIT_RPS", "0"),
            ("SHIPPING_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("SEED_DEMO", "false"),
            ("ORDER_MAX_UNPAID_PER_CUSTOMER", "500"),
            ("RESERVATION_ORPHAN_GRACE_MS", "10000"),
            // The races judge decisions, not latency: a loaded machine (and
            // two meshes at a time on one Postgres) must not turn them into
            // timeouts, nor exhaust the server's connections.
            ("DATABASE_TIMEOUT_MS", "10000"),
            ("DATABASE_MAX_CONNECTIONS", "5"),
        ];
        vars.extend_from_slice(extra);
        let t = backends.mesh_with(&vars).await;
        let (admin, _) = t.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let customers = futures::future::join_all((0..CUSTOMERS).map(|_| t.customer()))
            .await
            .into_iter()
            .map(|(_, token, _)| token)
            .collect();
        let tag = uuid::Uuid::now_v7().simple().to_string();
        let body = json!({"sku": format!("RACE-{tag}"), "name": format!("Race widget {tag}"), "description": "raced for",
                          "category": "test", "price": {"amount": 1250, "currency": "USD"}, "stock": 100000});
        let created = t
            .careful(POST, "/api/v1/products", &admin, None, Some(body))
            .await;
        let product = match created.status {
            201 => created.body["id"].as_str().unwrap().to_string(),
            // A retry after a slow first attempt finds the SKU taken: by us.
            409 => {
                let found = t
                    .careful(
                        GET,
                        &format!("/api/v1/products?q={tag}"),
                        &admin,
                        None,
                        None,
                    )
                    .await;
                found.body["items"][0]["id"]
                    .as_str()
                    .expect("the product made by the first attempt")
                    .to_string()
            }
            _ => panic!(
                "creating the race product: {} {}",
                created.status, created.body
            ),
        };
        let stores = Stores::open(&t.config).await.expect("stores open");
        let baseline = stores.baseline().await.expect("baseline");
        Race {
            backends,
            t,
            admin,
            customers,
            product,
            stores,
            expect: Expect {
                baseline,
                notifications: true,
                ..Default::default()
            },
            name,
        }
    }

    fn customer(&self, trial: usize) -> &str {
        &self.customers[trial % self.customers.len()]
    }

    /// An order of 1..=3 units of the race product.
    async fn order(&self, trial: usize) -> Result<String, String> {
        let body = json!({"items": [{"product_id": self.product, "quantity": 1 + trial % 3}], "shipping_address": common::address()});
        let key = uuid::Uuid::now_v7().to_string();
        let r = self
            .t
            .careful(
                POST,
                "/api/v1/orders",
                self.customer(trial),
                Some(&key),
                Some(body),
            )
            .await;
        if r.status != 201 {
            return Err(format!(
                "trial {trial}: create answered {} {}",
                r.status, r.body
            ));
        }
        Ok(r.body["id"].as_str().unwrap_or_default().to_string())
    }

    async fn pay(&self, trial: usize, order: &str) -> Reply {
        self.t
            .careful(
                POST,
                &format!("/api/v1/orders/{order}/payment"),
                self.customer(trial),
                Some(&uuid::Uuid::now_v7().to_string()),
                Some(common::card(GOOD_CARD)),
            )
            .await
    }

    /// An order, paid: its id and the payment.
    async fn paid_order(&self, trial: usize) -> Result<(String, Reply), String> {
        let order = self.order(trial).await?;
        let paid = self.pay(trial, &order).await;
        match (paid.status, paid.body["status"].as_str()) {
            (201, Some("SUCCEEDED")) => {}
            // The provider did not answer in time; the reconciler settles it.
            (201, Some("PENDING")) => {
                self.order_becomes(trial, order.as_str(), "PAID").await?;
            }
            _ => {
                return Err(format!(
                    "trial {trial}: pay answered {} {}",
                    paid.status, paid.body
                ));
            }
        }
        Ok((order, paid))
    }

    async fn cancel(&self, trial: usize, order: &str) -> Reply {
        self.t
            .careful(
                POST,
                &format!("/api/v1/orders/{order}/cancel"),
                self.customer(trial),
                None,
                Some(json!({})),
            )
            .await
    }

    async fn order_status(&self, trial: usize, order: &str) -> String {
        let r = self
            .t
            .careful(
                GET,
                &format!("/api/v1/orders/{order}"),
                self.customer(trial),
                None,
                None,
            )
            .await;
        r.body["status"].as_str().unwrap_or("?").to_string()
    }

    /// GETs `path` as the trial's customer until `cond` holds on a 200
    /// body, for at most `within`.
    async fn wait_for(
        &self,
        trial: usize,
        path: &str,
        what: &str,
        within: Duration,
        cond: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let r = self
                .t
                .careful(GET, path, self.customer(trial), None, None)
                .await;
            if r.status == 200 && cond(&r.body) {
                return Ok(r.body);
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "trial {trial}: no {what} at {path} within {within:?}: {} {}",
                    r.status, r.body
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn order_becomes(&self, trial: usize, order: &str, status: &str) -> Result<(), String> {
        self.wait_for(
            trial,
            &format!("/api/v1/orders/{order}"),
            status,
            SETTLE,
            |o| o["status"] == status,
        )
        .await
        .map(|_| ())
    }

    /// Waits until `order` is CANCELLED for `payment_timeout`.
    async fn expired(&self, trial: usize, order: &str) -> Result<(), String> {
        let path = format!("/api/v1/orders/{order}");
        self.wait_for(trial, &path, "expiry (payment_timeout)", EXPIRY, |o| {
            o["status"] == "CANCELLED" && o["cancellation_reason"] == "payment_timeout"
        })
        .await
        .map(|_| ())
    }

    /// Runs `trials` trials, `PARALLEL` at a time, in batches of `BATCH`,
    /// settling and checking the invariants after each batch. Returns
    /// every wrong answer and every violation found.
    async fn run<'a, F, Fut>(&'a self, trials: usize, trial: F) -> Vec<String>
    where
        F: Fn(&'a Race, usize) -> Fut,
        Fut: std::future::Future<Output = Result<String, String>> + 'a,
    {
        let started = std::time::Instant::now();
        let mut failures = Vec::new();
        let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
        let mut next = 0;
        while next < trials {
            let batch: Vec<usize> = (next..(next + BATCH).min(trials)).collect();
            next += batch.len();
            let results: Vec<Result<String, String>> = futures::stream::iter(batch)
                .map(|i| trial(self, i))
                .buffer_unordered(PARALLEL)
                .collect()
                .await;
            for result in results {
                match result {
                    Ok(label) => *outcomes.entry(label).or_default() += 1,
                    Err(failure) => failures.push(failure),
                }
            }
            let report = settle_and_check(&self.stores, &self.expect, SETTLE).await;
            if !report.is_clean() {
                failures.push(format!("after {next} trials: {report}"));
            }
        }
        println!(
            "{}: {trials} trials in {:.1} s; outcomes {outcomes:?}; {} failure(s)",
            self.name,
            started.elapsed().as_secs_f64(),
            failures.len()
        );
        failures
    }

    /// Stops the mesh, drops its schemas and stream, then fails with every
    /// failure collected.
    async fn finish(self, failures: Vec<String>) {
        self.t.shutdown().await;
        self.backends.cleanup().await;
        assert!(
            failures.is_empty(),
            "{}: {} failure(s):\n{}",
            self.name,
            failures.len(),
            failures.join("\n")
        );
    }
}

/// A few random milliseconds (0..=max).
fn jitter(max: u64) -> Duration {
    Duration::from_micros(rand::random_range(0..=max * 1000))
}

/// Runs `a` and `b` concurrently; the one that does not go first starts
/// a few random milliseconds later. Trial parity decides who goes first.
async fn race<A, B, RA, RB>(trial: usize, a: A, b: B) -> (RA, RB)
where
    A: std::future::Future<Output = RA>,
    B: std::future::Future<Output = RB>,
{
    race_within(trial, 4, a, b).await
}

/// [`race`] with the second request up to `max_ms` behind the first.
async fn race_within<A, B, RA, RB>(trial: usize, max_ms: u64, a: A, b: B) -> (RA, RB)
where
    A: std::future::Future<Output = RA>,
    B: std::future::Future<Output = RB>,
{
    let (delay_a, delay_b) = if trial.is_multiple_of(2) {
        (Duration::ZERO, jitter(max_ms))
    } else {
        (jitter(max_ms), Duration::ZERO)
    };
    tokio::join!(
        async {
            tokio::time::sleep(delay_a).await;
            a.await
        },
        async {
            tokio::time::sleep(delay_b).await;
            b.await
        }
    )
}

fn who_first(trial: usize, a: &str, b: &str) -> String {
    if trial.is_multiple_of(2) {
        format!("{a} first")
    } else {
        format!("{b} first")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_and_cancel_exclude_each_other() {
    let race_ = Race::start("pay/cancel", &[]).await;
    let failures = race_
        .run(TRIALS, |r, i| async move {
            let order = r.order(i).await?;
            let (pay, cancel) = race(i, r.pay(i, &order), r.cancel(i, &order)).await;
            let status = r.order_status(i, &order).await;
            let cancelled_as = cancel.body["status"].as_str().unwrap_or("");
            let outcome = match (pay.status, cancel.status, cancelled_as) {
                // Pay won; cancel came too late to stop it or was refused.
                (201, 409, _) if pay.body["status"] == "SUCCEEDED" && status == "PAID" => "pay won",
                // Cancel won; the payment was refused.
                (409, 200, "CANCELLED") if status == "CANCELLED" => "cancel won",
                // Pay finished first, then the cancel refunded it (sequential).
                (201, 200, "REFUNDED")
                    if pay.body["status"] == "SUCCEEDED" && status == "REFUNDED" =>
                {
                    "paid then refunded"
                }
                _ => {
                    return Err(format!(
                        "trial {i} ({}): order {order} ends {status}; pay {} {}; cancel {} {}",
                        who_first(i, "pay", "cancel"),
                        pay.status,
                        pay.body,
                        cancel.status,
                        cancel.body
                    ));
                }
            };
            Ok(format!("{outcome} ({})", who_first(i, "pay", "cancel")))
        })
        .await;
    race_.finish(failures).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_carrier_pickup_exclude_each_other() {
    let race_ = Race::start("cancel/in-transit", &[]).await;
    let failures = race_
        .run(TRIALS, |r, i| async move {
            let (order, _) = r.paid_order(i).await?;
            let shipment_path = format!("/api/v1/orders/{order}/shipment");
            let labelled = r
                .wait_for(i, &shipment_path, "a label", SETTLE, |b| b["status"] == "LABEL_CREATED")
                .await?;
            let update = json!({"tracking_number": labelled["tracking_number"], "status": "IN_TRANSIT", "location": "Springfield"});
            // A cancel goes through order-svc before it reaches the
            // shipment; the carrier's update goes straight there. A wider
            // spread lets either reach it first.
            let (cancel, carrier) =
                race_within(i, 60, r.cancel(i, &order), carrier_update(&r.t, &update)).await;
            let shipment = r
                .t
                .get(&shipment_path, Some(r.customer(i)))
                .await
                .body["status"]
                .as_str()
                .unwrap_or("?")
                .to_string();
            let wrong = || {
                format!(
                    "trial {i} ({}): order {order}, shipment {shipment}; cancel {} {}; carrier {} {}",
                    who_first(i, "cancel", "carrier"),
                    cancel.status,
                    cancel.body,
                    carrier.status,
                    carrier.body
                )
            };
            if ![200, 409].contains(&carrier.status) {
                return Err(wrong());
            }
            let outcome = match cancel.status {
                200 if cancel.body["status"] == "REFUNDED" && shipment == "CANCELLED" => "cancel won",
                409 if carrier.status == 200 && shipment == "IN_TRANSIT" => {
                    // The order follows the carrier over the bus.
                    r.order_becomes(i, &order, "SHIPPED").await?;
                    "carrier won"
                }
                _ => return Err(wrong()),
            };
            Ok(format!("{outcome} ({})", who_first(i, "cancel", "carrier")))
        })
        .await;
    race_.finish(failures).await;
}

/// A signed carrier update, sent again after no answer or a 502/503/504
/// (updates are idempotent: shipments only move forward).
async fn carrier_update(t: &TestMesh, update: &Value) -> Reply {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = webhook(t, update, signed(update)).await;
        if !common::careful::retryable(r.status, None) || std::time::Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The mesh's `ORDER_PAYMENT_TIMEOUT`.
const PAYMENT_TIMEOUT_MS: i64 = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_and_expiry_exclude_each_other() {
    let mut race_ = Race::start(
        "pay/expire",
        &[
            ("ORDER_PAYMENT_TIMEOUT", "1s"),
            ("SAGA_SWEEP_INTERVAL_MS", "100"),
        ],
    )
    .await;
    race_.expect.payment_timeout = Some(Duration::from_millis(PAYMENT_TIMEOUT_MS as u64));
    let failures = race_
        .run(TRIALS, |r, i| async move {
            let created_at = std::time::Instant::now();
            let order = r.order(i).await?;
            if i % 4 == 3 {
                // A control: never paid, it must expire.
                r.expired(i, &order)
                    .await
                    .map_err(|e| format!("trial {i} (never paid): {e}"))?;
                return Ok("expired unpaid".into());
            }
            // Pay within 150 ms either side of the deadline: before it on
            // even trials, after it on odd ones.
            let offset = rand::random_range(0..=150i64);
            let at = PAYMENT_TIMEOUT_MS + if i % 2 == 0 { -offset } else { offset };
            let at = created_at + Duration::from_millis(at as u64);
            tokio::time::sleep_until(at.into()).await;
            let pay = r.pay(i, &order).await;
            let side = if i % 2 == 0 {
                "pay before the deadline"
            } else {
                "pay after the deadline"
            };
            let outcome = match pay.status {
                201 if pay.body["status"] == "SUCCEEDED" => {
                    let status = r.order_status(i, &order).await;
                    if status != "PAID" {
                        return Err(format!(
                            "trial {i}: paid (201) but order {order} is {status}"
                        ));
                    }
                    "pay won"
                }
                409 => {
                    // The expiry won: the order is cancelled for the timeout.
                    r.expired(i, &order)
                        .await
                        .map_err(|e| format!("trial {i}: pay refused ({}) but {e}", pay.body))?;
                    "expiry won"
                }
                _ => {
                    return Err(format!(
                        "trial {i} ({side}): pay answered {} {}",
                        pay.status, pay.body
                    ));
                }
            };
            Ok(format!("{outcome} ({side})"))
        })
        .await;
    race_.finish(failures).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refunds_never_exceed_the_capture() {
    let race_ = Race::start("refund/refund", &[]).await;
    let failures = race_
        .run(TRIALS, |r, i| async move {
            let (order, paid) = r.paid_order(i).await?;
            let payment = paid.body["id"].as_str().unwrap_or_default().to_string();
            let captured = &paid.body["amount"]["amount"];
            let path = format!("/api/v1/payments/{payment}/refund");
            // Every third trial sends one request twice with one key; the
            // others two full refunds with two keys.
            let same_key = i % 3 == 2;
            let (key_a, key_b) = if same_key {
                let k = uuid::Uuid::now_v7().to_string();
                (k.clone(), k)
            } else {
                (
                    uuid::Uuid::now_v7().to_string(),
                    uuid::Uuid::now_v7().to_string(),
                )
            };
            let body = json!({"reason": "raced refund"});
            let (a, b) = race(
                i,
                r.t.careful(POST, &path, &r.admin, Some(&key_a), Some(body.clone())),
                r.t.careful(POST, &path, &r.admin, Some(&key_b), Some(body.clone())),
            )
            .await;
            let wrong = |note: &str| {
                format!(
                    "trial {i} ({}): {note}; payment {payment}: first {} {}; second {} {}",
                    if same_key { "one key" } else { "two keys" },
                    a.status,
                    a.body,
                    b.status,
                    b.body
                )
            };
            let mut statuses = [a.status, b.status];
            statuses.sort();
            let outcome = if same_key {
                // A duplicate still in progress is retried by the careful
                // client: both get the first answer.
                match statuses {
                    [201, 201] if a.body["id"] == b.body["id"] => "replayed",
                    _ => return Err(wrong("one key must make one refund")),
                }
            } else {
                match statuses {
                    [201, 409] => "one refunded, one refused",
                    _ => return Err(wrong("exactly one full refund may succeed")),
                }
            };
            // The order follows the payment: fully refunded.
            r.order_becomes(i, &order, "REFUNDED").await?;
            let payment_now =
                r.t.get(&format!("/api/v1/payments/{payment}"), Some(&r.admin))
                    .await;
            if payment_now.body["refunded_amount"]["amount"] != *captured {
                return Err(wrong(&format!("payment is now {}", payment_now.body)));
            }
            Ok(outcome.to_string())
        })
        .await;
    race_.finish(failures).await;
}

/// Sends an idempotent product-svc call again while the transport fails
/// or times out (30 s budget); every other answer is final.
async fn grpc_retry<T, F, Fut>(mut send: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    use tonic::Code;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match send().await {
            Err(s)
                if matches!(
                    s.code(),
                    Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded
                ) && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => return other.map(tonic::Response::into_inner),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_and_release_of_one_reservation() {
    use proto::product::product_service_client::ProductServiceClient;
    use proto::product::{CommitStockRequest, ReleaseStockRequest, ReserveStockRequest, StockLine};
    let race_ = Race::start("commit/release", &[]).await;
    let client = ProductServiceClient::new(race_.t.channel(platform::ServiceId::Product));
    // Requests as order-svc sends them.
    let order_svc = race_.t.mesh.component("order-svc").unwrap();
    let failures = race_
        .run(TRIALS, |r, i| {
            let client = client.clone();
            let order_svc = order_svc.clone();
            async move {
                // A reservation owned by no order: the test is the order.
                let order = uuid::Uuid::now_v7().to_string();
                let reserve = ReserveStockRequest {
                    order_id: order.clone(),
                    lines: vec![StockLine {
                        product_id: r.product.clone(),
                        quantity: 1 + (i % 3) as u32,
                    }],
                };
                grpc_retry(|| {
                    let mut c = client.clone();
                    let r = order_svc.request(reserve.clone());
                    async move { c.reserve_stock(r).await }
                })
                .await
                .map_err(|s| format!("trial {i}: reserve failed: {s:?}"))?;
                let commit_request = CommitStockRequest {
                    order_id: order.clone(),
                };
                let release_request = ReleaseStockRequest {
                    order_id: order.clone(),
                };
                let (commit, release) = race(
                    i,
                    grpc_retry(|| {
                        let mut c = client.clone();
                        let r = order_svc.request(commit_request.clone());
                        async move { c.commit_stock(r).await }
                    }),
                    grpc_retry(|| {
                        let mut c = client.clone();
                        let r = order_svc.request(release_request.clone());
                        async move { c.release_stock(r).await }
                    }),
                )
                .await;
                let wrong = |note: &str| {
                    format!(
                        "trial {i} ({}): order {order}: {note}; commit {:?}; release {:?}",
                        who_first(i, "commit", "release"),
                        commit.as_ref().map(|r| r.reservation.clone()),
                        release.as_ref().map(|r| r.reservation.clone()),
                    )
                };
                let outcome = match (&commit, &release) {
                    (Ok(_), Ok(_)) => "committed then restocked",
                    (Err(s), Ok(_)) if s.code() == tonic::Code::FailedPrecondition => {
                        "released first"
                    }
                    _ => return Err(wrong("unexpected answers")),
                };
                // Whatever happened, one more release (the saga's retry)
                // must leave every unit back on sale, once.
                grpc_retry(|| {
                    let mut c = client.clone();
                    let r = order_svc.request(release_request.clone());
                    async move { c.release_stock(r).await }
                })
                .await
                .map_err(|s| wrong(&format!("a second release failed: {s:?}")))?;
                Ok(format!("{outcome} ({})", who_first(i, "commit", "release")))
            }
        })
        .await;
    race_.finish(failures).await;
}
