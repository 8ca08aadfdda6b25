//! `cargo run`: every service and the gateway in one process.

fn main() -> std::process::ExitCode {
    shopmesh::main()
}
