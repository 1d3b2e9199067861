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
use sluice_core::hydrations::{
    self, Attach, Hydration, HydrationId, HydrationState, LogView, NewHydration, ProgressReport,
    Session, LEASE_PURPOSE,
};
use sluice_core::leases::AcquireRequest;
use sluice_core::outbox::Intent;
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
    Hydration {
        command: Box<HydrationCommand>,
        actor: Option<String>,
        slot: Box<Slot<HydrationReply>>,
    },
    /// Hydrations whose views a newer hydration took over: they end
    /// `superseded`, and their read leases with them.
    Supersede {
        ids: Vec<HydrationId>,
        by: HydrationId,
        slot: Slot<u32>,
    },
    /// A table's snapshot log changed: recompute its hydrations' lag.
    Relag {
        table: TableName,
        log: Arc<LogView>,
        slot: Slot<u32>,
    },
}

/// Why sluice released a hydration's read lease.
const LIVE_RELEASE: &str = "its hydration is live: it keeps a pin of its own";

/// Commands on a hydration: each runs the hydration rules on it and the
/// lease rules on its read lease (held through its first hydration), in
/// one batch. Commands on an existing hydration name its table, read by
/// the caller: its lease, and with it the table, may be long gone.
#[derive(Debug, Clone)]
pub enum HydrationCommand {
    Create {
        new: NewHydration,
        lease: AcquireRequest,
        log: Arc<LogView>,
        /// The creating run, attached in the same batch.
        attach: Option<Attach>,
    },
    Attach {
        id: HydrationId,
        table: TableName,
        run: Attach,
    },
    Heartbeat {
        id: HydrationId,
        table: TableName,
        token: u64,
    },
    Detach {
        id: HydrationId,
        table: TableName,
        token: u64,
    },
    Progress {
        id: HydrationId,
        table: TableName,
        report: ProgressReport,
        log: Arc<LogView>,
    },
    Cancel {
        id: HydrationId,
        table: TableName,
        reason: String,
    },
}

impl HydrationCommand {
    /// The table and hydration it acts on.
    fn names(&self) -> (&TableName, HydrationId) {
        match self {
            HydrationCommand::Create { new, .. } => (&new.table, new.id),
            HydrationCommand::Attach { id, table, .. }
            | HydrationCommand::Heartbeat { id, table, .. }
            | HydrationCommand::Detach { id, table, .. }
            | HydrationCommand::Progress { id, table, .. }
            | HydrationCommand::Cancel { id, table, .. } => (table, *id),
        }
    }
}

/// A hydration and its read lease, as a command left them.
#[derive(Debug, Clone, PartialEq)]
pub struct HydrationReply {
    pub hydration: Hydration,
    /// Its read lease, while it is still on record (finished leases are
    /// pruned after the history's retention; a copy lives longer).
    pub lease: Option<LeaseReply>,
    /// The session this command attached or renewed.
    pub session: Option<Session>,
    /// True when this command made it `live`.
    pub became_live: bool,
    /// True when a create was answered from its idempotency key.
    pub replayed: bool,
}

impl Pending for Job {
    fn finish(self, committed: Result<(), StoreError>) {
        match self {
            Job::Table { slot, .. } => slot.finish(committed),
            Job::Lease { slot, .. } => slot.finish(committed),
            Job::Hydration { slot, .. } => slot.finish(committed),
            Job::Relag { slot, .. } | Job::Supersede { slot, .. } => slot.finish(committed),
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
    /// Hydrations named by id (their leases are in `leases`).
    pub hydrations: Vec<HydrationId>,
    /// Tables whose every unfinished hydration is loaded (also in `tables`).
    pub hydration_tables: Vec<TableName>,
}

/// What a backend loads, under lock, for one batch.
#[derive(Default)]
pub struct Loaded {
    /// The touched tables that exist, with their live leases and the finished
    /// leases the commands name (by id or idempotency key).
    pub tables: HashMap<TableName, TableState>,
    /// The table of every lease a command names, where it exists.
    pub lease_tables: HashMap<LeaseId, TableName>,
    /// The hydrations [`Loaded::hydrations_to_load`] names.
    pub hydrations: HashMap<HydrationId, Hydration>,
}

impl Loaded {
    /// What a backend loads of hydrations once the tables are in: the
    /// named ones, those of every hydration lease on the loaded tables (so
    /// that a lease ending fails its hydration in the same batch), and
    /// every unfinished one of the relagged tables. Nothing on a batch that
    /// touches no hydration: the lease path pays nothing for them.
    pub fn hydrations_to_load(&self, targets: &Targets) -> (Vec<String>, Vec<String>) {
        let mut ids: Vec<String> = targets.hydrations.iter().map(|id| id.to_string()).collect();
        for state in self.tables.values() {
            for lease in state.live.iter().chain(state.finished.iter()) {
                if lease.purpose.as_deref() == Some(LEASE_PURPOSE) {
                    ids.push(lease.id.to_string());
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let tables = targets
            .hydration_tables
            .iter()
            .map(|t| t.to_string())
            .collect();
        (ids, tables)
    }

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
    /// New or changed hydrations.
    pub hydrations: Vec<Hydration>,
    /// Side effects the batch's changes need (the outbox).
    pub intents: Vec<Intent>,
    pub events: Vec<NewEvent>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.hydrations.is_empty()
            && self.intents.is_empty()
            && self.created_tables.is_empty()
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
    let mut hydrations = Vec::new();
    let mut hydration_tables = Vec::new();
    for job in jobs {
        match job {
            Job::Hydration { command, .. } => match command.as_ref() {
                HydrationCommand::Create { new, lease, .. } => {
                    tables.insert(new.table.clone());
                    leases.insert(lease.lease_id);
                    fresh.push((lease.lease_id, new.table.clone()));
                    hydrations.push(new.id);
                    if let Some(key) = &lease.idempotency_key {
                        idempotency_keys.push((new.table.clone(), key.clone()));
                    }
                }
                // On an existing one: its table, its lease and itself.
                existing => {
                    let (table, id) = existing.names();
                    tables.insert(table.clone());
                    leases.insert(id);
                    hydrations.push(id);
                }
            },
            Job::Relag { table, .. } => {
                tables.insert(table.clone());
                hydration_tables.push(table.clone());
            }
            Job::Supersede { ids, .. } => {
                for id in ids {
                    leases.insert(*id);
                    hydrations.push(*id);
                }
            }
            Job::Table { command, .. } => {
                tables.insert(command.table().clone());
                // A put may turn the table's pin tags on or off: its
                // copies' tags follow (registering is rare; sweeps are not).
                if let TableCommand::Put { table, .. } = command {
                    hydration_tables.push(table.clone());
                }
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
        hydrations,
        hydration_tables,
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
    let before_hydrations = loaded.hydrations.clone();
    let mut events = Vec::new();
    let mut intents = Vec::new();
    for job in jobs {
        let (new_events, actor) = match job {
            Job::Hydration {
                command,
                actor,
                slot,
            } => (
                apply_hydration(
                    &mut loaded,
                    command,
                    actor.as_deref(),
                    now,
                    slot,
                    &mut intents,
                ),
                actor.clone(),
            ),
            Job::Relag { table, log, slot } => {
                let mut events = Vec::new();
                let mut changed = 0;
                for h in loaded.hydrations.values_mut() {
                    if &h.table == table {
                        let before = h.clone();
                        hydrations::rules::relag(h, log, now, &mut events);
                        changed += u32::from(*h != before);
                    }
                }
                slot.set(Ok(changed));
                (events, None)
            }
            Job::Supersede { ids, by, slot } => {
                let mut events = Vec::new();
                let mut ended = 0;
                for id in ids.iter() {
                    if let Ok((state, h)) = hydration_and_table(&mut loaded, *id) {
                        if h.state.can_be_superseded() {
                            hydrations::rules::supersede(h, *by, now, &mut events);
                            let reason = format!("hydration superseded by {by}");
                            rules::end(state, *id, &reason, now, &mut events);
                            ended += 1;
                        }
                    }
                }
                slot.set(Ok(ended));
                (events, None)
            }
            Job::Table {
                command,
                actor,
                slot,
            } => (
                apply_table(&mut loaded, command, now, slot, &mut intents),
                actor.clone(),
            ),
            Job::Lease {
                command,
                actor,
                slot,
            } => (
                apply_lease(&mut loaded, command, actor.as_deref(), now, slot),
                actor.clone(),
            ),
        };
        events.extend(new_events.into_iter().map(|mut e| {
            e.actor = actor.clone();
            e
        }));
    }
    // A hydration whose read lease ended in this batch during its first
    // hydration (expired, revoked) fails with it; one that went stale ends
    // its lease, which pinned a snapshot nobody can use any more and held
    // writers off; one past its first hydration (just now, or before
    // hydrations outlived their runs) needs it no more: its pin is its own.
    for h in loaded.hydrations.values_mut() {
        let Some(state) = loaded.tables.get_mut(&h.table) else {
            continue;
        };
        if !h.state.holds_lease() && !h.state.is_final() {
            rules::release_held(state, h.id, LIVE_RELEASE, now, &mut events);
        }
        if h.state == HydrationState::Stale {
            let reason = h.reason.clone().unwrap_or_default();
            rules::end(
                state,
                h.id,
                &format!("hydration stale: {reason}"),
                now,
                &mut events,
            );
        }
        if let Some(lease) = state.find(h.id) {
            hydrations::rules::follow_lease(h, lease, now, &mut events);
        }
    }
    let mut changes = diff(before_tables, loaded.tables, events);
    changes.hydrations = loaded
        .hydrations
        .into_values()
        .filter(|h| before_hydrations.get(&h.id) != Some(h))
        .collect();
    // A pin that moved (or ended) is mirrored in the table's metadata by
    // the outbox, after this commit.
    for h in &changes.hydrations {
        let before = before_hydrations.get(&h.id).and_then(Hydration::tag_target);
        if before != h.tag_target() {
            intents.push(Intent::SyncPinTag { hydration_id: h.id });
        }
    }
    changes.intents = intents;
    changes
}

fn apply_hydration(
    loaded: &mut Loaded,
    command: &HydrationCommand,
    actor: Option<&str>,
    now: Millis,
    slot: &mut Slot<HydrationReply>,
    intents: &mut Vec<Intent>,
) -> Vec<NewEvent> {
    let mut events = Vec::new();
    // All or nothing: a command refused halfway (a lease that cannot be
    // held after the report was taken) leaves its table and hydration as
    // they were.
    let (table, id) = command.names();
    let before = (
        loaded.tables.get(table).cloned(),
        loaded.hydrations.get(&id).cloned(),
    );
    let result = hydration_command(loaded, command, actor, now, &mut events);
    if result.is_err() {
        events.clear();
        let (state, hydration) = before;
        match state {
            Some(state) => loaded.tables.insert(table.clone(), state),
            None => loaded.tables.remove(table),
        };
        match hydration {
            Some(h) => loaded.hydrations.insert(id, h),
            None => loaded.hydrations.remove(&id),
        };
    }
    if let Ok(reply) = &result {
        // Its views switch once it is live: recorded with the change that
        // made it live, carried out by the outbox's executor.
        if reply.became_live && !reply.hydration.views.is_empty() {
            intents.push(Intent::RemapViews {
                hydration_id: reply.hydration.id,
            });
        }
    }
    slot.set(result);
    events
}

fn hydration_command(
    loaded: &mut Loaded,
    command: &HydrationCommand,
    actor: Option<&str>,
    now: Millis,
    events: &mut Vec<NewEvent>,
) -> Result<HydrationReply, RuleError> {
    let (id, session) = match command {
        HydrationCommand::Create {
            new,
            lease,
            log,
            attach,
        } => {
            let state = loaded
                .tables
                .get_mut(&new.table)
                .ok_or_else(|| RuleError::TableNotFound(new.table.clone()))?;
            let acquire = LeaseCommand::Acquire {
                table: new.table.clone(),
                request: lease.clone(),
            };
            let outcome = rules::apply(state, &acquire, actor, now);
            events.extend(outcome.events);
            let reply = outcome.result?;
            loaded
                .lease_tables
                .insert(reply.lease.id, new.table.clone());
            // A replay (same idempotency key, or this batch retried)
            // answers the hydration its lease was created for.
            if let Some(existing) = loaded.hydrations.get(&reply.lease.id) {
                return Ok(HydrationReply {
                    hydration: existing.clone(),
                    session: existing.attached(now).cloned(),
                    lease: Some(reply),
                    became_live: false,
                    replayed: true,
                });
            }
            if reply.lease.id != new.id {
                return Err(RuleError::IdempotencyConflict {
                    key: lease.idempotency_key.clone().unwrap_or_default(),
                });
            }
            let (mut hydration, event) = hydrations::rules::create(new.clone(), log, actor, now);
            events.push(event);
            let session = attach
                .as_ref()
                .map(|run| hydrations::rules::attach(&mut hydration, run, actor, now, events))
                .transpose()?;
            loaded.hydrations.insert(hydration.id, hydration);
            (new.id, session)
        }
        HydrationCommand::Attach { id, run, .. } => {
            let (state, h) = hydration_and_table(loaded, *id)?;
            let session = hydrations::rules::attach(h, run, actor, now, events)?;
            keep_lease(state, h, None, now, events)?;
            (*id, Some(session))
        }
        HydrationCommand::Heartbeat { id, token, .. } => {
            let (state, h) = hydration_and_table(loaded, *id)?;
            hydrations::rules::heartbeat(h, *token, actor, now)?;
            keep_lease(state, h, None, now, events)?;
            (*id, h.session.clone())
        }
        HydrationCommand::Detach { id, token, .. } => {
            let (_, h) = hydration_and_table(loaded, *id)?;
            hydrations::rules::detach(h, *token, actor, now, events)?;
            (*id, None)
        }
        HydrationCommand::Progress {
            id, report, log, ..
        } => {
            let (state, h) = hydration_and_table(loaded, *id)?;
            keep_lease(state, h, Some(report.snapshot_id), now, events)?;
            let became_live = hydrations::rules::progress(h, report, actor, log, now, events)?;
            if became_live {
                rules::release_held(state, h.id, LIVE_RELEASE, now, events);
            }
            let session = h.session.clone();
            return Ok(HydrationReply {
                lease: lease_of(state, *id),
                hydration: h.clone(),
                session,
                became_live,
                replayed: false,
            });
        }
        HydrationCommand::Cancel { id, reason, .. } => {
            let (state, h) = hydration_and_table(loaded, *id)?;
            hydrations::rules::cancel(h, reason, now, events)?;
            rules::end(
                state,
                *id,
                &format!("hydration cancelled: {reason}"),
                now,
                events,
            );
            (*id, None)
        }
    };
    let (state, h) = hydration_and_table(loaded, id)?;
    Ok(HydrationReply {
        lease: lease_of(state, id),
        hydration: h.clone(),
        session,
        became_live: false,
        replayed: false,
    })
}

/// In its first hydration, a hydration's run renews its read lease (and
/// moves its pin with progress); after it there is no lease to keep.
fn keep_lease(
    state: &mut TableState,
    h: &Hydration,
    pin: Option<i64>,
    now: Millis,
    events: &mut Vec<NewEvent>,
) -> Result<(), RuleError> {
    if h.state.holds_lease() {
        rules::hold(state, h.id, pin, now, events)?;
    }
    Ok(())
}

fn hydration_and_table(
    loaded: &mut Loaded,
    id: HydrationId,
) -> Result<(&mut TableState, &mut Hydration), RuleError> {
    let h = loaded
        .hydrations
        .get_mut(&id)
        .ok_or(RuleError::HydrationNotFound(id))?;
    let state = loaded
        .tables
        .get_mut(&h.table)
        .ok_or_else(|| RuleError::TableNotFound(h.table.clone()))?;
    Ok((state, h))
}

fn lease_of(state: &TableState, id: LeaseId) -> Option<LeaseReply> {
    state.find(id).cloned().map(|lease| LeaseReply {
        lease,
        position: None,
        replayed: false,
    })
}

fn apply_table(
    loaded: &mut Loaded,
    command: &TableCommand,
    now: Millis,
    slot: &mut Slot<TableReply>,
    intents: &mut Vec<Intent>,
) -> Vec<NewEvent> {
    let outcome = match command {
        TableCommand::Put { table, settings } => {
            let existing = loaded.tables.remove(table);
            let tags_before = existing.as_ref().map(|t| t.settings.pin_tags);
            let (state, outcome) = rules::put_table(existing, table.clone(), settings.clone(), now);
            if tags_before.is_some_and(|before| before != state.settings.pin_tags) {
                // Each copy's tag is written or taken back as it now says.
                intents.extend(
                    loaded
                        .hydrations
                        .values()
                        .filter(|h| &h.table == table && !h.state.is_final())
                        .map(|h| Intent::SyncPinTag { hydration_id: h.id }),
                );
            }
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
        hydrations: Vec::new(),
        intents: Vec::new(),
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
    pub stats: Arc<crate::stats::StoreStats>,
}

impl Group for Leases {
    type Job = Job;
    const NAME: &'static str = "leases";

    fn commit<'a>(&'a self, jobs: &'a mut [Job]) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let targets = targets(jobs);
            let changes = self
                .backend
                .transact_leases(&targets, &mut |loaded, now| apply(loaded, jobs, now))
                .await?;
            self.stats.lease_events(&changes.events, &changes.leases);
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
