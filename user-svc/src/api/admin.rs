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
        match self
            .find_by_email(&email)
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        {
            None => {
                self.create_user(
                    email.clone(),
                    &password,
                    "Administrator".into(),
                    Role::Admin,
                )
                .await
                .map_err(|s| anyhow::anyhow!("creating the admin: {}", s.message()))?;
                tracing::info!(email = email.as_str(), "admin account created");
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
                            u.updated_at = now();
                        })
                        .await?;
                    tracing::info!(email = email.as_str(), "admin account updated");
                }
            }
        }
        Ok(())
    }
}
