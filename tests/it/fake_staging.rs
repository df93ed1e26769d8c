//! Templates nobody here wrote (issue 15, item 2) on the fake: a template over CreateStack's
//! 51,200-byte TemplateBody limit is staged in S3 and the clone stack created from its URL, the
//! staging removed on success, on failure, by abort after a crash at any moment around it, and
//! by gc when a crashed run left it; nested stacks are followed for stateful resources.
//!
//! Each of these failed before the fix: the fake answers a TemplateBody over 51,200 bytes with
//! CloudFormation's ValidationError (so the clone failed at stack.create), and a nested stack's
//! database was not looked for (so the clone went ahead and would have made it empty).

use std::time::Duration;

use envclone::fake::MemoryRunStore;
use envclone::ports::{PortError, TEMPLATE_BODY_MAX};
use envclone::workflow::migrate::{MigratePhase, MigrationState};
use envclone::workflow::recovery::{self, ClonePhase};
use envclone::workflow::PreflightError;

use crate::support::*;

const RUN: &str = "20261121000000-beef";
const STAGING_BUCKET: &str = "envclone-tpl-123456789012-20261121000000-beef";

/// The reference template as large templates are in the wild (see `with_ami_mappings`).
pub fn big_webapp() -> String {
    with_ami_mappings(WEBAPP)
}

/// `template` with the same resources and a `Mappings` table of AMI ids per region and instance
/// family (the usual reason a template grows past 51,200 bytes): over the TemplateBody limit,
/// well under S3's 1 MB.
fn with_ami_mappings(template: &str) -> String {
    let regions = [
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "af-south-1",
        "ap-east-1",
        "ap-south-1",
        "ap-south-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-southeast-3",
        "ap-southeast-4",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-northeast-3",
        "ca-central-1",
        "ca-west-1",
        "eu-central-1",
        "eu-central-2",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "eu-south-1",
        "eu-south-2",
        "eu-north-1",
        "il-central-1",
        "me-south-1",
        "me-central-1",
        "sa-east-1",
    ];
    let families = [
        "t3", "t3a", "t4g", "m5", "m5a", "m6i", "m6a", "m6g", "m7i", "m7g", "c5", "c5a", "c6i",
        "c6a", "c6g", "c7i", "c7g", "r5", "r5a", "r6i", "r6a", "r6g", "r7i", "r7g",
    ];
    let mut mappings = String::from("Mappings:\n  AmiByRegionAndFamily:\n");
    let mut n: u64 = 0x1234_5678_9abc;
    for region in regions {
        mappings.push_str(&format!("    {region}:\n"));
        for family in families {
            n = n
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            mappings.push_str(&format!(
                "      {family}: ami-0{:016x}  # {family} AL2023 {region}\n",
                n
            ));
        }
    }
    mappings.push('\n');
    let body = template.replacen("\nConditions:", &format!("\n{mappings}Conditions:"), 1);
    assert!(
        body.len() > TEMPLATE_BODY_MAX && body.len() < 1_000_000,
        "{}",
        body.len()
    );
    body
}

/// `prod` deployed from the large template (deployed as it would have been: from S3).
fn big_prod() -> Scenario {
    let s = Scenario::new(timings());
    s.deploy_prod(&big_webapp());
    s
}

/// The number (counted from 1) of the scenario's last mutating call `op` before its first
/// CreateStack.
fn last_before_create_stack(s: &Scenario, op: &str) -> u64 {
    let calls = s.fake.mutating_calls();
    let create_stack = calls
        .iter()
        .position(|c| c == "cloudformation:CreateStack")
        .expect("a CreateStack");
    calls[..create_stack]
        .iter()
        .rposition(|c| c == op)
        .unwrap_or_else(|| panic!("no {op} before CreateStack")) as u64
        + 1
}

fn staging_buckets(s: &Scenario) -> Vec<String> {
    s.fake
        .bucket_names()
        .into_iter()
        .filter(|b| b.starts_with("envclone-tpl-"))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_template_over_51200_bytes_is_created_from_s3_and_the_staging_removed() {
    let s = big_prod();
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap();
    let staging = plan
        .template_staging
        .clone()
        .expect("over the limit: staged");
    assert_eq!(staging.bucket, STAGING_BUCKET);
    assert!(staging.own_bucket);
    assert!(
        plan.steps().iter().any(|st| st.contains(STAGING_BUCKET)),
        "the plan says where: {:#?}",
        plan.steps()
    );
    s.engine
        .run_clone(&plan, &store, &s.emitter, std::future::pending(), None)
        .await
        .unwrap_or_else(|f| panic!("clone failed: {}", f.error));

    // Created from the URL of the staged object, which CloudFormation read whole.
    let sources = s.fake.create_stack_sources();
    let (_, url) = sources
        .iter()
        .find(|(name, _)| name == "staging-test")
        .expect("CreateStack of the clone");
    assert_eq!(
        url.as_deref(),
        Some(
            "https://envclone-tpl-123456789012-20261121000000-beef.s3.us-east-1.amazonaws.com/\
             staging-test.template"
        )
    );
    assert_eq!(
        s.fake
            .cloud()
            .stacks
            .template_body("staging-test")
            .await
            .unwrap(),
        big_webapp()
    );
    // The staging bucket is gone, and nothing of it is left in the run's record.
    assert!(staging_buckets(&s).is_empty(), "{:?}", staging_buckets(&s));
    let record = recovery::load(&store, RUN).unwrap().unwrap();
    assert_eq!(record.phase, ClonePhase::Succeeded);
    assert_source_in_service(&s, "after the clone");
}

#[tokio::test(start_paused = true)]
async fn with_state_in_s3_the_template_is_staged_there_and_removed() {
    let mut s = big_prod();
    s.fake.create_bucket_now("ops-state");
    s.engine.settings.state_bucket = Some(("ops-state".into(), "envclone".into()));
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap();
    let staging = plan.template_staging.clone().unwrap();
    assert_eq!(
        (
            staging.bucket.as_str(),
            staging.key.as_str(),
            staging.own_bucket
        ),
        (
            "ops-state",
            "envclone/staging/20261121000000-beef/staging-test.template",
            false
        )
    );
    s.engine
        .execute(&plan, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("clone failed: {}", f.error));
    let sources = s.fake.create_stack_sources();
    assert!(sources.iter().any(|(name, url)| name == "staging-test"
        && url.as_deref()
            == Some(
                "https://ops-state.s3.us-east-1.amazonaws.com/envclone/staging/\
                 20261121000000-beef/staging-test.template"
            )));
    assert!(s.fake.object_keys("ops-state").is_empty());
    assert!(staging_buckets(&s).is_empty(), "no bucket of its own");
}

#[tokio::test(start_paused = true)]
async fn a_refused_create_stack_removes_the_staging_too() {
    let s = big_prod();
    s.fake.fail(
        "cloudformation:CreateStack",
        PortError::failed(
            "cloudformation:CreateStack",
            "InsufficientCapabilitiesException: Requires capabilities : [CAPABILITY_IAM]",
        ),
        1,
    );
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap();
    let failure = s
        .engine
        .execute(&plan, &s.emitter, std::future::pending())
        .await
        .expect_err("CreateStack refused");
    assert!(failure.error.to_string().contains("CAPABILITY_IAM"));
    assert!(staging_buckets(&s).is_empty(), "{:?}", staging_buckets(&s));
    assert!(
        !failure
            .left_behind
            .iter()
            .any(|l| l.to_string().contains("envclone-tpl")),
        "removed, so not reported as left: {:?}",
        failure.left_behind
    );
    assert_source_in_service(&s, "after the refused CreateStack");
}

#[tokio::test(start_paused = true)]
async fn abort_after_a_crash_around_the_staging_removes_it() {
    // Where the staging calls fall in an uninterrupted run.
    let s = big_prod();
    let store = MemoryRunStore::default();
    clone_to_end(&s, &store, "staging-test").await;
    let calls = s.fake.mutating_calls();
    // CreateBucket of the staging bucket, its PutObject, CreateStack, then the removals (the
    // n-th call, counted from 1).
    let create_stack = calls
        .iter()
        .position(|c| c == "cloudformation:CreateStack")
        .unwrap();
    let first_after = |op: &str| {
        (create_stack + calls[create_stack..].iter().position(|c| c == op).unwrap()) as u64 + 1
    };
    let window = [
        last_before_create_stack(&s, "s3:CreateBucket"),
        last_before_create_stack(&s, "s3:PutObject"),
        create_stack as u64 + 1,
        first_after("s3:DeleteObject"),
        first_after("s3:DeleteBucket"),
    ];
    for n in window {
        let s = big_prod();
        let store = MemoryRunStore::default();
        assert!(crash_at(&s, &store, n).await, "call {n} happened");
        let mut record = recovery::load(&store, RUN).unwrap().unwrap();
        s.engine
            .abort_clone(&mut record, &store, &s.emitter, false)
            .await
            .unwrap_or_else(|e| panic!("crash after call {n}: abort failed: {e}"));
        assert!(
            staging_buckets(&s).is_empty(),
            "crash after call {n} ({}): {:?}",
            calls[n as usize - 1],
            staging_buckets(&s)
        );
        assert_eq!(s.fake.live_stack_names(), vec!["prod".to_string()]);
        assert_source_in_service(&s, &format!("abort after call {n}"));
    }
}

#[tokio::test(start_paused = true)]
async fn gc_finds_the_staging_bucket_a_crashed_run_left() {
    let s = big_prod();
    let store = MemoryRunStore::default();
    // Cut right after the template was put in the staging bucket (the last PutObject before
    // CreateStack in an uninterrupted run).
    let full = big_prod();
    clone_to_end(&full, &MemoryRunStore::default(), "staging-test").await;
    let put = last_before_create_stack(&full, "s3:PutObject");
    assert!(crash_at(&s, &store, put).await);
    assert_eq!(staging_buckets(&s), vec![STAGING_BUCKET.to_string()]);

    // While a run may still be using it, gc leaves it.
    let now = s.engine.cloud.clock.now();
    assert!(s.engine.staging_leftovers(now).await.unwrap().is_empty());

    tokio::time::advance(Duration::from_secs(3700)).await;
    let now = s.engine.cloud.clock.now();
    let leftovers = s.engine.staging_leftovers(now).await.unwrap();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    assert_eq!(leftovers[0].bucket, STAGING_BUCKET);
    assert_eq!(leftovers[0].run_id, RUN);
    assert!(leftovers[0].key.is_none());
    s.engine
        .remove_staging_leftover(&leftovers[0])
        .await
        .unwrap();
    assert!(staging_buckets(&s).is_empty());
    // A bucket with the prefix that is not a run's staging bucket is never taken.
    s.fake.create_bucket_now("envclone-tpl-someone-elses");
    tokio::time::advance(Duration::from_secs(3700)).await;
    assert!(s
        .engine
        .staging_leftovers(s.engine.cloud.clock.now())
        .await
        .unwrap()
        .is_empty());
}

const TEMPLATES: &str = "prod-templates-123456789012";

/// `prod` whose template nests a stack (from `TEMPLATES`/`key`) holding `nested_body`.
fn prod_with_nested(nested_body: &str) -> Scenario {
    prod_with_nested_in(WEBAPP, nested_body)
}

/// `parent` (a variant of the webapp stack) with a nested stack `DataStack` of `nested_body`.
fn prod_with_nested_in(parent: &str, nested_body: &str) -> Scenario {
    let s = Scenario::new(timings());
    s.fake.create_bucket_now(TEMPLATES);
    s.fake.put_object(
        TEMPLATES,
        "nested/data.yaml",
        nested_body.as_bytes(),
        Default::default(),
        &[],
    );
    let parent = parent.replacen(
        "\nOutputs:",
        &format!(
            "  DataStack:\n    Type: AWS::CloudFormation::Stack\n    Properties:\n      \
             TemplateURL: https://{TEMPLATES}.s3.us-east-1.amazonaws.com/nested/data.yaml\n      \
             Parameters:\n        EnvironmentName: !Ref EnvironmentName\n\nOutputs:"
        ),
        1,
    );
    s.deploy_prod(&parent);
    s
}

#[tokio::test(start_paused = true)]
async fn a_database_inside_a_nested_stack_is_refused_before_any_change() {
    let s = prod_with_nested(
        "AWSTemplateFormatVersion: \"2010-09-09\"\n\
         Parameters:\n  EnvironmentName: { Type: String }\n\
         Resources:\n  \
           AnalyticsDb:\n    Type: AWS::RDS::DBInstance\n    Properties:\n      \
             Engine: postgres\n      DBInstanceClass: db.t3.micro\n      AllocatedStorage: \"20\"\n",
    );
    let before = s.fake.mutating_calls().len();
    let err = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .expect_err("refused");
    assert!(matches!(err, PreflightError::Unsupported { .. }), "{err:?}");
    let message = err.to_string();
    for part in [
        "AWS::RDS::DBInstance AnalyticsDb",
        "nested stack DataStack",
        "arn:aws:cloudformation:",
        "nothing was changed",
    ] {
        assert!(message.contains(part), "{part:?} in {message}");
    }
    assert_eq!(s.fake.mutating_calls().len(), before, "no change");
}

/// Issue 12 with nested stacks: a queue inside a nested stack is state the clone's nested stack
/// (created from the same TemplateURL) would start without. Preflight judges the nested stack's
/// resources one by one as `DataStack/Jobs`, refuses before any change, and an `ignore:` entry
/// of that name with a reason lets the clone through. Before the merge of the two features the
/// nested stack was either an unknown type as a whole or not looked into for queues.
#[tokio::test(start_paused = true)]
async fn state_inside_a_nested_stack_is_judged_resource_by_resource() {
    let nested = "AWSTemplateFormatVersion: \"2010-09-09\"\n\
         Parameters:\n  EnvironmentName: { Type: String }\n\
         Resources:\n  \
           Jobs:\n    Type: AWS::SQS::Queue\n  \
           Events:\n    Type: AWS::SNS::Topic\n";
    let s = prod_with_nested(nested);
    let before = s.fake.mutating_calls().len();
    let err = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .expect_err("refused");
    assert!(matches!(err, PreflightError::Uncovered { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("AWS::SQS::Queue DataStack/Jobs"),
        "{message}"
    );
    assert!(
        !message.contains("Events"),
        "a topic is stateless: {message}"
    );
    assert!(!message.contains("AWS::CloudFormation::Stack"), "{message}");
    assert_eq!(s.fake.mutating_calls().len(), before, "no change");

    let ignoring = WEBAPP.replacen(
        "    environment_parameter: EnvironmentName\n",
        "    environment_parameter: EnvironmentName\n    ignore:\n      \
         DataStack/Jobs: { reason: \"jobs are re-queued by the scheduler\" }\n",
        1,
    );
    let s = prod_with_nested_in(&ignoring, nested);
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.inventory.ignored.len(), 1, "{:?}", plan.inventory);
    assert_eq!(plan.inventory.ignored[0].logical_id, "DataStack/Jobs");
    assert!(plan
        .inventory
        .stateless
        .contains(&"DataStack/Events".to_string()));
}

#[tokio::test(start_paused = true)]
async fn a_nested_stack_without_stateful_resources_is_copied_as_it_is() {
    let nested = "AWSTemplateFormatVersion: \"2010-09-09\"\n\
         Parameters:\n  EnvironmentName: { Type: String }\n\
         Resources:\n  \
           AppTopic:\n    Type: AWS::SNS::Topic\n    Properties:\n      \
             TopicName: !Sub \"${EnvironmentName}-events\"\n";
    let s = prod_with_nested(nested);
    let store = MemoryRunStore::default();
    clone_to_end(&s, &store, "staging-test").await;
    // The clone has its own nested stack, created from the parent's TemplateURL unchanged.
    let resources = s
        .fake
        .cloud()
        .stacks
        .resources("staging-test")
        .await
        .unwrap();
    let data = resources
        .iter()
        .find(|r| r.logical_id == "DataStack")
        .unwrap();
    let nested_id = data.physical_id.clone().unwrap();
    assert!(
        nested_id.contains(":stack/staging-test-DataStack-"),
        "{nested_id}"
    );
    assert_eq!(
        s.fake
            .cloud()
            .stacks
            .template_body(&nested_id)
            .await
            .unwrap(),
        nested
    );
    // The nested stacks carry their root's tags but are not environments of their own.
    let envs = s.engine.list_environments().await.unwrap();
    assert_eq!(
        envs.iter().map(|e| e.stack.as_str()).collect::<Vec<_>>(),
        vec!["staging-test"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_migration_onto_a_large_template_stages_it_and_abort_after_a_crash_removes_it() {
    let large_v2 = with_ami_mappings(include_str!("../../stacks/webapp-v2.yaml"));
    let mut request = crate::fake_migrate::request();
    request.template.1 = large_v2.clone();

    // Uninterrupted: the new stack is created from the staged URL, the staging removed.
    let (s, _) = crate::fake_migrate::prod().await;
    let plan = s
        .engine
        .preflight_migrate(&request, run_id())
        .await
        .unwrap();
    let state = s
        .engine
        .migrate(
            &plan,
            &MemoryRunStore::default(),
            &s.emitter,
            std::future::pending(),
        )
        .await
        .unwrap_or_else(|f| panic!("migrate failed: {}", f.error));
    assert_eq!(state.phase, MigratePhase::Swapped);
    assert!(s
        .fake
        .create_stack_sources()
        .iter()
        .any(|(name, url)| name == "prod-mbeef"
            && url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://envclone-tpl-"))));
    assert!(staging_buckets(&s).is_empty(), "{:?}", staging_buckets(&s));
    let put = last_before_create_stack(&s, "s3:PutObject");

    // Killed right after the template was staged: abort removes the staging bucket too.
    let (s, record) = crate::fake_migrate::prod().await;
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight_migrate(&request, run_id())
        .await
        .unwrap();
    let crash = s.fake.crash_after_nth_mutating_call(put);
    tokio::select! {
        biased;
        () = crash.notified() => {}
        _ = s.engine.migrate(&plan, &store, &s.emitter, std::future::pending()) => {
            panic!("the migration ended before call {put}")
        }
    }
    assert_eq!(staging_buckets(&s), vec![STAGING_BUCKET.to_string()]);
    let mut state: MigrationState =
        serde_json::from_value(store.0.lock().unwrap()[RUN].clone()).unwrap();
    s.engine
        .abort_migration(&mut state, &store, &s.emitter)
        .await
        .unwrap_or_else(|e| panic!("abort failed: {e}"));
    assert!(staging_buckets(&s).is_empty(), "{:?}", staging_buckets(&s));
    crate::fake_migrate::assert_source_as_it_was(&s, &record, "abort after staging");
}
