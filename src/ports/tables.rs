//! The DynamoDB port: tables as the workflow sees them (plain Rust, no SDK type) — the attribute
//! values, key schemas, indexes and statuses of "Amazon DynamoDB API Reference", and the
//! `Tables` trait the adapter (`aws::dynamodb`) and the fake implement. The copy engine that
//! uses it is `workflow::dynamodb`.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::PortResult;

// ---------------------------------------------------------------- the port's types

/// An attribute value, as DynamoDB's `AttributeValue` ("Supported data types").
/// Numbers are kept as DynamoDB sends them (decimal strings, up to 38 digits of precision).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    S(String),
    N(String),
    B(Vec<u8>),
    Bool(bool),
    Null,
    L(Vec<Value>),
    M(BTreeMap<String, Value>),
    Ss(Vec<String>),
    Ns(Vec<String>),
    Bs(Vec<Vec<u8>>),
}

/// An item: attribute name → value.
pub type Item = BTreeMap<String, Value>;

impl Value {
    /// The same value with every set in sorted order (DynamoDB sets are unordered: two equal
    /// sets may come back in different orders).
    pub fn normalized(&self) -> Value {
        match self {
            Value::Ss(v) => Value::Ss(sorted(v)),
            Value::Ns(v) => Value::Ns(sorted(v)),
            Value::Bs(v) => Value::Bs(sorted(v)),
            Value::L(v) => Value::L(v.iter().map(Value::normalized).collect()),
            Value::M(m) => Value::M(m.iter().map(|(k, v)| (k.clone(), v.normalized())).collect()),
            other => other.clone(),
        }
    }

    /// The scalar type, for a key attribute.
    pub fn scalar_type(&self) -> Option<ScalarType> {
        match self {
            Value::S(_) => Some(ScalarType::S),
            Value::N(_) => Some(ScalarType::N),
            Value::B(_) => Some(ScalarType::B),
            _ => None,
        }
    }

    /// The value's size as DynamoDB counts it ("DynamoDB item sizes and formats"): strings and
    /// binaries by their bytes; a number about one byte per two significant digits plus one;
    /// null and booleans one byte; a list or map 3 bytes plus one per element plus the
    /// elements (a map's keys included); a set the sum of its elements.
    pub fn size(&self) -> u64 {
        match self {
            Value::S(s) => s.len() as u64,
            Value::N(n) => number_size(n),
            Value::B(b) => b.len() as u64,
            Value::Bool(_) | Value::Null => 1,
            Value::L(v) => 3 + v.iter().map(|x| 1 + x.size()).sum::<u64>(),
            Value::M(m) => {
                3 + m
                    .iter()
                    .map(|(k, x)| 1 + k.len() as u64 + x.size())
                    .sum::<u64>()
            }
            Value::Ss(v) => v.iter().map(|s| s.len() as u64).sum(),
            Value::Ns(v) => v.iter().map(|n| number_size(n)).sum(),
            Value::Bs(v) => v.iter().map(|b| b.len() as u64).sum(),
        }
    }
}

fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v
}

fn number_size(n: &str) -> u64 {
    let mantissa = n
        .trim_start_matches(['-', '+'])
        .split(['e', 'E'])
        .next()
        .unwrap_or_default();
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len() as u64;
    significant.max(1).div_ceil(2) + 1
}

/// An item's size as DynamoDB counts it against the 400 KB item limit: attribute names'
/// UTF-8 bytes plus their values' sizes ("DynamoDB item sizes and formats").
pub fn item_size(item: &Item) -> u64 {
    item.iter().map(|(k, v)| k.len() as u64 + v.size()).sum()
}

/// The largest item DynamoDB stores: 400 KB ("Service, account, and table quotas in Amazon
/// DynamoDB": "The maximum item size in DynamoDB is 400 KB").
pub const ITEM_MAX_BYTES: u64 = 400 * 1024;
/// BatchWriteItem: at most 25 put or delete requests in one call ("BatchWriteItem").
pub const BATCH_WRITE_MAX_ITEMS: usize = 25;
/// BatchWriteItem: at most 16 MB in one call ("BatchWriteItem": "The total request size
/// exceeds 16 MB" is a ValidationException).
pub const BATCH_WRITE_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Scan: at most 1 MB of items read per page ("Scan").
pub const SCAN_PAGE_MAX_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScalarType {
    S,
    N,
    B,
}

impl std::fmt::Display for ScalarType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScalarType::S => "S",
            ScalarType::N => "N",
            ScalarType::B => "B",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAttribute {
    pub name: String,
    pub kind: ScalarType,
}

/// A table's or an index's key: a partition (HASH) key and an optional sort (RANGE) key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySchema {
    pub partition: KeyAttribute,
    pub sort: Option<KeyAttribute>,
}

impl KeySchema {
    pub fn attributes(&self) -> impl Iterator<Item = &KeyAttribute> {
        std::iter::once(&self.partition).chain(self.sort.as_ref())
    }

    /// The key attributes of `item` (its primary key, for the table's schema).
    pub fn key_of(&self, item: &Item) -> Item {
        self.attributes()
            .filter_map(|a| item.get(&a.name).map(|v| (a.name.clone(), v.clone())))
            .collect()
    }
}

impl std::fmt::Display for KeySchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}) HASH", self.partition.name, self.partition.kind)?;
        if let Some(s) = &self.sort {
            write!(f, ", {} ({}) RANGE", s.name, s.kind)?;
        }
        Ok(())
    }
}

/// Which attributes an index holds besides the keys ("Projections").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    All,
    KeysOnly,
    Include(Vec<String>),
}

/// Billing of a table or of a global secondary index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// PAY_PER_REQUEST.
    OnDemand,
    /// PROVISIONED read and write capacity units per second.
    Provisioned { read: u64, write: u64 },
}

/// A secondary index as declared (CreateTable's GlobalSecondaryIndexes/LocalSecondaryIndexes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub name: String,
    pub key: KeySchema,
    pub projection: Projection,
    /// A global index's own capacity (a local index shares its table's: `OnDemand` here).
    pub capacity: Capacity,
}

/// IndexStatus of a global secondary index ("GlobalSecondaryIndexDescription").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexStatus {
    Creating,
    Updating,
    Deleting,
    Active,
    Other(String),
}

impl IndexStatus {
    pub fn from_aws(s: &str) -> Self {
        match s {
            "CREATING" => IndexStatus::Creating,
            "UPDATING" => IndexStatus::Updating,
            "DELETING" => IndexStatus::Deleting,
            "ACTIVE" => IndexStatus::Active,
            other => IndexStatus::Other(other.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalIndex {
    pub spec: IndexSpec,
    pub status: IndexStatus,
}

/// TableStatus ("TableDescription").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableStatus {
    Creating,
    Updating,
    Deleting,
    Active,
    InaccessibleEncryptionCredentials,
    Archiving,
    Archived,
    Other(String),
}

impl TableStatus {
    pub fn from_aws(s: &str) -> Self {
        match s {
            "CREATING" => TableStatus::Creating,
            "UPDATING" => TableStatus::Updating,
            "DELETING" => TableStatus::Deleting,
            "ACTIVE" => TableStatus::Active,
            "INACCESSIBLE_ENCRYPTION_CREDENTIALS" => TableStatus::InaccessibleEncryptionCredentials,
            "ARCHIVING" => TableStatus::Archiving,
            "ARCHIVED" => TableStatus::Archived,
            other => TableStatus::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for TableStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TableStatus::Creating => "CREATING",
            TableStatus::Updating => "UPDATING",
            TableStatus::Deleting => "DELETING",
            TableStatus::Active => "ACTIVE",
            TableStatus::InaccessibleEncryptionCredentials => "INACCESSIBLE_ENCRYPTION_CREDENTIALS",
            TableStatus::Archiving => "ARCHIVING",
            TableStatus::Archived => "ARCHIVED",
            TableStatus::Other(s) => s,
        })
    }
}

/// DescribeTable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub name: String,
    pub arn: String,
    pub status: TableStatus,
    pub key: KeySchema,
    pub global_indexes: Vec<GlobalIndex>,
    pub local_indexes: Vec<IndexSpec>,
    pub capacity: Capacity,
    /// ItemCount and TableSizeBytes: "DynamoDB updates this value approximately every six
    /// hours. Recent changes might not be reflected in this value."
    pub item_count: u64,
    pub size_bytes: u64,
}

/// CreateTable, for a table envclone makes (a table passed to the clone by parameter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub name: String,
    pub key: KeySchema,
    pub global_indexes: Vec<IndexSpec>,
    pub local_indexes: Vec<IndexSpec>,
    pub capacity: Capacity,
}

impl TableSpec {
    /// A table shaped like `source` (keys, indexes, billing), named `name`.
    pub fn like(source: &TableInfo, name: &str) -> Self {
        TableSpec {
            name: name.to_string(),
            key: source.key.clone(),
            global_indexes: source
                .global_indexes
                .iter()
                .map(|g| g.spec.clone())
                .collect(),
            local_indexes: source.local_indexes.clone(),
            capacity: source.capacity,
        }
    }
}

/// One segment of a parallel scan ("Parallel scan": `Segment`, `TotalSegments`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub index: u32,
    pub total: u32,
}

/// One page of a Scan: at most 1 MB of items, and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    pub items: Vec<Item>,
    /// LastEvaluatedKey: None when the segment is done.
    pub last_key: Option<Item>,
}

/// DynamoDB, as the workflow uses it.
#[async_trait]
pub trait Tables: Send + Sync {
    /// DescribeTable; None if there is no such table.
    async fn describe_table(&self, name: &str) -> PortResult<Option<TableInfo>>;
    /// One page of a strongly consistent Scan (`ConsistentRead`) of one segment, starting
    /// after `start` (ExclusiveStartKey); `limit` caps the items of the page (Limit).
    async fn scan(
        &self,
        table: &str,
        segment: Segment,
        start: Option<&Item>,
        limit: Option<u32>,
    ) -> PortResult<ScanPage>;
    /// BatchWriteItem of put requests (at most 25 items, 16 MB); returns the items DynamoDB
    /// did not write (UnprocessedItems), to be sent again.
    async fn batch_write(&self, table: &str, items: &[Item]) -> PortResult<Vec<Item>>;
    /// Query of a global secondary index for one partition key value, all pages
    /// (eventually consistent, as every GSI read is).
    async fn query_index(
        &self,
        table: &str,
        index: &str,
        partition: &str,
        value: &Value,
    ) -> PortResult<Vec<Item>>;
    /// CreateTable with tags (the run's `envclone:run`).
    async fn create_table(
        &self,
        spec: &TableSpec,
        tags: &BTreeMap<String, String>,
    ) -> PortResult<()>;
    /// ListTagsOfResource of a table by ARN.
    async fn tags(&self, arn: &str) -> PortResult<BTreeMap<String, String>>;
    /// DeleteTable.
    async fn delete_table(&self, name: &str) -> PortResult<()>;
}
