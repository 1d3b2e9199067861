//! The store's ports: one trait per aggregate, each implemented once per
//! backend (`sqlite/`, `postgres/`, a file per aggregate inside). A backend
//! is the sum of its ports plus what the whole database answers (its name,
//! a ping, how many transactions may run at once).
//!
//! Writes go through `transact_*`: the backend loads what the targets name
//! (locked, in a fixed order), hands the state to a pure `apply` that the
//! database-neutral half (`leases.rs`, `streams.rs`) supplies, writes the
//! changes it returns, and commits. Backends never see commands.

use crate::error::StoreError;
use crate::{leases, streams};
use futures::future::BoxFuture;
use sluice_core::aws_identity::ArnRule;
use sluice_core::containers::{Container, ContainerName};
use sluice_core::hydrations::{Hydration, HydrationId, HydrationState};
use sluice_core::outbox::{Intent, IntentStatus};
use sluice_core::scheduling::{Compaction, Job, Run, RunId, RunState};
use sluice_core::snapshots::{Cause, Listed, Refresh, Snapshot, SnapshotId};
use sluice_core::views::{Remap, View};
use sluice_core::{
    Batch, BatchId, BookmarkVersion, Event, EventKind, Lease, LeaseId, Millis, NewEvent, Role,
    StreamName, StreamState, TableName, TableSettings, TableState,
};

/// Computes a transaction's changes from the state it loaded, at the
/// database's `now`.
pub type Apply<'a, Loaded, Changes> = &'a mut (dyn FnMut(Loaded, Millis) -> Changes + Send);

/// Live leases of one mode in one state: `(mode, state, count)`.
pub type LeaseCount = (String, String, i64);

/// Tables and their leases.
pub trait LeasePort: Send + Sync + 'static {
    fn transact_leases<'a>(
        &'a self,
        targets: &'a leases::Targets,
        apply: Apply<'a, leases::Loaded, leases::Changes>,
    ) -> BoxFuture<'a, Result<leases::Changes, StoreError>>;
    /// A lease and its place in the queue, read without a transaction.
    fn lease(&self, id: LeaseId) -> BoxFuture<'_, Result<Option<LeaseView>, StoreError>>;
    /// Tables by name after `after`, only those with one of the name
    /// prefixes in `scopes` (empty: all). sluice's own (`sluice_system.*`)
    /// are never listed; they are read by name.
    fn tables<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
        scopes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<TableSummary>, StoreError>>;
    /// Live (unexpired) leases counted by mode and state, on every table
    /// but sluice's own.
    fn lease_counts(&self) -> BoxFuture<'_, Result<Vec<LeaseCount>, StoreError>>;
    /// The registered table whose name differs from `name` only in case.
    fn table_named_alike<'a>(
        &'a self,
        name: &'a TableName,
    ) -> BoxFuture<'a, Result<Option<TableName>, StoreError>>;
    /// Delete up to `limit` of the oldest finished leases that ended before
    /// `before`; how many went.
    fn prune_leases(&self, before: Millis, limit: u32) -> BoxFuture<'_, Result<u64, StoreError>>;
    /// The tables whose live leases have expired, and the next expiry.
    fn due(&self) -> BoxFuture<'_, Result<Due, StoreError>>;
}

/// CDC streams, their batches and bookmark history.
pub trait StreamPort: Send + Sync + 'static {
    fn transact_streams<'a>(
        &'a self,
        targets: &'a streams::Targets,
        apply: Apply<'a, streams::Loaded, streams::Changes>,
    ) -> BoxFuture<'a, Result<streams::Changes, StoreError>>;
    /// A stream with its open batch (in `batches`).
    fn stream<'a>(
        &'a self,
        name: &'a StreamName,
    ) -> BoxFuture<'a, Result<Option<StreamState>, StoreError>>;
    /// Streams by name after `after`, limited to `scopes` like tables.
    fn streams<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
        scopes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<StreamState>, StoreError>>;
    fn batch<'a>(
        &'a self,
        stream: &'a StreamName,
        id: BatchId,
    ) -> BoxFuture<'a, Result<Option<Batch>, StoreError>>;
    /// Bookmark versions after `after_version`, oldest first, without
    /// their lists of files done (a full load's can be 20,000 long).
    fn history<'a>(
        &'a self,
        stream: &'a StreamName,
        after_version: i64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<VersionSummary>, StoreError>>;
    /// Delete up to `limit` of the oldest finished batches that ended
    /// before `before` (bookmark versions are kept); how many went.
    fn prune_batches(&self, before: Millis, limit: u32) -> BoxFuture<'_, Result<u64, StoreError>>;
    /// One bookmark version, whole.
    fn version<'a>(
        &'a self,
        stream: &'a StreamName,
        version: i64,
    ) -> BoxFuture<'a, Result<Option<BookmarkVersion>, StoreError>>;
}

/// A history entry as a page shows it: its `load.files_done` is left empty
/// and only counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSummary {
    pub version: BookmarkVersion,
    pub files_done: usize,
}

/// Bearer tokens. They change rarely and outside the hot paths, so they are
/// plain statements, not group-committed commands.
pub trait TokenPort: Send + Sync + 'static {
    fn find<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<TokenRecord>, StoreError>>;
    fn list(&self) -> BoxFuture<'_, Result<Vec<TokenRecord>, StoreError>>;
    /// Store a new token; `false` if the name is taken.
    fn create<'a>(&'a self, token: &'a TokenRecord) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Revoke the token named `name`; `false` if there is none (or it was
    /// revoked already).
    fn revoke<'a>(&'a self, name: &'a str, now: Millis) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Delete up to `limit` tokens of IAM logins that expired before
    /// `before` (each login makes one); how many went.
    fn prune_logins(&self, before: Millis, limit: u32) -> BoxFuture<'_, Result<u64, StoreError>>;
    /// The rules that map AWS identities to principals (IAM
    /// authentication), by pattern.
    fn aws_principals(&self) -> BoxFuture<'_, Result<Vec<ArnRule>, StoreError>>;
    /// Store a rule; `false` if one with that pattern exists.
    fn create_aws_principal<'a>(
        &'a self,
        rule: &'a ArnRule,
        now: Millis,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Delete the rule with this pattern; `false` if there is none.
    fn delete_aws_principal<'a>(
        &'a self,
        pattern: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}

/// The event log, appended to by every aggregate's transactions.
pub trait EventPort: Send + Sync + 'static {
    fn events<'a>(&'a self, query: &'a EventQuery)
        -> BoxFuture<'a, Result<Vec<Event>, StoreError>>;
    /// The id of the newest event (0: the log is empty): where a reader
    /// that wants only what comes next starts.
    fn newest_event_id(&self) -> BoxFuture<'_, Result<i64, StoreError>>;
    /// Delete up to `limit` of the oldest events written before `before`,
    /// never one of the last `keep_last`; how many went.
    fn prune_events(
        &self,
        before: Millis,
        keep_last: i64,
        limit: u32,
    ) -> BoxFuture<'_, Result<u64, StoreError>>;
}

/// The table snapshot log. Refreshes are rare and off the hot paths, so
/// they are plain transactions, not group-committed commands.
pub trait SnapshotPort: Send + Sync + 'static {
    /// A registered table's settings; `None` when it is not registered.
    fn table_settings<'a>(
        &'a self,
        table: &'a TableName,
    ) -> BoxFuture<'a, Result<Option<TableSettings>, StoreError>>;
    /// Record a refresh in one transaction with the table's catalog-state
    /// row locked, so that replicas refreshing one table at once agree on
    /// what was new: `apply` gets the ids the log holds (each with whether
    /// it is marked expired) and says what to write.
    fn record_refresh<'a>(
        &'a self,
        table: &'a TableName,
        catalog: &'a str,
        apply: Apply<'a, Vec<(SnapshotId, bool)>, SnapshotChanges>,
    ) -> BoxFuture<'a, Result<SnapshotChanges, StoreError>>;
    /// Record why a refresh failed; what the last success read stays.
    fn record_refresh_error<'a>(
        &'a self,
        table: &'a TableName,
        catalog: &'a str,
        message: &'a str,
        at: Millis,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    fn catalog_state<'a>(
        &'a self,
        table: &'a TableName,
    ) -> BoxFuture<'a, Result<Option<CatalogState>, StoreError>>;
    /// What the last refresh of each table after `after` read, by name:
    /// what a reconcile pass compares a catalog's listing with.
    fn catalog_states<'a>(
        &'a self,
        after: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<CatalogState>, StoreError>>;
    /// A catalog's reconcile pass completed: `listed` replaces the last.
    fn record_listing<'a>(
        &'a self,
        catalog: &'a str,
        listed: &'a Listed,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The catalog's last completed pass, if any.
    fn catalog_listing<'a>(
        &'a self,
        catalog: &'a str,
    ) -> BoxFuture<'a, Result<Option<Listed>, StoreError>>;
    /// Snapshots after `(sequence_number, snapshot_id)`, in that order.
    fn snapshots<'a>(
        &'a self,
        table: &'a TableName,
        after: (i64, SnapshotId),
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Snapshot>, StoreError>>;
    /// Whether the log holds snapshot `id` of `table`.
    fn has_snapshot<'a>(
        &'a self,
        table: &'a TableName,
        id: SnapshotId,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Every snapshot the log holds for `table`, in no order.
    fn snapshot_log<'a>(
        &'a self,
        table: &'a TableName,
    ) -> BoxFuture<'a, Result<Vec<Snapshot>, StoreError>>;
}

/// What one refresh writes.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotChanges {
    pub refresh: Refresh,
    pub metadata_location: Option<String>,
    pub current_snapshot_id: Option<SnapshotId>,
    pub refreshed_at: Millis,
    pub refreshed_by: Cause,
    /// Written when the log changed.
    pub event: Option<NewEvent>,
}

/// What the last refresh of a table read, or why it failed.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogState {
    pub table: TableName,
    pub catalog: String,
    pub metadata_location: Option<String>,
    pub current_snapshot_id: Option<SnapshotId>,
    pub refreshed_at: Option<Millis>,
    /// Why; `None` for a refresh recorded before causes were kept.
    pub refreshed_by: Option<Cause>,
    pub error: Option<String>,
    pub error_at: Option<Millis>,
}

/// Consumer data containers. They change rarely: plain statements.
pub trait ContainerPort: Send + Sync + 'static {
    /// Register or replace a container; `true` when it is new.
    fn put_container<'a>(
        &'a self,
        container: &'a Container,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn container<'a>(
        &'a self,
        name: &'a ContainerName,
    ) -> BoxFuture<'a, Result<Option<Container>, StoreError>>;
    /// Containers by name after `after`.
    fn containers<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Container>, StoreError>>;
}

/// Hydrations, read outside transactions (they are written by the lease
/// group: `leases.rs`).
pub trait HydrationPort: Send + Sync + 'static {
    fn hydration(&self, id: HydrationId) -> BoxFuture<'_, Result<Option<Hydration>, StoreError>>;
    /// Hydrations by id after `query.after`, filtered.
    fn hydrations<'a>(
        &'a self,
        query: &'a HydrationQuery,
    ) -> BoxFuture<'a, Result<Vec<Hydration>, StoreError>>;
    /// `table`'s hydrations that have not ended (what a relag or the
    /// retention reads): one indexed read, whatever other tables hold.
    fn open_hydrations<'a>(
        &'a self,
        table: &'a TableName,
    ) -> BoxFuture<'a, Result<Vec<Hydration>, StoreError>>;
}

#[derive(Debug, Clone, Default)]
pub struct HydrationQuery {
    pub after: Option<HydrationId>,
    pub state: Option<HydrationState>,
    pub table: Option<TableName>,
    pub container: Option<ContainerName>,
    pub limit: u32,
    /// Only hydrations of tables with one of these name prefixes.
    pub scopes: Vec<String>,
}

/// The outbox and the consumer views it keeps in step. Plain statements:
/// remaps are rare and off the hot paths.
pub trait ViewStorePort: Send + Sync + 'static {
    /// Pending intents due at `now` with ids above `after`, oldest first.
    fn due_intents(
        &self,
        now: Millis,
        after: i64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<DueIntent>, StoreError>>;
    /// The newest intent of `kind` carried out for each of `hydrations`
    /// that has one, however it went: one read for a page of them.
    fn latest_intents_of<'a>(
        &'a self,
        hydrations: &'a [HydrationId],
        kind: &'a str,
    ) -> BoxFuture<'a, Result<Vec<IntentStatus>, StoreError>>;
    /// An attempt failed in a way worth retrying at `next_attempt_at`.
    fn retry_intent<'a>(
        &'a self,
        id: i64,
        error: &'a str,
        next_attempt_at: Millis,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Done with nothing to record, or (`error`) failed for good.
    fn finish_intent<'a>(
        &'a self,
        id: i64,
        error: Option<&'a str>,
        at: Millis,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Record switched views in one transaction: their new mappings, their
    /// history, the events, and `intent` done. `false` (nothing written)
    /// when the intent was done already: a remap is recorded once.
    fn record_remaps<'a>(
        &'a self,
        container: &'a ContainerName,
        remaps: &'a [Remap],
        intent: Option<i64>,
        events: &'a [NewEvent],
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn view<'a>(
        &'a self,
        container: &'a ContainerName,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<View>, StoreError>>;
    /// Views by (container, name) after `after`, of one container or all.
    fn views<'a>(
        &'a self,
        container: Option<&'a ContainerName>,
        after: (&'a str, &'a str),
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<View>, StoreError>>;
    /// A view's remaps, newest first.
    fn view_history<'a>(
        &'a self,
        container: &'a ContainerName,
        name: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Remap>, StoreError>>;
    /// Turn automatic remaps of a view on or off; `false` if no such view.
    fn set_auto_remap<'a>(
        &'a self,
        container: &'a ContainerName,
        name: &'a str,
        on: bool,
        at: Millis,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Tables a view was moved off and that no view maps to now, with when
    /// the last view left each.
    fn orphans<'a>(
        &'a self,
        container: &'a ContainerName,
    ) -> BoxFuture<'a, Result<Vec<(String, Millis)>, StoreError>>;
}

#[derive(Debug, Clone, PartialEq)]
pub struct DueIntent {
    pub id: i64,
    pub intent: Intent,
    pub attempts: u32,
}

/// Job definitions, runs and compactions. The scheduler's writes are few
/// per second and go through [`SchedulePort::write_schedule`]: one
/// transaction that compares each document's version, checks the leader's
/// fence, and appends the events.
pub trait SchedulePort: Send + Sync + 'static {
    /// Create or replace a definition (its `created_at` is kept); `true`
    /// when it is new.
    fn put_job<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn job<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Job>, StoreError>>;
    /// Delete a definition; `false` when there was none.
    fn delete_job<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Definitions by name after `after`.
    fn jobs<'a>(
        &'a self,
        after: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Job>, StoreError>>;
    /// Definitions whose planned fire is at or before `now`, earliest first.
    fn due_jobs(&self, now: Millis, limit: u32) -> BoxFuture<'_, Result<Vec<Job>, StoreError>>;
    fn run(&self, id: RunId) -> BoxFuture<'_, Result<Option<Versioned<Run>>, StoreError>>;
    /// Runs by id (creation order) after `query.after`, filtered.
    fn runs<'a>(&'a self, query: &'a RunQuery) -> BoxFuture<'a, Result<Vec<Run>, StoreError>>;
    /// Runs kept, counted by state.
    fn run_counts(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, StoreError>>;
    /// Runs the scheduler has work on at `now`: queued or retrying and due,
    /// starting, or running and due for a poll; earliest first.
    fn active_runs(
        &self,
        now: Millis,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Versioned<Run>>, StoreError>>;
    /// Delete up to `limit` of the oldest finished runs created before
    /// `before` (a Glue run lasts days at most); how many.
    fn prune_runs(&self, before: Millis, limit: u32) -> BoxFuture<'_, Result<u64, StoreError>>;
    /// How many runs of `job` hold a Glue slot (starting or running).
    fn occupying(&self, job: &str) -> BoxFuture<'_, Result<u32, StoreError>>;
    fn compaction(
        &self,
        id: uuid::Uuid,
    ) -> BoxFuture<'_, Result<Option<Versioned<Compaction>>, StoreError>>;
    /// The table's pending (unfinished) compaction, if any.
    fn pending_compaction<'a>(
        &'a self,
        table: &'a TableName,
    ) -> BoxFuture<'a, Result<Option<Versioned<Compaction>>, StoreError>>;
    /// A table's compactions, newest first, before `before` (an id).
    fn compactions<'a>(
        &'a self,
        table: &'a TableName,
        before: Option<uuid::Uuid>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Compaction>, StoreError>>;
    /// Every unfinished compaction, oldest first.
    fn active_compactions(
        &self,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Versioned<Compaction>>, StoreError>>;
    /// Write what the scheduler (or a handler) decided, all or nothing.
    fn write_schedule<'a>(
        &'a self,
        write: &'a ScheduleWrite,
    ) -> BoxFuture<'a, Result<Written, StoreError>>;
}

/// A document with the version it was read at (0: not stored yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: i64,
}

/// The leader's proof: its write lease on the scheduler's system table. A
/// write carrying it commits only while that lease is granted, unexpired
/// and holds this token, so a deposed leader's writes are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub lease_id: LeaseId,
    pub token: sluice_core::Token,
}

/// One all-or-nothing write of scheduling state.
#[derive(Debug, Clone, Default)]
pub struct ScheduleWrite {
    pub fence: Option<Fence>,
    /// Jobs whose planned fire moves: (name, the fire read, the next).
    pub fires: Vec<(String, Option<Millis>, Option<Millis>)>,
    pub runs: Vec<Versioned<Run>>,
    pub compactions: Vec<Versioned<Compaction>>,
    pub events: Vec<NewEvent>,
}

/// What became of a [`ScheduleWrite`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Done,
    /// A document changed since it was read (or a second pending
    /// compaction of a table): nothing was written.
    Conflict,
    /// The fence no longer holds: nothing was written.
    Deposed,
}

#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub after: Option<RunId>,
    pub job: Option<String>,
    pub state: Option<RunState>,
    /// Only runs created at or after this.
    pub since: Option<Millis>,
    pub limit: u32,
    /// Newest first (`after` then continues with older runs); else oldest
    /// first.
    pub newest_first: bool,
}

/// One database: every port, and what concerns the whole of it.
pub trait Backend:
    LeasePort
    + StreamPort
    + TokenPort
    + EventPort
    + SnapshotPort
    + ContainerPort
    + HydrationPort
    + ViewStorePort
    + SchedulePort
{
    fn name(&self) -> &'static str;
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// How many transactions may run at once.
    fn max_writers(&self) -> usize;
    /// Items read from the database since start, where that is what it
    /// charges for (DynamoDB); `None` elsewhere.
    fn items_read(&self) -> Option<u64> {
        None
    }
}

/// A lease as read, with its place in the queue when waiting.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseView {
    pub lease: Lease,
    pub position: Option<u32>,
    /// Live by its state but past its expiry by the store's clock
    /// (PostgreSQL's on PostgreSQL, so that replicas agree): not swept yet,
    /// so its state is not the truth until its table is settled.
    pub stale: bool,
}

/// A table in a listing: its settings and how many hold or wait.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSummary {
    pub state: TableState,
    pub holders: u32,
    pub waiters: u32,
}

/// Events of sluice's own tables (`sluice_system.*`: the scheduler's
/// leader lease) are left out unless `table` names one.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub after: i64,
    pub table: Option<TableName>,
    pub stream: Option<StreamName>,
    pub kind: Option<EventKind>,
    pub limit: u32,
    /// Only events of tables or streams with one of these name prefixes
    /// (empty: all).
    pub scopes: Vec<String>,
}

/// The tables that hold expired live leases, and when the next one expires.
pub struct Due {
    pub tables: Vec<TableName>,
    pub next_expiry: Option<Millis>,
    pub now: Millis,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TokenRecord {
    /// The public part of the token, used to find it.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Table name prefixes; empty: every table.
    pub scopes: Vec<String>,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}
