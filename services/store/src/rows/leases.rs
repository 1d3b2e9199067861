//! Table and lease rows as both SQL dialects hold them, and their mapping
//! to domain types.

use super::corrupt;
use crate::error::StoreError;
use crate::ports::TableSummary;
use sluice_core::{Lease, LeaseState, Millis, Mode, TableName, TableSettings, TableState};
use std::collections::HashMap;

pub const LEASE_COLUMNS: &str = "id, table_name, seq, mode, holder, purpose, state, token, \
     ttl_seconds, requested_at, granted_at, expires_at, ended_at, end_reason, \
     idempotency_key, pin_snapshot_id, principal";

pub const TABLE_COLUMNS: &str = "name, catalog, compaction_job, max_compaction_deferral_seconds, \
     last_token, last_seq, created_at, updated_at, pin_tags";

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
    pub principal: Option<String>,
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
            principal: r.principal,
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
    pub pin_tags: Option<bool>,
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
                pin_tags: r.pin_tags,
            },
            last_token: r.last_token,
            last_seq: r.last_seq,
            created_at: Millis(r.created_at),
            updated_at: Millis(r.updated_at),
            live: Vec::new(),
            finished: Vec::new(),
            skew_margin: Millis(0),
        })
    }
}

pub const LIVE: &str = "state IN ('waiting', 'granted')";

/// The upsert both dialects accept: a lease row is inserted once and then
/// only its state, token, timestamps and TTL change.
pub const UPSERT_LEASE_CONFLICT: &str = "ON CONFLICT (id) DO UPDATE SET \
     state = excluded.state, token = excluded.token, ttl_seconds = excluded.ttl_seconds, \
     granted_at = excluded.granted_at, expires_at = excluded.expires_at, \
     ended_at = excluded.ended_at, end_reason = excluded.end_reason, \
     pin_snapshot_id = excluded.pin_snapshot_id";

pub fn parse_names(names: Vec<String>) -> Result<Vec<TableName>, StoreError> {
    names
        .into_iter()
        .map(|n| TableName::parse(&n).map_err(|_| corrupt("table", &n)))
        .collect()
}

/// Join table rows with their live holder and waiter counts.
pub fn summaries(
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
