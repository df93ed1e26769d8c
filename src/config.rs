//! `envclone.toml`: what a template does not carry, per environment — extra hooks, or a whole
//! cloning contract for a template without `Metadata.envclone` (or to replace its own).
//!
//! ```toml
//! [environments.prod.hooks]
//! quiesce = [{ command = "systemctl stop report-writer", timeout_seconds = 120 }]
//!
//! [environments.billing.contract]          # the same fields as Metadata.envclone
//! environment_parameter = "EnvironmentName"
//! databases = { Database = { snapshot_parameter = "DBSnapshotIdentifier" } }
//! buckets = { Ledger = {} }
//! ```
//!
//! A contract from the file is spliced into the `Metadata.envclone` of the template text the clone
//! stack is created from, so the clone carries its contract: `resume`, `verify`, `destroy` and
//! `gc` on another machine, without this file, read it from the clone stack like any other.
//! Hooks from the file are kept in the run's record instead: a clone must not inherit its
//! source's hooks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use crate::contract::{Hooks, Template};

/// The file read when `--config` is not given, if it exists in the working directory.
pub const DEFAULT_FILE: &str = "envclone.toml";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Keyed by environment name (as typed, or the stack's name).
    #[serde(default)]
    pub environments: BTreeMap<String, EnvironmentConfig>,
    /// Where it was read from (for messages and the plan).
    #[serde(skip)]
    pub origin: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// Replaces the template's `Metadata.envclone`; the same fields.
    #[serde(default)]
    pub contract: Option<Value>,
    /// Run after the contract's own hooks of the same phase.
    #[serde(default)]
    pub hooks: Option<Hooks>,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {reason}; pass an existing file to --config")]
    Read { path: String, reason: String },
    #[error(
        "the config file {path} is not valid: {reason}; see the example in README.md \
         (sections [environments.<name>.hooks] and [environments.<name>.contract])"
    )]
    Invalid { path: String, reason: String },
    #[error(
        "the contract of [environments.{environment}] cannot be written into {template}: \
         {reason}; put it in the template's Metadata.envclone instead (stacks/README.md)"
    )]
    Splice {
        template: String,
        environment: String,
        reason: String,
    },
}

impl Config {
    /// Reads `explicit`, or `./envclone.toml` when it exists; no file means no settings.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let path: PathBuf = match explicit {
            Some(p) => p.to_path_buf(),
            None if Path::new(DEFAULT_FILE).is_file() => PathBuf::from(DEFAULT_FILE),
            None => return Ok(Config::default()),
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        Config::parse(&shown, &text)
    }

    pub fn parse(origin: &str, text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: origin.to_string(),
            reason: e.to_string(),
        })?;
        config.origin = Some(origin.to_string());
        Ok(config)
    }

    /// The settings of the first of `names` the file has a section for.
    fn for_environment<'a>(
        &'a self,
        names: &[&'a str],
    ) -> Option<(&'a str, &'a EnvironmentConfig)> {
        names
            .iter()
            .find_map(|n| self.environments.get(*n).map(|c| (*n, c)))
    }

    /// The hooks this file adds for the environment (run after the contract's own). They are
    /// kept in the run's record, not written into any template, so a clone does not inherit
    /// its source's hooks.
    pub fn hooks(&self, names: &[&str]) -> Hooks {
        self.for_environment(names)
            .and_then(|(_, env)| env.hooks.clone())
            .unwrap_or_default()
    }

    /// `template` with this file's contract for the environment as its `Metadata.envclone`
    /// (unchanged when the file has none). The contract is spliced into the template's own
    /// text, which stays as it was otherwise, so that the clone stack carries its contract:
    /// `resume`, `verify`, `destroy` and `gc` read it from there on a machine without the file.
    pub fn apply(&self, names: &[&str], template: Template) -> Result<Template, ConfigError> {
        let Some((name, Some(contract))) = self
            .for_environment(names)
            .map(|(name, env)| (name, env.contract.as_ref()))
        else {
            return Ok(template);
        };
        let origin = format!(
            "{} with the contract of [environments.{name}] in {}",
            template.origin,
            self.origin.as_deref().unwrap_or(DEFAULT_FILE)
        );
        let refused = |reason: String| ConfigError::Splice {
            template: template.origin.clone(),
            environment: name.to_string(),
            reason,
        };
        let body = splice_contract(&template.body, contract).map_err(refused)?;
        let spliced = Template::parse(&origin, &body).map_err(|e| refused(e.to_string()))?;
        // The result must be the same template with that contract, and nothing else changed.
        let mut expected = template.value.clone();
        set_contract(&mut expected, contract);
        if spliced.value != expected {
            return Err(refused(
                "the template's text could not be changed without changing something else".into(),
            ));
        }
        Ok(spliced)
    }
}

/// Writes `contract` as the `envclone` key of the template's top-level `Metadata` in its text
/// (JSON is YAML flow style, so one line of JSON serves both formats), replacing any there.
/// Every other byte stays as it was — line endings, key order, indentation, a minified JSON's
/// lack of whitespace — so the template keeps its size (TemplateBody takes 51,200 bytes) and
/// reads the same in a diff.
fn splice_contract(body: &str, contract: &Value) -> Result<String, String> {
    let flow = serde_json::to_string(contract).map_err(|e| e.to_string())?;
    if body.trim_start().starts_with('{') {
        return splice_json(body, &flow);
    }
    // Lines with their own endings (`\r\n` or `\n`), so a CRLF template stays CRLF.
    let lines: Vec<&str> = body.split_inclusive('\n').collect();
    let nl = if body.contains("\r\n") { "\r\n" } else { "\n" };
    let text = |l: &str| l.trim_end_matches(['\n', '\r']).to_string();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let content = |l: &str| !l.trim().is_empty() && !l.trim_start().starts_with('#');
    let Some(meta) = lines.iter().position(|l| {
        let l = text(l);
        l.starts_with("Metadata:") && l["Metadata:".len()..].trim().is_empty()
    }) else {
        if lines.iter().any(|l| l.starts_with("Metadata")) {
            return Err("its top-level Metadata is not a block mapping".into());
        }
        let mut out = body.trim_end_matches(['\n', '\r']).to_string();
        out.push_str(&format!("{nl}Metadata:{nl}  envclone: {flow}{nl}"));
        return Ok(out);
    };
    // The block of Metadata: the lines after it that are indented (or blank/comments).
    let end = lines[meta + 1..]
        .iter()
        .position(|l| content(l) && indent(l) == 0)
        .map_or(lines.len(), |p| meta + 1 + p);
    let child_indent = lines[meta + 1..end]
        .iter()
        .find(|l| content(l))
        .map_or(2, |l| indent(l));
    let mut out: String = lines[..=meta].concat();
    if !out.ends_with('\n') {
        out.push_str(nl);
    }
    out.push_str(&format!("{}envclone: {flow}{nl}", " ".repeat(child_indent)));
    let mut skipping = false;
    for l in &lines[meta + 1..end] {
        if content(l) && indent(l) == child_indent {
            skipping = l.trim_start().starts_with("envclone:");
        } else if content(l) && indent(l) < child_indent {
            return Err("its Metadata block is indented unevenly".into());
        }
        if !skipping {
            out.push_str(l);
        }
    }
    out.push_str(&lines[end..].concat());
    if !body.ends_with('\n') && out.ends_with(nl) {
        // The template's last line had no ending and was the contract replaced: keep none.
        out.truncate(out.len() - nl.len());
    }
    Ok(out)
}

/// The JSON form of `splice_contract`: replaces the value of an `envclone` member of the
/// top-level `Metadata` object, or inserts `"envclone": …` as its first member, or inserts
/// `"Metadata": {"envclone": …}` as the template's first member — nothing else is touched.
fn splice_json(body: &str, flow: &str) -> Result<String, String> {
    let mut top = JsonScanner::new(body);
    let members = top.object_members()?;
    let Some(meta) = members.iter().find(|m| m.key == "Metadata") else {
        let member = format!("\"Metadata\": {{\"envclone\": {flow}}}");
        return Ok(insert_first_member(
            body,
            top.open,
            members.first(),
            &member,
        ));
    };
    let mut inner = JsonScanner::at(body, meta.value.start);
    let meta_members = inner
        .object_members()
        .map_err(|_| "its top-level Metadata is not a JSON object".to_string())?;
    if let Some(existing) = meta_members.iter().find(|m| m.key == "envclone") {
        let (start, end) = (existing.value.start, existing.value.end);
        return Ok(format!("{}{flow}{}", &body[..start], &body[end..]));
    }
    let member = format!("\"envclone\": {flow}");
    Ok(insert_first_member(
        body,
        inner.open,
        meta_members.first(),
        &member,
    ))
}

/// Inserts `member` as the first member of the object opened at `open`, laid out as the
/// current first member is (the same whitespace before it), or alone in an empty object.
fn insert_first_member(
    body: &str,
    open: usize,
    first: Option<&JsonMember>,
    member: &str,
) -> String {
    match first {
        Some(first) => {
            let lead = &body[open + 1..first.key_start];
            let at = first.key_start;
            format!("{}{member},{lead}{}", &body[..at], &body[at..])
        }
        None => format!("{}{member}{}", &body[..open + 1], &body[open + 1..]),
    }
}

/// One member of a JSON object: its decoded key, where its key starts, its value's byte span.
struct JsonMember {
    key: String,
    key_start: usize,
    value: std::ops::Range<usize>,
}

/// A scanner over JSON text that finds the byte spans of an object's members (strings,
/// escapes and nesting respected) without parsing or re-writing anything.
struct JsonScanner<'a> {
    text: &'a [u8],
    src: &'a str,
    at: usize,
    /// Where the scanned object's `{` is.
    open: usize,
}

impl<'a> JsonScanner<'a> {
    fn new(src: &'a str) -> Self {
        JsonScanner::at(src, 0)
    }

    fn at(src: &'a str, at: usize) -> Self {
        JsonScanner {
            text: src.as_bytes(),
            src,
            at,
            open: at,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn whitespace(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        self.whitespace();
        if self.peek() == Some(c) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!(
                "expected {:?} at byte {} of the JSON template",
                c as char, self.at
            ))
        }
    }

    fn string(&mut self) -> Result<(), String> {
        self.expect(b'"')?;
        loop {
            match self.peek() {
                None => return Err("a string of the JSON template is not closed".into()),
                Some(b'\\') => self.at += 2,
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(_) => self.at += 1,
            }
        }
    }

    fn value(&mut self) -> Result<std::ops::Range<usize>, String> {
        self.whitespace();
        let start = self.at;
        match self.peek() {
            None => return Err("the JSON template ends where a value was expected".into()),
            Some(b'"') => self.string()?,
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    match self.peek() {
                        None => return Err("an object of the JSON template is not closed".into()),
                        Some(b'"') => {
                            self.string()?;
                            continue;
                        }
                        Some(b'{' | b'[') => depth += 1,
                        Some(b'}' | b']') => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                break;
                            }
                        }
                        Some(_) => {}
                    }
                    self.at += 1;
                }
            }
            Some(_) => {
                while self
                    .peek()
                    .is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace())
                {
                    self.at += 1;
                }
            }
        }
        Ok(start..self.at)
    }

    /// The members of the object that starts here.
    fn object_members(&mut self) -> Result<Vec<JsonMember>, String> {
        self.whitespace();
        self.open = self.at;
        self.expect(b'{')?;
        let mut members = Vec::new();
        self.whitespace();
        if self.peek() == Some(b'}') {
            return Ok(members);
        }
        loop {
            self.whitespace();
            let key_start = self.at;
            self.string()?;
            let key: String = serde_json::from_str(&self.src[key_start..self.at])
                .map_err(|e| format!("a key of the JSON template: {e}"))?;
            self.expect(b':')?;
            let value = self.value()?;
            members.push(JsonMember {
                key,
                key_start,
                value,
            });
            self.whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => return Ok(members),
                _ => return Err(format!("expected ',' or '}}' at byte {}", self.at)),
            }
        }
    }
}

/// Sets `Metadata.envclone` of a template's value.
fn set_contract(template: &mut Value, contract: &Value) {
    let metadata = object(template).entry("Metadata").or_insert(Value::Null);
    object(metadata).insert("envclone".into(), contract.clone());
}

/// `v` as a JSON object, replacing anything else.
fn object(v: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Default::default());
    }
    match v {
        Value::Object(map) => map,
        _ => unreachable!("just made an object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Contract;

    const NO_CONTRACT: &str = include_str!("../tests/fixtures/no-contract.yaml");
    const WEBAPP: &str = include_str!("../stacks/webapp.yaml");

    const FILE: &str = r#"
[environments.billing.contract]
environment_parameter = "EnvironmentName"
databases = { Database = { snapshot_parameter = "DBSnapshotIdentifier" } }
buckets = { Ledger = {} }

[environments.prod.hooks]
quiesce = [{ command = "stop-writers", timeout_seconds = 60 }]
post_swap = ["restart-app"]
"#;

    #[test]
    fn a_contract_from_the_file_makes_a_template_without_one_clonable() {
        let config = Config::parse("envclone.toml", FILE).unwrap();
        let template = Template::parse("no-contract.yaml", NO_CONTRACT).unwrap();
        assert!(Contract::from_template(&template).is_err());
        let applied = config
            .apply(&["billing-stack", "billing"], template)
            .unwrap();
        let contract = Contract::from_template(&applied).unwrap();
        assert_eq!(
            contract.databases[0].snapshot_parameter,
            "DBSnapshotIdentifier"
        );
        assert_eq!(contract.buckets.len(), 1);
        // The template's own text is kept: one line added under its Metadata, nothing else.
        let added: Vec<&str> = applied
            .body
            .lines()
            .filter(|l| !NO_CONTRACT.lines().any(|o| o == *l))
            .collect();
        assert_eq!(added.len(), 1, "{added:?}");
        assert!(added[0].starts_with("  envclone: {"), "{added:?}");
        assert_eq!(
            applied.body.lines().count(),
            NO_CONTRACT.lines().count() + 1
        );
        assert_eq!(applied.value["Metadata"]["owner"], "billing-team");
        assert!(applied
            .origin
            .contains("[environments.billing] in envclone.toml"));
    }

    /// Issue 12: `ignore:` in envclone.toml, a table per logical id with its reason.
    #[test]
    fn a_contract_from_the_file_can_ignore_state_with_a_reason() {
        let file = r#"
[environments.prod.contract]
environment_parameter = "EnvironmentName"
databases = { Database = { snapshot_parameter = "DBSnapshotIdentifier" } }
buckets = { Reports = { bucket_parameter = "ReportsBucketName" } }

[environments.prod.contract.ignore.Uploads]
reason = "uploads are re-fetched from the origin"
"#;
        let config = Config::parse("envclone.toml", file).unwrap();
        let template = Template::parse("webapp.yaml", WEBAPP).unwrap();
        let applied = config.apply(&["prod"], template).unwrap();
        let contract = Contract::from_template(&applied).unwrap();
        assert_eq!(
            contract.ignore["Uploads"],
            "uploads are re-fetched from the origin"
        );
    }

    /// Issue 12: `tables:` in envclone.toml, read by the same types as the template's own
    /// (TOML's boolean `shared` survives the splice into the template's text).
    #[test]
    fn a_contract_from_the_file_can_list_tables() {
        let file = r#"
[environments.prod.contract]
environment_parameter = "EnvironmentName"
databases = { Database = { snapshot_parameter = "DBSnapshotIdentifier" } }

[environments.prod.contract.tables.Audit]
table_parameter = "ReportsBucketName"
shared = true
"#;
        let config = Config::parse("envclone.toml", file).unwrap();
        let template = Template::parse("webapp.yaml", WEBAPP).unwrap();
        let applied = config.apply(&["prod"], template).unwrap();
        let contract = Contract::from_template(&applied).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            contract.tables,
            vec![crate::contract::TableSpec::ByParameter {
                logical_id: "Audit".into(),
                parameter: "ReportsBucketName".into(),
                shared: true,
            }]
        );
    }

    #[test]
    fn a_contract_from_the_file_replaces_the_templates_own_in_place() {
        let file = format!(
            "{FILE}\n[environments.prod.contract]\nenvironment_parameter = \"EnvironmentName\"\n\
             databases = {{ Database = {{ snapshot_parameter = \"DBSnapshotIdentifier\" }} }}\n"
        );
        let config = Config::parse("envclone.toml", &file).unwrap();
        let template = Template::parse("webapp.yaml", WEBAPP).unwrap();
        let applied = config.apply(&["prod"], template).unwrap();
        let contract = Contract::from_template(&applied).unwrap();
        assert!(
            contract.buckets.is_empty(),
            "the file's contract, not the template's"
        );
        assert!(applied.body.contains("  envclone: {"));
        assert!(!applied.body.contains("      Uploads: {}"));
        // Everything outside Metadata.envclone is as it was: the lines after the contract block
        // are the template's own.
        let tail = &WEBAPP[WEBAPP.find("\nParameters:").unwrap()..];
        assert!(applied.body.ends_with(tail));
        let mut original = Template::parse("webapp.yaml", WEBAPP).unwrap().value;
        original["Metadata"]["envclone"] = applied.value["Metadata"]["envclone"].clone();
        assert_eq!(original, applied.value);
        // A template without any Metadata gets one at its end; JSON templates stay JSON.
        let bare = NO_CONTRACT.replace("Metadata:\n", "Notes:\n");
        let applied = config
            .apply(&["billing"], Template::parse("bare.yaml", &bare).unwrap())
            .unwrap();
        assert!(applied.body.starts_with(&bare));
        assert!(Contract::from_template(&applied).is_ok());
        let json = r#"{"Parameters": {"EnvironmentName": {"Type": "String"}, "DBSnapshotIdentifier": {"Type": "String"}}, "Resources": {"Database": {"Type": "AWS::RDS::DBInstance"}, "Ledger": {"Type": "AWS::S3::Bucket"}}}"#;
        let applied = config
            .apply(&["billing"], Template::parse("t.json", json).unwrap())
            .unwrap();
        assert!(applied.body.trim_start().starts_with('{'));
        assert!(Contract::from_template(&applied).is_ok());
    }

    /// `applied` is `original` with `inserted` added at one place and nothing else changed.
    fn only_inserted(original: &str, applied: &str, inserted: &str) {
        let at = applied
            .find(inserted)
            .unwrap_or_else(|| panic!("{inserted:?} not in:\n{applied}"));
        let without = format!("{}{}", &applied[..at], &applied[at + inserted.len()..]);
        assert_eq!(without, original);
    }

    const BILLING_FLOW: &str = r#"{"buckets":{"Ledger":{}},"databases":{"Database":{"snapshot_parameter":"DBSnapshotIdentifier"}},"environment_parameter":"EnvironmentName"}"#;

    /// Issue 15, item 3: before, a JSON template was re-serialized (keys sorted, CRLF dropped,
    /// pretty-printed); now the contract is spliced into its text and every other byte stays.
    #[test]
    fn a_json_template_keeps_its_bytes() {
        let config = Config::parse("envclone.toml", FILE).unwrap();
        let json = "{\r\n    \"Resources\": {\r\n        \"Ledger\": {\"Type\": \"AWS::S3::Bucket\"},\r\n        \"Database\": {\"Type\": \"AWS::RDS::DBInstance\"}\r\n    },\r\n    \"Metadata\": {\r\n        \"owner\": \"a \\\"quoted\\\" {team}\"\r\n    },\r\n    \"Parameters\": {\"EnvironmentName\": {\"Type\": \"String\"}, \"DBSnapshotIdentifier\": {\"Type\": \"String\"}}\r\n}\r\n";
        let applied = config
            .apply(&["billing"], Template::parse("t.json", json).unwrap())
            .unwrap();
        only_inserted(
            json,
            &applied.body,
            &format!("\"envclone\": {BILLING_FLOW},\r\n        "),
        );
        assert!(Contract::from_template(&applied).is_ok());
        assert_eq!(applied.value["Metadata"]["owner"], "a \"quoted\" {team}");

        // An existing contract is replaced in place; no Metadata at all gets one, first.
        let own = json.replace(
            "\"owner\": \"a",
            "\"envclone\": {\"verify\": [{\"http_output\": \"U\"}]},\r\n        \"owner\": \"a",
        );
        let applied = config
            .apply(&["billing"], Template::parse("t.json", &own).unwrap())
            .unwrap();
        assert_eq!(
            applied.body,
            own.replace("{\"verify\": [{\"http_output\": \"U\"}]}", BILLING_FLOW)
        );
        let bare = "{\"Resources\":{\"Database\":{\"Type\":\"AWS::RDS::DBInstance\"}},\"Parameters\":{\"EnvironmentName\":{\"Type\":\"String\"},\"DBSnapshotIdentifier\":{\"Type\":\"String\"}}}";
        let applied = config
            .apply(&["billing"], Template::parse("t.json", bare).unwrap())
            .unwrap();
        only_inserted(
            bare,
            &applied.body,
            &format!("\"Metadata\": {{\"envclone\": {BILLING_FLOW}}},"),
        );
    }

    /// Issue 15, item 3: a minified template close to CloudFormation's 51,200-byte TemplateBody
    /// limit stays under it (before: pretty-printed to far more, and refused).
    #[test]
    fn a_minified_json_template_stays_minified() {
        let config = Config::parse("envclone.toml", FILE).unwrap();
        let mut resources = String::from(r#""Database":{"Type":"AWS::RDS::DBInstance"}"#);
        let mut i = 0;
        while resources.len() < 48_900 {
            resources.push_str(&format!(
                r#","Queue{i}":{{"Type":"AWS::SQS::Queue","Properties":{{"Tags":[{{"Key":"n","Value":"{i}"}}]}}}}"#
            ));
            i += 1;
        }
        let json = format!(
            r#"{{"Parameters":{{"EnvironmentName":{{"Type":"String"}},"DBSnapshotIdentifier":{{"Type":"String"}}}},"Resources":{{{resources}}}}}"#
        );
        assert!(json.len() > 49_000 && json.len() < 50_000, "{}", json.len());
        let applied = config
            .apply(&["billing"], Template::parse("t.json", &json).unwrap())
            .unwrap();
        assert!(applied.body.len() < 51_200, "{} bytes", applied.body.len());
        assert_eq!(
            applied.body.len(),
            json.len() + format!("\"Metadata\": {{\"envclone\": {BILLING_FLOW}}},").len()
        );
    }

    /// Issue 15, item 3: a CRLF YAML template stays CRLF (before: `lines()` and a join with
    /// `\n` turned every line ending into LF).
    #[test]
    fn a_crlf_yaml_template_keeps_its_line_endings() {
        let config = Config::parse("envclone.toml", FILE).unwrap();
        let crlf = NO_CONTRACT.replace('\n', "\r\n");
        let applied = config
            .apply(&["billing"], Template::parse("t.yaml", &crlf).unwrap())
            .unwrap();
        assert_eq!(
            applied.body.matches('\n').count(),
            applied.body.matches("\r\n").count()
        );
        let meta = crlf.find("Metadata:\r\n").unwrap() + "Metadata:\r\n".len();
        only_inserted(
            &crlf,
            &applied.body,
            &format!("  envclone: {BILLING_FLOW}\r\n"),
        );
        assert!(applied.body[meta..].starts_with("  envclone: "));
        // Without any Metadata, the one appended is CRLF too.
        let bare = crlf.replace("Metadata:\r\n", "Notes:\r\n");
        let applied = config
            .apply(&["billing"], Template::parse("t.yaml", &bare).unwrap())
            .unwrap();
        assert!(applied.body.starts_with(&bare));
        assert!(applied
            .body
            .ends_with(&format!("\r\nMetadata:\r\n  envclone: {BILLING_FLOW}\r\n")));
    }

    #[test]
    fn hooks_from_the_file_are_for_the_run_not_the_template() {
        let config = Config::parse("envclone.toml", FILE).unwrap();
        let hooks = config.hooks(&["prod-stack", "prod"]);
        assert_eq!(hooks.quiesce.len(), 1);
        assert_eq!(hooks.quiesce[0].command(), "stop-writers");
        assert_eq!(hooks.post_swap[0].command(), "restart-app");
        assert!(hooks.verify.is_empty());
        assert_eq!(config.hooks(&["staging"]), Hooks::default());
        // A hooks-only section leaves the template untouched, byte for byte.
        let template = Template::parse("webapp.yaml", WEBAPP).unwrap();
        assert_eq!(config.apply(&["prod"], template).unwrap().body, WEBAPP);
    }

    #[test]
    fn a_bad_file_says_what_is_wrong() {
        let err = Config::parse("x.toml", "[environments.prod.hooks]\nquiesce = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.toml is not valid"), "{err}");
        let err = Config::parse("x.toml", "[environment.prod]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
        let err = Config::load(Some(Path::new("/nonexistent/envclone.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read the config file"), "{err}");
    }
}
