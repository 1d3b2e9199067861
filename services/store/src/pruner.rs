//! Keeps history for a while, then lets it go: finished leases, finished
//! batches, finished job runs, events and the expired tokens of IAM logins
//! older than the retention are deleted in the background, a few hundred rows per
//! statement with a pause between, so
//! that the group-commit writer is never held up for long and the tables
//! the hot path reads do not grow without end. Bookmark versions are kept
//! (a stream's history is small, and rewinds need it), and so are the
//! event log's last `keep_events` ids however old.

use crate::ports::Backend;
use sluice_core::Millis;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// How long finished leases and batches and events are kept.
    pub keep_for: Duration,
    /// The event log's most recent ids, kept whatever their age.
    pub keep_events: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_for: Duration::from_secs(30 * 86_400),
            keep_events: 100_000,
        }
    }
}

/// Rows per delete statement.
const STEP: u32 = 500;
/// Pause between two statements of one pass.
const PAUSE: Duration = Duration::from_millis(20);
/// Time between passes.
const EVERY: Duration = Duration::from_secs(60);

pub(crate) fn spawn(
    backend: Arc<dyn Backend>,
    retention: Retention,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let before = Millis(crate::system_now().0 - retention.keep_for.as_millis() as i64);
            match prune(backend.as_ref(), before, retention.keep_events).await {
                Ok(0) => {}
                Ok(rows) => tracing::info!(rows, "pruned history older than the retention"),
                Err(error) => tracing::warn!(%error, "pruning history failed; trying again later"),
            }
            tokio::time::sleep(EVERY).await;
        }
    })
}

/// One pass: everything older than `before`, step by step; rows deleted.
pub async fn prune(
    backend: &dyn Backend,
    before: Millis,
    keep_events: i64,
) -> Result<u64, crate::StoreError> {
    let mut total = 0;
    for kind in [
        Kind::Leases,
        Kind::Batches,
        Kind::Runs,
        Kind::Events,
        Kind::Logins,
    ] {
        loop {
            let rows = match kind {
                Kind::Leases => backend.prune_leases(before, STEP).await?,
                Kind::Batches => backend.prune_batches(before, STEP).await?,
                Kind::Runs => backend.prune_runs(before, STEP).await?,
                Kind::Events => backend.prune_events(before, keep_events, STEP).await?,
                Kind::Logins => backend.prune_logins(before, STEP).await?,
            };
            total += rows;
            // A short step: nothing more of this kind is old enough.
            if rows < u64::from(STEP) {
                break;
            }
            tokio::time::sleep(PAUSE).await;
        }
    }
    Ok(total)
}

#[derive(Clone, Copy)]
enum Kind {
    Leases,
    Batches,
    /// Runs that succeeded, failed or were cancelled (dead letters wait
    /// for an operator).
    Runs,
    Events,
    /// Tokens of IAM logins, a day's worth per Glue run at most.
    Logins,
}
