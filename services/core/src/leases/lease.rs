//! A lease on a table: who holds (or waits for) which mode, until when.

use crate::{names::TableName, time::Millis};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseId(pub uuid::Uuid);

impl LeaseId {
    /// Time-ordered ids (UUIDv7) keep index inserts append-mostly.
    pub fn new_v7() -> LeaseId {
        LeaseId(uuid::Uuid::now_v7())
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for LeaseId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(LeaseId)
    }
}

/// A fencing token: strictly increasing per table, never reused.
pub type Token = i64;

/// `read` leases (hydration) share a table; a `write` lease (compaction,
/// maintenance) excludes every other lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Read,
    Write,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Read => "read",
            Mode::Write => "write",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "read" => Some(Mode::Read),
            "write" => Some(Mode::Write),
            _ => None,
        }
    }
}

/// `waiting` and `granted` are live; the others are final and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    Waiting,
    Granted,
    Released,
    Cancelled,
    Expired,
    Revoked,
}

impl LeaseState {
    pub fn is_live(self) -> bool {
        matches!(self, LeaseState::Waiting | LeaseState::Granted)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Waiting => "waiting",
            LeaseState::Granted => "granted",
            LeaseState::Released => "released",
            LeaseState::Cancelled => "cancelled",
            LeaseState::Expired => "expired",
            LeaseState::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<LeaseState> {
        Some(match s {
            "waiting" => LeaseState::Waiting,
            "granted" => LeaseState::Granted,
            "released" => LeaseState::Released,
            "cancelled" => LeaseState::Cancelled,
            "expired" => LeaseState::Expired,
            "revoked" => LeaseState::Revoked,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub id: LeaseId,
    pub table: TableName,
    /// Arrival order on its table: the queue is sorted by it.
    pub seq: i64,
    pub mode: Mode,
    pub holder: String,
    pub purpose: Option<String>,
    pub state: LeaseState,
    /// Set when granted; a waiting lease has none yet.
    pub token: Option<Token>,
    pub ttl_seconds: u32,
    pub requested_at: Millis,
    pub granted_at: Option<Millis>,
    /// A live lease (granted or waiting) is valid only while `now < expires_at`.
    pub expires_at: Millis,
    pub ended_at: Option<Millis>,
    /// Why a lease ended: the operator's reason for a revocation.
    pub end_reason: Option<String>,
    pub idempotency_key: Option<String>,
    /// The Iceberg snapshot a reader still needs (read leases only).
    pub pin_snapshot_id: Option<i64>,
    /// Who acquired it (the token's name, `anonymous` without
    /// authentication): only they heartbeat or release it, because a
    /// fencing token is visible to every reader of the table. None for
    /// leases recorded before owners were.
    pub principal: Option<String>,
}

impl Lease {
    pub fn is_live(&self) -> bool {
        self.state.is_live()
    }

    pub fn is_expired_at(&self, now: Millis) -> bool {
        self.is_live() && now >= self.expires_at
    }
}
