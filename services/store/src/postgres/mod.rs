//! The production backend: PostgreSQL, shared by any number of replicas.
//! Rows are locked in name order for the length of a batch; the database's
//! clock decides expiry so that replicas agree; commits NOTIFY the touched
//! tables so that other replicas wake their long-polls (`notify.rs`). This
//! file owns the pool, the clock and the scope filter; the aggregates'
//! files beside it call down into it.

mod containers;
mod events;
mod hydrations;
mod leases;
mod notify;
mod schedule;
mod snapshots;
mod streams;
mod tokens;
mod views;

use crate::error::StoreError;
use crate::ports::Backend;
use futures::future::BoxFuture;
use futures::FutureExt;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use std::time::Duration;

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// Longest wait for a pooled connection (or a new one) before giving up:
/// also how long a call waits while the database is down before it answers
/// 503 (a command retried alone after its batch failed may wait twice).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The database's clock in milliseconds, as SQL.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::int8";

pub struct PgBackend {
    pool: PgPool,
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
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(connect_options(url)?)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(PgBackend {
            pool,
            replica: uuid::Uuid::now_v7().simple().to_string(),
        })
    }
}

/// Custom plans unless the URL says otherwise (`?options=-c
/// plan_cache_mode=...`): generic plans of the batch statements halve a
/// lone client's latency but cost a third of the throughput at 64 clients
/// over 1,000 tables, and once made batches 5x slower as history grew
/// (BENCHMARKS.md, `scripts/plan-cache.sh`).
fn connect_options(url: &str) -> Result<sqlx::postgres::PgConnectOptions, StoreError> {
    let options = url.parse::<sqlx::postgres::PgConnectOptions>()?;
    Ok(if url.contains("plan_cache_mode") {
        options
    } else {
        options.options([("plan_cache_mode", "force_custom_plan")])
    })
}

/// The database's clock as read with the locked rows, or read now when the
/// batch locked none (it only creates, or names what does not exist).
async fn database_now(
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

/// Append events outside a group-commit batch. Run it last before the
/// commit: the counter row stays locked until then, which keeps event ids
/// in commit order across replicas.
async fn insert_events(
    tx: &mut Transaction<'_, Postgres>,
    events: &[sluice_core::NewEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "WITH ids AS (UPDATE event_seq SET last_id = last_id + jsonb_array_length($1::jsonb) \
           RETURNING last_id) \
         INSERT INTO events (id, at, kind, table_name, lease_id, data, actor, stream_name) \
         SELECT ids.last_id - jsonb_array_length($1::jsonb) + e.ord, (e.value ->> 'at')::int8, \
           e.value ->> 'kind', e.value ->> 'table_name', e.value ->> 'lease_id', e.value ->> 'data', \
           e.value ->> 'actor', e.value ->> 'stream_name' \
         FROM ids, jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(value, ord)",
    )
    .bind(crate::rows::events::events_json(events))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Delete up to `limit` of the oldest rows of `table` that are `finished`
/// (an SQL condition) and whose `ended` column is before `before`: the walk
/// goes along the primary key, the UUIDv7 ids below `before`'s, so it stays
/// at the old end.
async fn prune_finished(
    pool: &sqlx::Pool<Postgres>,
    table: &str,
    finished: &str,
    ended: &str,
    before: sluice_core::Millis,
    limit: u32,
) -> Result<u64, StoreError> {
    let done = sqlx::query(&format!(
        "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE id < $1 AND {finished} \
         ORDER BY id LIMIT $3) AND {ended} < $2"
    ))
    .bind(crate::rows::v7_floor(before))
    .bind(before.0)
    .bind(i64::from(limit))
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// `column` starts with one of the prefixes in parameter `n`, or there are none.
fn in_scopes(n: u32, column: &str) -> String {
    format!("(cardinality(${n}::text[]) = 0 OR EXISTS (SELECT 1 FROM UNNEST(${n}::text[]) AS p WHERE starts_with({column}, p)))")
}

impl Backend for PgBackend {
    fn name(&self) -> &'static str {
        "postgres"
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
}
