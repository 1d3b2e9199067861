//! Property tests of the stream rules: random command sequences from three
//! ingestion workers and an operator against one stream.
//!
//! Between transactions the harness does what the store does: it keeps the
//! stream's rows (every batch, every bookmark version ever written), loads
//! only the header, the open batch, the batches the commands name and the
//! versions their rewinds target, applies a transaction's commands in order
//! at one instant, and writes back the batches that changed and the versions
//! appended. After every command it checks:
//!
//! - the answer and the rows are exactly what the contract prescribes for
//!   the stream as the command saw it (an expired batch settled first), and
//!   a refused command changes nothing beyond that settling;
//! - at most one batch is open, never past its expiry; tokens count up by
//!   one per batch and are never reused;
//! - the bookmark moves one version per accepted commit, rewind or reset and
//!   never otherwise; the history is 1..=current and append-only;
//! - committed and failed batches never change again;
//! - each new version follows from the one before: a batch only moves its
//!   phase's section forward (and load -> delta at cdc_start), a rewind
//!   copies its target, a reset starts an empty load.

use crate::any_command::{self as streams, StreamCommand, StreamOutcome, StreamReply};
use crate::support::{batch_id, proptest_config, stream_name, stream_settings, Coverage, START};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use sluice_core::streams::{
    Batch, BatchId, BatchState, Bookmark, BookmarkVersion, Cause, Counts, LoadProgress, Phase,
    Position, StreamState, EXPIRED,
};
use sluice_core::streams::{BookmarkUpdate, Commit, RewindTo};
use sluice_core::{EventKind, Millis, RuleError};
use std::collections::{BTreeMap, BTreeSet};

const WORKERS: usize = 3;
/// The principal of the ingestion jobs.
const RUNNER: &str = "svc-ingest";
/// The principal of rewinds, resets and settings.
const OPERATOR: &str = "ops";

// ---------------------------------------------------------------------------
// What to do: operations, resolved against the rows when a transaction starts
// (clients compose their requests from what they last heard).
// ---------------------------------------------------------------------------

/// Which worker makes a batch call.
#[derive(Debug, Clone)]
enum Who {
    /// The worker whose run holds the open batch (falls back to worker 0):
    /// the one making progress.
    Holder,
    Worker(usize),
}

/// Which batch a worker's call names.
#[derive(Debug, Clone)]
enum BatchPick {
    /// The batch the worker last opened (falls back to `Any`).
    Mine,
    /// Any batch ever opened (falls back to `Unknown`).
    Any(Index),
    /// An id no batch has.
    Unknown,
}

#[derive(Debug, Clone)]
enum TokenChoice {
    /// The named batch's token.
    Right,
    /// Another batch's token.
    Stale(Index),
    /// The next token the stream will issue.
    Wrong,
}

#[derive(Debug, Clone)]
enum IfMatch {
    Absent,
    Current,
    Behind(i64),
    Ahead,
}

/// What a load commit says about cdc_start.
#[derive(Debug, Clone)]
enum Cdc {
    /// The captured one (or, none being captured yet, a new capture).
    Keep,
    Omit,
    /// A new capture, which changes the captured one if there is one.
    Other,
}

/// The bookmark a commit reports, relative to the current one.
#[derive(Debug, Clone)]
enum Shape {
    Forward {
        new_files: usize,
        repeat_file: bool,
        high_water: bool,
        cdc: Cdc,
        steps: u64,
    },
    /// One of the ways back that apply to the current bookmark.
    Back(Index),
    /// The other phase's section.
    OtherSection,
}

#[derive(Debug, Clone)]
enum Schema {
    /// The hash the stream expects (none if it expects none).
    Expected,
    Wrong,
    Absent,
}

#[derive(Debug, Clone)]
struct CommitShape {
    shape: Shape,
    load_complete: bool,
    if_match: IfMatch,
    schema: Schema,
    snapshot_id: Option<i64>,
}

#[derive(Debug, Clone)]
enum Target {
    /// An existing version.
    Version(Index),
    /// Version 0 or one past the current: none such.
    Missing(bool),
    /// The instant a version was written, plus an offset (-1 or 0 ms).
    At(Index, i64),
    /// Anywhere from 1 s before the stream existed to 1 s after now.
    Between(Index),
}

#[derive(Debug, Clone)]
enum Op {
    Open {
        worker: usize,
        ttl_seconds: u32,
        /// The worker restarted: a new run id.
        restart: bool,
        if_match: IfMatch,
    },
    Heartbeat {
        who: Who,
        pick: BatchPick,
        token: TokenChoice,
        ttl_seconds: Option<u32>,
    },
    Commit {
        who: Who,
        pick: BatchPick,
        token: TokenChoice,
        commit: CommitShape,
    },
    Fail {
        who: Who,
        pick: BatchPick,
        token: TokenChoice,
        reason: bool,
    },
    /// Send one of the commits sent before again, unchanged (its answer
    /// was lost).
    RetryCommit {
        pick: Index,
    },
    Rewind {
        target: Target,
        if_match: IfMatch,
    },
    Reset {
        if_match: IfMatch,
    },
    Put {
        expected_schema_hash: Option<u8>,
    },
}

#[derive(Debug, Clone)]
enum Advance {
    By(i64),
    /// To the open batch's expiry plus this offset (-1 or 0 ms).
    ToExpiry(i64),
}

/// One transaction: its commands arrive in the same group commit.
#[derive(Debug, Clone)]
struct Step {
    advance: Advance,
    ops: Vec<Op>,
}

#[derive(Debug, Clone)]
struct Scenario {
    /// DMS positions (file and commit timestamp) or opaque ones.
    dms: bool,
    steps: Vec<Step>,
}

/// Mostly long enough for a few calls, sometimes about to run out.
fn ttl() -> impl Strategy<Value = u32> {
    prop_oneof![5 => 10u32..=60, 1 => 1u32..=5]
}

fn worker() -> impl Strategy<Value = usize> {
    0..WORKERS
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        7 => Just(Who::Holder),
        3 => worker().prop_map(Who::Worker),
    ]
}

fn pick() -> impl Strategy<Value = BatchPick> {
    prop_oneof![
        12 => Just(BatchPick::Mine),
        2 => any::<Index>().prop_map(BatchPick::Any),
        1 => Just(BatchPick::Unknown),
    ]
}

fn token_choice() -> impl Strategy<Value = TokenChoice> {
    prop_oneof![
        12 => Just(TokenChoice::Right),
        1 => any::<Index>().prop_map(TokenChoice::Stale),
        1 => Just(TokenChoice::Wrong),
    ]
}

fn if_match() -> impl Strategy<Value = IfMatch> {
    prop_oneof![
        8 => Just(IfMatch::Absent),
        4 => Just(IfMatch::Current),
        1 => (1i64..=3).prop_map(IfMatch::Behind),
        1 => Just(IfMatch::Ahead),
    ]
}

fn cdc() -> impl Strategy<Value = Cdc> {
    prop_oneof![5 => Just(Cdc::Keep), 3 => Just(Cdc::Omit), 1 => Just(Cdc::Other)]
}

fn shape() -> impl Strategy<Value = Shape> {
    let forward = (
        0usize..=3,
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.7),
        cdc(),
        1u64..=5,
    )
        .prop_map(
            |(new_files, repeat_file, high_water, cdc, steps)| Shape::Forward {
                new_files,
                repeat_file,
                high_water,
                cdc,
                steps,
            },
        );
    prop_oneof![
        12 => forward,
        2 => any::<Index>().prop_map(Shape::Back),
        1 => Just(Shape::OtherSection),
    ]
}

fn schema() -> impl Strategy<Value = Schema> {
    prop_oneof![8 => Just(Schema::Expected), 1 => Just(Schema::Wrong), 1 => Just(Schema::Absent)]
}

fn commit_shape() -> impl Strategy<Value = CommitShape> {
    (
        shape(),
        prop::bool::weighted(0.2),
        if_match(),
        schema(),
        prop::option::of(1i64..1_000),
    )
        .prop_map(
            |(shape, load_complete, if_match, schema, snapshot_id)| CommitShape {
                shape,
                load_complete,
                if_match,
                schema,
                snapshot_id,
            },
        )
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        3 => any::<Index>().prop_map(Target::Version),
        1 => any::<bool>().prop_map(Target::Missing),
        3 => (any::<Index>(), prop_oneof![Just(-1i64), Just(0i64)])
            .prop_map(|(i, offset)| Target::At(i, offset)),
        2 => any::<Index>().prop_map(Target::Between),
    ]
}

fn open_op() -> impl Strategy<Value = Op> {
    (worker(), ttl(), prop::bool::weighted(0.1), if_match()).prop_map(
        |(worker, ttl_seconds, restart, if_match)| Op::Open {
            worker,
            ttl_seconds,
            restart,
            if_match,
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    let heartbeat = (who(), pick(), token_choice(), prop::option::of(ttl())).prop_map(
        |(who, pick, token, ttl_seconds)| Op::Heartbeat {
            who,
            pick,
            token,
            ttl_seconds,
        },
    );
    let commit =
        (who(), pick(), token_choice(), commit_shape()).prop_map(|(who, pick, token, commit)| {
            Op::Commit {
                who,
                pick,
                token,
                commit,
            }
        });
    let fail =
        (who(), pick(), token_choice(), any::<bool>()).prop_map(|(who, pick, token, reason)| {
            Op::Fail {
                who,
                pick,
                token,
                reason,
            }
        });
    prop_oneof![
        16 => open_op(),
        6 => heartbeat,
        20 => commit,
        2 => fail,
        3 => any::<Index>().prop_map(|pick| Op::RetryCommit { pick }),
        2 => (target(), if_match()).prop_map(|(target, if_match)| Op::Rewind { target, if_match }),
        1 => if_match().prop_map(|if_match| Op::Reset { if_match }),
        1 => prop::option::of(0u8..2)
            .prop_map(|expected_schema_hash| Op::Put { expected_schema_hash }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let advance = prop_oneof![
        4 => Just(Advance::By(0)),
        8 => (1i64..2_000).prop_map(Advance::By),
        4 => (2_000i64..15_000).prop_map(Advance::By),
        1 => (15_000i64..90_000).prop_map(Advance::By),
        2 => prop_oneof![Just(-1i64), Just(0i64)].prop_map(Advance::ToExpiry),
    ];
    let ops = prop_oneof![
        8 => prop::collection::vec(op(), 1..=1),
        2 => prop::collection::vec(op(), 2..=3),
    ];
    (advance, ops).prop_map(|(advance, ops)| Step { advance, ops })
}

/// A scenario starts with an open, so that batch calls have a batch to name.
fn scenario() -> impl Strategy<Value = Scenario> {
    let first = open_op().prop_map(|op| Step {
        advance: Advance::By(0),
        ops: vec![op],
    });
    (any::<bool>(), first, prop::collection::vec(step(), 0..=80)).prop_map(|(dms, first, rest)| {
        Scenario {
            dms,
            steps: std::iter::once(first).chain(rest).collect(),
        }
    })
}

// ---------------------------------------------------------------------------
// The store, as far as the rules can tell: what it loads and writes back.
// ---------------------------------------------------------------------------

/// The version a rewind restores, as the store selects it from the history.
fn rewind_target(history: &[BookmarkVersion], to: RewindTo) -> Option<&BookmarkVersion> {
    match to {
        RewindTo::Version(v) => history.iter().find(|e| e.bookmark.version == v),
        RewindTo::Time(t) => history
            .iter()
            .filter(|e| e.bookmark.updated_at <= t)
            .max_by_key(|e| e.bookmark.version),
    }
}

/// What the store loads for a transaction: the header, the open batch, the
/// batches the commands name and the versions their rewinds target.
fn load(rows: &StreamState, commands: &[(StreamCommand, &str)]) -> StreamState {
    let named: BTreeSet<BatchId> = commands.iter().filter_map(|(c, _)| c.batch_id()).collect();
    let mut state = rows.clone();
    state.batches = (rows.batches.iter())
        .filter(|b| b.is_open() || named.contains(&b.id))
        .cloned()
        .collect();
    state.versions = Vec::new();
    for (command, _) in commands {
        if let StreamCommand::Rewind { to, .. } = command {
            if let Some(target) = rewind_target(&rows.versions, *to) {
                let version = target.bookmark.version;
                if !state.versions.iter().any(|v| v.bookmark.version == version) {
                    state.versions.push(target.clone());
                }
            }
        }
    }
    state
}

/// The rows once `working` (the loaded state as the rules left it) is
/// written back as the store writes: changed batches upserted, versions
/// past the loaded ones appended, the header replaced.
fn write_back(
    rows: &StreamState,
    loaded: &StreamState,
    working: &StreamState,
) -> Result<StreamState, TestCaseError> {
    for b in &loaded.batches {
        prop_assert!(
            working.batch(b.id).is_some(),
            "the rules dropped batch {}",
            b.id
        );
    }
    let n = loaded.versions.len();
    prop_assert!(
        working.versions.len() >= n && working.versions[..n] == loaded.versions[..],
        "the rules changed a loaded version (the store only appends)"
    );
    let mut full = working.clone();
    full.batches = (rows.batches.iter())
        .map(|b| working.batch(b.id).unwrap_or(b).clone())
        .collect();
    full.batches.extend(
        (working.batches.iter())
            .filter(|b| rows.batch(b.id).is_none())
            .cloned(),
    );
    full.versions = rows.versions.clone();
    full.versions.extend(working.versions[n..].iter().cloned());
    Ok(full)
}

// ---------------------------------------------------------------------------
// The harness.
// ---------------------------------------------------------------------------

/// The situations the generator must reach for the property to mean much.
const SITUATIONS: [&str; 28] = [
    "commits",
    "commits completing the load",
    "completions without cdc_start",
    "delta commits",
    "commit replays",
    "different commits of a committed batch refused",
    "open replays",
    "batch_open refusals",
    "expiries",
    "opens after an expiry",
    "late calls of an expired batch",
    "stale tokens refused",
    "unknown batches refused",
    "regressions refused",
    "cdc_start changes refused",
    "phase mismatches refused",
    "version mismatches refused",
    "schema mismatches refused",
    "heartbeats",
    "fails",
    "rewinds",
    "rewinds by time",
    "rewinds back to load",
    "rewinds refused under an open batch",
    "missing rewind targets refused",
    "resets",
    "transactions of several commands",
    "transactions at an expiry instant",
];

struct Worker {
    run_id: String,
    restarts: u32,
    /// The batch its last open answered.
    batch: Option<BatchId>,
}

struct Harness {
    dms: bool,
    /// The stream's rows: every batch, every version ever written.
    rows: StreamState,
    now: Millis,
    workers: Vec<Worker>,
    next_batch: u128,
    /// Source of positions and file names; it only grows, so a new one is
    /// ahead of every earlier one.
    next_seq: u64,
    /// Every finished batch as it was first seen finished.
    finished: BTreeMap<BatchId, Batch>,
    /// Every commit sent, for retries.
    sent_commits: Vec<StreamCommand>,
    coverage: Coverage,
}

/// Everything about one command, for the checks.
struct Record<'a> {
    now: Millis,
    command: &'a StreamCommand,
    actor: &'a str,
    /// The rows before the command.
    before: StreamState,
    /// `before` as the command sees it: settled, unless it is a put.
    seen: StreamState,
    /// The batch settling expired, if any.
    settled: Option<BatchId>,
    outcome: StreamOutcome,
    /// The rows after the command.
    after: StreamState,
}

fn with_context(error: TestCaseError, context: String) -> TestCaseError {
    match error {
        TestCaseError::Fail(reason) => {
            TestCaseError::fail(format!("{context}\n  {}", reason.message()))
        }
        reject => reject,
    }
}

fn unknown_batch() -> BatchId {
    batch_id(u128::MAX)
}

fn expected_hash(k: u8) -> String {
    format!("schema-{k}")
}

impl Harness {
    fn new(dms: bool) -> Harness {
        let (state, outcome) =
            streams::put_stream(None, stream_name(), stream_settings(None), None, START);
        assert!(matches!(
            outcome.result,
            Ok(StreamReply::Stream { created: true, .. })
        ));
        let rows = state;
        assert_eq!(rows.versions.len(), 1);
        Harness {
            dms,
            rows,
            now: START,
            workers: (0..WORKERS)
                .map(|w| Worker {
                    run_id: format!("run-{w}-0"),
                    restarts: 0,
                    batch: None,
                })
                .collect(),
            next_batch: 1,
            next_seq: 1_000,
            finished: BTreeMap::new(),
            sent_commits: Vec::new(),
            coverage: Coverage::new(&SITUATIONS),
        }
    }

    fn run(&mut self, scenario: &Scenario) -> Result<(), TestCaseError> {
        for (i, step) in scenario.steps.iter().enumerate() {
            self.transaction(step)
                .map_err(|e| with_context(e, format!("step {i} ({step:?})")))?;
        }
        Ok(())
    }

    fn advance(&self, advance: &Advance) -> Millis {
        let target = match advance {
            Advance::By(ms) => self.now.0 + ms,
            Advance::ToExpiry(offset) => self
                .rows
                .open_batch()
                .map_or(self.now.0, |b| b.expires_at.0 + offset),
        };
        Millis(target.max(self.now.0))
    }

    fn fresh_seq(&mut self, steps: u64) -> u64 {
        self.next_seq += steps;
        self.next_seq
    }

    fn fresh_position(&mut self, steps: u64) -> Position {
        let n = self.fresh_seq(steps);
        if self.dms {
            Position {
                file: Some(format!("cdc/{n:010}.csv")),
                commit_timestamp: Some(format!("2024-05-01 {n:010}")),
                position: None,
            }
        } else {
            Position {
                position: Some(format!("lsn/{n:010}")),
                ..Position::default()
            }
        }
    }

    fn fresh_file(&mut self) -> String {
        let n = self.fresh_seq(1);
        format!("load/part-{n:010}.parquet")
    }

    fn resolve_batch(&self, who: &Who, pick: &BatchPick) -> BatchId {
        let worker = match who {
            Who::Worker(w) => *w,
            Who::Holder => self
                .rows
                .open_batch()
                .and_then(|open| self.workers.iter().position(|w| w.run_id == open.run_id))
                .unwrap_or(0),
        };
        let batches = &self.rows.batches;
        let any = |i: Option<&Index>| match i {
            Some(i) if !batches.is_empty() => batches[i.index(batches.len())].id,
            None if !batches.is_empty() => batches[batches.len() - 1].id,
            _ => unknown_batch(),
        };
        match pick {
            BatchPick::Mine => self.workers[worker].batch.unwrap_or_else(|| any(None)),
            BatchPick::Any(i) => any(Some(i)),
            BatchPick::Unknown => unknown_batch(),
        }
    }

    fn resolve_token(&self, id: BatchId, choice: &TokenChoice) -> i64 {
        let own = self.rows.batch(id).map(|b| b.token);
        let next = self.rows.last_token + 1;
        match choice {
            TokenChoice::Right => own.unwrap_or(next),
            TokenChoice::Wrong => next,
            TokenChoice::Stale(i) => {
                let others: Vec<i64> = (self.rows.batches.iter())
                    .map(|b| b.token)
                    .filter(|t| Some(*t) != own)
                    .collect();
                if others.is_empty() {
                    next
                } else {
                    others[i.index(others.len())]
                }
            }
        }
    }

    fn resolve_if_match(&self, choice: &IfMatch) -> Option<i64> {
        let current = self.rows.bookmark.version;
        match choice {
            IfMatch::Absent => None,
            IfMatch::Current => Some(current),
            IfMatch::Behind(k) => Some(current - k),
            IfMatch::Ahead => Some(current + 1),
        }
    }

    fn resolve_target(&self, target: &Target) -> RewindTo {
        let history = &self.rows.versions;
        match target {
            Target::Version(i) => RewindTo::Version(i.index(history.len()) as i64 + 1),
            Target::Missing(false) => RewindTo::Version(0),
            Target::Missing(true) => RewindTo::Version(history.len() as i64 + 1),
            Target::At(i, offset) => {
                let at = history[i.index(history.len())].bookmark.updated_at;
                RewindTo::Time(Millis(at.0 + offset))
            }
            Target::Between(i) => {
                let from = self.rows.created_at.0 - 1_000;
                let span = (self.now.0 + 1_000 - from + 1) as usize;
                RewindTo::Time(Millis(from + i.index(span) as i64))
            }
        }
    }

    /// The bookmark a commit reports, shaped against the current one.
    fn resolve_update(&mut self, shape: &Shape) -> BookmarkUpdate {
        let current = self.rows.bookmark.clone();
        match (current.phase, shape) {
            (
                Phase::Load,
                Shape::Forward {
                    new_files,
                    repeat_file,
                    high_water,
                    cdc,
                    ..
                },
            ) => {
                let old = &current.load;
                let mut files: Vec<String> = (0..*new_files).map(|_| self.fresh_file()).collect();
                files.extend(old.files_done.iter().rev().cloned());
                if *repeat_file {
                    files.extend(old.files_done.first().cloned());
                }
                let high_water = match (high_water, files.iter().max()) {
                    (true, Some(max)) => Some(max.clone()),
                    _ => old.high_water.clone(),
                };
                let cdc_start = match cdc {
                    Cdc::Keep if old.cdc_start.is_some() => old.cdc_start.clone(),
                    Cdc::Keep | Cdc::Other => Some(self.fresh_position(1)),
                    Cdc::Omit => None,
                };
                BookmarkUpdate::Load(LoadProgress {
                    files_done: files,
                    high_water,
                    cdc_start,
                })
            }
            (Phase::Load, Shape::Back(i)) => {
                let old = current.load.clone();
                let mut ways: Vec<LoadProgress> = Vec::new();
                if !old.files_done.is_empty() {
                    let mut dropped = old.clone();
                    dropped.files_done.remove(i.index(old.files_done.len()));
                    ways.push(dropped);
                }
                if let Some(hw) = &old.high_water {
                    let mut lower = old.clone();
                    lower.high_water = Some(hw[..hw.len() - 1].to_owned());
                    ways.push(lower);
                    ways.push(LoadProgress {
                        high_water: None,
                        ..old.clone()
                    });
                }
                if old.cdc_start.is_some() {
                    ways.push(LoadProgress {
                        cdc_start: Some(self.fresh_position(1)),
                        ..old.clone()
                    });
                }
                let way = if ways.is_empty() {
                    old
                } else {
                    ways.swap_remove(i.index(ways.len()))
                };
                BookmarkUpdate::Load(way)
            }
            (Phase::Load, Shape::OtherSection) => BookmarkUpdate::Delta(self.fresh_position(1)),
            (Phase::Delta, Shape::Forward { steps, .. }) => {
                BookmarkUpdate::Delta(self.fresh_position(*steps))
            }
            (Phase::Delta, Shape::Back(i)) => {
                let old = current.delta.clone().unwrap_or_default();
                let back = |s: &String| s[..s.len() - 1].to_owned();
                let mut ways = Vec::new();
                if let Some(file) = &old.file {
                    ways.push(Position {
                        file: Some(back(file)),
                        ..old.clone()
                    });
                }
                if let Some(ts) = &old.commit_timestamp {
                    ways.push(Position {
                        commit_timestamp: Some(back(ts)),
                        ..old.clone()
                    });
                }
                let way = if ways.is_empty() {
                    old
                } else {
                    ways.swap_remove(i.index(ways.len()))
                };
                BookmarkUpdate::Delta(way)
            }
            (Phase::Delta, Shape::OtherSection) => {
                let mut load = current.load.clone();
                load.files_done.push(self.fresh_file());
                BookmarkUpdate::Load(load)
            }
        }
    }

    fn resolve(&mut self, op: &Op) -> (StreamCommand, &'static str) {
        let stream = stream_name();
        match op {
            Op::Open {
                worker,
                ttl_seconds,
                restart,
                if_match,
            } => {
                if *restart {
                    let w = &mut self.workers[*worker];
                    w.restarts += 1;
                    w.run_id = format!("run-{worker}-{}", w.restarts);
                    w.batch = None;
                }
                let id = batch_id(self.next_batch);
                self.next_batch += 1;
                let command = StreamCommand::Open {
                    stream,
                    batch_id: id,
                    run_id: self.workers[*worker].run_id.clone(),
                    ttl_seconds: *ttl_seconds,
                    if_match: self.resolve_if_match(if_match),
                };
                (command, RUNNER)
            }
            Op::Heartbeat {
                who,
                pick,
                token,
                ttl_seconds,
            } => {
                let id = self.resolve_batch(who, pick);
                let command = StreamCommand::Heartbeat {
                    stream,
                    batch_id: id,
                    token: self.resolve_token(id, token),
                    ttl_seconds: *ttl_seconds,
                };
                (command, RUNNER)
            }
            Op::Commit {
                who,
                pick,
                token,
                commit,
            } => {
                let id = self.resolve_batch(who, pick);
                let token = self.resolve_token(id, token);
                let schema_hash = match commit.schema {
                    Schema::Expected => self.rows.settings.expected_schema_hash.clone(),
                    Schema::Wrong => Some("schema-unexpected".into()),
                    Schema::Absent => None,
                };
                let n = self.fresh_seq(1) as i64;
                let command = StreamCommand::Commit {
                    stream,
                    batch_id: id,
                    token,
                    commit: Commit {
                        bookmark: self.resolve_update(&commit.shape),
                        load_complete: commit.load_complete,
                        counts: Counts {
                            inserted: n % 7,
                            updated: n % 5,
                            deleted: n % 3,
                        },
                        snapshot_id: commit.snapshot_id,
                        schema_hash,
                    },
                    if_match: self.resolve_if_match(&commit.if_match),
                };
                self.sent_commits.push(command.clone());
                (command, RUNNER)
            }
            Op::RetryCommit { pick } => match self.sent_commits.len() {
                0 => self.resolve(&Op::Open {
                    worker: 0,
                    ttl_seconds: 10,
                    restart: false,
                    if_match: IfMatch::Absent,
                }),
                n => (self.sent_commits[pick.index(n)].clone(), RUNNER),
            },
            Op::Fail {
                who,
                pick,
                token,
                reason,
            } => {
                let id = self.resolve_batch(who, pick);
                let command = StreamCommand::Fail {
                    stream,
                    batch_id: id,
                    token: self.resolve_token(id, token),
                    reason: reason.then(|| "source unreachable".into()),
                };
                (command, RUNNER)
            }
            Op::Rewind { target, if_match } => {
                let command = StreamCommand::Rewind {
                    stream,
                    to: self.resolve_target(target),
                    reason: "replay a bad day".into(),
                    if_match: self.resolve_if_match(if_match),
                };
                (command, OPERATOR)
            }
            Op::Reset { if_match } => {
                let command = StreamCommand::Reset {
                    stream,
                    reason: "source re-created".into(),
                    if_match: self.resolve_if_match(if_match),
                };
                (command, OPERATOR)
            }
            Op::Put {
                expected_schema_hash,
            } => {
                let hash = expected_schema_hash.map(expected_hash);
                let command = StreamCommand::Put {
                    stream,
                    settings: stream_settings(hash.as_deref()),
                };
                (command, OPERATOR)
            }
        }
    }

    /// One group commit: load, apply in arrival order at one instant,
    /// write back.
    fn transaction(&mut self, step: &Step) -> Result<(), TestCaseError> {
        self.now = self.advance(&step.advance);
        let now = self.now;
        if self.rows.open_batch().is_some_and(|b| b.expires_at == now) {
            self.coverage.saw("transactions at an expiry instant");
        }
        if step.ops.len() > 1 {
            self.coverage.saw("transactions of several commands");
        }
        let commands: Vec<(StreamCommand, &str)> =
            step.ops.iter().map(|op| self.resolve(op)).collect();
        let loaded = load(&self.rows, &commands);
        let mut working = loaded.clone();
        for (i, (command, actor)) in commands.iter().enumerate() {
            let before = write_back(&self.rows, &loaded, &working)?;
            let outcome = match command {
                StreamCommand::Put { stream, settings } => {
                    let (state, outcome) = streams::put_stream(
                        Some(working.clone()),
                        stream.clone(),
                        settings.clone(),
                        Some(actor),
                        now,
                    );
                    working = state;
                    outcome
                }
                command => streams::apply_stream(&mut working, command, Some(actor), now),
            };
            let after = write_back(&self.rows, &loaded, &working)?;
            let (seen, settled) = match command {
                StreamCommand::Put { .. } => (before.clone(), None),
                _ => settle(&before, now),
            };
            let record = Record {
                now,
                command,
                actor,
                before,
                seen,
                settled,
                outcome,
                after,
            };
            self.check(&record).map_err(|e| {
                let context = format!(
                    "command {i}: {command:?} at {now:?}\n  -> {:?}\n  events: {:?}",
                    record.outcome.result,
                    record
                        .outcome
                        .events
                        .iter()
                        .map(|e| e.kind)
                        .collect::<Vec<_>>()
                );
                with_context(e, context)
            })?;
            self.learn(command, &record.outcome);
        }
        self.rows = write_back(&self.rows, &loaded, &working)?;
        Ok(())
    }

    /// A worker remembers the batch an open answered.
    fn learn(&mut self, command: &StreamCommand, outcome: &StreamOutcome) {
        if let (StreamCommand::Open { run_id, .. }, Ok(StreamReply::Batch { batch, .. })) =
            (command, &outcome.result)
        {
            for w in &mut self.workers {
                if &w.run_id == run_id {
                    w.batch = Some(batch.id);
                }
            }
        }
    }

    fn check(&mut self, r: &Record) -> Result<(), TestCaseError> {
        // A version, from the history written so far or this transaction's.
        let version = |v: i64| {
            (self.rows.versions.iter())
                .chain(&r.seen.versions)
                .find(|e| e.bookmark.version == v)
                .map(|e| e.bookmark.clone())
        };
        let expected = expected_answer(r.command, &r.seen, r.now, &version);
        check_answer(&expected, r)?;
        self.check_invariants(r)?;
        check_new_versions(r)?;
        self.observe(&expected, r);
        Ok(())
    }

    /// The invariants, stated on their own rather than through the contract.
    fn check_invariants(&mut self, r: &Record) -> Result<(), TestCaseError> {
        let Record {
            now,
            command,
            before,
            outcome,
            after,
            ..
        } = r;
        let now = *now;

        // One open batch at most, and never past its expiry once a batch
        // command has run (a put leaves the batches alone; the next batch
        // command settles them).
        let put = matches!(command, StreamCommand::Put { .. });
        let open: Vec<&Batch> = after.batches.iter().filter(|b| b.is_open()).collect();
        prop_assert!(open.len() <= 1, "two batches open: {open:?}");
        for b in &open {
            prop_assert!(
                put || now < b.expires_at,
                "batch {} is open past expiry",
                b.id
            );
        }
        for b in &before.batches {
            if b.is_open() && b.expires_at <= now && !put {
                let b = after.batch(b.id).expect("no batch vanishes");
                prop_assert_eq!(b.state, BatchState::Failed, "a due batch was not settled");
                prop_assert_eq!(b.end_reason.as_deref(), Some(EXPIRED));
            }
        }

        // Tokens: batch n (in opening order) holds token n, so every new
        // token is the previous maximum plus one and none is reused.
        let tokens: Vec<i64> = after.batches.iter().map(|b| b.token).collect();
        prop_assert_eq!(tokens, (1..=after.last_token).collect::<Vec<_>>());
        let ids: BTreeSet<BatchId> = after.batches.iter().map(|b| b.id).collect();
        prop_assert_eq!(ids.len(), after.batches.len(), "a batch id is stored twice");
        for old in &before.batches {
            let new = after.batch(old.id).expect("no batch vanishes");
            prop_assert_eq!(
                (&new.run_id, new.token, new.base_version, new.opened_at),
                (&old.run_id, old.token, old.base_version, old.opened_at),
                "a batch's identity changed"
            );
        }

        // Finished batches never change: not reopened, not recommitted.
        for b in &after.batches {
            match self.finished.get(&b.id) {
                Some(was) => prop_assert_eq!(was, b, "a finished batch changed"),
                None if !b.is_open() => {
                    self.finished.insert(b.id, b.clone());
                }
                None => {}
            }
        }

        // The history: versions 1..=current, append-only, the last one the
        // bookmark.
        let n = before.versions.len();
        prop_assert_eq!(
            &after.versions[..n],
            &before.versions[..],
            "history rewritten"
        );
        for (i, v) in after.versions.iter().enumerate() {
            prop_assert_eq!(v.bookmark.version, i as i64 + 1, "a gap or a duplicate");
            prop_assert_eq!(&v.stream, &after.name);
        }
        let last = after.versions.last().expect("version 1 at least");
        prop_assert_eq!(&last.bookmark, &after.bookmark);

        // One version per accepted commit, rewind or reset; none otherwise.
        let writes = match (command, &outcome.result) {
            (StreamCommand::Commit { .. }, Ok(StreamReply::Batch { replayed, .. })) => !replayed,
            (StreamCommand::Rewind { .. } | StreamCommand::Reset { .. }, Ok(_)) => true,
            _ => false,
        };
        let moved = after.bookmark.version - before.bookmark.version;
        prop_assert_eq!(moved, i64::from(writes), "versions written");
        if !writes {
            prop_assert_eq!(&after.bookmark, &before.bookmark, "the bookmark moved");
        }

        // The sections match the phase.
        match after.bookmark.phase {
            Phase::Load => prop_assert!(after.bookmark.delta.is_none()),
            Phase::Delta => prop_assert!(after.bookmark.delta.is_some()),
        }
        if before.bookmark.phase == Phase::Delta && after.bookmark.phase == Phase::Load {
            prop_assert!(
                matches!(
                    command,
                    StreamCommand::Rewind { .. } | StreamCommand::Reset { .. }
                ),
                "only a rewind or a reset goes back to load"
            );
        }

        let unexpired_open = (before.batches.iter()).find(|b| b.is_open() && now < b.expires_at);
        match (command, &outcome.result) {
            // A commit lands only with the batch's token, while it is open
            // and unexpired, on the version it started from.
            (
                StreamCommand::Commit {
                    batch_id, token, ..
                },
                Ok(StreamReply::Batch {
                    batch,
                    bookmark,
                    replayed,
                }),
            ) => {
                prop_assert_eq!(batch.id, *batch_id);
                prop_assert_eq!(batch.token, *token);
                let was = before.batch(*batch_id).expect("the batch existed");
                if *replayed {
                    prop_assert_eq!(was.state, BatchState::Committed);
                    prop_assert_eq!(bookmark, &was.result, "a replay answers the same version");
                } else {
                    prop_assert_eq!(was.state, BatchState::Open);
                    prop_assert!(now < was.expires_at, "an expired batch committed");
                    prop_assert_eq!(was.base_version, before.bookmark.version);
                    prop_assert_eq!(bookmark.as_ref(), Some(&after.bookmark));
                }
            }
            // Neither a rewind nor a reset goes through under a live batch.
            (StreamCommand::Rewind { .. } | StreamCommand::Reset { .. }, Ok(_)) => {
                prop_assert!(
                    unexpired_open.is_none(),
                    "the bookmark moved under an open batch"
                );
            }
            _ => {}
        }

        // Opens: the same run gets its batch again; another run is refused
        // until that batch expires.
        if let StreamCommand::Open {
            batch_id, run_id, ..
        } = command
        {
            match (unexpired_open, &outcome.result) {
                (
                    Some(open),
                    Ok(StreamReply::Batch {
                        batch, replayed, ..
                    }),
                ) => {
                    prop_assert_eq!(&open.run_id, run_id, "a second run got the stream");
                    prop_assert!(*replayed);
                    prop_assert_eq!((batch.id, batch.token), (open.id, open.token));
                }
                (Some(open), Err(e)) => {
                    prop_assert_ne!(&open.run_id, run_id, "the run was refused its own batch");
                    prop_assert_eq!(e.kind(), "batch_open");
                }
                (
                    None,
                    Ok(StreamReply::Batch {
                        batch, replayed, ..
                    }),
                ) => {
                    prop_assert!(!replayed);
                    prop_assert_eq!(batch.id, *batch_id);
                    prop_assert_eq!(batch.token, before.last_token + 1);
                }
                (None, Err(e)) => prop_assert_eq!(e.kind(), "version_mismatch"),
                (_, Ok(other)) => prop_assert!(false, "an open answered {other:?}"),
            }
        }
        Ok(())
    }

    fn observe(&mut self, expected: &Expected, r: &Record) {
        let c = &mut self.coverage;
        if r.settled.is_some() {
            c.saw("expiries");
        }
        let before = &r.seen.bookmark;
        let after = &r.after.bookmark;
        match (expected, r.command) {
            (Expected::Committed(_, next), _) => {
                c.saw("commits");
                match (before.phase, next.phase) {
                    (Phase::Load, Phase::Delta) => {
                        c.saw("commits completing the load");
                        if before.load.cdc_start.is_none() && next.load.cdc_start.is_none() {
                            c.saw("completions without cdc_start");
                        }
                    }
                    (Phase::Delta, _) => c.saw("delta commits"),
                    _ => {}
                }
            }
            (Expected::Replayed(_), StreamCommand::Commit { .. }) => c.saw("commit replays"),
            (Expected::Refused("batch_committed"), _) => {
                c.saw("different commits of a committed batch refused")
            }
            (Expected::Replayed(_), StreamCommand::Open { .. }) => c.saw("open replays"),
            (Expected::Opened, _) if r.settled.is_some() => c.saw("opens after an expiry"),
            (Expected::Extended(..), _) => c.saw("heartbeats"),
            (Expected::Failed(_), _) => c.saw("fails"),
            (Expected::Rewound(_), StreamCommand::Rewind { to, .. }) => {
                c.saw("rewinds");
                if matches!(to, RewindTo::Time(_)) {
                    c.saw("rewinds by time");
                }
                if before.phase == Phase::Delta && after.phase == Phase::Load {
                    c.saw("rewinds back to load");
                }
            }
            (Expected::Reset, _) => c.saw("resets"),
            (Expected::Refused("batch_open"), StreamCommand::Open { .. }) => {
                c.saw("batch_open refusals")
            }
            (Expected::Refused("batch_open"), StreamCommand::Rewind { .. }) => {
                c.saw("rewinds refused under an open batch")
            }
            (Expected::Refused("batch_expired"), _) => c.saw("late calls of an expired batch"),
            (Expected::Refused("stale_token"), _) => c.saw("stale tokens refused"),
            (Expected::Refused("batch_not_found"), _) => c.saw("unknown batches refused"),
            (Expected::Refused("bookmark_regression"), StreamCommand::Commit { commit, .. }) => {
                c.saw("regressions refused");
                if let (Some(old), BookmarkUpdate::Load(new)) =
                    (&before.load.cdc_start, &commit.bookmark)
                {
                    if new.cdc_start.as_ref().is_some_and(|new| new != old) {
                        c.saw("cdc_start changes refused");
                    }
                }
            }
            (Expected::Refused("phase_mismatch"), _) => c.saw("phase mismatches refused"),
            (Expected::Refused("version_mismatch"), _) => c.saw("version mismatches refused"),
            (Expected::Refused("schema_mismatch"), _) => c.saw("schema mismatches refused"),
            (Expected::Refused("version_not_found"), _) => c.saw("missing rewind targets refused"),
            _ => {}
        }
    }
}

/// `before` as a command sees it: an open batch whose TTL ran out is failed.
fn settle(before: &StreamState, now: Millis) -> (StreamState, Option<BatchId>) {
    let mut seen = before.clone();
    let due = (seen.batches.iter_mut()).find(|b| b.is_open() && b.expires_at <= now);
    let settled = due.map(|b| {
        b.state = BatchState::Failed;
        b.ended_at = Some(now);
        b.end_reason = Some(EXPIRED.into());
        b.id
    });
    (seen, settled)
}

// ---------------------------------------------------------------------------
// The contract: what each command must answer, given the stream it sees.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Expected {
    /// Refused with this error type; nothing changes beyond settling.
    Refused(&'static str),
    /// This batch is answered again; nothing changes beyond settling.
    Replayed(BatchId),
    /// A new batch with the command's id.
    Opened,
    /// The open batch stays open until this instant.
    Extended(BatchId, Millis),
    /// The batch commits and the bookmark becomes this (version and time
    /// included).
    Committed(BatchId, Box<Bookmark>),
    Failed(BatchId),
    /// A new version copying this one.
    Rewound(i64),
    Reset,
    /// Put: the settings become the command's (`true` if they differ).
    Settings(bool),
}

/// The error type for calls on a batch that has ended.
fn finished_kind(batch: &Batch) -> &'static str {
    if batch.end_reason.as_deref() == Some(EXPIRED) {
        "batch_expired"
    } else {
        "batch_finished"
    }
}

fn version_matches(seen: &StreamState, if_match: Option<i64>) -> bool {
    if_match.is_none_or(|v| v == seen.bookmark.version)
}

/// Where a commit in the stream's phase leads (version and time aside), or
/// the error type that refuses it.
fn expected_position(current: &Bookmark, commit: &Commit) -> Result<Bookmark, &'static str> {
    let mut next = current.clone();
    match (current.phase, &commit.bookmark) {
        (Phase::Load, BookmarkUpdate::Load(load)) => {
            let old = &current.load;
            let files: BTreeSet<&String> = load.files_done.iter().collect();
            if !old.files_done.iter().all(|f| files.contains(f)) {
                return Err("bookmark_regression");
            }
            if let Some(old_hw) = &old.high_water {
                if load.high_water.as_ref().is_none_or(|new| new < old_hw) {
                    return Err("bookmark_regression");
                }
            }
            let cdc_start = match (&old.cdc_start, &load.cdc_start) {
                (Some(old), Some(new)) if old != new => return Err("bookmark_regression"),
                (old, new) => old.clone().or_else(|| new.clone()),
            };
            next.load = LoadProgress {
                files_done: files.into_iter().cloned().collect(),
                high_water: load.high_water.clone(),
                cdc_start,
            };
            if commit.load_complete {
                next.phase = Phase::Delta;
                next.delta = Some(next.load.cdc_start.clone().unwrap_or_default());
            }
        }
        (Phase::Delta, BookmarkUpdate::Delta(position)) => {
            if commit.load_complete {
                return Err("phase_mismatch");
            }
            let old = current.delta.clone().unwrap_or_default();
            let back = |old: &Option<String>, new: &Option<String>| matches!((old, new), (Some(old), Some(new)) if new < old);
            if back(&old.file, &position.file)
                || back(&old.commit_timestamp, &position.commit_timestamp)
            {
                return Err("bookmark_regression");
            }
            next.delta = Some(position.clone());
        }
        _ => return Err("phase_mismatch"),
    }
    Ok(next)
}

fn expected_answer(
    command: &StreamCommand,
    seen: &StreamState,
    now: Millis,
    version: &dyn Fn(i64) -> Option<Bookmark>,
) -> Expected {
    use Expected::*;
    // A batch call: the batch, if it exists and the token is its token.
    let fenced = |id: BatchId, token: i64| match seen.batch(id) {
        None => Err("batch_not_found"),
        Some(b) if b.token != token => Err("stale_token"),
        Some(b) => Ok(b),
    };
    match command {
        StreamCommand::Put { settings, .. } => Settings(*settings != seen.settings),
        StreamCommand::Open {
            batch_id,
            run_id,
            if_match,
            ..
        } => match seen.open_batch() {
            _ if seen.batch(*batch_id).is_some() => Replayed(*batch_id),
            Some(open) if &open.run_id == run_id => Replayed(open.id),
            Some(_) => Refused("batch_open"),
            None if !version_matches(seen, *if_match) => Refused("version_mismatch"),
            None => Opened,
        },
        StreamCommand::Heartbeat {
            batch_id,
            token,
            ttl_seconds,
            ..
        } => match fenced(*batch_id, *token) {
            Err(kind) => Refused(kind),
            Ok(b) if !b.is_open() => Refused(finished_kind(b)),
            Ok(b) => Extended(b.id, now.plus_seconds(ttl_seconds.unwrap_or(b.ttl_seconds))),
        },
        StreamCommand::Commit {
            batch_id,
            token,
            commit,
            if_match,
            ..
        } => match fenced(*batch_id, *token) {
            Err(kind) => Refused(kind),
            // A retry replays only if it is the commit that was made: the
            // same figures, and from the batch's base the same bookmark.
            Ok(b) if b.state == BatchState::Committed => {
                let same_position = version(b.base_version)
                    .and_then(|base| expected_position(&base, commit).ok())
                    .zip(b.result.as_ref())
                    .is_some_and(|(next, result)| {
                        (next.phase, &next.load, &next.delta)
                            == (result.phase, &result.load, &result.delta)
                    });
                if same_position
                    && b.counts == Some(commit.counts)
                    && b.snapshot_id == commit.snapshot_id
                    && b.schema_hash == commit.schema_hash
                {
                    Replayed(b.id)
                } else {
                    Refused("batch_committed")
                }
            }
            Ok(b) if b.state == BatchState::Failed => Refused(finished_kind(b)),
            Ok(_) if !version_matches(seen, *if_match) => Refused("version_mismatch"),
            Ok(b) if b.base_version != seen.bookmark.version => Refused("version_mismatch"),
            Ok(_)
                if seen
                    .settings
                    .expected_schema_hash
                    .as_ref()
                    .is_some_and(|h| commit.schema_hash.as_ref() != Some(h)) =>
            {
                Refused("schema_mismatch")
            }
            Ok(b) => match expected_position(&seen.bookmark, commit) {
                Err(kind) => Refused(kind),
                Ok(next) => Committed(
                    b.id,
                    Box::new(Bookmark {
                        version: seen.bookmark.version + 1,
                        updated_at: now,
                        ..next
                    }),
                ),
            },
        },
        StreamCommand::Fail {
            batch_id, token, ..
        } => match fenced(*batch_id, *token) {
            Err(kind) => Refused(kind),
            Ok(b) => match b.state {
                BatchState::Open => Failed(b.id),
                BatchState::Failed => Replayed(b.id),
                BatchState::Committed => Refused("batch_finished"),
            },
        },
        StreamCommand::Rewind { to, if_match, .. } => {
            if matches!(to, RewindTo::Time(t) if *t > now) {
                Refused("invalid_request")
            } else if !version_matches(seen, *if_match) {
                Refused("version_mismatch")
            } else if seen.open_batch().is_some() {
                Refused("batch_open")
            } else {
                match rewind_target(&seen.versions, *to) {
                    None => Refused("version_not_found"),
                    Some(target) => Rewound(target.bookmark.version),
                }
            }
        }
        StreamCommand::Reset { if_match, .. } => {
            if !version_matches(seen, *if_match) {
                Refused("version_mismatch")
            } else if seen.open_batch().is_some() {
                Refused("batch_open")
            } else {
                Reset
            }
        }
    }
}

/// A history entry as the rules must write it.
fn entry(seen: &StreamState, bookmark: &Bookmark, cause: Cause, actor: &str) -> BookmarkVersion {
    BookmarkVersion {
        stream: seen.name.clone(),
        bookmark: bookmark.clone(),
        cause,
        batch_id: None,
        run_id: None,
        counts: None,
        snapshot_id: None,
        rewound_to: None,
        actor: Some(actor.to_owned()),
        reason: None,
    }
}

/// The answer, the rows and the events must be exactly the prescribed ones.
fn check_answer(expected: &Expected, r: &Record) -> Result<(), TestCaseError> {
    let Record {
        now,
        command,
        actor,
        seen,
        settled,
        outcome,
        after,
        ..
    } = r;
    let now = *now;
    let mut rows = seen.clone();
    let mut events: Vec<(EventKind, Option<BatchId>)> = settled
        .iter()
        .map(|id| (EventKind::BatchFailed, Some(*id)))
        .collect();
    let batch_mut = |rows: &mut StreamState, id: BatchId| -> usize {
        (rows.batches.iter())
            .position(|b| b.id == id)
            .expect("the batch is known")
    };
    let reply: Option<StreamReply> = match (expected, command) {
        (Expected::Refused(kind), _) => {
            match &outcome.result {
                Err(e) => prop_assert_eq!(e.kind(), *kind),
                Ok(reply) => prop_assert!(false, "expected {kind}, got {reply:?}"),
            }
            None
        }
        (Expected::Replayed(id), _) => {
            let batch = rows.batch(*id).expect("known").clone();
            let bookmark = match command {
                StreamCommand::Open { .. } => Some(seen.bookmark.clone()),
                StreamCommand::Commit { .. } => batch.result.clone(),
                _ => None,
            };
            Some(StreamReply::Batch {
                batch,
                bookmark,
                replayed: true,
            })
        }
        (
            Expected::Opened,
            StreamCommand::Open {
                batch_id,
                run_id,
                ttl_seconds,
                ..
            },
        ) => {
            let batch = Batch {
                id: *batch_id,
                stream: seen.name.clone(),
                run_id: run_id.clone(),
                state: BatchState::Open,
                token: seen.last_token + 1,
                base_version: seen.bookmark.version,
                ttl_seconds: *ttl_seconds,
                opened_at: now,
                expires_at: now.plus_seconds(*ttl_seconds),
                ended_at: None,
                end_reason: None,
                counts: None,
                snapshot_id: None,
                schema_hash: None,
                result: None,
                principal: Some((*actor).to_owned()),
            };
            rows.last_token += 1;
            rows.updated_at = now;
            rows.batches.push(batch.clone());
            events.push((EventKind::BatchOpened, Some(*batch_id)));
            Some(StreamReply::Batch {
                batch,
                bookmark: Some(seen.bookmark.clone()),
                replayed: false,
            })
        }
        (Expected::Extended(id, expires_at), StreamCommand::Heartbeat { ttl_seconds, .. }) => {
            let i = batch_mut(&mut rows, *id);
            let batch = &mut rows.batches[i];
            batch.ttl_seconds = ttl_seconds.unwrap_or(batch.ttl_seconds);
            batch.expires_at = *expires_at;
            Some(StreamReply::Batch {
                batch: batch.clone(),
                bookmark: None,
                replayed: false,
            })
        }
        (Expected::Committed(id, next), StreamCommand::Commit { commit, .. }) => {
            let next: &Bookmark = next;
            let i = batch_mut(&mut rows, *id);
            let batch = &mut rows.batches[i];
            batch.state = BatchState::Committed;
            batch.ended_at = Some(now);
            batch.counts = Some(commit.counts);
            batch.snapshot_id = commit.snapshot_id;
            batch.schema_hash = commit.schema_hash.clone();
            batch.result = Some(next.clone());
            let batch = batch.clone();
            rows.bookmark = next.clone();
            rows.updated_at = now;
            rows.versions.push(BookmarkVersion {
                batch_id: Some(batch.id),
                run_id: Some(batch.run_id.clone()),
                counts: Some(commit.counts),
                snapshot_id: commit.snapshot_id,
                ..entry(seen, next, Cause::Batch, actor)
            });
            events.push((EventKind::BatchCommitted, Some(*id)));
            Some(StreamReply::Batch {
                batch,
                bookmark: Some(next.clone()),
                replayed: false,
            })
        }
        (Expected::Failed(id), StreamCommand::Fail { reason, .. }) => {
            let i = batch_mut(&mut rows, *id);
            let reported = after.batches.get(i).and_then(|b| b.end_reason.clone());
            let end_reason = match reason {
                Some(reason) => Some(reason.clone()),
                // Without a reason the rules supply one: any but "expired".
                None => reported.filter(|r| !r.is_empty() && r != EXPIRED),
            };
            prop_assert!(end_reason.is_some(), "a failed batch says why");
            let batch = &mut rows.batches[i];
            batch.state = BatchState::Failed;
            batch.ended_at = Some(now);
            batch.end_reason = end_reason;
            events.push((EventKind::BatchFailed, Some(*id)));
            Some(StreamReply::Batch {
                batch: batch.clone(),
                bookmark: None,
                replayed: false,
            })
        }
        (Expected::Rewound(target), StreamCommand::Rewind { reason, .. }) => {
            let restored = &seen.versions[*target as usize - 1].bookmark;
            let next = Bookmark {
                version: seen.bookmark.version + 1,
                updated_at: now,
                ..restored.clone()
            };
            rows.bookmark = next.clone();
            rows.updated_at = now;
            rows.versions.push(BookmarkVersion {
                rewound_to: Some(*target),
                reason: Some(reason.clone()),
                ..entry(seen, &next, Cause::Rewind, actor)
            });
            events.push((EventKind::BookmarkRewound, None));
            Some(StreamReply::Bookmark(next))
        }
        (Expected::Reset, StreamCommand::Reset { reason, .. }) => {
            let next = Bookmark::empty(seen.bookmark.version + 1, now);
            rows.bookmark = next.clone();
            rows.updated_at = now;
            rows.versions.push(BookmarkVersion {
                reason: Some(reason.clone()),
                ..entry(seen, &next, Cause::Reset, actor)
            });
            events.push((EventKind::BookmarkReset, None));
            Some(StreamReply::Bookmark(next))
        }
        (Expected::Settings(changed), StreamCommand::Put { settings, .. }) => {
            match &outcome.result {
                Ok(StreamReply::Stream { state, created }) => {
                    prop_assert!(!created);
                    prop_assert_eq!(&state.settings, settings);
                    prop_assert_eq!(&state.bookmark, &seen.bookmark);
                }
                other => prop_assert!(false, "expected the stream, got {other:?}"),
            }
            if *changed {
                rows.settings = settings.clone();
                rows.updated_at = now;
                events.push((EventKind::StreamSettingsChanged, None));
            }
            None
        }
        (expected, command) => unreachable!("{expected:?} for {command:?}"),
    };
    if let Some(reply) = reply {
        prop_assert_eq!(
            outcome.result.as_ref(),
            Ok::<_, &RuleError>(&reply),
            "the answer"
        );
    }
    prop_assert_eq!(after, &rows, "the rows are not the prescribed ones");
    let told: Vec<(EventKind, Option<BatchId>)> = (outcome.events.iter())
        .map(|e| {
            let batch = e.data["batch_id"].as_str().and_then(|s| s.parse().ok());
            (e.kind, batch)
        })
        .collect();
    prop_assert_eq!(told, events, "the events");
    for e in &outcome.events {
        prop_assert_eq!(e.at, now);
        prop_assert_eq!(e.stream.as_ref(), Some(&seen.name));
        prop_assert_eq!(e.table.as_ref(), Some(&seen.settings.table));
    }
    Ok(())
}

/// Each version the command wrote must follow from the one before it.
fn check_new_versions(r: &Record) -> Result<(), TestCaseError> {
    let history = &r.after.versions;
    for v in &history[r.before.versions.len()..] {
        let at = v.bookmark.version as usize - 1;
        let (prev, new) = (&history[at - 1].bookmark, &v.bookmark);
        prop_assert_eq!(new.updated_at, r.now);
        match v.cause {
            Cause::Created => prop_assert!(false, "a second creation"),
            Cause::Batch => {
                let id = v.batch_id.expect("a batch's version names it");
                let batch = r.after.batch(id).expect("its batch is stored");
                prop_assert_eq!(batch.state, BatchState::Committed);
                prop_assert_eq!(batch.result.as_ref(), Some(new));
                prop_assert_eq!(batch.base_version, prev.version);
                match (prev.phase, new.phase) {
                    (Phase::Load, Phase::Load) => load_moves_forward(&prev.load, &new.load)?,
                    (Phase::Load, Phase::Delta) => {
                        load_moves_forward(&prev.load, &new.load)?;
                        let start = new.load.cdc_start.clone().unwrap_or_default();
                        prop_assert_eq!(
                            new.delta.as_ref(),
                            Some(&start),
                            "delta starts at cdc_start"
                        );
                    }
                    (Phase::Delta, Phase::Delta) => {
                        prop_assert_eq!(&new.load, &prev.load, "a delta batch touched the load");
                        let from = prev.delta.clone().unwrap_or_default();
                        let to = new.delta.clone().unwrap_or_default();
                        for (old, new) in [
                            (&from.file, &to.file),
                            (&from.commit_timestamp, &to.commit_timestamp),
                        ] {
                            if let (Some(old), Some(new)) = (old, new) {
                                prop_assert!(old <= new, "delta went back from {old} to {new}");
                            }
                        }
                    }
                    (Phase::Delta, Phase::Load) => {
                        prop_assert!(false, "a batch moved the phase back to load")
                    }
                }
            }
            Cause::Rewind => {
                let to = v.rewound_to.expect("a rewind names its target");
                prop_assert!(to >= 1 && to < new.version);
                let target = &history[to as usize - 1].bookmark;
                prop_assert_eq!(
                    (&new.phase, &new.load, &new.delta),
                    (&target.phase, &target.load, &target.delta),
                    "a rewind copies its target"
                );
            }
            Cause::Reset => {
                prop_assert_eq!(
                    new,
                    &Bookmark::empty(new.version, r.now),
                    "a reset starts over"
                );
            }
        }
    }
    Ok(())
}

/// Within a load, files done stay done, the high water mark does not go
/// back and cdc_start, once captured, stays.
fn load_moves_forward(old: &LoadProgress, new: &LoadProgress) -> Result<(), TestCaseError> {
    for f in &old.files_done {
        prop_assert!(new.files_done.contains(f), "file {f} was lost");
    }
    prop_assert!(
        new.files_done.windows(2).all(|w| w[0] < w[1]),
        "files_done is sorted and unique"
    );
    if let Some(old_hw) = &old.high_water {
        prop_assert!(new.high_water.as_ref().is_some_and(|new| new >= old_hw));
    }
    if old.cdc_start.is_some() {
        prop_assert_eq!(&new.cdc_start, &old.cdc_start, "cdc_start changed mid-load");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn every_stream_invariant_holds_after_every_command_of_random_sequences(
        scenario in scenario()
    ) {
        Harness::new(scenario.dms).run(&scenario)?;
    }
}

/// Guards the property test against a generator that never reaches the
/// situations the invariants are about.
#[test]
fn the_random_stream_sequences_reach_every_interesting_situation() {
    let mut runner = TestRunner::deterministic();
    let strategy = scenario();
    let mut total = Coverage::new(&SITUATIONS);
    for _ in 0..200 {
        let scenario = strategy
            .new_tree(&mut runner)
            .expect("a scenario")
            .current();
        let mut harness = Harness::new(scenario.dms);
        if let Err(e) = harness.run(&scenario) {
            panic!("{e}\n{scenario:#?}");
        }
        total.add(&harness.coverage);
    }
    eprintln!("stream coverage over 200 scenarios: {:#?}", total.seen);
    total.assert_every_situation_reached();
}
