//! What a clone copies, and what it does not: every resource of the template the clone is
//! created from is classified at preflight (issue 12).
//!
//! - **Copied**: the contract's databases (with the instances of a listed cluster) and buckets.
//! - **Stateless**: a known list of types the clone stack recreates from the template alone —
//!   networking, IAM, load balancing, launch templates, Auto Scaling groups, DNS records…
//!   Created empty by design: there is nothing in them to copy.
//! - **Stateful, not covered**: a type of `deletion::STATEFUL_TYPES` that no resource kind
//!   covers (`not_covered`, derived: that list minus every kind's types — KMS keys, file
//!   systems, queues, secrets, log groups…), or a database, bucket or table the contract does
//!   not list. The clone's would start empty.
//! - **Unknown**: a type on neither list, custom resources (`Custom::*`,
//!   `AWS::CloudFormation::CustomResource`: what their handler makes cannot be judged) among
//!   them. Treated as not covered: an operator expects no silent data loss, and a type envclone
//!   has not judged may hold state. Adding it to `ignore:` with a reason is one line.
//!
//! A clone (or migrate) whose template creates a resource that is not covered is refused before
//! any change, naming each, unless the contract lists it under `ignore:` with a reason; the plan
//! shows what is created empty. `finalize` keeps every resource of the old stack that is not
//! covered (`finalize_loss`).
//!
//! Log groups: a log group holds the log events written to it, which the clone does not copy;
//! deleting one loses them. An operator would rather be told than find the history gone, so it
//! is stateful like the rest (and `ignore:` says "logs stay with the source" in one line).
//!
//! Pure functions over (logical id, type) pairs, so the resources of nested stacks can be
//! classified the same way.

use std::collections::BTreeSet;

use crate::contract::{Contract, Template};

use super::deletion;
pub use super::plan::{Ignored, Inventory, Uncovered};
use super::resource::ResourceKind;
use super::resources::{self, KINDS};

/// Types that hold nothing a clone would miss: the clone stack recreates each from the
/// template's properties alone (CloudFormation User Guide, "AWS resource and property types
/// reference"). A value or setting changed by hand since the source was created is drift, not
/// data, and is not carried over either.
pub const STATELESS_TYPES: &[&str] = &[
    // Networking.
    "AWS::EC2::VPC",
    "AWS::EC2::VPCCidrBlock",
    "AWS::EC2::DHCPOptions",
    "AWS::EC2::VPCDHCPOptionsAssociation",
    "AWS::EC2::EgressOnlyInternetGateway",
    "AWS::EC2::NetworkInterface",
    // A flow log is configuration: its records live in the log group or bucket it names,
    // which are judged on their own.
    "AWS::EC2::FlowLog",
    // Mount targets and access points are network endpoints and entry points of a file
    // system; the files are the AWS::EFS::FileSystem's (stateful, judged on its own).
    "AWS::EFS::MountTarget",
    "AWS::EFS::AccessPoint",
    "AWS::Route53::HealthCheck",
    "AWS::EC2::Subnet",
    "AWS::EC2::RouteTable",
    "AWS::EC2::Route",
    "AWS::EC2::SubnetRouteTableAssociation",
    "AWS::EC2::InternetGateway",
    "AWS::EC2::VPCGatewayAttachment",
    "AWS::EC2::NatGateway",
    "AWS::EC2::EIP",
    "AWS::EC2::VPCEndpoint",
    "AWS::EC2::NetworkAcl",
    "AWS::EC2::NetworkAclEntry",
    "AWS::EC2::SubnetNetworkAclAssociation",
    "AWS::EC2::SecurityGroup",
    "AWS::EC2::SecurityGroupIngress",
    "AWS::EC2::SecurityGroupEgress",
    // Compute from a template: the instances of an Auto Scaling group are replaceable by
    // design (an instance's own volumes are not: AWS::EC2::Instance is not on this list).
    "AWS::EC2::LaunchTemplate",
    "AWS::AutoScaling::AutoScalingGroup",
    "AWS::AutoScaling::LaunchConfiguration",
    "AWS::AutoScaling::ScalingPolicy",
    "AWS::AutoScaling::ScheduledAction",
    "AWS::AutoScaling::LifecycleHook",
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
    "AWS::ECS::Cluster",
    "AWS::ECS::Service",
    "AWS::ECS::TaskDefinition",
    "AWS::Lambda::Function",
    "AWS::Lambda::Permission",
    "AWS::Lambda::Version",
    "AWS::Lambda::Alias",
    "AWS::Lambda::EventSourceMapping",
    // Load balancing, certificates, DNS records.
    "AWS::ElasticLoadBalancing::LoadBalancer",
    "AWS::ElasticLoadBalancingV2::LoadBalancer",
    "AWS::ElasticLoadBalancingV2::TargetGroup",
    "AWS::ElasticLoadBalancingV2::Listener",
    "AWS::ElasticLoadBalancingV2::ListenerRule",
    "AWS::ElasticLoadBalancingV2::ListenerCertificate",
    "AWS::CertificateManager::Certificate",
    "AWS::Route53::RecordSet",
    "AWS::Route53::RecordSetGroup",
    // Identity and policies.
    "AWS::IAM::Role",
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::IAM::InstanceProfile",
    "AWS::IAM::RolePolicy",
    "AWS::KMS::Alias",
    "AWS::S3::BucketPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy",
    // Settings of a database or cache, not their data.
    "AWS::RDS::DBSubnetGroup",
    "AWS::RDS::DBParameterGroup",
    "AWS::RDS::DBClusterParameterGroup",
    "AWS::RDS::OptionGroup",
    "AWS::ElastiCache::SubnetGroup",
    "AWS::ElastiCache::ParameterGroup",
    // Notification and monitoring. SNS keeps no message once delivered (a topic stores none);
    // its subscriptions are recreated from the template.
    "AWS::SNS::Topic",
    "AWS::SNS::Subscription",
    "AWS::CloudWatch::Alarm",
    "AWS::CloudWatch::Dashboard",
    "AWS::Events::Rule",
    "AWS::Logs::MetricFilter",
    "AWS::Logs::SubscriptionFilter",
    // An SSM parameter's `Value` is a required property: the template sets it.
    "AWS::SSM::Parameter",
    "AWS::CloudFormation::WaitConditionHandle",
    "AWS::CloudFormation::WaitCondition",
    // An API's definition (API Gateway: resources, methods, deployments, stages,
    // authorizers): the requests it serves are not kept by it.
    "AWS::ApiGateway::RestApi",
    "AWS::ApiGateway::Resource",
    "AWS::ApiGateway::Method",
    "AWS::ApiGateway::Deployment",
    "AWS::ApiGateway::Stage",
    "AWS::ApiGateway::Authorizer",
    // Content delivery and its firewall: a distribution caches what its origins hold (the
    // origins, e.g. buckets, are judged on their own); a web ACL is rules.
    "AWS::CloudFront::Distribution",
    "AWS::CloudFront::OriginAccessControl",
    "AWS::WAFv2::WebACL",
    // A user pool's app client and domain are settings of the pool; its users are the
    // AWS::Cognito::UserPool's (stateful, judged on its own).
    "AWS::Cognito::UserPoolClient",
    "AWS::Cognito::UserPoolDomain",
];

/// The types the contract covers when it lists them, with what a clone of one it does not
/// list lacks: those of the resource kinds (`ResourceKind::stack_types`).
fn contract_type(resource_type: &str) -> Option<(&'static dyn ResourceKind, &'static str)> {
    let kind = resources::of_type(resource_type)?;
    let (_, loses) = kind
        .stack_types()
        .iter()
        .find(|(t, _)| *t == resource_type)?;
    Some((kind, loses))
}

/// The stateful types no resource kind covers, with what a clone (or a deletion) of one lacks:
/// `deletion::STATEFUL_TYPES` minus every kind's `stack_types`. Derived, so a kind added for a
/// type (the DynamoDB table) takes it out of this list without an edit to `deletion.rs`.
pub fn not_covered() -> Vec<(&'static str, &'static str)> {
    deletion::STATEFUL_TYPES
        .iter()
        .copied()
        .filter(|(t, _)| resources::of_type(t).is_none())
        .collect()
}

/// What the clone lacks of a resource of a type envclone has not judged.
const UNKNOWN_LOSS: &str =
    "whatever it holds: envclone does not know this type, which may hold state";

/// How a clone treats one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// Copied by envclone: a contract database, an instance of a contract cluster, a contract
    /// bucket.
    Copied,
    /// Recreated from the template; holds nothing to copy (`STATELESS_TYPES`).
    Stateless,
    /// Holds state envclone does not copy: what the clone's lacks.
    Stateful(&'static str),
    /// A type on neither list (custom resources among them).
    Unknown,
}

impl Coverage {
    /// What a clone (or a deletion) of the resource loses, when it is not covered.
    pub fn loss(&self) -> Option<&'static str> {
        match self {
            Coverage::Copied | Coverage::Stateless => None,
            Coverage::Stateful(loses) => Some(loses),
            Coverage::Unknown => Some(UNKNOWN_LOSS),
        }
    }
}

/// Classifies the resource `logical_id` of `resource_type`; `copied` holds the logical ids
/// the contract copies.
pub fn classify(logical_id: &str, resource_type: &str, copied: &BTreeSet<String>) -> Coverage {
    if copied.contains(logical_id) {
        Coverage::Copied
    } else if STATELESS_TYPES.contains(&resource_type) {
        Coverage::Stateless
    } else if let Some((_, loses)) = contract_type(resource_type) {
        Coverage::Stateful(loses)
    } else if let Some((_, loses)) = not_covered().into_iter().find(|(t, _)| *t == resource_type) {
        Coverage::Stateful(loses)
    } else {
        Coverage::Unknown
    }
}

/// What deleting a resource of `resource_type` with its stack would lose, for `finalize`, which
/// keeps every such resource: a stateful type or one envclone has not judged. None for a
/// stateless type and for the kinds finalize handles itself (`ResourceKind::finalize_handles`:
/// the databases and buckets).
pub fn finalize_loss(resource_type: &str) -> Option<&'static str> {
    if contract_type(resource_type).is_some_and(|(kind, _)| kind.finalize_handles()) {
        return None;
    }
    classify("", resource_type, &BTreeSet::new()).loss()
}

/// The logical ids the contract copies: its databases, the instances of its clusters, its
/// buckets.
pub fn copied_ids(template: &Template, contract: &Contract) -> BTreeSet<String> {
    KINDS
        .iter()
        .flat_map(|k| k.copied_ids(template, contract))
        .collect()
}

/// Classifies `resources` (logical id, type) — those the clone stack creates — under
/// `contract`.
pub fn inventory<'a>(
    resources: impl IntoIterator<Item = (&'a str, &'a str)>,
    copied: &BTreeSet<String>,
    contract: &Contract,
) -> Inventory {
    let mut out = Inventory::default();
    for (logical_id, resource_type) in resources {
        let coverage = classify(logical_id, resource_type, copied);
        match (coverage.loss(), contract.ignore.get(logical_id)) {
            (None, _) if coverage == Coverage::Copied => out.copied.push(logical_id.into()),
            (None, _) => out.stateless.push(logical_id.into()),
            (Some(_), Some(reason)) => out.ignored.push(Ignored {
                logical_id: logical_id.into(),
                resource_type: resource_type.into(),
                reason: reason.clone(),
            }),
            (Some(loses), None) => out.uncovered.push(Uncovered {
                logical_id: logical_id.into(),
                resource_type: resource_type.into(),
                loses: loses.into(),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{BUCKET, DB_CLUSTER};

    fn contract(body: &str) -> (Template, Contract) {
        let t = Template::parse("t.yaml", body).unwrap();
        let c = Contract::from_template(&t).unwrap_or_else(|e| panic!("{e}"));
        (t, c)
    }

    const T: &str = r#"
Metadata:
  envclone:
    databases:
      Cluster: { snapshot_parameter: Snap }
    buckets:
      Uploads: {}
    ignore:
      AppLogs: { reason: "logs stay with the source" }
      Hook: { reason: "the handler only registers a DNS name" }
Parameters:
  Snap: { Type: String, Default: "" }
Resources:
  Cluster: { Type: AWS::RDS::DBCluster }
  Writer:
    Type: AWS::RDS::DBInstance
    Properties: { DBClusterIdentifier: !Ref Cluster }
  Reports: { Type: AWS::RDS::DBCluster }
  Uploads: { Type: AWS::S3::Bucket }
  Archive: { Type: AWS::S3::Bucket }
  Vpc: { Type: AWS::EC2::VPC }
  Files: { Type: AWS::EFS::FileSystem }
  Jobs: { Type: AWS::SQS::Queue }
  AppLogs: { Type: AWS::Logs::LogGroup }
  Hook: { Type: Custom::Registration }
  Other: { Type: AWS::CloudFormation::CustomResource }
  Thing: { Type: AWS::Made::Up }
"#;

    /// Issue 12: every resource is classified (failed before: there was no classification,
    /// and a clone created the file system, queue and unlisted cluster empty without a word).
    #[test]
    fn every_resource_is_copied_stateless_ignored_or_uncovered() {
        let (t, c) = contract(T);
        let types = t.resource_types();
        let copied = copied_ids(&t, &c);
        let inv = inventory(
            types.iter().map(|(id, ty)| (id.as_str(), ty.as_str())),
            &copied,
            &c,
        );
        assert_eq!(inv.copied, vec!["Cluster", "Uploads", "Writer"]);
        assert_eq!(inv.stateless, vec!["Vpc"]);
        let ignored: Vec<(&str, &str)> = inv
            .ignored
            .iter()
            .map(|i| (i.logical_id.as_str(), i.reason.as_str()))
            .collect();
        assert_eq!(
            ignored,
            vec![
                ("AppLogs", "logs stay with the source"),
                ("Hook", "the handler only registers a DNS name")
            ]
        );
        let uncovered: Vec<String> = inv.uncovered.iter().map(|u| u.to_string()).collect();
        assert_eq!(
            uncovered,
            vec![
                "AWS::S3::Bucket Archive: the clone's would start without the bucket's objects",
                "AWS::EFS::FileSystem Files: the clone's would start without the file system's files",
                "AWS::SQS::Queue Jobs: the clone's would start without messages not yet consumed",
                &format!("AWS::CloudFormation::CustomResource Other: the clone's would start without {UNKNOWN_LOSS}"),
                "AWS::RDS::DBCluster Reports: the clone's would start without the cluster's data",
                &format!("AWS::Made::Up Thing: the clone's would start without {UNKNOWN_LOSS}"),
            ]
        );
    }

    #[test]
    fn the_lists_do_not_overlap_and_finalize_keeps_what_is_not_covered() {
        for ty in STATELESS_TYPES {
            assert!(deletion::stateful(ty).is_none(), "{ty} is on both lists");
            assert!(contract_type(ty).is_none(), "{ty}");
        }
        let not_covered = not_covered();
        for kind in KINDS {
            for (ty, _) in kind.stack_types() {
                assert!(!not_covered.iter().any(|(t, _)| t == ty), "{ty}");
            }
        }
        assert_eq!(
            finalize_loss("AWS::SQS::Queue"),
            Some("messages not yet consumed")
        );
        assert_eq!(finalize_loss("Custom::Anything"), Some(UNKNOWN_LOSS));
        assert_eq!(finalize_loss("AWS::EC2::VPC"), None);
        assert_eq!(finalize_loss(BUCKET), None);
        assert_eq!(finalize_loss(DB_CLUSTER), None);
    }

    /// Issue 12, "a new type in three files": what no kind covers is derived from the kinds,
    /// not kept by hand beside them. Every kind's stack type is copied when the contract lists
    /// it and lacks what the kind says when it does not, and is not in the derived list; every
    /// stateful type is either covered by one kind or not covered, never both; and a type a
    /// kind was added for (`AWS::DynamoDB::Table`) stays on `deletion::STATEFUL_TYPES`, taken
    /// out of what is not covered by the kind alone. (Failed before: the table had to be
    /// deleted from `STATEFUL_TYPES` when its kind was added, and `not_covered` did not exist.)
    #[test]
    fn what_no_kind_covers_is_derived_from_the_kinds() {
        let not_covered = not_covered();
        let listed = |ty: &str| not_covered.iter().any(|(t, _)| *t == ty);
        for kind in KINDS {
            for (ty, loses) in kind.stack_types() {
                let copied = BTreeSet::from(["R".to_string()]);
                assert_eq!(classify("R", ty, &copied), Coverage::Copied, "{ty}");
                assert_eq!(
                    classify("R", ty, &BTreeSet::new()),
                    Coverage::Stateful(loses),
                    "{ty}"
                );
                assert!(
                    !listed(ty),
                    "{ty} is covered by {} and listed as not covered",
                    kind.name()
                );
                assert_eq!(resources::of_type(ty).map(|k| k.name()), Some(kind.name()));
            }
        }
        for (ty, loses) in deletion::STATEFUL_TYPES {
            let covered = resources::of_type(ty).is_some();
            assert_ne!(
                covered,
                listed(ty),
                "{ty}: covered and not covered, or neither"
            );
            if !covered {
                assert_eq!(
                    classify("R", ty, &BTreeSet::new()),
                    Coverage::Stateful(loses)
                );
            }
        }
        assert!(deletion::stateful("AWS::DynamoDB::Table").is_some());
        assert!(!listed("AWS::DynamoDB::Table"));
        assert!(listed("AWS::EFS::FileSystem"));
    }

    /// Issue 15: AWS's WebApp sample (tests/fixtures/real/webapp.json). What a clone of it
    /// does not copy is its other buckets, its DynamoDB table and its Cognito user pool; its API, CDN,
    /// firewall and the pool's client and domain are recreated from the template. (Failed
    /// before: API Gateway, CloudFront, WAFv2 and the pool's client and domain were unknown
    /// types, so a clone had to list 15 configuration resources under `ignore:`.)
    #[test]
    fn the_webapp_sample_lacks_only_its_buckets_table_and_user_pool() {
        // The contract of its e2e test (tests/it/e2e_corpus.rs), in the template's Metadata.
        let mut body: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/real/webapp.json")).unwrap();
        body["Metadata"]["envclone"] = serde_json::json!({
            "environment_parameter": "AppName",
            "buckets": { "SiteContentBucket": {} },
        });
        let (t, c) = contract(&body.to_string());
        let types = t.resource_types();
        let inv = inventory(
            types.iter().map(|(id, ty)| (id.as_str(), ty.as_str())),
            &copied_ids(&t, &c),
            &c,
        );
        let uncovered: Vec<String> = inv
            .uncovered
            .iter()
            .map(|u| format!("{} {}", u.resource_type, u.logical_id))
            .collect();
        assert_eq!(
            uncovered,
            vec![
                "AWS::Cognito::UserPool CognitoUserPool",
                "AWS::S3::Bucket SiteCloudFrontLogsBucket",
                "AWS::S3::Bucket SiteCloudFrontLogsLogBucket",
                "AWS::S3::Bucket SiteCloudFrontLogsReplicaBucket",
                "AWS::S3::Bucket SiteContentLogBucket",
                "AWS::S3::Bucket SiteContentReplicaBucket",
                "AWS::DynamoDB::Table TestTable",
            ]
        );
    }

    /// The repository's own templates clone without an `ignore:`: every resource they create
    /// is copied or stateless.
    #[test]
    fn the_example_stacks_are_fully_covered() {
        for (name, body) in [
            ("webapp.yaml", include_str!("../../stacks/webapp.yaml")),
            (
                "webapp-v2.yaml",
                include_str!("../../stacks/webapp-v2.yaml"),
            ),
            ("aurora.yaml", include_str!("../../stacks/aurora.yaml")),
            (
                "foreign.yaml",
                include_str!("../../tests/fixtures/foreign.yaml"),
            ),
            (
                "foreign-v2.yaml",
                include_str!("../../tests/fixtures/foreign-v2.yaml"),
            ),
            (
                "webapp-owned-archive.yaml",
                include_str!("../../tests/fixtures/webapp-owned-archive.yaml"),
            ),
        ] {
            let t = Template::parse(name, body).unwrap();
            let c = Contract::from_template(&t).unwrap();
            let types = t.resource_types();
            let inv = inventory(
                types.iter().map(|(id, ty)| (id.as_str(), ty.as_str())),
                &copied_ids(&t, &c),
                &c,
            );
            assert!(inv.uncovered.is_empty(), "{name}: {:?}", inv.uncovered);
            assert!(
                !inv.copied.is_empty() && !inv.stateless.is_empty(),
                "{name}"
            );
        }
    }
}
