//! Templates over CreateStack's 51,200-byte TemplateBody limit, end to end on the stand-in
//! (issue 15, item 2): the stand-in refuses such a body as CloudFormation does, and envclone
//! stages the template in S3 and creates the clone from its URL. Before the fix the clone was
//! refused at preflight ("CloudFormation takes at most 51200 in TemplateBody").

use crate::e2e::{s3, text, StandIn};
use crate::fake_staging::big_webapp;

#[tokio::test(flavor = "multi_thread")]
async fn a_template_over_51200_bytes_clones_on_the_stand_in() {
    let standin = StandIn::start();
    standin.seed("prod", "stacks/webapp.yaml", &[]);
    let config = standin.sdk().await;
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let big = big_webapp();

    // As CloudFormation does, the stand-in takes no such TemplateBody in a request.
    let refused = cfn
        .create_stack()
        .stack_name("direct")
        .template_body(&big)
        .send()
        .await
        .expect_err("a TemplateBody over 51,200 bytes is refused");
    let refused = format!("{:?}", refused.into_service_error());
    assert!(
        refused.contains("ValidationError") && refused.contains("51200"),
        "{refused}"
    );

    let state = tempfile::tempdir().unwrap();
    let template = state.path().join("webapp-large.yaml");
    std::fs::write(&template, &big).unwrap();
    let out = standin.envclone(
        state.path(),
        &[
            "clone",
            "prod",
            "large-1",
            "--yes",
            "--template",
            template.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}\n{}", text(&out), standin.log());
    assert!(
        text(&out).contains("s3://envclone-tpl-"),
        "staged in a bucket of the run's own: {}",
        text(&out)
    );

    // The clone stack holds the whole template, and the staging bucket is gone.
    let got = cfn
        .get_template()
        .stack_name("large-1")
        .send()
        .await
        .unwrap();
    assert_eq!(got.template_body(), Some(big.as_str()));
    let buckets = s3(&config).list_buckets().send().await.unwrap();
    let staging: Vec<&str> = buckets
        .buckets()
        .iter()
        .filter_map(|b| b.name())
        .filter(|n| n.starts_with("envclone-tpl-"))
        .collect();
    assert!(staging.is_empty(), "{staging:?}");
    // gc's look for staging leftovers (ListBuckets through the adapter) finds none.
    let out = standin.envclone(state.path(), &["gc", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("leftover"), "{}", text(&out));
}

/// A database inside a nested stack is refused before any change, naming it (the stand-in's
/// moto creates `AWS::CloudFormation::Stack` from a TemplateURL in its own S3; STANDIN.md lists
/// where its nested stacks differ from CloudFormation's).
#[tokio::test(flavor = "multi_thread")]
async fn a_database_in_a_nested_stack_is_refused_on_the_stand_in() {
    let standin = StandIn::start();
    let config = standin.sdk().await;
    let s3 = s3(&config);
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let bucket = "ops-templates-123456789012";
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    let nested = "AWSTemplateFormatVersion: \"2010-09-09\"\n\
        Resources:\n  AnalyticsDb:\n    Type: AWS::RDS::DBInstance\n    Properties:\n      \
        DBInstanceIdentifier: analytics-db\n      Engine: postgres\n      \
        DBInstanceClass: db.t3.micro\n      AllocatedStorage: \"20\"\n      \
        MasterUsername: analytics\n      MasterUserPassword: not-a-secret-1\n";
    s3.put_object()
        .bucket(bucket)
        .key("nested/data.yaml")
        .body(nested.as_bytes().to_vec().into())
        .send()
        .await
        .unwrap();
    let parent = format!(
        "AWSTemplateFormatVersion: \"2010-09-09\"\nResources:\n  Data:\n    \
         Type: AWS::CloudFormation::Stack\n    Properties:\n      \
         TemplateURL: https://{bucket}.s3.us-east-1.amazonaws.com/nested/data.yaml\n"
    );
    cfn.create_stack()
        .stack_name("reports")
        .template_body(parent)
        .send()
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let status = crate::e2e::stack(&config, "reports").await;
        match status.stack_status().map(|s| s.as_str()) {
            Some("CREATE_COMPLETE") => break,
            Some(s) if s.ends_with("IN_PROGRESS") => {}
            other => panic!("reports: {other:?}\n{}", standin.log()),
        }
        assert!(std::time::Instant::now() < deadline, "reports not created");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    let state = tempfile::tempdir().unwrap();
    let out = standin.envclone(state.path(), &["clone", "reports", "reports-qa", "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    for part in [
        "AWS::RDS::DBInstance AnalyticsDb (analytics-db) in nested stack Data",
        "nothing was changed",
    ] {
        assert!(said.contains(part), "{part:?} in {said}");
    }
    let stacks = cfn.describe_stacks().send().await.unwrap();
    assert!(
        stacks
            .stacks()
            .iter()
            .all(|s| s.stack_name() != Some("reports-qa")),
        "no clone stack"
    );
}
