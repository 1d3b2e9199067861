//! A CDC stream: the batches that ingest it and the bookmark they advance.
//!
//! The bookmark says where an ingestion job resumes. In phase `load` it holds
//! the full-load files done so far; in phase `delta`, the change-data
//! position. Every change is a new version, kept forever: a committed batch,
//! a rewind (a new version equal to an old one) or a reset.

use crate::{
    names::{StreamName, TableName},
    time::Millis,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BatchId(pub uuid::Uuid);

impl BatchId {
    pub fn new_v7() -> BatchId {
        BatchId(uuid::Uuid::now_v7())
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for BatchId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(BatchId)
    }
}

/// A place in the change data: the source decides which fields it uses
/// (DMS: the CDC file name and its commit timestamp; others an opaque
/// position such as a log sequence number).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub file: Option<String>,
    pub commit_timestamp: Option<String>,
    pub position: Option<String>,
}

/// How far the full load has come.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadProgress {
    /// The load files done, sorted, each once.
    pub files_done: Vec<String>,
    /// For sources that load in order: the last file done.
    pub high_water: Option<String>,
    /// Where change data starts once the load is complete: captured when the
    /// load began, because changes made during the load are replayed by CDC.
    pub cdc_start: Option<Position>,
}

impl LoadProgress {
    pub fn normalized(mut self) -> LoadProgress {
        self.files_done.sort_unstable();
        self.files_done.dedup();
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Load,
    Delta,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Load => "load",
            Phase::Delta => "delta",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        match s {
            "load" => Some(Phase::Load),
            "delta" => Some(Phase::Delta),
            _ => None,
        }
    }
}

/// Where the next batch resumes. `version` grows by one with every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bookmark {
    pub version: i64,
    pub phase: Phase,
    pub load: LoadProgress,
    pub delta: Option<Position>,
    pub updated_at: Millis,
}

impl Bookmark {
    /// An empty full load: where a new or reset stream starts.
    pub fn empty(version: i64, now: Millis) -> Bookmark {
        Bookmark {
            version,
            phase: Phase::Load,
            load: LoadProgress::default(),
            delta: None,
            updated_at: now,
        }
    }
}

/// Rows a batch merged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub inserted: i64,
    pub updated: i64,
    pub deleted: i64,
}

/// Why a bookmark version exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cause {
    Created,
    Batch,
    Rewind,
    Reset,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Created => "created",
            Cause::Batch => "batch",
            Cause::Rewind => "rewind",
            Cause::Reset => "reset",
        }
    }

    pub fn parse(s: &str) -> Option<Cause> {
        [Cause::Created, Cause::Batch, Cause::Rewind, Cause::Reset]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// One entry of a stream's bookmark history, immutable once written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BookmarkVersion {
    pub stream: StreamName,
    pub bookmark: Bookmark,
    pub cause: Cause,
    pub batch_id: Option<BatchId>,
    pub run_id: Option<String>,
    pub counts: Option<Counts>,
    pub snapshot_id: Option<i64>,
    /// For a rewind: the version it restored.
    pub rewound_to: Option<i64>,
    pub actor: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchState {
    Open,
    Committed,
    Failed,
}

impl BatchState {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Open => "open",
            BatchState::Committed => "committed",
            BatchState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<BatchState> {
        [BatchState::Open, BatchState::Committed, BatchState::Failed]
            .into_iter()
            .find(|b| b.as_str() == s)
    }
}

/// The reason recorded when a batch's heartbeat TTL ran out.
pub const EXPIRED: &str = "expired";

/// One run's unit of work on a stream: `open -> committed | failed`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Batch {
    pub id: BatchId,
    pub stream: StreamName,
    pub run_id: String,
    pub state: BatchState,
    /// Fencing token: strictly increasing per stream.
    pub token: i64,
    /// The bookmark version the batch started from.
    pub base_version: i64,
    pub ttl_seconds: u32,
    pub opened_at: Millis,
    pub expires_at: Millis,
    pub ended_at: Option<Millis>,
    pub end_reason: Option<String>,
    pub counts: Option<Counts>,
    pub snapshot_id: Option<i64>,
    pub schema_hash: Option<String>,
    /// The bookmark a committed batch produced (answered again on a retry).
    pub result: Option<Bookmark>,
    /// Who opened it: only they heartbeat, commit or fail it (its token is
    /// visible to every reader of the stream). None for batches recorded
    /// before owners were.
    pub principal: Option<String>,
}

impl Batch {
    pub fn is_open(&self) -> bool {
        self.state == BatchState::Open
    }
}

/// What an administrator says about a stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamSettings {
    /// The Iceberg table the stream feeds.
    pub table: TableName,
    /// A description of the source (free JSON object).
    pub source: serde_json::Value,
    /// Commits must report this schema hash, when set.
    pub expected_schema_hash: Option<String>,
}

/// A stream as the rules see it within one transaction.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StreamState {
    pub name: StreamName,
    pub settings: StreamSettings,
    pub bookmark: Bookmark,
    pub last_token: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// The open batch, if any, and the batches the commands name.
    pub batches: Vec<Batch>,
    /// Versions a rewind may restore (those the commands name), plus those
    /// written in this transaction.
    pub versions: Vec<BookmarkVersion>,
    /// How long past its expiry a live batch is still honoured, because
    /// the clocks that judge expiry may disagree by that much: zero where
    /// the database keeps time (SQLite's one process, PostgreSQL's
    /// `now()`), the configured margin on DynamoDB, where each replica's
    /// own clock judges. Set by the backend as it loads; never stored.
    #[serde(skip)]
    pub skew_margin: Millis,
}

impl StreamState {
    pub fn open_batch(&self) -> Option<&Batch> {
        self.batches.iter().find(|b| b.is_open())
    }

    pub fn batch(&self, id: BatchId) -> Option<&Batch> {
        self.batches.iter().find(|b| b.id == id)
    }
}
