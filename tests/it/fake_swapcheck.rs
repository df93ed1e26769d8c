//! Issue 10, items 3, 5 and 6 on the fake: the swap is not done until the new environment
//! works (and a template that hands the application its pre-swap database name is refused
//! without a post_swap hook); finalize's bucket re-check judges the old buckets against what
//! the clone's verification recorded; the entry record is swapped and restored whole.

use envclone::fake::MemoryRunStore;
use envclone::ports::{AliasTarget, DnsRecord, ObjectHead, Routing, Stacks};
use envclone::workflow::migrate::{MigratePhase, MigrateRequest, MigrationState};
use envclone::workflow::PreflightError;

use crate::support::*;

const V2: &str = include_str!("../../stacks/webapp-v2.yaml");
const ZONE: &str = "envclone-demo.example.";
const ENTRY: &str = "app.envclone-demo.example.";
/// Where the fake's `prod` answers its health check (`HealthCheckBase` of webapp.yaml): the
/// new environment built by the migration is checked at `<base>/prod-mbeef`.
const HEALTH: &str = "https://health.example";
const NEW_HEALTH: &str = "https://health.example/prod-mbeef";

/// `prod` from webapp.yaml, filled, its entry record (a CNAME) on its load balancer.
async fn prod() -> (Scenario, DnsRecord) {
    let s = Scenario::new(timings());
    s.fake.create_bucket_now(REPORTS);
    s.fake.deploy_now(
        "prod",
        WEBAPP,
        &[
            ("EnvironmentName", "prod"),
            ("ReportsBucketName", REPORTS),
            ("DesiredCapacity", "3"),
            ("HealthCheckBase", HEALTH),
        ],
    );
    fill(&s.fake, REPORTS);
    fill(&s.fake, UPLOADS);
    let record = DnsRecord::cname(ENTRY, &lb_of(&s, "prod").await, 300);
    s.fake.put_dns(ZONE, record.clone());
    (s, record)
}

async fn lb_of(s: &Scenario, stack: &str) -> String {
    s.fake.describe_stack(stack).await.unwrap().unwrap().outputs["LoadBalancerDNSName"].clone()
}

/// webapp-v2.yaml hands its database's endpoint to the application (user data, an output):
/// migrating onto it needs a post_swap hook that repoints it.
fn request_with(config: &str) -> MigrateRequest {
    MigrateRequest {
        env: "prod".into(),
        template: ("stacks/webapp-v2.yaml".into(), V2.into()),
        parameter_overrides: Default::default(),
        config: std::sync::Arc::new(
            envclone::config::Config::parse("envclone.toml", config).unwrap(),
        ),
    }
}

fn request() -> MigrateRequest {
    request_with("[environments.prod.hooks]\npost_swap = [\"repoint-db-host\"]\n")
}

async fn migrated(s: &Scenario, store: &MemoryRunStore) -> MigrationState {
    let plan = s
        .engine
        .preflight_migrate(&request(), run_id())
        .await
        .unwrap_or_else(|e| panic!("preflight: {e}"));
    s.engine
        .migrate(&plan, store, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("migrate failed: {}", f.error))
}

/// The source as it was before the migration: its own database at its identifier, its entry
/// record, its instances in service.
fn assert_source_back(s: &Scenario, record: &DnsRecord, context: &str) {
    assert!(
        s.fake.db_ids().contains(&"prod-db".to_string()),
        "{context}"
    );
    assert_eq!(
        s.fake.db_restored_from("prod-db"),
        None,
        "{context}: prod-db is the original"
    );
    assert_eq!(
        s.fake.dns_records(ZONE, ENTRY),
        vec![record.clone()],
        "{context}: entry record"
    );
    let g = s.source_group();
    assert!(
        g.instances.iter().all(|i| i.lifecycle_state == "InService"),
        "{context}: {g:?}"
    );
}

// ------------------------------------------------------------------ item 3

/// Item 3. Fails before the fix: preflight accepted webapp-v2.yaml, whose user data and outputs
/// carry `Fn::GetAtt [Database, Endpoint.Address]` — the temporary identifier's host name,
/// which stops resolving when the swap renames the database.
#[tokio::test(start_paused = true)]
async fn a_template_handing_the_app_its_pre_swap_endpoint_needs_a_post_swap_hook() {
    let (s, _) = prod().await;
    let calls_before = s.fake.mutating_calls().len();
    let refused = s
        .engine
        .preflight_migrate(&request_with(""), run_id())
        .await
        .err()
        .expect("refused without a post_swap hook");
    assert!(
        matches!(refused, PreflightError::Unsupported { .. }),
        "{refused}"
    );
    let message = refused.to_string();
    for reference in [
        "Resources.WebLaunchTemplate.Properties.LaunchTemplateData.UserData.Fn::Base64.Fn::Sub[1].DbHost (Fn::GetAtt Database.Endpoint.Address)",
        "Outputs.DatabaseEndpoint.Value (Fn::GetAtt Database.Endpoint.Address)",
        "Outputs.DatabaseIdentifier.Value (Ref Database)",
    ] {
        assert!(message.contains(reference), "{reference} in {message}");
    }
    assert!(
        message.contains("post_swap"),
        "says how to fix it: {message}"
    );
    assert_eq!(
        s.fake.mutating_calls().len(),
        calls_before,
        "nothing changed"
    );

    // With a hook, preflight passes and the run warns about each reference.
    let store = MemoryRunStore::default();
    migrated(&s, &store).await;
    let warnings: Vec<String> = s
        .events
        .events()
        .into_iter()
        .filter(|e| e.step == "preflight")
        .map(|e| e.message)
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    let hooks = s.fake.hooks_run();
    assert_eq!(hooks[0].0, "repoint-db-host");
    assert_eq!(
        hooks[0].1["ENVCLONE_DATABASE_Database_ENDPOINT"],
        "prod-db.fake.rds.amazonaws.com"
    );
}

/// Item 3. Fails before the fix: the swap ended `Swapped` with the new environment's health
/// check failing (its application lost its database at the rename).
#[tokio::test(start_paused = true)]
async fn a_new_environment_that_fails_its_checks_after_the_swap_is_swapped_back() {
    let (s, record) = prod().await;
    // The clone's verification passes; the application breaks when its database is renamed.
    s.fake.on_call("rds:ModifyDBInstance", |f| {
        f.set_http_status(NEW_HEALTH, 503)
    });
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight_migrate(&request(), run_id())
        .await
        .unwrap();
    let failure = s
        .engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .expect_err("the swap fails its checks");
    let message = failure.error.to_string();
    assert!(
        message.contains("after the swap") && message.contains(NEW_HEALTH),
        "{message}"
    );
    assert_eq!(failure.state.phase, MigratePhase::Aborted, "{message}");
    assert_source_back(&s, &record, "health check after the swap");
    assert!(
        s.fake.calls().iter().any(|c| c.operation == "http:GET"),
        "the check was made"
    );
}

/// Item 3. Fails before the fix: instances of the new stack that Auto Scaling reports
/// Unhealthy after the swap did not stop it.
#[tokio::test(start_paused = true)]
async fn unhealthy_new_instances_after_the_swap_swap_it_back() {
    let (s, record) = prod().await;
    s.fake.on_call("rds:ModifyDBInstance", |f| {
        let group = f
            .group_names()
            .into_iter()
            .find(|g| g.starts_with("prod-mbeef-"))
            .expect("the new stack's group");
        let first = f.group(&group).unwrap().instances[0].id.clone();
        f.set_instance_health(&group, &first, "Unhealthy");
    });
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight_migrate(&request(), run_id())
        .await
        .unwrap();
    let failure = s
        .engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .expect_err("the swap fails its checks");
    let message = failure.error.to_string();
    assert!(
        message.contains("InService and Healthy") && message.contains("Unhealthy"),
        "{message}"
    );
    assert_eq!(failure.state.phase, MigratePhase::Aborted);
    assert_source_back(&s, &record, "unhealthy instances after the swap");
}

// ------------------------------------------------------------------ item 5

fn new_bucket(state: &MigrationState, old: &str) -> String {
    state
        .buckets
        .iter()
        .find(|(s, _)| s == old)
        .map(|(_, t)| t.clone())
        .expect("bucket pair")
}

/// Item 5. Fails before the fix: finalize compared the new buckets with the live old ones and
/// refused because the application had overwritten and deleted objects after the swap.
#[tokio::test(start_paused = true)]
async fn finalize_accepts_what_the_new_environment_changed_after_the_swap() {
    let (s, _) = prod().await;
    let store = MemoryRunStore::default();
    let mut state = migrated(&s, &store).await;
    assert_eq!(state.bucket_records.len(), state.buckets.len(), "{state:?}");
    let objects = s.fake.cloud().objects;
    for old in [UPLOADS, REPORTS] {
        let new = new_bucket(&state, old);
        // The application, now serving from the new environment, overwrites and deletes.
        s.fake.put_object(
            &new,
            "data/000.bin",
            b"rewritten after the swap",
            ObjectHead::default(),
            &[],
        );
        objects.delete_object(&new, "data/001.bin").await.unwrap();
        objects
            .delete_object(&new, "multipart/big.bin")
            .await
            .unwrap();
        s.fake.put_object(
            &new,
            "written-after-the-swap.txt",
            b"new",
            ObjectHead::default(),
            &[],
        );
    }
    s.engine
        .finalize(&mut state, &store, &s.emitter)
        .await
        .unwrap_or_else(|e| panic!("finalize refused legitimate changes: {e}"));
    assert_eq!(state.phase, MigratePhase::Finalized);
    // The new environment's data is as the application left it.
    let new = new_bucket(&state, UPLOADS);
    assert_eq!(
        &*s.fake.object(&new, "data/000.bin").unwrap().data,
        b"rewritten after the swap"
    );
    assert!(s.fake.object(&new, "data/001.bin").is_none());
}

/// Item 5: a copy that never happened still blocks finalize — an object written to the OLD
/// bucket after the clone was verified (a background job on an instance in Standby), next to
/// legitimate changes of the new environment. Once copied by hand, finalize goes through.
#[tokio::test(start_paused = true)]
async fn finalize_refuses_an_object_of_the_old_bucket_that_was_never_copied() {
    let (s, _) = prod().await;
    let store = MemoryRunStore::default();
    let mut state = migrated(&s, &store).await;
    let new = new_bucket(&state, UPLOADS);
    let objects = s.fake.cloud().objects;
    objects.delete_object(&new, "data/002.bin").await.unwrap();
    s.fake.put_object(
        UPLOADS,
        "late/report.csv",
        b"written to the old env",
        ObjectHead::default(),
        &[],
    );

    let refused = s
        .engine
        .finalize(&mut state, &store, &s.emitter)
        .await
        .expect_err("a missing copy blocks finalize");
    let message = refused.to_string();
    assert!(
        message.contains("late/report.csv") && message.contains(UPLOADS),
        "{message}"
    );
    assert!(
        !message.contains("data/002.bin"),
        "a legitimate delete is not a missing copy: {message}"
    );
    assert_eq!(state.phase, MigratePhase::Swapped, "nothing was deleted");
    assert!(s.fake.live_stack_names().contains(&"prod".to_string()));

    // An object overwritten in the old bucket after the copy is a missing copy too.
    s.fake.put_object(
        &new,
        "late/report.csv",
        b"written to the old env",
        ObjectHead::default(),
        &[],
    );
    s.fake.put_object(
        UPLOADS,
        "data/003.bin",
        b"rewritten in the old env",
        ObjectHead::default(),
        &[],
    );
    let refused = s
        .engine
        .finalize(&mut state, &store, &s.emitter)
        .await
        .expect_err("overwrite");
    assert!(refused.to_string().contains("data/003.bin"), "{refused}");

    s.fake.put_object(
        &new,
        "data/003.bin",
        b"rewritten in the old env",
        ObjectHead::default(),
        &[],
    );
    s.engine
        .finalize(&mut state, &store, &s.emitter)
        .await
        .unwrap_or_else(|e| panic!("finalize after the copy: {e}"));
    assert_eq!(state.phase, MigratePhase::Finalized);
}

// ------------------------------------------------------------------ item 6

fn by_set(mut records: Vec<DnsRecord>) -> Vec<DnsRecord> {
    records.sort_by(|a, b| a.set_identifier.cmp(&b.set_identifier));
    records
}

/// Item 6. Fails before the fix: preflight refused a name with two weighted records ("migrate
/// swaps a single CNAME record"), and the swap wrote a TTL of its own. Now the record that
/// points at the source is moved with only its target changed (weight, set identifier, TTL and
/// health check kept), the other member of the set is left alone, and abort restores both
/// exactly.
#[tokio::test(start_paused = true)]
async fn a_weighted_entry_record_is_swapped_and_restored_whole() {
    let (s, _) = prod().await;
    let zone = s
        .fake
        .cloud()
        .dns
        .zones_named(ZONE)
        .await
        .unwrap()
        .remove(0)
        .id;
    let old_lb = lb_of(&s, "prod").await;
    let blue = DnsRecord {
        set_identifier: Some("blue".into()),
        routing: Some(Routing::Weighted { weight: 90 }),
        health_check_id: Some("0c1e7c55-hc-blue".into()),
        ..DnsRecord::cname(ENTRY, &old_lb, 120)
    };
    let canary = DnsRecord {
        set_identifier: Some("canary".into()),
        routing: Some(Routing::Weighted { weight: 10 }),
        ..DnsRecord::cname(ENTRY, "canary.example.net", 120)
    };
    let before = vec![blue.clone(), canary.clone()];
    s.fake.put_dns_in(&zone, ENTRY, before.clone());

    let store = MemoryRunStore::default();
    let mut state = migrated(&s, &store).await;
    let new_lb = lb_of(&s, "prod-mbeef").await;
    let swapped = by_set(s.fake.dns_records_in(&zone, ENTRY));
    assert_eq!(
        swapped,
        vec![
            DnsRecord {
                values: vec![new_lb],
                ..blue.clone()
            },
            canary.clone()
        ]
    );
    assert_eq!(state.dns.as_ref().unwrap().before, blue, "recorded whole");

    s.engine
        .abort_migration(&mut state, &store, &s.emitter)
        .await
        .unwrap();
    assert_eq!(by_set(s.fake.dns_records_in(&zone, ENTRY)), before);
}

/// webapp-v2.yaml with its entry record named by hosted zone id and pointed at as an alias
/// (the load balancer's canonical hosted zone id from a new output).
fn v2_with_entry(zone_id: Option<&str>, target_zone_output: bool) -> String {
    let mut extra = String::new();
    if let Some(id) = zone_id {
        extra.push_str(&format!("      zone_id: {id}\n"));
    }
    if target_zone_output {
        extra.push_str("      target_zone_output: LoadBalancerZone\n");
    }
    let anchor = "      target_output: LoadBalancerDNSName\n";
    assert!(V2.contains(anchor));
    let body = V2.replacen(anchor, &format!("{anchor}{extra}"), 1);
    let outputs = "Outputs:\n";
    body.replacen(
        outputs,
        "Outputs:\n  LoadBalancerZone:\n    Value: !GetAtt LoadBalancer.CanonicalHostedZoneID\n",
        1,
    )
}

/// Item 6. Fails before the fix: the zone was found by name alone (a private zone of the same
/// name could be the one changed), and an alias A record was refused. Now a name shared by a
/// public and a private zone needs `zone_id`, an alias needs `target_zone_output`, and the
/// alias is moved to the new load balancer (DNS name and its canonical zone) and restored
/// exactly; the private zone is never touched.
#[tokio::test(start_paused = true)]
async fn an_alias_entry_record_in_a_split_horizon_zone_is_named_by_id() {
    let (s, _) = prod().await;
    let public = s
        .fake
        .cloud()
        .dns
        .zones_named(ZONE)
        .await
        .unwrap()
        .remove(0)
        .id;
    let private = s.fake.create_zone(ZONE, true);
    let internal = DnsRecord::cname(ENTRY, "internal-prod.corp.example", 60);
    s.fake.put_dns_in(&private, ENTRY, vec![internal.clone()]);
    let old_lb = lb_of(&s, "prod").await;
    let alias = DnsRecord {
        name: ENTRY.into(),
        record_type: "A".into(),
        alias: Some(AliasTarget {
            hosted_zone_id: "Z35SXDOTRQ7X7K".into(),
            dns_name: format!("dualstack.{old_lb}."),
            evaluate_target_health: true,
        }),
        ..DnsRecord::default()
    };
    s.fake.put_dns_in(&public, ENTRY, vec![alias.clone()]);
    let request_for = |body: String| MigrateRequest {
        template: ("v2-alias.yaml".into(), body),
        ..request()
    };

    let refused = s
        .engine
        .preflight_migrate(&request_for(v2_with_entry(None, true)), run_id())
        .await
        .err()
        .expect("a name two zones share needs zone_id")
        .to_string();
    assert!(
        refused.contains(&public) && refused.contains(&private) && refused.contains("zone_id"),
        "{refused}"
    );
    let refused = s
        .engine
        .preflight_migrate(&request_for(v2_with_entry(Some(&public), false)), run_id())
        .await
        .err()
        .expect("an alias needs target_zone_output")
        .to_string();
    assert!(refused.contains("target_zone_output"), "{refused}");

    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight_migrate(&request_for(v2_with_entry(Some(&public), true)), run_id())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut state = s
        .engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("{}", f.error));
    let new_lb = lb_of(&s, "prod-mbeef").await;
    let moved = s.fake.dns_records_in(&public, ENTRY);
    assert_eq!(
        moved,
        vec![DnsRecord {
            alias: Some(AliasTarget {
                hosted_zone_id: "Z35SXDOTRQ7X7K".into(),
                dns_name: new_lb,
                evaluate_target_health: true,
            }),
            ..alias.clone()
        }]
    );
    assert_eq!(
        s.fake.dns_records_in(&private, ENTRY),
        vec![internal.clone()]
    );
    s.engine
        .abort_migration(&mut state, &store, &s.emitter)
        .await
        .unwrap();
    assert_eq!(s.fake.dns_records_in(&public, ENTRY), vec![alias]);
    assert_eq!(s.fake.dns_records_in(&private, ENTRY), vec![internal]);
}

/// Item 6. Fails before the fix: finalize deleted the old environment right after the swap,
/// while resolvers could still send clients to it for the old record's TTL. A TTL of 300 s is
/// waited out; one of a day is refused with the time left, nothing deleted.
#[tokio::test(start_paused = true)]
async fn finalize_waits_out_the_old_records_ttl() {
    let (s, _) = prod().await;
    let store = MemoryRunStore::default();
    let mut state = migrated(&s, &store).await;
    s.engine
        .finalize(&mut state, &store, &s.emitter)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Nothing of finalize (its first call is the old database's final snapshot, then the
    // deletions) happens before the old record's TTL has passed since it was moved.
    let calls = s.fake.calls();
    let moved = calls
        .iter()
        .rposition(|c| c.operation == "route53:ChangeResourceRecordSets")
        .expect("the swap moved the record");
    let first = calls[moved + 1..]
        .iter()
        .find(|c| c.mutating)
        .expect("finalize made changes");
    assert!(
        first.at >= calls[moved].at + std::time::Duration::from_secs(300),
        "finalize's first change ({}) came {:?} after the record moved (TTL 300 s)",
        first.operation,
        first.at - calls[moved].at
    );
    assert!(calls
        .iter()
        .any(|c| c.operation == "cloudformation:DeleteStack"));

    let (s, record) = prod().await;
    s.fake.put_dns(
        ZONE,
        DnsRecord {
            ttl: Some(86_400),
            ..record
        },
    );
    let store = MemoryRunStore::default();
    let mut state = migrated(&s, &store).await;
    let refused = s
        .engine
        .finalize(&mut state, &store, &s.emitter)
        .await
        .expect_err("a day's TTL is not waited out")
        .to_string();
    assert!(
        refused.contains("TTL of 86400s") && refused.contains("nothing was deleted"),
        "{refused}"
    );
    assert_eq!(state.phase, MigratePhase::Swapped);
    assert!(s.fake.live_stack_names().contains(&"prod".to_string()));
}
