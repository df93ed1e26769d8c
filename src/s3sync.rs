//! Bucket-to-bucket sync and verification, server-side only.
//!
//! Owns the streaming merge-join of two sorted listings (memory does not grow with the number
//! of objects), the copy scheduler (bounded concurrency), the multipart copy that mirrors the
//! source's part layout (so the copy's ETag equals the source's and verification can compare
//! ETags), and the object-for-object verification. No object bytes pass through envclone on
//! the copy path.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::ports::{
    is_customer_key_refusal, CopiedPart, CopyRequest, ObjectChecksum, ObjectEncryption, ObjectHead,
    ObjectStore, ObjectSummary, PortError, COPY_CHECKSUM, PAGE_KEYS,
};
use crate::retry::retry;

mod as_of;
pub use as_of::{as_of_point, AsOfPoint};

/// AWS's limits for a single CopyObject and for multipart parts.
pub const AWS_COPY_LIMIT: u64 = 5 * 1024 * 1024 * 1024;
const MIN_PART: u64 = 5 * 1024 * 1024;
const MAX_PARTS: u64 = 10_000;
/// Keys one DeleteObjects request takes at most.
pub const DELETE_BATCH: usize = 1000;
/// Listing pages read ahead of the merge-join, per side (a page is at most 1,000 objects).
const PAGES_AHEAD: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketPath {
    pub bucket: String,
    pub prefix: String,
}

impl BucketPath {
    pub fn bucket(bucket: &str) -> Self {
        BucketPath {
            bucket: bucket.to_string(),
            prefix: String::new(),
        }
    }
}

impl std::fmt::Display for BucketPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Objects copied (or delete batches sent) at once.
    pub concurrency: usize,
    /// Objects larger than this are copied in parts (5 GiB on AWS, smaller in tests).
    pub multipart_threshold: u64,
    /// Part size for objects that were not uploaded in parts themselves.
    pub part_size: u64,
    /// Parts of one object copied at once.
    pub part_concurrency: usize,
    /// Remove destination objects that the source does not have.
    pub delete: bool,
    /// Decide what to copy and delete, report it through the `planned` callback, change nothing.
    pub dry_run: bool,
    /// Leave archived objects (see [`is_archived`]) uncopied, counting them in the stats, and
    /// do not count them as differences when verifying.
    pub skip_archived: bool,
    /// Which encryption copies get.
    pub sse: SseMode,
    /// Copy the source as it was at this moment (S3's clock) instead of as it is: each key's
    /// newest version whose LastModified is at or before it, read by version id; keys absent
    /// then (never written yet, or hidden by a delete marker) count as absent, so `delete`
    /// removes their copies. Needs a versioned source (see [`as_of_point`] for choosing it).
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
    /// Objects an earlier verification found holding their source's bytes under another ETag
    /// (see [`SameBytes`]): left alone while both sides still have the ETags it saw.
    pub same_bytes: Option<Arc<SameBytes>>,
}

/// What an earlier verification found of one object whose copy has another ETag than its
/// source: the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SameBytesAs {
    pub size: u64,
    pub source_etag: String,
    pub target_etag: String,
}

/// Source key → [`SameBytesAs`]: objects whose copies hold their bytes under another ETag, as a
/// verification found them (by checksum or by content). An S3 Batch Operations copy makes
/// them: S3PutObjectCopy is a CopyObject, whose copy of a multipart object is single-part with
/// a plain MD5 ETag ("Copy objects", S3 User Guide), so no ETag comparison can tell that copy
/// from a change. While the source object still has the ETag it had and the copy the ETag it
/// got (a write of the key gives it a new ETag: "Checking object integrity", the ETag
/// "reflects changes only to the contents of an object"), both still hold the bytes compared
/// then: a sync leaves it alone, and a verification does not read it again (it still compares
/// headers and tags, which change without the ETag).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SameBytes(pub BTreeMap<String, SameBytesAs>);

impl SameBytes {
    /// Whether `s` (the source object) and `d` (its copy) are as the verification saw them.
    pub fn holds(&self, s: &ObjectSummary, d: &ObjectSummary) -> bool {
        s.size == d.size
            && self.0.get(&s.key).is_some_and(|r| {
                r.size == s.size && r.source_etag == s.etag && r.target_etag == d.etag
            })
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn known_same(known: Option<&SameBytes>, s: &ObjectSummary, d: &ObjectSummary) -> bool {
    known.is_some_and(|k| k.holds(s, d))
}

/// Which server-side encryption a copy gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SseMode {
    /// Each object's own: an SSE-KMS object keeps its KMS key (and Bucket Key setting), an
    /// SSE-S3 one stays SSE-S3 whatever the destination bucket's default is.
    #[default]
    Keep,
    /// The destination bucket's default encryption, which is what S3 gives a CopyObject without
    /// encryption headers (CopyObject API, "Server-side encryption").
    DestinationDefault,
}

/// Objects copied at once by default. With no latency (a local server) more than 64 stopped
/// helping; over a 20 ms link 64 copies at once are latency-bound: 10,020 objects took 20.5 s
/// at 64 and 13.1 s at 256, the server's ceiling in that run being 12.5 s (BENCHMARKS.md, run
/// 14), for 14 MiB more RSS (48 MiB). s5cmd's default is 256 workers too.
pub const DEFAULT_CONCURRENCY: usize = 256;

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            concurrency: DEFAULT_CONCURRENCY,
            multipart_threshold: AWS_COPY_LIMIT,
            part_size: 512 * 1024 * 1024,
            part_concurrency: 8,
            delete: false,
            dry_run: false,
            skip_archived: false,
            sse: SseMode::Keep,
            as_of: None,
            same_bytes: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncStats {
    pub listed: u64,
    /// Objects copied (in a dry run: that would be copied).
    pub copied: u64,
    pub copied_bytes: u64,
    pub multipart_copies: u64,
    pub unchanged: u64,
    /// Of `unchanged`: objects whose ETags differ but whose checksums are equal (SSE-KMS
    /// objects, whose ETags are no digests of their bytes, and multipart copies in another
    /// part layout).
    pub unchanged_by_checksum: u64,
    /// Objects whose ETags could not tell and that have no comparable checksum on both sides
    /// (a source written before S3 kept checksums; a multipart source whose checksum is
    /// COMPOSITE or of another algorithm than the CRC64NVME a copy in parts gets): copied
    /// again, since nothing cheaper can tell whether they changed.
    pub copied_without_checksum: u64,
    /// Destination objects the source does not have (removed only with `delete`).
    pub extra: u64,
    /// Destination objects removed (in a dry run: that would be removed).
    pub deleted: u64,
    /// Archived source objects left uncopied (`skip_archived`), their bytes, and the first
    /// [`ARCHIVED_KEYS_KEPT`] of their keys.
    pub skipped_archived: u64,
    pub skipped_archived_bytes: u64,
    pub skipped_archived_keys: Vec<String>,
}

/// Storage classes whose objects S3 refuses to copy (CopyObject, UploadPartCopy) or read
/// until they are restored: "Object is archived and inaccessible until restored. If the object
/// you are retrieving is stored in the S3 Glacier Flexible Retrieval storage class, the S3
/// Glacier Deep Archive storage class, the S3 Intelligent-Tiering Archive Access tier, or the
/// S3 Intelligent-Tiering Deep Archive Access tier, before you can retrieve the object you must
/// first restore a copy using RestoreObject. Otherwise, this operation returns an
/// InvalidObjectState error" (S3 API Reference, InvalidObjectState). Glacier Instant Retrieval
/// (`GLACIER_IR`) is copied like any other class. The Intelligent-Tiering archive tiers do not
/// show in a listing (only HeadObject's `ArchiveStatus` tells): such an object fails its copy
/// with InvalidObjectState, naming it.
pub const ARCHIVED_CLASSES: &[&str] = &["GLACIER", "DEEP_ARCHIVE"];

/// How many keys of archived objects a report keeps (the counts are exact).
pub const ARCHIVED_KEYS_KEPT: usize = 1000;

/// Whether S3 cannot copy the object without a restore: by its listed storage class, unless
/// a restored copy is available.
pub fn is_archived(object: &ObjectSummary) -> bool {
    !object.restored
        && object
            .storage_class
            .as_deref()
            .is_some_and(|c| ARCHIVED_CLASSES.contains(&c))
}

/// The archived objects of one bucket, as a preflight finds them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArchivedObjects {
    pub bucket: String,
    pub count: u64,
    pub bytes: u64,
    /// Count per storage class.
    pub by_class: BTreeMap<String, u64>,
    /// The first [`ARCHIVED_KEYS_KEPT`] keys.
    pub keys: Vec<String>,
}

impl std::fmt::Display for ArchivedObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let classes: Vec<String> = self
            .by_class
            .iter()
            .map(|(c, n)| format!("{n} {c}"))
            .collect();
        write!(
            f,
            "s3://{}: {} archived object(s), {} bytes ({}; e.g. {})",
            self.bucket,
            self.count,
            self.bytes,
            classes.join(", "),
            self.keys
                .iter()
                .take(3)
                .map(|k| format!("{k:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Lists the whole bucket (ListObjectsV2, read-only) and returns its archived objects.
pub async fn find_archived(
    store: &dyn ObjectStore,
    bucket: &str,
) -> Result<ArchivedObjects, PortError> {
    let mut found = ArchivedObjects {
        bucket: bucket.to_string(),
        ..Default::default()
    };
    let mut token = None;
    loop {
        let page = retry(|| store.list_page(bucket, "", token.clone())).await?;
        for o in page.objects.iter().filter(|o| is_archived(o)) {
            found.count += 1;
            found.bytes += o.size;
            *found
                .by_class
                .entry(o.storage_class.clone().unwrap_or_default())
                .or_default() += 1;
            if found.keys.len() < ARCHIVED_KEYS_KEPT {
                found.keys.push(o.key.clone());
            }
        }
        match page.next_token {
            Some(t) => token = Some(t),
            None => return Ok(found),
        }
    }
}

/// Live counters of a running sync, for a progress display. The engine only adds to them
/// (relaxed atomics, a few per object); whoever shows progress reads them on its own clock.
#[derive(Debug, Default)]
pub struct SyncProgress {
    pub source_listed: AtomicU64,
    pub target_listed: AtomicU64,
    /// Both listings have been read to the end: `to_copy*` and `to_delete` are final.
    pub listing_done: AtomicBool,
    pub to_copy: AtomicU64,
    pub to_copy_bytes: AtomicU64,
    pub to_delete: AtomicU64,
    pub unchanged: AtomicU64,
    pub copied: AtomicU64,
    pub copied_bytes: AtomicU64,
    pub deleted: AtomicU64,
}

/// One change a sync decided on (reported in a dry run instead of being made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planned<'a> {
    Copy {
        source_key: &'a str,
        /// The version to copy, in a sync as of a moment (`SyncOptions::as_of`): the key's
        /// version current at T; None: the current one.
        version_id: Option<&'a str>,
        target_key: &'a str,
        size: u64,
    },
    Delete {
        target_key: &'a str,
    },
}

#[derive(Debug, Error)]
pub enum SyncError {
    #[error("interrupted (Ctrl-C): the copies in flight finished, no new one was started")]
    Stopped,
    #[error("bucket {bucket} does not exist (or is not visible with these credentials); check the name and the region")]
    MissingBucket { bucket: String },
    #[error("listing {path} failed: {source}")]
    List {
        path: String,
        #[source]
        source: PortError,
    },
    #[error(
        "the listing of {path} stopped before its end ({why}); the sync stopped there, before \
         acting on any key it had not listed — run it again, and report it if it repeats"
    )]
    ListingStopped { path: String, why: String },
    #[error(
        "the listing of {path} is not in key order ({key:?} after {previous:?}); the server is not \
         S3-compatible enough to sync safely, nothing more was changed"
    )]
    Unsorted {
        path: String,
        previous: String,
        key: String,
    },
    #[error("copying s3://{bucket}/{key} failed: {source}")]
    Copy {
        bucket: String,
        key: String,
        #[source]
        source: PortError,
    },
    #[error("deleting {count} object(s) from s3://{bucket} (first {first:?}) failed: {source}")]
    Delete {
        bucket: String,
        count: usize,
        first: String,
        #[source]
        source: PortError,
    },
    #[error(
        "s3://{bucket} does not keep object versions (versioning {status}): it cannot be copied \
         as of a past moment, since an overwrite or a delete leaves nothing of what was there. \
         Enable versioning (aws s3api put-bucket-versioning --versioning-configuration \
         Status=Enabled) before the moment to copy, or copy it as it is (without --as-of)"
    )]
    NotVersioned { bucket: String, status: String },
    #[error(
        "s3://{bucket}/{key}: what it held as of {as_of} cannot be told: {why}. Nothing was \
         copied for this key; copy it by hand once you know which version is right"
    )]
    AsOfUnknown {
        bucket: String,
        key: String,
        as_of: String,
        why: String,
    },
    #[error("{first} (and {more} more failure(s); re-run to retry only what is still missing)")]
    Several { first: Box<SyncError>, more: u64 },
    #[error(
        "s3://{bucket}: {count} object(s) are encrypted with a customer-provided key (SSE-C), e.g. \
         {}: S3 reads, heads or copies such an object only with its key, which envclone never \
         takes, so they were not copied (the others were). Re-encrypt them in place with their \
         key (aws s3api copy-object --copy-source-sse-customer-algorithm AES256 \
         --copy-source-sse-customer-key ... --server-side-encryption aws:kms) or move them out \
         of the bucket, then run again",
        keys.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ")
    )]
    CustomerKey {
        bucket: String,
        count: u64,
        /// The first few keys.
        keys: Vec<String>,
    },
}

/// How many keys of SSE-C objects a refusal names (the count is exact).
const CUSTOMER_KEYS_NAMED: usize = 5;

type PageResult = Result<Vec<ObjectSummary>, SyncError>;

#[derive(Debug, Clone, Copy)]
enum Side {
    Source,
    Target,
}

/// Reads a bucket listing one object at a time, in key order, while up to `RANGES_AHEAD` tasks
/// list consecutive key ranges of it at once (S3 pages are sequential within a range: a
/// continuation token; ranges start with `start-after`).
///
/// The first page comes from a probe; from its keys (and every page listed since) a `KeySpace`
/// places the next split point about `RANGE_KEYS` keys ahead of the last one. Where no split
/// point can be placed (keys unlike those seen so far), the next range is another one-page
/// probe, so the worst case is the sequential listing. Every range task keeps at most
/// `PAGES_AHEAD` pages waiting: memory does not grow with the number of objects.
///
/// The ranges are started by a planner task of their own (`Planner`) as soon as a probe or a
/// range's first page says where the next one can go, not when the reader next asks for a key:
/// a merge-join waits on one side at a time, and with the planning done in the reader, the side
/// it was not waiting on started no range meanwhile (in the 20 ms benchmark the destination's
/// ranges started about 0.12 s after the source's, and the no-op ended with them).
///
/// While the probe is in flight the listing opens `WARM_CONNECTIONS` more connections
/// (`ObjectStore::warm_up`), so the ranges started when it answers find them open instead of
/// each paying a new connection's handshakes first (at 20 ms, one round trip of the 40-60 ms
/// their first page took; over TLS two or three).
struct Lister {
    path: Arc<BucketPath>,
    /// The ranges the planner starts, in key order.
    started: mpsc::UnboundedReceiver<RangeTask>,
    /// The range being read.
    front: Option<RangeTask>,
    planner: Option<AbortOnDrop>,
    /// Stopped with the listing; what it does is never waited for.
    _warm_up: AbortOnDrop,
    page: std::vec::IntoIter<ObjectSummary>,
    /// The last key of the pages read so far, to check the order across pages and ranges.
    last: Option<String>,
}

/// The longest key S3 takes (UTF-8 bytes).
const MAX_KEY_BYTES: usize = 1024;
/// Listing ranges started and not yet read whole, per side.
const RANGES_AHEAD: usize = 8;
/// Connections a listing opens while its probe is in flight, besides the probe's own. In the
/// 20 ms benchmark (20 interleaved no-ops each) 3 per side took a median 0.227-0.233 s, 5
/// 0.233-0.248 s and 7 0.239 s, against 0.251 s without: each opening costs the server and
/// the latency pipe a little at the same time as the probe.
const WARM_CONNECTIONS: usize = 3;
/// Keys a range is planned to hold: about three pages. S3 has no end bound, so a range's last
/// page would run past its end; where the server's CPU rather than the round trip limits
/// listing (the benchmark's local server on 2 cores), that overrun is what ranges cost: with
/// whole pages and ranges of 700 keys a no-op took 0.43-0.50 s against the sequential
/// listing's 0.31-0.35 s there, with ranges of 3,000 keys 0.33-0.38 s. Each page now asks for
/// about the keys left to its range's end (`page_keys`); one-page ranges of 900 keys were
/// measured with that too and were no faster than these (BENCHMARKS.md, run 13). With the
/// planner task (run 14), ranges of 1,000 keys were slower again (0.57 s against 0.42-0.46 s:
/// each request costs the server CPU), 1,500 and 2,000 keys and a slow start from 4 or 8
/// ranges were within the noise of these; with warm connections (run 18) ranges of 1,000 keys,
/// 12 at once, were again no faster (0.24-0.26 s against 0.23-0.25 s).
const RANGE_KEYS: f64 = 3000.0;

/// Where the next range starts.
enum Plan {
    /// A probe (the last started range) will tell: its page's last key, or the end.
    Probing,
    /// After this key.
    After(String),
    /// Every range is started.
    Finished,
}

/// What the planner does next.
enum Next {
    Start(Range),
    /// Until a range task tells something (`Shared::wake`).
    Wait,
    Finished,
}

/// What the range tasks of one side tell the planner.
#[derive(Default)]
struct Shared {
    /// The key space learned from the furthest page listed so far (with that page's last key).
    space: std::sync::Mutex<Option<(String, KeySpace)>>,
    /// A probe's answer: Some(last key) if the listing goes on after its page, None at the end.
    probe: std::sync::Mutex<Option<Option<String>>>,
    /// Some range reached the end of the listing: no range after it has keys.
    exhausted: AtomicBool,
    /// The furthest range end known to be followed by a gap: (end, the first key after it).
    gap: std::sync::Mutex<Option<(String, String)>>,
    /// Ranges started whose first page has not come back yet, and how many may be: at first
    /// `RANGES_AHEAD` (an empty guess costs one request that lists nothing; in the 20 ms
    /// benchmark starting with 2 and doubling took 0.26 s a no-op against 0.25 s, and 0.25 s
    /// against 0.23 s with `WARM_CONNECTIONS`), back to 1 after an empty range (where keys
    /// change shape, guesses beyond them would be empty too), doubled by each range that
    /// found keys.
    unanswered: AtomicUsize,
    ahead: AtomicUsize,
    wake: tokio::sync::Notify,
}

impl Shared {
    fn learn(&self, page: &[ObjectSummary]) {
        let Some(last) = page.last() else { return };
        if page.len() < 16 {
            return;
        }
        let further = |known: &Option<(String, KeySpace)>| match known {
            Some((seen, _)) => last.key > *seen,
            None => true,
        };
        if !further(&self.space.lock().expect("key space lock")) {
            return;
        }
        let keys: Vec<&str> = page.iter().map(|o| o.key.as_str()).collect();
        if let Some(space) = KeySpace::learn(&keys) {
            let mut known = self.space.lock().expect("key space lock");
            if further(&known) {
                *known = Some((last.key.clone(), space));
            }
        }
    }
}

/// A task stopped when its owner is dropped (a listing given up half-way lists no further).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl AbortOnDrop {
    /// Waits for a task whose work is over (its channel closed) and tells whether it ended by
    /// itself: a task that panicked closes its channel too, and what it did not list must
    /// not be read as absent (a sync would delete it from the destination).
    async fn ended(&mut self, path: &BucketPath, what: &str) -> Result<(), SyncError> {
        (&mut self.0).await.map_err(|e| SyncError::ListingStopped {
            path: path.to_string(),
            why: format!(
                "its {what} task {}",
                if e.is_panic() {
                    "panicked"
                } else {
                    "was cancelled"
                }
            ),
        })
    }
}

struct RangeTask {
    pages: mpsc::Receiver<PageResult>,
    task: AbortOnDrop,
    /// Given back to the planner when this range has been read (or dropped).
    _room: tokio::sync::OwnedSemaphorePermit,
}

/// One range of a listing: the keys after `start_after`, up to and with `end`.
struct Range {
    start_after: Option<String>,
    end: Option<String>,
    /// A probe lists one page and tells the planner where it stopped.
    probe: bool,
}

/// Starts the ranges of one side's listing, in key order, while there is room for them.
struct Planner {
    store: Arc<dyn ObjectStore>,
    path: Arc<BucketPath>,
    progress: Arc<SyncProgress>,
    side: Side,
    shared: Arc<Shared>,
    plan: Plan,
    started: mpsc::UnboundedSender<RangeTask>,
    /// One permit per range that may be started and not yet read (`RANGES_AHEAD`).
    room: Arc<tokio::sync::Semaphore>,
}

impl Planner {
    async fn run(mut self) {
        loop {
            let Ok(permit) = self.room.clone().acquire_owned().await else {
                return;
            };
            let range = loop {
                match self.next_range() {
                    Next::Start(range) => break range,
                    Next::Wait => self.shared.wake.notified().await,
                    Next::Finished => return,
                }
            };
            if !self.start(range, permit) {
                return;
            }
        }
    }

    /// Starts `range`; false when the reader is gone.
    fn start(&mut self, range: Range, permit: tokio::sync::OwnedSemaphorePermit) -> bool {
        let (tx, rx) = mpsc::channel(PAGES_AHEAD);
        self.shared.unanswered.fetch_add(1, Relaxed);
        let task = tokio::spawn(list_range(
            self.store.clone(),
            self.path.clone(),
            range,
            tx,
            self.shared.clone(),
            self.progress.clone(),
            self.side,
        ));
        let range = RangeTask {
            pages: rx,
            task: AbortOnDrop(task),
            _room: permit,
        };
        self.started.send(range).is_ok()
    }

    /// The next range to start, from what the range tasks have told so far.
    fn next_range(&mut self) -> Next {
        loop {
            match std::mem::replace(&mut self.plan, Plan::Finished) {
                Plan::Finished => return Next::Finished,
                Plan::Probing => match self.shared.probe.lock().expect("probe lock").take() {
                    None => {
                        self.plan = Plan::Probing;
                        return Next::Wait;
                    }
                    Some(None) => return Next::Finished,
                    Some(Some(last)) => self.plan = Plan::After(last),
                },
                Plan::After(_) if self.shared.exhausted.load(Relaxed) => return Next::Finished,
                Plan::After(cursor)
                    if self.shared.unanswered.load(Relaxed) >= self.shared.ahead.load(Relaxed) =>
                {
                    self.plan = Plan::After(cursor);
                    return Next::Wait;
                }
                Plan::After(cursor) => {
                    // Past a known gap, the next range is placed from the key after it.
                    let from = match &*self.shared.gap.lock().expect("gap lock") {
                        Some((end, next)) if **end <= *cursor && cursor < *next => next.clone(),
                        _ => cursor.clone(),
                    };
                    let split = self
                        .shared
                        .space
                        .lock()
                        .expect("key space lock")
                        .as_ref()
                        .and_then(|(_, space)| space.after(&from, RANGE_KEYS));
                    let probe = split.is_none();
                    self.plan = match &split {
                        Some(end) => Plan::After(end.clone()),
                        None => Plan::Probing,
                    };
                    return Next::Start(Range {
                        start_after: Some(cursor),
                        end: split,
                        probe,
                    });
                }
            }
        }
    }
}

impl Lister {
    fn spawn(
        store: Arc<dyn ObjectStore>,
        path: BucketPath,
        progress: Arc<SyncProgress>,
        side: Side,
    ) -> Self {
        let path = Arc::new(path);
        let warm_up = {
            let (store, bucket) = (store.clone(), path.bucket.clone());
            tokio::spawn(async move { store.warm_up(&bucket, WARM_CONNECTIONS).await })
        };
        let (started, ranges) = mpsc::unbounded_channel();
        let room = Arc::new(tokio::sync::Semaphore::new(RANGES_AHEAD));
        let mut planner = Planner {
            store,
            path: path.clone(),
            progress,
            side,
            shared: Arc::new(Shared {
                ahead: AtomicUsize::new(RANGES_AHEAD),
                ..Shared::default()
            }),
            plan: Plan::Probing,
            started,
            room: room.clone(),
        };
        let first = room.try_acquire_owned().expect("a new listing has room");
        planner.start(
            Range {
                start_after: None,
                end: None,
                probe: true,
            },
            first,
        );
        Lister {
            path,
            started: ranges,
            front: None,
            planner: Some(AbortOnDrop(tokio::spawn(planner.run()))),
            _warm_up: AbortOnDrop(warm_up),
            page: Vec::new().into_iter(),
            last: None,
        }
    }

    async fn next(&mut self) -> Result<Option<ObjectSummary>, SyncError> {
        loop {
            if let Some(o) = self.page.next() {
                return Ok(Some(o));
            }
            let front = match &mut self.front {
                Some(front) => front,
                None => match self.started.recv().await {
                    Some(range) => self.front.insert(range),
                    None => {
                        // Every range started has been read; the planner has ended.
                        if let Some(mut planner) = self.planner.take() {
                            planner.ended(&self.path, "planning").await?;
                        }
                        return Ok(None);
                    }
                },
            };
            match front.pages.recv().await {
                Some(page) => {
                    let page = page?;
                    // Each page was checked by its task; here where pages and ranges meet.
                    if let (Some(previous), Some(first)) = (&self.last, page.first()) {
                        if first.key <= *previous {
                            return Err(SyncError::Unsorted {
                                path: self.path.to_string(),
                                previous: previous.clone(),
                                key: first.key.clone(),
                            });
                        }
                    }
                    self.last = page.last().map(|o| o.key.clone()).or(self.last.take());
                    self.page = page.into_iter();
                }
                None => {
                    front.task.ended(&self.path, "listing").await?;
                    // Read whole: its permit goes back to the planner.
                    self.front = None;
                }
            }
        }
    }
}

/// Lists one range into `tx`, a page at a time.
async fn list_range(
    store: Arc<dyn ObjectStore>,
    path: Arc<BucketPath>,
    range: Range,
    tx: mpsc::Sender<PageResult>,
    shared: Arc<Shared>,
    progress: Arc<SyncProgress>,
    side: Side,
) {
    let mut token: Option<String> = None;
    // The last key this range has listed (its start before any), and the fewest keys its next
    // page asks for.
    let mut cursor = range.start_after.clone().unwrap_or_default();
    let mut at_least = PAGE_FLOOR;
    loop {
        let start_after = range.start_after.as_deref().filter(|_| token.is_none());
        let max_keys = match &range.end {
            Some(end) => {
                let space = shared.space.lock().expect("key space lock");
                page_keys(space.as_ref().map(|(_, s)| s), &cursor, end, at_least)
            }
            None => PAGE_KEYS,
        };
        let page = retry(|| {
            let token = token.clone();
            store.list_page_after(&path.bucket, &path.prefix, start_after, token, max_keys)
        })
        .await;
        let page = match page {
            Ok(page) => page,
            Err(PortError::NotFound { .. }) if token.is_none() => {
                let bucket = path.bucket.clone();
                let _ = tx.send(Err(SyncError::MissingBucket { bucket })).await;
                return;
            }
            Err(source) => {
                let path = path.to_string();
                let _ = tx.send(Err(SyncError::List { path, source })).await;
                return;
            }
        };
        // A merge-join of unsorted listings would copy and delete the wrong objects. The whole
        // page is checked here, also what lies past the range's end (dropped below).
        let keys = start_after.into_iter();
        let keys = keys.chain(page.objects.iter().map(|o| o.key.as_str()));
        if let Some((previous, key)) = first_out_of_order(keys) {
            let (path, previous, key) = (path.to_string(), previous.into(), key.into());
            let error = SyncError::Unsorted {
                path,
                previous,
                key,
            };
            let _ = tx.send(Err(error)).await;
            return;
        }
        shared.learn(&page.objects);
        let mut objects = page.objects;
        let last = objects.last().map(|o| o.key.clone());
        let mut past_end = false;
        let mut at_end = false;
        let mut beyond = None;
        if let Some(end) = &range.end {
            // The range holds its end (the next range starts after it): a key equal to a
            // split point is listed once.
            if let Some(cut) = objects.iter().position(|o| o.key > *end) {
                beyond = objects.drain(cut..).next().map(|o| o.key);
                past_end = true;
            }
            // A page that ends with the range's end key: nothing more of this range.
            at_end = last.as_ref() == Some(end);
        }
        if let Some(last) = &last {
            cursor.clone_from(last);
        }
        if max_keys < PAGE_KEYS {
            // This page was to be the range's last; if it was not, the estimate is too small.
            at_least = (max_keys * 2).min(PAGE_KEYS);
        }
        if page.next_token.is_none() && !past_end {
            // Nothing after this range's end: the ranges after it would be empty.
            shared.exhausted.store(true, Relaxed);
        }
        if let (Some(end), Some(next)) = (&range.end, beyond) {
            // No key lies between this range's end and `next`.
            let mut gap = shared.gap.lock().expect("gap lock");
            if gap.as_ref().is_none_or(|(known, _)| known < end) {
                *gap = Some((end.clone(), next));
            }
        }
        if token.is_none() {
            if !range.probe {
                let ahead = if objects.is_empty() {
                    1
                } else {
                    (shared.ahead.load(Relaxed) * 2).min(RANGES_AHEAD)
                };
                shared.ahead.store(ahead, Relaxed);
            }
            shared.unanswered.fetch_sub(1, Relaxed);
            shared.wake.notify_one();
        }
        // A probe ends with its first page that has keys (or with the listing).
        let probe_done = range.probe && (last.is_some() || page.next_token.is_none());
        if probe_done {
            *shared.probe.lock().expect("probe lock") = Some(page.next_token.as_ref().and(last));
            shared.wake.notify_one();
        }
        let counter = match side {
            Side::Source => &progress.source_listed,
            Side::Target => &progress.target_listed,
        };
        counter.fetch_add(objects.len() as u64, Relaxed);
        if !objects.is_empty() && tx.send(Ok(objects)).await.is_err() {
            return;
        }
        match page.next_token {
            Some(next) if !past_end && !at_end && !probe_done => token = Some(next),
            _ => return,
        }
    }
}

/// The fewest keys a range's page asks for.
const PAGE_FLOOR: usize = 64;

/// How many keys the next page of a range ending at `end` asks for, after `cursor`: the
/// key space's estimate of the keys left up to the end, with a margin, so that the range's
/// last page holds its end and few keys past it (S3 has no end bound: what a page holds past
/// the end is listed again by the next range, and dropped here), and at least `at_least`.
/// Only a cost rides on the estimate, never the listing: a page that was to be the last and
/// fell short of the end is followed by one that asks for at least twice as many keys (the
/// caller's `at_least`), so a far too small estimate costs a few pages, not hundreds.
fn page_keys(space: Option<&KeySpace>, cursor: &str, end: &str, at_least: usize) -> usize {
    let Some(left) = space.and_then(|s| s.keys_between(cursor, end)) else {
        return PAGE_KEYS;
    };
    let ask = (left * 1.05 + 16.0).min(PAGE_KEYS as f64) as usize;
    ask.max(at_least).clamp(PAGE_FLOOR, PAGE_KEYS)
}

/// The first pair of neighbours that is not in strictly increasing order.
fn first_out_of_order<'a>(mut keys: impl Iterator<Item = &'a str>) -> Option<(&'a str, &'a str)> {
    let mut previous = keys.next()?;
    for key in keys {
        if key <= previous {
            return Some((previous, key));
        }
        previous = key;
    }
    None
}

/// Keys read as numbers, to place listing split points about N keys ahead of a key: past a
/// common prefix, each character position is a digit whose alphabet was learned from listed
/// keys (a digit seen stands for 0-9, a lowercase letter for a-f or a-z, …; 0 = the key
/// ended). Reading a key is monotone (a character outside an alphabet reads as its nearest
/// lower neighbour), so a split point is only ever a guess about where keys are — never a
/// reason to miss one: the ranges it bounds are contiguous whatever it is.
#[derive(Debug, Clone)]
struct KeySpace {
    prefix: String,
    alphabets: Vec<Vec<char>>,
    /// The number of values: the product of the radices (alphabet length + 1).
    size: u128,
    /// Values per key, from the keys it was learned from.
    per_key: f64,
}

impl KeySpace {
    /// From keys listed in order (a page): the alphabets and the density of its second half,
    /// read from 4 characters before where that half varies (room to carry).
    fn learn(keys: &[&str]) -> Option<KeySpace> {
        const ROOM: usize = 4;
        if keys.len() < 16 {
            return None;
        }
        let sample = &keys[keys.len() / 2..];
        let (x, y) = (sample[0], *sample.last()?);
        let common = x.chars().zip(y.chars()).take_while(|(p, q)| p == q).count();
        let start = common.saturating_sub(ROOM);
        let prefix: String = y.chars().take(start).collect();
        let tails: Vec<Vec<char>> = sample
            .iter()
            .map(|k| k.chars().skip(start).collect())
            .collect();
        let mut alphabets = Vec::new();
        let mut size: u128 = 1;
        for i in 0.. {
            let seen: std::collections::BTreeSet<char> =
                tails.iter().filter_map(|t| t.get(i).copied()).collect();
            if seen.is_empty() {
                break;
            }
            let alphabet = expand_alphabet(&seen);
            let radix = alphabet.len() as u128 + 1;
            match size.checked_mul(radix) {
                Some(s) if s <= 1 << 100 => size = s,
                _ => break,
            }
            alphabets.push(alphabet);
        }
        let mut space = KeySpace {
            prefix,
            alphabets,
            size,
            per_key: 0.0,
        };
        let (vx, vy) = (space.value(x)?, space.value(y)?);
        if vy <= vx {
            return None;
        }
        space.per_key = (vy - vx) as f64 / (sample.len() - 1) as f64;
        Some(space)
    }

    fn value(&self, key: &str) -> Option<u128> {
        if key < self.prefix.as_str() {
            return Some(0);
        }
        let mut chars = key.strip_prefix(self.prefix.as_str())?.chars();
        let mut value: u128 = 0;
        for alphabet in &self.alphabets {
            let digit = match chars.next() {
                None => 0,
                Some(c) => {
                    let below = alphabet.partition_point(|&a| a < c);
                    below + usize::from(alphabet.get(below) == Some(&c))
                }
            };
            value = value * (alphabet.len() as u128 + 1) + digit as u128;
        }
        Some(value)
    }

    fn key(&self, mut value: u128) -> String {
        let mut digits = vec![0; self.alphabets.len()];
        for (digit, alphabet) in digits.iter_mut().zip(&self.alphabets).rev() {
            let radix = alphabet.len() as u128 + 1;
            *digit = (value % radix) as usize;
            value /= radix;
        }
        let mut key = self.prefix.clone();
        for (&digit, alphabet) in digits.iter().zip(&self.alphabets) {
            if digit == 0 {
                break;
            }
            key.push(alphabet[digit - 1]);
        }
        key
    }

    /// About how many keys lie after `from` up to `to`, if this space can read both.
    fn keys_between(&self, from: &str, to: &str) -> Option<f64> {
        let (from, to) = (self.value(from)?, self.value(to)?);
        Some(to.saturating_sub(from) as f64 / self.per_key)
    }

    /// A key about `keys` keys after `cursor` (always after it), if this space can tell.
    fn after(&self, cursor: &str, keys: f64) -> Option<String> {
        let from = self.value(cursor)?;
        let mut step = (self.per_key * keys).max(1.0);
        for _ in 0..8 {
            let to = from.checked_add(step as u128)?;
            if to >= self.size {
                return None;
            }
            let key = self.key(to);
            if key.len() > MAX_KEY_BYTES {
                // S3 refuses a longer start-after (multibyte characters in the alphabets can
                // make a split point longer than the keys it was learned from).
                return None;
            }
            if key.as_str() > cursor {
                return Some(key);
            }
            step *= 2.0;
        }
        None
    }
}

/// The characters a position may hold, from those seen there: a digit stands for all ten, a
/// lowercase (uppercase) letter for a-f (A-F) when every one seen is a hex digit, else for
/// the alphabet; anything else for itself.
fn expand_alphabet(seen: &std::collections::BTreeSet<char>) -> Vec<char> {
    let lower_hex = seen.iter().all(|c| !c.is_ascii_lowercase() || *c <= 'f');
    let upper_hex = seen.iter().all(|c| !c.is_ascii_uppercase() || *c <= 'F');
    let mut out = std::collections::BTreeSet::new();
    for &c in seen {
        match c {
            '0'..='9' => out.extend('0'..='9'),
            'a'..='z' if lower_hex => out.extend('a'..='f'),
            'a'..='z' => out.extend('a'..='z'),
            'A'..='Z' if upper_hex => out.extend('A'..='F'),
            'A'..='Z' => out.extend('A'..='Z'),
            _ => {
                out.insert(c);
            }
        }
    }
    out.into_iter().collect()
}

/// One step of the merge-join of two sorted listings.
#[derive(Debug, PartialEq, Eq)]
enum Joined {
    OnlySource(ObjectSummary),
    OnlyTarget(ObjectSummary),
    Both(ObjectSummary, ObjectSummary),
}

/// Walks both listings in key order (S3 lists in UTF-8 byte order, which is `str`'s order).
/// Keys are compared relative to each side's prefix. Holds a few pages per side at most.
struct MergeJoin {
    left: SourceListing,
    right: Lister,
    src_prefix: usize,
    dst_prefix: usize,
    a: Option<as_of::AsOfEntry>,
    b: Option<ObjectSummary>,
}

fn relative(key: &str, prefix: usize) -> &str {
    key.get(prefix..).unwrap_or(key)
}

/// The source side of a merge-join: the bucket as it is (ListObjectsV2), or as it was at a
/// moment T (from its versions).
enum SourceListing {
    Current(Lister),
    AsOf(Box<as_of::AsOfLister>),
}

impl SourceListing {
    async fn next(&mut self) -> Result<Option<as_of::AsOfEntry>, SyncError> {
        match self {
            SourceListing::Current(l) => Ok(l.next().await?.map(as_of::AsOfEntry::Held)),
            SourceListing::AsOf(l) => l.next().await,
        }
    }

    /// Keys whose state at T could not be told (only as of T).
    fn unknown(&mut self) -> Vec<SyncError> {
        match self {
            SourceListing::Current(_) => Vec::new(),
            SourceListing::AsOf(l) => std::mem::take(&mut l.unknown),
        }
    }
}

impl MergeJoin {
    fn new(
        store: &Arc<dyn ObjectStore>,
        src: &BucketPath,
        dst: &BucketPath,
        progress: &Arc<SyncProgress>,
        as_of: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Self {
        let left = match as_of {
            None => SourceListing::Current(Lister::spawn(
                store.clone(),
                src.clone(),
                progress.clone(),
                Side::Source,
            )),
            Some(t) => SourceListing::AsOf(Box::new(as_of::AsOfLister::new(
                store.clone(),
                src.clone(),
                t,
                progress.clone(),
            ))),
        };
        MergeJoin {
            left,
            right: Lister::spawn(store.clone(), dst.clone(), progress.clone(), Side::Target),
            src_prefix: src.prefix.len(),
            dst_prefix: dst.prefix.len(),
            a: None,
            b: None,
        }
    }

    async fn next(&mut self) -> Result<Option<Joined>, SyncError> {
        loop {
            // Both sides' first pages are in before anything is joined: a missing bucket on
            // either side is found before any change.
            if self.a.is_none() {
                self.a = self.left.next().await?;
            }
            if self.b.is_none() {
                self.b = self.right.next().await?;
            }
            let a = match self.a.take() {
                Some(as_of::AsOfEntry::OnlyAfter(key)) => {
                    let y = self.b.as_ref().map(|y| relative(&y.key, self.dst_prefix));
                    match y.map(|y| relative(&key, self.src_prefix).cmp(y)) {
                        // The target's copy of it: reported, neither deleted nor replaced.
                        Some(std::cmp::Ordering::Equal) => {
                            self.b = None;
                            if let SourceListing::AsOf(l) = &mut self.left {
                                l.gone_before_t(key);
                            }
                        }
                        // Target keys before it are joined first.
                        Some(std::cmp::Ordering::Greater) => {
                            self.a = Some(as_of::AsOfEntry::OnlyAfter(key));
                            let y = self.b.take().expect("compared");
                            return Ok(Some(Joined::OnlyTarget(y)));
                        }
                        // Nothing of it in the target: nothing to do.
                        _ => {}
                    }
                    continue;
                }
                Some(as_of::AsOfEntry::Held(x)) => Some(x),
                None => None,
            };
            return Ok(self.join(a));
        }
    }

    /// Joins the source's object `a` (None: the source has no more) with the target's next.
    fn join(&mut self, a: Option<ObjectSummary>) -> Option<Joined> {
        let joined = match (a, self.b.take()) {
            (None, None) => return None,
            (Some(x), None) => Joined::OnlySource(x),
            (None, Some(y)) => Joined::OnlyTarget(y),
            (Some(x), Some(y)) => {
                let kx = relative(&x.key, self.src_prefix);
                let ky = relative(&y.key, self.dst_prefix);
                match kx.cmp(ky) {
                    std::cmp::Ordering::Less => {
                        self.b = Some(y);
                        Joined::OnlySource(x)
                    }
                    std::cmp::Ordering::Greater => {
                        self.a = Some(as_of::AsOfEntry::Held(x));
                        Joined::OnlyTarget(y)
                    }
                    std::cmp::Ordering::Equal => Joined::Both(x, y),
                }
            }
        };
        Some(joined)
    }
}

/// `"abc-3"` → Some(3): the object was uploaded in 3 parts.
pub fn multipart_parts(etag: &str) -> Option<u32> {
    etag.rsplit_once('-').and_then(|(_, n)| n.parse().ok())
}

/// Whether the target's copy is the source's object: same size and same ETag. A multipart
/// ETag is the MD5 of the part MD5s, so it is equal only for the same bytes in the same part
/// layout — which is how this engine copies multipart objects. This is the fast path, which
/// needs no request: where the ETags differ and the sizes do not, `compare_content` asks the
/// checksums (SSE-KMS ETags differ between an object and each copy of it), and only what they
/// cannot tell is copied again: never skipped on a guess.
pub fn is_unchanged(source: &ObjectSummary, target: &ObjectSummary) -> bool {
    source.size == target.size && source.etag == target.etag
}

/// Whether the source was written after the target's copy of it was made (S3's LastModified,
/// whole seconds, on both sides): the same bytes written again with other headers or metadata
/// (a PutObject of the same body, a CopyObject onto itself with REPLACE) keep their ETag
/// ("Checking object integrity": the ETag reflects the content), so only this tells that the
/// copy is stale. A change of tags alone (PutObjectTagging) changes neither.
fn written_since_copied(source: &ObjectSummary, target: &ObjectSummary) -> bool {
    matches!((source.last_modified, target.last_modified), (Some(s), Some(t)) if s > t)
}

/// Whether an object's ETag is the MD5 of its bytes, as HeadObject describes it: not for a
/// multipart upload (the MD5 of its parts' MD5s), not for SSE-KMS ("Using server-side
/// encryption with AWS KMS keys (SSE-KMS)": the ETag "is not an MD5 digest of the object
/// data"; SSE-C objects fail their HeadObject before this is asked).
fn etag_is_md5(etag: &str, head: &ObjectHead) -> bool {
    multipart_parts(etag).is_none() && !head.encryption.as_ref().is_some_and(|e| e.is_kms())
}

/// What a look at two objects of the same size whose ETags differ found.
#[derive(Debug)]
enum Content {
    Same,
    Differs(String),
    /// Neither the ETags nor the checksums can tell (a source without a checksum).
    Unknown,
}

/// Compares two objects of the same size whose ETags differ, by their HeadObjects (with
/// checksums): where both ETags are MD5s they tell; otherwise ("Checking object integrity":
/// compare the checksums S3 keeps) their checksums of one algorithm do — full-object ones
/// whatever the part layouts, composite ones only when equal (a composite checksum depends on
/// the part layout). Returns both heads for the callers' further checks.
async fn compare_content(
    store: &dyn ObjectStore,
    src_bucket: &str,
    s: &ObjectSummary,
    dst_bucket: &str,
    d: &ObjectSummary,
) -> Result<(Content, ObjectHead, ObjectHead), SyncError> {
    let pair = [
        (src_bucket, s.key.as_str(), s.version_id.as_deref()),
        (dst_bucket, d.key.as_str(), None),
    ];
    let (sh, dh) = ask_both(pair, |b, k, v| store.head_object_version(b, k, v, None)).await?;
    let content = if etag_is_md5(&s.etag, &sh) && etag_is_md5(&d.etag, &dh) {
        Content::Differs(format!(
            "ETag {} in the source, {} in the target",
            s.etag, d.etag
        ))
    } else {
        match (&sh.checksum, &dh.checksum) {
            (Some(a), Some(b)) if a.algorithm == b.algorithm && a.value == b.value => Content::Same,
            (Some(a), Some(b)) if a.algorithm == b.algorithm && a.full_object && b.full_object => {
                Content::Differs(format!(
                    "content differs ({} checksum {} in the source, {} in the target)",
                    a.algorithm, a.value, b.value
                ))
            }
            _ => Content::Unknown,
        }
    };
    Ok((content, sh, dh))
}

/// One question (with retries) asked of two objects at once — the source's and the target's;
/// a failure names the object.
async fn ask_both<'a, T, Fut>(
    pair: [(&'a str, &'a str, Option<&'a str>); 2],
    ask: impl Fn(&'a str, &'a str, Option<&'a str>) -> Fut,
) -> Result<(T, T), SyncError>
where
    Fut: std::future::Future<Output = Result<T, PortError>>,
{
    let one = |(bucket, key, version): (&'a str, &'a str, Option<&'a str>)| {
        let ask = &ask;
        async move {
            retry(|| ask(bucket, key, version))
                .await
                .map_err(|source| SyncError::Copy {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                    source,
                })
        }
    };
    tokio::try_join!(one(pair[0]), one(pair[1]))
}

/// The checksum algorithm a copy of `object` asks for: the one its source lists (S3 computes
/// it afresh from the copied bytes, so the copy's checksum proves them), CRC64NVME where it
/// lists none; none for a multipart source that lists one, whose checksum may be composite —
/// the copy carries S3's own then (CopyObject API, x-amz-checksum-algorithm).
fn copy_checksum(object: &ObjectSummary) -> Option<String> {
    match &object.checksum_algorithm {
        None => Some(COPY_CHECKSUM.to_string()),
        Some(a) if multipart_parts(&object.etag).is_none() => Some(a.clone()),
        Some(_) => None,
    }
}

/// Whether a copy kept its source's encryption: an SSE-KMS (DSSE-KMS) source's KMS key, an
/// SSE-S3 source's SSE-S3. A source that names no encryption (written before S3 encrypted
/// every new object, January 2023) has none to keep: the destination's default is kept.
fn same_encryption(source: Option<&ObjectEncryption>, copy: Option<&ObjectEncryption>) -> bool {
    let Some(source) = source else { return true };
    match copy.filter(|e| e.is_kms()) {
        None => !source.is_kms(),
        Some(copy) => {
            source.algorithm == copy.algorithm
                && (source.kms_key_id.is_none() || source.kms_key_id == copy.kms_key_id)
        }
    }
}

/// What the tasks of one sync share.
struct CopyContext {
    store: Arc<dyn ObjectStore>,
    src: BucketPath,
    dst: BucketPath,
    options: SyncOptions,
    progress: Arc<SyncProgress>,
    whole_copy: WholeCopy,
    /// An SSE-KMS source was met: from now on each copy heads its source first and asks for
    /// its encryption at once (instead of copying, then finding the encryption wrong).
    encrypted_seen: AtomicBool,
    /// The caller's stop flag (Ctrl-C), for the copy tasks, which do not see the caller's
    /// task-local one: a copy decided in a task does not start after it is set.
    stop: Option<Arc<AtomicBool>>,
}

impl CopyContext {
    fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Relaxed))
    }
}

/// Whether multipart objects (up to 5 GiB) go by CopyObject on this server, learned once per
/// run. AWS reproduces a multipart ETag only from part copies in the source's layout — the
/// engine's way. Some S3-compatible servers (SeaweedFS) give part copies other ETags, so every
/// re-sync would copy those objects again, but keep the ETag on CopyObject. The run's first
/// multipart copy goes in parts; if its ETag differs from the source's, one CopyObject of it
/// tells whether that way keeps it, and if so the run's other multipart objects go by
/// CopyObject (one request instead of several). At most one extra copy per run where neither
/// way keeps the ETag (e.g. SSE-KMS objects, whose ETags are no digests). The other multipart
/// copies wait for that first one.
#[derive(Default)]
struct WholeCopy(tokio::sync::OnceCell<bool>);

impl CopyContext {
    fn target_key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        if self.src.prefix == self.dst.prefix {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(format!(
                "{}{}",
                self.dst.prefix,
                relative(key, self.src.prefix.len())
            ))
        }
    }

    async fn copy(self: Arc<Self>, object: ObjectSummary) -> Result<Done, SyncError> {
        let dst_key = self.target_key(&object.key);
        let multipart =
            copy_one(&self, &object, &dst_key)
                .await
                .map_err(|source| match &source {
                    PortError::Failed { message, .. } if message == INTERRUPTED_BEFORE_UPLOAD => {
                        SyncError::Stopped
                    }
                    _ => SyncError::Copy {
                        bucket: self.src.bucket.clone(),
                        key: object.key.clone(),
                        source,
                    },
                })?;
        self.progress.copied.fetch_add(1, Relaxed);
        self.progress.copied_bytes.fetch_add(object.size, Relaxed);
        Ok(Done::Copied {
            bytes: object.size,
            multipart,
            without_checksum: false,
        })
    }

    /// Same size, other ETag: copies the object unless its checksum shows it is the same
    /// (SSE-KMS ETags differ between an object and every copy of it).
    async fn recheck(
        self: Arc<Self>,
        s: ObjectSummary,
        d: ObjectSummary,
    ) -> Result<Done, SyncError> {
        let (content, sh, dh) =
            compare_content(&*self.store, &self.src.bucket, &s, &self.dst.bucket, &d).await?;
        let unknown = matches!(content, Content::Unknown);
        if matches!(content, Content::Same)
            && (self.options.sse == SseMode::DestinationDefault
                || same_encryption(sh.encryption.as_ref(), dh.encryption.as_ref()))
        {
            self.progress.unchanged.fetch_add(1, Relaxed);
            return Ok(Done::Unchanged);
        }
        if self.stopped() {
            // Ctrl-C while the checksums were asked for: this copy is a new change, not one in
            // flight.
            return Err(SyncError::Stopped);
        }
        self.progress.to_copy.fetch_add(1, Relaxed);
        self.progress.to_copy_bytes.fetch_add(s.size, Relaxed);
        let done = self.copy(s).await?;
        Ok(match done {
            Done::Copied {
                bytes, multipart, ..
            } => Done::Copied {
                bytes,
                multipart,
                without_checksum: unknown,
            },
            other => other,
        })
    }

    async fn delete(self: Arc<Self>, keys: Vec<String>) -> Result<Done, SyncError> {
        retry(|| self.store.delete_objects(&self.dst.bucket, &keys))
            .await
            .map_err(|source| SyncError::Delete {
                bucket: self.dst.bucket.clone(),
                count: keys.len(),
                first: keys.first().cloned().unwrap_or_default(),
                source,
            })?;
        let n = keys.len() as u64;
        self.progress.deleted.fetch_add(n, Relaxed);
        Ok(Done::Deleted(n))
    }
}

/// What one task of a sync did.
enum Done {
    Copied {
        bytes: u64,
        multipart: bool,
        without_checksum: bool,
    },
    /// Compared by checksum and found the same.
    Unchanged,
    Deleted(u64),
}

/// Empties a bucket whole so DeleteBucket can succeed: every object version and every delete
/// marker (ListObjectVersions, then DeleteObjects with each VersionId, 1,000 a request). In a
/// versioned bucket a plain delete only adds a delete marker, and DeleteBucket answers
/// BucketNotEmpty while any version or marker remains ("Deleting a bucket", "Deleting object
/// versions from a versioning-enabled bucket"); a bucket that never had versioning lists each
/// object once with version id `null`. Listing starts again from the beginning after each
/// batch, so what is written meanwhile goes too. Returns how many versions and markers it
/// deleted; a missing bucket is already empty.
pub async fn empty_bucket(store: &dyn ObjectStore, bucket: &str) -> Result<u64, PortError> {
    let mut deleted = 0u64;
    let mut last_first: Option<crate::ports::ObjectVersion> = None;
    loop {
        let page = match retry(|| store.list_versions_page(bucket, None)).await {
            Ok(page) => page,
            Err(PortError::NotFound { .. }) if deleted == 0 => return Ok(0),
            Err(e) => return Err(e),
        };
        let Some(first) = page.versions.first().cloned() else {
            return Ok(deleted);
        };
        if last_first.as_ref() == Some(&first) {
            return Err(PortError::failed(
                "s3:DeleteObjects",
                format!(
                    "bucket {bucket}: version {} of {} is still listed after DeleteObjects \
                     reported it deleted; empty the bucket (every version and delete marker) \
                     and run the command again",
                    first.version_id, first.key
                ),
            ));
        }
        for batch in page.versions.chunks(DELETE_BATCH) {
            retry(|| store.delete_versions(bucket, batch)).await?;
            deleted += batch.len() as u64;
        }
        last_first = Some(first);
    }
}

/// Copies every object of `src` that `dst` lacks or holds in another version. Objects equal by
/// size and ETag are left alone, so a re-run copies only what changed.
pub async fn sync(
    store: Arc<dyn ObjectStore>,
    src: &BucketPath,
    dst: &BucketPath,
    options: &SyncOptions,
) -> Result<SyncStats, SyncError> {
    let progress = Arc::new(SyncProgress::default());
    sync_with(store, src, dst, options, &progress, &mut |_| {}).await
}

/// `sync` with live counters, and a callback told of every change decided on (in a dry run,
/// instead of making it). Memory does not grow with the number of objects: a few listing
/// pages, the objects in flight, and one batch of keys to delete.
pub async fn sync_with(
    store: Arc<dyn ObjectStore>,
    src: &BucketPath,
    dst: &BucketPath,
    options: &SyncOptions,
    progress: &Arc<SyncProgress>,
    planned: &mut (dyn FnMut(Planned<'_>) + Send),
) -> Result<SyncStats, SyncError> {
    let mut stats = SyncStats::default();
    let concurrency = options.concurrency.max(1);
    let mut join = MergeJoin::new(&store, src, dst, progress, options.as_of);
    let context = Arc::new(CopyContext {
        store,
        src: src.clone(),
        dst: dst.clone(),
        options: options.clone(),
        progress: progress.clone(),
        whole_copy: WholeCopy::default(),
        encrypted_seen: AtomicBool::new(false),
        stop: crate::retry::stop_flag(),
    });
    let mut tasks: JoinSet<Result<Done, SyncError>> = JoinSet::new();
    let mut failures = Failures::default();
    let mut deletes: Vec<String> = Vec::new();
    let result: Result<(), SyncError> = async {
        while let Some(joined) = join.next().await? {
            if crate::retry::stopped() {
                // Ctrl-C: the copies in flight finish (below); no new one starts.
                return Err(SyncError::Stopped);
            }
            while let Some(done) = tasks.try_join_next() {
                failures.record(&mut stats, done);
            }
            if failures.first.is_some() {
                break;
            }
            match joined {
                Joined::Both(s, d)
                    if !written_since_copied(&s, &d)
                        && (is_unchanged(&s, &d)
                            || known_same(options.same_bytes.as_deref(), &s, &d)) =>
                {
                    stats.unchanged += 1;
                    progress.unchanged.fetch_add(1, Relaxed);
                }
                Joined::OnlySource(object) | Joined::Both(object, _)
                    if options.skip_archived && is_archived(&object) =>
                {
                    stats.skipped_archived += 1;
                    stats.skipped_archived_bytes += object.size;
                    if stats.skipped_archived_keys.len() < ARCHIVED_KEYS_KEPT {
                        stats.skipped_archived_keys.push(object.key);
                    }
                }
                // Same size, other ETag: the same bytes when the ETags are no MD5s (SSE-KMS,
                // multipart) and the checksums agree — looked at before copying, by a task.
                Joined::Both(s, d)
                    if s.size == d.size && !options.dry_run && !written_since_copied(&s, &d) =>
                {
                    while tasks.len() >= concurrency {
                        if let Some(done) = tasks.join_next().await {
                            failures.record(&mut stats, done);
                        }
                    }
                    tasks.spawn(context.clone().recheck(s, d));
                }
                Joined::Both(s, d)
                    if options.dry_run
                        && s.size == d.size
                        && !written_since_copied(&s, &d)
                        && matches!(
                            compare_content(&*context.store, &src.bucket, &s, &dst.bucket, &d)
                                .await,
                            Ok((Content::Same, ref sh, ref dh))
                                if options.sse == SseMode::DestinationDefault
                                    || same_encryption(sh.encryption.as_ref(), dh.encryption.as_ref())
                        ) =>
                {
                    stats.unchanged += 1;
                    stats.unchanged_by_checksum += 1;
                    progress.unchanged.fetch_add(1, Relaxed);
                }
                Joined::OnlySource(object) | Joined::Both(object, _) => {
                    progress.to_copy.fetch_add(1, Relaxed);
                    progress.to_copy_bytes.fetch_add(object.size, Relaxed);
                    if options.dry_run {
                        planned(Planned::Copy {
                            source_key: &object.key,
                            version_id: object.version_id.as_deref(),
                            target_key: &context.target_key(&object.key),
                            size: object.size,
                        });
                        stats.record(Done::Copied {
                            bytes: object.size,
                            multipart: multipart_parts(&object.etag).is_some()
                                || object.size > options.multipart_threshold,
                            without_checksum: false,
                        });
                        continue;
                    }
                    while tasks.len() >= concurrency {
                        if let Some(done) = tasks.join_next().await {
                            failures.record(&mut stats, done);
                        }
                    }
                    tasks.spawn(context.clone().copy(object));
                }
                Joined::OnlyTarget(object) => {
                    stats.extra += 1;
                    if !options.delete {
                        continue;
                    }
                    progress.to_delete.fetch_add(1, Relaxed);
                    if options.dry_run {
                        planned(Planned::Delete {
                            target_key: &object.key,
                        });
                        stats.deleted += 1;
                        continue;
                    }
                    deletes.push(object.key);
                    if deletes.len() == DELETE_BATCH {
                        while tasks.len() >= concurrency {
                            if let Some(done) = tasks.join_next().await {
                                failures.record(&mut stats, done);
                            }
                        }
                        tasks.spawn(context.clone().delete(std::mem::take(&mut deletes)));
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    progress.listing_done.store(true, Relaxed);
    stats.listed = progress.source_listed.load(Relaxed);
    for e in join.left.unknown() {
        failures.push(e);
    }
    if result.is_ok() && failures.first.is_none() && !deletes.is_empty() {
        tasks.spawn(context.clone().delete(deletes));
    }
    // Whatever happened, let the copies in flight finish (a multipart copy aborts its own
    // upload on failure) instead of cutting them off.
    while let Some(done) = tasks.join_next().await {
        failures.record(&mut stats, done);
    }
    if let Err(e) = result {
        failures.push(e);
    }
    if failures.customer_keys > 0 {
        // The SSE-C refusal first: it names what to do about those objects.
        let refusal = SyncError::CustomerKey {
            bucket: src.bucket.clone(),
            count: failures.customer_keys,
            keys: std::mem::take(&mut failures.customer_key_names),
        };
        if failures.first.take().is_some() {
            failures.more += 1;
        }
        failures.first = Some(refusal);
    }
    failures.result(stats)
}

/// Copies exactly these versions (key, version id) of `src`'s objects into `dst`, each read by
/// its version id (HeadObject, then CopyObject or UploadPartCopy with `versionId`) with the
/// engine's copy (part layout, headers, tags, encryption): what an S3 Batch Operations job of a
/// copy as of T left to this machine (its failed tasks, the objects over its copy limit). Not a
/// sync: nothing is compared first and nothing else is listed. A version that no longer exists
/// (NoSuchVersion: expired by a lifecycle rule, deleted by version id) fails the copy naming it.
pub async fn copy_versions(
    store: Arc<dyn ObjectStore>,
    src: &BucketPath,
    dst: &BucketPath,
    options: &SyncOptions,
    versions: &[(String, String)],
) -> Result<SyncStats, SyncError> {
    let context = Arc::new(CopyContext {
        store,
        src: src.clone(),
        dst: dst.clone(),
        options: options.clone(),
        progress: Arc::new(SyncProgress::default()),
        whole_copy: WholeCopy::default(),
        encrypted_seen: AtomicBool::new(false),
        stop: crate::retry::stop_flag(),
    });
    let mut stats = SyncStats::default();
    let mut failures = Failures::default();
    let mut tasks: JoinSet<Result<Done, SyncError>> = JoinSet::new();
    for (key, version) in versions {
        while tasks.len() >= options.concurrency.max(1) {
            if let Some(done) = tasks.join_next().await {
                failures.record(&mut stats, done);
            }
        }
        let (context, key, version) = (context.clone(), key.clone(), version.clone());
        tasks.spawn(async move {
            let head = retry(|| {
                context
                    .store
                    .head_object_version(&context.src.bucket, &key, Some(&version), None)
            })
            .await
            .map_err(|source| SyncError::Copy {
                bucket: context.src.bucket.clone(),
                key: format!("{key}?versionId={version}"),
                source,
            })?;
            let object = ObjectSummary {
                key,
                size: head.size,
                etag: head.etag,
                storage_class: head.storage_class,
                restored: false,
                checksum_algorithm: head.checksum.map(|c| c.algorithm),
                version_id: Some(version),
                last_modified: None,
            };
            context.copy(object).await
        });
    }
    while let Some(done) = tasks.join_next().await {
        failures.record(&mut stats, done);
    }
    stats.listed = versions.len() as u64;
    failures.result(stats)
}

/// The first failure of a sync and how many followed it.
#[derive(Default)]
struct Failures {
    first: Option<SyncError>,
    more: u64,
    /// Objects S3 would not read without their customer-provided key (SSE-C), and the first
    /// few of their keys.
    customer_keys: u64,
    customer_key_names: Vec<String>,
}

impl Failures {
    /// The run's stats, or its first failure (with how many followed).
    fn result(self, stats: SyncStats) -> Result<SyncStats, SyncError> {
        match self.first {
            None => Ok(stats),
            Some(first) if self.more == 0 => Err(first),
            Some(first) => Err(SyncError::Several {
                first: Box::new(first),
                more: self.more,
            }),
        }
    }

    fn push(&mut self, e: SyncError) {
        if let SyncError::Copy { key, source, .. } = &e {
            if is_customer_key_refusal(source) {
                self.customer_keys += 1;
                if self.customer_key_names.len() < CUSTOMER_KEYS_NAMED {
                    self.customer_key_names.push(key.clone());
                }
                return;
            }
        }
        if matches!(e, SyncError::Stopped) && matches!(self.first, Some(SyncError::Stopped)) {
            return; // one interruption, however many tasks saw it
        }
        if self.first.is_none() {
            self.first = Some(e);
        } else {
            self.more += 1;
        }
    }

    fn record(
        &mut self,
        stats: &mut SyncStats,
        done: Result<Result<Done, SyncError>, tokio::task::JoinError>,
    ) {
        match done {
            Ok(Ok(done)) => stats.record(done),
            Ok(Err(e)) => self.push(e),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {} // cancelled: only when the runtime shuts down
        }
    }
}

impl SyncStats {
    fn record(&mut self, done: Done) {
        match done {
            Done::Copied {
                bytes,
                multipart,
                without_checksum,
            } => {
                self.copied += 1;
                self.copied_bytes += bytes;
                self.multipart_copies += u64::from(multipart);
                self.copied_without_checksum += u64::from(without_checksum);
            }
            Done::Unchanged => {
                self.unchanged += 1;
                self.unchanged_by_checksum += 1;
            }
            Done::Deleted(n) => self.deleted += n,
        }
    }
}

/// Copies a whole object with CopyObject, asking for a checksum (`copy_checksum`) and, unless
/// `SseMode::DestinationDefault`, for its source's encryption. Until the run has met an
/// SSE-KMS source the copy goes without encryption headers (one request; the destination
/// bucket's default applies): where the copy's ETag is the source's, both are MD5s of the same
/// bytes and neither side is SSE-KMS, so nothing is left to check. Otherwise the source's
/// HeadObject tells its encryption, and a copy that did not get it is made again asking for
/// it. Returns the copy's ETag.
async fn copy_whole(
    context: &CopyContext,
    object: &ObjectSummary,
    dst_key: &str,
) -> Result<String, PortError> {
    let store = &*context.store;
    let (src_bucket, dst_bucket) = (&context.src.bucket, &context.dst.bucket);
    let keep = context.options.sse == SseMode::Keep;
    let source_encryption = || async {
        let version = object.version_id.as_deref();
        let head =
            retry(|| store.head_object_version(src_bucket, &object.key, version, None)).await?;
        if head.encryption.as_ref().is_some_and(|e| e.is_kms()) {
            context.encrypted_seen.store(true, Relaxed);
        }
        Ok::<_, PortError>(head.encryption)
    };
    let copy = |encryption: Option<ObjectEncryption>| {
        let request = CopyRequest {
            storage_class: object.storage_class.clone(),
            encryption,
            checksum_algorithm: copy_checksum(object),
        };
        async move {
            let version = object.version_id.as_deref();
            retry(|| {
                store.copy_object_version(
                    src_bucket,
                    &object.key,
                    version,
                    dst_bucket,
                    dst_key,
                    &request,
                )
            })
            .await
        }
    };
    if keep && context.encrypted_seen.load(Relaxed) {
        let wanted = source_encryption().await?;
        return Ok(copy(wanted).await?.etag);
    }
    let copied = copy(None).await?;
    if !keep || copied.etag == object.etag {
        return Ok(copied.etag);
    }
    let source = source_encryption().await?;
    if same_encryption(source.as_ref(), copied.encryption.as_ref()) {
        return Ok(copied.etag);
    }
    Ok(copy(source).await?.etag)
}

/// Copies one object; returns whether it went in parts.
async fn copy_one(
    context: &CopyContext,
    object: &ObjectSummary,
    dst_key: &str,
) -> Result<bool, PortError> {
    let (store, options, whole_copy) = (&*context.store, &context.options, &context.whole_copy);
    let (src_bucket, dst_bucket) = (context.src.bucket.as_str(), context.dst.bucket.as_str());
    let source_parts = multipart_parts(&object.etag);
    let copy_whole = || copy_whole(context, object, dst_key);
    // (the copy's ETag, the source's ETag it was copied from)
    let copy_in_parts = || async {
        let stop = context.stop.as_deref();
        let mut attempt = 1;
        let copied = loop {
            match copy_parts(
                store, src_bucket, object, dst_bucket, dst_key, options, stop,
            )
            .await
            {
                // Overwritten while copied: a new copy of the version now current.
                Err(PortError::PreconditionFailed { .. }) if attempt < CHANGED_WHILE_COPIED => {
                    attempt += 1;
                }
                other => break other?,
            }
        };
        if copied.kms {
            context.encrypted_seen.store(true, Relaxed);
        }
        Ok::<_, PortError>((copied.etag, copied.source_etag))
    };
    if source_parts.is_none() && object.size <= options.multipart_threshold {
        copy_whole().await?;
        return Ok(false);
    }
    if source_parts.is_none() || object.size > AWS_COPY_LIMIT {
        copy_in_parts().await?;
        return Ok(true);
    }
    // A multipart object CopyObject can take: the first one of the run finds out which way
    // keeps its ETag (the others wait for the answer).
    let piloted = AtomicBool::new(false);
    let whole = *whole_copy
        .0
        .get_or_try_init(|| async {
            piloted.store(true, Relaxed);
            let (copy, source) = copy_in_parts().await?;
            if copy == source {
                return Ok::<_, PortError>(false);
            }
            Ok(copy_whole().await? == object.etag)
        })
        .await?;
    if piloted.load(Relaxed) {
        return Ok(!whole);
    }
    if whole && copy_whole().await? == object.etag {
        return Ok(false);
    }
    copy_in_parts().await?;
    Ok(true)
}

const INTERRUPTED_BEFORE_UPLOAD: &str = "interrupted (Ctrl-C) before the upload was started";

/// Copies in parts of an object made before it is given up as changing all the time: each
/// one found the source overwritten between its HeadObject and a part.
const CHANGED_WHILE_COPIED: u32 = 3;

/// An object copied in parts.
struct CopiedInParts {
    /// The copy's ETag.
    etag: String,
    /// The source's ETag the parts were read from (its HeadObject's; every part asked for it).
    source_etag: String,
    /// The source is SSE-KMS.
    kms: bool,
}

/// Copies one object in parts (the source's layout if it has one) with its headers, metadata,
/// tags and (unless `SseMode::DestinationDefault`) its encryption. Every part is read from the
/// version whose headers were read (`x-amz-copy-source-if-match` its ETag): a source
/// overwritten meanwhile fails with `PreconditionFailed`, the upload aborted, rather than
/// giving an object made of two versions.
async fn copy_parts(
    store: &dyn ObjectStore,
    src_bucket: &str,
    object: &ObjectSummary,
    dst_bucket: &str,
    dst_key: &str,
    options: &SyncOptions,
    stop: Option<&AtomicBool>,
) -> Result<CopiedInParts, PortError> {
    let source_parts = multipart_parts(&object.etag);
    let version = object.version_id.as_deref();
    // The object's headers, its first part's size and its tags, asked at once.
    let first_part = async {
        match source_parts {
            Some(_) => {
                retry(|| store.head_object_version(src_bucket, &object.key, version, Some(1)))
                    .await
                    .map(|h| Some(h.size))
            }
            None => Ok(None),
        }
    };
    let (mut head, first_part, tags) = tokio::try_join!(
        retry(|| store.head_object_version(src_bucket, &object.key, version, None)),
        first_part,
        retry(|| store.object_tags_version(src_bucket, &object.key, version)),
    )?;
    if head.storage_class.is_none() {
        head.storage_class = object.storage_class.clone();
    }
    let kms = head.encryption.as_ref().is_some_and(|e| e.is_kms());
    if options.sse == SseMode::DestinationDefault {
        head.encryption = None;
    }
    // The copy asks for a CRC64NVME checksum, whose type is FULL_OBJECT: the checksum of the
    // whole content, equal to a single-part object's CRC64NVME of the same bytes ("Checking
    // object integrity", "Using full object checksums for multipart upload";
    // CreateMultipartUpload `ChecksumAlgorithm`, `ChecksumType`). Each UploadPartCopy returns
    // its part's checksum (`CopyPartResult.ChecksumCRC64NVME`), given back to
    // CompleteMultipartUpload (`CompletedPart.ChecksumCRC64NVME`). So the copy is comparable
    // with a source that has a CRC64NVME checksum (S3's default since it added one to every
    // upload), SSE-KMS or not; a source with a checksum of another algorithm, or a COMPOSITE
    // one (`-<parts>`), is not, and a re-sync copies it again (`copied_without_checksum`).
    head.checksum = Some(ObjectChecksum {
        algorithm: COPY_CHECKSUM.to_string(),
        value: String::new(),
        full_object: true,
    });
    // The parts cover the version the HeadObject saw (overwritten since the listing, its size
    // and part count are not the listing's).
    let layout = match (multipart_parts(&head.etag), first_part) {
        (Some(n), Some(first)) => mirrored_layout(head.size, n, first)
            .unwrap_or_else(|| even_layout(head.size, options.part_size)),
        _ => even_layout(head.size, options.part_size),
    };
    if stop.is_some_and(|s| s.load(Relaxed)) {
        // Ctrl-C while the source was being headed: the upload would be a new change.
        return Err(PortError::failed(
            "s3:CreateMultipartUpload",
            INTERRUPTED_BEFORE_UPLOAD,
        ));
    }
    let upload_id = retry(|| store.create_multipart(dst_bucket, dst_key, &head, &tags)).await?;
    let upload_id = upload_id.as_str();
    let source_etag = head.etag.as_str();
    let parts = futures::stream::iter(layout.into_iter().zip(1u32..).map(
        |((first, last), part)| async move {
            retry(|| {
                store.upload_part_copy_version(
                    (src_bucket, &object.key, version),
                    Some(source_etag),
                    dst_bucket,
                    dst_key,
                    upload_id,
                    part,
                    first,
                    last,
                )
            })
            .await
        },
    ))
    .buffered(options.part_concurrency.max(1))
    .collect::<Vec<_>>()
    .await;
    let parts: Result<Vec<CopiedPart>, PortError> = parts.into_iter().collect();
    let completed = match parts {
        Ok(parts) => {
            retry(|| store.complete_multipart(dst_bucket, dst_key, upload_id, &parts)).await
        }
        Err(e) => Err(e),
    };
    if completed.is_err() {
        // Parts of an unfinished upload are billed until aborted.
        let _ = store.abort_multipart(dst_bucket, dst_key, upload_id).await;
    }
    completed.map(|etag| CopiedInParts {
        etag,
        source_etag: head.etag.clone(),
        kms,
    })
}

/// The source's own part layout (all parts the size of the first, the last one shorter), if
/// it is consistent with the object's size and part count. Copying with the same layout gives
/// the same multipart ETag.
fn mirrored_layout(size: u64, parts: u32, first_part: u64) -> Option<Vec<(u64, u64)>> {
    if first_part == 0 || parts == 0 {
        return None;
    }
    let parts = u64::from(parts);
    if size.div_ceil(first_part) != parts {
        return None;
    }
    Some(ranges(size, first_part))
}

/// Parts of `part_size` (grown as needed to stay within 10,000 parts and at least 5 MiB).
fn even_layout(size: u64, part_size: u64) -> Vec<(u64, u64)> {
    let mut part = part_size.max(MIN_PART);
    while size.div_ceil(part) > MAX_PARTS {
        part *= 2;
    }
    ranges(size, part)
}

fn ranges(size: u64, part: u64) -> Vec<(u64, u64)> {
    if size == 0 {
        return vec![(0, 0)];
    }
    (0..size)
        .step_by(part as usize)
        .map(|start| (start, (start + part).min(size) - 1))
        .collect()
}

/// A verification's problem for a target object its source does not have.
pub const IN_TARGET_ONLY: &str = "in the target but not in the source";

/// One way a target object differs from its source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mismatch {
    pub key: String,
    pub problem: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub source: String,
    pub target: String,
    pub compared: u64,
    /// Objects whose ETags could not be compared (different part layouts) and were compared by
    /// content instead.
    pub compared_by_content: u64,
    /// Objects whose ETags are no MD5s (SSE-KMS, multipart) and whose checksums were compared.
    pub compared_by_checksum: u64,
    /// Objects whose ETags differ and that an earlier verification found equal, both sides
    /// unchanged since ([`SameBytes`]): headers and tags compared, not the bytes again.
    pub compared_by_record: u64,
    pub mismatches: Vec<Mismatch>,
    /// Archived source objects not compared (`skip_archived`: they were not copied).
    pub skipped_archived: u64,
}

impl VerifyReport {
    fn record(&mut self, (mismatch, by): (Option<Mismatch>, ComparedBy)) {
        self.compared += 1;
        self.compared_by_content += u64::from(by == ComparedBy::Content);
        self.compared_by_checksum += u64::from(by == ComparedBy::Checksum);
        self.compared_by_record += u64::from(by == ComparedBy::Record);
        self.mismatches.extend(mismatch);
    }

    pub fn is_equal(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Compares two buckets object for object: key, size, ETag (or content, where the part layouts
/// differ), content type and other headers, user metadata and tags.
pub async fn verify(
    store: Arc<dyn ObjectStore>,
    src: &BucketPath,
    dst: &BucketPath,
    concurrency: usize,
) -> Result<VerifyReport, SyncError> {
    verify_with(store, src, dst, concurrency, false).await
}

/// `verify`; with `skip_archived`, an archived source object is not compared but counted in
/// `skipped_archived` (a copy with `skip_archived` left it alone, and its bytes cannot be read
/// without a restore).
pub async fn verify_with(
    store: Arc<dyn ObjectStore>,
    src: &BucketPath,
    dst: &BucketPath,
    concurrency: usize,
    skip_archived: bool,
) -> Result<VerifyReport, SyncError> {
    verify_as_of(store, src, dst, concurrency, skip_archived, None).await
}

/// `verify_with`, comparing the target with the source as it was at `as_of` (each key's
/// newest version at or before it, read by version id; see `SyncOptions::as_of`): writes to
/// the source after that moment are no differences. A key whose state then cannot be told
/// fails the verification.
pub async fn verify_as_of(
    store: Arc<dyn ObjectStore>,
    src: &BucketPath,
    dst: &BucketPath,
    concurrency: usize,
    skip_archived: bool,
    as_of: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<VerifyReport, SyncError> {
    let with = KnownCopies::default();
    verify_known(store, src, dst, (concurrency, skip_archived), as_of, &with)
        .await
        .map(|(report, _)| report)
}

/// What a verification is told of, and keeps of, the copies whose ETags differ from their
/// sources'.
#[derive(Debug, Clone, Default)]
pub struct KnownCopies {
    /// Found the same bytes by an earlier verification: not compared by checksum or content
    /// again while both sides keep those ETags.
    pub known: Option<Arc<SameBytes>>,
    /// Return every such object found equal (memory grows with their number: only for copies
    /// known to be made in other part layouts, such as a batch job's).
    pub record: bool,
}

/// `verify_as_of` (`(concurrency, skip_archived)`), told of the copies already known equal and
/// returning, with `record`, those it found equal under other ETags.
pub async fn verify_known(
    store: Arc<dyn ObjectStore>,
    src: &BucketPath,
    dst: &BucketPath,
    (concurrency, skip_archived): (usize, bool),
    as_of: Option<chrono::DateTime<chrono::Utc>>,
    with: &KnownCopies,
) -> Result<(VerifyReport, SameBytes), SyncError> {
    let mut report = VerifyReport {
        source: src.to_string(),
        target: dst.to_string(),
        ..Default::default()
    };
    let mut found = SameBytes::default();
    let mut checks = FuturesUnordered::new();
    let progress = Arc::new(SyncProgress::default());
    let mut join = MergeJoin::new(&store, src, dst, &progress, as_of);
    let known = with.known.as_deref();
    let mut record = |report: &mut VerifyReport, (done, same): (Compared, Option<SameAs>)| {
        report.record(done);
        if let Some((key, same)) = same {
            found.0.insert(key, same);
        }
    };
    while let Some(joined) = join.next().await? {
        if crate::retry::stopped() {
            return Err(SyncError::Stopped);
        }
        let (s, d) = match joined {
            Joined::OnlySource(o) | Joined::Both(o, _) if skip_archived && is_archived(&o) => {
                report.skipped_archived += 1;
                continue;
            }
            Joined::OnlySource(o) => {
                report.mismatches.push(Mismatch {
                    key: o.key,
                    problem: "missing in the target".into(),
                });
                continue;
            }
            Joined::OnlyTarget(o) => {
                report.mismatches.push(Mismatch {
                    key: o.key,
                    problem: IN_TARGET_ONLY.into(),
                });
                continue;
            }
            Joined::Both(s, d) => (s, d),
        };
        if checks.len() >= concurrency.max(1) {
            if let Some(done) = checks.next().await {
                record(&mut report, done?);
            }
        }
        let store = store.clone();
        let keep = with.record;
        checks.push(async move {
            let done = match compare_pair(&*store, (&src.bucket, &dst.bucket), &s, &d, known).await
            {
                Err(e) => match customer_key_mismatch(&s.key, &e) {
                    Some(m) => (Some(m), ComparedBy::Etag),
                    None => return Err(e),
                },
                Ok(done) => done,
            };
            let same = (keep && done.0.is_none() && s.etag != d.etag).then(|| {
                let same = SameBytesAs {
                    size: s.size,
                    source_etag: s.etag.clone(),
                    target_etag: d.etag.clone(),
                };
                (s.key.clone(), same)
            });
            Ok((done, same))
        });
    }
    while let Some(done) = checks.next().await {
        record(&mut report, done?);
    }
    if let Some(e) = join.left.unknown().into_iter().next() {
        return Err(e);
    }
    report.mismatches.sort_by(|a, b| a.key.cmp(&b.key));
    Ok((report, found))
}

async fn compare_pair(
    store: &dyn ObjectStore,
    (src_bucket, dst_bucket): (&str, &str),
    s: &ObjectSummary,
    d: &ObjectSummary,
    known: Option<&SameBytes>,
) -> Result<(Option<Mismatch>, ComparedBy), SyncError> {
    let pair = [
        (src_bucket, s.key.as_str(), s.version_id.as_deref()),
        (dst_bucket, d.key.as_str(), None),
    ];
    let mismatch = |problem: String| Mismatch {
        key: s.key.clone(),
        problem,
    };
    if s.size != d.size {
        return Ok((
            Some(mismatch(format!(
                "size {} in the source, {} in the target",
                s.size, d.size
            ))),
            ComparedBy::Etag,
        ));
    }
    let mut by = ComparedBy::Etag;
    let mut heads = None;
    if s.etag != d.etag && known_same(known, s, d) {
        by = ComparedBy::Record;
    } else if s.etag != d.etag {
        let (content, sh, dh) = compare_content(store, src_bucket, s, dst_bucket, d).await?;
        match content {
            Content::Differs(problem) => return Ok((Some(mismatch(problem)), ComparedBy::Etag)),
            Content::Same => by = ComparedBy::Checksum,
            Content::Unknown => {
                // No checksum on both sides: the bytes, read through this process.
                by = ComparedBy::Content;
                let (a, b) = ask_both(pair, |bucket, key, version| {
                    store.content_md5_version(bucket, key, version)
                })
                .await?;
                if a != b {
                    return Ok((
                        Some(mismatch(format!(
                            "content differs (MD5 {a} in the source, {b} in the target)"
                        ))),
                        by,
                    ));
                }
            }
        }
        heads = Some((sh, dh));
    }
    let (sh, dh) = match heads {
        Some(heads) => heads,
        None => {
            ask_both(pair, |bucket, key, version| {
                store.head_object_version(bucket, key, version, None)
            })
            .await?
        }
    };
    if let Some(problem) = header_difference(&sh, &dh) {
        return Ok((Some(mismatch(problem)), by));
    }
    let (st, dt) = ask_both(pair, |bucket, key, version| {
        store.object_tags_version(bucket, key, version)
    })
    .await?;
    if st != dt {
        return Ok((
            Some(mismatch(format!(
                "tags {st:?} in the source, {dt:?} in the target"
            ))),
            by,
        ));
    }
    Ok((None, by))
}

/// An SSE-C object met by a verification: S3 shows neither its headers nor its bytes without
/// its key, so it cannot be compared (a mismatch that names why, not a failed verification).
fn customer_key_mismatch(key: &str, e: &SyncError) -> Option<Mismatch> {
    match e {
        SyncError::Copy { bucket, source, .. } if is_customer_key_refusal(source) => {
            Some(Mismatch {
                key: key.to_string(),
                problem: format!(
                    "s3://{bucket} holds it encrypted with a customer-provided key (SSE-C): S3 \
                     shows neither its headers nor its bytes without that key, so it cannot be \
                     compared; re-encrypt it with SSE-S3 or SSE-KMS"
                ),
            })
        }
        _ => None,
    }
}

/// What one pair's comparison found, and how.
type Compared = (Option<Mismatch>, ComparedBy);
/// A source key and what a verification found of its copy under another ETag.
type SameAs = (String, SameBytesAs);

/// How a verification found two objects' bytes equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ComparedBy {
    Etag,
    Checksum,
    Content,
    /// Found equal by an earlier verification, unchanged on both sides since ([`SameBytes`]).
    Record,
}

fn header_difference(s: &ObjectHead, d: &ObjectHead) -> Option<String> {
    let fields: [(&str, &Option<String>, &Option<String>); 5] = [
        ("content type", &s.content_type, &d.content_type),
        ("content encoding", &s.content_encoding, &d.content_encoding),
        (
            "content disposition",
            &s.content_disposition,
            &d.content_disposition,
        ),
        ("content language", &s.content_language, &d.content_language),
        ("cache control", &s.cache_control, &d.cache_control),
    ];
    for (name, a, b) in fields {
        if a != b {
            return Some(format!("{name} {a:?} in the source, {b:?} in the target"));
        }
    }
    if s.metadata != d.metadata {
        return Some(format!(
            "user metadata {:?} in the source, {:?} in the target",
            s.metadata, d.metadata
        ));
    }
    None
}

/// Counts objects and bytes under a path (for plans and reports).
pub async fn measure(
    store: Arc<dyn ObjectStore>,
    path: &BucketPath,
) -> Result<(u64, u64), SyncError> {
    let progress = Arc::new(SyncProgress::default());
    let mut lister = Lister::spawn(store, path.clone(), progress.clone(), Side::Source);
    let mut bytes = 0;
    while let Some(o) = lister.next().await? {
        bytes += o.size;
    }
    Ok((progress.source_listed.load(Relaxed), bytes))
}

/// Tags of an object as a sorted map (helper shared by adapters and the fake).
pub fn tag_map<I: IntoIterator<Item = (String, String)>>(tags: I) -> BTreeMap<String, String> {
    tags.into_iter().collect()
}

// ---------------------------------------------------------------- what a verified copy held

/// How many partitions a `CopiedRecord` splits a bucket's objects into (by the first byte of
/// the MD5 of the key). Fixed, so the record's size does not grow with the number of objects.
const RECORD_PARTITIONS: u16 = 256;

/// The objects of a source bucket whose copies a verification found in the target, kept
/// compactly: per partition of the keys, the number of objects and the sum (mod 2^128) of the
/// MD5 of each object's (key, size, ETag). At most 256 entries whatever the number of objects
/// (a few KB for a million), so it lives in the run's state; a partition whose count and sum
/// are unchanged holds exactly the recorded objects (an accidental match needs an MD5 sum
/// collision).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CopiedRecord {
    pub objects: u64,
    /// Partition → (objects, hex sum); empty partitions are left out.
    pub partitions: BTreeMap<u16, (u64, String)>,
}

fn record_partition(key: &str) -> u16 {
    use md5::{Digest, Md5};
    u16::from(Md5::digest(key.as_bytes())[0]) % RECORD_PARTITIONS
}

fn record_hash(o: &ObjectSummary) -> u128 {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    h.update(o.key.as_bytes());
    h.update([0u8]);
    h.update(o.size.to_string().as_bytes());
    h.update([0u8]);
    h.update(o.etag.as_bytes());
    u128::from_be_bytes(h.finalize().into())
}

/// Accumulates a `CopiedRecord`.
#[derive(Default)]
struct RecordBuilder(BTreeMap<u16, (u64, u128)>);

impl RecordBuilder {
    fn add(&mut self, o: &ObjectSummary) {
        let e = self.0.entry(record_partition(&o.key)).or_default();
        e.0 += 1;
        e.1 = e.1.wrapping_add(record_hash(o));
    }
    fn finish(self) -> CopiedRecord {
        CopiedRecord {
            objects: self.0.values().map(|(n, _)| n).sum(),
            partitions: self
                .0
                .into_iter()
                .map(|(p, (n, sum))| (p, (n, format!("{sum:032x}"))))
                .collect(),
        }
    }
}

/// Records the objects of `src` that have their copy in `dst` (same key, same size; verification
/// has compared them further): the record a later check (`changed_since`) compares with. An
/// object written to `src` after the verification and not copied is left out, so it is found
/// missing later.
///
/// With `skip_archived` (the copy left archived objects out), archived source objects are left
/// out of the record and out of `changed_since`'s look alike: they stay in the old bucket only.
pub async fn record_copied(
    store: Arc<dyn ObjectStore>,
    src: &BucketPath,
    dst: &BucketPath,
    skip_archived: bool,
) -> Result<CopiedRecord, SyncError> {
    let progress = Arc::new(SyncProgress::default());
    let mut join = MergeJoin::new(&store, src, dst, &progress, None);
    let mut builder = RecordBuilder::default();
    while let Some(joined) = join.next().await? {
        if let Joined::Both(s, d) = joined {
            if s.size == d.size && !(skip_archived && is_archived(&s)) {
                builder.add(&s);
            }
        }
    }
    Ok(builder.finish())
}

/// The objects of `src` whose copy is not in `dst`, judged against what a verification recorded
/// (`record`), not against `dst` alone: `dst` belongs to a live environment that may have
/// overwritten or deleted any object since (that is its data now, not a lost copy).
///
/// The semantics (finalize's re-check after a migration):
/// - an object `src` held when the copy was verified (in `record`, unchanged since) was copied
///   and verified then; whatever `dst` did to it later (overwrite, delete) is legitimate;
/// - an object written to `src` after the verification, or overwritten there since, was never
///   copied: it is reported unless `dst` holds the same key with the same size and ETag;
/// - an object deleted from `src` since is nothing to worry about.
///
/// `src` is listed once; only when a partition of it differs from the record is `dst` listed
/// too, and only objects of the differing partitions are reported. Within such a partition a
/// recorded object the new environment changed cannot be told from a late write to `src` with
/// another size or ETag, so it is reported too (the safe side: finalize refuses, naming it).
pub async fn changed_since(
    store: Arc<dyn ObjectStore>,
    src: &BucketPath,
    dst: &BucketPath,
    record: &CopiedRecord,
    skip_archived: bool,
) -> Result<Vec<Mismatch>, SyncError> {
    let progress = Arc::new(SyncProgress::default());
    let mut lister = Lister::spawn(store.clone(), src.clone(), progress.clone(), Side::Source);
    let mut now = RecordBuilder::default();
    while let Some(o) = lister.next().await? {
        if !(skip_archived && is_archived(&o)) {
            now.add(&o);
        }
    }
    let now = now.finish();
    let mut changed: std::collections::BTreeSet<u16> = std::collections::BTreeSet::new();
    for p in now.partitions.keys() {
        if record.partitions.get(p) != now.partitions.get(p) {
            changed.insert(*p);
        }
    }
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut join = MergeJoin::new(&store, src, dst, &progress, None);
    while let Some(joined) = join.next().await? {
        match joined {
            Joined::OnlySource(s) | Joined::Both(s, _) if skip_archived && is_archived(&s) => {}
            Joined::OnlySource(s) if changed.contains(&record_partition(&s.key)) => {
                out.push(Mismatch {
                    key: s.key,
                    problem: "in the old bucket, written there after the copy was verified, \
                              and not in the new bucket"
                        .into(),
                });
            }
            Joined::Both(s, d)
                if changed.contains(&record_partition(&s.key))
                    && !is_unchanged(&s, &d)
                    && !(s.size == d.size
                        && matches!(
                            compare_content(&*store, &src.bucket, &s, &dst.bucket, &d).await?,
                            (Content::Same, _, _)
                        )) =>
            {
                out.push(Mismatch {
                    key: s.key,
                    problem: format!(
                        "the old bucket's object (size {}, ETag {}) differs from the new \
                         bucket's (size {}, ETag {}) and the old bucket changed here after the \
                         copy was verified",
                        s.size, s.etag, d.size, d.etag
                    ),
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(
            mirrored_layout(11 * MIB, 3, 5 * MIB).unwrap(),
            vec![
                (0, 5 * MIB - 1),
                (5 * MIB, 10 * MIB - 1),
                (10 * MIB, 11 * MIB - 1)
            ]
        );
        // Part count that does not fit the size: not a uniform layout.
        assert!(mirrored_layout(11 * MIB, 4, 5 * MIB).is_none());
        assert_eq!(even_layout(0, MIB), vec![(0, 0)]);
        assert_eq!(even_layout(12 * MIB, MIB).len(), 3); // raised to the 5 MiB minimum
        assert!(even_layout(100_000 * MIB, 5 * MIB).len() as u64 <= MAX_PARTS);
        assert_eq!(multipart_parts("d41d8cd98f00b204e9800998ecf8427e"), None);
        assert_eq!(multipart_parts("0123abc-12"), Some(12));
    }

    fn keys_between(keys: &[String], after: &str, end: &str) -> usize {
        keys.iter()
            .filter(|k| k.as_str() > after && k.as_str() < end)
            .count()
    }

    #[test]
    fn split_points_land_about_the_asked_number_of_keys_ahead() {
        // Decimal counters, learned from a first page that also holds other keys.
        let mut keys: Vec<String> = (0..20).map(|i| format!("big/{i:02}.bin")).collect();
        keys.extend((0..10_000).map(|i| format!("small/{i:05}.bin")));
        let page: Vec<&str> = keys[..1000].iter().map(String::as_str).collect();
        let space = KeySpace::learn(&page).unwrap();
        let mut cursor = keys[999].clone();
        let mut sizes = Vec::new();
        while cursor <= keys[keys.len() - 1] {
            let end = space.after(&cursor, 700.0).unwrap();
            assert!(end > cursor);
            sizes.push(keys_between(&keys, &cursor, &end));
            cursor = end;
        }
        // 9,020 keys left: ranges of about 700 (600 where the learned alphabet of digits
        // includes the end of a key), none empty, none over a page.
        assert!((13..=16).contains(&sizes.len()), "{sizes:?}");
        assert!(sizes.iter().all(|&n| n > 0 && n <= 1000), "{sizes:?}");

        // Hex names (content hashes, UUIDs).
        let mut x: u64 = 7;
        let mut hex: Vec<String> = (0..5000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                format!("objects/{x:016x}")
            })
            .collect();
        hex.sort();
        let page: Vec<&str> = hex[..1000].iter().map(String::as_str).collect();
        let space = KeySpace::learn(&page).unwrap();
        let end = space.after(&hex[999], 700.0).unwrap();
        let n = keys_between(&hex, &hex[999], &end);
        assert!((350..=1000).contains(&n), "{n} keys up to {end}");
    }

    /// The pages of one range, listed on the fake with `space` as the key space: the keys in
    /// the order listed, the ListObjectsV2 calls made, and the gap recorded after the end.
    async fn list_one_range(
        keys: &[String],
        space: KeySpace,
        range: Range,
    ) -> (Vec<String>, usize, Option<(String, String)>) {
        let fake = crate::fake::FakeAws::new(Default::default());
        fake.create_bucket_now("b");
        for key in keys {
            fake.put_object("b", key, b"x", ObjectHead::default(), &[]);
        }
        let store: Arc<dyn ObjectStore> = Arc::new(fake.clone());
        let shared = Arc::new(Shared {
            space: std::sync::Mutex::new(Some((keys[999].clone(), space))),
            ahead: AtomicUsize::new(2),
            ..Shared::default()
        });
        shared.unanswered.fetch_add(1, Relaxed);
        let (tx, mut rx) = mpsc::channel(64);
        let path = Arc::new(BucketPath::bucket("b"));
        let progress = Arc::new(SyncProgress::default());
        list_range(
            store,
            path,
            range,
            tx,
            shared.clone(),
            progress,
            Side::Source,
        )
        .await;
        let mut listed = Vec::new();
        while let Some(page) = rx.recv().await {
            listed.extend(page.unwrap().into_iter().map(|o| o.key));
        }
        let gap = shared.gap.lock().unwrap().clone();
        (listed, list_calls(&fake).len(), gap)
    }

    #[tokio::test(start_paused = true)]
    async fn a_range_is_listed_whole_and_in_order_whatever_the_page_size_estimate() {
        let keys: Vec<String> = (0..5000).map(|i| format!("data/{i:05}.bin")).collect();
        let page: Vec<&str> = keys[..1000].iter().map(String::as_str).collect();
        let space = KeySpace::learn(&page).unwrap();
        let skewed = |factor: f64| KeySpace {
            per_key: space.per_key * factor,
            ..space.clone()
        };
        // The keys after the 1,000th up to and with the 3,501st, and the key after the end.
        let end = keys[3500].clone();
        let want: Vec<String> = keys[1000..=3500].to_vec();
        let gap = Some((end.clone(), keys[3501].clone()));
        let range = || Range {
            start_after: Some(keys[999].clone()),
            end: Some(end.clone()),
            probe: false,
        };
        // A right estimate: 1,000 + 1,000 keys, then a last page asking for the 501 keys left
        // and a margin (past the end: those keys are dropped).
        let (listed, calls, found_gap) = list_one_range(&keys, space.clone(), range()).await;
        assert_eq!(listed, want);
        assert_eq!((calls, &found_gap), (3, &gap));
        // 20 times too many keys estimated: whole pages, the last one's 499 keys past the end
        // dropped.
        let (listed, calls, found_gap) = list_one_range(&keys, skewed(1.0 / 20.0), range()).await;
        assert_eq!(listed, want);
        assert_eq!((calls, &found_gap), (3, &gap));
        // 20 times too few: pages too small to reach the end, each one asking for twice the
        // keys of the one before (147, 294, 588, then whole pages), not hundreds of small ones.
        let (listed, calls, found_gap) = list_one_range(&keys, skewed(20.0), range()).await;
        assert_eq!(listed, want);
        assert_eq!((calls, &found_gap), (5, &gap));
        // A range whose end is a key and whose last page ends with it: no page after it.
        let end = keys[2999].clone();
        let range = Range {
            start_after: Some(keys[999].clone()),
            end: Some(end.clone()),
            probe: false,
        };
        let (listed, calls, found_gap) = list_one_range(&keys, space.clone(), range).await;
        assert_eq!(listed, keys[1000..3000].to_vec());
        assert_eq!((calls, found_gap), (2, None));
    }

    #[test]
    fn page_sizes_follow_the_estimate_within_bounds() {
        let keys: Vec<String> = (0..1000).map(|i| format!("data/{i:05}.bin")).collect();
        let page: Vec<&str> = keys.iter().map(String::as_str).collect();
        let space = KeySpace::learn(&page).unwrap();
        let ask =
            |cursor: &str, end: &str, at_least| page_keys(Some(&space), cursor, end, at_least);
        assert_eq!(ask("data/00999.bin", "data/05000.bin", 0), PAGE_KEYS);
        // 500 keys left: 5% and 16 more (541) on the estimate, which reads the carry into the
        // thousands as more keys than there are (each digit has an 11th value: the key ends).
        let n = ask("data/00999.bin", "data/01499.bin", 0);
        assert!((541..=700).contains(&n), "{n}");
        assert_eq!(ask("data/01999.bin", "data/02499.bin", 0), n);
        // Past the end already, or 3 keys left: the floor.
        assert_eq!(ask("data/01499.bin", "data/01499.bin", 0), PAGE_FLOOR);
        assert_eq!(ask("data/01499.bin", "data/01502.bin", 0), PAGE_FLOOR);
        // After a page that was to be the last and was not: what the caller grew.
        assert_eq!(ask("data/01499.bin", "data/01502.bin", 600), 600);
        let m = ask("data/01499.bin", "data/01999.bin", 0);
        assert!((541..=700).contains(&m), "{m}");
        assert_eq!(ask("data/01499.bin", "data/01999.bin", 300), m);
        assert_eq!(
            ask("data/01499.bin", "data/01999.bin", PAGE_KEYS),
            PAGE_KEYS
        );
        // No key space, or keys it cannot read: whole pages.
        assert_eq!(page_keys(None, "a", "b", 0), PAGE_KEYS);
        assert_eq!(ask("data/01499.bin", "zzz", 0), PAGE_KEYS);
    }

    #[test]
    fn a_split_point_is_after_its_cursor_or_there_is_none() {
        let keys: Vec<String> = (0..1000).map(|i| format!("folder/{i:04}")).collect();
        let page: Vec<&str> = keys.iter().map(String::as_str).collect();
        let space = KeySpace::learn(&page).unwrap();
        for cursor in [
            "",
            "a",
            "folder/",
            "folder/0999",
            "folder/0999~",
            "folder/09z",
            "folder/été",
            "folder/9999",
            "folder0",
            "folder/99999999",
            "zzz",
            "日本語",
        ] {
            if let Some(end) = space.after(cursor, 700.0) {
                assert!(end.as_str() > cursor, "{cursor:?} → {end:?}");
            }
        }
        // Past the learned keys' room to carry: no guess, a probe will look.
        assert_eq!(space.after("zzz", 700.0), None);
        // No split point longer than S3's longest key: alphabets that mix one-byte and
        // three-byte characters can make one longer than the keys they were learned from.
        let space = KeySpace {
            prefix: "k".repeat(1020),
            alphabets: vec![vec!['a', '日']; 2],
            size: 9,
            per_key: 1.0,
        };
        let cursor = format!("{}aa", space.prefix);
        let end = space.after(&cursor, 3.0).unwrap();
        assert_eq!((end.len(), end.ends_with("日a")), (1024, true));
        assert_eq!(
            space.after(&cursor, 4.0),
            None,
            "…日日 would be 1,026 bytes"
        );
        // Too few keys to learn from.
        assert!(KeySpace::learn(&page[..10]).is_none());
    }

    /// When each ListObjectsV2 call the fake has seen so far was made.
    fn list_calls(fake: &crate::fake::FakeAws) -> Vec<std::time::Duration> {
        let calls = fake.calls();
        let lists = calls.iter().filter(|c| c.operation == "s3:ListObjectsV2");
        lists.map(|c| c.at).collect()
    }

    /// A listing of bucket `b` in the fake, holding `count` keys (returned in order).
    fn lister_of_keys(count: usize) -> (crate::fake::FakeAws, Vec<String>, Lister) {
        let fake = crate::fake::FakeAws::new(Default::default());
        fake.create_bucket_now("b");
        let keys: Vec<String> = (0..count).map(|i| format!("k/{i:05}")).collect();
        for key in &keys {
            fake.put_object("b", key, b"x", ObjectHead::default(), &[]);
        }
        let store: Arc<dyn ObjectStore> = Arc::new(fake.clone());
        let progress = Arc::new(SyncProgress::default());
        let lister = Lister::spawn(store, BucketPath::bucket("b"), progress, Side::Source);
        (fake, keys, lister)
    }

    /// The connections the ranges will want are opened while the probe is in flight, and
    /// when it answers as many ranges start as may (`RANGES_AHEAD`, the probe's own range
    /// not yet read whole), not two of them. Before: no warm-up, and 2 ranges at first.
    #[tokio::test(start_paused = true)]
    async fn a_listing_prepares_its_ranges_while_its_probe_is_in_flight() {
        let (fake, keys, mut lister) = lister_of_keys(30_000);
        let mut listed = vec![lister.next().await.unwrap().unwrap().key];
        let probe_asked = list_calls(&fake)[0];
        let probe_answered = probe_asked + fake.timings.call_latency;
        let warm_ups = fake.warm_ups();
        assert_eq!(warm_ups.len(), 1, "{warm_ups:?}");
        let (bucket, connections, at) = &warm_ups[0];
        assert_eq!((bucket.as_str(), *connections), ("b", WARM_CONNECTIONS));
        assert!(
            *at <= probe_asked,
            "warm-up asked at {at:?}, the probe at {probe_asked:?}"
        );
        let at_once = list_calls(&fake)
            .iter()
            .filter(|at| **at == probe_answered)
            .count();
        assert_eq!(
            at_once,
            RANGES_AHEAD - 1,
            "ranges started when the probe answered: {:?}",
            list_calls(&fake)
        );
        while let Some(o) = lister.next().await.unwrap() {
            listed.push(o.key);
        }
        assert_eq!(listed, keys);
    }

    /// A merge-join waits on one side at a time: the side it is not waiting on must go on
    /// starting its ranges. With the planning done by the reader, only the probe was listed
    /// here until the reader asked for a key past the probe's page.
    #[tokio::test(start_paused = true)]
    async fn a_listing_starts_its_ranges_while_nobody_reads_it() {
        let (fake, keys, mut lister) = lister_of_keys(5000);
        let first = lister.next().await.unwrap().unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        let lists = list_calls(&fake).len();
        assert!(
            lists >= 3,
            "{lists} ListObjectsV2 call(s) while the reader was elsewhere"
        );
        let mut listed = vec![first.key];
        while let Some(o) = lister.next().await.unwrap() {
            listed.push(o.key);
        }
        assert_eq!(listed, keys);
    }

    /// A listing task that panicked closed its channel as one that ended: read as the end of
    /// its range, its unlisted keys would look deleted from the source (and a sync with
    /// --delete would delete them from the destination).
    #[tokio::test]
    async fn a_listing_task_that_panicked_is_an_error_not_the_end_of_its_range() {
        let path = BucketPath::bucket("b");
        let mut ended = AbortOnDrop(tokio::spawn(async {}));
        assert!(ended.ended(&path, "listing").await.is_ok());
        let mut panicked = AbortOnDrop(tokio::spawn(async { panic!("listing task panics") }));
        match panicked.ended(&path, "listing").await {
            Err(e @ SyncError::ListingStopped { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("s3://b/") && text.contains("panicked"),
                    "{text}"
                );
            }
            other => panic!("expected ListingStopped, got {other:?}"),
        }
    }
}
