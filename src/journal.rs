//! The run journal: every event of a run appended to `<state-dir>/runs/<run-id>.jsonl` and
//! flushed to disk (fsync) before the workflow goes on, so what a run did survives a crash.
//!
//! Events carry no secrets: NoEcho parameter values are masked before they reach an event.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::events::{Event, EventSink};

pub struct FileJournal {
    path: PathBuf,
    file: Mutex<File>,
}

impl FileJournal {
    pub fn create(state_dir: &Path, run_id: &str) -> std::io::Result<Self> {
        let dir = state_dir.join("runs");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{run_id}.jsonl"));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(FileJournal {
            path,
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl EventSink for FileJournal {
    fn emit(&self, event: &Event) {
        let mut line = serde_json::to_string(event).expect("events serialize");
        line.push('\n');
        let mut file = self.file.lock().expect("journal lock");
        // A journal that cannot be written is reported once per event on stderr rather than
        // aborting a run that may have the source in Standby.
        if let Err(e) = file
            .write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
        {
            eprintln!(
                "envclone: could not write the journal {}: {e}",
                self.path.display()
            );
        }
    }
}

/// Where a run's state (what it changed, what is needed to finish or undo it) is kept between
/// commands (`migrate`, then `finalize RUN` or `abort RUN`).
pub trait RunStore: Send + Sync {
    fn save(&self, run_id: &str, state: &serde_json::Value) -> std::io::Result<()>;
    fn load(&self, run_id: &str) -> std::io::Result<Option<serde_json::Value>>;
}

/// `<state-dir>/runs/<run-id>.state.json`, replaced atomically (write, fsync, rename).
pub struct FileRunStore {
    pub dir: PathBuf,
}

impl FileRunStore {
    pub fn new(state_dir: &Path) -> Self {
        FileRunStore {
            dir: state_dir.join("runs"),
        }
    }

    fn path(&self, run_id: &str) -> PathBuf {
        self.dir.join(format!("{run_id}.state.json"))
    }
}

impl RunStore for FileRunStore {
    fn save(&self, run_id: &str, state: &serde_json::Value) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(".{run_id}.state.json.tmp"));
        let mut file = File::create(&tmp)?;
        file.write_all(serde_json::to_string_pretty(state)?.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.path(run_id))?;
        // The rename itself is durable only once the directory is synced.
        File::open(&self.dir)?.sync_all()
    }

    fn load(&self, run_id: &str) -> std::io::Result<Option<serde_json::Value>> {
        match std::fs::read_to_string(self.path(run_id)) {
            Ok(text) => Ok(Some(serde_json::from_str(&text)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The default state directory: `$XDG_STATE_HOME/envclone`, else `~/.local/state/envclone`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("envclone");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/state/envclone")
}

/// Run records in S3 (`--state s3://bucket/prefix`), so `status`, `resume` and `abort` work
/// from another machine. Each save also uploads the run's local journal next to the record.
pub struct S3RunStore {
    pub objects: std::sync::Arc<dyn crate::ports::ObjectStore>,
    pub bucket: String,
    pub prefix: String,
    /// Where the local journals are (uploaded with each save).
    pub local: PathBuf,
    pub runtime: tokio::runtime::Handle,
}

impl S3RunStore {
    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            format!("runs/{name}")
        } else {
            format!("{}/runs/{name}", self.prefix)
        }
    }

    /// Runs an S3 call from synchronous code inside the multi-threaded runtime.
    fn block<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        tokio::task::block_in_place(|| self.runtime.block_on(f))
    }

    pub fn run_ids(&self) -> std::io::Result<Vec<String>> {
        let prefix = self.key("");
        let mut ids = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .block(self.objects.list_page(&self.bucket, &prefix, token.clone()))
                .map_err(std::io::Error::other)?;
            ids.extend(page.objects.iter().filter_map(|o| {
                o.key[prefix.len()..]
                    .strip_suffix(".state.json")
                    .map(str::to_string)
            }));
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        Ok(ids)
    }

    pub fn journal(&self, run_id: &str) -> Option<String> {
        self.block(
            self.objects
                .get_small_object(&self.bucket, &self.key(&format!("{run_id}.jsonl"))),
        )
        .ok()
        .flatten()
        .map(|o| String::from_utf8_lossy(&o.body).into_owned())
    }
}

impl RunStore for S3RunStore {
    fn save(&self, run_id: &str, state: &serde_json::Value) -> std::io::Result<()> {
        let body = serde_json::to_vec_pretty(state)?;
        self.block(self.objects.put_small_object(
            &self.bucket,
            &self.key(&format!("{run_id}.state.json")),
            body,
            None,
        ))
        .map_err(std::io::Error::other)?;
        if let Ok(journal) = std::fs::read(self.local.join("runs").join(format!("{run_id}.jsonl")))
        {
            self.block(self.objects.put_small_object(
                &self.bucket,
                &self.key(&format!("{run_id}.jsonl")),
                journal,
                None,
            ))
            .map_err(std::io::Error::other)?;
        }
        Ok(())
    }

    fn load(&self, run_id: &str) -> std::io::Result<Option<serde_json::Value>> {
        match self
            .block(
                self.objects
                    .get_small_object(&self.bucket, &self.key(&format!("{run_id}.state.json"))),
            )
            .map_err(std::io::Error::other)?
        {
            Some(o) => Ok(Some(serde_json::from_slice(&o.body)?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Phase;

    #[test]
    fn events_are_appended_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let journal = FileJournal::create(dir.path(), "r1").unwrap();
        for step in ["a", "b"] {
            journal.emit(&Event {
                time: "t".into(),
                run_id: "r1".into(),
                step: step.into(),
                phase: Phase::Start,
                resource: None,
                message: "m".into(),
            });
        }
        let text = std::fs::read_to_string(journal.path()).unwrap();
        let steps: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(steps, ["a", "b"]);
    }
}
