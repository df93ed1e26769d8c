//! Buckets on the fake (issue 11): versioned buckets emptied whole by abort and destroy
//! (item 6), archived objects refused or skipped (item 7).

use envclone::journal::MemoryRunStore;
use envclone::ports::ObjectHead;
use envclone::workflow::recovery::{self, ClonePhase};

use crate::support::*;

/// The buckets whose names start with `prefix`.
fn buckets_of(s: &Scenario, prefix: &str) -> Vec<String> {
    s.fake
        .bucket_names()
        .into_iter()
        .filter(|b| b.starts_with(prefix))
        .collect()
}

/// What an application does to a bucket that has versioning (turned on by it, by the
/// operator, or carried over from a versioned source): overwrites keep the old versions,
/// deletes leave delete markers.
async fn use_as_versioned(s: &Scenario, bucket: &str) {
    s.fake.enable_versioning(bucket);
    for round in 0..3 {
        s.fake.put_object(
            bucket,
            "data/000.bin",
            format!("overwritten {round}").as_bytes(),
            ObjectHead::default(),
            &[],
        );
    }
    s.fake
        .put_object(bucket, "app/new.txt", b"new", ObjectHead::default(), &[]);
    let objects = s.fake.cloud().objects;
    objects.delete_object(bucket, "data/001.bin").await.unwrap();
    objects
        .delete_objects(bucket, &["empty".to_string(), "app/new.txt".to_string()])
        .await
        .unwrap();
    let versions = s.fake.object_versions(bucket);
    assert!(
        versions.iter().filter(|v| v.delete_marker).count() >= 3
            && versions
                .iter()
                .any(|v| v.key == "data/000.bin" && v.version_id == "null"),
        "{bucket}: the fake keeps versions and delete markers: {versions:?}"
    );
}

// Issue 11 item 6. Before the fix, destroy emptied buckets with ListObjectsV2 +
// DeleteObjects without version ids: the noncurrent versions and the delete markers stayed,
// DeleteBucket answered BucketNotEmpty, and the environment's buckets were left behind.
#[tokio::test(start_paused = true)]
async fn destroy_empties_versioned_clone_buckets_of_every_version_and_delete_marker() {
    let s = Scenario::with_webapp_prod();
    let store = MemoryRunStore::default();
    clone_to_end(&s, &store, "exp-a").await;
    let buckets = buckets_of(&s, "exp-a");
    assert_eq!(
        buckets.len(),
        2,
        "the created bucket and the stack's own: {buckets:?}"
    );
    for b in &buckets {
        use_as_versioned(&s, b).await;
    }

    let target = s.engine.destroyable("exp-a").await.unwrap();
    let (removed, left) = s.engine.destroy(&target, &s.emitter).await.unwrap();
    assert!(left.is_empty(), "left: {left:?} (removed {removed:?})");
    assert!(removed.iter().any(|r| r == "stack exp-a"), "{removed:?}");
    assert!(
        buckets_of(&s, "exp-a").is_empty(),
        "{:?}",
        buckets_of(&s, "exp-a")
    );
    assert_eq!(s.fake.live_stack_names(), vec!["prod".to_string()]);
    // The source's data untouched.
    assert_eq!(s.fake.object_keys(REPORTS).len(), TRICKY_KEYS.len() + 43);
}

// Issue 11 item 6, through abort of an interrupted run (the same emptying as destroy and gc).
// Before the fix the abort failed: the stack's versioned bucket could not be deleted.
#[tokio::test(start_paused = true)]
async fn abort_empties_versioned_clone_buckets_whole() {
    // Where an uninterrupted run creates its stack: crash right after it, buckets copied.
    let s = Scenario::with_webapp_prod();
    clone_to_end(&s, &MemoryRunStore::default(), "staging-test").await;
    let calls = s.fake.mutating_calls();
    let n = calls
        .iter()
        .rposition(|c| c == "s3:CopyObject")
        .expect("the run copies objects") as u64
        + 1;

    let s = Scenario::with_webapp_prod();
    let store = MemoryRunStore::default();
    assert!(crash_at(&s, &store, n).await, "crashed after call {n}");
    let buckets = buckets_of(&s, "staging-test");
    assert_eq!(buckets.len(), 2, "{buckets:?}");
    for b in &buckets {
        use_as_versioned(&s, b).await;
    }
    let mut record = recovery::load(&store, "20261121000000-beef")
        .unwrap()
        .unwrap();
    let removed = s
        .engine
        .abort_clone(&mut record, &store, &s.emitter, false)
        .await
        .unwrap_or_else(|e| panic!("abort failed: {e}"));
    assert_eq!(record.phase, ClonePhase::Aborted);
    assert!(
        buckets_of(&s, "staging-test").is_empty(),
        "left {:?} (removed {removed:?})",
        buckets_of(&s, "staging-test")
    );
    assert_eq!(s.fake.live_stack_names(), vec!["prod".to_string()]);
    assert_source_in_service(&s, "abort");
}

// The fake as AWS documents DeleteBucket and versioning: a bucket with only delete markers is
// not empty, and deleting a current version by id brings back the previous one.
#[tokio::test(start_paused = true)]
async fn the_fake_models_versioned_deletes_as_s3_does() {
    let s = Scenario::new(timings());
    s.fake.create_bucket_now("b");
    s.fake.enable_versioning("b");
    s.fake
        .put_object("b", "k", b"one", ObjectHead::default(), &[]);
    s.fake
        .put_object("b", "k", b"two", ObjectHead::default(), &[]);
    let objects = s.fake.cloud().objects;
    let versions = objects
        .list_versions_page("b", None)
        .await
        .unwrap()
        .versions;
    assert_eq!(versions.len(), 2);
    objects.delete_versions("b", &versions[..1]).await.unwrap();
    assert_eq!(s.fake.object("b", "k").unwrap().data.as_slice(), b"one");
    objects.delete_object("b", "k").await.unwrap();
    assert!(s.fake.object("b", "k").is_none());
    let err = objects.delete_bucket("b").await.unwrap_err().to_string();
    assert!(err.contains("BucketNotEmpty"), "{err}");
    assert_eq!(
        envclone::s3sync::empty_bucket(objects.as_ref(), "b")
            .await
            .unwrap(),
        2,
        "one version and one delete marker"
    );
    objects.delete_bucket("b").await.unwrap();
}

/// Puts archived objects into the source buckets: two in S3 Glacier Flexible Retrieval and one
/// in Deep Archive in `REPORTS`, one in Glacier Instant Retrieval (copyable) in `UPLOADS`.
fn archive_some(s: &Scenario) {
    let class = |c: &str| ObjectHead {
        storage_class: Some(c.into()),
        ..Default::default()
    };
    s.fake.put_object(
        REPORTS,
        "archive/2019.csv",
        &[7u8; 300],
        class("GLACIER"),
        &[],
    );
    s.fake.put_object(
        REPORTS,
        "archive/2020.csv",
        &[8u8; 200],
        class("GLACIER"),
        &[],
    );
    s.fake.put_object(
        REPORTS,
        "archive/2018.csv",
        &[9u8; 50],
        class("DEEP_ARCHIVE"),
        &[],
    );
    s.fake.put_object(
        UPLOADS,
        "instant/ir.bin",
        &[1u8; 10],
        class("GLACIER_IR"),
        &[],
    );
}

// Issue 11 item 7. Before the fix preflight passed, and the clone failed in the middle of
// Standby on CopyObject's InvalidObjectState.
#[tokio::test(start_paused = true)]
async fn preflight_refuses_archived_objects_naming_bucket_count_and_bytes_before_any_change() {
    let s = Scenario::with_webapp_prod();
    archive_some(&s);
    let err = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap_err();
    let message = err.to_string();
    for expected in [
        format!("s3://{REPORTS}: 3 archived object(s), 550 bytes"),
        "1 DEEP_ARCHIVE, 2 GLACIER".to_string(),
        "--skip-archived".to_string(),
        "nothing was changed".to_string(),
    ] {
        assert!(message.contains(&expected), "{expected:?} in {message}");
    }
    // Glacier Instant Retrieval is copyable: not named.
    assert!(!message.contains(UPLOADS), "{message}");
    assert!(
        matches!(
            err,
            envclone::workflow::PreflightError::ArchivedObjects { .. }
        ),
        "{err:?}"
    );
    assert!(
        s.fake.mutating_calls().is_empty(),
        "{:?}",
        s.fake.mutating_calls()
    );
}

// Issue 11 item 7: with --skip-archived the clone leaves them out, verifies (saying so), and
// reports the keys.
#[tokio::test(start_paused = true)]
async fn skip_archived_clones_without_them_verifies_and_reports_the_keys() {
    let mut s = Scenario::with_webapp_prod();
    archive_some(&s);
    // A restored archived object is copyable: neither refused nor left out.
    s.fake.put_object(
        REPORTS,
        "archive/restored.csv",
        b"back",
        ObjectHead {
            storage_class: Some("GLACIER".into()),
            ..Default::default()
        },
        &[],
    );
    s.fake.restore_object_now(REPORTS, "archive/restored.csv");
    s.engine.settings.sync.skip_archived = true;
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap();
    let step = format!(
        "copy the objects of bucket {REPORTS} into staging-test-reports-123456789012 \
         (server-side; current versions only; leaving out 3 archived object(s), 550 bytes \
         (--skip-archived))"
    );
    assert!(
        plan.steps().iter().any(|s| s.contains(&step)),
        "{:#?}",
        plan.steps()
    );
    let report = clone_to_end(&s, &MemoryRunStore::default(), "staging-test").await;
    assert!(
        report.verification.iter().all(|c| c.ok),
        "{:#?}",
        report.verification
    );
    let target = "staging-test-reports-123456789012";
    let check = report
        .verification
        .iter()
        .find(|c| c.check == format!("bucket {target} = {REPORTS}"))
        .expect("the bucket is verified");
    assert!(
        check
            .detail
            .contains("3 archived object(s) not compared (left out by --skip-archived)"),
        "{}",
        check.detail
    );
    let outcome = report
        .buckets
        .iter()
        .find(|b| b.target == target)
        .expect("copied");
    let mut skipped: Vec<String> = outcome.stats.skipped_archived_keys.clone();
    skipped.extend(
        outcome
            .precopy
            .iter()
            .flat_map(|p| p.skipped_archived_keys.clone()),
    );
    skipped.sort();
    skipped.dedup();
    assert_eq!(
        skipped,
        vec!["archive/2018.csv", "archive/2019.csv", "archive/2020.csv"]
    );
    assert_eq!(outcome.stats.skipped_archived, 3);
    assert_eq!(outcome.stats.skipped_archived_bytes, 550);
    let keys = s.fake.object_keys(target);
    let archive: Vec<&String> = keys.iter().filter(|k| k.starts_with("archive/")).collect();
    assert_eq!(archive, vec!["archive/restored.csv"], "{keys:?}");
    assert_eq!(keys.len(), TRICKY_KEYS.len() + 44);
    // Glacier Instant Retrieval was copied, class kept.
    let uploads = s
        .fake
        .bucket_names()
        .into_iter()
        .find(|b| b.starts_with("staging-test-uploads"))
        .expect("the stack's bucket");
    assert_eq!(
        s.fake
            .object(&uploads, "instant/ir.bin")
            .expect("copied")
            .head
            .storage_class
            .as_deref(),
        Some("GLACIER_IR")
    );
}

// Issue 11 item 7 through migrate: preflight refuses the same way; with --skip-archived the
// migration swaps and finalize's re-verification does not stop on the objects left out (they
// stay in the source bucket, which finalize never empties).
#[tokio::test(start_paused = true)]
async fn migrate_refuses_archived_objects_or_leaves_them_out_through_finalize() {
    let (mut s, _record) = crate::fake_migrate::prod().await;
    archive_some(&s);
    let before = s.fake.mutating_calls().len();
    let Err(err) = s
        .engine
        .preflight_migrate(&crate::fake_migrate::request(), run_id())
        .await
    else {
        panic!("preflight passed with archived objects in {REPORTS}");
    };
    assert!(
        err.to_string()
            .contains(&format!("s3://{REPORTS}: 3 archived object(s), 550 bytes")),
        "{err}"
    );
    assert_eq!(s.fake.mutating_calls().len(), before, "nothing changed");

    s.engine.settings.sync.skip_archived = true;
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight_migrate(&crate::fake_migrate::request(), run_id())
        .await
        .unwrap();
    let mut state = s
        .engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("migrate failed: {}", f.error));
    // Finalize is another invocation: the choice comes from the run's record.
    s.engine.settings.sync.skip_archived = false;
    s.engine
        .finalize(&mut state, &store, &s.emitter)
        .await
        .unwrap_or_else(|e| panic!("finalize: {e}"));
    assert_eq!(
        state.phase,
        envclone::workflow::migrate::MigratePhase::Finalized
    );
    for key in ["archive/2018.csv", "archive/2019.csv", "archive/2020.csv"] {
        assert!(s.fake.object(REPORTS, key).is_some(), "{key} kept");
    }
}
