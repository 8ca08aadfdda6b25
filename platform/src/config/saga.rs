//! Settings of the order saga: how long an unpaid order holds its stock, the
//! caps that keep one customer from holding the catalogue, and how often the
//! sweepers look for work a crash left behind.

use std::time::Duration;

use super::{ConfigError, Vars};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaSettings {
    /// `ORDER_PAYMENT_TIMEOUT` (default 30 min; `90s`, `500ms`, `30m` or
    /// whole seconds): an order still unpaid after this long is cancelled
    /// (`payment_timeout`) and its stock released.
    pub payment_timeout: Duration,
    /// `ORDER_MAX_UNITS_PER_LINE` (default 100): most units of one product
    /// in one order.
    pub max_units_per_line: u32,
    /// `ORDER_MAX_UNPAID_PER_CUSTOMER` (default 10, at most 1000): most
    /// orders awaiting payment one customer may hold at once.
    pub max_unpaid_per_customer: u32,
    /// `SAGA_SWEEP_INTERVAL_MS` (default 2000): how often order-svc retries
    /// pending saga steps and expires unpaid orders, and product-svc looks
    /// for reservations to settle.
    pub sweep_interval: Duration,
    /// `RESERVATION_ORPHAN_GRACE_MS` (default 60000): a reservation this old
    /// whose order does not exist is released. Longer than any order
    /// creation can run (the gRPC server timeout caps it).
    pub orphan_grace: Duration,
}

impl Default for SagaSettings {
    fn default() -> Self {
        Self {
            payment_timeout: Duration::from_secs(30 * 60),
            max_units_per_line: 100,
            max_unpaid_per_customer: 10,
            sweep_interval: Duration::from_secs(2),
            orphan_grace: Duration::from_secs(60),
        }
    }
}

/// A duration with a unit (`ms`, `s`, `m`, `h`) or whole seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| "expected a duration such as 30m, 90s or 500ms".to_string())?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86_400)),
        other => return Err(format!("unknown unit {other:?}; use ms, s, m, h or d")),
    };
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// The largest `ORDER_MAX_UNPAID_PER_CUSTOMER`: a customer's unpaid orders
/// are counted in one page of the store (its `MAX_PAGE`).
pub const MAX_UNPAID_PER_CUSTOMER: u32 = 1000;

impl SagaSettings {
    pub(super) fn from_vars(v: &Vars<'_>) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            payment_timeout: v
                .parse_with("ORDER_PAYMENT_TIMEOUT", parse_duration)?
                .unwrap_or(d.payment_timeout),
            max_units_per_line: v
                .positive_number("ORDER_MAX_UNITS_PER_LINE", d.max_units_per_line)?,
            max_unpaid_per_customer: match v
                .positive_number("ORDER_MAX_UNPAID_PER_CUSTOMER", d.max_unpaid_per_customer)?
            {
                n if n > MAX_UNPAID_PER_CUSTOMER => {
                    return Err(ConfigError::new(
                        "ORDER_MAX_UNPAID_PER_CUSTOMER",
                        &n.to_string(),
                        format!("must be at most {MAX_UNPAID_PER_CUSTOMER}"),
                    ));
                }
                n => n,
            },
            sweep_interval: v.positive_millis("SAGA_SWEEP_INTERVAL_MS", d.sweep_interval)?,
            orphan_grace: v.positive_millis("RESERVATION_ORPHAN_GRACE_MS", d.orphan_grace)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::saga::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_take_units_or_whole_seconds() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "0", "0s", "-1s", "1.5s", "10w", "s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
