//! Experiment environments: `list`, `destroy` and `gc`, working from AWS alone (tags), so any
//! machine sees and collects the same environments.

use serde::Serialize;
use thiserror::Error;

use crate::contract::{Contract, Template};
use crate::events::Emitter;
use crate::model::{
    RunId, TAG_ENVIRONMENT, TAG_EXPIRES_AT, TAG_OWNER, TAG_PROTECTED, TAG_RUN, TAG_SOURCE,
};
use crate::ports::{PortError, StackInfo};
use crate::retry::retry;

use super::clone::CloneEngine;
use super::plan::{PURPOSE_TEMPLATE_STAGING, STAGING_BUCKET_PREFIX, TAG_PURPOSE};
use super::recovery::RunResources;
use super::resource::{self, ResourceRef};
use super::resources::{self, KINDS};
use super::StepError;

/// One environment envclone created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Environment {
    pub name: String,
    pub stack: String,
    pub source: String,
    pub owner: Option<String>,
    pub run_id: String,
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub status: String,
    pub protected: bool,
}

impl Environment {
    fn from_stack(s: &StackInfo) -> Self {
        Environment {
            name: s
                .tags
                .get(TAG_ENVIRONMENT)
                .cloned()
                .unwrap_or_else(|| s.name.clone()),
            stack: s.name.clone(),
            source: s.tags.get(TAG_SOURCE).cloned().unwrap_or_default(),
            owner: s.tags.get(TAG_OWNER).cloned(),
            run_id: s.tags.get(TAG_RUN).cloned().unwrap_or_default(),
            created: s.created,
            expires_at: s
                .tags
                .get(TAG_EXPIRES_AT)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc)),
            status: s.status.to_string(),
            protected: s.tags.get(TAG_PROTECTED).map(String::as_str) == Some("true"),
        }
    }

    /// A clone that became the environment itself through `migrate` is not an experiment.
    pub fn is_experiment(&self) -> bool {
        self.name == self.stack
    }

    pub fn expired(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

#[derive(Debug, Error)]
pub enum DestroyError {
    #[error(
        "environment {0:?} not found; `envclone list` shows the environments envclone created"
    )]
    Unknown(String),
    #[error(
        "{0} was not created by envclone (its stack has no envclone:run tag); envclone deletes \
         only what it created — delete it with CloudFormation if you mean to"
    )]
    NotOurs(String),
    #[error("{0} is marked protected (tag envclone:protected=true); remove the tag first if you really mean to destroy it")]
    Protected(String),
    #[error(
        "{name} is environment {env} after a migration, not an experiment environment ({why}); \
         envclone does not destroy it"
    )]
    Migrated {
        name: String,
        env: String,
        why: String,
    },
    #[error(
        "{stack} is part of a migration swapped but not finalized (run {run_id}; database \
         {database} carries envclone:open-migration): finish it with `envclone finalize {run_id}` \
         or undo it with `envclone abort {run_id}` first"
    )]
    OpenMigration {
        stack: String,
        run_id: String,
        database: String,
    },
    #[error(transparent)]
    Step(#[from] StepError),
    #[error("reading {0} failed: {1}")]
    Aws(String, PortError),
}

impl CloneEngine {
    /// Every environment envclone created, found by the `envclone:run` tag.
    pub async fn list_environments(&self) -> Result<Vec<Environment>, PortError> {
        let stacks = retry(|| self.cloud.stacks.stacks_with_tag(TAG_RUN)).await?;
        let mut out: Vec<Environment> = stacks.iter().map(Environment::from_stack).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Checks that `env` may be destroyed and returns it.
    pub async fn destroyable(&self, env: &str) -> Result<Environment, DestroyError> {
        let stacks = &self.cloud.stacks;
        let aws = |e| DestroyError::Aws(env.to_string(), e);
        let stack = match retry(|| stacks.describe_stack(env)).await.map_err(aws)? {
            Some(s) => s,
            None => retry(|| stacks.find_stacks_by_tag(TAG_ENVIRONMENT, env))
                .await
                .map_err(aws)?
                .into_iter()
                .next()
                .ok_or_else(|| DestroyError::Unknown(env.to_string()))?,
        };
        if let Some((run_id, database)) = self
            .open_migration_of_stack(&stack.name)
            .await
            .map_err(aws)?
        {
            return Err(DestroyError::OpenMigration {
                stack: stack.name,
                run_id,
                database,
            });
        }
        if !stack.tags.contains_key(TAG_RUN) {
            return Err(DestroyError::NotOurs(stack.name));
        }
        let e = Environment::from_stack(&stack);
        if e.protected {
            return Err(DestroyError::Protected(e.stack));
        }
        if !e.is_experiment() {
            // The new environment of a migration that never swapped (stopped in its clone
            // phase, or at the guardrails) never served: it is the run's leftover, like a
            // clone's. One that served, or serves, is the environment itself.
            if let Err(why) = self.never_served(&stack, &e).await? {
                return Err(DestroyError::Migrated {
                    name: e.stack,
                    env: e.name,
                    why,
                });
            }
        }
        Ok(e)
    }

    /// Ok if `stack` is the temporary environment (`<env>-m<xxxx>`) of a migration whose swap
    /// never began: every database its CloudFormation record names exists under that
    /// identifier (the swap renames it into the environment's) and carries no
    /// `envclone:migrated-by` tag (the swap puts it there, and it stays through a swap back).
    /// Err says what shows that it served.
    async fn never_served(
        &self,
        stack: &StackInfo,
        e: &Environment,
    ) -> Result<Result<(), String>, DestroyError> {
        let aws = |err| DestroyError::Aws(e.stack.clone(), err);
        let run = RunId::from_existing(&e.run_id);
        let temporary = super::migrate::temporary_name(&e.name, &run)
            .map(|n| n.to_string())
            .ok();
        if temporary.as_deref() != Some(stack.name.as_str()) {
            return Ok(Err(format!(
                "its stack is not the temporary stack of run {}",
                e.run_id
            )));
        }
        let resources = retry(|| self.cloud.stacks.resources(&stack.name))
            .await
            .map_err(aws)?;
        for r in &resources {
            let Some(kind) = resources::of_type(&r.resource_type) else {
                continue;
            };
            if let Some(why) = kind.served_as(self, r, &e.name).await.map_err(aws)? {
                return Ok(Err(why));
            }
        }
        Ok(Ok(()))
    }

    /// Deletes an environment envclone created: its stack (buckets emptied), the buckets the
    /// run created for it, the run's snapshots. Returns (removed, left).
    pub async fn destroy(
        &self,
        e: &Environment,
        events: &Emitter,
    ) -> Result<(Vec<ResourceRef>, Vec<ResourceRef>), DestroyError> {
        let stacks = &self.cloud.stacks;
        let aws = |err| DestroyError::Aws(e.stack.clone(), err);
        let stack = retry(|| stacks.describe_stack(&e.stack))
            .await
            .map_err(aws)?
            .ok_or_else(|| DestroyError::Unknown(e.stack.clone()))?;
        let body = retry(|| stacks.template_body(&e.stack))
            .await
            .map_err(aws)?;
        // What the run created is named in the stack's parameters, by its template's contract.
        let artifacts = match Template::parse(&e.stack, &body)
            .ok()
            .and_then(|t| Contract::from_template(&t).ok())
        {
            Some(contract) => KINDS
                .iter()
                .flat_map(|k| k.artifacts_of_stack(&contract, &stack))
                .collect(),
            None => Vec::new(),
        };
        let resources = RunResources {
            run_id: e.run_id.clone(),
            stack: e.stack.clone(),
            artifacts,
            creating: Vec::new(),
            // Staged only for the seconds of CreateStack: what a crashed run left is gc's.
            staged_templates: Vec::new(),
            // Its copies ended with the run that made it.
            batch_buckets: Vec::new(),
        };
        events.start("destroy", Some(&e.stack), format!("destroying {}", e.name));
        let (removed, left) = self.remove_run_resources(&resources, events).await?;
        events.done(
            "destroy",
            Some(&e.stack),
            format!("removed: {}", resource::join(&removed, ", ")),
        );
        Ok((removed, left))
    }
}

/// How old a run's staged template must be before gc takes it for a crashed run's leftover: a
/// run keeps it only from just before CreateStack until CreateStack answers (seconds).
pub const STAGING_MAX_AGE: chrono::Duration = chrono::Duration::hours(1);

/// A template a run staged for CreateStack and never removed (it died in between).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StagingLeftover {
    pub bucket: String,
    /// In the `--state` bucket: the object; None: the whole bucket is the run's.
    pub key: Option<String>,
    pub run_id: String,
    pub since: chrono::DateTime<chrono::Utc>,
}

impl std::fmt::Display for StagingLeftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(key) => write!(f, "staged template s3://{}/{key}", self.bucket)?,
            None => write!(f, "template staging bucket {}", self.bucket)?,
        }
        write!(
            f,
            " of run {} (since {})",
            self.run_id,
            self.since
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

impl CloneEngine {
    /// Templates runs staged and did not remove, older than `STAGING_MAX_AGE`: buckets named
    /// `envclone-tpl-…` that carry `envclone:purpose=template-staging` and a run tag
    /// (ListBuckets' CreationDate says when), and with `--state` in S3, objects under its
    /// `staging/` prefix (their LastModified says when).
    pub async fn staging_leftovers(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<StagingLeftover>, PortError> {
        let objects = &self.cloud.objects;
        let mut out = Vec::new();
        for b in retry(|| objects.buckets_with_prefix(STAGING_BUCKET_PREFIX)).await? {
            if now - b.created < STAGING_MAX_AGE {
                continue;
            }
            let Some(tags) = retry(|| objects.bucket_tags(&b.name)).await? else {
                continue;
            };
            let staging =
                tags.get(TAG_PURPOSE).map(String::as_str) == Some(PURPOSE_TEMPLATE_STAGING);
            if let (true, Some(run_id)) = (staging, tags.get(TAG_RUN)) {
                out.push(StagingLeftover {
                    bucket: b.name.clone(),
                    key: None,
                    run_id: run_id.clone(),
                    since: b.created,
                });
            }
        }
        if let Some((bucket, prefix)) = &self.settings.state_bucket {
            let staging = if prefix.is_empty() {
                "staging/".to_string()
            } else {
                format!("{prefix}/staging/")
            };
            let mut token = None;
            loop {
                let page = retry(|| objects.list_page(bucket, &staging, token.clone())).await?;
                for o in &page.objects {
                    let Some(found) = retry(|| objects.get_small_object(bucket, &o.key)).await?
                    else {
                        continue;
                    };
                    if now - found.last_modified < STAGING_MAX_AGE {
                        continue;
                    }
                    let run_id = o.key[staging.len()..]
                        .split('/')
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    out.push(StagingLeftover {
                        bucket: bucket.clone(),
                        key: Some(o.key.clone()),
                        run_id,
                        since: found.last_modified,
                    });
                }
                token = page.next_token;
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Removes a staging leftover: the object, or the bucket emptied and deleted.
    pub async fn remove_staging_leftover(&self, l: &StagingLeftover) -> Result<(), PortError> {
        let objects = &self.cloud.objects;
        let gone = |r: Result<(), PortError>| match r {
            Ok(()) | Err(PortError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        };
        match &l.key {
            Some(key) => gone(retry(|| objects.delete_object(&l.bucket, key)).await),
            None => {
                crate::s3sync::empty_bucket(objects.as_ref(), &l.bucket).await?;
                gone(retry(|| objects.delete_bucket(&l.bucket)).await)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn stack(name: &str, tags: &[(&str, &str)]) -> StackInfo {
        StackInfo {
            name: name.into(),
            id: format!("arn:aws:cloudformation:us-east-1:1:stack/{name}/x"),
            status: crate::ports::StackStatus::CreateComplete,
            status_reason: None,
            parameters: BTreeMap::new(),
            outputs: BTreeMap::new(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            capabilities: Vec::new(),
            created: None,
            termination_protection: false,
        }
    }

    #[test]
    fn expiry_and_experiments() {
        let e = Environment::from_stack(&stack(
            "exp1",
            &[
                (TAG_RUN, "r"),
                (TAG_ENVIRONMENT, "exp1"),
                (TAG_EXPIRES_AT, "2026-01-01T00:00:00Z"),
            ],
        ));
        assert!(e.is_experiment());
        assert!(e.expired(chrono::Utc::now()));
        let migrated = Environment::from_stack(&stack(
            "prod-m1234",
            &[(TAG_RUN, "r"), (TAG_ENVIRONMENT, "prod")],
        ));
        assert!(!migrated.is_experiment());
        assert!(
            !migrated.expired(chrono::Utc::now()),
            "no expiry, never expired"
        );
    }
}
