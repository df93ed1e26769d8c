//! `envclone iam-policy`: the least-privilege IAM policy for exactly the API calls envclone
//! makes, scoped by the `envclone:run` tag where the service supports tag conditions.
//!
//! Every SDK client of the adapters records the operations it sends (`aws::CallRecord`, an
//! SDK interceptor; to a file with `ENVCLONE_RECORD_CALLS`). The end-to-end test
//! `e2e_iam` runs every command on the stand-in with it and checks each call made maps here and
//! each of its actions is in the policy (the clone-scope one for the calls of `clone`).
//!
//! The operations a resource kind alone calls (the DynamoDB table kind's) are declared by the
//! kind (`ResourceKind::iam_operations`) and collected here from `KINDS`: a new kind does not
//! touch this file.

use serde_json::{json, Value};

use crate::workflow::resource::Grant;
use crate::workflow::resources::KINDS;

/// Each operation the adapters call, and the IAM actions it needs: the engine's own
/// ([`ENGINE_OPERATIONS`]) and every kind's.
pub fn operations() -> Vec<(&'static str, &'static [&'static str])> {
    ENGINE_OPERATIONS
        .iter()
        .copied()
        .chain(
            KINDS
                .iter()
                .flat_map(|k| k.iam_operations())
                .map(|o| (o.operation, o.actions)),
        )
        .collect()
}

/// The actions the kinds need that the policy grants as `grant`.
fn kinds_actions(grant: Grant) -> impl Iterator<Item = &'static str> {
    KINDS
        .iter()
        .flat_map(|k| k.iam_operations())
        .filter(move |o| o.grant == grant)
        .flat_map(|o| o.actions.iter().copied())
}

/// `engine`'s actions, then those the kinds need granted as `grant`.
fn with_kinds(engine: &[&'static str], grant: Grant) -> Vec<&'static str> {
    let mut out = engine.to_vec();
    for a in kinds_actions(grant) {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

/// Each operation the engine's adapters call (not a kind's alone), and the IAM actions it needs.
pub const ENGINE_OPERATIONS: &[(&str, &[&str])] = &[
    (
        "cloudformation:DescribeStacks",
        &["cloudformation:DescribeStacks"],
    ),
    (
        "cloudformation:GetTemplate",
        &["cloudformation:GetTemplate"],
    ),
    (
        "cloudformation:ListStackResources",
        &["cloudformation:ListStackResources"],
    ),
    (
        "cloudformation:CreateStack",
        &["cloudformation:CreateStack", "cloudformation:TagResource"],
    ),
    (
        "cloudformation:DeleteStack",
        &["cloudformation:DeleteStack"],
    ),
    (
        "cloudformation:UpdateTerminationProtection",
        &["cloudformation:UpdateTerminationProtection"],
    ),
    ("rds:DescribeDBInstances", &["rds:DescribeDBInstances"]),
    ("rds:DescribeDBSnapshots", &["rds:DescribeDBSnapshots"]),
    (
        "rds:CreateDBSnapshot",
        &["rds:CreateDBSnapshot", "rds:AddTagsToResource"],
    ),
    ("rds:AddTagsToResource", &["rds:AddTagsToResource"]),
    (
        "rds:RemoveTagsFromResource",
        &["rds:RemoveTagsFromResource"],
    ),
    ("rds:ModifyDBInstance", &["rds:ModifyDBInstance"]),
    ("rds:DeleteDBInstance", &["rds:DeleteDBInstance"]),
    ("rds:DeleteDBSnapshot", &["rds:DeleteDBSnapshot"]),
    ("rds:DescribeDBClusters", &["rds:DescribeDBClusters"]),
    (
        "rds:DescribeDBClusterSnapshots",
        &["rds:DescribeDBClusterSnapshots"],
    ),
    (
        "rds:CreateDBClusterSnapshot",
        &["rds:CreateDBClusterSnapshot", "rds:AddTagsToResource"],
    ),
    (
        "rds:DeleteDBClusterSnapshot",
        &["rds:DeleteDBClusterSnapshot"],
    ),
    ("rds:ModifyDBCluster", &["rds:ModifyDBCluster"]),
    ("rds:DeleteDBCluster", &["rds:DeleteDBCluster"]),
    (
        "autoscaling:DescribeAutoScalingGroups",
        &["autoscaling:DescribeAutoScalingGroups"],
    ),
    (
        "autoscaling:DescribeScalingActivities",
        &["autoscaling:DescribeScalingActivities"],
    ),
    (
        "autoscaling:UpdateAutoScalingGroup",
        &["autoscaling:UpdateAutoScalingGroup"],
    ),
    ("autoscaling:EnterStandby", &["autoscaling:EnterStandby"]),
    (
        "autoscaling:SuspendProcesses",
        &["autoscaling:SuspendProcesses"],
    ),
    (
        "autoscaling:ResumeProcesses",
        &["autoscaling:ResumeProcesses"],
    ),
    ("autoscaling:ExitStandby", &["autoscaling:ExitStandby"]),
    (
        "route53:ListHostedZonesByName",
        &["route53:ListHostedZonesByName"],
    ),
    (
        "route53:ListResourceRecordSets",
        &["route53:ListResourceRecordSets"],
    ),
    (
        "route53:ChangeResourceRecordSets",
        &["route53:ChangeResourceRecordSets"],
    ),
    ("route53:GetChange", &["route53:GetChange"]),
    ("route53:GetHostedZone", &["route53:GetHostedZone"]),
    // S3's API operations and IAM actions differ in name.
    ("s3:HeadBucket", &["s3:ListBucket"]),
    // gc looks for the template staging buckets crashed runs left (`envclone-tpl-…`).
    ("s3:ListBuckets", &["s3:ListAllMyBuckets"]),
    ("s3:ListObjectsV2", &["s3:ListBucket"]),
    // Emptying a versioned bucket whole (abort, destroy, gc).
    ("s3:ListObjectVersions", &["s3:ListBucketVersions"]),
    ("s3:GetBucketTagging", &["s3:GetBucketTagging"]),
    ("s3:CreateBucket", &["s3:CreateBucket"]),
    ("s3:PutBucketTagging", &["s3:PutBucketTagging"]),
    ("s3:DeleteBucket", &["s3:DeleteBucket"]),
    // Copying a source bucket's configuration to the bucket envclone creates (S3's "Actions,
    // resources, and condition keys for Amazon S3" names the IAM actions).
    ("s3:GetBucketVersioning", &["s3:GetBucketVersioning"]),
    ("s3:PutBucketVersioning", &["s3:PutBucketVersioning"]),
    (
        "s3:GetPublicAccessBlock",
        &["s3:GetBucketPublicAccessBlock"],
    ),
    (
        "s3:PutPublicAccessBlock",
        &["s3:PutBucketPublicAccessBlock"],
    ),
    (
        "s3:GetBucketOwnershipControls",
        &["s3:GetBucketOwnershipControls"],
    ),
    (
        "s3:PutBucketOwnershipControls",
        &["s3:PutBucketOwnershipControls"],
    ),
    ("s3:GetBucketEncryption", &["s3:GetEncryptionConfiguration"]),
    ("s3:PutBucketEncryption", &["s3:PutEncryptionConfiguration"]),
    ("s3:GetBucketCors", &["s3:GetBucketCORS"]),
    ("s3:PutBucketCors", &["s3:PutBucketCORS"]),
    (
        "s3:GetBucketLifecycleConfiguration",
        &["s3:GetLifecycleConfiguration"],
    ),
    (
        "s3:PutBucketLifecycleConfiguration",
        &["s3:PutLifecycleConfiguration"],
    ),
    ("s3:GetBucketPolicy", &["s3:GetBucketPolicy"]),
    ("s3:PutBucketPolicy", &["s3:PutBucketPolicy"]),
    (
        "s3:GetBucketNotificationConfiguration",
        &["s3:GetBucketNotification"],
    ),
    (
        "s3:GetBucketReplication",
        &["s3:GetReplicationConfiguration"],
    ),
    // A clone reads a versioned source as of T by version id (HeadObject, GetObjectTagging,
    // the copy source `?versionId=`): S3 then authorizes s3:GetObjectVersion and
    // s3:GetObjectVersionTagging instead ("Actions, resources, and condition keys for Amazon
    // S3"; CopyObject API Reference, Permissions). The operation is the same either way, so
    // both are mapped.
    ("s3:HeadObject", &["s3:GetObject", "s3:GetObjectVersion"]),
    ("s3:GetObject", &["s3:GetObject"]),
    (
        "s3:GetObjectTagging",
        &["s3:GetObjectTagging", "s3:GetObjectVersionTagging"],
    ),
    ("s3:PutObject", &["s3:PutObject"]),
    // A copy reads the source (object and tags) and writes the target (object and tags).
    (
        "s3:CopyObject",
        &[
            "s3:GetObject",
            "s3:GetObjectTagging",
            "s3:GetObjectVersion",
            "s3:GetObjectVersionTagging",
            "s3:PutObject",
            "s3:PutObjectTagging",
        ],
    ),
    (
        "s3:CreateMultipartUpload",
        &["s3:PutObject", "s3:PutObjectTagging"],
    ),
    (
        "s3:UploadPartCopy",
        &["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
    ),
    ("s3:CompleteMultipartUpload", &["s3:PutObject"]),
    ("s3:AbortMultipartUpload", &["s3:AbortMultipartUpload"]),
    ("s3:DeleteObject", &["s3:DeleteObject"]),
    // With a VersionId per key (emptying a bucket whole) it needs DeleteObjectVersion.
    (
        "s3:DeleteObjects",
        &["s3:DeleteObject", "s3:DeleteObjectVersion"],
    ),
    // S3 Batch Operations (`s3 sync --engine batch`, `s3 job`): CreateJob passes the job's
    // role ("Granting permissions for Batch Operations": iam:PassRole).
    ("s3:CreateJob", &["s3:CreateJob", "iam:PassRole"]),
    // `--manifest inventory`: the source's inventory configurations ("Actions, resources, and
    // condition keys for Amazon S3": ListBucketInventoryConfigurations needs
    // s3:GetInventoryConfiguration).
    (
        "s3:ListBucketInventoryConfigurations",
        &["s3:GetInventoryConfiguration"],
    ),
    ("s3:DescribeJob", &["s3:DescribeJob"]),
    ("s3:ListJobs", &["s3:ListJobs"]),
    ("s3:UpdateJobStatus", &["s3:UpdateJobStatus"]),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    /// clone, plan, verify, standby, status/resume/abort of clones, list/destroy/gc, s3 sync.
    Clone,
    /// Everything of clone, plus the swap and finalize of migrate.
    Migrate,
    All,
}

const READ: &[&str] = &[
    "cloudformation:DescribeStacks",
    "cloudformation:GetTemplate",
    "cloudformation:ListStackResources",
    "rds:DescribeDBInstances",
    "rds:DescribeDBSnapshots",
    "rds:DescribeDBClusters",
    "rds:DescribeDBClusterSnapshots",
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeScalingActivities",
    "route53:ListHostedZonesByName",
    "route53:ListResourceRecordSets",
    "route53:GetChange",
    "route53:GetHostedZone",
    "s3:ListBucket",
    "s3:ListAllMyBuckets",
    "s3:ListBucketVersions",
    "s3:GetBucketTagging",
    "s3:GetObject",
    "s3:GetObjectTagging",
    "s3:GetObjectVersion",
    "s3:GetObjectVersionTagging",
    "s3:GetBucketVersioning",
    "s3:GetBucketPublicAccessBlock",
    "s3:GetBucketOwnershipControls",
    "s3:GetEncryptionConfiguration",
    "s3:GetBucketCORS",
    "s3:GetLifecycleConfiguration",
    "s3:GetBucketPolicy",
    "s3:GetBucketNotification",
    "s3:GetReplicationConfiguration",
    "s3:DescribeJob",
    "s3:ListJobs",
    "s3:GetInventoryConfiguration",
];

/// Creating what a run makes: CloudFormation and RDS (and DynamoDB, the table kind's
/// `Grant::CreateTagged`) check the tags given on creation.
const CREATE_TAGGED: &[&str] = &[
    "cloudformation:CreateStack",
    "cloudformation:TagResource",
    "rds:CreateDBSnapshot",
    "rds:CreateDBClusterSnapshot",
    "rds:AddTagsToResource",
];

/// Writes whose resources S3 and Auto Scaling cannot scope by a request tag.
const WRITE: &[&str] = &[
    "s3:CreateBucket",
    "s3:PutBucketTagging",
    "s3:PutBucketVersioning",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketOwnershipControls",
    "s3:PutEncryptionConfiguration",
    "s3:PutBucketCORS",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketPolicy",
    "s3:PutObject",
    "s3:PutObjectTagging",
    "s3:AbortMultipartUpload",
    "s3:CreateJob",
    "s3:UpdateJobStatus",
    "autoscaling:EnterStandby",
    "autoscaling:ExitStandby",
    "autoscaling:UpdateAutoScalingGroup",
    "autoscaling:SuspendProcesses",
    "autoscaling:ResumeProcesses",
];

/// Removing what a run made (abort, destroy, gc), and (a kind's `Grant::TaggedResource`)
/// writing into what it made: only resources tagged `envclone:run`.
const DELETE_OWN: &[&str] = &[
    "cloudformation:DeleteStack",
    "rds:DeleteDBSnapshot",
    "rds:DeleteDBClusterSnapshot",
];

/// S3 cannot condition bucket and object deletion on tags; envclone checks the bucket's
/// `envclone:run` tag itself before deleting.
const DELETE_S3: &[&str] = &[
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:DeleteBucket",
];

/// The swap and finalize of migrate act on the source environment itself, which is not tagged.
const MIGRATE: &[&str] = &[
    "cloudformation:UpdateTerminationProtection",
    "rds:ModifyDBInstance",
    "rds:RemoveTagsFromResource",
    "rds:DeleteDBInstance",
    "rds:ModifyDBCluster",
    "rds:DeleteDBCluster",
    "cloudformation:DeleteStack",
    "route53:ChangeResourceRecordSets",
];

fn statement(sid: &str, actions: &[&str], condition: Option<Value>) -> Value {
    let mut s = json!({"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": "*"});
    if let Some(c) = condition {
        s["Condition"] = c;
    }
    s
}

pub fn policy(scope: Scope) -> Value {
    let tagged_request = json!({"Null": {"aws:RequestTag/envclone:run": "false"}});
    let tagged_resource = json!({"Null": {"aws:ResourceTag/envclone:run": "false"}});
    let mut statements = vec![
        statement("EnvcloneRead", &with_kinds(READ, Grant::Read), None),
        statement(
            "EnvcloneCreateTagged",
            &with_kinds(CREATE_TAGGED, Grant::CreateTagged),
            Some(tagged_request),
        ),
        statement("EnvcloneWrite", WRITE, None),
        statement(
            "EnvcloneDeleteOwn",
            &with_kinds(DELETE_OWN, Grant::TaggedResource),
            Some(tagged_resource),
        ),
        statement("EnvcloneDeleteOwnBuckets", DELETE_S3, None),
        // The batch job's role, passed to S3 Batch Operations only.
        statement(
            "EnvclonePassBatchRole",
            &["iam:PassRole"],
            Some(
                json!({"StringEquals": {"iam:PassedToService": "batchoperations.s3.amazonaws.com"}}),
            ),
        ),
    ];
    if scope != Scope::Clone {
        statements.push(statement("EnvcloneMigrateSwapAndFinalize", MIGRATE, None));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// Every action the policy grants.
pub fn granted(policy: &Value) -> Vec<String> {
    policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each operation is mapped once, and each action it needs is granted (the calls the
    /// commands actually make are checked against this map end to end, in `e2e_iam`).
    #[test]
    fn every_mapped_operation_is_granted_by_the_policy() {
        let all = granted(&policy(Scope::All));
        let mut seen = std::collections::BTreeSet::new();
        for (op, actions) in operations() {
            assert!(seen.insert(op), "{op} is mapped twice");
            assert!(!actions.is_empty(), "{op} maps to no IAM action");
            for a in actions {
                assert!(
                    all.iter().any(|g| g == a),
                    "{op} needs {a}, which the policy lacks"
                );
            }
        }
    }

    #[test]
    fn clone_policy_cannot_touch_the_source_database_or_dns() {
        let clone = granted(&policy(Scope::Clone));
        for a in [
            "rds:ModifyDBInstance",
            "rds:DeleteDBInstance",
            "route53:ChangeResourceRecordSets",
        ] {
            assert!(!clone.contains(&a.to_string()), "{a}");
        }
        let p = policy(Scope::Clone);
        let delete = p["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == "EnvcloneDeleteOwn")
            .unwrap();
        assert_eq!(
            delete["Condition"]["Null"]["aws:ResourceTag/envclone:run"],
            "false"
        );
    }
}
