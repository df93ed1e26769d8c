//! Issue 13, item 1, on the stand-in: a real `envclone clone` of a `prod` whose template can
//! restore its database to a point in time takes no snapshot, returns the source to service
//! before the source's latest restorable time has passed T, and CloudFormation restores the
//! clone's database to exactly T (the stand-in records the time; it refuses a time after the
//! latest restorable time, as RDS does). The stand-in has no data: that a write after T is
//! absent is shown on the fake (`fake_pitr`).

use crate::e2e::StandIn;
use crate::e2e_asof::{clone_prod_json, control, done_at, enable_versioning, report_of};

#[tokio::test(flavor = "multi_thread")]
async fn a_clone_restores_its_database_to_t_after_the_source_serves_again() {
    let standin = StandIn::start();
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("webapp-pitr.yaml");
    std::fs::write(
        &template,
        crate::fake_pitr::with_pitr(include_str!("../../stacks/webapp.yaml")),
    )
    .unwrap();
    standin.seed("prod", template.to_str().unwrap(), &[]);
    // The source's latest restorable time trails the clock by 8 s: the run must wait for it,
    // outside the window.
    control(&standin, "restorable-lag", r#"{"seconds": 8}"#).await;
    let config = standin.sdk().await;
    let source = crate::e2e::stack(&config, "prod").await;
    let reports = crate::e2e::params(&source)["ReportsBucketName"].clone();
    let uploads = crate::e2e::physical_id(&config, "prod", "Uploads").await;
    let s3 = crate::e2e::s3(&config);
    for bucket in [&reports, &uploads] {
        enable_versioning(&s3, bucket).await;
    }
    let lines = clone_prod_json(&standin);
    let back = done_at(&lines, "standby.exit", &|m| m == "back in service");
    let restorable = done_at(&lines, "restore", &|m| m.starts_with("restorable to "));
    assert!(
        back < restorable,
        "source back in service {back}, latest restorable time past T {restorable}"
    );
    let report = report_of(&lines);
    let t = report["window"]["t"].as_str().expect("T").to_string();
    let t = chrono::DateTime::parse_from_rfc3339(&t)
        .unwrap()
        .with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(
        report["snapshots"],
        serde_json::json!([format!(
            "restored to {t} from prod-db (point-in-time restore)"
        )]),
        "{report}"
    );
    assert!(
        report["window"]["outside"][0]
            .as_str()
            .is_some_and(|o| o.starts_with("database prod-db: restored to T")),
        "{report}"
    );
    let restored = crate::e2e::restored(&standin).await;
    assert_eq!(
        restored.get("staging-test-db"),
        Some(&format!("point-in-time restore of prod-db at {t}")),
        "{restored:?}"
    );
    // No snapshot was taken by the run (moto's automated ones aside).
    let rds = aws_sdk_rds::Client::new(&config);
    let manual = rds
        .describe_db_snapshots()
        .snapshot_type("manual")
        .send()
        .await
        .unwrap();
    assert!(manual.db_snapshots().is_empty(), "{manual:?}");
}
