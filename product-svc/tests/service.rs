//! product-svc over real gRPC, on the memory store and on Postgres (a fresh
//! schema per test), with the in-process bus.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use platform::Running;
use platform::events::memory::InProcessBus;
use platform::events::{ConsumerConfig, Delivery, HandlerError, handler_fn};
use platform::runtime::Deps;
use platform::testing::{TestService, eventually};
use proto::product::product_service_client::ProductServiceClient;
use proto::product::*;
use tonic::Code;

type Client = ProductServiceClient<platform::grpc::GrpcChannel>;

struct Harness {
    running: Running,
    client: Client,
    bus: InProcessBus,
    service: TestService,
}

impl Harness {
    async fn start(postgres: bool, extra: &[(&str, &str)]) -> Harness {
        let mut vars = vec![("SEED_DEMO", "false")];
        vars.extend_from_slice(extra);
        let service = TestService::new("product-svc", postgres, &vars);
        let bus = InProcessBus::new("shop");
        let running = product_svc::serve(
            service.config.clone(),
            TestService::listener().await,
            Deps {
                bus: Arc::new(bus.clone()),
            },
        )
        .await
        .unwrap();
        Harness {
            client: ProductServiceClient::new(service.channel(running.addr())),
            running,
            bus,
            service,
        }
    }

    fn client(&self) -> Client {
        self.client.clone()
    }

    async fn stop(self) {
        self.running.shutdown().await;
        self.service.cleanup(&["product"]).await;
    }
}

fn admin<T>(message: T) -> tonic::Request<T> {
    platform::testing::identity().as_user(message, "admin-1", "admin")
}

fn user<T>(id: &str, message: T) -> tonic::Request<T> {
    platform::testing::identity().as_user(message, id, "customer")
}

/// A request as the order saga (order-svc) sends it.
fn saga<T>(message: T) -> tonic::Request<T> {
    platform::testing::identity().as_service(message, "order-svc")
}

fn new_product(sku: &str, stock: u32) -> CreateProductRequest {
    CreateProductRequest {
        sku: sku.into(),
        name: format!("Product {sku}"),
        description: "A thing".into(),
        category: "things".into(),
        price: Some(proto::common::Money::new(1000, "USD")),
        stock,
        weight_grams: 100,
    }
}

async fn create(client: &mut Client, sku: &str, stock: u32) -> Product {
    client
        .create_product(admin(new_product(sku, stock)))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap()
}

async fn details(client: &mut Client, id: &str) -> Product {
    client
        .get_product_details(GetProductDetailsRequest {
            product_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap()
}

fn reserve(order: &str, lines: &[(&str, u32)]) -> tonic::Request<ReserveStockRequest> {
    saga(ReserveStockRequest {
        order_id: order.into(),
        lines: lines
            .iter()
            .map(|(p, q)| StockLine {
                product_id: p.to_string(),
                quantity: *q,
            })
            .collect(),
    })
}

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(false).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(true).await } )*
        }
    };
}

on_both_stores!(
    fifty_concurrent_orders_for_the_last_ten_units_never_oversell,
    retried_reservations_reserve_once,
    a_line_that_cannot_be_reserved_releases_the_others,
    release_commit_and_refund_restock_are_idempotent,
    stock_updates_refuse_to_go_below_reserved,
    reviews_are_one_per_user_and_maintain_the_average,
    catalog_crud_search_and_paging,
);

async fn fifty_concurrent_orders_for_the_last_ten_units_never_oversell(postgres: bool) {
    let h = Harness::start(postgres, &[]).await;
    let product = create(&mut h.client(), "LAST-10", 10).await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..50 {
        let mut client = h.client();
        let id = product.id.clone();
        tasks.spawn(async move {
            client
                .reserve_stock(reserve(&format!("order-{n}"), &[(&id, 1)]))
                .await
                .map(|_| ())
        });
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(()) => ok += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                assert!(
                    status.message().contains(&product.id),
                    "names the product: {}",
                    status.message()
                );
                refused += 1;
            }
        }
    }
    assert_eq!((ok, refused), (10, 40));
    let after = details(&mut h.client(), &product.id).await;
    assert_eq!((after.stock_available, after.stock_reserved), (0, 10));
    h.stop().await;
}

async fn retried_reservations_reserve_once(postgres: bool) {
    let h = Harness::start(postgres, &[]).await;
    let product = create(&mut h.client(), "RETRY-1", 10).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut client = h.client();
        let id = product.id.clone();
        tasks.spawn(async move {
            client
                .reserve_stock(reserve("order-retry", &[(&id, 3)]))
                .await
                .map(|_| ())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().expect("every retry succeeds");
    }
    let after = details(&mut h.client(), &product.id).await;
    assert_eq!((after.stock_available, after.stock_reserved), (7, 3));
    // The reserve that takes units answers each product as that write left
    // it (what the order is priced from); a repeat took nothing and says so.
    let priced = || async {
        h.client()
            .reserve_stock(reserve("order-priced", &[(&product.id, 2)]))
            .await
            .unwrap()
            .into_inner()
            .products
    };
    let taken = priced().await;
    assert_eq!(taken.len(), 1);
    assert_eq!(
        (
            taken[0].product_id.as_str(),
            taken[0].found,
            taken[0].active,
            taken[0].sku.as_str(),
            taken[0].price.clone(),
            taken[0].stock_available,
        ),
        (
            product.id.as_str(),
            true,
            true,
            "RETRY-1",
            product.price.clone(),
            5
        )
    );
    let repeat = priced().await;
    assert!(repeat.is_empty(), "{repeat:?}");
    let other = h
        .client()
        .reserve_stock(reserve("order-retry", &[(&product.id, 4)]))
        .await
        .unwrap_err();
    assert_eq!(
        other.code(),
        Code::FailedPrecondition,
        "same order, different lines"
    );
    h.stop().await;
}

async fn a_line_that_cannot_be_reserved_releases_the_others(postgres: bool) {
    let h = Harness::start(postgres, &[]).await;
    let mut c = h.client();
    let plenty = create(&mut c, "PLENTY", 100).await;
    let scarce = create(&mut c, "SCARCE", 1).await;
    let status = c
        .reserve_stock(reserve("order-x", &[(&plenty.id, 5), (&scarce.id, 2)]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains(&scarce.id));
    assert_eq!(
        details(&mut c, &plenty.id).await.stock_available,
        100,
        "the reserved line was put back"
    );
    assert_eq!(details(&mut c, &scarce.id).await.stock_available, 1);
    let unknown = c
        .reserve_stock(reserve(
            "order-y",
            &[(&uuid::Uuid::now_v7().to_string(), 1)],
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let zero = c
        .reserve_stock(reserve("order-z", &[(&plenty.id, 0)]))
        .await
        .unwrap_err();
    assert_eq!(zero.code(), Code::InvalidArgument);
    h.stop().await;
}

async fn release_commit_and_refund_restock_are_idempotent(postgres: bool) {
    let h = Harness::start(postgres, &[]).await;
    let mut c = h.client();
    let p = create(&mut c, "FLOW-1", 20).await;
    c.reserve_stock(reserve("o-release", &[(&p.id, 5)]))
        .await
        .unwrap();
    for _ in 0..2 {
        c.release_stock(saga(ReleaseStockRequest {
            order_id: "o-release".into(),
        }))
        .await
        .unwrap();
    }
    let after = details(&mut c, &p.id).await;
    assert_eq!((after.stock_available, after.stock_reserved), (20, 0));

    c.reserve_stock(reserve("o-paid", &[(&p.id, 4)]))
        .await
        .unwrap();
    for _ in 0..2 {
        let r = c
            .commit_stock(saga(CommitStockRequest {
                order_id: "o-paid".into(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.reservation.unwrap().status,
            ReservationStatus::Committed as i32
        );
    }
    let after = details(&mut c, &p.id).await;
    assert_eq!(
        (after.stock_available, after.stock_reserved),
        (16, 0),
        "sold"
    );
    assert_eq!(
        c.commit_stock(saga(CommitStockRequest {
            order_id: "o-release".into()
        }))
        .await
        .unwrap_err()
        .code(),
        Code::FailedPrecondition,
        "a released reservation cannot be committed"
    );
    for _ in 0..2 {
        c.release_stock(saga(ReleaseStockRequest {
            order_id: "o-paid".into(),
        }))
        .await
        .unwrap();
    }
    assert_eq!(
        details(&mut c, &p.id).await.stock_available,
        20,
        "refund restocks once"
    );
    // Releasing an order that reserved nothing (yet) succeeds and is
    // remembered: a reserve still on its way for it is refused, so a
    // release that overtakes its reserve wins.
    let released = c
        .release_stock(saga(ReleaseStockRequest {
            order_id: "nope".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(released.status, ReservationStatus::Released as i32);
    assert!(released.lines.is_empty());
    assert_eq!(
        c.reserve_stock(reserve("nope", &[(&p.id, 1)]))
            .await
            .unwrap_err()
            .code(),
        Code::Aborted
    );
    assert_eq!(
        details(&mut c, &p.id).await.stock_available,
        20,
        "nothing held"
    );
    h.stop().await;
}

async fn stock_updates_refuse_to_go_below_reserved(postgres: bool) {
    let h = Harness::start(postgres, &[]).await;
    let mut c = h.client();
    let p = create(&mut c, "STOCK-1", 10).await;
    c.reserve_stock(reserve("o1", &[(&p.id, 4)])).await.unwrap();
    let set = |change| UpdateStockRequest {
        product_id: p.id.clone(),
        change: Some(change),
    };
    use update_stock_request::Change;
    let refused = c
        .update_stock(admin(set(Change::Stock(3))))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let updated = c
        .update_stock(admin(set(Change::Stock(14))))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!((updated.stock_available, updated.stock_reserved), (10, 4));
    let updated = c
        .update_stock(admin(set(Change::Delta(-10))))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(updated.stock_available, 0);
    assert_eq!(
        c.update_stock(admin(set(Change::Delta(-1))))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    assert_eq!(
        c.update_stock(user("u1", set(Change::Delta(1))))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    h.stop().await;
}

async fn reviews_are_one_per_user_and_maintain_the_average(postgres: bool) {
    let h = Harness::start(postgres, &[]).await;
    let mut c = h.client();
    let p = create(&mut c, "REV-1", 10).await;
    let review = |rating| AddReviewRequest {
        product_id: p.id.clone(),
        rating,
        comment: "ok".into(),
    };
    c.add_review(user("u1", review(5))).await.unwrap();
    c.add_review(user("u2", review(2))).await.unwrap();
    c.add_review(user("u1", review(4))).await.unwrap();
    let after = details(&mut c, &p.id).await;
    assert_eq!(
        after.rating_count, 2,
        "a second review by u1 replaces the first"
    );
    assert_eq!(after.rating_avg, Some(3.0));
    assert_eq!(
        c.add_review(user("u3", review(6)))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        c.add_review(user("u3", review(0)))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let long = AddReviewRequest {
        product_id: p.id.clone(),
        rating: 3,
        comment: "x".repeat(2001),
    };
    assert_eq!(
        c.add_review(user("u3", long)).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let listed = c
        .list_reviews(ListReviewsRequest {
            product_id: p.id.clone(),
            page: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.reviews.len(), 2);
    h.stop().await;
}

async fn catalog_crud_search_and_paging(postgres: bool) {
    let h = Harness::start(postgres, &[]).await;
    let mut c = h.client();
    for n in 0..7 {
        let mut req = new_product(&format!("CAT-{n}"), 5);
        req.name = if n % 2 == 0 {
            format!("Blue Widget {n}")
        } else {
            format!("Red Gadget {n}")
        };
        req.category = if n < 4 {
            "widgets".into()
        } else {
            "gadgets".into()
        };
        c.create_product(admin(req)).await.unwrap();
    }
    let dup = c
        .create_product(admin(new_product("cat-0", 1)))
        .await
        .unwrap_err();
    assert_eq!(
        dup.code(),
        Code::AlreadyExists,
        "SKUs are unique, case-insensitively"
    );
    let mut negative = new_product("NEG", 1);
    negative.price = Some(proto::common::Money::new(-5, "USD"));
    assert_eq!(
        c.create_product(admin(negative)).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        c.create_product(user("u1", new_product("X-1", 1)))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );

    let search = c
        .list_products(ListProductsRequest {
            query: "BLUE".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(search.products.len(), 4);
    let category = c
        .list_products(ListProductsRequest {
            category: "gadgets".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(category.products.len(), 3);

    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = proto::common::PageRequest {
            limit: 3,
            cursor: cursor.clone(),
        };
        let r = c
            .list_products(ListProductsRequest {
                page: Some(page),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(r.products.into_iter().map(|p| p.sku));
        if r.next_cursor.is_empty() {
            break;
        }
        cursor = r.next_cursor;
    }
    assert_eq!(seen.len(), 7);
    let bad = proto::common::PageRequest {
        limit: 3,
        cursor: "forged".into(),
    };
    assert_eq!(
        c.list_products(ListProductsRequest {
            page: Some(bad),
            ..Default::default()
        })
        .await
        .unwrap_err()
        .code(),
        Code::InvalidArgument
    );

    let target = c
        .list_products(ListProductsRequest {
            query: "gadget 5".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .products
        .remove(0);
    let update = UpdateProductRequest {
        product_id: target.id.clone(),
        active: Some(false),
        name: Some("Retired".into()),
        ..Default::default()
    };
    c.update_product(admin(update)).await.unwrap();
    let visible = c
        .list_products(ListProductsRequest {
            category: "gadgets".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(visible.products.len(), 2, "inactive products are hidden");
    assert_eq!(
        c.reserve_stock(reserve("o-inactive", &[(&target.id, 1)]))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    c.delete_product(admin(DeleteProductRequest {
        product_id: target.id.clone(),
    }))
    .await
    .unwrap();
    let gone = c
        .get_product_details(GetProductDetailsRequest {
            product_id: target.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let existing = seen_id(&mut c).await;
    let v = c
        .validate_products(ValidateProductsRequest {
            product_ids: vec![target.id.clone(), existing],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!v.products[0].found && v.products[1].found);
    assert_eq!(
        v.products[1].price.as_ref().unwrap().amount,
        1000,
        "the catalog's price"
    );
    h.stop().await;
}

async fn seen_id(c: &mut Client) -> String {
    c.list_products(ListProductsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .products[0]
        .id
        .clone()
}

/// Waits for deliveries on the in-process bus.
async fn collect(bus: &InProcessBus, types: &[&str]) -> Arc<Mutex<Vec<Delivery>>> {
    use platform::events::EventBus;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let name = format!("test-{}", uuid::Uuid::now_v7().simple());
    bus.subscribe(
        ConsumerConfig::new(&name, types),
        handler_fn(move |d: Delivery| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(d);
                Ok::<(), HandlerError>(())
            }
        }),
    )
    .await
    .unwrap();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_stock_and_reviews_publish_events_once() {
    let h = Harness::start(false, &[("LOW_STOCK_THRESHOLD", "3")]).await;
    let seen = collect(&h.bus, &["inventory.low", "review.created"]).await;
    let mut c = h.client();
    let p = create(&mut c, "LOW-1", 5).await;
    c.reserve_stock(reserve("o1", &[(&p.id, 2)])).await.unwrap(); // 5 -> 3: not below 3
    c.reserve_stock(reserve("o2", &[(&p.id, 1)])).await.unwrap(); // 3 -> 2: crosses
    c.reserve_stock(reserve("o3", &[(&p.id, 1)])).await.unwrap(); // 2 -> 1: already low
    c.reserve_stock(reserve("o4", &[(&p.id, 1)])).await.unwrap(); // 1 -> 0: out of stock
    c.add_review(user(
        "u1",
        AddReviewRequest {
            product_id: p.id.clone(),
            rating: 4,
            comment: String::new(),
        },
    ))
    .await
    .unwrap();
    c.add_review(user(
        "u1",
        AddReviewRequest {
            product_id: p.id.clone(),
            rating: 5,
            comment: String::new(),
        },
    ))
    .await
    .unwrap();
    eventually("two low-stock events and one review event", async || {
        seen.lock().unwrap().len() >= 3
    })
    .await;
    {
        let seen = seen.lock().unwrap();
        let low: Vec<u32> = seen
            .iter()
            .filter_map(|d| match &d.envelope.payload {
                Some(proto::events::envelope::Payload::InventoryLow(e)) => Some(e.stock_available),
                _ => None,
            })
            .collect();
        assert_eq!(low, [2, 0]);
        assert_eq!(
            seen.iter()
                .filter(|d| d.envelope.r#type == "review.created")
                .count(),
            1,
            "an updated review is not new"
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_catalog_seeds_once() {
    let h = Harness::start(false, &[("SEED_DEMO", "true")]).await;
    let mut c = h.client();
    let mut total = 0;
    let mut categories = std::collections::BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let page = proto::common::PageRequest {
            limit: 100,
            cursor: cursor.clone(),
        };
        let r = c
            .list_products(ListProductsRequest {
                page: Some(page),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        total += r.products.len();
        categories.extend(r.products.iter().map(|p| p.category.clone()));
        if r.next_cursor.is_empty() {
            break;
        }
        cursor = r.next_cursor;
    }
    assert!(total >= 20, "{total}");
    assert!(categories.len() >= 5, "{categories:?}");
    h.stop().await;
}

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn cached_keys(h: &Harness, product_id: &str) -> Vec<String> {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let prefix = &h.service.config.redis_key_prefix;
    redis::cmd("KEYS")
        .arg(format!("{prefix}:cache:product:{product_id}:v:*"))
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_sharing_one_redis_never_read_each_others_cache() {
    let redis = redis_url();
    let a = Harness::start(
        false,
        &[("REDIS_URL", &redis), ("REDIS_KEY_PREFIX", "env_a")],
    )
    .await;
    let b = Harness::start(
        false,
        &[("REDIS_URL", &redis), ("REDIS_KEY_PREFIX", "env_b")],
    )
    .await;
    let p = create(&mut a.client(), "ENV-1", 10).await;
    assert_eq!(
        details(&mut a.client(), &p.id).await.id,
        p.id,
        "cached in a"
    );
    let in_b = b
        .client()
        .get_product_details(GetProductDetailsRequest {
            product_id: p.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        in_b.code(),
        tonic::Code::NotFound,
        "b has an empty catalog and must not serve a's cached product"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_details_never_outlive_an_update() {
    let h = Harness::start(false, &[("REDIS_URL", &redis_url())]).await;
    let mut c = h.client();
    let p = create(&mut c, "CACHE-1", 10).await;
    assert_eq!(details(&mut c, &p.id).await.price.unwrap().amount, 1000);
    assert_eq!(
        cached_keys(&h, &p.id).await.len(),
        1,
        "the first read filled the cache"
    );
    assert_eq!(
        details(&mut c, &p.id).await.price.unwrap().amount,
        1000,
        "served from the cache"
    );

    let change = UpdateProductRequest {
        product_id: p.id.clone(),
        price: Some(proto::common::Money::new(1500, "USD")),
        ..Default::default()
    };
    c.update_product(admin(change)).await.unwrap();
    assert_eq!(
        details(&mut c, &p.id).await.price.unwrap().amount,
        1500,
        "a read after an update sees the update"
    );
    c.reserve_stock(reserve("o-cache", &[(&p.id, 4)]))
        .await
        .unwrap();
    assert_eq!(
        details(&mut c, &p.id).await.stock_available,
        6,
        "stock moves invalidate too"
    );

    let listed =
        |r: ListProductsResponse| r.products.iter().map(|p| p.sku.clone()).collect::<Vec<_>>();
    let query = || ListProductsRequest {
        query: "product cache-".into(),
        ..Default::default()
    };
    assert_eq!(
        listed(c.list_products(query()).await.unwrap().into_inner()),
        ["CACHE-1"]
    );
    create(&mut c, "CACHE-2", 1).await;
    assert_eq!(
        listed(c.list_products(query()).await.unwrap().into_inner()),
        ["CACHE-2", "CACHE-1"],
        "list pages are invalidated"
    );
    let reserved = c
        .delete_product(admin(DeleteProductRequest {
            product_id: p.id.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        reserved.code(),
        Code::FailedPrecondition,
        "stock is held for an open order"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_serves_from_the_store() {
    let upstream = redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .replace("localhost", "127.0.0.1")
        .parse()
        .unwrap();
    let proxy = platform::testing::TcpProxy::start_to(upstream)
        .await
        .unwrap();
    let url = format!("redis://{}", proxy.addr());
    let h = Harness::start(false, &[("REDIS_URL", &url)]).await;
    let mut c = h.client();
    let p = create(&mut c, "OUTAGE-1", 10).await;
    details(&mut c, &p.id).await;

    proxy.stop().await;
    let started = Instant::now();
    let change = UpdateProductRequest {
        product_id: p.id.clone(),
        name: Some("Renamed".into()),
        ..Default::default()
    };
    c.update_product(admin(change)).await.unwrap();
    assert_eq!(details(&mut c, &p.id).await.name, "Renamed");
    assert!(
        c.list_products(ListProductsRequest::default())
            .await
            .is_ok()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no hang: {:?}",
        started.elapsed()
    );

    proxy.start().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(details(&mut c, &p.id).await.name, "Renamed");
        if !cached_keys(&h, &p.id).await.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the cache never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.stop().await;
}
