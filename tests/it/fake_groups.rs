//! Real Auto Scaling groups (issue 11, items 1–3) on the fake, which scales as AWS does:
//! scheduled actions set the desired capacity, the group launches instances (Pending, then
//! InService) while fewer serve than desired, unless the `Launch` / `ScheduledActions`
//! processes are suspended; EnterStandby/ExitStandby take at most 20 ids; instances leaving
//! Standby pass through Pending, where a launch lifecycle hook can hold them.

use std::time::Duration;

use envclone::events::Phase;
use envclone::journal::MemoryRunStore;

use crate::support::*;

fn warnings(s: &Scenario) -> Vec<String> {
    s.events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.phase == Phase::Warning)
        .map(|e| e.message.clone())
        .collect()
}

fn calls(s: &Scenario, operation: &str) -> usize {
    s.fake
        .calls()
        .iter()
        .filter(|c| c.operation == operation)
        .count()
}

/// Item 1: a group keeps scaling during Standby unless its processes are suspended. A scheduled
/// action launches an instance just before the run (still Pending when Standby starts) and
/// another is due during the snapshot. Before the fix the launched instance went InService
/// while the snapshot was taken (and the second action launched more). Now: the processes are
/// suspended for the run, the launching instance is waited for and put into Standby too, no
/// instance serves when the snapshot is taken, the action due meanwhile is skipped (as AWS
/// does), and the processes come back as they were — the operator's own AZRebalance
/// suspension stays.
#[tokio::test(start_paused = true)]
async fn a_group_that_scales_during_standby_is_held_still_for_the_snapshot() {
    let s = Scenario::with_webapp_prod();
    let group = s.source_group().name;
    s.fake.suspend_now(&group, &["AZRebalance"]);
    s.fake
        .schedule_capacity(&group, Duration::from_millis(1), 4);
    s.fake
        .schedule_capacity(&group, Duration::from_secs(200), 4);
    // The first action is applied and its instance starts launching.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let g = s.source_group();
    assert_eq!(g.desired_capacity, 4);
    assert!(
        g.instances.iter().any(|i| i.lifecycle_state == "Pending"),
        "{g:?}"
    );

    let store = MemoryRunStore::default();
    clone_to_end(&s, &store, "staging-test").await;

    let serving = s.fake.serving_at_snapshots();
    assert!(!serving.is_empty());
    for (snapshot, ids) in &serving {
        assert!(
            ids.is_empty(),
            "instances {ids:?} were serving when {snapshot} was taken"
        );
    }
    let g = s.source_group();
    assert_eq!(g.suspended_processes, vec!["AZRebalance".to_string()]);
    assert_eq!(
        (g.min_size, g.max_size, g.desired_capacity),
        (1, 4, 4),
        "{g:?}"
    );
    assert_eq!(g.instances.len(), 4, "{g:?}");
    assert!(
        g.instances.iter().all(|i| i.lifecycle_state == "InService"),
        "{g:?}"
    );
}

/// Item 1, every path: the processes suspended by a run are resumed when the run fails at
/// any of its mutating calls, and the source is back in service — except where the failed call
/// is itself one of the calls that return it (ExitStandby, the size restore, ResumeProcesses):
/// then the run fails naming the group, and resumes what it still can.
#[tokio::test(start_paused = true)]
async fn suspended_processes_are_resumed_on_every_failure() {
    let s = Scenario::with_webapp_prod();
    let store = MemoryRunStore::default();
    let before = s.fake.mutating_calls().len();
    clone_to_end(&s, &store, "staging-test").await;
    let made: Vec<String> = s.fake.mutating_calls()[before..].to_vec();
    let first_exit = made
        .iter()
        .position(|c| c == "autoscaling:ExitStandby")
        .expect("the run left Standby");
    let mut failed = 0;
    for (index, operation) in made.iter().enumerate() {
        let n = index as u64 + 1;
        let s = Scenario::with_webapp_prod();
        let store = MemoryRunStore::default();
        let plan = s
            .engine
            .preflight(&s.request("staging-test"), run_id())
            .await
            .unwrap();
        s.fake.fail_nth_mutating_call(n);
        let result = s
            .engine
            .run_clone(&plan, &store, &s.emitter, std::future::pending(), None)
            .await;
        let context = format!("failure of mutating call {n} ({operation})");
        let returning = index >= first_exit && operation.starts_with("autoscaling:");
        let g = s.source_group();
        if returning {
            let failure = result
                .err()
                .unwrap_or_else(|| panic!("{context}: must fail"));
            assert!(
                failure.error.to_string().contains(&g.name),
                "{context}: {}",
                failure.error
            );
        } else {
            if result.is_err() {
                failed += 1;
            }
            assert_source_in_service(&s, &context);
        }
        if operation != "autoscaling:ResumeProcesses" {
            assert!(
                g.suspended_processes.is_empty(),
                "{context}: {:?}",
                g.suspended_processes
            );
        }
    }
    assert!(failed > 5, "{failed}");
}

/// Item 2: EnterStandby and ExitStandby take at most 20 ids a call. A group of 60 instances
/// goes into Standby and back in batches. Before the fix the single call of 60 ids was refused
/// and the clone failed.
#[tokio::test(start_paused = true)]
async fn sixty_instances_enter_and_leave_standby_twenty_at_a_time() {
    let s = Scenario::with_webapp_prod();
    let group = s.source_group().name;
    s.fake.grow_group_now(&group, 57);
    let g = s.source_group();
    assert_eq!(g.instances.len(), 60);
    let sizes = (g.min_size, g.max_size, g.desired_capacity);

    let store = MemoryRunStore::default();
    clone_to_end(&s, &store, "staging-test").await;
    assert_eq!(calls(&s, "autoscaling:EnterStandby"), 3);
    assert_eq!(calls(&s, "autoscaling:ExitStandby"), 3);
    let g = s.source_group();
    assert_eq!((g.min_size, g.max_size, g.desired_capacity), sizes);
    assert!(
        g.instances.iter().all(|i| i.lifecycle_state == "InService"),
        "{g:?}"
    );
    for (snapshot, ids) in s.fake.serving_at_snapshots() {
        assert!(ids.is_empty(), "{snapshot}: {ids:?}");
    }
}

/// Item 3a: an instance terminated while in Standby (a Spot reclaim). The run does not wait
/// for it, reports it, and puts the group's sizes back; the group then replaces it.
#[tokio::test(start_paused = true)]
async fn an_instance_terminated_in_standby_is_reported_and_replaced() {
    let s = Scenario::with_webapp_prod();
    let group = s.source_group().name;
    let victim = s.source_group().instances[0].id.clone();
    let store = MemoryRunStore::default();
    let reclaim = async {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let g = s.source_group();
            if g.instances
                .iter()
                .any(|i| i.id == victim && i.lifecycle_state == "Standby")
            {
                s.fake.terminate_instance(&group, &victim);
                return;
            }
        }
    };
    let (report, ()) = tokio::join!(clone_to_end(&s, &store, "staging-test"), reclaim);
    assert!(!report.standby.is_empty());
    assert!(
        warnings(&s)
            .iter()
            .any(|w| w.contains(&victim) && w.contains("left the group")),
        "{:?}",
        warnings(&s)
    );
    let g = s.source_group();
    assert_eq!(
        (g.min_size, g.max_size, g.desired_capacity),
        (1, 4, 3),
        "{g:?}"
    );
    assert!(g.suspended_processes.is_empty(), "{g:?}");
    // Launch is back: the group replaces the lost instance.
    tokio::time::sleep(Duration::from_secs(120)).await;
    let g = s.source_group();
    assert_eq!(g.instances.len(), 3, "{g:?}");
    assert!(
        g.instances.iter().all(|i| i.lifecycle_state == "InService"),
        "{g:?}"
    );
}

/// Item 3b: a launch lifecycle hook holds the instances in Pending:Wait on ExitStandby. The
/// run stops waiting after a grace period, reports them, and still puts the sizes back.
/// Before the fix it waited for InService until its timeout and failed.
#[tokio::test(start_paused = true)]
async fn instances_held_by_a_lifecycle_hook_are_reported() {
    let s = Scenario::with_webapp_prod();
    let group = s.source_group().name;
    s.fake.hold_launches(&group);
    let store = MemoryRunStore::default();
    clone_to_end(&s, &store, "staging-test").await;
    assert!(
        warnings(&s).iter().any(|w| w.contains("Pending:Wait")),
        "{:?}",
        warnings(&s)
    );
    let g = s.source_group();
    assert_eq!(
        (g.min_size, g.max_size, g.desired_capacity),
        (1, 4, 3),
        "{g:?}"
    );
    assert!(
        g.instances
            .iter()
            .all(|i| i.lifecycle_state == "Pending:Wait"),
        "{g:?}"
    );
    assert!(g.suspended_processes.is_empty(), "{g:?}");
}

/// Item 3c: the desired capacity raised during Standby (by hand; scaling is suspended) would
/// take ExitStandby past MaxSize. MaxSize is raised for the call and MinSize, MaxSize and the
/// desired capacity are put back. Before the fix ExitStandby was refused and the instances
/// stayed in Standby.
#[tokio::test(start_paused = true)]
async fn a_desired_capacity_raised_during_standby_does_not_strand_the_instances() {
    let s = Scenario::with_webapp_prod();
    let group = s.source_group().name;
    let store = MemoryRunStore::default();
    let raise = async {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let g = s.source_group();
            if g.instances.iter().all(|i| i.lifecycle_state == "Standby") {
                s.fake.set_desired_now(&group, 3);
                return;
            }
        }
    };
    tokio::join!(clone_to_end(&s, &store, "staging-test"), raise);
    assert!(
        warnings(&s).iter().any(|w| w.contains("past MaxSize")),
        "{:?}",
        warnings(&s)
    );
    assert_source_in_service(&s, "desired raised during Standby");
    let g = s.source_group();
    assert_eq!(g.max_size, 4, "{g:?}");
}
