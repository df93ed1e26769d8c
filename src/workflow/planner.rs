//! Building a clone's plan (`build_plan`, a pure function of the request, the source as
//! observed, and the target template) and what the plan says it will do (`ClonePlan::steps`,
//! the window's words): each asks the resource kinds, so it is above them; the plan's types
//! are in `plan.rs`, below them.

use std::collections::{BTreeMap, BTreeSet};

use crate::contract::{BucketSpec, Contract, Template};
use crate::model::{self, RunId, TAG_ENVIRONMENT, TAG_EXPIRES_AT, TAG_OWNER, TAG_RUN, TAG_SOURCE};
use crate::ports::DbKind;
use crate::template_eval::Evaluator;

use super::inventory::{self, Inventory};
use super::plan::*;
use super::resource::PlanStage;
use super::resources::KINDS;
use super::window::{self, WindowItem, WindowNeeds};
use super::{fixednames, PreflightError};

impl ClonePlan {
    /// The steps in order, with the real names, for `plan clone` and `--dry-run`: each kind's
    /// at each stage (`ResourceKind::plan_steps`), around the run's own.
    pub fn steps(&self) -> Vec<String> {
        self.steps_then(StandbyAfter::Exit)
    }

    /// The steps of this clone run `after` as it says: a clone's end its quiet window and the
    /// return to service (`Exit`); a migration's clone keeps the source in Standby for the
    /// swap whose steps follow (`Keep`), so neither is said of it.
    pub fn steps_then(&self, after: StandbyAfter) -> Vec<String> {
        let of = |stage: PlanStage| -> Vec<String> {
            KINDS
                .iter()
                .flat_map(|k| k.plan_steps(self, stage))
                .collect()
        };
        let mut steps = Vec::new();
        if self.standby {
            steps.extend(of(PlanStage::Quiesce));
        } else {
            steps.push(
                "no Standby (--no-standby): the source keeps serving; the copy is crash-consistent"
                    .to_string(),
            );
        }
        steps.extend(of(PlanStage::Prepare));
        let parallel = of(PlanStage::Copy);
        if !parallel.is_empty() {
            steps.push(format!("in parallel: {}", parallel.join("; ")));
        }
        if let Some(st) = &self.template_staging {
            steps.push(format!(
                "the template is {} bytes, over CreateStack's {}-byte TemplateBody limit: put \
                 it at s3://{}/{}{} and create the stack from its URL; removed once \
                 CloudFormation has read it",
                self.template.body.len(),
                crate::ports::TEMPLATE_BODY_MAX,
                st.bucket,
                st.key,
                if st.own_bucket {
                    format!(
                        " (a bucket made for it, tagged envclone:run={})",
                        self.run_id
                    )
                } else {
                    " (the --state bucket)".to_string()
                }
            ));
        }
        if !self.noecho.is_empty() {
            steps.push(format!(
                "NoEcho parameters (CloudFormation never reveals the source's values): {}",
                self.noecho
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
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
        steps.extend(of(PlanStage::AfterStack));
        steps.extend(self.inventory.created_empty());
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
        match (self.standby, after) {
            (false, _) => {}
            (true, StandbyAfter::Exit) => {
                steps.push(plan_step(self));
                steps.extend(of(PlanStage::Resume));
            }
            (true, StandbyAfter::Keep) if !self.scaling_groups.is_empty() => steps.push(format!(
                "keep the instances of {} in Standby for the swap (a failure before the swap \
                 returns them to service)",
                self.scaling_groups.join(", ")
            )),
            (true, StandbyAfter::Keep) => {}
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
    // Over CreateStack's TemplateBody limit the template is staged in S3 (preflight decides
    // where); over what CloudFormation reads from S3, nothing can take it.
    if target_template.body.len() > crate::ports::TEMPLATE_URL_MAX {
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
    let source_decls = source.template.parameters();
    let mut parameters = BTreeMap::new();
    let mut noecho = Vec::new();
    // NoEcho parameters with no value to carry: CloudFormation shows `****` for a NoEcho
    // parameter in DescribeStacks ("Parameters: NoEcho", AWS CloudFormation User Guide), and a
    // parameter migrate's target template adds (or renames) has no source value at all.
    let mut hidden = Vec::new();
    for (name, decl) in &decls {
        if let Some(v) = request.parameter_overrides.get(name) {
            parameters.insert(name.clone(), v.clone());
            if decl.no_echo {
                noecho.push(NoEchoParameter {
                    name: name.clone(),
                    value: NoEchoValue::Given,
                });
            }
            continue;
        }
        let value = source.stack.parameters.get(name);
        let masked = value.is_some_and(|v| {
            v == MASK && (decl.no_echo || source_decls.get(name).is_some_and(|d| d.no_echo))
        });
        if masked || (decl.no_echo && value.is_none()) {
            hidden.push(name.clone());
            continue;
        }
        match value {
            Some(v) => {
                let source_default = source
                    .template
                    .parameters()
                    .get(name)
                    .and_then(|d| d.default.clone());
                let at_old_default = source_default.as_deref() == Some(v.as_str());
                if !(request.reset_defaults && at_old_default && decl.default.is_some()) {
                    parameters.insert(name.clone(), v.clone());
                    if decl.no_echo {
                        noecho.push(NoEchoParameter {
                            name: name.clone(),
                            value: NoEchoValue::Source,
                        });
                    }
                }
            }
            None => {
                if decl.default.is_none() && contract.environment_parameter.as_ref() != Some(name) {
                    let given_by_a_kind = KINDS
                        .iter()
                        .any(|k| k.given_parameters(&contract).contains(name));
                    if !given_by_a_kind {
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
    // Names of what the run will create for the stack (a table passed by parameter).
    let migrating = request.environment_tag.is_some();
    for kind in KINDS {
        for (name, value) in kind.planned_parameters(&contract, &target_stack, migrating) {
            if !request.parameter_overrides.contains_key(&name) {
                parameters.insert(name, value);
            }
        }
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
                let value = source
                    .bucket_by_parameter(logical_id, parameter)
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
            batch: None,
            versioned: false,
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
        match &spec.point_in_time {
            // Restored to T from the source: no snapshot; the run gives T.
            Some(p) => {
                parameters.insert(spec.snapshot_parameter.clone(), String::new());
                parameters.insert(p.source_parameter.clone(), source_instance.clone());
                parameters.insert(p.time_parameter.clone(), String::new());
            }
            None => {
                parameters.insert(spec.snapshot_parameter.clone(), snapshot_id.clone());
            }
        }
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
            point_in_time: spec.point_in_time.clone(),
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
    // A hidden NoEcho value is refused unless the contract says its default is right for a
    // clone, or the clone stack never uses it; all of them in one message. (A dynamic reference
    // cannot be read back from the source either: the masked value might have been one, or
    // not, so a dynamic-reference default is only taken when the contract lists it.)
    let mut refused = Vec::new();
    for name in hidden {
        let default = decls.get(&name).and_then(|d| d.default.clone());
        let value = if contract.noecho_defaults.contains(&name) {
            NoEchoValue::ContractDefault {
                dynamic_reference: default
                    .as_deref()
                    .and_then(dynamic_reference)
                    .map(str::to_string),
            }
        } else if default.is_some() && !evaluator.uses_parameter(&name) {
            NoEchoValue::Unused
        } else {
            refused.push(HiddenParameter { name, default });
            continue;
        };
        noecho.push(NoEchoParameter { name, value });
    }
    if !refused.is_empty() {
        return Err(PreflightError::SecretParameters {
            template: target_template.origin.clone(),
            parameters: refused,
        });
    }
    noecho.sort_by(|a, b| a.name.cmp(&b.name));

    let inventory = classify_resources(&evaluator, &contract, &source.nested);
    if !inventory.uncovered.is_empty() {
        return Err(PreflightError::Uncovered {
            template: target_template.origin.clone(),
            resources: inventory.uncovered,
        });
    }
    // After the inventory: a resource an operator must first decide about (cover or ignore)
    // comes before the names it would take.
    refuse_fixed_names(source, &evaluator, &contract)?;
    for b in &mut buckets {
        if let BucketTarget::StackOwned { predicted_name } = &mut b.target {
            *predicted_name = evaluator.property(&b.logical_id, "BucketName");
            if let Some(name) = predicted_name {
                model::check_bucket_name(name)?;
            }
        }
    }

    let scaling_groups = super::resources::groups_of(&source.resources);

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
        template_staging: None,
        noecho,
        inventory,
    })
}

/// Classifies every resource the clone stack creates (a resource whose `Condition` is false for
/// the clone's parameters is not created; one whose condition cannot be evaluated counts as
/// created).
fn classify_resources(
    clone: &Evaluator<'_>,
    contract: &Contract,
    nested: &[NestedResource],
) -> Inventory {
    let types = clone.template.resource_types();
    let created: Vec<(&String, &String)> = types
        .iter()
        .filter(|(id, _)| {
            let condition = clone
                .template
                .resources()
                .and_then(|r| r.get(id.as_str()))
                .and_then(|r| r.get("Condition"))
                .and_then(serde_json::Value::as_str);
            condition.is_none_or(|c| clone.condition(c) != Some(false))
        })
        .collect();
    // A nested stack holds nothing itself: what it creates is judged resource by resource,
    // as `Outer/Inner` (the ids an `ignore:` entry names). Its resources are known from the
    // source's nested stacks (ListStackResources), which the clone's are created from the same
    // TemplateURL as; a nested stack the clone creates and the source has not is judged as a
    // whole, since nothing says what it holds.
    let nested_ids: Vec<(String, &str)> = nested
        .iter()
        .filter(|n| n.resource.resource_type != NESTED_STACK)
        .filter(|n| {
            let outer = n.nested_stack.split('/').next().unwrap_or_default();
            created
                .iter()
                .any(|(id, ty)| id.as_str() == outer && ty.as_str() == NESTED_STACK)
        })
        .map(|n| {
            (
                format!("{}/{}", n.nested_stack, n.resource.logical_id),
                n.resource.resource_type.as_str(),
            )
        })
        .collect();
    let known_nested: BTreeSet<&str> = nested
        .iter()
        .map(|n| n.nested_stack.split('/').next().unwrap_or_default())
        .collect();
    let top = created
        .iter()
        .filter(|(id, ty)| ty.as_str() != NESTED_STACK || !known_nested.contains(id.as_str()));
    inventory::inventory(
        top.map(|(id, ty)| (id.as_str(), ty.as_str()))
            .chain(nested_ids.iter().map(|(id, ty)| (id.as_str(), *ty))),
        &inventory::copied_ids(clone.template, contract),
        contract,
    )
}

/// Refuses a clone (or migrate's new stack, which exists alongside the old one) that would
/// create a resource under a name the source stack's resource has: see `fixednames`.
/// `clone` evaluates the clone's template with its parameters.
fn refuse_fixed_names(
    source: &SourceEnv,
    clone: &Evaluator<'_>,
    contract: &Contract,
) -> Result<(), PreflightError> {
    let (account, region) = source.account_and_region();
    let decls = source.template.parameters();
    // A NoEcho value CloudFormation masks is unknown here, not its default.
    let mut parameters =
        Evaluator::effective_parameters(&source.template, &source.stack.parameters);
    parameters.retain(|k, v| !(decls.get(k).is_some_and(|d| d.no_echo) && v == MASK));
    let source_ev = Evaluator {
        template: &source.template,
        parameters: &parameters,
        stack_name: &source.stack.name,
        account_id: &account,
        region: &region,
        resource_refs: BTreeMap::new(),
    };
    // The source's resources are those its stack lists (its conditions as they were).
    let source_names = fixednames::fixed_names(&source_ev, &|id| {
        source.resources.iter().any(|r| r.logical_id == id)
    });
    let clone_names =
        fixednames::fixed_names(clone, &|id| fixednames::created_by_template(clone, id));
    let mut set_by_envclone: BTreeSet<String> =
        contract.environment_parameter.iter().cloned().collect();
    for kind in KINDS {
        set_by_envclone.extend(kind.given_parameters(contract));
    }
    let collisions = fixednames::collisions(&source_names, &clone_names, &set_by_envclone);
    if collisions.is_empty() {
        Ok(())
    } else {
        Err(PreflightError::FixedNames {
            source_stack: source.stack.name.clone(),
            target_stack: clone.stack_name.to_string(),
            collisions,
        })
    }
}

/// The window of a plan, from every kind's needs.
pub fn needs_of(plan: &ClonePlan) -> WindowNeeds {
    let mut out = WindowNeeds::default();
    for kind in KINDS {
        let n = kind.window_needs(plan);
        out.inside.extend(n.inside);
        out.whole.extend(n.whole);
        out.outside.extend(n.outside);
    }
    out
}

/// The plan's words on the window (`plan clone`, `--dry-run`).
pub fn plan_step(plan: &ClonePlan) -> String {
    let needs = needs_of(plan);
    if !needs.whole.is_empty() {
        return format!(
            "the source stays in Standby until the clone is verified, because {}",
            window::list(&needs.whole)
        );
    }
    format!(
        "fix T (the first whole second after the quiesce, S3's LastModified resolution) and \
         return the source to service once {} — not when the snapshots are available: the \
         time out of service does not grow with the size of the databases or of the versioned \
         buckets{}{}",
        window::until(&needs.inside),
        if needs
            .inside
            .iter()
            .any(|i| matches!(i, WindowItem::UnversionedBucket { .. }))
        {
            " (enabling versioning on a bucket removes it from the window: it is then copied \
             as of T after the source serves again)"
        } else {
            ""
        },
        if needs.outside.is_empty() {
            String::new()
        } else {
            format!("; not in the window: {}", needs.outside.join("; "))
        }
    )
}
