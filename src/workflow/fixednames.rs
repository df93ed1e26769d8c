//! Fixed names: resources the clone stack (or migrate's new stack) would create under the same
//! name as a resource of the source stack, found at preflight — before any change.
//!
//! Many AWS names are unique per account (IAM), per region (log groups, SSM parameters, launch
//! templates, tables, queues, functions…), per VPC (security groups), per hosted zone (record
//! sets) or worldwide (S3 buckets). A template that sets such a name from a literal, or from a
//! parameter the clone carries over unchanged, gives the clone the source's name, and
//! CloudFormation fails the clone's resource ("… already exists", handler error code
//! `AlreadyExists`; CloudFormation User Guide, "Name type": "If you specify a name, you cannot
//! … reuse that name" while the resource exists) — hours into a run, with the source in Standby.
//! Or worse, for a record set or an inline policy, the clone's stack takes over the source's.
//!
//! Each name-bearing property is evaluated (`template_eval`) twice: with the source stack's
//! parameters, stack name and template, and with the clone's (the source's values, the
//! `--parameter` overrides, and what envclone sets: environment, snapshot and bucket
//! parameters). A resource whose `Condition` is false is not created and names nothing; a name
//! that cannot be evaluated statically (`Fn::GetAtt`, a `Ref` to another resource, `Fn::ImportValue`)
//! is left alone rather than refused on a guess. `AWS::StackName` differs between the two
//! stacks, so names built from it never collide.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use crate::template_eval::Evaluator;

use crate::template_eval::{sub_argument, sub_variables};

/// How names of one kind compare.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fold {
    /// Compared as written.
    Exact,
    /// Compared case-insensitively: IAM ("IAM identifiers": names "are not distinguished by
    /// case … you cannot create resources named both MyResource and myresource"), RDS and
    /// ElastiCache identifiers (stored lowercase).
    Case,
}

/// Resource types with one property naming the resource within its account and region (or
/// worldwide), from each type's page of the CloudFormation "Resource and property types
/// reference". Types whose name is unique only within a scope (a VPC, a hosted zone, a role, an
/// event bus) are handled in `names_of`.
const SIMPLE: &[(&str, &str, Fold)] = &[
    ("AWS::S3::Bucket", "BucketName", Fold::Exact),
    ("AWS::IAM::Role", "RoleName", Fold::Case),
    ("AWS::IAM::ManagedPolicy", "ManagedPolicyName", Fold::Case),
    (
        "AWS::IAM::InstanceProfile",
        "InstanceProfileName",
        Fold::Case,
    ),
    ("AWS::IAM::User", "UserName", Fold::Case),
    ("AWS::IAM::Group", "GroupName", Fold::Case),
    ("AWS::Logs::LogGroup", "LogGroupName", Fold::Exact),
    ("AWS::SSM::Parameter", "Name", Fold::Exact),
    (
        "AWS::EC2::LaunchTemplate",
        "LaunchTemplateName",
        Fold::Exact,
    ),
    ("AWS::RDS::DBInstance", "DBInstanceIdentifier", Fold::Case),
    ("AWS::RDS::DBCluster", "DBClusterIdentifier", Fold::Case),
    ("AWS::RDS::DBSubnetGroup", "DBSubnetGroupName", Fold::Case),
    (
        "AWS::AutoScaling::AutoScalingGroup",
        "AutoScalingGroupName",
        Fold::Exact,
    ),
    (
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        "Name",
        Fold::Exact,
    ),
    (
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        "Name",
        Fold::Exact,
    ),
    ("AWS::DynamoDB::Table", "TableName", Fold::Exact),
    ("AWS::SQS::Queue", "QueueName", Fold::Exact),
    ("AWS::SNS::Topic", "TopicName", Fold::Exact),
    ("AWS::Lambda::Function", "FunctionName", Fold::Exact),
    ("AWS::ECR::Repository", "RepositoryName", Fold::Exact),
    ("AWS::ECS::Cluster", "ClusterName", Fold::Exact),
    ("AWS::Kinesis::Stream", "Name", Fold::Exact),
    ("AWS::SecretsManager::Secret", "Name", Fold::Exact),
    (
        "AWS::StepFunctions::StateMachine",
        "StateMachineName",
        Fold::Exact,
    ),
    ("AWS::CloudWatch::Alarm", "AlarmName", Fold::Exact),
    ("AWS::KMS::Alias", "AliasName", Fold::Exact),
    (
        "AWS::ElastiCache::ReplicationGroup",
        "ReplicationGroupId",
        Fold::Case,
    ),
];

/// A name a stack gives one of its resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedName {
    pub logical_id: String,
    pub resource_type: String,
    /// The property that sets it, e.g. `RoleName` or `RecordSets[1].Name`.
    pub property: String,
    /// The name as evaluated (with its scope, where it has one: "in VPC vpc-1").
    pub name: String,
    /// The template's parameters the name (or its scope) is made from.
    pub parameters: BTreeSet<String>,
    /// What makes two names the same resource: kind, scope and the name as AWS compares it.
    key: String,
}

impl FixedName {
    /// What makes two names the same resource (kind, scope, the name as AWS compares it).
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// A name of the clone that the source already uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameCollision {
    pub clone: FixedName,
    /// The source's resource of that name.
    pub source_logical_id: String,
    /// The `--parameter`s that would change the name (those feeding it that envclone does not
    /// set itself); empty: a literal in the template.
    pub parameters: Vec<String>,
}

impl fmt::Display for NameCollision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.clone;
        write!(
            f,
            "{} ({}) {} {:?}, the name of the source's {}: ",
            c.logical_id, c.resource_type, c.property, c.name, self.source_logical_id
        )?;
        if self.parameters.is_empty() {
            write!(
                f,
                "a literal in the template (no parameter the clone can change sets it); edit \
                 the template to derive it from the environment parameter or AWS::StackName"
            )
        } else {
            let flags: Vec<String> = self
                .parameters
                .iter()
                .map(|p| format!("--parameter {p}=NEW"))
                .collect();
            write!(
                f,
                "set from parameter {} (the same value as the source's); pass {}",
                self.parameters.join(", "),
                flags.join(" or ")
            )
        }
    }
}

/// Whether the stack made from `ev`'s template and parameters creates `logical_id`: it has no
/// `Condition`, or its condition evaluates true. Unknown conditions count as not created (no
/// refusal on a guess).
pub fn created_by_template(ev: &Evaluator<'_>, logical_id: &str) -> bool {
    let Some(resource) = ev.template.resources().and_then(|r| r.get(logical_id)) else {
        return false;
    };
    match resource.get("Condition").and_then(Value::as_str) {
        None => true,
        Some(condition) => ev.condition(condition) == Some(true),
    }
}

/// Every fixed name the stack of `ev` gives the resources for which `created` holds.
pub fn fixed_names(ev: &Evaluator<'_>, created: &dyn Fn(&str) -> bool) -> Vec<FixedName> {
    let Some(resources) = ev.template.resources() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (logical_id, resource) in resources {
        if !created(logical_id) {
            continue;
        }
        let ty = resource.get("Type").and_then(Value::as_str).unwrap_or("");
        let empty = Value::Object(Default::default());
        let props = resource.get("Properties").unwrap_or(&empty);
        names_of(ev, logical_id, ty, props, &mut out);
    }
    out
}

/// The names of the clone (`clone`) that the source (`source`) already has, with the
/// parameters to change for each. `set_by_envclone`: parameters envclone sets itself, which a
/// `--parameter` cannot change.
pub fn collisions(
    source: &[FixedName],
    clone: &[FixedName],
    set_by_envclone: &BTreeSet<String>,
) -> Vec<NameCollision> {
    let by_key: BTreeMap<&str, &FixedName> = source.iter().map(|n| (n.key.as_str(), n)).collect();
    let mut clone: Vec<&FixedName> = clone.iter().collect();
    clone.sort_by(|a, b| (&a.logical_id, &a.property).cmp(&(&b.logical_id, &b.property)));
    clone
        .into_iter()
        .filter_map(|c| {
            let s = by_key.get(c.key.as_str())?;
            Some(NameCollision {
                clone: c.clone(),
                source_logical_id: s.logical_id.clone(),
                parameters: c
                    .parameters
                    .iter()
                    .filter(|p| !set_by_envclone.contains(*p))
                    .cloned()
                    .collect(),
            })
        })
        .collect()
}

fn names_of(
    ev: &Evaluator<'_>,
    logical_id: &str,
    ty: &str,
    props: &Value,
    out: &mut Vec<FixedName>,
) {
    let mut push = |property: String, name: String, key: String, feeding: Vec<&Value>| {
        // Whether the resource is created at all is a way to change it too.
        let mut parameters = BTreeSet::new();
        if let Some(condition) = ev
            .template
            .resources()
            .and_then(|r| r.get(logical_id))
            .and_then(|r| r.get("Condition"))
            .and_then(Value::as_str)
        {
            condition_parameters(ev, condition, &mut parameters);
        }
        for v in feeding {
            feeding_parameters(ev, v, &mut parameters);
        }
        out.push(FixedName {
            logical_id: logical_id.to_string(),
            resource_type: ty.to_string(),
            property,
            name,
            parameters,
            key,
        });
    };
    let text = |v: Option<&Value>| v.and_then(|v| ev.string(v)).filter(|s| !s.is_empty());
    if let Some((_, property, fold)) = SIMPLE.iter().find(|(t, _, _)| *t == ty) {
        if let Some(name) = text(props.get(*property)) {
            let compared = match fold {
                Fold::Exact => name.clone(),
                Fold::Case => name.to_lowercase(),
            };
            push(
                property.to_string(),
                name,
                format!("{ty}|{compared}"),
                vec![&props[*property]],
            );
        }
        return;
    }
    match ty {
        // Unique per VPC ("Amazon EC2 security groups": "names must be unique within the
        // VPC"); without VpcId the group is made in the default VPC.
        "AWS::EC2::SecurityGroup" => {
            let Some(name) = text(props.get("GroupName")) else {
                return;
            };
            let vpc = match props.get("VpcId") {
                None => "the default VPC".to_string(),
                Some(v) => match ev.string(v) {
                    Some(vpc) => vpc,
                    None => return, // a VPC of the stack's own: not the source's
                },
            };
            let mut feeding = vec![&props["GroupName"]];
            if let Some(v) = props.get("VpcId") {
                feeding.push(v);
            }
            push(
                "GroupName".into(),
                format!("{name} in {vpc}"),
                format!("{ty}|{vpc}|{name}"),
                feeding,
            );
        }
        "AWS::Route53::RecordSet" => {
            if let Some((zone, zone_value)) = hosted_zone(ev, props) {
                if let Some((name, key)) = record_key(ev, &zone, props) {
                    push("Name".into(), name, key, vec![&props["Name"], zone_value]);
                }
            }
        }
        "AWS::Route53::RecordSetGroup" => {
            let Some((zone, zone_value)) = hosted_zone(ev, props) else {
                return;
            };
            let Some(sets) = props.get("RecordSets").and_then(Value::as_array) else {
                return;
            };
            for (i, set) in sets.iter().enumerate() {
                if let Some((name, key)) = record_key(ev, &zone, set) {
                    push(
                        format!("RecordSets[{i}].Name"),
                        name,
                        key,
                        vec![&set["Name"], zone_value],
                    );
                }
            }
        }
        // An inline policy is unique per role, user or group it is attached to: a second
        // stack's policy of that name on the same role replaces the first's, and deleting
        // either stack removes it.
        "AWS::IAM::Policy" => {
            let Some(policy) = text(props.get("PolicyName")) else {
                return;
            };
            for (list, kind) in [("Roles", "role"), ("Users", "user"), ("Groups", "group")] {
                let Some(items) = props.get(list).and_then(Value::as_array) else {
                    continue;
                };
                for item in items {
                    if let Some(principal) = ev.string(item) {
                        push(
                            "PolicyName".into(),
                            format!("{policy} on {kind} {principal}"),
                            inline_policy_key(kind, &principal, &policy),
                            vec![&props["PolicyName"], item],
                        );
                    }
                }
            }
        }
        "AWS::IAM::RolePolicy" | "AWS::IAM::UserPolicy" | "AWS::IAM::GroupPolicy" => {
            let (kind, property) = match ty {
                "AWS::IAM::RolePolicy" => ("role", "RoleName"),
                "AWS::IAM::UserPolicy" => ("user", "UserName"),
                _ => ("group", "GroupName"),
            };
            if let (Some(policy), Some(principal)) =
                (text(props.get("PolicyName")), text(props.get(property)))
            {
                push(
                    "PolicyName".into(),
                    format!("{policy} on {kind} {principal}"),
                    inline_policy_key(kind, &principal, &policy),
                    vec![&props["PolicyName"], &props[property]],
                );
            }
        }
        // Unique per event bus (the default one when EventBusName is not given).
        "AWS::Events::Rule" => {
            let Some(name) = text(props.get("Name")) else {
                return;
            };
            let bus = match props.get("EventBusName") {
                None => "default".to_string(),
                Some(v) => match ev.string(v) {
                    Some(bus) => bus,
                    None => return,
                },
            };
            push(
                "Name".into(),
                format!("{name} on event bus {bus}"),
                format!("{ty}|{bus}|{name}"),
                vec![&props["Name"]],
            );
        }
        _ => {}
    }
}

fn inline_policy_key(kind: &str, principal: &str, policy: &str) -> String {
    format!(
        "inline-policy|{kind}|{}|{}",
        principal.to_lowercase(),
        policy.to_lowercase()
    )
}

/// The hosted zone of a record set: `HostedZoneId` (with or without `/hostedzone/`), else
/// `HostedZoneName` (as a DNS name). None when it is not known here (a zone of the stack's own).
fn hosted_zone<'v>(ev: &Evaluator<'_>, props: &'v Value) -> Option<(String, &'v Value)> {
    if let Some(v) = props.get("HostedZoneId") {
        let id = ev.string(v)?;
        return Some((format!("id {}", id.trim_start_matches("/hostedzone/")), v));
    }
    let v = props.get("HostedZoneName")?;
    Some((format!("zone {}", dns_name(&ev.string(v)?)), v))
}

/// A record set is one per (zone, name, type, set identifier). DNS names compare
/// case-insensitively and Route 53 treats a name with and without its final dot alike (Route 53
/// Developer Guide, "DNS domain name format").
fn record_key(ev: &Evaluator<'_>, zone: &str, set: &Value) -> Option<(String, String)> {
    let name = ev.string(set.get("Name")?)?;
    let ty = set
        .get("Type")
        .and_then(|t| ev.string(t))
        .unwrap_or_default()
        .to_uppercase();
    let set_id = match set.get("SetIdentifier") {
        None => String::new(),
        Some(v) => ev.string(v)?,
    };
    let shown = if set_id.is_empty() {
        format!("{name} ({ty})")
    } else {
        format!("{name} ({ty}, set {set_id})")
    };
    Some((
        shown,
        format!(
            "AWS::Route53::RecordSet|{zone}|{}|{ty}|{set_id}",
            dns_name(&name)
        ),
    ))
}

fn dns_name(name: &str) -> String {
    name.trim_end_matches('.').to_lowercase()
}

/// The template parameters `v` is made from: `Ref`s to parameters and `${Param}` in `Fn::Sub`;
/// of an `Fn::If` whose condition is known, only the branch taken.
fn feeding_parameters(ev: &Evaluator<'_>, v: &Value, out: &mut BTreeSet<String>) {
    let declared = |name: &str| {
        ev.template
            .value
            .get("Parameters")
            .and_then(|p| p.get(name))
            .is_some()
    };
    match v {
        Value::Array(items) => items.iter().for_each(|i| feeding_parameters(ev, i, out)),
        Value::Object(map) if map.len() == 1 => {
            let (key, arg) = map.iter().next().expect("one entry");
            match key.as_str() {
                "Ref" => {
                    if let Some(name) = arg.as_str().filter(|n| declared(n)) {
                        out.insert(name.to_string());
                    }
                }
                "Fn::Sub" => {
                    let (text, vars) = sub_argument(arg);
                    for name in sub_variables(text) {
                        match vars.and_then(|vars| vars.get(name)) {
                            Some(var) => feeding_parameters(ev, var, out),
                            None if declared(name) => {
                                out.insert(name.to_string());
                            }
                            None => {}
                        }
                    }
                }
                "Condition" => {
                    if let Some(name) = arg.as_str() {
                        condition_parameters(ev, name, out);
                    }
                }
                "Fn::If" => {
                    let condition = arg.get(0).and_then(Value::as_str);
                    if let Some(name) = condition {
                        condition_parameters(ev, name, out);
                    }
                    let taken = condition.and_then(|c| ev.condition(c));
                    match taken {
                        Some(cond) => {
                            if let Some(branch) = arg.get(if cond { 1 } else { 2 }) {
                                feeding_parameters(ev, branch, out);
                            }
                        }
                        None => feeding_parameters(ev, arg, out),
                    }
                }
                _ => feeding_parameters(ev, arg, out),
            }
        }
        Value::Object(map) => map.values().for_each(|v| feeding_parameters(ev, v, out)),
        _ => {}
    }
}

/// The parameters condition `name` is made from (through the conditions it names).
fn condition_parameters(ev: &Evaluator<'_>, name: &str, out: &mut BTreeSet<String>) {
    if let Some(definition) = ev
        .template
        .value
        .get("Conditions")
        .and_then(|c| c.get(name))
    {
        feeding_parameters(ev, definition, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Template;

    const TEMPLATE: &str = r#"
Parameters:
  EnvironmentName: { Type: String }
  AppRoleName: { Type: String, Default: app-role }
  Domain: { Type: String, Default: example.com }
  ZoneId: { Type: String, Default: Z123 }
  SharedVpc: { Type: String, Default: vpc-1 }
  WithAudit: { Type: String, Default: "no" }
Conditions:
  Audit: !Equals [!Ref WithAudit, "yes"]
Resources:
  Role:
    Type: AWS::IAM::Role
    Properties:
      RoleName: !Ref AppRoleName
  Logs:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: /app/shared
  OwnLogs:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Sub "/app/${EnvironmentName}"
  StackLogs:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Sub "/app/${AWS::StackName}"
  AuditLogs:
    Type: AWS::Logs::LogGroup
    Condition: Audit
    Properties:
      LogGroupName: /app/audit
  Api:
    Type: AWS::Route53::RecordSet
    Properties:
      HostedZoneId: !Ref ZoneId
      Name: !Sub "api.${Domain}"
      Type: CNAME
      TTL: "60"
      ResourceRecords: [!GetAtt Lb.DNSName]
  Sg:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupName: web
      GroupDescription: web
      VpcId: !Ref SharedVpc
  OwnSg:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupName: web
      GroupDescription: web
      VpcId: !Ref Vpc
  Vpc:
    Type: AWS::EC2::VPC
  Lb:
    Type: AWS::ElasticLoadBalancingV2::LoadBalancer
    Properties:
      Name: !GetAtt Vpc.Name
"#;

    fn names(t: &Template, params: &[(&str, &str)], stack: &str) -> Vec<FixedName> {
        let given = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let params = Evaluator::effective_parameters(t, &given);
        let ev = Evaluator {
            template: t,
            parameters: &params,
            stack_name: stack,
            account_id: "123456789012",
            region: "us-east-1",
            resource_refs: BTreeMap::new(),
        };
        fixed_names(&ev, &|id| created_by_template(&ev, id))
    }

    fn found(c: &[NameCollision]) -> Vec<(&str, &str, &str, Vec<&str>)> {
        c.iter()
            .map(|c| {
                (
                    c.clone.logical_id.as_str(),
                    c.clone.property.as_str(),
                    c.clone.name.as_str(),
                    c.parameters.iter().map(String::as_str).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn carried_parameters_and_literals_collide_names_from_the_environment_or_stack_do_not() {
        let t = Template::parse("t.yaml", TEMPLATE).unwrap();
        let source = names(&t, &[("EnvironmentName", "prod")], "prod");
        let clone = names(&t, &[("EnvironmentName", "qa")], "qa");
        let envclone: BTreeSet<String> = ["EnvironmentName".to_string()].into();
        let got = collisions(&source, &clone, &envclone);
        assert_eq!(
            found(&got),
            vec![
                (
                    "Api",
                    "Name",
                    "api.example.com (CNAME)",
                    vec!["Domain", "ZoneId"]
                ),
                ("Logs", "LogGroupName", "/app/shared", vec![]),
                ("Role", "RoleName", "app-role", vec!["AppRoleName"]),
                ("Sg", "GroupName", "web in vpc-1", vec!["SharedVpc"]),
            ]
        );
        let message = got[2].to_string();
        assert!(
            message.contains("--parameter AppRoleName=NEW")
                && message.contains("Role (AWS::IAM::Role)"),
            "{message}"
        );
        assert!(
            got[1].to_string().contains("a literal in the template"),
            "{}",
            got[1]
        );

        // Overridden: no collision for the role; the record in another zone neither.
        let clone = names(
            &t,
            &[
                ("EnvironmentName", "qa"),
                ("AppRoleName", "qa-app-role"),
                ("ZoneId", "/hostedzone/Z999"),
            ],
            "qa",
        );
        let got = collisions(&source, &clone, &envclone);
        assert_eq!(
            found(&got).iter().map(|f| f.0).collect::<Vec<_>>(),
            vec!["Logs", "Sg"]
        );
    }

    #[test]
    fn a_resource_the_clone_does_not_create_names_nothing() {
        let t = Template::parse("t.yaml", TEMPLATE).unwrap();
        let source = names(
            &t,
            &[("EnvironmentName", "prod"), ("WithAudit", "yes")],
            "prod",
        );
        assert!(source.iter().any(|n| n.logical_id == "AuditLogs"));
        let clone = names(&t, &[("EnvironmentName", "qa")], "qa");
        assert!(!clone.iter().any(|n| n.logical_id == "AuditLogs"));
        let both = names(&t, &[("EnvironmentName", "qa"), ("WithAudit", "yes")], "qa");
        let got = collisions(&source, &both, &BTreeSet::new());
        assert!(
            got.iter()
                .any(|c| c.clone.logical_id == "AuditLogs" && c.parameters == ["WithAudit"]),
            "{got:?}"
        );
    }

    #[test]
    fn record_names_compare_without_case_or_final_dot() {
        let src = Template::parse(
            "a.yaml",
            "Resources:\n  R:\n    Type: AWS::Route53::RecordSet\n    Properties:\n      HostedZoneName: Example.COM.\n      Name: API.example.com.\n      Type: a\n",
        )
        .unwrap();
        let new = Template::parse(
            "b.yaml",
            "Resources:\n  Group:\n    Type: AWS::Route53::RecordSetGroup\n    Properties:\n      HostedZoneName: example.com\n      RecordSets:\n        - { Name: www.example.com, Type: A }\n        - { Name: api.example.com, Type: A }\n        - { Name: api.example.com, Type: A, SetIdentifier: blue }\n",
        )
        .unwrap();
        let got = collisions(
            &names(&src, &[], "prod"),
            &names(&new, &[], "prod-m1234"),
            &BTreeSet::new(),
        );
        assert_eq!(
            found(&got),
            vec![("Group", "RecordSets[1].Name", "api.example.com (A)", vec![])]
        );
    }

    #[test]
    fn iam_names_compare_without_case_and_inline_policies_per_role() {
        let t = |role: &str| {
            Template::parse(
                "t.yaml",
                &format!(
                    "Resources:\n  R:\n    Type: AWS::IAM::Role\n    Properties:\n      RoleName: {role}\n  P:\n    Type: AWS::IAM::Policy\n    Properties:\n      PolicyName: read\n      Roles: [shared-role, !Ref R]\n"
                ),
            )
            .unwrap()
        };
        let got = collisions(
            &names(&t("App-Role"), &[], "prod"),
            &names(&t("app-role"), &[], "qa"),
            &BTreeSet::new(),
        );
        assert_eq!(
            found(&got),
            vec![
                ("P", "PolicyName", "read on role shared-role", vec![]),
                ("R", "RoleName", "app-role", vec![]),
            ]
        );
    }

    /// The repository's own templates name everything from the environment parameter or let
    /// CloudFormation choose: no collision, for a clone (same template) or a migration (onto
    /// the next revision), even with every other parameter carried over unchanged.
    #[test]
    fn the_repository_templates_have_no_fixed_names() {
        let templates = [
            (
                "stacks/webapp.yaml",
                include_str!("../../stacks/webapp.yaml"),
            ),
            (
                "stacks/webapp-v2.yaml",
                include_str!("../../stacks/webapp-v2.yaml"),
            ),
            (
                "stacks/aurora.yaml",
                include_str!("../../stacks/aurora.yaml"),
            ),
            (
                "foreign.yaml",
                include_str!("../../tests/fixtures/foreign.yaml"),
            ),
            (
                "foreign-v2.yaml",
                include_str!("../../tests/fixtures/foreign-v2.yaml"),
            ),
            (
                "no-contract.yaml",
                include_str!("../../tests/fixtures/no-contract.yaml"),
            ),
            (
                "db-without-snapshot-param.yaml",
                include_str!("../../tests/fixtures/db-without-snapshot-param.yaml"),
            ),
            (
                "webapp-owned-archive.yaml",
                include_str!("../../tests/fixtures/webapp-owned-archive.yaml"),
            ),
        ];
        let parsed: Vec<(&str, Template)> = templates
            .iter()
            .map(|(name, body)| (*name, Template::parse(name, body).unwrap()))
            .collect();
        let stack_names = |t: &Template, env: &str| {
            let decls = t.parameters();
            let env_param = if decls.contains_key("Stage") {
                "Stage"
            } else {
                "EnvironmentName"
            };
            let given: Vec<(String, String)> = decls
                .into_iter()
                .filter(|(_, d)| d.default.is_none())
                .map(|(k, _)| {
                    let v = if k == env_param {
                        env.to_string()
                    } else {
                        "carried".into()
                    };
                    (k, v)
                })
                .collect();
            let given: Vec<(&str, &str)> = given
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            names(t, &given, env)
        };
        let pairs = [
            (0, 0),
            (0, 1),
            (1, 1),
            (2, 2),
            (3, 3),
            (3, 4),
            (4, 4),
            (5, 5),
            (6, 6),
            (7, 7),
        ];
        for (from, to) in pairs {
            let source = stack_names(&parsed[from].1, "prod");
            assert!(
                !source.is_empty() || from == 5,
                "{}: names found",
                parsed[from].0
            );
            let clone = stack_names(&parsed[to].1, "prod-m1234");
            let got = collisions(&source, &clone, &BTreeSet::new());
            assert!(
                got.is_empty(),
                "{} -> {}: {got:?}",
                parsed[from].0,
                parsed[to].0
            );
        }
    }

    #[test]
    fn names_not_known_statically_are_left_alone() {
        let t = Template::parse("t.yaml", TEMPLATE).unwrap();
        let clone = names(&t, &[("EnvironmentName", "qa")], "qa");
        // OwnSg is in the stack's own VPC, Lb's name comes from Fn::GetAtt.
        assert!(
            !clone
                .iter()
                .any(|n| n.logical_id == "OwnSg" || n.logical_id == "Lb"),
            "{clone:?}"
        );
    }
}
