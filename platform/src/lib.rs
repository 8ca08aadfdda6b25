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
