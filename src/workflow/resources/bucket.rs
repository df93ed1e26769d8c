//! An S3 bucket of the contract (`buckets:`): one passed to the stack by parameter is created
//! by the run (and copied into before the stack exists); one the stack owns is copied into once
//! the stack has created it.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::contract::{BucketSpec, Contract, BUCKET as BUCKET_TYPE};
use crate::model::TAG_RUN;
use crate::ports::{PortError, StackInfo};
use crate::retry::retry;

use super::super::clone::CloneEngine;
use super::super::plan::BucketTarget;
use super::super::recovery::PlanRecord;
use super::super::resource::{Doomed, RefKind, Removal, ResourceKind, ResourceRef, RunScope};
use super::super::StepError;

/// A bucket a run created.
pub const BUCKET: RefKind = RefKind::new("bucket");

/// The S3 bucket kind.
pub struct Bucket;

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
            Some(_) => out.left.push(r.with_note(format!(
                "not tagged envclone:run={}; not deleted",
                run.run_id
            ))),
        }
        Ok(())
    }
}
