//! End-to-end runs of `migrate` on the stand-in with renames that stay pending under the old
//! identifier for seconds (the stand-in's ENVCLONE_STANDIN_RENAME_DELAY, default 4 s; AWS
//! takes about ten minutes): Ctrl-C and `kill -9` while a rename is in flight, and an
//! environment migrated, finalized, cloned and migrated again (issue 10, items 1 and 2).

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;

use crate::e2e::*;

const ZONE: &str = "envclone-demo.example.";
const ENTRY: &str = "app.envclone-demo.example.";
const V2: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/stacks/webapp-v2.yaml");

/// Starts `envclone` with `args` and returns it once its journal shows an event of `step` and
/// `phase` whose message contains `needle`.
fn spawn_until(
    standin: &StandIn,
    state: &Path,
    args: &[&str],
    (step, phase, needle): (&str, &str, &str),
) -> Child {
    let mut child = standin
        .command(env!("CARGO_BIN_EXE_envclone"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(entries) = std::fs::read_dir(state.join("runs")) {
            for e in entries.filter_map(|e| e.ok()) {
                if !e.file_name().to_string_lossy().ends_with(".jsonl") {
                    continue;
                }
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let hit = text
                    .lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .any(|v| {
                        v["step"] == step
                            && v["phase"] == phase
                            && v["message"].as_str().unwrap_or("").contains(needle)
                    });
                if hit {
                    return child;
                }
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "envclone ended ({status}) before {step} {phase} {needle:?}:\n{}",
                text(&out)
            );
        }
        assert!(
            Instant::now() < deadline,
            "{step} {phase} {needle:?} never came"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The instance's status and the identifier a rename in flight moves it to
/// (`PendingModifiedValues.DBInstanceIdentifier`).
async fn db_status(config: &SdkConfig, id: &str) -> Option<(String, Option<String>)> {
    let rds = aws_sdk_rds::Client::new(config);
    let out = rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .ok()?;
    let db = out.db_instances().first()?;
    let pending = db
        .pending_modified_values()
        .and_then(|p| p.db_instance_identifier())
        .map(str::to_string);
    Some((db.db_instance_status()?.to_string(), pending))
}

/// What must be as it was: the source's own database at its identifier and available, the
/// stack without the swap's termination protection, instances in service, the entry record,
/// the buckets' objects.
struct Source {
    db: String,
    fleet: String,
    group: (i32, i32, Vec<String>),
    dns: Vec<String>,
    reports: std::collections::BTreeMap<String, String>,
    uploads: std::collections::BTreeMap<String, String>,
}

impl Source {
    async fn read(config: &SdkConfig) -> Source {
        let s3c = s3(config);
        let fleet = physical_id(config, "prod", "WebGroup").await;
        Source {
            db: physical_id(config, "prod", "Database").await,
            group: group_state(config, &fleet).await,
            fleet,
            dns: dns_answer(config, ZONE, ENTRY).await,
            reports: source_bucket_contents(&s3c, "prod-reports-123456789012").await,
            uploads: source_bucket_contents(&s3c, "prod-uploads-123456789012").await,
        }
    }

    async fn assert_as_it_was(&self, standin: &StandIn, config: &SdkConfig, context: &str) {
        assert_eq!(
            db_status(config, &self.db).await,
            Some(("available".to_string(), None)),
            "{context}: the source database at its identifier, no rename pending"
        );
        assert!(
            !restored(standin).await.contains_key(&self.db),
            "{context}: {} is the original database, not a restored one",
            self.db
        );
        let rds = aws_sdk_rds::Client::new(config);
        let dbs = rds.describe_db_instances().send().await.unwrap();
        let moved: Vec<_> = dbs
            .db_instances()
            .iter()
            .filter_map(|d| d.db_instance_identifier())
            .filter(|id| id.contains("-old-"))
            .collect();
        assert!(moved.is_empty(), "{context}: {moved:?}");
        assert_eq!(
            stack(config, "prod").await.enable_termination_protection(),
            Some(false),
            "{context}: the swap's termination protection is lifted"
        );
        assert_eq!(
            group_state(config, &self.fleet).await,
            self.group,
            "{context}"
        );
        assert_eq!(dns_answer(config, ZONE, ENTRY).await, self.dns, "{context}");
        let s3c = s3(config);
        assert_eq!(
            source_bucket_contents(&s3c, "prod-reports-123456789012").await,
            self.reports,
            "{context}"
        );
        assert_eq!(
            source_bucket_contents(&s3c, "prod-uploads-123456789012").await,
            self.uploads,
            "{context}"
        );
    }
}

/// Ctrl-C while the swap's first rename is pending: the call in flight finishes, the swap goes
/// back once the rename has settled, and the source is as it was.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_while_a_rename_is_pending_swaps_back() {
    let standin = StandIn::start();
    standin.seed("prod", "stacks/webapp.yaml", &[]);
    let config = standin.sdk().await;
    let source = Source::read(&config).await;
    let state = tempfile::tempdir().unwrap();
    let config_file = post_swap_config(state.path(), "prod");
    let config_file = config_file.to_str().unwrap();
    let child = spawn_until(
        &standin,
        state.path(),
        &[
            "--config",
            config_file,
            "migrate",
            "prod",
            "--template",
            V2,
            "--yes",
        ],
        ("swap", "start", "renaming database"),
    );
    // The rename call is made at once; the database then answers `renaming` for seconds.
    std::thread::sleep(Duration::from_millis(300));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let journal = std::fs::read_dir(state.path().join("runs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .unwrap();
    assert!(
        journal.contains("finishing the call in flight"),
        "{journal}"
    );
    assert_eq!(state_of(state.path())["phase"], "aborted");
    source
        .assert_as_it_was(&standin, &config, "Ctrl-C during a pending rename")
        .await;
}

/// `kill -9` while the swap's first rename is pending, then `envclone abort RUN --yes`: abort
/// waits for the rename to settle before it chooses, and the source is as it was.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_while_a_rename_is_pending_then_abort() {
    let standin = StandIn::start();
    standin.seed("prod", "stacks/webapp.yaml", &[]);
    let config = standin.sdk().await;
    let source = Source::read(&config).await;
    let state = tempfile::tempdir().unwrap();
    let config_file = post_swap_config(state.path(), "prod");
    let config_file = config_file.to_str().unwrap();
    let mut child = spawn_until(
        &standin,
        state.path(),
        &[
            "--config",
            config_file,
            "migrate",
            "prod",
            "--template",
            V2,
            "--yes",
        ],
        ("swap", "start", "renaming database"),
    );
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    child.wait().unwrap();
    // The rename is pending: right after the call RDS still says `available`, the new name
    // only in PendingModifiedValues (the stand-in's ENVCLONE_STANDIN_RENAME_START_DELAY, 1.5 s;
    // read as settled, abort would call the swap back done and RDS would then rename the
    // source away), later `renaming` (on a slow machine this describe may come after 1.5 s).
    let (status, pending) = db_status(&config, &source.db).await.expect("the source");
    assert!(
        ["available", "renaming"].contains(&status.as_str()),
        "{status}"
    );
    assert!(
        pending.as_deref().is_some_and(|id| id.contains("-old-")),
        "{pending:?}"
    );

    let out = standin.envclone(state.path(), &["--output", "json", "status"]);
    assert!(out.status.success(), "{}", text(&out));
    let line: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    let run = line["run_id"].as_str().unwrap().to_string();
    let out = standin.envclone(state.path(), &["abort", &run, "--yes"]);
    assert!(out.status.success(), "{}\n{}", text(&out), standin.log());
    assert_eq!(state_of(state.path())["phase"], "aborted");
    source
        .assert_as_it_was(
            &standin,
            &config,
            "kill -9 during a pending rename, then abort",
        )
        .await;
}

/// Issue 10, item 2 on the stand-in: while a migration is swapped but not finalized, clone,
/// migrate and destroy of the environment are refused naming the run (from another state
/// directory: the refusal comes from AWS, not from local records); after finalize the
/// environment clones and migrates again.
#[tokio::test(flavor = "multi_thread")]
async fn migrate_finalize_clone_and_migrate_again_on_the_stand_in() {
    let standin = StandIn::start();
    standin.seed("prod", "stacks/webapp.yaml", &[]);
    let config = standin.sdk().await;
    let source_db = physical_id(&config, "prod", "Database").await;
    let state = tempfile::tempdir().unwrap();
    let config_file = post_swap_config(state.path(), "prod");
    let config_file = config_file.to_str().unwrap();
    let out = standin.envclone(
        state.path(),
        &[
            "--config",
            config_file,
            "migrate",
            "prod",
            "--template",
            V2,
            "--yes",
        ],
    );
    assert!(out.status.success(), "{}\n{}", text(&out), standin.log());
    let migration = state_of(state.path());
    assert_eq!(migration["phase"], "swapped");
    let run = migration["run_id"].as_str().unwrap().to_string();
    let new_stack = migration["target_stack"].as_str().unwrap().to_string();

    let elsewhere = tempfile::tempdir().unwrap();
    for (what, args) in [
        ("clone", vec!["clone", "prod", "qa", "--yes"]),
        (
            "migrate",
            vec!["migrate", "prod", "--template", V2, "--yes"],
        ),
        ("destroy", vec!["destroy", new_stack.as_str(), "--yes"]),
        ("destroy", vec!["destroy", "prod", "--yes"]),
    ] {
        let out = standin.envclone(elsewhere.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", text(&out));
        assert!(
            text(&out).contains(&run) && text(&out).contains("not finalized"),
            "{what} {args:?}: {}",
            text(&out)
        );
    }

    let out = standin.envclone(state.path(), &["finalize", &run, "--yes"]);
    assert!(out.status.success(), "{}\n{}", text(&out), standin.log());

    let out = standin.envclone(elsewhere.path(), &["clone", "prod", "qa", "--yes"]);
    assert!(
        out.status.success(),
        "clone after finalize: {}\n{}",
        text(&out),
        standin.log()
    );
    let qa_db = physical_id(&config, "qa", "Database").await;
    let snapshot = restored(&standin).await[&qa_db].clone();
    assert!(
        snapshot.ends_with(&format!("-{source_db}")),
        "the clone is restored from a snapshot of the live {source_db}: {snapshot}"
    );

    let again = tempfile::tempdir().unwrap();
    let out = standin.envclone(
        again.path(),
        &[
            "--config",
            config_file,
            "migrate",
            "prod",
            "--template",
            V2,
            "--yes",
            "--finalize",
        ],
    );
    assert!(
        out.status.success(),
        "second migrate: {}\n{}",
        text(&out),
        standin.log()
    );
    let second = state_of(again.path());
    assert_eq!(second["phase"], "finalized");
    assert_eq!(second["source_stack"], new_stack.as_str());
    assert_eq!(
        db_status(&config, &source_db).await,
        Some(("available".to_string(), None))
    );
    let cf = aws_sdk_cloudformation::Client::new(&config);
    assert!(
        cf.describe_stacks()
            .stack_name(&new_stack)
            .send()
            .await
            .is_err(),
        "the first migration's stack is the old one now, and gone"
    );
}
