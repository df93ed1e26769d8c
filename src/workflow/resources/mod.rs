//! The kinds of stateful resource envclone copies, one module each, and their registry
//! ([`KINDS`]): see `super::resource` for the trait and what a new kind touches.
//!
//! Behind the trait today: the copy stage (what each kind makes before the clone stack, beside
//! it, and fills after it; the pre-copy), the preflight checks and planned names of a kind,
//! what a run makes (its artifacts, from its plan or from the stack),
//! removing them (abort, destroy, a migrate that never swapped), the work around the deletion
//! of a clone stack (emptying buckets, removing the final snapshots CloudFormation takes),
//! verification, the plan's steps, the parameters envclone gives the clone stack, the
//! inventory's classification of the types each kind covers, migrate's swap (planned at
//! preflight, its time before a deadline, its guardrail, the moves forward and back, the
//! checks after it, what abort tells once swapped back), and finalize (whether it retains
//! them, or what each kind does with the old environment's resources).

mod aurora_cluster;
mod bucket;
mod database;
mod dynamodb_table;
mod point_in_time;
mod rds_instance;
mod scaling_group;

pub use aurora_cluster::AURORA_CLUSTER;
pub use bucket::{Bucket, BUCKET};
pub use database::{
    snapshot_kind, wait_snapshot_point_fixed, CLUSTER_SNAPSHOT, RENAMED_ATTRIBUTES, SNAPSHOT,
};
pub use dynamodb_table::{DynamoDbTable, TABLE};
pub use rds_instance::RDS_INSTANCE;
pub use scaling_group::{groups_of, ScalingGroup};

use super::refs::{RefKind, BATCH_JOB, STACK, STAGED_TEMPLATE};
use super::resource::ResourceKind;

/// Every kind, in the order the phases visit them.
pub static KINDS: &[&dyn ResourceKind] = &[
    &RDS_INSTANCE,
    &AURORA_CLUSTER,
    &Bucket,
    &DynamoDbTable,
    &ScalingGroup,
];

/// Every noun a reference may start with: the engine's own and those of every kind.
pub fn known_ref_kinds() -> Vec<RefKind> {
    [STACK, STAGED_TEMPLATE, BATCH_JOB]
        .into_iter()
        .chain(KINDS.iter().flat_map(|k| k.ref_kinds().iter().cloned()))
        .collect()
}

/// The kind that makes references of `kind`, if any does.
pub fn maker_of(kind: &RefKind) -> Option<&'static dyn ResourceKind> {
    KINDS.iter().copied().find(|k| k.ref_kinds().contains(kind))
}

/// The kind covering a CloudFormation resource type, if any does.
pub fn of_type(resource_type: &str) -> Option<&'static dyn ResourceKind> {
    KINDS
        .iter()
        .copied()
        .find(|k| k.stack_types().iter().any(|(t, _)| *t == resource_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::refs::ResourceRef;

    #[test]
    fn every_ref_kind_has_one_maker() {
        let kinds = known_ref_kinds();
        for k in &kinds {
            assert_eq!(kinds.iter().filter(|o| *o == k).count(), 1, "{k:?}");
        }
        for kind in KINDS {
            for r in kind.ref_kinds() {
                assert_eq!(maker_of(r).map(|m| m.name()), Some(kind.name()));
            }
            for (t, _) in kind.stack_types() {
                assert_eq!(of_type(t).map(|m| m.name()), Some(kind.name()), "{t}");
            }
        }
        assert!(maker_of(&STACK).is_none());
    }

    /// Every kind's nouns read back from the text form without the registry (`ResourceRef::parse`
    /// is below the kinds): a noun with a "::" or an identifier with a space would not.
    #[test]
    fn every_kinds_references_read_back_without_the_registry() {
        for kind in KINDS {
            for noun in kind.ref_kinds() {
                for text in [
                    format!("{} envclone-20261121231500-00af-x", noun.as_str()),
                    format!("{} envclone-x (not tagged; not deleted)", noun.as_str()),
                ] {
                    let r = ResourceRef::parse(&text);
                    assert_eq!(&r.kind, noun, "{text}");
                    assert_eq!(maker_of(&r.kind).map(|m| m.name()), Some(kind.name()));
                    assert_eq!(r.to_string(), text);
                }
            }
        }
    }
}
