//! Reading variables: where they come from, typed access, the error that
//! names a bad one, and secrets that never print.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// A configuration value that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: String,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(var: &str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            var: var.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Where configuration values come from: the process environment, or a map
/// in tests.
pub trait Source {
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

impl Source for HashMap<&str, &str> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).map(|v| v.to_string())
    }
}

/// Typed access to a [`Source`]; empty values count as unset.
pub struct Vars<'a>(pub &'a dyn Source);

impl Vars<'_> {
    pub fn raw(&self, key: &str) -> Option<String> {
        self.0
            .get(key)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// Parses `key` with `parse`, which explains what it expected on failure.
    pub fn parse_with<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.raw(key) {
            None => Ok(None),
            Some(value) => parse(&value)
                .map(Some)
                .map_err(|reason| ConfigError::new(key, &value, reason)),
        }
    }

    pub fn socket_addr(&self, key: &str) -> Result<Option<SocketAddr>, ConfigError> {
        self.parse_with(key, parse_socket_addr)
    }

    /// A whole number of seconds, greater than zero.
    pub fn positive_secs(&self, key: &str, default: u64) -> Result<Duration, ConfigError> {
        let n = self
            .number::<u64>(key, "a whole number of seconds")?
            .unwrap_or(default);
        if n == 0 {
            return Err(ConfigError::new(key, "0", "must be greater than zero"));
        }
        Ok(Duration::from_secs(n))
    }

    pub fn number<T: FromStr>(&self, key: &str, what: &str) -> Result<Option<T>, ConfigError> {
        self.parse_with(key, |v| {
            v.parse::<T>().map_err(|_| format!("expected {what}"))
        })
    }

    pub fn millis(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        Ok(self
            .number::<u64>(key, "a whole number of milliseconds")?
            .map(Duration::from_millis))
    }

    /// A duration in milliseconds that must be above zero; `default` if unset.
    pub fn positive_millis(&self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.millis(key)? {
            Some(d) if d.is_zero() => Err(ConfigError::new(key, "0", "must be greater than zero")),
            Some(d) => Ok(d),
            None => Ok(default),
        }
    }

    /// A count that must be above zero; `default` if unset.
    pub fn positive_number(&self, key: &str, default: u32) -> Result<u32, ConfigError> {
        match self.number::<u32>(key, "a positive whole number")? {
            Some(0) => Err(ConfigError::new(key, "0", "must be greater than zero")),
            Some(n) => Ok(n),
            None => Ok(default),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.parse_with(key, |v| match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err("expected true or false".into()),
        })
    }

    pub fn url(&self, key: &str, schemes: &[&str]) -> Result<Option<String>, ConfigError> {
        self.parse_with(key, |v| {
            let scheme = v.split_once("://").map(|(s, _)| s).ok_or_else(|| {
                format!(
                    "expected a URL starting with {}",
                    schemes.join("://, ") + "://"
                )
            })?;
            if schemes.contains(&scheme) {
                Ok(v.to_string())
            } else {
                Err(format!(
                    "unsupported scheme {scheme:?}; expected one of {schemes:?}"
                ))
            }
        })
    }
}

/// One NATS name or subject token: letters, digits, `_` and `-`.
pub(super) fn name_token(value: &str) -> Result<String, String> {
    if !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        Ok(value.to_string())
    } else {
        Err("expected 1 to 64 letters, digits, _ or -".to_string())
    }
}

pub(super) fn parse_socket_addr(value: &str) -> Result<SocketAddr, String> {
    value
        .parse::<SocketAddr>()
        .map_err(|_| "expected an IP address and port such as 127.0.0.1:50051".to_string())
}

/// A secret value: shown as `<redacted>` by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
