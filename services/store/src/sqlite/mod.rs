//! The embedded backend: one SQLite file (WAL), one writer connection, one
//! process per data directory. This file owns the pools, the clock, the
//! scope filter and the event insert; the aggregates' files beside it
//! (`leases.rs`, `streams.rs`, `tokens.rs`, `events.rs`) call down into it.

mod containers;
mod events;
mod hydrations;
mod leases;
mod schedule;
mod snapshots;
mod streams;
mod tokens;
mod views;

use crate::error::StoreError;
use crate::ports::Backend;
use crate::rows;
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::Millis;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use std::fs::File;
use std::path::Path;
use std::time::Duration;

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

pub struct SqliteBackend {
    /// One connection: SQLite has one writer anyway, and one connection
    /// keeps group commit to one fsync per batch.
    writer: SqlitePool,
    readers: SqlitePool,
    /// The live state of the tables the writer has touched (`live.rs`).
    live: tokio::sync::Mutex<crate::live::LiveTables>,
    /// Held while the backend lives: one process per data directory.
    _lock: Option<File>,
}

impl SqliteBackend {
    /// Lock the data directory, open the database and migrate it.
    pub async fn open(data_dir: &Path) -> Result<SqliteBackend, StoreError> {
        create_data_dir(data_dir)?;
        let lock = lock_data_dir(data_dir)?;
        let options = connect_options(data_dir);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .min_connections(1)
            // A page cache large enough for the hot leaf pages of every
            // index a busy month of history leaves (SQLite's default is
            // 2 MiB: the events index alone then misses on most inserts).
            .connect_with(
                options
                    .clone()
                    .pragma("cache_size", "-32768")
                    // Checkpoint every ~16 MiB of WAL rather than 4 MiB: a
                    // page changed by many batches is copied back once.
                    .pragma("wal_autocheckpoint", "4000"),
            )
            .await?;
        MIGRATOR.run(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteBackend {
            writer,
            readers,
            live: Default::default(),
            _lock: Some(lock),
        })
    }

    /// The database without the data-dir lock or a writer task, for the
    /// token CLI (a server may be running on the same file).
    pub async fn open_unlocked(data_dir: &Path) -> Result<SqliteBackend, StoreError> {
        create_data_dir(data_dir)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect_options(data_dir))
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteBackend {
            writer: pool.clone(),
            readers: pool,
            live: Default::default(),
            _lock: None,
        })
    }
}

fn create_data_dir(data_dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot create data dir {}: {e}",
            data_dir.display()
        ))
    })
}

/// SQLite's clock is this process's: one process serves a data directory.
pub(crate) fn now() -> Millis {
    crate::system_now()
}

/// Append events. One process writes (the data-dir lock), so ids continue
/// from the largest, in the batch's order.
async fn insert_events(
    tx: &mut Transaction<'_, Sqlite>,
    events: &[sluice_core::NewEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO events (id, at, kind, table_name, lease_id, data, actor, stream_name) \
         SELECT (SELECT COALESCE(MAX(id), 0) FROM events) + key + 1, value ->> 'at', value ->> 'kind', \
         value ->> 'table_name', value ->> 'lease_id', value ->> 'data', value ->> 'actor', \
         value ->> 'stream_name' FROM json_each(?1)",
    )
    .bind(rows::events::events_json(events))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Delete up to `limit` of the oldest rows of `table` that are `finished`
/// (an SQL condition) and whose `ended` column is before `before`: the walk
/// goes along the primary key, the UUIDv7 ids below `before`'s, so it stays
/// at the old end.
async fn prune_finished(
    pool: &sqlx::Pool<Sqlite>,
    table: &str,
    finished: &str,
    ended: &str,
    before: sluice_core::Millis,
    limit: u32,
) -> Result<u64, StoreError> {
    let done = sqlx::query(&format!(
        "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE id < ?1 AND {finished} \
         ORDER BY id LIMIT ?3) AND {ended} < ?2"
    ))
    .bind(crate::rows::v7_floor(before))
    .bind(before.0)
    .bind(i64::from(limit))
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// `column` starts with one of the prefixes in parameter `n` (a JSON
/// array), or the array is empty.
fn in_scopes(n: u32, column: &str) -> String {
    format!(
        "(?{n} = '[]' OR EXISTS (SELECT 1 FROM json_each(?{n}) WHERE substr({column}, 1, length(value)) = value))"
    )
}

fn connect_options(data_dir: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(data_dir.join("sluice.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a commit is on disk before the writer answers.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
}

fn lock_data_dir(data_dir: &Path) -> Result<File, StoreError> {
    let path = data_dir.join("sluice.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Unavailable(format!(
            "another sluice process is already using the data dir {} (it holds {}); \
             SQLite serves one process: stop the other one, pick another --data-dir, \
             or use PostgreSQL to run several replicas",
            data_dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Unavailable(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            sqlx::query("SELECT 1").execute(&self.readers).await?;
            Ok(())
        }
        .boxed()
    }

    fn max_writers(&self) -> usize {
        1
    }
}
