//! Wake-ups for long-polls: after a commit, waiters parked on a table learn
//! what changed there (locally, with the changed leases; from another
//! replica, as a hint to re-read).

use sluice_core::{Lease, TableName};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

#[derive(Debug, Clone)]
pub enum Wake {
    /// Committed by this process: the leases of the table that changed.
    Changed(Arc<Vec<Lease>>),
    /// Committed elsewhere (another replica): re-read the lease.
    Reload,
}

#[derive(Default)]
pub struct Hub {
    tables: Mutex<HashMap<TableName, broadcast::Sender<Wake>>>,
}

impl Hub {
    /// Subscribe before reading the state you wait on, so no wake-up is lost
    /// between the read and the wait.
    pub fn subscribe(&self, table: &TableName) -> broadcast::Receiver<Wake> {
        let mut tables = self.tables.lock().expect("hub lock");
        tables
            .entry(table.clone())
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe()
    }

    pub fn publish(&self, table: &TableName, wake: Wake) {
        let mut tables = self.tables.lock().expect("hub lock");
        if let Some(sender) = tables.get(table) {
            if sender.send(wake).is_err() {
                // Nobody listens any more: forget the table.
                tables.remove(table);
            }
        }
    }

    /// Drop channels nobody listens to (tables waited on once, long ago).
    pub fn prune(&self) {
        let mut tables = self.tables.lock().expect("hub lock");
        tables.retain(|_, sender| sender.receiver_count() > 0);
    }
}

impl Hub {
    /// Wake every long-poll to re-read (after missed notifications).
    pub fn reload_all(&self) {
        let tables = self.tables.lock().expect("hub lock");
        for sender in tables.values() {
            let _ = sender.send(Wake::Reload);
        }
    }
}
