//! Request and response bodies of API v1, and their validation.

use crate::error::ApiError;
use crate::snapshot_dto::LogFreshnessBody;
use serde::{Deserialize, Serialize};
use sluice_core::{Event, Lease, LeaseState, Millis, Mode, TableSettings};
use sluice_store::{LeaseView, TableSummary};
use utoipa::{IntoParams, ToSchema};

pub const MAX_TTL_SECONDS: u32 = 24 * 3600;
pub const MAX_WAIT_SECONDS: u32 = 300;
pub const MAX_DEFERRAL_SECONDS: u32 = 30 * 24 * 3600;
pub const MAX_SHORT_TEXT: usize = 256;
const MAX_LONG_TEXT: usize = 1024;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LeaseMode {
    /// Hydration: readers share the table.
    Read,
    /// Compaction or maintenance: excludes every other lease.
    Write,
}

impl From<LeaseMode> for Mode {
    fn from(mode: LeaseMode) -> Mode {
        match mode {
            LeaseMode::Read => Mode::Read,
            LeaseMode::Write => Mode::Write,
        }
    }
}

impl From<Mode> for LeaseMode {
    fn from(mode: Mode) -> LeaseMode {
        match mode {
            Mode::Read => LeaseMode::Read,
            Mode::Write => LeaseMode::Write,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LeaseStateBody {
    Waiting,
    Granted,
    Released,
    Cancelled,
    Expired,
    Revoked,
}

impl From<LeaseState> for LeaseStateBody {
    fn from(state: LeaseState) -> LeaseStateBody {
        match state {
            LeaseState::Waiting => LeaseStateBody::Waiting,
            LeaseState::Granted => LeaseStateBody::Granted,
            LeaseState::Released => LeaseStateBody::Released,
            LeaseState::Cancelled => LeaseStateBody::Cancelled,
            LeaseState::Expired => LeaseStateBody::Expired,
            LeaseState::Revoked => LeaseStateBody::Revoked,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcquireBody {
    pub mode: LeaseMode,
    /// Who asks, e.g. the Glue job run id.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200A\u200E\u200F\u2028-\u202F\u205F\u2066-\u2069\u3000][^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub holder: String,
    /// 1 to 86400.
    #[schema(minimum = 1, maximum = 86400)]
    pub ttl_seconds: i64,
    /// Long-poll up to this many seconds for the grant (0, the default, answers at once; at most 300).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 300)]
    pub wait_seconds: Option<i64>,
    /// A retried acquire with the same key returns the same lease.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub purpose: Option<String>,
    /// The Iceberg snapshot a reader still needs (read leases only).
    #[serde(default)]
    pub pin_snapshot_id: Option<i64>,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    /// The lease's token; required to prove a grant, optional while waiting.
    #[serde(default)]
    pub token: Option<i64>,
    /// A new TTL from now (1 to 86400); the lease's own TTL if absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub ttl_seconds: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub reason: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReleaseParams {
    /// The lease's token; absent to cancel a waiting lease.
    pub token: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitParams {
    /// Long-poll while the lease is waiting, up to this many seconds (at most 300).
    #[param(minimum = 0, maximum = 300)]
    pub wait_seconds: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LeaseBody {
    pub lease_id: String,
    pub table: String,
    pub mode: LeaseMode,
    pub state: LeaseStateBody,
    pub holder: String,
    /// The fencing token, once granted: strictly increasing per table.
    pub token: Option<i64>,
    /// 1-based place in the queue, while waiting.
    pub position: Option<u32>,
    pub ttl_seconds: u32,
    pub requested_at: String,
    pub granted_at: Option<String>,
    /// A live lease is valid only until this instant (server clock).
    pub expires_at: String,
    pub ended_at: Option<String>,
    pub end_reason: Option<String>,
    pub purpose: Option<String>,
    pub idempotency_key: Option<String>,
    pub pin_snapshot_id: Option<i64>,
}

impl LeaseBody {
    pub fn new(lease: Lease, position: Option<u32>) -> LeaseBody {
        LeaseBody {
            lease_id: lease.id.to_string(),
            table: lease.table.to_string(),
            mode: lease.mode.into(),
            state: lease.state.into(),
            holder: lease.holder,
            token: lease.token,
            position,
            ttl_seconds: lease.ttl_seconds,
            requested_at: lease.requested_at.to_rfc3339(),
            granted_at: lease.granted_at.map(Millis::to_rfc3339),
            expires_at: lease.expires_at.to_rfc3339(),
            ended_at: lease.ended_at.map(Millis::to_rfc3339),
            end_reason: lease.end_reason,
            purpose: lease.purpose,
            idempotency_key: lease.idempotency_key,
            pin_snapshot_id: lease.pin_snapshot_id,
        }
    }
}

impl From<LeaseView> for LeaseBody {
    fn from(view: LeaseView) -> LeaseBody {
        LeaseBody::new(view.lease, view.position)
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TableLeasesBody {
    pub table: String,
    /// Granted leases, oldest first.
    pub holders: Vec<LeaseBody>,
    /// Waiting leases in queue order.
    pub waiters: Vec<LeaseBody>,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutTableBody {
    /// How long a waiting write (compaction) request lets new readers pass
    /// it before they queue behind it. Default 86400 (24 h); 0 to 2592000.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2592000)]
    pub max_compaction_deferral_seconds: Option<i64>,
    /// The catalog the table lives in.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255, pattern = r"^[A-Za-z0-9_.-]+$")]
    pub catalog: Option<String>,
    /// The Glue job that compacts the table.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255, pattern = r"^[A-Za-z0-9_.-]+$")]
    pub compaction_job: Option<String>,
    /// Mirror hydrations' pins as tags in this table's metadata (`true`),
    /// or never (`false`: other engines' snapshot expiry may then remove
    /// what a copy still needs). Absent: as the table's catalog is
    /// configured. A change writes or takes back its copies' tags.
    #[serde(default)]
    pub pin_tags: Option<bool>,
}

impl PutTableBody {
    pub fn settings(self) -> Result<TableSettings, ApiError> {
        let deferral = match self.max_compaction_deferral_seconds {
            None => sluice_core::leases::DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS,
            Some(s) => in_range(
                "max_compaction_deferral_seconds",
                s,
                0,
                MAX_DEFERRAL_SECONDS,
            )?,
        };
        Ok(TableSettings {
            max_compaction_deferral_seconds: deferral,
            catalog: plain_name("catalog", self.catalog)?,
            compaction_job: plain_name("compaction_job", self.compaction_job)?,
            pin_tags: self.pin_tags,
        })
    }
}

/// A name another setting refers to: a catalog is named in the
/// configuration (`[catalogs.NAME]`), a job by `PUT /v1/jobs/{name}`, both
/// by the same plain characters, so that nothing invisible or reordering
/// (U+202E) reaches a listing.
fn plain_name(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    let value = optional_text(field, value, MAX_SHORT_TEXT)?;
    if let Some(name) = &value {
        sluice_core::scheduling::job::check_name(name).map_err(|_| {
            ApiError::invalid(format!(
                "{field} `{}` must be 1-255 letters, digits, `_`, `-` or `.`",
                name.escape_debug()
            ))
        })?;
    }
    Ok(value)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TableBody {
    pub table: String,
    pub max_compaction_deferral_seconds: u32,
    pub catalog: Option<String>,
    pub compaction_job: Option<String>,
    /// Whether its copies' pins are tags in its metadata; absent: as its
    /// catalog is configured.
    pub pin_tags: Option<bool>,
    /// The last fencing token issued on the table (0: none yet).
    pub last_token: i64,
    pub holders: u32,
    pub waiters: u32,
    pub created_at: String,
    pub updated_at: String,
    /// How fresh the table's snapshot log is (`GET /v1/tables/{table}`
    /// only; absent in listings, and before the log was first checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_log: Option<LogFreshnessBody>,
}

impl From<TableSummary> for TableBody {
    fn from(summary: TableSummary) -> TableBody {
        let s = summary.state;
        TableBody {
            table: s.name.to_string(),
            max_compaction_deferral_seconds: s.settings.max_compaction_deferral_seconds,
            catalog: s.settings.catalog,
            compaction_job: s.settings.compaction_job,
            pin_tags: s.settings.pin_tags,
            last_token: s.last_token,
            holders: summary.holders,
            waiters: summary.waiters,
            created_at: s.created_at.to_rfc3339(),
            updated_at: s.updated_at.to_rfc3339(),
            snapshot_log: None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TablesPage {
    pub tables: Vec<TableBody>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Return names after this one.
    #[param(
        max_length = 1024,
        pattern = r"^([^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*)?$"
    )]
    pub after: Option<String>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TablesParams {
    /// Return names after this one.
    #[param(
        max_length = 1024,
        pattern = r"^([^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*)?$"
    )]
    pub after: Option<String>,
    /// Only tables whose names start with this (e.g. `sales.`).
    #[param(
        max_length = 1024,
        pattern = r"^([^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*)?$"
    )]
    pub prefix: Option<String>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Return events with a larger id (default 0: from the start).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Only this table's events (a stream's events name the table it feeds).
    #[param(max_length = 255, pattern = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$")]
    pub table: Option<String>,
    /// Only this stream's events.
    #[param(max_length = 255, pattern = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")]
    pub stream: Option<String>,
    /// Only this kind, e.g. `lease_granted`.
    #[param(value_type = Option<EventKindName>, inline)]
    pub kind: Option<String>,
    /// Without `after` (or `Last-Event-ID`): start this many event ids
    /// before the newest, to see only the latest events and what follows.
    #[param(minimum = 0, maximum = 100000)]
    pub tail: Option<i64>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventBody {
    /// Strictly increasing, in commit order.
    pub id: i64,
    pub at: String,
    pub kind: String,
    /// The table it is about; absent for a job run that names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    pub lease_id: Option<String>,
    /// For a stream's events: the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// The principal whose call caused it (`anonymous` without
    /// authentication); absent for the server's own work, such as expiry.
    pub actor: Option<String>,
}

impl From<Event> for EventBody {
    fn from(e: Event) -> EventBody {
        EventBody {
            id: e.id,
            at: e.event.at.to_rfc3339(),
            kind: e.event.kind.as_str().to_owned(),
            table: e.event.table.map(String::from),
            lease_id: e.event.lease_id.map(|l| l.to_string()),
            stream: e.event.stream.map(String::from),
            data: e.event.data,
            actor: e.event.actor,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventsPage {
    pub events: Vec<EventBody>,
    /// Pass as `after` to continue; equals the request's `after` when empty.
    pub next_after: i64,
}

/// An integer field within bounds, or a 422 naming the field.
pub fn in_range(field: &str, value: i64, min: u32, max: u32) -> Result<u32, ApiError> {
    if value < i64::from(min) || value > i64::from(max) {
        return Err(ApiError::invalid(format!(
            "{field} must be between {min} and {max}, got {value}"
        )));
    }
    Ok(value as u32)
}

// What the spec says of the text these checks take, as `pattern`s in the
// DTOs' `#[schema]`/`#[param]` attributes (utoipa takes only literals there,
// so each is spelled out where it is used), so that generated requests
// (schemathesis, a client's validation) get past them:
// - `text`: `^[^C]*[^CW][^C]*$`, C the control characters
//   (`char::is_control`: U+0000-U+001F, U+007F-U+009F) and W the rest of
//   what `trim` removes (U+0020, U+00A0, U+1680, U+2000-U+200A, U+2028,
//   U+2029, U+202F, U+205F, U+3000); optional text in a query adds `(...)?`
//   (an empty `after` is no `after`);
// - `identity_text`: the same with the bidirectional controls of
//   `is_bidi_control` added to C;
// - text only checked non-blank (`glue_job_name`, `requested_by`):
//   `^[\s\S]*[^W'][\s\S]*$`, W' all of `trim`'s whitespace.
// Like the path parameters' patterns (`PathParameters` in lib.rs) they may
// be looser than their check, never stricter: a value the spec calls
// invalid must be refused (the fuzz checks it). Looser here: lengths, which
// the spec counts in characters and these checks in bytes.

/// Non-empty text of bounded length, without control characters (which
/// PostgreSQL cannot store, in the case of NUL, and no name needs).
pub fn text(field: &str, value: String, max: usize) -> Result<String, ApiError> {
    if value.trim().is_empty() || value.len() > max {
        return Err(ApiError::invalid(format!(
            "{field} must be 1 to {max} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(value)
}

pub fn optional_text(
    field: &str,
    value: Option<String>,
    max: usize,
) -> Result<Option<String>, ApiError> {
    value.map(|v| text(field, v, max)).transpose()
}

pub fn holder(value: String) -> Result<String, ApiError> {
    identity_text("holder", value, MAX_SHORT_TEXT)
}

/// Text that names who acts (a holder, a run): also without the Unicode
/// controls that reorder how it is shown (U+202E makes `evil\u{202E}txt.exe`
/// read as `evilexe.txt`), so that what an operator reads is what it is.
pub fn identity_text(field: &str, value: String, max: usize) -> Result<String, ApiError> {
    let value = text(field, value, max)?;
    if value.chars().any(is_bidi_control) {
        return Err(ApiError::invalid(format!(
            "{field} must not contain bidirectional text controls"
        )));
    }
    Ok(value)
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A free JSON document whose keys and strings have no control characters
/// (PostgreSQL cannot store NUL; no description needs the others).
pub fn clean_json(field: &str, value: &serde_json::Value) -> Result<(), ApiError> {
    let dirty = |s: &str| s.chars().any(char::is_control);
    let found = match value {
        serde_json::Value::String(s) => dirty(s),
        serde_json::Value::Array(items) => {
            return items.iter().try_for_each(|v| clean_json(field, v));
        }
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                if dirty(key) {
                    return Err(ApiError::invalid(format!(
                        "{field} must not contain control characters (in a key)"
                    )));
                }
                clean_json(field, v)?;
            }
            false
        }
        _ => false,
    };
    if found {
        return Err(ApiError::invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

pub fn purpose(value: Option<String>) -> Result<Option<String>, ApiError> {
    optional_text("purpose", value, MAX_LONG_TEXT)
}

pub fn idempotency_key(value: Option<String>) -> Result<Option<String>, ApiError> {
    optional_text("idempotency_key", value, MAX_SHORT_TEXT)
}

pub fn reason(value: String) -> Result<String, ApiError> {
    text("reason", value, MAX_LONG_TEXT)
}

pub fn limit(value: Option<i64>) -> Result<u32, ApiError> {
    value.map_or(Ok(100), |v| in_range("limit", v, 1, 1000))
}

/// A string field that takes one of a fixed set of names, as the spec
/// says it: an enum of the server's own list, so that it cannot drift.
pub(crate) fn name_enum<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(names))
        .into()
}

/// The schema of an event kind filter (`kind=lease_granted`).
pub struct EventKindName;

impl utoipa::PartialSchema for EventKindName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        name_enum(sluice_core::EventKind::ALL.iter().map(|k| k.as_str()))
    }
}

impl ToSchema for EventKindName {}

/// The schema of a hydration state filter (`state=live`).
pub struct HydrationStateName;

impl utoipa::PartialSchema for HydrationStateName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        name_enum(
            sluice_core::hydrations::HydrationState::ALL
                .iter()
                .map(|s| s.as_str()),
        )
    }
}

impl ToSchema for HydrationStateName {}
