//! Rows as both databases return them, and their mapping to domain types.

use sluice_core::{
    Event, EventKind, Lease, LeaseId, LeaseState, Millis, Mode, NewEvent, StreamName, TableName,
    TableSettings, TableState,
};

use crate::{StoreError, TableSummary};
use std::collections::HashMap;

pub const LEASE_COLUMNS: &str = "id, table_name, seq, mode, holder, purpose, state, token, \
     ttl_seconds, requested_at, granted_at, expires_at, ended_at, end_reason, \
     idempotency_key, pin_snapshot_id";

pub const TABLE_COLUMNS: &str = "name, catalog, compaction_job, max_compaction_deferral_seconds, \
     last_token, last_seq, created_at, updated_at";

#[derive(sqlx::FromRow)]
pub struct LeaseRow {
    pub id: String,
    pub table_name: String,
    pub seq: i64,
    pub mode: String,
    pub holder: String,
    pub purpose: Option<String>,
    pub state: String,
    pub token: Option<i64>,
    pub ttl_seconds: i64,
    pub requested_at: i64,
    pub granted_at: Option<i64>,
    pub expires_at: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    pub idempotency_key: Option<String>,
    pub pin_snapshot_id: Option<i64>,
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} `{value}`"))
}

impl TryFrom<LeaseRow> for Lease {
    type Error = StoreError;
    fn try_from(r: LeaseRow) -> Result<Lease, StoreError> {
        Ok(Lease {
            id: r.id.parse().map_err(|_| corrupt("lease id", &r.id))?,
            table: TableName::parse(&r.table_name).map_err(|_| corrupt("table", &r.table_name))?,
            seq: r.seq,
            mode: Mode::parse(&r.mode).ok_or_else(|| corrupt("mode", &r.mode))?,
            holder: r.holder,
            purpose: r.purpose,
            state: LeaseState::parse(&r.state).ok_or_else(|| corrupt("state", &r.state))?,
            token: r.token,
            ttl_seconds: u32::try_from(r.ttl_seconds)
                .map_err(|_| corrupt("ttl", &r.ttl_seconds.to_string()))?,
            requested_at: Millis(r.requested_at),
            granted_at: r.granted_at.map(Millis),
            expires_at: Millis(r.expires_at),
            ended_at: r.ended_at.map(Millis),
            end_reason: r.end_reason,
            idempotency_key: r.idempotency_key,
            pin_snapshot_id: r.pin_snapshot_id,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct TableRow {
    pub name: String,
    pub catalog: Option<String>,
    pub compaction_job: Option<String>,
    pub max_compaction_deferral_seconds: i64,
    pub last_token: i64,
    pub last_seq: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<TableRow> for TableState {
    type Error = StoreError;
    fn try_from(r: TableRow) -> Result<TableState, StoreError> {
        Ok(TableState {
            name: TableName::parse(&r.name).map_err(|_| corrupt("table", &r.name))?,
            settings: TableSettings {
                max_compaction_deferral_seconds: u32::try_from(r.max_compaction_deferral_seconds)
                    .unwrap_or(u32::MAX),
                catalog: r.catalog,
                compaction_job: r.compaction_job,
            },
            last_token: r.last_token,
            last_seq: r.last_seq,
            created_at: Millis(r.created_at),
            updated_at: Millis(r.updated_at),
            live: Vec::new(),
            finished: Vec::new(),
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub table_name: Option<String>,
    pub lease_id: Option<String>,
    pub data: String,
    pub actor: Option<String>,
    pub stream_name: Option<String>,
}

/// Columns of [`EventRow`], for SELECTs.
pub const EVENT_COLUMNS: &str = "id, at, kind, table_name, lease_id, data, actor, stream_name";

/// New events as a JSON array of rows keyed by column name.
pub fn events_json(events: &[NewEvent]) -> String {
    let rows: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            serde_json::json!({
                "at": e.at.0, "kind": e.kind.as_str(), "table_name": e.table.as_str(),
                "lease_id": e.lease_id.map(|l| l.to_string()), "data": e.data.to_string(),
                "actor": e.actor, "stream_name": e.stream.as_ref().map(|s| s.as_str()),
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

impl TryFrom<EventRow> for Event {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<Event, StoreError> {
        let table = r.table_name.unwrap_or_default();
        Ok(Event {
            id: r.id,
            event: NewEvent {
                at: Millis(r.at),
                kind: EventKind::parse(&r.kind).ok_or_else(|| corrupt("event kind", &r.kind))?,
                table: TableName::parse(&table).map_err(|_| corrupt("table", &table))?,
                lease_id: match r.lease_id {
                    Some(id) => Some(
                        id.parse::<LeaseId>()
                            .map_err(|_| corrupt("lease id", &id))?,
                    ),
                    None => None,
                },
                stream: match r.stream_name {
                    Some(s) => Some(StreamName::parse(&s).map_err(|_| corrupt("stream", &s))?),
                    None => None,
                },
                data: serde_json::from_str(&r.data).map_err(|_| corrupt("event data", &r.data))?,
                actor: r.actor,
            },
        })
    }
}

pub const LIVE: &str = "state IN ('waiting', 'granted')";

/// The upsert both dialects accept: a lease row is inserted once and then
/// only its state, token, timestamps and TTL change.
pub const UPSERT_LEASE_CONFLICT: &str = "ON CONFLICT (id) DO UPDATE SET \
     state = excluded.state, token = excluded.token, ttl_seconds = excluded.ttl_seconds, \
     granted_at = excluded.granted_at, expires_at = excluded.expires_at, \
     ended_at = excluded.ended_at, end_reason = excluded.end_reason";

/// Read a lease and its place in the queue, from either database's pool
/// (both dialects accept `$n` parameters).
macro_rules! read_lease {
    ($pool:expr, $id:expr) => {{
        let row: Option<$crate::rows::LeaseRow> = sqlx::query_as(&format!(
            "SELECT {} FROM leases WHERE id = $1",
            $crate::rows::LEASE_COLUMNS
        ))
        .bind($id.to_string())
        .fetch_optional($pool)
        .await?;
        match row {
            None => Ok(None),
            Some(row) => {
                let lease = sluice_core::Lease::try_from(row)?;
                let position = match lease.state {
                    sluice_core::LeaseState::Waiting => {
                        let ahead: i64 = sqlx::query_scalar(
                            "SELECT COUNT(*) FROM leases WHERE table_name = $1 AND state = 'waiting' AND seq < $2",
                        )
                        .bind(lease.table.as_str())
                        .bind(lease.seq)
                        .fetch_one($pool)
                        .await?;
                        Some(ahead as u32 + 1)
                    }
                    _ => None,
                };
                Ok(Some($crate::LeaseView { lease, position }))
            }
        }
    }};
}
pub(crate) use read_lease;

pub(crate) fn parse_names(names: Vec<String>) -> Result<Vec<TableName>, StoreError> {
    names
        .into_iter()
        .map(|n| TableName::parse(&n).map_err(|e| StoreError::Corrupt(e.0)))
        .collect()
}

/// Join table rows with their live holder and waiter counts.
pub(crate) fn summaries(
    rows: Vec<TableRow>,
    counts: Vec<(String, String, i64)>,
) -> Result<Vec<TableSummary>, StoreError> {
    let mut by_table: HashMap<String, (u32, u32)> = HashMap::new();
    for (table, state, n) in counts {
        let entry = by_table.entry(table).or_default();
        match state.as_str() {
            "granted" => entry.0 = n as u32,
            _ => entry.1 = n as u32,
        }
    }
    rows.into_iter()
        .map(|row| {
            let (holders, waiters) = by_table.get(&row.name).copied().unwrap_or_default();
            Ok(TableSummary {
                state: TableState::try_from(row)?,
                holders,
                waiters,
            })
        })
        .collect()
}
