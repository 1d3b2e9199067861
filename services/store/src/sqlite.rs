//! The embedded backend: one SQLite file (WAL), one writer connection, one
//! process per data directory.

use crate::batch::{self, Loaded};
use crate::rows::{self, EventRow, LeaseRow, TableRow, LEASE_COLUMNS, LIVE, TABLE_COLUMNS};
use crate::{system_now, Backend, Committed, Due, EventQuery, LeaseView, StoreError, TableSummary};
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::{Command, Event, Lease, LeaseId, Millis, NewEvent, TableName, TableState};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

pub struct SqliteBackend {
    /// One connection: SQLite has one writer anyway, and one connection
    /// keeps group commit to one fsync per batch.
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteBackend {
    /// Lock the data directory, open the database and migrate it.
    pub async fn open(data_dir: &Path) -> Result<(SqliteBackend, File), StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create data dir {}: {e}",
                data_dir.display()
            ))
        })?;
        let lock = lock_data_dir(data_dir)?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join("sluice.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before the writer answers.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok((SqliteBackend { writer, readers }, lock))
    }

    async fn load(
        tx: &mut Transaction<'_, Sqlite>,
        commands: &[Command],
    ) -> Result<Loaded, StoreError> {
        let (mut tables, lease_ids) = batch::targets(commands);
        let mut loaded = Loaded::default();
        for id in &lease_ids {
            let table: Option<String> =
                sqlx::query_scalar("SELECT table_name FROM leases WHERE id = ?")
                    .bind(id.to_string())
                    .fetch_optional(&mut **tx)
                    .await?;
            if let Some(table) = table {
                let table = TableName::parse(&table).map_err(|e| StoreError::Corrupt(e.0))?;
                tables.push(table.clone());
                loaded.lease_tables.insert(*id, table);
            }
        }
        for name in batch::lock_order(tables) {
            let row: Option<TableRow> = sqlx::query_as(&format!(
                "SELECT {TABLE_COLUMNS} FROM sluice_tables WHERE name = ?"
            ))
            .bind(name.as_str())
            .fetch_optional(&mut **tx)
            .await?;
            let Some(row) = row else { continue };
            let mut state = TableState::try_from(row)?;
            let live: Vec<LeaseRow> = sqlx::query_as(&format!(
                "SELECT {LEASE_COLUMNS} FROM leases WHERE table_name = ? AND {LIVE} ORDER BY seq"
            ))
            .bind(name.as_str())
            .fetch_all(&mut **tx)
            .await?;
            state.live = live
                .into_iter()
                .map(Lease::try_from)
                .collect::<Result<_, _>>()?;
            loaded.tables.insert(name, state);
        }
        for id in &lease_ids {
            let row: Option<LeaseRow> =
                sqlx::query_as(&format!("SELECT {LEASE_COLUMNS} FROM leases WHERE id = ?"))
                    .bind(id.to_string())
                    .fetch_optional(&mut **tx)
                    .await?;
            add_finished(&mut loaded, row)?;
        }
        for (table, key) in batch::idempotency_keys(commands) {
            let row: Option<LeaseRow> = sqlx::query_as(&format!(
                "SELECT {LEASE_COLUMNS} FROM leases WHERE table_name = ? AND idempotency_key = ?"
            ))
            .bind(table.as_str())
            .bind(key)
            .fetch_optional(&mut **tx)
            .await?;
            add_finished(&mut loaded, row)?;
        }
        Ok(loaded)
    }

    async fn write(
        tx: &mut Transaction<'_, Sqlite>,
        applied: &batch::Applied,
    ) -> Result<(), StoreError> {
        for t in &applied.created_tables {
            sqlx::query(&format!(
                "INSERT INTO sluice_tables ({TABLE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .bind(t.name.as_str())
            .bind(&t.settings.catalog)
            .bind(&t.settings.compaction_job)
            .bind(i64::from(t.settings.max_compaction_deferral_seconds))
            .bind(t.last_token)
            .bind(t.last_seq)
            .bind(t.created_at.0)
            .bind(t.updated_at.0)
            .execute(&mut **tx)
            .await?;
        }
        for t in &applied.updated_tables {
            sqlx::query(
                "UPDATE sluice_tables SET catalog = ?, compaction_job = ?, \
                 max_compaction_deferral_seconds = ?, last_token = ?, last_seq = ?, updated_at = ? \
                 WHERE name = ?",
            )
            .bind(&t.settings.catalog)
            .bind(&t.settings.compaction_job)
            .bind(i64::from(t.settings.max_compaction_deferral_seconds))
            .bind(t.last_token)
            .bind(t.last_seq)
            .bind(t.updated_at.0)
            .bind(t.name.as_str())
            .execute(&mut **tx)
            .await?;
        }
        let upsert = format!(
            "INSERT INTO leases ({LEASE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) {}",
            rows::UPSERT_LEASE_CONFLICT
        );
        for l in &applied.leases {
            sqlx::query(&upsert)
                .bind(l.id.to_string())
                .bind(l.table.as_str())
                .bind(l.seq)
                .bind(l.mode.as_str())
                .bind(&l.holder)
                .bind(&l.purpose)
                .bind(l.state.as_str())
                .bind(l.token)
                .bind(i64::from(l.ttl_seconds))
                .bind(l.requested_at.0)
                .bind(l.granted_at.map(|m| m.0))
                .bind(l.expires_at.0)
                .bind(l.ended_at.map(|m| m.0))
                .bind(&l.end_reason)
                .bind(&l.idempotency_key)
                .bind(l.pin_snapshot_id)
                .execute(&mut **tx)
                .await?;
        }
        if !applied.events.is_empty() {
            // One process writes (the data-dir lock), so the next id is max + 1.
            let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events")
                .fetch_one(&mut **tx)
                .await?;
            for (i, e) in applied.events.iter().enumerate() {
                insert_event(tx, last + 1 + i as i64, e).await?;
            }
        }
        Ok(())
    }
}

async fn insert_event(
    tx: &mut Transaction<'_, Sqlite>,
    id: i64,
    e: &NewEvent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO events (id, at, kind, table_name, lease_id, data) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(e.at.0)
    .bind(e.kind.as_str())
    .bind(e.table.as_str())
    .bind(e.lease_id.map(|l| l.to_string()))
    .bind(e.data.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Put a lease named by a command into its table's state, if it is finished
/// (live ones were loaded with the table).
fn add_finished(loaded: &mut Loaded, row: Option<LeaseRow>) -> Result<(), StoreError> {
    let Some(row) = row else { return Ok(()) };
    let lease = Lease::try_from(row)?;
    if !lease.is_live() {
        if let Some(state) = loaded.tables.get_mut(&lease.table) {
            rows::add_finished(state, lease);
        }
    }
    Ok(())
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
    fn run_batch<'a>(
        &'a self,
        commands: &'a [Command],
    ) -> BoxFuture<'a, Result<Committed, StoreError>> {
        async move {
            let mut tx = self.writer.begin().await?;
            let loaded = Self::load(&mut tx, commands).await?;
            let applied = batch::apply(loaded, commands, system_now());
            if !applied.is_empty() {
                Self::write(&mut tx, &applied).await?;
            }
            tx.commit().await?;
            Ok(Committed {
                changed: applied.changed_by_table(),
                next_expiry: applied.next_expiry(),
                answers: applied.answers,
            })
        }
        .boxed()
    }

    fn lease(&self, id: LeaseId) -> BoxFuture<'_, Result<Option<LeaseView>, StoreError>> {
        async move {
            let row: Option<LeaseRow> = sqlx::query_as(&format!("SELECT {LEASE_COLUMNS} FROM leases WHERE id = ?"))
                .bind(id.to_string())
                .fetch_optional(&self.readers)
                .await?;
            let Some(row) = row else { return Ok(None) };
            let lease = Lease::try_from(row)?;
            let position = match lease.state {
                sluice_core::LeaseState::Waiting => {
                    let ahead: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM leases WHERE table_name = ? AND state = 'waiting' AND seq < ?",
                    )
                    .bind(lease.table.as_str())
                    .bind(lease.seq)
                    .fetch_one(&self.readers)
                    .await?;
                    Some(ahead as u32 + 1)
                }
                _ => None,
            };
            Ok(Some(LeaseView { lease, position }))
        }
        .boxed()
    }

    fn tables<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<TableSummary>, StoreError>> {
        async move {
            let rows: Vec<TableRow> = sqlx::query_as(&format!(
                "SELECT {TABLE_COLUMNS} FROM sluice_tables WHERE name > ? ORDER BY name LIMIT ?"
            ))
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.readers)
            .await?;
            let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
            let counts: Vec<(String, String, i64)> = sqlx::query_as(&format!(
                "SELECT table_name, state, COUNT(*) FROM leases \
                 WHERE {LIVE} AND expires_at > ? AND table_name IN (SELECT value FROM json_each(?)) \
                 GROUP BY table_name, state"
            ))
            .bind(system_now().0)
            .bind(serde_json::to_string(&names).expect("names serialize"))
            .fetch_all(&self.readers)
            .await?;
            summaries(rows, counts)
        }
        .boxed()
    }

    fn events<'a>(&'a self, q: &'a EventQuery) -> BoxFuture<'a, Result<Vec<Event>, StoreError>> {
        async move {
            let rows: Vec<EventRow> = sqlx::query_as(
                "SELECT id, at, kind, table_name, lease_id, data FROM events \
                 WHERE id > ?1 AND (?2 IS NULL OR table_name = ?2) AND (?3 IS NULL OR kind = ?3) \
                 ORDER BY id LIMIT ?4",
            )
            .bind(q.after)
            .bind(q.table.as_ref().map(|t| t.as_str()))
            .bind(q.kind.map(|k| k.as_str()))
            .bind(i64::from(q.limit))
            .fetch_all(&self.readers)
            .await?;
            rows.into_iter().map(Event::try_from).collect()
        }
        .boxed()
    }

    fn due(&self) -> BoxFuture<'_, Result<Due, StoreError>> {
        async move {
            let now = system_now();
            let tables: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT DISTINCT table_name FROM leases WHERE {LIVE} AND expires_at <= ? LIMIT 1000"
            ))
            .bind(now.0)
            .fetch_all(&self.readers)
            .await?;
            let next: Option<i64> = sqlx::query_scalar(&format!(
                "SELECT MIN(expires_at) FROM leases WHERE {LIVE} AND expires_at > ?"
            ))
            .bind(now.0)
            .fetch_one(&self.readers)
            .await?;
            Ok(Due {
                tables: parse_names(tables)?,
                next_expiry: next.map(Millis),
                now,
            })
        }
        .boxed()
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

pub(crate) fn parse_names(names: Vec<String>) -> Result<Vec<TableName>, StoreError> {
    names
        .into_iter()
        .map(|n| TableName::parse(&n).map_err(|e| StoreError::Corrupt(e.0)))
        .collect()
}

/// Join table rows with their live holder and waiter counts.
pub(crate) fn summaries(
    rows: Vec<TableRow>,
    counts: Vec<(String, String, i64)>,
) -> Result<Vec<TableSummary>, StoreError> {
    let mut by_table: HashMap<String, (u32, u32)> = HashMap::new();
    for (table, state, n) in counts {
        let entry = by_table.entry(table).or_default();
        match state.as_str() {
            "granted" => entry.0 = n as u32,
            _ => entry.1 = n as u32,
        }
    }
    rows.into_iter()
        .map(|row| {
            let (holders, waiters) = by_table.get(&row.name).copied().unwrap_or_default();
            Ok(TableSummary {
                state: TableState::try_from(row)?,
                holders,
                waiters,
            })
        })
        .collect()
}
