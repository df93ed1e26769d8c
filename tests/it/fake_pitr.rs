//! Issue 13, item 1, "where a template supports it, offer point-in-time restore instead": a
//! database whose template takes `SourceDBInstanceIdentifier` + `RestoreTime` is restored by the
//! clone stack to the run's moment T from the source itself. It takes no snapshot, so it holds
//! none of the source's time out of service; the run waits, after the window, until the
//! source's `LatestRestorableTime` has passed T. Written before the feature, against a contract
//! that refused `restore_source_parameter` (an unknown field: every test here stops at
//! preflight on it) and a fake without an instance's data history or LatestRestorableTime;
//! they were not run against the old code (it lacks the fake calls they make).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use envclone::fake::{MemoryRunStore, Timings};
use envclone::workflow::recovery;

use crate::fake_window::first_call;
use crate::support::*;

const RUN: &str = "20261121000000-beef";
const SOURCE_DB: &str = "prod-db";
const CLONE_DB: &str = "staging-test-db";

/// `template` (webapp.yaml or webapp-v2.yaml) able to restore its database to a point in time:
/// the contract names the two parameters, the database takes them under a condition, and a
/// restored database, like a snapshot's, brings its own credentials.
pub(crate) fn with_pitr(template: &str) -> String {
    let mut out = template.to_string();
    for (from, to) in [
        (
            "Database: { snapshot_parameter: DBSnapshotIdentifier }",
            "Database: { snapshot_parameter: DBSnapshotIdentifier, \
             restore_source_parameter: RestoreSource, restore_time_parameter: RestoreTime }",
        ),
        (
            "\n  DBSnapshotIdentifier:\n",
            "\n  RestoreSource:\n    Type: String\n    Default: \"\"\n  RestoreTime:\n    \
             Type: String\n    Default: \"\"\n  DBSnapshotIdentifier:\n",
        ),
        (
            "  HasSnapshot: !Not [!Equals [!Ref DBSnapshotIdentifier, \"\"]]\n",
            "  HasSnapshot: !Not [!Equals [!Ref DBSnapshotIdentifier, \"\"]]\n  IsRestore: !Not \
             [!Equals [!Ref RestoreSource, \"\"]]\n  FromData: !Or [!Condition HasSnapshot, \
             !Condition IsRestore]\n",
        ),
        (
            "      DBSnapshotIdentifier: !If [HasSnapshot, !Ref DBSnapshotIdentifier, !Ref \"AWS::NoValue\"]\n\
             \x20     DBName: !If [HasSnapshot,",
            "      DBSnapshotIdentifier: !If [HasSnapshot, !Ref DBSnapshotIdentifier, !Ref \"AWS::NoValue\"]\n\
             \x20     SourceDBInstanceIdentifier: !If [IsRestore, !Ref RestoreSource, !Ref \"AWS::NoValue\"]\n\
             \x20     RestoreTime: !If [IsRestore, !Ref RestoreTime, !Ref \"AWS::NoValue\"]\n\
             \x20     DBName: !If [FromData,",
        ),
        (
            "MasterUsername: !If [HasSnapshot,",
            "MasterUsername: !If [FromData,",
        ),
        (
            "MasterUserPassword: !If [HasSnapshot,",
            "MasterUserPassword: !If [FromData,",
        ),
    ] {
        assert!(out.contains(from), "the template has {from:?}");
        out = out.replace(from, to);
    }
    out
}

/// A database whose snapshot takes 40 minutes to become available (its point fixed after 8 s).
fn big() -> Timings {
    Timings {
        snapshot: Duration::from_secs(40 * 60),
        snapshot_point: Duration::from_secs(8),
        ..timings()
    }
}

/// `prod` from the PITR template, both buckets versioned (they leave the window too), the
/// database written to before the clone.
fn prod() -> Scenario {
    let s = Scenario::new(big());
    s.deploy_prod(&with_pitr(WEBAPP));
    s.fake.enable_versioning(UPLOADS);
    s.fake.enable_versioning(REPORTS);
    s.fake.write_to_db(SOURCE_DB);
    s.fake.write_to_db(SOURCE_DB);
    s
}

/// The application writing to the source's database while it serves (`fake_aurora`'s).
fn app_writer(s: &Scenario) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Option<u64>>>) {
    crate::fake_aurora::app_writer_with(
        s,
        |f| {
            f.write_to_db(SOURCE_DB);
        },
        |f| f.db_data_version(SOURCE_DB),
    )
}

fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Issue 13, item 1: a clone with a PITR database keeps the source out of service only
/// seconds, though its snapshot would take 40 minutes; it takes no snapshot, waits until the
/// source's latest restorable time passes T and gives the stack T; a write to the source after
/// T is absent from the clone.
#[tokio::test(start_paused = true)]
async fn a_pitr_clone_holds_the_source_seconds_and_restores_the_database_to_t() {
    let s = prod();
    let (writer, version_at_standby) = app_writer(&s);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let steps = plan.steps().join("\n");
    assert!(
        steps.contains("restore database Database to T from prod-db (point-in-time restore"),
        "{steps}"
    );
    assert!(
        steps.contains("not in the window: database prod-db: restored to T"),
        "{steps}"
    );
    let report = s
        .engine
        .run_clone(&plan, &store, &s.emitter, std::future::pending(), None)
        .await
        .unwrap_or_else(|f| panic!("clone failed: {}", f.error));
    let (entered, exited) = standby_span(&s);
    let clone_version = s
        .fake
        .db_data_version(CLONE_DB)
        .expect("the clone's database");
    tokio::time::sleep(Duration::from_secs(30)).await;
    writer.abort();

    // Seconds out of service, no snapshot at all.
    assert!(
        exited - entered < Duration::from_secs(60),
        "out of service {:?}",
        exited - entered
    );
    assert!(first_call(&s, "rds:CreateDBSnapshot").is_none());
    assert!(
        s.fake.snapshot_ids().is_empty(),
        "{:?}",
        s.fake.snapshot_ids()
    );
    let w = report.window.as_ref().expect("the report has the window");
    let t = stamp(w.t);
    assert!(w.whole.is_empty(), "{:?}", w.whole);
    assert!(
        !w.inside.iter().any(|i| i.contains("DB snapshot")),
        "{:?}",
        w.inside
    );
    assert!(
        w.outside
            .iter()
            .any(|i| i.starts_with("database prod-db: restored to T")),
        "{:?}",
        w.outside
    );
    assert_eq!(
        report.snapshots,
        vec![format!(
            "restored to {t} from {SOURCE_DB} (point-in-time restore)"
        )]
    );

    // The stack got the source and T, after the source was back in service and once T was
    // restorable (the fake fails a restore time after LatestRestorableTime).
    let stack = s
        .engine
        .cloud
        .stacks
        .describe_stack("staging-test")
        .await
        .unwrap()
        .expect("the clone stack");
    assert_eq!(stack.parameters["RestoreSource"], SOURCE_DB);
    assert_eq!(stack.parameters["RestoreTime"], t);
    assert_eq!(stack.parameters["DBSnapshotIdentifier"], "");
    let created = first_call(&s, "cloudformation:CreateStack").expect("stack created");
    assert!(
        created > exited,
        "the stack waited for the latest restorable time outside the window: created at \
         {created:?}, back in service at {exited:?}"
    );
    assert_eq!(
        s.fake.db_restored_from(CLONE_DB).as_deref(),
        Some(format!("point-in-time restore of {SOURCE_DB} at {t}").as_str())
    );

    // The clone holds every write made before Standby and none made after it.
    let version_at_standby = version_at_standby.lock().unwrap().expect("saw the Standby");
    assert!(version_at_standby > 2, "the app wrote before the clone");
    assert_eq!(clone_version, version_at_standby);
    let source_version = s.fake.db_data_version(SOURCE_DB).unwrap();
    assert!(
        source_version > clone_version,
        "the app wrote after the source came back ({source_version} vs {clone_version})"
    );
    assert!(
        report.verification.iter().all(|c| c.ok),
        "{:#?}",
        report.verification
    );
    assert_source_in_service(&s, "after the clone");
}

/// The fake, harshly: CloudFormation's create of a DB instance restored to a time after the
/// source's LatestRestorableTime fails the stack (RDS refuses it), and the latest restorable
/// time trails now by up to 5 minutes, in steps. Before the model, the fake ignored
/// RestoreTime and the stack was created with an empty database.
#[tokio::test(start_paused = true)]
async fn the_fake_refuses_a_restore_time_after_the_latest_restorable_time() {
    let s = Scenario::new(timings());
    s.deploy_prod(&with_pitr(WEBAPP));
    // Past the first log upload since the instance was made, off a step boundary: the latest
    // restorable time is behind now.
    tokio::time::sleep(Duration::from_secs(400)).await;
    let db = s
        .engine
        .cloud
        .databases
        .describe_instance(SOURCE_DB)
        .await
        .unwrap()
        .unwrap();
    let now = s.engine.cloud.clock.now();
    let latest = db.latest_restorable_time.expect("backups on");
    assert!(
        latest < now && now - latest <= chrono::Duration::minutes(5),
        "{latest} vs {now}"
    );
    let reason = restore_outcome(&s, "restored", &stamp(now)).await;
    assert!(
        reason.contains("InvalidRestoreFault") && reason.contains("latest restorable time"),
        "{reason}"
    );
    // At the latest restorable time itself, the restore is made.
    let made = restore_outcome(&s, "restored1", &stamp(latest)).await;
    assert!(
        made.starts_with("InProgress") || made.starts_with("CreateComplete"),
        "{made}"
    );
    assert_eq!(
        s.fake.db_restored_from("restored1-db").as_deref(),
        Some(format!("point-in-time restore of {SOURCE_DB} at {}", stamp(latest)).as_str())
    );
    // Without automated backups, no point-in-time restore at all.
    s.fake.set_backup_retention(SOURCE_DB, 0);
    let reason = restore_outcome(&s, "restored2", &stamp(latest)).await;
    assert!(reason.contains("PointInTimeRestoreNotEnabled"), "{reason}");
}

/// Deploys the PITR template as `name`, restoring prod-db to `time`: the stack's status and
/// reason.
async fn restore_outcome(s: &Scenario, name: &str, time: &str) -> String {
    s.fake.deploy_now(
        name,
        &with_pitr(WEBAPP),
        &[
            ("EnvironmentName", name),
            ("ReportsBucketName", REPORTS),
            ("RestoreSource", SOURCE_DB),
            ("RestoreTime", time),
        ],
    );
    let stack = s
        .engine
        .cloud
        .stacks
        .describe_stack(name)
        .await
        .unwrap()
        .unwrap();
    format!(
        "{:?}: {}",
        stack.status,
        stack.status_reason.unwrap_or_default()
    )
}

/// Issue 13, item 1: a source without automated backups is refused before any change (exit
/// 2), naming the database and the fix.
#[tokio::test(start_paused = true)]
async fn a_source_without_backups_is_refused_before_any_change() {
    let s = prod();
    s.fake.set_backup_retention(SOURCE_DB, 0);
    let e = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .expect_err("no backups, no point-in-time restore");
    let message = e.to_string();
    for part in [
        "database Database (prod-db) keeps no automated backups",
        "BackupRetentionPeriod 0",
        "--backup-retention-period",
        "remove restore_source_parameter and restore_time_parameter",
        "nothing was changed",
    ] {
        assert!(message.contains(part), "{part:?} in {message}");
    }
    assert_eq!(envclone::app::AppError::from(e).exit_code(), 2);
    assert!(
        s.fake.mutating_calls().is_empty(),
        "{:?}",
        s.fake.mutating_calls()
    );
}

/// Issue 13, item 1: the contract's parameters must be what the template's database restores
/// from: a template that does not use them for SourceDBInstanceIdentifier/RestoreTime is
/// refused at preflight (it would create an empty database).
#[tokio::test(start_paused = true)]
async fn a_template_that_does_not_restore_from_the_parameters_is_refused() {
    let s = prod();
    let unused = with_pitr(WEBAPP).replace(
        "      RestoreTime: !If [IsRestore, !Ref RestoreTime, !Ref \"AWS::NoValue\"]\n",
        "",
    );
    let request = envclone::workflow::plan::CloneRequest {
        template: Some(("unused.yaml".into(), unused)),
        ..s.request("staging-test")
    };
    let e = s
        .engine
        .preflight(&request, run_id())
        .await
        .expect_err("RestoreTime is not used");
    let message = e.to_string();
    assert!(
        message.contains("database Database is restored to a point in time")
            && message.contains("its RestoreTime is not set")
            && message.contains("`RestoreTime: !If ["),
        "{message}"
    );
    assert!(s.fake.mutating_calls().is_empty());
}

/// Issue 13, item 1: a crash after the window (while the run waits for the latest restorable
/// time, and right after CreateStack) then resume: the database is restored to the T the
/// first attempt recorded.
#[tokio::test(start_paused = true)]
async fn a_resume_after_a_crash_restores_to_the_recorded_t() {
    let s = prod();
    clone_to_end(&s, &MemoryRunStore::default(), "staging-test").await;
    let mutating = s.fake.mutating_calls();
    let at = |op: &str| mutating.iter().position(|c| c == op).expect(op) as u64 + 1;
    for n in [
        at("autoscaling:ExitStandby"),
        at("cloudformation:CreateStack"),
    ] {
        let s = prod();
        let store = MemoryRunStore::default();
        assert!(crash_at(&s, &store, n).await, "call {n} happened");
        let record = recovery::load(&store, RUN).unwrap().expect("recorded");
        let t = record.window.expect("T recorded").t;
        // Time passes before the operator resumes: a new T would differ.
        tokio::time::sleep(Duration::from_secs(600)).await;
        let report = s
            .engine
            .resume_clone(record, &store, &s.emitter, std::future::pending())
            .await
            .unwrap_or_else(|f| panic!("crash after call {n}: resume failed: {}", f.error));
        assert_eq!(report.window.expect("window").t, t, "resume reuses T");
        assert_eq!(
            s.fake.db_restored_from(CLONE_DB).as_deref(),
            Some(format!("point-in-time restore of {SOURCE_DB} at {}", stamp(t)).as_str()),
            "crash after call {n}"
        );
        assert!(s.fake.snapshot_ids().is_empty());
        assert_source_in_service(&s, &format!("resume after call {n}"));
    }
}

/// Issue 13, item 1, migrate: the source stays in Standby through the swap, so T (the Standby
/// moment) is as good a point as a snapshot's; the new database is restored to it.
#[tokio::test(start_paused = true)]
async fn migrate_restores_the_new_database_to_the_standby_moment() {
    let (s, _) = crate::fake_migrate::prod_from(&with_pitr(WEBAPP)).await;
    s.fake.write_to_db(SOURCE_DB);
    let store = MemoryRunStore::default();
    let request = envclone::workflow::migrate::MigrateRequest {
        template: (
            "webapp-v2-pitr.yaml".into(),
            with_pitr(crate::fake_migrate::V2),
        ),
        ..crate::fake_migrate::request()
    };
    let version = s.fake.db_data_version(SOURCE_DB).unwrap();
    let state = migrated_by(&s, &store, &request).await;
    assert!(
        s.fake.snapshot_ids().is_empty(),
        "{:?}",
        s.fake.snapshot_ids()
    );
    // After the swap the restored database answers as prod-db; the old one was renamed away.
    let d = &state.databases[0];
    let restored = s.fake.db_restored_from(&d.source_id).unwrap_or_default();
    assert!(
        restored.starts_with(&format!("point-in-time restore of {SOURCE_DB} at ")),
        "{restored}"
    );
    assert_eq!(s.fake.db_data_version(&d.source_id), Some(version));
}

/// aurora.yaml restoring its cluster to a point in time (full copy at `RestoreToTime`) instead
/// of cloning it copy-on-write at its latest restorable time.
fn aurora_with_pitr() -> String {
    let mut out = crate::fake_aurora::AURORA.to_string();
    for (from, to) in [
        (
            "        source_cluster_parameter: SourceClusterIdentifier\n",
            "        restore_source_parameter: SourceClusterIdentifier\n        \
             restore_time_parameter: RestoreToTime\n",
        ),
        (
            "\n  ClusterSnapshotIdentifier:\n",
            "\n  RestoreToTime:\n    Type: String\n    Default: \"\"\n  ClusterSnapshotIdentifier:\n",
        ),
        (
            "      RestoreType: !If [IsClone, copy-on-write, !Ref \"AWS::NoValue\"]\n\
             \x20     UseLatestRestorableTime: !If [IsClone, true, !Ref \"AWS::NoValue\"]\n",
            "      RestoreType: !If [IsClone, full-copy, !Ref \"AWS::NoValue\"]\n\
             \x20     RestoreToTime: !If [IsClone, !Ref RestoreToTime, !Ref \"AWS::NoValue\"]\n",
        ),
    ] {
        assert!(out.contains(from), "aurora.yaml has {from:?}");
        out = out.replace(from, to);
    }
    out
}

/// Issue 13, item 1, Aurora: a cluster restored to T (`RestoreToTime`, full copy) is not in the
/// window either — where a copy-on-write clone keeps the source in Standby until the clone
/// point is restorable (minutes), the source is out of service for seconds here; the clone
/// holds the writes before T and none after.
#[tokio::test(start_paused = true)]
async fn an_aurora_cluster_restored_to_t_is_not_in_the_window() {
    let s = Scenario::new(timings());
    s.fake.deploy_now(
        "prod",
        &aurora_with_pitr(),
        &[("EnvironmentName", "prod"), ("DesiredCapacity", "3")],
    );
    let uploads = "prod-uploads-123456789012";
    fill(&s.fake, uploads);
    s.fake.enable_versioning(uploads);
    let cluster = crate::fake_aurora::SOURCE_CLUSTER;
    s.fake.write_to_cluster(cluster);
    let (writer, version_at_standby) = crate::fake_aurora::app_writer_with(
        &s,
        |f| {
            f.write_to_cluster(crate::fake_aurora::SOURCE_CLUSTER);
        },
        |f| f.cluster_data_version(crate::fake_aurora::SOURCE_CLUSTER),
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    let report = clone_to_end(&s, &MemoryRunStore::default(), "staging-test").await;
    let (entered, exited) = standby_span(&s);
    let clone_version = s.fake.cluster_data_version("staging-test-cluster").unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    writer.abort();
    assert!(
        exited - entered < Duration::from_secs(60),
        "out of service {:?}",
        exited - entered
    );
    let t = stamp(report.window.as_ref().expect("window").t);
    assert_eq!(
        report.snapshots,
        vec![format!(
            "restored to {t} from {cluster} (point-in-time restore)"
        )]
    );
    assert!(s.fake.cluster_snapshot_ids().is_empty());
    let restored = s
        .fake
        .cluster_restored_from("staging-test-cluster")
        .unwrap();
    assert!(
        restored.starts_with(&format!("full copy of {cluster} at ")),
        "{restored}"
    );
    assert_eq!(
        Some(clone_version),
        *version_at_standby.lock().unwrap(),
        "the writes before T, none after"
    );
    assert!(s.fake.cluster_data_version(cluster).unwrap() > clone_version);
}

/// Without Standby there is no quiet moment: the database is restored to the whole second
/// before the copy started, and the report says it is crash-consistent.
#[tokio::test(start_paused = true)]
async fn without_standby_the_restore_is_crash_consistent() {
    let s = prod();
    // The source has served a while: the second T falls in is one it existed in.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let request = envclone::workflow::plan::CloneRequest {
        standby: false,
        ..s.request("staging-test")
    };
    let plan = s.engine.preflight(&request, run_id()).await.unwrap();
    let report = s
        .engine
        .run_clone(
            &plan,
            &MemoryRunStore::default(),
            &s.emitter,
            std::future::pending(),
            None,
        )
        .await
        .unwrap_or_else(|f| panic!("clone failed: {}", f.error));
    assert!(report.window.is_none());
    assert_eq!(report.snapshots.len(), 1);
    assert!(
        report.snapshots[0].starts_with("restored to ")
            && report.snapshots[0].ends_with(&format!(
                "from {SOURCE_DB} (point-in-time restore; crash-consistent)"
            )),
        "{:?}",
        report.snapshots
    );
    assert!(s.fake.snapshot_ids().is_empty());
}

/// Backups turned off while the run waits for the latest restorable time (RDS deletes the
/// automated backups, so T can no longer be restored): the wait fails at once, naming the
/// database and what to do, and the source is in service.
#[tokio::test(start_paused = true)]
async fn backups_turned_off_during_the_run_fail_the_wait_at_once() {
    let s = prod();
    s.fake.on_call("autoscaling:ExitStandby", |f| {
        f.set_backup_retention(SOURCE_DB, 0)
    });
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let failure = s
        .engine
        .run_clone(
            &plan,
            &MemoryRunStore::default(),
            &s.emitter,
            std::future::pending(),
            None,
        )
        .await
        .expect_err("no backups, no restore to T");
    let message = failure.error.to_string();
    assert!(
        message.contains("database prod-db's automated backups were turned off")
            && message.contains("envclone abort"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5 * 60),
        "failed at once, not at the deadline: {:?}",
        started.elapsed()
    );
    assert!(first_call(&s, "cloudformation:CreateStack").is_none());
    assert_source_in_service(&s, "after the failure");
}
