//! Crash safety of clone runs on the fake: the run is cut right after each of its mutating
//! calls (as `kill -9` would), then `abort` must leave the source as it was and nothing of the
//! run behind, and `resume` must reach the end state of an uninterrupted run.

use envclone::fake::MemoryRunStore;
use envclone::ports::PortError;
use envclone::workflow::recovery::{self, ClonePhase};

use crate::support::*;

pub(crate) fn assert_nothing_of_the_run_left(s: &Scenario, context: &str) {
    assert_eq!(
        s.fake.live_stack_names(),
        vec!["prod".to_string()],
        "{context}"
    );
    let buckets: Vec<String> = s
        .fake
        .bucket_names()
        .into_iter()
        .filter(|b| b.starts_with("staging-test"))
        .collect();
    assert!(buckets.is_empty(), "{context}: {buckets:?}");
    assert!(
        s.fake.snapshot_ids().is_empty(),
        "{context}: {:?}",
        s.fake.snapshot_ids()
    );
    assert!(
        !s.fake.db_ids().contains(&"staging-test-db".to_string()),
        "{context}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_crash_after_every_mutating_call_then_abort_or_resume() {
    // How many mutating calls an uninterrupted clone makes.
    let s = Scenario::with_webapp_prod();
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap();
    s.engine
        .run_clone(&plan, &store, &s.emitter, std::future::pending(), None)
        .await
        .unwrap_or_else(|f| panic!("{}", f.error));
    let total = s.fake.mutating_calls().len() as u64;
    assert!(total > 20, "{total}");

    for n in 1..=total {
        // Abort after the crash.
        let s = Scenario::with_webapp_prod();
        let store = MemoryRunStore::default();
        assert!(crash_at(&s, &store, n).await, "call {n} happened");
        let mut record = recovery::load(&store, "20261121000000-beef")
            .unwrap()
            .expect("recorded before the first change");
        let removed = s
            .engine
            .abort_clone(&mut record, &store, &s.emitter, false)
            .await
            .unwrap_or_else(|e| panic!("crash after call {n}: abort failed: {e}"));
        assert_eq!(record.phase, ClonePhase::Aborted);
        assert_source_in_service(&s, &format!("abort after call {n}"));
        assert_nothing_of_the_run_left(&s, &format!("abort after call {n} (removed {removed:?})"));
        // Source data untouched.
        assert_eq!(s.fake.object_keys(REPORTS).len(), TRICKY_KEYS.len() + 43);

        // Resume after the same crash.
        let s = Scenario::with_webapp_prod();
        let store = MemoryRunStore::default();
        crash_at(&s, &store, n).await;
        let record = recovery::load(&store, "20261121000000-beef")
            .unwrap()
            .unwrap();
        let report = s
            .engine
            .resume_clone(record, &store, &s.emitter, std::future::pending())
            .await
            .unwrap_or_else(|f| panic!("crash after call {n}: resume failed: {}", f.error));
        assert!(
            report.verification.iter().all(|c| c.ok),
            "resume after call {n}: {:#?}",
            report.verification
        );
        assert_source_in_service(&s, &format!("resume after call {n}"));
        assert_eq!(
            s.fake.snapshot_ids().len(),
            1,
            "resume after call {n}: no duplicate snapshot"
        );
        assert_eq!(s.fake.live_stack_names().len(), 2, "resume after call {n}");
        assert_eq!(
            s.fake.object_keys("staging-test-reports-123456789012"),
            s.fake.object_keys(REPORTS)
        );
        let record = recovery::load(&store, "20261121000000-beef")
            .unwrap()
            .unwrap();
        assert_eq!(record.phase, ClonePhase::Succeeded);
    }
}

#[tokio::test(start_paused = true)]
async fn faults_on_one_call_in_ten_complete_without_duplicates() {
    let s = Scenario::with_webapp_prod();
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap();
    // Throttling on every tenth call of every kind, for the whole run.
    s.fake.fail_every_nth_call(
        10,
        PortError::Transient {
            operation: "*".into(),
            message: "Throttling".into(),
        },
    );
    let report = s
        .engine
        .run_clone(&plan, &store, &s.emitter, std::future::pending(), None)
        .await
        .unwrap_or_else(|f| panic!("{}", f.error));
    assert!(report.verification.iter().all(|c| c.ok));
    assert_eq!(s.fake.snapshot_ids().len(), 1);
    assert_eq!(s.fake.live_stack_names().len(), 2);
    assert_eq!(
        s.fake
            .bucket_names()
            .iter()
            .filter(|b| b.starts_with("staging-test"))
            .count(),
        2
    );
    assert_source_in_service(&s, "faults");
}

#[tokio::test(start_paused = true)]
async fn abort_never_deletes_what_the_run_did_not_create() {
    let s = Scenario::with_webapp_prod();
    let store = MemoryRunStore::default();
    crash_at(&s, &store, 3).await;
    let mut record = recovery::load(&store, "20261121000000-beef")
        .unwrap()
        .unwrap();
    // Someone else's bucket under the name the run would have used.
    for b in &mut record.plan.buckets {
        if let envclone::workflow::plan::BucketTarget::Created { name, .. } = &mut b.target {
            *name = REPORTS.to_string();
        }
    }
    let err = s
        .engine
        .abort_clone(&mut record, &store, &s.emitter, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not tagged envclone:run"), "{err}");
    assert_eq!(
        s.fake.object_keys(REPORTS).len(),
        TRICKY_KEYS.len() + 43,
        "untouched"
    );
    assert_source_in_service(&s, "foreign bucket");
}

#[tokio::test(start_paused = true)]
async fn experiment_environments_are_listed_destroyed_and_collected_from_tags() {
    let s = Scenario::with_webapp_prod();
    let store = MemoryRunStore::default();
    let mut request = s.request("exp-a");
    request.owner = Some("alice".into());
    request.expires_at = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
    let plan = s.engine.preflight(&request, run_id()).await.unwrap();
    s.engine
        .run_clone(&plan, &store, &s.emitter, std::future::pending(), None)
        .await
        .unwrap_or_else(|f| panic!("{}", f.error));

    let envs = s.engine.list_environments().await.unwrap();
    assert_eq!(envs.len(), 1, "{envs:?}");
    assert_eq!(envs[0].name, "exp-a");
    assert_eq!(envs[0].source, "prod");
    assert_eq!(envs[0].owner.as_deref(), Some("alice"));
    assert!(envs[0].expired(chrono::Utc::now()));

    // Refused: an environment envclone did not create.
    let err = s.engine.destroyable("prod").await.unwrap_err().to_string();
    assert!(err.contains("not created by envclone"), "{err}");
    let err = s.engine.destroyable("nope").await.unwrap_err().to_string();
    assert!(err.contains("not found"), "{err}");

    let target = s.engine.destroyable("exp-a").await.unwrap();
    let (removed, left) = s.engine.destroy(&target, &s.emitter).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(removed.iter().any(|r| r == "stack exp-a"), "{removed:?}");
    assert!(
        removed
            .iter()
            .any(|r| r == "bucket exp-a-reports-123456789012"),
        "{removed:?}"
    );
    assert_eq!(s.fake.live_stack_names(), vec!["prod".to_string()]);
    assert!(
        s.fake.snapshot_ids().is_empty(),
        "{:?}",
        s.fake.snapshot_ids()
    );
    assert!(!s.fake.bucket_names().iter().any(|b| b.starts_with("exp-a")));
    assert!(s.engine.list_environments().await.unwrap().is_empty());
}
