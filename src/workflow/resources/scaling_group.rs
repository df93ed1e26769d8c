//! An Auto Scaling group of the source: its InService instances are put into Standby for the
//! copy (so nothing writes), and returned to service on every path. It holds no data: the
//! clone stack recreates it; a run makes nothing of it outside the stack.
//!
//! Standby itself (enter, exit, the records of it) is still in `clone.rs`.

use async_trait::async_trait;

use crate::contract::{Contract, ASG};
use crate::ports::StackInfo;

use super::super::clone::CloneEngine;
use super::super::recovery::PlanRecord;
use super::super::resource::{RefKind, Removal, ResourceKind, ResourceRef, RunScope};
use super::super::StepError;

/// The Auto Scaling group kind.
pub struct ScalingGroup;

#[async_trait]
impl ResourceKind for ScalingGroup {
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
    fn artifacts(&self, _plan: &PlanRecord) -> Vec<ResourceRef> {
        Vec::new()
    }
    fn artifacts_of_stack(&self, _contract: &Contract, _stack: &StackInfo) -> Vec<ResourceRef> {
        Vec::new()
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
}

/// The source's groups (by physical id), whose instances a run puts into Standby.
pub fn groups_of(resources: &[crate::ports::StackResource]) -> Vec<String> {
    resources
        .iter()
        .filter(|r| r.resource_type == ASG)
        .filter_map(|r| r.physical_id.clone())
        .collect()
}
