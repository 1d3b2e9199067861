//! The production backend: PostgreSQL, shared by any number of replicas.
//! Tables' rows are locked in name order for the length of a batch; the
//! database's clock decides expiry so that replicas agree; commits NOTIFY
//! the touched tables so that other replicas wake their long-polls.

use crate::batch::{self, Loaded};
use crate::rows::{
    self, EventRow, LeaseRow, TableRow, EVENT_COLUMNS, LEASE_COLUMNS, LIVE, TABLE_COLUMNS,
};
use crate::rows::{parse_names, summaries};
use crate::{
    Backend, Committed, Due, EventQuery, Hub, LeaseView, Request, StoreError, StreamRequest,
    TableSummary, Wake,
};
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::{
    Batch, BatchId, BookmarkVersion, Event, Lease, LeaseId, Millis, RuleError, StreamName,
    StreamReply, StreamState, TableName, TableState,
};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use std::sync::Arc;
use std::time::Duration;

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

const CHANNEL: &str = "sluice_tables";
/// NOTIFY payloads must stay under 8000 bytes.
const MAX_PAYLOAD: usize = 7000;
pub(crate) const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::int8";

pub struct PgBackend {
    pub(crate) pool: PgPool,
    /// Tells this replica's own notifications from the others'.
    replica: String,
}

impl PgBackend {
    pub async fn open(url: &str, max_connections: u32) -> Result<PgBackend, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            // A ping before every checkout is a round trip per batch; a
            // dead connection fails the batch, which is retried.
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10))
            // Generic plans of `= ANY($1)` lookups turned out to degrade as
            // history grows (5x slower batches); planning each is cheaper.
            .connect_with(
                url.parse::<sqlx::postgres::PgConnectOptions>()?
                    .options([("plan_cache_mode", "force_custom_plan")]),
            )
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(PgBackend {
            pool,
            replica: uuid::Uuid::now_v7().simple().to_string(),
        })
    }

    /// Wake local long-polls when another replica commits on their table.
    pub async fn listen(&self, hub: Arc<Hub>) -> Result<tokio::task::JoinHandle<()>, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        let me = self.replica.clone();
        Ok(tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        let Some((from, tables)) = n.payload().split_once(':') else {
                            continue;
                        };
                        if from == me {
                            continue;
                        }
                        for table in tables.split(',') {
                            if let Ok(table) = TableName::parse(table) {
                                hub.publish(&table, Wake::Reload);
                            }
                        }
                    }
                    // The connection dropped and was re-established:
                    // notifications may have been missed.
                    Ok(None) => hub.reload_all(),
                    Err(error) => {
                        tracing::warn!(%error, "lost the LISTEN connection; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        hub.reload_all();
                    }
                }
            }
        }))
    }

    /// Load a batch's tables (locked, in name order) and leases: two
    /// statements whatever the batch size.
    async fn load(
        tx: &mut Transaction<'_, Postgres>,
        requests: &[Request],
    ) -> Result<(Loaded, Millis), StoreError> {
        let (tables, lease_ids) = batch::targets(requests);
        let names: Vec<String> = batch::lock_order(tables)
            .into_iter()
            .map(String::from)
            .collect();
        let ids: Vec<String> = lease_ids.iter().map(|id| id.to_string()).collect();
        // The named tables and those of the named leases (a lease never
        // changes table), locked; and the database's clock, which replicas
        // agree on.
        let locked: Vec<LockedRow> = sqlx::query_as(&format!(
            "SELECT locked.*, {NOW_MS} AS now_ms FROM \
             (SELECT {TABLE_COLUMNS} FROM sluice_tables \
              WHERE name = ANY($1) OR name IN (SELECT table_name FROM leases WHERE id = ANY($2)) \
              ORDER BY name FOR UPDATE) AS locked"
        ))
        .bind(&names)
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?;
        let mut loaded = Loaded::default();
        let mut now = None;
        for row in locked {
            now = now.max(Some(row.now_ms));
            let state = TableState::try_from(row.table)?;
            loaded.tables.insert(state.name.clone(), state);
        }
        let now = database_now(tx, now).await?;
        let locked_names: Vec<&str> = loaded.tables.keys().map(|t| t.as_str()).collect();
        let named: std::collections::HashSet<LeaseId> = lease_ids.into_iter().collect();
        let (key_tables, keys): (Vec<String>, Vec<String>) = batch::idempotency_keys(requests)
            .into_iter()
            .map(|(t, k)| (String::from(t), k))
            .unzip();
        let leases: Vec<LeaseRow> = sqlx::query_as(&format!(
            // UNION ALL: a lease may come twice (live and named); the
            // duplicates are dropped below, cheaper than hashing rows here.
            "SELECT {LEASE_COLUMNS} FROM leases WHERE table_name = ANY($1) AND {LIVE} \
             UNION ALL SELECT {LEASE_COLUMNS} FROM leases WHERE id = ANY($2) \
             UNION ALL SELECT {LEASE_COLUMNS} FROM leases \
                 WHERE (table_name, idempotency_key) IN (SELECT * FROM UNNEST($3::text[], $4::text[])) \
             ORDER BY seq"
        ))
        .bind(&locked_names)
        .bind(&ids)
        .bind(&key_tables)
        .bind(&keys)
        .fetch_all(&mut **tx)
        .await?;
        let mut seen = std::collections::HashSet::new();
        for row in leases {
            let lease = Lease::try_from(row)?;
            if !seen.insert(lease.id) {
                continue;
            }
            if named.contains(&lease.id) {
                loaded.lease_tables.insert(lease.id, lease.table.clone());
            }
            loaded.place(lease);
        }
        Ok((loaded, Millis(now)))
    }

    /// Write a batch's changes in one statement (a round trip saved is worth
    /// more than anything else on the group-commit path): new tables,
    /// changed tables, new or changed leases, the events with ids taken from
    /// the counter row, and the NOTIFYs.
    async fn write(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        applied: &batch::Applied,
    ) -> Result<(), StoreError> {
        let created = TableColumns::of(&applied.created_tables);
        let updated = TableColumns::of(&applied.updated_tables);
        let l = &applied.leases;
        let e = &applied.events;
        let mut changed: Vec<&str> = l.iter().map(|l| l.table.as_str()).collect();
        changed.sort_unstable();
        changed.dedup();
        sqlx::query(&WRITE_BATCH)
            .bind(&created.name)
            .bind(&created.catalog)
            .bind(&created.compaction_job)
            .bind(&created.deferral)
            .bind(&created.last_token)
            .bind(&created.last_seq)
            .bind(&created.created_at)
            .bind(&created.updated_at)
            .bind(&updated.name)
            .bind(&updated.catalog)
            .bind(&updated.compaction_job)
            .bind(&updated.deferral)
            .bind(&updated.last_token)
            .bind(&updated.last_seq)
            .bind(&updated.updated_at)
            .bind(l.iter().map(|l| l.id.to_string()).collect::<Vec<_>>())
            .bind(l.iter().map(|l| l.table.to_string()).collect::<Vec<_>>())
            .bind(l.iter().map(|l| l.seq).collect::<Vec<_>>())
            .bind(l.iter().map(|l| l.mode.as_str()).collect::<Vec<_>>())
            .bind(l.iter().map(|l| l.holder.as_str()).collect::<Vec<_>>())
            .bind(l.iter().map(|l| l.purpose.as_deref()).collect::<Vec<_>>())
            .bind(l.iter().map(|l| l.state.as_str()).collect::<Vec<_>>())
            .bind(l.iter().map(|l| l.token).collect::<Vec<_>>())
            .bind(
                l.iter()
                    .map(|l| i64::from(l.ttl_seconds))
                    .collect::<Vec<_>>(),
            )
            .bind(l.iter().map(|l| l.requested_at.0).collect::<Vec<_>>())
            .bind(
                l.iter()
                    .map(|l| l.granted_at.map(|m| m.0))
                    .collect::<Vec<_>>(),
            )
            .bind(l.iter().map(|l| l.expires_at.0).collect::<Vec<_>>())
            .bind(
                l.iter()
                    .map(|l| l.ended_at.map(|m| m.0))
                    .collect::<Vec<_>>(),
            )
            .bind(
                l.iter()
                    .map(|l| l.end_reason.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                l.iter()
                    .map(|l| l.idempotency_key.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(l.iter().map(|l| l.pin_snapshot_id).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.at.0).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.table.to_string()).collect::<Vec<_>>())
            .bind(
                e.iter()
                    .map(|e| e.lease_id.map(|l| l.to_string()))
                    .collect::<Vec<_>>(),
            )
            .bind(e.iter().map(|e| e.data.to_string()).collect::<Vec<_>>())
            .bind(CHANNEL)
            .bind(notify_payloads(&self.replica, &changed))
            .bind(e.iter().map(|e| e.actor.as_deref()).collect::<Vec<_>>())
            .fetch_all(&mut **tx)
            .await?;
        Ok(())
    }
}

/// The batch write. Sub-statements touch different tables, so sharing one
/// snapshot is harmless; the event counter row is updated last of all the
/// batch's statements and held until the commit, which makes event ids
/// follow commit order across replicas. A created table conflicting with
/// another replica's fails the batch, which is then retried.
static WRITE_BATCH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH new_tables AS ( \
           INSERT INTO sluice_tables ({TABLE_COLUMNS}) SELECT * FROM UNNEST( \
             $1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[], $7::int8[], $8::int8[])), \
         changed_tables AS ( \
           UPDATE sluice_tables AS t SET catalog = u.catalog, compaction_job = u.compaction_job, \
             max_compaction_deferral_seconds = u.deferral, last_token = u.last_token, \
             last_seq = u.last_seq, updated_at = u.updated_at \
           FROM UNNEST($9::text[], $10::text[], $11::text[], $12::int8[], $13::int8[], $14::int8[], $15::int8[]) \
             AS u(name, catalog, compaction_job, deferral, last_token, last_seq, updated_at) \
           WHERE t.name = u.name), \
         written_leases AS ( \
           INSERT INTO leases ({LEASE_COLUMNS}) SELECT * FROM UNNEST( \
             $16::text[], $17::text[], $18::int8[], $19::text[], $20::text[], $21::text[], $22::text[], \
             $23::int8[], $24::int8[], $25::int8[], $26::int8[], $27::int8[], $28::int8[], $29::text[], \
             $30::text[], $31::int8[]) {upsert}), \
         ids AS ( \
           UPDATE event_seq SET last_id = last_id + cardinality($32::int8[]) \
           WHERE cardinality($32::int8[]) > 0 RETURNING last_id), \
         written_events AS ( \
           INSERT INTO events (id, at, kind, table_name, lease_id, data, actor) \
           SELECT ids.last_id - cardinality($32::int8[]) + e.ord, e.at, e.kind, e.table_name, e.lease_id, \
             e.data, e.actor \
           FROM ids, UNNEST($32::int8[], $33::text[], $34::text[], $35::text[], $36::text[], $39::text[]) \
             WITH ORDINALITY AS e(at, kind, table_name, lease_id, data, actor, ord)) \
         SELECT pg_notify($37, payload) FROM UNNEST($38::text[]) AS payload",
        upsert = rows::UPSERT_LEASE_CONFLICT
    )
});

/// The database's clock as read with the locked rows, or read now when the
/// batch locked none (it only creates, or names what does not exist).
pub(crate) async fn database_now(
    tx: &mut Transaction<'_, Postgres>,
    read_with_locks: Option<i64>,
) -> Result<i64, StoreError> {
    match read_with_locks {
        Some(now) => Ok(now),
        None => Ok(sqlx::query_scalar(&format!("SELECT {NOW_MS}"))
            .fetch_one(&mut **tx)
            .await?),
    }
}

#[derive(sqlx::FromRow)]
struct LockedRow {
    #[sqlx(flatten)]
    table: TableRow,
    now_ms: i64,
}

/// `column` starts with one of the prefixes in parameter `n`, or there are none.
pub(crate) fn in_scopes(n: u32, column: &str) -> String {
    format!("(cardinality(${n}::text[]) = 0 OR EXISTS (SELECT 1 FROM UNNEST(${n}::text[]) AS p WHERE starts_with({column}, p)))")
}

/// `replica:table,table,...`, split to stay under the payload limit.
fn notify_payloads(replica: &str, tables: &[&str]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current = String::new();
    for table in tables {
        if !current.is_empty() && current.len() + table.len() + 1 > MAX_PAYLOAD {
            payloads.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            current = format!("{replica}:{table}");
        } else {
            current.push(',');
            current.push_str(table);
        }
    }
    if !current.is_empty() {
        payloads.push(current);
    }
    payloads
}

/// Table rows as column arrays, for UNNEST.
struct TableColumns {
    name: Vec<String>,
    catalog: Vec<Option<String>>,
    compaction_job: Vec<Option<String>>,
    deferral: Vec<i64>,
    last_token: Vec<i64>,
    last_seq: Vec<i64>,
    created_at: Vec<i64>,
    updated_at: Vec<i64>,
}

impl TableColumns {
    fn of(tables: &[TableState]) -> TableColumns {
        TableColumns {
            name: tables.iter().map(|t| t.name.to_string()).collect(),
            catalog: tables.iter().map(|t| t.settings.catalog.clone()).collect(),
            compaction_job: tables
                .iter()
                .map(|t| t.settings.compaction_job.clone())
                .collect(),
            deferral: tables
                .iter()
                .map(|t| i64::from(t.settings.max_compaction_deferral_seconds))
                .collect(),
            last_token: tables.iter().map(|t| t.last_token).collect(),
            last_seq: tables.iter().map(|t| t.last_seq).collect(),
            created_at: tables.iter().map(|t| t.created_at.0).collect(),
            updated_at: tables.iter().map(|t| t.updated_at.0).collect(),
        }
    }
}

impl Backend for PgBackend {
    fn run_batch<'a>(
        &'a self,
        requests: &'a [Request],
    ) -> BoxFuture<'a, Result<Committed, StoreError>> {
        async move {
            let started = std::time::Instant::now();
            let mut tx = self.pool.begin().await?;
            let (loaded, now) = Self::load(&mut tx, requests).await?;
            let applied = batch::apply(loaded, requests, now);
            if !applied.is_empty() {
                self.write(&mut tx, &applied).await?;
            }
            tx.commit().await?;
            tracing::debug!(commands = requests.len(), elapsed = ?started.elapsed(), "batch committed");
            Ok(applied.into())
        }
        .boxed()
    }

    fn lease(&self, id: LeaseId) -> BoxFuture<'_, Result<Option<LeaseView>, StoreError>> {
        async move { crate::rows::read_lease!(&self.pool, id) }.boxed()
    }

    fn tables<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
        scopes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<TableSummary>, StoreError>> {
        async move {
            let rows: Vec<TableRow> = sqlx::query_as(&format!(
                "SELECT {TABLE_COLUMNS} FROM sluice_tables WHERE name > $1 AND {} ORDER BY name LIMIT $2",
                in_scopes(3, "name")
            ))
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .bind(scopes)
            .fetch_all(&self.pool)
            .await?;
            let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
            let counts: Vec<(String, String, i64)> = sqlx::query_as(&format!(
                "SELECT table_name, state, COUNT(*) FROM leases \
                 WHERE {LIVE} AND expires_at > {NOW_MS} AND table_name = ANY($1) \
                 GROUP BY table_name, state"
            ))
            .bind(&names)
            .fetch_all(&self.pool)
            .await?;
            summaries(rows, counts)
        }
        .boxed()
    }

    fn events<'a>(&'a self, q: &'a EventQuery) -> BoxFuture<'a, Result<Vec<Event>, StoreError>> {
        async move {
            let rows: Vec<EventRow> = sqlx::query_as(&format!(
                "SELECT {EVENT_COLUMNS} FROM events \
                 WHERE id > $1 AND ($2::text IS NULL OR table_name = $2) AND ($3::text IS NULL OR kind = $3) \
                 AND ({} OR {}) AND ($6::text IS NULL OR stream_name = $6) ORDER BY id LIMIT $4",
                in_scopes(5, "table_name"),
                in_scopes(5, "stream_name")
            ))
            .bind(q.after)
            .bind(q.table.as_ref().map(|t| t.as_str()))
            .bind(q.kind.map(|k| k.as_str()))
            .bind(i64::from(q.limit))
            .bind(&q.scopes)
            .bind(q.stream.as_ref().map(|s| s.as_str()))
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter().map(Event::try_from).collect()
        }
        .boxed()
    }

    fn due(&self) -> BoxFuture<'_, Result<Due, StoreError>> {
        async move {
            let (now, next): (i64, Option<i64>) = sqlx::query_as(&format!(
                "SELECT {NOW_MS}, (SELECT MIN(expires_at) FROM leases WHERE {LIVE})"
            ))
            .fetch_one(&self.pool)
            .await?;
            let tables: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT DISTINCT table_name FROM leases WHERE {LIVE} AND expires_at <= $1 LIMIT 1000"
            ))
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
            Ok(Due {
                tables: parse_names(tables)?,
                next_expiry: next.filter(|n| *n > now).map(Millis),
                now: Millis(now),
            })
        }
        .boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        }
        .boxed()
    }

    fn max_writers(&self) -> usize {
        64
    }

    fn run_stream_batch<'a>(
        &'a self,
        requests: &'a [StreamRequest],
    ) -> BoxFuture<'a, Result<Vec<Result<StreamReply, RuleError>>, StoreError>> {
        crate::streams::postgres::run_batch(&self.pool, requests).boxed()
    }

    fn stream<'a>(
        &'a self,
        name: &'a StreamName,
    ) -> BoxFuture<'a, Result<Option<StreamState>, StoreError>> {
        async move { crate::streams::rows::read_stream!(&self.pool, name) }.boxed()
    }

    fn streams<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
        scopes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<StreamState>, StoreError>> {
        crate::streams::postgres::list(&self.pool, after, limit, scopes).boxed()
    }

    fn batch<'a>(
        &'a self,
        stream: &'a StreamName,
        id: BatchId,
    ) -> BoxFuture<'a, Result<Option<Batch>, StoreError>> {
        async move { crate::streams::rows::read_batch!(&self.pool, stream, id) }.boxed()
    }

    fn history<'a>(
        &'a self,
        stream: &'a StreamName,
        after_version: i64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<BookmarkVersion>, StoreError>> {
        async move { crate::streams::rows::read_history!(&self.pool, stream, after_version, limit) }
            .boxed()
    }
}
