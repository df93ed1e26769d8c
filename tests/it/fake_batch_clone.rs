//! A clone whose contract bucket is `{ engine: batch }` (or `clone --engine batch`) on the fake,
//! paused clock: the bucket is copied by an S3 Batch Operations job with a client token derived
//! from the run id and the bucket, its failed keys re-copied and the target verified; a crash
//! during the job then `resume` follows the same job; `abort` cancels it before the bucket is
//! removed; a batch bucket without a role or a reports location is refused before any change.
//! Issue 14 part 1 ("clone/migrate accept --engine batch … per bucket through the contract"):
//! before, the contract refused `engine:` (an unknown field) and the clone always copied with
//! the local engine, so each of these failed.

use std::time::Duration;

use envclone::fake::MemoryRunStore;
use envclone::ports::batch::JobStatus;
use envclone::s3sync::BucketPath;
use envclone::workflow::batchcopy::{token_stem, BatchSettings};
use envclone::workflow::plan::{BucketTarget, ClonePlan};
use envclone::workflow::recovery::{self, ClonePhase};
use envclone::workflow::resource::ResourceRef;
use envclone::workflow::PreflightError;

use crate::support::*;

const BATCH_REPORTS: &str = "ops-batch-reports";
const ROLE: &str = "arn:aws:iam::123456789012:role/envclone-batch";
/// Under the test objects' `large-single.bin` (12 KiB): that one is left to the local engine.
const LIMIT: u64 = 10 * 1024;
const FAILING: [&str; 2] = ["data/003.bin", "with space.txt"];

/// `prod` from the reference template with its Reports bucket `{ engine: batch }`.
fn prod_with_batch_reports() -> Scenario {
    prod_with_reports_entry("Reports: { bucket_parameter: ReportsBucketName, engine: batch }")
}

/// `prod` from the reference template with its Reports contract entry `entry`, the jobs'
/// role and reports location given.
fn prod_with_reports_entry(entry: &str) -> Scenario {
    let template = WEBAPP.replace("Reports: { bucket_parameter: ReportsBucketName }", entry);
    assert_ne!(template, WEBAPP, "the reference contract names Reports");
    let mut s = Scenario::new(timings());
    s.deploy_prod(&template);
    s.fake.create_bucket_now(BATCH_REPORTS);
    s.fake.set_batch_copy_limit(LIMIT);
    s.engine.settings.batch = BatchSettings {
        role_arn: Some(ROLE.into()),
        reports: Some(BucketPath {
            bucket: BATCH_REPORTS.into(),
            prefix: "envclone/".into(),
        }),
        copy_limit: LIMIT,
        poll: Duration::from_secs(5),
        ..BatchSettings::default()
    };
    s
}

fn reports_target(plan: &ClonePlan) -> String {
    let b = plan
        .buckets
        .iter()
        .find(|b| b.logical_id == "Reports")
        .unwrap();
    match &b.target {
        BucketTarget::Created { name, .. } => name.clone(),
        other => panic!("{other:?}"),
    }
}

async fn plan(s: &Scenario) -> ClonePlan {
    s.engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(start_paused = true)]
async fn a_contract_bucket_with_engine_batch_is_copied_by_a_job_with_the_runs_token() {
    let s = prod_with_batch_reports();
    s.fake.fail_batch_tasks(REPORTS, &FAILING);
    let plan = plan(&s).await;
    let target = reports_target(&plan);
    // The plan shows the job: manifest, operation, role, report prefix.
    let steps = plan.steps().join("\n");
    let stem = token_stem(run_id().as_str(), "Reports");
    for expected in [
        "S3 Batch Operations job ({ engine: batch } in its contract entry Reports)",
        "S3PutObjectCopy",
        &format!("manifest s3://{BATCH_REPORTS}/envclone/envclone-batch/{stem}-N/manifest.csv"),
        &format!("role {ROLE}"),
        &format!("completion report of the failed tasks under s3://{BATCH_REPORTS}/envclone/envclone-batch/{stem}-N/report"),
    ] {
        assert!(steps.contains(expected), "{expected:?} in:\n{steps}");
    }
    // Uploads (no engine:) stays with the local engine.
    assert_eq!(
        steps.matches("S3 Batch Operations job").count(),
        1,
        "{steps}"
    );

    let store = MemoryRunStore::default();
    let report = s
        .engine
        .run_clone(&plan, &store, &s.emitter, std::future::pending(), None)
        .await
        .unwrap_or_else(|f| panic!("{}", f.error));

    // One job, the pre-copy's: the delta inside Standby is the local engine's (issue 14: it
    // used to start a second job, the job's copy of multipart/big.bin being single-part).
    let jobs = s.fake.batch_jobs();
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    let job = &jobs[0];
    assert_eq!(job.request.client_token, format!("{stem}-1"));
    assert!(
        job.request.client_token.len() <= 64,
        "CreateJob's ClientToken limit"
    );
    assert_eq!(job.request.target_bucket, target);
    assert_eq!(job.request.role_arn, ROLE);
    assert_eq!(job.request.manifest_bucket, BATCH_REPORTS);
    assert_eq!(job.info.status, JobStatus::Complete);
    assert_eq!(job.info.failed, FAILING.len() as u64);
    // Failed tasks and the object over the job's limit re-copied locally; verified.
    assert_eq!(s.fake.object_keys(&target), s.fake.object_keys(REPORTS));
    assert!(
        report.verification.iter().all(|c| c.ok),
        "{:?}",
        report.verification
    );
    assert!(report
        .verification
        .iter()
        .any(|c| c.check == format!("bucket {target} = {REPORTS}")));
    let messages: Vec<String> = s.events.events().into_iter().map(|e| e.message).collect();
    assert!(
        messages.iter().any(
            |m| m == "re-copying locally 2 failed task(s) and 1 object(s) over the job's limit"
        ),
        "{messages:#?}"
    );
    let reports = report.buckets.iter().find(|b| b.target == target).unwrap();
    let precopy = reports.precopy.as_ref().expect("pre-copied by the job");
    assert_eq!(precopy.copied, s.fake.object_keys(REPORTS).len() as u64);
}

#[tokio::test(start_paused = true)]
async fn engine_batch_copies_every_bucket_through_a_job() {
    let mut s = Scenario::with_webapp_prod();
    s.fake.create_bucket_now(BATCH_REPORTS);
    s.engine.settings.batch = BatchSettings {
        all: true,
        role_arn: Some(ROLE.into()),
        reports: Some(BucketPath::bucket(BATCH_REPORTS)),
        ..BatchSettings::default()
    };
    let plan = plan(&s).await;
    let steps = plan.steps().join("\n");
    assert_eq!(
        steps
            .matches("S3 Batch Operations job (--engine batch)")
            .count(),
        2,
        "{steps}"
    );
    let store = MemoryRunStore::default();
    s.engine
        .run_clone(&plan, &store, &s.emitter, std::future::pending(), None)
        .await
        .unwrap_or_else(|f| panic!("{}", f.error));
    let jobs = s.fake.batch_jobs();
    let mut tokens: Vec<String> = jobs
        .iter()
        .map(|j| j.request.client_token.clone())
        .collect();
    tokens.sort();
    // Reports (passed by parameter): the pre-copy's job (its delta inside Standby is the
    // local engine's); Uploads (the stack's own): one copy once the stack made it.
    let reports = token_stem(run_id().as_str(), "Reports");
    let mut expected = vec![
        format!("{reports}-1"),
        format!("{}-1", token_stem(run_id().as_str(), "Uploads")),
    ];
    expected.sort();
    assert_eq!(tokens, expected);
    assert!(jobs.iter().all(|j| j.info.status == JobStatus::Complete));
}

/// Issue 14: the delta inside Standby after a batch pre-copy started a second job (minutes of
/// New/Preparing/Ready inside the window), whose manifest held every multipart object: the
/// job's copy of one is single-part, so its ETag differs from the source's. Failed before the
/// fix with two jobs. Now: one job, and the delta (the local engine, told what the
/// verification after the job found of its copies) copies exactly the key written since.
#[tokio::test(start_paused = true)]
async fn the_delta_inside_standby_copies_only_what_changed_since_the_job_without_a_second_job() {
    let s = prod_with_batch_reports();
    let part =
        |seed: u32| -> Vec<u8> { (0..5 * 1024u32).map(|i| ((i + seed) % 241) as u8).collect() };
    for (n, key) in ["multipart/a.bin", "multipart/b.bin", "multipart/c.bin"]
        .iter()
        .enumerate()
    {
        s.fake.put_multipart_object(
            REPORTS,
            key,
            &part(n as u32),
            &[2048, 2048, 1024],
            Default::default(),
        );
    }
    let plan = plan(&s).await;
    let target = reports_target(&plan);
    let store = MemoryRunStore::default();
    // A write lands while the source goes into Standby (a request in flight): after the job
    // and its verification, before the delta.
    let changed = part(99);
    let write = async {
        while !s
            .fake
            .calls()
            .iter()
            .any(|c| c.operation == "autoscaling:EnterStandby")
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s.fake.put_multipart_object(
            REPORTS,
            "multipart/b.bin",
            &changed,
            &[2048, 2048, 1024],
            Default::default(),
        );
        std::future::pending::<()>().await;
    };
    let report = tokio::select! {
        r = s.engine.run_clone(&plan, &store, &s.emitter, std::future::pending(), None) => {
            r.unwrap_or_else(|f| panic!("{}", f.error))
        }
        () = write => unreachable!(),
    };
    let jobs = s.fake.batch_jobs();
    assert_eq!(jobs.len(), 1, "one job, the pre-copy's: {jobs:#?}");
    assert_eq!(jobs[0].info.status, JobStatus::Complete);
    let reports = report.buckets.iter().find(|b| b.target == target).unwrap();
    assert_eq!(
        reports.stats.copied, 1,
        "the delta copies multipart/b.bin only: {:?}",
        reports.stats
    );
    assert_eq!(reports.stats.deleted, 0, "{:?}", reports.stats);
    let (source, copy) = (
        s.fake.object(REPORTS, "multipart/b.bin").unwrap(),
        s.fake.object(&target, "multipart/b.bin").unwrap(),
    );
    assert_eq!(*copy.data, changed);
    assert_eq!(copy.etag, source.etag, "copied in the source's part layout");
    // The other multipart objects keep the job's single-part copies (not copied again).
    for key in ["multipart/a.bin", "multipart/c.bin", "multipart/big.bin"] {
        let (src, dst) = (
            s.fake.object(REPORTS, key).unwrap(),
            s.fake.object(&target, key).unwrap(),
        );
        assert_ne!(src.etag, dst.etag, "{key}: the job's copy, left alone");
        assert_eq!(src.data, dst.data, "{key}");
    }
    assert!(
        report.verification.iter().all(|c| c.ok),
        "{:?}",
        report.verification
    );
    // Known equal under other ETags: the four multipart objects (the job's single-part
    // copies) and large-single.bin (over the job's limit, copied by envclone in parts above
    // the test's multipart threshold).
    let messages: Vec<String> = s.events.events().into_iter().map(|e| e.message).collect();
    assert!(
        messages.iter().any(|m| m.contains("no second job")
            && m.contains("5 object(s) whose copies hold their bytes in another part layout")),
        "{messages:#?}"
    );
}

/// Until a job of the fake is Active.
async fn job_active(s: &Scenario) {
    while !s
        .fake
        .batch_jobs()
        .iter()
        .any(|j| j.info.status == JobStatus::Active)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Drives the clone until its job is Active, then drops it (a `kill -9`).
async fn crash_during_the_job(s: &Scenario, store: &MemoryRunStore, plan: &ClonePlan) {
    let active = job_active(s);
    tokio::select! {
        biased;
        () = active => {}
        r = s.engine.run_clone(plan, store, &s.emitter, std::future::pending(), None) => {
            panic!("the clone ended before its job was active: {:?}", r.err().map(|f| f.error.to_string()));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_crash_during_the_job_then_resume_follows_the_same_job() {
    let s = prod_with_batch_reports();
    let plan = plan(&s).await;
    let store = MemoryRunStore::default();
    crash_during_the_job(&s, &store, &plan).await;
    assert_eq!(s.fake.batch_jobs().len(), 1);
    let record = recovery::load(&store, run_id().as_str()).unwrap().unwrap();
    assert_eq!(
        record
            .plan
            .buckets
            .iter()
            .filter(|b| b.batch.is_some())
            .count(),
        1,
        "the batch settings are recorded with the plan"
    );
    s.engine
        .resume_clone(record, &store, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("{}", f.error));
    // The pre-copy's job was followed, not created again; the delta was the local engine's.
    let stem = token_stem(run_id().as_str(), "Reports");
    let tokens: Vec<String> = s
        .fake
        .batch_jobs()
        .iter()
        .map(|j| j.request.client_token.clone())
        .collect();
    assert_eq!(tokens, vec![format!("{stem}-1")]);
    assert!(s
        .fake
        .batch_jobs()
        .iter()
        .all(|j| j.info.status == JobStatus::Complete));
    let messages: Vec<String> = s.events.events().into_iter().map(|e| e.message).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("of the interrupted copy found (journal")),
        "{messages:#?}"
    );
    let target = reports_target(&plan);
    assert_eq!(s.fake.object_keys(&target), s.fake.object_keys(REPORTS));
}

/// A crash while the job is Active, then `abort` (`--keep` or not): the job is Cancelled.
/// Returns the scenario, the plan and what abort returned.
async fn abort_during_the_job(keep: bool) -> (Scenario, ClonePlan, Vec<ResourceRef>) {
    let s = prod_with_batch_reports();
    let plan = plan(&s).await;
    let store = MemoryRunStore::default();
    crash_during_the_job(&s, &store, &plan).await;
    let mut record = recovery::load(&store, run_id().as_str()).unwrap().unwrap();
    let removed = s
        .engine
        .abort_clone(&mut record, &store, &s.emitter, keep)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(record.phase, ClonePhase::Aborted);
    let jobs = s.fake.batch_jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].info.status, JobStatus::Cancelled);
    (s, plan, removed)
}

#[tokio::test(start_paused = true)]
async fn abort_cancels_the_running_job_then_removes_the_bucket() {
    let (s, plan, removed) = abort_during_the_job(false).await;
    let jobs = s.fake.batch_jobs();
    let id = &jobs[0].info.id;
    assert!(
        removed
            .iter()
            .any(|r| r.kind.as_str() == "batch job" && &r.id == id),
        "{removed:?}"
    );
    let target = reports_target(&plan);
    assert!(!s.fake.bucket_names().contains(&target), "{target} removed");
    assert_source_in_service(&s, "after abort");
}

/// Issue 14: Ctrl-C while the pre-copy's job runs. The job goes on copying after envclone
/// stopped; before, the failure's left-behind list did not name it (it listed the run's bucket
/// only), so the operator learnt of it from nowhere.
#[tokio::test(start_paused = true)]
async fn ctrl_c_during_the_job_names_it_in_the_left_behind_list() {
    let s = prod_with_batch_reports();
    let plan = plan(&s).await;
    let store = MemoryRunStore::default();
    let ctrl_c = job_active(&s);
    let Err(failure) = s
        .engine
        .run_clone(&plan, &store, &s.emitter, ctrl_c, None)
        .await
    else {
        panic!("the clone ended before Ctrl-C");
    };
    assert!(
        failure.error.to_string().contains("interrupted"),
        "{}",
        failure.error
    );
    let jobs = s.fake.batch_jobs();
    assert_eq!(jobs.len(), 1);
    assert!(!jobs[0].info.status.is_terminal(), "{:?}", jobs[0].info);
    let id = &jobs[0].info.id;
    let job = failure
        .left_behind
        .iter()
        .find(|r| r.kind.as_str() == "batch job")
        .unwrap_or_else(|| panic!("{:?}", failure.left_behind));
    assert_eq!(&job.id, id);
    let note = job.note.as_deref().unwrap_or_default();
    let run = run_id();
    for expected in [
        format!("copying s3://{REPORTS} into {}", reports_target(&plan)),
        format!("`envclone s3 job status {id} --account 123456789012`"),
        format!("`envclone s3 job cancel {id} --account 123456789012`"),
        format!("`envclone abort {run}` (with or without --keep) cancels it"),
    ] {
        assert!(note.contains(&expected), "{expected:?} in {note}");
    }
    assert_source_in_service(&s, "after Ctrl-C");
}

/// Issue 14: `abort --keep` keeps the copies, but a job of the run left running would go on
/// writing into a bucket the operator takes as settled: it is cancelled (what it copied
/// stays). Before, `--keep` skipped everything, the job included, and it ran on.
#[tokio::test(start_paused = true)]
async fn abort_keep_cancels_the_running_job_and_keeps_the_bucket() {
    let (s, plan, kept) = abort_during_the_job(true).await;
    let jobs = s.fake.batch_jobs();
    assert_eq!(kept.len(), 1, "only the job: {kept:?}");
    assert_eq!(kept[0].id, jobs[0].info.id);
    let target = reports_target(&plan);
    assert!(s.fake.bucket_names().contains(&target), "{target} kept");
    // Nothing writes into the kept bucket any more.
    let before = s.fake.object_keys(&target);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(s.fake.object_keys(&target), before);
    assert_source_in_service(&s, "after abort --keep");
}

#[tokio::test(start_paused = true)]
async fn a_batch_bucket_without_role_or_reports_is_refused_before_any_change() {
    for (role, reports, missing) in [
        (
            None,
            None,
            "--batch-role and --batch-reports were not given",
        ),
        (Some(ROLE), None, "--batch-reports was not given"),
        (
            None,
            Some(BucketPath::bucket(BATCH_REPORTS)),
            "--batch-role was not given",
        ),
    ] {
        let mut s = prod_with_batch_reports();
        s.engine.settings.batch.role_arn = role.map(str::to_string);
        s.engine.settings.batch.reports = reports;
        let before = s.fake.mutating_calls().len();
        let err = s
            .engine
            .preflight(&s.request("staging-test"), run_id())
            .await
            .unwrap_err();
        assert!(matches!(err, PreflightError::Unsupported { .. }), "{err}");
        let text = err.to_string();
        for expected in [
            "bucket Reports (s3://prod-reports-123456789012)",
            "{ engine: batch } in its contract entry Reports",
            missing,
            "nothing was changed",
        ] {
            assert!(text.contains(expected), "{expected:?} in {text}");
        }
        assert_eq!(s.fake.mutating_calls().len(), before, "{text}");
    }
    // Not a role ARN; reports inside the bucket copied.
    let mut s = prod_with_batch_reports();
    s.engine.settings.batch.role_arn = Some("arn:aws:iam::123456789012:user/me".into());
    let err = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not an IAM role ARN"), "{err}");
    let mut s = prod_with_batch_reports();
    s.engine.settings.batch.reports = Some(BucketPath::bucket(REPORTS));
    let err = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("is in bucket {REPORTS}")), "{err}");
}

#[test]
fn the_contract_takes_engine_local_or_batch_only() {
    use envclone::contract::{Contract, Template};
    let with = |engine: &str| {
        let body = WEBAPP.replace(
            "Reports: { bucket_parameter: ReportsBucketName }",
            &format!("Reports: {{ bucket_parameter: ReportsBucketName, engine: {engine} }}"),
        );
        Contract::from_template(&Template::parse("webapp.yaml", &body).unwrap())
    };
    assert_eq!(with("batch").unwrap().batch_buckets, vec!["Reports"]);
    let inventory = with("batch, manifest: inventory").unwrap();
    assert_eq!(inventory.inventory_buckets, vec!["Reports"]);
    assert!(with("batch, manifest: diff")
        .unwrap()
        .inventory_buckets
        .is_empty());
    let err = with("local, manifest: inventory").unwrap_err().to_string();
    assert!(
        err.contains("manifest: inventory without engine: batch"),
        "{err}"
    );
    assert!(with("local").unwrap().batch_buckets.is_empty());
    let err = with("turbo").unwrap_err().to_string();
    assert!(err.contains("turbo") && err.contains("batch"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn aborting_a_migrate_cancels_its_running_job() {
    let v2 = include_str!("../../stacks/webapp-v2.yaml").replace(
        "Reports: { bucket_parameter: ReportsBucketName }",
        "Reports: { bucket_parameter: ReportsBucketName, engine: batch }",
    );
    let (mut s, _) = crate::fake_migrate::prod().await;
    s.fake.create_bucket_now(BATCH_REPORTS);
    s.engine.settings.batch = BatchSettings {
        role_arn: Some(ROLE.into()),
        reports: Some(BucketPath::bucket(BATCH_REPORTS)),
        ..BatchSettings::default()
    };
    let request = envclone::workflow::migrate::MigrateRequest {
        env: "prod".into(),
        template: ("webapp-v2-batch.yaml".into(), v2),
        parameter_overrides: Default::default(),
        config: post_swap_hook_config(),
    };
    let plan = s
        .engine
        .preflight_migrate(&request, run_id())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let store = MemoryRunStore::default();
    let active = job_active(&s);
    tokio::select! {
        biased;
        () = active => {}
        _ = s.engine.migrate(&plan, &store, &s.emitter, std::future::pending()) => {
            panic!("the migrate ended before its job was active");
        }
    }
    let mut state = envclone::workflow::migrate::load(&store, run_id().as_str())
        .unwrap()
        .unwrap();
    s.engine
        .abort_migration(&mut state, &store, &s.emitter)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let jobs = s.fake.batch_jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].info.status, JobStatus::Cancelled);
    assert_source_in_service(&s, "after the migrate's abort");
}

/// Issue 14: `{ engine: batch, manifest: inventory }`: the job of the pre-copy reads the
/// source's latest S3 Inventory report as its manifest (S3InventoryReport_CSV_20161130); a
/// source without a report it can read is refused before any change. New behaviour: before,
/// the contract refused `manifest:` (an unknown field).
#[tokio::test(start_paused = true)]
async fn a_contract_bucket_with_manifest_inventory_is_copied_from_the_latest_report() {
    use envclone::ports::batch::ManifestFormat;
    use envclone::ports::InventoryConfiguration;
    let s = prod_with_reports_entry(
        "Reports: { bucket_parameter: ReportsBucketName, engine: batch, manifest: inventory }",
    );
    let before = s.fake.mutating_calls().len();
    let err = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap_err()
        .to_string();
    for expected in [
        "bucket Reports has manifest: inventory in its contract entry",
        &format!("bucket {REPORTS} has no S3 Inventory configuration"),
        "nothing was changed",
    ] {
        assert!(err.contains(expected), "{expected:?} in {err}");
    }
    assert_eq!(s.fake.mutating_calls().len(), before);

    s.fake.put_inventory_configuration(
        REPORTS,
        InventoryConfiguration {
            id: "daily".into(),
            enabled: true,
            destination_bucket: BATCH_REPORTS.into(),
            destination_prefix: Some("inventory".into()),
            format: "CSV".into(),
            included_versions: "Current".into(),
            filter_prefix: None,
            frequency: "Daily".into(),
        },
    );
    let manifest = s.fake.publish_inventory(REPORTS, "daily");
    let plan = plan(&s).await;
    let steps = plan.steps().join("\n");
    assert!(
        steps.contains("the objects the source's latest S3 Inventory report lists"),
        "{steps}"
    );
    let store = MemoryRunStore::default();
    let report = s
        .engine
        .run_clone(&plan, &store, &s.emitter, std::future::pending(), None)
        .await
        .unwrap_or_else(|f| panic!("{}", f.error));
    let jobs = s.fake.batch_jobs();
    assert_eq!(
        jobs.len(),
        1,
        "the pre-copy's; the delta is local: {jobs:#?}"
    );
    assert_eq!(
        jobs[0].request.manifest_format,
        ManifestFormat::InventoryCsv
    );
    assert_eq!(jobs[0].request.manifest_key, manifest);
    let target = reports_target(&plan);
    assert_eq!(s.fake.object_keys(&target), s.fake.object_keys(REPORTS));
    assert!(
        report.verification.iter().all(|c| c.ok),
        "{:?}",
        report.verification
    );
}
