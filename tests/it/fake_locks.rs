//! The environment lock with a run on the fake (issue 10 item 7): a run that finds it has lost
//! its lock stops before its next change, the way Ctrl-C stops it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use envclone::fake::{FakeAws, Timings};
use envclone::journal::MemoryRunStore;
use envclone::lock::{acquire, hold, LockOwner, S3Locks, HEARTBEAT_EVERY};
use envclone::workflow::recovery::{self, ClonePhase};

use crate::support::{assert_source_in_service, run_id, Scenario};

const STATE: &str = "envclone-state";

/// Another machine breaks the lock (`--break-lock`) while the clone copies. Fails before the
/// fix: the renewal failure was only printed, and the clone went on making changes — taking
/// snapshots, creating the stack — while another run held the environment.
#[tokio::test(start_paused = true)]
async fn a_clone_that_loses_its_lock_stops_before_its_next_change() {
    for steal_after in [30u64, 400] {
        let s = Scenario::with_webapp_prod();
        // The lock lives in S3 (`--state s3://envclone-state/team`), on a fake of its own so
        // that its calls are not the run's.
        let state = FakeAws::new(Timings::default());
        state.create_bucket_now(STATE);
        let objects = state.cloud().objects;
        let locks = Arc::new(S3Locks {
            objects: objects.clone(),
            bucket: STATE.into(),
            prefix: "team".into(),
        });
        let plan = s
            .engine
            .preflight(&s.request("staging-test"), run_id())
            .await
            .unwrap();
        let held = hold(
            acquire(
                locks,
                "prod",
                LockOwner::new(run_id().as_str(), "clone"),
                false,
            )
            .await
            .unwrap(),
            |_| {},
        );
        // The fake's clock reading now (its last call was the end of preflight).
        let epoch = s.fake.calls().last().map(|c| c.at).unwrap_or_default();
        let start = tokio::time::Instant::now();

        let mut thief = LockOwner::new("20261121000500-f00d", "clone");
        thief.host = "machine-b".into();
        let steal = async {
            tokio::time::sleep(Duration::from_secs(steal_after)).await;
            objects
                .put_small_object(
                    STATE,
                    "team/locks/prod.json",
                    serde_json::to_vec(&thief).unwrap(),
                    None,
                )
                .await
                .unwrap();
        };
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
