//! The service's own settings, from the environment (every one has a
//! default that runs embedded):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `RECOMMENDATION_TRAIN_INTERVAL` | `1h` | scheduled training: seconds, or `30s`/`15m`/`6h`; `0` or `off` = only on request |
//! | `RECOMMENDATION_ALGORITHM` | `ease` | `ease` or `popularity` |
//! | `RECOMMENDATION_EASE_LAMBDA` | `250` | EASE regularisation |
//! | `RECOMMENDATION_MAX_ITEMS` | `5000` | products in the dense EASE solve (the most bought) |
//! | `RECOMMENDATION_MODEL_REFRESH_MS` | `5000` | how often a replica checks the store for a newer model |

use std::time::Duration;

use platform::config::{ConfigError, ProcessEnv, Source, Vars};

use crate::model::{Algorithm, TrainParams};

/// Settings of recommendation-svc.
#[derive(Debug, Clone, PartialEq)]
pub struct RecommendationConfig {
    /// `None`: train only on request.
    pub train_interval: Option<Duration>,
    pub params: TrainParams,
    pub model_refresh: Duration,
    /// How long a training lease lasts (a replica that dies mid-training
    /// blocks others at most this long).
    pub lease_ttl: Duration,
    /// How long an answer of the catalog (buyable, category) is reused
    /// when ranking (`RECOMMENDATION_CATALOG_TTL_MS`; 0: ask every time).
    pub catalog_ttl: Duration,
}

impl Default for RecommendationConfig {
    fn default() -> Self {
        Self {
            train_interval: Some(Duration::from_secs(3600)),
            params: TrainParams::default(),
            model_refresh: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(600),
            catalog_ttl: Duration::from_secs(1),
        }
    }
}

impl RecommendationConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&ProcessEnv)
    }

    pub fn from_source(source: &dyn Source) -> Result<Self, ConfigError> {
        let v = Vars(source);
        let defaults = Self::default();
        let train_interval = match v.parse_with("RECOMMENDATION_TRAIN_INTERVAL", parse_interval)? {
            Some(interval) => interval,
            None => defaults.train_interval,
        };
        let algorithm = v
            .parse_with("RECOMMENDATION_ALGORITHM", |s| {
                Algorithm::parse(s).ok_or_else(|| "expected ease or popularity".to_string())
            })?
            .unwrap_or(defaults.params.algorithm);
        let lambda = v
            .parse_with("RECOMMENDATION_EASE_LAMBDA", |s| match s.parse::<f64>() {
                Ok(l) if l.is_finite() && l > 0.0 => Ok(l),
                _ => Err("expected a positive number".to_string()),
            })?
            .unwrap_or(defaults.params.lambda);
        let max_items = v.positive_number("RECOMMENDATION_MAX_ITEMS", 5000)? as usize;
        if max_items > 20_000 {
            return Err(ConfigError::new(
                "RECOMMENDATION_MAX_ITEMS",
                &max_items.to_string(),
                "at most 20000 (the dense solve needs n² memory)",
            ));
        }
        Ok(Self {
            train_interval,
            params: TrainParams {
                algorithm,
                lambda,
                max_items,
                ..defaults.params
            },
            model_refresh: v
                .positive_millis("RECOMMENDATION_MODEL_REFRESH_MS", defaults.model_refresh)?,
            lease_ttl: defaults.lease_ttl,
            catalog_ttl: v
                .millis("RECOMMENDATION_CATALOG_TTL_MS")?
                .unwrap_or(defaults.catalog_ttl),
        })
    }
}

/// `3600`, `30s`, `15m`, `6h`; `0` or `off` disables.
fn parse_interval(s: &str) -> Result<Option<Duration>, String> {
    let s = s.trim().to_ascii_lowercase();
    if s == "off" || s == "0" {
        return Ok(None);
    }
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => s.split_at(at),
        None => (s.as_str(), "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| "expected seconds, or a number with s, m or h".to_string())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err("expected seconds, or a number with s, m or h".into()),
    };
    if secs == 0 {
        return Ok(None);
    }
    Ok(Some(Duration::from_secs(secs)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<RecommendationConfig, ConfigError> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        RecommendationConfig::from_source(&map)
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(load(&[]).unwrap(), RecommendationConfig::default());
        let c = load(&[
            ("RECOMMENDATION_TRAIN_INTERVAL", "15m"),
            ("RECOMMENDATION_ALGORITHM", "popularity"),
            ("RECOMMENDATION_EASE_LAMBDA", "100"),
            ("RECOMMENDATION_MAX_ITEMS", "300"),
            ("RECOMMENDATION_CATALOG_TTL_MS", "0"),
        ])
        .unwrap();
        assert_eq!(c.catalog_ttl, Duration::ZERO);
        assert_eq!(c.train_interval, Some(Duration::from_secs(900)));
        assert_eq!(c.params.algorithm, Algorithm::Popularity);
        assert_eq!(c.params.lambda, 100.0);
        assert_eq!(c.params.max_items, 300);
        assert_eq!(
            load(&[("RECOMMENDATION_TRAIN_INTERVAL", "off")])
                .unwrap()
                .train_interval,
            None
        );
        assert_eq!(
            load(&[("RECOMMENDATION_TRAIN_INTERVAL", "90")])
                .unwrap()
                .train_interval,
            Some(Duration::from_secs(90))
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("RECOMMENDATION_TRAIN_INTERVAL", "soon"),
            ("RECOMMENDATION_ALGORITHM", "magic"),
            ("RECOMMENDATION_EASE_LAMBDA", "-1"),
            ("RECOMMENDATION_MAX_ITEMS", "0"),
            ("RECOMMENDATION_MAX_ITEMS", "100000"),
        ] {
            let err = load(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var);
        }
    }
}
