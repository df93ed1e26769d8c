//! The RDS adapter: `Databases` over `aws_sdk_rds` (DB instances and Aurora clusters, their
//! snapshots and tags), with the interceptor that reads AWS's clock from a response.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{port_error, CallRecord, SdkConfig};
use crate::ports::*;

pub struct Rds(aws_sdk_rds::Client);

impl Rds {
    /// The adapter over a client of `config` that records its calls to `calls`.
    pub(super) fn new(config: &SdkConfig, calls: &CallRecord) -> Rds {
        Rds(aws_sdk_rds::Client::from_conf(
            aws_sdk_rds::config::Builder::from(config)
                .interceptor(calls.clone())
                .build(),
        ))
    }
}

impl Rds {
    /// AddTagsToResource on a DB instance's or cluster's ARN (`what` names it in errors).
    async fn add_tags(
        &self,
        arn: String,
        tags: &BTreeMap<String, String>,
        what: &str,
    ) -> PortResult<()> {
        self.0
            .add_tags_to_resource()
            .resource_name(arn)
            .set_tags(rds_tag_list(tags))
            .send()
            .await
            .map_err(|e| port_error("rds:AddTagsToResource", what, e))?;
        Ok(())
    }
}

/// The request's tag list; none at all when there are no tags (as the builder sends nothing).
fn rds_tag_list(tags: &BTreeMap<String, String>) -> Option<Vec<aws_sdk_rds::types::Tag>> {
    (!tags.is_empty()).then(|| {
        tags.iter()
            .map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(k).value(v).build())
            .collect()
    })
}

fn db_snapshot(s: &aws_sdk_rds::types::DbSnapshot) -> DbSnapshot {
    DbSnapshot {
        id: s.db_snapshot_identifier().unwrap_or_default().to_string(),
        instance_id: s.db_instance_identifier().unwrap_or_default().to_string(),
        status: SnapshotStatus::from_aws(s.status().unwrap_or_default()),
        tags: rds_tags(s.tag_list()),
        created: s
            .snapshot_create_time()
            .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
    }
}

fn db_cluster_snapshot(s: &aws_sdk_rds::types::DbClusterSnapshot) -> DbSnapshot {
    DbSnapshot {
        id: s
            .db_cluster_snapshot_identifier()
            .unwrap_or_default()
            .to_string(),
        instance_id: s.db_cluster_identifier().unwrap_or_default().to_string(),
        status: SnapshotStatus::from_aws(s.status().unwrap_or_default()),
        tags: rds_tags(s.tag_list()),
        created: s
            .snapshot_create_time()
            .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
    }
}

/// Keeps the `Date` header of a response: AWS's clock, to compare with the times AWS reports.
#[derive(Debug, Clone, Default)]
struct ServerDate(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl ServerDate {
    fn time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let date = self.0.lock().ok()?.clone()?;
        chrono::DateTime::parse_from_rfc2822(&date)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }
}

impl aws_sdk_rds::config::Intercept for ServerDate {
    fn name(&self) -> &'static str {
        "envclone-server-date"
    }

    fn read_after_transmit(
        &self,
        context: &aws_sdk_rds::config::interceptors::BeforeDeserializationInterceptorContextRef<'_>,
        _: &aws_sdk_rds::config::RuntimeComponents,
        _: &mut aws_sdk_rds::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if let Some(date) = context.response().headers().get("date") {
            if let Ok(mut slot) = self.0.lock() {
                *slot = Some(date.to_string());
            }
        }
        Ok(())
    }
}

fn db_cluster(c: &aws_sdk_rds::types::DbCluster) -> DbCluster {
    DbCluster {
        id: c.db_cluster_identifier().unwrap_or_default().to_string(),
        status: DbStatus::from_aws(c.status().unwrap_or_default()),
        engine: c.engine().unwrap_or_default().to_string(),
        engine_mode: c.engine_mode().unwrap_or("provisioned").to_string(),
        latest_restorable_time: c
            .latest_restorable_time()
            .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
        clone_group_id: c.clone_group_id().map(str::to_string),
        server_time: None,
        endpoint: c.endpoint().map(str::to_string),
        members: c
            .db_cluster_members()
            .iter()
            .filter_map(|m| m.db_instance_identifier().map(str::to_string))
            .collect(),
        backup_retention_period: c.backup_retention_period().unwrap_or(0),
        deletion_protection: c.deletion_protection().unwrap_or(false),
        tags: rds_tags(c.tag_list()),
        pending_rename: c
            .pending_modified_values()
            .and_then(|p| p.db_cluster_identifier())
            .map(str::to_string),
        pending_changes: c
            .pending_modified_values()
            .map(cluster_pending_changes)
            .unwrap_or_default(),
    }
}

/// What a cluster's `PendingModifiedValues` holds besides a rename, in words; a field not
/// named here still counts ("other pending modifications").
fn cluster_pending_changes(p: &aws_sdk_rds::types::ClusterPendingModifiedValues) -> Vec<String> {
    let mut rest = p.clone();
    rest.db_cluster_identifier = None;
    // Not changes waiting: Aurora's AllocatedStorage "always returns 1" (its storage grows by
    // itself), and CertificateDetails describe the server certificate in use.
    rest.allocated_storage = None;
    rest.certificate_details = None;
    let mut out = Vec::new();
    if let Some(v) = rest.engine_version.take() {
        out.push(format!("engine version {v}"));
    }
    if let Some(v) = rest.backup_retention_period.take() {
        out.push(format!("backup retention {v} days"));
    }
    if let Some(v) = rest.storage_type.take() {
        out.push(format!("storage type {v}"));
    }
    if let Some(v) = rest.iops.take() {
        out.push(format!("{v} IOPS"));
    }
    if rest.master_user_password.take().is_some() {
        out.push("a new master user password".into());
    }
    if let Some(v) = rest.iam_database_authentication_enabled.take() {
        out.push(format!("IAM database authentication {}", on_off(v)));
    }
    if rest != aws_sdk_rds::types::ClusterPendingModifiedValues::builder().build() {
        out.push("other pending modifications".into());
    }
    out
}

/// What an instance's `PendingModifiedValues` holds besides a rename, and its parameter
/// groups `pending-reboot`, in words; a field not named here still counts ("other pending
/// modifications").
fn instance_pending_changes(db: &aws_sdk_rds::types::DbInstance) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = db.pending_modified_values() {
        let mut rest = p.clone();
        rest.db_instance_identifier = None;
        if let Some(v) = rest.db_instance_class.take() {
            out.push(format!("instance class {v}"));
        }
        if let Some(v) = rest.engine_version.take() {
            out.push(format!("engine version {v}"));
        }
        if let Some(v) = rest.allocated_storage.take() {
            out.push(format!("allocated storage {v} GiB"));
        }
        if let Some(v) = rest.storage_type.take() {
            out.push(format!("storage type {v}"));
        }
        if let Some(v) = rest.iops.take() {
            out.push(format!("{v} IOPS"));
        }
        if let Some(v) = rest.storage_throughput.take() {
            out.push(format!("storage throughput {v} MiB/s"));
        }
        if let Some(v) = rest.multi_az.take() {
            out.push(format!("Multi-AZ {}", on_off(v)));
        }
        if let Some(v) = rest.port.take() {
            out.push(format!("port {v}"));
        }
        if let Some(v) = rest.backup_retention_period.take() {
            out.push(format!("backup retention {v} days"));
        }
        if let Some(v) = rest.ca_certificate_identifier.take() {
            out.push(format!("CA certificate {v}"));
        }
        if let Some(v) = rest.db_subnet_group_name.take() {
            out.push(format!("subnet group {v}"));
        }
        if rest.master_user_password.take().is_some() {
            out.push("a new master user password".into());
        }
        if rest != aws_sdk_rds::types::PendingModifiedValues::builder().build() {
            out.push("other pending modifications".into());
        }
    }
    for group in db.db_parameter_groups() {
        if group.parameter_apply_status() == Some("pending-reboot") {
            out.push(format!(
                "parameter group {} pending-reboot",
                group.db_parameter_group_name().unwrap_or_default()
            ));
        }
    }
    out
}

fn on_off(enabled: bool) -> &'static str {
    if enabled {
        "on"
    } else {
        "off"
    }
}

fn rds_tags(tags: &[aws_sdk_rds::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[async_trait]
impl Databases for Rds {
    async fn describe_instance(&self, id: &str) -> PortResult<Option<DbInstance>> {
        let what = format!("database {id}");
        match self
            .0
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
        {
            Ok(out) => Ok(out.db_instances().first().map(|db| DbInstance {
                id: db.db_instance_identifier().unwrap_or_default().to_string(),
                status: DbStatus::from_aws(db.db_instance_status().unwrap_or_default()),
                engine: db.engine().unwrap_or_default().to_string(),
                endpoint: db.endpoint().and_then(|e| e.address()).map(str::to_string),
                deletion_protection: db.deletion_protection().unwrap_or(false),
                tags: rds_tags(db.tag_list()),
                backup_retention_period: db.backup_retention_period().unwrap_or(0),
                latest_restorable_time: db
                    .latest_restorable_time()
                    .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
                pending_rename: db
                    .pending_modified_values()
                    .and_then(|p| p.db_instance_identifier())
                    .map(str::to_string),
                pending_changes: instance_pending_changes(db),
            })),
            Err(e) => match port_error("rds:DescribeDBInstances", &what, e) {
                PortError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn create_snapshot(
        &self,
        instance_id: &str,
        snapshot_id: &str,
        tags: &BTreeMap<String, String>,
    ) -> PortResult<()> {
        self.0
            .create_db_snapshot()
            .db_instance_identifier(instance_id)
            .db_snapshot_identifier(snapshot_id)
            .set_tags(rds_tag_list(tags))
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "rds:CreateDBSnapshot",
                    &format!("DB snapshot {snapshot_id}"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn describe_snapshot(&self, id: &str) -> PortResult<Option<DbSnapshot>> {
        let what = format!("DB snapshot {id}");
        match self
            .0
            .describe_db_snapshots()
            .db_snapshot_identifier(id)
            .send()
            .await
        {
            Ok(out) => Ok(out.db_snapshots().first().map(db_snapshot)),
            Err(e) => match port_error("rds:DescribeDBSnapshots", &what, e) {
                PortError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn rename_instance(&self, id: &str, new_id: &str) -> PortResult<()> {
        self.0
            .modify_db_instance()
            .db_instance_identifier(id)
            .new_db_instance_identifier(new_id)
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| port_error("rds:ModifyDBInstance", &format!("database {id}"), e))?;
        Ok(())
    }

    async fn set_deletion_protection(&self, id: &str, enabled: bool) -> PortResult<()> {
        self.0
            .modify_db_instance()
            .db_instance_identifier(id)
            .deletion_protection(enabled)
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| port_error("rds:ModifyDBInstance", &format!("database {id}"), e))?;
        Ok(())
    }

    async fn tag_instance(&self, id: &str, tags: &BTreeMap<String, String>) -> PortResult<()> {
        let what = format!("database {id}");
        let out = self
            .0
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
            .map_err(|e| port_error("rds:DescribeDBInstances", &what, e))?;
        let arn = out
            .db_instances()
            .first()
            .and_then(|d| d.db_instance_arn())
            .ok_or_else(|| PortError::NotFound { what: what.clone() })?
            .to_string();
        self.add_tags(arn, tags, &what).await
    }

    async fn snapshots_of_instance(&self, instance_id: &str) -> PortResult<Vec<DbSnapshot>> {
        let mut pages = self
            .0
            .describe_db_snapshots()
            .db_instance_identifier(instance_id)
            .snapshot_type("manual")
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                port_error(
                    "rds:DescribeDBSnapshots",
                    &format!("snapshots of {instance_id}"),
                    e,
                )
            })?;
            out.extend(page.db_snapshots().iter().map(db_snapshot));
        }
        Ok(out)
    }

    async fn instances_tagged(&self, key: &str, value: &str) -> PortResult<Vec<String>> {
        // DescribeDBInstances takes no tag filter; each instance's TagList comes with it.
        let mut pages = self.0.describe_db_instances().into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                port_error(
                    "rds:DescribeDBInstances",
                    &format!("DB instances tagged {key}={value}"),
                    e,
                )
            })?;
            out.extend(
                page.db_instances()
                    .iter()
                    .filter(|d| rds_tags(d.tag_list()).get(key).map(String::as_str) == Some(value))
                    .filter_map(|d| d.db_instance_identifier().map(str::to_string)),
            );
        }
        Ok(out)
    }

    async fn delete_snapshot(&self, id: &str) -> PortResult<()> {
        self.0
            .delete_db_snapshot()
            .db_snapshot_identifier(id)
            .send()
            .await
            .map_err(|e| port_error("rds:DeleteDBSnapshot", &format!("DB snapshot {id}"), e))?;
        Ok(())
    }

    async fn describe_cluster(&self, id: &str) -> PortResult<Option<DbCluster>> {
        let what = format!("DB cluster {id}");
        let date = ServerDate::default();
        match self
            .0
            .describe_db_clusters()
            .db_cluster_identifier(id)
            .customize()
            .interceptor(date.clone())
            .send()
            .await
        {
            Ok(out) => Ok(out.db_clusters().first().map(|c| DbCluster {
                server_time: date.time(),
                ..db_cluster(c)
            })),
            Err(e) => match port_error("rds:DescribeDBClusters", &what, e) {
                PortError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn clusters_tagged(&self, key: &str, value: &str) -> PortResult<Vec<String>> {
        let mut pages = self.0.describe_db_clusters().into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                port_error(
                    "rds:DescribeDBClusters",
                    &format!("DB clusters tagged {key}={value}"),
                    e,
                )
            })?;
            out.extend(
                page.db_clusters()
                    .iter()
                    .filter(|c| rds_tags(c.tag_list()).get(key).map(String::as_str) == Some(value))
                    .filter_map(|c| c.db_cluster_identifier().map(str::to_string)),
            );
        }
        Ok(out)
    }

    async fn clusters_in_clone_group(&self, clone_group_id: &str) -> PortResult<usize> {
        // Counted over the region's clusters rather than with the `clone-group-id` filter, which
        // the local stand-in (moto) does not know; a region holds few clusters.
        let mut pages = self.0.describe_db_clusters().into_paginator().send();
        let mut count = 0;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                port_error(
                    "rds:DescribeDBClusters",
                    &format!("clone group {clone_group_id}"),
                    e,
                )
            })?;
            count += page
                .db_clusters()
                .iter()
                .filter(|c| c.clone_group_id() == Some(clone_group_id))
                .count();
        }
        Ok(count)
    }

    async fn create_cluster_snapshot(
        &self,
        cluster_id: &str,
        snapshot_id: &str,
        tags: &BTreeMap<String, String>,
    ) -> PortResult<()> {
        self.0
            .create_db_cluster_snapshot()
            .db_cluster_identifier(cluster_id)
            .db_cluster_snapshot_identifier(snapshot_id)
            .set_tags(rds_tag_list(tags))
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "rds:CreateDBClusterSnapshot",
                    &format!("DB cluster snapshot {snapshot_id}"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn describe_cluster_snapshot(&self, id: &str) -> PortResult<Option<DbSnapshot>> {
        let what = format!("DB cluster snapshot {id}");
        match self
            .0
            .describe_db_cluster_snapshots()
            .db_cluster_snapshot_identifier(id)
            .send()
            .await
        {
            Ok(out) => Ok(out.db_cluster_snapshots().first().map(db_cluster_snapshot)),
            Err(e) => match port_error("rds:DescribeDBClusterSnapshots", &what, e) {
                PortError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn delete_cluster_snapshot(&self, id: &str) -> PortResult<()> {
        self.0
            .delete_db_cluster_snapshot()
            .db_cluster_snapshot_identifier(id)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "rds:DeleteDBClusterSnapshot",
                    &format!("DB cluster snapshot {id}"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn snapshots_of_cluster(&self, cluster_id: &str) -> PortResult<Vec<DbSnapshot>> {
        let mut pages = self
            .0
            .describe_db_cluster_snapshots()
            .db_cluster_identifier(cluster_id)
            .snapshot_type("manual")
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                port_error(
                    "rds:DescribeDBClusterSnapshots",
                    &format!("snapshots of cluster {cluster_id}"),
                    e,
                )
            })?;
            out.extend(page.db_cluster_snapshots().iter().map(db_cluster_snapshot));
        }
        Ok(out)
    }

    async fn rename_cluster(&self, id: &str, new_id: &str) -> PortResult<()> {
        self.0
            .modify_db_cluster()
            .db_cluster_identifier(id)
            .new_db_cluster_identifier(new_id)
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| port_error("rds:ModifyDBCluster", &format!("DB cluster {id}"), e))?;
        Ok(())
    }

    async fn set_cluster_deletion_protection(&self, id: &str, enabled: bool) -> PortResult<()> {
        self.0
            .modify_db_cluster()
            .db_cluster_identifier(id)
            .deletion_protection(enabled)
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| port_error("rds:ModifyDBCluster", &format!("DB cluster {id}"), e))?;
        Ok(())
    }

    async fn tag_cluster(&self, id: &str, tags: &BTreeMap<String, String>) -> PortResult<()> {
        let what = format!("DB cluster {id}");
        let out = self
            .0
            .describe_db_clusters()
            .db_cluster_identifier(id)
            .send()
            .await
            .map_err(|e| port_error("rds:DescribeDBClusters", &what, e))?;
        let arn = out
            .db_clusters()
            .first()
            .and_then(|c| c.db_cluster_arn())
            .ok_or_else(|| PortError::NotFound { what: what.clone() })?
            .to_string();
        self.add_tags(arn, tags, &what).await
    }

    async fn delete_cluster(&self, id: &str) -> PortResult<()> {
        self.0
            .delete_db_cluster()
            .db_cluster_identifier(id)
            .skip_final_snapshot(true)
            .send()
            .await
            .map_err(|e| port_error("rds:DeleteDBCluster", &format!("DB cluster {id}"), e))?;
        Ok(())
    }

    async fn delete_instance(&self, id: &str) -> PortResult<()> {
        self.0
            .delete_db_instance()
            .db_instance_identifier(id)
            .skip_final_snapshot(true)
            .send()
            .await
            .map_err(|e| port_error("rds:DeleteDBInstance", &format!("database {id}"), e))?;
        Ok(())
    }

    async fn untag(&self, kind: DbKind, id: &str, keys: &[String]) -> PortResult<()> {
        let what = format!("database {id}");
        let arn = match kind {
            DbKind::Instance => self
                .0
                .describe_db_instances()
                .db_instance_identifier(id)
                .send()
                .await
                .map_err(|e| port_error("rds:DescribeDBInstances", &what, e))?
                .db_instances()
                .first()
                .and_then(|d| d.db_instance_arn())
                .map(str::to_string),
            DbKind::Cluster => self
                .0
                .describe_db_clusters()
                .db_cluster_identifier(id)
                .send()
                .await
                .map_err(|e| port_error("rds:DescribeDBClusters", &what, e))?
                .db_clusters()
                .first()
                .and_then(|c| c.db_cluster_arn())
                .map(str::to_string),
        }
        .ok_or_else(|| PortError::NotFound { what: what.clone() })?;
        self.0
            .remove_tags_from_resource()
            .resource_name(arn)
            .set_tag_keys(Some(keys.to_vec()))
            .send()
            .await
            .map_err(|e| port_error("rds:RemoveTagsFromResource", &what, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_rds::types::{
        ClusterPendingModifiedValues, DbInstance, DbParameterGroupStatus, PendingModifiedValues,
        ProcessorFeature,
    };

    /// A rename alone is no change waiting; any other field is, also one not named in words.
    #[test]
    fn pending_changes_are_what_waits_besides_a_rename() {
        let rename = PendingModifiedValues::builder()
            .db_instance_identifier("prod-db-old-1")
            .build();
        let db = DbInstance::builder()
            .pending_modified_values(rename.clone())
            .db_parameter_groups(
                DbParameterGroupStatus::builder()
                    .db_parameter_group_name("default.postgres16")
                    .parameter_apply_status("in-sync")
                    .build(),
            )
            .build();
        assert_eq!(instance_pending_changes(&db), Vec::<String>::new());

        let queued = PendingModifiedValues::builder()
            .db_instance_identifier("prod-db-old-1")
            .db_instance_class("db.m5.large")
            .processor_features(
                ProcessorFeature::builder()
                    .name("coreCount")
                    .value("2")
                    .build(),
            )
            .build();
        let db = DbInstance::builder()
            .pending_modified_values(queued)
            .db_parameter_groups(
                DbParameterGroupStatus::builder()
                    .db_parameter_group_name("prod-params")
                    .parameter_apply_status("pending-reboot")
                    .build(),
            )
            .build();
        assert_eq!(
            instance_pending_changes(&db),
            [
                "instance class db.m5.large",
                "other pending modifications",
                "parameter group prod-params pending-reboot"
            ]
        );

        // Aurora's AllocatedStorage "always returns 1": no change waiting.
        let cluster = ClusterPendingModifiedValues::builder()
            .db_cluster_identifier("prod-cluster-old-1")
            .allocated_storage(1)
            .build();
        assert_eq!(cluster_pending_changes(&cluster), Vec::<String>::new());
        let cluster = ClusterPendingModifiedValues::builder()
            .engine_version("16.4")
            .build();
        assert_eq!(cluster_pending_changes(&cluster), ["engine version 16.4"]);
    }
}
