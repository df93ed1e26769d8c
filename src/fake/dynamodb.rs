//! DynamoDB in the fake, modelled on what AWS documents and enforces: tables CREATING for a
//! while before ACTIVE (and refusing writes until then), the per-call limits of BatchWriteItem
//! and Scan, the 400 KB item, key and index-key types checked on every write, provisioned
//! write capacity that throttles a batch into UnprocessedItems, global indexes that lag their
//! table, and DescribeTable's item count and size that are hours old.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Bound;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{FakeAws, ACCOUNT, REGION};
use crate::ports::{PortError, PortResult};
use crate::workflow::dynamodb::*;

/// How long DynamoDB takes in the fake.
#[derive(Debug, Clone)]
pub struct TableTimings {
    /// CreateTable until ACTIVE ("CreateTable": the table is CREATING, then ACTIVE; "You can
    /// perform read and write operations only on an ACTIVE table").
    pub create: Duration,
    /// Extra CREATING time for each global secondary index created with the table.
    pub per_index: Duration,
    /// DeleteTable until the table is gone (DELETING meanwhile).
    pub delete: Duration,
    /// How long a write takes to reach a global secondary index ("Global secondary indexes":
    /// updates propagate asynchronously, "usually within a fraction of a second").
    pub index_lag: Duration,
    /// How often DescribeTable's ItemCount and TableSizeBytes are recomputed ("approximately
    /// every six hours").
    pub stats_refresh: Duration,
}

impl Default for TableTimings {
    fn default() -> Self {
        TableTimings {
            create: Duration::from_secs(20),
            per_index: Duration::from_secs(15),
            delete: Duration::from_secs(10),
            index_lag: Duration::from_millis(500),
            stats_refresh: Duration::from_secs(6 * 3600),
        }
    }
}

#[derive(Debug, Clone)]
struct Stored {
    item: Item,
    written_at: Instant,
}

#[derive(Debug, Clone)]
struct FakeTable {
    spec: TableSpec,
    tags: BTreeMap<String, String>,
    active_at: Instant,
    deleted_at: Option<Instant>,
    /// By (hash of the partition key, primary key): the order of a scan; a segment of a
    /// parallel scan is chosen by the partition key's hash, so one partition key's items are
    /// all in one segment, as on DynamoDB.
    items: BTreeMap<(u64, Item), Stored>,
    /// ItemCount and TableSizeBytes as of `stats_at`.
    stats: (u64, u64),
    stats_at: Instant,
    /// Provisioned write capacity not yet used: (when last counted, units). DynamoDB
    /// "retains up to five minutes (300 seconds) of unused read and write capacity" ("Using
    /// burst capacity effectively"); a new table starts with none here, and the per-partition
    /// limit (1,000 write units a second) is not modelled.
    writes: (Instant, f64),
}

/// DynamoDB's part of the fake's state.
#[derive(Debug, Default)]
pub(super) struct TablesState {
    tables: BTreeMap<String, FakeTable>,
    timings: TableTimings,
    /// BatchWriteItem calls from now that write only half their items (`throttle_batch_writes`).
    throttled_batches: u32,
    /// Items returned unprocessed so far.
    unprocessed_returned: u64,
    /// Items per BatchWriteItem call accepted, in order.
    batch_sizes: Vec<usize>,
}

fn hash_of(v: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

fn validation(operation: &str, message: impl std::fmt::Display) -> PortError {
    PortError::failed(
        operation,
        format!("ValidationException (HTTP 400): {message}"),
    )
}

fn not_found(table: &str) -> PortError {
    PortError::NotFound {
        what: format!("DynamoDB table {table}"),
    }
}

impl FakeTable {
    fn status(&self, now: Instant) -> TableStatus {
        if self.deleted_at.is_some() {
            TableStatus::Deleting
        } else if now < self.active_at {
            TableStatus::Creating
        } else {
            TableStatus::Active
        }
    }

    fn slot(&self, item: &Item) -> (u64, Item) {
        let key = self.spec.key.key_of(item);
        (hash_of(&key[&self.spec.key.partition.name]), key)
    }

    /// Why DynamoDB would refuse to store `item` in this table, if it would.
    fn refuse(&self, item: &Item) -> Option<String> {
        let size = item_size(item);
        if size > ITEM_MAX_BYTES {
            // "Service, account, and table quotas in Amazon DynamoDB": 400 KB an item.
            return Some(format!(
                "Item size has exceeded the maximum allowed size ({size} bytes)"
            ));
        }
        for a in self.spec.key.attributes() {
            match item.get(&a.name).map(Value::scalar_type) {
                None => {
                    return Some(format!(
                        "One or more parameter values were invalid: Missing the key {} in \
                         the item",
                        a.name
                    ))
                }
                Some(t) if t != Some(a.kind) => {
                    return Some(format!(
                        "One or more parameter values were invalid: Type mismatch for key {} \
                         expected: {} actual: {:?}",
                        a.name, a.kind, item[&a.name]
                    ))
                }
                _ => {}
            }
        }
        // An index key attribute, where present, must have the index's declared type.
        let indexes = self
            .spec
            .global_indexes
            .iter()
            .chain(&self.spec.local_indexes);
        for index in indexes {
            for a in index.key.attributes() {
                if let Some(v) = item.get(&a.name) {
                    if v.scalar_type() != Some(a.kind) {
                        return Some(format!(
                            "One or more parameter values were invalid: Type mismatch for \
                             Index Key {} Expected: {} Actual: {:?} IndexName: {}",
                            a.name, a.kind, v, index.name
                        ));
                    }
                }
            }
        }
        None
    }

    /// Write units one put of `item` consumes: one per KB of the item, for the table and for
    /// every global index that holds it ("Managing settings on DynamoDB provisioned capacity
    /// tables"; "Provisioned throughput considerations for global secondary indexes").
    fn write_units(&self, item: &Item) -> u64 {
        let per = item_size(item).div_ceil(1024).max(1);
        let indexed = self
            .spec
            .global_indexes
            .iter()
            .filter(|g| g.key.attributes().all(|a| item.contains_key(&a.name)))
            .count() as u64;
        per * (1 + indexed)
    }

    fn info(&self, now: Instant, refresh: Duration) -> TableInfo {
        let (count, bytes) = if now >= self.stats_at + refresh {
            self.current_stats()
        } else {
            self.stats
        };
        let status = self.status(now);
        TableInfo {
            name: self.spec.name.clone(),
            arn: arn(&self.spec.name),
            status: status.clone(),
            key: self.spec.key.clone(),
            global_indexes: self
                .spec
                .global_indexes
                .iter()
                .map(|g| GlobalIndex {
                    spec: g.clone(),
                    status: match status {
                        TableStatus::Creating => IndexStatus::Creating,
                        TableStatus::Deleting => IndexStatus::Deleting,
                        _ => IndexStatus::Active,
                    },
                })
                .collect(),
            local_indexes: self.spec.local_indexes.clone(),
            capacity: self.spec.capacity,
            item_count: count,
            size_bytes: bytes,
        }
    }

    fn current_stats(&self) -> (u64, u64) {
        (
            self.items.len() as u64,
            self.items.values().map(|s| item_size(&s.item)).sum(),
        )
    }
}

pub(super) fn arn(name: &str) -> String {
    format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}")
}

impl TablesState {
    /// Forgets tables whose deletion has finished, and refreshes the six-hourly statistics.
    fn settle(&mut self, now: Instant) {
        self.tables
            .retain(|_, t| t.deleted_at.is_none_or(|at| now < at));
        let refresh = self.timings.stats_refresh;
        for t in self.tables.values_mut() {
            if now >= t.stats_at + refresh {
                t.stats = t.current_stats();
                t.stats_at = now;
            }
        }
    }

    fn active(&mut self, name: &str, now: Instant) -> PortResult<&mut FakeTable> {
        match self.tables.get_mut(name) {
            // "ResourceNotFoundException: ... The resource might not be specified correctly,
            // or its status might not be ACTIVE."
            Some(t) if t.status(now) == TableStatus::Active => Ok(t),
            _ => Err(not_found(name)),
        }
    }
}

impl TablesState {
    /// The table an `AWS::DynamoDB::Table` of a stack creates at `at` (tagged with the stack's
    /// tags, which CloudFormation propagates); returns when it is ACTIVE (CloudFormation
    /// waits for it). A name another table holds fails the resource, as on AWS.
    pub(super) fn create_from_stack(
        &mut self,
        spec: TableSpec,
        tags: &BTreeMap<String, String>,
        at: Instant,
    ) -> Result<Instant, String> {
        if self.tables.contains_key(&spec.name) {
            return Err(format!("{} already exists", spec.name));
        }
        let t = &self.timings;
        let active_at = at + t.create + t.per_index * spec.global_indexes.len() as u32;
        self.tables.insert(
            spec.name.clone(),
            FakeTable {
                spec,
                tags: tags.clone(),
                active_at,
                deleted_at: None,
                items: BTreeMap::new(),
                stats: (0, 0),
                stats_at: at,
                writes: (at, 0.0),
            },
        );
        Ok(active_at)
    }

    /// The table is ACTIVE from `at` (a stack deployed long ago).
    pub(super) fn activate(&mut self, name: &str, at: Instant) {
        if let Some(t) = self.tables.get_mut(name) {
            t.active_at = at;
        }
    }

    /// A stack's delete removed the table.
    pub(super) fn remove(&mut self, name: &str) {
        self.tables.remove(name);
    }
}

impl FakeAws {
    fn tables_now(&self) -> (std::sync::MutexGuard<'_, super::State>, Instant) {
        let mut s = self.lock();
        let now = Instant::now();
        s.tables.settle(now);
        (s, now)
    }

    // ------------------------------------------------------------ test controls

    pub fn set_table_timings(&self, timings: TableTimings) {
        self.lock().tables.timings = timings;
    }

    /// A table that has existed for long (ACTIVE, its statistics current), as a source
    /// stack's table is.
    pub fn create_table_now(&self, spec: TableSpec) {
        let (mut s, now) = self.tables_now();
        s.tables.tables.insert(
            spec.name.clone(),
            FakeTable {
                spec,
                tags: BTreeMap::new(),
                active_at: now,
                deleted_at: None,
                items: BTreeMap::new(),
                stats: (0, 0),
                stats_at: now,
                writes: (now, 0.0),
            },
        );
    }

    /// Writes items directly (the application's writes), with DynamoDB's checks.
    pub fn put_items(&self, table: &str, items: Vec<Item>) -> Result<(), String> {
        let (mut s, now) = self.tables_now();
        let t = s.tables.active(table, now).map_err(|e| e.to_string())?;
        for item in items {
            if let Some(why) = t.refuse(&item) {
                return Err(why);
            }
            t.items.insert(
                t.slot(&item),
                Stored {
                    item,
                    written_at: now,
                },
            );
        }
        Ok(())
    }

    /// DescribeTable's ItemCount and TableSizeBytes recomputed now (as DynamoDB does every six
    /// hours).
    pub fn refresh_table_stats(&self, table: &str) {
        let (mut s, now) = self.tables_now();
        if let Some(t) = s.tables.tables.get_mut(table) {
            t.stats = t.current_stats();
            t.stats_at = now;
        }
    }

    /// The next `calls` BatchWriteItem calls write only the first half of their items and
    /// return the rest as UnprocessedItems (throttling on a partition).
    pub fn throttle_batch_writes(&self, calls: u32) {
        self.lock().tables.throttled_batches = calls;
    }

    /// Items BatchWriteItem has returned unprocessed so far.
    pub fn unprocessed_returned(&self) -> u64 {
        self.lock().tables.unprocessed_returned
    }

    /// The number of items of each BatchWriteItem call accepted, in order.
    pub fn batch_write_sizes(&self) -> Vec<usize> {
        self.lock().tables.batch_sizes.clone()
    }

    /// Every item of a table, in no particular order (None: no such table).
    pub fn table_items(&self, table: &str) -> Option<Vec<Item>> {
        let (s, _) = self.tables_now();
        s.tables
            .tables
            .get(table)
            .map(|t| t.items.values().map(|x| x.item.clone()).collect())
    }

    pub fn table_exists(&self, table: &str) -> bool {
        self.tables_now().0.tables.tables.contains_key(table)
    }
}

#[async_trait]
impl Tables for FakeAws {
    async fn describe_table(&self, name: &str) -> PortResult<Option<TableInfo>> {
        self.call("dynamodb:DescribeTable", false).await?;
        let (s, now) = self.tables_now();
        let refresh = s.tables.timings.stats_refresh;
        Ok(s.tables.tables.get(name).map(|t| t.info(now, refresh)))
    }

    async fn scan(
        &self,
        table: &str,
        segment: Segment,
        start: Option<&Item>,
        limit: Option<u32>,
    ) -> PortResult<ScanPage> {
        const OP: &str = "dynamodb:Scan";
        self.call(OP, false).await?;
        if segment.total == 0 || segment.total > 1_000_000 || segment.index >= segment.total {
            // "Parallel scan": TotalSegments 1 to 1,000,000, Segment below it.
            return Err(validation(
                OP,
                "The Segment parameter is zero-based and must be less than parameter \
                 TotalSegments",
            ));
        }
        if limit == Some(0) {
            return Err(validation(OP, "Limit must be greater than or equal to 1"));
        }
        let (mut s, now) = self.tables_now();
        let t = s.tables.active(table, now)?;
        let from = match start {
            Some(k) => {
                let valid = k.len() == t.spec.key.attributes().count()
                    && t.spec
                        .key
                        .attributes()
                        .all(|a| k.get(&a.name).and_then(Value::scalar_type) == Some(a.kind));
                if !valid {
                    return Err(validation(OP, "The provided starting key is invalid"));
                }
                Some(t.slot(k))
            }
            None => None,
        };
        let in_segment = |h: u64| (h % u64::from(segment.total)) as u32 == segment.index;
        let mut items = Vec::new();
        let mut bytes = 0;
        let mut more = false;
        // ExclusiveStartKey: the page starts after it.
        let lower = from.map_or(Bound::Unbounded, Bound::Excluded);
        for (_, stored) in t
            .items
            .range((lower, Bound::Unbounded))
            .filter(|((h, _), _)| in_segment(*h))
        {
            let size = item_size(&stored.item);
            // "Scan": a page ends at the Limit or at 1 MB of data read.
            if limit.is_some_and(|l| items.len() as u32 >= l)
                || (!items.is_empty() && bytes + size > SCAN_PAGE_MAX_BYTES)
            {
                more = true;
                break;
            }
            bytes += size;
            items.push(stored.item.clone());
        }
        let last_key = if more {
            items.last().map(|i| t.spec.key.key_of(i))
        } else {
            None
        };
        Ok(ScanPage { items, last_key })
    }

    async fn batch_write(&self, table: &str, items: &[Item]) -> PortResult<Vec<Item>> {
        const OP: &str = "dynamodb:BatchWriteItem";
        self.call(OP, true).await?;
        // "BatchWriteItem": 1 to 25 requests; the whole call is refused past either limit.
        if items.is_empty() || items.len() > BATCH_WRITE_MAX_ITEMS {
            return Err(validation(
                OP,
                format!(
                    "1 validation error detected: Value at 'requestItems.{table}.member' \
                     failed to satisfy constraint: Member must have length less than or \
                     equal to {BATCH_WRITE_MAX_ITEMS} ({} given)",
                    items.len()
                ),
            ));
        }
        let total: u64 = items.iter().map(item_size).sum();
        if total > BATCH_WRITE_MAX_BYTES {
            return Err(validation(
                OP,
                format!("The total request size exceeds 16 MB ({total} bytes)"),
            ));
        }
        let (mut s, now) = self.tables_now();
        let throttled = s.tables.throttled_batches > 0;
        if throttled {
            s.tables.throttled_batches -= 1;
        }
        let t = s.tables.active(table, now)?;
        let mut keys = BTreeSet::new();
        for item in items {
            if let Some(why) = t.refuse(item) {
                return Err(validation(OP, why));
            }
            if !keys.insert(t.spec.key.key_of(item)) {
                return Err(validation(
                    OP,
                    "Provided list of item keys contains duplicates",
                ));
            }
        }
        // Provisioned write capacity: units accrue at the provisioned rate and are kept for
        // up to 300 seconds ("Using burst capacity effectively"); items are written in order
        // while they last.
        let mut budget = match t.spec.capacity {
            Capacity::OnDemand => f64::INFINITY,
            Capacity::Provisioned { write, .. } => {
                let (at, units) = t.writes;
                let accrued = units + write as f64 * now.duration_since(at).as_secs_f64();
                accrued.min(write as f64 * 300.0)
            }
        };
        let mut take = if throttled {
            items.len() / 2
        } else {
            items.len()
        };
        for (i, item) in items.iter().enumerate().take(take) {
            let units = t.write_units(item) as f64;
            if units > budget {
                take = i;
                break;
            }
            budget -= units;
        }
        if budget.is_finite() {
            t.writes = (now, budget);
        }
        if take == 0 {
            // "If none of the items can be processed due to insufficient provisioned
            // throughput ..., BatchWriteItem returns a ProvisionedThroughputExceededException."
            return Err(PortError::Transient {
                operation: OP.into(),
                message: "ProvisionedThroughputExceededException (HTTP 400): The level of \
                          configured provisioned throughput for the table was exceeded"
                    .into(),
            });
        }
        for item in &items[..take] {
            t.items.insert(
                t.slot(item),
                Stored {
                    item: item.clone(),
                    written_at: now,
                },
            );
        }
        s.tables.batch_sizes.push(items.len());
        let unprocessed = items[take..].to_vec();
        s.tables.unprocessed_returned += unprocessed.len() as u64;
        Ok(unprocessed)
    }

    async fn query_index(
        &self,
        table: &str,
        index: &str,
        partition: &str,
        value: &Value,
    ) -> PortResult<Vec<Item>> {
        const OP: &str = "dynamodb:Query";
        self.call(OP, false).await?;
        let (mut s, now) = self.tables_now();
        let lag = s.tables.timings.index_lag;
        let t = s.tables.active(table, now)?;
        let Some(spec) = t.spec.global_indexes.iter().find(|g| g.name == index) else {
            return Err(validation(
                OP,
                format!("The table does not have the specified index: {index}"),
            ));
        };
        if spec.key.partition.name != partition {
            return Err(validation(
                OP,
                format!(
                    "Query condition missed key schema element: {}",
                    spec.key.partition.name
                ),
            ));
        }
        let mut out = Vec::new();
        for stored in t.items.values() {
            let item = &stored.item;
            let indexed = spec.key.attributes().all(|a| item.contains_key(&a.name));
            if !indexed || item.get(partition) != Some(value) || now < stored.written_at + lag {
                continue;
            }
            let keep = |name: &str| {
                t.spec.key.attributes().any(|a| a.name == name)
                    || spec.key.attributes().any(|a| a.name == name)
                    || match &spec.projection {
                        Projection::All => true,
                        Projection::KeysOnly => false,
                        Projection::Include(names) => names.iter().any(|n| n == name),
                    }
            };
            out.push(
                item.iter()
                    .filter(|(k, _)| keep(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            );
        }
        Ok(out)
    }

    async fn create_table(
        &self,
        spec: &TableSpec,
        tags: &BTreeMap<String, String>,
    ) -> PortResult<()> {
        const OP: &str = "dynamodb:CreateTable";
        self.call(OP, true).await?;
        // "Service, account, and table quotas": 20 global and 5 local secondary indexes.
        if spec.global_indexes.len() > 20 || spec.local_indexes.len() > 5 {
            return Err(validation(
                OP,
                "One or more parameter values were invalid: too many secondary indexes",
            ));
        }
        if !spec.local_indexes.is_empty()
            && (spec.key.sort.is_none()
                || spec
                    .local_indexes
                    .iter()
                    .any(|l| l.key.partition != spec.key.partition))
        {
            return Err(validation(
                OP,
                "One or more parameter values were invalid: a local secondary index must \
                 have the table's partition key, on a table with a sort key",
            ));
        }
        let (mut s, now) = self.tables_now();
        if s.tables.tables.contains_key(&spec.name) {
            return Err(PortError::AlreadyExists {
                what: format!("DynamoDB table {}", spec.name),
            });
        }
        let t = &s.tables.timings;
        let active_at = now + t.create + t.per_index * spec.global_indexes.len() as u32;
        s.tables.tables.insert(
            spec.name.clone(),
            FakeTable {
                spec: spec.clone(),
                tags: tags.clone(),
                active_at,
                deleted_at: None,
                items: BTreeMap::new(),
                stats: (0, 0),
                stats_at: now,
                writes: (now, 0.0),
            },
        );
        Ok(())
    }

    async fn tags(&self, arn_: &str) -> PortResult<BTreeMap<String, String>> {
        self.call("dynamodb:ListTagsOfResource", false).await?;
        let (s, _) = self.tables_now();
        s.tables
            .tables
            .values()
            .find(|t| arn(&t.spec.name) == arn_)
            .map(|t| t.tags.clone())
            .ok_or_else(|| not_found(arn_))
    }

    async fn delete_table(&self, name: &str) -> PortResult<()> {
        const OP: &str = "dynamodb:DeleteTable";
        self.call(OP, true).await?;
        let (mut s, now) = self.tables_now();
        let delay = s.tables.timings.delete;
        let t = s
            .tables
            .tables
            .get_mut(name)
            .ok_or_else(|| not_found(name))?;
        match t.status(now) {
            TableStatus::Active => {
                t.deleted_at = Some(now + delay);
                Ok(())
            }
            // "DeleteTable": "If the table is in the CREATING or UPDATING states, then
            // DynamoDB returns a ResourceInUseException"; a table DELETING is not found twice.
            TableStatus::Deleting => Err(not_found(name)),
            other => Err(PortError::Transient {
                operation: OP.into(),
                message: format!("ResourceInUseException (HTTP 400): table {name} is {other}"),
            }),
        }
    }
}
