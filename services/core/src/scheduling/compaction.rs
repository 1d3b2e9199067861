//! Compaction requests: a write-lease waiter under the lease rules; once
//! granted, a run of the table's compaction job under that lease, and the
//! check that Iceberg really holds its result.

use super::run::RunId;
use crate::leases::{LeaseId, Token};
use crate::names::TableName;
use crate::snapshots::{Snapshot, SnapshotId};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompactionState {
    /// Not yet asking for the lease (`not_before`, or a retry's back-off).
    Queued,
    /// Its write lease waits behind readers.
    Waiting,
    /// The lease is granted and the compaction job runs under it.
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl CompactionState {
    pub const ALL: [CompactionState; 6] = [
        CompactionState::Queued,
        CompactionState::Waiting,
        CompactionState::Running,
        CompactionState::Succeeded,
        CompactionState::Failed,
        CompactionState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CompactionState::Queued => "queued",
            CompactionState::Waiting => "waiting",
            CompactionState::Running => "running",
            CompactionState::Succeeded => "succeeded",
            CompactionState::Failed => "failed",
            CompactionState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<CompactionState> {
        CompactionState::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            CompactionState::Succeeded | CompactionState::Failed | CompactionState::Cancelled
        )
    }
}

/// Why a compaction failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompactionFailure {
    /// The job said it succeeded but Iceberg holds no rewrite after the base.
    NoNewSnapshot,
    /// A rewrite after the base carries another lease's token.
    FenceMismatch,
    /// Every attempt of the job failed.
    RunFailed,
    /// Its write lease was revoked (or lost) while it waited or ran.
    LeaseLost,
}

impl CompactionFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            CompactionFailure::NoNewSnapshot => "no_new_snapshot",
            CompactionFailure::FenceMismatch => "fence_mismatch",
            CompactionFailure::RunFailed => "run_failed",
            CompactionFailure::LeaseLost => "lease_lost",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compaction {
    pub id: Uuid,
    pub table: TableName,
    pub state: CompactionState,
    pub requested_by: String,
    pub reason: Option<String>,
    /// It asks for its lease no earlier than this.
    pub not_before: Millis,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// The sluice job that compacts the table (its `compaction_job`).
    pub job: String,
    pub lease_id: Option<LeaseId>,
    pub token: Option<Token>,
    /// Write leases asked for so far (each request's idempotency key
    /// counts them, so a retried request finds its lease again).
    #[serde(default)]
    pub lease_requests: u32,
    /// Runs started for it, oldest first; the last is the current one.
    pub runs: Vec<RunId>,
    pub failures: u32,
    pub max_attempts: u32,
    /// The table's current snapshot when the lease was granted.
    pub base_snapshot_id: Option<SnapshotId>,
    /// The rewrite found after a successful run.
    pub result_snapshot_id: Option<SnapshotId>,
    pub failure: Option<CompactionFailure>,
    pub error: Option<String>,
    pub ended_at: Option<Millis>,
}

/// The snapshot summary property a compaction job writes its lease's token
/// into, so that Iceberg itself records which grant made the rewrite.
pub const TOKEN_PROPERTY: &str = "sluice.lease-token";

/// Check a successful compaction against the snapshot log: the ancestry of
/// `current` after `base` must hold a `replace` or `overwrite` snapshot, and
/// every rewrite there that carries a lease token must carry `token`.
/// Answers the newest such rewrite.
pub fn verify(
    log: &[Snapshot],
    base: Option<SnapshotId>,
    current: Option<SnapshotId>,
    token: Token,
) -> Result<SnapshotId, CompactionFailure> {
    let by_id: HashMap<SnapshotId, &Snapshot> = log.iter().map(|s| (s.id, s)).collect();
    let mut found = None;
    let mut at = current;
    let mut steps = 0usize;
    while let Some(id) = at.filter(|id| Some(*id) != base) {
        let Some(s) = by_id.get(&id) else { break };
        if matches!(s.operation.as_str(), "replace" | "overwrite") {
            if let Some(t) = s.summary.get(TOKEN_PROPERTY) {
                if t.trim() != token.to_string() {
                    return Err(CompactionFailure::FenceMismatch);
                }
            }
            found.get_or_insert(s.id);
        }
        at = s.parent_id;
        steps += 1;
        if steps > log.len() {
            break;
        }
    }
    // The walk must reach the base: a rewrite on another branch of history
    // (or a log that lost the base) is not a compaction of this base.
    let reached_base = match base {
        Some(b) => at == Some(b),
        None => true,
    };
    match found {
        Some(id) if reached_base => Ok(id),
        _ => Err(CompactionFailure::NoNewSnapshot),
    }
}

/// The event of a compaction's change (`from`: none when just requested).
pub fn event(
    c: &Compaction,
    from: Option<CompactionState>,
    at: Millis,
    actor: Option<&str>,
) -> crate::event::NewEvent {
    use crate::event::{EventKind, NewEvent};
    NewEvent {
        at,
        kind: if from.is_none() {
            EventKind::CompactionRequested
        } else {
            EventKind::CompactionStateChanged
        },
        table: Some(c.table.clone()),
        lease_id: c.lease_id,
        stream: None,
        data: serde_json::json!({
            "compaction_id": c.id, "from": from.map(CompactionState::as_str),
            "to": c.state.as_str(), "token": c.token, "run_id": c.runs.last(),
            "base_snapshot_id": c.base_snapshot_id, "result_snapshot_id": c.result_snapshot_id,
            "failure": c.failure.map(CompactionFailure::as_str), "error": c.error,
            "requested_by": c.requested_by, "reason": c.reason,
        }),
        actor: actor.map(str::to_owned),
    }
}
