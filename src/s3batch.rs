//! `envclone s3 sync --engine batch`: the copy handed to S3 Batch Operations, for buckets
//! beyond one machine's reach. The engine diffs the two paths (as the local engine does),
//! writes a CSV manifest of what differs next to the reports, creates an S3PutObjectCopy job,
//! follows it with DescribeJob, reads its completion report, re-copies with the local engine
//! what the job did not copy (its failed tasks, and the objects over CopyObject's 5 GiB limit,
//! which were never in the manifest), then verifies the target object for object.
//!
//! The run is journaled in the reports location before the job is created: a re-run after a
//! crash (kill -9, a lost machine) finds the job by its client token (the journal's job id, else
//! ListJobs, else CreateJob again with the same token, which CreateJob answers with the same
//! job) instead of starting a second one. Knows no SDK: only the ports.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ports::batch::*;
use crate::ports::*;

pub mod inventory;
use crate::s3sync::{self, BucketPath, Planned, SyncError, SyncProgress, SyncStats, VerifyReport};

/// Characters written as they are in a manifest key: everything else is percent-encoded
/// ("Specifying a manifest": "Object keys must be URL-encoded").
const KEY_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// CreateJob's Description is at most 256 characters.
const DESCRIPTION_MAX: usize = 256;

#[derive(Debug, Error)]
pub enum BatchError {
    #[error(
        "--batch-role {0:?} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME): the job \
         runs in the role's account"
    )]
    RoleArn(String),
    #[error(
        "{source_path} → {target_path}: a batch job copies KEY to TargetKeyPrefix + KEY and \
         cannot strip the source prefix; the target prefix must end with the source prefix \
         ({source_prefix:?}), or use --engine local"
    )]
    Prefixes {
        source_path: String,
        target_path: String,
        source_prefix: String,
    },
    #[error(
        "--batch-reports {reports} is inside {source_path} or {target_path}: the manifest and \
         the reports would be copied or found extra; put them in another bucket or prefix"
    )]
    ReportsInside {
        reports: String,
        source_path: String,
        target_path: String,
    },
    #[error("{what}: {source}")]
    Port { what: String, source: PortError },
    #[error(
        "--manifest inventory: {source_path} has no S3 Inventory report a job can read: {why}; \
         or use --manifest diff (envclone lists both paths and writes the manifest itself)"
    )]
    NoInventory { source_path: String, why: String },
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(
        "the journal s3://{bucket}/{key} is unreadable ({reason}); remove it to start a new job \
         (check first that no job of it is still running: envclone s3 job status)"
    )]
    Journal {
        bucket: String,
        key: String,
        reason: String,
    },
    #[error(
        "s3://{bucket}/{key}, the record of the copies a batch job made in other part layouts \
         (kept by the verification after it), is unreadable ({reason}); delete it and the \
         journal naming it ({journal}) so that the next sync compares the buckets anew"
    )]
    SameBytes {
        bucket: String,
        key: String,
        journal: String,
        reason: String,
    },
    #[error(
        "batch job {id} ended {status}{reasons}; nothing more was copied: look at the job \
         (envclone s3 job status {id} --account {account}), fix the cause, and re-run (a \
         re-run starts a new job)"
    )]
    JobEnded {
        id: String,
        status: JobStatus,
        account: String,
        reasons: String,
    },
    #[error(
        "the completion report of batch job {id} is unreadable ({reason}): s3://{bucket}/{key}"
    )]
    Report {
        id: String,
        bucket: String,
        key: String,
        reason: String,
    },
}

impl BatchError {
    /// Refused before anything was changed.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            BatchError::RoleArn(_)
                | BatchError::Prefixes { .. }
                | BatchError::ReportsInside { .. }
                | BatchError::NoInventory { .. }
        )
    }
}

fn port(what: impl Into<String>) -> impl FnOnce(PortError) -> BatchError {
    let what = what.into();
    move |source| BatchError::Port { what, source }
}

/// Where a job's manifest comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManifestSource {
    /// A CSV of what differs, which envclone writes after diffing the two paths.
    #[default]
    Diff,
    /// The source's latest S3 Inventory report ([`inventory`]): every object it lists is
    /// copied by the job, what was written since by the local engine after it.
    Inventory,
}

/// A validated batch sync.
#[derive(Debug, Clone)]
pub struct BatchRequest {
    pub source: BucketPath,
    pub target: BucketPath,
    pub options: s3sync::SyncOptions,
    pub role_arn: String,
    /// Where the journal, the manifest and the completion reports go.
    pub reports: BucketPath,
    pub priority: i32,
    /// Objects over this size are left out of the manifest and copied by the local engine
    /// (AWS: 5 GiB, CopyObject's limit).
    pub copy_limit: u64,
    /// Between two DescribeJob.
    pub poll: Duration,
    /// The client token's stem, when the caller derives it (a clone: from its run id and the
    /// bucket); a new job's token is then `STEM-N`, N one more than the previous finished
    /// job of this pair with that stem. None: from the start time.
    pub token_stem: Option<String>,
    pub manifest: ManifestSource,
}

impl BatchRequest {
    /// The account the job runs in: the role's.
    pub fn account_id(&self) -> Result<String, BatchError> {
        account_of_role(&self.role_arn)
    }

    /// S3PutObjectCopy's TargetKeyPrefix: the copy of KEY is TargetKeyPrefix + KEY, so the
    /// target prefix must be something followed by the source prefix.
    pub fn target_key_prefix(&self) -> Result<String, BatchError> {
        self.target
            .prefix
            .strip_suffix(&self.source.prefix)
            .map(str::to_string)
            .ok_or_else(|| BatchError::Prefixes {
                source_path: self.source.to_string(),
                target_path: self.target.to_string(),
                source_prefix: self.source.prefix.clone(),
            })
    }

    /// The reports location must be outside both paths: the manifest, the journal and the
    /// reports would otherwise be copied, or found extra in the target.
    pub fn check_reports(&self) -> Result<(), BatchError> {
        let inside = |p: &BucketPath| {
            p.bucket == self.reports.bucket && self.reports.prefix.starts_with(&p.prefix)
        };
        if inside(&self.source) || inside(&self.target) {
            return Err(BatchError::ReportsInside {
                reports: self.reports.to_string(),
                source_path: self.source.to_string(),
                target_path: self.target.to_string(),
            });
        }
        Ok(())
    }

    /// The journal of this source → target pair (one job at a time per pair).
    pub fn journal_key(&self) -> String {
        format!(
            "{}envclone-batch/{}/journal.json",
            self.reports.prefix,
            self.pair_hash()
        )
    }

    fn pair_hash(&self) -> String {
        let digest = Md5::digest(format!("{}\n{}", self.source, self.target).as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// `arn:aws:iam::123456789012:role/name` → `123456789012`.
pub fn account_of_role(arn: &str) -> Result<String, BatchError> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "iam", "", account, resource]
            if account.len() == 12
                && account.chars().all(|c| c.is_ascii_digit())
                && resource.starts_with("role/") =>
        {
            Ok(account.to_string())
        }
        _ => Err(BatchError::RoleArn(arn.to_string())),
    }
}

/// The journal: written before CreateJob, updated with the job's id, marked done once the
/// target is verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub client_token: String,
    pub manifest_key: String,
    pub manifest_etag: String,
    pub report_prefix: String,
    pub tasks: u64,
    /// Left out of the manifest (over the copy limit): the local engine copies them.
    pub over_limit: Vec<String>,
    /// With --delete: the target's keys the source does not have (a job copies, it does not
    /// delete).
    #[serde(default)]
    pub extra: Vec<String>,
    pub job_id: Option<String>,
    pub done: bool,
    /// The moment the run copies the source as of (`SyncOptions::as_of`): its manifest names
    /// each object's version at that moment (`Bucket,Key,VersionId`). None: current objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
    /// In a run as of a moment: the version of each key of `over_limit` to copy.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub over_limit_versions: BTreeMap<String, String>,
    /// The bucket of `manifest_key` when it is not the reports bucket (an inventory report's).
    #[serde(default)]
    pub manifest_bucket: Option<String>,
    /// `--manifest inventory`: the report the job reads (`manifest_key` is its manifest.json).
    #[serde(default)]
    pub inventory: Option<inventory::InventoryReport>,
    /// Once the target is verified: the object (in the reports location) holding what the
    /// verification found of the copies whose ETags differ from their sources' (a job's copy
    /// of a multipart object is single-part), so a later sync of the pair — a clone's delta
    /// inside Standby — copies only what changed since, without a job ([`s3sync::SameBytes`]).
    #[serde(default)]
    pub same_bytes: Option<String>,
}

/// What the engine tells as it goes (printed as JSON events with `--output json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "batch", rename_all = "snake_case")]
pub enum BatchEvent {
    /// The diff found nothing for a job to copy.
    NothingForAJob { over_limit: u64 },
    ManifestWritten {
        location: String,
        tasks: u64,
        over_limit: u64,
    },
    JobCreated {
        job_id: String,
        client_token: String,
    },
    /// A re-run found the job of an unfinished run.
    JobResumed {
        job_id: String,
        client_token: String,
        how: &'static str,
    },
    Progress {
        job_id: String,
        status: JobStatus,
        total: Option<u64>,
        succeeded: u64,
        failed: u64,
    },
    /// `--manifest inventory`: the report the job reads, and how old it is.
    InventoryManifest {
        location: String,
        config_id: String,
        taken_at: String,
        /// Minutes between when the report was taken and the start of this run.
        age_minutes: i64,
    },
    /// `--manifest inventory`: after the job, what the local engine copied (and, with
    /// --delete, removed) that the report did not show as it is now: written or deleted since
    /// it was taken.
    CatchUp {
        taken_at: String,
        copied: u64,
        deleted: u64,
    },
    /// What the local engine is to re-copy: the job's failed tasks and the objects over the limit.
    Recopy {
        failed: Vec<String>,
        over_limit: Vec<String>,
    },
}

/// The outcome of a batch sync.
#[derive(Debug, Clone, Serialize)]
pub struct BatchOutcome {
    pub job_id: Option<String>,
    pub account_id: String,
    pub tasks: u64,
    pub job_succeeded: u64,
    pub job_failed: u64,
    /// Keys of the failed tasks, from the completion report.
    pub failed_keys: Vec<String>,
    pub over_limit: Vec<String>,
    /// In a copy as of a moment: the version of each re-copied key (of `failed_keys`, from the
    /// completion report's VersionId; of `over_limit`, from the listing as of the moment),
    /// which the local engine copies by version id.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<String, String>,
    /// The local engine's passes after the job: the re-copies, and the deletes of --delete.
    pub local: SyncStats,
    pub verification: VerifyReport,
}

/// A manifest line: `bucket,key` with the key URL-encoded, or `bucket,key,versionId` when the
/// object is named by version. "Specifying a manifest" (S3 User Guide): a CSV manifest's rows
/// are Bucket, Key and, optionally, VersionId; with a version ID the job acts on that version,
/// without one on the current version; if the manifest has the version ID field, every row
/// must have a version ID (the job's `Manifest.Spec.Fields` then list `VersionId`).
pub fn manifest_line(bucket: &str, key: &str, version: Option<&str>) -> String {
    let key = percent_encoding::utf8_percent_encode(key, KEY_SET);
    match version {
        Some(v) => format!("{bucket},{key},{v}\n"),
        None => format!("{bucket},{key}\n"),
    }
}

/// A failed task of a completion report: its bucket, key and version (empty in the report when
/// the manifest named no version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedTask {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
}

/// The failed tasks of a completion report's CSV ("S3 Batch Operations completion reports":
/// Bucket, Key (URL-encoded), VersionId, TaskStatus, …).
pub fn failed_tasks(csv: &str) -> Result<Vec<FailedTask>, String> {
    let mut out = Vec::new();
    for (n, line) in csv
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut fields = line.splitn(5, ',');
        let (Some(bucket), Some(key), Some(version), Some(status)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(format!("line {} has fewer than 4 fields: {line:?}", n + 1));
        };
        if status != "failed" {
            continue;
        }
        let key = percent_encoding::percent_decode_str(key)
            .decode_utf8()
            .map_err(|_| format!("line {}: the key is not URL-encoded UTF-8", n + 1))?;
        out.push(FailedTask {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: (!version.is_empty()).then(|| version.to_string()),
        });
    }
    Ok(out)
}

/// The failed tasks of job `id`, from its completion report (`manifest.json` listing the
/// result files; only those of failed tasks are read), sorted by key.
pub async fn report_failures(
    store: &dyn ObjectStore,
    id: &str,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<FailedTask>, BatchError> {
    let key = format!("{}/job-{id}/manifest.json", prefix.trim_end_matches('/'));
    let error = |key: &str, reason: String| BatchError::Report {
        id: id.to_string(),
        bucket: bucket.to_string(),
        key: key.to_string(),
        reason,
    };
    let manifest = crate::retry::retry(|| store.get_small_object(bucket, &key))
        .await
        .map_err(|e| error(&key, e.to_string()))?
        .ok_or_else(|| error(&key, "it does not exist".into()))?;
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.body)
        .map_err(|e| error(&key, format!("not JSON: {e}")))?;
    let results = manifest["Results"]
        .as_array()
        .ok_or_else(|| error(&key, "no Results list".into()))?;
    let mut keys = Vec::new();
    for r in results {
        if r["TaskExecutionStatus"] != "failed" {
            continue;
        }
        let (Some(b), Some(k)) = (r["Bucket"].as_str(), r["Key"].as_str()) else {
            return Err(error(&key, format!("a result without Bucket/Key: {r}")));
        };
        let csv = crate::retry::retry(|| store.get_small_object(b, k))
            .await
            .map_err(|e| error(k, e.to_string()))?
            .ok_or_else(|| error(k, "it does not exist".into()))?;
        let rows = failed_tasks(&String::from_utf8_lossy(&csv.body)).map_err(|e| error(k, e))?;
        keys.extend(rows);
    }
    keys.sort_by(|a, b| (&a.key, &a.version_id).cmp(&(&b.key, &b.version_id)));
    keys.dedup();
    Ok(keys)
}

pub async fn read_journal(
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
) -> Result<Option<Journal>, BatchError> {
    let Some(object) = crate::retry::retry(|| store.get_small_object(bucket, key))
        .await
        .map_err(port(format!("reading the journal s3://{bucket}/{key}")))?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&object.body)
        .map(Some)
        .map_err(|e| BatchError::Journal {
            bucket: bucket.to_string(),
            key: key.to_string(),
            reason: e.to_string(),
        })
}

async fn write_journal(
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    journal: &Journal,
) -> Result<(), BatchError> {
    let body = serde_json::to_vec_pretty(journal).expect("the journal serializes");
    crate::retry::retry(|| store.put_small_object(bucket, key, body.clone(), None))
        .await
        .map_err(port(format!("writing the journal s3://{bucket}/{key}")))?;
    Ok(())
}

/// The job's description: names the run's token, which ListJobs shows (it has no token).
fn description(request: &BatchRequest, token: &str) -> String {
    let text = format!("envclone {token} {} -> {}", request.source, request.target);
    text.chars().take(DESCRIPTION_MAX).collect()
}

/// What a job is to copy: the manifest of what differs, and what it leaves to the local engine.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// `Bucket,Key` lines, or `Bucket,Key,VersionId` (`version_ids`).
    pub csv: String,
    /// The rows name versions: a diff as of a moment (`SyncOptions::as_of`), each key's
    /// version current then.
    pub version_ids: bool,
    pub tasks: u64,
    pub bytes: u64,
    /// Over the copy limit: for the local engine.
    pub over_limit: Vec<String>,
    /// With `version_ids`: the version of each key of `over_limit`.
    pub over_limit_versions: BTreeMap<String, String>,
    /// In the target, not in the source (for --delete).
    pub extra: Vec<String>,
}

/// Diffs `source` and `target` as the local engine does (a dry run of it) into a manifest; as
/// of `options.as_of` when given (the source's versions current then, each row naming its
/// version, so the job copies the source as it was at that moment whatever it holds now).
pub async fn diff_manifest(
    store: &Arc<dyn ObjectStore>,
    source: &BucketPath,
    target: &BucketPath,
    options: &s3sync::SyncOptions,
    copy_limit: u64,
) -> Result<Manifest, SyncError> {
    let mut m = Manifest {
        version_ids: options.as_of.is_some(),
        ..Manifest::default()
    };
    let options = s3sync::SyncOptions {
        dry_run: true,
        ..options.clone()
    };
    let progress = Arc::new(SyncProgress::default());
    let bucket = source.bucket.clone();
    s3sync::sync_with(
        store.clone(),
        source,
        target,
        &options,
        &progress,
        &mut |p| match p {
            Planned::Copy {
                source_key,
                version_id,
                size,
                ..
            } => {
                if size > copy_limit {
                    m.over_limit.push(source_key.to_string());
                    if let Some(v) = version_id {
                        m.over_limit_versions
                            .insert(source_key.to_string(), v.to_string());
                    }
                } else {
                    m.tasks += 1;
                    m.bytes += size;
                    m.csv
                        .push_str(&manifest_line(&bucket, source_key, version_id));
                }
            }
            Planned::Delete { target_key } => m.extra.push(target_key.to_string()),
        },
    )
    .await?;
    Ok(m)
}

/// CreateJob's ClientToken is 1 to 64 characters (S3 Control API Reference, CreateJob).
pub const CLIENT_TOKEN_MAX: usize = 64;

/// The token of a new run of this pair, unique per run: CreateJob is idempotent on it, so a
/// token reused after a finished job would answer with that old job. With a stem: `STEM-N`,
/// N one more than the previous finished run's; else from the start time (two runs in one
/// second included).
fn new_token(
    request: &BatchRequest,
    previous: Option<&Journal>,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    match &request.token_stem {
        Some(stem) => {
            let n = previous
                .and_then(|p| p.client_token.strip_prefix(stem.as_str()))
                .and_then(|rest| rest.strip_prefix('-'))
                .and_then(|n| n.parse::<u32>().ok())
                .map_or(1, |n| n + 1);
            format!("{stem}-{n}")
        }
        None => format!(
            "envclone-{}-{}-{:09}",
            request.pair_hash(),
            now.format("%Y%m%dT%H%M%S"),
            now.timestamp_subsec_nanos()
        ),
    }
}

/// Diffs, writes the manifest and the journal: a new run.
async fn start_run(
    store: &Arc<dyn ObjectStore>,
    (request, now): (&BatchRequest, chrono::DateTime<chrono::Utc>),
    token: String,
    events: &mut (dyn FnMut(BatchEvent) + Send),
) -> Result<Journal, BatchError> {
    let dir = run_dir(request, &token);
    if request.manifest == ManifestSource::Inventory {
        let report = inventory::latest(&**store, &request.source).await?;
        events(BatchEvent::InventoryManifest {
            location: format!("s3://{}/{}", report.bucket, report.manifest_key),
            config_id: report.config_id.clone(),
            taken_at: report.taken_at.to_rfc3339(),
            age_minutes: (now - report.taken_at).num_minutes(),
        });
        let journal = Journal {
            client_token: token,
            manifest_key: report.manifest_key.clone(),
            manifest_etag: report.etag.clone(),
            report_prefix: format!("{dir}/report"),
            tasks: 0,
            over_limit: Vec::new(),
            extra: Vec::new(),
            job_id: None,
            done: false,
            manifest_bucket: Some(report.bucket.clone()),
            inventory: Some(report),
            same_bytes: None,
            // An inventory report names current objects: a run as of a moment takes it up by
            // the moment (a catch-up as of it copies the versions of it, see `catch_up`).
            as_of: request.options.as_of,
            over_limit_versions: BTreeMap::new(),
        };
        write_journal(
            &**store,
            &request.reports.bucket,
            &request.journal_key(),
            &journal,
        )
        .await?;
        return Ok(journal);
    }
    let Manifest {
        csv: manifest,
        tasks,
        over_limit,
        over_limit_versions,
        extra,
        ..
    } = diff_manifest(
        store,
        &request.source,
        &request.target,
        &request.options,
        request.copy_limit,
    )
    .await?;
    let manifest_key = format!("{dir}/manifest.csv");
    let reports = &request.reports.bucket;
    let manifest_etag = if tasks > 0 {
        let body = manifest.clone().into_bytes();
        let etag = crate::retry::retry(|| {
            store.put_small_object(reports, &manifest_key, body.clone(), None)
        })
        .await
        .map_err(port(format!(
            "writing the manifest s3://{reports}/{manifest_key}"
        )))?;
        events(BatchEvent::ManifestWritten {
            location: format!("s3://{reports}/{manifest_key}"),
            tasks,
            over_limit: over_limit.len() as u64,
        });
        etag
    } else {
        events(BatchEvent::NothingForAJob {
            over_limit: over_limit.len() as u64,
        });
        String::new()
    };
    let journal = Journal {
        client_token: token,
        manifest_key,
        manifest_etag,
        report_prefix: format!("{dir}/report"),
        tasks,
        over_limit,
        extra,
        job_id: None,
        done: false,
        as_of: request.options.as_of,
        over_limit_versions,
        manifest_bucket: None,
        inventory: None,
        same_bytes: None,
    };
    write_journal(&**store, reports, &request.journal_key(), &journal).await?;
    Ok(journal)
}

/// Where a run's manifest, report and record go: `<reports>envclone-batch/<client token>`.
fn run_dir(request: &BatchRequest, token: &str) -> String {
    format!("{}envclone-batch/{token}", request.reports.prefix)
}

/// Reads the record of a run's copies found equal under other ETags (`Journal::same_bytes`,
/// in the bucket of `request`'s reports).
pub async fn read_same_bytes(
    store: &dyn ObjectStore,
    request: &BatchRequest,
    key: &str,
) -> Result<s3sync::SameBytes, BatchError> {
    let bucket = request.reports.bucket.as_str();
    let unreadable = |reason: String| BatchError::SameBytes {
        bucket: bucket.to_string(),
        key: key.to_string(),
        journal: format!("s3://{bucket}/{}", request.journal_key()),
        reason,
    };
    let object = crate::retry::retry(|| store.get_small_object(bucket, key))
        .await
        .map_err(port(format!("reading s3://{bucket}/{key}")))?
        .ok_or_else(|| unreadable("it does not exist".into()))?;
    serde_json::from_slice(&object.body).map_err(|e| unreadable(e.to_string()))
}

/// The job of `journal`: its recorded id, else the one ListJobs shows with the run's token,
/// else a CreateJob with the run's token (which returns the job that token created, if any).
async fn find_or_create_job(
    store: &Arc<dyn ObjectStore>,
    jobs: &dyn BatchJobs,
    request: &BatchRequest,
    account: &str,
    journal: &mut Journal,
    resumed: bool,
    events: &mut (dyn FnMut(BatchEvent) + Send),
) -> Result<String, BatchError> {
    if let Some(id) = &journal.job_id {
        events(BatchEvent::JobResumed {
            job_id: id.clone(),
            client_token: journal.client_token.clone(),
            how: "journal",
        });
        return Ok(id.clone());
    }
    if resumed {
        let listed = crate::retry::retry(|| jobs.list_jobs(account))
            .await
            .map_err(port(format!("listing the batch jobs of account {account}")))?;
        if let Some(job) = listed
            .iter()
            .find(|j| j.description.split(' ').nth(1) == Some(journal.client_token.as_str()))
        {
            events(BatchEvent::JobResumed {
                job_id: job.id.clone(),
                client_token: journal.client_token.clone(),
                how: "ListJobs",
            });
            return record_job(store, request, journal, &job.id).await;
        }
    }
    let create = CopyJobRequest {
        account_id: account.to_string(),
        client_token: journal.client_token.clone(),
        description: description(request, &journal.client_token),
        role_arn: request.role_arn.clone(),
        priority: request.priority,
        manifest_bucket: journal
            .manifest_bucket
            .clone()
            .unwrap_or_else(|| request.reports.bucket.clone()),
        manifest_key: journal.manifest_key.clone(),
        manifest_etag: journal.manifest_etag.clone(),
        // An inventory report's manifest.json names its own fields (no version column): a run
        // as of a moment then has its catch-up (a sync as of it) copy the versions of it.
        version_ids: journal.as_of.is_some() && journal.inventory.is_none(),
        manifest_format: if journal.inventory.is_some() {
            ManifestFormat::InventoryCsv
        } else {
            ManifestFormat::Csv
        },
        target_bucket: request.target.bucket.clone(),
        target_key_prefix: request.target_key_prefix()?,
        report_bucket: request.reports.bucket.clone(),
        report_prefix: journal.report_prefix.clone(),
    };
    // Retried with the same token: a CreateJob whose answer was lost is answered again with
    // the same job.
    let id = crate::retry::retry(|| jobs.create_copy_job(&create))
        .await
        .map_err(port(format!(
            "creating the batch job (manifest s3://{}/{})",
            create.manifest_bucket, journal.manifest_key
        )))?;
    events(BatchEvent::JobCreated {
        job_id: id.clone(),
        client_token: journal.client_token.clone(),
    });
    record_job(store, request, journal, &id).await
}

/// Notes the job's id in the journal.
async fn record_job(
    store: &Arc<dyn ObjectStore>,
    request: &BatchRequest,
    journal: &mut Journal,
    id: &str,
) -> Result<String, BatchError> {
    journal.job_id = Some(id.to_string());
    write_journal(
        &**store,
        &request.reports.bucket,
        &request.journal_key(),
        journal,
    )
    .await?;
    Ok(id.to_string())
}

/// An unfinished run of this pair taken as of another moment (a clone's pre-copy of the
/// current objects interrupted, then its copy as of T): its manifest names other versions, so
/// it is not taken up. Its job, if it made one, is followed to its end (it writes into the
/// target) and the run is closed; a new run then diffs as of this request's moment.
async fn close_other_run(
    store: &Arc<dyn ObjectStore>,
    jobs: &dyn BatchJobs,
    request: &BatchRequest,
    account: &str,
    mut journal: Journal,
    events: &mut (dyn FnMut(BatchEvent) + Send),
) -> Result<Journal, BatchError> {
    let id = match &journal.job_id {
        Some(id) => Some(id.clone()),
        None if journal.tasks > 0 => crate::retry::retry(|| jobs.list_jobs(account))
            .await
            .map_err(port(format!("listing the batch jobs of account {account}")))?
            .into_iter()
            .find(|j| j.description.split(' ').nth(1) == Some(journal.client_token.as_str()))
            .map(|j| j.id),
        None => None,
    };
    if let Some(id) = id {
        wait_for_job(jobs, account, &id, request.poll, events).await?;
    }
    journal.done = true;
    write_journal(
        &**store,
        &request.reports.bucket,
        &request.journal_key(),
        &journal,
    )
    .await?;
    Ok(journal)
}

/// Follows the job with DescribeJob until it ends, telling each change.
pub async fn wait_for_job(
    jobs: &dyn BatchJobs,
    account: &str,
    id: &str,
    poll: Duration,
    events: &mut (dyn FnMut(BatchEvent) + Send),
) -> Result<JobInfo, BatchError> {
    let mut last: Option<(JobStatus, Option<u64>, u64, u64)> = None;
    loop {
        let info = crate::retry::retry(|| jobs.describe_job(account, id))
            .await
            .map_err(port(format!("batch job {id} (account {account})")))?;
        let now = (info.status, info.total_tasks, info.succeeded, info.failed);
        if last != Some(now) {
            events(BatchEvent::Progress {
                job_id: id.to_string(),
                status: info.status,
                total: info.total_tasks,
                succeeded: info.succeeded,
                failed: info.failed,
            });
            last = Some(now);
        }
        if info.status.is_terminal() {
            return Ok(info);
        }
        tokio::time::sleep(poll).await;
    }
}

/// The batch sync: a job for what differs, the local engine for what it did not copy, then
/// the verification. `job_started` is told the job's id as soon as it is known (for Ctrl-C).
pub async fn run(
    store: Arc<dyn ObjectStore>,
    jobs: Arc<dyn BatchJobs>,
    request: &BatchRequest,
    now: chrono::DateTime<chrono::Utc>,
    events: &mut (dyn FnMut(BatchEvent) + Send),
) -> Result<BatchOutcome, BatchError> {
    let account = request.account_id()?;
    request.target_key_prefix()?;
    request.check_reports()?;
    let reports = &request.reports.bucket;
    let journal_key = request.journal_key();
    let (mut journal, resumed) = match read_journal(&*store, reports, &journal_key).await? {
        Some(j) if !j.done && j.as_of == request.options.as_of => (j, true),
        Some(j) if !j.done => {
            let closed = close_other_run(&store, &*jobs, request, &account, j, events).await?;
            let token = new_token(request, Some(&closed), now);
            (
                start_run(&store, (request, now), token, events).await?,
                false,
            )
        }
        previous => {
            let token = new_token(request, previous.as_ref(), now);
            (
                start_run(&store, (request, now), token, events).await?,
                false,
            )
        }
    };
    let mut outcome = BatchOutcome {
        job_id: None,
        account_id: account.clone(),
        tasks: journal.tasks,
        job_succeeded: 0,
        job_failed: 0,
        failed_keys: Vec::new(),
        over_limit: journal.over_limit.clone(),
        versions: journal.over_limit_versions.clone(),
        local: SyncStats::default(),
        verification: VerifyReport::default(),
    };
    if journal.tasks > 0 || journal.inventory.is_some() {
        let id = find_or_create_job(
            &store,
            &*jobs,
            request,
            &account,
            &mut journal,
            resumed,
            events,
        )
        .await?;
        outcome.job_id = Some(id.clone());
        let info = wait_for_job(&*jobs, &account, &id, request.poll, events).await?;
        outcome.job_succeeded = info.succeeded;
        outcome.job_failed = info.failed;
        outcome.tasks = info.total_tasks.unwrap_or(outcome.tasks);
        // A job that did not complete (cancelled; failed on its manifest or past the failure
        // threshold, with tasks never attempted and so in no report) leaves the rest to the
        // operator, not silently to this machine: what it copied stays, and a re-run diffs
        // again into a new job.
        if info.status != JobStatus::Complete {
            let reasons = if info.failure_reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", info.failure_reasons.join("; "))
            };
            // That run is over: a re-run starts a new one (new manifest, new token).
            journal.done = true;
            write_journal(&*store, reports, &journal_key, &journal).await?;
            return Err(BatchError::JobEnded {
                id,
                status: info.status,
                account,
                reasons,
            });
        }
        if info.failed > 0 {
            let bucket = info.report_bucket.as_deref().unwrap_or(reports);
            let prefix = info
                .report_prefix
                .as_deref()
                .unwrap_or(&journal.report_prefix);
            let failed = report_failures(&*store, &id, bucket, prefix).await?;
            for task in &failed {
                match (journal.as_of, &task.version_id) {
                    (Some(_), Some(v)) => {
                        outcome.versions.insert(task.key.clone(), v.clone());
                    }
                    (Some(_), None) => {
                        return Err(BatchError::Report {
                            id,
                            bucket: bucket.to_string(),
                            key: format!("{prefix}/job-…/results/"),
                            reason: format!(
                                "its failed task {:?} has no VersionId, but the manifest named \
                                 the version of every object",
                                task.key
                            ),
                        })
                    }
                    (None, _) => {}
                }
            }
            outcome.failed_keys = failed.into_iter().map(|t| t.key).collect();
            outcome.failed_keys.dedup();
        }
    }
    events(BatchEvent::Recopy {
        failed: outcome.failed_keys.clone(),
        over_limit: outcome.over_limit.clone(),
    });
    // The local engine copies exactly the re-copy list, not "whatever differs": a job's
    // copy of a multipart object is single-part (S3PutObjectCopy is CopyObject), so its ETag
    // differs from the source's and a full diff could not tell it from a change without
    // reading it; the verification below compares such objects by content.
    if journal.as_of.is_some() {
        // As of a moment: each key's version then, by version id, not whatever is current.
        let versions = recopy_list(&outcome)
            .into_iter()
            .map(|key| match outcome.versions.get(&key) {
                Some(v) => Ok((key, v.clone())),
                None => Err(BatchError::Journal {
                    bucket: reports.clone(),
                    key: journal_key.clone(),
                    reason: format!(
                        "it copies as of a moment but names no version of {key:?}, which the \
                         job did not copy"
                    ),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let stats = s3sync::copy_versions(
            store.clone(),
            &request.source,
            &request.target,
            &request.options,
            &versions,
        )
        .await?;
        add_stats(&mut outcome.local, &stats);
    } else {
        for key in recopy_list(&outcome) {
            let stats = recopy(&store, request, &key).await?;
            add_stats(&mut outcome.local, &stats);
        }
    }
    if request.options.delete {
        outcome.local.deleted += delete_extra(&store, request, &journal.extra).await?;
    }
    // An inventory report shows the source as it was when it was taken: what was written
    // or deleted since is the local engine's now.
    let known = match &journal.inventory {
        Some(report) => Some(std::sync::Arc::new(
            catch_up(&store, request, report, &mut outcome, events).await?,
        )),
        None => None,
    };
    // The job's copies of multipart objects have other ETags than their sources: what the
    // verification finds of them is kept, so a later sync of the pair need not copy or read
    // them again while they stay as they are.
    let (verification, same) = verify_recording(&store, request, known).await?;
    outcome.verification = verification;
    if outcome.verification.is_equal() {
        let key = format!(
            "{}/same-bytes.json",
            run_dir(request, &journal.client_token)
        );
        let body = serde_json::to_vec(&same).expect("the record serializes");
        crate::retry::retry(|| store.put_small_object(reports, &key, body.clone(), None))
            .await
            .map_err(port(format!("writing s3://{reports}/{key}")))?;
        journal.same_bytes = Some(key);
        journal.done = true;
        write_journal(&*store, reports, &journal_key, &journal).await?;
    }
    Ok(outcome)
}

/// With --delete: removes the target's keys the source does not have (a job copies, it does
/// not delete). Returns how many.
async fn delete_extra(
    store: &Arc<dyn ObjectStore>,
    request: &BatchRequest,
    keys: &[String],
) -> Result<u64, BatchError> {
    for batch in keys.chunks(s3sync::DELETE_BATCH) {
        crate::retry::retry(|| store.delete_objects(&request.target.bucket, batch))
            .await
            .map_err(port(format!(
                "deleting {} object(s) of {} that {} does not have",
                batch.len(),
                request.target,
                request.source
            )))?;
    }
    Ok(keys.len() as u64)
}

/// Verifies the pair of `request`, told of the copies already known equal and keeping those
/// it finds equal under other ETags.
async fn verify_recording(
    store: &Arc<dyn ObjectStore>,
    request: &BatchRequest,
    known: Option<Arc<s3sync::SameBytes>>,
) -> Result<(VerifyReport, s3sync::SameBytes), BatchError> {
    let with = s3sync::KnownCopies {
        known,
        record: true,
    };
    Ok(s3sync::verify_known(
        store.clone(),
        &request.source,
        &request.target,
        (request.options.concurrency, request.options.skip_archived),
        // As of the run's moment when it has one: later writes to the source are no differences.
        request.options.as_of,
        &with,
    )
    .await?)
}

/// After a job over an inventory report: a verification finds what differs (objects written,
/// overwritten or deleted since the report was taken; the job's own copies in other part
/// layouts are found equal and kept in the returned record), the local engine copies each
/// (and with --delete removes what the source no longer has).
async fn catch_up(
    store: &Arc<dyn ObjectStore>,
    request: &BatchRequest,
    report: &inventory::InventoryReport,
    outcome: &mut BatchOutcome,
    events: &mut (dyn FnMut(BatchEvent) + Send),
) -> Result<s3sync::SameBytes, BatchError> {
    let (sweep, same) = verify_recording(store, request, None).await?;
    let same = Arc::new(same);
    let (mut copied, mut extra) = (0, Vec::new());
    for m in sweep.mismatches {
        if m.problem == s3sync::IN_TARGET_ONLY {
            extra.push(m.key);
            continue;
        }
        let options = s3sync::SyncOptions {
            same_bytes: Some(same.clone()),
            ..request.options.clone()
        };
        let stats = recopy(
            store,
            &BatchRequest {
                options,
                ..request.clone()
            },
            &m.key,
        )
        .await?;
        copied += stats.copied;
        add_stats(&mut outcome.local, &stats);
    }
    let mut deleted = 0;
    if request.options.delete {
        deleted = delete_extra(store, request, &extra).await?;
        outcome.local.deleted += deleted;
    }
    events(BatchEvent::CatchUp {
        taken_at: report.taken_at.to_rfc3339(),
        copied,
        deleted,
    });
    Ok(Arc::try_unwrap(same).unwrap_or_else(|a| (*a).clone()))
}

/// The local engine's copy of one source key (a sync of the paths the key names, so its
/// target key, part layout, headers, tags and encryption are the local engine's).
async fn recopy(
    store: &Arc<dyn ObjectStore>,
    request: &BatchRequest,
    key: &str,
) -> Result<SyncStats, BatchError> {
    let relative = key.strip_prefix(&request.source.prefix).unwrap_or(key);
    let source = BucketPath {
        bucket: request.source.bucket.clone(),
        prefix: key.to_string(),
    };
    let target = BucketPath {
        bucket: request.target.bucket.clone(),
        prefix: format!("{}{relative}", request.target.prefix),
    };
    // Keys that merely start with this one are synced too (and copied only if they differ).
    let options = s3sync::SyncOptions {
        delete: false,
        dry_run: false,
        ..request.options.clone()
    };
    Ok(s3sync::sync(store.clone(), &source, &target, &options).await?)
}

fn add_stats(total: &mut SyncStats, more: &SyncStats) {
    total.listed += more.listed;
    total.copied += more.copied;
    total.copied_bytes += more.copied_bytes;
    total.multipart_copies += more.multipart_copies;
    total.unchanged += more.unchanged;
}

/// The keys the local engine is expected to copy after the job: the failed tasks and the
/// objects over the limit, each once.
pub fn recopy_list(outcome: &BatchOutcome) -> BTreeSet<String> {
    outcome
        .failed_keys
        .iter()
        .chain(&outcome.over_limit)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_keys_are_url_encoded_and_report_keys_decoded() {
        let line = manifest_line("src", "photos/a b,c+ü.jpg", None);
        assert_eq!(line, "src,photos/a%20b%2Cc%2B%C3%BC.jpg\n");
        // By version: the third column, as S3 gives it (only keys are URL-encoded).
        let line = manifest_line("src", "a b", Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"));
        assert_eq!(line, "src,a%20b,3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY\n");
        let report =
            "src,photos/a%20b%2Cc%2B%C3%BC.jpg,,failed,403,AccessDenied,\"Access Denied\"\n\
                      src,ok.txt,,succeeded,200,,Successful\n\
                      src,old.txt,v-1,failed,404,NoSuchVersion,\"The specified version does not exist.\"\n";
        assert_eq!(
            failed_tasks(report).unwrap(),
            vec![
                FailedTask {
                    bucket: "src".into(),
                    key: "photos/a b,c+ü.jpg".into(),
                    version_id: None
                },
                FailedTask {
                    bucket: "src".into(),
                    key: "old.txt".into(),
                    version_id: Some("v-1".into())
                }
            ]
        );
        assert!(failed_tasks("src\n").is_err());
    }

    #[test]
    fn the_account_is_the_roles_and_prefixes_must_line_up() {
        assert_eq!(
            account_of_role("arn:aws:iam::123456789012:role/batch").unwrap(),
            "123456789012"
        );
        assert!(account_of_role("arn:aws:iam::1234:role/batch").is_err());
        assert!(account_of_role("arn:aws:iam::123456789012:user/me").is_err());
        let mut r = BatchRequest {
            source: BucketPath::bucket("a"),
            target: BucketPath {
                bucket: "b".into(),
                prefix: "copy/".into(),
            },
            options: Default::default(),
            role_arn: "arn:aws:iam::123456789012:role/batch".into(),
            reports: BucketPath::bucket("r"),
            priority: 10,
            copy_limit: s3sync::AWS_COPY_LIMIT,
            poll: Duration::from_secs(1),
            token_stem: None,
            manifest: ManifestSource::Diff,
        };
        assert_eq!(r.target_key_prefix().unwrap(), "copy/");
        r.source.prefix = "photos/".into();
        assert!(r.target_key_prefix().unwrap_err().is_bad_input());
        r.target.prefix = "copy/photos/".into();
        assert_eq!(r.target_key_prefix().unwrap(), "copy/");
        // The reports may not sit inside either path.
        assert!(r.check_reports().is_ok());
        r.reports = BucketPath {
            bucket: "b".into(),
            prefix: "copy/photos/reports/".into(),
        };
        assert!(r.check_reports().unwrap_err().is_bad_input());
        r.reports.prefix = "reports/".into();
        assert!(r.check_reports().is_ok());
    }
}
