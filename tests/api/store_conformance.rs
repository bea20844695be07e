//! One conformance suite, run against both backends: `embedded::*` on a redb file, `dynamodb::*` on AWS's
//! DynamoDB Local. Every test states a behaviour callers rely on; both backends must agree.

use crate::common;

use std::collections::BTreeMap;

use cloud_agent::store::{
    BatchRetry, CancelReason, Condition, DynStore, Index, Item, Key, LimitError, MAX_ITEM_BYTES,
    MAX_PARTITION_KEY_BYTES, MAX_SORT_KEY_BYTES, Page, Query, StoreError, TxOp, Update, Value, WriteOp, now_epoch,
};

fn item(pk: &str, sk: &str) -> Item {
    Item::new(&Key::new(pk, sk))
}

async fn all_pages(store: &DynStore, query: Query) -> (Vec<Item>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut cursor = None;
    loop {
        let Page { items: got, next } = store.query(query.clone().after(cursor)).await.expect("query");
        pages += 1;
        items.extend(got);
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(pages < 100, "paging does not terminate");
    }
    (items, pages)
}

async fn put_then_get_round_trips_every_type(store: DynStore) {
    let mut map = BTreeMap::new();
    map.insert("nested".to_owned(), Value::from("yes"));
    let written = item("T#1", "A")
        .with("s", "text with ünïcode")
        .with("i", 42i64)
        .with("f", 2.5f64)
        .with("b", true)
        .with("n", Value::Null)
        .with("l", Value::L(vec![Value::from(1i64), Value::from("two")]))
        .with("m", Value::M(map));
    store.put(written.clone(), None).await.unwrap();
    let read = store.get(&Key::new("T#1", "A")).await.unwrap().expect("item present");
    assert_eq!(read, written);
    assert!(store.get(&Key::new("T#1", "B")).await.unwrap().is_none());
}

async fn conditional_put_fails_and_returns_the_current_item(store: DynStore) {
    let first = item("T#2", "A").with("owner", "alice");
    store.put(first.clone(), Some(Condition::NotExists)).await.unwrap();
    let err = store.put(item("T#2", "A").with("owner", "mallory"), Some(Condition::NotExists)).await.unwrap_err();
    match err {
        StoreError::ConditionFailed { current } => assert_eq!(current.as_deref(), Some(&first)),
        other => panic!("expected ConditionFailed, got {other:?}"),
    }
    // The failed write changed nothing.
    assert_eq!(store.get(&Key::new("T#2", "A")).await.unwrap().unwrap().get_str("owner"), Some("alice"));
    // Exists on an absent key fails with no current item.
    match store.put(item("T#2", "B"), Some(Condition::Exists)).await.unwrap_err() {
        StoreError::ConditionFailed { current } => assert!(current.is_none()),
        other => panic!("expected ConditionFailed, got {other:?}"),
    }
}

async fn conditional_update_is_compare_and_set(store: DynStore) {
    let key = Key::new("T#3", "META");
    store.put(item("T#3", "META").with("version", 1i64).with("state", "a"), None).await.unwrap();
    let updated = store
        .update(&key, Update::new().set("state", "b").add("version", 1), Some(Condition::eq("version", 1i64)))
        .await
        .unwrap();
    assert_eq!(updated.get_i64("version"), Some(2));
    assert_eq!(updated.get_str("state"), Some("b"));
    // A stale writer (still thinks version is 1) loses and learns the current state.
    match store.update(&key, Update::new().set("state", "stale"), Some(Condition::eq("version", 1i64))).await {
        Err(StoreError::ConditionFailed { current: Some(current) }) => assert_eq!(current.get_i64("version"), Some(2)),
        other => panic!("expected ConditionFailed with the current item, got {other:?}"),
    }
    assert_eq!(store.get(&key).await.unwrap().unwrap().get_str("state"), Some("b"));
}

async fn update_add_set_if_absent_and_remove(store: DynStore) {
    let key = Key::new("T#4", "COUNT");
    let first = store.update(&key, Update::new().add("hits", 1).set_if_absent("created", "t0"), None).await.unwrap();
    assert_eq!(first.get_i64("hits"), Some(1));
    let second = store
        .update(&key, Update::new().add("hits", 5).set_if_absent("created", "t1").set("note", "x"), None)
        .await
        .unwrap();
    assert_eq!(second.get_i64("hits"), Some(6));
    assert_eq!(second.get_str("created"), Some("t0"), "set_if_absent keeps the first value");
    let third = store.update(&key, Update::new().remove("note"), None).await.unwrap();
    assert!(third.get("note").is_none());
    // Changing a key attribute is a caller bug on both backends.
    assert!(matches!(store.update(&key, Update::new().set("pk", "other"), None).await, Err(StoreError::Validation(_))));
    // ADD on a string is rejected, not silently coerced.
    assert!(matches!(store.update(&key, Update::new().add("created", 1), None).await, Err(StoreError::Validation(_))));
}

/// Independent updates: each applied on its own, a refused one leaving the others written (unlike a transaction),
/// concurrent callers' counts all added.
async fn update_each_applies_every_update_on_its_own(store: DynStore) {
    let (a, b, bad) = (Key::new("U#each", "a"), Key::new("U#each", "b"), Key::new("U#each", "bad"));
    store.put(item("U#each", "bad").with("name", "text"), None).await.unwrap();
    let outcomes = store
        .update_each(vec![
            (a.clone(), Update::new().add("n", 1)),
            (bad.clone(), Update::new().add("name", 1)),
            (b.clone(), Update::new().add("n", 2).set("k", "v")),
        ])
        .await;
    assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
    assert!(matches!(outcomes[1], Err(StoreError::Validation(_))), "ADD on a string is refused: {outcomes:?}");
    assert_eq!(store.get(&b).await.unwrap().unwrap().get_str("k"), Some("v"));
    assert_eq!(store.get(&bad).await.unwrap().unwrap().get_str("name"), Some("text"), "the refused one wrote nothing");
    let callers = (0..20).map(|_| {
        let store = store.clone();
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move {
            store.update_each(vec![(a, Update::new().add("n", 1)), (b, Update::new().add("n", 1))]).await
        })
    });
    for caller in callers {
        assert!(caller.await.unwrap().iter().all(Result::is_ok));
    }
    assert_eq!(store.get(&a).await.unwrap().unwrap().get_i64("n"), Some(21));
    assert_eq!(store.get(&b).await.unwrap().unwrap().get_i64("n"), Some(22));
}

async fn conditional_delete_returns_the_removed_item(store: DynStore) {
    let key = Key::new("T#5", "A");
    store.put(item("T#5", "A").with("status", "open"), None).await.unwrap();
    assert!(matches!(
        store.delete(&key, Some(Condition::eq("status", "closed"))).await,
        Err(StoreError::ConditionFailed { current: Some(_) })
    ));
    let removed = store.delete(&key, Some(Condition::eq("status", "open"))).await.unwrap();
    assert_eq!(removed.and_then(|i| i.get_str("status").map(str::to_owned)).as_deref(), Some("open"));
    assert!(store.get(&key).await.unwrap().is_none());
    assert!(store.delete(&key, None).await.unwrap().is_none());
}

async fn query_by_prefix_pages_in_order(store: DynStore) {
    for i in 0..7 {
        store.put(item("TASK#9", &format!("EVENT#{i:03}")).with("i", i64::from(i)), None).await.unwrap();
    }
    store.put(item("TASK#9", "STATE"), None).await.unwrap();
    store.put(item("TASK#90", "EVENT#000"), None).await.unwrap(); // a neighbouring partition
    let query = Query::partition("TASK#9").prefix("EVENT#").limit(3);
    let first = store.query(query.clone()).await.unwrap();
    assert_eq!(first.items.len(), 3);
    assert!(first.next.is_some(), "a full page says there may be more");
    let (items, pages) = all_pages(&store, query.clone()).await;
    let order: Vec<i64> = items.iter().map(|i| i.get_i64("i").unwrap()).collect();
    assert_eq!(order, vec![0, 1, 2, 3, 4, 5, 6]);
    assert!(pages >= 3);
    let (backward, _) = all_pages(&store, query.backward()).await;
    let order: Vec<i64> = backward.iter().map(|i| i.get_i64("i").unwrap()).collect();
    assert_eq!(order, vec![6, 5, 4, 3, 2, 1, 0]);
    let (whole, _) = all_pages(&store, Query::partition("TASK#9")).await;
    assert_eq!(whole.len(), 8, "no prefix: the whole partition and nothing else");
}

async fn query_by_sort_key_range_pages_both_ways(store: DynStore) {
    for i in 0..10 {
        let it = item("AUDIT#t", &format!("{i:03}#r"))
            .with("i", i64::from(i))
            .with("gsi1pk", "BY#t#x")
            .with("gsi1sk", format!("{i:03}#r"));
        store.put(it, None).await.unwrap();
    }
    store.put(item("AUDIT#t", "100#r").with("i", 100), None).await.unwrap();
    let order = |items: &[Item]| items.iter().map(|i| i.get_i64("i").unwrap()).collect::<Vec<_>>();
    let query = Query::partition("AUDIT#t").between("002", "006~").limit(2);
    assert_eq!(order(&all_pages(&store, query.clone()).await.0), vec![2, 3, 4, 5, 6]);
    assert_eq!(order(&all_pages(&store, query.clone().backward()).await.0), vec![6, 5, 4, 3, 2]);
    // On the index too (eventually consistent on DynamoDB: allow it a moment).
    let on_index = Query::partition("BY#t#x").on(Index::Gsi1).between("007", "999").limit(2);
    let mut found = Vec::new();
    for _ in 0..50 {
        found = order(&all_pages(&store, on_index.clone()).await.0);
        if found.len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(found, vec![7, 8, 9]);
    let both = Query::partition("AUDIT#t").prefix("00").between("002", "006");
    assert!(matches!(store.query(both).await, Err(StoreError::Validation(_))));
    let inverted = Query::partition("AUDIT#t").between("006", "002");
    assert!(matches!(store.query(inverted).await, Err(StoreError::Validation(_))));
}

async fn gsi1_query_finds_items_by_secondary_key(store: DynStore) {
    for (i, actor) in ["alice", "bob", "alice", "alice"].iter().enumerate() {
        let it = item("AUDIT#2026-11-23", &format!("{i}#req"))
            .with("gsi1pk", format!("ACTOR#{actor}"))
            .with("gsi1sk", format!("2026-11-23T00:00:0{i}"));
        store.put(it, None).await.unwrap();
    }
    let query = Query::partition("ACTOR#alice").on(Index::Gsi1).limit(2);
    // GSIs are eventually consistent on DynamoDB: allow the index a moment.
    let mut found = Vec::new();
    for _ in 0..50 {
        found = all_pages(&store, query.clone()).await.0;
        if found.len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let sks: Vec<&str> = found.iter().map(|i| i.get_str("sk").unwrap()).collect();
    assert_eq!(sks, vec!["0#req", "2#req", "3#req"]);
}

async fn batch_write_takes_25_and_rejects_26(store: DynStore) {
    let ops: Vec<WriteOp> = (0..25).map(|i| WriteOp::Put(item("B#1", &format!("{i:02}")))).collect();
    let left = store.batch_write(ops, BatchRetry::default()).await.unwrap();
    assert!(left.is_empty());
    assert_eq!(all_pages(&store, Query::partition("B#1")).await.0.len(), 25);
    let too_many: Vec<WriteOp> = (0..26).map(|i| WriteOp::Put(item("B#2", &format!("{i:02}")))).collect();
    assert!(matches!(store.batch_write_once(too_many).await, Err(StoreError::Validation(_))));
    assert!(store.query(Query::partition("B#2")).await.unwrap().items.is_empty(), "a rejected batch writes nothing");
    let duplicate = vec![WriteOp::Put(item("B#3", "A")), WriteOp::Delete(Key::new("B#3", "A"))];
    assert!(matches!(store.batch_write_once(duplicate).await, Err(StoreError::Validation(_))));
    // Deletes in a batch.
    let deletes: Vec<WriteOp> = (0..10).map(|i| WriteOp::Delete(Key::new("B#1", format!("{i:02}")))).collect();
    assert!(store.batch_write(deletes, BatchRetry::default()).await.unwrap().is_empty());
    assert_eq!(all_pages(&store, Query::partition("B#1")).await.0.len(), 15);
}

async fn transaction_is_all_or_nothing_with_reasons(store: DynStore) {
    store.put(item("X#1", "A").with("balance", 10i64), None).await.unwrap();
    let ok = vec![
        TxOp::Update {
            key: Key::new("X#1", "A"),
            update: Update::new().add("balance", -5),
            condition: Some(Condition::ge("balance", 5i64)),
        },
        TxOp::Put { item: item("X#1", "B").with("balance", 5i64), condition: Some(Condition::NotExists) },
    ];
    store.transact_write(ok).await.unwrap();
    let failing = vec![
        TxOp::Put { item: item("X#1", "C"), condition: None },
        TxOp::Update {
            key: Key::new("X#1", "A"),
            update: Update::new().add("balance", -50),
            condition: Some(Condition::ge("balance", 50i64)),
        },
        TxOp::Check { key: Key::new("X#1", "B"), condition: Condition::Exists },
    ];
    match store.transact_write(failing).await {
        Err(StoreError::TransactionCanceled { reasons, current }) => {
            assert_eq!(reasons, vec![CancelReason::None, CancelReason::ConditionalCheckFailed, CancelReason::None]);
            // The failed update reports the live item it was checked against (a refresh decides on it).
            assert_eq!(current.len(), 3);
            assert_eq!(current[1].as_ref().and_then(|i| i.get_i64("balance")), Some(5));
            assert!(current[0].is_none() && current[2].is_none());
        }
        other => panic!("expected TransactionCanceled, got {other:?}"),
    }
    assert!(store.get(&Key::new("X#1", "C")).await.unwrap().is_none(), "nothing of a cancelled transaction is written");
    assert_eq!(store.get(&Key::new("X#1", "A")).await.unwrap().unwrap().get_i64("balance"), Some(5));
    let twice = vec![
        TxOp::Put { item: item("X#1", "D"), condition: None },
        TxOp::Delete { key: Key::new("X#1", "D"), condition: None },
    ];
    assert!(matches!(store.transact_write(twice).await, Err(StoreError::Validation(_))));
}

async fn expired_items_are_absent_everywhere(store: DynStore) {
    let past = now_epoch() - 10;
    let future = now_epoch() + 3600;
    store.put(item("TTL#1", "GONE").with("expires_at", past).with("hits", 100i64), None).await.unwrap();
    store.put(item("TTL#1", "LIVE").with("expires_at", future), None).await.unwrap();
    assert!(store.get(&Key::new("TTL#1", "GONE")).await.unwrap().is_none(), "reads hide expired items");
    assert!(store.get(&Key::new("TTL#1", "LIVE")).await.unwrap().is_some());
    let (items, _) = all_pages(&store, Query::partition("TTL#1")).await;
    assert_eq!(items.len(), 1, "queries hide expired items");
    assert!(matches!(
        store.put(item("TTL#1", "GONE"), Some(Condition::Exists)).await,
        Err(StoreError::ConditionFailed { current: None })
    ));
    // An expired idempotency record or nonce can be claimed again.
    store.put(item("TTL#1", "GONE").with("expires_at", past).with("hits", 100i64), None).await.unwrap();
    store.put(item("TTL#1", "GONE").with("claimed", true), Some(Condition::NotExists)).await.unwrap();
    // An update on an expired item starts from nothing: a rate window's counter restarts at zero.
    store.put(item("TTL#1", "WINDOW").with("expires_at", past).with("count", 100i64), None).await.unwrap();
    let fresh = store
        .update(&Key::new("TTL#1", "WINDOW"), Update::new().add("count", 1).set("expires_at", future), None)
        .await
        .unwrap();
    assert_eq!(fresh.get_i64("count"), Some(1));
    // Deleting an expired item reports nothing removed.
    store.put(item("TTL#1", "OLD").with("expires_at", past), None).await.unwrap();
    assert!(store.delete(&Key::new("TTL#1", "OLD"), None).await.unwrap().is_none());
}

async fn concurrent_claims_have_exactly_one_winner(store: DynStore) {
    let mut tasks = Vec::new();
    for i in 0..20i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.put(item("NONCE#abc", "SEEN").with("by", i), Some(Condition::NotExists)).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => wins += 1,
            Err(StoreError::ConditionFailed { current: Some(_) }) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    // Concurrent ADDs are not lost.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.update(&Key::new("RL#k#1", "COUNT"), Update::new().add("n", 1), None).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(store.get(&Key::new("RL#k#1", "COUNT")).await.unwrap().unwrap().get_i64("n"), Some(20));
}

async fn compound_conditions_evaluate_alike(store: DynStore) {
    let key = Key::new("C#1", "META");
    store.put(item("C#1", "META").with("state", "open").with("n", 3i64).with("tag", "ab-1"), None).await.unwrap();
    let both = Condition::eq("state", "open")
        .and(Condition::gt("n", 2i64))
        .and(Condition::BeginsWith("tag".into(), "ab".into()));
    store.update(&key, Update::new().add("n", 1), Some(both)).await.unwrap();
    let either = Condition::eq("state", "closed").or(Condition::Not(Box::new(Condition::lt("n", 4i64))));
    store.update(&key, Update::new().add("n", 1), Some(either.clone())).await.unwrap();
    let neither = Condition::eq("state", "closed").or(Condition::AttrExists("missing".into()));
    assert!(matches!(store.put(item("C#1", "META"), Some(neither)).await, Err(StoreError::ConditionFailed { .. })));
    let nested = Condition::And(vec![Condition::Exists, either, Condition::ne("state", "closed")]);
    store.delete(&key, Some(nested)).await.unwrap();
    // A compound condition that holds for an absent item (so the TTL guard takes its other branch).
    let absent_ok = Condition::NotExists.or(Condition::eq("state", "x"));
    store.put(item("C#1", "META").with("state", "new"), Some(absent_ok)).await.unwrap();
}

async fn cursors_never_leave_their_query_and_limits_are_rejected(store: DynStore) {
    for p in ["TASK#u1#t", "TASK#u2#t"] {
        for i in 0..3 {
            store.put(item(p, &format!("EVENT#{i}")), None).await.unwrap();
        }
    }
    let mine = Query::partition("TASK#u1#t").prefix("EVENT#").limit(1);
    let cursor = store.query(mine.clone()).await.unwrap().next.unwrap();
    assert_eq!(store.query(mine.after(Some(cursor.clone()))).await.unwrap().items.len(), 1);
    // The same position replayed on another partition, or under another prefix, is refused alike on both
    // backends (DynamoDB alone would answer a ValidationException for the first and run the second).
    let theirs = Query::partition("TASK#u2#t").prefix("EVENT#").limit(1).after(Some(cursor.clone()));
    assert!(matches!(store.query(theirs).await, Err(StoreError::Validation(_))));
    let other_prefix = Query::partition("TASK#u1#t").prefix("STATE").limit(1).after(Some(cursor.clone()));
    assert!(matches!(store.query(other_prefix).await, Err(StoreError::Validation(_))));
    let other_index = Query::partition("TASK#u1#t").on(Index::Gsi1).limit(1).after(Some(cursor));
    assert!(matches!(store.query(other_index).await, Err(StoreError::Validation(_))));
    assert!(matches!(store.query(Query::partition("A").limit(0)).await, Err(StoreError::Validation(_))));
    assert!(matches!(store.query(Query::partition("A").limit(1001)).await, Err(StoreError::Validation(_))));
}

fn is_limit(result: &Result<(), StoreError>) -> bool {
    matches!(result, Err(StoreError::Limit(_)))
}

/// An item of exactly `size` bytes as DynamoDB counts them: key attributes plus one padding string.
fn item_of_size(sk: &str, size: usize) -> Item {
    let base = item("L#1", sk);
    let overhead = base.stored_size() + "pad".len();
    base.with("pad", "x".repeat(size - overhead))
}

async fn dynamodb_limits_are_enforced_alike(store: DynStore) {
    // Numbers: DynamoDB stores 0 and magnitudes 1E-130 ..= 9.99..E+125.
    for ok in [0.0, 1e-130, -1e-130, 9.99e125, -9.99e125, 5e-324 * 0.0] {
        store.put(item("L#n", "ok").with("n", ok), None).await.unwrap_or_else(|e| panic!("{ok:e}: {e}"));
    }
    for bad in [1e126, -1e300, 1e-131, 5e-324] {
        assert!(is_limit(&store.put(item("L#n", "bad").with("n", bad), None).await), "{bad:e} must be refused");
        let nested = Value::M(std::collections::BTreeMap::from([("m".to_owned(), Value::from(bad))]));
        assert!(is_limit(&store.put(item("L#n", "bad").with("metrics", nested), None).await));
    }
    assert!(store.get(&Key::new("L#n", "bad")).await.unwrap().is_none(), "nothing refused was stored");
    // Size: 400 KB including attribute names, as DynamoDB counts it.
    store.put(item_of_size("max", MAX_ITEM_BYTES), None).await.expect("exactly 400 KB fits");
    assert!(is_limit(&store.put(item_of_size("over", MAX_ITEM_BYTES + 1), None).await));
    // A batch with one oversized item is refused whole.
    let batch = vec![WriteOp::Put(item("L#b", "1")), WriteOp::Put(item_of_size("2", MAX_ITEM_BYTES + 1))];
    assert!(matches!(store.batch_write_once(batch).await, Err(StoreError::Limit(_))));
    assert!(store.get(&Key::new("L#b", "1")).await.unwrap().is_none());
    // An update whose result would outgrow the limit.
    let key = Key::new("L#1", "grow");
    store.put(item_of_size("grow", MAX_ITEM_BYTES - 100), None).await.unwrap();
    let grown = store.update(&key, Update::new().set("more", "y".repeat(200)), None).await;
    assert!(matches!(grown, Err(StoreError::Limit(LimitError::TooLarge { .. }))), "{grown:?}");
    assert!(store.get(&key).await.unwrap().unwrap().get("more").is_none());
    // Out-of-range numbers in updates and transactions.
    let added = store.update(&key, Update::new().set("n", 1e200), None).await;
    assert!(matches!(added, Err(StoreError::Limit(_))));
    let tx = vec![TxOp::Put { item: item("L#t", "1").with("n", 1e-200), condition: None }];
    assert!(matches!(store.transact_write(tx).await, Err(StoreError::Limit(_))));
    // Key length: partition keys up to 2048 bytes, sort keys up to 1024.
    store.put(item(&"p".repeat(MAX_PARTITION_KEY_BYTES), &"s".repeat(MAX_SORT_KEY_BYTES)), None).await.unwrap();
    assert!(is_limit(&store.put(item(&"p".repeat(MAX_PARTITION_KEY_BYTES + 1), "s"), None).await));
    assert!(is_limit(&store.put(item("p", &"s".repeat(MAX_SORT_KEY_BYTES + 1)), None).await));
}

on_both_backends!(
    put_then_get_round_trips_every_type,
    conditional_put_fails_and_returns_the_current_item,
    conditional_update_is_compare_and_set,
    update_add_set_if_absent_and_remove,
    update_each_applies_every_update_on_its_own,
    conditional_delete_returns_the_removed_item,
    query_by_prefix_pages_in_order,
    query_by_sort_key_range_pages_both_ways,
    gsi1_query_finds_items_by_secondary_key,
    batch_write_takes_25_and_rejects_26,
    transaction_is_all_or_nothing_with_reasons,
    expired_items_are_absent_everywhere,
    concurrent_claims_have_exactly_one_winner,
    cursors_never_leave_their_query_and_limits_are_rejected,
    dynamodb_limits_are_enforced_alike,
    compound_conditions_evaluate_alike,
);

/// The DynamoDB backend refuses over-limit puts before sending them (typed errors, no wasted round trip), so this
/// test sends them with the raw SDK client to show DynamoDB Local itself refuses exactly what our check refuses.
#[tokio::test]
async fn dynamodb_itself_refuses_what_the_limit_check_refuses() {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    let Some(endpoint) = common::dynamodb_endpoint() else { return };
    let table = format!("limits-{}", uuid::Uuid::new_v4().simple());
    let store = cloud_agent::store::dynamo::DynamoStore::connect(&cloud_agent::store::dynamo::DynamoConfig {
        table: table.clone(),
        endpoint: Some(endpoint),
        region: None,
    })
    .await;
    store.create_table().await.unwrap();
    let put = |sk: &str, name: &str, value: A| {
        store
            .client()
            .put_item()
            .table_name(&table)
            .item("pk", A::S("L#1".into()))
            .item("sk", A::S(sk.into()))
            .item(name, value)
            .send()
    };
    for (number, accepted) in [("1e-130", true), ("9.99e125", true), ("1e126", false), ("1e-131", false)] {
        let n: f64 = number.parse().unwrap();
        assert_eq!(cloud_agent::store::Number::storable(n), accepted, "our check on {number}");
        assert_eq!(put("n", "n", A::N(number.into())).await.is_ok(), accepted, "DynamoDB Local on {number}");
    }
    for (size, accepted) in [(MAX_ITEM_BYTES, true), (MAX_ITEM_BYTES + 1, false)] {
        let padded = item_of_size("size", size);
        assert_eq!(padded.check_limits().is_ok(), accepted, "our check at {size} bytes");
        let pad = padded.get_str("pad").unwrap().to_owned();
        assert_eq!(put("size", "pad", A::S(pad)).await.is_ok(), accepted, "DynamoDB Local at {size} bytes");
    }
}
