//! The pages in a real browser: `tests/browser/journeys.mjs` drives
//! Debian's chromium with playwright-core against a shop started here,
//! and checks every page it visits with axe-core. It writes screenshots
//! of the main pages to `docs/screenshots` (the README shows them).
//!
//! Needs `BROWSER_TOOLS` (a directory where `npm ci` installed
//! `tests/browser/package.json`) and `/usr/bin/chromium`; `.ci/run`
//! installs both. Without them the test says it skipped.

mod common;

use std::time::Duration;

use common::{TestMesh, WEBHOOK_SECRET};
use serde_json::json;

const ADMIN_EMAIL: &str = "admin@example.com";
const ADMIN_PASSWORD: &str = "admin-password";
/// The whole run, browser start to close.
const LIMIT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journeys_in_chromium_with_no_serious_accessibility_violations() {
    let Some(tools) = std::env::var_os("BROWSER_TOOLS") else {
        eprintln!(
            "skipped: BROWSER_TOOLS is not set (bash .ci/run installs playwright-core and axe-core)"
        );
        return;
    };
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "BROWSER_TOOLS is set but /usr/bin/chromium is missing"
    );
    let t = TestMesh::start_with(&[
        ("ADMIN_EMAIL", ADMIN_EMAIL),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("RATE_LIMIT_RPS", "0"),
        ("SEED_DEMO", "false"),
        ("SHIPPING_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ])
    .await;
    let (admin, _) = t.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let mut ids = serde_json::Map::new();
    for (key, name, cents) in [("mug", "Enamel mug", 1250), ("lamp", "Desk lamp", 3999)] {
        let r = t
            .post(
                "/api/v1/products",
                Some(&admin),
                json!({"sku": format!("SKU-{key}"), "name": name, "category": "Home",
                       "description": format!("A {name} for the browser test."),
                       "price": {"amount": cents, "currency": "USD"}, "stock": 40}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        ids.insert(key.into(), r.body["id"].clone());
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = std::process::Command::new("node")
        .arg(root.join("tests/browser/journeys.mjs"))
        .env("BROWSER_TOOLS", &tools)
        .env("BASE_URL", t.mesh.gateway_url())
        .env("ADMIN_EMAIL", ADMIN_EMAIL)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("PRODUCTS", serde_json::Value::Object(ids).to_string())
        .env("IMAGE", root.join("deploy/desk-plant.png"))
        .env("SCREENSHOTS", root.join("docs/screenshots"))
        .spawn()
        .expect("node runs");
    let deadline = std::time::Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for node") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the browser journeys did not finish within {LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        status.success(),
        "the browser journeys failed (their output is above): {status}"
    );
    t.shutdown().await;
}
