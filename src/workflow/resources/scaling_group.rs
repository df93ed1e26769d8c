//! An Auto Scaling group of the source: its InService instances are put into Standby for the
//! copy (so nothing writes), and returned to service on every path. It holds no data: the
//! clone stack recreates it; a run makes nothing of it outside the stack.
//!
//! Standby itself (enter, exit, the records of it) is still in `clone.rs`.

use async_trait::async_trait;

use crate::contract::{Contract, ASG};
use crate::events::Emitter;
use crate::ports::{StackInfo, StackResource};
use crate::retry::{retry, wait_until, Poll};
use crate::s3sync::VerifyReport;

use super::super::engine::{CheckResult, CloneEngine};
use super::super::plan::ClonePlan;
use super::super::record::{MigrationState, PlanRecord};
use super::super::resource::{
    Checked, PlanStage, RefKind, Removal, ResourceKind, ResourceRef, RunScope,
};
use super::super::{PreflightError, StepError};

/// The Auto Scaling group kind.
pub struct ScalingGroup;

#[async_trait]
impl ResourceKind for ScalingGroup {
    /// The groups are what is put into Standby: they hold nothing the window waits for.
    fn window_needs(&self, _plan: &ClonePlan) -> crate::workflow::window::WindowNeeds {
        crate::workflow::window::WindowNeeds::default()
    }
    fn name(&self) -> &'static str {
        "auto-scaling-group"
    }
    /// None: a group holds no data (`inventory::STATELESS_TYPES` lists its type), so the
    /// inventory never judges it as this kind's.
    fn stack_types(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    fn ref_kinds(&self) -> &'static [RefKind] {
        &[]
    }
    /// Each group to put into Standby exists.
    async fn preflight(
        &self,
        engine: &CloneEngine,
        _source: &crate::workflow::plan::SourceEnv,
        plan: &mut ClonePlan,
    ) -> Result<(), PreflightError> {
        for g in &plan.scaling_groups {
            if retry(|| engine.cloud.scaling.describe_group(g))
                .await?
                .is_none()
            {
                return Err(PreflightError::SourceMissing {
                    what: format!("Auto Scaling group {g}"),
                });
            }
        }
        Ok(())
    }
    /// Standby of each group's InService instances first, their return to service last.
    fn plan_steps(&self, plan: &ClonePlan, stage: PlanStage) -> Vec<String> {
        match stage {
            PlanStage::Quiesce => plan
                .scaling_groups
                .iter()
                .map(|g| {
                    format!(
                        "put the InService instances of Auto Scaling group {g} into Standby \
                         (they keep running, leave the load balancer, and are not replaced)"
                    )
                })
                .collect(),
            PlanStage::Resume if !plan.scaling_groups.is_empty() => vec![format!(
                "return the instances of {} to service (also on every failure)",
                plan.scaling_groups.join(", ")
            )],
            _ => Vec::new(),
        }
    }
    fn artifacts(&self, _plan: &PlanRecord) -> Vec<ResourceRef> {
        Vec::new()
    }
    fn artifacts_of_stack(&self, _contract: &Contract, _stack: &StackInfo) -> Vec<ResourceRef> {
        Vec::new()
    }
    /// Its instances InService, as many as its desired capacity.
    async fn verify(
        &self,
        engine: &CloneEngine,
        env: &Checked<'_>,
        checks: &mut Vec<CheckResult>,
        _reports: &mut Vec<VerifyReport>,
    ) -> Result<(), StepError> {
        let cloud = &engine.cloud;
        let timeout = engine.settings.verify_timeout;
        for r in env.resources.iter().filter(|r| r.resource_type == ASG) {
            let Some(group) = r.physical_id.clone() else {
                continue;
            };
            let what = format!("instances of {group} to be InService");
            let result = wait_until(&what, timeout, || async {
                let info = cloud.scaling.describe_group(&group).await?;
                Ok(match info {
                    Some(i) => {
                        let n = i.ids_in(&crate::ports::LifecycleState::InService).len() as i32;
                        if n >= i.desired_capacity {
                            Poll::Ready(format!("{n} of {} desired InService", i.desired_capacity))
                        } else {
                            Poll::Pending(format!(
                                "{n} of {} desired InService",
                                i.desired_capacity
                            ))
                        }
                    }
                    None => Poll::Pending("group not found".into()),
                })
            })
            .await;
            checks.push(CheckResult {
                check: format!("instances of {group}"),
                ok: result.is_ok(),
                detail: result.unwrap_or_else(|e| e.to_string()),
            });
        }
        Ok(())
    }

    async fn remove(
        &self,
        _engine: &CloneEngine,
        what: &ResourceRef,
        _run: RunScope<'_>,
        _out: &mut Removal,
    ) -> Result<(), StepError> {
        Err(StepError::Refused {
            step: "abort".into(),
            message: format!(
                "{what}: an Auto Scaling group makes nothing outside its stack; this reference \
                 is not one a run records (a bug: report it)"
            ),
        })
    }

    /// Checked at the guardrails: the source's instances still in Standby.
    fn guardrail_words(&self, plan: &ClonePlan) -> Vec<String> {
        if plan.scaling_groups.is_empty() {
            Vec::new()
        } else {
            vec![format!(
                "{} still in Standby, no scaling activity",
                plan.source_env
            )]
        }
    }

    /// Migrate's guardrail: the source's instances put into Standby are still there, and no
    /// scaling activity is in flight in their groups.
    async fn check_before_swap(
        &self,
        engine: &CloneEngine,
        state: &MigrationState,
    ) -> Result<(), StepError> {
        let step = "guardrails";
        let scaling = &engine.cloud.scaling;
        let refuse = |message: String| StepError::Refused {
            step: step.into(),
            message,
        };
        for r in &state.standby {
            let info = retry(|| scaling.describe_group(&r.group))
                .await
                .map_err(StepError::port(step))?
                .ok_or_else(|| refuse(format!("Auto Scaling group {} is gone", r.group)))?;
            let standby = info.ids_in(&crate::ports::LifecycleState::Standby);
            if let Some(id) = r.instance_ids.iter().find(|id| !standby.contains(id)) {
                return Err(refuse(format!(
                    "instance {id} of {} left Standby; someone returned it to service",
                    r.group
                )));
            }
            let busy = retry(|| scaling.activities_in_progress(&r.group))
                .await
                .map_err(StepError::port(step))?;
            if !busy.is_empty() {
                return Err(refuse(format!(
                    "{} has scaling activity in flight: {}",
                    r.group,
                    busy.join("; ")
                )));
            }
        }
        Ok(())
    }

    /// Every group of the new stack has its desired number of instances InService and Healthy.
    async fn check_after_swap(
        &self,
        engine: &CloneEngine,
        _state: &MigrationState,
        resources: &[StackResource],
        timeout: std::time::Duration,
        events: &Emitter,
        failures: &mut Vec<String>,
    ) -> Result<(), StepError> {
        for group in resources
            .iter()
            .filter(|r| r.resource_type == ASG)
            .filter_map(|r| r.physical_id.clone())
        {
            match engine.wait_group_healthy(&group, timeout).await {
                Ok(detail) => events.done("verify.after_swap", Some(&group), detail),
                Err(e) => failures.push(e),
            }
        }
        Ok(())
    }
}

/// The source's groups (by physical id), whose instances a run puts into Standby.
pub fn groups_of(resources: &[crate::ports::StackResource]) -> Vec<String> {
    resources
        .iter()
        .filter(|r| r.resource_type == ASG)
        .filter_map(|r| r.physical_id.clone())
        .collect()
}
