//! S3 Batch Operations in the fake: the jobs of the S3 Control API over the fake's own S3,
//! modelled on "S3 Batch Operations" (User Guide) and the CreateJob / DescribeJob / ListJobs /
//! UpdateJobStatus API pages:
//!
//! - a job goes New → Preparing (reads the manifest, counts its tasks) → Ready → Active →
//!   Complete, or Cancelling → Cancelled when cancelled, or Failing → Failed ("Job statuses");
//!   starting takes minutes (`BatchTimings`), the copies then go at a steady rate;
//! - CreateJob is idempotent on ClientRequestToken: the same token gives back the same job;
//! - the manifest is read as CreateJob names it, and its ETag must match ("Specifying a
//!   manifest": the job fails otherwise); its keys are URL-encoded (S3BatchOperations_CSV_20180820);
//!   its rows have the fields `Manifest.Spec.Fields` lists, `Bucket,Key` or
//!   `Bucket,Key,VersionId` — with a version ID the task acts on that version, and a manifest
//!   with the field must give one on every row ("Specifying a manifest"); a version that does
//!   not exist fails its task as CopyObject would (404 NoSuchVersion; a delete marker's version
//!   400 InvalidRequest), and the report names the task's version;
//! - S3PutObjectCopy is a CopyObject per task, so an object over 5 GiB fails its task
//!   ("Copy objects": "objects up to 5 GB in size"; CopyObject: InvalidRequest);
//! - a job whose failure rate passes 50% once 1,000 tasks have run fails ("Tracking job
//!   failure": the failure threshold);
//! - the completion report ("S3 Batch Operations completion reports") goes to
//!   `<prefix>/job-<id>/manifest.json` with the failed tasks' CSV under
//!   `<prefix>/job-<id>/results/`, written once at least one task ran, for jobs Complete,
//!   Failed or Cancelled.
//!
//! - a manifest may be an S3 Inventory report (`S3InventoryReport_CSV_20161130`): its
//!   `manifest.json` names the gzip-compressed CSV files, whose columns its `fileSchema` names
//!   ("Locating your inventory list", "Inventory list"); `publish_inventory` delivers one as S3
//!   does, under `<destination prefix>/<source bucket>/<config id>/<YYYY-MM-DDTHH-MMZ>/`.
//!
//! The job's copies appear in the fake's call log as `s3:CopyObject`, as they do in CloudTrail
//! (made by the job's role).

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;

use super::{md5_hex, FakeAws, ACCOUNT};
use crate::ports::batch::*;
use crate::ports::*;

/// AWS's limit for one CopyObject, which S3PutObjectCopy is.
pub const BATCH_COPY_LIMIT: u64 = 5 * 1024 * 1024 * 1024;

/// How long a job takes in the fake.
#[derive(Debug, Clone)]
pub struct BatchTimings {
    /// New → Preparing.
    pub new: Duration,
    /// Preparing (reading the manifest) → Ready.
    pub preparing: Duration,
    /// Ready → Active (the job waits for capacity by priority).
    pub ready: Duration,
    /// Each task once Active.
    pub per_task: Duration,
}

impl Default for BatchTimings {
    fn default() -> Self {
        // "Jobs typically start within minutes" (S3 Batch Operations FAQ); a few minutes of
        // New/Preparing/Ready is what a small job shows.
        BatchTimings {
            new: Duration::from_secs(20),
            preparing: Duration::from_secs(60),
            ready: Duration::from_secs(40),
            per_task: Duration::from_millis(10),
        }
    }
}

#[derive(Debug, Clone)]
pub struct FakeJob {
    pub request: CopyJobRequest,
    pub info: JobInfo,
    cancel_requested: bool,
}

/// The jobs of the fake's account and what tests arm.
#[derive(Debug, Default)]
pub struct BatchState {
    jobs: Vec<FakeJob>,
    next: u64,
    /// Keys (source bucket, key) whose task fails with AccessDenied.
    failing_keys: BTreeSet<(String, String)>,
    /// The copy limit (AWS: 5 GiB); smaller in tests.
    copy_limit: Option<u64>,
    timings: Option<BatchTimings>,
    /// S3 Inventory configurations, by source bucket.
    inventories: std::collections::BTreeMap<String, Vec<InventoryConfiguration>>,
}

/// A task of a manifest: bucket, key and the version it names, if the manifest names versions.
type Task = (String, String, Option<String>);

/// A failed task: the task, HTTP status, error code and message.
type Failure = (Task, u16, &'static str, String);

impl FakeAws {
    /// The task of each of these keys of `bucket` fails with AccessDenied (as when the job's
    /// role may not read it).
    pub fn fail_batch_tasks(&self, bucket: &str, keys: &[&str]) {
        let mut s = self.lock();
        for k in keys {
            s.batch
                .failing_keys
                .insert((bucket.to_string(), k.to_string()));
        }
    }

    /// The largest object a task copies (AWS: 5 GiB), made small for tests.
    pub fn set_batch_copy_limit(&self, bytes: u64) {
        self.lock().batch.copy_limit = Some(bytes);
    }

    pub fn set_batch_timings(&self, timings: BatchTimings) {
        self.lock().batch.timings = Some(timings);
    }

    /// Gives `bucket` an S3 Inventory configuration (PutBucketInventoryConfiguration).
    pub fn put_inventory_configuration(&self, bucket: &str, config: InventoryConfiguration) {
        let mut s = self.lock();
        let list = s.batch.inventories.entry(bucket.to_string()).or_default();
        list.retain(|c| c.id != config.id);
        list.push(config);
    }

    /// ListBucketInventoryConfigurations.
    pub(super) fn inventory_configurations_of(
        &self,
        bucket: &str,
    ) -> PortResult<Vec<InventoryConfiguration>> {
        let s = self.lock();
        if !s.buckets.contains_key(bucket) {
            return Err(PortError::NotFound {
                what: format!("bucket {bucket}"),
            });
        }
        Ok(s.batch.inventories.get(bucket).cloned().unwrap_or_default())
    }

    /// Delivers the inventory report of `bucket`'s configuration `id` now, as S3 does daily or
    /// weekly ("Locating your inventory list"): the current objects under its filter, as
    /// gzip-compressed CSV files (every value quoted, keys URL-encoded) under
    /// `<prefix>/<bucket>/<id>/data/`, then `<prefix>/<bucket>/<id>/<YYYY-MM-DDTHH-MMZ>/
    /// manifest.json` naming them and `manifest.checksum` (the MD5 of manifest.json). Returns
    /// the manifest's key. Only CSV reports of current versions (what envclone reads).
    pub fn publish_inventory(&self, bucket: &str, id: &str) -> String {
        use std::io::Write;
        let config = self
            .lock()
            .batch
            .inventories
            .get(bucket)
            .and_then(|l| l.iter().find(|c| c.id == id).cloned())
            .unwrap_or_else(|| panic!("bucket {bucket} has no inventory configuration {id}"));
        assert!(
            config.format == "CSV" && config.included_versions == "Current",
            "the fake delivers CSV inventories of current versions: {config:?}"
        );
        let now = super::aws_now(&self.timings);
        let filter = config.filter_prefix.clone().unwrap_or_default();
        let encode = |k: &str| {
            percent_encoding::utf8_percent_encode(k, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let mut csv = String::new();
        for key in self.object_keys(bucket) {
            if !key.starts_with(&filter) {
                continue;
            }
            let Some(o) = self.object(bucket, &key) else {
                continue;
            };
            csv.push_str(&format!(
                "\"{bucket}\",\"{}\",\"{}\",\"{}\",\"{}\"\n",
                encode(&key),
                o.head.size,
                o.last_modified
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                o.etag.trim_matches('"')
            ));
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(csv.as_bytes()).expect("gzip into memory");
        let data = gz.finish().expect("gzip into memory");
        let base = match config.destination_prefix.as_deref() {
            None | Some("") => format!("{bucket}/{id}"),
            Some(p) => format!("{}/{bucket}/{id}", p.trim_end_matches('/')),
        };
        let data_key = format!("{base}/data/{}.csv.gz", md5_hex(&data));
        let destination = config.destination_bucket.clone();
        self.put_object(&destination, &data_key, &data, ObjectHead::default(), &[]);
        let manifest = serde_json::json!({
            "sourceBucket": bucket,
            "destinationBucket": format!("arn:aws:s3:::{destination}"),
            "version": "2016-11-30",
            "creationTimestamp": now.timestamp_millis().to_string(),
            "fileFormat": "CSV",
            "fileSchema": "Bucket, Key, Size, LastModifiedDate, ETag",
            "files": [{"key": data_key, "size": data.len(), "MD5checksum": md5_hex(&data)}],
        })
        .to_string();
        let dir = format!("{base}/{}", now.format("%Y-%m-%dT%H-%MZ"));
        let key = format!("{dir}/manifest.json");
        self.put_object(
            &destination,
            &key,
            manifest.as_bytes(),
            ObjectHead::default(),
            &[],
        );
        self.put_object(
            &destination,
            &format!("{dir}/manifest.checksum"),
            md5_hex(manifest.as_bytes()).as_bytes(),
            ObjectHead::default(),
            &[],
        );
        key
    }

    /// Every job created, oldest first.
    pub fn batch_jobs(&self) -> Vec<FakeJob> {
        self.lock().batch.jobs.clone()
    }

    fn job_mut<'a>(s: &'a mut super::State, id: &str) -> Option<&'a mut FakeJob> {
        s.batch.jobs.iter_mut().find(|j| j.info.id == id)
    }

    fn set_status(&self, id: &str, status: JobStatus) {
        if let Some(j) = Self::job_mut(&mut self.lock(), id) {
            j.info.status = status;
        }
    }

    fn cancel_requested(&self, id: &str) -> bool {
        let mut s = self.lock();
        Self::job_mut(&mut s, id).is_some_and(|j| j.cancel_requested)
    }

    /// Runs a job from New to its end.
    async fn run_job(self, id: String) {
        let timings = self.lock().batch.timings.clone().unwrap_or_default();
        let request = match Self::job_mut(&mut self.lock(), &id) {
            Some(j) => j.request.clone(),
            None => return,
        };
        // Each stage before Active ends early when the job is cancelled: no task ran, so no
        // report is written.
        let mut tasks = Vec::new();
        for (wait, next) in [
            (timings.new, JobStatus::Preparing),
            (timings.preparing, JobStatus::Ready),
            (timings.ready, JobStatus::Active),
        ] {
            tokio::time::sleep(wait).await;
            if self.cancel_requested(&id) {
                self.set_status(&id, JobStatus::Cancelled);
                return;
            }
            if next == JobStatus::Ready {
                match self.read_manifest(&request) {
                    Ok(rows) => tasks = rows,
                    Err(reason) => {
                        let mut s = self.lock();
                        if let Some(j) = Self::job_mut(&mut s, &id) {
                            j.info.status = JobStatus::Failed;
                            j.info.failure_reasons.push(reason);
                        }
                        return;
                    }
                }
                if let Some(j) = Self::job_mut(&mut self.lock(), &id) {
                    j.info.total_tasks = Some(tasks.len() as u64);
                }
            }
            self.set_status(&id, next);
        }
        let limit = self.lock().batch.copy_limit.unwrap_or(BATCH_COPY_LIMIT);
        let mut failures: Vec<Failure> = Vec::new();
        let (mut done, mut failed) = (0u64, 0u64);
        let mut end = JobStatus::Complete;
        for task in &tasks {
            if self.cancel_requested(&id) {
                end = JobStatus::Cancelled;
                self.set_status(&id, JobStatus::Cancelling);
                break;
            }
            tokio::time::sleep(timings.per_task).await;
            let outcome = self.run_task(&request, task, limit).await;
            done += 1;
            {
                let mut s = self.lock();
                let j = Self::job_mut(&mut s, &id).expect("jobs are never removed");
                match outcome {
                    Ok(()) => j.info.succeeded += 1,
                    Err((status, code, message)) => {
                        j.info.failed += 1;
                        failed += 1;
                        failures.push((task.clone(), status, code, message));
                    }
                }
            }
            // "If the job's task failure rate exceeds 50 percent after at least 1,000 tasks
            // have been attempted, the job fails" (Tracking job failure).
            if done >= 1000 && failed * 2 > done {
                end = JobStatus::Failed;
                self.set_status(&id, JobStatus::Failing);
                let mut s = self.lock();
                let j = Self::job_mut(&mut s, &id).expect("jobs are never removed");
                j.info.failure_reasons.push(format!(
                    "JobFailureThresholdExceeded: {failed} of {done} tasks failed"
                ));
                break;
            }
        }
        if done > 0 {
            self.write_report(&request, &id, &failures);
        }
        self.set_status(&id, end);
    }

    /// The manifest's rows, or why the job fails.
    fn read_manifest(&self, r: &CopyJobRequest) -> Result<Vec<Task>, String> {
        let object = self
            .object(&r.manifest_bucket, &r.manifest_key)
            .ok_or_else(|| {
                format!(
                    "ManifestNotFound: s3://{}/{} does not exist",
                    r.manifest_bucket, r.manifest_key
                )
            })?;
        if object.etag.trim_matches('"') != r.manifest_etag.trim_matches('"') {
            return Err(format!(
                "ManifestETagMismatch: the manifest's ETag is {}, the job names {}",
                object.etag, r.manifest_etag
            ));
        }
        let text = String::from_utf8_lossy(&object.data).to_string();
        if r.manifest_format == ManifestFormat::InventoryCsv {
            // An inventory report's rows name current objects (no version column here).
            return self.read_inventory(&text).map(|rows| {
                rows.into_iter()
                    .map(|(bucket, key)| (bucket, key, None))
                    .collect()
            });
        }
        let mut rows = Vec::new();
        let fields = if r.version_ids {
            "Bucket, Key, VersionId"
        } else {
            "Bucket, Key"
        };
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
            let columns: Vec<&str> = line.split(',').collect();
            let (bucket, key, version) = match (columns.as_slice(), r.version_ids) {
                ([bucket, key], false) => (bucket, key, None),
                ([bucket, key, version], true) if !version.is_empty() => {
                    (bucket, key, Some(version.to_string()))
                }
                _ => {
                    return Err(format!(
                        "InvalidManifest: line {} does not have the fields {fields} (a manifest \
                         with VersionId gives a version on every row)",
                        n + 1
                    ))
                }
            };
            let key = percent_encoding::percent_decode_str(key)
                .decode_utf8()
                .map_err(|_| format!("InvalidManifest: line {} is not URL-encoded UTF-8", n + 1))?
                .to_string();
            rows.push((bucket.to_string(), key, version));
        }
        Ok(rows)
    }

    /// The (bucket, key) rows of an inventory report's CSV files, by its `manifest.json`.
    fn read_inventory(&self, manifest: &str) -> Result<Vec<(String, String)>, String> {
        use std::io::Read;
        let invalid = |why: String| format!("InvalidManifest: the inventory manifest {why}");
        let m: serde_json::Value =
            serde_json::from_str(manifest).map_err(|e| invalid(format!("is not JSON: {e}")))?;
        if m["fileFormat"] != "CSV" {
            return Err(invalid(format!(
                "is of a {} report; S3InventoryReport_CSV_20161130 reads CSV ones",
                m["fileFormat"]
            )));
        }
        let schema: Vec<&str> = m["fileSchema"]
            .as_str()
            .ok_or_else(|| invalid("has no fileSchema".into()))?
            .split(',')
            .map(str::trim)
            .collect();
        let column = |name: &str| {
            schema
                .iter()
                .position(|c| *c == name)
                .ok_or_else(|| invalid(format!("has no {name} column in its fileSchema")))
        };
        let (b, k) = (column("Bucket")?, column("Key")?);
        let destination = m["destinationBucket"]
            .as_str()
            .and_then(|a| a.strip_prefix("arn:aws:s3:::"))
            .ok_or_else(|| invalid("has no destinationBucket ARN".into()))?;
        let files = m["files"]
            .as_array()
            .ok_or_else(|| invalid("has no files".into()))?;
        let mut rows = Vec::new();
        for f in files {
            let key = f["key"]
                .as_str()
                .ok_or_else(|| invalid("names a file without a key".into()))?;
            let object = self.object(destination, key).ok_or_else(|| {
                format!("ManifestNotFound: inventory file s3://{destination}/{key} does not exist")
            })?;
            let mut text = String::new();
            flate2::read::MultiGzDecoder::new(object.data.as_slice())
                .read_to_string(&mut text)
                .map_err(|e| {
                    format!("InvalidManifest: s3://{destination}/{key} is not gzip CSV: {e}")
                })?;
            for line in text.lines().filter(|l| !l.is_empty()) {
                let fields: Vec<&str> = line.split(',').map(|f| f.trim_matches('"')).collect();
                let (Some(bucket), Some(encoded)) = (fields.get(b), fields.get(k)) else {
                    return Err(format!(
                        "InvalidManifest: a row of {key} has too few columns"
                    ));
                };
                let decoded = percent_encoding::percent_decode_str(encoded)
                    .decode_utf8()
                    .map_err(|_| {
                        format!("InvalidManifest: a key of {key} is not URL-encoded UTF-8")
                    })?;
                rows.push((bucket.to_string(), decoded.to_string()));
            }
        }
        Ok(rows)
    }

    /// One S3PutObjectCopy task: a CopyObject to `TargetKeyPrefix + key` of the task's version
    /// (`x-amz-copy-source: bucket/key?versionId=…`), or of the current one.
    async fn run_task(
        &self,
        r: &CopyJobRequest,
        (bucket, key, version): &Task,
        limit: u64,
    ) -> Result<(), (u16, &'static str, String)> {
        let armed = self
            .lock()
            .batch
            .failing_keys
            .contains(&(bucket.to_string(), key.to_string()));
        if armed {
            return Err((403, "AccessDenied", "Access Denied".into()));
        }
        let source = match self.get_object_version("s3:CopyObject", bucket, key, version.as_deref())
        {
            Ok(o) => o,
            Err(PortError::NotFound { .. }) if version.is_some() => {
                return Err((
                    404,
                    "NoSuchVersion",
                    "The specified version does not exist.".into(),
                ))
            }
            Err(PortError::NotFound { .. }) => {
                return Err((404, "NoSuchKey", "The specified key does not exist.".into()))
            }
            // A delete marker's version id (CopyObject: "you are not allowed to specify a
            // delete marker as a version for the x-amz-copy-source").
            Err(e) => return Err((400, "InvalidRequest", e.to_string())),
        };
        if source.head.size > limit {
            return Err((
                400,
                "InvalidRequest",
                format!(
                    "The specified copy source is larger than the maximum allowable size for \
                     a copy source: {limit}"
                ),
            ));
        }
        let target_key = format!("{}{key}", r.target_key_prefix);
        <FakeAws as ObjectStore>::copy_object_version(
            self,
            bucket,
            key,
            version.as_deref(),
            &r.target_bucket,
            &target_key,
            &CopyRequest::default(),
        )
        .await
        .map(drop)
        .map_err(|e| (500, "InternalError", e.to_string()))
    }

    /// The completion report of the failed tasks, as AWS lays it out.
    fn write_report(&self, r: &CopyJobRequest, id: &str, failures: &[Failure]) {
        let encode = |k: &str| {
            percent_encoding::utf8_percent_encode(k, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let dir = format!("{}/job-{id}", r.report_prefix.trim_end_matches('/'));
        let mut results = Vec::new();
        if !failures.is_empty() {
            let csv: String = failures
                .iter()
                .map(|((bucket, key, version), status, code, message)| {
                    format!(
                        "{bucket},{},{},failed,{status},{code},\"{}\"\n",
                        encode(key),
                        version.as_deref().unwrap_or_default(),
                        message.replace('"', "\"\"")
                    )
                })
                .collect();
            let key = format!("{dir}/results/{}.csv", md5_hex(csv.as_bytes()));
            self.put_object(
                &r.report_bucket,
                &key,
                csv.as_bytes(),
                ObjectHead::default(),
                &[],
            );
            results.push(serde_json::json!({
                "TaskExecutionStatus": "failed",
                "Bucket": r.report_bucket,
                "MD5Checksum": md5_hex(csv.as_bytes()),
                "Key": key,
            }));
        }
        let manifest = serde_json::json!({
            "Format": "Report_CSV_20180820",
            "ReportCreationDate": super::aws_now(&self.timings).to_rfc3339(),
            "Results": results,
            "ReportSchema": "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage",
        });
        self.put_object(
            &r.report_bucket,
            &format!("{dir}/manifest.json"),
            manifest.to_string().as_bytes(),
            ObjectHead::default(),
            &[],
        );
    }

    fn account(operation: &str, account_id: &str) -> PortResult<()> {
        if account_id == ACCOUNT {
            Ok(())
        } else {
            Err(PortError::failed(
                operation,
                format!(
                    "AccessDenied (HTTP 403): account {account_id} is not the caller's ({ACCOUNT})"
                ),
            ))
        }
    }
}

#[async_trait]
impl BatchJobs for FakeAws {
    async fn create_copy_job(&self, r: &CopyJobRequest) -> PortResult<String> {
        const OP: &str = "s3:CreateJob";
        self.call(OP, true).await?;
        Self::account(OP, &r.account_id)?;
        if r.role_arn.is_empty() || !(0..=i32::MAX).contains(&r.priority) {
            return Err(PortError::failed(
                OP,
                "InvalidRequest (HTTP 400): RoleArn and a Priority of 0 or more are required",
            ));
        }
        let id = {
            let mut s = self.lock();
            // "ClientRequestToken: An idempotency token to ensure that you don't accidentally
            // submit the same request twice" (CreateJob).
            if let Some(j) = s
                .batch
                .jobs
                .iter()
                .find(|j| j.request.client_token == r.client_token)
            {
                return Ok(j.info.id.clone());
            }
            s.batch.next += 1;
            let id = format!("{:08x}-0000-4000-8000-{:012x}", s.batch.next, s.batch.next);
            s.batch.jobs.push(FakeJob {
                request: r.clone(),
                info: JobInfo {
                    id: id.clone(),
                    status: JobStatus::New,
                    description: r.description.clone(),
                    priority: r.priority,
                    total_tasks: None,
                    succeeded: 0,
                    failed: 0,
                    failure_reasons: Vec::new(),
                    report_bucket: Some(r.report_bucket.clone()),
                    report_prefix: Some(r.report_prefix.clone()),
                },
                cancel_requested: false,
            });
            id
        };
        tokio::spawn(self.clone().run_job(id.clone()));
        Ok(id)
    }

    async fn describe_job(&self, account_id: &str, id: &str) -> PortResult<JobInfo> {
        const OP: &str = "s3:DescribeJob";
        self.call(OP, false).await?;
        Self::account(OP, account_id)?;
        let mut s = self.lock();
        Self::job_mut(&mut s, id)
            .map(|j| j.info.clone())
            .ok_or_else(|| PortError::NotFound {
                what: format!("batch job {id}"),
            })
    }

    async fn list_jobs(&self, account_id: &str) -> PortResult<Vec<JobSummary>> {
        const OP: &str = "s3:ListJobs";
        self.call(OP, false).await?;
        Self::account(OP, account_id)?;
        Ok(self
            .lock()
            .batch
            .jobs
            .iter()
            .map(|j| JobSummary {
                id: j.info.id.clone(),
                status: j.info.status,
                description: j.info.description.clone(),
            })
            .collect())
    }

    async fn cancel_job(&self, account_id: &str, id: &str) -> PortResult<()> {
        const OP: &str = "s3:UpdateJobStatus";
        self.call(OP, true).await?;
        Self::account(OP, account_id)?;
        let mut s = self.lock();
        let j = Self::job_mut(&mut s, id).ok_or_else(|| PortError::NotFound {
            what: format!("batch job {id}"),
        })?;
        // A finished job cannot change status (UpdateJobStatus: JobStatusException).
        if j.info.status.is_terminal() {
            return Err(PortError::failed(
                OP,
                format!(
                    "JobStatusException (HTTP 400): batch job {id} is {} and cannot be cancelled",
                    j.info.status
                ),
            ));
        }
        j.cancel_requested = true;
        if matches!(
            j.info.status,
            JobStatus::New | JobStatus::Preparing | JobStatus::Ready | JobStatus::Suspended
        ) {
            j.info.status = JobStatus::Cancelling;
        }
        Ok(())
    }
}
