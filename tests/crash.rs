//! Crash test: the gateway and every service as separate OS processes
//! (`shopmesh serve <component>`) on a private Postgres cluster and a
//! private NATS JetStream server, both on free ports under a temporary
//! directory, so nothing here disturbs other tests. Careful clients run
//! create, pay, cancel and refund flows, and cart flows (fill, check out,
//! pay: every line ordered once, none lost), and image uploads and deletes
//! (every image shown has its bytes; no bytes outlive every record), while
//! every component is `kill -9`ed
//! and restarted, NATS is killed and restarted, and Postgres is stopped in
//! immediate mode (a crash) and started again. Afterwards the stores must
//! settle and keep every saga invariant.
//!
//! `CRASH_TEST_SECS` (default 120) is how long the chaos lasts. The test
//! prints a summary: flows, kills per target, violations, time to recover
//! per kind of kill and every status the clients saw.
//!
//! The same harness runs scenarios with a fault flag on in every process
//! (through `FLAGS_FILE`): a short run with two flags in CI, and the
//! resilience report (`docs/RESILIENCE.md`), kills alone then kills with
//! each flag in turn: `RESILIENCE_SECS=300 cargo test --test crash
//! resilience_report -- --ignored --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Reply;
use common::invariants::{CreateKey, Expect, Stores, settle_and_check};
use platform::ServiceId;
use serde_json::{Value, json};

const ADMIN_EMAIL: &str = "admin@example.com";
const ADMIN_PASSWORD: &str = "admin-password";
const CUSTOMERS: usize = 6;
/// Client workers running flows at once.
const WORKERS: usize = 6;
/// Longest a careful client keeps retrying one request.
const REQUEST_BUDGET: Duration = Duration::from_secs(60);
/// Unpaid orders expire after this (`ORDER_PAYMENT_TIMEOUT`).
const PAYMENT_TIMEOUT_SECS: u64 = 15;
/// How long the stores may take to settle once the chaos is over.
const SETTLE: Duration = Duration::from_secs(90);
/// Longest any component may take to answer again after a restart.
const RECOVERY_BUDGET: Duration = Duration::from_secs(60);

/// A port free now and handed out once in this run (the scenarios run at
/// once, and two components given one port would each stop the other
/// from starting), below the kernel's ephemeral range, so no outgoing
/// connection takes it while its process is down between a kill and its
/// restart.
fn free_port() -> u16 {
    static HANDED_OUT: Mutex<std::collections::BTreeSet<u16>> =
        Mutex::new(std::collections::BTreeSet::new());
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_from.max(10_001));
    let span = u32::from(high - low);
    // Runs started together (CI and a developer's) start apart.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let start = (std::process::id() ^ nanos) % span;
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    (0..span)
        .map(|i| low + ((start + i) % span) as u16)
        .find(|&port| !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok())
        .inspect(|&port| {
            handed_out.insert(port);
        })
        .expect("a free port below the ephemeral range")
}

fn port_open(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

async fn wait_port(what: &str, port: u16, budget: Duration) {
    wait_addr(what, SocketAddr::from(([127, 0, 0, 1], port)), budget).await
}

async fn wait_addr(what: &str, addr: SocketAddr, budget: Duration) {
    let port = addr.port();
    let deadline = Instant::now() + budget;
    while !port_open(addr) {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} within {budget:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A private Postgres cluster in a temporary directory (trust auth).
struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// initdb refuses to run as root: run the tools as `postgres` then.
    as_postgres: bool,
}

impl Postgres {
    fn bin_dir() -> PathBuf {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .map(|e| e.path().join("bin"))
                    .filter(|p| p.join("initdb").exists())
                    .collect()
            })
            .unwrap_or_default();
        found.sort_by_key(|p| {
            p.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        });
        found
            .pop()
            .expect("the crash test runs its own Postgres: install postgresql (initdb under /usr/lib/postgresql/*/bin)")
    }

    fn tool(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn run(&self, mut command: Command, what: &str) {
        let out = command
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn init(root: &Path) -> Postgres {
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let data = root.join("pg");
        std::fs::create_dir_all(&data).unwrap();
        let pg = Postgres {
            bin: Self::bin_dir(),
            data,
            port: free_port(),
            as_postgres,
        };
        if as_postgres {
            pg.run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:"]).arg(root);
                    c
                },
                "chown",
            );
        }
        let mut initdb = pg.tool("initdb");
        initdb
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&pg.data);
        pg.run(initdb, "initdb");
        pg.start();
        pg
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            self.port,
            self.data.display()
        );
        let mut start = self.tool("pg_ctl");
        start
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.data.join("server.log"))
            .args(["-o", &options, "-w", "-t", "60", "start"]);
        self.run(start, "pg_ctl start");
    }

    /// `pg_ctl stop -m immediate`: the server dies without a checkpoint, as
    /// in a crash, and recovers from its WAL when started again.
    fn crash(&self) {
        let mut stop = self.tool("pg_ctl");
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"]);
        self.run(stop, "pg_ctl stop -m immediate");
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut stop = self.tool("pg_ctl");
        let _ = stop
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A process this test started; killed (SIGKILL) when dropped.
struct Process {
    name: String,
    command: Box<dyn Fn() -> Command + Send>,
    addr: SocketAddr,
    child: Option<Child>,
}

impl Process {
    fn spawn(&mut self) {
        let child = (self.command)()
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.name));
        self.child = Some(child);
    }

    /// `kill -9` and reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether it exited on its own (a crash the test did not cause).
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn log_file(root: &Path, name: &str) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join(format!("{name}.log")))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

/// Everything a careful client saw.
#[derive(Default)]
struct Stats {
    /// Every answer (retries included), by status; 0 = no answer.
    statuses: BTreeMap<u16, usize>,
    /// Answers that were no answer or a dependency's failure (0, 502,
    /// 503, 504): attempts a client had to make again.
    failed_attempts: usize,
    /// Flows by kind and how they ended.
    flows: BTreeMap<String, usize>,
    /// Flows that never learned their outcome, with what they last saw.
    unknown: Vec<String>,
    creates: Vec<CreateKey>,
    /// Cart lines lost, or ordered and still in the cart.
    cart_violations: Vec<String>,
    /// Images uploaded (201) and deleted (204).
    images_uploaded: usize,
    images_deleted: usize,
}

/// A careful client ([`common::careful`]) that counts what it sees.
#[derive(Clone)]
struct Careful {
    http: reqwest::Client,
    base: String,
    stats: Arc<Mutex<Stats>>,
}

enum Paid {
    /// The payment id.
    Yes(String),
    Refused,
    Unknown,
}

impl Careful {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let stats = self.stats.clone();
        common::careful::send(
            &self.http,
            method,
            &format!("{}{path}", self.base),
            token,
            key,
            body,
            REQUEST_BUDGET,
            move |status| {
                let mut stats = stats.lock().unwrap();
                *stats.statuses.entry(status).or_default() += 1;
                if matches!(status, 0 | 502 | 503 | 504) {
                    stats.failed_attempts += 1;
                }
            },
        )
        .await
    }

    /// Uploads a small image of its own to the first product, then
    /// deletes it three times in four (so products stay below their image
    /// cap). Uploads are idempotent (the same bytes
    /// answer the same image), so they are retried like keyed requests.
    async fn media_flow(&self, admin: &str, products: &[String]) -> String {
        let seed = rand::random::<u64>();
        let jpeg = media_svc::samples::jpeg(&media_svc::samples::picture(320, 200, seed), 80);
        let (content_type, form) =
            common::multipart(&[("alt", None, b"crash"), ("file", Some("c.jpg"), &jpeg)]);
        let stats = self.stats.clone();
        let count = move |status: u16| {
            let mut stats = stats.lock().unwrap();
            *stats.statuses.entry(status).or_default() += 1;
            if matches!(status, 0 | 502 | 503 | 504) {
                stats.failed_attempts += 1;
            }
        };
        let product = &products[0];
        let uploaded = common::careful::send_with(
            &self.http,
            reqwest::Method::POST,
            &format!("{}/api/v1/products/{product}/images", self.base),
            Some(admin),
            None,
            |r| r.header("content-type", &content_type).body(form.clone()),
            REQUEST_BUDGET,
            count.clone(),
        )
        .await;
        match uploaded.status {
            201 => self.stats.lock().unwrap().images_uploaded += 1,
            // The product shows all the images it may.
            409 => return "media: full".into(),
            _ => {
                self.unknown("media", "POST /images", &uploaded);
                return "media: unknown".into();
            }
        }
        if seed.is_multiple_of(4) {
            return "media: uploaded".into();
        }
        let image = uploaded.body["id"].as_str().unwrap_or_default();
        let deleted = self
            .send(
                reqwest::Method::DELETE,
                &format!("/api/v1/products/{product}/images/{image}"),
                Some(admin),
                None,
                None,
            )
            .await;
        match deleted.status {
            // 404: an earlier attempt deleted it.
            204 | 404 => {
                self.stats.lock().unwrap().images_deleted += 1;
                "media: uploaded+deleted".into()
            }
            _ => {
                self.unknown("media", "DELETE /images", &deleted);
                "media: unknown".into()
            }
        }
    }

    async fn post(&self, path: &str, token: &str, key: Option<&str>, body: Value) -> Reply {
        self.send(reqwest::Method::POST, path, Some(token), key, Some(&body))
            .await
    }

    fn unknown(&self, flow: &str, step: &str, answer: &Reply) {
        self.stats.lock().unwrap().unknown.push(format!(
            "{flow}: {step} ended {} {}",
            answer.status, answer.body
        ));
    }

    fn flow(&self, label: String) {
        *self.stats.lock().unwrap().flows.entry(label).or_default() += 1;
    }

    /// Creates an order; records the key and every order id it was answered with.
    async fn create(&self, user: &(String, String), products: &[String]) -> Option<String> {
        let key = uuid::Uuid::now_v7().to_string();
        let n = rand::random_range(1..=products.len().min(2));
        let items: Vec<Value> = products[..n]
            .iter()
            .map(|p| json!({"product_id": p, "quantity": rand::random_range(1..=3)}))
            .collect();
        let body = json!({"items": items, "shipping_address": common::address()});
        let answer = self.post("/api/v1/orders", &user.1, Some(&key), body).await;
        let id = answer.body["id"].as_str().map(str::to_string);
        self.stats.lock().unwrap().creates.push(CreateKey {
            user_id: user.0.clone(),
            key,
            order_ids: id.iter().cloned().collect(),
            outcome_known: answer.status == 201 || answer.status == 409 || answer.status == 422,
        });
        if answer.status != 201 {
            self.unknown("create", "POST /orders", &answer);
            return None;
        }
        id
    }

    /// Pays with a fresh key (retried with it).
    async fn pay(&self, flow: &str, token: &str, order: &str) -> Paid {
        let key = uuid::Uuid::now_v7().to_string();
        let answer = self
            .post(
                &format!("/api/v1/orders/{order}/payment"),
                token,
                Some(&key),
                common::card("4242424242424242"),
            )
            .await;
        match answer.status {
            201 if answer.body["status"] == "SUCCEEDED" => {
                Paid::Yes(answer.body["id"].as_str().unwrap_or_default().to_string())
            }
            // The provider did not answer in time: the order tells later.
            201 if answer.body["status"] == "PENDING" => {
                let id = answer.body["id"].as_str().unwrap_or_default().to_string();
                let deadline = Instant::now() + REQUEST_BUDGET;
                loop {
                    let order_now = self
                        .send(
                            reqwest::Method::GET,
                            &format!("/api/v1/orders/{order}"),
                            Some(token),
                            None,
                            None,
                        )
                        .await;
                    match order_now.body["status"].as_str() {
                        Some("PAID") => return Paid::Yes(id),
                        Some("PENDING_PAYMENT") if Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(200)).await
                        }
                        Some("CANCELLED" | "PAYMENT_FAILED") => return Paid::Refused,
                        _ => {
                            self.unknown(flow, "pay (pending)", &order_now);
                            return Paid::Unknown;
                        }
                    }
                }
            }
            // Declined (the decline-rate fault flag), or expired or
            // cancelled meanwhile.
            201 if answer.body["status"] == "FAILED" => Paid::Refused,
            409 => Paid::Refused,
            _ => {
                self.unknown(flow, "pay", &answer);
                Paid::Unknown
            }
        }
    }

    async fn cancel(&self, flow: &str, token: &str, order: &str) -> Option<bool> {
        let answer = self
            .post(
                &format!("/api/v1/orders/{order}/cancel"),
                token,
                None,
                json!({}),
            )
            .await;
        match answer.status {
            200 => Some(true),
            409 => Some(false),
            _ => {
                self.unknown(flow, "cancel", &answer);
                None
            }
        }
    }

    async fn get_cart(&self, token: &str) -> Reply {
        self.send(
            reqwest::Method::GET,
            "/api/v1/cart",
            Some(token),
            None,
            None,
        )
        .await
    }

    fn cart_violation(&self, what: String) {
        self.stats.lock().unwrap().cart_violations.push(what);
    }

    /// Fills the user's cart (setting quantities: a retried set changes
    /// nothing twice), checks it holds exactly that, checks it out (paying
    /// when `pay`) and checks the ordered lines left it. The order is
    /// recorded under the key cart-svc gives order-svc, so the invariants
    /// hold it to one order per checkout.
    async fn cart_flow(&self, user: &(String, String), products: &[String], pay: bool) -> String {
        let flow = if pay { "cart+pay" } else { "cart" };
        let token = &user.1;
        let cleared = self
            .send(
                reqwest::Method::DELETE,
                "/api/v1/cart",
                Some(token),
                None,
                None,
            )
            .await;
        if cleared.status != 204 {
            self.unknown(flow, "DELETE /cart", &cleared);
            return format!("{flow}: unknown");
        }
        let n = rand::random_range(1..=products.len().min(2));
        let mut wanted: BTreeMap<String, u64> = BTreeMap::new();
        for product in &products[..n] {
            let quantity = rand::random_range(1..=3u64);
            let set = self
                .send(
                    reqwest::Method::PUT,
                    &format!("/api/v1/cart/items/{product}"),
                    Some(token),
                    None,
                    Some(&json!({"quantity": quantity})),
                )
                .await;
            if set.status != 200 {
                self.unknown(flow, "PUT /cart/items", &set);
                return format!("{flow}: unknown");
            }
            wanted.insert(product.clone(), quantity);
        }
        let cart = self.get_cart(token).await;
        if cart.status != 200 {
            self.unknown(flow, "GET /cart", &cart);
            return format!("{flow}: unknown");
        }
        if by_product(&cart.body["items"]) != wanted {
            self.cart_violation(format!(
                "user {}: the cart holds {:?} after setting {wanted:?}",
                user.0,
                by_product(&cart.body["items"])
            ));
        }
        let key = uuid::Uuid::now_v7().to_string();
        let mut body = json!({"shipping_address": common::address()});
        if pay {
            body["card"] = common::card("4242424242424242")["card"].clone();
        }
        let answer = self
            .post("/api/v1/cart/checkout", token, Some(&key), body)
            .await;
        let id = answer.body["order"]["id"].as_str().map(str::to_string);
        self.stats.lock().unwrap().creates.push(CreateKey {
            user_id: user.0.clone(),
            key: format!("cart:user:{}:{key}", user.0),
            order_ids: id.iter().cloned().collect(),
            outcome_known: matches!(answer.status, 201 | 409 | 422),
        });
        if answer.status != 201 {
            self.unknown(flow, "POST /cart/checkout", &answer);
            return format!("{flow}: unknown");
        }
        let ordered = by_product(&answer.body["order"]["items"]);
        if ordered != wanted {
            self.cart_violation(format!(
                "user {}: checkout ordered {ordered:?} from a cart of {wanted:?}",
                user.0
            ));
        }
        let after = self.get_cart(token).await;
        if after.status == 200 && !by_product(&after.body["items"]).is_empty() {
            self.cart_violation(format!(
                "user {}: ordered lines still in the cart: {:?}",
                user.0,
                by_product(&after.body["items"])
            ));
        }
        match (pay, answer.body["payment"]["status"].as_str()) {
            (false, _) => format!("{flow}: ordered"),
            (true, Some("SUCCEEDED")) => format!("{flow}: paid"),
            (true, _) => format!("{flow}: ordered, not paid"),
        }
    }

    /// One random flow; returns its label.
    async fn run_flow(&self, user: &(String, String), admin: &str, products: &[String]) -> String {
        let kind = rand::random_range(0..8u8);
        if kind == 7 {
            let label = self.media_flow(admin, products).await;
            self.flow(label.clone());
            return label;
        }
        if kind >= 5 {
            let label = self.cart_flow(user, products, kind == 6).await;
            self.flow(label.clone());
            return label;
        }
        let Some(order) = self.create(user, products).await else {
            return "create: unknown".into();
        };
        let token = &user.1;
        let label = match kind {
            // Create and leave it unpaid (it expires).
            0 => "create only".to_string(),
            // Create and cancel.
            1 => match self.cancel("create+cancel", token, &order).await {
                Some(true) => "create+cancel: cancelled".into(),
                Some(false) => "create+cancel: refused".into(),
                None => "create+cancel: unknown".into(),
            },
            // Create and pay.
            2 => match self.pay("create+pay", token, &order).await {
                Paid::Yes(_) => "create+pay: paid".into(),
                Paid::Refused => "create+pay: refused".into(),
                Paid::Unknown => "create+pay: unknown".into(),
            },
            // Pay, then cancel (a refund).
            3 => match self.pay("pay+cancel", token, &order).await {
                Paid::Yes(_) => match self.cancel("pay+cancel", token, &order).await {
                    Some(true) => "pay+cancel: refunded".into(),
                    Some(false) => "pay+cancel: cancel refused".into(),
                    None => "pay+cancel: unknown".into(),
                },
                Paid::Refused => "pay+cancel: pay refused".into(),
                Paid::Unknown => "pay+cancel: unknown".into(),
            },
            // Pay, then an admin refund of everything.
            _ => match self.pay("pay+refund", token, &order).await {
                Paid::Yes(payment_id) => {
                    let key = uuid::Uuid::now_v7().to_string();
                    let refund = self
                        .post(
                            &format!("/api/v1/payments/{payment_id}/refund"),
                            admin,
                            Some(&key),
                            json!({"reason": "crash test"}),
                        )
                        .await;
                    match refund.status {
                        201 => "pay+refund: refunded".into(),
                        409 => "pay+refund: refund refused".into(),
                        _ => {
                            self.unknown("pay+refund", "refund", &refund);
                            "pay+refund: unknown".into()
                        }
                    }
                }
                Paid::Refused => "pay+refund: pay refused".into(),
                Paid::Unknown => "pay+refund: unknown".into(),
            },
        };
        self.flow(label.clone());
        label
    }
}

/// The media invariants once the chaos is over: every image a product
/// shows is one of its live records (ListMedia through the gateway's view:
/// the product itself) with its bytes stored, and, once the sweeper has
/// run, no stored bytes belong to no shown image. Waits up to a minute for
/// the events and the sweeper; returns what still does not hold.
async fn check_media(
    client: &Careful,
    admin: &str,
    products: &[String],
    dir: &Path,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut violations = Vec::new();
        let mut shown = std::collections::BTreeSet::new();
        for product in products {
            let r = client
                .send(
                    reqwest::Method::GET,
                    &format!("/api/v1/products/{product}"),
                    Some(admin),
                    None,
                    None,
                )
                .await;
            for image in r.body["images"].as_array().cloned().unwrap_or_default() {
                let key = image["key"].as_str().unwrap_or_default().to_string();
                let mut files = vec![dir.join(&key).join("original")];
                for thumb in image["thumbnails"].as_array().cloned().unwrap_or_default() {
                    files.push(dir.join(&key).join(thumb["width"].to_string()));
                }
                for file in files {
                    if !file.exists() {
                        violations.push(format!(
                            "product {product} shows {key} but {} is gone",
                            file.display()
                        ));
                    }
                }
                shown.insert(key);
            }
        }
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let key = entry.file_name().to_string_lossy().into_owned();
            let holds_files = std::fs::read_dir(entry.path())
                .map(|mut files| files.next().is_some())
                .unwrap_or(false);
            if holds_files && !shown.contains(&key) && !key.starts_with('.') {
                violations.push(format!("bytes of {key} belong to no image shown"));
            }
        }
        if violations.is_empty() || Instant::now() > deadline {
            return violations;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Units by product of a cart's or an order's `items`.
fn by_product(items: &Value) -> BTreeMap<String, u64> {
    items
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                l["product_id"].as_str().unwrap_or_default().to_string(),
                l["quantity"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// Components and the order the test kills them in; every one at least once.
const GATEWAY: &str = "gateway";
const NATS: &str = "nats";
const POSTGRES: &str = "postgres";

/// Most attempts the clients may have to repeat per kill of one replica,
/// on average, while the other replica of that service runs.
const MAX_FAILED_PER_REPLICA_KILL: f64 = 4.0;

/// One chaos run at a time: each starts a whole mesh of processes.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_process_killed_under_load_keeps_the_invariants() {
    let _one = ONE_AT_A_TIME.lock().await;
    chaos(1, secs_from_env("CRASH_TEST_SECS", 120)).await;
}

/// Two replicas of every service on 127.0.0.1 and 127.0.0.2 behind one
/// name each (`GRPC_HOSTS`), balanced by every caller; one replica at a
/// time is killed (`kill -9`) and restarted. The gateway, NATS and
/// Postgres are left alone here (the run above kills them).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_replica_killed_at_a_time_costs_the_clients_little() {
    let _one = ONE_AT_A_TIME.lock().await;
    chaos(2, secs_from_env("CRASH_REPLICAS_TEST_SECS", 60)).await;
}

fn secs_from_env(var: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// The crash test with `replicas` processes of each service.
async fn chaos(replicas: u8, chaos_for: Duration) {
    let scenarios = vec![Scenario {
        name: "kills only".into(),
        flag: None,
        length: chaos_for,
    }];
    chaos_with(replicas, scenarios, None).await;
}

/// A stretch of a chaos run: kills all along, and one fault flag on (or
/// none) in every process.
struct Scenario {
    name: String,
    flag: Option<(&'static str, Value)>,
    length: Duration,
}

/// Writes the flags file every process reads: `flag` on (variant `on`),
/// every other off. Whole files only (a rename), as an operator's tooling
/// or the kubelet replaces them.
fn write_flags(path: &Path, flag: Option<&(&'static str, Value)>) {
    use platform::flags::Kind;
    let mut flags = serde_json::Map::new();
    for f in platform::flags::FLAGS {
        let off = match f.kind {
            Kind::Switch => json!(false),
            Kind::Rate | Kind::Millis => json!(0),
            Kind::RateBy | Kind::MillisBy => json!({}),
        };
        let definition = match flag {
            Some((key, value)) if *key == f.key => json!({"state": "ENABLED",
                "variants": {"on": value, "off": off}, "defaultVariant": "on"}),
            _ => json!({"state": "ENABLED", "variants": {"off": off}, "defaultVariant": "off"}),
        };
        flags.insert(f.key.to_string(), definition);
    }
    let text = serde_json::to_string_pretty(&json!({"flags": flags})).unwrap();
    platform::flags::Flags::parse(&text).expect("a valid flags file");
    let temp = path.with_extension("next");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

/// The crash test in `scenarios`, one after the other, each settled and
/// checked; with `report_to`, the figures as Markdown there.
async fn chaos_with(replicas: u8, scenarios: Vec<Scenario>, report_to: Option<PathBuf>) {
    let chaos_for: Duration = scenarios.iter().map(|s| s.length).sum();
    platform::telemetry::init_for_tests();
    let started = Instant::now();
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let root = std::env::temp_dir().join(format!("shopmesh-crash-{tag}"));
    std::fs::create_dir_all(&root).unwrap();
    println!("crash test: logs and data under {}", root.display());

    // Backends.
    let flags_file = root.join("flags.json");
    write_flags(&flags_file, None);
    let pg = Postgres::init(&root);
    let nats_dir = root.join("nats");
    std::fs::create_dir_all(&nats_dir).unwrap();
    let nats_port = free_port();
    let mut nats = Process {
        name: NATS.into(),
        addr: SocketAddr::from(([127, 0, 0, 1], nats_port)),
        command: Box::new({
            let dir = nats_dir.clone();
            let root = root.clone();
            move || {
                let mut c = Command::new("/usr/sbin/nats-server");
                c.args([
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &nats_port.to_string(),
                    "-js",
                    "-sd",
                ])
                .arg(&dir)
                .stdout(log_file(&root, "nats"))
                .stderr(log_file(&root, "nats"));
                c
            }
        }),
        child: None,
    };
    nats.spawn();
    wait_port("nats", nats_port, Duration::from_secs(20)).await;

    // The mesh: one process per component, on free ports.
    let ports: Vec<(ServiceId, u16)> = ServiceId::ALL.iter().map(|&id| (id, free_port())).collect();
    let http_port = free_port();
    let key_pem = platform::auth::SigningKey::generate().to_pem();
    let mut env: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), pg.url()),
        ("DATABASE_SCHEMA_PREFIX".into(), format!("c{}", &tag[..12])),
        (
            "STORE_CURSOR_KEY".into(),
            platform::testing::TEST_CURSOR_KEY.into(),
        ),
        ("NATS_URL".into(), format!("nats://127.0.0.1:{nats_port}")),
        ("ADMIN_EMAIL".into(), ADMIN_EMAIL.into()),
        ("ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
        ("JWT_PRIVATE_KEY_PEM".into(), key_pem),
        ("RATE_LIMIT_RPS".into(), "0".into()),
        ("SEED_DEMO".into(), "false".into()),
        (
            "SHIPPING_WEBHOOK_SECRET".into(),
            common::WEBHOOK_SECRET.into(),
        ),
        (
            "ORDER_PAYMENT_TIMEOUT".into(),
            format!("{PAYMENT_TIMEOUT_SECS}s"),
        ),
        // No cap gets in the way of the load; orphans are released soon.
        ("ORDER_MAX_UNPAID_PER_CUSTOMER".into(), "500".into()),
        ("RESERVATION_ORPHAN_GRACE_MS".into(), "20000".into()),
        ("SAGA_SWEEP_INTERVAL_MS".into(), "500".into()),
        ("STORE_CURSOR_KEY".into(), format!("cursor-{tag}")),
        ("HTTP_ADDR".into(), format!("127.0.0.1:{http_port}")),
        // Every replica of media-svc shares one directory of bytes.
        (
            "MEDIA_STORE_URL".into(),
            format!("file://{}", root.join("media").display()),
        ),
        ("MEDIA_GRACE".into(), "2s".into()),
        ("MEDIA_SWEEP_INTERVAL_MS".into(), "500".into()),
        ("LOG_FORMAT".into(), "json".into()),
        (
            "FLAGS_FILE".into(),
            root.join("flags.json").display().to_string(),
        ),
        ("REDIS_URL".into(), "redis://127.0.0.1:6379".into()),
        (
            "RUST_LOG".into(),
            std::env::var("CRASH_LOG").unwrap_or_else(|_| "warn".into()),
        ),
    ];
    if replicas == 1 {
        for (id, port) in &ports {
            env.push((id.addr_var().to_string(), format!("127.0.0.1:{port}")));
        }
    } else {
        // Each service under a name of its own, resolved to its replicas.
        let mut hosts = Vec::new();
        for (id, port) in &ports {
            let name = format!("{}.crash.test", id.name());
            let ips: Vec<String> = (1..=replicas).map(|n| format!("127.0.0.{n}")).collect();
            hosts.push(format!("{name}={}", ips.join(",")));
            env.push((id.addr_var().to_string(), format!("{name}:{port}")));
        }
        env.push(("GRPC_HOSTS".into(), hosts.join(";")));
        env.push(("GRPC_RESOLVE_INTERVAL_MS".into(), "1000".into()));
    }
    // Each process signs its calls with a key of its own, as deployed.
    let mut names: Vec<&str> = ServiceId::ALL.iter().map(|id| id.binary()).collect();
    names.push(GATEWAY);
    let (mesh_keys, public_keys) = platform::auth::generate_mesh(&names);
    env.push(("MESH_PUBLIC_KEYS".into(), public_keys.to_env()));
    let mesh_key = |name: &str| {
        let key = &mesh_keys.iter().find(|(n, _)| n == name).expect("a key").1;
        ("MESH_KEY".to_string(), key.expose().to_string())
    };
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_shopmesh"));
    let component = |name: &str, label: &str, addr: SocketAddr, extra: Vec<(String, String)>| {
        let env = env.clone();
        let binary = binary.clone();
        let root = root.clone();
        let (name_owned, label_owned) = (name.to_string(), label.to_string());
        Process {
            name: label.to_string(),
            addr,
            command: Box::new(move || {
                let mut c = Command::new(&binary);
                c.args(["serve", &name_owned])
                    .envs(env.iter().cloned())
                    .envs(extra.iter().cloned())
                    .stdout(log_file(&root, &label_owned))
                    .stderr(log_file(&root, &label_owned));
                c
            }),
            child: None,
        }
    };
    let mut procs: BTreeMap<String, Process> = BTreeMap::new();
    for &(id, port) in &ports {
        for n in 1..=replicas {
            let label = if replicas == 1 {
                id.name().to_string()
            } else {
                format!("{}#{n}", id.name())
            };
            let addr = SocketAddr::from(([127, 0, 0, n], port));
            procs.insert(
                label.clone(),
                component(
                    id.name(),
                    &label,
                    addr,
                    vec![
                        ("GRPC_ADDR".into(), addr.to_string()),
                        mesh_key(id.binary()),
                    ],
                ),
            );
        }
    }
    procs.insert(
        GATEWAY.into(),
        component(
            GATEWAY,
            GATEWAY,
            SocketAddr::from(([127, 0, 0, 1], http_port)),
            vec![mesh_key(GATEWAY)],
        ),
    );
    for p in procs.values_mut() {
        p.spawn();
    }
    for p in procs.values() {
        wait_addr(&p.name, p.addr, Duration::from_secs(60)).await;
    }

    let config = {
        let vars: BTreeMap<&str, &str> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let vars: std::collections::HashMap<&str, &str> = vars.into_iter().collect();
        platform::Config::from_source("crash", &vars).expect("config")
    };
    let stats = Arc::new(Mutex::new(Stats::default()));
    let client = Careful {
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{http_port}"),
        stats: stats.clone(),
    };
    // Ready: every service answers through the gateway.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = client
            .http
            .get(format!("{}/ready", client.base))
            .send()
            .await;
        if ready.map(|r| r.status().is_success()).unwrap_or(false) {
            break;
        }
        assert!(Instant::now() < deadline, "the mesh never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Accounts and products, before any chaos.
    let login = |email: String, password: String| {
        let client = client.clone();
        async move {
            let r = client
                .send(
                    reqwest::Method::POST,
                    "/api/v1/auth/login",
                    None,
                    None,
                    Some(&json!({"email": email, "password": password})),
                )
                .await;
            assert_eq!(r.status, 200, "login: {}", r.body);
            r.body["access_token"].as_str().unwrap().to_string()
        }
    };
    let admin = login(ADMIN_EMAIL.into(), ADMIN_PASSWORD.into()).await;
    let mut users = Vec::new();
    for i in 0..CUSTOMERS {
        let email = format!("crash-{i}-{tag}@example.com");
        let r = client
            .send(
                reqwest::Method::POST,
                "/api/v1/auth/register",
                None,
                None,
                Some(&json!({"email": email, "password": "correct horse", "name": "Crash"})),
            )
            .await;
        assert_eq!(r.status, 201, "register: {}", r.body);
        let id = r.body["id"].as_str().unwrap().to_string();
        users.push((id, login(email, "correct horse".into()).await));
    }
    let mut products = Vec::new();
    for i in 0..3 {
        let r = client
            .post(
                "/api/v1/products",
                &admin,
                None,
                json!({"sku": format!("CRASH-{i}-{tag}"), "name": format!("Crash item {i}"), "description": "sturdy",
                       "category": "test", "price": {"amount": 990 + i, "currency": "USD"}, "stock": 1_000_000}),
            )
            .await;
        assert_eq!(r.status, 201, "product: {}", r.body);
        products.push(r.body["id"].as_str().unwrap().to_string());
    }
    let stores = Stores::open(&config).await.expect("stores");
    let baseline = stores.baseline().await.expect("baseline");
    drop(stores);

    // Chaos: every target once in a random order, then random ones, one
    // kill at a time, until the time is up.
    let mut targets: Vec<String> = procs.keys().cloned().collect();
    if replicas == 1 {
        targets.push(NATS.into());
        targets.push(POSTGRES.into());
    } else {
        targets.retain(|t| t != GATEWAY);
    }
    let all_targets = targets.clone();
    let mut order: Vec<String> = Vec::new();
    let mut kills: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let mut creates: Vec<CreateKey> = Vec::new();
    let mut report = String::new();
    let probe_user = users[0].clone();
    let nats_settings = platform::events::nats::NatsSettings::from_config(&config);
    let nats_url = format!("nats://127.0.0.1:{nats_port}");
    for (index, scenario) in scenarios.iter().enumerate() {
        let scenario_started = Instant::now();
        write_flags(&flags_file, scenario.flag.as_ref());
        // Load: workers run flows until told to stop.
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for w in 0..WORKERS {
            let client = client.clone();
            let user = users[w % users.len()].clone();
            let admin = admin.clone();
            let products = products.clone();
            let stop = stop.clone();
            workers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let mut shuffled = products.clone();
                    let k = rand::random_range(0..shuffled.len());
                    shuffled.rotate_left(k);
                    client.run_flow(&user, &admin, &shuffled).await;
                }
            }));
        }
        // Attempts the clients had to make again, from each kill until the
        // probe after it succeeded, by kind of target.
        let mut failed_by_kill: BTreeMap<&'static str, Vec<usize>> = BTreeMap::new();
        let mut scenario_kills: BTreeMap<String, usize> = BTreeMap::new();
        let mut recovery: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let gap = scenario.length / (all_targets.len() as u32 + 2);
        let chaos_end = Instant::now() + scenario.length;
        while Instant::now() < chaos_end || kills.len() < all_targets.len() {
            if order.is_empty() {
                order = targets.clone();
                // Fisher-Yates with the test's random numbers.
                for i in (1..order.len()).rev() {
                    order.swap(i, rand::random_range(0..=i));
                }
            }
            let target = order.pop().unwrap();
            tokio::time::sleep(
                gap.min(Duration::from_secs(5))
                    + Duration::from_millis(rand::random_range(0..1000)),
            )
            .await;
            for p in procs.values_mut() {
                if let Some(status) = p.exited() {
                    failures.push(format!(
                        "{} exited on its own ({status}) before a kill of {target}",
                        p.name
                    ));
                    p.spawn();
                }
            }
            let killed_at = Instant::now();
            let failed_before = stats.lock().unwrap().failed_attempts;
            let down_for = Duration::from_millis(rand::random_range(300..1500));
            match target.as_str() {
                NATS => {
                    nats.kill();
                    tokio::time::sleep(down_for).await;
                    nats.spawn();
                    wait_port("nats", nats_port, Duration::from_secs(30)).await;
                }
                POSTGRES => {
                    pg.crash();
                    tokio::time::sleep(down_for).await;
                    pg.start();
                }
                name => {
                    let p = procs.get_mut(name).unwrap();
                    p.kill();
                    tokio::time::sleep(down_for).await;
                    p.spawn();
                }
            }
            *kills.entry(target.clone()).or_default() += 1;
            *scenario_kills.entry(target.clone()).or_default() += 1;
            // Recovered: a probe create through the gateway succeeds.
            let probe = client.create(&probe_user, &products).await;
            let took = killed_at.elapsed();
            if probe.is_none() || took > RECOVERY_BUDGET {
                failures.push(format!(
                    "{}: after the kill of {target} no order could be created for {:.1} s",
                    scenario.name,
                    took.as_secs_f64()
                ));
            }
            let kind = match target.as_str() {
                NATS => NATS,
                POSTGRES => POSTGRES,
                GATEWAY => GATEWAY,
                _ => "service",
            };
            failed_by_kill
                .entry(kind)
                .or_default()
                .push(stats.lock().unwrap().failed_attempts - failed_before);
            recovery.entry(target).or_default().push(took.as_secs_f64());
        }
        // The fault ends; the load stops; what was dead-lettered meanwhile
        // is sent round again, as an operator would once the cause is gone.
        write_flags(&flags_file, None);
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            let _ = tokio::time::timeout(REQUEST_BUDGET * 4, w).await;
        }
        for p in procs.values_mut() {
            if let Some(status) = p.exited() {
                failures.push(format!("{} exited on its own ({status})", p.name));
                p.spawn();
            }
        }
        let mut dead_letters: BTreeMap<String, usize> = BTreeMap::new();
        let mut replayed = 0;
        match platform::events::nats::NatsBus::attach(&nats_url, nats_settings.clone()).await {
            Ok(bus) => {
                for letter in bus.dead_letters(None).await.unwrap_or_default() {
                    *dead_letters.entry(letter.consumer).or_default() += 1;
                }
                for consumer in dead_letters.keys() {
                    match bus.replay_dead_letters(consumer).await {
                        Ok(replay) => replayed += replay.replayed,
                        Err(err) => failures.push(format!(
                            "{}: replaying {consumer}'s dead letters: {err}",
                            scenario.name
                        )),
                    }
                }
            }
            Err(err) => failures.push(format!(
                "{}: reading the dead letters: {err}",
                scenario.name
            )),
        }

        // Settle and check.
        let stores = Stores::open(&config).await.expect("stores");
        let stats_now = std::mem::take(&mut *stats.lock().unwrap());
        creates.extend(stats_now.creates.iter().cloned());
        let expect = Expect {
            baseline: baseline.clone(),
            creates: creates.clone(),
            payment_timeout: Some(Duration::from_secs(PAYMENT_TIMEOUT_SECS)),
            notifications: true,
        };
        let checked = settle_and_check(&stores, &expect, SETTLE).await;
        let media_violations = check_media(&client, &admin, &products, &root.join("media")).await;

        let flows: usize = stats_now.flows.values().sum();
        let flag = scenario
            .flag
            .as_ref()
            .map_or("none".to_string(), |(k, v)| format!("{k} = {v}"));
        println!(
            "crash test summary, {} ({} replica(s) per service, {:.0} s of chaos, {:.0} s in all; flag: {flag}):",
            scenario.name,
            replicas,
            scenario.length.as_secs_f64(),
            scenario_started.elapsed().as_secs_f64()
        );
        println!("  flows: {flows} {:?}", stats_now.flows);
        println!("  creates: {}", stats_now.creates.len());
        println!("  kills per target: {scenario_kills:?}");
        let mut recovered = Vec::new();
        for (target, times) in &recovery {
            let max = times.iter().cloned().fold(0.0, f64::max);
            let mean = times.iter().sum::<f64>() / times.len() as f64;
            println!(
                "  time to recover after killing {target}: mean {mean:.1} s, max {max:.1} s ({times:.1?})"
            );
            recovered.push(format!("{target} {mean:.1}/{max:.1}"));
        }
        println!(
            "  statuses the clients saw (0 = no answer): {:?}",
            stats_now.statuses
        );
        for (kind, counts) in &failed_by_kill {
            let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
            println!(
                "  attempts failed (no answer, 502, 503, 504) per kill of a {kind}{}: mean {mean:.1}, {counts:?}",
                if replicas > 1 { " replica" } else { " process" }
            );
        }
        println!("  dead letters: {dead_letters:?}, {replayed} replayed");
        println!(
            "  flows that never learned their outcome: {}",
            stats_now.unknown.len()
        );
        for u in stats_now.unknown.iter().take(30) {
            println!("    {u}");
        }
        println!(
            "  images: {} uploaded, {} deleted; media violations: {media_violations:?}",
            stats_now.images_uploaded, stats_now.images_deleted
        );
        println!("  invariants: {checked}");
        if index == 0 {
            report.push_str(
                "| scenario | flag in force | flows | statuses clients saw (0 = no answer) | kills | recovery after a kill, mean/max s | dead letters, replayed | invariants |\n|---|---|---|---|---|---|---|---|\n",
            );
        }
        let statuses: Vec<String> = stats_now
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let kill_count: usize = scenario_kills.values().sum();
        report.push_str(&format!(
            "| {} | `{flag}` | {flows} | {} | {kill_count} ({}) | {} | {}, {replayed} | {} |\n",
            scenario.name,
            statuses.join(", "),
            scenario_kills
                .iter()
                .map(|(t, n)| format!("{t} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            recovered.join(", "),
            dead_letters.values().sum::<usize>(),
            if checked.is_clean()
                && media_violations.is_empty()
                && stats_now.cart_violations.is_empty()
            {
                format!(
                    "0 violations (settled in {:.1} s)",
                    checked.settled_after.map_or(f64::NAN, |d| d.as_secs_f64())
                )
            } else {
                format!(
                    "{} violation(s): {:?}",
                    checked.violations.len()
                        + media_violations.len()
                        + stats_now.cart_violations.len(),
                    checked.by_rule()
                )
            }
        ));
        let named = |what: String| format!("{}: {what}", scenario.name);
        for (what, found) in [
            ("cart violation(s)", &stats_now.cart_violations),
            ("media violation(s)", &media_violations),
            ("flow(s) never learned their outcome", &stats_now.unknown),
        ] {
            if let Some(first) = found.first() {
                failures.push(named(format!("{} {what}, e.g. {first}", found.len())));
            }
        }
        if !checked.is_clean() {
            failures.push(named(format!(
                "{} invariant violation(s): {:?}",
                checked.violations.len(),
                checked.by_rule()
            )));
        }
        if flows == 0 {
            failures.push(named("no flow completed".into()));
        }
        // With a second replica to take its calls, a replica's kill costs the
        // clients the calls it had in flight (one process's kill costs about
        // fifteen repeated attempts: every call until it is back).
        if replicas > 1
            && scenario.flag.is_none()
            && let Some(counts) = failed_by_kill.get("service")
        {
            let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
            if mean > MAX_FAILED_PER_REPLICA_KILL {
                failures.push(format!(
                    "a replica's kill cost the clients {mean:.1} repeated attempts on average (at most {MAX_FAILED_PER_REPLICA_KILL}): {counts:?}"
                ));
            }
        }
    }
    for target in &all_targets {
        if !kills.contains_key(target) {
            failures.push(format!("{target} was never killed"));
        }
    }
    println!(
        "chaos: {} scenario(s), {:.0} s of chaos, {:.0} s in all",
        scenarios.len(),
        chaos_for.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = report_to {
        write_report(
            &path,
            replicas,
            &scenarios,
            started.elapsed(),
            &report,
            &failures,
        );
    }
    drop(procs);
    drop(nats);
    drop(pg);
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(&root);
    } else {
        println!("logs kept under {}", root.display());
    }
    assert!(
        failures.is_empty(),
        "crash test failed:\n{}",
        failures.join("\n")
    );
}

/// `docs/RESILIENCE.md`: what a resilience run did and found.
fn write_report(
    path: &Path,
    replicas: u8,
    scenarios: &[Scenario],
    took: Duration,
    table: &str,
    failures: &[String],
) {
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let chaos: f64 = scenarios.iter().map(|s| s.length.as_secs_f64()).sum();
    let release = if cfg!(debug_assertions) {
        ""
    } else {
        " --release"
    };
    let mut text = format!(
        "# Resilience report\n\n\
         Written by `RESILIENCE_SECS={chaos:.0} cargo test{release} --test crash resilience_report -- --ignored --nocapture` \
         on commit `{commit}`, on a {cores}-core Linux machine, in {:.0} s.\n\n\
         Every component runs as its own process ({replicas} per service) on a private Postgres and NATS, \
         with Redis; careful clients run order, payment, cancel, refund, cart and image flows all along. \
         In each scenario one fault flag is on in every process (through `FLAGS_FILE`, as deployed) \
         while processes, NATS and Postgres are killed (`kill -9`, Postgres in immediate mode) and \
         restarted one at a time. Then the flag goes off, the load stops, dead letters are replayed, \
         and the stores must settle with every saga invariant whole (`tests/common/invariants.rs`: \
         one captured payment per order, captured minus refunded equals what was sold, stock conserved \
         per product, one shipment per paid order and none for a cancelled one, every event handled \
         once per consumer, notifications once per event, cart lines and images accounted for).\n\n\
         Recovery is the time from a kill until a new order can be created through the gateway.\n\n",
        took.as_secs_f64()
    );
    text.push_str(table);
    text.push('\n');
    if failures.is_empty() {
        text.push_str("Result: every scenario settled with 0 violations.\n");
    } else {
        text.push_str("Result: failures:\n\n");
        for f in failures {
            text.push_str(&format!("- {f}\n"));
        }
    }
    std::fs::write(path, text).unwrap();
}

/// The scenarios of a resilience run of `total`: kills alone, then kills
/// with each fault flag on in turn.
fn resilience_scenarios(total: Duration, flags: &[(&'static str, Value)]) -> Vec<Scenario> {
    let each = total / (flags.len() as u32 + 1);
    let mut scenarios = vec![Scenario {
        name: "kills only".into(),
        flag: None,
        length: each,
    }];
    for (key, value) in flags {
        scenarios.push(Scenario {
            name: format!("kills + {key}"),
            flag: Some((key, value.clone())),
            length: each,
        });
    }
    scenarios
}

/// Every flag, at a setting that hurts without stopping the shop.
fn every_fault() -> Vec<(&'static str, Value)> {
    use platform::flags::*;
    vec![
        (PAYMENT_DECLINE_RATE, json!(0.3)),
        (PAYMENT_OUTAGE, json!(true)),
        (PAYMENT_LATENCY, json!(1500)),
        (CARRIER_OUTAGE, json!(true)),
        (CARRIER_LATENCY, json!(1500)),
        (
            SERVICE_LATENCY,
            json!({"product-svc": 200, "order-svc": 200}),
        ),
        (
            SERVICE_ERROR_RATE,
            json!({"product-svc": 0.2, "shipping-svc": 0.2}),
        ),
        (
            EVENT_FAILURE_RATE,
            json!({"shipping-svc": 0.5, "notification-svc": 0.5, "order-svc": 0.3}),
        ),
        (CACHE_OUTAGE, json!(true)),
        (STORE_LATENCY, json!({"order-svc": 100, "payment-svc": 100})),
    ]
}

/// The resilience report (`docs/RESILIENCE.md`): `RESILIENCE_SECS`
/// (default 300) of chaos, shared by kills alone and each fault flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a 5-minute run that writes docs/RESILIENCE.md"]
async fn resilience_report() {
    let _one = ONE_AT_A_TIME.lock().await;
    let total = secs_from_env("RESILIENCE_SECS", 300);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/RESILIENCE.md");
    chaos_with(1, resilience_scenarios(total, &every_fault()), Some(path)).await;
}

/// A short resilience run: kills with two fault flags on in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kills_with_fault_flags_on_keep_the_invariants() {
    let _one = ONE_AT_A_TIME.lock().await;
    let faults = every_fault();
    let two: Vec<_> = faults
        .into_iter()
        .filter(|(k, _)| {
            [
                platform::flags::PAYMENT_DECLINE_RATE,
                platform::flags::EVENT_FAILURE_RATE,
            ]
            .contains(k)
        })
        .collect();
    let total = secs_from_env("CRASH_FLAGS_TEST_SECS", 60);
    let scenarios: Vec<Scenario> = resilience_scenarios(total, &two)
        .into_iter()
        .filter(|s| s.flag.is_some())
        .collect();
    chaos_with(1, scenarios, None).await;
}
