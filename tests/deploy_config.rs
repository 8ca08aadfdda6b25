//! Every environment variable the deployment files set for shopmesh is one
//! the code reads: a misspelt or renamed variable in `.env.example`,
//! compose or the Kubernetes manifests is silently ignored otherwise.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path, ext: &[&str], out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, ext, out);
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| ext.iter().any(|e| n.ends_with(e)))
        {
            out.push(path);
        }
    }
}

/// Whether `s` looks like an environment variable name.
fn is_var(s: &str) -> bool {
    s.len() > 1
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Variables a deployment file sets: `NAME=` (dotenv, commented or not),
/// `NAME: value` (compose environment, ConfigMap and Secret data), and
/// `- name: NAME` (a container's env).
fn variables(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim_start().trim_start_matches('#').trim_start();
        let candidate = if let Some(rest) = line.strip_prefix("- name:") {
            rest.trim()
        } else if let Some((key, _)) = line.split_once('=') {
            key.trim()
        } else if let Some((key, _)) = line.split_once(':') {
            key.trim()
        } else {
            continue;
        };
        if is_var(candidate) {
            out.insert(candidate.to_string());
        }
    }
    out
}

/// Read by something other than shopmesh's code, each with its reader.
const EXTERNAL: &[&str] = &[
    // compose: image tag, the Dockerfile's build argument, and the
    // postgres image's own settings.
    "TAG",
    "BIN",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "PGDATA",
    // Jaeger all-in-one, Grafana.
    "COLLECTOR_OTLP_ENABLED",
    "GF_AUTH_ANONYMOUS_ENABLED",
    "GF_AUTH_ANONYMOUS_ORG_ROLE",
    "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH",
    // The OpenTelemetry SDK reads the resource attributes itself; the pod's
    // name and namespace only feed them.
    "OTEL_RESOURCE_ATTRIBUTES",
    "POD_NAME",
    "POD_NAMESPACE",
    // media-svc's bucket: object_store reads the AWS credentials and region
    // (AmazonS3Builder::from_env); MinIO (compose, the dev overlay) its
    // root user.
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
];

#[test]
fn every_variable_the_deployment_sets_is_read_by_the_code() {
    let mut deploy_files = Vec::new();
    files_under(
        &root().join("deploy"),
        &[".yaml", ".yml"],
        &mut deploy_files,
    );
    deploy_files.push(root().join("deploy/.env.example"));
    let mut set = BTreeSet::new();
    for file in &deploy_files {
        let text = std::fs::read_to_string(file).unwrap();
        // Only files that configure shopmesh's processes.
        if file.ends_with(".env.example")
            || text.contains("shopmesh-config")
            || text.contains("x-common-env")
            || text.contains("kind: Secret")
        {
            set.extend(variables(&text));
        }
    }
    assert!(
        set.contains("DATABASE_URL") && set.contains("STORE_CURSOR_KEY"),
        "the files were read: {set:?}"
    );

    let mut sources = Vec::new();
    for dir in std::fs::read_dir(root()).unwrap().flatten() {
        let src = dir.path().join("src");
        if src.is_dir() {
            files_under(&src, &[".rs"], &mut sources);
        }
    }
    files_under(&root().join("src"), &[".rs"], &mut sources);
    let code: String = sources
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();

    // Read by the NATS server (its users' passwords in nats.conf), and
    // compose's own variables that become a component's MESH_KEY.
    let nats_conf = std::fs::read_to_string(root().join("deploy/nats/nats.conf")).unwrap();
    let compose = std::fs::read_to_string(root().join("deploy/compose.yaml")).unwrap();
    let read_elsewhere = |v: &str| {
        (v.starts_with("NATS_PASSWORD_") && nats_conf.contains(&format!("${v}")))
            || (v.ends_with("_MESH_KEY") && compose.contains(&format!("MESH_KEY: ${{{v}:-")))
    };
    let unread: Vec<&String> = set
        .iter()
        .filter(|v| !EXTERNAL.contains(&v.as_str()))
        .filter(|v| !read_elsewhere(v))
        .filter(|v| !code.contains(&format!("\"{v}\"")))
        .collect();
    assert!(
        unread.is_empty(),
        "set in deploy/ but read nowhere in the code: {unread:?}"
    );
}

/// The program to run, from `$VAR` or the PATH, if it can be run.
fn tool(var: &str, name: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(name));
    std::process::Command::new(&path)
        .arg("--help")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()
        .map(|_| path)
}

#[test]
fn every_overlay_renders_and_validates_strictly() {
    let (Some(kubectl), Some(validate)) = (
        tool("KUBECTL", "kubectl"),
        tool("KUBERNETES_VALIDATE", "kubernetes-validate"),
    ) else {
        eprintln!(
            "kubectl (for kustomize) or kubernetes-validate (pip install kubernetes-validate) is missing; skipping"
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("shopmesh-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for overlay in ["dev", "prod"] {
        let rendered = std::process::Command::new(&kubectl)
            .arg("kustomize")
            .arg(root().join("deploy/k8s/overlays").join(overlay))
            .output()
            .unwrap();
        assert!(
            rendered.status.success(),
            "{overlay} does not render: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let text = String::from_utf8(rendered.stdout).unwrap();
        assert!(
            text.contains("kind: Deployment"),
            "{overlay} renders workloads"
        );
        hpa_targets_name_no_replicas(overlay, &text);
        let file = dir.join(format!("{overlay}.yaml"));
        std::fs::write(&file, &text).unwrap();
        for version in ["1.31.0", "1.33.0"] {
            let checked = std::process::Command::new(&validate)
                .args(["--strict", "--quiet", "-k", version])
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                checked.status.success(),
                "{overlay} against Kubernetes {version}: {}{}",
                String::from_utf8_lossy(&checked.stdout),
                String::from_utf8_lossy(&checked.stderr)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Deployment that an HPA scales must not name `replicas`: every apply
/// would reset the count the HPA chose.
fn hpa_targets_name_no_replicas(overlay: &str, rendered: &str) {
    let documents: Vec<&str> = rendered.split("\n---\n").collect();
    let field = |doc: &str, key: &str| {
        doc.lines()
            .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string()))
    };
    let mut targets = Vec::new();
    for doc in &documents {
        if doc.contains("kind: HorizontalPodAutoscaler") {
            let target = doc.split("scaleTargetRef:").nth(1).expect("a scale target");
            targets.push(field(target, "name:").expect("a target name"));
        }
    }
    for target in &targets {
        let deployment = documents
            .iter()
            .find(|doc| {
                doc.contains("kind: Deployment") && doc.contains(&format!("\n  name: {target}\n"))
            })
            .unwrap_or_else(|| panic!("{overlay}: the HPA's Deployment {target} exists"));
        assert!(
            !deployment.contains("\n  replicas:"),
            "{overlay}: {target} is scaled by an HPA and must not set replicas"
        );
    }
    if overlay == "prod" {
        assert!(!targets.is_empty(), "prod scales with HPAs");
    }
}

/// The services each component calls, read from its code: every peer it
/// names (`ServiceId::…` other than its own), and user-svc for anyone
/// that verifies access tokens against its JWKS (`MeshAuth::from_config`).
fn calls_in_code() -> Vec<(String, String)> {
    let services = [
        ("Product", "product-svc"),
        ("Order", "order-svc"),
        ("Payment", "payment-svc"),
        ("Recommendation", "recommendation-svc"),
        ("User", "user-svc"),
        ("Shipping", "shipping-svc"),
        ("Notification", "notification-svc"),
        ("Cart", "cart-svc"),
        ("Media", "media-svc"),
    ];
    let mut edges = Vec::new();
    for (_, caller) in services {
        let mut sources = Vec::new();
        files_under(&root().join(caller).join("src"), &[".rs"], &mut sources);
        let code: String = sources
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
            .lines()
            .filter(|l| !l.contains("pub const SERVICE"))
            .collect::<Vec<_>>()
            .join("\n");
        for (variant, callee) in services {
            let named = code.contains(&format!("ServiceId::{variant})"))
                || code.contains(&format!("ServiceId::{variant},"));
            let verifies_tokens = callee == "user-svc" && code.contains("MeshAuth::from_config");
            if callee != caller && (named || verifies_tokens) {
                edges.push((caller.to_string(), callee.to_string()));
            }
        }
    }
    for (_, callee) in services {
        edges.push(("gateway".to_string(), callee.to_string()));
    }
    edges
}

#[test]
fn network_policies_let_every_call_the_code_makes_through() {
    let policies =
        std::fs::read_to_string(root().join("deploy/k8s/base/networkpolicies.yaml")).unwrap();
    let allowed_callers = |callee: &str| -> Vec<String> {
        let doc = policies
            .split("\n---\n")
            .find(|d| d.contains(&format!("name: allow-{callee}-grpc")))
            .unwrap_or_else(|| panic!("a policy for {callee}"));
        let from = &doc[doc.find("- from:").expect("ingress from")..];
        from.lines()
            .filter_map(|l| l.trim().strip_prefix("app.kubernetes.io/name:"))
            .map(|n| n.trim().to_string())
            .collect()
    };
    let edges = calls_in_code();
    assert!(
        edges.contains(&("order-svc".into(), "payment-svc".into()))
            && edges.contains(&("product-svc".into(), "user-svc".into())),
        "the code's calls were found: {edges:?}"
    );
    let blocked: Vec<String> = edges
        .iter()
        .filter(|(caller, callee)| !allowed_callers(callee).contains(caller))
        .map(|(caller, callee)| format!("{caller} -> {callee}"))
        .collect();
    assert!(
        blocked.is_empty(),
        "calls the NetworkPolicies block: {blocked:?}"
    );
}
