//! Crash safety of clone runs: the run's record (its plan and what it put into Standby,
//! written before each change that needs undoing), and `abort` / `resume` working from that
//! record and from what AWS shows — names derived from the run id and the `envclone:run` tag —
//! so they are right whatever moment the process died at.

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::contract::{Contract, Template, BUCKET, DB_CLUSTER, DB_INSTANCE};
use crate::events::Emitter;
use crate::journal::RunStore;
use crate::model::{EnvName, RunId, TAG_RUN};
use crate::ports::{DbKind, PortError, StackResource};
use crate::retry::{retry, wait_until, Poll};

use super::clone::{
    CloneEngine, CloneFailure, CloneReport, Execution, Progress, StandbyAfter, StandbyRecord,
};
use super::plan::{BucketPlan, BucketTarget, ClonePlan, DatabasePlan, TemplateStaging, MASK};
use super::{deletion, StepError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClonePhase {
    Running,
    Succeeded,
    /// Stopped by an error or Ctrl-C: the source was returned to service; what the run made
    /// is in `left_behind`.
    Failed,
    Aborted,
}

/// The plan as stored: everything needed to resume, NoEcho values masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub source_env: String,
    pub source_stack: String,
    pub target_env: String,
    pub target_stack: String,
    pub template_origin: String,
    pub template_body: String,
    pub parameters: BTreeMap<String, String>,
    pub databases: Vec<DatabasePlan>,
    pub buckets: Vec<BucketPlan>,
    pub scaling_groups: Vec<String>,
    pub standby: bool,
    pub tags: BTreeMap<String, String>,
    pub capabilities: Vec<String>,
    /// Hooks from `envclone.toml`, run after the contract's own.
    #[serde(default)]
    pub extra_hooks: crate::contract::Hooks,
    /// `--skip-archived` was given: a resume leaves archived objects out too.
    #[serde(default)]
    pub skip_archived: bool,
    /// Where the template is put for CreateStack when it is over the TemplateBody limit.
    #[serde(default)]
    pub template_staging: Option<TemplateStaging>,
    #[serde(default)]
    pub noecho: Vec<super::plan::NoEchoParameter>,
    /// What the clone stack creates, classified at preflight (absent in older records).
    #[serde(default)]
    pub inventory: super::inventory::Inventory,
}

impl PlanRecord {
    pub fn from_plan(plan: &ClonePlan) -> Self {
        PlanRecord {
            source_env: plan.source_env.clone(),
            source_stack: plan.source_stack.clone(),
            target_env: plan.target_env.to_string(),
            target_stack: plan.target_stack.clone(),
            template_origin: plan.template.origin.clone(),
            template_body: plan.template.body.clone(),
            parameters: plan.display_parameters(),
            databases: plan.databases.clone(),
            buckets: plan.buckets.clone(),
            scaling_groups: plan.scaling_groups.clone(),
            standby: plan.standby,
            tags: plan.tags.clone(),
            capabilities: plan.capabilities.clone(),
            extra_hooks: plan.extra_hooks.clone(),
            skip_archived: plan.skip_archived,
            template_staging: plan.template_staging.clone(),
            noecho: plan.noecho.clone(),
            inventory: plan.inventory.clone(),
        }
    }

    pub fn to_plan(&self, run_id: &str) -> Result<ClonePlan, String> {
        let template = Template::parse(&self.template_origin, &self.template_body)
            .map_err(|e| e.to_string())?;
        let mut contract = Contract::from_template(&template).map_err(|e| e.to_string())?;
        contract.hooks.append(&self.extra_hooks);
        let masked: Vec<&String> = self
            .parameters
            .iter()
            .filter(|(_, v)| v.as_str() == MASK)
            .map(|(k, _)| k)
            .collect();
        if !masked.is_empty() {
            return Err(format!(
                "the run passed NoEcho parameter(s) {masked:?}, which are never recorded; it cannot \
                 be resumed — abort it and start a new clone"
            ));
        }
        Ok(ClonePlan {
            run_id: RunId::from_existing(run_id),
            source_env: self.source_env.clone(),
            source_stack: self.source_stack.clone(),
            target_env: EnvName::parse(&self.target_env).map_err(|e| e.to_string())?,
            target_stack: self.target_stack.clone(),
            template,
            contract,
            parameters: self.parameters.clone(),
            databases: self.databases.clone(),
            buckets: self.buckets.clone(),
            scaling_groups: self.scaling_groups.clone(),
            standby: self.standby,
            tags: self.tags.clone(),
            capabilities: self.capabilities.clone(),
            extra_hooks: self.extra_hooks.clone(),
            skip_archived: self.skip_archived,
            archived: Vec::new(),
            template_staging: self.template_staging.clone(),
            noecho: self.noecho.clone(),
            inventory: self.inventory.clone(),
        })
    }
}

/// What a run created, to be removed (abort, destroy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResources {
    pub run_id: String,
    pub stack: String,
    /// Buckets the run created itself (passed to the stack by parameter).
    pub buckets: Vec<String>,
    /// Buckets it recorded before creating them (untagged if it died right after).
    pub half_made_buckets: Vec<String>,
    /// Snapshots the run took (DB snapshots and DB cluster snapshots).
    pub snapshots: Vec<(DbKind, String)>,
    /// The template the run put in S3 for CreateStack (a bucket of its own is in `buckets`).
    pub staged_templates: Vec<TemplateStaging>,
}

impl RunResources {
    /// What a run made by its recorded plan: the target stack, the buckets it creates itself
    /// (`creating`: those whose creation it recorded starting), the snapshots it takes.
    pub fn of_plan(run_id: &str, plan: &PlanRecord, creating: &[String]) -> Self {
        RunResources {
            run_id: run_id.to_string(),
            stack: plan.target_stack.clone(),
            buckets: plan
                .buckets
                .iter()
                .filter_map(|b| match &b.target {
                    BucketTarget::Created { name, .. } => Some(name.clone()),
                    BucketTarget::StackOwned { .. } => None,
                })
                .chain(
                    plan.template_staging
                        .iter()
                        .filter(|st| st.own_bucket)
                        .map(|st| st.bucket.clone()),
                )
                .collect(),
            staged_templates: plan.template_staging.iter().cloned().collect(),
            half_made_buckets: creating.to_vec(),
            snapshots: plan
                .databases
                .iter()
                .map(|d| (d.kind, d.snapshot_id.clone()))
                .collect(),
        }
    }
}

/// A clone run as recorded in the run store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneRecord {
    pub run_id: String,
    pub command: String,
    pub env: String,
    pub target_stack: String,
    pub started_at: String,
    pub phase: ClonePhase,
    pub plan: PlanRecord,
    pub standby: Vec<StandbyRecord>,
    /// Buckets whose creation the run started (recorded before the call).
    #[serde(default)]
    pub creating: Vec<String>,
    pub left_behind: Vec<String>,
}

fn save(store: &dyn RunStore, record: &CloneRecord) -> Result<(), String> {
    let value = serde_json::to_value(record).expect("records serialize");
    store
        .save(&record.run_id, &value)
        .map_err(|e| format!("could not record run {} ({e})", record.run_id))
}

pub fn load(store: &dyn RunStore, run_id: &str) -> Result<Option<CloneRecord>, String> {
    match store.load(run_id) {
        Ok(Some(v)) if v.get("command").and_then(|c| c.as_str()) == Some("clone") => {
            serde_json::from_value(v)
                .map(Some)
                .map_err(|e| format!("the record of run {run_id} is unreadable: {e}"))
        }
        Ok(_) => Ok(None),
        Err(e) => Err(format!("cannot read the record of run {run_id}: {e}")),
    }
}

impl CloneEngine {
    /// Runs a clone with its record kept in `store`: written before the first change, before
    /// each Standby, and at the end. `prior` is the record of an interrupted attempt (resume).
    pub async fn run_clone(
        &self,
        plan: &ClonePlan,
        store: &dyn RunStore,
        events: &Emitter,
        shutdown: impl Future<Output = ()>,
        prior: Option<CloneRecord>,
    ) -> Result<CloneReport, Box<CloneFailure>> {
        let record = prior.unwrap_or_else(|| CloneRecord {
            run_id: plan.run_id.to_string(),
            command: "clone".into(),
            env: plan.source_env.clone(),
            target_stack: plan.target_stack.clone(),
            started_at: self.cloud.clock.now().to_rfc3339(),
            phase: ClonePhase::Running,
            plan: PlanRecord::from_plan(plan),
            standby: Vec::new(),
            creating: Vec::new(),
            left_behind: Vec::new(),
        });
        let prior_standby = record.standby.clone();
        let record = std::sync::Mutex::new(CloneRecord {
            phase: ClonePhase::Running,
            ..record
        });
        let refuse = |message: String| {
            Box::new(CloneFailure {
                error: StepError::Refused {
                    step: "record".into(),
                    message: format!("{message}; nothing was changed"),
                },
                left_behind: Vec::new(),
                source_restored: Ok(()),
                verification: Vec::new(),
            })
        };
        save(store, &record.lock().expect("record lock")).map_err(refuse)?;
        let checkpoint = |progress: Progress<'_>| {
            let mut r = record.lock().expect("record lock");
            match progress {
                Progress::Standby(standby) => r.standby = standby.to_vec(),
                Progress::CreatingBucket(name) => {
                    if !r.creating.iter().any(|b| b == name) {
                        r.creating.push(name.to_string());
                    }
                }
            }
            save(store, &r)
        };
        let execution = Execution {
            after: StandbyAfter::Exit,
            prior_standby,
            checkpoint: &checkpoint,
        };
        let outcome = self.execute_with(plan, events, shutdown, execution).await;
        let mut r = record.into_inner().expect("record lock");
        match &outcome {
            Ok(_) => r.phase = ClonePhase::Succeeded,
            Err(f) => {
                r.phase = ClonePhase::Failed;
                r.left_behind = f.left_behind.clone();
            }
        }
        if let Err(e) = save(store, &r) {
            events.warn("record", None, e);
        }
        outcome
    }

    /// Resumes an interrupted clone: the same plan and names, so every step already done is
    /// found (by name and `envclone:run` tag) and reused, not repeated.
    pub async fn resume_clone(
        &self,
        record: CloneRecord,
        store: &dyn RunStore,
        events: &Emitter,
        shutdown: impl Future<Output = ()>,
    ) -> Result<CloneReport, Box<CloneFailure>> {
        let plan = match record.plan.to_plan(&record.run_id) {
            Ok(p) => p,
            Err(message) => {
                return Err(Box::new(CloneFailure {
                    error: StepError::Refused {
                        step: "resume".into(),
                        message,
                    },
                    left_behind: record.left_behind.clone(),
                    source_restored: Ok(()),
                    verification: Vec::new(),
                }))
            }
        };
        self.run_clone(&plan, store, events, shutdown, Some(record))
            .await
    }

    /// Undoes a clone run from its record: the source back in service, then (unless `keep`)
    /// everything the run created removed — found by the names the run derived and checked
    /// against its `envclone:run` tag, so nothing else is ever deleted. Returns what was
    /// removed; what could not be removed is an error that names it.
    pub async fn abort_clone(
        &self,
        record: &mut CloneRecord,
        store: &dyn RunStore,
        events: &Emitter,
        keep: bool,
    ) -> Result<Vec<String>, StepError> {
        let step = "abort";
        self.exit_standby(&record.standby, events)
            .await
            .map_err(|message| StepError::Refused {
                step: "standby.exit".into(),
                message,
            })?;
        let mut removed = Vec::new();
        let mut left = Vec::new();
        if !keep {
            let what = RunResources::of_plan(&record.run_id, &record.plan, &record.creating);
            (removed, left) = self.remove_run_resources(&what, events).await?;
        }
        record.phase = ClonePhase::Aborted;
        record.left_behind = left.clone();
        save(store, record).map_err(|message| StepError::Refused {
            step: step.into(),
            message,
        })?;
        if left.is_empty() {
            events.done(
                step,
                None,
                format!(
                    "run {} aborted; removed: {}",
                    record.run_id,
                    if removed.is_empty() {
                        "nothing".to_string()
                    } else {
                        removed.join(", ")
                    }
                ),
            );
            Ok(removed)
        } else {
            Err(StepError::Refused {
                step: step.into(),
                message: format!(
                    "the source is back in service, but some of what the run created remains: {}",
                    left.join("; ")
                ),
            })
        }
    }

    /// Removes what a run created: its stack (stack-owned buckets emptied first, and the final
    /// snapshot CloudFormation takes of its databases), the buckets it created, its snapshots —
    /// each only if it carries the run's `envclone:run` tag. Returns (removed, left).
    pub async fn remove_run_resources(
        &self,
        res: &RunResources,
        events: &Emitter,
    ) -> Result<(Vec<String>, Vec<String>), StepError> {
        let step = "abort";
        let mut removed = Vec::new();
        let mut left = Vec::new();
        let run = res.run_id.clone();
        let ours = |tags: &BTreeMap<String, String>| tags.get(TAG_RUN) == Some(&run);
        // The clone stack, its buckets emptied first (CloudFormation does not delete a
        // bucket that holds objects) — except those it keeps by their DeletionPolicy.
        let stacks = &self.cloud.stacks;
        let name = res.stack.clone();
        if let Some(stack) = retry(|| stacks.describe_stack(&name))
            .await
            .map_err(StepError::port(step))?
        {
            if ours(&stack.tags) {
                let resources = retry(|| stacks.resources(&name))
                    .await
                    .map_err(StepError::port(step))?;
                // The stack's databases, and the snapshots each has before the DeleteStack.
                let databases: Vec<(DbKind, &str, &str)> = resources
                    .iter()
                    .filter_map(|r| {
                        let kind = match r.resource_type.as_str() {
                            DB_INSTANCE => DbKind::Instance,
                            DB_CLUSTER => DbKind::Cluster,
                            _ => return None,
                        };
                        Some((kind, r.physical_id.as_deref()?, r.logical_id.as_str()))
                    })
                    .collect();
                // What CloudFormation will keep by its DeletionPolicy (Retain): not deleted
                // with the stack, so listed as left.
                let body = retry(|| stacks.template_body(&name))
                    .await
                    .map_err(StepError::port(step))?;
                let declared = Template::parse(&name, &body).ok();
                let kept = |r: &&StackResource| {
                    let policy = declared
                        .as_ref()
                        .and_then(|t| t.resources()?.get(&r.logical_id))
                        .and_then(|d| d.get("DeletionPolicy"));
                    r.physical_id.is_some() && deletion::policy_retains(policy)
                };
                // A bucket CloudFormation keeps keeps its objects: emptying it would leave the
                // template's retained bucket empty.
                for r in resources.iter().filter(|r| r.resource_type == BUCKET) {
                    if let (Some(bucket), false) = (&r.physical_id, kept(&r)) {
                        self.empty_bucket(bucket).await?;
                    }
                }
                let retained: Vec<String> = resources
                    .iter()
                    .filter(kept)
                    .map(|r| {
                        format!(
                            "{} {} {} (kept by its DeletionPolicy Retain when stack {name} was \
                             deleted; delete it yourself if it is not needed)",
                            r.resource_type,
                            r.logical_id,
                            r.physical_id.as_deref().unwrap_or_default()
                        )
                    })
                    .collect();
                let mut before = Vec::new();
                for (kind, db, _) in &databases {
                    let snapshots = self.cloud.databases.snapshots(*kind);
                    for snap in retry(|| snapshots.of_source(db))
                        .await
                        .map_err(StepError::port(step))?
                    {
                        before.push((*kind, snap.id));
                    }
                }
                events.start(step, Some(&name), format!("deleting stack {name}"));
                retry(|| stacks.delete_stack(&name, &[]))
                    .await
                    .map_err(StepError::port(step))?;
                let gone = self.wait_stack_deleted(&name, step).await?;
                match gone {
                    None => {
                        removed.push(format!("stack {name}"));
                        left.extend(retained);
                    }
                    Some(reason) => left.push(format!("stack {name} ({reason})")),
                }
                // A database with DeletionPolicy Snapshot (AWS's default) leaves a final
                // snapshot when its stack is deleted: made because of this DeleteStack, it is
                // removed too. It is told from a snapshot someone took of the same database by
                // both what CloudFormation does: it is new since the DeleteStack was issued,
                // and named as CloudFormation names final snapshots. Anything else of the
                // database — a user's manual snapshot, even one carrying this run's tag
                // through CopyTagsToSnapshot — is not envclone's to delete.
                for (kind, db, logical_id) in &databases {
                    let snapshots = self.cloud.databases.snapshots(*kind);
                    let now = retry(|| snapshots.of_source(db))
                        .await
                        .map_err(StepError::port(step))?;
                    for snap in now {
                        let key = (*kind, snap.id.clone());
                        if res.snapshots.contains(&key)
                            || !deletion::is_final_snapshot_name(&snap.id, &name, logical_id)
                        {
                            continue;
                        }
                        let noun = kind.snapshot_noun();
                        if before.contains(&key) {
                            left.push(format!(
                                "{noun} {} (named as CloudFormation names the final snapshot of \
                                 {db}, but it existed before this DeleteStack of {name} — an \
                                 earlier deletion of the stack?; not deleted: delete it yourself \
                                 if it is not needed)",
                                snap.id
                            ));
                            continue;
                        }
                        self.delete_snapshot_when_done(*kind, &snap.id).await?;
                        removed.push(format!(
                            "{noun} {} (taken by CloudFormation when it deleted {db})",
                            snap.id
                        ));
                    }
                }
            } else {
                left.push(format!(
                    "stack {name} (not tagged envclone:run={run}; not deleted)"
                ));
            }
        }
        for name in &res.buckets {
            let tags = retry(|| self.cloud.objects.bucket_tags(name))
                .await
                .map_err(StepError::port(step))?;
            // Untagged and recorded as being created by this run: the run died between
            // CreateBucket and PutBucketTagging.
            let half_made = |tags: &BTreeMap<String, String>| {
                tags.is_empty() && res.half_made_buckets.iter().any(|b| b == name)
            };
            match tags {
                None => {}
                Some(tags) if ours(&tags) || half_made(&tags) => {
                    self.empty_bucket(name).await?;
                    match retry(|| self.cloud.objects.delete_bucket(name)).await {
                        Ok(()) | Err(PortError::NotFound { .. }) => {
                            removed.push(format!("bucket {name}"))
                        }
                        Err(e) => left.push(format!("bucket {name} ({e})")),
                    }
                }
                Some(_) => left.push(format!(
                    "bucket {name} (not tagged envclone:run={run}; not deleted)"
                )),
            }
        }
        // A template put in the --state bucket: the key is the run's own (a bucket of the run's
        // own was removed whole above).
        for st in res.staged_templates.iter().filter(|st| !st.own_bucket) {
            let exists = retry(|| self.cloud.objects.get_small_object(&st.bucket, &st.key))
                .await
                .map_err(StepError::port(step))?
                .is_some();
            if exists {
                match retry(|| self.cloud.objects.delete_object(&st.bucket, &st.key)).await {
                    Ok(()) | Err(PortError::NotFound { .. }) => {
                        removed.push(format!("staged template s3://{}/{}", st.bucket, st.key))
                    }
                    Err(e) => left.push(format!(
                        "staged template s3://{}/{} ({e})",
                        st.bucket, st.key
                    )),
                }
            }
        }
        for (kind, id) in &res.snapshots {
            let noun = kind.snapshot_noun();
            let snapshots = self.cloud.databases.snapshots(*kind);
            let snapshot = retry(|| snapshots.describe(id))
                .await
                .map_err(StepError::port(step))?;
            match snapshot {
                None => {}
                Some(s) if ours(&s.tags) => match self.delete_snapshot_when_done(*kind, id).await {
                    Ok(()) => removed.push(format!("{noun} {id}")),
                    Err(e) => left.push(format!("{noun} {id} ({e})")),
                },
                Some(_) => left.push(format!(
                    "{noun} {id} (not tagged envclone:run={run}; not deleted)"
                )),
            }
        }
        Ok((removed, left))
    }

    /// Deletes a snapshot once it is no longer being taken (one in progress cannot be deleted).
    async fn delete_snapshot_when_done(&self, kind: DbKind, id: &str) -> Result<(), StepError> {
        let snapshots = self.cloud.databases.snapshots(kind);
        let what = format!("{} {id} to finish before deleting it", kind.snapshot_noun());
        wait_until(&what, self.settings.snapshot_timeout, || async {
            Ok(match snapshots.describe(id).await? {
                Some(s) if s.status == "creating" => Poll::Pending(s.status),
                _ => Poll::Ready(()),
            })
        })
        .await
        .map_err(StepError::wait("abort"))?;
        match retry(|| snapshots.delete(id)).await {
            Ok(()) | Err(PortError::NotFound { .. }) => Ok(()),
            Err(e) => Err(StepError::port("abort")(e)),
        }
    }

    /// Deletes every object version and delete marker of a bucket (see
    /// [`crate::s3sync::empty_bucket`]).
    async fn empty_bucket(&self, bucket: &str) -> Result<(), StepError> {
        crate::s3sync::empty_bucket(self.cloud.objects.as_ref(), bucket)
            .await
            .map(|_| ())
            .map_err(StepError::port("abort"))
    }
}
