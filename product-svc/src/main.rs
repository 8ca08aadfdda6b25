//! `product-svc` binary: configuration from the environment, then
//! [`product_svc::build`] until Ctrl-C or SIGTERM.

#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

fn main() -> std::process::ExitCode {
    platform::runtime::run_service(product_svc::SERVICE, product_svc::build)
}
