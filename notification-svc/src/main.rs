//! `notification-svc` binary: configuration from the environment, then
//! [`notification_svc::build`] until Ctrl-C or SIGTERM.

#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

fn main() -> std::process::ExitCode {
    platform::runtime::run_service(notification_svc::SERVICE, notification_svc::build)
}
