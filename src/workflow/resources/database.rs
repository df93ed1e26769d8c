//! What the RDS instance and the Aurora cluster kinds share: the snapshots a run takes, and
//! the final snapshot CloudFormation takes when it deletes a database of the clone stack.

use crate::contract::Contract;
use crate::model::TAG_RUN;
use crate::ports::{DbKind, PortError, StackInfo};
use crate::retry::{retry, wait_until, Poll};

use super::super::clone::CloneEngine;
use super::super::deletion;
use super::super::recovery::PlanRecord;
use super::super::resource::{Doomed, RefKind, Removal, ResourceRef, RunScope};
use super::super::StepError;

/// A DB snapshot (of an instance).
pub const SNAPSHOT: RefKind = RefKind::new("DB snapshot");
/// A DB cluster snapshot.
pub const CLUSTER_SNAPSHOT: RefKind = RefKind::new("DB cluster snapshot");

pub fn snapshot_kind(kind: DbKind) -> RefKind {
    match kind {
        DbKind::Instance => SNAPSHOT,
        DbKind::Cluster => CLUSTER_SNAPSHOT,
    }
}

/// Deletes a snapshot once it is no longer being taken (one in progress cannot be deleted).
async fn delete_snapshot_when_done(
    engine: &CloneEngine,
    kind: DbKind,
    id: &str,
) -> Result<(), StepError> {
    let snapshots = engine.cloud.databases.snapshots(kind);
    let what = format!("{} {id} to finish before deleting it", kind.snapshot_noun());
    wait_until(&what, engine.settings.snapshot_timeout, || async {
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

/// A kind of database: an RDS DB instance or an Aurora DB cluster (`rds_instance`,
/// `aurora_cluster`), which differ in their RDS calls (`DbKind`) and their types.
pub struct Database {
    pub kind: DbKind,
    pub name: &'static str,
    pub stack_types: &'static [(&'static str, &'static str)],
    pub ref_kinds: &'static [RefKind],
}

#[async_trait::async_trait]
impl super::super::resource::ResourceKind for Database {
    fn name(&self) -> &'static str {
        self.name
    }
    fn stack_types(&self) -> &'static [(&'static str, &'static str)] {
        self.stack_types
    }
    fn ref_kinds(&self) -> &'static [RefKind] {
        self.ref_kinds
    }
    fn finalize_handles(&self) -> bool {
        true
    }
    /// The snapshots a run of `plan` takes of its databases of its kind.
    fn artifacts(&self, plan: &PlanRecord) -> Vec<ResourceRef> {
        plan.databases
            .iter()
            .filter(|d| d.kind == self.kind)
            .map(|d| ResourceRef::new(snapshot_kind(self.kind), d.snapshot_id.clone()))
            .collect()
    }

    /// The snapshots the stack was created from: its snapshot parameters.
    fn artifacts_of_stack(&self, contract: &Contract, stack: &StackInfo) -> Vec<ResourceRef> {
        contract
            .databases
            .iter()
            .filter(|d| d.is_cluster == (self.kind == DbKind::Cluster))
            .filter_map(|d| stack.parameters.get(&d.snapshot_parameter))
            .filter(|id| !id.is_empty())
            .map(|id| ResourceRef::new(snapshot_kind(self.kind), id.clone()))
            .collect()
    }

    /// The snapshots each doomed database has before its stack is deleted.
    async fn before_stack_delete(
        &self,
        engine: &CloneEngine,
        doomed: &[Doomed<'_>],
    ) -> Result<Vec<ResourceRef>, StepError> {
        let snapshots = engine.cloud.databases.snapshots(self.kind);
        let mut before = Vec::new();
        for db in doomed
            .iter()
            .filter_map(|d| d.resource.physical_id.as_deref())
        {
            for snap in retry(|| snapshots.of_source(db))
                .await
                .map_err(StepError::port("abort"))?
            {
                before.push(ResourceRef::new(snapshot_kind(self.kind), snap.id));
            }
        }
        Ok(before)
    }

    /// A database with DeletionPolicy Snapshot (AWS's default) leaves a final snapshot when
    /// its stack is deleted: made because of this DeleteStack, it is removed too. It is told
    /// from a snapshot someone took of the same database by both what CloudFormation does: it
    /// is new since the DeleteStack was issued, and named as CloudFormation names final
    /// snapshots. Anything else of the database — a user's manual snapshot, even one carrying
    /// this run's tag through CopyTagsToSnapshot — is not envclone's to delete.
    async fn after_stack_delete(
        &self,
        engine: &CloneEngine,
        stack: &str,
        doomed: &[Doomed<'_>],
        before: Vec<ResourceRef>,
        artifacts: &[ResourceRef],
        out: &mut Removal,
    ) -> Result<(), StepError> {
        let snapshots = engine.cloud.databases.snapshots(self.kind);
        for d in doomed {
            let Some(db) = d.resource.physical_id.as_deref() else {
                continue;
            };
            let now = retry(|| snapshots.of_source(db))
                .await
                .map_err(StepError::port("abort"))?;
            for snap in now {
                let r = ResourceRef::new(snapshot_kind(self.kind), snap.id.clone());
                if artifacts.iter().any(|a| a.same(&r))
                    || !deletion::is_final_snapshot_name(&snap.id, stack, &d.resource.logical_id)
                {
                    continue;
                }
                if before.iter().any(|b| b.same(&r)) {
                    out.left.push(r.with_note(format!(
                        "named as CloudFormation names the final snapshot of {db}, but it \
                         existed before this DeleteStack of {stack} — an earlier deletion of the \
                         stack?; not deleted: delete it yourself if it is not needed"
                    )));
                    continue;
                }
                delete_snapshot_when_done(engine, self.kind, &snap.id).await?;
                out.removed
                    .push(r.with_note(format!("taken by CloudFormation when it deleted {db}")));
            }
        }
        Ok(())
    }

    /// Removes a snapshot the run took, if it carries the run's tag.
    async fn remove(
        &self,
        engine: &CloneEngine,
        what: &ResourceRef,
        run: RunScope<'_>,
        out: &mut Removal,
    ) -> Result<(), StepError> {
        let snapshots = engine.cloud.databases.snapshots(self.kind);
        let id = what.id.as_str();
        let snapshot = retry(|| snapshots.describe(id))
            .await
            .map_err(StepError::port("abort"))?;
        let r = ResourceRef::new(snapshot_kind(self.kind), id);
        match snapshot {
            None => {}
            Some(s) if s.tags.get(TAG_RUN).map(String::as_str) == Some(run.run_id) => {
                match delete_snapshot_when_done(engine, self.kind, id).await {
                    Ok(()) => out.removed.push(r),
                    Err(e) => out.left.push(r.with_note(e.to_string())),
                }
            }
            Some(_) => out.left.push(r.with_note(format!(
                "not tagged envclone:run={}; not deleted",
                run.run_id
            ))),
        }
        Ok(())
    }
}
