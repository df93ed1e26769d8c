//! `envclone s3 …`: the bucket copy engine (`s3sync`) as commands of their own — the typed sync
//! request, the sync and its verification with their errors, the S3 Batch Operations job of
//! `--engine batch --dry-run`, and a hidden memory benchmark (`envclone s3 diff-bench`) that runs
//! the same engine over two generated listings. The flags are parsed by `cli`, connected and
//! printed by `app` and `printer`, like every other command.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde::Serialize;
use thiserror::Error;

use crate::ports::*;
use crate::s3sync::{
    self, BucketPath, Planned, SyncError, SyncOptions, SyncProgress, SyncStats, VerifyReport,
    AWS_COPY_LIMIT,
};

#[derive(Debug, Error)]
pub enum S3CmdError {
    #[error(
        "--engine batch creates the job through the S3 Control API, which this build does not \
         call yet; run it with --dry-run to get the job, create it with `aws s3control \
         create-job`, or use --engine local"
    )]
    BatchUnavailable,
    #[error("s3 sync {source_path} → {target_path}: {error}")]
    Sync {
        source_path: String,
        target_path: String,
        error: Box<SyncError>,
    },
    #[error("{target_path} differs from {source_path} in {count} object(s); see the list above")]
    Verification {
        source_path: String,
        target_path: String,
        count: usize,
    },
    #[error(
        "interrupted (Ctrl-C): what was copied stays; a re-run copies only what is still missing"
    )]
    Interrupted,
}

impl S3CmdError {
    /// Refused before anything was changed (exit code 2): an engine this build cannot drive, a
    /// bucket that does not exist. Anything else is a failure (1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            S3CmdError::BatchUnavailable => true,
            S3CmdError::Sync { error, .. } => matches!(**error, SyncError::MissingBucket { .. }),
            _ => false,
        }
    }
}

/// A validated `s3 sync` request.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub source: BucketPath,
    pub target: BucketPath,
    pub options: SyncOptions,
    pub verify: bool,
}

impl SyncRequest {
    fn error(&self, error: SyncError) -> S3CmdError {
        S3CmdError::Sync {
            source_path: self.source.to_string(),
            target_path: self.target.to_string(),
            error: Box::new(error),
        }
    }
}

/// Syncs `request`, counting into `progress`; a dry run tells `planned` each copy and delete it
/// would make.
pub async fn sync(
    store: Arc<dyn ObjectStore>,
    request: &SyncRequest,
    progress: &Arc<SyncProgress>,
    planned: &mut (dyn FnMut(Planned<'_>) + Send),
) -> Result<SyncStats, S3CmdError> {
    s3sync::sync_with(
        store,
        &request.source,
        &request.target,
        &request.options,
        progress,
        planned,
    )
    .await
    .map_err(|error| request.error(error))
}

/// Compares the target of a finished sync with its source, object for object.
pub async fn verify(
    store: Arc<dyn ObjectStore>,
    request: &SyncRequest,
) -> Result<VerifyReport, S3CmdError> {
    let report = s3sync::verify(
        store,
        &request.source,
        &request.target,
        request.options.concurrency,
    )
    .await
    .map_err(|error| request.error(error))?;
    Ok(report)
}

/// The error of a verification that found differences (the report lists them).
pub fn verification_error(request: &SyncRequest, report: &VerifyReport) -> Option<S3CmdError> {
    (!report.is_equal()).then(|| S3CmdError::Verification {
        source_path: request.source.to_string(),
        target_path: request.target.to_string(),
        count: report.mismatches.len(),
    })
}

/// What `--engine batch --dry-run` prints: the manifest to write and the S3 Batch Operations
/// job to create (S3PutObjectCopy keeps metadata and tags; objects over 5 GiB, which
/// PutObjectCopy cannot copy, are listed for the local engine's UploadPartCopy).
pub async fn batch_job(
    store: &dyn ObjectStore,
    request: &SyncRequest,
    role: &str,
    reports: &BucketPath,
) -> Result<serde_json::Value, S3CmdError> {
    let mut token = None;
    let (mut objects, mut bytes) = (0u64, 0u64);
    let mut too_large = Vec::new();
    loop {
        let page = crate::retry::retry(|| {
            store.list_page(
                &request.source.bucket,
                &request.source.prefix,
                token.clone(),
            )
        })
        .await
        .map_err(|source| {
            request.error(SyncError::List {
                path: request.source.to_string(),
                source,
            })
        })?;
        for o in &page.objects {
            if o.size > AWS_COPY_LIMIT {
                too_large.push(o.key.clone());
            } else {
                objects += 1;
                bytes += o.size;
            }
        }
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    let run = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let manifest_key = format!("{}envclone-batch-{run}/manifest.csv", reports.prefix);
    Ok(serde_json::json!({
        "manifest": {
            "location": format!("s3://{}/{manifest_key}", reports.bucket),
            "format": "S3BatchOperations_CSV_20180820 (Bucket,Key; keys URL-encoded)",
            "objects": objects,
            "bytes": bytes,
        },
        "create_job": {
            "ConfirmationRequired": true,
            "Priority": 10,
            "RoleArn": role,
            "ClientRequestToken": format!("envclone-batch-{run}"),
            "Description": format!("envclone s3 sync {} {}", request.source, request.target),
            "Operation": {"S3PutObjectCopy": {
                "TargetResource": format!("arn:aws:s3:::{}", request.target.bucket),
                "TargetKeyPrefix": request.target.prefix,
                "MetadataDirective": "COPY",
            }},
            "Manifest": {
                "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
                "Location": {
                    "ObjectArn": format!("arn:aws:s3:::{}/{manifest_key}", reports.bucket),
                    "ETag": "<ETag of the manifest once written>",
                },
            },
            "Report": {
                "Bucket": format!("arn:aws:s3:::{}", reports.bucket),
                "Prefix": format!("{}envclone-batch-{run}/report", reports.prefix),
                "Format": "Report_CSV_20180820",
                "Enabled": true,
                "ReportScope": "AllTasks",
            },
        },
        "copied_separately_over_5_gib": too_large,
        "note": "S3 Batch Operations copies every object of the manifest (no diff); objects over 5 GiB need the local engine (UploadPartCopy)",
    }))
}

// ---------------------------------------------------------------- diff-bench

/// Two generated listings of `objects` keys: the target lacks 1% of the source's keys, holds
/// another version of 1%, and has 1% of its own. Copies and deletes succeed without doing
/// anything, so the benchmark measures the engine's own memory and CPU, not a server's.
struct SyntheticBuckets {
    objects: u64,
}

const SYNTHETIC_SOURCE: &str = "synthetic-source";
const SYNTHETIC_TARGET: &str = "synthetic-target";

impl SyntheticBuckets {
    fn etag(i: u64, changed: bool) -> String {
        // A cheap, well-spread 128-bit value that looks like an MD5.
        let a = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(changed);
        let b = a.rotate_left(29).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        format!("{a:016x}{b:016x}")
    }

    /// The objects of `bucket` from index `from` on, up to `max` of them.
    fn page(&self, bucket: &str, from: u64, max: usize) -> (Vec<ObjectSummary>, u64) {
        let target = bucket == SYNTHETIC_TARGET;
        let mut out = Vec::with_capacity(max);
        let mut i = from;
        while i < self.objects && out.len() < max {
            let (missing, changed, extra) = (i % 100 == 13, i % 100 == 7, i % 100 == 29);
            if !(target && missing) {
                out.push(ObjectSummary {
                    key: format!("data/{i:010}"),
                    size: 4096,
                    etag: Self::etag(i, target && changed),
                    storage_class: None,
                    restored: false,
                    checksum_algorithm: None,
                });
            }
            if target && extra {
                out.push(ObjectSummary {
                    key: format!("data/{i:010}~old"),
                    size: 4096,
                    etag: Self::etag(i, true),
                    storage_class: None,
                    restored: false,
                    checksum_algorithm: None,
                });
            }
            i += 1;
        }
        (out, i)
    }

    /// The smallest index whose plain key sorts after `after`.
    fn first_index_after(&self, after: &str) -> u64 {
        let (mut lo, mut hi) = (0, self.objects);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if format!("data/{mid:010}").as_str() > after {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    fn unsupported(operation: &str) -> PortError {
        PortError::failed(
            operation,
            "the synthetic listings have only small single-part objects",
        )
    }
}

#[async_trait]
impl ObjectStore for SyntheticBuckets {
    fn object_url(&self, bucket: &str, key: &str) -> String {
        crate::ports::s3_object_url("us-east-1", bucket, key)
    }
    async fn buckets_with_prefix(&self, _prefix: &str) -> PortResult<Vec<BucketListing>> {
        Err(Self::unsupported("s3:ListBuckets"))
    }
    async fn bucket_tags(
        &self,
        _bucket: &str,
    ) -> PortResult<Option<std::collections::BTreeMap<String, String>>> {
        Ok(Some(Default::default()))
    }
    async fn create_bucket(
        &self,
        bucket: &str,
        _tags: &std::collections::BTreeMap<String, String>,
    ) -> PortResult<()> {
        Err(PortError::AlreadyExists {
            what: format!("bucket {bucket}"),
        })
    }
    async fn list_page_after(
        &self,
        bucket: &str,
        _prefix: &str,
        start_after: Option<&str>,
        token: Option<String>,
    ) -> PortResult<ListPage> {
        let (objects, next) = match (token, start_after) {
            (Some(token), _) => self.page(bucket, token.parse().unwrap_or(0), 1000),
            (None, Some(after)) => {
                // Keys grow with their index: find the first index whose key (or whose
                // `~old` twin) sorts after `after`, then drop what does not.
                let from = self.first_index_after(after).saturating_sub(1);
                let (mut objects, next) = self.page(bucket, from, 1000);
                objects.retain(|o| o.key.as_str() > after);
                (objects, next)
            }
            (None, None) => self.page(bucket, 0, 1000),
        };
        tokio::task::yield_now().await;
        Ok(ListPage {
            objects,
            next_token: (next < self.objects).then(|| next.to_string()),
        })
    }
    async fn head_object(
        &self,
        bucket: &str,
        key: &str,
        _part_number: Option<u32>,
    ) -> PortResult<ObjectHead> {
        // Asked for the objects whose ETags differ (the 1% changed): plain MD5-like ETags, no
        // encryption, as listed.
        let (index, old) = match key.strip_prefix("data/") {
            Some(rest) => (rest.trim_end_matches("~old"), rest.ends_with("~old")),
            None => return Err(Self::unsupported("s3:HeadObject")),
        };
        let i: u64 = index
            .parse()
            .map_err(|_| Self::unsupported("s3:HeadObject"))?;
        let changed = old || (bucket == SYNTHETIC_TARGET && i % 100 == 7);
        tokio::task::yield_now().await;
        Ok(ObjectHead {
            size: 4096,
            etag: Self::etag(i, changed),
            ..ObjectHead::default()
        })
    }
    async fn object_tags(
        &self,
        _bucket: &str,
        _key: &str,
    ) -> PortResult<std::collections::BTreeMap<String, String>> {
        Err(Self::unsupported("s3:GetObjectTagging"))
    }
    async fn copy_object(
        &self,
        _src_bucket: &str,
        src_key: &str,
        _dst_bucket: &str,
        _dst_key: &str,
        _request: &crate::ports::CopyRequest,
    ) -> PortResult<crate::ports::CopiedObject> {
        tokio::task::yield_now().await;
        Ok(crate::ports::CopiedObject {
            etag: src_key.to_string(),
            encryption: None,
        })
    }
    async fn create_multipart(
        &self,
        _bucket: &str,
        _key: &str,
        _head: &ObjectHead,
        _tags: &std::collections::BTreeMap<String, String>,
    ) -> PortResult<String> {
        Err(Self::unsupported("s3:CreateMultipartUpload"))
    }
    async fn upload_part_copy(
        &self,
        _src_bucket: &str,
        _src_key: &str,
        _dst_bucket: &str,
        _dst_key: &str,
        _upload_id: &str,
        _part: u32,
        _first: u64,
        _last: u64,
    ) -> PortResult<crate::ports::CopiedPart> {
        Err(Self::unsupported("s3:UploadPartCopy"))
    }
    async fn complete_multipart(
        &self,
        _bucket: &str,
        _key: &str,
        _upload_id: &str,
        _parts: &[crate::ports::CopiedPart],
    ) -> PortResult<String> {
        Err(Self::unsupported("s3:CompleteMultipartUpload"))
    }
    async fn abort_multipart(&self, _bucket: &str, _key: &str, _upload_id: &str) -> PortResult<()> {
        Err(Self::unsupported("s3:AbortMultipartUpload"))
    }
    async fn delete_bucket(&self, _bucket: &str) -> PortResult<()> {
        Err(Self::unsupported("s3:DeleteBucket"))
    }
    async fn put_small_object(
        &self,
        _b: &str,
        _k: &str,
        _body: Vec<u8>,
        _c: Option<&str>,
    ) -> PortResult<String> {
        Err(Self::unsupported("s3:PutObject"))
    }
    async fn get_small_object(
        &self,
        _b: &str,
        _k: &str,
    ) -> PortResult<Option<crate::ports::SmallObject>> {
        Err(Self::unsupported("s3:GetObject"))
    }
    async fn delete_object(&self, _b: &str, _k: &str) -> PortResult<()> {
        Err(Self::unsupported("s3:DeleteObject"))
    }
    async fn delete_objects(&self, _bucket: &str, keys: &[String]) -> PortResult<()> {
        tokio::task::yield_now().await;
        if keys.len() > s3sync::DELETE_BATCH {
            return Err(PortError::failed("s3:DeleteObjects", "MalformedXML"));
        }
        Ok(())
    }
    async fn content_md5(&self, _bucket: &str, _key: &str) -> PortResult<String> {
        Err(Self::unsupported("s3:GetObject"))
    }
    async fn copy_bucket_configuration(
        &self,
        _source: &str,
        _target: &str,
    ) -> PortResult<crate::ports::BucketConfigReport> {
        Err(Self::unsupported("s3:GetBucketVersioning"))
    }
    async fn list_versions_page(
        &self,
        _bucket: &str,
        _marker: Option<(String, String)>,
    ) -> PortResult<crate::ports::VersionPage> {
        Err(Self::unsupported("s3:ListObjectVersions"))
    }
    async fn delete_versions(
        &self,
        _bucket: &str,
        _versions: &[crate::ports::ObjectVersion],
    ) -> PortResult<()> {
        Err(Self::unsupported("s3:DeleteObjects"))
    }
}

/// Peak resident memory of this process (Linux: VmHWM), in bytes.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What `envclone s3 diff-bench` measured.
#[derive(Debug, Clone, Serialize)]
pub struct DiffBench {
    pub objects: u64,
    pub seconds: f64,
    pub peak_rss_bytes: Option<u64>,
    pub stats: SyncStats,
}

/// Diffs two generated listings of `objects` keys each (see [`SyntheticBuckets`]).
pub async fn diff_bench(objects: u64) -> Result<DiffBench, S3CmdError> {
    let store: Arc<dyn ObjectStore> = Arc::new(SyntheticBuckets { objects });
    let request = SyncRequest {
        source: BucketPath::bucket(SYNTHETIC_SOURCE),
        target: BucketPath::bucket(SYNTHETIC_TARGET),
        options: SyncOptions {
            delete: true,
            ..SyncOptions::default()
        },
        verify: false,
    };
    let started = Instant::now();
    let stats = s3sync::sync(store, &request.source, &request.target, &request.options)
        .await
        .map_err(|error| request.error(error))?;
    Ok(DiffBench {
        objects,
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_bytes: peak_rss(),
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_bucket_is_bad_input_and_other_failures_are_not() {
        let missing = S3CmdError::Sync {
            source_path: "s3://a/".into(),
            target_path: "s3://b/".into(),
            error: Box::new(SyncError::MissingBucket { bucket: "b".into() }),
        };
        assert!(missing.is_bad_input());
        let failed = S3CmdError::Sync {
            source_path: "s3://a/".into(),
            target_path: "s3://b/".into(),
            error: Box::new(SyncError::Copy {
                bucket: "a".into(),
                key: "k".into(),
                source: PortError::failed("s3:CopyObject", "AccessDenied"),
            }),
        };
        assert!(!failed.is_bad_input());
        assert!(S3CmdError::BatchUnavailable.is_bad_input());
        assert!(!S3CmdError::Interrupted.is_bad_input());
    }

    #[tokio::test]
    async fn the_synthetic_listings_differ_by_one_percent_each_way() {
        let store: Arc<dyn ObjectStore> = Arc::new(SyntheticBuckets { objects: 2_500 });
        let stats = s3sync::sync(
            store,
            &BucketPath::bucket(SYNTHETIC_SOURCE),
            &BucketPath::bucket(SYNTHETIC_TARGET),
            &SyncOptions {
                delete: true,
                ..SyncOptions::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(stats.listed, 2_500);
        assert_eq!(stats.copied, 50); // 25 changed + 25 missing
        assert_eq!(stats.deleted, 25);
        assert_eq!(stats.unchanged, 2_450);
    }
}
