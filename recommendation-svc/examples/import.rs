//! Streams invoice lines in the Online Retail format into a running
//! recommendation-svc (`ImportInteractions`, admin):
//!
//! ```sh
//! cargo run --release -p recommendation-svc --example import -- \
//!   --data ../shared/datasets/online-retail/online_retail.csv.gz [--addr http://127.0.0.1:50054]
//! ```
//!
//! Each purchase row (a known customer, quantity > 0, not a cancellation,
//! not a postage or fee code) becomes a PURCHASE interaction of product
//! `StockCode` by user `CustomerID`. Rows that do not parse are reported
//! with their line number and skipped; the import never stops for them.
//! Dataset: Chen, D. (2015), Online Retail, UCI Machine Learning
//! Repository, https://doi.org/10.24432/C5BW33, CC BY 4.0.

use std::io::BufReader;

use platform::config::PeerAddr;
use proto::recommendation::recommendation_service_client::RecommendationServiceClient;
use proto::recommendation::{Interaction, interaction};
use recommendation_svc::dataset;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut data = None;
    let mut addr = "http://127.0.0.1:50054".to_string();
    let mut token = std::env::var("SHOPMESH_TOKEN").ok();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--data" => data = args.next(),
            "--addr" => addr = args.next().unwrap_or(addr),
            "--token" => token = args.next(),
            other => anyhow::bail!(
                "unknown argument {other}; usage: --data <csv[.gz]> [--addr <url>] [--token <admin access token>]"
            ),
        }
    }
    let data = data.ok_or_else(|| anyhow::anyhow!("--data <online_retail.csv.gz> is required"))?;
    // The service verifies who imports: an admin's access token, as
    // POST /api/v1/auth/login on the gateway returns it.
    let token = token.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
        anyhow::anyhow!("an admin access token is required: --token or SHOPMESH_TOKEN")
    })?;
    let peer: PeerAddr = addr.parse().map_err(|e| anyhow::anyhow!("--addr: {e}"))?;
    let channel = platform::grpc::channel(&peer, &platform::config::GrpcSettings::default())?;
    let mut client = RecommendationServiceClient::new(channel);

    let (tx, rx) = tokio::sync::mpsc::channel::<Interaction>(1024);
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<dataset::Parsed> {
        let file = std::fs::File::open(&data)?;
        let input: Box<dyn std::io::BufRead> = if data.ends_with(".gz") {
            Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
        } else {
            Box::new(BufReader::new(file))
        };
        Ok(dataset::read(input, |row| {
            let _ = tx.blocking_send(Interaction {
                user_id: row.customer,
                product_id: row.stock_code,
                kind: interaction::Kind::Purchase as i32,
                quantity: row.quantity.clamp(1, i64::from(u32::MAX)) as u32,
                rating: 0,
                occurred_at: Some(prost_types::Timestamp {
                    seconds: row.at,
                    nanos: 0,
                }),
                category: String::new(),
                line: row.line,
            });
        }))
    });
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) });
    let mut request = tonic::Request::new(stream);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| anyhow::anyhow!("the token is not a valid header value"))?,
    );
    let summary = client.import_interactions(request).await?.into_inner();
    let parsed = reader.await??;
    println!(
        "rows {}  sent {}  skipped (not purchases) {}  malformed {}",
        parsed.rows,
        summary.received,
        parsed.skipped,
        parsed.malformed.len()
    );
    for m in &parsed.malformed {
        println!("  line {}: {}", m.line, m.reason);
    }
    println!(
        "imported {}  rejected {}  users {}",
        summary.imported, summary.rejected, summary.users
    );
    for r in &summary.rejections {
        println!("  line {}: {}", r.line, r.reason);
    }
    Ok(())
}
