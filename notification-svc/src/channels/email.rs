//! Email over SMTP with lettre. `SMTP_URL` follows lettre's URL scheme:
//! `smtps://user:pass@host:465` (TLS), `smtp://host:587?tls=required`
//! (STARTTLS), `smtp://host:25` (plain, local relays and tests only).

use std::time::Duration;

use anyhow::Context as _;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{Channel, Message, SendError, Target};

#[derive(Clone)]
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the SMTP credentials.
        f.debug_struct("Email").field("from", &self.from).finish()
    }
}

impl Email {
    pub fn new(url: &str, from: &str) -> anyhow::Result<Email> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .context("SMTP_URL is not a valid SMTP URL")?
            .timeout(Some(Duration::from_secs(15)))
            .build();
        let from: Mailbox = from
            .parse()
            .with_context(|| format!("SMTP_FROM {from:?} is not a mailbox"))?;
        Ok(Email { transport, from })
    }
}

/// 5xx replies about the recipient or its address: sending again will not
/// help (RFC 5321: 550 mailbox unavailable, 551 not local, 553 name not
/// allowed, 501 syntax error in the address).
fn refuses_recipient(err: &lettre::transport::smtp::Error) -> bool {
    err.is_permanent()
        && err
            .status()
            .is_some_and(|code| matches!(code.to_string().as_str(), "550" | "551" | "553" | "501"))
}

#[async_trait::async_trait]
impl Channel for Email {
    async fn send(&self, target: &Target, message: Message<'_>) -> Result<(), SendError> {
        let Target::Email { address, name } = target else {
            return Err(SendError::Permanent("not an email target".into()));
        };
        let to = address
            .parse()
            .map(|address| Mailbox::new((!name.is_empty()).then(|| name.clone()), address))
            .map_err(|e| SendError::Permanent(format!("invalid recipient address: {e}")))?;
        let host = self.from.email.domain().to_string();
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.title)
            .message_id(Some(format!("<{}@{host}>", message.id)))
            .header(ContentType::TEXT_PLAIN)
            .body(message.body.to_string())
            .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))?;
        match self.transport.send(email).await {
            Ok(_) => Ok(()),
            Err(err) if refuses_recipient(&err) => Err(SendError::Permanent(err.to_string())),
            // 4xx, other 5xx (535 authentication failed, 554 policy: our
            // configuration or the relay, not this message), timeouts,
            // connection and TLS trouble.
            Err(err) => Err(SendError::Retryable(err.to_string())),
        }
    }
}
