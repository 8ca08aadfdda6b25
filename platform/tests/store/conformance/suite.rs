//! The conformance suite: each function takes a fresh, empty store of some
//! backend and checks one behaviour every backend must share.

use std::collections::HashSet;

use platform::store::{
    Bound, Collection, CollectionSpec, FieldType, IndexSpec, Query, Store, StoreError,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub sku: String,
    pub category: String,
    pub price: i64,
    pub name: String,
    #[serde(default)]
    pub counter: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default)]
    pub blob: String,
}

pub fn item(sku: &str, category: &str, price: i64, name: &str) -> Item {
    Item {
        sku: sku.into(),
        category: category.into(),
        price,
        name: name.into(),
        counter: 0,
        code: None,
        blob: String::new(),
    }
}

pub fn spec() -> CollectionSpec {
    CollectionSpec::new("items")
        .index(IndexSpec::new("sku", FieldType::String).unique())
        .index(IndexSpec::new("category", FieldType::String))
        .index(IndexSpec::new("price", FieldType::Int))
        .index(IndexSpec::new("name", FieldType::String))
        .index(
            IndexSpec::new("code", FieldType::String)
                .unique()
                .optional(),
        )
        .text("name")
}

async fn items(store: &Store) -> Collection<Item> {
    store
        .collection::<Item>(spec())
        .await
        .expect("collection declared")
}

fn id(n: usize) -> String {
    format!("id-{n:04}")
}

pub async fn insert_then_get_returns_version_one(store: Store) {
    let c = items(&store).await;
    let stored = c
        .insert("a", item("SKU-1", "books", 1200, "Rust in Action"))
        .await
        .unwrap();
    assert_eq!(stored.version, 1);
    let got = c.get("a").await.unwrap();
    assert_eq!(got.version, 1);
    assert_eq!(got.value, item("SKU-1", "books", 1200, "Rust in Action"));
    assert_eq!(c.get("missing").await.unwrap_err(), StoreError::NotFound);
    assert!(c.find_by_id("missing").await.unwrap().is_none());
}

pub async fn duplicate_id_is_already_exists(store: Store) {
    let c = items(&store).await;
    c.insert("a", item("SKU-1", "books", 1, "x")).await.unwrap();
    let err = c
        .insert("a", item("SKU-2", "books", 1, "y"))
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::AlreadyExists { index: "id".into() });
    assert_eq!(
        c.get("a").await.unwrap().value.sku,
        "SKU-1",
        "the first write is kept"
    );
}

pub async fn unique_index_violation_names_the_index(store: Store) {
    let c = items(&store).await;
    c.insert("a", item("SKU-1", "books", 1, "x")).await.unwrap();
    let err = c
        .insert("b", item("SKU-1", "toys", 2, "y"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::AlreadyExists {
            index: "sku".into()
        }
    );
    assert!(
        c.find_by_id("b").await.unwrap().is_none(),
        "nothing was written"
    );
    // A replace that would collide is rejected too.
    let b = c.insert("b", item("SKU-2", "toys", 2, "y")).await.unwrap();
    let err = c
        .replace("b", b.version, item("SKU-1", "toys", 2, "y"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::AlreadyExists {
            index: "sku".into()
        }
    );
    assert_eq!(c.get("b").await.unwrap().version, 1);
    // Keeping one's own unique value is not a collision.
    c.replace("b", 1, item("SKU-2", "toys", 3, "y"))
        .await
        .unwrap();
}

pub async fn optional_unique_fields_do_not_collide_when_missing(store: Store) {
    let c = items(&store).await;
    c.insert("a", item("SKU-1", "books", 1, "x")).await.unwrap();
    c.insert("b", item("SKU-2", "books", 1, "x")).await.unwrap();
    let mut with_code = item("SKU-3", "books", 1, "x");
    with_code.code = Some("PROMO".into());
    c.insert("c", with_code.clone()).await.unwrap();
    with_code.sku = "SKU-4".into();
    let err = c.insert("d", with_code).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::AlreadyExists {
            index: "code".into()
        }
    );
}

pub async fn concurrent_inserts_each_get_their_own_outcome(store: Store) {
    let c = items(&store).await;
    let mut tasks = tokio::task::JoinSet::new();
    let mut attempt = |id: String, sku: String| {
        let c = c.clone();
        tasks.spawn(async move {
            let outcome = c.insert(&id, item(&sku, "batch", 1, "x")).await;
            (id, sku, outcome.map(|_| ()))
        });
    };
    for n in 0..20 {
        // The same id twice (other skus): one of the two is stored.
        attempt(format!("twice-{n}"), format!("T-{n}-a"));
        attempt(format!("twice-{n}"), format!("T-{n}-b"));
        // Ten skus taken by two ids each: one of the two is stored.
        attempt(format!("sku-{n}"), format!("S-{}", n % 10));
        attempt(format!("plain-{n}"), format!("P-{n}"));
    }
    let mut stored = std::collections::HashMap::new();
    let (mut by_id, mut by_sku) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        let (id, sku, outcome) = joined.unwrap();
        match outcome {
            Ok(()) => assert!(
                stored.insert(id.clone(), sku).is_none(),
                "{id} stored twice"
            ),
            Err(StoreError::AlreadyExists { index }) if index == "id" => by_id += 1,
            Err(StoreError::AlreadyExists { index }) if index == "sku" => by_sku += 1,
            Err(other) => panic!("{id}: {other:?}"),
        }
    }
    assert_eq!((stored.len(), by_id, by_sku), (50, 20, 10));
    for (id, sku) in &stored {
        assert_eq!(
            &c.get(id).await.unwrap().value.sku,
            sku,
            "{id} holds what it was told"
        );
    }
    let page = c
        .find(&Query::new().eq("category", "batch").limit(100))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 50, "nothing stored that was refused");
}

pub async fn concurrent_replaces_each_get_their_own_outcome(store: Store) {
    let c = items(&store).await;
    for n in 0..40 {
        c.insert(&id(n), item(&format!("R-{n}"), "cas", 0, "x"))
            .await
            .unwrap();
    }
    let mut tasks = tokio::task::JoinSet::new();
    let mut attempt = |n: usize, expected: u64, price: i64| {
        let c = c.clone();
        tasks.spawn(async move {
            let outcome = c
                .replace(&id(n), expected, item(&format!("R-{n}"), "cas", price, "x"))
                .await;
            (n, price, outcome.map(|stored| stored.version))
        });
    };
    for n in 0..20 {
        // Two writers from version 1: one of them is stored.
        attempt(n, 1, 1);
        attempt(n, 1, 2);
    }
    for n in 20..40 {
        // A version the document never had, and one it has.
        attempt(n, 7, 3);
        attempt(n, 1, 4);
    }
    for n in 40..50 {
        attempt(n, 1, 5); // no such document
    }
    let mut stored = std::collections::HashMap::new();
    let (mut conflicts, mut missing) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        let (n, price, outcome) = joined.unwrap();
        match outcome {
            Ok(version) => {
                assert_eq!(version, 2, "{n}");
                assert!(stored.insert(n, price).is_none(), "{n} written twice");
            }
            Err(StoreError::VersionConflict) => conflicts += 1,
            Err(StoreError::NotFound) => missing += 1,
            Err(other) => panic!("{n}: {other:?}"),
        }
    }
    assert_eq!((stored.len(), conflicts, missing), (40, 40, 10));
    for (n, price) in &stored {
        let doc = c.get(&id(*n)).await.unwrap();
        assert_eq!(
            (doc.version, doc.value.price),
            (2, *price),
            "{n} holds what it was told"
        );
        if *n >= 20 {
            assert_eq!(*price, 4, "only the current version's write lands");
        }
    }
}

pub async fn cas_rejects_stale_version(store: Store) {
    let c = items(&store).await;
    c.insert("a", item("SKU-1", "books", 1, "x")).await.unwrap();
    let v2 = c
        .replace("a", 1, item("SKU-1", "books", 2, "x"))
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    let stale = c
        .replace("a", 1, item("SKU-1", "books", 999, "x"))
        .await
        .unwrap_err();
    assert_eq!(stale, StoreError::VersionConflict);
    let current = c.get("a").await.unwrap();
    assert_eq!(
        (current.version, current.value.price),
        (2, 2),
        "the stale write changed nothing"
    );
    assert_eq!(
        c.replace("nope", 1, item("S", "b", 1, "x"))
            .await
            .unwrap_err(),
        StoreError::NotFound
    );
}

pub async fn cas_under_50_concurrent_writers_loses_no_update(store: Store) {
    let c = items(&store).await;
    c.insert("counter", item("SKU-1", "books", 0, "x"))
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let c = c.clone();
        tasks.spawn(async move {
            c.update::<(), _>("counter", |doc| {
                doc.counter += 1;
                Ok(())
            })
            .await
            .expect("update completes")
            .expect("change applies")
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
    let last = c.get("counter").await.unwrap();
    assert_eq!(last.value.counter, 50, "no update was lost");
    assert_eq!(last.version, 51);
}

pub async fn update_from_a_stale_copy_reads_again_and_loses_no_write(store: Store) {
    let c = items(&store).await;
    let first = c
        .insert("counter", item("SKU-1", "books", 0, "x"))
        .await
        .unwrap();
    // From the copy the insert returned: one write, from that version.
    let second = c
        .modify_from(first.clone(), |doc| doc.counter += 1)
        .await
        .unwrap();
    assert_eq!((second.version, second.value.counter), (2, 1));
    // The first copy is stale now: the change is applied to what is stored.
    let third = c.modify_from(first, |doc| doc.counter += 10).await.unwrap();
    assert_eq!((third.version, third.value.counter), (3, 11));
    // From a stale copy a change that would pass is tried, conflicts, and
    // is decided again on what is stored: refused there, nothing written.
    let refused = c
        .update_from(second, |doc| {
            if doc.counter > 5 {
                return Err(doc.counter);
            }
            doc.counter = 0;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(refused.err(), Some(11));
    let last = c.get("counter").await.unwrap();
    assert_eq!((last.version, last.value.counter), (3, 11));
}

pub async fn paging_visits_every_document_once_despite_concurrent_inserts(store: Store) {
    let c = items(&store).await;
    // Prices repeat, so ties are broken by id across page boundaries.
    for n in 0..25 {
        c.insert(
            &id(n),
            item(&format!("SKU-{n}"), "books", (n % 4) as i64 * 100, "x"),
        )
        .await
        .unwrap();
    }
    let query = Query::new()
        .eq("category", "books")
        .sort("price", false)
        .limit(7);
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = c.find(&query.clone().after(cursor.clone())).await.unwrap();
        pages += 1;
        seen.extend(page.items.iter().map(|d| (d.value.price, d.id.clone())));
        if pages == 1 {
            // Writes between pages: one sorting before the position, one after.
            c.insert("id-0000a", item("SKU-new-low", "books", -1, "x"))
                .await
                .unwrap();
            c.insert("id-9999", item("SKU-new-high", "books", 10_000, "x"))
                .await
                .unwrap();
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 20, "paging terminates");
    }
    let ids: HashSet<&String> = seen.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), seen.len(), "no document twice: {seen:?}");
    for n in 0..25 {
        assert!(ids.contains(&id(n)), "{} missing", id(n));
    }
    assert!(
        !ids.contains(&"id-0000a".to_string()),
        "a document sorting before the cursor is not revisited"
    );
    assert!(
        ids.contains(&"id-9999".to_string()),
        "a document sorting after the cursor is seen"
    );
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "pages arrive in order");
}

pub async fn cursor_tampering_is_rejected(store: Store) {
    let c = items(&store).await;
    for n in 0..5 {
        c.insert(&id(n), item(&format!("SKU-{n}"), "books", n as i64, "x"))
            .await
            .unwrap();
    }
    let query = Query::new().sort("price", false).limit(2);
    let cursor = c
        .find(&query)
        .await
        .unwrap()
        .next_cursor
        .expect("more pages");
    let mut tampered = cursor.clone().into_bytes();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [tampered.as_str(), "garbage", ""] {
        let err = c
            .find(&query.clone().after(Some(bad.to_string())))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{bad:?}: {err:?}");
    }
    let other_query = Query::new().sort("price", true).limit(2);
    let err = c
        .find(&other_query.after(Some(cursor.clone())))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid(_)),
        "a cursor only works with its own query"
    );
    assert_eq!(
        c.find(&query.after(Some(cursor)))
            .await
            .unwrap()
            .items
            .len(),
        2
    );
}

pub async fn sort_order_is_typed_and_ties_break_by_id(store: Store) {
    let c = items(&store).await;
    // Integers sort numerically (9 < 10 < 100), strings byte-wise ("B" < "a").
    c.insert("c", item("S3", "k", 100, "a")).await.unwrap();
    c.insert("a", item("S1", "k", 9, "B")).await.unwrap();
    c.insert("b", item("S2", "k", 10, "a")).await.unwrap();
    c.insert("d", item("S4", "k", 10, "Z")).await.unwrap();
    let ids = |page: platform::store::Page<platform::store::Versioned<Item>>| {
        page.items.into_iter().map(|d| d.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(c.find(&Query::new().sort("price", false)).await.unwrap()),
        ["a", "b", "d", "c"]
    );
    assert_eq!(
        ids(c.find(&Query::new().sort("price", true)).await.unwrap()),
        ["c", "d", "b", "a"]
    );
    assert_eq!(
        ids(c.find(&Query::new().sort("name", false)).await.unwrap()),
        ["a", "d", "b", "c"]
    );
    assert_eq!(
        ids(c.find(&Query::new().sort_by_id(false)).await.unwrap()),
        ["a", "b", "c", "d"]
    );
    assert_eq!(
        ids(c
            .find(&Query::new().sort_by_id(true).limit(2))
            .await
            .unwrap()),
        ["d", "c"]
    );
}

pub async fn equality_and_range_filters_combine(store: Store) {
    let c = items(&store).await;
    for (n, (cat, price)) in [
        ("books", 5),
        ("books", 10),
        ("books", 15),
        ("toys", 10),
        ("books", 20),
    ]
    .iter()
    .enumerate()
    {
        c.insert(&id(n), item(&format!("S{n}"), cat, *price, "x"))
            .await
            .unwrap();
    }
    let prices = |page: platform::store::Page<platform::store::Versioned<Item>>| {
        page.items
            .into_iter()
            .map(|d| d.value.price)
            .collect::<Vec<_>>()
    };
    let q = Query::new()
        .eq("category", "books")
        .range(
            "price",
            Some(Bound::Inclusive(10.into())),
            Some(Bound::Exclusive(20.into())),
        )
        .sort("price", false);
    assert_eq!(prices(c.find(&q).await.unwrap()), [10, 15]);
    let q = Query::new()
        .eq("category", "books")
        .range("price", Some(Bound::Exclusive(10.into())), None)
        .sort("price", false);
    assert_eq!(prices(c.find(&q).await.unwrap()), [15, 20]);
    let q = Query::new()
        .range("price", None, Some(Bound::Inclusive(10.into())))
        .sort("price", false);
    assert_eq!(prices(c.find(&q).await.unwrap()), [5, 10, 10]);
    let q = Query::new().eq("category", "games");
    assert!(c.find(&q).await.unwrap().items.is_empty());
    let found = c
        .find_one(Query::new().eq("sku", "S3"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.value.category, "toys");
}

/// A document that has an optional indexed field only in some states.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deadline {
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<i64>,
}

pub async fn a_range_on_an_optional_field_leaves_out_documents_without_it(store: Store) {
    let c = store
        .collection::<Deadline>(
            CollectionSpec::new("deadlines")
                .index(IndexSpec::new("owner", FieldType::String))
                .index(IndexSpec::new("due", FieldType::Int).optional()),
        )
        .await
        .unwrap();
    for (id, owner, due) in [
        ("a", "ann", Some(-5)),
        ("b", "ann", None),
        ("c", "ann", Some(1_700_000_000_000)),
        ("d", "bob", Some(7)),
        ("e", "ann", Some(0)),
    ] {
        c.insert(
            id,
            Deadline {
                owner: owner.into(),
                due,
            },
        )
        .await
        .unwrap();
    }
    let ids = |page: platform::store::Page<platform::store::Versioned<Deadline>>| {
        page.items.into_iter().map(|d| d.id).collect::<Vec<_>>()
    };
    let any =
        Query::new()
            .eq("owner", "ann")
            .range("due", Some(Bound::Inclusive(i64::MIN.into())), None);
    assert_eq!(ids(c.find(&any).await.unwrap()), ["a", "c", "e"]);
    let due_by = Query::new().range("due", None, Some(Bound::Inclusive(7.into())));
    assert_eq!(ids(c.find(&due_by).await.unwrap()), ["a", "d", "e"]);
}

pub async fn text_match_is_case_insensitive_and_literal(store: Store) {
    let c = items(&store).await;
    c.insert("a", item("S1", "k", 1, "Mechanical Keyboard"))
        .await
        .unwrap();
    c.insert("b", item("S2", "k", 2, "keyboard cover"))
        .await
        .unwrap();
    c.insert("c", item("S3", "k", 3, "Mouse")).await.unwrap();
    c.insert("d", item("S4", "k", 4, "100% cotton_shirt"))
        .await
        .unwrap();
    let ids = |page: platform::store::Page<platform::store::Versioned<Item>>| {
        page.items.into_iter().map(|d| d.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(c.find(&Query::new().text("KEYBOARD")).await.unwrap()),
        ["a", "b"]
    );
    assert_eq!(
        ids(c
            .find(&Query::new().text("board").eq("price", 2))
            .await
            .unwrap()),
        ["b"]
    );
    // LIKE and regex metacharacters match literally.
    assert_eq!(
        ids(c.find(&Query::new().text("0% c")).await.unwrap()),
        ["d"]
    );
    assert_eq!(ids(c.find(&Query::new().text("n_s")).await.unwrap()), ["d"]);
    assert!(c.find(&Query::new().text("%")).await.unwrap().items.len() == 1);
    assert!(
        c.find(&Query::new().text(".*"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

pub async fn large_documents_round_trip_and_oversize_is_rejected(store: Store) {
    let c = items(&store).await;
    let mut big = item("S1", "k", 1, "big");
    big.blob = "x".repeat(1024 * 1024);
    c.insert("big", big.clone()).await.unwrap();
    assert_eq!(c.get("big").await.unwrap().value.blob.len(), 1024 * 1024);
    let mut huge = item("S2", "k", 1, "huge");
    huge.blob = "y".repeat(17 * 1024 * 1024);
    let err = c.insert("huge", huge).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(c.find_by_id("huge").await.unwrap().is_none());
}

pub async fn unicode_round_trips(store: Store) {
    let c = items(&store).await;
    let name = "Crème brûlée — 東京 🍮";
    c.insert("ü-1", item("SKU-ü", "desserts", 1, name))
        .await
        .unwrap();
    let got = c.get("ü-1").await.unwrap();
    assert_eq!(got.value.name, name);
    assert_eq!(got.value.sku, "SKU-ü");
    let found = c.find(&Query::new().text("brûlée")).await.unwrap();
    assert_eq!(found.items.len(), 1);
    let found = c.find(&Query::new().text("東京")).await.unwrap();
    assert_eq!(found.items.len(), 1);
    assert_eq!(
        c.find_one(Query::new().eq("sku", "SKU-ü"))
            .await
            .unwrap()
            .unwrap()
            .id,
        "ü-1"
    );
}

pub async fn queries_on_undeclared_or_mistyped_fields_are_invalid(store: Store) {
    let c = items(&store).await;
    fn invalid<T>(r: Result<T, StoreError>) -> bool {
        matches!(r, Err(StoreError::Invalid(_)))
    }
    assert!(
        invalid(c.find(&Query::new().eq("blob", "x")).await),
        "undeclared field"
    );
    assert!(
        invalid(c.find(&Query::new().eq("price", "cheap")).await),
        "wrong type"
    );
    assert!(
        invalid(c.find(&Query::new().sort("code", false)).await),
        "optional field sort"
    );
    assert!(invalid(c.find(&Query::new().limit(0)).await), "zero limit");
    assert!(
        invalid(c.find(&Query::new().limit(1001)).await),
        "huge limit"
    );
    assert!(invalid(c.get("").await), "empty id");
    #[derive(Debug, Serialize, Deserialize)]
    struct NoSku {
        category: String,
        price: i64,
        name: String,
    }
    let raw = store.collection::<NoSku>(spec()).await.unwrap();
    let err = raw
        .insert(
            "x",
            NoSku {
                category: "k".into(),
                price: 1,
                name: "n".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid(_)),
        "required indexed field missing: {err:?}"
    );
}

pub async fn declaring_a_collection_is_idempotent_and_concurrent_safe(store: Store) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.spawn(async move { store.collection::<Item>(spec()).await.map(|_| ()) });
    }
    while let Some(result) = tasks.join_next().await {
        result
            .unwrap()
            .expect("every concurrent declaration succeeds");
    }
    let c = items(&store).await;
    c.insert("a", item("S1", "k", 1, "x")).await.unwrap();
    let again = items(&store).await;
    assert_eq!(
        again.get("a").await.unwrap().value.sku,
        "S1",
        "re-declaring keeps the data"
    );
    assert_eq!(
        again
            .insert("b", item("S1", "k", 1, "x"))
            .await
            .unwrap_err(),
        StoreError::AlreadyExists {
            index: "sku".into()
        }
    );
}

pub async fn delete_honours_the_version(store: Store) {
    let c = items(&store).await;
    c.insert("a", item("S1", "k", 1, "x")).await.unwrap();
    c.replace("a", 1, item("S1", "k", 2, "x")).await.unwrap();
    assert_eq!(
        c.delete("a", Some(1)).await.unwrap_err(),
        StoreError::VersionConflict
    );
    c.delete("a", Some(2)).await.unwrap();
    assert_eq!(c.delete("a", None).await.unwrap_err(), StoreError::NotFound);
    // The unique value is free again.
    c.insert("b", item("S1", "k", 1, "x")).await.unwrap();
}

pub async fn text_search_with_a_nul_is_an_invalid_request(store: Store) {
    let c = items(&store).await;
    c.insert("a", item("S1", "k", 1, "ab")).await.unwrap();
    // MongoDB refuses a $regex holding NUL, Postgres text cannot hold one:
    // either would be a server error if it got through.
    for needle in ["a\0b", "\0"] {
        let err = c.find(&Query::new().text(needle)).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Invalid(m) if m.contains("NUL")),
            "{needle:?}: {err:?}"
        );
    }
    assert_eq!(
        c.find(&Query::new().text("ab")).await.unwrap().items.len(),
        1
    );
}

pub async fn lookups_on_unique_fields_find_exactly_the_holder(store: Store) {
    let c = items(&store).await;
    let mut coded = item("S1", "k", 1, "x");
    coded.code = Some("PROMO".into());
    c.insert("a", coded).await.unwrap();
    c.insert("b", item("S2", "k", 2, "y")).await.unwrap();
    let one = |q: Query| {
        let c = c.clone();
        async move { c.find_one(q).await.unwrap().map(|d| d.id) }
    };
    assert_eq!(
        one(Query::new().eq("sku", "S2")).await.as_deref(),
        Some("b")
    );
    assert_eq!(
        one(Query::new().eq("code", "PROMO")).await.as_deref(),
        Some("a")
    );
    assert_eq!(one(Query::new().eq("code", "NONE")).await, None);
    assert_eq!(
        one(Query::new().eq("sku", "S1").eq("category", "k"))
            .await
            .as_deref(),
        Some("a")
    );
    assert_eq!(
        one(Query::new().eq("sku", "S1").eq("category", "z")).await,
        None
    );
}

/// The spec of [`spec`] as a later release might declare it: `name`
/// unique, `category` gone, `counter` indexed.
pub fn changed_spec() -> CollectionSpec {
    CollectionSpec::new("items")
        .index(IndexSpec::new("sku", FieldType::String).unique())
        .index(IndexSpec::new("price", FieldType::Int))
        .index(IndexSpec::new("name", FieldType::String).unique())
        .index(IndexSpec::new("counter", FieldType::Int))
        .index(
            IndexSpec::new("code", FieldType::String)
                .unique()
                .optional(),
        )
        .text("name")
}

/// Start-up on a database made by an older release: the changed
/// declaration succeeds, keeps the data and enforces the new index; going
/// back to the old one works too.
pub async fn a_changed_index_spec_does_not_break_start_up(store: Store) {
    let old = items(&store).await;
    old.insert("a", item("S1", "k", 1, "same")).await.unwrap();
    let new = store
        .collection::<Item>(changed_spec())
        .await
        .expect("a changed spec is declared on an existing collection");
    assert_eq!(new.get("a").await.unwrap().value.sku, "S1");
    assert_eq!(
        new.insert("b", item("S2", "k", 1, "same"))
            .await
            .unwrap_err(),
        StoreError::AlreadyExists {
            index: "name".into()
        },
        "the new unique index holds"
    );
    let found = new.find(&Query::new().eq("counter", 0)).await.unwrap();
    assert_eq!(found.items.len(), 1);
    let back = store
        .collection::<Item>(spec())
        .await
        .expect("rolling back to the old spec works");
    back.insert("c", item("S3", "k", 1, "same"))
        .await
        .expect("name is no longer unique");
}

/// A unique index made outside the spec (by an operator) on `name` and
/// `category`:
/// `create_extra_index` makes it; a clash on it is reported, but not as a
/// clash on the id.
pub async fn a_clash_on_an_undeclared_index_is_not_an_id_clash<F, Fut>(
    store: Store,
    create_extra_index: F,
) where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let c = items(&store).await;
    create_extra_index().await;
    c.insert("a", item("S1", "k", 1, "dup")).await.unwrap();
    let err = c.insert("b", item("S2", "k", 1, "dup")).await.unwrap_err();
    match &err {
        StoreError::AlreadyExists { index } => {
            assert_ne!(index, "id", "{err:?}");
            assert!(index.contains("ops_name"), "names the index: {err:?}");
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert!(c.find_by_id("b").await.unwrap().is_none());
    // The id clash is still an id clash.
    assert_eq!(
        c.insert("a", item("S3", "k", 1, "other"))
            .await
            .unwrap_err(),
        StoreError::AlreadyExists { index: "id".into() }
    );
}
