//! The access-token signing keys.
//!
//! `JWT_PRIVATE_KEY_PEM` holds one or more Ed25519 PKCS#8 PEM blocks: the
//! first signs, all are published in the JWKS (so a key being rotated out
//! keeps verifying until its tokens expire). Without it (embedded mode) a
//! key is generated on first start and kept in the service's store, so
//! restarts and replicas share it.

use anyhow::Context as _;
use platform::auth::{JwkSet, SigningKey};
use platform::store::{CollectionSpec, Store, StoreError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
pub struct KeyRing {
    pub signing: SigningKey,
    pub jwks: JwkSet,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredKey {
    pem: String,
}

fn split_pems(pems: &str) -> Vec<String> {
    pems.split_inclusive("-----END PRIVATE KEY-----")
        .map(str::trim)
        .filter(|block| block.contains("-----BEGIN"))
        .map(str::to_string)
        .collect()
}

impl KeyRing {
    pub fn from_keys(keys: Vec<SigningKey>) -> anyhow::Result<Self> {
        let signing = keys.first().cloned().context("no signing key")?;
        Ok(Self {
            jwks: JwkSet {
                keys: keys.iter().map(SigningKey::jwk).collect(),
            },
            signing,
        })
    }

    pub async fn load(pems: Option<&str>, store: &Store) -> anyhow::Result<Self> {
        if let Some(pems) = pems {
            let keys = split_pems(pems)
                .iter()
                .map(|pem| SigningKey::from_pem(pem))
                .collect::<Result<Vec<_>, _>>()
                .context("JWT_PRIVATE_KEY_PEM")?;
            return Self::from_keys(keys);
        }
        let keys = store
            .collection::<StoredKey>(CollectionSpec::new("signing_keys"))
            .await?;
        let pem = match keys.find_by_id("current").await? {
            Some(stored) => stored.value.pem,
            None => {
                let fresh = SigningKey::generate();
                match keys
                    .insert(
                        "current",
                        StoredKey {
                            pem: fresh.to_pem(),
                        },
                    )
                    .await
                {
                    Ok(_) => {
                        tracing::info!(kid = fresh.kid(), "generated an access-token signing key");
                        fresh.to_pem()
                    }
                    // Another replica won the race: use its key.
                    Err(StoreError::AlreadyExists { .. }) => keys.get("current").await?.value.pem,
                    Err(err) => return Err(err.into()),
                }
            }
        };
        Self::from_keys(vec![
            SigningKey::from_pem(&pem).context("stored signing key")?,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn configured_pems_sign_with_the_first_and_publish_all() {
        let (a, b) = (SigningKey::generate(), SigningKey::generate());
        let ring = KeyRing::load(
            Some(&format!("{}\n{}", a.to_pem(), b.to_pem())),
            &Store::memory(),
        )
        .await
        .unwrap();
        assert_eq!(ring.signing.kid(), a.kid());
        assert_eq!(ring.jwks.keys.len(), 2);
        assert!(
            KeyRing::load(Some("garbage"), &Store::memory())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn embedded_key_is_generated_once_and_reused() {
        let store = Store::memory();
        let first = KeyRing::load(None, &store).await.unwrap();
        let second = KeyRing::load(None, &store).await.unwrap();
        assert_eq!(first.signing.kid(), second.signing.kid());
    }
}
