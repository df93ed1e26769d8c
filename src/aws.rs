//! The adapters: each port of `ports` implemented over its AWS SDK client, SDK errors turned
//! into `PortError`. The only module that names an `aws_sdk_*` type.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use thiserror::Error;

use crate::ports::*;

pub mod dynamodb;

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
    Ok(cloud_from(&config))
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

pub fn cloud_from(config: &SdkConfig) -> Cloud {
    use std::sync::Arc;
    // Path-style addressing when an endpoint is given: `bucket.localhost` does not resolve.
    let s3_config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(config.endpoint_url().is_some())
        .build();
    let region = config.region().map(|r| r.to_string()).unwrap_or_default();
    Cloud {
        stacks: Arc::new(CloudFormation(aws_sdk_cloudformation::Client::new(config))),
        databases: Arc::new(Rds(aws_sdk_rds::Client::new(config))),
        scaling: Arc::new(AutoScaling(aws_sdk_autoscaling::Client::new(config))),
        objects: Arc::new(S3 {
            client: aws_sdk_s3::Client::from_conf(s3_config),
            region,
        }),
        dns: Arc::new(Route53(aws_sdk_route53::Client::new(config))),
        http: Arc::new(Http(
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client builds"),
        )),
        hooks: Arc::new(ShellHooks),
    }
}

/// Hook commands run with `sh -c`, their output passed through to envclone's stderr.
pub struct ShellHooks;

#[async_trait]
impl HookRunner for ShellHooks {
    async fn run(
        &self,
        command: &str,
        env: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<(), String> {
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .envs(env)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("could not start `{command}`: {e}"))?;
        let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(r) => r.map_err(|e| format!("`{command}` failed: {e}"))?,
            Err(_) => {
                return Err(format!(
                    "`{command}` did not finish within {timeout:?} (killed)"
                ))
            }
        };
        if out.status.success() {
            Ok(())
        } else {
            let tail: String = String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join(" | ");
            Err(format!("`{command}` exited with {}: {tail}", out.status))
        }
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

// ---------------------------------------------------------------- CloudFormation

pub struct CloudFormation(aws_sdk_cloudformation::Client);

fn stack_info(s: &aws_sdk_cloudformation::types::Stack) -> StackInfo {
    StackInfo {
        name: s.stack_name().unwrap_or_default().to_string(),
        id: s.stack_id().unwrap_or_default().to_string(),
        status: StackStatus::from_aws(s.stack_status().map(|x| x.as_str()).unwrap_or_default()),
        status_reason: s.stack_status_reason().map(str::to_string),
        parameters: s
            .parameters()
            .iter()
            .map(|p| {
                (
                    p.parameter_key().unwrap_or_default().to_string(),
                    p.parameter_value().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        outputs: s
            .outputs()
            .iter()
            .map(|o| {
                (
                    o.output_key().unwrap_or_default().to_string(),
                    o.output_value().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        tags: s
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        capabilities: s
            .capabilities()
            .iter()
            .map(|c| c.as_str().to_string())
            .collect(),
        created: s
            .creation_time()
            .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
        termination_protection: s.enable_termination_protection().unwrap_or(false),
    }
}

#[async_trait]
impl Stacks for CloudFormation {
    async fn describe_stack(&self, name: &str) -> PortResult<Option<StackInfo>> {
        let what = format!("stack {name}");
        match self.0.describe_stacks().stack_name(name).send().await {
            Ok(out) => Ok(out
                .stacks()
                .iter()
                .find(|s| s.stack_status().map(|x| x.as_str()) != Some("DELETE_COMPLETE"))
                .map(stack_info)),
            Err(e) => match port_error("cloudformation:DescribeStacks", &what, e) {
                PortError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn find_stacks_by_tag(&self, key: &str, value: &str) -> PortResult<Vec<StackInfo>> {
        let mut found = self.stacks_with_tag(key).await?;
        found.retain(|s| s.tags.get(key).map(String::as_str) == Some(value));
        Ok(found)
    }

    async fn stacks_with_tag(&self, key: &str) -> PortResult<Vec<StackInfo>> {
        let mut pages = self.0.describe_stacks().into_paginator().send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| port_error("cloudformation:DescribeStacks", "stacks", e))?;
            for s in page.stacks() {
                let tagged = s.tags().iter().any(|t| t.key() == Some(key));
                let live = s.stack_status().map(|x| x.as_str()) != Some("DELETE_COMPLETE");
                // A nested stack carries its root's tags (CloudFormation propagates stack
                // tags to nested stacks): it is part of its root's environment, not one.
                let root = s.parent_id().is_none_or(str::is_empty);
                if tagged && live && root {
                    found.push(stack_info(s));
                }
            }
        }
        Ok(found)
    }

    async fn template_body(&self, stack: &str) -> PortResult<String> {
        let out = self
            .0
            .get_template()
            .stack_name(stack)
            .send()
            .await
            .map_err(|e| port_error("cloudformation:GetTemplate", &format!("stack {stack}"), e))?;
        Ok(out.template_body().unwrap_or_default().to_string())
    }

    async fn resources(&self, stack: &str) -> PortResult<Vec<StackResource>> {
        let mut pages = self
            .0
            .list_stack_resources()
            .stack_name(stack)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                port_error(
                    "cloudformation:ListStackResources",
                    &format!("stack {stack}"),
                    e,
                )
            })?;
            for r in page.stack_resource_summaries() {
                out.push(StackResource {
                    logical_id: r.logical_resource_id().unwrap_or_default().to_string(),
                    physical_id: r
                        .physical_resource_id()
                        .filter(|p| !p.is_empty())
                        .map(str::to_string),
                    resource_type: r.resource_type().unwrap_or_default().to_string(),
                    status: r
                        .resource_status()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }

    async fn create_stack(&self, request: &CreateStackRequest) -> PortResult<String> {
        use aws_sdk_cloudformation::types::{Capability, Parameter, Tag};
        let mut call = self
            .0
            .create_stack()
            .stack_name(&request.name)
            .client_request_token(&request.client_token);
        call = match &request.template {
            TemplateSource::Body(body) => call.template_body(body),
            TemplateSource::Url(url) => call.template_url(url),
        };
        for (k, v) in &request.parameters {
            call = call.parameters(
                Parameter::builder()
                    .parameter_key(k)
                    .parameter_value(v)
                    .build(),
            );
        }
        for (k, v) in &request.tags {
            call = call.tags(Tag::builder().key(k).value(v).build());
        }
        for c in &request.capabilities {
            call = call.capabilities(Capability::from(c.as_str()));
        }
        let out = call.send().await.map_err(|e| {
            port_error(
                "cloudformation:CreateStack",
                &format!("stack {}", request.name),
                e,
            )
        })?;
        Ok(out.stack_id().unwrap_or_default().to_string())
    }

    async fn delete_stack(&self, name: &str, retain: &[String]) -> PortResult<()> {
        let mut call = self.0.delete_stack().stack_name(name);
        if !retain.is_empty() {
            call = call.set_retain_resources(Some(retain.to_vec()));
        }
        call.send()
            .await
            .map_err(|e| port_error("cloudformation:DeleteStack", &format!("stack {name}"), e))?;
        Ok(())
    }

    async fn set_termination_protection(&self, name: &str, enabled: bool) -> PortResult<()> {
        self.0
            .update_termination_protection()
            .stack_name(name)
            .enable_termination_protection(enabled)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "cloudformation:UpdateTerminationProtection",
                    &format!("stack {name}"),
                    e,
                )
            })?;
        Ok(())
    }
}

// ---------------------------------------------------------------- RDS

pub struct Rds(aws_sdk_rds::Client);

impl Rds {
    /// AddTagsToResource on a DB instance's or cluster's ARN (`what` names it in errors).
    async fn add_tags(
        &self,
        arn: String,
        tags: &BTreeMap<String, String>,
        what: &str,
    ) -> PortResult<()> {
        self.0
            .add_tags_to_resource()
            .resource_name(arn)
            .set_tags(rds_tag_list(tags))
            .send()
            .await
            .map_err(|e| port_error("rds:AddTagsToResource", what, e))?;
        Ok(())
    }
}

/// The request's tag list; none at all when there are no tags (as the builder sends nothing).
fn rds_tag_list(tags: &BTreeMap<String, String>) -> Option<Vec<aws_sdk_rds::types::Tag>> {
    (!tags.is_empty()).then(|| {
        tags.iter()
            .map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(k).value(v).build())
            .collect()
    })
}

fn db_snapshot(s: &aws_sdk_rds::types::DbSnapshot) -> DbSnapshot {
    DbSnapshot {
        id: s.db_snapshot_identifier().unwrap_or_default().to_string(),
        instance_id: s.db_instance_identifier().unwrap_or_default().to_string(),
        status: s.status().unwrap_or_default().to_string(),
        tags: rds_tags(s.tag_list()),
        created: s
            .snapshot_create_time()
            .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
    }
}

fn db_cluster_snapshot(s: &aws_sdk_rds::types::DbClusterSnapshot) -> DbSnapshot {
    DbSnapshot {
        id: s
            .db_cluster_snapshot_identifier()
            .unwrap_or_default()
            .to_string(),
        instance_id: s.db_cluster_identifier().unwrap_or_default().to_string(),
        status: s.status().unwrap_or_default().to_string(),
        tags: rds_tags(s.tag_list()),
        created: s
            .snapshot_create_time()
            .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
    }
}

/// Keeps the `Date` header of a response: AWS's clock, to compare with the times AWS reports.
#[derive(Debug, Clone, Default)]
struct ServerDate(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl ServerDate {
    fn time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let date = self.0.lock().ok()?.clone()?;
        chrono::DateTime::parse_from_rfc2822(&date)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }
}

impl aws_sdk_rds::config::Intercept for ServerDate {
    fn name(&self) -> &'static str {
        "envclone-server-date"
    }

    fn read_after_transmit(
        &self,
        context: &aws_sdk_rds::config::interceptors::BeforeDeserializationInterceptorContextRef<'_>,
        _: &aws_sdk_rds::config::RuntimeComponents,
        _: &mut aws_sdk_rds::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if let Some(date) = context.response().headers().get("date") {
            if let Ok(mut slot) = self.0.lock() {
                *slot = Some(date.to_string());
            }
        }
        Ok(())
    }
}

fn db_cluster(c: &aws_sdk_rds::types::DbCluster) -> DbCluster {
    DbCluster {
        id: c.db_cluster_identifier().unwrap_or_default().to_string(),
        status: c.status().unwrap_or_default().to_string(),
        engine: c.engine().unwrap_or_default().to_string(),
        engine_mode: c.engine_mode().unwrap_or("provisioned").to_string(),
        latest_restorable_time: c
            .latest_restorable_time()
            .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
        clone_group_id: c.clone_group_id().map(str::to_string),
        server_time: None,
        endpoint: c.endpoint().map(str::to_string),
        members: c
            .db_cluster_members()
            .iter()
            .filter_map(|m| m.db_instance_identifier().map(str::to_string))
            .collect(),
        deletion_protection: c.deletion_protection().unwrap_or(false),
        tags: rds_tags(c.tag_list()),
    }
}

fn rds_tags(tags: &[aws_sdk_rds::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[async_trait]
impl Databases for Rds {
    async fn describe_instance(&self, id: &str) -> PortResult<Option<DbInstance>> {
        let what = format!("database {id}");
        match self
            .0
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
        {
            Ok(out) => Ok(out.db_instances().first().map(|db| DbInstance {
                id: db.db_instance_identifier().unwrap_or_default().to_string(),
                status: db.db_instance_status().unwrap_or_default().to_string(),
                engine: db.engine().unwrap_or_default().to_string(),
                endpoint: db.endpoint().and_then(|e| e.address()).map(str::to_string),
                deletion_protection: db.deletion_protection().unwrap_or(false),
                tags: rds_tags(db.tag_list()),
            })),
            Err(e) => match port_error("rds:DescribeDBInstances", &what, e) {
                PortError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn create_snapshot(
        &self,
        instance_id: &str,
        snapshot_id: &str,
        tags: &BTreeMap<String, String>,
    ) -> PortResult<()> {
        self.0
            .create_db_snapshot()
            .db_instance_identifier(instance_id)
            .db_snapshot_identifier(snapshot_id)
            .set_tags(rds_tag_list(tags))
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "rds:CreateDBSnapshot",
                    &format!("DB snapshot {snapshot_id}"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn describe_snapshot(&self, id: &str) -> PortResult<Option<DbSnapshot>> {
        let what = format!("DB snapshot {id}");
        match self
            .0
            .describe_db_snapshots()
            .db_snapshot_identifier(id)
            .send()
            .await
        {
            Ok(out) => Ok(out.db_snapshots().first().map(db_snapshot)),
            Err(e) => match port_error("rds:DescribeDBSnapshots", &what, e) {
                PortError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn rename_instance(&self, id: &str, new_id: &str) -> PortResult<()> {
        self.0
            .modify_db_instance()
            .db_instance_identifier(id)
            .new_db_instance_identifier(new_id)
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| port_error("rds:ModifyDBInstance", &format!("database {id}"), e))?;
        Ok(())
    }

    async fn set_deletion_protection(&self, id: &str, enabled: bool) -> PortResult<()> {
        self.0
            .modify_db_instance()
            .db_instance_identifier(id)
            .deletion_protection(enabled)
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| port_error("rds:ModifyDBInstance", &format!("database {id}"), e))?;
        Ok(())
    }

    async fn tag_instance(&self, id: &str, tags: &BTreeMap<String, String>) -> PortResult<()> {
        let what = format!("database {id}");
        let out = self
            .0
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
            .map_err(|e| port_error("rds:DescribeDBInstances", &what, e))?;
        let arn = out
            .db_instances()
            .first()
            .and_then(|d| d.db_instance_arn())
            .ok_or_else(|| PortError::NotFound { what: what.clone() })?
            .to_string();
        self.add_tags(arn, tags, &what).await
    }

    async fn snapshots_of_instance(&self, instance_id: &str) -> PortResult<Vec<DbSnapshot>> {
        let mut pages = self
            .0
            .describe_db_snapshots()
            .db_instance_identifier(instance_id)
            .snapshot_type("manual")
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                port_error(
                    "rds:DescribeDBSnapshots",
                    &format!("snapshots of {instance_id}"),
                    e,
                )
            })?;
            out.extend(page.db_snapshots().iter().map(db_snapshot));
        }
        Ok(out)
    }

    async fn instances_tagged(&self, key: &str, value: &str) -> PortResult<Vec<String>> {
        // DescribeDBInstances takes no tag filter; each instance's TagList comes with it.
        let mut pages = self.0.describe_db_instances().into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                port_error(
                    "rds:DescribeDBInstances",
                    &format!("DB instances tagged {key}={value}"),
                    e,
                )
            })?;
            out.extend(
                page.db_instances()
                    .iter()
                    .filter(|d| rds_tags(d.tag_list()).get(key).map(String::as_str) == Some(value))
                    .filter_map(|d| d.db_instance_identifier().map(str::to_string)),
            );
        }
        Ok(out)
    }

    async fn delete_snapshot(&self, id: &str) -> PortResult<()> {
        self.0
            .delete_db_snapshot()
            .db_snapshot_identifier(id)
            .send()
            .await
            .map_err(|e| port_error("rds:DeleteDBSnapshot", &format!("DB snapshot {id}"), e))?;
        Ok(())
    }

    async fn describe_cluster(&self, id: &str) -> PortResult<Option<DbCluster>> {
        let what = format!("DB cluster {id}");
        let date = ServerDate::default();
        match self
            .0
            .describe_db_clusters()
            .db_cluster_identifier(id)
            .customize()
            .interceptor(date.clone())
            .send()
            .await
        {
            Ok(out) => Ok(out.db_clusters().first().map(|c| DbCluster {
                server_time: date.time(),
                ..db_cluster(c)
            })),
            Err(e) => match port_error("rds:DescribeDBClusters", &what, e) {
                PortError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn clusters_tagged(&self, key: &str, value: &str) -> PortResult<Vec<String>> {
        let mut pages = self.0.describe_db_clusters().into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                port_error(
                    "rds:DescribeDBClusters",
                    &format!("DB clusters tagged {key}={value}"),
                    e,
                )
            })?;
            out.extend(
                page.db_clusters()
                    .iter()
                    .filter(|c| rds_tags(c.tag_list()).get(key).map(String::as_str) == Some(value))
                    .filter_map(|c| c.db_cluster_identifier().map(str::to_string)),
            );
        }
        Ok(out)
    }

    async fn clusters_in_clone_group(&self, clone_group_id: &str) -> PortResult<usize> {
        // Counted over the region's clusters rather than with the `clone-group-id` filter, which
        // the local stand-in (moto) does not know; a region holds few clusters.
        let mut pages = self.0.describe_db_clusters().into_paginator().send();
        let mut count = 0;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                port_error(
                    "rds:DescribeDBClusters",
                    &format!("clone group {clone_group_id}"),
                    e,
                )
            })?;
            count += page
                .db_clusters()
                .iter()
                .filter(|c| c.clone_group_id() == Some(clone_group_id))
                .count();
        }
        Ok(count)
    }

    async fn create_cluster_snapshot(
        &self,
        cluster_id: &str,
        snapshot_id: &str,
        tags: &BTreeMap<String, String>,
    ) -> PortResult<()> {
        self.0
            .create_db_cluster_snapshot()
            .db_cluster_identifier(cluster_id)
            .db_cluster_snapshot_identifier(snapshot_id)
            .set_tags(rds_tag_list(tags))
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "rds:CreateDBClusterSnapshot",
                    &format!("DB cluster snapshot {snapshot_id}"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn describe_cluster_snapshot(&self, id: &str) -> PortResult<Option<DbSnapshot>> {
        let what = format!("DB cluster snapshot {id}");
        match self
            .0
            .describe_db_cluster_snapshots()
            .db_cluster_snapshot_identifier(id)
            .send()
            .await
        {
            Ok(out) => Ok(out.db_cluster_snapshots().first().map(db_cluster_snapshot)),
            Err(e) => match port_error("rds:DescribeDBClusterSnapshots", &what, e) {
                PortError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn delete_cluster_snapshot(&self, id: &str) -> PortResult<()> {
        self.0
            .delete_db_cluster_snapshot()
            .db_cluster_snapshot_identifier(id)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "rds:DeleteDBClusterSnapshot",
                    &format!("DB cluster snapshot {id}"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn snapshots_of_cluster(&self, cluster_id: &str) -> PortResult<Vec<DbSnapshot>> {
        let mut pages = self
            .0
            .describe_db_cluster_snapshots()
            .db_cluster_identifier(cluster_id)
            .snapshot_type("manual")
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                port_error(
                    "rds:DescribeDBClusterSnapshots",
                    &format!("snapshots of cluster {cluster_id}"),
                    e,
                )
            })?;
            out.extend(page.db_cluster_snapshots().iter().map(db_cluster_snapshot));
        }
        Ok(out)
    }

    async fn rename_cluster(&self, id: &str, new_id: &str) -> PortResult<()> {
        self.0
            .modify_db_cluster()
            .db_cluster_identifier(id)
            .new_db_cluster_identifier(new_id)
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| port_error("rds:ModifyDBCluster", &format!("DB cluster {id}"), e))?;
        Ok(())
    }

    async fn set_cluster_deletion_protection(&self, id: &str, enabled: bool) -> PortResult<()> {
        self.0
            .modify_db_cluster()
            .db_cluster_identifier(id)
            .deletion_protection(enabled)
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| port_error("rds:ModifyDBCluster", &format!("DB cluster {id}"), e))?;
        Ok(())
    }

    async fn tag_cluster(&self, id: &str, tags: &BTreeMap<String, String>) -> PortResult<()> {
        let what = format!("DB cluster {id}");
        let out = self
            .0
            .describe_db_clusters()
            .db_cluster_identifier(id)
            .send()
            .await
            .map_err(|e| port_error("rds:DescribeDBClusters", &what, e))?;
        let arn = out
            .db_clusters()
            .first()
            .and_then(|c| c.db_cluster_arn())
            .ok_or_else(|| PortError::NotFound { what: what.clone() })?
            .to_string();
        self.add_tags(arn, tags, &what).await
    }

    async fn delete_cluster(&self, id: &str) -> PortResult<()> {
        self.0
            .delete_db_cluster()
            .db_cluster_identifier(id)
            .skip_final_snapshot(true)
            .send()
            .await
            .map_err(|e| port_error("rds:DeleteDBCluster", &format!("DB cluster {id}"), e))?;
        Ok(())
    }

    async fn delete_instance(&self, id: &str) -> PortResult<()> {
        self.0
            .delete_db_instance()
            .db_instance_identifier(id)
            .skip_final_snapshot(true)
            .send()
            .await
            .map_err(|e| port_error("rds:DeleteDBInstance", &format!("database {id}"), e))?;
        Ok(())
    }

    async fn untag(&self, kind: DbKind, id: &str, keys: &[String]) -> PortResult<()> {
        let what = format!("database {id}");
        let arn = match kind {
            DbKind::Instance => self
                .0
                .describe_db_instances()
                .db_instance_identifier(id)
                .send()
                .await
                .map_err(|e| port_error("rds:DescribeDBInstances", &what, e))?
                .db_instances()
                .first()
                .and_then(|d| d.db_instance_arn())
                .map(str::to_string),
            DbKind::Cluster => self
                .0
                .describe_db_clusters()
                .db_cluster_identifier(id)
                .send()
                .await
                .map_err(|e| port_error("rds:DescribeDBClusters", &what, e))?
                .db_clusters()
                .first()
                .and_then(|c| c.db_cluster_arn())
                .map(str::to_string),
        }
        .ok_or_else(|| PortError::NotFound { what: what.clone() })?;
        self.0
            .remove_tags_from_resource()
            .resource_name(arn)
            .set_tag_keys(Some(keys.to_vec()))
            .send()
            .await
            .map_err(|e| port_error("rds:RemoveTagsFromResource", &what, e))?;
        Ok(())
    }
}

// ---------------------------------------------------------------- Auto Scaling

pub struct AutoScaling(aws_sdk_autoscaling::Client);

#[async_trait]
impl Scaling for AutoScaling {
    async fn describe_group(&self, name: &str) -> PortResult<Option<AsgInfo>> {
        let out = self
            .0
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "autoscaling:DescribeAutoScalingGroups",
                    &format!("Auto Scaling group {name}"),
                    e,
                )
            })?;
        Ok(out.auto_scaling_groups().first().map(|g| AsgInfo {
            name: g.auto_scaling_group_name().unwrap_or_default().to_string(),
            min_size: g.min_size().unwrap_or_default(),
            max_size: g.max_size().unwrap_or_default(),
            desired_capacity: g.desired_capacity().unwrap_or_default(),
            instances: g
                .instances()
                .iter()
                .map(|i| AsgInstance {
                    id: i.instance_id().unwrap_or_default().to_string(),
                    lifecycle_state: i
                        .lifecycle_state()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    health_status: i.health_status().unwrap_or_default().to_string(),
                })
                .collect(),
            suspended_processes: g
                .suspended_processes()
                .iter()
                .filter_map(|p| p.process_name().map(str::to_string))
                .collect(),
        }))
    }

    async fn update_sizes(
        &self,
        name: &str,
        min_size: Option<i32>,
        max_size: Option<i32>,
        desired: Option<i32>,
    ) -> PortResult<()> {
        self.0
            .update_auto_scaling_group()
            .auto_scaling_group_name(name)
            .set_min_size(min_size)
            .set_max_size(max_size)
            .set_desired_capacity(desired)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "autoscaling:UpdateAutoScalingGroup",
                    &format!("Auto Scaling group {name}"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn suspend_processes(&self, name: &str, processes: &[String]) -> PortResult<()> {
        self.0
            .suspend_processes()
            .auto_scaling_group_name(name)
            .set_scaling_processes(Some(processes.to_vec()))
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "autoscaling:SuspendProcesses",
                    &format!("Auto Scaling group {name}"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn resume_processes(&self, name: &str, processes: &[String]) -> PortResult<()> {
        self.0
            .resume_processes()
            .auto_scaling_group_name(name)
            .set_scaling_processes(Some(processes.to_vec()))
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "autoscaling:ResumeProcesses",
                    &format!("Auto Scaling group {name}"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn enter_standby(&self, name: &str, instance_ids: &[String]) -> PortResult<()> {
        self.0
            .enter_standby()
            .auto_scaling_group_name(name)
            .set_instance_ids(Some(instance_ids.to_vec()))
            .should_decrement_desired_capacity(true)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "autoscaling:EnterStandby",
                    &format!("Auto Scaling group {name}"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn exit_standby(&self, name: &str, instance_ids: &[String]) -> PortResult<()> {
        self.0
            .exit_standby()
            .auto_scaling_group_name(name)
            .set_instance_ids(Some(instance_ids.to_vec()))
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "autoscaling:ExitStandby",
                    &format!("Auto Scaling group {name}"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn activities_in_progress(&self, name: &str) -> PortResult<Vec<String>> {
        use aws_sdk_autoscaling::types::ScalingActivityStatusCode as Code;
        let out = self
            .0
            .describe_scaling_activities()
            .auto_scaling_group_name(name)
            .max_records(50)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "autoscaling:DescribeScalingActivities",
                    &format!("Auto Scaling group {name}"),
                    e,
                )
            })?;
        Ok(out
            .activities()
            .iter()
            .filter(|a| {
                !matches!(
                    a.status_code(),
                    Some(Code::Successful | Code::Failed | Code::Cancelled)
                )
            })
            .map(|a| a.description().unwrap_or_default().to_string())
            .collect())
    }
}

// ---------------------------------------------------------------- S3

pub struct S3 {
    client: aws_sdk_s3::Client,
    region: String,
}

/// Characters kept as they are in `x-amz-copy-source`: unreserved ones and `/`.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

fn copy_source(bucket: &str, key: &str) -> String {
    format!("{bucket}/{}", utf8_percent_encode(key, COPY_SOURCE))
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

/// Tags in the URL-query form S3's `x-amz-tagging` header takes.
fn tagging_header(tags: &BTreeMap<String, String>) -> String {
    const QUERY: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    tags.iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, QUERY),
                utf8_percent_encode(v, QUERY)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// One GET of a bucket's configuration: `Ok(None)` when S3 answered its "not configured"
/// code (`none_code`), or when it refused the read for good (then listed as not carried, with
/// S3's words); missing buckets and transient errors fail the call.
fn config_read<T, E>(
    operation: &str,
    result: Result<T, SdkError<E, HttpResponse>>,
    none_code: Option<&str>,
    bucket: &str,
    kind: &str,
    report: &mut BucketConfigReport,
) -> PortResult<Option<T>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(out) => Ok(Some(out)),
        Err(e) if none_code.is_some() && e.code() == none_code => Ok(None),
        Err(e) => match port_error(operation, &format!("bucket {bucket}"), e) {
            e @ (PortError::NotFound { .. } | PortError::Transient { .. }) => Err(e),
            e => {
                report.not_carried.push(format!(
                    "{kind}: could not be read from {bucket} ({e}); compare it by hand"
                ));
                Ok(None)
            }
        },
    }
}

/// One PUT of a bucket's configuration: carried, or (refused for good) listed as not carried
/// with S3's words; transient errors fail the call (every PUT is idempotent: retried whole).
fn config_written<T, E>(
    operation: &str,
    result: Result<T, SdkError<E, HttpResponse>>,
    source: &str,
    target: &str,
    kind: &str,
    report: &mut BucketConfigReport,
) -> PortResult<()>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(_) => {
            report.carried.push(kind.to_string());
            Ok(())
        }
        Err(e) => match port_error(operation, &format!("bucket {target}"), e) {
            e @ PortError::Transient { .. } => Err(e),
            e => {
                report.not_carried.push(format!(
                    "{kind}: S3 refused it on {target} ({e}); review {source}'s and set it \
                     on {target} yourself"
                ));
                Ok(())
            }
        },
    }
}

impl S3 {
    /// DeleteObjects, 1,000 keys a request; a version id deletes that version (or delete
    /// marker) for good instead of adding a delete marker in a versioned bucket.
    async fn delete_identified(
        &self,
        bucket: &str,
        ids: &[(&str, Option<&str>)],
    ) -> PortResult<()> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let what = format!("bucket {bucket}");
        for batch in ids.chunks(crate::s3sync::DELETE_BATCH) {
            let objects = batch
                .iter()
                .map(|(k, v)| {
                    ObjectIdentifier::builder()
                        .key(*k)
                        .set_version_id(v.map(str::to_string))
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| PortError::failed("s3:DeleteObjects", e.to_string()))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| PortError::failed("s3:DeleteObjects", e.to_string()))?;
            let out = self
                .client
                .delete_objects()
                .bucket(bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| port_error("s3:DeleteObjects", &what, e))?;
            // DeleteObjects answers 200 and lists the keys it could not delete.
            if let Some(first) = out.errors().first() {
                let code = first.code().unwrap_or_default();
                let message = format!(
                    "s3://{bucket}/{}{}: {code}: {} ({} key(s) not deleted)",
                    first.key().unwrap_or_default(),
                    first
                        .version_id()
                        .map(|v| format!(" (version {v})"))
                        .unwrap_or_default(),
                    first.message().unwrap_or_default(),
                    out.errors().len()
                );
                return Err(if TRANSIENT.contains(&code) {
                    PortError::Transient {
                        operation: "s3:DeleteObjects".into(),
                        message,
                    }
                } else {
                    PortError::failed("s3:DeleteObjects", message)
                });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for S3 {
    fn object_url(&self, bucket: &str, key: &str) -> String {
        crate::ports::s3_object_url(&self.region, bucket, key)
    }

    async fn buckets_with_prefix(&self, prefix: &str) -> PortResult<Vec<BucketListing>> {
        let mut pages = self
            .client
            .list_buckets()
            .prefix(prefix)
            // ListBuckets lists every region's buckets; one in another region would answer
            // this client's HeadBucket with a redirect. Only this region's are envclone's here.
            .bucket_region(&self.region)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| port_error("s3:ListBuckets", "buckets", e))?;
            for b in page.buckets() {
                let Some(name) = b.name().filter(|n| n.starts_with(prefix)) else {
                    continue;
                };
                let created = b
                    .creation_date()
                    .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
                    .unwrap_or_else(chrono::Utc::now);
                out.push(BucketListing {
                    name: name.to_string(),
                    created,
                });
            }
        }
        Ok(out)
    }

    async fn bucket_tags(&self, bucket: &str) -> PortResult<Option<BTreeMap<String, String>>> {
        let what = format!("bucket {bucket}");
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => {}
            Err(e) => {
                return match port_error("s3:HeadBucket", &what, e) {
                    PortError::NotFound { .. } => Ok(None),
                    other => Err(other),
                }
            }
        }
        match self.client.get_bucket_tagging().bucket(bucket).send().await {
            Ok(out) => Ok(Some(
                out.tag_set()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect(),
            )),
            // NoSuchTagSet: a bucket without tags.
            Err(e) if e.code() == Some("NoSuchTagSet") => Ok(Some(BTreeMap::new())),
            Err(e) => Err(port_error("s3:GetBucketTagging", &what, e)),
        }
    }

    async fn create_bucket(&self, bucket: &str, tags: &BTreeMap<String, String>) -> PortResult<()> {
        use aws_sdk_s3::types::{
            BucketLocationConstraint, CreateBucketConfiguration, Tag, Tagging,
        };
        let what = format!("bucket {bucket}");
        let mut call = self.client.create_bucket().bucket(bucket);
        if self.region != "us-east-1" && !self.region.is_empty() {
            call = call.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        call.send()
            .await
            .map_err(|e| port_error("s3:CreateBucket", &what, e))?;
        let tag_set: Vec<Tag> = tags
            .iter()
            .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
            .collect();
        let tagging = Tagging::builder()
            .set_tag_set(Some(tag_set))
            .build()
            .map_err(|e| PortError::failed("s3:PutBucketTagging", e.to_string()))?;
        self.client
            .put_bucket_tagging()
            .bucket(bucket)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| port_error("s3:PutBucketTagging", &what, e))?;
        Ok(())
    }

    async fn copy_bucket_configuration(
        &self,
        source: &str,
        target: &str,
    ) -> PortResult<BucketConfigReport> {
        use aws_sdk_s3::types::{
            BucketLifecycleConfiguration, CorsConfiguration, MfaDeleteStatus, Tag, Tagging,
            VersioningConfiguration,
        };
        let c = &self.client;
        let mut r = BucketConfigReport::default();

        // Versioning first: lifecycle rules on noncurrent versions expect it.
        if let Some(out) = config_read(
            "s3:GetBucketVersioning",
            c.get_bucket_versioning().bucket(source).send().await,
            None,
            source,
            "versioning",
            &mut r,
        )? {
            // A bucket never versioned answers no Status.
            if let Some(status) = out.status() {
                let put = c
                    .put_bucket_versioning()
                    .bucket(target)
                    .versioning_configuration(
                        VersioningConfiguration::builder()
                            .status(status.clone())
                            .build(),
                    )
                    .send()
                    .await;
                config_written(
                    "s3:PutBucketVersioning",
                    put,
                    source,
                    target,
                    "versioning",
                    &mut r,
                )?;
            }
            // "MFA delete can be enabled only by the root user ... with its MFA device"
            // (S3 User Guide, "Configuring MFA delete").
            if out.mfa_delete() == Some(&MfaDeleteStatus::Enabled) {
                r.not_carried.push(format!(
                    "MFA delete: only {source}'s account root user with its MFA device can \
                     enable it; do so on {target} if the clone needs it"
                ));
            }
        }

        // Before the policy: the new bucket blocks public policies by default.
        if let Some(out) = config_read(
            "s3:GetPublicAccessBlock",
            c.get_public_access_block().bucket(source).send().await,
            Some("NoSuchPublicAccessBlockConfiguration"),
            source,
            "public access block",
            &mut r,
        )? {
            if let Some(block) = out.public_access_block_configuration() {
                let put = c
                    .put_public_access_block()
                    .bucket(target)
                    .public_access_block_configuration(block.clone())
                    .send()
                    .await;
                config_written(
                    "s3:PutPublicAccessBlock",
                    put,
                    source,
                    target,
                    "public access block",
                    &mut r,
                )?;
            }
        }

        if let Some(out) = config_read(
            "s3:GetBucketOwnershipControls",
            c.get_bucket_ownership_controls()
                .bucket(source)
                .send()
                .await,
            Some("OwnershipControlsNotFoundError"),
            source,
            "ownership controls",
            &mut r,
        )? {
            if let Some(controls) = out.ownership_controls() {
                let put = c
                    .put_bucket_ownership_controls()
                    .bucket(target)
                    .ownership_controls(controls.clone())
                    .send()
                    .await;
                config_written(
                    "s3:PutBucketOwnershipControls",
                    put,
                    source,
                    target,
                    "ownership controls",
                    &mut r,
                )?;
            }
        }

        if let Some(out) = config_read(
            "s3:GetBucketEncryption",
            c.get_bucket_encryption().bucket(source).send().await,
            Some("ServerSideEncryptionConfigurationNotFoundError"),
            source,
            "default encryption",
            &mut r,
        )? {
            if let Some(sse) = out.server_side_encryption_configuration() {
                let put = c
                    .put_bucket_encryption()
                    .bucket(target)
                    .server_side_encryption_configuration(sse.clone())
                    .send()
                    .await;
                config_written(
                    "s3:PutBucketEncryption",
                    put,
                    source,
                    target,
                    "default encryption",
                    &mut r,
                )?;
            }
        }

        if let Some(out) = config_read(
            "s3:GetBucketCors",
            c.get_bucket_cors().bucket(source).send().await,
            Some("NoSuchCORSConfiguration"),
            source,
            "CORS",
            &mut r,
        )? {
            if !out.cors_rules().is_empty() {
                let cors = CorsConfiguration::builder()
                    .set_cors_rules(Some(out.cors_rules().to_vec()))
                    .build()
                    .map_err(|e| PortError::failed("s3:PutBucketCors", e.to_string()))?;
                let put = c
                    .put_bucket_cors()
                    .bucket(target)
                    .cors_configuration(cors)
                    .send()
                    .await;
                config_written("s3:PutBucketCors", put, source, target, "CORS", &mut r)?;
            }
        }

        if let Some(out) = config_read(
            "s3:GetBucketLifecycleConfiguration",
            c.get_bucket_lifecycle_configuration()
                .bucket(source)
                .send()
                .await,
            Some("NoSuchLifecycleConfiguration"),
            source,
            "lifecycle",
            &mut r,
        )? {
            if !out.rules().is_empty() {
                let rules = BucketLifecycleConfiguration::builder()
                    .set_rules(Some(out.rules().to_vec()))
                    .build()
                    .map_err(|e| {
                        PortError::failed("s3:PutBucketLifecycleConfiguration", e.to_string())
                    })?;
                let put = c
                    .put_bucket_lifecycle_configuration()
                    .bucket(target)
                    .lifecycle_configuration(rules)
                    .set_transition_default_minimum_object_size(
                        out.transition_default_minimum_object_size().cloned(),
                    )
                    .send()
                    .await;
                config_written(
                    "s3:PutBucketLifecycleConfiguration",
                    put,
                    source,
                    target,
                    "lifecycle",
                    &mut r,
                )?;
            }
        }

        // The source's tags under the new bucket's own (envclone's, which win).
        let source_tags = match c.get_bucket_tagging().bucket(source).send().await {
            Ok(out) => out
                .tag_set()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
            Err(e) if e.code() == Some("NoSuchTagSet") => BTreeMap::new(),
            Err(e) => {
                return Err(port_error(
                    "s3:GetBucketTagging",
                    &format!("bucket {source}"),
                    e,
                ))
            }
        };
        if source_tags.keys().any(|k| !is_aws_reserved_tag(k)) {
            let own = self.bucket_tags(target).await?.unwrap_or_default();
            let tag_set = merged_bucket_tags(&source_tags, &own)
                .iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| PortError::failed("s3:PutBucketTagging", e.to_string()))?;
            let tagging = Tagging::builder()
                .set_tag_set(Some(tag_set))
                .build()
                .map_err(|e| PortError::failed("s3:PutBucketTagging", e.to_string()))?;
            let put = c
                .put_bucket_tagging()
                .bucket(target)
                .tagging(tagging)
                .send()
                .await;
            config_written("s3:PutBucketTagging", put, source, target, "tags", &mut r)?;
        }

        if let Some(out) = config_read(
            "s3:GetBucketPolicy",
            c.get_bucket_policy().bucket(source).send().await,
            Some("NoSuchBucketPolicy"),
            source,
            "bucket policy",
            &mut r,
        )? {
            if let Some(policy) = out.policy() {
                let put = c
                    .put_bucket_policy()
                    .bucket(target)
                    .policy(rewrite_bucket_policy(policy, source, target))
                    .send()
                    .await;
                config_written(
                    "s3:PutBucketPolicy",
                    put,
                    source,
                    target,
                    "bucket policy",
                    &mut r,
                )?;
            }
        }

        // These point at other resources (topics, queues, functions, destination buckets) of
        // the source's environment: not carried.
        if let Some(out) = config_read(
            "s3:GetBucketNotificationConfiguration",
            c.get_bucket_notification_configuration()
                .bucket(source)
                .send()
                .await,
            None,
            source,
            "event notifications",
            &mut r,
        )? {
            if !out.topic_configurations().is_empty()
                || !out.queue_configurations().is_empty()
                || !out.lambda_function_configurations().is_empty()
                || out.event_bridge_configuration().is_some()
            {
                r.not_carried.push(format!(
                    "event notifications: they send to topics, queues, functions or \
                     EventBridge of {source}'s environment; configure {target}'s own if the \
                     clone needs them"
                ));
            }
        }
        if let Some(out) = config_read(
            "s3:GetBucketReplication",
            c.get_bucket_replication().bucket(source).send().await,
            Some("ReplicationConfigurationNotFoundError"),
            source,
            "replication",
            &mut r,
        )? {
            if out.replication_configuration().is_some() {
                r.not_carried.push(format!(
                    "replication: it writes to {source}'s destination buckets; configure \
                     {target}'s own if the clone needs it"
                ));
            }
        }
        Ok(r)
    }

    async fn list_page_after(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<String>,
    ) -> PortResult<ListPage> {
        // RestoreStatus tells which archived objects have a restored copy (copyable).
        let mut call = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .max_keys(1000)
            .optional_object_attributes(aws_sdk_s3::types::OptionalObjectAttributes::RestoreStatus);
        if !prefix.is_empty() {
            call = call.prefix(prefix);
        }
        if let (Some(after), None) = (start_after, &token) {
            call = call.start_after(after);
        }
        let out = call
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| port_error("s3:ListObjectsV2", &format!("bucket {bucket}"), e))?;
        Ok(ListPage {
            objects: out
                .contents()
                .iter()
                .map(|o| ObjectSummary {
                    key: o.key().unwrap_or_default().to_string(),
                    size: o.size().unwrap_or_default().max(0) as u64,
                    etag: unquote(o.e_tag().unwrap_or_default()),
                    storage_class: o
                        .storage_class()
                        .map(|c| c.as_str().to_string())
                        .filter(|c| c != "STANDARD"),
                    // "If the object restoration has completed, [IsRestoreInProgress] returns
                    // the value FALSE ... If the object hasn't been restored, there is no
                    // header response" (S3 API Reference, RestoreStatus).
                    restored: o
                        .restore_status()
                        .is_some_and(|r| r.is_restore_in_progress() == Some(false)),
                    checksum_algorithm: o
                        .checksum_algorithm()
                        .first()
                        .map(|a| a.as_str().to_string()),
                })
                .collect(),
            next_token: if out.is_truncated() == Some(true) {
                out.next_continuation_token().map(str::to_string)
            } else {
                None
            },
        })
    }

    async fn head_object(
        &self,
        bucket: &str,
        key: &str,
        part_number: Option<u32>,
    ) -> PortResult<ObjectHead> {
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_part_number(part_number.map(|n| n as i32))
            // Without it HeadObject leaves the x-amz-checksum-* headers out ("Checking object
            // integrity"; HeadObject API, x-amz-checksum-mode). For an SSE-KMS object it needs
            // kms:Decrypt, which copying it needs anyway.
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| port_error("s3:HeadObject", &format!("s3://{bucket}/{key}"), e))?;
        let checksum = [
            ("CRC64NVME", out.checksum_crc64_nvme()),
            ("CRC32C", out.checksum_crc32_c()),
            ("CRC32", out.checksum_crc32()),
            ("SHA256", out.checksum_sha256()),
            ("SHA1", out.checksum_sha1()),
        ]
        .into_iter()
        .find_map(|(algorithm, value)| {
            value.map(|value| ObjectChecksum {
                algorithm: algorithm.to_string(),
                value: value.to_string(),
                full_object: out.checksum_type()
                    != Some(&aws_sdk_s3::types::ChecksumType::Composite)
                    && !value.contains('-'),
            })
        });
        Ok(ObjectHead {
            encryption: out.server_side_encryption().map(|a| ObjectEncryption {
                algorithm: a.as_str().to_string(),
                kms_key_id: out.ssekms_key_id().map(str::to_string),
                bucket_key: out.bucket_key_enabled() == Some(true),
            }),
            checksum,
            size: out.content_length().unwrap_or_default().max(0) as u64,
            etag: unquote(out.e_tag().unwrap_or_default()),
            content_type: out.content_type().map(str::to_string),
            content_encoding: out.content_encoding().map(str::to_string),
            content_disposition: out.content_disposition().map(str::to_string),
            content_language: out.content_language().map(str::to_string),
            cache_control: out.cache_control().map(str::to_string),
            storage_class: out
                .storage_class()
                .map(|c| c.as_str().to_string())
                .filter(|c| c != "STANDARD"),
            metadata: out
                .metadata()
                .map(|m| m.clone().into_iter().collect())
                .unwrap_or_default(),
            parts_count: out.parts_count().map(|n| n as u32),
        })
    }

    async fn object_tags(&self, bucket: &str, key: &str) -> PortResult<BTreeMap<String, String>> {
        let out = self
            .client
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| port_error("s3:GetObjectTagging", &format!("s3://{bucket}/{key}"), e))?;
        Ok(out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect())
    }

    async fn copy_object(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
        request: &CopyRequest,
    ) -> PortResult<CopiedObject> {
        use aws_sdk_s3::types::{
            ChecksumAlgorithm, MetadataDirective, ServerSideEncryption, StorageClass,
            TaggingDirective,
        };
        let encryption = request.encryption.as_ref();
        let out = self
            .client
            .copy_object()
            .bucket(dst_bucket)
            .key(dst_key)
            .copy_source(copy_source(src_bucket, src_key))
            .metadata_directive(MetadataDirective::Copy)
            .tagging_directive(TaggingDirective::Copy)
            .set_storage_class(request.storage_class.as_deref().map(StorageClass::from))
            // CopyObject API: x-amz-server-side-encryption, -aws-kms-key-id and
            // -bucket-key-enabled; without them the destination bucket's default applies.
            .set_server_side_encryption(
                encryption.map(|e| ServerSideEncryption::from(e.algorithm.as_str())),
            )
            .set_ssekms_key_id(encryption.and_then(|e| e.kms_key_id.clone()))
            .set_bucket_key_enabled(encryption.filter(|e| e.is_kms()).map(|e| e.bucket_key))
            // x-amz-checksum-algorithm: S3 computes the copy's checksum from the copied bytes.
            .set_checksum_algorithm(
                request
                    .checksum_algorithm
                    .as_deref()
                    .map(ChecksumAlgorithm::from),
            )
            .send()
            .await
            .map_err(|e| port_error("s3:CopyObject", &format!("s3://{src_bucket}/{src_key}"), e))?;
        Ok(CopiedObject {
            etag: unquote(
                out.copy_object_result()
                    .and_then(|r| r.e_tag())
                    .unwrap_or_default(),
            ),
            encryption: out.server_side_encryption().map(|a| ObjectEncryption {
                algorithm: a.as_str().to_string(),
                kms_key_id: out.ssekms_key_id().map(str::to_string),
                bucket_key: out.bucket_key_enabled() == Some(true),
            }),
        })
    }

    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        head: &ObjectHead,
        tags: &BTreeMap<String, String>,
    ) -> PortResult<String> {
        use aws_sdk_s3::types::StorageClass;
        let mut call = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .set_content_type(head.content_type.clone())
            .set_content_encoding(head.content_encoding.clone())
            .set_content_disposition(head.content_disposition.clone())
            .set_content_language(head.content_language.clone())
            .set_cache_control(head.cache_control.clone())
            .set_storage_class(head.storage_class.as_deref().map(StorageClass::from))
            .set_metadata(Some(head.metadata.clone().into_iter().collect()));
        if let Some(e) = &head.encryption {
            use aws_sdk_s3::types::ServerSideEncryption;
            call = call
                .server_side_encryption(ServerSideEncryption::from(e.algorithm.as_str()))
                .set_ssekms_key_id(e.kms_key_id.clone());
            if e.is_kms() {
                call = call.bucket_key_enabled(e.bucket_key);
            }
        }
        if let Some(c) = &head.checksum {
            // CreateMultipartUpload `ChecksumAlgorithm` and `ChecksumType`: each part then
            // carries a checksum of that algorithm, and the object a full-object one (the
            // checksum of the whole content) or a composite one (of the parts' checksums).
            use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumType};
            call = call
                .checksum_algorithm(ChecksumAlgorithm::from(c.algorithm.as_str()))
                .checksum_type(if c.full_object {
                    ChecksumType::FullObject
                } else {
                    ChecksumType::Composite
                });
        }
        if !tags.is_empty() {
            call = call.tagging(tagging_header(tags));
        }
        let out = call.send().await.map_err(|e| {
            port_error(
                "s3:CreateMultipartUpload",
                &format!("s3://{bucket}/{key}"),
                e,
            )
        })?;
        out.upload_id().map(str::to_string).ok_or_else(|| {
            PortError::failed("s3:CreateMultipartUpload", "no upload id in the answer")
        })
    }

    async fn upload_part_copy(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
        upload_id: &str,
        part: u32,
        first: u64,
        last: u64,
    ) -> PortResult<CopiedPart> {
        let out = self
            .client
            .upload_part_copy()
            .bucket(dst_bucket)
            .key(dst_key)
            .upload_id(upload_id)
            .part_number(part as i32)
            .copy_source(copy_source(src_bucket, src_key))
            .copy_source_range(format!("bytes={first}-{last}"))
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "s3:UploadPartCopy",
                    &format!("s3://{src_bucket}/{src_key} part {part}"),
                    e,
                )
            })?;
        let result = out.copy_part_result();
        // CopyPartResult carries the part's checksum of the upload's algorithm, if any.
        let checksum = result.and_then(|r| {
            [
                ("CRC64NVME", r.checksum_crc64_nvme()),
                ("CRC32C", r.checksum_crc32_c()),
                ("CRC32", r.checksum_crc32()),
                ("SHA256", r.checksum_sha256()),
                ("SHA1", r.checksum_sha1()),
            ]
            .into_iter()
            .find_map(|(a, v)| v.map(|v| (a.to_string(), v.to_string())))
        });
        Ok(CopiedPart {
            etag: unquote(result.and_then(|r| r.e_tag()).unwrap_or_default()),
            checksum,
        })
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        completed: &[CopiedPart],
    ) -> PortResult<String> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let parts = completed
            .iter()
            .enumerate()
            .map(|(i, part)| {
                let etag = &part.etag;
                let builder = CompletedPart::builder()
                    .part_number(i as i32 + 1)
                    .e_tag(format!("\"{etag}\""));
                // CompletedPart.ChecksumCRC64NVME etc.: the part's checksum, given back.
                let builder = match part.checksum.clone() {
                    Some((a, v)) => match a.as_str() {
                        "CRC64NVME" => builder.checksum_crc64_nvme(v),
                        "CRC32C" => builder.checksum_crc32_c(v),
                        "CRC32" => builder.checksum_crc32(v),
                        "SHA256" => builder.checksum_sha256(v),
                        _ => builder.checksum_sha1(v),
                    },
                    None => builder,
                };
                builder.build()
            })
            .collect();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "s3:CompleteMultipartUpload",
                    &format!("s3://{bucket}/{key}"),
                    e,
                )
            })?;
        Ok(unquote(out.e_tag().unwrap_or_default()))
    }

    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> PortResult<()> {
        self.client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "s3:AbortMultipartUpload",
                    &format!("s3://{bucket}/{key}"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn delete_objects(&self, bucket: &str, keys: &[String]) -> PortResult<()> {
        let ids: Vec<(&str, Option<&str>)> = keys.iter().map(|k| (k.as_str(), None)).collect();
        self.delete_identified(bucket, &ids).await
    }

    async fn list_versions_page(
        &self,
        bucket: &str,
        marker: Option<(String, String)>,
    ) -> PortResult<VersionPage> {
        let (key_marker, version_marker) = match marker {
            Some((k, v)) => (Some(k), Some(v)),
            None => (None, None),
        };
        let out = self
            .client
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker)
            .set_version_id_marker(version_marker)
            .send()
            .await
            .map_err(|e| port_error("s3:ListObjectVersions", &format!("bucket {bucket}"), e))?;
        let mut versions: Vec<ObjectVersion> = out
            .versions()
            .iter()
            .map(|v| ObjectVersion {
                key: v.key().unwrap_or_default().to_string(),
                version_id: v.version_id().unwrap_or("null").to_string(),
                delete_marker: false,
            })
            .chain(out.delete_markers().iter().map(|m| ObjectVersion {
                key: m.key().unwrap_or_default().to_string(),
                version_id: m.version_id().unwrap_or("null").to_string(),
                delete_marker: true,
            }))
            .collect();
        versions.sort_by(|a, b| a.key.cmp(&b.key));
        let next = match (out.is_truncated(), out.next_key_marker()) {
            (Some(true), Some(key)) => Some((
                key.to_string(),
                out.next_version_id_marker().unwrap_or_default().to_string(),
            )),
            _ => None,
        };
        Ok(VersionPage { versions, next })
    }

    async fn delete_versions(&self, bucket: &str, versions: &[ObjectVersion]) -> PortResult<()> {
        let ids: Vec<(&str, Option<&str>)> = versions
            .iter()
            .map(|v| (v.key.as_str(), Some(v.version_id.as_str())))
            .collect();
        self.delete_identified(bucket, &ids).await
    }

    async fn put_small_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        condition: Option<&str>,
    ) -> PortResult<String> {
        let what = format!("s3://{bucket}/{key}");
        let mut call = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .body(body.into());
        match condition {
            Some("*") => call = call.if_none_match("*"),
            Some(etag) => call = call.if_match(etag),
            None => {}
        }
        match call.send().await {
            Ok(out) => Ok(unquote(out.e_tag().unwrap_or_default())),
            Err(e) => Err(port_error("s3:PutObject", &what, e)),
        }
    }

    async fn get_small_object(&self, bucket: &str, key: &str) -> PortResult<Option<SmallObject>> {
        let what = format!("s3://{bucket}/{key}");
        match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let etag = unquote(out.e_tag().unwrap_or_default());
                // GetObject always answers with Last-Modified (Amazon S3 API Reference,
                // GetObject: "Date and time when the object was last modified").
                let last_modified = out
                    .last_modified()
                    .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
                    .ok_or_else(|| {
                        PortError::failed(
                            "s3:GetObject",
                            format!("{what}: the answer carries no Last-Modified"),
                        )
                    })?;
                let body = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| PortError::Transient {
                        operation: "s3:GetObject".into(),
                        message: e.to_string(),
                    })?
                    .into_bytes()
                    .to_vec();
                Ok(Some(SmallObject {
                    body,
                    etag,
                    last_modified,
                }))
            }
            Err(e) => match port_error("s3:GetObject", &what, e) {
                PortError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> PortResult<()> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| port_error("s3:DeleteObject", &format!("s3://{bucket}/{key}"), e))?;
        Ok(())
    }

    async fn delete_bucket(&self, bucket: &str) -> PortResult<()> {
        self.client
            .delete_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| port_error("s3:DeleteBucket", &format!("bucket {bucket}"), e))?;
        Ok(())
    }

    async fn content_md5(&self, bucket: &str, key: &str) -> PortResult<String> {
        use md5::{Digest, Md5};
        let what = format!("s3://{bucket}/{key}");
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| port_error("s3:GetObject", &what, e))?;
        let mut body = out.body;
        let mut hasher = Md5::new();
        while let Some(chunk) = body.try_next().await.map_err(|e| PortError::Transient {
            operation: "s3:GetObject".into(),
            message: e.to_string(),
        })? {
            hasher.update(&chunk);
        }
        Ok(format!("{:x}", hasher.finalize()))
    }
}

// ---------------------------------------------------------------- Route 53

pub struct Route53(aws_sdk_route53::Client);

fn dns_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with('.') {
        lower
    } else {
        format!("{lower}.")
    }
}

/// A record set as the workflow sees it, whole.
fn record_from_sdk(r: &aws_sdk_route53::types::ResourceRecordSet) -> DnsRecord {
    let routing = if let Some(w) = r.weight() {
        Some(Routing::Weighted { weight: w })
    } else if let Some(region) = r.region() {
        Some(Routing::Latency {
            region: region.as_str().to_string(),
        })
    } else if let Some(f) = r.failover() {
        Some(Routing::Failover {
            role: f.as_str().to_string(),
        })
    } else if r.multi_value_answer() == Some(true) {
        Some(Routing::MultiValue)
    } else if r.geo_location().is_some() {
        Some(Routing::Other {
            description: "geolocation".into(),
        })
    } else if r.geo_proximity_location().is_some() {
        Some(Routing::Other {
            description: "geoproximity".into(),
        })
    } else if r.cidr_routing_config().is_some() {
        Some(Routing::Other {
            description: "IP-based".into(),
        })
    } else {
        None
    };
    DnsRecord {
        name: r.name().to_string(),
        record_type: r.r#type().as_str().to_string(),
        values: r
            .resource_records()
            .iter()
            .map(|v| v.value().to_string())
            .collect(),
        ttl: r.ttl(),
        alias: r.alias_target().map(|a| AliasTarget {
            hosted_zone_id: a.hosted_zone_id().to_string(),
            dns_name: a.dns_name().to_string(),
            evaluate_target_health: a.evaluate_target_health(),
        }),
        set_identifier: r.set_identifier().map(str::to_string),
        routing,
        health_check_id: r.health_check_id().map(str::to_string),
    }
}

fn zone_from_sdk(z: &aws_sdk_route53::types::HostedZone) -> HostedZone {
    HostedZone {
        id: z.id().trim_start_matches("/hostedzone/").to_string(),
        name: dns_name(z.name()),
        private: z.config().is_some_and(|c| c.private_zone()),
    }
}

#[async_trait]
impl Dns for Route53 {
    async fn zones_named(&self, zone: &str) -> PortResult<Vec<HostedZone>> {
        // ListHostedZonesByName lists zones in name order from `dns_name` on: those with the
        // exact name (a public and private ones may share it) come first.
        let out = self
            .0
            .list_hosted_zones_by_name()
            .dns_name(zone)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "route53:ListHostedZonesByName",
                    &format!("hosted zone {zone}"),
                    e,
                )
            })?;
        Ok(out
            .hosted_zones()
            .iter()
            .filter(|z| dns_name(z.name()) == dns_name(zone))
            .map(zone_from_sdk)
            .collect())
    }

    async fn zone(&self, id: &str) -> PortResult<Option<HostedZone>> {
        match self.0.get_hosted_zone().id(id).send().await {
            Ok(out) => Ok(out.hosted_zone().map(zone_from_sdk)),
            Err(e) => match port_error("route53:GetHostedZone", &format!("hosted zone {id}"), e) {
                PortError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn records(&self, zone_id: &str, name: &str) -> PortResult<Vec<DnsRecord>> {
        // Records are listed in name order from `start_record_name`; a weighted or latency set
        // may span pages.
        let mut out = Vec::new();
        let (mut start_name, mut start_type, mut start_id) = (
            Some(dns_name(name)),
            None::<aws_sdk_route53::types::RrType>,
            None::<String>,
        );
        loop {
            let page = self
                .0
                .list_resource_record_sets()
                .hosted_zone_id(zone_id)
                .set_start_record_name(start_name.take())
                .set_start_record_type(start_type.take())
                .set_start_record_identifier(start_id.take())
                .send()
                .await
                .map_err(|e| {
                    port_error(
                        "route53:ListResourceRecordSets",
                        &format!("record {name} in hosted zone {zone_id}"),
                        e,
                    )
                })?;
            let mut past = false;
            for r in page.resource_record_sets() {
                if dns_name(r.name()) == dns_name(name) {
                    out.push(record_from_sdk(r));
                } else {
                    past = true;
                }
            }
            if past || !page.is_truncated() {
                return Ok(out);
            }
            start_name = page.next_record_name().map(str::to_string);
            start_type = page.next_record_type().cloned();
            start_id = page.next_record_identifier().map(str::to_string);
        }
    }

    async fn upsert(&self, zone_id: &str, record: &DnsRecord) -> PortResult<String> {
        use aws_sdk_route53::types::{
            AliasTarget as SdkAlias, Change, ChangeAction, ChangeBatch, ResourceRecord,
            ResourceRecordSet, ResourceRecordSetFailover, ResourceRecordSetRegion, RrType,
        };
        let op = "route53:ChangeResourceRecordSets";
        let build = |e: aws_sdk_route53::error::BuildError| PortError::failed(op, e.to_string());
        let mut set = ResourceRecordSet::builder()
            .name(&record.name)
            .r#type(RrType::from(record.record_type.as_str()))
            .set_ttl(record.ttl)
            .set_set_identifier(record.set_identifier.clone())
            .set_health_check_id(record.health_check_id.clone());
        for v in &record.values {
            set = set.resource_records(ResourceRecord::builder().value(v).build().map_err(build)?);
        }
        if let Some(a) = &record.alias {
            set = set.alias_target(
                SdkAlias::builder()
                    .hosted_zone_id(&a.hosted_zone_id)
                    .dns_name(&a.dns_name)
                    .evaluate_target_health(a.evaluate_target_health)
                    .build()
                    .map_err(build)?,
            );
        }
        set = match &record.routing {
            None => set,
            Some(Routing::Weighted { weight }) => set.weight(*weight),
            Some(Routing::Latency { region }) => {
                set.region(ResourceRecordSetRegion::from(region.as_str()))
            }
            Some(Routing::Failover { role }) => {
                set.failover(ResourceRecordSetFailover::from(role.as_str()))
            }
            Some(Routing::MultiValue) => set.multi_value_answer(true),
            Some(Routing::Other { description }) => {
                return Err(PortError::failed(
                    op,
                    format!("{description} routing is not written by envclone"),
                ))
            }
        };
        let change = Change::builder()
            .action(ChangeAction::Upsert)
            .resource_record_set(set.build().map_err(build)?)
            .build()
            .map_err(build)?;
        let out = self
            .0
            .change_resource_record_sets()
            .hosted_zone_id(zone_id)
            .change_batch(
                ChangeBatch::builder()
                    .changes(change)
                    .comment("envclone migrate")
                    .build()
                    .map_err(build)?,
            )
            .send()
            .await
            .map_err(|e| port_error(op, &format!("record {}", record.name), e))?;
        Ok(out
            .change_info()
            .map(|c| c.id().to_string())
            .unwrap_or_default())
    }

    async fn change_in_sync(&self, change_id: &str) -> PortResult<bool> {
        use aws_sdk_route53::types::ChangeStatus;
        let out = self
            .0
            .get_change()
            .id(change_id)
            .send()
            .await
            .map_err(|e| port_error("route53:GetChange", &format!("change {change_id}"), e))?;
        Ok(out
            .change_info()
            .map(|c| c.status() == &ChangeStatus::Insync)
            .unwrap_or(false))
    }
}

// ---------------------------------------------------------------- HTTP

pub struct Http(reqwest::Client);

#[async_trait]
impl HttpProbe for Http {
    async fn get_status(&self, url: &str) -> PortResult<u16> {
        let response = self
            .0
            .get(url)
            .send()
            .await
            .map_err(|e| PortError::Transient {
                operation: "http:GET".into(),
                message: format!("{url}: {e}"),
            })?;
        Ok(response.status().as_u16())
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
