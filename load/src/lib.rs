//! `shopmesh-load`: drives a running shopmesh deployment through its public
//! REST API with virtual shoppers.
//!
//! Each virtual user signs up, signs in, then runs a weighted mix of
//! operations (browse, search, product page, similar items,
//! recommendations, order, pay, cancel) as fast as answers come back, until
//! the run ends. Products, search words and baskets come from the UCI Online
//! Retail data set (CC BY 4.0, Chen 2015, https://doi.org/10.24432/C5BW33):
//! with `seed_catalog` the generator first creates the most-bought products
//! through the admin API; orders then buy real invoices' baskets.

pub mod dataset;
pub mod report;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};

use dataset::Dataset;
pub use report::{Op, Recorder, Report};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the gateway answers, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    pub users: usize,
    pub duration: Duration,
    /// Users start evenly spread over this time.
    pub ramp_up: Duration,
    /// Relative weight of each operation of the mix.
    pub mix: Vec<(Op, u32)>,
    /// Create this many products of the data set first (admin API).
    pub seed_catalog: Option<usize>,
    pub admin_email: Option<String>,
    pub admin_password: Option<String>,
    /// The Online Retail CSV (`.csv.gz`); the shipped sample when `None`.
    pub dataset: Option<PathBuf>,
    /// Read at most this many lines of it.
    pub dataset_rows: Option<usize>,
    pub request_timeout: Duration,
    /// Pause of each user between two operations.
    pub think_time: Duration,
    /// Run the mix in order (each operation as often as its weight says,
    /// every one within the first round) instead of drawing at random.
    pub in_order: bool,
    /// Print a progress line to stderr every second.
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8080".into(),
            users: 16,
            duration: Duration::from_secs(30),
            ramp_up: Duration::from_secs(5),
            mix: default_mix(),
            seed_catalog: None,
            admin_email: None,
            admin_password: None,
            dataset: None,
            dataset_rows: None,
            request_timeout: Duration::from_secs(10),
            think_time: Duration::ZERO,
            in_order: false,
            progress: true,
        }
    }
}

/// Mostly reads, as shops are: 80 % catalog, 20 % carts, orders and
/// payments.
pub fn default_mix() -> Vec<(Op, u32)> {
    vec![
        (Op::Browse, 20),
        (Op::Search, 15),
        (Op::Product, 30),
        (Op::Similar, 8),
        (Op::Recommendations, 7),
        (Op::Order, 6),
        (Op::Pay, 4),
        (Op::Cancel, 2),
        (Op::CartAdd, 5),
        (Op::Checkout, 3),
    ]
}

/// What a browser asks for: the pages (HTML), with carts and checkouts
/// through their forms.
pub fn browser_mix() -> Vec<(Op, u32)> {
    vec![
        (Op::PageHome, 20),
        (Op::PageSearch, 20),
        (Op::PageProduct, 40),
        (Op::PageCart, 15),
        (Op::PageCheckout, 5),
    ]
}

/// Parses `browse=20,search=15,…` (or `browser` for [`browser_mix`]); operations left out get weight 0.
pub fn parse_mix(text: &str) -> anyhow::Result<Vec<(Op, u32)>> {
    if text.trim() == "browser" {
        return Ok(browser_mix());
    }
    let mut mix = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part
            .split_once('=')
            .with_context(|| format!("mix entry {part:?} is not name=weight"))?;
        let op = Op::from_name(name.trim())
            .filter(|op| Op::MIX.contains(op))
            .with_context(|| {
                let names: Vec<&str> = Op::MIX.iter().map(|o| o.name()).collect();
                format!(
                    "unknown operation {name:?} in the mix (one of {})",
                    names.join(", ")
                )
            })?;
        let weight: u32 = weight
            .trim()
            .parse()
            .with_context(|| format!("weight of {name} must be a whole number, not {weight:?}"))?;
        mix.push((op, weight));
    }
    anyhow::ensure!(
        mix.iter().any(|(_, w)| *w > 0),
        "the mix has no operation with a weight above 0"
    );
    Ok(mix)
}

/// `30s`, `2m`, `500ms`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len()),
    );
    let value: f64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a duration (e.g. 30s, 2m)"))?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => anyhow::bail!("unknown unit {unit:?} in {text:?} (ms, s, m, h)"),
    };
    anyhow::ensure!(
        secs.is_finite() && secs >= 0.0,
        "{text:?} is not a duration"
    );
    Ok(Duration::from_secs_f64(secs))
}

/// A product of the deployment's catalog.
#[derive(Debug, Clone)]
struct Item {
    id: String,
}

/// What every user draws from.
struct World {
    base: String,
    http: reqwest::Client,
    recorder: Recorder,
    /// The catalog as listed by the deployment.
    items: Vec<Item>,
    /// Baskets of the data set mapped onto catalog ids.
    baskets: Vec<Vec<(String, u32)>>,
    words: Vec<String>,
    categories: Vec<String>,
    mix: Vec<(Op, u32)>,
    in_order: bool,
    think_time: Duration,
    run_id: String,
}

/// Runs the load and returns what it measured.
pub async fn run(options: Options) -> anyhow::Result<Report> {
    anyhow::ensure!(options.users > 0, "at least one user");
    let data = match &options.dataset {
        Some(path) => Dataset::load(path, options.dataset_rows)?,
        None => Dataset::sample(),
    };
    anyhow::ensure!(!data.products.is_empty(), "the data set has no products");
    let http = reqwest::Client::builder()
        .timeout(options.request_timeout)
        .pool_max_idle_per_host(options.users.max(1))
        .tcp_nodelay(true)
        .build()
        .context("building the HTTP client")?;
    let base = options.base_url.trim_end_matches('/').to_string();

    if let Some(count) = options.seed_catalog {
        seed_catalog(&http, &base, &options, &data, count).await?;
    }
    let catalog = list_catalog(&http, &base).await?;
    anyhow::ensure!(
        !catalog.is_empty(),
        "the deployment lists no products (use --seed-catalog N)"
    );
    let by_sku: HashMap<String, String> = catalog
        .iter()
        .map(|(id, sku, _)| (sku.clone(), id.clone()))
        .collect();
    let by_code: HashMap<&str, String> = data
        .products
        .iter()
        .filter_map(|p| {
            by_sku
                .get(&p.sku())
                .map(|id| (p.stock_code.as_str(), id.clone()))
        })
        .collect();
    let baskets: Vec<Vec<(String, u32)>> = data
        .baskets
        .iter()
        .filter_map(|basket| {
            // Shop-sized baskets: at most 5 lines of at most 3 units.
            let lines: Vec<(String, u32)> = basket
                .iter()
                .filter_map(|(code, q)| {
                    by_code
                        .get(code.as_str())
                        .map(|id| (id.clone(), (*q).clamp(1, 3)))
                })
                .take(5)
                .collect();
            (!lines.is_empty()).then_some(lines)
        })
        .collect();
    let mut categories: Vec<String> = catalog.iter().map(|(_, _, c)| c.clone()).collect();
    categories.sort();
    categories.dedup();
    let world = Arc::new(World {
        base,
        http,
        recorder: Recorder::default(),
        items: catalog.into_iter().map(|(id, _, _)| Item { id }).collect(),
        baskets,
        words: if data.words.is_empty() {
            vec!["mug".into()]
        } else {
            data.words
        },
        categories,
        mix: options
            .mix
            .iter()
            .copied()
            .filter(|(_, w)| *w > 0)
            .collect(),
        in_order: options.in_order,
        think_time: options.think_time,
        run_id: format!("{:x}", uuid::Uuid::now_v7().as_u128() & 0xffff_ffff_ffff),
    });

    let started = Instant::now();
    let deadline = started + options.duration;
    let active = Arc::new(AtomicUsize::new(0));
    let progress = options.progress.then(|| {
        let (world, active, users) = (world.clone(), active.clone(), options.users);
        tokio::spawn(async move { progress_lines(&world, &active, users, started, deadline).await })
    });
    let mut tasks = Vec::with_capacity(options.users);
    for n in 0..options.users {
        let delay = options.ramp_up.mul_f64(n as f64 / options.users as f64);
        let (world, active) = (world.clone(), active.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if Instant::now() < deadline {
                active.fetch_add(1, Ordering::Relaxed);
                User::new(world, n).run(deadline).await;
                active.fetch_sub(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.context("a virtual user failed")?;
    }
    if let Some(progress) = progress {
        progress.abort();
        eprintln!();
    }
    Ok(world.recorder.report(started.elapsed(), options.users))
}

async fn progress_lines(
    world: &World,
    active: &AtomicUsize,
    users: usize,
    started: Instant,
    deadline: Instant,
) {
    use std::io::{IsTerminal as _, Write as _};
    let tty = std::io::stderr().is_terminal();
    let total = deadline.saturating_duration_since(started).as_secs();
    let mut last = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let (requests, failed) = world.recorder.counts();
        let line = format!(
            "[{:>4}s/{total}s] users {:>4}/{users}  requests {requests:>8} ({:>6}/s)  failed {failed}",
            started.elapsed().as_secs(),
            active.load(Ordering::Relaxed),
            requests - last,
        );
        last = requests;
        let mut err = std::io::stderr().lock();
        let _ = if tty {
            write!(err, "\r{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
}

/// `(id, sku, category)` of every product the deployment lists.
async fn list_catalog(
    http: &reqwest::Client,
    base: &str,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut url = format!("{base}/api/v1/products?limit=100");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let response = http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("listing products at {base}"))?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "listing products answered {status}");
        let page: Value = response.json().await.context("product list is not JSON")?;
        for p in page["items"].as_array().into_iter().flatten() {
            if let (Some(id), Some(sku)) = (p["id"].as_str(), p["sku"].as_str()) {
                let category = p["category"].as_str().unwrap_or_default().to_string();
                items.push((id.to_string(), sku.to_string(), category));
            }
        }
        match page["next_cursor"].as_str() {
            Some(next) if !next.is_empty() => cursor = Some(next.to_string()),
            _ => break,
        }
    }
    Ok(items)
}

/// Creates the `count` most-bought products of the data set; ones that
/// exist already (409: same SKU) are kept as they are.
async fn seed_catalog(
    http: &reqwest::Client,
    base: &str,
    options: &Options,
    data: &Dataset,
    count: usize,
) -> anyhow::Result<()> {
    let (Some(email), Some(password)) = (&options.admin_email, &options.admin_password) else {
        anyhow::bail!("seeding the catalog needs ADMIN_EMAIL and ADMIN_PASSWORD");
    };
    let token = login(http, base, email, password)
        .await?
        .with_context(|| format!("the admin account {email} could not sign in"))?;
    let products: Vec<&dataset::Product> = data.products.iter().take(count).collect();
    let (mut created, mut existing) = (0usize, 0usize);
    for chunk in products.chunks(16) {
        let requests: Vec<_> = chunk
            .iter()
            .map(|p| {
                let body = json!({
                    "sku": p.sku(),
                    "name": p.name,
                    "description": format!("{} (Online Retail stock code {})", p.name, p.stock_code),
                    "category": p.category(),
                    "price": {"amount": p.price, "currency": "GBP"},
                    "stock": 1_000_000,
                });
                let send = http.post(format!("{base}/api/v1/products")).bearer_auth(&token).json(&body).send();
                tokio::spawn(send)
            })
            .collect();
        let mut answers = Vec::with_capacity(requests.len());
        for request in requests {
            answers.push(request.await.context("creating a product")?);
        }
        for (answer, product) in answers.into_iter().zip(chunk) {
            let response = answer.context("creating a product")?;
            match response.status().as_u16() {
                201 => created += 1,
                409 => existing += 1,
                status => {
                    let body = response.text().await.unwrap_or_default();
                    anyhow::bail!("creating {} answered {status}: {body}", product.sku());
                }
            }
        }
    }
    eprintln!("catalog: {created} products created, {existing} there already");
    Ok(())
}

/// `Some(access token)`, or `None` when the credentials are refused.
async fn login(
    http: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<Option<String>> {
    let response = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .with_context(|| format!("signing in at {base}"))?;
    if !response.status().is_success() {
        return Ok(None);
    }
    let body: Value = response.json().await.context("login answer is not JSON")?;
    Ok(body["access_token"].as_str().map(str::to_string))
}

/// One virtual shopper.
struct User {
    world: Arc<World>,
    rng: StdRng,
    email: String,
    token: Option<String>,
    /// Orders waiting for payment.
    pending: Vec<String>,
    /// Operations run so far (the position in an ordered mix).
    steps: usize,
    /// The CSRF token of this user's page forms (its cookie and the
    /// forms' field, as a browser holds them).
    csrf: String,
}

const PASSWORD: &str = "load-test password";

impl User {
    fn new(world: Arc<World>, n: usize) -> Self {
        let email = format!("load-{}-{n}@example.com", world.run_id);
        Self {
            world,
            rng: StdRng::from_rng(&mut rand::rng()),
            email,
            token: None,
            pending: Vec::new(),
            steps: n,
            // 43 characters, the length of the tokens the gateway issues.
            csrf: format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                &uuid::Uuid::new_v4().simple().to_string()[..11]
            ),
        }
    }

    async fn run(mut self, deadline: Instant) {
        let body = json!({"email": self.email, "password": PASSWORD, "name": "Load Tester"});
        let (status, _) = self
            .send(
                Op::Register,
                reqwest::Method::POST,
                "/api/v1/auth/register",
                Some(body),
                false,
            )
            .await;
        if status != 201 && status != 409 {
            return;
        }
        while Instant::now() < deadline {
            if self.token.is_none() && !self.sign_in().await {
                // Signed-out users still browse, after a short pause.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let op = self.pick();
            self.step(op).await;
            if !self.world.think_time.is_zero() {
                tokio::time::sleep(self.world.think_time).await;
            }
        }
    }

    async fn sign_in(&mut self) -> bool {
        let body = json!({"email": self.email, "password": PASSWORD});
        let (status, answer) = self
            .send(
                Op::Login,
                reqwest::Method::POST,
                "/api/v1/auth/login",
                Some(body),
                false,
            )
            .await;
        if status == 200 {
            self.token = answer["access_token"].as_str().map(str::to_string);
        }
        self.token.is_some()
    }

    fn pick(&mut self) -> Op {
        let total: u32 = self.world.mix.iter().map(|(_, w)| w).sum();
        let mut roll = if self.world.in_order {
            self.steps += 1;
            (self.steps % total.max(1) as usize) as u32
        } else {
            self.rng.random_range(0..total.max(1))
        };
        for &(op, weight) in &self.world.mix {
            if roll < weight {
                return op;
            }
            roll -= weight;
        }
        Op::Product
    }

    fn item(&mut self) -> String {
        let i = self.rng.random_range(0..self.world.items.len());
        self.world.items[i].id.clone()
    }

    async fn step(&mut self, op: Op) {
        use reqwest::Method;
        match op {
            Op::Browse => {
                let path = if !self.world.categories.is_empty() && self.rng.random_bool(0.5) {
                    let i = self.rng.random_range(0..self.world.categories.len());
                    format!(
                        "/api/v1/products?limit=20&category={}",
                        self.world.categories[i]
                    )
                } else {
                    "/api/v1/products?limit=20".to_string()
                };
                self.send(op, Method::GET, &path, None, false).await;
            }
            Op::Search => {
                let i = self.rng.random_range(0..self.world.words.len());
                let path = format!("/api/v1/products?q={}&limit=20", self.world.words[i]);
                self.send(op, Method::GET, &path, None, false).await;
            }
            Op::Product => {
                let path = format!("/api/v1/products/{}", self.item());
                self.send(op, Method::GET, &path, None, false).await;
            }
            Op::Similar => {
                let path = format!("/api/v1/products/{}/similar?limit=10", self.item());
                self.send(op, Method::GET, &path, None, false).await;
            }
            Op::Recommendations => {
                self.send(
                    op,
                    Method::GET,
                    "/api/v1/recommendations?limit=10",
                    None,
                    true,
                )
                .await;
            }
            Op::Order => {
                self.order().await;
            }
            Op::Pay | Op::Cancel => {
                let order = match self.pending.pop() {
                    Some(order) => Some(order),
                    None => {
                        self.order().await;
                        self.pending.pop()
                    }
                };
                let Some(order) = order else { return };
                let (path, body) = if op == Op::Pay {
                    let card = json!({"card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2035, "cvc": "123"}});
                    (format!("/api/v1/orders/{order}/payment"), Some(card))
                } else {
                    (format!("/api/v1/orders/{order}/cancel"), None)
                };
                self.send(op, Method::POST, &path, body, true).await;
            }
            Op::CartAdd => {
                self.cart_add().await;
            }
            Op::Checkout => {
                // A shopper fills the cart, then checks out and pays.
                self.cart_add().await;
                let body = json!({
                    "shipping_address": {"name": "Load Tester", "line1": "1 Load Street", "city": "London", "postal_code": "E1 6AN", "country": "GB"},
                    "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2035, "cvc": "123"},
                });
                self.send(op, Method::POST, "/api/v1/cart/checkout", Some(body), true)
                    .await;
            }
            Op::PageHome => {
                self.page(op, Method::GET, "/", None).await;
            }
            Op::PageSearch => {
                let i = self.rng.random_range(0..self.world.words.len());
                let path = format!("/search?q={}", self.world.words[i]);
                self.page(op, Method::GET, &path, None).await;
            }
            Op::PageProduct => {
                let path = format!("/products/{}", self.item());
                self.page(op, Method::GET, &path, None).await;
            }
            Op::PageCart => {
                let form = vec![("product_id", self.item()), ("quantity", "1".into())];
                let (status, _) = self.page(op, Method::POST, "/cart/items", Some(form)).await;
                if status == 303 {
                    self.page(op, Method::GET, "/cart", None).await;
                }
            }
            Op::PageCheckout => {
                let form = vec![("product_id", self.item()), ("quantity", "1".into())];
                self.page(Op::PageCart, Method::POST, "/cart/items", Some(form))
                    .await;
                let (status, html) = self.page(op, Method::GET, "/checkout", None).await;
                let Some(key) = hidden_field(&html, "key").filter(|_| status == 200) else {
                    return;
                };
                let mut form: Vec<(&str, String)> = vec![("key", key)];
                for (name, value) in [
                    ("name", "Load Tester"),
                    ("line1", "1 Load Street"),
                    ("city", "London"),
                    ("postal_code", "E1 6AN"),
                    ("country", "GB"),
                    ("card_number", "4242424242424242"),
                    ("exp_month", "12"),
                    ("exp_year", "2035"),
                    ("cvc", "123"),
                ] {
                    form.push((name, value.to_string()));
                }
                self.page(op, Method::POST, "/checkout", Some(form)).await;
            }
            Op::Register | Op::Login => {}
        }
    }

    /// Requests a page as a signed-in browser would (session and CSRF
    /// cookies, the form's CSRF field) and records it; a form that sends
    /// the visitor to sign in counts as 401.
    async fn page(
        &mut self,
        op: Op,
        method: reqwest::Method,
        path: &str,
        form: Option<Vec<(&str, String)>>,
    ) -> (u16, String) {
        let world = self.world.clone();
        let Some(token) = &self.token else {
            return (0, String::new());
        };
        let mut request = world
            .http
            .request(method, format!("{}{path}", world.base))
            .header(
                "cookie",
                format!("sm_session={token}; sm_csrf={}", self.csrf),
            )
            .header("origin", world.base.clone());
        if let Some(mut form) = form {
            form.push(("csrf", self.csrf.clone()));
            request = request.form(&form);
        }
        let began = Instant::now();
        let (mut status, html, location) = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let location = response
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                (status, response.text().await.unwrap_or_default(), location)
            }
            Err(_) => (0, String::new(), None),
        };
        if status == 303
            && location
                .as_deref()
                .is_some_and(|l| l.starts_with("/signin"))
        {
            status = 401;
        }
        world.recorder.record(op, status, began.elapsed());
        if status == 401 {
            self.token = None;
        }
        (status, html)
    }

    async fn cart_add(&mut self) {
        let body = json!({"product_id": self.item(), "quantity": 1});
        self.send(
            Op::CartAdd,
            reqwest::Method::POST,
            "/api/v1/cart/items",
            Some(body),
            true,
        )
        .await;
    }

    async fn order(&mut self) {
        let lines = if self.world.baskets.is_empty() {
            vec![(self.item(), 1)]
        } else {
            let i = self.rng.random_range(0..self.world.baskets.len());
            self.world.baskets[i].clone()
        };
        let items: Vec<Value> = lines
            .iter()
            .map(|(id, q)| json!({"product_id": id, "quantity": q}))
            .collect();
        let body = json!({
            "items": items,
            "shipping_address": {"name": "Load Tester", "line1": "1 Load Street", "city": "London", "postal_code": "E1 6AN", "country": "GB"},
        });
        let (status, answer) = self
            .send(
                Op::Order,
                reqwest::Method::POST,
                "/api/v1/orders",
                Some(body),
                true,
            )
            .await;
        if status == 201
            && let Some(id) = answer["id"].as_str()
        {
            self.pending.push(id.to_string());
        }
    }

    /// Sends one request and records it; a 401 on a signed-in call drops
    /// the token so the next step signs in again.
    async fn send(
        &mut self,
        op: Op,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        auth: bool,
    ) -> (u16, Value) {
        let world = self.world.clone();
        let mut request = world
            .http
            .request(method.clone(), format!("{}{path}", world.base));
        if auth {
            match &self.token {
                Some(token) => request = request.bearer_auth(token),
                None => return (0, Value::Null),
            }
        }
        if method == reqwest::Method::POST && matches!(op, Op::Order | Op::Pay | Op::Checkout) {
            request = request.header("Idempotency-Key", uuid::Uuid::now_v7().to_string());
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let began = Instant::now();
        let (status, answer) = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let answer = response.json::<Value>().await.unwrap_or(Value::Null);
                (status, answer)
            }
            Err(_) => (0, Value::Null),
        };
        world.recorder.record(op, status, began.elapsed());
        if auth && status == 401 {
            self.token = None;
        }
        (status, answer)
    }
}

/// The value of the hidden field `name` in a page.
fn hidden_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_refuse_what_they_do_not_know() {
        let mix = parse_mix("browse=3, order=1,pay=0").unwrap();
        assert_eq!(mix, vec![(Op::Browse, 3), (Op::Order, 1), (Op::Pay, 0)]);
        assert!(
            parse_mix("teleport=1")
                .unwrap_err()
                .to_string()
                .contains("unknown operation")
        );
        assert!(
            parse_mix("login=1").is_err(),
            "sign-in is not part of the mix"
        );
        assert!(parse_mix("browse=x").is_err());
        assert!(parse_mix("browse=0").is_err());
        assert!(parse_mix("").is_err());
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
