//! A recorded history of grants and releases, and the checker that proves
//! it safe: against what clients saw, and against the server's event log.

use serde::{Deserialize, Serialize};
use sluice_api::dto::EventBody;
use std::collections::{BTreeMap, HashMap, HashSet};

/// One lease as a client lived it. Times are the client's wall clock in ms;
/// the client believed it held the lease from `granted_ack_ms` (its grant
/// answer arrived) until `release_sent_ms` (it sent the release) or the
/// lease's `expires_at_ms`, whichever came first. The server's true
/// interval contains that one, so two conflicting beliefs that overlap are a
/// real violation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Hold {
    pub client: u32,
    pub table: String,
    pub lease_id: String,
    pub mode: String,
    pub token: i64,
    /// When the client sent the acquire.
    pub requested_ms: i64,
    pub granted_ack_ms: i64,
    pub expires_at_ms: i64,
    pub release_sent_ms: Option<i64>,
    /// The release was answered 2xx.
    pub release_acked: bool,
}

#[derive(Debug, Default)]
pub struct Report {
    pub holds: usize,
    pub tables: usize,
    pub events: usize,
    pub violations: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Both checks: the holds against themselves and against the event log.
pub fn check(holds: &[Hold], events: &[EventBody]) -> Report {
    let mut report = Report::default();
    check_holds(holds, &mut report);
    check_events(holds, events, &mut report);
    report
}

/// Check the holds alone: tokens unique per table, and no write lease's
/// belief interval overlapping any other lease's on its table.
pub fn check_holds(holds: &[Hold], report: &mut Report) {
    let mut by_table: BTreeMap<&str, Vec<&Hold>> = BTreeMap::new();
    for h in holds {
        by_table.entry(&h.table).or_default().push(h);
    }
    report.holds += holds.len();
    report.tables = by_table.len();
    for (table, mut holds) in by_table {
        let mut tokens = HashSet::new();
        for h in &holds {
            if !tokens.insert(h.token) {
                report
                    .violations
                    .push(format!("{table}: token {} granted twice", h.token));
            }
        }
        holds.sort_by_key(|h| h.granted_ack_ms);
        for (i, a) in holds.iter().enumerate() {
            let a_end = belief_end(a);
            for b in &holds[i + 1..] {
                if b.granted_ack_ms >= a_end {
                    break;
                }
                if (a.mode == "write" || b.mode == "write") && b.granted_ack_ms < belief_end(b) {
                    report.violations.push(format!(
                        "{table}: {} lease {} (token {}) overlapped {} lease {} (token {})",
                        a.mode, a.lease_id, a.token, b.mode, b.lease_id, b.token
                    ));
                }
            }
        }
        // A grant answered before another lease was even asked for came
        // first on the server too, so its token must be smaller.
        let mut by_request = holds.clone();
        by_request.sort_by_key(|h| h.requested_ms);
        let (mut i, mut max_before) = (0, (0, ""));
        for b in by_request {
            while i < holds.len() && holds[i].granted_ack_ms < b.requested_ms {
                max_before = max_before.max((holds[i].token, holds[i].lease_id.as_str()));
                i += 1;
            }
            if max_before.0 >= b.token {
                report.violations.push(format!(
                    "{table}: lease {} got token {} after lease {} had token {}",
                    b.lease_id, b.token, max_before.1, max_before.0
                ));
            }
        }
    }
}

fn belief_end(h: &Hold) -> i64 {
    h.release_sent_ms.unwrap_or(i64::MAX).min(h.expires_at_ms)
}

/// Check the holds against the server's event log: every acknowledged grant
/// and release is there (none lost, even across a crash), and replaying the
/// log in id order never grants a write lease beside another lease or a
/// token out of order.
pub fn check_events(holds: &[Hold], events: &[EventBody], report: &mut Report) {
    report.events += events.len();
    let mut granted: HashMap<String, i64> = HashMap::new();
    let mut released: HashSet<String> = HashSet::new();
    let mut last_id = 0;
    // table -> (live holders: lease -> mode, last token)
    let mut tables: HashMap<String, (HashMap<String, String>, i64)> = HashMap::new();
    for e in events {
        let id = e.id;
        if id <= last_id {
            report
                .violations
                .push(format!("event id {id} after {last_id}: not increasing"));
        }
        last_id = id;
        let kind = e.kind.as_str();
        let table = e.table.clone().unwrap_or_default();
        let lease = e.lease_id.clone().unwrap_or_default();
        let (live, last_token) = tables.entry(table.clone()).or_default();
        match kind {
            "lease_granted" => {
                let mode = e.data["mode"].as_str().unwrap_or("").to_owned();
                let token = e.data["token"].as_i64().unwrap_or(0);
                if token <= *last_token {
                    report.violations.push(format!(
                        "{table}: event {id} grants token {token} after {last_token}"
                    ));
                }
                *last_token = token;
                let conflict = live.values().any(|m| m == "write" || mode == "write");
                if conflict {
                    report.violations.push(format!(
                        "{table}: event {id} grants {mode} lease {lease} while {live:?} hold"
                    ));
                }
                live.insert(lease.clone(), mode);
                granted.insert(lease, token);
            }
            "lease_released" | "lease_expired" | "lease_revoked" | "lease_cancelled" => {
                live.remove(&lease);
                if kind == "lease_released" {
                    released.insert(lease);
                }
            }
            _ => {}
        }
    }
    for h in holds {
        match granted.get(&h.lease_id) {
            Some(t) if *t == h.token => {}
            Some(t) => report.violations.push(format!(
                "lease {} acknowledged with token {} but logged with {t}",
                h.lease_id, h.token
            )),
            None => report.violations.push(format!(
                "acknowledged grant of lease {} (token {}) is not in the log",
                h.lease_id, h.token
            )),
        }
        if h.release_acked && !released.contains(&h.lease_id) {
            report.violations.push(format!(
                "acknowledged release of lease {} is not in the log",
                h.lease_id
            ));
        }
    }
}

/// Read holds from JSON lines.
pub fn read_holds(text: &str) -> anyhow::Result<Vec<Hold>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(lease: &str, mode: &str, token: i64, from: i64, to: i64) -> Hold {
        Hold {
            client: 0,
            table: "a.b".into(),
            lease_id: lease.into(),
            mode: mode.into(),
            token,
            requested_ms: from,
            granted_ack_ms: from,
            expires_at_ms: i64::MAX,
            release_sent_ms: Some(to),
            release_acked: true,
        }
    }

    #[test]
    fn overlapping_writer_and_reader_is_a_violation() {
        let mut r = Report::default();
        check_holds(
            &[hold("1", "read", 1, 0, 10), hold("2", "write", 2, 5, 20)],
            &mut r,
        );
        assert!(!r.ok());
    }

    #[test]
    fn sharing_readers_and_sequential_writers_pass() {
        let mut r = Report::default();
        check_holds(
            &[
                hold("1", "read", 1, 0, 10),
                hold("2", "read", 2, 5, 12),
                hold("3", "write", 3, 12, 20),
            ],
            &mut r,
        );
        assert!(r.ok(), "{:?}", r.violations);
    }

    #[test]
    fn a_duplicate_token_is_a_violation() {
        let mut r = Report::default();
        check_holds(
            &[hold("1", "read", 1, 0, 10), hold("2", "read", 1, 5, 12)],
            &mut r,
        );
        assert!(!r.ok());
    }

    #[test]
    fn a_grant_missing_from_the_log_is_a_violation() {
        let mut r = Report::default();
        check_events(&[hold("1", "write", 1, 0, 10)], &[], &mut r);
        assert!(!r.ok());
    }
}
