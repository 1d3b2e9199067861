//! The store: every aggregate's state over SQLite, PostgreSQL or DynamoDB,
//! with group commit.
//!
//! Handlers never open transactions. They hand a command to an aggregate's
//! writer ([`Store::execute`], [`Store::execute_stream`]); the writer drains
//! whatever is pending, runs it in one transaction through the backend's
//! port for that aggregate, commits, then answers every command and wakes
//! the long-polls whose table changed. All SQL lives in this crate, laid
//! out by backend (`sqlite/`, `postgres/`) with a file per aggregate
//! inside; the database-neutral half of each aggregate (`leases.rs`,
//! `streams.rs`) and the writer, hub and sweeper sit beside them.
#![forbid(unsafe_code)]

mod dynamo;
mod error;
mod hub;
mod hydrations;
mod leadership;
pub mod leases;
mod live;
mod outbox;
mod ports;
mod postgres;
mod pruner;
mod rows;
mod schedule;
mod snapshot_log;
mod sqlite;
pub mod stats;
pub mod streams;
mod sweeper;
mod writer;

pub use dynamo::{DynamoConfig, DEFAULT_SKEW_MARGIN, WAKE_INTERVAL};
pub use error::StoreError;
pub use hub::{Hub, Wake};
pub use leadership::{leadership, Leadership, Publish};
pub use leases::{HydrationCommand, HydrationReply};
pub use outbox::{spawn_executor, OutboxPorts, RemapError, RemapOrder, MAPPED};
pub use ports::{
    Backend, CatalogState, ContainerPort, Due, EventPort, EventQuery, Fence, HydrationPort,
    HydrationQuery, LeaseCount, LeasePort, LeaseView, RunQuery, SchedulePort, ScheduleWrite,
    SnapshotChanges, SnapshotPort, StreamPort, TableSummary, TokenPort, TokenRecord,
    VersionSummary, Versioned, Written,
};
pub use pruner::Retention;
pub use snapshot_log::{spawn_watcher, Nudges, RefreshError, Refreshed, WatchConfig};
pub use writer::Answer;

use sluice_core::{
    Batch, BatchCommand, BatchId, BatchReply, Bookmark, BookmarkCommand, BookmarkVersion, Event,
    LeaseCommand, LeaseId, LeaseReply, Millis, PutStream, StreamName, StreamReply, StreamState,
    TableCommand, TableName, TableReply,
};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Where the state lives.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// The embedded default: one SQLite file in `data_dir`, one process.
    Sqlite { data_dir: PathBuf },
    /// Production: many replicas may share one database.
    Postgres { url: String, max_connections: u32 },
    /// AWS-native: one DynamoDB table, no database to run; many replicas
    /// may share it.
    Dynamo(DynamoConfig),
}

/// Tuning of the writer.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Most commands in one transaction.
    pub max_batch: usize,
    /// Concurrent transactions (PostgreSQL; SQLite always uses one).
    pub writers: usize,
    /// How long finished history is kept before the pruner deletes it.
    pub retention: Retention,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            max_batch: 256,
            writers: 1,
            retention: Retention::default(),
        }
    }
}

/// The token store alone, shared.
pub type Tokens = Arc<dyn TokenPort>;

/// The handle the API holds. Cloning is cheap.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    jobs: mpsc::Sender<leases::Job>,
    stream_jobs: mpsc::Sender<streams::Job>,
    hub: Arc<Hub>,
    stats: Arc<stats::StoreStats>,
    _guard: Arc<Guard>,
}

/// Lives as long as the last `Store` handle: stops the background tasks.
struct Guard {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Connect to the configured database and migrate it: the one place that
/// names the backends. Also starts what a backend runs beside its ports
/// (PostgreSQL's cross-replica listener).
async fn connect(
    config: &StoreConfig,
    hub: &Arc<Hub>,
) -> Result<(Arc<dyn Backend>, Option<tokio::task::JoinHandle<()>>), StoreError> {
    match config {
        StoreConfig::Sqlite { data_dir } => {
            Ok((Arc::new(sqlite::SqliteBackend::open(data_dir).await?), None))
        }
        StoreConfig::Postgres {
            url,
            max_connections,
        } => {
            let backend = postgres::PgBackend::open(url, *max_connections).await?;
            let listener = backend.listen(hub.clone()).await?;
            Ok((Arc::new(backend), Some(listener)))
        }
        StoreConfig::Dynamo(config) => {
            let backend = Arc::new(dynamo::DynamoBackend::open(config).await?);
            let watcher = backend.clone().watch(hub.clone()).await?;
            Ok((backend, Some(watcher)))
        }
    }
}

impl Store {
    /// Connect, run the migrations, start the writers, the sweeper and (on
    /// PostgreSQL) the cross-replica listener.
    pub async fn open(config: &StoreConfig, writer: WriterConfig) -> Result<Store, StoreError> {
        let hub = Arc::new(Hub::default());
        let (backend, listener) = connect(config, &hub).await?;
        let (jobs, rx) = mpsc::channel(4096);
        // The sweeper's next planned look; a commit with an earlier expiry moves it.
        let planned = Arc::new(tokio::sync::watch::channel(None).0);
        let writers = writer.writers.clamp(1, backend.max_writers());
        let stats = Arc::new(stats::StoreStats::default());
        let leases = leases::Leases {
            backend: backend.clone(),
            hub: hub.clone(),
            expiry: planned.clone(),
            stats: stats.clone(),
        };
        let mut tasks = writer::spawn(Arc::new(leases), rx, writers, &writer, &stats);
        let (stream_jobs, rx) = mpsc::channel(4096);
        let streams = streams::Streams {
            backend: backend.clone(),
        };
        tasks.extend(writer::spawn(
            Arc::new(streams),
            rx,
            writers,
            &writer,
            &stats,
        ));
        tasks.push(sweeper::spawn(
            backend.clone(),
            jobs.clone(),
            hub.clone(),
            planned,
        ));
        tasks.push(pruner::spawn(backend.clone(), writer.retention));
        tasks.extend(listener);
        Ok(Store {
            backend,
            jobs,
            stream_jobs,
            hub,
            stats,
            _guard: Arc::new(Guard { tasks }),
        })
    }

    /// Run the migrations only.
    pub async fn migrate(config: &StoreConfig) -> Result<(), StoreError> {
        match config {
            StoreConfig::Sqlite { data_dir } => {
                sqlite::SqliteBackend::open(data_dir).await.map(|_| ())
            }
            StoreConfig::Postgres { url, .. } => {
                postgres::PgBackend::open(url, 2).await.map(|_| ())
            }
            StoreConfig::Dynamo(config) => dynamo::DynamoBackend::migrate(config).await,
        }
    }

    /// The token table alone, for the CLI: no writer, no data-dir lock (a
    /// server may be running on the same SQLite file).
    pub async fn open_tokens(config: &StoreConfig) -> Result<Tokens, StoreError> {
        match config {
            StoreConfig::Sqlite { data_dir } => Ok(Arc::new(
                sqlite::SqliteBackend::open_unlocked(data_dir).await?,
            )),
            StoreConfig::Postgres { url, .. } => {
                Ok(Arc::new(postgres::PgBackend::open(url, 1).await?))
            }
            StoreConfig::Dynamo(config) => Ok(Arc::new(dynamo::DynamoBackend::open(config).await?)),
        }
    }

    /// Create a table, change its settings, or settle it, on behalf of
    /// `actor` (recorded in its events), through group commit. The outer
    /// error is the database's; the inner one is the caller's.
    pub async fn table(&self, command: TableCommand, actor: Option<String>) -> Answer<TableReply> {
        let (slot, answer) = writer::Slot::new();
        submit(
            &self.jobs,
            leases::Job::Table {
                command,
                actor,
                slot,
            },
            answer,
        )
        .await
    }

    /// Run a lease command on behalf of `actor` through group commit.
    pub async fn lease_command(
        &self,
        command: LeaseCommand,
        actor: Option<String>,
    ) -> Answer<LeaseReply> {
        let (slot, answer) = writer::Slot::new();
        submit(
            &self.jobs,
            leases::Job::Lease {
                command,
                actor,
                slot,
            },
            answer,
        )
        .await
    }

    /// Register a stream or change its settings, through group commit.
    pub async fn put_stream(
        &self,
        command: PutStream,
        actor: Option<String>,
    ) -> Answer<StreamReply> {
        let (slot, answer) = writer::Slot::new();
        submit(
            &self.stream_jobs,
            streams::Job::Put {
                command,
                actor,
                slot,
            },
            answer,
        )
        .await
    }

    /// Open, heartbeat, commit or fail a batch, through group commit.
    pub async fn batch_command(
        &self,
        command: BatchCommand,
        actor: Option<String>,
    ) -> Answer<BatchReply> {
        let (slot, answer) = writer::Slot::new();
        submit(
            &self.stream_jobs,
            streams::Job::Batch {
                command,
                actor,
                slot,
            },
            answer,
        )
        .await
    }

    /// Rewind or reset a bookmark, through group commit.
    pub async fn bookmark_command(
        &self,
        command: BookmarkCommand,
        actor: Option<String>,
    ) -> Answer<Bookmark> {
        let (slot, answer) = writer::Slot::new();
        submit(
            &self.stream_jobs,
            streams::Job::Bookmark {
                command,
                actor,
                slot,
            },
            answer,
        )
        .await
    }

    pub async fn stream(&self, name: &StreamName) -> Result<Option<StreamState>, StoreError> {
        self.backend.stream(name).await
    }

    pub async fn streams(
        &self,
        after: Option<&str>,
        limit: u32,
        scopes: &[String],
    ) -> Result<Vec<StreamState>, StoreError> {
        self.backend.streams(after, limit, scopes).await
    }

    pub async fn batch(
        &self,
        stream: &StreamName,
        id: BatchId,
    ) -> Result<Option<Batch>, StoreError> {
        self.backend.batch(stream, id).await
    }

    pub async fn history(
        &self,
        stream: &StreamName,
        after_version: i64,
        limit: u32,
    ) -> Result<Vec<VersionSummary>, StoreError> {
        self.backend.history(stream, after_version, limit).await
    }

    pub async fn version(
        &self,
        stream: &StreamName,
        version: i64,
    ) -> Result<Option<BookmarkVersion>, StoreError> {
        self.backend.version(stream, version).await
    }

    /// Read a lease without a transaction (long-polls re-read through this).
    pub async fn lease(&self, id: LeaseId) -> Result<Option<LeaseView>, StoreError> {
        self.backend.lease(id).await
    }

    /// The registered table whose name differs from `name` only in case.
    pub async fn table_named_alike(
        &self,
        name: &sluice_core::TableName,
    ) -> Result<Option<sluice_core::TableName>, StoreError> {
        self.backend.table_named_alike(name).await
    }

    pub async fn tables(
        &self,
        after: Option<&str>,
        limit: u32,
        scopes: &[String],
    ) -> Result<Vec<TableSummary>, StoreError> {
        self.backend.tables(after, limit, scopes).await
    }

    /// Register or replace a container; `true` when it is new.
    pub async fn put_container(
        &self,
        container: &sluice_core::containers::Container,
    ) -> Result<bool, StoreError> {
        self.backend.put_container(container).await
    }

    pub async fn container(
        &self,
        name: &sluice_core::containers::ContainerName,
    ) -> Result<Option<sluice_core::containers::Container>, StoreError> {
        self.backend.container(name).await
    }

    pub async fn containers(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<sluice_core::containers::Container>, StoreError> {
        self.backend.containers(after, limit).await
    }

    /// The catalog a registered table names (`Some(None)`: the default);
    /// `None` when it is not registered.
    pub async fn table_catalog(
        &self,
        table: &TableName,
    ) -> Result<Option<Option<String>>, StoreError> {
        Ok(self.backend.table_settings(table).await?.map(|s| s.catalog))
    }

    /// What the last refresh of `table` read, or why it failed.
    pub async fn catalog_state(
        &self,
        table: &TableName,
    ) -> Result<Option<CatalogState>, StoreError> {
        self.backend.catalog_state(table).await
    }

    /// A page of `table`'s snapshot log after `(sequence_number, id)`.
    pub async fn snapshots(
        &self,
        table: &TableName,
        after: (i64, i64),
        limit: u32,
    ) -> Result<Vec<sluice_core::snapshots::Snapshot>, StoreError> {
        self.backend.snapshots(table, after, limit).await
    }

    /// Every snapshot the log holds for `table` (lag walks them).
    pub async fn snapshot_log(
        &self,
        table: &TableName,
    ) -> Result<Vec<sluice_core::snapshots::Snapshot>, StoreError> {
        self.backend.snapshot_log(table).await
    }

    /// Delete the history older than `before` now (the background pruner
    /// does this every minute with the configured retention); rows deleted.
    pub async fn prune(&self, before: Millis, keep_events: i64) -> Result<u64, StoreError> {
        pruner::prune(self.backend.as_ref(), before, keep_events).await
    }

    pub async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        self.backend.events(query).await
    }

    /// Live leases by mode and state: `(mode, state, count)`.
    pub async fn lease_counts(&self) -> Result<Vec<LeaseCount>, StoreError> {
        self.backend.lease_counts().await
    }

    /// Runs by state: `(state, count)`.
    pub async fn run_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.backend.run_counts().await
    }

    /// What this process's writers counted as they committed.
    pub fn stats(&self) -> &stats::StoreStats {
        &self.stats
    }

    pub async fn newest_event_id(&self) -> Result<i64, StoreError> {
        self.backend.newest_event_id().await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.backend.ping().await
    }

    /// The token store of the same database.
    pub fn tokens(&self) -> Tokens {
        self.backend.clone()
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Items read since start, on a backend that charges by them.
    pub fn items_read(&self) -> Option<u64> {
        self.backend.items_read()
    }
}

/// Hand a job to a writer and wait for its answer, given after the commit.
async fn submit<J, R>(
    jobs: &mpsc::Sender<J>,
    job: J,
    answer: tokio::sync::oneshot::Receiver<Answer<R>>,
) -> Answer<R> {
    jobs.send(job)
        .await
        .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
    answer
        .await
        .map_err(|_| StoreError::Unavailable("the writer dropped the command".into()))?
}

/// This process's wall clock. SQLite's backend keeps time by it; the API
/// uses it only where no store is involved (token expiry).
pub fn system_now() -> Millis {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    Millis(since.as_millis() as i64)
}
