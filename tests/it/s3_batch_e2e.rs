//! `envclone s3 sync --engine batch` end to end: the built binary against the stand-in's S3
//! Batch Operations (scripts/standin.py answers the S3 Control job calls over its own S3),
//! checked independently with the AWS SDK and the stand-in's control API. Issue 14 part 1:
//! before, `--engine batch` refused to run without --dry-run, so this failed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use futures::StreamExt;

use crate::e2e::{s3 as s3_client, text, StandIn};

const SRC: &str = "e2e-batch-source";
const DST: &str = "e2e-batch-target";
const REPORTS: &str = "e2e-batch-reports";
const ROLE: &str = "arn:aws:iam::123456789012:role/envclone-batch";
const OBJECTS: usize = 2000;
/// The stand-in's copy limit (AWS: 5 GiB), so one object of a few KiB is "over the limit".
const LIMIT: u64 = 4096;
const FAILING: [&str; 3] = ["k/0007.txt", "k/0500 with space.txt", "k/été/1999.txt"];

fn key(i: usize) -> String {
    match i {
        500 => "k/0500 with space.txt".into(),
        1999 => "k/été/1999.txt".into(),
        _ => format!("k/{i:04}.txt"),
    }
}

pub(crate) async fn control(
    standin: &StandIn,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let client = reqwest::Client::new();
    let url = format!("{}/envclone-standin/batch", standin.url);
    let request = match body {
        Some(b) => client.post(url).body(b.to_string()),
        None => client.get(url),
    };
    let body = request.send().await.unwrap().text().await.unwrap();
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"))
}

fn batch_args(standin: &StandIn, state: &std::path::Path) -> std::process::Command {
    let mut c = standin.command(env!("CARGO_BIN_EXE_envclone"));
    c.arg("--state-dir").arg(state).args([
        "--output",
        "json",
        "s3",
        "sync",
        &format!("s3://{SRC}"),
        &format!("s3://{DST}"),
        "--engine",
        "batch",
        "--batch-role",
        ROLE,
        "--batch-reports",
        &format!("s3://{REPORTS}/envclone"),
        "--batch-poll",
        "300ms",
    ]);
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_sync_survives_kill_9_reuses_its_job_recopies_failures_and_verifies() {
    let standin = StandIn::start();
    let config = standin.sdk().await;
    let s3 = s3_client(&config);
    for b in [SRC, DST, REPORTS] {
        s3.create_bucket().bucket(b).send().await.unwrap();
    }
    let puts = futures::stream::iter(0..OBJECTS)
        .map(|i| {
            let s3 = s3.clone();
            async move {
                // One object over the stand-in's copy limit.
                let body = if i == 1234 {
                    vec![b'x'; LIMIT as usize + 1]
                } else {
                    format!("object {i}").into_bytes()
                };
                s3.put_object()
                    .bucket(SRC)
                    .key(key(i))
                    .body(ByteStream::from(body))
                    .metadata("n", i.to_string())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("put {}: {e:?}", key(i)));
            }
        })
        .buffer_unordered(16);
    puts.collect::<Vec<()>>().await;
    // The job takes a few seconds (5 ms a task), long enough to be killed in the middle.
    control(
        &standin,
        Some(serde_json::json!({
            "copy_limit": LIMIT,
            "fail_keys": FAILING,
            "task_seconds": 0.005,
            "start_seconds": 1.5,
        })),
    )
    .await;

    // First run: killed (SIGKILL) once its job is Active.
    let state = tempfile::tempdir().unwrap();
    let first_log = state.path().join("first.log");
    let log = std::fs::File::create(&first_log).unwrap();
    let mut first = batch_args(&standin, state.path())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let job = loop {
        let jobs = control(&standin, None).await["jobs"].clone();
        if let Some(j) = jobs
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["status"] == "Active" && j["succeeded"].as_u64() > Some(10))
        {
            break j.clone();
        }
        assert!(Instant::now() < deadline, "no job became Active: {jobs}");
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended before its job was active:\n{}\n{}",
            std::fs::read_to_string(&first_log).unwrap_or_default(),
            standin.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    // The re-run follows the same job to its end.
    let out = tokio::task::spawn_blocking(move || {
        let state = state;
        let out = batch_args(&standin, state.path()).output().unwrap();
        (standin, out)
    })
    .await
    .unwrap();
    let (standin, out) = out;
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let resumed = lines
        .iter()
        .find(|l| l["event"]["batch"] == "job_resumed")
        .unwrap_or_else(|| panic!("no job_resumed event:\n{}", text(&out)));
    assert_eq!(resumed["event"]["job_id"], job["id"]);
    assert!(
        !lines.iter().any(|l| l["event"]["batch"] == "job_created"),
        "the re-run created a job:\n{}",
        text(&out)
    );
    let jobs = control(&standin, None).await["jobs"].clone();
    assert_eq!(
        jobs.as_array().unwrap().len(),
        1,
        "one job in ListJobs: {jobs}"
    );
    assert_eq!(jobs[0]["status"], "Complete");
    assert_eq!(jobs[0]["failed"], 4, "{jobs}");

    let report = lines
        .iter()
        .find(|l| l["type"] == "batch-report")
        .unwrap_or_else(|| panic!("no batch report:\n{}", text(&out)));
    let report = &report["report"];
    let failed: BTreeSet<&str> = report["failed_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    let mut expected: BTreeSet<&str> = FAILING.into_iter().collect();
    let big = key(1234);
    expected.insert(&big);
    assert_eq!(failed, expected, "the completion report's failed tasks");
    assert_eq!(report["local"]["copied"], 4, "{report}");
    assert_eq!(
        report["verification"]["compared"], OBJECTS as u64,
        "{report}"
    );
    assert_eq!(report["verification"]["mismatches"], serde_json::json!([]));

    // Independently: every key is in the target with the source's bytes' size and metadata.
    let mut listed = Vec::new();
    let mut pages = s3.list_objects_v2().bucket(DST).into_paginator().send();
    while let Some(page) = pages.next().await {
        listed.extend(
            page.unwrap()
                .contents()
                .iter()
                .map(|o| o.key().unwrap().to_string()),
        );
    }
    assert_eq!(listed.len(), OBJECTS);
    for k in FAILING.iter().copied().chain([big.as_str()]) {
        let head = s3.head_object().bucket(DST).key(k).send().await.unwrap();
        assert!(head.metadata().unwrap().contains_key("n"), "{k}");
    }
    // The completion report is where AWS puts it, and names the failed tasks.
    let manifests: Vec<String> = s3
        .list_objects_v2()
        .bucket(REPORTS)
        .prefix("envclone/")
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_string())
        .filter(|k| {
            k.ends_with(&format!(
                "/job-{}/manifest.json",
                job["id"].as_str().unwrap()
            ))
        })
        .collect();
    assert_eq!(manifests.len(), 1, "{manifests:?}");
}

/// Ctrl-C (SIGINT) while the job runs: envclone exits naming the job and how to follow or
/// cancel it, the job keeps running on the stand-in, and `s3 job status` / `s3 job cancel`
/// reach it.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_leaves_the_job_running_and_says_how_to_follow_or_cancel_it() {
    let standin = StandIn::start();
    let config = standin.sdk().await;
    let s3 = s3_client(&config);
    for b in [SRC, DST, REPORTS] {
        s3.create_bucket().bucket(b).send().await.unwrap();
    }
    for i in 0..40 {
        s3.put_object()
            .bucket(SRC)
            .key(key(i))
            .body(ByteStream::from(format!("object {i}").into_bytes()))
            .send()
            .await
            .unwrap();
    }
    // 40 tasks of 0.5 s: the job is still Active when the run is interrupted.
    control(
        &standin,
        Some(serde_json::json!({"task_seconds": 0.5, "start_seconds": 0.3})),
    )
    .await;
    let state = tempfile::tempdir().unwrap();
    let run = batch_args(&standin, state.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let jobs = control(&standin, None).await["jobs"].clone();
        if let Some(j) = jobs
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["status"] == "Active")
        {
            break j["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no job became Active: {jobs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Give the run time to have read the job's id from CreateJob's answer.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let sent = std::process::Command::new("kill")
        .args(["-INT", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    for expected in [
        format!("batch job {job} keeps running"),
        format!("envclone s3 job status {job} --account 123456789012"),
        format!("envclone s3 job cancel {job} --account 123456789012"),
    ] {
        assert!(said.contains(&expected), "{expected:?} in {}", text(&out));
    }
    let status = standin.envclone(
        state.path(),
        &[
            "--output",
            "json",
            "s3",
            "job",
            "status",
            &job,
            "--account",
            "123456789012",
        ],
    );
    assert!(status.status.success(), "{}", text(&status));
    let described: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(described["job"]["status"], "Active", "{described}");
    let cancel = standin.envclone(
        state.path(),
        &["s3", "job", "cancel", &job, "--account", "123456789012"],
    );
    assert!(cancel.status.success(), "{}", text(&cancel));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = control(&standin, None).await["jobs"].clone();
        if jobs[0]["status"] == "Cancelled" {
            assert!(jobs[0]["succeeded"].as_u64().unwrap() < 40, "{jobs}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job was not cancelled: {jobs}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Issue 14 (`--manifest inventory`) on the stand-in: the source's S3 Inventory configuration
/// (put with the SDK, listed back by ListBucketInventoryConfigurations), a report delivered as
/// S3 delivers it (the stand-in's control API writes the gzip CSV and its manifest.json), a
/// job created over that manifest.json (S3InventoryReport_CSV_20161130) and an object written
/// after the report copied by the local engine after the job. New behaviour: before, there
/// was no `--manifest`.
#[tokio::test(flavor = "multi_thread")]
async fn an_inventory_manifest_copies_through_a_job_and_catches_up_on_later_writes() {
    use aws_sdk_s3::types::{
        InventoryConfiguration, InventoryDestination, InventoryFormat, InventoryFrequency,
        InventoryIncludedObjectVersions, InventoryS3BucketDestination, InventorySchedule,
    };
    let (src, dst, reports) = ("e2e-inv-source", "e2e-inv-target", "e2e-inv-reports");
    let standin = StandIn::start();
    let config = standin.sdk().await;
    let s3 = s3_client(&config);
    for b in [src, dst, reports] {
        s3.create_bucket().bucket(b).send().await.unwrap();
    }
    let put = |key: String| {
        let s3 = s3.clone();
        async move {
            s3.put_object()
                .bucket(src)
                .key(&key)
                .body(ByteStream::from(format!("object {key}").into_bytes()))
                .send()
                .await
                .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
        }
    };
    for i in 0..40 {
        put(format!("k/{i:04}.txt")).await;
    }
    put("k/with space é.txt".into()).await;
    let destination = InventoryS3BucketDestination::builder()
        .bucket(format!("arn:aws:s3:::{reports}"))
        .format(InventoryFormat::Csv)
        .prefix("inventory")
        .build()
        .unwrap();
    let inventory = InventoryConfiguration::builder()
        .id("daily")
        .is_enabled(true)
        .included_object_versions(InventoryIncludedObjectVersions::Current)
        .destination(
            InventoryDestination::builder()
                .s3_bucket_destination(destination)
                .build(),
        )
        .schedule(
            InventorySchedule::builder()
                .frequency(InventoryFrequency::Daily)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    s3.put_bucket_inventory_configuration()
        .bucket(src)
        .id("daily")
        .inventory_configuration(inventory)
        .send()
        .await
        .unwrap();
    let body = reqwest::Client::new()
        .post(format!("{}/envclone-standin/inventory", standin.url))
        .body(serde_json::json!({"bucket": src, "id": "daily"}).to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let published: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
    let manifest = published["manifest"].as_str().unwrap().to_string();
    assert!(
        manifest.starts_with(&format!("inventory/{src}/daily/")),
        "{manifest}"
    );
    // Written after the report was taken: not in it.
    put("late.txt".into()).await;

    let state = tempfile::tempdir().unwrap();
    let out = standin
        .command(env!("CARGO_BIN_EXE_envclone"))
        .arg("--state-dir")
        .arg(state.path())
        .args([
            "--output",
            "json",
            "s3",
            "sync",
            &format!("s3://{src}"),
            &format!("s3://{dst}"),
            "--engine",
            "batch",
            "--manifest",
            "inventory",
            "--batch-role",
            ROLE,
            "--batch-reports",
            &format!("s3://{reports}/envclone"),
            "--batch-poll",
            "300ms",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let event = |name: &str| {
        lines
            .iter()
            .find(|l| l["event"]["batch"] == name)
            .unwrap_or_else(|| panic!("no {name} event in {}", text(&out)))
            .clone()
    };
    assert_eq!(
        event("inventory_manifest")["event"]["location"],
        format!("s3://{reports}/{manifest}")
    );
    let catch_up = event("catch_up");
    assert_eq!(catch_up["event"]["copied"], 1, "{catch_up}");
    let jobs = control(&standin, None).await["jobs"].clone();
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["manifest_format"], "S3InventoryReport_CSV_20161130");
    assert_eq!(jobs[0]["manifest_key"], manifest.as_str());
    assert_eq!(jobs[0]["total"], 41, "the report's objects");
    let mut listed = BTreeSet::new();
    let mut pages = s3.list_objects_v2().bucket(dst).into_paginator().send();
    while let Some(page) = pages.next().await {
        listed.extend(
            page.unwrap()
                .contents()
                .iter()
                .map(|o| o.key().unwrap().to_string()),
        );
    }
    assert_eq!(listed.len(), 42, "{listed:?}");
    assert!(listed.contains("late.txt") && listed.contains("k/with space é.txt"));
}
