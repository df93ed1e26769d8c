//! `envclone s3 sync --engine batch --as-of T` end to end: the built binary against the
//! stand-in's S3 Batch Operations over a versioned source written after T. The job's manifest
//! names each object's version at T (`Bucket,Key,VersionId`; the stand-in reads the fields
//! CreateJob's `Manifest.Spec.Fields` lists and copies the version a row names), the failed
//! task and the object over the job's copy limit are re-copied by version id, a key absent at
//! T is deleted, and the verification is as of T. Issues 13/14: before, `--as-of` was refused
//! with `--engine batch` (its manifest named keys, so the job copied current objects).

use std::time::Duration;

use crate::e2e::{describe_bucket, s3 as s3_client, text, StandIn};
use crate::e2e_asof::{body, delete, enable_versioning, put, quiet_period};
use crate::s3_batch_e2e::control;

const SRC: &str = "e2e-batch-asof-source";
const DST: &str = "e2e-batch-asof-target";
const REPORTS: &str = "e2e-batch-asof-reports";
const ROLE: &str = "arn:aws:iam::123456789012:role/envclone-batch";
/// The stand-in's copy limit (AWS: 5 GiB): `big` is over it, so its task fails like a
/// CopyObject over 5 GiB and it is re-copied by the version the completion report names.
const LIMIT: u64 = 64;

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_sync_as_of_t_copies_the_versions_of_t() {
    let standin = StandIn::start();
    let config = standin.sdk().await;
    let s3 = s3_client(&config);
    for b in [SRC, DST, REPORTS] {
        s3.create_bucket().bucket(b).send().await.unwrap();
    }
    enable_versioning(&s3, SRC).await;
    let big = |c: char| c.to_string().repeat(LIMIT as usize + 1);
    put(&s3, SRC, "overwritten", "as of T").await;
    put(&s3, SRC, "deleted-after", "there at T").await;
    put(&s3, SRC, "kept", "never touched").await;
    put(&s3, SRC, "big", &big('a')).await;
    put(&s3, SRC, "failing", "as of T, its task fails").await;
    put(&s3, DST, "gone-at-t", "stale").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let point = quiet_period().await;
    put(&s3, SRC, "overwritten", "after T").await;
    delete(&s3, SRC, "deleted-after").await;
    put(&s3, SRC, "created-after", "not there at T").await;
    put(&s3, SRC, "big", &big('b')).await;
    put(&s3, SRC, "failing", "after T").await;
    control(
        &standin,
        Some(serde_json::json!({
            "copy_limit": LIMIT,
            "fail_keys": ["failing"],
            "task_seconds": 0.005,
            "start_seconds": 1.5,
        })),
    )
    .await;

    let state = tempfile::tempdir().unwrap();
    let t = point.t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (src, dst) = (format!("s3://{SRC}"), format!("s3://{DST}"));
    let reports = format!("s3://{REPORTS}/envclone");
    let out = standin.envclone(
        state.path(),
        &[
            "--output",
            "json",
            "s3",
            "sync",
            &src,
            &dst,
            "--delete",
            "--as-of",
            &t,
            "--engine",
            "batch",
            "--batch-role",
            ROLE,
            "--batch-reports",
            &reports,
            "--batch-poll",
            "300ms",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    let copied = describe_bucket(&s3, DST).await;
    assert_eq!(
        copied.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["big", "deleted-after", "failing", "kept", "overwritten"],
        "{copied:?}"
    );
    assert_eq!(body(&config, DST, "overwritten").await, "as of T");
    assert_eq!(body(&config, DST, "deleted-after").await, "there at T");
    assert_eq!(
        body(&config, DST, "failing").await,
        "as of T, its task fails"
    );
    assert_eq!(body(&config, DST, "big").await, big('a'));

    // The manifest the job read: a version on every row, T's, not the current one.
    let listed = s3
        .list_objects_v2()
        .bucket(REPORTS)
        .prefix("envclone/envclone-batch/")
        .send()
        .await
        .unwrap();
    let manifest_key = listed
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .find(|k| k.ends_with("/manifest.csv"))
        .expect("a manifest")
        .to_string();
    let manifest = body(&config, REPORTS, &manifest_key).await;
    let current = s3
        .head_object()
        .bucket(SRC)
        .key("overwritten")
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_string();
    let rows: Vec<Vec<&str>> = manifest.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 5, "{manifest}");
    assert!(
        rows.iter()
            .all(|r| r.len() == 3 && r[0] == SRC && !r[2].is_empty()),
        "{manifest}"
    );
    let row = rows
        .iter()
        .find(|r| r[1] == "overwritten")
        .expect("overwritten");
    assert_ne!(row[2], current, "the version of T, not the current one");
    let jobs = control(&standin, None).await["jobs"].clone();
    let job = &jobs.as_array().unwrap()[0];
    assert_eq!(job["status"], "Complete", "{job}");
    // `failing` (AccessDenied) and `big` (over the copy limit) failed; both were re-copied.
    assert_eq!(
        (job["succeeded"].as_u64(), job["failed"].as_u64()),
        (Some(3), Some(2))
    );
}
