//! Streams, batches and bookmark versions on PostgreSQL: the named
//! streams' rows are locked in name order for the length of the batch, the
//! database's clock decides expiry, and every change is written by one
//! statement.

use super::{database_now, in_scopes, prune_finished, PgBackend, NOW_MS};
use crate::error::StoreError;
use crate::ports::{Apply, StreamPort, VersionSummary};
use crate::rows::events::events_json;
use crate::rows::streams::{
    self as rows, BatchRow, StreamRow, VersionRow, BATCH_COLUMNS, STREAM_COLUMNS,
    UPSERT_BATCH_CONFLICT, UPSERT_STREAM_CONFLICT, VERSION_COLUMNS,
};
use crate::streams::{Changes, Loaded, Targets};
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::streams::RewindTo;
use sluice_core::{Batch, BatchId, BookmarkVersion, Millis, StreamName, StreamState};
use sqlx::{Postgres, Transaction};

impl StreamPort for PgBackend {
    fn transact_streams<'a>(
        &'a self,
        targets: &'a Targets,
        apply: Apply<'a, Loaded, Changes>,
    ) -> BoxFuture<'a, Result<Changes, StoreError>> {
        async move {
            let mut tx = self.pool.begin().await?;
            let (loaded, now) = load(&mut tx, targets).await?;
            let changes = apply(loaded, now);
            if !changes.is_empty() {
                write(&mut tx, &changes).await?;
            }
            tx.commit().await?;
            Ok(changes)
        }
        .boxed()
    }

    fn stream<'a>(
        &'a self,
        name: &'a StreamName,
    ) -> BoxFuture<'a, Result<Option<StreamState>, StoreError>> {
        async move {
            let row: Option<StreamRow> =
                sqlx::query_as(&format!("SELECT {STREAM_COLUMNS} FROM streams WHERE name = $1"))
                    .bind(name.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
            let Some(row) = row else { return Ok(None) };
            let open: Vec<BatchRow> = sqlx::query_as(&format!(
                "SELECT {BATCH_COLUMNS} FROM stream_batches WHERE stream_name = $1 AND state = 'open'"
            ))
            .bind(name.as_str())
            .fetch_all(&self.pool)
            .await?;
            Ok(rows::with_open_batches(vec![row], open)?.pop())
        }
        .boxed()
    }

    fn streams<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
        scopes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<StreamState>, StoreError>> {
        async move {
            let rows: Vec<StreamRow> = sqlx::query_as(&format!(
                // A stream is seen only with the table it feeds.
                "SELECT {STREAM_COLUMNS} FROM streams WHERE name > $1 AND {} AND {} ORDER BY name LIMIT $2",
                in_scopes(3, "name"),
                in_scopes(3, "table_name")
            ))
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .bind(scopes)
            .fetch_all(&self.pool)
            .await?;
            let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
            let open: Vec<BatchRow> = sqlx::query_as(&format!(
                "SELECT {BATCH_COLUMNS} FROM stream_batches WHERE state = 'open' AND stream_name = ANY($1)"
            ))
            .bind(&names)
            .fetch_all(&self.pool)
            .await?;
            rows::with_open_batches(rows, open)
        }
        .boxed()
    }

    fn batch<'a>(
        &'a self,
        stream: &'a StreamName,
        id: BatchId,
    ) -> BoxFuture<'a, Result<Option<Batch>, StoreError>> {
        async move {
            let row: Option<BatchRow> = sqlx::query_as(&format!(
                "SELECT {BATCH_COLUMNS} FROM stream_batches WHERE id = $1 AND stream_name = $2"
            ))
            .bind(id.to_string())
            .bind(stream.as_str())
            .fetch_optional(&self.pool)
            .await?;
            row.map(Batch::try_from).transpose()
        }
        .boxed()
    }

    fn history<'a>(
        &'a self,
        stream: &'a StreamName,
        after_version: i64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<VersionSummary>, StoreError>> {
        async move {
            let rows: Vec<rows::SummaryRow> = sqlx::query_as(&format!(
                "SELECT {} FROM bookmark_versions WHERE stream_name = $1 AND version > $2 \
                 ORDER BY version LIMIT $3",
                // The file list stays in the database: only its length leaves.
                rows::summary_columns(
                    r#"((load::jsonb - 'files_added' - 'files_done_count')
                       || '{"files_done": []}'::jsonb)::text AS load"#,
                    "COALESCE(jsonb_array_length(load::jsonb -> 'files_done'), \
                     (load::jsonb ->> 'files_done_count')::int8, 0)::int8"
                )
            ))
            .bind(stream.as_str())
            .bind(after_version)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter().map(VersionSummary::try_from).collect()
        }
        .boxed()
    }

    fn prune_batches(&self, before: Millis, limit: u32) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            prune_finished(
                &self.pool,
                "stream_batches",
                "state <> 'open'",
                "ended_at",
                before,
                limit,
            )
            .await
        }
        .boxed()
    }

    fn version<'a>(
        &'a self,
        stream: &'a StreamName,
        version: i64,
    ) -> BoxFuture<'a, Result<Option<BookmarkVersion>, StoreError>> {
        async move {
            let chain: Vec<VersionRow> = sqlx::query_as(&chain_query("version = $2"))
                .bind(stream.as_str())
                .bind(version)
                .fetch_all(&self.pool)
                .await?;
            rows::rebuild(chain)
        }
        .boxed()
    }
}

#[derive(sqlx::FromRow)]
struct LockedRow {
    #[sqlx(flatten)]
    stream: StreamRow,
    now_ms: i64,
}

async fn load(
    tx: &mut Transaction<'_, Postgres>,
    targets: &Targets,
) -> Result<(Loaded, Millis), StoreError> {
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
    let now = database_now(tx, now).await?;
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
    for (stream, to) in &targets.rewinds {
        if let Some(version) = rewind_target(tx, stream, *to).await? {
            loaded.place_version(version);
        }
    }
    Ok((loaded, Millis(now)))
}

/// The version a rewind targets, read inside the batch's transaction.
async fn rewind_target(
    tx: &mut Transaction<'_, Postgres>,
    stream: &StreamName,
    to: RewindTo,
) -> Result<Option<BookmarkVersion>, StoreError> {
    let (target, value) = match to {
        RewindTo::Version(v) => ("version = $2", v),
        RewindTo::Time(t) => ("at <= $2", t.0),
    };
    let chain: Vec<VersionRow> = sqlx::query_as(&chain_query(target))
        .bind(stream.as_str())
        .bind(value)
        .fetch_all(&mut **tx)
        .await?;
    rows::rebuild(chain)
}

/// The rows that make up the last version of stream $1 matching `target`
/// (a condition on $2): from the last whole one before it (see
/// `rows::streams::stored_load`), oldest first.
fn chain_query(target: &str) -> String {
    format!(
        "SELECT {VERSION_COLUMNS} FROM bookmark_versions WHERE stream_name = $1 \
         AND version <= (SELECT version FROM bookmark_versions WHERE stream_name = $1 AND {target} \
           ORDER BY version DESC LIMIT 1) \
         AND version >= (SELECT b.version FROM bookmark_versions b WHERE b.stream_name = $1 \
           AND b.version <= (SELECT version FROM bookmark_versions WHERE stream_name = $1 AND {target} \
             ORDER BY version DESC LIMIT 1) \
           AND NOT jsonb_exists(b.load::jsonb, 'files_added') ORDER BY b.version DESC LIMIT 1) \
         ORDER BY version"
    )
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

async fn write(tx: &mut Transaction<'_, Postgres>, applied: &Changes) -> Result<(), StoreError> {
    sqlx::query(&WRITE_BATCH)
        .bind(rows::rows_json(&applied.streams, rows::stream_json))
        .bind(rows::rows_json(&applied.batches, rows::batch_json))
        .bind(rows::rows_json(&applied.versions, rows::version_json))
        .bind(events_json(&applied.events))
        .execute(&mut **tx)
        .await?;
    Ok(())
}
