//! A DynamoDB table of the contract (`tables:`), cloned with its items as of the quiet moment
//! (inside the Standby window) by the engine of `workflow::dynamodb` (parallel consistent Scan
//! and BatchWriteItem; why not export/import is in that module's doc):
//!
//! - a table the clone stack creates (`Logical: {}`) is filled as soon as the stack has created
//!   it (like a bucket the stack owns), once it is ACTIVE;
//! - a table passed in by parameter (`{ table_parameter: P }`) is created by the run, shaped
//!   like the source's (keys, indexes, billing), named `<target stack>-<logical id>` (or what
//!   `--parameter P=…` gives), tagged with the run, filled before the stack is created, and
//!   given to the stack as `P`. For migrate, a `shared` one is not copied: the new stack
//!   receives the same table.
//!
//! Abort, destroy and a migrate that never swapped delete the run's table only when it carries
//! the run's `envclone:run` tag (`delete_own_table`); a table the stack created goes with the
//! stack.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::contract::{Contract, TableSpec as Listed, Template};
use crate::model::TAG_ENVIRONMENT;
use crate::ports::{PortError, StackInfo, StackResource};
use crate::retry::{retry, wait_until, Poll};
use crate::s3sync::VerifyReport;
use crate::template_eval::{Evaluated, Evaluator};

use super::super::dynamodb::{self as tables, CopyOptions, CopyReport, TableSpec, TABLE_TYPE};
use super::super::engine::{CheckResult, CloneEngine, CopyOutcome};
use super::super::fixednames::created_by_template;
use super::super::plan::{ClonePlan, SourceEnv};
use super::super::record::PlanRecord;
use super::super::resource::{
    BeforeStack, Checked, CopyRun, Grant, IamOperation, Outcome, PlanStage, RefKind, Removal,
    ResourceKind, ResourceRef, RunScope,
};
use super::super::{PreflightError, StepError};

/// A table a run created.
pub const TABLE: RefKind = RefKind::new("DynamoDB table");

/// How long a global index of a copied table may lag behind its table when verified
/// ("Global secondary indexes": updated asynchronously, eventually consistent).
const INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The table the clone stack will create for `logical_id`, as its template declares it with the
/// clone's parameters, checked against the source table `source_table` before any change: the
/// same primary key and no attribute keyed by another type (DynamoDB would refuse every item
/// of the copy, after Standby, the snapshots and the stack). Properties the evaluator cannot
/// know here (`Fn::GetAtt`, an import) leave the check to the copy, which makes it again.
fn check_stack_table(
    source: &SourceEnv,
    plan: &ClonePlan,
    logical_id: &str,
    source_table: &tables::TableInfo,
) -> Result<(), PreflightError> {
    let (account, region) = source.account_and_region();
    let parameters = Evaluator::effective_parameters(&plan.template, &plan.parameters);
    let ev = Evaluator {
        template: &plan.template,
        parameters: &parameters,
        stack_name: &plan.target_stack,
        account_id: &account,
        region: &region,
        resource_refs: BTreeMap::new(),
    };
    if !created_by_template(&ev, logical_id) {
        return Ok(());
    }
    let name = ev
        .property(logical_id, "TableName")
        .unwrap_or_else(|| format!("{} ({logical_id})", plan.target_stack));
    let Some(Evaluated::Value(properties)) = plan.template.value["Resources"][logical_id]
        .get("Properties")
        .and_then(|p| ev.eval(p))
    else {
        return Ok(());
    };
    let Ok(spec) = tables::spec_from_template(&name, &properties) else {
        return Ok(());
    };
    tables::check_target_spec(source_table, &spec).map_err(|e| PreflightError::Unsupported {
        what: format!("{e} (table {logical_id} of the clone's template); nothing was changed"),
    })
}

/// The DynamoDB table kind.
pub struct DynamoDbTable;

/// Whether the plan's stack becomes the environment itself (migrate's new stack): its
/// environment tag names another environment than its target.
fn migrating(tags: &BTreeMap<String, String>, target_env: &str) -> bool {
    tags.get(TAG_ENVIRONMENT)
        .is_some_and(|env| env != target_env)
}

/// The tables passed by parameter that a run creates, as (logical id, parameter): all of
/// them, but for migrate the shared ones (the new stack receives the same table).
fn created_by_run(contract: &Contract, migrating: bool) -> Vec<(&str, &str)> {
    contract
        .tables
        .iter()
        .filter_map(|t| match t {
            Listed::ByParameter {
                logical_id,
                parameter,
                shared,
            } if !(*shared && migrating) => Some((logical_id.as_str(), parameter.as_str())),
            _ => None,
        })
        .collect()
}

/// The name of the table a run creates for `logical_id` of the clone stack `target_stack`
/// (table names take `[a-zA-Z0-9_.-]`, 3 to 255 characters; a stack name and a logical id
/// are within them).
fn table_name(target_stack: &str, logical_id: &str) -> String {
    format!("{target_stack}-{logical_id}")
}

/// The source's table of a listed one: the parameter's value when set, else the table the
/// source stack created under the logical id.
fn source_table(
    listed: &Listed,
    parameters: &BTreeMap<String, String>,
    resources: &[StackResource],
) -> Option<String> {
    let by_parameter = match listed {
        Listed::ByParameter { parameter, .. } => {
            parameters.get(parameter).filter(|v| !v.is_empty()).cloned()
        }
        Listed::StackOwned { .. } => None,
    };
    by_parameter.or_else(|| {
        resources
            .iter()
            .find(|r| r.logical_id == listed.logical_id() && r.resource_type == TABLE_TYPE)
            .and_then(|r| r.physical_id.clone())
    })
}

fn refused(step: &str) -> impl FnOnce(tables::TableError) -> StepError + '_ {
    move |e| StepError::Refused {
        step: step.to_string(),
        message: e.to_string(),
    }
}

/// The source's table of each listed table the run copies (the source stack read once).
async fn sources(run: &CopyRun<'_>, step: &str) -> Result<BTreeMap<String, String>, StepError> {
    let stacks = &run.engine.cloud.stacks;
    let source = &run.plan.source_stack;
    let stack = retry(|| stacks.describe_stack(source))
        .await
        .map_err(StepError::port(step))?
        .ok_or_else(|| StepError::Refused {
            step: step.into(),
            message: format!("source stack {source} no longer exists"),
        })?;
    let resources = retry(|| stacks.resources(source))
        .await
        .map_err(StepError::port(step))?;
    run.plan
        .contract
        .tables
        .iter()
        .map(|t| {
            let name = source_table(t, &stack.parameters, &resources).ok_or_else(|| {
                StepError::Refused {
                    step: step.into(),
                    message: format!(
                        "source stack {source} has no DynamoDB table {} (nor a value for its \
                         parameter); nothing to copy from",
                        t.logical_id()
                    ),
                }
            })?;
            Ok((t.logical_id().to_string(), name))
        })
        .collect()
}

/// Copies the items of `source` into the empty, ACTIVE table `target`, with its events.
async fn copy(
    run: &CopyRun<'_>,
    logical_id: &str,
    source: &str,
    target: &str,
) -> Result<Outcome, StepError> {
    let step = "table.copy";
    let events = run.events;
    events.start(
        step,
        Some(target),
        format!("copying the items of DynamoDB table {source} into {target}"),
    );
    let report: CopyReport = tables::copy_table(
        run.engine.cloud.tables.as_ref(),
        source,
        target,
        &CopyOptions::default(),
    )
    .await
    .map_err(refused(step))?;
    let detail = format!(
        "{} item(s) copied ({} bytes, {} BatchWriteItem call(s); {} unprocessed item(s) and {} \
         throttled call(s) sent again)",
        report.items,
        report.bytes,
        report.batches,
        report.unprocessed_resent,
        report.throttled_calls
    );
    events.done(step, Some(target), detail.clone());
    Ok(Outcome::Copy(CopyOutcome {
        kind: DynamoDbTable.name().to_string(),
        logical_id: logical_id.to_string(),
        source: source.to_string(),
        target: target.to_string(),
        detail,
    }))
}

/// Creates the run's table `target` shaped like `source` and tagged with the run. One that
/// exists with the run's tag (an earlier attempt of the run, possibly part-filled) is deleted
/// and made again, so the copy goes into an empty table; any other is refused.
async fn create(run: &CopyRun<'_>, source: &str, target: &str) -> Result<(), StepError> {
    let step = "table.create";
    let (engine, events) = (run.engine, run.events);
    let port = engine.cloud.tables.as_ref();
    let options = CopyOptions::default();
    let info = tables::check_source(port, source, &options)
        .await
        .map_err(refused(step))?;
    let spec = TableSpec::like(&info, target);
    events.start(
        step,
        Some(target),
        format!("creating DynamoDB table {target} like {source}"),
    );
    if retry(|| port.describe_table(target))
        .await
        .map_err(StepError::port(step))?
        .is_some()
    {
        // A table still CREATING cannot be deleted (DeleteTable: ResourceInUseException,
        // "the table is being created"): the earlier attempt may have died right after
        // CreateTable. Only the run's own is deleted: delete_own_table refuses any other,
        // naming its tag.
        tables::wait_active(port, target, options.active_timeout)
            .await
            .map_err(refused(step))?;
        tables::delete_own_table(port, target, run.plan.run_id.as_str())
            .await
            .map_err(refused(step))?;
        let what = format!("DynamoDB table {target} (an earlier attempt's) to be deleted");
        wait_until(&what, options.active_timeout, || async {
            Ok(match port.describe_table(target).await? {
                None => Poll::Ready(()),
                Some(t) => Poll::Pending(t.status.to_string()),
            })
        })
        .await
        .map_err(StepError::wait(step))?;
    }
    match retry(|| port.create_table(&spec, &run.plan.tags)).await {
        Ok(()) => {}
        Err(PortError::AlreadyExists { .. }) => {
            return Err(StepError::Refused {
                step: step.into(),
                message: format!(
                    "DynamoDB table {target} was created by someone else while this run made \
                     it; choose another name with --parameter"
                ),
            })
        }
        Err(e) => return Err(StepError::port(step)(e)),
    }
    run.created.add(ResourceRef::new(TABLE, target));
    tables::wait_active(port, target, options.active_timeout)
        .await
        .map_err(refused(step))?;
    events.done(step, Some(target), "ACTIVE");
    Ok(())
}

#[async_trait]
impl ResourceKind for DynamoDbTable {
    /// Every table keeps the whole window: its copy (a consistent Scan) and its verification
    /// read the live table, and DynamoDB has no read as of a moment the verification could
    /// use once the source writes again.
    fn window_needs(&self, plan: &ClonePlan) -> crate::workflow::window::WindowNeeds {
        crate::workflow::window::WindowNeeds {
            inside: Vec::new(),
            whole: plan
                .contract
                .tables
                .iter()
                .map(|t| crate::workflow::window::WholeWindow::LiveTable {
                    logical_id: t.logical_id().to_string(),
                })
                .collect(),
            outside: Vec::new(),
        }
    }
    fn name(&self) -> &'static str {
        "dynamodb-table"
    }
    fn stack_types(&self) -> &'static [(&'static str, &'static str)] {
        &[(TABLE_TYPE, "the table's items")]
    }
    fn ref_kinds(&self) -> &'static [RefKind] {
        static REFS: [RefKind; 1] = [TABLE];
        &REFS
    }
    /// The source read by a consistent Scan, a table passed by parameter created with the
    /// run's tags ("Tagging resources in DynamoDB": CreateTable with Tags needs
    /// dynamodb:TagResource too), its items written by BatchWriteItem, the copy's global
    /// indexes queried by verify, and the run's table deleted by abort and destroy after its
    /// tags are read. BatchWriteItem and DeleteTable only on tables tagged with the run (one it
    /// created, or one its clone stack created: CloudFormation gives the stack's tags to the
    /// table): DynamoDB authorizes them by `aws:ResourceTag` ("Using attribute-based access
    /// control with DynamoDB").
    fn iam_operations(&self) -> &'static [IamOperation] {
        const fn op(
            operation: &'static str,
            actions: &'static [&'static str],
            grant: Grant,
        ) -> IamOperation {
            IamOperation {
                operation,
                actions,
                grant,
            }
        }
        static OPS: [IamOperation; 7] = [
            op(
                "dynamodb:DescribeTable",
                &["dynamodb:DescribeTable"],
                Grant::Read,
            ),
            op("dynamodb:Scan", &["dynamodb:Scan"], Grant::Read),
            op("dynamodb:Query", &["dynamodb:Query"], Grant::Read),
            op(
                "dynamodb:ListTagsOfResource",
                &["dynamodb:ListTagsOfResource"],
                Grant::Read,
            ),
            op(
                "dynamodb:CreateTable",
                &["dynamodb:CreateTable", "dynamodb:TagResource"],
                Grant::CreateTagged,
            ),
            op(
                "dynamodb:BatchWriteItem",
                &["dynamodb:BatchWriteItem"],
                Grant::TaggedResource,
            ),
            op(
                "dynamodb:DeleteTable",
                &["dynamodb:DeleteTable"],
                Grant::TaggedResource,
            ),
        ];
        &OPS
    }

    fn copied_ids(&self, _template: &Template, contract: &Contract) -> Vec<String> {
        contract
            .tables
            .iter()
            .map(|t| t.logical_id().to_string())
            .collect()
    }

    fn given_parameters(&self, contract: &Contract) -> Vec<String> {
        contract
            .tables
            .iter()
            .filter_map(|t| match t {
                Listed::ByParameter { parameter, .. } => Some(parameter.clone()),
                Listed::StackOwned { .. } => None,
            })
            .collect()
    }

    fn planned_parameters(
        &self,
        contract: &Contract,
        target_stack: &str,
        migrating: bool,
    ) -> BTreeMap<String, String> {
        created_by_run(contract, migrating)
            .into_iter()
            .map(|(id, parameter)| (parameter.to_string(), table_name(target_stack, id)))
            .collect()
    }

    /// Each source table exists, is ACTIVE and within the copy's size limit; each table the
    /// run would create is free.
    async fn preflight(
        &self,
        engine: &CloneEngine,
        source: &SourceEnv,
        plan: &mut ClonePlan,
    ) -> Result<(), PreflightError> {
        let port = engine.cloud.tables.as_ref();
        let migrating = migrating(&plan.tags, plan.target_env.as_str());
        let created = created_by_run(&plan.contract, migrating);
        for t in &plan.contract.tables {
            if t.shared() && migrating {
                continue;
            }
            let name =
                source_table(t, &source.stack.parameters, &source.resources).ok_or_else(|| {
                    PreflightError::SourceResourceMissing {
                        stack: source.stack.name.clone(),
                        logical_id: t.logical_id().to_string(),
                    }
                })?;
            let info = tables::check_source(port, &name, &CopyOptions::default())
                .await
                .map_err(|e| PreflightError::Unsupported {
                    what: format!("{e}; nothing was changed"),
                })?;
            if let Listed::StackOwned { logical_id } = t {
                check_stack_table(source, plan, logical_id, &info)?;
            }
        }
        for (_, parameter) in created {
            let Some(target) = plan.parameters.get(parameter) else {
                continue;
            };
            if retry(|| port.describe_table(target)).await?.is_some() {
                return Err(PreflightError::TargetExists {
                    what: format!(
                        "DynamoDB table {target} (the run would create it for parameter \
                         {parameter}; delete it if it is a leftover of yours, or give another \
                         name with --parameter {parameter}=NAME)"
                    ),
                });
            }
        }
        Ok(())
    }

    fn plan_steps(&self, plan: &ClonePlan, stage: PlanStage) -> Vec<String> {
        let migrating = migrating(&plan.tags, plan.target_env.as_str());
        let run = &plan.run_id;
        plan.contract
            .tables
            .iter()
            .filter_map(|t| match (t, stage) {
                (Listed::ByParameter { parameter, .. }, PlanStage::Copy)
                    if t.shared() && migrating =>
                {
                    Some(format!(
                        "give the new stack the same DynamoDB table {} (parameter {parameter}, \
                         shared)",
                        t.logical_id()
                    ))
                }
                (Listed::ByParameter { parameter, .. }, PlanStage::Copy) => {
                    let name = plan.parameters.get(parameter).cloned().unwrap_or_default();
                    Some(format!(
                        "create DynamoDB table {name} shaped like the source's {} (tagged \
                         envclone:run={run}), copy its items (consistent parallel Scan, \
                         BatchWriteItem), and give it to the stack as parameter {parameter}",
                        t.logical_id()
                    ))
                }
                (Listed::StackOwned { logical_id }, PlanStage::AfterStack) => Some(format!(
                    "as soon as the stack has created DynamoDB table {logical_id} and it is \
                     ACTIVE, copy the source's items into it (consistent parallel Scan, \
                     BatchWriteItem)"
                )),
                _ => None,
            })
            .collect()
    }

    /// Each table passed by parameter: created, filled, and its name given to the stack.
    async fn before_stack(&self, run: &CopyRun<'_>) -> Result<BeforeStack, StepError> {
        let plan = run.plan;
        let created = created_by_run(
            &plan.contract,
            migrating(&plan.tags, plan.target_env.as_str()),
        );
        if created.is_empty() {
            return Ok(BeforeStack::default());
        }
        let sources = sources(run, "table.create").await?;
        let made = futures::future::try_join_all(created.into_iter().map(|(id, parameter)| {
            let source = sources[id].clone();
            let target = plan
                .parameters
                .get(parameter)
                .cloned()
                .unwrap_or_else(|| table_name(&plan.target_stack, id));
            async move {
                create(run, &source, &target).await?;
                let outcome = copy(run, id, &source, &target).await?;
                Ok::<_, StepError>((parameter.to_string(), target, outcome))
            }
        }))
        .await?;
        let mut out = BeforeStack::default();
        for (parameter, target, outcome) in made {
            out.parameters.insert(parameter, target);
            out.outcomes.push(outcome);
        }
        Ok(out)
    }

    /// Each table the stack creates, filled as soon as the stack has made it.
    async fn after_stack(&self, run: &CopyRun<'_>) -> Result<Vec<Outcome>, StepError> {
        let plan = run.plan;
        let owned: Vec<&str> = plan
            .contract
            .tables
            .iter()
            .filter_map(|t| match t {
                Listed::StackOwned { logical_id } => Some(logical_id.as_str()),
                Listed::ByParameter { .. } => None,
            })
            .collect();
        if owned.is_empty() {
            return Ok(Vec::new());
        }
        let step = "table.copy";
        let sources = sources(run, step).await?;
        futures::future::try_join_all(owned.into_iter().map(|id| {
            let source = sources[id].clone();
            async move {
                let target = run
                    .engine
                    .wait_for_stack_resource(plan, id, (TABLE_TYPE, "DynamoDB table"), step)
                    .await?;
                copy(run, id, &source, &target).await
            }
        }))
        .await
    }

    /// The tables a run creates (those passed by parameter), by the names its plan gave them.
    fn artifacts(&self, plan: &PlanRecord) -> Vec<ResourceRef> {
        let Ok(contract) = Template::parse(&plan.template_origin, &plan.template_body)
            .and_then(|t| Contract::from_template(&t))
        else {
            return Vec::new();
        };
        created_by_run(&contract, migrating(&plan.tags, &plan.target_env))
            .into_iter()
            .map(|(id, parameter)| {
                let name = plan
                    .parameters
                    .get(parameter)
                    .cloned()
                    .unwrap_or_else(|| table_name(&plan.target_stack, id));
                ResourceRef::new(TABLE, name)
            })
            .collect()
    }

    /// The tables the stack was given by parameter (removed only if they carry the run's tag:
    /// a shared table of a migrated environment never does).
    fn artifacts_of_stack(&self, contract: &Contract, stack: &StackInfo) -> Vec<ResourceRef> {
        self.given_parameters(contract)
            .iter()
            .filter_map(|p| stack.parameters.get(p))
            .filter(|name| !name.is_empty())
            .map(|name| ResourceRef::new(TABLE, name.clone()))
            .collect()
    }

    async fn remove(
        &self,
        engine: &CloneEngine,
        what: &ResourceRef,
        run: RunScope<'_>,
        out: &mut Removal,
    ) -> Result<(), StepError> {
        let r = ResourceRef::new(TABLE, what.id.clone());
        match tables::delete_own_table(engine.cloud.tables.as_ref(), &what.id, run.run_id).await {
            Ok(true) => out.removed.push(r),
            Ok(false) => {}
            Err(tables::TableError::NotOwned { .. }) => out.left.push(run.not_ours(r)),
            Err(e) => out.left.push(r.with_note(e.to_string())),
        }
        Ok(())
    }

    /// Each listed table of `target` with `source`'s of the same logical id (a table both
    /// stacks receive by parameter, `shared`, is the same table and not compared with itself).
    fn paired_copies(
        &self,
        contract: &Contract,
        source: &SourceEnv,
        target: &SourceEnv,
        checks: &mut Vec<CheckResult>,
    ) -> Vec<CopyOutcome> {
        let mut out = Vec::new();
        for t in &contract.tables {
            let id = t.logical_id();
            let Some(to) = source_table(t, &target.stack.parameters, &target.resources) else {
                continue;
            };
            match source_table(t, &source.stack.parameters, &source.resources) {
                Some(from) if from == to => {}
                Some(from) => out.push(CopyOutcome {
                    kind: self.name().to_string(),
                    logical_id: id.to_string(),
                    source: from,
                    target: to,
                    detail: String::new(),
                }),
                None => checks.push(CheckResult {
                    check: format!("DynamoDB table {to}"),
                    ok: false,
                    detail: format!("{} has no table {id} to compare with", source.stack.name),
                }),
            }
        }
        out
    }

    /// Each table the run copied: both tables' items compared whole, the target's global
    /// indexes queried.
    async fn verify(
        &self,
        engine: &CloneEngine,
        env: &Checked<'_>,
        checks: &mut Vec<CheckResult>,
        _reports: &mut Vec<VerifyReport>,
    ) -> Result<(), StepError> {
        let port = engine.cloud.tables.as_ref();
        for c in env.copies.iter().filter(|c| c.kind == self.name()) {
            let found = tables::verify_copy(port, &c.source, &c.target, INDEX_WAIT).await;
            let (ok, detail) = match found {
                Ok(v) if v.ok() => (
                    true,
                    format!(
                        "{} item(s) equal, compared whole; global index(es) queried: {}",
                        v.target_items,
                        if v.indexes_checked.is_empty() {
                            "none".to_string()
                        } else {
                            v.indexes_checked.join(", ")
                        }
                    ),
                ),
                Ok(v) => (
                    false,
                    format!(
                        "{} item(s) in the source, {} in the copy; missing {:?}, extra {:?}, \
                         differing {:?}, indexes failing {:?}",
                        v.source_items,
                        v.target_items,
                        v.missing,
                        v.extra,
                        v.differing,
                        v.indexes_failing
                    ),
                ),
                Err(e) => (false, e.to_string()),
            };
            checks.push(CheckResult {
                check: format!("DynamoDB table {} = {}", c.target, c.source),
                ok,
                detail,
            });
        }
        Ok(())
    }

    /// A table not marked `shared` (issue 12). Migrate swaps names, and DynamoDB has no rename
    /// (UpdateTable changes neither TableName nor key; a new name is a new table): the new
    /// stack's table would be a copy taken at the snapshot moment, and every write to the old
    /// table after it would be lost at the swap. Only a table both stacks receive by a
    /// parameter (`shared: true`) passes over.
    fn migrate_refusal(&self, contract: &Contract, env: &str, origin: &str) -> Option<String> {
        let unshared: Vec<String> = contract
            .tables
            .iter()
            .filter(|t| !t.shared())
            .map(|t| match t {
                Listed::StackOwned { logical_id } => {
                    format!("{logical_id} (created by the stack)")
                }
                Listed::ByParameter {
                    logical_id,
                    parameter,
                    ..
                } => format!("{logical_id} (passed in by parameter {parameter})"),
            })
            .collect();
        if unshared.is_empty() {
            return None;
        }
        Some(format!(
            "migrate cannot move environment {env}'s DynamoDB table(s) {tables} listed in the \
             contract of {origin}: migrate swaps names, and a DynamoDB table cannot be renamed \
             (DynamoDB has no rename; a table under a new name is another table), so the new \
             stack would get a copy as of the snapshot and every write to the old table after \
             it would be lost at the swap; nothing was changed. Either let the new stack receive \
             the same table: declare a parameter for the table's name in {origin}, use it \
             wherever the table is named, and mark it `{{ table_parameter: <parameter>, shared: \
             true }}` under Metadata.envclone.tables; or move it from tables to ignore: (with \
             a reason) and move its items by hand after the swap (ExportTableToPointInTime to S3, \
             then ImportTable into the new stack's table)",
            tables = unshared.join(", "),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_migrate_keeps_a_shared_table_and_a_clone_makes_its_own() {
        let tags = BTreeMap::from([(TAG_ENVIRONMENT.to_string(), "prod".to_string())]);
        assert!(migrating(&tags, "prod-v2"));
        assert!(!migrating(&tags, "prod"));
        assert_eq!(table_name("staging", "Orders"), "staging-Orders");
    }
}
