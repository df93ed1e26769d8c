//! What a clone copies and what it creates empty (issue 12, "every resource of a stack is
//! classified at preflight"), on the fake:
//! - a clone or migrate whose template creates stateful resources envclone does not copy (an
//!   EFS file system, an SQS queue, a type envclone has not judged) is refused before any
//!   change, naming each;
//! - with an `ignore:` reason for each it goes through, and the plan and the report show them
//!   as created empty;
//! - finalize keeps them: it refuses to delete the old stack unless each has
//!   `DeletionPolicy: Retain`, and then CloudFormation keeps them.
//!
//! Each test failed before the fix: the clone created the file system, the queue and the Glue
//! database empty without a word, and finalize deleted the Glue database with the old stack.

use envclone::fake::MemoryRunStore;
use envclone::workflow::migrate::{MigratePhase, MigrateRequest};
use envclone::workflow::PreflightError;

use crate::fake_migrate::prod_from;
use crate::support::*;

const V2: &str = include_str!("../../stacks/webapp-v2.yaml");
const STORAGE: &str = "  # --- storage ---";

/// `base` (webapp.yaml or webapp-v2.yaml) with an EFS file system, an SQS queue and a Glue
/// database (a type on neither of envclone's lists), each with `policy` (a DeletionPolicy line
/// or nothing); with `ignore`, the contract accepts each starting empty, with a reason.
fn with_state(base: &str, policy: &str, ignore: bool) -> String {
    let extra = format!(
        "  Files:\n    Type: AWS::EFS::FileSystem\n{policy}    Properties:\n      Encrypted: true\n\n  \
         Jobs:\n    Type: AWS::SQS::Queue\n{policy}    Properties:\n      VisibilityTimeout: 60\n\n  \
         Catalog:\n    Type: AWS::Glue::Database\n{policy}    Properties:\n      \
         CatalogId: !Ref AWS::AccountId\n      DatabaseInput: {{ Description: reports }}\n\n"
    );
    // A queue only an environment created without a snapshot has (the seeded source): its
    // condition is false for every clone, which does not create it — not refused, not listed.
    let seed_only =
        format!("  SeedQueue:\n    Type: AWS::SQS::Queue\n    Condition: IsSeed\n{policy}\n");
    let conditions = "  HasHealthCheckBase: !Not [!Equals [!Ref HealthCheckBase, \"\"]]\n";
    assert!(base.contains(STORAGE) && base.contains(conditions));
    let body = base
        .replacen(STORAGE, &format!("{extra}{seed_only}{STORAGE}"), 1)
        .replacen(
            conditions,
            &format!("{conditions}  IsSeed: !Equals [!Ref DBSnapshotIdentifier, \"\"]\n"),
            1,
        );
    if !ignore {
        return body;
    }
    let contract_verify = "    verify:\n      - http_output: HealthCheckUrl\n";
    assert!(body.contains(contract_verify));
    body.replacen(
        contract_verify,
        &format!(
            "    ignore:\n      \
             Files: {{ reason: \"scratch space, rebuilt by the app on start\" }}\n      \
             Jobs: {{ reason: \"jobs are re-enqueued by the scheduler\" }}\n      \
             Catalog: {{ reason: \"the crawler rebuilds it nightly\" }}\n{contract_verify}"
        ),
        1,
    )
}

fn assert_names_each(err: &str) {
    for what in [
        "AWS::EFS::FileSystem Files",
        "the file system's files",
        "AWS::SQS::Queue Jobs",
        "messages not yet consumed",
        "AWS::Glue::Database Catalog",
        "envclone does not know this type",
        "ignore:",
        "nothing was changed",
    ] {
        assert!(err.contains(what), "{what}: {err}");
    }
    assert!(!err.contains("SeedQueue"), "not created by a clone: {err}");
}

fn migrate_onto(template: String) -> MigrateRequest {
    MigrateRequest {
        env: "prod".into(),
        template: ("webapp-v2-stateful.yaml".into(), template),
        parameter_overrides: Default::default(),
        config: post_swap_hook_config(), // webapp-v2 hands its endpoint to the app
    }
}

#[tokio::test(start_paused = true)]
async fn a_clone_or_migrate_creating_uncovered_state_is_refused_naming_each() {
    let (s, _) = prod_from(&with_state(WEBAPP, "", false)).await;
    let calls = s.fake.mutating_calls().len();

    let err = s
        .engine
        .preflight(&s.request("exp-a"), run_id())
        .await
        .unwrap_err();
    assert!(matches!(err, PreflightError::Uncovered { .. }), "{err}");
    assert_names_each(&err.to_string());

    let err = s
        .engine
        .preflight_migrate(&migrate_onto(with_state(V2, "", false)), run_id())
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, PreflightError::Uncovered { .. }), "{err}");
    assert_names_each(&err.to_string());

    assert_eq!(s.fake.mutating_calls().len(), calls, "no change at all");
    assert_eq!(s.fake.live_stack_names(), vec!["prod".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn with_ignore_reasons_the_clone_goes_through_and_shows_them_created_empty() {
    let (s, _) = prod_from(&with_state(WEBAPP, "", true)).await;
    let plan = s
        .engine
        .preflight(&s.request("exp-a"), run_id())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let steps = plan.steps().join("\n");
    for what in [
        "created EMPTY, not copied: AWS::EFS::FileSystem Files (contract ignore: scratch space, \
         rebuilt by the app on start)",
        "created EMPTY, not copied: AWS::SQS::Queue Jobs (contract ignore: jobs are re-enqueued \
         by the scheduler)",
        "created EMPTY, not copied: AWS::Glue::Database Catalog",
        "created empty by design: ",
    ] {
        assert!(steps.contains(what), "{what}: {steps}");
    }
    // Copied: the database and the stack's bucket (the Reports bucket is passed in by
    // parameter, not created by the stack); everything else of webapp.yaml is stateless.
    assert_eq!(plan.inventory.copied, vec!["Database", "Uploads"]);
    assert!(plan.inventory.stateless.contains(&"Vpc".to_string()));
    assert!(plan.inventory.uncovered.is_empty());
    assert!(!steps.contains("SeedQueue"), "{steps}");
    assert!(s.fake.recorded_physical_id("prod", "SeedQueue").is_some());

    let store = MemoryRunStore::default();
    let report = clone_to_end(&s, &store, "exp-a").await;
    let ignored: Vec<&str> = report
        .inventory
        .ignored
        .iter()
        .map(|i| i.logical_id.as_str())
        .collect();
    assert_eq!(ignored, vec!["Catalog", "Files", "Jobs"]);
    for logical_id in ["Files", "Jobs", "Catalog"] {
        let id = s.fake.recorded_physical_id("exp-a", logical_id).unwrap();
        assert!(s.fake.generic_resource_exists(&id), "{logical_id}");
    }
}

/// The ignored resources of the old stack are the source's data: ignoring one lets the clone
/// start without it, not finalize destroy it.
#[tokio::test(start_paused = true)]
async fn finalize_keeps_the_ignored_state_of_the_old_stack() {
    for retained in [false, true] {
        let policy = if retained {
            "    DeletionPolicy: Retain\n"
        } else {
            ""
        };
        let (s, _) = prod_from(&with_state(WEBAPP, policy, true)).await;
        let store = MemoryRunStore::default();
        let mut state = migrated_by(&s, &store, &migrate_onto(with_state(V2, "", true))).await;
        let old: Vec<String> = ["Files", "Jobs", "Catalog"]
            .iter()
            .map(|l| s.fake.recorded_physical_id("prod", l).unwrap())
            .collect();
        let result = s.engine.finalize(&mut state, &store, &s.emitter).await;
        if retained {
            result.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(state.phase, MigratePhase::Finalized);
            assert!(!s.fake.live_stack_names().contains(&"prod".to_string()));
            for id in &old {
                assert!(
                    state.kept.iter().any(|k| k.contains(id.as_str())),
                    "{id} listed: {:?}",
                    state.kept
                );
            }
        } else {
            let err = result.unwrap_err().to_string();
            for what in [
                "AWS::EFS::FileSystem Files",
                "AWS::SQS::Queue Jobs",
                "AWS::Glue::Database Catalog",
                "DeletionPolicy: Retain",
                "Nothing was changed",
            ] {
                assert!(err.contains(what), "{what}: {err}");
            }
            assert_eq!(state.phase, MigratePhase::Swapped);
            assert!(s.fake.live_stack_names().contains(&"prod".to_string()));
        }
        for id in &old {
            assert!(s.fake.generic_resource_exists(id), "{id} is kept");
        }
    }
}

/// On the stand-in, through the binary: `envclone clone --template` of webapp.yaml with a file
/// system, a queue and a Glue database exits 2 (bad input) before any change, naming each; with
/// their `ignore:` reasons, `--dry-run` prints the plan listing them as created empty.
#[tokio::test(flavor = "multi_thread")]
async fn the_binary_refuses_uncovered_state_with_exit_2_and_plans_ignored_state_as_empty() {
    use crate::e2e::{text, world, StandIn};
    let standin = StandIn::start();
    standin.seed("prod", "stacks/webapp.yaml", &[]);
    let config = standin.sdk().await;
    let before = world(&config).await;
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    for ignore in [false, true] {
        let template = dir.path().join(format!("webapp-stateful-{ignore}.yaml"));
        std::fs::write(&template, with_state(WEBAPP, "", ignore)).unwrap();
        let template = template.to_str().unwrap();
        let last = if ignore { "--dry-run" } else { "--yes" };
        let out = standin.envclone(
            state.path(),
            &["clone", "prod", "exp-q", "--template", template, last],
        );
        if ignore {
            assert!(out.status.success(), "{}\n{}", text(&out), standin.log());
            let stdout = String::from_utf8_lossy(&out.stdout);
            for what in [
                "created EMPTY, not copied: AWS::EFS::FileSystem Files (contract ignore: scratch",
                "created EMPTY, not copied: AWS::SQS::Queue Jobs (contract ignore: jobs",
                "created EMPTY, not copied: AWS::Glue::Database Catalog (contract ignore: the",
                "created empty by design: ",
            ] {
                assert!(stdout.contains(what), "{what}: {}", text(&out));
            }
        } else {
            assert_eq!(out.status.code(), Some(2), "{}", text(&out));
            assert_names_each(&text(&out));
        }
        assert_eq!(world(&config).await, before, "nothing changed");
    }
}
