//! Jobs, runs and compactions on DynamoDB.
//!
//! Items:
//! - `job` / NAME: the whole `Job` as its document, version `v`, and its
//!   planned fire in `fire` (ms; absent without one) so that `due_jobs`
//!   filters without decoding every definition.
//! - `run` / ID: the `Run`, version `v`, with the columns the SQL backends
//!   filter on beside it: `job`, `state`, `due` (ms), `created` (ms). Run
//!   ids are UUIDv7 in their text form, so the sort key orders runs by
//!   creation exactly as the SQL backends' `ORDER BY id` on the same text.
//! - `compaction` / ID: the `Compaction`, version `v`, with `table` and
//!   `state`; UUIDv7 ids as for runs.
//! - `pending-compaction` / TABLE: the table's one unfinished compaction
//!   (`{"id": ...}`), version `v`: what SQLite's unique partial index
//!   `compactions_pending` enforces. It is put (absent before) in the write
//!   that makes a compaction pending and deleted in the one that finishes
//!   it, so a second pending compaction of a table fails its transaction.
//!
//! - `run-open` / ID: one per run not finished (queued, starting, running,
//!   retrying, dead-lettered), with its `job`, `state` and `due`; put or
//!   deleted in the transaction that writes the run. The scheduler's tick
//!   (active runs, a job's occupied slots, a job's queued run) and the
//!   runs gauge read this partition, never the finished runs, which grow
//!   with every day until the pruner takes them.
//! - `job-fire` / FIRE/NAME: one per job with a planned fire (FIRE zero-
//!   padded ms, so the partition is in fire order), moved in the
//!   transaction that moves the fire: due jobs are one query of its head.
//!
//! Other listings that filter (runs by job or age) read the runs partition
//! and filter here, up to their page's limit. Unfinished compactions are
//! found through their `pending-compaction` items, one per table at most.
//!
//! The leader's fence is checked against its lease's table root (`table` /
//! NAME, written by `leases.rs`), and the root's version is a condition of
//! the same transaction: a takeover, which must rewrite that root, makes
//! the write fail instead of landing behind it.

use super::items::{doc, number, padded, text, version, Attrs, Range};
use super::leases::{LEASES, TABLES};
use super::write::{number_attr, text_attr, Committed, Expect, Write, Writes};
use super::{DynamoBackend, TRANSACT_RETRIES};
use crate::error::StoreError;
use crate::ports::{Fence, RunQuery, SchedulePort, ScheduleWrite, Versioned, Written};
use aws_sdk_dynamodb::types::AttributeValue;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use sluice_core::scheduling::{Compaction, Job, Run, RunId, RunState};
use sluice_core::{LeaseId, LeaseState, Millis, TableName, Token};
use std::collections::{BTreeMap, HashMap};

const JOBS: &str = "job";
const RUNS: &str = "run";
const COMPACTIONS: &str = "compaction";
const PENDING: &str = "pending-compaction";
const OPEN_RUNS: &str = "run-open";
const FIRES: &str = "job-fire";

/// How often `pending_compaction` reads again when the compaction its item
/// names finished in between.
const PENDING_READS: usize = 8;

/// The version a stored document must still be at (0: not stored yet).
fn expect(version: i64) -> Expect {
    if version == 0 {
        Expect::Absent
    } else {
        Expect::Version(version)
    }
}

fn versioned<T: serde::de::DeserializeOwned>(item: &Attrs) -> Result<Versioned<T>, StoreError> {
    Ok(Versioned {
        value: doc(item)?,
        version: version(item),
    })
}

fn text_is(item: &Attrs, name: &str, value: &str) -> bool {
    matches!(item.get(name), Some(AttributeValue::S(s)) if s == value)
}

fn run_state(item: &Attrs) -> Option<RunState> {
    text(item, "state").ok().and_then(RunState::parse)
}

/// Queued or retrying (waiting for `due`), starting, or running (polled at
/// `due`): what SQL's `ACTIVE_RUNS` lists.
fn is_active(state: RunState) -> bool {
    !state.is_final() && state != RunState::DeadLetter
}

fn fire_sk(at: Millis, name: &str) -> String {
    format!("{}/{name}", padded(at.0))
}

/// Write `job`, moving its `job-fire` item from the fire it had (`was`).
fn put_job(write: &mut Write, job: &Job, was: Option<Millis>, expect: Expect) {
    let fire = job.next_fire_at.map(|at| number_attr("fire", at.0));
    write.put(JOBS, &job.name, expect, job, fire);
    move_fire(write, &job.name, was, job.next_fire_at);
}

/// The job's own version guards its index item: no condition of its own.
fn move_fire(write: &mut Write, name: &str, was: Option<Millis>, now: Option<Millis>) {
    if was == now {
        return;
    }
    if let Some(at) = was {
        write.delete(FIRES, &fire_sk(at, name), Expect::Any);
    }
    if let Some(at) = now {
        write.put_attrs(
            FIRES,
            &fire_sk(at, name),
            Expect::Any,
            [text_attr("job", name)],
        );
    }
}

/// Not finished: in the `run-open` partition.
fn is_open(state: RunState) -> bool {
    !state.is_final()
}

/// The run's `run-open` item as its state says; `stored` when the run was
/// stored before (a new one had no item to delete).
fn index_run(write: &mut Write, r: &Run, stored: bool) {
    let id = r.id.to_string();
    if is_open(r.state) {
        write.put_attrs(
            OPEN_RUNS,
            &id,
            Expect::Any,
            [
                text_attr("job", r.job.clone()),
                text_attr("state", r.state.as_str()),
                number_attr("due", r.due_at.0),
            ],
        );
    } else if stored {
        write.delete(OPEN_RUNS, &id, Expect::Any);
    }
}

/// `sluice migrate`: the `run-open` and `job-fire` items of what an older
/// sluice stored without them.
pub(super) async fn build_indexes(backend: &DynamoBackend) -> Result<Vec<Write>, StoreError> {
    let mut writes = Writes::default();
    let open = backend
        .query(RUNS, Range::All, true, usize::MAX, |item| {
            run_state(item).is_some_and(is_open)
        })
        .await?;
    for item in &open {
        index_run(writes.next(), &doc(item)?, false);
    }
    for item in backend.query_all(JOBS).await? {
        let job: Job = doc(&item)?;
        move_fire(writes.next(), &job.name, None, job.next_fire_at);
    }
    Ok(writes.0)
}

fn put_run(write: &mut Write, run: &Versioned<Run>) {
    let r = &run.value;
    index_run(write, r, run.version != 0);
    write.put(
        RUNS,
        &r.id.to_string(),
        expect(run.version),
        r,
        [
            text_attr("job", r.job.clone()),
            text_attr("state", r.state.as_str()),
            number_attr("due", r.due_at.0),
            number_attr("created", r.created_at.0),
        ],
    );
}

fn put_compaction(write: &mut Write, c: &Versioned<Compaction>) {
    let value = &c.value;
    write.put(
        COMPACTIONS,
        &value.id.to_string(),
        expect(c.version),
        value,
        [
            text_attr("table", value.table.as_str()),
            text_attr("state", value.state.as_str()),
        ],
    );
}

/// A `pending-compaction` item's document.
#[derive(Serialize, Deserialize)]
struct Pending {
    id: uuid::Uuid,
}

/// A table's pending compaction as one write changes it.
struct Holder {
    table: String,
    /// The id the item named when read, and the item's version.
    read: Option<(uuid::Uuid, i64)>,
    /// The id it names after the write's compactions, in order.
    after: Option<uuid::Uuid>,
}

/// What of a table root the fence needs: serde skips the rest, so this
/// reads whatever `leases.rs` stores beside the live leases.
#[derive(Deserialize)]
struct Root {
    live: Vec<LiveLease>,
}

#[derive(Deserialize)]
struct LiveLease {
    id: LeaseId,
    state: LeaseState,
    token: Option<Token>,
    expires_at: Millis,
}

/// Whether the root holds the fence's lease granted, with its token and
/// unexpired at `now`. No skew margin here: the margin lets a holder keep
/// a lease a little past its expiry so that no other replica takes it too
/// early; a leader must stop at its expiry by its own clock, or a deposed
/// one could write after its successor was elected.
fn holds(root: &Attrs, fence: &Fence, now: Millis) -> Result<bool, StoreError> {
    let root: Root = doc(root)?;
    Ok(root.live.iter().any(|l| {
        l.id == fence.lease_id
            && l.state == LeaseState::Granted
            && l.token == Some(fence.token)
            && now < l.expires_at
    }))
}

impl DynamoBackend {
    /// The table the fence's lease is on, if the lease exists.
    async fn fence_table(&self, id: LeaseId) -> Result<Option<TableName>, StoreError> {
        if let Some(table) = self.known_table(id) {
            return Ok(Some(table));
        }
        let Some(item) = self.get(LEASES, &id.to_string()).await? else {
            return Ok(None);
        };
        let name = text(&item, "table")?;
        let table = TableName::parse(name)
            .map_err(|_| StoreError::Internal(format!("corrupt table name on a lease: {name}")))?;
        self.remember_tables([(id, table.clone())]);
        Ok(Some(table))
    }

    /// The fence's table and the version of its root at which the fence
    /// holds; `None` when it does not (the leader is deposed).
    async fn fence(&self, fence: &Fence) -> Result<Option<(TableName, i64)>, StoreError> {
        let Some(table) = self.fence_table(fence.lease_id).await? else {
            return Ok(None);
        };
        let Some(root) = self.get(TABLES, table.as_str()).await? else {
            return Ok(None);
        };
        if !holds(&root, fence, self.now())? {
            return Ok(None);
        }
        Ok(Some((table, version(&root))))
    }

    /// Add the documents of `w` to `write`, each conditioned on the version
    /// read; `false` when what was read already refuses them (a planned
    /// fire moved, a second pending compaction of a table).
    async fn plan_schedule(
        &self,
        write: &mut Write,
        w: &ScheduleWrite,
    ) -> Result<bool, StoreError> {
        let keys: Vec<(String, String)> = w
            .fires
            .iter()
            .map(|(name, _, _)| (JOBS.to_owned(), name.clone()))
            .collect();
        let jobs = self.get_many(&keys).await?;
        for (name, expected, next) in &w.fires {
            // As SQL's `WHERE next_fire_at IS ?`: the fire read must still be
            // the planned one, and the job must exist.
            let Some(item) = jobs.get(&(JOBS.to_owned(), name.clone())) else {
                return Ok(false);
            };
            let mut job: Job = doc(item)?;
            if job.next_fire_at != *expected {
                return Ok(false);
            }
            job.next_fire_at = *next;
            put_job(write, &job, *expected, Expect::Version(version(item)));
        }
        for run in &w.runs {
            put_run(write, run);
        }
        for c in &w.compactions {
            put_compaction(write, c);
        }
        self.plan_pending(write, &w.compactions).await
    }

    /// Keep each table's `pending-compaction` item naming its unfinished
    /// compaction. The compactions of one table in one write are applied in
    /// order and end in one action on its item, since a transaction may
    /// touch an item once.
    async fn plan_pending(
        &self,
        write: &mut Write,
        compactions: &[Versioned<Compaction>],
    ) -> Result<bool, StoreError> {
        let keys: Vec<(String, String)> = compactions
            .iter()
            .map(|c| (PENDING.to_owned(), c.value.table.as_str().to_owned()))
            .collect();
        let found = self.get_many(&keys).await?;
        let mut tables: Vec<Holder> = Vec::new();
        for c in compactions {
            let table = c.value.table.as_str();
            let at = match tables.iter().position(|h| h.table == table) {
                Some(at) => at,
                None => {
                    let read = match found.get(&(PENDING.to_owned(), table.to_owned())) {
                        Some(item) => Some((doc::<Pending>(item)?.id, version(item))),
                        None => None,
                    };
                    tables.push(Holder {
                        table: table.to_owned(),
                        read,
                        after: read.map(|(id, _)| id),
                    });
                    tables.len() - 1
                }
            };
            let after = &mut tables[at].after;
            if c.value.state.is_final() {
                if *after == Some(c.value.id) {
                    *after = None;
                }
            } else {
                match *after {
                    Some(other) if other != c.value.id => return Ok(false),
                    _ => *after = Some(c.value.id),
                }
            }
        }
        for Holder { table, read, after } in tables {
            match (read, after) {
                (None, Some(id)) => write.put(PENDING, &table, Expect::Absent, &Pending { id }, []),
                (Some((_, v)), None) => write.delete(PENDING, &table, Expect::Version(v)),
                (Some((old, v)), Some(id)) if old != id => {
                    write.put(PENDING, &table, Expect::Version(v), &Pending { id }, [])
                }
                // Unchanged: the compactions' own versions guard it.
                _ => {}
            }
        }
        Ok(true)
    }

    /// The `run-open` items that `keep` accepts, in id order.
    async fn open_runs_where(
        &self,
        keep: impl FnMut(&Attrs) -> bool,
    ) -> Result<Vec<Attrs>, StoreError> {
        self.query(OPEN_RUNS, Range::All, true, usize::MAX, keep)
            .await
    }

    /// The runs these `run-open` items name, as stored now (one that
    /// finished since its item was read is still returned: callers filter).
    async fn runs_of(&self, open: &[Attrs]) -> Result<Vec<Versioned<Run>>, StoreError> {
        let keys: Vec<(String, String)> = open
            .iter()
            .map(|item| Ok((RUNS.to_owned(), text(item, "sk")?.to_owned())))
            .collect::<Result<_, StoreError>>()?;
        self.get_in_order(&keys)
            .await?
            .iter()
            .map(versioned)
            .collect()
    }

    /// `runs` in an unfinished state: through the `run-open` items.
    async fn open_runs(&self, q: &RunQuery, state: RunState) -> Result<Vec<Run>, StoreError> {
        let after = q.after.map(|a| a.to_string());
        let open = self
            .open_runs_where(|item| {
                text_is(item, "state", state.as_str())
                    && q.job.as_deref().is_none_or(|job| text_is(item, "job", job))
                    && match (&after, text(item, "sk")) {
                        (None, _) => true,
                        (Some(after), Ok(id)) if q.newest_first => id < after.as_str(),
                        (Some(after), Ok(id)) => id > after.as_str(),
                        (Some(_), Err(_)) => false,
                    }
            })
            .await?;
        let mut runs: Vec<Run> = self
            .runs_of(&open)
            .await?
            .into_iter()
            .map(|r| r.value)
            .filter(|r| r.state == state && q.since.is_none_or(|since| r.created_at >= since))
            .collect();
        if q.newest_first {
            runs.reverse();
        }
        runs.truncate(q.limit as usize);
        Ok(runs)
    }

    /// The compaction a `pending-compaction` item names, while unfinished.
    async fn pending_of(&self, item: &Attrs) -> Result<Option<Versioned<Compaction>>, StoreError> {
        let id = doc::<Pending>(item)?.id;
        match self.get(COMPACTIONS, &id.to_string()).await? {
            Some(c) => {
                let c: Versioned<Compaction> = versioned(&c)?;
                Ok((!c.value.state.is_final()).then_some(c))
            }
            None => Err(StoreError::Internal(format!(
                "pending compaction {id} of {} is missing",
                text(item, "sk")?
            ))),
        }
    }
}

impl SchedulePort for DynamoBackend {
    fn put_job<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            // An upsert, as SQL's: a lost race (a fire moved meanwhile) reads
            // again and replaces what won.
            for _ in 0..TRANSACT_RETRIES {
                let found = self.get(JOBS, &job.name).await?;
                let mut stored = job.clone();
                let (was, expect) = match &found {
                    Some(item) => {
                        let old = doc::<Job>(item)?;
                        stored.created_at = old.created_at;
                        (old.next_fire_at, Expect::Version(version(item)))
                    }
                    // As SQL's insert: a new definition is created when updated.
                    None => {
                        stored.created_at = job.updated_at;
                        (None, Expect::Absent)
                    }
                };
                let mut write = Write::default();
                put_job(&mut write, &stored, was, expect);
                if let Committed::Done { .. } = self.commit(&write).await? {
                    return Ok(found.is_none());
                }
            }
            Err(StoreError::Unavailable(format!(
                "job {} kept changing while it was written",
                job.name
            )))
        }
        .boxed()
    }

    fn delete_job<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            for _ in 0..TRANSACT_RETRIES {
                let Some(found) = self.get(JOBS, name).await? else {
                    return Ok(false);
                };
                let mut write = Write::default();
                write.delete(JOBS, name, Expect::Version(version(&found)));
                move_fire(&mut write, name, doc::<Job>(&found)?.next_fire_at, None);
                if let Committed::Done { .. } = self.commit(&write).await? {
                    return Ok(true);
                }
            }
            Err(StoreError::Unavailable(format!(
                "job {name} kept changing while it was deleted"
            )))
        }
        .boxed()
    }

    fn job<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Job>, StoreError>> {
        async move {
            if name.is_empty() {
                // Not a key DynamoDB takes; no job has it.
                return Ok(None);
            }
            self.get_doc(JOBS, name).await
        }
        .boxed()
    }

    fn jobs<'a>(
        &'a self,
        after: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Job>, StoreError>> {
        async move {
            // An empty bound is not a key DynamoDB compares with: from the start.
            let range = if after.is_empty() {
                Range::All
            } else {
                Range::After(after.to_owned())
            };
            let items = self
                .query(JOBS, range, true, limit as usize, |_| true)
                .await?;
            items.iter().map(doc).collect()
        }
        .boxed()
    }

    fn due_jobs(&self, now: Millis, limit: u32) -> BoxFuture<'_, Result<Vec<Job>, StoreError>> {
        async move {
            // The head of the fire-ordered index, then those jobs.
            let due = self
                .query(
                    FIRES,
                    Range::Before(padded(now.0.saturating_add(1))),
                    true,
                    limit as usize,
                    |_| true,
                )
                .await?;
            let keys: Vec<(String, String)> = due
                .iter()
                .map(|item| Ok((JOBS.to_owned(), text(item, "job")?.to_owned())))
                .collect::<Result<_, StoreError>>()?;
            let mut jobs = Vec::with_capacity(keys.len());
            for item in self.get_in_order(&keys).await? {
                let job: Job = doc(&item)?;
                // Moved since the index was read (a deleted one is not found): not due.
                if job.next_fire_at.is_some_and(|at| at <= now) {
                    jobs.push(job);
                }
            }
            Ok(jobs)
        }
        .boxed()
    }

    fn run(&self, id: RunId) -> BoxFuture<'_, Result<Option<Versioned<Run>>, StoreError>> {
        async move {
            self.get(RUNS, &id.to_string())
                .await?
                .as_ref()
                .map(versioned)
                .transpose()
        }
        .boxed()
    }

    fn runs<'a>(&'a self, q: &'a RunQuery) -> BoxFuture<'a, Result<Vec<Run>, StoreError>> {
        async move {
            if let Some(state) = q.state.filter(|s| is_open(*s)) {
                return self.open_runs(q, state).await;
            }
            // Ids are UUIDv7: the sort key is the creation order. Newest
            // first continues before `after`, oldest first after it.
            let range = match (q.after, q.newest_first) {
                (None, _) => Range::All,
                (Some(after), true) => Range::Before(after.to_string()),
                (Some(after), false) => Range::After(after.to_string()),
            };
            let state = q.state.map(RunState::as_str);
            // Filtered here: reads on through the partition until `limit`
            // runs match.
            let items = self
                .query(RUNS, range, !q.newest_first, q.limit as usize, |item| {
                    q.job.as_deref().is_none_or(|job| text_is(item, "job", job))
                        && state.is_none_or(|state| text_is(item, "state", state))
                        && q.since.is_none_or(|since| {
                            number(item, "created").is_some_and(|at| at >= since.0)
                        })
                })
                .await?;
            items.iter().map(doc).collect()
        }
        .boxed()
    }

    fn run_counts(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, StoreError>> {
        async move {
            // Ordered by state, as the SQL backends order theirs.
            let mut counts: BTreeMap<String, i64> = BTreeMap::new();
            for item in self.open_runs_where(|_| true).await? {
                *counts.entry(text(&item, "state")?.to_owned()).or_default() += 1;
            }
            Ok(counts.into_iter().collect())
        }
        .boxed()
    }

    fn active_runs(
        &self,
        now: Millis,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Versioned<Run>>, StoreError>> {
        async move {
            let open = self
                .open_runs_where(|item| match run_state(item) {
                    Some(state) if is_active(state) => {
                        state == RunState::Starting
                            || number(item, "due").is_some_and(|due| due <= now.0)
                    }
                    _ => false,
                })
                .await?;
            let mut runs = self.runs_of(&open).await?;
            // Finished since the index was read: no longer active.
            runs.retain(|r| is_active(r.value.state));
            // Stable: equal due times stay in id (creation) order.
            runs.sort_by_key(|r| r.value.due_at);
            runs.truncate(limit as usize);
            Ok(runs)
        }
        .boxed()
    }

    fn prune_runs(&self, before: Millis, limit: u32) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            // The old end of the partition: UUIDv7 ids below `before`'s.
            let old = self
                .query(
                    RUNS,
                    Range::Before(crate::rows::v7_floor(before)),
                    true,
                    limit as usize,
                    |item| {
                        run_state(item).is_some_and(RunState::is_final)
                            && number(item, "created").is_some_and(|at| at < before.0)
                    },
                )
                .await?;
            let keys = old
                .iter()
                .map(|item| Ok((RUNS.to_owned(), text(item, "sk")?.to_owned())))
                .collect::<Result<Vec<_>, StoreError>>()?;
            self.delete_many(&keys).await
        }
        .boxed()
    }

    fn occupying(&self, job: &str) -> BoxFuture<'_, Result<u32, StoreError>> {
        let job = job.to_owned();
        async move {
            // The index item carries the state, written with the run.
            let items = self
                .open_runs_where(|item| {
                    text_is(item, "job", &job)
                        && run_state(item).is_some_and(RunState::occupies_slot)
                })
                .await?;
            Ok(u32::try_from(items.len()).unwrap_or(u32::MAX))
        }
        .boxed()
    }

    fn compaction(
        &self,
        id: uuid::Uuid,
    ) -> BoxFuture<'_, Result<Option<Versioned<Compaction>>, StoreError>> {
        async move {
            self.get(COMPACTIONS, &id.to_string())
                .await?
                .as_ref()
                .map(versioned)
                .transpose()
        }
        .boxed()
    }

    fn pending_compaction<'a>(
        &'a self,
        table: &'a TableName,
    ) -> BoxFuture<'a, Result<Option<Versioned<Compaction>>, StoreError>> {
        async move {
            // Two reads, not one: when the compaction named finished in
            // between, another may be pending by now, so read the item again.
            for _ in 0..PENDING_READS {
                let Some(item) = self.get(PENDING, table.as_str()).await? else {
                    return Ok(None);
                };
                if let Some(c) = self.pending_of(&item).await? {
                    return Ok(Some(c));
                }
            }
            Err(StoreError::Unavailable(format!(
                "the pending compaction of {table} kept changing while it was read"
            )))
        }
        .boxed()
    }

    fn compactions<'a>(
        &'a self,
        table: &'a TableName,
        before: Option<uuid::Uuid>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Compaction>, StoreError>> {
        async move {
            let range = match before {
                Some(before) => Range::Before(before.to_string()),
                None => Range::All,
            };
            // Newest first across every table's compactions, filtered here.
            let items = self
                .query(COMPACTIONS, range, false, limit as usize, |item| {
                    text_is(item, "table", table.as_str())
                })
                .await?;
            items.iter().map(doc).collect()
        }
        .boxed()
    }

    fn active_compactions(
        &self,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Versioned<Compaction>>, StoreError>> {
        async move {
            // One `pending-compaction` item per table with an unfinished
            // compaction: read those, not every compaction ever made.
            let keys: Vec<(String, String)> = self
                .query_all(PENDING)
                .await?
                .iter()
                .map(|item| Ok((COMPACTIONS.to_owned(), doc::<Pending>(item)?.id.to_string())))
                .collect::<Result<_, StoreError>>()?;
            let found: HashMap<(String, String), Attrs> = self.get_many(&keys).await?;
            let mut active: Vec<Versioned<Compaction>> = Vec::new();
            for item in found.values() {
                let c: Versioned<Compaction> = versioned(item)?;
                // One that finished since its item was read is left out.
                if !c.value.state.is_final() {
                    active.push(c);
                }
            }
            // Oldest first: ids are UUIDv7, whose byte order is their text's.
            active.sort_by_key(|c| c.value.id);
            active.truncate(limit as usize);
            Ok(active)
        }
        .boxed()
    }

    fn write_schedule<'a>(
        &'a self,
        w: &'a ScheduleWrite,
    ) -> BoxFuture<'a, Result<Written, StoreError>> {
        async move {
            for _ in 0..TRANSACT_RETRIES {
                let mut write = Write::default();
                let fenced = match &w.fence {
                    None => None,
                    Some(fence) => match self.fence(fence).await? {
                        None => return Ok(Written::Deposed),
                        Some((table, v)) => {
                            write.check(TABLES, table.as_str(), Expect::Version(v));
                            Some((table, v))
                        }
                    },
                };
                if !self.plan_schedule(&mut write, w).await? {
                    return Ok(Written::Conflict);
                }
                write.events(&w.events);
                match self.commit(&write).await? {
                    Committed::Done { .. } => return Ok(Written::Done),
                    Committed::Conflict => {
                        // DynamoDB does not say here which condition failed.
                        // When the fence's root moved (a heartbeat, another
                        // lease on that table), check the fence anew and send
                        // the same documents again: their versions are the
                        // caller's, so if one of them was the cause, the next
                        // try fails with the root unchanged. A root that did
                        // not move means a document changed: a conflict.
                        let Some((table, v)) = fenced else {
                            return Ok(Written::Conflict);
                        };
                        let now_at = self.get(TABLES, table.as_str()).await?;
                        if now_at.as_ref().map(version) == Some(v) {
                            return Ok(Written::Conflict);
                        }
                    }
                }
            }
            // The root keeps moving: let the scheduler read again next tick.
            Ok(Written::Conflict)
        }
        .boxed()
    }
}
