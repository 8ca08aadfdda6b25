//! Carriers behind one interface: a simulated carrier (default;
//! deterministic tracking numbers) and an HTTP carrier API when
//! `CARRIER_BASE_URL` is set. Label creation is keyed by our shipment id, so
//! asking again never buys a second label.

use std::time::Duration;

use sha2::Digest;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub carrier: String,
    pub service: String,
    pub tracking_number: String,
}

/// Why the carrier gave no label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarrierError {
    /// Not reachable, too slow, overloaded or failing (a transport error,
    /// 408, 429, 5xx): the same request may succeed later.
    #[error("carrier unavailable: {0}")]
    Unavailable(String),
    /// It refused the request or answered something we cannot read (any
    /// other 4xx, a malformed body): asking again will not help.
    #[error("carrier refused the label: {0}")]
    Refused(String),
}

#[async_trait::async_trait]
pub trait Carrier: Send + Sync + std::fmt::Debug {
    async fn create_label(
        &self,
        shipment_id: &str,
        country: &str,
        weight_grams: u32,
    ) -> Result<Label, CarrierError>;
}

#[derive(Debug, Default)]
pub struct SimulatedCarrier;

#[async_trait::async_trait]
impl Carrier for SimulatedCarrier {
    async fn create_label(
        &self,
        shipment_id: &str,
        _country: &str,
        _weight_grams: u32,
    ) -> Result<Label, CarrierError> {
        use platform::flags;
        flags::pause(flags::CARRIER_LATENCY, None).await;
        if flags::on(flags::CARRIER_OUTAGE) {
            return Err(CarrierError::Unavailable(
                "the carrier is down (fault flag)".into(),
            ));
        }
        let digest = sha2::Sha256::digest(shipment_id.as_bytes());
        let number: String = digest[..6].iter().map(|b| format!("{b:02X}")).collect();
        Ok(Label {
            carrier: "shopmesh-post".into(),
            service: "standard".into(),
            tracking_number: format!("SM{number}"),
        })
    }
}

/// A carrier's REST API: `POST <base>/labels` with
/// `{reference, country, weight_grams}` and an `Idempotency-Key`, answering
/// `{carrier, service, tracking_number}`.
#[derive(Debug)]
pub struct HttpCarrier {
    http: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
}

impl HttpCarrier {
    pub fn new(base_url: &str, api_key: Option<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
        })
    }
}

#[derive(serde::Deserialize)]
struct LabelBody {
    carrier: String,
    #[serde(default)]
    service: String,
    tracking_number: String,
}

#[async_trait::async_trait]
impl Carrier for HttpCarrier {
    async fn create_label(
        &self,
        shipment_id: &str,
        country: &str,
        weight_grams: u32,
    ) -> Result<Label, CarrierError> {
        let mut request = self
            .http
            .post(format!("{}/labels", self.base_url))
            .header("Idempotency-Key", shipment_id)
            .json(&serde_json::json!({"reference": shipment_id, "country": country, "weight_grams": weight_grams}));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| CarrierError::Unavailable(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let message = format!("HTTP {status}");
            return Err(
                if status.is_server_error()
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                {
                    CarrierError::Unavailable(message)
                } else {
                    CarrierError::Refused(message)
                },
            );
        }
        let body: LabelBody = response
            .json()
            .await
            .map_err(|e| CarrierError::Refused(format!("unreadable answer: {e}")))?;
        Ok(Label {
            carrier: body.carrier,
            service: body.service,
            tracking_number: body.tracking_number,
        })
    }
}
