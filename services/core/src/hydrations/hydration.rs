//! A hydration: one copy of an Iceberg table into a consumer data
//! container, kept up to date for as long as it lives. It holds the
//! table's read lease through its first hydration (the pinned snapshot and
//! the first catch-up), then follows the table with a pin at the snapshot
//! it applied last. Each run of its job attaches to it as a session.

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
    /// Within its lag threshold: its views point at it.
    #[serde(alias = "completed")]
    Live,
    /// Was live, and the table has moved on past its lag threshold since:
    /// its views stay mapped, but the copy is behind.
    Lagging,
    /// Its read lease ended during its first hydration (expired, revoked).
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
        HydrationState::Lagging,
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
            HydrationState::Lagging => "lagging",
            HydrationState::Failed => "failed",
            HydrationState::Cancelled => "cancelled",
            HydrationState::Superseded => "superseded",
            HydrationState::Stale => "stale",
        }
    }

    /// Its target holds a whole copy that views may map to.
    pub fn is_mappable(self) -> bool {
        matches!(self, HydrationState::Live | HydrationState::Lagging)
    }

    /// In its first hydration: it holds the table's read lease, so that
    /// nothing is compacted under the copy before it is whole.
    pub fn holds_lease(self) -> bool {
        matches!(
            self,
            HydrationState::Pending | HydrationState::Snapshot | HydrationState::CatchingUp
        )
    }

    /// A newer hydration of the same views may take over from it.
    pub fn can_be_superseded(self) -> bool {
        !self.is_final()
    }

    /// `completed`, the state a live copy whose job ended was left in
    /// before hydrations outlived their runs, reads as `live`.
    pub fn parse(s: &str) -> Option<HydrationState> {
        match s {
            "completed" => Some(HydrationState::Live),
            _ => HydrationState::ALL.into_iter().find(|h| h.as_str() == s),
        }
    }

    /// Final states never change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            HydrationState::Failed
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

/// A run of the hydration job attached to it: the only caller whose
/// progress counts until it detaches or its TTL runs out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The run that attached (a Glue job run id): attaching again with the
    /// same run id answers the same session.
    pub run_id: String,
    /// Its fencing token: higher than every earlier session's.
    pub token: u64,
    /// Who attached; only they report progress in it.
    pub principal: Option<String>,
    pub ttl_seconds: u32,
    pub attached_at: Millis,
    pub heartbeat_at: Millis,
    pub expires_at: Millis,
}

impl Session {
    /// Attached at `now`: neither detached (then it is gone) nor past its
    /// TTL.
    pub fn is_attached(&self, now: Millis) -> bool {
        now < self.expires_at
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
    /// Why it failed, went stale, was cancelled or superseded.
    pub reason: Option<String>,
    pub principal: Option<String>,
    /// The run attached now, or the last one if it has not detached (see
    /// [`Session::is_attached`]).
    #[serde(default)]
    pub session: Option<Session>,
    /// Sessions attached so far: the last one's token.
    #[serde(default)]
    pub sessions: u64,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub ended_at: Option<Millis>,
}

impl Hydration {
    /// The session attached at `now`, if any.
    pub fn attached(&self, now: Millis) -> Option<&Session> {
        self.session.as_ref().filter(|s| s.is_attached(now))
    }

    /// The snapshot its tag in the table's metadata keeps from every
    /// engine's expiry: the one it applied last, while it has not ended
    /// (in its first hydration too: the snapshot it copies is its first
    /// report's).
    pub fn tag_target(&self) -> Option<SnapshotId> {
        (!self.state.is_final())
            .then_some(self.progress.applied_snapshot_id)
            .flatten()
    }

    /// The name of its tag: says it is sluice's, and whose pin it is.
    pub fn pin_tag_name(&self) -> String {
        format!("sluice-pin-{}", self.id)
    }

    /// The snapshot it keeps from expiry without a lease: the one it
    /// applied last, once past its first hydration.
    pub fn pin(&self) -> Option<SnapshotId> {
        self.tag_target().filter(|_| !self.state.holds_lease())
    }
}
