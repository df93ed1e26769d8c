//! The command line: clap's raw flags (`Cli`) and the validated, typed requests the rest of the
//! program works with (`Request`). Turning one into the other checks everything that can be
//! checked without AWS; a failure there is bad input (exit code 2).

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use thiserror::Error;

use crate::model::{EnvName, NameError};
use crate::s3cmd::SyncRequest;
use crate::s3sync::BucketPath;
use crate::workflow::plan::CloneRequest;

#[derive(Debug, Parser)]
#[command(
    name = "envclone",
    version,
    about = "Clone and migrate AWS environments defined as CloudFormation stacks"
)]
pub struct Cli {
    /// AWS region (else AWS_REGION or the profile's region).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// AWS profile of the shared config files (credentials come only from the standard chain).
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// `text` for people, `json` for one JSON event per line.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Where run journals are kept (default: $XDG_STATE_HOME/envclone or ~/.local/state/envclone).
    #[arg(long, global = true)]
    pub state_dir: Option<PathBuf>,
    /// Keep run records and environment locks in S3 (s3://BUCKET/PREFIX), so that runs can be
    /// inspected, resumed or aborted from another machine and locks hold across machines.
    #[arg(long = "state", global = true, value_name = "S3_URL")]
    pub state_url: Option<String>,
    /// Per-environment hooks and contracts the templates do not carry (default: ./envclone.toml
    /// when it exists). See README.md.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Clone environment SRC as DST: Standby, snapshots and bucket copies in parallel, the clone
    /// stack, verification, and SRC back in service.
    Clone(CloneArgs),
    /// Move ENV onto a new template version: clone onto it, verify, swap (database identifiers
    /// and the entry DNS record). The old environment is deleted only with --finalize or a later
    /// `envclone finalize RUN`.
    Migrate(MigrateArgs),
    /// Finalize a swapped migration: the point of no return (deletes the old environment, keeps
    /// a final snapshot of its database).
    Finalize {
        run: String,
        /// Do not ask for confirmation (for automation).
        #[arg(long)]
        yes: bool,
    },
    /// Undo a run: the source back in service; a clone's stack, buckets and snapshots removed
    /// (unless --keep); a migration not yet finalized swapped back (one that never swapped has
    /// what it created removed, unless --keep).
    Abort {
        run: String,
        /// Do not ask for confirmation (for automation).
        #[arg(long)]
        yes: bool,
        /// Return the source to service but keep what the run created (a clone, or a
        /// migration that never swapped).
        #[arg(long)]
        keep: bool,
    },
    /// Finish an interrupted clone run where it stopped (same names; done steps are reused).
    Resume {
        run: String,
        /// Do not ask for confirmation (for automation).
        #[arg(long)]
        yes: bool,
    },
    /// Runs recorded in the state directory, with their state and steps.
    Status { run: Option<String> },
    /// Every environment envclone created (from AWS tags): name, source, owner, age, expiry.
    List,
    /// Print the least-privilege IAM policy for the API calls envclone makes.
    IamPolicy {
        #[arg(value_enum, default_value_t = crate::iam::Scope::All)]
        scope: crate::iam::Scope,
    },
    /// Delete an environment envclone created (never a protected one): its stack, the buckets
    /// the clone created, its snapshots.
    Destroy {
        env: String,
        /// Do not ask for confirmation (for automation).
        #[arg(long)]
        yes: bool,
    },
    /// Destroy every experiment environment whose --ttl has passed, and remove templates that
    /// runs which died staged in S3 (over an hour old).
    Gc {
        /// Only list what would be destroyed.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation (for automation).
        #[arg(long)]
        yes: bool,
    },
    /// Show what a command would do, in order, with the real names; change nothing.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Check an environment against its source: stack, databases, buckets object for object,
    /// instances, the template's HTTP checks.
    Verify {
        env: String,
        /// The environment to compare with (default: the one ENV was cloned from).
        #[arg(long)]
        against: Option<String>,
    },
    /// Bucket operations on their own: `envclone s3 sync s3://SRC[/prefix] s3://DST[/prefix]`.
    #[command(subcommand)]
    S3(S3Command),
    /// Put an environment's instances into Standby (`on`) or back in service (`off`).
    Standby {
        env: String,
        state: StandbyState,
        /// Do not ask for confirmation (for automation).
        #[arg(long)]
        yes: bool,
    },
    /// Print the shell completion script (e.g. `envclone completions bash >
    /// ~/.local/share/bash-completion/completions/envclone`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The completion script of `envclone` for `shell`, generated from the command line's own
/// definition (every subcommand and flag).
pub fn completions(shell: clap_complete::Shell) -> String {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "envclone", &mut script);
    String::from_utf8_lossy(&script).into_owned()
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// The plan of `envclone clone SRC DST ...`.
    Clone(CloneArgs),
    /// The plan of `envclone migrate ENV ...`.
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The environment to migrate (stack name or envclone:environment tag).
    pub env: String,
    /// The new version of the environment's template.
    #[arg(long)]
    pub template: PathBuf,
    /// Override a parameter of the new stack (repeatable).
    #[arg(long = "parameter", value_name = "K=V")]
    pub parameters: Vec<String>,
    /// Finalize right after a successful swap (deletes the old environment).
    #[arg(long)]
    pub finalize: bool,
    /// The migration window, HH:MM-HH:MM (may span midnight), in --tz's wall-clock time: refused
    /// outside it, and stopped safely before the swap if the swap would start too late.
    #[arg(long, value_name = "HH:MM-HH:MM")]
    pub window: Option<String>,
    /// The time zone of --window, an IANA name such as Europe/Paris (default UTC). Daylight
    /// saving is followed: 02:00-04:00 Europe/Paris is 01:00-03:00 UTC in winter, 00:00-02:00
    /// in summer.
    #[arg(long, value_name = "ZONE", requires = "window")]
    pub tz: Option<String>,
    /// The latest time the swap may start (RFC 3339, e.g. 2026-11-22T04:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub deadline: Option<String>,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (for automation).
    #[arg(long)]
    pub yes: bool,
    /// Take over the environment's lock from a run whose heartbeat stopped (it died).
    #[arg(long)]
    pub break_lock: bool,
    /// Objects larger than this many bytes are copied in parallel parts.
    #[arg(long, default_value_t = crate::s3sync::AWS_COPY_LIMIT)]
    pub multipart_threshold: u64,
    /// Objects copied at once.
    #[arg(long, default_value_t = crate::s3sync::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Leave archived objects (S3 Glacier Flexible Retrieval, Deep Archive), which S3 cannot
    /// copy without a restore, out of the bucket copies; the report lists them. Without it,
    /// preflight refuses when a source bucket holds any.
    #[arg(long)]
    pub skip_archived: bool,
    #[command(flatten)]
    pub batch: BatchArgs,
}

/// A validated migrate request with how to run it.
#[derive(Debug, Clone)]
pub struct MigrateCommand {
    pub request: crate::workflow::migrate::MigrateRequest,
    pub finalize: bool,
    pub dry_run: bool,
    pub yes: bool,
    pub break_lock: bool,
    /// The earlier of the window's end and --deadline.
    pub deadline: Option<chrono::DateTime<chrono::Utc>>,
    pub multipart_threshold: u64,
    pub concurrency: usize,
    pub skip_archived: bool,
    /// `--engine batch` and the jobs' settings.
    pub batch: crate::workflow::batchcopy::BatchSettings,
}

/// The end of the migration window `HH:MM-HH:MM` (wall-clock time in `tz`) that contains `now`,
/// or an error if `now` is outside it.
pub fn window_end(
    window: &str,
    tz: chrono_tz::Tz,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, InputError> {
    use chrono::{NaiveTime, Timelike};
    let bad = || InputError::Window(window.to_string());
    let (a, b) = window.split_once('-').ok_or_else(bad)?;
    let start = NaiveTime::parse_from_str(a.trim(), "%H:%M").map_err(|_| bad())?;
    let end = NaiveTime::parse_from_str(b.trim(), "%H:%M").map_err(|_| bad())?;
    if start == end {
        return Err(bad());
    }
    let local_now = now.with_timezone(&tz);
    let t = local_now
        .time()
        .with_nanosecond(0)
        .unwrap_or(local_now.time());
    let today = local_now.date_naive();
    let inside_until = if start < end {
        (t >= start && t < end).then(|| today.and_time(end))
    } else if t >= start {
        // Spans midnight: ends tomorrow.
        Some(today.succ_opt().unwrap_or(today).and_time(end))
    } else if t < end {
        Some(today.and_time(end))
    } else {
        None
    };
    match inside_until {
        Some(local_end) => Ok(local_instant(tz, local_end)),
        None => Err(InputError::OutsideWindow {
            window: window.to_string(),
            zone: tz.name().to_string(),
            now: local_now.format("%H:%M").to_string(),
        }),
    }
}

/// The instant of a wall-clock time in `tz`. Where daylight saving makes it ambiguous (clocks go
/// back) the earlier instant is taken, so a window never ends later than the operator meant;
/// where it does not exist (clocks go forward) the window ends when the clocks jump.
fn local_instant(tz: chrono_tz::Tz, local: chrono::NaiveDateTime) -> chrono::DateTime<chrono::Utc> {
    use chrono::{LocalResult, TimeZone};
    let mut probe = local;
    // A gap lasts at most a few hours; walk forward to its first valid minute.
    for _ in 0..=(24 * 60) {
        match tz.from_local_datetime(&probe) {
            LocalResult::Single(at) => return at.with_timezone(&chrono::Utc),
            LocalResult::Ambiguous(earlier, _) => return earlier.with_timezone(&chrono::Utc),
            LocalResult::None => probe += chrono::Duration::minutes(1),
        }
    }
    local.and_utc()
}

/// The IANA time zone named by --tz (UTC when absent).
pub fn parse_zone(name: Option<&str>) -> Result<chrono_tz::Tz, InputError> {
    match name {
        None => Ok(chrono_tz::UTC),
        Some(name) => name
            .parse::<chrono_tz::Tz>()
            .map_err(|_| InputError::Zone(name.to_string())),
    }
}

fn read_template(path: &std::path::Path) -> Result<(String, String), InputError> {
    let body = std::fs::read_to_string(path).map_err(|e| InputError::Template {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok((path.display().to_string(), body))
}

fn check_copy_options(concurrency: usize, threshold: u64) -> Result<(), InputError> {
    if concurrency == 0 {
        return Err(InputError::Concurrency);
    }
    // AWS takes parts of 5 MiB to 5 GiB; the fake and tests use smaller ones, so only the
    // upper bound and zero are refused here.
    if threshold == 0 || threshold > crate::s3sync::AWS_COPY_LIMIT {
        return Err(InputError::Threshold(threshold));
    }
    Ok(())
}

impl MigrateArgs {
    /// `now` (the composition root's clock) judges `--deadline` and `--window`.
    pub fn into_command(
        self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<MigrateCommand, InputError> {
        let parameter_overrides = parse_parameters(&self.parameters)?;
        let template = read_template(&self.template)?;
        let mut deadline = match &self.deadline {
            Some(d) => {
                let at = chrono::DateTime::parse_from_rfc3339(d)
                    .map_err(|_| InputError::DeadlineFormat(d.clone()))?
                    .with_timezone(&chrono::Utc);
                if at <= now {
                    return Err(InputError::DeadlinePassed(at.to_rfc3339()));
                }
                Some(at)
            }
            None => None,
        };
        if let Some(window) = &self.window {
            let end = window_end(window, parse_zone(self.tz.as_deref())?, now)?;
            deadline = Some(deadline.map_or(end, |d| d.min(end)));
        }
        check_copy_options(self.concurrency, self.multipart_threshold)?;
        Ok(MigrateCommand {
            request: crate::workflow::migrate::MigrateRequest {
                env: self.env,
                template,
                parameter_overrides,
                config: Default::default(),
            },
            finalize: self.finalize,
            dry_run: self.dry_run,
            yes: self.yes,
            break_lock: self.break_lock,
            deadline,
            multipart_threshold: self.multipart_threshold,
            concurrency: self.concurrency,
            skip_archived: self.skip_archived,
            batch: self.batch.settings()?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StandbyState {
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct CloneArgs {
    /// The source environment: a stack name, or the value of a stack's envclone:environment tag.
    pub source: String,
    /// The new environment's name (also its stack's name).
    pub target: String,
    /// Template for the clone (default: the source stack's own).
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// Override a parameter of the clone stack (repeatable).
    #[arg(long = "parameter", value_name = "K=V")]
    pub parameters: Vec<String>,
    /// Do not put the source into Standby: it keeps serving, and the clone is crash-consistent.
    #[arg(long)]
    pub no_standby: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (for automation).
    #[arg(long)]
    pub yes: bool,
    /// Take over the environment's lock from a run whose heartbeat stopped (it died).
    #[arg(long)]
    pub break_lock: bool,
    /// An experiment environment that `envclone gc` removes after this long (e.g. 8h, 2d).
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// Who the experiment environment belongs to (shown by `envclone list`).
    #[arg(long)]
    pub owner: Option<String>,
    /// Objects larger than this many bytes are copied in parallel parts (AWS's limit for one
    /// copy is 5 GiB).
    #[arg(long, default_value_t = crate::s3sync::AWS_COPY_LIMIT)]
    pub multipart_threshold: u64,
    /// Objects copied at once.
    #[arg(long, default_value_t = crate::s3sync::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Leave archived objects (S3 Glacier Flexible Retrieval, Deep Archive), which S3 cannot
    /// copy without a restore, out of the bucket copies; the report lists them. Without it,
    /// preflight refuses when a source bucket holds any.
    #[arg(long)]
    pub skip_archived: bool,
    #[command(flatten)]
    pub batch: BatchArgs,
}

#[derive(Debug, Error)]
pub enum InputError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(
        "--parameter {0:?} is malformed: write KEY=VALUE (e.g. --parameter InstanceType=t3.small)"
    )]
    MalformedParameter(String),
    #[error("--parameter {0} is given twice; give each parameter once")]
    DuplicateParameter(String),
    #[error("cannot read the template {path}: {reason}; check the path")]
    Template { path: String, reason: String },
    #[error("--ttl {0:?} is not a duration: write e.g. 30m, 8h or 2d")]
    Ttl(String),
    #[error("--owner must be 1 to 256 characters")]
    Owner,
    #[error("--window {0:?} is malformed: write HH:MM-HH:MM (24-hour clock), e.g. 02:00-04:00")]
    Window(String),
    #[error(
        "now ({now} {zone}) is outside the migration window {window} ({zone}); nothing was \
         started: run it again inside the window"
    )]
    OutsideWindow {
        window: String,
        zone: String,
        now: String,
    },
    #[error(
        "--tz {0:?} is not a known time zone: use an IANA name such as Europe/Paris, \
         America/New_York or UTC"
    )]
    Zone(String),
    #[error("--deadline {0:?} is not an RFC 3339 time: write e.g. 2026-11-22T04:00:00Z")]
    DeadlineFormat(String),
    #[error("the deadline {0} has already passed; nothing was started")]
    DeadlinePassed(String),
    #[error("--concurrency must be at least 1")]
    Concurrency,
    #[error(
        "--multipart-threshold {0} is out of range: use 5 MiB (5242880) to 5 GiB (5368709120)"
    )]
    Threshold(u64),
    #[error("{url:?} is not an S3 URL: {reason}; write s3://BUCKET or s3://BUCKET/PREFIX")]
    S3Url { url: String, reason: String },
    #[error(
        "{source_path} and {target_path} overlap: a sync would read what it writes; use another \
         bucket or prefixes that do not contain each other"
    )]
    S3Overlap {
        source_path: String,
        target_path: String,
    },
    #[error("--verify checks a finished copy; it cannot be combined with --dry-run")]
    VerifyDryRun,
    #[error("--engine batch needs {0}")]
    BatchInput(String),
    #[error(
        "--as-of {0:?} is not an RFC 3339 time on a whole second: write e.g. \
         2026-12-01T10:00:08Z (S3 lists LastModified in whole seconds)"
    )]
    AsOfFormat(String),
    #[error("--manifest inventory is the manifest of a batch job: add --engine batch")]
    ManifestLocal,
}

#[derive(Debug, Subcommand)]
pub enum S3Command {
    /// Copy every object of SRC that DST lacks or holds in another version, server-side.
    ///
    /// A re-run copies only what differs (size and ETag). A prefix is a folder:
    /// `s3://a/photos` syncs the keys under `photos/`.
    Sync(SyncArgs),
    /// S3 Batch Operations jobs of `s3 sync --engine batch`: follow or cancel one.
    #[command(subcommand)]
    Job(JobCommand),
    /// Peak memory of the diff of two generated listings of N objects each (1% changed, 1%
    /// missing, 1% extra); nothing leaves this process.
    /// Built only with the `fake` feature: the generated listings are test material.
    #[cfg(any(test, feature = "fake"))]
    #[command(hide = true)]
    DiffBench {
        #[arg(long, default_value_t = 1_000_000)]
        objects: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// DescribeJob: the job's status, progress counters and failure reasons.
    Status(JobArgs),
    /// UpdateJobStatus to Cancelled: tasks already run stay done, no new one starts.
    Cancel(JobArgs),
    /// ListJobs: the account's jobs (AWS keeps them 90 days); envclone's carry their run's
    /// client token in their description.
    List {
        /// The AWS account whose jobs to list.
        #[arg(long, value_name = "ACCOUNT_ID")]
        account: String,
    },
}

#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job id (`s3 sync --engine batch` prints it).
    pub id: String,
    /// The AWS account the job runs in (the account of its --batch-role).
    #[arg(long, value_name = "ACCOUNT_ID")]
    pub account: String,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// s3://BUCKET[/PREFIX] to copy from.
    pub source: String,
    /// s3://BUCKET[/PREFIX] to copy into (the bucket must exist).
    pub target: String,
    /// Remove objects from DST that SRC does not have.
    #[arg(long)]
    pub delete: bool,
    /// Print what would be copied and deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Objects copied at once.
    #[arg(long, default_value_t = crate::s3sync::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Single-part objects larger than this many bytes are copied in parallel parts (objects
    /// uploaded in parts are always copied with their own part layout).
    #[arg(long, default_value_t = crate::s3sync::AWS_COPY_LIMIT)]
    pub multipart_threshold: u64,
    /// After the sync, compare DST with SRC object for object (size, ETag, checksum or
    /// content, headers, metadata, tags).
    #[arg(long)]
    pub verify: bool,
    /// Encryption of the copies: `keep` (each object's own: an SSE-KMS object keeps its KMS
    /// key, an SSE-S3 one stays SSE-S3) or `destination-default` (DST's default encryption,
    /// what a plain CopyObject gives).
    #[arg(long, value_enum, default_value_t = SseArg::Keep)]
    pub sse: SseArg,
    /// Copy SRC as it was at this moment (RFC 3339, a whole second, S3's clock) instead of as
    /// it is: each key's newest version written at or before it, copied by version id; keys
    /// absent then are absent from the copy (with --delete, removed from DST). SRC must have
    /// versioning enabled. --verify then compares with SRC as of that moment, so later writes
    /// to SRC are no differences.
    #[arg(long, value_name = "RFC3339")]
    pub as_of: Option<String>,
    /// With --engine batch: the job's manifest. `diff`: envclone lists both paths and writes a
    /// CSV of what differs. `inventory`: the source's latest S3 Inventory report (CSV, current
    /// versions, filtered on exactly the source prefix): no listing before the job, which
    /// copies every object the report lists; objects written since the report was taken (up
    /// to 48 hours before, for a daily one) are copied by envclone after the job.
    #[arg(long, value_enum, default_value_t = ManifestArg::Diff)]
    pub manifest: ManifestArg,
    #[command(flatten)]
    pub batch: BatchArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ManifestArg {
    Diff,
    Inventory,
}

/// How bucket copies run: `--engine` and the S3 Batch Operations job's settings (`s3 sync`,
/// `clone`, `migrate`).
#[derive(Debug, Clone, Args)]
pub struct BatchArgs {
    /// `local`: this process copies (server-side). `batch`: hand the copy to S3 Batch
    /// Operations, for buckets beyond one machine's reach (hundreds of millions of objects;
    /// with clone and migrate: every bucket of the contract, like `{ engine: batch }`).
    #[arg(long, value_enum, default_value_t = Engine::Local)]
    pub engine: Engine,
    /// With --engine batch: the IAM role S3 Batch Operations assumes.
    #[arg(long, value_name = "ARN")]
    pub batch_role: Option<String>,
    /// With --engine batch: where the manifest and the completion report go (s3://BUCKET/PREFIX).
    #[arg(long, value_name = "S3_URL")]
    pub batch_reports: Option<String>,
    /// With --engine batch: the job's priority (higher runs first among the account's jobs).
    #[arg(long, default_value_t = 10)]
    pub batch_priority: i32,
    /// With --engine batch: how often the job's progress is read (DescribeJob).
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub batch_poll: String,
    /// With --engine batch: objects over this many bytes stay out of the job and are copied by
    /// the local engine (AWS's CopyObject limit, 5 GiB; smaller only against a stand-in).
    #[arg(long, hide = true, default_value_t = crate::s3sync::AWS_COPY_LIMIT)]
    pub batch_copy_limit: u64,
}

impl BatchArgs {
    /// The validated settings (the role and the reports location stay optional: a clone
    /// needs them only for a bucket a job copies).
    pub fn settings(&self) -> Result<crate::workflow::batchcopy::BatchSettings, InputError> {
        let reports = self
            .batch_reports
            .as_deref()
            .map(parse_s3_url)
            .transpose()?;
        if self.batch_priority < 0 {
            return Err(InputError::BatchInput(
                "a --batch-priority of 0 or more (CreateJob's Priority)".into(),
            ));
        }
        let poll = humantime::parse_duration(&self.batch_poll)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                InputError::BatchInput(format!(
                    "--batch-poll as a duration such as 10s (not {:?})",
                    self.batch_poll
                ))
            })?;
        Ok(crate::workflow::batchcopy::BatchSettings {
            all: self.engine == Engine::Batch,
            role_arn: self.batch_role.clone(),
            reports,
            priority: self.batch_priority,
            poll,
            copy_limit: self.batch_copy_limit,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SseArg {
    Keep,
    DestinationDefault,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    Local,
    Batch,
}

/// Parses `s3://bucket[/prefix]`. A non-empty prefix names a folder: `/` is added if missing,
/// so `s3://b/photos` does not also take `photos2/…` (the behaviour of `aws s3 sync`).
pub fn parse_s3_url(url: &str) -> Result<BucketPath, InputError> {
    let error = |reason: &str| InputError::S3Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| error("it does not start with s3://"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(error("the bucket name is missing"));
    }
    // Lenient on purpose: old us-east-1 buckets may have capitals and underscores; S3 itself
    // answers for a name that does not exist.
    if bucket.len() < 3 || bucket.len() > 255 {
        return Err(error("a bucket name has 3 to 255 characters"));
    }
    if let Some(c) = bucket
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
    {
        return Err(error(&format!("{c:?} cannot be in a bucket name")));
    }
    let mut prefix = prefix.to_string();
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    Ok(BucketPath {
        bucket: bucket.to_string(),
        prefix,
    })
}

/// A validated `s3` command.
#[derive(Debug, Clone)]
pub enum S3Request {
    Sync(SyncRequest),
    /// `--engine batch`: the S3 Batch Operations job (printed with --dry-run).
    Batch {
        request: SyncRequest,
        role: String,
        reports: BucketPath,
        priority: i32,
        poll: std::time::Duration,
        copy_limit: u64,
        manifest: crate::s3batch::ManifestSource,
    },
    /// `s3 job status ID --account A`.
    JobStatus {
        account: String,
        id: String,
    },
    /// `s3 job cancel ID --account A`.
    JobCancel {
        account: String,
        id: String,
    },
    /// `s3 job list --account A`.
    JobList {
        account: String,
    },
    #[cfg(any(test, feature = "fake"))]
    DiffBench {
        objects: u64,
    },
}

impl S3Command {
    pub fn into_request(self) -> Result<S3Request, InputError> {
        match self {
            S3Command::Sync(args) if args.batch.engine == Engine::Batch => {
                let settings = args.batch.settings()?;
                let role = settings.role_arn.ok_or_else(|| {
                    InputError::BatchInput(
                        "--batch-role ARN (the role S3 Batch Operations assumes)".into(),
                    )
                })?;
                let reports = settings.reports.ok_or_else(|| {
                    InputError::BatchInput(
                        "--batch-reports s3://BUCKET/PREFIX (manifest and completion report)"
                            .into(),
                    )
                })?;
                let (priority, poll, copy_limit) =
                    (settings.priority, settings.poll, settings.copy_limit);
                let manifest = match args.manifest {
                    ManifestArg::Diff => crate::s3batch::ManifestSource::Diff,
                    ManifestArg::Inventory => crate::s3batch::ManifestSource::Inventory,
                };
                Ok(S3Request::Batch {
                    request: args.into_request()?,
                    role,
                    reports,
                    priority,
                    poll,
                    copy_limit,
                    manifest,
                })
            }
            S3Command::Job(JobCommand::Status(a)) => Ok(S3Request::JobStatus {
                account: a.account,
                id: a.id,
            }),
            S3Command::Job(JobCommand::Cancel(a)) => Ok(S3Request::JobCancel {
                account: a.account,
                id: a.id,
            }),
            S3Command::Job(JobCommand::List { account }) => Ok(S3Request::JobList { account }),
            S3Command::Sync(args) if args.manifest == ManifestArg::Inventory => {
                Err(InputError::ManifestLocal)
            }
            S3Command::Sync(args) => Ok(S3Request::Sync(args.into_request()?)),
            #[cfg(any(test, feature = "fake"))]
            S3Command::DiffBench { objects } => Ok(S3Request::DiffBench { objects }),
        }
    }
}

impl SyncArgs {
    fn into_request(self) -> Result<SyncRequest, InputError> {
        let source = parse_s3_url(&self.source)?;
        let target = parse_s3_url(&self.target)?;
        if source.bucket == target.bucket
            && (source.prefix.starts_with(&target.prefix)
                || target.prefix.starts_with(&source.prefix))
        {
            return Err(InputError::S3Overlap {
                source_path: source.to_string(),
                target_path: target.to_string(),
            });
        }
        if self.concurrency == 0 {
            return Err(InputError::Concurrency);
        }
        if self.multipart_threshold == 0 || self.multipart_threshold > crate::s3sync::AWS_COPY_LIMIT
        {
            return Err(InputError::Threshold(self.multipart_threshold));
        }
        if self.verify && self.dry_run {
            return Err(InputError::VerifyDryRun);
        }
        let as_of = self.as_of.as_deref().map(parse_as_of).transpose()?;
        Ok(SyncRequest {
            source,
            target,
            options: crate::s3sync::SyncOptions {
                concurrency: self.concurrency,
                multipart_threshold: self.multipart_threshold,
                delete: self.delete,
                dry_run: self.dry_run,
                sse: match self.sse {
                    SseArg::Keep => crate::s3sync::SseMode::Keep,
                    SseArg::DestinationDefault => crate::s3sync::SseMode::DestinationDefault,
                },
                as_of,
                ..crate::s3sync::SyncOptions::default()
            },
            verify: self.verify,
        })
    }
}

/// `--as-of`: an RFC 3339 time on a whole second (a fraction could not be told apart in
/// S3's LastModified, which has whole seconds).
fn parse_as_of(raw: &str) -> Result<chrono::DateTime<chrono::Utc>, InputError> {
    let t = chrono::DateTime::parse_from_rfc3339(raw)
        .map_err(|_| InputError::AsOfFormat(raw.to_string()))?
        .with_timezone(&chrono::Utc);
    if t.timestamp_subsec_nanos() != 0 {
        return Err(InputError::AsOfFormat(raw.to_string()));
    }
    Ok(t)
}

/// A validated clone request with how to run it.
#[derive(Debug, Clone)]
pub struct CloneCommand {
    pub request: CloneRequest,
    pub dry_run: bool,
    pub yes: bool,
    pub break_lock: bool,
    pub multipart_threshold: u64,
    pub concurrency: usize,
    pub skip_archived: bool,
    /// `--engine batch` and the jobs' settings.
    pub batch: crate::workflow::batchcopy::BatchSettings,
}

pub fn parse_parameters(raw: &[String]) -> Result<BTreeMap<String, String>, InputError> {
    let mut out = BTreeMap::new();
    for p in raw {
        let (k, v) = p
            .split_once('=')
            .filter(|(k, _)| !k.is_empty() && !k.contains(char::is_whitespace))
            .ok_or_else(|| InputError::MalformedParameter(p.clone()))?;
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(InputError::DuplicateParameter(k.to_string()));
        }
    }
    Ok(out)
}

impl CloneArgs {
    /// `now` (the composition root's clock) starts `--ttl`.
    pub fn into_command(
        self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<CloneCommand, InputError> {
        let target = EnvName::parse(&self.target)?;
        let parameter_overrides = parse_parameters(&self.parameters)?;
        let template = self.template.as_deref().map(read_template).transpose()?;
        let expires_at = match &self.ttl {
            Some(ttl) => {
                let d = humantime::parse_duration(ttl).map_err(|_| InputError::Ttl(ttl.clone()))?;
                let d = chrono::Duration::from_std(d).map_err(|_| InputError::Ttl(ttl.clone()))?;
                Some(now + d)
            }
            None => None,
        };
        if self
            .owner
            .as_ref()
            .is_some_and(|o| o.is_empty() || o.len() > 256)
        {
            return Err(InputError::Owner);
        }
        check_copy_options(self.concurrency, self.multipart_threshold)?;
        Ok(CloneCommand {
            request: CloneRequest {
                source: self.source,
                target,
                template,
                parameter_overrides,
                standby: !self.no_standby,
                reset_defaults: false,
                environment_tag: None,
                owner: self.owner,
                expires_at,
                config: Default::default(),
            },
            dry_run: self.dry_run,
            yes: self.yes,
            break_lock: self.break_lock,
            multipart_threshold: self.multipart_threshold,
            concurrency: self.concurrency,
            skip_archived: self.skip_archived,
            batch: self.batch.settings()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse_as_key_value() {
        let p = parse_parameters(&["A=1".into(), "B=x=y".into(), "C=".into()]).unwrap();
        assert_eq!(p["A"], "1");
        assert_eq!(p["B"], "x=y");
        assert_eq!(p["C"], "");
        assert!(parse_parameters(&["noequals".into()]).is_err());
        assert!(parse_parameters(&["=v".into()]).is_err());
        assert!(parse_parameters(&["A=1".into(), "A=2".into()]).is_err());
    }

    #[test]
    fn migration_windows() {
        use chrono::TimeZone;
        let at = |h, m| chrono::Utc.with_ymd_and_hms(2026, 11, 22, h, m, 0).unwrap();
        let window_end = |w: &str, now| window_end(w, chrono_tz::UTC, now);
        assert_eq!(window_end("02:00-04:00", at(3, 0)).unwrap(), at(4, 0));
        assert!(
            window_end("02:00-04:00", at(4, 0)).is_err(),
            "closed at its end"
        );
        assert!(window_end("02:00-04:00", at(1, 59)).is_err());
        // Spanning midnight.
        assert_eq!(
            window_end("23:00-01:00", at(23, 30)).unwrap(),
            chrono::Utc.with_ymd_and_hms(2026, 11, 23, 1, 0, 0).unwrap()
        );
        assert_eq!(window_end("23:00-01:00", at(0, 30)).unwrap(), at(1, 0));
        assert!(window_end("23:00-01:00", at(12, 0))
            .unwrap_err()
            .to_string()
            .contains("outside"));
        for bad in ["2-4", "02:00", "25:00-26:00", "02:00-02:00"] {
            assert!(window_end(bad, at(3, 0)).is_err(), "{bad}");
        }
    }

    #[test]
    fn migration_windows_in_a_time_zone_follow_daylight_saving() {
        use chrono::TimeZone;
        let paris = parse_zone(Some("Europe/Paris")).unwrap();
        let utc = |y, mo, d, h, mi| chrono::Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap();
        // (window in Paris time, now, the window's end), all in UTC.
        let cases = [
            // Winter (UTC+1): 02:00-04:00 Paris is 01:00-03:00 UTC.
            (
                "02:00-04:00",
                utc(2026, 11, 22, 1, 30),
                utc(2026, 11, 22, 3, 0),
            ),
            // Summer (UTC+2): 00:00-02:00 UTC.
            ("02:00-04:00", utc(2026, 7, 1, 0, 0), utc(2026, 7, 1, 2, 0)),
            // Spanning midnight: the local date rolls over before UTC's does.
            (
                "23:00-01:00",
                utc(2026, 11, 22, 23, 30),
                utc(2026, 11, 23, 0, 0),
            ),
            // 29 March 2026: Paris jumps from 02:00 to 03:00 (01:00 UTC); a window ending at
            // 02:30 (a time that does not exist) ends when the clocks jump.
            (
                "01:00-02:30",
                utc(2026, 3, 29, 0, 30),
                utc(2026, 3, 29, 1, 0),
            ),
            // 25 October 2026: 02:30 happens twice; the window ends at the first one.
            (
                "01:00-02:30",
                utc(2026, 10, 24, 23, 30),
                utc(2026, 10, 25, 0, 30),
            ),
        ];
        for (window, now, end) in cases {
            assert_eq!(
                window_end(window, paris, now).unwrap(),
                end,
                "{window} at {now}"
            );
        }
        let late = window_end("02:00-04:00", paris, utc(2026, 11, 22, 3, 0)).unwrap_err();
        assert!(late.to_string().contains("04:00 Europe/Paris"), "{late}");
        assert!(window_end("02:00-04:00", paris, utc(2026, 11, 22, 0, 59)).is_err());
        let unknown = parse_zone(Some("Mars/Olympus")).unwrap_err();
        assert!(unknown.to_string().contains("IANA"), "{unknown}");
        assert_eq!(parse_zone(None).unwrap(), chrono_tz::UTC);
    }

    #[test]
    fn every_command_parses_with_the_global_flags() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        // A global flag and a subcommand's argument once shared an id (`state`).
        let cli = Cli::try_parse_from(["envclone", "--state", "s3://b/p", "standby", "prod", "on"])
            .unwrap();
        assert_eq!(cli.state_url.as_deref(), Some("s3://b/p"));
        assert!(matches!(
            cli.command,
            Command::Standby {
                state: StandbyState::On,
                ..
            }
        ));
    }

    /// Issue 15, item 8: `envclone completions bash|zsh|fish`.
    #[test]
    fn completions_cover_every_subcommand() {
        use clap_complete::Shell;
        for (name, shell) in [
            ("bash", Shell::Bash),
            ("zsh", Shell::Zsh),
            ("fish", Shell::Fish),
        ] {
            let cli = Cli::try_parse_from(["envclone", "completions", name]).unwrap();
            assert!(matches!(cli.command, Command::Completions { shell: s } if s == shell));
            let script = completions(shell);
            for word in [
                "envclone",
                "clone",
                "migrate",
                "finalize",
                "standby",
                "state-dir",
                "completions",
            ] {
                assert!(script.contains(word), "{name}: {word:?} missing");
            }
        }
        assert!(Cli::try_parse_from(["envclone", "completions", "tcsh"]).is_err());
    }

    #[test]
    fn clone_args_validate_the_target() {
        let cli = Cli::try_parse_from(["envclone", "clone", "prod", "Bad_Name"]).unwrap();
        let Command::Clone(args) = cli.command else {
            panic!()
        };
        let err = args
            .into_command(chrono::Utc::now())
            .unwrap_err()
            .to_string();
        assert!(err.contains("environment name \"Bad_Name\""), "{err}");
    }

    /// Issue 14 part 1: `clone`/`migrate --engine batch` and the job's settings.
    #[test]
    fn clone_and_migrate_take_the_batch_engine_and_its_settings() {
        let clone = |extra: &[&str]| {
            let mut argv = vec!["envclone", "clone", "prod", "exp-a"];
            argv.extend_from_slice(extra);
            let Command::Clone(args) = Cli::try_parse_from(argv).unwrap().command else {
                panic!()
            };
            args.into_command(chrono::Utc::now())
        };
        let c = clone(&[
            "--engine",
            "batch",
            "--batch-role",
            "arn:aws:iam::123456789012:role/b",
            "--batch-reports",
            "s3://ops/envclone",
        ])
        .unwrap();
        assert!(c.batch.all);
        assert_eq!(c.batch.reports.unwrap().prefix, "envclone/");
        // Without --engine batch, only the contract's { engine: batch } buckets use a job.
        assert!(!clone(&[]).unwrap().batch.all);
        for bad in [
            &["--batch-reports", "ops/envclone"][..],
            &["--batch-poll", "0s"],
            &["--batch-priority=-1"],
        ] {
            assert!(clone(bad).is_err(), "{bad:?}");
        }
        let cli = Cli::try_parse_from([
            "envclone",
            "migrate",
            "prod",
            "--template",
            "v2.yaml",
            "--engine",
            "batch",
        ])
        .unwrap();
        let Command::Migrate(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.batch.engine, Engine::Batch);
    }

    #[test]
    fn s3_urls_parse_into_bucket_and_folder_prefix() {
        let p = parse_s3_url("s3://my-bucket").unwrap();
        assert_eq!((p.bucket.as_str(), p.prefix.as_str()), ("my-bucket", ""));
        let p = parse_s3_url("s3://my-bucket/").unwrap();
        assert_eq!((p.bucket.as_str(), p.prefix.as_str()), ("my-bucket", ""));
        let p = parse_s3_url("s3://my-bucket/photos").unwrap();
        assert_eq!(p.prefix, "photos/");
        let p = parse_s3_url("s3://my-bucket/a b/été/100%+x?#/").unwrap();
        assert_eq!(p.prefix, "a b/été/100%+x?#/");
        let p = parse_s3_url("s3://Legacy_Bucket.1/x").unwrap();
        assert_eq!(p.bucket, "Legacy_Bucket.1");

        for (url, reason) in [
            ("my-bucket/x", "does not start with s3://"),
            ("https://my-bucket/x", "does not start with s3://"),
            ("s3://", "bucket name is missing"),
            ("s3:///prefix", "bucket name is missing"),
            ("s3://ab", "3 to 255 characters"),
            ("s3://my bucket/x", "' ' cannot be in a bucket name"),
        ] {
            let err = parse_s3_url(url).unwrap_err().to_string();
            assert!(err.contains(reason), "{url}: {err}");
            assert!(err.contains("s3://BUCKET/PREFIX"), "{err}");
        }
    }

    fn args(src: &str, dst: &str) -> SyncArgs {
        SyncArgs {
            source: src.into(),
            target: dst.into(),
            delete: false,
            dry_run: false,
            concurrency: 8,
            multipart_threshold: crate::s3sync::AWS_COPY_LIMIT,
            verify: false,
            sse: SseArg::Keep,
            as_of: None,
            manifest: ManifestArg::Diff,
            batch: BatchArgs {
                engine: Engine::Local,
                batch_role: None,
                batch_reports: None,
                batch_priority: 10,
                batch_poll: "10s".into(),
                batch_copy_limit: crate::s3sync::AWS_COPY_LIMIT,
            },
        }
    }

    #[test]
    fn overlapping_source_and_target_are_refused() {
        for (src, dst) in [
            ("s3://bk1", "s3://bk1"),
            ("s3://bk1/a", "s3://bk1/a/"),
            ("s3://bk1", "s3://bk1/copy"),
            ("s3://bk1/data/x", "s3://bk1/data"),
        ] {
            let err = args(src, dst).into_request().unwrap_err();
            assert!(matches!(err, InputError::S3Overlap { .. }), "{src} {dst}");
        }
        // Siblings whose names share a beginning do not overlap: prefixes are folders.
        let r = args("s3://bk1/data", "s3://bk1/data2")
            .into_request()
            .unwrap();
        assert_eq!(
            (r.source.prefix.as_str(), r.target.prefix.as_str()),
            ("data/", "data2/")
        );
        args("s3://bk1", "s3://bk2").into_request().unwrap();
    }

    #[test]
    fn flags_are_checked() {
        let mut a = args("s3://bk1", "s3://bk2");
        a.concurrency = 0;
        assert!(matches!(a.into_request(), Err(InputError::Concurrency)));
        let mut a = args("s3://bk1", "s3://bk2");
        a.multipart_threshold = crate::s3sync::AWS_COPY_LIMIT + 1;
        assert!(a.into_request().unwrap_err().to_string().contains("5 GiB"));
        let mut a = args("s3://bk1", "s3://bk2");
        a.verify = true;
        a.dry_run = true;
        assert!(matches!(a.into_request(), Err(InputError::VerifyDryRun)));
    }

    #[test]
    fn as_of_takes_a_whole_second_in_rfc_3339() {
        let mut a = args("s3://bk1", "s3://bk2");
        a.as_of = Some("2026-12-01T11:00:08+01:00".into());
        let r = a.into_request().unwrap();
        assert_eq!(
            r.options.as_of.map(|t| t.to_rfc3339()),
            Some("2026-12-01T10:00:08+00:00".to_string())
        );
        for bad in ["2026-12-01T10:00:08.500Z", "yesterday", "2026-12-01"] {
            let mut a = args("s3://bk1", "s3://bk2");
            a.as_of = Some(bad.into());
            let err = a.into_request().unwrap_err();
            assert!(matches!(err, InputError::AsOfFormat(_)), "{bad}: {err}");
        }
        // With --engine batch too: the job's manifest then names each object's version at T.
        let mut a = args("s3://bk1", "s3://bk2");
        a.as_of = Some("2026-12-01T10:00:08Z".into());
        a.batch.engine = Engine::Batch;
        a.batch.batch_role = Some("arn:aws:iam::123456789012:role/batch".into());
        a.batch.batch_reports = Some("s3://reports/envclone/".into());
        match S3Command::Sync(a).into_request().unwrap() {
            S3Request::Batch { request, .. } => assert_eq!(
                request.options.as_of.map(|t| t.to_rfc3339()),
                Some("2026-12-01T10:00:08+00:00".to_string())
            ),
            other => panic!("{other:?}"),
        }
    }
}
