//! The embedded backend: one SQLite file (WAL), one writer connection, one
//! process per data directory.

use crate::batch::{self, Loaded};
use crate::rows::{
    self, parse_names, summaries, EventRow, LeaseRow, TableRow, EVENT_COLUMNS, LEASE_COLUMNS, LIVE,
    TABLE_COLUMNS,
};
use crate::{
    system_now, Backend, Committed, Due, EventQuery, LeaseView, Request, StoreError, StreamRequest,
    TableSummary,
};
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::{
    Batch, BatchId, BookmarkVersion, Event, Lease, LeaseId, Millis, RuleError, StreamName,
    StreamReply, StreamState, TableName, TableState,
};
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
    pub(crate) readers: SqlitePool,
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
        let options = connect_options(data_dir);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
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

    /// Load a batch's tables and leases. Each step is one statement whatever
    /// the batch size (lists travel as JSON arrays): every statement is a
    /// round trip to sqlx's SQLite worker thread.
    async fn load(
        tx: &mut Transaction<'_, Sqlite>,
        requests: &[Request],
    ) -> Result<Loaded, StoreError> {
        let (mut tables, lease_ids) = batch::targets(requests);
        let ids: Vec<String> = lease_ids.iter().map(|id| id.to_string()).collect();
        let mut loaded = Loaded::default();
        if !ids.is_empty() {
            let found: Vec<(String, String)> = sqlx::query_as(
                "SELECT id, table_name FROM leases WHERE id IN (SELECT value FROM json_each(?1))",
            )
            .bind(json_list(&ids))
            .fetch_all(&mut **tx)
            .await?;
            for (id, table) in found {
                let id: LeaseId = id
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("lease id {id}")))?;
                let table = TableName::parse(&table).map_err(|e| StoreError::Corrupt(e.0))?;
                tables.push(table.clone());
                loaded.lease_tables.insert(id, table);
            }
        }
        let names: Vec<String> = batch::lock_order(tables)
            .into_iter()
            .map(String::from)
            .collect();
        let names = json_list(&names);
        let rows: Vec<TableRow> = sqlx::query_as(&format!(
            "SELECT {TABLE_COLUMNS} FROM sluice_tables WHERE name IN (SELECT value FROM json_each(?1))"
        ))
        .bind(&names)
        .fetch_all(&mut **tx)
        .await?;
        for row in rows {
            let state = TableState::try_from(row)?;
            loaded.tables.insert(state.name.clone(), state);
        }
        let keys: Vec<String> = batch::idempotency_keys(requests)
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        let leases: Vec<LeaseRow> = sqlx::query_as(&format!(
            "SELECT {LEASE_COLUMNS} FROM leases WHERE table_name IN (SELECT value FROM json_each(?1)) AND {LIVE} \
             UNION SELECT {LEASE_COLUMNS} FROM leases WHERE id IN (SELECT value FROM json_each(?2)) \
             UNION SELECT {LEASE_COLUMNS} FROM leases WHERE table_name IN (SELECT value FROM json_each(?1)) \
                 AND idempotency_key IN (SELECT value FROM json_each(?3)) \
             ORDER BY seq"
        ))
        .bind(&names)
        .bind(json_list(&ids))
        .bind(json_list(&keys))
        .fetch_all(&mut **tx)
        .await?;
        for row in leases {
            let lease = Lease::try_from(row)?;
            loaded.place(lease);
        }
        Ok(loaded)
    }

    async fn write(
        tx: &mut Transaction<'_, Sqlite>,
        applied: &batch::Applied,
    ) -> Result<(), StoreError> {
        if !applied.created_tables.is_empty() {
            sqlx::query(&format!(
                "INSERT INTO sluice_tables ({TABLE_COLUMNS}) SELECT value ->> 'name', value ->> 'catalog', \
                 value ->> 'compaction_job', value ->> 'deferral', value ->> 'last_token', value ->> 'last_seq', \
                 value ->> 'created_at', value ->> 'updated_at' FROM json_each(?1)"
            ))
            .bind(tables_json(&applied.created_tables))
            .execute(&mut **tx)
            .await?;
        }
        if !applied.updated_tables.is_empty() {
            sqlx::query(
                "UPDATE sluice_tables AS t SET catalog = u.value ->> 'catalog', \
                 compaction_job = u.value ->> 'compaction_job', \
                 max_compaction_deferral_seconds = u.value ->> 'deferral', \
                 last_token = u.value ->> 'last_token', last_seq = u.value ->> 'last_seq', \
                 updated_at = u.value ->> 'updated_at' \
                 FROM json_each(?1) AS u WHERE t.name = u.value ->> 'name'",
            )
            .bind(tables_json(&applied.updated_tables))
            .execute(&mut **tx)
            .await?;
        }
        if !applied.leases.is_empty() {
            let leases: Vec<serde_json::Value> = applied
                .leases
                .iter()
                .map(|l| {
                    serde_json::json!({
                        "id": l.id.to_string(), "table_name": l.table.as_str(), "seq": l.seq,
                        "mode": l.mode.as_str(), "holder": l.holder, "purpose": l.purpose,
                        "state": l.state.as_str(), "token": l.token, "ttl_seconds": l.ttl_seconds,
                        "requested_at": l.requested_at.0, "granted_at": l.granted_at.map(|m| m.0),
                        "expires_at": l.expires_at.0, "ended_at": l.ended_at.map(|m| m.0),
                        "end_reason": l.end_reason, "idempotency_key": l.idempotency_key,
                        "pin_snapshot_id": l.pin_snapshot_id,
                    })
                })
                .collect();
            let columns: Vec<String> = LEASE_COLUMNS
                .split(',')
                .map(|c| format!("value ->> '{}'", c.trim()))
                .collect();
            // `WHERE true` tells SQLite's parser that ON CONFLICT belongs to the INSERT.
            sqlx::query(&format!(
                "INSERT INTO leases ({LEASE_COLUMNS}) SELECT {} FROM json_each(?1) WHERE true {}",
                columns.join(", "),
                rows::UPSERT_LEASE_CONFLICT
            ))
            .bind(serde_json::Value::Array(leases).to_string())
            .execute(&mut **tx)
            .await?;
        }
        insert_events(tx, &applied.events).await
    }
}

/// Append events. One process writes (the data-dir lock), so ids continue
/// from the largest, in the batch's order.
pub(crate) async fn insert_events(
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
    .bind(rows::events_json(events))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `column` starts with one of the prefixes in parameter `n` (a JSON
/// array), or the array is empty.
pub(crate) fn in_scopes(n: u32, column: &str) -> String {
    format!(
        "(?{n} = '[]' OR EXISTS (SELECT 1 FROM json_each(?{n}) WHERE substr({column}, 1, length(value)) = value))"
    )
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).expect("strings serialize")
}

fn tables_json(tables: &[TableState]) -> String {
    let rows: Vec<serde_json::Value> = tables
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name.as_str(), "catalog": t.settings.catalog,
                "compaction_job": t.settings.compaction_job,
                "deferral": t.settings.max_compaction_deferral_seconds,
                "last_token": t.last_token, "last_seq": t.last_seq,
                "created_at": t.created_at.0, "updated_at": t.updated_at.0,
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

pub(crate) fn connect_options(data_dir: &Path) -> SqliteConnectOptions {
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
    fn run_batch<'a>(
        &'a self,
        requests: &'a [Request],
    ) -> BoxFuture<'a, Result<Committed, StoreError>> {
        async move {
            let mut tx = self.writer.begin().await?;
            let loaded = Self::load(&mut tx, requests).await?;
            let applied = batch::apply(loaded, requests, system_now());
            if !applied.is_empty() {
                Self::write(&mut tx, &applied).await?;
            }
            tx.commit().await?;
            Ok(applied.into())
        }
        .boxed()
    }

    fn lease(&self, id: LeaseId) -> BoxFuture<'_, Result<Option<LeaseView>, StoreError>> {
        async move { crate::rows::read_lease!(&self.readers, id) }.boxed()
    }

    fn tables<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
        scopes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<TableSummary>, StoreError>> {
        async move {
            let rows: Vec<TableRow> = sqlx::query_as(&format!(
                "SELECT {TABLE_COLUMNS} FROM sluice_tables WHERE name > ?1 AND {} ORDER BY name LIMIT ?2",
                in_scopes(3, "name")
            ))
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .bind(json_list(scopes))
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
            let rows: Vec<EventRow> = sqlx::query_as(&format!(
                "SELECT {EVENT_COLUMNS} FROM events \
                 WHERE id > ?1 AND (?2 IS NULL OR table_name = ?2) AND (?3 IS NULL OR kind = ?3) AND ({} OR {}) \
                 AND (?6 IS NULL OR stream_name = ?6) ORDER BY id LIMIT ?4",
                in_scopes(5, "table_name"),
                in_scopes(5, "stream_name")
            ))
            .bind(q.after)
            .bind(q.table.as_ref().map(|t| t.as_str()))
            .bind(q.kind.map(|k| k.as_str()))
            .bind(i64::from(q.limit))
            .bind(json_list(&q.scopes))
            .bind(q.stream.as_ref().map(|s| s.as_str()))
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

    fn run_stream_batch<'a>(
        &'a self,
        requests: &'a [StreamRequest],
    ) -> BoxFuture<'a, Result<Vec<Result<StreamReply, RuleError>>, StoreError>> {
        crate::streams::sqlite::run_batch(&self.writer, requests).boxed()
    }

    fn stream<'a>(
        &'a self,
        name: &'a StreamName,
    ) -> BoxFuture<'a, Result<Option<StreamState>, StoreError>> {
        async move { crate::streams::rows::read_stream!(&self.readers, name) }.boxed()
    }

    fn streams<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
        scopes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<StreamState>, StoreError>> {
        crate::streams::sqlite::list(&self.readers, after, limit, scopes).boxed()
    }

    fn batch<'a>(
        &'a self,
        stream: &'a StreamName,
        id: BatchId,
    ) -> BoxFuture<'a, Result<Option<Batch>, StoreError>> {
        async move { crate::streams::rows::read_batch!(&self.readers, stream, id) }.boxed()
    }

    fn history<'a>(
        &'a self,
        stream: &'a StreamName,
        after_version: i64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<BookmarkVersion>, StoreError>> {
        async move { crate::streams::rows::read_history!(&self.readers, stream, after_version, limit) }
            .boxed()
    }
}
