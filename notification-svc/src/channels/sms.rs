//! SMS through Twilio's Messages API (or anything speaking it):
//! `POST {base}/2010-04-01/Accounts/{sid}/Messages.json` with a form body
//! and HTTP basic auth.

use super::{Channel, Message, SendError, Target, truncate};

/// Twilio caps a message body at 1600 characters.
const MAX_SMS_CHARS: usize = 1600;

#[derive(Clone)]
pub struct Twilio {
    http: reqwest::Client,
    url: String,
    account_sid: String,
    auth_token: String,
    from: String,
}

impl std::fmt::Debug for Twilio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Twilio")
            .field("url", &self.url)
            .field("from", &self.from)
            .finish()
    }
}

impl Twilio {
    pub fn new(
        base_url: &str,
        account_sid: &str,
        auth_token: &str,
        from: &str,
    ) -> anyhow::Result<Twilio> {
        Ok(Twilio {
            http: super::http_client()?,
            url: format!(
                "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
                base_url.trim_end_matches('/')
            ),
            account_sid: account_sid.to_string(),
            auth_token: auth_token.to_string(),
            from: from.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Channel for Twilio {
    async fn send(&self, target: &Target, message: Message<'_>) -> Result<(), SendError> {
        let Target::Sms { phone } = target else {
            return Err(SendError::Permanent("not an SMS target".into()));
        };
        let text = truncate(
            &format!("{}: {}", message.title, message.body),
            MAX_SMS_CHARS - 1,
        );
        let response = self
            .http
            .post(&self.url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .form(&[
                ("To", phone.as_str()),
                ("From", self.from.as_str()),
                ("Body", text.as_str()),
            ])
            .send()
            .await
            .map_err(|e| SendError::from_transport(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // Twilio explains refusals in a JSON body: {"code": 21211, "message": "..."}.
        let body = response.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or(body);
        Err(SendError::from_http_status(status, &detail))
    }
}
