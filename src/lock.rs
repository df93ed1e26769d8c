//! One run per environment at a time: a lock object written with a conditional write
//! (`If-None-Match: *`), holding its owner and a heartbeat that the run renews (`If-Match`).
//! With `--state s3://bucket/prefix` the lock lives in S3 and holds across machines; otherwise
//! in the local state directory (one machine).
//!
//! A lock whose heartbeat is older than the stale limit belonged to a run that died; it is
//! reported as such and taken only with `--break-lock`. The run a lock belongs to may always
//! take it over (`resume` / `abort` of that run after a crash).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
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
    pub acquired_at: chrono::DateTime<chrono::Utc>,
    pub heartbeat_at: chrono::DateTime<chrono::Utc>,
}

impl LockOwner {
    pub fn new(run_id: &str, command: &str) -> Self {
        let now = chrono::Utc::now();
        LockOwner {
            run_id: run_id.to_string(),
            command: command.to_string(),
            host: hostname(),
            pid: std::process::id(),
            acquired_at: now,
            heartbeat_at: now,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".into())
}

#[derive(Debug, Error)]
pub enum LockError {
    #[error(
        "environment {env} is in use by run {} ({} on {}, pid {}, heartbeat {}s ago); wait for \
         it to finish, or see `envclone status {}`",
        owner.run_id, owner.command, owner.host, owner.pid, age.as_secs(), owner.run_id
    )]
    Held {
        env: String,
        owner: LockOwner,
        age: Duration,
    },
    #[error(
        "environment {env} is locked by run {}, whose heartbeat stopped {}s ago (it probably \
         died); `envclone abort {}` or `envclone resume {}` take it over, or pass --break-lock",
        owner.run_id, age.as_secs(), owner.run_id, owner.run_id
    )]
    Stale {
        env: String,
        owner: LockOwner,
        age: Duration,
    },
    #[error("the lock of environment {env} could not be read or written: {source}")]
    Store {
        env: String,
        #[source]
        source: PortError,
    },
}

/// The conditional-write operations a lock needs.
#[async_trait]
pub trait LockStore: Send + Sync {
    /// Creates `key` only if absent; PreconditionFailed if present. Returns a version tag.
    async fn create(&self, key: &str, body: Vec<u8>) -> PortResult<String>;
    async fn read(&self, key: &str) -> PortResult<Option<(Vec<u8>, String)>>;
    /// Replaces `key` only if its version is still `version`.
    async fn replace(&self, key: &str, body: Vec<u8>, version: &str) -> PortResult<String>;
    async fn remove(&self, key: &str) -> PortResult<()>;
}

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
    async fn read(&self, key: &str) -> PortResult<Option<(Vec<u8>, String)>> {
        self.objects
            .get_small_object(&self.bucket, &self.key(key))
            .await
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
}

/// Locks as files of the local state directory (`create_new` is the conditional write; the
/// version is the MD5 of the contents).
pub struct FileLocks {
    pub dir: PathBuf,
}

fn version_of(body: &[u8]) -> String {
    use md5::{Digest, Md5};
    format!("{:x}", Md5::digest(body))
}

#[async_trait]
impl LockStore for FileLocks {
    async fn create(&self, key: &str, body: Vec<u8>) -> PortResult<String> {
        use std::io::Write;
        let path = self.dir.join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| PortError::failed("lock", e.to_string()))?;
        }
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(PortError::PreconditionFailed {
                    what: path.display().to_string(),
                })
            }
            Err(e) => return Err(PortError::failed("lock", e.to_string())),
        };
        file.write_all(&body)
            .and_then(|()| file.sync_all())
            .map_err(|e| PortError::failed("lock", e.to_string()))?;
        Ok(version_of(&body))
    }
    async fn read(&self, key: &str) -> PortResult<Option<(Vec<u8>, String)>> {
        match std::fs::read(self.dir.join(key)) {
            Ok(body) => {
                let v = version_of(&body);
                Ok(Some((body, v)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PortError::failed("lock", e.to_string())),
        }
    }
    async fn replace(&self, key: &str, body: Vec<u8>, version: &str) -> PortResult<String> {
        let path = self.dir.join(key);
        match self.read(key).await? {
            Some((_, v)) if v == version => {}
            _ => {
                return Err(PortError::PreconditionFailed {
                    what: path.display().to_string(),
                })
            }
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &body)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| PortError::failed("lock", e.to_string()))?;
        Ok(version_of(&body))
    }
    async fn remove(&self, key: &str) -> PortResult<()> {
        match std::fs::remove_file(self.dir.join(key)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(PortError::failed("lock", e.to_string())),
        }
    }
}

/// A held lock. Renew it with `heartbeat` well within the stale limit; `release` at the end.
pub struct EnvLock {
    store: Arc<dyn LockStore>,
    key: String,
    env: String,
    owner: tokio::sync::Mutex<(LockOwner, String)>,
}

pub const STALE_AFTER: Duration = Duration::from_secs(300);
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(60);

fn lock_key(env: &str) -> String {
    format!("locks/{env}.json")
}

/// Takes the lock of `env` for `owner`. A lock of the same run is taken over; a stale one only
/// with `break_lock`.
pub async fn acquire(
    store: Arc<dyn LockStore>,
    env: &str,
    owner: LockOwner,
    break_lock: bool,
) -> Result<EnvLock, LockError> {
    let key = lock_key(env);
    let err = |source| LockError::Store {
        env: env.to_string(),
        source,
    };
    let body = serde_json::to_vec(&owner).expect("owner serializes");
    loop {
        match retry(|| store.create(&key, body.clone())).await {
            Ok(version) => {
                return Ok(EnvLock {
                    store,
                    key,
                    env: env.to_string(),
                    owner: tokio::sync::Mutex::new((owner, version)),
                })
            }
            Err(PortError::PreconditionFailed { .. }) => {}
            Err(e) => return Err(err(e)),
        }
        let Some((current, version)) = retry(|| store.read(&key)).await.map_err(err)? else {
            continue; // released in between: try again
        };
        let holder: LockOwner = serde_json::from_slice(&current).map_err(|e| {
            err(PortError::failed(
                "lock",
                format!("unreadable lock {key}: {e}"),
            ))
        })?;
        let age = (chrono::Utc::now() - holder.heartbeat_at)
            .to_std()
            .unwrap_or_default();
        let takeover = holder.run_id == owner.run_id;
        if !takeover && age < STALE_AFTER {
            return Err(LockError::Held {
                env: env.to_string(),
                owner: holder,
                age,
            });
        }
        if !takeover && !break_lock {
            return Err(LockError::Stale {
                env: env.to_string(),
                owner: holder,
                age,
            });
        }
        match retry(|| store.replace(&key, body.clone(), &version)).await {
            Ok(version) => {
                return Ok(EnvLock {
                    store,
                    key,
                    env: env.to_string(),
                    owner: tokio::sync::Mutex::new((owner, version)),
                })
            }
            Err(PortError::PreconditionFailed { .. }) => continue, // someone else moved first
            Err(e) => return Err(err(e)),
        }
    }
}

impl EnvLock {
    pub fn env(&self) -> &str {
        &self.env
    }

    /// Renews the heartbeat. Fails if the lock was broken by someone else.
    pub async fn heartbeat(&self) -> Result<(), LockError> {
        let mut guard = self.owner.lock().await;
        let (owner, version) = &mut *guard;
        owner.heartbeat_at = chrono::Utc::now();
        let body = serde_json::to_vec(owner).expect("owner serializes");
        let new = retry(|| self.store.replace(&self.key, body.clone(), version))
            .await
            .map_err(|source| LockError::Store {
                env: self.env.clone(),
                source,
            })?;
        *version = new;
        Ok(())
    }

    /// Removes the lock if it is still ours.
    pub async fn release(&self) -> Result<(), LockError> {
        let (_, version) = &*self.owner.lock().await;
        let err = |source| LockError::Store {
            env: self.env.clone(),
            source,
        };
        match retry(|| self.store.read(&self.key)).await.map_err(err)? {
            Some((_, v)) if &v == version => {
                retry(|| self.store.remove(&self.key)).await.map_err(err)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Arc<dyn LockStore>) {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(FileLocks {
            dir: dir.path().to_path_buf(),
        });
        (dir, s)
    }

    #[tokio::test]
    async fn one_run_at_a_time_with_takeover_and_stale_detection() {
        let (_d, s) = store();
        let a = acquire(s.clone(), "prod", LockOwner::new("run-a", "clone"), false)
            .await
            .unwrap();
        let err = acquire(s.clone(), "prod", LockOwner::new("run-b", "clone"), false)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
        assert!(err.to_string().contains("in use by run run-a"), "{err}");
        // Another environment is free.
        acquire(
            s.clone(),
            "staging",
            LockOwner::new("run-b", "clone"),
            false,
        )
        .await
        .unwrap();
        // The same run takes its own lock over (abort/resume after a crash).
        let a2 = acquire(s.clone(), "prod", LockOwner::new("run-a", "abort"), false)
            .await
            .unwrap();
        a2.heartbeat().await.unwrap();
        // The first handle lost the lock: its heartbeat fails, its release leaves it alone.
        assert!(a.heartbeat().await.is_err());
        a.release().await.unwrap();
        assert!(
            acquire(s.clone(), "prod", LockOwner::new("run-c", "clone"), false)
                .await
                .is_err()
        );
        a2.release().await.unwrap();
        acquire(s.clone(), "prod", LockOwner::new("run-c", "clone"), false)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_stale_lock_is_broken_only_on_request() {
        let (_d, s) = store();
        let mut old = LockOwner::new("run-dead", "clone");
        old.heartbeat_at -= chrono::Duration::seconds(STALE_AFTER.as_secs() as i64 + 10);
        s.create(&lock_key("prod"), serde_json::to_vec(&old).unwrap())
            .await
            .unwrap();
        let err = acquire(s.clone(), "prod", LockOwner::new("run-new", "clone"), false)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, LockError::Stale { .. }), "{err}");
        assert!(err.to_string().contains("--break-lock"), "{err}");
        acquire(s.clone(), "prod", LockOwner::new("run-new", "clone"), true)
            .await
            .unwrap();
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
