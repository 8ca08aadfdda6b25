//! `recommendation-svc` binary: configuration from the environment, then
//! [`recommendation_svc::build`] until Ctrl-C or SIGTERM.

fn main() -> std::process::ExitCode {
    platform::runtime::run_service(recommendation_svc::SERVICE, recommendation_svc::build)
}
