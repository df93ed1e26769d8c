//! Real Auto Scaling groups (issue 11, items 1–3) on the fake, which scales as AWS does:
//! scheduled actions set the desired capacity, the group launches instances (Pending, then
//! InService) while fewer serve than desired, unless the `Launch` / `ScheduledActions`
//! processes are suspended; EnterStandby/ExitStandby take at most 20 ids; instances leaving
//! Standby pass through Pending, where a launch lifecycle hook can hold them.

use std::time::Duration;

use envclone::events::Phase;
use envclone::fake::MemoryRunStore;

use crate::support::*;

fn warnings(s: &Scenario) -> Vec<String> {
    s.events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.phase == Phase::Warning)
        .map(|e| e.message.clone())
        .collect()
}

fn calls(s: &Scenario, operation: &str) -> usize {
    s.fake
        .calls()
        .iter()
        .filter(|c| c.operation == operation)
        .count()
}

/// Item 1: a group keeps scaling during Standby unless its processes are suspended. A scheduled
/// action launches an instance just before the run (still Pending when Standby starts) and
/// another is due during the snapshot. Before the fix the launched instance went InService
/// while the snapshot was taken (and the second action launched more). Now: the processes are
/// suspended for the run, the launching instance is waited for and put into Standby too, no
/// instance serves when the snapshot is taken, the action due meanwhile is skipped (as AWS
/// does), and the processes come back as they were — the operator's own AZRebalance
/// suspension stays.
#[tokio::test(start_paused = true)]
async fn a_group_that_scales_during_standby_is_held_still_for_the_snapshot() {
    let s = Scenario::with_webapp_prod();
    let group = s.source_group().name;
    s.fake.suspend_now(&group, &["AZRebalance"]);
    s.fake
        .schedule_capacity(&group, Duration::from_millis(1), 4);
    s.fake
        .schedule_capacity(&group, Duration::from_secs(200), 4);
    // The first action is applied and its instance starts launching.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let g = s.source_group();
    assert_eq!(g.desired_capacity, 4);
    assert!(
        g.instances.iter().any(|i| i.lifecycle_state == "Pending"),
        "{g:?}"
    );

    let store = MemoryRunStore::default();
    clone_to_end(&s, &store, "staging-test").await;

    let serving = s.fake.serving_at_snapshots();
    assert!(!serving.is_empty());
    for (snapshot, ids) in &serving {
        assert!(
            ids.is_empty(),
            "instances {ids:?} were serving when {snapshot} was taken"
        );
    }
    let g = s.source_group();
    assert_eq!(g.suspended_processes, vec!["AZRebalance".to_string()]);
    assert_eq!(
        (g.min_size, g.max_size, g.desired_capacity),
        (1, 4, 4),
        "{g:?}"
    );
    assert_eq!(g.instances.len(), 4, "{g:?}");
    assert!(
        g.instances.iter().all(|i| i.lifecycle_state == "InService"),
        "{g:?}"
    );
}

/// Item 1, every path: the processes suspended by a run are resumed when the run fails at
/// any of its mutating calls, and the source is back in service — except where the failed call
/// is itself one of the calls that return it (ExitStandby, the size restore, ResumeProcesses):
/// then the run fails naming the group, and resumes what it still can.
#[tokio::test(start_paused = true)]
async fn suspended_processes_are_resumed_on_every_failure() {
    let s = Scenario::with_webapp_prod();
    let store = MemoryRunStore::default();
    let before = s.fake.mutating_calls().len();
    clone_to_end(&s, &store, "staging-test").await;
    let made: Vec<String> = s.fake.mutating_calls()[before..].to_vec();
    let first_exit = made
        .iter()
        .position(|c| c == "autoscaling:ExitStandby")
        .expect("the run left Standby");
    let mut failed = 0;
    for (index, operation) in made.iter().enumerate() {
        let n = index as u64 + 1;
        let s = Scenario::with_webapp_prod();
        let store = MemoryRunStore::default();
        let plan = s
            .engine
            .preflight(&s.request("staging-test"), run_id())
            .await
            .unwrap();
        s.fake.fail_nth_mutating_call(n);
        let result = s
            .engine
            .run_clone(&plan, &store, &s.emitter, std::future::pending(), None)
            .await;
        let context = format!("failure of mutating call {n} ({operation})");
        let returning = index >= first_exit && operation.starts_with("autoscaling:");
        let g = s.source_group();
        if returning {
            let failure = result
                .err()
                .unwrap_or_else(|| panic!("{context}: must fail"));
            assert!(
                failure.error.to_string().contains(&g.name),
                "{context}: {}",
                failure.error
            );
        } else {
            if result.is_err() {
                failed += 1;
            }
            assert_source_in_service(&s, &context);
        }
        if operation != "autoscaling:ResumeProcesses" {
            assert!(
                g.suspended_processes.is_empty(),
                "{context}: {:?}",
                g.suspended_processes
            );
        }
    }
    assert!(failed > 5, "{failed}");
}

/// Item 2: EnterStandby and ExitStandby take at most 20 ids a call. A group of 60 instances
/// goes into Standby and back in batches. Before the fix the single call of 60 ids was refused
/// and the clone failed.
#[tokio::test(start_paused = true)]
async fn sixty_instances_enter_and_leave_standby_twenty_at_a_time() {
    let s = Scenario::with_webapp_prod();
    let group = s.source_group().name;
    s.fake.grow_group_now(&group, 57);
    let g = s.source_group();
    assert_eq!(g.instances.len(), 60);
    let sizes = (g.min_size, g.max_size, g.desired_capacity);

    let store = MemoryRunStore::default();
    clone_to_end(&s, &store, "staging-test").await;
    assert_eq!(calls(&s, "autoscaling:EnterStandby"), 3);
    assert_eq!(calls(&s, "autoscaling:ExitStandby"), 3);
    let g = s.source_group();
    assert_eq!((g.min_size, g.max_size, g.desired_capacity), sizes);
    assert!(
        g.instances.iter().all(|i| i.lifecycle_state == "InService"),
        "{g:?}"
    );
    for (snapshot, ids) in s.fake.serving_at_snapshots() {
        assert!(ids.is_empty(), "{snapshot}: {ids:?}");
    }
}

/// Item 3a: an instance terminated while in Standby (a Spot reclaim). The run does not wait
/// for it, reports it, and puts the group's sizes back; the group then replaces it.
#[tokio::test(start_paused = true)]
async fn an_instance_terminated_in_standby_is_reported_and_replaced() {
    let s = Scenario::with_webapp_prod();
    let group = s.source_group().name;
    let victim = s.source_group().instances[0].id.clone();
    let store = MemoryRunStore::default();
    let reclaim = async {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let g = s.source_group();
            if g.instances
                .iter()
                .any(|i| i.id == victim && i.lifecycle_state == "Standby")
            {
                s.fake.terminate_instance(&group, &victim);
                return;
            }
        }
    };
    let (report, ()) = tokio::join!(clone_to_end(&s, &store, "staging-test"), reclaim);
    assert!(!report.standby.is_empty());
    assert!(
        warnings(&s)
            .iter()
            .any(|w| w.contains(&victim) && w.contains("left the group")),
        "{:?}",
        warnings(&s)
    );
    let g = s.source_group();
    assert_eq!(
        (g.min_size, g.max_size, g.desired_capacity),
        (1, 4, 3),
        "{g:?}"
    );
    assert!(g.suspended_processes.is_empty(), "{g:?}");
    // Launch is back: the group replaces the lost instance.
    tokio::time::sleep(Duration::from_secs(120)).await;
    let g = s.source_group();
    assert_eq!(g.instances.len(), 3, "{g:?}");
    assert!(
        g.instances.iter().all(|i| i.lifecycle_state == "InService"),
        "{g:?}"
    );
}

/// Item 3b: a launch lifecycle hook holds the instances in Pending:Wait on ExitStandby. The
/// run stops waiting after a grace period, reports them, and still puts the sizes back.
/// Before the fix it waited for InService until its timeout and failed.
#[tokio::test(start_paused = true)]
async fn instances_held_by_a_lifecycle_hook_are_reported() {
    let s = Scenario::with_webapp_prod();
    let group = s.source_group().name;
    s.fake.hold_launches(&group);
    let store = MemoryRunStore::default();
    clone_to_end(&s, &store, "staging-test").await;
    assert!(
        warnings(&s).iter().any(|w| w.contains("Pending:Wait")),
        "{:?}",
        warnings(&s)
    );
    let g = s.source_group();
    assert_eq!(
        (g.min_size, g.max_size, g.desired_capacity),
        (1, 4, 3),
        "{g:?}"
    );
    assert!(
        g.instances
            .iter()
            .all(|i| i.lifecycle_state == "Pending:Wait"),
        "{g:?}"
    );
    assert!(g.suspended_processes.is_empty(), "{g:?}");
}

/// Item 3c: the desired capacity raised during Standby (by hand; scaling is suspended) would
/// take ExitStandby past MaxSize. MaxSize is raised for the call and MinSize, MaxSize and the
/// desired capacity are put back. Before the fix ExitStandby was refused and the instances
/// stayed in Standby.
#[tokio::test(start_paused = true)]
async fn a_desired_capacity_raised_during_standby_does_not_strand_the_instances() {
    let s = Scenario::with_webapp_prod();
    let group = s.source_group().name;
    let store = MemoryRunStore::default();
    let raise = async {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let g = s.source_group();
            if g.instances.iter().all(|i| i.lifecycle_state == "Standby") {
                s.fake.set_desired_now(&group, 3);
                return;
            }
        }
    };
    tokio::join!(clone_to_end(&s, &store, "staging-test"), raise);
    assert!(
        warnings(&s).iter().any(|w| w.contains("past MaxSize")),
        "{:?}",
        warnings(&s)
    );
    assert_source_in_service(&s, "desired raised during Standby");
    let g = s.source_group();
    assert_eq!(g.max_size, 4, "{g:?}");
}

/// webapp.yaml where production owns its reports bucket (created when `ReportsBucketName` is
/// empty, the common `Condition:` pattern) and clones get one passed in by parameter.
fn owned_reports_template() -> String {
    WEBAPP
        .replace(
            "    MinLength: 3\n    MaxLength: 63\n    AllowedPattern: \"^[a-z0-9][a-z0-9.-]*[a-z0-9]$\"\n",
            "    Default: \"\"\n",
        )
        .replace(
            "Conditions:\n",
            "Conditions:\n  OwnReports: !Equals [!Ref ReportsBucketName, \"\"]\n",
        )
        .replace(
            "  Uploads:\n    Type: AWS::S3::Bucket\n",
            "  Reports:\n    Type: AWS::S3::Bucket\n    Condition: OwnReports\n    Properties:\n      BucketName: !Sub \"${EnvironmentName}-archive-${AWS::AccountId}\"\n\n  Uploads:\n    Type: AWS::S3::Bucket\n",
        )
}

/// Issue 11, item 4: a bucket the source stack owns, handed to the clone by parameter. Before
/// the fix preflight refused it ("passes no bucket in parameter"). Now its source is the
/// stack's own bucket, the clone gets an envclone-made bucket passed in, and — being passed by
/// parameter — it is bulk-copied before Standby.
#[tokio::test(start_paused = true)]
async fn a_bucket_production_owns_is_handed_to_the_clone_by_parameter() {
    let template = owned_reports_template();
    assert!(
        template.contains("Condition: OwnReports"),
        "the fixture edit took"
    );
    let s = Scenario::new(timings());
    s.fake.deploy_now(
        "prod",
        &template,
        &[("EnvironmentName", "prod"), ("DesiredCapacity", "3")],
    );
    let owned = "prod-archive-123456789012";
    assert!(s.fake.bucket_names().contains(&owned.to_string()));
    fill(&s.fake, owned);
    fill(&s.fake, UPLOADS);

    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let reports = plan
        .buckets
        .iter()
        .find(|b| b.logical_id == "Reports")
        .unwrap();
    assert_eq!(reports.source_bucket, owned);
    let passed = plan.parameters["ReportsBucketName"].clone();
    assert!(!passed.is_empty() && passed != owned, "{passed}");

    let store = MemoryRunStore::default();
    let report = s
        .engine
        .run_clone(&plan, &store, &s.emitter, std::future::pending(), None)
        .await
        .unwrap_or_else(|f| panic!("{}", f.error));
    assert!(report.buckets.iter().any(|b| b.target == passed));
    assert_eq!(s.fake.object_keys(&passed), s.fake.object_keys(owned));
    // The clone stack did not create a bucket of its own for Reports (its condition is false).
    assert_eq!(s.fake.recorded_physical_id("staging-test", "Reports"), None);
    // Pre-copied: the bulk of its objects was copied before the first EnterStandby.
    let (entered, _) = standby_span(&s);
    let copies_before = s
        .fake
        .calls()
        .iter()
        .filter(|c| {
            (c.operation == "s3:CopyObject" || c.operation == "s3:CreateMultipartUpload")
                && c.at < entered
        })
        .count();
    assert!(
        copies_before >= s.fake.object_keys(owned).len(),
        "{copies_before} copies before Standby"
    );
    // `envclone verify` compares the clone's bucket with the source stack's own (found on the
    // stand-in: before the fix it failed "prod has no bucket Reports to compare with", as if
    // only the empty parameter named the source's bucket).
    let (checks, reports) = s
        .engine
        .verify_env("staging-test", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(checks.iter().all(|c| c.ok), "{checks:?}");
    assert!(
        reports
            .iter()
            .any(|r| r.source == format!("s3://{owned}/") && r.target == format!("s3://{passed}/")),
        "{reports:?}"
    );
}

/// Issue 11, item 8: an object deleted from the source after the pre-copy (before Standby) is
/// deleted from the bucket envclone created by the Standby pass, so the clone verifies. Before
/// the fix the delta pass copied only, and verification failed on the object "in the target
/// but not in the source".
#[tokio::test(start_paused = true)]
async fn an_object_deleted_from_the_source_during_the_run_is_deleted_from_the_copy() {
    let s = Scenario::with_webapp_prod();
    let store = MemoryRunStore::default();
    let objects = s.fake.cloud().objects.clone();
    let delete = async {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if s.fake
                .calls()
                .iter()
                .any(|c| c.operation == "autoscaling:SuspendProcesses")
            {
                objects
                    .delete_object(REPORTS, "data/007.bin")
                    .await
                    .unwrap();
                return;
            }
        }
    };
    let (report, ()) = tokio::join!(clone_to_end(&s, &store, "staging-test"), delete);
    let target = &report
        .buckets
        .iter()
        .find(|b| b.source == REPORTS)
        .unwrap()
        .target;
    assert!(
        s.fake.object(target, "data/006.bin").is_some()
            && s.fake.object(target, "data/007.bin").is_none(),
        "{:?}",
        s.fake.object_keys(target)
    );
}
