//! Running a clone: preflight (read-only), Standby, snapshots ∥ bucket copies, the clone stack,
//! verification, and the return of the source to service on every path.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures::future::{try_join, try_join_all};
use serde::Serialize;

use crate::contract::{Template, VerifyCheck, ASG, DB_CLUSTER, DB_INSTANCE};
use crate::events::Emitter;
use crate::model::{RunId, TAG_CFN_IDENTIFIER, TAG_ENVIRONMENT, TAG_OPEN_MIGRATION, TAG_RUN};
use crate::ports::{
    CreateStackRequest, DbKind, DnsRecord, PortError, StackInfo, StackResource, StackStatus,
    TemplateSource, TEMPLATE_BODY_MAX,
};
use crate::retry::{retry, wait_until, Poll};
use crate::s3sync::{self, VerifyReport};

use super::plan::{
    ClonePlan, CloneRequest, NestedResource, SourceEnv, TemplateStaging, NESTED_STACK,
    PURPOSE_TEMPLATE_STAGING, STAGING_BUCKET_PREFIX, TAG_PURPOSE,
};
use super::planner::build_plan;
use super::resource::{self, Checked, CopyRun, Outcome, ResourceRef};
use super::resources;
use super::window::{QuietWindow, WindowMark, WindowReport};

pub use super::engine::{
    BucketOutcome, CheckResult, Checkpoint, CloneEngine, CopyOutcome, Created, Progress, Settings,
    StandbyRecord,
};
use super::{PreflightError, StepError};

/// The reference of a template a run staged in S3.
pub fn staged_template(st: &TemplateStaging) -> ResourceRef {
    ResourceRef::new(
        resource::STAGED_TEMPLATE,
        format!("s3://{}/{}", st.bucket, st.key),
    )
}

/// How far this machine's clock may be from S3's when T is picked (`s3sync::as_of_point`):
/// EC2 instances and most hosts run NTP (Amazon Time Sync), well within it.
pub const CLOCK_UNCERTAINTY: Duration = Duration::from_secs(1);

pub use super::plan::StandbyAfter;

/// How `execute_with` runs.
pub struct Execution<'a> {
    pub after: StandbyAfter,
    /// Standby records of an earlier attempt of the same run (resume).
    pub prior_standby: Vec<StandbyRecord>,
    /// The window of an earlier attempt of the same run (resume): its T is reused.
    pub prior_window: Option<WindowMark>,
    pub checkpoint: Checkpoint<'a>,
}

/// The scaling processes that launch, terminate or replace instances on their own while the
/// source is in Standby (scheduled actions, target tracking alarms, AZRebalance,
/// ReplaceUnhealthy): suspended for the run ("Suspend and resume Amazon EC2 Auto Scaling
/// processes", EC2 Auto Scaling User Guide). HealthCheck, AddToLoadBalancer and
/// InstanceRefresh are left alone.
pub const SCALING_PROCESSES: &[&str] = &[
    "Launch",
    "Terminate",
    "AZRebalance",
    "ScheduledActions",
    "AlarmNotification",
    "ReplaceUnhealthy",
];

/// EnterStandby and ExitStandby take at most 20 instance ids a call (AutoScaling API
/// Reference, EnterStandby/ExitStandby `InstanceIds`).
pub const STANDBY_BATCH: usize = 20;

/// How long an instance back from Standby may sit in `Pending:Wait` (a launch lifecycle hook)
/// before envclone stops waiting for it and reports it: the hook's own timeout (an hour by
/// default) decides its fate, not envclone.
pub const LIFECYCLE_HOOK_GRACE: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, Serialize)]
pub struct CloneReport {
    pub run_id: String,
    pub source: String,
    pub target: String,
    pub stack_id: String,
    pub snapshots: Vec<String>,
    pub buckets: Vec<BucketOutcome>,
    pub verification: Vec<CheckResult>,
    pub bucket_reports: Vec<VerifyReport>,
    pub standby: Vec<StandbyRecord>,
    /// What the clone stack created, classified at preflight: what it created empty.
    pub inventory: super::inventory::Inventory,
    /// The copies of the kinds without a field of their own above (DynamoDB tables); absent
    /// from the JSON when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<CopyOutcome>,
    /// The source's time out of service: T, how long, what ran inside (absent without
    /// Standby).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowReport>,
}

impl CloneReport {
    /// What the run copied, as the kinds produced it (`ResourceKind::record_clone` reads its
    /// own): the snapshots, in the contract's order, the buckets, then the other copies.
    pub fn outcomes(&self) -> Vec<Outcome> {
        let snapshots =
            self.snapshots
                .iter()
                .enumerate()
                .map(|(position, label)| Outcome::Snapshot {
                    position,
                    label: label.clone(),
                });
        let buckets = self.buckets.iter().cloned().map(Outcome::Bucket);
        let copies = self.copies.iter().cloned().map(Outcome::Copy);
        snapshots.chain(buckets).chain(copies).collect()
    }
}

/// What a failed run changed and what it left behind.
#[derive(Debug)]
pub struct CloneFailure {
    pub error: StepError,
    /// Resources the run created that still exist (tagged with the run id).
    pub left_behind: Vec<ResourceRef>,
    /// Whether the source's instances are back in service; if not, what is still in Standby.
    pub source_restored: Result<(), String>,
    pub verification: Vec<CheckResult>,
}

impl CloneEngine {
    /// Finds the environment: a stack of that name, or the one stack tagged
    /// `envclone:environment=NAME`.
    pub async fn resolve(&self, env: &str) -> Result<SourceEnv, PreflightError> {
        let stacks = &self.cloud.stacks;
        let stack = match retry(|| stacks.describe_stack(env)).await? {
            Some(s) => s,
            None => {
                let mut tagged = retry(|| stacks.find_stacks_by_tag(TAG_ENVIRONMENT, env)).await?;
                match tagged.len() {
                    0 => {
                        return Err(PreflightError::UnknownSource {
                            name: env.to_string(),
                        })
                    }
                    1 => tagged.remove(0),
                    _ => {
                        return Err(PreflightError::AmbiguousSource {
                            name: env.to_string(),
                            stacks: tagged.into_iter().map(|s| s.name).collect(),
                        })
                    }
                }
            }
        };
        if !stack.status.is_usable() {
            return Err(PreflightError::SourceNotReady {
                stack: stack.name.clone(),
                status: stack.status.to_string(),
            });
        }
        let body = retry(|| stacks.template_body(&stack.name)).await?;
        let template = Template::parse(&format!("stack {}", stack.name), &body)?;
        let mut resources = retry(|| stacks.resources(&stack.name)).await?;
        self.follow_renamed_databases(&mut resources).await?;
        let nested = self.nested_resources(&resources).await?;
        Ok(SourceEnv {
            env_name: env.to_string(),
            stack,
            template,
            resources,
            nested,
        })
    }

    /// The resources of the stack's nested stacks (`AWS::CloudFormation::Stack`), and of
    /// theirs, each with the chain of nested stacks it is in (ListStackResources on each nested
    /// stack's physical id, its stack id).
    async fn nested_resources(
        &self,
        resources: &[StackResource],
    ) -> Result<Vec<NestedResource>, PreflightError> {
        let stacks = &self.cloud.stacks;
        let mut out = Vec::new();
        let mut queue: Vec<(Vec<String>, String)> = resources
            .iter()
            .filter(|r| r.resource_type == NESTED_STACK)
            .filter_map(|r| Some((vec![r.logical_id.clone()], r.physical_id.clone()?)))
            .collect();
        while let Some((path, stack_id)) = queue.pop() {
            let inner = retry(|| stacks.resources(&stack_id)).await?;
            for r in inner {
                if r.resource_type == NESTED_STACK {
                    if let Some(id) = &r.physical_id {
                        let mut deeper = path.clone();
                        deeper.push(r.logical_id.clone());
                        queue.push((deeper, id.clone()));
                    }
                }
                out.push(NestedResource {
                    nested_stack: path.join("/"),
                    nested_stack_id: stack_id.clone(),
                    resource: r,
                });
            }
        }
        Ok(out)
    }

    /// Refuses a source whose nested stacks hold a resource of a kind envclone copies or puts
    /// into Standby (DB instance or cluster, bucket, Auto Scaling group): the contract names
    /// only the top-level stack's logical ids, so the clone's nested stack — created from the
    /// same TemplateURL — would make such a database or bucket empty, or leave such a group
    /// serving (and writing) during the snapshot.
    fn refuse_uncovered_nested(source: &SourceEnv) -> Result<(), PreflightError> {
        let uncovered: Vec<String> = source
            .nested
            .iter()
            .filter(|n| {
                let t = n.resource.resource_type.as_str();
                resources::of_type(t).is_some() || t == ASG
            })
            .map(|n| {
                format!(
                    "{} {} ({}) in nested stack {} ({})",
                    n.resource.resource_type,
                    n.resource.logical_id,
                    n.resource.physical_id.as_deref().unwrap_or("not created"),
                    n.nested_stack,
                    n.nested_stack_id
                )
            })
            .collect();
        if uncovered.is_empty() {
            return Ok(());
        }
        Err(PreflightError::Unsupported {
            what: format!(
                "stack {} has stateful resources inside nested stacks: {}. envclone's contract \
                 names only the top-level stack's resources, and the clone's nested stacks are \
                 created from the same TemplateURLs, so these would be created empty (databases, \
                 buckets) or keep serving during the snapshot (Auto Scaling groups); nothing was \
                 changed. Move them into the top-level stack to clone this environment",
                source.stack.name,
                uncovered.join("; ")
            ),
        })
    }

    /// CloudFormation keeps the identifier it created a database with; after a migration's
    /// swap the new stack's record names the temporary identifier, which no longer exists. The
    /// swap tagged the live database with that recorded name (`envclone:cfn-identifier`), so
    /// a migrated environment's databases are found through the tag.
    async fn follow_renamed_databases(
        &self,
        resources: &mut [StackResource],
    ) -> Result<(), PreflightError> {
        let dbs = &self.cloud.databases;
        for r in resources.iter_mut() {
            let kind = match r.resource_type.as_str() {
                DB_INSTANCE => DbKind::Instance,
                DB_CLUSTER => DbKind::Cluster,
                _ => continue,
            };
            let Some(recorded) = r.physical_id.clone() else {
                continue;
            };
            if retry(|| dbs.status_of(kind, &recorded)).await?.is_some() {
                continue;
            }
            let live = retry(|| dbs.tagged(kind, TAG_CFN_IDENTIFIER, &recorded)).await?;
            match live.as_slice() {
                [] => {} // missing: preflight says so
                [live] => r.physical_id = Some(live.clone()),
                several => {
                    return Err(PreflightError::Unsupported {
                        what: format!(
                            "databases {several:?} all claim to be {recorded} (tag \
                             {TAG_CFN_IDENTIFIER}={recorded}), the {} of the stack; remove the \
                             tag from the ones that are not",
                            r.logical_id
                        ),
                    })
                }
            }
        }
        Ok(())
    }

    /// Refuses an environment with a migration swapped but not finalized: between the swap
    /// and finalize (or abort) its databases are in flux and its old stack's record names the
    /// live database. Read from AWS (the databases' `envclone:open-migration` tag), so it holds
    /// whatever machine ran the migration.
    pub async fn refuse_open_migration(&self, source: &SourceEnv) -> Result<(), PreflightError> {
        match self.open_migration(&source.resources).await? {
            Some((run_id, database)) => Err(PreflightError::OpenMigration {
                env: source.env_name.clone(),
                run_id,
                database,
            }),
            None => Ok(()),
        }
    }

    /// The open migration (run id, database carrying the tag) of a stack, if any.
    pub async fn open_migration_of_stack(
        &self,
        stack: &str,
    ) -> Result<Option<(String, String)>, PortError> {
        let mut resources = retry(|| self.cloud.stacks.resources(stack)).await?;
        match self.follow_renamed_databases(&mut resources).await {
            Ok(()) => {}
            Err(PreflightError::Aws(e)) => return Err(e),
            Err(_) => {} // ambiguous tags: the recorded identifiers are checked as they are
        }
        self.open_migration(&resources).await
    }

    async fn open_migration(
        &self,
        resources: &[StackResource],
    ) -> Result<Option<(String, String)>, PortError> {
        let dbs = &self.cloud.databases;
        for r in resources {
            let Some(id) = &r.physical_id else { continue };
            let tags = match r.resource_type.as_str() {
                DB_INSTANCE => retry(|| dbs.describe_instance(id)).await?.map(|d| d.tags),
                DB_CLUSTER => retry(|| dbs.describe_cluster(id)).await?.map(|c| c.tags),
                _ => continue,
            };
            if let Some(run_id) = tags.and_then(|t| t.get(TAG_OPEN_MIGRATION).cloned()) {
                return Ok(Some((run_id, id.clone())));
            }
        }
        Ok(None)
    }

    /// Everything that can be checked before the first change. Read-only.
    pub async fn preflight(
        &self,
        request: &CloneRequest,
        run_id: RunId,
    ) -> Result<ClonePlan, PreflightError> {
        let source = self.resolve(&request.source).await?;
        self.refuse_open_migration(&source).await?;
        Self::refuse_uncovered_nested(&source)?;
        let template = match &request.template {
            Some((path, body)) => Template::parse(path, body)?,
            None => source.template.clone(),
        };
        let mut plan = build_plan(request, &source, template, run_id)?;
        super::batchcopy::plan_batch(&mut plan, &self.settings.batch)?;
        let cloud = &self.cloud;
        plan.template_staging = self.template_staging(&plan, &source).await?;

        // The target must be free: stack name, environment tag, and the names it will use.
        if retry(|| cloud.stacks.describe_stack(&plan.target_stack))
            .await?
            .is_some()
        {
            return Err(PreflightError::TargetExists {
                what: format!("stack {}", plan.target_stack),
            });
        }
        let tagged = retry(|| {
            cloud
                .stacks
                .find_stacks_by_tag(TAG_ENVIRONMENT, plan.target_env.as_str())
        })
        .await?;
        if let Some(s) = tagged.first() {
            return Err(PreflightError::TargetExists {
                what: format!("environment {} (stack {})", plan.target_env, s.name),
            });
        }
        // Each kind checks its resources (the source's exist and can be copied, the names the
        // run will use are free), in the order of `resources::KINDS`: the databases, the
        // buckets (recording in the plan which keep versions and what is archived), the
        // tables, the groups.
        plan.skip_archived = self.settings.sync.skip_archived;
        for kind in resources::KINDS {
            kind.preflight(self, &source, &mut plan).await?;
        }
        Ok(plan)
    }

    /// Runs the plan. The source returns to service on every path, including `shutdown`
    /// (Ctrl-C) firing.
    pub async fn execute(
        &self,
        plan: &ClonePlan,
        events: &Emitter,
        shutdown: impl Future<Output = ()>,
    ) -> Result<CloneReport, Box<CloneFailure>> {
        let no_checkpoint = |_: Progress<'_>| Ok(());
        self.execute_with(
            plan,
            events,
            shutdown,
            Execution {
                after: StandbyAfter::Exit,
                prior_standby: Vec::new(),
                prior_window: None,
                checkpoint: &no_checkpoint,
            },
        )
        .await
    }

    /// Runs the plan; with `StandbyAfter::Keep` a successful run leaves the source in Standby
    /// (migrate swaps next) and returns the records needed to bring it back.
    pub async fn execute_with(
        &self,
        plan: &ClonePlan,
        events: &Emitter,
        shutdown: impl Future<Output = ()>,
        execution: Execution<'_>,
    ) -> Result<CloneReport, Box<CloneFailure>> {
        let after = execution.after;
        let checkpoint = execution.checkpoint;
        let created = Created::default();
        let dns_before = self.entry_dns_records(plan).await;
        let needs = super::planner::needs_of(plan);
        // The window closes before the clone is verified only in a clone (migrate keeps its
        // source in Standby through the swap: its promise is that no write is lost between
        // the copy and the swap), with Standby, and when nothing needs the whole window.
        let closes_early = plan.standby && after == StandbyAfter::Exit && needs.whole.is_empty();

        // A resumed run whose window had already ended: the source serves since, so it is not
        // put into Standby again; the run goes on as of the T it recorded. Only snapshots
        // (found by name, their point fixed at T) and versioned buckets (read as of T) can be
        // taken up again that way: a copy made inside the window from a bucket that keeps no
        // versions cannot be made again as of T.
        let resumed_after_window = execution.prior_window.filter(|m| m.ended.is_some());
        if let Some(m) = resumed_after_window {
            let lost: Vec<&super::window::WindowItem> = needs
                .inside
                .iter()
                .filter(|i| !i.redone_after_the_window())
                .collect();
            if !lost.is_empty() || !closes_early {
                let message = format!(
                    "the source returned to service at {} after its window (T = {}); {} cannot \
                     be made again as of T from a source that has served since. Run `envclone \
                     abort {}` and clone again",
                    m.ended.map(|e| e.to_rfc3339()).unwrap_or_default(),
                    m.t.to_rfc3339(),
                    if lost.is_empty() {
                        "the copies the plan makes inside the window".to_string()
                    } else {
                        super::window::list(&lost)
                    },
                    plan.run_id
                );
                return Err(Box::new(CloneFailure {
                    error: StepError::Refused {
                        step: "resume".into(),
                        message,
                    },
                    left_behind: Vec::new(),
                    source_restored: Ok(()),
                    verification: Vec::new(),
                }));
            }
            events.info(
                "window",
                None,
                format!(
                    "resuming after the window ended at {}: the source keeps serving; the clone \
                     is taken as of T = {}",
                    m.ended.map(|e| e.to_rfc3339()).unwrap_or_default(),
                    m.t.to_rfc3339()
                ),
            );
        }

        // A resumed run starts with the instances its first attempt put into Standby.
        let mut standby = execution.prior_standby;
        tokio::pin!(shutdown);
        let precopied = if self.settings.precopy && plan.standby && standby.is_empty() {
            tokio::select! {
                r = self.precopy(plan, events, &created, checkpoint) => r,
                () = &mut shutdown => Err(StepError::Interrupted { step: "bucket.precopy".into() }),
            }
        } else {
            Ok(Vec::new())
        };
        let precopies = precopied.as_ref().map(Vec::clone).unwrap_or_default();
        let entered_at = self.cloud.clock.now();
        let entered = if let Err(e) = precopied {
            Err(e)
        } else if resumed_after_window.is_some() {
            Ok(())
        } else if plan.standby {
            self.enter_standby(&plan.scaling_groups, events, &mut standby, checkpoint)
                .await
        } else {
            events.warn(
                "standby",
                None,
                "--no-standby: the source keeps serving while it is copied; the clone is \
                 crash-consistent (writes during the copy may be partly in it)",
            );
            Ok(())
        };

        // Quiesce hooks run on the source once it is in Standby (Standby alone does not stop
        // background jobs from writing).
        let entered = match entered {
            Ok(()) if !plan.contract.hooks.quiesce.is_empty() && resumed_after_window.is_none() => {
                self.run_hooks(
                    "quiesce",
                    &plan.contract.hooks.quiesce,
                    &plan.source_stack,
                    plan.run_id.as_str(),
                    events,
                )
                .await
            }
            other => other,
        };

        // T: the source is quiet from now on (Standby and the quiesce hooks done). Recorded
        // before any copy, so a resumed run takes the same T.
        let mut mark = None;
        let entered = match entered {
            Ok(()) if plan.standby => {
                let point = execution.prior_window.map_or_else(
                    || s3sync::as_of_point(self.cloud.clock.now(), CLOCK_UNCERTAINTY),
                    |m| m.point(),
                );
                let m = WindowMark {
                    t: point.t,
                    quiet_until: point.quiet_until,
                    ended: resumed_after_window.and_then(|m| m.ended),
                };
                mark = Some(m);
                events.info(
                    "window",
                    None,
                    format!(
                        "T = {}: the clone is taken as of this moment{}",
                        point.t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        if closes_early {
                            format!(
                                "; the source returns to service once {}",
                                super::window::until(&needs.inside)
                            )
                        } else if after == StandbyAfter::Keep {
                            "; migrate keeps the source in Standby through the swap".to_string()
                        } else {
                            format!(
                                "; the source stays in Standby until the clone is verified: {}",
                                super::window::list(&needs.whole)
                            )
                        }
                    ),
                );
                checkpoint(Progress::Window(&m)).map_err(|message| StepError::Refused {
                    step: "window".into(),
                    message: format!("{message}; stopping before the copies"),
                })
            }
            other => other,
        };
        let window = match mark {
            Some(m) if closes_early => {
                QuietWindow::new(Some(m.point()), true, needs.inside.clone())
            }
            _ => QuietWindow::whole(),
        }
        .at(mark.map(|m| m.t));

        // The window closes while the copy goes on: once the kinds have done what they do
        // inside it and the quiet period around T is over, the source returns to service.
        let exiting = std::sync::atomic::AtomicBool::new(false);
        let standby_ref = &standby;
        let release = async {
            window.released().await;
            let quiet_until = mark.map(|m| m.quiet_until).unwrap_or_default();
            loop {
                let now = self.cloud.clock.now();
                if now >= quiet_until {
                    break;
                }
                let left = (quiet_until - now).to_std().unwrap_or_default();
                tokio::time::sleep(left.max(Duration::from_millis(10))).await;
            }
            exiting.store(true, std::sync::atomic::Ordering::SeqCst);
            events.info(
                "window",
                None,
                "everything the clone reads from a quiet source is read: returning the source \
                 to service while the copy goes on",
            );
            let restored = self.exit_standby(standby_ref, events).await;
            let at = self.cloud.clock.now();
            if restored.is_ok() {
                if let Some(m) = mark {
                    let ended = WindowMark {
                        ended: Some(at),
                        ..m
                    };
                    if let Err(e) = checkpoint(Progress::Window(&ended)) {
                        events.warn("record", None, e);
                    }
                }
            }
            (restored, at)
        };
        tokio::pin!(release);
        let mut early_exit: Option<(Result<(), String>, chrono::DateTime<chrono::Utc>)> = None;

        let mut verification = Vec::new();
        let outcome = match entered {
            Err(e) => Err(e),
            Ok(()) => {
                let body = self.clone_and_verify(
                    plan,
                    events,
                    &created,
                    &mut verification,
                    checkpoint,
                    &window,
                );
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let body = crate::retry::stoppable(stop.clone(), body);
                tokio::pin!(body);
                let mut interrupted = false;
                let result = loop {
                    tokio::select! {
                        r = &mut body => break r,
                        (r, at) = &mut release, if early_exit.is_none() && !interrupted => {
                            early_exit = Some((r, at));
                        }
                        () = &mut shutdown, if !interrupted => {
                            // Finish the call in flight (its result is recorded like any
                            // other), start no new one, then return the source to service
                            // below.
                            events.warn("clone", None, "interrupted: finishing the call in flight, then returning the source to service");
                            stop.store(true, std::sync::atomic::Ordering::SeqCst);
                            interrupted = true;
                        }
                    }
                };
                if interrupted {
                    result.map_err(|e| StepError::Interrupted {
                        step: format!("clone ({e})"),
                    })
                } else {
                    result
                }
            }
        };
        // A return to service under way when the body ended is finished, not dropped.
        if early_exit.is_none() && exiting.load(std::sync::atomic::Ordering::SeqCst) {
            early_exit = Some((&mut release).await);
        }

        if outcome.is_ok() {
            if let Some(before) = &dns_before {
                let after = self.entry_dns_records(plan).await;
                let ok = after.as_ref() == Some(before);
                verification.push(CheckResult {
                    check: "entry DNS record untouched".into(),
                    ok,
                    detail: before
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                });
            }
        }

        // Exactly once on every path: the early return to service, or this one.
        let keep = after == StandbyAfter::Keep && outcome.is_ok();
        let (restored, exited_at) = match early_exit {
            Some((r, at)) => (r, Some(at)),
            None if keep => (Ok(()), None),
            None => {
                let r = self.exit_standby(&standby, events).await;
                (r, Some(self.cloud.clock.now()))
            }
        };
        let window_report = mark.map(|m| WindowReport {
            t: m.t,
            entered: entered_at,
            exited: exited_at,
            seconds: exited_at.map(|e| (e - entered_at).num_milliseconds() as f64 / 1000.0),
            inside: if closes_early {
                needs.inside.iter().map(ToString::to_string).collect()
            } else {
                vec!["the whole clone: every copy, the clone stack and its verification".into()]
            },
            whole: if after == StandbyAfter::Keep {
                vec!["migrate keeps the source in Standby through the swap".into()]
            } else {
                needs.whole.iter().map(ToString::to_string).collect()
            },
            outside: needs.outside.clone(),
        });
        match outcome {
            Ok(mut report) => {
                if let Err(left) = restored {
                    return Err(Box::new(CloneFailure {
                        error: StepError::Refused {
                            step: "standby.exit".into(),
                            message: left.clone(),
                        },
                        left_behind: created.list(),
                        source_restored: Err(left),
                        verification,
                    }));
                }
                report.verification = verification;
                for b in &mut report.buckets {
                    b.precopy = precopies.iter().find_map(|p| match p {
                        resource::Outcome::Bucket(p) if p.target == b.target => {
                            Some(p.stats.clone())
                        }
                        _ => None,
                    });
                }
                report.standby = standby.clone();
                report.window = window_report;
                Ok(report)
            }
            Err(error) => {
                events.failed("clone", None, error.to_string());
                // A batch job of the run goes on copying after the run stopped: named.
                let mut left_behind = created.list();
                left_behind.extend(super::batchcopy::left_running(self, plan, events).await);
                Err(Box::new(CloneFailure {
                    error,
                    left_behind,
                    source_restored: restored,
                    verification,
                }))
            }
        }
    }

    /// The entry record's records, whole (None when its zone cannot be found unambiguously:
    /// a clone does not need it).
    async fn entry_dns_records(&self, plan: &ClonePlan) -> Option<Vec<DnsRecord>> {
        let dns = plan.contract.entry_dns.as_ref()?;
        let zone = self.entry_zone(dns).await.ok()?;
        retry(|| self.cloud.dns.records(&zone.id, &dns.name))
            .await
            .ok()
    }

    /// Puts the InService instances of `groups` into Standby, recording each group before it
    /// is touched so a failure part-way can still return everything to service.
    ///
    /// The group's scaling processes are suspended first (recorded before the call): a group
    /// keeps scaling during Standby otherwise, and an instance it launches goes InService and
    /// takes writes during the snapshot. Then every InService instance goes to Standby (20 ids
    /// a call), and the group is watched until no instance is Pending or InService outside
    /// Standby — a launch already under way is waited for and put into Standby too — so no
    /// snapshot is taken while an instance of the source can write.
    pub async fn enter_standby(
        &self,
        groups: &[String],
        events: &Emitter,
        records: &mut Vec<StandbyRecord>,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), StepError> {
        let scaling = &self.cloud.scaling;
        let step = "standby.enter";
        let refuse = |message: String| StepError::Refused {
            step: step.into(),
            message,
        };
        for group in groups {
            let info = retry(|| scaling.describe_group(group))
                .await
                .map_err(StepError::port(step))?
                .ok_or_else(|| refuse(format!("Auto Scaling group {group} disappeared")))?;
            let to_suspend: Vec<String> = SCALING_PROCESSES
                .iter()
                .filter(|p| !info.suspended_processes.iter().any(|s| s == *p))
                .map(|p| p.to_string())
                .collect();
            records.push(StandbyRecord {
                group: group.clone(),
                instance_ids: Vec::new(),
                original_min_size: info.min_size,
                original_desired: info.desired_capacity,
                original_max_size: Some(info.max_size),
                suspended_by_run: to_suspend.clone(),
            });
            checkpoint(Progress::Standby(records))
                .map_err(|message| refuse(format!("{message}; stopping before Standby")))?;
            if !to_suspend.is_empty() {
                retry(|| scaling.suspend_processes(group, &to_suspend))
                    .await
                    .map_err(StepError::port(step))?;
                events.info(
                    step,
                    Some(group),
                    format!(
                        "scaling processes suspended for the run: {}{}",
                        to_suspend.join(", "),
                        if info.suspended_processes.is_empty() {
                            String::new()
                        } else {
                            format!(
                                " (already suspended, left so: {})",
                                info.suspended_processes.join(", ")
                            )
                        }
                    ),
                );
            }
            let deadline = tokio::time::Instant::now() + self.settings.standby_timeout;
            let mut pause = Duration::from_secs(1);
            loop {
                let info = retry(|| scaling.describe_group(group))
                    .await
                    .map_err(StepError::port(step))?
                    .ok_or_else(|| refuse(format!("Auto Scaling group {group} disappeared")))?;
                let ids = info.ids_in(&crate::ports::LifecycleState::InService);
                let pending: Vec<String> = info
                    .instances
                    .iter()
                    .filter(|i| i.lifecycle_state.is_pending())
                    .map(|i| format!("{} ({})", i.id, i.lifecycle_state))
                    .collect();
                if ids.is_empty() && pending.is_empty() {
                    break;
                }
                if ids.is_empty() {
                    // A launch under way when the processes were suspended: it will be
                    // InService shortly, and is put into Standby then.
                    if tokio::time::Instant::now() >= deadline {
                        return Err(refuse(format!(
                            "instances {} of {group} are still launching after {:?}; refusing \
                             to take the snapshot while they may serve and write — the source \
                             is returned to service",
                            pending.join(", "),
                            self.settings.standby_timeout
                        )));
                    }
                    events.info(
                        step,
                        Some(group),
                        format!("waiting for launching instances: {}", pending.join(", ")),
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(15));
                    continue;
                }
                let n = ids.len() as i32;
                // Standby decrements desired capacity so the group does not launch
                // replacements; AWS refuses that below MinSize, so MinSize is lowered for the
                // duration.
                let lowered_min = (info.desired_capacity - n).max(0);
                events.start(
                    step,
                    Some(group),
                    format!("moving {} instance(s) to Standby: {}", n, ids.join(", ")),
                );
                let record = records.last_mut().expect("recorded above");
                record.instance_ids.extend(ids.iter().cloned());
                checkpoint(Progress::Standby(records))
                    .map_err(|message| refuse(format!("{message}; stopping before Standby")))?;
                if lowered_min < info.min_size {
                    retry(|| scaling.update_sizes(group, Some(lowered_min), None, None))
                        .await
                        .map_err(StepError::port(step))?;
                }
                for batch in ids.chunks(STANDBY_BATCH) {
                    retry(|| scaling.enter_standby(group, batch))
                        .await
                        .map_err(StepError::port(step))?;
                }
                self.wait_for_lifecycle(group, &ids, crate::ports::LifecycleState::Standby)
                    .await
                    .map_err(StepError::wait(step))?;
                events.done(step, Some(group), "instances in Standby");
            }
            if records.last().is_some_and(|r| r.instance_ids.is_empty()) {
                events.info(step, Some(group), "no InService instances");
            }
        }
        Ok(())
    }

    /// Runs the template's hook commands of one point (`quiesce`, `verify`, `post_swap`) with
    /// the stack's outputs in their environment; the first failure stops.
    pub async fn run_hooks(
        &self,
        point: &str,
        hooks: &[crate::contract::Hook],
        stack_name: &str,
        run_id: &str,
        events: &Emitter,
    ) -> Result<(), StepError> {
        self.run_hooks_with(point, hooks, stack_name, run_id, &BTreeMap::new(), events)
            .await
    }

    /// `run_hooks` with more environment variables.
    pub async fn run_hooks_with(
        &self,
        point: &str,
        hooks: &[crate::contract::Hook],
        stack_name: &str,
        run_id: &str,
        extra_env: &BTreeMap<String, String>,
        events: &Emitter,
    ) -> Result<(), StepError> {
        let step = format!("hook.{point}");
        let stack = retry(|| self.cloud.stacks.describe_stack(stack_name))
            .await
            .map_err(StepError::port(&step))?
            .ok_or_else(|| StepError::Refused {
                step: step.clone(),
                message: format!("stack {stack_name} does not exist"),
            })?;
        let mut env = std::collections::BTreeMap::from([
            ("ENVCLONE_RUN".to_string(), run_id.to_string()),
            ("ENVCLONE_STACK".to_string(), stack.name.clone()),
            ("ENVCLONE_HOOK".to_string(), point.to_string()),
        ]);
        for (k, v) in &stack.outputs {
            env.insert(format!("ENVCLONE_OUTPUT_{k}"), v.clone());
        }
        env.extend(extra_env.clone());
        for hook in hooks {
            events.start(
                &step,
                Some(&stack.name),
                format!("running `{}`", hook.command()),
            );
            self.cloud
                .hooks
                .run(hook.command(), &env, hook.timeout())
                .await
                .map_err(|message| StepError::Refused {
                    step: step.clone(),
                    message,
                })?;
            events.done(
                &step,
                Some(&stack.name),
                format!("`{}` succeeded", hook.command()),
            );
        }
        Ok(())
    }

    /// Waits until every instance of `ids` in `group` is in lifecycle state `state`.
    pub async fn wait_for_lifecycle(
        &self,
        group: &str,
        ids: &[String],
        state: crate::ports::LifecycleState,
    ) -> Result<(), crate::retry::WaitError> {
        let what = format!("instances {} of {group} to be {state}", ids.join(", "));
        wait_until(&what, self.settings.standby_timeout, || async {
            let info = self.cloud.scaling.describe_group(group).await?;
            let there = info.map(|i| i.ids_in(&state)).unwrap_or_default();
            Ok(if ids.iter().all(|id| there.contains(id)) {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{state}: {there:?}"))
            })
        })
        .await
    }

    /// Returns every instance this run put into Standby to service, puts MinSize, MaxSize and
    /// the desired capacity back as they were, and resumes the scaling processes the run
    /// suspended. Tries every group even when one fails; the error names what is still out of
    /// service.
    ///
    /// What AWS does meanwhile is reported, not fatal: an instance terminated while in Standby
    /// (Spot reclaim, by hand) is gone — the group replaces it once the desired capacity and
    /// `Launch` are back; an instance held in `Pending:Wait` by a launch lifecycle hook is left
    /// to the hook after a grace period; a desired capacity raised during Standby would take
    /// ExitStandby past MaxSize, so MaxSize is raised for the call and put back.
    pub async fn exit_standby(
        &self,
        records: &[StandbyRecord],
        events: &Emitter,
    ) -> Result<(), String> {
        let scaling = &self.cloud.scaling;
        let mut problems = Vec::new();
        for r in records.iter().rev() {
            let step = "standby.exit";
            events.start(
                step,
                Some(&r.group),
                format!("returning {} to service", r.instance_ids.join(", ")),
            );
            let result = self.return_group(r, events).await;
            // Resumed on every path: a group left with Launch suspended cannot heal.
            let resumed = if r.suspended_by_run.is_empty() {
                Ok(())
            } else {
                retry(|| scaling.resume_processes(&r.group, &r.suspended_by_run))
                    .await
                    .map_err(StepError::port(step))
            };
            match result.and(resumed) {
                Ok(()) => events.done(step, Some(&r.group), "back in service"),
                Err(e) => {
                    events.failed(step, Some(&r.group), e.to_string());
                    problems.push(format!(
                        "{} (instances {}; MinSize was {}, MaxSize {}, desired {}; processes \
                         suspended by the run: {}): {e}; run `envclone standby {} off` or `aws \
                         autoscaling exit-standby` / `resume-processes`",
                        r.group,
                        r.instance_ids.join(", "),
                        r.original_min_size,
                        r.original_max_size
                            .map_or_else(|| "unchanged".to_string(), |m| m.to_string()),
                        r.original_desired,
                        if r.suspended_by_run.is_empty() {
                            "none".to_string()
                        } else {
                            r.suspended_by_run.join(", ")
                        },
                        r.group
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// ExitStandby for a record's instances still in Standby (20 a call), the wait for those
    /// still in the group, and the group's sizes put back.
    async fn return_group(&self, r: &StandbyRecord, events: &Emitter) -> Result<(), StepError> {
        let scaling = &self.cloud.scaling;
        let step = "standby.exit";
        let group = r.group.as_str();
        let info = retry(|| scaling.describe_group(group))
            .await
            .map_err(StepError::port(step))?
            .ok_or_else(|| StepError::Refused {
                step: step.into(),
                message: format!("Auto Scaling group {group} is gone"),
            })?;
        let state_of = |id: &str| {
            info.instances
                .iter()
                .find(|i| i.id == id)
                .map(|i| i.lifecycle_state.clone())
        };
        let gone: Vec<&String> = r
            .instance_ids
            .iter()
            .filter(|id| state_of(id).is_none())
            .collect();
        if !gone.is_empty() {
            events.warn(
                step,
                Some(group),
                format!(
                    "instance(s) {} left the group while in Standby (terminated: a Spot \
                     reclaim or by hand); the group replaces them once its capacity is back",
                    gone.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        let still: Vec<String> = r
            .instance_ids
            .iter()
            .filter(|id| state_of(id) == Some(crate::ports::LifecycleState::Standby))
            .cloned()
            .collect();
        let needed = info.desired_capacity + still.len() as i32;
        if needed > info.max_size {
            events.warn(
                step,
                Some(group),
                format!(
                    "the desired capacity rose to {} during Standby; ExitStandby would take it \
                     past MaxSize {}, so MaxSize is {needed} for the call and put back after",
                    info.desired_capacity, info.max_size
                ),
            );
            retry(|| scaling.update_sizes(group, None, Some(needed), None))
                .await
                .map_err(StepError::port(step))?;
        }
        for batch in still.chunks(STANDBY_BATCH) {
            retry(|| scaling.exit_standby(group, batch))
                .await
                .map_err(StepError::port(step))?;
        }
        let present: Vec<String> = r
            .instance_ids
            .iter()
            .filter(|id| !gone.contains(id))
            .cloned()
            .collect();
        let held = self
            .wait_back_in_service(group, &present)
            .await
            .map_err(StepError::wait(step))?;
        if !held.is_empty() {
            events.warn(
                step,
                Some(group),
                format!(
                    "instance(s) {} held in Pending:Wait by a launch lifecycle hook after {:?}; \
                     the hook completes or abandons them",
                    held.join(", "),
                    LIFECYCLE_HOOK_GRACE
                ),
            );
        }
        let info = retry(|| scaling.describe_group(group))
            .await
            .map_err(StepError::port(step))?
            .ok_or_else(|| StepError::Refused {
                step: step.into(),
                message: format!("Auto Scaling group {group} is gone"),
            })?;
        let max = r.original_max_size.unwrap_or(info.max_size);
        let want = (r.original_min_size, max, r.original_desired);
        if (info.min_size, info.max_size, info.desired_capacity) != want {
            retry(|| {
                scaling.update_sizes(
                    group,
                    Some(r.original_min_size),
                    Some(max),
                    Some(r.original_desired),
                )
            })
            .await
            .map_err(StepError::port(step))?;
        }
        Ok(())
    }

    /// Waits until each of `ids` still in the group is InService; returns those a launch
    /// lifecycle hook holds in `Pending:Wait` past the grace period.
    async fn wait_back_in_service(
        &self,
        group: &str,
        ids: &[String],
    ) -> Result<Vec<String>, crate::retry::WaitError> {
        let what = format!("instances {} of {group} to be InService", ids.join(", "));
        let start = tokio::time::Instant::now();
        wait_until(&what, self.settings.standby_timeout, || async {
            let info = self.cloud.scaling.describe_group(group).await?;
            let mut waiting = Vec::new();
            let mut held = Vec::new();
            for id in ids {
                let state = info
                    .as_ref()
                    .and_then(|i| i.instances.iter().find(|x| &x.id == id))
                    .map(|x| &x.lifecycle_state);
                match state {
                    None | Some(crate::ports::LifecycleState::InService) => {}
                    Some(crate::ports::LifecycleState::PendingWait) => held.push(id.clone()),
                    Some(other) => waiting.push(format!("{id} {other}")),
                }
            }
            Ok(
                if waiting.is_empty()
                    && (held.is_empty() || start.elapsed() >= LIFECYCLE_HOOK_GRACE)
                {
                    Poll::Ready(held)
                } else {
                    Poll::Pending(
                        waiting
                            .into_iter()
                            .chain(held.iter().map(|h| format!("{h} Pending:Wait")))
                            .collect::<Vec<_>>()
                            .join(", "),
                    )
                },
            )
        })
        .await
    }

    /// The kinds' bulk copies made while the source still serves (`ResourceKind::precopy`),
    /// so that the copy made during Standby is only the delta: the time out of service does
    /// not grow with the size of what they copy.
    async fn precopy(
        &self,
        plan: &ClonePlan,
        events: &Emitter,
        created: &Created,
        checkpoint: Checkpoint<'_>,
    ) -> Result<Vec<Outcome>, StepError> {
        let whole = QuietWindow::whole();
        let run = CopyRun {
            engine: self,
            plan,
            events,
            created,
            checkpoint,
            window: &whole,
        };
        let all = try_join_all(resources::KINDS.iter().map(|k| k.precopy(&run))).await?;
        Ok(all.into_iter().flatten().collect())
    }

    /// The copy stage, over every kind: each prepares what the stack is given (in order),
    /// then what the stack needs before it exists is made (`before_stack`, in parallel)
    /// while the copies the stack does not wait for run alongside (`alongside_stack`); the
    /// stack is created with the parameters the kinds gave, and what it creates is filled
    /// (`after_stack`) while it completes. Then the clone is verified.
    async fn clone_and_verify(
        &self,
        plan: &ClonePlan,
        events: &Emitter,
        created: &Created,
        verification: &mut Vec<CheckResult>,
        checkpoint: Checkpoint<'_>,
        window: &QuietWindow,
    ) -> Result<CloneReport, StepError> {
        let run = CopyRun {
            engine: self,
            plan,
            events,
            created,
            checkpoint,
            window,
        };
        let kinds = resources::KINDS;
        // What the stack is given is created first (quick calls) so the stack, created
        // later, can already refer to it (already there when pre-copied: reused).
        for kind in kinds {
            kind.prepare(&run).await?;
        }

        let alongside = try_join_all(kinds.iter().map(|k| k.alongside_stack(&run)));
        let before_then_stack = async {
            let made = try_join_all(kinds.iter().map(|k| k.before_stack(&run))).await?;
            let mut parameters = plan.parameters.clone();
            let mut outcomes = Vec::new();
            for m in made {
                parameters.extend(m.parameters);
                outcomes.extend(m.outcomes);
            }
            let (stack_id, filled) = self.create_stack_and_fill(&run, &parameters).await?;
            outcomes.extend(filled);
            Ok::<_, StepError>((outcomes, stack_id))
        };
        let (alongside, (outcomes, stack_id)) = try_join(alongside, before_then_stack).await?;

        let mut snapshots = Vec::new();
        let mut buckets = Vec::new();
        let mut copies = Vec::new();
        for outcome in alongside.into_iter().flatten().chain(outcomes) {
            match outcome {
                Outcome::Snapshot { position, label } => snapshots.push((position, label)),
                Outcome::Bucket(b) => buckets.push(b),
                Outcome::Copy(c) => copies.push(c),
            }
        }
        snapshots.sort_by_key(|(position, _)| *position);

        let bucket_reports = self
            .verify_clone(plan, &buckets, &copies, events, verification, window)
            .await?;

        Ok(CloneReport {
            run_id: plan.run_id.to_string(),
            source: plan.source_env.clone(),
            target: plan.target_env.to_string(),
            stack_id,
            snapshots: snapshots.into_iter().map(|(_, label)| label).collect(),
            buckets,
            verification: Vec::new(),
            bucket_reports,
            standby: Vec::new(),
            inventory: plan.inventory.clone(),
            copies,
            window: None,
        })
    }

    /// Creates the clone stack with `parameters` (the plan's, with what the kinds gave), fills
    /// what it creates (`ResourceKind::after_stack`) and waits for it to complete.
    async fn create_stack_and_fill(
        &self,
        run: &CopyRun<'_>,
        parameters: &BTreeMap<String, String>,
    ) -> Result<(String, Vec<Outcome>), StepError> {
        let CopyRun {
            plan,
            events,
            created,
            checkpoint,
            ..
        } = *run;
        let step = "stack.create";
        // Before anything of the stack is made (its staged template too).
        for kind in resources::KINDS {
            kind.check_stack_parameters(plan, parameters)?;
        }
        let stacks = &self.cloud.stacks;
        let template = match &plan.template_staging {
            None => TemplateSource::Body(plan.template.body.clone()),
            Some(st) => TemplateSource::Url(
                self.stage_template(plan, st, events, created, checkpoint)
                    .await?,
            ),
        };
        events.start(
            step,
            Some(&plan.target_stack),
            format!("creating stack {}", plan.target_stack),
        );
        let request = CreateStackRequest {
            name: plan.target_stack.clone(),
            template,
            parameters: parameters.clone(),
            tags: plan.tags.clone(),
            capabilities: plan.capabilities.clone(),
            client_token: format!("envclone-{}", plan.run_id),
        };
        let created_stack = retry(|| stacks.create_stack(&request)).await;
        // CloudFormation has read the template once CreateStack has answered (it validates it
        // before answering, and keeps its own copy): the staged one goes at once, whatever the
        // answer. A crash before this is cleaned up by abort (the run's record) or gc.
        if let Some(st) = &plan.template_staging {
            self.unstage_template(st, events, created).await;
        }
        let stack_id = match created_stack {
            Ok(id) => id,
            Err(crate::ports::PortError::AlreadyExists { .. }) => {
                let existing = retry(|| stacks.describe_stack(&plan.target_stack))
                    .await
                    .map_err(StepError::port(step))?;
                match existing {
                    Some(s) if s.tags.get(TAG_RUN) == Some(&plan.run_id.to_string()) => s.id,
                    _ => {
                        return Err(StepError::Refused {
                            step: step.into(),
                            message: format!(
                                "stack {} exists and was not created by run {}",
                                plan.target_stack, plan.run_id
                            ),
                        })
                    }
                }
            }
            Err(e) => return Err(StepError::port(step)(e)),
        };
        created.add(ResourceRef::new(resource::STACK, plan.target_stack.clone()));

        let fills = try_join_all(resources::KINDS.iter().map(|k| k.after_stack(run)));
        let complete = async {
            let what = format!("stack {} to be CREATE_COMPLETE", plan.target_stack);
            wait_until(&what, self.settings.stack_timeout, || async {
                Ok(match stacks.describe_stack(&plan.target_stack).await? {
                    Some(StackInfo {
                        status: StackStatus::CreateComplete,
                        ..
                    }) => Poll::Ready(()),
                    Some(StackInfo {
                        status: StackStatus::InProgress(s),
                        ..
                    }) => Poll::Pending(s),
                    Some(StackInfo {
                        status,
                        status_reason,
                        ..
                    }) => Poll::Failed(format!(
                        "stack status {status}: {}",
                        status_reason.unwrap_or_default()
                    )),
                    None => Poll::Failed("stack disappeared".into()),
                })
            })
            .await
            .map_err(StepError::wait(step))?;
            events.done(step, Some(&plan.target_stack), "CREATE_COMPLETE");
            Ok::<_, StepError>(())
        };
        let (filled, ()) = try_join(fills, complete).await?;
        Ok((stack_id, filled.into_iter().flatten().collect()))
    }

    /// Puts the template where CloudFormation can read it (`plan.template_staging`) and returns
    /// its URL. A bucket of the run's own is recorded (checkpoint) before it is created and
    /// tagged with the run, so abort and gc find it whatever moment the run dies at.
    async fn stage_template(
        &self,
        plan: &ClonePlan,
        st: &TemplateStaging,
        events: &Emitter,
        created: &Created,
        checkpoint: Checkpoint<'_>,
    ) -> Result<String, StepError> {
        let step = "template.stage";
        let objects = &self.cloud.objects;
        if st.own_bucket {
            let mut tags = plan.tags.clone();
            tags.insert(TAG_PURPOSE.into(), PURPOSE_TEMPLATE_STAGING.into());
            self.create_run_bucket(plan, &st.bucket, &tags, step, created, checkpoint)
                .await?;
        }
        let body = plan.template.body.as_bytes().to_vec();
        retry(|| objects.put_small_object(&st.bucket, &st.key, body.clone(), None))
            .await
            .map_err(StepError::port(step))?;
        created.add(staged_template(st));
        events.done(
            step,
            Some(&plan.target_stack),
            format!(
                "template ({} bytes, over CreateStack's {TEMPLATE_BODY_MAX}-byte TemplateBody \
                 limit) put at s3://{}/{} for CloudFormation to read",
                body.len(),
                st.bucket,
                st.key
            ),
        );
        Ok(objects.object_url(&st.bucket, &st.key))
    }

    /// Removes the staged template (and the bucket made for it); what cannot be removed is
    /// warned of and stays in the run's left-behind list (abort and gc remove it).
    async fn unstage_template(&self, st: &TemplateStaging, events: &Emitter, created: &Created) {
        let step = "template.unstage";
        let objects = &self.cloud.objects;
        let object = staged_template(st);
        match retry(|| objects.delete_object(&st.bucket, &st.key)).await {
            Ok(()) | Err(PortError::NotFound { .. }) => created.remove(&object),
            Err(e) => {
                events.warn(step, Some(&st.bucket), format!("{object} not removed: {e}"));
                return;
            }
        }
        if st.own_bucket {
            match retry(|| objects.delete_bucket(&st.bucket)).await {
                Ok(()) | Err(PortError::NotFound { .. }) => {
                    created.remove(&ResourceRef::new(resources::BUCKET, st.bucket.clone()))
                }
                Err(e) => {
                    events.warn(
                        step,
                        Some(&st.bucket),
                        format!(
                            "bucket {} (made to stage the template) not removed: {e}; \
                             `envclone abort` or `envclone gc` removes it",
                            st.bucket
                        ),
                    );
                    return;
                }
            }
        }
        events.done(
            step,
            Some(&st.bucket),
            if st.own_bucket {
                format!("{object} and its bucket removed")
            } else {
                format!("{object} removed")
            },
        );
    }

    /// Where the clone's template goes for CreateStack: nowhere (None) when it fits
    /// CreateStack's TemplateBody (51,200 bytes); else an S3 object CloudFormation reads
    /// (TemplateURL, up to 1 MB) — in the `--state` bucket when given, else in a bucket of the
    /// run's own, `envclone-tpl-<account>-<run>`, which must be free. Staging only when needed
    /// spares every other run a bucket (and the S3 permissions) it does not need.
    async fn template_staging(
        &self,
        plan: &ClonePlan,
        source: &SourceEnv,
    ) -> Result<Option<TemplateStaging>, PreflightError> {
        // (Over TEMPLATE_URL_MAX, build_plan has refused it.)
        if plan.template.body.len() <= TEMPLATE_BODY_MAX {
            return Ok(None);
        }
        let file = format!("{}.template", plan.target_stack);
        if let Some((bucket, prefix)) = &self.settings.state_bucket {
            let key = if prefix.is_empty() {
                format!("staging/{}/{file}", plan.run_id)
            } else {
                format!("{prefix}/staging/{}/{file}", plan.run_id)
            };
            return Ok(Some(TemplateStaging {
                bucket: bucket.clone(),
                key,
                own_bucket: false,
            }));
        }
        let (account, _) = source.account_and_region();
        let bucket = format!("{STAGING_BUCKET_PREFIX}{account}-{}", plan.run_id);
        crate::model::check_bucket_name(&bucket)?;
        if retry(|| self.cloud.objects.bucket_tags(&bucket))
            .await?
            .is_some()
        {
            return Err(PreflightError::TargetExists {
                what: format!("bucket {bucket} (where this run would stage its template)"),
            });
        }
        Ok(Some(TemplateStaging {
            bucket,
            key: file,
            own_bucket: true,
        }))
    }

    /// Step 6: the clone stack complete, its databases available, every bucket equal to its
    /// source, its instances in service, the template's HTTP checks.
    async fn verify_clone(
        &self,
        plan: &ClonePlan,
        buckets: &[BucketOutcome],
        copies: &[CopyOutcome],
        events: &Emitter,
        checks: &mut Vec<CheckResult>,
        window: &QuietWindow,
    ) -> Result<Vec<VerifyReport>, StepError> {
        let step = "verify";
        events.start(step, Some(&plan.target_stack), "verifying the clone");
        // A bucket compared inside the window (it keeps no versions, and the source writes
        // again after it) is not compared again with the source as it is now.
        let early = window.verified();
        let pairs: Vec<(String, String)> = buckets
            .iter()
            .map(|b| (b.source.clone(), b.target.clone()))
            .filter(|p| !early.iter().any(|(e, _, _)| e == p))
            .collect();
        let as_of: Vec<(String, chrono::DateTime<chrono::Utc>)> = buckets
            .iter()
            .filter_map(|b| Some((b.target.clone(), b.as_of?)))
            .collect();
        let skip_archived = plan.skip_archived || self.settings.sync.skip_archived;
        let mut reports = Vec::new();
        for (_, check, report) in early {
            checks.push(CheckResult {
                detail: format!("{} (compared inside the window, at T)", check.detail),
                ..check
            });
            reports.push(report);
        }
        reports.extend(
            self.check_environment_with(
                &plan.target_stack,
                &plan.contract,
                (&pairs, &as_of),
                copies,
                checks,
                skip_archived,
            )
            .await?,
        );
        for hook in &plan.contract.hooks.verify {
            let result = self
                .run_hooks(
                    "verify",
                    std::slice::from_ref(hook),
                    &plan.target_stack,
                    plan.run_id.as_str(),
                    events,
                )
                .await;
            checks.push(CheckResult {
                check: format!("hook `{}`", hook.command()),
                ok: result.is_ok(),
                detail: match result {
                    Ok(()) => "exit 0".into(),
                    Err(e) => e.to_string(),
                },
            });
        }
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.check, c.detail))
            .collect();
        if failed.is_empty() {
            events.done(
                step,
                Some(&plan.target_stack),
                format!("{} check(s) passed", checks.len()),
            );
            Ok(reports)
        } else {
            Err(StepError::Verification(failed.join("; ")))
        }
    }

    /// Checks an environment: its stack usable, its databases available, each (source, target)
    /// bucket pair equal object for object (as of a moment for the targets listed with one),
    /// each of `copies` compared by its kind, its instances in service, the contract's HTTP
    /// checks. Appends one result per check; errors only when a check cannot be made at all.
    pub async fn check_environment(
        &self,
        stack_name: &str,
        contract: &crate::contract::Contract,
        buckets: (&[(String, String)], &super::window::AsOfTargets),
        copies: &[CopyOutcome],
        checks: &mut Vec<CheckResult>,
    ) -> Result<Vec<VerifyReport>, StepError> {
        let skip_archived = self.settings.sync.skip_archived;
        self.check_environment_with(stack_name, contract, buckets, copies, checks, skip_archived)
            .await
    }

    /// `check_environment`; with `skip_archived`, archived source objects are not compared
    /// (the copy left them out) and each bucket's check says how many.
    async fn check_environment_with(
        &self,
        stack_name: &str,
        contract: &crate::contract::Contract,
        (bucket_pairs, bucket_as_of): (&[(String, String)], &super::window::AsOfTargets),
        copies: &[CopyOutcome],
        checks: &mut Vec<CheckResult>,
        skip_archived: bool,
    ) -> Result<Vec<VerifyReport>, StepError> {
        let step = "verify";
        let cloud = &self.cloud;
        let stack = retry(|| cloud.stacks.describe_stack(stack_name))
            .await
            .map_err(StepError::port(step))?
            .ok_or_else(|| StepError::Verification(format!("stack {stack_name} does not exist")))?;
        let resources = retry(|| cloud.stacks.resources(stack_name))
            .await
            .map_err(StepError::port(step))?;
        checks.push(CheckResult {
            check: format!("stack {stack_name}"),
            ok: stack.status.is_usable(),
            detail: stack.status.to_string(),
        });
        let env = Checked {
            contract,
            stack: &stack,
            resources: &resources,
            bucket_pairs,
            bucket_as_of,
            skip_archived,
            copies,
        };
        verify_report(self, &env, checks).await
    }
}

/// Verifies an environment: each kind its resources (`ResourceKind::verify`), then the
/// contract's HTTP checks.
async fn verify_report(
    engine: &CloneEngine,
    env: &Checked<'_>,
    checks: &mut Vec<CheckResult>,
) -> Result<Vec<VerifyReport>, StepError> {
    let cloud = &engine.cloud;
    let timeout = engine.settings.verify_timeout;
    let (contract, stack) = (env.contract, env.stack);
    let mut reports = Vec::new();
    for kind in resources::KINDS {
        kind.verify(engine, env, checks, &mut reports).await?;
    }

    for check in &contract.verify {
        let VerifyCheck::HttpOutput(output) = check;
        let Some(url) = stack.outputs.get(output).cloned() else {
            checks.push(CheckResult {
                check: format!("HTTP {output}"),
                ok: false,
                detail: format!("the clone stack has no output {output}"),
            });
            continue;
        };
        let what = format!("{url} (output {output}) to answer 2xx");
        let result = wait_until(&what, timeout, || async {
            Ok(match cloud.http.get_status(&url).await {
                Ok(code) if (200..300).contains(&code) => Poll::Ready(code),
                Ok(code) => Poll::Pending(format!("HTTP {code}")),
                Err(e) => Poll::Pending(e.to_string()),
            })
        })
        .await;
        checks.push(CheckResult {
            check: format!("HTTP GET {url}"),
            ok: result.is_ok(),
            detail: match result {
                Ok(code) => format!("HTTP {code}"),
                Err(e) => e.to_string(),
            },
        });
    }
    Ok(reports)
}
