//! Snapshots and what a refresh of the log changes.

use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// An Iceberg snapshot id (a 64-bit integer chosen by the writer).
pub type SnapshotId = i64;

/// One snapshot as the table metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: SnapshotId,
    pub parent_id: Option<SnapshotId>,
    pub sequence_number: i64,
    /// When the snapshot was committed (the writer's clock, as Iceberg
    /// records it).
    pub timestamp: Millis,
    /// `append`, `overwrite`, `replace` or `delete`.
    pub operation: String,
    /// The rest of the snapshot summary (counts, writer properties).
    pub summary: BTreeMap<String, String>,
    /// When sluice saw it missing from the metadata (expired), if it did.
    pub expired_at: Option<Millis>,
}

/// What a refresh changes in the log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Refresh {
    /// Snapshots the log did not hold yet, by sequence number.
    pub added: Vec<Snapshot>,
    /// Snapshots the log holds as live that the metadata no longer lists.
    pub expired: Vec<SnapshotId>,
}

/// Compare the log (`known`: each snapshot id it holds, and whether it is
/// already marked expired) with what the catalog lists now. A snapshot
/// marked expired that the metadata lists again (a table restored from an
/// older metadata file) is left as it is: the log keeps the first record of
/// each id, and an expiry is history.
pub fn refresh(known: &[(SnapshotId, bool)], listed: &[Snapshot]) -> Refresh {
    let known_ids: HashSet<SnapshotId> = known.iter().map(|(id, _)| *id).collect();
    let listed_ids: HashSet<SnapshotId> = listed.iter().map(|s| s.id).collect();
    let mut added: Vec<Snapshot> = listed
        .iter()
        .filter(|s| !known_ids.contains(&s.id))
        .cloned()
        .collect();
    added.sort_by_key(|s| (s.sequence_number, s.timestamp, s.id));
    added.dedup_by_key(|s| s.id);
    let mut expired: Vec<SnapshotId> = known
        .iter()
        .filter(|(id, expired)| !expired && !listed_ids.contains(id))
        .map(|(id, _)| *id)
        .collect();
    expired.sort_unstable();
    Refresh { added, expired }
}
