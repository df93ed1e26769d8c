//! The clone plan: every name and parameter of a clone, decided before the first change.
//!
//! `build_plan` is a pure function of the request, the source as observed, and the target
//! template; the engine's preflight gathers the observations and then checks the plan's names
//! against AWS (free, valid) — all before any change.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::contract::{BucketSpec, Contract, CopyOnWriteParameters, Template, ASG};
use crate::model::{
    self, EnvName, RunId, TAG_ENVIRONMENT, TAG_EXPIRES_AT, TAG_OWNER, TAG_RUN, TAG_SOURCE,
};
use crate::ports::{DbKind, StackInfo, StackResource};
use crate::template_eval::Evaluator;

use super::PreflightError;

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
}

impl SourceEnv {
    pub fn physical_id(&self, logical_id: &str) -> Option<&str> {
        self.resources
            .iter()
            .find(|r| r.logical_id == logical_id)
            .and_then(|r| r.physical_id.as_deref())
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
    fn copy_note(&self, source_bucket: &str) -> String {
        let mut note = "; current versions only".to_string();
        if let Some(a) = self.archived.iter().find(|a| a.bucket == source_bucket) {
            note.push_str(&format!(
                "; leaving out {} archived object(s), {} bytes (--skip-archived)",
                a.count, a.bytes
            ));
        }
        note
    }

    /// The steps in order, with the real names, for `plan clone` and `--dry-run`.
    pub fn steps(&self) -> Vec<String> {
        let mut steps = Vec::new();
        if self.standby {
            for g in &self.scaling_groups {
                steps.push(format!(
                    "put the InService instances of Auto Scaling group {g} into Standby \
                     (they keep running, leave the load balancer, and are not replaced)"
                ));
            }
        } else {
            steps.push(
                "no Standby (--no-standby): the source keeps serving; the copy is crash-consistent"
                    .to_string(),
            );
        }
        for b in &self.buckets {
            if let BucketTarget::Created { name, .. } = &b.target {
                steps.push(format!(
                    "create bucket {name} (tagged envclone:run={})",
                    self.run_id
                ));
            }
        }
        let mut parallel = Vec::new();
        for d in &self.databases {
            parallel.push(match (d.kind, &d.copy_on_write) {
                (DbKind::Instance, _) => format!(
                    "snapshot database {} as {}",
                    d.source_instance, d.snapshot_id
                ),
                (DbKind::Cluster, Some(_)) => format!(
                    "copy-on-write clone point of Aurora cluster {}: wait until its latest \
                     restorable time passes the start of Standby (the stack clones it there); \
                     where the cluster cannot be cloned, snapshot it as {}",
                    d.source_instance, d.snapshot_id
                ),
                (DbKind::Cluster, None) => format!(
                    "snapshot Aurora cluster {} as {} (the template takes no copy-on-write clone)",
                    d.source_instance, d.snapshot_id
                ),
            });
        }
        for b in &self.buckets {
            if let BucketTarget::Created { name, .. } = &b.target {
                parallel.push(format!(
                    "copy the objects of bucket {} into {name} (server-side{})",
                    b.source_bucket,
                    self.copy_note(&b.source_bucket)
                ));
            }
        }
        if !parallel.is_empty() {
            steps.push(format!("in parallel: {}", parallel.join("; ")));
        }
        steps.push(format!(
            "create stack {} from {} with {}",
            self.target_stack,
            self.template.origin,
            self.display_parameters()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for b in &self.buckets {
            if let BucketTarget::StackOwned { predicted_name } = &b.target {
                steps.push(format!(
                    "as soon as the stack has created {} ({}), copy the objects of bucket {} \
                     into it (server-side{})",
                    b.logical_id,
                    predicted_name
                        .as_deref()
                        .unwrap_or("name chosen by CloudFormation"),
                    b.source_bucket,
                    self.copy_note(&b.source_bucket)
                ));
            }
        }
        steps.push(format!(
            "verify {}: stack complete, databases available, buckets object-for-object equal, \
             instances in service{}",
            self.target_stack,
            if self.contract.verify.is_empty() {
                String::new()
            } else {
                ", the template's HTTP checks".to_string()
            }
        ));
        if self.standby && !self.scaling_groups.is_empty() {
            steps.push(format!(
                "return the instances of {} to service (also on every failure)",
                self.scaling_groups.join(", ")
            ));
        }
        steps
    }
}

/// Builds the plan from what preflight observed. Pure: no AWS call.
pub fn build_plan(
    request: &CloneRequest,
    source: &SourceEnv,
    target_template: Template,
    run_id: RunId,
) -> Result<ClonePlan, PreflightError> {
    let names = [
        request.source.as_str(),
        source.env_name.as_str(),
        source.stack.name.as_str(),
    ];
    let target_template = request.config.apply(&names, target_template)?;
    if target_template.body.len() > super::CLOUDFORMATION_BODY_LIMIT {
        return Err(PreflightError::TemplateTooLarge {
            size: target_template.body.len(),
        });
    }
    let mut contract = Contract::from_template(&target_template)?;
    let extra_hooks = request.config.hooks(&names);
    contract.hooks.append(&extra_hooks);
    let target_stack = request.target.as_str().to_string();
    model::check_stack_name(&target_stack)?;
    if request.target.as_str() == source.env_name || target_stack == source.stack.name {
        return Err(PreflightError::TargetIsSource {
            target: request.target.to_string(),
        });
    }
    let decls = target_template.parameters();

    // Unknown override keys are typos more often than not: refuse them.
    for key in request.parameter_overrides.keys() {
        if !decls.contains_key(key) {
            return Err(PreflightError::UnknownParameter {
                key: key.clone(),
                template: target_template.origin.clone(),
                known: decls.keys().cloned().collect(),
            });
        }
    }

    // The source's values carry over, for parameters the target template declares.
    let mut parameters = BTreeMap::new();
    for (name, decl) in &decls {
        if let Some(v) = request.parameter_overrides.get(name) {
            parameters.insert(name.clone(), v.clone());
            continue;
        }
        match source.stack.parameters.get(name) {
            // CloudFormation never reveals a NoEcho value: fall back to the default if there is
            // one, else the user must supply it.
            Some(v) if decl.no_echo && v == MASK => {
                if decl.default.is_none() {
                    return Err(PreflightError::SecretParameter { name: name.clone() });
                }
            }
            Some(v) => {
                let source_default = source
                    .template
                    .parameters()
                    .get(name)
                    .and_then(|d| d.default.clone());
                let at_old_default = source_default.as_deref() == Some(v.as_str());
                if !(request.reset_defaults && at_old_default && decl.default.is_some()) {
                    parameters.insert(name.clone(), v.clone());
                }
            }
            None => {
                if decl.default.is_none() && contract.environment_parameter.as_ref() != Some(name) {
                    let is_db = contract.databases.iter().any(|d| {
                        &d.snapshot_parameter == name
                            || d.copy_on_write
                                .as_ref()
                                .is_some_and(|c| &c.source_cluster_parameter == name)
                    });
                    let is_bucket = contract.buckets.iter().any(
                        |b| matches!(b, BucketSpec::ByParameter { parameter, .. } if parameter == name),
                    );
                    if !is_db && !is_bucket {
                        return Err(PreflightError::MissingParameter {
                            name: name.clone(),
                            template: target_template.origin.clone(),
                        });
                    }
                }
            }
        }
    }
    if let Some(parameter) = &contract.environment_parameter {
        parameters.insert(parameter.clone(), request.target.to_string());
    }

    let mut tags = BTreeMap::new();
    tags.insert(TAG_RUN.to_string(), run_id.to_string());
    tags.insert(
        TAG_ENVIRONMENT.to_string(),
        request
            .environment_tag
            .clone()
            .unwrap_or_else(|| request.target.to_string()),
    );
    tags.insert(TAG_SOURCE.to_string(), source.env_name.clone());
    if let Some(owner) = &request.owner {
        tags.insert(TAG_OWNER.to_string(), owner.clone());
    }
    if let Some(at) = &request.expires_at {
        tags.insert(
            TAG_EXPIRES_AT.to_string(),
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
    }

    let mut buckets = Vec::new();
    for spec in &contract.buckets {
        let (source_bucket, target) = match spec {
            BucketSpec::StackOwned { logical_id } => {
                let physical = source.physical_id(logical_id).ok_or_else(|| {
                    PreflightError::SourceResourceMissing {
                        stack: source.stack.name.clone(),
                        logical_id: logical_id.clone(),
                    }
                })?;
                (
                    physical.to_string(),
                    BucketTarget::StackOwned {
                        predicted_name: None,
                    },
                )
            }
            BucketSpec::ByParameter {
                logical_id,
                parameter,
            } => {
                // The source's bucket is the parameter's value when set; otherwise the bucket
                // the source stack owns under that logical id (the common `Condition:` pattern:
                // production creates its own bucket when the parameter is empty, a clone gets
                // an envclone-made one passed in — so it can be pre-copied before Standby).
                let value = source
                    .stack
                    .parameters
                    .get(parameter)
                    .filter(|v| !v.is_empty())
                    .map(String::as_str)
                    .or_else(|| source.physical_id(logical_id))
                    .ok_or_else(|| PreflightError::BucketParameterEmpty {
                        stack: source.stack.name.clone(),
                        logical_id: logical_id.clone(),
                        parameter: parameter.clone(),
                    })?
                    .to_string();
                let name = match request.parameter_overrides.get(parameter) {
                    Some(given) => {
                        model::check_bucket_name(given)?;
                        given.clone()
                    }
                    None => model::derived_bucket_name(&value, &source.env_name, &request.target)?,
                };
                parameters.insert(parameter.clone(), name.clone());
                (
                    value,
                    BucketTarget::Created {
                        name,
                        parameter: parameter.clone(),
                    },
                )
            }
        };
        buckets.push(BucketPlan {
            logical_id: spec.logical_id().to_string(),
            source_bucket,
            target,
        });
    }

    let mut databases = Vec::new();
    for spec in &contract.databases {
        let source_instance = source
            .physical_id(&spec.logical_id)
            .ok_or_else(|| PreflightError::SourceResourceMissing {
                stack: source.stack.name.clone(),
                logical_id: spec.logical_id.clone(),
            })?
            .to_string();
        let snapshot_id = model::snapshot_id(&run_id, &source_instance)?;
        // Until the run knows which artifact it made (a copy-on-write point or a snapshot), the
        // parameters name the snapshot; the run sets the final values (`artifact_parameters`).
        parameters.insert(spec.snapshot_parameter.clone(), snapshot_id.clone());
        databases.push(DatabasePlan {
            logical_id: spec.logical_id.clone(),
            source_instance,
            snapshot_id,
            snapshot_parameter: spec.snapshot_parameter.clone(),
            target_instance: None,
            target_members: Vec::new(),
            kind: if spec.is_cluster {
                DbKind::Cluster
            } else {
                DbKind::Instance
            },
            copy_on_write: spec.copy_on_write.clone(),
        });
    }

    // Predict the names the clone stack fixes itself, so preflight can check them.
    let (account, region) = source.account_and_region();
    let effective = Evaluator::effective_parameters(&target_template, &parameters);
    let evaluator = Evaluator {
        template: &target_template,
        parameters: &effective,
        stack_name: &target_stack,
        account_id: &account,
        region: &region,
        resource_refs: BTreeMap::new(),
    };
    for d in &mut databases {
        let (property, what) = match d.kind {
            DbKind::Instance => ("DBInstanceIdentifier", "DB instance identifier"),
            DbKind::Cluster => ("DBClusterIdentifier", "DB cluster identifier"),
        };
        d.target_instance = evaluator.property(&d.logical_id, property);
        if let Some(id) = &d.target_instance {
            model::check_rds_identifier(what, id, 63)?;
        }
        if d.kind == DbKind::Cluster {
            for (member, ty) in target_template.resource_types() {
                let of_this_cluster = ty == crate::contract::DB_INSTANCE
                    && target_template.cluster_of(&member) == Some(d.logical_id.as_str());
                if of_this_cluster {
                    if let Some(id) = evaluator.property(&member, "DBInstanceIdentifier") {
                        model::check_rds_identifier("DB instance identifier", &id, 63)?;
                        d.target_members.push(id);
                    }
                }
            }
        }
    }
    for b in &mut buckets {
        if let BucketTarget::StackOwned { predicted_name } = &mut b.target {
            *predicted_name = evaluator.property(&b.logical_id, "BucketName");
            if let Some(name) = predicted_name {
                model::check_bucket_name(name)?;
            }
        }
    }

    let scaling_groups = source
        .resources
        .iter()
        .filter(|r| r.resource_type == ASG)
        .filter_map(|r| r.physical_id.clone())
        .collect();

    Ok(ClonePlan {
        run_id,
        source_env: source.env_name.clone(),
        source_stack: source.stack.name.clone(),
        target_env: request.target.clone(),
        target_stack,
        template: target_template,
        contract,
        parameters,
        databases,
        buckets,
        scaling_groups,
        standby: request.standby,
        tags,
        capabilities: source.stack.capabilities.clone(),
        extra_hooks,
        skip_archived: false,
        archived: Vec::new(),
    })
}
