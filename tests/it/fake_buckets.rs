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
