//! Statuses as enums (issue 12, "Ports with types, not strings"): what the workflow does with a
//! database status it does not know — kept as AWS spelled it, never taken for `available`.

use std::time::Duration;

use envclone::ports::DbStatus;
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
