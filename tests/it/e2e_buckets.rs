//! Buckets end to end on the stand-in (issue 11): archived source objects refused at
//! preflight or left out with --skip-archived (item 7), a clone whose buckets got
//! versioning destroyed whole (item 6), a bucket's configuration carried (item 9), and a
//! bucket production owns handed to clones by parameter (item 4).

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, ObjectOwnership, ServerSideEncryption, StorageClass,
    VersioningConfiguration,
};

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

/// Gives `bucket` what a team's bucket has besides its objects: versioning, default
/// encryption, a public access block, ownership controls, CORS, a lifecycle rule, tags and a
/// policy (returned) naming the bucket.
pub(crate) async fn configure(s3: &aws_sdk_s3::Client, bucket: &str) -> String {
    use aws_sdk_s3::types::{
        BucketLifecycleConfiguration, CorsConfiguration, CorsRule, ExpirationStatus,
        LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, OwnershipControls,
        OwnershipControlsRule, PublicAccessBlockConfiguration, ServerSideEncryptionByDefault,
        ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
    };
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
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(
                            ServerSideEncryptionByDefault::builder()
                                .sse_algorithm(ServerSideEncryption::Aes256)
                                .build()
                                .unwrap(),
                        )
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    s3.put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(false)
                .restrict_public_buckets(false)
                .build(),
        )
        .send()
        .await
        .unwrap();
    s3.put_bucket_ownership_controls()
        .bucket(bucket)
        .ownership_controls(
            OwnershipControls::builder()
                .rules(
                    OwnershipControlsRule::builder()
                        .object_ownership(ObjectOwnership::BucketOwnerPreferred)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    s3.put_bucket_cors()
        .bucket(bucket)
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(
                    CorsRule::builder()
                        .allowed_methods("GET")
                        .allowed_origins("https://app.example.com")
                        .max_age_seconds(600)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    s3.put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(
                    LifecycleRule::builder()
                        .id("expire-tmp")
                        .status(ExpirationStatus::Enabled)
                        .filter(LifecycleRuleFilter::builder().prefix("tmp/").build())
                        .expiration(LifecycleExpiration::builder().days(7).build())
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    s3.put_bucket_tagging()
        .bucket(bucket)
        .tagging(
            Tagging::builder()
                .tag_set(
                    Tag::builder()
                        .key("team")
                        .value("reporting")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"App","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::123456789012:root"}},"Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"]}}]}}"#
    );
    s3.put_bucket_policy()
        .bucket(bucket)
        .policy(&policy)
        .send()
        .await
        .unwrap();
    policy
}

// Issue 11 item 9, through the real S3 adapter against moto: the bucket a clone creates for a
// bucket passed by parameter gets the source's versioning, default encryption, public access
// block, ownership controls, CORS, lifecycle, tags and policy (naming the new bucket). Fails
// before the fix: the new bucket had none of them (GetBucketPolicy answered NoSuchBucketPolicy).
#[tokio::test(flavor = "multi_thread")]
async fn a_created_bucket_gets_its_sources_configuration() {
    let standin = StandIn::start();
    standin.seed("prod", "stacks/webapp.yaml", &[]);
    let config = standin.sdk().await;
    let s3 = s3(&config);
    let reports = params(&stack(&config, "prod").await)["ReportsBucketName"].clone();
    let policy = configure(&s3, &reports).await;

    let state = tempfile::tempdir().unwrap();
    let out = standin.envclone(state.path(), &["clone", "prod", "exp-c", "--yes"]);
    assert!(out.status.success(), "{}\n{}", text(&out), standin.log());
    let clone = params(&stack(&config, "exp-c").await)["ReportsBucketName"].clone();
    assert_ne!(clone, reports);
    let all = text(&out);
    assert!(!all.contains("not carried"), "{all}");

    let versioning = s3
        .get_bucket_versioning()
        .bucket(&clone)
        .send()
        .await
        .unwrap();
    assert_eq!(versioning.status(), Some(&BucketVersioningStatus::Enabled));
    let sse = s3
        .get_bucket_encryption()
        .bucket(&clone)
        .send()
        .await
        .unwrap();
    let rule = &sse.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .map(|d| d.sse_algorithm().clone()),
        Some(ServerSideEncryption::Aes256)
    );
    let block = s3
        .get_public_access_block()
        .bucket(&clone)
        .send()
        .await
        .unwrap();
    let block = block.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            block.block_public_acls(),
            block.ignore_public_acls(),
            block.block_public_policy(),
            block.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(false), Some(false))
    );
    let ownership = s3
        .get_bucket_ownership_controls()
        .bucket(&clone)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ownership.ownership_controls().unwrap().rules()[0].object_ownership(),
        &ObjectOwnership::BucketOwnerPreferred
    );
    let cors = s3.get_bucket_cors().bucket(&clone).send().await.unwrap();
    assert_eq!(cors.cors_rules().len(), 1, "{cors:?}");
    assert_eq!(
        cors.cors_rules()[0].allowed_origins(),
        ["https://app.example.com"]
    );
    let lifecycle = s3
        .get_bucket_lifecycle_configuration()
        .bucket(&clone)
        .send()
        .await
        .unwrap();
    assert_eq!(lifecycle.rules().len(), 1, "{lifecycle:?}");
    assert_eq!(lifecycle.rules()[0].id(), Some("expire-tmp"));
    assert_eq!(
        lifecycle.rules()[0].expiration().and_then(|e| e.days()),
        Some(7)
    );
    let tags = s3.get_bucket_tagging().bucket(&clone).send().await.unwrap();
    let tags: BTreeMap<&str, &str> = tags
        .tag_set()
        .iter()
        .map(|t| (t.key(), t.value()))
        .collect();
    assert_eq!(tags.get("team"), Some(&"reporting"), "{tags:?}");
    assert!(tags.contains_key("envclone:run"), "{tags:?}");
    let got = s3.get_bucket_policy().bucket(&clone).send().await.unwrap();
    let got: serde_json::Value = serde_json::from_str(got.policy().unwrap()).unwrap();
    assert_eq!(
        got["Statement"][0]["Resource"],
        serde_json::json!([
            format!("arn:aws:s3:::{clone}"),
            format!("arn:aws:s3:::{clone}/*")
        ]),
        "{got}"
    );
    // The source keeps its own.
    let source = s3
        .get_bucket_policy()
        .bucket(&reports)
        .send()
        .await
        .unwrap();
    assert_eq!(source.policy(), Some(policy.as_str()));
}

/// The events of the one run journal in `state_dir`, in order.
fn journal_events(state_dir: &std::path::Path) -> Vec<serde_json::Value> {
    let journals: Vec<_> = std::fs::read_dir(state_dir.join("runs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
        .collect();
    assert_eq!(journals.len(), 1, "one run in {}", state_dir.display());
    std::fs::read_to_string(journals[0].path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// That `bucket`'s whole content was copied before the run's first `standby.enter`: the
/// journal's first `bucket.copy` done for it comes before Standby and copied all `objects`,
/// and the copy made in Standby found every one already there.
fn precopied_before_standby(events: &[serde_json::Value], bucket: &str, objects: usize) {
    let standby = events
        .iter()
        .position(|e| e["step"] == "standby.enter")
        .unwrap_or_else(|| panic!("no standby.enter in {events:#?}"));
    let copies: Vec<(usize, &str)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e["step"] == "bucket.copy" && e["phase"] == "done" && e["resource"] == bucket
        })
        .map(|(i, e)| (i, e["message"].as_str().unwrap()))
        .collect();
    assert_eq!(copies.len(), 2, "a pre-copy and a delta copy: {copies:?}");
    let (before, bulk) = copies[0];
    assert!(
        before < standby,
        "the bulk copy came after Standby: {copies:?}"
    );
    assert!(
        bulk.starts_with(&format!("{objects} object(s) listed, {objects} copied")),
        "{bulk}"
    );
    let (after, delta) = copies[1];
    assert!(after > standby, "{copies:?}");
    assert!(
        delta.contains(" 0 copied") && delta.contains(&format!("{objects} already there")),
        "{delta}"
    );
}

/// Rewrites the reference templates' entry record (`app.envclone-demo.example.`, a CNAME) with
/// a TTL of `ttl` seconds, its value unchanged.
async fn short_entry_ttl(config: &aws_config::SdkConfig, ttl: i64) {
    use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch};
    let r53 = aws_sdk_route53::Client::new(config);
    let zones = r53
        .list_hosted_zones_by_name()
        .dns_name("envclone-demo.example.")
        .send()
        .await
        .unwrap();
    let zone = zones.hosted_zones()[0].id().to_string();
    let sets = r53
        .list_resource_record_sets()
        .hosted_zone_id(&zone)
        .send()
        .await
        .unwrap();
    let mut record = sets
        .resource_record_sets()
        .iter()
        .find(|r| r.name() == "app.envclone-demo.example.")
        .expect("the entry record")
        .clone();
    record.ttl = Some(ttl);
    r53.change_resource_record_sets()
        .hosted_zone_id(&zone)
        .change_batch(
            ChangeBatch::builder()
                .changes(
                    Change::builder()
                        .action(ChangeAction::Upsert)
                        .resource_record_set(record)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// Issue 11 item 4's "done when", end to end on the stand-in: a template (not one of the
/// reference stacks; a held-out style fixture) where production creates its own archive bucket
/// (`ArchiveStore`, `Condition: OwnArchive` when the `ArchiveBucketName` parameter is empty)
/// and the contract hands it to clones by that parameter. Cloned, verified and migrated (with
/// --finalize); the owned bucket is bulk-copied before the first EnterStandby each time, the
/// clone and the new environment get an envclone-made bucket passed in and create none.
#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_production_owns_is_handed_to_clones_by_parameter_end_to_end() {
    const TEMPLATE: &str = "tests/fixtures/webapp-owned-archive.yaml";
    let standin = StandIn::start();
    standin.seed("prod", TEMPLATE, &["--parameter", "ArchiveBucketName="]);
    let config = standin.sdk().await;
    let s3 = s3(&config);
    assert_eq!(
        params(&stack(&config, "prod").await)["ArchiveBucketName"],
        ""
    );
    let owned = physical_id(&config, "prod", "ArchiveStore").await;
    assert_eq!(owned, "prod-archive-123456789012");
    let archive = describe_bucket(&s3, &owned).await;
    assert!(archive.len() > 50, "{owned} was seeded: {archive:?}");
    let uploads = physical_id(&config, "prod", "Uploads").await;
    let uploads_before = describe_bucket(&s3, &uploads).await;
    let cf = aws_sdk_cloudformation::Client::new(&config);
    let logical_ids = |stack: String| {
        let cf = cf.clone();
        async move {
            cf.list_stack_resources()
                .stack_name(stack)
                .send()
                .await
                .unwrap()
                .stack_resource_summaries()
                .iter()
                .map(|r| r.logical_resource_id().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let made_by_envclone = |bucket: String| {
        let s3 = s3.clone();
        async move {
            let tags = s3.get_bucket_tagging().bucket(&bucket).send().await;
            let tags = tags.unwrap_or_else(|e| panic!("{bucket}: {e:?}"));
            tags.tag_set().iter().any(|t| t.key() == "envclone:run")
        }
    };

    // Clone: the clone is handed an envclone-made copy of production's own bucket.
    let clone_state = tempfile::tempdir().unwrap();
    let out = standin.envclone(clone_state.path(), &["clone", "prod", "exp-o", "--yes"]);
    assert!(out.status.success(), "{}\n{}", text(&out), standin.log());
    let passed = params(&stack(&config, "exp-o").await)["ArchiveBucketName"].clone();
    assert!(!passed.is_empty() && passed != owned, "{passed}");
    assert!(made_by_envclone(passed.clone()).await, "{passed}");
    assert_eq!(describe_bucket(&s3, &passed).await, archive);
    let clone_resources = logical_ids("exp-o".into()).await;
    assert!(
        clone_resources.contains(&"Uploads".to_string())
            && !clone_resources.contains(&"ArchiveStore".to_string()),
        "the clone created no archive bucket of its own: {clone_resources:?}"
    );
    precopied_before_standby(&journal_events(clone_state.path()), &passed, archive.len());
    let out = standin.envclone(clone_state.path(), &["verify", "exp-o"]);
    assert!(out.status.success(), "{}", text(&out));

    // Migrate onto the same template, finalized: the new environment is handed its own copy,
    // pre-copied as well; the live environment has the archive's data. The entry record's TTL
    // is cut to 5 s first so that finalize's wait for resolvers to forget it stays short.
    short_entry_ttl(&config, 5).await;
    let migrate_state = tempfile::tempdir().unwrap();
    let hooks = post_swap_config(migrate_state.path(), "prod");
    let template = format!("{}/{TEMPLATE}", env!("CARGO_MANIFEST_DIR"));
    let out = standin.envclone(
        migrate_state.path(),
        &[
            "--config",
            hooks.to_str().unwrap(),
            "migrate",
            "prod",
            "--template",
            &template,
            "--yes",
            "--finalize",
        ],
    );
    assert!(out.status.success(), "{}\n{}", text(&out), standin.log());
    let state = state_of(migrate_state.path());
    assert_eq!(state["phase"], "finalized", "{state}");
    let live = state["target_stack"].as_str().unwrap().to_string();
    let live_archive = params(&stack(&config, &live).await)["ArchiveBucketName"].clone();
    assert!(
        ![String::new(), owned.clone(), passed.clone()].contains(&live_archive),
        "{live_archive}"
    );
    assert!(made_by_envclone(live_archive.clone()).await);
    assert_eq!(describe_bucket(&s3, &live_archive).await, archive);
    let live_resources = logical_ids(live.clone()).await;
    assert!(
        !live_resources.contains(&"ArchiveStore".to_string()),
        "{live_resources:?}"
    );
    let live_uploads = physical_id(&config, &live, "Uploads").await;
    assert_eq!(describe_bucket(&s3, &live_uploads).await, uploads_before);
    precopied_before_standby(
        &journal_events(migrate_state.path()),
        &live_archive,
        archive.len(),
    );
    // The old stack is gone; production's own archive bucket, holding the old data, is kept
    // (finalize never empties a bucket) and named as kept.
    assert!(cf
        .describe_stacks()
        .stack_name("prod")
        .send()
        .await
        .is_err());
    assert_eq!(describe_bucket(&s3, &owned).await, archive);
    assert!(
        text(&out).contains(&format!("bucket {owned}")),
        "{}",
        text(&out)
    );
    // The clone made first is untouched by the migration.
    assert_eq!(describe_bucket(&s3, &passed).await, archive);
}
