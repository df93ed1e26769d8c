//! Issue 13 foundations on the fake: when a snapshot's point in time is fixed (long before it
//! is available).

use std::collections::BTreeMap;
use std::time::Duration;

use envclone::fake::Timings;
use envclone::ports::{Clock, DbKind};
use envclone::workflow::resources::wait_snapshot_point_fixed;

use crate::fake_aurora::{aurora_prod_with, SOURCE_CLUSTER};
use crate::support::{timings, Scenario, REPORTS, WEBAPP};

/// A big database: its snapshot takes 40 minutes to become available; its point is fixed after
/// 8 seconds (the Single-AZ I/O suspension).
fn big_database() -> Timings {
    Timings {
        snapshot: Duration::from_secs(40 * 60),
        snapshot_point: Duration::from_secs(8),
        ..timings()
    }
}

/// Issue 13 item 1. Before the fake modelled `snapshot_point` it showed SnapshotCreateTime
/// from the request on, and nothing told a fixed point from a snapshot just asked for; the
/// workflow could only wait for `available` (40 minutes here).
#[tokio::test(start_paused = true)]
async fn a_db_snapshot_point_is_fixed_long_before_it_is_available() {
    let s = Scenario::new(big_database());
    s.fake.create_bucket_now(REPORTS);
    s.fake.deploy_now(
        "prod",
        WEBAPP,
        &[("EnvironmentName", "prod"), ("ReportsBucketName", REPORTS)],
    );
    let db = s
        .fake
        .db_ids()
        .into_iter()
        .next()
        .expect("webapp has a database");
    let dbs = s.fake.cloud().databases;
    let requested = envclone::fake::FakeClock.now();
    let start = tokio::time::Instant::now();
    dbs.snapshots(DbKind::Instance)
        .create(&db, "snap-1", &BTreeMap::new())
        .await
        .unwrap();
    // Right after the request: creating, and no SnapshotCreateTime yet.
    let early = dbs.describe_snapshot("snap-1").await.unwrap().unwrap();
    assert_eq!(early.status, "creating");
    assert_eq!(early.point_fixed_at(), None);

    let t = wait_snapshot_point_fixed(
        dbs.as_ref(),
        DbKind::Instance,
        "snap-1",
        &db,
        Duration::from_secs(4 * 3600),
    )
    .await
    .unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(8) && waited < Duration::from_secs(30),
        "waited {waited:?}: the point is fixed after the 8 s suspension, not at available"
    );
    assert!(
        (t - requested).num_seconds().abs() <= 1,
        "T_snapshot {t} is the request's moment {requested}"
    );
    let now = dbs.describe_snapshot("snap-1").await.unwrap().unwrap();
    assert_eq!(
        now.status, "creating",
        "still 40 minutes from available when Standby may end"
    );
    assert_eq!(now.point_fixed_at(), Some(t));
}

#[tokio::test(start_paused = true)]
async fn a_cluster_snapshot_point_is_fixed_long_before_it_is_available() {
    let s = aurora_prod_with(big_database());
    let dbs = s.fake.cloud().databases;
    let start = tokio::time::Instant::now();
    dbs.snapshots(DbKind::Cluster)
        .create(SOURCE_CLUSTER, "csnap-1", &BTreeMap::new())
        .await
        .unwrap();
    let t = wait_snapshot_point_fixed(
        dbs.as_ref(),
        DbKind::Cluster,
        "csnap-1",
        SOURCE_CLUSTER,
        Duration::from_secs(4 * 3600),
    )
    .await
    .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    let snap = dbs
        .describe_cluster_snapshot("csnap-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((snap.status.as_str(), snap.created), ("creating", Some(t)));
}

/// A snapshot that never shows (a wrong identifier, or its CreateDBSnapshot lost) times out
/// naming it and what was seen.
#[tokio::test(start_paused = true)]
async fn a_snapshot_that_never_shows_times_out_naming_it() {
    let s = aurora_prod_with(big_database());
    let dbs = s.fake.cloud().databases;
    let err = wait_snapshot_point_fixed(
        dbs.as_ref(),
        DbKind::Cluster,
        "csnap-missing",
        SOURCE_CLUSTER,
        Duration::from_secs(120),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("DB cluster snapshot csnap-missing of prod-cluster")
            && err.contains("not visible yet"),
        "{err}"
    );
}
