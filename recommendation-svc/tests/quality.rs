//! Offline quality on a slice of the Online Retail dataset (Chen, D.
//! (2015), Online Retail, UCI Machine Learning Repository,
//! https://doi.org/10.24432/C5BW33, CC BY 4.0), read from the shared
//! datasets folder beside the repository (`RETAIL_DATA` overrides the path).

use std::io::BufReader;

use recommendation_svc::dataset;
use recommendation_svc::model::{self, Algorithm, TrainParams};

fn data_path() -> String {
    std::env::var("RETAIL_DATA").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/datasets/online-retail/online_retail.csv.gz"
        )
        .to_string()
    })
}

#[test]
fn ease_beats_popularity_by_a_clear_margin_on_real_purchases() {
    let path = data_path();
    let file = std::fs::File::open(&path)
        .unwrap_or_else(|e| panic!("the Online Retail file at {path} ({e}); set RETAIL_DATA"));
    let parsed = dataset::read_all(BufReader::new(flate2::read::MultiGzDecoder::new(file)));
    assert!(parsed.purchases.len() > 300_000, "the whole file was read");
    // The slice: half the customers, from May 2011; test from October.
    let from = dataset::parse_date("2011-05-01").unwrap();
    let slice: Vec<_> = parsed
        .purchases
        .into_iter()
        .filter(|p| p.at >= from && p.customer.ends_with(['0', '2', '4', '6', '8']))
        .collect();
    let split = dataset::temporal_split(&slice, dataset::parse_date("2011-10-01").unwrap());
    assert!(
        split.cases.len() > 300,
        "{} test customers",
        split.cases.len()
    );
    let popularity = TrainParams {
        algorithm: Algorithm::Popularity,
        ..Default::default()
    };
    let ease = TrainParams {
        max_items: 1500,
        ..Default::default()
    };
    let p = model::evaluate(
        &model::train(&split.train, &popularity).unwrap(),
        &split.cases,
        10,
    );
    let e = model::evaluate(
        &model::train(&split.train, &ease).unwrap(),
        &split.cases,
        10,
    );
    eprintln!("popularity {p:?}\nEASE {e:?}");
    assert!(
        e.recall > 1.5 * p.recall && e.ndcg > 1.5 * p.ndcg,
        "EASE recall {:.3} ndcg {:.3} vs popularity {:.3} {:.3}",
        e.recall,
        e.ndcg,
        p.recall,
        p.ndcg
    );
    assert!(
        e.coverage > p.coverage,
        "personalised lists cover more of the catalog"
    );
}
