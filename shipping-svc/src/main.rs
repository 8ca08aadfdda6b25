//! `shipping-svc` binary: configuration from the environment, then
//! [`shipping_svc::build`] until Ctrl-C or SIGTERM.

#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

fn main() -> std::process::ExitCode {
    platform::runtime::run_service(shipping_svc::SERVICE, shipping_svc::build)
}
