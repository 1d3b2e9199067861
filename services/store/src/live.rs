//! The live state of tables (header and queue) kept in memory by a backend
//! that owns its database alone (SQLite: one process per data directory,
//! one writer). The database stays the truth: an entry is copied from it,
//! changed only by the rows of a committed batch, and the whole cache is
//! dropped when a batch fails, so it can never hold what is not on disk.
//! It spares every batch re-reading and re-decoding the queues it touches.

use crate::leases::Changes;
use sluice_core::{Lease, LeaseId, TableName, TableState};
use std::collections::HashMap;

/// Tables kept at most; past it an arbitrary idle one is dropped (it is
/// read back from the database when next touched).
const MAX_TABLES: usize = 200_000;

#[derive(Default)]
pub(crate) struct LiveTables {
    /// Header and live leases (in queue order); `finished` always empty.
    tables: HashMap<TableName, TableState>,
    /// The table of every live lease held above.
    lease_tables: HashMap<LeaseId, TableName>,
}

impl LiveTables {
    pub fn get(&self, table: &TableName) -> Option<&TableState> {
        self.tables.get(table)
    }

    /// The table of a live lease, if its table is held.
    pub fn table_of(&self, lease: LeaseId) -> Option<&TableName> {
        self.lease_tables.get(&lease)
    }

    /// Hold a table's state as the database has it (live leases only).
    pub fn insert(&mut self, state: &TableState) {
        if self.tables.len() >= MAX_TABLES && !self.tables.contains_key(&state.name) {
            self.evict_one();
        }
        let mut held = state.clone();
        held.finished.clear();
        for lease in &held.live {
            self.lease_tables.insert(lease.id, held.name.clone());
        }
        self.tables.insert(held.name.clone(), held);
    }

    /// Apply a committed batch's rows: new and changed table headers, then
    /// every written lease (a live one takes its place in the queue, a
    /// finished one leaves it). Tables not held are left to be read later.
    pub fn commit(&mut self, changes: &Changes) {
        // A new table had no leases before this batch's, which follow.
        for table in &changes.created_tables {
            let mut header = table.clone();
            header.live.clear();
            self.insert(&header);
        }
        for table in &changes.updated_tables {
            if let Some(held) = self.tables.get_mut(&table.name) {
                set_header(held, table);
            }
        }
        for lease in &changes.leases {
            self.put_lease(lease);
        }
    }

    /// Forget everything: after a failed batch nothing held can be trusted.
    pub fn clear(&mut self) {
        self.tables.clear();
        self.lease_tables.clear();
    }

    fn put_lease(&mut self, lease: &Lease) {
        let Some(held) = self.tables.get_mut(&lease.table) else {
            return;
        };
        held.live.retain(|l| l.id != lease.id);
        if lease.is_live() {
            let at = held.live.partition_point(|l| l.seq < lease.seq);
            held.live.insert(at, lease.clone());
            self.lease_tables.insert(lease.id, lease.table.clone());
        } else {
            self.lease_tables.remove(&lease.id);
        }
    }

    fn evict_one(&mut self) {
        let idle = self
            .tables
            .iter()
            .find(|(_, t)| t.live.is_empty())
            .or_else(|| self.tables.iter().next())
            .map(|(name, _)| name.clone());
        if let Some(name) = idle {
            if let Some(state) = self.tables.remove(&name) {
                for lease in state.live {
                    self.lease_tables.remove(&lease.id);
                }
            }
        }
    }
}

fn set_header(held: &mut TableState, table: &TableState) {
    held.settings = table.settings.clone();
    held.last_token = table.last_token;
    held.last_seq = table.last_seq;
    held.created_at = table.created_at;
    held.updated_at = table.updated_at;
}
