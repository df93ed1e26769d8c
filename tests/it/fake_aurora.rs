//! Aurora sources on the fake (moto's CloudFormation skips AWS::RDS::DBCluster): the clone is a
//! copy-on-write clone at a point inside the Standby window, falls back to a cluster snapshot
//! where a clone is not possible, abort/resume/destroy handle clusters like instances, and
//! migrate swaps by renaming the cluster.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use envclone::fake::MemoryRunStore;
use envclone::workflow::recovery::{self, ClonePhase};

use crate::support::*;

pub const AURORA: &str = include_str!("../../stacks/aurora.yaml");
pub(crate) const SOURCE_CLUSTER: &str = "prod-cluster";
const CLONE_CLUSTER: &str = "staging-test-cluster";
const SOURCE_UPLOADS: &str = "prod-uploads-123456789012";

/// The Aurora reference environment `prod`, deployed and filled, with some writes made.
pub(crate) fn aurora_prod() -> Scenario {
    aurora_prod_with(timings())
}

pub(crate) fn aurora_prod_with(timings: envclone::fake::Timings) -> Scenario {
    let s = Scenario::new(timings);
    s.fake.deploy_now(
        "prod",
        AURORA,
        &[("EnvironmentName", "prod"), ("DesiredCapacity", "3")],
    );
    fill(&s.fake, SOURCE_UPLOADS);
    s.fake.write_to_cluster(SOURCE_CLUSTER);
    s.fake.write_to_cluster(SOURCE_CLUSTER);
    s
}

/// The application: writes to the cluster every few seconds while the source serves (an
/// instance InService), and stops while it is in Standby. Also returns the cluster's data
/// version when the application first found the source out of service.
fn app_writer(s: &Scenario) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Option<u64>>>) {
    app_writer_with(
        s,
        |f| {
            f.write_to_cluster(SOURCE_CLUSTER);
        },
        |f| f.cluster_data_version(SOURCE_CLUSTER),
    )
}

/// The application: `write`s every 7 s while the source serves (an instance InService), and
/// stops while it is in Standby. Also returns the data `version` it found when it first saw the
/// source out of service.
pub(crate) fn app_writer_with(
    s: &Scenario,
    write: fn(&envclone::fake::FakeAws),
    version: fn(&envclone::fake::FakeAws) -> Option<u64>,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Option<u64>>>) {
    let fake = s.fake.clone();
    let group = s.source_group().name;
    let at_standby = Arc::new(Mutex::new(None));
    let seen = at_standby.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(7)).await;
            let serving = fake
                .group(&group)
                .is_some_and(|g| g.instances.iter().any(|i| i.lifecycle_state == "InService"));
            if serving {
                write(&fake);
            } else {
                let mut seen = seen.lock().unwrap();
                if seen.is_none() {
                    *seen = version(&fake);
                }
            }
        }
    });
    (task, at_standby)
}

#[tokio::test(start_paused = true)]
async fn an_aurora_cluster_is_cloned_copy_on_write_at_the_standby_point() {
    clone_holds_exactly_the_writes_before_standby(timings()).await;
}

/// AWS's clock two minutes ahead of this machine's: the clone point is taken on AWS's clock.
#[tokio::test(start_paused = true)]
async fn a_copy_on_write_clone_is_consistent_when_aws_clock_runs_ahead() {
    clone_holds_exactly_the_writes_before_standby(envclone::fake::Timings {
        aws_clock_ahead: Duration::from_secs(120),
        ..timings()
    })
    .await;
}

async fn clone_holds_exactly_the_writes_before_standby(timings: envclone::fake::Timings) {
    let lag = timings.restorable_lag;
    let s = aurora_prod_with(timings);
    let (writer, version_at_standby) = app_writer(&s);
    // The application has been writing for a while before the clone starts.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap();
    assert!(
        plan.steps()
            .iter()
            .any(|step| step.contains("copy-on-write clone point of Aurora cluster prod-cluster")),
        "{:#?}",
        plan.steps()
    );
    let report = s
        .engine
        .execute(&plan, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("clone failed: {:?}", f.error));
    let (entered, exited) = standby_span(&s);
    let clone_version = s.fake.cluster_data_version(CLONE_CLUSTER).unwrap();
    // The application writes again once the source is back in service.
    tokio::time::sleep(Duration::from_secs(60)).await;
    writer.abort();

    // CloudFormation created the cluster as a copy-on-write clone; no snapshot was taken.
    let restored = s.fake.cluster_restored_from(CLONE_CLUSTER).unwrap();
    assert!(
        restored.starts_with("copy-on-write clone of prod-cluster at "),
        "{restored}"
    );
    assert!(s.fake.cluster_snapshot_ids().is_empty());
    assert!(s.fake.snapshot_ids().is_empty());
    assert_eq!(report.snapshots.len(), 1);
    assert!(
        report.snapshots[0].starts_with("copy-on-write clone of prod-cluster (restorable past "),
        "{:?}",
        report.snapshots
    );
    assert!(s
        .fake
        .db_ids()
        .contains(&"staging-test-cluster-1".to_string()));

    // The clone holds every write made before Standby and none made after it.
    let version_at_standby = version_at_standby.lock().unwrap().expect("saw the Standby");
    assert!(version_at_standby > 2, "the app wrote before the clone");
    assert_eq!(clone_version, version_at_standby);
    let source_version = s.fake.cluster_data_version(SOURCE_CLUSTER).unwrap();
    assert!(
        source_version > clone_version,
        "the app wrote after the source came back ({source_version} vs {clone_version})"
    );
    let calls = s.fake.calls();
    let stack_created = calls
        .iter()
        .find(|c| c.operation == "cloudformation:CreateStack")
        .unwrap()
        .at;
    assert!(entered < stack_created && stack_created < exited);
    // The Standby window holds the wait for the clone point to become restorable.
    assert!(exited - entered >= lag, "{:?}", exited - entered);
    assert!(
        report.verification.iter().all(|c| c.ok),
        "{:#?}",
        report.verification
    );
    assert!(report
        .verification
        .iter()
        .any(|c| c.check == format!("database {CLONE_CLUSTER}") && c.ok));
    assert_eq!(
        s.fake.object_keys(SOURCE_UPLOADS),
        s.fake.object_keys("staging-test-uploads-123456789012")
    );
    assert_source_in_service(&s, "aurora clone");
}

#[tokio::test(start_paused = true)]
async fn a_cluster_that_cannot_be_cloned_copy_on_write_is_snapshotted() {
    let s = aurora_prod();
    // Aurora Serverless v1 cannot be cloned copy-on-write.
    s.fake.set_cluster_engine_mode(SOURCE_CLUSTER, "serverless");
    let version = s.fake.cluster_data_version(SOURCE_CLUSTER).unwrap();
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap();
    let report = s
        .engine
        .execute(&plan, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("clone failed: {:?}", f.error));
    let snapshot = "envclone-20261121000000-beef-prod-cluster";
    assert_eq!(
        report.snapshots,
        vec![format!("DB cluster snapshot {snapshot}")]
    );
    assert_eq!(s.fake.cluster_snapshot_ids(), vec![snapshot.to_string()]);
    assert_eq!(
        s.fake.cluster_restored_from(CLONE_CLUSTER).as_deref(),
        Some(format!("snapshot {snapshot}").as_str())
    );
    assert_eq!(s.fake.cluster_data_version(CLONE_CLUSTER), Some(version));
    let warned = s.events.events().into_iter().any(|e| {
        e.message.contains("cannot be cloned copy-on-write") && e.message.contains("Serverless v1")
    });
    assert!(warned, "the fallback is reported");
    assert!(report.verification.iter().all(|c| c.ok));
    assert_source_in_service(&s, "aurora snapshot fallback");
}

#[tokio::test(start_paused = true)]
async fn a_crash_at_every_step_of_an_aurora_clone_then_abort_or_resume() {
    let s = aurora_prod();
    let store = MemoryRunStore::default();
    clone_to_end(&s, &store, "staging-test").await;
    let total = s.fake.mutating_calls().len() as u64;

    for n in 1..=total {
        for resume in [false, true] {
            let context = format!("crash after call {n}, resume {resume}");
            let s = aurora_prod();
            let store = MemoryRunStore::default();
            assert!(
                crash_at(&s, &store, n).await,
                "{context}: the call happened"
            );
            let mut record = recovery::load(&store, "20261121000000-beef")
                .unwrap()
                .expect("recorded before the first change");
            if resume {
                let report = s
                    .engine
                    .resume_clone(record, &store, &s.emitter, std::future::pending())
                    .await
                    .unwrap_or_else(|f| panic!("{context}: {}", f.error));
                assert!(report.verification.iter().all(|c| c.ok), "{context}");
                assert_eq!(
                    s.fake.cluster_ids(),
                    vec![SOURCE_CLUSTER.to_string(), CLONE_CLUSTER.to_string()],
                    "{context}"
                );
            } else {
                s.engine
                    .abort_clone(&mut record, &store, &s.emitter, false)
                    .await
                    .unwrap_or_else(|e| panic!("{context}: abort failed: {e}"));
                assert_eq!(record.phase, ClonePhase::Aborted);
                assert_eq!(s.fake.live_stack_names(), vec!["prod".to_string()]);
                assert_eq!(s.fake.cluster_ids(), vec![SOURCE_CLUSTER.to_string()]);
                // Not even the final snapshot CloudFormation takes of the clone's cluster.
                assert!(
                    s.fake.cluster_snapshot_ids().is_empty(),
                    "{context}: {:?}",
                    s.fake.cluster_snapshot_ids()
                );
                assert!(!s
                    .fake
                    .bucket_names()
                    .iter()
                    .any(|b| b.starts_with("staging-test")));
            }
            assert_source_in_service(&s, &context);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn destroy_removes_an_aurora_experiment_and_its_final_snapshot() {
    let s = aurora_prod();
    s.fake.set_cluster_engine_mode(SOURCE_CLUSTER, "serverless");
    let store = MemoryRunStore::default();
    clone_to_end(&s, &store, "exp-a").await;
    assert_eq!(
        s.fake.cluster_snapshot_ids().len(),
        1,
        "the fallback snapshot"
    );
    let target = s.engine.destroyable("exp-a").await.unwrap();
    let (removed, left) = s.engine.destroy(&target, &s.emitter).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(
        removed
            .iter()
            .any(|r| r == "DB cluster snapshot envclone-20261121000000-beef-prod-cluster"),
        "{removed:?}"
    );
    assert_eq!(s.fake.cluster_ids(), vec![SOURCE_CLUSTER.to_string()]);
    assert!(
        s.fake.cluster_snapshot_ids().is_empty(),
        "{:?}",
        s.fake.cluster_snapshot_ids()
    );
}

pub(crate) fn migrate_request() -> envclone::workflow::migrate::MigrateRequest {
    envclone::workflow::migrate::MigrateRequest {
        env: "prod".into(),
        template: (
            "aurora-v2.yaml".into(),
            AURORA.replace("Default: t3.micro", "Default: t3.small"),
        ),
        parameter_overrides: Default::default(),
        // aurora.yaml hands the cluster's endpoint to its instances: the swap needs a hook.
        config: post_swap_hook_config(),
    }
}

async fn migrate_plan(s: &Scenario) -> envclone::workflow::migrate::MigratePlan {
    s.engine
        .preflight_migrate(&migrate_request(), run_id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The source as it was: its own cluster (not a clone) under its name with its writer, its
/// stack, its instances in service.
pub(crate) fn assert_aurora_source_as_it_was(s: &Scenario, context: &str) {
    assert!(
        s.fake.live_stack_names().contains(&"prod".to_string()),
        "{context}"
    );
    assert_eq!(
        s.fake.termination_protection("prod"),
        Some(false),
        "{context}"
    );
    assert!(
        s.fake.cluster_ids().contains(&SOURCE_CLUSTER.to_string()),
        "{context}: {:?}",
        s.fake.cluster_ids()
    );
    assert_eq!(
        s.fake.cluster_restored_from(SOURCE_CLUSTER),
        None,
        "{context}: prod-cluster is the original cluster"
    );
    assert_eq!(
        s.fake.cluster_members(SOURCE_CLUSTER),
        vec!["prod-cluster-1".to_string()],
        "{context}"
    );
    assert_source_in_service(s, context);
}

#[tokio::test(start_paused = true)]
async fn an_aurora_environment_migrates_by_renaming_its_cluster() {
    let s = aurora_prod();
    let store = MemoryRunStore::default();
    let plan = migrate_plan(&s).await;
    let mut state = s
        .engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("migrate failed: {}", f.error));
    // The name clients use (and so the cluster endpoint) now belongs to the clone.
    let live = s.fake.cluster_restored_from(SOURCE_CLUSTER).unwrap();
    assert!(
        live.starts_with("copy-on-write clone of prod-cluster at "),
        "{live}"
    );
    let old = "prod-cluster-old-202611210000";
    assert_eq!(s.fake.cluster_restored_from(old), None);
    assert_eq!(
        s.fake.cluster_members(old),
        vec!["prod-cluster-1".to_string()]
    );
    assert_eq!(
        s.fake.cluster_members(SOURCE_CLUSTER),
        vec!["prod-mbeef-cluster-1".to_string()]
    );

    let before_finalize = s.fake.calls().len();
    s.engine
        .finalize(&mut state, &store, &s.emitter)
        .await
        .unwrap_or_else(|e| panic!("finalize failed: {e}"));
    // The live cluster is protected before the old stack, whose record names it, is deleted.
    let ops: Vec<String> = s.fake.calls()[before_finalize..]
        .iter()
        .filter(|c| c.mutating)
        .map(|c| c.operation.clone())
        .collect();
    let first_delete = ops
        .iter()
        .position(|o| o == "cloudformation:DeleteStack")
        .unwrap();
    let old_cluster_deleted = ops.iter().position(|o| o == "rds:DeleteDBCluster").unwrap();
    assert!(
        ops[old_cluster_deleted..first_delete]
            .iter()
            .any(|o| o == "rds:ModifyDBCluster"),
        "{ops:?}"
    );
    // Only the live cluster is left, not deleted by the old stack's record of its name, and
    // its deletion protection is back to what it was; the old data is in a kept snapshot.
    assert_eq!(s.fake.cluster_ids(), vec![SOURCE_CLUSTER.to_string()]);
    assert!(s.fake.cluster_restored_from(SOURCE_CLUSTER).is_some());
    assert_eq!(
        s.fake.cluster_members(SOURCE_CLUSTER),
        vec!["prod-mbeef-cluster-1".to_string()]
    );
    assert!(!s.fake.db_ids().contains(&"prod-cluster-1".to_string()));
    let live = s
        .fake
        .cloud()
        .databases
        .describe_cluster(SOURCE_CLUSTER)
        .await
        .unwrap()
        .unwrap();
    assert!(!live.deletion_protection);
    assert_eq!(s.fake.live_stack_names(), vec!["prod-mbeef".to_string()]);
    let kept = s.fake.cluster_snapshot_ids();
    assert!(
        kept.iter()
            .any(|k| k.starts_with("envclone-20261121000000-beef-final-prod-cluster-old")),
        "{kept:?}"
    );
    assert!(
        state
            .kept
            .iter()
            .any(|k| k.starts_with("DB cluster snapshot ")),
        "{:?}",
        state.kept
    );
}

#[tokio::test(start_paused = true)]
async fn a_stop_at_every_step_of_an_aurora_migrate_then_abort_puts_the_source_back() {
    let s = aurora_prod();
    let store = MemoryRunStore::default();
    let plan = migrate_plan(&s).await;
    let before = s.fake.mutating_calls().len();
    s.engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("{}", f.error));
    let total = s.fake.mutating_calls().len() - before;

    for n in 1..=total as u64 {
        let context = format!("failure of mutating call {n}");
        let s = aurora_prod();
        let store = MemoryRunStore::default();
        let plan = migrate_plan(&s).await;
        s.fake.fail_nth_mutating_call(n);
        let mut state = match s
            .engine
            .migrate(&plan, &store, &s.emitter, std::future::pending())
            .await
        {
            Ok(state) => state,
            Err(f) => f.state,
        };
        s.engine
            .abort_migration(&mut state, &store, &s.emitter)
            .await
            .unwrap_or_else(|e| panic!("{context}: abort failed: {e}"));
        assert_aurora_source_as_it_was(&s, &context);
    }
}

#[tokio::test(start_paused = true)]
async fn finalize_deletes_a_protected_old_cluster_and_restores_the_live_ones_protection() {
    let s = aurora_prod();
    let dbs = s.fake.cloud().databases;
    // Production clusters usually carry deletion protection; the rename keeps it.
    dbs.set_cluster_deletion_protection(SOURCE_CLUSTER, true)
        .await
        .unwrap();
    let store = MemoryRunStore::default();
    let plan = migrate_plan(&s).await;
    let mut state = s
        .engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("migrate failed: {}", f.error));
    // Finalize is cut after its first mutating call, then (run again from the stored state)
    // after its second, and so on until it completes.
    let mut attempts = 0;
    loop {
        attempts += 1;
        assert!(attempts < 60, "finalize never completed");
        // One mutating call further each time.
        let crash = s.fake.crash_after_nth_mutating_call(attempts);
        let done = tokio::select! {
            biased;
            () = crash.notified() => false,
            r = s.engine.finalize(&mut state, &store, &s.emitter) => {
                r.unwrap_or_else(|e| panic!("finalize attempt {attempts} failed: {e}"));
                true
            }
        };
        if done {
            break;
        }
        state = envclone::workflow::migrate::load(&store, "20261121000000-beef")
            .unwrap()
            .unwrap();
    }
    assert!(attempts > 5, "finalize was cut {attempts} times");
    assert_eq!(s.fake.cluster_ids(), vec![SOURCE_CLUSTER.to_string()]);
    assert!(s.fake.cluster_restored_from(SOURCE_CLUSTER).is_some());
    assert_eq!(s.fake.live_stack_names(), vec!["prod-mbeef".to_string()]);
    let live = dbs.describe_cluster(SOURCE_CLUSTER).await.unwrap().unwrap();
    assert!(
        !live.deletion_protection,
        "the clone's own setting is back after the interrupted finalizes"
    );
    assert!(state.protection_to_restore.is_empty());
}

/// The clone's cluster instances are named by the template: one that already exists is refused
/// at preflight, before Standby, with nothing changed.
#[tokio::test(start_paused = true)]
async fn preflight_refuses_a_clone_whose_cluster_instance_name_is_taken() {
    let s = aurora_prod();
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap();
    assert_eq!(
        plan.databases[0].target_members,
        vec!["staging-test-cluster-1".to_string()]
    );
    s.fake.deploy_now(
        "squatter",
        r#"
Resources:
  Db:
    Type: AWS::RDS::DBInstance
    Properties:
      DBInstanceIdentifier: staging-test-cluster-1
"#,
        &[],
    );
    let calls_before = s.fake.mutating_calls().len();
    let err = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("staging-test-cluster-1") && err.contains("already exists"),
        "{err}"
    );
    assert_eq!(s.fake.mutating_calls().len(), calls_before);
}
