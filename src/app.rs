//! The composition root: turns a parsed command line into a typed request, connects the AWS
//! adapters, runs the workflow, prints what happened, and maps the outcome to an exit code.

use std::future::Future;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use thiserror::Error;

use crate::cli::{
    Cli, CloneCommand, Command, InputError, MigrateCommand, Output, PlanCommand, StandbyState,
};
use crate::events::{Emitter, Event, EventSink, Fanout, Phase};
use crate::journal::S3RunStore;
use crate::journal::{default_state_dir, FileJournal};
use crate::journal::{FileRunStore, RunStore};
use crate::lock::{FileLocks, HeldLock, LockOwner, LockStore, S3Locks, StateLocation};
use crate::model::RunId;
use crate::ports::Cloud;
use crate::s3sync::SyncOptions;
use crate::workflow::clone::{CheckResult, CloneEngine, CloneFailure, CloneReport, Settings};
use crate::workflow::experiments::{DestroyError, Environment};
use crate::workflow::migrate::{self, MigratePhase, MigrationState};
use crate::workflow::ops::VerifyError;
use crate::workflow::recovery::{self, ClonePhase};
use crate::workflow::resource::{self, ResourceRef};
use crate::workflow::{PreflightError, StepError};

/// Exit codes (README): 0 success, 1 failure after changes were rolled back or left safe,
/// 2 bad input or refused before any change.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;
/// A migration stopped before the swap because its deadline (or window) was reached; the
/// source is back in service.
pub const EXIT_DEADLINE: u8 = 3;

#[derive(Debug, Error)]
pub enum AppError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Connect(#[from] crate::aws::ConnectError),
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Step(Box<StepError>),
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    S3(#[from] crate::s3cmd::S3CmdError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl AppError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Step(s) if matches!(**s, StepError::Deadline { .. }) => EXIT_DEADLINE,
            AppError::Input(_)
            | AppError::Connect(_)
            | AppError::Preflight(_)
            | AppError::Refused(_)
            | AppError::Config(_) => EXIT_BAD_INPUT,
            AppError::Step(_) | AppError::Failed(_) => EXIT_FAILED,
            AppError::S3(e) => e.exit_code(),
        }
    }
}

impl From<StepError> for AppError {
    fn from(e: StepError) -> Self {
        AppError::Step(Box::new(e))
    }
}

impl From<VerifyError> for AppError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Preflight(p) => AppError::Preflight(p),
            VerifyError::NoSource { .. } => AppError::Refused(e.to_string()),
            VerifyError::Step(s) => s.into(),
        }
    }
}

/// Prints events as they happen: plain lines on stderr, or JSON lines on stdout.
struct Console(Output);

impl EventSink for Console {
    fn emit(&self, e: &Event) {
        match self.0 {
            Output::Json => {
                let line = serde_json::json!({"type": "event", "event": e});
                println!("{line}");
            }
            Output::Text => {
                let mark = match e.phase {
                    Phase::Start => "…",
                    Phase::Done => "✓",
                    Phase::Failed => "✗",
                    Phase::Info => "·",
                    Phase::Warning => "!",
                };
                let time = e.time.get(11..19).unwrap_or(&e.time);
                eprintln!("{time} {mark} {:<14} {}", e.step, e.message);
            }
        }
    }
}

/// Runs the command; `shutdown` resolves on Ctrl-C.
pub async fn run(cli: Cli, shutdown: impl Future<Output = ()>) -> ExitCode {
    let output = cli.output;
    match dispatch(cli, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({"type": "error", "exit_code": e.exit_code(), "message": e.to_string()})
                ),
                Output::Text => eprintln!("envclone: error: {e}"),
            }
            if e.exit_code() == EXIT_BAD_INPUT && output == Output::Text {
                eprintln!("envclone: nothing was changed");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

async fn dispatch(cli: Cli, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
    let Cli {
        region,
        profile,
        output,
        state_dir,
        state_url,
        config,
        command,
    } = cli;
    let config = || -> Result<std::sync::Arc<crate::config::Config>, AppError> {
        Ok(std::sync::Arc::new(crate::config::Config::load(
            config.as_deref(),
        )?))
    };
    let state_dir = state_dir.unwrap_or_else(default_state_dir);
    let state = state_url
        .as_deref()
        .map(StateLocation::parse_s3)
        .transpose()
        .map_err(AppError::Refused)?;
    match command {
        Command::Clone(args) => {
            let mut command = args.into_command()?;
            command.request.config = config()?;
            let cloud = crate::aws::connect(region, profile).await?;
            clone(cloud, command, output, &state_dir, &state, shutdown).await
        }
        Command::Plan(PlanCommand::Clone(args)) => {
            let mut command = args.into_command()?;
            command.dry_run = true;
            command.request.config = config()?;
            let cloud = crate::aws::connect(region, profile).await?;
            clone(cloud, command, output, &state_dir, &state, shutdown).await
        }
        Command::Migrate(args) => {
            let mut command = args.into_command()?;
            command.request.config = config()?;
            let cloud = crate::aws::connect(region, profile).await?;
            migrate_command(cloud, command, output, &state_dir, &state, shutdown).await
        }
        Command::Plan(PlanCommand::Migrate(args)) => {
            let mut command = args.into_command()?;
            command.dry_run = true;
            command.request.config = config()?;
            let cloud = crate::aws::connect(region, profile).await?;
            migrate_command(cloud, command, output, &state_dir, &state, shutdown).await
        }
        Command::Finalize { run, yes } => {
            let cloud = crate::aws::connect(region, profile).await?;
            let shared = shared_state(&state, &state_dir, &cloud);
            let mut migration = load_migration(&*shared.runs, &state_dir, &run)?;
            warn_local_lock(&state, &state_dir, "finalize", &migration.env);
            let engine = engine_for(cloud, None, None);
            // What finalize would refuse (a protected environment, an operator's termination
            // protection, uncovered state without DeletionPolicy Retain) is refused before the
            // question, as bad input: nothing is changed.
            match engine.finalize_preflight(&migration).await {
                Ok(_) => {}
                Err(StepError::Refused { message, .. }) => return Err(AppError::Refused(message)),
                Err(e) => return Err(e.into()),
            }
            confirm(
                yes,
                &format!(
                    "Finalizing run {run} deletes the old environment (stack {}); its database \
                     gets a final snapshot that is kept. This cannot be undone.",
                    migration.source_stack
                ),
                &migration.env,
            )?;
            let lock = lock_env(&shared, &migration.source_stack, &run, "finalize", false).await?;
            let emitter = run_emitter(&run, output, &state_dir)?;
            let result = crate::retry::stoppable(
                lock.stop_flag(),
                engine.finalize(&mut migration, &*shared.runs, &emitter),
            )
            .await;
            unlock(lock).await;
            print_migration(output, &migration);
            result.map_err(AppError::from)
        }
        Command::Resume { run, yes } => {
            let cloud = crate::aws::connect(region, profile).await?;
            let shared = shared_state(&state, &state_dir, &cloud);
            let Some(record) = recovery::load(&*shared.runs, &run).map_err(AppError::Refused)?
            else {
                let migration = load_migration(&*shared.runs, &state_dir, &run)?;
                confirm(
                    yes,
                    &format!(
                        "Resuming run {run} continues the migration of {} to stack {} (phase {:?}).",
                        migration.env, migration.target_stack, migration.phase
                    ),
                    &migration.env,
                )?;
                let lock =
                    lock_env(&shared, &migration.source_stack, &run, "resume", false).await?;
                let engine = engine_for(cloud, None, None);
                let emitter = run_emitter(&run, output, &state_dir)?;
                let shutdown = until_stopped(shutdown, Some(&lock));
                let result = engine
                    .resume_migration(migration, &*shared.runs, &emitter, shutdown)
                    .await;
                unlock(lock).await;
                return match result {
                    Ok(state) => {
                        print_migration(output, &state);
                        Ok(())
                    }
                    Err(failure) => {
                        print_migration(output, &failure.state);
                        Err(AppError::Failed(format!(
                            "resuming run {run} failed: {}",
                            failure.error
                        )))
                    }
                };
            };
            if record.phase == ClonePhase::Succeeded || record.phase == ClonePhase::Aborted {
                return Err(AppError::Refused(format!(
                    "run {run} is {:?}; there is nothing to resume",
                    record.phase
                )));
            }
            confirm(
                yes,
                &format!(
                    "Resuming run {run} puts {} into Standby again while the clone {} is finished.",
                    record.env, record.target_stack
                ),
                &record.env,
            )?;
            let lock = lock_env(&shared, &record.plan.source_stack, &run, "resume", false).await?;
            let engine = engine_for(cloud, None, None);
            let emitter = run_emitter(&run, output, &state_dir)?;
            let shutdown = until_stopped(shutdown, Some(&lock));
            let outcome = engine
                .resume_clone(record, &*shared.runs, &emitter, shutdown)
                .await;
            unlock(lock).await;
            clone_outcome(output, &RunId::from_existing(&run), outcome)
        }
        Command::Abort { run, yes, keep } => {
            let cloud = crate::aws::connect(region, profile).await?;
            let shared = shared_state(&state, &state_dir, &cloud);
            if let Some(mut record) =
                recovery::load(&*shared.runs, &run).map_err(AppError::Refused)?
            {
                confirm(
                    yes,
                    &format!(
                        "Aborting run {run} returns {} to service{}.",
                        record.env,
                        if keep {
                            String::new()
                        } else {
                            format!(" and deletes what the run created (stack {}, its buckets and snapshots)", record.target_stack)
                        }
                    ),
                    &record.env,
                )?;
                let lock =
                    lock_env(&shared, &record.plan.source_stack, &run, "abort", false).await?;
                let engine = engine_for(cloud, None, None);
                let emitter = run_emitter(&run, output, &state_dir)?;
                let result = crate::retry::stoppable(
                    lock.stop_flag(),
                    engine.abort_clone(&mut record, &*shared.runs, &emitter, keep),
                )
                .await;
                unlock(lock).await;
                let removed = result?;
                match output {
                    Output::Json => println!(
                        "{}",
                        serde_json::json!({"type": "aborted", "run_id": run, "removed": removed})
                    ),
                    Output::Text => println!(
                        "Run {run} aborted: {} is in service; removed: {}",
                        record.env,
                        if removed.is_empty() {
                            "nothing".to_string()
                        } else {
                            resource::join(&removed, ", ")
                        }
                    ),
                }
                return Ok(());
            }
            if migrate::load(&*shared.runs, &run)
                .map_err(AppError::Refused)?
                .is_none()
            {
                return abort_unrecorded(output, &shared, &state_dir, &run).await;
            }
            let mut migration = load_migration(&*shared.runs, &state_dir, &run)?;
            let never_swapped = migration.never_swapped
                && !matches!(
                    migration.phase,
                    MigratePhase::Swapping | MigratePhase::Swapped
                );
            confirm(
                yes,
                &if never_swapped {
                    format!(
                        "Aborting run {run} returns {} to service{}.",
                        migration.env,
                        if keep {
                            String::new()
                        } else {
                            format!(
                                " and deletes what the migration created (stack {}, its buckets \
                                 and snapshots: it never swapped)",
                                migration.target_stack
                            )
                        }
                    )
                } else {
                    format!(
                        "Aborting run {run} swaps {} back to stack {} and returns it to service.",
                        migration.env, migration.source_stack
                    )
                },
                &migration.env,
            )?;
            let lock = lock_env(&shared, &migration.source_stack, &run, "abort", false).await?;
            let engine = engine_for(cloud, None, None);
            let emitter = run_emitter(&run, output, &state_dir)?;
            let result = crate::retry::stoppable(
                lock.stop_flag(),
                engine.abort_migration_with(&mut migration, &*shared.runs, &emitter, keep),
            )
            .await;
            unlock(lock).await;
            print_migration(output, &migration);
            result.map_err(AppError::from)
        }
        Command::Status { run } => {
            let shared = match &state {
                Some(_) => {
                    let cloud = crate::aws::connect(region, profile).await?;
                    Some(shared_state(&state, &state_dir, &cloud))
                }
                None => None,
            };
            status(output, shared.as_ref(), &state_dir, run.as_deref()).await
        }
        Command::Completions { shell } => {
            print!("{}", crate::cli::completions(shell));
            Ok(())
        }
        Command::IamPolicy { scope } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::iam::policy(scope))
                    .expect("policy serializes")
            );
            eprintln!(
                "note: CreateStack and DeleteStack also need permission for the resources of your \
                 template (EC2, ELB, RDS, S3 …), or pass a CloudFormation service role"
            );
            Ok(())
        }
        Command::List => {
            let cloud = crate::aws::connect(region, profile).await?;
            let engine = engine_for(cloud, None, None);
            let envs = engine
                .list_environments()
                .await
                .map_err(|e| AppError::Failed(format!("listing the environments failed: {e}")))?;
            print_environments(output, &envs);
            Ok(())
        }
        Command::Destroy { env, yes } => {
            let cloud = crate::aws::connect(region, profile).await?;
            let shared = shared_state(&state, &state_dir, &cloud);
            let engine = engine_for(cloud, None, None);
            let target = engine.destroyable(&env).await.map_err(destroy_error)?;
            confirm(
                yes,
                &format!(
                    "This deletes environment {} (stack {}, the buckets its clone created, its snapshots).",
                    target.name, target.stack
                ),
                &target.name,
            )?;
            let run_id = new_run_id();
            let lock = lock_env(&shared, &target.stack, run_id.as_str(), "destroy", false).await?;
            let result = destroy_locked(&engine, (&env, &target.stack), &lock, output).await;
            unlock(lock).await;
            let (target, removed, left) = result?;
            report_destroyed(output, &target.name, &removed, &left)
        }
        Command::Gc { dry_run, yes } => {
            let cloud = crate::aws::connect(region, profile).await?;
            let shared = shared_state(&state, &state_dir, &cloud);
            let mut engine = engine_for(cloud, None, None);
            engine.settings.state_bucket = state_bucket(&state);
            let now = chrono::Utc::now();
            let expired: Vec<_> = engine
                .list_environments()
                .await
                .map_err(|e| AppError::Failed(format!("listing the environments failed: {e}")))?
                .into_iter()
                .filter(|e| e.is_experiment() && !e.protected && e.expired(now))
                .collect();
            // Templates staged by runs that died before removing them.
            let leftovers = engine
                .staging_leftovers(now)
                .await
                .map_err(|e| AppError::Failed(format!("listing staged templates failed: {e}")))?;
            print_environments(output, &expired);
            for l in &leftovers {
                match output {
                    Output::Json => println!(
                        "{}",
                        serde_json::json!({"type": "staging_leftover", "leftover": l})
                    ),
                    Output::Text => println!("leftover {l}"),
                }
            }
            if expired.is_empty() && leftovers.is_empty() {
                if output == Output::Text {
                    println!("No expired environment.");
                }
                return Ok(());
            }
            if dry_run {
                if output == Output::Text {
                    println!("Dry run: nothing was changed.");
                }
                return Ok(());
            }
            let mut names: Vec<String> = expired.iter().map(|e| e.name.clone()).collect();
            names.extend(leftovers.iter().map(ToString::to_string));
            confirm(
                yes,
                &format!(
                    "This destroys the expired environments and leftovers {}.",
                    names.join(", ")
                ),
                "gc",
            )?;
            let mut failures = Vec::new();
            for l in &leftovers {
                match engine.remove_staging_leftover(l).await {
                    Ok(()) => {
                        if output == Output::Text {
                            println!("Removed {l}");
                        }
                    }
                    Err(e) => failures.push(format!("{l}: {e}")),
                }
            }
            let run_id = new_run_id();
            for target in &expired {
                // Each under its environment's lock, re-checked one by one: a tag may have
                // changed since the listing.
                let result = match lock_env(&shared, &target.stack, run_id.as_str(), "gc", false)
                    .await
                {
                    Ok(lock) => {
                        let result =
                            destroy_locked(&engine, (&target.name, &target.stack), &lock, output)
                                .await;
                        unlock(lock).await;
                        result.map(|(_, removed, left)| (removed, left))
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok((removed, left)) => {
                        if let Err(e) = report_destroyed(output, &target.name, &removed, &left) {
                            failures.push(e.to_string());
                        }
                    }
                    Err(e) => failures.push(format!("{}: {e}", target.name)),
                }
            }
            if failures.is_empty() {
                Ok(())
            } else {
                Err(AppError::Failed(failures.join("; ")))
            }
        }
        Command::Verify { env, against } => {
            let cloud = crate::aws::connect(region, profile).await?;
            let engine = CloneEngine {
                cloud,
                settings: Settings::default(),
            };
            let (checks, _) = engine.verify_env(&env, against.as_deref()).await?;
            print_checks(output, &format!("verification of {env}"), &checks);
            if checks.iter().all(|c| c.ok) {
                Ok(())
            } else {
                Err(AppError::Failed(format!("{env} did not pass verification")))
            }
        }
        Command::S3(command) => {
            Ok(crate::s3cmd::run(command, region, profile, output, shutdown).await?)
        }
        Command::Standby {
            env,
            state: wanted,
            yes,
        } => {
            let cloud = crate::aws::connect(region, profile).await?;
            let engine = CloneEngine {
                cloud,
                settings: Settings::default(),
            };
            let source = engine.resolve(&env).await?;
            let groups = crate::workflow::ops::scaling_groups(&source);
            if wanted == StandbyState::On {
                confirm(
                    yes,
                    &format!(
                        "This takes the instances of {} out of service (Standby).",
                        groups.join(", ")
                    ),
                    &env,
                )?;
            }
            let run_id = new_run_id();
            let emitter = Emitter {
                run_id: run_id.to_string(),
                sink: Arc::new(Console(output)),
            };
            let shared = shared_state(&state, &state_dir, &engine.cloud);
            let command = match wanted {
                StandbyState::On => "standby on",
                StandbyState::Off => "standby off",
            };
            let lock =
                lock_env(&shared, &source.stack.name, run_id.as_str(), command, false).await?;
            let result = match wanted {
                StandbyState::On => {
                    let entered = crate::retry::stoppable(
                        lock.stop_flag(),
                        engine.standby_on(&source, &emitter),
                    )
                    .await;
                    if entered.is_err() {
                        // Standby part-way is worse than either state: undo it (returning to
                        // service goes on even once the lock is lost, as a clone's does).
                        let _ = engine.standby_off(&source, &emitter).await;
                    }
                    entered.map(drop)
                }
                StandbyState::Off => engine.standby_off(&source, &emitter).await,
            };
            unlock(lock).await;
            Ok(result?)
        }
    }
}

/// The `--state` bucket and prefix, if the state is in S3.
fn state_bucket(state: &Option<StateLocation>) -> Option<(String, String)> {
    match state {
        Some(StateLocation::S3 { bucket, prefix }) => Some((bucket.clone(), prefix.clone())),
        _ => None,
    }
}

fn engine_for(cloud: Cloud, concurrency: Option<usize>, threshold: Option<u64>) -> CloneEngine {
    let defaults = SyncOptions::default();
    let settings = Settings::default();
    CloneEngine {
        cloud,
        settings: Settings {
            sync: SyncOptions {
                concurrency: concurrency.unwrap_or(defaults.concurrency),
                multipart_threshold: threshold.unwrap_or(defaults.multipart_threshold),
                ..defaults
            },
            post_swap_timeout: post_swap_timeout(settings.post_swap_timeout),
            ..settings
        },
    }
}

/// `ENVCLONE_POST_SWAP_TIMEOUT` (e.g. `90s`, `10m`): how long each check of the live
/// environment after migrate's swap may take before the swap is undone.
fn post_swap_timeout(default: std::time::Duration) -> std::time::Duration {
    let Ok(text) = std::env::var("ENVCLONE_POST_SWAP_TIMEOUT") else {
        return default;
    };
    match humantime::parse_duration(text.trim()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "warning: ENVCLONE_POST_SWAP_TIMEOUT={text:?} is not a duration ({e}); using {}",
                humantime::format_duration(default)
            );
            default
        }
    }
}

/// The console plus the run's journal.
fn run_emitter(
    run_id: &str,
    output: Output,
    state_dir: &std::path::Path,
) -> Result<Emitter, AppError> {
    let journal = FileJournal::create(state_dir, run_id).map_err(|e| {
        AppError::Refused(format!(
            "cannot write the run journal under {}: {e}; pass a writable --state-dir",
            state_dir.display()
        ))
    })?;
    let path = journal.path().display().to_string();
    let emitter = Emitter {
        run_id: run_id.to_string(),
        sink: Arc::new(Fanout(vec![Arc::new(Console(output)), Arc::new(journal)])),
    };
    emitter.info("run", None, format!("run {run_id}: journal {path}"));
    Ok(emitter)
}

/// Where run records and locks live: the local state directory, or S3 with `--state`.
struct Shared {
    runs: Arc<dyn RunStore>,
    locks: Arc<dyn LockStore>,
    s3: Option<Arc<S3RunStore>>,
}

fn shared_state(
    state: &Option<StateLocation>,
    state_dir: &std::path::Path,
    cloud: &Cloud,
) -> Shared {
    match state {
        Some(StateLocation::S3 { bucket, prefix }) => {
            let runs = Arc::new(S3RunStore {
                objects: cloud.objects.clone(),
                bucket: bucket.clone(),
                prefix: prefix.clone(),
                local: state_dir.to_path_buf(),
                runtime: tokio::runtime::Handle::current(),
            });
            Shared {
                runs: runs.clone(),
                locks: Arc::new(S3Locks {
                    objects: cloud.objects.clone(),
                    bucket: bucket.clone(),
                    prefix: prefix.clone(),
                }),
                s3: Some(runs),
            }
        }
        _ => Shared {
            runs: Arc::new(FileRunStore::new(state_dir)),
            locks: Arc::new(FileLocks {
                dir: state_dir.to_path_buf(),
            }),
            s3: None,
        },
    }
}

/// Takes the lock of `env` (the resolved stack name) and starts renewing it. A dead holder's
/// lock taken over is said on stderr, naming the dead run.
async fn lock_env(
    shared: &Shared,
    env: &str,
    run_id: &str,
    command: &str,
    break_lock: bool,
) -> Result<HeldLock, AppError> {
    let runs = shared.runs.clone();
    let part_way = move |run: &str| left_part_way(&*runs, run);
    let lock = crate::lock::acquire_checking(
        shared.locks.clone(),
        env,
        LockOwner::new(run_id, command),
        break_lock,
        &part_way,
    )
    .await
    .map_err(|e| AppError::Refused(e.to_string()))?;
    if let Some(took) = lock.took_over() {
        eprintln!(
            "envclone: warning: environment {env}: {took}; `envclone status {}` shows what it \
             left, `envclone abort {}` removes it",
            took.from.run_id, took.from.run_id
        );
    }
    Ok(crate::lock::hold(lock, |w| {
        eprintln!("envclone: warning: {w}")
    }))
}

/// What run `run` left half done, by its record: a clone still `running` (the source may be in
/// Standby, the clone half made), a migration neither finalized nor aborted. None without a
/// record (it died before its first change) or when it finished.
fn left_part_way(runs: &dyn RunStore, run: &str) -> Option<String> {
    let record = match runs.load(run) {
        Ok(Some(record)) => record,
        Ok(None) => return None,
        Err(e) => return Some(format!("its record could not be read ({e})")),
    };
    let phase = record["phase"].as_str().unwrap_or_default();
    match record["command"].as_str() {
        Some("migrate") if !matches!(phase, "finalized" | "aborted") => Some(format!(
            "its migration of {} stopped at phase {phase}",
            record["env"].as_str().unwrap_or_default()
        )),
        Some("migrate") => None,
        _ if phase == "running" => Some(format!(
            "its clone of {} stopped while running (the source may be in Standby, the clone \
             half made)",
            record["env"].as_str().unwrap_or_default()
        )),
        _ => None,
    }
}

/// Releases a lock; a failure to remove it is said, not fatal (it goes stale).
async fn unlock(lock: HeldLock) {
    if let Err(e) = lock.release().await {
        eprintln!("envclone: warning: {e}");
    }
}

/// What stops a run before its next change: Ctrl-C, or its lock found lost (another run holds
/// the environment now). Either way the call in flight finishes and the source returns to
/// service, as for Ctrl-C.
fn until_stopped(
    shutdown: impl Future<Output = ()>,
    lock: Option<&HeldLock>,
) -> impl Future<Output = ()> {
    let lost = lock.map(HeldLock::lost);
    async move {
        match lost {
            None => shutdown.await,
            // (The loss itself is said by the lock's warning.)
            Some(lost) => tokio::select! {
                () = shutdown => {}
                _ = lost => {}
            },
        }
    }
}

/// Without `--state` the lock is a file of this machine's state directory: another machine
/// (or another state directory) does not see it.
fn warn_local_lock(
    state: &Option<StateLocation>,
    state_dir: &std::path::Path,
    command: &str,
    env: &str,
) {
    if state.is_none() {
        eprintln!(
            "envclone: warning: {command} of {env} is locked in {} only: it excludes runs on \
             this machine with this state directory, not on another machine; use --state \
             s3://BUCKET/PREFIX for a lock across machines",
            state_dir.join("locks").display()
        );
    }
}

/// `destroy` / `gc` of one environment under its lock: checked again once locked (a run may
/// have changed it between the listing and the lock), then destroyed; no new call starts once
/// the lock is lost.
async fn destroy_locked(
    engine: &CloneEngine,
    (env, locked): (&str, &str),
    lock: &HeldLock,
    output: Output,
) -> Result<(Environment, Vec<ResourceRef>, Vec<ResourceRef>), AppError> {
    crate::retry::stoppable(lock.stop_flag(), async {
        let target = engine.destroyable(env).await.map_err(destroy_error)?;
        if target.stack != locked {
            return Err(AppError::Refused(format!(
                "environment {env} now resolves to stack {}, not to stack {locked} that was \
                 listed and locked; nothing was deleted — run the command again",
                target.stack
            )));
        }
        let emitter = Emitter {
            run_id: target.run_id.clone(),
            sink: Arc::new(Console(output)),
        };
        let (removed, left) = engine
            .destroy(&target, &emitter)
            .await
            .map_err(destroy_error)?;
        Ok((target, removed, left))
    })
    .await
}

/// `abort RUN` of a run that has a lock and no record: it stopped (was killed) between taking
/// the lock and writing its record, before its first change, so there is nothing to undo but
/// the lock. Taken over like any lock of the same run: only once its holder is gone or stale.
async fn abort_unrecorded(
    output: Output,
    shared: &Shared,
    state_dir: &std::path::Path,
    run: &str,
) -> Result<(), AppError> {
    let held = crate::lock::holdings(&*shared.locks)
        .await
        .map_err(|e| AppError::Failed(format!("cannot read the locks: {e}")))?;
    let Some(holding) = held.into_iter().find(|h| h.owner.run_id == run) else {
        return Err(unknown_run(state_dir, run));
    };
    let lock = lock_env(shared, &holding.env, run, "abort", false).await?;
    unlock(lock).await;
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({"type": "aborted", "run_id": run, "removed": [format!("lock of {}", holding.env)]})
        ),
        Output::Text => println!(
            "Run {run} ({} of {}) left no record: it stopped before its first change, so there \
             is nothing to undo; its lock on {} is released.",
            holding.owner.command, holding.env, holding.env
        ),
    }
    Ok(())
}

fn destroy_error(e: DestroyError) -> AppError {
    match e {
        DestroyError::Step(s) => s.into(),
        DestroyError::Aws(..) => AppError::Failed(e.to_string()),
        _ => AppError::Refused(e.to_string()),
    }
}

fn report_destroyed(
    output: Output,
    name: &str,
    removed: &[ResourceRef],
    left: &[ResourceRef],
) -> Result<(), AppError> {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({"type": "destroyed", "environment": name, "removed": removed, "left": left})
        ),
        Output::Text => {
            println!(
                "Destroyed {name}: removed {}",
                if removed.is_empty() {
                    "nothing".to_string()
                } else {
                    resource::join(removed, ", ")
                }
            );
            for l in left {
                println!("  could not remove: {l}");
            }
        }
    }
    if left.is_empty() {
        Ok(())
    } else {
        Err(AppError::Failed(format!(
            "{name}: could not remove {}",
            resource::join(left, "; ")
        )))
    }
}

fn print_environments(output: Output, envs: &[Environment]) {
    let now = chrono::Utc::now();
    for e in envs {
        match output {
            Output::Json => println!("{}", serde_json::json!(e)),
            Output::Text => {
                let age = e
                    .created
                    .map(|c| {
                        humantime::format_duration(std::time::Duration::from_secs(
                            (now - c).num_seconds().max(0) as u64,
                        ))
                        .to_string()
                    })
                    .unwrap_or_else(|| "?".into());
                let expiry = match e.expires_at {
                    Some(at) if at <= now => "expired".to_string(),
                    Some(at) => format!(
                        "expires {}",
                        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                    None => "no expiry".to_string(),
                };
                println!(
                    "{:<24} from {:<16} owner {:<12} age {:<12} {:<32} {}{}",
                    e.name,
                    e.source,
                    e.owner.as_deref().unwrap_or("-"),
                    age,
                    expiry,
                    e.status,
                    if e.protected { " (protected)" } else { "" }
                );
            }
        }
    }
}

fn unknown_run(state_dir: &std::path::Path, run: &str) -> AppError {
    AppError::Refused(format!(
        "unknown run {run}: no record under {} (see `envclone status`, or pass the --state-dir \
         the run used)",
        state_dir.display()
    ))
}

fn load_migration(
    store: &dyn RunStore,
    state_dir: &std::path::Path,
    run: &str,
) -> Result<MigrationState, AppError> {
    match migrate::load(store, run).map_err(AppError::Refused)? {
        Some(state) if state.command == "migrate" => Ok(state),
        Some(_) => Err(AppError::Refused(format!(
            "run {run} is a clone, not a migration; use `envclone abort {run}` or `envclone resume {run}`"
        ))),
        None => Err(unknown_run(state_dir, run)),
    }
}

async fn migrate_command(
    cloud: Cloud,
    command: MigrateCommand,
    output: Output,
    state_dir: &std::path::Path,
    state: &Option<StateLocation>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    if !command.dry_run {
        warn_local_lock(state, state_dir, "migrate", &command.request.env);
    }
    let mut run = Prepared::new(
        cloud,
        state,
        state_dir,
        (command.concurrency, command.multipart_threshold),
        (
            &command.request.env,
            "migrate",
            command.break_lock,
            command.dry_run,
        ),
    )
    .await?;
    run.engine.settings.sync.skip_archived = command.skip_archived;
    let (engine, shared, run_id) = (&run.engine, &run.shared, run.run_id.clone());
    let stop = run.stop_flag();
    let shutdown = run.until_stopped(shutdown);
    let result = migrate_locked(
        engine,
        shared,
        command,
        output,
        state_dir,
        run_id,
        (shutdown, stop),
    )
    .await;
    run.release().await;
    result
}

/// What a clone or migrate run sets up before its preflight: the state backend, the engine,
/// the run id, and — unless it is a dry run — the environment's lock. The lock comes first: a
/// second run must be told the environment is busy, not trip over the first run's changes in
/// its preflight.
struct Prepared {
    shared: Shared,
    engine: CloneEngine,
    run_id: RunId,
    lock: Option<HeldLock>,
}

impl Prepared {
    async fn new(
        cloud: Cloud,
        state: &Option<StateLocation>,
        state_dir: &std::path::Path,
        (concurrency, threshold): (usize, u64),
        (env, command, break_lock, dry_run): (&str, &str, bool, bool),
    ) -> Result<Prepared, AppError> {
        let shared = shared_state(state, state_dir, &cloud);
        let mut engine = engine_for(cloud, Some(concurrency), Some(threshold));
        engine.settings.state_bucket = state_bucket(state);
        let run_id = new_run_id();
        let lock = match dry_run {
            true => None,
            false => {
                // One environment, one lock, however it was named (stack name or tag): the
                // key is the resolved stack. An unknown one keeps its name (preflight will say).
                let key = match engine.resolve(env).await {
                    Ok(source) => source.stack.name,
                    Err(_) => env.to_string(),
                };
                Some(lock_env(&shared, &key, run_id.as_str(), command, break_lock).await?)
            }
        };
        Ok(Prepared {
            shared,
            engine,
            run_id,
            lock,
        })
    }

    async fn release(self) {
        if let Some(lock) = self.lock {
            unlock(lock).await;
        }
    }

    /// Ctrl-C, or the lock found lost.
    fn until_stopped(&self, shutdown: impl Future<Output = ()>) -> impl Future<Output = ()> {
        until_stopped(shutdown, self.lock.as_ref())
    }

    /// Set once the lock is lost (never without one: a dry run changes nothing).
    fn stop_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.lock
            .as_ref()
            .map(HeldLock::stop_flag)
            .unwrap_or_default()
    }
}

async fn migrate_locked(
    engine: &CloneEngine,
    shared: &Shared,
    command: MigrateCommand,
    output: Output,
    state_dir: &std::path::Path,
    run_id: RunId,
    (shutdown, stop): (impl Future<Output = ()>, Arc<std::sync::atomic::AtomicBool>),
) -> Result<(), AppError> {
    let mut plan = engine
        .preflight_migrate(&command.request, run_id.clone())
        .await?;
    plan.deadline = command.deadline;
    if let Some(deadline) = command.deadline {
        // Past runs of this environment say how long one takes; refuse what cannot fit.
        let needed = past_migration_duration(state_dir, &command.request.env)
            .unwrap_or_default()
            .max(crate::workflow::migrate::swap_allowance(
                plan.databases.len(),
            ));
        let needed = chrono::Duration::from_std(needed).unwrap_or_default();
        if chrono::Utc::now() + needed > deadline {
            return Err(AppError::Refused(format!(
                "a migration of {} needs about {} min (past runs and the swap), which does not \
                 fit before {deadline}; start it in a longer window",
                command.request.env,
                needed.num_minutes()
            )));
        }
    }
    let mut steps = plan.clone.steps();
    // The clone's last step (return to service) is replaced by the swap.
    steps.retain(|s| !s.starts_with("return the instances"));
    steps.push(format!(
        "guardrails: {} still in Standby, no scaling activity, databases available, entry record \
         still on the source",
        plan.clone.source_env
    ));
    for d in &plan.databases {
        steps.push(format!(
            "rename database {} to {}, then {} to {}",
            d.source_id, d.old_id, d.clone_id, d.source_id
        ));
    }
    if let Some(dns) = &plan.clone.contract.entry_dns {
        steps.push(format!(
            "point {} at the new stack's {} and wait until in sync",
            dns.name, dns.target_output
        ));
    }
    if !plan.clone.contract.hooks.post_swap.is_empty() {
        steps.push("run the post_swap hooks".into());
    }
    steps.push(
        "check the live environment (entry record, the template's HTTP checks, instances \
         InService and Healthy); a failure swaps back"
            .into(),
    );
    if command.finalize {
        steps.push(format!(
            "finalize: check the new buckets hold every object, keep a final snapshot of the old \
             database, delete stack {} (the live database protected), delete the renamed old \
             database",
            plan.clone.source_stack
        ));
    } else {
        steps.push(format!(
            "stop: the old stack {} stays out of service until `envclone finalize {run_id}` or \
             `envclone abort {run_id}`",
            plan.clone.source_stack
        ));
    }
    print_plan(
        output,
        &run_id,
        &format!(
            "migrate {} onto {}",
            plan.clone.source_env, plan.clone.template.origin
        ),
        &plan.clone,
        &steps,
    );
    if command.dry_run {
        if output == Output::Text {
            println!("Dry run: nothing was changed.");
        }
        return Ok(());
    }
    let what = if command.finalize {
        format!(
            "This takes {} out of service, swaps it onto the new template and then DELETES the \
             old stack {} (--finalize).",
            plan.clone.source_env, plan.clone.source_stack
        )
    } else {
        format!(
            "This takes {} out of service and swaps it onto the new template.",
            plan.clone.source_env
        )
    };
    confirm(command.yes, &what, &plan.clone.source_env)?;
    let emitter = run_emitter(run_id.as_str(), output, state_dir)?;
    let store = &*shared.runs;
    let outcome = engine.migrate(&plan, store, &emitter, shutdown).await;
    let mut state = match outcome {
        Ok(state) => state,
        Err(failure) => {
            print_migration(output, &failure.state);
            if matches!(failure.error, StepError::Deadline { .. }) {
                return Err(failure.error.into());
            }
            return Err(AppError::Failed(format!(
                "migrate {} failed: {}",
                plan.clone.source_env, failure.error
            )));
        }
    };
    if command.finalize {
        let result =
            crate::retry::stoppable(stop, engine.finalize(&mut state, store, &emitter)).await;
        print_migration(output, &state);
        return result.map_err(AppError::from);
    }
    print_migration(output, &state);
    Ok(())
}

/// The longest recorded migration of `env` (first to last journal event), from this state
/// directory.
fn past_migration_duration(state_dir: &std::path::Path, env: &str) -> Option<std::time::Duration> {
    let store = FileRunStore::new(state_dir);
    let entries = std::fs::read_dir(&store.dir).ok()?;
    let mut longest = None;
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(run) = name.strip_suffix(".state.json") else {
            continue;
        };
        let Ok(Some(state)) = store.load(run) else {
            continue;
        };
        if state["command"] != "migrate" || state["env"] != env {
            continue;
        }
        if !matches!(state["phase"].as_str(), Some("swapped" | "finalized")) {
            continue;
        }
        let journal =
            std::fs::read_to_string(store.dir.join(format!("{run}.jsonl"))).unwrap_or_default();
        let times: Vec<chrono::DateTime<chrono::Utc>> = journal
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| {
                v["time"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            })
            .map(|t| t.with_timezone(&chrono::Utc))
            .collect();
        if let (Some(first), Some(last)) = (times.first(), times.last()) {
            let d = (*last - *first).to_std().unwrap_or_default();
            longest = Some(longest.map_or(d, |l: std::time::Duration| l.max(d)));
        }
    }
    longest
}

fn print_migration(output: Output, state: &MigrationState) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({"type": "migration", "state": state})
        ),
        Output::Text => {
            println!();
            println!(
                "Migration {} of {}: {:?}",
                state.run_id, state.env, state.phase
            );
            println!("  old stack: {}", state.source_stack);
            println!("  new stack: {}", state.target_stack);
            for d in &state.databases {
                println!(
                    "  database:  {} (old database renamed {}, new created as {})",
                    d.source_id, d.old_id, d.clone_id
                );
            }
            for k in &state.kept {
                println!("  kept:      {k}");
            }
            match state.phase {
                MigratePhase::Swapped => {
                    println!("  {} now serves from {}.", state.env, state.target_stack);
                    println!(
                        "  Finalize (deletes the old environment): envclone finalize {}",
                        state.run_id
                    );
                    println!(
                        "  Roll back (swap back):                   envclone abort {}",
                        state.run_id
                    );
                }
                MigratePhase::Aborted => {
                    println!(
                        "  {} is back on {} and in service.",
                        state.env, state.source_stack
                    );
                    if !state.created.is_empty() {
                        println!(
                            "  left (tagged envclone:run={}): {}",
                            state.run_id,
                            resource::join(&state.created, ", ")
                        );
                        if state.never_swapped {
                            println!("  Remove them with: envclone abort {}", state.run_id);
                        }
                    }
                }
                MigratePhase::Finalized => {
                    println!(
                        "  The old environment is deleted; {} is {}.",
                        state.env, state.target_stack
                    );
                }
                MigratePhase::Finalizing => println!(
                    "  Finalize stopped part-way (past the point of no return); finish it with: envclone finalize {}",
                    state.run_id
                ),
                _ => println!("  Undo with: envclone abort {}", state.run_id),
            }
        }
    }
}

/// `envclone status [RUN]`: one line (or JSON object) per recorded run, then one per lock
/// held — a run killed between taking its lock and writing its record shows only there.
async fn status(
    output: Output,
    shared: Option<&Shared>,
    state_dir: &std::path::Path,
    only: Option<&str>,
) -> Result<(), AppError> {
    let local = FileRunStore::new(state_dir);
    let s3 = shared.and_then(|s| s.s3.clone());
    let store: &dyn RunStore = match &s3 {
        Some(s3) => &**s3,
        None => &local,
    };
    let listed = match &s3 {
        Some(s3) => Some(
            s3.run_ids()
                .map_err(|e| AppError::Failed(format!("cannot list the runs: {e}")))?,
        ),
        None => None,
    };
    let mut runs: Vec<String> = listed.unwrap_or_else(|| {
        std::fs::read_dir(&local.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()
                            .and_then(|n| n.strip_suffix(".state.json"))
                            .map(str::to_string)
                    })
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    });
    runs.sort();
    let local_locks = FileLocks {
        dir: state_dir.to_path_buf(),
    };
    let locks: &dyn LockStore = match shared {
        Some(s) => &*s.locks,
        None => &local_locks,
    };
    let mut held = crate::lock::holdings(locks)
        .await
        .map_err(|e| AppError::Failed(format!("cannot read the locks: {e}")))?;
    if let Some(run) = only {
        if !runs.iter().any(|r| r == run) && !held.iter().any(|h| h.owner.run_id == run) {
            return Err(AppError::Refused(format!(
                "unknown run {run}: no state and no lock under {}",
                state_dir.display()
            )));
        }
        runs.retain(|r| r == run);
        held.retain(|h| h.owner.run_id == run);
    }
    for run in runs {
        let state = store
            .load(&run)
            .map_err(|e| AppError::Failed(format!("cannot read the state of run {run}: {e}")))?
            .unwrap_or_default();
        let journal = match &s3 {
            Some(s3) => s3.journal(&run),
            None => std::fs::read_to_string(local.dir.join(format!("{run}.jsonl"))).ok(),
        };
        let steps: Vec<serde_json::Value> = journal
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let get = |k: &str| {
            state
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let phase = state
            .get("phase")
            .map(|p| {
                p.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| p.to_string())
            })
            .unwrap_or_default();
        match output {
            Output::Json => println!(
                "{}",
                serde_json::json!({"run_id": run, "command": get("command"), "source": get("env"),
                    "target": get("target_stack"), "state": phase, "started_at": get("started_at"),
                    "steps": steps})
            ),
            Output::Text => println!(
                "{run}  {:<8} {} → {}  {phase}  (started {}, {} events)",
                get("command"),
                get("env"),
                get("target_stack"),
                get("started_at"),
                steps.len()
            ),
        }
    }
    for h in held {
        let recorded = store
            .load(&h.owner.run_id)
            .map_err(|e| {
                AppError::Failed(format!(
                    "cannot read the state of run {}: {e}",
                    h.owner.run_id
                ))
            })?
            .is_some();
        let state = match (&h.process, h.dead()) {
            (crate::lock::Liveness::Gone(_), _) => "dead",
            (_, true) => "stale",
            (crate::lock::Liveness::Alive, _) => "running",
            (crate::lock::Liveness::Unknown(_), _) => "unknown",
        };
        match output {
            Output::Json => println!(
                "{}",
                serde_json::json!({"type": "lock", "env": h.env, "run_id": h.owner.run_id,
                    "command": h.owner.command, "host": h.owner.host, "pid": h.owner.pid,
                    "renewed_secs_ago": h.age.as_secs(), "holder": state,
                    "detail": h.describe(), "recorded": recorded})
            ),
            Output::Text => println!(
                "lock {}: run {} ({} on {}, pid {}), renewed {}s ago — {}{}",
                h.env,
                h.owner.run_id,
                h.owner.command,
                h.owner.host,
                h.owner.pid,
                h.age.as_secs(),
                h.describe(),
                match (recorded, h.dead()) {
                    (true, _) => String::new(),
                    (false, true) => format!(
                        "; no record (it stopped before its first change): `envclone abort {}` \
                         releases it, a new run takes it over",
                        h.owner.run_id
                    ),
                    (false, false) => "; no record yet (preflight)".to_string(),
                }
            ),
        }
    }
    Ok(())
}

fn print_plan(
    output: Output,
    run_id: &RunId,
    title: &str,
    plan: &crate::workflow::plan::ClonePlan,
    steps: &[String],
) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({"type": "plan", "run_id": run_id, "plan": plan,
                "parameters": plan.display_parameters(), "steps": steps})
        ),
        Output::Text => {
            let out = std::io::stdout();
            let mut out = out.lock();
            let _ = writeln!(out, "Plan {run_id}: {title}");
            for (i, s) in steps.iter().enumerate() {
                let _ = writeln!(out, "  {}. {s}", i + 1);
            }
        }
    }
}

fn new_run_id() -> RunId {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    RunId::new(chrono::Utc::now(), nanos ^ std::process::id())
}

/// Asks the user to type `expected` on a terminal; refuses without a terminal unless `yes`.
fn confirm(yes: bool, what: &str, expected: &str) -> Result<(), AppError> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(AppError::Refused(format!(
            "{what} Confirmation is needed and there is no terminal to ask on; pass --yes to \
             run it unattended"
        )));
    }
    eprint!("{what}\nType the environment's name ({expected}) to continue: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| AppError::Refused(format!("could not read the confirmation: {e}")))?;
    if answer.trim() == expected {
        Ok(())
    } else {
        Err(AppError::Refused(format!(
            "not confirmed (expected {expected:?}, got {:?})",
            answer.trim()
        )))
    }
}

async fn clone(
    cloud: Cloud,
    command: CloneCommand,
    output: Output,
    state_dir: &std::path::Path,
    state: &Option<StateLocation>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    let mut run = Prepared::new(
        cloud,
        state,
        state_dir,
        (command.concurrency, command.multipart_threshold),
        (
            &command.request.source,
            "clone",
            command.break_lock,
            command.dry_run,
        ),
    )
    .await?;
    run.engine.settings.sync.skip_archived = command.skip_archived;
    let (engine, shared, run_id) = (&run.engine, &run.shared, run.run_id.clone());
    let shutdown = run.until_stopped(shutdown);
    let result = clone_locked(engine, shared, command, output, state_dir, run_id, shutdown).await;
    run.release().await;
    result
}

async fn clone_locked(
    engine: &CloneEngine,
    shared: &Shared,
    command: CloneCommand,
    output: Output,
    state_dir: &std::path::Path,
    run_id: RunId,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    let plan = engine.preflight(&command.request, run_id.clone()).await?;
    print_plan(
        output,
        &run_id,
        &format!("clone {} → {}", plan.source_env, plan.target_env),
        &plan,
        &plan.steps(),
    );
    if command.dry_run {
        if output == Output::Text {
            println!("Dry run: nothing was changed.");
        }
        return Ok(());
    }
    let what = if plan.standby {
        format!(
            "This puts the instances of {} ({}) into Standby while it is copied.",
            plan.source_env,
            plan.scaling_groups.join(", ")
        )
    } else {
        format!("This copies {} while it keeps serving.", plan.source_env)
    };
    confirm(command.yes, &what, &plan.source_env)?;

    let emitter = run_emitter(run_id.as_str(), output, state_dir)?;
    let outcome = engine
        .run_clone(&plan, &*shared.runs, &emitter, shutdown, None)
        .await;
    clone_outcome(output, &run_id, outcome)
}

fn clone_outcome(
    output: Output,
    run_id: &RunId,
    outcome: Result<CloneReport, Box<CloneFailure>>,
) -> Result<(), AppError> {
    match outcome {
        Ok(report) => {
            print_report(output, &report);
            Ok(())
        }
        Err(failure) => {
            print_failure(output, &failure);
            Err(AppError::Failed(format!(
                "clone run {run_id} failed: {}; `envclone resume {run_id}` retries it, \
                 `envclone abort {run_id}` removes what it created",
                failure.error
            )))
        }
    }
}

fn print_checks(output: Output, title: &str, checks: &[CheckResult]) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({"type": "verification", "checks": checks})
        ),
        Output::Text => {
            println!("{title}:");
            for c in checks {
                println!(
                    "  [{}] {}: {}",
                    if c.ok { "ok" } else { "FAIL" },
                    c.check,
                    c.detail
                );
            }
        }
    }
}

fn print_report(output: Output, report: &CloneReport) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({"type": "report", "report": report})
        ),
        Output::Text => {
            println!();
            println!(
                "Clone {} → {} complete (run {})",
                report.source, report.target, report.run_id
            );
            println!("  stack:     {}", report.stack_id);
            for s in &report.snapshots {
                println!("  database:  from {s}");
            }
            for b in &report.buckets {
                println!(
                    "  bucket:    {} → {} ({} objects copied, {} bytes{})",
                    b.source,
                    b.target,
                    b.stats.copied + b.precopy.as_ref().map_or(0, |p| p.copied),
                    b.stats.copied_bytes + b.precopy.as_ref().map_or(0, |p| p.copied_bytes),
                    match &b.precopy {
                        Some(p) =>
                            format!("; {} before Standby, {} during", p.copied, b.stats.copied),
                        None => String::new(),
                    }
                );
                print_skipped_archived(&b.source, &b.target, &b.stats);
            }
            for line in report.inventory.created_empty() {
                println!("  {line}");
            }
            print_checks(output, "Verification", &report.verification);
            println!("  source {}: back in service", report.source);
        }
    }
}

/// The archived objects a copy left out (--skip-archived), for the text report. The JSON
/// report carries them in each bucket's stats.
fn print_skipped_archived(source: &str, target: &str, stats: &crate::s3sync::SyncStats) {
    if stats.skipped_archived == 0 {
        return;
    }
    const SHOWN: usize = 20;
    println!(
        "  archived:  {} object(s), {} bytes of s3://{source} NOT copied to s3://{target} \
         (--skip-archived; restore them and copy them yourself if the clone needs them):",
        stats.skipped_archived, stats.skipped_archived_bytes
    );
    for key in stats.skipped_archived_keys.iter().take(SHOWN) {
        println!("             {key:?}");
    }
    let shown = stats.skipped_archived_keys.len().min(SHOWN) as u64;
    if stats.skipped_archived > shown {
        println!(
            "             … and {} more (--output json lists the first {})",
            stats.skipped_archived - shown,
            crate::s3sync::ARCHIVED_KEYS_KEPT
        );
    }
}

fn print_failure(output: Output, failure: &CloneFailure) {
    let restored = match &failure.source_restored {
        Ok(()) => "back in service".to_string(),
        Err(e) => format!("NOT fully back in service: {e}"),
    };
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({"type": "failure", "error": failure.error.to_string(),
                "left_behind": failure.left_behind, "source": restored,
                "verification": failure.verification})
        ),
        Output::Text => {
            eprintln!();
            eprintln!("Clone failed: {}", failure.error);
            eprintln!("  source: {restored}");
            if failure.left_behind.is_empty() {
                eprintln!("  left behind: nothing");
            } else {
                eprintln!(
                    "  left behind (tagged envclone:run, remove or keep): {}",
                    resource::join(&failure.left_behind, ", ")
                );
            }
            if !failure.verification.is_empty() {
                print_checks(Output::Text, "Verification", &failure.verification);
            }
        }
    }
}
