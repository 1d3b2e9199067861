//! Request and response bodies of the stream, batch and bookmark routes,
//! and their validation.

use crate::dto::{clean_json, identity_text, in_range, optional_text, text, MAX_TTL_SECONDS};
use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use sluice_core::streams::{
    Batch, BatchState, Bookmark, BookmarkVersion, Counts, LoadProgress, Phase, Position,
    StreamSettings, StreamState,
};
use sluice_core::streams::{BookmarkUpdate, Commit};
use sluice_core::TableName;
use sluice_store::VersionSummary;
use utoipa::{IntoParams, ToSchema};

/// The TTL of a batch whose open does not name one.
pub const DEFAULT_BATCH_TTL_SECONDS: u32 = 300;
const MAX_SHORT_TEXT: usize = 256;
const MAX_POSITION_TEXT: usize = 1024;
/// Most load files one bookmark lists (sources with more use `high_water`).
pub const MAX_FILES_DONE: usize = 20_000;
const MAX_SOURCE_BYTES: usize = 16 * 1024;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutStreamBody {
    /// The Iceberg table the stream feeds, `namespace.table`.
    #[schema(max_length = 255, pattern = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$")]
    pub table: String,
    /// What the source is (free JSON object, e.g. the DMS task and S3 prefix).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub source: Option<serde_json::Value>,
    /// Commits must report this schema hash, when set.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub expected_schema_hash: Option<String>,
}

impl PutStreamBody {
    pub fn settings(self) -> Result<StreamSettings, ApiError> {
        let table = TableName::parse(&self.table).map_err(|e| ApiError::invalid(e.0))?;
        let source = match self.source {
            None => serde_json::json!({}),
            Some(v @ serde_json::Value::Object(_)) => v,
            Some(_) => return Err(ApiError::invalid("source must be a JSON object")),
        };
        clean_json("source", &source)?;
        if source.to_string().len() > MAX_SOURCE_BYTES {
            return Err(ApiError::invalid(format!(
                "source must be at most {MAX_SOURCE_BYTES} bytes of JSON"
            )));
        }
        Ok(StreamSettings {
            table,
            source,
            expected_schema_hash: optional_text(
                "expected_schema_hash",
                self.expected_schema_hash,
                MAX_SHORT_TEXT,
            )?,
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PositionBody {
    /// The last change-data file done (DMS: `20260101-120000123.csv`).
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub file: Option<String>,
    /// The commit timestamp reached.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub commit_timestamp: Option<String>,
    /// An opaque source position (log sequence number, offset...).
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub position: Option<String>,
}

impl PositionBody {
    fn parse(self, field: &str) -> Result<Position, ApiError> {
        let part = |name: &str, v: Option<String>| {
            optional_text(&format!("{field}.{name}"), v, MAX_POSITION_TEXT)
        };
        Ok(Position {
            file: part("file", self.file)?,
            commit_timestamp: part("commit_timestamp", self.commit_timestamp)?,
            position: part("position", self.position)?,
        })
    }
}

impl From<Position> for PositionBody {
    fn from(p: Position) -> PositionBody {
        PositionBody {
            file: p.file,
            commit_timestamp: p.commit_timestamp,
            position: p.position,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadBody {
    /// The full-load files done (DMS: `LOAD00000001.csv`...), each once.
    #[serde(default)]
    #[schema(
        max_items = 20000,
        min_length = 1,
        max_length = 1024,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub files_done: Vec<String>,
    /// For sources that load in order: the last file done.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub high_water: Option<String>,
    /// Where change data starts once the load is complete, captured when
    /// the load began (changes made during the load are replayed by CDC).
    #[serde(default)]
    pub cdc_start: Option<PositionBody>,
}

impl LoadBody {
    fn parse(self) -> Result<LoadProgress, ApiError> {
        if self.files_done.len() > MAX_FILES_DONE {
            return Err(ApiError::invalid(format!(
                "load.files_done lists at most {MAX_FILES_DONE} files; use high_water for larger loads"
            )));
        }
        let files_done = self
            .files_done
            .into_iter()
            .map(|f| text("load.files_done[]", f, MAX_POSITION_TEXT))
            .collect::<Result<_, _>>()?;
        Ok(LoadProgress {
            files_done,
            high_water: optional_text("load.high_water", self.high_water, MAX_POSITION_TEXT)?,
            cdc_start: self
                .cdc_start
                .map(|p| p.parse("load.cdc_start"))
                .transpose()?,
        }
        .normalized())
    }
}

impl From<LoadProgress> for LoadBody {
    fn from(l: LoadProgress) -> LoadBody {
        LoadBody {
            files_done: l.files_done,
            high_water: l.high_water,
            cdc_start: l.cdc_start.map(PositionBody::from),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PhaseBody {
    /// The full load: `load` says which files are done.
    Load,
    /// Change data capture: `delta` says where it is.
    Delta,
}

impl From<Phase> for PhaseBody {
    fn from(p: Phase) -> PhaseBody {
        match p {
            Phase::Load => PhaseBody::Load,
            Phase::Delta => PhaseBody::Delta,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BookmarkBody {
    pub stream: String,
    /// Grows by one with every change; send it as `If-Match` to act only
    /// on this version.
    pub version: i64,
    pub phase: PhaseBody,
    pub load: LoadBody,
    /// Set once the stream is in phase `delta`.
    pub delta: Option<PositionBody>,
    pub updated_at: String,
}

impl BookmarkBody {
    pub fn new(stream: &str, b: Bookmark) -> BookmarkBody {
        BookmarkBody {
            stream: stream.to_owned(),
            version: b.version,
            phase: b.phase.into(),
            load: b.load.into(),
            delta: b.delta.map(PositionBody::from),
            updated_at: b.updated_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CountsBody {
    /// Absent counts are 0.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub inserted: i64,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub updated: i64,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub deleted: i64,
}

impl CountsBody {
    fn parse(self) -> Result<Counts, ApiError> {
        if self.inserted < 0 || self.updated < 0 || self.deleted < 0 {
            return Err(ApiError::invalid("counts must not be negative"));
        }
        Ok(Counts {
            inserted: self.inserted,
            updated: self.updated,
            deleted: self.deleted,
        })
    }
}

impl From<Counts> for CountsBody {
    fn from(c: Counts) -> CountsBody {
        CountsBody {
            inserted: c.inserted,
            updated: c.updated,
            deleted: c.deleted,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BatchStateBody {
    Open,
    Committed,
    Failed,
}

impl From<BatchState> for BatchStateBody {
    fn from(s: BatchState) -> BatchStateBody {
        match s {
            BatchState::Open => BatchStateBody::Open,
            BatchState::Committed => BatchStateBody::Committed,
            BatchState::Failed => BatchStateBody::Failed,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchBody {
    pub batch_id: String,
    pub stream: String,
    pub run_id: String,
    pub state: BatchStateBody,
    /// Fencing token: present it to heartbeat, commit or fail.
    pub token: i64,
    /// The bookmark version the batch started from.
    pub base_version: i64,
    /// On open: the bookmark to resume from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bookmark: Option<BookmarkBody>,
    pub ttl_seconds: u32,
    pub opened_at: String,
    /// The batch fails if not heartbeated or committed by then.
    pub expires_at: String,
    pub ended_at: Option<String>,
    /// Why a failed batch failed (`expired` when its TTL ran out).
    pub end_reason: Option<String>,
    pub counts: Option<CountsBody>,
    pub snapshot_id: Option<i64>,
    pub schema_hash: Option<String>,
    /// The bookmark version a committed batch produced.
    pub committed_version: Option<i64>,
}

impl BatchBody {
    pub fn new(b: Batch, bookmark: Option<Bookmark>) -> BatchBody {
        let stream = b.stream.to_string();
        BatchBody {
            batch_id: b.id.to_string(),
            bookmark: bookmark.map(|bm| BookmarkBody::new(&stream, bm)),
            stream,
            run_id: b.run_id,
            state: b.state.into(),
            token: b.token,
            base_version: b.base_version,
            ttl_seconds: b.ttl_seconds,
            opened_at: b.opened_at.to_rfc3339(),
            expires_at: b.expires_at.to_rfc3339(),
            ended_at: b.ended_at.map(|m| m.to_rfc3339()),
            end_reason: b.end_reason,
            counts: b.counts.map(CountsBody::from),
            snapshot_id: b.snapshot_id,
            schema_hash: b.schema_hash,
            committed_version: b.result.map(|r| r.version),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamBody {
    pub stream: String,
    pub table: String,
    #[schema(value_type = Object)]
    pub source: serde_json::Value,
    pub expected_schema_hash: Option<String>,
    pub bookmark: BookmarkBody,
    /// The open batch, if any (one whose TTL ran out is failed by the next
    /// open, rewind or reset).
    pub open_batch: Option<BatchBody>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<StreamState> for StreamBody {
    fn from(s: StreamState) -> StreamBody {
        let stream = s.name.to_string();
        let open_batch = s
            .batches
            .into_iter()
            .find(Batch::is_open)
            .map(|b| BatchBody::new(b, None));
        StreamBody {
            bookmark: BookmarkBody::new(&stream, s.bookmark),
            stream,
            table: s.settings.table.to_string(),
            source: s.settings.source,
            expected_schema_hash: s.settings.expected_schema_hash,
            open_batch,
            created_at: s.created_at.to_rfc3339(),
            updated_at: s.updated_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamsPage {
    pub streams: Vec<StreamBody>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenBatchBody {
    /// Who opens: the Glue job run id. The same run opening again while its
    /// batch is open gets that batch back.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200A\u200E\u200F\u2028-\u202F\u205F\u2066-\u2069\u3000][^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub run_id: String,
    /// Heartbeat TTL, 1 to 86400 (default 300).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub ttl_seconds: Option<i64>,
}

impl OpenBatchBody {
    pub fn parse(self) -> Result<(String, u32), ApiError> {
        let ttl = self
            .ttl_seconds
            .map_or(Ok(DEFAULT_BATCH_TTL_SECONDS), |t| {
                in_range("ttl_seconds", t, 1, MAX_TTL_SECONDS)
            })?;
        Ok((identity_text("run_id", self.run_id, MAX_SHORT_TEXT)?, ttl))
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchHeartbeatBody {
    pub token: i64,
    /// A new TTL from now (1 to 86400); the batch's own TTL if absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub ttl_seconds: Option<i64>,
}

impl BatchHeartbeatBody {
    pub fn ttl(&self) -> Result<Option<u32>, ApiError> {
        self.ttl_seconds
            .map(|t| in_range("ttl_seconds", t, 1, MAX_TTL_SECONDS))
            .transpose()
    }
}

/// The new position: exactly one section, the one of the stream's phase.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookmarkUpdateBody {
    #[serde(default)]
    pub load: Option<LoadBody>,
    #[serde(default)]
    pub delta: Option<PositionBody>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitBody {
    pub token: i64,
    pub bookmark: BookmarkUpdateBody,
    /// The full load is done: the stream moves to phase `delta`, starting
    /// from `load.cdc_start`, in the same version.
    #[serde(default)]
    pub load_complete: bool,
    #[serde(default)]
    pub counts: CountsBody,
    /// The Iceberg snapshot the batch produced.
    #[serde(default)]
    pub snapshot_id: Option<i64>,
    /// The schema hash the batch saw; must equal the stream's expected hash
    /// when it has one.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub schema_hash: Option<String>,
}

impl CommitBody {
    pub fn parse(self) -> Result<Commit, ApiError> {
        let bookmark = match (self.bookmark.load, self.bookmark.delta) {
            (Some(load), None) => BookmarkUpdate::Load(load.parse()?),
            (None, Some(delta)) => BookmarkUpdate::Delta(delta.parse("delta")?),
            _ => {
                return Err(ApiError::invalid(
                    "bookmark must hold exactly one of `load` or `delta`",
                ))
            }
        };
        Ok(Commit {
            bookmark,
            load_complete: self.load_complete,
            counts: self.counts.parse()?,
            snapshot_id: self.snapshot_id,
            schema_hash: optional_text("schema_hash", self.schema_hash, MAX_SHORT_TEXT)?,
        })
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CommitResultBody {
    pub batch: BatchBody,
    /// The version the commit produced.
    pub bookmark: BookmarkBody,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailBatchBody {
    pub token: i64,
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Return versions after this one (default 0: from the first).
    #[param(minimum = 0)]
    pub after_version: Option<i64>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CauseBody {
    Created,
    Batch,
    Rewind,
    Reset,
}

/// What a version records besides the position: how and why it was made.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionMeta {
    pub cause: CauseBody,
    pub batch_id: Option<String>,
    pub run_id: Option<String>,
    pub counts: Option<CountsBody>,
    pub snapshot_id: Option<i64>,
    /// For a rewind: the version restored.
    pub rewound_to: Option<i64>,
    /// Who made the change.
    pub actor: Option<String>,
    /// Why (rewinds and resets).
    pub reason: Option<String>,
}

impl VersionMeta {
    fn of(v: &BookmarkVersion) -> VersionMeta {
        use sluice_core::streams::Cause;
        VersionMeta {
            cause: match v.cause {
                Cause::Created => CauseBody::Created,
                Cause::Batch => CauseBody::Batch,
                Cause::Rewind => CauseBody::Rewind,
                Cause::Reset => CauseBody::Reset,
            },
            batch_id: v.batch_id.map(|b| b.to_string()),
            run_id: v.run_id.clone(),
            counts: v.counts.map(CountsBody::from),
            snapshot_id: v.snapshot_id,
            rewound_to: v.rewound_to,
            actor: v.actor.clone(),
            reason: v.reason.clone(),
        }
    }
}

/// One version, whole.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionBody {
    #[serde(flatten)]
    pub bookmark: BookmarkBody,
    #[serde(flatten)]
    pub meta: VersionMeta,
}

impl From<BookmarkVersion> for VersionBody {
    fn from(v: BookmarkVersion) -> VersionBody {
        VersionBody {
            meta: VersionMeta::of(&v),
            bookmark: BookmarkBody::new(v.stream.as_str(), v.bookmark),
        }
    }
}

/// The load section as a page of history shows it: the files done are
/// counted, not listed (a full load can list 20,000).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LoadSummaryBody {
    pub files_done_count: usize,
    pub high_water: Option<String>,
    pub cdc_start: Option<PositionBody>,
}

/// A version as a page of history lists it; GET the version for its list
/// of files done.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionSummaryBody {
    pub stream: String,
    pub version: i64,
    pub phase: PhaseBody,
    pub load: LoadSummaryBody,
    pub delta: Option<PositionBody>,
    pub updated_at: String,
    #[serde(flatten)]
    pub meta: VersionMeta,
}

impl From<VersionSummary> for VersionSummaryBody {
    fn from(s: VersionSummary) -> VersionSummaryBody {
        let meta = VersionMeta::of(&s.version);
        let b = s.version.bookmark;
        VersionSummaryBody {
            stream: s.version.stream.to_string(),
            version: b.version,
            phase: b.phase.into(),
            load: LoadSummaryBody {
                files_done_count: s.files_done,
                high_water: b.load.high_water,
                cdc_start: b.load.cdc_start.map(PositionBody::from),
            },
            delta: b.delta.map(PositionBody::from),
            updated_at: b.updated_at.to_rfc3339(),
            meta,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryPage {
    /// Oldest first; at most `limit`, and at most 1 MiB of them.
    pub versions: Vec<VersionSummaryBody>,
    /// Pass as `after_version` for the next page; absent on the last page.
    pub next_after_version: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RewindBody {
    /// Restore this version...
    #[serde(default)]
    #[schema(minimum = 1)]
    pub to_version: Option<i64>,
    /// ...or the last version written at or before this instant (RFC 3339).
    #[serde(default)]
    #[schema(
        pattern = r"^[0-9]{4}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|[12][0-9]))[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]|[+-][0-9]):([0-5][0-9]|[+-][0-9]))$"
    )]
    pub to_time: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub reason: String,
}
