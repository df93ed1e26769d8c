//! Issue 13 after the window: `envclone verify` compares a clone with its source as of the
//! run's T; a bucket whose versioning is suspended after preflight is refused by the as-of
//! copy; a resume after the window ended refuses when a copy made inside it cannot be made
//! again as of T.

use std::time::Duration;

use envclone::events::Phase;
use envclone::fake::MemoryRunStore;
use envclone::ports::ObjectHead;
use envclone::workflow::recovery;

use crate::fake_window::{big, first_call, prod};
use crate::support::*;

const RUN: &str = "20261121000000-beef";
const TARGET_REPORTS: &str = "staging-test-reports-123456789012";

/// Overwrites one key, creates one and deletes one in `bucket` (the source serves again).
async fn write_after_t(s: &Scenario, bucket: &str) {
    s.fake.put_object(
        bucket,
        "a+b.txt",
        b"written after T",
        ObjectHead::default(),
        &[],
    );
    s.fake.put_object(
        bucket,
        "created-after-t",
        b"new",
        ObjectHead::default(),
        &[],
    );
    s.fake
        .cloud()
        .objects
        .delete_object(bucket, "with space.txt")
        .await
        .unwrap();
}

/// The versions and delete markers of `key`, newest first.
fn versions_of(s: &Scenario, bucket: &str, key: &str) -> Vec<envclone::ports::ObjectVersion> {
    s.fake
        .object_versions(bucket)
        .into_iter()
        .filter(|v| v.key == key)
        .collect()
}

/// `envclone abort` of the run, which leaves nothing of it behind.
async fn abort_leaves_nothing(s: &Scenario, store: &MemoryRunStore, context: &str) {
    let mut record = recovery::load(store, RUN).unwrap().expect("recorded");
    s.engine
        .abort_clone(&mut record, store, &s.emitter, false)
        .await
        .unwrap();
    crate::fake_recovery::assert_nothing_of_the_run_left(s, context);
}

fn bucket_check<'a>(
    checks: &'a [envclone::workflow::clone::CheckResult],
    target: &str,
) -> &'a envclone::workflow::clone::CheckResult {
    checks
        .iter()
        .find(|c| c.check.starts_with(&format!("bucket {target} = ")))
        .unwrap_or_else(|| panic!("no check of {target}: {checks:#?}"))
}

/// Issue 13, "`verify` compares a clone with its source as of T (versions ≤ T), so later
/// writes to the source do not fail it". Fails before the fix: the standalone `verify`
/// compared every bucket with its source as it is now (`verify_env`, kept as the comparison
/// without a run record, shows it), so an overwrite, a delete and a create in the source
/// after T each failed it. A real difference in the clone is still caught.
#[tokio::test(start_paused = true)]
async fn verify_compares_versioned_buckets_as_of_the_runs_t() {
    let s = prod(big(40), true, 0);
    let store = MemoryRunStore::default();
    let report = clone_to_end(&s, &store, "staging-test").await;
    let t = report.window.as_ref().expect("window").t;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    for b in [REPORTS, UPLOADS] {
        write_after_t(&s, b).await;
    }
    // Without the run's T: the source as it is now, every bucket differs.
    let (now, _) = s.engine.verify_env("staging-test", None).await.unwrap();
    for b in &report.buckets {
        assert!(!bucket_check(&now, &b.target).ok, "{now:#?}");
    }

    let v = s
        .engine
        .verify_env_with("staging-test", None, Some(&store))
        .await
        .unwrap();
    assert!(v.checks.iter().all(|c| c.ok), "{:#?}", v.checks);
    let stamp = t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for b in &report.buckets {
        let check = bucket_check(&v.checks, &b.target);
        assert!(
            check.detail.contains(&format!("source as of {stamp}")),
            "{check:?}"
        );
    }
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains(&stamp) && n.contains(REPORTS) && n.contains(UPLOADS)),
        "{:?}",
        v.notes
    );

    // A difference made in the clone itself fails it: an overwrite in one, a delete in the
    // other.
    let (first, second) = (&report.buckets[0].target, &report.buckets[1].target);
    s.fake.put_object(
        first,
        "100%.txt",
        b"changed in the clone",
        ObjectHead::default(),
        &[],
    );
    s.fake
        .cloud()
        .objects
        .delete_object(second, "hash#tag.txt")
        .await
        .unwrap();
    let v = s
        .engine
        .verify_env_with("staging-test", None, Some(&store))
        .await
        .unwrap();
    let c = bucket_check(&v.checks, first);
    assert!(!c.ok && c.detail.contains("100%.txt"), "{c:?}");
    let c = bucket_check(&v.checks, second);
    assert!(!c.ok && c.detail.contains("hash#tag.txt"), "{c:?}");
}

/// A bucket that kept no versions when the run was planned was copied inside the window: the
/// standalone `verify` compares it with the source as it is now (as before), and says so; the
/// versioned one is still compared as of T.
#[tokio::test(start_paused = true)]
async fn verify_compares_an_unversioned_bucket_as_it_is_now_and_says_so() {
    let s = prod(big(40), false, 0);
    let store = MemoryRunStore::default();
    let report = clone_to_end(&s, &store, "staging-test").await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    for b in [REPORTS, UPLOADS] {
        write_after_t(&s, b).await;
    }
    let v = s
        .engine
        .verify_env_with("staging-test", None, Some(&store))
        .await
        .unwrap();
    let reports = bucket_check(&v.checks, TARGET_REPORTS);
    assert!(
        !reports.ok && !reports.detail.contains("as of"),
        "{reports:?}"
    );
    let uploads = report
        .buckets
        .iter()
        .find(|b| b.source == UPLOADS)
        .expect("uploads copied");
    assert!(
        bucket_check(&v.checks, &uploads.target).ok,
        "{:#?}",
        v.checks
    );
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains(REPORTS) && n.contains("kept no versions")),
        "{:?}",
        v.notes
    );
    // Against another environment than the run's source: as it is now, said so.
    let fresh = MemoryRunStore::default();
    let v = s
        .engine
        .verify_env_with("staging-test", None, Some(&fresh))
        .await
        .unwrap();
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains(&format!("no record of run {RUN}"))),
        "{:?}",
        v.notes
    );
    assert!(!bucket_check(&v.checks, &uploads.target).ok);
}

/// The fake's versioning-suspended bucket, as S3 documents it ("Working with objects in a
/// versioning-suspended bucket"): GetBucketVersioning says Suspended; a write keeps a current
/// version that has an id as a noncurrent one, and replaces the key's `null` version.
#[tokio::test(start_paused = true)]
async fn the_fake_models_a_versioning_suspended_bucket() {
    let s = prod(timings(), true, 0);
    let objects = s.fake.cloud().objects;
    s.fake
        .put_object(UPLOADS, "k", b"v1", ObjectHead::default(), &[]);
    s.fake.suspend_versioning(UPLOADS);
    assert_eq!(
        objects.versioning(UPLOADS).await.unwrap().as_deref(),
        Some("Suspended")
    );
    s.fake
        .put_object(UPLOADS, "k", b"v2", ObjectHead::default(), &[]);
    s.fake
        .put_object(UPLOADS, "k", b"v3", ObjectHead::default(), &[]);
    let of_k = versions_of(&s, UPLOADS, "k");
    assert_eq!(of_k.len(), 2, "v1 kept, v2 replaced by v3: {of_k:?}");
    assert_eq!(of_k[0].version_id, "null");
    assert!(of_k[0].is_latest);
    assert_ne!(of_k[1].version_id, "null");
    assert_eq!(s.fake.object(UPLOADS, "k").unwrap().data.as_slice(), b"v3");
    // A delete adds a `null` delete marker, replacing the `null` version v3.
    objects.delete_object(UPLOADS, "k").await.unwrap();
    let of_k = versions_of(&s, UPLOADS, "k");
    assert_eq!(of_k.len(), 2, "{of_k:?}");
    assert!(of_k[0].delete_marker && of_k[0].version_id == "null");
    assert!(s.fake.object(UPLOADS, "k").is_none());
}

/// Issue 13, "versioning re-checked at copy time": a bucket versioned at preflight whose
/// versioning is suspended before its as-of copy is refused with what was expected, what was
/// found and what to do — not copied as of now. Fails before the fix (run with the re-check
/// skipped): the copy stopped on `s3 sync --as-of`'s own refusal, which names no abort and
/// says to copy "without --as-of", an option a clone does not have.
#[tokio::test(start_paused = true)]
async fn a_bucket_suspended_after_preflight_is_refused_by_the_as_of_copy() {
    let s = prod(big(40), true, 0);
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap();
    assert!(
        plan.buckets.iter().all(|b| b.versioned),
        "{:?}",
        plan.buckets
    );
    s.fake.suspend_versioning(UPLOADS);
    let failure = s
        .engine
        .run_clone(&plan, &store, &s.emitter, std::future::pending(), None)
        .await
        .expect_err("refused");
    let message = failure.error.to_string();
    for needle in [
        format!("bucket {UPLOADS} cannot be copied as of T"),
        "Enabled".to_string(),
        "now versioning Suspended".to_string(),
        format!("envclone abort {RUN}"),
        "put-bucket-versioning".to_string(),
    ] {
        assert!(message.contains(&needle), "{needle:?} not in: {message}");
    }
    assert!(failure.source_restored.is_ok());
    assert_source_in_service(&s, "refused as-of copy");
    // Nothing of UPLOADS was copied (as of now or otherwise).
    let copied: Vec<_> = s
        .events
        .events()
        .into_iter()
        .filter(|e| e.step == "bucket.copy" && e.phase == Phase::Done)
        .filter(|e| e.resource.as_deref() != Some(TARGET_REPORTS))
        .collect();
    assert!(copied.is_empty(), "{copied:?}");
    abort_leaves_nothing(&s, &store, "abort after the refusal").await;
}

/// Issue 13: a resume after the window ended, when a bucket that keeps no versions was copied
/// inside it, refuses (that copy cannot be made again as of T from a source serving since)
/// and says to abort; the abort it names leaves nothing of the run.
#[tokio::test(start_paused = true)]
async fn a_resume_after_the_window_with_an_unversioned_copy_refuses_and_says_to_abort() {
    let timings = || big(10);
    let s = prod(timings(), false, 0);
    clone_to_end(&s, &MemoryRunStore::default(), "staging-test").await;
    let mutating = s.fake.mutating_calls();
    let exit = mutating
        .iter()
        .position(|c| c == "autoscaling:ExitStandby")
        .expect("exited") as u64
        + 1;
    // The first crash after which the record says the window ended.
    let mut found = None;
    for n in exit..=mutating.len() as u64 {
        let s = prod(timings(), false, 0);
        let store = MemoryRunStore::default();
        assert!(crash_at(&s, &store, n).await, "call {n} happened");
        let record = recovery::load(&store, RUN).unwrap().expect("recorded");
        if record.window.is_some_and(|w| w.ended.is_some()) {
            found = Some((s, store, record));
            break;
        }
    }
    let (s, store, record) = found.expect("a crash after the window's end was recorded");
    assert!(first_call(&s, "autoscaling:ExitStandby").is_some());
    let failure = s
        .engine
        .resume_clone(record, &store, &s.emitter, std::future::pending())
        .await
        .expect_err("refused");
    let message = failure.error.to_string();
    for needle in [
        "cannot be made again as of T",
        REPORTS,
        &format!("envclone abort {RUN}"),
    ] {
        assert!(message.contains(needle), "{needle:?} not in: {message}");
    }
    let enters = s
        .fake
        .calls()
        .iter()
        .filter(|c| c.operation == "autoscaling:EnterStandby")
        .count();
    assert_eq!(
        enters, 1,
        "the resume did not put the source into Standby again"
    );
    assert_source_in_service(&s, "refused resume");
    abort_leaves_nothing(&s, &store, "abort after the refused resume").await;
}
