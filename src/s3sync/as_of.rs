//! A bucket as it was at a moment T, read from its versions (issue 13: versioned buckets are
//! copied after Standby, as of the moment Standby fixed).
//!
//! What this rests on (S3 User Guide, "Retaining multiple versions of objects with S3
//! Versioning"; S3 API Reference, ListObjectVersions, CopyObject):
//! - In a bucket with versioning enabled an overwrite keeps the previous version and a
//!   DeleteObject without a version id only adds a delete marker, which becomes the current
//!   version; ListObjectVersions lists every version and delete marker, by key and, within a
//!   key, newest first, each with its `LastModified`.
//! - So the object of key K at T is K's newest version whose `LastModified` ≤ T, unless that
//!   entry is a delete marker (then K was absent at T), and nothing if K had no entry by then.
//! - CopyObject copies one version: `x-amz-copy-source: bucket/key?versionId=<id>`.
//! - `LastModified` has a resolution of one second, which is why T is taken on a second
//!   boundary with the quiet period spanning it ([`as_of_point`]).
//! - Lifecycle rules that expire noncurrent versions can remove a version T needs; such a
//!   version is simply missing from the listing (the key then looks newer than T, or absent).
//!   Where the source has such a rule, a key whose every listed entry is newer than T is
//!   `AsOfEntry::OnlyAfter`: the join does not delete the target's copy of it (which may be
//!   all that is left of the key at T) but reports it (`AsOfLister::gone_before_t`). A
//!   version deleted by its id is missing the same way, which nothing in the listing shows.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{BucketPath, SyncError, SyncProgress};
use crate::ports::{ObjectStore, ObjectSummary, ObjectVersion, PortError};
use crate::retry::retry;

/// The moment T a copy is taken as of, and until when the source must stay quiet around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsOfPoint {
    /// A whole second on S3's clock.
    pub t: DateTime<Utc>,
    /// Writers may resume from here on (S3's clock), not before: a write in `[t, t + 1 s)`
    /// would list with `LastModified` = `t` and be taken as part of the state at T.
    pub quiet_until: DateTime<Utc>,
}

/// Picks T for a quiet period that began at `quiet_since` (every writer stopped; the clone's
/// Standby and `quiesce` hooks done), as this machine's clock saw it, whose clock may differ
/// from S3's by up to `clock_uncertainty`.
///
/// S3 lists `LastModified` in whole seconds and does not document whether it truncates or
/// rounds. T is the first whole second after `quiet_since + clock_uncertainty`, and the quiet
/// period must last until `quiet_until` = T + 1 s + `clock_uncertainty`. Then, truncating or
/// rounding, every write made before the quiet period lists at or before T (it was made before
/// T, so its second is at most T), and every write made after it lists after T (it was made at
/// T + 1 s or later): no write can land in the ambiguous second, because none is made in it.
pub fn as_of_point(
    quiet_since: DateTime<Utc>,
    clock_uncertainty: std::time::Duration,
) -> AsOfPoint {
    let margin = chrono::Duration::from_std(clock_uncertainty).unwrap_or_default();
    let earliest = quiet_since + margin;
    let t = DateTime::from_timestamp(earliest.timestamp() + 1, 0).unwrap_or(earliest);
    AsOfPoint {
        t,
        quiet_until: t + chrono::Duration::seconds(1) + margin,
    }
}

/// RFC 3339 in whole seconds, for messages.
fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One key of the source as of T, in key order.
pub(super) enum AsOfEntry {
    /// The object it held at T.
    Held(ObjectSummary),
    /// Every entry listed for this key was written after T, and the source's lifecycle
    /// configuration may have removed older ones: absent at T, or what it held then is gone.
    OnlyAfter(String),
}

/// What the entries of one key listed so far decided.
struct KeyChoice {
    key: String,
    /// The newest entry at or before T, once met.
    chosen: Option<ObjectVersion>,
    /// Why the state at T cannot be told (reported instead of a choice).
    unknown: Option<String>,
}

/// Reads the source's versions page by page (ListObjectVersions, KeyMarker/VersionIdMarker)
/// and yields, in key order, the objects the bucket held at T, each with the version id to
/// read. Memory: one page and one key's choice.
pub(super) struct AsOfLister {
    store: Arc<dyn ObjectStore>,
    path: BucketPath,
    as_of: DateTime<Utc>,
    progress: Arc<SyncProgress>,
    marker: Option<(String, String)>,
    started: bool,
    finished: bool,
    page: VecDeque<ObjectVersion>,
    /// The last key of the pages listed so far, to check the order across pages.
    last_listed: Option<String>,
    current: Option<KeyChoice>,
    /// Keys whose state at T could not be told, reported at the end.
    pub(super) unknown: Vec<SyncError>,
    /// The source's lifecycle may remove noncurrent versions (read with its versioning).
    versions_expire: bool,
}

impl AsOfLister {
    pub(super) fn new(
        store: Arc<dyn ObjectStore>,
        path: BucketPath,
        as_of: DateTime<Utc>,
        progress: Arc<SyncProgress>,
    ) -> Self {
        AsOfLister {
            store,
            path,
            as_of,
            progress,
            marker: None,
            started: false,
            finished: false,
            page: VecDeque::new(),
            last_listed: None,
            current: None,
            unknown: Vec::new(),
            versions_expire: true,
        }
    }

    /// The target holds a copy of `key`, of which the source lists only entries newer than T
    /// while its lifecycle may have removed the older ones: what `key` held at T cannot be
    /// told, and the copy is neither deleted nor replaced.
    pub(super) fn gone_before_t(&mut self, key: String) {
        self.unknown.push(SyncError::AsOfUnknown {
            bucket: self.path.bucket.clone(),
            key,
            as_of: stamp(self.as_of),
            why: "every version the source still lists was written after T, and its lifecycle \
                  configuration expires noncurrent versions, so what it held at T may have been \
                  removed; the target's copy of it was neither deleted nor replaced (delete it \
                  from the target if the key was created after T)"
                .into(),
        });
    }

    /// Refuses a source that does not keep versions: nothing of an overwritten or deleted
    /// object is left to read there.
    async fn check_versioning(&self) -> Result<(), SyncError> {
        let bucket = &self.path.bucket;
        match retry(|| self.store.versioning(bucket)).await {
            Ok(Some(status)) if status == "Enabled" => Ok(()),
            Ok(status) => Err(SyncError::NotVersioned {
                bucket: bucket.clone(),
                status: status.map_or("never enabled".into(), |s| s.to_lowercase()),
            }),
            Err(PortError::NotFound { .. }) => Err(SyncError::MissingBucket {
                bucket: bucket.clone(),
            }),
            Err(source) => Err(SyncError::List {
                path: self.path.to_string(),
                source,
            }),
        }
    }

    async fn next_page(&mut self) -> Result<(), SyncError> {
        if !self.started {
            self.check_versioning().await?;
            let bucket = &self.path.bucket;
            // Unreadable even after retries (a server without the lifecycle API answers 501):
            // they may.
            self.versions_expire = retry(|| self.store.noncurrent_versions_expire(bucket))
                .await
                .unwrap_or(true);
            self.started = true;
        }
        let (store, bucket) = (&self.store, &self.path.bucket);
        let marker = self.marker.clone();
        let page = match retry(|| store.list_versions_page(bucket, marker.clone())).await {
            Ok(page) => page,
            Err(PortError::NotFound { .. }) => {
                return Err(SyncError::MissingBucket {
                    bucket: bucket.clone(),
                })
            }
            Err(source) => {
                return Err(SyncError::List {
                    path: self.path.to_string(),
                    source,
                })
            }
        };
        // A merge-join of an unsorted listing would copy and delete the wrong objects.
        let keys = self
            .last_listed
            .iter()
            .chain(page.versions.iter().map(|v| &v.key));
        let mut previous: Option<&String> = None;
        for key in keys {
            if let Some(p) = previous.filter(|p| key < *p) {
                return Err(SyncError::Unsorted {
                    path: self.path.to_string(),
                    previous: p.clone(),
                    key: key.clone(),
                });
            }
            previous = Some(key);
        }
        if let Some(last) = page.versions.last() {
            self.last_listed = Some(last.key.clone());
        }
        self.finished = page.next.is_none() || page.versions.is_empty();
        self.marker = page.next;
        self.page.extend(page.versions);
        Ok(())
    }

    /// The object a finished key held at T, or its failure.
    fn settle(&mut self, done: KeyChoice) -> Option<AsOfEntry> {
        if let Some(why) = done.unknown {
            self.unknown.push(SyncError::AsOfUnknown {
                bucket: self.path.bucket.clone(),
                key: done.key,
                as_of: stamp(self.as_of),
                why,
            });
            return None;
        }
        let Some(v) = done.chosen else {
            // Every entry of the key is newer than T.
            return self
                .versions_expire
                .then_some(AsOfEntry::OnlyAfter(done.key));
        };
        if v.delete_marker {
            return None;
        }
        self.progress.source_listed.fetch_add(1, Relaxed);
        Some(AsOfEntry::Held(ObjectSummary {
            key: v.key,
            size: v.size,
            etag: v.etag,
            storage_class: v.storage_class,
            restored: false,
            checksum_algorithm: v.checksum_algorithm,
            version_id: Some(v.version_id),
            last_modified: Some(v.last_modified),
        }))
    }

    /// Takes one entry of the listing into its key's choice.
    fn take(&self, choice: &mut KeyChoice, v: ObjectVersion) {
        if choice.unknown.is_some() {
            return;
        }
        match &choice.chosen {
            None if v.last_modified <= self.as_of => choice.chosen = Some(v),
            None => {
                // Written after T. A `null` version written after T replaced (or was) the
                // key's object while versioning was off or suspended: what it replaced is gone.
                if v.version_id == "null" && !v.delete_marker {
                    choice.unknown = Some(format!(
                        "its version `null` was written at {}, after T, while the bucket kept \
                         no versions (versioning off or suspended then), so whatever it \
                         replaced is gone",
                        stamp(v.last_modified)
                    ));
                }
            }
            Some(c) if c.last_modified == v.last_modified && c.delete_marker != v.delete_marker => {
                // Within one second of the listing: S3 orders them (newest first) but the SDK
                // hands versions and delete markers over as two lists, so which came last is
                // lost; the current one is known to be the newest.
                if !c.is_latest {
                    choice.unknown =
                        Some(format!(
                        "it was both written (version {}) and deleted (delete marker {}) within \
                         the second {}, and the order of the two is not known",
                        if c.delete_marker { &v.version_id } else { &c.version_id },
                        if c.delete_marker { &c.version_id } else { &v.version_id },
                        stamp(c.last_modified)
                    ));
                }
            }
            Some(_) => {}
        }
    }

    /// The next object the source held at T (or key it lists only after T), in key order.
    pub(super) async fn next(&mut self) -> Result<Option<AsOfEntry>, SyncError> {
        let prefix = self.path.prefix.clone();
        loop {
            if self.page.is_empty() {
                if self.finished {
                    let Some(done) = self.current.take() else {
                        return Ok(None);
                    };
                    if let Some(o) = self.settle(done) {
                        return Ok(Some(o));
                    }
                    continue;
                }
                self.next_page().await?;
                continue;
            }
            let v = self.page.pop_front().expect("not empty");
            if !v.key.starts_with(&prefix) {
                if v.key.as_str() > prefix.as_str() {
                    // Listings are in key order: nothing under the prefix follows.
                    self.page.clear();
                    self.finished = true;
                }
                continue;
            }
            let same = self.current.as_ref().is_some_and(|c| c.key == v.key);
            if same {
                let mut c = self.current.take().expect("same key");
                self.take(&mut c, v);
                self.current = Some(c);
                continue;
            }
            let mut next = KeyChoice {
                key: v.key.clone(),
                chosen: None,
                unknown: None,
            };
            self.take(&mut next, v);
            let done = self.current.replace(next);
            if let Some(o) = done.and_then(|d| self.settle(d)) {
                return Ok(Some(o));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn t_is_the_next_whole_second_and_the_quiet_spans_the_second_after_it() {
        let p = as_of_point(at("2026-12-01T10:00:07.250Z"), std::time::Duration::ZERO);
        assert_eq!(p.t, at("2026-12-01T10:00:08Z"));
        assert_eq!(p.quiet_until, at("2026-12-01T10:00:09Z"));
        // On a boundary already: the next one (a write at 10:00:07.000 may list as :07).
        let p = as_of_point(at("2026-12-01T10:00:07Z"), std::time::Duration::ZERO);
        assert_eq!(p.t, at("2026-12-01T10:00:08Z"));
        // Clocks 2 s apart: T after the latest moment writes may have stopped on S3's clock.
        let p = as_of_point(
            at("2026-12-01T10:00:07.250Z"),
            std::time::Duration::from_secs(2),
        );
        assert_eq!(p.t, at("2026-12-01T10:00:10Z"));
        assert_eq!(p.quiet_until, at("2026-12-01T10:00:13Z"));
    }
}
