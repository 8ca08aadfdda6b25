//! argon2id password hashing off the async runtime, with a bound on how
//! many hashes run at once (each takes ~19 MiB and tens of milliseconds).

use std::sync::Arc;

use anyhow::Context as _;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;
use tracing::Instrument;

/// Result of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    pub matches: bool,
    /// The hash was made with other parameters: store a fresh one.
    pub needs_rehash: bool,
}

#[derive(Clone, Debug)]
pub struct Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when the account does
    /// not exist so that unknown emails take as long as wrong passwords.
    dummy: Arc<String>,
}

impl Hasher {
    /// OWASP parameters: m = 19456 KiB, t = 2, p = 1.
    pub fn owasp() -> anyhow::Result<Self> {
        Self::with_params(19_456, 2, 1)
    }

    pub fn with_params(m_cost: u32, t_cost: u32, p_cost: u32) -> anyhow::Result<Self> {
        let params = Params::new(m_cost, t_cost, p_cost, None)
            .map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?;
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let mut hasher = Self {
            params,
            permits: Arc::new(Semaphore::new(workers)),
            dummy: Arc::new(String::new()),
        };
        let mut random = [0u8; 24];
        rand::fill(&mut random);
        hasher.dummy = Arc::new(hash_now(&hasher.params, &base64_encode(&random))?);
        Ok(hasher)
    }

    fn argon(params: &Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self.permits.acquire().await.context("hasher closed")?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(work))
            .await
            .context("hashing task failed")
    }

    /// A PHC string for `password`.
    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let (params, password) = (self.params.clone(), password.to_string());
        self.blocking(move || hash_now(&params, &password))
            .instrument(tracing::info_span!("argon2.hash"))
            .await?
    }

    /// Checks `password` against `phc`; an unparseable hash never matches.
    pub async fn verify(&self, password: &str, phc: &str) -> anyhow::Result<Verification> {
        let (params, password, phc) = (self.params.clone(), password.to_string(), phc.to_string());
        self.blocking(move || {
            let Ok(parsed) = PasswordHash::new(&phc) else {
                return Verification {
                    matches: false,
                    needs_rehash: true,
                };
            };
            let matches = Self::argon(&params)
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            let same_params = parsed.algorithm.as_str() == "argon2id"
                && Params::try_from(&parsed).is_ok_and(|p| {
                    p.m_cost() == params.m_cost()
                        && p.t_cost() == params.t_cost()
                        && p.p_cost() == params.p_cost()
                });
            Verification {
                matches,
                needs_rehash: !same_params,
            }
        })
        .instrument(tracing::info_span!("argon2.verify"))
        .await
    }

    /// Spends the time of a verification without a real account.
    pub async fn verify_dummy(&self, password: &str) -> anyhow::Result<()> {
        let dummy = self.dummy.clone();
        self.verify(password, &dummy).await.map(|_| ())
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

fn hash_now(params: &Params, password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Hasher::argon(params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_are_argon2id_with_owasp_parameters() {
        let hasher = Hasher::owasp().unwrap();
        let phc = hasher.hash("correct horse").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_eq!(
            hasher.verify("correct horse", &phc).await.unwrap(),
            Verification {
                matches: true,
                needs_rehash: false
            }
        );
        assert!(!hasher.verify("wrong horse", &phc).await.unwrap().matches);
        assert!(!hasher.verify("x", "not a hash").await.unwrap().matches);
        assert_ne!(phc, hasher.hash("correct horse").await.unwrap(), "salted");
    }

    #[tokio::test]
    async fn old_parameters_ask_for_a_rehash() {
        let weak = Hasher::with_params(8, 1, 1).unwrap();
        let old = weak.hash("correct horse").await.unwrap();
        let v = Hasher::owasp()
            .unwrap()
            .verify("correct horse", &old)
            .await
            .unwrap();
        assert_eq!(
            v,
            Verification {
                matches: true,
                needs_rehash: true
            }
        );
    }
}
