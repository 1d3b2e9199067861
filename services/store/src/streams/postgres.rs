//! Stream commands on PostgreSQL: the named streams' rows are locked in
//! name order for the length of the batch, the database's clock decides
//! expiry, and every change is written by one statement.

use super::rows::{
    self, BatchRow, StreamRow, BATCH_COLUMNS, STREAM_COLUMNS, UPSERT_BATCH_CONFLICT,
    UPSERT_STREAM_CONFLICT,
};
use super::{Applied, Loaded};
use crate::postgres::NOW_MS;
use crate::{StoreError, StreamRequest};
use sluice_core::{Millis, RuleError, StreamReply, StreamState};
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Transaction};

pub async fn run_batch(
    pool: &PgPool,
    requests: &[StreamRequest],
) -> Result<Vec<Result<StreamReply, RuleError>>, StoreError> {
    let mut tx = pool.begin().await?;
    let (loaded, now) = load(&mut tx, requests).await?;
    let applied = super::apply(loaded, requests, now);
    if !applied.is_empty() {
        write(&mut tx, &applied).await?;
    }
    tx.commit().await?;
    Ok(applied.answers)
}

#[derive(sqlx::FromRow)]
struct LockedRow {
    #[sqlx(flatten)]
    stream: StreamRow,
    now_ms: i64,
}

async fn load(
    tx: &mut Transaction<'_, Postgres>,
    requests: &[StreamRequest],
) -> Result<(Loaded, Millis), StoreError> {
    let targets = super::targets(requests);
    let names: Vec<&str> = targets.streams.iter().map(|s| s.as_str()).collect();
    let locked: Vec<LockedRow> = sqlx::query_as(&format!(
        "SELECT locked.*, {NOW_MS} AS now_ms FROM \
         (SELECT {STREAM_COLUMNS} FROM streams WHERE name = ANY($1) ORDER BY name FOR UPDATE) AS locked"
    ))
    .bind(&names)
    .fetch_all(&mut **tx)
    .await?;
    let mut loaded = Loaded::default();
    let mut now = None;
    for row in locked {
        now = now.max(Some(row.now_ms));
        let state = StreamState::try_from(row.stream)?;
        loaded.streams.insert(state.name.clone(), state);
    }
    let now = crate::postgres::database_now(tx, now).await?;
    let ids: Vec<String> = targets.batches.iter().map(|b| b.to_string()).collect();
    let batches: Vec<BatchRow> = sqlx::query_as(&format!(
        "SELECT {BATCH_COLUMNS} FROM stream_batches \
         WHERE (stream_name = ANY($1) AND state = 'open') OR id = ANY($2)"
    ))
    .bind(&names)
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    for batch in batches {
        loaded.place_batch(batch.try_into()?);
    }
    for (stream, to) in targets.rewinds {
        if let Some(version) = rows::rewind_target!(&mut **tx, stream, to)? {
            loaded.place_version(version);
        }
    }
    Ok((loaded, Millis(now)))
}

/// Streams, batches, versions and events in one statement. The event
/// counter row is taken last and held until the commit, so event ids follow
/// commit order across replicas (as on the lease path).
static WRITE_BATCH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH written_streams AS ( \
           INSERT INTO streams SELECT * FROM jsonb_populate_recordset(NULL::streams, $1::jsonb) \
           {UPSERT_STREAM_CONFLICT}), \
         written_batches AS ( \
           INSERT INTO stream_batches SELECT * FROM jsonb_populate_recordset(NULL::stream_batches, $2::jsonb) \
           {UPSERT_BATCH_CONFLICT}), \
         written_versions AS ( \
           INSERT INTO bookmark_versions \
           SELECT * FROM jsonb_populate_recordset(NULL::bookmark_versions, $3::jsonb)), \
         ids AS ( \
           UPDATE event_seq SET last_id = last_id + jsonb_array_length($4::jsonb) \
           WHERE jsonb_array_length($4::jsonb) > 0 RETURNING last_id) \
         INSERT INTO events (id, at, kind, table_name, lease_id, data, actor, stream_name) \
         SELECT ids.last_id - jsonb_array_length($4::jsonb) + e.ord, (e.value ->> 'at')::int8, \
           e.value ->> 'kind', e.value ->> 'table_name', e.value ->> 'lease_id', e.value ->> 'data', \
           e.value ->> 'actor', e.value ->> 'stream_name' \
         FROM ids, jsonb_array_elements($4::jsonb) WITH ORDINALITY AS e(value, ord)"
    )
});

async fn write(tx: &mut Transaction<'_, Postgres>, applied: &Applied) -> Result<(), StoreError> {
    sqlx::query(&WRITE_BATCH)
        .bind(rows::rows_json(&applied.streams, rows::stream_json))
        .bind(rows::rows_json(&applied.batches, rows::batch_json))
        .bind(rows::rows_json(&applied.versions, rows::version_json))
        .bind(crate::rows::events_json(&applied.events))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn list(
    pool: &PgPool,
    after: Option<&str>,
    limit: u32,
    scopes: &[String],
) -> Result<Vec<StreamState>, StoreError> {
    let rows: Vec<StreamRow> = sqlx::query_as(&format!(
        "SELECT {STREAM_COLUMNS} FROM streams WHERE name > $1 AND {} ORDER BY name LIMIT $2",
        crate::postgres::in_scopes(3, "name")
    ))
    .bind(after.unwrap_or(""))
    .bind(i64::from(limit))
    .bind(scopes)
    .fetch_all(pool)
    .await?;
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    let open: Vec<BatchRow> = sqlx::query_as(&format!(
        "SELECT {BATCH_COLUMNS} FROM stream_batches WHERE state = 'open' AND stream_name = ANY($1)"
    ))
    .bind(&names)
    .fetch_all(pool)
    .await?;
    rows::with_open_batches(rows, open)
}
