//! Unit tests of the catalog and stock rules.

use super::*;

fn product(stock: i64) -> Product {
    Product {
        sku: "SKU".into(),
        name: "n".into(),
        description: String::new(),
        category: "c".into(),
        price: Money {
            amount: 100,
            currency: "USD".into(),
        },
        images: vec![],
        removed_images: vec![],
        weight_grams: 0,
        status: ACTIVE.into(),
        search_text: String::new(),
        stock_available: stock,
        stock_reserved: 0,
        reservations: BTreeMap::new(),
        restocked: vec![],
        released: vec![],
        rating_sum: 0,
        rating_count: 0,
        created_at: 0,
        updated_at: 0,
        outbox: Outbox::default(),
    }
}

#[test]
fn money_sku_and_fields_are_validated() {
    assert_eq!(
        Money::parse(1999, "usd").unwrap(),
        Money {
            amount: 1999,
            currency: "USD".into()
        }
    );
    assert_eq!(Money::parse(-1, "USD").unwrap_err().field, "price.amount");
    assert_eq!(
        Money::parse(0, "USD").unwrap_err().field,
        "price.amount",
        "nothing is free"
    );
    assert_eq!(Money::parse(1, "US").unwrap_err().field, "price.currency");
    assert_eq!(parse_sku(" kb-101 ").unwrap(), "KB-101");
    assert!(parse_sku("has space").is_err() && parse_sku("").is_err());
    assert!(parse_name("").is_err() && parse_name(&"x".repeat(201)).is_err());
    assert_eq!(parse_category("Home-Office").unwrap(), "home-office");
    assert!(parse_category("a b").is_err());
    assert!(parse_comment(&"x".repeat(2001)).is_err() && parse_comment(&"x".repeat(2000)).is_ok());
    // Control characters are refused here too, whoever calls (NUL cannot
    // be stored on Postgres).
    assert_eq!(parse_comment("ok\u{0}").unwrap_err().field, "comment");
    assert_eq!(parse_name("a\u{1b}b").unwrap_err().field, "name");
    assert_eq!(
        parse_description("d\u{7f}").unwrap_err().field,
        "description"
    );
    assert!(parse_comment("two\nlines").is_ok());
}

#[test]
fn ratings_are_one_to_five() {
    for ok in 1..=5 {
        assert!(parse_rating(ok).is_ok());
    }
    assert!(parse_rating(0).is_err() && parse_rating(6).is_err());
}

#[test]
fn reserve_is_idempotent_per_order_and_never_oversells() {
    let mut p = product(10);
    assert_eq!(p.reserve("o1", 4), Ok(true));
    assert_eq!(
        p.reserve("o1", 4),
        Ok(false),
        "a retry reserves nothing more"
    );
    assert_eq!((p.stock_available, p.stock_reserved), (6, 4));
    assert_eq!(
        p.reserve("o2", 7),
        Err(StockError::Insufficient {
            available: 6,
            requested: 7
        })
    );
    assert_eq!(p.reserve("o2", 0), Err(StockError::BadQuantity));
    assert_eq!(p.reserve("o2", 1001), Err(StockError::BadQuantity));
    p.status = INACTIVE.into();
    assert_eq!(p.reserve("o3", 1), Err(StockError::Inactive));
}

#[test]
fn release_commit_and_restock() {
    let mut p = product(10);
    p.reserve("o1", 3).unwrap();
    p.reserve("o2", 2).unwrap();
    assert!(p.release("o1"));
    p.release("o1");
    assert!(!p.release("o1"), "idempotent");
    assert_eq!(
        (p.stock_available, p.stock_reserved),
        (8, 2),
        "units come back once"
    );
    assert!(p.commit("o2"));
    assert!(!p.commit("o2"));
    assert_eq!(
        (p.stock_available, p.stock_reserved),
        (8, 0),
        "sold stock leaves the reserved count"
    );
    assert!(p.restock("o2", 2));
    assert!(!p.restock("o2", 2), "a refund restocks once");
    assert_eq!(p.stock_available, 10);
}

#[test]
fn a_release_that_overtakes_its_reserve_wins() {
    let mut p = product(10);
    assert!(p.release("o1"), "remembered");
    assert!(!p.release("o1"), "once");
    assert_eq!(p.reserve("o1", 2), Err(StockError::Released));
    assert_eq!((p.stock_available, p.stock_reserved), (10, 0));
    assert_eq!(p.reserve("o2", 2), Ok(true), "other orders are unaffected");
    assert!(p.holds("o2") && !p.holds("o1"));
}

#[test]
fn stock_updates_respect_bounds() {
    let mut p = product(5);
    p.reserve("o1", 2).unwrap();
    assert!(matches!(
        p.set_stock(Some(1), None),
        Err(StockError::BelowReserved { reserved: 2 })
    ));
    p.set_stock(Some(22), None).unwrap();
    assert_eq!(p.stock_available, 20);
    p.set_stock(None, Some(-5)).unwrap();
    assert_eq!(p.stock_available, 15);
    assert!(matches!(
        p.set_stock(None, Some(-16)),
        Err(StockError::BelowReserved { .. })
    ));
    assert!(matches!(
        p.set_stock(Some(-1), None),
        Err(StockError::BelowReserved { .. })
    ));
    assert_eq!(
        p.set_stock(Some(MAX_STOCK + 3), None),
        Err(StockError::BadQuantity)
    );
    assert_eq!(p.set_stock(None, None), Err(StockError::BadQuantity));
}

#[test]
fn low_stock_is_announced_on_crossing_only() {
    assert!(crosses_low_stock(5, 4, 5));
    assert!(!crosses_low_stock(4, 3, 5), "already low");
    assert!(crosses_low_stock(3, 0, 5), "out of stock");
    assert!(!crosses_low_stock(0, 0, 5));
    assert!(!crosses_low_stock(10, 6, 5));
}

#[test]
fn rating_average() {
    let mut p = product(1);
    assert_eq!(p.rating_avg(), None);
    p.rating_sum = 9;
    p.rating_count = 2;
    assert_eq!(p.rating_avg(), Some(4.5));
}

fn image(id: &str) -> Image {
    Image {
        id: id.into(),
        key: format!("{id:0>64}"),
        content_type: "image/jpeg".into(),
        width: 10,
        height: 10,
        bytes: 100,
        alt: String::new(),
        thumbnails: vec![],
        created_at: 0,
    }
}

#[test]
fn images_are_added_once_and_a_removal_wins_over_a_late_add() {
    let mut p = product(1);
    assert!(p.add_image(image("a")));
    assert!(
        !p.add_image(image("a")),
        "a redelivered upload adds nothing"
    );
    assert!(p.remove_image("b"), "a delete may overtake its upload");
    assert!(!p.add_image(image("b")), "the late upload stays removed");
    assert!(p.remove_image("a") && !p.remove_image("a"));
    assert!(p.images.is_empty());
    for i in 0..MAX_IMAGES + 1 {
        p.add_image(image(&format!("m{i}")));
    }
    assert_eq!(p.images.len(), MAX_IMAGES);
}

#[test]
fn images_are_ordered_only_by_a_full_list() {
    let mut p = product(1);
    for id in ["a", "b", "c"] {
        p.add_image(image(id));
    }
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    p.order_images(&ids(&["c", "a", "b"])).unwrap();
    let order: Vec<_> = p.images.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(order, ["c", "a", "b"]);
    assert!(p.order_images(&ids(&["c", "a"])).is_err());
    assert!(p.order_images(&ids(&["c", "a", "a"])).is_err());
    assert!(p.order_images(&ids(&["c", "a", "x"])).is_err());
}
