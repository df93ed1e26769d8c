//! The engine every phase and every resource kind runs on, below them all: the cloud's ports
//! and the run's settings ([`CloneEngine`], [`Settings`], [`BatchSettings`]), what a copy and a
//! check produce ([`BucketOutcome`], [`CopyOutcome`], [`CheckResult`]), what a run made so far
//! ([`Created`]) and the checkpoint it reports to before a change ([`Checkpoint`], [`Progress`],
//! with what it records of the source's Standby and window: [`StandbyRecord`], [`WindowMark`]),
//! and the waits any phase or kind uses (a snapshot available, a stack deleted, a resource of
//! the clone stack created, a group's instances healthy, a database deleted).
//!
//! It names no resource kind and no phase: the kinds (`resources/`) and the phases (`clone`,
//! `migrate`, `recovery`…) are above it (`scripts/import-graph --strict`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ports::{Cloud, DbKind, DbStatus, HealthStatus, LifecycleState, PortError};
use crate::retry::retry;
use crate::retry::{wait_until, Poll};
use crate::s3sync::{AsOfPoint, BucketPath, SyncOptions, SyncStats};

use super::plan::ClonePlan;
use super::refs::ResourceRef;
use super::StepError;

/// How long each wait may take, and how copies run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub standby_timeout: Duration,
    pub snapshot_timeout: Duration,
    pub stack_timeout: Duration,
    pub verify_timeout: Duration,
    /// How long each check of the live environment after migrate's swap may take before the
    /// swap is undone (the environment serves from the new stack meanwhile: a long wait is an
    /// outage).
    pub post_swap_timeout: Duration,
    pub sync: SyncOptions,
    pub verify_concurrency: usize,
    /// Copy the buckets passed by parameter before Standby, so Standby copies only the delta.
    pub precopy: bool,
    /// The `--state` bucket and prefix, when given: a template over CreateStack's TemplateBody
    /// limit is staged there (under `<prefix>/staging/<run>/`) instead of in a bucket of the
    /// run's own.
    pub state_bucket: Option<(String, String)>,
    /// `--engine batch` and the jobs' role and reports location.
    pub batch: BatchSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            standby_timeout: Duration::from_secs(15 * 60),
            snapshot_timeout: Duration::from_secs(4 * 3600),
            stack_timeout: Duration::from_secs(2 * 3600),
            verify_timeout: Duration::from_secs(20 * 60),
            post_swap_timeout: Duration::from_secs(5 * 60),
            sync: SyncOptions::default(),
            verify_concurrency: 32,
            precopy: true,
            state_bucket: None,
            batch: Default::default(),
        }
    }
}

/// Records what is about to be put into Standby, before the call (so a crash right after it
/// still knows what to return to service). An error stops the run before that change.
pub type Checkpoint<'a> = &'a (dyn Fn(Progress<'_>) -> Result<(), String> + Sync);

/// What a run is about to change, reported to its checkpoint before the call.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// These instances (all the run has put into Standby so far) are about to be.
    Standby(&'a [StandbyRecord]),
    /// This bucket is about to be created (it is tagged in a second call: a crash between the
    /// two leaves it untagged, and this record is how abort knows it anyway).
    CreatingBucket(&'a str),
    /// The window's T was fixed (a resumed run reuses it), or the window ended.
    Window(&'a WindowMark),
}

/// Instances a run put into Standby, and the group's MinSize before (lowered when Standby
/// would take desired capacity below it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StandbyRecord {
    pub group: String,
    pub instance_ids: Vec<String>,
    pub original_min_size: i32,
    pub original_desired: i32,
    /// MaxSize before the run: ExitStandby may need it raised (it adds the instances back to
    /// the desired capacity), and it is put back.
    #[serde(default)]
    pub original_max_size: Option<i32>,
    /// Scaling processes this run suspended, and resumes. Those the operator had suspended
    /// before are not listed: they stay suspended.
    #[serde(default)]
    pub suspended_by_run: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BucketOutcome {
    pub logical_id: String,
    pub source: String,
    pub target: String,
    /// The copy made during Standby (after a pre-copy: only the delta).
    pub stats: SyncStats,
    /// The bulk copy made before Standby, if any.
    pub precopy: Option<SyncStats>,
    /// The source was copied as it was at this moment (T: a versioned source, copied after the
    /// source returned to service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
}

/// A copy of a kind without a field of its own in the report (a DynamoDB table): what was
/// copied into what, and what the copy did.
#[derive(Debug, Clone, Serialize)]
pub struct CopyOutcome {
    /// The kind's name (`ResourceKind::name`), which verifies it.
    pub kind: String,
    pub logical_id: String,
    pub source: String,
    pub target: String,
    /// What the copy did, in words (`1000 item(s) copied, …`).
    pub detail: String,
}

/// Resources created so far, for the failure report.
#[derive(Default)]
pub struct Created(std::sync::Mutex<Vec<ResourceRef>>);

impl Created {
    pub fn add(&self, what: ResourceRef) {
        let mut list = self.0.lock().expect("created lock");
        if !list.iter().any(|w| w.same(&what)) {
            list.push(what);
        }
    }
    pub(crate) fn list(&self) -> Vec<ResourceRef> {
        self.0.lock().expect("created lock").clone()
    }
    pub fn contains(&self, what: &ResourceRef) -> bool {
        self.0
            .lock()
            .expect("created lock")
            .iter()
            .any(|w| w.same(what))
    }
    pub(crate) fn remove(&self, what: &ResourceRef) {
        self.0
            .lock()
            .expect("created lock")
            .retain(|w| !w.same(what));
    }
}

pub struct CloneEngine {
    pub cloud: Cloud,
    pub settings: Settings,
}

/// What the operator gave for the batch copies of a clone or migrate.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    /// `--engine batch`: every bucket of the contract.
    pub all: bool,
    /// `--batch-role`: the IAM role the jobs assume (its account runs them).
    pub role_arn: Option<String>,
    /// `--batch-reports`: where the journals, manifests and completion reports go.
    pub reports: Option<BucketPath>,
    pub priority: i32,
    /// Between two DescribeJob.
    pub poll: Duration,
    /// Objects over this size stay out of a job (CopyObject's 5 GiB) and are copied locally.
    pub copy_limit: u64,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            all: false,
            role_arn: None,
            reports: None,
            priority: 10,
            poll: Duration::from_secs(10),
            copy_limit: crate::s3sync::AWS_COPY_LIMIT,
        }
    }
}

/// What a run recorded of its window (the run record), so a resumed run reuses T.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct WindowMark {
    pub t: DateTime<Utc>,
    pub quiet_until: DateTime<Utc>,
    /// When the source was returned to service before the clone was verified, if it was.
    #[serde(default)]
    pub ended: Option<DateTime<Utc>>,
}

impl WindowMark {
    pub fn point(&self) -> AsOfPoint {
        AsOfPoint {
            t: self.t,
            quiet_until: self.quiet_until,
        }
    }
}

impl CloneEngine {
    /// Waits until snapshot `id` of database `instance` is available (or fails for good).
    pub async fn wait_snapshot_available(
        &self,
        kind: DbKind,
        id: &str,
        instance: &str,
        step: &str,
    ) -> Result<(), StepError> {
        let snapshots = self.cloud.databases.snapshots(kind);
        let what = format!(
            "{} {id} of {instance} to be available",
            kind.snapshot_noun()
        );
        wait_until(&what, self.settings.snapshot_timeout, || async {
            Ok(match snapshots.describe(id).await? {
                Some(s) if s.status == crate::ports::SnapshotStatus::Available => Poll::Ready(()),
                // Failed, or being deleted (by someone else): it will never be available.
                Some(s)
                    if matches!(
                        s.status,
                        crate::ports::SnapshotStatus::Failed
                            | crate::ports::SnapshotStatus::Deleting
                    ) || s.status == "deleted" =>
                {
                    Poll::Failed(format!("snapshot status {}", s.status))
                }
                Some(s) => Poll::Pending(s.status.to_string()),
                None => Poll::Pending("not visible yet".into()),
            })
        })
        .await
        .map_err(StepError::wait(step))
    }

    /// Waits for a stack deletion to end; Some(reason) if it ended DELETE_FAILED.
    pub async fn wait_stack_deleted(
        &self,
        name: &str,
        step: &str,
    ) -> Result<Option<String>, StepError> {
        let stacks = &self.cloud.stacks;
        let what = format!("stack {name} to be deleted");
        wait_until(&what, self.settings.stack_timeout, || async {
            Ok(match stacks.describe_stack(name).await? {
                None => Poll::Ready(None),
                Some(s) if s.status == crate::ports::StackStatus::DeleteFailed => Poll::Ready(
                    Some(s.status_reason.unwrap_or_else(|| "DELETE_FAILED".into())),
                ),
                Some(s) => Poll::Pending(s.status.to_string()),
            })
        })
        .await
        .map_err(StepError::wait(step))
    }

    /// Waits until the clone stack has created its resource `logical_id` of `resource_type`
    /// (a `noun` for the message); returns its physical id.
    pub(crate) async fn wait_for_stack_resource(
        &self,
        plan: &ClonePlan,
        logical_id: &str,
        (resource_type, noun): (&str, &str),
        step: &'static str,
    ) -> Result<String, StepError> {
        let stacks = &self.cloud.stacks;
        let what = format!("stack {} to create {noun} {logical_id}", plan.target_stack);
        wait_until(&what, self.settings.stack_timeout, || async {
            let resources = stacks.resources(&plan.target_stack).await?;
            let r = resources
                .iter()
                .find(|r| r.logical_id == logical_id && r.resource_type == resource_type);
            Ok(match r {
                Some(r) if r.is_created() => {
                    Poll::Ready(r.physical_id.clone().expect("created resources have an id"))
                }
                Some(r) if r.status.is_failed() => {
                    Poll::Failed(format!("{logical_id} is {}", r.status))
                }
                Some(r) => Poll::Pending(r.status.to_string()),
                None => Poll::Pending("not started".into()),
            })
        })
        .await
        .map_err(StepError::wait(step))
    }

    /// Waits until `group` has at least its desired capacity InService and Healthy (Auto
    /// Scaling's HealthStatus, which with `HealthCheckType: ELB` follows the load balancer's
    /// target health: DescribeAutoScalingGroups, Instance.HealthStatus).
    pub(super) async fn wait_group_healthy(
        &self,
        group: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let scaling = &self.cloud.scaling;
        let what = format!("instances of {group} to be InService and Healthy");
        wait_until(&what, timeout, || async {
            let Some(info) = scaling.describe_group(group).await? else {
                return Ok(Poll::Pending("group not found".into()));
            };
            let healthy = info
                .instances
                .iter()
                .filter(|i| {
                    i.lifecycle_state == LifecycleState::InService
                        && i.health_status == HealthStatus::Healthy
                })
                .count() as i32;
            let state = format!(
                "{healthy} of {} desired InService and Healthy ({})",
                info.desired_capacity,
                info.instances
                    .iter()
                    .map(|i| format!("{} {} {}", i.id, i.lifecycle_state, i.health_status))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(if healthy >= info.desired_capacity {
                Poll::Ready(state)
            } else {
                Poll::Pending(state)
            })
        })
        .await
        .map_err(|e| e.to_string())
    }

    /// Deletes a database without a final snapshot and waits until it is gone; false if it
    /// was already gone.
    pub(super) async fn delete_db_and_wait(
        &self,
        kind: DbKind,
        id: &str,
        step: &str,
    ) -> Result<bool, StepError> {
        let dbs = &self.cloud.databases;
        match retry(|| dbs.delete(kind, id)).await {
            Ok(()) => {}
            Err(PortError::NotFound { .. }) => return Ok(false),
            Err(e) => {
                // Already being deleted (an interrupted finalize): wait for it like the first time.
                let status = retry(|| dbs.status_of(kind, id))
                    .await
                    .map_err(StepError::port(step))?;
                match status {
                    None => return Ok(false),
                    Some(DbStatus::Deleting) => {}
                    Some(_) => return Err(StepError::port(step)(e)),
                }
            }
        }
        let what = format!("database {id} to be deleted");
        wait_until(&what, self.settings.stack_timeout, || async {
            Ok(match dbs.status_of(kind, id).await? {
                None => Poll::Ready(()),
                Some(status) => Poll::Pending(status.to_string()),
            })
        })
        .await
        .map_err(StepError::wait(step))?;
        Ok(true)
    }
}
