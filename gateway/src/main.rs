//! `gateway` binary: configuration from the environment, then
//! [`gateway::build`] until Ctrl-C or SIGTERM.

#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

fn main() -> std::process::ExitCode {
    gateway::main()
}
