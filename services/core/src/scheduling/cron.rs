//! Cron schedules: the standard five fields (minute, hour, day of month,
//! month, day of week) read in a named IANA zone, and the rule that says
//! when one fires next.
//!
//! A schedule fires at every whole minute whose local time in its zone
//! matches, with two rules for daylight-saving changes (those of cronie and
//! Vixie cron, which platform teams know):
//! - a local time skipped by a spring-forward gap fires once, at the first
//!   instant after the gap (a daily 02:30 job runs at 03:00 that day);
//! - a local time repeated by a fall-back fold fires at its first
//!   occurrence only, unless the hour field is `*` (then `*/15 * * * *`
//!   keeps firing every 15 minutes through both passes of the hour).

use crate::time::Millis;
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, ToSpan};

/// A parsed five-field cron expression. Each field is a bit set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// `*` in the day-of-month field: only the weekdays restrict the day.
    days_star: bool,
    weekdays_star: bool,
    hours_star: bool,
}

/// A cron expression in a zone: what a job definition's schedule holds.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub cron: Cron,
    pub zone: TimeZone,
}

const MINUTE_MS: i64 = 60_000;
/// How far a search may step before deciding the schedule never fires
/// (`0 0 30 2 *`): enough for a leap day on a given weekday (28 years).
const MAX_STEPS: usize = 50_000;

impl Cron {
    /// Parse `m h dom mon dow`, or one of `@hourly`, `@daily`, `@midnight`,
    /// `@weekly`, `@monthly`, `@yearly`, `@annually`.
    pub fn parse(raw: &str) -> Result<Cron, String> {
        let expanded = match raw.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "cron `{raw}` must have five fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            ));
        }
        const MONTHS: [&str; 12] = [
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ];
        const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        let minutes = field(fields[0], "minute", 0, 59, &[])?;
        let hours = field(fields[1], "hour", 0, 23, &[])?;
        let days = field(fields[2], "day of month", 1, 31, &[])?;
        let months = field(fields[3], "month", 1, 12, &MONTHS)?;
        // 7 is Sunday too.
        let weekdays = field(fields[4], "day of week", 0, 7, &DAYS)?;
        let weekdays = (weekdays | (weekdays >> 7)) & 0x7f;
        let cron = Cron {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: weekdays as u8,
            days_star: fields[2] == "*",
            weekdays_star: fields[4] == "*",
            hours_star: fields[1] == "*",
        };
        if !cron.any_day_exists() {
            return Err(format!("cron `{raw}` never fires: no month has that day"));
        }
        Ok(cron)
    }

    /// Whether some month holds one of the days of month (30 February does
    /// not exist; 29 February does, in leap years).
    fn any_day_exists(&self) -> bool {
        if self.days_star || !self.weekdays_star {
            return true;
        }
        const LONGEST: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        (1..=12u32).any(|m| {
            self.months & (1 << m) != 0 && self.days & low_bits(LONGEST[m as usize - 1]) != 0
        })
    }

    fn day_matches(&self, dt: DateTime) -> bool {
        let dom = self.days & (1 << dt.day()) != 0;
        let dow = self.weekdays & (1 << dt.weekday().to_sunday_zero_offset()) != 0;
        // Standard cron: when both fields are restricted, either may match.
        match (self.days_star, self.weekdays_star) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// Whether the local time `dt` (to the minute) is one the schedule names.
    pub fn matches(&self, dt: DateTime) -> bool {
        self.months & (1 << dt.month()) != 0
            && self.day_matches(dt)
            && self.hours & (1 << dt.hour()) != 0
            && self.minutes & (1 << dt.minute()) != 0
    }

    /// Whether the hour field is `*` (fold rule).
    pub fn every_hour(&self) -> bool {
        self.hours_star
    }
}

/// Bits `1..=n` set.
fn low_bits(n: u32) -> u32 {
    ((1u64 << (n + 1)) - 2) as u32
}

/// Bits `0..=n` set.
fn low_bits64(n: u32) -> u64 {
    if n >= 63 {
        u64::MAX
    } else {
        (1u64 << (n + 1)) - 1
    }
}

/// One field: `*`, `N`, `A-B`, `*/S`, `A-B/S`, `A/S`, comma lists, and
/// names where `names` gives them (index + `lo` is the value).
fn field(raw: &str, what: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + lo);
        }
        match s.parse::<u32>() {
            Ok(v) if (lo..=hi).contains(&v) => Ok(v),
            _ => Err(format!("{what} `{s}` is not a number in {lo}-{hi}")),
        }
    };
    let mut bits = 0u64;
    for part in raw.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => match s.parse::<u32>() {
                Ok(s) if s >= 1 && s <= hi => (r, s),
                _ => return Err(format!("{what} step `{s}` must be a number in 1-{hi}")),
            },
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let a = value(range)?;
            // `A/S` runs from A to the end of the field.
            (a, if part.contains('/') { hi } else { a })
        };
        if a > b {
            return Err(format!("{what} range `{range}` runs backwards"));
        }
        for v in (a..=b).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok(bits)
}

fn to_ts(at: Millis) -> Timestamp {
    Timestamp::from_millisecond(at.0).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn to_millis(ts: Timestamp) -> Millis {
    Millis(ts.as_millisecond())
}

/// A named IANA zone. The zone database's files that name no zone of
/// their own (`localtime`, the host's zone; `posixrules`; `Factory`) are
/// refused: a schedule must fire at the same instants on every replica.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    let not_a_zone = matches!(
        name.to_ascii_lowercase().as_str(),
        "localtime" | "posixrules" | "factory"
    ) || name.starts_with('/')
        || name
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..");
    let found = (!not_a_zone).then(|| TimeZone::get(name).ok()).flatten();
    found.ok_or_else(|| {
        format!("time zone `{name}` is not a known IANA zone (e.g. `UTC`, `Europe/Paris`)")
    })
}

impl Schedule {
    pub fn parse(cron: &str, zone: &str) -> Result<Schedule, String> {
        let zone = self::zone(zone)?;
        Ok(Schedule {
            cron: Cron::parse(cron)?,
            zone,
        })
    }

    fn local(&self, at: Millis) -> DateTime {
        self.zone.to_datetime(to_ts(at))
    }

    /// Whether a fire lands on the instant `at` (a whole minute): its local
    /// time matches (and is not the second pass of a fold, unless every
    /// hour fires), or a gap just skipped a matching local time.
    pub fn fires_at(&self, at: Millis) -> bool {
        let here = self.local(at);
        let before = self.local(Millis(at.0 - MINUTE_MS));
        let expected = before.checked_add(1.minute()).unwrap_or(before);
        if here > expected && self.any_match_in(expected, here) {
            return true;
        }
        self.cron.matches(here) && (self.cron.every_hour() || !self.second_pass(here, at))
    }

    /// Any matching local minute in `[from, to)` (a gap's skipped times).
    fn any_match_in(&self, from: DateTime, to: DateTime) -> bool {
        let mut t = from;
        while t < to {
            if self.cron.matches(t) {
                return true;
            }
            t = match t.checked_add(1.minute()) {
                Ok(n) => n,
                Err(_) => return false,
            };
        }
        false
    }

    /// Whether `at` is the later of two instants with the local time `dt`.
    fn second_pass(&self, dt: DateTime, at: Millis) -> bool {
        match self.zone.to_ambiguous_timestamp(dt).offset() {
            AmbiguousOffset::Fold { before, .. } => dt
                .to_zoned(TimeZone::fixed(before))
                .map(|z| z.timestamp().as_millisecond() != at.0)
                .unwrap_or(false),
            _ => false,
        }
    }

    /// The first fire strictly after `after`; `None` if the schedule never
    /// fires within the search bound (it passed `Cron::parse`, so only
    /// extreme combinations such as 29 February on a Monday in a zone that
    /// skips it get there).
    pub fn next_after(&self, after: Millis) -> Option<Millis> {
        // The next whole minute after `after`.
        let mut t = Millis((after.0.div_euclid(MINUTE_MS) + 1) * MINUTE_MS);
        for _ in 0..MAX_STEPS {
            if self.fires_at(t) {
                return Some(t);
            }
            let local = self.local(t);
            // Jump over local times that cannot match: to the start of the
            // next month, day or hour, or to the next matching minute. A
            // target inside a gap maps to the gap's end, where `fires_at`
            // applies the gap rule.
            let hour_start = local
                .with()
                .minute(0)
                .second(0)
                .subsec_nanosecond(0)
                .build()
                .ok();
            let next_hour = hour_start.and_then(|h| h.checked_add(1.hour()).ok());
            let next = if self.cron.months & (1 << local.month()) == 0 {
                local
                    .first_of_month()
                    .checked_add(1.month())
                    .ok()
                    .map(|d| d.start_of_day())
            } else if !self.cron.day_matches(local) {
                local
                    .date()
                    .tomorrow()
                    .ok()
                    .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
            } else if self.cron.hours & (1 << local.hour()) == 0 {
                next_hour
            } else {
                let later = self.cron.minutes & !low_bits64(local.minute() as u32);
                match later.trailing_zeros() {
                    m @ 0..=59 => local.with().minute(m as i8).second(0).build().ok(),
                    _ => next_hour,
                }
            };
            let candidate = next
                .and_then(|dt| self.zone.to_ambiguous_timestamp(dt).compatible().ok())
                .map(to_millis);
            t = match candidate {
                // A jump through local time across an offset change could
                // skip the second pass of a fold: land on the change instead.
                Some(c) if c.0 > t.0 => self.transition_between(t, c).unwrap_or(c),
                _ => Millis(t.0 + MINUTE_MS),
            };
        }
        None
    }
}

impl Schedule {
    /// The first offset change in `(a, b)`, rounded up to a whole minute.
    fn transition_between(&self, a: Millis, b: Millis) -> Option<Millis> {
        let next = self.zone.following(to_ts(a)).next()?;
        let at = next.timestamp().as_millisecond();
        let at = Millis(
            at.div_euclid(MINUTE_MS) * MINUTE_MS + if at % MINUTE_MS == 0 { 0 } else { MINUTE_MS },
        );
        (at.0 > a.0 && at.0 < b.0).then_some(at)
    }
}

/// What a schedule fires when sluice was away: every fire it missed, at
/// most one run for them, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// One run stands for all the fires missed.
    Once,
    /// Missed fires are dropped; the schedule resumes at its next fire.
    Skip,
}

/// A fire is on time when the scheduler sees it within this long; later
/// means sluice was down (or had no leader) when it was due.
pub const ON_TIME_MS: i64 = 60_000;

/// What the scheduler does about a schedule whose planned fire `due` has
/// come at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fire {
    /// Start a run standing for this fire (the first one missed).
    pub run_for: Option<Millis>,
    /// How many planned fires passed without a run of their own (0 when
    /// on time).
    pub missed: u32,
    /// The next fire to plan, strictly after `now`.
    pub next: Option<Millis>,
}

/// Decide a due fire: on time it runs; late (sluice was away) it runs once
/// for all the fires missed, or not at all, by `policy`.
pub fn fire(schedule: &Schedule, due: Millis, now: Millis, policy: CatchUp) -> Fire {
    let next = schedule.next_after(now);
    if now.0 - due.0 <= ON_TIME_MS {
        return Fire {
            run_for: Some(due),
            missed: 0,
            next,
        };
    }
    let mut missed = 0u32;
    let mut t = Some(due);
    while let Some(at) = t.filter(|at| at.0 <= now.0 && missed < 100_000) {
        missed += 1;
        t = schedule.next_after(at);
    }
    Fire {
        run_for: (policy == CatchUp::Once).then_some(due),
        missed,
        next,
    }
}
