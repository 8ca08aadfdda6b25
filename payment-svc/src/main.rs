//! `payment-svc` binary: configuration from the environment, then
//! [`payment_svc::build`] until Ctrl-C or SIGTERM.

#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

fn main() -> std::process::ExitCode {
    platform::runtime::run_service(payment_svc::SERVICE, payment_svc::build)
}
