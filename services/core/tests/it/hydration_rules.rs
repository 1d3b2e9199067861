//! The hydration rules: how progress moves the state, what the lag is, and
//! when a hydration ends on its own (stale, failed with its lease).

use proptest::prelude::*;
use sluice_core::containers::ContainerName;
use sluice_core::hydrations::rules::{self, check_new};
use sluice_core::hydrations::{
    Hydration, HydrationPhase, HydrationState, LogView, NewHydration, ProgressReport,
};
use sluice_core::snapshots::Snapshot;
use sluice_core::{Lease, LeaseId, LeaseState, Millis, Mode, TableName};

fn chain(n: usize) -> Vec<Snapshot> {
    (0..n)
        .map(|i| Snapshot {
            id: 100 + i as i64,
            parent_id: (i > 0).then(|| 99 + i as i64),
            sequence_number: i as i64 + 1,
            timestamp: Millis(1_000_000 + i as i64 * 60_000),
            operation: "append".into(),
            summary: Default::default(),
            expired_at: None,
        })
        .collect()
}

fn log(n: usize) -> LogView {
    let snapshots = chain(n);
    LogView {
        current: snapshots.last().map(|s| s.id),
        snapshots,
    }
}

fn new(threshold: u32) -> NewHydration {
    NewHydration {
        id: LeaseId::new_v7(),
        table: TableName::parse("sales.orders").unwrap(),
        container: ContainerName::parse("analytics").unwrap(),
        target: "public.orders_v2".into(),
        views: vec!["orders".into()],
        columns: None,
        lag_threshold_snapshots: threshold,
    }
}

fn report(phase: HydrationPhase, snapshot_id: i64) -> ProgressReport {
    ProgressReport {
        phase,
        snapshot_id,
        rows_copied: None,
        rows_total: None,
    }
}

fn created(threshold: u32, log: &LogView) -> Hydration {
    rules::create(new(threshold), log, Some("job"), Millis(2_000_000)).0
}

proptest! {
    /// Whatever snapshot a job reports, the stored lag counts the snapshots
    /// after it, and `live` means caught up within the threshold.
    #[test]
    fn live_is_catching_up_within_the_threshold(n in 1usize..20, at in 0usize..20, threshold in 0u32..5) {
        let log = log(n);
        let at = at % n;
        let mut h = created(threshold, &log);
        let mut events = Vec::new();
        let now = Millis(5_000_000);
        let became_live = rules::progress(&mut h, &report(HydrationPhase::CatchingUp, log.snapshots[at].id), &log, now, &mut events).unwrap();
        let behind = (n - 1 - at) as u64;
        prop_assert_eq!(h.lag.snapshots_behind, behind);
        prop_assert_eq!(h.state == HydrationState::Live, behind <= u64::from(threshold));
        prop_assert_eq!(became_live, h.state == HydrationState::Live);
        let oldest = (at + 1 < n).then(|| log.snapshots[at + 1].timestamp);
        prop_assert_eq!(h.lag.oldest_unapplied_at, oldest);
        prop_assert_eq!(h.lag.seconds_behind(now), oldest.map_or(0, |t| (now.0 - t.0) / 1000));
    }
}

#[test]
fn a_new_hydration_counts_the_whole_ancestry_and_the_snapshot_phase_never_goes_live() {
    let log = log(3);
    let mut h = created(5, &log);
    assert_eq!(
        (h.state, h.lag.snapshots_behind),
        (HydrationState::Pending, 3)
    );
    let mut events = Vec::new();
    rules::progress(
        &mut h,
        &report(HydrationPhase::Snapshot, 102),
        &log,
        Millis(3_000_000),
        &mut events,
    )
    .unwrap();
    assert_eq!(h.state, HydrationState::Snapshot);
    assert_eq!(h.lag.snapshots_behind, 0);
    let back = rules::progress(
        &mut h,
        &report(HydrationPhase::Snapshot, 100),
        &log,
        Millis(3_000_001),
        &mut events,
    );
    assert!(
        back.is_err(),
        "an older snapshot than the applied one is refused"
    );
    rules::progress(
        &mut h,
        &report(HydrationPhase::CatchingUp, 102),
        &log,
        Millis(3_000_002),
        &mut events,
    )
    .unwrap();
    assert_eq!(h.state, HydrationState::Live);
    let again = rules::progress(
        &mut h,
        &report(HydrationPhase::Snapshot, 102),
        &log,
        Millis(3_000_003),
        &mut events,
    );
    assert!(again.is_err(), "a phase cannot go back");
}

#[test]
fn expiring_the_applied_snapshot_makes_it_stale_and_final() {
    let mut log = log(4);
    let mut h = created(0, &log);
    let mut events = Vec::new();
    rules::progress(
        &mut h,
        &report(HydrationPhase::CatchingUp, 101),
        &log,
        Millis(3_000_000),
        &mut events,
    )
    .unwrap();
    assert_eq!(h.state, HydrationState::CatchingUp);
    // Expiring an older snapshot changes nothing.
    log.snapshots[0].expired_at = Some(Millis(4_000_000));
    rules::relag(&mut h, &log, Millis(4_000_000), &mut events);
    assert_eq!(h.state, HydrationState::CatchingUp);
    log.snapshots[1].expired_at = Some(Millis(4_000_001));
    rules::relag(&mut h, &log, Millis(4_000_001), &mut events);
    assert_eq!(h.state, HydrationState::Stale);
    assert!(h.reason.as_deref().unwrap().contains("101"));
    assert_eq!(h.ended_at, Some(Millis(4_000_001)));
    let refused = rules::progress(
        &mut h,
        &report(HydrationPhase::CatchingUp, 103),
        &log,
        Millis(4_000_002),
        &mut events,
    );
    assert_eq!(refused.unwrap_err().kind(), "hydration_stale");
}

/// A granted-then-ended read lease on the table, in `state`.
fn lease(state: LeaseState) -> Lease {
    Lease {
        id: LeaseId::new_v7(),
        table: TableName::parse("sales.orders").unwrap(),
        seq: 1,
        mode: Mode::Read,
        holder: "h".into(),
        purpose: None,
        state,
        token: Some(1),
        ttl_seconds: 60,
        requested_at: Millis(0),
        granted_at: Some(Millis(0)),
        expires_at: Millis(60_000),
        ended_at: None,
        end_reason: Some("maintenance".into()),
        idempotency_key: None,
        pin_snapshot_id: None,
        principal: None,
    }
}

#[test]
fn its_lease_ending_fails_it_unless_it_ended_first() {
    let log = log(2);
    let mut events = Vec::new();
    let mut h = created(0, &log);
    rules::follow_lease(&mut h, &lease(LeaseState::Granted), Millis(1), &mut events);
    assert_eq!(h.state, HydrationState::Pending);
    rules::follow_lease(&mut h, &lease(LeaseState::Revoked), Millis(2), &mut events);
    assert_eq!(h.state, HydrationState::Failed);
    assert!(h.reason.as_deref().unwrap().contains("maintenance"));
    let mut cancelled = created(0, &log);
    rules::cancel(&mut cancelled, "wrong target", Millis(3), &mut events).unwrap();
    rules::follow_lease(
        &mut cancelled,
        &lease(LeaseState::Revoked),
        Millis(4),
        &mut events,
    );
    assert_eq!(cancelled.state, HydrationState::Cancelled);
    assert!(rules::cancel(&mut cancelled, "again", Millis(5), &mut events).is_err());
}

#[test]
fn released_while_live_it_completes_and_can_still_be_superseded() {
    let log = log(3);
    let mut events = Vec::new();
    let released = |h: &Hydration| Lease {
        id: h.id,
        ended_at: Some(Millis(10)),
        end_reason: None,
        ..lease(LeaseState::Released)
    };
    // Released before live: the copy is not whole, so it failed.
    let mut early = created(0, &log);
    let lease = released(&early);
    rules::follow_lease(&mut early, &lease, Millis(1), &mut events);
    assert_eq!(early.state, HydrationState::Failed);

    let mut h = created(0, &log);
    rules::progress(
        &mut h,
        &report(HydrationPhase::CatchingUp, 102),
        &log,
        Millis(3_000_000),
        &mut events,
    )
    .unwrap();
    assert_eq!(h.state, HydrationState::Live);
    let lease = released(&h);
    rules::follow_lease(&mut h, &lease, Millis(3_000_001), &mut events);
    assert_eq!(h.state, HydrationState::Completed);
    assert!(h.state.is_final() && h.state.is_mappable());
    assert!(h.reason.as_deref().unwrap().contains("102"));
    let refused = rules::progress(
        &mut h,
        &report(HydrationPhase::CatchingUp, 102),
        &log,
        Millis(3_000_002),
        &mut events,
    );
    assert_eq!(refused.unwrap_err().kind(), "hydration_ended");
    rules::supersede(&mut h, LeaseId::new_v7(), Millis(3_000_003), &mut events);
    assert_eq!(h.state, HydrationState::Superseded);
}

#[test]
fn supersede_moves_exactly_the_states_that_can_be_superseded() {
    let log = log(3);
    for state in HydrationState::ALL {
        let mut h = Hydration {
            state,
            ..created(0, &log)
        };
        let mut events = Vec::new();
        rules::supersede(&mut h, LeaseId::new_v7(), Millis(9), &mut events);
        let moved = h.state == HydrationState::Superseded && state != HydrationState::Superseded;
        // Running ones and whole copies; not those that ended on their own.
        let expected = matches!(
            state,
            HydrationState::Pending
                | HydrationState::Snapshot
                | HydrationState::CatchingUp
                | HydrationState::Live
                | HydrationState::Completed
        );
        assert_eq!(
            (moved, state.can_be_superseded()),
            (expected, expected),
            "{state:?}"
        );
    }
}

#[test]
fn names_are_checked_before_the_rules_see_them() {
    let ok = new(0);
    assert!(check_new(&ok).is_ok());
    for (target, views) in [
        ("bad name", vec!["v"]),
        ("a.b.c", vec!["v"]),
        ("1abc", vec!["v"]),
        ("t", vec!["t"]),
        ("t", vec!["v", "v"]),
    ] {
        let mut n = new(0);
        n.target = target.into();
        n.views = views.into_iter().map(String::from).collect();
        assert!(check_new(&n).is_err(), "{target}");
    }
    let mut n = new(0);
    n.columns = Some(vec![]);
    assert!(check_new(&n).is_err());
}
