//! The Postman collection `deploy/postman/shopmesh.postman_collection.json`
//! against a whole mesh: it must be exactly what
//! `deploy/postman/generate.mjs` makes of the mesh's own `/openapi.json`,
//! and newman must run it without a failed check: the folder Walkthrough,
//! then every folder whose requests all check their status.
//!
//! Needs `NEWMAN` (newman installed from `tests/postman/package.json`;
//! `scripts/test-env.sh` installs it) and `node`. Without `NEWMAN` the
//! test says it skipped, except in CI.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::TestMesh;
use serde_json::Value;

const COLLECTION: &str = "deploy/postman/shopmesh.postman_collection.json";
const GENERATOR: &str = "deploy/postman/generate.mjs";
const WALKTHROUGH: &str = "Walkthrough";
/// The whole newman run must end within this.
const LIMIT: Duration = Duration::from_secs(180);

/// The initial value of a collection variable.
fn variable(collection: &Value, name: &str) -> String {
    collection["variable"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["key"] == name)
        .and_then(|v| v["value"].as_str())
        .unwrap_or_else(|| panic!("{COLLECTION} has no variable {name}"))
        .to_string()
}

/// Whether every request under `item` has a test script.
fn all_checked(item: &Value) -> bool {
    match item["item"].as_array() {
        Some(children) => children.iter().all(all_checked),
        None => item["event"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["listen"] == "test"),
    }
}

/// The first line where `a` and `b` differ, for the message.
fn first_difference(a: &str, b: &str) -> String {
    let (mut left, mut right) = (a.lines(), b.lines());
    for number in 1.. {
        match (left.next(), right.next()) {
            (None, None) => break,
            (l, r) if l == r => continue,
            (l, r) => {
                return format!(
                    "line {number}:\n  committed: {}\n  generated: {}",
                    l.unwrap_or("<end>"),
                    r.unwrap_or("<end>")
                );
            }
        }
    }
    "they differ in line ends".into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postman_collection_is_generated_from_the_api_and_newman_runs_it() {
    let Some(newman) = std::env::var_os("NEWMAN").map(PathBuf::from) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "NEWMAN is not set in CI (scripts/test-env.sh installs newman)"
        );
        eprintln!("skipped: NEWMAN is not set (bash scripts/test installs newman)");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed =
        std::fs::read_to_string(root.join(COLLECTION)).expect("the collection is readable");
    let collection: Value = serde_json::from_str(&committed).expect("the collection is JSON");
    // The mesh gets the credentials and secret the collection starts with,
    // as tests/http_collection.rs does for deploy/shopmesh.http.
    let (email, password, secret) = (
        variable(&collection, "adminEmail"),
        variable(&collection, "adminPassword"),
        variable(&collection, "webhookSecret"),
    );
    let t = TestMesh::start_with(&[
        ("ADMIN_EMAIL", &email),
        ("ADMIN_PASSWORD", &password),
        ("SHIPPING_WEBHOOK_SECRET", &secret),
    ])
    .await;
    let dir = std::env::temp_dir().join(format!("shopmesh-postman-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // (a) The committed collection is what the generator makes of this API.
    let document = dir.join("openapi.json");
    std::fs::write(&document, t.text("/openapi.json").await).unwrap();
    let generated = dir.join("collection.json");
    let mut node = Command::new("node");
    node.arg(root.join(GENERATOR))
        .arg(&document)
        .arg(&generated)
        .current_dir(root);
    let (status, output) = common::run_bounded(node, &dir, Duration::from_secs(60)).await;
    if !status.is_some_and(|s| s.success()) {
        t.shutdown().await;
        panic!("node {GENERATOR} failed ({status:?}):\n{output}");
    }
    let fresh = std::fs::read_to_string(&generated).expect("the generator wrote the collection");
    if fresh != committed {
        t.shutdown().await;
        panic!(
            "{COLLECTION} is not what {GENERATOR} makes of the current API ({}); regenerate it \
             with a running gateway (`cargo run`):\n  curl -s http://127.0.0.1:8080/openapi.json \
             > deploy/postman/openapi.json && node {GENERATOR} deploy/postman/openapi.json",
            first_difference(&committed, &fresh)
        );
    }

    // (b) newman runs the Walkthrough, then every folder it can run
    // unattended (an event stream, for one, never ends).
    let folders: Vec<&Value> = collection["item"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(
        folders.first().and_then(|f| f["name"].as_str()),
        Some(WALKTHROUGH),
        "the first folder is the Walkthrough"
    );
    let (runs, left): (Vec<&Value>, Vec<&Value>) =
        folders.into_iter().partition(|f| all_checked(f));
    let names = |folders: &[&Value]| -> Vec<String> {
        folders
            .iter()
            .map(|f| f["name"].as_str().expect("a folder has a name").to_string())
            .collect()
    };
    let (runs, left) = (names(&runs), names(&left));
    assert!(
        runs.first().map(String::as_str) == Some(WALKTHROUGH),
        "every request of the Walkthrough checks its status"
    );
    eprintln!("newman runs {runs:?}; left out (a request there has no check): {left:?}");
    let mut command = Command::new(&newman);
    command
        .arg("run")
        .arg(root.join(COLLECTION))
        .arg("--env-var")
        .arg(format!("baseUrl={}", t.mesh.gateway_url()))
        .arg("--working-dir")
        .arg(root.join("deploy/postman"))
        .args(["--timeout-request", "30000", "--color", "off", "--bail"])
        .current_dir(root);
    for folder in &runs {
        command.arg("--folder").arg(folder);
    }
    let started = Instant::now();
    let (status, output) = common::run_bounded(command, &dir, LIMIT).await;
    eprintln!("{output}\nnewman took {:?}", started.elapsed());
    t.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
    match status {
        None => panic!("newman did not finish within {LIMIT:?} (its output is above)"),
        Some(status) => assert!(
            status.success(),
            "newman failed (its output is above): {status}"
        ),
    }
}
