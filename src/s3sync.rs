//! Bucket-to-bucket sync and verification, server-side only.
//!
//! Owns the streaming merge-join of two sorted listings (memory does not grow with the number
//! of objects), the copy scheduler (bounded concurrency), the multipart copy that mirrors the
//! source's part layout (so the copy's ETag equals the source's and verification can compare
//! ETags), and the object-for-object verification. No object bytes pass through envclone on
//! the copy path.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use thiserror::Error;

use crate::ports::{ObjectHead, ObjectStore, ObjectSummary, PortError};
use crate::retry::retry;

/// AWS's limits for a single CopyObject and for multipart parts.
pub const AWS_COPY_LIMIT: u64 = 5 * 1024 * 1024 * 1024;
const MIN_PART: u64 = 5 * 1024 * 1024;
const MAX_PARTS: u64 = 10_000;

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
    /// Objects copied at once.
    pub concurrency: usize,
    /// Objects larger than this are copied in parts (5 GiB on AWS, smaller in tests).
    pub multipart_threshold: u64,
    /// Part size for objects that were not uploaded in parts themselves.
    pub part_size: u64,
    /// Parts of one object copied at once.
    pub part_concurrency: usize,
    /// Remove destination objects that the source does not have.
    pub delete: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            concurrency: 64,
            multipart_threshold: AWS_COPY_LIMIT,
            part_size: 512 * 1024 * 1024,
            part_concurrency: 8,
            delete: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncStats {
    pub listed: u64,
    pub copied: u64,
    pub copied_bytes: u64,
    pub multipart_copies: u64,
    pub unchanged: u64,
    /// Destination objects the source does not have (removed only with `delete`).
    pub extra: u64,
}

#[derive(Debug, Error)]
pub enum SyncError {
    #[error("listing {path} failed: {source}")]
    List {
        path: String,
        #[source]
        source: PortError,
    },
    #[error("copying s3://{bucket}/{key} failed: {source}")]
    Copy {
        bucket: String,
        key: String,
        #[source]
        source: PortError,
    },
    #[error("deleting is not supported by this engine yet; run without --delete")]
    DeleteUnsupported,
}

/// Reads a bucket listing page by page, one object at a time.
struct Lister<'a> {
    store: &'a dyn ObjectStore,
    path: &'a BucketPath,
    page: std::vec::IntoIter<ObjectSummary>,
    token: Option<String>,
    exhausted: bool,
    pub listed: u64,
}

impl<'a> Lister<'a> {
    fn new(store: &'a dyn ObjectStore, path: &'a BucketPath) -> Self {
        Lister {
            store,
            path,
            page: Vec::new().into_iter(),
            token: None,
            exhausted: false,
            listed: 0,
        }
    }

    async fn next(&mut self) -> Result<Option<ObjectSummary>, SyncError> {
        loop {
            if let Some(o) = self.page.next() {
                self.listed += 1;
                return Ok(Some(o));
            }
            if self.exhausted {
                return Ok(None);
            }
            let token = self.token.take();
            let page = retry(|| {
                self.store
                    .list_page(&self.path.bucket, &self.path.prefix, token.clone())
            })
            .await
            .map_err(|source| SyncError::List {
                path: self.path.to_string(),
                source,
            })?;
            self.exhausted = page.next_token.is_none();
            self.token = page.next_token;
            self.page = page.objects.into_iter();
        }
    }
}

/// One step of the merge-join of two sorted listings.
#[derive(Debug, PartialEq, Eq)]
enum Joined {
    OnlySource(ObjectSummary),
    OnlyTarget(ObjectSummary),
    Both(ObjectSummary, ObjectSummary),
}

/// Walks both listings in key order (S3 lists in UTF-8 byte order, which is `str`'s order).
/// Keys are compared relative to each side's prefix. Holds one page per side at most.
struct MergeJoin<'a> {
    left: Lister<'a>,
    right: Lister<'a>,
    src_prefix: usize,
    dst_prefix: usize,
    a: Option<ObjectSummary>,
    b: Option<ObjectSummary>,
    started: bool,
}

impl<'a> MergeJoin<'a> {
    fn new(store: &'a dyn ObjectStore, src: &'a BucketPath, dst: &'a BucketPath) -> Self {
        MergeJoin {
            left: Lister::new(store, src),
            right: Lister::new(store, dst),
            src_prefix: src.prefix.len(),
            dst_prefix: dst.prefix.len(),
            a: None,
            b: None,
            started: false,
        }
    }

    fn source_listed(&self) -> u64 {
        self.left.listed
    }

    async fn next(&mut self) -> Result<Option<Joined>, SyncError> {
        if !self.started {
            self.started = true;
            self.a = self.left.next().await?;
            self.b = self.right.next().await?;
        }
        let joined = match (self.a.take(), self.b.take()) {
            (None, None) => return Ok(None),
            (Some(x), None) => {
                self.a = self.left.next().await?;
                Joined::OnlySource(x)
            }
            (None, Some(y)) => {
                self.b = self.right.next().await?;
                Joined::OnlyTarget(y)
            }
            (Some(x), Some(y)) => {
                let kx = &x.key[self.src_prefix..];
                let ky = &y.key[self.dst_prefix..];
                match kx.cmp(ky) {
                    std::cmp::Ordering::Less => {
                        self.a = self.left.next().await?;
                        self.b = Some(y);
                        Joined::OnlySource(x)
                    }
                    std::cmp::Ordering::Greater => {
                        self.a = Some(x);
                        self.b = self.right.next().await?;
                        Joined::OnlyTarget(y)
                    }
                    std::cmp::Ordering::Equal => {
                        self.a = self.left.next().await?;
                        self.b = self.right.next().await?;
                        Joined::Both(x, y)
                    }
                }
            }
        };
        Ok(Some(joined))
    }
}

/// `"abc-3"` → Some(3): the object was uploaded in 3 parts.
pub fn multipart_parts(etag: &str) -> Option<u32> {
    etag.rsplit_once('-').and_then(|(_, n)| n.parse().ok())
}

fn target_key(src: &BucketPath, dst: &BucketPath, key: &str) -> String {
    format!("{}{}", dst.prefix, &key[src.prefix.len()..])
}

/// Copies every object of `src` that `dst` lacks or holds in another version. Objects equal by
/// size and ETag are left alone, so a re-run copies only what changed.
pub async fn sync(
    store: Arc<dyn ObjectStore>,
    src: &BucketPath,
    dst: &BucketPath,
    options: &SyncOptions,
) -> Result<SyncStats, SyncError> {
    if options.delete {
        return Err(SyncError::DeleteUnsupported);
    }
    let mut stats = SyncStats::default();
    let mut in_flight = FuturesUnordered::new();
    let concurrency = options.concurrency.max(1);
    let mut join = MergeJoin::new(&*store, src, dst);
    while let Some(joined) = join.next().await? {
        let object = match joined {
            Joined::OnlySource(o) => o,
            Joined::Both(s, d) if s.size != d.size || s.etag != d.etag => s,
            Joined::Both(..) => {
                stats.unchanged += 1;
                continue;
            }
            Joined::OnlyTarget(_) => {
                stats.extra += 1;
                continue;
            }
        };
        if in_flight.len() >= concurrency {
            if let Some(done) = in_flight.next().await {
                stats.record(done?);
            }
        }
        let store = store.clone();
        in_flight.push(async move {
            let dst_key = target_key(src, dst, &object.key);
            let multipart = copy_one(
                &*store,
                &src.bucket,
                &object,
                &dst.bucket,
                &dst_key,
                options,
            )
            .await
            .map_err(|source| SyncError::Copy {
                bucket: src.bucket.clone(),
                key: object.key.clone(),
                source,
            })?;
            Ok::<_, SyncError>((object.size, multipart))
        });
    }
    stats.listed = join.source_listed();
    while let Some(done) = in_flight.next().await {
        stats.record(done?);
    }
    Ok(stats)
}

impl SyncStats {
    fn record(&mut self, (bytes, multipart): (u64, bool)) {
        self.copied += 1;
        self.copied_bytes += bytes;
        self.multipart_copies += u64::from(multipart);
    }
}

/// Copies one object; returns whether it went in parts.
async fn copy_one(
    store: &dyn ObjectStore,
    src_bucket: &str,
    object: &ObjectSummary,
    dst_bucket: &str,
    dst_key: &str,
    options: &SyncOptions,
) -> Result<bool, PortError> {
    let source_parts = multipart_parts(&object.etag);
    if source_parts.is_none() && object.size <= options.multipart_threshold {
        retry(|| {
            store.copy_object(
                src_bucket,
                &object.key,
                dst_bucket,
                dst_key,
                object.storage_class.as_deref(),
            )
        })
        .await?;
        return Ok(false);
    }
    let mut head = retry(|| store.head_object(src_bucket, &object.key, None)).await?;
    if head.storage_class.is_none() {
        head.storage_class = object.storage_class.clone();
    }
    let layout = match source_parts {
        Some(n) => {
            let first = retry(|| store.head_object(src_bucket, &object.key, Some(1))).await?;
            mirrored_layout(object.size, n, first.size)
                .unwrap_or_else(|| even_layout(object.size, options.part_size))
        }
        None => even_layout(object.size, options.part_size),
    };
    let tags = retry(|| store.object_tags(src_bucket, &object.key)).await?;
    let upload_id = retry(|| store.create_multipart(dst_bucket, dst_key, &head, &tags)).await?;
    let parts = futures::stream::iter(layout.iter().enumerate().map(|(i, &(first, last))| {
        let upload_id = &upload_id;
        async move {
            retry(|| {
                store.upload_part_copy(
                    src_bucket,
                    &object.key,
                    dst_bucket,
                    dst_key,
                    upload_id,
                    i as u32 + 1,
                    first,
                    last,
                )
            })
            .await
        }
    }))
    .buffered(options.part_concurrency.max(1))
    .collect::<Vec<_>>()
    .await;
    let etags: Result<Vec<String>, PortError> = parts.into_iter().collect();
    let completed = match etags {
        Ok(etags) => {
            retry(|| store.complete_multipart(dst_bucket, dst_key, &upload_id, &etags)).await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = completed {
        // Parts of an unfinished upload are billed until aborted.
        let _ = store.abort_multipart(dst_bucket, dst_key, &upload_id).await;
        return Err(e);
    }
    Ok(true)
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
    pub mismatches: Vec<Mismatch>,
}

impl VerifyReport {
    fn record(&mut self, (mismatch, by_content): (Option<Mismatch>, bool)) {
        self.compared += 1;
        self.compared_by_content += u64::from(by_content);
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
    let mut report = VerifyReport {
        source: src.to_string(),
        target: dst.to_string(),
        ..Default::default()
    };
    let mut checks = FuturesUnordered::new();
    let mut join = MergeJoin::new(&*store, src, dst);
    while let Some(joined) = join.next().await? {
        let (s, d) = match joined {
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
                    problem: "in the target but not in the source".into(),
                });
                continue;
            }
            Joined::Both(s, d) => (s, d),
        };
        if checks.len() >= concurrency.max(1) {
            if let Some(done) = checks.next().await {
                report.record(done?);
            }
        }
        let store = store.clone();
        checks.push(async move { compare_pair(&*store, &src.bucket, &s, &dst.bucket, &d).await });
    }
    while let Some(done) = checks.next().await {
        report.record(done?);
    }
    report.mismatches.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(report)
}

async fn compare_pair(
    store: &dyn ObjectStore,
    src_bucket: &str,
    s: &ObjectSummary,
    dst_bucket: &str,
    d: &ObjectSummary,
) -> Result<(Option<Mismatch>, bool), SyncError> {
    let wrap = |bucket: &str, key: &str| {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        move |source| SyncError::Copy {
            bucket,
            key,
            source,
        }
    };
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
            false,
        ));
    }
    let mut by_content = false;
    if s.etag != d.etag {
        let comparable = multipart_parts(&s.etag).is_none() && multipart_parts(&d.etag).is_none();
        if comparable {
            return Ok((
                Some(mismatch(format!(
                    "ETag {} in the source, {} in the target",
                    s.etag, d.etag
                ))),
                false,
            ));
        }
        by_content = true;
        let a = retry(|| store.content_md5(src_bucket, &s.key))
            .await
            .map_err(wrap(src_bucket, &s.key))?;
        let b = retry(|| store.content_md5(dst_bucket, &d.key))
            .await
            .map_err(wrap(dst_bucket, &d.key))?;
        if a != b {
            return Ok((
                Some(mismatch(format!(
                    "content differs (MD5 {a} in the source, {b} in the target)"
                ))),
                true,
            ));
        }
    }
    let sh = retry(|| store.head_object(src_bucket, &s.key, None))
        .await
        .map_err(wrap(src_bucket, &s.key))?;
    let dh = retry(|| store.head_object(dst_bucket, &d.key, None))
        .await
        .map_err(wrap(dst_bucket, &d.key))?;
    if let Some(problem) = header_difference(&sh, &dh) {
        return Ok((Some(mismatch(problem)), by_content));
    }
    let st = retry(|| store.object_tags(src_bucket, &s.key))
        .await
        .map_err(wrap(src_bucket, &s.key))?;
    let dt = retry(|| store.object_tags(dst_bucket, &d.key))
        .await
        .map_err(wrap(dst_bucket, &d.key))?;
    if st != dt {
        return Ok((
            Some(mismatch(format!(
                "tags {st:?} in the source, {dt:?} in the target"
            ))),
            by_content,
        ));
    }
    Ok((None, by_content))
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
pub async fn measure(store: &dyn ObjectStore, path: &BucketPath) -> Result<(u64, u64), SyncError> {
    let mut lister = Lister::new(store, path);
    let mut bytes = 0;
    while let Some(o) = lister.next().await? {
        bytes += o.size;
    }
    Ok((lister.listed, bytes))
}

/// Tags of an object as a sorted map (helper shared by adapters and the fake).
pub fn tag_map<I: IntoIterator<Item = (String, String)>>(tags: I) -> BTreeMap<String, String> {
    tags.into_iter().collect()
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
}
