//! `envclone s3 sync`: the bucket copy engine (`s3sync`) as a command of its own — `s3://`
//! URLs turned into bucket paths, the progress display (a bar on a terminal, plain lines
//! otherwise, JSON events with `--output json`), the dry-run listing, the report, and exit
//! codes. Also a hidden memory benchmark (`envclone s3 diff-bench`) that runs the same engine
//! over two generated listings.
//!
//! Progress is read from the engine's atomic counters by a ticker task of its own, so the copy
//! path never waits for the display.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use thiserror::Error;

use crate::cli::{InputError, Output};
use crate::ports::*;
use crate::s3sync::{
    self, BucketPath, Planned, SyncError, SyncOptions, SyncProgress, SyncStats, AWS_COPY_LIMIT,
    DEFAULT_CONCURRENCY,
};

#[derive(Debug, Subcommand)]
pub enum S3Command {
    /// Copy every object of SRC that DST lacks or holds in another version, server-side.
    ///
    /// A re-run copies only what differs (size and ETag). A prefix is a folder:
    /// `s3://a/photos` syncs the keys under `photos/`.
    Sync(SyncArgs),
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
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Single-part objects larger than this many bytes are copied in parallel parts (objects
    /// uploaded in parts are always copied with their own part layout).
    #[arg(long, default_value_t = AWS_COPY_LIMIT)]
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
    /// `local`: this process copies (server-side). `batch`: hand the copy to S3 Batch
    /// Operations, for buckets beyond one machine's reach (hundreds of millions of objects).
    #[arg(long, value_enum, default_value_t = Engine::Local)]
    pub engine: Engine,
    /// With --engine batch: the IAM role S3 Batch Operations assumes.
    #[arg(long, value_name = "ARN")]
    pub batch_role: Option<String>,
    /// With --engine batch: where the manifest and the completion report go (s3://BUCKET/PREFIX).
    #[arg(long, value_name = "S3_URL")]
    pub batch_reports: Option<String>,
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

#[derive(Debug, Error)]
pub enum S3CmdError {
    #[error("{url:?} is not an S3 URL: {reason}; write s3://BUCKET or s3://BUCKET/PREFIX")]
    Url { url: String, reason: String },
    #[error(
        "{source_path} and {target_path} overlap: a sync would read what it writes; use another \
         bucket or prefixes that do not contain each other"
    )]
    Overlap {
        source_path: String,
        target_path: String,
    },
    #[error("--verify checks a finished copy; it cannot be combined with --dry-run")]
    VerifyDryRun,
    #[error("--engine batch needs {0}")]
    BatchInput(String),
    #[error(
        "--engine batch creates the job through the S3 Control API, which this build does not \
         call yet; run it with --dry-run to get the job, create it with `aws s3control \
         create-job`, or use --engine local"
    )]
    BatchUnavailable,
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Connect(#[from] crate::aws::ConnectError),
    #[error("s3 sync {source_path} → {target_path}: {error}")]
    Sync {
        source_path: String,
        target_path: String,
        error: Box<SyncError>,
    },
    #[error("{target_path} differs from {source_path} in {count} object(s); see the list above")]
    Verification {
        source_path: String,
        target_path: String,
        count: usize,
    },
    #[error(
        "interrupted (Ctrl-C): what was copied stays; a re-run copies only what is still missing"
    )]
    Interrupted,
}

impl S3CmdError {
    /// 2 for bad input (nothing was changed), 1 for a failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            S3CmdError::Url { .. }
            | S3CmdError::Overlap { .. }
            | S3CmdError::VerifyDryRun
            | S3CmdError::BatchInput(_)
            | S3CmdError::BatchUnavailable
            | S3CmdError::Input(_)
            | S3CmdError::Connect(_) => crate::app::EXIT_BAD_INPUT,
            S3CmdError::Sync { error, .. }
                if matches!(**error, SyncError::MissingBucket { .. }) =>
            {
                crate::app::EXIT_BAD_INPUT
            }
            _ => crate::app::EXIT_FAILED,
        }
    }
}

/// Parses `s3://bucket[/prefix]`. A non-empty prefix names a folder: `/` is added if missing,
/// so `s3://b/photos` does not also take `photos2/…` (the behaviour of `aws s3 sync`).
pub fn parse_s3_url(url: &str) -> Result<BucketPath, S3CmdError> {
    let error = |reason: &str| S3CmdError::Url {
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

/// A validated `s3 sync` request.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub source: BucketPath,
    pub target: BucketPath,
    pub options: SyncOptions,
    pub verify: bool,
}

impl SyncArgs {
    pub fn into_request(self) -> Result<SyncRequest, S3CmdError> {
        let source = parse_s3_url(&self.source)?;
        let target = parse_s3_url(&self.target)?;
        if source.bucket == target.bucket
            && (source.prefix.starts_with(&target.prefix)
                || target.prefix.starts_with(&source.prefix))
        {
            return Err(S3CmdError::Overlap {
                source_path: source.to_string(),
                target_path: target.to_string(),
            });
        }
        if self.concurrency == 0 {
            return Err(InputError::Concurrency.into());
        }
        if self.multipart_threshold == 0 || self.multipart_threshold > AWS_COPY_LIMIT {
            return Err(InputError::Threshold(self.multipart_threshold).into());
        }
        if self.verify && self.dry_run {
            return Err(S3CmdError::VerifyDryRun);
        }
        Ok(SyncRequest {
            source,
            target,
            options: SyncOptions {
                concurrency: self.concurrency,
                multipart_threshold: self.multipart_threshold,
                delete: self.delete,
                dry_run: self.dry_run,
                sse: match self.sse {
                    SseArg::Keep => s3sync::SseMode::Keep,
                    SseArg::DestinationDefault => s3sync::SseMode::DestinationDefault,
                },
                ..SyncOptions::default()
            },
            verify: self.verify,
        })
    }
}

/// Runs an `s3` subcommand; `shutdown` resolves on Ctrl-C.
pub async fn run(
    command: S3Command,
    region: Option<String>,
    profile: Option<String>,
    output: Output,
    shutdown: impl Future<Output = ()>,
) -> Result<(), S3CmdError> {
    match command {
        S3Command::Sync(args) if args.engine == Engine::Batch => {
            let role = args.batch_role.clone().ok_or_else(|| {
                S3CmdError::BatchInput(
                    "--batch-role ARN (the role S3 Batch Operations assumes)".into(),
                )
            })?;
            let reports = args
                .batch_reports
                .as_deref()
                .map(parse_s3_url)
                .transpose()?
                .ok_or_else(|| {
                    S3CmdError::BatchInput(
                        "--batch-reports s3://BUCKET/PREFIX (manifest and completion report)"
                            .into(),
                    )
                })?;
            let dry_run = args.dry_run;
            let request = args.into_request()?;
            if !dry_run {
                return Err(S3CmdError::BatchUnavailable);
            }
            let cloud = crate::aws::connect(region, profile).await?;
            let job = batch_job(&cloud, &request, &role, &reports).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&job).expect("job serializes")
            );
            Ok(())
        }
        S3Command::Sync(args) => {
            let request = args.into_request()?;
            let cloud = crate::aws::connect(region, profile).await?;
            let display = if output == Output::Json {
                Display::Json
            } else if request.options.dry_run {
                Display::Off
            } else if std::io::stderr().is_terminal() {
                Display::Bar
            } else {
                Display::Lines
            };
            tokio::select! {
                result = sync(cloud.objects, &request, output, display) => result,
                () = shutdown => Err(S3CmdError::Interrupted),
            }
        }
        #[cfg(any(test, feature = "fake"))]
        S3Command::DiffBench { objects } => diff_bench(objects, output).await,
    }
}

/// What `--engine batch --dry-run` prints: the manifest to write and the S3 Batch Operations
/// job to create (S3PutObjectCopy keeps metadata and tags; objects over 5 GiB, which
/// PutObjectCopy cannot copy, are listed for the local engine's UploadPartCopy).
async fn batch_job(
    cloud: &Cloud,
    request: &SyncRequest,
    role: &str,
    reports: &BucketPath,
) -> Result<serde_json::Value, S3CmdError> {
    let store = &*cloud.objects;
    let sync_err = |error: SyncError| S3CmdError::Sync {
        source_path: request.source.to_string(),
        target_path: request.target.to_string(),
        error: Box::new(error),
    };
    let mut token = None;
    let (mut objects, mut bytes) = (0u64, 0u64);
    let mut too_large = Vec::new();
    loop {
        let page = crate::retry::retry(|| {
            store.list_page(
                &request.source.bucket,
                &request.source.prefix,
                token.clone(),
            )
        })
        .await
        .map_err(|source| {
            sync_err(SyncError::List {
                path: request.source.to_string(),
                source,
            })
        })?;
        for o in &page.objects {
            if o.size > AWS_COPY_LIMIT {
                too_large.push(o.key.clone());
            } else {
                objects += 1;
                bytes += o.size;
            }
        }
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    let run = cloud.clock.now().format("%Y%m%d%H%M%S").to_string();
    let manifest_key = format!("{}envclone-batch-{run}/manifest.csv", reports.prefix);
    Ok(serde_json::json!({
        "manifest": {
            "location": format!("s3://{}/{manifest_key}", reports.bucket),
            "format": "S3BatchOperations_CSV_20180820 (Bucket,Key; keys URL-encoded)",
            "objects": objects,
            "bytes": bytes,
        },
        "create_job": {
            "ConfirmationRequired": true,
            "Priority": 10,
            "RoleArn": role,
            "ClientRequestToken": format!("envclone-batch-{run}"),
            "Description": format!("envclone s3 sync {} {}", request.source, request.target),
            "Operation": {"S3PutObjectCopy": {
                "TargetResource": format!("arn:aws:s3:::{}", request.target.bucket),
                "TargetKeyPrefix": request.target.prefix,
                "MetadataDirective": "COPY",
            }},
            "Manifest": {
                "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
                "Location": {
                    "ObjectArn": format!("arn:aws:s3:::{}/{manifest_key}", reports.bucket),
                    "ETag": "<ETag of the manifest once written>",
                },
            },
            "Report": {
                "Bucket": format!("arn:aws:s3:::{}", reports.bucket),
                "Prefix": format!("{}envclone-batch-{run}/report", reports.prefix),
                "Format": "Report_CSV_20180820",
                "Enabled": true,
                "ReportScope": "AllTasks",
            },
        },
        "copied_separately_over_5_gib": too_large,
        "note": "S3 Batch Operations copies every object of the manifest (no diff); objects over 5 GiB need the local engine (UploadPartCopy)",
    }))
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

/// Syncs, reports and (with `verify`) verifies; what the command prints goes to stdout, the
/// progress to stderr (or stdout as JSON).
pub async fn sync(
    store: Arc<dyn ObjectStore>,
    request: &SyncRequest,
    output: Output,
    display: Display,
) -> Result<(), S3CmdError> {
    let (src, dst) = (&request.source, &request.target);
    let started = Instant::now();
    let progress = Arc::new(SyncProgress::default());
    let reporter = Reporter::start(display, progress.clone(), started);
    let out = std::io::stdout();
    let mut print_planned = |p: Planned<'_>| {
        let mut out = out.lock();
        let _ = match (output, p) {
            (
                Output::Text,
                Planned::Copy {
                    source_key,
                    target_key,
                    size,
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
    };
    let result = s3sync::sync_with(
        store.clone(),
        src,
        dst,
        &request.options,
        &progress,
        &mut print_planned,
    )
    .await;
    reporter.stop().await;
    let stats = result.map_err(|error| S3CmdError::Sync {
        source_path: src.to_string(),
        target_path: dst.to_string(),
        error: Box::new(error),
    })?;
    print_report(output, request, &stats, started.elapsed());
    if !request.verify {
        return Ok(());
    }
    let report = s3sync::verify(store, src, dst, request.options.concurrency)
        .await
        .map_err(|error| S3CmdError::Sync {
            source_path: src.to_string(),
            target_path: dst.to_string(),
            error: Box::new(error),
        })?;
    match output {
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
    if report.is_equal() {
        Ok(())
    } else {
        Err(S3CmdError::Verification {
            source_path: src.to_string(),
            target_path: dst.to_string(),
            count: report.mismatches.len(),
        })
    }
}

fn print_report(output: Output, request: &SyncRequest, stats: &SyncStats, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    match output {
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

/// The progress display: a task reading the counters on its own clock.
struct Reporter {
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

    async fn stop(mut self) {
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

// ---------------------------------------------------------------- diff-bench

/// Peak resident memory of this process (Linux: VmHWM), in bytes.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(any(test, feature = "fake"))]
async fn diff_bench(objects: u64, output: Output) -> Result<(), S3CmdError> {
    use crate::fake::synthetic::{SyntheticBuckets, SYNTHETIC_SOURCE, SYNTHETIC_TARGET};
    let store: Arc<dyn ObjectStore> = Arc::new(SyntheticBuckets { objects });
    let request = SyncRequest {
        source: BucketPath::bucket(SYNTHETIC_SOURCE),
        target: BucketPath::bucket(SYNTHETIC_TARGET),
        options: SyncOptions {
            delete: true,
            ..SyncOptions::default()
        },
        verify: false,
    };
    let started = Instant::now();
    let stats = s3sync::sync(store, &request.source, &request.target, &request.options)
        .await
        .map_err(|error| S3CmdError::Sync {
            source_path: request.source.to_string(),
            target_path: request.target.to_string(),
            error: Box::new(error),
        })?;
    let seconds = started.elapsed().as_secs_f64();
    let peak = peak_rss();
    match output {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
            multipart_threshold: AWS_COPY_LIMIT,
            verify: false,
            sse: SseArg::Keep,
            engine: Engine::Local,
            batch_role: None,
            batch_reports: None,
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
            assert!(matches!(err, S3CmdError::Overlap { .. }), "{src} {dst}");
            assert_eq!(err.exit_code(), 2);
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
        assert_eq!(a.into_request().unwrap_err().exit_code(), 2);
        let mut a = args("s3://bk1", "s3://bk2");
        a.multipart_threshold = AWS_COPY_LIMIT + 1;
        assert!(a.into_request().unwrap_err().to_string().contains("5 GiB"));
        let mut a = args("s3://bk1", "s3://bk2");
        a.verify = true;
        a.dry_run = true;
        assert!(matches!(a.into_request(), Err(S3CmdError::VerifyDryRun)));
    }

    #[test]
    fn a_missing_bucket_is_bad_input_and_other_failures_are_not() {
        let missing = S3CmdError::Sync {
            source_path: "s3://a/".into(),
            target_path: "s3://b/".into(),
            error: Box::new(SyncError::MissingBucket { bucket: "b".into() }),
        };
        assert_eq!(missing.exit_code(), 2);
        let failed = S3CmdError::Sync {
            source_path: "s3://a/".into(),
            target_path: "s3://b/".into(),
            error: Box::new(SyncError::Copy {
                bucket: "a".into(),
                key: "k".into(),
                source: PortError::failed("s3:CopyObject", "AccessDenied"),
            }),
        };
        assert_eq!(failed.exit_code(), 1);
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
