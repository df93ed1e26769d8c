//! The Auto Scaling adapter: `Scaling` over `aws_sdk_autoscaling` (groups, Standby, suspended
//! processes, scaling activities).

use async_trait::async_trait;

use super::{port_error, CallRecord, SdkConfig};
use crate::ports::*;

pub struct AutoScaling(aws_sdk_autoscaling::Client);

impl AutoScaling {
    /// The adapter over a client of `config` that records its calls to `calls`.
    pub(super) fn new(config: &SdkConfig, calls: &CallRecord) -> AutoScaling {
        AutoScaling(aws_sdk_autoscaling::Client::from_conf(
            aws_sdk_autoscaling::config::Builder::from(config)
                .interceptor(calls.clone())
                .build(),
        ))
    }
}

#[async_trait]
impl Scaling for AutoScaling {
    async fn describe_group(&self, name: &str) -> PortResult<Option<AsgInfo>> {
        let out = self
            .0
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "autoscaling:DescribeAutoScalingGroups",
                    &format!("Auto Scaling group {name}"),
                    e,
                )
            })?;
        Ok(out.auto_scaling_groups().first().map(|g| AsgInfo {
            name: g.auto_scaling_group_name().unwrap_or_default().to_string(),
            min_size: g.min_size().unwrap_or_default(),
            max_size: g.max_size().unwrap_or_default(),
            desired_capacity: g.desired_capacity().unwrap_or_default(),
            instances: g
                .instances()
                .iter()
                .map(|i| AsgInstance {
                    id: i.instance_id().unwrap_or_default().to_string(),
                    lifecycle_state: LifecycleState::from_aws(
                        i.lifecycle_state().map(|s| s.as_str()).unwrap_or_default(),
                    ),
                    health_status: HealthStatus::from_aws(i.health_status().unwrap_or_default()),
                })
                .collect(),
            suspended_processes: g
                .suspended_processes()
                .iter()
                .filter_map(|p| p.process_name().map(str::to_string))
                .collect(),
        }))
    }

    async fn update_sizes(
        &self,
        name: &str,
        min_size: Option<i32>,
        max_size: Option<i32>,
        desired: Option<i32>,
    ) -> PortResult<()> {
        self.0
            .update_auto_scaling_group()
            .auto_scaling_group_name(name)
            .set_min_size(min_size)
            .set_max_size(max_size)
            .set_desired_capacity(desired)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "autoscaling:UpdateAutoScalingGroup",
                    &format!("Auto Scaling group {name}"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn suspend_processes(&self, name: &str, processes: &[String]) -> PortResult<()> {
        self.0
            .suspend_processes()
            .auto_scaling_group_name(name)
            .set_scaling_processes(Some(processes.to_vec()))
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "autoscaling:SuspendProcesses",
                    &format!("Auto Scaling group {name}"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn resume_processes(&self, name: &str, processes: &[String]) -> PortResult<()> {
        self.0
            .resume_processes()
            .auto_scaling_group_name(name)
            .set_scaling_processes(Some(processes.to_vec()))
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "autoscaling:ResumeProcesses",
                    &format!("Auto Scaling group {name}"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn enter_standby(&self, name: &str, instance_ids: &[String]) -> PortResult<()> {
        self.0
            .enter_standby()
            .auto_scaling_group_name(name)
            .set_instance_ids(Some(instance_ids.to_vec()))
            .should_decrement_desired_capacity(true)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "autoscaling:EnterStandby",
                    &format!("Auto Scaling group {name}"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn exit_standby(&self, name: &str, instance_ids: &[String]) -> PortResult<()> {
        self.0
            .exit_standby()
            .auto_scaling_group_name(name)
            .set_instance_ids(Some(instance_ids.to_vec()))
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "autoscaling:ExitStandby",
                    &format!("Auto Scaling group {name}"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn activities_in_progress(&self, name: &str) -> PortResult<Vec<String>> {
        use aws_sdk_autoscaling::types::ScalingActivityStatusCode as Code;
        let out = self
            .0
            .describe_scaling_activities()
            .auto_scaling_group_name(name)
            .max_records(50)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "autoscaling:DescribeScalingActivities",
                    &format!("Auto Scaling group {name}"),
                    e,
                )
            })?;
        Ok(out
            .activities()
            .iter()
            .filter(|a| {
                !matches!(
                    a.status_code(),
                    Some(Code::Successful | Code::Failed | Code::Cancelled)
                )
            })
            .map(|a| a.description().unwrap_or_default().to_string())
            .collect())
    }
}
