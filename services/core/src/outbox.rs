//! The outbox: side effects recorded as intents in the same transaction as
//! the change that needs them, and carried out after it, idempotently
//! (again after a crash) until done.

use crate::hydrations::HydrationId;
use crate::time::Millis;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Intent {
    /// A hydration became live: point its views at its target.
    RemapViews { hydration_id: HydrationId },
    /// A hydration's pin moved (or it ended): make its tag in the table's
    /// metadata say what the pin is now.
    SyncPinTag { hydration_id: HydrationId },
}

impl Intent {
    pub const REMAP_VIEWS: &'static str = "remap_views";
    pub const SYNC_PIN_TAG: &'static str = "sync_pin_tag";

    pub fn kind(&self) -> &'static str {
        match self {
            Intent::RemapViews { .. } => Intent::REMAP_VIEWS,
            Intent::SyncPinTag { .. } => Intent::SYNC_PIN_TAG,
        }
    }

    /// The hydration it is carried out for.
    pub fn hydration_id(&self) -> HydrationId {
        match self {
            Intent::RemapViews { hydration_id } | Intent::SyncPinTag { hydration_id } => {
                *hydration_id
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntentState {
    /// Not carried out yet: due at `next_attempt_at`.
    Pending,
    Done,
    /// Given up: refused by the container, or nothing left to do it for.
    Failed,
}

impl IntentState {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentState::Pending => "pending",
            IntentState::Done => "done",
            IntentState::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<IntentState> {
        [IntentState::Pending, IntentState::Done, IntentState::Failed]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

/// How an intent is going, as an operator reads it: attempts made, the
/// last error, and when the next attempt is (while pending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentStatus {
    pub id: i64,
    pub intent: Intent,
    pub state: IntentState,
    pub attempts: u32,
    pub error: Option<String>,
    pub created_at: Millis,
    pub next_attempt_at: Millis,
    pub finished_at: Option<Millis>,
}

/// How long before retrying an intent that failed `attempts` times: from
/// one second, doubling, at most ten minutes.
pub fn backoff_ms(attempts: u32) -> i64 {
    1000i64.saturating_mul(1 << attempts.min(10)).min(600_000)
}
