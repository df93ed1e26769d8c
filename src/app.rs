//! The composition root: turns a parsed command line into a typed request, connects the AWS
//! adapters, runs the workflow, prints what happened, and maps the outcome to an exit code.

use std::future::Future;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use thiserror::Error;

use crate::cli::{Cli, CloneCommand, Command, InputError, Output, PlanCommand, StandbyState};
use crate::events::{Emitter, Event, EventSink, Fanout, Phase};
use crate::journal::{default_state_dir, FileJournal};
use crate::model::RunId;
use crate::ports::Cloud;
use crate::s3sync::SyncOptions;
use crate::workflow::clone::{CheckResult, CloneEngine, CloneFailure, CloneReport, Settings};
use crate::workflow::ops::VerifyError;
use crate::workflow::{PreflightError, StepError};

/// Exit codes (README): 0 success, 1 failure after changes were rolled back or left safe,
/// 2 bad input or refused before any change.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;

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
}

impl AppError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Input(_)
            | AppError::Connect(_)
            | AppError::Preflight(_)
            | AppError::Refused(_) => EXIT_BAD_INPUT,
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
        command,
    } = cli;
    let state_dir = state_dir.unwrap_or_else(default_state_dir);
    match command {
        Command::Clone(args) => {
            let command = args.into_command()?;
            let cloud = crate::aws::connect(region, profile).await?;
            clone(cloud, command, output, &state_dir, shutdown).await
        }
        Command::Plan(PlanCommand::Clone(args)) => {
            let mut command = args.into_command()?;
            command.dry_run = true;
            let cloud = crate::aws::connect(region, profile).await?;
            clone(cloud, command, output, &state_dir, shutdown).await
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
        Command::Standby { env, state, yes } => {
            let cloud = crate::aws::connect(region, profile).await?;
            let engine = CloneEngine {
                cloud,
                settings: Settings::default(),
            };
            let source = engine.resolve(&env).await?;
            let groups = crate::workflow::ops::scaling_groups(&source);
            if state == StandbyState::On {
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
            match state {
                StandbyState::On => {
                    if let Err(e) = engine.standby_on(&source, &emitter).await {
                        // Standby part-way is worse than either state: undo it.
                        let _ = engine.standby_off(&source, &emitter).await;
                        return Err(e.into());
                    }
                }
                StandbyState::Off => engine.standby_off(&source, &emitter).await?,
            }
            Ok(())
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
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    let engine = CloneEngine {
        cloud,
        settings: Settings {
            sync: SyncOptions {
                concurrency: command.concurrency,
                multipart_threshold: command.multipart_threshold,
                ..SyncOptions::default()
            },
            ..Settings::default()
        },
    };
    let run_id = new_run_id();
    let plan = engine.preflight(&command.request, run_id.clone()).await?;
    let steps = plan.steps();
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({"type": "plan", "run_id": run_id, "plan": &plan,
                "parameters": plan.display_parameters(), "steps": steps})
        ),
        Output::Text => {
            let out = std::io::stdout();
            let mut out = out.lock();
            let _ = writeln!(
                out,
                "Plan {run_id}: clone {} → {}",
                plan.source_env, plan.target_env
            );
            for (i, s) in steps.iter().enumerate() {
                let _ = writeln!(out, "  {}. {s}", i + 1);
            }
        }
    }
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

    let journal = FileJournal::create(state_dir, run_id.as_str()).map_err(|e| {
        AppError::Refused(format!(
            "cannot write the run journal under {}: {e}; pass a writable --state-dir",
            state_dir.display()
        ))
    })?;
    let journal_path = journal.path().to_path_buf();
    let emitter = Emitter {
        run_id: run_id.to_string(),
        sink: Arc::new(Fanout(vec![Arc::new(Console(output)), Arc::new(journal)])),
    };
    emitter.info(
        "run",
        None,
        format!("run {run_id}: journal {}", journal_path.display()),
    );
    match engine.execute(&plan, &emitter, shutdown).await {
        Ok(report) => {
            print_report(output, &report);
            Ok(())
        }
        Err(failure) => {
            print_failure(output, &failure);
            Err(AppError::Failed(format!(
                "clone {} → {} failed: {}",
                plan.source_env, plan.target_env, failure.error
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
                println!("  snapshot:  {s}");
            }
            for b in &report.buckets {
                println!(
                    "  bucket:    {} → {} ({} objects copied, {} bytes)",
                    b.source, b.target, b.stats.copied, b.stats.copied_bytes
                );
            }
            print_checks(output, "Verification", &report.verification);
            println!("  source {}: back in service", report.source);
        }
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
                    failure.left_behind.join(", ")
                );
            }
            if !failure.verification.is_empty() {
                print_checks(Output::Text, "Verification", &failure.verification);
            }
        }
    }
}
