//! A test's own slice of the production backends: a Postgres schema
//! prefix and a NATS stream and subject prefix, dropped by `cleanup`.

use super::TestMesh;

pub struct Backends {
    pub schemas: platform::testing::SchemaPrefix,
    pub stream: String,
    pub subjects: String,
}

pub fn nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

impl Backends {
    pub fn new() -> Self {
        let tag = uuid::Uuid::now_v7().simple().to_string();
        Self {
            schemas: platform::testing::SchemaPrefix::new(),
            stream: format!("E{tag}"),
            subjects: format!("e{tag}"),
        }
    }

    pub async fn mesh(&self) -> TestMesh {
        self.mesh_with(&[]).await
    }

    pub async fn mesh_with(&self, extra: &[(&str, &str)]) -> TestMesh {
        let mut vars = self.schemas.vars();
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        vars.extend([
            ("NATS_URL".to_string(), nats_url()),
            ("NATS_STREAM".to_string(), self.stream.clone()),
            ("NATS_SUBJECT_PREFIX".to_string(), self.subjects.clone()),
        ]);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        TestMesh::start_with(&vars).await
    }

    pub async fn cleanup(&self) {
        let services: Vec<&str> = platform::ServiceId::ALL
            .iter()
            .map(|id| id.name())
            .collect();
        self.schemas.drop(&services).await;
        let settings = platform::events::nats::NatsSettings {
            stream: self.stream.clone(),
            prefix: self.subjects.clone(),
            ..Default::default()
        };
        let nats = nats_url();
        if let Ok(bus) = platform::events::nats::NatsBus::connect(&nats, settings).await {
            let _ = bus.delete_stream().await;
        }
    }
}
