//! The hydration rules: sessions (one run at a time, fenced by its token),
//! how progress moves the state, what the lag is, when the read lease is
//! given up, and when a hydration ends on its own (stale, failed with its
//! lease in its first hydration).

use proptest::prelude::*;
use sluice_core::containers::ContainerName;
use sluice_core::hydrations::rules::{self, check_new};
use sluice_core::hydrations::{
    Attach, Hydration, HydrationPhase, HydrationState, LogView, NewHydration, ProgressReport,
};
use sluice_core::snapshots::Snapshot;
use sluice_core::{Lease, LeaseId, LeaseState, Millis, Mode, RuleError, TableName};

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
        token: 1,
        phase,
        snapshot_id,
        rows_copied: None,
        rows_total: None,
    }
}

const RUN_TTL: u32 = 3600;

fn run(id: &str) -> Attach {
    Attach {
        run_id: id.into(),
        ttl_seconds: RUN_TTL,
    }
}

/// A new hydration with run `r1` attached (session token 1).
fn created(threshold: u32, log: &LogView) -> Hydration {
    let now = Millis(2_000_000);
    let mut h = rules::create(new(threshold), log, Some("job"), now).0;
    rules::attach(&mut h, &run("r1"), Some("job"), now, &mut Vec::new()).unwrap();
    h
}

fn progress(
    h: &mut Hydration,
    phase: HydrationPhase,
    id: i64,
    log: &LogView,
    at: i64,
) -> Result<bool, RuleError> {
    let token = h.session.as_ref().map_or(0, |s| s.token);
    let report = ProgressReport {
        token,
        ..report(phase, id)
    };
    rules::progress(h, &report, Some("job"), log, Millis(at), &mut Vec::new())
}

/// One step of a run's life against a hydration.
#[derive(Debug, Clone)]
enum Op {
    Attach { run: u8 },
    Heartbeat { token: u64 },
    Detach { token: u64 },
    Report { token: u64 },
    Wait { seconds: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..3).prop_map(|run| Op::Attach { run }),
        (0u64..6).prop_map(|token| Op::Heartbeat { token }),
        (0u64..6).prop_map(|token| Op::Detach { token }),
        (0u64..6).prop_map(|token| Op::Report { token }),
        (1u32..2000).prop_map(|seconds| Op::Wait { seconds }),
    ]
}

proptest! {
    /// Whatever snapshot a job reports, the stored lag counts the snapshots
    /// after it, and `live` means caught up within the threshold.
    #[test]
    fn live_is_catching_up_within_the_threshold(n in 1usize..20, at in 0usize..20, threshold in 0u32..5) {
        let log = log(n);
        let at = at % n;
        let mut h = created(threshold, &log);
        let now = Millis(5_000_000);
        let became_live = progress(&mut h, HydrationPhase::CatchingUp, log.snapshots[at].id, &log, now.0).unwrap();
        let behind = (n - 1 - at) as u64;
        prop_assert_eq!(h.lag.snapshots_behind, behind);
        prop_assert_eq!(h.state == HydrationState::Live, behind <= u64::from(threshold));
        prop_assert_eq!(became_live, h.state == HydrationState::Live);
        let oldest = (at + 1 < n).then(|| log.snapshots[at + 1].timestamp);
        prop_assert_eq!(h.lag.oldest_unapplied_at, oldest);
        prop_assert_eq!(h.lag.seconds_behind(now), oldest.map_or(0, |t| (now.0 - t.0) / 1000));
    }

    /// Sessions: at most one run is attached at a time; a second run is
    /// refused, naming the first, until the first detaches or its TTL runs
    /// out; tokens only grow; a report, heartbeat or detach counts only
    /// with the attached session's token.
    #[test]
    fn one_run_at_a_time_fenced_by_its_token(ops in prop::collection::vec(op(), 1..40)) {
        let log = log(3);
        let mut h = rules::create(new(0), &log, Some("job"), Millis(2_000_000)).0;
        let mut now = Millis(2_000_000);
        let mut last_token = 0;
        for op in ops {
            let attached = h.attached(now).cloned();
            match op {
                Op::Attach { run: r } => {
                    let id = format!("run-{r}");
                    let result = rules::attach(&mut h, &run(&id), Some("job"), now, &mut Vec::new());
                    match (&attached, result) {
                        (Some(s), Err(RuleError::SessionHeld { run_id, .. })) => {
                            prop_assert_ne!(&s.run_id, &id);
                            prop_assert_eq!(run_id, s.run_id.clone());
                        }
                        (Some(s), Ok(again)) => {
                            prop_assert_eq!(&s.run_id, &id);
                            prop_assert_eq!(again.token, s.token, "the same run keeps its session");
                        }
                        (None, Ok(new)) => {
                            prop_assert!(new.token > last_token, "a new session's token is higher");
                            last_token = new.token;
                        }
                        (_, other) => prop_assert!(false, "unexpected {:?}", other),
                    }
                }
                Op::Heartbeat { token } => {
                    let ok = rules::heartbeat(&mut h, token, Some("job"), now).is_ok();
                    prop_assert_eq!(ok, attached.as_ref().is_some_and(|s| s.token == token));
                }
                Op::Report { token } => {
                    let report = ProgressReport { token, ..report(HydrationPhase::Snapshot, 100) };
                    let ok = rules::progress(&mut h, &report, Some("job"), &log, now, &mut Vec::new()).is_ok();
                    prop_assert_eq!(ok, attached.as_ref().is_some_and(|s| s.token == token));
                }
                Op::Detach { token } => {
                    let result = rules::detach(&mut h, token, Some("job"), now, &mut Vec::new());
                    prop_assert_eq!(result.is_ok(), token <= h.sessions);
                    if attached.as_ref().is_some_and(|s| s.token == token) {
                        prop_assert!(h.attached(now).is_none(), "detached");
                    }
                }
                Op::Wait { seconds } => now = now.plus_seconds(seconds),
            }
            prop_assert_eq!(h.sessions, last_token);
        }
    }

    /// Reports from a first hydration through to following: `became_live`
    /// is answered exactly once, by the report that first makes it live
    /// (when the store releases its read lease), and it never holds the
    /// lease again; after it, the state is `live` or `lagging` by the lag.
    #[test]
    fn the_read_lease_is_given_up_exactly_at_the_first_live(
        reports in prop::collection::vec((0usize..8, any::<bool>()), 1..20),
        threshold in 0u32..3,
    ) {
        let log = log(8);
        let mut h = created(threshold, &log);
        let mut went_live = 0;
        let mut at = 2_000_100;
        let mut applied = 0;
        for (index, snapshot_phase) in reports {
            let index = index.max(applied);
            let phase = if snapshot_phase { HydrationPhase::Snapshot } else { HydrationPhase::CatchingUp };
            let held = h.state.holds_lease();
            at += 1;
            let Ok(became_live) = progress(&mut h, phase, log.snapshots[index].id, &log, at) else {
                continue;
            };
            applied = index;
            went_live += u32::from(became_live);
            prop_assert_eq!(became_live, held && !h.state.holds_lease());
            if !h.state.holds_lease() {
                let within = (7 - index) as u32 <= threshold;
                prop_assert_eq!(h.state, if within { HydrationState::Live } else { HydrationState::Lagging });
                prop_assert_eq!(h.pin(), Some(log.snapshots[index].id));
            } else {
                prop_assert_eq!(h.pin(), None, "the read lease pins a first hydration");
            }
        }
        prop_assert!(went_live <= 1);
        prop_assert_eq!(went_live == 1, !h.state.holds_lease());
    }

    /// Between runs, a copy past its first hydration follows the table: a
    /// refresh makes it `lagging` past its threshold and `live` again once
    /// a report catches it up; its views stay mapped either way.
    #[test]
    fn a_copy_nobody_updates_falls_behind_and_stays_mapped(extra in 1usize..6, threshold in 0u32..3) {
        let mut log = log(2);
        let mut h = created(threshold, &log);
        progress(&mut h, HydrationPhase::CatchingUp, 101, &log, 2_000_100).unwrap();
        rules::detach(&mut h, 1, Some("job"), Millis(2_000_200), &mut Vec::new()).unwrap();
        prop_assert_eq!(h.state, HydrationState::Live);
        let more = chain(2 + extra);
        log = LogView { current: more.last().map(|s| s.id), snapshots: more };
        rules::relag(&mut h, &log, Millis(9_000_000), &mut Vec::new());
        prop_assert_eq!(h.lag.snapshots_behind, extra as u64);
        let behind = extra as u32 > threshold;
        prop_assert_eq!(h.state, if behind { HydrationState::Lagging } else { HydrationState::Live });
        prop_assert!(h.state.is_mappable() && !h.state.is_final());
        prop_assert!(h.attached(Millis(9_000_000)).is_none());
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
    progress(&mut h, HydrationPhase::Snapshot, 102, &log, 2_000_100).unwrap();
    assert_eq!(h.state, HydrationState::Snapshot);
    assert_eq!(h.lag.snapshots_behind, 0);
    let back = progress(&mut h, HydrationPhase::Snapshot, 100, &log, 2_000_101);
    assert!(
        back.is_err(),
        "an older snapshot than the applied one is refused"
    );
    progress(&mut h, HydrationPhase::CatchingUp, 102, &log, 2_000_102).unwrap();
    assert_eq!(h.state, HydrationState::Live);
    let again = progress(&mut h, HydrationPhase::Snapshot, 102, &log, 2_000_103);
    assert!(again.is_err(), "a phase cannot go back");
}

#[test]
fn another_principal_cannot_use_the_session_and_a_stale_token_is_told_to_attach() {
    let log = log(3);
    let mut h = created(0, &log);
    let now = Millis(2_000_100);
    let report = ProgressReport {
        token: 1,
        ..report(HydrationPhase::Snapshot, 102)
    };
    let other = rules::progress(
        &mut h,
        &report,
        Some("intruder"),
        &log,
        now,
        &mut Vec::new(),
    );
    assert_eq!(other.unwrap_err().kind(), "not_owner");
    let stale = ProgressReport {
        token: 7,
        ..report.clone()
    };
    let refused = rules::progress(&mut h, &stale, Some("job"), &log, now, &mut Vec::new());
    assert_eq!(refused.unwrap_err().kind(), "session_stale");
    // Past its TTL the session is gone: the same token is stale, and
    // another run may attach, with a higher token.
    let later = now.plus_seconds(RUN_TTL + 1);
    let late = rules::progress(&mut h, &report, Some("job"), &log, later, &mut Vec::new());
    assert_eq!(late.unwrap_err().kind(), "session_stale");
    let second = rules::attach(&mut h, &run("r2"), Some("job"), later, &mut Vec::new()).unwrap();
    assert_eq!(second.token, 2);
    let held = rules::attach(&mut h, &run("r1"), Some("job"), later, &mut Vec::new());
    assert!(matches!(held, Err(RuleError::SessionHeld { ref run_id, .. }) if run_id == "r2"));
}

#[test]
fn expiring_the_applied_snapshot_makes_it_stale_and_final() {
    let mut log = log(4);
    let mut h = created(0, &log);
    progress(&mut h, HydrationPhase::CatchingUp, 101, &log, 2_000_100).unwrap();
    assert_eq!(h.state, HydrationState::CatchingUp);
    let mut events = Vec::new();
    // Expiring an older snapshot changes nothing.
    log.snapshots[0].expired_at = Some(Millis(4_000_000));
    rules::relag(&mut h, &log, Millis(4_000_000), &mut events);
    assert_eq!(h.state, HydrationState::CatchingUp);
    log.snapshots[1].expired_at = Some(Millis(4_000_001));
    rules::relag(&mut h, &log, Millis(4_000_001), &mut events);
    assert_eq!(h.state, HydrationState::Stale);
    assert!(h.reason.as_deref().unwrap().contains("101"));
    assert_eq!(h.ended_at, Some(Millis(4_000_001)));
    let refused = progress(&mut h, HydrationPhase::CatchingUp, 103, &log, 2_000_102);
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
fn its_lease_ending_fails_a_first_hydration_but_not_a_live_copy() {
    let log = log(3);
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
    // Live, its lease released (by the store, at the first live): it is a
    // copy that follows the table, and may be superseded.
    let mut live = created(0, &log);
    progress(&mut live, HydrationPhase::CatchingUp, 102, &log, 2_000_100).unwrap();
    rules::follow_lease(
        &mut live,
        &lease(LeaseState::Released),
        Millis(2_000_101),
        &mut events,
    );
    rules::follow_lease(
        &mut live,
        &lease(LeaseState::Expired),
        Millis(2_000_102),
        &mut events,
    );
    assert_eq!(live.state, HydrationState::Live);
    assert_eq!(live.pin(), Some(102));
    rules::supersede(&mut live, LeaseId::new_v7(), Millis(3_000_003), &mut events);
    assert_eq!(live.state, HydrationState::Superseded);
    assert_eq!(live.pin(), None, "an ended copy keeps nothing");
}

#[test]
fn a_hydration_stored_completed_reads_as_a_live_copy() {
    assert_eq!(
        HydrationState::parse("completed"),
        Some(HydrationState::Live)
    );
    let state: HydrationState = serde_json::from_str("\"completed\"").unwrap();
    assert_eq!(state, HydrationState::Live);
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
        // Running ones and live copies; not those that ended on their own.
        let expected = matches!(
            state,
            HydrationState::Pending
                | HydrationState::Snapshot
                | HydrationState::CatchingUp
                | HydrationState::Live
                | HydrationState::Lagging
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
