//! Shipping end to end: order → payment → label → carrier webhooks →
//! DELIVERED, and the order follows.

mod common;

use common::{TestMesh, WEBHOOK_SECRET as SECRET, assert_problem, eventually, signed, webhook};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_order_is_shipped_and_delivered() {
    let t = TestMesh::start_with(&[("SHIPPING_WEBHOOK_SECRET", SECRET)]).await;
    let (_, token, _) = t.customer().await;
    let products = t.get("/api/v1/products?q=mug", None).await;
    let mug = products.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let address = common::address();
    let order = t
        .post(
            "/api/v1/orders",
            Some(&token),
            json!({"items": [{"product_id": mug, "quantity": 2}], "shipping_address": address}),
        )
        .await;
    let oid = order.body["id"].as_str().unwrap().to_string();
    let shipment_path = format!("/api/v1/orders/{oid}/shipment");
    let pending = eventually(&t, &shipment_path, &token, "a prepared shipment", |b| {
        b["status"] == "PENDING"
    })
    .await;
    assert_eq!(pending["order_id"], oid.as_str());

    let card = common::card("4242424242424242");
    assert_eq!(
        t.post(&format!("/api/v1/orders/{oid}/payment"), Some(&token), card)
            .await
            .body["status"],
        "SUCCEEDED"
    );
    let labelled = eventually(&t, &shipment_path, &token, "a label", |b| {
        b["status"] == "LABEL_CREATED"
    })
    .await;
    let tracking = labelled["tracking_number"].as_str().unwrap().to_string();
    assert!(tracking.starts_with("SM"), "{tracking}");
    assert_eq!(labelled["carrier"], "shopmesh-post");

    let (_, stranger, _) = t.customer().await;
    assert_problem(&t.get(&shipment_path, Some(&stranger)).await, 404);

    let in_transit =
        json!({"tracking_number": tracking, "status": "IN_TRANSIT", "location": "Chicago, IL"});
    assert_problem(&webhook(&t, &in_transit, None).await, 401);
    assert_problem(
        &webhook(&t, &in_transit, Some("sha256=00".into())).await,
        401,
    );
    let tampered = json!({"tracking_number": tracking, "status": "DELIVERED"});
    assert_problem(&webhook(&t, &tampered, signed(&in_transit)).await, 401);

    let moved = webhook(&t, &in_transit, signed(&in_transit)).await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(moved.body["status"], "IN_TRANSIT");
    eventually(
        &t,
        &format!("/api/v1/orders/{oid}"),
        &token,
        "the order to be SHIPPED",
        |b| b["status"] == "SHIPPED",
    )
    .await;
    assert_problem(
        &t.post(
            &format!("/api/v1/orders/{oid}/cancel"),
            Some(&token),
            json!({}),
        )
        .await,
        409,
    );

    let out = json!({"tracking_number": tracking, "status": "OUT_FOR_DELIVERY"});
    assert_eq!(
        webhook(&t, &out, signed(&out)).await.body["status"],
        "OUT_FOR_DELIVERY"
    );
    let replay = webhook(&t, &in_transit, signed(&in_transit)).await;
    assert_eq!(replay.status, 200);
    assert_eq!(
        replay.body["status"], "OUT_FOR_DELIVERY",
        "a late update never moves a shipment backwards"
    );

    let delivered =
        json!({"tracking_number": tracking, "status": "DELIVERED", "location": "Springfield"});
    assert_eq!(
        webhook(&t, &delivered, signed(&delivered)).await.body["status"],
        "DELIVERED"
    );
    eventually(
        &t,
        &format!("/api/v1/orders/{oid}"),
        &token,
        "the order to be DELIVERED",
        |b| b["status"] == "DELIVERED",
    )
    .await;
    let history = t.get(&shipment_path, Some(&token)).await;
    let statuses: Vec<&str> = history.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "PENDING",
            "LABEL_CREATED",
            "IN_TRANSIT",
            "OUT_FOR_DELIVERY",
            "DELIVERED"
        ]
    );

    let unknown = json!({"tracking_number": "SM000000000000", "status": "IN_TRANSIT"});
    assert_problem(&webhook(&t, &unknown, signed(&unknown)).await, 404);
    let bad = json!({"tracking_number": tracking, "status": "TELEPORTED"});
    assert_problem(&webhook(&t, &bad, signed(&bad)).await, 422);
    t.shutdown().await;
}

#[tokio::test]
async fn without_a_secret_the_webhook_refuses_everything() {
    let t = TestMesh::start().await;
    let body = json!({"tracking_number": "SM1", "status": "IN_TRANSIT"});
    assert_problem(
        &webhook(
            &t,
            &body,
            Some(gateway::routes::shipping::sign(
                b"",
                &serde_json::to_vec(&body).unwrap(),
            )),
        )
        .await,
        401,
    );
    t.shutdown().await;
}
