//! `s3 sync --engine batch` on the in-memory fake (paused clock): the job copies what differs,
//! the local engine re-copies the tasks the completion report lists as failed and the objects
//! over the copy limit, the target is verified; a re-run after a crash finds the same job
//! (by the journal, by ListJobs) instead of creating a second one. Issue 14 part 1: before,
//! `--engine batch` refused to run, so each of these failed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use envclone::fake::batch::BATCH_COPY_LIMIT;
use envclone::fake::FakeAws;
use envclone::ports::batch::{BatchJobs, CopyJobRequest, JobStatus, ManifestFormat};
use envclone::ports::{InventoryConfiguration, ObjectHead, ObjectStore};
use envclone::s3batch::{self, BatchError, BatchEvent, BatchRequest, ManifestSource};
use envclone::s3sync::{BucketPath, SyncOptions};

use crate::support::{fill, timings};

const SRC: &str = "batch-source";
const DST: &str = "batch-target";
const REPORTS: &str = "batch-reports";
const ACCOUNT: &str = "123456789012";
/// Between the test objects: `large-single.bin` (12 KiB) is over it.
const LIMIT: u64 = 10 * 1024;
const FAILING: [&str; 3] = ["data/003.bin", "with space.txt", "日本語/ファイル.txt"];

fn setup() -> (FakeAws, Arc<dyn ObjectStore>, Arc<dyn BatchJobs>) {
    let fake = FakeAws::new(timings());
    for b in [SRC, DST, REPORTS] {
        fake.create_bucket_now(b);
    }
    fill(&fake, SRC);
    // Already there and equal: not in the manifest.
    fake.put_object(
        DST,
        "data/000.bin",
        b"payload 0",
        ObjectHead::default(),
        &[],
    );
    let store: Arc<dyn ObjectStore> = Arc::new(fake.clone());
    let jobs: Arc<dyn BatchJobs> = Arc::new(fake.clone());
    (fake, store, jobs)
}

fn request(copy_limit: u64) -> BatchRequest {
    BatchRequest {
        source: BucketPath::bucket(SRC),
        target: BucketPath::bucket(DST),
        options: SyncOptions {
            concurrency: 8,
            multipart_threshold: 8 * 1024,
            ..SyncOptions::default()
        },
        role_arn: format!("arn:aws:iam::{ACCOUNT}:role/batch-copy"),
        reports: BucketPath {
            bucket: REPORTS.into(),
            prefix: "envclone/".into(),
        },
        priority: 10,
        copy_limit,
        poll: Duration::from_secs(5),
        token_stem: None,
        manifest: ManifestSource::Diff,
    }
}

async fn run(
    store: &Arc<dyn ObjectStore>,
    jobs: &Arc<dyn BatchJobs>,
    r: &BatchRequest,
    events: &Arc<Mutex<Vec<BatchEvent>>>,
) -> Result<s3batch::BatchOutcome, BatchError> {
    let seen = events.clone();
    s3batch::run(
        store.clone(),
        jobs.clone(),
        r,
        // The fake's clock (tokio's, paused), as the run's clock port gives it.
        envclone::ports::Clock::now(&envclone::fake::FakeClock),
        &mut move |e| seen.lock().unwrap().push(e),
    )
    .await
}

fn sorted(keys: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    v.sort();
    v
}

#[tokio::test(start_paused = true)]
async fn the_job_copies_the_rest_is_recopied_locally_and_the_target_verifies() {
    let (fake, store, jobs) = setup();
    fake.fail_batch_tasks(SRC, &FAILING);
    fake.set_batch_copy_limit(LIMIT);
    let events = Arc::new(Mutex::new(Vec::new()));
    let outcome = run(&store, &jobs, &request(LIMIT), &events).await.unwrap();

    let source_objects = fake.object_keys(SRC).len() as u64;
    // Everything but the object already there and the one over the limit went to the job.
    assert_eq!(outcome.tasks, source_objects - 2);
    assert_eq!(outcome.job_failed, 3);
    assert_eq!(outcome.job_succeeded, source_objects - 2 - 3);
    assert_eq!(outcome.failed_keys, sorted(&FAILING));
    assert_eq!(outcome.over_limit, vec!["large-single.bin".to_string()]);
    // The local engine copied exactly the re-copy list.
    assert_eq!(s3batch::recopy_list(&outcome).len(), 4);
    assert_eq!(outcome.local.copied, 4);
    assert!(
        outcome.verification.is_equal(),
        "{:?}",
        outcome.verification.mismatches
    );
    assert_eq!(fake.object_keys(DST), fake.object_keys(SRC));
    let jobs_made = fake.batch_jobs();
    assert_eq!(jobs_made.len(), 1);
    assert_eq!(jobs_made[0].info.status, JobStatus::Complete);
    // The job's progress went through AWS's states, in order.
    let statuses: Vec<JobStatus> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            BatchEvent::Progress { status, .. } => Some(*status),
            _ => None,
        })
        .collect();
    let mut distinct = statuses.clone();
    distinct.dedup();
    assert_eq!(
        distinct,
        vec![
            JobStatus::New,
            JobStatus::Preparing,
            JobStatus::Ready,
            JobStatus::Active,
            JobStatus::Complete
        ]
    );
}

/// With AWS's limit in the engine, the object the (small-limit) job cannot copy fails its task
/// like a CopyObject over 5 GiB and is re-copied from the report.
#[tokio::test(start_paused = true)]
async fn an_object_the_job_refuses_as_too_large_is_recopied_from_the_report() {
    let (fake, store, jobs) = setup();
    fake.set_batch_copy_limit(LIMIT);
    let events = Arc::new(Mutex::new(Vec::new()));
    let outcome = run(&store, &jobs, &request(BATCH_COPY_LIMIT), &events)
        .await
        .unwrap();
    assert!(outcome.over_limit.is_empty());
    assert_eq!(outcome.failed_keys, vec!["large-single.bin".to_string()]);
    assert_eq!(outcome.local.copied, 1);
    assert!(outcome.verification.is_equal());
}

/// kill -9 during the job: the re-run reads the journal and follows the same job.
#[tokio::test(start_paused = true)]
async fn a_rerun_after_a_crash_follows_the_same_job() {
    let (fake, store, jobs) = setup();
    let events = Arc::new(Mutex::new(Vec::new()));
    let r = request(LIMIT);
    // The job takes minutes to start: the run is dropped while it waits.
    let crashed = tokio::time::timeout(Duration::from_secs(30), run(&store, &jobs, &r, &events));
    assert!(crashed.await.is_err(), "the run should still be waiting");
    let first = fake.batch_jobs()[0].info.id.clone();

    let outcome = run(&store, &jobs, &r, &events).await.unwrap();
    assert_eq!(outcome.job_id.as_deref(), Some(first.as_str()));
    assert_eq!(fake.batch_jobs().len(), 1);
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, BatchEvent::JobResumed { how: "journal", .. })));
    assert!(outcome.verification.is_equal());
    // Done: the next sync is a new run with a new job. Only the multipart object is in it:
    // the job's copy of it is single-part (S3PutObjectCopy is CopyObject), so its ETag differs
    // and, the source having no checksum, the diff cannot tell it unchanged without reading
    // it (the local engine never skips on a guess).
    let again = run(&store, &jobs, &r, &events).await.unwrap();
    assert_eq!(again.tasks, 1);
    assert_ne!(again.job_id.as_deref(), Some(first.as_str()));
    assert_eq!(fake.batch_jobs().len(), 2);
}

/// Killed between CreateJob and the journal's update: the re-run finds the job with ListJobs
/// by the run's client token.
#[tokio::test(start_paused = true)]
async fn a_job_the_journal_missed_is_found_by_its_client_token() {
    let (fake, store, jobs) = setup();
    let events = Arc::new(Mutex::new(Vec::new()));
    let r = request(LIMIT);
    let crashed = tokio::time::timeout(Duration::from_secs(30), run(&store, &jobs, &r, &events));
    assert!(crashed.await.is_err());
    // Rewrite the journal as it was before CreateJob answered.
    let journal_key = r.journal_key();
    let body = fake.object(REPORTS, &journal_key).unwrap().data;
    let mut journal: s3batch::Journal = serde_json::from_slice(&body).unwrap();
    journal.job_id = None;
    store
        .put_small_object(
            REPORTS,
            &journal_key,
            serde_json::to_vec(&journal).unwrap(),
            None,
        )
        .await
        .unwrap();

    let outcome = run(&store, &jobs, &r, &events).await.unwrap();
    assert_eq!(fake.batch_jobs().len(), 1);
    assert_eq!(outcome.job_id, Some(fake.batch_jobs()[0].info.id.clone()));
    assert!(events.lock().unwrap().iter().any(|e| matches!(
        e,
        BatchEvent::JobResumed {
            how: "ListJobs",
            ..
        }
    )));
}

/// CreateJob is idempotent on ClientRequestToken (the fake as AWS documents it).
#[tokio::test(start_paused = true)]
async fn create_job_with_the_same_token_gives_the_same_job() {
    let (fake, store, jobs) = setup();
    let etag = store
        .put_small_object(REPORTS, "m.csv", b"batch-source,empty\n".to_vec(), None)
        .await
        .unwrap();
    let create = CopyJobRequest {
        account_id: ACCOUNT.into(),
        client_token: "token-1".into(),
        description: "d".into(),
        role_arn: format!("arn:aws:iam::{ACCOUNT}:role/r"),
        priority: 1,
        manifest_bucket: REPORTS.into(),
        manifest_key: "m.csv".into(),
        manifest_etag: etag,
        version_ids: false,
        manifest_format: ManifestFormat::Csv,
        target_bucket: DST.into(),
        target_key_prefix: String::new(),
        report_bucket: REPORTS.into(),
        report_prefix: "r".into(),
    };
    let a = jobs.create_copy_job(&create).await.unwrap();
    let b = jobs.create_copy_job(&create).await.unwrap();
    assert_eq!(a, b);
    let other = jobs
        .create_copy_job(&CopyJobRequest {
            client_token: "token-2".into(),
            ..create
        })
        .await
        .unwrap();
    assert_ne!(a, other);
    assert_eq!(fake.batch_jobs().len(), 2);
}

/// A cancelled job is not taken over silently by the local engine: the run ends naming the
/// job, and the next run starts a new job.
#[tokio::test(start_paused = true)]
async fn a_job_that_ends_without_copying_ends_the_run_naming_it() {
    let (fake, store, jobs) = setup();
    let events = Arc::new(Mutex::new(Vec::new()));
    let r = request(LIMIT);
    let crashed = tokio::time::timeout(Duration::from_secs(10), run(&store, &jobs, &r, &events));
    assert!(crashed.await.is_err());
    let id = fake.batch_jobs()[0].info.id.clone();
    jobs.cancel_job(ACCOUNT, &id).await.unwrap();
    let error = run(&store, &jobs, &r, &events).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains(&id) && text.contains("Cancelled"), "{text}");
    // Nothing was copied: no task ran.
    assert_eq!(fake.object_keys(DST), vec!["data/000.bin".to_string()]);
    // A finished job cannot be cancelled again (JobStatusException).
    assert!(jobs.cancel_job(ACCOUNT, &id).await.is_err());
    let outcome = run(&store, &jobs, &r, &events).await.unwrap();
    assert_eq!(fake.batch_jobs().len(), 2);
    assert_ne!(outcome.job_id.as_deref(), Some(id.as_str()));
    assert!(outcome.verification.is_equal());
}

/// Past the failure threshold (over 50% of at least 1,000 tasks failed) the job fails with
/// tasks never attempted: the run ends naming the job and its reason instead of re-copying
/// the whole bucket on this machine.
#[tokio::test(start_paused = true)]
async fn a_job_failed_past_the_threshold_ends_the_run_with_its_reason() {
    let fake = FakeAws::new(timings());
    for b in [SRC, DST, REPORTS] {
        fake.create_bucket_now(b);
    }
    let keys: Vec<String> = (0..1500).map(|i| format!("k/{i:04}")).collect();
    for k in &keys {
        fake.put_object(SRC, k, k.as_bytes(), ObjectHead::default(), &[]);
    }
    let failing: Vec<&str> = keys
        .iter()
        .step_by(3)
        .chain(keys.iter().skip(1).step_by(3))
        .map(String::as_str)
        .collect();
    fake.fail_batch_tasks(SRC, &failing);
    let store: Arc<dyn ObjectStore> = Arc::new(fake.clone());
    let jobs: Arc<dyn BatchJobs> = Arc::new(fake.clone());
    let events = Arc::new(Mutex::new(Vec::new()));
    let error = run(&store, &jobs, &request(LIMIT), &events)
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("Failed") && text.contains("JobFailureThresholdExceeded"),
        "{text}"
    );
    let job = &fake.batch_jobs()[0].info;
    assert_eq!(job.status, JobStatus::Failed);
    assert!(job.succeeded + job.failed < 1500, "{job:?}");
}

/// Issue 13/14: `s3 sync --engine batch --as-of T` of a versioned source. The job's manifest
/// names each object's version at T (`Bucket,Key,VersionId`, the job's manifest fields listing
/// `VersionId`), so what was overwritten, deleted or created after T is copied as it was at T;
/// the failed task and the object over the job's limit are re-copied by version id (the
/// report's VersionId, the listing's); a key absent at T is deleted from the target; the
/// verification is as of T. Before, the manifest named keys: the job copied the current
/// objects (and `--as-of` was refused with `--engine batch`).
#[tokio::test(start_paused = true)]
async fn a_manifest_of_version_ids_copies_the_versions_of_t() {
    use envclone::fake::FakeClock;
    use envclone::ports::Clock;

    let fake = FakeAws::new(timings());
    for b in [SRC, DST, REPORTS] {
        fake.create_bucket_now(b);
    }
    fake.enable_versioning(SRC);
    let put = |bucket: &str, key: &str, body: &[u8]| {
        fake.put_object(bucket, key, body, ObjectHead::default(), &[]);
    };
    let big = |fill: u8| vec![fill; 12 * 1024];
    put(SRC, "overwritten", b"as of T");
    put(SRC, "deleted-after", b"there at T");
    put(SRC, "kept", b"never touched");
    put(SRC, "big-overwritten", &big(b'a'));
    put(SRC, "failing-overwritten", b"as of T, its task fails");
    // In the target, not in the source at T: deleted (--delete).
    put(DST, "gone-at-t", b"stale");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let point = s3sync_as_of_point(FakeClock.now());
    tokio::time::sleep((point.quiet_until - FakeClock.now()).to_std().unwrap()).await;
    let t = point.t;
    // After T: every kind of write.
    put(SRC, "overwritten", b"after T");
    fake.cloud()
        .objects
        .delete_object(SRC, "deleted-after")
        .await
        .unwrap();
    put(SRC, "created-after", b"not there at T");
    put(SRC, "big-overwritten", &big(b'b'));
    put(SRC, "failing-overwritten", b"after T");
    fake.fail_batch_tasks(SRC, &["failing-overwritten"]);
    fake.set_batch_copy_limit(LIMIT);

    let store: Arc<dyn ObjectStore> = Arc::new(fake.clone());
    let jobs: Arc<dyn BatchJobs> = Arc::new(fake.clone());
    let mut r = request(LIMIT);
    r.options.as_of = Some(t);
    r.options.delete = true;
    let events = Arc::new(Mutex::new(Vec::new()));
    let outcome = run(&store, &jobs, &r, &events).await.unwrap();

    // The version of each key at T (its newest at or before T).
    let versions = fake.object_versions(SRC);
    let at_t = |key: &str| {
        versions
            .iter()
            .filter(|v| v.key == key && !v.delete_marker && v.last_modified <= t)
            .max_by_key(|v| v.last_modified)
            .map(|v| v.version_id.clone())
            .unwrap_or_else(|| panic!("{key} at T"))
    };
    let job = &fake.batch_jobs()[0];
    assert!(job.request.version_ids, "{:?}", job.request);
    let manifest = fake
        .object(REPORTS, &job.request.manifest_key)
        .expect("manifest")
        .data;
    let mut rows: Vec<String> = String::from_utf8(manifest.to_vec())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    rows.sort();
    let expected: Vec<String> = [
        "deleted-after",
        "failing-overwritten",
        "kept",
        "overwritten",
    ]
    .iter()
    .map(|k| format!("{SRC},{k},{}", at_t(k)))
    .collect();
    assert_eq!(rows, expected);
    assert_eq!(outcome.failed_keys, vec!["failing-overwritten".to_string()]);
    assert_eq!(outcome.over_limit, vec!["big-overwritten".to_string()]);
    for key in ["failing-overwritten", "big-overwritten"] {
        assert_eq!(outcome.versions.get(key), Some(&at_t(key)), "{key}");
    }
    assert_eq!(outcome.local.copied, 2);
    assert_eq!(outcome.local.deleted, 1);
    // Re-copied by the version ids the run already has (HeadObject and CopyObject of that
    // version), not by listing the bucket's versions again for each key: one listing for the
    // diff, one for the verification.
    let listings = fake
        .calls()
        .iter()
        .filter(|c| c.operation == "s3:ListObjectVersions")
        .count();
    assert_eq!(listings, 2);

    let data = |key: &str| fake.object(DST, key).map(|o| o.data.to_vec());
    assert_eq!(data("overwritten"), Some(b"as of T".to_vec()));
    assert_eq!(data("deleted-after"), Some(b"there at T".to_vec()));
    assert_eq!(
        data("failing-overwritten"),
        Some(b"as of T, its task fails".to_vec())
    );
    assert_eq!(data("big-overwritten"), Some(big(b'a')));
    assert_eq!(
        fake.object_keys(DST),
        vec![
            "big-overwritten",
            "deleted-after",
            "failing-overwritten",
            "kept",
            "overwritten"
        ]
    );
    assert!(
        outcome.verification.is_equal(),
        "{:?}",
        outcome.verification.mismatches
    );
    assert_eq!(outcome.verification.compared, 5);
    let now = envclone::s3sync::verify(store, &r.source, &r.target, 8)
        .await
        .unwrap();
    assert!(!now.is_equal(), "the source as it is now differs from T");
}

/// T on the next second boundary, with no clock uncertainty (the fake's S3 clock is the test's).
fn s3sync_as_of_point(now: chrono::DateTime<chrono::Utc>) -> envclone::s3sync::AsOfPoint {
    envclone::s3sync::as_of_point(now, Duration::ZERO)
}

/// The fake's jobs honour the manifest's VersionId column as AWS does ("Specifying a
/// manifest"; CopyObject): a task copies the version its row names, a version that does not
/// exist fails its task (404 NoSuchVersion, the report naming the version), a delete marker's
/// version id fails it (400 InvalidRequest), and a manifest whose fields list VersionId but a
/// row without one fails the job.
#[tokio::test(start_paused = true)]
async fn a_job_copies_the_version_its_row_names_and_fails_a_missing_one() {
    let (fake, store, jobs) = setup();
    fake.enable_versioning(SRC);
    fake.put_object(SRC, "v.txt", b"old", ObjectHead::default(), &[]);
    let old = fake
        .object_versions(SRC)
        .into_iter()
        .find(|v| v.key == "v.txt")
        .unwrap()
        .version_id;
    fake.put_object(SRC, "v.txt", b"new", ObjectHead::default(), &[]);
    fake.put_object(SRC, "gone.txt", b"x", ObjectHead::default(), &[]);
    store.delete_object(SRC, "gone.txt").await.unwrap();
    let marker = fake
        .object_versions(SRC)
        .into_iter()
        .find(|v| v.key == "gone.txt" && v.delete_marker)
        .unwrap()
        .version_id;
    let manifest =
        format!("{SRC},v.txt,{old}\n{SRC},v.txt,no-such-version\n{SRC},gone.txt,{marker}\n");
    let create = |key: &str, etag: String, token: &str| CopyJobRequest {
        account_id: ACCOUNT.into(),
        client_token: token.into(),
        description: "d".into(),
        role_arn: format!("arn:aws:iam::{ACCOUNT}:role/r"),
        priority: 1,
        manifest_bucket: REPORTS.into(),
        manifest_key: key.into(),
        manifest_etag: etag,
        version_ids: true,
        manifest_format: ManifestFormat::Csv,
        target_bucket: DST.into(),
        target_key_prefix: "copy/".into(),
        report_bucket: REPORTS.into(),
        report_prefix: "r".into(),
    };
    let etag = store
        .put_small_object(REPORTS, "m.csv", manifest.into_bytes(), None)
        .await
        .unwrap();
    let id = jobs
        .create_copy_job(&create("m.csv", etag, "t-1"))
        .await
        .unwrap();
    let info = s3batch::wait_for_job(&*jobs, ACCOUNT, &id, Duration::from_secs(5), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(info.status, JobStatus::Complete);
    assert_eq!((info.succeeded, info.failed), (1, 2));
    assert_eq!(
        fake.object(DST, "copy/v.txt").unwrap().data.as_slice(),
        b"old"
    );
    let failed = s3batch::report_failures(&*store, &id, REPORTS, "r")
        .await
        .unwrap();
    let named: Vec<(String, Option<String>)> =
        failed.into_iter().map(|t| (t.key, t.version_id)).collect();
    assert_eq!(
        named,
        vec![
            ("gone.txt".to_string(), Some(marker.clone())),
            ("v.txt".to_string(), Some("no-such-version".to_string())),
        ]
    );
    let report_csv: String = fake
        .object_keys(REPORTS)
        .iter()
        .filter(|k| k.contains("/results/"))
        .map(|k| String::from_utf8(fake.object(REPORTS, k).unwrap().data.to_vec()).unwrap())
        .collect();
    assert!(report_csv.contains(",404,NoSuchVersion,"), "{report_csv}");
    assert!(report_csv.contains(",400,InvalidRequest,"), "{report_csv}");

    // VersionId in the fields, a row without one: the job fails on its manifest.
    let etag = store
        .put_small_object(
            REPORTS,
            "m2.csv",
            format!("{SRC},v.txt\n").into_bytes(),
            None,
        )
        .await
        .unwrap();
    let id = jobs
        .create_copy_job(&create("m2.csv", etag, "t-2"))
        .await
        .unwrap();
    let info = s3batch::wait_for_job(&*jobs, ACCOUNT, &id, Duration::from_secs(5), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(info.status, JobStatus::Failed);
    assert!(
        info.failure_reasons
            .iter()
            .any(|r| r.contains("InvalidManifest")),
        "{:?}",
        info.failure_reasons
    );
}

/// A run of current objects (no `--as-of`) interrupted during its job, then a run as of T of
/// the same pair (a clone's pre-copy, then its copy as of T): the first run's manifest names
/// other objects, so its job is followed to its end (it writes into the target) and that run
/// closed; the second run starts its own job, of versions, and the target is the source as of T.
#[tokio::test(start_paused = true)]
async fn a_run_of_another_moment_is_finished_not_taken_up() {
    use envclone::fake::FakeClock;
    use envclone::ports::Clock;

    let (fake, store, jobs) = setup();
    fake.enable_versioning(SRC);
    fake.put_object(SRC, "later.txt", b"as of T", ObjectHead::default(), &[]);
    let events = Arc::new(Mutex::new(Vec::new()));
    let current = request(LIMIT);
    let crashed = tokio::time::timeout(
        Duration::from_secs(30),
        run(&store, &jobs, &current, &events),
    );
    assert!(
        crashed.await.is_err(),
        "the first run still waits for its job"
    );
    let point = s3sync_as_of_point(FakeClock.now());
    tokio::time::sleep((point.quiet_until - FakeClock.now()).to_std().unwrap()).await;
    fake.put_object(SRC, "later.txt", b"after T", ObjectHead::default(), &[]);

    let mut as_of = request(LIMIT);
    as_of.options.as_of = Some(point.t);
    let outcome = run(&store, &jobs, &as_of, &events).await.unwrap();
    let made = fake.batch_jobs();
    assert_eq!(made.len(), 2, "{made:#?}");
    assert_eq!(
        made[0].info.status,
        JobStatus::Complete,
        "followed to its end"
    );
    assert!(!made[0].request.version_ids && made[1].request.version_ids);
    assert_eq!(outcome.job_id.as_deref(), Some(made[1].info.id.as_str()));
    assert!(
        outcome.verification.is_equal(),
        "{:?}",
        outcome.verification.mismatches
    );
    assert_eq!(
        fake.object(DST, "later.txt").unwrap().data.as_slice(),
        b"as of T"
    );
}

fn inventory_config(id: &str) -> InventoryConfiguration {
    InventoryConfiguration {
        id: id.into(),
        enabled: true,
        destination_bucket: REPORTS.into(),
        destination_prefix: Some("inventory".into()),
        format: "CSV".into(),
        included_versions: "Current".into(),
        filter_prefix: None,
        frequency: "Daily".into(),
    }
}

/// Issue 14 (`--manifest inventory`): the job reads the source's latest S3 Inventory report
/// as its manifest (S3InventoryReport_CSV_20161130, with the manifest.json's ETag) instead of a
/// CSV of what differs; what the report could not show (a key written after it was taken, a
/// key deleted since, an extra object of the target) is the local engine's after the job.
/// New behaviour: before, there was no `--manifest`.
#[tokio::test(start_paused = true)]
async fn an_inventory_report_is_the_manifest_and_later_writes_are_caught_up_locally() {
    let (fake, store, jobs) = setup();
    fake.set_batch_copy_limit(LIMIT);
    fake.put_inventory_configuration(SRC, inventory_config("daily"));
    // An older report, then the latest one: the latest is taken.
    fake.publish_inventory(SRC, "daily");
    tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    let manifest = fake.publish_inventory(SRC, "daily");
    assert!(
        manifest.starts_with(&format!("inventory/{SRC}/daily/"))
            && manifest.ends_with("Z/manifest.json"),
        "{manifest}"
    );
    // After the report: a new key, a deleted one; an object only the target has.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    fake.put_object(
        SRC,
        "late/new.txt",
        b"written after the report",
        ObjectHead::default(),
        &[],
    );
    store.delete_object(SRC, "data/002.bin").await.unwrap();
    fake.put_object(
        DST,
        "stale.txt",
        b"only in the target",
        ObjectHead::default(),
        &[],
    );

    let mut r = request(LIMIT);
    r.manifest = ManifestSource::Inventory;
    r.options.delete = true;
    let events = Arc::new(Mutex::new(Vec::new()));
    let outcome = run(&store, &jobs, &r, &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let made = fake.batch_jobs();
    assert_eq!(made.len(), 1);
    let job = &made[0].request;
    assert_eq!(job.manifest_format, ManifestFormat::InventoryCsv);
    assert_eq!(
        (job.manifest_bucket.as_str(), job.manifest_key.as_str()),
        (REPORTS, manifest.as_str())
    );
    assert_eq!(
        job.manifest_etag,
        fake.object(REPORTS, &manifest).unwrap().etag
    );
    assert_eq!(made[0].info.status, JobStatus::Complete);
    // Every object of the report was a task: the deleted one and the one over the limit
    // failed and went to the local engine.
    assert_eq!(
        outcome.failed_keys,
        sorted(&["data/002.bin", "large-single.bin"])
    );
    let events = events.lock().unwrap().clone();
    assert!(
        events.iter().any(|e| matches!(e, BatchEvent::InventoryManifest { config_id, age_minutes, .. } if config_id == "daily" && (59..=60).contains(age_minutes))),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            BatchEvent::CatchUp {
                copied: 1,
                deleted: 1,
                ..
            }
        )),
        "{events:#?}"
    );
    assert!(
        outcome.verification.is_equal(),
        "{:?}",
        outcome.verification.mismatches
    );
    assert_eq!(fake.object_keys(DST), fake.object_keys(SRC));
    assert_eq!(
        *fake.object(DST, "late/new.txt").unwrap().data,
        b"written after the report".to_vec()
    );
}

/// `--manifest inventory` is refused, before any job and naming why, when the source has no
/// inventory configuration, when none a job can read (disabled, ORC, every version, another
/// prefix), and when the configuration has delivered no report yet.
#[tokio::test(start_paused = true)]
async fn inventory_is_refused_without_a_usable_configuration_or_a_report() {
    let (fake, store, jobs) = setup();
    let mut r = request(LIMIT);
    r.manifest = ManifestSource::Inventory;
    let events = Arc::new(Mutex::new(Vec::new()));
    let refused = |e: BatchError| {
        assert!(e.is_bad_input(), "{e}");
        e.to_string()
    };
    let text = refused(run(&store, &jobs, &r, &events).await.unwrap_err());
    assert!(
        text.contains("bucket batch-source has no S3 Inventory configuration"),
        "{text}"
    );
    fake.put_inventory_configuration(SRC, inventory_config("daily"));
    let text = refused(run(&store, &jobs, &r, &events).await.unwrap_err());
    assert!(
        text.contains("configuration \"daily\": no report under s3://batch-reports/inventory/batch-source/daily/ yet"),
        "{text}"
    );
    for (config, why) in [
        (
            InventoryConfiguration {
                format: "ORC".into(),
                ..inventory_config("daily")
            },
            "its reports are ORC",
        ),
        (
            InventoryConfiguration {
                included_versions: "All".into(),
                ..inventory_config("daily")
            },
            "it lists All versions",
        ),
        (
            InventoryConfiguration {
                enabled: false,
                ..inventory_config("daily")
            },
            "it is disabled",
        ),
        (
            InventoryConfiguration {
                filter_prefix: Some("photos/".into()),
                ..inventory_config("daily")
            },
            "it lists the keys under \"photos/\"",
        ),
    ] {
        fake.put_inventory_configuration(SRC, config);
        let text = refused(run(&store, &jobs, &r, &events).await.unwrap_err());
        assert!(text.contains(why), "{why:?} in {text}");
        assert!(text.contains("or use --manifest diff"), "{text}");
    }
    assert!(fake.batch_jobs().is_empty());
}
