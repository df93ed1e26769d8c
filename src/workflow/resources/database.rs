//! What the RDS instance and the Aurora cluster kinds share: the snapshots a run takes, and
//! the final snapshot CloudFormation takes when it deletes a database of the clone stack.

use crate::contract::{Contract, Template, DB_INSTANCE};
use std::collections::BTreeMap;

use crate::events::Emitter;
use crate::journal::RunStore;
use crate::model::{self, RunId, TAG_RUN};
use crate::model::{TAG_CFN_IDENTIFIER, TAG_MIGRATED_BY, TAG_OPEN_MIGRATION};
use crate::ports::{Databases, DbCluster, DbKind, DbStatus, PortError, StackInfo, StackResource};
use crate::retry::{retry, wait_until, Poll, WaitError};
use crate::s3sync::VerifyReport;

use super::super::deletion;
use super::super::engine::{CheckResult, CloneEngine, Created};
use super::super::plan::{ClonePlan, DatabasePlan};
use super::super::record::{save, DbSwap, MigrationState, PlanRecord, Swaps};
use super::super::resource::{
    BeforeStack, Checked, CopyRun, Doomed, Outcome, PlanStage, RefKind, Removal, Renamed,
    ResourceRef, RunScope,
};
use super::super::swap::{swap_step, Direction, SwapStep};
use super::super::window::{QuietWindow, WholeWindow, WindowItem, WindowNeeds};
use super::super::{PreflightError, StepError};

/// Attributes whose value changes with the database's identifier. CloudFormation resolves
/// them once, at creation ("Fn::GetAtt", AWS::RDS::DBInstance / DBCluster return values): the
/// endpoint host names (`<identifier>.<hash>.<region>.rds.amazonaws.com`, "Renaming a DB
/// instance": the old DNS name is deleted at once) and the ARNs (which end in the identifier).
/// Port, resource ids (`DbiResourceId`, `DBClusterResourceId`) and the hosted zone id stay.
pub const RENAMED_ATTRIBUTES: &[&str] = &[
    "Endpoint.Address",
    "ReadEndpoint.Address",
    "Endpoint",
    "DBInstanceArn",
    "DBClusterArn",
];

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

/// Waits until the point in time of snapshot `id` of `source` is fixed and returns it
/// (T_snapshot, its `SnapshotCreateTime`): from then on writes to the source cannot get into
/// the snapshot, so the source may serve again while the snapshot goes on to `available`
/// (minutes to hours). What this rests on: [`crate::ports::DbSnapshot::point_fixed_at`].
/// A snapshot that fails or is deleted meanwhile fails the wait; one not visible yet (RDS's
/// eventual consistency right after CreateDBSnapshot) is waited for.
pub async fn wait_snapshot_point_fixed(
    dbs: &(dyn Databases + 'static),
    kind: DbKind,
    id: &str,
    source: &str,
    timeout: std::time::Duration,
) -> Result<chrono::DateTime<chrono::Utc>, WaitError> {
    let snapshots = dbs.snapshots(kind);
    let what = format!(
        "{} {id} of {source} to have its point in time fixed (SnapshotCreateTime set)",
        kind.snapshot_noun()
    );
    wait_until(&what, timeout, || async {
        Ok(match snapshots.describe(id).await? {
            Some(s) => match s.point_fixed_at() {
                Some(at) => Poll::Ready(at),
                None if s.status == "creating" => {
                    Poll::Pending("creating, no SnapshotCreateTime yet".into())
                }
                None if s.status == "available" => Poll::Failed(
                    "available but without a SnapshotCreateTime: RDS did not say when it was \
                     taken; use the snapshot only once it is available (the whole copy)"
                        .into(),
                ),
                None => Poll::Failed(format!("snapshot status {}", s.status)),
            },
            None => Poll::Pending("not visible yet".into()),
        })
    })
    .await
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
            Some(s) if s.status.in_progress() => Poll::Pending(s.status.to_string()),
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

impl Database {
    /// The plan's databases of this kind (instances or clusters), in the contract's order.
    fn planned<'a>(&self, plan: &'a ClonePlan) -> impl Iterator<Item = &'a DatabasePlan> {
        let kind = self.kind;
        plan.databases.iter().filter(move |d| d.kind == kind)
    }

    /// The recorded swaps of this kind's databases, in the order they were recorded.
    fn swapped<'a>(&self, swaps: &'a [DbSwap]) -> impl Iterator<Item = &'a DbSwap> {
        let kind = self.kind;
        swaps.iter().filter(move |d| d.kind == kind)
    }
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

    /// The listed databases of this kind; for a cluster, its instances (created with it); for
    /// an instance, its read replicas in the template (created from the clone's restored
    /// instance, which contract validation accepts for that reason).
    fn copied_ids(&self, template: &Template, contract: &Contract) -> Vec<String> {
        let cluster = self.kind == DbKind::Cluster;
        let listed = |id: &str| {
            contract
                .databases
                .iter()
                .any(|d| d.logical_id == id && (!cluster || d.is_cluster))
        };
        let mut out: Vec<String> = contract
            .databases
            .iter()
            .filter(|d| d.is_cluster == cluster)
            .map(|d| d.logical_id.clone())
            .collect();
        for (id, ty) in template.resource_types() {
            let with_listed = if cluster {
                template.cluster_of(&id).is_some_and(listed)
            } else {
                template.replica_source_of(&id).is_some_and(listed)
            };
            if ty == DB_INSTANCE && with_listed {
                out.push(id);
            }
        }
        out
    }

    /// The snapshot parameter of each database, and a cluster's copy-on-write source.
    fn given_parameters(&self, contract: &Contract) -> Vec<String> {
        contract
            .databases
            .iter()
            .filter(|d| d.is_cluster == (self.kind == DbKind::Cluster))
            .flat_map(|d| {
                std::iter::once(d.snapshot_parameter.clone())
                    .chain(
                        d.copy_on_write
                            .as_ref()
                            .map(|c| c.source_cluster_parameter.clone()),
                    )
                    .chain(
                        d.point_in_time
                            .iter()
                            .flat_map(|p| [p.source_parameter.clone(), p.time_parameter.clone()]),
                    )
            })
            .collect()
    }

    /// A database restored to a point in time is given its source only with T.
    fn check_stack_parameters(
        &self,
        plan: &ClonePlan,
        parameters: &BTreeMap<String, String>,
    ) -> Result<(), StepError> {
        for d in self.planned(plan) {
            super::point_in_time::check_parameters(d, parameters)?;
        }
        Ok(())
    }

    /// Each source database of this kind exists and is available; the snapshot the run would
    /// take and the identifiers the clone would use are free. Then a database restored to a
    /// point in time: its template really restores from the two parameters, and its source
    /// keeps automated backups.
    async fn preflight(
        &self,
        engine: &CloneEngine,
        source: &crate::workflow::plan::SourceEnv,
        plan: &mut ClonePlan,
    ) -> Result<(), crate::workflow::PreflightError> {
        let dbs = &engine.cloud.databases;
        for d in self.planned(plan) {
            match retry(|| dbs.status_of(d.kind, &d.source_instance)).await? {
                None => {
                    return Err(PreflightError::SourceMissing {
                        what: format!("database {}", d.source_instance),
                    })
                }
                Some(status) if !status.is_available() => {
                    return Err(PreflightError::DatabaseNotAvailable {
                        id: d.source_instance.clone(),
                        status,
                    })
                }
                Some(_) => {}
            }
            let snapshots = dbs.snapshots(d.kind);
            if retry(|| snapshots.describe(&d.snapshot_id))
                .await?
                .is_some()
            {
                return Err(PreflightError::TargetExists {
                    what: format!("{} {}", d.kind.snapshot_noun(), d.snapshot_id),
                });
            }
            for id in &d.target_members {
                if retry(|| dbs.describe_instance(id)).await?.is_some() {
                    return Err(PreflightError::TargetExists {
                        what: format!("database {id} (an instance of cluster {})", d.logical_id),
                    });
                }
            }
            if let Some(id) = &d.target_instance {
                if retry(|| dbs.status_of(d.kind, id)).await?.is_some() {
                    return Err(PreflightError::TargetExists {
                        what: format!("database {id}"),
                    });
                }
            }
        }
        let plan: &ClonePlan = plan;
        for d in self.planned(plan) {
            super::point_in_time::preflight(engine, source, plan, d).await?;
        }
        Ok(())
    }

    /// A snapshot holds the window until its point in time is fixed (not until it is
    /// available); an Aurora copy-on-write clone point keeps the whole window (the stack
    /// clones at the latest restorable time, later than T).
    fn window_needs(&self, plan: &ClonePlan) -> WindowNeeds {
        let mut out = WindowNeeds::default();
        for d in self.planned(plan) {
            if d.point_in_time.is_some() {
                out.outside
                    .push(crate::workflow::window::point_in_time_item(
                        match d.kind {
                            DbKind::Instance => "database",
                            DbKind::Cluster => "Aurora cluster",
                        },
                        &d.source_instance,
                    ));
            } else if d.copy_on_write.is_some() {
                out.whole.push(WholeWindow::CopyOnWriteClone {
                    cluster: d.source_instance.clone(),
                });
            } else {
                out.inside.push(WindowItem::SnapshotPoint {
                    noun: d.kind.snapshot_noun(),
                    id: d.snapshot_id.clone(),
                });
            }
        }
        out
    }

    /// What the stack restores each database of this kind from (`database_artifact`), made in
    /// parallel, and its parameters.
    async fn before_stack(&self, run: &CopyRun<'_>) -> Result<BeforeStack, StepError> {
        let made = futures::future::try_join_all(
            run.plan
                .databases
                .iter()
                .enumerate()
                .filter(|(_, d)| d.kind == self.kind)
                .map(|(position, d)| async move {
                    if d.point_in_time.is_some() {
                        let made = super::point_in_time::restore_point(
                            run.engine, run.plan, d, run.events, run.window,
                        )
                        .await?;
                        return Ok::<_, StepError>((position, made));
                    }
                    let artifact = run
                        .engine
                        .database_artifact(run.plan, d, run.events, run.created, run.window)
                        .await?;
                    Ok::<_, StepError>((position, (artifact.label, artifact.parameters)))
                }),
        )
        .await?;
        let mut out = BeforeStack::default();
        for (position, (label, parameters)) in made {
            out.parameters.extend(parameters);
            out.outcomes.push(Outcome::Snapshot { position, label });
        }
        Ok(out)
    }

    /// A snapshot of each database (for a cluster the template can clone copy-on-write: the
    /// clone point, with the snapshot as the fallback), among the parallel copies.
    fn plan_steps(&self, plan: &ClonePlan, stage: PlanStage) -> Vec<String> {
        if stage != PlanStage::Copy {
            return Vec::new();
        }
        self.planned(plan)
            .map(|d| match (d.kind, &d.copy_on_write) {
                _ if d.point_in_time.is_some() => format!(
                    "restore {} {} to T from {} (point-in-time restore by the clone stack, no \
                     snapshot): once the source serves again, wait until its latest restorable \
                     time passes T (RDS: typically within 5 minutes)",
                    match d.kind {
                        DbKind::Instance => "database",
                        DbKind::Cluster => "Aurora cluster",
                    },
                    d.logical_id,
                    d.source_instance
                ),
                (DbKind::Instance, _) => format!(
                    "snapshot database {} as {}",
                    d.source_instance, d.snapshot_id
                ),
                (DbKind::Cluster, Some(_)) => format!(
                    "copy-on-write clone point of Aurora cluster {}: wait until its latest \
                     restorable time passes the start of Standby (the stack clones it there); \
                     where the cluster cannot be cloned, snapshot it as {}",
                    d.source_instance, d.snapshot_id
                ),
                (DbKind::Cluster, None) => format!(
                    "snapshot Aurora cluster {} as {} (the template takes no copy-on-write clone)",
                    d.source_instance, d.snapshot_id
                ),
            })
            .collect()
    }
    /// The snapshots a run of `plan` takes of its databases of its kind.
    fn artifacts(&self, plan: &PlanRecord) -> Vec<ResourceRef> {
        plan.databases
            .iter()
            .filter(|d| d.kind == self.kind && d.point_in_time.is_none())
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
            Some(_) => out.left.push(run.not_ours(r)),
        }
        Ok(())
    }

    async fn verify(
        &self,
        engine: &CloneEngine,
        env: &Checked<'_>,
        checks: &mut Vec<CheckResult>,
        _reports: &mut Vec<VerifyReport>,
    ) -> Result<(), StepError> {
        let step = "verify";
        let cloud = &engine.cloud;
        let timeout = engine.settings.verify_timeout;
        let kind = self.kind;
        let resource_type = self.stack_types.first().map_or("", |(t, _)| *t);
        for d in env
            .contract
            .databases
            .iter()
            .filter(|d| d.is_cluster == (kind == DbKind::Cluster))
        {
            let Some(id) = env
                .resources
                .iter()
                .find(|r| r.logical_id == d.logical_id && r.resource_type == resource_type)
                .and_then(|r| r.physical_id.clone())
            else {
                checks.push(CheckResult {
                    check: format!("database {}", d.logical_id),
                    ok: false,
                    detail: "not in the clone stack".into(),
                });
                continue;
            };
            let exists = retry(|| cloud.databases.status_of(kind, &id))
                .await
                .map_err(StepError::port(step))?
                .is_some();
            let id = if exists {
                id
            } else {
                // After `envclone migrate` CloudFormation's record keeps the identifier the stack
                // created; the database itself answers under the environment's original name. Only
                // envclone's own tags on it prove that: anything else is a missing database.
                let check = format!("database {} (CloudFormation's record: {id})", d.logical_id);
                match renamed_by_migrate(engine, kind, &id, env.stack).await? {
                    Ok(live) => {
                        checks.push(CheckResult {
                            check,
                            ok: true,
                            detail: format!(
                                "drift: no database {id} exists; envclone migrate renamed it to {live} \
                                 (tags {TAG_CFN_IDENTIFIER}={id}, {TAG_MIGRATED_BY}={}). A stack \
                                 update that replaces {} would create a new database; drift \
                                 detection reports it as deleted",
                                env.stack.tags.get(TAG_RUN).map_or("", String::as_str),
                                d.logical_id
                            ),
                        });
                        live
                    }
                    Err(why) => {
                        checks.push(CheckResult {
                            check,
                            ok: false,
                            detail: format!(
                                "no database {id} exists, and {why}: it was deleted or renamed \
                                 outside envclone — find it (RDS events) or restore it from a \
                                 snapshot"
                            ),
                        });
                        continue;
                    }
                }
            };
            let what = format!("database {id} to be available");
            let status = wait_until(&what, timeout, || async {
                Ok(match cloud.databases.status_of(kind, &id).await? {
                    Some(status) if status.is_available() => Poll::Ready(status),
                    Some(status) => Poll::Pending(status.to_string()),
                    None => Poll::Pending("not found".into()),
                })
            })
            .await;
            checks.push(CheckResult {
                check: format!("database {id}"),
                ok: status.is_ok(),
                detail: match status {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                },
            });
        }
        Ok(())
    }

    fn swapped(&self) -> bool {
        true
    }

    /// For each swapped database of this kind: a final snapshot of the old one (kept), its
    /// deletion protection lifted (finalizing is the consent), its members then itself deleted
    /// — it lives in the old stack's subnets, so it goes first; then the live one protected,
    /// since the old stack's record names its identifier.
    async fn finalize_old(
        &self,
        engine: &CloneEngine,
        state: &mut MigrationState,
        store: &dyn RunStore,
        events: &Emitter,
    ) -> Result<(), StepError> {
        let step = "finalize";
        let dbs = &engine.cloud.databases;
        let mine: Vec<DbSwap> = self.swapped(&state.databases).cloned().collect();
        for d in &mine {
            let final_snapshot = model::snapshot_id(
                &RunId::from_existing(&state.run_id),
                &format!("final-{}", d.old_id),
            )
            .map_err(|e| StepError::Refused {
                step: step.into(),
                message: e.to_string(),
            })?;
            let old = retry(|| dbs.state_of(d.kind, &d.old_id))
                .await
                .map_err(StepError::port(step))?;
            if let Some(old) = &old {
                let tags = BTreeMap::from([(TAG_RUN.to_string(), state.run_id.clone())]);
                events.start(
                    step,
                    Some(&final_snapshot),
                    format!("final snapshot of {} as {final_snapshot}", d.old_id),
                );
                let snapshots = dbs.snapshots(d.kind);
                match retry(|| snapshots.create(&d.old_id, &final_snapshot, &tags)).await {
                    Ok(()) | Err(PortError::AlreadyExists { .. }) => {}
                    Err(e) => return Err(StepError::port(step)(e)),
                }
                engine
                    .wait_snapshot_available(d.kind, &final_snapshot, &d.old_id, step)
                    .await?;
                state.kept.push(format!(
                    "{} {final_snapshot} (final snapshot of the old database {})",
                    d.kind.snapshot_noun(),
                    d.old_id
                ));
                events.done(step, Some(&final_snapshot), "available (kept)");
                // The old database keeps the source's deletion protection through the rename;
                // finalizing is the consent to delete it (its final snapshot is kept). Checked
                // before anything is deleted, so a cluster is never left without instances.
                if old.deletion_protection {
                    engine
                        .wait_db_available(
                            d.kind,
                            &d.old_id,
                            "(before lifting its deletion protection)",
                        )
                        .await?;
                    retry(|| dbs.protect(d.kind, &d.old_id, false))
                        .await
                        .map_err(StepError::port(step))?;
                    engine
                        .wait_db_available(d.kind, &d.old_id, "(deletion protection lifted)")
                        .await?;
                }
                // An Aurora cluster is deleted once its instances are gone.
                for member in &old.members {
                    engine
                        .delete_db_and_wait(DbKind::Instance, member, step)
                        .await?;
                }
            }
            // The renamed old database lives in the old stack's subnets: it goes first, or
            // the old stack's network could not be deleted. Its final snapshot is kept.
            if engine.delete_db_and_wait(d.kind, &d.old_id, step).await? {
                events.done(
                    step,
                    Some(&d.old_id),
                    "old database deleted (its final snapshot is kept)",
                );
            }
        }
        save(store, state)?;

        for d in &mine {
            engine
                .wait_db_available(
                    d.kind,
                    &d.source_id,
                    "(before enabling deletion protection)",
                )
                .await?;
            let live = retry(|| dbs.state_of(d.kind, &d.source_id))
                .await
                .map_err(StepError::port(step))?
                .ok_or_else(|| StepError::Refused {
                    step: step.into(),
                    message: format!("the live database {} is missing", d.source_id),
                })?;
            if !live.deletion_protection {
                let entry = (d.kind, d.source_id.clone());
                if !state.protection_to_restore.contains(&entry) {
                    state.protection_to_restore.push(entry);
                    save(store, state)?;
                }
                retry(|| dbs.protect(d.kind, &d.source_id, true))
                    .await
                    .map_err(StepError::port(step))?;
                engine
                    .wait_db_available(d.kind, &d.source_id, "(deletion protection on)")
                    .await?;
            }
        }
        Ok(())
    }

    /// The deletion protection `finalize_old` turned on goes back off. The instance may be
    /// busy for a while (a backup that the stack deletion started), so this waits.
    async fn finalize_restore(
        &self,
        engine: &CloneEngine,
        state: &MigrationState,
    ) -> Result<(), StepError> {
        let step = "finalize";
        let dbs = &engine.cloud.databases;
        for (kind, id) in state
            .protection_to_restore
            .iter()
            .filter(|(k, _)| *k == self.kind)
        {
            let what = format!("database {id} to accept its deletion protection back off");
            wait_until(&what, engine.settings.verify_timeout, || async {
                match dbs.status_of(*kind, id).await? {
                    Some(status) if status.is_available() => {}
                    Some(status) => return Ok(Poll::Pending(status.to_string())),
                    None => return Ok(Poll::Failed(format!("database {id} is gone"))),
                }
                Ok(match dbs.protect(*kind, id, false).await {
                    Ok(()) => Poll::Ready(()),
                    Err(e) if e.is_retryable() => Poll::Pending(e.to_string()),
                    Err(e) => Poll::Failed(e.to_string()),
                })
            })
            .await
            .map_err(StepError::wait(step))?;
            engine
                .wait_db_available(*kind, id, "(deletion protection restored)")
                .await?;
        }
        Ok(())
    }

    /// The old stack's record names the live database, protected: its deletion fails, and is
    /// retained.
    fn finalize_delete_failed(&self, _r: &StackResource) -> Option<Option<String>> {
        Some(None)
    }

    /// Each database of this kind moves away to `<id>-old-<stamp>` (a valid identifier, no
    /// database of that name yet) and the clone's takes its identifier, which the template must
    /// set (one chosen by CloudFormation is not known before the stack exists). Kept in the
    /// contract's order among the other database kind's.
    async fn plan_swap(
        &self,
        engine: &CloneEngine,
        plan: &ClonePlan,
        run_id: &RunId,
        origin: &str,
        swaps: &mut Swaps,
    ) -> Result<(), PreflightError> {
        let stamp: String = run_id.as_str().chars().take(12).collect();
        for d in self.planned(plan) {
            let (what, property) = match d.kind {
                DbKind::Instance => ("DB instance identifier", "DBInstanceIdentifier"),
                DbKind::Cluster => ("DB cluster identifier", "DBClusterIdentifier"),
            };
            let old_id = format!("{}-old-{stamp}", d.source_instance);
            model::check_rds_identifier(what, &old_id, 63)?;
            let clone_id =
                d.target_instance
                    .clone()
                    .ok_or_else(|| PreflightError::Unsupported {
                        what: format!(
                    "database {} of {origin} gets an identifier chosen by CloudFormation; migrate \
                     renames databases, so the template must set {property} (e.g. !Sub \
                     \"${{EnvironmentName}}-db\")",
                    d.logical_id
                ),
                    })?;
            if retry(|| engine.cloud.databases.status_of(d.kind, &old_id))
                .await?
                .is_some()
            {
                return Err(PreflightError::TargetExists {
                    what: format!("database {old_id}"),
                });
            }
            let source =
                retry(|| engine.cloud.databases.state_of(d.kind, &d.source_instance)).await?;
            if let Some(source) = source.filter(|s| !s.pending_changes.is_empty()) {
                return Err(PreflightError::PendingChanges {
                    id: d.source_instance.clone(),
                    changes: source.pending_changes,
                });
            }
            swaps.databases.push(DbSwap {
                logical_id: d.logical_id.clone(),
                source_id: d.source_instance.clone(),
                old_id,
                clone_id,
                kind: d.kind,
            });
        }
        let position = |s: &DbSwap| {
            plan.databases
                .iter()
                .position(|d| d.logical_id == s.logical_id)
        };
        swaps.databases.sort_by_key(position);
        Ok(())
    }

    /// Two renames per database of this kind, each "effective in about 10 minutes" on AWS
    /// (USER_RenameInstance): 20 minutes each.
    fn swap_time(&self, swaps: &Swaps) -> std::time::Duration {
        let moved = self.swapped(&swaps.databases).count();
        std::time::Duration::from_secs(20 * 60 * moved as u64)
    }

    /// Checked at the guardrails: each database available under both identifiers.
    fn guardrail_words(&self, plan: &ClonePlan) -> Vec<String> {
        if plan.databases.iter().any(|d| d.kind == self.kind) {
            vec!["databases available".into()]
        } else {
            Vec::new()
        }
    }

    /// Two renames per database of this kind.
    fn swap_steps(&self, swaps: &Swaps) -> Vec<String> {
        self.swapped(&swaps.databases)
            .map(|d| {
                format!(
                    "rename database {} to {}, then {} to {}",
                    d.source_id, d.old_id, d.clone_id, d.source_id
                )
            })
            .collect()
    }

    /// Each database of this kind: its identifier, where the old one went, the new one's.
    fn swap_status(&self, swaps: &Swaps) -> Vec<String> {
        self.swapped(&swaps.databases)
            .map(|d| {
                format!(
                    "database:  {} (old database renamed {}, new created as {})",
                    d.source_id, d.old_id, d.clone_id
                )
            })
            .collect()
    }

    /// The databases of this kind: each is renamed, and its endpoint and ARN with it
    /// ([`RENAMED_ATTRIBUTES`]); the template's databases name each other (a cluster's member
    /// instances their cluster) by links RDS keeps through a rename.
    fn swap_renames(&self, plan: &ClonePlan) -> Vec<Renamed> {
        self.planned(plan)
            .map(|d| Renamed {
                logical_id: d.logical_id.clone(),
                attributes: RENAMED_ATTRIBUTES,
                linked_types: &[DB_INSTANCE, crate::contract::DB_CLUSTER],
            })
            .collect()
    }

    /// Both identifiers of each database of this kind (the one clients use, the clone's)
    /// name an available database, and the source has no change waiting that the rename
    /// would apply (queued since preflight).
    async fn check_before_swap(
        &self,
        engine: &CloneEngine,
        state: &MigrationState,
    ) -> Result<(), StepError> {
        let step = "guardrails";
        let refuse = |message: String| StepError::Refused {
            step: step.into(),
            message,
        };
        for d in self.swapped(&state.databases) {
            for id in [&d.source_id, &d.clone_id] {
                let state = retry(|| engine.cloud.databases.state_of(d.kind, id))
                    .await
                    .map_err(StepError::port(step))?;
                match state {
                    Some(s) if !s.status.is_available() => {
                        return Err(refuse(format!(
                            "database {id} is {}, not available",
                            s.status
                        )))
                    }
                    Some(s) if *id == d.source_id && !s.pending_changes.is_empty() => {
                        return Err(refuse(crate::workflow::pending_changes_refusal(
                            id,
                            &s.pending_changes,
                        )))
                    }
                    Some(_) => {}
                    None => return Err(refuse(format!("database {id} does not exist"))),
                }
            }
        }
        Ok(())
    }

    /// The source's database serves again under its identifier; the new one keeps the writes
    /// made to it since the swap.
    fn after_swap_back(&self, state: &MigrationState, events: &Emitter) {
        for d in self.swapped(&state.databases) {
            events.warn(
                "abort",
                Some(&d.clone_id),
                format!(
                    "{} is the original database again; writes made to the new database since \
                     the swap stay in it, under its identifier {}",
                    d.source_id, d.clone_id
                ),
            );
        }
    }

    /// Renames each database of this kind, one move at a time (`swap_step`), each chosen only
    /// once its identifiers are settled; forward, tags the live one with CloudFormation's
    /// identifier and the run.
    async fn swap(
        &self,
        engine: &CloneEngine,
        state: &MigrationState,
        direction: Direction,
        events: &Emitter,
    ) -> Result<(), StepError> {
        let step = "swap";
        let dbs = &engine.cloud.databases;
        for d in self.swapped(&state.databases) {
            loop {
                let exists = settled_identifiers(engine, d).await?;
                match swap_step(d, exists, direction) {
                    SwapStep::Done => break,
                    SwapStep::Inconsistent(seen) => {
                        return Err(StepError::Refused {
                            step: step.into(),
                            message: format!(
                                "database {}: unexpected identifiers ({seen}); fix by hand",
                                d.logical_id
                            ),
                        })
                    }
                    SwapStep::Rename { from, to } => {
                        events.start(
                            step,
                            Some(&from),
                            format!("renaming database {from} to {to}"),
                        );
                        if let Err(e) = retry(|| dbs.rename(d.kind, &from, &to)).await {
                            // A lost response (or a retry of a call that reached AWS) leaves
                            // the rename under way: RDS then refuses the repeat because the
                            // database is `renaming`. Only a rename that did not start fails.
                            if !rename_under_way(engine, d.kind, &from, &to).await? {
                                return Err(StepError::port(step)(e));
                            }
                        }
                        engine
                            .wait_db_available(d.kind, &to, &format!("(renamed from {from})"))
                            .await?;
                        events.done(step, Some(&to), "renamed");
                    }
                }
            }
            if direction == Direction::Forward {
                // Where CloudFormation's record and the live name part ways, say so on the
                // instance itself (status and verify report it as drift).
                let tags = BTreeMap::from([
                    (TAG_CFN_IDENTIFIER.to_string(), d.clone_id.clone()),
                    (TAG_MIGRATED_BY.to_string(), state.run_id.clone()),
                ]);
                retry(|| dbs.tag(d.kind, &d.source_id, &tags))
                    .await
                    .map_err(StepError::port(step))?;
            }
        }
        Ok(())
    }

    /// The database is missing under the identifier CloudFormation's record names (the swap
    /// renamed it into the environment's), or carries `envclone:migrated-by` (the swap puts
    /// it there, and it stays through a swap back).
    async fn served_as(
        &self,
        engine: &CloneEngine,
        r: &StackResource,
        env: &str,
    ) -> Result<Option<String>, PortError> {
        let Some(id) = r.physical_id.as_deref() else {
            return Ok(None);
        };
        let dbs = &engine.cloud.databases;
        let tags = match self.kind {
            DbKind::Instance => retry(|| dbs.describe_instance(id)).await?.map(|d| d.tags),
            DbKind::Cluster => retry(|| dbs.describe_cluster(id)).await?.map(|c| c.tags),
        };
        Ok(match tags {
            None => Some(format!(
                "no database {id} exists, which CloudFormation's record of its {} names: the \
                 swap renamed it into {env}'s identifier",
                r.logical_id
            )),
            Some(tags) => tags.get(TAG_MIGRATED_BY).map(|run| {
                format!(
                    "its database {id} carries {TAG_MIGRATED_BY}={run}: it served as {env} after \
                     the swap and may hold writes made since"
                )
            }),
        })
    }

    /// The identifier clients use answers, available (a rename leaves it `renaming` for
    /// minutes on AWS: "Renaming a DB instance").
    async fn check_after_swap(
        &self,
        engine: &CloneEngine,
        state: &MigrationState,
        _resources: &[StackResource],
        timeout: std::time::Duration,
        _events: &Emitter,
        failures: &mut Vec<String>,
    ) -> Result<(), StepError> {
        let dbs = &engine.cloud.databases;
        for d in self.swapped(&state.databases) {
            let what = format!("database {} to be available after the swap", d.source_id);
            let result = wait_until(&what, timeout, || async {
                Ok(match dbs.status_of(d.kind, &d.source_id).await? {
                    Some(status) if status.is_available() => Poll::Ready(()),
                    Some(status) => Poll::Pending(status.to_string()),
                    None => Poll::Pending("not found".into()),
                })
            })
            .await;
            if let Err(e) = result {
                failures.push(e.to_string());
            }
        }
        Ok(())
    }

    /// `ENVCLONE_DATABASE_<logical id>` (the identifier clients use) and `…_ENDPOINT` (its
    /// host name) of each database of this kind, as they are now.
    async fn post_swap_environment(
        &self,
        engine: &CloneEngine,
        state: &MigrationState,
        env: &mut BTreeMap<String, String>,
    ) -> Result<(), StepError> {
        for d in self.swapped(&state.databases) {
            let live = retry(|| engine.cloud.databases.state_of(d.kind, &d.source_id))
                .await
                .map_err(StepError::port("hook.post_swap"))?;
            env.insert(
                format!("ENVCLONE_DATABASE_{}", d.logical_id),
                d.source_id.clone(),
            );
            if let Some(endpoint) = live.and_then(|l| l.endpoint) {
                env.insert(
                    format!("ENVCLONE_DATABASE_{}_ENDPOINT", d.logical_id),
                    endpoint,
                );
            }
        }
        Ok(())
    }

    /// Both databases of each swap are tagged `envclone:open-migration=<run>` (after their
    /// identifiers settle), or untagged: whichever identifier they are under while the swap is
    /// open, clone, migrate and destroy of the environment see it (from any machine) and
    /// refuse.
    async fn mark_open_migration(
        &self,
        engine: &CloneEngine,
        state: &MigrationState,
        open: bool,
        step: &str,
    ) -> Result<(), StepError> {
        let dbs = &engine.cloud.databases;
        let tags = BTreeMap::from([(TAG_OPEN_MIGRATION.to_string(), state.run_id.clone())]);
        let keys = [TAG_OPEN_MIGRATION.to_string()];
        for d in self.swapped(&state.databases) {
            if open {
                settled_identifiers(engine, d).await?;
            }
            for id in [&d.source_id, &d.old_id, &d.clone_id] {
                let marked = if open {
                    retry(|| dbs.tag(d.kind, id, &tags)).await
                } else {
                    retry(|| dbs.untag(d.kind, id, &keys)).await
                };
                match marked {
                    Ok(()) | Err(PortError::NotFound { .. }) => {}
                    Err(e) => return Err(StepError::port(step)(e)),
                }
            }
        }
        Ok(())
    }
}

/// After a rename call failed: whether the rename is under way anyway (the call reached AWS
/// and only its answer was lost, or a retry repeated a call that had worked).
async fn rename_under_way(
    engine: &CloneEngine,
    kind: DbKind,
    from: &str,
    to: &str,
) -> Result<bool, StepError> {
    let dbs = &engine.cloud.databases;
    let from_status = retry(|| dbs.status_of(kind, from))
        .await
        .map_err(StepError::port("swap"))?;
    let to_status = retry(|| dbs.status_of(kind, to))
        .await
        .map_err(StepError::port("swap"))?;
    Ok(from_status == Some(DbStatus::Renaming) || (from_status.is_none() && to_status.is_some()))
}

/// The database that envclone migrate renamed away from `recorded` (the identifier
/// CloudFormation's record of `stack` names): the one that carries both envclone's tags
/// `envclone:cfn-identifier=<recorded>` and `envclone:migrated-by=<the run that made the
/// stack>`, which the swap puts on it. Err says why there is no such proof.
async fn renamed_by_migrate(
    engine: &CloneEngine,
    kind: DbKind,
    recorded: &str,
    stack: &StackInfo,
) -> Result<Result<String, String>, StepError> {
    let dbs = &engine.cloud.databases;
    let Some(run) = stack.tags.get(TAG_RUN) else {
        return Ok(Err(format!(
            "stack {} was not made by envclone (no {TAG_RUN} tag), so no rename by envclone \
             migrate can explain it",
            stack.name
        )));
    };
    let recorded_here = retry(|| dbs.tagged(kind, TAG_CFN_IDENTIFIER, recorded))
        .await
        .map_err(StepError::port("verify"))?;
    let migrated_by_run = retry(|| dbs.tagged(kind, TAG_MIGRATED_BY, run))
        .await
        .map_err(StepError::port("verify"))?;
    let proven: Vec<&String> = recorded_here
        .iter()
        .filter(|id| migrated_by_run.contains(id))
        .collect();
    Ok(match proven.as_slice() {
        [live] => Ok(live.to_string()),
        [] => Err(format!(
            "no database carries envclone's tags {TAG_CFN_IDENTIFIER}={recorded} and \
             {TAG_MIGRATED_BY}={run}, which envclone migrate puts on the database it renames"
        )),
        many => Err(format!(
            "databases {many:?} all carry {TAG_CFN_IDENTIFIER}={recorded} and \
             {TAG_MIGRATED_BY}={run}; envclone renames one"
        )),
    })
}

/// Which of (source_id, old_id, clone_id) name a database, read only once none of them is
/// mid-change.
///
/// RDS renames take minutes, and meanwhile the database answers to its OLD identifier with
/// status `renaming` ("Renaming a DB instance", USER_RenameInstance; ModifyDBCluster
/// `NewDBClusterIdentifier` likewise). A swap resumed, aborted or retried while a rename is
/// in flight would otherwise see the old name "exist", rename it again or call the swap
/// done while the database is still moving. So the next step is chosen only on settled
/// state: every identifier absent or `available`.
async fn settled_identifiers(
    engine: &CloneEngine,
    d: &DbSwap,
) -> Result<(bool, bool, bool), StepError> {
    let dbs = &engine.cloud.databases;
    let ids = [&d.source_id, &d.old_id, &d.clone_id];
    let what = format!(
        "databases {}, {} and {} to settle (no rename or modification in flight)",
        d.source_id, d.old_id, d.clone_id
    );
    wait_until(&what, engine.settings.verify_timeout, || async {
        let mut exists = [false; 3];
        let mut moving = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            match dbs.status_of(d.kind, id).await? {
                None => {}
                Some(status) if status.is_available() => exists[i] = true,
                Some(status) if status.settles_by_itself() => {
                    exists[i] = true;
                    moving.push(format!("{id} is {status}"));
                }
                Some(status) => {
                    return Ok(Poll::Failed(format!(
                        "database {id} is {status}, a state it does not leave by itself; \
                         bring it back to available, then run the command again"
                    )))
                }
            }
        }
        Ok(if moving.is_empty() {
            Poll::Ready((exists[0], exists[1], exists[2]))
        } else {
            Poll::Pending(moving.join(", "))
        })
    })
    .await
    .map_err(StepError::wait("swap"))
}

/// AWS allows 15 copy-on-write clones of one Aurora cluster.
const MAX_COPY_ON_WRITE_CLONES: usize = 15;

/// What the clone stack restores one database from.
pub(crate) struct DatabaseArtifact {
    /// For the report: `DB snapshot <id>`, `DB cluster snapshot <id>` or the clone point.
    pub label: String,
    /// The database's parameters of the clone stack.
    pub parameters: BTreeMap<String, String>,
}

/// The engine's work for the databases: what the clone stack restores each from.
impl CloneEngine {
    /// Waits, at most `settings.verify_timeout`, until database `id` is available (`why`: what
    /// was just done to it, for the message).
    async fn wait_db_available(&self, kind: DbKind, id: &str, why: &str) -> Result<(), StepError> {
        let dbs = &self.cloud.databases;
        let what = format!("database {id} {why} to be available");
        wait_until(&what, self.settings.verify_timeout, || async {
            Ok(match dbs.status_of(kind, id).await? {
                Some(status) if status.is_available() => Poll::Ready(()),
                Some(status) => Poll::Pending(status.to_string()),
                None => Poll::Pending("not visible yet".into()),
            })
        })
        .await
        .map_err(StepError::wait("swap"))
    }

    /// What the clone stack restores database `d` from, made while the source is quiet: a
    /// snapshot, or for an Aurora cluster whose template can take one, a copy-on-write clone
    /// point (falling back to a cluster snapshot where the cluster cannot be cloned).
    pub(crate) async fn database_artifact(
        &self,
        plan: &ClonePlan,
        d: &DatabasePlan,
        events: &Emitter,
        created: &Created,
        window: &QuietWindow,
    ) -> Result<DatabaseArtifact, StepError> {
        if let (DbKind::Cluster, Some(cow)) = (d.kind, &d.copy_on_write) {
            // One description serves both the check and the clone point's AWS time.
            let dbs = &self.cloud.databases;
            let cluster = retry(|| dbs.describe_cluster(&d.source_instance))
                .await
                .map_err(StepError::port("snapshot"))?
                .ok_or_else(|| StepError::Refused {
                    step: "snapshot".into(),
                    message: format!("Aurora cluster {} no longer exists", d.source_instance),
                })?;
            match self.copy_on_write_refusal(&cluster).await? {
                None => {
                    // Without Standby the source keeps writing: no point is "after the
                    // writes", so the clone is taken at whatever is restorable then.
                    let label = if plan.standby {
                        let at = self.copy_on_write_point(&cluster, events).await?;
                        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                        format!(
                            "copy-on-write clone of {} (restorable past {at})",
                            d.source_instance
                        )
                    } else {
                        format!(
                            "copy-on-write clone of {} (latest restorable time; crash-consistent)",
                            d.source_instance
                        )
                    };
                    return Ok(DatabaseArtifact {
                        label,
                        parameters: BTreeMap::from([
                            (
                                cow.source_cluster_parameter.clone(),
                                d.source_instance.clone(),
                            ),
                            (d.snapshot_parameter.clone(), String::new()),
                        ]),
                    });
                }
                Some(reason) => events.warn(
                    "snapshot",
                    Some(&d.source_instance),
                    format!(
                        "Aurora cluster {} cannot be cloned copy-on-write ({reason}); taking \
                         cluster snapshot {} instead (slower to take and to restore)",
                        d.source_instance, d.snapshot_id
                    ),
                ),
            }
        }
        let id = self.snapshot(plan, d, events, created, window).await?;
        let label = format!("{} {id}", d.kind.snapshot_noun());
        let mut parameters = BTreeMap::from([(d.snapshot_parameter.clone(), id)]);
        if let Some(cow) = &d.copy_on_write {
            parameters.insert(cow.source_cluster_parameter.clone(), String::new());
        }
        Ok(DatabaseArtifact { label, parameters })
    }

    /// Why `cluster` cannot be cloned copy-on-write, if it cannot.
    async fn copy_on_write_refusal(
        &self,
        cluster: &DbCluster,
    ) -> Result<Option<String>, StepError> {
        let step = "snapshot";
        let dbs = &self.cloud.databases;
        if cluster.engine_mode == "serverless" {
            return Ok(Some(
                "Aurora Serverless v1 clusters cannot be cloned copy-on-write".into(),
            ));
        }
        if let Some(group) = &cluster.clone_group_id {
            let members = retry(|| dbs.clusters_in_clone_group(group))
                .await
                .map_err(StepError::port(step))?;
            // The group holds the source and its clones; AWS allows 15 clones.
            if members > MAX_COPY_ON_WRITE_CLONES {
                return Ok(Some(format!(
                    "its clone group {group} already holds {} clones, AWS's limit is \
                     {MAX_COPY_ON_WRITE_CLONES}",
                    members - 1
                )));
            }
        }
        Ok(None)
    }

    /// Waits until cluster `id` can be restored to now (the source is in Standby and quiesced,
    /// so nothing is written after now). A copy-on-write clone is always made at the latest
    /// restorable time (AWS takes no RestoreToTime with copy-on-write), which trails the present
    /// by up to minutes: once it has passed now, the clone the stack makes — while the source
    /// is still in Standby — holds every write made before Standby.
    /// `cluster` was described after writes stopped.
    async fn copy_on_write_point(
        &self,
        cluster: &DbCluster,
        events: &Emitter,
    ) -> Result<chrono::DateTime<chrono::Utc>, StepError> {
        let step = "snapshot";
        let dbs = &self.cloud.databases;
        let id = cluster.id.as_str();
        let local = self.cloud.clock.now();
        // AWS's clock may run ahead of this machine's: the point must not fall before the
        // moment writes stopped on AWS's clock either. Its answer came after that moment.
        let reference = cluster.server_time.map_or(local, |aws| aws.max(local));
        // Whole seconds (the Date header's precision): round up, one second more.
        let at =
            chrono::DateTime::from_timestamp(reference.timestamp() + 2, 0).unwrap_or(reference);
        let stamp = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        events.start(
            step,
            Some(id),
            format!("copy-on-write clone point of Aurora cluster {id}: {stamp}"),
        );
        let what = format!("Aurora cluster {id} to be restorable to {stamp}");
        wait_until(&what, self.settings.snapshot_timeout, || async {
            Ok(match dbs.describe_cluster(id).await? {
                None => Poll::Failed(format!("cluster {id} no longer exists")),
                Some(c) => match c.latest_restorable_time {
                    Some(latest) if latest >= at => Poll::Ready(()),
                    Some(latest) => Poll::Pending(format!(
                        "latest restorable time {}",
                        latest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )),
                    None => Poll::Pending(c.status.to_string()),
                },
            })
        })
        .await
        .map_err(StepError::wait(step))?;
        events.done(step, Some(id), format!("restorable to {stamp}"));
        Ok(at)
    }

    async fn snapshot(
        &self,
        plan: &ClonePlan,
        d: &DatabasePlan,
        events: &Emitter,
        created: &Created,
        window: &QuietWindow,
    ) -> Result<String, StepError> {
        let step = "snapshot";
        let (instance, snapshot_id) = (d.source_instance.as_str(), d.snapshot_id.as_str());
        let snapshots = self.cloud.databases.snapshots(d.kind);
        events.start(
            step,
            Some(snapshot_id),
            format!("snapshotting {instance} as {snapshot_id}"),
        );
        match retry(|| snapshots.create(instance, snapshot_id, &plan.tags)).await {
            Ok(()) => {}
            Err(crate::ports::PortError::AlreadyExists { .. }) => {
                let existing = retry(|| snapshots.describe(snapshot_id))
                    .await
                    .map_err(StepError::port(step))?;
                let ours = existing
                    .as_ref()
                    .is_some_and(|s| s.tags.get(TAG_RUN) == Some(&plan.run_id.to_string()));
                if !ours {
                    return Err(StepError::Refused {
                        step: step.into(),
                        message: format!(
                            "snapshot {snapshot_id} exists and was not made by run {}",
                            plan.run_id
                        ),
                    });
                }
            }
            Err(e) => return Err(StepError::port(step)(e)),
        }
        created.add(ResourceRef::new(snapshot_kind(d.kind), snapshot_id));
        if window.closes_early() {
            // The window waits for the snapshot's point in time, not for the whole copy
            // (`resources::wait_snapshot_point_fixed` says what this rests on).
            let at = wait_snapshot_point_fixed(
                self.cloud.databases.as_ref(),
                d.kind,
                snapshot_id,
                instance,
                self.settings.snapshot_timeout,
            )
            .await
            .map_err(StepError::wait(step))?;
            events.done(
                step,
                Some(snapshot_id),
                format!(
                    "point in time fixed at {} (SnapshotCreateTime); the source may serve again \
                     while the snapshot becomes available",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            );
            window.done(&WindowItem::SnapshotPoint {
                noun: d.kind.snapshot_noun(),
                id: snapshot_id.to_string(),
            });
        }
        self.wait_snapshot_available(d.kind, snapshot_id, instance, step)
            .await?;
        events.done(step, Some(snapshot_id), "available");
        Ok(snapshot_id.to_string())
    }
}
