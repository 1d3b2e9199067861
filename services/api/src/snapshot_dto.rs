//! Bodies of the table snapshot log's routes.

use serde::{Deserialize, Serialize};
use sluice_core::snapshots::{Freshness, Snapshot};
use sluice_core::Millis;
use sluice_store::{CatalogState, Refreshed};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SnapshotBody {
    pub snapshot_id: i64,
    pub parent_id: Option<i64>,
    pub sequence_number: i64,
    /// When the snapshot was committed, as Iceberg records it (RFC 3339).
    pub committed_at: String,
    /// `append`, `overwrite`, `replace` or `delete`.
    pub operation: String,
    /// The rest of the snapshot summary.
    pub summary: BTreeMap<String, String>,
    /// When sluice found it gone from the table's metadata (expired).
    pub expired_at: Option<String>,
}

impl From<Snapshot> for SnapshotBody {
    fn from(s: Snapshot) -> SnapshotBody {
        SnapshotBody {
            snapshot_id: s.id,
            parent_id: s.parent_id,
            sequence_number: s.sequence_number,
            committed_at: s.timestamp.to_rfc3339(),
            operation: s.operation,
            summary: s.summary,
            expired_at: s.expired_at.map(|t| t.to_rfc3339()),
        }
    }
}

/// How fresh a table's snapshot log is: as of when it is known to match
/// the table's catalog, and what checked it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LogFreshnessBody {
    /// RFC 3339.
    pub checked_at: String,
    /// `listing` (a reconcile pass listed the table unchanged, or read it
    /// because it moved), `event` (an AWS event), `on_demand` (an API call
    /// needed it current) or `batch` (a batch or progress report named a
    /// snapshot the log did not hold).
    #[schema(example = "listing")]
    pub checked_by: String,
    /// Seconds from `checked_at` to this answer.
    pub age_seconds: i64,
}

impl LogFreshnessBody {
    pub fn new(f: Freshness, now: Millis) -> LogFreshnessBody {
        LogFreshnessBody {
            checked_at: f.checked_at.to_rfc3339(),
            checked_by: f.by.as_str().to_owned(),
            age_seconds: (now.0 - f.checked_at.0).max(0) / 1000,
        }
    }
}

/// What sluice last read from the table's catalog.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CatalogStateBody {
    pub catalog: String,
    pub metadata_location: Option<String>,
    pub current_snapshot_id: Option<i64>,
    /// The last successful refresh; absent before the first.
    pub refreshed_at: Option<String>,
    /// What caused it: `listing`, `event`, `on_demand` or `batch`.
    pub refreshed_by: Option<String>,
    /// Why the last refresh failed, when it did (cleared by a success).
    pub refresh_error: Option<String>,
    /// Since when refreshes have been failing with that error.
    pub refresh_error_at: Option<String>,
}

impl From<CatalogState> for CatalogStateBody {
    fn from(s: CatalogState) -> CatalogStateBody {
        CatalogStateBody {
            catalog: s.catalog,
            metadata_location: s.metadata_location,
            current_snapshot_id: s.current_snapshot_id,
            refreshed_at: s.refreshed_at.map(|t| t.to_rfc3339()),
            refreshed_by: s.refreshed_by.map(|c| c.as_str().to_owned()),
            refresh_error: s.error,
            refresh_error_at: s.error_at.map(|t| t.to_rfc3339()),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RefreshBody {
    pub table: String,
    pub catalog: String,
    pub metadata_location: Option<String>,
    pub current_snapshot_id: Option<i64>,
    pub refreshed_at: String,
    /// Snapshots this refresh added to the log, oldest first.
    pub added: Vec<i64>,
    /// Snapshots this refresh found expired.
    pub expired: Vec<i64>,
}

impl RefreshBody {
    pub fn new(table: String, r: Refreshed) -> RefreshBody {
        RefreshBody {
            table,
            catalog: r.catalog,
            metadata_location: r.changes.metadata_location,
            current_snapshot_id: r.changes.current_snapshot_id,
            refreshed_at: r.changes.refreshed_at.to_rfc3339(),
            added: r.changes.refresh.added.iter().map(|s| s.id).collect(),
            expired: r.changes.refresh.expired,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SnapshotParams {
    /// The `next_after` of the previous page.
    #[param(pattern = r"^(|[+-]?[0-9]+:[+-]?[0-9]+)$")]
    pub after: Option<String>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SnapshotsPage {
    pub table: String,
    /// Absent until the table's first refresh.
    pub catalog_state: Option<CatalogStateBody>,
    /// By sequence number, oldest first; expired snapshots included.
    pub snapshots: Vec<SnapshotBody>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// A page cursor: the last snapshot's `sequence_number:snapshot_id`.
pub fn cursor(s: &Snapshot) -> String {
    format!("{}:{}", s.sequence_number, s.id)
}

pub fn parse_cursor(raw: Option<&str>) -> Option<(i64, i64)> {
    match raw {
        None | Some("") => Some((i64::MIN, i64::MIN)),
        Some(raw) => {
            let (seq, id) = raw.split_once(':')?;
            Some((seq.parse().ok()?, id.parse().ok()?))
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RetentionBody {
    pub table: String,
    /// As of the last refresh of the snapshot log.
    pub current_snapshot_id: Option<i64>,
    /// The oldest snapshot a live read lease needs (its pin, or the
    /// snapshot current when an unpinned reader was let in).
    pub oldest_needed_snapshot_id: Option<i64>,
    /// Pass to `expire_snapshots(older_than=…)`: it keeps every snapshot a
    /// reader needs. Null: a reader needs a snapshot sluice cannot place
    /// (the log holds nothing yet), so expire nothing.
    pub safe_older_than: Option<String>,
    /// Live read leases counted: granted ones, and waiting ones with a pin.
    pub readers: u32,
    /// The snapshots those leases pinned.
    pub pinned: Vec<i64>,
    pub log_refreshed_at: Option<String>,
}
