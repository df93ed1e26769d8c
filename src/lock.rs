//! One run per environment at a time: a lock object written with a conditional write
//! (`If-None-Match: *`), holding its owner, renewed by the run every minute (`If-Match`).
//! With `--state s3://bucket/prefix` the lock lives in S3 and holds across machines; otherwise
//! in the local state directory (one machine).
//!
//! - The lock's age is judged by the storage's clock: the object's `Last-Modified` (the file's
//!   mtime locally) against what the storage stamps a write with now — never the local clock
//!   against a heartbeat another machine wrote with its own.
//! - A holder that ran on this machine and whose process is gone (no such pid, a zombie, or the
//!   pid now belongs to a process started at another time) is dead at once: its lock is taken
//!   over with a warning naming the dead run.
//! - Otherwise a lock not renewed for [`STALE_AFTER`] belonged to a run that died; it is taken
//!   only with `--break-lock`, or by `resume` / `abort` of that same run. While its holder is
//!   alive and renewing, not even the same run may take it over.
//! - A run whose renewal finds the lock gone or rewritten by another owner has lost it:
//!   [`HeldLock::lost`] resolves and [`HeldLock::stop_flag`] is set, so the run stops before its
//!   next change.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ports::{ObjectStore, PortError, PortResult};
use crate::retry::retry;

/// Where locks (and shared run records) live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl StateLocation {
    /// `s3://bucket/prefix` → S3; anything else is refused (local is the default).
    pub fn parse_s3(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            format!("--state {url:?} is not an s3:// URL; write s3://BUCKET/PREFIX")
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!(
                "--state {url:?} names no bucket; write s3://BUCKET/PREFIX"
            ));
        }
        Ok(StateLocation::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.trim_end_matches('/').to_string(),
        })
    }
}

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockOwner {
    pub run_id: String,
    pub command: String,
    pub host: String,
    pub pid: u32,
    /// The holder's own clock; shown, never used to judge the lock's age.
    pub acquired_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// `/proc/sys/kernel/random/boot_id` of the holder's machine: the same host name after a
    /// reboot (or on another machine) is not the same process table.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// The holder's PID namespace (`/proc/self/ns/pid`): containers on one host share boot id
    /// and maybe host name, not pids.
    #[serde(default)]
    pub pid_ns: Option<String>,
    /// The holder's start time in clock ticks since boot (`/proc/<pid>/stat`, field 22): a pid
    /// reused by another process has another start time.
    #[serde(default)]
    pub started: Option<u64>,
}

impl LockOwner {
    /// `now` is the holder's clock (`Cloud::clock`).
    pub fn new(run_id: &str, command: &str, now: DateTime<Utc>) -> Self {
        let pid = std::process::id();
        LockOwner {
            run_id: run_id.to_string(),
            command: command.to_string(),
            host: hostname(),
            pid,
            acquired_at: now,
            heartbeat_at: now,
            boot_id: boot_id(),
            pid_ns: pid_namespace(),
            started: process_start(pid).map(|(ticks, _)| ticks),
        }
    }

    /// What is known of the holder's process from this machine.
    pub fn process(&self) -> Liveness {
        let here = (hostname(), boot_id(), pid_namespace());
        if self.host != here.0 {
            return Liveness::Unknown(format!("it runs on another machine ({})", self.host));
        }
        match (&self.boot_id, &here.1) {
            (Some(theirs), Some(ours)) if theirs == ours => {}
            _ => {
                return Liveness::Unknown(format!(
                    "host {} was restarted since, or is another machine of the same name",
                    self.host
                ))
            }
        }
        if self.pid_ns.is_none() || self.pid_ns != here.2 {
            return Liveness::Unknown("it runs in another PID namespace (container)".into());
        }
        match process_start(self.pid) {
            None => Liveness::Gone(format!("process {} no longer exists", self.pid)),
            Some((_, state)) if state == 'Z' || state == 'X' => {
                Liveness::Gone(format!("process {} has exited", self.pid))
            }
            Some((ticks, _)) if self.started.is_some_and(|s| s != ticks) => {
                Liveness::Gone(format!(
                    "process {} has exited (pid {} now belongs to a process started later)",
                    self.pid, self.pid
                ))
            }
            Some(_) => Liveness::Alive,
        }
    }
}

/// Whether a lock holder's process runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// On this machine, and running.
    Alive,
    /// On this machine, and gone (why).
    Gone(String),
    /// Not to be seen from here (why): only its renewals tell.
    Unknown(String),
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".into())
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
}

fn pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|l| l.display().to_string())
}

/// The start time (clock ticks since boot) and state letter of process `pid`, from
/// `/proc/<pid>/stat` (proc(5)); None if there is no such process.
fn process_start(pid: u32) -> Option<(u64, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces and parentheses: the
    // fields after the last ')' start with field 3 (state); the start time is field 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let ticks = fields.get(22 - 3)?.parse().ok()?;
    Some((ticks, state))
}

#[derive(Debug, Error)]
pub enum LockError {
    #[error(
        "environment {env} is in use by run {} ({} on {}, pid {}, renewed {}s ago by the lock \
         store's clock); wait for it to finish, or see `envclone status {}`",
        owner.run_id, owner.command, owner.host, owner.pid, age.as_secs(), owner.run_id
    )]
    Held {
        env: String,
        owner: LockOwner,
        age: Duration,
    },
    #[error(
        "run {} still holds environment {env} ({} on {}, pid {}, renewed {}s ago by the lock \
         store's clock); a run takes its own lock over only once its holder is gone or the lock \
         has gone {}s without renewal: stop that process first (Ctrl-C returns the source to \
         service), or if it died on another machine, try again in {}s",
        owner.run_id, owner.command, owner.host, owner.pid, age.as_secs(), STALE_AFTER.as_secs(),
        STALE_AFTER.saturating_sub(*age).as_secs()
    )]
    StillRunning {
        env: String,
        owner: LockOwner,
        age: Duration,
    },
    #[error(
        "environment {env} is locked by run {} ({} on {}, pid {}), not renewed for {}s by the \
         lock store's clock (it probably died); `envclone abort {}` or `envclone resume {}` \
         take it over, or pass --break-lock",
        owner.run_id, owner.command, owner.host, owner.pid, age.as_secs(), owner.run_id,
        owner.run_id
    )]
    Stale {
        env: String,
        owner: LockOwner,
        age: Duration,
    },
    #[error(
        "environment {env} is locked by run {} ({} on {}, pid {}), which died ({why}) part-way: \
         {left}; `envclone abort {}` undoes it, `envclone resume {}` finishes it (or pass \
         --break-lock to go on regardless)",
        owner.run_id, owner.command, owner.host, owner.pid, owner.run_id, owner.run_id
    )]
    DiedPartWay {
        env: String,
        owner: LockOwner,
        why: String,
        left: String,
    },
    #[error(
        "run {run_id} lost the lock of environment {env}: {}",
        match by {
            Some(o) => format!(
                "it now names run {} ({} on {}, pid {})",
                o.run_id, o.command, o.host, o.pid
            ),
            None => "it was removed".to_string(),
        }
    )]
    Lost {
        env: String,
        run_id: String,
        by: Option<LockOwner>,
    },
    #[error("the lock of environment {env} could not be read or written: {source}")]
    Store {
        env: String,
        #[source]
        source: PortError,
    },
}

/// A lock as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLock {
    pub body: Vec<u8>,
    pub version: String,
    /// When it was last written, on the storage's clock.
    pub modified: DateTime<Utc>,
}

/// The conditional-write operations a lock needs.
#[async_trait]
pub trait LockStore: Send + Sync {
    /// Creates `key` only if absent; PreconditionFailed if present. Returns a version tag.
    async fn create(&self, key: &str, body: Vec<u8>) -> PortResult<String>;
    async fn read(&self, key: &str) -> PortResult<Option<StoredLock>>;
    /// Replaces `key` only if its version is still `version`.
    async fn replace(&self, key: &str, body: Vec<u8>, version: &str) -> PortResult<String>;
    async fn remove(&self, key: &str) -> PortResult<()>;
    /// Now on the storage's clock: the time it stamps a write made now with.
    async fn now(&self) -> PortResult<DateTime<Utc>>;
    /// The keys of every lock (`locks/<env>.json`).
    async fn keys(&self) -> PortResult<Vec<String>>;
}

const LOCKS: &str = "locks/";
/// Written to learn the storage's clock; not a lock (no `.json`).
const CLOCK: &str = "locks/.clock";

/// Locks as S3 objects (conditional writes, across machines).
pub struct S3Locks {
    pub objects: Arc<dyn ObjectStore>,
    pub bucket: String,
    pub prefix: String,
}

impl S3Locks {
    fn key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }
}

#[async_trait]
impl LockStore for S3Locks {
    async fn create(&self, key: &str, body: Vec<u8>) -> PortResult<String> {
        self.objects
            .put_small_object(&self.bucket, &self.key(key), body, Some("*"))
            .await
    }
    async fn read(&self, key: &str) -> PortResult<Option<StoredLock>> {
        Ok(self
            .objects
            .get_small_object(&self.bucket, &self.key(key))
            .await?
            .map(|o| StoredLock {
                body: o.body,
                version: o.etag,
                modified: o.last_modified,
            }))
    }
    async fn replace(&self, key: &str, body: Vec<u8>, version: &str) -> PortResult<String> {
        self.objects
            .put_small_object(&self.bucket, &self.key(key), body, Some(version))
            .await
    }
    async fn remove(&self, key: &str) -> PortResult<()> {
        self.objects
            .delete_object(&self.bucket, &self.key(key))
            .await
    }
    /// S3 stamps every write with its own Last-Modified (Amazon S3 User Guide, "Working with
    /// object metadata": "Last-Modified … the date the object was created or last
    /// modified"): write a marker and read its stamp back.
    async fn now(&self) -> PortResult<DateTime<Utc>> {
        let key = self.key(CLOCK);
        self.objects
            .put_small_object(&self.bucket, &key, Vec::new(), None)
            .await?;
        match self.objects.get_small_object(&self.bucket, &key).await? {
            Some(o) => Ok(o.last_modified),
            None => Err(PortError::failed(
                "s3:GetObject",
                format!(
                    "s3://{}/{key} was written and then not found; the lock store's clock \
                     cannot be read",
                    self.bucket
                ),
            )),
        }
    }
    async fn keys(&self) -> PortResult<Vec<String>> {
        let base = self.key("");
        let prefix = self.key(LOCKS);
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .objects
                .list_page(&self.bucket, &prefix, token.take())
                .await?;
            keys.extend(
                page.objects
                    .into_iter()
                    .filter(|o| o.key.ends_with(".json"))
                    .map(|o| o.key[base.len()..].to_string()),
            );
            match page.next_token {
                Some(t) => token = Some(t),
                None => return Ok(keys),
            }
        }
    }
}

/// Locks as files of the local state directory (`create_new` is the conditional write; the
/// version is the MD5 of the contents; the age is the file's mtime against the mtime a write
/// gets now, so a state directory on a network file system is judged by its server's clock).
pub struct FileLocks {
    pub dir: PathBuf,
}

fn version_of(body: &[u8]) -> String {
    use md5::{Digest, Md5};
    format!("{:x}", Md5::digest(body))
}

fn io_error(e: std::io::Error) -> PortError {
    PortError::failed("lock", e.to_string())
}

/// `body` written and synced to a file of its own next to `path` (`.<name>.<pid>.<n>.tmp`).
fn write_temp(path: &std::path::Path, body: &[u8]) -> PortResult<PathBuf> {
    use std::io::Write;
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(body).and_then(|()| f.sync_all()))
        .map_err(io_error)?;
    Ok(tmp)
}

#[async_trait]
impl LockStore for FileLocks {
    async fn create(&self, key: &str, body: Vec<u8>) -> PortResult<String> {
        let path = self.dir.join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        // Written whole under a name of its own, then linked in: link(2) fails if the name
        // exists, and a run killed at any moment leaves either no lock or a whole one — never
        // an empty file that no run can read.
        let tmp = write_temp(&path, &body)?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(version_of(&body)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(PortError::PreconditionFailed {
                    what: path.display().to_string(),
                })
            }
            Err(e) => Err(io_error(e)),
        }
    }
    async fn read(&self, key: &str) -> PortResult<Option<StoredLock>> {
        use std::io::Read;
        // Contents and mtime from one open file: a replace renames a new file in.
        let mut file = match std::fs::File::open(self.dir.join(key)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(e)),
        };
        let mut body = Vec::new();
        file.read_to_end(&mut body).map_err(io_error)?;
        let modified = file
            .metadata()
            .and_then(|m| m.modified())
            .map_err(io_error)?;
        Ok(Some(StoredLock {
            version: version_of(&body),
            body,
            modified: modified.into(),
        }))
    }
    async fn replace(&self, key: &str, body: Vec<u8>, version: &str) -> PortResult<String> {
        let path = self.dir.join(key);
        match self.read(key).await? {
            Some(l) if l.version == version => {}
            _ => {
                return Err(PortError::PreconditionFailed {
                    what: path.display().to_string(),
                })
            }
        }
        let tmp = write_temp(&path, &body)?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_error(e)
        })?;
        Ok(version_of(&body))
    }
    async fn remove(&self, key: &str) -> PortResult<()> {
        match std::fs::remove_file(self.dir.join(key)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(e)),
        }
    }
    async fn now(&self) -> PortResult<DateTime<Utc>> {
        let path = self.dir.join(CLOCK);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        std::fs::write(&path, b"")
            .and_then(|()| std::fs::metadata(&path))
            .and_then(|m| m.modified())
            .map(Into::into)
            .map_err(io_error)
    }
    async fn keys(&self) -> PortResult<Vec<String>> {
        let entries = match std::fs::read_dir(self.dir.join(LOCKS)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(e)),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let name = entry.map_err(io_error)?.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".json") && !name.starts_with('.') {
                keys.push(format!("{LOCKS}{name}"));
            }
        }
        keys.sort();
        Ok(keys)
    }
}

pub const STALE_AFTER: Duration = Duration::from_secs(300);
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(60);

fn lock_key(env: &str) -> String {
    format!("{LOCKS}{env}.json")
}

fn parse_owner(key: &str, body: &[u8]) -> PortResult<LockOwner> {
    serde_json::from_slice(body).map_err(|e| {
        PortError::failed(
            "lock",
            format!(
                "the lock {key} cannot be read ({e}); it was not written by this version of \
                 envclone — if no run of this environment is running, remove it"
            ),
        )
    })
}

/// A lock someone holds, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub env: String,
    pub owner: LockOwner,
    /// Since its last renewal, by the storage's clock.
    pub age: Duration,
    pub process: Liveness,
}

impl Holding {
    /// Whether its holder is gone or its renewals stopped.
    pub fn dead(&self) -> bool {
        matches!(self.process, Liveness::Gone(_)) || self.age >= STALE_AFTER
    }

    pub fn describe(&self) -> String {
        match &self.process {
            Liveness::Gone(why) => format!("dead: {why}"),
            _ if self.age >= STALE_AFTER => format!(
                "stale: not renewed for {}s (it probably died)",
                self.age.as_secs()
            ),
            Liveness::Alive => "running on this machine".into(),
            Liveness::Unknown(why) => format!(
                "not to be seen from here ({why}); stale once not renewed for {}s",
                STALE_AFTER.as_secs()
            ),
        }
    }
}

/// Every lock in `store` and who holds it.
pub async fn holdings(store: &dyn LockStore) -> PortResult<Vec<Holding>> {
    let keys = retry(|| store.keys()).await?;
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let now = retry(|| store.now()).await?;
    let mut held = Vec::new();
    for key in keys {
        let Some(stored) = retry(|| store.read(&key)).await? else {
            continue; // released since the listing
        };
        let owner = parse_owner(&key, &stored.body)?;
        let env = key
            .strip_prefix(LOCKS)
            .and_then(|k| k.strip_suffix(".json"))
            .unwrap_or(&key)
            .to_string();
        held.push(Holding {
            env,
            age: (now - stored.modified).to_std().unwrap_or_default(),
            process: owner.process(),
            owner,
        });
    }
    Ok(held)
}

/// A dead holder whose lock was taken over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takeover {
    pub from: LockOwner,
    pub why: String,
}

impl std::fmt::Display for Takeover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "took over the lock of run {} ({} on {}, pid {}): {}",
            self.from.run_id, self.from.command, self.from.host, self.from.pid, self.why
        )
    }
}

/// Takes the lock of `env` for `owner`. A lock whose holder is gone from this machine is taken
/// over; one not renewed for [`STALE_AFTER`] only by the same run or with `break_lock`; a live
/// holder's never.
pub async fn acquire(
    store: Arc<dyn LockStore>,
    env: &str,
    owner: LockOwner,
    break_lock: bool,
) -> Result<EnvLock, LockError> {
    acquire_checking(store, env, owner, break_lock, &|_| None).await
}

/// [`acquire`], where `part_way(run_id)` says what a run left unfinished (from its record):
/// another run does not take over at once the lock of a dead holder that left work half done
/// — that is for `abort`/`resume` of that run, or `--break-lock`.
pub async fn acquire_checking(
    store: Arc<dyn LockStore>,
    env: &str,
    owner: LockOwner,
    break_lock: bool,
    part_way: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<EnvLock, LockError> {
    let key = lock_key(env);
    let err = |source| LockError::Store {
        env: env.to_string(),
        source,
    };
    let body = serde_json::to_vec(&owner).expect("owner serializes");
    let mut took_over: Option<(Takeover, String)> = None;
    loop {
        let created = match &took_over {
            None => retry(|| store.create(&key, body.clone())).await,
            Some((_, version)) => retry(|| store.replace(&key, body.clone(), version)).await,
        };
        match created {
            Ok(version) => {
                return Ok(EnvLock {
                    store,
                    key,
                    env: env.to_string(),
                    took_over: took_over.map(|(t, _)| t),
                    owner: tokio::sync::Mutex::new((owner, version)),
                    acquired: tokio::time::Instant::now(),
                })
            }
            // Someone else moved first (created it, renewed it, or took it over).
            Err(PortError::PreconditionFailed { .. } | PortError::NotFound { .. }) => {
                took_over = None
            }
            Err(e) => return Err(err(e)),
        }
        let Some(current) = retry(|| store.read(&key)).await.map_err(err)? else {
            continue; // released in between: try again
        };
        let holder = parse_owner(&key, &current.body).map_err(err)?;
        let now = retry(|| store.now()).await.map_err(err)?;
        let age = (now - current.modified).to_std().unwrap_or_default();
        let same_run = holder.run_id == owner.run_id;
        let why = match holder.process() {
            Liveness::Gone(why) if same_run || break_lock => why,
            Liveness::Gone(why) => match part_way(&holder.run_id) {
                None => why,
                Some(left) => {
                    return Err(LockError::DiedPartWay {
                        env: env.to_string(),
                        owner: holder,
                        why,
                        left,
                    })
                }
            },
            _ if age < STALE_AFTER => {
                let (env, owner) = (env.to_string(), holder);
                return Err(match same_run {
                    true => LockError::StillRunning { env, owner, age },
                    false => LockError::Held { env, owner, age },
                });
            }
            _ if same_run || break_lock => format!(
                "not renewed for {}s by the lock store's clock{}",
                age.as_secs(),
                if same_run { "" } else { " (--break-lock)" }
            ),
            _ => {
                return Err(LockError::Stale {
                    env: env.to_string(),
                    owner: holder,
                    age,
                })
            }
        };
        took_over = Some((Takeover { from: holder, why }, current.version));
    }
}

/// A held lock. Renew it with `heartbeat` well within the stale limit; `release` at the end.
pub struct EnvLock {
    store: Arc<dyn LockStore>,
    key: String,
    env: String,
    took_over: Option<Takeover>,
    owner: tokio::sync::Mutex<(LockOwner, String)>,
    /// When it was taken, on the monotonic clock: each heartbeat's time is `acquired_at` plus
    /// the time held, on the same clock `acquired_at` was read from.
    acquired: tokio::time::Instant,
}

impl EnvLock {
    pub fn env(&self) -> &str {
        &self.env
    }

    /// The dead holder this lock was taken from, if any.
    pub fn took_over(&self) -> Option<&Takeover> {
        self.took_over.as_ref()
    }

    /// Renews the lock. [`LockError::Lost`] if it is gone or names another owner now.
    pub async fn heartbeat(&self) -> Result<(), LockError> {
        let mut guard = self.owner.lock().await;
        let (owner, version) = &mut *guard;
        owner.heartbeat_at = owner.acquired_at
            + chrono::Duration::from_std(self.acquired.elapsed()).unwrap_or_default();
        let body = serde_json::to_vec(owner).expect("owner serializes");
        let err = |source| LockError::Store {
            env: self.env.clone(),
            source,
        };
        match retry(|| self.store.replace(&self.key, body.clone(), version)).await {
            Ok(new) => {
                *version = new;
                Ok(())
            }
            // S3 answers a PutObject with If-Match 412 Precondition Failed when the ETag
            // differs and 404 NoSuchKey when the object is gone (Amazon S3 User Guide,
            // "Conditional writes").
            Err(PortError::PreconditionFailed { .. } | PortError::NotFound { .. }) => {
                let by = retry(|| self.store.read(&self.key))
                    .await
                    .map_err(err)?
                    .and_then(|l| serde_json::from_slice::<LockOwner>(&l.body).ok());
                Err(LockError::Lost {
                    env: self.env.clone(),
                    run_id: owner.run_id.clone(),
                    by,
                })
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Removes the lock if it is still ours.
    pub async fn release(&self) -> Result<(), LockError> {
        let (_, version) = &*self.owner.lock().await;
        let err = |source| LockError::Store {
            env: self.env.clone(),
            source,
        };
        match retry(|| self.store.read(&self.key)).await.map_err(err)? {
            Some(l) if &l.version == version => {
                retry(|| self.store.remove(&self.key)).await.map_err(err)
            }
            _ => Ok(()),
        }
    }
}

/// Renewals that fail for this long (a store that cannot be reached) count as a lost lock:
/// one more interval and another run may judge it stale and take it.
pub const RENEW_DEADLINE: Duration = STALE_AFTER.saturating_sub(HEARTBEAT_EVERY);

/// A lock renewed every [`HEARTBEAT_EVERY`] by a task of its own.
pub struct HeldLock {
    lock: Arc<EnvLock>,
    heartbeat: tokio::task::JoinHandle<()>,
    lost: tokio::sync::watch::Receiver<Option<String>>,
    stop: Arc<AtomicBool>,
}

/// Starts renewing `lock`. `warn` hears of renewals that failed but may still succeed, and of
/// the lock found lost.
pub fn hold(lock: EnvLock, warn: impl Fn(String) + Send + Sync + 'static) -> HeldLock {
    let lock = Arc::new(lock);
    let (tell, lost) = tokio::sync::watch::channel(None);
    let stop = Arc::new(AtomicBool::new(false));
    let (beating, stopping) = (lock.clone(), stop.clone());
    let heartbeat = tokio::spawn(async move {
        let mut renewed = tokio::time::Instant::now();
        let why = loop {
            tokio::time::sleep(HEARTBEAT_EVERY).await;
            match beating.heartbeat().await {
                Ok(()) => renewed = tokio::time::Instant::now(),
                Err(e @ LockError::Lost { .. }) => break e.to_string(),
                Err(e) if renewed.elapsed() >= RENEW_DEADLINE => {
                    break format!(
                        "{e}; not renewed for {}s, so another run may take environment {} over",
                        renewed.elapsed().as_secs(),
                        beating.env()
                    )
                }
                Err(e) => warn(format!(
                    "{e}; trying again in {}s",
                    HEARTBEAT_EVERY.as_secs()
                )),
            }
        };
        stopping.store(true, Ordering::SeqCst);
        warn(format!(
            "{why}; stopping before the next change (the call in flight finishes; a clone or \
             migration returns the source to service)"
        ));
        tell.send_replace(Some(why));
        // Keep the sender: `lost()` answers from the value sent.
        std::future::pending::<()>().await;
    });
    HeldLock {
        lock,
        heartbeat,
        lost,
        stop,
    }
}

impl HeldLock {
    pub fn lock(&self) -> &EnvLock {
        &self.lock
    }

    /// Resolves (with why) once the lock is found lost; never otherwise.
    pub fn lost(&self) -> impl Future<Output = String> + Send + 'static {
        let mut lost = self.lost.clone();
        async move {
            let why = match lost.wait_for(Option::is_some).await {
                Ok(why) => why.clone(),
                Err(_) => None,
            };
            match why {
                Some(why) => why,
                None => std::future::pending().await,
            }
        }
    }

    /// Set once the lock is lost: for [`crate::retry::stoppable`], so no new call starts.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Stops renewing and removes the lock if it is still ours.
    pub async fn release(self) -> Result<(), LockError> {
        self.heartbeat.abort();
        self.lock.release().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// Locks in memory, stamped by a clock of their own (the storage's), which the tests set.
    #[derive(Default)]
    struct MemoryLocks {
        objects: Mutex<BTreeMap<String, StoredLock>>,
        clock: Mutex<DateTime<Utc>>,
        /// Every call fails with a transient error (the store cannot be reached).
        down: AtomicBool,
    }

    impl MemoryLocks {
        fn new() -> Arc<Self> {
            let s = MemoryLocks::default();
            *s.clock.lock().unwrap() = Utc::now();
            Arc::new(s)
        }
        fn advance(&self, secs: i64) {
            *self.clock.lock().unwrap() += chrono::Duration::seconds(secs);
        }
        fn check(&self) -> PortResult<()> {
            match self.down.load(Ordering::SeqCst) {
                true => Err(PortError::failed("lock", "AccessDenied: the store is down")),
                false => Ok(()),
            }
        }
        /// Another party writes the lock unconditionally.
        fn overwrite(&self, env: &str, owner: &LockOwner) {
            let body = serde_json::to_vec(owner).unwrap();
            let stored = StoredLock {
                version: version_of(&body),
                body,
                modified: *self.clock.lock().unwrap(),
            };
            self.objects.lock().unwrap().insert(lock_key(env), stored);
        }
    }

    #[async_trait]
    impl LockStore for MemoryLocks {
        async fn create(&self, key: &str, body: Vec<u8>) -> PortResult<String> {
            self.check()?;
            let mut objects = self.objects.lock().unwrap();
            if objects.contains_key(key) {
                return Err(PortError::PreconditionFailed { what: key.into() });
            }
            let version = version_of(&body);
            let modified = *self.clock.lock().unwrap();
            objects.insert(
                key.into(),
                StoredLock {
                    body,
                    version: version.clone(),
                    modified,
                },
            );
            Ok(version)
        }
        async fn read(&self, key: &str) -> PortResult<Option<StoredLock>> {
            self.check()?;
            Ok(self.objects.lock().unwrap().get(key).cloned())
        }
        async fn replace(&self, key: &str, body: Vec<u8>, version: &str) -> PortResult<String> {
            self.check()?;
            let mut objects = self.objects.lock().unwrap();
            match objects.get(key) {
                None => return Err(PortError::NotFound { what: key.into() }),
                Some(l) if l.version != version => {
                    return Err(PortError::PreconditionFailed { what: key.into() })
                }
                Some(_) => {}
            }
            let version = version_of(&body);
            let modified = *self.clock.lock().unwrap();
            objects.insert(
                key.into(),
                StoredLock {
                    body,
                    version: version.clone(),
                    modified,
                },
            );
            Ok(version)
        }
        async fn remove(&self, key: &str) -> PortResult<()> {
            self.check()?;
            self.objects.lock().unwrap().remove(key);
            Ok(())
        }
        async fn now(&self) -> PortResult<DateTime<Utc>> {
            self.check()?;
            Ok(*self.clock.lock().unwrap())
        }
        async fn keys(&self) -> PortResult<Vec<String>> {
            self.check()?;
            Ok(self.objects.lock().unwrap().keys().cloned().collect())
        }
    }

    fn owner(run: &str, command: &str) -> LockOwner {
        LockOwner::new(run, command, Utc::now())
    }

    /// A process of this machine that has exited (reaped), as a lock would have named it.
    fn exited_process(run: &str) -> LockOwner {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut holder = owner(run, "clone");
        holder.pid = child.id();
        holder.started = process_start(child.id()).map(|(t, _)| t);
        assert!(holder.started.is_some(), "/proc shows the child");
        child.kill().unwrap();
        child.wait().unwrap();
        holder
    }

    #[tokio::test]
    async fn one_run_at_a_time_per_environment() {
        let s = MemoryLocks::new();
        let a = acquire(s.clone(), "prod", owner("run-a", "clone"), false)
            .await
            .unwrap();
        let err = acquire(s.clone(), "prod", owner("run-b", "clone"), false)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
        assert!(err.to_string().contains("in use by run run-a"), "{err}");
        // Even with --break-lock: the holder renews it.
        let err = acquire(s.clone(), "prod", owner("run-b", "clone"), true)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
        // Another environment is free.
        acquire(s.clone(), "staging", owner("run-b", "clone"), false)
            .await
            .unwrap();
        a.release().await.unwrap();
        acquire(s.clone(), "prod", owner("run-c", "clone"), false)
            .await
            .unwrap();
    }

    /// Issue 10 item 7: `abort`/`resume` of a run took its lock over even while that run's
    /// process was alive and renewing it (two processes of one run changing the environment at
    /// once). Fails before the fix: the second acquire succeeded.
    #[tokio::test]
    async fn the_same_run_takes_its_lock_over_only_once_its_holder_stopped() {
        let s = MemoryLocks::new();
        let a = acquire(s.clone(), "prod", owner("run-a", "clone"), false)
            .await
            .unwrap();
        s.advance(STALE_AFTER.as_secs() as i64 - 1);
        let err = acquire(s.clone(), "prod", owner("run-a", "abort"), false)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, LockError::StillRunning { .. }), "{err}");
        assert!(err.to_string().contains("run run-a still holds"), "{err}");
        // Renewed: fresh again.
        a.heartbeat().await.unwrap();
        s.advance(STALE_AFTER.as_secs() as i64 - 1);
        assert!(acquire(s.clone(), "prod", owner("run-a", "abort"), false)
            .await
            .is_err());
        // Not renewed for the stale limit: the same run takes it over, without --break-lock.
        s.advance(1);
        let a2 = acquire(s.clone(), "prod", owner("run-a", "abort"), false)
            .await
            .unwrap();
        let took = a2.took_over().expect("a takeover is reported");
        assert_eq!(took.from.run_id, "run-a");
        assert!(took.why.contains("not renewed for 300s"), "{took}");
        // The first handle lost the lock: its renewal says so, its release leaves it alone.
        let err = a.heartbeat().await.err().unwrap();
        assert!(matches!(err, LockError::Lost { .. }), "{err}");
        assert!(
            err.to_string().contains("now names run run-a (abort"),
            "{err}"
        );
        a.release().await.unwrap();
        assert!(acquire(s.clone(), "prod", owner("run-c", "clone"), false)
            .await
            .is_err());
        a2.release().await.unwrap();
        acquire(s.clone(), "prod", owner("run-c", "clone"), false)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_stale_lock_is_broken_only_on_request() {
        let s = MemoryLocks::new();
        let mut old = owner("run-dead", "clone");
        old.host = "other-machine".into();
        s.overwrite("prod", &old);
        s.advance(STALE_AFTER.as_secs() as i64 + 10);
        let err = acquire(s.clone(), "prod", owner("run-new", "clone"), false)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, LockError::Stale { .. }), "{err}");
        assert!(err.to_string().contains("--break-lock"), "{err}");
        assert!(err.to_string().contains("not renewed for 310s"), "{err}");
        let l = acquire(s.clone(), "prod", owner("run-new", "clone"), true)
            .await
            .unwrap();
        assert!(l.took_over().unwrap().why.contains("--break-lock"));
    }

    /// Issue 10 item 7: the age of a lock was the local clock minus the heartbeat time the
    /// holder's machine wrote with its own clock. Fails before the fix: a holder whose clock is
    /// ten minutes behind looked stale while renewing, and one whose clock is ahead looked
    /// fresh long after it died.
    #[tokio::test]
    async fn a_lock_is_aged_by_the_stores_clock_not_the_writers() {
        let s = MemoryLocks::new();
        let mut behind = owner("run-behind", "clone");
        behind.host = "machine-b".into();
        behind.heartbeat_at -= chrono::Duration::seconds(600);
        behind.acquired_at = behind.heartbeat_at;
        s.overwrite("prod", &behind);
        let err = acquire(s.clone(), "prod", owner("run-new", "clone"), false)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
        assert!(err.to_string().contains("renewed 0s ago"), "{err}");

        let mut ahead = owner("run-ahead", "clone");
        ahead.host = "machine-c".into();
        ahead.heartbeat_at += chrono::Duration::seconds(3600);
        s.overwrite("staging", &ahead);
        s.advance(STALE_AFTER.as_secs() as i64);
        let err = acquire(s.clone(), "staging", owner("run-new", "clone"), false)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, LockError::Stale { .. }), "{err}");
    }

    /// The same, for locks in the state directory: the file's mtime tells the age.
    #[tokio::test]
    async fn a_file_lock_is_aged_by_its_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let s: Arc<dyn LockStore> = Arc::new(FileLocks {
            dir: dir.path().to_path_buf(),
        });
        let mut holder = owner("run-old", "clone");
        holder.host = "machine-b".into(); // a shared (network) state directory
        s.create(&lock_key("prod"), serde_json::to_vec(&holder).unwrap())
            .await
            .unwrap();
        let err = acquire(s.clone(), "prod", owner("run-new", "clone"), false)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
        let file = std::fs::File::options()
            .write(true)
            .open(dir.path().join(lock_key("prod")))
            .unwrap();
        file.set_modified(std::time::SystemTime::now() - STALE_AFTER - Duration::from_secs(5))
            .unwrap();
        let err = acquire(s.clone(), "prod", owner("run-new", "clone"), false)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, LockError::Stale { .. }), "{err}");
        assert_eq!(
            holdings(&*s).await.unwrap()[0].describe().split(':').next(),
            Some("stale")
        );
    }

    /// Issue 10 item 7: a run of this machine killed right after taking the lock left it
    /// refusing every run for five minutes ("heartbeat 0s ago"). Fails before the fix: the
    /// acquire was refused as Held.
    #[tokio::test]
    async fn a_holder_of_this_machine_whose_process_is_gone_is_dead_at_once() {
        let s = MemoryLocks::new();
        let dead = exited_process("run-killed");
        s.overwrite("prod", &dead);
        let held = holdings(&*s).await.unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].env, "prod");
        assert_eq!(held[0].owner.run_id, "run-killed");
        assert!(held[0].dead(), "{:?}", held[0]);
        assert!(
            held[0].describe().contains("no longer exists"),
            "{:?}",
            held[0]
        );
        let l = acquire(s.clone(), "prod", owner("run-new", "clone"), false)
            .await
            .unwrap();
        let took = l.took_over().expect("the takeover is reported");
        assert_eq!(took.from.run_id, "run-killed");
        assert!(took.to_string().contains("run-killed"), "{took}");
        assert!(took
            .why
            .contains(&format!("process {} no longer exists", dead.pid)));
    }

    /// A dead holder that left work half done (its record says so) is not taken over by another
    /// run at once: `abort`/`resume` of that run are, or `--break-lock`.
    #[tokio::test]
    async fn a_dead_holder_that_left_work_half_done_is_taken_over_only_by_its_own_run() {
        let s = MemoryLocks::new();
        let dead = exited_process("run-killed");
        s.overwrite("prod", &dead);
        let part_way = |run: &str| (run == "run-killed").then(|| "the source in Standby".into());
        let err = acquire_checking(
            s.clone(),
            "prod",
            owner("run-new", "clone"),
            false,
            &part_way,
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(err, LockError::DiedPartWay { .. }), "{err}");
        assert!(
            err.to_string().contains("the source in Standby")
                && err.to_string().contains("`envclone abort run-killed`"),
            "{err}"
        );
        let l = acquire_checking(
            s.clone(),
            "prod",
            owner("run-killed", "abort"),
            false,
            &part_way,
        )
        .await
        .unwrap();
        l.release().await.unwrap();
        s.overwrite("prod", &dead);
        acquire_checking(
            s.clone(),
            "prod",
            owner("run-new", "clone"),
            true,
            &part_way,
        )
        .await
        .unwrap();
    }

    /// A pid now used by another process is not the holder (proc(5): the start time differs).
    #[tokio::test]
    async fn a_reused_pid_is_not_the_holder() {
        let s = MemoryLocks::new();
        let mut holder = owner("run-old", "clone");
        // This very process, started at another time: the pid was reused.
        holder.started = holder.started.map(|t| t + 1);
        assert_eq!(holder.pid, std::process::id());
        s.overwrite("prod", &holder);
        let l = acquire(s.clone(), "prod", owner("run-new", "clone"), false)
            .await
            .unwrap();
        assert!(
            l.took_over().unwrap().why.contains("started later"),
            "{}",
            l.took_over().unwrap()
        );
        // The right start time: alive, and held.
        s.overwrite("staging", &owner("run-live", "clone"));
        assert!(matches!(
            acquire(s.clone(), "staging", owner("run-new", "clone"), false).await,
            Err(LockError::Held { .. })
        ));
        // Another machine's holder is never judged by this machine's process table.
        let mut remote = exited_process("run-remote");
        remote.host = "machine-b".into();
        s.overwrite("qa", &remote);
        assert_eq!(
            remote.process(),
            Liveness::Unknown("it runs on another machine (machine-b)".into())
        );
        assert!(matches!(
            acquire(s.clone(), "qa", owner("run-new", "clone"), false).await,
            Err(LockError::Held { .. })
        ));
    }

    /// Issue 10 item 7: a run whose lock was taken (broken by `--break-lock`, or taken over)
    /// carried on, its renewal failures only printed. Fails before the fix: nothing told the
    /// run to stop.
    #[tokio::test(start_paused = true)]
    async fn a_lost_lock_is_found_at_the_next_renewal_and_stops_the_run() {
        let s = MemoryLocks::new();
        let held = hold(
            acquire(s.clone(), "prod", owner("run-a", "clone"), false)
                .await
                .unwrap(),
            |_| {},
        );
        let lost = held.lost();
        tokio::pin!(lost);
        // Renewals keep it.
        tokio::select! {
            _ = &mut lost => panic!("lost while renewing"),
            () = tokio::time::sleep(HEARTBEAT_EVERY * 3 + Duration::from_secs(1)) => {}
        }
        assert!(!held.stop_flag().load(Ordering::SeqCst));
        let mut thief = owner("run-b", "clone");
        thief.host = "machine-b".into();
        s.overwrite("prod", &thief);
        let why = tokio::time::timeout(HEARTBEAT_EVERY + Duration::from_secs(1), lost)
            .await
            .expect("found lost at the next renewal");
        assert!(why.contains("lost the lock of environment prod"), "{why}");
        assert!(why.contains("now names run run-b"), "{why}");
        assert!(held.stop_flag().load(Ordering::SeqCst));
        // Releasing leaves the new owner's lock alone.
        held.release().await.unwrap();
        assert!(s.objects.lock().unwrap().contains_key(&lock_key("prod")));
    }

    /// A store that cannot be reached for as long as others would wait before judging the lock
    /// stale: the lock counts as lost.
    #[tokio::test(start_paused = true)]
    async fn a_lock_that_cannot_be_renewed_counts_as_lost_before_it_looks_stale() {
        let s = MemoryLocks::new();
        let warnings = Arc::new(Mutex::new(Vec::new()));
        let heard = warnings.clone();
        let held = hold(
            acquire(s.clone(), "prod", owner("run-a", "clone"), false)
                .await
                .unwrap(),
            move |w| heard.lock().unwrap().push(w),
        );
        s.down.store(true, Ordering::SeqCst);
        let started = tokio::time::Instant::now();
        let why = tokio::time::timeout(STALE_AFTER, held.lost())
            .await
            .expect("lost before it could look stale to another run");
        assert!(
            started.elapsed() >= RENEW_DEADLINE,
            "{:?}",
            started.elapsed()
        );
        assert!(why.contains("not renewed for"), "{why}");
        assert!(!warnings.lock().unwrap().is_empty());
        assert!(held.stop_flag().load(Ordering::SeqCst));
    }

    #[test]
    fn state_urls() {
        assert_eq!(
            StateLocation::parse_s3("s3://b/team/envclone/").unwrap(),
            StateLocation::S3 {
                bucket: "b".into(),
                prefix: "team/envclone".into()
            }
        );
        assert!(StateLocation::parse_s3("b/x").is_err());
        assert!(StateLocation::parse_s3("s3:///x").is_err());
    }
}
