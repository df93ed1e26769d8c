//! The kinds of stateful resource envclone copies, one module each, and their registry
//! ([`KINDS`]): see `super::resource` for the trait and what a new kind touches.
//!
//! Behind the trait today: the copy stage (what each kind makes before the clone stack, beside
//! it, and fills after it; the pre-copy), the preflight checks and planned names of a kind,
//! what a run makes (its artifacts, from its plan or from the stack),
//! removing them (abort, destroy, a migrate that never swapped), the work around the deletion
//! of a clone stack (emptying buckets, removing the final snapshots CloudFormation takes),
//! verification, the plan's steps, the parameters envclone gives the clone stack, the
//! inventory's classification of the types each kind covers, and finalize (whether it retains
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
pub use database::{snapshot_kind, wait_snapshot_point_fixed, CLUSTER_SNAPSHOT, SNAPSHOT};
pub use dynamodb_table::{DynamoDbTable, TABLE};
pub use rds_instance::RDS_INSTANCE;
pub use scaling_group::{groups_of, ScalingGroup};

use super::resource::ResourceKind;

/// Every kind, in the order the phases visit them.
pub static KINDS: &[&dyn ResourceKind] = &[
    &RDS_INSTANCE,
    &AURORA_CLUSTER,
    &Bucket,
    &DynamoDbTable,
    &ScalingGroup,
];
