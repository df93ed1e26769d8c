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
//! What the file supplies is written into the `Metadata.envclone` of the template the clone stack
//! is created from, so the clone carries its contract: `resume`, `verify`, `destroy` and `gc` on
//! another machine, without this file, read it from the clone stack like any other.

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

    /// `template` with this file's contract and hooks for the environment written into its
    /// `Metadata.envclone` (unchanged when the file says nothing about it). The body becomes
    /// the JSON form of the template, which CloudFormation takes as well.
    pub fn apply(&self, names: &[&str], template: Template) -> Template {
        let Some((name, env)) = self.for_environment(names) else {
            return template;
        };
        if env.contract.is_none() && env.hooks.is_none() {
            return template;
        }
        let mut value = template.value;
        let root = object(&mut value);
        let metadata = object(
            root.entry("Metadata")
                .or_insert_with(|| Value::Object(Default::default())),
        );
        if let Some(contract) = &env.contract {
            metadata.insert("envclone".into(), contract.clone());
        }
        if let Some(hooks) = &env.hooks {
            let contract = object(
                metadata
                    .entry("envclone")
                    .or_insert_with(|| Value::Object(Default::default())),
            );
            let all = object(
                contract
                    .entry("hooks")
                    .or_insert_with(|| Value::Object(Default::default())),
            );
            for (phase, extra) in [
                ("quiesce", &hooks.quiesce),
                ("verify", &hooks.verify),
                ("post_swap", &hooks.post_swap),
            ] {
                if extra.is_empty() {
                    continue;
                }
                let list = all.entry(phase).or_insert_with(|| Value::Array(Vec::new()));
                if !list.is_array() {
                    *list = Value::Array(Vec::new());
                }
                if let Value::Array(items) = list {
                    items.extend(extra.iter().filter_map(|h| serde_json::to_value(h).ok()));
                }
            }
        }
        let origin = format!(
            "{} with [environments.{name}] of {}",
            template.origin,
            self.origin.as_deref().unwrap_or(DEFAULT_FILE)
        );
        let body = serde_json::to_string_pretty(&value).unwrap_or_default();
        Template {
            origin,
            body,
            value,
        }
    }
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
        let applied = config.apply(&["billing-stack", "billing"], template);
        let contract = Contract::from_template(&applied).unwrap();
        assert_eq!(
            contract.databases[0].snapshot_parameter,
            "DBSnapshotIdentifier"
        );
        assert_eq!(contract.buckets.len(), 1);
        // The body carries it, and still parses as the same template.
        let reparsed = Template::parse("again", &applied.body).unwrap();
        assert_eq!(reparsed.value, applied.value);
        assert!(Contract::from_template(&reparsed).is_ok());
        assert_eq!(
            reparsed.value["Metadata"]["owner"], "billing-team",
            "the template's other metadata stays"
        );
        assert!(applied
            .origin
            .contains("[environments.billing] of envclone.toml"));
    }

    #[test]
    fn hooks_from_the_file_run_after_the_templates_own() {
        let config = Config::parse("envclone.toml", FILE).unwrap();
        let template = Template::parse("webapp.yaml", WEBAPP).unwrap();
        let contract = Contract::from_template(&config.apply(&["prod"], template)).unwrap();
        assert_eq!(contract.hooks.quiesce.len(), 1);
        assert_eq!(contract.hooks.quiesce[0].command(), "stop-writers");
        assert_eq!(contract.hooks.post_swap[0].command(), "restart-app");
        assert!(contract.hooks.verify.is_empty());
        // Another environment: untouched, body and all.
        let template = Template::parse("webapp.yaml", WEBAPP).unwrap();
        assert_eq!(config.apply(&["staging"], template).body, WEBAPP);
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
