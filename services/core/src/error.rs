//! Errors a caller can cause; each maps to one 4xx with a stable type.

use crate::{lease::LeaseId, lease::LeaseState, names::TableName, Token};

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
        }
    }
}
