//! `shopmesh-load` against a whole mesh for a few seconds: every operation of
//! its mix gets through at least once and nothing fails on the server side.

mod common;

use std::time::Duration;

use common::TestMesh;
use shopmesh_load::{Op, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_runs_every_operation_against_the_mesh() {
    let admin = ("load-admin@example.com", "load-admin-password");
    let mesh = TestMesh::start_with(&[
        ("RATE_LIMIT_RPS", "0"),
        ("ADMIN_EMAIL", admin.0),
        ("ADMIN_PASSWORD", admin.1),
    ])
    .await;
    let options = Options {
        base_url: mesh.mesh.gateway_url(),
        users: 4,
        duration: Duration::from_secs(5),
        // Every operation in each user's first round, one of each per round.
        in_order: true,
        mix: Op::MIX.iter().map(|&op| (op, 1)).collect(),
        ramp_up: Duration::from_millis(500),
        seed_catalog: Some(40),
        admin_email: Some(admin.0.into()),
        admin_password: Some(admin.1.into()),
        progress: false,
        ..Options::default()
    };
    let report = shopmesh_load::run(options)
        .await
        .expect("the run completes");
    println!("{}", report.table());

    for op in Op::ALL {
        let Some(stats) = report.operation(op.name()) else {
            panic!("{} was never sent", op.name());
        };
        let server_side: Vec<_> = stats
            .errors
            .iter()
            .filter(|(status, _)| *status == "0" || status.starts_with('5'))
            .collect();
        assert!(server_side.is_empty(), "{}: {server_side:?}", op.name());
        // A deployment without the recommendations route answers 404 to
        // every such call; anything else must have succeeded at least once.
        let route_missing = op == Op::Recommendations
            && stats.ok == 0
            && stats.errors.keys().all(|status| status == "404");
        assert!(
            stats.ok >= 1 || route_missing,
            "{} never succeeded: {:?}",
            op.name(),
            stats.errors
        );
    }
    // The catalog was seeded from the data set: its most-bought product is there.
    let top = &shopmesh_load::dataset::Dataset::sample().products[0];
    let path = format!("/api/v1/products?q={}&limit=100", top.stock_code);
    let listed = mesh.send(reqwest::Method::GET, &path, None, None).await;
    assert_eq!(listed.status, 200);
    let skus: Vec<&str> = listed.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["sku"].as_str())
        .collect();
    assert!(skus.contains(&top.sku().as_str()), "{skus:?}");
    mesh.shutdown().await;
}
