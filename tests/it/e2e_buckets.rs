//! Buckets end to end on the stand-in (issue 11): archived source objects refused at
//! preflight or left out with --skip-archived (item 7), and a clone whose buckets got
//! versioning destroyed whole (item 6).

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, StorageClass, VersioningConfiguration};

use crate::e2e::*;

#[tokio::test(flavor = "multi_thread")]
async fn archived_objects_are_refused_or_skipped_and_versioned_clone_buckets_destroyed() {
    let standin = StandIn::start();
    standin.seed("prod", "stacks/webapp.yaml", &[]);
    let config = standin.sdk().await;
    let s3 = s3(&config);
    let reports = params(&stack(&config, "prod").await)["ReportsBucketName"].clone();
    for (key, class) in [
        ("archive/2019.csv", StorageClass::Glacier),
        ("archive/2020.csv", StorageClass::DeepArchive),
    ] {
        s3.put_object()
            .bucket(&reports)
            .key(key)
            .body(ByteStream::from(vec![b'x'; 100]))
            .storage_class(class)
            .send()
            .await
            .unwrap();
    }
    let before = world(&config).await;
    let state = tempfile::tempdir().unwrap();

    // Item 7: refused before any change (fails before the fix: the clone failed in Standby on
    // CopyObject's ObjectNotInActiveTierError).
    let out = standin.envclone(state.path(), &["clone", "prod", "exp-v", "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}\n{}",
        text(&out),
        standin.log()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("s3://{reports}: 2 archived object(s), 200 bytes"))
            && stderr.contains("--skip-archived"),
        "{}",
        text(&out)
    );
    assert_eq!(world(&config).await, before, "nothing changed");

    // With --skip-archived: cloned without them, verified, reported.
    let out = standin.envclone(
        state.path(),
        &["clone", "prod", "exp-v", "--yes", "--skip-archived"],
    );
    assert!(out.status.success(), "{}\n{}", text(&out), standin.log());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("2 object(s), 200 bytes")
            && stdout.contains("\"archive/2019.csv\"")
            && stdout.contains("\"archive/2020.csv\"")
            && stdout.contains("2 archived object(s) not compared"),
        "{}",
        text(&out)
    );
    let clone_reports = params(&stack(&config, "exp-v").await)["ReportsBucketName"].clone();
    let copied = describe_bucket(&s3, &clone_reports).await;
    assert!(
        !copied.keys().any(|k| k.starts_with("archive/")),
        "{copied:?}"
    );

    // Item 6: the application turns versioning on in both clone buckets and overwrites and
    // deletes objects: old versions and delete markers. Destroy removes them all (fails before
    // the fix: DeleteBucket answered BucketNotEmpty, the stack's bucket failed to delete).
    let uploads = physical_id(&config, "exp-v", "Uploads").await;
    for bucket in [&clone_reports, &uploads] {
        s3.put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        for round in 0..2 {
            s3.put_object()
                .bucket(bucket)
                .key("app/state.json")
                .body(ByteStream::from(
                    format!("{{\"round\":{round}}}").into_bytes(),
                ))
                .send()
                .await
                .unwrap();
        }
        s3.delete_object()
            .bucket(bucket)
            .key("app/state.json")
            .send()
            .await
            .unwrap();
        let versions = s3
            .list_object_versions()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        assert!(
            !versions.delete_markers().is_empty() && versions.versions().len() >= 2,
            "{bucket}: {versions:?}"
        );
    }
    let out = standin.envclone(state.path(), &["destroy", "exp-v", "--yes"]);
    assert!(out.status.success(), "{}\n{}", text(&out), standin.log());
    assert_eq!(world(&config).await, before, "nothing of exp-v left");
}
