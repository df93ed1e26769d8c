//! Everything envclone prints, in one place: the events of a run, plans, reports, failures,
//! listings, the `s3` commands' progress and results, warnings and the confirmation prompt —
//! each as text for people or, with `--output json`, as the JSON lines README documents
//! (`{"type":"plan"}`, `{"type":"event"}`, `{"type":"report"}`, `{"type":"failure"}`,
//! `{"type":"error"}`, …). The commands in `app` decide what to say and when; this module only
//! says it.

use crate::workflow::resource::{self, ResourceRef};
use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::Output;
use crate::events::{Event, EventSink, Phase};
use crate::lock::{Holding, Liveness};
use crate::model::RunId;
use crate::s3cmd::{DiffBench, SyncRequest};
use crate::s3sync::{Planned, SyncProgress, SyncStats, VerifyReport};
use crate::workflow::clone::{CheckResult, CloneFailure, CloneReport};
use crate::workflow::experiments::{Environment, StagingLeftover};
use crate::workflow::migrate::{MigratePhase, MigrationState};
use crate::workflow::plan::ClonePlan;

/// Prints for one `--output` mode. Cheap to copy: the event sink of a run is one too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Printer {
    output: Output,
}

/// One recorded run, as `envclone status` lists it.
#[derive(Debug, Clone)]
pub struct RunStatus {
    pub run_id: String,
    pub command: String,
    pub source: String,
    pub target: String,
    pub state: String,
    pub started_at: String,
    pub steps: Vec<serde_json::Value>,
}

/// Events as they happen: plain lines on stderr, or JSON lines on stdout.
impl EventSink for Printer {
    fn emit(&self, e: &Event) {
        match self.output {
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

impl Printer {
    pub fn new(output: Output) -> Printer {
        Printer { output }
    }

    fn text(&self) -> bool {
        self.output == Output::Text
    }

    // ------------------------------------------------------------ diagnostics and prompts

    /// The error a command ended with, and (text) that nothing was changed when it was
    /// refused before any change.
    pub fn error(&self, exit_code: u8, message: &str, nothing_changed: bool) {
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::json!({"type": "error", "exit_code": exit_code, "message": message})
            ),
            Output::Text => eprintln!("envclone: error: {message}"),
        }
        if nothing_changed && self.text() {
            eprintln!("envclone: nothing was changed");
        }
    }

    /// A warning on stderr, whatever the output mode.
    pub fn warning(&self, message: impl std::fmt::Display) {
        eprintln!("envclone: warning: {message}");
    }

    /// A bad value of an environment variable, and the value used instead.
    pub fn bad_setting(&self, message: impl std::fmt::Display) {
        eprintln!("warning: {message}");
    }

    /// The note `iam-policy` adds on stderr.
    pub fn note(&self, message: impl std::fmt::Display) {
        eprintln!("note: {message}");
    }

    /// Asks the user to type `expected` on a terminal; refuses without a terminal unless
    /// `yes`. The refusal says why.
    pub fn confirm(&self, yes: bool, what: &str, expected: &str) -> Result<(), String> {
        if yes {
            return Ok(());
        }
        if !std::io::stdin().is_terminal() {
            return Err(format!(
                "{what} Confirmation is needed and there is no terminal to ask on; pass --yes to \
                 run it unattended"
            ));
        }
        eprint!("{what}\nType the environment's name ({expected}) to continue: ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| format!("could not read the confirmation: {e}"))?;
        if answer.trim() == expected {
            Ok(())
        } else {
            Err(format!(
                "not confirmed (expected {expected:?}, got {:?})",
                answer.trim()
            ))
        }
    }

    /// Said (text) when a dry run or a listing changed nothing.
    pub fn dry_run(&self) {
        if self.text() {
            println!("Dry run: nothing was changed.");
        }
    }

    // ------------------------------------------------------------ clone and migrate

    pub fn plan(&self, run_id: &RunId, title: &str, plan: &ClonePlan, steps: &[String]) {
        match self.output {
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

    pub fn checks(&self, title: &str, checks: &[CheckResult]) {
        match self.output {
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

    pub fn report(&self, report: &CloneReport) {
        match self.output {
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
                if let Some(w) = &report.window {
                    let secs = |t: &chrono::DateTime<chrono::Utc>| {
                        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    };
                    println!("  as of:     T = {}", secs(&w.t));
                    println!(
                        "  window:    Standby {} → {}{}",
                        secs(&w.entered),
                        w.exited
                            .as_ref()
                            .map_or_else(|| "still in Standby".into(), secs),
                        w.seconds
                            .map_or_else(String::new, |s| format!(" ({s:.1} s out of service)"))
                    );
                    for i in &w.inside {
                        println!("    inside:  {i}");
                    }
                    for i in &w.whole {
                        println!("    held by: {i}");
                    }
                    for i in &w.outside {
                        println!("    not in it: {i}");
                    }
                }
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
                            Some(p) if b.as_of.is_some() => format!(
                                "; {} before Standby, {} as of T after it",
                                p.copied, b.stats.copied
                            ),
                            Some(p) =>
                                format!("; {} before Standby, {} during", p.copied, b.stats.copied),
                            None if b.as_of.is_some() => "; as of T, after Standby".to_string(),
                            None => String::new(),
                        }
                    );
                    skipped_archived(&b.source, &b.target, &b.stats);
                }
                for c in &report.copies {
                    println!("  {}: {} → {} ({})", c.kind, c.source, c.target, c.detail);
                }
                for line in report.inventory.created_empty() {
                    println!("  {line}");
                }
                self.checks("Verification", &report.verification);
                println!("  source {}: back in service", report.source);
            }
        }
    }

    pub fn failure(&self, failure: &CloneFailure) {
        let restored = match &failure.source_restored {
            Ok(()) => "back in service".to_string(),
            Err(e) => format!("NOT fully back in service: {e}"),
        };
        match self.output {
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
                    self.checks("Verification", &failure.verification);
                }
            }
        }
    }

    pub fn migration(&self, state: &MigrationState) {
        match self.output {
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
                let swaps = state.swaps();
                for kind in crate::workflow::resources::KINDS {
                    for line in kind.swap_status(&swaps) {
                        println!("  {line}");
                    }
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

    // ------------------------------------------------------------ runs, locks, environments

    /// `abort` of a clone run.
    pub fn aborted(&self, run: &str, env: &str, removed: &[ResourceRef]) {
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::json!({"type": "aborted", "run_id": run, "removed": removed})
            ),
            Output::Text => println!(
                "Run {run} aborted: {} is in service; removed: {}",
                env,
                if removed.is_empty() {
                    "nothing".to_string()
                } else {
                    resource::join(removed, ", ")
                }
            ),
        }
    }

    /// `abort` of a run that left a lock and no record.
    pub fn aborted_unrecorded(&self, run: &str, holding: &Holding) {
        match self.output {
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
    }

    /// One recorded run of `envclone status`.
    pub fn run_status(&self, r: &RunStatus) {
        let RunStatus {
            run_id: run,
            command,
            source,
            target,
            state: phase,
            started_at,
            steps,
        } = r;
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::json!({"run_id": run, "command": command, "source": source,
                    "target": target, "state": phase, "started_at": started_at,
                    "steps": steps})
            ),
            Output::Text => println!(
                "{run}  {:<8} {} → {}  {phase}  (started {}, {} events)",
                command,
                source,
                target,
                started_at,
                steps.len()
            ),
        }
    }

    /// One lock of `envclone status`; `recorded`: its run has a record.
    pub fn lock_status(&self, h: &Holding, recorded: bool) {
        let state = match (&h.process, h.dead()) {
            (Liveness::Gone(_), _) => "dead",
            (_, true) => "stale",
            (Liveness::Alive, _) => "running",
            (Liveness::Unknown(_), _) => "unknown",
        };
        match self.output {
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

    pub fn environments(&self, envs: &[Environment], now: chrono::DateTime<chrono::Utc>) {
        for e in envs {
            match self.output {
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

    /// A template a dead run left staged in S3 (`gc`).
    pub fn staging_leftover(&self, l: &StagingLeftover) {
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::json!({"type": "staging_leftover", "leftover": l})
            ),
            Output::Text => println!("leftover {l}"),
        }
    }

    /// `gc` found nothing to do.
    pub fn nothing_expired(&self) {
        if self.text() {
            println!("No expired environment.");
        }
    }

    /// `gc` removed a staged template.
    pub fn removed_leftover(&self, l: &StagingLeftover) {
        if self.text() {
            println!("Removed {l}");
        }
    }

    /// What `destroy` (or `gc`, for one environment) removed and could not remove.
    pub fn destroyed(&self, name: &str, removed: &[ResourceRef], left: &[ResourceRef]) {
        match self.output {
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
    }

    /// `iam-policy`: the policy document, pretty-printed.
    pub fn iam_policy(&self, policy: &serde_json::Value) {
        println!(
            "{}",
            serde_json::to_string_pretty(policy).expect("policy serializes")
        );
    }

    /// `completions`: the script as generated.
    pub fn completions(&self, script: &str) {
        print!("{script}");
    }

    // ------------------------------------------------------------ s3

    /// How progress of an `s3 sync` is shown: JSON lines, nothing for a dry run (its listing
    /// is the output), a bar on a terminal, plain lines otherwise.
    pub fn display(&self, dry_run: bool) -> Display {
        if self.output == Output::Json {
            Display::Json
        } else if dry_run {
            Display::Off
        } else if std::io::stderr().is_terminal() {
            Display::Bar
        } else {
            Display::Lines
        }
    }

    /// One copy or delete a dry run would make.
    pub fn planned(&self, request: &SyncRequest, p: Planned<'_>) {
        let (src, dst) = (&request.source, &request.target);
        let out = std::io::stdout();
        let mut out = out.lock();
        let _ = match (self.output, p) {
            (
                Output::Text,
                Planned::Copy {
                    source_key,
                    target_key,
                    size,
                    ..
                },
            ) => writeln!(
                out,
                "would copy   s3://{}/{source_key} → s3://{}/{target_key} ({size} bytes)",
                src.bucket, dst.bucket
            ),
            (Output::Text, Planned::Delete { target_key }) => {
                writeln!(out, "would delete s3://{}/{target_key}", dst.bucket)
            }
            (
                Output::Json,
                Planned::Copy {
                    source_key,
                    target_key,
                    size,
                    ..
                },
            ) => writeln!(
                out,
                "{}",
                serde_json::json!({"type": "planned", "action": "copy", "source": format!("s3://{}/{source_key}", src.bucket),
                    "target": format!("s3://{}/{target_key}", dst.bucket), "size": size})
            ),
            (Output::Json, Planned::Delete { target_key }) => writeln!(
                out,
                "{}",
                serde_json::json!({"type": "planned", "action": "delete",
                    "target": format!("s3://{}/{target_key}", dst.bucket)})
            ),
        };
    }

    pub fn sync_report(&self, request: &SyncRequest, stats: &SyncStats, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::json!({"type": "report", "source": request.source.to_string(),
                    "target": request.target.to_string(), "dry_run": request.options.dry_run,
                    "seconds": seconds, "stats": stats})
            ),
            Output::Text => {
                let (copied, deleted) = if request.options.dry_run {
                    ("would copy", "would delete")
                } else {
                    ("copied", "deleted")
                };
                println!(
                    "{} → {}: {} listed, {copied} {} ({}, {} in parts), {} unchanged{}, {deleted} {}{} in {seconds:.1} s",
                    request.source,
                    request.target,
                    stats.listed,
                    stats.copied,
                    indicatif::HumanBytes(stats.copied_bytes),
                    stats.multipart_copies,
                    stats.unchanged,
                    if stats.unchanged_by_checksum > 0 {
                        format!(" ({} by checksum)", stats.unchanged_by_checksum)
                    } else {
                        String::new()
                    },
                    stats.deleted,
                    if !request.options.delete && stats.extra > 0 {
                        format!(" ({} only in the target: --delete removes them)", stats.extra)
                    } else {
                        String::new()
                    },
                );
                if stats.copied_without_checksum > 0 {
                    println!(
                        "{} object(s) were copied again although perhaps unchanged: their ETags are \
                         no MD5s (SSE-KMS, multipart) and the source has no checksum to compare. \
                         Copying them in place with a checksum (aws s3api copy-object \
                         --checksum-algorithm CRC64NVME) lets later syncs compare them.",
                        stats.copied_without_checksum
                    );
                }
                if request.options.dry_run {
                    println!("Dry run: nothing was changed.");
                }
            }
        }
    }

    /// `s3 sync --verify`: what was compared, how, and what differs.
    pub fn sync_verification(&self, report: &VerifyReport) {
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::json!({"type": "verification", "report": report})
            ),
            Output::Text => {
                println!(
                    "Verified {} object(s): {}{}",
                    report.compared,
                    if report.is_equal() {
                        "equal".to_string()
                    } else {
                        format!("{} differ", report.mismatches.len())
                    },
                    match (report.compared_by_checksum, report.compared_by_content) {
                        (0, 0) => String::new(),
                        (checksum, 0) => format!(
                            " ({checksum} by checksum: their ETags are no MD5s — SSE-KMS, or \
                             multipart)"
                        ),
                        (0, content) => format!(
                            " ({content} by content: their ETags could not be compared and they \
                             have no checksums to compare)"
                        ),
                        (checksum, content) => format!(
                            " ({checksum} by checksum; {content} by content: no checksum on both \
                             sides to compare)"
                        ),
                    }
                );
                for m in &report.mismatches {
                    println!("  {}: {}", m.key, m.problem);
                }
            }
        }
    }

    /// `s3 sync --engine batch --dry-run`: the manifest and the CreateJob request.
    pub fn batch_job(&self, job: &serde_json::Value) {
        println!(
            "{}",
            serde_json::to_string_pretty(job).expect("job serializes")
        );
    }

    /// How `s3 sync --engine batch` shows its steps: JSON lines on stdout (`--output json`,
    /// unchanged), else on stderr a bar of the job's tasks on a terminal (a spinner until
    /// Preparing has counted them), a line per change elsewhere (logs, CI).
    pub fn batch_display(&self) -> BatchDisplay {
        let display = self.display(false);
        BatchDisplay { display, bar: None }
    }
}

/// The display of `s3 sync --engine batch` (`Printer::batch_display`): each event told as it
/// comes; the job's progress drawn on a bar in a terminal.
pub struct BatchDisplay {
    display: Display,
    bar: Option<indicatif::ProgressBar>,
}

impl BatchDisplay {
    pub fn event(&mut self, event: &crate::s3batch::BatchEvent) {
        use crate::s3batch::BatchEvent;
        let line = match (self.display, event) {
            (Display::Json, _) => {
                println!("{}", serde_json::json!({"type": "batch", "event": event}));
                return;
            }
            (Display::Bar, BatchEvent::Progress { .. }) => {
                self.draw(event);
                return;
            }
            (
                _,
                BatchEvent::Progress {
                    job_id,
                    status,
                    total,
                    succeeded,
                    failed,
                },
            ) => format!(
                "batch job {job_id}: {status}, {succeeded} copied, {failed} failed of {}",
                total.map_or("?".to_string(), |t| t.to_string())
            ),
            (_, other) => format!(
                "batch: {}",
                serde_json::to_string(other).expect("events serialize")
            ),
        };
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// The job's progress on the bar: its tasks done (succeeded and failed) of those
    /// Preparing counted; finished once the job has ended.
    fn draw(&mut self, event: &crate::s3batch::BatchEvent) {
        let crate::s3batch::BatchEvent::Progress {
            job_id,
            status,
            total,
            succeeded,
            failed,
        } = event
        else {
            return;
        };
        let bar = self.bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr_with_hz(10),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} batch job {msg} · {elapsed}")
                    .expect("the batch spinner template parses"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        if let (Some(total), None) = (total, bar.length()) {
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} tasks · batch job {msg} · {elapsed}, ETA {eta}",
                )
                .expect("the batch bar template parses"),
            );
            bar.set_length((*total).max(1));
        }
        bar.set_position(succeeded + failed);
        bar.set_message(format!(
            "{job_id} {status}: {succeeded} copied, {failed} failed"
        ));
        if status.is_terminal() {
            bar.finish();
            self.bar = None;
        }
    }

    /// Ends the display (the bar of a job still running, when the sync stops).
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}

impl Printer {
    /// The end of `s3 sync --engine batch`.
    pub fn batch_outcome(&self, outcome: &crate::s3batch::BatchOutcome) {
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::json!({"type": "batch-report", "report": outcome})
            ),
            Output::Text => {
                println!(
                    "batch job {}: {} task(s), {} copied, {} failed; local engine: {} copied \
                     ({} failed task(s), {} over the copy limit)",
                    outcome.job_id.as_deref().unwrap_or("(none needed)"),
                    outcome.tasks,
                    outcome.job_succeeded,
                    outcome.job_failed,
                    outcome.local.copied,
                    outcome.failed_keys.len(),
                    outcome.over_limit.len()
                );
                self.sync_verification(&outcome.verification);
            }
        }
    }

    /// `s3 diff-bench`.
    pub fn diff_bench(&self, bench: &DiffBench) {
        let DiffBench {
            objects,
            seconds,
            peak_rss_bytes: peak,
            stats,
        } = bench;
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::json!({"type": "diff-bench", "objects": objects, "seconds": seconds,
                    "peak_rss_bytes": peak, "stats": stats})
            ),
            Output::Text => println!(
                "diff of two listings of {objects} objects: {} to copy, {} to delete, {} unchanged; \
                 {seconds:.1} s, peak RSS {}",
                stats.copied,
                stats.deleted,
                stats.unchanged,
                peak.map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
                    .unwrap_or_else(|| "unknown".into())
            ),
        }
    }

    /// Starts showing the progress of a sync from its counters, on a clock of its own.
    pub fn progress(
        &self,
        display: Display,
        progress: Arc<SyncProgress>,
        started: Instant,
    ) -> Reporter {
        Reporter::start(display, progress, started)
    }
}

/// The archived objects a copy left out (--skip-archived), for the text report. The JSON
/// report carries them in each bucket's stats.
fn skipped_archived(source: &str, target: &str, stats: &crate::s3sync::SyncStats) {
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

/// How progress is shown while a sync runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// A redrawn bar on stderr (a terminal).
    Bar,
    /// A plain line on stderr every few seconds (logs, CI).
    Lines,
    /// A `{"type":"progress"}` line on stdout every second.
    Json,
    Off,
}

/// The progress display: a task reading the counters on its own clock.
pub struct Reporter {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Reporter {
    fn start(display: Display, progress: Arc<SyncProgress>, started: Instant) -> Reporter {
        let every = match display {
            Display::Off => {
                return Reporter {
                    stop: None,
                    task: None,
                }
            }
            Display::Bar => Duration::from_millis(100),
            Display::Lines => Duration::from_secs(5),
            Display::Json => Duration::from_secs(1),
        };
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let bar = (display == Display::Bar).then(new_bar);
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                let last = tokio::select! {
                    _ = ticks.tick() => false,
                    _ = &mut rx => true,
                };
                let snap = Snapshot::read(&progress, started.elapsed());
                match (&bar, display) {
                    (Some(bar), _) => snap.draw(bar),
                    (None, Display::Lines) if !last => eprintln!("envclone: {}", snap.line()),
                    (None, Display::Json) => println!("{}", snap.json()),
                    _ => {}
                }
                if last {
                    if let Some(bar) = &bar {
                        bar.finish_and_clear();
                    }
                    return;
                }
            }
        });
        Reporter {
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

fn new_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        None,
        indicatif::ProgressDrawTarget::stderr_with_hz(10),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} listing… {msg}")
            .expect("the listing template parses"),
    );
    bar
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    elapsed: Duration,
    source_listed: u64,
    target_listed: u64,
    listing_done: bool,
    to_copy: u64,
    to_copy_bytes: u64,
    to_delete: u64,
    unchanged: u64,
    copied: u64,
    copied_bytes: u64,
    deleted: u64,
}

impl Snapshot {
    fn read(p: &SyncProgress, elapsed: Duration) -> Snapshot {
        Snapshot {
            elapsed,
            // Read `listing_done` first: the totals read after it are final.
            listing_done: p.listing_done.load(Relaxed),
            source_listed: p.source_listed.load(Relaxed),
            target_listed: p.target_listed.load(Relaxed),
            to_copy: p.to_copy.load(Relaxed),
            to_copy_bytes: p.to_copy_bytes.load(Relaxed),
            to_delete: p.to_delete.load(Relaxed),
            unchanged: p.unchanged.load(Relaxed),
            copied: p.copied.load(Relaxed),
            copied_bytes: p.copied_bytes.load(Relaxed),
            deleted: p.deleted.load(Relaxed),
        }
    }

    fn rate(&self) -> (f64, f64) {
        let s = self.elapsed.as_secs_f64().max(0.001);
        (self.copied as f64 / s, self.copied_bytes as f64 / s)
    }

    /// Seconds left, from the rate so far (objects and bytes, whichever is further behind).
    fn eta(&self) -> Option<u64> {
        if !self.listing_done || self.copied == 0 {
            return None;
        }
        let s = self.elapsed.as_secs_f64();
        let by_objects = s * (self.to_copy.saturating_sub(self.copied)) as f64 / self.copied as f64;
        let by_bytes = if self.copied_bytes > 0 {
            s * (self.to_copy_bytes.saturating_sub(self.copied_bytes)) as f64
                / self.copied_bytes as f64
        } else {
            0.0
        };
        Some(by_objects.max(by_bytes).round() as u64)
    }

    fn line(&self) -> String {
        let (objects_per_s, bytes_per_s) = self.rate();
        let listing = if self.listing_done {
            format!("listed {} source objects", self.source_listed)
        } else {
            format!(
                "listing ({} source, {} target objects so far)",
                self.source_listed, self.target_listed
            )
        };
        let of = if self.listing_done {
            format!(
                " of {} ({})",
                self.to_copy,
                indicatif::HumanBytes(self.to_copy_bytes)
            )
        } else {
            String::new()
        };
        let eta = self
            .eta()
            .map(|s| {
                format!(
                    ", ETA {}",
                    humantime::format_duration(Duration::from_secs(s))
                )
            })
            .unwrap_or_default();
        format!(
            "{listing}; copied {}{of} objects, {}; {} unchanged; {} deleted; {:.0} objects/s, {}/s{eta}",
            self.copied,
            indicatif::HumanBytes(self.copied_bytes),
            self.unchanged,
            self.deleted,
            objects_per_s,
            indicatif::HumanBytes(bytes_per_s as u64),
        )
    }

    fn json(&self) -> serde_json::Value {
        let (objects_per_s, bytes_per_s) = self.rate();
        serde_json::json!({"type": "progress", "elapsed_s": self.elapsed.as_secs_f64(),
            "source_listed": self.source_listed, "target_listed": self.target_listed,
            "listing_done": self.listing_done, "to_copy": self.to_copy,
            "to_copy_bytes": self.to_copy_bytes, "to_delete": self.to_delete,
            "unchanged": self.unchanged, "copied": self.copied, "copied_bytes": self.copied_bytes,
            "deleted": self.deleted, "objects_per_s": objects_per_s, "bytes_per_s": bytes_per_s,
            "eta_s": self.eta()})
    }

    fn draw(&self, bar: &indicatif::ProgressBar) {
        let (objects_per_s, bytes_per_s) = self.rate();
        let rate = format!(
            "{:.0} obj/s, {}/s",
            objects_per_s,
            indicatif::HumanBytes(bytes_per_s as u64)
        );
        if !self.listing_done {
            bar.set_message(format!(
                "{} source / {} target objects · copied {} ({}) · {rate}",
                self.source_listed,
                self.target_listed,
                self.copied,
                indicatif::HumanBytes(self.copied_bytes),
            ));
            bar.tick();
            return;
        }
        if bar.length().is_none() {
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} objects · {msg}")
                    .expect("the copy template parses"),
            );
        }
        bar.set_length(self.to_copy.max(1));
        bar.set_position(self.copied);
        let eta = self
            .eta()
            .map(|s| {
                format!(
                    " · ETA {}",
                    humantime::format_duration(Duration::from_secs(s))
                )
            })
            .unwrap_or_default();
        bar.set_message(format!(
            "{}/{} · {rate}{eta}{}",
            indicatif::HumanBytes(self.copied_bytes),
            indicatif::HumanBytes(self.to_copy_bytes),
            if self.to_delete > 0 {
                format!(" · deleted {}/{}", self.deleted, self.to_delete)
            } else {
                String::new()
            }
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14 item 4: the job's wait is a bar of its tasks in a terminal (a spinner before
    /// Preparing has counted them), ended with the job; before, a line per change.
    #[test]
    fn a_batch_jobs_progress_is_a_bar_of_its_tasks_until_it_ends() {
        use crate::ports::batch::JobStatus;
        use crate::s3batch::BatchEvent;
        let mut d = BatchDisplay {
            display: Display::Bar,
            bar: None,
        };
        let progress = |status, total, succeeded| BatchEvent::Progress {
            job_id: "j1".into(),
            status,
            total,
            succeeded,
            failed: 1,
        };
        d.event(&progress(JobStatus::Preparing, None, 0));
        assert_eq!(d.bar.as_ref().expect("a spinner").length(), None);
        d.event(&progress(JobStatus::Active, Some(100), 41));
        let bar = d.bar.as_ref().expect("a bar");
        assert_eq!((bar.length(), bar.position()), (Some(100), 42));
        assert_eq!(bar.message(), "j1 Active: 41 copied, 1 failed");
        d.event(&progress(JobStatus::Complete, Some(100), 99));
        assert!(d.bar.is_none(), "finished with the job");
    }

    #[test]
    fn eta_waits_for_the_totals() {
        let mut s = Snapshot {
            elapsed: Duration::from_secs(10),
            source_listed: 500,
            target_listed: 0,
            listing_done: false,
            to_copy: 500,
            to_copy_bytes: 5000,
            to_delete: 0,
            unchanged: 0,
            copied: 100,
            copied_bytes: 1000,
            deleted: 0,
        };
        assert_eq!(s.eta(), None);
        assert!(s
            .line()
            .contains("listing (500 source, 0 target objects so far)"));
        s.listing_done = true;
        assert_eq!(s.eta(), Some(40));
        assert!(s.line().contains("copied 100 of 500"), "{}", s.line());
        assert_eq!(s.json()["eta_s"], 40);
    }
}
