//! Outgoing channels behind one interface: email over SMTP, SMS through a
//! Twilio-compatible API, Web Push. Each is on only when its configuration
//! is set; the in-app feed is not a channel here, it is always written.

pub mod email;
pub mod push;
pub mod sms;

use std::sync::Arc;

use anyhow::Context as _;
use platform::Config;

use crate::domain::Via;

/// Where one message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Email {
        address: String,
        name: String,
    },
    Sms {
        phone: String,
    },
    Push {
        endpoint: String,
        /// The browser's P-256 key and auth secret, base64url.
        p256dh: String,
        auth: String,
    },
}

/// What is sent.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// Stable per delivery, so receivers can drop duplicates (email
    /// Message-ID, push payload id).
    pub id: &'a str,
    pub kind: &'a str,
    pub title: &'a str,
    pub body: &'a str,
}

/// Why a send failed, and what to do about it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// Worth another attempt later (timeouts, 5xx, 429, SMTP 4xx).
    #[error("{0}")]
    Retryable(String),
    /// Will fail again (bad address, rejected by the provider).
    #[error("{0}")]
    Permanent(String),
    /// The target no longer exists (an expired push subscription): stop
    /// and forget it.
    #[error("{0}")]
    Gone(String),
}

impl SendError {
    /// Classifies an HTTP answer from a provider. 401 and 403 mean our
    /// credentials are refused (a rotation, a suspended account): retried,
    /// so messages survive until the configuration is fixed.
    pub fn from_http_status(status: reqwest::StatusCode, detail: &str) -> SendError {
        use reqwest::StatusCode as S;
        let message = format!("HTTP {}: {}", status.as_u16(), truncate(detail, 300));
        if matches!(
            status,
            S::TOO_MANY_REQUESTS | S::REQUEST_TIMEOUT | S::UNAUTHORIZED | S::FORBIDDEN
        ) || status.is_server_error()
        {
            SendError::Retryable(message)
        } else {
            SendError::Permanent(message)
        }
    }

    /// Classifies a transport error (no answer at all): retry, unless the
    /// request could not even be built (a malformed URL). The URL is left
    /// out: push endpoints carry per-user tokens.
    pub fn from_transport(err: &reqwest::Error) -> SendError {
        if err.is_builder() {
            return SendError::Permanent("the request cannot be built (bad URL)".into());
        }
        let mut source = std::error::Error::source(err);
        while let Some(s) = source {
            if let Some(refused) = s.downcast_ref::<push::NotPublic>() {
                return SendError::Permanent(refused.to_string());
            }
            source = s.source();
        }
        let mut message = if err.is_timeout() {
            "timed out".to_string()
        } else if err.is_connect() {
            "could not connect".to_string()
        } else {
            "request failed".to_string()
        };
        let mut source = std::error::Error::source(err);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        SendError::Retryable(message)
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars().take(max).collect::<String>() + "…"
    }
}

/// One outgoing channel.
#[async_trait::async_trait]
pub trait Channel: Send + Sync + std::fmt::Debug + 'static {
    async fn send(&self, target: &Target, message: Message<'_>) -> Result<(), SendError>;
}

/// The channels this process has configured.
#[derive(Clone, Debug, Default)]
pub struct Channels {
    pub email: Option<Arc<dyn Channel>>,
    pub sms: Option<Arc<dyn Channel>>,
    pub push: Option<Arc<dyn Channel>>,
    /// The VAPID public key (base64url) when push is on.
    pub push_public_key: Option<String>,
}

impl Channels {
    /// Email when `SMTP_URL` is set, SMS when `TWILIO_*` are, push when
    /// `VAPID_PRIVATE_KEY` is.
    pub fn from_config(config: &Config) -> anyhow::Result<Channels> {
        let i = &config.integrations;
        let email = match &i.smtp_url {
            Some(url) => Some(Arc::new(
                email::Email::new(url, &i.smtp_from).context("configuring SMTP_URL/SMTP_FROM")?,
            ) as Arc<dyn Channel>),
            None => None,
        };
        let sms = match (&i.twilio_account_sid, &i.twilio_auth_token, &i.twilio_from) {
            (Some(sid), Some(token), Some(from)) => Some(Arc::new(sms::Twilio::new(
                &i.twilio_base_url,
                sid,
                token.expose(),
                from,
            )?) as Arc<dyn Channel>),
            (None, None, None) => None,
            _ => anyhow::bail!(
                "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM must be set together"
            ),
        };
        let push = match &i.vapid_private_key {
            Some(key) => Some(
                push::WebPush::new(key.expose(), i.vapid_subject.as_deref().unwrap_or_default())
                    .map(|p| {
                        if i.push_allow_http {
                            p.allowing_private_addresses()
                        } else {
                            p
                        }
                    })
                    .context("configuring VAPID_PRIVATE_KEY")?,
            ),
            None => None,
        };
        Ok(Channels {
            email,
            sms,
            push_public_key: push.as_ref().map(|p| p.public_key().to_string()),
            push: push.map(|p| Arc::new(p) as Arc<dyn Channel>),
        })
    }

    pub fn get(&self, via: Via) -> Option<&Arc<dyn Channel>> {
        match via {
            Via::Email => self.email.as_ref(),
            Via::Sms => self.sms.as_ref(),
            Via::Push => self.push.as_ref(),
        }
    }
}

/// A client for provider APIs: bounded time, no redirects to elsewhere.
pub(crate) fn http_client() -> anyhow::Result<reqwest::Client> {
    http_client_builder()
        .build()
        .context("building the HTTP client")
}

pub(crate) fn http_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
}
