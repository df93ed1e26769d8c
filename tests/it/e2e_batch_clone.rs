//! `envclone clone` of a stack whose contract bucket is `{ engine: batch }`, end to end: the
//! built binary against the stand-in, whose S3 Batch Operations jobs copy over its own S3
//! (scripts/standin.py), checked independently with the SDK and the stand-in's control API.
//! Issue 14 part 1 ("`envclone clone` with a contract bucket `{ engine: batch }` clones end to
//! end on the stand-in"): before, the contract refused `engine:` (exit 2), so this failed.

use aws_sdk_s3::primitives::ByteStream;

use crate::e2e::*;

const ROLE: &str = "arn:aws:iam::123456789012:role/envclone-batch";
const BATCH_REPORTS: &str = "e2e-clone-batch-reports";
const FAILING: &str = "batch/fail-me.txt";

async fn jobs(standin: &StandIn) -> Vec<serde_json::Value> {
    let body = reqwest::get(format!("{}/envclone-standin/batch", standin.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["jobs"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_contract_bucket_with_engine_batch_clones_end_to_end() {
    let standin = StandIn::start();
    // The reference template with its Reports bucket copied by a job (a test template: the
    // reference ones keep their behaviour).
    let dir = tempfile::tempdir().unwrap();
    let reference =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/stacks/webapp.yaml"))
            .unwrap();
    let template = reference.replace(
        "Reports: { bucket_parameter: ReportsBucketName }",
        "Reports: { bucket_parameter: ReportsBucketName, engine: batch }",
    );
    assert_ne!(template, reference);
    let path = dir.path().join("webapp-batch.yaml");
    std::fs::write(&path, template).unwrap();
    standin.seed("prod", path.to_str().unwrap(), &[]);
    let config = standin.sdk().await;
    let s3 = s3(&config);
    let reports = params(&stack(&config, "prod").await)["ReportsBucketName"].clone();
    s3.create_bucket()
        .bucket(BATCH_REPORTS)
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket(&reports)
        .key(FAILING)
        .body(ByteStream::from(b"the job fails me".to_vec()))
        .send()
        .await
        .unwrap();
    let body =
        serde_json::json!({"fail_keys": [FAILING], "task_seconds": 0.01, "start_seconds": 0.5});
    reqwest::Client::new()
        .post(format!("{}/envclone-standin/batch", standin.url))
        .body(body.to_string())
        .send()
        .await
        .unwrap();

    let state = tempfile::tempdir().unwrap();
    let batch_reports = format!("s3://{BATCH_REPORTS}/envclone");
    let batch = [
        "--batch-role",
        ROLE,
        "--batch-reports",
        &batch_reports,
        "--batch-poll",
        "300ms",
    ];
    // Without a role and a reports location: refused before any change, naming the bucket.
    let before = world(&config).await;
    let refused = standin.envclone(state.path(), &["clone", "prod", "exp-b", "--yes"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!("bucket Reports (s3://{reports})"))
            && stderr.contains("--batch-role and --batch-reports were not given"),
        "{}",
        text(&refused)
    );
    assert_eq!(world(&config).await, before, "nothing changed");

    // The plan shows the job.
    let plan = standin.envclone(
        state.path(),
        &[&["plan", "clone", "prod", "exp-b"][..], &batch].concat(),
    );
    assert!(plan.status.success(), "{}", text(&plan));
    let shown = String::from_utf8_lossy(&plan.stdout);
    assert!(
        shown.contains("S3 Batch Operations job ({ engine: batch } in its contract entry Reports)")
            && shown.contains(&format!("role {ROLE}"))
            && shown.contains(&format!(
                "manifest s3://{BATCH_REPORTS}/envclone/envclone-batch/"
            )),
        "{}",
        text(&plan)
    );

    let out = standin.envclone(
        state.path(),
        &[&["clone", "prod", "exp-b", "--yes"][..], &batch].concat(),
    );
    assert!(out.status.success(), "{}\n{}", text(&out), standin.log());

    let clone_reports = params(&stack(&config, "exp-b").await)["ReportsBucketName"].clone();
    let jobs = jobs(&standin).await;
    assert!(!jobs.is_empty(), "no job was created:\n{}", text(&out));
    let first = &jobs[0];
    assert_eq!(first["status"], "Complete", "{jobs:?}");
    assert_eq!(first["failed"], 1, "{jobs:?}");
    assert!(
        first["description"]
            .as_str()
            .unwrap()
            .contains(&format!("s3://{clone_reports}/")),
        "{jobs:?}"
    );
    let token = first["token"].as_str().unwrap();
    assert!(
        token.starts_with("envclone-") && token.ends_with("-1") && token.len() <= 64,
        "{token}"
    );
    // Every job copied into the clone's bucket only (Uploads stays with the local engine).
    assert!(jobs.iter().all(|j| j["description"]
        .as_str()
        .unwrap()
        .contains(&format!("s3://{reports}/ -> s3://{clone_reports}/"))));
    // Independently: the clone's bucket holds what the source holds, the failed key included,
    // every object with its size, content type, metadata and tags; the ETags too, but for a
    // multipart object: S3PutObjectCopy is a CopyObject, whose copy is single-part (the
    // verification compared those by content).
    let split = |d: std::collections::BTreeMap<String, String>| {
        d.into_iter()
            .map(|(k, v)| {
                let (size, rest) = v.split_once(" etag=").unwrap();
                let (etag, rest) = rest.split_once(" type=").unwrap();
                (k, (format!("{size} type={rest}"), etag.to_string()))
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let source = split(describe_bucket(&s3, &reports).await);
    let copied = split(describe_bucket(&s3, &clone_reports).await);
    assert!(source.contains_key(FAILING));
    assert_eq!(
        copied.keys().collect::<Vec<_>>(),
        source.keys().collect::<Vec<_>>()
    );
    for (k, (head, etag)) in &source {
        let (copied_head, copied_etag) = &copied[k];
        assert_eq!(copied_head, head, "{k}");
        if !etag.contains('-') {
            assert_eq!(copied_etag, etag, "{k}");
        }
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("bucket {clone_reports} = {reports}")),
        "{}",
        text(&out)
    );
}
