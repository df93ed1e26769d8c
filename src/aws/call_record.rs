//! The record of the AWS calls envclone makes: an SDK interceptor that `cloud_from` installs on
//! every client, reading the operation's service and name from the request's configuration
//! (the `Metadata` each SDK operation stores there) and keeping each distinct call as
//! `iam-prefix:Operation` (`s3:CopyObject`) — the names `iam::OPERATIONS` maps to IAM actions.
//!
//! With `ENVCLONE_RECORD_CALLS=/path/file` set, each distinct call of the process is appended
//! to that file as one line, so a test can run the binary through its commands and check the
//! IAM policy against the calls actually made, not against a reading of the source.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// The environment variable naming the file the calls are appended to.
pub const RECORD_CALLS_ENV: &str = "ENVCLONE_RECORD_CALLS";

/// The IAM service prefix of an SDK service name (the `Metadata` service of its operations:
/// "Auto Scaling", "Route 53"). IAM's "Actions, resources, and condition keys for AWS services"
/// lists the prefixes. `None` for a service envclone has no adapter for.
pub fn iam_prefix(sdk_service: &str) -> Option<&'static str> {
    Some(match sdk_service {
        "CloudFormation" => "cloudformation",
        "RDS" => "rds",
        "S3" => "s3",
        // S3 Batch Operations' actions are s3:CreateJob, s3:DescribeJob … (IAM's "Actions
        // defined by Amazon S3").
        "S3 Control" => "s3",
        "Auto Scaling" => "autoscaling",
        "Route 53" => "route53",
        "DynamoDB" => "dynamodb",
        _ => return None,
    })
}

/// The name a call is recorded under: `prefix:Operation`, or, for a service without a known
/// prefix, `"Service Name":Operation`, which no entry of `iam::OPERATIONS` matches.
pub fn call_name(sdk_service: &str, operation: &str) -> String {
    match iam_prefix(sdk_service) {
        Some(prefix) => format!("{prefix}:{operation}"),
        None => format!("{sdk_service:?}:{operation}"),
    }
}

/// The distinct calls made through the clients it is installed on, shared by all of them.
#[derive(Debug, Clone, Default)]
pub struct CallRecord(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    seen: Mutex<BTreeSet<String>>,
    file: Option<PathBuf>,
}

impl CallRecord {
    /// Appending to the file `ENVCLONE_RECORD_CALLS` names, when set (and not empty).
    pub fn from_env() -> CallRecord {
        let file = std::env::var_os(RECORD_CALLS_ENV)
            .filter(|f| !f.is_empty())
            .map(PathBuf::from);
        CallRecord(Arc::new(Inner {
            seen: Mutex::default(),
            file,
        }))
    }

    /// The distinct calls so far, sorted.
    pub fn calls(&self) -> Vec<String> {
        self.seen().iter().cloned().collect()
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        // A panic elsewhere while holding the lock leaves the set whole: keep using it.
        self.0.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `call`; the first time, appends it to the file. A file that cannot be written
    /// fails the call: asked to record, envclone does not run on without a record.
    fn record(&self, call: String) -> Result<(), BoxError> {
        let mut seen = self.seen();
        if seen.contains(&call) {
            return Ok(());
        }
        if let Some(file) = &self.0.file {
            // One write of one short line to a file opened for appending: lines of processes
            // recording to the same file do not interleave.
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .and_then(|mut f| f.write_all(format!("{call}\n").as_bytes()))
                .map_err(|e| {
                    format!(
                        "{RECORD_CALLS_ENV}: could not append {call} to {}: {e}; unset it or \
                         point it at a writable file",
                        file.display()
                    )
                })?;
        }
        seen.insert(call);
        Ok(())
    }
}

impl Intercept for CallRecord {
    fn name(&self) -> &'static str {
        "envclone-call-record"
    }

    /// Once per operation, retries included (the retry loop comes after serialization), and
    /// after the operation's own configuration, which holds its `Metadata`, has been applied
    /// (it has not yet when `read_before_execution` runs for a client interceptor).
    fn read_before_serialization(
        &self,
        _: &BeforeSerializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let metadata = cfg
            .load::<Metadata>()
            .ok_or("the SDK gave no operation metadata to record the call by")?;
        self.record(call_name(metadata.service(), metadata.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_service_names_map_to_iam_prefixes() {
        assert_eq!(
            call_name("Auto Scaling", "EnterStandby"),
            "autoscaling:EnterStandby"
        );
        assert_eq!(call_name("Route 53", "GetChange"), "route53:GetChange");
        assert_eq!(
            call_name("CloudFormation", "CreateStack"),
            "cloudformation:CreateStack"
        );
        assert_eq!(call_name("RDS", "ModifyDBCluster"), "rds:ModifyDBCluster");
        assert_eq!(call_name("S3", "UploadPartCopy"), "s3:UploadPartCopy");
        assert_eq!(call_name("DynamoDB", "Scan"), "dynamodb:Scan");
        // A service without a mapping is named so that it matches no IAM operation.
        assert_eq!(call_name("SQS", "SendMessage"), "\"SQS\":SendMessage");
    }

    #[test]
    fn each_distinct_call_is_appended_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("calls");
        let record = CallRecord(Arc::new(Inner {
            seen: Mutex::default(),
            file: Some(file.clone()),
        }));
        for call in ["s3:GetObject", "rds:DescribeDBInstances", "s3:GetObject"] {
            record.record(call.to_string()).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "s3:GetObject\nrds:DescribeDBInstances\n"
        );
        assert_eq!(
            record.calls(),
            vec!["rds:DescribeDBInstances", "s3:GetObject"]
        );
        let unwritable = CallRecord(Arc::new(Inner {
            seen: Mutex::default(),
            file: Some(dir.path().join("missing/calls")),
        }));
        let err = unwritable.record("s3:GetObject".into()).unwrap_err();
        assert!(err.to_string().contains("missing/calls"), "{err}");
        assert!(unwritable.calls().is_empty());
    }
}
