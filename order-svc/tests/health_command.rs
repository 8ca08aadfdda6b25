//! `order-svc health`: the probe compose runs inside the container (the
//! image has no probe tools). It exits 0 only while the service on
//! `GRPC_ADDR` answers SERVING for its own name.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn health(addr: &str) -> bool {
    Command::new(env!("CARGO_BIN_EXE_order-svc"))
        .arg("health")
        .env("GRPC_ADDR", addr)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn the_health_command_follows_the_running_service() {
    let addr = format!("127.0.0.1:{}", free_port());
    assert!(!health(&addr), "nothing listens yet");

    let mut service = Command::new(env!("CARGO_BIN_EXE_order-svc"))
        .env("GRPC_ADDR", &addr)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !health(&addr) {
        assert!(
            service.try_wait().unwrap().is_none(),
            "the service exited early"
        );
        assert!(Instant::now() < deadline, "never became healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
    service.kill().unwrap();
    service.wait().unwrap();
    assert!(!health(&addr), "a dead service is not healthy");
}
