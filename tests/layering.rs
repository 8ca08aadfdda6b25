//! The code's layering, checked from its source: modules that must not
//! import each other both ways, no glob re-exports or glob imports in
//! platform, one clock, and one way for a test to wait.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                if p.file_name()
                    .is_some_and(|n| n != "target" && n != "node_modules")
                {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|e| e == "rs") {
                found.push(p);
            }
        }
    }
    found.sort();
    found
}

/// The code of a file without its comment lines.
fn code(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether the module in `file` names module `target` (a `crate::` path,
/// or a sibling through `super::`).
fn names(file: &str, target: &str) -> bool {
    let text = code(&read(file));
    let sibling = target.rsplit("::").next().unwrap();
    text.contains(&format!("crate::{target}")) || text.contains(&format!("super::{sibling}"))
}

#[test]
fn modules_import_one_way() {
    // (file of module a, its path from the crate root, file of module b, its path)
    let pairs = [
        (
            "gateway/src/routes/orders.rs",
            "routes::orders",
            "gateway/src/routes/payments.rs",
            "routes::payments",
        ),
        (
            "gateway/src/routes/products.rs",
            "routes::products",
            "gateway/src/routes/recommendations.rs",
            "routes::recommendations",
        ),
        (
            "notification-svc/src/api.rs",
            "api",
            "notification-svc/src/deliveries/mod.rs",
            "deliveries",
        ),
        (
            "order-svc/src/api.rs",
            "api",
            "order-svc/src/saga/mod.rs",
            "saga",
        ),
        (
            "platform/src/config/mod.rs",
            "config",
            "platform/src/store/mod.rs",
            "store",
        ),
        (
            "platform/src/store/mod.rs",
            "store",
            "platform/src/telemetry.rs",
            "telemetry",
        ),
    ];
    let mut both_ways = Vec::new();
    for (file_a, a, file_b, b) in pairs {
        // A module's children count as the module.
        let with_children = |file: &str| -> Vec<String> {
            let path = root().join(file);
            if path.ends_with("mod.rs") {
                sources(path.parent().unwrap())
                    .iter()
                    .map(|p| {
                        p.strip_prefix(root())
                            .unwrap()
                            .to_string_lossy()
                            .into_owned()
                    })
                    .collect()
            } else {
                vec![file.to_string()]
            }
        };
        let a_to_b = with_children(file_a).iter().any(|f| names(f, b));
        let b_to_a = with_children(file_b).iter().any(|f| names(f, a));
        if a_to_b && b_to_a {
            both_ways.push(format!("{a} <-> {b}"));
        }
    }
    // The config module's own sections, and the saga's, must not reach back.
    for file in sources(&root().join("platform/src/config")) {
        let text = code(&std::fs::read_to_string(&file).unwrap());
        assert!(
            !text.contains("crate::store") && !text.contains("crate::telemetry"),
            "{} reaches into the store or telemetry",
            file.display()
        );
    }
    for file in sources(&root().join("order-svc/src/saga")) {
        let text = code(&std::fs::read_to_string(&file).unwrap());
        assert!(
            !text.contains("crate::api"),
            "{} imports the gRPC face",
            file.display()
        );
    }
    assert!(
        both_ways.is_empty(),
        "modules that import each other: {both_ways:?}"
    );
}

#[test]
fn platform_names_what_each_module_uses() {
    let mut globs = Vec::new();
    for file in sources(&root().join("platform/src")) {
        for (n, line) in std::fs::read_to_string(&file).unwrap().lines().enumerate() {
            let t = line.trim();
            if t == "use super::*;" || (t.starts_with("pub use ") && t.ends_with("::*;")) {
                globs.push(format!("{}:{}", file.display(), n + 1));
            }
        }
    }
    assert!(globs.is_empty(), "glob imports in platform: {globs:?}");
}

#[test]
fn one_clock_and_one_way_to_wait() {
    let mut clocks = Vec::new();
    let mut waits = Vec::new();
    let dirs = std::fs::read_dir(root())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.join("Cargo.toml").exists())
        .chain([root().join("tests"), root().join("src")]);
    for dir in dirs {
        for file in sources(&dir) {
            let rel = file
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let text = code(&std::fs::read_to_string(&file).unwrap());
            for (n, line) in text.lines().enumerate() {
                let t = line.trim_start();
                let defines = |signature: &str| {
                    t.contains(&format!("fn {signature}"))
                        && (t.starts_with("fn ") || t.starts_with("pub") || t.starts_with("async"))
                };
                // A free function that reads the clock takes nothing.
                if [
                    "now() ",
                    "now_ms() ",
                    "now_millis() ",
                    "unix_now() ",
                    "unix_now_ms() ",
                ]
                .iter()
                .any(|name| defines(name))
                    && rel != "platform/src/clock.rs"
                {
                    clocks.push(format!("{rel}:{}", n + 1));
                }
                if ["eventually(", "eventually<", "wait_until(", "until("]
                    .iter()
                    .any(|name| defines(name))
                    && rel != "platform/src/testing.rs"
                    && rel != "tests/common/mod.rs"
                {
                    waits.push(format!("{rel}:{}", n + 1));
                }
            }
        }
    }
    assert!(
        clocks.is_empty(),
        "clocks besides platform::clock: {clocks:?}"
    );
    assert!(
        waits.is_empty(),
        "waits besides platform::testing::eventually: {waits:?}"
    );
    // The HTTP helper of the end-to-end tests waits with it too.
    assert!(read("tests/common/mod.rs").contains("platform::testing::eventually("));
}
