//! Event rows as both SQL dialects hold them. Each dialect's `mod.rs`
//! appends them (ids in commit order); reads go through `events.rs`.

use super::corrupt;
use crate::error::StoreError;
use sluice_core::{Event, EventKind, LeaseId, Millis, NewEvent, StreamName, TableName};

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
                "at": e.at.0, "kind": e.kind.as_str(), "table_name": e.table.as_ref().map(|t| t.as_str()),
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
        Ok(Event {
            id: r.id,
            event: NewEvent {
                at: Millis(r.at),
                kind: EventKind::parse(&r.kind).ok_or_else(|| corrupt("event kind", &r.kind))?,
                table: match r.table_name {
                    Some(t) => Some(TableName::parse(&t).map_err(|_| corrupt("table", &t))?),
                    None => None,
                },
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
