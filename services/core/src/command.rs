//! What callers ask of a table's lease state, and what the rules answer.

use crate::{
    lease::{Lease, LeaseId, Mode, Token},
    names::TableName,
    table::{TableSettings, TableState},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquireRequest {
    /// Chosen by the shell so that the rules stay deterministic.
    pub lease_id: LeaseId,
    pub mode: Mode,
    pub holder: String,
    pub ttl_seconds: u32,
    pub idempotency_key: Option<String>,
    pub purpose: Option<String>,
    pub pin_snapshot_id: Option<i64>,
    /// Refuse the request if it would wait behind this many waiters already.
    pub max_waiters: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Create a table or change its settings.
    PutTable {
        table: TableName,
        settings: TableSettings,
    },
    Acquire {
        table: TableName,
        request: AcquireRequest,
    },
    /// Expire what is due, grant who can be, and answer the table's state.
    Sweep {
        table: TableName,
    },
    /// Extend a granted lease (its token required) or a waiter's place.
    Heartbeat {
        lease_id: LeaseId,
        token: Option<Token>,
        ttl_seconds: Option<u32>,
    },
    /// Release a granted lease (token required) or cancel a waiting one.
    Release {
        lease_id: LeaseId,
        token: Option<Token>,
    },
    Revoke {
        lease_id: LeaseId,
        reason: String,
    },
    /// An open long-poll keeps its waiter in the queue; no-op once granted.
    KeepWaiting {
        lease_id: LeaseId,
    },
    /// Settle the lease's table and answer the lease.
    Lookup {
        lease_id: LeaseId,
    },
}

/// Which table a command is about: named, or found through its lease.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Table(TableName),
    Lease(LeaseId),
}

impl Command {
    pub fn target(&self) -> Target {
        match self {
            Command::PutTable { table, .. }
            | Command::Acquire { table, .. }
            | Command::Sweep { table } => Target::Table(table.clone()),
            Command::Heartbeat { lease_id, .. }
            | Command::Release { lease_id, .. }
            | Command::Revoke { lease_id, .. }
            | Command::KeepWaiting { lease_id }
            | Command::Lookup { lease_id } => Target::Lease(*lease_id),
        }
    }

    /// An idempotency key the store must load the matching lease for.
    pub fn idempotency_key(&self) -> Option<&str> {
        match self {
            Command::Acquire { request, .. } => request.idempotency_key.as_deref(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Lease {
        lease: Lease,
        /// 1-based place among the waiters, for a waiting lease.
        position: Option<u32>,
        /// True when an acquire was answered from its idempotency key.
        replayed: bool,
    },
    Table {
        state: TableState,
        created: bool,
    },
}
