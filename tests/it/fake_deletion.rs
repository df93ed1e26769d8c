//! Deletion deletes only what envclone made (issue 10, items 4, 8 and 9), on the fake whose
//! CloudFormation names final snapshots as AWS does, keeps resources by their DeletionPolicy,
//! and tracks every resource of a stack:
//! - `destroy` and `gc` delete the final snapshots CloudFormation took because of their own
//!   DeleteStack, never a user's snapshot of the clone's database;
//! - `finalize` keeps the stateful resources the contract does not cover, refuses a protected
//!   environment, and lifts only the termination protection envclone set;
//! - `verify` calls a missing database a failure unless envclone's tags prove the rename;
//! - `abort` of a migration that never swapped removes what it made, and `destroy` takes the
//!   new environment of such a migration.
//!
//! Each test here failed before its fix (named in the test's comment).

use std::collections::BTreeMap;
use std::time::Duration;

use envclone::fake::MemoryRunStore;
use envclone::model::{TAG_CFN_IDENTIFIER, TAG_MIGRATED_BY, TAG_RUN};
use envclone::ports::{DnsRecord, Stacks};
use envclone::workflow::experiments::DestroyError;
use envclone::workflow::migrate::{MigratePhase, MigrateRequest, MigrationState};

use crate::support::*;

const V2: &str = include_str!("../../stacks/webapp-v2.yaml");
const ZONE: &str = "envclone-demo.example.";
const ENTRY: &str = "app.envclone-demo.example.";
const RUN: &str = "20261121000000-beef";

use crate::fake_migrate::prod_from;

fn migrate_request() -> MigrateRequest {
    MigrateRequest {
        env: "prod".into(),
        template: ("stacks/webapp-v2.yaml".into(), V2.into()),
        parameter_overrides: Default::default(),
        config: post_swap_hook_config(), // webapp-v2 hands its endpoint to the app (item 3)
    }
}

/// Runs `migrate prod` to the end of the swap.
async fn migrated(s: &Scenario, store: &MemoryRunStore) -> MigrationState {
    migrated_by(s, store, &migrate_request()).await
}

fn stored(store: &MemoryRunStore) -> MigrationState {
    serde_json::from_value(store.0.lock().unwrap()[RUN].clone()).unwrap()
}

/// A snapshot the user takes of a database by hand. With CopyTagsToSnapshot (webapp.yaml sets
/// it) RDS copies the instance's tags — CloudFormation's stack tags, `envclone:run` among
/// them — onto it, so it carries the run's tag like envclone's own.
async fn user_snapshot(s: &Scenario, db: &str, id: &str, run: &str) {
    let tags = BTreeMap::from([(TAG_RUN.to_string(), run.to_string())]);
    s.fake
        .cloud()
        .databases
        .create_snapshot(db, id, &tags)
        .await
        .unwrap();
    tokio::time::sleep(s.fake.timings.snapshot + Duration::from_secs(1)).await;
}

/// Item 4. Failed before the fix: destroy deleted every snapshot of the clone's database
/// taken after the clone started, the user's `exp-a-db-before-upgrade` included.
#[tokio::test(start_paused = true)]
async fn destroy_and_gc_delete_only_the_final_snapshots_cloudformation_took() {
    let s = Scenario::with_webapp_prod();
    let store = MemoryRunStore::default();
    for (target, run) in [("exp-a", RUN), ("exp-b", "20261121000000-cafe")] {
        let mut request = s.request(target);
        request.owner = Some("alice".into());
        request.expires_at = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
        let run_id = envclone::model::RunId::from_existing(run);
        let plan = s.engine.preflight(&request, run_id).await.unwrap();
        s.engine
            .run_clone(&plan, &store, &s.emitter, std::future::pending(), None)
            .await
            .unwrap_or_else(|f| panic!("{}", f.error));
        user_snapshot(
            &s,
            &format!("{target}-db"),
            &format!("{target}-db-before-upgrade"),
            run,
        )
        .await;
    }

    // destroy
    let target = s.engine.destroyable("exp-a").await.unwrap();
    let (removed, left) = s.engine.destroy(&target, &s.emitter).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    // CloudFormation's final snapshot of exp-a-db (DeletionPolicy Snapshot) went with it.
    assert!(
        removed.iter().any(|r| r
            .to_string()
            .starts_with("DB snapshot exp-a-snapshot-database-")
            && r.to_string().contains("taken by CloudFormation")),
        "{removed:?}"
    );
    assert!(
        !removed
            .iter()
            .any(|r| r.to_string().contains("before-upgrade")),
        "{removed:?}"
    );

    // gc, as `envclone gc` does it: the expired experiments, each re-checked, destroyed.
    let now = chrono::Utc::now();
    for e in s.engine.list_environments().await.unwrap() {
        if e.is_experiment() && !e.protected && e.expired(now) {
            let target = s.engine.destroyable(&e.name).await.unwrap();
            let (_, left) = s.engine.destroy(&target, &s.emitter).await.unwrap();
            assert!(left.is_empty(), "{left:?}");
        }
    }
    assert_eq!(s.fake.live_stack_names(), vec!["prod".to_string()]);
    assert_eq!(
        s.fake.snapshot_ids(),
        vec![
            "exp-a-db-before-upgrade".to_string(),
            "exp-b-db-before-upgrade".to_string()
        ],
        "the users' snapshots survive, nothing else of the runs is left"
    );
}

/// webapp.yaml with state the cloning contract does not cover: a KMS key that encrypts the
/// database (and so the live database after a migrate, restored from its snapshot), a
/// DynamoDB table, a log group. `policy` is their DeletionPolicy line, if any.
fn with_uncovered_state(policy: &str) -> String {
    let extra = format!(
        "  DataKey:\n    Type: AWS::KMS::Key\n{policy}    Properties:\n      EnableKeyRotation: true\n\n  \
         Sessions:\n    Type: AWS::DynamoDB::Table\n{policy}    Properties:\n      BillingMode: PAY_PER_REQUEST\n      \
         AttributeDefinitions: [{{ AttributeName: id, AttributeType: S }}]\n      \
         KeySchema: [{{ AttributeName: id, KeyType: HASH }}]\n\n  \
         AppLogs:\n    Type: AWS::Logs::LogGroup\n{policy}    Properties:\n      RetentionInDays: 30\n\n"
    );
    let anchor = "  # --- storage ---";
    assert!(WEBAPP.contains(anchor));
    let encrypted = WEBAPP.replacen(
        "      StorageType: gp3\n",
        "      StorageType: gp3\n      StorageEncrypted: true\n      KmsKeyId: !Ref DataKey\n",
        1,
    );
    assert_ne!(encrypted, WEBAPP);
    // A clone of it creates them empty: the contract says so (issue 12; without it the clone
    // is refused). Finalize keeps them all the same.
    let verify = "    verify:\n      - http_output: HealthCheckUrl\n";
    assert!(encrypted.contains(verify));
    encrypted
        .replacen(anchor, &format!("{extra}{anchor}"), 1)
        .replacen(
            verify,
            &format!(
                "    ignore:\n      DataKey: {{ reason: \"a clone encrypts with its own key\" }}\n      \
                 Sessions: {{ reason: \"sessions expire\" }}\n      \
                 AppLogs: {{ reason: \"logs stay with the source\" }}\n{verify}"
            ),
            1,
        )
}

/// Item 4 (what is not deleted is listed). Failed before the fix: destroy reported the clone
/// removed while CloudFormation kept its resources with DeletionPolicy Retain, unlisted.
#[tokio::test(start_paused = true)]
async fn destroy_lists_what_cloudformation_keeps_by_its_deletion_policy() {
    let (s, _) = prod_from(&with_uncovered_state("    DeletionPolicy: Retain\n")).await;
    let store = MemoryRunStore::default();
    clone_to_end(&s, &store, "exp-a").await;
    let kept: Vec<String> = ["DataKey", "Sessions", "AppLogs"]
        .iter()
        .map(|l| s.fake.recorded_physical_id("exp-a", l).unwrap())
        .collect();
    let target = s.engine.destroyable("exp-a").await.unwrap();
    let (removed, left) = s.engine.destroy(&target, &s.emitter).await.unwrap();
    assert!(removed.iter().any(|r| r == "stack exp-a"), "{removed:?}");
    for id in &kept {
        assert!(s.fake.generic_resource_exists(id), "{id}");
        assert!(
            left.iter().any(|l| l.to_string().contains(id.as_str())
                && l.to_string().contains("DeletionPolicy Retain")),
            "{id} listed: {left:?}"
        );
    }
    assert_eq!(left.len(), kept.len(), "{left:?}");
}

/// Issue 15 (corpus: AWS's ELB access-logs sample keeps its logs bucket by DeletionPolicy
/// Retain). Failed before the fix: destroy emptied every bucket of the clone's stack before
/// deleting it, so CloudFormation kept the bucket the template retains, but empty — while
/// destroy listed it as kept.
#[tokio::test(start_paused = true)]
async fn destroy_leaves_the_objects_of_a_bucket_cloudformation_keeps() {
    let uploads = "  Uploads:\n    Type: AWS::S3::Bucket\n";
    let template = WEBAPP.replacen(
        uploads,
        &format!("{uploads}    DeletionPolicy: Retain\n"),
        1,
    );
    assert_ne!(template, WEBAPP);
    let (s, _) = prod_from(&template).await;
    let store = MemoryRunStore::default();
    clone_to_end(&s, &store, "exp-a").await;
    let bucket = s.fake.recorded_physical_id("exp-a", "Uploads").unwrap();
    let keys = s.fake.object_keys(&bucket);
    assert!(!keys.is_empty(), "the clone's {bucket} holds the copy");
    let target = s.engine.destroyable("exp-a").await.unwrap();
    let (removed, left) = s.engine.destroy(&target, &s.emitter).await.unwrap();
    assert!(removed.iter().any(|r| r == "stack exp-a"), "{removed:?}");
    assert!(
        left.iter()
            .any(|l| l.to_string().contains(&bucket)
                && l.to_string().contains("DeletionPolicy Retain")),
        "{left:?}"
    );
    assert_eq!(
        s.fake.object_keys(&bucket),
        keys,
        "the kept bucket keeps its objects"
    );
}

/// Item 4. Failed before the fix: finalize deleted the old stack with its KMS key, table and
/// log group.
#[tokio::test(start_paused = true)]
async fn finalize_refuses_to_destroy_state_the_contract_does_not_cover() {
    let (s, _) = prod_from(&with_uncovered_state("")).await;
    let store = MemoryRunStore::default();
    let mut state = migrated(&s, &store).await;
    let uncovered: Vec<String> = ["DataKey", "Sessions", "AppLogs"]
        .iter()
        .map(|l| s.fake.recorded_physical_id("prod", l).unwrap())
        .collect();
    let calls = s.fake.mutating_calls().len();
    let err = s
        .engine
        .finalize(&mut state, &store, &s.emitter)
        .await
        .unwrap_err()
        .to_string();
    for what in [
        "AWS::KMS::Key DataKey",
        "AWS::DynamoDB::Table Sessions",
        "AWS::Logs::LogGroup AppLogs",
        "DeletionPolicy: Retain",
        "Nothing was changed",
    ] {
        assert!(err.contains(what), "{what}: {err}");
    }
    assert_eq!(s.fake.mutating_calls().len(), calls, "no change at all");
    assert_eq!(state.phase, MigratePhase::Swapped);
    assert_eq!(stored(&store).phase, MigratePhase::Swapped);
    assert!(s.fake.live_stack_names().contains(&"prod".to_string()));
    for id in &uncovered {
        assert!(s.fake.generic_resource_exists(id), "{id}");
    }
}

/// Item 4. With `DeletionPolicy: Retain` on them, finalize deletes the old stack and
/// CloudFormation keeps them; the report names each. (Before the fix the fake ignored
/// DeletionPolicy Retain, as it ignored every resource it did not model.)
#[tokio::test(start_paused = true)]
async fn finalize_keeps_retained_state_and_lists_it() {
    let (s, _) = prod_from(&with_uncovered_state("    DeletionPolicy: Retain\n")).await;
    let store = MemoryRunStore::default();
    let mut state = migrated(&s, &store).await;
    let key = s.fake.recorded_physical_id("prod", "DataKey").unwrap();
    let table = s.fake.recorded_physical_id("prod", "Sessions").unwrap();
    let logs = s.fake.recorded_physical_id("prod", "AppLogs").unwrap();
    let vpc = s.fake.recorded_physical_id("prod", "Vpc").unwrap();
    s.engine
        .finalize(&mut state, &store, &s.emitter)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state.phase, MigratePhase::Finalized);
    assert!(!s.fake.live_stack_names().contains(&"prod".to_string()));
    for id in [&key, &table, &logs] {
        assert!(s.fake.generic_resource_exists(id), "{id} is kept");
        assert!(
            state.kept.iter().any(|k| k.contains(id.as_str())),
            "{id} listed: {:?}",
            state.kept
        );
    }
    assert!(!s.fake.generic_resource_exists(&vpc), "the rest is deleted");
    assert!(
        state
            .kept
            .iter()
            .any(|k| k.starts_with("AWS::KMS::Key DataKey") && k.contains("decrypt")),
        "{:?}",
        state.kept
    );
    assert_eq!(stored(&store).kept, state.kept);
}

/// Item 4. Failed before the fix: finalize deleted an environment tagged protected.
#[tokio::test(start_paused = true)]
async fn finalize_refuses_a_protected_environment() {
    let (s, _) = prod_from(WEBAPP).await;
    let store = MemoryRunStore::default();
    let mut state = migrated(&s, &store).await;
    s.fake.set_stack_tag("prod", "envclone:protected", "true");
    let calls = s.fake.mutating_calls().len();
    let err = s
        .engine
        .finalize(&mut state, &store, &s.emitter)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("envclone:protected=true") && err.contains("Nothing was changed"),
        "{err}"
    );
    assert_eq!(s.fake.mutating_calls().len(), calls, "no change at all");
    assert_eq!(stored(&store).phase, MigratePhase::Swapped);
    assert!(s
        .fake
        .db_ids()
        .contains(&"prod-db-old-202611210000".to_string()));
}

/// Item 4. Failed before the fix: finalize lifted the operator's own termination protection
/// and deleted the stack.
#[tokio::test(start_paused = true)]
async fn finalize_lifts_only_the_termination_protection_envclone_set() {
    let (s, _) = prod_from(WEBAPP).await;
    // The operator protects prod before the migration; the swap leaves theirs as it is.
    s.fake
        .set_termination_protection("prod", true)
        .await
        .unwrap();
    let store = MemoryRunStore::default();
    let mut state = migrated(&s, &store).await;
    assert!(!state.old_stack_protected);
    let calls = s.fake.mutating_calls().len();
    let err = s
        .engine
        .finalize(&mut state, &store, &s.emitter)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("termination protection that envclone did not turn on")
            && err.contains("--no-enable-termination-protection --stack-name prod")
            && err.contains("Nothing was changed"),
        "{err}"
    );
    assert_eq!(s.fake.mutating_calls().len(), calls, "no change at all");
    assert_eq!(s.fake.termination_protection("prod"), Some(true));

    // The operator consents by lifting it: finalize goes through.
    s.fake
        .set_termination_protection("prod", false)
        .await
        .unwrap();
    s.engine
        .finalize(&mut state, &store, &s.emitter)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state.phase, MigratePhase::Finalized);
    assert!(!s.fake.live_stack_names().contains(&"prod".to_string()));
    assert!(s.fake.db_ids().contains(&"prod-db".to_string()));
}

/// Item 8. Failed before the fix: a database missing from CloudFormation's record was reported
/// as "drift" (ok) whatever had happened to it.
#[tokio::test(start_paused = true)]
async fn verify_calls_a_missing_database_a_failure_unless_envclones_tags_prove_the_rename() {
    let s = Scenario::with_webapp_prod();
    let dbs = s.fake.cloud().databases;
    let database_check = |checks: &[envclone::workflow::clone::CheckResult], id: &str| {
        checks
            .iter()
            .find(|c| {
                c.check.starts_with("database Database") || c.check == format!("database {id}")
            })
            .cloned()
            .unwrap_or_else(|| panic!("no database check: {checks:#?}"))
    };
    let store = MemoryRunStore::default();
    clone_to_end(&s, &store, "staging-test").await;
    let (checks, _) = s.engine.verify_env("staging-test", None).await.unwrap();
    assert!(checks.iter().all(|c| c.ok), "{checks:#?}");

    // Renamed by someone else, even with a look-alike tag: not proven.
    let forged = BTreeMap::from([
        (
            TAG_CFN_IDENTIFIER.to_string(),
            "staging-test-db".to_string(),
        ),
        (
            TAG_MIGRATED_BY.to_string(),
            "20000101000000-dead".to_string(),
        ),
    ]);
    dbs.rename_instance("staging-test-db", "staging-test-db-x")
        .await
        .unwrap();
    // The rename answers under the new identifier once it is effective (USER_RenameInstance).
    tokio::time::sleep(s.fake.timings.db_rename).await;
    dbs.tag_instance("staging-test-db-x", &forged)
        .await
        .unwrap();
    let (checks, _) = s.engine.verify_env("staging-test", None).await.unwrap();
    let c = database_check(&checks, "staging-test-db");
    assert!(!c.ok, "{c:?}");
    assert!(
        c.detail.contains("no database staging-test-db exists")
            && c.detail.contains(&format!("{TAG_MIGRATED_BY}={RUN}")),
        "{c:?}"
    );

    // With both of envclone's tags, as the swap puts them: the rename is proven (drift).
    let proof = BTreeMap::from([(TAG_MIGRATED_BY.to_string(), RUN.to_string())]);
    dbs.tag_instance("staging-test-db-x", &proof).await.unwrap();
    tokio::time::sleep(s.fake.timings.db_modify).await;
    let (checks, _) = s.engine.verify_env("staging-test", None).await.unwrap();
    let c = database_check(&checks, "staging-test-db");
    assert!(
        c.ok && c.detail.contains("renamed it to staging-test-db-x"),
        "{c:?}"
    );
    assert!(
        checks
            .iter()
            .any(|c| c.check == "database staging-test-db-x" && c.ok),
        "the live one is checked: {checks:#?}"
    );

    // Deleted: a failure.
    dbs.delete_instance("staging-test-db-x").await.unwrap();
    let (checks, _) = s.engine.verify_env("staging-test", None).await.unwrap();
    let c = database_check(&checks, "staging-test-db");
    assert!(!c.ok, "{c:?}");
    assert!(
        c.detail.contains("deleted or renamed outside envclone"),
        "{c:?}"
    );
}

/// Item 8: after a real migrate, the new stack's record names the temporary identifier and
/// the swap's tags prove the rename.
#[tokio::test(start_paused = true)]
async fn verify_after_a_migrate_reports_the_proven_rename_as_drift() {
    let (s, _) = prod_from(WEBAPP).await;
    let store = MemoryRunStore::default();
    migrated(&s, &store).await;
    let (checks, _) = s
        .engine
        .verify_env("prod-mbeef", Some("prod-mbeef"))
        .await
        .unwrap();
    let drift = checks
        .iter()
        .find(|c| c.check == "database Database (CloudFormation's record: prod-mbeef-db)")
        .unwrap_or_else(|| panic!("{checks:#?}"));
    assert!(
        drift.ok && drift.detail.contains("renamed it to prod-db"),
        "{drift:?}"
    );
}

/// Everything of run `RUN` gone: its stack, buckets, snapshots (its own and CloudFormation's
/// final ones) and database.
fn assert_nothing_of_the_migration_left(s: &Scenario, context: &str) {
    assert_eq!(
        s.fake.live_stack_names(),
        vec!["prod".to_string()],
        "{context}"
    );
    let buckets: Vec<String> = s
        .fake
        .bucket_names()
        .into_iter()
        .filter(|b| b.starts_with("prod-mbeef"))
        .collect();
    assert!(buckets.is_empty(), "{context}: {buckets:?}");
    assert!(
        s.fake.snapshot_ids().is_empty(),
        "{context}: {:?}",
        s.fake.snapshot_ids()
    );
    assert_eq!(s.fake.db_ids(), vec!["prod-db".to_string()], "{context}");
}

/// The source as it was: its own database under its identifier, its record, its instances in
/// service, no termination protection of the run's.
fn assert_source_as_it_was(s: &Scenario, record: &DnsRecord, context: &str) {
    assert_eq!(
        s.fake.termination_protection("prod"),
        Some(false),
        "{context}"
    );
    assert_eq!(s.fake.db_restored_from("prod-db"), None, "{context}");
    assert_eq!(
        s.fake.dns_records(ZONE, ENTRY),
        vec![record.clone()],
        "{context}"
    );
    assert_source_in_service(s, context);
}

/// Item 9. Failed before the fix: abort of a migration killed in its clone phase returned the
/// source to service but kept the temporary stack `prod-mbeef`, its snapshot and buckets.
#[tokio::test(start_paused = true)]
async fn abort_of_a_migration_killed_before_the_swap_removes_what_it_made() {
    let mut n = 0;
    loop {
        n += 1;
        let (s, record) = prod_from(WEBAPP).await;
        let store = MemoryRunStore::default();
        let plan = s
            .engine
            .preflight_migrate(&migrate_request(), run_id())
            .await
            .unwrap();
        let crash = s.fake.crash_after_nth_mutating_call(n);
        tokio::select! {
            biased;
            () = crash.notified() => {}
            _ = s.engine.migrate(&plan, &store, &s.emitter, std::future::pending()) => {}
        }
        let mut state = stored(&store);
        if !matches!(state.phase, MigratePhase::Cloning | MigratePhase::Cloned) {
            assert!(n > 10, "the clone phase makes calls: stopped at {n}");
            break; // the swap began: abort keeps the new environment (other tests)
        }
        assert!(state.never_swapped);
        let context = format!("kill after call {n} ({:?})", state.phase);
        s.engine
            .abort_migration(&mut state, &store, &s.emitter)
            .await
            .unwrap_or_else(|e| panic!("{context}: abort failed: {e}"));
        assert_eq!(stored(&store).phase, MigratePhase::Aborted, "{context}");
        assert_source_as_it_was(&s, &record, &context);
        assert_nothing_of_the_migration_left(&s, &context);
    }

    // The same when a call fails instead (the run returns the source to service itself and
    // leaves what it made for abort).
    let mut n = 0;
    loop {
        n += 1;
        let (s, record) = prod_from(WEBAPP).await;
        let store = MemoryRunStore::default();
        let plan = s
            .engine
            .preflight_migrate(&migrate_request(), run_id())
            .await
            .unwrap();
        s.fake.fail_nth_mutating_call(n);
        let mut state = match s
            .engine
            .migrate(&plan, &store, &s.emitter, std::future::pending())
            .await
        {
            Ok(state) => state,
            Err(f) => f.state,
        };
        if !state.never_swapped {
            assert!(n > 10, "the clone phase makes calls: stopped at {n}");
            break;
        }
        let context = format!("failure of call {n} ({:?})", state.phase);
        s.engine
            .abort_migration(&mut state, &store, &s.emitter)
            .await
            .unwrap_or_else(|e| panic!("{context}: abort failed: {e}"));
        assert_source_as_it_was(&s, &record, &context);
        assert_nothing_of_the_migration_left(&s, &context);
    }
}

/// Item 9. Failed before the fix: `destroy` refused the new environment of a migration that
/// stopped at its guardrails as "migrated". One that served stays refused.
#[tokio::test(start_paused = true)]
async fn destroy_takes_the_new_environment_of_a_migration_that_never_swapped() {
    let (s, record) = prod_from(WEBAPP).await;
    let store = MemoryRunStore::default();
    let plan = s
        .engine
        .preflight_migrate(&migrate_request(), run_id())
        .await
        .unwrap();
    let group = s.source_group().name;
    s.fake.set_activity(&group, "Launching a new EC2 instance");
    let failure = s
        .engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .unwrap_err();
    assert!(failure.error.to_string().contains("scaling activity"));
    assert_eq!(failure.state.phase, MigratePhase::Aborted);
    s.fake.set_activity(&group, "");
    assert_source_as_it_was(&s, &record, "guardrails");
    let target = s
        .engine
        .destroyable("prod-mbeef")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (removed, left) = s.engine.destroy(&target, &s.emitter).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(
        removed.iter().any(|r| r == "stack prod-mbeef"),
        "{removed:?}"
    );
    assert_nothing_of_the_migration_left(&s, "destroy");

    // Swapped and swapped back: the new database served prod; destroy refuses it.
    let (s, _) = prod_from(WEBAPP).await;
    let store = MemoryRunStore::default();
    let mut state = migrated(&s, &store).await;
    s.engine
        .abort_migration(&mut state, &store, &s.emitter)
        .await
        .unwrap();
    assert!(s
        .fake
        .live_stack_names()
        .contains(&"prod-mbeef".to_string()));
    match s.engine.destroyable("prod-mbeef").await {
        Err(e @ DestroyError::Migrated { .. }) => {
            assert!(e.to_string().contains(TAG_MIGRATED_BY), "{e}")
        }
        other => panic!("{other:?}"),
    }
}
