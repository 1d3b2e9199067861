//! Each aggregate's commands as one type, for tests that generate any of
//! them in one sequence: the product keeps them apart (each kind of
//! command has its own answer type), so the tests dispatch here, once.

use sluice_core::leases::{rules, AcquireRequest, LeaseCommand, LeaseReply, TableReply};
use sluice_core::streams::{
    self, BatchCommand, BatchReply, BookmarkCommand, Commit, RewindTo, StreamReply as PutReply,
};
use sluice_core::{streams::BatchId, streams::StreamSettings};
use sluice_core::{
    Batch, Bookmark, Lease, LeaseId, Millis, NewEvent, RuleError, StreamName, StreamState,
    TableName, TableSettings, TableState, Token,
};

/// Any command on a table or its leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    PutTable {
        table: TableName,
        settings: TableSettings,
    },
    Acquire {
        table: TableName,
        request: AcquireRequest,
    },
    Sweep {
        table: TableName,
    },
    Heartbeat {
        lease_id: LeaseId,
        token: Option<Token>,
        ttl_seconds: Option<u32>,
    },
    Release {
        lease_id: LeaseId,
        token: Option<Token>,
    },
    Revoke {
        lease_id: LeaseId,
        reason: String,
    },
    KeepWaiting {
        lease_id: LeaseId,
    },
    Lookup {
        lease_id: LeaseId,
    },
}

/// Any answer of a table or lease command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Table {
        state: TableState,
        created: bool,
    },
    Lease {
        lease: Lease,
        position: Option<u32>,
        replayed: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub result: Result<Reply, RuleError>,
    pub events: Vec<NewEvent>,
}

fn table_outcome(o: rules::Outcome<TableReply>) -> Outcome {
    Outcome {
        result: o.result.map(|r| Reply::Table {
            state: r.state,
            created: r.created,
        }),
        events: o.events,
    }
}

fn lease_outcome(o: rules::Outcome<LeaseReply>) -> Outcome {
    Outcome {
        result: o.result.map(|r| Reply::Lease {
            lease: r.lease,
            position: r.position,
            replayed: r.replayed,
        }),
        events: o.events,
    }
}

/// Create a table or change its settings.
pub fn put_table(
    state: Option<TableState>,
    table: TableName,
    settings: TableSettings,
    now: Millis,
) -> (TableState, Outcome) {
    let (state, outcome) = rules::put_table(state, table, settings, now);
    (state, table_outcome(outcome))
}

/// Who calls, in tests where one principal does everything.
pub const ACTOR: &str = "job";

/// Apply any command to an existing table, as the store would, as `ACTOR`.
pub fn apply(state: &mut TableState, command: &Command, now: Millis) -> Outcome {
    apply_as(state, command, Some(ACTOR), now)
}

/// Apply any command to an existing table, as the store would, as `actor`.
pub fn apply_as(
    state: &mut TableState,
    command: &Command,
    actor: Option<&str>,
    now: Millis,
) -> Outcome {
    let lease = |command: LeaseCommand, state: &mut TableState| {
        lease_outcome(rules::apply(state, &command, actor, now))
    };
    match command.clone() {
        Command::PutTable { table, settings } => {
            let (new, outcome) = put_table(Some(state.clone()), table, settings, now);
            *state = new;
            outcome
        }
        Command::Sweep { .. } => table_outcome(rules::sweep(state, now)),
        Command::Acquire { table, request } => {
            lease(LeaseCommand::Acquire { table, request }, state)
        }
        Command::Heartbeat {
            lease_id,
            token,
            ttl_seconds,
        } => lease(
            LeaseCommand::Heartbeat {
                lease_id,
                token,
                ttl_seconds,
            },
            state,
        ),
        Command::Release { lease_id, token } => {
            lease(LeaseCommand::Release { lease_id, token }, state)
        }
        Command::Revoke { lease_id, reason } => {
            lease(LeaseCommand::Revoke { lease_id, reason }, state)
        }
        Command::KeepWaiting { lease_id } => lease(LeaseCommand::KeepWaiting { lease_id }, state),
        Command::Lookup { lease_id } => lease(LeaseCommand::Lookup { lease_id }, state),
    }
}

pub use rules::{may_grant, settle};

/// Any command on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamCommand {
    Put {
        stream: StreamName,
        settings: StreamSettings,
    },
    Open {
        stream: StreamName,
        batch_id: BatchId,
        run_id: String,
        ttl_seconds: u32,
        if_match: Option<i64>,
    },
    Heartbeat {
        stream: StreamName,
        batch_id: BatchId,
        token: i64,
        ttl_seconds: Option<u32>,
    },
    Commit {
        stream: StreamName,
        batch_id: BatchId,
        token: i64,
        commit: Commit,
        if_match: Option<i64>,
    },
    Fail {
        stream: StreamName,
        batch_id: BatchId,
        token: i64,
        reason: Option<String>,
    },
    Rewind {
        stream: StreamName,
        to: RewindTo,
        reason: String,
        if_match: Option<i64>,
    },
    Reset {
        stream: StreamName,
        reason: String,
        if_match: Option<i64>,
    },
}

/// Any answer of a stream command (sizes do not matter in a test).
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum StreamReply {
    Stream {
        state: Box<StreamState>,
        created: bool,
    },
    Batch {
        batch: Batch,
        bookmark: Option<Bookmark>,
        replayed: bool,
    },
    Bookmark(Bookmark),
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamOutcome {
    pub result: Result<StreamReply, RuleError>,
    pub events: Vec<NewEvent>,
}

fn outcome<R>(o: streams::StreamOutcome<R>, reply: impl FnOnce(R) -> StreamReply) -> StreamOutcome {
    StreamOutcome {
        result: o.result.map(reply),
        events: o.events,
    }
}

fn batch_reply(r: BatchReply) -> StreamReply {
    StreamReply::Batch {
        batch: r.batch,
        bookmark: r.bookmark,
        replayed: r.replayed,
    }
}

/// Create a stream or change its settings.
pub fn put_stream(
    state: Option<StreamState>,
    stream: StreamName,
    settings: StreamSettings,
    actor: Option<&str>,
    now: Millis,
) -> (StreamState, StreamOutcome) {
    let (state, o) = streams::put_stream(state, stream, settings, actor, now);
    let o = outcome(o, |r: PutReply| StreamReply::Stream {
        state: Box::new(r.state),
        created: r.created,
    });
    (state, o)
}

/// Apply any command to an existing stream, as the store would.
pub fn apply_stream(
    state: &mut StreamState,
    command: &StreamCommand,
    actor: Option<&str>,
    now: Millis,
) -> StreamOutcome {
    let batch = |command: BatchCommand, state: &mut StreamState| {
        outcome(streams::batch(state, &command, actor, now), batch_reply)
    };
    let bookmark = |command: BookmarkCommand, state: &mut StreamState| {
        outcome(
            streams::bookmark(state, &command, actor, now),
            StreamReply::Bookmark,
        )
    };
    match command.clone() {
        StreamCommand::Put { stream, settings } => {
            let (new, o) = put_stream(Some(state.clone()), stream, settings, actor, now);
            *state = new;
            o
        }
        StreamCommand::Open {
            stream,
            batch_id,
            run_id,
            ttl_seconds,
            if_match,
        } => batch(
            BatchCommand::Open {
                stream,
                batch_id,
                run_id,
                ttl_seconds,
                if_match,
            },
            state,
        ),
        StreamCommand::Heartbeat {
            stream,
            batch_id,
            token,
            ttl_seconds,
        } => batch(
            BatchCommand::Heartbeat {
                stream,
                batch_id,
                token,
                ttl_seconds,
            },
            state,
        ),
        StreamCommand::Commit {
            stream,
            batch_id,
            token,
            commit,
            if_match,
        } => batch(
            BatchCommand::Commit {
                stream,
                batch_id,
                token,
                commit,
                if_match,
            },
            state,
        ),
        StreamCommand::Fail {
            stream,
            batch_id,
            token,
            reason,
        } => batch(
            BatchCommand::Fail {
                stream,
                batch_id,
                token,
                reason,
            },
            state,
        ),
        StreamCommand::Rewind {
            stream,
            to,
            reason,
            if_match,
        } => bookmark(
            BookmarkCommand::Rewind {
                stream,
                to,
                reason,
                if_match,
            },
            state,
        ),
        StreamCommand::Reset {
            stream,
            reason,
            if_match,
        } => bookmark(
            BookmarkCommand::Reset {
                stream,
                reason,
                if_match,
            },
            state,
        ),
    }
}

impl StreamCommand {
    /// The batch the store must load besides the open one.
    pub fn batch_id(&self) -> Option<BatchId> {
        match self {
            StreamCommand::Open { batch_id, .. }
            | StreamCommand::Heartbeat { batch_id, .. }
            | StreamCommand::Commit { batch_id, .. }
            | StreamCommand::Fail { batch_id, .. } => Some(*batch_id),
            _ => None,
        }
    }
}
