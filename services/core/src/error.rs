//! Errors a caller can cause; each maps to one 4xx with a stable type.

use crate::{
    hydrations::{HydrationId, HydrationState},
    leases::lease::LeaseId,
    leases::lease::LeaseState,
    names::{StreamName, TableName},
    streams::state::{BatchId, BatchState, Phase},
    time::Millis,
    Token,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("table `{0}` is not registered (PUT /v1/tables/{0} first)")]
    TableNotFound(TableName),
    #[error("lease {0} does not exist")]
    LeaseNotFound(LeaseId),
    #[error("token {presented} is not the current token of lease {lease_id}")]
    StaleToken { lease_id: LeaseId, presented: Token },
    #[error("lease {0} is granted: present its token")]
    TokenRequired(LeaseId),
    #[error("lease {lease_id} is {} and can no longer be used", state.as_str())]
    LeaseEnded {
        lease_id: LeaseId,
        state: LeaseState,
    },
    #[error("idempotency key `{key}` was used for a different request on this table")]
    IdempotencyConflict { key: String },
    #[error("{limit} leases already wait for this table; try again later")]
    QueueFull { limit: u32 },
    #[error("{0}")]
    Invalid(String),
    #[error("stream `{0}` is not registered (PUT /v1/streams/{0} first)")]
    StreamNotFound(StreamName),
    #[error("stream `{stream}` feeds table `{table}`; a stream cannot change table (register a new stream)")]
    StreamTableChange {
        stream: StreamName,
        table: TableName,
    },
    #[error("batch {0} does not exist on this stream")]
    BatchNotFound(BatchId),
    #[error("batch {batch_id} of run `{run_id}` is open on this stream until {}; one batch at a time", expires_at.to_rfc3339())]
    BatchOpen {
        batch_id: BatchId,
        run_id: String,
        expires_at: Millis,
    },
    #[error("token {presented} is not the token of batch {batch_id}")]
    StaleBatchToken { batch_id: BatchId, presented: Token },
    #[error("batch {batch_id} is {} and can no longer change", state.as_str())]
    BatchFinished {
        batch_id: BatchId,
        state: BatchState,
    },
    #[error("{what} belongs to `{owner}`: only the principal that took it may act on it with its token (operators end a lease by revoking it)")]
    NotOwner { what: String, owner: String },
    #[error("batch {batch_id} was already committed, as bookmark version {version}, with a different body; a retry must send the same commit")]
    BatchCommitted { batch_id: BatchId, version: i64 },
    #[error("batch {0} expired: its run stopped heartbeating within its TTL, so its work must be redone in a new batch")]
    BatchExpired(BatchId),
    #[error("the batch saw schema hash {}, but the stream expects `{expected}`", got.as_deref().map_or("(none)".to_owned(), |g| format!("`{g}`")))]
    SchemaMismatch {
        expected: String,
        got: Option<String>,
    },
    #[error("the stream is in phase {}: {detail}", phase.as_str())]
    PhaseMismatch { phase: Phase, detail: String },
    #[error("the bookmark cannot go back: {0}")]
    BookmarkRegression(String),
    #[error("the bookmark is at version {current}, not {expected}")]
    VersionMismatch { current: i64, expected: i64 },
    #[error("{0}")]
    VersionNotFound(String),
    #[error("hydration {0} does not exist")]
    HydrationNotFound(HydrationId),
    #[error("hydration {id} is {}{}", state.as_str(), reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    HydrationEnded {
        id: HydrationId,
        state: HydrationState,
        reason: Option<String>,
    },
    #[error("snapshot {snapshot_id} is not in table `{table}`'s snapshot log, even after a refresh from its catalog")]
    SnapshotNotFound { table: TableName, snapshot_id: i64 },
    #[error("hydration {id} has run `{run_id}` attached until {}: attach once it detaches or its TTL has run out", expires_at.to_rfc3339())]
    SessionHeld {
        id: HydrationId,
        run_id: String,
        expires_at: Millis,
    },
    #[error("session {presented} of hydration {id} is not attached (it detached, its TTL ran out, or another run attached since): attach again")]
    SessionStale { id: HydrationId, presented: u64 },
}

impl RuleError {
    /// The stable `type` string of the JSON error body.
    pub fn kind(&self) -> &'static str {
        match self {
            RuleError::TableNotFound(_) => "table_not_found",
            RuleError::LeaseNotFound(_) => "lease_not_found",
            RuleError::StaleToken { .. } => "stale_token",
            RuleError::TokenRequired(_) => "token_required",
            RuleError::LeaseEnded { state, .. } => match state {
                LeaseState::Expired => "lease_expired",
                LeaseState::Revoked => "lease_revoked",
                LeaseState::Cancelled => "lease_cancelled",
                _ => "lease_released",
            },
            RuleError::IdempotencyConflict { .. } => "idempotency_conflict",
            RuleError::QueueFull { .. } => "queue_full",
            RuleError::Invalid(_) => "invalid_request",
            RuleError::StreamNotFound(_) => "stream_not_found",
            RuleError::StreamTableChange { .. } => "stream_table_change",
            RuleError::BatchNotFound(_) => "batch_not_found",
            RuleError::BatchOpen { .. } => "batch_open",
            RuleError::StaleBatchToken { .. } => "stale_token",
            RuleError::BatchFinished { .. } => "batch_finished",
            RuleError::BatchCommitted { .. } => "batch_committed",
            RuleError::NotOwner { .. } => "not_owner",
            RuleError::BatchExpired(_) => "batch_expired",
            RuleError::SchemaMismatch { .. } => "schema_mismatch",
            RuleError::PhaseMismatch { .. } => "phase_mismatch",
            RuleError::BookmarkRegression(_) => "bookmark_regression",
            RuleError::VersionMismatch { .. } => "version_mismatch",
            RuleError::VersionNotFound(_) => "version_not_found",
            RuleError::HydrationNotFound(_) => "hydration_not_found",
            RuleError::HydrationEnded { state, .. } => match state {
                HydrationState::Stale => "hydration_stale",
                _ => "hydration_ended",
            },
            RuleError::SnapshotNotFound { .. } => "snapshot_not_found",
            RuleError::SessionHeld { .. } => "session_held",
            RuleError::SessionStale { .. } => "session_stale",
        }
    }
}
