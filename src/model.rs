//! Names and identifiers, and the rules AWS applies to them.
//!
//! Every name envclone derives (snapshot ids, bucket names, stack names) is checked here before
//! the first change, so a clone never fails half-way because a derived name is too long.

use std::fmt;

use thiserror::Error;

/// Tag keys envclone puts on everything it creates.
pub const TAG_RUN: &str = "envclone:run";
pub const TAG_ENVIRONMENT: &str = "envclone:environment";
pub const TAG_SOURCE: &str = "envclone:source";
pub const TAG_PROTECTED: &str = "envclone:protected";
pub const TAG_OWNER: &str = "envclone:owner";
pub const TAG_EXPIRES_AT: &str = "envclone:expires-at";
/// Put by migrate's swap on the live database: the identifier CloudFormation's record of it
/// still names, and the run that renamed it.
pub const TAG_CFN_IDENTIFIER: &str = "envclone:cfn-identifier";
pub const TAG_MIGRATED_BY: &str = "envclone:migrated-by";

/// A name rule that a given value breaks.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{kind} {value:?} is not valid: {problem}")]
pub struct NameError {
    pub kind: &'static str,
    pub value: String,
    pub problem: String,
}

fn name_error(kind: &'static str, value: &str, problem: impl Into<String>) -> NameError {
    NameError {
        kind,
        value: value.to_string(),
        problem: problem.into(),
    }
}

/// An environment name: what users type (`prod`, `staging-test`). It ends up inside stack names,
/// database identifiers and bucket names, so it must satisfy the strictest of them: lowercase
/// letters, digits and single hyphens, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct EnvName(String);

/// Longest environment name accepted: leaves room in a 63-character DB identifier or bucket name
/// for the suffixes templates and envclone add (`-db`, `-uploads-123456789012`, `-old-<stamp>`).
pub const MAX_ENV_NAME: usize = 28;

impl EnvName {
    pub fn parse(value: &str) -> Result<Self, NameError> {
        const KIND: &str = "environment name";
        if value.is_empty() {
            return Err(name_error(KIND, value, "it is empty"));
        }
        if value.len() > MAX_ENV_NAME {
            return Err(name_error(
                KIND,
                value,
                format!(
                    "it has {} characters; at most {MAX_ENV_NAME} leave room for the suffixes \
                     added to database identifiers and bucket names",
                    value.len()
                ),
            ));
        }
        if !value.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(name_error(
                KIND,
                value,
                "it must start with a lowercase letter",
            ));
        }
        if let Some(c) = value
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(name_error(
                KIND,
                value,
                format!("{c:?} is not allowed; use lowercase letters, digits and hyphens"),
            ));
        }
        if value.contains("--") {
            return Err(name_error(KIND, value, "it contains two hyphens in a row"));
        }
        if value.ends_with('-') {
            return Err(name_error(KIND, value, "it ends with a hyphen"));
        }
        Ok(EnvName(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A run identifier: `YYYYMMDDhhmmss-xxxx`, sortable and safe inside every AWS name.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct RunId(String);

impl RunId {
    pub fn new(now: chrono::DateTime<chrono::Utc>, entropy: u32) -> Self {
        RunId(format!(
            "{}-{:04x}",
            now.format("%Y%m%d%H%M%S"),
            entropy & 0xffff
        ))
    }

    pub fn from_existing(value: &str) -> Self {
        RunId(value.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// RDS rules for DB instance and snapshot identifiers: 1..=max letters, digits, hyphens; starts
/// with a letter; no two hyphens in a row; no trailing hyphen.
pub fn check_rds_identifier(kind: &'static str, value: &str, max: usize) -> Result<(), NameError> {
    if value.is_empty() || value.len() > max {
        return Err(name_error(
            kind,
            value,
            format!("it has {} characters; RDS allows 1 to {max}", value.len()),
        ));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(name_error(kind, value, "RDS requires a leading letter"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(name_error(
            kind,
            value,
            format!("{c:?} is not allowed; RDS allows letters, digits and hyphens"),
        ));
    }
    if value.contains("--") {
        return Err(name_error(kind, value, "RDS forbids two hyphens in a row"));
    }
    if value.ends_with('-') {
        return Err(name_error(kind, value, "RDS forbids a trailing hyphen"));
    }
    Ok(())
}

/// S3 rules for general-purpose bucket names (the subset that matters for derived names).
pub fn check_bucket_name(value: &str) -> Result<(), NameError> {
    const KIND: &str = "bucket name";
    if value.len() < 3 || value.len() > 63 {
        return Err(name_error(
            KIND,
            value,
            format!("it has {} characters; S3 allows 3 to 63", value.len()),
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(name_error(
            KIND,
            value,
            format!("{c:?} is not allowed; S3 allows lowercase letters, digits, '-' and '.'"),
        ));
    }
    let first_last_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !value.starts_with(first_last_ok) || !value.ends_with(first_last_ok) {
        return Err(name_error(
            KIND,
            value,
            "it must start and end with a letter or digit",
        ));
    }
    if value.contains("..") {
        return Err(name_error(KIND, value, "it contains two dots in a row"));
    }
    Ok(())
}

/// CloudFormation stack names: letters, digits and hyphens, leading letter, at most 128.
pub fn check_stack_name(value: &str) -> Result<(), NameError> {
    const KIND: &str = "stack name";
    if value.is_empty() || value.len() > 128 {
        return Err(name_error(
            KIND,
            value,
            format!(
                "it has {} characters; CloudFormation allows 1 to 128",
                value.len()
            ),
        ));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(name_error(KIND, value, "it must start with a letter"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(name_error(
            KIND,
            value,
            format!("{c:?} is not allowed; use letters, digits and hyphens"),
        ));
    }
    Ok(())
}

/// The snapshot envclone takes of a source database during a run. Derived from the run id so a
/// re-run of the same step finds (and reuses) the snapshot it already made.
pub fn snapshot_id(run: &RunId, source_db: &str) -> Result<String, NameError> {
    let id = format!("envclone-{}-{}", run.as_str(), source_db);
    check_rds_identifier("DB snapshot identifier", &id, 255)?;
    Ok(id)
}

/// The name of a bucket envclone creates for the target (buckets passed to a stack by
/// parameter). Where the source bucket's name contains the source environment's name, that part
/// is replaced (`prod-reports-1a2b` → `staging-test-reports-1a2b`); otherwise the target's name
/// is put in front. Lowercased, and checked against S3's rules.
pub fn derived_bucket_name(
    source_bucket: &str,
    source_env: &str,
    target_env: &EnvName,
) -> Result<String, NameError> {
    let derived = if !source_env.is_empty() && source_bucket.contains(source_env) {
        source_bucket.replacen(source_env, target_env.as_str(), 1)
    } else {
        format!("{}-{}", target_env.as_str(), source_bucket)
    };
    check_bucket_name(&derived)?;
    Ok(derived)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_follow_the_strictest_rules() {
        for ok in ["prod", "staging-test", "a1", "x-2-y"] {
            assert!(EnvName::parse(ok).is_ok(), "{ok}");
        }
        let cases = [
            ("", "empty"),
            ("Prod", "lowercase letter"),
            ("1prod", "lowercase letter"),
            ("pro_d", "'_' is not allowed"),
            ("a--b", "two hyphens"),
            ("prod-", "ends with a hyphen"),
            ("a-very-long-environment-name-x", "at most 28"),
        ];
        for (bad, why) in cases {
            let err = EnvName::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn rds_identifier_rules() {
        assert!(check_rds_identifier("DB", "db-1", 63).is_ok());
        assert!(check_rds_identifier("DB", "1db", 63).is_err());
        assert!(check_rds_identifier("DB", "db--1", 63).is_err());
        assert!(check_rds_identifier("DB", "db-", 63).is_err());
        assert!(check_rds_identifier("DB", "db_1", 63).is_err());
        assert!(check_rds_identifier("DB", &"a".repeat(64), 63).is_err());
        assert!(check_rds_identifier("DB", &"a".repeat(63), 63).is_ok());
    }

    #[test]
    fn bucket_name_rules() {
        assert!(check_bucket_name("prod-reports-1").is_ok());
        assert!(check_bucket_name("ab").is_err());
        assert!(check_bucket_name("Prod").is_err());
        assert!(check_bucket_name("-prod").is_err());
        assert!(check_bucket_name("a..b").is_err());
        assert!(check_bucket_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn derived_bucket_names_replace_the_environment() {
        let target = EnvName::parse("staging-test").unwrap();
        assert_eq!(
            derived_bucket_name("prod-reports-1a2b", "prod", &target).unwrap(),
            "staging-test-reports-1a2b"
        );
        assert_eq!(
            derived_bucket_name("shared-archive", "prod", &target).unwrap(),
            "staging-test-shared-archive"
        );
        let long = "x".repeat(60);
        assert!(derived_bucket_name(&long, "prod", &target).is_err());
    }

    #[test]
    fn snapshot_ids_are_derived_from_the_run() {
        let run = RunId::from_existing("20261121231500-00af");
        assert_eq!(
            snapshot_id(&run, "prod-db").unwrap(),
            "envclone-20261121231500-00af-prod-db"
        );
    }

    #[test]
    fn stack_name_rules() {
        assert!(check_stack_name("staging-test").is_ok());
        assert!(check_stack_name("1abc").is_err());
        assert!(check_stack_name("a_b").is_err());
        assert!(check_stack_name(&"a".repeat(129)).is_err());
    }
}
