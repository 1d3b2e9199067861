//! Tables and leases, the database-neutral half of their group commit:
//! what a batch of commands must load, applying the rules in arrival order
//! to what a backend loaded, and exactly which rows changed. Backends only
//! load before and write after (`sqlite/leases.rs`, `postgres/leases.rs`).

use crate::error::StoreError;
use crate::hub::{Hub, Wake};
use crate::ports::Backend;
use crate::writer::{Group, Pending, Slot};
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::{
    leases::rules, leases::Target, Lease, LeaseCommand, LeaseId, LeaseReply, Millis, NewEvent,
    RuleError, TableCommand, TableName, TableReply, TableState,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::watch;

/// A command waiting in the writer's queue: who asked (recorded with its
/// events), and where its answer goes. Each kind of command has its own
/// answer type, so a reply can never be of the wrong kind.
pub(crate) enum Job {
    Table {
        command: TableCommand,
        actor: Option<String>,
        slot: Slot<TableReply>,
    },
    Lease {
        command: LeaseCommand,
        actor: Option<String>,
        slot: Slot<LeaseReply>,
    },
}

impl Pending for Job {
    fn finish(self, committed: Result<(), StoreError>) {
        match self {
            Job::Table { slot, .. } => slot.finish(committed),
            Job::Lease { slot, .. } => slot.finish(committed),
        }
    }
}

/// What a batch names, for the backend to load (and lock).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Targets {
    /// Named tables, in lock order (sorted, unique).
    pub tables: Vec<TableName>,
    /// Named leases, whose tables are loaded (and locked) too.
    pub leases: Vec<LeaseId>,
    /// Idempotency keys per table: the leases they name are loaded too.
    pub idempotency_keys: Vec<(TableName, String)>,
    /// The ids the batch's acquires would create (also in `leases`): new
    /// unless an earlier attempt of the same batch committed them, which a
    /// backend that saw every commit knows without asking the database.
    pub fresh: Vec<(LeaseId, TableName)>,
}

/// What a backend loads, under lock, for one batch.
#[derive(Default)]
pub struct Loaded {
    /// The touched tables that exist, with their live leases and the finished
    /// leases the commands name (by id or idempotency key).
    pub tables: HashMap<TableName, TableState>,
    /// The table of every lease a command names, where it exists.
    pub lease_tables: HashMap<LeaseId, TableName>,
}

impl Loaded {
    /// Put a loaded lease into its table's state, once however many of the
    /// load's statements return it: live ones in queue order (load them
    /// sorted by `seq`), finished ones beside them.
    pub fn place(&mut self, lease: Lease) {
        let Some(state) = self.tables.get_mut(&lease.table) else {
            return;
        };
        if state.find(lease.id).is_some() {
            // Already placed (by another of the statements that load it).
        } else if lease.is_live() {
            state.live.push(lease);
        } else {
            state.finished.push(lease);
        }
    }
}

/// What a backend writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub created_tables: Vec<TableState>,
    pub updated_tables: Vec<TableState>,
    /// New or changed leases.
    pub leases: Vec<Lease>,
    pub events: Vec<NewEvent>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.created_tables.is_empty()
            && self.updated_tables.is_empty()
            && self.leases.is_empty()
            && self.events.is_empty()
    }

    /// The changed leases per table, for wake-ups.
    pub fn changed_by_table(&self) -> HashMap<TableName, Vec<Lease>> {
        let mut by_table: HashMap<TableName, Vec<Lease>> = HashMap::new();
        for lease in &self.leases {
            by_table
                .entry(lease.table.clone())
                .or_default()
                .push(lease.clone());
        }
        by_table
    }

    /// The earliest expiry among the leases this batch made or changed.
    pub fn next_expiry(&self) -> Option<Millis> {
        self.leases
            .iter()
            .filter(|l| l.is_live())
            .map(|l| l.expires_at)
            .min()
    }
}

/// What a batch of commands names.
pub(crate) fn targets(jobs: &[Job]) -> Targets {
    let mut tables = HashSet::new();
    let mut leases = HashSet::new();
    let mut idempotency_keys = Vec::new();
    let mut fresh = Vec::new();
    for job in jobs {
        match job {
            Job::Table { command, .. } => {
                tables.insert(command.table().clone());
            }
            Job::Lease { command, .. } => {
                if let LeaseCommand::Acquire { table, request } = command {
                    // Its own lease id too: if a retried batch already
                    // committed it, the rules must see it.
                    leases.insert(request.lease_id);
                    fresh.push((request.lease_id, table.clone()));
                    if let Some(key) = &request.idempotency_key {
                        idempotency_keys.push((table.clone(), key.clone()));
                    }
                }
                match command.target() {
                    Target::Table(t) => {
                        tables.insert(t);
                    }
                    Target::Lease(id) => {
                        leases.insert(id);
                    }
                }
            }
        }
    }
    Targets {
        tables: lock_order(tables.into_iter().collect()),
        leases: leases.into_iter().collect(),
        idempotency_keys,
        fresh,
    }
}

/// Sort a batch's tables into lock order: by name, so that two batches
/// (on two replicas) that share tables never wait on each other in a cycle.
fn lock_order(mut tables: Vec<TableName>) -> Vec<TableName> {
    tables.sort();
    tables.dedup();
    tables
}

/// Apply the jobs' commands in arrival order to the loaded states, leaving
/// each job's answer in it; the rows to write.
pub(crate) fn apply(mut loaded: Loaded, jobs: &mut [Job], now: Millis) -> Changes {
    let before_tables: HashMap<TableName, TableState> = loaded
        .tables
        .iter()
        .map(|(name, state)| (name.clone(), state.clone()))
        .collect();
    let mut events = Vec::new();
    for job in jobs {
        let (new_events, actor) = match job {
            Job::Table {
                command,
                actor,
                slot,
            } => (apply_table(&mut loaded, command, now, slot), actor),
            Job::Lease {
                command,
                actor,
                slot,
            } => (
                apply_lease(&mut loaded, command, actor.as_deref(), now, slot),
                actor,
            ),
        };
        events.extend(new_events.into_iter().map(|mut e| {
            e.actor = actor.clone();
            e
        }));
    }
    diff(before_tables, loaded.tables, events)
}

fn apply_table(
    loaded: &mut Loaded,
    command: &TableCommand,
    now: Millis,
    slot: &mut Slot<TableReply>,
) -> Vec<NewEvent> {
    let outcome = match command {
        TableCommand::Put { table, settings } => {
            let existing = loaded.tables.remove(table);
            let (state, outcome) = rules::put_table(existing, table.clone(), settings.clone(), now);
            loaded.tables.insert(table.clone(), state);
            outcome
        }
        TableCommand::Sweep { table } => match loaded.tables.get_mut(table) {
            Some(state) => rules::sweep(state, now),
            None => {
                slot.set(Err(RuleError::TableNotFound(table.clone())));
                return Vec::new();
            }
        },
    };
    slot.set(outcome.result);
    outcome.events
}

fn apply_lease(
    loaded: &mut Loaded,
    command: &LeaseCommand,
    actor: Option<&str>,
    now: Millis,
    slot: &mut Slot<LeaseReply>,
) -> Vec<NewEvent> {
    let table = match command.target() {
        Target::Table(t) => t,
        Target::Lease(id) => match loaded.lease_tables.get(&id) {
            Some(t) => t.clone(),
            None => {
                slot.set(Err(RuleError::LeaseNotFound(id)));
                return Vec::new();
            }
        },
    };
    let Some(state) = loaded.tables.get_mut(&table) else {
        slot.set(Err(RuleError::TableNotFound(table)));
        return Vec::new();
    };
    let outcome = rules::apply(state, command, actor, now);
    if let LeaseCommand::Acquire { request, .. } = command {
        loaded.lease_tables.insert(request.lease_id, table);
    }
    slot.set(outcome.result);
    outcome.events
}

fn diff(
    before: HashMap<TableName, TableState>,
    after: HashMap<TableName, TableState>,
    events: Vec<NewEvent>,
) -> Changes {
    let mut created_tables = Vec::new();
    let mut updated_tables = Vec::new();
    let mut leases = Vec::new();
    for (name, state) in after {
        let old_leases: HashMap<LeaseId, &Lease> = before
            .get(&name)
            .map(|b| {
                b.live
                    .iter()
                    .chain(b.finished.iter())
                    .map(|l| (l.id, l))
                    .collect()
            })
            .unwrap_or_default();
        for lease in state.live.iter().chain(state.finished.iter()) {
            if old_leases.get(&lease.id) != Some(&lease) {
                leases.push(lease.clone());
            }
        }
        match before.get(&name) {
            None => created_tables.push(state),
            Some(old) if !same_header(old, &state) => updated_tables.push(state),
            Some(_) => {}
        }
    }
    Changes {
        created_tables,
        updated_tables,
        leases,
        events,
    }
}

fn same_header(a: &TableState, b: &TableState) -> bool {
    a.settings == b.settings
        && a.last_token == b.last_token
        && a.last_seq == b.last_seq
        && a.updated_at == b.updated_at
}

/// Lease commands' group: one transaction per batch; after the commit, wake
/// the long-polls of the changed tables and tell the sweeper about an
/// earlier expiry.
pub(crate) struct Leases {
    pub backend: Arc<dyn Backend>,
    pub hub: Arc<Hub>,
    pub expiry: Arc<watch::Sender<Option<Millis>>>,
}

impl Group for Leases {
    type Job = Job;

    fn commit<'a>(&'a self, jobs: &'a mut [Job]) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let targets = targets(jobs);
            let changes = self
                .backend
                .transact_leases(&targets, &mut |loaded, now| apply(loaded, jobs, now))
                .await?;
            for (table, leases) in changes.changed_by_table() {
                self.hub.publish(&table, Wake::Changed(Arc::new(leases)));
            }
            if let Some(next) = changes.next_expiry() {
                self.expiry.send_if_modified(|planned| match planned {
                    Some(p) if *p <= next => false,
                    _ => {
                        *planned = Some(next);
                        true
                    }
                });
            }
            Ok(())
        }
        .boxed()
    }
}
