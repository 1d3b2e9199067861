//! Tables and leases on PostgreSQL: the touched tables' rows locked in name
//! order for the length of a batch, and every change written by one
//! statement.

use super::notify::{notify_payloads, CHANNEL};
use super::{database_now, in_scopes, prune_finished, PgBackend, NOW_MS};
use crate::error::StoreError;
use crate::leases::{Changes, Loaded, Targets};
use crate::ports::{Apply, Due, LeaseCount, LeasePort, LeaseView, TableSummary};
use crate::rows::leases::{
    parse_names, summaries, LeaseRow, TableRow, LEASE_COLUMNS, LIVE, TABLE_COLUMNS,
    UPSERT_LEASE_CONFLICT,
};
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::{Lease, LeaseId, Millis, TableName, TableState};
use sqlx::{Postgres, Transaction};

impl LeasePort for PgBackend {
    fn transact_leases<'a>(
        &'a self,
        targets: &'a Targets,
        apply: Apply<'a, Loaded, Changes>,
    ) -> BoxFuture<'a, Result<Changes, StoreError>> {
        async move {
            let started = std::time::Instant::now();
            let mut tx = self.pool.begin().await?;
            let (mut loaded, now) = Self::load(&mut tx, targets).await?;
            super::hydrations::load(&mut tx, targets, &mut loaded).await?;
            let changes = apply(loaded, now);
            if !changes.is_empty() {
                self.write(&mut tx, &changes).await?;
            }
            tx.commit().await?;
            tracing::debug!(tables = targets.tables.len(), elapsed = ?started.elapsed(), "batch committed");
            Ok(changes)
        }
        .boxed()
    }

    fn lease(&self, id: LeaseId) -> BoxFuture<'_, Result<Option<LeaseView>, StoreError>> {
        async move {
            // The position and the clock come with the row: one round trip.
            let row: Option<LeaseViewRow> = sqlx::query_as(&format!(
                "SELECT {LEASE_COLUMNS}, {NOW_MS} AS read_at, \
                 CASE WHEN state = 'waiting' THEN (SELECT COUNT(*) FROM leases AS w \
                   WHERE w.table_name = l.table_name AND w.state = 'waiting' AND w.seq < l.seq) END AS ahead \
                 FROM leases AS l WHERE id = $1"
            ))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
            let Some(row) = row else { return Ok(None) };
            let lease = Lease::try_from(row.lease)?;
            Ok(Some(LeaseView {
                stale: lease.is_expired_at(Millis(row.read_at)),
                lease,
                position: row.ahead.map(|ahead| ahead as u32 + 1),
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
                "SELECT name FROM sluice_tables WHERE lower(name) = lower($1) AND name <> $1",
            )
            .bind(name.as_str())
            .fetch_optional(&self.pool)
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
        async move { prune_finished(&self.pool, "leases", &finished, "ended_at", before, limit).await }.boxed()
    }

    fn lease_counts(&self) -> BoxFuture<'_, Result<Vec<LeaseCount>, StoreError>> {
        async move {
            Ok(sqlx::query_as(&format!(
                "SELECT mode, state, COUNT(*) FROM leases WHERE {LIVE} AND expires_at > {NOW_MS} \
                 AND NOT starts_with(table_name, 'sluice_system.') GROUP BY mode, state"
            ))
            .fetch_all(&self.pool)
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
                "SELECT {TABLE_COLUMNS} FROM sluice_tables WHERE name > $1 AND NOT starts_with(name, 'sluice_system.') AND {} ORDER BY name LIMIT $2",
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
}

impl PgBackend {
    /// Load a batch's tables (locked, in name order) and leases: two
    /// statements whatever the batch size.
    async fn load(
        tx: &mut Transaction<'_, Postgres>,
        targets: &Targets,
    ) -> Result<(Loaded, Millis), StoreError> {
        let names: Vec<&str> = targets.tables.iter().map(|t| t.as_str()).collect();
        let ids: Vec<String> = targets.leases.iter().map(|id| id.to_string()).collect();
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
        let named: std::collections::HashSet<LeaseId> = targets.leases.iter().copied().collect();
        let (key_tables, keys): (Vec<&str>, Vec<&str>) = targets
            .idempotency_keys
            .iter()
            .map(|(t, k)| (t.as_str(), k.as_str()))
            .unzip();
        let leases: Vec<LeaseRow> = sqlx::query_as(&format!(
            // UNION ALL: a lease may come twice (live and named); `place`
            // keeps the first, cheaper than hashing rows here.
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
        for row in leases {
            let lease = Lease::try_from(row)?;
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
        applied: &Changes,
    ) -> Result<(), StoreError> {
        let created = TableColumns::of(&applied.created_tables);
        let updated = TableColumns::of(&applied.updated_tables);
        let l = &applied.leases;
        let e = &applied.events;
        let mut changed: Vec<&str> = l.iter().map(|l| l.table.as_str()).collect();
        changed.sort_unstable();
        changed.dedup();
        super::hydrations::write(tx, &applied.hydrations).await?;
        if let Some(first) = applied.events.first() {
            super::views::write_intents(tx, &applied.intents, first.at).await?;
        }
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
            .bind(
                e.iter()
                    .map(|e| e.table.as_ref().map(|t| t.to_string()))
                    .collect::<Vec<_>>(),
            )
            .bind(
                e.iter()
                    .map(|e| e.lease_id.map(|l| l.to_string()))
                    .collect::<Vec<_>>(),
            )
            .bind(e.iter().map(|e| e.data.to_string()).collect::<Vec<_>>())
            .bind(CHANNEL)
            .bind(notify_payloads(&self.replica, &changed))
            .bind(e.iter().map(|e| e.actor.as_deref()).collect::<Vec<_>>())
            .bind(l.iter().map(|l| l.principal.as_deref()).collect::<Vec<_>>())
            .bind(&created.pin_tags)
            .bind(&updated.pin_tags)
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
             $1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[], $7::int8[], $8::int8[], \
             $41::bool[])), \
         changed_tables AS ( \
           UPDATE sluice_tables AS t SET catalog = u.catalog, compaction_job = u.compaction_job, \
             max_compaction_deferral_seconds = u.deferral, last_token = u.last_token, \
             last_seq = u.last_seq, updated_at = u.updated_at, pin_tags = u.pin_tags \
           FROM UNNEST($9::text[], $10::text[], $11::text[], $12::int8[], $13::int8[], $14::int8[], $15::int8[], \
             $42::bool[]) \
             AS u(name, catalog, compaction_job, deferral, last_token, last_seq, updated_at, pin_tags) \
           WHERE t.name = u.name), \
         written_leases AS ( \
           INSERT INTO leases ({LEASE_COLUMNS}) SELECT * FROM UNNEST( \
             $16::text[], $17::text[], $18::int8[], $19::text[], $20::text[], $21::text[], $22::text[], \
             $23::int8[], $24::int8[], $25::int8[], $26::int8[], $27::int8[], $28::int8[], $29::text[], \
             $30::text[], $31::int8[], $40::text[]) {upsert}), \
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
        upsert = UPSERT_LEASE_CONFLICT
    )
});

#[derive(sqlx::FromRow)]
struct LockedRow {
    #[sqlx(flatten)]
    table: TableRow,
    now_ms: i64,
}

#[derive(sqlx::FromRow)]
struct LeaseViewRow {
    #[sqlx(flatten)]
    lease: LeaseRow,
    read_at: i64,
    ahead: Option<i64>,
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
    pin_tags: Vec<Option<bool>>,
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
            pin_tags: tables.iter().map(|t| t.settings.pin_tags).collect(),
        }
    }
}
