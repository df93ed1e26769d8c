//! Commands that act on one existing environment: `verify` and `standby on|off`.

use std::collections::BTreeMap;

use crate::contract::{BucketSpec, Contract, ASG};
use crate::events::Emitter;
use crate::model::TAG_SOURCE;
use crate::retry::retry;
use crate::template_eval::Evaluator;

use super::clone::{CheckResult, CloneEngine, StandbyRecord, SCALING_PROCESSES, STANDBY_BATCH};
use super::plan::SourceEnv;
use super::resources::KINDS;
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

pub fn scaling_groups(env: &SourceEnv) -> Vec<String> {
    env.resources
        .iter()
        .filter(|r| r.resource_type == ASG)
        .filter_map(|r| r.physical_id.clone())
        .collect()
}

impl CloneEngine {
    /// `envclone verify ENV [--against SRC]`.
    pub async fn verify_env(
        &self,
        env: &str,
        against: Option<&str>,
    ) -> Result<(Vec<CheckResult>, Vec<crate::s3sync::VerifyReport>), VerifyError> {
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
        let mut checks = Vec::new();
        let mut pairs = Vec::new();
        for (logical_id, t) in &target_buckets {
            match source_buckets.get(logical_id) {
                Some(s) => pairs.push((s.clone(), t.clone())),
                None => checks.push(CheckResult {
                    check: format!("bucket {logical_id}"),
                    ok: false,
                    detail: format!("{source_name} has no bucket {logical_id} to compare with"),
                }),
            }
        }
        let copies: Vec<_> = KINDS
            .iter()
            .flat_map(|kind| kind.paired_copies(&contract, &source, &target, &mut checks))
            .collect();
        let reports = self
            .check_environment(&target.stack.name, &contract, &pairs, &copies, &mut checks)
            .await?;
        Ok((checks, reports))
    }

    /// `envclone standby ENV on`: every InService instance of ENV's groups into Standby.
    pub async fn standby_on(
        &self,
        env: &SourceEnv,
        events: &Emitter,
    ) -> Result<Vec<StandbyRecord>, StepError> {
        let mut records = Vec::new();
        let result = self
            .enter_standby(&scaling_groups(env), events, &mut records, &|_| Ok(()))
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
}
