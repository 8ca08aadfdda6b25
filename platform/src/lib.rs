//! Shared runtime of every shopmesh service: configuration, telemetry, gRPC
//! server and client plumbing, the error table, and process lifecycle. No
//! business logic lives here.

pub mod address;
pub mod auth;
pub mod breaker;
pub mod config;
pub mod deadline;
pub mod error;
pub mod events;
pub mod grpc;
pub mod runtime;
pub mod store;
pub mod telemetry;
pub mod testing;

pub use config::{Config, ConfigError, DatabaseUrl, PeerAddr, ServiceId};
pub use error::ErrorKind;
pub use runtime::Running;

/// The global allocator of every shopmesh binary (each `main.rs` declares
/// `#[global_allocator] static ALLOCATOR: platform::Allocator = platform::Allocator;`).
///
/// mimalloc returns freed pages to the system soon after they are freed;
/// glibc's malloc keeps the per-thread arenas that argon2's 19 MiB buffers
/// grow, so a login burst would leave hundreds of MiB resident for good.
pub use mimalloc::MiMalloc as Allocator;

/// mimalloc's `mi_option_purge_delay` (`mimalloc.h`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tunes [`Allocator`] for a server that idles between bursts: freed pages
/// are purged (given back to the system) at once instead of after mimalloc's
/// default delay, which only runs when the freeing thread allocates again,
/// so an idle process kept the pages of its last burst. Measured by
/// `examples/memory_bench.rs`: idle RSS after a login burst 91 -> 48 MiB,
/// peak 104 -> 89 MiB. `MIMALLOC_PURGE_DELAY` in the environment wins.
///
/// Call it first thing in `main`, before any other thread exists
/// (`mi_option_set` is not thread safe); [`runtime::run_main`] does.
pub fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets one integer option; called before other threads start.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}
