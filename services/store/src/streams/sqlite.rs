//! Stream commands on SQLite: one statement per step whatever the batch
//! size (lists travel as JSON arrays).

use super::rows::{
    self, BatchRow, StreamRow, BATCH_COLUMNS, STREAM_COLUMNS, UPSERT_BATCH_CONFLICT,
    UPSERT_STREAM_CONFLICT, VERSION_COLUMNS,
};
use super::{Applied, Loaded};
use crate::{system_now, StoreError, StreamRequest};
use sluice_core::{RuleError, StreamReply, StreamState};
use sqlx::sqlite::SqlitePool;
use sqlx::{Sqlite, Transaction};

pub async fn run_batch(
    writer: &SqlitePool,
    requests: &[StreamRequest],
) -> Result<Vec<Result<StreamReply, RuleError>>, StoreError> {
    let mut tx = writer.begin().await?;
    let loaded = load(&mut tx, requests).await?;
    let applied = super::apply(loaded, requests, system_now());
    if !applied.is_empty() {
        write(&mut tx, &applied).await?;
    }
    tx.commit().await?;
    Ok(applied.answers)
}

async fn load(
    tx: &mut Transaction<'_, Sqlite>,
    requests: &[StreamRequest],
) -> Result<Loaded, StoreError> {
    let targets = super::targets(requests);
    let names: Vec<&str> = targets.streams.iter().map(|s| s.as_str()).collect();
    let names = serde_json::to_string(&names).expect("names serialize");
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
    .bind(serde_json::to_string(&ids).expect("ids serialize"))
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
    Ok(loaded)
}

/// `value ->> 'column', ...` for every column: a JSON row to a table row.
fn from_json(columns: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("value ->> '{}'", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn write(tx: &mut Transaction<'_, Sqlite>, applied: &Applied) -> Result<(), StoreError> {
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
    crate::sqlite::insert_events(tx, &applied.events).await
}

pub async fn list(
    readers: &SqlitePool,
    after: Option<&str>,
    limit: u32,
    scopes: &[String],
) -> Result<Vec<StreamState>, StoreError> {
    let rows: Vec<StreamRow> = sqlx::query_as(&format!(
        "SELECT {STREAM_COLUMNS} FROM streams WHERE name > ?1 AND {} ORDER BY name LIMIT ?2",
        crate::sqlite::in_scopes(3, "name")
    ))
    .bind(after.unwrap_or(""))
    .bind(i64::from(limit))
    .bind(serde_json::to_string(scopes).expect("scopes serialize"))
    .fetch_all(readers)
    .await?;
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    let open: Vec<BatchRow> = sqlx::query_as(&format!(
        "SELECT {BATCH_COLUMNS} FROM stream_batches \
         WHERE state = 'open' AND stream_name IN (SELECT value FROM json_each(?1))"
    ))
    .bind(serde_json::to_string(&names).expect("names serialize"))
    .fetch_all(readers)
    .await?;
    rows::with_open_batches(rows, open)
}
