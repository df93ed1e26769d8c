//! Migrate: clone an environment onto a new template (the "double clone"), check the
//! guardrails, swap (each kind moves its resources, `ResourceKind::swap`; then the entry DNS
//! record moves), and — only with explicit consent — finalize by deleting the old environment
//! without ever touching what now serves.
//!
//! The swap is driven by what AWS shows, not by what was last recorded: each move is chosen by
//! a pure function of what exists (`swap_step`), so a run stopped at any point can go forward
//! or back. What the kinds do is behind `ResourceKind`'s migrate hooks (`plan_swap`,
//! `swap_time`, `swap_renames`, `record_clone`, `check_before_swap`, `swap`,
//! `after_swap_back`, …): this file loops over `resources::KINDS` and names no resource type
//! but the snapshots the clone made (in the run's list of what it created) and the Standby of
//! the source's groups (entered and left by the clone engine).

use std::collections::BTreeMap;
use std::future::Future;

use crate::contract::Contract;
use crate::events::Emitter;
use crate::journal::RunStore;
use crate::model::{self, EnvName, RunId, TAG_PROTECTED};
use crate::ports::{DnsRecord, HostedZone, ResourceStatus, StackInfo, StackResource};
use crate::retry::{retry, wait_until, Poll};

use super::clone::{CloneEngine, CloneReport, Execution, Progress, StandbyAfter};
use super::plan::{ClonePlan, CloneRequest};
pub(super) use super::record::save;
use super::record::RunRecord;
pub use super::record::{DbSwap, DnsSwap, MigratePhase, MigrationState, Swaps};
use super::resource::ResourceRef;
use super::resources::{self, KINDS};
pub use super::swap::{swap_step, Direction, SwapStep};
use super::{PreflightError, StepError};

/// A migration as the user asked for it.
#[derive(Debug, Clone)]
pub struct MigrateRequest {
    pub env: String,
    /// Path and body of the new template.
    pub template: (String, String),
    pub parameter_overrides: BTreeMap<String, String>,
    /// `envclone.toml`: hooks and contracts the template does not carry.
    pub config: std::sync::Arc<crate::config::Config>,
}

/// Refuses a migration whose new template's contract lists what migrate cannot move
/// (`ResourceKind::migrate_refusal`: a DynamoDB table not marked `shared`). Checked before the
/// clone's preflight, on the template with envclone.toml's contract for the environment, so it
/// is the first refusal the operator reads; a template or contract that does not read is left
/// to the clone's preflight to report.
fn refuse_unmovable(request: &MigrateRequest) -> Result<(), PreflightError> {
    let (origin, body) = &request.template;
    let Ok(template) = crate::contract::Template::parse(origin, body) else {
        return Ok(());
    };
    let Ok(template) = request.config.apply(&[request.env.as_str()], template) else {
        return Ok(());
    };
    let Ok(contract) = Contract::from_template(&template) else {
        return Ok(());
    };
    match KINDS
        .iter()
        .find_map(|k| k.migrate_refusal(&contract, &request.env, origin))
    {
        Some(what) => Err(PreflightError::Unsupported { what }),
        None => Ok(()),
    }
}

/// The temporary name of the new environment while it is built: `<env>-m<4 hex of the run>`.
pub fn temporary_name(env: &str, run: &RunId) -> Result<EnvName, PreflightError> {
    let suffix: String = run
        .as_str()
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let name = format!("{env}-m{suffix}");
    EnvName::parse(&name).map_err(|e| PreflightError::Unsupported {
        what: format!(
            "the new environment is built under the temporary name {name:?}, which is not valid \
             ({e}); environments of more than {} characters cannot be migrated",
            model::MAX_ENV_NAME - 6
        ),
    })
}

pub struct MigratePlan {
    pub clone: ClonePlan,
    /// What the swap moves, as each kind planned it (`ResourceKind::plan_swap`).
    pub swaps: Swaps,
    /// The swap must start before this (a migration window's end or --deadline).
    pub deadline: Option<chrono::DateTime<chrono::Utc>>,
}

impl MigratePlan {
    /// The steps in order, with the real names, for `plan migrate` and `--dry-run`: the
    /// clone's, whose source stays in Standby (`StandbyAfter::Keep`), then the swap's and the
    /// end (`--finalize`, or the stop before it).
    pub fn steps(&self, finalize: bool) -> Vec<String> {
        let clone = &self.clone;
        let run_id = &clone.run_id;
        let mut steps = clone.steps_then(StandbyAfter::Keep);
        let mut guardrails: Vec<String> = Vec::new();
        for kind in KINDS {
            for words in kind.guardrail_words(clone) {
                if !guardrails.contains(&words) {
                    guardrails.push(words);
                }
            }
        }
        guardrails.push("entry record still on the source".into());
        steps.push(format!("guardrails: {}", guardrails.join(", ")));
        for kind in KINDS {
            steps.extend(kind.swap_steps(&self.swaps));
        }
        if let Some(dns) = &clone.contract.entry_dns {
            steps.push(format!(
                "point {} at the new stack's {} and wait until in sync",
                dns.name, dns.target_output
            ));
        }
        if !clone.contract.hooks.post_swap.is_empty() {
            steps.push("run the post_swap hooks".into());
        }
        steps.push(
            "check the live environment (entry record, the template's HTTP checks, instances \
             InService and Healthy); a failure swaps back"
                .into(),
        );
        steps.push(if finalize {
            format!(
                "finalize: check the new buckets hold every object, keep a final snapshot of the \
                 old database, delete stack {} (the live database protected), delete the \
                 renamed old database",
                clone.source_stack
            )
        } else {
            format!(
                "stop: the old stack {} stays out of service until `envclone finalize {run_id}` \
                 or `envclone abort {run_id}`",
                clone.source_stack
            )
        });
        steps
    }
}

/// Time kept free before the deadline for the swap, besides its moves: the entry record and
/// the checks.
const SWAP_BASE: std::time::Duration = std::time::Duration::from_secs(5 * 60);
/// The least time kept for the swap's moves, whatever the kinds say: one database's two
/// renames (20 minutes), which every deadline has kept since deadlines exist, even for a
/// migration with nothing to rename.
const SWAP_MOVES_AT_LEAST: std::time::Duration = std::time::Duration::from_secs(20 * 60);

/// Time kept free before the deadline for the swap itself: what each kind says its moves of
/// `swaps` take (`ResourceKind::swap_time`), plus the entry record and the checks.
pub fn swap_allowance(swaps: &Swaps) -> std::time::Duration {
    let moves: std::time::Duration = KINDS.iter().map(|k| k.swap_time(swaps)).sum();
    SWAP_BASE + moves.max(SWAP_MOVES_AT_LEAST)
}

/// The logical ids of `plan`'s template whose identifiers the swap changes, as each kind says
/// (`ResourceKind::swap_renames`).
fn swap_renames(plan: &ClonePlan) -> Vec<super::resource::Renamed> {
    KINDS.iter().flat_map(|k| k.swap_renames(plan)).collect()
}

/// The state of migration `run_id`; None if the store has no record of the run, an error if
/// the run is a clone.
pub fn load(store: &dyn RunStore, run_id: &str) -> Result<Option<MigrationState>, String> {
    match RunRecord::load(store, run_id)? {
        Some(RunRecord::Migrate(state)) => Ok(Some(state)),
        Some(RunRecord::Clone(_)) => Err(format!(
            "run {run_id} is a clone, not a migration; use `envclone abort {run_id}` or \
             `envclone resume {run_id}`"
        )),
        None => Ok(None),
    }
}

impl CloneEngine {
    /// Preflight of a migration: the clone's preflight onto the new template under a
    /// temporary name, plus the swap's names and the entry DNS record.
    pub async fn preflight_migrate(
        &self,
        request: &MigrateRequest,
        run_id: RunId,
    ) -> Result<MigratePlan, PreflightError> {
        let target = temporary_name(&request.env, &run_id)?;
        refuse_unmovable(request)?;
        let clone_request = CloneRequest {
            source: request.env.clone(),
            target,
            template: Some(request.template.clone()),
            parameter_overrides: request.parameter_overrides.clone(),
            standby: true,
            reset_defaults: true,
            environment_tag: Some(request.env.clone()),
            owner: None,
            expires_at: None,
            config: request.config.clone(),
        };
        let plan = self.preflight(&clone_request, run_id.clone()).await?;
        let references =
            super::swapcheck::endpoint_references(&plan.template, &swap_renames(&plan));
        super::swapcheck::refuse_endpoint_references(
            &request.template.0,
            &plan.contract,
            &references,
        )
        .map_err(|what| PreflightError::Unsupported { what })?;
        let mut swaps = Swaps::default();
        for kind in KINDS {
            kind.plan_swap(self, &plan, &run_id, &request.template.0, &mut swaps)
                .await?;
        }
        if let Some(dns) = &plan.contract.entry_dns {
            self.preflight_entry_dns(&plan, dns).await?;
        }
        Ok(MigratePlan {
            clone: plan,
            swaps,
            deadline: None,
        })
    }

    /// Runs a migration up to the swap (and through finalize when `finalize` is set). Any
    /// failure before the swap leaves the source as it was (back in service); a failure during
    /// the swap swaps back.
    pub async fn migrate(
        &self,
        plan: &MigratePlan,
        store: &dyn RunStore,
        events: &Emitter,
        shutdown: impl Future<Output = ()>,
    ) -> Result<MigrationState, Box<MigrateFailure>> {
        let clone = &plan.clone;
        let state = MigrationState::begin(
            clone,
            self.cloud.clock.now().to_rfc3339(),
            plan.swaps.clone(),
        );
        if let Err(e) = save(store, &state) {
            return Err(Box::new(MigrateFailure { state, error: e }));
        }
        for r in super::swapcheck::endpoint_references(&clone.template, &swap_renames(clone)) {
            events.warn(
                "preflight",
                None,
                format!(
                    "{r} keeps the pre-swap name of {} after the swap: the post_swap hook must \
                     repoint it",
                    r.renamed
                ),
            );
        }
        self.migrate_from(plan, state, store, events, shutdown)
            .await
    }

    /// Resumes an interrupted migration from its recorded state: the clone is finished where
    /// it stopped (same names, done steps reused), a swap in progress is completed.
    pub async fn resume_migration(
        &self,
        state: MigrationState,
        store: &dyn RunStore,
        events: &Emitter,
        shutdown: impl Future<Output = ()>,
    ) -> Result<MigrationState, Box<MigrateFailure>> {
        let refuse = |state: MigrationState, message: String| {
            Box::new(MigrateFailure {
                state,
                error: StepError::Refused {
                    step: "resume".into(),
                    message,
                },
            })
        };
        if !matches!(
            state.phase,
            MigratePhase::Cloning | MigratePhase::Cloned | MigratePhase::Swapping
        ) {
            let message = format!(
                "run {} is {:?}; only a migration stopped before the end of its swap can be resumed{}",
                state.run_id,
                state.phase,
                if state.phase == MigratePhase::Finalizing { " (finish it with `envclone finalize`)" } else { "" }
            );
            return Err(refuse(state, message));
        }
        let clone = match state.plan.as_ref().map(|p| p.to_plan(&state.run_id)) {
            Some(Ok(plan)) => plan,
            Some(Err(message)) => return Err(refuse(state, message)),
            None => {
                return Err(refuse(
                    state,
                    "the run recorded no plan; abort it instead".into(),
                ))
            }
        };
        let plan = MigratePlan {
            clone,
            swaps: state.swaps(),
            deadline: None,
        };
        self.migrate_from(&plan, state, store, events, shutdown)
            .await
    }

    async fn migrate_from(
        &self,
        plan: &MigratePlan,
        mut state: MigrationState,
        store: &dyn RunStore,
        events: &Emitter,
        shutdown: impl Future<Output = ()>,
    ) -> Result<MigrationState, Box<MigrateFailure>> {
        let clone = &plan.clone;
        let fail =
            |state: MigrationState, error: StepError| Box::new(MigrateFailure { state, error });
        tokio::pin!(shutdown);
        if state.phase == MigratePhase::Cloning {
            // Standby is recorded in the run's state before each EnterStandby call, so `abort`
            // after a crash knows what to return to service.
            let recorded = std::sync::Mutex::new(state.clone());
            let checkpoint = |progress: Progress<'_>| {
                let mut s = recorded.lock().expect("state lock");
                match progress {
                    Progress::Standby(standby) => s.standby = standby.to_vec(),
                    // Recorded before CreateBucket, so `abort` after a crash right after it
                    // removes the bucket even if it was not tagged yet.
                    Progress::CreatingBucket(name) => {
                        if s.creating.iter().any(|b| b == name) {
                            return Ok(());
                        }
                        s.creating.push(name.to_string());
                    }
                    // Migrate keeps its source in Standby through the swap (no early end of
                    // the window): nothing of T to resume by.
                    Progress::Window(_) => {}
                }
                save(store, &s).map_err(|e| e.to_string())
            };
            let execution = Execution {
                after: StandbyAfter::Keep,
                prior_standby: state.standby.clone(),
                prior_window: None,
                checkpoint: &checkpoint,
            };
            let outcome = self
                .execute_with(clone, events, &mut shutdown, execution)
                .await;
            let recorded = recorded.into_inner().expect("state lock");
            state.standby = recorded.standby;
            state.creating = recorded.creating;
            let report: CloneReport = match outcome {
                Ok(r) => r,
                Err(f) => {
                    state.created = f.left_behind.clone();
                    state.phase = MigratePhase::Aborted;
                    let _ = save(store, &state);
                    return Err(fail(state, f.error));
                }
            };
            state.standby = report.standby.clone();
            // The report's snapshot labels name the artifact (`DB snapshot <id>`, or a
            // copy-on-write clone point, which is no resource: read back as its own kind).
            state.created = std::iter::once(ResourceRef::new(
                super::resource::STACK,
                clone.target_stack.clone(),
            ))
            .chain(report.snapshots.iter().map(|l| ResourceRef::parse(l)))
            .collect();
            let outcomes = report.outcomes();
            for kind in KINDS {
                if let Err(e) = kind
                    .record_clone(self, clone, &outcomes, &mut state, events)
                    .await
                {
                    let _ = self.exit_standby(&state.standby, events).await;
                    state.phase = MigratePhase::Aborted;
                    let _ = save(store, &state);
                    return Err(fail(state, e));
                }
            }
            state.phase = MigratePhase::Cloned;
            if let Err(e) = save(store, &state) {
                let _ = self.exit_standby(&state.standby, events).await;
                return Err(fail(state, e));
            }
        }

        // A swap already under way (resume) has passed the guardrails: it only goes on.
        if state.phase == MigratePhase::Cloned {
            let guard = async {
                if let Some(deadline) = plan.deadline {
                    let allowance =
                        chrono::Duration::from_std(swap_allowance(&plan.swaps)).expect("fits");
                    if self.cloud.clock.now() + allowance > deadline {
                        return Err(StepError::Deadline {
                            step: "guardrails".into(),
                            deadline: deadline.to_rfc3339(),
                        });
                    }
                }
                let (new_stack, entry) = self.guardrails(&state, &clone.contract, events).await?;
                if let (Some(dns), Some((zone, before))) = (&clone.contract.entry_dns, entry) {
                    let after = super::entry_dns::retarget(
                        &before,
                        dns,
                        &state.target_stack,
                        &new_stack.outputs,
                    )
                    .map_err(|message| StepError::Refused {
                        step: "guardrails".into(),
                        message,
                    })?;
                    state.dns = Some(DnsSwap {
                        zone: zone.id,
                        after,
                        before,
                    });
                }
                Ok::<_, StepError>(())
            };
            let guarded = tokio::select! {
                r = guard => r,
                () = &mut shutdown => Err(StepError::Interrupted { step: "guardrails".into() }),
            };
            if let Err(e) = guarded {
                events.failed("guardrails", None, e.to_string());
                let _ = self.exit_standby(&state.standby, events).await;
                state.phase = MigratePhase::Aborted;
                let _ = save(store, &state);
                return Err(fail(state, e));
            }

            state.phase = MigratePhase::Swapping;
            if let Err(e) = save(store, &state) {
                let _ = self.exit_standby(&state.standby, events).await;
                return Err(fail(state, e));
            }
        }
        let swapped = {
            let forward = async {
                self.protect_old_stack(&mut state, store, events).await?;
                self.swap(&state, Direction::Forward, events).await?;
                // Pooled connections ignore DNS and renames until clients reconnect. The new
                // stack's outputs still name what the swap renamed by the identifiers it had
                // before; the hooks get the live ones.
                let live = self.post_swap_environment(&state).await?;
                self.run_hooks_with(
                    "post_swap",
                    &clone.contract.hooks.post_swap,
                    &state.target_stack,
                    &state.run_id,
                    &live,
                    events,
                )
                .await?;
                self.verify_after_swap(&state, &clone.contract, events)
                    .await
            };
            // Ctrl-C during the swap: the call in flight (a rename, a DNS change) finishes and is
            // answered, no new one starts, then the swap goes back from the settled state (as the
            // clone does). Dropping the call instead would leave a rename of unknown fate.
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let forward = crate::retry::stoppable(stop.clone(), forward);
            tokio::pin!(forward);
            tokio::select! {
                r = &mut forward => r,
                () = &mut shutdown => {
                    events.warn("swap", None, "interrupted: finishing the call in flight, then swapping back");
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                    match forward.await {
                        Ok(()) => Err(StepError::Interrupted { step: "swap".into() }),
                        Err(e) => Err(StepError::Interrupted { step: format!("swap ({e})") }),
                    }
                }
            }
        };
        if let Err(e) = swapped {
            events.failed("swap", None, format!("{e}; swapping back"));
            let back = self.abort_migration(&mut state, store, events).await;
            let error = match back {
                Ok(()) => e,
                Err(b) => StepError::Refused {
                    step: "swap".into(),
                    message: format!(
                        "{e}; swapping back ALSO failed: {b}; run `envclone abort {}`",
                        state.run_id
                    ),
                },
            };
            return Err(fail(state, error));
        }
        state.phase = MigratePhase::Swapped;
        state.swapped_at = Some(self.cloud.clock.now().to_rfc3339());
        if let Err(e) = save(store, &state) {
            return Err(fail(state, e));
        }
        events.done(
            "swap",
            None,
            format!(
                "{} now serves from stack {}; the old stack {} stays out of service until \
                 `envclone finalize {}` (deletes it) or `envclone abort {}` (swaps back)",
                state.env, state.target_stack, state.source_stack, state.run_id, state.run_id
            ),
        );
        Ok(state)
    }

    /// Checks before the swap (after RDS Blue/Green's): the source still in Standby with no
    /// scaling activity in flight, every kind's resources ready to move
    /// (`ResourceKind::check_before_swap`), the entry record still pointing at the source.
    /// Returns the new stack and the entry record (with its hosted zone).
    async fn guardrails(
        &self,
        state: &MigrationState,
        contract: &Contract,
        events: &Emitter,
    ) -> Result<(StackInfo, Option<(HostedZone, DnsRecord)>), StepError> {
        let step = "guardrails";
        let cloud = &self.cloud;
        events.start(step, None, "checking the guardrails before the swap");
        let refuse = |message: String| StepError::Refused {
            step: step.into(),
            message,
        };
        for kind in KINDS {
            kind.check_before_swap(self, state).await?;
        }
        let source = retry(|| cloud.stacks.describe_stack(&state.source_stack))
            .await
            .map_err(StepError::port(step))?
            .ok_or_else(|| refuse(format!("stack {} is gone", state.source_stack)))?;
        let new_stack = retry(|| cloud.stacks.describe_stack(&state.target_stack))
            .await
            .map_err(StepError::port(step))?
            .filter(|s| s.status.is_usable())
            .ok_or_else(|| refuse(format!("stack {} is not complete", state.target_stack)))?;
        let mut entry = None;
        if let Some(dns) = &contract.entry_dns {
            let expected = source
                .outputs
                .get(&dns.target_output)
                .cloned()
                .unwrap_or_default();
            entry = Some(
                self.find_entry(dns, &expected)
                    .await
                    .map_err(|p| p.into_step(step))?,
            );
        }
        events.done(
            step,
            None,
            "source in Standby, no scaling activity, every kind ready to swap, entry record on \
             the source",
        );
        Ok((new_stack, entry))
    }

    /// Each kind swaps its resources (`ResourceKind::swap`) and the
    /// entry record moves, forward or back. Each move is chosen from what exists now, so it can
    /// be re-run after any stop.
    pub async fn swap(
        &self,
        state: &MigrationState,
        direction: Direction,
        events: &Emitter,
    ) -> Result<(), StepError> {
        if direction == Direction::Back {
            self.move_dns(state, direction, events).await?;
        }
        if direction == Direction::Forward {
            self.mark_open_migration(state).await?;
        }
        for kind in KINDS {
            kind.swap(self, state, direction, events).await?;
        }
        if direction == Direction::Forward {
            self.move_dns(state, direction, events).await?;
        }
        Ok(())
    }

    /// Before the swap's first move, each kind marks its resources of the swap as part of an
    /// open migration (`ResourceKind::mark_open_migration`).
    async fn mark_open_migration(&self, state: &MigrationState) -> Result<(), StepError> {
        for kind in KINDS {
            kind.mark_open_migration(self, state, true, "swap").await?;
        }
        Ok(())
    }

    /// Removes the open-migration marks once the swap is settled either way.
    async fn clear_open_migration(
        &self,
        state: &MigrationState,
        step: &str,
    ) -> Result<(), StepError> {
        for kind in KINDS {
            kind.mark_open_migration(self, state, false, step).await?;
        }
        Ok(())
    }

    async fn move_dns(
        &self,
        state: &MigrationState,
        direction: Direction,
        events: &Emitter,
    ) -> Result<(), StepError> {
        let Some(dns) = &state.dns else { return Ok(()) };
        let step = "dns";
        let record = match direction {
            Direction::Forward => &dns.after,
            Direction::Back => &dns.before,
        };
        // A run recorded by an older envclone kept no TTL (it wrote 60 s, as here).
        let legacy;
        let record = if record.ttl.is_none() && record.alias.is_none() {
            legacy = DnsRecord {
                ttl: Some(60),
                ..record.clone()
            };
            &legacy
        } else {
            record
        };
        let zone = self.dns_zone_id(&dns.zone).await?;
        let current = retry(|| self.cloud.dns.records(&zone, &record.name))
            .await
            .map_err(StepError::port(step))?;
        if current
            .iter()
            .any(|r| super::entry_dns::same_record(r, record))
        {
            return Ok(());
        }
        events.start(step, Some(&record.name), format!("setting {record}"));
        let change = retry(|| self.cloud.dns.upsert(&zone, record))
            .await
            .map_err(StepError::port(step))?;
        let what = format!("DNS change {change} of {} to be INSYNC", record.name);
        wait_until(&what, self.settings.verify_timeout, || async {
            Ok(if self.cloud.dns.change_in_sync(&change).await? {
                Poll::Ready(())
            } else {
                Poll::Pending("PENDING".into())
            })
        })
        .await
        .map_err(StepError::wait(step))?;
        events.done(step, Some(&record.name), "in sync");
        Ok(())
    }

    /// The hosted zone id a migration's state names (an older envclone recorded the zone's
    /// name, which has dots; an id has none).
    pub(super) async fn dns_zone_id(&self, zone: &str) -> Result<String, StepError> {
        if !zone.contains('.') {
            return Ok(zone.to_string());
        }
        let zones = retry(|| self.cloud.dns.zones_named(zone))
            .await
            .map_err(StepError::port("dns"))?;
        match zones.as_slice() {
            [z] => Ok(z.id.clone()),
            _ => Err(StepError::Refused {
                step: "dns".into(),
                message: format!(
                    "the run recorded the hosted zone {zone} by name and {} zones have it; \
                     point the entry record back by hand",
                    zones.len()
                ),
            }),
        }
    }

    /// Preflight of the entry record: its zone found without ambiguity, the record pointing at
    /// the source and of a kind the swap can move and restore whole, and the new template
    /// giving the outputs the record will point at.
    async fn preflight_entry_dns(
        &self,
        plan: &ClonePlan,
        dns: &crate::contract::EntryDns,
    ) -> Result<(), PreflightError> {
        let source = retry(|| self.cloud.stacks.describe_stack(&plan.source_stack))
            .await?
            .ok_or_else(|| PreflightError::SourceMissing {
                what: format!("stack {}", plan.source_stack),
            })?;
        let target = source
            .outputs
            .get(&dns.target_output)
            .cloned()
            .unwrap_or_default();
        let (_, record) = self.find_entry(dns, &target).await?;
        let outputs = plan.template.value.get("Outputs");
        let wanted = std::iter::once(&dns.target_output)
            .chain(record.alias.as_ref().and(dns.target_zone_output.as_ref()));
        for output in wanted {
            if outputs.and_then(|o| o.get(output)).is_none() {
                return Err(PreflightError::Unsupported {
                    what: format!(
                        "the new template {} has no output {output}, which entry_dns names: \
                         the entry record could not be pointed at the new environment",
                        plan.template.origin
                    ),
                });
            }
        }
        Ok(())
    }

    /// Undoes a migration that has not been finalized: swaps back whatever was swapped and
    /// returns the source to service. Once the swap began, the new environment is kept: what
    /// was written to it since the swap stays in it, under its own identifiers. A migration
    /// that never swapped has its new environment removed like an aborted clone's.
    pub async fn abort_migration(
        &self,
        state: &mut MigrationState,
        store: &dyn RunStore,
        events: &Emitter,
    ) -> Result<(), StepError> {
        self.abort_migration_with(state, store, events, false).await
    }

    /// `abort_migration`, keeping what a migration that never swapped made when `keep` is set.
    pub async fn abort_migration_with(
        &self,
        state: &mut MigrationState,
        store: &dyn RunStore,
        events: &Emitter,
        keep: bool,
    ) -> Result<(), StepError> {
        // Decided before anything moves: a swap that began (even one stopped before its first
        // rename) keeps the new environment.
        let never_swapped = state.never_swapped
            && !matches!(state.phase, MigratePhase::Swapping | MigratePhase::Swapped);
        if matches!(
            state.phase,
            MigratePhase::Finalizing | MigratePhase::Finalized
        ) {
            return Err(StepError::Refused {
                step: "abort".into(),
                message: format!("run {} is {:?}: the old environment is being or has been deleted; there is nothing to swap back to", state.run_id, state.phase),
            });
        }
        if matches!(state.phase, MigratePhase::Swapping | MigratePhase::Swapped) {
            self.swap(state, Direction::Back, events).await?;
            self.clear_open_migration(state, "abort").await?;
            if state.old_stack_protected {
                let name = state.source_stack.clone();
                retry(|| self.cloud.stacks.set_termination_protection(&name, false))
                    .await
                    .map_err(StepError::port("abort"))?;
                state.old_stack_protected = false;
                save(store, state)?;
            }
            for kind in KINDS {
                kind.after_swap_back(state, events);
            }
        }
        self.exit_standby(&state.standby, events)
            .await
            .map_err(|m| StepError::Refused {
                step: "standby.exit".into(),
                message: m,
            })?;
        if never_swapped && keep {
            // The kept environment is the operator's: a job of the run still copying into it
            // is cancelled (what it copied stays).
            if let Some(plan) = &state.plan {
                let what =
                    super::recovery::RunResources::of_plan(&state.run_id, plan, &state.creating);
                super::batchcopy::cancel_jobs(self, &what, events).await?;
            }
        }
        if !never_swapped || keep {
            state.phase = MigratePhase::Aborted;
            save(store, state)?;
            events.done(
                "abort",
                None,
                format!(
                    "{} is back in service; the new environment {} is kept",
                    state.env, state.target_stack
                ),
            );
            return Ok(());
        }
        // Never swapped: what the run made — the new stack (`<env>-m<xxxx>`), its snapshots,
        // the buckets it created — is removed, each only if it carries the run's tag.
        let (removed, left) = match &state.plan {
            Some(plan) => {
                let what =
                    super::recovery::RunResources::of_plan(&state.run_id, plan, &state.creating);
                self.remove_run_resources(&what, events).await?
            }
            None => (
                Vec::new(),
                vec![
                    ResourceRef::new(super::resource::STACK, state.target_stack.clone()).with_note(
                        "and what the run made for it: the run recorded no plan to find \
                             them by",
                    ),
                ],
            ),
        };
        state.created = left.clone();
        state.phase = MigratePhase::Aborted;
        save(store, state)?;
        if !left.is_empty() {
            return Err(StepError::Refused {
                step: "abort".into(),
                message: format!(
                    "{} is back in service, but some of what run {} created remains: {}",
                    state.env,
                    state.run_id,
                    super::resource::join(&left, "; ")
                ),
            });
        }
        events.done(
            "abort",
            None,
            format!(
                "{} is back in service; the migration never swapped, so what it made is removed: \
                 {}",
                state.env,
                if removed.is_empty() {
                    "nothing".to_string()
                } else {
                    super::resource::join(&removed, ", ")
                }
            ),
        );
        Ok(())
    }

    /// The point of no return: re-verify the new environment, have each kind deal with the old
    /// environment's resources (`ResourceKind::finalize_check`, `finalize_old`), then delete the
    /// old stack without ever deleting what serves.
    ///
    /// CloudFormation tracks a resource by the identifier it created it with: after the swap,
    /// the old stack's record of what the swap renamed (`ResourceKind::swapped`) names the
    /// identifier that now belongs to what serves. So its kind protects it while the old stack
    /// is deleted (`finalize_old`, undone by `finalize_restore`), a delete that fails on it is
    /// retried retaining it (`finalize_delete_failed`), and the kind removes the renamed old one
    /// itself.
    pub async fn finalize(
        &self,
        state: &mut MigrationState,
        store: &dyn RunStore,
        events: &Emitter,
    ) -> Result<(), StepError> {
        let step = "finalize";
        if state.phase != MigratePhase::Swapped && state.phase != MigratePhase::Finalizing {
            return Err(StepError::Refused {
                step: step.into(),
                message: format!(
                    "run {} is {:?}; only a swapped migration can be finalized",
                    state.run_id, state.phase
                ),
            });
        }
        // Before anything changes: the old environment may be deleted at all, and what the
        // cloning contract does not cover stays.
        let kept = self.finalize_preflight(state).await?;
        // Checked once, before the point of no return; a re-run of an interrupted finalize
        // continues where it stopped.
        if state.phase == MigratePhase::Swapped {
            self.wait_out_old_entry_record(state, events).await?;
            for kind in KINDS {
                kind.finalize_check(self, state, events).await?;
            }
        }
        for k in kept {
            if !state.kept.contains(&k) {
                state.kept.push(k);
            }
        }
        state.phase = MigratePhase::Finalizing;
        save(store, state)?;

        // Each kind deals with its resources of the old environment
        // (`ResourceKind::finalize_old`).
        for kind in KINDS {
            kind.finalize_old(self, state, store, events).await?;
        }

        let deleted = self.delete_old_stack(state, events).await;
        // What finalize set on the live resources goes back whatever happened above.
        for kind in KINDS {
            kind.finalize_restore(self, state).await?;
        }
        state.protection_to_restore.clear();
        save(store, state)?;
        deleted?;
        self.clear_open_migration(state, step).await?;
        state.phase = MigratePhase::Finalized;
        save(store, state)?;
        events.done(
            step,
            None,
            format!(
                "{} is finalized: the old stack {} is deleted",
                state.env, state.source_stack
            ),
        );
        Ok(())
    }

    /// What finalize checks before it changes anything (returns what the old stack's deletion
    /// will keep, for the report):
    /// - the old environment is not tagged `envclone:protected=true`;
    /// - the old stack's termination protection, if on, is the one envclone set for the swap
    ///   (an operator's own is their refusal until they lift it);
    /// - every resource of the old stack that holds state the cloning contract does not cover
    ///   (`inventory::not_covered`: KMS keys, file systems, secrets, log groups…; or
    ///   of a type on neither of `inventory`'s lists, custom resources among them) has
    ///   `DeletionPolicy: Retain` in the old stack's template, so CloudFormation keeps it —
    ///   those the contract's `ignore:` let the clone create empty too: ignoring one lets the
    ///   clone start without its data, it does not consent to destroying the source's.
    ///
    /// Why refuse rather than retain them on the way: CloudFormation keeps a resource of a
    /// stack it deletes only by its DeletionPolicy, or by DeleteStack's RetainResources — which
    /// it accepts only for a stack already in DELETE_FAILED (API Reference, DeleteStack). A
    /// first DeleteStack deletes every resource that nothing failing depends on, in parallel,
    /// so a table or a key is gone before any failure could set it aside: a retry can only
    /// retain what the first attempt could not delete. The policy must be there before.
    pub async fn finalize_preflight(
        &self,
        state: &MigrationState,
    ) -> Result<Vec<String>, StepError> {
        let step = "finalize";
        let stacks = &self.cloud.stacks;
        let name = state.source_stack.clone();
        let refuse = |message: String| StepError::Refused {
            step: step.into(),
            message: format!("{message}. Nothing was changed"),
        };
        let Some(stack) = retry(|| stacks.describe_stack(&name))
            .await
            .map_err(StepError::port(step))?
        else {
            return Ok(Vec::new()); // deleted by an earlier, interrupted finalize
        };
        if stack.tags.get(TAG_PROTECTED).map(String::as_str) == Some("true") {
            return Err(refuse(format!(
                "the old environment {} (stack {name}) is tagged {TAG_PROTECTED}=true, and \
                 envclone never deletes a protected environment; remove the tag if you really \
                 mean to delete it, or `envclone abort {}` to swap back",
                state.env, state.run_id
            )));
        }
        if stack.termination_protection && !state.old_stack_protected {
            return Err(refuse(format!(
                "stack {name} has termination protection that envclone did not turn on; finalize \
                 deletes this stack and lifts only the protection it set itself. If you consent \
                 to deleting it, lift yours by hand (aws cloudformation \
                 update-termination-protection --no-enable-termination-protection --stack-name \
                 {name}) and run `envclone finalize {}` again",
                state.run_id
            )));
        }
        let body = retry(|| stacks.template_body(&name))
            .await
            .map_err(StepError::port(step))?;
        let template = crate::contract::Template::parse(&name, &body).map_err(|e| {
            refuse(format!(
                "the template of the old stack cannot be read ({e}), so what its deletion would \
                 keep is unknown"
            ))
        })?;
        let resources = retry(|| stacks.resources(&name))
            .await
            .map_err(StepError::port(step))?;
        let declared = template.resources();
        let mut kept = Vec::new();
        let mut unprotected = Vec::new();
        for r in &resources {
            // What the swap renamed (`ResourceKind::swapped`) finalize handles itself.
            if resources::of_type(&r.resource_type).is_some_and(|k| k.swapped()) {
                continue;
            }
            let Some(physical) = &r.physical_id else {
                continue;
            };
            let policy = declared
                .and_then(|d| d.get(&r.logical_id))
                .and_then(|d| d.get("DeletionPolicy"));
            // Stateful types and types envclone has not judged (`inventory::finalize_loss`).
            let loses = super::inventory::finalize_loss(&r.resource_type);
            if super::deletion::policy_retains(policy) {
                kept.push(format!(
                    "{} {} {physical} of the old stack {name} (kept by its DeletionPolicy \
                     Retain{}; delete it yourself once nothing needs it)",
                    r.resource_type,
                    r.logical_id,
                    loses
                        .map(|l| format!("; deleting it would lose {l}"))
                        .unwrap_or_default()
                ));
            } else if let Some(loses) = loses {
                unprotected.push(format!(
                    "{} {} ({physical}): deleting it loses {loses}",
                    r.resource_type, r.logical_id
                ));
            }
        }
        if !unprotected.is_empty() {
            return Err(refuse(format!(
                "the old stack {name} holds state that the cloning contract does not cover, which \
                 deleting the stack would destroy: {}. Give each `DeletionPolicy: Retain` in \
                 {name}'s template (a stack update that changes only that attribute), or move or \
                 delete it yourself, then run `envclone finalize {}` again",
                unprotected.join("; "),
                state.run_id
            )));
        }
        Ok(kept)
    }

    /// Turns termination protection on for the old stack before the swap: from the swap's first
    /// move on, its records of what the swap renames (`ResourceKind::swapped`) name what serves,
    /// and a plain `delete-stack` would delete it. Finalize lifts it (that is the consent to delete); abort restores it.
    async fn protect_old_stack(
        &self,
        state: &mut MigrationState,
        store: &dyn RunStore,
        events: &Emitter,
    ) -> Result<(), StepError> {
        let step = "swap";
        if state.never_swapped {
            // The swap's first step: from here on, abort keeps the new environment.
            state.never_swapped = false;
            save(store, state)?;
        }
        let stacks = &self.cloud.stacks;
        let name = state.source_stack.clone();
        let stack = retry(|| stacks.describe_stack(&name))
            .await
            .map_err(StepError::port(step))?
            .ok_or_else(|| StepError::Refused {
                step: step.into(),
                message: format!("stack {name} is gone"),
            })?;
        if stack.termination_protection && !state.old_stack_protected {
            return Ok(()); // the operator's own: stays as it is
        }
        if !state.old_stack_protected {
            state.old_stack_protected = true;
            save(store, state)?;
        }
        retry(|| stacks.set_termination_protection(&name, true))
            .await
            .map_err(StepError::port(step))?;
        events.info(
            step,
            Some(&name),
            "termination protection on: after the swap this stack's records name what serves \
             (what the swap renamed), so a plain delete-stack is refused until finalize",
        );
        Ok(())
    }

    /// The environment the `post_swap` hooks are given, of the live environment: each kind's
    /// (`ResourceKind::post_swap_environment`) as it is now.
    async fn post_swap_environment(
        &self,
        state: &MigrationState,
    ) -> Result<BTreeMap<String, String>, StepError> {
        let mut env = BTreeMap::new();
        for kind in KINDS {
            kind.post_swap_environment(self, state, &mut env).await?;
        }
        Ok(env)
    }

    async fn delete_old_stack(
        &self,
        state: &mut MigrationState,
        events: &Emitter,
    ) -> Result<(), StepError> {
        let step = "finalize";
        let stacks = &self.cloud.stacks;
        let name = state.source_stack.clone();
        if retry(|| stacks.describe_stack(&name))
            .await
            .map_err(StepError::port(step))?
            .is_none()
        {
            return Ok(()); // deleted by an earlier, interrupted finalize
        }
        let protected = retry(|| stacks.describe_stack(&name))
            .await
            .map_err(StepError::port(step))?
            .is_some_and(|s| s.termination_protection);
        if protected {
            if !state.old_stack_protected {
                // An operator's own protection (turned on since the check): theirs to lift.
                return Err(StepError::Refused {
                    step: step.into(),
                    message: format!(
                        "stack {name} has termination protection that envclone did not turn on; \
                         lift it by hand if you consent to deleting the stack, then run \
                         `envclone finalize {}` again",
                        state.run_id
                    ),
                });
            }
            // Finalizing is the consent to delete the old environment; the protection lifted
            // is the one the swap set.
            retry(|| stacks.set_termination_protection(&name, false))
                .await
                .map_err(StepError::port(step))?;
        }
        events.start(step, Some(&name), format!("deleting the old stack {name}"));
        retry(|| stacks.delete_stack(&name, &[]))
            .await
            .map_err(StepError::port(step))?;
        let first = self.wait_stack_deleted(&name, step).await?;
        if let Some(failed) = first {
            // What failed is retained, where its kind expects the failure
            // (`ResourceKind::finalize_delete_failed`: what serves, protected and named by the
            // old stack's record; what still holds the old data). AWS refuses to retain a
            // resource that is already deleted, so only DELETE_FAILED ones are named.
            let after = retry(|| stacks.resources(&name))
                .await
                .map_err(StepError::port(step))?;
            let failed_here: Vec<&StackResource> = after
                .iter()
                .filter(|r| r.status == ResourceStatus::DeleteFailed)
                .collect();
            let retain: Vec<String> = failed_here.iter().map(|r| r.logical_id.clone()).collect();
            // Each kind says whether its failure is expected, and what retaining it keeps.
            let mut unexpected: Vec<&String> = Vec::new();
            let mut kept = Vec::new();
            for r in &failed_here {
                match resources::of_type(&r.resource_type).and_then(|k| k.finalize_delete_failed(r))
                {
                    Some(k) => kept.extend(k),
                    None => unexpected.push(&r.logical_id),
                }
            }
            if !unexpected.is_empty() {
                return Err(StepError::Refused {
                    step: step.into(),
                    message: format!(
                        "stack {name} could not delete {unexpected:?} ({failed}); fix that and run \
                         `envclone finalize {}` again",
                        state.run_id
                    ),
                });
            }
            events.info(
                step,
                Some(&name),
                format!(
                    "delete stopped ({failed}); retrying, retaining {}",
                    retain.join(", ")
                ),
            );
            state.kept.extend(kept);
            retry(|| stacks.delete_stack(&name, &retain))
                .await
                .map_err(StepError::port(step))?;
            if let Some(failed) = self.wait_stack_deleted(&name, step).await? {
                return Err(StepError::Refused {
                    step: step.into(),
                    message: format!("stack {name} could not be deleted: {failed}"),
                });
            }
        }
        events.done(step, Some(&name), "old stack deleted");
        Ok(())
    }
}

/// A migration that stopped: the error, and the state it left (phase says whether the source
/// is back in service and what was swapped).
#[derive(Debug)]
pub struct MigrateFailure {
    pub state: MigrationState,
    pub error: StepError,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_fit_the_rules() {
        let run = RunId::from_existing("20261121000000-beef");
        assert_eq!(temporary_name("prod", &run).unwrap().as_str(), "prod-mbeef");
        assert!(temporary_name(&"a".repeat(23), &run).is_err());
    }
}
