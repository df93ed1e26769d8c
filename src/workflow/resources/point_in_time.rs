//! A database the clone stack restores to the run's moment T from the source itself
//! (point-in-time restore, issue 13) instead of from a snapshot: it takes no snapshot, so it
//! holds none of the source's time out of service.
//!
//! What this rests on (AWS documentation):
//! - RestoreDBInstanceToPointInTime / RestoreDBClusterToPointInTime (RDS API Reference): "You
//!   can restore to any point in time before the time identified by the LatestRestorableTime
//!   property. You can restore to a point up to the number of days specified by the
//!   BackupRetentionPeriod property" — so the source needs automated backups
//!   (BackupRetentionPeriod > 0), and T must not be after its `LatestRestorableTime`.
//! - "Restoring a DB instance to a specified time" (RDS User Guide, USER_PIT): the latest
//!   restorable time "is typically within the last 5 minutes"; RDS uploads the transaction
//!   logs to S3 every five minutes ("Introduction to backups"). So after the window, envclone
//!   waits (minutes, not the hours a snapshot takes) until `LatestRestorableTime` ≥ T, then
//!   gives the stack the source and T.
//! - AWS::RDS::DBInstance `SourceDBInstanceIdentifier` + `RestoreTime` ("The date and time to
//!   restore from ... Must be in Universal Coordinated Time (UTC) format", e.g.
//!   2009-09-07T23:45:00Z); AWS::RDS::DBCluster `SourceDBClusterIdentifier` + `RestoreToTime`
//!   with `RestoreType` full-copy (AWS takes no RestoreToTime with copy-on-write).
//!
//! T is a whole second inside the source's quiet period on any clock within
//! `CLOCK_UNCERTAINTY` of this machine's (`s3sync::as_of_point`): the same holds for RDS's
//! clock, so the restore holds every write made before the quiet and none made after it.
//! The restore itself takes as long as a snapshot restore plus the replay of the logs since
//! the last automated backup.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::events::Emitter;
use crate::ports::DbKind;
use crate::retry::{retry, wait_until, Poll, WaitError};
use crate::template_eval::Evaluator;

use super::super::clone::CloneEngine;
use super::super::plan::{ClonePlan, DatabasePlan, SourceEnv};
use super::super::window::QuietWindow;
use super::super::{PreflightError, StepError};

/// How long a run waits for the source's latest restorable time to pass T: RDS keeps it
/// typically within 5 minutes of now; six times that means backups are not progressing.
pub const RESTORABLE_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// The properties through which a kind's template restores to a point in time: (source,
/// time, snapshot).
fn properties(kind: DbKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        DbKind::Instance => (
            "SourceDBInstanceIdentifier",
            "RestoreTime",
            "DBSnapshotIdentifier",
        ),
        DbKind::Cluster => (
            "SourceDBClusterIdentifier",
            "RestoreToTime",
            "SnapshotIdentifier",
        ),
    }
}

/// T as the stack receives it: ISO 8601 UTC in whole seconds (`2026-12-02T04:05:06Z`).
pub fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The clone stack's parameters for `d`, the last thing before CreateStack: a source given
/// without a restore time would not restore anything. CloudFormation's RDS resource handler
/// restores a DB instance to a point in time when `RestoreTime` (or `UseLatestRestorableTime`)
/// is set, and otherwise, when `SourceDBInstanceIdentifier` is set, creates it as a **read
/// replica** of the source (aws-cloudformation-resource-providers-rds, dbinstance
/// `ResourceModelHelper.isRestoreToPointInTime`, tested before `isReadReplica`): a replica
/// attached to production, streaming its writes (and for a cluster, `SourceDBClusterIdentifier`
/// without `RestoreToTime` is no restore to T either). So the stack is never created so.
pub fn check_parameters(
    d: &DatabasePlan,
    parameters: &BTreeMap<String, String>,
) -> Result<(), StepError> {
    let Some(p) = &d.point_in_time else {
        return Ok(());
    };
    let given = |name: &str| parameters.get(name).is_some_and(|v| !v.is_empty());
    if given(&p.source_parameter) && !given(&p.time_parameter) {
        return Err(StepError::Refused {
            step: "stack.create".into(),
            message: format!(
                "database {}: the clone stack was about to be created with {} = {:?} (the \
                 source) but no {} (T): CloudFormation would make it a read replica of \
                 production instead of restoring it to T. The stack was not created; run \
                 `envclone abort` for this run and report this as a bug",
                d.logical_id,
                p.source_parameter,
                parameters
                    .get(&p.source_parameter)
                    .cloned()
                    .unwrap_or_default(),
                p.time_parameter
            ),
        });
    }
    Ok(())
}

/// Before any change: the template's database really restores from the two parameters (its
/// source and time properties evaluate to them when they are given, no snapshot then, and an
/// Aurora cluster not copy-on-write), and the source keeps automated backups.
pub async fn preflight(
    engine: &CloneEngine,
    source: &SourceEnv,
    plan: &ClonePlan,
    d: &DatabasePlan,
) -> Result<(), PreflightError> {
    let Some(p) = &d.point_in_time else {
        return Ok(());
    };
    let (source_property, time_property, snapshot_property) = properties(d.kind);
    let probe_source = "envclone-probe-source";
    let probe_time = "2001-02-03T04:05:06Z";
    let mut given = plan.parameters.clone();
    given.insert(d.snapshot_parameter.clone(), String::new());
    given.insert(p.source_parameter.clone(), probe_source.into());
    given.insert(p.time_parameter.clone(), probe_time.into());
    let parameters = Evaluator::effective_parameters(&plan.template, &given);
    let (account, region) = source.account_and_region();
    let ev = Evaluator {
        template: &plan.template,
        parameters: &parameters,
        stack_name: &plan.target_stack,
        account_id: &account,
        region: &region,
        resource_refs: BTreeMap::new(),
    };
    let id = &d.logical_id;
    let refuse = |found: String, fix: String| PreflightError::Unsupported {
        what: format!(
            "template {}: database {id} is restored to a point in time by the contract \
             (restore_source_parameter {}, restore_time_parameter {}), but {found}; nothing was \
             changed. Fix: {fix}",
            plan.template.origin, p.source_parameter, p.time_parameter
        ),
    };
    for (property, parameter, expected) in [
        (source_property, &p.source_parameter, probe_source),
        (time_property, &p.time_parameter, probe_time),
    ] {
        let found = ev.property(id, property);
        if found.as_deref() != Some(expected) {
            return Err(refuse(
                format!(
                    "with {parameter} given, its {property} is {}, not {parameter}'s value",
                    found.map_or_else(|| "not set".to_string(), |f| format!("{f:?}"))
                ),
                format!(
                    "set `{property}: !If [<{parameter} is not empty>, !Ref {parameter}, !Ref \
                     \"AWS::NoValue\"]` on {id}"
                ),
            ));
        }
    }
    if let Some(snapshot) = ev.property(id, snapshot_property) {
        return Err(refuse(
            format!(
                "its {snapshot_property} is {snapshot:?} when it is restored to a point in time"
            ),
            format!(
                "leave {snapshot_property} out (AWS::NoValue) when {} is given",
                p.source_parameter
            ),
        ));
    }
    if d.kind == DbKind::Cluster {
        let restore_type = ev.property(id, "RestoreType");
        let latest = ev.property(id, "UseLatestRestorableTime");
        if restore_type.as_deref() == Some("copy-on-write") || latest.as_deref() == Some("true") {
            return Err(refuse(
                format!(
                    "its RestoreType is {restore_type:?} and UseLatestRestorableTime {latest:?}: \
                     AWS takes no RestoreToTime with copy-on-write or the latest restorable time"
                ),
                "set `RestoreType: full-copy` and leave UseLatestRestorableTime out when the \
                 cluster is restored to a time"
                    .into(),
            ));
        }
    }

    let dbs = &engine.cloud.databases;
    let source_id = &d.source_instance;
    let retention = match d.kind {
        DbKind::Instance => retry(|| dbs.describe_instance(source_id))
            .await?
            .map(|i| i.backup_retention_period),
        DbKind::Cluster => retry(|| dbs.describe_cluster(source_id))
            .await?
            .map(|c| c.backup_retention_period),
    };
    match retention {
        None => Err(PreflightError::SourceMissing {
            what: format!("database {source_id}"),
        }),
        Some(days) if days <= 0 => {
            let (command, flag) = match d.kind {
                DbKind::Instance => ("modify-db-instance", "--db-instance-identifier"),
                DbKind::Cluster => ("modify-db-cluster", "--db-cluster-identifier"),
            };
            Err(PreflightError::Unsupported {
                what: format!(
                    "database {id} ({source_id}) keeps no automated backups \
                     (BackupRetentionPeriod {days}), so it cannot be restored to a point in time \
                     (RDS: \"You can restore to a point up to the number of days specified by the \
                     BackupRetentionPeriod property\"); nothing was changed. Turn them on (`aws \
                     rds {command} {flag} {source_id} --backup-retention-period 7 \
                     --apply-immediately`, then clone once its latest restorable time shows), or \
                     remove restore_source_parameter and restore_time_parameter from \
                     Metadata.envclone.databases.{id} to clone it from a snapshot"
                ),
            })
        }
        Some(_) => Ok(()),
    }
}

/// The stack's parameters for database `d`, restored to T from its source: waits (outside the
/// window) until the source's `LatestRestorableTime` has passed T. T is the run's (a resumed
/// run reuses it); without Standby there is no quiet moment, so the restore is taken at the
/// whole second before now (crash-consistent, as the rest of such a clone). Returns the
/// report's label and the parameters.
pub async fn restore_point(
    engine: &CloneEngine,
    plan: &ClonePlan,
    d: &DatabasePlan,
    events: &Emitter,
    window: &QuietWindow,
) -> Result<(String, BTreeMap<String, String>), StepError> {
    let step = "restore";
    let p = d
        .point_in_time
        .as_ref()
        .expect("only databases restored to a point in time");
    let (t, consistent) = match window.moment() {
        Some(t) => (t, true),
        None => {
            let now = engine.cloud.clock.now();
            (
                DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now),
                false,
            )
        }
    };
    let at = stamp(t);
    let source = d.source_instance.as_str();
    events.start(
        step,
        Some(source),
        format!(
            "point-in-time restore of {source} to T = {at}: waiting until its latest restorable \
             time passes T (RDS: typically within 5 minutes); the source is not held for it"
        ),
    );
    let dbs = &engine.cloud.databases;
    let what = format!("the latest restorable time of database {source} to reach T = {at}");
    let reached = wait_until(&what, RESTORABLE_DEADLINE, || async {
        let seen = match d.kind {
            DbKind::Instance => dbs
                .describe_instance(source)
                .await?
                .map(|i| (i.latest_restorable_time, i.backup_retention_period)),
            DbKind::Cluster => dbs
                .describe_cluster(source)
                .await?
                .map(|c| (c.latest_restorable_time, c.backup_retention_period)),
        };
        Ok(match seen {
            None => Poll::Failed(format!("database {source} no longer exists")),
            Some((_, days)) if days <= 0 => Poll::Failed(format!(
                "database {source}'s automated backups were turned off (BackupRetentionPeriod \
                 {days}) since preflight, which deletes its restorable history: it can no longer \
                 be restored to T. Run `envclone abort {run}`, turn the backups back on and clone \
                 again once its latest restorable time shows",
                run = plan.run_id
            )),
            Some((Some(latest), _)) if latest >= t => Poll::Ready(latest),
            Some((Some(latest), _)) => {
                Poll::Pending(format!("latest restorable time {}", stamp(latest)))
            }
            Some((None, _)) => {
                Poll::Pending("no latest restorable time (automated backups off?)".into())
            }
        })
    })
    .await;
    let latest = reached.map_err(|e| match e {
        WaitError::TimedOut { .. } => StepError::Refused {
            step: step.into(),
            message: format!(
                "{e}. RDS keeps the latest restorable time typically within 5 minutes of now \
                 (\"Restoring a DB instance to a specified time\"): check database {source}'s \
                 automated backups (BackupRetentionPeriod, its RDS events), then `envclone resume \
                 {run}` (T is kept) or `envclone abort {run}`",
                run = plan.run_id
            ),
        },
        other => StepError::wait(step)(other),
    })?;
    events.done(
        step,
        Some(source),
        format!("restorable to {} (≥ T = {at})", stamp(latest)),
    );
    let label = if consistent {
        format!("restored to {at} from {source} (point-in-time restore)")
    } else {
        format!("restored to {at} from {source} (point-in-time restore; crash-consistent)")
    };
    let parameters = BTreeMap::from([
        (d.snapshot_parameter.clone(), String::new()),
        (p.source_parameter.clone(), source.to_string()),
        (p.time_parameter.clone(), at),
    ]);
    Ok((label, parameters))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restored() -> DatabasePlan {
        DatabasePlan {
            logical_id: "Db".into(),
            source_instance: "prod-db".into(),
            snapshot_id: "envclone-x-prod-db".into(),
            snapshot_parameter: "SnapshotId".into(),
            target_instance: None,
            kind: DbKind::Instance,
            copy_on_write: None,
            target_members: Vec::new(),
            point_in_time: Some(crate::contract::PointInTimeParameters {
                source_parameter: "RestoreSource".into(),
                time_parameter: "RestoreTime".into(),
            }),
        }
    }

    /// A source without a restore time is a read replica to CloudFormation: never sent.
    #[test]
    fn a_source_without_a_restore_time_is_never_given_to_the_stack() {
        let d = restored();
        let params = |time: &str| {
            BTreeMap::from([
                ("RestoreSource".to_string(), "prod-db".to_string()),
                ("RestoreTime".to_string(), time.to_string()),
            ])
        };
        let err = check_parameters(&d, &params("")).unwrap_err().to_string();
        assert!(err.contains("read replica"), "{err}");
        assert!(err.contains("RestoreTime"), "{err}");
        check_parameters(&d, &params("2026-12-02T04:05:06Z")).unwrap();
        // Neither given (a database of the plan not restored this way): nothing to check.
        check_parameters(&d, &BTreeMap::new()).unwrap();
    }
}
