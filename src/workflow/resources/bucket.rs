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
use crate::s3sync::{self, BucketPath, VerifyReport};

use super::super::clone::{CheckResult, CloneEngine};
use super::super::migrate::MigrationState;
use super::super::plan::{BucketPlan, BucketTarget, ClonePlan};
use super::super::recovery::PlanRecord;
use super::super::resource::{
    Checked, CopyRun, Doomed, Outcome, PlanStage, RefKind, Removal, ResourceKind, ResourceRef,
    RunScope,
};
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
            let as_of = if b.versioned {
                run.window.as_of()
            } else {
                None
            };
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
                run.window
                    .done(&crate::workflow::window::unversioned_bucket_item(
                        &b.source_bucket,
                        name,
                    ));
            }
            Ok(Outcome::Bucket(outcome))
        }),
        BucketTarget::StackOwned { .. } => None,
    });
    futures::future::try_join_all(copies).await
}

/// The plan's words for the job that copies `b`, if a job does.
fn batch_note(plan: &ClonePlan, b: &BucketPlan) -> String {
    b.batch.as_ref().map_or(String::new(), |batch| {
        batch.plan_note(plan.run_id.as_str(), &b.logical_id)
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

    /// A bucket whose job reads the source's S3 Inventory report (`manifest: inventory`)
    /// needs one it can read: refused before any change otherwise, naming why.
    async fn preflight(
        &self,
        engine: &CloneEngine,
        _source: &crate::workflow::plan::SourceEnv,
        plan: &ClonePlan,
    ) -> Result<(), PreflightError> {
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

    /// A bucket that keeps versions is copied as of T after the window; one that keeps none
    /// holds it: passed by parameter, until its delta is copied and compared; owned by the
    /// stack, until the stack exists (the whole window).
    fn window_needs(&self, plan: &ClonePlan) -> crate::workflow::window::WindowNeeds {
        let mut out = crate::workflow::window::WindowNeeds::default();
        for b in plan.buckets.iter().filter(|b| !b.versioned) {
            match &b.target {
                BucketTarget::Created { name, .. } => {
                    out.inside
                        .push(crate::workflow::window::unversioned_bucket_item(
                            &b.source_bucket,
                            name,
                        ))
                }
                BucketTarget::StackOwned { .. } if b.batch.is_some() => out.whole.push(format!(
                    "bucket {}: its copy {} is created by the stack and filled by an S3 Batch \
                     Operations job, which copies current versions, not those at T",
                    b.source_bucket, b.logical_id
                )),
                BucketTarget::StackOwned { .. } => out.whole.push(format!(
                    "bucket {} keeps no versions and its copy {} is created by the stack \
                     (enable versioning on it to copy it as of T after the source serves)",
                    b.source_bucket, b.logical_id
                )),
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
                    plan.copy_note(&b.source_bucket),
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
                        plan.copy_note(&b.source_bucket),
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
                let as_of = if b.versioned {
                    run.window.as_of()
                } else {
                    None
                };
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
