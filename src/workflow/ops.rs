//! Commands that act on one existing environment: `verify` and `standby on|off`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::contract::{BucketSpec, Contract, ASG};
use crate::events::Emitter;
use crate::journal::RunStore;
use crate::model::{TAG_RUN, TAG_SOURCE};
use crate::retry::retry;
use crate::template_eval::Evaluator;

use super::clone::{CheckResult, CloneEngine, StandbyRecord, SCALING_PROCESSES, STANDBY_BATCH};
use super::plan::SourceEnv;
use super::record::RunRecord;
use super::resources::{groups_of, KINDS};
use super::{PreflightError, StepError};

/// The buckets of an environment by contract logical id (stack-owned: the stack's bucket;
/// by parameter: the parameter's value, or the stack's own bucket when it is empty).
pub fn contract_buckets(env: &SourceEnv, contract: &Contract) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for b in &contract.buckets {
        let name = match b {
            BucketSpec::StackOwned { logical_id } => {
                env.physical_id(logical_id).map(str::to_string)
            }
            BucketSpec::ByParameter {
                logical_id,
                parameter,
            } => env
                .bucket_by_parameter(logical_id, parameter)
                .map(str::to_string),
        };
        if let Some(name) = name {
            out.insert(b.logical_id().to_string(), name);
        }
    }
    out
}

/// What `envclone verify` found: its checks, each bucket's report, and how the buckets were
/// compared (as of the clone's T, or as they are now, and why).
#[derive(Debug, Default)]
pub struct EnvVerification {
    pub checks: Vec<CheckResult>,
    pub reports: Vec<crate::s3sync::VerifyReport>,
    /// What the comparison rests on, for the output (e.g. "buckets compared as of T").
    pub notes: Vec<String>,
}

/// Which targets `verify` compares with their source as of the clone's T, and the notes that
/// say so (issue 13: "`verify` compares a clone with its source as of T"). A versioned source
/// bucket was copied as of the run's T (its versions ≤ T), so it is compared as of T: writes to
/// the source since are not differences. A bucket that kept no versions at preflight was copied
/// as it was inside the window and can only be compared with the source as it is now.
fn as_of_basis(
    run_id: &str,
    record: Option<&RunRecord>,
    source_stack: &str,
    target_buckets: &BTreeMap<String, String>,
    tables: bool,
) -> (Vec<(String, DateTime<Utc>)>, Vec<String>) {
    let mut notes = Vec::new();
    let now = "its buckets are compared with the source as it is now (a write to it since the \
               clone is a difference)";
    let record = match record {
        Some(RunRecord::Clone(record)) => record,
        Some(RunRecord::Migrate(_)) => {
            notes.push(format!(
                "run {run_id} is a migration, which keeps its source in Standby through the \
                 swap and fixes no T to compare as of: {now}"
            ));
            return (Vec::new(), notes);
        }
        None => {
            notes.push(format!(
                "no record of run {run_id} in this state location: {now}; pass the --state-dir \
                 or --state the clone ran with to compare as of its T"
            ));
            return (Vec::new(), notes);
        }
    };
    let Some(mark) = record.window else {
        notes.push(format!(
            "run {run_id} fixed no moment T (no Standby): {now}"
        ));
        return (Vec::new(), notes);
    };
    let t = mark.t;
    let stamp = t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    if record.plan.source_stack != source_stack {
        notes.push(format!(
            "compared with {source_stack} as it is now: run {run_id}'s T ({stamp}) is a moment \
             of its source {}, not of {source_stack}",
            record.plan.source_stack
        ));
        return (Vec::new(), notes);
    }
    let mut as_of = Vec::new();
    let (mut then, mut live) = (Vec::new(), Vec::new());
    for b in &record.plan.buckets {
        let Some(target) = target_buckets.get(&b.logical_id) else {
            continue;
        };
        if b.versioned {
            as_of.push((target.clone(), t));
            then.push(b.source_bucket.clone());
        } else {
            live.push(b.source_bucket.clone());
        }
    }
    if !then.is_empty() {
        notes.push(format!(
            "bucket(s) {} compared as of run {run_id}'s T, {stamp} (each key's newest version at \
             or before it): writes to the source since are not differences",
            then.join(", ")
        ));
    }
    if !live.is_empty() {
        notes.push(format!(
            "bucket(s) {} kept no versions when run {run_id} was planned: compared as they are \
             now, so a write to them since T ({stamp}) is a difference (enable versioning on a \
             bucket for its next clone to be verified as of T)",
            live.join(", ")
        ));
    }
    if tables {
        notes.push(
            "DynamoDB tables are never compared as of T (DynamoDB has no read as of a moment): \
             where `verify` compares them, it is as they are now, so a write to a source table \
             since the clone is a difference"
                .to_string(),
        );
    }
    (as_of, notes)
}

impl CloneEngine {
    /// `envclone verify ENV [--against SRC]`, without a run record: every bucket compared with
    /// its source as it is now.
    pub async fn verify_env(
        &self,
        env: &str,
        against: Option<&str>,
    ) -> Result<(Vec<CheckResult>, Vec<crate::s3sync::VerifyReport>), VerifyError> {
        let v = self.verify_env_with(env, against, None).await?;
        Ok((v.checks, v.reports))
    }

    /// `envclone verify ENV [--against SRC]`: the clone's versioned buckets compared with the
    /// source as of the T its run recorded in `runs` (see [`as_of_basis`]), the others as they
    /// are now.
    pub async fn verify_env_with(
        &self,
        env: &str,
        against: Option<&str>,
        runs: Option<&dyn RunStore>,
    ) -> Result<EnvVerification, VerifyError> {
        let target = self.resolve(env).await?;
        let source_name =
            match against {
                Some(s) => s.to_string(),
                None => target.stack.tags.get(TAG_SOURCE).cloned().ok_or_else(|| {
                    VerifyError::NoSource {
                        env: env.to_string(),
                    }
                })?,
            };
        let source = self.resolve(&source_name).await?;
        let contract = Contract::from_template(&target.template).map_err(PreflightError::from)?;
        let target_buckets = contract_buckets(&target, &contract);
        let source_buckets = contract_buckets(&source, &contract);
        let mut out = EnvVerification::default();
        let mut as_of = Vec::new();
        if let Some(runs) = runs {
            match target.stack.tags.get(TAG_RUN) {
                None => out.notes.push(format!(
                    "{env} carries no {TAG_RUN} tag: its buckets are compared with the source as \
                     it is now"
                )),
                Some(run_id) => {
                    let record =
                        RunRecord::load(runs, run_id).map_err(|e| VerifyError::Record {
                            run_id: run_id.clone(),
                            env: env.to_string(),
                            message: e,
                        })?;
                    let tables = !contract.tables.is_empty();
                    (as_of, out.notes) = as_of_basis(
                        run_id,
                        record.as_ref(),
                        &source.stack.name,
                        &target_buckets,
                        tables,
                    );
                }
            }
        }
        let mut pairs = Vec::new();
        for (logical_id, t) in &target_buckets {
            match source_buckets.get(logical_id) {
                Some(s) => pairs.push((s.clone(), t.clone())),
                None => out.checks.push(CheckResult {
                    check: format!("bucket {logical_id}"),
                    ok: false,
                    detail: format!("{source_name} has no bucket {logical_id} to compare with"),
                }),
            }
        }
        let copies: Vec<_> = KINDS
            .iter()
            .flat_map(|kind| kind.paired_copies(&contract, &source, &target, &mut out.checks))
            .collect();
        out.reports = self
            .check_environment(
                &target.stack.name,
                &contract,
                (&pairs, &as_of),
                &copies,
                &mut out.checks,
            )
            .await?;
        Ok(out)
    }

    /// `envclone standby ENV on`: every InService instance of ENV's groups into Standby.
    pub async fn standby_on(
        &self,
        env: &SourceEnv,
        events: &Emitter,
    ) -> Result<Vec<StandbyRecord>, StepError> {
        let mut records = Vec::new();
        let result = self
            .enter_standby(
                &groups_of(&env.resources),
                events,
                &mut records,
                &|_| Ok(()),
            )
            .await;
        result.map(|()| records)
    }

    /// `envclone standby ENV off`: every Standby instance of ENV's groups back in service, and
    /// MinSize back to what the stack's template sets (Standby may have lowered it).
    pub async fn standby_off(&self, env: &SourceEnv, events: &Emitter) -> Result<(), StepError> {
        let (account, region) = env.account_and_region();
        let evaluator = Evaluator {
            template: &env.template,
            parameters: &env.stack.parameters,
            stack_name: &env.stack.name,
            account_id: &account,
            region: &region,
            resource_refs: BTreeMap::new(),
        };
        let scaling = &self.cloud.scaling;
        let step = "standby.exit";
        for r in env.resources.iter().filter(|r| r.resource_type == ASG) {
            let Some(group) = r.physical_id.as_deref() else {
                continue;
            };
            let info = retry(|| scaling.describe_group(group))
                .await
                .map_err(StepError::port(step))?
                .ok_or_else(|| StepError::Refused {
                    step: step.into(),
                    message: format!("Auto Scaling group {group} does not exist"),
                })?;
            let ids = info.ids_in(&crate::ports::LifecycleState::Standby);
            if !ids.is_empty() {
                events.start(
                    step,
                    Some(group),
                    format!("returning {} to service", ids.join(", ")),
                );
                for batch in ids.chunks(STANDBY_BATCH) {
                    retry(|| scaling.exit_standby(group, batch))
                        .await
                        .map_err(StepError::port(step))?;
                }
                self.wait_for_lifecycle(group, &ids, crate::ports::LifecycleState::InService)
                    .await
                    .map_err(StepError::wait(step))?;
            }
            // `standby on` (and a run) suspend these; without a run record there is no telling
            // which of them the operator had suspended before, so all of envclone's are
            // resumed and named.
            let resume: Vec<String> = info
                .suspended_processes
                .iter()
                .filter(|p| SCALING_PROCESSES.contains(&p.as_str()))
                .cloned()
                .collect();
            if !resume.is_empty() {
                retry(|| scaling.resume_processes(group, &resume))
                    .await
                    .map_err(StepError::port(step))?;
                events.warn(
                    step,
                    Some(group),
                    format!(
                        "resumed scaling processes {} (suspend again any you had suspended \
                         yourself)",
                        resume.join(", ")
                    ),
                );
            }
            let template_min = evaluator
                .property(&r.logical_id, "MinSize")
                .and_then(|v| v.parse::<i32>().ok());
            if let Some(min) = template_min {
                if min != info.min_size {
                    retry(|| scaling.update_sizes(group, Some(min), None, None))
                        .await
                        .map_err(StepError::port(step))?;
                }
            }
            events.done(step, Some(group), "in service");
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error("{env} has no envclone:source tag (it was not made by envclone clone); pass --against SOURCE")]
    NoSource { env: String },
    #[error(transparent)]
    Step(#[from] StepError),
    #[error(
        "the record of run {run_id}, which made {env}, could not be read ({message}): without \
         it the clone's T is not known, so its versioned buckets cannot be compared as of T; \
         repair or remove the record, or pass --against SOURCE to compare with the source as it \
         is now"
    )]
    Record {
        run_id: String,
        env: String,
        message: String,
    },
}
