//! The cron rule: parsing, the next fire across daylight-saving changes in
//! named zones, and catch-up after downtime.

use proptest::prelude::*;
use sluice_core::scheduling::cron::{fire, CatchUp, Cron, Schedule, ON_TIME_MS};
use sluice_core::Millis;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn at(s: &str) -> Millis {
    Millis::parse_rfc3339(s).expect(s)
}

fn fires(schedule: &Schedule, from: Millis, to: Millis) -> Vec<String> {
    let mut out = Vec::new();
    let mut t = from;
    while let Some(next) = schedule.next_after(t).filter(|n| *n <= to) {
        out.push(next.to_rfc3339());
        t = next;
    }
    out
}

/// The slow definition: every whole minute after `after`, one at a time.
fn brute_next(schedule: &Schedule, after: Millis, limit_minutes: i64) -> Option<Millis> {
    let mut t = Millis((after.0.div_euclid(MIN) + 1) * MIN);
    for _ in 0..limit_minutes {
        if schedule.fires_at(t) {
            return Some(t);
        }
        t = Millis(t.0 + MIN);
    }
    None
}

#[test]
fn fields_parse_as_cron_documents_them() {
    for ok in [
        "* * * * *",
        "*/15 9-17 * * mon-fri",
        "0 0 1,15 * *",
        "30 2 * jan,jul sun",
        "5/10 * * * 7",
        "@daily",
        "@hourly",
    ] {
        assert!(Cron::parse(ok).is_ok(), "{ok}");
    }
    for (bad, says) in [
        ("* * * *", "five fields"),
        ("60 * * * *", "minute `60`"),
        ("* 24 * * *", "hour `24`"),
        ("0 0 0 * *", "day of month `0`"),
        ("0 0 * 13 *", "month `13`"),
        ("0 0 * * 8", "day of week `8`"),
        ("*/0 * * * *", "step"),
        ("5-1 * * * *", "backwards"),
        ("0 0 30 2 *", "never fires"),
        ("a b c d e", "not a number"),
    ] {
        let e = Cron::parse(bad).unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
    }
    let e = Schedule::parse("* * * * *", "Mars/Olympus").unwrap_err();
    assert!(e.contains("IANA"), "{e}");
}

#[test]
fn every_minute_fires_on_each_minute() {
    let s = Schedule::parse("* * * * *", "UTC").unwrap();
    assert_eq!(
        s.next_after(at("2026-12-02T10:00:30Z")),
        Some(at("2026-12-02T10:01:00Z"))
    );
    // Exactly on a minute: the next one, never the same instant again.
    assert_eq!(
        s.next_after(at("2026-12-02T10:01:00Z")),
        Some(at("2026-12-02T10:02:00Z"))
    );
}

#[test]
fn a_daily_time_in_a_zone_follows_the_zone_offset() {
    let s = Schedule::parse("0 9 * * *", "Europe/Paris").unwrap();
    // Winter: UTC+1; summer: UTC+2.
    assert_eq!(
        s.next_after(at("2026-01-10T00:00:00Z")),
        Some(at("2026-01-10T08:00:00Z"))
    );
    assert_eq!(
        s.next_after(at("2026-07-10T00:00:00Z")),
        Some(at("2026-07-10T07:00:00Z"))
    );
}

#[test]
fn a_time_skipped_by_spring_forward_fires_once_right_after_the_gap() {
    // New York, 8 March 2026: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
    let s = Schedule::parse("30 2 * * *", "America/New_York").unwrap();
    let got = fires(&s, at("2026-03-07T00:00:00Z"), at("2026-03-10T00:00:00Z"));
    assert_eq!(
        got,
        vec![
            "2026-03-07T07:30:00.000Z", // 02:30 EST
            "2026-03-08T07:00:00.000Z", // 03:00 EDT, the gap's end
            "2026-03-09T06:30:00.000Z", // 02:30 EDT
        ]
    );
}

#[test]
fn a_time_repeated_by_fall_back_fires_once() {
    // New York, 1 November 2026: 02:00 EDT falls back to 01:00 EST.
    let s = Schedule::parse("30 1 * * *", "America/New_York").unwrap();
    let got = fires(&s, at("2026-10-31T12:00:00Z"), at("2026-11-02T12:00:00Z"));
    assert_eq!(
        got,
        vec![
            "2026-11-01T05:30:00.000Z", // 01:30 EDT, the first pass
            "2026-11-02T06:30:00.000Z", // 01:30 EST, the next day
        ]
    );
}

#[test]
fn every_quarter_hour_keeps_its_pace_through_both_passes_of_a_fold() {
    let s = Schedule::parse("*/15 * * * *", "America/New_York").unwrap();
    // 04:00Z = 00:00 EDT; 07:00Z = 02:00 EST: three real hours.
    let got = fires(&s, at("2026-11-01T03:59:00Z"), at("2026-11-01T07:00:00Z"));
    assert_eq!(got.len(), 13, "{got:?}");
    for pair in got.windows(2) {
        let gap =
            Millis::parse_rfc3339(&pair[1]).unwrap().0 - Millis::parse_rfc3339(&pair[0]).unwrap().0;
        assert_eq!(gap, 15 * MIN, "{pair:?}");
    }
}

#[test]
fn catch_up_once_runs_one_run_for_every_fire_missed_and_skip_runs_none() {
    let s = Schedule::parse("0 * * * *", "UTC").unwrap();
    let due = at("2026-12-02T01:00:00Z");
    let now = at("2026-12-02T05:30:00Z"); // down through 01:00..05:00
    let once = fire(&s, due, now, CatchUp::Once);
    assert_eq!(once.run_for, Some(due));
    assert_eq!(once.missed, 5);
    assert_eq!(once.next, Some(at("2026-12-02T06:00:00Z")));
    let skip = fire(&s, due, now, CatchUp::Skip);
    assert_eq!(skip.run_for, None);
    assert_eq!(skip.missed, 5);
    assert_eq!(skip.next, Some(at("2026-12-02T06:00:00Z")));
    // Seen on time: it runs whatever the policy.
    let on_time = fire(&s, due, Millis(due.0 + 2_000), CatchUp::Skip);
    assert_eq!(on_time.run_for, Some(due));
    assert_eq!(on_time.missed, 0);
    assert_eq!(on_time.next, Some(at("2026-12-02T02:00:00Z")));
}

fn cron_strategy() -> impl Strategy<Value = String> {
    let minute = prop_oneof![
        Just("*".to_string()),
        (0u32..60).prop_map(|m| m.to_string()),
        (1u32..31).prop_map(|s| format!("*/{s}")),
        (0u32..30, 30u32..60).prop_map(|(a, b)| format!("{a}-{b}")),
    ];
    let hour = prop_oneof![
        Just("*".to_string()),
        (0u32..24).prop_map(|h| h.to_string()),
        (0u32..3).prop_map(|h| format!("{h},{}", h + 1)),
        (1u32..12).prop_map(|s| format!("*/{s}")),
    ];
    let dom = prop_oneof![
        4 => Just("*".to_string()),
        1 => (1u32..29).prop_map(|d| d.to_string()),
    ];
    let month = prop_oneof![
        4 => Just("*".to_string()),
        1 => (1u32..13).prop_map(|m| m.to_string()),
    ];
    let dow = prop_oneof![
        4 => Just("*".to_string()),
        1 => (0u32..7).prop_map(|d| d.to_string()),
        1 => Just("mon-fri".to_string()),
    ];
    (minute, hour, dom, month, dow).prop_map(|(a, b, c, d, e)| format!("{a} {b} {c} {d} {e}"))
}

fn zone_strategy() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "UTC",
        "America/New_York",
        "Europe/London",
        "Australia/Lord_Howe", // a 30-minute shift
        "Asia/Kolkata",
    ])
}

/// A zone and an instant near one of its transitions: the days around
/// them, or the hours right around a change in that very zone.
fn zoned_instant() -> impl Strategy<Value = (&'static str, Millis)> {
    let days = prop::sample::select(vec![
        "2026-03-08T00:00:00Z",
        "2026-03-29T00:00:00Z",
        "2026-04-05T12:00:00Z",
        "2026-10-04T12:00:00Z",
        "2026-10-25T00:00:00Z",
        "2026-11-01T00:00:00Z",
    ]);
    let changes = prop::sample::select(vec![
        ("America/New_York", "2026-03-08T07:00:00Z"),
        ("America/New_York", "2026-11-01T06:00:00Z"),
        ("Europe/London", "2026-03-29T01:00:00Z"),
        ("Europe/London", "2026-10-25T01:00:00Z"),
        ("Australia/Lord_Howe", "2026-04-04T15:00:00Z"),
        ("Australia/Lord_Howe", "2026-10-03T15:30:00Z"),
    ]);
    prop_oneof![
        (zone_strategy(), days, 0i64..(36 * 60), 0i64..60_000)
            .prop_map(|(z, b, minutes, ms)| (z, Millis(at(b).0 + minutes * MIN + ms))),
        (changes, -150i64..150, 0i64..60_000)
            .prop_map(|((z, b), minutes, ms)| (z, Millis(at(b).0 + minutes * MIN + ms))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// The jumping search finds exactly the fire that trying every minute
    /// finds: none skipped, none invented, across DST changes.
    #[test]
    fn next_fire_is_the_first_minute_that_fires(
        cron in cron_strategy(),
        (zone, after) in zoned_instant(),
    ) {
        let s = Schedule::parse(&cron, zone).unwrap();
        let fast = s.next_after(after);
        let slow = brute_next(&s, after, 3 * 24 * 60);
        match slow {
            Some(slow) => prop_assert_eq!(fast, Some(slow)),
            // Past the brute force's horizon: the fast one lies beyond it.
            None => prop_assert!(fast.is_none_or(|f| f.0 > after.0 + 3 * 24 * HOUR - MIN)),
        }
    }

    /// A job at a fixed local time runs exactly once on every local day,
    /// including the days the clocks change.
    #[test]
    fn a_daily_job_runs_once_a_day_through_dst(
        hour in 0u32..24,
        minute in 0u32..60,
        (zone, start) in zoned_instant(),
    ) {
        let s = Schedule::parse(&format!("{minute} {hour} * * *"), zone).unwrap();
        let mut t = start;
        let mut prev: Option<Millis> = None;
        for _ in 0..5 {
            let next = s.next_after(t).unwrap();
            if let Some(p) = prev {
                // Consecutive fires are a day apart, give or take the shift.
                let gap = next.0 - p.0;
                prop_assert!((22 * HOUR..=26 * HOUR).contains(&gap), "gap {} h", gap as f64 / HOUR as f64);
            }
            prev = Some(next);
            t = next;
        }
    }

    /// Catch-up never starts more than one run and always plans a fire
    /// after `now`.
    #[test]
    fn catch_up_plans_after_now(
        cron in cron_strategy(),
        (zone, due) in zoned_instant(),
        down_minutes in 0i64..(48 * 60),
        once in any::<bool>(),
    ) {
        let s = Schedule::parse(&cron, zone).unwrap();
        let now = Millis(due.0 + down_minutes * MIN);
        let policy = if once { CatchUp::Once } else { CatchUp::Skip };
        let f = fire(&s, due, now, policy);
        if let Some(next) = f.next {
            prop_assert!(next > now);
        }
        let late = now.0 - due.0 > ON_TIME_MS;
        prop_assert_eq!(f.run_for.is_some(), !late || once);
        if late {
            // `due` itself counts as missed.
            prop_assert!(f.missed >= 1);
        }
    }
}
