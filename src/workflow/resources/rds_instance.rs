//! An RDS DB instance of the contract (`databases:`): snapshotted by the run, restored by the
//! clone stack from the snapshot (the parameter `snapshot_parameter`).

use crate::contract::DB_INSTANCE;
use crate::ports::DbKind;

use super::database::{Database, SNAPSHOT};

/// The RDS instance kind.
pub static RDS_INSTANCE: Database = Database {
    kind: DbKind::Instance,
    name: "rds-instance",
    stack_types: &[(DB_INSTANCE, "the database's data")],
    ref_kinds: &[SNAPSHOT],
};
