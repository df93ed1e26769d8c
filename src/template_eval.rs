//! A small evaluator of CloudFormation intrinsic functions.
//!
//! Preflight uses it to predict the names a clone stack will give its resources (a fixed
//! `DBInstanceIdentifier: !Sub "${EnvironmentName}-db"` must be valid and free before anything
//! starts); the in-memory fake uses it to materialise stacks. It knows `Ref`, `Fn::Sub`,
//! `Fn::Join`, `Fn::If`, `Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`, `Condition`, `Fn::Select`
//! and the common pseudo parameters; anything else (e.g. `Fn::GetAtt`) is "unknown here".

use std::collections::BTreeMap;

use serde_json::Value;

use crate::contract::Template;

pub struct Evaluator<'a> {
    pub template: &'a Template,
    pub parameters: &'a BTreeMap<String, String>,
    pub stack_name: &'a str,
    pub account_id: &'a str,
    pub region: &'a str,
    /// Values of `Ref` to resources and of `Fn::GetAtt`, where the caller knows them.
    pub resource_refs: BTreeMap<String, String>,
}

/// The result of evaluating: a value, or "AWS::NoValue" (the property is left out).
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluated {
    Value(Value),
    NoValue,
}

impl<'a> Evaluator<'a> {
    /// The parameters as CloudFormation would see them: given values, else defaults.
    pub fn effective_parameters(
        template: &Template,
        given: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (name, decl) in template.parameters() {
            if let Some(v) = given.get(&name).cloned().or(decl.default) {
                out.insert(name, v);
            }
        }
        out
    }

    pub fn condition(&self, name: &str) -> Option<bool> {
        let cond = self.template.value.get("Conditions")?.get(name)?;
        self.truth(cond)
    }

    fn truth(&self, v: &Value) -> Option<bool> {
        match self.eval(v)? {
            Evaluated::Value(Value::Bool(b)) => Some(b),
            Evaluated::Value(Value::String(s)) if s == "true" => Some(true),
            Evaluated::Value(Value::String(s)) if s == "false" => Some(false),
            _ => None,
        }
    }

    /// `v` evaluated to a string (numbers and booleans as CloudFormation writes them); None
    /// when it is not a scalar or depends on something unknown here.
    pub fn string(&self, v: &Value) -> Option<String> {
        match self.eval(v)? {
            Evaluated::Value(Value::String(s)) => Some(s),
            Evaluated::Value(Value::Number(n)) => Some(n.to_string()),
            Evaluated::Value(Value::Bool(b)) => Some(b.to_string()),
            _ => None,
        }
    }

    /// Evaluates `v`; None when it depends on something unknown here.
    pub fn eval(&self, v: &Value) -> Option<Evaluated> {
        let Value::Object(map) = v else {
            if let Value::Array(items) = v {
                let mut out = Vec::new();
                for item in items {
                    match self.eval(item)? {
                        Evaluated::Value(x) => out.push(x),
                        Evaluated::NoValue => {}
                    }
                }
                return Some(Evaluated::Value(Value::Array(out)));
            }
            return Some(Evaluated::Value(v.clone()));
        };
        if map.len() == 1 {
            let (key, arg) = map.iter().next().expect("one entry");
            match key.as_str() {
                "Ref" => return self.reference(arg.as_str()?),
                "Condition" => {
                    return self
                        .condition(arg.as_str()?)
                        .map(|b| Evaluated::Value(b.into()))
                }
                "Fn::Sub" => return self.sub(arg),
                "Fn::Join" => {
                    let sep = arg.get(0)?.as_str()?;
                    let Evaluated::Value(Value::Array(items)) = self.eval(arg.get(1)?)? else {
                        return None;
                    };
                    let parts: Option<Vec<String>> = items.iter().map(|i| self.string(i)).collect();
                    return Some(Evaluated::Value(parts?.join(sep).into()));
                }
                "Fn::Select" => {
                    let index: usize = self.string(arg.get(0)?)?.parse().ok()?;
                    let Evaluated::Value(Value::Array(items)) = self.eval(arg.get(1)?)? else {
                        return None;
                    };
                    return items.get(index).cloned().map(Evaluated::Value);
                }
                "Fn::If" => {
                    let cond = self.condition(arg.get(0)?.as_str()?)?;
                    return self.eval(arg.get(if cond { 1 } else { 2 })?);
                }
                "Fn::Equals" => {
                    let a = self.string(arg.get(0)?)?;
                    let b = self.string(arg.get(1)?)?;
                    return Some(Evaluated::Value((a == b).into()));
                }
                "Fn::Not" => {
                    let inner = self.truth(arg.get(0)?)?;
                    return Some(Evaluated::Value((!inner).into()));
                }
                "Fn::And" | "Fn::Or" => {
                    let values: Option<Vec<bool>> =
                        arg.as_array()?.iter().map(|c| self.truth(c)).collect();
                    let values = values?;
                    let out = if key == "Fn::And" {
                        values.iter().all(|b| *b)
                    } else {
                        values.iter().any(|b| *b)
                    };
                    return Some(Evaluated::Value(out.into()));
                }
                "Fn::GetAtt" => {
                    let res = arg.get(0)?.as_str()?;
                    let attr = arg.get(1)?.as_str()?;
                    return self
                        .resource_refs
                        .get(&format!("{res}.{attr}"))
                        .map(|s| Evaluated::Value(s.clone().into()));
                }
                k if k.starts_with("Fn::") => return None,
                _ => {}
            }
        }
        let mut out = serde_json::Map::new();
        for (k, v) in map {
            match self.eval(v)? {
                Evaluated::Value(x) => {
                    out.insert(k.clone(), x);
                }
                Evaluated::NoValue => {}
            }
        }
        Some(Evaluated::Value(Value::Object(out)))
    }

    fn reference(&self, name: &str) -> Option<Evaluated> {
        let pseudo = match name {
            "AWS::NoValue" => return Some(Evaluated::NoValue),
            "AWS::StackName" => Some(self.stack_name.to_string()),
            "AWS::AccountId" => Some(self.account_id.to_string()),
            "AWS::Region" => Some(self.region.to_string()),
            "AWS::Partition" => Some("aws".to_string()),
            "AWS::URLSuffix" => Some("amazonaws.com".to_string()),
            _ => None,
        };
        pseudo
            .or_else(|| self.parameters.get(name).cloned())
            .or_else(|| self.resource_refs.get(name).cloned())
            .map(|s| Evaluated::Value(s.into()))
    }

    fn sub(&self, arg: &Value) -> Option<Evaluated> {
        let (text, vars) = match arg {
            Value::String(s) => (s.as_str(), None),
            Value::Array(a) => (a.first()?.as_str()?, a.get(1).and_then(Value::as_object)),
            _ => return None,
        };
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            // `${!Literal}` writes `${Literal}`.
            if let Some(literal) = after.strip_prefix('!') {
                let end = literal.find('}')?;
                out.push_str("${");
                out.push_str(&literal[..=end]);
                rest = &literal[end + 1..];
                continue;
            }
            let end = after.find('}')?;
            let name = &after[..end];
            let value = match vars.and_then(|v| v.get(name)) {
                Some(v) => self.string(v)?,
                None => match name.split_once('.') {
                    Some((res, attr)) if !name.starts_with("AWS::") => {
                        self.resource_refs.get(&format!("{res}.{attr}")).cloned()?
                    }
                    _ => match self.reference(name)? {
                        Evaluated::Value(Value::String(s)) => s,
                        _ => return None,
                    },
                },
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Some(Evaluated::Value(out.into()))
    }

    /// Whether a stack made from the template with these parameters uses parameter `name`:
    /// a `Ref` or `Fn::Sub` `${name}` in a resource or output the stack creates, outside the
    /// `Fn::If` branches its conditions do not take. Conservative where the value could matter
    /// in a way not followed here: a use in `Conditions` or `Rules`, or any `Transform` (a
    /// macro sees every parameter), counts as a use, as does an `Fn::If` whose condition is
    /// unknown here.
    pub fn uses_parameter(&self, name: &str) -> bool {
        let v = &self.template.value;
        if v.get("Transform").is_some()
            || v.get("Conditions").is_some_and(|c| mentions(c, name))
            || v.get("Rules").is_some_and(|r| mentions(r, name))
        {
            return true;
        }
        ["Resources", "Outputs"].iter().any(|section| {
            v.get(*section)
                .and_then(Value::as_object)
                .is_some_and(|entries| {
                    entries.values().any(|entry| {
                        let created = entry
                            .get("Condition")
                            .and_then(Value::as_str)
                            .is_none_or(|c| self.condition(c) != Some(false));
                        created && self.uses(entry, name)
                    })
                })
        })
    }

    fn uses(&self, v: &Value, name: &str) -> bool {
        match v {
            Value::Object(map) => {
                if map.len() == 1 {
                    if let Some(Value::Array(args)) = map.get("Fn::If") {
                        let taken = args
                            .first()
                            .and_then(Value::as_str)
                            .and_then(|c| self.condition(c));
                        return match (taken, args.get(1), args.get(2)) {
                            (Some(true), Some(then), _) => self.uses(then, name),
                            (Some(false), _, Some(otherwise)) => self.uses(otherwise, name),
                            _ => args.iter().skip(1).any(|a| self.uses(a, name)),
                        };
                    }
                }
                map.iter().any(|(key, inner)| match (key.as_str(), inner) {
                    ("Ref", Value::String(r)) => r == name,
                    ("Fn::Sub", Value::String(text)) => sub_mentions(text, name),
                    ("Fn::Sub", Value::Array(args)) => {
                        let own = args.get(1).and_then(Value::as_object);
                        let shadowed = own.is_some_and(|m| m.contains_key(name));
                        let in_text = args
                            .first()
                            .and_then(Value::as_str)
                            .is_some_and(|t| !shadowed && sub_mentions(t, name));
                        in_text || args.iter().skip(1).any(|a| self.uses(a, name))
                    }
                    _ => self.uses(inner, name),
                })
            }
            Value::Array(items) => items.iter().any(|i| self.uses(i, name)),
            _ => false,
        }
    }

    /// A resource property, evaluated; None if absent, NoValue or unknown.
    pub fn property(&self, logical_id: &str, property: &str) -> Option<String> {
        let v = self
            .template
            .resources()?
            .get(logical_id)?
            .get("Properties")?
            .get(property)?;
        self.string(v)
    }
}

/// `v` refers to parameter `name` anywhere (no condition followed).
fn mentions(v: &Value, name: &str) -> bool {
    match v {
        Value::Object(map) => map.iter().any(|(key, inner)| match (key.as_str(), inner) {
            ("Ref", Value::String(r)) => r == name,
            ("Fn::Sub", Value::String(text)) => sub_mentions(text, name),
            _ => mentions(inner, name),
        }),
        Value::Array(items) => items.iter().any(|i| mentions(i, name)),
        Value::String(text) => sub_mentions(text, name),
        _ => false,
    }
}

/// An `Fn::Sub` text substitutes `${name}` (`${!name}` is a literal).
fn sub_mentions(text: &str, name: &str) -> bool {
    text.contains(&format!("${{{name}}}"))
}

/// The text of a `Fn::Sub` and its local variables (`Fn::Sub: [text, {Var: value}]`).
pub(crate) fn sub_argument(arg: &Value) -> (&str, Option<&serde_json::Map<String, Value>>) {
    match arg {
        Value::String(s) => (s.as_str(), None),
        Value::Array(a) => (
            a.first().and_then(Value::as_str).unwrap_or(""),
            a.get(1).and_then(Value::as_object),
        ),
        _ => ("", None),
    }
}

/// The `${Name}` variables of a `Fn::Sub` string (`${!Literal}` is text).
pub(crate) fn sub_variables(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let name = after[..end].trim();
        if !name.starts_with('!') {
            out.push(name);
        }
        rest = &after[end + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_the_reference_template_patterns() {
        let t = Template::parse(
            "t.yaml",
            r#"
Parameters:
  EnvironmentName: { Type: String }
  DBSnapshotIdentifier: { Type: String, Default: "" }
Conditions:
  HasSnapshot: !Not [!Equals [!Ref DBSnapshotIdentifier, ""]]
Resources:
  Db:
    Type: AWS::RDS::DBInstance
    Properties:
      DBInstanceIdentifier: !Sub "${EnvironmentName}-db"
      DBSnapshotIdentifier: !If [HasSnapshot, !Ref DBSnapshotIdentifier, !Ref "AWS::NoValue"]
      MasterUsername: !If [HasSnapshot, !Ref "AWS::NoValue", admin]
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Join ["-", [!Ref EnvironmentName, uploads, !Ref "AWS::AccountId"]]
"#,
        )
        .unwrap();
        let mut given = BTreeMap::new();
        given.insert("EnvironmentName".to_string(), "qa".to_string());
        let params = Evaluator::effective_parameters(&t, &given);
        let ev = Evaluator {
            template: &t,
            parameters: &params,
            stack_name: "qa",
            account_id: "123456789012",
            region: "us-east-1",
            resource_refs: BTreeMap::new(),
        };
        assert_eq!(
            ev.property("Db", "DBInstanceIdentifier").as_deref(),
            Some("qa-db")
        );
        assert_eq!(ev.property("Db", "DBSnapshotIdentifier"), None);
        assert_eq!(
            ev.property("Db", "MasterUsername").as_deref(),
            Some("admin")
        );
        assert_eq!(
            ev.property("Bucket", "BucketName").as_deref(),
            Some("qa-uploads-123456789012")
        );
        given.insert("DBSnapshotIdentifier".into(), "snap-1".into());
        let params = Evaluator::effective_parameters(&t, &given);
        let ev = Evaluator {
            parameters: &params,
            ..ev
        };
        assert_eq!(
            ev.property("Db", "DBSnapshotIdentifier").as_deref(),
            Some("snap-1")
        );
        assert_eq!(ev.property("Db", "MasterUsername"), None);
    }

    /// Issue 15, item 1: a NoEcho parameter is "used" only where the stack would use it.
    #[test]
    fn a_parameter_under_an_untaken_branch_is_unused() {
        let t = Template::parse("webapp.yaml", include_str!("../stacks/webapp.yaml")).unwrap();
        let check = |snapshot: &str, name: &str| {
            let given: BTreeMap<String, String> = [
                ("EnvironmentName", "qa"),
                ("ReportsBucketName", "qa-reports"),
                ("DBSnapshotIdentifier", snapshot),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            let parameters = Evaluator::effective_parameters(&t, &given);
            Evaluator {
                template: &t,
                parameters: &parameters,
                stack_name: "qa",
                account_id: "123456789012",
                region: "us-east-1",
                resource_refs: BTreeMap::new(),
            }
            .uses_parameter(name)
        };
        assert!(!check("snap-1", "DBMasterPassword"), "restoring: not used");
        assert!(check("", "DBMasterPassword"), "a new database uses it");
        assert!(check("snap-1", "InstanceType"));
        // `${ReportsBucketName}` inside the list form of Fn::Sub (user data).
        assert!(check("snap-1", "ReportsBucketName"));

        let mut transformed = t.clone();
        transformed.value["Transform"] = "AWS::Serverless-2016-10-31".into();
        let parameters = BTreeMap::new();
        let ev = Evaluator {
            template: &transformed,
            parameters: &parameters,
            stack_name: "qa",
            account_id: "123456789012",
            region: "us-east-1",
            resource_refs: BTreeMap::new(),
        };
        assert!(
            ev.uses_parameter("DBMasterPassword"),
            "a macro sees every parameter"
        );
    }
}
