//! Streams, batches and bookmark versions on SQLite: one statement per step
//! whatever the batch size (lists travel as JSON arrays).

use super::{in_scopes, insert_events, now, prune_finished, SqliteBackend};
use crate::error::StoreError;
use crate::ports::{Apply, StreamPort, VersionSummary};
use crate::rows::json_list;
use crate::rows::streams::{
    self as rows, BatchRow, StreamRow, VersionRow, BATCH_COLUMNS, STREAM_COLUMNS,
    UPSERT_BATCH_CONFLICT, UPSERT_STREAM_CONFLICT, VERSION_COLUMNS,
};
use crate::streams::{Changes, Loaded, Targets};
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::streams::RewindTo;
use sluice_core::{Batch, BatchId, BookmarkVersion, Millis, StreamName, StreamState};
use sqlx::{Sqlite, Transaction};

impl StreamPort for SqliteBackend {
    fn transact_streams<'a>(
        &'a self,
        targets: &'a Targets,
        apply: Apply<'a, Loaded, Changes>,
    ) -> BoxFuture<'a, Result<Changes, StoreError>> {
        async move {
            let mut tx = self.writer.begin().await?;
            let loaded = load(&mut tx, targets).await?;
            let changes = apply(loaded, now());
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
                sqlx::query_as(&format!("SELECT {STREAM_COLUMNS} FROM streams WHERE name = ?1"))
                    .bind(name.as_str())
                    .fetch_optional(&self.readers)
                    .await?;
            let Some(row) = row else { return Ok(None) };
            let open: Vec<BatchRow> = sqlx::query_as(&format!(
                "SELECT {BATCH_COLUMNS} FROM stream_batches WHERE stream_name = ?1 AND state = 'open'"
            ))
            .bind(name.as_str())
            .fetch_all(&self.readers)
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
                "SELECT {STREAM_COLUMNS} FROM streams WHERE name > ?1 AND {} AND {} ORDER BY name LIMIT ?2",
                in_scopes(3, "name"),
                in_scopes(3, "table_name")
            ))
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .bind(json_list(scopes))
            .fetch_all(&self.readers)
            .await?;
            let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
            let open: Vec<BatchRow> = sqlx::query_as(&format!(
                "SELECT {BATCH_COLUMNS} FROM stream_batches \
                 WHERE state = 'open' AND stream_name IN (SELECT value FROM json_each(?1))"
            ))
            .bind(json_list(&names))
            .fetch_all(&self.readers)
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
                "SELECT {BATCH_COLUMNS} FROM stream_batches WHERE id = ?1 AND stream_name = ?2"
            ))
            .bind(id.to_string())
            .bind(stream.as_str())
            .fetch_optional(&self.readers)
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
                "SELECT {} FROM bookmark_versions WHERE stream_name = ?1 AND version > ?2 \
                 ORDER BY version LIMIT ?3",
                // The file list stays in the database: only its length leaves.
                rows::summary_columns(
                    "json_remove(json_set(load, '$.files_done', json('[]')), \
                     '$.files_added', '$.files_done_count') AS load",
                    "COALESCE(json_array_length(load, '$.files_done'), \
                     json_extract(load, '$.files_done_count'), 0)"
                )
            ))
            .bind(stream.as_str())
            .bind(after_version)
            .bind(i64::from(limit))
            .fetch_all(&self.readers)
            .await?;
            rows.into_iter().map(VersionSummary::try_from).collect()
        }
        .boxed()
    }

    fn prune_batches(&self, before: Millis, limit: u32) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            prune_finished(
                &self.writer,
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
            let chain: Vec<VersionRow> = sqlx::query_as(&chain_query("version = ?2"))
                .bind(stream.as_str())
                .bind(version)
                .fetch_all(&self.readers)
                .await?;
            rows::rebuild(chain)
        }
        .boxed()
    }
}

async fn load(tx: &mut Transaction<'_, Sqlite>, targets: &Targets) -> Result<Loaded, StoreError> {
    let names: Vec<&str> = targets.streams.iter().map(|s| s.as_str()).collect();
    let names = json_list(&names);
    let rows: Vec<StreamRow> = sqlx::query_as(&format!(
        "SELECT {STREAM_COLUMNS} FROM streams WHERE name IN (SELECT value FROM json_each(?1))"
    ))
    .bind(&names)
    .fetch_all(&mut **tx)
    .await?;
    let mut loaded = Loaded::default();
    for row in rows {
        let state = StreamState::try_from(row)?;
        loaded.streams.insert(state.name.clone(), state);
    }
    let ids: Vec<String> = targets.batches.iter().map(|b| b.to_string()).collect();
    let batches: Vec<BatchRow> = sqlx::query_as(&format!(
        "SELECT {BATCH_COLUMNS} FROM stream_batches \
         WHERE (stream_name IN (SELECT value FROM json_each(?1)) AND state = 'open') \
            OR id IN (SELECT value FROM json_each(?2))"
    ))
    .bind(&names)
    .bind(json_list(&ids))
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
    Ok(loaded)
}

/// The version a rewind targets, read inside the batch's transaction.
async fn rewind_target(
    tx: &mut Transaction<'_, Sqlite>,
    stream: &StreamName,
    to: RewindTo,
) -> Result<Option<BookmarkVersion>, StoreError> {
    let (target, value) = match to {
        RewindTo::Version(v) => ("version = ?2", v),
        RewindTo::Time(t) => ("at <= ?2", t.0),
    };
    let chain: Vec<VersionRow> = sqlx::query_as(&chain_query(target))
        .bind(stream.as_str())
        .bind(value)
        .fetch_all(&mut **tx)
        .await?;
    rows::rebuild(chain)
}

/// The rows that make up the last version of stream ?1 matching `target`
/// (a condition on ?2): from the last whole one before it (see
/// `rows::streams::stored_load`), oldest first.
fn chain_query(target: &str) -> String {
    format!(
        "SELECT {VERSION_COLUMNS} FROM bookmark_versions WHERE stream_name = ?1 \
         AND version <= (SELECT version FROM bookmark_versions WHERE stream_name = ?1 AND {target} \
           ORDER BY version DESC LIMIT 1) \
         AND version >= (SELECT b.version FROM bookmark_versions b WHERE b.stream_name = ?1 \
           AND b.version <= (SELECT version FROM bookmark_versions WHERE stream_name = ?1 AND {target} \
             ORDER BY version DESC LIMIT 1) \
           AND json_type(b.load, '$.files_added') IS NULL ORDER BY b.version DESC LIMIT 1) \
         ORDER BY version"
    )
}

/// `value ->> 'column', ...` for every column: a JSON row to a table row.
fn from_json(columns: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("value ->> '{}'", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn write(tx: &mut Transaction<'_, Sqlite>, applied: &Changes) -> Result<(), StoreError> {
    // `WHERE true` tells SQLite's parser that ON CONFLICT belongs to the INSERT.
    if !applied.streams.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO streams ({STREAM_COLUMNS}) SELECT {} FROM json_each(?1) WHERE true {UPSERT_STREAM_CONFLICT}",
            from_json(STREAM_COLUMNS)
        ))
        .bind(rows::rows_json(&applied.streams, rows::stream_json))
        .execute(&mut **tx)
        .await?;
    }
    if !applied.batches.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO stream_batches ({BATCH_COLUMNS}) SELECT {} FROM json_each(?1) WHERE true {UPSERT_BATCH_CONFLICT}",
            from_json(BATCH_COLUMNS)
        ))
        .bind(rows::rows_json(&applied.batches, rows::batch_json))
        .execute(&mut **tx)
        .await?;
    }
    if !applied.versions.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO bookmark_versions ({VERSION_COLUMNS}) SELECT {} FROM json_each(?1)",
            from_json(VERSION_COLUMNS)
        ))
        .bind(rows::rows_json(&applied.versions, rows::version_json))
        .execute(&mut **tx)
        .await?;
    }
    insert_events(tx, &applied.events).await
}
