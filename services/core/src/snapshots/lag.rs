//! How far behind a table's current snapshot a consumer is.

use super::log::{Snapshot, SnapshotId};
use crate::time::Millis;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    /// Snapshots in the current snapshot's ancestry after the applied one
    /// (the whole ancestry when nothing is applied yet) that carry a change
    /// to apply: a `replace` snapshot (compaction, a rewrite of files) has
    /// the same rows as its parent and is not counted.
    pub snapshots_behind: u64,
    /// `now` minus the commit time of the oldest unapplied snapshot that
    /// carries a change, in whole seconds; 0 when caught up.
    pub seconds_behind: i64,
    /// The commit time of the oldest unapplied snapshot with a change
    /// (`None`: caught up).
    pub oldest_unapplied_at: Option<Millis>,
    /// The applied snapshot is no longer in the table: what came after it
    /// cannot be read incrementally any more.
    pub applied_expired: bool,
    /// The applied snapshot is not an ancestor of the current one (the
    /// table was rolled back past it, or the log does not know it): the
    /// counts are then those of the whole known ancestry.
    pub diverged: bool,
}

/// The lag of `applied` behind `current`, walking parent links through the
/// log (expired snapshots included: the log keeps them, so an expiry does
/// not cut the chain). Compaction is not lag: `replace` snapshots are
/// stepped over, so a follower's lag after a compaction is what it was
/// before it.
pub fn lag(
    log: &[Snapshot],
    current: Option<SnapshotId>,
    applied: Option<SnapshotId>,
    now: Millis,
) -> Lag {
    let by_id: HashMap<SnapshotId, &Snapshot> = log.iter().map(|s| (s.id, s)).collect();
    let applied_expired = applied
        .and_then(|id| by_id.get(&id))
        .is_some_and(|s| s.expired_at.is_some());
    let mut behind = 0u64;
    let mut oldest_unapplied: Option<Millis> = None;
    let mut found = applied.is_none();
    let mut at = current;
    // A corrupt log could hold a parent cycle: never walk more than it holds.
    let mut steps = 0usize;
    while let Some(id) = at {
        if Some(id) == applied {
            found = true;
            break;
        }
        let Some(snapshot) = by_id.get(&id) else {
            break;
        };
        if carries_change(snapshot) {
            behind += 1;
            oldest_unapplied = Some(snapshot.timestamp);
        }
        steps += 1;
        if steps > log.len() {
            break;
        }
        at = snapshot.parent_id;
    }
    let seconds_behind = oldest_unapplied.map_or(0, |t| ((now.0 - t.0) / 1000).max(0));
    Lag {
        snapshots_behind: behind,
        seconds_behind,
        oldest_unapplied_at: oldest_unapplied,
        applied_expired: applied_expired && applied != current,
        diverged: !found,
    }
}

/// Whether a follower has anything to apply for `snapshot`: all but
/// `replace`, which rewrites files without changing a row (Iceberg's
/// `DataOperations.REPLACE`: compaction, sorting, rewriting manifests).
pub fn carries_change(snapshot: &Snapshot) -> bool {
    snapshot.operation != "replace"
}
