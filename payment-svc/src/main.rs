//! `payment-svc` binary: configuration from the environment, then
//! [`payment_svc::build`] until Ctrl-C or SIGTERM.

fn main() -> std::process::ExitCode {
    platform::runtime::run_service(payment_svc::SERVICE, payment_svc::build)
}
