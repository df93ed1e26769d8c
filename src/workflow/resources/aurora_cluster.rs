//! An Aurora DB cluster of the contract (`databases:` with `cluster: true`): cloned
//! copy-on-write where the template takes it, else snapshotted; its instances are created
//! with it (and so count as copied).

use crate::contract::DB_CLUSTER;
use crate::ports::DbKind;

use super::database::{Database, CLUSTER_SNAPSHOT};

/// The Aurora cluster kind.
pub static AURORA_CLUSTER: Database = Database {
    kind: DbKind::Cluster,
    name: "aurora-cluster",
    stack_types: &[(DB_CLUSTER, "the cluster's data")],
    ref_kinds: &[CLUSTER_SNAPSHOT],
};
