//! Crash safety of clone runs: the run's record (its plan and what it put into Standby,
//! written before each change that needs undoing), and `abort` / `resume` working from that
//! record and from what AWS shows — names derived from the run id and the `envclone:run` tag —
//! so they are right whatever moment the process died at.

use std::collections::BTreeMap;
use std::future::Future;

use crate::contract::Template;
use crate::events::Emitter;
use crate::journal::RunStore;
use crate::model::TAG_RUN;
use crate::ports::{PortError, StackResource};
use crate::retry::retry;

use super::clone::{CloneEngine, CloneFailure, CloneReport, Execution, Progress, StandbyAfter};
use super::plan::ClonePlan;
use super::record::RunRecord;
pub use super::record::{ClonePhase, CloneRecord, PlanRecord, RunResources};
use super::resource::{self, Doomed, RefKind, Removal, ResourceRef, RunScope};
use super::resources;
use super::{deletion, StepError};

impl RunResources {
    /// What a run made by its recorded plan: the target stack, what each kind makes (the
    /// buckets it creates itself, the snapshots it takes), its staged template; `creating`:
    /// the buckets whose creation it recorded starting.
    pub fn of_plan(run_id: &str, plan: &PlanRecord, creating: &[String]) -> Self {
        let staging_buckets = plan
            .template_staging
            .iter()
            .filter(|st| st.own_bucket)
            .map(|st| ResourceRef::new(resources::BUCKET, st.bucket.clone()));
        let artifacts: Vec<ResourceRef> = resources::KINDS
            .iter()
            .flat_map(|k| k.artifacts(plan))
            .chain(staging_buckets)
            .collect();
        RunResources {
            run_id: run_id.to_string(),
            stack: plan.target_stack.clone(),
            artifacts,
            creating: creating.to_vec(),
            staged_templates: plan.template_staging.iter().cloned().collect(),
            batch_buckets: plan
                .buckets
                .iter()
                .filter(|b| b.batch.is_some())
                .cloned()
                .collect(),
        }
    }
}

fn save(store: &dyn RunStore, record: &CloneRecord) -> Result<(), String> {
    RunRecord::Clone(record.clone())
        .save(store)
        .map_err(|e| format!("could not record run {} ({e})", record.run_id))
}

/// The record of clone run `run_id`; None if there is none or the run is a migration.
pub fn load(store: &dyn RunStore, run_id: &str) -> Result<Option<CloneRecord>, String> {
    Ok(RunRecord::load(store, run_id)?.and_then(RunRecord::into_clone))
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
            env: plan.source_env.clone(),
            target_stack: plan.target_stack.clone(),
            started_at: self.cloud.clock.now().to_rfc3339(),
            phase: ClonePhase::Running,
            plan: PlanRecord::from_plan(plan),
            standby: Vec::new(),
            creating: Vec::new(),
            left_behind: Vec::new(),
            window: None,
        });
        let prior_standby = record.standby.clone();
        let prior_window = record.window;
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
                Progress::Window(mark) => r.window = Some(*mark),
            }
            save(store, &r)
        };
        let execution = Execution {
            after: StandbyAfter::Exit,
            prior_standby,
            prior_window,
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
    ) -> Result<Vec<ResourceRef>, StepError> {
        let step = "abort";
        self.exit_standby(&record.standby, events)
            .await
            .map_err(|message| StepError::Refused {
                step: "standby.exit".into(),
                message,
            })?;
        let what = RunResources::of_plan(&record.run_id, &record.plan, &record.creating);
        let (removed, left) = if keep {
            // Kept copies are the operator's to use: a job of the run left running would go
            // on writing into a bucket taken as settled, so it is cancelled (what it copied
            // stays).
            (
                super::batchcopy::cancel_jobs(self, &what, events).await?,
                Vec::new(),
            )
        } else {
            self.remove_run_resources(&what, events).await?
        };
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
                        resource::join(&removed, ", ")
                    }
                ),
            );
            Ok(removed)
        } else {
            Err(StepError::Refused {
                step: step.into(),
                message: format!(
                    "the source is back in service, but some of what the run created remains: {}",
                    resource::join(&left, "; ")
                ),
            })
        }
    }

    /// Removes what a run created: its stack (each kind prepares the deletion: buckets
    /// emptied, the final snapshots CloudFormation takes of its databases removed after), then
    /// what the run made outside it (`RunResources::artifacts`, each removed by its kind) —
    /// each only if it carries the run's `envclone:run` tag. Returns (removed, left).
    pub async fn remove_run_resources(
        &self,
        res: &RunResources,
        events: &Emitter,
    ) -> Result<(Vec<ResourceRef>, Vec<ResourceRef>), StepError> {
        let step = "abort";
        // A job still copying would write into the buckets about to be emptied.
        let mut out = Removal {
            removed: super::batchcopy::cancel_jobs(self, res, events).await?,
            ..Removal::default()
        };
        let run = res.run_id.clone();
        let ours = |tags: &BTreeMap<String, String>| tags.get(TAG_RUN) == Some(&run);
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
                // What CloudFormation will keep by its DeletionPolicy (Retain): not deleted
                // with the stack, so listed as left.
                let body = retry(|| stacks.template_body(&name))
                    .await
                    .map_err(StepError::port(step))?;
                let declared = Template::parse(&name, &body).ok();
                let kept = |r: &StackResource| {
                    let policy = declared
                        .as_ref()
                        .and_then(|t| t.resources()?.get(&r.logical_id))
                        .and_then(|d| d.get("DeletionPolicy"));
                    r.physical_id.is_some() && deletion::policy_retains(policy)
                };
                let retained: Vec<ResourceRef> = resources
                    .iter()
                    .filter(|r| kept(r))
                    .map(|r| {
                        ResourceRef::new(
                            RefKind::resource_type(&r.resource_type),
                            format!(
                                "{} {}",
                                r.logical_id,
                                r.physical_id.as_deref().unwrap_or_default()
                            ),
                        )
                        .with_note(format!(
                            "kept by its DeletionPolicy Retain when stack {name} was deleted; \
                             delete it yourself if it is not needed"
                        ))
                    })
                    .collect();
                // Each kind's resources of the stack, and what each needs after the deletion.
                let mut prepared = Vec::new();
                for kind in resources::KINDS {
                    let doomed: Vec<Doomed<'_>> = resources
                        .iter()
                        .filter(|r| {
                            kind.stack_types()
                                .iter()
                                .any(|(t, _)| *t == r.resource_type)
                        })
                        .map(|r| Doomed {
                            resource: r,
                            kept: kept(r),
                        })
                        .collect();
                    let before = kind.before_stack_delete(self, &doomed).await?;
                    prepared.push((kind, doomed, before));
                }
                events.start(step, Some(&name), format!("deleting stack {name}"));
                retry(|| stacks.delete_stack(&name, &[]))
                    .await
                    .map_err(StepError::port(step))?;
                let stack_ref = ResourceRef::new(resource::STACK, name.clone());
                match self.wait_stack_deleted(&name, step).await? {
                    None => {
                        out.removed.push(stack_ref);
                        out.left.extend(retained);
                    }
                    Some(reason) => out.left.push(stack_ref.with_note(reason)),
                }
                for (kind, doomed, before) in prepared {
                    kind.after_stack_delete(self, &name, &doomed, before, &res.artifacts, &mut out)
                        .await?;
                }
            } else {
                out.left.push(
                    ResourceRef::new(resource::STACK, name.clone())
                        .with_note(format!("not tagged envclone:run={run}; not deleted")),
                );
            }
        }
        let scope = RunScope {
            run_id: &res.run_id,
            creating: &res.creating,
        };
        let (buckets, others): (Vec<&ResourceRef>, Vec<&ResourceRef>) = res
            .artifacts
            .iter()
            .partition(|r| r.kind == resources::BUCKET);
        for what in &buckets {
            self.remove_artifact(what, scope, &mut out).await?;
        }
        // A template put in the --state bucket: the key is the run's own (a bucket of the run's
        // own was removed whole above).
        for st in res.staged_templates.iter().filter(|st| !st.own_bucket) {
            let exists = retry(|| self.cloud.objects.get_small_object(&st.bucket, &st.key))
                .await
                .map_err(StepError::port(step))?
                .is_some();
            if exists {
                let r = super::clone::staged_template(st);
                match retry(|| self.cloud.objects.delete_object(&st.bucket, &st.key)).await {
                    Ok(()) | Err(PortError::NotFound { .. }) => out.removed.push(r),
                    Err(e) => out.left.push(r.with_note(e.to_string())),
                }
            }
        }
        for what in &others {
            self.remove_artifact(what, scope, &mut out).await?;
        }
        Ok((out.removed, out.left))
    }

    /// Removes one thing a run made, by the kind that makes it.
    async fn remove_artifact(
        &self,
        what: &ResourceRef,
        scope: RunScope<'_>,
        out: &mut Removal,
    ) -> Result<(), StepError> {
        match resources::maker_of(&what.kind) {
            Some(kind) => kind.remove(self, what, scope, out).await,
            None => Err(StepError::Refused {
                step: "abort".into(),
                message: format!(
                    "{what}: no kind of resource makes a {}; not removed (a bug: report it)",
                    what.kind.as_str()
                ),
            }),
        }
    }
}
