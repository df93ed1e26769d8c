//! Shared test fixtures: a seeded source environment on the fake, the tricky object keys.

use std::sync::Arc;

use envclone::events::Emitter;
use envclone::fake::Collector;
use envclone::fake::MemoryRunStore;
use envclone::fake::{FakeAws, Timings};
use envclone::ports::{DnsRecord, ObjectHead};
use envclone::s3sync::SyncOptions;
use envclone::workflow::clone::{CloneEngine, Settings};
use envclone::workflow::plan::CloneRequest;

pub const WEBAPP: &str = include_str!("../../stacks/webapp.yaml");
pub const FOREIGN: &str = include_str!("../fixtures/foreign.yaml");

/// Keys that break naive copiers: URL-special characters, unicode, folder markers, empties.
pub const TRICKY_KEYS: &[&str] = &[
    "with space.txt",
    "données/été.txt",
    "a+b.txt",
    "100%.txt",
    "what?.txt",
    "hash#tag.txt",
    "folder/",
    "nested/deep/x.json",
    "日本語/ファイル.txt",
    "trailing/slash/",
];

pub const REPORTS: &str = "prod-reports-123456789012";
pub const UPLOADS: &str = "prod-uploads-123456789012";

pub struct Scenario {
    pub fake: FakeAws,
    pub engine: CloneEngine,
    #[allow(dead_code)] // kept for scenarios that inspect the event stream
    pub events: Arc<Collector>,
    pub emitter: Emitter,
}

pub fn timings() -> Timings {
    Timings {
        min_part_size: 1024,
        ..Timings::default()
    }
}

pub fn settings() -> Settings {
    Settings {
        sync: SyncOptions {
            multipart_threshold: 8 * 1024,
            concurrency: 8,
            ..SyncOptions::default()
        },
        ..Settings::default()
    }
}

impl Scenario {
    pub fn new(timings: Timings) -> Self {
        let fake = FakeAws::new(timings);
        let engine = CloneEngine {
            cloud: fake.cloud(),
            settings: settings(),
        };
        let events = Arc::new(Collector::default());
        let emitter = Emitter {
            run_id: "test".into(),
            sink: events.clone(),
            clock: Arc::new(envclone::fake::FakeClock),
        };
        Scenario {
            fake,
            engine,
            events,
            emitter,
        }
    }

    /// The reference environment `prod`, deployed and filled.
    pub fn with_webapp_prod() -> Self {
        let s = Scenario::new(timings());
        s.deploy_prod(WEBAPP);
        s.fake.put_dns(
            "envclone-demo.example.",
            DnsRecord::cname("app.envclone-demo.example.", "prod-alb.fake", 300),
        );
        s
    }

    /// `prod` deployed from `template` (the reference template or a variant of it) with the
    /// reference parameters, its buckets filled.
    pub fn deploy_prod(&self, template: &str) {
        self.fake.create_bucket_now(REPORTS);
        self.fake.deploy_now(
            "prod",
            template,
            &[
                ("EnvironmentName", "prod"),
                ("ReportsBucketName", REPORTS),
                ("InstanceType", "t3.small"),
                ("DesiredCapacity", "3"),
            ],
        );
        fill(&self.fake, REPORTS);
        fill(&self.fake, UPLOADS);
    }

    pub fn request(&self, target: &str) -> CloneRequest {
        CloneRequest {
            source: "prod".into(),
            target: envclone::model::EnvName::parse(target).unwrap(),
            template: None,
            parameter_overrides: Default::default(),
            standby: true,
            reset_defaults: false,
            environment_tag: None,
            owner: None,
            expires_at: None,
            config: Default::default(),
        }
    }

    pub fn source_group(&self) -> envclone::ports::AsgInfo {
        let name = self
            .fake
            .group_names()
            .into_iter()
            .find(|g| g.starts_with("prod-"))
            .expect("prod has a group");
        self.fake.group(&name).unwrap()
    }
}

/// Puts the tricky keys, an empty object, objects with metadata and tags, a multipart object
/// and a single-part object above the test multipart threshold.
pub fn fill(fake: &FakeAws, bucket: &str) {
    for (i, key) in TRICKY_KEYS.iter().enumerate() {
        let body = if key.ends_with('/') {
            Vec::new()
        } else {
            format!("{bucket}:{key}:{i}").into_bytes()
        };
        let mut head = ObjectHead {
            content_type: Some(
                if key.ends_with(".json") {
                    "application/json"
                } else {
                    "text/plain"
                }
                .into(),
            ),
            ..Default::default()
        };
        head.metadata.insert("origin".into(), format!("seed-{i}"));
        fake.put_object(bucket, key, &body, head, &[("class", "tricky")]);
    }
    fake.put_object(bucket, "empty", b"", ObjectHead::default(), &[]);
    for i in 0..40 {
        fake.put_object(
            bucket,
            &format!("data/{i:03}.bin"),
            format!("payload {i}").as_bytes(),
            ObjectHead::default(),
            &[],
        );
    }
    let big: Vec<u8> = (0..5 * 1024u32).map(|i| (i % 251) as u8).collect();
    fake.put_multipart_object(
        bucket,
        "multipart/big.bin",
        &big,
        &[2048, 2048, 1024],
        ObjectHead {
            content_type: Some("application/octet-stream".into()),
            cache_control: Some("max-age=60".into()),
            ..Default::default()
        },
    );
    let single: Vec<u8> = (0..12 * 1024u32).map(|i| (i % 13) as u8).collect();
    fake.put_object(
        bucket,
        "large-single.bin",
        &single,
        ObjectHead::default(),
        &[("size", "large")],
    );
}

/// An `envclone.toml` with a post_swap hook for `prod`: the reference templates hand their
/// database's endpoint to the application, so migrating them needs a hook that repoints it.
pub fn post_swap_hook_config() -> Arc<envclone::config::Config> {
    Arc::new(
        envclone::config::Config::parse(
            "envclone.toml",
            "[environments.prod.hooks]\npost_swap = [\"repoint-db-host\"]\n",
        )
        .unwrap(),
    )
}

/// `template` (webapp.yaml or webapp-v2.yaml) whose application receives two NoEcho secrets in its user data, the way many
/// public templates hand credentials to the instances: `ApiKey` (no default) and
/// `AppDbPassword` (default `changeme`, which the database restored from the source does not
/// take). With `noecho_defaults`, the contract lists these as safe to take their default.
pub fn with_app_secrets(template: &str, noecho_defaults: &[&str]) -> String {
    let mut body = template.to_string();
    for (from, to) in [
        (
            "  DBSnapshotIdentifier:\n",
            "  ApiKey:\n    Type: String\n    NoEcho: true\n  AppDbPassword:\n    Type: String\n    \
             NoEcho: true\n    Default: changeme\n  DBSnapshotIdentifier:\n",
        ),
        (
            "              DB_NAME=webapp\n",
            "              DB_NAME=webapp\n              DB_PASSWORD=${AppDbPassword}\n              \
             API_KEY=${ApiKey}\n",
        ),
    ] {
        assert!(body.contains(from), "the template no longer has {from:?}");
        body = body.replacen(from, to, 1);
    }
    if !noecho_defaults.is_empty() {
        let list = format!("    noecho_defaults: [{}]\n", noecho_defaults.join(", "));
        body = body.replacen("  envclone:\n", &format!("  envclone:\n{list}"), 1);
    }
    body
}

/// The run id every fake scenario uses (names derived from it are asserted).
pub fn run_id() -> envclone::model::RunId {
    envclone::model::RunId::from_existing("20261121000000-beef")
}

/// The source `prod` of `Scenario::with_webapp_prod` back in service: every instance InService,
/// desired capacity and MinSize as they were.
pub fn assert_source_in_service(s: &Scenario, context: &str) {
    let g = s.source_group();
    assert_eq!(g.instances.len(), 3, "{context}: {g:?}");
    assert!(
        g.instances.iter().all(|i| i.lifecycle_state == "InService"),
        "{context}: all instances back in service: {g:?}"
    );
    assert_eq!(
        (g.desired_capacity, g.min_size),
        (3, 1),
        "{context}: capacity and MinSize restored: {g:?}"
    );
}

/// Runs the clone until the `n`-th mutating call has been made, then drops it.
pub async fn crash_at(s: &Scenario, store: &MemoryRunStore, n: u64) -> bool {
    let plan = s
        .engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap();
    let crash = s.fake.crash_after_nth_mutating_call(n);
    tokio::select! {
        biased;
        () = crash.notified() => true,
        _ = s.engine.run_clone(&plan, store, &s.emitter, std::future::pending(), None) => false,
    }
}

/// Runs a whole recorded clone of `prod` into `target`; panics if it fails.
pub async fn clone_to_end(
    s: &Scenario,
    store: &MemoryRunStore,
    target: &str,
) -> envclone::workflow::clone::CloneReport {
    let plan = s
        .engine
        .preflight(&s.request(target), run_id())
        .await
        .unwrap();
    s.engine
        .run_clone(&plan, store, &s.emitter, std::future::pending(), None)
        .await
        .unwrap_or_else(|f| panic!("clone into {target} failed: {}", f.error))
}

/// Runs `migrate` of `request` to the end of the swap; panics if preflight or the run fails.
pub async fn migrated_by(
    s: &Scenario,
    store: &MemoryRunStore,
    request: &envclone::workflow::migrate::MigrateRequest,
) -> envclone::workflow::migrate::MigrationState {
    let plan = s
        .engine
        .preflight_migrate(request, run_id())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.engine
        .migrate(&plan, store, &s.emitter, std::future::pending())
        .await
        .unwrap_or_else(|f| panic!("migrate failed: {}", f.error))
}

/// When the source entered Standby (first EnterStandby) and left it (last ExitStandby), on
/// the fake's clock.
pub fn standby_span(s: &Scenario) -> (std::time::Duration, std::time::Duration) {
    let calls = s.fake.calls();
    let entered = calls
        .iter()
        .find(|c| c.operation == "autoscaling:EnterStandby")
        .expect("entered Standby")
        .at;
    let exited = calls
        .iter()
        .rev()
        .find(|c| c.operation == "autoscaling:ExitStandby")
        .expect("left Standby")
        .at;
    (entered, exited)
}
