//! The environment lock with a run on the fake (issue 10 item 7): a run that finds it has lost
//! its lock stops before its next change, the way Ctrl-C stops it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use envclone::fake::MemoryRunStore;
use envclone::fake::{FakeAws, FakeClock, Timings};
use envclone::lock::{acquire, hold, HeldLock, LockOwner, S3Locks, HEARTBEAT_EVERY};
use envclone::ports::{Clock, ObjectStore};
use envclone::workflow::migrate::MigratePhase;
use envclone::workflow::recovery::{self, ClonePhase};

use crate::support::*;

const STATE: &str = "envclone-state";

/// Another machine breaks the lock (`--break-lock`) while the clone copies. Fails before the
/// fix: the renewal failure was only printed, and the clone went on making changes — taking
/// snapshots, creating the stack — while another run held the environment.
#[tokio::test(start_paused = true)]
async fn a_clone_that_loses_its_lock_stops_before_its_next_change() {
    for steal_after in [30u64, 400] {
        let s = Scenario::with_webapp_prod();
        let plan = s
            .engine
            .preflight(&s.request("staging-test"), run_id())
            .await
            .unwrap();
        let (held, objects, steal) =
            lock_in_s3("prod", "clone", Duration::from_secs(steal_after)).await;
        // The fake's clock reading now (its last call was the end of preflight).
        let epoch = s.fake.calls().last().map(|c| c.at).unwrap_or_default();
        let start = tokio::time::Instant::now();

        // When the renewal found the loss.
        let found = Arc::new(Mutex::new(None));
        let (lost, seen) = (held.lost(), found.clone());
        tokio::spawn(async move {
            let why = lost.await;
            *seen.lock().unwrap() = Some((start.elapsed(), why));
        });
        // What the app passes as the run's shutdown: Ctrl-C (never, here) or the lock lost.
        let lost = held.lost();
        let shutdown = async {
            lost.await;
        };
        let store = MemoryRunStore::default();
        let (outcome, ()) = tokio::join!(
            s.engine
                .run_clone(&plan, &store, &s.emitter, shutdown, None),
            steal
        );
        let context = format!("lock stolen at {steal_after}s");
        let failure = outcome.expect_err(&context);
        assert!(
            failure.error.to_string().contains("interrupted"),
            "{context}: {}",
            failure.error
        );
        assert_eq!(failure.source_restored, Ok(()), "{context}");
        assert_source_in_service(&s, &context);
        let (at, why) = found.lock().unwrap().clone().expect("the loss was found");
        assert!(
            why.contains("lost the lock of environment prod")
                && why.contains("now names run 20261121000500-f00d"),
            "{context}: {why}"
        );
        assert!(
            at >= Duration::from_secs(steal_after)
                && at <= Duration::from_secs(steal_after) + HEARTBEAT_EVERY,
            "{context}: found at the next renewal, not {at:?}"
        );
        // Once the loss is found no new change starts but returning the source to service:
        // the call in flight finishes, the next one is not made.
        let late: Vec<String> = s
            .fake
            .calls()
            .into_iter()
            .filter(|c| c.mutating && c.at > epoch + at)
            .map(|c| c.operation)
            .filter(|op| {
                ![
                    "autoscaling:ExitStandby",
                    "autoscaling:UpdateAutoScalingGroup",
                    "autoscaling:ResumeProcesses",
                    "s3:UploadPartCopy",
                    "s3:CompleteMultipartUpload",
                    "s3:AbortMultipartUpload",
                ]
                .contains(&op.as_str())
            })
            .collect();
        assert!(
            late.is_empty(),
            "{context}: changes after the loss: {late:?}"
        );
        let record = recovery::load(&store, run_id().as_str()).unwrap().unwrap();
        assert_eq!(record.phase, ClonePhase::Failed, "{context}");
        // Releasing leaves the new holder's lock alone.
        held.release().await.unwrap();
        let lock = objects
            .get_small_object(STATE, "team/locks/prod.json")
            .await
            .unwrap()
            .expect("the new holder's lock stays");
        let owner: LockOwner = serde_json::from_slice(&lock.body).unwrap();
        assert_eq!(owner.run_id, "20261121000500-f00d", "{context}");
    }
}

/// The lock of `env` taken by `command` of the fake scenarios' run, in S3
/// (`--state s3://envclone-state/team`) on a fake of its own so that its calls are not the
/// run's, and a future that breaks it for another machine's run after `after` (as
/// `--break-lock` there would).
async fn lock_in_s3(
    env: &'static str,
    command: &'static str,
    after: Duration,
) -> (
    HeldLock,
    Arc<dyn ObjectStore>,
    impl std::future::Future<Output = ()>,
) {
    let state = FakeAws::new(Timings::default());
    state.create_bucket_now(STATE);
    let objects = state.cloud().objects;
    let locks = Arc::new(S3Locks {
        objects: objects.clone(),
        bucket: STATE.into(),
        prefix: "team".into(),
    });
    let held = hold(
        acquire(
            locks,
            env,
            LockOwner::new(run_id().as_str(), "migrate", FakeClock.now()),
            false,
        )
        .await
        .unwrap(),
        |_| {},
    );
    let thief_objects = objects.clone();
    let steal = async move {
        tokio::time::sleep(after).await;
        let mut thief = LockOwner::new("20261121000500-f00d", command, FakeClock.now());
        thief.host = "machine-b".into();
        thief_objects
            .put_small_object(
                STATE,
                &format!("team/locks/{env}.json"),
                serde_json::to_vec(&thief).unwrap(),
                None,
            )
            .await
            .unwrap();
    };
    (held, objects, steal)
}

/// A migration that loses its lock while it clones stops there, as on Ctrl-C: nothing swapped,
/// the source as it was and back in service. Fails before the fix, like the clone's test.
#[tokio::test(start_paused = true)]
async fn a_migration_that_loses_its_lock_stops_and_leaves_the_source_as_it_was() {
    let (s, record) = crate::fake_migrate::prod().await;
    let request = crate::fake_migrate::request();
    let plan = s
        .engine
        .preflight_migrate(&request, run_id())
        .await
        .unwrap();
    let (held, _, steal) = lock_in_s3("prod", "migrate", Duration::from_secs(400)).await;
    let lost = held.lost();
    let store = MemoryRunStore::default();
    let (outcome, ()) = tokio::join!(
        s.engine.migrate(&plan, &store, &s.emitter, async {
            lost.await;
        }),
        steal
    );
    let failure = outcome.expect_err("the migration stops");
    assert!(
        failure.error.to_string().contains("interrupted"),
        "{}",
        failure.error
    );
    assert!(
        !matches!(
            failure.state.phase,
            MigratePhase::Swapping | MigratePhase::Swapped
        ),
        "{:?}",
        failure.state.phase
    );
    assert!(s.fake.db_ids().contains(&"prod-db".to_string()));
    assert_eq!(s.fake.db_restored_from("prod-db"), None, "the original");
    assert_eq!(
        s.fake
            .dns_records(crate::fake_migrate::ZONE, crate::fake_migrate::ENTRY),
        vec![record]
    );
    assert_source_in_service(&s, "lock lost while cloning");
    held.release().await.unwrap();
}
