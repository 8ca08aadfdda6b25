//! Marks whether a MongoDB server is configured for the end-to-end tests
//! (`MONGODB_URI`): without one, the MongoDB runs of `tests/backends.rs` are reported
//! as ignored with that reason instead of silently passing.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(mongodb_uri)");
    println!("cargo::rerun-if-env-changed=MONGODB_URI");
    if std::env::var("MONGODB_URI").is_ok_and(|v| !v.trim().is_empty()) {
        println!("cargo::rustc-cfg=mongodb_uri");
    }
}
