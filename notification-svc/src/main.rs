//! `notification-svc` binary: configuration from the environment, then
//! [`notification_svc::build`] until Ctrl-C or SIGTERM.

fn main() -> std::process::ExitCode {
    platform::runtime::run_service(notification_svc::SERVICE, notification_svc::build)
}
