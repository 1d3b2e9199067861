//! What callers ask of a stream, and what the rules answer.

use crate::{
    names::StreamName,
    streams::state::{
        Batch, BatchId, Bookmark, Counts, LoadProgress, Position, StreamSettings, StreamState,
    },
    time::Millis,
};

/// Register a stream or change its source description and expected hash;
/// answers the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutStream {
    pub stream: StreamName,
    pub settings: StreamSettings,
}

/// Commands on a stream's batch; each answers that batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchCommand {
    Open {
        stream: StreamName,
        /// Chosen by the shell so that the rules stay deterministic.
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
}

/// An operator's change of the bookmark; each answers the new bookmark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookmarkCommand {
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

impl BatchCommand {
    pub fn stream(&self) -> &StreamName {
        match self {
            BatchCommand::Open { stream, .. }
            | BatchCommand::Heartbeat { stream, .. }
            | BatchCommand::Commit { stream, .. }
            | BatchCommand::Fail { stream, .. } => stream,
        }
    }

    /// The batch the store must load besides the open one.
    pub fn batch_id(&self) -> BatchId {
        match self {
            BatchCommand::Open { batch_id, .. }
            | BatchCommand::Heartbeat { batch_id, .. }
            | BatchCommand::Commit { batch_id, .. }
            | BatchCommand::Fail { batch_id, .. } => *batch_id,
        }
    }
}

impl BookmarkCommand {
    pub fn stream(&self) -> &StreamName {
        match self {
            BookmarkCommand::Rewind { stream, .. } | BookmarkCommand::Reset { stream, .. } => {
                stream
            }
        }
    }
}

/// What a commit reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub bookmark: BookmarkUpdate,
    /// The full load is done: move to phase `delta` in the same version.
    pub load_complete: bool,
    pub counts: Counts,
    pub snapshot_id: Option<i64>,
    pub schema_hash: Option<String>,
}

/// The new position, in the section of the stream's phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookmarkUpdate {
    Load(LoadProgress),
    Delta(Position),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewindTo {
    Version(i64),
    /// The last version written at or before this instant.
    Time(Millis),
}

/// What registering a stream answers.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamReply {
    pub state: StreamState,
    pub created: bool,
}

/// What a batch command answers.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchReply {
    pub batch: Batch,
    /// On open: where to resume. On commit: the version it produced.
    pub bookmark: Option<Bookmark>,
    /// True when a retried call was answered from what it did before.
    pub replayed: bool,
}
