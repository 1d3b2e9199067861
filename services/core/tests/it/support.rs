//! Builders and small table-with-a-clock and stream-with-a-clock fixtures
//! shared by the tests.

use crate::any_command::{
    self as rules, Command, Outcome, Reply, StreamCommand, StreamOutcome, StreamReply,
};
use sluice_core::{
    leases::AcquireRequest,
    streams::{
        Batch, BatchId, Bookmark, BookmarkUpdate, Commit, Counts, LoadProgress, Position, RewindTo,
        StreamSettings,
    },
    EventKind, Lease, LeaseId, LeaseState, Millis, Mode, StreamName, StreamState, TableName,
    TableSettings, TableState, Token,
};

/// Property tests run 256 cases by default; `PROPTEST_CASES` overrides.
pub fn proptest_config() -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        ..proptest::test_runner::Config::default()
    }
}

/// How often a property test reached each situation of its list, so that a
/// generator which never reaches what the invariants are about is caught.
#[derive(Debug)]
pub struct Coverage {
    situations: &'static [&'static str],
    pub seen: std::collections::BTreeMap<&'static str, usize>,
}

impl Coverage {
    pub fn new(situations: &'static [&'static str]) -> Coverage {
        Coverage {
            situations,
            seen: Default::default(),
        }
    }

    pub fn saw(&mut self, situation: &'static str) {
        assert!(
            self.situations.contains(&situation),
            "unlisted: {situation}"
        );
        *self.seen.entry(situation).or_default() += 1;
    }

    pub fn add(&mut self, other: &Coverage) {
        for (situation, count) in &other.seen {
            *self.seen.entry(situation).or_default() += count;
        }
    }

    pub fn assert_every_situation_reached(&self) {
        for situation in self.situations {
            assert!(
                self.seen.contains_key(situation),
                "never reached: {situation} ({self:?})"
            );
        }
    }
}

/// An arbitrary but fixed start of time (2023-11-14), far from zero so that
/// no arithmetic near the epoch is exercised by accident.
pub const START: Millis = Millis(1_700_000_000_000);

pub fn table_name() -> TableName {
    TableName::parse("lake.orders").expect("a valid table name")
}

pub fn lease_id(n: u128) -> LeaseId {
    LeaseId(uuid::Uuid::from_u128(n))
}

pub fn settings(max_compaction_deferral_seconds: u32) -> TableSettings {
    TableSettings {
        max_compaction_deferral_seconds,
        ..TableSettings::default()
    }
}

pub fn request(id: LeaseId, mode: Mode, ttl_seconds: u32) -> AcquireRequest {
    AcquireRequest {
        lease_id: id,
        mode,
        holder: "glue-job".into(),
        ttl_seconds,
        idempotency_key: None,
        purpose: None,
        pin_snapshot_id: None,
        max_waiters: u32::MAX,
    }
}

pub fn acquire_request(request: AcquireRequest) -> Command {
    Command::Acquire {
        table: table_name(),
        request,
    }
}

pub fn acquire(id: LeaseId, mode: Mode, ttl_seconds: u32) -> Command {
    acquire_request(request(id, mode, ttl_seconds))
}

pub fn heartbeat(id: LeaseId, token: Option<Token>) -> Command {
    Command::Heartbeat {
        lease_id: id,
        token,
        ttl_seconds: None,
    }
}

/// Release a granted lease: its token is required.
pub fn release(id: LeaseId, token: Token) -> Command {
    Command::Release {
        lease_id: id,
        token: Some(token),
    }
}

/// Give up a waiting lease: no token.
pub fn cancel(id: LeaseId) -> Command {
    Command::Release {
        lease_id: id,
        token: None,
    }
}

pub fn revoke(id: LeaseId) -> Command {
    Command::Revoke {
        lease_id: id,
        reason: "operator: stuck job".into(),
    }
}

pub fn keep_waiting(id: LeaseId) -> Command {
    Command::KeepWaiting { lease_id: id }
}

pub fn lookup(id: LeaseId) -> Command {
    Command::Lookup { lease_id: id }
}

pub fn sweep() -> Command {
    Command::Sweep {
        table: table_name(),
    }
}

/// One registered table and the server's clock.
pub struct Table {
    pub state: TableState,
    pub now: Millis,
}

impl Table {
    pub fn new(max_compaction_deferral_seconds: u32) -> Table {
        let (state, _) = rules::put_table(
            None,
            table_name(),
            settings(max_compaction_deferral_seconds),
            START,
        );
        Table { state, now: START }
    }

    pub fn advance_ms(&mut self, ms: i64) {
        self.now = Millis(self.now.0 + ms);
    }

    pub fn advance_secs(&mut self, secs: i64) {
        self.advance_ms(secs * 1000);
    }

    /// Seconds since the table was created, for readable assertions.
    pub fn at_secs(&mut self, secs: i64) {
        let target = Millis(START.0 + secs * 1000);
        assert!(target >= self.now, "the clock never goes back");
        self.now = target;
    }

    pub fn run(&mut self, command: &Command) -> Outcome {
        rules::apply(&mut self.state, command, self.now)
    }

    pub fn put_settings(&mut self, settings: TableSettings) -> Outcome {
        let (state, outcome) =
            rules::put_table(Some(self.state.clone()), table_name(), settings, self.now);
        self.state = state;
        outcome
    }

    pub fn lease(&self, id: LeaseId) -> &Lease {
        self.state
            .find(id)
            .unwrap_or_else(|| panic!("lease {id} is not in the table state"))
    }

    pub fn lease_state(&self, id: LeaseId) -> LeaseState {
        self.lease(id).state
    }

    pub fn token(&self, id: LeaseId) -> Token {
        self.lease(id)
            .token
            .unwrap_or_else(|| panic!("lease {id} has no token"))
    }

    /// Acquire and insist that the lease is granted at once; its token.
    pub fn granted(&mut self, id: LeaseId, mode: Mode, ttl_seconds: u32) -> Token {
        let outcome = self.run(&acquire(id, mode, ttl_seconds));
        let lease = answered_lease(&outcome);
        assert_eq!(lease.state, LeaseState::Granted, "{id} should be granted");
        lease.token.expect("a granted lease has a token")
    }

    /// Acquire and insist that the lease has to wait; its queue position.
    pub fn queued(&mut self, id: LeaseId, mode: Mode, ttl_seconds: u32) -> u32 {
        let outcome = self.run(&acquire(id, mode, ttl_seconds));
        match outcome.result {
            Ok(Reply::Lease {
                lease,
                position: Some(position),
                ..
            }) if lease.state == LeaseState::Waiting => position,
            other => panic!("{id} should be waiting, got {other:?}"),
        }
    }
}

/// The lease a successful command answered.
pub fn answered_lease(outcome: &Outcome) -> &Lease {
    match &outcome.result {
        Ok(Reply::Lease { lease, .. }) => lease,
        other => panic!("expected a lease answer, got {other:?}"),
    }
}

pub fn was_replayed(outcome: &Outcome) -> bool {
    match &outcome.result {
        Ok(Reply::Lease { replayed, .. }) => *replayed,
        other => panic!("expected a lease answer, got {other:?}"),
    }
}

/// The stable error type of a refused command.
pub fn error_kind(outcome: &Outcome) -> &'static str {
    match &outcome.result {
        Err(e) => e.kind(),
        Ok(reply) => panic!("expected an error, got {reply:?}"),
    }
}

/// The events of an outcome, as (kind, lease) pairs.
pub fn events(outcome: &Outcome) -> Vec<(EventKind, Option<LeaseId>)> {
    outcome
        .events
        .iter()
        .map(|e| (e.kind, e.lease_id))
        .collect()
}

// --- Streams ----------------------------------------------------------------

pub fn stream_name() -> StreamName {
    StreamName::parse("sales.orders_cdc").expect("a valid stream name")
}

pub fn batch_id(n: u128) -> BatchId {
    BatchId(uuid::Uuid::from_u128(n))
}

pub fn stream_settings(expected_schema_hash: Option<&str>) -> StreamSettings {
    StreamSettings {
        table: table_name(),
        source: serde_json::json!({ "kind": "dms", "endpoint": "orders-db" }),
        expected_schema_hash: expected_schema_hash.map(str::to_owned),
    }
}

/// A DMS-style change-data position.
pub fn position(file: &str, commit_timestamp: &str) -> Position {
    Position {
        file: Some(file.into()),
        commit_timestamp: Some(commit_timestamp.into()),
        position: None,
    }
}

/// A full-load commit: the files done so far, in-order loading's high water
/// mark being the last of them.
pub fn load_commit(
    files_done: &[&str],
    cdc_start: Option<Position>,
    load_complete: bool,
) -> Commit {
    let files_done: Vec<String> = files_done.iter().map(|f| (*f).to_owned()).collect();
    Commit {
        bookmark: BookmarkUpdate::Load(LoadProgress {
            high_water: files_done.iter().max().cloned(),
            files_done,
            cdc_start,
        }),
        load_complete,
        counts: Counts {
            inserted: 10,
            ..Counts::default()
        },
        snapshot_id: Some(1),
        schema_hash: None,
    }
}

pub fn delta_commit(position: Position) -> Commit {
    Commit {
        bookmark: BookmarkUpdate::Delta(position),
        load_complete: false,
        counts: Counts {
            updated: 3,
            ..Counts::default()
        },
        snapshot_id: Some(2),
        schema_hash: None,
    }
}

/// One registered stream and the server's clock.
#[derive(Clone)]
pub struct Stream {
    pub state: StreamState,
    pub now: Millis,
    next_batch: u128,
}

impl Stream {
    pub fn new() -> Stream {
        let (state, outcome) =
            rules::put_stream(None, stream_name(), stream_settings(None), None, START);
        assert!(outcome.result.is_ok(), "{outcome:?}");
        Stream {
            state,
            now: START,
            next_batch: 1,
        }
    }

    pub fn advance_ms(&mut self, ms: i64) {
        self.now = Millis(self.now.0 + ms);
    }

    pub fn advance_secs(&mut self, secs: i64) {
        self.advance_ms(secs * 1000);
    }

    pub fn run(&mut self, command: &StreamCommand) -> StreamOutcome {
        rules::apply_stream(&mut self.state, command, Some("test"), self.now)
    }

    /// Open with a fresh batch id, as the API does for every request.
    pub fn open(&mut self, run_id: &str, ttl_seconds: u32) -> StreamOutcome {
        let id = batch_id(self.next_batch);
        self.next_batch += 1;
        self.run(&StreamCommand::Open {
            stream: stream_name(),
            batch_id: id,
            run_id: run_id.into(),
            ttl_seconds,
            if_match: None,
        })
    }

    /// Open and insist on a new batch: the batch and where it resumes.
    pub fn opened(&mut self, run_id: &str, ttl_seconds: u32) -> (Batch, Bookmark) {
        let outcome = self.open(run_id, ttl_seconds);
        match outcome.result {
            Ok(StreamReply::Batch {
                batch,
                bookmark: Some(bookmark),
                replayed: false,
            }) => (batch, bookmark),
            other => panic!("{run_id} should open a new batch, got {other:?}"),
        }
    }

    pub fn heartbeat(&mut self, batch: &Batch) -> StreamOutcome {
        self.run(&StreamCommand::Heartbeat {
            stream: stream_name(),
            batch_id: batch.id,
            token: batch.token,
            ttl_seconds: None,
        })
    }

    pub fn commit(&mut self, batch: &Batch, commit: Commit) -> StreamOutcome {
        self.run(&StreamCommand::Commit {
            stream: stream_name(),
            batch_id: batch.id,
            token: batch.token,
            commit,
            if_match: None,
        })
    }

    /// Commit and insist that it is accepted: the version it produced.
    pub fn committed(&mut self, batch: &Batch, commit: Commit) -> Bookmark {
        match self.commit(batch, commit).result {
            Ok(StreamReply::Batch {
                bookmark: Some(bookmark),
                replayed: false,
                ..
            }) => bookmark,
            other => panic!("batch {} should commit, got {other:?}", batch.id),
        }
    }

    pub fn fail(&mut self, batch: &Batch) -> StreamOutcome {
        self.run(&StreamCommand::Fail {
            stream: stream_name(),
            batch_id: batch.id,
            token: batch.token,
            reason: Some("source unreachable".into()),
        })
    }

    pub fn rewind(&mut self, to: RewindTo) -> StreamOutcome {
        self.run(&StreamCommand::Rewind {
            stream: stream_name(),
            to,
            reason: "replay from the last good version".into(),
            if_match: None,
        })
    }

    pub fn reset(&mut self) -> StreamOutcome {
        self.run(&StreamCommand::Reset {
            stream: stream_name(),
            reason: "source re-created".into(),
            if_match: None,
        })
    }

    pub fn batch(&self, id: BatchId) -> &Batch {
        self.state
            .batch(id)
            .unwrap_or_else(|| panic!("batch {id} is not in the stream state"))
    }
}

/// The stable error type of a refused stream command.
pub fn stream_error_kind(outcome: &StreamOutcome) -> &'static str {
    match &outcome.result {
        Err(e) => e.kind(),
        Ok(reply) => panic!("expected an error, got {reply:?}"),
    }
}

/// The batch answer of a successful stream command: (batch, bookmark, replayed).
pub fn answered_batch(outcome: &StreamOutcome) -> (&Batch, Option<&Bookmark>, bool) {
    match &outcome.result {
        Ok(StreamReply::Batch {
            batch,
            bookmark,
            replayed,
        }) => (batch, bookmark.as_ref(), *replayed),
        other => panic!("expected a batch answer, got {other:?}"),
    }
}

/// The bookmark a rewind or reset answered.
pub fn answered_bookmark(outcome: &StreamOutcome) -> &Bookmark {
    match &outcome.result {
        Ok(StreamReply::Bookmark(bookmark)) => bookmark,
        other => panic!("expected a bookmark answer, got {other:?}"),
    }
}

/// The events of a stream outcome, as (kind, batch) pairs.
pub fn stream_events(outcome: &StreamOutcome) -> Vec<(EventKind, Option<BatchId>)> {
    outcome
        .events
        .iter()
        .map(|e| (e.kind, event_batch(&e.data)))
        .collect()
}

/// The batch an event's data names, if any.
pub fn event_batch(data: &serde_json::Value) -> Option<BatchId> {
    data["batch_id"]
        .as_str()
        .map(|s| s.parse().expect("a batch id"))
}
