//! DynamoDB tables: the engine that copies a table's items into the clone's table, over the
//! `Tables` port (`ports::tables`, re-exported here).
//!
//! # The mechanism, and why
//!
//! A clone gets each table's items as of the snapshot moment by a **parallel Scan of the
//! source and BatchWriteItem into an empty target**, inside the Standby window, for tables
//! up to a size limit ([`CopyOptions::max_table_bytes`], 1 GiB by default). Above it the copy
//! is refused before any change, naming the table, its size, the limit and the alternative.
//!
//! The alternative AWS offers — ExportTableToPointInTime to S3, then a table created from the
//! export (`AWS::DynamoDB::Table` `ImportSourceSpecification`, or ImportTable) — was weighed
//! and not taken:
//!
//! - **It changes the source.** An export needs point-in-time recovery on the source table
//!   ("DynamoDB data export to Amazon S3: how it works": "To export data from an Amazon
//!   DynamoDB table to an Amazon S3 bucket, point-in-time recovery (PITR) must be enabled on
//!   the source table"). Turning it on is a change to a resource of the source stack behind
//!   CloudFormation's back (drift), outside what a preflight may do, and an export cannot go
//!   back before the moment PITR was enabled.
//! - **It cannot fill a table that exists.** "DynamoDB data import from Amazon S3: how it
//!   works": the import "creates a new table"; a table passed to the clone stack by parameter,
//!   or one the clone's template creates without `ImportSourceSpecification`, cannot receive
//!   an import. Using `ImportSourceSpecification` means rewriting the source's template for the
//!   clone (the clone uses the source's own template, migrate a new one the user wrote); and
//!   "AWS::DynamoDB::Table ImportSourceSpecification" requires replacement on update, so the
//!   clone's stack would carry a property its source does not have.
//! - **Minutes of fixed cost.** Export and import are asynchronous jobs that take minutes even
//!   for a small table (plus a bucket to stage the export and its cleanup); for the small and
//!   medium tables of an application stack a scan and batch write finish in seconds.
//! - **The stand-in.** moto 5.2.5 answers ExportTableToPointInTime (one file, ignoring
//!   `ExportTime`) and ImportTable, but its `AWS::DynamoDB::Table` ignores
//!   `ImportSourceSpecification`: a clone would be created empty there without a word.
//!
//! What the scan and batch write cost, and their limits (stated, not hidden):
//!
//! - **Point in time:** Standby takes the application's instances out of service and the
//!   quiesce hooks stop the rest; the copy reads with `ConsistentRead` ("Scan": "a strongly
//!   consistent read ... reflects all writes that received a successful response prior to the
//!   Scan"). A scan is not a snapshot: a write that still reaches the table during the copy
//!   may or may not be in the clone — the same promise as the bucket copies.
//! - **Capacity:** a consistent scan consumes one read unit per 4 KB read ("Read consistency
//!   for Scan"), each item written one write unit per KB, plus one per KB for every global
//!   secondary index that projects it ("Managing settings on DynamoDB provisioned capacity
//!   tables"). On a provisioned target with little write capacity the copy is throttled:
//!   BatchWriteItem returns the items it could not write as `UnprocessedItems`, and the engine
//!   retries them with exponential backoff as "BatchWriteItem" asks, and gives up (naming the
//!   table and what to raise) after [`CopyOptions::stalled_rounds`] rounds without progress.
//! - **Size:** DescribeTable's `TableSizeBytes` and `ItemCount` are updated "approximately
//!   every six hours", so the preflight check can see an old size; the engine counts the bytes
//!   it reads and stops at the same limit during the copy too.
//! - **Per call:** BatchWriteItem takes at most 25 put requests and 16 MB, items are at most
//!   400 KB ("Service, account, and table quotas in Amazon DynamoDB"), a Scan page is at most
//!   1 MB ("Scan": "a maximum of 1 MB of data"); the engine cuts batches by both counts.
//! - **Order of work:** the target must exist and be `ACTIVE` (a write to a `CREATING` table
//!   answers ResourceNotFoundException), must have the source's primary key, and must be
//!   empty: the engine copies into an empty table only (a copy into a table with items would
//!   mix two data sets; it is refused, naming the table).
//!
//! The port carries plain Rust types (no SDK type): the adapter is `aws::dynamodb`, the
//! in-memory model `fake::dynamodb`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use thiserror::Error;

use crate::ports::PortError;
use crate::retry::{retry, wait_until, Poll, WaitError};

pub use crate::ports::tables::*;

/// The CloudFormation type of a table.
pub const TABLE_TYPE: &str = "AWS::DynamoDB::Table";

/// The table an `AWS::DynamoDB::Table` declares, from its `Properties` with the intrinsic
/// functions already evaluated: KeySchema and GlobalSecondaryIndexes/LocalSecondaryIndexes
/// typed by AttributeDefinitions, BillingMode (CloudFormation's default is PROVISIONED) and
/// ProvisionedThroughput. Preflight compares it with the source's description (a migrate's new
/// template may change a key); the fake's CloudFormation creates it.
pub fn spec_from_template(name: &str, properties: &serde_json::Value) -> Result<TableSpec, String> {
    let text = |v: &serde_json::Value, field: &str| -> Result<String, String> {
        v.get(field)
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("table {name}: {field} missing or not a string"))
    };
    let mut types = BTreeMap::new();
    for d in properties["AttributeDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let kind = match text(d, "AttributeType")?.as_str() {
            "S" => ScalarType::S,
            "N" => ScalarType::N,
            "B" => ScalarType::B,
            other => {
                return Err(format!(
                    "table {name}: AttributeType {other} is not S, N or B"
                ))
            }
        };
        types.insert(text(d, "AttributeName")?, kind);
    }
    let key = |schema: &serde_json::Value| -> Result<KeySchema, String> {
        let mut partition = None;
        let mut sort = None;
        for e in schema.as_array().into_iter().flatten() {
            let attribute = text(e, "AttributeName")?;
            let kind = *types.get(&attribute).ok_or_else(|| {
                format!("table {name}: key attribute {attribute} has no AttributeDefinitions entry")
            })?;
            let a = KeyAttribute {
                name: attribute,
                kind,
            };
            match text(e, "KeyType")?.as_str() {
                "HASH" => partition = Some(a),
                "RANGE" => sort = Some(a),
                other => {
                    return Err(format!(
                        "table {name}: KeyType {other} is not HASH or RANGE"
                    ))
                }
            }
        }
        Ok(KeySchema {
            partition: partition.ok_or_else(|| format!("table {name}: no HASH key"))?,
            sort,
        })
    };
    let throughput = |v: &serde_json::Value| -> Capacity {
        let units = |f: &str| {
            v[f].as_u64()
                .or_else(|| v[f].as_str().and_then(|s| s.parse().ok()))
                .unwrap_or(0)
        };
        Capacity::Provisioned {
            read: units("ReadCapacityUnits"),
            write: units("WriteCapacityUnits"),
        }
    };
    let on_demand = properties["BillingMode"].as_str() == Some("PAY_PER_REQUEST");
    let capacity_of = |v: &serde_json::Value| {
        if on_demand {
            Capacity::OnDemand
        } else {
            throughput(&v["ProvisionedThroughput"])
        }
    };
    let projection = |p: &serde_json::Value| match p["ProjectionType"].as_str() {
        Some("KEYS_ONLY") => Projection::KeysOnly,
        Some("INCLUDE") => Projection::Include(
            p["NonKeyAttributes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect(),
        ),
        _ => Projection::All,
    };
    let indexes = |field: &str, global: bool| -> Result<Vec<IndexSpec>, String> {
        properties[field]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                Ok(IndexSpec {
                    name: text(i, "IndexName")?,
                    key: key(&i["KeySchema"])?,
                    projection: projection(&i["Projection"]),
                    capacity: if global {
                        capacity_of(i)
                    } else {
                        Capacity::OnDemand
                    },
                })
            })
            .collect()
    };
    Ok(TableSpec {
        name: name.to_string(),
        key: key(&properties["KeySchema"])?,
        global_indexes: indexes("GlobalSecondaryIndexes", true)?,
        local_indexes: indexes("LocalSecondaryIndexes", false)?,
        capacity: capacity_of(properties),
    })
}

// ---------------------------------------------------------------- the engine

/// How a table is copied.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// The largest table copied by scan and batch write (by DescribeTable's size, and by the
    /// bytes read while copying).
    pub max_table_bytes: u64,
    /// Parallel scan segments ("Parallel scan": one worker per segment).
    pub segments: u32,
    /// How long a table may take to become ACTIVE.
    pub active_timeout: Duration,
    /// BatchWriteItem rounds in a row that write nothing (every item unprocessed) before the
    /// copy gives up.
    pub stalled_rounds: u32,
    /// First pause before resending unprocessed items; doubled each round, up to 20 s.
    pub backoff: Duration,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            max_table_bytes: 1024 * 1024 * 1024,
            segments: 4,
            active_timeout: Duration::from_secs(15 * 60),
            stalled_rounds: 12,
            backoff: Duration::from_millis(50),
        }
    }
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub items: u64,
    pub bytes: u64,
    pub batches: u64,
    /// Items BatchWriteItem returned unprocessed (throttling) and the engine sent again.
    pub unprocessed_resent: u64,
    /// BatchWriteItem calls refused whole for throttling (ProvisionedThroughputExceeded,
    /// ThrottlingException) and made again.
    pub throttled_calls: u64,
}

/// What a verification found: the two tables' items compared whole, and each global index of
/// the target queried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableVerification {
    pub source_items: u64,
    pub target_items: u64,
    /// Keys (rendered) of items in the source and not in the target, the first few.
    pub missing: Vec<String>,
    /// Keys of items in the target and not in the source, the first few.
    pub extra: Vec<String>,
    /// Keys of items in both whose attributes differ, the first few.
    pub differing: Vec<String>,
    /// Global indexes of the target that did not answer a query with the item expected.
    pub indexes_failing: Vec<String>,
    pub indexes_checked: Vec<String>,
}

impl TableVerification {
    pub fn ok(&self) -> bool {
        self.missing.is_empty()
            && self.extra.is_empty()
            && self.differing.is_empty()
            && self.indexes_failing.is_empty()
            && self.source_items == self.target_items
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1024.0 * 1024.0 * 1024.0))
}

#[derive(Debug, Error)]
pub enum TableError {
    #[error("DynamoDB table {table} not found; check the stack's resource and --region")]
    NotFound { table: String },
    #[error(
        "DynamoDB table {table} is {status}, not ACTIVE; wait until it is ACTIVE (or repair \
         it) and run again"
    )]
    NotActive { table: String, status: TableStatus },
    #[error(
        "DynamoDB table {table} holds {bytes} bytes ({}) by {by}; envclone copies a table of \
         at most {limit} bytes ({}) by Scan and BatchWriteItem inside the Standby window; \
         nothing was copied. For a larger table export it to S3 (ExportTableToPointInTime, \
         with point-in-time recovery on) and create the clone's table from the export \
         (AWS::DynamoDB::Table ImportSourceSpecification), or list the table under `ignore:` \
         in the contract to clone it empty",
        gib(*bytes),
        gib(*limit)
    )]
    TooLarge {
        table: String,
        bytes: u64,
        limit: u64,
        /// Where the size comes from (DescribeTable, or counted while copying).
        by: String,
    },
    #[error(
        "DynamoDB table {target} has the key {target_key}, its source {source_table} has \
         {source_key}; items cannot be copied between tables of different primary keys. Give \
         the clone's table the source's KeySchema and AttributeDefinitions"
    )]
    KeyMismatch {
        source_table: String,
        target: String,
        /// Rendered: `pk (S) HASH, sk (N) RANGE`.
        source_key: String,
        target_key: String,
    },
    #[error(
        "DynamoDB table {target} keys attribute {attribute} as {target_type} in index {index}, \
         its source {source_table} keys it as {source_type}; DynamoDB would refuse every item \
         carrying it. Declare {attribute} as {source_type} in the clone's template"
    )]
    IndexTypeMismatch {
        source_table: String,
        target: String,
        index: String,
        attribute: String,
        source_type: ScalarType,
        target_type: ScalarType,
    },
    #[error(
        "DynamoDB table {table} is not tagged envclone:run={run_id} (found: {found:?}); \
         envclone deletes only the tables a run made. Nothing was deleted"
    )]
    NotOwned {
        table: String,
        run_id: String,
        found: Option<String>,
    },
    #[error(
        "DynamoDB table {table} is not empty (it holds at least item {first_key}); envclone \
         copies into an empty table only, so the clone holds exactly its source's items. \
         Give the clone a new table (or empty this one) and run again"
    )]
    NotEmpty { table: String, first_key: String },
    #[error(
        "DynamoDB table {table}: {unprocessed} item(s) stayed unprocessed through {rounds} \
         BatchWriteItem rounds with backoff (throttled: the table's write capacity is \
         exhausted); {written} item(s) were written. Raise the table's write capacity (or use \
         on-demand billing) and run again"
    )]
    Stalled {
        table: String,
        unprocessed: usize,
        rounds: u32,
        written: u64,
    },
    #[error(
        "DynamoDB table {table} refused a BatchWriteItem of {count} item(s) (the largest \
         {key}, {size} bytes; DynamoDB items are at most {ITEM_MAX_BYTES} bytes): {message}. \
         Make the clone's table accept the source's items (same key and index attribute \
         types), or fix the items in the source"
    )]
    ItemRefused {
        table: String,
        count: usize,
        key: String,
        size: u64,
        message: String,
    },
    #[error("DynamoDB table {table}: {source}")]
    Port {
        table: String,
        #[source]
        source: PortError,
    },
    #[error(transparent)]
    Wait(#[from] WaitError),
}

fn port(table: &str) -> impl Fn(PortError) -> TableError + '_ {
    move |source| TableError::Port {
        table: table.to_string(),
        source,
    }
}

/// An item's key, rendered for messages: `{id=S:"a", sk=N:3}`.
pub fn render_key(item: &Item) -> String {
    let parts: Vec<String> = item
        .iter()
        .map(|(k, v)| match v {
            Value::S(s) => format!("{k}=S:{s:?}"),
            Value::N(n) => format!("{k}=N:{n}"),
            Value::B(b) => format!("{k}=B:{} bytes", b.len()),
            other => format!("{k}={other:?}"),
        })
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Preflight of a source table (read-only): it exists, is ACTIVE, and DescribeTable's size is
/// within the limit. Returns its description (for a table envclone creates: `TableSpec::like`).
pub async fn check_source(
    tables: &dyn Tables,
    name: &str,
    options: &CopyOptions,
) -> Result<TableInfo, TableError> {
    let info = retry(|| tables.describe_table(name))
        .await
        .map_err(port(name))?
        .ok_or_else(|| TableError::NotFound {
            table: name.to_string(),
        })?;
    if info.status != TableStatus::Active {
        return Err(TableError::NotActive {
            table: name.to_string(),
            status: info.status,
        });
    }
    if info.size_bytes > options.max_table_bytes {
        return Err(TableError::TooLarge {
            table: name.to_string(),
            bytes: info.size_bytes,
            limit: options.max_table_bytes,
            by: "DescribeTable's TableSizeBytes".into(),
        });
    }
    Ok(info)
}

/// Waits until a table is ACTIVE with every global index ACTIVE (a table the clone stack or
/// envclone just created is CREATING, and DynamoDB refuses writes until it is not).
pub async fn wait_active(
    tables: &dyn Tables,
    name: &str,
    timeout: Duration,
) -> Result<TableInfo, TableError> {
    let what = format!("DynamoDB table {name} to be ACTIVE");
    let info = wait_until(&what, timeout, || async {
        Ok(match tables.describe_table(name).await? {
            None => Poll::Pending("not found yet".into()),
            Some(t) => match &t.status {
                TableStatus::Active
                    if t.global_indexes
                        .iter()
                        .all(|g| g.status == IndexStatus::Active) =>
                {
                    Poll::Ready(t)
                }
                TableStatus::Active | TableStatus::Creating | TableStatus::Updating => {
                    Poll::Pending(format!(
                        "{}; indexes {:?}",
                        t.status,
                        t.global_indexes
                            .iter()
                            .map(|g| (g.spec.name.as_str(), &g.status))
                            .collect::<Vec<_>>()
                    ))
                }
                other => Poll::Failed(other.to_string()),
            },
        })
    })
    .await?;
    Ok(info)
}

/// Creates a table shaped like the source for the clone (passed to the clone stack by
/// parameter), tagged with the run's tags, and waits until it is ACTIVE. An existing table of
/// that name is refused by DynamoDB (ResourceInUseException: AlreadyExists).
pub async fn create_target(
    tables: &dyn Tables,
    spec: &TableSpec,
    tags: &BTreeMap<String, String>,
    options: &CopyOptions,
) -> Result<TableInfo, TableError> {
    retry(|| tables.create_table(spec, tags))
        .await
        .map_err(port(&spec.name))?;
    wait_active(tables, &spec.name, options.active_timeout).await
}

/// Preflight of the clone's table as its template declares it (read-only, before any
/// change): the source's primary key, and no attribute the source keys (table or index) by
/// one type that the clone's template keys by another — DynamoDB would refuse every such item
/// in the middle of the copy ("Type mismatch for Index Key").
pub fn check_target_spec(source: &TableInfo, target: &TableSpec) -> Result<(), TableError> {
    if source.key != target.key {
        return Err(TableError::KeyMismatch {
            source_table: source.name.clone(),
            target: target.name.clone(),
            source_key: source.key.to_string(),
            target_key: target.key.to_string(),
        });
    }
    let source_types: BTreeMap<&str, ScalarType> = source
        .key
        .attributes()
        .chain(
            source
                .global_indexes
                .iter()
                .flat_map(|g| g.spec.key.attributes()),
        )
        .chain(source.local_indexes.iter().flat_map(|l| l.key.attributes()))
        .map(|a| (a.name.as_str(), a.kind))
        .collect();
    let indexes = target.global_indexes.iter().chain(&target.local_indexes);
    for index in indexes {
        for a in index.key.attributes() {
            if let Some(kind) = source_types.get(a.name.as_str()).filter(|k| **k != a.kind) {
                return Err(TableError::IndexTypeMismatch {
                    source_table: source.name.clone(),
                    target: target.name.clone(),
                    index: index.name.clone(),
                    attribute: a.name.clone(),
                    source_type: *kind,
                    target_type: a.kind,
                });
            }
        }
    }
    Ok(())
}

/// Deletes a table a run made (abort, destroy): only if it carries the run's `envclone:run`
/// tag, never another table. Returns whether it was deleted (false: already gone).
pub async fn delete_own_table(
    tables: &dyn Tables,
    name: &str,
    run_id: &str,
) -> Result<bool, TableError> {
    let Some(info) = retry(|| tables.describe_table(name))
        .await
        .map_err(port(name))?
    else {
        return Ok(false);
    };
    let tags = retry(|| tables.tags(&info.arn)).await.map_err(port(name))?;
    let tag = tags.get(crate::model::TAG_RUN);
    if tag.map(String::as_str) != Some(run_id) {
        return Err(TableError::NotOwned {
            table: name.to_string(),
            run_id: run_id.to_string(),
            found: tag.cloned(),
        });
    }
    match retry(|| tables.delete_table(name)).await {
        Ok(()) | Err(PortError::NotFound { .. }) => Ok(true),
        Err(e) => Err(port(name)(e)),
    }
}

/// Copies every item of `source` into the empty table `target`: a parallel consistent scan,
/// each segment's pages written by BatchWriteItem in batches of at most 25 items and 16 MB,
/// unprocessed items sent again with exponential backoff. Checks first (read-only) that the
/// target is ACTIVE, has the source's primary key and holds no item, and that the source is
/// within the size limit; stops at the limit if the table turns out bigger while copying.
pub async fn copy_table(
    tables: &dyn Tables,
    source: &str,
    target: &str,
    options: &CopyOptions,
) -> Result<CopyReport, TableError> {
    let from = check_source(tables, source, options).await?;
    let to = wait_active(tables, target, options.active_timeout).await?;
    check_target_spec(&from, &TableSpec::like(&to, target))?;
    // ItemCount is hours old: one page of a scan tells whether the target holds anything.
    let whole = Segment { index: 0, total: 1 };
    let first = retry(|| tables.scan(target, whole, None, Some(1)))
        .await
        .map_err(port(target))?;
    if let Some(item) = first.items.first() {
        return Err(TableError::NotEmpty {
            table: target.to_string(),
            first_key: render_key(&to.key.key_of(item)),
        });
    }

    let total = options.segments.max(1);
    let bytes = AtomicU64::new(0);
    let copy = Copier {
        tables,
        source,
        target,
        key: &from.key,
        options,
        bytes: &bytes,
    };
    let reports = futures::future::try_join_all(
        (0..total).map(|index| copy.segment(Segment { index, total })),
    )
    .await?;
    Ok(reports
        .into_iter()
        .fold(CopyReport::default(), |a, r| CopyReport {
            items: a.items + r.items,
            bytes: a.bytes + r.bytes,
            batches: a.batches + r.batches,
            unprocessed_resent: a.unprocessed_resent + r.unprocessed_resent,
            throttled_calls: a.throttled_calls + r.throttled_calls,
        }))
}

struct Copier<'a> {
    tables: &'a dyn Tables,
    source: &'a str,
    target: &'a str,
    key: &'a KeySchema,
    options: &'a CopyOptions,
    /// Bytes read so far by every segment.
    bytes: &'a AtomicU64,
}

impl Copier<'_> {
    async fn segment(&self, segment: Segment) -> Result<CopyReport, TableError> {
        let mut report = CopyReport::default();
        let mut start: Option<Item> = None;
        loop {
            let page = retry(|| self.tables.scan(self.source, segment, start.as_ref(), None))
                .await
                .map_err(port(self.source))?;
            let page_bytes: u64 = page.items.iter().map(item_size).sum();
            let read = self.bytes.fetch_add(page_bytes, Ordering::SeqCst) + page_bytes;
            if read > self.options.max_table_bytes {
                return Err(TableError::TooLarge {
                    table: self.source.to_string(),
                    bytes: read,
                    limit: self.options.max_table_bytes,
                    by: "the items read so far (DescribeTable's size was hours old)".into(),
                });
            }
            for batch in batches(page.items) {
                self.write(batch, &mut report).await?;
            }
            match page.last_key {
                Some(k) => start = Some(k),
                None => return Ok(report),
            }
        }
    }

    /// One batch written whole: unprocessed items sent again after a growing pause
    /// ("BatchWriteItem": "we strongly recommend that you use an exponential backoff
    /// algorithm"), until none is left or nothing has been written for `stalled_rounds`.
    async fn write(&self, batch: Vec<Item>, report: &mut CopyReport) -> Result<(), TableError> {
        let count = batch.len() as u64;
        let size: u64 = batch.iter().map(item_size).sum();
        let mut pending = batch;
        let mut pause = self.options.backoff;
        let mut stalled = 0;
        loop {
            if crate::retry::stopped() {
                return Err(port(self.target)(PortError::failed(
                    "stop",
                    crate::retry::INTERRUPTED,
                )));
            }
            report.batches += 1;
            // A call refused whole for throttling (ProvisionedThroughputExceededException when
            // no item fits the capacity, ThrottlingException) is a round that wrote nothing.
            let (unprocessed, throttled_whole) =
                match self.tables.batch_write(self.target, &pending).await {
                    Ok(unprocessed) => (unprocessed, false),
                    Err(e) if e.is_retryable() => {
                        report.throttled_calls += 1;
                        (pending.clone(), true)
                    }
                    Err(e) => return Err(self.refused(&pending, e)),
                };
            if unprocessed.is_empty() {
                break;
            }
            if unprocessed.len() == pending.len() {
                stalled += 1;
                if stalled >= self.options.stalled_rounds {
                    return Err(TableError::Stalled {
                        table: self.target.to_string(),
                        unprocessed: unprocessed.len(),
                        rounds: stalled,
                        written: report.items + count - unprocessed.len() as u64,
                    });
                }
            } else {
                stalled = 0;
            }
            if !throttled_whole {
                report.unprocessed_resent += unprocessed.len() as u64;
            }
            pending = unprocessed;
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(20));
        }
        report.items += count;
        report.bytes += size;
        Ok(())
    }

    /// A BatchWriteItem the table refused (ValidationException), named with its largest item
    /// (the one an item-size refusal is about; DynamoDB does not say which item it refused).
    fn refused(&self, batch: &[Item], e: PortError) -> TableError {
        let PortError::Failed { message, .. } = &e else {
            return port(self.target)(e);
        };
        let worst = batch.iter().max_by_key(|i| item_size(i));
        match worst {
            Some(item) if message.contains("ValidationException") => TableError::ItemRefused {
                table: self.target.to_string(),
                count: batch.len(),
                key: render_key(&self.key.key_of(item)),
                size: item_size(item),
                message: message.clone(),
            },
            _ => port(self.target)(e),
        }
    }
}

/// A scan page cut into BatchWriteItem calls of at most 25 items and 16 MB.
pub fn batches(items: Vec<Item>) -> Vec<Vec<Item>> {
    let mut out: Vec<Vec<Item>> = Vec::new();
    let mut size = 0;
    for item in items {
        let s = item_size(&item);
        let full = out
            .last()
            .is_none_or(|b| b.len() >= BATCH_WRITE_MAX_ITEMS || size + s > BATCH_WRITE_MAX_BYTES);
        if full {
            out.push(Vec::new());
            size = 0;
        }
        size += s;
        out.last_mut().expect("a batch").push(item);
    }
    out
}

/// Every item of a table (a full consistent scan), normalized (sets sorted).
pub async fn all_items(tables: &dyn Tables, table: &str) -> Result<Vec<Item>, TableError> {
    let mut out = Vec::new();
    let mut start: Option<Item> = None;
    let whole = Segment { index: 0, total: 1 };
    loop {
        let page = retry(|| tables.scan(table, whole, start.as_ref(), None))
            .await
            .map_err(port(table))?;
        out.extend(page.items.into_iter().map(|i| {
            i.into_iter()
                .map(|(k, v)| (k, v.normalized()))
                .collect::<Item>()
        }));
        match page.last_key {
            Some(k) => start = Some(k),
            None => return Ok(out),
        }
    }
}

const SHOWN: usize = 5;

/// Compares the two tables' items whole (every item of each, by key and by value), and queries
/// each global index of the target for an item of the source that it must hold. Global
/// indexes are updated asynchronously ("Global secondary indexes": "eventually consistent"):
/// a query that misses is asked again for up to `index_wait`.
pub async fn verify_copy(
    tables: &dyn Tables,
    source: &str,
    target: &str,
    index_wait: Duration,
) -> Result<TableVerification, TableError> {
    let info = wait_active(tables, target, Duration::from_secs(60)).await?;
    let key = &info.key;
    let by_key = |items: Vec<Item>| -> BTreeMap<Item, Item> {
        items.into_iter().map(|i| (key.key_of(&i), i)).collect()
    };
    let from = by_key(all_items(tables, source).await?);
    let to = by_key(all_items(tables, target).await?);
    let mut v = TableVerification {
        source_items: from.len() as u64,
        target_items: to.len() as u64,
        ..Default::default()
    };
    for (k, item) in &from {
        match to.get(k) {
            None => v.missing.push(render_key(k)),
            Some(copy) if copy != item => v.differing.push(render_key(k)),
            Some(_) => {}
        }
    }
    v.extra = to
        .keys()
        .filter(|k| !from.contains_key(*k))
        .map(render_key)
        .collect();
    for list in [&mut v.missing, &mut v.extra, &mut v.differing] {
        list.truncate(SHOWN);
    }
    for index in &info.global_indexes {
        let name = &index.spec.name;
        v.indexes_checked.push(name.clone());
        let partition = &index.spec.key.partition.name;
        let Some(sample) = from.values().find(|i| {
            index
                .spec
                .key
                .attributes()
                .all(|a| i.get(&a.name).and_then(Value::scalar_type) == Some(a.kind))
        }) else {
            continue; // no source item carries this index's keys: nothing to find in it
        };
        let want = key.key_of(sample);
        let deadline = tokio::time::Instant::now() + index_wait;
        let found = loop {
            let got = retry(|| tables.query_index(target, name, partition, &sample[partition]))
                .await
                .map_err(port(target))?;
            if got.iter().any(|i| key.key_of(i) == want) {
                break true;
            }
            if tokio::time::Instant::now() >= deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if !found {
            v.indexes_failing.push(format!(
                "{name}: a query for {partition}={:?} did not return {}",
                sample[partition],
                render_key(&want)
            ));
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, payload: usize) -> Item {
        BTreeMap::from([
            ("id".to_string(), Value::S(id.to_string())),
            ("p".to_string(), Value::B(vec![7; payload])),
        ])
    }

    #[test]
    fn sizes_are_counted_as_dynamodb_counts_them() {
        // "DynamoDB item sizes and formats": names count, numbers by significant digits.
        assert_eq!(Value::N("12345".into()).size(), 4);
        assert_eq!(Value::N("-0.00120".into()).size(), 2);
        assert_eq!(Value::N("0".into()).size(), 2);
        assert_eq!(
            Value::L(vec![Value::Null, Value::Bool(true)]).size(),
            3 + 2 + 2
        );
        // "id" + "ab" + "p" + 10 bytes.
        assert_eq!(item_size(&item("ab", 10)), 2 + 2 + 1 + 10);
    }

    #[test]
    fn batches_hold_at_most_25_items_and_16_mb() {
        let small: Vec<Item> = (0..60).map(|i| item(&i.to_string(), 10)).collect();
        let sizes: Vec<usize> = batches(small).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![25, 25, 10]);
        // 25 items of ~400 KB are ~10 MB: the count binds first; 16 MB needs bigger items
        // than DynamoDB stores, so the byte bound is checked with a forged size here.
        let big: Vec<Item> = (0..50).map(|i| item(&i.to_string(), 1_000_000)).collect();
        let sizes: Vec<usize> = batches(big).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![16, 16, 16, 2]);
    }
}
