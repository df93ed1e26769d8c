//! The CloudFormation adapter: `Stacks` over `aws_sdk_cloudformation` (stacks, their
//! templates and resources, creation, deletion, termination protection).

use async_trait::async_trait;

use super::{port_error, CallRecord, SdkConfig};
use crate::ports::*;

pub struct CloudFormation(aws_sdk_cloudformation::Client);

impl CloudFormation {
    /// The adapter over a client of `config` that records its calls to `calls`.
    pub(super) fn new(config: &SdkConfig, calls: &CallRecord) -> CloudFormation {
        CloudFormation(aws_sdk_cloudformation::Client::from_conf(
            aws_sdk_cloudformation::config::Builder::from(config)
                .interceptor(calls.clone())
                .build(),
        ))
    }
}

fn stack_info(s: &aws_sdk_cloudformation::types::Stack) -> StackInfo {
    StackInfo {
        name: s.stack_name().unwrap_or_default().to_string(),
        id: s.stack_id().unwrap_or_default().to_string(),
        status: StackStatus::from_aws(s.stack_status().map(|x| x.as_str()).unwrap_or_default()),
        status_reason: s.stack_status_reason().map(str::to_string),
        parameters: s
            .parameters()
            .iter()
            .map(|p| {
                (
                    p.parameter_key().unwrap_or_default().to_string(),
                    p.parameter_value().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        outputs: s
            .outputs()
            .iter()
            .map(|o| {
                (
                    o.output_key().unwrap_or_default().to_string(),
                    o.output_value().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        tags: s
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        capabilities: s
            .capabilities()
            .iter()
            .map(|c| c.as_str().to_string())
            .collect(),
        created: s
            .creation_time()
            .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
        termination_protection: s.enable_termination_protection().unwrap_or(false),
    }
}

#[async_trait]
impl Stacks for CloudFormation {
    async fn describe_stack(&self, name: &str) -> PortResult<Option<StackInfo>> {
        let what = format!("stack {name}");
        match self.0.describe_stacks().stack_name(name).send().await {
            Ok(out) => Ok(out
                .stacks()
                .iter()
                .find(|s| s.stack_status().map(|x| x.as_str()) != Some("DELETE_COMPLETE"))
                .map(stack_info)),
            Err(e) => match port_error("cloudformation:DescribeStacks", &what, e) {
                PortError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn find_stacks_by_tag(&self, key: &str, value: &str) -> PortResult<Vec<StackInfo>> {
        let mut found = self.stacks_with_tag(key).await?;
        found.retain(|s| s.tags.get(key).map(String::as_str) == Some(value));
        Ok(found)
    }

    async fn stacks_with_tag(&self, key: &str) -> PortResult<Vec<StackInfo>> {
        let mut pages = self.0.describe_stacks().into_paginator().send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| port_error("cloudformation:DescribeStacks", "stacks", e))?;
            for s in page.stacks() {
                let tagged = s.tags().iter().any(|t| t.key() == Some(key));
                let live = s.stack_status().map(|x| x.as_str()) != Some("DELETE_COMPLETE");
                // A nested stack carries its root's tags (CloudFormation propagates stack
                // tags to nested stacks): it is part of its root's environment, not one.
                let root = s.parent_id().is_none_or(str::is_empty);
                if tagged && live && root {
                    found.push(stack_info(s));
                }
            }
        }
        Ok(found)
    }

    async fn template_body(&self, stack: &str) -> PortResult<String> {
        let out = self
            .0
            .get_template()
            .stack_name(stack)
            .send()
            .await
            .map_err(|e| port_error("cloudformation:GetTemplate", &format!("stack {stack}"), e))?;
        Ok(out.template_body().unwrap_or_default().to_string())
    }

    async fn resources(&self, stack: &str) -> PortResult<Vec<StackResource>> {
        let mut pages = self
            .0
            .list_stack_resources()
            .stack_name(stack)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                port_error(
                    "cloudformation:ListStackResources",
                    &format!("stack {stack}"),
                    e,
                )
            })?;
            for r in page.stack_resource_summaries() {
                out.push(StackResource {
                    logical_id: r.logical_resource_id().unwrap_or_default().to_string(),
                    physical_id: r
                        .physical_resource_id()
                        .filter(|p| !p.is_empty())
                        .map(str::to_string),
                    resource_type: r.resource_type().unwrap_or_default().to_string(),
                    status: ResourceStatus::from_aws(
                        r.resource_status().map(|s| s.as_str()).unwrap_or_default(),
                    ),
                });
            }
        }
        Ok(out)
    }

    async fn create_stack(&self, request: &CreateStackRequest) -> PortResult<String> {
        use aws_sdk_cloudformation::types::{Capability, Parameter, Tag};
        let mut call = self
            .0
            .create_stack()
            .stack_name(&request.name)
            .client_request_token(&request.client_token);
        call = match &request.template {
            TemplateSource::Body(body) => call.template_body(body),
            TemplateSource::Url(url) => call.template_url(url),
        };
        for (k, v) in &request.parameters {
            call = call.parameters(
                Parameter::builder()
                    .parameter_key(k)
                    .parameter_value(v)
                    .build(),
            );
        }
        for (k, v) in &request.tags {
            call = call.tags(Tag::builder().key(k).value(v).build());
        }
        for c in &request.capabilities {
            call = call.capabilities(Capability::from(c.as_str()));
        }
        let out = call.send().await.map_err(|e| {
            port_error(
                "cloudformation:CreateStack",
                &format!("stack {}", request.name),
                e,
            )
        })?;
        Ok(out.stack_id().unwrap_or_default().to_string())
    }

    async fn delete_stack(&self, name: &str, retain: &[String]) -> PortResult<()> {
        let mut call = self.0.delete_stack().stack_name(name);
        if !retain.is_empty() {
            call = call.set_retain_resources(Some(retain.to_vec()));
        }
        call.send()
            .await
            .map_err(|e| port_error("cloudformation:DeleteStack", &format!("stack {name}"), e))?;
        Ok(())
    }

    async fn set_termination_protection(&self, name: &str, enabled: bool) -> PortResult<()> {
        self.0
            .update_termination_protection()
            .stack_name(name)
            .enable_termination_protection(enabled)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "cloudformation:UpdateTerminationProtection",
                    &format!("stack {name}"),
                    e,
                )
            })?;
        Ok(())
    }
}
