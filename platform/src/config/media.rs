//! Settings of product media: where bytes are stored, what an upload may
//! be, and when unreferenced bytes are removed.

use std::time::Duration;

use super::saga::parse_duration;
use super::{ConfigError, Vars};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSettings {
    /// `MEDIA_STORE_URL` (default `memory://`): `memory://`, `file:///dir`
    /// or `s3://bucket` (credentials and region from the `AWS_*`
    /// variables).
    pub store_url: String,
    /// `MEDIA_S3_ENDPOINT`: an S3-compatible server (MinIO…) instead of
    /// AWS; `http://` endpoints are allowed.
    pub s3_endpoint: Option<String>,
    /// `MEDIA_MAX_UPLOAD_BYTES` (default 10 MiB): larger uploads are 413.
    pub max_upload_bytes: u64,
    /// `MEDIA_MAX_PIXELS` (default 40 million): larger images are refused
    /// from their header, before any pixel is decoded.
    pub max_pixels: u64,
    /// `MEDIA_DECODE_MEMORY_BYTES` (default 256 MiB): most memory one
    /// decode may allocate.
    pub decode_memory_bytes: u64,
    /// `MEDIA_THUMBNAIL_WIDTHS` (default `160,480,1024`).
    pub thumbnail_widths: Vec<u32>,
    /// `MEDIA_WORKERS` (default: the CPUs): images decoded and encoded at
    /// once; further uploads wait their turn.
    pub workers: usize,
    /// `MEDIA_SWEEP_INTERVAL_MS` (default 60000): how often unreferenced
    /// bytes are looked for.
    pub sweep_interval: Duration,
    /// `MEDIA_GRACE` (default 1h): how long deleted media and unreferenced
    /// bytes are kept before the sweeper removes them.
    pub grace: Duration,
}

impl Default for MediaSettings {
    fn default() -> Self {
        Self {
            store_url: "memory://".into(),
            s3_endpoint: None,
            max_upload_bytes: 10 * 1024 * 1024,
            max_pixels: 40_000_000,
            decode_memory_bytes: 256 * 1024 * 1024,
            thumbnail_widths: vec![160, 480, 1024],
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            sweep_interval: Duration::from_secs(60),
            grace: Duration::from_secs(3600),
        }
    }
}

fn widths(raw: &str) -> Result<Vec<u32>, String> {
    let mut widths = raw
        .split(',')
        .map(|w| match w.trim().parse::<u32>() {
            Ok(w) if (16..=4096).contains(&w) => Ok(w),
            _ => Err(format!("{w:?} is not a width from 16 to 4096")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    widths.sort_unstable();
    widths.dedup();
    Ok(widths)
}

impl MediaSettings {
    pub fn from_vars(v: &Vars<'_>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let bytes = |key: &str, default: u64| -> Result<u64, ConfigError> {
            match v.number::<u64>(key, "a number of bytes")? {
                Some(0) => Err(ConfigError::new(key, "0", "must be positive")),
                Some(n) => Ok(n),
                None => Ok(default),
            }
        };
        Ok(Self {
            store_url: v
                .url("MEDIA_STORE_URL", &["memory", "file", "s3"])?
                .unwrap_or(d.store_url),
            s3_endpoint: v.url("MEDIA_S3_ENDPOINT", &["http", "https"])?,
            max_upload_bytes: bytes("MEDIA_MAX_UPLOAD_BYTES", d.max_upload_bytes)?,
            max_pixels: bytes("MEDIA_MAX_PIXELS", d.max_pixels)?,
            decode_memory_bytes: bytes("MEDIA_DECODE_MEMORY_BYTES", d.decode_memory_bytes)?,
            thumbnail_widths: v
                .parse_with("MEDIA_THUMBNAIL_WIDTHS", widths)?
                .unwrap_or(d.thumbnail_widths),
            workers: v.positive_number("MEDIA_WORKERS", d.workers as u32)? as usize,
            sweep_interval: v.positive_millis("MEDIA_SWEEP_INTERVAL_MS", d.sweep_interval)?,
            grace: v
                .parse_with("MEDIA_GRACE", parse_duration)?
                .unwrap_or(d.grace),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::widths;

    #[test]
    fn thumbnail_widths_are_sorted_and_bounded() {
        assert_eq!(widths("480, 160,1024,160"), Ok(vec![160, 480, 1024]));
        assert!(widths("0").is_err());
        assert!(widths("big").is_err());
        assert!(widths("8000").is_err());
    }
}
