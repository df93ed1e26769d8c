//! Issue 15 item 6 on the fake: fixed names the clone would share with the source (a role name
//! from a parameter carried over unchanged) are refused at preflight, naming the `--parameter`
//! that changes them; with it, the clone goes through. Migrate's new stack, which exists
//! alongside the old one, is held to the same rule.

use envclone::workflow::migrate::MigrateRequest;
use envclone::workflow::PreflightError;

use crate::fake_migrate::{prod, prod_from};
use crate::support::*;

/// webapp.yaml with an application role whose name is a parameter (`AppRoleName`), as many
/// templates have it; the rest names itself from the environment parameter.
fn role_template() -> String {
    let t = WEBAPP
        .replace(
            "Parameters:\n",
            "Parameters:\n  AppRoleName:\n    Type: String\n    Default: webapp-app\n    Description: Name of the application's IAM role.\n",
        )
        .replace(
            "  # --- storage ---",
            "  AppRole:\n    Type: AWS::IAM::Role\n    Properties:\n      RoleName: !Ref AppRoleName\n      AssumeRolePolicyDocument:\n        Version: \"2012-10-17\"\n        Statement:\n          - { Effect: Allow, Principal: { Service: ec2.amazonaws.com }, Action: \"sts:AssumeRole\" }\n\n  # --- storage ---",
        );
    assert!(t.contains("RoleName: !Ref AppRoleName"), "the edit took");
    t
}

/// Fails before the fix: preflight passed, and the clone stack failed in Standby on
/// "RoleName webapp-app already exists" (HandlerErrorCode AlreadyExists) after the
/// snapshot and the bucket copies.
#[tokio::test(start_paused = true)]
async fn a_role_name_carried_from_the_source_is_refused_before_any_change() {
    let template = role_template();
    // prod left AppRoleName at its default: a clone carries it, migrate takes the new
    // template's default — the same name either way.
    let (s, _) = prod_from(&template).await;

    let err = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PreflightError::FixedNames { collisions, .. } if collisions.len() == 1),
        "{err:?}"
    );
    let message = err.to_string();
    for part in [
        "stack staging-test would create 1 resource(s) under names stack prod already uses",
        "AppRole (AWS::IAM::Role) RoleName \"webapp-app\"",
        "--parameter AppRoleName=NEW",
        "nothing was changed",
    ] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    assert_eq!(s.fake.mutating_calls(), Vec::<String>::new());

    // Migrate: the new stack exists alongside the old one, so the same name is refused there.
    let migrate = |overrides: &[(&str, &str)]| MigrateRequest {
        env: "prod".into(),
        template: ("role.yaml".into(), template.clone()),
        parameter_overrides: overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        config: post_swap_hook_config(),
    };
    let err = s
        .engine
        .preflight_migrate(&migrate(&[]), run_id())
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(err, PreflightError::FixedNames { .. })
            && err.to_string().contains("--parameter AppRoleName=NEW"),
        "{err}"
    );
    s.engine
        .preflight_migrate(&migrate(&[("AppRoleName", "webapp-app-2")]), run_id())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // With the role renamed, the clone goes through.
    let mut request = s.request("staging-test");
    request
        .parameter_overrides
        .insert("AppRoleName".into(), "webapp-staging-app".into());
    let plan = s
        .engine
        .preflight(&request, run_id())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.engine
        .execute(&plan, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("{}", f.error));
    assert!(s
        .fake
        .live_stack_names()
        .contains(&"staging-test".to_string()));
}

/// The repository's own templates name everything from the environment parameter (or let
/// CloudFormation choose): no false refusal, for a clone or for migrate onto revision 2.
#[tokio::test(start_paused = true)]
async fn the_reference_templates_have_no_fixed_names() {
    let (s, _) = prod().await;
    s.engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.engine
        .preflight_migrate(
            &MigrateRequest {
                env: "prod".into(),
                template: (
                    "stacks/webapp-v2.yaml".into(),
                    include_str!("../../stacks/webapp-v2.yaml").into(),
                ),
                parameter_overrides: Default::default(),
                config: post_swap_hook_config(),
            },
            run_id(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}
