//! An in-memory AWS for workflow tests: status transitions over time (tokio's clock, so tests
//! run paused), CloudFormation tracking resources by the identifier it created them with (it
//! does not follow renames — unlike moto), real object bytes and ETags (multipart ETags
//! included), faults on demand, and a log of every call.
//!
//! Compiled only for tests and with the `fake` feature (see `lib.rs`). The other test
//! material lives in its submodules: the event collector, the in-memory run store, the
//! generated listings of `s3 diff-bench`, the synthetic bulks of objects whose bytes are not
//! kept (`bulk.rs`, for buckets of millions of objects).

pub mod batch;
mod bulk;
mod clock;
mod collector;
mod run_store;
pub mod synthetic;

pub use clock::FakeClock;
pub use collector::Collector;
pub use run_store::MemoryRunStore;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use md5::{Digest, Md5};
use tokio::time::Instant;

use crate::contract::{Template, ASG, BUCKET, DB_CLUSTER, DB_INSTANCE};
use crate::ports::*;
use crate::template_eval::{Evaluated, Evaluator};
use crate::workflow::fixednames;

pub mod dynamodb;

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";

/// How long things take in the fake.
#[derive(Debug, Clone)]
pub struct Timings {
    /// A DB or cluster snapshot from its request to `available` (AWS: minutes to hours, by
    /// the data changed since the last snapshot; 40 minutes is usual for a large database).
    pub snapshot: Duration,
    /// A snapshot from its request to the moment its point in time is fixed: RDS then reports
    /// its `SnapshotCreateTime` while it stays `creating` ("Creating a DB snapshot for a
    /// Single-AZ DB instance": the I/O suspension lasts "from a few seconds to a few
    /// minutes"; "Create Amazon EBS snapshots": "the point-in-time snapshot is created
    /// immediately").
    pub snapshot_point: Duration,
    pub db_create: Duration,
    /// Between one stack resource and the next.
    pub stack_resource: Duration,
    /// Every call.
    pub call_latency: Duration,
    /// A DB modification.
    pub db_modify: Duration,
    /// An Auto Scaling instance in `Pending` (launch, or back from Standby) before `InService`.
    pub instance_launch: Duration,
    /// A DB rename: the database answers to its old identifier, `renaming`, this long. AWS:
    /// the new name "becomes effective in about 10 minutes" (USER_RenameInstance).
    pub db_rename: Duration,
    /// Of `db_rename`, how long the database still says `available` (the new name only in
    /// PendingModifiedValues) before `renaming`: ModifyDBInstance with ApplyImmediately
    /// applies its changes "asynchronously ... as soon as possible"; seconds have been seen
    /// (aws-sdk-js#1505, boto3#609). AWS gives no bound; this is a harsh reading.
    pub db_rename_starts: Duration,
    /// A Route 53 change reaching INSYNC.
    pub dns_sync: Duration,
    /// Extra time of a CopyObject or UploadPartCopy.
    pub copy_latency: Duration,
    /// Bytes per second one CopyObject or UploadPartCopy moves inside S3, charged on top of
    /// `copy_latency` (None: a copy takes `copy_latency` whatever its size). AWS publishes no
    /// such figure; the benchmarks set an assumed one (BENCHMARKS.md says which).
    pub copy_throughput: Option<u64>,
    /// Smallest part (except the last) a multipart upload accepts.
    pub min_part_size: u64,
    /// How far an Aurora cluster's latest restorable time trails now (AWS: up to ~5 minutes).
    pub restorable_lag: Duration,
    /// A DB instance's `LatestRestorableTime` advances in steps of this, so it trails now by
    /// up to that much: RDS "uploads transaction logs for DB instances to Amazon S3 every five
    /// minutes", and "the latest restorable time for a DB instance is typically within 5
    /// minutes of the current time" ("Introduction to backups"; "Restoring a DB instance to a
    /// specified time", RDS User Guide).
    pub restorable_step: Duration,
    /// How far AWS's clock runs ahead of this machine's (the times RDS reports and its
    /// responses' `Date`).
    pub aws_clock_ahead: Duration,
}

impl Timings {
    /// The time a copy of `bytes` takes beyond `copy_latency`.
    pub fn copy_time(&self, bytes: u64) -> Duration {
        match self.copy_throughput {
            Some(rate) if rate > 0 => Duration::from_secs_f64(bytes as f64 / rate as f64),
            _ => Duration::ZERO,
        }
    }
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            snapshot: Duration::from_secs(300),
            snapshot_point: Duration::from_secs(5),
            db_create: Duration::from_secs(600),
            stack_resource: Duration::from_secs(10),
            call_latency: Duration::from_millis(20),
            db_modify: Duration::from_secs(90),
            instance_launch: Duration::from_secs(60),
            db_rename: Duration::from_secs(600),
            db_rename_starts: Duration::from_secs(15),
            dns_sync: Duration::from_secs(30),
            copy_latency: Duration::from_millis(50),
            copy_throughput: None,
            min_part_size: 5 * 1024 * 1024,
            restorable_lag: Duration::from_secs(300),
            restorable_step: Duration::from_secs(300),
            aws_clock_ahead: Duration::ZERO,
        }
    }
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub operation: String,
    pub mutating: bool,
    pub at: Duration,
}

#[derive(Debug, Clone)]
struct Fault {
    operation: String,
    error: PortError,
    remaining: u32,
}

#[derive(Debug, Clone)]
pub struct FakeObject {
    pub data: Arc<Vec<u8>>,
    pub etag: String,
    pub parts: Vec<u64>,
    pub head: ObjectHead,
    pub tags: BTreeMap<String, String>,
    /// LastModified, on AWS's clock: set by every write of the key (put, copy, completed
    /// multipart upload).
    pub last_modified: chrono::DateTime<chrono::Utc>,
    /// An archived object's restored copy is available (`restore_object_now`).
    pub restored: bool,
    /// Encrypted with a customer-provided key (SSE-C): nothing reads or copies it without
    /// that key (`put_customer_key_object`).
    pub customer_key: bool,
    /// An object of a synthetic bulk (`put_synthetic`): `data` is empty, this says its size
    /// and the MD5 its bytes would have.
    pub synthetic: Option<Synthetic>,
}

/// The size and content MD5 of an object whose bytes are not kept (`FakeAws::put_synthetic`),
/// and which object of which bulk it is.
#[derive(Debug, Clone)]
pub struct Synthetic {
    pub size: u64,
    pub digest: String,
    bulk: Arc<bulk::BulkSpec>,
    index: u64,
}

impl FakeObject {
    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.synthetic
            .as_ref()
            .map_or(self.data.len() as u64, |s| s.size)
    }

    /// The MD5 of its bytes (hex).
    pub fn content_md5(&self) -> String {
        match &self.synthetic {
            Some(s) => s.digest.clone(),
            None => md5_hex(&self.data),
        }
    }

    /// What its checksums are computed from: its bytes, or for a synthetic object its digest
    /// (a stand-in as unique as the bytes).
    fn checksum_input(&self) -> &[u8] {
        match &self.synthetic {
            Some(s) => s.digest.as_bytes(),
            None => &self.data,
        }
    }
}

#[derive(Debug, Clone)]
struct FakeBucket {
    visible_at: Instant,
    /// ListBuckets' CreationDate.
    created: chrono::DateTime<chrono::Utc>,
    tags: BTreeMap<String, String>,
    /// The current version of each key.
    objects: BTreeMap<String, FakeObject>,
    versions: Versions,
    config: FakeBucketConfig,
    /// Synthetic bulks of objects (`put_synthetic`) and copies of them (`fake/bulk.rs`): a key
    /// current in a slot is not in `objects`.
    slots: Vec<bulk::Slot>,
}

/// A bucket's configuration other than versioning and tags, each as S3 answers its GET
/// (`None`: the GET's "not configured" error, e.g. NoSuchBucketPolicy). The values are
/// opaque documents except the policy (JSON) and the public access block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeBucketConfig {
    /// GetBucketEncryption.
    pub encryption: Option<String>,
    /// GetPublicAccessBlock: BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy,
    /// RestrictPublicBuckets.
    pub public_access_block: Option<[bool; 4]>,
    /// GetBucketOwnershipControls: ObjectOwnership.
    pub ownership: Option<String>,
    pub cors: Option<String>,
    pub lifecycle: Option<String>,
    pub policy: Option<String>,
    /// GetBucketNotificationConfiguration (an empty configuration is `None`).
    pub notifications: Option<String>,
    pub replication: Option<String>,
}

impl FakeBucketConfig {
    /// What a bucket created today has: "Amazon S3 Block Public Access is enabled by default
    /// for new buckets" and "S3 Object Ownership ... BucketOwnerEnforced ... is the default
    /// for new buckets" (S3 User Guide, "Default settings for new S3 buckets", April 2023).
    fn new_bucket() -> Self {
        FakeBucketConfig {
            public_access_block: Some([true; 4]),
            ownership: Some("BucketOwnerEnforced".into()),
            ..Default::default()
        }
    }
}

/// Whether S3 would judge the policy public: a statement allowing `"Principal": "*"` (or
/// `{"AWS": "*"}`) (S3 User Guide, "The meaning of 'public'"; conditions that narrow it to
/// fixed values are not modelled: any such statement counts as public).
fn policy_is_public(policy: &str) -> bool {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(policy) else {
        return false;
    };
    let statements = match &doc["Statement"] {
        serde_json::Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    statements.iter().any(|st| {
        st["Effect"] == "Allow" && (st["Principal"] == "*" || st["Principal"]["AWS"] == "*")
    })
}

/// S3 versioning ("Using versioning in S3 buckets", "Deleting object versions from a
/// versioning-enabled bucket"): once enabled, an overwrite keeps the previous version as a
/// noncurrent version and a DeleteObject without a version id only adds a delete marker; both
/// stay until deleted by version id, and DeleteBucket answers BucketNotEmpty while any remains.
/// Objects written before versioning was enabled have the version id `null`.
#[derive(Debug, Clone, Default)]
struct Versions {
    enabled: bool,
    /// Versioning suspended after having been enabled ("Working with objects in a
    /// versioning-suspended bucket"): GetBucketVersioning answers `Suspended`; the versions
    /// kept so far stay, and each write or delete makes the key's `null` version (or delete
    /// marker), replacing any `null` version the key had.
    suspended: bool,
    /// The version id of each current object written while versioning was enabled.
    current: BTreeMap<String, String>,
    /// Noncurrent versions and delete markers, oldest first.
    noncurrent: Vec<FakeVersion>,
    /// A lifecycle rule expires noncurrent versions (`expire_noncurrent_versions`).
    expire_noncurrent: bool,
    next_id: u64,
}

#[derive(Debug, Clone)]
struct FakeVersion {
    key: String,
    version_id: String,
    /// None: a delete marker.
    object: Option<FakeObject>,
    /// When it was written (a delete marker: when the DeleteObject was made), on AWS's clock.
    last_modified: chrono::DateTime<chrono::Utc>,
}

/// LastModified as S3 lists it (ListObjectsV2, ListObjectVersions, the `Last-Modified`
/// header): whole seconds ("2026-12-01T10:00:07.000Z"); two writes within one second carry
/// the same time. Modelled as truncation (S3 does not document whether it rounds; envclone's
/// as-of point is chosen to be safe either way: `s3sync::as_of_point`).
fn listed_time(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

impl FakeBucket {
    fn new(visible_at: Instant, tags: BTreeMap<String, String>) -> Self {
        FakeBucket {
            visible_at,
            created: FakeClock.now(),
            tags,
            objects: BTreeMap::new(),
            versions: Versions::default(),
            config: FakeBucketConfig::new_bucket(),
            slots: Vec::new(),
        }
    }

    /// The slot holding `key` as current, and its index there.
    fn slot_of(&self, key: &str) -> Option<(usize, u64)> {
        self.slots.iter().enumerate().find_map(|(n, slot)| {
            slot.spec
                .index_of(key)
                .filter(|i| slot.has(*i))
                .map(|i| (n, i))
        })
    }

    /// The current version of `key`, stored or synthetic.
    fn current(&self, key: &str) -> Option<std::borrow::Cow<'_, FakeObject>> {
        if let Some(o) = self.objects.get(key) {
            return Some(std::borrow::Cow::Borrowed(o));
        }
        self.slot_of(key)
            .map(|(n, i)| std::borrow::Cow::Owned(self.slots[n].object(i)))
    }

    /// Makes a synthetic current `key` a stored one (same version id, size, ETag and time), so
    /// that a write or delete of it goes the stored objects' way.
    fn materialize(&mut self, key: &str) {
        let Some((n, i)) = self.slot_of(key) else {
            return;
        };
        let slot = &mut self.slots[n];
        let (object, version_id) = (slot.object(i), slot.version_id(i));
        slot.clear(i);
        if version_id != "null" {
            self.versions.current.insert(key.to_string(), version_id);
        }
        self.objects.insert(key.to_string(), object);
    }

    /// A copy of a synthetic object to its own key, kept compactly in this bucket's slot of
    /// the bulk (made at the first copy) when nothing tells it from the bulk's other copies:
    /// the key is not current here, the copy's metadata, tags and encryption are the slot's,
    /// its ETag is its content's MD5 (not SSE-KMS), and versioning is not suspended. Returns
    /// whether it did; otherwise the copy is to be stored.
    fn copy_into_slot(&mut self, key: &str, copy: &FakeObject) -> bool {
        let Some(synthetic) = &copy.synthetic else {
            return false;
        };
        if self.versions.suspended || copy.etag != synthetic.digest || !copy.parts.is_empty() {
            return false;
        }
        if self.objects.contains_key(key) || self.slot_of(key).is_some() {
            return false;
        }
        let (spec, i) = (synthetic.bulk.clone(), synthetic.index);
        if spec.key(i) != key {
            return false;
        }
        let versioned = self.versions.enabled;
        match self
            .slots
            .iter()
            .position(|slot| Arc::ptr_eq(&slot.spec, &spec))
        {
            Some(n) => {
                let t = &self.slots[n].template;
                let mut head = copy.head.clone();
                head.size = t.head.size;
                head.etag = t.head.etag.clone();
                if let (Some(c), Some(tc)) = (&mut head.checksum, &t.head.checksum) {
                    c.value = tc.value.clone();
                }
                let same = head == t.head
                    && copy.tags == t.tags
                    && copy.restored == t.restored
                    && copy.customer_key == t.customer_key;
                if !same || self.slots[n].versioned != versioned {
                    return false;
                }
                self.slots[n].set(i, copy.last_modified);
            }
            None => {
                self.versions.next_id += 1;
                let salt = (self.versions.next_id << 24) ^ spec.id;
                let mut template = copy.clone();
                template.synthetic = None;
                if let Some(c) = &mut template.head.checksum {
                    c.value.clear();
                }
                let base = copy.last_modified;
                let mut slot = bulk::Slot::empty(spec, salt, versioned, template, base);
                slot.set(i, copy.last_modified);
                self.slots.push(slot);
            }
        }
        true
    }

    /// Every current key, stored or synthetic, in order.
    fn current_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.objects.keys().cloned().collect();
        for slot in &self.slots {
            let all = slot.indices_from(std::ops::Bound::Unbounded, "", usize::MAX);
            keys.extend(all.into_iter().map(|i| slot.spec.key(i)));
        }
        keys.sort();
        keys
    }

    /// The current objects whose keys lie past `bound` and start with `prefix`, stored and
    /// synthetic merged in key order, at most `max` of them.
    fn current_from(
        &self,
        bound: std::ops::Bound<&str>,
        prefix: &str,
        max: usize,
    ) -> Vec<(String, std::borrow::Cow<'_, FakeObject>)> {
        use std::ops::Bound;
        let start = match bound {
            Bound::Unbounded => Bound::Included(prefix),
            Bound::Included(b) | Bound::Excluded(b) if b < prefix => Bound::Included(prefix),
            other => other,
        };
        let mut out: Vec<(String, std::borrow::Cow<'_, FakeObject>)> = self
            .objects
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(max)
            .map(|(k, o)| (k.clone(), std::borrow::Cow::Borrowed(o)))
            .collect();
        for slot in &self.slots {
            for i in slot.indices_from(bound, prefix, max) {
                out.push((slot.spec.key(i), std::borrow::Cow::Owned(slot.object(i))));
            }
        }
        if !self.slots.is_empty() {
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out.truncate(max);
        }
        out
    }

    /// A new version id. S3's are opaque strings in no order ("Retaining multiple versions of
    /// objects with S3 Versioning": "Version IDs are Unicode, UTF-8 encoded, URL-ready, opaque
    /// strings"), so the fake's are scrambled: nothing may sort versions by their ids.
    fn new_version_id(&mut self) -> String {
        self.versions.next_id += 1;
        let mut x = self.versions.next_id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 31;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 29;
        format!("{x:016x}.{}", self.versions.next_id % 7)
    }

    /// Moves the current version of `key` (if any) to the noncurrent versions.
    fn retire_current(&mut self, key: &str) {
        if let Some(old) = self.objects.remove(key) {
            let version_id = self
                .versions
                .current
                .remove(key)
                .unwrap_or_else(|| "null".into());
            let last_modified = old.last_modified;
            self.versions.noncurrent.push(FakeVersion {
                key: key.to_string(),
                version_id,
                object: Some(old),
                last_modified,
            });
        }
    }

    /// A write of `key` (PutObject, CopyObject, CompleteMultipartUpload).
    fn write(&mut self, key: &str, object: FakeObject) {
        self.materialize(key);
        if self.versions.enabled {
            self.retire_current(key);
            let id = self.new_version_id();
            self.versions.current.insert(key.to_string(), id);
        } else if self.versions.suspended {
            self.retire_to_null(key);
        }
        self.objects.insert(key.to_string(), object);
    }

    /// Suspended versioning: the key's next write or delete marker has the version id `null`
    /// and replaces the `null` version it had (current or not); a current version with an id
    /// stays as a noncurrent one ("Adding objects to versioning-suspended buckets", "Deleting
    /// objects from versioning-suspended buckets").
    fn retire_to_null(&mut self, key: &str) {
        if self.versions.current.contains_key(key) {
            self.retire_current(key);
        } else {
            self.objects.remove(key);
        }
        self.versions
            .noncurrent
            .retain(|v| !(v.key == key && v.version_id == "null"));
    }

    /// A DeleteObject(s) of `key` without a version id, at `now` (AWS's clock).
    fn delete_key(&mut self, key: &str, now: chrono::DateTime<chrono::Utc>) {
        let unversioned = !self.versions.enabled && !self.versions.suspended;
        match self.slot_of(key) {
            // Gone without a trace: nothing to keep.
            Some((n, i)) if unversioned => return self.slots[n].clear(i),
            Some(_) => self.materialize(key),
            None => {}
        }
        if self.versions.enabled {
            self.retire_current(key);
            let version_id = self.new_version_id();
            self.versions.noncurrent.push(FakeVersion {
                key: key.to_string(),
                version_id,
                object: None,
                last_modified: now,
            });
        } else if self.versions.suspended {
            self.retire_to_null(key);
            self.versions.noncurrent.push(FakeVersion {
                key: key.to_string(),
                version_id: "null".into(),
                object: None,
                last_modified: now,
            });
        } else {
            self.objects.remove(key);
        }
    }

    /// A delete of one version (or delete marker) by its id. Deleting the current version makes
    /// the newest remaining one current (a delete marker then hides the key).
    fn delete_version(&mut self, key: &str, version_id: &str) {
        self.materialize(key);
        let current_id = self.objects.get(key).map(|_| {
            self.versions
                .current
                .get(key)
                .cloned()
                .unwrap_or_else(|| "null".into())
        });
        if current_id.as_deref() == Some(version_id) {
            self.objects.remove(key);
            self.versions.current.remove(key);
            let newest = self.versions.noncurrent.iter().rposition(|v| v.key == key);
            if let Some(i) = newest {
                if self.versions.noncurrent[i].object.is_some() {
                    let v = self.versions.noncurrent.remove(i);
                    if v.version_id != "null" {
                        self.versions.current.insert(key.to_string(), v.version_id);
                    }
                    self.objects
                        .insert(key.to_string(), v.object.expect("checked"));
                }
            }
        } else {
            self.versions
                .noncurrent
                .retain(|v| !(v.key == key && v.version_id == version_id));
        }
    }

    /// Every version and delete marker, as ListObjectVersions orders them: by key, newest
    /// first.
    /// (The newest entry of each key is its latest: the current version, or a delete marker
    /// hiding the key.)
    fn all_versions(&self) -> Vec<ObjectVersion> {
        self.versions_from("", usize::MAX)
    }

    /// The entries of `all_versions` whose keys are the first `max_keys` keys at or after
    /// `from` (a page's worth, without building the whole listing for every page).
    fn versions_from(&self, from: &str, max_keys: usize) -> Vec<ObjectVersion> {
        fn entry(
            key: &str,
            version_id: &str,
            o: Option<&FakeObject>,
            at: chrono::DateTime<chrono::Utc>,
        ) -> ObjectVersion {
            ObjectVersion {
                key: key.to_string(),
                version_id: version_id.to_string(),
                delete_marker: o.is_none(),
                last_modified: listed_time(at),
                is_latest: false,
                size: o.map_or(0, FakeObject::size),
                etag: o.map(|o| o.etag.clone()).unwrap_or_default(),
                storage_class: o.and_then(|o| o.head.storage_class.clone()),
                checksum_algorithm: o
                    .and_then(|o| o.head.checksum.as_ref().map(|c| c.algorithm.clone())),
            }
        }
        let current = self.current_from(std::ops::Bound::Included(from), "", max_keys);
        let mut keys: Vec<&String> = current
            .iter()
            .map(|(k, _)| k)
            .chain(
                self.versions
                    .noncurrent
                    .iter()
                    .map(|v| &v.key)
                    .filter(|k| k.as_str() >= from),
            )
            .collect();
        keys.sort();
        keys.dedup();
        keys.truncate(max_keys);
        let Some(last) = keys.last().map(|k| k.to_string()) else {
            return Vec::new();
        };
        let within = |k: &str| k >= from && k <= last.as_str();
        let mut all: Vec<(String, usize, ObjectVersion)> = Vec::new();
        for (key, o) in current.iter().filter(|(k, _)| within(k)) {
            let version_id = match self.slot_of(key) {
                Some((n, i)) => self.slots[n].version_id(i),
                None => self
                    .versions
                    .current
                    .get(key)
                    .map_or("null", String::as_str)
                    .to_string(),
            };
            all.push((
                key.clone(),
                0,
                entry(key, &version_id, Some(o), o.last_modified),
            ));
        }
        let n = self.versions.noncurrent.len();
        for (i, v) in self.versions.noncurrent.iter().enumerate() {
            if !within(&v.key) {
                continue;
            }
            let e = entry(&v.key, &v.version_id, v.object.as_ref(), v.last_modified);
            all.push((v.key.clone(), n - i, e));
        }
        all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut out: Vec<ObjectVersion> = Vec::with_capacity(all.len());
        for (_, _, mut v) in all {
            v.is_latest = out.last().is_none_or(|p| p.key != v.key);
            out.push(v);
        }
        out
    }

    /// Version `version_id` of `key`: Some(None) for a delete marker, None if there is none.
    fn version(
        &self,
        key: &str,
        version_id: &str,
    ) -> Option<Option<std::borrow::Cow<'_, FakeObject>>> {
        if let Some(o) = self.objects.get(key) {
            let current = self
                .versions
                .current
                .get(key)
                .map_or("null", String::as_str);
            if current == version_id {
                return Some(Some(std::borrow::Cow::Borrowed(o)));
            }
        }
        if let Some((n, i)) = self.slot_of(key) {
            if self.slots[n].version_id(i) == version_id {
                return Some(Some(std::borrow::Cow::Owned(self.slots[n].object(i))));
            }
        }
        self.versions
            .noncurrent
            .iter()
            .find(|v| v.key == key && v.version_id == version_id)
            .map(|v| v.object.as_ref().map(std::borrow::Cow::Borrowed))
    }

    /// Whether DeleteBucket may delete it: no object, no version, no delete marker.
    fn is_empty(&self) -> bool {
        self.objects.is_empty()
            && self.versions.noncurrent.is_empty()
            && self.slots.iter().all(bulk::Slot::is_empty)
    }
}

#[derive(Debug, Clone)]
struct FakeDb {
    /// What describe shows until `ready_at`: creating, renaming, modifying.
    pending_status: DbStatus,
    id: String,
    deletion_protection: bool,
    engine: String,
    ready_at: Instant,
    restored_from: Option<String>,
    tags: BTreeMap<String, String>,
    /// The Aurora cluster this instance belongs to.
    cluster: Option<String>,
    /// A rename in flight: the identifier the instance moves to at `ready_at`.
    pending_rename: Option<String>,
    /// Changes queued for the maintenance window or a reboot (`pending_changes` in describe).
    pending_changes: Vec<String>,
    /// (AWS time, data version) of the instance's creation and of every write since, as a
    /// cluster's: a point-in-time restore gets the version of its moment.
    writes: Vec<(chrono::DateTime<chrono::Utc>, u64)>,
    /// `BackupRetentionPeriod` (days; 0: no automated backups, no point-in-time restore).
    backup_retention: i32,
}

/// The data version a history of writes held at `at`.
fn version_at(
    writes: &[(chrono::DateTime<chrono::Utc>, u64)],
    at: chrono::DateTime<chrono::Utc>,
) -> u64 {
    writes
        .iter()
        .take_while(|(t, _)| *t <= at)
        .last()
        .map_or(0, |(_, v)| *v)
}

/// A DB instance's `LatestRestorableTime` at AWS time `now`: the last whole step of
/// `Timings::restorable_step` (the last transaction-log upload), None without backups or
/// before the first upload since the instance was made.
fn instance_restorable(
    db: &FakeDb,
    now: chrono::DateTime<chrono::Utc>,
    t: &Timings,
) -> Option<chrono::DateTime<chrono::Utc>> {
    if db.backup_retention <= 0 {
        return None;
    }
    let step = t.restorable_step.as_millis().max(1) as i64;
    let ms = now.timestamp_millis();
    let latest = chrono::DateTime::from_timestamp_millis(ms - ms.rem_euclid(step))?;
    // None until the first upload after the instance was made (AWS shows no
    // LatestRestorableTime before its first backup).
    let created = db.writes.first().map_or(latest, |(t, _)| *t);
    (latest >= created).then_some(latest)
}

#[derive(Debug, Clone)]
struct FakeSnapshot {
    instance_id: String,
    /// When its point in time is fixed: `SnapshotCreateTime` shows from then on.
    point_at: Instant,
    ready_at: Instant,
    tags: BTreeMap<String, String>,
    created: chrono::DateTime<chrono::Utc>,
    /// For a cluster snapshot: the cluster's data version it holds.
    data_version: u64,
}

/// An Aurora cluster. Its data is modelled as a version number that each write bumps, with the
/// history kept so a point-in-time restore gets the version of that moment.
#[derive(Debug, Clone)]
struct FakeCluster {
    pending_status: DbStatus,
    ready_at: Instant,
    engine: String,
    engine_mode: String,
    deletion_protection: bool,
    tags: BTreeMap<String, String>,
    clone_group_id: Option<String>,
    /// (wall time, version) of the cluster's creation and of every write since.
    writes: Vec<(chrono::DateTime<chrono::Utc>, u64)>,
    /// `snapshot <id>` or `copy-on-write clone of <cluster> at <time>`.
    restored_from: Option<String>,
    /// A rename in flight: the identifier the cluster moves to at `ready_at`.
    pending_rename: Option<String>,
    /// Changes queued for the maintenance window (`pending_changes` in describe).
    pending_changes: Vec<String>,
}

impl FakeCluster {
    fn version_at(&self, at: chrono::DateTime<chrono::Utc>) -> u64 {
        version_at(&self.writes, at)
    }

    fn version(&self) -> u64 {
        self.writes.last().map_or(0, |(_, v)| *v)
    }
}

/// Now on AWS's clock.
fn aws_now(t: &Timings) -> chrono::DateTime<chrono::Utc> {
    FakeClock.now() + chrono::Duration::from_std(t.aws_clock_ahead).unwrap_or_default()
}

/// AWS allows 15 copy-on-write clones of one source.
const MAX_CLONES: usize = 15;

#[derive(Debug, Clone, Default)]
struct FakeGroup {
    min: i32,
    max: i32,
    desired: i32,
    instances: Vec<AsgInstance>,
    /// Suspended scaling processes (SuspendProcesses).
    suspended: std::collections::BTreeSet<String>,
    /// Scheduled actions still to come: (when, desired capacity).
    scheduled: Vec<(Instant, i32)>,
    /// Instances launching (or back from Standby) and when they finish `Pending`.
    pending_until: BTreeMap<String, Instant>,
    /// A launch lifecycle hook that never completes: instances stay in `Pending:Wait`.
    hold_launches: bool,
}

/// The fake's Auto Scaling as AWS runs it (Amazon EC2 Auto Scaling User Guide, "Suspend and
/// resume Amazon EC2 Auto Scaling processes", "Temporarily remove instances from your Auto
/// Scaling group"): scheduled actions set the desired capacity unless `ScheduledActions` is
/// suspended (an action due meanwhile is skipped, not run later); while fewer instances serve
/// than desired and `Launch` is not suspended, the group launches instances, which are
/// `Pending` for a while and then `InService`; an instance leaving Standby passes through
/// `Pending` too, and a launch lifecycle hook holds it in `Pending:Wait`.
impl State {
    fn settle_groups(&mut self, now: Instant, launch: Duration) {
        let mut launched = self.launched;
        for g in self.groups.values_mut() {
            let due: Vec<i32> = g
                .scheduled
                .iter()
                .filter(|(at, _)| *at <= now)
                .map(|(_, d)| *d)
                .collect();
            g.scheduled.retain(|(at, _)| *at > now);
            if !g.suspended.contains("ScheduledActions") {
                if let Some(d) = due.last() {
                    g.desired = (*d).clamp(g.min, g.max);
                }
            }
            for i in &mut g.instances {
                if let Some(until) = g.pending_until.get(&i.id) {
                    if *until <= now && i.lifecycle_state == LifecycleState::Pending {
                        i.lifecycle_state = if g.hold_launches {
                            LifecycleState::PendingWait
                        } else {
                            LifecycleState::InService
                        };
                    }
                }
            }
            g.pending_until.retain(|id, _| {
                g.instances
                    .iter()
                    .any(|i| &i.id == id && i.lifecycle_state == LifecycleState::Pending)
            });
            if !g.suspended.contains("Launch") {
                let serving = g
                    .instances
                    .iter()
                    .filter(|i| {
                        i.lifecycle_state == LifecycleState::InService
                            || i.lifecycle_state.is_pending()
                    })
                    .count() as i32;
                for _ in serving..g.desired {
                    launched += 1;
                    let id = format!("i-launched{launched:011x}");
                    g.pending_until.insert(id.clone(), now + launch);
                    g.instances.push(AsgInstance {
                        id,
                        lifecycle_state: LifecycleState::Pending,
                        health_status: HealthStatus::Healthy,
                    });
                }
            }
        }
        self.launched = launched;
    }
}

#[derive(Debug, Clone)]
struct FakeStackResource {
    logical_id: String,
    resource_type: String,
    /// Fixed at creation: CloudFormation tracks resources by the id it created them with.
    physical_id: String,
    created_at: Instant,
    /// `DeletionPolicy`; for a DB instance AWS's default is Snapshot.
    deletion_policy: Option<String>,
    /// Set by a stack delete: DELETE_COMPLETE, DELETE_FAILED or DELETE_SKIPPED.
    delete_status: Option<ResourceStatus>,
}

#[derive(Debug, Clone)]
struct FakeStack {
    info: StackInfo,
    /// The stack id of the stack whose `AWS::CloudFormation::Stack` resource this is.
    parent: Option<String>,
    body: String,
    resources: Vec<FakeStackResource>,
    complete_at: Instant,
    failure: Option<String>,
    deleted: bool,
    delete_failed: Option<String>,
    client_token: String,
}

#[derive(Debug, Clone)]
struct Upload {
    bucket: String,
    key: String,
    head: ObjectHead,
    tags: BTreeMap<String, String>,
    /// Each part's bytes and, for an upload created with a checksum algorithm, its checksum.
    parts: BTreeMap<u32, (Vec<u8>, Option<String>)>,
}

#[derive(Default)]
struct State {
    stacks: Vec<FakeStack>,
    dbs: BTreeMap<String, FakeDb>,
    snapshots: BTreeMap<String, FakeSnapshot>,
    clusters: BTreeMap<String, FakeCluster>,
    cluster_snapshots: BTreeMap<String, FakeSnapshot>,
    groups: BTreeMap<String, FakeGroup>,
    buckets: BTreeMap<String, FakeBucket>,
    /// Stack resources of the types the fake does not model in detail (KMS keys, tables,
    /// log groups, networks…), by physical id: their type. They exist until their stack
    /// deletes them.
    generic: BTreeMap<String, String>,
    /// Names the generic resources hold where AWS makes them unique (IAM role names, log
    /// group names, security group names in a VPC…; see `workflow::fixednames`): the name's
    /// key → the physical id holding it.
    named: BTreeMap<String, String>,
    uploads: HashMap<String, Upload>,
    /// Records by (hosted zone id, fully qualified lowercase name).
    dns: BTreeMap<(String, String), Vec<DnsRecord>>,
    zones: BTreeMap<String, HostedZone>,
    http: BTreeMap<String, u16>,
    /// Hook commands run, with the environment they got; commands listed in `failing_hooks`
    /// fail.
    hooks_run: Vec<(String, BTreeMap<String, String>)>,
    failing_hooks: Vec<String>,
    faults: Vec<Fault>,
    /// Calls dropped by their caller while in flight.
    abandoned: Vec<String>,
    /// (snapshot, instances serving when it was taken).
    serving_at_snapshots: Vec<(String, Vec<String>)>,
    /// Instances Auto Scaling launched so far (for their ids).
    launched: u64,
    /// Calls that take effect and then fail as if their response was lost.
    lost_responses: Vec<Fault>,
    calls: Vec<Call>,
    /// Every call made, logged or not.
    call_count: u64,
    /// Operations whose calls are counted but not logged (`unlogged_calls`).
    unlogged: Vec<String>,
    dns_changes: HashMap<String, Instant>,
    mutating_count: u64,
    fail_mutating_at: Option<u64>,
    crash_at: Option<(u64, Arc<tokio::sync::Notify>)>,
    fail_every: Option<(u64, PortError)>,
    activities: BTreeMap<String, Vec<String>>,
    /// The number of keys of each DeleteObjects call, in order.
    delete_batches: Vec<usize>,
    /// Each `ObjectStore::warm_up` asked for: the bucket, the connections, when. Not a call:
    /// the fake has no connections, and a warm-up's requests must not take a fault a test
    /// set for a HeadBucket of its own.
    warm_ups: Vec<(String, usize, Duration)>,
    next_id: u64,
    /// S3 ETags as SeaweedFS makes them (`copies_like_seaweedfs`).
    seaweedfs_etags: bool,
    /// Copies of synthetic objects are stored like any other (the unit tests' reference for
    /// the compact copies: `fake/bulk.rs`).
    #[cfg(test)]
    store_synthetic_copies: bool,
    /// Test actions run once when a call of the operation is made (`on_call`).
    on_calls: Vec<(String, OnCall)>,
    /// Each CreateStack accepted: the stack's name and the TemplateURL it was created from
    /// (None: TemplateBody).
    create_stack_sources: Vec<(String, Option<String>)>,
    /// DynamoDB tables (`fake/dynamodb.rs`).
    tables: dynamodb::TablesState,
    /// S3 Batch Operations jobs (`fake/batch.rs`).
    batch: batch::BatchState,
}

/// A call between its request and its answer; notes itself abandoned if dropped there.
struct InFlight<'a> {
    fake: &'a FakeAws,
    operation: &'a str,
    answered: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.answered {
            if let Ok(mut s) = self.fake.state.lock() {
                s.abandoned.push(self.operation.to_string());
            }
        }
    }
}

type OnCall = Box<dyn FnOnce(&FakeAws) + Send>;

/// The fake AWS. Cheap to clone (shared state).
#[derive(Clone)]
pub struct FakeAws {
    state: Arc<Mutex<State>>,
    pub timings: Arc<Timings>,
    epoch: Instant,
}

impl FakeAws {
    pub fn new(timings: Timings) -> Self {
        FakeAws {
            state: Arc::default(),
            timings: Arc::new(timings),
            epoch: Instant::now(),
        }
    }

    pub fn cloud(&self) -> Cloud {
        Cloud {
            stacks: Arc::new(self.clone()),
            databases: Arc::new(self.clone()),
            scaling: Arc::new(self.clone()),
            objects: Arc::new(self.clone()),
            dns: Arc::new(self.clone()),
            http: Arc::new(self.clone()),
            hooks: Arc::new(self.clone()),
            clock: Arc::new(FakeClock),
            tables: Arc::new(self.clone()),
            jobs: Arc::new(self.clone()),
        }
    }

    /// The state, with every rename whose time has come applied (as AWS would have by now).
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        let mut s = self.state.lock().expect("fake state lock");
        let now = Instant::now();
        s.settle_renames(now);
        s.settle_groups(now, self.timings.instance_launch);
        s
    }

    /// Records the call, waits the call latency, and fails it if a fault is armed.
    async fn call(&self, operation: &str, mutating: bool) -> PortResult<()> {
        let due: Vec<OnCall> = {
            let mut s = self.lock();
            let (due, keep) = std::mem::take(&mut s.on_calls)
                .into_iter()
                .partition::<Vec<_>, _>(|(op, _)| op == operation);
            s.on_calls = keep;
            due.into_iter().map(|(_, f)| f).collect()
        };
        for f in due {
            f(self);
        }
        {
            let mut s = self.lock();
            let at = self.epoch.elapsed();
            s.call_count += 1;
            if !s.unlogged.iter().any(|o| o == operation) {
                s.calls.push(Call {
                    operation: operation.to_string(),
                    mutating,
                    at,
                });
            }
            if let Some((every, error)) = &s.fail_every {
                if s.call_count.is_multiple_of(*every) {
                    return Err(error.clone());
                }
            }
            if mutating {
                s.mutating_count += 1;
                if let Some((at, crash)) = &s.crash_at {
                    if *at == s.mutating_count {
                        crash.notify_one();
                    }
                }
                if s.fail_mutating_at == Some(s.mutating_count) {
                    return Err(PortError::failed(
                        operation,
                        "injected failure of this call",
                    ));
                }
            }
            if let Some(f) = s
                .faults
                .iter_mut()
                .find(|f| f.remaining > 0 && (f.operation == operation || f.operation == "*"))
            {
                f.remaining -= 1;
                return Err(f.error.clone());
            }
        }
        // A call dropped while in flight (its future cancelled) is recorded as abandoned: on
        // AWS its request may or may not have been acted on. Here it never takes effect.
        let mut in_flight = InFlight {
            fake: self,
            operation,
            answered: !mutating, // only a change of unknown fate matters
        };
        tokio::time::sleep(self.timings.call_latency).await;
        in_flight.answered = true;
        Ok(())
    }

    // ------------------------------------------------------------ test controls

    /// Time since this fake was made (the clock of `Call::at`).
    pub fn elapsed(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Mutating calls whose caller dropped them before their answer came (a cancelled future).
    pub fn abandoned_calls(&self) -> Vec<String> {
        self.lock().abandoned.clone()
    }

    /// Makes the next `times` calls of `operation` ("s3:CopyObject", or "*") fail with `error`.
    pub fn fail(&self, operation: &str, error: PortError, times: u32) {
        self.lock().faults.push(Fault {
            operation: operation.to_string(),
            error,
            remaining: times,
        });
    }

    /// Makes the next `times` calls of `operation` take effect but lose their answer (the
    /// caller sees a timeout): a request that reached AWS and whose response did not come back.
    /// Modelled for the renames (`rds:ModifyDBInstance`, `rds:ModifyDBCluster`).
    pub fn lose_response(&self, operation: &str, times: u32) {
        self.lock().lost_responses.push(Fault {
            operation: operation.to_string(),
            error: PortError::Transient {
                operation: operation.to_string(),
                message: "RequestTimeout: the response was lost (injected)".into(),
            },
            remaining: times,
        });
    }

    /// After a call took effect: its answer, or the armed lost-response error.
    fn answer(&self, operation: &str) -> PortResult<()> {
        let mut s = self.state.lock().expect("fake state lock");
        match s
            .lost_responses
            .iter_mut()
            .find(|f| f.remaining > 0 && f.operation == operation)
        {
            Some(f) => {
                f.remaining -= 1;
                Err(f.error.clone())
            }
            None => Ok(()),
        }
    }

    /// Makes the `n`-th mutating call from now fail (once), to stop a run at every step.
    pub fn fail_nth_mutating_call(&self, n: u64) {
        let mut s = self.lock();
        s.fail_mutating_at = Some(s.mutating_count + n);
    }

    /// Fails every `n`-th call (of any kind) with `error`, for the rest of the run.
    pub fn fail_every_nth_call(&self, n: u64, error: PortError) {
        self.lock().fail_every = Some((n, error));
    }

    /// Signals once the `n`-th mutating call from now has been made (and taken effect): a
    /// test drops the run's future there, as a `kill -9` right after the call would.
    pub fn crash_after_nth_mutating_call(&self, n: u64) -> Arc<tokio::sync::Notify> {
        let crash = Arc::new(tokio::sync::Notify::new());
        let mut s = self.lock();
        s.crash_at = Some((s.mutating_count + n, crash.clone()));
        crash
    }

    /// Runs `action` once, when the next call of `operation` (e.g. "rds:ModifyDBInstance") is
    /// made, before it takes effect: the world changing at a given moment of a run.
    pub fn on_call(&self, operation: &str, action: impl FnOnce(&FakeAws) + Send + 'static) {
        self.lock()
            .on_calls
            .push((operation.to_string(), Box::new(action)));
    }

    /// Auto Scaling's health status of an instance (`Healthy`, `Unhealthy`), as a failing load
    /// balancer health check makes it with `HealthCheckType: ELB`.
    pub fn set_instance_health(
        &self,
        group: &str,
        instance_id: &str,
        status: impl Into<HealthStatus>,
    ) {
        let mut s = self.lock();
        let g = s.groups.get_mut(group).expect("group exists");
        let i = g
            .instances
            .iter_mut()
            .find(|i| i.id == instance_id)
            .expect("instance in group");
        i.health_status = status.into();
    }

    /// Puts DB instance (or, if there is none by that name, DB cluster) `id` in `status` for
    /// `lasting` (then it is `available` again), as RDS shows a database that is stopped,
    /// under maintenance or in a status this code does not know. Panics if neither exists.
    pub fn set_db_status(&self, id: &str, status: DbStatus, lasting: Duration) {
        let mut s = self.lock();
        let until = Instant::now() + lasting;
        if let Some(db) = s.dbs.get_mut(id) {
            db.pending_status = status;
            db.ready_at = until;
        } else {
            let c = s.clusters.get_mut(id).expect("database exists");
            c.pending_status = status;
            c.ready_at = until;
        }
    }

    /// A scaling activity in flight on `group` (empty `description` clears them).
    pub fn set_activity(&self, group: &str, description: &str) {
        let mut s = self.lock();
        if description.is_empty() {
            s.activities.remove(group);
        } else {
            s.activities
                .entry(group.to_string())
                .or_default()
                .push(description.to_string());
        }
    }

    pub fn db_ids(&self) -> Vec<String> {
        self.lock().dbs.keys().cloned().collect()
    }

    /// Queues `change` (in words, as describe shows it) on DB instance or cluster `id`, as a
    /// ModifyDBInstance without ApplyImmediately or a static parameter's change would.
    pub fn queue_db_change(&self, id: &str, change: &str) {
        let mut s = self.lock();
        let s = &mut *s;
        let queued = match s.dbs.get_mut(id) {
            Some(db) => &mut db.pending_changes,
            None => match s.clusters.get_mut(id) {
                Some(cluster) => &mut cluster.pending_changes,
                None => panic!("no database {id}"),
            },
        };
        queued.push(change.to_string());
    }

    /// The records named `name` in the public hosted zone named `zone`.
    pub fn dns_records(&self, zone: &str, name: &str) -> Vec<DnsRecord> {
        let id = self.public_zone(zone);
        self.dns_records_in(&id, name)
    }

    /// The records named `name` in hosted zone `zone_id`.
    pub fn dns_records_in(&self, zone_id: &str, name: &str) -> Vec<DnsRecord> {
        self.lock()
            .dns
            .get(&(zone_id.to_string(), fqdn(name)))
            .cloned()
            .unwrap_or_default()
    }

    /// Creates a hosted zone (public or private: both may share a name); returns its id.
    pub fn create_zone(&self, name: &str, private: bool) -> String {
        let mut s = self.lock();
        let id = format!("Z{:012}FAKE", next_id(&mut s));
        s.zones.insert(
            id.clone(),
            HostedZone {
                id: id.clone(),
                name: fqdn(name),
                private,
            },
        );
        id
    }

    /// The public hosted zone named `zone` (created when there is none).
    fn public_zone(&self, zone: &str) -> String {
        let found = self
            .lock()
            .zones
            .values()
            .find(|z| z.name == fqdn(zone) && !z.private)
            .map(|z| z.id.clone());
        found.unwrap_or_else(|| self.create_zone(zone, false))
    }

    /// Sets the records named `name` of hosted zone `zone_id` to `records`, as someone editing
    /// the zone by hand.
    pub fn put_dns_in(&self, zone_id: &str, name: &str, records: Vec<DnsRecord>) {
        self.lock()
            .dns
            .insert((zone_id.to_string(), fqdn(name)), records);
    }

    /// The physical id CloudFormation records for a stack's resource.
    pub fn recorded_physical_id(&self, stack: &str, logical_id: &str) -> Option<String> {
        let s = self.lock();
        let st = s
            .stacks
            .iter()
            .rev()
            .find(|st| !st.deleted && st.info.name == stack)?;
        st.resources
            .iter()
            .find(|r| r.logical_id == logical_id)
            .map(|r| r.physical_id.clone())
    }

    /// Copies get ETags as on SeaweedFS: a multipart upload completed from part copies gets
    /// another ETag than AWS would give (not the MD5 of the part MD5s), and CopyObject keeps a
    /// multipart source's ETag and parts (AWS gives the copy a plain MD5).
    pub fn copies_like_seaweedfs(&self) {
        self.lock().seaweedfs_etags = true;
    }

    /// Calls of these operations are counted (`call_count`) but left out of `calls()`: a
    /// benchmark's millions of per-object calls would take gigabytes to log.
    pub fn unlogged_calls(&self, operations: &[&str]) {
        self.lock().unlogged = operations.iter().map(|o| o.to_string()).collect();
    }

    /// Every call made so far, logged or not.
    pub fn call_count(&self) -> u64 {
        self.lock().call_count
    }

    /// The number of keys each DeleteObjects call carried, in call order.
    pub fn delete_batches(&self) -> Vec<usize> {
        self.lock().delete_batches.clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Each `ObjectStore::warm_up` asked for so far: (bucket, connections, when).
    pub fn warm_ups(&self) -> Vec<(String, usize, Duration)> {
        self.lock().warm_ups.clone()
    }

    pub fn mutating_calls(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.mutating)
            .map(|c| c.operation)
            .collect()
    }

    pub fn hooks_run(&self) -> Vec<(String, BTreeMap<String, String>)> {
        self.lock().hooks_run.clone()
    }

    pub fn fail_hook(&self, command: &str) {
        self.lock().failing_hooks.push(command.to_string());
    }

    pub fn set_http_status(&self, url: &str, status: u16) {
        self.lock().http.insert(url.to_string(), status);
    }

    /// Sets the records of `record`'s name in the public zone named `zone` to `record` alone.
    pub fn put_dns(&self, zone: &str, record: DnsRecord) {
        let id = self.public_zone(zone);
        let name = record.name.clone();
        self.put_dns_in(&id, &name, vec![record]);
    }

    pub fn create_bucket_now(&self, bucket: &str) {
        self.lock().buckets.insert(
            bucket.to_string(),
            FakeBucket::new(Instant::now(), BTreeMap::new()),
        );
    }

    /// Puts an object as a single-part upload.
    pub fn put_object(
        &self,
        bucket: &str,
        key: &str,
        data: &[u8],
        head: ObjectHead,
        tags: &[(&str, &str)],
    ) {
        self.insert_object(bucket, key, data, &[data.len() as u64], false, head, tags)
    }

    /// Puts an object as a multipart upload with the given part sizes.
    pub fn put_multipart_object(
        &self,
        bucket: &str,
        key: &str,
        data: &[u8],
        parts: &[u64],
        head: ObjectHead,
    ) {
        self.insert_object(bucket, key, data, parts, true, head, &[])
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_object(
        &self,
        bucket: &str,
        key: &str,
        data: &[u8],
        parts: &[u64],
        multipart: bool,
        mut head: ObjectHead,
        tags: &[(&str, &str)],
    ) {
        let mut s = self.lock();
        let (etag, parts) = if multipart {
            let mut offset = 0usize;
            let mut pieces = Vec::new();
            for &p in parts {
                pieces.push(data[offset..offset + p as usize].to_vec());
                offset += p as usize;
            }
            (multipart_etag(&pieces), parts.to_vec())
        } else {
            (md5_hex(data), Vec::new())
        };
        let etag = written_etag(&mut s, etag, head.encryption.as_ref(), parts.len());
        // A checksum asked for by the writer (its algorithm set, its value left empty): S3
        // computes it from the bytes it received.
        if let Some(c) = &mut head.checksum {
            if c.value.is_empty() {
                c.value = checksum_of(&c.algorithm, data);
                c.full_object = true;
            }
        }
        head.size = data.len() as u64;
        head.etag = etag.clone();
        let b = s.buckets.get_mut(bucket).expect("bucket exists");
        b.write(
            key,
            FakeObject {
                data: Arc::new(data.to_vec()),
                etag,
                parts,
                head,
                tags: tags
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                last_modified: aws_now(&self.timings),
                restored: false,
                customer_key: false,
                synthetic: None,
            },
        );
    }

    /// Puts `count` objects under `prefix` at once, as `count` single-part PutObjects would,
    /// without storing them (`fake/bulk.rs`): key `<prefix><index, 10 digits>`, sizes spread
    /// from half to one and a half times `total_bytes / count` and adding up to `total_bytes`,
    /// an MD5-like ETag, no checksum, no tags, LastModified now, a version id when the bucket
    /// is versioned. Every S3 call sees them as it sees stored objects; a copy of one into
    /// another bucket is kept as compactly. For test and benchmark buckets of millions of
    /// objects; the bucket must have none under `prefix` yet.
    pub fn put_synthetic(&self, bucket: &str, prefix: &str, count: u64, total_bytes: u64) {
        let mut s = self.lock();
        let id = next_id(&mut s);
        let at = aws_now(&self.timings);
        let b = s.buckets.get_mut(bucket).expect("bucket exists");
        let spec = Arc::new(bulk::BulkSpec {
            id,
            prefix: prefix.to_string(),
            count,
            total_bytes,
        });
        let clash = b
            .objects
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .chain(b.versions.noncurrent.iter().map(|v| &v.key))
            .find(|k| spec.index_of(k).is_some());
        assert!(
            clash.is_none() && b.slots.iter().all(|slot| slot.spec.prefix != prefix),
            "put_synthetic: bucket {bucket} already has {clash:?} or a bulk under {prefix:?}; \
             a bulk's keys are new"
        );
        assert!(
            !b.versions.suspended,
            "put_synthetic: bucket {bucket}'s versioning is suspended (not modelled for bulks)"
        );
        let template = FakeObject {
            data: Arc::default(),
            etag: String::new(),
            parts: Vec::new(),
            head: ObjectHead::default(),
            tags: BTreeMap::new(),
            last_modified: at,
            restored: false,
            customer_key: false,
            synthetic: None,
        };
        let versioned = b.versions.enabled;
        b.slots
            .push(bulk::Slot::full(spec, id, versioned, template, at));
    }

    /// Puts an object encrypted with a customer-provided key (SSE-C, "Using server-side
    /// encryption with customer-provided keys"): S3 keeps no key, so HeadObject, GetObject,
    /// CopyObject and UploadPartCopy of it fail without the key's headers; its ETag is no MD5.
    pub fn put_customer_key_object(&self, bucket: &str, key: &str, data: &[u8]) {
        self.put_object(bucket, key, data, ObjectHead::default(), &[]);
        let mut s = self.lock();
        let id = next_id(&mut s);
        let o = s
            .buckets
            .get_mut(bucket)
            .and_then(|b| b.objects.get_mut(key))
            .expect("just put");
        o.customer_key = true;
        o.etag = md5_hex(format!("sse-c {id} {key}").as_bytes());
        o.head.etag = o.etag.clone();
    }

    /// A bucket's default encryption as `ObjectEncryption` (GetBucketEncryption): SSE-S3 where
    /// none is configured — "Amazon S3 now applies server-side encryption with Amazon S3
    /// managed keys (SSE-S3) as the base level of encryption for every bucket" (S3 User Guide,
    /// "Setting default server-side encryption behavior for Amazon S3 buckets", January 2023).
    /// The fake's configuration string is `<algorithm> [<KMS key ARN>] [bucket-key]`.
    fn default_encryption(config: &FakeBucketConfig) -> ObjectEncryption {
        let mut words = config
            .encryption
            .as_deref()
            .unwrap_or(ObjectEncryption::SSE_S3)
            .split_whitespace();
        let algorithm = words.next().unwrap_or(ObjectEncryption::SSE_S3).to_string();
        let rest: Vec<&str> = words.collect();
        ObjectEncryption {
            kms_key_id: rest
                .iter()
                .find(|w| **w != "bucket-key")
                .map(|k| k.to_string()),
            bucket_key: rest.contains(&"bucket-key"),
            algorithm,
        }
    }

    pub fn object(&self, bucket: &str, key: &str) -> Option<FakeObject> {
        let s = self.lock();
        s.buckets.get(bucket)?.current(key).map(|o| o.into_owned())
    }

    pub fn object_keys(&self, bucket: &str) -> Vec<String> {
        self.lock()
            .buckets
            .get(bucket)
            .map(FakeBucket::current_keys)
            .unwrap_or_default()
    }

    /// RestoreObject of an archived object, finished at once (AWS: minutes to hours): its
    /// restored copy can be read and copied, and listings say so.
    pub fn restore_object_now(&self, bucket: &str, key: &str) {
        let mut s = self.lock();
        let b = s.buckets.get_mut(bucket).expect("bucket exists");
        b.materialize(key);
        b.objects.get_mut(key).expect("object exists").restored = true;
    }

    /// PutBucketVersioning Enabled, as the application or the operator would.
    /// Gives the bucket a lifecycle rule with NoncurrentVersionExpiration, as far as
    /// `noncurrent_versions_expire` tells: the fake does not run it (a test removes the
    /// versions it would with `delete_versions`).
    pub fn expire_noncurrent_versions(&self, bucket: &str) {
        let mut s = self.lock();
        s.buckets
            .get_mut(bucket)
            .expect("bucket exists")
            .versions
            .expire_noncurrent = true;
    }

    pub fn enable_versioning(&self, bucket: &str) {
        let mut s = self.lock();
        let b = s.buckets.get_mut(bucket).expect("bucket exists");
        b.versions.enabled = true;
        b.versions.suspended = false;
    }

    /// PutBucketVersioning Suspended, as the application or the operator would: versioning
    /// once enabled can be suspended, never turned off.
    pub fn suspend_versioning(&self, bucket: &str) {
        let mut s = self.lock();
        let b = s.buckets.get_mut(bucket).expect("bucket exists");
        assert!(
            b.versions.enabled || b.versions.suspended,
            "S3 suspends only a bucket whose versioning was enabled"
        );
        b.versions.enabled = false;
        b.versions.suspended = true;
    }

    /// Sets the bucket's configuration (other than versioning and tags), as its owner would.
    pub fn set_bucket_config(&self, bucket: &str, config: FakeBucketConfig) {
        let mut s = self.lock();
        s.buckets.get_mut(bucket).expect("bucket exists").config = config;
    }

    pub fn bucket_config(&self, bucket: &str) -> FakeBucketConfig {
        self.lock().buckets[bucket].config.clone()
    }

    pub fn set_bucket_tags(&self, bucket: &str, tags: BTreeMap<String, String>) {
        let mut s = self.lock();
        s.buckets.get_mut(bucket).expect("bucket exists").tags = tags;
    }

    pub fn bucket_tags_now(&self, bucket: &str) -> BTreeMap<String, String> {
        self.lock().buckets[bucket].tags.clone()
    }

    pub fn versioning_enabled(&self, bucket: &str) -> bool {
        self.lock().buckets[bucket].versions.enabled
    }

    /// Every object version and delete marker the bucket holds (none: no such bucket).
    pub fn object_versions(&self, bucket: &str) -> Vec<ObjectVersion> {
        self.lock()
            .buckets
            .get(bucket)
            .map(|b| b.all_versions())
            .unwrap_or_default()
    }

    pub fn bucket_names(&self) -> Vec<String> {
        self.lock().buckets.keys().cloned().collect()
    }

    pub fn snapshot_ids(&self) -> Vec<String> {
        self.lock().snapshots.keys().cloned().collect()
    }

    pub fn db_restored_from(&self, id: &str) -> Option<String> {
        self.lock().dbs.get(id)?.restored_from.clone()
    }

    pub fn cluster_ids(&self) -> Vec<String> {
        self.lock().clusters.keys().cloned().collect()
    }

    pub fn cluster_snapshot_ids(&self) -> Vec<String> {
        self.lock().cluster_snapshots.keys().cloned().collect()
    }

    /// How cluster `id` was made: `snapshot <id>` or `copy-on-write clone of <cluster> at <t>`.
    pub fn cluster_restored_from(&self, id: &str) -> Option<String> {
        self.lock().clusters.get(id)?.restored_from.clone()
    }

    /// The instances of cluster `id`.
    pub fn cluster_members(&self, id: &str) -> Vec<String> {
        self.lock()
            .dbs
            .values()
            .filter(|d| d.cluster.as_deref() == Some(id))
            .map(|d| d.id.clone())
            .collect()
    }

    /// An application write to cluster `id`; returns the data version it made.
    pub fn write_to_cluster(&self, id: &str) -> u64 {
        let mut s = self.lock();
        let c = s.clusters.get_mut(id).expect("cluster exists");
        let version = c.version() + 1;
        c.writes.push((aws_now(&self.timings), version));
        version
    }

    /// An application write to DB instance `id`; returns the data version it made.
    pub fn write_to_db(&self, id: &str) -> u64 {
        let mut s = self.lock();
        let db = s.dbs.get_mut(id).expect("instance exists");
        let version = db.writes.last().map_or(0, |(_, v)| *v) + 1;
        db.writes.push((aws_now(&self.timings), version));
        version
    }

    /// The data version DB instance `id` holds.
    pub fn db_data_version(&self, id: &str) -> Option<u64> {
        Some(
            self.lock()
                .dbs
                .get(id)?
                .writes
                .last()
                .map_or(0, |(_, v)| *v),
        )
    }

    /// Sets `BackupRetentionPeriod` of DB instance `id` (0 turns automated backups off), as
    /// its owner would with ModifyDBInstance.
    pub fn set_backup_retention(&self, id: &str, days: i32) {
        self.lock()
            .dbs
            .get_mut(id)
            .expect("instance exists")
            .backup_retention = days;
    }

    /// The data version cluster `id` holds.
    pub fn cluster_data_version(&self, id: &str) -> Option<u64> {
        Some(self.lock().clusters.get(id)?.version())
    }

    /// E.g. `serverless` (Aurora Serverless v1, which cannot be cloned copy-on-write).
    pub fn set_cluster_engine_mode(&self, id: &str, mode: &str) {
        let mut s = self.lock();
        s.clusters.get_mut(id).expect("cluster exists").engine_mode = mode.to_string();
    }

    /// Whether the stack resource with this physical id (of a type the fake does not model in
    /// detail: a KMS key, a log group…; or a DynamoDB table) still exists.
    pub fn generic_resource_exists(&self, physical_id: &str) -> bool {
        let generic = self.lock().generic.contains_key(physical_id);
        generic || self.table_exists(physical_id)
    }

    /// Sets a tag of live stack `name`, as an UpdateStack that changes only its tags would.
    pub fn set_stack_tag(&self, name: &str, key: &str, value: &str) {
        let mut s = self.lock();
        let stack = s
            .stacks
            .iter_mut()
            .rev()
            .find(|st| !st.deleted && st.info.name == name)
            .expect("stack exists");
        stack.info.tags.insert(key.to_string(), value.to_string());
    }

    /// Whether live stack `name` has termination protection on.
    pub fn termination_protection(&self, name: &str) -> Option<bool> {
        self.lock()
            .stacks
            .iter()
            .rev()
            .find(|st| !st.deleted && st.info.name == name)
            .map(|st| st.info.termination_protection)
    }

    /// Each CreateStack accepted: the stack's name and the TemplateURL it was created from
    /// (None: a TemplateBody).
    pub fn create_stack_sources(&self) -> Vec<(String, Option<String>)> {
        self.lock().create_stack_sources.clone()
    }

    pub fn live_stack_names(&self) -> Vec<String> {
        self.lock()
            .stacks
            .iter()
            .filter(|s| !s.deleted)
            .map(|s| s.info.name.clone())
            .collect()
    }

    pub fn group_names(&self) -> Vec<String> {
        self.lock().groups.keys().cloned().collect()
    }

    pub fn group(&self, name: &str) -> Option<AsgInfo> {
        let s = self.lock();
        let g = s.groups.get(name)?;
        Some(AsgInfo {
            name: name.to_string(),
            min_size: g.min,
            max_size: g.max,
            desired_capacity: g.desired,
            instances: g.instances.clone(),
            suspended_processes: g.suspended.iter().cloned().collect(),
        })
    }

    /// A scheduled action of `group` setting its desired capacity `after` from now.
    pub fn schedule_capacity(&self, group: &str, after: Duration, desired: i32) {
        let mut s = self.lock();
        s.groups
            .get_mut(group)
            .expect("group exists")
            .scheduled
            .push((Instant::now() + after, desired));
    }

    /// Sets a group's desired capacity now, as an operator or a scaling policy would.
    pub fn set_desired_now(&self, group: &str, desired: i32) {
        let mut s = self.lock();
        s.groups.get_mut(group).expect("group exists").desired = desired;
    }

    /// Suspends processes of a group, as its operator did before envclone ran.
    pub fn suspend_now(&self, group: &str, processes: &[&str]) {
        let mut s = self.lock();
        let g = s.groups.get_mut(group).expect("group exists");
        g.suspended.extend(processes.iter().map(|p| p.to_string()));
    }

    /// Terminates an instance (a Spot reclaim, a manual termination): it leaves the group.
    pub fn terminate_instance(&self, group: &str, id: &str) {
        let mut s = self.lock();
        let g = s.groups.get_mut(group).expect("group exists");
        g.instances.retain(|i| i.id != id);
    }

    /// A launch lifecycle hook that holds every instance entering service in `Pending:Wait`.
    pub fn hold_launches(&self, group: &str) {
        self.lock()
            .groups
            .get_mut(group)
            .expect("group exists")
            .hold_launches = true;
    }

    /// Adds `n` more InService instances to a group (and to its capacity).
    pub fn grow_group_now(&self, group: &str, n: usize) {
        let mut s = self.lock();
        let ids: Vec<u64> = (0..n).map(|_| next_id(&mut s)).collect();
        let g = s.groups.get_mut(group).expect("group exists");
        for id in ids {
            g.instances.push(AsgInstance {
                id: format!("i-{id:017x}"),
                lifecycle_state: LifecycleState::InService,
                health_status: HealthStatus::Healthy,
            });
        }
        g.desired += n as i32;
        g.max = g.max.max(g.desired);
    }

    /// For each DB snapshot or cluster snapshot taken: the Auto Scaling instances that were
    /// serving (InService or Pending) at that moment.
    pub fn serving_at_snapshots(&self) -> Vec<(String, Vec<String>)> {
        self.lock().serving_at_snapshots.clone()
    }

    /// Deploys a stack at once (all resources ready now): the source environment of a test.
    pub fn deploy_now(
        &self,
        name: &str,
        template_body: &str,
        parameters: &[(&str, &str)],
    ) -> StackInfo {
        let request = CreateStackRequest {
            name: name.to_string(),
            template: TemplateSource::Body(template_body.to_string()),
            parameters: parameters
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tags: BTreeMap::new(),
            capabilities: Vec::new(),
            client_token: String::new(),
        };
        let mut s = self.lock();
        instantiate(
            &mut s,
            &request,
            template_body,
            None,
            Instant::now(),
            &Timings {
                db_create: Duration::ZERO,
                stack_resource: Duration::ZERO,
                ..(*self.timings).clone()
            },
        )
        .expect("source template instantiates");
        // A stack deployed long ago: its DynamoDB tables are ACTIVE, and so is the stack.
        let now = Instant::now();
        let stack = s.stacks.last_mut().expect("just created");
        let tables: Vec<String> = stack
            .resources
            .iter()
            .filter(|r| r.resource_type == crate::workflow::dynamodb::TABLE_TYPE)
            .map(|r| r.physical_id.clone())
            .collect();
        if !tables.is_empty() {
            stack.complete_at = now;
        }
        for table in tables {
            s.tables.activate(&table, now);
        }
        s.stacks.last().expect("just created").info.clone()
    }

    fn stack_view(&self, s: &FakeStack) -> StackInfo {
        let now = Instant::now();
        let mut info = s.info.clone();
        info.status = if let Some(reason) = &s.delete_failed {
            info.status_reason = Some(reason.clone());
            StackStatus::DeleteFailed
        } else if let Some(reason) = &s.failure {
            info.status_reason = Some(reason.clone());
            StackStatus::Failed("ROLLBACK_COMPLETE".into())
        } else if now >= s.complete_at {
            StackStatus::CreateComplete
        } else {
            info.outputs.clear();
            StackStatus::InProgress("CREATE_IN_PROGRESS".into())
        };
        info
    }
}

pub fn md5_hex(data: &[u8]) -> String {
    format!("{:x}", Md5::digest(data))
}

fn multipart_etag(parts: &[Vec<u8>]) -> String {
    let mut all = Vec::new();
    for p in parts {
        all.extend_from_slice(&Md5::digest(p));
    }
    format!("{:x}-{}", Md5::digest(&all), parts.len())
}

/// The ETag S3 gives a write: the MD5 (or multipart MD5) of the data for SSE-S3 and
/// unencrypted objects, something else for SSE-KMS — "Objects encrypted by SSE-C or SSE-KMS
/// have ETags that are not an MD5 digest of their object data" (S3 API Reference, Object:
/// ETag). On AWS it differs between an object and each copy of it; here it is new for every
/// write, keeping the `-<parts>` suffix of a multipart upload.
fn written_etag(
    s: &mut State,
    digest: String,
    encryption: Option<&ObjectEncryption>,
    parts: usize,
) -> String {
    if !encryption.is_some_and(ObjectEncryption::is_kms) {
        return digest;
    }
    let id = next_id(s);
    let etag = md5_hex(format!("kms write {id} {digest}").as_bytes());
    if parts > 0 {
        format!("{etag}-{parts}")
    } else {
        etag
    }
}

/// A full-object checksum of `data`, base64, as S3 computes it ("Checking object
/// integrity"): CRC64NVME (CRC-64/NVME) and CRC32 (CRC-32/ISO-HDLC) are modelled.
pub fn checksum_of(algorithm: &str, data: &[u8]) -> String {
    let bytes = match algorithm {
        "CRC64NVME" => crc_reflected(data, 0x9A6C_9329_AC4B_C9B5, 64)
            .to_be_bytes()
            .to_vec(),
        "CRC32" => (crc_reflected(data, 0xEDB8_8320, 32) as u32)
            .to_be_bytes()
            .to_vec(),
        other => panic!("the fake computes CRC64NVME and CRC32 checksums, not {other}"),
    };
    aws_smithy_types::base64::encode(bytes)
}

/// A reflected CRC with all-ones initial value and final XOR (both CRC-64/NVME and
/// CRC-32/ISO-HDLC are of this form), bit by bit: the fake's objects are small.
fn crc_reflected(data: &[u8], poly: u64, width: u32) -> u64 {
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    let mut crc = mask;
    for &b in data {
        crc ^= u64::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ poly
            } else {
                crc >> 1
            };
        }
    }
    (crc ^ mask) & mask
}

/// EnterStandby and ExitStandby take 1 to 20 instance ids a call (AutoScaling API Reference,
/// EnterStandby: InstanceIds "Maximum number of 20 items").
fn check_standby_batch(operation: &str, ids: &[String]) -> PortResult<()> {
    if ids.is_empty() || ids.len() > 20 {
        return Err(PortError::failed(
            operation,
            format!(
                "ValidationError: {} instance ids; the call takes 1 to 20",
                ids.len()
            ),
        ));
    }
    Ok(())
}

fn group_mut<'a>(s: &'a mut State, name: &str) -> PortResult<&'a mut FakeGroup> {
    s.groups.get_mut(name).ok_or_else(|| PortError::NotFound {
        what: format!("Auto Scaling group {name}"),
    })
}

fn snapshot_view(id: &str, sn: &FakeSnapshot) -> DbSnapshot {
    DbSnapshot {
        id: id.to_string(),
        instance_id: sn.instance_id.clone(),
        status: if Instant::now() >= sn.ready_at {
            SnapshotStatus::Available
        } else {
            SnapshotStatus::Creating
        },
        tags: sn.tags.clone(),
        // SnapshotCreateTime is reported once RDS has taken the snapshot's point (the
        // request's moment), long before the snapshot is available.
        created: (Instant::now() >= sn.point_at).then_some(sn.created),
    }
}

/// A DB instance CloudFormation's AWS::RDS::DBInstance restores to a point in time: with
/// `SourceDBInstanceIdentifier` and `RestoreTime` (or `UseLatestRestorableTime`) the RDS
/// resource handler calls RestoreDBInstanceToPointInTime. Some((how, data version at that
/// time)), None for any other instance (a new one, a snapshot's, a read replica — not
/// modelled), or RDS's refusal: `PointInTimeRestoreNotEnabled` for a source without automated
/// backups (BackupRetentionPeriod 0), `InvalidRestoreFault` for a time after the source's
/// `LatestRestorableTime` ("You can restore to any point in time before the time identified by
/// the LatestRestorableTime property", RestoreDBInstanceToPointInTime).
fn instance_point_in_time(
    s: &State,
    ev: &Evaluator,
    logical_id: &str,
    from_snapshot: bool,
    t: &Timings,
) -> Result<Option<(String, u64)>, String> {
    let prop = |p: &str| ev.property(logical_id, p);
    let (time, use_latest) = (
        prop("RestoreTime"),
        prop("UseLatestRestorableTime").as_deref() == Some("true"),
    );
    let Some(source_id) = prop("SourceDBInstanceIdentifier") else {
        return match time {
            Some(_) => Err("InvalidParameterCombination: RestoreTime needs a \
                 SourceDBInstanceIdentifier"
                .into()),
            None => Ok(None),
        };
    };
    if time.is_none() && !use_latest {
        return Ok(None);
    }
    if from_snapshot {
        return Err(
            "InvalidParameterCombination: DBSnapshotIdentifier cannot be given with \
             SourceDBInstanceIdentifier and RestoreTime"
                .into(),
        );
    }
    let source = s
        .dbs
        .get(&source_id)
        .ok_or_else(|| format!("DBInstanceNotFound: DBInstance {source_id} not found"))?;
    let Some(latest) = instance_restorable(source, aws_now(t), t) else {
        return Err(format!(
            "PointInTimeRestoreNotEnabled: SourceDBInstanceIdentifier {source_id} refers to a DB \
             instance with BackupRetentionPeriod equal to 0"
        ));
    };
    let at = match time {
        Some(_) if use_latest => {
            return Err(
                "InvalidParameterCombination: RestoreTime and UseLatestRestorableTime \
                 are exclusive"
                    .into(),
            )
        }
        Some(text) => chrono::DateTime::parse_from_rfc3339(&text)
            .map_err(|_| {
                format!("InvalidParameterValue: RestoreTime {text:?} is not ISO 8601 UTC")
            })?
            .with_timezone(&chrono::Utc),
        None => latest,
    };
    let earliest = source.writes.first().map(|(t, _)| *t).unwrap_or(latest);
    if at < earliest {
        return Err(format!(
            "InvalidRestoreFault: the restore time {} is before DB instance {source_id}'s \
             earliest restorable time {}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            earliest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    if at > latest {
        return Err(format!(
            "InvalidRestoreFault: the restore time {} is after DB instance {source_id}'s latest \
             restorable time {}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            latest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    Ok(Some((
        format!(
            "point-in-time restore of {source_id} at {}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        version_at(&source.writes, at),
    )))
}

/// A cluster as CloudFormation's AWS::RDS::DBCluster makes it: a copy-on-write (or full-copy)
/// restore of `SourceDBClusterIdentifier` at `RestoreToTime` (or its latest restorable time),
/// a restore of `SnapshotIdentifier`, or a new, empty cluster. The error is AWS's refusal.
fn new_cluster(
    s: &mut State,
    ev: &Evaluator,
    logical_id: &str,
    cluster_id: &str,
    t: &Timings,
) -> Result<FakeCluster, String> {
    if s.cluster_id_taken(cluster_id) {
        return Err(format!("DBClusterAlreadyExistsFault {cluster_id}"));
    }
    let now = aws_now(t);
    let prop = |p: &str| ev.property(logical_id, p);
    let engine = prop("Engine").unwrap_or_else(|| "aurora-postgresql".into());
    let mut cluster = FakeCluster {
        pending_status: DbStatus::Creating,
        ready_at: Instant::now(),
        engine,
        engine_mode: prop("EngineMode").unwrap_or_else(|| "provisioned".into()),
        deletion_protection: prop("DeletionProtection").as_deref() == Some("true"),
        tags: BTreeMap::new(),
        clone_group_id: None,
        writes: vec![(now, 0)],
        restored_from: None,
        pending_rename: None,
        pending_changes: Vec::new(),
    };
    if let Some(source_id) = prop("SourceDBClusterIdentifier") {
        let restore_type = prop("RestoreType").unwrap_or_else(|| "full-copy".into());
        let group_size = |s: &State, group: &Option<String>| {
            group.as_ref().map_or(1, |g| {
                s.clusters
                    .values()
                    .filter(|c| c.clone_group_id.as_ref() == Some(g))
                    .count()
            })
        };
        let source = s
            .clusters
            .get(&source_id)
            .ok_or_else(|| format!("DBClusterNotFoundFault: DBCluster {source_id} not found"))?;
        if source.ready_at > Instant::now() {
            return Err(format!(
                "InvalidDBClusterStateFault: DBCluster {source_id} is not available"
            ));
        }
        let latest = now - chrono::Duration::from_std(t.restorable_lag).unwrap_or_default();
        let use_latest = prop("UseLatestRestorableTime").as_deref() == Some("true");
        if restore_type == "copy-on-write" && prop("RestoreToTime").is_some() {
            // AWS: RestoreToTime "can't be specified if the RestoreType parameter is
            // copy-on-write".
            return Err(
                "InvalidParameterCombination: RestoreToTime cannot be given with RestoreType \
                 copy-on-write"
                    .into(),
            );
        }
        let at = match prop("RestoreToTime") {
            Some(_) if use_latest => {
                return Err("InvalidParameterCombination: RestoreToTime and \
                     UseLatestRestorableTime are exclusive"
                    .into())
            }
            Some(text) => chrono::DateTime::parse_from_rfc3339(&text)
                .map_err(|_| format!("InvalidParameterValue: RestoreToTime {text:?}"))?
                .with_timezone(&chrono::Utc),
            None if use_latest => latest,
            None => {
                return Err(
                    "InvalidParameterCombination: RestoreToTime or UseLatestRestorableTime \
                     is required"
                        .into(),
                )
            }
        };
        if at > latest {
            return Err(format!(
                "InvalidRestoreFault: the restore time {at} is later than DBCluster \
                 {source_id}'s latest restorable time {latest}"
            ));
        }
        cluster.writes = vec![(now, source.version_at(at))];
        cluster.engine = source.engine.clone();
        match restore_type.as_str() {
            "copy-on-write" => {
                if source.engine_mode == "serverless" {
                    return Err(format!(
                        "InvalidDBClusterStateFault: copy-on-write clones of Aurora Serverless \
                         v1 cluster {source_id} are not supported"
                    ));
                }
                if group_size(s, &source.clone_group_id) > MAX_CLONES {
                    return Err(format!(
                        "DBClusterQuotaExceededFault: {source_id} already has {MAX_CLONES} \
                         copy-on-write clones"
                    ));
                }
                let group = source
                    .clone_group_id
                    .clone()
                    .unwrap_or_else(|| format!("clone-group-{source_id}"));
                s.clusters
                    .get_mut(&source_id)
                    .expect("present")
                    .clone_group_id = Some(group.clone());
                cluster.clone_group_id = Some(group);
                cluster.restored_from = Some(format!(
                    "copy-on-write clone of {source_id} at {}",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ));
            }
            "full-copy" => {
                cluster.restored_from = Some(format!("full copy of {source_id} at {at}"));
            }
            other => return Err(format!("InvalidParameterValue: RestoreType {other}")),
        }
    } else if let Some(snapshot_id) = prop("SnapshotIdentifier") {
        let snapshot = s
            .cluster_snapshots
            .get(&snapshot_id)
            .filter(|sn| sn.ready_at <= Instant::now())
            .ok_or_else(|| {
                format!("DBClusterSnapshotNotFoundFault: {snapshot_id} not found or not available")
            })?;
        cluster.writes = vec![(now, snapshot.data_version)];
        cluster.restored_from = Some(format!("snapshot {snapshot_id}"));
    }
    Ok(cluster)
}

/// Renames as RDS performs them ("Renaming a DB instance", USER_RenameInstance; ModifyDBCluster
/// `NewDBClusterIdentifier`): the call returns at once, the database keeps answering to its
/// OLD identifier with status `renaming` (the new name only in PendingModifiedValues) for
/// minutes, then answers only to the new one. The new name is taken from the moment of the call.
impl State {
    /// Applies every rename whose time has come.
    fn settle_renames(&mut self, now: Instant) {
        let due: Vec<String> = self
            .dbs
            .iter()
            .filter(|(_, db)| db.pending_rename.is_some() && db.ready_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for old in due {
            let mut db = self.dbs.remove(&old).expect("present");
            let new = db.pending_rename.take().expect("pending");
            db.id = new.clone();
            self.dbs.insert(new, db);
        }
        let due: Vec<String> = self
            .clusters
            .iter()
            .filter(|(_, c)| c.pending_rename.is_some() && c.ready_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for old in due {
            let mut cluster = self.clusters.remove(&old).expect("present");
            let new = cluster.pending_rename.take().expect("pending");
            self.clusters.insert(new.clone(), cluster);
            // The instances stay members, under their own names.
            for db in self.dbs.values_mut() {
                if db.cluster.as_deref() == Some(old.as_str()) {
                    db.cluster = Some(new.clone());
                }
            }
        }
    }

    /// Notes which Auto Scaling instances serve as a snapshot is taken.
    fn note_serving(&mut self, snapshot_id: &str) {
        let serving = self
            .groups
            .values()
            .flat_map(|g| g.instances.iter())
            .filter(|i| {
                i.lifecycle_state == LifecycleState::InService || i.lifecycle_state.is_pending()
            })
            .map(|i| i.id.clone())
            .collect();
        self.serving_at_snapshots
            .push((snapshot_id.to_string(), serving));
    }

    /// An identifier in use, or promised to a rename in flight.
    fn db_id_taken(&self, id: &str) -> bool {
        self.dbs.contains_key(id)
            || self
                .dbs
                .values()
                .any(|db| db.pending_rename.as_deref() == Some(id))
    }

    fn cluster_id_taken(&self, id: &str) -> bool {
        self.clusters.contains_key(id)
            || self
                .clusters
                .values()
                .any(|c| c.pending_rename.as_deref() == Some(id))
    }
}

/// DB snapshots and DB cluster snapshots live in separate namespaces, with the same calls.
impl State {
    fn snapshot_map(&mut self, kind: DbKind) -> &mut BTreeMap<String, FakeSnapshot> {
        match kind {
            DbKind::Instance => &mut self.snapshots,
            DbKind::Cluster => &mut self.cluster_snapshots,
        }
    }

    fn snapshot_view_of(&mut self, kind: DbKind, id: &str) -> Option<DbSnapshot> {
        self.snapshot_map(kind)
            .get(id)
            .map(|sn| snapshot_view(id, sn))
    }

    /// Snapshots of the instance or cluster `source_id`.
    fn snapshots_of(&mut self, kind: DbKind, source_id: &str) -> Vec<DbSnapshot> {
        self.snapshot_map(kind)
            .iter()
            .filter(|(_, sn)| sn.instance_id == source_id)
            .map(|(id, sn)| snapshot_view(id, sn))
            .collect()
    }

    fn remove_snapshot(&mut self, kind: DbKind, id: &str) -> PortResult<()> {
        match self.snapshot_map(kind).remove(id) {
            Some(_) => Ok(()),
            None => Err(PortError::NotFound {
                what: format!("{} {id}", kind.snapshot_noun()),
            }),
        }
    }
}

/// The snapshot CloudFormation takes of a database it deletes, unless its DeletionPolicy says
/// otherwise (AWS's default for DB instances and clusters is Snapshot). Named as the RDS
/// resource handlers name it: `<stack>-snapshot-<logical id>-<12 random letters and digits>`,
/// lowercase, the stack and logical id shortened fairly past 255 characters
/// (`workflow::deletion::final_snapshot_prefix`); taken at AWS's time.
fn final_snapshot(
    s: &mut State,
    stack: &str,
    r: &FakeStackResource,
    kind: DbKind,
    tags: BTreeMap<String, String>,
    data_version: u64,
    t: &Timings,
) {
    if r.deletion_policy.as_deref().unwrap_or("Snapshot") != "Snapshot" {
        return;
    }
    // CloudFormation's random part: 12 letters and digits (seeded by its request token).
    let mut seed = next_id(s).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let random: String = (0..12)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
            alphabet[(seed % alphabet.len() as u64) as usize] as char
        })
        .collect();
    let id = format!(
        "{}{random}",
        crate::workflow::deletion::final_snapshot_prefix(stack, &r.logical_id)
    );
    let snapshot = FakeSnapshot {
        instance_id: r.physical_id.clone(),
        point_at: Instant::now(),
        ready_at: Instant::now(),
        tags,
        created: aws_now(t),
        data_version,
    };
    s.snapshot_map(kind).insert(id, snapshot);
}

fn next_id(s: &mut State) -> u64 {
    s.next_id += 1;
    s.next_id
}

/// `AWS::CloudFormation::Stack`.
const NESTED_STACK: &str = "AWS::CloudFormation::Stack";

/// The template a CreateStack names, as CloudFormation takes it: a `TemplateBody` of at most
/// 51,200 bytes; a `TemplateURL` naming an S3 object (of this account's S3) of at most 1 MB
/// ("CloudFormation quotas"; CreateStack, `TemplateBody` "Minimum length of 1. Maximum length
/// of 51200", `TemplateURL` "located in an Amazon S3 bucket").
fn template_from(s: &State, source: &TemplateSource) -> PortResult<String> {
    match source {
        TemplateSource::Body(body) if body.len() > TEMPLATE_BODY_MAX => Err(PortError::failed(
            "cloudformation:CreateStack",
            format!(
                "ValidationError: 1 validation error detected: Value at 'templateBody' failed to                  satisfy constraint: Member must have length less than or equal to                  {TEMPLATE_BODY_MAX}"
            ),
        )),
        TemplateSource::Body(body) => Ok(body.clone()),
        TemplateSource::Url(url) => template_from_url(s, url)
            .map_err(|e| PortError::failed("cloudformation:CreateStack", e)),
    }
}

/// The template at an S3 URL, or CloudFormation's ValidationError.
fn template_from_url(s: &State, url: &str) -> Result<String, String> {
    let Some((bucket, key)) = crate::ports::parse_s3_object_url(url) else {
        return Err(format!(
            "ValidationError: TemplateURL must be a supported URL ({url})"
        ));
    };
    let object = s
        .buckets
        .get(&bucket)
        .and_then(|b| b.current(&key))
        .ok_or_else(|| {
            format!("ValidationError: S3 error: Access Denied (no object {key} in bucket {bucket})")
        })?;
    if object.size() > TEMPLATE_URL_MAX as u64 {
        return Err(format!(
            "ValidationError: Template may not exceed {TEMPLATE_URL_MAX} bytes in size."
        ));
    }
    String::from_utf8(object.data.to_vec())
        .map_err(|_| "ValidationError: Template format error: not UTF-8".to_string())
}

/// The live stack named `name`, or whose stack id is `name` (CloudFormation takes either).
fn live_stack<'a>(s: &'a State, name: &str) -> Option<&'a FakeStack> {
    s.stacks
        .iter()
        .rev()
        .find(|st| !st.deleted && (st.info.name == name || st.info.id == name))
}

/// Materialises a template: each resource appears `stack_resource` after the previous one;
/// databases restore from `DBSnapshotIdentifier` (which must name an available snapshot).
fn instantiate(
    s: &mut State,
    request: &CreateStackRequest,
    body: &str,
    parent: Option<&str>,
    now: Instant,
    t: &Timings,
) -> PortResult<()> {
    let template = Template::parse(&request.name, body)
        .map_err(|e| PortError::failed("cloudformation:CreateStack", e.to_string()))?;
    let params = Evaluator::effective_parameters(&template, &request.parameters);
    for name in template.parameters().into_keys() {
        if !params.contains_key(&name) {
            return Err(PortError::failed(
                "cloudformation:CreateStack",
                format!("ValidationError: Parameters: [{name}] must have values"),
            ));
        }
    }
    let id = next_id(s);
    let stack_id = format!(
        "arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{}/{id:08x}",
        request.name
    );
    let mut refs = BTreeMap::new();
    let mut resources = Vec::new();
    let mut failure = None;
    let mut at = now;
    let mut last_ready = now;
    let logical_ids: Vec<(String, String)> = template.resource_types().into_iter().collect();
    for (logical_id, ty) in logical_ids {
        at += t.stack_resource;
        let ev = Evaluator {
            template: &template,
            parameters: &params,
            stack_name: &request.name,
            account_id: ACCOUNT,
            region: REGION,
            resource_refs: refs.clone(),
        };
        // A resource whose `Condition` is false is not created (CloudFormation "Conditions").
        let condition = template.value["Resources"][logical_id.as_str()]["Condition"].as_str();
        if condition.is_some_and(|c| ev.condition(c) == Some(false)) {
            at -= t.stack_resource;
            continue;
        }
        let suffix = format!("{id:04x}{}", next_id(s));
        let physical = match ty.as_str() {
            DB_INSTANCE => {
                let db_id = ev
                    .property(&logical_id, "DBInstanceIdentifier")
                    .unwrap_or_else(|| {
                        format!("{}-{}-{suffix}", request.name, logical_id.to_lowercase())
                    });
                let mut restored_from = ev.property(&logical_id, "DBSnapshotIdentifier");
                let mut data_version = 0;
                if let Some(snap) = &restored_from {
                    match s.snapshots.get(snap).filter(|sn| sn.ready_at <= now) {
                        Some(sn) => data_version = sn.data_version,
                        None => {
                            failure = Some(format!(
                                "{logical_id}: DBSnapshot {snap} not found or not available"
                            ));
                            break;
                        }
                    }
                }
                match instance_point_in_time(s, &ev, &logical_id, restored_from.is_some(), t) {
                    Ok(None) => {}
                    Ok(Some((from, version))) => {
                        restored_from = Some(from);
                        data_version = version;
                    }
                    Err(reason) => {
                        failure = Some(format!("{logical_id}: {reason}"));
                        break;
                    }
                }
                let backup_retention = ev
                    .property(&logical_id, "BackupRetentionPeriod")
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(1);
                if s.db_id_taken(&db_id) {
                    failure = Some(format!("{logical_id}: DBInstanceAlreadyExists {db_id}"));
                    break;
                }
                let engine = ev
                    .property(&logical_id, "Engine")
                    .unwrap_or_else(|| "mysql".into());
                let cluster = ev.property(&logical_id, "DBClusterIdentifier");
                if let Some(c) = &cluster {
                    if !s.clusters.contains_key(c) {
                        failure = Some(format!("{logical_id}: DBClusterNotFoundFault {c}"));
                        break;
                    }
                }
                let ready_at = at + t.db_create;
                last_ready = last_ready.max(ready_at);
                s.dbs.insert(
                    db_id.clone(),
                    FakeDb {
                        pending_status: DbStatus::Creating,
                        id: db_id.clone(),
                        deletion_protection: false,
                        engine,
                        ready_at,
                        restored_from,
                        tags: BTreeMap::new(),
                        cluster,
                        pending_rename: None,
                        pending_changes: Vec::new(),
                        writes: vec![(aws_now(t), data_version)],
                        backup_retention,
                    },
                );
                refs.insert(
                    format!("{logical_id}.Endpoint.Address"),
                    format!("{db_id}.fake.rds.amazonaws.com"),
                );
                db_id
            }
            DB_CLUSTER => {
                let cluster_id = ev
                    .property(&logical_id, "DBClusterIdentifier")
                    .unwrap_or_else(|| {
                        format!("{}-{}-{suffix}", request.name, logical_id.to_lowercase())
                    });
                match new_cluster(s, &ev, &logical_id, &cluster_id, t) {
                    Ok(mut cluster) => {
                        cluster.ready_at = at + t.db_create;
                        last_ready = last_ready.max(cluster.ready_at);
                        s.clusters.insert(cluster_id.clone(), cluster);
                    }
                    Err(reason) => {
                        failure = Some(format!("{logical_id}: {reason}"));
                        break;
                    }
                }
                for (attr, host) in [
                    ("Endpoint.Address", "cluster"),
                    ("ReadEndpoint.Address", "cluster-ro"),
                ] {
                    refs.insert(
                        format!("{logical_id}.{attr}"),
                        format!("{cluster_id}.{host}-fake.rds.amazonaws.com"),
                    );
                }
                cluster_id
            }
            BUCKET => {
                let name = ev.property(&logical_id, "BucketName").unwrap_or_else(|| {
                    format!("{}-{}-{suffix}", request.name, logical_id.to_lowercase())
                });
                if s.buckets.contains_key(&name) {
                    failure = Some(format!("{logical_id}: BucketAlreadyExists {name}"));
                    break;
                }
                s.buckets
                    .insert(name.clone(), FakeBucket::new(at, BTreeMap::new()));
                name
            }
            NESTED_STACK => {
                // CloudFormation creates the nested stack from its TemplateURL (read with the
                // caller's credentials, at most 1 MB), named `<parent>-<logical id>-<suffix>`,
                // with the parent's tags ("Working with nested stacks"; stack tags propagate to
                // nested stacks). Its physical id is its stack id.
                let url = ev.property(&logical_id, "TemplateURL").unwrap_or_default();
                let nested_body = match template_from_url(s, &url) {
                    Ok(b) => b,
                    Err(e) => {
                        failure = Some(format!("{logical_id}: {e}"));
                        break;
                    }
                };
                let mut parameters = BTreeMap::new();
                if let Some(given) = template.value["Resources"][logical_id.as_str()]["Properties"]
                    ["Parameters"]
                    .as_object()
                {
                    for (k, v) in given {
                        if let Some(Evaluated::Value(v)) = ev.eval(v) {
                            parameters.insert(k.clone(), crate::contract::scalar_to_string(&v));
                        }
                    }
                }
                let nested = CreateStackRequest {
                    name: format!("{}-{logical_id}-{}", request.name, suffix.to_uppercase()),
                    template: TemplateSource::Url(url),
                    parameters,
                    tags: request.tags.clone(),
                    capabilities: request.capabilities.clone(),
                    client_token: String::new(),
                };
                let parent_id = stack_id.clone();
                if let Err(e) = instantiate(s, &nested, &nested_body, Some(&parent_id), at, t) {
                    failure = Some(format!("{logical_id}: {e}"));
                    break;
                }
                let child = s.stacks.last().expect("just created");
                if let Some(reason) = &child.failure {
                    failure = Some(format!("{logical_id}: nested stack failed: {reason}"));
                    break;
                }
                last_ready = last_ready.max(child.complete_at);
                for (k, v) in &child.info.outputs {
                    refs.insert(format!("{logical_id}.Outputs.{k}"), v.clone());
                }
                child.info.id.clone()
            }
            ASG => {
                let name = ev
                    .property(&logical_id, "AutoScalingGroupName")
                    .unwrap_or_else(|| format!("{}-{logical_id}-{suffix}", request.name));
                let num = |p: &str, d: i32| {
                    ev.property(&logical_id, p)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(d)
                };
                let min = num("MinSize", 0);
                let max = num("MaxSize", 1);
                let desired = num("DesiredCapacity", min);
                let mut instances = Vec::new();
                for _ in 0..desired {
                    let n = next_id(s);
                    instances.push(AsgInstance {
                        id: format!("i-{n:017x}"),
                        lifecycle_state: LifecycleState::InService,
                        health_status: HealthStatus::Healthy,
                    });
                }
                s.groups.insert(
                    name.clone(),
                    FakeGroup {
                        min,
                        max,
                        desired,
                        instances,
                        ..FakeGroup::default()
                    },
                );
                name
            }
            crate::workflow::dynamodb::TABLE_TYPE => {
                let name = ev
                    .property(&logical_id, "TableName")
                    .unwrap_or_else(|| format!("{}-{logical_id}-{suffix}", request.name));
                let spec = match template.value["Resources"][logical_id.as_str()]
                    .get("Properties")
                    .and_then(|p| ev.eval(p))
                {
                    Some(Evaluated::Value(p)) => {
                        crate::workflow::dynamodb::spec_from_template(&name, &p)
                    }
                    _ => Err(format!("table {name}: Properties not known here")),
                };
                match spec.and_then(|spec| s.tables.create_from_stack(spec, &request.tags, at)) {
                    Ok(active_at) => last_ready = last_ready.max(active_at),
                    Err(why) => {
                        failure = Some(format!(
                            "{logical_id}: Resource handler returned message: \"{why}\""
                        ));
                        break;
                    }
                }
                refs.insert(format!("{logical_id}.Arn"), dynamodb::arn(&name));
                name
            }
            other => {
                // A name another resource holds fails the resource: CloudFormation's handlers
                // answer "<name> already exists" (HandlerErrorCode AlreadyExists) and the stack
                // rolls back.
                let names = fixednames::fixed_names(&ev, &|id| id == logical_id);
                if let Some(taken) = names.iter().find(|n| s.named.contains_key(n.key())) {
                    failure = Some(format!(
                        "{logical_id}: Resource handler returned message: \"{} {} already \
                         exists\" (HandlerErrorCode: AlreadyExists)",
                        taken.property, taken.name
                    ));
                    break;
                }
                let physical = format!(
                    "{}-{}-{suffix}",
                    other.rsplit("::").next().unwrap_or("res").to_lowercase(),
                    logical_id
                );
                s.generic.insert(physical.clone(), other.to_string());
                for n in names {
                    s.named.insert(n.key().to_string(), physical.clone());
                }
                physical
            }
        };
        refs.insert(logical_id.clone(), physical.clone());
        if ty == "AWS::ElasticLoadBalancingV2::LoadBalancer" {
            // The hosted zone of Application Load Balancers in us-east-1 ("Elastic Load
            // Balancing endpoints and quotas"): what an alias record to one names.
            refs.insert(
                format!("{logical_id}.CanonicalHostedZoneID"),
                "Z35SXDOTRQ7X7K".into(),
            );
        }
        for attr in ["DNSName", "Arn", "Endpoint.Port"] {
            refs.entry(format!("{logical_id}.{attr}"))
                .or_insert_with(|| format!("{physical}.{attr}.fake"));
        }
        let deletion_policy = template
            .resources()
            .and_then(|r| r.get(&logical_id))
            .and_then(|r| r.get("DeletionPolicy"))
            .and_then(|p| p.as_str())
            .map(str::to_string);
        resources.push(FakeStackResource {
            logical_id,
            resource_type: ty,
            physical_id: physical,
            created_at: at,
            deletion_policy,
            delete_status: None,
        });
    }
    let ev = Evaluator {
        template: &template,
        parameters: &params,
        stack_name: &request.name,
        account_id: ACCOUNT,
        region: REGION,
        resource_refs: refs,
    };
    let mut outputs = BTreeMap::new();
    if let Some(outs) = template.value.get("Outputs").and_then(|o| o.as_object()) {
        for (name, out) in outs {
            if let Some(Evaluated::Value(v)) = out.get("Value").and_then(|v| ev.eval(v)) {
                outputs.insert(name.clone(), crate::contract::scalar_to_string(&v));
            }
        }
    }
    let decls = template.parameters();
    let shown = params
        .iter()
        .map(|(k, v)| {
            let masked = decls.get(k).is_some_and(|d| d.no_echo);
            (
                k.clone(),
                if masked {
                    "****".to_string()
                } else {
                    v.clone()
                },
            )
        })
        .collect();
    s.stacks.push(FakeStack {
        info: StackInfo {
            name: request.name.clone(),
            id: stack_id,
            status: StackStatus::InProgress("CREATE_IN_PROGRESS".into()),
            status_reason: None,
            parameters: shown,
            outputs,
            tags: request.tags.clone(),
            capabilities: request.capabilities.clone(),
            created: Some(FakeClock.now()),
            termination_protection: false,
        },
        parent: parent.map(str::to_string),
        body: body.to_string(),
        resources,
        complete_at: last_ready.max(at + t.stack_resource),
        failure,
        deleted: false,
        delete_failed: None,
        client_token: request.client_token.clone(),
    });
    Ok(())
}

#[async_trait]
impl Stacks for FakeAws {
    async fn describe_stack(&self, name: &str) -> PortResult<Option<StackInfo>> {
        self.call("cloudformation:DescribeStacks", false).await?;
        let s = self.lock();
        Ok(live_stack(&s, name).map(|st| self.stack_view(st)))
    }

    async fn stacks_with_tag(&self, key: &str) -> PortResult<Vec<StackInfo>> {
        self.call("cloudformation:DescribeStacks", false).await?;
        let s = self.lock();
        Ok(s.stacks
            .iter()
            .filter(|st| !st.deleted && st.parent.is_none() && st.info.tags.contains_key(key))
            .map(|st| self.stack_view(st))
            .collect())
    }

    async fn find_stacks_by_tag(&self, key: &str, value: &str) -> PortResult<Vec<StackInfo>> {
        self.call("cloudformation:DescribeStacks", false).await?;
        let s = self.lock();
        Ok(s.stacks
            .iter()
            .filter(|st| {
                !st.deleted
                    && st.parent.is_none()
                    && st.info.tags.get(key).map(String::as_str) == Some(value)
            })
            .map(|st| self.stack_view(st))
            .collect())
    }

    async fn template_body(&self, stack: &str) -> PortResult<String> {
        self.call("cloudformation:GetTemplate", false).await?;
        let s = self.lock();
        live_stack(&s, stack)
            .map(|st| st.body.clone())
            .ok_or_else(|| PortError::NotFound {
                what: format!("stack {stack}"),
            })
    }

    async fn resources(&self, stack: &str) -> PortResult<Vec<StackResource>> {
        self.call("cloudformation:ListStackResources", false)
            .await?;
        let now = Instant::now();
        let s = self.lock();
        let st = live_stack(&s, stack).ok_or_else(|| PortError::NotFound {
            what: format!("stack {stack}"),
        })?;
        Ok(st
            .resources
            .iter()
            .map(|r| {
                let created = r.created_at <= now;
                StackResource {
                    logical_id: r.logical_id.clone(),
                    physical_id: created.then(|| r.physical_id.clone()),
                    resource_type: r.resource_type.clone(),
                    status: r.delete_status.clone().unwrap_or(if created {
                        ResourceStatus::CreateComplete
                    } else {
                        ResourceStatus::CreateInProgress
                    }),
                }
            })
            .collect())
    }

    async fn create_stack(&self, request: &CreateStackRequest) -> PortResult<String> {
        self.call("cloudformation:CreateStack", true).await?;
        let mut s = self.lock();
        if let Some(existing) = s
            .stacks
            .iter()
            .find(|st| !st.deleted && st.info.name == request.name)
        {
            // A repeated request with the same token is the same request.
            if !request.client_token.is_empty() && existing.client_token == request.client_token {
                return Ok(existing.info.id.clone());
            }
            return Err(PortError::AlreadyExists {
                what: format!("stack {}", request.name),
            });
        }
        let body = template_from(&s, &request.template)?;
        let url = match &request.template {
            TemplateSource::Url(url) => Some(url.clone()),
            TemplateSource::Body(_) => None,
        };
        instantiate(&mut s, request, &body, None, Instant::now(), &self.timings)?;
        s.create_stack_sources.push((request.name.clone(), url));
        // The root stack is pushed after its nested stacks.
        Ok(s.stacks.last().expect("just created").info.id.clone())
    }

    async fn set_termination_protection(&self, name: &str, enabled: bool) -> PortResult<()> {
        self.call("cloudformation:UpdateTerminationProtection", true)
            .await?;
        let mut s = self.lock();
        let stack = s
            .stacks
            .iter_mut()
            .rev()
            .find(|st| !st.deleted && st.info.name == name)
            .ok_or_else(|| PortError::NotFound {
                what: format!("stack {name}"),
            })?;
        stack.info.termination_protection = enabled;
        Ok(())
    }

    /// Deletes each resource by the physical id recorded at creation — like CloudFormation,
    /// which does not follow renames. A protected database or a non-empty bucket fails the
    /// delete (DELETE_FAILED); a retry may then retain them.
    async fn delete_stack(&self, name: &str, retain: &[String]) -> PortResult<()> {
        self.call("cloudformation:DeleteStack", true).await?;
        let mut guard = self.lock();
        let s = &mut *guard;
        let Some(index) = s
            .stacks
            .iter()
            .rposition(|st| !st.deleted && st.info.name == name)
        else {
            return Ok(()); // AWS answers success for a stack that is not there
        };
        if s.stacks[index].info.termination_protection {
            return Err(PortError::failed(
                "cloudformation:DeleteStack",
                format!(
                    "ValidationError: Stack [{name}] cannot be deleted while TerminationProtection \
                     is enabled"
                ),
            ));
        }
        if !retain.is_empty() && s.stacks[index].delete_failed.is_none() {
            return Err(PortError::failed(
                "cloudformation:DeleteStack",
                "ValidationError: RetainResources is only allowed for stacks in DELETE_FAILED",
            ));
        }
        if let Some(r) = s.stacks[index].resources.iter().find(|r| {
            retain.contains(&r.logical_id)
                && r.delete_status == Some(ResourceStatus::DeleteComplete)
        }) {
            return Err(PortError::failed(
                "cloudformation:DeleteStack",
                format!(
                    "ValidationError: {} is already deleted and cannot be retained",
                    r.logical_id
                ),
            ));
        }
        let mut failed = Vec::new();
        let resources = s.stacks[index].resources.clone();
        // DeletionPolicy Retain / RetainExceptOnCreate: CloudFormation skips the resource
        // (DELETE_SKIPPED) and leaves it as it is (User Guide, "DeletionPolicy attribute").
        let kept = |r: &FakeStackResource| {
            retain.contains(&r.logical_id)
                || matches!(
                    r.deletion_policy.as_deref(),
                    Some("Retain" | "RetainExceptOnCreate")
                )
        };
        for r in resources.iter().rev() {
            if kept(r) {
                continue;
            }
            match r.resource_type.as_str() {
                DB_INSTANCE => match s.dbs.get(&r.physical_id) {
                    // A protected database, or one mid-rename (InvalidDBInstanceState).
                    Some(db) if db.deletion_protection || db.pending_rename.is_some() => {
                        failed.push(r.logical_id.clone())
                    }
                    Some(_) => {
                        let db = s.dbs.remove(&r.physical_id).expect("present");
                        // A cluster's instance has no snapshot of its own: the cluster's is it.
                        if db.cluster.is_none() {
                            final_snapshot(s, name, r, DbKind::Instance, db.tags, 0, &self.timings);
                        }
                    }
                    None => {}
                },
                DB_CLUSTER => match s.clusters.get(&r.physical_id) {
                    Some(c) if c.deletion_protection || c.pending_rename.is_some() => {
                        failed.push(r.logical_id.clone())
                    }
                    Some(_)
                        if s.dbs
                            .values()
                            .any(|d| d.cluster.as_ref() == Some(&r.physical_id)) =>
                    {
                        // AWS refuses to delete a cluster that still has instances.
                        failed.push(r.logical_id.clone())
                    }
                    Some(_) => {
                        let cluster = s.clusters.remove(&r.physical_id).expect("present");
                        let version = cluster.version();
                        final_snapshot(
                            s,
                            name,
                            r,
                            DbKind::Cluster,
                            cluster.tags,
                            version,
                            &self.timings,
                        );
                    }
                    None => {}
                },
                BUCKET => match s.buckets.get(&r.physical_id) {
                    Some(b) if !b.is_empty() => failed.push(r.logical_id.clone()),
                    Some(_) => {
                        s.buckets.remove(&r.physical_id);
                    }
                    None => {}
                },
                ASG => {
                    s.groups.remove(&r.physical_id);
                }
                crate::workflow::dynamodb::TABLE_TYPE => s.tables.remove(&r.physical_id),
                NESTED_STACK => {
                    // The nested stack is deleted with its parent; the fake models nested
                    // stacks of resources it does not track in detail (groups, buckets and
                    // generic resources are removed; databases are not expected there).
                    if let Some(nested) = s
                        .stacks
                        .iter()
                        .position(|st| !st.deleted && st.info.id == r.physical_id)
                    {
                        let inner = s.stacks[nested].resources.clone();
                        for x in inner {
                            s.generic.remove(&x.physical_id);
                            s.named.retain(|_, holder| holder != &x.physical_id);
                            s.groups.remove(&x.physical_id);
                            if s.buckets.get(&x.physical_id).is_some_and(|b| b.is_empty()) {
                                s.buckets.remove(&x.physical_id);
                            }
                        }
                        s.stacks[nested].deleted = true;
                    }
                }
                // An AWS::KMS::Key is not removed at once: CloudFormation schedules its
                // deletion (PendingWindowInDays, 7-30 days), and a key pending deletion cannot
                // be used to decrypt (KMS Developer Guide, "Deleting AWS KMS keys") — for what
                // it encrypted, gone from that moment. The fake removes it.
                _ => {
                    s.generic.remove(&r.physical_id);
                    s.named.retain(|_, holder| holder != &r.physical_id);
                }
            }
        }
        let stack = &mut s.stacks[index];
        for r in &mut stack.resources {
            if kept(r) {
                r.delete_status = Some(ResourceStatus::DeleteSkipped);
            } else if r.delete_status != Some(ResourceStatus::DeleteComplete) {
                let failed_here = failed.contains(&r.logical_id);
                r.delete_status = Some(if failed_here {
                    ResourceStatus::DeleteFailed
                } else {
                    ResourceStatus::DeleteComplete
                });
            }
        }
        if failed.is_empty() {
            stack.deleted = true;
            stack.delete_failed = None;
        } else {
            stack.delete_failed = Some(format!(
                "The following resource(s) failed to delete: [{}]",
                failed.join(", ")
            ));
        }
        Ok(())
    }
}

impl FakeAws {
    /// A rename called and not started yet: the database still says `available`
    /// (`Timings::db_rename_starts`).
    fn rename_not_started(
        &self,
        pending: &Option<String>,
        ready_at: Instant,
        now: Instant,
    ) -> bool {
        let called = ready_at.checked_sub(self.timings.db_rename);
        pending.is_some() && called.is_some_and(|at| now < at + self.timings.db_rename_starts)
    }
}

#[async_trait]
impl Databases for FakeAws {
    async fn describe_instance(&self, id: &str) -> PortResult<Option<DbInstance>> {
        self.call("rds:DescribeDBInstances", false).await?;
        let now = Instant::now();
        let s = self.lock();
        Ok(s.dbs.get(id).map(|db| DbInstance {
            id: db.id.clone(),
            status: if now >= db.ready_at
                || self.rename_not_started(&db.pending_rename, db.ready_at, now)
            {
                DbStatus::Available
            } else {
                db.pending_status.clone()
            },
            pending_rename: db.pending_rename.clone(),
            pending_changes: db.pending_changes.clone(),
            engine: db.engine.clone(),
            endpoint: Some(format!("{}.fake.rds.amazonaws.com", db.id)),
            deletion_protection: db.deletion_protection,
            tags: db.tags.clone(),
            backup_retention_period: db.backup_retention,
            latest_restorable_time: (now >= db.ready_at)
                .then(|| instance_restorable(db, aws_now(&self.timings), &self.timings))
                .flatten(),
        }))
    }

    async fn create_snapshot(
        &self,
        instance_id: &str,
        snapshot_id: &str,
        tags: &BTreeMap<String, String>,
    ) -> PortResult<()> {
        self.call("rds:CreateDBSnapshot", true).await?;
        let now = Instant::now();
        let mut s = self.lock();
        let version = match s.dbs.get(instance_id) {
            Some(db) if db.ready_at <= now => db.writes.last().map_or(0, |(_, v)| *v),
            _ => {
                return Err(PortError::failed(
                    "rds:CreateDBSnapshot",
                    format!("InvalidDBInstanceState: {instance_id} is not available"),
                ))
            }
        };
        if s.snapshots.contains_key(snapshot_id) {
            return Err(PortError::AlreadyExists {
                what: format!("DB snapshot {snapshot_id}"),
            });
        }
        s.note_serving(snapshot_id);
        s.snapshots.insert(
            snapshot_id.to_string(),
            FakeSnapshot {
                instance_id: instance_id.to_string(),
                point_at: now + self.timings.snapshot_point.min(self.timings.snapshot),
                ready_at: now + self.timings.snapshot,
                tags: tags.clone(),
                created: aws_now(&self.timings),
                data_version: version,
            },
        );
        Ok(())
    }

    async fn describe_snapshot(&self, id: &str) -> PortResult<Option<DbSnapshot>> {
        self.call("rds:DescribeDBSnapshots", false).await?;
        Ok(self.lock().snapshot_view_of(DbKind::Instance, id))
    }

    async fn snapshots_of_instance(&self, instance_id: &str) -> PortResult<Vec<DbSnapshot>> {
        self.call("rds:DescribeDBSnapshots", false).await?;
        Ok(self.lock().snapshots_of(DbKind::Instance, instance_id))
    }

    async fn instances_tagged(&self, key: &str, value: &str) -> PortResult<Vec<String>> {
        self.call("rds:DescribeDBInstances", false).await?;
        Ok(self
            .lock()
            .dbs
            .iter()
            .filter(|(_, db)| db.tags.get(key).map(String::as_str) == Some(value))
            .map(|(id, _)| id.clone())
            .collect())
    }

    async fn rename_instance(&self, id: &str, new_id: &str) -> PortResult<()> {
        self.call("rds:ModifyDBInstance", true).await?;
        let now = Instant::now();
        let mut s = self.lock();
        if s.db_id_taken(new_id) {
            return Err(PortError::AlreadyExists {
                what: format!("database {new_id}"),
            });
        }
        let db = match s.dbs.get_mut(id) {
            Some(db) if db.ready_at <= now => db,
            Some(db) => {
                return Err(PortError::failed(
                    "rds:ModifyDBInstance",
                    format!(
                        "InvalidDBInstanceState: {id} is {}, not available",
                        db.pending_status
                    ),
                ))
            }
            None => {
                return Err(PortError::NotFound {
                    what: format!("database {id}"),
                })
            }
        };
        // Still under its old identifier until the rename is done (see `settle_renames`).
        db.pending_status = DbStatus::Renaming;
        db.pending_rename = Some(new_id.to_string());
        db.ready_at = now + self.timings.db_rename;
        drop(s);
        self.answer("rds:ModifyDBInstance")
    }

    async fn set_deletion_protection(&self, id: &str, enabled: bool) -> PortResult<()> {
        self.call("rds:ModifyDBInstance", true).await?;
        let mut s = self.lock();
        let db = s.dbs.get_mut(id).ok_or_else(|| PortError::NotFound {
            what: format!("database {id}"),
        })?;
        db.deletion_protection = enabled;
        Ok(())
    }

    async fn tag_instance(&self, id: &str, tags: &BTreeMap<String, String>) -> PortResult<()> {
        self.call("rds:AddTagsToResource", true).await?;
        let mut s = self.lock();
        let db = s.dbs.get_mut(id).ok_or_else(|| PortError::NotFound {
            what: format!("database {id}"),
        })?;
        db.tags.extend(tags.clone());
        Ok(())
    }

    async fn delete_snapshot(&self, id: &str) -> PortResult<()> {
        self.call("rds:DeleteDBSnapshot", true).await?;
        self.lock().remove_snapshot(DbKind::Instance, id)
    }

    async fn describe_cluster(&self, id: &str) -> PortResult<Option<DbCluster>> {
        self.call("rds:DescribeDBClusters", false).await?;
        let now = Instant::now();
        let s = self.lock();
        Ok(s.clusters.get(id).map(|c| {
            let available = now >= c.ready_at;
            let aws_time = aws_now(&self.timings);
            DbCluster {
                id: id.to_string(),
                status: if available || self.rename_not_started(&c.pending_rename, c.ready_at, now)
                {
                    DbStatus::Available
                } else {
                    c.pending_status.clone()
                },
                pending_rename: c.pending_rename.clone(),
                pending_changes: c.pending_changes.clone(),
                engine: c.engine.clone(),
                engine_mode: c.engine_mode.clone(),
                latest_restorable_time: available.then(|| {
                    aws_time
                        - chrono::Duration::from_std(self.timings.restorable_lag)
                            .unwrap_or_default()
                }),
                // Like an HTTP Date header: whole seconds.
                server_time: chrono::DateTime::from_timestamp(aws_time.timestamp(), 0),
                endpoint: Some(format!("{id}.cluster-fake.rds.amazonaws.com")),
                clone_group_id: c.clone_group_id.clone(),
                members: s
                    .dbs
                    .values()
                    .filter(|d| d.cluster.as_deref() == Some(id))
                    .map(|d| d.id.clone())
                    .collect(),
                backup_retention_period: 1,
                deletion_protection: c.deletion_protection,
                tags: c.tags.clone(),
            }
        }))
    }

    async fn clusters_in_clone_group(&self, clone_group_id: &str) -> PortResult<usize> {
        self.call("rds:DescribeDBClusters", false).await?;
        Ok(self
            .lock()
            .clusters
            .values()
            .filter(|c| c.clone_group_id.as_deref() == Some(clone_group_id))
            .count())
    }

    async fn create_cluster_snapshot(
        &self,
        cluster_id: &str,
        snapshot_id: &str,
        tags: &BTreeMap<String, String>,
    ) -> PortResult<()> {
        self.call("rds:CreateDBClusterSnapshot", true).await?;
        let now = Instant::now();
        let mut s = self.lock();
        let version = match s.clusters.get(cluster_id) {
            Some(c) if c.ready_at <= now => c.version(),
            _ => {
                return Err(PortError::failed(
                    "rds:CreateDBClusterSnapshot",
                    format!("InvalidDBClusterStateFault: {cluster_id} is not available"),
                ))
            }
        };
        if s.cluster_snapshots.contains_key(snapshot_id) {
            return Err(PortError::AlreadyExists {
                what: format!("DB cluster snapshot {snapshot_id}"),
            });
        }
        s.note_serving(snapshot_id);
        s.cluster_snapshots.insert(
            snapshot_id.to_string(),
            FakeSnapshot {
                instance_id: cluster_id.to_string(),
                point_at: now + self.timings.snapshot_point.min(self.timings.snapshot),
                ready_at: now + self.timings.snapshot,
                tags: tags.clone(),
                created: aws_now(&self.timings),
                data_version: version,
            },
        );
        Ok(())
    }

    async fn describe_cluster_snapshot(&self, id: &str) -> PortResult<Option<DbSnapshot>> {
        self.call("rds:DescribeDBClusterSnapshots", false).await?;
        Ok(self.lock().snapshot_view_of(DbKind::Cluster, id))
    }

    async fn delete_cluster_snapshot(&self, id: &str) -> PortResult<()> {
        self.call("rds:DeleteDBClusterSnapshot", true).await?;
        self.lock().remove_snapshot(DbKind::Cluster, id)
    }

    async fn snapshots_of_cluster(&self, cluster_id: &str) -> PortResult<Vec<DbSnapshot>> {
        self.call("rds:DescribeDBClusterSnapshots", false).await?;
        Ok(self.lock().snapshots_of(DbKind::Cluster, cluster_id))
    }

    async fn clusters_tagged(&self, key: &str, value: &str) -> PortResult<Vec<String>> {
        self.call("rds:DescribeDBClusters", false).await?;
        Ok(self
            .lock()
            .clusters
            .iter()
            .filter(|(_, c)| c.tags.get(key).map(String::as_str) == Some(value))
            .map(|(id, _)| id.clone())
            .collect())
    }

    async fn rename_cluster(&self, id: &str, new_id: &str) -> PortResult<()> {
        self.call("rds:ModifyDBCluster", true).await?;
        let now = Instant::now();
        let mut s = self.lock();
        if s.cluster_id_taken(new_id) {
            return Err(PortError::AlreadyExists {
                what: format!("DB cluster {new_id}"),
            });
        }
        let cluster = match s.clusters.get_mut(id) {
            Some(c) if c.ready_at <= now => c,
            Some(c) => {
                return Err(PortError::failed(
                    "rds:ModifyDBCluster",
                    format!(
                        "InvalidDBClusterStateFault: {id} is {}, not available",
                        c.pending_status
                    ),
                ))
            }
            None => {
                return Err(PortError::NotFound {
                    what: format!("DB cluster {id}"),
                })
            }
        };
        // Still under its old identifier until the rename is done (see `settle_renames`).
        cluster.pending_status = DbStatus::Renaming;
        cluster.pending_rename = Some(new_id.to_string());
        cluster.ready_at = now + self.timings.db_rename;
        drop(s);
        self.answer("rds:ModifyDBCluster")
    }

    async fn set_cluster_deletion_protection(&self, id: &str, enabled: bool) -> PortResult<()> {
        self.call("rds:ModifyDBCluster", true).await?;
        let mut s = self.lock();
        let cluster = s.clusters.get_mut(id).ok_or_else(|| PortError::NotFound {
            what: format!("DB cluster {id}"),
        })?;
        cluster.deletion_protection = enabled;
        Ok(())
    }

    async fn tag_cluster(&self, id: &str, tags: &BTreeMap<String, String>) -> PortResult<()> {
        self.call("rds:AddTagsToResource", true).await?;
        let mut s = self.lock();
        let cluster = s.clusters.get_mut(id).ok_or_else(|| PortError::NotFound {
            what: format!("DB cluster {id}"),
        })?;
        cluster.tags.extend(tags.clone());
        Ok(())
    }

    async fn delete_cluster(&self, id: &str) -> PortResult<()> {
        self.call("rds:DeleteDBCluster", true).await?;
        let mut s = self.lock();
        match s.clusters.get(id) {
            None => Err(PortError::NotFound {
                what: format!("DB cluster {id}"),
            }),
            Some(c) if c.deletion_protection => Err(PortError::failed(
                "rds:DeleteDBCluster",
                format!("InvalidParameterCombination: {id} has deletion protection enabled"),
            )),
            Some(c) if c.pending_rename.is_some() => Err(PortError::failed(
                "rds:DeleteDBCluster",
                format!("InvalidDBClusterStateFault: {id} is renaming"),
            )),
            Some(_) if s.dbs.values().any(|d| d.cluster.as_deref() == Some(id)) => {
                Err(PortError::failed(
                    "rds:DeleteDBCluster",
                    format!("InvalidDBClusterStateFault: cluster {id} still contains DB instances"),
                ))
            }
            Some(_) => {
                s.clusters.remove(id);
                Ok(())
            }
        }
    }

    async fn untag(&self, kind: DbKind, id: &str, keys: &[String]) -> PortResult<()> {
        self.call("rds:RemoveTagsFromResource", true).await?;
        let mut s = self.lock();
        let tags = match kind {
            DbKind::Instance => s.dbs.get_mut(id).map(|db| &mut db.tags),
            DbKind::Cluster => s.clusters.get_mut(id).map(|c| &mut c.tags),
        }
        .ok_or_else(|| PortError::NotFound {
            what: format!("database {id}"),
        })?;
        for k in keys {
            tags.remove(k);
        }
        Ok(())
    }

    async fn delete_instance(&self, id: &str) -> PortResult<()> {
        self.call("rds:DeleteDBInstance", true).await?;
        let mut s = self.lock();
        match s.dbs.get(id) {
            None => Err(PortError::NotFound {
                what: format!("database {id}"),
            }),
            Some(db) if db.deletion_protection => Err(PortError::failed(
                "rds:DeleteDBInstance",
                format!("InvalidParameterCombination: {id} has deletion protection enabled"),
            )),
            Some(db) if db.pending_rename.is_some() => Err(PortError::failed(
                "rds:DeleteDBInstance",
                format!("InvalidDBInstanceState: {id} is renaming"),
            )),
            Some(_) => {
                s.dbs.remove(id);
                Ok(())
            }
        }
    }
}

#[async_trait]
impl Scaling for FakeAws {
    async fn describe_group(&self, name: &str) -> PortResult<Option<AsgInfo>> {
        self.call("autoscaling:DescribeAutoScalingGroups", false)
            .await?;
        Ok(self.group(name))
    }

    async fn update_sizes(
        &self,
        name: &str,
        min_size: Option<i32>,
        max_size: Option<i32>,
        desired: Option<i32>,
    ) -> PortResult<()> {
        self.call("autoscaling:UpdateAutoScalingGroup", true)
            .await?;
        let mut s = self.lock();
        let g = group_mut(&mut s, name)?;
        let (min, max) = (min_size.unwrap_or(g.min), max_size.unwrap_or(g.max));
        let want = desired.unwrap_or(g.desired);
        // AWS: MinSize <= DesiredCapacity <= MaxSize after the update, or ValidationError.
        if min > max || want < min || want > max {
            return Err(PortError::failed(
                "autoscaling:UpdateAutoScalingGroup",
                format!(
                    "ValidationError: MinSize {min}, DesiredCapacity {want}, MaxSize {max} do not \
                     fit together"
                ),
            ));
        }
        (g.min, g.max, g.desired) = (min, max, want);
        Ok(())
    }

    async fn suspend_processes(&self, name: &str, processes: &[String]) -> PortResult<()> {
        self.call("autoscaling:SuspendProcesses", true).await?;
        let mut s = self.lock();
        group_mut(&mut s, name)?
            .suspended
            .extend(processes.iter().cloned());
        Ok(())
    }

    async fn resume_processes(&self, name: &str, processes: &[String]) -> PortResult<()> {
        self.call("autoscaling:ResumeProcesses", true).await?;
        let mut s = self.lock();
        let g = group_mut(&mut s, name)?;
        for p in processes {
            g.suspended.remove(p);
        }
        Ok(())
    }

    async fn enter_standby(&self, name: &str, instance_ids: &[String]) -> PortResult<()> {
        self.call("autoscaling:EnterStandby", true).await?;
        check_standby_batch("autoscaling:EnterStandby", instance_ids)?;
        let mut s = self.lock();
        let g = group_mut(&mut s, name)?;
        let n = instance_ids.len() as i32;
        // Like AWS: decrementing below MinSize is refused.
        if g.desired - n < g.min {
            return Err(PortError::failed(
                "autoscaling:EnterStandby",
                format!(
                    "ValidationError: desired capacity {} - {n} would be below MinSize {}",
                    g.desired, g.min
                ),
            ));
        }
        for id in instance_ids {
            match g.instances.iter().find(|i| &i.id == id) {
                Some(i) if i.lifecycle_state == LifecycleState::InService => {}
                Some(i) => {
                    return Err(PortError::failed(
                        "autoscaling:EnterStandby",
                        format!("ValidationError: {id} is {}", i.lifecycle_state),
                    ))
                }
                None => {
                    return Err(PortError::failed(
                        "autoscaling:EnterStandby",
                        format!("ValidationError: instance {id} is not part of {name}"),
                    ))
                }
            }
        }
        for i in g
            .instances
            .iter_mut()
            .filter(|i| instance_ids.contains(&i.id))
        {
            i.lifecycle_state = LifecycleState::Standby;
        }
        g.desired -= n;
        Ok(())
    }

    async fn exit_standby(&self, name: &str, instance_ids: &[String]) -> PortResult<()> {
        self.call("autoscaling:ExitStandby", true).await?;
        check_standby_batch("autoscaling:ExitStandby", instance_ids)?;
        let now = Instant::now();
        let mut s = self.lock();
        let g = group_mut(&mut s, name)?;
        let n = instance_ids.len() as i32;
        // ExitStandby increments the desired capacity; AWS refuses it past MaxSize.
        if g.desired + n > g.max {
            return Err(PortError::failed(
                "autoscaling:ExitStandby",
                format!(
                    "ValidationError: desired capacity {} + {n} would be above MaxSize {}",
                    g.desired, g.max
                ),
            ));
        }
        for id in instance_ids {
            match g.instances.iter().find(|i| &i.id == id) {
                Some(i) if i.lifecycle_state == LifecycleState::Standby => {}
                Some(i) => {
                    return Err(PortError::failed(
                        "autoscaling:ExitStandby",
                        format!(
                            "ValidationError: {id} is {}, not in Standby",
                            i.lifecycle_state
                        ),
                    ))
                }
                None => {
                    return Err(PortError::failed(
                        "autoscaling:ExitStandby",
                        format!("ValidationError: instance {id} is not part of {name}"),
                    ))
                }
            }
        }
        for i in g
            .instances
            .iter_mut()
            .filter(|i| instance_ids.contains(&i.id))
        {
            // Standby → Pending (launch lifecycle hooks run here) → InService.
            i.lifecycle_state = LifecycleState::Pending;
            g.pending_until
                .insert(i.id.clone(), now + self.timings.call_latency);
        }
        g.desired += n;
        Ok(())
    }

    async fn activities_in_progress(&self, name: &str) -> PortResult<Vec<String>> {
        self.call("autoscaling:DescribeScalingActivities", false)
            .await?;
        Ok(self
            .lock()
            .activities
            .get(name)
            .cloned()
            .unwrap_or_default())
    }
}

impl FakeAws {
    fn bucket<'a>(s: &'a State, bucket: &str) -> PortResult<&'a FakeBucket> {
        s.buckets
            .get(bucket)
            .filter(|b| b.visible_at <= Instant::now())
            .ok_or_else(|| PortError::NotFound {
                what: format!("bucket {bucket}"),
            })
    }

    /// One request of a coarse call made of many (`copy_bucket_configuration`): the SDK
    /// adapter's client retries each request on its own (`RetryConfig::adaptive` in aws.rs),
    /// so a throttled request is retried, not the whole call.
    async fn config_call(&self, operation: &str, mutating: bool) -> PortResult<()> {
        crate::retry::retry(|| self.call(operation, mutating)).await
    }

    fn bucket_mut<'a>(s: &'a mut State, bucket: &str) -> PortResult<&'a mut FakeBucket> {
        s.buckets
            .get_mut(bucket)
            .filter(|b| b.visible_at <= Instant::now())
            .ok_or_else(|| PortError::NotFound {
                what: format!("bucket {bucket}"),
            })
    }

    /// GetObject, CopyObject and UploadPartCopy of an object in S3 Glacier Flexible Retrieval
    /// or Deep Archive answer InvalidObjectState until it is restored (S3 API Reference,
    /// InvalidObjectState; CopyObject: "you must restore a copy of this object before you can
    /// use it as a source object for the copy operation"). Restores are not modelled.
    fn readable(operation: &str, bucket: &str, key: &str, o: &FakeObject) -> PortResult<()> {
        if o.customer_key {
            // CopyObject: "If the source object for the copy is stored in Amazon S3 using
            // SSE-C, you must provide the necessary encryption information in your request so
            // that Amazon S3 can decrypt the object for copying" (x-amz-copy-source-server-
            // side-encryption-customer-*); GetObject likewise.
            return Err(PortError::failed(
                operation,
                format!(
                    "s3://{bucket}/{key}: InvalidRequest (HTTP 400): The object was stored \
                     using a form of Server Side Encryption. The correct parameters must be \
                     provided to retrieve the object."
                ),
            ));
        }
        match o.head.storage_class.as_deref() {
            Some(class) if !o.restored && crate::s3sync::ARCHIVED_CLASSES.contains(&class) => {
                Err(PortError::failed(
                    operation,
                    format!(
                        "InvalidObjectState: s3://{bucket}/{key} is in storage class {class}: \
                         the object is archived and inaccessible until restored"
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    fn get_object(&self, bucket: &str, key: &str) -> PortResult<FakeObject> {
        let s = self.lock();
        Self::bucket(&s, bucket)?
            .current(key)
            .map(|o| o.into_owned())
            .ok_or_else(|| PortError::NotFound {
                what: format!("s3://{bucket}/{key}"),
            })
    }

    /// Version `version` of an object (None: the current one), as `operation` reads it: a
    /// delete marker's version id is refused — HeadObject and GetObject answer 405
    /// MethodNotAllowed ("If the specified version is a delete marker, the response returns a
    /// 405 Method Not Allowed error", GetObject/HeadObject API), CopyObject and UploadPartCopy
    /// 400 InvalidRequest ("The source of a copy request may not specifically refer to a
    /// delete marker by version id"); an unknown version id is NoSuchVersion (404).
    fn get_object_version(
        &self,
        operation: &str,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> PortResult<FakeObject> {
        let Some(version) = version else {
            return self.get_object(bucket, key);
        };
        let s = self.lock();
        match Self::bucket(&s, bucket)?.version(key, version) {
            Some(Some(o)) => Ok(o.into_owned()),
            Some(None) if operation.contains("Copy") => Err(PortError::failed(
                operation,
                format!(
                    "s3://{bucket}/{key}?versionId={version}: InvalidRequest (HTTP 400): The \
                     source of a copy request may not specifically refer to a delete marker by \
                     version id."
                ),
            )),
            Some(None) => Err(PortError::failed(
                operation,
                format!(
                    "s3://{bucket}/{key}?versionId={version}: MethodNotAllowed (HTTP 405): The \
                     specified method is not allowed against this resource."
                ),
            )),
            None => Err(PortError::NotFound {
                what: format!("s3://{bucket}/{key}?versionId={version} (NoSuchVersion)"),
            }),
        }
    }
}

#[async_trait]
impl ObjectStore for FakeAws {
    fn object_url(&self, bucket: &str, key: &str) -> String {
        crate::ports::s3_object_url(REGION, bucket, key)
    }

    async fn buckets_with_prefix(&self, prefix: &str) -> PortResult<Vec<BucketListing>> {
        self.call("s3:ListBuckets", false).await?;
        let s = self.lock();
        Ok(s.buckets
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, b)| BucketListing {
                name: name.clone(),
                created: b.created,
            })
            .collect())
    }

    async fn bucket_tags(&self, bucket: &str) -> PortResult<Option<BTreeMap<String, String>>> {
        self.call("s3:HeadBucket", false).await?;
        let s = self.lock();
        Ok(Self::bucket(&s, bucket).ok().map(|b| b.tags.clone()))
    }

    async fn warm_up(&self, bucket: &str, connections: usize) {
        let at = self.epoch.elapsed();
        self.lock()
            .warm_ups
            .push((bucket.to_string(), connections, at));
    }

    async fn create_bucket(&self, bucket: &str, tags: &BTreeMap<String, String>) -> PortResult<()> {
        self.call("s3:CreateBucket", true).await?;
        let mut s = self.lock();
        if s.buckets.contains_key(bucket) {
            return Err(PortError::AlreadyExists {
                what: format!("bucket {bucket}"),
            });
        }
        s.buckets.insert(
            bucket.to_string(),
            FakeBucket::new(Instant::now(), tags.clone()),
        );
        Ok(())
    }

    async fn list_page_after(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<String>,
        max_keys: usize,
    ) -> PortResult<ListPage> {
        self.call("s3:ListObjectsV2", false).await?;
        let page = max_keys.clamp(1, PAGE_KEYS);
        let s = self.lock();
        let b = Self::bucket(&s, bucket)?;
        use std::ops::Bound;
        // The token is the last key of the previous page: continue after it. Without one,
        // start after `start_after` when that is past the prefix's first possible key.
        let after = token.or_else(|| start_after.filter(|a| *a >= prefix).map(str::to_string));
        let bound = match &after {
            Some(after) => Bound::Excluded(after.as_str()),
            None => Bound::Included(prefix),
        };
        let mut objects = Vec::new();
        let mut next = None;
        for (key, o) in b.current_from(bound, prefix, page + 1) {
            if objects.len() == page {
                next = objects.last().map(|o: &ObjectSummary| o.key.clone());
                break;
            }
            objects.push(ObjectSummary {
                key,
                size: o.size(),
                etag: o.etag.clone(),
                storage_class: o.head.storage_class.clone(),
                restored: o.restored,
                checksum_algorithm: o.head.checksum.as_ref().map(|c| c.algorithm.clone()),
                version_id: None,
                last_modified: Some(o.last_modified),
            });
        }
        Ok(ListPage {
            objects,
            next_token: next,
        })
    }

    async fn head_object_version(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        part_number: Option<u32>,
    ) -> PortResult<ObjectHead> {
        self.call("s3:HeadObject", false).await?;
        let o = self.get_object_version("s3:HeadObject", bucket, key, version)?;
        if o.customer_key {
            // A HEAD of an SSE-C object without the key's headers: 400, no body to explain.
            return Err(PortError::failed(
                "s3:HeadObject",
                format!("s3://{bucket}/{key}: BadRequest (HTTP 400): "),
            ));
        }
        // The adapter always sends ChecksumMode=ENABLED, without which HeadObject leaves the
        // x-amz-checksum-* headers out ("Checking object integrity", HeadObject API); the stored
        // head carries the checksum.
        let mut head = o.head.clone();
        if let Some(n) = part_number {
            if !o.parts.is_empty() {
                head.parts_count = Some(o.parts.len() as u32);
                head.size = *o
                    .parts
                    .get(n as usize - 1)
                    .ok_or_else(|| PortError::failed("s3:HeadObject", "InvalidPartNumber"))?;
            }
        }
        Ok(head)
    }

    async fn object_tags_version(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> PortResult<BTreeMap<String, String>> {
        self.call("s3:GetObjectTagging", false).await?;
        Ok(self
            .get_object_version("s3:GetObjectTagging", bucket, key, version)?
            .tags)
    }

    async fn copy_object_version(
        &self,
        src_bucket: &str,
        src_key: &str,
        src_version: Option<&str>,
        dst_bucket: &str,
        dst_key: &str,
        request: &CopyRequest,
    ) -> PortResult<CopiedObject> {
        self.call("s3:CopyObject", true).await?;
        tokio::time::sleep(self.timings.copy_latency).await;
        let o = self.get_object_version("s3:CopyObject", src_bucket, src_key, src_version)?;
        Self::readable("s3:CopyObject", src_bucket, src_key, &o)?;
        tokio::time::sleep(self.timings.copy_time(o.size())).await;
        let mut s = self.lock();
        if !s.buckets.contains_key(dst_bucket) {
            return Err(PortError::NotFound {
                what: format!("bucket {dst_bucket}"),
            });
        }
        // Without encryption headers the copy gets the destination bucket's default encryption,
        // not the source's (CopyObject API, "Server-side encryption"): an SSE-KMS source copied
        // that way into an SSE-S3 bucket is SSE-S3.
        let encryption = request
            .encryption
            .clone()
            .unwrap_or_else(|| Self::default_encryption(&s.buckets[dst_bucket].config));
        // A whole-object copy gets a plain MD5 ETag even when the source was multipart (AWS).
        let (etag, parts) = if s.seaweedfs_etags {
            (o.etag.clone(), o.parts.clone())
        } else {
            (o.content_md5(), Vec::new())
        };
        let etag = written_etag(&mut s, etag, Some(&encryption), 0);
        // "When you copy an object, if the source object has a checksum, that checksum value
        // will be copied to the new object by default. ... You can optionally specify a
        // different checksum algorithm to use with the x-amz-checksum-algorithm header"
        // (CopyObject API). Modelled harshly: a source without one gives a copy without one
        // unless the copy asks.
        let checksum = match &request.checksum_algorithm {
            Some(algorithm) => Some(ObjectChecksum {
                algorithm: algorithm.clone(),
                value: checksum_of(algorithm, o.checksum_input()),
                full_object: true,
            }),
            None => o.head.checksum.clone(),
        };
        let mut head = o.head.clone();
        head.etag = etag.clone();
        head.storage_class = request.storage_class.clone();
        head.encryption = Some(encryption.clone());
        head.checksum = checksum;
        let copy = FakeObject {
            etag: etag.clone(),
            parts,
            head,
            last_modified: aws_now(&self.timings),
            restored: false,
            ..o
        };
        #[cfg(test)]
        let compact = !s.store_synthetic_copies;
        #[cfg(not(test))]
        let compact = true;
        let dst = s
            .buckets
            .get_mut(dst_bucket)
            .expect("the bucket was there under this lock");
        if !(compact && dst.copy_into_slot(dst_key, &copy)) {
            dst.write(dst_key, copy);
        }
        Ok(CopiedObject {
            etag,
            encryption: Some(encryption),
        })
    }

    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        head: &ObjectHead,
        tags: &BTreeMap<String, String>,
    ) -> PortResult<String> {
        self.call("s3:CreateMultipartUpload", true).await?;
        // "CRC64NVME only supports the full object checksum type"; SHA1/SHA256 only the
        // composite one ("Checking object integrity", checksum types).
        if let Some(c) = &head.checksum {
            let supported = match c.algorithm.as_str() {
                "CRC64NVME" => c.full_object,
                "SHA1" | "SHA256" => !c.full_object,
                _ => true,
            };
            if !supported {
                return Err(PortError::failed(
                    "s3:CreateMultipartUpload",
                    format!(
                        "InvalidRequest: checksum type {} is not supported for {}",
                        if c.full_object {
                            "FULL_OBJECT"
                        } else {
                            "COMPOSITE"
                        },
                        c.algorithm
                    ),
                ));
            }
        }
        let mut s = self.lock();
        Self::bucket(&s, bucket)?;
        let id = format!("upload-{}", next_id(&mut s));
        s.uploads.insert(
            id.clone(),
            Upload {
                bucket: bucket.to_string(),
                key: key.to_string(),
                head: head.clone(),
                tags: tags.clone(),
                parts: BTreeMap::new(),
            },
        );
        Ok(id)
    }

    async fn upload_part_copy_version(
        &self,
        (src_bucket, src_key, src_version): (&str, &str, Option<&str>),
        if_match: Option<&str>,
        _dst_bucket: &str,
        _dst_key: &str,
        upload_id: &str,
        part: u32,
        first: u64,
        last: u64,
    ) -> PortResult<CopiedPart> {
        self.call("s3:UploadPartCopy", true).await?;
        tokio::time::sleep(self.timings.copy_latency).await;
        let o = self.get_object_version("s3:UploadPartCopy", src_bucket, src_key, src_version)?;
        Self::readable("s3:UploadPartCopy", src_bucket, src_key, &o)?;
        if if_match.is_some_and(|etag| etag != o.etag) {
            // 412 PreconditionFailed (x-amz-copy-source-if-match).
            return Err(PortError::PreconditionFailed {
                what: format!("s3://{src_bucket}/{src_key} part {part}"),
            });
        }
        if o.synthetic.is_some() {
            return Err(PortError::failed(
                "s3:UploadPartCopy",
                format!(
                    "s3://{src_bucket}/{src_key} is an object of a synthetic bulk \
                     (put_synthetic): the fake keeps no bytes of it to copy in parts; keep \
                     bulk objects below the copy's multipart threshold"
                ),
            ));
        }
        tokio::time::sleep(self.timings.copy_time(last.saturating_sub(first) + 1)).await;
        let len = o.data.len() as u64;
        let bytes = if len == 0 {
            Vec::new()
        } else {
            if last >= len || first > last {
                return Err(PortError::failed("s3:UploadPartCopy", "InvalidRange"));
            }
            o.data[first as usize..=last as usize].to_vec()
        };
        let etag = md5_hex(&bytes);
        let mut s = self.lock();
        let u = s
            .uploads
            .get_mut(upload_id)
            .ok_or_else(|| PortError::NotFound {
                what: format!("upload {upload_id}"),
            })?;
        // The part's checksum comes back only when the upload was created with a checksum
        // algorithm (UploadPartCopy, CopyPartResult.ChecksumCRC64NVME: "This checksum is
        // present if the multipart upload request was created with the CRC64NVME checksum
        // algorithm").
        let checksum = u
            .head
            .checksum
            .as_ref()
            .map(|c| checksum_of(&c.algorithm, &bytes));
        let algorithm = u.head.checksum.as_ref().map(|c| c.algorithm.clone());
        u.parts.insert(part, (bytes, checksum.clone()));
        Ok(CopiedPart {
            etag,
            checksum: algorithm.zip(checksum),
        })
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        completed: &[CopiedPart],
    ) -> PortResult<String> {
        self.call("s3:CompleteMultipartUpload", true).await?;
        let mut s = self.lock();
        let u = s
            .uploads
            .remove(upload_id)
            .ok_or_else(|| PortError::NotFound {
                what: format!("upload {upload_id}"),
            })?;
        if u.bucket != bucket || u.key != key || u.parts.len() != completed.len() {
            return Err(PortError::failed(
                "s3:CompleteMultipartUpload",
                "InvalidPart",
            ));
        }
        let pieces: Vec<Vec<u8>> = u.parts.values().map(|(p, _)| p.clone()).collect();
        for (i, ((p, checksum), given)) in u.parts.values().zip(completed).enumerate() {
            if i + 1 < pieces.len() && (p.len() as u64) < self.timings.min_part_size {
                return Err(PortError::failed(
                    "s3:CompleteMultipartUpload",
                    "EntityTooSmall",
                ));
            }
            if md5_hex(p) != given.etag {
                return Err(PortError::failed(
                    "s3:CompleteMultipartUpload",
                    "InvalidPart",
                ));
            }
            // An upload created with a checksum algorithm needs each part's checksum back
            // (CompletedPart.ChecksumCRC64NVME, "present if the multipart upload request was
            // created with the CRC64NVME checksum algorithm"): a missing one is an InvalidPart,
            // a wrong one a BadDigest (CompleteMultipartUpload API, errors).
            if let Some(checksum) = checksum {
                match given.checksum.as_ref().map(|(_, v)| v) {
                    None => {
                        return Err(PortError::failed(
                            "s3:CompleteMultipartUpload",
                            format!("InvalidPart: part {} has no checksum", i + 1),
                        ))
                    }
                    Some(g) if g != checksum => {
                        return Err(PortError::failed(
                            "s3:CompleteMultipartUpload",
                            format!("BadDigest: part {} checksum {g} is not {checksum}", i + 1),
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
        let data: Vec<u8> = pieces.concat();
        let etag = if s.seaweedfs_etags {
            format!("{}-{}", md5_hex(&data), pieces.len())
        } else {
            multipart_etag(&pieces)
        };
        let mut head = u.head.clone();
        let encryption = match head.encryption.take() {
            Some(e) => e,
            None => Self::default_encryption(&Self::bucket(&s, bucket)?.config),
        };
        let etag = written_etag(&mut s, etag, Some(&encryption), pieces.len());
        head.encryption = Some(encryption);
        // "Checking object integrity", "Using full object checksums for multipart upload":
        // a FULL_OBJECT checksum (the only type of CRC64NVME) is the checksum of the whole
        // content, the same as a single-part upload of the bytes; a COMPOSITE one is the
        // checksum of the parts' checksums with a `-<parts>` suffix. An upload created
        // without a checksum algorithm keeps none (modelled harshly).
        head.checksum = head.checksum.take().map(|c| {
            let value = if c.full_object {
                checksum_of(&c.algorithm, &data)
            } else {
                let raw: Vec<u8> = u
                    .parts
                    .values()
                    .filter_map(|(_, c)| c.as_deref())
                    .flat_map(|c| aws_smithy_types::base64::decode(c).expect("base64 we wrote"))
                    .collect();
                format!("{}-{}", checksum_of(&c.algorithm, &raw), pieces.len())
            };
            ObjectChecksum { value, ..c }
        });
        head.size = data.len() as u64;
        head.etag = etag.clone();
        head.parts_count = None;
        let b = s
            .buckets
            .get_mut(bucket)
            .ok_or_else(|| PortError::NotFound {
                what: format!("bucket {bucket}"),
            })?;
        b.write(
            key,
            FakeObject {
                data: Arc::new(data),
                etag: etag.clone(),
                parts: pieces.iter().map(|p| p.len() as u64).collect(),
                head,
                tags: u.tags,
                last_modified: aws_now(&self.timings),
                restored: false,
                customer_key: false,
                synthetic: None,
            },
        );
        Ok(etag)
    }

    async fn abort_multipart(&self, _bucket: &str, _key: &str, upload_id: &str) -> PortResult<()> {
        self.call("s3:AbortMultipartUpload", true).await?;
        self.lock().uploads.remove(upload_id);
        Ok(())
    }

    async fn delete_objects(&self, bucket: &str, keys: &[String]) -> PortResult<()> {
        self.call("s3:DeleteObjects", true).await?;
        if keys.is_empty() || keys.len() > crate::s3sync::DELETE_BATCH {
            // What S3 answers for an empty request or more than 1,000 keys.
            return Err(PortError::failed("s3:DeleteObjects", "MalformedXML"));
        }
        let now = aws_now(&self.timings);
        let mut s = self.lock();
        Self::bucket(&s, bucket)?;
        let b = s.buckets.get_mut(bucket).expect("checked above");
        for key in keys {
            b.delete_key(key, now);
        }
        s.delete_batches.push(keys.len());
        Ok(())
    }

    async fn inventory_configurations(
        &self,
        bucket: &str,
    ) -> PortResult<Vec<InventoryConfiguration>> {
        self.call("s3:ListBucketInventoryConfigurations", false)
            .await?;
        self.inventory_configurations_of(bucket)
    }

    async fn noncurrent_versions_expire(&self, bucket: &str) -> PortResult<bool> {
        self.call("s3:GetBucketLifecycleConfiguration", false)
            .await?;
        let s = self.lock();
        Ok(Self::bucket(&s, bucket)?.versions.expire_noncurrent)
    }

    async fn versioning(&self, bucket: &str) -> PortResult<Option<String>> {
        self.call("s3:GetBucketVersioning", false).await?;
        let s = self.lock();
        // GetBucketVersioning: no Status for a bucket never versioned.
        let v = &Self::bucket(&s, bucket)?.versions;
        Ok(if v.enabled {
            Some("Enabled".to_string())
        } else {
            v.suspended.then(|| "Suspended".to_string())
        })
    }

    async fn list_versions_page(
        &self,
        bucket: &str,
        marker: Option<(String, String)>,
    ) -> PortResult<VersionPage> {
        self.call("s3:ListObjectVersions", false).await?;
        const PAGE: usize = 1000;
        let s = self.lock();
        // Every key from the marker's on, as many as a page can hold and one more: enough to
        // fill the page and know whether another follows.
        let from = marker.as_ref().map_or("", |(key, _)| key.as_str());
        let all = Self::bucket(&s, bucket)?.versions_from(from, PAGE + 2);
        let start = match marker {
            None => 0,
            Some((key, version_id)) => all
                .iter()
                .position(|v| v.key == key && v.version_id == version_id)
                .map(|i| i + 1)
                .unwrap_or_else(|| all.iter().take_while(|v| v.key <= key).count()),
        };
        let versions: Vec<ObjectVersion> = all.iter().skip(start).take(PAGE).cloned().collect();
        let next = (start + versions.len() < all.len())
            .then(|| {
                versions
                    .last()
                    .map(|v| (v.key.clone(), v.version_id.clone()))
            })
            .flatten();
        Ok(VersionPage { versions, next })
    }

    async fn delete_versions(&self, bucket: &str, versions: &[ObjectVersion]) -> PortResult<()> {
        self.call("s3:DeleteObjects", true).await?;
        if versions.is_empty() || versions.len() > crate::s3sync::DELETE_BATCH {
            return Err(PortError::failed("s3:DeleteObjects", "MalformedXML"));
        }
        let mut s = self.lock();
        Self::bucket(&s, bucket)?;
        let b = s.buckets.get_mut(bucket).expect("checked above");
        for v in versions {
            b.delete_version(&v.key, &v.version_id);
        }
        s.delete_batches.push(versions.len());
        Ok(())
    }

    async fn put_small_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        condition: Option<&str>,
    ) -> PortResult<String> {
        self.call("s3:PutObject", true).await?;
        let current = self
            .lock()
            .buckets
            .get(bucket)
            .and_then(|b| b.current(key).map(|o| o.etag.clone()));
        let what = format!("s3://{bucket}/{key}");
        match (condition, &current) {
            (Some("*"), Some(_)) => return Err(PortError::PreconditionFailed { what }),
            (Some(etag), Some(now)) if etag != "*" && etag != now => {
                return Err(PortError::PreconditionFailed { what })
            }
            (Some(etag), None) if etag != "*" => return Err(PortError::NotFound { what }),
            _ => {}
        }
        self.put_object(bucket, key, &body, ObjectHead::default(), &[]);
        Ok(md5_hex(&body))
    }

    async fn get_small_object(&self, bucket: &str, key: &str) -> PortResult<Option<SmallObject>> {
        self.call("s3:GetObject", false).await?;
        let s = self.lock();
        let Some(o) = s.buckets.get(bucket).and_then(|b| b.current(key)) else {
            return Ok(None);
        };
        if o.synthetic.is_some() {
            return Err(PortError::failed(
                "s3:GetObject",
                format!(
                    "s3://{bucket}/{key} is an object of a synthetic bulk (put_synthetic): the \
                     fake keeps no bytes of it to return; read objects you put"
                ),
            ));
        }
        Ok(Some(SmallObject {
            body: o.data.to_vec(),
            etag: o.etag.clone(),
            last_modified: o.last_modified,
        }))
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> PortResult<()> {
        self.call("s3:DeleteObject", true).await?;
        let now = aws_now(&self.timings);
        if let Some(b) = self.lock().buckets.get_mut(bucket) {
            b.delete_key(key, now);
        }
        Ok(())
    }

    async fn delete_bucket(&self, bucket: &str) -> PortResult<()> {
        self.call("s3:DeleteBucket", true).await?;
        let mut s = self.lock();
        match s.buckets.get(bucket) {
            None => Err(PortError::NotFound {
                what: format!("bucket {bucket}"),
            }),
            // DeleteBucket: "All objects (including all object versions and delete markers) in
            // the bucket must be deleted before the bucket itself can be deleted."
            Some(b) if !b.is_empty() => Err(PortError::failed(
                "s3:DeleteBucket",
                format!("BucketNotEmpty: {bucket}"),
            )),
            Some(_) => {
                s.buckets.remove(bucket);
                Ok(())
            }
        }
    }

    async fn content_md5_version(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> PortResult<String> {
        self.call("s3:GetObject", false).await?;
        let o = self.get_object_version("s3:GetObject", bucket, key, version)?;
        Self::readable("s3:GetObject", bucket, key, &o)?;
        Ok(o.content_md5())
    }

    async fn copy_bucket_configuration(
        &self,
        source: &str,
        target: &str,
    ) -> PortResult<BucketConfigReport> {
        let mut report = BucketConfigReport::default();
        // Each GET, then its PUT, as the SDK adapter does them (each request retried on its
        // own, as the SDK does).
        self.config_call("s3:GetBucketVersioning", false).await?;
        let versioned = Self::bucket(&self.lock(), source)?.versions.enabled;
        if versioned {
            self.config_call("s3:PutBucketVersioning", true).await?;
            Self::bucket_mut(&mut self.lock(), target)?.versions.enabled = true;
            report.carried.push("versioning".into());
        }
        self.config_call("s3:GetPublicAccessBlock", false).await?;
        let src = Self::bucket(&self.lock(), source)?.config.clone();
        if let Some(block) = src.public_access_block {
            self.config_call("s3:PutPublicAccessBlock", true).await?;
            Self::bucket_mut(&mut self.lock(), target)?
                .config
                .public_access_block = Some(block);
            report.carried.push("public access block".into());
        }
        type Field = fn(&mut FakeBucketConfig) -> &mut Option<String>;
        let plain: [(&str, &str, &str, Field); 4] = [
            (
                "s3:GetBucketOwnershipControls",
                "s3:PutBucketOwnershipControls",
                "ownership controls",
                |c| &mut c.ownership,
            ),
            (
                "s3:GetBucketEncryption",
                "s3:PutBucketEncryption",
                "default encryption",
                |c| &mut c.encryption,
            ),
            ("s3:GetBucketCors", "s3:PutBucketCors", "CORS", |c| {
                &mut c.cors
            }),
            (
                "s3:GetBucketLifecycleConfiguration",
                "s3:PutBucketLifecycleConfiguration",
                "lifecycle",
                |c| &mut c.lifecycle,
            ),
        ];
        for (get, put, what, field) in plain {
            self.config_call(get, false).await?;
            let value = field(&mut Self::bucket(&self.lock(), source)?.config.clone()).clone();
            if let Some(value) = value {
                self.config_call(put, true).await?;
                *field(&mut Self::bucket_mut(&mut self.lock(), target)?.config) = Some(value);
                report.carried.push(what.into());
            }
        }
        self.config_call("s3:GetBucketTagging", false).await?;
        let source_tags = Self::bucket(&self.lock(), source)?.tags.clone();
        if source_tags.keys().any(|k| !is_aws_reserved_tag(k)) {
            self.config_call("s3:GetBucketTagging", false).await?;
            let own = Self::bucket(&self.lock(), target)?.tags.clone();
            self.config_call("s3:PutBucketTagging", true).await?;
            Self::bucket_mut(&mut self.lock(), target)?.tags =
                merged_bucket_tags(&source_tags, &own);
            report.carried.push("tags".into());
        }
        self.config_call("s3:GetBucketPolicy", false).await?;
        if let Some(policy) = src.policy {
            let policy = rewrite_bucket_policy(&policy, source, target);
            self.config_call("s3:PutBucketPolicy", true).await?;
            let mut s = self.lock();
            let b = Self::bucket_mut(&mut s, target)?;
            // "PutBucketPolicy ... If BlockPublicPolicy is set to TRUE ... calls fail if the
            // specified bucket policy allows public access" (S3 API Reference,
            // PublicAccessBlockConfiguration).
            if b.config.public_access_block.is_some_and(|p| p[2]) && policy_is_public(&policy) {
                report.not_carried.push(format!(
                    "bucket policy: S3 refused it (AccessDenied: the public access block of \
                     {target} blocks public policies); review the source's policy and put it \
                     on {target} yourself if it must be public"
                ));
            } else {
                b.config.policy = Some(policy);
                report.carried.push("bucket policy".into());
            }
        }
        self.config_call("s3:GetBucketNotificationConfiguration", false)
            .await?;
        if src.notifications.is_some() {
            report.not_carried.push(format!(
                "event notifications: they send to topics, queues or functions of {source}'s \
                 environment; configure {target}'s own if the clone needs them"
            ));
        }
        self.config_call("s3:GetBucketReplication", false).await?;
        if src.replication.is_some() {
            report.not_carried.push(format!(
                "replication: it writes to {source}'s destination buckets; configure \
                 {target}'s own if the clone needs it"
            ));
        }
        Ok(report)
    }
}

/// A DNS name as Route 53 returns it: lowercase, fully qualified.
fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.').to_ascii_lowercase())
}

/// What ChangeResourceRecordSets refuses in one UPSERT (API reference, ResourceRecordSet): a
/// TTL with an alias ("If you're creating or updating an alias resource record set, omit
/// TTL"), no TTL without one, a set identifier without a routing policy or the reverse, a
/// CNAME next to records of another type of the name, and records of one name and type mixing routing
/// policies (or simple records with routed ones).
fn check_upsert(existing: &[DnsRecord], r: &DnsRecord) -> Result<(), String> {
    match (&r.alias, r.ttl) {
        (Some(_), Some(_)) => return Err("InvalidInput: an alias record takes no TTL".into()),
        (None, None) => return Err("InvalidInput: TTL is required for a non-alias record".into()),
        (None, Some(_)) if r.values.is_empty() => {
            return Err("InvalidInput: ResourceRecords is required".into())
        }
        _ => {}
    }
    if r.set_identifier.is_some() != r.routing.is_some() {
        return Err(
            "InvalidInput: SetIdentifier goes with a routing policy (Weight, Region, Failover, \
             MultiValueAnswer…) and only with one"
                .into(),
        );
    }
    let kind = |x: &DnsRecord| std::mem::discriminant(&x.routing);
    for e in existing {
        let same = e.record_type == r.record_type && e.set_identifier == r.set_identifier;
        if same {
            continue; // the record this UPSERT replaces
        }
        if e.record_type != r.record_type && (e.record_type == "CNAME" || r.record_type == "CNAME")
        {
            return Err(format!(
                "InvalidChangeBatch: RRSet of type CNAME with DNS name {} is not permitted as it \
                 conflicts with other records with the same DNS name",
                r.name
            ));
        }
        if e.record_type == r.record_type && kind(e) != kind(r) {
            return Err(format!(
                "InvalidChangeBatch: RRSet with DNS name {}, type {} cannot mix routing policies",
                r.name, r.record_type
            ));
        }
    }
    Ok(())
}

#[async_trait]
impl Dns for FakeAws {
    async fn zones_named(&self, name: &str) -> PortResult<Vec<HostedZone>> {
        self.call("route53:ListHostedZonesByName", false).await?;
        Ok(self
            .lock()
            .zones
            .values()
            .filter(|z| z.name == fqdn(name))
            .cloned()
            .collect())
    }

    async fn zone(&self, id: &str) -> PortResult<Option<HostedZone>> {
        self.call("route53:GetHostedZone", false).await?;
        Ok(self.lock().zones.get(id).cloned())
    }

    async fn records(&self, zone_id: &str, name: &str) -> PortResult<Vec<DnsRecord>> {
        self.call("route53:ListResourceRecordSets", false).await?;
        let s = self.lock();
        if !s.zones.contains_key(zone_id) {
            return Err(PortError::NotFound {
                what: format!("hosted zone {zone_id} (NoSuchHostedZone)"),
            });
        }
        Ok(s.dns
            .get(&(zone_id.to_string(), fqdn(name)))
            .cloned()
            .unwrap_or_default())
    }

    async fn upsert(&self, zone_id: &str, record: &DnsRecord) -> PortResult<String> {
        self.call("route53:ChangeResourceRecordSets", true).await?;
        let mut s = self.lock();
        if !s.zones.contains_key(zone_id) {
            return Err(PortError::NotFound {
                what: format!("hosted zone {zone_id} (NoSuchHostedZone)"),
            });
        }
        let key = (zone_id.to_string(), fqdn(&record.name));
        let existing = s.dns.get(&key).cloned().unwrap_or_default();
        check_upsert(&existing, record)
            .map_err(|e| PortError::failed("route53:ChangeResourceRecordSets", e))?;
        let mut stored = record.clone();
        stored.name = fqdn(&record.name);
        let mut records: Vec<DnsRecord> = existing
            .into_iter()
            .filter(|e| {
                !(e.record_type == record.record_type && e.set_identifier == record.set_identifier)
            })
            .collect();
        records.push(stored);
        s.dns.insert(key, records);
        let id = format!("/change/C{}", next_id(&mut s));
        s.dns_changes
            .insert(id.clone(), Instant::now() + self.timings.dns_sync);
        Ok(id)
    }

    async fn change_in_sync(&self, change_id: &str) -> PortResult<bool> {
        self.call("route53:GetChange", false).await?;
        let s = self.lock();
        let at = s
            .dns_changes
            .get(change_id)
            .ok_or_else(|| PortError::NotFound {
                what: format!("change {change_id}"),
            })?;
        Ok(Instant::now() >= *at)
    }
}

#[async_trait]
impl HookRunner for FakeAws {
    async fn run(
        &self,
        command: &str,
        env: &BTreeMap<String, String>,
        _timeout: Duration,
    ) -> Result<(), String> {
        let mut s = self.lock();
        s.hooks_run.push((command.to_string(), env.clone()));
        if s.failing_hooks.iter().any(|c| c == command) {
            Err(format!("`{command}` exited with exit status: 1"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl HttpProbe for FakeAws {
    async fn get_status(&self, url: &str) -> PortResult<u16> {
        self.call("http:GET", false).await?;
        Ok(self.lock().http.get(url).copied().unwrap_or(200))
    }
}
