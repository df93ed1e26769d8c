//! The statuses AWS reports as text, as closed enums: each parsed once in its adapter
//! (`from_aws`), produced as such by the fake, matched by the workflow. A value AWS adds after
//! this list is kept as `Other(text)`, which no check treats as ready. `Display` (and
//! `as_str`) give AWS's own spelling, so events and messages print what AWS showed.

/// Declares a status enum over AWS's spellings, with `from_aws`, `as_str`, `Display`,
/// `DOCUMENTED` (every spelling listed) and comparison with AWS's text.
macro_rules! aws_status {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this list does not name (AWS added it later): reported as AWS spelled
            /// it, never taken for a ready state.
            Other(String),
        }

        impl $name {
            /// Every value the documentation lists, as AWS spells it.
            pub const DOCUMENTED: &'static [&'static str] = &[$($text),+];

            pub fn from_aws(s: &str) -> Self {
                match s {
                    $($text => $name::$variant,)+
                    other => $name::Other(other.to_string()),
                }
            }

            /// AWS's spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(s) => s,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name::from_aws(s)
            }
        }

        /// Compares with AWS's spelling (`status == "available"` in tests and messages).
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }
    };
}

aws_status! {
    /// The status of a DB instance (DescribeDBInstances `DBInstanceStatus`) or of an Aurora DB
    /// cluster (DescribeDBClusters `Status`): one enum for both, as the workflow treats them
    /// alike. The values are the tables of the Amazon RDS User Guide, "Viewing Amazon RDS DB
    /// instance status", and of the Aurora User Guide, "Viewing DB cluster status" (DB cluster
    /// status; the instance table there adds `backtracking` and
    /// `inaccessible-encryption-credentials-recoverable`).
    pub enum DbStatus {
        Available = "available",
        BackingUp = "backing-up",
        /// Aurora MySQL only.
        Backtracking = "backtracking",
        /// A cluster: cloning it failed.
        CloningFailed = "cloning-failed",
        ConfiguringEnhancedMonitoring = "configuring-enhanced-monitoring",
        ConfiguringIamDatabaseAuth = "configuring-iam-database-auth",
        ConfiguringLogExports = "configuring-log-exports",
        ConvertingToVpc = "converting-to-vpc",
        Creating = "creating",
        Deleting = "deleting",
        /// RDS cannot recover it: a point-in-time restore is the way back.
        Failed = "failed",
        /// A cluster: failing over to an Aurora Replica.
        FailingOver = "failing-over",
        InaccessibleEncryptionCredentials = "inaccessible-encryption-credentials",
        InaccessibleEncryptionCredentialsRecoverable =
            "inaccessible-encryption-credentials-recoverable",
        IncompatibleNetwork = "incompatible-network",
        IncompatibleOptionGroup = "incompatible-option-group",
        IncompatibleParameters = "incompatible-parameters",
        IncompatibleRestore = "incompatible-restore",
        InsufficientCapacity = "insufficient-capacity",
        Maintenance = "maintenance",
        /// A cluster: a DB cluster snapshot is being restored to it.
        Migrating = "migrating",
        MigrationFailed = "migration-failed",
        Modifying = "modifying",
        MovingToVpc = "moving-to-vpc",
        /// A cluster: a read replica being promoted.
        Promoting = "promoting",
        Rebooting = "rebooting",
        /// A rename (ModifyDBInstance / ModifyDBCluster with a new identifier) in progress.
        Renaming = "renaming",
        ResettingMasterCredentials = "resetting-master-credentials",
        RestoreError = "restore-error",
        Starting = "starting",
        Stopped = "stopped",
        Stopping = "stopping",
        StorageFull = "storage-full",
        StorageOptimization = "storage-optimization",
        /// A cluster: IAM authorization being updated.
        UpdateIamDbAuth = "update-iam-db-auth",
        Upgrading = "upgrading",
    }
}

impl DbStatus {
    /// The one status in which RDS accepts changes and the database serves.
    pub fn is_available(&self) -> bool {
        *self == DbStatus::Available
    }

    /// A change in flight that RDS finishes by itself (the database becomes `available`
    /// again without anyone acting). Any other status but `available` — stopped, failed,
    /// storage-full, incompatible-*, an unknown one — needs an operator.
    pub fn settles_by_itself(&self) -> bool {
        match self {
            DbStatus::Renaming
            | DbStatus::Modifying
            | DbStatus::Rebooting
            | DbStatus::Creating
            | DbStatus::BackingUp
            | DbStatus::Starting
            | DbStatus::Maintenance
            | DbStatus::Upgrading
            | DbStatus::ResettingMasterCredentials
            | DbStatus::StorageOptimization
            | DbStatus::ConfiguringEnhancedMonitoring
            | DbStatus::ConfiguringIamDatabaseAuth
            | DbStatus::ConfiguringLogExports => true,
            // A configuring-* status added after the User Guide's table settles like those.
            DbStatus::Other(s) => s.starts_with("configuring-"),
            _ => false,
        }
    }
}

aws_status! {
    /// The status of a DB snapshot (DBSnapshot `Status`) or DB cluster snapshot
    /// (DBClusterSnapshot `Status`). The API reference gives no list; these are the values RDS
    /// shows: `creating` while CreateDBSnapshot runs, `copying` for CopyDBSnapshot,
    /// `available` when done (DeleteDBSnapshot requires it: "The DB snapshot must be in the
    /// available state to be deleted"), `deleting`, and `failed`.
    pub enum SnapshotStatus {
        Available = "available",
        Creating = "creating",
        Copying = "copying",
        Deleting = "deleting",
        Failed = "failed",
    }
}

impl SnapshotStatus {
    /// Still being made: it cannot be deleted or restored yet.
    pub fn in_progress(&self) -> bool {
        matches!(self, SnapshotStatus::Creating | SnapshotStatus::Copying)
    }
}

aws_status! {
    /// A stack resource's status (ListStackResources `ResourceStatus`: the CloudFormation API
    /// reference's ResourceStatus values).
    pub enum ResourceStatus {
        CreateComplete = "CREATE_COMPLETE",
        CreateFailed = "CREATE_FAILED",
        CreateInProgress = "CREATE_IN_PROGRESS",
        DeleteComplete = "DELETE_COMPLETE",
        DeleteFailed = "DELETE_FAILED",
        DeleteInProgress = "DELETE_IN_PROGRESS",
        /// Kept by DeletionPolicy Retain or a `RetainResources` of DeleteStack.
        DeleteSkipped = "DELETE_SKIPPED",
        ExportComplete = "EXPORT_COMPLETE",
        ExportFailed = "EXPORT_FAILED",
        ExportInProgress = "EXPORT_IN_PROGRESS",
        ExportRollbackComplete = "EXPORT_ROLLBACK_COMPLETE",
        ExportRollbackFailed = "EXPORT_ROLLBACK_FAILED",
        ExportRollbackInProgress = "EXPORT_ROLLBACK_IN_PROGRESS",
        ImportComplete = "IMPORT_COMPLETE",
        ImportFailed = "IMPORT_FAILED",
        ImportInProgress = "IMPORT_IN_PROGRESS",
        ImportRollbackComplete = "IMPORT_ROLLBACK_COMPLETE",
        ImportRollbackFailed = "IMPORT_ROLLBACK_FAILED",
        ImportRollbackInProgress = "IMPORT_ROLLBACK_IN_PROGRESS",
        RollbackComplete = "ROLLBACK_COMPLETE",
        RollbackFailed = "ROLLBACK_FAILED",
        RollbackInProgress = "ROLLBACK_IN_PROGRESS",
        UpdateComplete = "UPDATE_COMPLETE",
        UpdateFailed = "UPDATE_FAILED",
        UpdateInProgress = "UPDATE_IN_PROGRESS",
        UpdateRollbackComplete = "UPDATE_ROLLBACK_COMPLETE",
        UpdateRollbackFailed = "UPDATE_ROLLBACK_FAILED",
        UpdateRollbackInProgress = "UPDATE_ROLLBACK_IN_PROGRESS",
    }
}

impl ResourceStatus {
    /// An operation on the resource failed (`CREATE_FAILED`, `DELETE_FAILED`, …, or a
    /// `*_FAILED` value added after this list).
    pub fn is_failed(&self) -> bool {
        self.as_str().ends_with("_FAILED")
    }
}

aws_status! {
    /// An instance's lifecycle state in an Auto Scaling group (Instance `LifecycleState`; the
    /// Amazon EC2 Auto Scaling User Guide, "Amazon EC2 Auto Scaling instance lifecycle", and
    /// the API reference's LifecycleState values, warm pool states included).
    pub enum LifecycleState {
        Pending = "Pending",
        PendingWait = "Pending:Wait",
        PendingProceed = "Pending:Proceed",
        Quarantined = "Quarantined",
        InService = "InService",
        Terminating = "Terminating",
        TerminatingWait = "Terminating:Wait",
        TerminatingProceed = "Terminating:Proceed",
        TerminatingRetained = "Terminating:Retained",
        Terminated = "Terminated",
        Detaching = "Detaching",
        Detached = "Detached",
        EnteringStandby = "EnteringStandby",
        Standby = "Standby",
        ReplacingRootVolume = "ReplacingRootVolume",
        ReplacingRootVolumeWait = "ReplacingRootVolume:Wait",
        ReplacingRootVolumeProceed = "ReplacingRootVolume:Proceed",
        RootVolumeReplaced = "RootVolumeReplaced",
        WarmedPending = "Warmed:Pending",
        WarmedPendingWait = "Warmed:Pending:Wait",
        WarmedPendingProceed = "Warmed:Pending:Proceed",
        WarmedPendingRetained = "Warmed:Pending:Retained",
        WarmedTerminating = "Warmed:Terminating",
        WarmedTerminatingWait = "Warmed:Terminating:Wait",
        WarmedTerminatingProceed = "Warmed:Terminating:Proceed",
        WarmedTerminatingRetained = "Warmed:Terminating:Retained",
        WarmedTerminated = "Warmed:Terminated",
        WarmedStopped = "Warmed:Stopped",
        WarmedRunning = "Warmed:Running",
        WarmedHibernated = "Warmed:Hibernated",
    }
}

impl LifecycleState {
    /// Launching into the group (`Pending`, or held by a launch lifecycle hook).
    pub fn is_pending(&self) -> bool {
        matches!(
            self,
            LifecycleState::Pending | LifecycleState::PendingWait | LifecycleState::PendingProceed
        )
    }
}

aws_status! {
    /// An instance's health in an Auto Scaling group (Instance `HealthStatus`: "Healthy means
    /// that the instance is healthy and should remain in service. Unhealthy means that the
    /// instance is unhealthy and that Amazon EC2 Auto Scaling should terminate and replace it").
    pub enum HealthStatus {
        Healthy = "Healthy",
        Unhealthy = "Unhealthy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every documented value parses to a named variant (never `Other`) and prints back as AWS
    /// spells it; no two values share a variant.
    fn round_trips<T>(documented: &[&str], parse: fn(&str) -> T, other: fn(&T) -> bool)
    where
        T: std::fmt::Display + PartialEq + std::fmt::Debug,
    {
        let parsed: Vec<T> = documented.iter().map(|s| parse(s)).collect();
        for (text, status) in documented.iter().zip(&parsed) {
            assert!(!other(status), "{text} parsed as {status:?}");
            assert_eq!(status.to_string(), *text);
        }
        for (i, a) in parsed.iter().enumerate() {
            for b in &parsed[i + 1..] {
                assert_ne!(a, b, "two documented values share a variant");
            }
        }
    }

    #[test]
    fn every_documented_value_round_trips() {
        round_trips(DbStatus::DOCUMENTED, DbStatus::from_aws, |s| {
            matches!(s, DbStatus::Other(_))
        });
        round_trips(SnapshotStatus::DOCUMENTED, SnapshotStatus::from_aws, |s| {
            matches!(s, SnapshotStatus::Other(_))
        });
        round_trips(ResourceStatus::DOCUMENTED, ResourceStatus::from_aws, |s| {
            matches!(s, ResourceStatus::Other(_))
        });
        round_trips(LifecycleState::DOCUMENTED, LifecycleState::from_aws, |s| {
            matches!(s, LifecycleState::Other(_))
        });
        round_trips(HealthStatus::DOCUMENTED, HealthStatus::from_aws, |s| {
            matches!(s, HealthStatus::Other(_))
        });
        // The tables' lengths, so a value dropped from a list is noticed: 36 DB instance and
        // cluster statuses, 28 CloudFormation resource statuses, 30 lifecycle states.
        assert_eq!(DbStatus::DOCUMENTED.len(), 36);
        assert_eq!(ResourceStatus::DOCUMENTED.len(), 28);
        assert_eq!(LifecycleState::DOCUMENTED.len(), 30);
    }

    #[test]
    fn named_values_are_the_ones_the_workflow_matches() {
        assert_eq!(DbStatus::from_aws("available"), DbStatus::Available);
        assert_eq!(DbStatus::from_aws("renaming"), DbStatus::Renaming);
        assert_eq!(DbStatus::from_aws("backing-up"), DbStatus::BackingUp);
        assert_eq!(
            SnapshotStatus::from_aws("creating"),
            SnapshotStatus::Creating
        );
        assert_eq!(
            ResourceStatus::from_aws("DELETE_FAILED"),
            ResourceStatus::DeleteFailed
        );
        assert_eq!(
            LifecycleState::from_aws("Pending:Wait"),
            LifecycleState::PendingWait
        );
        assert_eq!(HealthStatus::from_aws("Healthy"), HealthStatus::Healthy);
        let failed: Vec<&str> = ResourceStatus::DOCUMENTED
            .iter()
            .copied()
            .filter(|s| ResourceStatus::from_aws(s).is_failed())
            .collect();
        assert_eq!(
            failed,
            [
                "CREATE_FAILED",
                "DELETE_FAILED",
                "EXPORT_FAILED",
                "EXPORT_ROLLBACK_FAILED",
                "IMPORT_FAILED",
                "IMPORT_ROLLBACK_FAILED",
                "ROLLBACK_FAILED",
                "UPDATE_FAILED",
                "UPDATE_ROLLBACK_FAILED",
            ]
        );
        let pending: Vec<&str> = LifecycleState::DOCUMENTED
            .iter()
            .copied()
            .filter(|s| LifecycleState::from_aws(s).is_pending())
            .collect();
        assert_eq!(pending, ["Pending", "Pending:Wait", "Pending:Proceed"]);
        // AWS's text compares equal to the variant (what tests and the printers rely on).
        assert!(DbStatus::Available == "available");
        assert!(LifecycleState::InService == "InService");
    }

    /// An unknown value is kept as AWS spelled it and is never taken for a ready state: a
    /// database in a status this list does not know is neither available nor expected to
    /// settle by itself (the swap refuses it and waits end in a timeout naming it).
    #[test]
    fn an_unknown_value_is_kept_and_not_ready() {
        let db = DbStatus::from_aws("hibernating");
        assert_eq!(db, DbStatus::Other("hibernating".into()));
        assert_eq!(db.to_string(), "hibernating");
        assert!(!db.is_available());
        assert!(!db.settles_by_itself());
        // Case matters: AWS spells statuses in lower case; "Available" is not "available".
        assert!(!DbStatus::from_aws("Available").is_available());
        // A configuring-* status added later settles like the documented ones.
        assert!(DbStatus::from_aws("configuring-activity-stream").settles_by_itself());

        let snapshot = SnapshotStatus::from_aws("exporting");
        assert_eq!(snapshot.to_string(), "exporting");
        assert_ne!(snapshot, SnapshotStatus::Available);
        assert!(!snapshot.in_progress());

        let resource = ResourceStatus::from_aws("CREATE_PENDING");
        assert_eq!(resource, ResourceStatus::Other("CREATE_PENDING".into()));
        assert_eq!(resource.to_string(), "CREATE_PENDING");

        let state = LifecycleState::from_aws("Warmed:Resuming");
        assert!(!state.is_pending());
        assert_ne!(state, LifecycleState::InService);
        assert_eq!(state.to_string(), "Warmed:Resuming");

        assert_eq!(HealthStatus::from_aws("").to_string(), "");
    }

    #[test]
    fn statuses_that_settle_by_themselves() {
        let settles: Vec<&str> = DbStatus::DOCUMENTED
            .iter()
            .copied()
            .filter(|s| DbStatus::from_aws(s).settles_by_itself())
            .collect();
        assert_eq!(
            settles,
            [
                "backing-up",
                "configuring-enhanced-monitoring",
                "configuring-iam-database-auth",
                "configuring-log-exports",
                "creating",
                "maintenance",
                "modifying",
                "rebooting",
                "renaming",
                "resetting-master-credentials",
                "starting",
                "storage-optimization",
                "upgrading",
            ]
        );
    }
}
