//! The small traits the workflow talks to, one per AWS service, and the plain data they carry.
//!
//! The workflow never sees an SDK type: `aws/` implements these traits over the AWS SDK for
//! Rust, `fake/` over an in-memory model with time and faults. Errors are `PortError`, which
//! keeps what the caller needs to decide (not found, already exists, retryable) and the
//! service's own message.

pub mod batch;
pub mod status;
pub mod tables;

pub use status::{DbStatus, HealthStatus, LifecycleState, ResourceStatus, SnapshotStatus};

use std::collections::BTreeMap;

use async_trait::async_trait;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PortError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    /// A conditional write lost: the object exists (If-None-Match) or changed (If-Match).
    #[error("{what} changed or exists (precondition failed)")]
    PreconditionFailed { what: String },
    /// Throttling, 5xx, timeouts: worth another try after a pause.
    #[error("{operation}: transient error: {message}")]
    Transient { operation: String, message: String },
    #[error("{operation}: {message}")]
    Failed { operation: String, message: String },
}

impl PortError {
    pub fn failed(operation: &str, message: impl Into<String>) -> Self {
        PortError::Failed {
            operation: operation.to_string(),
            message: message.into(),
        }
    }
    pub fn is_retryable(&self) -> bool {
        matches!(self, PortError::Transient { .. })
    }
}

pub type PortResult<T> = Result<T, PortError>;

// ---------------------------------------------------------------- CloudFormation

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackStatus {
    InProgress(String),
    CreateComplete,
    UpdateComplete,
    /// A deletion that stopped on a resource CloudFormation could not delete: the stack
    /// stays, and DeleteStack accepts `RetainResources` only in this state (CloudFormation
    /// API Reference, DeleteStack).
    DeleteFailed,
    /// Any other `*_FAILED`, `ROLLBACK_*` or `DELETE_*` state: the stack is not usable.
    Failed(String),
}

impl StackStatus {
    pub fn from_aws(s: &str) -> Self {
        match s {
            "CREATE_COMPLETE" => StackStatus::CreateComplete,
            "UPDATE_COMPLETE" => StackStatus::UpdateComplete,
            "DELETE_FAILED" => StackStatus::DeleteFailed,
            s if s.ends_with("_IN_PROGRESS")
                && !s.contains("ROLLBACK")
                && !s.starts_with("DELETE") =>
            {
                StackStatus::InProgress(s.to_string())
            }
            s => StackStatus::Failed(s.to_string()),
        }
    }
    pub fn is_usable(&self) -> bool {
        matches!(
            self,
            StackStatus::CreateComplete | StackStatus::UpdateComplete
        )
    }
}

impl std::fmt::Display for StackStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StackStatus::InProgress(s) | StackStatus::Failed(s) => f.write_str(s),
            StackStatus::CreateComplete => f.write_str("CREATE_COMPLETE"),
            StackStatus::UpdateComplete => f.write_str("UPDATE_COMPLETE"),
            StackStatus::DeleteFailed => f.write_str("DELETE_FAILED"),
        }
    }
}

impl std::fmt::Display for DnsRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name, self.record_type)?;
        if let Some(alias) = &self.alias {
            write!(
                f,
                " ALIAS {} (zone {}{})",
                alias.dns_name,
                alias.hosted_zone_id,
                if alias.evaluate_target_health {
                    ", evaluate target health"
                } else {
                    ""
                }
            )?;
        } else {
            write!(f, " {}", self.values.join(" "))?;
        }
        if let Some(ttl) = self.ttl {
            write!(f, " TTL {ttl}")?;
        }
        if let Some(id) = &self.set_identifier {
            write!(f, " set {id}")?;
        }
        if let Some(routing) = &self.routing {
            write!(f, " {routing:?}")?;
        }
        if let Some(check) = &self.health_check_id {
            write!(f, " health check {check}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackInfo {
    pub name: String,
    pub id: String,
    pub status: StackStatus,
    pub status_reason: Option<String>,
    pub parameters: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// IAM capabilities the stack was created with (`CAPABILITY_IAM`…).
    pub capabilities: Vec<String>,
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    /// CloudFormation refuses DeleteStack while this is on.
    pub termination_protection: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackResource {
    pub logical_id: String,
    pub physical_id: Option<String>,
    pub resource_type: String,
    pub status: ResourceStatus,
}

impl StackResource {
    pub fn is_created(&self) -> bool {
        self.physical_id.is_some()
            && matches!(
                self.status,
                ResourceStatus::CreateComplete | ResourceStatus::UpdateComplete
            )
    }
}

/// Where CreateStack reads the template from. CloudFormation takes a template of at most
/// 51,200 bytes in the request (`TemplateBody`) and of at most 1 MB from an S3 object
/// (`TemplateURL`) ("CloudFormation quotas": "Template body size in a request" / "in an
/// Amazon S3 object"; AWS answers ValidationError past either).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    Body(String),
    /// An `https://` URL of an S3 object CloudFormation reads with the caller's credentials.
    Url(String),
}

/// The largest `TemplateBody` CloudFormation accepts in a request, in bytes.
pub const TEMPLATE_BODY_MAX: usize = 51_200;
/// The largest template CloudFormation reads from S3 through `TemplateURL`, in bytes.
pub const TEMPLATE_URL_MAX: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateStackRequest {
    pub name: String,
    pub template: TemplateSource,
    pub parameters: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// The source's capabilities: a clone needs what its source needed.
    pub capabilities: Vec<String>,
    /// Idempotency token: CloudFormation answers a repeated CreateStack with the same token as
    /// success instead of AlreadyExists.
    pub client_token: String,
}

#[async_trait]
pub trait Stacks: Send + Sync {
    /// The stack by name (or stack id), or None if there is none (or only a deleted one).
    async fn describe_stack(&self, name: &str) -> PortResult<Option<StackInfo>>;
    /// Live root stacks whose tag `key` equals `value`. Nested stacks (which CloudFormation
    /// gives their root's tags) are left out: they are part of their root's environment.
    async fn find_stacks_by_tag(&self, key: &str, value: &str) -> PortResult<Vec<StackInfo>>;
    /// Live root stacks that carry tag `key`, whatever its value (nested stacks left out).
    async fn stacks_with_tag(&self, key: &str) -> PortResult<Vec<StackInfo>>;
    /// GetTemplate of a stack by name or stack id (a nested stack's physical id is its id).
    async fn template_body(&self, stack: &str) -> PortResult<String>;
    /// ListStackResources of a stack by name or stack id.
    async fn resources(&self, stack: &str) -> PortResult<Vec<StackResource>>;
    /// Returns the stack id.
    async fn create_stack(&self, request: &CreateStackRequest) -> PortResult<String>;
    /// Starts deleting a stack, keeping the resources named in `retain` (CloudFormation takes
    /// `retain` only for a stack in DELETE_FAILED).
    async fn delete_stack(&self, name: &str, retain: &[String]) -> PortResult<()>;
    /// UpdateTerminationProtection.
    async fn set_termination_protection(&self, name: &str, enabled: bool) -> PortResult<()>;
}

// ---------------------------------------------------------------- RDS

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbInstance {
    pub id: String,
    pub status: DbStatus,
    pub engine: String,
    pub endpoint: Option<String>,
    pub deletion_protection: bool,
    pub tags: BTreeMap<String, String>,
    /// `BackupRetentionPeriod`: days of automated backups; 0 means none, and then no
    /// point-in-time restore ("Introduction to backups", RDS User Guide).
    pub backup_retention_period: i32,
    /// `LatestRestorableTime`: the latest time a point-in-time restore can target
    /// (RestoreDBInstanceToPointInTime: "You can restore to any point in time before the time
    /// identified by the LatestRestorableTime property"); absent without automated backups.
    pub latest_restorable_time: Option<chrono::DateTime<chrono::Utc>>,
    /// `PendingModifiedValues.DBInstanceIdentifier`: a rename accepted and not yet effective.
    pub pending_rename: Option<String>,
    /// Every other change waiting to be applied, in words: the rest of
    /// `PendingModifiedValues`, and parameter groups `pending-reboot`.
    pub pending_changes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbSnapshot {
    pub id: String,
    pub instance_id: String,
    pub status: SnapshotStatus,
    pub tags: BTreeMap<String, String>,
    /// `SnapshotCreateTime`: "Specifies when the snapshot was taken in Coordinated Universal
    /// Time (UTC)" (RDS API Reference, DBSnapshot / DBClusterSnapshot); absent until RDS has
    /// taken it.
    pub created: Option<chrono::DateTime<chrono::Utc>>,
}

impl DbSnapshot {
    /// The moment whose data the snapshot holds, once that moment is fixed — long before the
    /// snapshot is `available`: Some(`SnapshotCreateTime`) while the snapshot is `creating` or
    /// `available` and RDS reports that time; None before, and for a failed or deleted one.
    ///
    /// What this rests on (AWS documentation, checked 2026-12-01):
    /// - "Create Amazon EBS snapshots" (EBS User Guide): snapshots "occur asynchronously; the
    ///   point-in-time snapshot is created immediately, but the status of the snapshot is
    ///   `pending` until the snapshot is complete"; the volume can be used meanwhile and the
    ///   snapshot holds only the data written before it was requested. RDS for MySQL,
    ///   MariaDB, PostgreSQL, Oracle and SQL Server stores on EBS.
    /// - "Creating a DB snapshot for a Single-AZ DB instance" (RDS User Guide,
    ///   USER_CreateSnapshot): "Creating this DB snapshot on a Single-AZ DB instance results in
    ///   a brief I/O suspension that can last from a few seconds to a few minutes"; Multi-AZ
    ///   (MariaDB, MySQL, Oracle, PostgreSQL) takes it from the standby without suspension.
    ///   RDS reports no end of that suspension: writes it holds land after the snapshot's
    ///   point, so they cannot get into it.
    /// - `SnapshotCreateTime` (DBSnapshot, DBClusterSnapshot): "when the snapshot was taken".
    ///   The RDS pages do not say in so many words that writes after the request are
    ///   excluded; envclone relies on the EBS statement plus this field. Aurora cluster
    ///   snapshots ("Creating a DB cluster snapshot", Aurora User Guide) are taken of the
    ///   cluster volume at a point in time without an I/O suspension.
    pub fn point_fixed_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        match self.status.as_str() {
            "creating" | "available" => self.created,
            _ => None,
        }
    }
}

/// An Aurora DB cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbCluster {
    pub id: String,
    pub status: DbStatus,
    pub engine: String,
    /// `provisioned`, `serverless` (v1: cannot be cloned copy-on-write), …
    pub engine_mode: String,
    /// The latest time the cluster can be restored (or cloned) to; moves a few seconds to
    /// minutes behind now.
    pub latest_restorable_time: Option<chrono::DateTime<chrono::Utc>>,
    /// Shared by a cluster and its copy-on-write clones (AWS allows 15 clones per source).
    pub clone_group_id: Option<String>,
    /// AWS's clock when it answered (the response's `Date` header, whole seconds), which may
    /// differ from this machine's.
    pub server_time: Option<chrono::DateTime<chrono::Utc>>,
    /// The writer endpoint's host name (it follows the cluster's identifier).
    pub endpoint: Option<String>,
    /// Identifiers of the cluster's DB instances.
    pub members: Vec<String>,
    /// `BackupRetentionPeriod` in days (Aurora keeps at least 1).
    pub backup_retention_period: i32,
    pub deletion_protection: bool,
    pub tags: BTreeMap<String, String>,
    /// `PendingModifiedValues.DBClusterIdentifier`: a rename accepted and not yet effective.
    pub pending_rename: Option<String>,
    /// Every other change waiting to be applied, in words (the rest of
    /// `PendingModifiedValues`).
    pub pending_changes: Vec<String>,
}

/// What the workflow needs to know of a DB instance or cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbState {
    pub status: DbStatus,
    pub deletion_protection: bool,
    /// The host name clients connect to (a cluster's writer endpoint).
    pub endpoint: Option<String>,
    /// A cluster's instances.
    pub members: Vec<String>,
    /// Changes waiting to be applied besides a rename (`DbInstance::pending_changes`).
    pub pending_changes: Vec<String>,
}

/// A DB instance or an Aurora DB cluster: their snapshot APIs (DBSnapshot, DBClusterSnapshot)
/// and identifier namespaces are separate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DbKind {
    #[default]
    Instance,
    Cluster,
}

impl DbKind {
    /// "DB snapshot" or "DB cluster snapshot", for messages.
    pub fn snapshot_noun(self) -> &'static str {
        match self {
            DbKind::Instance => "DB snapshot",
            DbKind::Cluster => "DB cluster snapshot",
        }
    }
}

/// The snapshot calls of one kind of database.
pub struct Snapshots<'a> {
    dbs: &'a dyn Databases,
    kind: DbKind,
}

impl dyn Databases {
    pub fn snapshots(&self, kind: DbKind) -> Snapshots<'_> {
        Snapshots { dbs: self, kind }
    }

    /// The status of a DB instance or cluster (`None`: it does not exist).
    pub async fn status_of(&self, kind: DbKind, id: &str) -> PortResult<Option<DbStatus>> {
        Ok(self.state_of(kind, id).await?.map(|s| s.status))
    }

    /// Status, deletion protection and (for a cluster) instances of a DB instance or cluster.
    ///
    /// A database with a rename pending is `renaming` here whatever its status says: after
    /// ModifyDBInstance / ModifyDBCluster with a new identifier and ApplyImmediately, RDS
    /// answers the new name in `PendingModifiedValues` at once but keeps the status
    /// `available` until the change starts ("the modifications ... are asynchronously applied
    /// as soon as possible", ModifyDBInstance `ApplyImmediately`; seen for seconds, e.g.
    /// aws-sdk-js#1505, boto3#609). Read as settled, a swap stopped then would be undone
    /// from names about to move (the source renamed away after `abort` said it was back).
    pub async fn state_of(&self, kind: DbKind, id: &str) -> PortResult<Option<DbState>> {
        let renaming = |status: DbStatus, pending: &Option<String>| match pending {
            Some(_) if status.is_available() => DbStatus::Renaming,
            _ => status,
        };
        Ok(match kind {
            DbKind::Instance => self.describe_instance(id).await?.map(|d| DbState {
                status: renaming(d.status, &d.pending_rename),
                deletion_protection: d.deletion_protection,
                endpoint: d.endpoint,
                members: Vec::new(),
                pending_changes: d.pending_changes,
            }),
            DbKind::Cluster => self.describe_cluster(id).await?.map(|c| DbState {
                status: renaming(c.status, &c.pending_rename),
                deletion_protection: c.deletion_protection,
                endpoint: c.endpoint,
                members: c.members,
                pending_changes: c.pending_changes,
            }),
        })
    }

    /// DB instances or clusters that carry tag `key` = `value`.
    pub async fn tagged(&self, kind: DbKind, key: &str, value: &str) -> PortResult<Vec<String>> {
        match kind {
            DbKind::Instance => self.instances_tagged(key, value).await,
            DbKind::Cluster => self.clusters_tagged(key, value).await,
        }
    }

    pub async fn rename(&self, kind: DbKind, id: &str, new_id: &str) -> PortResult<()> {
        match kind {
            DbKind::Instance => self.rename_instance(id, new_id).await,
            DbKind::Cluster => self.rename_cluster(id, new_id).await,
        }
    }

    pub async fn protect(&self, kind: DbKind, id: &str, enabled: bool) -> PortResult<()> {
        match kind {
            DbKind::Instance => self.set_deletion_protection(id, enabled).await,
            DbKind::Cluster => self.set_cluster_deletion_protection(id, enabled).await,
        }
    }

    pub async fn tag(
        &self,
        kind: DbKind,
        id: &str,
        tags: &BTreeMap<String, String>,
    ) -> PortResult<()> {
        match kind {
            DbKind::Instance => self.tag_instance(id, tags).await,
            DbKind::Cluster => self.tag_cluster(id, tags).await,
        }
    }

    /// Deletes a DB instance or a cluster without a final snapshot (a cluster's instances must
    /// be gone first).
    pub async fn delete(&self, kind: DbKind, id: &str) -> PortResult<()> {
        match kind {
            DbKind::Instance => self.delete_instance(id).await,
            DbKind::Cluster => self.delete_cluster(id).await,
        }
    }
}

impl Snapshots<'_> {
    pub async fn create(
        &self,
        source_id: &str,
        snapshot_id: &str,
        tags: &BTreeMap<String, String>,
    ) -> PortResult<()> {
        match self.kind {
            DbKind::Instance => self.dbs.create_snapshot(source_id, snapshot_id, tags).await,
            DbKind::Cluster => {
                self.dbs
                    .create_cluster_snapshot(source_id, snapshot_id, tags)
                    .await
            }
        }
    }

    pub async fn describe(&self, id: &str) -> PortResult<Option<DbSnapshot>> {
        match self.kind {
            DbKind::Instance => self.dbs.describe_snapshot(id).await,
            DbKind::Cluster => self.dbs.describe_cluster_snapshot(id).await,
        }
    }

    pub async fn delete(&self, id: &str) -> PortResult<()> {
        match self.kind {
            DbKind::Instance => self.dbs.delete_snapshot(id).await,
            DbKind::Cluster => self.dbs.delete_cluster_snapshot(id).await,
        }
    }

    /// Manual snapshots of `source_id`.
    pub async fn of_source(&self, source_id: &str) -> PortResult<Vec<DbSnapshot>> {
        match self.kind {
            DbKind::Instance => self.dbs.snapshots_of_instance(source_id).await,
            DbKind::Cluster => self.dbs.snapshots_of_cluster(source_id).await,
        }
    }
}

#[async_trait]
pub trait Databases: Send + Sync {
    async fn describe_instance(&self, id: &str) -> PortResult<Option<DbInstance>>;
    async fn create_snapshot(
        &self,
        instance_id: &str,
        snapshot_id: &str,
        tags: &BTreeMap<String, String>,
    ) -> PortResult<()>;
    async fn describe_snapshot(&self, id: &str) -> PortResult<Option<DbSnapshot>>;
    /// Renames an instance at once (ModifyDBInstance NewDBInstanceIdentifier, ApplyImmediately).
    async fn rename_instance(&self, id: &str, new_id: &str) -> PortResult<()>;
    async fn set_deletion_protection(&self, id: &str, enabled: bool) -> PortResult<()>;
    async fn tag_instance(&self, id: &str, tags: &BTreeMap<String, String>) -> PortResult<()>;
    /// Deletes an instance without a final snapshot (callers take their own first).
    async fn delete_instance(&self, id: &str) -> PortResult<()>;
    async fn delete_snapshot(&self, id: &str) -> PortResult<()>;
    /// Manual snapshots of an instance identifier (e.g. the final snapshot CloudFormation
    /// takes when it deletes a database with DeletionPolicy Snapshot).
    async fn snapshots_of_instance(&self, instance_id: &str) -> PortResult<Vec<DbSnapshot>>;
    /// Identifiers of the DB instances that carry tag `key` = `value` (RDS filters
    /// DescribeDBInstances by no tag: every instance's TagList is read).
    async fn instances_tagged(&self, key: &str, value: &str) -> PortResult<Vec<String>>;

    async fn describe_cluster(&self, id: &str) -> PortResult<Option<DbCluster>>;
    /// How many clusters share a clone group (the source and its copy-on-write clones).
    async fn clusters_in_clone_group(&self, clone_group_id: &str) -> PortResult<usize>;
    async fn create_cluster_snapshot(
        &self,
        cluster_id: &str,
        snapshot_id: &str,
        tags: &BTreeMap<String, String>,
    ) -> PortResult<()>;
    /// A cluster snapshot; its `instance_id` is the cluster's identifier.
    async fn describe_cluster_snapshot(&self, id: &str) -> PortResult<Option<DbSnapshot>>;
    async fn delete_cluster_snapshot(&self, id: &str) -> PortResult<()>;
    /// Manual snapshots of a cluster identifier (e.g. CloudFormation's final snapshot).
    async fn snapshots_of_cluster(&self, cluster_id: &str) -> PortResult<Vec<DbSnapshot>>;
    /// Identifiers of the DB clusters that carry tag `key` = `value`.
    async fn clusters_tagged(&self, key: &str, value: &str) -> PortResult<Vec<String>>;
    /// Renames a cluster at once (ModifyDBCluster NewDBClusterIdentifier, ApplyImmediately):
    /// its endpoints follow the new name; its instances keep theirs.
    async fn rename_cluster(&self, id: &str, new_id: &str) -> PortResult<()>;
    async fn set_cluster_deletion_protection(&self, id: &str, enabled: bool) -> PortResult<()>;
    async fn tag_cluster(&self, id: &str, tags: &BTreeMap<String, String>) -> PortResult<()>;
    /// Deletes a cluster without a final snapshot (callers take their own first); its
    /// instances must be deleted before.
    async fn delete_cluster(&self, id: &str) -> PortResult<()>;

    /// RemoveTagsFromResource on a DB instance or cluster.
    async fn untag(&self, kind: DbKind, id: &str, keys: &[String]) -> PortResult<()>;
}

// ---------------------------------------------------------------- Auto Scaling

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsgInstance {
    pub id: String,
    /// `InService`, `Standby`, `EnteringStandby`, `Pending`…
    pub lifecycle_state: LifecycleState,
    /// `Healthy` or `Unhealthy` (Auto Scaling's view; with `HealthCheckType: ELB` it follows
    /// the load balancer's health checks).
    pub health_status: HealthStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsgInfo {
    pub name: String,
    pub min_size: i32,
    pub max_size: i32,
    pub desired_capacity: i32,
    pub instances: Vec<AsgInstance>,
    /// Scaling processes suspended on the group (`Launch`, `AZRebalance`, …).
    pub suspended_processes: Vec<String>,
}

impl AsgInfo {
    pub fn ids_in(&self, state: &LifecycleState) -> Vec<String> {
        self.instances
            .iter()
            .filter(|i| i.lifecycle_state == *state)
            .map(|i| i.id.clone())
            .collect()
    }
}

#[async_trait]
pub trait Scaling: Send + Sync {
    async fn describe_group(&self, name: &str) -> PortResult<Option<AsgInfo>>;
    /// UpdateAutoScalingGroup with the sizes given (None: left as it is).
    async fn update_sizes(
        &self,
        name: &str,
        min_size: Option<i32>,
        max_size: Option<i32>,
        desired: Option<i32>,
    ) -> PortResult<()>;
    async fn suspend_processes(&self, name: &str, processes: &[String]) -> PortResult<()>;
    async fn resume_processes(&self, name: &str, processes: &[String]) -> PortResult<()>;
    /// Moves instances to Standby, decrementing desired capacity so the group does not replace
    /// them.
    async fn enter_standby(&self, name: &str, instance_ids: &[String]) -> PortResult<()>;
    /// Returns instances to service (desired capacity grows back by their number).
    async fn exit_standby(&self, name: &str, instance_ids: &[String]) -> PortResult<()>;
    /// Scaling activities of the group that have not finished.
    async fn activities_in_progress(&self, name: &str) -> PortResult<Vec<String>>;
}

// ---------------------------------------------------------------- S3

/// One entry of a bucket listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub key: String,
    pub size: u64,
    /// As S3 reports it, quotes removed. Multipart uploads have `<hex>-<parts>`.
    pub etag: String,
    /// None for STANDARD.
    pub storage_class: Option<String>,
    /// An archived object (GLACIER, DEEP_ARCHIVE) whose restored copy is available
    /// (ListObjectsV2 `RestoreStatus`: IsRestoreInProgress false, with a RestoreExpiryDate), so
    /// it can be copied.
    pub restored: bool,
    /// The algorithm of the checksum S3 stores with the object, as ListObjectsV2 lists it
    /// (`ChecksumAlgorithm`); None when it has none (objects written before S3 added a default
    /// CRC64NVME to every upload, or by servers that keep none).
    pub checksum_algorithm: Option<String>,
    /// The version a copy or a comparison reads (a copy as of a moment T: the version current
    /// then); None: the current version, as ListObjectsV2 lists it.
    pub version_id: Option<String>,
    /// `LastModified` (whole seconds): when the object was last written; a copy's is when it
    /// was copied. None where a listing gave none.
    pub last_modified: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectSummary>,
    pub next_token: Option<String>,
}

/// One entry of ListObjectVersions: a version of an object or a delete marker. In a bucket that
/// never had versioning, each object is listed once with the version id `null`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub key: String,
    pub version_id: String,
    pub delete_marker: bool,
    /// When the version (or delete marker) was written, on S3's clock, in whole seconds:
    /// ListObjectVersions' `LastModified` has a resolution of one second (the time is
    /// `2026-12-01T10:00:07.000Z`), so versions written within one second are told apart only
    /// by their order in the listing (newest first).
    pub last_modified: chrono::DateTime<chrono::Utc>,
    /// The current version of its key (`IsLatest`).
    pub is_latest: bool,
    /// Of a version (a delete marker has none): its size, ETag (quotes removed), storage
    /// class (None for STANDARD) and checksum algorithm, as in `ObjectSummary`.
    pub size: u64,
    pub etag: String,
    pub storage_class: Option<String>,
    pub checksum_algorithm: Option<String>,
}

/// A page of ListObjectVersions; `next` is the (key, version id) marker of the next page.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionPage {
    pub versions: Vec<ObjectVersion>,
    pub next: Option<(String, String)>,
}

/// A small object as GetObject returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmallObject {
    pub body: Vec<u8>,
    /// Quotes removed.
    pub etag: String,
    /// `Last-Modified`: when S3 finished the write, on S3's clock (whole seconds in the HTTP
    /// header). Locks judge their age by it, never by the clock of the machine that wrote them.
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// What HeadObject tells about an object (or, with a part number, about one of its parts).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectHead {
    pub size: u64,
    pub etag: String,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    pub storage_class: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// For a multipart object: the number of parts. With `part_number` given, `size` is that
    /// part's size.
    pub parts_count: Option<u32>,
    /// `x-amz-server-side-encryption` and its KMS key; None where S3 names no encryption.
    pub encryption: Option<ObjectEncryption>,
    /// The object's stored checksum (HeadObject with `ChecksumMode=ENABLED`, which
    /// `head_object` always asks for); None when the object has none.
    pub checksum: Option<ObjectChecksum>,
}

/// How S3 encrypts an object at rest ("Protecting data with server-side encryption"): its
/// `x-amz-server-side-encryption` (`AES256` for SSE-S3, `aws:kms` for SSE-KMS, `aws:kms:dsse`),
/// the KMS key (`x-amz-server-side-encryption-aws-kms-key-id`, an ARN as S3 reports it) and
/// whether an S3 Bucket Key is used.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectEncryption {
    pub algorithm: String,
    pub kms_key_id: Option<String>,
    pub bucket_key: bool,
}

impl ObjectEncryption {
    pub const SSE_S3: &'static str = "AES256";

    /// SSE-KMS or DSSE-KMS: "the ETag is not an MD5 digest of the object data" ("Using
    /// server-side encryption with AWS KMS keys (SSE-KMS)"; CopyObject, "ETag": "Objects
    /// created by the PUT Object, POST Object, or Copy operation ... that are encrypted by
    /// SSE-C or SSE-KMS, have ETags that are not an MD5 digest of their object data").
    pub fn is_kms(&self) -> bool {
        self.algorithm.starts_with("aws:kms")
    }
}

/// A checksum S3 keeps with an object ("Checking object integrity": CRC64NVME, CRC32, CRC32C,
/// SHA1, SHA256; full-object, or for a multipart upload possibly composite — the checksum of
/// the parts' checksums, `<value>-<parts>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectChecksum {
    pub algorithm: String,
    /// Base64, as S3 sends it (a composite one with its `-<parts>` suffix).
    pub value: String,
    pub full_object: bool,
}

/// The checksum algorithm envclone asks for on copies of objects that list none: CRC64NVME,
/// the checksum S3 itself gives every object uploaded without one ("Checking object
/// integrity"), so copies are comparable with most sources written since. CopyObject takes it
/// as `x-amz-checksum-algorithm` and computes it from the copied bytes (CopyObject API).
pub const COPY_CHECKSUM: &str = "CRC64NVME";

/// What a CopyObject is asked to write besides the source's data, metadata and tags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyRequest {
    pub storage_class: Option<String>,
    /// None: the destination bucket's default encryption (what S3 does for a CopyObject
    /// without encryption headers: "If you don't specify encryption information in your copy
    /// request, the encryption setting of the target object is set to the default encryption
    /// configuration of the destination bucket", CopyObject API).
    pub encryption: Option<ObjectEncryption>,
    /// `x-amz-checksum-algorithm`.
    pub checksum_algorithm: Option<String>,
}

/// One part UploadPartCopy wrote, as CompleteMultipartUpload must be given it back: its ETag
/// and, when the upload was created with a `ChecksumAlgorithm`, the part's checksum of that
/// algorithm (UploadPartCopy response `CopyPartResult.ChecksumCRC64NVME` etc.; CompletedPart:
/// "This checksum is present if the multipart upload request was created with the CRC64NVME
/// checksum algorithm"): (algorithm, base64 value as S3 sends it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopiedPart {
    pub etag: String,
    pub checksum: Option<(String, String)>,
}

/// What a CopyObject wrote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopiedObject {
    pub etag: String,
    pub encryption: Option<ObjectEncryption>,
}

/// Whether S3 refused to read an object because it is encrypted with a customer-provided key
/// (SSE-C): CopyObject, UploadPartCopy and GetObject answer `InvalidRequest` "The object was
/// stored using a form of Server Side Encryption. The correct parameters must be provided to
/// retrieve the object."; HeadObject answers a bare 400 (a HEAD has no body) — "If you encrypt
/// an object by using server-side encryption with customer-provided encryption keys (SSE-C)
/// ... then when you retrieve the metadata from the object, you must use the following
/// headers" (HeadObject API).
pub fn is_customer_key_refusal(e: &PortError) -> bool {
    match e {
        PortError::Failed { operation, message } => {
            message.contains("The correct parameters must be provided to retrieve the object")
                || (operation == "s3:HeadObject" && message.contains("(HTTP 400)"))
        }
        _ => false,
    }
}

/// A bucket as ListBuckets shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketListing {
    pub name: String,
    pub created: chrono::DateTime<chrono::Utc>,
}

/// The most keys a ListObjectsV2 page holds (S3's `max-keys` limit, and its default).
pub const PAGE_KEYS: usize = 1000;

#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// The `https://` URL of an object in this store's region, as CreateStack's `TemplateURL`
    /// takes it (virtual-hosted style; path style for a bucket name with dots, which the
    /// virtual-hosted certificate does not cover).
    fn object_url(&self, bucket: &str, key: &str) -> String;
    /// The buckets of the account in this store's region whose names start with `prefix`
    /// (ListBuckets with `prefix` and `bucket-region`).
    async fn buckets_with_prefix(&self, prefix: &str) -> PortResult<Vec<BucketListing>>;
    /// None if the bucket does not exist; otherwise its tags.
    async fn bucket_tags(&self, bucket: &str) -> PortResult<Option<BTreeMap<String, String>>>;
    async fn create_bucket(&self, bucket: &str, tags: &BTreeMap<String, String>) -> PortResult<()>;
    /// Opens up to `connections` connections to the bucket's endpoint and leaves them idle
    /// for the requests that follow, so that these do not each pay a connection's set-up (the
    /// TCP and TLS handshakes: two to three round trips over a WAN). Best effort: nothing it
    /// meets is an error, the requests that follow report their own. A store without
    /// connections does nothing.
    async fn warm_up(&self, _bucket: &str, _connections: usize) {}
    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<String>,
    ) -> PortResult<ListPage> {
        self.list_page_after(bucket, prefix, None, token, PAGE_KEYS)
            .await
    }
    /// A page of at most `max_keys` (1 to `PAGE_KEYS`) of the keys under `prefix` that sort
    /// after `start_after` (S3's `start-after`, which need not be a key; like S3, ignored once
    /// a continuation `token` is given). A page may hold fewer keys than asked and still have
    /// a token: only a page without one ends the listing.
    async fn list_page_after(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<String>,
        max_keys: usize,
    ) -> PortResult<ListPage>;
    async fn head_object(
        &self,
        bucket: &str,
        key: &str,
        part_number: Option<u32>,
    ) -> PortResult<ObjectHead> {
        self.head_object_version(bucket, key, None, part_number)
            .await
    }
    /// HeadObject of version `version` (None: the current one). A delete marker's version id
    /// is refused (405 MethodNotAllowed on S3), an unknown one is NotFound (NoSuchVersion).
    async fn head_object_version(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        part_number: Option<u32>,
    ) -> PortResult<ObjectHead>;
    async fn object_tags(&self, bucket: &str, key: &str) -> PortResult<BTreeMap<String, String>> {
        self.object_tags_version(bucket, key, None).await
    }
    /// GetObjectTagging of version `version` (None: the current one).
    async fn object_tags_version(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> PortResult<BTreeMap<String, String>>;
    /// Server-side copy of a whole object (≤ 5 GiB on AWS) keeping its metadata and tags,
    /// written as `request` says (storage class, encryption, checksum algorithm).
    async fn copy_object(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
        request: &CopyRequest,
    ) -> PortResult<CopiedObject> {
        self.copy_object_version(src_bucket, src_key, None, dst_bucket, dst_key, request)
            .await
    }
    /// `copy_object` of version `src_version` of the source (None: the current one): CopySource
    /// `bucket/key?versionId=<id>` (CopyObject API: "To copy a specific version of an object,
    /// append ?versionId=<version-id> to the value"). A delete marker's version id is refused
    /// (400 InvalidRequest).
    #[allow(clippy::too_many_arguments)]
    async fn copy_object_version(
        &self,
        src_bucket: &str,
        src_key: &str,
        src_version: Option<&str>,
        dst_bucket: &str,
        dst_key: &str,
        request: &CopyRequest,
    ) -> PortResult<CopiedObject>;
    /// Starts a multipart upload carrying the source's headers, metadata and tags, and
    /// `head.encryption` where it is Some (else the bucket's default encryption).
    /// `head.checksum`, where Some, asks for a checksum: its `algorithm` as `ChecksumAlgorithm`
    /// and `full_object` as `ChecksumType` FULL_OBJECT (else COMPOSITE); its value is ignored
    /// (CreateMultipartUpload API). The parts then carry checksums of that algorithm, which
    /// CompleteMultipartUpload must be given back.
    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        head: &ObjectHead,
        tags: &BTreeMap<String, String>,
    ) -> PortResult<String>;
    /// Copies bytes `first..=last` of the source into part `part` (1-based). Returns the part's
    /// ETag and, if the upload was created with a checksum algorithm, its checksum.
    #[allow(clippy::too_many_arguments)]
    async fn upload_part_copy(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
        upload_id: &str,
        part: u32,
        first: u64,
        last: u64,
    ) -> PortResult<CopiedPart> {
        let source = (src_bucket, src_key, None);
        self.upload_part_copy_version(
            source, None, dst_bucket, dst_key, upload_id, part, first, last,
        )
        .await
    }
    /// `upload_part_copy` from `source` = (bucket, key, version id; None: the current one);
    /// with `if_match`, only while the source's ETag is that one
    /// (`x-amz-copy-source-if-match`), else `PreconditionFailed`: each UploadPartCopy reads
    /// the source's current version at its own moment ("By default, x-amz-copy-source
    /// identifies the current version"), so an object overwritten between two parts would
    /// otherwise be copied as parts of two versions, an object that never existed.
    #[allow(clippy::too_many_arguments)]
    async fn upload_part_copy_version(
        &self,
        source: (&str, &str, Option<&str>),
        if_match: Option<&str>,
        dst_bucket: &str,
        dst_key: &str,
        upload_id: &str,
        part: u32,
        first: u64,
        last: u64,
    ) -> PortResult<CopiedPart>;
    /// Completes the upload with its parts in order (part numbers 1..), each with its ETag and
    /// checksum as UploadPartCopy returned them. Returns the object's ETag.
    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CopiedPart],
    ) -> PortResult<String>;
    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> PortResult<()>;
    /// Deletes `keys` (at most 1,000: one DeleteObjects request). Keys already gone count as
    /// deleted; any key S3 refused fails the call.
    async fn delete_objects(&self, bucket: &str, keys: &[String]) -> PortResult<()>;
    /// The bucket's versioning status (GetBucketVersioning): Some(`Enabled`) or
    /// Some(`Suspended`); None for a bucket that never had versioning enabled (S3 then
    /// answers no `Status`).
    async fn versioning(&self, bucket: &str) -> PortResult<Option<String>>;
    /// Whether the bucket's lifecycle configuration may remove noncurrent versions (an enabled
    /// rule with `NoncurrentVersionExpiration`; GetBucketLifecycleConfiguration). True when
    /// it cannot be told (the configuration unreadable): a version a copy as of a past moment
    /// needs may then be gone from the listing.
    async fn noncurrent_versions_expire(&self, _bucket: &str) -> PortResult<bool> {
        Ok(true)
    }
    /// A page (≤ 1,000) of every object version and delete marker of the bucket
    /// (ListObjectVersions), after the (key, version id) `marker`.
    async fn list_versions_page(
        &self,
        bucket: &str,
        marker: Option<(String, String)>,
    ) -> PortResult<VersionPage>;
    /// Deletes these versions and delete markers for good (at most 1,000: one DeleteObjects
    /// request with a VersionId per key). Versions already gone count as deleted; any S3
    /// refused fails the call.
    async fn delete_versions(&self, bucket: &str, versions: &[ObjectVersion]) -> PortResult<()>;
    /// Writes a small object. `condition`: None unconditionally, Some("*") only if absent
    /// (If-None-Match), Some(etag) only if unchanged (If-Match). Returns the new ETag.
    async fn put_small_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        condition: Option<&str>,
    ) -> PortResult<String>;
    /// Reads a small object, its ETag and its LastModified; None if absent.
    async fn get_small_object(&self, bucket: &str, key: &str) -> PortResult<Option<SmallObject>>;
    async fn delete_object(&self, bucket: &str, key: &str) -> PortResult<()>;
    /// Deletes an empty bucket.
    async fn delete_bucket(&self, bucket: &str) -> PortResult<()>;
    /// MD5 of the object's bytes (read through this process). Only for verifying copies whose
    /// ETags cannot be compared; never on the copy path.
    async fn content_md5(&self, bucket: &str, key: &str) -> PortResult<String> {
        self.content_md5_version(bucket, key, None).await
    }
    /// `content_md5` of version `version` (None: the current one).
    async fn content_md5_version(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> PortResult<String>;
    /// Gives `target` (a bucket envclone just created) `source`'s configuration: versioning,
    /// default encryption, public access block, ownership controls, CORS, lifecycle, tags
    /// (merged under `target`'s own, which win) and the bucket policy with `source`'s ARNs
    /// rewritten to `target`'s. What it cannot carry (event notifications, replication, MFA
    /// delete, anything S3 refused to put) is listed in `not_carried`, never an error: the
    /// copy of the objects goes on.
    async fn copy_bucket_configuration(
        &self,
        source: &str,
        target: &str,
    ) -> PortResult<BucketConfigReport>;
    /// The bucket's S3 Inventory configurations (ListBucketInventoryConfigurations, every
    /// page); NotFound if the bucket does not exist.
    async fn inventory_configurations(
        &self,
        bucket: &str,
    ) -> PortResult<Vec<InventoryConfiguration>>;
}

/// An S3 Inventory configuration of a bucket, as ListBucketInventoryConfigurations gives it
/// ("Configuring Amazon S3 Inventory"): S3 delivers the inventory report daily or weekly into
/// the destination bucket (see `s3batch::inventory`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryConfiguration {
    pub id: String,
    pub enabled: bool,
    /// The destination bucket's name (the configuration holds its ARN).
    pub destination_bucket: String,
    /// The optional key prefix of the reports in the destination bucket.
    pub destination_prefix: Option<String>,
    /// `CSV`, `ORC` or `Parquet`.
    pub format: String,
    /// `Current` or `All` (every version).
    pub included_versions: String,
    /// The configuration's filter: only keys under it are listed.
    pub filter_prefix: Option<String>,
    /// `Daily` or `Weekly`.
    pub frequency: String,
}

/// What `copy_bucket_configuration` carried to the new bucket, and what it did not (each with
/// what the operator has to do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketConfigReport {
    pub carried: Vec<String>,
    pub not_carried: Vec<String>,
}

/// The bucket policy of `source` made to name `target`: every ARN of the source bucket
/// (`arn:<partition>:s3:::SOURCE` and `arn:<partition>:s3:::SOURCE/...`) becomes the target's;
/// other buckets whose names start with the source's (`SOURCE-logs`) are left alone.
pub fn rewrite_bucket_policy(policy: &str, source: &str, target: &str) -> String {
    let from = format!(":s3:::{source}");
    let to = format!(":s3:::{target}");
    let mut out = String::with_capacity(policy.len());
    let mut rest = policy;
    while let Some(i) = rest.find(&from) {
        let after = &rest[i + from.len()..];
        out.push_str(&rest[..i]);
        if after.starts_with('"') || after.starts_with('/') {
            out.push_str(&to);
        } else {
            out.push_str(&from);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// `https://BUCKET.s3.REGION.amazonaws.com/KEY` (path style, `https://s3.REGION.amazonaws.com/
/// BUCKET/KEY`, for a bucket name with dots), the key's characters percent-encoded except `/`
/// and the unreserved ones (S3 User Guide, "Methods for accessing a bucket" / "Creating object
/// key names").
pub fn s3_object_url(region: &str, bucket: &str, key: &str) -> String {
    let mut encoded = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    if bucket.contains('.') {
        format!("https://s3.{region}.{suffix}/{bucket}/{encoded}")
    } else {
        format!("https://{bucket}.s3.{region}.{suffix}/{encoded}")
    }
}

/// The (bucket, key) of an S3 URL as `s3_object_url` makes them (either style); None for any
/// other URL.
pub fn parse_s3_object_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("https://")?;
    let (host, path) = rest.split_once('/')?;
    let decoded = percent_decode(path)?;
    let host = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    if let Some(region) = host.strip_prefix("s3.") {
        if region.contains('.') {
            return None;
        }
        let (bucket, key) = decoded.split_once('/')?;
        return Some((bucket.to_string(), key.to_string()));
    }
    let (bucket, _region) = host.split_once(".s3.")?;
    (!decoded.is_empty()).then(|| (bucket.to_string(), decoded))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Tags S3 keeps for itself (`aws:cloudformation:stack-name` on a stack's bucket): a
/// PutBucketTagging naming one is refused ("Using cost allocation S3 bucket tags": "aws:" is
/// reserved), so they are not copied.
pub fn is_aws_reserved_tag(key: &str) -> bool {
    key.starts_with("aws:")
}

/// `source`'s tags under `own`, which win; without S3's reserved `aws:` tags.
pub fn merged_bucket_tags(
    source: &BTreeMap<String, String>,
    own: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut tags: BTreeMap<String, String> = source
        .iter()
        .filter(|(k, _)| !is_aws_reserved_tag(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    tags.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    tags
}

#[cfg(test)]
mod bucket_config_tests {
    use super::*;

    #[test]
    fn policy_names_the_new_bucket_and_leaves_other_buckets() {
        let policy = r#"{"Statement":[{"Resource":["arn:aws:s3:::prod-data","arn:aws:s3:::prod-data/*","arn:aws:s3:::prod-data-logs/*"]},{"Resource":"arn:aws-cn:s3:::prod-data/in/*"}]}"#;
        assert_eq!(
            rewrite_bucket_policy(policy, "prod-data", "clone-data"),
            r#"{"Statement":[{"Resource":["arn:aws:s3:::clone-data","arn:aws:s3:::clone-data/*","arn:aws:s3:::prod-data-logs/*"]},{"Resource":"arn:aws-cn:s3:::clone-data/in/*"}]}"#
        );
    }

    #[test]
    fn object_urls_are_read_back() {
        let url = s3_object_url("eu-west-1", "envclone-tpl-1", "runs/a b/template.json");
        assert_eq!(
            url,
            "https://envclone-tpl-1.s3.eu-west-1.amazonaws.com/runs/a%20b/template.json"
        );
        assert_eq!(
            parse_s3_object_url(&url),
            Some(("envclone-tpl-1".into(), "runs/a b/template.json".into()))
        );
        let dotted = s3_object_url("us-east-1", "state.example.com", "k/t.json");
        assert_eq!(
            dotted,
            "https://s3.us-east-1.amazonaws.com/state.example.com/k/t.json"
        );
        assert_eq!(
            parse_s3_object_url(&dotted),
            Some(("state.example.com".into(), "k/t.json".into()))
        );
        assert_eq!(parse_s3_object_url("http://example.com/x"), None);
    }

    #[test]
    fn own_tags_win_and_reserved_tags_stay_behind() {
        let source = BTreeMap::from([
            ("team".to_string(), "data".to_string()),
            ("envclone:run".to_string(), "old".to_string()),
            (
                "aws:cloudformation:stack-name".to_string(),
                "prod".to_string(),
            ),
        ]);
        let own = BTreeMap::from([("envclone:run".to_string(), "new".to_string())]);
        let merged = merged_bucket_tags(&source, &own);
        assert_eq!(
            merged,
            BTreeMap::from([
                ("team".to_string(), "data".to_string()),
                ("envclone:run".to_string(), "new".to_string()),
            ])
        );
    }
}

// ---------------------------------------------------------------- Route 53

/// A Route 53 resource record set, whole: what `ListResourceRecordSets` returns and
/// `ChangeResourceRecordSets` UPSERT takes (the record is identified by name, type and set
/// identifier). Kept whole in a migration's state, so an abort restores it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct DnsRecord {
    pub name: String,
    pub record_type: String,
    /// The values of a plain record (empty for an alias record).
    pub values: Vec<String>,
    /// None for an alias record (Route 53 uses the target's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<AliasTarget>,
    /// Weighted, latency, failover, multivalue… records of one name are told apart by this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_id: Option<String>,
}

impl DnsRecord {
    /// A simple CNAME record.
    pub fn cname(name: &str, target: &str, ttl: i64) -> Self {
        DnsRecord {
            name: name.to_string(),
            record_type: "CNAME".into(),
            values: vec![target.to_string()],
            ttl: Some(ttl),
            ..DnsRecord::default()
        }
    }

    /// The host name the record sends clients to: an alias target's DNS name or a CNAME's value.
    pub fn target(&self) -> Option<&str> {
        match &self.alias {
            Some(alias) => Some(&alias.dns_name),
            None if self.record_type == "CNAME" => self.values.first().map(String::as_str),
            None => None,
        }
    }
}

/// An alias record's target (AliasTarget): for a load balancer, its DNS name and its canonical
/// hosted zone id (not the zone of the record).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct AliasTarget {
    pub hosted_zone_id: String,
    pub dns_name: String,
    pub evaluate_target_health: bool,
}

/// A record's routing policy (other than simple).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    Weighted {
        weight: i64,
    },
    /// Latency-based: the AWS region.
    Latency {
        region: String,
    },
    /// `PRIMARY` or `SECONDARY`.
    Failover {
        role: String,
    },
    MultiValue,
    /// Geolocation, geoproximity or IP-based routing: read, not written by envclone.
    Other {
        description: String,
    },
}

/// A Route 53 hosted zone. A public and a private zone may share a name (split horizon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedZone {
    /// Without the `/hostedzone/` prefix.
    pub id: String,
    /// Fully qualified (`example.com.`).
    pub name: String,
    pub private: bool,
}

#[async_trait]
pub trait Dns: Send + Sync {
    /// The hosted zones named `name` (ListHostedZonesByName, exact matches only).
    async fn zones_named(&self, name: &str) -> PortResult<Vec<HostedZone>>;
    /// The hosted zone `id` (GetHostedZone); None if there is none.
    async fn zone(&self, id: &str) -> PortResult<Option<HostedZone>>;
    /// The records named `name` in hosted zone `zone_id`, whole.
    async fn records(&self, zone_id: &str, name: &str) -> PortResult<Vec<DnsRecord>>;
    /// UPSERTs `record`, whole, in zone `zone_id`; returns the change id.
    async fn upsert(&self, zone_id: &str, record: &DnsRecord) -> PortResult<String>;
    /// Whether the change has reached every Route 53 server (INSYNC).
    async fn change_in_sync(&self, change_id: &str) -> PortResult<bool>;
}

// ---------------------------------------------------------------- HTTP checks

#[async_trait]
pub trait HttpProbe: Send + Sync {
    /// GET `url`; the status code.
    async fn get_status(&self, url: &str) -> PortResult<u16>;
}

/// Runs the operator's hook commands.
#[async_trait]
pub trait HookRunner: Send + Sync {
    /// Runs `command` with `env` added to the environment; Err says why it failed (exit status,
    /// the end of its output, or the timeout).
    async fn run(
        &self,
        command: &str,
        env: &BTreeMap<String, String>,
        timeout: std::time::Duration,
    ) -> Result<(), String>;
}

/// Wall-clock time: run ids, record stamps, `--deadline` and `--ttl`, the copy-on-write point,
/// the entry record's TTL wait. The one place the product reads the system time is
/// [`SystemClock`]; the fake's clock follows tokio's (paused) clock, so a test that lets the
/// fake's minutes pass sees deadlines pass too.
pub trait Clock: Send + Sync {
    fn now(&self) -> chrono::DateTime<chrono::Utc>;
}

/// This machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
}

/// Everything the workflow may touch, as one bundle.
#[derive(Clone)]
pub struct Cloud {
    pub stacks: std::sync::Arc<dyn Stacks>,
    pub databases: std::sync::Arc<dyn Databases>,
    pub scaling: std::sync::Arc<dyn Scaling>,
    pub objects: std::sync::Arc<dyn ObjectStore>,
    pub dns: std::sync::Arc<dyn Dns>,
    pub http: std::sync::Arc<dyn HttpProbe>,
    pub hooks: std::sync::Arc<dyn HookRunner>,
    pub clock: std::sync::Arc<dyn Clock>,
    /// DynamoDB tables.
    pub tables: std::sync::Arc<dyn tables::Tables>,
    /// S3 Batch Operations jobs (S3 Control).
    pub jobs: std::sync::Arc<dyn batch::BatchJobs>,
}
