//! A clone's bucket copies through S3 Batch Operations: a contract bucket `{ engine: batch }`,
//! or every bucket with `clone`/`migrate --engine batch`. The copy is [`crate::s3batch::run`]
//! (manifest of what differs, an S3PutObjectCopy job, the failed and over-limit keys re-copied
//! by the local engine, the target verified), with a client token derived from the run id and
//! the bucket, and the run's journal in the reports location keyed by the source → target pair:
//! the target is a bucket of this run, so a `resume` finds the job of its own interrupted copy
//! (and only it), and `abort` finds it to cancel it before the buckets are removed.
//!
//! Where the role and the reports location come from: the operator's command line
//! (`--batch-role`, `--batch-reports`), not the contract. They belong to an account (the role
//! is IAM's, the reports bucket the account's), and the contract travels with the template to
//! every account it is deployed in; they are recorded with the run's plan, so `resume` and
//! `abort` use the same ones.

use std::time::Duration;

use crate::events::Emitter;
use crate::ports::batch::BatchJobs;
use crate::ports::{ObjectStore, PortError};
use crate::retry::retry;
use crate::s3batch::{self, BatchEvent, BatchRequest};
use crate::s3sync::{SameBytes, SyncOptions, SyncStats};

pub use super::engine::BatchSettings;
use super::engine::CloneEngine;
pub use super::plan::{token_stem, BatchCopy};
use super::plan::{BucketPlan, BucketTarget, ClonePlan};
use super::record::RunResources;
use super::refs::{ResourceRef, BATCH_JOB};
use super::{PreflightError, StepError};

/// How long abort waits for a cancelled job to leave Cancelling (it finishes the tasks in
/// flight first: "Cancelling a job", S3 User Guide); the buckets are emptied only after.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

fn refuse(b: &BucketPlan, chosen_by: &str, what: String) -> PreflightError {
    PreflightError::Unsupported {
        what: format!(
            "bucket {} (s3://{}) is to be copied by S3 Batch Operations ({chosen_by}), but \
             {what}; nothing was changed",
            b.logical_id, b.source_bucket
        ),
    }
}

/// Preflight: which buckets a job copies (`--engine batch`, or `{ engine: batch }` in the
/// contract) and with what. Refuses, before any change and naming the bucket, one without a
/// role or a reports location, a role that is not a role ARN, or reports inside the bucket.
pub fn plan_batch(plan: &mut ClonePlan, settings: &BatchSettings) -> Result<(), PreflightError> {
    let listed = plan.contract.batch_buckets.clone();
    for b in &mut plan.buckets {
        let chosen_by = if settings.all {
            "--engine batch".to_string()
        } else if listed.contains(&b.logical_id) {
            format!("{{ engine: batch }} in its contract entry {}", b.logical_id)
        } else {
            continue;
        };
        let (Some(role), Some(reports)) = (&settings.role_arn, &settings.reports) else {
            let missing = match (&settings.role_arn, &settings.reports) {
                (None, None) => "--batch-role and --batch-reports were",
                (None, _) => "--batch-role was",
                _ => "--batch-reports was",
            };
            return Err(refuse(
                b,
                &chosen_by,
                format!(
                    "{missing} not given: pass --batch-role arn:aws:iam::ACCOUNT:role/NAME (the \
                     role the job assumes) and --batch-reports s3://BUCKET/PREFIX (its manifest \
                     and completion report, outside the buckets copied), or leave the bucket to \
                     the local engine"
                ),
            ));
        };
        s3batch::account_of_role(role).map_err(|e| refuse(b, &chosen_by, e.to_string()))?;
        let target = match &b.target {
            BucketTarget::Created { name, .. } => Some(name.clone()),
            BucketTarget::StackOwned { predicted_name } => predicted_name.clone(),
        };
        for inside in std::iter::once(&b.source_bucket).chain(target.as_ref()) {
            if reports.bucket == *inside {
                return Err(refuse(
                    b,
                    &chosen_by,
                    format!(
                        "--batch-reports {reports} is in bucket {inside}, \
                         which the copy reads or writes: its manifest and reports would be \
                         copied, or found extra; put them in another bucket"
                    ),
                ));
            }
        }
        b.batch = Some(BatchCopy {
            role_arn: role.clone(),
            reports_bucket: reports.bucket.clone(),
            reports_prefix: reports.prefix.clone(),
            priority: settings.priority,
            copy_limit: settings.copy_limit,
            chosen_by,
            manifest: if plan.contract.inventory_buckets.contains(&b.logical_id) {
                s3batch::ManifestSource::Inventory
            } else {
                s3batch::ManifestSource::Diff
            },
        });
    }
    Ok(())
}

/// The copy of `source` into `target` (a bucket of the run) by a job: `s3batch::run`, told as
/// the run's events. Returns what it copied, in the local engine's terms.
pub(crate) async fn copy(
    engine: &CloneEngine,
    plan: &ClonePlan,
    (logical_id, source, target): (&str, &str, &str),
    batch: &BatchCopy,
    options: SyncOptions,
    events: &Emitter,
) -> Result<SyncStats, StepError> {
    let step = "bucket.batch";
    let request = batch.request(
        plan.run_id.as_str(),
        logical_id,
        (source, target),
        options,
        engine.settings.batch.poll,
    );
    let mut tell = |e: BatchEvent| {
        let message = match e {
            BatchEvent::NothingForAJob { over_limit } => format!(
                "nothing differs for a job to copy ({over_limit} object(s) over the job's limit)"
            ),
            BatchEvent::ManifestWritten {
                location,
                tasks,
                over_limit,
            } => format!(
                "manifest {location}: {tasks} object(s) for the job, {over_limit} over its limit"
            ),
            BatchEvent::JobCreated {
                job_id,
                client_token,
            } => format!("batch job {job_id} created (client token {client_token})"),
            BatchEvent::JobResumed {
                job_id,
                client_token,
                how,
            } => format!(
                "batch job {job_id} of the interrupted copy found ({how}; client token \
                 {client_token}): following it, no second job"
            ),
            BatchEvent::Progress {
                job_id,
                status,
                total,
                succeeded,
                failed,
            } => format!(
                "batch job {job_id} {status}: {succeeded} succeeded, {failed} failed of {}",
                total.map_or("?".to_string(), |t| t.to_string())
            ),
            BatchEvent::InventoryManifest {
                location, taken_at, ..
            } => format!("manifest: the inventory report {location}, taken at {taken_at}"),
            BatchEvent::CatchUp {
                taken_at,
                copied,
                deleted,
            } => format!(
                "{copied} object(s) written and {deleted} deleted since the inventory was taken \
                 ({taken_at}): copied and removed by envclone"
            ),
            BatchEvent::Recopy { failed, over_limit } => format!(
                "re-copying locally {} failed task(s) and {} object(s) over the job's limit",
                failed.len(),
                over_limit.len()
            ),
        };
        events.info(step, Some(target), message);
    };
    // A job of this run filled the bucket already (the pre-copy before Standby): the delta
    // is the local engine's, told which of the job's copies are its sources' bytes in another
    // part layout. A second job would start minutes of New/Preparing/Ready inside Standby,
    // and copy every multipart object again (their ETags differ from the job's copies').
    if let Some((token, known)) = filled_by_job(engine.cloud.objects.as_ref(), &request)
        .await
        .map_err(refused(step, source, target))?
    {
        events.info(
            step,
            Some(target),
            format!(
                "filled by this run's batch job (client token {token}): what changed since is \
                 copied by envclone, no second job; {} object(s) whose copies hold their bytes \
                 in another part layout (found equal after the job) are left alone while both \
                 sides keep their ETags",
                known.len()
            ),
        );
        let options = SyncOptions {
            same_bytes: Some(std::sync::Arc::new(known)),
            ..request.options.clone()
        };
        return crate::s3sync::sync(
            engine.cloud.objects.clone(),
            &request.source,
            &request.target,
            &options,
        )
        .await
        .map_err(StepError::sync(step));
    }
    let now = engine.cloud.clock.now();
    let outcome = s3batch::run(
        engine.cloud.objects.clone(),
        engine.cloud.jobs.clone(),
        &request,
        now,
        &mut tell,
    )
    .await
    .map_err(refused(step, source, target))?;
    let v = &outcome.verification;
    if !v.is_equal() {
        let first: Vec<String> = v
            .mismatches
            .iter()
            .take(5)
            .map(|m| format!("{:?}: {}", m.key, m.problem))
            .collect();
        return Err(StepError::Verification(format!(
            "bucket {target} after batch job {}: {} difference(s) with {source}, e.g. {}",
            outcome.job_id.as_deref().unwrap_or("(none needed)"),
            v.mismatches.len(),
            first.join("; ")
        )));
    }
    let copied = outcome.job_succeeded + outcome.local.copied;
    Ok(SyncStats {
        listed: v.compared,
        copied,
        copied_bytes: outcome.local.copied_bytes,
        multipart_copies: outcome.local.multipart_copies,
        unchanged: v.compared.saturating_sub(copied),
        deleted: outcome.local.deleted,
        ..SyncStats::default()
    })
}

fn refused<'a>(
    step: &'a str,
    source: &'a str,
    target: &'a str,
) -> impl FnOnce(s3batch::BatchError) -> StepError + 'a {
    move |e| StepError::Refused {
        step: step.into(),
        message: format!("s3://{source} → s3://{target}: {e}"),
    }
}

/// Whether a job of this run (its token's stem) has filled the pair of `request` and been
/// verified: its client token and what the verification found of its copies in other part
/// layouts.
async fn filled_by_job(
    store: &dyn ObjectStore,
    request: &BatchRequest,
) -> Result<Option<(String, SameBytes)>, s3batch::BatchError> {
    let Some(stem) = &request.token_stem else {
        return Ok(None);
    };
    let journal =
        s3batch::read_journal(store, &request.reports.bucket, &request.journal_key()).await?;
    let Some(journal) = journal.filter(|j| {
        j.done
            && j.client_token
                .strip_prefix(stem.as_str())
                .is_some_and(|n| n.starts_with('-'))
    }) else {
        return Ok(None);
    };
    let Some(key) = &journal.same_bytes else {
        return Ok(None);
    };
    let known = s3batch::read_same_bytes(store, request, key).await?;
    Ok(Some((journal.client_token, known)))
}

/// What this run's job found of `b`'s copies in other part layouts, if a job of this run
/// filled `target` (for comparing it without reading them again).
pub(crate) async fn known_copies(
    engine: &CloneEngine,
    plan: &ClonePlan,
    b: &BucketPlan,
    target: &str,
) -> Result<Option<SameBytes>, StepError> {
    let Some(batch) = &b.batch else {
        return Ok(None);
    };
    let request = batch.request(
        plan.run_id.as_str(),
        &b.logical_id,
        (&b.source_bucket, target),
        SyncOptions::default(),
        engine.settings.batch.poll,
    );
    let step = "verify";
    let found = filled_by_job(engine.cloud.objects.as_ref(), &request)
        .await
        .map_err(refused(step, &b.source_bucket, target))?;
    Ok(found.map(|(_, known)| known))
}

/// The job of a journal: its recorded id, else the one ListJobs shows with its token.
async fn job_of(
    jobs: &dyn BatchJobs,
    account: &str,
    journal: &s3batch::Journal,
) -> Result<Option<String>, PortError> {
    if let Some(id) = &journal.job_id {
        return Ok(Some(id.clone()));
    }
    let listed = retry(|| jobs.list_jobs(account)).await?;
    Ok(listed
        .into_iter()
        .find(|j| j.description.split(' ').nth(1) == Some(journal.client_token.as_str()))
        .map(|j| j.id))
}

/// A job of a run that has not ended: what it copies, the account it runs in, its status.
struct RunningJob {
    id: String,
    account: String,
    status: crate::ports::batch::JobStatus,
    source: String,
    target: String,
}

/// The jobs of run `run_id` (clone stack `stack`) that have not ended: each batch bucket's
/// journal (keyed by its source → target pair), its job (recorded id, else ListJobs by the
/// run's token), DescribeJob.
async fn running_jobs(
    engine: &CloneEngine,
    (run_id, stack): (&str, &str),
    buckets: &[BucketPlan],
    step: &str,
) -> Result<Vec<RunningJob>, StepError> {
    let cloud = &engine.cloud;
    let mut running = Vec::new();
    for b in buckets {
        let Some(batch) = &b.batch else { continue };
        let target = match &b.target {
            BucketTarget::Created { name, .. } => Some(name.clone()),
            BucketTarget::StackOwned { .. } => {
                match retry(|| cloud.stacks.resources(stack)).await {
                    Ok(resources) => resources
                        .into_iter()
                        .find(|r| r.logical_id == b.logical_id)
                        .and_then(|r| r.physical_id),
                    Err(PortError::NotFound { .. }) => None,
                    Err(e) => return Err(StepError::port(step)(e)),
                }
            }
        };
        let Some(target) = target else { continue };
        let request = batch.request(
            run_id,
            &b.logical_id,
            (&b.source_bucket, &target),
            SyncOptions::default(),
            engine.settings.batch.poll,
        );
        let refused = |e: s3batch::BatchError| StepError::Refused {
            step: step.into(),
            message: e.to_string(),
        };
        let journal = s3batch::read_journal(
            cloud.objects.as_ref(),
            &batch.reports_bucket,
            &request.journal_key(),
        )
        .await
        .map_err(refused)?;
        let Some(journal) = journal.filter(|j| !j.done) else {
            continue;
        };
        let account = s3batch::account_of_role(&batch.role_arn).map_err(refused)?;
        let Some(id) = job_of(cloud.jobs.as_ref(), &account, &journal)
            .await
            .map_err(StepError::port(step))?
        else {
            continue;
        };
        let info = retry(|| cloud.jobs.describe_job(&account, &id))
            .await
            .map_err(StepError::port(step))?;
        if !info.status.is_terminal() {
            running.push(RunningJob {
                id,
                account,
                status: info.status,
                source: b.source_bucket.clone(),
                target,
            });
        }
    }
    Ok(running)
}

/// A failed or interrupted clone: the jobs of its run still running, for its left-behind list,
/// each saying how to follow or cancel it (a job goes on copying after envclone stopped; it
/// is no change envclone can take back by returning the source to service). A failure to look
/// is told as a warning and named in the list.
pub(crate) async fn left_running(
    engine: &CloneEngine,
    plan: &ClonePlan,
    events: &Emitter,
) -> Vec<ResourceRef> {
    let step = "clone";
    let run_id = plan.run_id.as_str();
    match running_jobs(engine, (run_id, &plan.target_stack), &plan.buckets, step).await {
        Ok(jobs) => jobs
            .into_iter()
            .map(|j| {
                let RunningJob {
                    id,
                    account,
                    status,
                    source,
                    target,
                } = j;
                ResourceRef::new(BATCH_JOB, id.clone()).with_note(format!(
                    "{status}, copying s3://{source} into {target}: it keeps running; follow \
                     it with `envclone s3 job status {id} --account {account}`, cancel it with \
                     `envclone s3 job cancel {id} --account {account}`; `envclone resume \
                     {run_id}` follows it, `envclone abort {run_id}` (with or without --keep) \
                     cancels it"
                ))
            })
            .collect(),
        Err(e) if plan.buckets.iter().any(|b| b.batch.is_some()) => {
            events.warn(step, None, format!("the run's batch jobs: {e}"));
            vec![
                ResourceRef::new(BATCH_JOB, format!("of run {run_id}")).with_note(format!(
                    "whether one still runs could not be read ({e}); `envclone abort {run_id}` \
                 cancels any"
                )),
            ]
        }
        Err(_) => Vec::new(),
    }
}

/// Abort (of a clone, of a migrate never swapped; with or without --keep): cancels
/// (UpdateJobStatus Cancelled) each job of the run still running, and waits until it is
/// Cancelled, so nothing writes into the buckets abort then empties — or, with --keep, into
/// buckets the operator takes as settled. Returns the jobs cancelled.
pub async fn cancel_jobs(
    engine: &CloneEngine,
    run: &RunResources,
    events: &Emitter,
) -> Result<Vec<ResourceRef>, StepError> {
    let step = "abort";
    let cloud = &engine.cloud;
    let mut cancelled = Vec::new();
    let jobs = running_jobs(engine, (&run.run_id, &run.stack), &run.batch_buckets, step).await?;
    for RunningJob {
        id,
        account,
        status,
        source,
        target,
    } in jobs
    {
        events.start(
            step,
            Some(&id),
            format!("cancelling batch job {id} ({status}, copying into {target})"),
        );
        retry(|| cloud.jobs.cancel_job(&account, &id))
            .await
            .map_err(StepError::port(step))?;
        let started = tokio::time::Instant::now();
        loop {
            let info = retry(|| cloud.jobs.describe_job(&account, &id))
                .await
                .map_err(StepError::port(step))?;
            if info.status.is_terminal() {
                events.done(step, Some(&id), format!("batch job {id} {}", info.status));
                cancelled.push(ResourceRef::new(BATCH_JOB, id.clone()).with_note(format!(
                    "{} (it was copying s3://{source} into {target})",
                    info.status
                )));
                break;
            }
            if started.elapsed() > CANCEL_TIMEOUT {
                return Err(StepError::Refused {
                    step: step.into(),
                    message: format!(
                        "batch job {id} (account {account}) is still {} {} min after it was \
                         cancelled; bucket {target} is left as it is: follow it with \
                         `envclone s3 job status {id} --account {account}`, then abort again",
                        info.status,
                        CANCEL_TIMEOUT.as_secs() / 60
                    ),
                });
            }
            tokio::time::sleep(engine.settings.batch.poll).await;
        }
    }
    Ok(cancelled)
}
