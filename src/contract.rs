//! The template and its cloning contract (`Metadata.envclone`).
//!
//! Owns parsing a CloudFormation template (YAML with short-form tags, or JSON) into a plain JSON
//! value, reading the contract from its `Metadata`, and checking the contract against the
//! template's own parameters and resources — everything a preflight can know from the text alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ContractError {
    #[error("template {origin} is not valid YAML or JSON: {reason}; fix the syntax and try again")]
    Syntax { origin: String, reason: String },
    #[error(
        "template {origin} has no Metadata.envclone section; add one (see stacks/README.md) \
         so envclone knows which parameter names the environment and how each database \
         receives its snapshot"
    )]
    Missing { origin: String },
    #[error("template {origin}: Metadata.envclone is malformed: {reason}; see stacks/README.md")]
    Malformed { origin: String, reason: String },
    #[error("template {origin}: {problem}; fix: {fix}")]
    Inconsistent {
        origin: String,
        problem: String,
        fix: String,
    },
}

/// A parsed template, with short-form intrinsic tags (`!Ref`, `!Sub`…) turned into their long
/// form so code downstream sees one shape.
#[derive(Debug, Clone)]
pub struct Template {
    pub origin: String,
    pub body: String,
    pub value: Value,
}

/// What the template declares about one parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct ParameterDecl {
    pub default: Option<String>,
    pub no_echo: bool,
}

impl Template {
    pub fn parse(origin: &str, body: &str) -> Result<Self, ContractError> {
        let yaml: serde_norway::Value =
            serde_norway::from_str(&yaml11_booleans(body)).map_err(|e| ContractError::Syntax {
                origin: origin.to_string(),
                reason: e.to_string(),
            })?;
        let value = yaml_to_json(yaml);
        if !value.is_object() {
            return Err(ContractError::Syntax {
                origin: origin.to_string(),
                reason: "the top level is not a mapping".into(),
            });
        }
        Ok(Template {
            origin: origin.to_string(),
            body: body.to_string(),
            value,
        })
    }

    pub fn parameters(&self) -> BTreeMap<String, ParameterDecl> {
        let mut out = BTreeMap::new();
        if let Some(params) = self.value.get("Parameters").and_then(Value::as_object) {
            for (name, decl) in params {
                let default = decl.get("Default").map(scalar_to_string);
                let no_echo = decl
                    .get("NoEcho")
                    .map(|v| v == &Value::Bool(true) || v.as_str() == Some("true"))
                    .unwrap_or(false);
                out.insert(name.clone(), ParameterDecl { default, no_echo });
            }
        }
        out
    }

    /// Logical id → resource type.
    pub fn resource_types(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(resources) = self.value.get("Resources").and_then(Value::as_object) {
            for (id, res) in resources {
                let ty = res.get("Type").and_then(Value::as_str).unwrap_or_default();
                out.insert(id.clone(), ty.to_string());
            }
        }
        out
    }

    pub fn resources(&self) -> Option<&Map<String, Value>> {
        self.value.get("Resources").and_then(Value::as_object)
    }

    /// The logical id of the cluster a DB instance resource joins (`DBClusterIdentifier: !Ref`).
    pub fn cluster_of(&self, instance_id: &str) -> Option<&str> {
        self.resources()?
            .get(instance_id)?
            .get("Properties")?
            .get("DBClusterIdentifier")?
            .get("Ref")?
            .as_str()
    }

    /// The logical id of the DB instance a read replica resource is created from
    /// (`SourceDBInstanceIdentifier: !Ref Main`, or `!GetAtt Main.DBInstanceArn`).
    pub fn replica_source_of(&self, instance_id: &str) -> Option<&str> {
        let source = self
            .resources()?
            .get(instance_id)?
            .get("Properties")?
            .get("SourceDBInstanceIdentifier")?;
        match (source.get("Ref"), source.get("Fn::GetAtt")) {
            (Some(Value::String(id)), _) => Some(id),
            (_, Some(Value::Array(att))) if att.get(1) == Some(&"DBInstanceArn".into()) => {
                att.first()?.as_str()
            }
            _ => None,
        }
    }
}

/// Render a template scalar the way CloudFormation passes it to a parameter (numbers and
/// booleans become their text).
/// The plain (unquoted) scalars YAML 1.1 reads as booleans and YAML 1.2 as strings, besides
/// true/false (which both read alike).
const YAML11_TRUE: &[&str] = &["y", "Y", "yes", "Yes", "YES", "on", "On", "ON"];
const YAML11_FALSE: &[&str] = &["n", "N", "no", "No", "NO", "off", "Off", "OFF"];

/// `body` with every plain `Yes`/`No`/`On`/`Off`/`Y`/`N` value written `true`/`false`, for
/// reading only (the template's own text is what CloudFormation receives). CloudFormation reads
/// YAML 1.1, where these are booleans ("CloudFormation treats unquoted values that are YAML 1.1
/// native booleans as booleans, rather than strings", aws-cli #5257, which quotes them when it
/// writes templates); serde_norway reads YAML 1.2, where they are strings. Without this, a
/// `!Equals [!Ref Switch, Yes]` compared the source's `true` with `Yes` and a condition the
/// stack took read as false (its resources then escaped the inventory). Quoted scalars, keys,
/// comments and block scalars (`|`, `>`) are left alone; JSON has no such scalars.
fn yaml11_booleans(body: &str) -> std::borrow::Cow<'_, str> {
    if body.trim_start().starts_with('{') {
        return body.into();
    }
    let word = |w: &str| {
        if YAML11_TRUE.contains(&w) {
            Some("true")
        } else if YAML11_FALSE.contains(&w) {
            Some("false")
        } else {
            None
        }
    };
    let mut changed = false;
    let mut out = String::with_capacity(body.len());
    // The indentation of the line that opened a block scalar, while inside it.
    let mut block: Option<usize> = None;
    for line in body.split_inclusive('\n') {
        let text = line.trim_end_matches(['\n', '\r']);
        let ending = &line[text.len()..];
        let indent = text.len() - text.trim_start().len();
        if let Some(parent) = block {
            if text.trim().is_empty() || indent > parent {
                out.push_str(line);
                continue;
            }
            block = None;
        }
        let trimmed = text.trim_start();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            out.push_str(line);
            continue;
        }
        // Where the value starts: after the first `: ` of a mapping entry, else after the
        // dashes of a sequence item.
        let value_at = match text.find(": ") {
            Some(i) if !text[..i].contains(['"', '\'']) => i + 2,
            Some(_) => {
                out.push_str(line);
                continue;
            }
            None => {
                let mut at = indent;
                while text[at..].starts_with("- ") {
                    at += 2;
                    at += text[at..].len() - text[at..].trim_start().len();
                }
                if at == indent {
                    out.push_str(line);
                    continue;
                }
                at
            }
        };
        let rest = &text[value_at..];
        // A trailing comment needs a space before its `#`.
        let (value, comment) = match rest.find(" #") {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let value_trimmed = value.trim();
        let head = &text[..value_at];
        let opens_block = |v: &str| {
            let v = v.trim_start_matches(|c| c == '!' || char::is_alphanumeric(c));
            let v = v.trim();
            (v.starts_with('|') || v.starts_with('>'))
                && v[1..]
                    .chars()
                    .all(|c| c == '-' || c == '+' || c.is_ascii_digit())
        };
        if opens_block(value_trimmed) {
            block = Some(indent);
            out.push_str(line);
            continue;
        }
        if let Some(b) = word(value_trimmed) {
            changed = true;
            out.push_str(head);
            out.push_str(&value.replace(value_trimmed, b));
            out.push_str(comment);
            out.push_str(ending);
            continue;
        }
        // A one-line flow sequence of plain words: `[Yes, No]`.
        let flow = value_trimmed
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .filter(|v| !v.contains(['[', ']', '{', '}', '"', '\'']));
        if let Some(items) = flow {
            if items.split(',').any(|i| word(i.trim()).is_some()) {
                changed = true;
                let items: Vec<&str> = items
                    .split(',')
                    .map(|i| word(i.trim()).unwrap_or(i.trim()))
                    .collect();
                out.push_str(head);
                out.push_str(&value[..value.len() - value.trim_start().len()]);
                out.push('[');
                out.push_str(&items.join(", "));
                out.push(']');
                out.push_str(comment);
                out.push_str(ending);
                continue;
            }
        }
        out.push_str(line);
    }
    if changed {
        out.into()
    } else {
        body.into()
    }
}

pub fn scalar_to_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn yaml_to_json(v: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or_default())
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(seq) => Value::Array(seq.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    other => scalar_to_string(&yaml_to_json(other)),
                };
                out.insert(key, yaml_to_json(v));
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let inner = yaml_to_json(tagged.value);
            let (key, inner) = match tag {
                "Ref" => ("Ref".to_string(), inner),
                "Condition" => ("Condition".to_string(), inner),
                // `!GetAtt Res.Attr.Sub` is short for `Fn::GetAtt: [Res, Attr.Sub]`.
                "GetAtt" => {
                    let inner = match inner {
                        Value::String(s) => match s.split_once('.') {
                            Some((res, attr)) => Value::Array(vec![res.into(), attr.into()]),
                            None => Value::String(s),
                        },
                        other => other,
                    };
                    ("Fn::GetAtt".to_string(), inner)
                }
                other => (format!("Fn::{other}"), inner),
            };
            let mut out = Map::new();
            out.insert(key, inner);
            Value::Object(out)
        }
    }
}

/// How a database receives its snapshot in the clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSpec {
    pub logical_id: String,
    /// Receives the snapshot (for a cluster: the cluster snapshot, the fallback when a
    /// copy-on-write clone is not possible).
    pub snapshot_parameter: String,
    pub is_cluster: bool,
    /// An Aurora cluster the template can create as a copy-on-write clone.
    pub copy_on_write: Option<CopyOnWriteParameters>,
    /// A database the template can create by point-in-time restore of the source (issue 13):
    /// restored to the window's moment T, it takes no snapshot and does not hold the window.
    pub point_in_time: Option<PointInTimeParameters>,
}

/// The parameters through which a template creates its database by point-in-time restore of
/// the source: for an `AWS::RDS::DBInstance` its `SourceDBInstanceIdentifier` and
/// `RestoreTime`, for an `AWS::RDS::DBCluster` its `SourceDBClusterIdentifier` and
/// `RestoreToTime` (with `RestoreType` full-copy, which the template sets: AWS takes no
/// `RestoreToTime` with copy-on-write).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointInTimeParameters {
    /// Receives the source database's identifier (`restore_source_parameter`).
    pub source_parameter: String,
    /// Receives T, ISO 8601 UTC (`restore_time_parameter`).
    pub time_parameter: String,
}

/// The parameter through which a template creates its cluster as a copy-on-write clone
/// (`SourceDBClusterIdentifier`, `RestoreType: copy-on-write`, `UseLatestRestorableTime`: AWS
/// takes no `RestoreToTime` with copy-on-write).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyOnWriteParameters {
    /// Receives the source cluster's identifier.
    pub source_cluster_parameter: String,
}

/// A bucket whose objects are copied into the clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketSpec {
    /// Created by the clone stack itself; envclone fills it once the stack has created it.
    StackOwned { logical_id: String },
    /// Lives outside the stack and is passed in by a parameter: envclone creates the target's
    /// bucket, fills it in parallel with the snapshot, and passes its name in.
    ByParameter {
        logical_id: String,
        parameter: String,
    },
}

impl BucketSpec {
    pub fn logical_id(&self) -> &str {
        match self {
            BucketSpec::StackOwned { logical_id } | BucketSpec::ByParameter { logical_id, .. } => {
                logical_id
            }
        }
    }
}

/// A DynamoDB table whose items are copied into the clone (`tables:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableSpec {
    /// Created by the clone stack itself (`Logical: {}`): an `AWS::DynamoDB::Table` of the
    /// template; envclone fills it once the stack has created it.
    StackOwned { logical_id: String },
    /// Lives outside the stack and is passed in by a parameter (`{ table_parameter: Name }`),
    /// like a bucket. With `shared` (migrate only), the new stack receives the same table
    /// rather than a copy: DynamoDB has no rename, so that is the only way a table passes from
    /// the old stack to the new one.
    ByParameter {
        logical_id: String,
        parameter: String,
        shared: bool,
    },
}

impl TableSpec {
    pub fn logical_id(&self) -> &str {
        match self {
            TableSpec::StackOwned { logical_id } | TableSpec::ByParameter { logical_id, .. } => {
                logical_id
            }
        }
    }

    /// Whether the new stack of a migration receives this very table.
    pub fn shared(&self) -> bool {
        matches!(self, TableSpec::ByParameter { shared: true, .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryDns {
    /// The hosted zone's name (`example.com.`); may be left out when `zone_id` is given.
    #[serde(default)]
    pub zone: String,
    /// The hosted zone's id (`Z0123…`): needed when a public and a private zone share the name
    /// (split horizon).
    #[serde(default)]
    pub zone_id: Option<String>,
    pub name: String,
    /// The stack output the record points at (a load balancer's DNS name).
    pub target_output: String,
    /// For an alias record: the stack output holding the target's canonical hosted zone id
    /// (`!GetAtt LoadBalancer.CanonicalHostedZoneID`).
    #[serde(default)]
    pub target_zone_output: Option<String>,
}

impl EntryDns {
    /// The zone as the user named it, for messages.
    pub fn zone_label(&self) -> String {
        match (&self.zone_id, self.zone.is_empty()) {
            (Some(id), true) => format!("hosted zone {id}"),
            (Some(id), false) => format!("hosted zone {id} ({})", self.zone),
            (None, _) => format!("hosted zone {}", self.zone),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyCheck {
    /// GET the URL found in this stack output; it must answer 2xx.
    HttpOutput(String),
}

/// The cloning contract of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract {
    /// The parameter that receives the target environment's name. Optional: most public
    /// templates take none and let CloudFormation generate names; the clone's stack name is
    /// then the environment.
    pub environment_parameter: Option<String>,
    pub databases: Vec<DatabaseSpec>,
    pub buckets: Vec<BucketSpec>,
    /// The logical ids of the buckets the contract asks S3 Batch Operations to copy
    /// (`{ engine: batch }`).
    pub batch_buckets: Vec<String>,
    /// Of those, the buckets whose jobs read the source's latest S3 Inventory report as their
    /// manifest (`{ engine: batch, manifest: inventory }`).
    pub inventory_buckets: Vec<String>,
    pub tables: Vec<TableSpec>,
    pub entry_dns: Option<EntryDns>,
    pub verify: Vec<VerifyCheck>,
    pub hooks: Hooks,
    /// NoEcho parameters whose template default is right for a clone (e.g. a master password
    /// used only when the database is created empty). CloudFormation never reveals a NoEcho
    /// value, so any other NoEcho parameter the clone uses must be given with `--parameter`.
    pub noecho_defaults: Vec<String>,
    /// Stateful resources the operator accepts the clone creates empty (`ignore:`), by logical
    /// id, each with the operator's reason. Without its entry here such a resource refuses the
    /// clone (see `workflow::inventory`).
    pub ignore: BTreeMap<String, String>,
}

/// A command the operator's template asks envclone to run at a point of the workflow, with the
/// stack's outputs in its environment (`ENVCLONE_OUTPUT_<Name>`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Hook {
    Command(String),
    WithTimeout {
        command: String,
        timeout_seconds: u64,
    },
}

impl Hooks {
    /// Adds `other`'s hooks after these, phase by phase.
    pub fn append(&mut self, other: &Hooks) {
        self.quiesce.extend(other.quiesce.iter().cloned());
        self.verify.extend(other.verify.iter().cloned());
        self.post_swap.extend(other.post_swap.iter().cloned());
    }
}

impl Hook {
    pub fn command(&self) -> &str {
        match self {
            Hook::Command(c) | Hook::WithTimeout { command: c, .. } => c,
        }
    }
    pub fn timeout(&self) -> std::time::Duration {
        match self {
            Hook::Command(_) => std::time::Duration::from_secs(300),
            Hook::WithTimeout {
                timeout_seconds, ..
            } => std::time::Duration::from_secs(*timeout_seconds),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// After Standby, on the source (e.g. stop background writers).
    #[serde(default)]
    pub quiesce: Vec<Hook>,
    /// After the clone stack is up, on the clone: a non-zero exit fails verification.
    #[serde(default)]
    pub verify: Vec<Hook>,
    /// After migrate's swap, on the new environment (e.g. restart app processes so pooled
    /// connections reconnect).
    #[serde(default)]
    pub post_swap: Vec<Hook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContract {
    #[serde(default)]
    environment_parameter: Option<String>,
    #[serde(default)]
    databases: BTreeMap<String, RawDatabase>,
    #[serde(default)]
    buckets: BTreeMap<String, RawBucket>,
    #[serde(default)]
    tables: BTreeMap<String, RawTable>,
    #[serde(default)]
    entry_dns: Option<EntryDns>,
    #[serde(default)]
    verify: Vec<RawVerify>,
    #[serde(default)]
    noecho_defaults: Vec<String>,
    #[serde(default)]
    ignore: BTreeMap<String, RawIgnore>,
    // Sections owned by later features; accepted so templates can carry them already.
    #[serde(default)]
    hooks: Option<Hooks>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    #[serde(default)]
    snapshot_parameter: Option<String>,
    #[serde(default)]
    source_cluster_parameter: Option<String>,
    #[serde(default)]
    restore_source_parameter: Option<String>,
    #[serde(default)]
    restore_time_parameter: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBucket {
    #[serde(default)]
    bucket_parameter: Option<String>,
    #[serde(default)]
    engine: Option<BucketEngine>,
    #[serde(default)]
    manifest: Option<BucketManifest>,
}

/// The manifest of a batch bucket's job (`manifest:` of a bucket with `engine: batch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BucketManifest {
    /// A CSV of what differs, written by envclone: the default.
    Diff,
    /// The source's latest S3 Inventory report (`s3batch::inventory`).
    Inventory,
}

/// How a contract bucket is copied (`engine:` of a bucket under `buckets:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BucketEngine {
    /// This process copies (server-side CopyObject / UploadPartCopy): the default.
    Local,
    /// An S3 Batch Operations job copies (S3PutObjectCopy), for buckets beyond one machine.
    Batch,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTable {
    #[serde(default)]
    table_parameter: Option<String>,
    #[serde(default)]
    shared: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIgnore {
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerify {
    http_output: String,
}

pub const DB_INSTANCE: &str = "AWS::RDS::DBInstance";
pub const DB_CLUSTER: &str = "AWS::RDS::DBCluster";
pub const BUCKET: &str = "AWS::S3::Bucket";
pub const TABLE: &str = "AWS::DynamoDB::Table";
pub const ASG: &str = "AWS::AutoScaling::AutoScalingGroup";

impl Contract {
    /// Read and check the contract of `template`. Every database resource of the template must
    /// be listed with a snapshot parameter: a database left out would be cloned empty.
    pub fn from_template(template: &Template) -> Result<Self, ContractError> {
        let origin = template.origin.clone();
        let raw = template
            .value
            .get("Metadata")
            .and_then(|m| m.get("envclone"))
            .ok_or_else(|| ContractError::Missing {
                origin: origin.clone(),
            })?;
        // `{}` in YAML flow style and an empty mapping both mean "no options".
        let raw: RawContract =
            serde_json::from_value(raw.clone()).map_err(|e| ContractError::Malformed {
                origin: origin.clone(),
                reason: e.to_string(),
            })?;
        let params = template.parameters();
        let types = template.resource_types();
        let inconsistent = |problem: String, fix: String| ContractError::Inconsistent {
            origin: origin.clone(),
            problem,
            fix,
        };

        if let Some(parameter) = &raw.environment_parameter {
            if !params.contains_key(parameter) {
                return Err(inconsistent(
                    format!(
                        "environment_parameter names {parameter:?}, which is not a parameter of \
                         the template"
                    ),
                    "name the parameter that receives the environment's name, or leave \
                     environment_parameter out (the clone's stack name is then the environment)"
                        .into(),
                ));
            }
        }

        let mut databases = Vec::new();
        for (logical_id, db) in raw.databases {
            let ty = types.get(&logical_id).ok_or_else(|| {
                inconsistent(
                    format!(
                        "databases lists {logical_id:?}, which is not a resource of the template"
                    ),
                    "use the logical id of an AWS::RDS::DBInstance or AWS::RDS::DBCluster".into(),
                )
            })?;
            if ty != DB_INSTANCE && ty != DB_CLUSTER {
                return Err(inconsistent(
                    format!("databases lists {logical_id:?}, which is a {ty}, not a database"),
                    "list only AWS::RDS::DBInstance or AWS::RDS::DBCluster resources".into(),
                ));
            }
            let snapshot_parameter = db.snapshot_parameter.ok_or_else(|| {
                inconsistent(
                    format!("database {logical_id:?} has no snapshot_parameter, so its clone would start empty"),
                    format!(
                        "add a parameter (e.g. DBSnapshotIdentifier), use it in {logical_id}'s \
                         DBSnapshotIdentifier with the !If pattern of stacks/README.md, and name it \
                         in Metadata.envclone.databases.{logical_id}.snapshot_parameter"
                    ),
                )
            })?;
            if !params.contains_key(&snapshot_parameter) {
                return Err(inconsistent(
                    format!(
                        "database {logical_id:?} names snapshot_parameter {snapshot_parameter:?}, \
                         which is not a parameter of the template"
                    ),
                    format!("declare {snapshot_parameter} under Parameters with Default \"\""),
                ));
            }
            let copy_on_write = match db.source_cluster_parameter {
                None => None,
                Some(source) if ty == DB_CLUSTER => {
                    if !params.contains_key(&source) {
                        return Err(inconsistent(
                            format!("database {logical_id:?} names source_cluster_parameter {source:?}, which is not a parameter of the template"),
                            format!("declare {source} under Parameters with Default \"\""),
                        ));
                    }
                    Some(CopyOnWriteParameters {
                        source_cluster_parameter: source,
                    })
                }
                Some(_) => {
                    return Err(inconsistent(
                        format!("database {logical_id:?} is a {ty}: only an AWS::RDS::DBCluster can be a copy-on-write clone"),
                        format!("remove source_cluster_parameter from {logical_id}"),
                    ))
                }
            };
            let point_in_time = match (db.restore_source_parameter, db.restore_time_parameter) {
                (None, None) => None,
                (Some(source_parameter), Some(time_parameter)) => {
                    for p in [&source_parameter, &time_parameter] {
                        if !params.contains_key(p) {
                            return Err(inconsistent(
                                format!("database {logical_id:?} names {p:?} for its point-in-time restore, which is not a parameter of the template"),
                                format!("declare {p} under Parameters with Default \"\""),
                            ));
                        }
                    }
                    if copy_on_write.is_some() {
                        return Err(inconsistent(
                            format!("database {logical_id:?} names both source_cluster_parameter (a copy-on-write clone) and a point-in-time restore: both set its SourceDBClusterIdentifier"),
                            format!("keep one: restore_source_parameter/restore_time_parameter (restored to T, out of the window) or source_cluster_parameter (cloned in Standby at its latest restorable time) in {logical_id}"),
                        ));
                    }
                    Some(PointInTimeParameters {
                        source_parameter,
                        time_parameter,
                    })
                }
                (source, _) => {
                    let (given, missing) = if source.is_some() {
                        ("restore_source_parameter", "restore_time_parameter")
                    } else {
                        ("restore_time_parameter", "restore_source_parameter")
                    };
                    return Err(inconsistent(
                        format!("database {logical_id:?} gives {given} without {missing}: a point-in-time restore needs both the source and the time"),
                        format!("add {missing} to Metadata.envclone.databases.{logical_id}, or remove {given}"),
                    ));
                }
            };
            databases.push(DatabaseSpec {
                logical_id,
                snapshot_parameter,
                is_cluster: ty == DB_CLUSTER,
                copy_on_write,
                point_in_time,
            });
        }
        // Instances that belong to a listed cluster are restored with it; a read replica of a
        // listed instance is created from the clone's restored instance, so it holds its data.
        for (logical_id, ty) in &types {
            let listed = databases.iter().any(|d| &d.logical_id == logical_id);
            if ty == DB_INSTANCE
                && !listed
                && !belongs_to_listed_cluster(template, logical_id, &databases)
                && !replica_of_listed_instance(template, logical_id, &databases)
            {
                return Err(inconsistent(
                    format!("the database {logical_id:?} is not listed in Metadata.envclone.databases, so its clone would start empty"),
                    format!("add `{logical_id}: {{ snapshot_parameter: <parameter> }}` to Metadata.envclone.databases"),
                ));
            }
        }

        let mut buckets = Vec::new();
        let mut batch_buckets = Vec::new();
        let mut inventory_buckets = Vec::new();
        for (logical_id, bucket) in raw.buckets {
            if bucket.engine == Some(BucketEngine::Batch) {
                batch_buckets.push(logical_id.clone());
            }
            if bucket.manifest == Some(BucketManifest::Inventory) {
                if bucket.engine != Some(BucketEngine::Batch) {
                    return Err(inconsistent(
                        format!(
                            "bucket {logical_id:?} has manifest: inventory without engine: batch"
                        ),
                        "a manifest is a batch job's: add `engine: batch`, or remove `manifest:`"
                            .into(),
                    ));
                }
                inventory_buckets.push(logical_id.clone());
            }
            match bucket.bucket_parameter {
                Some(parameter) => {
                    if !params.contains_key(&parameter) {
                        return Err(inconsistent(
                            format!("bucket {logical_id:?} names bucket_parameter {parameter:?}, which is not a parameter of the template"),
                            format!("declare {parameter} under Parameters, or fix the name"),
                        ));
                    }
                    buckets.push(BucketSpec::ByParameter {
                        logical_id,
                        parameter,
                    });
                }
                None => {
                    match types.get(&logical_id) {
                        Some(ty) if ty == BUCKET => {}
                        Some(ty) => {
                            return Err(inconsistent(
                                format!("buckets lists {logical_id:?}, which is a {ty}, not an AWS::S3::Bucket"),
                                "list AWS::S3::Bucket resources, or give a bucket_parameter for a bucket passed in".into(),
                            ))
                        }
                        None => {
                            return Err(inconsistent(
                                format!("buckets lists {logical_id:?}, which is not a resource of the template"),
                                "use the logical id of an AWS::S3::Bucket, or give a bucket_parameter for a bucket passed in".into(),
                            ))
                        }
                    }
                    buckets.push(BucketSpec::StackOwned { logical_id });
                }
            }
        }

        let mut tables = Vec::new();
        for (logical_id, table) in raw.tables {
            match table.table_parameter {
                Some(parameter) => {
                    if !params.contains_key(&parameter) {
                        return Err(inconsistent(
                            format!("table {logical_id:?} names table_parameter {parameter:?}, which is not a parameter of the template"),
                            format!("declare {parameter} under Parameters (the table's name), or fix the name"),
                        ));
                    }
                    tables.push(TableSpec::ByParameter {
                        logical_id,
                        parameter,
                        shared: table.shared,
                    });
                }
                None => {
                    match types.get(&logical_id) {
                        Some(ty) if ty == TABLE => {}
                        Some(ty) => {
                            return Err(inconsistent(
                                format!("tables lists {logical_id:?}, which is a {ty}, not an AWS::DynamoDB::Table"),
                                "list AWS::DynamoDB::Table resources, or give a table_parameter for a table passed in".into(),
                            ))
                        }
                        None => {
                            return Err(inconsistent(
                                format!("tables lists {logical_id:?}, which is not a resource of the template"),
                                "use the logical id of an AWS::DynamoDB::Table, or give a table_parameter for a table passed in".into(),
                            ))
                        }
                    }
                    if table.shared {
                        // The old stack's table goes when finalize deletes the old stack; only a
                        // table outside both stacks can pass from one to the other.
                        return Err(inconsistent(
                            format!("table {logical_id:?} is shared but created by the stack: the new stack of a migration cannot receive a table the old stack owns"),
                            format!("pass the table in by a parameter (`{logical_id}: {{ table_parameter: <parameter>, shared: true }}`), or drop shared"),
                        ));
                    }
                    tables.push(TableSpec::StackOwned { logical_id });
                }
            }
        }

        if let Some(dns) = &raw.entry_dns {
            if dns.zone.is_empty() && dns.zone_id.is_none() {
                return Err(inconsistent(
                    "entry_dns names no hosted zone".into(),
                    "give entry_dns.zone (the zone's name) or entry_dns.zone_id (its id, \
                     needed when a public and a private zone share the name)"
                        .into(),
                ));
            }
        }

        for name in &raw.noecho_defaults {
            match params.get(name) {
                None => {
                    return Err(inconsistent(
                        format!(
                            "noecho_defaults names {name:?}, which is not a parameter of the \
                             template"
                        ),
                        "list only NoEcho parameters the template declares".into(),
                    ))
                }
                Some(decl) if !decl.no_echo => {
                    return Err(inconsistent(
                        format!(
                            "noecho_defaults names {name:?}, which is not NoEcho: its value \
                             carries over from the source"
                        ),
                        format!("remove {name} from noecho_defaults"),
                    ))
                }
                Some(decl) if decl.default.is_none() => {
                    return Err(inconsistent(
                        format!("noecho_defaults names {name:?}, which has no Default to take"),
                        format!(
                            "give {name} a Default in the template, or remove it from \
                             noecho_defaults and pass --parameter {name}=VALUE"
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        let mut ignore = BTreeMap::new();
        for (logical_id, entry) in raw.ignore {
            // `Outer/Inner`: a resource of the nested stack `Outer` (an AWS::CloudFormation::Stack).
            let nested_stack = logical_id.split_once('/').is_some_and(|(outer, _)| {
                types.get(outer).map(String::as_str) == Some("AWS::CloudFormation::Stack")
            });
            if !types.contains_key(&logical_id) && !nested_stack {
                return Err(inconsistent(
                    format!("ignore lists {logical_id:?}, which is not a resource of the template"),
                    "use the logical id of a resource of the template".into(),
                ));
            }
            let copied = databases.iter().any(|d| d.logical_id == logical_id)
                || buckets.iter().any(|b| b.logical_id() == logical_id)
                || tables.iter().any(|t| t.logical_id() == logical_id);
            if copied {
                return Err(inconsistent(
                    format!(
                        "ignore lists {logical_id:?}, which the contract also copies (databases, \
                         buckets or tables)"
                    ),
                    format!("remove {logical_id} from ignore, or from databases/buckets/tables"),
                ));
            }
            let reason = entry.reason.trim();
            if reason.is_empty() {
                return Err(inconsistent(
                    format!("ignore lists {logical_id:?} with an empty reason"),
                    format!(
                        "say why a clone may start without {logical_id}'s data, e.g. \
                         `{logical_id}: {{ reason: \"sessions expire in an hour\" }}`"
                    ),
                ));
            }
            ignore.insert(logical_id, reason.to_string());
        }

        let verify = raw
            .verify
            .into_iter()
            .map(|v| VerifyCheck::HttpOutput(v.http_output))
            .collect();

        Ok(Contract {
            environment_parameter: raw.environment_parameter,
            databases,
            buckets,
            batch_buckets,
            inventory_buckets,
            tables,
            entry_dns: raw.entry_dns,
            verify,
            hooks: raw.hooks.unwrap_or_default(),
            noecho_defaults: raw.noecho_defaults,
            ignore,
        })
    }
}

fn belongs_to_listed_cluster(
    template: &Template,
    instance_id: &str,
    databases: &[DatabaseSpec],
) -> bool {
    template
        .cluster_of(instance_id)
        .is_some_and(|c| databases.iter().any(|d| d.is_cluster && d.logical_id == c))
}

fn replica_of_listed_instance(
    template: &Template,
    instance_id: &str,
    databases: &[DatabaseSpec],
) -> bool {
    template
        .replica_source_of(instance_id)
        .is_some_and(|s| databases.iter().any(|d| !d.is_cluster && d.logical_id == s))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
AWSTemplateFormatVersion: "2010-09-09"
Metadata:
  envclone:
    environment_parameter: EnvironmentName
    databases:
      Database: { snapshot_parameter: DBSnapshotIdentifier }
    buckets:
      Uploads: {}
      Reports: { bucket_parameter: ReportsBucketName }
    entry_dns: { zone: example.com., name: app.example.com., target_output: Lb }
    verify:
      - http_output: HealthCheckUrl
Parameters:
  EnvironmentName: { Type: String }
  DBSnapshotIdentifier: { Type: String, Default: "" }
  ReportsBucketName: { Type: String }
  Password: { Type: String, NoEcho: true, Default: secret }
  Count: { Type: Number, Default: 2 }
Conditions:
  HasSnapshot: !Not [!Equals [!Ref DBSnapshotIdentifier, ""]]
Resources:
  Database:
    Type: AWS::RDS::DBInstance
    Properties:
      DBSnapshotIdentifier: !If [HasSnapshot, !Ref DBSnapshotIdentifier, !Ref "AWS::NoValue"]
      DBInstanceIdentifier: !Sub "${EnvironmentName}-db"
  Uploads:
    Type: AWS::S3::Bucket
Outputs:
  Lb: { Value: !GetAtt Alb.DNSName }
"#;

    #[test]
    fn reads_the_contract_and_long_forms_short_tags() {
        let t = Template::parse("good.yaml", GOOD).unwrap();
        let c = Contract::from_template(&t).unwrap();
        assert_eq!(c.environment_parameter.as_deref(), Some("EnvironmentName"));
        assert_eq!(
            c.databases,
            vec![DatabaseSpec {
                logical_id: "Database".into(),
                snapshot_parameter: "DBSnapshotIdentifier".into(),
                is_cluster: false,
                copy_on_write: None,
                point_in_time: None,
            }]
        );
        assert_eq!(c.buckets.len(), 2);
        assert!(c.buckets.contains(&BucketSpec::ByParameter {
            logical_id: "Reports".into(),
            parameter: "ReportsBucketName".into()
        }));
        assert_eq!(c.entry_dns.unwrap().target_output, "Lb");
        assert_eq!(
            c.verify,
            vec![VerifyCheck::HttpOutput("HealthCheckUrl".into())]
        );
        assert_eq!(
            t.value["Outputs"]["Lb"]["Value"],
            serde_json::json!({"Fn::GetAtt": ["Alb", "DNSName"]})
        );
        assert_eq!(
            t.value["Resources"]["Database"]["Properties"]["DBInstanceIdentifier"],
            serde_json::json!({"Fn::Sub": "${EnvironmentName}-db"})
        );
        let params = t.parameters();
        assert!(params["Password"].no_echo);
        assert_eq!(params["Count"].default.as_deref(), Some("2"));
    }

    fn contract_error(body: &str) -> String {
        let t = Template::parse("t.yaml", body).unwrap();
        Contract::from_template(&t).unwrap_err().to_string()
    }

    #[test]
    fn a_database_without_snapshot_parameter_is_refused() {
        let body = GOOD.replace("{ snapshot_parameter: DBSnapshotIdentifier }", "{}");
        assert!(contract_error(&body).contains("has no snapshot_parameter"));
    }

    #[test]
    fn an_unlisted_database_is_refused() {
        let body = GOOD.replace(
            "      Database: { snapshot_parameter: DBSnapshotIdentifier }\n",
            "      {}\n",
        );
        let body = body.replace("    databases:\n      {}\n", "");
        assert!(
            contract_error(&body).contains("not listed"),
            "{}",
            contract_error(&body)
        );
    }

    /// Issue 15 (corpus: AWS's RDS_MySQL_With_Read_Replica sample). Failed before the fix: the
    /// replica was refused as "not listed", and it cannot be listed (a replica takes no
    /// snapshot). A replica of an instance the contract does not restore is still refused.
    #[test]
    fn a_read_replica_of_a_listed_instance_is_covered_by_it() {
        let replica =
            "  Replica:\n    Type: AWS::RDS::DBInstance\n    DeletionPolicy: Retain\n    \
                       Properties:\n      SourceDBInstanceIdentifier: SOURCE\n      \
                       DBInstanceClass: db.t3.medium\n";
        for source in ["!Ref Database", "!GetAtt Database.DBInstanceArn"] {
            let body = GOOD.replace(
                "  Uploads:\n    Type: AWS::S3::Bucket\n",
                &format!(
                    "  Uploads:\n    Type: AWS::S3::Bucket\n{}",
                    replica.replace("SOURCE", source)
                ),
            );
            let t = Template::parse("t.yaml", &body).unwrap();
            let c = Contract::from_template(&t).unwrap();
            assert_eq!(c.databases.len(), 1, "{source}");
        }
        let outside = GOOD.replace(
            "  Uploads:\n    Type: AWS::S3::Bucket\n",
            &format!(
                "  Uploads:\n    Type: AWS::S3::Bucket\n{}",
                replica.replace("SOURCE", "some-other-db")
            ),
        );
        let err = contract_error(&outside);
        assert!(err.contains("\"Replica\" is not listed"), "{err}");
    }

    #[test]
    fn references_to_missing_parameters_and_resources_are_refused() {
        assert!(contract_error(&GOOD.replace(
            "environment_parameter: EnvironmentName",
            "environment_parameter: Stage"
        ))
        .contains("\"Stage\", which is not a parameter"));
        assert!(contract_error(&GOOD.replace(
            "snapshot_parameter: DBSnapshotIdentifier }",
            "snapshot_parameter: Snap }"
        ))
        .contains("\"Snap\", which is not a parameter"));
        assert!(
            contract_error(&GOOD.replace("      Uploads: {}\n", "      Logs: {}\n"))
                .contains("\"Logs\", which is not a resource")
        );
        assert!(contract_error(&GOOD.replace(
            "bucket_parameter: ReportsBucketName",
            "bucket_parameter: Nope"
        ))
        .contains("\"Nope\", which is not a parameter"));
    }

    #[test]
    fn missing_and_malformed_contracts_say_what_to_do() {
        let body = "Resources:\n  B: { Type: AWS::S3::Bucket }\n";
        assert!(contract_error(body).contains("no Metadata.envclone"));
        let body = GOOD.replace("    verify:\n", "    verfy:\n");
        assert!(contract_error(&body).contains("malformed"));
        let err = Template::parse("x.yaml", "a: [").unwrap_err().to_string();
        assert!(err.contains("not valid YAML"));
    }

    #[test]
    fn an_aurora_cluster_is_cloned_copy_on_write_with_a_snapshot_fallback() {
        let body = include_str!("../stacks/aurora.yaml");
        let t = Template::parse("aurora.yaml", body).unwrap();
        let c = Contract::from_template(&t).unwrap();
        assert_eq!(
            c.databases,
            vec![DatabaseSpec {
                logical_id: "Cluster".into(),
                snapshot_parameter: "ClusterSnapshotIdentifier".into(),
                is_cluster: true,
                copy_on_write: Some(CopyOnWriteParameters {
                    source_cluster_parameter: "SourceClusterIdentifier".into(),
                }),
                point_in_time: None,
            }],
            "the writer instance belongs to the cluster and is not listed"
        );
        let undeclared = body.replace(
            "source_cluster_parameter: SourceClusterIdentifier",
            "source_cluster_parameter: SourceCluster",
        );
        assert!(contract_error(&undeclared).contains("\"SourceCluster\", which is not a parameter"));
        let on_instance = GOOD.replace(
            "Database: { snapshot_parameter: DBSnapshotIdentifier }",
            "Database: { snapshot_parameter: DBSnapshotIdentifier, \
             source_cluster_parameter: DBSnapshotIdentifier }",
        );
        assert!(contract_error(&on_instance).contains("only an AWS::RDS::DBCluster"));
    }

    /// Issue 13, item 1 (point-in-time restore instead of a snapshot): a database names the
    /// parameters that receive the source and T; both, declared, and not with copy-on-write.
    /// Before, `restore_source_parameter` was an unknown field (Malformed).
    #[test]
    fn a_database_restored_to_a_point_in_time_names_both_parameters() {
        let pitr = GOOD
            .replace(
                "Database: { snapshot_parameter: DBSnapshotIdentifier }",
                "Database: { snapshot_parameter: DBSnapshotIdentifier, \
                 restore_source_parameter: RestoreSource, restore_time_parameter: RestoreTime }",
            )
            .replace(
                "  Count: { Type: Number, Default: 2 }\n",
                "  Count: { Type: Number, Default: 2 }\n  RestoreSource: { Type: String, Default: \"\" }\n  RestoreTime: { Type: String, Default: \"\" }\n",
            );
        let t = Template::parse("pitr.yaml", &pitr).unwrap();
        let c = Contract::from_template(&t).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.databases[0].point_in_time,
            Some(PointInTimeParameters {
                source_parameter: "RestoreSource".into(),
                time_parameter: "RestoreTime".into(),
            })
        );
        let half = pitr.replace(", restore_time_parameter: RestoreTime", "");
        let e = contract_error(&half);
        assert!(
            e.contains("gives restore_source_parameter without restore_time_parameter")
                && e.contains("Metadata.envclone.databases.Database"),
            "{e}"
        );
        let undeclared = pitr.replace(
            "restore_time_parameter: RestoreTime",
            "restore_time_parameter: At",
        );
        let e = contract_error(&undeclared);
        assert!(
            e.contains("\"At\" for its point-in-time restore, which is not a parameter")
                && e.contains("declare At"),
            "{e}"
        );
        let aurora = include_str!("../stacks/aurora.yaml").replace(
            "source_cluster_parameter: SourceClusterIdentifier",
            "source_cluster_parameter: SourceClusterIdentifier\n        \
             restore_source_parameter: SourceClusterIdentifier\n        \
             restore_time_parameter: ClusterSnapshotIdentifier",
        );
        assert!(contract_error(&aurora).contains("keep one"));
    }

    /// Issue 15, item 5: most public templates take no environment name (before, a contract
    /// without environment_parameter was refused: "missing field").
    #[test]
    fn environment_parameter_is_optional() {
        let without = GOOD.replace("    environment_parameter: EnvironmentName\n", "");
        assert!(!without.contains("environment_parameter"));
        let t = Template::parse("t.yaml", &without).unwrap();
        let c = Contract::from_template(&t).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.environment_parameter, None);
    }

    /// Issue 15, item 1: `noecho_defaults` may name only NoEcho parameters with a default.
    #[test]
    fn noecho_defaults_names_only_noecho_parameters_with_a_default() {
        let with =
            |list: &str| {
                GOOD.replace(
            "    environment_parameter: EnvironmentName\n",
            &format!("    environment_parameter: EnvironmentName\n    noecho_defaults: [{list}]\n"),
        )
            };
        let t = Template::parse("t.yaml", &with("Password")).unwrap();
        let c = Contract::from_template(&t).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.noecho_defaults, vec!["Password".to_string()]);
        let err = contract_error(&with("Passwrd"));
        assert!(
            err.contains("noecho_defaults names \"Passwrd\", which is not a parameter"),
            "{err}"
        );
        let err = contract_error(&with("Count"));
        assert!(err.contains("\"Count\", which is not NoEcho"), "{err}");
        let no_default = with("Password").replace(
            "Password: { Type: String, NoEcho: true, Default: secret }",
            "Password: { Type: String, NoEcho: true }",
        );
        assert!(contract_error(&no_default).contains("has no Default to take"));
    }

    /// CloudFormation reads YAML 1.1: a plain `Yes` is true, a quoted one the string; block
    /// scalars and comments are text. Before, `Yes` read as the string and a condition over it
    /// came out false.
    #[test]
    fn plain_yaml_1_1_booleans_read_as_cloudformation_reads_them() {
        let body = "Parameters:\n  Switch: { Type: String, Default: 'Yes' }\n  Other:\n    \
                    Type: String\n    Default: No  # off\n    AllowedValues: [Yes, No]\n\
                    Conditions:\n  On: !Equals\n    - !Ref Switch\n    - Yes\n\
                    Resources:\n  R:\n    Type: AWS::SNS::Topic\n    Properties:\n      \
                    TopicName: |\n        keep: yes\n        - no\n      DisplayName: \"Yes\"\n";
        let t = Template::parse("t.yaml", body).unwrap();
        let v = &t.value;
        assert_eq!(v["Parameters"]["Switch"]["Default"], "Yes");
        assert_eq!(v["Parameters"]["Other"]["Default"], false);
        assert_eq!(
            v["Parameters"]["Other"]["AllowedValues"],
            serde_json::json!([true, false])
        );
        assert_eq!(v["Conditions"]["On"]["Fn::Equals"][1], true);
        let props = &v["Resources"]["R"]["Properties"];
        assert_eq!(props["TopicName"], "keep: yes\n- no\n");
        assert_eq!(props["DisplayName"], "Yes");
        assert_eq!(t.body, body, "the template's own text is unchanged");
    }

    /// Issue 12: `ignore:` names resources of the template, each with a reason.
    #[test]
    fn ignore_names_existing_resources_with_a_reason() {
        let with = |entries: &str| {
            GOOD.replace(
                "    verify:\n",
                &format!("    ignore:\n{entries}    verify:\n"),
            )
        };
        let t = Template::parse("t.yaml", &with("      Uploads2: { reason: x }\n")).unwrap();
        assert!(Contract::from_template(&t)
            .unwrap_err()
            .to_string()
            .contains("ignore lists \"Uploads2\", which is not a resource"));
        let body = with("      Database: { reason: \"  \" }\n");
        assert!(
            contract_error(&body).contains("copies"),
            "{}",
            contract_error(&body)
        );
        let with_logs = |entries: &str| {
            with(entries).replace(
                "  Uploads:\n",
                "  Logs:\n    Type: AWS::Logs::LogGroup\n  Uploads:\n",
            )
        };
        let body = with_logs("      Logs: { reason: \"  \" }\n");
        assert!(
            contract_error(&body).contains("empty reason"),
            "{}",
            contract_error(&body)
        );
        let body = with_logs("      Logs: { reason: \" logs stay with the source \" }\n");
        let c = Contract::from_template(&Template::parse("t.yaml", &body).unwrap()).unwrap();
        assert_eq!(c.ignore["Logs"], "logs stay with the source");
        assert!(contract_error(&with("      Logs: {}\n")).contains("malformed"));
    }

    /// Issue 12: `tables:` lists a table the clone stack creates (`{}`), one passed in by a
    /// parameter, and, for migrate, one the new stack shares by its parameter. Before, the
    /// section was refused as malformed (an unknown field of the contract).
    #[test]
    fn tables_list_stack_tables_parameter_tables_and_shared_ones() {
        let with = |entries: &str| {
            GOOD.replace(
                "    verify:\n",
                &format!("    tables:\n{entries}    verify:\n"),
            )
            .replace(
                "  Uploads:\n",
                "  Orders:\n    Type: AWS::DynamoDB::Table\n  Uploads:\n",
            )
            .replace(
                "  Count: {",
                "  SessionsTable: { Type: String }\n  Count: {",
            )
        };
        let body = with(
            "      Orders: {}\n      Sessions: { table_parameter: SessionsTable }\n      \
             Audit: { table_parameter: SessionsTable, shared: true }\n",
        );
        let c = Contract::from_template(&Template::parse("t.yaml", &body).unwrap())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.tables,
            vec![
                TableSpec::ByParameter {
                    logical_id: "Audit".into(),
                    parameter: "SessionsTable".into(),
                    shared: true,
                },
                TableSpec::StackOwned {
                    logical_id: "Orders".into()
                },
                TableSpec::ByParameter {
                    logical_id: "Sessions".into(),
                    parameter: "SessionsTable".into(),
                    shared: false,
                },
            ]
        );
        assert_eq!(
            c.tables.iter().map(TableSpec::shared).collect::<Vec<_>>(),
            vec![true, false, false]
        );
        let err = contract_error(&with("      Order: {}\n"));
        assert!(
            err.contains("tables lists \"Order\", which is not a resource of the template"),
            "{err}"
        );
        let err = contract_error(&with("      Uploads: {}\n"));
        assert!(
            err.contains("\"Uploads\", which is a AWS::S3::Bucket, not an AWS::DynamoDB::Table"),
            "{err}"
        );
        let err = contract_error(&with("      Sessions: { table_parameter: Sessions }\n"));
        assert!(
            err.contains("table_parameter \"Sessions\", which is not a parameter"),
            "{err}"
        );
        let err = contract_error(&with("      Orders: { shared: true }\n"));
        assert!(err.contains("shared but created by the stack"), "{err}");
        assert!(
            err.contains("table_parameter: <parameter>, shared: true"),
            "{err}"
        );
        let err = contract_error(&with("      Orders: { shared: yes please }\n"));
        assert!(err.contains("malformed"), "{err}");
        let body = with("      Orders: {}\n").replace(
            "    verify:\n",
            "    ignore:\n      Orders: { reason: x }\n    verify:\n",
        );
        let err = contract_error(&body);
        assert!(
            err.contains("\"Orders\", which the contract also copies"),
            "{err}"
        );
    }

    #[test]
    fn json_templates_parse_too() {
        let t = Template::parse(
            "t.json",
            r#"{"Parameters": {"Env": {"Type": "String"}}, "Metadata": {"envclone": {"environment_parameter": "Env"}}}"#,
        )
        .unwrap();
        assert_eq!(
            Contract::from_template(&t)
                .unwrap()
                .environment_parameter
                .unwrap(),
            "Env"
        );
    }
}
