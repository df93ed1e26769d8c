//! The swap is not done until the new environment works.
//!
//! Two halves. Before any change (preflight of `migrate`): a new template that hands its own
//! database's endpoint or identifier to the application keeps the pre-swap value after the
//! rename, so such references are found and refused unless a `post_swap` hook is there to
//! repoint them. After the swap (databases renamed, entry record moved, hooks run): the
//! contract's `verify` checks run again against the live environment and the new stack's
//! instances must be InService and Healthy; a failure makes the swap fail, which swaps back.

use serde_json::Value;

use crate::contract::{Contract, Template};
use crate::events::Emitter;
use crate::retry::{retry, wait_until, Poll};

use super::engine::CloneEngine;
use super::record::MigrationState;
use super::resource::Renamed;
use super::resources::KINDS;
use super::StepError;
use crate::template_eval::{sub_argument, sub_variables};

/// One place where a template hands a database's pre-swap name to something that outlives the
/// stack's creation (user data, a config file, an output, a parameter store value…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointReference {
    /// The logical id of what the swap renames (`ResourceKind::swap_renames`: a database).
    pub renamed: String,
    /// Where: `Resources.Web.Properties.LaunchTemplateData.UserData…` or `Outputs.X.Value`.
    pub path: String,
    /// What: `Fn::GetAtt Database.Endpoint.Address`, `${Database.Endpoint.Address}`, `Ref Database`.
    pub expression: String,
}

impl std::fmt::Display for EndpointReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.path, self.expression)
    }
}

/// Every reference of `template` (outside the resources linked to them by a link the rename
/// keeps) to the identifier, endpoint host name or ARN of one of `renamed` (what the swap
/// renames, as the kinds say: `ResourceKind::swap_renames`): in resource properties and
/// metadata (user data, launch templates, cfn-init files, SSM parameters, task definitions'
/// environment…) and in outputs.
pub fn endpoint_references(template: &Template, renamed: &[Renamed]) -> Vec<EndpointReference> {
    let mut out = Vec::new();
    if let Some(resources) = template.resources() {
        for (id, resource) in resources {
            let ty = resource.get("Type").and_then(Value::as_str).unwrap_or("");
            if renamed.iter().any(|r| r.linked_types.contains(&ty)) {
                continue;
            }
            for part in ["Properties", "Metadata"] {
                if let Some(v) = resource.get(part) {
                    scan(v, &format!("Resources.{id}.{part}"), renamed, &mut out);
                }
            }
        }
    }
    if let Some(outputs) = template.value.get("Outputs").and_then(Value::as_object) {
        for (name, output) in outputs {
            if let Some(v) = output.get("Value") {
                scan(v, &format!("Outputs.{name}.Value"), renamed, &mut out);
            }
        }
    }
    out
}

/// The renamed resource `name` names, if `attr` (empty: `Ref`) changes with its identifier.
fn renamed_by<'a>(renamed: &'a [Renamed], name: &str, attr: &str) -> Option<&'a Renamed> {
    renamed
        .iter()
        .find(|r| r.logical_id == name && (attr.is_empty() || r.attributes.contains(&attr)))
}

fn scan(v: &Value, path: &str, dbs: &[Renamed], out: &mut Vec<EndpointReference>) {
    let mut found = |renamed: &str, expression: String| {
        out.push(EndpointReference {
            renamed: renamed.to_string(),
            path: path.to_string(),
            expression,
        })
    };
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                scan(item, &format!("{path}[{i}]"), dbs, out);
            }
        }
        Value::Object(map) => {
            if map.len() == 1 {
                let (key, arg) = map.iter().next().expect("one entry");
                match key.as_str() {
                    "Ref" => {
                        if let Some(name) =
                            arg.as_str().filter(|n| renamed_by(dbs, n, "").is_some())
                        {
                            found(name, format!("Ref {name}"));
                        }
                        return;
                    }
                    "Fn::GetAtt" => {
                        let (res, attr) = match arg {
                            Value::Array(a) => (
                                a.first().and_then(Value::as_str).unwrap_or(""),
                                a.get(1).and_then(Value::as_str).unwrap_or(""),
                            ),
                            Value::String(s) => s.split_once('.').unwrap_or((s, "")),
                            _ => ("", ""),
                        };
                        if !attr.is_empty() && renamed_by(dbs, res, attr).is_some() {
                            found(res, format!("Fn::GetAtt {res}.{attr}"));
                        }
                        return;
                    }
                    "Fn::Sub" => {
                        let (text, vars) = sub_argument(arg);
                        for name in sub_variables(text) {
                            if vars.is_some_and(|v| v.contains_key(name)) {
                                continue; // a local variable of this Fn::Sub
                            }
                            let (res, attr) = name.split_once('.').unwrap_or((name, ""));
                            if renamed_by(dbs, res, attr).is_some() {
                                found(res, format!("${{{name}}} in Fn::Sub"));
                            }
                        }
                        if let Some(vars) = vars {
                            for (k, v) in vars {
                                scan(v, &format!("{path}.Fn::Sub[1].{k}"), dbs, out);
                            }
                        }
                        return;
                    }
                    _ => {}
                }
            }
            for (k, v) in map {
                scan(v, &format!("{path}.{k}"), dbs, out);
            }
        }
        _ => {}
    }
}

/// The preflight refusal for `references` (none: Ok). With a `post_swap` hook configured the
/// operator has said how the new environment is repointed: the references are returned, to be
/// reported as a warning when the run starts.
pub fn refuse_endpoint_references(
    template_origin: &str,
    contract: &Contract,
    references: &[EndpointReference],
) -> Result<(), String> {
    if references.is_empty() || !contract.hooks.post_swap.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = references.iter().map(ToString::to_string).collect();
    Err(format!(
        "the new template {template_origin} hands its database's pre-swap name to the \
         application: {}. CloudFormation resolves these once, when the new stack is created, \
         to the temporary identifier; the swap renames that database to the original \
         identifier, and the old host name stops resolving at once — the new environment would \
         lose its database right after the swap. Fix: configure a `post_swap` hook \
         (Metadata.envclone.hooks.post_swap, or [environments.<env>.hooks] post_swap in \
         envclone.toml) that repoints each of these (it gets ENVCLONE_DATABASE_<LogicalId> and \
         ENVCLONE_DATABASE_<LogicalId>_ENDPOINT, the live values) in the running instances and \
         in what new instances read at boot; or have the application read the host name from \
         a place outside the stack that the hook updates",
        list.join("; ")
    ))
}

impl CloneEngine {
    /// After the swap: the entry record answers with the new target (as Route 53 has it), each
    /// database is available at the identifier clients use, the contract's HTTP checks pass on the new stack's outputs, and every Auto Scaling group of
    /// the new stack has its desired number of instances InService and Healthy. The record is
    /// read from Route 53 (authoritative, INSYNC) rather than resolved by name here: a resolver
    /// may answer with the old record for its TTL, and a check through it would test the old
    /// environment; the HTTP checks reach the new load balancer through the URLs the template
    /// gives (which the clone's verification already used). Each is polled
    /// for `settings.post_swap_timeout` at most (the environment is live: a long wait is an
    /// outage); the first failure fails the swap (which then swaps back).
    pub(super) async fn verify_after_swap(
        &self,
        state: &MigrationState,
        contract: &Contract,
        events: &Emitter,
    ) -> Result<(), StepError> {
        let step = "verify.after_swap";
        let cloud = &self.cloud;
        let timeout = self.settings.post_swap_timeout;
        events.start(
            step,
            Some(&state.target_stack),
            "checking the live environment after the swap",
        );
        let stack = retry(|| cloud.stacks.describe_stack(&state.target_stack))
            .await
            .map_err(StepError::port(step))?
            .ok_or_else(|| {
                StepError::Verification(format!(
                    "after the swap: stack {} does not exist",
                    state.target_stack
                ))
            })?;
        let mut failures = Vec::new();

        if let Some(dns) = &state.dns {
            let zone = self.dns_zone_id(&dns.zone).await?;
            let what = format!("entry record {} to be {}", dns.after.name, dns.after);
            let result = wait_until(&what, timeout, || async {
                let now = cloud.dns.records(&zone, &dns.after.name).await?;
                Ok(
                    if now
                        .iter()
                        .any(|r| super::entry_dns::same_record(r, &dns.after))
                    {
                        Poll::Ready(())
                    } else {
                        Poll::Pending(
                            now.iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join("; "),
                        )
                    },
                )
            })
            .await;
            if let Err(e) = result {
                failures.push(e.to_string());
            }
        }

        for check in &contract.verify {
            let crate::contract::VerifyCheck::HttpOutput(output) = check;
            let Some(url) = stack.outputs.get(output).cloned() else {
                failures.push(format!("the new stack has no output {output}"));
                continue;
            };
            let what = format!("{url} (output {output}) to answer 2xx after the swap");
            let result = wait_until(&what, timeout, || async {
                Ok(match cloud.http.get_status(&url).await {
                    Ok(code) if (200..300).contains(&code) => Poll::Ready(code),
                    Ok(code) => Poll::Pending(format!("HTTP {code}")),
                    Err(e) => Poll::Pending(e.to_string()),
                })
            })
            .await;
            match result {
                Ok(code) => events.done(step, Some(&url), format!("HTTP {code}")),
                Err(e) => failures.push(e.to_string()),
            }
        }

        let resources = retry(|| cloud.stacks.resources(&state.target_stack))
            .await
            .map_err(StepError::port(step))?;
        for kind in KINDS {
            kind.check_after_swap(self, state, &resources, timeout, events, &mut failures)
                .await?;
        }

        if failures.is_empty() {
            events.done(
                step,
                Some(&state.target_stack),
                "the new environment answers after the swap",
            );
            Ok(())
        } else {
            Err(StepError::Verification(format!(
                "after the swap: {}",
                failures.join("; ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_endpoint_references_in_user_data_outputs_and_parameters() {
        let t = Template::parse(
            "t.yaml",
            r#"
Resources:
  Db:
    Type: AWS::RDS::DBInstance
    Properties: { DBInstanceIdentifier: x }
  Lt:
    Type: AWS::EC2::LaunchTemplate
    Properties:
      LaunchTemplateData:
        UserData:
          Fn::Base64: !Sub
            - "DB_HOST=${DbHost}\nPORT=${Db.Endpoint.Port}\nLITERAL=${!Db}"
            - DbHost: { "Fn::GetAtt": [Db, Endpoint.Address] }
  Param:
    Type: AWS::SSM::Parameter
    Properties:
      Type: String
      Value: !Sub "${Db.Endpoint.Address}:3306"
  Task:
    Type: AWS::ECS::TaskDefinition
    Properties:
      ContainerDefinitions:
        - Environment:
            - { Name: DB_ID, Value: !Ref Db }
            - { Name: DB_RES, Value: !GetAtt Db.DbiResourceId }
Outputs:
  Endpoint: { Value: !GetAtt Db.Endpoint.Address }
  Port: { Value: !GetAtt Db.Endpoint.Port }
"#,
        )
        .unwrap();
        let renamed = Renamed {
            logical_id: "Db".into(),
            attributes: crate::workflow::resources::RENAMED_ATTRIBUTES,
            linked_types: &[crate::contract::DB_INSTANCE, crate::contract::DB_CLUSTER],
        };
        let found = endpoint_references(&t, &[renamed]);
        let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "Resources.Lt.Properties.LaunchTemplateData.UserData.Fn::Base64.Fn::Sub[1].DbHost \
                 (Fn::GetAtt Db.Endpoint.Address)",
                "Resources.Param.Properties.Value (${Db.Endpoint.Address} in Fn::Sub)",
                "Resources.Task.Properties.ContainerDefinitions[0].Environment[0].Value (Ref Db)",
                "Outputs.Endpoint.Value (Fn::GetAtt Db.Endpoint.Address)",
            ],
            "port, resource id and ${{!Literal}} do not change with the identifier"
        );
    }
}
