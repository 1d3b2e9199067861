//! A table's lease state, as the rules see it: settings, counters and the
//! live leases in queue order.

use crate::{leases::lease::Lease, names::TableName, time::Millis, Token};
use serde::{Deserialize, Serialize};

pub const DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS: u32 = 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSettings {
    /// How long a waiting write request lets new readers pass it.
    pub max_compaction_deferral_seconds: u32,
    pub catalog: Option<String>,
    pub compaction_job: Option<String>,
    /// Whether hydrations' pins on this table are mirrored as tags in its
    /// metadata; `None`: as its catalog says.
    #[serde(default)]
    pub pin_tags: Option<bool>,
}

impl Default for TableSettings {
    fn default() -> Self {
        TableSettings {
            max_compaction_deferral_seconds: DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS,
            catalog: None,
            compaction_job: None,
            pin_tags: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableState {
    pub name: TableName,
    pub settings: TableSettings,
    /// The last fencing token issued on this table (0: none yet).
    pub last_token: Token,
    /// The last queue sequence number handed out.
    pub last_seq: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Live leases (granted and waiting), in arrival order.
    pub live: Vec<Lease>,
    /// Finished leases the current commands refer to (by id or idempotency
    /// key); loaded so that repeated calls can be answered, never changed.
    pub finished: Vec<Lease>,
    /// How long past its expiry a live lease is still honoured, because
    /// the clocks that judge expiry may disagree by that much: zero where
    /// the database keeps time (SQLite's one process, PostgreSQL's
    /// `now()`), the configured margin on DynamoDB, where each replica's
    /// own clock judges. Set by the backend as it loads; never stored.
    #[serde(skip)]
    pub skew_margin: Millis,
}

impl TableState {
    pub fn new(name: TableName, settings: TableSettings, now: Millis) -> TableState {
        TableState {
            name,
            settings,
            last_token: 0,
            last_seq: 0,
            created_at: now,
            updated_at: now,
            live: Vec::new(),
            skew_margin: Millis(0),
            finished: Vec::new(),
        }
    }

    pub fn holders(&self) -> impl Iterator<Item = &Lease> {
        self.live
            .iter()
            .filter(|l| l.state == crate::LeaseState::Granted)
    }

    pub fn waiters(&self) -> impl Iterator<Item = &Lease> {
        self.live
            .iter()
            .filter(|l| l.state == crate::LeaseState::Waiting)
    }

    pub fn find(&self, id: crate::LeaseId) -> Option<&Lease> {
        self.live
            .iter()
            .chain(self.finished.iter())
            .find(|l| l.id == id)
    }
}
