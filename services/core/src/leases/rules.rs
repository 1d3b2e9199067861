//! The lease rules: pure functions `(state, command, now) -> (state', events)`.
//!
//! The queue policy lives in [`may_grant`]; everything else is bookkeeping
//! around it. Every call first settles the table (expires what is due and
//! grants who can be), so expiry never depends on a background sweep having
//! run.

use crate::{
    error::RuleError,
    event::{EventKind, NewEvent},
    leases::command::{AcquireRequest, LeaseCommand, LeaseReply, TableReply},
    leases::lease::{Lease, LeaseId, LeaseState, Mode, Token},
    leases::table::{TableSettings, TableState},
    time::Millis,
};
use serde_json::json;

/// The result of one command: its answer, and the events to append
/// (also on error: settling may have expired or granted leases first).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome<R> {
    pub result: Result<R, RuleError>,
    pub events: Vec<NewEvent>,
}

/// Create a table (`state` is `None`) or change its settings.
pub fn put_table(
    state: Option<TableState>,
    table: crate::TableName,
    settings: TableSettings,
    now: Millis,
) -> (TableState, Outcome<TableReply>) {
    let created = state.is_none();
    let mut state = state.unwrap_or_else(|| TableState::new(table, settings.clone(), now));
    let mut events = Vec::new();
    settle(&mut state, now, &mut events);
    if created || state.settings != settings {
        state.settings = settings;
        state.updated_at = now;
        events.push(event(
            &state,
            now,
            EventKind::TableSettingsChanged,
            None,
            json!({ "settings": state.settings, "created": created }),
        ));
    }
    settle(&mut state, now, &mut events);
    let reply = TableReply {
        state: state.clone(),
        created,
    };
    (
        state,
        Outcome {
            result: Ok(reply),
            events,
        },
    )
}

/// Settle a table: expire what is due, grant who can be, answer its state.
pub fn sweep(state: &mut TableState, now: Millis) -> Outcome<TableReply> {
    let mut events = Vec::new();
    settle(state, now, &mut events);
    Outcome {
        result: Ok(TableReply {
            state: state.clone(),
            created: false,
        }),
        events,
    }
}

/// Apply one lease command to its table's state.
/// `actor` is who asks: it becomes an acquired lease's owner, and only the
/// owner may heartbeat or release a lease.
pub fn apply(
    state: &mut TableState,
    command: &LeaseCommand,
    actor: Option<&str>,
    now: Millis,
) -> Outcome<LeaseReply> {
    let mut events = Vec::new();
    settle(state, now, &mut events);
    let result = match command {
        LeaseCommand::Acquire { request, .. } => acquire(state, request, actor, now, &mut events),
        LeaseCommand::Heartbeat {
            lease_id,
            token,
            ttl_seconds,
        } => owned(state, *lease_id, actor, "heartbeat", now, &mut events)
            .and_then(|()| heartbeat(state, *lease_id, *token, *ttl_seconds, now))
            .map(|()| (*lease_id, false)),
        LeaseCommand::Release { lease_id, token } => {
            owned(state, *lease_id, actor, "release", now, &mut events)
                .and_then(|()| release(state, *lease_id, *token, now, &mut events))
                .map(|()| (*lease_id, false))
        }
        LeaseCommand::Revoke { lease_id, reason } => {
            revoke(state, *lease_id, reason, now, &mut events).map(|()| (*lease_id, false))
        }
        LeaseCommand::KeepWaiting { lease_id } | LeaseCommand::Lookup { lease_id } => keep_waiting(
            state,
            *lease_id,
            now,
            matches!(command, LeaseCommand::KeepWaiting { .. }),
        )
        .map(|()| (*lease_id, false)),
    };
    settle(state, now, &mut events);
    let result = result.and_then(|(id, replayed)| lease_reply(state, id, replayed));
    Outcome { result, events }
}

/// The lease a command found or created. Settling moves a lease between
/// `live` and `finished`, never out of the table, so it is there.
fn lease_reply(state: &TableState, id: LeaseId, replayed: bool) -> Result<LeaseReply, RuleError> {
    let lease = state
        .find(id)
        .cloned()
        .ok_or(RuleError::LeaseNotFound(id))?;
    let position = (lease.state == LeaseState::Waiting)
        .then(|| 1 + state.waiters().take_while(|w| w.id != id).count() as u32);
    Ok(LeaseReply {
        lease,
        position,
        replayed,
    })
}

/// Expire what is due, then grant every waiter the queue policy allows.
pub fn settle(state: &mut TableState, now: Millis, events: &mut Vec<NewEvent>) {
    let mut i = 0;
    while i < state.live.len() {
        if state.live[i].is_expired_at(Millis(now.0 - state.skew_margin.0)) {
            let mut lease = state.live.remove(i);
            let was = lease.state;
            lease.state = LeaseState::Expired;
            lease.ended_at = Some(now);
            events.push(event(
                state,
                now,
                EventKind::LeaseExpired,
                Some(lease.id),
                json!({ "mode": lease.mode, "holder": lease.holder, "token": lease.token,
                        "was": was, "expires_at": lease.expires_at }),
            ));
            state.finished.push(lease);
        } else {
            i += 1;
        }
    }
    for i in 0..state.live.len() {
        if state.live[i].state == LeaseState::Waiting && may_grant(state, i, now) {
            state.last_token += 1;
            let token = state.last_token;
            let lease = &mut state.live[i];
            lease.state = LeaseState::Granted;
            lease.token = Some(token);
            lease.granted_at = Some(now);
            lease.expires_at = now.plus_seconds(lease.ttl_seconds);
            let (id, data) = (
                lease.id,
                json!({ "mode": lease.mode, "holder": lease.holder, "token": token,
                        "expires_at": lease.expires_at }),
            );
            events.push(event(state, now, EventKind::LeaseGranted, Some(id), data));
        }
    }
}

/// The queue policy. Readers share and a writer excludes everyone; waiters
/// are served in arrival order, except that readers may pass a waiting
/// writer until it has waited `max_compaction_deferral_seconds`. From then
/// on new readers queue behind it, so compaction always gets its window.
pub fn may_grant(state: &TableState, index: usize, now: Millis) -> bool {
    let candidate = &state.live[index];
    let mut holders = state.holders();
    let earlier_waiters = || {
        state.live[..index]
            .iter()
            .filter(|l| l.state == LeaseState::Waiting)
    };
    match candidate.mode {
        Mode::Write => holders.next().is_none() && earlier_waiters().next().is_none(),
        Mode::Read => {
            let writer_holds = holders.any(|h| h.mode == Mode::Write);
            let deferral_ms = i64::from(state.settings.max_compaction_deferral_seconds) * 1000;
            let due_writer_ahead = earlier_waiters()
                .any(|w| w.mode == Mode::Write && now.0 - w.requested_at.0 >= deferral_ms);
            !writer_holds && !due_writer_ahead
        }
    }
}

/// Only the principal that acquired a lease acts on it: anyone who reads
/// the table sees its token, so the token alone proves nothing. A refusal
/// is recorded. (A lease of unknown id is left to the command to answer.)
fn owned(
    state: &TableState,
    id: LeaseId,
    actor: Option<&str>,
    action: &str,
    now: Millis,
    events: &mut Vec<NewEvent>,
) -> Result<(), RuleError> {
    let Some(owner) = state.find(id).and_then(|l| l.principal.as_deref()) else {
        return Ok(());
    };
    if Some(owner) == actor {
        return Ok(());
    }
    events.push(event(
        state,
        now,
        EventKind::AccessRefused,
        Some(id),
        json!({ "action": action, "owner": owner }),
    ));
    Err(RuleError::NotOwner {
        what: format!("lease {id}"),
        owner: owner.to_owned(),
    })
}

fn acquire(
    state: &mut TableState,
    request: &AcquireRequest,
    actor: Option<&str>,
    now: Millis,
    events: &mut Vec<NewEvent>,
) -> Result<(LeaseId, bool), RuleError> {
    if request.mode == Mode::Write && request.pin_snapshot_id.is_some() {
        return Err(RuleError::Invalid(
            "pin_snapshot_id is for read leases only".into(),
        ));
    }
    // The same command again (a batch retried after its commit's answer was
    // lost): the lease it made is the answer, never a second grant.
    if state.find(request.lease_id).is_some() {
        return Ok((request.lease_id, true));
    }
    if let Some(key) = &request.idempotency_key {
        let earlier = state
            .live
            .iter()
            .chain(state.finished.iter())
            .find(|l| l.idempotency_key.as_deref() == Some(key.as_str()));
        if let Some(earlier) = earlier {
            // Another principal's key is not a retry of theirs: answering
            // it would hand over their lease and token.
            if earlier.mode != request.mode
                || earlier.holder != request.holder
                || earlier
                    .principal
                    .as_deref()
                    .is_some_and(|p| Some(p) != actor)
            {
                return Err(RuleError::IdempotencyConflict { key: key.clone() });
            }
            return Ok((earlier.id, true));
        }
    }
    state.last_seq += 1;
    let lease = Lease {
        id: request.lease_id,
        table: state.name.clone(),
        seq: state.last_seq,
        mode: request.mode,
        holder: request.holder.clone(),
        purpose: request.purpose.clone(),
        state: LeaseState::Waiting,
        token: None,
        ttl_seconds: request.ttl_seconds,
        requested_at: now,
        granted_at: None,
        expires_at: now.plus_seconds(request.ttl_seconds),
        ended_at: None,
        end_reason: None,
        idempotency_key: request.idempotency_key.clone(),
        pin_snapshot_id: request.pin_snapshot_id,
        principal: actor.map(str::to_owned),
    };
    let data = json!({ "mode": lease.mode, "holder": lease.holder, "purpose": lease.purpose,
                       "ttl_seconds": lease.ttl_seconds, "pin_snapshot_id": lease.pin_snapshot_id });
    let waiting = state.waiters().count();
    state.live.push(lease);
    // A full queue refuses newcomers that would have to wait; one that is
    // granted at once takes no place in it.
    if waiting >= request.max_waiters as usize && !may_grant(state, state.live.len() - 1, now) {
        state.live.pop();
        state.last_seq -= 1;
        return Err(RuleError::QueueFull {
            limit: request.max_waiters,
        });
    }
    events.push(event(
        state,
        now,
        EventKind::LeaseRequested,
        Some(request.lease_id),
        data,
    ));
    Ok((request.lease_id, false))
}

/// Keep a hydration's read lease alive for it while a run is attached
/// and working, and move its pin to `pin` (the snapshot it applied last)
/// once granted. The hydration holds the lease, not a caller: its session
/// was checked, so no token is asked here.
pub fn hold(
    state: &mut TableState,
    id: LeaseId,
    pin: Option<i64>,
    now: Millis,
    events: &mut Vec<NewEvent>,
) -> Result<(), RuleError> {
    settle(state, now, events);
    let lease = live_mut(state, id)?;
    if let Some(pin) = pin {
        if lease.state != LeaseState::Granted {
            return Err(RuleError::Invalid(format!(
                "lease {id} is still waiting: report progress once it is granted"
            )));
        }
        lease.pin_snapshot_id = Some(pin);
    }
    lease.expires_at = now.plus_seconds(lease.ttl_seconds);
    Ok(())
}

/// Release a hydration's read lease for it: its copy is live and keeps a
/// pin of its own from now on. A waiter (a compaction) is granted in the
/// same batch. An ended lease stays as it is.
pub fn release_held(
    state: &mut TableState,
    id: LeaseId,
    reason: &str,
    now: Millis,
    events: &mut Vec<NewEvent>,
) {
    if state.live.iter().any(|l| l.id == id) {
        finish(
            state,
            id,
            LeaseState::Released,
            Some(reason.to_owned()),
            EventKind::LeaseReleased,
            now,
            events,
        );
        settle(state, now, events);
    }
}

/// End a live lease for good (its hydration was cancelled); an ended one
/// stays as it is.
pub fn end(
    state: &mut TableState,
    id: LeaseId,
    reason: &str,
    now: Millis,
    events: &mut Vec<NewEvent>,
) {
    settle(state, now, events);
    if state.live.iter().any(|l| l.id == id) {
        finish(
            state,
            id,
            LeaseState::Revoked,
            Some(reason.to_owned()),
            EventKind::LeaseRevoked,
            now,
            events,
        );
        settle(state, now, events);
    }
}

/// The live lease `id`, or why there is none.
fn live_mut(state: &mut TableState, id: LeaseId) -> Result<&mut Lease, RuleError> {
    if let Some(i) = state.live.iter().position(|l| l.id == id) {
        return Ok(&mut state.live[i]);
    }
    match state.finished.iter().find(|l| l.id == id) {
        Some(l) => Err(RuleError::LeaseEnded {
            lease_id: id,
            state: l.state,
        }),
        None => Err(RuleError::LeaseNotFound(id)),
    }
}

fn check_token(lease: &Lease, token: Option<Token>) -> Result<(), RuleError> {
    match token {
        Some(t) if lease.token != Some(t) => Err(RuleError::StaleToken {
            lease_id: lease.id,
            presented: t,
        }),
        _ => Ok(()),
    }
}

fn heartbeat(
    state: &mut TableState,
    id: LeaseId,
    token: Option<Token>,
    ttl_seconds: Option<u32>,
    now: Millis,
) -> Result<(), RuleError> {
    let lease = live_mut(state, id)?;
    // A grant is fenced: extending it takes its token. A waiter has none yet.
    if lease.state == LeaseState::Granted && token.is_none() {
        return Err(RuleError::TokenRequired(id));
    }
    check_token(lease, token)?;
    if let Some(ttl) = ttl_seconds {
        lease.ttl_seconds = ttl;
    }
    lease.expires_at = now.plus_seconds(lease.ttl_seconds);
    Ok(())
}

fn keep_waiting(
    state: &mut TableState,
    id: LeaseId,
    now: Millis,
    touch: bool,
) -> Result<(), RuleError> {
    if let Some(lease) = state.live.iter_mut().find(|l| l.id == id) {
        if touch && lease.state == LeaseState::Waiting {
            lease.expires_at = now.plus_seconds(lease.ttl_seconds);
        }
        return Ok(());
    }
    match state.find(id) {
        Some(_) => Ok(()),
        None => Err(RuleError::LeaseNotFound(id)),
    }
}

fn release(
    state: &mut TableState,
    id: LeaseId,
    token: Option<Token>,
    now: Millis,
    events: &mut Vec<NewEvent>,
) -> Result<(), RuleError> {
    // A release repeated after its response was lost answers the same and
    // changes nothing, but only for the caller that owned the lease.
    if let Some(done) = state.finished.iter().find(|l| l.id == id) {
        return match (done.state, token) {
            (LeaseState::Released, Some(t)) if done.token == Some(t) => Ok(()),
            (LeaseState::Cancelled, None) => Ok(()),
            (LeaseState::Released | LeaseState::Cancelled, Some(t)) => Err(RuleError::StaleToken {
                lease_id: id,
                presented: t,
            }),
            (ended, _) => Err(RuleError::LeaseEnded {
                lease_id: id,
                state: ended,
            }),
        };
    }
    let lease = live_mut(state, id)?;
    let (kind, new_state) = match (lease.state, token) {
        (LeaseState::Granted, None) => return Err(RuleError::TokenRequired(id)),
        (LeaseState::Granted, Some(_)) => {
            check_token(lease, token)?;
            (EventKind::LeaseReleased, LeaseState::Released)
        }
        (_, Some(t)) => {
            return Err(RuleError::StaleToken {
                lease_id: id,
                presented: t,
            })
        }
        (_, None) => (EventKind::LeaseCancelled, LeaseState::Cancelled),
    };
    finish(state, id, new_state, None, kind, now, events);
    Ok(())
}

fn revoke(
    state: &mut TableState,
    id: LeaseId,
    reason: &str,
    now: Millis,
    events: &mut Vec<NewEvent>,
) -> Result<(), RuleError> {
    if let Some(done) = state.finished.iter().find(|l| l.id == id) {
        return match done.state {
            LeaseState::Revoked => Ok(()),
            other => Err(RuleError::LeaseEnded {
                lease_id: id,
                state: other,
            }),
        };
    }
    live_mut(state, id)?;
    finish(
        state,
        id,
        LeaseState::Revoked,
        Some(reason.to_owned()),
        EventKind::LeaseRevoked,
        now,
        events,
    );
    Ok(())
}

/// Move a live lease to its final state.
fn finish(
    state: &mut TableState,
    id: LeaseId,
    new_state: LeaseState,
    reason: Option<String>,
    kind: EventKind,
    now: Millis,
    events: &mut Vec<NewEvent>,
) {
    let i = state
        .live
        .iter()
        .position(|l| l.id == id)
        .expect("finish is called on a live lease");
    let mut lease = state.live.remove(i);
    let was = lease.state;
    lease.state = new_state;
    lease.ended_at = Some(now);
    lease.end_reason = reason;
    events.push(event(
        state,
        now,
        kind,
        Some(id),
        json!({ "mode": lease.mode, "holder": lease.holder, "token": lease.token,
                "was": was, "reason": lease.end_reason }),
    ));
    state.finished.push(lease);
}

fn event(
    state: &TableState,
    now: Millis,
    kind: EventKind,
    lease_id: Option<LeaseId>,
    data: serde_json::Value,
) -> NewEvent {
    NewEvent {
        at: now,
        kind,
        table: Some(state.name.clone()),
        lease_id,
        stream: None,
        data,
        actor: None,
    }
}
