//! `cart-svc` binary: configuration from the environment, then
//! [`cart_svc::build`] until Ctrl-C or SIGTERM.

#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

fn main() -> std::process::ExitCode {
    platform::runtime::run_service(cart_svc::SERVICE, cart_svc::build)
}
