//! The snapshot log's rules: what a refresh adds and expires, the lag of an
//! applied snapshot behind the current one, and what expiry may remove.

use proptest::prelude::*;
use sluice_core::snapshots::{lag, refresh, retention, Reader, Snapshot, CLOCK_SKEW_MS};
use sluice_core::Millis;

fn chain(n: usize, first_ms: i64, step_ms: i64) -> Vec<Snapshot> {
    (0..n)
        .map(|i| Snapshot {
            id: 1000 + i as i64 * 7,
            parent_id: (i > 0).then(|| 1000 + (i as i64 - 1) * 7),
            sequence_number: i as i64 + 1,
            timestamp: Millis(first_ms + i as i64 * step_ms),
            operation: "append".into(),
            summary: Default::default(),
            expired_at: None,
        })
        .collect()
}

proptest! {
    /// Expiring at the safe timestamp removes no snapshot a reader needs:
    /// neither a pinned one nor the one current when an unpinned reader was
    /// let in.
    #[test]
    fn expiry_at_the_safe_time_keeps_what_every_reader_needs(
        n in 1usize..30,
        pins in proptest::collection::vec(proptest::option::of(0usize..30), 0..6),
        grants in proptest::collection::vec(0i64..400_000, 0..6),
    ) {
        let log = chain(n, 100_000, 10_000);
        let readers: Vec<Reader> = pins.iter().zip(grants.iter().chain(std::iter::repeat(&0)))
            .map(|(pin, granted)| Reader {
                pin: pin.map(|i| log[i % n].id),
                granted_at: Millis(100_000 + granted),
            })
            .collect();
        let now = Millis(1_000_000);
        let r = retention(&log, Some(log[n - 1].id), &readers, now);
        for reader in &readers {
            let needed = match reader.pin {
                Some(pin) => log.iter().find(|s| s.id == pin),
                None => log.iter().rev().find(|s| s.timestamp.0 <= reader.granted_at.0 - CLOCK_SKEW_MS)
                    .or(log.first()),
            };
            let safe = r.safe_older_than.expect("a log with snapshots places every reader");
            if let Some(needed) = needed {
                prop_assert!(needed.timestamp >= safe, "{needed:?} expired by {r:?}");
            }
        }
        prop_assert!(r.safe_older_than.is_some_and(|t| t <= now));
        prop_assert_eq!(r.oldest_needed.is_none(), readers.is_empty());
    }

    #[test]
    fn lag_counts_the_ancestry_after_the_applied_snapshot(
        n in 1usize..40, applied in 0usize..40, expire_below in 0usize..40,
        step in 1i64..100_000,
    ) {
        let applied = applied % n;
        let mut log = chain(n, 1_000_000, step);
        // Expiring old snapshots does not cut the chain: the log keeps them.
        for s in log.iter_mut().take(expire_below.min(n - 1)) {
            s.expired_at = Some(Millis(9));
        }
        let now = Millis(1_000_000 + n as i64 * step + 5_000);
        let got = lag(&log, Some(log[n - 1].id), Some(log[applied].id), now);
        prop_assert_eq!(got.snapshots_behind, (n - 1 - applied) as u64);
        let expected_seconds = if applied == n - 1 { 0 } else { (now.0 - log[applied + 1].timestamp.0) / 1000 };
        prop_assert_eq!(got.seconds_behind, expected_seconds);
        prop_assert!(!got.diverged);
        prop_assert_eq!(got.applied_expired, applied < expire_below.min(n - 1));
    }

    /// Compaction is not lag: `replace` snapshots anywhere in the chain are
    /// never counted, and the lag after one is what it was before it.
    #[test]
    fn lag_never_counts_replace_snapshots(
        ops in proptest::collection::vec(prop_oneof![
            Just("append"), Just("overwrite"), Just("delete"), Just("replace")
        ], 1..40),
        applied in proptest::option::of(0usize..40),
        step in 1i64..100_000,
    ) {
        let n = ops.len();
        let mut log = chain(n, 1_000_000, step);
        for (s, op) in log.iter_mut().zip(&ops) {
            s.operation = (*op).into();
        }
        let applied = applied.map(|a| a % n);
        let now = Millis(1_000_000 + n as i64 * step + 5_000);
        let got = lag(&log, Some(log[n - 1].id), applied.map(|a| log[a].id), now);
        let after = applied.map_or(0, |a| a + 1);
        let unapplied: Vec<&Snapshot> = log[after..].iter().filter(|s| s.operation != "replace").collect();
        prop_assert_eq!(got.snapshots_behind, unapplied.len() as u64);
        prop_assert_eq!(got.oldest_unapplied_at, unapplied.first().map(|s| s.timestamp));
        prop_assert_eq!(got.seconds_behind, unapplied.first().map_or(0, |s| (now.0 - s.timestamp.0) / 1000));
        // A compaction committed now changes nothing of it.
        let mut compacted = log.clone();
        let mut replace = log[n - 1].clone();
        replace.id = 7;
        replace.parent_id = Some(log[n - 1].id);
        replace.sequence_number += 1;
        replace.timestamp = Millis(now.0 - 1);
        replace.operation = "replace".into();
        compacted.push(replace);
        let after_compaction = lag(&compacted, Some(7), applied.map(|a| log[a].id), now);
        prop_assert_eq!(after_compaction.snapshots_behind, got.snapshots_behind);
        prop_assert_eq!(after_compaction.seconds_behind, got.seconds_behind);
        prop_assert!(!after_compaction.diverged);
    }

    #[test]
    fn a_refresh_adds_each_unknown_snapshot_once_and_expires_each_missing_one(
        n in 0usize..30, known_upto in 0usize..30, listed_from in 0usize..30,
    ) {
        let all = chain(n, 0, 10);
        let known: Vec<(i64, bool)> = all.iter().take(known_upto).map(|s| (s.id, false)).collect();
        let listed: Vec<Snapshot> = all.iter().skip(listed_from).cloned().collect();
        let r = refresh(&known, &listed);
        let added: Vec<i64> = r.added.iter().map(|s| s.id).collect();
        let want_added: Vec<i64> = all.iter().enumerate()
            .filter(|(i, _)| *i >= known_upto && *i >= listed_from).map(|(_, s)| s.id).collect();
        prop_assert_eq!(added, want_added);
        let want_expired: Vec<i64> = all.iter().enumerate()
            .filter(|(i, _)| *i < known_upto && *i < listed_from).map(|(_, s)| s.id).collect();
        prop_assert_eq!(r.expired, want_expired);
    }
}

#[test]
fn nothing_applied_yet_is_behind_by_the_whole_ancestry() {
    let log = chain(3, 10_000, 1_000);
    let got = lag(&log, Some(log[2].id), None, Millis(20_000));
    assert_eq!(got.snapshots_behind, 3);
    assert_eq!(got.seconds_behind, 10);
    assert!(!got.diverged);
}

#[test]
fn an_empty_table_is_caught_up() {
    let got = lag(&[], None, None, Millis(5));
    assert_eq!(
        (got.snapshots_behind, got.seconds_behind, got.diverged),
        (0, 0, false)
    );
}

#[test]
fn an_applied_snapshot_outside_the_ancestry_is_diverged() {
    let mut log = chain(3, 0, 1_000);
    let mut side = log[1].clone();
    side.id = 99;
    side.sequence_number = 9;
    log.push(side);
    let got = lag(&log, Some(log[2].id), Some(99), Millis(10_000));
    assert!(got.diverged);
    assert_eq!(got.snapshots_behind, 3);
}

#[test]
fn a_snapshot_marked_expired_is_not_expired_twice_nor_re_added() {
    let all = chain(2, 0, 10);
    let known = vec![(all[0].id, true), (all[1].id, false)];
    let r = refresh(&known, &all[..1]);
    assert!(r.added.is_empty());
    assert_eq!(r.expired, vec![all[1].id]);
}

#[test]
fn with_no_reader_everything_but_the_current_snapshot_may_go() {
    let log = chain(3, 0, 1_000);
    let r = retention(&log, Some(log[2].id), &[], Millis(50_000));
    assert_eq!(
        (r.oldest_needed, r.safe_older_than),
        (None, Some(Millis(50_000)))
    );
}

#[test]
fn a_pin_the_log_does_not_know_keeps_everything_the_log_has() {
    let log = chain(3, 7_000, 1_000);
    let reader = Reader {
        pin: Some(424242),
        granted_at: Millis(9_000),
    };
    let r = retention(&log, Some(log[2].id), &[reader], Millis(50_000));
    assert_eq!(
        (r.oldest_needed, r.safe_older_than),
        (Some(log[0].id), Some(Millis(7_000)))
    );
}

#[test]
fn a_reader_on_a_table_the_log_holds_nothing_of_stops_all_expiry() {
    let reader = Reader {
        pin: Some(1),
        granted_at: Millis(9_000),
    };
    assert_eq!(
        retention(&[], None, &[reader], Millis(50_000)).safe_older_than,
        None
    );
}
