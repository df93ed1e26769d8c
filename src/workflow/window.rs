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

/// Work a clone does inside the window, which the window waits for: a resource and what is
/// done with it there. Its text (`Display`) is what the plan, the events and the report say.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum WindowItem {
    /// A DB snapshot (`noun`: `DB snapshot`, `DB cluster snapshot`): the window lasts until
    /// its point in time is fixed, not until it is available.
    SnapshotPoint { noun: &'static str, id: String },
    /// A bucket passed by parameter that keeps no versions: its delta is copied into `target`
    /// and compared inside the window (nothing of T is left to read once the source writes).
    UnversionedBucket { source: String, target: String },
}

impl WindowItem {
    /// Whether a resumed run whose window already ended can still do it as of T: a snapshot
    /// can (found by name, its point fixed at T); a copy from a bucket that keeps no versions
    /// cannot (the source has served, and written, since).
    pub fn redone_after_the_window(&self) -> bool {
        match self {
            WindowItem::SnapshotPoint { .. } => true,
            WindowItem::UnversionedBucket { .. } => false,
        }
    }
}

impl std::fmt::Display for WindowItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WindowItem::SnapshotPoint { noun, id } => {
                write!(
                    f,
                    "{noun} {id}: point in time fixed (SnapshotCreateTime set)"
                )
            }
            WindowItem::UnversionedBucket { source, target } => write!(
                f,
                "bucket {source} (keeps no versions): its delta copied into {target} and compared"
            ),
        }
    }
}

/// A resource that needs the source quiet until the clone stack exists, and why: any keeps
/// the source in Standby until the clone is verified. Its text (`Display`) is what the plan,
/// the events and the report say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WholeWindow {
    /// A bucket the stack owns (`logical_id`) whose source keeps no versions: it is copied
    /// once the stack exists, and nothing of T is left to read by then.
    UnversionedStackBucket { source: String, logical_id: String },
    /// An Aurora cluster the stack clones copy-on-write, at its latest restorable time.
    CopyOnWriteClone { cluster: String },
    /// A DynamoDB table: copied and compared from the live table.
    LiveTable { logical_id: String },
    /// A kind that does not say when it no longer needs the source quiet.
    Unspecified { kind: &'static str },
}

impl std::fmt::Display for WholeWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WholeWindow::UnversionedStackBucket { source, logical_id } => write!(
                f,
                "bucket {source} keeps no versions and its copy {logical_id} is created by the \
                 stack (enable versioning on it to copy it as of T after the source serves)"
            ),
            WholeWindow::CopyOnWriteClone { cluster } => write!(
                f,
                "Aurora cluster {cluster} is cloned copy-on-write by the stack, at its latest \
                 restorable time"
            ),
            WholeWindow::LiveTable { logical_id } => write!(
                f,
                "DynamoDB table {logical_id} is copied and compared from the live table \
                 (DynamoDB reads no earlier state)"
            ),
            WholeWindow::Unspecified { kind } => write!(
                f,
                "the {kind} kind does not say when it no longer needs the source quiet"
            ),
        }
    }
}

/// `items` as the plan and the events list them: their texts joined by `; `.
pub fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What one kind's resources of a plan need of the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowNeeds {
    /// Work made inside the window, which it waits for: once all is done, the source may
    /// serve again.
    pub inside: Vec<WindowItem>,
    /// Resources that need the source quiet until the clone stack exists: any keeps the
    /// source in Standby until the clone is verified.
    pub whole: Vec<WholeWindow>,
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

/// What the window waits for before the source serves again: `items`, or only T.
pub fn until(items: &[WindowItem]) -> String {
    if items.is_empty() {
        "T has passed".to_string()
    } else {
        list(items)
    }
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
    pending: Mutex<BTreeSet<WindowItem>>,
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
    pub fn new(as_of: Option<AsOfPoint>, early: bool, inside: Vec<WindowItem>) -> Self {
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
    pub fn done(&self, item: &WindowItem) {
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
        let a = WindowItem::SnapshotPoint {
            noun: "DB snapshot",
            id: "a".into(),
        };
        let b = WindowItem::UnversionedBucket {
            source: "b".into(),
            target: "b-copy".into(),
        };
        let w = QuietWindow::new(None, true, vec![a.clone(), b.clone()]);
        w.done(&a);
        let early = tokio::time::timeout(std::time::Duration::from_millis(20), w.released());
        assert!(early.await.is_err(), "released with b pending");
        w.done(&b);
        w.released().await;
        let whole = QuietWindow::whole();
        let never = tokio::time::timeout(std::time::Duration::from_millis(20), whole.released());
        assert!(never.await.is_err());
    }
}
