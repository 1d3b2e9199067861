//! The outbox: side effects recorded as intents in the same transaction as
//! the change that needs them, and carried out after it, idempotently
//! (again after a crash) until done.

use crate::hydrations::HydrationId;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Intent {
    /// A hydration became live: point its views at its target.
    RemapViews { hydration_id: HydrationId },
}

impl Intent {
    pub fn kind(&self) -> &'static str {
        match self {
            Intent::RemapViews { .. } => "remap_views",
        }
    }
}

/// How long before retrying an intent that failed `attempts` times: from
/// one second, doubling, at most ten minutes.
pub fn backoff_ms(attempts: u32) -> i64 {
    1000i64.saturating_mul(1 << attempts.min(10)).min(600_000)
}
