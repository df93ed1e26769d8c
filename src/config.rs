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
fn splice_contract(body: &str, contract: &Value) -> Result<String, String> {
    let flow = serde_json::to_string(contract).map_err(|e| e.to_string())?;
    if body.trim_start().starts_with('{') {
        let mut value: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
        set_contract(&mut value, contract);
        return serde_json::to_string_pretty(&value).map_err(|e| e.to_string());
    }
    let lines: Vec<&str> = body.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let content = |l: &str| !l.trim().is_empty() && !l.trim_start().starts_with('#');
    let Some(meta) = lines
        .iter()
        .position(|l| l.starts_with("Metadata:") && l["Metadata:".len()..].trim().is_empty())
    else {
        if lines.iter().any(|l| l.starts_with("Metadata")) {
            return Err("its top-level Metadata is not a block mapping".into());
        }
        let mut out = body.trim_end_matches('\n').to_string();
        out.push_str(&format!("\nMetadata:\n  envclone: {flow}\n"));
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
    let mut out: Vec<String> = lines[..=meta].iter().map(|l| l.to_string()).collect();
    out.push(format!("{}envclone: {flow}", " ".repeat(child_indent)));
    let mut skipping = false;
    for l in &lines[meta + 1..end] {
        if content(l) && indent(l) == child_indent {
            skipping = l.trim_start().starts_with("envclone:");
        } else if content(l) && indent(l) < child_indent {
            return Err("its Metadata block is indented unevenly".into());
        }
        if !skipping {
            out.push(l.to_string());
        }
    }
    out.extend(lines[end..].iter().map(|l| l.to_string()));
    let mut text = out.join("\n");
    if body.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
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
