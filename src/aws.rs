//! The adapters: each port of `ports` implemented over its AWS SDK client, SDK errors turned
//! into `PortError`. The only module that names an `aws_sdk_*` type.
//!
//! This file holds what every adapter shares: loading the AWS configuration (`connect`),
//! building the adapters of a `Cloud` (`cloud_from`), and turning an SDK error into a
//! `PortError` (`port_error`). Each AWS service has its own file under `aws/`, which builds its
//! client and is the only one to name that service's `aws_sdk_*` crate (this file names none);
//! the two adapters that are not AWS (the HTTP probe and the hook runner) have theirs too.

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use thiserror::Error;

use crate::ports::*;

mod autoscaling;
mod call_record;
mod cloudformation;
pub mod dynamodb;
mod http_probe;
mod rds;
mod route53;
mod s3;
mod s3control;
mod shell_hooks;

pub use autoscaling::AutoScaling;
pub use call_record::{call_name, iam_prefix, CallRecord, RECORD_CALLS_ENV};
pub use cloudformation::CloudFormation;
pub use http_probe::Http;
pub use rds::Rds;
pub use route53::Route53;
pub use s3::S3;
pub use s3control::S3Control;
pub use shell_hooks::ShellHooks;

#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("no AWS region: pass --region, or set AWS_REGION or a region in your profile")]
    NoRegion,
    #[error(
        "no AWS credentials found ({0}); configure the standard chain: AWS_ACCESS_KEY_ID/\
         AWS_SECRET_ACCESS_KEY, AWS_PROFILE (with --profile), SSO (`aws sso login`), or an \
         instance role"
    )]
    NoCredentials(String),
}

/// Loads the standard AWS configuration (env, profile, SSO, instance role; `AWS_ENDPOINT_URL`
/// for a local stand-in) and builds the adapters.
pub async fn connect(
    region: Option<String>,
    profile: Option<String>,
    clock: Arc<dyn Clock>,
) -> Result<Cloud, ConnectError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        // Adaptive retry slows the client down under throttling instead of failing copies.
        .retry_config(RetryConfig::adaptive().with_max_attempts(6));
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(ConnectError::NoRegion);
    }
    check_credentials(&config).await?;
    Ok(cloud_from(&config, clock))
}

async fn check_credentials(config: &SdkConfig) -> Result<(), ConnectError> {
    use aws_credential_types::provider::ProvideCredentials;
    let provider = config
        .credentials_provider()
        .ok_or_else(|| ConnectError::NoCredentials("no provider configured".into()))?;
    provider
        .provide_credentials()
        .await
        .map(|_| ())
        .map_err(|e| ConnectError::NoCredentials(e.to_string()))
}

/// The adapters over the clients of `config`. Every client records the calls it makes (see
/// `call_record`; written to a file only when `ENVCLONE_RECORD_CALLS` is set). `clock` is the
/// composition root's, so the whole process reads wall time through one clock.
pub fn cloud_from(config: &SdkConfig, clock: Arc<dyn Clock>) -> Cloud {
    let calls = CallRecord::from_env();
    Cloud {
        stacks: Arc::new(CloudFormation::new(config, &calls)),
        databases: Arc::new(Rds::new(config, &calls)),
        scaling: Arc::new(AutoScaling::new(config, &calls)),
        objects: Arc::new(S3::new(config, &calls, clock.clone())),
        dns: Arc::new(Route53::new(config, &calls)),
        http: Arc::new(Http::new(Duration::from_secs(10))),
        hooks: Arc::new(ShellHooks),
        clock,
        tables: Arc::new(dynamodb::DynamoDb::new(config, &calls)),
        jobs: Arc::new(S3Control::new(config, &calls)),
    }
}

const NOT_FOUND: &[&str] = &[
    "NotFound",
    "NoSuchKey",
    "NoSuchBucket",
    "DBInstanceNotFound",
    "DBInstanceNotFoundFault",
    "DBSnapshotNotFound",
    "DBSnapshotNotFoundFault",
    "DBClusterNotFoundFault",
    "DBClusterSnapshotNotFoundFault",
    "NoSuchHostedZone",
    "NoSuchUpload",
];
const ALREADY_EXISTS: &[&str] = &[
    "AlreadyExistsException",
    "BucketAlreadyOwnedByYou",
    "BucketAlreadyExists",
    "DBSnapshotAlreadyExists",
    "DBSnapshotAlreadyExistsFault",
    "DBClusterSnapshotAlreadyExistsFault",
];
const TRANSIENT: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "RequestTimeout",
    "PriorRequestNotComplete",
    // The instance is busy (backing up, modifying): the same call succeeds once it is done.
    "InvalidDBInstanceState",
    "InvalidDBInstanceStateFault",
    "InvalidDBClusterStateFault",
];

/// Maps an SDK error to what the workflow needs to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorClass {
    NotFound,
    Precondition,
    AlreadyExists,
    Transient,
    Other,
}

/// What a service error means, by its code and the operation — not by words in its message.
/// CloudFormation answers a missing stack with the generic `ValidationError` ("Stack with id X
/// does not exist"), so only that exact message of a stack lookup means "not found"; any other
/// ValidationError ("Parameter validation failed: parameter value subnet-… for parameter name
/// SubnetId does not exist") is the caller's to read as it is.
fn classify(operation: &str, code: &str, status: u16, message: &str) -> ErrorClass {
    let stack_missing = operation.starts_with("cloudformation:")
        && operation != "cloudformation:CreateStack"
        && code == "ValidationError"
        // "Stack with id X does not exist", "Stack [X] does not exist".
        && message.starts_with("Stack ")
        && message.ends_with(" does not exist");
    if NOT_FOUND.contains(&code) || status == 404 || stack_missing {
        ErrorClass::NotFound
    } else if code == "PreconditionFailed" || code == "ConditionalRequestConflict" || status == 412
    {
        ErrorClass::Precondition
    } else if ALREADY_EXISTS.contains(&code) {
        ErrorClass::AlreadyExists
    } else if TRANSIENT.contains(&code) || status >= 500 || status == 429 {
        ErrorClass::Transient
    } else {
        ErrorClass::Other
    }
}

fn port_error<E>(operation: &str, what: &str, err: SdkError<E, HttpResponse>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default().to_string();
            let message = service.err().message().unwrap_or_default().to_string();
            let status = service.raw().status().as_u16();
            let text = format!("{code} (HTTP {status}): {message}");
            match classify(operation, &code, status, &message) {
                ErrorClass::NotFound => PortError::NotFound {
                    what: what.to_string(),
                },
                // A conditional write lost (412), or raced another one in flight (409).
                ErrorClass::Precondition => PortError::PreconditionFailed {
                    what: what.to_string(),
                },
                ErrorClass::AlreadyExists => PortError::AlreadyExists {
                    what: what.to_string(),
                },
                ErrorClass::Transient => PortError::Transient {
                    operation: operation.to_string(),
                    message: text,
                },
                // AWS's own words are kept: they name the parameter, the value, the limit.
                ErrorClass::Other => PortError::failed(operation, format!("{what}: {text}")),
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            PortError::Transient {
                operation: operation.to_string(),
                message: format!(
                    "{}",
                    aws_smithy_types::error::display::DisplayErrorContext(&err)
                ),
            }
        }
        _ => PortError::failed(
            operation,
            format!(
                "{what}: {}",
                aws_smithy_types::error::display::DisplayErrorContext(&err)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15, item 4: a parameter that names a missing subnet is not "stack not found"
    /// (before, any message containing "does not exist" was).
    #[test]
    fn errors_are_classified_by_code_and_operation_not_by_words() {
        let subnet = "Parameter validation failed: parameter value subnet-0abc for parameter \
                      name SubnetId does not exist";
        assert_eq!(
            classify("cloudformation:CreateStack", "ValidationError", 400, subnet),
            ErrorClass::Other
        );
        assert_eq!(
            classify(
                "cloudformation:DescribeStacks",
                "ValidationError",
                400,
                subnet
            ),
            ErrorClass::Other
        );
        assert_eq!(
            classify(
                "cloudformation:DescribeStacks",
                "ValidationError",
                400,
                "Stack with id prod does not exist"
            ),
            ErrorClass::NotFound
        );
        assert_eq!(
            classify(
                "cloudformation:UpdateTerminationProtection",
                "ValidationError",
                400,
                "Stack [prod] does not exist"
            ),
            ErrorClass::NotFound
        );
        assert_eq!(
            classify("rds:DescribeDBInstances", "DBInstanceNotFound", 404, "x"),
            ErrorClass::NotFound
        );
        assert_eq!(
            classify("s3:PutObject", "PreconditionFailed", 412, "At least one"),
            ErrorClass::Precondition
        );
        assert_eq!(
            classify("s3:CopyObject", "SlowDown", 503, "Please reduce"),
            ErrorClass::Transient
        );
    }
}
