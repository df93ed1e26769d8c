//! `envclone s3 …`: the bucket copy engine (`s3sync`) as commands of their own — the typed sync
//! request, the sync and its verification with their errors, the S3 Batch Operations job of
//! `--engine batch --dry-run` (the real run is `s3batch`), and a hidden memory benchmark (`envclone s3 diff-bench`) that runs
//! the same engine over two generated listings. The flags are parsed by `cli`, connected and
//! printed by `app` and `printer`, like every other command.

use std::sync::Arc;

use serde::Serialize;
use thiserror::Error;

use crate::ports::*;
use crate::s3sync::{
    self, BucketPath, Planned, SyncError, SyncOptions, SyncProgress, SyncStats, VerifyReport,
};

#[derive(Debug, Error)]
pub enum S3CmdError {
    #[error(transparent)]
    Batch(#[from] crate::s3batch::BatchError),
    #[error(
        "interrupted (Ctrl-C): batch job {job_id} keeps running in account {account}; follow \
         it with `envclone s3 job status {job_id} --account {account}`, cancel it with \
         `envclone s3 job cancel {job_id} --account {account}`; re-running the same sync \
         picks the job up (it is journaled) instead of starting another"
    )]
    BatchInterrupted { job_id: String, account: String },
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
            S3CmdError::Batch(e) => e.is_bad_input(),
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
    // As of the sync's moment when it had one: later writes to the source are no differences.
    let report = s3sync::verify_as_of(
        store,
        &request.source,
        &request.target,
        request.options.concurrency,
        false,
        request.options.as_of,
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

/// What `--engine batch --dry-run` prints: the manifest of what differs (as a real run writes
/// it, diffed like the local engine) and the S3 Batch Operations job a real run creates
/// (S3PutObjectCopy keeps metadata and tags; objects over the copy limit, which CopyObject
/// cannot copy, are left to the local engine).
pub async fn batch_job(
    store: Arc<dyn ObjectStore>,
    request: &crate::s3batch::BatchRequest,
) -> Result<serde_json::Value, S3CmdError> {
    request.check_reports()?;
    let target_key_prefix = request.target_key_prefix()?;
    let dir = format!(
        "{}envclone-batch/<client token of the run>",
        request.reports.prefix
    );
    // CreateJob's fields whatever the manifest.
    let mut create_job = serde_json::json!({
        "AccountId": request.account_id()?,
        "ConfirmationRequired": false,
        "Priority": request.priority,
        "RoleArn": request.role_arn,
        "Description": format!("envclone <client token> {} -> {}", request.source, request.target),
        "Operation": {"S3PutObjectCopy": {
            "TargetResource": format!("arn:aws:s3:::{}", request.target.bucket),
            "TargetKeyPrefix": target_key_prefix,
            "MetadataDirective": "COPY",
        }},
        "Report": {
            "Bucket": format!("arn:aws:s3:::{}", request.reports.bucket),
            "Prefix": format!("{dir}/report"),
            "Format": "Report_CSV_20180820",
            "Enabled": true,
            "ReportScope": "FailedTasksOnly",
        },
    });
    if request.manifest == crate::s3batch::ManifestSource::Inventory {
        let report = crate::s3batch::inventory::latest(&*store, &request.source).await?;
        create_job["Manifest"] = serde_json::json!({
            "Spec": {"Format": "S3InventoryReport_CSV_20161130"},
            "Location": {
                "ObjectArn": format!("arn:aws:s3:::{}/{}", report.bucket, report.manifest_key),
                "ETag": report.etag,
            },
        });
        return Ok(serde_json::json!({
            "manifest": {
                "location": format!("s3://{}/{}", report.bucket, report.manifest_key),
                "format": "S3InventoryReport_CSV_20161130",
                "inventory_configuration": report.config_id,
                "taken_at": report.taken_at.to_rfc3339(),
                "note": "every object the report lists is copied by the job; what was written \
                         or deleted since it was taken is copied (removed with --delete) by \
                         envclone after the job",
            },
            "journal": format!("s3://{}/{}", request.reports.bucket, request.journal_key()),
            "create_job": create_job,
        }));
    }
    let manifest = crate::s3batch::diff_manifest(
        &store,
        &request.source,
        &request.target,
        &request.options,
        request.copy_limit,
    )
    .await
    .map_err(|error| S3CmdError::Sync {
        source_path: request.source.to_string(),
        target_path: request.target.to_string(),
        error: Box::new(error),
    })?;
    create_job["Manifest"] = serde_json::json!({
        "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": if manifest.version_ids {
            vec!["Bucket", "Key", "VersionId"]
        } else {
            vec!["Bucket", "Key"]
        }},
        "Location": {
            "ObjectArn": format!("arn:aws:s3:::{}/{dir}/manifest.csv", request.reports.bucket),
            "ETag": "<ETag of the manifest once written>",
        },
    });
    Ok(serde_json::json!({
        "manifest": {
            "location": format!("s3://{}/{dir}/manifest.csv", request.reports.bucket),
            "format": if manifest.version_ids {
                "S3BatchOperations_CSV_20180820 (Bucket,Key,VersionId: each object's version as of the moment; keys URL-encoded)"
            } else {
                "S3BatchOperations_CSV_20180820 (Bucket,Key; keys URL-encoded)"
            },
            "objects": manifest.tasks,
            "bytes": manifest.bytes,
        },
        "journal": format!("s3://{}/{}", request.reports.bucket, request.journal_key()),
        "create_job": create_job,
        "copied_locally_over_the_copy_limit": manifest.over_limit,
        "deleted_locally_with_delete": manifest.extra.len(),
    }))
}

// ---------------------------------------------------------------- diff-bench

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

/// Diffs two generated listings of `objects` keys each (see
/// [`crate::fake::synthetic::SyntheticBuckets`]); built only with the `fake` feature.
#[cfg(any(test, feature = "fake"))]
pub async fn diff_bench(objects: u64) -> Result<DiffBench, S3CmdError> {
    use crate::fake::synthetic::{SyntheticBuckets, SYNTHETIC_SOURCE, SYNTHETIC_TARGET};
    use std::time::Instant;
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
        assert!(S3CmdError::Batch(crate::s3batch::BatchError::RoleArn("x".into())).is_bad_input());
        assert!(!S3CmdError::Interrupted.is_bad_input());
    }
}
