//! The swap on AWS's timing: an RDS rename keeps the database under its OLD identifier with
//! status `renaming` for about ten minutes before it answers to the new one
//! (USER_RenameInstance; ModifyDBCluster likewise). A stop at every moment of the swap —
//! Ctrl-C, a crash (`kill -9`: the run's future dropped), a lost response — forward and back,
//! for a DB instance and for an Aurora cluster, must end with every identifier where it belongs
//! once the renames settle.
//!
//! Before the swap waited for settled state (issue 10, item 1), a crash right after the first
//! rename followed by `abort` saw the source identifier "exist" (still `renaming`), called the
//! swap-back done, and the source database then moved to `<id>-old-<stamp>`: every scenario
//! below that stops after a rename failed.

use std::time::Duration;

use envclone::fake::MemoryRunStore;
use envclone::ports::DnsRecord;
use envclone::workflow::migrate::{MigratePhase, MigrateRequest, MigrationState};

use crate::support::*;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Instance,
    Cluster,
}

const RUN: &str = "20261121000000-beef";

impl Kind {
    async fn prod(self) -> (Scenario, Option<DnsRecord>) {
        match self {
            Kind::Instance => {
                let (s, record) = crate::fake_migrate::prod().await;
                (s, Some(record))
            }
            Kind::Cluster => (crate::fake_aurora::aurora_prod(), None),
        }
    }

    fn request(self) -> MigrateRequest {
        match self {
            Kind::Instance => crate::fake_migrate::request(),
            Kind::Cluster => crate::fake_aurora::migrate_request(),
        }
    }

    fn rename_operation(self) -> &'static str {
        match self {
            Kind::Instance => "rds:ModifyDBInstance",
            Kind::Cluster => "rds:ModifyDBCluster",
        }
    }

    fn assert_source_as_it_was(self, s: &Scenario, record: &Option<DnsRecord>, context: &str) {
        match (self, record) {
            (Kind::Instance, Some(record)) => {
                crate::fake_migrate::assert_source_as_it_was(s, record, context);
                assert!(
                    !s.fake.db_ids().iter().any(|id| id.contains("-old-")),
                    "{context}: {:?}",
                    s.fake.db_ids()
                );
            }
            _ => {
                crate::fake_aurora::assert_aurora_source_as_it_was(s, context);
                assert!(
                    !s.fake.cluster_ids().iter().any(|id| id.contains("-old-")),
                    "{context}: {:?}",
                    s.fake.cluster_ids()
                );
            }
        }
    }

    /// The new environment's database serves under the original identifier; the source's
    /// waits under `<id>-old-<stamp>`.
    fn assert_swapped(self, s: &Scenario, context: &str) {
        match self {
            Kind::Instance => {
                assert_eq!(
                    s.fake.db_restored_from("prod-db").as_deref(),
                    Some("envclone-20261121000000-beef-prod-db"),
                    "{context}: {:?}",
                    s.fake.db_ids()
                );
                assert!(
                    s.fake
                        .db_ids()
                        .contains(&"prod-db-old-202611210000".to_string()),
                    "{context}: {:?}",
                    s.fake.db_ids()
                );
            }
            Kind::Cluster => {
                let source = crate::fake_aurora::SOURCE_CLUSTER;
                assert!(
                    s.fake.cluster_restored_from(source).is_some(),
                    "{context}: {source} is the new cluster: {:?}",
                    s.fake.cluster_ids()
                );
                assert_eq!(
                    s.fake
                        .cluster_restored_from("prod-cluster-old-202611210000"),
                    None,
                    "{context}: the old cluster is the original: {:?}",
                    s.fake.cluster_ids()
                );
            }
        }
    }
}

fn stored(store: &MemoryRunStore) -> MigrationState {
    serde_json::from_value(store.0.lock().unwrap()[RUN].clone()).unwrap()
}

/// Runs a whole migrate and returns, relative to its start, when each rename call was made
/// and when the migrate returned.
async fn swap_timeline(kind: Kind) -> (Vec<Duration>, Duration) {
    let (s, _) = kind.prod().await;
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight_migrate(&kind.request(), run_id())
        .await
        .unwrap();
    let start = s.fake.elapsed();
    s.engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("{kind:?}: {}", f.error));
    let end = s.fake.elapsed() - start;
    let renames: Vec<Duration> = s
        .fake
        .calls()
        .iter()
        .filter(|c| c.operation == kind.rename_operation() && c.at >= start)
        .map(|c| c.at - start)
        .collect();
    assert_eq!(renames.len(), 2, "{kind:?}: source → old, clone → source");
    assert!(
        end > renames[1] + Duration::from_secs(590),
        "{kind:?}: the swap waits for the second rename to settle ({end:?} vs {renames:?})"
    );
    (renames, end)
}

/// Moments around and inside each rename (at the call, while the database is `renaming`,
/// just before and after it settles), and spread over the whole swap.
fn moments(renames: &[Duration], end: Duration) -> Vec<Duration> {
    let mut at = Vec::new();
    for r in renames {
        // 5 ms and 1 s: RDS still says `available` (`Timings::db_rename_starts`, 15 s).
        for offset in [0u64, 5, 1_000, 14_000, 60_000, 300_000, 599_000, 601_000] {
            at.push(*r + Duration::from_millis(offset));
        }
        at.push(r.saturating_sub(Duration::from_secs(1)));
    }
    let first = renames[0];
    for i in 0..8u32 {
        at.push(first + (end - first) * i / 8);
    }
    at.sort();
    at.dedup();
    at
}

/// Lets every rename called so far become effective (`Timings::db_rename`, 10 minutes), so
/// that what a run left is judged by where the identifiers end up, not by where they are
/// while a rename is still pending.
async fn renames_settle() {
    tokio::time::sleep(Duration::from_secs(20 * 60)).await;
}

/// Ctrl-C at every moment of the swap: the call in flight finishes (no call is abandoned),
/// the swap goes back, and the source is as it was.
async fn ctrl_c_at_every_moment(kind: Kind) {
    let (renames, end) = swap_timeline(kind).await;
    let mut stopped = 0;
    for at in moments(&renames, end) {
        let context = format!("{kind:?}: Ctrl-C {at:?} into the migrate");
        let (s, record) = kind.prod().await;
        let store = MemoryRunStore::default();
        let plan = s
            .engine
            .preflight_migrate(&kind.request(), run_id())
            .await
            .unwrap();
        let result = s
            .engine
            .migrate(&plan, &store, &s.emitter, tokio::time::sleep(at))
            .await;
        let Err(failure) = result else {
            panic!("{context}: the migrate ignored Ctrl-C");
        };
        stopped += 1;
        assert_eq!(failure.state.phase, MigratePhase::Aborted, "{context}");
        assert_eq!(stored(&store).phase, MigratePhase::Aborted, "{context}");
        assert_eq!(
            s.fake.abandoned_calls(),
            Vec::<String>::new(),
            "{context}: Ctrl-C must let the call in flight finish"
        );
        renames_settle().await;
        kind.assert_source_as_it_was(&s, &record, &context);
    }
    assert!(stopped > 10, "{kind:?}: {stopped}");
}

/// A crash (kill -9) at every moment of the swap, then `abort` from the recorded state alone;
/// and the same crash then `resume`.
async fn crash_at_every_moment_then_abort_or_resume(kind: Kind) {
    let (renames, end) = swap_timeline(kind).await;
    let mut crashed = 0;
    for at in moments(&renames, end) {
        for resume in [false, true] {
            let context = format!(
                "{kind:?}: crash {at:?} into the migrate, then {}",
                if resume { "resume" } else { "abort" }
            );
            let (s, record) = kind.prod().await;
            let store = MemoryRunStore::default();
            let plan = s
                .engine
                .preflight_migrate(&kind.request(), run_id())
                .await
                .unwrap();
            tokio::select! {
                biased;
                () = tokio::time::sleep(at) => {}
                _ = s.engine.migrate(&plan, &store, &s.emitter, std::future::pending()) => {
                    panic!("{context}: the migrate ended before the crash");
                }
            }
            let mut state = stored(&store);
            // A second before the first rename the clone may still be verifying.
            if matches!(state.phase, MigratePhase::Swapping | MigratePhase::Swapped) {
                crashed += 1;
            }
            if resume && state.phase == MigratePhase::Swapped {
                kind.assert_swapped(&s, &context);
            } else if resume {
                let state = s
                    .engine
                    .resume_migration(state, &store, &s.emitter, std::future::pending())
                    .await
                    .unwrap_or_else(|f| panic!("{context}: resume failed: {}", f.error));
                assert_eq!(state.phase, MigratePhase::Swapped, "{context}");
                renames_settle().await;
                kind.assert_swapped(&s, &context);
            } else {
                s.engine
                    .abort_migration(&mut state, &store, &s.emitter)
                    .await
                    .unwrap_or_else(|e| panic!("{context}: abort failed: {e}"));
                renames_settle().await;
                kind.assert_source_as_it_was(&s, &record, &context);
            }
        }
    }
    assert!(crashed > 20, "{kind:?}: {crashed}");
}

/// A crash at every moment of the swap BACK (an abort of a swapped migration cut short), then
/// `abort` again: the source is as it was.
async fn crash_during_the_swap_back_then_abort_again(kind: Kind) {
    // When the swap back renames, relative to the start of the abort.
    let (s, _) = kind.prod().await;
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight_migrate(&kind.request(), run_id())
        .await
        .unwrap();
    let mut state = s
        .engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("{}", f.error));
    let start = s.fake.elapsed();
    s.engine
        .abort_migration(&mut state, &store, &s.emitter)
        .await
        .unwrap();
    let end = s.fake.elapsed() - start;
    let renames: Vec<Duration> = s
        .fake
        .calls()
        .iter()
        .filter(|c| c.operation == kind.rename_operation() && c.at >= start)
        .map(|c| c.at - start)
        .collect();
    assert_eq!(renames.len(), 2, "{kind:?}: new → clone id, old → source");

    let mut crashed = 0;
    for at in moments(&renames, end) {
        let context = format!("{kind:?}: crash {at:?} into the swap back, then abort");
        let (s, record) = kind.prod().await;
        let store = MemoryRunStore::default();
        let plan = s
            .engine
            .preflight_migrate(&kind.request(), run_id())
            .await
            .unwrap();
        let mut state = s
            .engine
            .migrate(&plan, &store, &s.emitter, std::future::pending())
            .await
            .unwrap_or_else(|f| panic!("{}", f.error));
        tokio::select! {
            biased;
            () = tokio::time::sleep(at) => {}
            _ = s.engine.abort_migration(&mut state, &store, &s.emitter) => {
                panic!("{context}: the abort ended before the crash");
            }
        }
        crashed += 1;
        let mut state = stored(&store);
        s.engine
            .abort_migration(&mut state, &store, &s.emitter)
            .await
            .unwrap_or_else(|e| panic!("{context}: abort failed: {e}"));
        renames_settle().await;
        kind.assert_source_as_it_was(&s, &record, &context);
    }
    assert!(crashed > 10, "{kind:?}: {crashed}");
}

/// A rename whose response is lost (it reached RDS; the retry is refused because the
/// database is `renaming`): the swap sees the rename under way and goes on.
async fn a_lost_rename_response_does_not_stop_the_swap(kind: Kind) {
    let (s, _) = kind.prod().await;
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight_migrate(&kind.request(), run_id())
        .await
        .unwrap();
    s.fake.lose_response(kind.rename_operation(), 2);
    let state = s
        .engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("{kind:?}: {}", f.error));
    assert_eq!(state.phase, MigratePhase::Swapped);
    kind.assert_swapped(&s, &format!("{kind:?}: lost responses"));
}

#[tokio::test(start_paused = true)]
async fn ctrl_c_at_every_moment_of_an_instance_swap_finishes_the_call_and_swaps_back() {
    ctrl_c_at_every_moment(Kind::Instance).await;
}

#[tokio::test(start_paused = true)]
async fn ctrl_c_at_every_moment_of_a_cluster_swap_finishes_the_call_and_swaps_back() {
    ctrl_c_at_every_moment(Kind::Cluster).await;
}

#[tokio::test(start_paused = true)]
async fn a_crash_at_every_moment_of_an_instance_swap_then_abort_or_resume() {
    crash_at_every_moment_then_abort_or_resume(Kind::Instance).await;
}

#[tokio::test(start_paused = true)]
async fn a_crash_at_every_moment_of_a_cluster_swap_then_abort_or_resume() {
    crash_at_every_moment_then_abort_or_resume(Kind::Cluster).await;
}

#[tokio::test(start_paused = true)]
async fn a_crash_during_an_instance_swap_back_then_abort_again() {
    crash_during_the_swap_back_then_abort_again(Kind::Instance).await;
}

#[tokio::test(start_paused = true)]
async fn a_crash_during_a_cluster_swap_back_then_abort_again() {
    crash_during_the_swap_back_then_abort_again(Kind::Cluster).await;
}

#[tokio::test(start_paused = true)]
async fn a_lost_rename_response_does_not_stop_an_instance_swap() {
    a_lost_rename_response_does_not_stop_the_swap(Kind::Instance).await;
}

#[tokio::test(start_paused = true)]
async fn a_lost_rename_response_does_not_stop_a_cluster_swap() {
    a_lost_rename_response_does_not_stop_the_swap(Kind::Cluster).await;
}

/// Issue 10, item 2: a migrated environment is still an environment. While the migration is
/// swapped but not finalized, clone, migrate and destroy of the environment — by the old
/// stack's name, the new stack's name or the environment's tag — are refused naming the open
/// run. After finalize the environment clones and migrates again: its database is found through
/// envclone's tags where CloudFormation's record names the temporary identifier. Before the
/// fix the clone during the open migration went ahead, and after finalize preflight said
/// "database prod-mbeef-db does not exist".
#[tokio::test(start_paused = true)]
async fn migrate_finalize_clone_migrate_again_finalize() {
    let (s, _) = crate::fake_migrate::prod().await;
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight_migrate(&Kind::Instance.request(), run_id())
        .await
        .unwrap();
    let mut first = s
        .engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("{}", f.error));
    assert_eq!(first.phase, MigratePhase::Swapped);

    // Open: refused by every name, with the run's id.
    for name in ["prod", "prod-mbeef"] {
        let mut request = s.request("staging-test");
        request.source = name.into();
        let err = s
            .engine
            .preflight(
                &request,
                envclone::model::RunId::from_existing("20261121010000-0001"),
            )
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(RUN) && err.contains("finalize"),
            "clone {name}: {err}"
        );
        let mut request = Kind::Instance.request();
        request.env = name.into();
        let err = s
            .engine
            .preflight_migrate(
                &request,
                envclone::model::RunId::from_existing("20261121010000-0002"),
            )
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(RUN), "migrate {name}: {err}");
        let err = s.engine.destroyable(name).await.unwrap_err().to_string();
        assert!(err.contains(RUN), "destroy {name}: {err}");
    }

    s.engine
        .finalize(&mut first, &store, &s.emitter)
        .await
        .unwrap();
    assert_eq!(first.phase, MigratePhase::Finalized);
    assert_eq!(
        s.engine.resolve("prod").await.unwrap().stack.name,
        "prod-mbeef"
    );

    // Cloned again: from the live database, which the new stack's record does not name.
    let clone_run = envclone::model::RunId::from_existing("20261121020000-c10e");
    let clone_plan = s
        .engine
        .preflight(&s.request("staging-test"), clone_run)
        .await
        .unwrap_or_else(|e| panic!("clone after finalize: {e}"));
    assert_eq!(clone_plan.databases[0].source_instance, "prod-db");
    s.engine
        .execute(&clone_plan, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("clone after finalize: {}", f.error));
    assert_eq!(
        s.fake.db_restored_from("staging-test-db").as_deref(),
        Some("envclone-20261121020000-c10e-prod-db")
    );

    // Migrated again, and finalized: the live database is the second migration's clone.
    let second_run = envclone::model::RunId::from_existing("20261122000000-cafe");
    let store2 = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight_migrate(&Kind::Instance.request(), second_run)
        .await
        .unwrap_or_else(|e| panic!("second migrate: {e}"));
    assert_eq!(plan.clone.source_stack, "prod-mbeef");
    assert_eq!(plan.swaps.databases[0].source_id, "prod-db");
    let mut second = s
        .engine
        .migrate(&plan, &store2, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("second migrate: {}", f.error));
    assert_eq!(second.phase, MigratePhase::Swapped);
    assert_eq!(
        s.fake.db_restored_from("prod-db").as_deref(),
        Some("envclone-20261122000000-cafe-prod-db")
    );
    s.engine
        .finalize(&mut second, &store2, &s.emitter)
        .await
        .unwrap_or_else(|e| panic!("second finalize: {e}"));
    assert_eq!(second.phase, MigratePhase::Finalized);
    let stacks = s.fake.live_stack_names();
    assert!(
        !stacks.contains(&"prod-mbeef".to_string()) && stacks.contains(&"prod-mcafe".to_string()),
        "{stacks:?}"
    );
    assert_eq!(
        s.fake.db_restored_from("prod-db").as_deref(),
        Some("envclone-20261122000000-cafe-prod-db"),
        "the live database survived the second finalize"
    );
    assert_eq!(
        s.engine.resolve("prod").await.unwrap().stack.name,
        "prod-mcafe"
    );
    // Settled either way: no database still says a migration is open.
    let open = s
        .fake
        .cloud()
        .databases
        .tagged(
            envclone::ports::DbKind::Instance,
            envclone::model::TAG_OPEN_MIGRATION,
            "20261122000000-cafe",
        )
        .await
        .unwrap();
    assert!(open.is_empty(), "{open:?}");
}
