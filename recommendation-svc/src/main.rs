//! `recommendation-svc` binary: configuration from the environment, then
//! [`recommendation_svc::build`] until Ctrl-C or SIGTERM.

#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

fn main() -> std::process::ExitCode {
    platform::runtime::run_service(recommendation_svc::SERVICE, recommendation_svc::build)
}
