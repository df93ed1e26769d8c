//! The entry DNS record as operators have it: found in the right hosted zone (by id where a
//! public and a private zone share the name), whole (type, TTL, alias target, routing policy,
//! set identifier, health check), pointed at the new environment by changing only its target,
//! and compared the way Route 53 returns names (lowercase, fully qualified).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::contract::EntryDns;
use crate::ports::{AliasTarget, DnsRecord, HostedZone, PortError, Routing};
use crate::retry::retry;

use super::engine::CloneEngine;
use super::{PreflightError, StepError};

/// What Route 53 uses as the TTL of an alias record to a load balancer: the target's, 60
/// seconds for Elastic Load Balancing ("Choosing between alias and non-alias records": the
/// TTL of an alias record is the AWS resource's; ELB's DNS records have a TTL of 60 s).
pub const ALIAS_TTL_SECONDS: i64 = 60;

/// Why the entry record cannot be used.
#[derive(Debug)]
pub enum EntryProblem {
    Missing(String),
    Refused(String),
    Port(PortError),
}

impl From<PortError> for EntryProblem {
    fn from(e: PortError) -> Self {
        EntryProblem::Port(e)
    }
}

impl From<EntryProblem> for PreflightError {
    fn from(p: EntryProblem) -> Self {
        match p {
            EntryProblem::Missing(what) => PreflightError::SourceMissing { what },
            EntryProblem::Refused(what) => PreflightError::Unsupported { what },
            EntryProblem::Port(e) => PreflightError::Aws(e),
        }
    }
}

impl EntryProblem {
    pub fn into_step(self, step: &str) -> StepError {
        match self {
            EntryProblem::Missing(message) | EntryProblem::Refused(message) => StepError::Refused {
                step: step.into(),
                message,
            },
            EntryProblem::Port(e) => StepError::port(step)(e),
        }
    }
}

/// A host name as Route 53 compares it: lowercase, without the final dot; an ELB alias
/// target's `dualstack.` prefix names the same load balancer.
pub fn host(name: &str) -> String {
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    lower
        .strip_prefix("dualstack.")
        .map(str::to_string)
        .unwrap_or(lower)
}

fn zone_id(id: &str) -> &str {
    id.trim_start_matches("/hostedzone/")
}

/// Whether two records are the same as Route 53 stores them (names and targets compared as
/// `host` does, everything else exactly).
pub fn same_record(a: &DnsRecord, b: &DnsRecord) -> bool {
    let alias = |r: &DnsRecord| {
        r.alias.as_ref().map(|t| {
            (
                zone_id(&t.hosted_zone_id).to_string(),
                host(&t.dns_name),
                t.evaluate_target_health,
            )
        })
    };
    let values = |r: &DnsRecord| {
        let mut v: Vec<String> = r
            .values
            .iter()
            .map(|v| {
                if r.record_type == "CNAME" {
                    host(v)
                } else {
                    v.clone()
                }
            })
            .collect();
        v.sort();
        v
    };
    host(&a.name) == host(&b.name)
        && a.record_type == b.record_type
        && a.ttl == b.ttl
        && a.set_identifier == b.set_identifier
        && a.routing == b.routing
        && a.health_check_id == b.health_check_id
        && alias(a) == alias(b)
        && values(a) == values(b)
}

/// How long resolvers may keep answering with `record` after it changed: its TTL (an alias
/// record's is its target's).
pub fn cache_time(record: &DnsRecord) -> Duration {
    let seconds = match (&record.alias, record.ttl) {
        (Some(_), _) => ALIAS_TTL_SECONDS,
        (None, Some(ttl)) => ttl,
        (None, None) => 0,
    };
    Duration::from_secs(seconds.max(0) as u64)
}

/// `before` pointed at the new environment: only its target changes (a CNAME's value, or an
/// alias target's DNS name and hosted zone id, from the new stack's outputs); type, TTL,
/// routing policy, set identifier and health check stay as they were.
pub fn retarget(
    before: &DnsRecord,
    dns: &EntryDns,
    stack: &str,
    outputs: &BTreeMap<String, String>,
) -> Result<DnsRecord, String> {
    let output = |name: &str| {
        outputs
            .get(name)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| {
                format!(
                    "the new stack {stack} has no output {name} (entry_dns); nothing was swapped"
                )
            })
    };
    let target = output(&dns.target_output)?;
    let mut after = before.clone();
    match &before.alias {
        Some(alias) => {
            let zone_output = dns.target_zone_output.as_deref().ok_or_else(|| {
                format!(
                    "the entry record {} is an alias: entry_dns.target_zone_output must name the \
                     output with the load balancer's canonical hosted zone id",
                    before.name
                )
            })?;
            after.alias = Some(AliasTarget {
                hosted_zone_id: output(zone_output)?,
                dns_name: target,
                evaluate_target_health: alias.evaluate_target_health,
            });
        }
        None => after.values = vec![target],
    }
    Ok(after)
}

/// The longest wait finalize makes for resolvers to forget the old entry record. Beyond it,
/// finalize refuses and says when it may run: common TTLs (60-300 s) are simply waited out, so
/// `migrate --finalize` stays one command, but an hour-long TTL means clients may reach the
/// old environment for an hour — not a wait to spend holding the environment's lock and a
/// terminal; the operator comes back (or schedules finalize) at the time given.
pub const MAX_TTL_WAIT: Duration = Duration::from_secs(15 * 60);

impl CloneEngine {
    /// Finalize must not delete the old environment while resolvers may still send clients to
    /// it: they may cache the entry record's previous answer for its TTL after the change
    /// ("Choosing a TTL", Route 53 developer guide: resolvers cache the record for the TTL).
    /// Waits until the swap is a TTL old, or refuses with the time left (see `MAX_TTL_WAIT`).
    pub(super) async fn wait_out_old_entry_record(
        &self,
        state: &super::record::MigrationState,
        events: &crate::events::Emitter,
    ) -> Result<(), StepError> {
        let step = "finalize";
        let Some(dns) = &state.dns else {
            return Ok(());
        };
        let Some(swapped) = state
            .swapped_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        else {
            events.warn(
                step,
                Some(&dns.before.name),
                "the run did not record when it swapped; not waiting for resolvers to forget \
                 the old entry record",
            );
            return Ok(());
        };
        let ttl = cache_time(&dns.before);
        let ready = swapped.with_timezone(&chrono::Utc)
            + chrono::Duration::from_std(ttl).unwrap_or_default();
        let now = self.cloud.clock.now();
        let Ok(left) = (ready - now).to_std() else {
            return Ok(()); // already past
        };
        if left.is_zero() {
            return Ok(());
        }
        let shown = humantime::format_duration(Duration::from_secs(left.as_secs().max(1)));
        if left > MAX_TTL_WAIT {
            return Err(StepError::Refused {
                step: step.into(),
                message: format!(
                    "the old entry record {} had a TTL of {}s: resolvers may send clients to the \
                     old environment until {} ({shown} from now); run `envclone finalize {}` \
                     after that; nothing was deleted",
                    dns.before,
                    ttl.as_secs(),
                    ready.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    state.run_id
                ),
            });
        }
        events.info(
            step,
            Some(&dns.before.name),
            format!(
                "waiting {shown}: resolvers may still answer with the old entry record (TTL \
                 {}s) until {}",
                ttl.as_secs(),
                ready.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        );
        tokio::time::sleep(left).await;
        Ok(())
    }

    /// The hosted zone of `dns`: the one with its `zone_id`, else the only zone with its name.
    /// Two zones with the name (a public and a private one: split horizon) are ambiguous.
    pub async fn entry_zone(&self, dns: &EntryDns) -> Result<HostedZone, EntryProblem> {
        let route53 = &self.cloud.dns;
        if let Some(id) = &dns.zone_id {
            let id = zone_id(id).to_string();
            let zone = retry(|| route53.zone(&id)).await?.ok_or_else(|| {
                EntryProblem::Missing(format!("hosted zone {id} (entry_dns.zone_id)"))
            })?;
            if !dns.zone.is_empty() && host(&zone.name) != host(&dns.zone) {
                return Err(EntryProblem::Refused(format!(
                    "entry_dns.zone_id {id} is the hosted zone {}, not {} (entry_dns.zone); fix \
                     one of them",
                    zone.name, dns.zone
                )));
            }
            return Ok(zone);
        }
        let mut zones = retry(|| route53.zones_named(&dns.zone)).await?;
        match zones.len() {
            0 => Err(EntryProblem::Missing(format!("hosted zone {}", dns.zone))),
            1 => Ok(zones.remove(0)),
            _ => Err(EntryProblem::Refused(format!(
                "{} hosted zones are named {}: {}; name the one that holds {} with \
                 entry_dns.zone_id",
                zones.len(),
                dns.zone,
                zones
                    .iter()
                    .map(|z| format!(
                        "{} ({})",
                        z.id,
                        if z.private { "private" } else { "public" }
                    ))
                    .collect::<Vec<_>>()
                    .join(", "),
                dns.name
            ))),
        }
    }

    /// The entry record: among the records named `dns.name`, the one that points at
    /// `source_target` (the source stack's `target_output`). Other records of the name (e.g.
    /// the other members of a weighted set) are left alone by the swap.
    pub async fn find_entry(
        &self,
        dns: &EntryDns,
        source_target: &str,
    ) -> Result<(HostedZone, DnsRecord), EntryProblem> {
        let zone = self.entry_zone(dns).await?;
        let records = retry(|| self.cloud.dns.records(&zone.id, &dns.name)).await?;
        if records.is_empty() {
            return Err(EntryProblem::Missing(format!(
                "entry DNS record {} in hosted zone {} ({})",
                dns.name, zone.id, zone.name
            )));
        }
        let mut on_source: Vec<&DnsRecord> = records
            .iter()
            .filter(|r| r.target().is_some_and(|t| host(t) == host(source_target)))
            .collect();
        let listed = || {
            records
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        };
        let record = match on_source.len() {
            0 => {
                return Err(EntryProblem::Refused(format!(
                    "no record named {} in hosted zone {} points at the source's {} ({source_target}): \
                     {}; someone changed it, or entry_dns names another record — fix that first",
                    dns.name,
                    zone.id,
                    dns.target_output,
                    listed()
                )))
            }
            1 => on_source.remove(0).clone(),
            _ => {
                return Err(EntryProblem::Refused(format!(
                    "several records named {} point at the source ({}); migrate moves one record \
                     — keep one",
                    dns.name,
                    listed()
                )))
            }
        };
        match (&record.alias, record.record_type.as_str()) {
            (Some(_), "A" | "AAAA") => {
                if dns.target_zone_output.is_none() {
                    return Err(EntryProblem::Refused(format!(
                        "the entry record {record} is an alias: add entry_dns.target_zone_output, \
                         the output holding the load balancer's canonical hosted zone id \
                         (`Value: !GetAtt LoadBalancer.CanonicalHostedZoneID`)"
                    )));
                }
            }
            (None, "CNAME") if record.values.len() == 1 => {}
            _ => {
                return Err(EntryProblem::Refused(format!(
                    "the entry record {record} is neither a CNAME nor an alias A/AAAA record; \
                     migrate can move only those (make it an alias to the load balancer)"
                )))
            }
        }
        if let Some(Routing::Other { description }) = &record.routing {
            return Err(EntryProblem::Refused(format!(
                "the entry record {} uses {description} routing, which envclone cannot write \
                 back exactly; use simple, weighted, latency, failover or multivalue routing",
                record.name
            )));
        }
        Ok((zone, record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_compare_as_route53_returns_them() {
        let mut a = DnsRecord::cname("App.Example.com", "lb-1.elb.amazonaws.com", 300);
        let mut b = DnsRecord::cname("app.example.com.", "LB-1.elb.amazonaws.com.", 300);
        assert!(same_record(&a, &b));
        b.ttl = Some(60);
        assert!(!same_record(&a, &b), "the TTL is part of the record");
        b.ttl = Some(300);
        a.set_identifier = Some("blue".into());
        a.routing = Some(Routing::Weighted { weight: 100 });
        assert!(!same_record(&a, &b));
        let alias = |name: &str| DnsRecord {
            name: "app.example.com.".into(),
            record_type: "A".into(),
            alias: Some(AliasTarget {
                hosted_zone_id: "/hostedzone/Z35SXDOTRQ7X7K".into(),
                dns_name: name.into(),
                evaluate_target_health: true,
            }),
            ..DnsRecord::default()
        };
        assert!(same_record(
            &alias("dualstack.lb-1.us-east-1.elb.amazonaws.com."),
            &alias("lb-1.us-east-1.elb.amazonaws.com")
        ));
        assert_eq!(cache_time(&alias("x")), Duration::from_secs(60));
    }
}
