//! recommendation-svc against real backends: product-svc for the catalog,
//! Postgres for the store (a schema per test), the in-process bus for
//! events.

use std::time::Duration;

use platform::config::PeerAddr;
use platform::events::envelope;
use platform::testing::{TestService, eventually};
use platform::{Config, Running, ServiceId};
use proto::events::envelope::Payload;
use proto::recommendation::recommendation_service_client::RecommendationServiceClient;
use proto::recommendation::{interaction, reason};
use recommendation_svc::RecommendationConfig;
use recommendation_svc::store::RecStore;

type Client = RecommendationServiceClient<platform::grpc::GrpcChannel>;

struct TestApp {
    config: Config,
    deps: platform::runtime::Deps,
    service: TestService,
    parts: Vec<Running>,
    products:
        proto::product::product_service_client::ProductServiceClient<platform::grpc::GrpcChannel>,
}

fn admin<T>(message: T) -> tonic::Request<T> {
    platform::testing::identity().as_user(message, "admin-1", "admin")
}

impl TestApp {
    async fn start() -> TestApp {
        let service = TestService::new("recommendation-svc", true, &[("SEED_DEMO", "false")]);
        let mut config = service.config.clone();
        let deps = platform::runtime::Deps::connect(&config).await.unwrap();
        let listener = platform::grpc::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        config.peers.set(
            ServiceId::Product,
            PeerAddr::from_socket(listener.local_addr().unwrap()),
        );
        let product = product_svc::serve(config.clone(), listener, deps.clone())
            .await
            .unwrap();
        let channel =
            platform::grpc::channel(config.peers.get(ServiceId::Product), &config.grpc).unwrap();
        TestApp {
            config,
            deps,
            service,
            parts: vec![product],
            products: proto::product::product_service_client::ProductServiceClient::new(channel),
        }
    }

    /// Starts a replica of recommendation-svc that trains on request only;
    /// returns its client.
    async fn replica(&mut self) -> Client {
        self.replica_with(None).await
    }

    /// A replica that also trains every `train_interval`.
    async fn replica_with(&mut self, train_interval: Option<Duration>) -> Client {
        let settings = RecommendationConfig {
            train_interval,
            model_refresh: Duration::from_millis(100),
            ..Default::default()
        };
        let listener = platform::grpc::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let running = recommendation_svc::serve_with(
            self.config.clone(),
            settings,
            listener,
            self.deps.clone(),
        )
        .await
        .unwrap();
        self.parts.push(running);
        let channel =
            platform::grpc::channel(&PeerAddr::from_socket(addr), &self.config.grpc).unwrap();
        RecommendationServiceClient::new(channel)
    }

    async fn store(&self) -> RecStore {
        let store = platform::store::Store::from_config(&self.config, "recommendation")
            .await
            .unwrap();
        RecStore::open(&store).await.unwrap()
    }

    async fn product(&self, sku: &str, category: &str) -> String {
        let r = self
            .products
            .clone()
            .create_product(admin(proto::product::CreateProductRequest {
                sku: sku.into(),
                name: format!("Product {sku}"),
                description: "d".into(),
                category: category.into(),
                price: Some(proto::common::Money::new(1000, "USD")),
                stock: 100,
                weight_grams: 0,
            }))
            .await
            .unwrap()
            .into_inner();
        r.product.unwrap().id
    }

    async fn publish(&self, event_type: &str, aggregate: &str, payload: Payload) {
        self.deps
            .bus
            .publish(&platform::testing::signed(&envelope(
                event_type, aggregate, "test", payload,
            )))
            .await
            .unwrap();
    }

    /// order.created + payment.processed for `user` buying `products`.
    async fn paid_order(&self, user: &str, products: &[&str]) -> String {
        let order_id = uuid::Uuid::now_v7().to_string();
        self.publish("payment.processed", &order_id, paid(&order_id, user))
            .await;
        self.publish(
            "order.created",
            &order_id,
            created(&order_id, user, products),
        )
        .await;
        order_id
    }

    async fn stop(self) {
        for part in self.parts.into_iter().rev() {
            part.shutdown().await;
        }
        self.service.cleanup(&["product", "recommendation"]).await;
    }
}

fn created(order_id: &str, user: &str, products: &[&str]) -> Payload {
    Payload::OrderCreated(proto::events::OrderCreated {
        order_id: order_id.into(),
        user_id: user.into(),
        items: products
            .iter()
            .map(|p| proto::events::OrderLine {
                product_id: p.to_string(),
                quantity: 1,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

fn paid(order_id: &str, user: &str) -> Payload {
    Payload::PaymentProcessed(proto::events::PaymentProcessed {
        payment_id: format!("pay-{order_id}"),
        order_id: order_id.into(),
        user_id: user.into(),
        ..Default::default()
    })
}

async fn purchases_logged(store: &RecStore, n: usize) {
    eventually("purchases in the log", async || {
        let mut count = 0;
        RecStore::scan(&store.orders, |_, o| count += usize::from(o.is_purchase()))
            .await
            .unwrap();
        count >= n
    })
    .await;
}

/// Trains and waits until `client` serves the new version.
async fn train(client: &Client) -> String {
    let started = client
        .clone()
        .train_model(admin(proto::recommendation::TrainModelRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(!started.already_running);
    let version = started.model_version;
    eventually("the trained model", async || {
        served_version(client).await.as_ref() == Some(&version)
    })
    .await;
    version
}

/// The version of the model `client` serves, if any.
async fn served_version(client: &Client) -> Option<String> {
    client
        .clone()
        .get_model_status(admin(proto::recommendation::GetModelStatusRequest {}))
        .await
        .unwrap()
        .into_inner()
        .current
        .map(|c| c.model_version)
}

async fn recommend(
    client: &Client,
    user: &str,
) -> proto::recommendation::GetRecommendationsResponse {
    client
        .clone()
        .get_recommendations(platform::testing::identity().as_user(
            proto::recommendation::GetRecommendationsRequest {
                user_id: user.into(),
                limit: 5,
                category: String::new(),
            },
            user,
            "customer",
        ))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn events_feed_the_log_and_training_changes_the_recommendations() {
    let mut app = TestApp::start().await;
    let client = app.replica().await;
    let (a, b, c) = (
        app.product("A-1", "kitchen").await,
        app.product("B-1", "kitchen").await,
        app.product("C-1", "garden").await,
    );
    for i in 0..4 {
        app.paid_order(&format!("pair-{i}"), &[&a, &b]).await;
    }
    for i in 0..6 {
        app.paid_order(&format!("pop-{i}"), &[&c]).await;
    }
    app.paid_order("shopper", &[&a]).await;
    let store = app.store().await;
    purchases_logged(&store, 11).await;

    // No model yet: popularity counted from the log as it is.
    let before = recommend(&client, "shopper").await;
    assert!(before.model_version.is_empty(), "{before:?}");
    assert_eq!(
        before.products.first().map(|p| p.product_id.as_str()),
        Some(c.as_str()),
        "the most bought first: {before:?}"
    );
    assert!(
        before.products.iter().all(|p| p.product_id != a),
        "never what was bought: {before:?}"
    );

    let version = train(&client).await;
    let after = recommend(&client, "shopper").await;
    assert_eq!(after.model_version, version);
    assert!(!after.fallback);
    let first = &after.products[0];
    assert_eq!(
        first.product_id, b,
        "bought together outranks popular: {after:?}"
    );
    let why = first.reason.clone().unwrap();
    assert_eq!(why.kind, reason::Kind::BoughtWith as i32);
    assert_eq!(why.product_id, a);
    assert!(
        after.products.iter().all(|p| p.product_id != a),
        "never what was bought"
    );
    assert!(
        after.products.iter().any(|p| p.product_id == c),
        "popular fills in"
    );

    let stranger = recommend(&client, "nobody").await;
    assert!(stranger.fallback);
    assert_eq!(
        stranger.products[0].product_id, c,
        "popular first for unknown users"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_product_that_sells_out_stops_being_recommended_once_the_catalog_answer_expires() {
    let mut app = TestApp::start().await;
    let client = app.replica().await;
    let (a, b) = (
        app.product("S-1", "kitchen").await,
        app.product("S-2", "kitchen").await,
    );
    for i in 0..5 {
        app.paid_order(&format!("fan-{i}"), &[&a]).await;
    }
    app.paid_order("other", &[&b]).await;
    purchases_logged(&app.store().await, 6).await;
    train(&client).await;
    let first = recommend(&client, "stranger").await;
    assert_eq!(first.products[0].product_id, a, "{first:?}");
    // Remembered now; selling out must still take it off the list.
    app.products
        .clone()
        .update_stock(admin(proto::product::UpdateStockRequest {
            product_id: a.clone(),
            change: Some(proto::product::update_stock_request::Change::Stock(0)),
        }))
        .await
        .unwrap();
    eventually("the sold-out product to leave the list", async || {
        let r = recommend(&client, "stranger").await;
        r.products.iter().all(|p| p.product_id != a) && !r.products.is_empty()
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_paid_then_refunded_order_leaves_no_purchase_in_any_delivery_order() {
    let mut app = TestApp::start().await;
    let _client = app.replica().await;
    let a = app.product("R-1", "kitchen").await;
    let order_id = uuid::Uuid::now_v7().to_string();
    let refund = Payload::PaymentRefunded(proto::events::PaymentRefunded {
        refund_id: "rf-1".into(),
        payment_id: "pay".into(),
        order_id: order_id.clone(),
        user_id: "refunded".into(),
        fully_refunded: true,
        ..Default::default()
    });
    // The refund overtakes everything, and the payment comes twice.
    app.publish("payment.refunded", &order_id, refund).await;
    app.publish("payment.processed", &order_id, paid(&order_id, "refunded"))
        .await;
    app.publish(
        "order.created",
        &order_id,
        created(&order_id, "refunded", &[&a]),
    )
    .await;
    app.publish("payment.processed", &order_id, paid(&order_id, "refunded"))
        .await;
    // A control order that stays paid, published last.
    app.paid_order("kept", &[&a]).await;
    let store = app.store().await;
    purchases_logged(&store, 1).await;
    let record = store.orders.get(&order_id).await.unwrap().value;
    assert!(record.created && record.paid && record.refunded);
    assert!(!record.is_purchase());
    let trainer = recommendation_svc::training::Trainer {
        store: store.clone(),
        catalog: recommendation_svc::catalog::Catalog::new(
            platform::grpc::channel(app.config.peers.get(ServiceId::Product), &app.config.grpc)
                .unwrap(),
            Duration::ZERO,
        ),
        serving: Default::default(),
        params: Default::default(),
        lease_ttl: Duration::from_secs(60),
        holder: "test".into(),
        live: Default::default(),
    };
    let data = trainer.training_data().await.unwrap();
    assert_eq!(data.users.len(), 1, "only the kept order is an interaction");
    assert_eq!(data.categories.get(&a).map(String::as_str), Some("kitchen"));
    app.stop().await;
}

#[tokio::test]
async fn two_replicas_on_one_store_serve_the_same_model_after_one_trains() {
    let mut app = TestApp::start().await;
    let first = app.replica().await;
    let second = app.replica().await;
    let (a, b) = (app.product("S-1", "x").await, app.product("S-2", "x").await);
    for i in 0..3 {
        app.paid_order(&format!("u{i}"), &[&a, &b]).await;
    }
    purchases_logged(&app.store().await, 3).await;
    let version = train(&first).await;
    eventually("the second replica to serve it", async || {
        let r = recommend(&second, "u0").await;
        r.model_version == version
    })
    .await;
    // Training again while a run holds the lease starts nothing new.
    let one = first
        .clone()
        .train_model(admin(proto::recommendation::TrainModelRequest {}))
        .await
        .unwrap()
        .into_inner();
    let two = second
        .clone()
        .train_model(admin(proto::recommendation::TrainModelRequest {}))
        .await
        .unwrap()
        .into_inner();
    if two.already_running {
        assert_eq!(two.model_version, one.model_version);
    }
    app.stop().await;
}

#[tokio::test]
async fn imports_store_valid_rows_and_report_bad_ones_by_line() {
    let mut app = TestApp::start().await;
    let client = app.replica().await;
    let at = Some(proto::ext::from_secs(1_300_000_000));
    let row =
        |line: u64, user: &str, product: &str, quantity: u32| proto::recommendation::Interaction {
            user_id: user.into(),
            product_id: product.into(),
            kind: interaction::Kind::Purchase as i32,
            quantity,
            rating: 0,
            occurred_at: at,
            category: String::new(),
            line,
        };
    let rows = vec![
        row(2, "c1", "p1", 1),
        row(3, "c1", "p2", 2),
        row(4, "", "p2", 1),
        row(5, "c2", "p1", 0),
        row(6, "c2", "p2", 1),
    ];
    let denied = client
        .clone()
        .import_interactions(platform::testing::identity().as_user(
            tokio_stream::iter(rows.clone()),
            "c1",
            "customer",
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let summary = client
        .clone()
        .import_interactions(admin(tokio_stream::iter(rows)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (summary.received, summary.imported, summary.rejected),
        (5, 3, 2)
    );
    let lines: Vec<u64> = summary.rejections.iter().map(|r| r.line).collect();
    assert_eq!(lines, vec![4, 5]);
    let store = app.store().await;
    let c1 = store.profile("c1").await.unwrap();
    assert_eq!(c1.imported.len(), 2);
    assert_eq!(store.profile("c2").await.unwrap().imported.len(), 1);

    let limit = client
        .clone()
        .get_recommendations(admin(proto::recommendation::GetRecommendationsRequest {
            user_id: "c1".into(),
            limit: 101,
            category: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(limit.code(), tonic::Code::InvalidArgument);
    let other = client
        .clone()
        .get_recommendations(platform::testing::identity().as_user(
            proto::recommendation::GetRecommendationsRequest {
                user_id: "c1".into(),
                limit: 5,
                category: String::new(),
            },
            "c2",
            "customer",
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), tonic::Code::PermissionDenied);
    app.stop().await;
}

#[tokio::test]
async fn a_store_without_a_model_trains_one_at_start() {
    let mut app = TestApp::start().await;
    // Scheduled training once an hour: the first model must not wait for it.
    let client = app.replica_with(Some(Duration::from_secs(3600))).await;
    eventually("a model trained at start", async || {
        served_version(&client).await.is_some()
    })
    .await;
    // That model knows no purchase: the first ones are counted live.
    let a = app.product("F-1", "kitchen").await;
    for i in 0..3 {
        app.paid_order(&format!("first-{i}"), &[&a]).await;
    }
    purchases_logged(&app.store().await, 3).await;
    eventually("the first purchases recommended", async || {
        let served = recommend(&client, "newcomer").await;
        served.products.first().map(|p| p.product_id.as_str()) == Some(a.as_str())
    })
    .await;
    app.stop().await;
}
