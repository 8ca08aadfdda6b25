//! `cargo run`: every service and the gateway in one process.

#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

fn main() -> std::process::ExitCode {
    shopmesh::main()
}
