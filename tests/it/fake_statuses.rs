//! Statuses as enums (issue 12, "Ports with types, not strings"): what the workflow does with a
//! database status it does not know — kept as AWS spelled it, never taken for `available`.

use std::time::Duration;

use envclone::ports::DbStatus;
use envclone::workflow::migrate::MigratePhase;
use envclone::workflow::PreflightError;

use crate::support::*;

/// A source database in a status RDS may add after envclone's list (kept as
/// `DbStatus::Other`) is not available: preflight refuses the clone before any change, naming
/// the database and the status as RDS spelled it. The same for a documented status that is
/// not `available` (stopped).
#[tokio::test(start_paused = true)]
async fn preflight_refuses_a_database_in_an_unknown_status() {
    let s = Scenario::with_webapp_prod();
    for status in [DbStatus::Other("hibernating".into()), DbStatus::Stopped] {
        s.fake
            .set_db_status("prod-db", status.clone(), Duration::from_secs(3600));
        let err = s
            .engine
            .preflight(&s.request("staging-test"), run_id())
            .await
            .unwrap_err();
        let PreflightError::DatabaseNotAvailable { id, status: seen } = &err else {
            panic!("expected DatabaseNotAvailable, got {err}");
        };
        assert_eq!((id.as_str(), seen), ("prod-db", &status));
        assert!(
            err.to_string()
                .contains(&format!("database prod-db is {status}, not available")),
            "{err}"
        );
    }
    assert_eq!(s.fake.mutating_calls(), Vec::<String>::new());
    // Once RDS shows it available again, the same request passes preflight.
    tokio::time::sleep(Duration::from_secs(3601)).await;
    s.engine
        .preflight(&s.request("staging-test"), run_id())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// During the swap the new environment's database shows a status RDS may add later (kept as
/// `DbStatus::Other`): the swap neither takes it for available nor waits for it to settle — it
/// stops, naming the database and the status as RDS spelled it, and does not swap back through
/// a database in that state either (the run stays `swapping`, pointing at `abort`). Once RDS
/// shows the database available again, `abort` puts the source's database back under its name.
#[tokio::test(start_paused = true)]
async fn the_swap_stops_on_a_database_in_an_unknown_status() {
    let (s, _) = crate::fake_migrate::prod().await;
    // At the first rename (the source's database moving aside), the clone's database turns
    // `hibernating` for an hour.
    s.fake.on_call("rds:ModifyDBInstance", |f| {
        let clone_db = f
            .db_ids()
            .into_iter()
            .find(|id| id.starts_with("prod-mbeef"))
            .expect("the clone's database");
        f.set_db_status(
            &clone_db,
            DbStatus::Other("hibernating".into()),
            Duration::from_secs(3600),
        );
    });
    let store = envclone::fake::MemoryRunStore::default();
    let plan = s
        .engine
        .preflight_migrate(&crate::fake_migrate::request(), run_id())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let failure = s
        .engine
        .migrate(&plan, &store, &s.emitter, std::future::pending())
        .await
        .expect_err("the swap stops");
    let message = failure.error.to_string();
    assert!(
        message.contains("is hibernating, a state it does not leave by itself"),
        "{message}"
    );
    assert!(
        s.fake
            .calls()
            .iter()
            .any(|c| c.operation == "rds:ModifyDBInstance"),
        "the swap had started"
    );
    assert!(
        message.contains("swapping back ALSO failed") && message.contains("envclone abort"),
        "{message}"
    );
    let mut state = failure.state;
    assert_eq!(state.phase, MigratePhase::Swapping);
    tokio::time::sleep(Duration::from_secs(3601)).await;
    s.engine
        .abort_migration(&mut state, &store, &s.emitter)
        .await
        .unwrap_or_else(|e| panic!("abort once the database is available: {e}"));
    assert_eq!(state.phase, MigratePhase::Aborted);
    assert!(
        s.fake.db_ids().contains(&"prod-db".to_string()),
        "{:?}",
        s.fake.db_ids()
    );
}
