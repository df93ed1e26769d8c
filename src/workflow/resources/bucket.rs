//! An S3 bucket of the contract (`buckets:`): one passed to the stack by parameter is created
//! by the run (and copied into before the stack exists); one the stack owns is copied into once
//! the stack has created it.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::contract::{BucketSpec, Contract, Template, BUCKET as BUCKET_TYPE};
use crate::events::Emitter;
use crate::model::TAG_RUN;
use crate::ports::{PortError, StackInfo, StackResource};
use crate::retry::retry;
use crate::s3sync::{self, BucketPath, SyncOptions, VerifyReport};

use super::super::engine::{
    BucketOutcome, CheckResult, Checkpoint, CloneEngine, Created, Progress,
};
use super::super::plan::{BucketPlan, BucketTarget, ClonePlan};
use super::super::record::{MigrationState, PlanRecord};
use super::super::resource::{
    Checked, CopyRun, Doomed, Outcome, PlanStage, RefKind, Removal, ResourceKind, ResourceRef,
    RunScope,
};
use super::super::window::{WholeWindow, WindowItem, WindowNeeds};
use super::super::{PreflightError, StepError};

/// A bucket a run created.
pub const BUCKET: RefKind = RefKind::new("bucket");

/// The S3 bucket kind.
pub struct Bucket;

/// Copies each bucket passed by parameter (created by `prepare`) from its source.
async fn copy_parameter_buckets(
    run: &CopyRun<'_>,
    precopy: bool,
) -> Result<Vec<Outcome>, StepError> {
    let CopyRun {
        engine,
        plan,
        events,
        ..
    } = *run;
    let copies = plan.buckets.iter().filter_map(|b| match &b.target {
        BucketTarget::Created { name, .. } => Some(async move {
            if precopy {
                events.info(
                    "bucket.precopy",
                    Some(name),
                    format!("bulk copy of s3://{} before Standby", b.source_bucket),
                );
            }
            // A versioned source is copied as of T (it does not hold the window); one that
            // keeps no versions is copied now, inside the window, and compared before the
            // window closes (the source writes again after).
            let as_of = as_of_still_versioned(run, b).await?;
            let outcome = engine
                .copy_bucket(plan, &b.logical_id, &b.source_bucket, name, events, as_of)
                .await?;
            if !precopy && !b.versioned && run.window.closes_early() {
                // A bucket a job filled: its copies in other part layouts, found equal after
                // the job, are not read again inside the window while they stay as they were.
                let known = super::super::batchcopy::known_copies(engine, plan, b, name).await?;
                let (check, report) = compare(
                    engine,
                    (&b.source_bucket, name),
                    plan.skip_archived,
                    None,
                    known,
                )
                .await?;
                run.window
                    .record_verified((b.source_bucket.clone(), name.clone()), check, report);
                run.window.done(&WindowItem::UnversionedBucket {
                    source: b.source_bucket.clone(),
                    target: name.clone(),
                });
            }
            Ok(Outcome::Bucket(outcome))
        }),
        BucketTarget::StackOwned { .. } => None,
    });
    futures::future::try_join_all(copies).await
}

/// The moment bucket `b` is copied as of: T for a source that kept versions at preflight,
/// once it is seen to keep them still (GetBucketVersioning `Enabled`, read again right before
/// the copy); None for one that keeps none (copied as it is, inside the window).
///
/// A bucket whose versioning was suspended since preflight is refused, not copied as of now:
/// the window may have closed on the promise that its versions ≤ T would be read, and while
/// versioning is suspended each write replaces the key's `null` version (S3 User Guide,
/// "Working with objects in a versioning-suspended bucket"), so what it held at T may be gone.
async fn as_of_still_versioned(
    run: &CopyRun<'_>,
    b: &BucketPlan,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, StepError> {
    let Some(t) = run.window.as_of().filter(|_| b.versioned) else {
        return Ok(None);
    };
    let step = "bucket.copy";
    let objects = &run.engine.cloud.objects;
    let status = retry(|| objects.versioning(&b.source_bucket))
        .await
        .map_err(StepError::port(step))?;
    if status.as_deref() == Some("Enabled") {
        return Ok(Some(t));
    }
    Err(StepError::Refused {
        step: step.into(),
        message: format!(
            "bucket {} cannot be copied as of T ({}): preflight found its versioning \
             Enabled, and the run copies it from its versions at or before T after the source \
             serves again, but it is now {} (GetBucketVersioning), so a write since may have \
             replaced what it held at T; nothing of it was copied. Abort the run (`envclone \
             abort {}`), then either enable versioning again (aws s3api put-bucket-versioning \
             --bucket {} --versioning-configuration Status=Enabled) or leave it so — the next \
             clone then copies it inside the window — and clone again",
            b.source_bucket,
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            status.map_or("never enabled".to_string(), |s| format!("versioning {s}")),
            run.plan.run_id,
            b.source_bucket,
        ),
    })
}

/// The plan's words for the job that copies `b`, if a job does: of a source that keeps
/// versions, a manifest of the versions at T.
fn batch_note(plan: &ClonePlan, b: &BucketPlan) -> String {
    b.batch.as_ref().map_or(String::new(), |batch| {
        let note = batch.plan_note(plan.run_id.as_str(), &b.logical_id);
        if b.versioned {
            format!(
                "{note}; the manifest names each object's version at T (Bucket,Key,VersionId), \
                 so the job copies the bucket as of T while the source serves again"
            )
        } else {
            note
        }
    })
}

/// Compares bucket `target` with `source` (as of `as_of`, when given; `known`: copies found
/// equal before, see [`s3sync::SameBytes`]): the check and its report.
async fn compare(
    engine: &CloneEngine,
    (source, target): (&str, &str),
    skip_archived: bool,
    as_of: Option<chrono::DateTime<chrono::Utc>>,
    known: Option<s3sync::SameBytes>,
) -> Result<(CheckResult, VerifyReport), StepError> {
    let with = s3sync::KnownCopies {
        known: known.map(std::sync::Arc::new),
        record: false,
    };
    let (report, _) = s3sync::verify_known(
        engine.cloud.objects.clone(),
        &BucketPath::bucket(source),
        &BucketPath::bucket(target),
        (engine.settings.verify_concurrency, skip_archived),
        as_of,
        &with,
    )
    .await
    .map_err(StepError::sync("verify"))?;
    let skipped = if report.skipped_archived > 0 {
        format!(
            "; {} archived object(s) not compared (left out by --skip-archived)",
            report.skipped_archived
        )
    } else {
        String::new()
    };
    let as_of_note = as_of.map_or_else(String::new, |t| {
        format!(
            "; source as of {} (later writes to it are not differences)",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    });
    let detail = if report.is_equal() {
        format!(
            "{} object(s) equal (key, size, ETag, content type, metadata, tags){}{skipped}{as_of_note}",
            report.compared,
            if report.compared_by_content > 0 {
                format!(
                    "; {} compared by content (different part layouts)",
                    report.compared_by_content
                )
            } else {
                String::new()
            },
        ) + &if report.compared_by_record > 0 {
            format!(
                "; {} copied by the batch job in another part layout, found equal after it and \
                 unchanged since (headers and tags compared)",
                report.compared_by_record
            )
        } else {
            String::new()
        }
    } else {
        let first: Vec<String> = report
            .mismatches
            .iter()
            .take(5)
            .map(|m| format!("{:?}: {}", m.key, m.problem))
            .collect();
        format!(
            "{} difference(s), e.g. {}{skipped}{as_of_note}",
            report.mismatches.len(),
            first.join("; ")
        )
    };
    Ok((
        CheckResult {
            check: format!("bucket {target} = {source}"),
            ok: report.is_equal(),
            detail,
        },
        report,
    ))
}

/// Deletes every object version and delete marker of a bucket (see
/// [`crate::s3sync::empty_bucket`]).
async fn empty(engine: &CloneEngine, bucket: &str) -> Result<(), StepError> {
    crate::s3sync::empty_bucket(engine.cloud.objects.as_ref(), bucket)
        .await
        .map(|_| ())
        .map_err(StepError::port("abort"))
}

#[async_trait]
impl ResourceKind for Bucket {
    fn name(&self) -> &'static str {
        "bucket"
    }
    fn stack_types(&self) -> &'static [(&'static str, &'static str)] {
        &[(BUCKET_TYPE, "the bucket's objects")]
    }
    fn ref_kinds(&self) -> &'static [RefKind] {
        static REFS: [RefKind; 1] = [BUCKET];
        &REFS
    }

    fn finalize_handles(&self) -> bool {
        true
    }

    /// Each source bucket exists and each bucket the run would create (or the stack would
    /// name, when its name is known) is free; records which sources keep versions and their
    /// archived objects (refused unless `--skip-archived`); a bucket whose job reads the
    /// source's S3 Inventory report (`manifest: inventory`) needs one it can read. Each
    /// refused before any change, naming why.
    async fn preflight(
        &self,
        engine: &CloneEngine,
        _source: &crate::workflow::plan::SourceEnv,
        plan: &mut ClonePlan,
    ) -> Result<(), PreflightError> {
        let objects = engine.cloud.objects.as_ref();
        for b in &plan.buckets {
            if retry(|| objects.bucket_tags(&b.source_bucket))
                .await?
                .is_none()
            {
                return Err(PreflightError::SourceMissing {
                    what: format!("bucket {}", b.source_bucket),
                });
            }
            let target_name = match &b.target {
                BucketTarget::Created { name, .. } => Some(name),
                BucketTarget::StackOwned { predicted_name } => predicted_name.as_ref(),
            };
            if let Some(name) = target_name {
                if retry(|| objects.bucket_tags(name)).await?.is_some() {
                    return Err(PreflightError::TargetExists {
                        what: format!("bucket {name}"),
                    });
                }
            }
        }
        // A source that keeps versions (GetBucketVersioning `Enabled`) is copied as of T after
        // the window, whatever the engine (a batch job's manifest then names each object's
        // version at T); one that keeps none (or only Suspended: an overwrite then replaces
        // the null version, losing its state at T) is copied inside the window.
        for b in &mut plan.buckets {
            let status = retry(|| objects.versioning(&b.source_bucket)).await?;
            b.versioned = status.as_deref() == Some("Enabled");
        }
        // Archived objects cannot be copied without a restore: found now, before any change,
        // rather than as an InvalidObjectState in the middle of Standby.
        for b in &plan.buckets {
            let found = s3sync::find_archived(objects, &b.source_bucket).await?;
            if found.count > 0 {
                plan.archived.push(found);
            }
        }
        if !plan.archived.is_empty() && !plan.skip_archived {
            return Err(PreflightError::ArchivedObjects {
                found: std::mem::take(&mut plan.archived),
            });
        }
        for b in &plan.buckets {
            let inventory = b
                .batch
                .as_ref()
                .is_some_and(|c| c.manifest == crate::s3batch::ManifestSource::Inventory);
            if !inventory {
                continue;
            }
            let source = BucketPath::bucket(&b.source_bucket);
            if let Err(e) =
                crate::s3batch::inventory::latest(engine.cloud.objects.as_ref(), &source).await
            {
                return Err(PreflightError::Unsupported {
                    what: format!(
                        "bucket {} has manifest: inventory in its contract entry, but {e}; \
                         nothing was changed",
                        b.logical_id
                    ),
                });
            }
        }
        Ok(())
    }

    fn copied_ids(&self, _template: &Template, contract: &Contract) -> Vec<String> {
        contract
            .buckets
            .iter()
            .map(|b| b.logical_id().to_string())
            .collect()
    }

    /// The parameter of each bucket passed by parameter (its name).
    fn given_parameters(&self, contract: &Contract) -> Vec<String> {
        contract
            .buckets
            .iter()
            .filter_map(|b| match b {
                BucketSpec::ByParameter { parameter, .. } => Some(parameter.clone()),
                BucketSpec::StackOwned { .. } => None,
            })
            .collect()
    }

    /// Each bucket pair (source, the copy the run made), the buckets the run created, and
    /// per pair the source's objects whose verified copy is in the new environment's bucket
    /// (see `s3sync::changed_since` for how finalize uses it).
    async fn record_clone(
        &self,
        engine: &CloneEngine,
        plan: &ClonePlan,
        outcomes: &[Outcome],
        state: &mut MigrationState,
        events: &Emitter,
    ) -> Result<(), StepError> {
        let copied: Vec<&BucketOutcome> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Bucket(b) => Some(b),
                _ => None,
            })
            .collect();
        state.buckets = copied
            .iter()
            .map(|b| (b.source.clone(), b.target.clone()))
            .collect();
        state.created.extend(
            copied
                .iter()
                .map(|b| ResourceRef::new(BUCKET, b.target.clone())),
        );
        let step = "verify";
        let mut records = Vec::new();
        for (source, target) in &state.buckets {
            let record = s3sync::record_copied(
                engine.cloud.objects.clone(),
                &BucketPath::bucket(source),
                &BucketPath::bucket(target),
                plan.skip_archived,
            )
            .await
            .map_err(StepError::sync(step))?;
            events.info(
                step,
                Some(target),
                format!(
                    "recorded the {} verified object(s) of {source} copied here (finalize checks \
                     the old bucket against this record)",
                    record.objects
                ),
            );
            records.push(record);
        }
        state.bucket_records = records;
        Ok(())
    }

    /// A bucket that keeps versions is copied as of T after the window, by the local engine
    /// or by a batch job (whose manifest then names each object's version at T); one that
    /// keeps none holds it: passed by parameter, until its delta is copied and compared;
    /// owned by the stack, until the stack exists (the whole window).
    fn window_needs(&self, plan: &ClonePlan) -> WindowNeeds {
        let mut out = WindowNeeds::default();
        for b in plan.buckets.iter().filter(|b| !b.versioned) {
            match &b.target {
                BucketTarget::Created { name, .. } => {
                    out.inside.push(WindowItem::UnversionedBucket {
                        source: b.source_bucket.clone(),
                        target: name.clone(),
                    })
                }
                BucketTarget::StackOwned { .. } => {
                    out.whole.push(WholeWindow::UnversionedStackBucket {
                        source: b.source_bucket.clone(),
                        logical_id: b.logical_id.clone(),
                    })
                }
            }
        }
        out
    }

    /// Creating each bucket passed by parameter, copying into it with the snapshots, and
    /// copying into each bucket the stack owns once the stack has made it.
    fn plan_steps(&self, plan: &ClonePlan, stage: PlanStage) -> Vec<String> {
        let run = &plan.run_id;
        plan.buckets
            .iter()
            .filter_map(|b| match (&b.target, stage) {
                (BucketTarget::Created { name, .. }, PlanStage::Prepare) => {
                    Some(format!("create bucket {name} (tagged envclone:run={run})"))
                }
                (BucketTarget::Created { name, .. }, PlanStage::Copy) => Some(format!(
                    "copy the objects of bucket {} into {name} (server-side{}{})",
                    b.source_bucket,
                    plan.copy_note(b),
                    batch_note(plan, b)
                )),
                (BucketTarget::StackOwned { predicted_name }, PlanStage::AfterStack) => {
                    Some(format!(
                        "as soon as the stack has created {} ({}), copy the objects of bucket {} \
                         into it (server-side{}{})",
                        b.logical_id,
                        predicted_name
                            .as_deref()
                            .unwrap_or("name chosen by CloudFormation"),
                        b.source_bucket,
                        plan.copy_note(b),
                        batch_note(plan, b)
                    ))
                }
                _ => None,
            })
            .collect()
    }

    /// Creates the buckets passed by parameter.
    async fn prepare(&self, run: &CopyRun<'_>) -> Result<(), StepError> {
        run.engine
            .create_parameter_buckets(run.plan, run.events, run.created, run.checkpoint)
            .await
    }

    /// The bulk copy of the buckets passed by parameter (none: nothing is done, not even
    /// `prepare`).
    async fn precopy(&self, run: &CopyRun<'_>) -> Result<Vec<Outcome>, StepError> {
        let by_parameter = run
            .plan
            .buckets
            .iter()
            .any(|b| matches!(b.target, BucketTarget::Created { .. }));
        if !by_parameter {
            return Ok(Vec::new());
        }
        self.prepare(run).await?;
        copy_parameter_buckets(run, true).await
    }

    /// The copies into the buckets passed by parameter: the stack does not wait for them.
    async fn alongside_stack(&self, run: &CopyRun<'_>) -> Result<Vec<Outcome>, StepError> {
        copy_parameter_buckets(run, false).await
    }

    /// Each bucket the stack owns, copied into as soon as the stack has created it.
    async fn after_stack(&self, run: &CopyRun<'_>) -> Result<Vec<Outcome>, StepError> {
        let CopyRun {
            engine,
            plan,
            events,
            ..
        } = *run;
        let fills = plan.buckets.iter().filter_map(|b| match &b.target {
            BucketTarget::StackOwned { .. } => Some(async {
                let name = engine.wait_for_stack_bucket(plan, &b.logical_id).await?;
                let as_of = as_of_still_versioned(run, b).await?;
                engine
                    .copy_bucket(plan, &b.logical_id, &b.source_bucket, &name, events, as_of)
                    .await
                    .map(Outcome::Bucket)
            }),
            BucketTarget::Created { .. } => None,
        });
        futures::future::try_join_all(fills).await
    }

    /// The buckets the run creates itself (those passed to the stack by parameter).
    fn artifacts(&self, plan: &PlanRecord) -> Vec<ResourceRef> {
        plan.buckets
            .iter()
            .filter_map(|b| match &b.target {
                BucketTarget::Created { name, .. } => Some(ResourceRef::new(BUCKET, name.clone())),
                BucketTarget::StackOwned { .. } => None,
            })
            .collect()
    }

    fn artifacts_of_stack(&self, contract: &Contract, stack: &StackInfo) -> Vec<ResourceRef> {
        contract
            .buckets
            .iter()
            .filter_map(|b| match b {
                BucketSpec::ByParameter { parameter, .. } => stack.parameters.get(parameter),
                BucketSpec::StackOwned { .. } => None,
            })
            .filter(|b| !b.is_empty())
            .map(|b| ResourceRef::new(BUCKET, b.clone()))
            .collect()
    }

    /// Empties the stack's buckets: CloudFormation does not delete a bucket that holds objects.
    /// A bucket CloudFormation keeps (DeletionPolicy Retain) keeps its objects too.
    async fn before_stack_delete(
        &self,
        engine: &CloneEngine,
        doomed: &[Doomed<'_>],
    ) -> Result<Vec<ResourceRef>, StepError> {
        for d in doomed.iter().filter(|d| !d.kept) {
            if let Some(bucket) = &d.resource.physical_id {
                empty(engine, bucket).await?;
            }
        }
        Ok(Vec::new())
    }

    async fn remove(
        &self,
        engine: &CloneEngine,
        what: &ResourceRef,
        run: RunScope<'_>,
        out: &mut Removal,
    ) -> Result<(), StepError> {
        let name = what.id.as_str();
        let tags = retry(|| engine.cloud.objects.bucket_tags(name))
            .await
            .map_err(StepError::port("abort"))?;
        let ours = |tags: &BTreeMap<String, String>| {
            tags.get(TAG_RUN).map(String::as_str) == Some(run.run_id)
        };
        // Untagged and recorded as being created by this run: the run died between
        // CreateBucket and PutBucketTagging.
        let half_made = |tags: &BTreeMap<String, String>| {
            tags.is_empty() && run.creating.iter().any(|b| b == name)
        };
        let r = ResourceRef::new(BUCKET, name);
        match tags {
            None => {}
            Some(tags) if ours(&tags) || half_made(&tags) => {
                empty(engine, name).await?;
                match retry(|| engine.cloud.objects.delete_bucket(name)).await {
                    Ok(()) | Err(PortError::NotFound { .. }) => out.removed.push(r),
                    Err(e) => out.left.push(r.with_note(e.to_string())),
                }
            }
            Some(_) => out.left.push(run.not_ours(r)),
        }
        Ok(())
    }

    async fn verify(
        &self,
        engine: &CloneEngine,
        env: &Checked<'_>,
        checks: &mut Vec<CheckResult>,
        reports: &mut Vec<VerifyReport>,
    ) -> Result<(), StepError> {
        for (source, target) in env.bucket_pairs {
            let as_of = env
                .bucket_as_of
                .iter()
                .find(|(t, _)| t == target)
                .map(|(_, at)| *at);
            let (check, report) =
                compare(engine, (source, target), env.skip_archived, as_of, None).await?;
            checks.push(check);
            reports.push(report);
        }
        Ok(())
    }

    /// Every object of the old environment's buckets must have its copy in the new
    /// environment — judged against what the clone's verification recorded, not against the
    /// new buckets as they are now. After the swap the new environment serves and writes: an
    /// object it has since overwritten or deleted was copied (verified at clone time) and its
    /// change is the application's, not a lost copy. What blocks finalize is an object of the
    /// OLD bucket whose copy never happened: written (or rewritten) there after the
    /// verification — e.g. by a background job on an instance in Standby — and not in the new
    /// bucket with the same size and ETag.
    async fn finalize_check(
        &self,
        engine: &CloneEngine,
        state: &MigrationState,
        events: &Emitter,
    ) -> Result<(), StepError> {
        let step = "finalize";
        // Archived objects that `--skip-archived` left out of the copies are not expected in the
        // new buckets; they stay in the old ones (finalize never empties a bucket: a non-empty
        // one of the old stack is kept).
        let skip_archived = state.plan.as_ref().is_some_and(|p| p.skip_archived);
        for (i, (source, target)) in state.buckets.iter().enumerate() {
            let (src, dst) = (BucketPath::bucket(source), BucketPath::bucket(target));
            let missing = match state.bucket_records.get(i) {
                Some(record) => s3sync::changed_since(
                    engine.cloud.objects.clone(),
                    &src,
                    &dst,
                    record,
                    skip_archived,
                )
                .await
                .map_err(StepError::sync(step))?,
                None => {
                    // A run recorded by an envclone without the record: the new bucket must
                    // hold every object of the old one (its own changes show as differences).
                    let report = s3sync::verify_with(
                        engine.cloud.objects.clone(),
                        &src,
                        &dst,
                        engine.settings.verify_concurrency,
                        skip_archived,
                    )
                    .await
                    .map_err(StepError::sync(step))?;
                    report
                        .mismatches
                        .into_iter()
                        .filter(|m| !m.problem.starts_with("in the target but not in the source"))
                        .collect()
                }
            };
            if let Some(first) = missing.first() {
                return Err(StepError::Refused {
                    step: step.into(),
                    message: format!(
                        "{target} lacks {} object(s) of the old environment's {source} that \
                         were never copied (e.g. {:?}: {}); copy them into {target} (e.g. \
                         `aws s3 cp s3://{source}/KEY s3://{target}/KEY` for each, or \
                         `envclone s3 sync` of their prefix) and run `envclone finalize {}` \
                         again; nothing was deleted",
                        missing.len(),
                        first.key,
                        first.problem,
                        state.run_id
                    ),
                });
            }
            events.done(
                step,
                Some(target),
                format!("holds every object of {source} that the old environment wrote"),
            );
        }
        Ok(())
    }

    /// S3 refuses to delete a bucket that holds objects (DeleteBucket: BucketNotEmpty), and
    /// finalize never empties one: the old environment's bucket is retained and kept.
    fn finalize_delete_failed(&self, r: &StackResource) -> Option<Option<String>> {
        Some(r.physical_id.as_ref().map(|b| {
            format!(
                "bucket {b} (the old environment's {}; delete it when no longer needed)",
                r.logical_id
            )
        }))
    }
}

/// The engine's work for the buckets: creating those passed by parameter, copying one.
impl CloneEngine {
    /// Creates (or, on a re-run, finds as this run's) the buckets passed by parameter.
    pub(crate) async fn create_parameter_buckets(
        &self,
        plan: &ClonePlan,
        events: &Emitter,
        created: &Created,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), StepError> {
        for b in &plan.buckets {
            if let BucketTarget::Created { name, .. } = &b.target {
                // Created and configured by this process already (migrate and clone call this
                // again after the pre-copy): not again. In us-east-1 S3 answers a CreateBucket
                // of a bucket one owns with 200 (S3 API Reference, CreateBucket,
                // BucketAlreadyOwnedByYou), and the tags put after it would replace the ones
                // merged from the source. A resumed run (another process) creates and
                // configures again, which ends the same.
                if created.contains(&ResourceRef::new(BUCKET, name.clone())) {
                    continue;
                }
                let step = "bucket.create";
                events.start(step, Some(name), format!("creating bucket {name}"));
                self.create_run_bucket(plan, name, &plan.tags, step, created, checkpoint)
                    .await?;
                events.done(step, Some(name), "created");
                self.copy_bucket_configuration(&b.source_bucket, name, events)
                    .await?;
            }
        }

        Ok(())
    }

    /// Creates bucket `name` for the run, recorded (checkpoint) before the call so abort removes
    /// it even if the run dies before it is tagged. An existing bucket is reused only if it
    /// carries the run's tag (a re-run of this step).
    pub(crate) async fn create_run_bucket(
        &self,
        plan: &ClonePlan,
        name: &str,
        tags: &BTreeMap<String, String>,
        step: &str,
        created: &Created,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), StepError> {
        let objects = &self.cloud.objects;
        checkpoint(Progress::CreatingBucket(name)).map_err(|message| StepError::Refused {
            step: step.into(),
            message: format!("{message}; stopping before creating bucket {name}"),
        })?;
        match retry(|| objects.create_bucket(name, tags)).await {
            Ok(()) => {}
            Err(PortError::AlreadyExists { .. }) => {
                let found = retry(|| objects.bucket_tags(name))
                    .await
                    .map_err(StepError::port(step))?
                    .unwrap_or_default();
                if found.get(TAG_RUN) != Some(&plan.run_id.to_string()) {
                    return Err(StepError::Refused {
                        step: step.into(),
                        message: format!(
                            "bucket {name} exists and was not created by run {}; delete it if \
                             it is a leftover of yours, or choose another name",
                            plan.run_id
                        ),
                    });
                }
            }
            Err(e) => return Err(StepError::port(step)(e)),
        }
        created.add(ResourceRef::new(BUCKET, name));
        Ok(())
    }

    /// Gives a bucket envclone created its source's configuration (issue 11, item 9); says
    /// what was carried and warns of each thing that was not, with what to do.
    async fn copy_bucket_configuration(
        &self,
        source: &str,
        target: &str,
        events: &Emitter,
    ) -> Result<(), StepError> {
        let step = "bucket.configuration";
        events.start(
            step,
            Some(target),
            format!("copying the configuration of bucket {source}"),
        );
        let report = retry(|| self.cloud.objects.copy_bucket_configuration(source, target))
            .await
            .map_err(StepError::port(step))?;
        for what in &report.not_carried {
            events.warn(
                step,
                Some(target),
                format!("not carried from bucket {source} to bucket {target}: {what}"),
            );
        }
        events.done(
            step,
            Some(target),
            if report.carried.is_empty() {
                format!("bucket {source} has no configuration to carry")
            } else {
                format!("carried from {source}: {}", report.carried.join(", "))
            },
        );
        Ok(())
    }

    pub(crate) async fn copy_bucket(
        &self,
        plan: &ClonePlan,
        logical_id: &str,
        source: &str,
        target: &str,
        events: &Emitter,
        as_of: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<BucketOutcome, StepError> {
        let step = "bucket.copy";
        events.start(
            step,
            Some(target),
            match as_of {
                None => format!("copying s3://{source} into s3://{target}"),
                Some(t) => format!(
                    "copying s3://{source} as of {} (its versions at or before T) into s3://{target}",
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            },
        );
        // Every target is a bucket this run made (passed in, or the clone stack's own): it
        // mirrors its source, so an object deleted from the source since the pre-copy is
        // deleted from it too (else verification would find it "in the target only").
        let options = SyncOptions {
            delete: true,
            skip_archived: plan.skip_archived || self.settings.sync.skip_archived,
            as_of,
            ..self.settings.sync.clone()
        };
        let batch = plan.buckets.iter().find(|b| b.logical_id == logical_id);
        let stats = if let Some(batch) = batch.and_then(|b| b.batch.as_ref()) {
            let pair = (logical_id, source, target);
            super::super::batchcopy::copy(self, plan, pair, batch, options, events).await?
        } else {
            s3sync::sync(
                self.cloud.objects.clone(),
                &BucketPath::bucket(source),
                &BucketPath::bucket(target),
                &options,
            )
            .await
            .map_err(StepError::sync(step))?
        };
        events.done(
            step,
            Some(target),
            format!(
                "{} object(s) listed, {} copied ({} bytes, {} in parts), {} already there{}",
                stats.listed,
                stats.copied,
                stats.copied_bytes,
                stats.multipart_copies,
                stats.unchanged,
                if stats.skipped_archived > 0 {
                    format!(
                        ", {} archived ({} bytes) left out (--skip-archived)",
                        stats.skipped_archived, stats.skipped_archived_bytes
                    )
                } else {
                    String::new()
                }
            ),
        );
        Ok(BucketOutcome {
            logical_id: logical_id.to_string(),
            source: source.to_string(),
            target: target.to_string(),
            stats,
            precopy: None,
            as_of,
        })
    }

    pub(crate) async fn wait_for_stack_bucket(
        &self,
        plan: &ClonePlan,
        logical_id: &str,
    ) -> Result<String, StepError> {
        self.wait_for_stack_resource(plan, logical_id, (BUCKET_TYPE, "bucket"), "bucket.copy")
            .await
    }
}
