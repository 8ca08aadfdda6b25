//! `media-svc` binary: configuration from the environment, then
//! [`media_svc::build`] until Ctrl-C or SIGTERM.

#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

fn main() -> std::process::ExitCode {
    platform::runtime::run_service(media_svc::SERVICE, media_svc::build)
}
