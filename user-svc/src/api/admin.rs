//! Bootstrap of the administrator account from configuration.

use super::{UserApi, now};
use crate::domain::{Email, Password, Role};

impl UserApi {
    /// Makes sure `email` is an admin with `password` (bootstrap).
    pub async fn ensure_admin(&self, email: &str, password: &str) -> anyhow::Result<()> {
        let email =
            Email::parse(email).map_err(|e| anyhow::anyhow!("ADMIN_EMAIL {}", e.message))?;
        let password = Password::parse(password)
            .map_err(|e| anyhow::anyhow!("ADMIN_PASSWORD {}", e.message))?;
        // Replicas start together: one creates the account, the others
        // find it (a creation that lost the race looks again).
        for _ in 0..3 {
            match self
                .find_by_email(&email)
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
            {
                None => {
                    match self
                        .create_user(
                            email.clone(),
                            &password,
                            "Administrator".into(),
                            Role::Admin,
                        )
                        .await
                    {
                        Ok(_) => {
                            tracing::info!(email = email.as_str(), "admin account created");
                            return Ok(());
                        }
                        Err(s) if s.code() == tonic::Code::AlreadyExists => continue,
                        Err(s) => anyhow::bail!("creating the admin: {}", s.message()),
                    }
                }
                Some(existing) => {
                    let matches = self
                        .hasher
                        .verify(password.expose(), &existing.value.password_hash)
                        .await?
                        .matches;
                    let hash = if matches {
                        None
                    } else {
                        Some(self.hasher.hash(password.expose()).await?)
                    };
                    if existing.value.role != Role::Admin || hash.is_some() {
                        self.users
                            .modify(&existing.id, |u| {
                                u.role = Role::Admin;
                                if let Some(h) = &hash {
                                    u.password_hash = h.clone();
                                }
                                u.updated_at = now().secs();
                            })
                            .await?;
                        tracing::info!(email = email.as_str(), "admin account updated");
                    }
                    return Ok(());
                }
            }
        }
        anyhow::bail!("creating the admin: the account kept appearing and disappearing")
    }
}
