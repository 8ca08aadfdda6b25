//! `order-svc` binary: configuration from the environment, then
//! [`order_svc::build`] until Ctrl-C or SIGTERM.

#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

fn main() -> std::process::ExitCode {
    platform::runtime::run_service(order_svc::SERVICE, order_svc::build)
}
