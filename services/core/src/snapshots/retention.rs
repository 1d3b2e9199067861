//! What snapshot expiry may remove: nothing a live read lease still needs.

use super::log::{Snapshot, SnapshotId};
use crate::leases::{Lease, LeaseState, Mode};
use crate::time::Millis;
use std::collections::HashMap;

/// A live read lease as retention sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reader {
    /// The snapshot the reader pinned, if it did.
    pub pin: Option<SnapshotId>,
    /// When it was granted: an unpinned reader reads the snapshot that was
    /// current then.
    pub granted_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The oldest snapshot a live reader needs, if any reader needs one the
    /// log knows.
    pub oldest_needed: Option<SnapshotId>,
    /// `expire_snapshots(older_than=…)` at this instant keeps every needed
    /// snapshot (and everything after it: readers catch up through them).
    /// `None`: a reader needs a snapshot the log cannot place (it holds no
    /// snapshot at all yet), so nothing may be expired.
    pub safe_older_than: Option<Millis>,
}

/// The live read leases that hold snapshots back: every granted reader,
/// and waiting readers with a pin (a hydration queued to resume from it).
pub fn readers(live: &[Lease]) -> Vec<Reader> {
    live.iter()
        .filter(|l| {
            l.mode == Mode::Read && (l.state == LeaseState::Granted || l.pin_snapshot_id.is_some())
        })
        .map(|l| Reader {
            pin: l.pin_snapshot_id,
            granted_at: l.granted_at.unwrap_or(l.requested_at),
        })
        .collect()
}

/// Commit times are the writer's clock, grants the server's: an unpinned
/// reader is taken to read the snapshot current this long before its grant.
pub const CLOCK_SKEW_MS: i64 = 60_000;

/// The oldest snapshot the readers need and the safe expiry timestamp. A
/// pin the log does not know (a snapshot not yet refreshed in) holds
/// everything back to the oldest snapshot the log has: when unsure, keep.
pub fn retention(
    log: &[Snapshot],
    current: Option<SnapshotId>,
    readers: &[Reader],
    now: Millis,
) -> Retention {
    let by_id: HashMap<SnapshotId, &Snapshot> = log.iter().map(|s| (s.id, s)).collect();
    // The current snapshot's ancestry, newest first.
    let mut ancestry: Vec<&Snapshot> = Vec::new();
    let mut at = current;
    while let Some(s) = at.and_then(|id| by_id.get(&id)) {
        if ancestry.len() > log.len() {
            break;
        }
        ancestry.push(s);
        at = s.parent_id;
    }
    let oldest_known = log.iter().min_by_key(|s| (s.timestamp, s.sequence_number));
    // Each reader's snapshot; `None` where the log cannot place it.
    let needed: Vec<Option<&Snapshot>> = readers
        .iter()
        .map(|r| match r.pin {
            Some(pin) => by_id.get(&pin).copied().or(oldest_known),
            // The snapshot that was current when the reader was let in.
            None => ancestry
                .iter()
                .copied()
                .find(|s| s.timestamp.0 <= r.granted_at.0 - CLOCK_SKEW_MS)
                .or(ancestry.last().copied()),
        })
        .collect();
    let oldest = needed
        .iter()
        .flatten()
        .min_by_key(|s| (s.timestamp, s.sequence_number));
    let unplaced = needed.iter().any(Option::is_none);
    Retention {
        oldest_needed: oldest.map(|s| s.id),
        safe_older_than: if unplaced {
            None
        } else {
            Some(oldest.map_or(now, |s| s.timestamp.min(now)))
        },
    }
}
