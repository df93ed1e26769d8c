//! The S3 Control adapter: `BatchJobs` over `aws_sdk_s3control` (S3 Batch Operations jobs:
//! CreateJob, DescribeJob, ListJobs, UpdateJobStatus).

use async_trait::async_trait;
use aws_sdk_s3control::types::{
    JobManifest, JobManifestFieldName, JobManifestFormat, JobManifestLocation, JobManifestSpec,
    JobOperation, JobReport, JobReportFormat, JobReportScope, RequestedJobStatus,
    S3CopyObjectOperation, S3MetadataDirective,
};

use super::{port_error, CallRecord, SdkConfig};
use crate::ports::batch::*;
use crate::ports::*;

pub struct S3Control(aws_sdk_s3control::Client);

/// With an endpoint given (a local stand-in), every call goes to it as it is. The S3 Control
/// endpoint rules put the account id in the host name (`123456789012.example.com`), which a
/// local address (`127.0.0.1:port`) cannot take.
#[derive(Debug)]
struct FixedEndpoint(String);

impl aws_sdk_s3control::config::endpoint::ResolveEndpoint for FixedEndpoint {
    fn resolve_endpoint<'a>(
        &'a self,
        _params: &'a aws_sdk_s3control::config::endpoint::Params,
    ) -> aws_sdk_s3control::config::endpoint::EndpointFuture<'a> {
        aws_sdk_s3control::config::endpoint::EndpointFuture::ready(Ok(
            aws_smithy_types::endpoint::Endpoint::builder()
                .url(self.0.clone())
                .build(),
        ))
    }
}

impl S3Control {
    /// The adapter over a client of `config` that records its calls to `calls`.
    pub(super) fn new(config: &SdkConfig, calls: &CallRecord) -> S3Control {
        let mut builder =
            aws_sdk_s3control::config::Builder::from(config).interceptor(calls.clone());
        if let Some(url) = config.endpoint_url() {
            builder = builder.endpoint_resolver(FixedEndpoint(url.to_string()));
        }
        S3Control(aws_sdk_s3control::Client::from_conf(builder.build()))
    }
}

fn build_error(operation: &str, e: impl std::fmt::Display) -> PortError {
    PortError::failed(operation, format!("could not build the request: {e}"))
}

fn status(s: Option<&aws_sdk_s3control::types::JobStatus>) -> JobStatus {
    // A status this build does not know is treated as still running (never as finished).
    s.and_then(|s| JobStatus::parse(s.as_str()))
        .unwrap_or(JobStatus::Active)
}

fn arn_bucket(arn: &str) -> String {
    arn.strip_prefix("arn:aws:s3:::").unwrap_or(arn).to_string()
}

#[async_trait]
impl BatchJobs for S3Control {
    async fn create_copy_job(&self, r: &CopyJobRequest) -> PortResult<String> {
        const OP: &str = "s3:CreateJob";
        // A CSV manifest names its fields; an inventory report's manifest.json names its own
        // ("Specifying a manifest": Fields only for S3BatchOperations_CSV_20180820). A CSV's
        // third column, when `version_ids`, is the version each task copies.
        let spec = match r.manifest_format {
            ManifestFormat::Csv => {
                let spec = JobManifestSpec::builder()
                    .format(JobManifestFormat::S3BatchOperationsCsv20180820)
                    .fields(JobManifestFieldName::Bucket)
                    .fields(JobManifestFieldName::Key);
                if r.version_ids {
                    spec.fields(JobManifestFieldName::VersionId)
                } else {
                    spec
                }
            }
            ManifestFormat::InventoryCsv => {
                JobManifestSpec::builder().format(JobManifestFormat::S3InventoryReportCsv20161130)
            }
        }
        .build()
        .map_err(|e| build_error(OP, e))?;
        let location = JobManifestLocation::builder()
            .object_arn(format!(
                "arn:aws:s3:::{}/{}",
                r.manifest_bucket, r.manifest_key
            ))
            .e_tag(&r.manifest_etag)
            .build()
            .map_err(|e| build_error(OP, e))?;
        let mut copy = S3CopyObjectOperation::builder()
            .target_resource(format!("arn:aws:s3:::{}", r.target_bucket))
            .metadata_directive(S3MetadataDirective::Copy);
        if !r.target_key_prefix.is_empty() {
            copy = copy.target_key_prefix(&r.target_key_prefix);
        }
        let out = self
            .0
            .create_job()
            .account_id(&r.account_id)
            .client_request_token(&r.client_token)
            .confirmation_required(false)
            .description(&r.description)
            .role_arn(&r.role_arn)
            .priority(r.priority)
            .operation(
                JobOperation::builder()
                    .s3_put_object_copy(copy.build())
                    .build(),
            )
            .manifest(JobManifest::builder().spec(spec).location(location).build())
            .report(
                JobReport::builder()
                    .bucket(format!("arn:aws:s3:::{}", r.report_bucket))
                    .prefix(&r.report_prefix)
                    .format(JobReportFormat::ReportCsv20180820)
                    .enabled(true)
                    .report_scope(JobReportScope::FailedTasksOnly)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| port_error(OP, &format!("batch job {}", r.client_token), e))?;
        out.job_id()
            .map(str::to_string)
            .ok_or_else(|| PortError::failed(OP, "CreateJob answered without a JobId".to_string()))
    }

    async fn describe_job(&self, account_id: &str, id: &str) -> PortResult<JobInfo> {
        const OP: &str = "s3:DescribeJob";
        let out = self
            .0
            .describe_job()
            .account_id(account_id)
            .job_id(id)
            .send()
            .await
            .map_err(|e| port_error(OP, &format!("batch job {id}"), e))?;
        let job = out.job().ok_or_else(|| {
            PortError::failed(OP, format!("batch job {id}: no Job in the answer"))
        })?;
        let progress = job.progress_summary();
        Ok(JobInfo {
            id: job.job_id().unwrap_or(id).to_string(),
            status: status(job.status()),
            description: job.description().unwrap_or_default().to_string(),
            priority: job.priority(),
            total_tasks: progress
                .and_then(|p| p.total_number_of_tasks())
                .map(|n| n.max(0) as u64),
            succeeded: progress
                .and_then(|p| p.number_of_tasks_succeeded())
                .unwrap_or(0)
                .max(0) as u64,
            failed: progress
                .and_then(|p| p.number_of_tasks_failed())
                .unwrap_or(0)
                .max(0) as u64,
            failure_reasons: job
                .failure_reasons()
                .iter()
                .map(|f| {
                    format!(
                        "{}: {}",
                        f.failure_code().unwrap_or("?"),
                        f.failure_reason().unwrap_or_default()
                    )
                })
                .collect(),
            report_bucket: job.report().and_then(|r| r.bucket()).map(arn_bucket),
            report_prefix: job.report().and_then(|r| r.prefix()).map(str::to_string),
        })
    }

    async fn list_jobs(&self, account_id: &str) -> PortResult<Vec<JobSummary>> {
        const OP: &str = "s3:ListJobs";
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .0
                .list_jobs()
                .account_id(account_id)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| port_error(OP, &format!("batch jobs of {account_id}"), e))?;
            out.extend(page.jobs().iter().map(|j| JobSummary {
                id: j.job_id().unwrap_or_default().to_string(),
                status: status(j.status()),
                description: j.description().unwrap_or_default().to_string(),
            }));
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    async fn cancel_job(&self, account_id: &str, id: &str) -> PortResult<()> {
        const OP: &str = "s3:UpdateJobStatus";
        self.0
            .update_job_status()
            .account_id(account_id)
            .job_id(id)
            .requested_job_status(RequestedJobStatus::Cancelled)
            .status_update_reason("cancelled with envclone s3 job cancel")
            .send()
            .await
            .map_err(|e| port_error(OP, &format!("batch job {id}"), e))?;
        Ok(())
    }
}
