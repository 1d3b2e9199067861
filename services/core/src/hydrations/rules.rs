//! The hydration rules: pure functions over a hydration, the table's
//! snapshot log as sluice holds it, and `now`. The lease half (keeping the
//! read lease of a first hydration, moving its pin, releasing it at the
//! first `live`) is the lease rules' `hold` and `release_held`; the store
//! runs both on the same batch.

use super::hydration::{
    Hydration, HydrationId, HydrationPhase, HydrationState, Progress, Session, StoredLag,
};
use crate::containers::ContainerName;
use crate::error::RuleError;
use crate::event::{EventKind, NewEvent};
use crate::snapshots::{lag, Snapshot, SnapshotId};
use crate::{Lease, LeaseState, Millis, TableName};
use serde_json::json;

/// A table's snapshot log as a rule reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogView {
    pub snapshots: Vec<Snapshot>,
    pub current: Option<SnapshotId>,
}

impl LogView {
    fn lag(&self, applied: Option<SnapshotId>, now: Millis) -> crate::snapshots::Lag {
        lag(&self.snapshots, self.current, applied, now)
    }

    pub fn get(&self, id: SnapshotId) -> Option<&Snapshot> {
        self.snapshots.iter().find(|s| s.id == id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHydration {
    /// Chosen by the shell: also its read lease's id.
    pub id: HydrationId,
    pub table: TableName,
    pub container: ContainerName,
    pub target: String,
    pub views: Vec<String>,
    pub columns: Option<Vec<String>>,
    pub lag_threshold_snapshots: u32,
}

/// A run attaching to a hydration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attach {
    /// The run (a Glue job run id): attaching again answers the same
    /// session while it is attached.
    pub run_id: String,
    pub ttl_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressReport {
    /// The attached session's token.
    pub token: u64,
    pub phase: HydrationPhase,
    pub snapshot_id: SnapshotId,
    pub rows_copied: Option<u64>,
    pub rows_total: Option<u64>,
}

/// A physical table or view name in a container: `name` or
/// `schema.name`, each part 1 to 63 letters, digits or `_`, not starting
/// with a digit (what PostgreSQL and Athena both accept unquoted).
pub fn check_object_name(what: &str, name: &str) -> Result<(), RuleError> {
    let part_ok = |p: &str| {
        (1..=63).contains(&p.len())
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !p.starts_with(|c: char| c.is_ascii_digit())
    };
    let parts: Vec<&str> = name.split('.').collect();
    // A view runs with its owner's rights: one over the container's own
    // catalogs (`pg_catalog.pg_authid`) would show what its login sees.
    crate::views::check_schema(name).map_err(|e| RuleError::Invalid(format!("{what} {e}")))?;
    if parts.len() <= 2 && parts.iter().all(|p| part_ok(p)) {
        Ok(())
    } else {
        Err(RuleError::Invalid(format!(
            "{what} `{name}` must be `name` or `schema.name`, each 1 to 63 letters, digits or `_`, not starting with a digit"
        )))
    }
}

/// Check what a creation names; the rules never see an invalid one.
pub fn check_new(new: &NewHydration) -> Result<(), RuleError> {
    check_object_name("target", &new.target)?;
    for view in &new.views {
        check_object_name("view", view)?;
        if view == &new.target {
            return Err(RuleError::Invalid(format!(
                "view `{view}` cannot be its own target"
            )));
        }
    }
    let mut views = new.views.clone();
    views.sort();
    views.dedup();
    if views.len() != new.views.len() {
        return Err(RuleError::Invalid("views are listed twice".into()));
    }
    if let Some(columns) = &new.columns {
        if columns.is_empty() {
            return Err(RuleError::Invalid(
                "columns, when given, must name at least one column".into(),
            ));
        }
        for c in columns {
            check_object_name("column", c)?;
            if c.contains('.') {
                return Err(RuleError::Invalid(format!(
                    "column `{c}` cannot be qualified"
                )));
            }
        }
    }
    Ok(())
}

/// The snapshot a new hydration pins must be one the table has (as a
/// progress report's must): a pin of nothing would keep nothing.
pub fn check_pin(
    log: &LogView,
    table: &TableName,
    pin: Option<SnapshotId>,
) -> Result<(), RuleError> {
    match pin {
        Some(id) if log.get(id).is_none() => Err(RuleError::SnapshotNotFound {
            table: table.clone(),
            snapshot_id: id,
        }),
        _ => Ok(()),
    }
}

/// A new hydration, `pending`, its lag counted over the whole ancestry.
pub fn create(
    new: NewHydration,
    log: &LogView,
    principal: Option<&str>,
    now: Millis,
) -> (Hydration, NewEvent) {
    let lag = log.lag(None, now);
    let hydration = Hydration {
        id: new.id,
        table: new.table,
        container: new.container,
        target: new.target,
        views: new.views,
        columns: new.columns,
        lag_threshold_snapshots: new.lag_threshold_snapshots,
        state: HydrationState::Pending,
        progress: Progress::default(),
        lag: StoredLag::from_lag(&lag, log.current),
        reason: None,
        principal: principal.map(str::to_owned),
        session: None,
        sessions: 0,
        created_at: now,
        updated_at: now,
        ended_at: None,
    };
    let event = event(
        &hydration,
        now,
        EventKind::HydrationCreated,
        json!({
            "hydration_id": hydration.id, "container": hydration.container,
            "target": hydration.target, "views": hydration.views,
        }),
    );
    (hydration, event)
}

/// A run attaches: the same run again answers its session (renewed);
/// another run while one is attached is refused, naming it.
pub fn attach(
    h: &mut Hydration,
    run: &Attach,
    principal: Option<&str>,
    now: Millis,
    events: &mut Vec<NewEvent>,
) -> Result<Session, RuleError> {
    still_open(h)?;
    if let Some(s) = h.session.as_mut().filter(|s| s.is_attached(now)) {
        if s.run_id != run.run_id {
            return Err(RuleError::SessionHeld {
                id: h.id,
                run_id: s.run_id.clone(),
                expires_at: s.expires_at,
            });
        }
        owned_by(s, h.id, principal)?;
        s.ttl_seconds = run.ttl_seconds;
        s.heartbeat_at = now;
        s.expires_at = now.plus_seconds(run.ttl_seconds);
        let session = s.clone();
        h.updated_at = now;
        return Ok(session);
    }
    h.sessions += 1;
    let session = Session {
        run_id: run.run_id.clone(),
        token: h.sessions,
        principal: principal.map(str::to_owned),
        ttl_seconds: run.ttl_seconds,
        attached_at: now,
        heartbeat_at: now,
        expires_at: now.plus_seconds(run.ttl_seconds),
    };
    h.session = Some(session.clone());
    h.updated_at = now;
    events.push(event(
        h,
        now,
        EventKind::HydrationAttached,
        json!({
            "hydration_id": h.id, "run_id": session.run_id, "token": session.token,
            "expires_at": session.expires_at.to_rfc3339(),
        }),
    ));
    Ok(session)
}

/// The attached session renews its TTL.
pub fn heartbeat(
    h: &mut Hydration,
    token: u64,
    principal: Option<&str>,
    now: Millis,
) -> Result<(), RuleError> {
    session_mut(h, token, principal, now)?;
    h.updated_at = now;
    Ok(())
}

/// The attached run ends its session. Detaching a session that has gone
/// already (a retry, a TTL run out, a hydration ended) answers the same.
pub fn detach(
    h: &mut Hydration,
    token: u64,
    principal: Option<&str>,
    now: Millis,
    events: &mut Vec<NewEvent>,
) -> Result<(), RuleError> {
    match h.session.as_ref() {
        Some(s) if s.token == token => {
            owned_by(s, h.id, principal)?;
            let run_id = s.run_id.clone();
            h.session = None;
            h.updated_at = now;
            events.push(event(
                h,
                now,
                EventKind::HydrationDetached,
                json!({ "hydration_id": h.id, "run_id": run_id, "token": token }),
            ));
            Ok(())
        }
        _ if token <= h.sessions => Ok(()),
        _ => Err(RuleError::SessionStale {
            id: h.id,
            presented: token,
        }),
    }
}

/// A progress report in the attached session. Answers whether it just
/// became `live` for the first time (its views switch, and its read lease
/// is released).
pub fn progress(
    h: &mut Hydration,
    report: &ProgressReport,
    principal: Option<&str>,
    log: &LogView,
    now: Millis,
    events: &mut Vec<NewEvent>,
) -> Result<bool, RuleError> {
    session_mut(h, report.token, principal, now)?;
    if report.phase == HydrationPhase::Snapshot
        && !matches!(h.state, HydrationState::Pending | HydrationState::Snapshot)
    {
        return Err(RuleError::Invalid(
            "the hydration is past its snapshot phase: a phase cannot go back".into(),
        ));
    }
    if let (Some(copied), Some(total)) = (report.rows_copied, report.rows_total) {
        if copied > total {
            return Err(RuleError::Invalid(format!(
                "rows_copied ({copied}) cannot exceed rows_total ({total})"
            )));
        }
    }
    let Some(reported) = log.get(report.snapshot_id) else {
        return Err(RuleError::SnapshotNotFound {
            table: h.table.clone(),
            snapshot_id: report.snapshot_id,
        });
    };
    if let Some(applied) = h.progress.applied_snapshot_id.and_then(|id| log.get(id)) {
        if reported.sequence_number < applied.sequence_number {
            return Err(RuleError::Invalid(format!(
                "snapshot {} is older than snapshot {} already applied: progress cannot go back",
                reported.id, applied.id
            )));
        }
    }
    h.progress = Progress {
        rows_copied: report.rows_copied.or(h.progress.rows_copied),
        rows_total: report.rows_total.or(h.progress.rows_total),
        applied_snapshot_id: Some(report.snapshot_id),
        reported_at: Some(now),
    };
    h.updated_at = now;
    let lag = log.lag(Some(report.snapshot_id), now);
    h.lag = StoredLag::from_lag(&lag, log.current);
    let next = if lag.applied_expired {
        HydrationState::Stale
    } else {
        match report.phase {
            HydrationPhase::Snapshot => HydrationState::Snapshot,
            HydrationPhase::CatchingUp => following(h, &lag),
        }
    };
    let became_live = h.state.holds_lease() && next == HydrationState::Live;
    let reason = (next == HydrationState::Stale).then(|| stale_reason(report.snapshot_id));
    move_to(h, next, reason, now, events);
    Ok(became_live)
}

/// Where a hydration applying snapshots stands by its lag: in its first
/// hydration, `catching_up` until within its threshold (then `live`);
/// after it, `live` or `lagging`.
fn following(h: &Hydration, lag: &crate::snapshots::Lag) -> HydrationState {
    let within = !lag.diverged && lag.snapshots_behind <= u64::from(h.lag_threshold_snapshots);
    match (within, h.state.holds_lease()) {
        (true, _) => HydrationState::Live,
        (false, true) => HydrationState::CatchingUp,
        (false, false) => HydrationState::Lagging,
    }
}

/// The table's snapshot log changed: recompute the lag; a copy past its
/// first hydration is `live` or `lagging` by it, attached or not; an
/// applied snapshot that was expired makes the hydration `stale`.
pub fn relag(h: &mut Hydration, log: &LogView, now: Millis, events: &mut Vec<NewEvent>) {
    if h.state.is_final() {
        return;
    }
    let applied = h.progress.applied_snapshot_id;
    let lag = log.lag(applied, now);
    let stored = StoredLag::from_lag(&lag, log.current);
    if stored != h.lag {
        h.lag = stored;
        h.updated_at = now;
    }
    if let (true, Some(id)) = (lag.applied_expired, applied) {
        move_to(
            h,
            HydrationState::Stale,
            Some(stale_reason(id)),
            now,
            events,
        );
    } else if !h.state.holds_lease() {
        let next = following(h, &lag);
        move_to(h, next, None, now, events);
    }
}

/// Its read lease ended during its first hydration without the hydration
/// ending first (expired for want of an attached run, revoked, released by
/// hand): it failed. After the first `live` the lease is gone on purpose.
pub fn follow_lease(h: &mut Hydration, lease: &Lease, now: Millis, events: &mut Vec<NewEvent>) {
    if !h.state.holds_lease() || lease.is_live() {
        return;
    }
    let how = match lease.state {
        LeaseState::Expired => "expired: no run was attached to renew it within its TTL".to_owned(),
        LeaseState::Revoked => format!(
            "was revoked ({})",
            lease.end_reason.as_deref().unwrap_or("no reason given")
        ),
        other => format!("was {} before the copy was live", other.as_str()),
    };
    let reason = format!("its read lease {how}");
    move_to(h, HydrationState::Failed, Some(reason), now, events);
}

fn still_open(h: &Hydration) -> Result<(), RuleError> {
    if h.state.is_final() {
        return Err(RuleError::HydrationEnded {
            id: h.id,
            state: h.state,
            reason: h.reason.clone(),
        });
    }
    Ok(())
}

/// Whether `token` is the session attached at `now` (the hydration not
/// ended): what a report is checked against first, before any catalog is
/// read for it.
pub fn check_session(h: &Hydration, token: u64, now: Millis) -> Result<(), RuleError> {
    still_open(h)?;
    match h.attached(now) {
        Some(s) if s.token == token => Ok(()),
        _ => Err(RuleError::SessionStale {
            id: h.id,
            presented: token,
        }),
    }
}

/// The attached session `token`, renewed, if `principal` attached it.
fn session_mut(
    h: &mut Hydration,
    token: u64,
    principal: Option<&str>,
    now: Millis,
) -> Result<(), RuleError> {
    check_session(h, token, now)?;
    let id = h.id;
    let s = h.session.as_mut().expect("checked: attached");
    owned_by(s, id, principal)?;
    s.heartbeat_at = now;
    s.expires_at = now.plus_seconds(s.ttl_seconds);
    Ok(())
}

fn owned_by(s: &Session, id: HydrationId, principal: Option<&str>) -> Result<(), RuleError> {
    match s.principal.as_deref() {
        Some(owner) if Some(owner) != principal => Err(RuleError::NotOwner {
            what: format!("hydration {id}'s session {}", s.token),
            owner: owner.to_owned(),
        }),
        _ => Ok(()),
    }
}

pub fn cancel(
    h: &mut Hydration,
    reason: &str,
    now: Millis,
    events: &mut Vec<NewEvent>,
) -> Result<(), RuleError> {
    still_open(h)?;
    move_to(
        h,
        HydrationState::Cancelled,
        Some(reason.to_owned()),
        now,
        events,
    );
    Ok(())
}

/// A newer hydration's views took over from this one.
pub fn supersede(h: &mut Hydration, by: HydrationId, now: Millis, events: &mut Vec<NewEvent>) {
    if !h.state.can_be_superseded() {
        return;
    }
    let reason = format!("hydration {by} replaced it in its views");
    move_to(h, HydrationState::Superseded, Some(reason), now, events);
}

fn stale_reason(id: SnapshotId) -> String {
    format!("snapshot {id}, the last it applied, was expired from the table: start a new hydration")
}

fn move_to(
    h: &mut Hydration,
    next: HydrationState,
    reason: Option<String>,
    now: Millis,
    events: &mut Vec<NewEvent>,
) {
    if h.state == next {
        return;
    }
    let from = h.state;
    h.state = next;
    h.updated_at = now;
    if next.is_final() {
        h.ended_at = Some(now);
        h.reason = reason;
    }
    events.push(event(
        h,
        now,
        EventKind::HydrationStateChanged,
        json!({
            "hydration_id": h.id, "from": from.as_str(), "to": next.as_str(),
            "reason": h.reason, "applied_snapshot_id": h.progress.applied_snapshot_id,
            "snapshots_behind": h.lag.snapshots_behind,
        }),
    ));
}

fn event(h: &Hydration, now: Millis, kind: EventKind, data: serde_json::Value) -> NewEvent {
    NewEvent {
        at: now,
        kind,
        table: Some(h.table.clone()),
        lease_id: Some(h.id),
        stream: None,
        data,
        actor: None,
    }
}
