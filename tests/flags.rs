//! Fault flags on a running mesh (Postgres, NATS, Redis): each fault, on,
//! is seen where it should be (statuses, latency, retries); off again, the
//! shop recovers with nothing lost, and the saga's invariants hold once it
//! settles. Flags are the process's own, so the tests here take turns.
//! And a bad flags file: the process stops with one line naming it.

mod common;

use std::time::{Duration, Instant};

use common::backends::Backends;
use common::invariants::{Expect, Stores, settle_and_check};
use serde_json::json;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ADMIN: (&str, &str) = ("admin@example.com", "admin-password");

/// Puts these flags in force at variant `on` with their values, every
/// other off.
fn these(flags: &[(&str, serde_json::Value)]) {
    let mut file = serde_json::Map::new();
    for (key, value) in flags {
        file.insert(
            key.to_string(),
            json!({"state": "ENABLED", "variants": {"on": value}, "defaultVariant": "on"}),
        );
    }
    let file = json!({ "flags": file });
    platform::flags::set(platform::flags::Flags::parse(&file.to_string()).expect("valid flags"));
}

/// Puts one flag in force at variant `on` with `value`, every other off.
fn only(key: &str, value: serde_json::Value) {
    these(&[(key, value)]);
}

fn all_off() {
    platform::flags::set(platform::flags::Flags::default());
}

/// How many faults flag `key` injected so far in this process.
async fn injected(t: &common::TestMesh, key: &str) -> u64 {
    let metrics = t.text("/metrics").await;
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("shop_fault_injected_total{{flag=\"{key}\"}}")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .map_or(0, |n| n as u64)
}

async fn until_injected(t: &common::TestMesh, key: &str, more_than: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while injected(t, key).await <= more_than {
        assert!(Instant::now() < deadline, "{key} never fired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_fault_shows_and_the_shop_recovers_when_it_ends() {
    let _turn = TURN.lock().await;
    all_off();
    let backends = Backends::new();
    let t = backends
        .mesh_with(&[
            ("ADMIN_EMAIL", ADMIN.0),
            ("ADMIN_PASSWORD", ADMIN.1),
            ("RATE_LIMIT_RPS", "0"),
            ("SEED_DEMO", "false"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
        ])
        .await;
    let (admin, _) = t.login(ADMIN.0, ADMIN.1).await;
    let created = t
        .post(
            "/api/v1/products",
            Some(&admin),
            json!({"sku": format!("FLAG-{}", uuid::Uuid::now_v7().simple()), "name": "Mug",
                   "category": "kitchen", "price": {"amount": 900, "currency": "USD"}, "stock": 40}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let mug = created.body["id"].clone();
    let mug_path = format!("/api/v1/products/{}", mug.as_str().unwrap());
    let stores = Stores::open(&t.config).await.expect("stores open");
    let baseline = stores.baseline().await.expect("baseline");
    let (_, customer, _) = t.customer().await;
    let pay_path = |order: &str| format!("/api/v1/orders/{order}/payment");
    let status_of = |order: String| {
        let t = &t;
        let customer = &customer;
        async move {
            t.get(&format!("/api/v1/orders/{order}"), Some(customer))
                .await
                .body["status"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
    };

    // Declines: a good card is declined while the flag is on; the order
    // can be paid once it is off.
    only(platform::flags::PAYMENT_DECLINE_RATE, json!(1));
    let declined = t.order(&customer, &mug, 1).await;
    let payment = t.pay(&customer, &declined, "4242424242424242").await;
    assert_eq!(payment["status"], "FAILED", "{payment}");
    assert_eq!(status_of(declined.clone()).await, "PAYMENT_FAILED");
    all_off();
    let payment = t.pay(&customer, &declined, "4242424242424242").await;
    assert_eq!(payment["status"], "SUCCEEDED", "{payment}");
    assert_eq!(status_of(declined.clone()).await, "PAID");

    // Provider outage: 503 with Retry-After; the same key succeeds after.
    only(platform::flags::PAYMENT_OUTAGE, json!(true));
    let outage = t.order(&customer, &mug, 1).await;
    let key = uuid::Uuid::now_v7().to_string();
    let refused = t
        .post_keyed(
            &pay_path(&outage),
            &customer,
            &key,
            common::card("4242424242424242"),
        )
        .await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.header("retry-after").is_some());
    all_off();
    // The charge made during the outage has no known outcome: payment-svc
    // asks the provider about it after 30 s (reconciliation), and the same
    // key answers once it knows. Whatever it learnt, the order can then be
    // paid, once.
    let answered = common::careful::send(
        &t.http,
        reqwest::Method::POST,
        &t.url(&pay_path(&outage)),
        Some(&customer),
        Some(&key),
        Some(&common::card("4242424242424242")),
        Duration::from_secs(90),
        |_| {},
    )
    .await;
    assert!(
        matches!(answered.status, 200 | 201),
        "{} {}",
        answered.status,
        answered.body
    );
    if answered.body["status"] != "SUCCEEDED" {
        assert_eq!(answered.body["status"], "FAILED", "{}", answered.body);
        let payment = t.pay(&customer, &outage, "4242424242424242").await;
        assert_eq!(payment["status"], "SUCCEEDED", "{payment}");
    }
    assert_eq!(status_of(outage.clone()).await, "PAID");

    // Carrier outage: the paid order's label waits for the carrier.
    let before = injected(&t, platform::flags::CARRIER_OUTAGE).await;
    only(platform::flags::CARRIER_OUTAGE, json!(true));
    let shipped = t.order(&customer, &mug, 1).await;
    let payment = t.pay(&customer, &shipped, "4242424242424242").await;
    assert_eq!(payment["status"], "SUCCEEDED", "{payment}");
    until_injected(&t, platform::flags::CARRIER_OUTAGE, before).await;
    let shipment = t
        .get(
            &format!("/api/v1/orders/{shipped}/shipment"),
            Some(&customer),
        )
        .await;
    assert_eq!(shipment.body["status"], "PENDING", "{}", shipment.body);
    all_off();
    common::eventually(
        &t,
        &format!("/api/v1/orders/{shipped}/shipment"),
        &customer,
        "the label once the carrier is back",
        |s| s["status"] == "LABEL_CREATED",
    )
    .await;

    // A slow provider: the payment takes that long, and succeeds; a slow
    // carrier: the label comes, late.
    let before = injected(&t, platform::flags::CARRIER_LATENCY).await;
    these(&[
        (platform::flags::PAYMENT_LATENCY, json!(600)),
        (platform::flags::CARRIER_LATENCY, json!(800)),
    ]);
    let slow = t.order(&customer, &mug, 1).await;
    let started = Instant::now();
    let payment = t.pay(&customer, &slow, "4242424242424242").await;
    assert_eq!(payment["status"], "SUCCEEDED", "{payment}");
    assert!(started.elapsed() >= Duration::from_millis(600));
    common::eventually(
        &t,
        &format!("/api/v1/orders/{slow}/shipment"),
        &customer,
        "the label from a slow carrier",
        |s| s["status"] == "LABEL_CREATED",
    )
    .await;
    assert!(injected(&t, platform::flags::CARRIER_LATENCY).await > before);
    all_off();

    // A service that fails every call, then one that is slow.
    only(
        platform::flags::SERVICE_ERROR_RATE,
        json!({"product-svc": 1}),
    );
    let r = t.get(&mug_path, None).await;
    assert_eq!(r.status, 503, "{}", r.body);
    all_off();
    // Once the gateway's breaker lets a trial call through.
    common::eventually(&t, &mug_path, &customer, "product reads back", |p| {
        p["id"] == mug
    })
    .await;
    only(
        platform::flags::SERVICE_LATENCY,
        json!({"product-svc": 400}),
    );
    let started = Instant::now();
    let r = t.get(&mug_path, None).await;
    assert_eq!(r.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(400));
    only(platform::flags::STORE_LATENCY, json!({"order-svc": 300}));
    let started = Instant::now();
    assert_eq!(status_of(shipped.clone()).await, "PAID");
    assert!(started.elapsed() >= Duration::from_millis(300));

    // The cache is down: reads still answer, from the store.
    let before = injected(&t, platform::flags::CACHE_OUTAGE).await;
    only(platform::flags::CACHE_OUTAGE, json!(true));
    let r = t.get(&mug_path, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(injected(&t, platform::flags::CACHE_OUTAGE).await > before);
    all_off();

    // notification-svc fails every delivery: the payment's notice comes
    // once it stops, exactly once.
    let before = injected(&t, platform::flags::EVENT_FAILURE_RATE).await;
    only(
        platform::flags::EVENT_FAILURE_RATE,
        json!({"notification-svc": 1}),
    );
    let noticed = t.order(&customer, &mug, 1).await;
    let payment = t.pay(&customer, &noticed, "4242424242424242").await;
    assert_eq!(payment["status"], "SUCCEEDED", "{payment}");
    until_injected(&t, platform::flags::EVENT_FAILURE_RATE, before).await;
    all_off();
    let notices = |feed: &serde_json::Value| {
        feed["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["kind"] == "payment.processed")
            .count()
    };
    let paid_before = notices(&t.get("/api/v1/notifications", Some(&customer)).await.body);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let feed = t.get("/api/v1/notifications", Some(&customer)).await.body;
        // Four payments succeeded before this one, each told once.
        if notices(&feed) == 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the payment's notice never came ({paid_before} of 5): {feed}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Everything settles with every invariant whole.
    let report = settle_and_check(
        &stores,
        &Expect {
            baseline,
            notifications: true,
            ..Default::default()
        },
        Duration::from_secs(60),
    )
    .await;
    report.assert_clean("after every fault was on and off");
    t.shutdown().await;
    backends.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_read_the_flags_and_switch_them_only_where_writable() {
    let _turn = TURN.lock().await;
    let dir = std::env::temp_dir().join(format!("flags-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("flags.json");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/flags/flags.json"),
        &file,
    )
    .unwrap();
    platform::flags::load(&file).unwrap();
    let vars = [
        ("ADMIN_EMAIL", ADMIN.0),
        ("ADMIN_PASSWORD", ADMIN.1),
        ("RATE_LIMIT_RPS", "0"),
        ("SEED_DEMO", "false"),
        ("FLAGS_FILE", file.to_str().unwrap()),
    ];
    let t = common::TestMesh::start_with(&vars).await;
    let (admin, _) = t.login(ADMIN.0, ADMIN.1).await;
    let (_, customer, _) = t.customer().await;
    let list = t.get("/api/v1/admin/flags", Some(&admin)).await;
    assert_eq!(list.status, 200, "{}", list.body);
    let flags = list.body["flags"].as_array().unwrap();
    assert_eq!(flags.len(), platform::flags::FLAGS.len());
    assert!(
        flags
            .iter()
            .all(|f| f["on"] == false && f["variant"] == "off")
    );
    assert!(
        flags
            .iter()
            .all(|f| f["description"].as_str().unwrap().contains("Kept by")),
        "every flag says what keeps its invariant"
    );
    assert_eq!(list.body["writable"], false);
    assert_eq!(
        t.get("/api/v1/admin/flags", Some(&customer)).await.status,
        403
    );
    let change = json!({"variant": "on"});
    let refused = t
        .put(
            "/api/v1/admin/flags/cacheOutage",
            Some(&admin),
            change.clone(),
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    t.shutdown().await;

    // Writable (development): the file changes and the flag is in force.
    let mut vars = vars.to_vec();
    vars.push(("FLAGS_WRITABLE", "true"));
    let t = common::TestMesh::start_with(&vars).await;
    let (admin, _) = t.login(ADMIN.0, ADMIN.1).await;
    let switched = t
        .put("/api/v1/admin/flags/cacheOutage", Some(&admin), change)
        .await;
    assert_eq!(switched.status, 200, "{}", switched.body);
    assert_eq!(switched.body["on"], true);
    let text = std::fs::read_to_string(&file).unwrap();
    let again = platform::flags::Flags::parse(&text).unwrap();
    assert!(
        again
            .all()
            .iter()
            .any(|(f, s)| f.key == "cacheOutage" && s.is_some_and(|s| s.variant == "on"))
    );
    let unknown = t
        .put(
            "/api/v1/admin/flags/cacheOutage",
            Some(&admin),
            json!({"variant": "sometimes"}),
        )
        .await;
    assert_eq!(unknown.status, 422, "{}", unknown.body);
    let missing = t
        .put(
            "/api/v1/admin/flags/noSuchFlag",
            Some(&admin),
            json!({"variant": "on"}),
        )
        .await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    all_off();
    t.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_flags_file_stops_the_process_with_one_line_naming_it() {
    let dir = std::env::temp_dir().join(format!("flags-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, content) in [
        ("broken.json", "{\"flags\": "),
        (
            "unknown.json",
            r#"{"flags": {"noSuchFlag": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}}}"#,
        ),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, content).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shopmesh"))
            .env("FLAGS_FILE", &file)
            .env("HTTP_ADDR", "127.0.0.1:0")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{name}: the process kept running with a bad flags file");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        use std::io::Read as _;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(!status.success(), "{name}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{name}: {stderr}");
        assert!(
            lines[0].contains(file.to_str().unwrap()),
            "{name}: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
