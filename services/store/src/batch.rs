//! Group commit, the database-neutral half: apply a batch of commands to the
//! table states a backend loaded, and work out exactly which rows changed.
//! Backends only load before and write after.

use crate::Request;
use sluice_core::{
    command::Target, rules, Command, Lease, LeaseId, Millis, NewEvent, Reply, RuleError, TableName,
    TableState,
};
use std::collections::{HashMap, HashSet};

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
    /// Put a loaded lease into its table's state: live ones in queue order
    /// (load them sorted by `seq`), finished ones once.
    pub fn place(&mut self, lease: Lease) {
        let Some(state) = self.tables.get_mut(&lease.table) else {
            return;
        };
        if lease.is_live() {
            state.live.push(lease);
        } else if state.find(lease.id).is_none() {
            state.finished.push(lease);
        }
    }
}

/// What a backend writes, and what the writer answers.
pub struct Applied {
    pub answers: Vec<Result<Reply, RuleError>>,
    pub created_tables: Vec<TableState>,
    pub updated_tables: Vec<TableState>,
    /// New or changed leases.
    pub leases: Vec<Lease>,
    pub events: Vec<NewEvent>,
}

impl Applied {
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

impl From<Applied> for crate::Committed {
    fn from(applied: Applied) -> crate::Committed {
        crate::Committed {
            changed: applied.changed_by_table(),
            next_expiry: applied.next_expiry(),
            answers: applied.answers,
        }
    }
}

/// The tables a batch names directly, and the leases whose table must be looked up.
pub fn targets(requests: &[Request]) -> (Vec<TableName>, Vec<LeaseId>) {
    let mut tables = HashSet::new();
    let mut leases = HashSet::new();
    for request in requests {
        // An acquire's own lease id too: if a retried batch already
        // committed it, the rules must see it.
        if let Command::Acquire { request, .. } = &request.command {
            leases.insert(request.lease_id);
        }
        match request.command.target() {
            Target::Table(t) => {
                tables.insert(t);
            }
            Target::Lease(id) => {
                leases.insert(id);
            }
        }
    }
    (tables.into_iter().collect(), leases.into_iter().collect())
}

/// The idempotency keys of a batch, per table.
pub fn idempotency_keys(requests: &[Request]) -> Vec<(TableName, String)> {
    requests
        .iter()
        .filter_map(|r| match &r.command {
            Command::Acquire { table, request } => request
                .idempotency_key
                .clone()
                .map(|key| (table.clone(), key)),
            _ => None,
        })
        .collect()
}

/// Sort a batch's tables into lock order: by name, so that two batches
/// (on two replicas) that share tables never wait on each other in a cycle.
pub fn lock_order(mut tables: Vec<TableName>) -> Vec<TableName> {
    tables.sort();
    tables.dedup();
    tables
}

/// Apply `commands` in arrival order to the loaded states.
pub fn apply(mut loaded: Loaded, requests: &[Request], now: Millis) -> Applied {
    let before_tables: HashMap<TableName, TableState> = loaded
        .tables
        .iter()
        .map(|(name, state)| (name.clone(), state.clone()))
        .collect();
    let mut answers = Vec::with_capacity(requests.len());
    let mut events = Vec::new();
    for Request { command, actor } in requests {
        let table = match command.target() {
            Target::Table(t) => t,
            Target::Lease(id) => match loaded.lease_tables.get(&id) {
                Some(t) => t.clone(),
                None => {
                    answers.push(Err(RuleError::LeaseNotFound(id)));
                    continue;
                }
            },
        };
        let outcome = match command {
            Command::PutTable { table, settings } => {
                let existing = loaded.tables.remove(table);
                let (state, outcome) =
                    rules::put_table(existing, table.clone(), settings.clone(), now);
                loaded.tables.insert(table.clone(), state);
                outcome
            }
            _ => match loaded.tables.get_mut(&table) {
                Some(state) => rules::apply(state, command, now),
                None => {
                    answers.push(Err(RuleError::TableNotFound(table)));
                    continue;
                }
            },
        };
        if let Command::Acquire { request, .. } = command {
            loaded.lease_tables.insert(request.lease_id, table);
        }
        answers.push(outcome.result);
        events.extend(outcome.events.into_iter().map(|mut e| {
            e.actor = actor.clone();
            e
        }));
    }
    diff(before_tables, loaded.tables, answers, events)
}

fn diff(
    before: HashMap<TableName, TableState>,
    after: HashMap<TableName, TableState>,
    answers: Vec<Result<Reply, RuleError>>,
    events: Vec<NewEvent>,
) -> Applied {
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
    Applied {
        answers,
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
