//! What callers ask of a table's lease state, and what the rules answer.

use crate::{
    leases::lease::{Lease, LeaseId, Mode, Token},
    leases::table::{TableSettings, TableState},
    names::TableName,
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

/// Commands on a table as a whole; each answers the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableCommand {
    /// Create a table or change its settings.
    Put {
        table: TableName,
        settings: TableSettings,
    },
    /// Expire what is due, grant who can be, and answer the table's state.
    Sweep { table: TableName },
}

impl TableCommand {
    pub fn table(&self) -> &TableName {
        match self {
            TableCommand::Put { table, .. } | TableCommand::Sweep { table } => table,
        }
    }
}

/// Commands on one lease; each answers that lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseCommand {
    Acquire {
        table: TableName,
        request: AcquireRequest,
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

impl LeaseCommand {
    pub fn target(&self) -> Target {
        match self {
            LeaseCommand::Acquire { table, .. } => Target::Table(table.clone()),
            LeaseCommand::Heartbeat { lease_id, .. }
            | LeaseCommand::Release { lease_id, .. }
            | LeaseCommand::Revoke { lease_id, .. }
            | LeaseCommand::KeepWaiting { lease_id }
            | LeaseCommand::Lookup { lease_id } => Target::Lease(*lease_id),
        }
    }
}

/// What a table command answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReply {
    pub state: TableState,
    pub created: bool,
}

/// What a lease command answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseReply {
    pub lease: Lease,
    /// 1-based place among the waiters, for a waiting lease.
    pub position: Option<u32>,
    /// True when an acquire was answered from its idempotency key (or was
    /// the same command again).
    pub replayed: bool,
}
