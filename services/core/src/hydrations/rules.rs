//! The hydration rules: pure functions over a hydration, the table's
//! snapshot log as sluice holds it, and `now`. The lease half (the token
//! check and the pin) is the lease rules' `pin_snapshot`; the store runs
//! both on the same batch.

use super::hydration::{
    Hydration, HydrationId, HydrationPhase, HydrationState, Progress, StoredLag,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressReport {
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

/// A job's progress report (its lease token already checked). Answers
/// whether it just became `live`.
pub fn progress(
    h: &mut Hydration,
    report: &ProgressReport,
    log: &LogView,
    now: Millis,
    events: &mut Vec<NewEvent>,
) -> Result<bool, RuleError> {
    if h.state.is_final() {
        return Err(RuleError::HydrationEnded {
            id: h.id,
            state: h.state,
            reason: h.reason.clone(),
        });
    }
    if report.phase == HydrationPhase::Snapshot
        && matches!(h.state, HydrationState::CatchingUp | HydrationState::Live)
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
            HydrationPhase::CatchingUp
                if h.state == HydrationState::Live
                    || (!lag.diverged
                        && lag.snapshots_behind <= u64::from(h.lag_threshold_snapshots)) =>
            {
                HydrationState::Live
            }
            HydrationPhase::CatchingUp => HydrationState::CatchingUp,
        }
    };
    let became_live = next == HydrationState::Live && h.state != HydrationState::Live;
    let reason = (next == HydrationState::Stale).then(|| stale_reason(report.snapshot_id));
    move_to(h, next, reason, now, events);
    Ok(became_live)
}

/// The table's snapshot log changed: recompute the lag; an applied
/// snapshot that was expired makes the hydration `stale`.
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
    }
}

/// Its read lease ended without the hydration ending first. Released by
/// its job while live, the hydration is `completed` (the job's run is over
/// and the copy is whole, which lets compaction in); otherwise it failed.
pub fn follow_lease(h: &mut Hydration, lease: &Lease, now: Millis, events: &mut Vec<NewEvent>) {
    if h.state.is_final() || lease.is_live() {
        return;
    }
    if h.state == HydrationState::Live && lease.state == LeaseState::Released {
        let reason = format!(
            "its job released its read lease while live: the target holds snapshot {}",
            h.progress
                .applied_snapshot_id
                .map_or_else(|| "none".to_owned(), |id| id.to_string())
        );
        move_to(h, HydrationState::Completed, Some(reason), now, events);
        return;
    }
    let how = match lease.state {
        LeaseState::Expired => "expired: its job stopped heartbeating".to_owned(),
        LeaseState::Revoked => format!(
            "was revoked ({})",
            lease.end_reason.as_deref().unwrap_or("no reason given")
        ),
        other => format!("was {}", other.as_str()),
    };
    let reason = format!("its read lease {how}");
    move_to(h, HydrationState::Failed, Some(reason), now, events);
}

pub fn cancel(
    h: &mut Hydration,
    reason: &str,
    now: Millis,
    events: &mut Vec<NewEvent>,
) -> Result<(), RuleError> {
    if h.state.is_final() {
        return Err(RuleError::HydrationEnded {
            id: h.id,
            state: h.state,
            reason: h.reason.clone(),
        });
    }
    move_to(
        h,
        HydrationState::Cancelled,
        Some(reason.to_owned()),
        now,
        events,
    );
    Ok(())
}

/// A newer hydration's views took over from this one (running or
/// completed).
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
