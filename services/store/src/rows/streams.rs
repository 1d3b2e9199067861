//! Stream, batch and bookmark-version rows as both SQL dialects hold them.
//! The bookmark's sections, counts and the source are JSON text.
//!
//! Writes travel as one JSON array per table whose objects are keyed by
//! column name: SQLite reads it with `json_each`, PostgreSQL with
//! `jsonb_populate_recordset`, so both dialects share one encoding.

use super::corrupt;
use crate::error::StoreError;
use crate::ports::VersionSummary;
use crate::streams::NewVersion;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use sluice_core::streams::{
    Batch, BatchState, Bookmark, BookmarkVersion, Cause, LoadProgress, Phase, Position,
    StreamSettings, StreamState,
};
use sluice_core::{Millis, StreamName, TableName};
use std::collections::BTreeSet;

pub const STREAM_COLUMNS: &str = "name, table_name, source, expected_schema_hash, \
     bookmark_version, phase, load, delta, bookmark_updated_at, last_token, created_at, updated_at";

pub const BATCH_COLUMNS: &str = "id, stream_name, run_id, state, token, base_version, \
     ttl_seconds, opened_at, expires_at, ended_at, end_reason, counts, snapshot_id, schema_hash, result, principal";

pub const VERSION_COLUMNS: &str = "stream_name, version, phase, load, delta, at, cause, \
     batch_id, run_id, counts, snapshot_id, rewound_to, actor, reason";

/// A stream's header changes; its name, table and creation never do.
pub const UPSERT_STREAM_CONFLICT: &str = "ON CONFLICT (name) DO UPDATE SET \
     source = excluded.source, expected_schema_hash = excluded.expected_schema_hash, \
     bookmark_version = excluded.bookmark_version, phase = excluded.phase, load = excluded.load, \
     delta = excluded.delta, bookmark_updated_at = excluded.bookmark_updated_at, \
     last_token = excluded.last_token, updated_at = excluded.updated_at";

/// A batch is inserted open, then only its end and its heartbeat change.
pub const UPSERT_BATCH_CONFLICT: &str = "ON CONFLICT (id) DO UPDATE SET \
     state = excluded.state, ttl_seconds = excluded.ttl_seconds, expires_at = excluded.expires_at, \
     ended_at = excluded.ended_at, end_reason = excluded.end_reason, counts = excluded.counts, \
     snapshot_id = excluded.snapshot_id, schema_hash = excluded.schema_hash, result = excluded.result";

#[derive(sqlx::FromRow)]
pub struct StreamRow {
    pub name: String,
    pub table_name: String,
    pub source: String,
    pub expected_schema_hash: Option<String>,
    pub bookmark_version: i64,
    pub phase: String,
    pub load: String,
    pub delta: Option<String>,
    pub bookmark_updated_at: i64,
    pub last_token: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
pub struct BatchRow {
    pub id: String,
    pub stream_name: String,
    pub run_id: String,
    pub state: String,
    pub token: i64,
    pub base_version: i64,
    pub ttl_seconds: i64,
    pub opened_at: i64,
    pub expires_at: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    pub counts: Option<String>,
    pub snapshot_id: Option<i64>,
    pub schema_hash: Option<String>,
    pub result: Option<String>,
    pub principal: Option<String>,
}

#[derive(sqlx::FromRow)]
pub struct VersionRow {
    pub stream_name: String,
    pub version: i64,
    pub phase: String,
    pub load: String,
    pub delta: Option<String>,
    pub at: i64,
    pub cause: String,
    pub batch_id: Option<String>,
    pub run_id: Option<String>,
    pub counts: Option<String>,
    pub snapshot_id: Option<i64>,
    pub rewound_to: Option<i64>,
    pub actor: Option<String>,
    pub reason: Option<String>,
}

/// A version row whose `load` lost its file list, and that list's length.
#[derive(sqlx::FromRow)]
pub struct SummaryRow {
    #[sqlx(flatten)]
    pub version: VersionRow,
    pub files_done_count: i64,
}

impl TryFrom<SummaryRow> for VersionSummary {
    type Error = StoreError;
    fn try_from(r: SummaryRow) -> Result<VersionSummary, StoreError> {
        Ok(VersionSummary {
            files_done: usize::try_from(r.files_done_count)
                .map_err(|_| corrupt("files_done count", &r.files_done_count.to_string()))?,
            version: r.version.try_into()?,
        })
    }
}

/// The columns of a version row in `VERSION_COLUMNS` order, with `load`
/// replaced by `load` (the dialect's expression for it without its file
/// list) and `files_done_count` (the list's length) appended.
pub fn summary_columns(load: &str, files_done_count: &str) -> String {
    let columns: Vec<&str> = VERSION_COLUMNS
        .split(',')
        .map(str::trim)
        .map(|c| if c == "load" { load } else { c })
        .collect();
    format!(
        "{}, {files_done_count} AS files_done_count",
        columns.join(", ")
    )
}

fn parse_json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|_| corrupt(what, text))
}

fn parse_opt<T: DeserializeOwned>(
    what: &str,
    text: Option<String>,
) -> Result<Option<T>, StoreError> {
    text.map(|t| parse_json(what, &t)).transpose()
}

fn stream_name(raw: &str) -> Result<StreamName, StoreError> {
    StreamName::parse(raw).map_err(|_| corrupt("stream", raw))
}

fn phase(raw: &str) -> Result<Phase, StoreError> {
    Phase::parse(raw).ok_or_else(|| corrupt("phase", raw))
}

impl TryFrom<StreamRow> for StreamState {
    type Error = StoreError;
    fn try_from(r: StreamRow) -> Result<StreamState, StoreError> {
        Ok(StreamState {
            name: stream_name(&r.name)?,
            settings: StreamSettings {
                table: TableName::parse(&r.table_name)
                    .map_err(|_| corrupt("table", &r.table_name))?,
                source: parse_json("source", &r.source)?,
                expected_schema_hash: r.expected_schema_hash,
            },
            bookmark: Bookmark {
                version: r.bookmark_version,
                phase: phase(&r.phase)?,
                load: parse_json::<LoadProgress>("load", &r.load)?,
                delta: parse_opt("delta", r.delta)?,
                updated_at: Millis(r.bookmark_updated_at),
            },
            last_token: r.last_token,
            created_at: Millis(r.created_at),
            updated_at: Millis(r.updated_at),
            batches: Vec::new(),
            versions: Vec::new(),
            skew_margin: Millis(0),
        })
    }
}

impl TryFrom<BatchRow> for Batch {
    type Error = StoreError;
    fn try_from(r: BatchRow) -> Result<Batch, StoreError> {
        Ok(Batch {
            id: r.id.parse().map_err(|_| corrupt("batch id", &r.id))?,
            stream: stream_name(&r.stream_name)?,
            run_id: r.run_id,
            state: BatchState::parse(&r.state).ok_or_else(|| corrupt("batch state", &r.state))?,
            token: r.token,
            base_version: r.base_version,
            ttl_seconds: u32::try_from(r.ttl_seconds)
                .map_err(|_| corrupt("ttl", &r.ttl_seconds.to_string()))?,
            opened_at: Millis(r.opened_at),
            expires_at: Millis(r.expires_at),
            ended_at: r.ended_at.map(Millis),
            end_reason: r.end_reason,
            counts: parse_opt("counts", r.counts)?,
            snapshot_id: r.snapshot_id,
            schema_hash: r.schema_hash,
            result: parse_opt("result", r.result)?,
            principal: r.principal,
        })
    }
}

/// A version row whose `load` is whole (it lists `files_done`).
impl TryFrom<VersionRow> for BookmarkVersion {
    type Error = StoreError;
    fn try_from(r: VersionRow) -> Result<BookmarkVersion, StoreError> {
        let load = parse_json("load", &r.load)?;
        version_of(r, load)
    }
}

fn version_of(r: VersionRow, load: LoadProgress) -> Result<BookmarkVersion, StoreError> {
    Ok(BookmarkVersion {
        stream: stream_name(&r.stream_name)?,
        bookmark: Bookmark {
            version: r.version,
            phase: phase(&r.phase)?,
            load,
            delta: parse_opt("delta", r.delta)?,
            updated_at: Millis(r.at),
        },
        cause: Cause::parse(&r.cause).ok_or_else(|| corrupt("cause", &r.cause))?,
        batch_id: match r.batch_id {
            Some(id) => Some(id.parse().map_err(|_| corrupt("batch id", &id))?),
            None => None,
        },
        run_id: r.run_id,
        counts: parse_opt("counts", r.counts)?,
        snapshot_id: r.snapshot_id,
        rewound_to: r.rewound_to,
        actor: r.actor,
        reason: r.reason,
    })
}

// How a version's load is stored. A committed batch can only add files to
// the version before it (the rules refuse a commit that drops one), so a
// batch version whose list is long keeps only the files it added, with
// the list's length; a created, rewound or reset version keeps its whole
// list, and so does every `WHOLE_EVERY`th. Read back, a version adds up
// the files from the last whole one: at most `WHOLE_EVERY` rows, however
// long the history. A full load of 20,000 files then costs its list once
// (and once per `WHOLE_EVERY` versions), not once per version.

/// Lists up to this long are stored whole: cheaper than adding up.
const WHOLE_UP_TO: usize = 64;
/// One version in this many is stored whole.
pub const WHOLE_EVERY: i64 = 256;

/// The load of a version stored as what it added to the one before.
#[derive(serde::Serialize, serde::Deserialize)]
struct AddedLoad {
    files_added: Vec<String>,
    files_done_count: usize,
    high_water: Option<String>,
    cdc_start: Option<Position>,
}

/// The `load` column of a new version, given the files of the version
/// before it.
pub fn stored_load(v: &BookmarkVersion, previous: Option<&[String]>) -> String {
    let load = &v.bookmark.load;
    let delta_worthy = v.cause == Cause::Batch
        && load.files_done.len() > WHOLE_UP_TO
        && v.bookmark.version % WHOLE_EVERY != 0;
    match previous
        .filter(|_| delta_worthy)
        .and_then(|p| added(p, &load.files_done))
    {
        Some(files_added) => text(&AddedLoad {
            files_added,
            files_done_count: load.files_done.len(),
            high_water: load.high_water.clone(),
            cdc_start: load.cdc_start.clone(),
        }),
        None => text(load),
    }
}

/// `files` less `previous` (both sorted, each once), if `files` holds all
/// of `previous`.
fn added(previous: &[String], files: &[String]) -> Option<Vec<String>> {
    let mut rest = previous.iter().peekable();
    let mut added = Vec::new();
    for file in files {
        if rest.peek() == Some(&file) {
            rest.next();
        } else {
            added.push(file.clone());
        }
    }
    rest.peek().is_none().then_some(added)
}

/// Whether a stored load is whole, not what it added to the version before
/// (told apart as [`rebuild_load`] does).
pub fn is_whole(load: &str) -> bool {
    serde_json::from_str::<AddedLoad>(load).is_err()
}

/// The last of `chain` (one stream's version rows, oldest first, starting
/// at a whole one) whole: the files of those before it added up.
pub fn rebuild(mut chain: Vec<VersionRow>) -> Result<Option<BookmarkVersion>, StoreError> {
    let load = rebuild_load(chain.iter().map(|row| row.load.as_str()))?;
    match (chain.pop(), load) {
        (Some(row), Some(load)) => version_of(row, load).map(Some),
        _ => Ok(None),
    }
}

/// The last of `loads` (the stored loads of a chain as [`rebuild`] takes
/// it, in any backend's layout) whole.
pub fn rebuild_load<'a>(
    loads: impl IntoIterator<Item = &'a str>,
) -> Result<Option<LoadProgress>, StoreError> {
    let mut files: Option<BTreeSet<String>> = None;
    let mut last = None;
    for stored in loads {
        let load = match serde_json::from_str::<AddedLoad>(stored) {
            Ok(added) => {
                let done = files
                    .as_mut()
                    .ok_or_else(|| corrupt("version chain without a whole start", stored))?;
                done.extend(added.files_added);
                if done.len() != added.files_done_count {
                    return Err(corrupt("files_done_count", stored));
                }
                LoadProgress {
                    files_done: Vec::new(),
                    high_water: added.high_water,
                    cdc_start: added.cdc_start,
                }
            }
            Err(_) => {
                let mut whole: LoadProgress = parse_json("load", stored)?;
                files = Some(std::mem::take(&mut whole.files_done).into_iter().collect());
                whole
            }
        };
        last = Some(load);
    }
    let Some(mut load) = last else {
        return Ok(None);
    };
    load.files_done = files.unwrap_or_default().into_iter().collect();
    Ok(Some(load))
}

fn text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("stream values serialize")
}

fn opt_text<T: serde::Serialize>(value: &Option<T>) -> Option<String> {
    value.as_ref().map(text)
}

pub fn stream_json(s: &StreamState) -> Value {
    json!({
        "name": s.name.as_str(), "table_name": s.settings.table.as_str(),
        "source": text(&s.settings.source), "expected_schema_hash": s.settings.expected_schema_hash,
        "bookmark_version": s.bookmark.version, "phase": s.bookmark.phase.as_str(),
        "load": text(&s.bookmark.load), "delta": opt_text(&s.bookmark.delta),
        "bookmark_updated_at": s.bookmark.updated_at.0, "last_token": s.last_token,
        "created_at": s.created_at.0, "updated_at": s.updated_at.0,
    })
}

pub fn batch_json(b: &Batch) -> Value {
    json!({
        "id": b.id.to_string(), "stream_name": b.stream.as_str(), "run_id": b.run_id,
        "state": b.state.as_str(), "token": b.token, "base_version": b.base_version,
        "ttl_seconds": b.ttl_seconds, "opened_at": b.opened_at.0, "expires_at": b.expires_at.0,
        "ended_at": b.ended_at.map(|m| m.0), "end_reason": b.end_reason,
        "counts": opt_text(&b.counts), "snapshot_id": b.snapshot_id,
        "schema_hash": b.schema_hash, "result": opt_text(&b.result),
        "principal": b.principal,
    })
}

pub fn version_json(new: &NewVersion) -> Value {
    let v = &new.version;
    json!({
        "stream_name": v.stream.as_str(), "version": v.bookmark.version,
        "phase": v.bookmark.phase.as_str(), "load": new.load,
        "delta": opt_text(&v.bookmark.delta), "at": v.bookmark.updated_at.0,
        "cause": v.cause.as_str(), "batch_id": v.batch_id.map(|b| b.to_string()),
        "run_id": v.run_id, "counts": opt_text(&v.counts), "snapshot_id": v.snapshot_id,
        "rewound_to": v.rewound_to, "actor": v.actor, "reason": v.reason,
    })
}

/// A JSON array of rows, as the write statements take it.
pub fn rows_json<T>(items: &[T], row: impl Fn(&T) -> Value) -> String {
    Value::Array(items.iter().map(row).collect()).to_string()
}

/// Put open batches into their streams (listing reads).
pub fn with_open_batches(
    rows: Vec<StreamRow>,
    open: Vec<BatchRow>,
) -> Result<Vec<StreamState>, StoreError> {
    let mut streams: Vec<StreamState> = rows
        .into_iter()
        .map(StreamState::try_from)
        .collect::<Result<_, _>>()?;
    for batch in open {
        let batch = Batch::try_from(batch)?;
        if let Some(stream) = streams.iter_mut().find(|s| s.name == batch.stream) {
            stream.batches.push(batch);
        }
    }
    Ok(streams)
}
