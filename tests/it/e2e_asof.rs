//! Issue 13 foundations on the stand-in: a snapshot's point in time is fixed (SnapshotCreateTime
//! set, still `creating`) before it is available, and `envclone s3 sync --as-of` copies a
//! versioned bucket as it was at T.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use envclone::ports::DbKind;
use envclone::s3sync::as_of_point;
use envclone::workflow::resources::wait_snapshot_point_fixed;

use crate::e2e::{describe_bucket, s3 as s3_client, text, StandIn};

/// Through the real RDS adapter: the wait returns while the snapshot is still `creating`
/// (the stand-in keeps it so for its snapshot delay, 3 s by default), with SnapshotCreateTime
/// as T_snapshot; the snapshot becomes available afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn the_snapshot_point_is_fixed_before_the_snapshot_is_available() {
    let standin = StandIn::start();
    let config = standin.sdk().await;
    let rds = aws_sdk_rds::Client::new(&config);
    rds.create_db_instance()
        .db_instance_identifier("asof-db")
        .engine("mysql")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("password123")
        .send()
        .await
        .unwrap();
    let cloud =
        envclone::aws::cloud_from(&config, std::sync::Arc::new(envclone::ports::SystemClock));
    let dbs = cloud.databases;
    let deadline = Instant::now() + Duration::from_secs(30);
    while dbs.status_of(DbKind::Instance, "asof-db").await.unwrap() != Some("available".into()) {
        assert!(Instant::now() < deadline, "the DB never became available");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let asked = chrono::Utc::now();
    rds.create_db_snapshot()
        .db_instance_identifier("asof-db")
        .db_snapshot_identifier("asof-snap")
        .send()
        .await
        .unwrap();
    let t = wait_snapshot_point_fixed(
        dbs.as_ref(),
        DbKind::Instance,
        "asof-snap",
        "asof-db",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert!(
        (t - asked).num_seconds().abs() <= 2,
        "T_snapshot {t}, asked {asked}"
    );
    let snap = dbs.describe_snapshot("asof-snap").await.unwrap().unwrap();
    assert_eq!(
        snap.status, "creating",
        "the point is fixed while the snapshot is still being made"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = dbs.describe_snapshot("asof-snap").await.unwrap().unwrap();
        if s.status == "available" {
            assert_eq!(s.point_fixed_at(), Some(t));
            break;
        }
        assert!(Instant::now() < deadline, "never available: {}", s.status);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

const SRC: &str = "e2e-asof-source";
const DST: &str = "e2e-asof-target";

pub(crate) async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &str) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.as_bytes().to_vec()))
        .content_type("text/plain")
        .tagging("written=by-e2e")
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

/// POSTs `body` to the stand-in's control route `/envclone-standin/<route>` (STANDIN.md).
pub(crate) async fn control(standin: &StandIn, route: &str, body: &str) {
    reqwest::Client::new()
        .post(format!("{}/envclone-standin/{route}", standin.url))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
}

/// Runs `envclone --output json clone prod staging-test --yes` on the stand-in; panics unless it
/// succeeds; returns its JSON lines.
pub(crate) fn clone_prod_json(standin: &StandIn) -> Vec<serde_json::Value> {
    let state = tempfile::tempdir().unwrap();
    let out = standin.envclone(
        state.path(),
        &["--output", "json", "clone", "prod", "staging-test", "--yes"],
    );
    assert!(out.status.success(), "{}\n{}", text(&out), standin.log());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The time of the first `done` event of `step` whose message passes `message`.
pub(crate) fn done_at(
    lines: &[serde_json::Value],
    step: &str,
    message: &dyn Fn(&str) -> bool,
) -> chrono::DateTime<chrono::Utc> {
    let e = lines
        .iter()
        .filter(|l| l["type"] == "event")
        .map(|l| &l["event"])
        .find(|e| {
            e["step"] == step
                && e["phase"] == "done"
                && message(e["message"].as_str().unwrap_or(""))
        })
        .unwrap_or_else(|| panic!("no such {step} event: {lines:?}"));
    e["time"].as_str().unwrap().parse().unwrap()
}

/// The report of a run's JSON lines.
pub(crate) fn report_of(lines: &[serde_json::Value]) -> serde_json::Value {
    lines
        .iter()
        .find(|l| l["type"] == "report")
        .expect("a report")["report"]
        .clone()
}

/// The quiet period, T on a second boundary inside it (the stand-in runs on this clock);
/// returns once writers may resume.
pub(crate) async fn quiet_period() -> envclone::s3sync::AsOfPoint {
    let point = as_of_point(chrono::Utc::now(), Duration::ZERO);
    let quiet = (point.quiet_until - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(quiet + Duration::from_millis(50)).await;
    point
}

/// PutBucketVersioning Enabled.
pub(crate) async fn enable_versioning(s3: &aws_sdk_s3::Client, bucket: &str) {
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
}

pub(crate) async fn delete(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) {
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
}

/// The object's bytes. Read without checking the response checksum: moto 5.2.5 without its
/// optional CRT labels a CRC32 value `x-amz-checksum-crc64nvme` (STANDIN.md, "SSE-KMS
/// ETags"), which the SDK would refuse for any copy made with the CRC64NVME envclone asks for.
pub(crate) async fn body(config: &aws_config::SdkConfig, bucket: &str, key: &str) -> String {
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            .build(),
    );
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    String::from_utf8(out.body.collect().await.unwrap().to_vec()).unwrap()
}

/// The same scenario as the fake's (fake_asof::buckets): overwrite, delete and create after T
/// are absent from the copy, and so is a key that had only a delete marker at T; the
/// verification as of T passes although the source changed after T.
#[tokio::test(flavor = "multi_thread")]
async fn s3_sync_as_of_copies_a_versioned_bucket_as_it_was_at_t() {
    let standin = StandIn::start();
    let config = standin.sdk().await;
    let s3 = s3_client(&config);
    for b in [SRC, DST] {
        s3.create_bucket().bucket(b).send().await.unwrap();
    }
    enable_versioning(&s3, SRC).await;
    put(&s3, SRC, "overwritten", "as of T").await;
    put(&s3, SRC, "deleted-after", "there at T").await;
    put(&s3, SRC, "kept", "never touched").await;
    put(&s3, SRC, "deleted-before", "gone before T").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    delete(&s3, SRC, "deleted-before").await;
    delete(&s3, SRC, "only-a-marker").await;
    let point = quiet_period().await;
    put(&s3, SRC, "overwritten", "after T").await;
    delete(&s3, SRC, "deleted-after").await;
    put(&s3, SRC, "created-after", "not there at T").await;
    put(&s3, SRC, "only-a-marker", "written after T").await;
    put(&s3, DST, "deleted-before", "stale").await;
    put(&s3, DST, "created-after", "stale").await;

    let state = tempfile::tempdir().unwrap();
    let t = point.t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (src, dst) = (format!("s3://{SRC}"), format!("s3://{DST}"));
    let out = standin.envclone(
        state.path(),
        &[
            "s3", "sync", &src, &dst, "--delete", "--verify", "--as-of", &t,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let copied = describe_bucket(&s3, DST).await;
    assert_eq!(
        copied.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["deleted-after", "kept", "overwritten"],
        "{copied:?}"
    );
    assert_eq!(body(&config, DST, "overwritten").await, "as of T");
    assert_eq!(body(&config, DST, "deleted-after").await, "there at T");
    let tags = s3
        .get_object_tagging()
        .bucket(DST)
        .key("overwritten")
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tag_set().len(), 1, "the version's tags came along");

    // Without --as-of the same verification fails: the source has moved on since T.
    let out = standin.envclone(state.path(), &["s3", "sync", &src, &dst, "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("would copy") && stdout.contains("created-after"),
        "{stdout}"
    );

    // A source without versioning is refused, naming the fix.
    s3.create_bucket()
        .bucket("e2e-asof-other")
        .send()
        .await
        .unwrap();
    let out = standin.envclone(
        state.path(),
        &["s3", "sync", &dst, "s3://e2e-asof-other", "--as-of", &t],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("put-bucket-versioning"),
        "{}",
        text(&out)
    );
}

/// A stand-in with `prod` seeded, its snapshots `creating` for `seconds`: the stand-in, its
/// SDK configuration and `prod`'s buckets (Reports, by parameter; Uploads, the stack's own).
async fn prod_with_snapshot_delay(seconds: u32) -> (StandIn, aws_config::SdkConfig, [String; 2]) {
    let standin = StandIn::start();
    standin.seed("prod", "stacks/webapp.yaml", &[]);
    let config = standin.sdk().await;
    control(
        &standin,
        "snapshot-delay",
        &format!(r#"{{"seconds": {seconds}}}"#),
    )
    .await;
    let source = crate::e2e::stack(&config, "prod").await;
    let reports = crate::e2e::params(&source)["ReportsBucketName"].clone();
    let uploads = crate::e2e::physical_id(&config, "prod", "Uploads").await;
    (standin, config, [reports, uploads])
}

/// Issue 13, "the stand-in lets the end-to-end test observe the order": a real `envclone
/// clone` of `prod` (both buckets versioned, snapshots `creating` for 8 s) returns the source's
/// instances to service before its snapshot is `available`, by the times of its JSON events,
/// and its report gives T and the window's length.
#[tokio::test(flavor = "multi_thread")]
async fn a_clone_returns_the_source_to_service_before_its_snapshot_is_available() {
    let (standin, config, [reports, uploads]) = prod_with_snapshot_delay(8).await;
    let s3 = s3_client(&config);
    for bucket in [&reports, &uploads] {
        enable_versioning(&s3, bucket).await;
    }
    let lines = clone_prod_json(&standin);
    let back = done_at(&lines, "standby.exit", &|m| m == "back in service");
    let point = done_at(&lines, "snapshot", &|m| {
        m.starts_with("point in time fixed")
    });
    let available = done_at(&lines, "snapshot", &|m| m == "available");
    assert!(
        point <= back && back < available,
        "point fixed {point}, source back in service {back}, snapshot available {available}"
    );
    let report = report_of(&lines);
    let window = &report["window"];
    assert!(window["t"].is_string(), "{report}");
    let seconds = window["seconds"].as_f64().expect("window length");
    assert!(seconds > 0.0, "{window}");
    assert!(window["whole"].as_array().unwrap().is_empty(), "{window}");
    // The source's instances are in service now.
    let fleet = crate::e2e::physical_id(&config, "prod", "WebGroup").await;
    let (_, _, states) = crate::e2e::group_state(&config, &fleet).await;
    assert!(states.iter().all(|s| s == "InService"), "{states:?}");
}

/// Issue 13, "a write to the source after T is absent from the clone (stand-in, versioned
/// bucket: overwrite, delete and create after T)", at the level of `envclone clone`: once the
/// clone's JSON events say the source is back in service (its snapshot still `creating`), one
/// key of each versioned source bucket is overwritten, one deleted and one created; the clone's
/// buckets hold what the source held at T, and `envclone verify` (as of the run's T) passes
/// while a difference made in the clone afterwards fails it.
#[tokio::test(flavor = "multi_thread")]
async fn writes_to_the_source_after_the_window_are_absent_from_the_clone_and_verify_passes() {
    use std::io::BufRead;

    let (standin, config, [reports, uploads]) = prod_with_snapshot_delay(10).await;
    let s3 = s3_client(&config);
    let mut at_t = Vec::new();
    for bucket in [&reports, &uploads] {
        enable_versioning(&s3, bucket).await;
        let before = describe_bucket(&s3, bucket).await;
        assert!(before.len() >= 2, "{bucket}: {before:?}");
        at_t.push(before);
    }

    let state = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let mut child = standin
        .command(env!("CARGO_BIN_EXE_envclone"))
        .arg("--state-dir")
        .arg(state.path())
        .args(["--output", "json", "clone", "prod", "staging-test", "--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(logs.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let back_in_service = |l: &str| {
        serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
            let e = &v["event"];
            v["type"] == "event"
                && e["step"] == "standby.exit"
                && e["phase"] == "done"
                && e["message"] == "back in service"
        })
    };
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(180))
            .unwrap_or_else(|e| panic!("no end of the window ({e}): {lines:#?}"));
        let done = back_in_service(&line);
        lines.push(line);
        if done {
            break;
        }
    }
    // The source serves again and the clone goes on: write to it now.
    let snapshot_available = lines.iter().any(|l| {
        serde_json::from_str::<serde_json::Value>(l)
            .is_ok_and(|v| v["event"]["step"] == "snapshot" && v["event"]["message"] == "available")
    });
    assert!(
        !snapshot_available,
        "the window ended before the snapshot was available"
    );
    let mut written = Vec::new();
    for (bucket, before) in [&reports, &uploads].into_iter().zip(&at_t) {
        let mut keys = before.keys();
        let overwritten = keys.next().unwrap().clone();
        let deleted = keys.next().unwrap().clone();
        put(&s3, bucket, &overwritten, "written after T").await;
        delete(&s3, bucket, &deleted).await;
        put(&s3, bucket, "created-after-t", "not there at T").await;
        written.push((overwritten, deleted));
    }
    let status = child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    let stderr = std::fs::read_to_string(logs.path().join("stderr")).unwrap_or_default();
    assert!(
        status.success(),
        "{status}\n{}\n{stderr}\n{}",
        lines.join("\n"),
        standin.log()
    );

    let clone_reports = crate::e2e::params(&crate::e2e::stack(&config, "staging-test").await)
        ["ReportsBucketName"]
        .clone();
    let clone_uploads = crate::e2e::physical_id(&config, "staging-test", "Uploads").await;
    for ((clone, before), (overwritten, deleted)) in [&clone_reports, &clone_uploads]
        .into_iter()
        .zip(&at_t)
        .zip(&written)
    {
        let copied = describe_bucket(&s3, clone).await;
        assert_eq!(&copied, before, "{clone} holds its source as of T");
        assert_ne!(body(&config, clone, overwritten).await, "written after T");
        assert!(
            copied.contains_key(deleted),
            "{clone}: {deleted} was there at T"
        );
        assert!(!copied.contains_key("created-after-t"), "{clone}");
    }

    // `envclone verify` compares as of the run's T: the writes after it are not differences.
    let out = standin.envclone(state.path(), &["verify", "staging-test"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("compared as of run"), "{said}");
    // A difference made in the clone is one.
    let (overwritten, _) = &written[1];
    put(&s3, &clone_uploads, overwritten, "changed in the clone").await;
    let out = standin.envclone(state.path(), &["verify", "staging-test"]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains(overwritten.as_str()), "{said}");
}
