//! Offline evaluation on invoice lines in the Online Retail format
//! (dataset: Chen, D. (2015), Online Retail, UCI Machine Learning
//! Repository, https://doi.org/10.24432/C5BW33, CC BY 4.0):
//!
//! ```sh
//! cargo run --release -p recommendation-svc --example evaluate -- \
//!   --data ../shared/datasets/online-retail/online_retail.csv.gz --cutoff 2011-09-01 [--dump top10.jsonl]
//! ```
//!
//! Trains on the lines before the cutoff; tests each customer known before
//! it on the products they bought on or after it and had not bought
//! before. Prints recall@10, NDCG@10 and catalog coverage of popularity and
//! EASE, training time and peak RSS; `--dump` writes the best model's top
//! 10 per test customer as JSON lines.

use std::io::{BufReader, Write as _};
use std::time::Instant;

use recommendation_svc::dataset;
use recommendation_svc::model::{self, Algorithm, TrainParams};

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() -> anyhow::Result<()> {
    let mut data = None;
    let mut cutoff = None;
    let mut dump = None;
    let mut lambda = TrainParams::default().lambda;
    let mut neighbors = TrainParams::default().neighbors;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--data" => data = args.next(),
            "--cutoff" => cutoff = args.next(),
            "--dump" => dump = args.next(),
            "--lambda" => lambda = args.next().and_then(|l| l.parse().ok()).unwrap_or(lambda),
            "--neighbors" => {
                neighbors = args
                    .next()
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(neighbors)
            }
            other => anyhow::bail!(
                "unknown argument {other}; usage: --data <csv.gz> --cutoff <YYYY-MM-DD> [--dump <file>] [--lambda <l>]"
            ),
        }
    }
    let data = data.ok_or_else(|| anyhow::anyhow!("--data <online_retail.csv.gz> is required"))?;
    let cutoff_text = cutoff.ok_or_else(|| anyhow::anyhow!("--cutoff <YYYY-MM-DD> is required"))?;
    let cutoff = dataset::parse_date(&cutoff_text)
        .ok_or_else(|| anyhow::anyhow!("--cutoff {cutoff_text:?} is not YYYY-MM-DD"))?;

    let file = std::fs::File::open(&data)?;
    let reader: Box<dyn std::io::BufRead> = if data.ends_with(".gz") {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let parsed = dataset::read_all(reader);
    println!(
        "rows {}  purchases {}  skipped {}  malformed {}",
        parsed.rows,
        parsed.purchases.len(),
        parsed.skipped,
        parsed.malformed.len()
    );
    for m in parsed.malformed.iter().take(10) {
        println!("  malformed line {}: {}", m.line, m.reason);
    }
    let split = dataset::temporal_split(&parsed.purchases, cutoff);
    drop(parsed);
    println!(
        "cutoff {cutoff_text}: {} train customers, {} items, {} customer-item pairs, {} test customers",
        split.train.users.len(),
        {
            let mut items: Vec<&String> = split.train.users.iter().flat_map(|u| u.keys()).collect();
            items.sort();
            items.dedup();
            items.len()
        },
        split.train.interactions(),
        split.cases.len()
    );

    println!("\n| model | recall@10 | ndcg@10 | coverage | train s |");
    println!("|---|---|---|---|---|");
    let mut best = None;
    for (name, params) in [
        (
            "popularity (time-decayed)".to_string(),
            TrainParams {
                algorithm: Algorithm::Popularity,
                ..Default::default()
            },
        ),
        (
            format!("EASE, λ = {lambda}, {neighbors} weights kept per product"),
            TrainParams {
                lambda,
                neighbors,
                ..Default::default()
            },
        ),
    ] {
        let started = Instant::now();
        let m = model::train(&split.train, &params)?;
        let seconds = started.elapsed().as_secs_f64();
        let metrics = model::evaluate(&m, &split.cases, 10);
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} | {seconds:.2} |",
            metrics.recall, metrics.ndcg, metrics.coverage
        );
        if params.algorithm == Algorithm::Ease {
            println!(
                "\nEASE served tables: {:.1} MiB ({} products, {} with weights)",
                m.memory_bytes() as f64 / (1024.0 * 1024.0),
                m.items.len(),
                m.neighbors.iter().filter(|n| !n.is_empty()).count()
            );
        }
        best = Some(m);
    }
    println!("peak RSS: {:.0} MiB", peak_rss_mib());

    if let (Some(path), Some(m)) = (dump, best) {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for case in &split.cases {
            let items = model::recommend_ids(&m, &case.history, 10);
            writeln!(
                out,
                "{}",
                serde_json::json!({"customer": case.user, "items": items})
            )?;
        }
        out.flush()?;
        println!(
            "top 10 of {} customers written to {path}",
            split.cases.len()
        );
    }
    Ok(())
}
