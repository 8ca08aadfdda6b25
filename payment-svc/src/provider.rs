//! Payment providers behind one interface: the simulated provider (the
//! default; Stripe-style test cards) and Stripe (PaymentIntents over HTTPS)
//! when `STRIPE_API_KEY` is set.
//!
//! Every charge and refund carries our own id as the provider's
//! idempotency key, so asking again after a timeout can never charge twice,
//! and [`PaymentProvider::lookup`] tells what became of a charge whose
//! answer was lost.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::domain::Card;

/// What the provider decided about a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Succeeded { provider_ref: String },
    Declined { code: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// No answer (timeout, network, 5xx, rate limit): the outcome is unknown.
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the request itself (our bug or bad config).
    #[error("payment provider rejected the request: {0}")]
    Rejected(String),
}

pub struct ChargeRequest<'a> {
    /// Our payment id: the provider's idempotency key.
    pub key: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub card: &'a Card,
}

#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;
    async fn charge(&self, request: ChargeRequest<'_>) -> Result<ChargeOutcome, ProviderError>;
    /// The outcome of the charge made with `key`, or `None` if the provider
    /// never received it.
    async fn lookup(&self, key: &str) -> Result<Option<ChargeOutcome>, ProviderError>;
    /// Refunds `amount` of the charge `charge_ref`; `key` (our refund id)
    /// makes a repeat harmless. Returns the provider's refund reference.
    async fn refund(
        &self,
        key: &str,
        charge_ref: &str,
        amount: i64,
        currency: &str,
    ) -> Result<String, ProviderError>;
}

/// The simulated provider, with the Stripe test cards:
/// `4242424242424242` succeeds, `4000000000000002` is declined,
/// `4000000000009995` has insufficient funds; other valid numbers succeed.
#[derive(Debug, Default)]
pub struct SimulatedProvider {
    ledger: Mutex<HashMap<String, ChargeOutcome>>,
    refunds: Mutex<HashMap<String, (String, i64)>>,
    lost_responses: AtomicUsize,
    charges: AtomicUsize,
}

impl SimulatedProvider {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `n` charges are made but their answers are lost (as on a
    /// timeout), for testing reconciliation.
    pub fn lose_responses(&self, n: usize) {
        self.lost_responses.store(n, Ordering::SeqCst);
    }

    /// How many charges were actually made (each key counts once).
    pub fn charges(&self) -> usize {
        self.charges.load(Ordering::SeqCst)
    }

    /// Sum refunded for a charge.
    pub fn refunded(&self, charge_ref: &str) -> i64 {
        self.refunds
            .lock()
            .expect("ledger")
            .values()
            .filter(|(c, _)| c == charge_ref)
            .map(|(_, a)| a)
            .sum()
    }
}

#[async_trait::async_trait]
impl PaymentProvider for SimulatedProvider {
    fn name(&self) -> &'static str {
        "simulated"
    }

    async fn charge(&self, request: ChargeRequest<'_>) -> Result<ChargeOutcome, ProviderError> {
        use platform::flags;
        flags::pause(flags::PAYMENT_LATENCY, None).await;
        if flags::on(flags::PAYMENT_OUTAGE) {
            return Err(ProviderError::Unavailable(
                "the payment provider is down (fault flag)".into(),
            ));
        }
        // A decline the flag picks is the provider's answer for this key,
        // kept like any other (a retry with the key gets it again).
        let flagged = flags::hits(flags::PAYMENT_DECLINE_RATE, None);
        let outcome = {
            let mut ledger = self.ledger.lock().expect("ledger");
            ledger
                .entry(request.key.to_string())
                .or_insert_with(|| {
                    self.charges.fetch_add(1, Ordering::SeqCst);
                    if flagged {
                        return ChargeOutcome::Declined {
                            code: "card_declined".into(),
                            reason: "Your card was declined.".into(),
                        };
                    }
                    match request.card.number() {
                        "4000000000000002" => ChargeOutcome::Declined {
                            code: "card_declined".into(),
                            reason: "Your card was declined.".into(),
                        },
                        "4000000000009995" => ChargeOutcome::Declined {
                            code: "insufficient_funds".into(),
                            reason: "Your card has insufficient funds.".into(),
                        },
                        _ => ChargeOutcome::Succeeded {
                            provider_ref: format!("sim_ch_{}", request.key),
                        },
                    }
                })
                .clone()
        };
        let lost = self
            .lost_responses
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lost {
            return Err(ProviderError::Unavailable(
                "timed out waiting for the provider".into(),
            ));
        }
        Ok(outcome)
    }

    async fn lookup(&self, key: &str) -> Result<Option<ChargeOutcome>, ProviderError> {
        Ok(self.ledger.lock().expect("ledger").get(key).cloned())
    }

    async fn refund(
        &self,
        key: &str,
        charge_ref: &str,
        amount: i64,
        _currency: &str,
    ) -> Result<String, ProviderError> {
        self.refunds
            .lock()
            .expect("ledger")
            .entry(key.to_string())
            .or_insert_with(|| (charge_ref.to_string(), amount));
        Ok(format!("sim_re_{key}"))
    }
}

/// Stripe PaymentIntents (`confirm=true`) with raw card data, as Stripe's
/// test mode allows; `Idempotency-Key` is our payment or refund id.
#[derive(Debug)]
pub struct StripeProvider {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
}

#[derive(serde::Deserialize)]
struct StripeError {
    error: StripeErrorBody,
}

#[derive(serde::Deserialize)]
struct StripeErrorBody {
    #[serde(default)]
    r#type: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    decline_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(serde::Deserialize)]
struct Intent {
    id: String,
    status: String,
    #[serde(default)]
    last_payment_error: Option<StripeErrorBody>,
}

#[derive(serde::Deserialize)]
struct Search {
    data: Vec<Intent>,
}

#[derive(serde::Deserialize)]
struct StripeRefund {
    id: String,
    status: String,
}

/// Reads a Stripe answer; one we cannot read counts as no answer.
fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ProviderError> {
    serde_json::from_slice(body)
        .map_err(|e| ProviderError::Unavailable(format!("unreadable answer: {e}")))
}

fn intent_outcome(intent: Intent) -> ChargeOutcome {
    if intent.status == "succeeded" {
        ChargeOutcome::Succeeded {
            provider_ref: intent.id,
        }
    } else {
        let error = intent.last_payment_error;
        ChargeOutcome::Declined {
            code: error
                .as_ref()
                .and_then(|e| e.decline_code.clone().or(e.code.clone()))
                .unwrap_or_else(|| intent.status.clone()),
            reason: error
                .and_then(|e| e.message)
                .unwrap_or_else(|| "The payment was not completed.".into()),
        }
    }
}

impl StripeProvider {
    pub fn new(base_url: &str, api_key: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
        })
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, bytes::Bytes), ProviderError> {
        let response = request
            .bearer_auth(&self.api_key)
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        if status == 429 || status >= 500 {
            return Err(ProviderError::Unavailable(format!("HTTP {status}")));
        }
        Ok((status, body))
    }
}

#[async_trait::async_trait]
impl PaymentProvider for StripeProvider {
    fn name(&self) -> &'static str {
        "stripe"
    }

    async fn charge(&self, request: ChargeRequest<'_>) -> Result<ChargeOutcome, ProviderError> {
        let form = [
            ("amount", request.amount.to_string()),
            ("currency", request.currency.to_lowercase()),
            ("confirm", "true".into()),
            ("payment_method_data[type]", "card".into()),
            (
                "payment_method_data[card][number]",
                request.card.number().into(),
            ),
            (
                "payment_method_data[card][exp_month]",
                request.card.exp_month.to_string(),
            ),
            (
                "payment_method_data[card][exp_year]",
                request.card.exp_year.to_string(),
            ),
            ("payment_method_data[card][cvc]", request.card.cvc().into()),
            ("metadata[payment_id]", request.key.into()),
        ];
        let (status, body) = self
            .send(
                self.http
                    .post(format!("{}/v1/payment_intents", self.base_url))
                    .header("Idempotency-Key", request.key)
                    .form(&form),
            )
            .await?;
        match status {
            200 => decode::<Intent>(&body).map(intent_outcome),
            402 => {
                let error = decode::<StripeError>(&body)?.error;
                Ok(ChargeOutcome::Declined {
                    code: error
                        .decline_code
                        .or(error.code)
                        .unwrap_or_else(|| "card_declined".into()),
                    reason: error
                        .message
                        .unwrap_or_else(|| "Your card was declined.".into()),
                })
            }
            _ => {
                let message = serde_json::from_slice::<StripeError>(&body)
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e.error.r#type,
                            e.error.message.unwrap_or_default()
                        )
                    })
                    .unwrap_or_else(|_| format!("HTTP {status}"));
                Err(ProviderError::Rejected(message))
            }
        }
    }

    async fn lookup(&self, key: &str) -> Result<Option<ChargeOutcome>, ProviderError> {
        let query = format!("metadata['payment_id']:'{key}'");
        let (status, body) = self
            .send(
                self.http
                    .get(format!("{}/v1/payment_intents/search", self.base_url))
                    .query(&[("query", query)]),
            )
            .await?;
        if status != 200 {
            return Err(ProviderError::Rejected(format!(
                "search answered HTTP {status}"
            )));
        }
        let search: Search = decode(&body)?;
        Ok(search.data.into_iter().next().map(intent_outcome))
    }

    async fn refund(
        &self,
        key: &str,
        charge_ref: &str,
        amount: i64,
        _currency: &str,
    ) -> Result<String, ProviderError> {
        let form = [
            ("payment_intent", charge_ref.to_string()),
            ("amount", amount.to_string()),
        ];
        let (status, body) = self
            .send(
                self.http
                    .post(format!("{}/v1/refunds", self.base_url))
                    .header("Idempotency-Key", key)
                    .form(&form),
            )
            .await?;
        if status != 200 {
            return Err(ProviderError::Rejected(format!(
                "refund answered HTTP {status}"
            )));
        }
        let refund: StripeRefund = decode(&body)?;
        if refund.status == "failed" {
            return Err(ProviderError::Rejected(
                "the provider failed the refund".into(),
            ));
        }
        Ok(refund.id)
    }
}
