//! A test's own slice of the production backends: a Postgres schema
//! prefix (or MongoDB database prefix) and a NATS stream and subject
//! prefix, dropped by `cleanup`.

use super::TestMesh;

pub struct Backends {
    pub schemas: platform::testing::SchemaPrefix,
    pub stream: String,
    pub subjects: String,
}

pub fn nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Which document store the mesh runs on.
#[derive(Clone, Copy, Debug)]
pub enum Db {
    Postgres,
    MongoDb,
}

impl Backends {
    /// Postgres and NATS.
    pub fn new() -> Self {
        Self::on(Db::Postgres)
    }

    pub fn on(db: Db) -> Self {
        let tag = uuid::Uuid::now_v7().simple().to_string();
        let schemas = match db {
            Db::Postgres => platform::testing::SchemaPrefix::new(),
            Db::MongoDb => platform::testing::SchemaPrefix::on(
                std::env::var("MONGODB_URI").expect("MONGODB_URI is set"),
            ),
        };
        Self {
            schemas,
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

    /// A connection of the test's own to its stream (to publish as an
    /// outsider would, or to read dead letters).
    pub async fn nats(&self) -> platform::events::nats::NatsBus {
        platform::events::nats::NatsBus::connect(&nats_url(), self.nats_settings())
            .await
            .expect("NATS reachable (TEST_NATS_URL)")
    }

    fn nats_settings(&self) -> platform::events::nats::NatsSettings {
        platform::events::nats::NatsSettings {
            stream: self.stream.clone(),
            prefix: self.subjects.clone(),
            ..Default::default()
        }
    }

    pub async fn cleanup(&self) {
        let services: Vec<&str> = platform::ServiceId::ALL
            .iter()
            .map(|id| id.name())
            .collect();
        self.schemas.drop(&services).await;
        if let Ok(bus) =
            platform::events::nats::NatsBus::connect(&nats_url(), self.nats_settings()).await
        {
            let _ = bus.delete_stream().await;
        }
    }
}
