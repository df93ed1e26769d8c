//! The clone plan: every name and parameter of a clone, decided before the first change.
//!
//! The plan's types, below the resource kinds that read them (`ClonePlan`, `DatabasePlan`,
//! `BucketPlan` and its `BatchCopy`, the classification `Inventory`): `planner.rs` builds a
//! plan (`build_plan`, a pure function of the request, the source as observed, and the target
//! template) and asks the kinds for its steps; the engine's preflight gathers the observations
//! and then checks the plan's names against AWS (free, valid) — all before any change.

use std::collections::BTreeMap;
use std::time::Duration;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::contract::{Contract, CopyOnWriteParameters, Template};
use crate::model::{EnvName, RunId};
use crate::ports::{DbKind, StackInfo, StackResource};
use crate::s3batch::{self, BatchRequest};
use crate::s3sync::{BucketPath, SyncOptions};

/// What a successful clone does with the source's Standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandbyAfter {
    /// Return the source to service (clone).
    Exit,
    /// Keep it out of service (migrate: the swap comes next).
    Keep,
}

/// A clone as the user asked for it, validated for form.
#[derive(Debug, Clone)]
pub struct CloneRequest {
    pub source: String,
    pub target: EnvName,
    /// The target's template (path and body); None means the source's own.
    pub template: Option<(String, String)>,
    pub parameter_overrides: BTreeMap<String, String>,
    pub standby: bool,
    /// Parameters the source left at its own template's default take the target template's
    /// default instead of the source's value (migrate onto a new template version).
    pub reset_defaults: bool,
    /// The `envclone:environment` tag of the clone, when it is not the target's name (a
    /// migrate's clone will become the environment itself).
    pub environment_tag: Option<String>,
    /// Experiment environments: who owns it and when `envclone gc` may remove it.
    pub owner: Option<String>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `envclone.toml`: hooks and contracts the template does not carry.
    pub config: std::sync::Arc<crate::config::Config>,
}

/// The source environment as observed.
#[derive(Debug, Clone)]
pub struct SourceEnv {
    pub env_name: String,
    pub stack: StackInfo,
    pub template: Template,
    pub resources: Vec<StackResource>,
    /// The resources of its nested stacks, at any depth.
    pub nested: Vec<NestedResource>,
}

/// `AWS::CloudFormation::Stack`: a nested stack, created from its `TemplateURL`.
pub const NESTED_STACK: &str = "AWS::CloudFormation::Stack";

/// A resource of a nested stack of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestedResource {
    /// The logical ids of the nested stacks it is in, outermost first (`Data/Cache`).
    pub nested_stack: String,
    /// The stack id of the nested stack that holds it.
    pub nested_stack_id: String,
    pub resource: StackResource,
}

impl SourceEnv {
    pub fn physical_id(&self, logical_id: &str) -> Option<&str> {
        self.resources
            .iter()
            .find(|r| r.logical_id == logical_id)
            .and_then(|r| r.physical_id.as_deref())
    }

    /// The bucket of a contract bucket passed by `parameter`: the parameter's value when set;
    /// otherwise the bucket the stack owns under `logical_id` (the common `Condition:` pattern:
    /// production creates its own bucket when the parameter is empty, a clone gets an
    /// envclone-made one passed in — so it can be pre-copied before Standby).
    pub fn bucket_by_parameter(&self, logical_id: &str, parameter: &str) -> Option<&str> {
        self.stack
            .parameters
            .get(parameter)
            .filter(|v| !v.is_empty())
            .map(String::as_str)
            .or_else(|| self.physical_id(logical_id))
    }

    /// `arn:aws:cloudformation:REGION:ACCOUNT:stack/NAME/ID` → (account, region).
    pub fn account_and_region(&self) -> (String, String) {
        let parts: Vec<&str> = self.stack.id.split(':').collect();
        if parts.len() >= 5 {
            (parts[4].to_string(), parts[3].to_string())
        } else {
            ("123456789012".to_string(), "us-east-1".to_string())
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DatabasePlan {
    pub logical_id: String,
    /// The source's DB instance identifier, or its DB cluster identifier (`kind`).
    pub source_instance: String,
    /// The snapshot envclone takes (for a cluster: only when it cannot clone it copy-on-write).
    pub snapshot_id: String,
    pub snapshot_parameter: String,
    /// The identifier the clone stack will give its database, where the template fixes it.
    pub target_instance: Option<String>,
    #[serde(default)]
    pub kind: DbKind,
    /// A cluster the template can create as a copy-on-write clone of the source.
    #[serde(default)]
    pub copy_on_write: Option<CopyOnWriteParameters>,
    /// The identifiers the clone stack gives a cluster's instances, where the template fixes
    /// them.
    #[serde(default)]
    pub target_members: Vec<String>,
    /// Restored by the stack to the run's T from the source (point-in-time restore): no
    /// snapshot, not in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_in_time: Option<crate::contract::PointInTimeParameters>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BucketTarget {
    /// envclone creates this bucket and passes its name in `parameter`.
    Created { name: String, parameter: String },
    /// The clone stack creates it; its name is known once it exists (or now, if fixed).
    StackOwned { predicted_name: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BucketPlan {
    pub logical_id: String,
    pub source_bucket: String,
    pub target: BucketTarget,
    /// Copied by S3 Batch Operations jobs (set at preflight); None: by the local engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchCopy>,
    /// The source keeps versions (GetBucketVersioning `Enabled`, read at preflight): a clone
    /// copies it as of T after the source serves again, so it does not hold the window.
    #[serde(default)]
    pub versioned: bool,
}

/// Where a run puts a template too large for CreateStack's `TemplateBody` (51,200 bytes), so
/// CloudFormation reads it from S3 (`TemplateURL`, up to 1 MB).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TemplateStaging {
    pub bucket: String,
    pub key: String,
    /// The run creates `bucket` for this (tagged with the run, removed with it); false: the
    /// `--state` bucket, where only the object is the run's.
    pub own_bucket: bool,
}

/// Name prefix of the buckets runs create to stage templates: `envclone-tpl-<account>-<run>`.
pub const STAGING_BUCKET_PREFIX: &str = "envclone-tpl-";
/// Tag of a template staging bucket (besides the run's tags).
pub const TAG_PURPOSE: &str = "envclone:purpose";
pub const PURPOSE_TEMPLATE_STAGING: &str = "template-staging";
/// Where the clone gets the value of a NoEcho parameter. CloudFormation never reveals a NoEcho
/// value (DescribeStacks shows `****`), so the source's value can never be copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum NoEchoValue {
    /// `--parameter NAME=VALUE`.
    Given,
    /// The source's value, readable because the source's template does not declare it NoEcho.
    Source,
    /// The template's default, listed in the contract's `noecho_defaults`. A default that is a
    /// dynamic reference is resolved by CloudFormation when the clone stack is created.
    ContractDefault { dynamic_reference: Option<String> },
    /// The template's default, and no resource or output the clone creates uses it (e.g. a
    /// master password under `!If [HasSnapshot, !Ref "AWS::NoValue", …]`).
    Unused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct NoEchoParameter {
    pub name: String,
    #[serde(flatten)]
    pub value: NoEchoValue,
}

impl std::fmt::Display for NoEchoParameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = &self.name;
        match &self.value {
            NoEchoValue::Given => write!(f, "{name} from --parameter"),
            NoEchoValue::Source => write!(f, "{name} from the source (not NoEcho there)"),
            NoEchoValue::ContractDefault {
                dynamic_reference: Some(r),
            } => write!(
                f,
                "{name} takes its default (noecho_defaults), the dynamic reference {r}, which \
                 CloudFormation resolves in the resource properties it reaches (not in EC2 \
                 UserData or AWS::CloudFormation::Init, which take it literally)"
            ),
            NoEchoValue::ContractDefault {
                dynamic_reference: None,
            } => write!(f, "{name} takes its default (noecho_defaults)"),
            NoEchoValue::Unused => write!(
                f,
                "{name} takes its default, unused by the clone (every use is under a condition \
                 the clone does not take)"
            ),
        }
    }
}

/// A NoEcho parameter the clone would use without knowing its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiddenParameter {
    pub name: String,
    pub default: Option<String>,
}

impl std::fmt::Display for HiddenParameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = &self.name;
        match self.default.as_deref() {
            None => write!(f, "{name} (no default): pass --parameter {name}=VALUE"),
            Some(d) if dynamic_reference(d).is_some() => write!(
                f,
                "{name} (its default is the dynamic reference {d}: if the source took its \
                 default, the clone resolves the same reference; then list it in \
                 noecho_defaults, else pass --parameter {name}=VALUE)"
            ),
            Some(_) => write!(
                f,
                "{name} (the clone would get the template's default, not the source's value): \
                 pass --parameter {name}=VALUE, or list it in noecho_defaults if the default is \
                 right for a clone"
            ),
        }
    }
}

/// `value` when it is a whole dynamic reference (`{{resolve:ssm:…}}`, `ssm-secure`,
/// `secretsmanager`): CloudFormation resolves it in the resource property the parameter reaches,
/// except EC2 `UserData` and `AWS::CloudFormation::Init` metadata ("Get values stored in other
/// services using dynamic references", general considerations). Whether the source's masked
/// value was that default cannot be read back, so it is never taken without `noecho_defaults`.
pub(super) fn dynamic_reference(value: &str) -> Option<&str> {
    let v = value.trim();
    let inner = v.strip_prefix("{{resolve:")?.strip_suffix("}}")?;
    ["ssm:", "ssm-secure:", "secretsmanager:"]
        .iter()
        .any(|p| inner.starts_with(p))
        .then_some(v)
}

#[derive(Debug, Clone, Serialize)]
pub struct ClonePlan {
    pub run_id: RunId,
    pub source_env: String,
    pub source_stack: String,
    pub target_env: EnvName,
    pub target_stack: String,
    #[serde(skip)]
    pub template: Template,
    #[serde(skip)]
    pub contract: Contract,
    /// Parameters of the clone stack, snapshot parameters included. NoEcho values are passed
    /// through but never shown: see `display_parameters`.
    #[serde(skip)]
    pub parameters: BTreeMap<String, String>,
    pub databases: Vec<DatabasePlan>,
    pub buckets: Vec<BucketPlan>,
    pub scaling_groups: Vec<String>,
    pub standby: bool,
    pub tags: BTreeMap<String, String>,
    pub capabilities: Vec<String>,
    /// Hooks from `envclone.toml` (already in `contract.hooks`), kept in the run's record.
    #[serde(skip)]
    pub extra_hooks: crate::contract::Hooks,
    /// `--skip-archived`: archived objects are left out of the bucket copies (the preflight
    /// found `archived`).
    pub skip_archived: bool,
    /// Archived objects of the source buckets, per bucket that has any (found by preflight).
    pub archived: Vec<crate::s3sync::ArchivedObjects>,
    /// Set when the template is over CreateStack's `TemplateBody` limit (preflight decides).
    pub template_staging: Option<TemplateStaging>,
    /// Where each NoEcho parameter of the target template gets its value.
    pub noecho: Vec<NoEchoParameter>,
    /// What the clone stack creates, classified: copied, or created empty (`inventory`).
    pub inventory: Inventory,
}

pub const MASK: &str = "****";

impl ClonePlan {
    /// The parameters with NoEcho values masked, for printing and the journal.
    pub fn display_parameters(&self) -> BTreeMap<String, String> {
        let decls = self.template.parameters();
        self.parameters
            .iter()
            .map(|(k, v)| {
                let secret = decls.get(k).is_some_and(|d| d.no_echo);
                (k.clone(), if secret { MASK.to_string() } else { v.clone() })
            })
            .collect()
    }

    /// What a bucket copy leaves out: older versions and delete markers always (current
    /// versions only), and the archived objects preflight found when `--skip-archived`.
    pub fn copy_note(&self, b: &BucketPlan) -> String {
        let source_bucket = b.source_bucket.as_str();
        // A source that keeps versions is copied as it was at T (the newest version of each
        // key at or before T) once the source is quiet; either way only one version per key.
        let mut note = if b.versioned && self.standby {
            "; each object as it was at T (its newest version at or before T), not its older \
             versions"
                .to_string()
        } else {
            "; current versions only".to_string()
        };
        if let Some(a) = self.archived.iter().find(|a| a.bucket == source_bucket) {
            note.push_str(&format!(
                "; leaving out {} archived object(s), {} bytes (--skip-archived)",
                a.count, a.bytes
            ));
        }
        note
    }
}

/// A bucket of the plan copied by S3 Batch Operations: what its jobs are given (recorded with
/// the plan, so a resume and an abort use the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCopy {
    pub role_arn: String,
    pub reports_bucket: String,
    pub reports_prefix: String,
    pub priority: i32,
    pub copy_limit: u64,
    /// Why this bucket is copied by a job (`--engine batch`, or its contract entry).
    pub chosen_by: String,
    /// Where its jobs' manifest comes from (`manifest: inventory` in its contract entry: the
    /// source's latest S3 Inventory report).
    #[serde(default)]
    pub manifest: crate::s3batch::ManifestSource,
}

impl BatchCopy {
    fn reports(&self) -> BucketPath {
        BucketPath {
            bucket: self.reports_bucket.clone(),
            prefix: self.reports_prefix.clone(),
        }
    }

    /// The request of `s3batch::run` for the copy of `source` into `target` of run `run_id`.
    pub fn request(
        &self,
        run_id: &str,
        logical_id: &str,
        (source, target): (&str, &str),
        options: SyncOptions,
        poll: Duration,
    ) -> BatchRequest {
        BatchRequest {
            source: BucketPath::bucket(source),
            target: BucketPath::bucket(target),
            options,
            role_arn: self.role_arn.clone(),
            reports: self.reports(),
            priority: self.priority,
            copy_limit: self.copy_limit,
            poll,
            token_stem: Some(token_stem(run_id, logical_id)),
            manifest: self.manifest,
        }
    }

    /// The plan's words for the job a copy creates.
    pub fn plan_note(&self, run_id: &str, logical_id: &str) -> String {
        let stem = token_stem(run_id, logical_id);
        let dir = format!(
            "s3://{}/{}envclone-batch/{stem}-N",
            self.reports_bucket, self.reports_prefix
        );
        let manifest = match self.manifest {
            s3batch::ManifestSource::Diff => {
                format!("S3PutObjectCopy of the objects that differ, manifest {dir}/manifest.csv")
            }
            s3batch::ManifestSource::Inventory => "S3PutObjectCopy of the objects the source's \
                 latest S3 Inventory report lists, manifest that report's manifest.json (what \
                 was written since it was taken is copied by envclone after the job)"
                .to_string(),
        };
        format!(
            "; by an S3 Batch Operations job ({}): {manifest}, role {}, priority {}, completion \
             report of the failed tasks under {dir}/report, client token {stem}-N (N = 1 for the first job of the \
             bucket); the failed keys and the objects over {} bytes are copied by envclone, then \
             the bucket is verified object for object",
            self.chosen_by, self.role_arn, self.priority, self.copy_limit
        )
    }
}

/// The stem of the client tokens of a run's jobs for one bucket: the run id and a hash of
/// the bucket's logical id (CreateJob's ClientToken is at most 64 characters).
pub fn token_stem(run_id: &str, logical_id: &str) -> String {
    let digest = Md5::digest(logical_id.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let stem = format!("envclone-{run_id}-{hash}");
    debug_assert!(stem.len() + 11 <= s3batch::CLIENT_TOKEN_MAX);
    stem
}

/// A resource the clone creates without its data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Uncovered {
    pub logical_id: String,
    pub resource_type: String,
    /// What the clone's lacks.
    pub loses: String,
}

impl std::fmt::Display for Uncovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: the clone's would start without {}",
            self.resource_type, self.logical_id, self.loses
        )
    }
}

/// A stateful resource the contract's `ignore:` accepts creating empty.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ignored {
    pub logical_id: String,
    pub resource_type: String,
    pub reason: String,
}

/// The classification of the resources a clone creates.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Inventory {
    pub copied: Vec<String>,
    /// Logical ids of the stateless resources, created empty by design.
    pub stateless: Vec<String>,
    /// Not covered and listed under `ignore:`: created empty, with the operator's reason.
    pub ignored: Vec<Ignored>,
    /// Not covered and not ignored: the clone is refused.
    pub uncovered: Vec<Uncovered>,
}

impl Inventory {
    /// What the clone stack creates empty, for the plan and the report: the stateless
    /// resources (by count) and the ignored ones (each by name, with its reason).
    pub fn created_empty(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.stateless.is_empty() {
            out.push(format!(
                "created empty by design: {} stateless resource(s) the template alone defines \
                 (networking, IAM, load balancing, launch templates…)",
                self.stateless.len()
            ));
        }
        for i in &self.ignored {
            out.push(format!(
                "created EMPTY, not copied: {} {} (contract ignore: {})",
                i.resource_type, i.logical_id, i.reason
            ));
        }
        out
    }
}
