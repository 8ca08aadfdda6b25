//! Harness for end-to-end tests: a whole mesh on free loopback ports per
//! test, typed gRPC clients, and an HTTP client for the gateway.

#![allow(dead_code)]

use std::collections::HashMap;

use platform::config::PeerAddr;
use platform::{Config, ServiceId};
use shopmesh::{Mesh, MeshAddrs};

pub struct TestMesh {
    pub mesh: Mesh,
    pub http: reqwest::Client,
    pub config: Config,
}

impl TestMesh {
    /// Embedded defaults (memory store, in-process bus) plus `vars`.
    pub async fn start_with(vars: &[(&str, &str)]) -> TestMesh {
        platform::telemetry::init_for_tests();
        let vars: HashMap<&str, &str> = vars.iter().copied().collect();
        let config = Config::from_source("e2e", &vars).expect("test config is valid");
        let mesh = Mesh::start(config.clone(), &MeshAddrs::ephemeral())
            .await
            .expect("mesh starts");
        TestMesh {
            mesh,
            http: reqwest::Client::new(),
            config,
        }
    }

    pub async fn start() -> TestMesh {
        Self::start_with(&[]).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.mesh.gateway_url())
    }

    /// A client channel to one service, built like the services build theirs.
    pub fn channel(&self, id: ServiceId) -> platform::grpc::GrpcChannel {
        platform::grpc::channel(
            &PeerAddr::from_socket(self.mesh.grpc_addr(id)),
            &self.config.grpc,
        )
        .expect("valid address")
    }

    pub async fn shutdown(self) {
        self.mesh.shutdown().await;
    }
}
