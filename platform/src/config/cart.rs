//! Settings of carts: how long a guest's cart lives, how many lines a cart
//! holds, and how often expired guest carts are removed.

use std::time::Duration;

use super::saga::parse_duration;
use super::{ConfigError, Vars};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartSettings {
    /// `CART_GUEST_TTL` (default 7 days; `7d`, `12h`, `90s`…): a guest cart
    /// untouched this long expires (its token stops working) and is removed.
    pub guest_ttl: Duration,
    /// `CART_MAX_LINES` (default 100, as many as one order takes): most
    /// products in one cart.
    pub max_lines: u32,
    /// `CART_SWEEP_INTERVAL_MS` (default 60000): how often expired guest
    /// carts are removed and due reminders sent.
    pub sweep_interval: Duration,
    /// `CART_REMINDER_AFTER` (default 24h): a customer's cart with lines,
    /// untouched this long, gets one reminder (feed, and email where
    /// configured); a later change allows one more.
    pub reminder_after: Duration,
}

impl Default for CartSettings {
    fn default() -> Self {
        Self {
            guest_ttl: Duration::from_secs(7 * 86_400),
            max_lines: 100,
            sweep_interval: Duration::from_secs(60),
            reminder_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl CartSettings {
    pub fn from_vars(v: &Vars<'_>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let max_lines = v.positive_number("CART_MAX_LINES", d.max_lines)?;
        if max_lines > 100 {
            return Err(ConfigError::new(
                "CART_MAX_LINES",
                &max_lines.to_string(),
                "at most 100 (the lines of one order)",
            ));
        }
        Ok(Self {
            guest_ttl: v
                .parse_with("CART_GUEST_TTL", parse_duration)?
                .unwrap_or(d.guest_ttl),
            max_lines,
            sweep_interval: v.positive_millis("CART_SWEEP_INTERVAL_MS", d.sweep_interval)?,
            reminder_after: v
                .parse_with("CART_REMINDER_AFTER", parse_duration)?
                .unwrap_or(d.reminder_after),
        })
    }
}
