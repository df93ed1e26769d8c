//! The composition root, in ripgrep's `main` shape: `run` turns the parsed command line into a
//! [`Root`] (the global flags: where AWS is, where the state is, how to print) and makes one
//! call per command; each command takes its typed request, connects the AWS adapters, runs the
//! workflow — under the environment's lock, taken, held and released in one place
//! ([`locked`]) — and tells the [`Printer`] what happened. `run` maps the outcome to an exit
//! code.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use thiserror::Error;

use crate::cli::{
    Cli, CloneArgs, CloneCommand, Command, InputError, MigrateArgs, MigrateCommand, PlanCommand,
    S3Request, StandbyState,
};
use crate::events::Emitter;
use crate::journal::S3RunStore;
use crate::journal::{default_state_dir, FileJournal};
use crate::journal::{FileRunStore, RunStore};
use crate::lock::{FileLocks, HeldLock, LockOwner, LockStore, S3Locks, StateLocation};
use crate::model::RunId;
use crate::ports::{Clock, Cloud, SystemClock};
use crate::printer::{Printer, RunStatus};
use crate::s3cmd::{S3CmdError, SyncRequest};
use crate::s3sync::{SyncOptions, SyncProgress};
use crate::workflow::clone::{CloneEngine, CloneFailure, CloneReport, Settings};
use crate::workflow::experiments::{DestroyError, Environment};
use crate::workflow::migrate::{MigratePhase, MigrationState};
use crate::workflow::ops::VerifyError;
use crate::workflow::record::RunRecord;
use crate::workflow::recovery::ClonePhase;
use crate::workflow::resource::ResourceRef;
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
            AppError::S3(e) if e.is_bad_input() => EXIT_BAD_INPUT,
            AppError::S3(_) => EXIT_FAILED,
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
            VerifyError::Record { .. } => AppError::Failed(e.to_string()),
        }
    }
}

/// Runs the command; `shutdown` resolves on Ctrl-C.
pub async fn run(cli: Cli, shutdown: impl Future<Output = ()>) -> ExitCode {
    let printer = Printer::new(cli.output);
    match dispatch(cli, printer, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.exit_code();
            printer.error(code, &e.to_string(), code == EXIT_BAD_INPUT);
            ExitCode::from(code)
        }
    }
}

/// One call per command, each with its typed request.
async fn dispatch(
    cli: Cli,
    printer: Printer,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    let (root, command) = Root::new(cli, printer)?;
    let root = &root;
    match command {
        Command::Clone(args) => clone(root, root.clone_command(args, false)?, shutdown).await,
        Command::Plan(PlanCommand::Clone(args)) => {
            clone(root, root.clone_command(args, true)?, shutdown).await
        }
        Command::Migrate(args) => migrate(root, root.migrate_command(args, false)?, shutdown).await,
        Command::Plan(PlanCommand::Migrate(args)) => {
            migrate(root, root.migrate_command(args, true)?, shutdown).await
        }
        Command::Finalize { run, yes } => finalize(root, RunRequest { run, yes }).await,
        Command::Resume { run, yes } => resume(root, RunRequest { run, yes }, shutdown).await,
        Command::Abort { run, yes, keep } => abort(root, RunRequest { run, yes }, keep).await,
        Command::Status { run } => status(root, run.as_deref()).await,
        Command::List => list(root).await,
        Command::Destroy { env, yes } => destroy(root, &env, yes).await,
        Command::Gc { dry_run, yes } => gc(root, dry_run, yes).await,
        Command::Verify { env, against } => verify(root, &env, against.as_deref()).await,
        Command::Standby { env, state, yes } => standby(root, &env, state, yes).await,
        Command::S3(command) => s3(root, command.into_request()?, shutdown).await,
        Command::IamPolicy { scope } => {
            iam_policy(root, scope);
            Ok(())
        }
        Command::Completions { shell } => {
            root.printer.completions(&crate::cli::completions(shell));
            Ok(())
        }
    }
}

// ------------------------------------------------------------------------------ the root

/// The global flags, resolved once: how to reach AWS, where runs are recorded and locked,
/// which contract file, how to print.
struct Root {
    printer: Printer,
    region: Option<String>,
    profile: Option<String>,
    state_dir: PathBuf,
    /// `--state s3://BUCKET/PREFIX`; None keeps records and locks in `state_dir`.
    state: Option<StateLocation>,
    config: Option<PathBuf>,
    /// Wall time, read only here (and by the engines through `Cloud::clock`).
    clock: Arc<dyn Clock>,
}

/// A command naming a recorded run (`finalize`, `resume`, `abort`).
struct RunRequest {
    run: String,
    yes: bool,
}

impl Root {
    fn new(cli: Cli, printer: Printer) -> Result<(Root, Command), AppError> {
        let Cli {
            region,
            profile,
            output: _,
            state_dir,
            state_url,
            config,
            command,
        } = cli;
        let state = state_url
            .as_deref()
            .map(StateLocation::parse_s3)
            .transpose()
            .map_err(AppError::Refused)?;
        let root = Root {
            printer,
            region,
            profile,
            state_dir: state_dir.unwrap_or_else(default_state_dir),
            state,
            config,
            clock: Arc::new(SystemClock),
        };
        Ok((root, command))
    }

    /// The AWS adapters.
    async fn connect(&self) -> Result<Cloud, AppError> {
        Ok(crate::aws::connect(
            self.region.clone(),
            self.profile.clone(),
            self.clock.clone(),
        )
        .await?)
    }

    fn load_config(&self) -> Result<Arc<crate::config::Config>, AppError> {
        Ok(Arc::new(crate::config::Config::load(
            self.config.as_deref(),
        )?))
    }

    fn clone_command(&self, args: CloneArgs, dry_run: bool) -> Result<CloneCommand, AppError> {
        let mut command = args.into_command(self.clock.now())?;
        command.dry_run |= dry_run;
        command.request.config = self.load_config()?;
        Ok(command)
    }

    fn migrate_command(
        &self,
        args: MigrateArgs,
        dry_run: bool,
    ) -> Result<MigrateCommand, AppError> {
        let mut command = args.into_command(self.clock.now())?;
        command.dry_run |= dry_run;
        command.request.config = self.load_config()?;
        Ok(command)
    }

    /// The `--state` bucket and prefix, if the state is in S3.
    fn state_bucket(&self) -> Option<(String, String)> {
        match &self.state {
            Some(StateLocation::S3 { bucket, prefix }) => Some((bucket.clone(), prefix.clone())),
            _ => None,
        }
    }

    fn engine(
        &self,
        cloud: Cloud,
        concurrency: Option<usize>,
        threshold: Option<u64>,
    ) -> CloneEngine {
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
                post_swap_timeout: post_swap_timeout(self.printer, settings.post_swap_timeout),
                ..settings
            },
        }
    }

    /// Where run records and locks live: the local state directory, or S3 with `--state`.
    fn shared(&self, cloud: &Cloud) -> Shared {
        shared_state(&self.state, &self.state_dir, cloud)
    }

    /// The printer plus the run's journal.
    fn run_emitter(&self, run_id: &str) -> Result<Emitter, AppError> {
        let journal = FileJournal::create(&self.state_dir, run_id).map_err(|e| {
            AppError::Refused(format!(
                "cannot write the run journal under {}: {e}; pass a writable --state-dir",
                self.state_dir.display()
            ))
        })?;
        let path = journal.path().display().to_string();
        let emitter = Emitter {
            run_id: run_id.to_string(),
            clock: self.clock.clone(),
            sink: Arc::new(crate::events::Fanout(vec![
                Arc::new(self.printer),
                Arc::new(journal),
            ])),
        };
        emitter.info("run", None, format!("run {run_id}: journal {path}"));
        Ok(emitter)
    }

    /// The printer alone (commands without a journal: `standby`, `destroy`, `gc`).
    fn console(&self, run_id: &str) -> Emitter {
        Emitter {
            run_id: run_id.to_string(),
            sink: Arc::new(self.printer),
            clock: self.clock.clone(),
        }
    }

    /// Asks for confirmation (see [`Printer::confirm`]); a refusal is bad input.
    fn confirm(&self, yes: bool, what: &str, expected: &str) -> Result<(), AppError> {
        self.printer
            .confirm(yes, what, expected)
            .map_err(AppError::Refused)
    }

    /// Without `--state` the lock is a file of this machine's state directory: another machine
    /// (or another state directory) does not see it.
    fn warn_local_lock(&self, command: &str, env: &str) {
        if self.state.is_none() {
            self.printer.warning(format_args!(
                "{command} of {env} is locked in {} only: it excludes runs on this machine with \
                 this state directory, not on another machine; use --state s3://BUCKET/PREFIX \
                 for a lock across machines",
                self.state_dir.join("locks").display()
            ));
        }
    }

    fn unknown_run(&self, run: &str) -> AppError {
        unknown_run(&self.state_dir, run)
    }
}

// ------------------------------------------------------------------------- the one lock

/// Which lock a command takes: the environment (its resolved stack name), the run and command
/// it is taken for.
struct LockKey<'a> {
    env: &'a str,
    run_id: &'a str,
    command: &'a str,
    break_lock: bool,
}

impl<'a> LockKey<'a> {
    /// A lock that is not taken from a run found stale (no `--break-lock`).
    fn of(env: &'a str, run_id: &'a str, command: &'a str) -> LockKey<'a> {
        LockKey {
            env,
            run_id,
            command,
            break_lock: false,
        }
    }
}

/// The environment's lock while a command runs under it; empty for a dry run, which changes
/// nothing.
struct Lease(Option<HeldLock>);

impl Lease {
    /// Set once the lock is lost (never without one).
    fn stop_flag(&self) -> Arc<AtomicBool> {
        self.0.as_ref().map(HeldLock::stop_flag).unwrap_or_default()
    }

    /// Runs `work` so that no new call starts once the lock is lost.
    async fn stoppable<F: Future>(&self, work: F) -> F::Output {
        crate::retry::stoppable(self.stop_flag(), work).await
    }

    /// What stops a run before its next change: Ctrl-C, or its lock found lost (another run
    /// holds the environment now). Either way the call in flight finishes and the source
    /// returns to service, as for Ctrl-C.
    fn until_stopped(&self, shutdown: impl Future<Output = ()>) -> impl Future<Output = ()> {
        let lost = self.0.as_ref().map(HeldLock::lost);
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
}

/// The lock → run → release sequence, for every command that locks: takes the lock of `key`
/// (none when `key` is None: a dry run) and starts renewing it — a dead holder's lock taken over
/// is said, naming the dead run — runs `body` under it, and releases it whatever `body`
/// returned (a failure to remove it is said, not fatal: it goes stale).
async fn locked<T>(
    root: &Root,
    shared: &Shared,
    key: Option<LockKey<'_>>,
    body: impl AsyncFnOnce(&Lease) -> T,
) -> Result<T, AppError> {
    let lease = match key {
        None => Lease(None),
        Some(key) => Lease(Some(lock_env(root.printer, shared, key).await?)),
    };
    let result = body(&lease).await;
    if let Some(lock) = lease.0 {
        if let Err(e) = lock.release().await {
            root.printer.warning(e);
        }
    }
    Ok(result)
}

async fn lock_env(
    printer: Printer,
    shared: &Shared,
    key: LockKey<'_>,
) -> Result<HeldLock, AppError> {
    let LockKey {
        env,
        run_id,
        command,
        break_lock,
    } = key;
    let runs = shared.runs.clone();
    let part_way = move |run: &str| left_part_way(&*runs, run);
    let lock = crate::lock::acquire_checking(
        shared.locks.clone(),
        env,
        LockOwner::new(run_id, command, shared.clock.now()),
        break_lock,
        &part_way,
    )
    .await
    .map_err(|e| AppError::Refused(e.to_string()))?;
    if let Some(took) = lock.took_over() {
        printer.warning(format_args!(
            "environment {env}: {took}; `envclone status {}` shows what it left, `envclone \
             abort {}` removes it",
            took.from.run_id, took.from.run_id
        ));
    }
    Ok(crate::lock::hold(lock, move |w| printer.warning(w)))
}

/// What run `run` left half done, by its record: a clone still `running` (the source may be in
/// Standby, the clone half made), a migration neither finalized nor aborted. None without a
/// record (it died before its first change) or when it finished.
fn left_part_way(runs: &dyn RunStore, run: &str) -> Option<String> {
    match RunRecord::load(runs, run) {
        Ok(Some(record)) => record.left_part_way(),
        Ok(None) => None,
        Err(e) => Some(format!("its record could not be read ({e})")),
    }
}

/// Where run records and locks live: the local state directory, or S3 with `--state`.
struct Shared {
    runs: Arc<dyn RunStore>,
    locks: Arc<dyn LockStore>,
    s3: Option<Arc<S3RunStore>>,
    /// Stamps the lock owner's times.
    clock: Arc<dyn Clock>,
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
                clock: cloud.clock.clone(),
            }
        }
        _ => Shared {
            runs: Arc::new(FileRunStore::new(state_dir)),
            locks: Arc::new(FileLocks {
                dir: state_dir.to_path_buf(),
            }),
            s3: None,
            clock: cloud.clock.clone(),
        },
    }
}

// ----------------------------------------------------------------------------- commands

/// `clone` and `plan clone`: the lock first (a second run must be told the environment is
/// busy, not trip over the first run's changes in its preflight), then preflight, plan,
/// confirmation, the run.
async fn clone(
    root: &Root,
    command: CloneCommand,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    let cloud = root.connect().await?;
    let copy = (
        command.concurrency,
        command.multipart_threshold,
        command.skip_archived,
    );
    let mut run = Prepared::new(root, cloud, &command.request.source, copy, command.dry_run).await;
    run.engine.settings.batch = command.batch.clone();
    let key = run.lock_key("clone", command.break_lock);
    locked(root, &run.shared, key, async |lease| {
        let shutdown = lease.until_stopped(shutdown);
        clone_locked(root, &run, command, shutdown).await
    })
    .await?
}

/// What a clone or migrate run sets up before its lock: the state backend, the engine, the run
/// id, and the environment to lock (none for a dry run).
struct Prepared {
    shared: Shared,
    engine: CloneEngine,
    run_id: RunId,
    lock_env: Option<String>,
}

impl Prepared {
    async fn new(
        root: &Root,
        cloud: Cloud,
        env: &str,
        (concurrency, threshold, skip_archived): (usize, u64, bool),
        dry_run: bool,
    ) -> Prepared {
        let shared = root.shared(&cloud);
        let mut engine = root.engine(cloud, Some(concurrency), Some(threshold));
        engine.settings.state_bucket = root.state_bucket();
        engine.settings.sync.skip_archived = skip_archived;
        let run_id = new_run_id(&*root.clock);
        // One environment, one lock, however it was named (stack name or tag): the key is the
        // resolved stack. An unknown one keeps its name (preflight will say).
        let lock_env = match dry_run {
            true => None,
            false => Some(match engine.resolve(env).await {
                Ok(source) => source.stack.name,
                Err(_) => env.to_string(),
            }),
        };
        Prepared {
            shared,
            engine,
            run_id,
            lock_env,
        }
    }

    fn lock_key<'a>(&'a self, command: &'a str, break_lock: bool) -> Option<LockKey<'a>> {
        self.lock_env.as_deref().map(|env| LockKey {
            env,
            run_id: self.run_id.as_str(),
            command,
            break_lock,
        })
    }
}

async fn clone_locked(
    root: &Root,
    run: &Prepared,
    command: CloneCommand,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    let (engine, shared, run_id) = (&run.engine, &run.shared, &run.run_id);
    let plan = engine.preflight(&command.request, run_id.clone()).await?;
    root.printer.plan(
        run_id,
        &format!("clone {} → {}", plan.source_env, plan.target_env),
        &plan,
        &plan.steps(),
    );
    if command.dry_run {
        root.printer.dry_run();
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
    root.confirm(command.yes, &what, &plan.source_env)?;

    let emitter = root.run_emitter(run_id.as_str())?;
    let outcome = engine
        .run_clone(&plan, &*shared.runs, &emitter, shutdown, None)
        .await;
    clone_outcome(root.printer, run_id, outcome)
}

fn clone_outcome(
    printer: Printer,
    run_id: &RunId,
    outcome: Result<CloneReport, Box<CloneFailure>>,
) -> Result<(), AppError> {
    match outcome {
        Ok(report) => {
            printer.report(&report);
            Ok(())
        }
        Err(failure) => {
            printer.failure(&failure);
            Err(AppError::Failed(format!(
                "clone run {run_id} failed: {}; `envclone resume {run_id}` retries it, \
                 `envclone abort {run_id}` removes what it created",
                failure.error
            )))
        }
    }
}

/// `migrate` and `plan migrate`: as `clone`, then the swap (and `--finalize`).
async fn migrate(
    root: &Root,
    command: MigrateCommand,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    let cloud = root.connect().await?;
    if !command.dry_run {
        root.warn_local_lock("migrate", &command.request.env);
    }
    let copy = (
        command.concurrency,
        command.multipart_threshold,
        command.skip_archived,
    );
    let mut run = Prepared::new(root, cloud, &command.request.env, copy, command.dry_run).await;
    run.engine.settings.batch = command.batch.clone();
    let key = run.lock_key("migrate", command.break_lock);
    locked(root, &run.shared, key, async |lease| {
        let stop = lease.stop_flag();
        let shutdown = lease.until_stopped(shutdown);
        migrate_locked(root, &run, command, (shutdown, stop)).await
    })
    .await?
}

async fn migrate_locked(
    root: &Root,
    run: &Prepared,
    command: MigrateCommand,
    (shutdown, stop): (impl Future<Output = ()>, Arc<AtomicBool>),
) -> Result<(), AppError> {
    let (engine, shared, run_id) = (&run.engine, &run.shared, &run.run_id);
    let mut plan = engine
        .preflight_migrate(&command.request, run_id.clone())
        .await?;
    plan.deadline = command.deadline;
    if let Some(deadline) = command.deadline {
        // Past runs of this environment say how long one takes; refuse what cannot fit.
        let needed = past_migration_duration(&root.state_dir, &command.request.env)
            .unwrap_or_default()
            .max(crate::workflow::migrate::swap_allowance(&plan.swaps));
        let needed = chrono::Duration::from_std(needed).unwrap_or_default();
        if root.clock.now() + needed > deadline {
            return Err(AppError::Refused(format!(
                "a migration of {} needs about {} min (past runs and the swap), which does not \
                 fit before {deadline}; start it in a longer window",
                command.request.env,
                needed.num_minutes()
            )));
        }
    }
    let steps = plan.steps(command.finalize);
    root.printer.plan(
        run_id,
        &format!(
            "migrate {} onto {}",
            plan.clone.source_env, plan.clone.template.origin
        ),
        &plan.clone,
        &steps,
    );
    if command.dry_run {
        root.printer.dry_run();
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
    root.confirm(command.yes, &what, &plan.clone.source_env)?;
    let emitter = root.run_emitter(run_id.as_str())?;
    let store = &*shared.runs;
    let outcome = engine.migrate(&plan, store, &emitter, shutdown).await;
    let mut state = match outcome {
        Ok(state) => state,
        Err(failure) => {
            root.printer.migration(&failure.state);
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
        root.printer.migration(&state);
        return result.map_err(AppError::from);
    }
    root.printer.migration(&state);
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
        let Ok(Some(RunRecord::Migrate(state))) = RunRecord::load(&store, run) else {
            continue;
        };
        if state.env != env
            || !matches!(state.phase, MigratePhase::Swapped | MigratePhase::Finalized)
        {
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

/// `finalize RUN`: what it would refuse is refused before the question, then the point of no
/// return under the lock.
async fn finalize(root: &Root, request: RunRequest) -> Result<(), AppError> {
    let RunRequest { run, yes } = request;
    let cloud = root.connect().await?;
    let shared = root.shared(&cloud);
    let mut migration = load_migration(&*shared.runs, &root.state_dir, &run)?;
    root.warn_local_lock("finalize", &migration.env);
    let engine = root.engine(cloud, None, None);
    // What finalize would refuse (a protected environment, an operator's termination
    // protection, uncovered state without DeletionPolicy Retain) is refused before the
    // question, as bad input: nothing is changed.
    match engine.finalize_preflight(&migration).await {
        Ok(_) => {}
        Err(StepError::Refused { message, .. }) => return Err(AppError::Refused(message)),
        Err(e) => return Err(e.into()),
    }
    root.confirm(
        yes,
        &format!(
            "Finalizing run {run} deletes the old environment (stack {}); its database \
             gets a final snapshot that is kept. This cannot be undone.",
            migration.source_stack
        ),
        &migration.env,
    )?;
    let stack = migration.source_stack.clone();
    let key = LockKey::of(&stack, &run, "finalize");
    let result = locked(root, &shared, Some(key), async |lease| {
        let emitter = root.run_emitter(&run)?;
        Ok::<_, AppError>(
            lease
                .stoppable(engine.finalize(&mut migration, &*shared.runs, &emitter))
                .await,
        )
    })
    .await??;
    root.printer.migration(&migration);
    result.map_err(AppError::from)
}

/// `resume RUN`: a clone run finished where it stopped, or a migration continued.
async fn resume(
    root: &Root,
    request: RunRequest,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    let RunRequest { run, yes } = request;
    let cloud = root.connect().await?;
    let shared = root.shared(&cloud);
    let record = match RunRecord::load(&*shared.runs, &run).map_err(AppError::Refused)? {
        None => return Err(unknown_run(&root.state_dir, &run)),
        Some(RunRecord::Clone(record)) => record,
        Some(RunRecord::Migrate(migration)) => {
            root.confirm(
                yes,
                &format!(
                    "Resuming run {run} continues the migration of {} to stack {} (phase {:?}).",
                    migration.env, migration.target_stack, migration.phase
                ),
                &migration.env,
            )?;
            let stack = migration.source_stack.clone();
            let key = LockKey::of(&stack, &run, "resume");
            return locked(root, &shared, Some(key), async |lease| {
                let engine = root.engine(cloud, None, None);
                let emitter = root.run_emitter(&run)?;
                let shutdown = lease.until_stopped(shutdown);
                let result = engine
                    .resume_migration(migration, &*shared.runs, &emitter, shutdown)
                    .await;
                Ok(result)
            })
            .await?
            .and_then(|result| match result {
                Ok(state) => {
                    root.printer.migration(&state);
                    Ok(())
                }
                Err(failure) => {
                    root.printer.migration(&failure.state);
                    Err(AppError::Failed(format!(
                        "resuming run {run} failed: {}",
                        failure.error
                    )))
                }
            });
        }
    };
    if record.phase == ClonePhase::Succeeded || record.phase == ClonePhase::Aborted {
        return Err(AppError::Refused(format!(
            "run {run} is {:?}; there is nothing to resume",
            record.phase
        )));
    }
    root.confirm(
        yes,
        &format!(
            "Resuming run {run} puts {} into Standby again while the clone {} is finished.",
            record.env, record.target_stack
        ),
        &record.env,
    )?;
    let stack = record.plan.source_stack.clone();
    let key = LockKey::of(&stack, &run, "resume");
    let outcome = locked(root, &shared, Some(key), async |lease| {
        let engine = root.engine(cloud, None, None);
        let emitter = root.run_emitter(&run)?;
        let shutdown = lease.until_stopped(shutdown);
        Ok::<_, AppError>(
            engine
                .resume_clone(record, &*shared.runs, &emitter, shutdown)
                .await,
        )
    })
    .await??;
    clone_outcome(root.printer, &RunId::from_existing(&run), outcome)
}

/// `abort RUN`: a clone's source back in service (and what it made removed unless `keep`), a
/// migration swapped back, or the lock of a run that left no record released.
async fn abort(root: &Root, request: RunRequest, keep: bool) -> Result<(), AppError> {
    let RunRequest { run, yes } = request;
    let cloud = root.connect().await?;
    let shared = root.shared(&cloud);
    let mut migration = match RunRecord::load(&*shared.runs, &run).map_err(AppError::Refused)? {
        None => return abort_unrecorded(root, &shared, &run).await,
        Some(RunRecord::Migrate(migration)) => migration,
        Some(RunRecord::Clone(mut record)) => {
            root.confirm(
                yes,
                &format!(
                    "Aborting run {run} returns {} to service{}.",
                    record.env,
                    if keep {
                        String::new()
                    } else {
                        format!(
                        " and deletes what the run created (stack {}, its buckets and snapshots)",
                        record.target_stack
                    )
                    }
                ),
                &record.env,
            )?;
            let stack = record.plan.source_stack.clone();
            let key = LockKey::of(&stack, &run, "abort");
            let removed = locked(root, &shared, Some(key), async |lease| {
                let engine = root.engine(cloud, None, None);
                let emitter = root.run_emitter(&run)?;
                lease
                    .stoppable(engine.abort_clone(&mut record, &*shared.runs, &emitter, keep))
                    .await
                    .map_err(AppError::from)
            })
            .await??;
            root.printer.aborted(&run, &record.env, &removed);
            return Ok(());
        }
    };
    let never_swapped = migration.never_swapped
        && !matches!(
            migration.phase,
            MigratePhase::Swapping | MigratePhase::Swapped
        );
    root.confirm(
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
    let stack = migration.source_stack.clone();
    let key = LockKey::of(&stack, &run, "abort");
    let result = locked(root, &shared, Some(key), async |lease| {
        let engine = root.engine(cloud, None, None);
        let emitter = root.run_emitter(&run)?;
        Ok::<_, AppError>(
            lease
                .stoppable(engine.abort_migration_with(
                    &mut migration,
                    &*shared.runs,
                    &emitter,
                    keep,
                ))
                .await,
        )
    })
    .await??;
    root.printer.migration(&migration);
    result.map_err(AppError::from)
}

/// `abort RUN` of a run that has a lock and no record: it stopped (was killed) between taking
/// the lock and writing its record, before its first change, so there is nothing to undo but
/// the lock. Taken over like any lock of the same run: only once its holder is gone or stale.
async fn abort_unrecorded(root: &Root, shared: &Shared, run: &str) -> Result<(), AppError> {
    let held = crate::lock::holdings(&*shared.locks)
        .await
        .map_err(|e| AppError::Failed(format!("cannot read the locks: {e}")))?;
    let Some(holding) = held.into_iter().find(|h| h.owner.run_id == run) else {
        return Err(root.unknown_run(run));
    };
    let key = LockKey::of(&holding.env, run, "abort");
    locked(root, shared, Some(key), async |_| ()).await?;
    root.printer.aborted_unrecorded(run, &holding);
    Ok(())
}

/// `envclone status [RUN]`: one line (or JSON object) per recorded run, then one per lock
/// held — a run killed between taking its lock and writing its record shows only there.
async fn status(root: &Root, only: Option<&str>) -> Result<(), AppError> {
    // Without `--state`, status reads the state directory and does not connect to AWS.
    let shared = match &root.state {
        Some(_) => Some(root.shared(&root.connect().await?)),
        None => None,
    };
    let shared = shared.as_ref();
    let state_dir = root.state_dir.as_path();
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
        // A record this envclone cannot read is named, and its run still listed (with its
        // journal): one bad file does not hide the others.
        let record = RunRecord::load(store, &run).unwrap_or_else(|e| {
            root.printer.warning(format_args!("{e}"));
            None
        });
        let journal = match &s3 {
            Some(s3) => s3.journal(&run),
            None => std::fs::read_to_string(local.dir.join(format!("{run}.jsonl"))).ok(),
        };
        let steps: Vec<serde_json::Value> = journal
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let field =
            |f: fn(&RunRecord) -> &str| record.as_ref().map(f).unwrap_or_default().to_string();
        root.printer.run_status(&RunStatus {
            run_id: run.clone(),
            command: field(RunRecord::command),
            source: field(RunRecord::env),
            target: field(RunRecord::target_stack),
            state: record.as_ref().map(RunRecord::phase).unwrap_or_default(),
            started_at: field(RunRecord::started_at),
            steps,
        });
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
        root.printer.lock_status(&h, recorded);
    }
    Ok(())
}

/// `list`: every environment envclone created.
async fn list(root: &Root) -> Result<(), AppError> {
    let cloud = root.connect().await?;
    let engine = root.engine(cloud, None, None);
    let envs = engine
        .list_environments()
        .await
        .map_err(|e| AppError::Failed(format!("listing the environments failed: {e}")))?;
    root.printer.environments(&envs, root.clock.now());
    Ok(())
}

/// `destroy ENV`: checked, confirmed, then destroyed under its lock.
async fn destroy(root: &Root, env: &str, yes: bool) -> Result<(), AppError> {
    let cloud = root.connect().await?;
    let shared = root.shared(&cloud);
    let engine = root.engine(cloud, None, None);
    let target = engine.destroyable(env).await.map_err(destroy_error)?;
    root.confirm(
        yes,
        &format!(
            "This deletes environment {} (stack {}, the buckets its clone created, its snapshots).",
            target.name, target.stack
        ),
        &target.name,
    )?;
    let run_id = new_run_id(&*root.clock);
    let (target, removed, left) = destroy_locked(
        root,
        &engine,
        &shared,
        (env, &target.stack),
        run_id.as_str(),
        "destroy",
    )
    .await?;
    report_destroyed(root.printer, &target.name, &removed, &left)
}

/// `gc`: every expired experiment destroyed (each under its lock) and the templates dead runs
/// left staged removed.
async fn gc(root: &Root, dry_run: bool, yes: bool) -> Result<(), AppError> {
    let cloud = root.connect().await?;
    let shared = root.shared(&cloud);
    let mut engine = root.engine(cloud, None, None);
    engine.settings.state_bucket = root.state_bucket();
    let now = root.clock.now();
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
    root.printer.environments(&expired, now);
    for l in &leftovers {
        root.printer.staging_leftover(l);
    }
    if expired.is_empty() && leftovers.is_empty() {
        root.printer.nothing_expired();
        return Ok(());
    }
    if dry_run {
        root.printer.dry_run();
        return Ok(());
    }
    let mut names: Vec<String> = expired.iter().map(|e| e.name.clone()).collect();
    names.extend(leftovers.iter().map(ToString::to_string));
    root.confirm(
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
            Ok(()) => root.printer.removed_leftover(l),
            Err(e) => failures.push(format!("{l}: {e}")),
        }
    }
    let run_id = new_run_id(&*root.clock);
    for target in &expired {
        // Each under its environment's lock, re-checked one by one: a tag may have changed
        // since the listing.
        let result = destroy_locked(
            root,
            &engine,
            &shared,
            (&target.name, &target.stack),
            run_id.as_str(),
            "gc",
        )
        .await;
        match result {
            Ok((_, removed, left)) => {
                if let Err(e) = report_destroyed(root.printer, &target.name, &removed, &left) {
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

/// `destroy` / `gc` of one environment under its lock: checked again once locked (a run may
/// have changed it between the listing and the lock), then destroyed; no new call starts once
/// the lock is lost.
async fn destroy_locked(
    root: &Root,
    engine: &CloneEngine,
    shared: &Shared,
    (env, locked_stack): (&str, &str),
    run_id: &str,
    command: &str,
) -> Result<(Environment, Vec<ResourceRef>, Vec<ResourceRef>), AppError> {
    let key = LockKey {
        env: locked_stack,
        run_id,
        command,
        break_lock: false,
    };
    locked(root, shared, Some(key), async |lease| {
        lease
            .stoppable(async {
                let target = engine.destroyable(env).await.map_err(destroy_error)?;
                if target.stack != locked_stack {
                    return Err(AppError::Refused(format!(
                        "environment {env} now resolves to stack {}, not to stack {locked_stack} \
                         that was listed and locked; nothing was deleted — run the command again",
                        target.stack
                    )));
                }
                let emitter = root.console(&target.run_id);
                let (removed, left) = engine
                    .destroy(&target, &emitter)
                    .await
                    .map_err(destroy_error)?;
                Ok((target, removed, left))
            })
            .await
    })
    .await?
}

fn destroy_error(e: DestroyError) -> AppError {
    match e {
        DestroyError::Step(s) => s.into(),
        DestroyError::Aws(..) => AppError::Failed(e.to_string()),
        _ => AppError::Refused(e.to_string()),
    }
}

/// What `destroy` removed, printed; an error if something could not be removed.
fn report_destroyed(
    printer: Printer,
    name: &str,
    removed: &[ResourceRef],
    left: &[ResourceRef],
) -> Result<(), AppError> {
    printer.destroyed(name, removed, left);
    if left.is_empty() {
        Ok(())
    } else {
        Err(AppError::Failed(format!(
            "{name}: could not remove {}",
            crate::workflow::resource::join(left, "; ")
        )))
    }
}

/// `verify ENV [--against SRC]`.
async fn verify(root: &Root, env: &str, against: Option<&str>) -> Result<(), AppError> {
    let cloud = root.connect().await?;
    let engine = CloneEngine {
        cloud,
        settings: Settings::default(),
    };
    let shared = root.shared(&engine.cloud);
    let verified = engine
        .verify_env_with(env, against, Some(&*shared.runs))
        .await?;
    for note in &verified.notes {
        root.printer.note(note);
    }
    let checks = verified.checks;
    root.printer
        .checks(&format!("verification of {env}"), &checks);
    if checks.iter().all(|c| c.ok) {
        Ok(())
    } else {
        Err(AppError::Failed(format!("{env} did not pass verification")))
    }
}

/// `standby ENV on|off`, under the environment's lock.
async fn standby(root: &Root, env: &str, wanted: StandbyState, yes: bool) -> Result<(), AppError> {
    let cloud = root.connect().await?;
    let engine = CloneEngine {
        cloud,
        settings: Settings::default(),
    };
    let source = engine.resolve(env).await?;
    let groups = crate::workflow::resources::groups_of(&source.resources);
    if wanted == StandbyState::On {
        root.confirm(
            yes,
            &format!(
                "This takes the instances of {} out of service (Standby).",
                groups.join(", ")
            ),
            env,
        )?;
    }
    let run_id = new_run_id(&*root.clock);
    let emitter = root.console(run_id.as_str());
    let shared = root.shared(&engine.cloud);
    let command = match wanted {
        StandbyState::On => "standby on",
        StandbyState::Off => "standby off",
    };
    let key = LockKey {
        env: &source.stack.name,
        run_id: run_id.as_str(),
        command,
        break_lock: false,
    };
    let result = locked(root, &shared, Some(key), async |lease| match wanted {
        StandbyState::On => {
            let entered = lease.stoppable(engine.standby_on(&source, &emitter)).await;
            if entered.is_err() {
                // Standby part-way is worse than either state: undo it (returning to
                // service goes on even once the lock is lost, as a clone's does).
                let _ = engine.standby_off(&source, &emitter).await;
            }
            entered.map(drop)
        }
        StandbyState::Off => engine.standby_off(&source, &emitter).await,
    })
    .await?;
    Ok(result?)
}

/// `iam-policy [SCOPE]`.
fn iam_policy(root: &Root, scope: crate::iam::Scope) {
    root.printer.iam_policy(&crate::iam::policy(scope));
    root.printer.note(
        "CreateStack and DeleteStack also need permission for the resources of your \
         template (EC2, ELB, RDS, S3 …), or pass a CloudFormation service role",
    );
}

/// `s3 sync`, `s3 sync --engine batch --dry-run`, `s3 diff-bench`.
async fn s3(
    root: &Root,
    request: S3Request,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    match request {
        S3Request::Batch {
            request,
            role,
            reports,
            priority,
            poll,
            copy_limit,
            manifest,
        } => {
            let cloud = root.connect().await?;
            let batch = crate::s3batch::BatchRequest {
                source: request.source.clone(),
                target: request.target.clone(),
                options: request.options.clone(),
                role_arn: role,
                reports,
                priority,
                copy_limit,
                poll,
                token_stem: None,
                manifest,
            };
            if request.options.dry_run {
                let job = crate::s3cmd::batch_job(cloud.objects.clone(), &batch).await?;
                root.printer.batch_job(&job);
                return Ok(());
            }
            s3_batch(root, cloud, &batch, shutdown).await
        }
        S3Request::JobStatus { account, id } => {
            let cloud = root.connect().await?;
            let info = cloud
                .jobs
                .describe_job(&account, &id)
                .await
                .map_err(job_error(format!("batch job {id} (account {account})")))?;
            root.printer.batch_job(&serde_json::json!({ "job": info }));
            Ok(())
        }
        S3Request::JobList { account } => {
            let cloud = root.connect().await?;
            let jobs = cloud
                .jobs
                .list_jobs(&account)
                .await
                .map_err(job_error(format!("the batch jobs of account {account}")))?;
            let jobs: Vec<serde_json::Value> = jobs
                .iter()
                .map(|j| {
                    serde_json::json!({"id": j.id, "status": j.status, "description": j.description})
                })
                .collect();
            root.printer.batch_job(&serde_json::json!({ "jobs": jobs }));
            Ok(())
        }
        S3Request::JobCancel { account, id } => {
            let cloud = root.connect().await?;
            cloud
                .jobs
                .cancel_job(&account, &id)
                .await
                .map_err(|source| {
                    S3CmdError::from(crate::s3batch::BatchError::Port {
                        what: format!("cancelling batch job {id} (account {account})"),
                        source,
                    })
                })?;
            root.printer.note(format_args!(
                "batch job {id} is being cancelled (tasks already run stay done); follow it \
                 with `envclone s3 job status {id} --account {account}`"
            ));
            Ok(())
        }
        S3Request::Sync(request) => {
            let cloud = root.connect().await?;
            tokio::select! {
                result = s3_sync(root.printer, cloud, &request) => result,
                () = shutdown => Err(S3CmdError::Interrupted.into()),
            }
        }
        #[cfg(any(test, feature = "fake"))]
        S3Request::DiffBench { objects } => {
            let bench = crate::s3cmd::diff_bench(objects).await?;
            root.printer.diff_bench(&bench);
            Ok(())
        }
    }
}

/// A failed S3 Control call of `s3 job status|cancel`, naming the job.
fn job_error(what: String) -> impl FnOnce(crate::ports::PortError) -> S3CmdError {
    move |source| crate::s3batch::BatchError::Port { what, source }.into()
}

/// `s3 sync --engine batch`: the job, its progress as events, the local re-copy and the
/// verification. Ctrl-C leaves the job running and says how to follow or cancel it.
async fn s3_batch(
    root: &Root,
    cloud: Cloud,
    request: &crate::s3batch::BatchRequest,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    let account = request.account_id().map_err(S3CmdError::from)?;
    let job_id = Arc::new(std::sync::Mutex::new(None::<String>));
    let seen = job_id.clone();
    let printer = root.printer;
    let display = Arc::new(std::sync::Mutex::new(printer.batch_display()));
    let shown = display.clone();
    let mut events = move |e: crate::s3batch::BatchEvent| {
        use crate::s3batch::BatchEvent;
        if let BatchEvent::JobCreated { job_id, .. } | BatchEvent::JobResumed { job_id, .. } = &e {
            *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(job_id.clone());
        }
        shown.lock().unwrap_or_else(|p| p.into_inner()).event(&e);
    };
    let run = crate::s3batch::run(
        cloud.objects.clone(),
        cloud.jobs.clone(),
        request,
        root.clock.now(),
        &mut events,
    );
    let outcome = tokio::select! {
        outcome = run => {
            display.lock().unwrap_or_else(|p| p.into_inner()).finish();
            outcome.map_err(S3CmdError::from)?
        }
        () = shutdown => {
            display.lock().unwrap_or_else(|p| p.into_inner()).finish();
            let job = job_id.lock().unwrap_or_else(|p| p.into_inner()).clone();
            return Err(match job {
                Some(job_id) => S3CmdError::BatchInterrupted { job_id, account },
                None => S3CmdError::Interrupted,
            }
            .into());
        }
    };
    printer.batch_outcome(&outcome);
    if outcome.verification.is_equal() {
        Ok(())
    } else {
        Err(S3CmdError::Verification {
            source_path: request.source.to_string(),
            target_path: request.target.to_string(),
            count: outcome.verification.mismatches.len(),
        }
        .into())
    }
}

/// Syncs, reports and (with `verify`) verifies; what the command prints goes to stdout, the
/// progress to stderr (or stdout as JSON).
async fn s3_sync(printer: Printer, cloud: Cloud, request: &SyncRequest) -> Result<(), AppError> {
    let started = Instant::now();
    let progress = Arc::new(SyncProgress::default());
    let display = printer.display(request.options.dry_run);
    let reporter = printer.progress(display, progress.clone(), started);
    let result = crate::s3cmd::sync(cloud.objects.clone(), request, &progress, &mut |p| {
        printer.planned(request, p)
    })
    .await;
    reporter.stop().await;
    let stats = result?;
    printer.sync_report(request, &stats, started.elapsed());
    if !request.verify {
        return Ok(());
    }
    let report = crate::s3cmd::verify(cloud.objects, request).await?;
    printer.sync_verification(&report);
    match crate::s3cmd::verification_error(request, &report) {
        None => Ok(()),
        Some(e) => Err(e.into()),
    }
}

// ------------------------------------------------------------------------------ helpers

fn new_run_id(clock: &dyn Clock) -> RunId {
    let now = clock.now();
    RunId::new(now, now.timestamp_subsec_nanos() ^ std::process::id())
}

/// `ENVCLONE_POST_SWAP_TIMEOUT` (e.g. `90s`, `10m`): how long each check of the live
/// environment after migrate's swap may take before the swap is undone.
fn post_swap_timeout(printer: Printer, default: std::time::Duration) -> std::time::Duration {
    let Ok(text) = std::env::var("ENVCLONE_POST_SWAP_TIMEOUT") else {
        return default;
    };
    match humantime::parse_duration(text.trim()) {
        Ok(d) => d,
        Err(e) => {
            printer.bad_setting(format_args!(
                "ENVCLONE_POST_SWAP_TIMEOUT={text:?} is not a duration ({e}); using {}",
                humantime::format_duration(default)
            ));
            default
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
    match RunRecord::load(store, run).map_err(AppError::Refused)? {
        Some(RunRecord::Migrate(state)) => Ok(state),
        Some(RunRecord::Clone(_)) => Err(AppError::Refused(format!(
            "run {run} is a clone, not a migration; use `envclone abort {run}` or `envclone resume {run}`"
        ))),
        None => Err(unknown_run(state_dir, run)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12 (a thin composition root): the `s3` commands' errors keep their exit codes now
    /// that `app` maps them — bad input is 2, a failure 1.
    #[test]
    fn s3_errors_keep_their_exit_codes() {
        let input: AppError = InputError::VerifyDryRun.into();
        assert_eq!(input.exit_code(), EXIT_BAD_INPUT);
        let overlap: AppError = InputError::S3Overlap {
            source_path: "s3://a/".into(),
            target_path: "s3://a/b/".into(),
        }
        .into();
        assert_eq!(overlap.exit_code(), EXIT_BAD_INPUT);
        let batch: AppError =
            S3CmdError::Batch(crate::s3batch::BatchError::RoleArn("x".into())).into();
        assert_eq!(batch.exit_code(), EXIT_BAD_INPUT);
        let missing: AppError = S3CmdError::Sync {
            source_path: "s3://a/".into(),
            target_path: "s3://b/".into(),
            error: Box::new(crate::s3sync::SyncError::MissingBucket { bucket: "b".into() }),
        }
        .into();
        assert_eq!(missing.exit_code(), EXIT_BAD_INPUT);
        let differ: AppError = S3CmdError::Verification {
            source_path: "s3://a/".into(),
            target_path: "s3://b/".into(),
            count: 3,
        }
        .into();
        assert_eq!(differ.exit_code(), EXIT_FAILED);
        let interrupted: AppError = S3CmdError::Interrupted.into();
        assert_eq!(interrupted.exit_code(), EXIT_FAILED);
    }

    /// Issue 12 (the lock → run → release sequence exists once): `locked` holds the lock while
    /// its body runs, excludes a second run meanwhile (whose body never runs), releases it
    /// whatever the body returned, and takes none for a dry run.
    #[tokio::test]
    async fn locked_holds_the_lock_for_the_body_and_releases_it_whatever_it_returned() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root {
            printer: Printer::new(crate::cli::Output::Json),
            region: None,
            profile: None,
            state_dir: dir.path().to_path_buf(),
            state: None,
            config: None,
            clock: Arc::new(SystemClock),
        };
        let shared = Shared {
            runs: Arc::new(FileRunStore::new(dir.path())),
            locks: Arc::new(FileLocks {
                dir: dir.path().to_path_buf(),
            }),
            s3: None,
            clock: Arc::new(SystemClock),
        };
        let holders = async || -> Vec<(String, String)> {
            crate::lock::holdings(&*shared.locks)
                .await
                .unwrap()
                .into_iter()
                .map(|h| (h.env, h.owner.run_id))
                .collect()
        };
        let mut second_ran = false;
        let failed: Result<(), AppError> = locked(
            &root,
            &shared,
            Some(LockKey::of("prod", "run-1", "clone")),
            async |lease| {
                assert!(lease.0.is_some());
                assert_eq!(holders().await, [("prod".to_string(), "run-1".to_string())]);
                let second = locked(
                    &root,
                    &shared,
                    Some(LockKey::of("prod", "run-2", "clone")),
                    async |_| {
                        second_ran = true;
                    },
                )
                .await;
                assert!(
                    matches!(&second, Err(AppError::Refused(m)) if m.contains("run-1")),
                    "{second:?}"
                );
                Err(AppError::Failed("the run failed".into()))
            },
        )
        .await
        .unwrap();
        assert!(matches!(failed, Err(AppError::Failed(_))));
        assert!(!second_ran, "a refused run's body must not run");
        assert_eq!(holders().await, [], "released after a failed body");

        locked(
            &root,
            &shared,
            Some(LockKey::of("prod", "run-2", "clone")),
            async |_| (),
        )
        .await
        .unwrap();
        assert_eq!(holders().await, [], "released after a body that succeeded");

        locked(&root, &shared, None, async |lease| {
            assert!(lease.0.is_none());
            assert_eq!(holders().await, [], "a dry run takes no lock");
        })
        .await
        .unwrap();
    }
}
