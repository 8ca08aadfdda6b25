//! `user-svc` binary: configuration from the environment, then
//! [`user_svc::build`] until Ctrl-C or SIGTERM.

#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

fn main() -> std::process::ExitCode {
    platform::runtime::run_service(user_svc::SERVICE, user_svc::build)
}
