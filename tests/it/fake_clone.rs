//! Clone workflow scenarios on the in-memory fake, with tokio's clock paused: the whole clone,
//! the overlap of snapshot and copy, every failure point returning the source to service, and
//! preflight refusing bad requests without a single change.

use std::time::Duration;

use envclone::fake::Timings;
use envclone::ports::PortError;
use envclone::workflow::plan::{BucketTarget, CloneRequest, NoEchoParameter, NoEchoValue};
use envclone::workflow::PreflightError;

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn clone_copies_everything_and_returns_the_source_to_service() {
    let s = Scenario::with_webapp_prod();
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap();
    let report = s
        .engine
        .execute(&plan, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("clone failed: {:?}", f.error));

    // The clone stack, with the source's parameters carried over and the contract's filled in.
    let snapshot = "envclone-20261121000000-beef-prod-db";
    assert_eq!(plan.parameters["InstanceType"], "t3.small");
    assert_eq!(plan.parameters["DesiredCapacity"], "3");
    assert_eq!(plan.parameters["EnvironmentName"], "staging-test");
    assert_eq!(plan.parameters["DBSnapshotIdentifier"], snapshot);
    assert_eq!(
        plan.parameters["ReportsBucketName"],
        "staging-test-reports-123456789012"
    );
    assert!(s
        .fake
        .live_stack_names()
        .contains(&"staging-test".to_string()));
    assert_eq!(
        s.fake.db_restored_from("staging-test-db").as_deref(),
        Some(snapshot)
    );
    assert_eq!(report.snapshots, vec![format!("DB snapshot {snapshot}")]);

    // Both buckets object-for-object equal, checked independently of the engine's own verify.
    for (src, dst) in [
        (REPORTS, "staging-test-reports-123456789012"),
        (UPLOADS, "staging-test-uploads-123456789012"),
    ] {
        assert_eq!(s.fake.object_keys(src), s.fake.object_keys(dst));
        for key in s.fake.object_keys(src) {
            let a = s.fake.object(src, &key).unwrap();
            let b = s.fake.object(dst, &key).unwrap();
            assert_eq!(a.data, b.data, "{key}");
            assert_eq!(a.head.content_type, b.head.content_type, "{key}");
            assert_eq!(a.head.cache_control, b.head.cache_control, "{key}");
            assert_eq!(a.head.metadata, b.head.metadata, "{key}");
            assert_eq!(a.tags, b.tags, "{key}");
        }
        // The multipart object kept its part layout, so its ETag is the source's.
        assert_eq!(
            s.fake.object(src, "multipart/big.bin").unwrap().etag,
            s.fake.object(dst, "multipart/big.bin").unwrap().etag
        );
    }
    assert!(
        report.verification.iter().all(|c| c.ok),
        "{:#?}",
        report.verification
    );
    let bucket_checks = report
        .verification
        .iter()
        .filter(|c| c.check.starts_with("bucket "))
        .count();
    assert_eq!(bucket_checks, 2);
    assert!(report
        .verification
        .iter()
        .any(|c| c.check == "entry DNS record untouched" && c.ok));
    assert_source_in_service(&s, "clone");
    // Everything envclone created carries the run's tags.
    let clone_stack = s
        .fake
        .cloud()
        .stacks
        .describe_stack("staging-test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(clone_stack.tags["envclone:run"], "20261121000000-beef");
    assert_eq!(clone_stack.tags["envclone:source"], "prod");
    assert_eq!(clone_stack.tags["envclone:environment"], "staging-test");
}

#[tokio::test(start_paused = true)]
async fn snapshot_and_bucket_copy_overlap() {
    // A snapshot of 600 s and a bucket copy of ~600 s (100 objects, one at a time, 6 s each):
    // run in parallel the clone takes about the slower branch, not the sum.
    let s = Scenario::new(Timings {
        snapshot: Duration::from_secs(600),
        db_create: Duration::from_secs(1),
        stack_resource: Duration::from_millis(100),
        call_latency: Duration::from_millis(1),
        copy_latency: Duration::from_secs(6),
        min_part_size: 1024,
        ..Timings::default()
    });
    s.fake.create_bucket_now(REPORTS);
    s.fake.deploy_now(
        "prod",
        WEBAPP,
        &[("EnvironmentName", "prod"), ("ReportsBucketName", REPORTS)],
    );
    for i in 0..100 {
        s.fake
            .put_object(REPORTS, &format!("r/{i:03}"), b"x", Default::default(), &[]);
    }
    let mut engine = envclone::workflow::clone::CloneEngine {
        cloud: s.fake.cloud(),
        settings: settings(),
    };
    engine.settings.sync.concurrency = 1;
    // Without the pre-copy the whole copy runs beside the snapshot (the pre-copy has its own
    // test: the_standby_window_does_not_grow_with_the_bucket).
    engine.settings.precopy = false;
    let plan = engine
        .preflight(&s.request("overlap"), run_id())
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    engine
        .execute(&plan, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("clone failed: {:?}", f.error));
    let elapsed = start.elapsed();
    let snapshot = Duration::from_secs(600);
    let copy = Duration::from_secs(600);
    assert!(elapsed >= snapshot, "{elapsed:?}");
    assert!(
        elapsed < snapshot + copy / 2,
        "snapshot and copy ran one after the other: {elapsed:?}"
    );
}

/// Each failure point: the operation that fails, and what the run must have left behind.
#[tokio::test(start_paused = true)]
async fn every_failure_after_standby_returns_the_source_to_service() {
    let cases: &[(&str, &[&str])] = &[
        ("autoscaling:EnterStandby", &[]),
        (
            "rds:CreateDBSnapshot",
            &["bucket staging-test-reports-123456789012"],
        ),
        (
            "s3:CopyObject",
            &["bucket staging-test-reports-123456789012"],
        ),
        (
            "s3:UploadPartCopy",
            &["bucket staging-test-reports-123456789012"],
        ),
        ("s3:CreateBucket", &[]),
        (
            "cloudformation:CreateStack",
            &["DB snapshot envclone-20261121000000-beef-prod-db"],
        ),
        ("http:GET", &["stack staging-test"]),
    ];
    for (operation, expected_left) in cases {
        let s = Scenario::with_webapp_prod();
        let plan = s
            .engine
            .preflight(&s.request("staging-test"), run_id())
            .await
            .unwrap();
        s.fake.fail(
            operation,
            PortError::failed(operation, "AccessDenied (injected)"),
            1000,
        );
        let failure = s
            .engine
            .execute(&plan, &s.emitter, std::future::pending())
            .await
            .err()
            .unwrap_or_else(|| panic!("{operation}: the clone should fail"));
        assert_eq!(failure.source_restored, Ok(()), "{operation}");
        assert_source_in_service(&s, operation);
        for left in *expected_left {
            assert!(
                failure.left_behind.iter().any(|l| l == left),
                "{operation}: {left} should be reported as left behind: {:?}",
                failure.left_behind
            );
        }
        assert!(
            failure.error.to_string().contains("injected") || operation == &"http:GET",
            "{operation}: {}",
            failure.error
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_stack_and_an_unhealthy_clone_return_the_source_to_service() {
    // The stack rolls back (someone took its bucket's name after preflight): reported, source
    // back.
    let s = Scenario::with_webapp_prod();
    let mut request = s.request("staging-test");
    request
        .parameter_overrides
        .insert("DesiredCapacity".into(), "3".into());
    let plan = s.engine.preflight(&request, run_id()).await.unwrap();
    s.fake
        .create_bucket_now("staging-test-uploads-123456789012");
    let failure = s
        .engine
        .execute(&plan, &s.emitter, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        failure.error.to_string().contains("ROLLBACK"),
        "{}",
        failure.error
    );
    assert_eq!(failure.source_restored, Ok(()));
    assert_source_in_service(&s, "rolled-back stack");

    // The clone answers 503 on its health URL: verification fails, source back.
    let s = Scenario::with_webapp_prod();
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap();
    let mut engine = envclone::workflow::clone::CloneEngine {
        cloud: s.fake.cloud(),
        settings: settings(),
    };
    engine.settings.verify_timeout = Duration::from_secs(30);
    s.fake.fail(
        "http:GET",
        PortError::failed("http:GET", "connection refused"),
        10_000,
    );
    let failure = engine
        .execute(&plan, &s.emitter, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        failure.error.to_string().contains("verification failed"),
        "{}",
        failure.error
    );
    assert!(failure
        .verification
        .iter()
        .any(|c| c.check.starts_with("HTTP GET") && !c.ok));
    assert_source_in_service(&s, "unhealthy clone");
}

#[tokio::test(start_paused = true)]
async fn ctrl_c_returns_the_source_to_service() {
    for after in [1u64, 30, 400, 900] {
        let s = Scenario::with_webapp_prod();
        let plan = s
            .engine
            .preflight(&s.request("staging-test"), run_id())
            .await
            .unwrap();
        // The fake's clock reading now (its last call was the end of preflight).
        let epoch = s.fake.elapsed();
        let interrupt = tokio::time::Instant::now() + Duration::from_secs(after);
        let shutdown = tokio::time::sleep_until(interrupt);
        let failure = s
            .engine
            .execute(&plan, &s.emitter, shutdown)
            .await
            .unwrap_err();
        assert!(
            failure.error.to_string().contains("interrupted"),
            "{}",
            failure.error
        );
        assert_eq!(failure.source_restored, Ok(()));
        assert_source_in_service(&s, &format!("Ctrl-C at {after}s"));
        // After Ctrl-C no new change starts but returning the source to service: the call in
        // flight finishes, the next one is not made.
        let late: Vec<String> = s
            .fake
            .calls()
            .into_iter()
            .filter(|c| c.mutating && c.at > epoch + Duration::from_secs(after))
            .map(|c| c.operation)
            // Returning the source to service, and finishing a multipart copy already under way
            // (completing it, or aborting its upload), are allowed.
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
            "changes started after Ctrl-C at {after}s: {late:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn transient_faults_are_retried_without_duplicates() {
    let s = Scenario::with_webapp_prod();
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap();
    for op in [
        "s3:CopyObject",
        "rds:CreateDBSnapshot",
        "cloudformation:CreateStack",
        "s3:ListObjectsV2",
        "autoscaling:EnterStandby",
    ] {
        s.fake.fail(
            op,
            PortError::Transient {
                operation: op.into(),
                message: "SlowDown".into(),
            },
            3,
        );
    }
    let report = s
        .engine
        .execute(&plan, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("clone failed: {:?}", f.error));
    assert!(report.verification.iter().all(|c| c.ok));
    assert_eq!(s.fake.snapshot_ids().len(), 1);
    assert_eq!(s.fake.live_stack_names().len(), 2);
    assert_source_in_service(&s, "transient faults");
}

#[tokio::test(start_paused = true)]
async fn preflight_refuses_bad_requests_without_any_change() {
    let s = Scenario::with_webapp_prod();
    let base = s.request("staging-test");
    let mut cases: Vec<(envclone::workflow::plan::CloneRequest, &str)> = Vec::new();

    let mut r = base.clone();
    r.source = "nope".into();
    cases.push((r, "environment \"nope\" not found"));
    let mut r = base.clone();
    r.target = envclone::model::EnvName::parse("prod").unwrap();
    cases.push((r, "is the source itself"));
    let mut r = base.clone();
    r.parameter_overrides
        .insert("InstanceTyp".into(), "t3.large".into());
    cases.push((r, "--parameter InstanceTyp: the template"));
    let mut r = base.clone();
    r.template = Some((
        "no-contract.yaml".into(),
        include_str!("../fixtures/no-contract.yaml").into(),
    ));
    cases.push((r, "no Metadata.envclone"));
    let mut r = base.clone();
    r.template = Some((
        "db-without-snapshot-param.yaml".into(),
        include_str!("../fixtures/db-without-snapshot-param.yaml").into(),
    ));
    cases.push((r, "snapshot_parameter"));
    let mut r = base.clone();
    r.parameter_overrides
        .insert("ReportsBucketName".into(), "Bad_Bucket".into());
    cases.push((r, "bucket name \"Bad_Bucket\""));
    let mut r = base.clone();
    r.parameter_overrides
        .insert("ReportsBucketName".into(), "x".repeat(64));
    cases.push((r, "S3 allows 3 to 63"));

    for (request, expected) in cases {
        let err = s
            .engine
            .preflight(&request, run_id())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
    }
    // A target whose database identifier is taken (by another stack's database).
    s.fake.deploy_now(
        "other",
        WEBAPP,
        &[
            ("EnvironmentName", "staging-test"),
            ("ReportsBucketName", REPORTS),
        ],
    );
    let err = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("database staging-test-db already exists"),
        "{err}"
    );
    // A target whose stack already exists.
    s.fake.deploy_now(
        "taken",
        WEBAPP,
        &[("EnvironmentName", "taken"), ("ReportsBucketName", REPORTS)],
    );
    let err = s
        .engine
        .preflight(&s.request("taken"), run_id())
        .await
        .unwrap_err();
    assert!(matches!(err, PreflightError::TargetExists { .. }), "{err}");
    assert_eq!(s.fake.mutating_calls(), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn the_plan_names_what_it_will_create_and_changes_nothing() {
    let s = Scenario::with_webapp_prod();
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap();
    let text = plan.steps().join("\n");
    for name in [
        "envclone-20261121000000-beef-prod-db",
        "staging-test-reports-123456789012",
        "staging-test-uploads-123456789012",
        "create stack staging-test",
    ] {
        assert!(text.contains(name), "{name} missing from the plan:\n{text}");
    }
    // CloudFormation masks NoEcho values: the master password is used only for a new database,
    // so the clone takes its default; its value is never shown.
    assert!(
        text.contains("DBMasterPassword takes its default, unused by the clone"),
        "{text}"
    );
    assert!(!text.contains("envclone-demo-Passw0rd"), "{text}");
    assert!(plan.buckets.iter().any(|b| matches!(&b.target,
        BucketTarget::StackOwned { predicted_name: Some(n) } if n == "staging-test-uploads-123456789012")));
    assert_eq!(s.fake.mutating_calls(), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn verify_compares_an_environment_with_its_source() {
    let s = Scenario::with_webapp_prod();
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap();
    s.engine
        .execute(&plan, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("{:?}", f.error));
    let (checks, _) = s.engine.verify_env("staging-test", None).await.unwrap();
    assert!(checks.iter().all(|c| c.ok), "{checks:#?}");

    // A changed object in the source is found.
    s.fake
        .put_object(REPORTS, "a+b.txt", b"changed", Default::default(), &[]);
    let (checks, _) = s
        .engine
        .verify_env("staging-test", Some("prod"))
        .await
        .unwrap();
    let failed: Vec<_> = checks.iter().filter(|c| !c.ok).collect();
    assert_eq!(failed.len(), 1, "{checks:#?}");
    assert!(failed[0].detail.contains("a+b.txt"), "{:?}", failed[0]);
}

#[tokio::test(start_paused = true)]
async fn standby_on_and_off() {
    let s = Scenario::with_webapp_prod();
    let env = s.engine.resolve("prod").await.unwrap();
    s.engine.standby_on(&env, &s.emitter).await.unwrap();
    let g = s.source_group();
    assert!(
        g.instances.iter().all(|i| i.lifecycle_state == "Standby"),
        "{g:?}"
    );
    assert_eq!(g.desired_capacity, 0);
    s.engine.standby_off(&env, &s.emitter).await.unwrap();
    assert_source_in_service(&s, "standby off");
}

#[tokio::test(start_paused = true)]
async fn a_foreign_environment_clones_by_its_own_contract() {
    let s = Scenario::new(timings());
    s.fake.create_bucket_now("orders-prod-archive-123456789012");
    let params: Vec<(&str, &str)> = vec![
        ("Stage", "orders-prod"),
        ("ArchiveBucket", "orders-prod-archive-123456789012"),
        ("LogLevel", "debug"),
        ("WorkerThreads", "8"),
    ];
    s.fake.deploy_now("orders-prod", FOREIGN, &params);
    let env = s.engine.resolve("orders-prod").await.unwrap();
    let assets = env.physical_id("Assets").unwrap().to_string();
    fill(&s.fake, &assets);
    fill(&s.fake, "orders-prod-archive-123456789012");
    let mut request = s.request("orders-test");
    request.source = "orders-prod".into();
    let plan = s.engine.preflight(&request, run_id()).await.unwrap();
    assert_eq!(plan.parameters["LogLevel"], "debug");
    assert_eq!(plan.parameters["WorkerThreads"], "8");
    assert_eq!(plan.parameters["Stage"], "orders-test");
    assert!(plan.parameters["RestoreFrom"].starts_with("envclone-"));
    let report = s
        .engine
        .execute(&plan, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("clone failed: {:?}", f.error));
    assert!(
        report.verification.iter().all(|c| c.ok),
        "{:#?}",
        report.verification
    );
    assert_eq!(report.buckets.len(), 2);
}

/// With the pre-copy, the time the source spends in Standby is the snapshot plus the delta,
/// not the full copy: a 1,800 s bucket copy and a 600 s snapshot.
#[tokio::test(start_paused = true)]
async fn the_standby_window_does_not_grow_with_the_bucket() {
    async fn standby_window(precopy: bool, changed_after_precopy: usize) -> Duration {
        let s = Scenario::new(Timings {
            snapshot: Duration::from_secs(600),
            db_create: Duration::from_secs(1),
            stack_resource: Duration::from_millis(100),
            call_latency: Duration::from_millis(1),
            copy_latency: Duration::from_secs(6),
            min_part_size: 1024,
            ..Timings::default()
        });
        s.fake.create_bucket_now(REPORTS);
        s.fake.deploy_now(
            "prod",
            WEBAPP,
            &[("EnvironmentName", "prod"), ("ReportsBucketName", REPORTS)],
        );
        for i in 0..300 {
            s.fake
                .put_object(REPORTS, &format!("r/{i:03}"), b"x", Default::default(), &[]);
        }
        let mut engine = envclone::workflow::clone::CloneEngine {
            cloud: s.fake.cloud(),
            settings: settings(),
        };
        engine.settings.sync.concurrency = 1;
        engine.settings.precopy = precopy;
        let plan = engine
            .preflight(&s.request("window"), run_id())
            .await
            .unwrap();
        // Writers keep going until Standby: some objects change after the pre-copy.
        let fake = s.fake.clone();
        let writer = tokio::spawn(async move {
            // During the pre-copy, after these objects were copied; before Standby.
            tokio::time::sleep(Duration::from_secs(1000)).await;
            for i in 0..changed_after_precopy {
                fake.put_object(
                    REPORTS,
                    &format!("r/{i:03}"),
                    b"changed",
                    Default::default(),
                    &[],
                );
            }
        });
        engine
            .execute(&plan, &s.emitter, std::future::pending())
            .await
            .unwrap_or_else(|f| panic!("clone failed: {:?}", f.error));
        writer.await.unwrap();
        let (entered, exited) = standby_span(&s);
        exited - entered
    }
    let with = standby_window(true, 10).await;
    let without = standby_window(false, 0).await;
    let snapshot = Duration::from_secs(600);
    let delta = Duration::from_secs(10 * 6);
    assert!(
        without >= Duration::from_secs(1800),
        "without pre-copy the window holds the full copy: {without:?}"
    );
    assert!(with >= snapshot, "{with:?}");
    assert!(
        with < snapshot + delta + Duration::from_secs(120),
        "window with pre-copy: {with:?} (without: {without:?})"
    );
}

fn seed_prod_with_app_secrets(s: &Scenario, noecho_defaults: &[&str]) {
    s.fake.create_bucket_now(REPORTS);
    s.fake.deploy_now(
        "prod",
        &with_app_secrets(WEBAPP, noecho_defaults),
        &[
            ("EnvironmentName", "prod"),
            ("ReportsBucketName", REPORTS),
            ("ApiKey", "prod-api-key"),
            ("AppDbPassword", "prod-db-password"),
        ],
    );
}

/// The NoEcho parameters a clone of prod to qa is refused for, and the message.
async fn refused_secrets(s: &Scenario) -> (Vec<String>, String) {
    let err = s
        .engine
        .preflight(&s.request("qa"), run_id())
        .await
        .unwrap_err();
    let PreflightError::SecretParameters { parameters, .. } = &err else {
        panic!("expected SecretParameters, got {err}");
    };
    let names = parameters.iter().map(|p| p.name.clone()).collect();
    (names, err.to_string())
}

fn given(mut request: CloneRequest, values: &[(&str, &str)]) -> CloneRequest {
    for (k, v) in values {
        request
            .parameter_overrides
            .insert(k.to_string(), v.to_string());
    }
    request
}

/// Issue 15, item 1: NoEcho parameters the clone uses never silently change. Before the fix
/// AppDbPassword silently took its default `changeme` (the clone's application would not get
/// the credentials of the database restored from prod) and only ApiKey, the first without a
/// default, was reported.
#[tokio::test(start_paused = true)]
async fn noecho_parameters_the_clone_uses_are_refused_together_unless_given() {
    let s = Scenario::new(timings());
    seed_prod_with_app_secrets(&s, &[]);
    let env = s.engine.resolve("prod").await.unwrap();
    assert_eq!(
        env.stack.parameters["AppDbPassword"], "****",
        "DescribeStacks masks NoEcho"
    );

    let (names, text) = refused_secrets(&s).await;
    assert_eq!(names, ["ApiKey", "AppDbPassword"], "{text}");
    for expected in [
        "2 NoEcho parameter(s)",
        "ApiKey (no default): pass --parameter ApiKey=VALUE",
        "AppDbPassword (the clone would get the template's default",
        "noecho_defaults",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from: {text}");
    }
    // The master password is used only for a new database: a restoring clone never uses it.
    assert!(!text.contains("DBMasterPassword"), "{text}");
    assert_eq!(s.fake.mutating_calls(), Vec::<String>::new());

    let request = given(
        s.request("qa"),
        &[
            ("ApiKey", "prod-api-key"),
            ("AppDbPassword", "prod-db-password"),
        ],
    );
    let plan = s.engine.preflight(&request, run_id()).await.unwrap();
    assert_eq!(plan.parameters["ApiKey"], "prod-api-key");
    assert_eq!(plan.parameters["AppDbPassword"], "prod-db-password");
    assert!(!plan.parameters.contains_key("DBMasterPassword"));
    let steps = plan.steps().join("\n");
    for expected in [
        "ApiKey from --parameter",
        "AppDbPassword from --parameter",
        "DBMasterPassword takes its default, unused by the clone",
    ] {
        assert!(
            steps.contains(expected),
            "{expected:?} missing from:\n{steps}"
        );
    }
    assert!(
        !steps.contains("prod-api-key"),
        "a NoEcho value shown:\n{steps}"
    );
    assert!(
        !steps.contains("prod-db-password"),
        "a NoEcho value shown:\n{steps}"
    );
}

/// Issue 15, item 1: `noecho_defaults` lets a NoEcho parameter the contract declares safe take
/// its default (CloudFormation applies it: the parameter is left out of CreateStack); the others
/// still need --parameter.
#[tokio::test(start_paused = true)]
async fn noecho_defaults_lets_the_listed_parameter_take_its_default() {
    let s = Scenario::new(timings());
    seed_prod_with_app_secrets(&s, &["AppDbPassword"]);

    let (names, text) = refused_secrets(&s).await;
    assert_eq!(names, ["ApiKey"], "{text}");

    let request = given(s.request("qa"), &[("ApiKey", "prod-api-key")]);
    let plan = s.engine.preflight(&request, run_id()).await.unwrap();
    assert!(!plan.parameters.contains_key("AppDbPassword"));
    assert!(plan.noecho.contains(&NoEchoParameter {
        name: "AppDbPassword".into(),
        value: NoEchoValue::ContractDefault {
            dynamic_reference: None
        },
    }));
    assert!(plan
        .steps()
        .join("\n")
        .contains("AppDbPassword takes its default (noecho_defaults)"));

    // A default that is a dynamic reference: named in the refusal and in the plan.
    let secret = "{{resolve:secretsmanager:prod/app:SecretString:password}}";
    let t = with_app_secrets(WEBAPP, &[])
        .replace("Default: changeme", &format!("Default: \"{secret}\""));
    let r = Scenario::new(timings());
    r.fake.create_bucket_now(REPORTS);
    r.fake.deploy_now(
        "prod",
        &t,
        &[
            ("EnvironmentName", "prod"),
            ("ReportsBucketName", REPORTS),
            ("ApiKey", "k"),
        ],
    );
    let (names, text) = refused_secrets(&r).await;
    assert_eq!(names, ["ApiKey", "AppDbPassword"], "{text}");
    assert!(
        text.contains(&format!("its default is the dynamic reference {secret}")),
        "{text}"
    );
    s.engine
        .execute(&plan, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("clone failed: {:?}", f.error));
}
