//! Shared runtime of every shopmesh service: configuration, telemetry, gRPC
//! server and client plumbing, the store and the event bus, the error
//! table, and process lifecycle.
//!
//! The only shop rules here are the ones several services must apply
//! identically, each in one place: the shape of an address
//! ([`address`]), the text rules ([`text`]), the saga's timings shared by
//! order-svc and product-svc ([`config::saga`]) and the business counters
//! every process exports ([`metrics`]). A rule one service owns lives in
//! that service.

pub mod address;
pub mod auth;
pub mod balance;
pub mod breaker;
pub mod clock;
pub mod config;
pub mod deadline;
pub mod error;
pub mod events;
pub mod flags;
pub mod grpc;
pub mod metrics;
pub mod runtime;
pub mod store;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod text;

pub use config::{Component, Config, ConfigError, DatabaseUrl, PeerAddr, ServiceId};
pub use error::ErrorKind;
pub use runtime::Running;

/// The global allocator of every shopmesh binary (each `main.rs` declares
/// `#[global_allocator] static ALLOCATOR: platform::Allocator = platform::Allocator;`).
///
/// mimalloc returns freed pages to the system soon after they are freed;
/// glibc's malloc keeps the per-thread arenas that argon2's 19 MiB buffers
/// grow, so a login burst would leave hundreds of MiB resident for good.
pub use mimalloc::MiMalloc as Allocator;

/// Gives the pages the calling thread freed back to the system now.
///
/// mimalloc purges freed memory after a short delay, but only when the
/// allocator is used again, so a burst of large short-lived buffers
/// (argon2's 19 MiB per hash) would stay resident once the process is
/// idle. Purging at once everywhere (`MIMALLOC_PURGE_DELAY=0`) slows
/// serving: GetRecommendations' p99 with 32 clients doubles while a model
/// trains (`recommendation-svc/examples/recommend_bench.rs`). So the work
/// that makes such bursts calls this when the burst ends (user-svc: the
/// last password hash in flight).
pub fn release_free_memory() {
    // SAFETY: collects the calling thread's heap and purges the arenas;
    // safe to call at any time from any thread.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
