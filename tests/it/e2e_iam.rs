//! The IAM policy checked against the AWS calls envclone actually makes (issue 12, item "the
//! IAM policy test must not parse source text to find the calls"): the built binary is run
//! through its commands on the moto stand-in with `ENVCLONE_RECORD_CALLS` set, which makes
//! every SDK client record each operation it sends (`aws::CallRecord`, an SDK interceptor).
//! Before, a unit test scanned aws.rs for `port_error("…"` strings: a call named wrongly, or
//! made through a helper the scan did not know, went unchecked.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use envclone::iam::{granted, operations, policy, Scope};

use crate::e2e::{params, s3, stack, text, with_zone_id, StandIn};

const STATE: &str = "s3://envclone-iam-state/team";

/// Runs the built envclone with `args`, recording its AWS calls to `record`.
fn envclone(standin: &StandIn, state_dir: &Path, record: &Path, args: &[&str]) -> Output {
    standin
        .command(env!("CARGO_BIN_EXE_envclone"))
        .env(envclone::aws::RECORD_CALLS_ENV, record)
        .arg("--state-dir")
        .arg(state_dir)
        .args(["--state", STATE])
        .args(args)
        .output()
        .expect("envclone runs")
}

/// `envclone args` must succeed.
fn ok(standin: &StandIn, state_dir: &Path, record: &Path, args: &[&str]) -> Output {
    let out = envclone(standin, state_dir, record, args);
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        text(&out),
        standin.log()
    );
    out
}

/// The distinct calls recorded in `file` (several processes append to it).
fn recorded(file: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("no calls were recorded in {}: {e}", file.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

/// The run id of the one run of `command` in `state` `status --output json` lists.
fn run_of(
    standin: &StandIn,
    state_dir: &Path,
    record: &Path,
    command: &str,
    state: &str,
) -> String {
    let out = ok(standin, state_dir, record, &["--output", "json", "status"]);
    let runs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|r: &serde_json::Value| r["command"] == command && r["state"] == state)
        .collect();
    assert_eq!(runs.len(), 1, "one {command} run {state}: {}", text(&out));
    runs[0]["run_id"].as_str().unwrap().to_string()
}

/// The IAM actions the recorded `calls` need; panics naming a call with no IAM mapping.
fn actions_of(calls: &BTreeSet<String>) -> BTreeSet<&'static str> {
    calls
        .iter()
        .flat_map(|call| {
            let (_, actions) = operations()
                .into_iter()
                .find(|(op, _)| op == call)
                .unwrap_or_else(|| {
                    panic!(
                        "envclone called {call}, which iam::operations() does not map to IAM \
                         actions: add it to iam::ENGINE_OPERATIONS, or to its kind's \
                         iam_operations (and its actions to the policy)"
                    )
                });
            actions.iter().copied()
        })
        .collect()
}

/// The calls a run of every command makes, each mapped and granted; clone's alone granted by
/// the clone-scope policy.
#[tokio::test(flavor = "multi_thread")]
async fn the_policy_grants_every_call_the_commands_make_on_the_stand_in() {
    let standin = StandIn::start();
    // A foreign environment (RDS instance, a bucket passed by parameter and one of the stack,
    // a multipart object, an Auto Scaling group, a Route 53 entry record), and an Aurora one.
    standin.seed(
        "orders-prod",
        "tests/fixtures/foreign.yaml",
        &["--parameter", "LogLevel=debug"],
    );
    standin.seed("ledger", "stacks/aurora.yaml", &[]);
    let config = standin.sdk().await;
    let s3c = s3(&config);
    for bucket in ["envclone-iam-state", "envclone-iam-sync"] {
        s3c.create_bucket().bucket(bucket).send().await.unwrap();
    }
    // A team's bucket configuration on the bucket passed by parameter: the clone's bucket is
    // given it (versioning, encryption, public access block, ownership, CORS, lifecycle, policy).
    let archive = params(&stack(&config, "orders-prod").await)["ArchiveBucket"].clone();
    crate::e2e_buckets::configure(&s3c, &archive).await;
    let dir = tempfile::tempdir().unwrap();
    let clone_calls = dir.path().join("clone.calls");
    let other_calls = dir.path().join("other.calls");
    let state = tempfile::tempdir().unwrap();
    let state = state.path();

    // clone alone, recorded apart: an RDS instance with a multipart object, and Aurora.
    ok(
        &standin,
        state,
        &clone_calls,
        &[
            "clone",
            "orders-prod",
            "orders-test",
            "--yes",
            "--multipart-threshold",
            "8388608",
        ],
    );
    ok(
        &standin,
        state,
        &clone_calls,
        &["clone", "ledger", "ledger-test", "--yes", "--ttl", "1s"],
    );
    // DynamoDB tables: one the clone stack creates, one passed by parameter (created, filled
    // and tagged by the run; destroy deletes it after reading its tags).
    let tables =
        envclone::aws::dynamodb::DynamoDb::new(&config, &envclone::aws::CallRecord::from_env());
    crate::e2e_dynamodb::table_with_items(&tables, "shop-carts", 30).await;
    let shop = dir.path().join("shop.yaml");
    std::fs::write(&shop, crate::e2e_dynamodb::webapp_with_tables(true)).unwrap();
    standin.seed(
        "shop",
        shop.to_str().unwrap(),
        &["--parameter", "CartsTableName=shop-carts"],
    );
    let orders = crate::e2e_dynamodb::table_of(&config, "shop").await;
    crate::e2e_dynamodb::fill(&tables, &orders, 30).await;
    ok(
        &standin,
        state,
        &clone_calls,
        &["clone", "shop", "shop-test", "--yes"],
    );

    // Every other command.
    let other = |args: &[&str]| ok(&standin, state, &other_calls, args);
    other(&["destroy", "shop-test", "--yes"]);
    other(&["verify", "orders-test"]);
    other(&["verify", "ledger-test", "--against", "ledger"]);
    other(&["status"]);
    let listed = other(&["--output", "json", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).lines().count(),
        2,
        "orders-test and ledger-test: {}",
        text(&listed)
    );
    other(&["standby", "orders-prod", "on", "--yes"]);
    other(&["standby", "orders-prod", "off", "--yes"]);
    // A copy in parts refused for good (a part's UploadPartCopy answered AccessDenied) is
    // aborted: its parts are billed until then.
    standin
        .add_fault(
            r#"{"match": "s3:UploadPartCopy", "status": 403, "code": "AccessDenied", "count": 1}"#,
        )
        .await;
    let sync = [
        "s3",
        "sync",
        &format!("s3://{archive}"),
        "s3://envclone-iam-sync",
        "--delete",
        "--verify",
        "--multipart-threshold",
        "8388608",
    ];
    let refused = envclone(&standin, state, &other_calls, &sync);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("AccessDenied"),
        "{}",
        text(&refused)
    );
    other(&sync);
    // S3 Batch Operations: the same copy through a job, then the job looked at, listed, and
    // (finished) refused a cancel, which still makes the call.
    for bucket in ["envclone-iam-batch", "envclone-iam-reports"] {
        s3c.create_bucket().bucket(bucket).send().await.unwrap();
    }
    let batch = other(&[
        "--output",
        "json",
        "s3",
        "sync",
        &format!("s3://{archive}"),
        "s3://envclone-iam-batch",
        "--engine",
        "batch",
        "--batch-role",
        "arn:aws:iam::123456789012:role/envclone-batch",
        "--batch-reports",
        "s3://envclone-iam-reports/batch",
        "--batch-poll",
        "200ms",
    ]);
    let job = String::from_utf8_lossy(&batch.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|l| l["event"]["job_id"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no batch job: {}", text(&batch)));
    let account = ["--account", "123456789012"];
    other(&[&["s3", "job", "status", &job][..], &account].concat());
    other(&[&["s3", "job", "list"][..], &account].concat());
    let cancel = envclone(
        &standin,
        state,
        &other_calls,
        &[&["s3", "job", "cancel", &job][..], &account].concat(),
    );
    assert!(
        !cancel.status.success()
            && String::from_utf8_lossy(&cancel.stderr).contains("JobStatusException"),
        "a finished job cannot be cancelled: {}",
        text(&cancel)
    );
    // `--manifest inventory` reads the source's inventory configurations (the archive has
    // none: refused before any change, the call made).
    let inventory = envclone(
        &standin,
        state,
        &other_calls,
        &[
            "s3",
            "sync",
            &format!("s3://{archive}"),
            "s3://envclone-iam-batch",
            "--engine",
            "batch",
            "--manifest",
            "inventory",
            "--dry-run",
            "--batch-role",
            "arn:aws:iam::123456789012:role/envclone-batch",
            "--batch-reports",
            "s3://envclone-iam-reports/batch",
        ],
    );
    assert_eq!(inventory.status.code(), Some(2), "{}", text(&inventory));
    assert!(
        String::from_utf8_lossy(&inventory.stderr).contains("has no S3 Inventory configuration"),
        "{}",
        text(&inventory)
    );
    other(&["destroy", "orders-test", "--yes"]);
    std::thread::sleep(Duration::from_secs(2));
    let gc = other(&["gc", "--yes"]);
    assert!(
        String::from_utf8_lossy(&gc.stdout).contains("ledger-test"),
        "gc collects the expired ledger-test: {}",
        text(&gc)
    );
    // The entry record's zone named by id (entry_dns.zone_id), as for a split-horizon zone.
    let zone = aws_sdk_route53::Client::new(&config)
        .list_hosted_zones_by_name()
        .dns_name("orders.example.net.")
        .send()
        .await
        .unwrap()
        .hosted_zones()[0]
        .id()
        .to_string();
    let v2 = with_zone_id(
        &dir.path().join("foreign-v2.yaml"),
        include_str!("../fixtures/foreign-v2.yaml"),
        "PublicEndpoint",
        &zone,
    );
    let v2 = v2.to_str().unwrap();
    // Both templates hand the database's pre-swap name to the application: a post_swap hook
    // (here one that does nothing) is what migrate asks for.
    let hooks = dir.path().join("envclone.toml");
    std::fs::write(
        &hooks,
        "[environments.orders-prod.hooks]\npost_swap = [\"true\"]\n\
         [environments.ledger.hooks]\npost_swap = [\"true\"]\n",
    )
    .unwrap();
    let hooks = hooks.to_str().unwrap();
    let migrate = |env: &str, template: &str, finalize: bool| {
        let mut args = vec!["--config", hooks, "migrate", env];
        args.extend(["--template", template, "--yes"]);
        if finalize {
            args.push("--finalize");
        }
        other(&args)
    };
    migrate("orders-prod", v2, false);
    let run = run_of(&standin, state, &other_calls, "migrate", "swapped");
    other(&["abort", &run, "--yes"]);
    migrate("orders-prod", v2, true);
    let aurora_v2 = dir.path().join("aurora-v2.yaml");
    std::fs::write(
        &aurora_v2,
        include_str!("../../stacks/aurora.yaml").replace("Default: t3.micro", "Default: t3.small"),
    )
    .unwrap();
    migrate("ledger", aurora_v2.to_str().unwrap(), true);
    // iam-policy makes no AWS call and prints the policy the assertions below read.
    let printed = other(&["iam-policy", "all"]);
    let printed: serde_json::Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(printed, policy(Scope::All));

    let clone = recorded(&clone_calls);
    let all: BTreeSet<String> = clone.union(&recorded(&other_calls)).cloned().collect();

    // Every call is mapped, and each of its actions is granted.
    let granted_all = granted(&policy(Scope::All));
    for action in actions_of(&all) {
        assert!(
            granted_all.iter().any(|g| g == action),
            "the policy (all) lacks {action}, which a call of {all:?} needs"
        );
    }
    let granted_clone = granted(&policy(Scope::Clone));
    for action in actions_of(&clone) {
        assert!(
            granted_clone.iter().any(|g| g == action),
            "the clone policy lacks {action}, which a call of clone ({clone:?}) needs"
        );
    }

    // Not trivially small, and the same every run: the calls compared whole.
    assert_eq!(clone, names(CLONE_CALLS), "the calls of clone");
    let unseen: Vec<&str> = operations()
        .into_iter()
        .map(|(op, _)| op)
        .filter(|op| !all.contains(*op))
        .collect();
    // An operation iam::operations() maps that no command called here is printed, not failed:
    // it may be reached only on a path this run does not take. None is today.
    println!("in iam::operations(), not called by this run: {unseen:?}");
    assert_eq!(
        all,
        operations()
            .into_iter()
            .map(|(op, _)| op.to_string())
            .collect(),
        "the calls of every command: each operation iam::operations() maps"
    );
    // And the policy grants nothing no call needs.
    let needed = actions_of(&all);
    let spare: BTreeSet<&String> = granted_all
        .iter()
        .filter(|g| !needed.contains(g.as_str()))
        .collect();
    assert!(spare.is_empty(), "granted but needed by no call: {spare:?}");
}

fn names(calls: &[&str]) -> BTreeSet<String> {
    calls.iter().map(|c| c.to_string()).collect()
}

/// What the three clones make (an RDS instance restored from a snapshot, its buckets with a
/// multipart object and a configured bucket passed by parameter, Standby of the source's
/// group, state and lock in S3; an Aurora cluster cloned copy-on-write; DynamoDB tables, one
/// the stack creates and one the run creates, copied and verified).
const CLONE_CALLS: &[&str] = &[
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:EnterStandby",
    "autoscaling:ExitStandby",
    "autoscaling:ResumeProcesses",
    "autoscaling:SuspendProcesses",
    "autoscaling:UpdateAutoScalingGroup",
    "cloudformation:CreateStack",
    "cloudformation:DescribeStacks",
    "cloudformation:GetTemplate",
    "cloudformation:ListStackResources",
    "dynamodb:BatchWriteItem",
    "dynamodb:CreateTable",
    "dynamodb:DescribeTable",
    "dynamodb:Query",
    "dynamodb:Scan",
    "rds:CreateDBSnapshot",
    "rds:DescribeDBClusterSnapshots",
    "rds:DescribeDBClusters",
    "rds:DescribeDBInstances",
    "rds:DescribeDBSnapshots",
    "route53:ListHostedZonesByName",
    "route53:ListResourceRecordSets",
    "s3:CompleteMultipartUpload",
    "s3:CopyObject",
    "s3:CreateBucket",
    "s3:CreateMultipartUpload",
    "s3:DeleteObject",
    "s3:GetBucketCors",
    "s3:GetBucketEncryption",
    "s3:GetBucketLifecycleConfiguration",
    "s3:GetBucketNotificationConfiguration",
    "s3:GetBucketOwnershipControls",
    "s3:GetBucketPolicy",
    "s3:GetBucketReplication",
    "s3:GetBucketTagging",
    "s3:GetBucketVersioning",
    "s3:GetObject",
    "s3:GetObjectTagging",
    "s3:GetPublicAccessBlock",
    "s3:HeadBucket",
    "s3:HeadObject",
    "s3:ListObjectsV2",
    "s3:PutBucketCors",
    "s3:PutBucketEncryption",
    "s3:PutBucketLifecycleConfiguration",
    "s3:PutBucketOwnershipControls",
    "s3:PutBucketPolicy",
    "s3:PutBucketTagging",
    "s3:PutBucketVersioning",
    "s3:PutObject",
    "s3:PutPublicAccessBlock",
    "s3:UploadPartCopy",
];
