//! The observability configuration shipped in deploy/observability: alert
//! rules Prometheus accepts, and a dashboard and rules that only name
//! metrics the code exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/observability")
        .join(file)
}

/// Metric names in `text`: tokens of the families' prefixes, with the
/// histogram suffixes removed.
fn metric_names(text: &str) -> BTreeSet<String> {
    const PREFIXES: &[&str] = &["rpc_", "http_", "shop_", "messaging_", "outbox_", "db_"];
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|token| PREFIXES.iter().any(|p| token.starts_with(p)))
        // Labels that share a prefix.
        .filter(|token| !matches!(*token, "rpc_service" | "rpc_method" | "db_system"))
        .map(|token| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| token.strip_suffix(suffix))
                .unwrap_or(token)
                .to_string()
        })
        .collect()
}

fn exported() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = platform::metrics::family_names().into_iter().collect();
    // The gateway's own families.
    let gateway = gateway::metrics::Metrics::new();
    names.extend(gateway.family_names());
    names
}

#[test]
fn the_dashboard_and_the_alert_rules_use_only_exported_metrics() {
    let exported = exported();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/shopmesh-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut exprs = String::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push_str(target["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    let used = metric_names(&exprs);
    assert!(used.len() >= 10, "the dashboard shows the mesh: {used:?}");
    let unknown: Vec<_> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "dashboard names unknown metrics {unknown:?}"
    );

    let rules = std::fs::read_to_string(deploy("alerts.yml")).unwrap();
    let used = metric_names(&rules);
    for needed in [
        "rpc_server_duration_seconds",
        "messaging_consumed_total",
        "outbox_oldest_event_age_seconds",
        "messaging_consumer_pending",
    ] {
        assert!(used.contains(needed), "an alert on {needed}");
    }
    let unknown: Vec<_> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "alert rules name unknown metrics {unknown:?}"
    );
}

#[test]
fn prometheus_accepts_the_alert_rules() {
    let Ok(output) = std::process::Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(deploy("alerts.yml"))
        .output()
    else {
        eprintln!("promtool is not installed (Debian: apt-get install prometheus); skipping");
        return;
    };
    assert!(
        output.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
