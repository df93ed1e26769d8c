//! The Route 53 adapter: `Dns` over `aws_sdk_route53` (hosted zones, record sets, changes).

use async_trait::async_trait;

use super::{port_error, CallRecord, SdkConfig};
use crate::ports::*;

pub struct Route53(aws_sdk_route53::Client);

impl Route53 {
    /// The adapter over a client of `config` that records its calls to `calls`.
    pub(super) fn new(config: &SdkConfig, calls: &CallRecord) -> Route53 {
        Route53(aws_sdk_route53::Client::from_conf(
            aws_sdk_route53::config::Builder::from(config)
                .interceptor(calls.clone())
                .build(),
        ))
    }
}

fn dns_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with('.') {
        lower
    } else {
        format!("{lower}.")
    }
}

/// A record set as the workflow sees it, whole.
fn record_from_sdk(r: &aws_sdk_route53::types::ResourceRecordSet) -> DnsRecord {
    let routing = if let Some(w) = r.weight() {
        Some(Routing::Weighted { weight: w })
    } else if let Some(region) = r.region() {
        Some(Routing::Latency {
            region: region.as_str().to_string(),
        })
    } else if let Some(f) = r.failover() {
        Some(Routing::Failover {
            role: f.as_str().to_string(),
        })
    } else if r.multi_value_answer() == Some(true) {
        Some(Routing::MultiValue)
    } else if r.geo_location().is_some() {
        Some(Routing::Other {
            description: "geolocation".into(),
        })
    } else if r.geo_proximity_location().is_some() {
        Some(Routing::Other {
            description: "geoproximity".into(),
        })
    } else if r.cidr_routing_config().is_some() {
        Some(Routing::Other {
            description: "IP-based".into(),
        })
    } else {
        None
    };
    DnsRecord {
        name: r.name().to_string(),
        record_type: r.r#type().as_str().to_string(),
        values: r
            .resource_records()
            .iter()
            .map(|v| v.value().to_string())
            .collect(),
        ttl: r.ttl(),
        alias: r.alias_target().map(|a| AliasTarget {
            hosted_zone_id: a.hosted_zone_id().to_string(),
            dns_name: a.dns_name().to_string(),
            evaluate_target_health: a.evaluate_target_health(),
        }),
        set_identifier: r.set_identifier().map(str::to_string),
        routing,
        health_check_id: r.health_check_id().map(str::to_string),
    }
}

fn zone_from_sdk(z: &aws_sdk_route53::types::HostedZone) -> HostedZone {
    HostedZone {
        id: z.id().trim_start_matches("/hostedzone/").to_string(),
        name: dns_name(z.name()),
        private: z.config().is_some_and(|c| c.private_zone()),
    }
}

#[async_trait]
impl Dns for Route53 {
    async fn zones_named(&self, zone: &str) -> PortResult<Vec<HostedZone>> {
        // ListHostedZonesByName lists zones in name order from `dns_name` on: those with the
        // exact name (a public and private ones may share it) come first.
        let out = self
            .0
            .list_hosted_zones_by_name()
            .dns_name(zone)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "route53:ListHostedZonesByName",
                    &format!("hosted zone {zone}"),
                    e,
                )
            })?;
        Ok(out
            .hosted_zones()
            .iter()
            .filter(|z| dns_name(z.name()) == dns_name(zone))
            .map(zone_from_sdk)
            .collect())
    }

    async fn zone(&self, id: &str) -> PortResult<Option<HostedZone>> {
        match self.0.get_hosted_zone().id(id).send().await {
            Ok(out) => Ok(out.hosted_zone().map(zone_from_sdk)),
            Err(e) => match port_error("route53:GetHostedZone", &format!("hosted zone {id}"), e) {
                PortError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn records(&self, zone_id: &str, name: &str) -> PortResult<Vec<DnsRecord>> {
        // Records are listed in name order from `start_record_name`; a weighted or latency set
        // may span pages.
        let mut out = Vec::new();
        let (mut start_name, mut start_type, mut start_id) = (
            Some(dns_name(name)),
            None::<aws_sdk_route53::types::RrType>,
            None::<String>,
        );
        loop {
            let page = self
                .0
                .list_resource_record_sets()
                .hosted_zone_id(zone_id)
                .set_start_record_name(start_name.take())
                .set_start_record_type(start_type.take())
                .set_start_record_identifier(start_id.take())
                .send()
                .await
                .map_err(|e| {
                    port_error(
                        "route53:ListResourceRecordSets",
                        &format!("record {name} in hosted zone {zone_id}"),
                        e,
                    )
                })?;
            let mut past = false;
            for r in page.resource_record_sets() {
                if dns_name(r.name()) == dns_name(name) {
                    out.push(record_from_sdk(r));
                } else {
                    past = true;
                }
            }
            if past || !page.is_truncated() {
                return Ok(out);
            }
            start_name = page.next_record_name().map(str::to_string);
            start_type = page.next_record_type().cloned();
            start_id = page.next_record_identifier().map(str::to_string);
        }
    }

    async fn upsert(&self, zone_id: &str, record: &DnsRecord) -> PortResult<String> {
        use aws_sdk_route53::types::{
            AliasTarget as SdkAlias, Change, ChangeAction, ChangeBatch, ResourceRecord,
            ResourceRecordSet, ResourceRecordSetFailover, ResourceRecordSetRegion, RrType,
        };
        let op = "route53:ChangeResourceRecordSets";
        let build = |e: aws_sdk_route53::error::BuildError| PortError::failed(op, e.to_string());
        let mut set = ResourceRecordSet::builder()
            .name(&record.name)
            .r#type(RrType::from(record.record_type.as_str()))
            .set_ttl(record.ttl)
            .set_set_identifier(record.set_identifier.clone())
            .set_health_check_id(record.health_check_id.clone());
        for v in &record.values {
            set = set.resource_records(ResourceRecord::builder().value(v).build().map_err(build)?);
        }
        if let Some(a) = &record.alias {
            set = set.alias_target(
                SdkAlias::builder()
                    .hosted_zone_id(&a.hosted_zone_id)
                    .dns_name(&a.dns_name)
                    .evaluate_target_health(a.evaluate_target_health)
                    .build()
                    .map_err(build)?,
            );
        }
        set = match &record.routing {
            None => set,
            Some(Routing::Weighted { weight }) => set.weight(*weight),
            Some(Routing::Latency { region }) => {
                set.region(ResourceRecordSetRegion::from(region.as_str()))
            }
            Some(Routing::Failover { role }) => {
                set.failover(ResourceRecordSetFailover::from(role.as_str()))
            }
            Some(Routing::MultiValue) => set.multi_value_answer(true),
            Some(Routing::Other { description }) => {
                return Err(PortError::failed(
                    op,
                    format!("{description} routing is not written by envclone"),
                ))
            }
        };
        let change = Change::builder()
            .action(ChangeAction::Upsert)
            .resource_record_set(set.build().map_err(build)?)
            .build()
            .map_err(build)?;
        let out = self
            .0
            .change_resource_record_sets()
            .hosted_zone_id(zone_id)
            .change_batch(
                ChangeBatch::builder()
                    .changes(change)
                    .comment("envclone migrate")
                    .build()
                    .map_err(build)?,
            )
            .send()
            .await
            .map_err(|e| port_error(op, &format!("record {}", record.name), e))?;
        Ok(out
            .change_info()
            .map(|c| c.id().to_string())
            .unwrap_or_default())
    }

    async fn change_in_sync(&self, change_id: &str) -> PortResult<bool> {
        use aws_sdk_route53::types::ChangeStatus;
        let out = self
            .0
            .get_change()
            .id(change_id)
            .send()
            .await
            .map_err(|e| port_error("route53:GetChange", &format!("change {change_id}"), e))?;
        Ok(out
            .change_info()
            .map(|c| c.status() == &ChangeStatus::Insync)
            .unwrap_or(false))
    }
}
