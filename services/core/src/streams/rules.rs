//! The stream rules: pure functions over one stream's loaded state.
//!
//! Every command first settles the stream (an open batch whose heartbeat TTL
//! ran out is failed), so expiry never depends on a background sweep. The
//! bookmark changes only here, and only by a committed batch, a rewind or a
//! reset, each one version up.

use crate::{
    error::RuleError,
    event::{EventKind, NewEvent},
    names::StreamName,
    streams::command::{
        BatchCommand, BatchReply, BookmarkCommand, BookmarkUpdate, Commit, RewindTo, StreamReply,
    },
    streams::state::{
        Batch, BatchId, BatchState, Bookmark, BookmarkVersion, Cause, LoadProgress, Phase,
        StreamSettings, StreamState, EXPIRED,
    },
    time::Millis,
};
use serde_json::json;

/// The result of one command: its answer, and the events to append (also
/// on error: settling may have failed an expired batch first).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamOutcome<R> {
    pub result: Result<R, RuleError>,
    pub events: Vec<NewEvent>,
}

/// Create a stream (`state` is `None`) or change its settings.
pub fn put_stream(
    state: Option<StreamState>,
    stream: StreamName,
    settings: StreamSettings,
    actor: Option<&str>,
    now: Millis,
) -> (StreamState, StreamOutcome<StreamReply>) {
    let Some(mut state) = state else {
        let bookmark = Bookmark::empty(1, now);
        let mut state = StreamState {
            name: stream.clone(),
            settings,
            bookmark: bookmark.clone(),
            last_token: 0,
            created_at: now,
            updated_at: now,
            batches: Vec::new(),
            versions: Vec::new(),
            skew_margin: Millis(0),
        };
        state
            .versions
            .push(version(&state, Cause::Created, actor, None));
        let events = vec![event(
            &state,
            now,
            EventKind::StreamRegistered,
            json!({ "table": state.settings.table, "source": state.settings.source,
                    "expected_schema_hash": state.settings.expected_schema_hash }),
        )];
        let reply = StreamReply {
            state: state.clone(),
            created: true,
        };
        return (state, ok(reply, events));
    };
    if state.settings.table != settings.table {
        let error = RuleError::StreamTableChange {
            stream,
            table: state.settings.table.clone(),
        };
        return (state, err(error, Vec::new()));
    }
    let mut events = Vec::new();
    if state.settings != settings {
        state.settings = settings;
        state.updated_at = now;
        events.push(event(
            &state,
            now,
            EventKind::StreamSettingsChanged,
            json!({ "source": state.settings.source,
                    "expected_schema_hash": state.settings.expected_schema_hash }),
        ));
    }
    let reply = StreamReply {
        state: state.clone(),
        created: false,
    };
    (state, ok(reply, events))
}

/// Apply a batch command to its stream.
pub fn batch(
    state: &mut StreamState,
    command: &BatchCommand,
    actor: Option<&str>,
    now: Millis,
) -> StreamOutcome<BatchReply> {
    let mut events = Vec::new();
    settle(state, now, &mut events);
    let result = match command {
        BatchCommand::Open {
            batch_id,
            run_id,
            ttl_seconds,
            if_match,
            ..
        } => open(
            state,
            *batch_id,
            run_id,
            *ttl_seconds,
            *if_match,
            actor,
            now,
            &mut events,
        ),
        BatchCommand::Heartbeat {
            batch_id,
            token,
            ttl_seconds,
            ..
        } => owned(state, *batch_id, actor, "heartbeat", now, &mut events)
            .and_then(|()| heartbeat(state, *batch_id, *token, *ttl_seconds, now)),
        BatchCommand::Commit {
            batch_id,
            token,
            commit,
            if_match,
            ..
        } => owned(state, *batch_id, actor, "commit", now, &mut events).and_then(|()| {
            commit_batch(
                state,
                *batch_id,
                *token,
                commit,
                *if_match,
                actor,
                now,
                &mut events,
            )
        }),
        BatchCommand::Fail {
            batch_id,
            token,
            reason,
            ..
        } => owned(state, *batch_id, actor, "fail", now, &mut events)
            .and_then(|()| fail(state, *batch_id, *token, reason.clone(), now, &mut events)),
    };
    StreamOutcome { result, events }
}

/// Apply an operator's bookmark command to its stream.
pub fn bookmark(
    state: &mut StreamState,
    command: &BookmarkCommand,
    actor: Option<&str>,
    now: Millis,
) -> StreamOutcome<Bookmark> {
    let mut events = Vec::new();
    settle(state, now, &mut events);
    let result = match command {
        BookmarkCommand::Rewind {
            to,
            reason,
            if_match,
            ..
        } => rewind(state, *to, reason, *if_match, actor, now, &mut events),
        BookmarkCommand::Reset {
            reason, if_match, ..
        } => reset(state, reason, *if_match, actor, now, &mut events),
    };
    StreamOutcome { result, events }
}

/// Fail the open batch if its heartbeat TTL ran out.
fn settle(state: &mut StreamState, now: Millis, events: &mut Vec<NewEvent>) {
    let expired = state
        .batches
        .iter()
        .position(|b| b.is_open() && b.expires_at.0 + state.skew_margin.0 <= now.0);
    if let Some(i) = expired {
        end_batch(
            state,
            i,
            BatchState::Failed,
            Some(EXPIRED.into()),
            now,
            events,
        );
    }
}

/// Only the principal that opened a batch acts on it: anyone who reads the
/// stream sees its token, so the token alone proves nothing. A refusal is
/// recorded. (A batch of unknown id is left to the command to answer.)
fn owned(
    state: &StreamState,
    batch_id: BatchId,
    actor: Option<&str>,
    action: &str,
    now: Millis,
    events: &mut Vec<NewEvent>,
) -> Result<(), RuleError> {
    let Some(batch) = state.batch(batch_id) else {
        return Ok(());
    };
    match batch.principal.as_deref() {
        Some(owner) if Some(owner) != actor => {
            events.push(batch_event(
                state,
                now,
                EventKind::AccessRefused,
                batch,
                json!({ "action": action, "owner": owner }),
            ));
            Err(RuleError::NotOwner {
                what: format!("batch {batch_id}"),
                owner: owner.to_owned(),
            })
        }
        _ => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
fn open(
    state: &mut StreamState,
    batch_id: BatchId,
    run_id: &str,
    ttl_seconds: u32,
    if_match: Option<i64>,
    actor: Option<&str>,
    now: Millis,
    events: &mut Vec<NewEvent>,
) -> Result<BatchReply, RuleError> {
    // A retried open whose first attempt committed gets the same answer.
    if let Some(batch) = state.batch(batch_id) {
        return Ok(batch_reply(
            batch.clone(),
            Some(state.bookmark.clone()),
            true,
        ));
    }
    if let Some(open) = state.open_batch().cloned() {
        if open.run_id == run_id {
            // The same run asking again (its answer was lost): same batch;
            // but another principal naming the run must not get its token.
            owned(state, open.id, actor, "open", now, events)?;
            return Ok(batch_reply(open, Some(state.bookmark.clone()), true));
        }
        return Err(batch_open(&open));
    }
    check_version(state, if_match)?;
    state.last_token += 1;
    state.updated_at = now;
    let batch = Batch {
        id: batch_id,
        stream: state.name.clone(),
        run_id: run_id.to_owned(),
        state: BatchState::Open,
        token: state.last_token,
        base_version: state.bookmark.version,
        ttl_seconds,
        opened_at: now,
        expires_at: now.plus_seconds(ttl_seconds),
        ended_at: None,
        end_reason: None,
        counts: None,
        snapshot_id: None,
        schema_hash: None,
        result: None,
        principal: actor.map(str::to_owned),
    };
    events.push(batch_event(
        state,
        now,
        EventKind::BatchOpened,
        &batch,
        json!({ "base_version": batch.base_version, "ttl_seconds": ttl_seconds }),
    ));
    state.batches.push(batch.clone());
    Ok(batch_reply(batch, Some(state.bookmark.clone()), false))
}

fn heartbeat(
    state: &mut StreamState,
    batch_id: BatchId,
    token: i64,
    ttl_seconds: Option<u32>,
    now: Millis,
) -> Result<BatchReply, RuleError> {
    let i = fenced(state, batch_id, token)?;
    let batch = &mut state.batches[i];
    if !batch.is_open() {
        return Err(finished(batch));
    }
    if let Some(ttl) = ttl_seconds {
        batch.ttl_seconds = ttl;
    }
    batch.expires_at = now.plus_seconds(batch.ttl_seconds);
    Ok(batch_reply(batch.clone(), None, false))
}

#[allow(clippy::too_many_arguments)]
fn commit_batch(
    state: &mut StreamState,
    batch_id: BatchId,
    token: i64,
    commit: &Commit,
    if_match: Option<i64>,
    actor: Option<&str>,
    now: Millis,
    events: &mut Vec<NewEvent>,
) -> Result<BatchReply, RuleError> {
    let i = fenced(state, batch_id, token)?;
    let batch = &state.batches[i];
    match batch.state {
        // A retry after a lost answer: committed batches are immutable, so
        // answer what the commit produced.
        BatchState::Committed => {
            return match &batch.result {
                Some(result) if same_commit(batch, result, commit) => {
                    Ok(batch_reply(batch.clone(), Some(result.clone()), true))
                }
                // Anything else would be dropped while its run believes it
                // landed.
                result => Err(RuleError::BatchCommitted {
                    batch_id,
                    version: result.as_ref().map_or(0, |r| r.version),
                }),
            };
        }
        BatchState::Failed => return Err(finished(batch)),
        BatchState::Open => {}
    }
    check_version(state, if_match)?;
    if batch.base_version != state.bookmark.version {
        // Rewind and reset refuse to run under an open batch, so this
        // cannot happen; refuse rather than fork the history if it does.
        return Err(RuleError::VersionMismatch {
            current: state.bookmark.version,
            expected: batch.base_version,
        });
    }
    if let Some(expected) = &state.settings.expected_schema_hash {
        if commit.schema_hash.as_ref() != Some(expected) {
            return Err(RuleError::SchemaMismatch {
                expected: expected.clone(),
                got: commit.schema_hash.clone(),
            });
        }
    }
    let position = next_position(&state.bookmark, commit)?;
    let next = advance(state, position, Cause::Batch, actor, None, now);
    let batch = &mut state.batches[i];
    batch.counts = Some(commit.counts);
    batch.snapshot_id = commit.snapshot_id;
    batch.schema_hash = commit.schema_hash.clone();
    batch.result = Some(next.clone());
    end_batch(state, i, BatchState::Committed, None, now, events);
    let batch = state.batches[i].clone();
    let entry = latest_version(state);
    entry.batch_id = Some(batch.id);
    entry.run_id = Some(batch.run_id.clone());
    entry.counts = batch.counts;
    entry.snapshot_id = batch.snapshot_id;
    Ok(batch_reply(batch, Some(next), false))
}

/// Whether `commit`, sent again for a committed batch, is the commit that
/// produced `result`: the same counts, snapshot and schema, and a position
/// that leads where the first one did.
fn same_commit(batch: &Batch, result: &Bookmark, commit: &Commit) -> bool {
    let position = match &commit.bookmark {
        BookmarkUpdate::Load(load) => {
            let load = load.clone().normalized();
            let completed = result.phase == Phase::Delta;
            load.files_done == result.load.files_done
                && load.high_water == result.load.high_water
                // Omitted, cdc_start kept the value captured earlier.
                && load
                    .cdc_start
                    .as_ref()
                    .is_none_or(|c| Some(c) == result.load.cdc_start.as_ref())
                && commit.load_complete == completed
        }
        BookmarkUpdate::Delta(position) => {
            !commit.load_complete && result.delta.as_ref() == Some(position)
        }
    };
    position
        && batch.counts == Some(commit.counts)
        && batch.snapshot_id == commit.snapshot_id
        && batch.schema_hash == commit.schema_hash
}

/// The bookmark a commit leads to, version aside; refuses a position in the
/// wrong phase's section or one that goes back.
fn next_position(current: &Bookmark, commit: &Commit) -> Result<Bookmark, RuleError> {
    let mut next = current.clone();
    match (current.phase, &commit.bookmark) {
        (Phase::Load, BookmarkUpdate::Load(load)) => {
            let load = load.clone().normalized();
            let old = &current.load;
            let lost: Vec<&String> = old
                .files_done
                .iter()
                .filter(|f| load.files_done.binary_search(f).is_err())
                .collect();
            if !lost.is_empty() {
                return Err(RuleError::BookmarkRegression(format!(
                    "files_done would drop {} file(s) already done, e.g. `{}`; rewind to go back",
                    lost.len(),
                    lost[0]
                )));
            }
            if let (Some(old_hw), new_hw) = (&old.high_water, &load.high_water) {
                if new_hw.as_ref().is_none_or(|new| new < old_hw) {
                    return Err(RuleError::BookmarkRegression(format!(
                        "high_water would move back from `{old_hw}`; rewind to go back"
                    )));
                }
            }
            let cdc_start = match (&old.cdc_start, &load.cdc_start) {
                (Some(old), Some(new)) if old != new => {
                    return Err(RuleError::BookmarkRegression(
                        "cdc_start was captured when the load began and cannot change during it; \
                         reset the stream to start a new load"
                            .into(),
                    ))
                }
                (Some(old), _) => Some(old.clone()),
                (None, new) => new.clone(),
            };
            next.load = LoadProgress { cdc_start, ..load };
            if commit.load_complete {
                next.phase = Phase::Delta;
                next.delta = Some(next.load.cdc_start.clone().unwrap_or_default());
            }
        }
        (Phase::Delta, BookmarkUpdate::Delta(position)) => {
            if commit.load_complete {
                return Err(RuleError::PhaseMismatch {
                    phase: Phase::Delta,
                    detail: "load_complete is only for commits in phase load".into(),
                });
            }
            let old = current.delta.clone().unwrap_or_default();
            for (field, old, new) in [
                ("file", &old.file, &position.file),
                (
                    "commit_timestamp",
                    &old.commit_timestamp,
                    &position.commit_timestamp,
                ),
            ] {
                // Dropping a field is going back too (to "from the start").
                if let Some(old) = old {
                    if new.as_ref().is_none_or(|new| new < old) {
                        return Err(RuleError::BookmarkRegression(format!(
                            "delta.{field} would move back from `{old}` to {}; rewind to go back",
                            new.as_deref()
                                .map_or("nothing".to_owned(), |n| format!("`{n}`"))
                        )));
                    }
                }
            }
            next.delta = Some(position.clone());
        }
        (phase, _) => {
            return Err(RuleError::PhaseMismatch {
                phase,
                detail: format!("commit a `{}` bookmark", phase.as_str()),
            })
        }
    }
    Ok(next)
}

fn fail(
    state: &mut StreamState,
    batch_id: BatchId,
    token: i64,
    reason: Option<String>,
    now: Millis,
    events: &mut Vec<NewEvent>,
) -> Result<BatchReply, RuleError> {
    let i = fenced(state, batch_id, token)?;
    match state.batches[i].state {
        BatchState::Open => {
            let reason = reason.unwrap_or_else(|| "failed by its run".into());
            end_batch(state, i, BatchState::Failed, Some(reason), now, events);
            Ok(batch_reply(state.batches[i].clone(), None, false))
        }
        // Failing twice (a retry) changes nothing.
        BatchState::Failed => Ok(batch_reply(state.batches[i].clone(), None, true)),
        BatchState::Committed => Err(finished(&state.batches[i])),
    }
}

#[allow(clippy::too_many_arguments)]
fn rewind(
    state: &mut StreamState,
    to: RewindTo,
    reason: &str,
    if_match: Option<i64>,
    actor: Option<&str>,
    now: Millis,
    events: &mut Vec<NewEvent>,
) -> Result<Bookmark, RuleError> {
    if let RewindTo::Time(t) = &to {
        // The latest version at a future instant is today's: a rewind
        // that would only copy it is a mistyped date.
        if *t > now {
            return Err(RuleError::Invalid(format!(
                "to_time {} is in the future (the server's clock says {})",
                t.to_rfc3339(),
                now.to_rfc3339()
            )));
        }
    }
    refuse_under_open_batch(state, if_match)?;
    let target = match to {
        RewindTo::Version(v) => state
            .versions
            .iter()
            .find(|e| e.bookmark.version == v)
            .ok_or_else(|| RuleError::VersionNotFound(format!("stream has no version {v}"))),
        RewindTo::Time(t) => state
            .versions
            .iter()
            .filter(|e| e.bookmark.updated_at <= t)
            .max_by_key(|e| e.bookmark.version)
            .ok_or_else(|| {
                RuleError::VersionNotFound(format!(
                    "stream has no version written at or before {}",
                    t.to_rfc3339()
                ))
            }),
    }?;
    let (restored, position) = (target.bookmark.version, target.bookmark.clone());
    let from = state.bookmark.version;
    let next = advance(state, position, Cause::Rewind, actor, Some(reason), now);
    latest_version(state).rewound_to = Some(restored);
    events.push(event(
        state,
        now,
        EventKind::BookmarkRewound,
        json!({ "from_version": from, "to_version": restored, "version": next.version,
                "reason": reason }),
    ));
    Ok(next)
}

fn reset(
    state: &mut StreamState,
    reason: &str,
    if_match: Option<i64>,
    actor: Option<&str>,
    now: Millis,
    events: &mut Vec<NewEvent>,
) -> Result<Bookmark, RuleError> {
    refuse_under_open_batch(state, if_match)?;
    let from = state.bookmark.version;
    let next = advance(
        state,
        Bookmark::empty(from + 1, now),
        Cause::Reset,
        actor,
        Some(reason),
        now,
    );
    events.push(event(
        state,
        now,
        EventKind::BookmarkReset,
        json!({ "from_version": from, "version": next.version, "reason": reason }),
    ));
    Ok(next)
}

/// The index of the batch, if `token` is its token.
fn fenced(state: &StreamState, batch_id: BatchId, token: i64) -> Result<usize, RuleError> {
    let i = state
        .batches
        .iter()
        .position(|b| b.id == batch_id)
        .ok_or(RuleError::BatchNotFound(batch_id))?;
    if state.batches[i].token != token {
        return Err(RuleError::StaleBatchToken {
            batch_id,
            presented: token,
        });
    }
    Ok(i)
}

fn check_version(state: &StreamState, if_match: Option<i64>) -> Result<(), RuleError> {
    match if_match {
        Some(expected) if expected != state.bookmark.version => Err(RuleError::VersionMismatch {
            current: state.bookmark.version,
            expected,
        }),
        _ => Ok(()),
    }
}

fn end_batch(
    state: &mut StreamState,
    i: usize,
    to: BatchState,
    reason: Option<String>,
    now: Millis,
    events: &mut Vec<NewEvent>,
) {
    let batch = &mut state.batches[i];
    batch.state = to;
    batch.ended_at = Some(now);
    batch.end_reason = reason;
    let batch = batch.clone();
    let (kind, data) = match to {
        BatchState::Committed => (
            EventKind::BatchCommitted,
            json!({ "version": batch.result.as_ref().map(|b| b.version), "counts": batch.counts,
                    "snapshot_id": batch.snapshot_id }),
        ),
        _ => (
            EventKind::BatchFailed,
            json!({ "reason": batch.end_reason }),
        ),
    };
    events.push(batch_event(state, now, kind, &batch, data));
}

fn finished(batch: &Batch) -> RuleError {
    if batch.end_reason.as_deref() == Some(EXPIRED) {
        RuleError::BatchExpired(batch.id)
    } else {
        RuleError::BatchFinished {
            batch_id: batch.id,
            state: batch.state,
        }
    }
}

fn batch_open(open: &Batch) -> RuleError {
    RuleError::BatchOpen {
        batch_id: open.id,
        run_id: open.run_id.clone(),
        expires_at: open.expires_at,
    }
}

fn batch_reply(batch: Batch, bookmark: Option<Bookmark>, replayed: bool) -> BatchReply {
    BatchReply {
        batch,
        bookmark,
        replayed,
    }
}

/// An operator's change of the bookmark: only at the version the caller
/// expects, and never under a live batch (it would commit on a moved base).
fn refuse_under_open_batch(state: &StreamState, if_match: Option<i64>) -> Result<(), RuleError> {
    check_version(state, if_match)?;
    match state.open_batch() {
        Some(open) => Err(batch_open(open)),
        None => Ok(()),
    }
}

/// Make `position` the bookmark, one version up, and append that version to
/// the history (the caller completes the entry through [`latest_version`]).
fn advance(
    state: &mut StreamState,
    position: Bookmark,
    cause: Cause,
    actor: Option<&str>,
    reason: Option<&str>,
    now: Millis,
) -> Bookmark {
    let next = Bookmark {
        version: state.bookmark.version + 1,
        updated_at: now,
        ..position
    };
    state.bookmark = next.clone();
    state.updated_at = now;
    let entry = version(state, cause, actor, reason);
    state.versions.push(entry);
    next
}

fn latest_version(state: &mut StreamState) -> &mut BookmarkVersion {
    state
        .versions
        .last_mut()
        .expect("advance appended a version")
}

/// The history entry for the stream's current bookmark.
fn version(
    state: &StreamState,
    cause: Cause,
    actor: Option<&str>,
    reason: Option<&str>,
) -> BookmarkVersion {
    BookmarkVersion {
        stream: state.name.clone(),
        bookmark: state.bookmark.clone(),
        cause,
        batch_id: None,
        run_id: None,
        counts: None,
        snapshot_id: None,
        rewound_to: None,
        actor: actor.map(str::to_owned),
        reason: reason.map(str::to_owned),
    }
}

fn ok<R>(reply: R, events: Vec<NewEvent>) -> StreamOutcome<R> {
    StreamOutcome {
        result: Ok(reply),
        events,
    }
}

fn err<R>(error: RuleError, events: Vec<NewEvent>) -> StreamOutcome<R> {
    StreamOutcome {
        result: Err(error),
        events,
    }
}

fn event(state: &StreamState, now: Millis, kind: EventKind, data: serde_json::Value) -> NewEvent {
    NewEvent {
        at: now,
        kind,
        table: Some(state.settings.table.clone()),
        lease_id: None,
        stream: Some(state.name.clone()),
        data,
        actor: None,
    }
}

fn batch_event(
    state: &StreamState,
    now: Millis,
    kind: EventKind,
    batch: &Batch,
    mut data: serde_json::Value,
) -> NewEvent {
    data["batch_id"] = json!(batch.id);
    data["run_id"] = json!(batch.run_id);
    data["token"] = json!(batch.token);
    event(state, now, kind, data)
}
