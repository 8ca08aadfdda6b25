//! `gateway` binary: configuration from the environment, then
//! [`gateway::build`] until Ctrl-C or SIGTERM.

fn main() -> std::process::ExitCode {
    gateway::main()
}
