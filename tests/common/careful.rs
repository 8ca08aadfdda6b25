//! A careful client: it retries what may be retried — the same request
//! with the same Idempotency-Key after no answer, 502, 503, 504, 429 and
//! 409 "in progress" (a 409 with `Retry-After`) — sleeping as `Retry-After`
//! says (at most 5 s a time), within a time budget.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Reply;

/// Whether a careful client sends the request again after this answer
/// (0: no answer at all).
pub fn retryable(status: u16, retry_after: Option<u64>) -> bool {
    match status {
        0 | 429 | 502 | 503 | 504 => true,
        409 => retry_after.is_some(),
        _ => false,
    }
}

/// Sends until the answer is final or `budget` is spent; `seen` hears
/// every status (0 for no answer), retries included. After the budget the
/// last retryable answer is returned (status 0 with a `gave_up_after` body
/// when nothing answered).
#[allow(clippy::too_many_arguments)]
pub async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: Option<&Value>,
    budget: Duration,
    seen: impl FnMut(u16),
) -> Reply {
    let with_body = |request: reqwest::RequestBuilder| match body {
        Some(body) => request.json(body),
        None => request,
    };
    send_with(http, method, url, token, key, with_body, budget, seen).await
}

/// [`send`] with any body: `with_body` puts it on each attempt.
#[allow(clippy::too_many_arguments)]
pub async fn send_with(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    key: Option<&str>,
    with_body: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    budget: Duration,
    mut seen: impl FnMut(u16),
) -> Reply {
    let deadline = Instant::now() + budget;
    loop {
        let mut request = http
            .request(method.clone(), url)
            .timeout(Duration::from_secs(35));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let reply = match with_body(request).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let body = response.json().await.unwrap_or(Value::Null);
                Reply {
                    status,
                    headers,
                    body,
                }
            }
            Err(err) => Reply {
                status: 0,
                headers: Default::default(),
                body: json!({"gave_up_after": format!("no answer: {err}")}),
            },
        };
        seen(reply.status);
        let retry_after = reply
            .header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if !retryable(reply.status, retry_after) || Instant::now() > deadline {
            return reply;
        }
        let pause = match retry_after {
            Some(secs) => Duration::from_secs(secs.min(5)),
            None => Duration::from_millis(100 + rand::random_range(0..200)),
        };
        tokio::time::sleep(pause).await;
    }
}
