//! The lease store: group commit over SQLite or PostgreSQL.
//!
//! Handlers never open transactions. They hand a [`Command`] to the writer
//! ([`Store::execute`]); the writer drains whatever is pending, runs it in one
//! transaction through a [`Backend`], commits, then answers every command and
//! wakes the long-polls whose table changed. All SQL lives in this crate.
#![forbid(unsafe_code)]

mod batch;
mod hub;
mod postgres;
mod rows;
mod sqlite;
mod streams;
mod sweeper;
mod tokens;
mod writer;

pub use hub::{Hub, Wake};
pub use tokens::{TokenRecord, Tokens};

use futures::future::BoxFuture;
use sluice_core::{
    Batch, BatchId, BookmarkVersion, Command, Event, EventKind, Lease, LeaseId, Millis, Reply,
    RuleError, StreamCommand, StreamName, StreamReply, StreamState, TableName, TableState,
};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Unavailable(String),
}

/// Where the state lives.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// The embedded default: one SQLite file in `data_dir`, one process.
    Sqlite { data_dir: PathBuf },
    /// Production: many replicas may share one database.
    Postgres { url: String, max_connections: u32 },
}

/// Tuning of the writer.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Most commands in one transaction.
    pub max_batch: usize,
    /// Concurrent transactions (PostgreSQL; SQLite always uses one).
    pub writers: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            max_batch: 256,
            writers: 1,
        }
    }
}

/// A lease as read, with its place in the queue when waiting.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseView {
    pub lease: Lease,
    pub position: Option<u32>,
}

/// A table in a listing: its settings and how many hold or wait.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSummary {
    pub state: TableState,
    pub holders: u32,
    pub waiters: u32,
}

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

/// What a backend reports after committing a batch.
pub struct Committed {
    pub answers: Vec<Result<Reply, RuleError>>,
    pub changed: std::collections::HashMap<TableName, Vec<Lease>>,
    pub next_expiry: Option<Millis>,
}

/// The tables that hold expired live leases, and when the next one expires.
pub struct Due {
    pub tables: Vec<TableName>,
    pub next_expiry: Option<Millis>,
    pub now: Millis,
}

/// One database. A DynamoDB backend (one versioned item per table,
/// conditional writes) implements the same four steps of `run_batch`: load
/// the touched tables, apply the rules through `batch::apply`, write what
/// changed, and fail the whole batch if anything moved underneath.
pub trait Backend: Send + Sync + 'static {
    /// Load, apply and commit `commands` as one transaction.
    fn run_batch<'a>(
        &'a self,
        requests: &'a [Request],
    ) -> BoxFuture<'a, Result<Committed, StoreError>>;
    fn lease(&self, id: LeaseId) -> BoxFuture<'_, Result<Option<LeaseView>, StoreError>>;
    /// Tables by name after `after`, only those with one of the name
    /// prefixes in `scopes` (empty: all).
    fn tables<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
        scopes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<TableSummary>, StoreError>>;
    fn events<'a>(&'a self, query: &'a EventQuery)
        -> BoxFuture<'a, Result<Vec<Event>, StoreError>>;
    fn due(&self) -> BoxFuture<'_, Result<Due, StoreError>>;
    /// Load, apply and commit stream commands as one transaction.
    fn run_stream_batch<'a>(
        &'a self,
        requests: &'a [StreamRequest],
    ) -> BoxFuture<'a, Result<Vec<Result<StreamReply, RuleError>>, StoreError>>;
    /// A stream with its open batch (in `batches`), without a transaction.
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
    /// Bookmark versions after `after_version`, oldest first.
    fn history<'a>(
        &'a self,
        stream: &'a StreamName,
        after_version: i64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<BookmarkVersion>, StoreError>>;
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// How many transactions may run at once.
    fn max_writers(&self) -> usize;
}

/// A command and who asked for it (recorded with its events).
#[derive(Debug, Clone)]
pub struct Request {
    pub command: Command,
    pub actor: Option<String>,
}

/// A stream command and who asked for it (recorded in the history).
#[derive(Debug, Clone)]
pub struct StreamRequest {
    pub command: StreamCommand,
    pub actor: Option<String>,
}

type LeaseJob = writer::Job<writer::Leases>;
type StreamJob = writer::Job<writer::Streams>;

/// The handle the API holds. Cloning is cheap.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    tokens: Tokens,
    jobs: mpsc::Sender<LeaseJob>,
    stream_jobs: mpsc::Sender<StreamJob>,
    hub: Arc<Hub>,
    backend_name: &'static str,
    _guard: Arc<Guard>,
}

/// Lives as long as the last `Store` handle: stops the background tasks and
/// holds the SQLite data-dir lock.
struct Guard {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _lock: Option<std::fs::File>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Store {
    /// Connect, run the migrations, start the writer, the sweeper and (on
    /// PostgreSQL) the cross-replica listener.
    pub async fn open(config: &StoreConfig, writer: WriterConfig) -> Result<Store, StoreError> {
        let hub = Arc::new(Hub::default());
        let (backend, tokens, lock, listener, name): (Arc<dyn Backend>, _, _, _, _) = match config {
            StoreConfig::Sqlite { data_dir } => {
                let (backend, lock) = sqlite::SqliteBackend::open(data_dir).await?;
                let tokens = Tokens::Sqlite(backend.readers.clone());
                (Arc::new(backend), tokens, Some(lock), None, "sqlite")
            }
            StoreConfig::Postgres {
                url,
                max_connections,
            } => {
                let backend = postgres::PgBackend::open(url, *max_connections).await?;
                let listener = backend.listen(hub.clone()).await?;
                let tokens = Tokens::Postgres(backend.pool.clone());
                (Arc::new(backend), tokens, None, Some(listener), "postgres")
            }
        };
        let (jobs, rx) = mpsc::channel(4096);
        // The sweeper's next planned look; a commit with an earlier expiry moves it.
        let planned = Arc::new(tokio::sync::watch::channel(None).0);
        let writers = writer.writers.clamp(1, backend.max_writers());
        let leases = writer::Leases {
            backend: backend.clone(),
            hub: hub.clone(),
            expiry: planned.clone(),
        };
        let mut tasks = writer::spawn(Arc::new(leases), rx, writers, &writer);
        let (stream_jobs, rx) = mpsc::channel(4096);
        let streams = writer::Streams {
            backend: backend.clone(),
        };
        tasks.extend(writer::spawn(Arc::new(streams), rx, writers, &writer));
        tasks.push(sweeper::spawn(
            backend.clone(),
            jobs.clone(),
            hub.clone(),
            planned,
        ));
        tasks.extend(listener);
        Ok(Store {
            backend,
            tokens,
            jobs,
            stream_jobs,
            hub,
            backend_name: name,
            _guard: Arc::new(Guard { tasks, _lock: lock }),
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
        }
    }

    /// Run one command through group commit. The outer error is the
    /// database's; the inner one is the caller's.
    pub async fn execute(&self, command: Command) -> Result<Result<Reply, RuleError>, StoreError> {
        self.execute_as(command, None).await
    }

    /// Run one command on behalf of `actor`, who is recorded in its events.
    pub async fn execute_as(
        &self,
        command: Command,
        actor: Option<String>,
    ) -> Result<Result<Reply, RuleError>, StoreError> {
        submit(&self.jobs, Request { command, actor }).await
    }

    /// Run one stream command through group commit on behalf of `actor`.
    pub async fn execute_stream(
        &self,
        command: StreamCommand,
        actor: Option<String>,
    ) -> Result<Result<StreamReply, RuleError>, StoreError> {
        submit(&self.stream_jobs, StreamRequest { command, actor }).await
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
    ) -> Result<Vec<BookmarkVersion>, StoreError> {
        self.backend.history(stream, after_version, limit).await
    }

    /// Read a lease without a transaction (long-polls re-read through this).
    pub async fn lease(&self, id: LeaseId) -> Result<Option<LeaseView>, StoreError> {
        self.backend.lease(id).await
    }

    pub async fn tables(
        &self,
        after: Option<&str>,
        limit: u32,
        scopes: &[String],
    ) -> Result<Vec<TableSummary>, StoreError> {
        self.backend.tables(after, limit, scopes).await
    }

    pub async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        self.backend.events(query).await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.backend.ping().await
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The token table alone, for the CLI: no writer, no data-dir lock (a
    /// server may be running on the same SQLite file).
    pub async fn open_tokens(config: &StoreConfig) -> Result<Tokens, StoreError> {
        match config {
            StoreConfig::Sqlite { data_dir } => {
                std::fs::create_dir_all(data_dir).map_err(|e| {
                    StoreError::Unavailable(format!(
                        "cannot create data dir {}: {e}",
                        data_dir.display()
                    ))
                })?;
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(sqlite::connect_options(data_dir))
                    .await?;
                sqlite::MIGRATOR.run(&pool).await?;
                Ok(Tokens::Sqlite(pool))
            }
            StoreConfig::Postgres { url, .. } => {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect(url)
                    .await?;
                postgres::MIGRATOR.run(&pool).await?;
                Ok(Tokens::Postgres(pool))
            }
        }
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend_name
    }
}

/// Hand a request to a writer and wait for its answer, given after the commit.
async fn submit<G: writer::Group>(
    jobs: &mpsc::Sender<writer::Job<G>>,
    request: G::Request,
) -> Result<G::Answer, StoreError> {
    let (reply, answer) = oneshot::channel();
    jobs.send(writer::Job { request, reply })
        .await
        .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
    answer
        .await
        .map_err(|_| StoreError::Unavailable("the writer dropped the command".into()))?
}

/// The wall clock, for the SQLite backend (PostgreSQL uses the database's
/// clock so that replicas agree).
pub fn system_now() -> Millis {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    Millis(since.as_millis() as i64)
}
