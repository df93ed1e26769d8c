//! The S3 Batch Operations port: the jobs of the S3 Control API as the copy engine sees them
//! (plain Rust, no SDK type) — CreateJob of an S3PutObjectCopy over a CSV manifest, DescribeJob,
//! ListJobs, UpdateJobStatus to Cancelled ("Amazon S3 API Reference", S3 Control). The adapter
//! is `aws::s3control`, the fake `fake::batch`; the engine that uses it is `s3batch`.

use async_trait::async_trait;

use super::PortResult;

/// A job's status ("JobStatus" of DescribeJob): New → Preparing → Suspended (waiting for
/// confirmation) or Ready → Active → Complete, or Failing → Failed, or Cancelling → Cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum JobStatus {
    New,
    Preparing,
    Suspended,
    Ready,
    Active,
    Pausing,
    Paused,
    Complete,
    Cancelling,
    Cancelled,
    Failing,
    Failed,
}

impl JobStatus {
    /// AWS's spelling (`Active`, `Complete` …).
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::New => "New",
            JobStatus::Preparing => "Preparing",
            JobStatus::Suspended => "Suspended",
            JobStatus::Ready => "Ready",
            JobStatus::Active => "Active",
            JobStatus::Pausing => "Pausing",
            JobStatus::Paused => "Paused",
            JobStatus::Complete => "Complete",
            JobStatus::Cancelling => "Cancelling",
            JobStatus::Cancelled => "Cancelled",
            JobStatus::Failing => "Failing",
            JobStatus::Failed => "Failed",
        }
    }

    pub fn parse(text: &str) -> Option<JobStatus> {
        ALL.iter().copied().find(|s| s.as_str() == text)
    }

    /// The job will not change any more (Complete, Cancelled, Failed).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Complete | JobStatus::Cancelled | JobStatus::Failed
        )
    }
}

const ALL: [JobStatus; 12] = [
    JobStatus::New,
    JobStatus::Preparing,
    JobStatus::Suspended,
    JobStatus::Ready,
    JobStatus::Active,
    JobStatus::Pausing,
    JobStatus::Paused,
    JobStatus::Complete,
    JobStatus::Cancelling,
    JobStatus::Cancelled,
    JobStatus::Failing,
    JobStatus::Failed,
];

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a job's manifest is ("Specifying a manifest", CreateJob's `JobManifestSpec.Format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum ManifestFormat {
    /// `S3BatchOperations_CSV_20180820`: a CSV of `Bucket,Key` (keys URL-encoded).
    #[default]
    Csv,
    /// `S3InventoryReport_CSV_20161130`: the `manifest.json` of an S3 Inventory report in CSV,
    /// whose gzip-compressed CSV files list the objects.
    InventoryCsv,
}

impl ManifestFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ManifestFormat::Csv => "S3BatchOperations_CSV_20180820",
            ManifestFormat::InventoryCsv => "S3InventoryReport_CSV_20161130",
        }
    }
}

/// CreateJob of an S3PutObjectCopy job over a manifest (a CSV of `Bucket,Key` or
/// `Bucket,Key,VersionId`, or an S3 Inventory report), with a completion report of the failed
/// tasks only and no confirmation step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyJobRequest {
    /// The account the job runs in (S3 Control's `x-amz-account-id`).
    pub account_id: String,
    /// CreateJob is idempotent on it: the same token gives back the same job.
    pub client_token: String,
    pub description: String,
    pub role_arn: String,
    pub priority: i32,
    pub manifest_bucket: String,
    pub manifest_key: String,
    /// The manifest object's ETag (CreateJob requires it: the job reads that version only).
    pub manifest_etag: String,
    /// The manifest's rows name versions (`Manifest.Spec.Fields` Bucket, Key, VersionId): each
    /// task copies that version, not the current one ("Specifying a manifest", S3 User Guide).
    pub version_ids: bool,
    pub manifest_format: ManifestFormat,
    pub target_bucket: String,
    /// Prepended to each manifest key (S3PutObjectCopy's `TargetKeyPrefix`: the copy of `Key`
    /// is `TargetKeyPrefix + Key`; a job cannot strip the source's prefix).
    pub target_key_prefix: String,
    pub report_bucket: String,
    pub report_prefix: String,
}

/// What DescribeJob says of a job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobInfo {
    pub id: String,
    pub status: JobStatus,
    pub description: String,
    pub priority: i32,
    /// ProgressSummary: tasks in the manifest, succeeded, failed (Some once Preparing is done).
    pub total_tasks: Option<u64>,
    pub succeeded: u64,
    pub failed: u64,
    /// FailureReasons of a Failed job (e.g. the manifest could not be read).
    pub failure_reasons: Vec<String>,
    /// Where the completion report goes: bucket and prefix.
    pub report_bucket: Option<String>,
    pub report_prefix: Option<String>,
}

/// One row of ListJobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    pub id: String,
    pub status: JobStatus,
    pub description: String,
}

#[async_trait]
pub trait BatchJobs: Send + Sync {
    /// CreateJob; returns the job id (the existing job's id when `client_token` was used
    /// before: CreateJob is idempotent on ClientRequestToken).
    async fn create_copy_job(&self, request: &CopyJobRequest) -> PortResult<String>;
    /// DescribeJob. NotFound if the account has no such job.
    async fn describe_job(&self, account_id: &str, id: &str) -> PortResult<JobInfo>;
    /// ListJobs, every page: the account's jobs (AWS keeps them for 90 days).
    async fn list_jobs(&self, account_id: &str) -> PortResult<Vec<JobSummary>>;
    /// UpdateJobStatus to Cancelled (the job goes through Cancelling).
    async fn cancel_job(&self, account_id: &str, id: &str) -> PortResult<()>;
}
