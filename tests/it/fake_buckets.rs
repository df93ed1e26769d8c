//! Buckets on the fake (issue 11): versioned buckets emptied whole by abort and destroy
//! (item 6), archived objects refused or skipped (item 7), the configuration of the buckets
//! envclone creates (item 9).

use std::collections::BTreeMap;

use envclone::fake::FakeBucketConfig;
use envclone::fake::MemoryRunStore;
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

/// The policy a production bucket commonly has: the application's role reads and writes the
/// bucket's objects, and a statement naming another bucket whose name starts the same.
fn reports_policy(bucket: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::123456789012:role/app"}},"Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::{bucket}/*"}},{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::123456789012:role/app"}},"Action":"s3:ListBucket","Resource":"arn:aws:s3:::{bucket}"}},{{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::{bucket}-logs/*"}}]}}"#
    )
}

fn warnings(s: &Scenario) -> Vec<String> {
    s.events
        .events()
        .into_iter()
        .filter(|e| e.phase == envclone::events::Phase::Warning)
        .map(|e| e.message)
        .collect()
}

// Issue 11 item 9. Before the fix the bucket envclone creates for a bucket passed by parameter
// had none of its source's configuration: unversioned, S3's default encryption, public access
// block and ownership, no CORS, no lifecycle, only envclone's tags and no policy; and nothing
// said that the source's notifications and replication were not there.
#[tokio::test(start_paused = true)]
async fn a_created_bucket_gets_its_sources_configuration_and_the_rest_is_reported() {
    let s = Scenario::with_webapp_prod();
    s.fake.enable_versioning(REPORTS);
    let source = FakeBucketConfig {
        encryption: Some("aws:kms arn:aws:kms:us-east-1:123456789012:key/1234abcd".into()),
        public_access_block: Some([true, true, false, false]),
        ownership: Some("BucketOwnerPreferred".into()),
        cors: Some("GET,PUT from https://app.example.com".into()),
        lifecycle: Some("expire tmp/ after 7 days".into()),
        policy: Some(reports_policy(REPORTS)),
        notifications: Some(
            "s3:ObjectCreated:* -> arn:aws:sqs:us-east-1:123456789012:ingest".into(),
        ),
        replication: Some("* -> arn:aws:s3:::prod-reports-dr".into()),
    };
    s.fake.set_bucket_config(REPORTS, source.clone());
    s.fake.set_bucket_tags(
        REPORTS,
        BTreeMap::from([
            ("team".to_string(), "reporting".to_string()),
            ("envclone:run".to_string(), "not-this-run".to_string()),
            (
                "aws:cloudformation:stack-name".to_string(),
                "prod".to_string(),
            ),
        ]),
    );

    clone_to_end(&s, &MemoryRunStore::default(), "staging-test").await;

    let target = "staging-test-reports-123456789012";
    assert!(s.fake.versioning_enabled(target), "versioning carried");
    let got = s.fake.bucket_config(target);
    assert_eq!(
        got,
        FakeBucketConfig {
            // The other bucket (`…-logs`) keeps its name.
            policy: Some(
                reports_policy(target)
                    .replace(&format!("{target}-logs"), &format!("{REPORTS}-logs"))
            ),
            notifications: None,
            replication: None,
            ..source.clone()
        }
    );
    // The rewritten policy names the new bucket, and leaves the other bucket alone.
    let policy = got.policy.unwrap();
    assert!(
        policy.contains(&format!("arn:aws:s3:::{REPORTS}-logs/*")),
        "{policy}"
    );
    assert!(
        !policy.contains(&format!("arn:aws:s3:::{REPORTS}\"")),
        "{policy}"
    );
    assert!(
        !policy.contains(&format!("arn:aws:s3:::{REPORTS}/")),
        "{policy}"
    );
    let tags = s.fake.bucket_tags_now(target);
    assert_eq!(tags.get("team").map(String::as_str), Some("reporting"));
    assert_eq!(
        tags.get("envclone:run").map(String::as_str),
        Some(run_id().to_string().as_str()),
        "envclone's own tags win"
    );
    assert!(
        !tags.keys().any(|k| k.starts_with("aws:")),
        "S3 reserves aws: tags: {tags:?}"
    );
    let warned = warnings(&s);
    for what in ["event notifications", "replication"] {
        assert!(
            warned.iter().any(|w| w.contains(&format!(
                "not carried from bucket {REPORTS} to bucket {target}: {what}"
            )) && w.contains(&format!("configure {target}'s own"))),
            "{what} reported: {warned:#?}"
        );
    }
    // The source is left as it was.
    assert_eq!(s.fake.bucket_config(REPORTS), source);
}

// Issue 11 item 9 through migrate: the bucket the live environment uses after the swap has its
// source's configuration, and what S3 refuses is said, not lost silently. Here an older source
// bucket has no public access block and a public-read policy: the new bucket blocks public
// policies (S3's default since April 2023), so S3 refuses the policy and the run says so.
// Before the fix the migrated environment's bucket had no lifecycle and nothing was reported.
#[tokio::test(start_paused = true)]
async fn after_a_migrate_the_live_bucket_has_the_configuration_or_a_warning() {
    let (s, _record) = crate::fake_migrate::prod().await;
    let public = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::{REPORTS}/*"}}]}}"#
    );
    s.fake.set_bucket_config(
        REPORTS,
        FakeBucketConfig {
            lifecycle: Some("transition to GLACIER after 90 days".into()),
            policy: Some(public),
            ..Default::default()
        },
    );
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight_migrate(&crate::fake_migrate::request(), run_id())
        .await
        .unwrap();
    s.engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("migrate failed: {}", f.error));
    let live: Vec<String> = s
        .fake
        .bucket_names()
        .into_iter()
        .filter(|b| b.contains("reports") && b != REPORTS)
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
    let target = &live[0];
    let got = s.fake.bucket_config(target);
    assert_eq!(
        got.lifecycle.as_deref(),
        Some("transition to GLACIER after 90 days")
    );
    assert_eq!(got.policy, None, "S3 refused the public policy");
    assert_eq!(
        got.public_access_block,
        Some([true; 4]),
        "S3's default kept"
    );
    let warned = warnings(&s);
    assert!(
        warned.iter().any(|w| w.contains(&format!(
            "not carried from bucket {REPORTS} to bucket {target}: bucket policy"
        )) && w.contains("blocks public policies")),
        "{warned:#?}"
    );
}
