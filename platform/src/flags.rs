//! Fault flags: faults an operator switches on in a running deployment to
//! watch what traces, metrics, dead letters and customers see, and that
//! the saga's invariants hold all the same.
//!
//! The flags file (`FLAGS_FILE`) is in the flagd / OpenFeature flag
//! definition format, so flagd can serve the same file:
//!
//! ```json
//! {"$schema": "https://flagd.dev/schema/v0/flags.json",
//!  "flags": {"paymentDeclineRate": {"state": "ENABLED",
//!    "variants": {"off": 0, "half": 0.5}, "defaultVariant": "off"}}}
//! ```
//!
//! A flag's value is its `defaultVariant`'s (targeting rules are refused:
//! every replica must see the same fault); a `DISABLED` flag is off. The
//! file is read at start (a bad file stops the process with one line that
//! names it) and again whenever it changes: a bad edit keeps the flags in
//! force and is logged once. Every flag this process knows is in
//! [`FLAGS`], with the invariant it threatens and what keeps it.
//!
//! A fault that fires adds a `feature_flag.evaluation` event to the current
//! span (`feature_flag.key`, `feature_flag.result.variant`,
//! `feature_flag.provider.name`, as OpenTelemetry names them) and counts in
//! `shop_fault_injected_total{flag}`; `shop_feature_flag{flag,variant}`
//! says which variant each flag is on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use serde_json::Value;

/// What a flag's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `true` or `false`.
    Switch,
    /// A fraction of calls, 0 to 1.
    Rate,
    /// Added latency in milliseconds, 0 to 60000.
    Millis,
    /// Per component (service or consumer name): a rate.
    RateBy,
    /// Per component: milliseconds.
    MillisBy,
}

/// A flag this mesh knows.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    pub key: &'static str,
    pub kind: Kind,
    /// What it does, which invariant it threatens and what keeps it.
    pub description: &'static str,
}

pub const PAYMENT_DECLINE_RATE: &str = "paymentDeclineRate";
pub const PAYMENT_OUTAGE: &str = "paymentProviderOutage";
pub const PAYMENT_LATENCY: &str = "paymentProviderLatencyMs";
pub const CARRIER_OUTAGE: &str = "carrierOutage";
pub const CARRIER_LATENCY: &str = "carrierLatencyMs";
pub const SERVICE_LATENCY: &str = "serviceLatencyMs";
pub const SERVICE_ERROR_RATE: &str = "serviceErrorRate";
pub const EVENT_FAILURE_RATE: &str = "eventHandlerFailureRate";
pub const CACHE_OUTAGE: &str = "cacheOutage";
pub const STORE_LATENCY: &str = "storeLatencyMs";

/// Every flag, in the order the admin page lists them.
pub const FLAGS: &[Flag] = &[
    Flag {
        key: PAYMENT_DECLINE_RATE,
        kind: Kind::Rate,
        description: "The simulated payment provider declines this fraction of charges. \
            Threatens: an order marked paid without money, or money kept for an unpaid order. \
            Kept by: a decline is a FAILED payment, the order PAYMENT_FAILED and payable again; \
            stock stays reserved until it expires.",
    },
    Flag {
        key: PAYMENT_OUTAGE,
        kind: Kind::Switch,
        description: "The simulated payment provider is unreachable (UNAVAILABLE). \
            Threatens: a charge made twice, or an order stuck paying. \
            Kept by: the attempt is recorded before the provider is called and keyed per \
            order and Idempotency-Key; clients get 503 with Retry-After and retry the same key.",
    },
    Flag {
        key: PAYMENT_LATENCY,
        kind: Kind::Millis,
        description: "The simulated payment provider answers this many milliseconds late. \
            Threatens: a payment that outlives its caller's deadline and lands on a cancelled \
            order. Kept by: deadlines end the call (504), a late success for an order that no \
            longer takes it is refunded.",
    },
    Flag {
        key: CARRIER_OUTAGE,
        kind: Kind::Switch,
        description: "The simulated carrier is unreachable when a label is bought. \
            Threatens: a paid order that never ships. Kept by: payment.processed is waited out \
            (never dead-lettered for an outage) until the carrier is back.",
    },
    Flag {
        key: CARRIER_LATENCY,
        kind: Kind::Millis,
        description: "The simulated carrier answers this many milliseconds late. \
            Threatens: two labels for one shipment. Kept by: the purchase is announced on the \
            shipment first and keyed by its id.",
    },
    Flag {
        key: SERVICE_LATENCY,
        kind: Kind::MillisBy,
        description: "Adds latency to every gRPC call a named service serves \
            ({\"product-svc\": 300}). Threatens: retries that double an effect, reservations \
            held by orders that never finish. Kept by: idempotency keys on every write, \
            reservations owned by the order id and swept when they expire.",
    },
    Flag {
        key: SERVICE_ERROR_RATE,
        kind: Kind::RateBy,
        description: "A named service answers this fraction of its gRPC calls with UNAVAILABLE \
            before handling them ({\"order-svc\": 0.2}). Threatens: a saga left half done. \
            Kept by: callers retry idempotent calls, the breaker opens, saga steps are durable \
            and retried by their relay.",
    },
    Flag {
        key: EVENT_FAILURE_RATE,
        kind: Kind::RateBy,
        description: "A named consumer's handler fails this fraction of deliveries \
            ({\"shipping-svc\": 0.5}). Threatens: an event lost or applied twice. Kept by: \
            at-least-once redelivery with backoff, idempotent handlers, dead letters after the \
            retries (replay with `shopmesh dead-letters replay <consumer>`).",
    },
    Flag {
        key: CACHE_OUTAGE,
        kind: Kind::Switch,
        description: "product-svc's Redis cache answers nothing. Threatens: a stale product \
            read after the outage (invalidations made during it are lost). Kept by: reads fall \
            through to the store meanwhile, cached entries live at most PRODUCT_CACHE_TTL, and \
            orders price and reserve from the store, never the cache.",
    },
    Flag {
        key: STORE_LATENCY,
        kind: Kind::MillisBy,
        description: "A named service's store calls take this many milliseconds longer \
            ({\"order-svc\": 200}). Threatens: lost updates between racing writers. Kept by: \
            every write is a compare-and-set on the document's version.",
    },
];

fn flag(key: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.key == key)
}

/// One flag as the file states it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct State {
    pub key: String,
    pub enabled: bool,
    pub variant: String,
    pub value: Value,
    pub variants: BTreeMap<String, Value>,
}

/// The flags in force.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flags {
    states: BTreeMap<String, State>,
}

impl Flags {
    /// Parses a flags file's text; the error names what is wrong.
    pub fn parse(text: &str) -> Result<Flags, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let Some(flags) = doc.get("flags").and_then(Value::as_object) else {
            return Err("no \"flags\" object".into());
        };
        let mut states = BTreeMap::new();
        for (key, def) in flags {
            let known = flag(key).ok_or_else(|| {
                format!(
                    "unknown flag {key:?} (known: {})",
                    FLAGS.iter().map(|f| f.key).collect::<Vec<_>>().join(", ")
                )
            })?;
            let enabled = match def.get("state").and_then(Value::as_str) {
                Some("ENABLED") => true,
                Some("DISABLED") => false,
                _ => return Err(format!("{key}: \"state\" must be ENABLED or DISABLED")),
            };
            let variants: BTreeMap<String, Value> = def
                .get("variants")
                .and_then(Value::as_object)
                .ok_or_else(|| format!("{key}: no \"variants\" object"))?
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (name, value) in &variants {
                check(known.kind, value).map_err(|e| format!("{key}: variant {name:?} {e}"))?;
            }
            let variant = def
                .get("defaultVariant")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{key}: no \"defaultVariant\""))?;
            let value = variants
                .get(variant)
                .cloned()
                .ok_or_else(|| format!("{key}: defaultVariant {variant:?} is not a variant"))?;
            if def
                .get("targeting")
                .is_some_and(|t| t.as_object().is_none_or(|o| !o.is_empty()))
            {
                return Err(format!(
                    "{key}: targeting rules are not supported (every replica must see the same fault)"
                ));
            }
            states.insert(
                key.clone(),
                State {
                    key: key.clone(),
                    enabled,
                    variant: variant.to_string(),
                    value,
                    variants,
                },
            );
        }
        Ok(Flags { states })
    }

    /// Every known flag: its state in this set, or none when the file does
    /// not name it (off).
    pub fn all(&self) -> Vec<(&'static Flag, Option<&State>)> {
        FLAGS.iter().map(|f| (f, self.states.get(f.key))).collect()
    }

    /// The value in force: none when the flag is absent or disabled.
    fn value(&self, key: &str) -> Option<(&str, &Value)> {
        let state = self.states.get(key).filter(|s| s.enabled)?;
        Some((state.variant.as_str(), &state.value))
    }
}

fn check(kind: Kind, value: &Value) -> Result<(), String> {
    let rate = |v: &Value| v.as_f64().is_some_and(|r| (0.0..=1.0).contains(&r));
    let millis = |v: &Value| v.as_f64().is_some_and(|m| (0.0..=60_000.0).contains(&m));
    let ok = match kind {
        Kind::Switch => value.is_boolean(),
        Kind::Rate => rate(value),
        Kind::Millis => millis(value),
        Kind::RateBy => value.as_object().is_some_and(|o| o.values().all(rate)),
        Kind::MillisBy => value.as_object().is_some_and(|o| o.values().all(millis)),
    };
    if ok {
        return Ok(());
    }
    Err(match kind {
        Kind::Switch => "must be true or false".into(),
        Kind::Rate => "must be a number from 0 to 1".into(),
        Kind::Millis => "must be milliseconds from 0 to 60000".into(),
        Kind::RateBy => "must map component names to numbers from 0 to 1".into(),
        Kind::MillisBy => "must map component names to milliseconds from 0 to 60000".into(),
    })
}

static CURRENT: LazyLock<RwLock<Arc<Flags>>> = LazyLock::new(Default::default);

fn current() -> Arc<Flags> {
    CURRENT.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Puts `flags` in force in this process (and says so in the metrics).
pub fn set(flags: Flags) {
    let gauge = &*crate::metrics::FEATURE_FLAGS;
    gauge.reset();
    for (f, state) in flags.all() {
        let variant = match state {
            Some(s) if s.enabled => s.variant.as_str(),
            Some(_) => "disabled",
            None => "absent",
        };
        gauge.with_label_values(&[f.key, variant]).set(1);
    }
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(flags);
}

/// The flags in force.
pub fn snapshot() -> Arc<Flags> {
    current()
}

/// A fault fired: the span event and the counter.
fn fired(key: &str, variant: &str) {
    tracing::info!(
        feature_flag.key = key,
        feature_flag.result.variant = variant,
        feature_flag.provider.name = "shopmesh-flags-file",
        "feature_flag.evaluation"
    );
    crate::metrics::count(&crate::metrics::FAULTS, &[key]);
}

/// Whether switch `key` is on (and, if so, the fault is recorded).
pub fn on(key: &str) -> bool {
    let flags = current();
    match flags.value(key) {
        Some((variant, Value::Bool(true))) => {
            fired(key, variant);
            true
        }
        _ => false,
    }
}

/// Whether this call is among the fraction `rate` flag `key` picks (for
/// `name` when the flag is per component).
pub fn hits(key: &str, name: Option<&str>) -> bool {
    let flags = current();
    let Some((variant, value)) = flags.value(key) else {
        return false;
    };
    let rate = match name {
        Some(name) => value.get(name).and_then(Value::as_f64),
        None => value.as_f64(),
    }
    .unwrap_or(0.0);
    if rate > 0.0 && rand::random::<f64>() < rate {
        fired(key, variant);
        true
    } else {
        false
    }
}

/// The latency flag `key` adds (for `name` when per component).
pub fn delay(key: &str, name: Option<&str>) -> Option<Duration> {
    let flags = current();
    let (variant, value) = flags.value(key)?;
    let ms = match name {
        Some(name) => value.get(name).and_then(Value::as_f64),
        None => value.as_f64(),
    }
    .filter(|ms| *ms > 0.0)?;
    fired(key, variant);
    Some(Duration::from_secs_f64(ms / 1000.0))
}

/// Sleeps for the latency flag `key` adds, if any.
pub async fn pause(key: &str, name: Option<&str>) {
    if let Some(d) = delay(key, name) {
        tokio::time::sleep(d).await;
    }
}

/// Reads `path` and puts its flags in force; the error is one line that
/// names the file.
pub fn load(path: &Path) -> Result<(), String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("flags file {}: {e}", path.display()))?;
    let flags = Flags::parse(&text).map_err(|e| format!("flags file {}: {e}", path.display()))?;
    set(flags);
    Ok(())
}

/// Versions of a flags file refused on reload (each logged once).
static REFUSED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Reloads `path` whenever it changes (checked every `every`) until
/// `cancel`: a bad version keeps the flags in force and is logged once.
pub fn watch(
    path: PathBuf,
    every: Duration,
    cancel: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    // What is in force came from the file as it is now.
    let mut last = std::fs::read(&path).ok();
    tokio::spawn(async move {
        let mut refused: Option<Vec<u8>> = None;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            if last.as_ref() == Some(&bytes) || refused.as_ref() == Some(&bytes) {
                continue;
            }
            match Flags::parse(&String::from_utf8_lossy(&bytes)) {
                Ok(flags) => {
                    tracing::info!(file = %path.display(), "fault flags reloaded");
                    set(flags);
                    last = Some(bytes);
                    refused = None;
                }
                Err(err) => {
                    REFUSED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(file = %path.display(), error = %err, "the flags file is invalid; the flags in force stay");
                    refused = Some(bytes);
                }
            }
        }
    })
}

/// Sets flag `key` to `variant` in the file at `path` (development:
/// `FLAGS_WRITABLE=true`), enabling it, and puts the result in force.
pub fn write_variant(path: &Path, key: &str, variant: &str) -> Result<(), String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("flags file {}: {e}", path.display()))?;
    let mut doc: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let def = doc
        .get_mut("flags")
        .and_then(|f| f.get_mut(key))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| format!("the flags file has no flag {key:?}"))?;
    if !def
        .get("variants")
        .and_then(Value::as_object)
        .is_some_and(|v| v.contains_key(variant))
    {
        return Err(format!("{key} has no variant {variant:?}"));
    }
    def.insert("defaultVariant".into(), Value::String(variant.into()));
    def.insert("state".into(), Value::String("ENABLED".into()));
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    let flags = Flags::parse(&text)?;
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, text.as_bytes()).map_err(|e| e.to_string())?;
    std::fs::rename(&temp, path).map_err(|e| e.to_string())?;
    set(flags);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::{
        CACHE_OUTAGE, CARRIER_OUTAGE, Flags, PAYMENT_DECLINE_RATE, REFUSED, SERVICE_LATENCY, load,
        set, snapshot, watch,
    };
    use serde_json::Value;

    const FILE: &str = r#"{"$schema": "https://flagd.dev/schema/v0/flags.json", "flags": {
        "paymentDeclineRate": {"state": "ENABLED", "variants": {"off": 0, "all": 1}, "defaultVariant": "all"},
        "carrierOutage": {"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
        "serviceLatencyMs": {"state": "ENABLED", "variants": {"off": {}, "slow": {"product-svc": 250}}, "defaultVariant": "slow"}
    }}"#;

    #[test]
    fn the_default_variant_of_an_enabled_flag_is_in_force() {
        let flags = Flags::parse(FILE).unwrap();
        assert_eq!(
            flags.value(PAYMENT_DECLINE_RATE).map(|(v, _)| v),
            Some("all")
        );
        assert_eq!(flags.value(CARRIER_OUTAGE), None, "disabled is off");
        assert_eq!(flags.value(CACHE_OUTAGE), None, "absent is off");
        assert_eq!(flags.value(SERVICE_LATENCY).unwrap().1["product-svc"], 250);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        for (text, says) in [
            ("{", "not JSON"),
            (
                r#"{"flags": {"noSuchFlag": {}}}"#,
                "unknown flag \"noSuchFlag\"",
            ),
            (
                r#"{"flags": {"cacheOutage": {"state": "ON", "variants": {}, "defaultVariant": "x"}}}"#,
                "ENABLED or DISABLED",
            ),
            (
                r#"{"flags": {"paymentDeclineRate": {"state": "ENABLED", "variants": {"x": 2}, "defaultVariant": "x"}}}"#,
                "from 0 to 1",
            ),
            (
                r#"{"flags": {"cacheOutage": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "off"}}}"#,
                "not a variant",
            ),
            (
                r#"{"flags": {"cacheOutage": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "targeting": {"if": []}}}}"#,
                "targeting",
            ),
        ] {
            let err = Flags::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[tokio::test]
    async fn a_bad_edit_keeps_the_flags_in_force_and_is_refused_once() {
        use std::sync::atomic::Ordering;
        let dir = std::env::temp_dir().join(format!("flags-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("flags.json");
        let with = |variant: &str| {
            format!(
                r#"{{"flags": {{"paymentDeclineRate": {{"state": "ENABLED", "variants": {{"off": 0, "all": 1}}, "defaultVariant": "{variant}"}}}}}}"#
            )
        };
        // Whole files only, as an editor or the kubelet replaces them.
        let put = |text: String| {
            let temp = dir.join("next.json");
            std::fs::write(&temp, text).unwrap();
            std::fs::rename(&temp, &file).unwrap();
        };
        put(with("all"));
        load(&file).unwrap();
        let declining = |f: &Flags| f.value(PAYMENT_DECLINE_RATE).map(|(v, _)| v.to_string());
        assert_eq!(declining(&snapshot()).as_deref(), Some("all"));
        let cancel = tokio_util::sync::CancellationToken::new();
        let task = watch(file.clone(), Duration::from_millis(20), cancel.clone());
        let refused = REFUSED.load(Ordering::Relaxed);
        put("{\"flags\": ".into());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while REFUSED.load(Ordering::Relaxed) == refused {
            assert!(
                std::time::Instant::now() < deadline,
                "never read the bad edit"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(declining(&snapshot()).as_deref(), Some("all"), "kept");
        put(with("off"));
        while declining(&snapshot()).as_deref() != Some("off") {
            assert!(std::time::Instant::now() < deadline, "never reloaded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            REFUSED.load(Ordering::Relaxed),
            refused + 1,
            "the bad version was refused once, however often it was read"
        );
        cancel.cancel();
        task.await.unwrap();
        set(Flags::default());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_shipped_files_turn_every_flag_off() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let compose = std::fs::read(root.join("deploy/flags/flags.json")).unwrap();
        let k8s = std::fs::read(root.join("deploy/k8s/base/flags.json")).unwrap();
        assert_eq!(compose, k8s, "compose and Kubernetes ship the same flags");
        for file in ["deploy/flags/flags.json"] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            let flags = Flags::parse(&text).unwrap();
            for (f, state) in flags.all() {
                let state = state.unwrap_or_else(|| panic!("{file} lacks {}", f.key));
                assert_eq!(state.variant, "off", "{file}: {} is on", f.key);
                assert!(flags.value(f.key).is_none_or(|(_, v)| {
                    v == &Value::Bool(false)
                        || v.as_f64() == Some(0.0)
                        || v.as_object().is_some_and(|o| o.is_empty())
                }));
            }
        }
    }
}
