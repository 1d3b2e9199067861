//! Tables and leases on SQLite: one statement per step whatever the batch
//! size (lists travel as JSON arrays: every statement is a round trip to
//! sqlx's SQLite worker thread).

use super::{in_scopes, insert_events, now, prune_finished, SqliteBackend};
use crate::error::StoreError;
use crate::leases::{Changes, Loaded, Targets};
use crate::live::LiveTables;
use crate::ports::{Apply, Due, LeaseCount, LeasePort, LeaseView, TableSummary};
use crate::rows::corrupt;
use crate::rows::json_list;
use crate::rows::leases::{
    parse_names, summaries, LeaseRow, TableRow, LEASE_COLUMNS, LIVE, TABLE_COLUMNS,
    UPSERT_LEASE_CONFLICT,
};
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::{Lease, LeaseId, LeaseState, Millis, TableName, TableState};
use sqlx::{Sqlite, Transaction};
use std::collections::HashSet;

impl LeasePort for SqliteBackend {
    fn transact_leases<'a>(
        &'a self,
        targets: &'a Targets,
        apply: Apply<'a, Loaded, Changes>,
    ) -> BoxFuture<'a, Result<Changes, StoreError>> {
        async move {
            // One writer: the batch holds the cache from load to commit.
            let mut live = self.live.lock().await;
            let attempt = async {
                let mut tx = self.writer.begin().await?;
                let mut loaded = load(&mut tx, targets, &mut live).await?;
                #[cfg(debug_assertions)]
                same_as_on_disk(&mut tx, targets, &loaded).await?;
                super::hydrations::load(&mut tx, targets, &mut loaded).await?;
                let changes = apply(loaded, now());
                if !changes.is_empty() {
                    write(&mut tx, &changes).await?;
                }
                tx.commit().await?;
                Ok::<_, StoreError>(changes)
            };
            match attempt.await {
                Ok(changes) => {
                    live.commit(&changes);
                    Ok(changes)
                }
                Err(error) => {
                    live.clear();
                    Err(error)
                }
            }
        }
        .boxed()
    }

    fn lease(&self, id: LeaseId) -> BoxFuture<'_, Result<Option<LeaseView>, StoreError>> {
        async move {
            let row: Option<LeaseRow> =
                sqlx::query_as(&format!("SELECT {LEASE_COLUMNS} FROM leases WHERE id = ?1"))
                    .bind(id.to_string())
                    .fetch_optional(&self.readers)
                    .await?;
            let Some(row) = row else { return Ok(None) };
            let lease = Lease::try_from(row)?;
            let position = match lease.state {
                LeaseState::Waiting => {
                    let ahead: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM leases WHERE table_name = ?1 AND state = 'waiting' AND seq < ?2",
                    )
                    .bind(lease.table.as_str())
                    .bind(lease.seq)
                    .fetch_one(&self.readers)
                    .await?;
                    Some(ahead as u32 + 1)
                }
                _ => None,
            };
            Ok(Some(LeaseView {
                stale: lease.is_expired_at(now()),
                lease,
                position,
            }))
        }
        .boxed()
    }

    fn table_named_alike<'a>(
        &'a self,
        name: &'a TableName,
    ) -> BoxFuture<'a, Result<Option<TableName>, StoreError>> {
        async move {
            let found: Option<String> = sqlx::query_scalar(
                "SELECT name FROM sluice_tables WHERE lower(name) = lower(?1) AND name <> ?1",
            )
            .bind(name.as_str())
            .fetch_optional(&self.readers)
            .await?;
            found
                .map(|n| {
                    TableName::parse(&n).map_err(|_| crate::rows::corrupt("sluice_tables.name", &n))
                })
                .transpose()
        }
        .boxed()
    }

    fn prune_leases(&self, before: Millis, limit: u32) -> BoxFuture<'_, Result<u64, StoreError>> {
        let finished = format!("NOT ({LIVE})");
        async move { prune_finished(&self.writer, "leases", &finished, "ended_at", before, limit).await }
            .boxed()
    }

    fn lease_counts(&self) -> BoxFuture<'_, Result<Vec<LeaseCount>, StoreError>> {
        async move {
            Ok(sqlx::query_as(&format!(
                "SELECT mode, state, COUNT(*) FROM leases WHERE {LIVE} AND expires_at > ? \
                 AND substr(table_name, 1, 14) <> 'sluice_system.' GROUP BY mode, state"
            ))
            .bind(now().0)
            .fetch_all(&self.readers)
            .await?)
        }
        .boxed()
    }

    fn tables<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
        scopes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<TableSummary>, StoreError>> {
        async move {
            let rows: Vec<TableRow> = sqlx::query_as(&format!(
                "SELECT {TABLE_COLUMNS} FROM sluice_tables WHERE name > ?1 AND substr(name, 1, 14) <> 'sluice_system.' AND {} ORDER BY name LIMIT ?2",
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
            .bind(now().0)
            .bind(serde_json::to_string(&names).expect("names serialize"))
            .fetch_all(&self.readers)
            .await?;
            summaries(rows, counts)
        }
        .boxed()
    }

    fn due(&self) -> BoxFuture<'_, Result<Due, StoreError>> {
        async move {
            let now = now();
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
}

/// Load a batch's tables and leases: the held ones from the cache, the
/// rest from the database (and then held). Each step is one statement
/// whatever the batch size (lists travel as JSON arrays: every statement is
/// a round trip to sqlx's SQLite worker thread), and a batch on held tables
/// that names no finished lease runs none.
async fn load(
    tx: &mut Transaction<'_, Sqlite>,
    targets: &Targets,
    live: &mut LiveTables,
) -> Result<Loaded, StoreError> {
    let mut tables = targets.tables.clone();
    let mut loaded = Loaded::default();
    // Leases not held live: finished ones, unknown ones, and new ones on a
    // table not held (an earlier attempt may have committed them).
    // A new lease on a held table is new for sure: every commit on the
    // table went through the cache, and the cache does not hold it.
    let fresh: HashSet<LeaseId> = targets
        .fresh
        .iter()
        .filter(|(_, table)| live.get(table).is_some())
        .map(|(id, _)| *id)
        .collect();
    let mut ask: Vec<String> = Vec::new();
    for id in &targets.leases {
        if let Some(table) = live.table_of(*id) {
            tables.push(table.clone());
            loaded.lease_tables.insert(*id, table.clone());
        } else if !fresh.contains(id) {
            ask.push(id.to_string());
        }
    }
    if !ask.is_empty() {
        let found: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, table_name FROM leases WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(json_list(&ask))
        .fetch_all(&mut **tx)
        .await?;
        for (id, table) in found {
            let id: LeaseId = id.parse().map_err(|_| corrupt("lease id", &id))?;
            let table = TableName::parse(&table).map_err(|_| corrupt("table", &table))?;
            tables.push(table.clone());
            loaded.lease_tables.insert(id, table);
        }
    }
    // Lease-named tables join the named ones (SQLite has one writer:
    // no lock order to keep).
    tables.sort();
    tables.dedup();
    let mut unheld: Vec<&str> = Vec::new();
    for table in &tables {
        match live.get(table) {
            Some(state) => {
                loaded.tables.insert(table.clone(), state.clone());
            }
            None => unheld.push(table.as_str()),
        }
    }
    if !unheld.is_empty() {
        let names = json_list(&unheld);
        let rows: Vec<TableRow> = sqlx::query_as(&format!(
            "SELECT {TABLE_COLUMNS} FROM sluice_tables WHERE name IN (SELECT value FROM json_each(?1))"
        ))
        .bind(&names)
        .fetch_all(&mut **tx)
        .await?;
        let mut read = Loaded::default();
        for row in rows {
            let state = TableState::try_from(row)?;
            read.tables.insert(state.name.clone(), state);
        }
        let leases: Vec<LeaseRow> = sqlx::query_as(&format!(
            "SELECT {LEASE_COLUMNS} FROM leases WHERE table_name IN (SELECT value FROM json_each(?1)) \
             AND {LIVE} ORDER BY seq"
        ))
        .bind(&names)
        .fetch_all(&mut **tx)
        .await?;
        for row in leases {
            read.place(Lease::try_from(row)?);
        }
        for (name, state) in read.tables {
            live.insert(&state);
            loaded.tables.insert(name, state);
        }
    }
    // Finished leases the commands name, by id or idempotency key, so that
    // repeated calls are answered as the first was.
    let keys: Vec<&str> = targets
        .idempotency_keys
        .iter()
        .map(|(_, k)| k.as_str())
        .collect();
    if !ask.is_empty() || !keys.is_empty() {
        let names: Vec<&str> = tables.iter().map(|t| t.as_str()).collect();
        let leases: Vec<LeaseRow> = sqlx::query_as(&format!(
            "SELECT {LEASE_COLUMNS} FROM leases WHERE id IN (SELECT value FROM json_each(?2)) \
             UNION SELECT {LEASE_COLUMNS} FROM leases WHERE table_name IN (SELECT value FROM json_each(?1)) \
                 AND idempotency_key IN (SELECT value FROM json_each(?3)) \
             ORDER BY seq"
        ))
        .bind(json_list(&names))
        .bind(json_list(&ask))
        .bind(json_list(&keys))
        .fetch_all(&mut **tx)
        .await?;
        for row in leases {
            loaded.place(Lease::try_from(row)?);
        }
    }
    Ok(loaded)
}

/// Debug builds (every test) check each batch's cached state against the
/// database's: a cache that drifted would decide on leases that are not
/// on disk.
#[cfg(debug_assertions)]
async fn same_as_on_disk(
    tx: &mut Transaction<'_, Sqlite>,
    targets: &Targets,
    cached: &Loaded,
) -> Result<(), StoreError> {
    let disk = load(tx, targets, &mut LiveTables::default()).await?;
    let ids = |t: &TableState| {
        let mut ids: Vec<LeaseId> = t.finished.iter().map(|l| l.id).collect();
        ids.sort();
        ids
    };
    for (name, on_disk) in &disk.tables {
        let held = cached.tables.get(name);
        assert!(
            held.is_some_and(|held| {
                held.settings == on_disk.settings
                    && held.last_token == on_disk.last_token
                    && held.last_seq == on_disk.last_seq
                    && held.created_at == on_disk.created_at
                    && held.updated_at == on_disk.updated_at
                    && held.live == on_disk.live
                    && ids(held) == ids(on_disk)
            }),
            "the cached state of {name} is not the database's: {held:?} != {on_disk:?}"
        );
    }
    assert_eq!(cached.tables.len(), disk.tables.len(), "cached tables");
    assert_eq!(
        cached.lease_tables, disk.lease_tables,
        "cached lease tables"
    );
    Ok(())
}

async fn write(tx: &mut Transaction<'_, Sqlite>, applied: &Changes) -> Result<(), StoreError> {
    if !applied.created_tables.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO sluice_tables ({TABLE_COLUMNS}) SELECT value ->> 'name', value ->> 'catalog', \
             value ->> 'compaction_job', value ->> 'deferral', value ->> 'last_token', value ->> 'last_seq', \
             value ->> 'created_at', value ->> 'updated_at', value ->> 'pin_tags' FROM json_each(?1)"
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
             updated_at = u.value ->> 'updated_at', pin_tags = u.value ->> 'pin_tags' \
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
                    "pin_snapshot_id": l.pin_snapshot_id, "principal": l.principal,
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
            UPSERT_LEASE_CONFLICT
        ))
        .bind(serde_json::Value::Array(leases).to_string())
        .execute(&mut **tx)
        .await?;
    }
    super::hydrations::write(tx, &applied.hydrations).await?;
    let at = applied.events.first().map_or_else(now, |e| e.at);
    super::views::write_intents(tx, &applied.intents, at).await?;
    insert_events(tx, &applied.events).await
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
                "pin_tags": t.settings.pin_tags,
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}
