//! A hydration: one copy of an Iceberg table into a consumer data
//! container, first its pinned snapshot, then the snapshots after it, under
//! one read lease for its whole life.

use crate::containers::ContainerName;
use crate::snapshots::{Lag, SnapshotId};
use crate::{LeaseId, Millis, TableName};
use serde::{Deserialize, Serialize};

/// A hydration's id is the id of its read lease: one names the other, so
/// the lease path finds a hydration without a lookup.
pub type HydrationId = LeaseId;

/// The lease purpose that marks a hydration's read lease.
pub const LEASE_PURPOSE: &str = "hydration";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HydrationState {
    /// Created; its read lease may still wait.
    Pending,
    /// Copying the snapshot it started from.
    Snapshot,
    /// Applying the snapshots committed after it.
    CatchingUp,
    /// Caught up within its lag threshold: its views may point at it.
    Live,
    /// Its job released the read lease while live: the target holds the
    /// table as of the snapshot it applied last, and stays mapped until a
    /// newer hydration supersedes it.
    Completed,
    /// Its lease ended (expired, revoked, or released before live).
    Failed,
    Cancelled,
    /// A newer hydration's views replaced it.
    Superseded,
    /// The snapshot it applied was expired from the table: what came after
    /// cannot be read incrementally; a new hydration is needed.
    Stale,
}

impl HydrationState {
    pub const ALL: [HydrationState; 9] = [
        HydrationState::Pending,
        HydrationState::Snapshot,
        HydrationState::CatchingUp,
        HydrationState::Live,
        HydrationState::Completed,
        HydrationState::Failed,
        HydrationState::Cancelled,
        HydrationState::Superseded,
        HydrationState::Stale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HydrationState::Pending => "pending",
            HydrationState::Snapshot => "snapshot",
            HydrationState::CatchingUp => "catching_up",
            HydrationState::Live => "live",
            HydrationState::Completed => "completed",
            HydrationState::Failed => "failed",
            HydrationState::Cancelled => "cancelled",
            HydrationState::Superseded => "superseded",
            HydrationState::Stale => "stale",
        }
    }

    /// Its target holds a whole copy that views may map to.
    pub fn is_mappable(self) -> bool {
        matches!(self, HydrationState::Live | HydrationState::Completed)
    }

    /// A newer hydration of the same views may take over from it: one still
    /// running, or a completed copy (the others ended on their own).
    pub fn can_be_superseded(self) -> bool {
        !self.is_final() || self == HydrationState::Completed
    }

    pub fn parse(s: &str) -> Option<HydrationState> {
        HydrationState::ALL.into_iter().find(|h| h.as_str() == s)
    }

    /// Final states never change again (but a completed copy can still be
    /// superseded).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            HydrationState::Completed
                | HydrationState::Failed
                | HydrationState::Cancelled
                | HydrationState::Superseded
                | HydrationState::Stale
        )
    }
}

/// The phases a job reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HydrationPhase {
    Snapshot,
    CatchingUp,
}

/// What the job last reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub rows_copied: Option<u64>,
    pub rows_total: Option<u64>,
    /// The last snapshot whose data is in the container.
    pub applied_snapshot_id: Option<SnapshotId>,
    pub reported_at: Option<Millis>,
}

/// The lag as last computed from the table's snapshot log; seconds behind
/// are counted from `oldest_unapplied_at` when read, so a stored lag stays
/// true as time passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLag {
    pub snapshots_behind: u64,
    pub oldest_unapplied_at: Option<Millis>,
    /// The applied snapshot is not in the current snapshot's ancestry.
    pub diverged: bool,
    /// The table's current snapshot when it was computed.
    pub current_snapshot_id: Option<SnapshotId>,
}

impl StoredLag {
    pub fn from_lag(lag: &Lag, current: Option<SnapshotId>) -> StoredLag {
        StoredLag {
            snapshots_behind: lag.snapshots_behind,
            oldest_unapplied_at: lag.oldest_unapplied_at,
            diverged: lag.diverged,
            current_snapshot_id: current,
        }
    }

    pub fn seconds_behind(&self, now: Millis) -> i64 {
        self.oldest_unapplied_at
            .map_or(0, |t| ((now.0 - t.0) / 1000).max(0))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hydration {
    pub id: HydrationId,
    pub table: TableName,
    pub container: ContainerName,
    /// The physical table it fills in the container (`schema.table`).
    pub target: String,
    /// The consumer views to point at `target` once it is live.
    pub views: Vec<String>,
    /// The columns the views will expose from `target`, when they change
    /// on purpose (a schema change); `None`: the ones they expose today.
    pub columns: Option<Vec<String>>,
    /// `live` once at most this many snapshots behind.
    pub lag_threshold_snapshots: u32,
    pub state: HydrationState,
    pub progress: Progress,
    pub lag: StoredLag,
    /// Why it failed, went stale or was cancelled.
    pub reason: Option<String>,
    pub principal: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub ended_at: Option<Millis>,
}
