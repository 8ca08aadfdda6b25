//! The OpenAPI document is the contract, checked against the running mesh:
//! it is a valid OpenAPI document (openapi-spec-validator), and a bounded
//! schemathesis run over every operation (but the notification stream), as
//! an admin, finds no server error and no answer other than the document
//! says (status, content type, body schema). Both tools come from PyPI; `.ci/run` installs them and
//! names them in `OPENAPI_SPEC_VALIDATOR` and `SCHEMATHESIS`. Without them
//! the tests say they skipped.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestMesh;

const ADMIN_EMAIL: &str = "contract-admin@example.com";
const ADMIN_PASSWORD: &str = "contract-admin-password";

/// Test cases per operation and phase: enough to reach every operation's
/// checks, few enough to finish in about half a minute.
const MAX_EXAMPLES: &str = "30";
/// Fixed, so a failure can be reproduced with the command the test prints.
const SEED: &str = "20260101";
/// The whole schemathesis run must end within this.
const TIME_BOUND: Duration = Duration::from_secs(150);

/// What is checked of every answer.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

/// The program to run, from `$VAR` or the PATH, if it runs (a pyenv shim
/// of a tool another Python has is on the PATH but fails).
fn tool(var: &str, name: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(name));
    Command::new(&path)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .filter(|status| status.success())
        .map(|_| path)
}

fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shopmesh-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn mesh() -> TestMesh {
    TestMesh::start_with(&[
        ("ADMIN_EMAIL", ADMIN_EMAIL),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD),
        // The fuzzer sends far more than a client's share.
        ("RATE_LIMIT_RPS", "0"),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_valid_openapi() {
    let Some(validator) = tool("OPENAPI_SPEC_VALIDATOR", "openapi-spec-validator") else {
        eprintln!(
            "openapi-spec-validator is missing (pip install openapi-spec-validator); skipping"
        );
        return;
    };
    let t = mesh().await;
    let document = t.text("/openapi.json").await;
    let dir = scratch_dir("openapi");
    let file = dir.join("openapi.json");
    std::fs::write(&file, &document).unwrap();
    let mut command = Command::new(&validator);
    command.arg(&file).current_dir(&dir);
    let (status, output) = common::run_bounded(command, &dir, Duration::from_secs(60)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{} {} finds the document invalid:\n{output}",
        validator.display(),
        file.display()
    );
    std::fs::remove_dir_all(&dir).ok();
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_as_the_document_says() {
    let Some(schemathesis) = tool("SCHEMATHESIS", "schemathesis") else {
        eprintln!("schemathesis is missing (pip install schemathesis); skipping");
        return;
    };
    let t = mesh().await;
    // An admin reaches every operation, the admin ones included.
    let (token, _) = t.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let gateway = t.mesh.gateway_url();
    let dir = scratch_dir("schemathesis");
    let args = [
        "run".to_string(),
        format!("{gateway}/openapi.json"),
        format!("--url={gateway}"),
        format!("--checks={CHECKS}"),
        format!("--max-examples={MAX_EXAMPLES}"),
        format!("--seed={SEED}"),
        "--request-timeout=10".to_string(),
        // An event stream is read until the request times out: each case
        // would cost the whole timeout, for an operation without inputs.
        "--exclude-path=/api/v1/notifications/stream".to_string(),
        // Nothing kept between runs, nothing written in the working tree.
        "--generation-database=none".to_string(),
        "--no-color".to_string(),
    ];
    let mut command = Command::new(&schemathesis);
    command
        .args(&args)
        .arg("--header")
        .arg(format!("Authorization: Bearer {token}"))
        .current_dir(&dir);
    let started = Instant::now();
    let (status, output) = common::run_bounded(command, &dir, TIME_BOUND).await;
    let reproduce = format!(
        "{} {} --header 'Authorization: Bearer <an admin token>'",
        schemathesis.display(),
        args.join(" ")
    );
    let Some(status) = status else {
        panic!("schemathesis did not finish within {TIME_BOUND:?}:\n{output}\nran: {reproduce}");
    };
    assert!(
        status.success(),
        "schemathesis found answers the document does not describe ({status}):\n{output}\nran: {reproduce}"
    );
    eprintln!(
        "schemathesis passed in {:.0?}: {}",
        started.elapsed(),
        output
            .lines()
            .rev()
            .find(|l| l.contains("generated"))
            .unwrap_or_default()
            .trim()
    );
    std::fs::remove_dir_all(&dir).ok();
    t.shutdown().await;
}
