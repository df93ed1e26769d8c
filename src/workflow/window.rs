//! The source's time out of service in a clone (issue 13): the window opens when Standby and
//! the `quiesce` hooks are done, fixes one moment T, and closes as soon as everything that
//! must be read from a quiet source has been: each DB snapshot's point in time fixed
//! (`resources::wait_snapshot_point_fixed`, not the snapshot available), each *unversioned*
//! bucket passed by parameter copied (its delta) and compared. The rest is copied as of T
//! after the source serves again: versioned buckets from their versions ≤ T
//! (`s3sync::as_of`), the databases from their snapshots.
//!
//! Some resources need the source quiet until the clone stack exists: a bucket the stack owns
//! that keeps no versions (nothing of T is left to read once the source writes), a DynamoDB
//! table (its copy and its verification read the live table: DynamoDB has no read as of a
//! moment), an Aurora copy-on-write clone (made by the stack at its latest restorable time).
//! Each kind says which of its resources are which (`ResourceKind::window_needs`); any one of
//! the second sort keeps today's window (Standby until the clone is verified).
//!
//! `migrate` keeps its source in Standby through the swap whatever the plan holds: its
//! promise is that no write is lost between the copy and the swap.

use std::collections::BTreeSet;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::s3sync::{AsOfPoint, VerifyReport};

use super::engine::CheckResult;
pub use super::engine::WindowMark;

/// What one kind's resources of a plan need of the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowNeeds {
    /// Work made inside the window, which it waits for (named: `DB snapshot x: point in time
    /// fixed`): once all is done, the source may serve again.
    pub inside: Vec<String>,
    /// Resources that need the source quiet until the clone stack exists, each with why: any
    /// keeps the source in Standby until the clone is verified.
    pub whole: Vec<String>,
    /// Resources copied as of T that the window does not wait for at all (a database restored
    /// to T by point-in-time restore), each with how.
    pub outside: Vec<String>,
}

/// The window's line of a database restored to T by point-in-time restore: not in it.
pub fn point_in_time_item(noun: &str, source: &str) -> String {
    format!(
        "{noun} {source}: restored to T by point-in-time restore once its latest restorable \
         time passes T, after the source serves again (no snapshot)"
    )
}

/// The window's item of a snapshot: its point in time fixed.
pub fn snapshot_item(noun: &str, id: &str) -> String {
    format!("{noun} {id}: point in time fixed (SnapshotCreateTime set)")
}

/// The window's item of a bucket passed by parameter that keeps no versions.
pub fn unversioned_bucket_item(source: &str, target: &str) -> String {
    format!("bucket {source} (keeps no versions): its delta copied into {target} and compared")
}

/// What the report says of the window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WindowReport {
    /// The moment the clone is taken as of (whole second, RFC 3339).
    pub t: DateTime<Utc>,
    /// Standby entered (the first instance about to be), and exited (every instance back).
    pub entered: DateTime<Utc>,
    pub exited: Option<DateTime<Utc>>,
    /// Seconds out of service (exited − entered).
    pub seconds: Option<f64>,
    /// What ran inside the window.
    pub inside: Vec<String>,
    /// Why the window lasted until the clone was verified, if it did.
    pub whole: Vec<String>,
    /// What was copied as of T without the window waiting for it (point-in-time restores).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outside: Vec<String>,
}

/// A bucket compared inside the window: (source, target), the check and its report.
pub type EarlyCheck = ((String, String), CheckResult, VerifyReport);

/// Targets copied as of a moment, with it.
pub type AsOfTargets = [(String, DateTime<Utc>)];

/// The window of one running clone: what is still to be done inside it, the signal the copy
/// stage fires when it may close, and T.
pub struct QuietWindow {
    as_of: Option<AsOfPoint>,
    /// The run's T whether or not the window closes early (a point-in-time restore targets
    /// it); None without Standby.
    moment: Option<DateTime<Utc>>,
    /// Whether the window may close before the clone is verified (clone, with Standby, and
    /// no resource needing the whole window).
    early: bool,
    pending: Mutex<BTreeSet<String>>,
    released: watch::Sender<bool>,
    /// Comparisons made inside the window (an unversioned bucket, right after its copy):
    /// (source, target), the check and its report.
    verified: Mutex<Vec<EarlyCheck>>,
}

impl QuietWindow {
    /// A window that never closes early (migrate, `--no-standby`, the pre-copy).
    pub fn whole() -> Self {
        Self::new(None, false, Vec::new())
    }

    /// The window of a clone taken as of `as_of`; `early`: it closes once `inside` is done.
    pub fn new(as_of: Option<AsOfPoint>, early: bool, inside: Vec<String>) -> Self {
        let (released, _) = watch::channel(false);
        let w = QuietWindow {
            as_of,
            moment: as_of.map(|p| p.t),
            early,
            pending: Mutex::new(inside.into_iter().collect()),
            released,
            verified: Mutex::new(Vec::new()),
        };
        w.check();
        w
    }

    /// T, when the clone is taken as of a moment (copies of versioned buckets read as of it).
    pub fn as_of(&self) -> Option<DateTime<Utc>> {
        self.as_of.map(|p| p.t)
    }

    /// The same window, at the run's T `moment` (a whole window knows T too: migrate and a
    /// window held whole restore databases to it).
    pub fn at(mut self, moment: Option<DateTime<Utc>>) -> Self {
        self.moment = moment.or(self.moment);
        self
    }

    /// The run's T (None: the run has no Standby, so no moment of quiet).
    pub fn moment(&self) -> Option<DateTime<Utc>> {
        self.moment
    }

    /// Whether the window closes before the clone is verified (work inside it must then be
    /// checked inside it too).
    pub fn closes_early(&self) -> bool {
        self.early
    }

    /// `item` (one of the kinds' `inside`) is done.
    pub fn done(&self, item: &str) {
        self.pending.lock().expect("window lock").remove(item);
        self.check();
    }

    fn check(&self) {
        if self.early && self.pending.lock().expect("window lock").is_empty() {
            self.released.send_replace(true);
        }
    }

    /// Resolves once the window may close (never, if it does not close early).
    pub async fn released(&self) {
        let mut rx = self.released.subscribe();
        if rx.wait_for(|r| *r).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// A comparison made inside the window.
    pub fn record_verified(
        &self,
        pair: (String, String),
        check: CheckResult,
        report: VerifyReport,
    ) {
        self.verified
            .lock()
            .expect("window lock")
            .push((pair, check, report));
    }

    /// The comparisons made inside the window.
    pub fn verified(&self) -> Vec<EarlyCheck> {
        self.verified.lock().expect("window lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn releases_once_every_item_is_done_and_never_when_whole() {
        let w = QuietWindow::new(None, true, vec!["a".into(), "b".into()]);
        w.done("a");
        let early = tokio::time::timeout(std::time::Duration::from_millis(20), w.released());
        assert!(early.await.is_err(), "released with b pending");
        w.done("b");
        w.released().await;
        let whole = QuietWindow::whole();
        let never = tokio::time::timeout(std::time::Duration::from_millis(20), whole.released());
        assert!(never.await.is_err());
    }
}
