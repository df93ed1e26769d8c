//! The clone workflow: plan, preflight, execution, verification, and the errors of each.
//!
//! Plain Rust over the `ports` traits; no AWS SDK type appears here.

pub mod batchcopy;
pub mod clone;
pub mod deletion;
pub mod dynamodb;
pub mod engine;
pub mod entry_dns;
pub mod experiments;
pub mod fixednames;
pub mod inventory;
pub mod migrate;
pub mod ops;
pub mod plan;
pub mod planner;
pub mod record;
pub mod recovery;
pub mod refs;
pub mod resource;
pub mod resources;
pub mod swap;
pub mod swapcheck;
pub mod window;

use thiserror::Error;

use crate::contract::ContractError;
use crate::model::NameError;
use crate::ports::{PortError, TEMPLATE_BODY_MAX, TEMPLATE_URL_MAX};
use crate::retry::WaitError;
use crate::s3sync::SyncError;

/// Why a database with changes waiting is not renamed: the swap's rename is a ModifyDBInstance
/// (ModifyDBCluster) with ApplyImmediately, which applies "the modifications in this request
/// and any pending modifications" (ModifyDBInstance, `ApplyImmediately`), and an instance
/// "will be rebooted when it's renamed", which applies parameters `pending-reboot`; `abort`
/// renames it back but cannot take those changes back.
pub fn pending_changes_refusal(id: &str, changes: &[String]) -> String {
    format!(
        "database {id} has changes waiting to be applied ({}); migrate's rename would apply them \
         at once (ApplyImmediately, and the reboot of a rename), and abort could not undo them; \
         apply them first (in a maintenance window, or with ApplyImmediately and a reboot) or \
         modify them back, then migrate",
        changes.join(", ")
    )
}

/// Problems found before any change. Every one of them means: nothing was changed.
#[derive(Debug, Error)]
pub enum PreflightError {
    #[error(transparent)]
    Contract(#[from] ContractError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(
        "the template of the clone is {size} bytes; CloudFormation takes at most \
         {TEMPLATE_URL_MAX} bytes from S3 (TemplateURL; {TEMPLATE_BODY_MAX} in a request) \
         (\"CloudFormation quotas\"); nothing was changed. Make it smaller (remove comments, \
         move parts into nested stacks)"
    )]
    TemplateTooLarge { size: usize },
    #[error(
        "environment {name:?} not found: no stack of that name and none tagged \
         envclone:environment={name}; check the name and --region"
    )]
    UnknownSource { name: String },
    #[error(
        "environment {name:?} is ambiguous: stacks {stacks:?} are all tagged \
         envclone:environment={name}; use the stack name instead"
    )]
    AmbiguousSource { name: String, stacks: Vec<String> },
    #[error("source stack {stack} is {status}, not CREATE_COMPLETE or UPDATE_COMPLETE; wait for it to settle or repair it first")]
    SourceNotReady { stack: String, status: String },
    #[error("the target {target:?} is the source itself; choose another target name")]
    TargetIsSource { target: String },
    #[error("the target {what} already exists; choose another target name or remove it first")]
    TargetExists { what: String },
    #[error(
        "--parameter {key}: the template {template} has no such parameter; known parameters: {}",
        known.join(", ")
    )]
    UnknownParameter {
        key: String,
        template: String,
        known: Vec<String>,
    },
    #[error(
        "parameter {name} of {template} has no default and the source does not set it; \
         pass --parameter {name}=VALUE"
    )]
    MissingParameter { name: String, template: String },
    #[error(
        "{} NoEcho parameter(s) of {template} would not carry over: CloudFormation never \
         reveals the source's values (DescribeStacks shows ****) and the clone stack uses them, \
         so its application would not get the credentials of the database restored from the \
         source — {}",
        parameters.len(),
        parameters.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    SecretParameters {
        template: String,
        parameters: Vec<plan::HiddenParameter>,
    },
    #[error("stack {stack} has no resource {logical_id}, which the contract names; the template and the stack disagree — update the stack or fix the contract")]
    SourceResourceMissing { stack: String, logical_id: String },
    #[error("stack {stack} passes no bucket in parameter {parameter} and owns no bucket {logical_id} (contract bucket {logical_id}); set the parameter on the source, or remove the bucket from the contract")]
    BucketParameterEmpty {
        stack: String,
        logical_id: String,
        parameter: String,
    },
    #[error("{what} does not exist; the source stack refers to it — repair the source first")]
    SourceMissing { what: String },
    #[error("database {id} is {status}, not available; snapshots need an available instance — wait for it or fix it")]
    DatabaseNotAvailable {
        id: String,
        status: crate::ports::DbStatus,
    },
    #[error(
        "environment {env} has a migration swapped but not finalized (run {run_id}; database \
         {database} carries envclone:open-migration): finish it with `envclone finalize {run_id}` \
         or undo it with `envclone abort {run_id}`, then run this again"
    )]
    OpenMigration {
        env: String,
        run_id: String,
        database: String,
    },
    #[error("{what}")]
    Unsupported { what: String },
    #[error("{}", pending_changes_refusal(id, changes))]
    PendingChanges { id: String, changes: Vec<String> },
    #[error(
        "S3 cannot copy archived objects without a restore (CopyObject answers \
         InvalidObjectState for S3 Glacier Flexible Retrieval and Deep Archive): {}; nothing \
         was changed. Restore them first (RestoreObject), or pass --skip-archived to leave them \
         out of the copy (the report lists them)",
        found.iter().map(|a| a.to_string()).collect::<Vec<_>>().join("; ")
    )]
    ArchivedObjects {
        found: Vec<crate::s3sync::ArchivedObjects>,
    },
    #[error(
        "stack {target_stack} would create {} resource(s) under names stack {source_stack} already uses \
         (CloudFormation would fail them with AlreadyExists, or a record set or inline policy \
         would pass from one stack to the other); nothing was changed:\n{}",
        collisions.len(),
        collisions.iter().map(|c| format!("  - {c}")).collect::<Vec<_>>().join("\n")
    )]
    FixedNames {
        source_stack: String,
        target_stack: String,
        collisions: Vec<fixednames::NameCollision>,
    },
    #[error(
        "the clone stack from {template} would create {} resource(s) holding state that envclone \
         does not copy; nothing was changed:\n{}\nFor each: cover it (an RDS database, an S3 \
         bucket or a DynamoDB table: list it under databases, buckets or tables in the contract), \
         or, where starting empty is right (never for one the contract already lists), list it \
         under `ignore:` in Metadata.envclone (or in [environments.<name>.contract] of \
         envclone.toml) with the reason, e.g. `ignore: {{ {}: {{ reason: \"...\" }} }}`",
        resources.len(),
        resources.iter().map(|r| format!("  - {r}")).collect::<Vec<_>>().join("\n"),
        resources.first().map_or("LogicalId", |r| r.logical_id.as_str())
    )]
    Uncovered {
        template: String,
        resources: Vec<inventory::Uncovered>,
    },
    #[error("reading the source failed: {0}; nothing was changed")]
    Aws(#[from] PortError),
}

/// A failure once changes have started.
#[derive(Debug, Error)]
pub enum StepError {
    #[error("{step}: {source}")]
    Port {
        step: String,
        #[source]
        source: PortError,
    },
    #[error("{step}: {source}")]
    Wait {
        step: String,
        #[source]
        source: Box<WaitError>,
    },
    #[error("{step}: {source}")]
    Sync {
        step: String,
        #[source]
        source: Box<SyncError>,
    },
    #[error("verification failed: {0}")]
    Verification(String),
    #[error("interrupted (Ctrl-C) during {step}")]
    Interrupted { step: String },
    #[error("{step}: {message}")]
    Refused { step: String, message: String },
    #[error(
        "{step}: the deadline {deadline} has passed (or leaves no time to swap); stopped before \
         the swap, the source is back in service — start again in the next window"
    )]
    Deadline { step: String, deadline: String },
}

impl StepError {
    pub fn port(step: &str) -> impl FnOnce(PortError) -> StepError + '_ {
        move |source| StepError::Port {
            step: step.to_string(),
            source,
        }
    }
    pub fn wait(step: &str) -> impl FnOnce(WaitError) -> StepError + '_ {
        move |source| StepError::Wait {
            step: step.to_string(),
            source: Box::new(source),
        }
    }
    pub fn sync(step: &str) -> impl FnOnce(SyncError) -> StepError + '_ {
        move |source| StepError::Sync {
            step: step.to_string(),
            source: Box::new(source),
        }
    }
}
