//! DynamoDB tables copied by scan and batch write (issue 12, "DynamoDB tables, cloned with
//! their items as of the snapshot moment"), on the fake's model of DynamoDB: tables CREATING
//! before ACTIVE, 25 items and 16 MB a BatchWriteItem, 400 KB an item, 1 MB a Scan page,
//! provisioned capacity that returns UnprocessedItems, global indexes that lag, DescribeTable
//! sizes hours old.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use envclone::fake::{FakeAws, Timings};
use envclone::ports::PortError;
use envclone::workflow::dynamodb::*;

const SOURCE: &str = "prod-orders";
const TARGET: &str = "staging-orders";

fn key(partition: (&str, ScalarType), sort: Option<(&str, ScalarType)>) -> KeySchema {
    KeySchema {
        partition: KeyAttribute {
            name: partition.0.into(),
            kind: partition.1,
        },
        sort: sort.map(|(name, kind)| KeyAttribute {
            name: name.into(),
            kind,
        }),
    }
}

/// Orders by customer and number, with a global index by kind (sparse: notes have no kind).
pub(crate) fn orders(name: &str, capacity: Capacity) -> TableSpec {
    TableSpec {
        name: name.into(),
        key: key(("pk", ScalarType::S), Some(("sk", ScalarType::N))),
        global_indexes: vec![IndexSpec {
            name: "byKind".into(),
            key: key(("kind", ScalarType::S), Some(("sk", ScalarType::N))),
            projection: Projection::All,
            capacity,
        }],
        local_indexes: vec![],
        capacity,
    }
}

/// Item `i`: from a few bytes to ~300 KB, with every kind of value.
pub(crate) fn order(i: u32) -> Item {
    let payload = match i {
        i if i % 100 == 0 => 300_000,
        i if i % 10 == 1 => 30_000,
        i if i % 3 == 2 => 2_000,
        _ => 0,
    };
    let mut item = BTreeMap::from([
        ("pk".to_string(), Value::S(format!("customer-{}", i % 97))),
        ("sk".to_string(), Value::N(i.to_string())),
        (
            "total".to_string(),
            Value::N(format!("{}.{:02}", i * 3, i % 100)),
        ),
        ("paid".to_string(), Value::Bool(i.is_multiple_of(2))),
        ("note".to_string(), Value::Null),
        (
            "tags".to_string(),
            Value::Ss(vec![format!("t{}", i % 5), "all".into()]),
        ),
        (
            "address".to_string(),
            Value::M(BTreeMap::from([
                ("city".to_string(), Value::S(format!("Città {i}"))),
                (
                    "lines".to_string(),
                    Value::L(vec![Value::S("1 rue".into()), Value::N("7".into())]),
                ),
            ])),
        ),
    ]);
    if !i.is_multiple_of(7) {
        let kind = ["order", "refund", "return"][(i % 3) as usize];
        item.insert("kind".into(), Value::S(kind.into()));
    }
    if payload > 0 {
        let bytes = (0..payload).map(|j| (j as u32 * 31 + i) as u8).collect();
        item.insert("blob".into(), Value::B(bytes));
    }
    item
}

fn whole(items: impl IntoIterator<Item = Item>) -> BTreeSet<Item> {
    items
        .into_iter()
        .map(|i| i.into_iter().map(|(k, v)| (k, v.normalized())).collect())
        .collect()
}

/// A source table of `n` orders (statistics current, as a long-lived table's are).
fn source(n: u32) -> (FakeAws, Vec<Item>) {
    let fake = FakeAws::new(Timings::default());
    fake.create_table_now(orders(SOURCE, Capacity::OnDemand));
    let items: Vec<Item> = (0..n).map(order).collect();
    fake.put_items(SOURCE, items.clone()).unwrap();
    fake.refresh_table_stats(SOURCE);
    (fake, items)
}

async fn new_target(fake: &FakeAws, capacity: Capacity) {
    let spec = TableSpec {
        capacity,
        ..orders(TARGET, capacity)
    };
    let tags = BTreeMap::from([("envclone:run".to_string(), "r1".to_string())]);
    let info = create_target(fake, &spec, &tags, &CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(info.status, TableStatus::Active);
    assert_eq!(fake.tags(&info.arn).await.unwrap(), tags);
}

#[tokio::test(start_paused = true)]
async fn a_thousand_items_of_every_size_are_copied_whole_and_the_index_answers_in_the_copy() {
    let (fake, items) = source(1000);
    let size: u64 = items.iter().map(item_size).sum();
    assert!(
        items.iter().any(|i| item_size(i) > 290_000),
        "a ~300 KB item"
    );
    assert!(items.iter().any(|i| item_size(i) < 200), "tiny items");
    // The source's description comes back whole, for the table made like it.
    let info = check_source(&fake, SOURCE, &CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(info.item_count, 1000);
    assert_eq!(info.size_bytes, size);
    assert_eq!(
        TableSpec::like(&info, TARGET),
        orders(TARGET, Capacity::OnDemand)
    );
    new_target(&fake, Capacity::OnDemand).await;

    let report = copy_table(&fake, SOURCE, TARGET, &CopyOptions::default())
        .await
        .unwrap();
    assert_eq!((report.items, report.bytes), (1000, size));
    assert_eq!(
        whole(fake.table_items(TARGET).unwrap()),
        whole(items.clone())
    );
    let sizes = fake.batch_write_sizes();
    assert!(sizes.iter().all(|n| *n <= 25), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 1000);

    // The copy's global index answers, once its asynchronous updates have landed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let refunds = fake
        .query_index(TARGET, "byKind", "kind", &Value::S("refund".into()))
        .await
        .unwrap();
    let expected = items
        .iter()
        .filter(|i| i.get("kind") == Some(&Value::S("refund".into())));
    assert_eq!(whole(refunds), whole(expected.cloned()));

    let v = verify_copy(&fake, SOURCE, TARGET, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(v.ok(), "{v:?}");
    assert_eq!((v.source_items, v.target_items), (1000, 1000));
    assert_eq!(v.indexes_checked, vec!["byKind".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn verification_names_a_missing_and_a_changed_item() {
    let (fake, items) = source(50);
    new_target(&fake, Capacity::OnDemand).await;
    copy_table(&fake, SOURCE, TARGET, &CopyOptions::default())
        .await
        .unwrap();
    // The source changes after the copy: one item more, one item changed.
    let mut changed = items[3].clone();
    changed.insert("paid".into(), Value::Bool(true));
    fake.put_items(SOURCE, vec![order(5000), changed]).unwrap();
    let v = verify_copy(&fake, SOURCE, TARGET, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(!v.ok());
    assert_eq!(
        v.missing,
        vec![r#"{pk=S:"customer-53", sk=N:5000}"#.to_string()]
    );
    assert_eq!(
        v.differing,
        vec![r#"{pk=S:"customer-3", sk=N:3}"#.to_string()]
    );
    assert!(v.extra.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_table_still_creating_is_waited_for_before_the_first_write() {
    let (fake, items) = source(30);
    // Created by the clone stack a moment ago: CREATING for 20 s + 15 s for its index, and
    // a write before ACTIVE is answered ResourceNotFoundException.
    fake.create_table(&orders(TARGET, Capacity::OnDemand), &BTreeMap::new())
        .await
        .unwrap();
    let early = fake.batch_write(TARGET, &items[..1]).await.unwrap_err();
    assert!(matches!(early, PortError::NotFound { .. }), "{early:?}");
    let start = tokio::time::Instant::now();
    copy_table(&fake, SOURCE, TARGET, &CopyOptions::default())
        .await
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(34),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(whole(fake.table_items(TARGET).unwrap()), whole(items));
}

#[tokio::test(start_paused = true)]
async fn throttled_batch_writes_are_sent_again_until_every_item_is_written() {
    let (fake, items) = source(1000);
    // A provisioned target of 400 write units a second: the copy needs several times that,
    // so BatchWriteItem returns UnprocessedItems (and refuses whole calls when none fit).
    let capacity = Capacity::Provisioned {
        read: 100,
        write: 400,
    };
    new_target(&fake, capacity).await;
    // And partitions throttled on top: the next 10 calls write half their items; 3 calls
    // throttled whole.
    fake.throttle_batch_writes(10);
    fake.fail(
        "dynamodb:BatchWriteItem",
        PortError::Transient {
            operation: "dynamodb:BatchWriteItem".into(),
            message: "ThrottlingException".into(),
        },
        3,
    );
    let report = copy_table(&fake, SOURCE, TARGET, &CopyOptions::default())
        .await
        .unwrap();
    assert!(report.unprocessed_resent > 0, "the throttling happened");
    assert!(report.throttled_calls >= 3, "{report:?}");
    assert_eq!(fake.unprocessed_returned(), report.unprocessed_resent);
    assert_eq!(report.items, 1000);
    assert_eq!(whole(fake.table_items(TARGET).unwrap()), whole(items));
}

#[tokio::test(start_paused = true)]
async fn a_target_without_the_write_capacity_stops_naming_the_table_and_what_to_raise() {
    let (fake, _) = source(120);
    // One write unit a second: a 300 KB item needs 300 units, more than the unused capacity
    // the table has banked by the time the backoff gives up.
    new_target(&fake, Capacity::Provisioned { read: 1, write: 1 }).await;
    let err = copy_table(&fake, SOURCE, TARGET, &CopyOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, TableError::Stalled { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(TARGET), "{text}");
    assert!(text.contains("Raise the table's write capacity"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_table_over_the_size_limit_is_refused_before_any_write_naming_size_limit_and_export() {
    let (fake, items) = source(200);
    let size: u64 = items.iter().map(item_size).sum();
    new_target(&fake, Capacity::OnDemand).await;
    let options = CopyOptions {
        max_table_bytes: 1024 * 1024,
        ..CopyOptions::default()
    };
    let err = copy_table(&fake, SOURCE, TARGET, &options)
        .await
        .unwrap_err();
    let text = err.to_string();
    for part in [
        SOURCE,
        &size.to_string(),
        "1048576",
        "DescribeTable",
        "ExportTableToPointInTime",
        "ImportSourceSpecification",
        "ignore:",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
    assert!(fake.batch_write_sizes().is_empty(), "nothing written");
}

#[tokio::test(start_paused = true)]
async fn a_table_grown_since_its_last_size_report_is_stopped_at_the_limit_while_copying() {
    // DescribeTable's size is six-hourly: the table has grown since, and its description
    // still says 0 bytes. The copy counts what it reads and stops at the limit.
    let fake = FakeAws::new(Timings::default());
    fake.create_table_now(orders(SOURCE, Capacity::OnDemand));
    fake.put_items(SOURCE, (0..200).map(order).collect())
        .unwrap();
    let described = fake.describe_table(SOURCE).await.unwrap().unwrap();
    assert_eq!((described.item_count, described.size_bytes), (0, 0));
    new_target(&fake, Capacity::OnDemand).await;
    let options = CopyOptions {
        max_table_bytes: 1024 * 1024,
        segments: 1,
        ..CopyOptions::default()
    };
    let err = copy_table(&fake, SOURCE, TARGET, &options)
        .await
        .unwrap_err();
    let TableError::TooLarge { bytes, limit, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(*bytes > *limit);
    assert!(err.to_string().contains("read so far"), "{err}");
    // What was read past the limit was not written.
    let written: usize = fake.batch_write_sizes().iter().sum();
    assert!(written < 200, "{written}");
    let stored: u64 = fake
        .table_items(TARGET)
        .unwrap()
        .iter()
        .map(item_size)
        .sum();
    assert!(stored <= *limit, "{stored}");
}

#[tokio::test(start_paused = true)]
async fn a_copy_into_a_table_holding_items_is_refused_though_its_item_count_says_zero() {
    let (fake, items) = source(40);
    new_target(&fake, Capacity::OnDemand).await;
    fake.put_items(TARGET, vec![order(7777)]).unwrap();
    let described = fake.describe_table(TARGET).await.unwrap().unwrap();
    assert_eq!(described.item_count, 0, "six-hourly count");
    let err = copy_table(&fake, SOURCE, TARGET, &CopyOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, TableError::NotEmpty { .. }), "{err:?}");
    assert!(
        text.contains(TARGET) && text.contains("sk=N:7777"),
        "{text}"
    );
    assert!(fake.batch_write_sizes().is_empty());
    assert_eq!(fake.table_items(TARGET).unwrap(), vec![order(7777)]);
    drop(items);
}

#[tokio::test(start_paused = true)]
async fn a_target_of_another_key_or_index_type_is_refused_naming_both() {
    let (fake, items) = source(30);
    let mut other = orders(TARGET, Capacity::OnDemand);
    other.key.sort = None;
    fake.create_table_now(other);
    let err = copy_table(&fake, SOURCE, TARGET, &CopyOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, TableError::KeyMismatch { .. }), "{err:?}");
    assert!(
        text.contains("sk (N) RANGE") && text.contains(TARGET),
        "{text}"
    );

    // A migrate's new template declaring the index key as a number where the source keys
    // it as a string: refused before any write, naming index, attribute and both types.
    let mut numbered = orders("staging-numbered", Capacity::OnDemand);
    numbered.global_indexes[0].key.partition.kind = ScalarType::N;
    fake.create_table_now(numbered);
    let err = copy_table(&fake, SOURCE, "staging-numbered", &CopyOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TableError::IndexTypeMismatch { .. }),
        "{err:?}"
    );
    assert!(fake.batch_write_sizes().is_empty());

    // A new index on an attribute the source never keys, typed unlike the items' values:
    // only DynamoDB's answer shows it, and the engine names the table and the item.
    let mut by_total = orders("staging-by-total", Capacity::OnDemand);
    by_total.global_indexes.push(IndexSpec {
        name: "byTotal".into(),
        key: key(("total", ScalarType::S), None),
        projection: Projection::KeysOnly,
        capacity: Capacity::OnDemand,
    });
    fake.create_table_now(by_total);
    let err = copy_table(&fake, SOURCE, "staging-by-total", &CopyOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, TableError::ItemRefused { .. }), "{err:?}");
    for part in [
        "staging-by-total",
        "Type mismatch for Index Key total",
        "pk=S:",
        "bytes",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
    drop(items);
}

#[tokio::test(start_paused = true)]
async fn the_fake_enforces_dynamodbs_limits_per_call_and_per_item() {
    let (fake, items) = source(300);
    fake.create_table_now(orders(TARGET, Capacity::OnDemand));
    // 26 puts in one BatchWriteItem.
    let err = fake.batch_write(TARGET, &items[..26]).await.unwrap_err();
    assert!(
        err.to_string().contains("less than or equal to 25"),
        "{err}"
    );
    // An item of 400 KB + 1.
    let mut big = order(1);
    let over = (ITEM_MAX_BYTES + 1 - item_size(&big) - "pad".len() as u64) as usize;
    big.insert("pad".into(), Value::B(vec![0; over]));
    assert_eq!(item_size(&big), ITEM_MAX_BYTES + 1);
    let err = fake.batch_write(TARGET, &[big.clone()]).await.unwrap_err();
    assert!(err.to_string().contains("maximum allowed size"), "{err}");
    assert!(fake.put_items(TARGET, vec![big]).is_err());
    // The same key twice in one call.
    let err = fake
        .batch_write(TARGET, &[items[0].clone(), items[0].clone()])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("duplicates"), "{err}");
    // Scan pages stop at 1 MB and the segments split the table without overlap.
    let mut seen = Vec::new();
    for index in 0..3 {
        let mut start: Option<Item> = None;
        loop {
            let page = fake
                .scan(SOURCE, Segment { index, total: 3 }, start.as_ref(), None)
                .await
                .unwrap();
            let bytes: u64 = page.items.iter().map(item_size).sum();
            assert!(bytes <= SCAN_PAGE_MAX_BYTES, "{bytes}");
            seen.extend(page.items);
            match page.last_key {
                Some(k) => start = Some(k),
                None => break,
            }
        }
    }
    assert_eq!(seen.len(), items.len());
    assert_eq!(whole(seen), whole(items));
}

/// The clone stack's own table: `AWS::DynamoDB::Table` with a fixed name and a GSI.
fn stack_table() -> String {
    format!(
        "\nParameters:\n  EnvironmentName: {{ Type: String }}\nResources:{}",
        crate::fake_table_clone::ORDERS_TABLE
    )
}

#[tokio::test(start_paused = true)]
async fn a_table_the_clone_stack_creates_is_filled_once_active_and_goes_with_its_stack() {
    use envclone::ports::{CreateStackRequest, StackStatus, Stacks, TemplateSource};
    let (fake, items) = source(100);
    let request = CreateStackRequest {
        name: "staging".into(),
        template: TemplateSource::Body(stack_table()),
        parameters: BTreeMap::from([("EnvironmentName".to_string(), "staging".to_string())]),
        tags: BTreeMap::from([("envclone:run".to_string(), "r1".to_string())]),
        capabilities: vec![],
        client_token: "t1".into(),
    };
    fake.create_stack(&request).await.unwrap();
    let table = "staging-orders";
    let info = fake.describe_table(table).await.unwrap().unwrap();
    assert_eq!(info.status, TableStatus::Creating);
    assert_eq!(
        TableSpec::like(&info, table),
        orders(table, Capacity::OnDemand)
    );
    assert_eq!(
        fake.tags(&info.arn).await.unwrap()["envclone:run"],
        "r1",
        "stack tags propagate"
    );
    copy_table(&fake, SOURCE, table, &CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(whole(fake.table_items(table).unwrap()), whole(items));
    tokio::time::sleep(Duration::from_secs(60)).await;
    let stack = fake.describe_stack("staging").await.unwrap().unwrap();
    assert_eq!(stack.status, StackStatus::CreateComplete);
    fake.delete_stack("staging", &[]).await.unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(!fake.table_exists(table));
}

#[test]
fn a_template_table_is_read_with_its_types_billing_and_indexes() {
    let props = serde_json::json!({
        "AttributeDefinitions": [
            {"AttributeName": "id", "AttributeType": "B"},
            {"AttributeName": "at", "AttributeType": "N"}
        ],
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": "7"},
        "GlobalSecondaryIndexes": [{
            "IndexName": "byTime",
            "KeySchema": [{"AttributeName": "at", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["x"]},
            "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 2}
        }]
    });
    let spec = spec_from_template("t", &props).unwrap();
    assert_eq!(spec.key, key(("id", ScalarType::B), None));
    assert_eq!(spec.capacity, Capacity::Provisioned { read: 5, write: 7 });
    assert_eq!(
        spec.global_indexes,
        vec![IndexSpec {
            name: "byTime".into(),
            key: key(("at", ScalarType::N), None),
            projection: Projection::Include(vec!["x".into()]),
            capacity: Capacity::Provisioned { read: 1, write: 2 },
        }]
    );
    let mut missing = props.clone();
    missing["AttributeDefinitions"] = serde_json::json!([]);
    let err = spec_from_template("t", &missing).unwrap_err();
    assert!(err.contains("id has no AttributeDefinitions"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_template_changing_the_key_or_an_index_key_type_is_refused_before_any_change() {
    let (fake, _) = source(10);
    let info = fake.describe_table(SOURCE).await.unwrap().unwrap();
    check_target_spec(&info, &orders(TARGET, Capacity::OnDemand)).unwrap();
    // A new index on an attribute the source does not key is fine.
    let mut more = orders(TARGET, Capacity::OnDemand);
    more.global_indexes.push(IndexSpec {
        name: "byTotal".into(),
        key: key(("total", ScalarType::N), None),
        projection: Projection::KeysOnly,
        capacity: Capacity::OnDemand,
    });
    check_target_spec(&info, &more).unwrap();
    let mut retyped = orders(TARGET, Capacity::OnDemand);
    retyped.global_indexes[0].key.partition.kind = ScalarType::N;
    let err = check_target_spec(&info, &retyped).unwrap_err().to_string();
    for part in [TARGET, SOURCE, "byKind", "kind", "as N", "as S"] {
        assert!(err.contains(part), "{part} in {err}");
    }
    let mut rekeyed = orders(TARGET, Capacity::OnDemand);
    rekeyed.key.partition.name = "id".into();
    let err = check_target_spec(&info, &rekeyed).unwrap_err();
    assert!(matches!(err, TableError::KeyMismatch { .. }), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn only_a_table_tagged_with_the_run_is_deleted() {
    let (fake, _) = source(10);
    new_target(&fake, Capacity::OnDemand).await; // tagged envclone:run=r1
    let err = delete_own_table(&fake, SOURCE, "r1").await.unwrap_err();
    assert!(matches!(err, TableError::NotOwned { .. }), "{err:?}");
    assert!(err.to_string().contains(SOURCE));
    assert!(fake.table_exists(SOURCE));
    let err = delete_own_table(&fake, TARGET, "r2").await.unwrap_err();
    assert!(err.to_string().contains("Some(\"r1\")"), "{err}");
    assert!(delete_own_table(&fake, TARGET, "r1").await.unwrap());
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert!(!fake.table_exists(TARGET));
    assert!(
        !delete_own_table(&fake, TARGET, "r1").await.unwrap(),
        "already gone"
    );
}

/// Issue 12: the workflow reaches DynamoDB through `Cloud::tables` (before, `Cloud` had no
/// DynamoDB port and this did not compile): on the fake's `cloud()` it is the same fake, so a
/// copy through it lands in the fake's tables, whole.
#[tokio::test(start_paused = true)]
async fn the_clouds_tables_port_is_the_fakes_tables() {
    let (fake, items) = source(200);
    new_target(&fake, Capacity::OnDemand).await;
    let cloud = fake.cloud();
    let info = cloud.tables.describe_table(SOURCE).await.unwrap().unwrap();
    assert_eq!(
        TableSpec::like(&info, SOURCE),
        orders(SOURCE, Capacity::OnDemand)
    );
    copy_table(
        cloud.tables.as_ref(),
        SOURCE,
        TARGET,
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(whole(fake.table_items(TARGET).unwrap()), whole(items));
}
