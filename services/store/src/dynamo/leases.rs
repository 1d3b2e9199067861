//! Tables and leases on DynamoDB.
//!
//! Items:
//! - `table` / NAME: the table's root, `TableState` with its live leases
//!   inline (`finished` left empty), version `v`. A lease command reads one
//!   item and writes it back: the queue, the grants and the fencing tokens
//!   change together under one condition.
//! - `lease` / ID: every lease, with attribute `table`; once finished also
//!   its whole document and `ended` (ms). Ids are UUIDv7, so the pruner
//!   walks the old end of this partition as the SQL backends walk theirs.
//! - `idem/TABLE` / KEY: the lease an idempotency key created.
//! - `table-folded` / lower-case NAME: the table registered under that name
//!   in any case, written with the root on the condition it is new: names
//!   that differ only in case are one table (the SQL backends' folded
//!   unique index).
//!
//! - `table-live` / NAME: one per table whose root holds live leases, put
//!   or deleted in the transaction that makes its root hold some or none
//!   (the root's version guards it): the sweeper and the leases gauge read
//!   these roots only, not every registered table.
//!
//! A root holds its live leases, so the number of leases live at once on
//! one table is bounded by DynamoDB's 400 KB item (about a thousand).

use super::items::{doc, number, text, version, Attrs, Range};
use super::write::{number_attr, text_attr, Committed, Expect, Write, Writes};
use super::{hydrations, in_scopes, DynamoBackend, SYSTEM_PREFIX, TRANSACT_RETRIES};
use crate::error::StoreError;
use crate::leases::{Changes, Loaded, Targets};
use crate::ports::{Apply, Due, LeaseCount, LeasePort, LeaseView, TableSummary};
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::{Lease, LeaseId, LeaseState, Millis, TableName, TableState};
use std::collections::{HashMap, HashSet};

pub(super) const TABLES: &str = "table";
pub(super) const LEASES: &str = "lease";
const FOLDED: &str = "table-folded";
const LIVE_TABLES: &str = "table-live";

fn idem_pk(table: &TableName) -> String {
    format!("idem/{table}")
}

fn lease_table(item: &Attrs) -> Result<TableName, StoreError> {
    let name = text(item, "table")?;
    TableName::parse(name)
        .map_err(|_| StoreError::Internal(format!("corrupt table name on a lease: {name}")))
}

/// A finished lease's document, if the item holds one.
fn finished_doc(item: &Attrs) -> Result<Option<Lease>, StoreError> {
    if item.contains_key("doc") {
        doc(item).map(Some)
    } else {
        Ok(None)
    }
}

/// `sluice migrate`: the `table-live` items of the roots an older sluice
/// stored without them.
pub(super) async fn build_indexes(backend: &DynamoBackend) -> Result<Vec<Write>, StoreError> {
    let mut writes = Writes::default();
    for item in backend.query_all(TABLES).await? {
        let root = backend.decode_root(&item)?;
        if !root.live.is_empty() {
            writes
                .next()
                .put_attrs(LIVE_TABLES, root.name.as_str(), Expect::Any, []);
        }
    }
    Ok(writes.0)
}

/// A root as stored: live leases in queue order, nothing finished.
fn stored_root(state: &TableState) -> TableState {
    let mut root = state.clone();
    root.finished.clear();
    root.live.sort_by_key(|l| l.seq);
    root
}

impl DynamoBackend {
    fn decode_root(&self, item: &Attrs) -> Result<TableState, StoreError> {
        let mut state: TableState = doc(item)?;
        state.skew_margin = self.skew_margin;
        Ok(state)
    }

    /// Whether a live lease is past its expiry with the margin added.
    fn expired(&self, lease: &Lease, now: Millis) -> bool {
        lease.is_expired_at(Millis(now.0 - self.skew_margin.0))
    }

    /// Every root with live leases (the sweeper's look, the metrics).
    async fn live_roots(&self) -> Result<Vec<TableState>, StoreError> {
        let keys: Vec<(String, String)> = self
            .query_all(LIVE_TABLES)
            .await?
            .iter()
            .map(|item| Ok((TABLES.to_owned(), text(item, "sk")?.to_owned())))
            .collect::<Result<_, StoreError>>()?;
        self.get_in_order(&keys)
            .await?
            .iter()
            .map(|item| self.decode_root(item))
            .collect()
    }

    /// Load what a batch names, each root with the version it was read at.
    async fn load(&self, targets: &Targets) -> Result<(Loaded, Versions), StoreError> {
        let fresh: HashSet<LeaseId> = targets.fresh.iter().map(|(id, _)| *id).collect();
        let mut tables: HashSet<TableName> = targets.tables.iter().cloned().collect();
        let mut lease_tables: HashMap<LeaseId, TableName> = HashMap::new();
        let mut unknown: Vec<LeaseId> = Vec::new();
        for id in &targets.leases {
            match self.known_table(*id) {
                Some(table) => {
                    tables.insert(table.clone());
                    lease_tables.insert(*id, table);
                }
                // A new lease's item cannot exist unless an earlier attempt
                // of this batch committed, and then its root holds it live.
                None if fresh.contains(id) => {}
                None => unknown.push(*id),
            }
        }
        // First round: the roots, the unknown leases, the idempotency keys.
        let mut keys: Vec<(String, String)> = tables
            .iter()
            .map(|t| (TABLES.to_owned(), t.to_string()))
            .collect();
        keys.extend(unknown.iter().map(|id| (LEASES.to_owned(), id.to_string())));
        keys.extend(
            targets
                .idempotency_keys
                .iter()
                .map(|(t, k)| (idem_pk(t), k.clone())),
        );
        keys.extend(
            targets
                .tables
                .iter()
                .map(|t| (FOLDED.to_owned(), t.as_str().to_lowercase())),
        );
        let mut read = self.get_many(&keys).await?;
        let mut finished: HashMap<LeaseId, Lease> = HashMap::new();
        let mut learned = Vec::new();
        for id in &unknown {
            if let Some(item) = read.get(&(LEASES.to_owned(), id.to_string())) {
                let table = lease_table(item)?;
                if let Some(lease) = finished_doc(item)? {
                    finished.insert(*id, lease);
                }
                learned.push((*id, table.clone()));
                lease_tables.insert(*id, table.clone());
                tables.insert(table);
            }
        }
        self.remember_tables(learned);
        let keyed: Vec<LeaseId> = targets
            .idempotency_keys
            .iter()
            .filter_map(|(t, k)| read.get(&(idem_pk(t), k.clone())))
            .filter_map(|item| text(item, "lease").ok()?.parse().ok())
            .collect();
        // Second round: roots learned from leases, and the finished leases
        // (named or keyed) that no root holds live.
        let missing_roots: Vec<(String, String)> = tables
            .iter()
            .map(|t| (TABLES.to_owned(), t.to_string()))
            .filter(|k| !read.contains_key(k))
            .collect();
        if !missing_roots.is_empty() {
            read.extend(self.get_many(&missing_roots).await?);
        }
        let mut loaded = Loaded::default();
        let mut versions = Versions::default();
        for table in &tables {
            if let Some(item) = read.get(&(TABLES.to_owned(), table.to_string())) {
                versions.roots.insert(table.clone(), version(item));
                loaded.tables.insert(table.clone(), self.decode_root(item)?);
            }
        }
        for table in &targets.tables {
            let folded = (FOLDED.to_owned(), table.as_str().to_lowercase());
            if let Some(item) = read.get(&folded) {
                versions
                    .folded
                    .insert(table.clone(), text(item, "table")?.to_owned());
            }
        }
        let live: HashSet<LeaseId> = loaded
            .tables
            .values()
            .flat_map(|t| t.live.iter().map(|l| l.id))
            .collect();
        let wanted: Vec<(String, String)> = targets
            .leases
            .iter()
            .chain(keyed.iter())
            .filter(|id| !live.contains(id) && !finished.contains_key(id))
            .filter(|id| !fresh.contains(id) || keyed.contains(id))
            .map(|id| (LEASES.to_owned(), id.to_string()))
            .collect();
        if !wanted.is_empty() {
            for item in self.get_many(&wanted).await?.values() {
                if let Some(lease) = finished_doc(item)? {
                    finished.insert(lease.id, lease);
                }
            }
        }
        for lease in finished.into_values() {
            loaded.place(lease);
        }
        for state in loaded.tables.values() {
            for lease in &state.live {
                if targets.leases.contains(&lease.id) {
                    lease_tables.insert(lease.id, lease.table.clone());
                }
            }
        }
        lease_tables.retain(|_, t| loaded.tables.contains_key(t));
        loaded.lease_tables = lease_tables;
        Ok((loaded, versions))
    }
}

/// The versions a batch's roots were read at, and the registered names
/// its tables fold to.
#[derive(Default)]
struct Versions {
    roots: HashMap<TableName, i64>,
    folded: HashMap<TableName, String>,
}

/// A table the batch creates whose name another table has in another case.
fn twin(versions: &Versions, changes: &Changes) -> Option<(String, String)> {
    changes.created_tables.iter().find_map(|t| {
        let registered = versions.folded.get(&t.name)?;
        (registered != t.name.as_str()).then(|| (t.name.to_string(), registered.clone()))
    })
}

/// Each changed root, as it is after the batch: the states the rules left
/// for tables whose header changed, else the loaded one with its changed
/// leases put in (or taken out, once finished).
fn roots_after(before: &HashMap<TableName, TableState>, changes: &Changes) -> Vec<TableState> {
    let mut after: HashMap<TableName, TableState> = HashMap::new();
    for state in changes
        .created_tables
        .iter()
        .chain(changes.updated_tables.iter())
    {
        after.insert(state.name.clone(), state.clone());
    }
    for (table, leases) in changes.changed_by_table() {
        if after.contains_key(&table) {
            continue;
        }
        let Some(old) = before.get(&table) else {
            continue;
        };
        let mut state = old.clone();
        for lease in leases {
            state.live.retain(|l| l.id != lease.id);
            if lease.is_live() {
                state.live.push(lease);
            }
        }
        after.insert(table, state);
    }
    after.into_values().map(|s| stored_root(&s)).collect()
}

fn write_changes(
    write: &mut Write,
    before: &HashMap<TableName, TableState>,
    versions: &Versions,
    changes: &Changes,
) {
    let mut written = HashSet::new();
    for root in roots_after(before, changes) {
        let expect = match versions.roots.get(&root.name) {
            Some(v) => Expect::Version(*v),
            None => {
                write.put_attrs(
                    FOLDED,
                    &root.name.as_str().to_lowercase(),
                    Expect::Absent,
                    [text_attr("table", root.name.as_str())],
                );
                Expect::Absent
            }
        };
        write.put(TABLES, root.name.as_str(), expect, &root, []);
        let was_live = before.get(&root.name).is_some_and(|t| !t.live.is_empty());
        match (was_live, !root.live.is_empty()) {
            (false, true) => write.put_attrs(LIVE_TABLES, root.name.as_str(), Expect::Any, []),
            (true, false) => write.delete(LIVE_TABLES, root.name.as_str(), Expect::Any),
            _ => {}
        }
        written.insert(root.name.clone());
    }
    // What the batch decided on without changing it must not have changed
    // either: the same guarantee as a SQL backend's row locks.
    for (table, v) in &versions.roots {
        if !written.contains(table) {
            write.check(TABLES, table.as_str(), Expect::Version(*v));
        }
    }
    let known: HashSet<LeaseId> = before
        .values()
        .flat_map(|t| t.live.iter().chain(t.finished.iter()).map(|l| l.id))
        .collect();
    for lease in &changes.leases {
        let table = text_attr("table", lease.table.as_str());
        if !lease.is_live() {
            let ended = number_attr("ended", lease.ended_at.unwrap_or(lease.expires_at).0);
            write.put(
                LEASES,
                &lease.id.to_string(),
                Expect::Any,
                lease,
                [table, ended],
            );
        } else if !known.contains(&lease.id) {
            write_index(write, lease);
        }
        if !known.contains(&lease.id) {
            if let Some(key) = &lease.idempotency_key {
                write.put_attrs(
                    &idem_pk(&lease.table),
                    key,
                    Expect::Any,
                    [text_attr("lease", lease.id.to_string())],
                );
            }
        }
    }
    hydrations::write(write, &changes.hydrations);
    let at = changes
        .events
        .first()
        .map_or_else(crate::system_now, |e| e.at);
    super::views::put_intents(write, &changes.intents, at);
    write.events(&changes.events);
}

/// A live lease's item: only where to find it.
fn write_index(write: &mut Write, lease: &Lease) {
    write.put_attrs(
        LEASES,
        &lease.id.to_string(),
        Expect::Any,
        [text_attr("table", lease.table.as_str())],
    );
}

impl LeasePort for DynamoBackend {
    fn transact_leases<'a>(
        &'a self,
        targets: &'a Targets,
        apply: Apply<'a, Loaded, Changes>,
    ) -> BoxFuture<'a, Result<Changes, StoreError>> {
        async move {
            for _ in 0..TRANSACT_RETRIES {
                let (mut loaded, versions) = self.load(targets).await?;
                hydrations::load(self, targets, &mut loaded).await?;
                let before = loaded.tables.clone();
                let changes = apply(loaded, self.now());
                if changes.is_empty() {
                    return Ok(changes);
                }
                if let Some((name, registered)) = twin(&versions, &changes) {
                    return Err(StoreError::Conflict(format!(
                        "table {name} differs from the registered {registered} only in case"
                    )));
                }
                let mut write = Write::default();
                write_changes(&mut write, &before, &versions, &changes);
                match self.commit(&write).await? {
                    Committed::Done { first_event } => {
                        self.remember_tables(
                            changes.leases.iter().map(|l| (l.id, l.table.clone())),
                        );
                        self.own(first_event, changes.events.len());
                        return Ok(changes);
                    }
                    // Another replica changed a root first: decide again
                    // on what it left.
                    Committed::Conflict => continue,
                }
            }
            Err(StoreError::Unavailable(format!(
                "lost the race for these tables {TRANSACT_RETRIES} times: {:?}",
                targets.tables
            )))
        }
        .boxed()
    }

    fn lease(&self, id: LeaseId) -> BoxFuture<'_, Result<Option<LeaseView>, StoreError>> {
        async move {
            let now = self.now();
            let table = match self.known_table(id) {
                Some(table) => table,
                None => {
                    let Some(item) = self.get(LEASES, &id.to_string()).await? else {
                        return Ok(None);
                    };
                    if let Some(lease) = finished_doc(&item)? {
                        return Ok(Some(LeaseView {
                            lease,
                            position: None,
                            stale: false,
                        }));
                    }
                    let table = lease_table(&item)?;
                    self.remember_tables([(id, table.clone())]);
                    table
                }
            };
            if let Some(root) = self.get(TABLES, table.as_str()).await? {
                let state = self.decode_root(&root)?;
                if let Some(lease) = state.live.iter().find(|l| l.id == id) {
                    let position = (lease.state == LeaseState::Waiting)
                        .then(|| 1 + state.waiters().take_while(|w| w.id != id).count() as u32);
                    return Ok(Some(LeaseView {
                        stale: self.expired(lease, now),
                        lease: lease.clone(),
                        position,
                    }));
                }
            }
            // Not live: finished (its item says how), or not committed yet.
            let item = self.get(LEASES, &id.to_string()).await?;
            let finished = item.as_ref().map(finished_doc).transpose()?.flatten();
            Ok(finished.map(|lease| LeaseView {
                lease,
                position: None,
                stale: false,
            }))
        }
        .boxed()
    }

    fn tables<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
        scopes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<TableSummary>, StoreError>> {
        async move {
            let now = self.now();
            let range = match after {
                Some(after) if !after.is_empty() => Range::After(after.to_owned()),
                _ => Range::All,
            };
            let items = self
                .query(TABLES, range, true, limit as usize, |item| {
                    text(item, "sk").is_ok_and(|name| {
                        !name.starts_with(SYSTEM_PREFIX) && in_scopes(name, scopes)
                    })
                })
                .await?;
            items
                .iter()
                .map(|item| {
                    let mut state = self.decode_root(item)?;
                    let live: Vec<&Lease> = state
                        .live
                        .iter()
                        .filter(|l| !self.expired(l, now))
                        .collect();
                    let holders = live
                        .iter()
                        .filter(|l| l.state == LeaseState::Granted)
                        .count();
                    let waiters = live.len() - holders;
                    state.live.clear();
                    Ok(TableSummary {
                        state,
                        holders: holders as u32,
                        waiters: waiters as u32,
                    })
                })
                .collect()
        }
        .boxed()
    }

    fn lease_counts(&self) -> BoxFuture<'_, Result<Vec<LeaseCount>, StoreError>> {
        async move {
            let now = self.now();
            let mut counts: HashMap<(String, String), i64> = HashMap::new();
            for state in self.live_roots().await? {
                if state.name.as_str().starts_with(SYSTEM_PREFIX) {
                    continue;
                }
                for lease in state.live.iter().filter(|l| !self.expired(l, now)) {
                    *counts
                        .entry((
                            lease.mode.as_str().to_owned(),
                            lease.state.as_str().to_owned(),
                        ))
                        .or_default() += 1;
                }
            }
            Ok(counts
                .into_iter()
                .map(|((mode, state), n)| (mode, state, n))
                .collect())
        }
        .boxed()
    }

    fn table_named_alike<'a>(
        &'a self,
        name: &'a TableName,
    ) -> BoxFuture<'a, Result<Option<TableName>, StoreError>> {
        async move {
            // The folded-name item says which spelling is registered: one
            // read, not a walk through every table.
            let lower = name.as_str().to_lowercase();
            let Some(item) = self.get(FOLDED, &lower).await? else {
                return Ok(None);
            };
            let registered = text(&item, "table")?;
            if registered == name.as_str() {
                return Ok(None);
            }
            TableName::parse(registered)
                .map(Some)
                .map_err(|_| StoreError::Internal(format!("corrupt table name {registered}")))
        }
        .boxed()
    }

    fn prune_leases(&self, before: Millis, limit: u32) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            let old = self
                .query(
                    LEASES,
                    Range::Before(crate::rows::v7_floor(before)),
                    true,
                    limit as usize,
                    |item| number(item, "ended").is_some_and(|ended| ended < before.0),
                )
                .await?;
            let mut keys = Vec::new();
            for item in &old {
                keys.push((LEASES.to_owned(), text(item, "sk")?.to_owned()));
                if let Some(lease) = finished_doc(item)? {
                    if let Some(key) = &lease.idempotency_key {
                        keys.push((idem_pk(&lease.table), key.clone()));
                    }
                }
            }
            self.delete_many(&keys).await?;
            Ok(old.len() as u64)
        }
        .boxed()
    }

    fn due(&self) -> BoxFuture<'_, Result<Due, StoreError>> {
        async move {
            let now = self.now();
            let mut tables = Vec::new();
            let mut next_expiry: Option<Millis> = None;
            for state in self.live_roots().await? {
                let mut due = false;
                for lease in &state.live {
                    if self.expired(lease, now) {
                        due = true;
                    } else {
                        let at = Millis(lease.expires_at.0 + self.skew_margin.0);
                        next_expiry = Some(next_expiry.map_or(at, |n| n.min(at)));
                    }
                }
                if due {
                    tables.push(state.name);
                }
            }
            tables.truncate(1000);
            Ok(Due {
                tables,
                next_expiry,
                now,
            })
        }
        .boxed()
    }
}
