//! What a run measured, per operation: counts, latencies, errors by status.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// The operations of the mix (plus the sign-up and sign-in of each user).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Register,
    Login,
    Browse,
    Search,
    Product,
    Similar,
    Recommendations,
    Order,
    Pay,
    Cancel,
    CartAdd,
    Checkout,
    PageHome,
    PageSearch,
    PageProduct,
    PageCart,
    PageCheckout,
}

impl Op {
    pub const ALL: [Op; 17] = [
        Op::Register,
        Op::Login,
        Op::Browse,
        Op::Search,
        Op::Product,
        Op::Similar,
        Op::Recommendations,
        Op::Order,
        Op::Pay,
        Op::Cancel,
        Op::CartAdd,
        Op::Checkout,
        Op::PageHome,
        Op::PageSearch,
        Op::PageProduct,
        Op::PageCart,
        Op::PageCheckout,
    ];

    /// Operations a mix can weigh: all but signing up and in.
    pub const MIX: &'static [Op] = Op::ALL.as_slice().split_at(2).1;

    pub fn name(self) -> &'static str {
        match self {
            Op::Register => "register",
            Op::Login => "login",
            Op::Browse => "browse",
            Op::Search => "search",
            Op::Product => "product",
            Op::Similar => "similar",
            Op::Recommendations => "recommendations",
            Op::Order => "order",
            Op::Pay => "pay",
            Op::Cancel => "cancel",
            Op::CartAdd => "cart-add",
            Op::Checkout => "checkout",
            Op::PageHome => "page-home",
            Op::PageSearch => "page-search",
            Op::PageProduct => "page-product",
            Op::PageCart => "page-cart",
            Op::PageCheckout => "page-checkout",
        }
    }

    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    fn index(self) -> usize {
        Op::ALL.iter().position(|&o| o == self).unwrap_or(0)
    }
}

#[derive(Default)]
struct OpStats {
    /// Latency of every answered request, in microseconds.
    latencies: Vec<u32>,
    ok: u64,
    /// Failures by HTTP status; 0 is no answer (connect error, timeout).
    errors: BTreeMap<u16, u64>,
}

/// Shared by every virtual user while a run goes on.
pub struct Recorder {
    ops: Vec<Mutex<OpStats>>,
    total: AtomicU64,
    failed: AtomicU64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            ops: Op::ALL.iter().map(|_| Mutex::default()).collect(),
            total: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }
}

impl Recorder {
    /// One request of `op` that got `status` (0: no answer) after `took`.
    pub fn record(&self, op: Op, status: u16, took: Duration) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut stats = self.ops[op.index()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        stats
            .latencies
            .push(took.as_micros().min(u32::MAX as u128) as u32);
        // A page's form answers 303 See Other when it worked.
        if (200..300).contains(&status) || status == 303 {
            stats.ok += 1;
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
            *stats.errors.entry(status).or_default() += 1;
        }
    }

    /// Requests so far and how many failed.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.total.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    pub fn report(&self, elapsed: Duration, users: usize) -> Report {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let operations = Op::ALL
            .iter()
            .filter_map(|&op| {
                let mut stats = self.ops[op.index()]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if stats.latencies.is_empty() {
                    return None;
                }
                stats.latencies.sort_unstable();
                let requests = stats.latencies.len() as u64;
                let pct = |p: f64| {
                    let i =
                        ((p * requests as f64).ceil() as usize).clamp(1, stats.latencies.len()) - 1;
                    f64::from(stats.latencies[i]) / 1000.0
                };
                Some(OpReport {
                    operation: op.name(),
                    requests,
                    ok: stats.ok,
                    rps: requests as f64 / secs,
                    p50_ms: pct(0.50),
                    p95_ms: pct(0.95),
                    p99_ms: pct(0.99),
                    errors: stats
                        .errors
                        .iter()
                        .map(|(s, n)| (s.to_string(), *n))
                        .collect(),
                })
            })
            .collect();
        let (total, failed) = self.counts();
        Report {
            elapsed_secs: elapsed.as_secs_f64(),
            users,
            requests: total,
            failed,
            rps: total as f64 / secs,
            operations,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    pub operation: &'static str,
    pub requests: u64,
    pub ok: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// HTTP status ("0" for no answer) -> count.
    pub errors: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub elapsed_secs: f64,
    pub users: usize,
    pub requests: u64,
    pub failed: u64,
    pub rps: f64,
    pub operations: Vec<OpReport>,
}

impl Report {
    pub fn operation(&self, name: &str) -> Option<&OpReport> {
        self.operations.iter().find(|o| o.operation == name)
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  errors by status",
            "operation", "requests", "ok", "req/s", "p50 ms", "p95 ms", "p99 ms"
        );
        for o in &self.operations {
            let errors = if o.errors.is_empty() {
                "-".to_string()
            } else {
                o.errors
                    .iter()
                    .map(|(s, n)| {
                        if s == "0" {
                            format!("no answer: {n}")
                        } else {
                            format!("{s}: {n}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                out,
                "{:<16} {:>9} {:>9} {:>9.1} {:>9.1} {:>9.1} {:>9.1}  {errors}",
                o.operation, o.requests, o.ok, o.rps, o.p50_ms, o.p95_ms, o.p99_ms
            );
        }
        let _ = writeln!(
            out,
            "{:<16} {:>9} {:>9} {:>9.1}   ({} users, {:.1} s)",
            "total",
            self.requests,
            self.requests - self.failed,
            self.rps,
            self.users,
            self.elapsed_secs
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_errors_per_operation() {
        let recorder = Recorder::default();
        for ms in 1..=100 {
            recorder.record(Op::Product, 200, Duration::from_millis(ms));
        }
        recorder.record(Op::Similar, 404, Duration::from_millis(3));
        recorder.record(Op::Similar, 0, Duration::from_millis(5));
        recorder.record(Op::Similar, 404, Duration::from_millis(4));
        let report = recorder.report(Duration::from_secs(2), 4);
        let product = report.operation("product").unwrap();
        assert_eq!((product.requests, product.ok), (100, 100));
        assert_eq!(
            (product.p50_ms, product.p95_ms, product.p99_ms),
            (50.0, 95.0, 99.0)
        );
        assert_eq!(product.rps, 50.0);
        let similar = report.operation("similar").unwrap();
        assert_eq!(similar.ok, 0);
        assert_eq!(similar.errors.get("404"), Some(&2));
        assert_eq!(similar.errors.get("0"), Some(&1));
        assert!(
            report.operation("order").is_none(),
            "never sent, not listed"
        );
        assert_eq!((report.requests, report.failed), (103, 3));
        let table = report.table();
        assert!(table.contains("no answer: 1, 404: 2"), "{table}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["operations"][1]["errors"]["404"], 2);
    }

    #[test]
    fn names_round_trip() {
        for op in Op::ALL {
            assert_eq!(Op::from_name(op.name()), Some(op));
        }
        assert_eq!(Op::from_name("teleport"), None);
    }
}
