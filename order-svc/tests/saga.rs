//! order-svc over real gRPC with its peers faked in-process (no network
//! behind it): stock given back when a creation fails half-way, a declined
//! payment that leaves the order payable, the refund of a cancelled paid
//! order, and the refund of a payment that arrives for a cancelled order.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use order_svc::peers::{Catalog, Payments, Peers, Shipments};
use platform::Running;
use platform::events::EventBus as _;
use platform::events::memory::InProcessBus;
use platform::runtime::Deps;
use platform::testing::{TestService, eventually};
use proto::common::Money;
use proto::order::order_service_client::OrderServiceClient;
use proto::order::*;
use proto::payment::{
    Card, CreatePaymentRequest, CreatePaymentResponse, Payment, PaymentStatus,
    ProcessRefundRequest, ProcessRefundResponse,
};
use proto::product::{
    CommitStockRequest, CommitStockResponse, ProductValidation, ReleaseStockRequest,
    ReleaseStockResponse, ReserveStockRequest, ReserveStockResponse, ValidateProductsRequest,
    ValidateProductsResponse,
};
use proto::shipping::{VoidShipmentRequest, VoidShipmentResponse};
use tonic::{Code, Request, Status};

const USER: &str = "user-1";
const GOOD_CARD: &str = "4242424242424242";
const DECLINED_CARD: &str = "4000000000000002";

/// product-svc in memory: units on sale per product, and the units each
/// order holds. A reservation takes every line or none.
#[derive(Debug, Default)]
struct FakeCatalog {
    state: Mutex<CatalogState>,
}

#[derive(Debug, Default)]
struct CatalogState {
    /// Product id -> (unit price in cents, units on sale).
    products: HashMap<String, (i64, u32)>,
    /// Order id -> (product id, units) it holds.
    reserved: HashMap<String, Vec<(String, u32)>>,
    committed: HashSet<String>,
    /// Reservations made, but answered as if the connection dropped.
    lose_reserve_answers: bool,
    /// ValidateProducts calls answered.
    validations: usize,
    /// (call, order id, affinity key) of every stock call.
    stock_calls: Vec<(&'static str, String, Option<String>)>,
}

/// The affinity key a call was sent with.
fn affinity<T>(request: &Request<T>) -> Option<String> {
    request
        .metadata()
        .get(platform::balance::AFFINITY_METADATA)
        .map(|v| v.to_str().unwrap().to_string())
}

impl FakeCatalog {
    fn with(products: &[(&str, i64, u32)]) -> Arc<Self> {
        let catalog = FakeCatalog::default();
        catalog.state.lock().unwrap().products = products
            .iter()
            .map(|(id, price, units)| (id.to_string(), (*price, *units)))
            .collect();
        Arc::new(catalog)
    }

    fn available(&self, product: &str) -> u32 {
        self.state.lock().unwrap().products[product].1
    }

    fn holds(&self, order: &str) -> bool {
        self.state.lock().unwrap().reserved.contains_key(order)
    }

    fn held_orders(&self) -> usize {
        self.state.lock().unwrap().reserved.len()
    }

    fn committed(&self, order: &str) -> bool {
        self.state.lock().unwrap().committed.contains(order)
    }

    fn validations(&self) -> usize {
        self.state.lock().unwrap().validations
    }

    /// Each stock call made for `order`, with its affinity key.
    fn stock_calls_of(&self, order: &str) -> Vec<(&'static str, Option<String>)> {
        let state = self.state.lock().unwrap();
        state
            .stock_calls
            .iter()
            .filter(|(_, id, _)| id == order)
            .map(|(call, _, key)| (*call, key.clone()))
            .collect()
    }
}

/// What the catalog says of product `id` priced `price` with `units` left.
fn validation(id: &str, price: i64, units: u32) -> ProductValidation {
    ProductValidation {
        product_id: id.to_string(),
        found: true,
        active: true,
        name: format!("product {id}"),
        sku: format!("SKU-{id}"),
        price: Some(Money::new(price, "USD")),
        stock_available: units,
        weight_grams: 100,
        image: None,
        category: "kitchen".into(),
    }
}

#[tonic::async_trait]
impl Catalog for FakeCatalog {
    async fn validate_products(
        &self,
        request: Request<ValidateProductsRequest>,
    ) -> Result<ValidateProductsResponse, Status> {
        let mut state = self.state.lock().unwrap();
        state.validations += 1;
        let products = request
            .into_inner()
            .product_ids
            .into_iter()
            .map(|id| match state.products.get(&id) {
                Some((price, units)) => validation(&id, *price, *units),
                None => ProductValidation {
                    product_id: id,
                    ..Default::default()
                },
            })
            .collect();
        Ok(ValidateProductsResponse { products })
    }

    async fn reserve_stock(
        &self,
        request: Request<ReserveStockRequest>,
    ) -> Result<ReserveStockResponse, Status> {
        let key = affinity(&request);
        let r = request.into_inner();
        let mut state = self.state.lock().unwrap();
        state.stock_calls.push(("reserve", r.order_id.clone(), key));
        let mut products = Vec::new();
        if !state.reserved.contains_key(&r.order_id) {
            for line in &r.lines {
                let Some(available) = state.products.get(&line.product_id).map(|p| p.1) else {
                    return Err(Status::not_found(format!(
                        "product {} not found",
                        line.product_id
                    )));
                };
                if available < line.quantity {
                    return Err(Status::failed_precondition(format!(
                        "insufficient stock for {}",
                        line.product_id
                    )));
                }
            }
            for line in &r.lines {
                state.products.get_mut(&line.product_id).unwrap().1 -= line.quantity;
            }
            let held = r
                .lines
                .iter()
                .map(|l| (l.product_id.clone(), l.quantity))
                .collect();
            state.reserved.insert(r.order_id.clone(), held);
            // Like product-svc: each product as the write that took its
            // units left it.
            products = r
                .lines
                .iter()
                .map(|l| {
                    let (price, units) = state.products[&l.product_id];
                    validation(&l.product_id, price, units)
                })
                .collect();
        }
        if state.lose_reserve_answers {
            return Err(Status::unavailable("connection reset"));
        }
        Ok(ReserveStockResponse {
            reservation: None,
            products,
        })
    }

    async fn release_stock(
        &self,
        request: Request<ReleaseStockRequest>,
    ) -> Result<ReleaseStockResponse, Status> {
        let key = affinity(&request);
        let order = request.into_inner().order_id;
        let mut state = self.state.lock().unwrap();
        state.stock_calls.push(("release", order.clone(), key));
        if !state.committed.contains(&order)
            && let Some(held) = state.reserved.remove(&order)
        {
            for (product, units) in held {
                state.products.get_mut(&product).unwrap().1 += units;
            }
        }
        Ok(ReleaseStockResponse::default())
    }

    async fn commit_stock(
        &self,
        request: Request<CommitStockRequest>,
    ) -> Result<CommitStockResponse, Status> {
        let key = affinity(&request);
        let order = request.into_inner().order_id;
        let mut state = self.state.lock().unwrap();
        state.stock_calls.push(("commit", order.clone(), key));
        if state.reserved.remove(&order).is_none() && !state.committed.contains(&order) {
            return Err(Status::not_found("no reservation for the order"));
        }
        state.committed.insert(order);
        Ok(CommitStockResponse::default())
    }
}

/// payment-svc in memory: one payment per idempotency key, declined for
/// [`DECLINED_CARD`]; refunds recorded once per key.
#[derive(Debug, Default)]
struct FakePayments {
    state: Mutex<PaymentsState>,
}

#[derive(Debug, Default)]
struct PaymentsState {
    by_key: HashMap<String, Payment>,
    /// (payment id, idempotency key) of each refund.
    refunds: Vec<(String, String)>,
}

impl FakePayments {
    fn refunds(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().refunds.clone()
    }
}

#[tonic::async_trait]
impl Payments for FakePayments {
    async fn create_payment(
        &self,
        request: Request<CreatePaymentRequest>,
    ) -> Result<CreatePaymentResponse, Status> {
        let r = request.into_inner();
        let mut state = self.state.lock().unwrap();
        let declined = r.card.as_ref().is_some_and(|c| c.number == DECLINED_CARD);
        let payment = state
            .by_key
            .entry(r.idempotency_key.clone())
            .or_insert_with(|| Payment {
                id: uuid::Uuid::now_v7().to_string(),
                order_id: r.order_id.clone(),
                user_id: r.user_id.clone(),
                status: if declined {
                    PaymentStatus::Failed
                } else {
                    PaymentStatus::Succeeded
                } as i32,
                amount: r.amount.clone(),
                failure_reason: if declined {
                    "card declined".into()
                } else {
                    "".into()
                },
                ..Default::default()
            })
            .clone();
        Ok(CreatePaymentResponse {
            payment: Some(payment),
        })
    }

    async fn process_refund(
        &self,
        request: Request<ProcessRefundRequest>,
    ) -> Result<ProcessRefundResponse, Status> {
        let r = request.into_inner();
        let mut state = self.state.lock().unwrap();
        if !state
            .refunds
            .iter()
            .any(|(_, key)| *key == r.idempotency_key)
        {
            state.refunds.push((r.payment_id, r.idempotency_key));
        }
        Ok(ProcessRefundResponse::default())
    }
}

/// shipping-svc in memory: every shipment may be voided.
#[derive(Debug, Default)]
struct FakeShipments {
    voided: Mutex<Vec<String>>,
}

#[tonic::async_trait]
impl Shipments for FakeShipments {
    async fn void_shipment(
        &self,
        request: Request<VoidShipmentRequest>,
    ) -> Result<VoidShipmentResponse, Status> {
        self.voided
            .lock()
            .unwrap()
            .push(request.into_inner().order_id);
        Ok(VoidShipmentResponse::default())
    }
}

/// order-svc on port 0 with fake peers and an in-process bus.
struct TestApp {
    running: Running,
    client: OrderServiceClient<platform::grpc::GrpcChannel>,
    catalog: Arc<FakeCatalog>,
    payments: Arc<FakePayments>,
    shipments: Arc<FakeShipments>,
    bus: InProcessBus,
}

impl TestApp {
    async fn start(catalog: Arc<FakeCatalog>) -> TestApp {
        let service = TestService::new("order-svc", false, &[]);
        let bus = InProcessBus::new("shop");
        let deps = Deps {
            bus: Arc::new(bus.clone()),
        };
        let payments = Arc::new(FakePayments::default());
        let shipments = Arc::new(FakeShipments::default());
        let peers = Peers {
            catalog: catalog.clone(),
            payments: payments.clone(),
            shipments: shipments.clone(),
        };
        let running = order_svc::serve_with(
            service.config.clone(),
            TestService::listener().await,
            deps,
            peers,
        )
        .await
        .unwrap();
        TestApp {
            client: OrderServiceClient::new(service.channel(running.addr())),
            running,
            catalog,
            payments,
            shipments,
            bus,
        }
    }

    async fn create(&self, lines: &[(&str, u32)]) -> Result<Order, Status> {
        let request = CreateOrderRequest {
            idempotency_key: uuid::Uuid::now_v7().to_string(),
            items: lines
                .iter()
                .map(|(product_id, quantity)| OrderItemInput {
                    product_id: product_id.to_string(),
                    quantity: *quantity,
                })
                .collect(),
            shipping_address: Some(proto::common::Address {
                name: "Ada Lovelace".into(),
                line1: "1 Analytical St".into(),
                city: "London".into(),
                postal_code: "N1 9GU".into(),
                country: "GB".into(),
                ..Default::default()
            }),
            notes: String::new(),
        };
        let reply = self.client.clone().create_order(customer(request)).await?;
        Ok(reply.into_inner().order.unwrap())
    }

    async fn pay(&self, order_id: &str, card: &str) -> Result<ProcessPaymentResponse, Status> {
        let request = ProcessPaymentRequest {
            order_id: order_id.into(),
            idempotency_key: uuid::Uuid::now_v7().to_string(),
            card: Some(Card {
                number: card.into(),
                exp_month: 12,
                exp_year: 2031,
                cvc: "123".into(),
            }),
        };
        let reply = self
            .client
            .clone()
            .process_payment(customer(request))
            .await?;
        Ok(reply.into_inner())
    }

    async fn cancel(&self, order_id: &str) -> Result<Order, Status> {
        let request = CancelOrderRequest {
            order_id: order_id.into(),
            reason: String::new(),
        };
        let reply = self.client.clone().cancel_order(customer(request)).await?;
        Ok(reply.into_inner().order.unwrap())
    }

    async fn order(&self, order_id: &str) -> Order {
        let request = GetOrderRequest {
            order_id: order_id.into(),
        };
        let reply = self.client.clone().get_order(customer(request)).await;
        reply.unwrap().into_inner().order.unwrap()
    }

    async fn list(&self) -> Vec<Order> {
        let request = ListOrdersRequest::default();
        let reply = self.client.clone().list_orders(customer(request)).await;
        reply.unwrap().into_inner().orders
    }
}

/// A request of the test customer, as the gateway forwards it.
fn customer<T>(message: T) -> Request<T> {
    platform::testing::identity().as_user(message, USER, "customer")
}

fn status_of(order: &Order) -> OrderStatus {
    OrderStatus::try_from(order.status).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_refused_for_one_line_holds_nothing_and_places_no_order() {
    let app = TestApp::start(FakeCatalog::with(&[("a", 500, 10), ("b", 700, 1)])).await;

    let status = app.create(&[("a", 2), ("b", 3)]).await.unwrap_err();

    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(app.catalog.available("a"), 10);
    assert_eq!(app.catalog.available("b"), 1);
    assert_eq!(app.catalog.held_orders(), 0);
    assert!(app.list().await.is_empty(), "no order was placed");
    app.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_priced_from_what_its_reserve_took_with_no_other_catalog_call() {
    let app = TestApp::start(FakeCatalog::with(&[("a", 500, 10), ("b", 700, 5)])).await;

    let order = app.create(&[("a", 2), ("b", 1)]).await.unwrap();

    assert_eq!(order.total.as_ref().map(|t| t.amount), Some(1700));
    assert_eq!(order.items[0].name, "product a");
    assert_eq!(app.catalog.validations(), 0, "the reserve answer priced it");
    assert_eq!(app.catalog.available("a"), 8);
    app.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orders_stock_calls_are_keyed_by_its_lowest_product_id() {
    let app = TestApp::start(FakeCatalog::with(&[("a", 500, 10), ("b", 700, 5)])).await;
    let key = |k: &str| Some(k.to_string());

    let paid = app.create(&[("b", 1), ("a", 1)]).await.unwrap();
    app.pay(&paid.id, GOOD_CARD).await.unwrap();
    eventually("the stock committed", async || {
        app.catalog.committed(&paid.id)
    })
    .await;
    assert_eq!(
        app.catalog.stock_calls_of(&paid.id),
        vec![("reserve", key("a")), ("commit", key("a"))]
    );

    let cancelled = app.create(&[("b", 2)]).await.unwrap();
    app.cancel(&cancelled.id).await.unwrap();
    eventually("the stock released", async || {
        !app.catalog.holds(&cancelled.id)
    })
    .await;
    assert_eq!(
        app.catalog.stock_calls_of(&cancelled.id),
        vec![("reserve", key("b")), ("release", key("b"))]
    );
    app.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_product_is_refused_on_its_line_and_holds_nothing() {
    let app = TestApp::start(FakeCatalog::with(&[("a", 500, 10)])).await;

    let status = app.create(&[("a", 2), ("nope", 1)]).await.unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        platform::error::field_violations(&status),
        [(
            "items[1].product_id".to_string(),
            "unknown product nope".to_string()
        )]
    );
    assert_eq!(app.catalog.available("a"), 10);
    assert_eq!(app.catalog.held_orders(), 0);
    assert!(app.list().await.is_empty(), "no order was placed");
    app.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_order_is_refused_and_its_units_are_given_back() {
    let app = TestApp::start(FakeCatalog::with(&[("free", 0, 10)])).await;

    let status = app.create(&[("free", 2)]).await.unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        app.catalog.held_orders(),
        0,
        "what was reserved is released"
    );
    assert_eq!(app.catalog.available("free"), 10);
    assert!(app.list().await.is_empty(), "no order was placed");
    app.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_whose_answer_is_lost_is_given_back() {
    let app = TestApp::start(FakeCatalog::with(&[("a", 500, 10), ("b", 700, 5)])).await;
    app.catalog.state.lock().unwrap().lose_reserve_answers = true;

    let status = app.create(&[("a", 2), ("b", 3)]).await.unwrap_err();

    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        app.catalog.held_orders(),
        0,
        "what was reserved is released"
    );
    assert_eq!(app.catalog.available("a"), 10);
    assert_eq!(app.catalog.available("b"), 5);
    assert!(app.list().await.is_empty(), "no order was placed");
    app.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_payment_leaves_the_order_payment_failed_and_payable() {
    let app = TestApp::start(FakeCatalog::with(&[("a", 500, 10)])).await;
    let order = app.create(&[("a", 2)]).await.unwrap();
    assert_eq!(status_of(&order), OrderStatus::PendingPayment);
    assert!(app.catalog.holds(&order.id));

    let declined = app.pay(&order.id, DECLINED_CARD).await.unwrap();
    assert_eq!(
        declined.payment.unwrap().status,
        PaymentStatus::Failed as i32
    );
    assert_eq!(declined.order_status, OrderStatus::PaymentFailed as i32);
    let stored = app.order(&order.id).await;
    assert_eq!(status_of(&stored), OrderStatus::PaymentFailed);
    assert!(stored.payment_id.is_empty());
    assert!(
        app.catalog.holds(&order.id),
        "the stock stays held for a retry"
    );

    let paid = app.pay(&order.id, GOOD_CARD).await.unwrap();
    let payment = paid.payment.unwrap();
    assert_eq!(payment.status, PaymentStatus::Succeeded as i32);
    assert_eq!(paid.order_status, OrderStatus::Paid as i32);
    let stored = app.order(&order.id).await;
    assert_eq!(status_of(&stored), OrderStatus::Paid);
    assert_eq!(stored.payment_id, payment.id);
    assert!(app.catalog.committed(&order.id), "the stock is sold");
    assert!(app.payments.refunds().is_empty());
    app.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_paid_order_voids_the_shipment_and_refunds_the_payment() {
    let app = TestApp::start(FakeCatalog::with(&[("a", 500, 10)])).await;
    let order = app.create(&[("a", 2)]).await.unwrap();
    let payment = app
        .pay(&order.id, GOOD_CARD)
        .await
        .unwrap()
        .payment
        .unwrap();

    let cancelled = app.cancel(&order.id).await.unwrap();

    assert_eq!(status_of(&cancelled), OrderStatus::Refunded);
    assert_eq!(
        *app.shipments.voided.lock().unwrap(),
        vec![order.id.clone()]
    );
    assert_eq!(
        app.payments.refunds(),
        vec![(payment.id.clone(), format!("cancel:{}", order.id))],
        "the payment is refunded once"
    );
    assert_eq!(
        status_of(&app.order(&order.id).await),
        OrderStatus::Refunded
    );
    app.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_that_succeeds_for_a_cancelled_order_is_refunded() {
    let app = TestApp::start(FakeCatalog::with(&[("a", 500, 10)])).await;
    let order = app.create(&[("a", 2)]).await.unwrap();
    let cancelled = app.cancel(&order.id).await.unwrap();
    assert_eq!(status_of(&cancelled), OrderStatus::Cancelled);
    assert_eq!(app.catalog.available("a"), 10, "the stock is back on sale");

    // payment-svc reports a success that was under way when the order was
    // cancelled.
    let payment_id = uuid::Uuid::now_v7().to_string();
    let event = platform::events::event(
        &payment_id,
        "payment-svc",
        proto::events::envelope::Payload::PaymentProcessed(proto::events::PaymentProcessed {
            payment_id: payment_id.clone(),
            order_id: order.id.clone(),
            user_id: USER.into(),
            amount: Some(Money::new(1000, "USD")),
            card_brand: "visa".into(),
            card_last4: "4242".into(),
            provider: "simulated".into(),
        }),
    );
    app.bus
        .publish(&platform::testing::signed(&event))
        .await
        .unwrap();

    eventually("the late payment refunded", async || {
        !app.payments.refunds().is_empty()
    })
    .await;
    assert_eq!(
        app.payments.refunds(),
        vec![(payment_id.clone(), format!("compensate:{payment_id}"))]
    );
    let stored = app.order(&order.id).await;
    assert_eq!(status_of(&stored), OrderStatus::Cancelled);
    assert!(stored.payment_id.is_empty(), "the order did not take it");
    assert!(!app.catalog.committed(&order.id), "nothing was sold");
    app.running.shutdown().await;
}
