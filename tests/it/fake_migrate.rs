//! Migrate scenarios on the in-memory fake, whose CloudFormation tracks a database by the
//! identifier it created it with (moto follows renames and cannot show the hazard): the swap,
//! finalize never deleting the live database, abort swapping back, and a stop at every step.

use std::sync::Arc;
use std::time::Duration;

use envclone::fake::MemoryRunStore;
use envclone::ports::{DnsRecord, Stacks};
use envclone::workflow::migrate::{MigratePhase, MigrateRequest, MigrationState};

use crate::support::*;

pub(crate) const V2: &str = include_str!("../../stacks/webapp-v2.yaml");
pub(crate) const ZONE: &str = "envclone-demo.example.";
pub(crate) const ENTRY: &str = "app.envclone-demo.example.";

/// `prod` from webapp.yaml with InstanceType left at its default, its entry record on its
/// load balancer.
pub(crate) async fn prod() -> (Scenario, DnsRecord) {
    prod_from(WEBAPP).await
}

/// `prod` deployed from `template` (webapp.yaml or a variant), filled, its entry record on its
/// load balancer.
pub(crate) async fn prod_from(template: &str) -> (Scenario, DnsRecord) {
    let s = Scenario::new(timings());
    s.fake.create_bucket_now(REPORTS);
    s.fake.deploy_now(
        "prod",
        template,
        &[
            ("EnvironmentName", "prod"),
            ("ReportsBucketName", REPORTS),
            ("DesiredCapacity", "3"),
        ],
    );
    fill(&s.fake, REPORTS);
    fill(&s.fake, UPLOADS);
    let lb = s
        .fake
        .describe_stack("prod")
        .await
        .unwrap()
        .unwrap()
        .outputs["LoadBalancerDNSName"]
        .clone();
    let record = DnsRecord::cname(ENTRY, &lb, 300);
    s.fake.put_dns(ZONE, record.clone());
    (s, record)
}

pub(crate) fn request() -> MigrateRequest {
    MigrateRequest {
        env: "prod".into(),
        template: ("stacks/webapp-v2.yaml".into(), V2.into()),
        parameter_overrides: Default::default(),
        // webapp-v2.yaml hands its database's endpoint to the application: the swap needs a
        // post_swap hook that repoints it (issue 10, item 3).
        config: post_swap_hook_config(),
    }
}

/// The source exactly as it was: its own database under its identifier, its record, its
/// instances in service, its stack.
pub(crate) fn assert_source_as_it_was(s: &Scenario, record: &DnsRecord, context: &str) {
    assert!(
        s.fake.live_stack_names().contains(&"prod".to_string()),
        "{context}: stack prod"
    );
    assert_eq!(
        s.fake.termination_protection("prod"),
        Some(false),
        "{context}: the swap's termination protection is lifted"
    );
    assert!(
        s.fake.db_ids().contains(&"prod-db".to_string()),
        "{context}: {:?}",
        s.fake.db_ids()
    );
    assert_eq!(
        s.fake.db_restored_from("prod-db"),
        None,
        "{context}: prod-db is the original database"
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
    assert_eq!((g.desired_capacity, g.min_size), (3, 1), "{context}: {g:?}");
}

#[tokio::test(start_paused = true)]
async fn migrate_swaps_and_finalize_never_deletes_the_live_database() {
    let (s, record) = prod().await;
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight_migrate(&request(), run_id())
        .await
        .unwrap();
    // A parameter the source had at its old default takes the new template's default.
    assert!(
        !plan.clone.parameters.contains_key("InstanceType"),
        "{:?}",
        plan.clone.parameters
    );
    assert_eq!(plan.clone.parameters["DesiredCapacity"], "3");
    assert_eq!(plan.clone.target_stack, "prod-mbeef");

    let mut state = s
        .engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("migrate failed: {}", f.error));
    assert_eq!(state.phase, MigratePhase::Swapped);
    let snapshot = "envclone-20261121000000-beef-prod-db";
    // The original identifier now belongs to the clone; the old database is renamed.
    assert_eq!(
        s.fake.db_restored_from("prod-db").as_deref(),
        Some(snapshot)
    );
    assert!(
        s.fake
            .db_ids()
            .contains(&"prod-db-old-202611210000".to_string()),
        "{:?}",
        s.fake.db_ids()
    );
    let new_stack = s.fake.describe_stack("prod-mbeef").await.unwrap().unwrap();
    assert_eq!(new_stack.parameters["InstanceType"], "t3.small");
    assert_eq!(
        s.fake.dns_records(ZONE, ENTRY)[0].values,
        vec![new_stack.outputs["LoadBalancerDNSName"].clone()]
    );
    assert_ne!(s.fake.dns_records(ZONE, ENTRY), vec![record]);
    // The old environment stays out of service.
    assert!(s
        .source_group()
        .instances
        .iter()
        .all(|i| i.lifecycle_state == "Standby"));
    // CloudFormation's view of both stacks: the hazard is real in this model.
    assert_eq!(
        s.fake.recorded_physical_id("prod", "Database").as_deref(),
        Some("prod-db")
    );
    assert_eq!(
        s.fake
            .recorded_physical_id("prod-mbeef", "Database")
            .as_deref(),
        Some("prod-mbeef-db")
    );

    s.engine
        .finalize(&mut state, &store, &s.emitter)
        .await
        .unwrap();
    assert_eq!(state.phase, MigratePhase::Finalized);
    assert!(
        !s.fake.live_stack_names().contains(&"prod".to_string()),
        "the old stack is gone"
    );
    assert_eq!(
        s.fake.db_restored_from("prod-db").as_deref(),
        Some(snapshot),
        "the live database survived"
    );
    assert!(!s
        .fake
        .db_ids()
        .contains(&"prod-db-old-202611210000".to_string()));
    assert!(
        s.fake
            .snapshot_ids()
            .iter()
            .any(|id| id.contains("final-prod-db-old")),
        "{:?}",
        s.fake.snapshot_ids()
    );
    let live = s
        .fake
        .cloud()
        .databases
        .describe_instance("prod-db")
        .await
        .unwrap()
        .unwrap();
    assert!(
        !live.deletion_protection,
        "deletion protection is back to what it was"
    );
    // The environment now resolves to the new stack, from AWS alone.
    assert_eq!(
        s.engine.resolve("prod").await.unwrap().stack.name,
        "prod-mbeef"
    );
    // The stored state matches.
    let stored: MigrationState =
        serde_json::from_value(store.0.lock().unwrap()["20261121000000-beef"].clone()).unwrap();
    assert_eq!(stored.phase, MigratePhase::Finalized);
}

/// The model shows the hazard the design avoids: after the swap, a plain delete of the old
/// stack deletes the live database (CloudFormation's record names its identifier). So the swap
/// turns the old stack's termination protection on, and a plain delete is refused.
/// A migration's plan says what it does with the source: its instances stay in Standby from
/// the clone through the swap, so the clone's return to service (early, once T is fixed, or
/// after the verification) is not among its steps; a failure before the swap returns them.
#[tokio::test(start_paused = true)]
async fn the_plan_of_a_migration_keeps_the_source_in_standby_until_the_swap() {
    let (s, _record) = prod().await;
    // With both buckets versioned a clone would return the source to service once T is fixed.
    s.fake.enable_versioning(UPLOADS);
    s.fake.enable_versioning(REPORTS);
    let plan = s
        .engine
        .preflight_migrate(&request(), run_id())
        .await
        .unwrap();
    let groups = plan.clone.scaling_groups.join(", ");
    assert!(!groups.is_empty(), "prod has an Auto Scaling group");
    for finalize in [false, true] {
        let steps = plan.steps(finalize);
        let text = steps.join("\n");
        for said in ["return the source to service", "return the instances"] {
            assert!(
                !text.contains(said),
                "finalize={finalize}: {said:?} in\n{text}"
            );
        }
        let keep = format!("keep the instances of {groups} in Standby for the swap");
        let at = |start: &str| steps.iter().position(|s| s.starts_with(start));
        let (Some(keep), Some(guardrails)) = (at(&keep), at("guardrails:")) else {
            panic!("finalize={finalize}: no {keep:?} or no guardrails in\n{text}");
        };
        assert!(keep < guardrails, "{text}");
        let end = if finalize { "finalize:" } else { "stop:" };
        assert!(steps.last().unwrap().starts_with(end), "{text}");
    }
    // The same clone run as a clone returns the source to service early.
    let clone = plan.clone.steps().join("\n");
    assert!(
        clone.contains("return the source to service once"),
        "{clone}"
    );
    assert!(
        clone.contains(&format!("return the instances of {groups}")),
        "{clone}"
    );
}

/// A source database with changes waiting (a class change queued for the maintenance window,
/// a static parameter `pending-reboot`) is refused before any change: the swap's rename is a
/// modify with ApplyImmediately, which applies every pending modification (and the rename's
/// reboot the parameters), and `abort` could not take them back. Queued after preflight, the
/// guardrails refuse it before the first rename, and the source is as it was.
#[tokio::test(start_paused = true)]
async fn a_source_database_with_changes_waiting_is_not_renamed() {
    let change = "instance class db.m5.large";
    let (s, _) = prod().await;
    s.fake.queue_db_change("prod-db", change);
    let before = s.fake.mutating_calls().len();
    let Err(err) = s.engine.preflight_migrate(&request(), run_id()).await else {
        panic!("preflight passed with a change waiting on prod-db");
    };
    let text = err.to_string();
    assert!(
        text.contains("database prod-db") && text.contains(change),
        "{text}"
    );
    assert_eq!(s.fake.mutating_calls().len(), before, "nothing changed");
    // Aurora: the cluster's pending modifications likewise.
    let aurora = crate::fake_aurora::aurora_prod();
    let cluster = crate::fake_aurora::SOURCE_CLUSTER;
    aurora.fake.queue_db_change(cluster, "engine version 16.4");
    let Err(err) = aurora
        .engine
        .preflight_migrate(&crate::fake_aurora::migrate_request(), run_id())
        .await
    else {
        panic!("preflight passed with a change waiting on {cluster}");
    };
    assert!(err.to_string().contains("engine version 16.4"), "{err}");

    let (s, record) = prod().await;
    let plan = s
        .engine
        .preflight_migrate(&request(), run_id())
        .await
        .unwrap();
    s.fake
        .queue_db_change("prod-db", "parameter group prod-params pending-reboot");
    let store = MemoryRunStore::default();
    let Err(failure) = s
        .engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
    else {
        panic!("the guardrails let a change waiting on prod-db through");
    };
    assert_eq!(failure.state.phase, MigratePhase::Aborted);
    assert!(
        failure
            .error
            .to_string()
            .contains("prod-params pending-reboot"),
        "{}",
        failure.error
    );
    assert!(
        !s.fake
            .calls()
            .iter()
            .any(|c| c.operation == "rds:ModifyDBInstance"),
        "no database was renamed"
    );
    assert_source_as_it_was(&s, &record, "changes queued after preflight");
}

#[tokio::test(start_paused = true)]
async fn a_plain_delete_of_the_old_stack_would_delete_the_live_database() {
    let (s, _) = prod().await;
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight_migrate(&request(), run_id())
        .await
        .unwrap();
    s.engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .unwrap();
    let refused = s.fake.delete_stack("prod", &[]).await.unwrap_err();
    assert!(
        refused.to_string().contains("TerminationProtection"),
        "{refused}"
    );
    assert!(s.fake.db_ids().contains(&"prod-db".to_string()));
    // Someone who lifts it by hand meets the hazard.
    s.fake
        .set_termination_protection("prod", false)
        .await
        .unwrap();
    s.fake.delete_stack("prod", &[]).await.unwrap();
    assert!(
        !s.fake.db_ids().contains(&"prod-db".to_string()),
        "the live database is gone: {:?}",
        s.fake.db_ids()
    );
}

#[tokio::test(start_paused = true)]
async fn abort_after_the_swap_swaps_back() {
    let (s, record) = prod().await;
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight_migrate(&request(), run_id())
        .await
        .unwrap();
    let mut state = s
        .engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .unwrap();
    s.engine
        .abort_migration(&mut state, &store, &s.emitter)
        .await
        .unwrap();
    assert_eq!(state.phase, MigratePhase::Aborted);
    assert_source_as_it_was(&s, &record, "abort");
    // The new database keeps whatever was written to it, under its own identifier.
    assert!(s.fake.db_ids().contains(&"prod-mbeef-db".to_string()));
    // Finalize is refused after an abort.
    assert!(s
        .engine
        .finalize(&mut state, &store, &s.emitter)
        .await
        .is_err());
}

#[tokio::test(start_paused = true)]
async fn guardrails_refuse_a_changed_entry_record_and_scaling_activity() {
    let (s, record) = prod().await;
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight_migrate(&request(), run_id())
        .await
        .unwrap();
    // Someone points the entry record elsewhere while the clone is built.
    let moved = DnsRecord {
        values: vec!["elsewhere.example.".into()],
        ..record.clone()
    };
    let fake = s.fake.clone();
    let moved2 = moved.clone();
    let meddle = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        fake.put_dns(ZONE, moved2);
    });
    let failure = s
        .engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .unwrap_err();
    meddle.await.unwrap();
    assert!(
        failure.error.to_string().contains("someone changed it"),
        "{}",
        failure.error
    );
    assert_eq!(failure.state.phase, MigratePhase::Aborted);
    s.fake.put_dns(ZONE, record.clone());
    assert_source_as_it_was(&s, &record, "dns guardrail");

    let (s, record) = prod().await;
    let plan = s
        .engine
        .preflight_migrate(&request(), run_id())
        .await
        .unwrap();
    let group = s.source_group().name;
    s.fake.set_activity(&group, "Launching a new EC2 instance");
    let failure = s
        .engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        failure.error.to_string().contains("scaling activity"),
        "{}",
        failure.error
    );
    assert_source_as_it_was(&s, &record, "activity guardrail");
}

/// Stop the migration at every mutating call (an error) and at many moments (Ctrl-C or a
/// crash); then `abort` from the recorded state: the source is exactly as it was.
#[tokio::test(start_paused = true)]
async fn a_stop_at_every_step_of_migrate_leaves_or_puts_the_source_back() {
    // How many mutating calls a full migrate makes.
    let (s, _) = prod().await;
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight_migrate(&request(), run_id())
        .await
        .unwrap();
    let before = s.fake.mutating_calls().len();
    s.engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .unwrap();
    let total = s.fake.mutating_calls().len() - before;
    assert!(total > 10, "{total}");

    for n in 1..=total as u64 {
        let (s, record) = prod().await;
        let store = Arc::new(MemoryRunStore::default());
        let plan = s
            .engine
            .preflight_migrate(&request(), run_id())
            .await
            .unwrap();
        s.fake.fail_nth_mutating_call(n);
        let result = s
            .engine
            .migrate(&plan, &*store, &s.emitter, std::future::pending())
            .await;
        let mut state = match result {
            Ok(state) => state, // the failed call was retried past or was not needed
            Err(f) => f.state,
        };
        s.engine
            .abort_migration(&mut state, &*store, &s.emitter)
            .await
            .unwrap_or_else(|e| panic!("call {n}: abort failed: {e}"));
        assert_source_as_it_was(&s, &record, &format!("failure of mutating call {n}"));
    }

    for seconds in [1u64, 20, 200, 700, 900, 1000, 1100, 1200] {
        let (s, record) = prod().await;
        let store = MemoryRunStore::default();
        let plan = s
            .engine
            .preflight_migrate(&request(), run_id())
            .await
            .unwrap();
        let stop = tokio::time::sleep(Duration::from_secs(seconds));
        let mut state = match s.engine.migrate(&plan, &store, &s.emitter, stop).await {
            Ok(state) => state,
            Err(f) => f.state,
        };
        // As after a crash: the next command works from the stored state alone.
        let stored = serde_json::from_value::<MigrationState>(
            store.0.lock().unwrap()["20261121000000-beef"].clone(),
        )
        .unwrap();
        assert_eq!(stored.phase, state.phase);
        s.engine
            .abort_migration(&mut state, &store, &s.emitter)
            .await
            .unwrap_or_else(|e| panic!("stop at {seconds}s: abort failed: {e}"));
        assert_source_as_it_was(&s, &record, &format!("stop at {seconds}s"));
    }
}

/// Migrates `prod` with its deadline `after(swap allowance)` past the start, which must stop
/// it at the guardrails with the source exactly as it was. Returns the scenario and how long
/// the run took on the (paused) clock.
async fn stopped_by_deadline(
    after: impl FnOnce(chrono::Duration) -> chrono::Duration,
    context: &str,
) -> (Scenario, chrono::Duration) {
    let (s, record) = prod().await;
    let store = MemoryRunStore::default();
    let mut plan = s
        .engine
        .preflight_migrate(&request(), run_id())
        .await
        .unwrap();
    let allowance =
        chrono::Duration::from_std(envclone::workflow::migrate::swap_allowance(&plan.swaps))
            .unwrap();
    let started = s.engine.cloud.clock.now();
    plan.deadline = Some(started + after(allowance));
    let failure = s
        .engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .expect_err(context);
    assert!(
        matches!(
            &failure.error,
            envclone::workflow::StepError::Deadline { step, .. } if step == "guardrails"
        ),
        "{context}: {}",
        failure.error
    );
    assert_eq!(failure.state.phase, MigratePhase::Aborted, "{context}");
    assert_source_as_it_was(&s, &record, context);
    let took = s.engine.cloud.clock.now() - started;
    (s, took)
}

/// A deadline that leaves no time for the swap stops the migration before it, with the source
/// exactly as it was.
#[tokio::test(start_paused = true)]
async fn a_deadline_stops_the_migration_before_the_swap() {
    stopped_by_deadline(|_| chrono::Duration::minutes(5), "deadline").await;
}

/// A deadline that leaves room for the swap when the migration starts but passes while the
/// clone is made (the snapshot and the new database take their AWS minutes) stops the
/// migration before the swap (exit 3), the source exactly as it was. Issue 12, "one clock
/// port": this failed before — the deadline was read from the system clock, which a paused
/// test clock does not move, so the swap went ahead.
#[tokio::test(start_paused = true)]
async fn a_deadline_that_passes_while_the_clone_is_made_stops_before_the_swap() {
    let (s, took) = stopped_by_deadline(
        |allowance| allowance + chrono::Duration::minutes(5),
        "the deadline passed while the clone was made: no swap",
    )
    .await;
    // The clone was made (its minutes are what brought the deadline close), then nothing.
    assert!(took > chrono::Duration::minutes(5), "the clone took {took}");
    assert!(
        s.events
            .events()
            .iter()
            .any(|e| e.step == "snapshot" && e.phase == envclone::events::Phase::Done),
        "no snapshot was made"
    );
}

fn with_hooks(template: &str) -> String {
    let hooks = "    hooks:\n      quiesce: [\"stop-writers\"]\n      verify: [{ command: \"smoke-test\", timeout_seconds: 60 }]\n      post_swap: [\"restart-app\"]\n";
    let anchor = "      - http_output: HealthCheckUrl\n";
    assert!(template.contains(anchor));
    template.replacen(anchor, &format!("{anchor}{hooks}"), 1)
}

#[tokio::test(start_paused = true)]
async fn hooks_run_at_their_points_and_a_failure_stops_safely() {
    // Clone: quiesce on the source after Standby, verify on the clone.
    let s = Scenario::new(timings());
    s.fake.create_bucket_now(REPORTS);
    let webapp = with_hooks(WEBAPP);
    s.fake.deploy_now(
        "prod",
        &webapp,
        &[
            ("EnvironmentName", "prod"),
            ("ReportsBucketName", REPORTS),
            ("DesiredCapacity", "3"),
        ],
    );
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap();
    let report = s
        .engine
        .execute(&plan, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("{}", f.error));
    assert!(report
        .verification
        .iter()
        .any(|c| c.check == "hook `smoke-test`" && c.ok));
    let run = s.fake.hooks_run();
    assert_eq!(
        run.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
        ["stop-writers", "smoke-test"]
    );
    assert_eq!(run[0].1["ENVCLONE_STACK"], "prod");
    assert_eq!(run[1].1["ENVCLONE_STACK"], "staging-test");
    assert!(
        run[1].1.contains_key("ENVCLONE_OUTPUT_HealthCheckUrl"),
        "{:?}",
        run[1].1
    );

    // A failing quiesce hook stops the clone; the source goes back to service.
    let s = Scenario::new(timings());
    s.fake.create_bucket_now(REPORTS);
    s.fake.deploy_now(
        "prod",
        &webapp,
        &[
            ("EnvironmentName", "prod"),
            ("ReportsBucketName", REPORTS),
            ("DesiredCapacity", "3"),
        ],
    );
    s.fake.fail_hook("stop-writers");
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap();
    let failure = s
        .engine
        .execute(&plan, &s.emitter, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        failure.error.to_string().contains("stop-writers"),
        "{}",
        failure.error
    );
    let g = s.source_group();
    assert!(
        g.instances.iter().all(|i| i.lifecycle_state == "InService"),
        "{g:?}"
    );

    // Migrate: a failing post-swap hook swaps back.
    let s = Scenario::new(timings());
    s.fake.create_bucket_now(REPORTS);
    s.fake.deploy_now(
        "prod",
        &webapp,
        &[
            ("EnvironmentName", "prod"),
            ("ReportsBucketName", REPORTS),
            ("DesiredCapacity", "3"),
        ],
    );
    let lb = s
        .fake
        .describe_stack("prod")
        .await
        .unwrap()
        .unwrap()
        .outputs["LoadBalancerDNSName"]
        .clone();
    let record = DnsRecord::cname(ENTRY, &lb, 300);
    s.fake.put_dns(ZONE, record.clone());
    s.fake.fail_hook("restart-app");
    let store = MemoryRunStore::default();
    let request = MigrateRequest {
        template: ("v2".into(), with_hooks(V2)),
        ..request()
    };
    let plan = s
        .engine
        .preflight_migrate(&request, run_id())
        .await
        .unwrap();
    let failure = s
        .engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        failure.error.to_string().contains("restart-app"),
        "{}",
        failure.error
    );
    assert_eq!(failure.state.phase, MigratePhase::Aborted);
    assert_source_as_it_was(&s, &record, "post-swap hook");
}

/// A migration cut right after each of its mutating calls (as `kill -9` would) is resumed from
/// its recorded state to the end state of an uninterrupted one.
#[tokio::test(start_paused = true)]
async fn resume_after_a_crash_at_every_step_of_migrate() {
    let (s, _) = prod().await;
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight_migrate(&request(), run_id())
        .await
        .unwrap();
    let before = s.fake.mutating_calls().len();
    s.engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .unwrap();
    let total = (s.fake.mutating_calls().len() - before) as u64;

    for n in 1..=total {
        let (s, _) = prod().await;
        let store = MemoryRunStore::default();
        let plan = s
            .engine
            .preflight_migrate(&request(), run_id())
            .await
            .unwrap();
        let crash = s.fake.crash_after_nth_mutating_call(n);
        tokio::select! {
            biased;
            () = crash.notified() => {}
            _ = s.engine.migrate(&plan, &store, &s.emitter, std::future::pending()) => {}
        }
        let state: MigrationState =
            serde_json::from_value(store.0.lock().unwrap()["20261121000000-beef"].clone()).unwrap();
        let state = match state.phase {
            MigratePhase::Swapped => state,
            _ => s
                .engine
                .resume_migration(state, &store, &s.emitter, std::future::pending())
                .await
                .unwrap_or_else(|f| panic!("crash after call {n}: resume failed: {}", f.error)),
        };
        assert_eq!(state.phase, MigratePhase::Swapped, "crash after call {n}");
        let context = format!("resume after call {n}");
        assert_eq!(
            s.fake.db_restored_from("prod-db").as_deref(),
            Some("envclone-20261121000000-beef-prod-db"),
            "{context}"
        );
        assert!(
            s.fake
                .db_ids()
                .contains(&"prod-db-old-202611210000".to_string()),
            "{context}"
        );
        let new_lb = s
            .fake
            .describe_stack("prod-mbeef")
            .await
            .unwrap()
            .unwrap()
            .outputs["LoadBalancerDNSName"]
            .clone();
        assert_eq!(
            s.fake.dns_records(ZONE, ENTRY)[0].values,
            vec![new_lb],
            "{context}"
        );
        assert_eq!(
            s.fake.snapshot_ids().len(),
            1,
            "{context}: no duplicate snapshot"
        );
        assert!(
            s.source_group()
                .instances
                .iter()
                .all(|i| i.lifecycle_state == "Standby"),
            "{context}"
        );
    }
}

/// Hooks from envclone.toml run at their points of a migration, come back with the run's record,
/// and are not written into the new environment's template (its clones do not inherit them).
#[tokio::test(start_paused = true)]
async fn hooks_from_the_config_file_run_and_stay_out_of_the_template() {
    let (s, _) = prod().await;
    let config = envclone::config::Config::parse(
        "envclone.toml",
        r#"
[environments.prod.hooks]
quiesce = ["stop-writers"]
post_swap = [{ command = "restart-app", timeout_seconds = 60 }]
"#,
    )
    .unwrap();
    let mut request = request();
    request.config = std::sync::Arc::new(config);
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight_migrate(&request, run_id())
        .await
        .unwrap();
    assert_eq!(
        plan.clone.template.body, V2,
        "the template text is untouched"
    );
    let state = s
        .engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("{}", f.error));
    let run = s.fake.hooks_run();
    let commands: Vec<&str> = run.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(commands, vec!["stop-writers", "restart-app"]);
    // After the swap the hook is told where the live database answers now.
    let env = &run[1].1;
    assert_eq!(env["ENVCLONE_DATABASE_Database"], "prod-db");
    assert_eq!(
        env["ENVCLONE_DATABASE_Database_ENDPOINT"],
        "prod-db.fake.rds.amazonaws.com"
    );
    // The run's record keeps them (resume, abort on another machine run the same hooks).
    let recorded = state.plan.as_ref().unwrap().to_plan(&state.run_id).unwrap();
    assert_eq!(recorded.contract.hooks.quiesce.len(), 1);
    assert_eq!(
        recorded.contract.hooks.post_swap[0].command(),
        "restart-app"
    );
    // The new stack's template carries no hooks.
    let body = s.fake.template_body("prod-mbeef").await.unwrap();
    assert!(!body.contains("stop-writers") && !body.contains("restart-app"));
}

/// Issue 15, item 1, for migrate: a new template revision that hands two new NoEcho secrets to
/// the application has no source values for them; before the fix the defaulted one silently
/// took its default. Refused before any change, both named; given, they go through.
#[tokio::test(start_paused = true)]
async fn new_noecho_parameters_of_the_target_template_are_refused_unless_given() {
    let (s, _) = prod().await;
    let mut request = request();
    request.template.1 = with_app_secrets(V2, &[]);
    let Err(err) = s.engine.preflight_migrate(&request, run_id()).await else {
        panic!("a migration onto unknown NoEcho values was planned");
    };
    let err = err.to_string();
    assert!(err.contains("2 NoEcho parameter(s)"), "{err}");
    assert!(err.contains("pass --parameter ApiKey=VALUE"), "{err}");
    assert!(err.contains("AppDbPassword (the clone would get"), "{err}");
    assert_eq!(s.fake.mutating_calls(), Vec::<String>::new());

    for (k, v) in [("ApiKey", "k"), ("AppDbPassword", "p")] {
        request.parameter_overrides.insert(k.into(), v.into());
    }
    let plan = s
        .engine
        .preflight_migrate(&request, run_id())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.clone.parameters["AppDbPassword"], "p");
}

/// The webapp's order table, created by the stack under the environment's name.
const ORDERS_TABLE: &str = r#"
  Orders:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "${EnvironmentName}-orders"
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - { AttributeName: pk, AttributeType: S }
      KeySchema:
        - { AttributeName: pk, KeyType: HASH }
"#;

/// `template` with `entry` under the contract's `tables:`, and the order table among its
/// resources (`table_resource`) or its name as parameter OrdersTableName.
fn with_orders(template: &str, entry: &str, table_resource: bool) -> String {
    let t = template.replacen(
        "    entry_dns:\n",
        &format!("    tables:\n      {entry}\n    entry_dns:\n"),
        1,
    );
    if table_resource {
        t.replacen("Resources:\n", &format!("Resources:{ORDERS_TABLE}"), 1)
    } else {
        t.replacen(
            "Parameters:\n",
            "Parameters:\n  OrdersTableName: { Type: String, Default: prod-orders }\n",
            1,
        )
    }
}

/// A refusal `message` saying each of `parts`, with no stack made and the source as it was.
fn assert_refused_unchanged(
    s: &Scenario,
    record: &DnsRecord,
    entry: &str,
    message: &str,
    parts: &[&str],
    stacks_before: &[String],
) {
    for part in parts {
        assert!(message.contains(part), "{entry}: {part:?} in {message}");
    }
    assert_eq!(s.fake.live_stack_names(), stacks_before, "{entry}");
    assert_source_as_it_was(s, record, entry);
}

/// Issue 12: "`migrate` cannot rename a table: refuse with a clear message unless the contract
/// marks the table `shared`". A table the stack creates, or one passed in by a parameter
/// without `shared`, is refused at preflight naming the table, why and what to do, before
/// anything changes; a shared one passes this check. Failed before: the `tables:` section did
/// not exist, and migrate had no word on tables.
#[tokio::test(start_paused = true)]
async fn migrate_of_a_stack_with_an_unshared_table_is_refused_before_any_change() {
    let v1 = with_orders(WEBAPP, "Orders: {}", true);
    let (s, record) = prod_from(&v1).await;
    assert!(s.fake.table_exists("prod-orders"));
    let stacks_before = s.fake.live_stack_names();
    for (entry, table_resource, named) in [
        ("Orders: {}", true, "Orders (created by the stack)"),
        (
            "Orders: { table_parameter: OrdersTableName }",
            false,
            "Orders (passed in by parameter OrdersTableName)",
        ),
    ] {
        let mut req = request();
        req.template.1 = with_orders(V2, entry, table_resource);
        let Err(err) = s.engine.preflight_migrate(&req, run_id()).await else {
            panic!("{entry}: migrate of a stack with an unshared table was not refused");
        };
        assert!(
            matches!(err, envclone::workflow::PreflightError::Unsupported { .. }),
            "{entry}: {err:?}"
        );
        let parts = [
            named,
            "a DynamoDB table cannot be renamed",
            "DynamoDB has no rename",
            "nothing was changed",
            "shared: true",
            "ExportTableToPointInTime",
        ];
        assert_refused_unchanged(&s, &record, entry, &err.to_string(), &parts, &stacks_before);
        assert!(s.fake.table_exists("prod-orders"), "{entry}");
    }
    // The same table passed to the new stack by its parameter and marked shared is what
    // migrate can do: the check lets it through to the rest of the preflight.
    let mut req = request();
    req.template.1 = with_orders(
        V2,
        "Orders: { table_parameter: OrdersTableName, shared: true }",
        false,
    );
    let plan = s.engine.preflight_migrate(&req, run_id()).await;
    assert!(plan.is_ok(), "{:?}", plan.err());
}

/// Issue 12: a clone of a stack whose contract passes a table in by parameter gives the clone
/// a table of its own, shared or not (`shared` is for migrate's new stack only): never the
/// source's `prod-orders`. (This test used to assert the stopgap refusal "envclone does not yet
/// create and fill a table of its own"; the `dynamodb_table` kind now does, see
/// fake_table_clone.rs.)
#[tokio::test(start_paused = true)]
async fn a_clone_of_a_stack_passing_a_table_by_parameter_gets_a_table_of_its_own() {
    for entry in [
        "Orders: { table_parameter: OrdersTableName }",
        "Orders: { table_parameter: OrdersTableName, shared: true }",
    ] {
        let (s, _) = prod_from(&with_orders(WEBAPP, entry, false)).await;
        s.fake.create_table_now(crate::fake_dynamodb::orders(
            "prod-orders",
            envclone::workflow::dynamodb::Capacity::OnDemand,
        ));
        let plan = s
            .engine
            .preflight(&s.request("staging"), run_id())
            .await
            .unwrap_or_else(|e| panic!("{entry}: {e}"));
        assert_eq!(
            plan.parameters["OrdersTableName"], "staging-Orders",
            "{entry}"
        );
        let steps = plan.steps().join("\n");
        assert!(
            steps.contains("create DynamoDB table staging-Orders shaped like the source's Orders"),
            "{entry}: {steps}"
        );
    }
}
