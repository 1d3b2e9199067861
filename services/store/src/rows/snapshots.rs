//! Snapshot-log rows as both SQL dialects hold them, and the statements
//! both accept (`$n` parameters).

use super::corrupt;
use crate::error::StoreError;
use crate::ports::CatalogState;
use sluice_core::snapshots::{Cause, Listed, Snapshot};
use sluice_core::{Millis, TableName};

#[derive(sqlx::FromRow)]
pub struct SnapshotRow {
    pub snapshot_id: i64,
    pub parent_id: Option<i64>,
    pub sequence_number: i64,
    pub committed_at: i64,
    pub operation: String,
    pub summary: String,
    pub expired_at: Option<i64>,
}

impl TryFrom<SnapshotRow> for Snapshot {
    type Error = StoreError;
    fn try_from(r: SnapshotRow) -> Result<Snapshot, StoreError> {
        Ok(Snapshot {
            id: r.snapshot_id,
            parent_id: r.parent_id,
            sequence_number: r.sequence_number,
            timestamp: Millis(r.committed_at),
            operation: r.operation,
            summary: serde_json::from_str(&r.summary)
                .map_err(|_| corrupt("table_snapshots.summary", &r.summary))?,
            expired_at: r.expired_at.map(Millis),
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct CatalogStateRow {
    pub table_name: String,
    pub catalog: String,
    pub metadata_location: Option<String>,
    pub current_snapshot_id: Option<i64>,
    pub refreshed_at: Option<i64>,
    pub refreshed_by: Option<String>,
    pub error: Option<String>,
    pub error_at: Option<i64>,
}

pub const CATALOG_STATE_COLUMNS: &str = "table_name, catalog, metadata_location, \
     current_snapshot_id, refreshed_at, refreshed_by, error, error_at";

impl TryFrom<CatalogStateRow> for CatalogState {
    type Error = StoreError;
    fn try_from(r: CatalogStateRow) -> Result<CatalogState, StoreError> {
        Ok(CatalogState {
            table: TableName::parse(&r.table_name)
                .map_err(|_| corrupt("table_catalog_state.table_name", &r.table_name))?,
            catalog: r.catalog,
            metadata_location: r.metadata_location,
            current_snapshot_id: r.current_snapshot_id,
            refreshed_at: r.refreshed_at.map(Millis),
            // Unknown text (a newer sluice's cause) reads as none.
            refreshed_by: r.refreshed_by.as_deref().and_then(Cause::parse),
            error: r.error,
            error_at: r.error_at.map(Millis),
        })
    }
}

/// A page of the log: by sequence number, then id (Iceberg v1 tables
/// number every snapshot 0).
pub const CATALOG_STATES_AFTER: &str = "SELECT table_name, catalog, metadata_location, \
    current_snapshot_id, refreshed_at, refreshed_by, error, error_at FROM table_catalog_state \
    WHERE table_name > $1 ORDER BY table_name LIMIT $2";

pub const SNAPSHOT_PAGE: &str = "SELECT snapshot_id, parent_id, sequence_number, committed_at, \
     operation, summary, expired_at FROM table_snapshots \
     WHERE table_name = $1 AND (sequence_number, snapshot_id) > ($2, $3) \
     ORDER BY sequence_number, snapshot_id LIMIT $4";

/// The whole log of a table, for lag (which walks parent links).
pub const SNAPSHOT_LOG: &str = "SELECT snapshot_id, parent_id, sequence_number, committed_at, \
     operation, summary, expired_at FROM table_snapshots WHERE table_name = $1";

pub const HAS_SNAPSHOT: &str =
    "SELECT snapshot_id FROM table_snapshots WHERE table_name = $1 AND snapshot_id = $2";

pub const KNOWN_SNAPSHOTS: &str =
    "SELECT snapshot_id, expired_at IS NOT NULL FROM table_snapshots WHERE table_name = $1";

/// A snapshot another replica's refresh recorded first stays as it is.
pub const INSERT_SNAPSHOT: &str = "INSERT INTO table_snapshots (table_name, snapshot_id, \
     parent_id, sequence_number, committed_at, operation, summary, seen_at, expired_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL) ON CONFLICT (table_name, snapshot_id) DO NOTHING";

pub const EXPIRE_SNAPSHOT: &str = "UPDATE table_snapshots SET expired_at = $1 \
     WHERE table_name = $2 AND snapshot_id = $3 AND expired_at IS NULL";

/// Make sure the table's state row exists, so that it can be locked.
pub const ENSURE_CATALOG_STATE: &str = "INSERT INTO table_catalog_state (table_name, catalog) \
     VALUES ($1, $2) ON CONFLICT (table_name) DO NOTHING";

pub const RECORD_SUCCESS: &str = "UPDATE table_catalog_state SET catalog = $2, \
     metadata_location = $3, current_snapshot_id = $4, refreshed_at = $5, refreshed_by = $6, \
     error = NULL, error_at = NULL WHERE table_name = $1";

pub const RECORD_LISTING: &str = "INSERT INTO catalog_listings (catalog, listed_at, unlisted) \
     VALUES ($1, $2, $3) ON CONFLICT (catalog) DO UPDATE SET listed_at = excluded.listed_at, \
     unlisted = excluded.unlisted";

pub const CATALOG_LISTING: &str =
    "SELECT listed_at, unlisted FROM catalog_listings WHERE catalog = $1";

pub fn unlisted_json(listed: &Listed) -> String {
    serde_json::to_string(&listed.unlisted).expect("strings serialize")
}

pub fn listed(row: Option<(i64, String)>) -> Result<Option<Listed>, StoreError> {
    row.map(|(at, unlisted)| {
        Ok(Listed {
            at: Millis(at),
            unlisted: serde_json::from_str(&unlisted)
                .map_err(|_| corrupt("catalog_listings.unlisted", &unlisted))?,
        })
    })
    .transpose()
}

/// The same failure again writes nothing (the watcher retries every table
/// every round): `error_at` says since when it has been failing so.
pub const RECORD_FAILURE: &str = "INSERT INTO table_catalog_state (table_name, catalog, error, \
     error_at) VALUES ($1, $2, $3, $4) ON CONFLICT (table_name) DO UPDATE SET \
     catalog = excluded.catalog, error = excluded.error, error_at = excluded.error_at \
     WHERE table_catalog_state.error IS DISTINCT FROM excluded.error \
     OR table_catalog_state.catalog IS DISTINCT FROM excluded.catalog";

pub fn summary_json(snapshot: &Snapshot) -> String {
    serde_json::to_string(&snapshot.summary).expect("strings serialize")
}
