//! Jobs, runs and compactions on PostgreSQL. A write checks the leader's
//! fence with the lease row locked FOR SHARE, so a takeover (which must
//! update that row) waits for it or sees it committed.

use super::{insert_events, prune_finished, PgBackend, NOW_MS};
use crate::error::StoreError;
use crate::ports::{Fence, RunQuery, SchedulePort, ScheduleWrite, Versioned, Written};
use crate::rows::schedule::*;
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::scheduling::{Compaction, Job, Run, RunId};
use sluice_core::{Millis, TableName};
use sqlx::{Postgres, Transaction};

impl SchedulePort for PgBackend {
    fn put_job<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let existed: Option<i32> = sqlx::query_scalar("SELECT 1 FROM jobs WHERE name = $1")
                .bind(&job.name)
                .fetch_optional(&self.pool)
                .await?;
            sqlx::query(
                "INSERT INTO jobs (name, doc, next_fire_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT (name) DO UPDATE SET \
                 doc = excluded.doc, next_fire_at = excluded.next_fire_at, \
                 updated_at = excluded.updated_at",
            )
            .bind(&job.name)
            .bind(encode_spec(job))
            .bind(job.next_fire_at.map(|m| m.0))
            .bind(job.updated_at.0)
            .execute(&self.pool)
            .await?;
            Ok(existed.is_none())
        }
        .boxed()
    }

    fn delete_job<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let deleted = sqlx::query("DELETE FROM jobs WHERE name = $1")
                .bind(name)
                .execute(&self.pool)
                .await?
                .rows_affected();
            Ok(deleted == 1)
        }
        .boxed()
    }

    fn job<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Job>, StoreError>> {
        async move {
            let row: Option<JobRow> =
                sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE name = $1"))
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
            row.map(Job::try_from).transpose()
        }
        .boxed()
    }

    fn jobs<'a>(
        &'a self,
        after: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Job>, StoreError>> {
        async move {
            let rows: Vec<JobRow> = sqlx::query_as(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE name > $1 ORDER BY name LIMIT $2"
            ))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter().map(Job::try_from).collect()
        }
        .boxed()
    }

    fn due_jobs(&self, now: Millis, limit: u32) -> BoxFuture<'_, Result<Vec<Job>, StoreError>> {
        async move {
            let rows: Vec<JobRow> = sqlx::query_as(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE next_fire_at IS NOT NULL \
                 AND next_fire_at <= $1 ORDER BY next_fire_at LIMIT $2"
            ))
            .bind(now.0)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter().map(Job::try_from).collect()
        }
        .boxed()
    }

    fn run(&self, id: RunId) -> BoxFuture<'_, Result<Option<Versioned<Run>>, StoreError>> {
        async move {
            let row: Option<DocRow> = sqlx::query_as("SELECT doc, version FROM runs WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
            row.map(run).transpose()
        }
        .boxed()
    }

    fn run_counts(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, StoreError>> {
        async move {
            Ok(sqlx::query_as(
                "SELECT state, COUNT(*) FROM runs \
                     WHERE state NOT IN ('succeeded', 'failed', 'cancelled') GROUP BY state ORDER BY state",
            )
            .fetch_all(&self.pool)
            .await?)
        }
        .boxed()
    }

    fn runs<'a>(&'a self, q: &'a RunQuery) -> BoxFuture<'a, Result<Vec<Run>, StoreError>> {
        // Run ids are UUIDv7: their order is their creation order.
        let (after, order) = if q.newest_first {
            ("($1 = '' OR id < $1)", "DESC")
        } else {
            ("id > $1", "ASC")
        };
        async move {
            let rows: Vec<DocRow> = sqlx::query_as(&format!(
                "SELECT doc, version FROM runs WHERE {after} AND ($2::text IS NULL OR job = $2) \
                 AND ($3::text IS NULL OR state = $3) AND ($4::int8 IS NULL OR created_at >= $4) \
                 ORDER BY id {order} LIMIT $5",
            ))
            .bind(q.after.map(|a| a.to_string()).unwrap_or_default())
            .bind(q.job.as_deref())
            .bind(q.state.map(|s| s.as_str()))
            .bind(q.since.map(|s| s.0))
            .bind(i64::from(q.limit))
            .fetch_all(&self.pool)
            .await?;
            Ok(runs(rows)?.into_iter().map(|v| v.value).collect())
        }
        .boxed()
    }

    fn active_runs(
        &self,
        now: Millis,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Versioned<Run>>, StoreError>> {
        async move {
            let rows: Vec<DocRow> = sqlx::query_as(&format!(
                "SELECT doc, version FROM runs WHERE state IN ({ACTIVE_RUNS}) \
                 AND (due_at <= $1 OR state = 'starting') ORDER BY due_at LIMIT $2"
            ))
            .bind(now.0)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            runs(rows)
        }
        .boxed()
    }

    fn prune_runs(&self, before: Millis, limit: u32) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            let finished = "state IN ('succeeded', 'failed', 'cancelled')";
            prune_finished(&self.pool, "runs", finished, "created_at", before, limit).await
        }
        .boxed()
    }

    fn occupying(&self, job: &str) -> BoxFuture<'_, Result<u32, StoreError>> {
        let job = job.to_owned();
        async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM runs WHERE job = $1 AND state IN ('starting', 'running')",
            )
            .bind(job)
            .fetch_one(&self.pool)
            .await?;
            Ok(n as u32)
        }
        .boxed()
    }

    fn compaction(
        &self,
        id: uuid::Uuid,
    ) -> BoxFuture<'_, Result<Option<Versioned<Compaction>>, StoreError>> {
        async move {
            let row: Option<DocRow> =
                sqlx::query_as("SELECT doc, version FROM compactions WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
            row.map(compaction).transpose()
        }
        .boxed()
    }

    fn pending_compaction<'a>(
        &'a self,
        table: &'a TableName,
    ) -> BoxFuture<'a, Result<Option<Versioned<Compaction>>, StoreError>> {
        async move {
            let row: Option<DocRow> = sqlx::query_as(&format!(
                "SELECT doc, version FROM compactions WHERE table_name = $1 \
                 AND state IN ({PENDING_COMPACTIONS})"
            ))
            .bind(table.as_str())
            .fetch_optional(&self.pool)
            .await?;
            row.map(compaction).transpose()
        }
        .boxed()
    }

    fn compactions<'a>(
        &'a self,
        table: &'a TableName,
        before: Option<uuid::Uuid>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Compaction>, StoreError>> {
        async move {
            let rows: Vec<DocRow> = sqlx::query_as(
                "SELECT doc, version FROM compactions WHERE table_name = $1 \
                 AND ($2::text IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
            )
            .bind(table.as_str())
            .bind(before.map(|b| b.to_string()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            Ok(compactions(rows)?.into_iter().map(|v| v.value).collect())
        }
        .boxed()
    }

    fn active_compactions(
        &self,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Versioned<Compaction>>, StoreError>> {
        async move {
            let rows: Vec<DocRow> = sqlx::query_as(&format!(
                "SELECT doc, version FROM compactions WHERE state IN ({PENDING_COMPACTIONS}) \
                 ORDER BY id LIMIT $1"
            ))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            compactions(rows)
        }
        .boxed()
    }

    fn write_schedule<'a>(
        &'a self,
        w: &'a ScheduleWrite,
    ) -> BoxFuture<'a, Result<Written, StoreError>> {
        async move {
            let mut tx = self.pool.begin().await?;
            let outcome = write(&mut tx, w).await;
            match outcome {
                Ok(Written::Done) => {
                    tx.commit().await?;
                    Ok(Written::Done)
                }
                Ok(other) => Ok(other),
                Err(StoreError::Conflict(_)) => Ok(Written::Conflict),
                Err(e) => Err(e),
            }
        }
        .boxed()
    }
}

async fn write(
    tx: &mut Transaction<'_, Postgres>,
    w: &ScheduleWrite,
) -> Result<Written, StoreError> {
    if let Some(fence) = &w.fence {
        if !holds(tx, fence).await? {
            return Ok(Written::Deposed);
        }
    }
    for (name, expected, next) in &w.fires {
        let done = sqlx::query(
            "UPDATE jobs SET next_fire_at = $3::int8 WHERE name = $1 AND next_fire_at IS NOT DISTINCT FROM $2::int8",
        )
        .bind(name)
        .bind(expected.map(|m| m.0))
        .bind(next.map(|m| m.0))
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(Written::Conflict);
        }
    }
    for v in &w.runs {
        let r = &v.value;
        let done = if v.version == 0 {
            sqlx::query(
                "INSERT INTO runs (id, job, state, due_at, created_at, version, doc) \
                 VALUES ($1, $2, $3, $4, $5, 1, $6)",
            )
            .bind(r.id.to_string())
            .bind(&r.job)
            .bind(r.state.as_str())
            .bind(r.due_at.0)
            .bind(r.created_at.0)
            .bind(encode(r))
            .execute(&mut **tx)
            .await?
        } else {
            sqlx::query(
                "UPDATE runs SET state = $2, due_at = $3, doc = $4, version = version + 1 \
                 WHERE id = $1 AND version = $5",
            )
            .bind(r.id.to_string())
            .bind(r.state.as_str())
            .bind(r.due_at.0)
            .bind(encode(r))
            .bind(v.version)
            .execute(&mut **tx)
            .await?
        };
        if done.rows_affected() == 0 {
            return Ok(Written::Conflict);
        }
    }
    for v in &w.compactions {
        let c = &v.value;
        let done = if v.version == 0 {
            sqlx::query(
                "INSERT INTO compactions (id, table_name, state, created_at, version, doc) \
                 VALUES ($1, $2, $3, $4, 1, $5)",
            )
            .bind(c.id.to_string())
            .bind(c.table.as_str())
            .bind(c.state.as_str())
            .bind(c.created_at.0)
            .bind(encode(c))
            .execute(&mut **tx)
            .await?
        } else {
            sqlx::query(
                "UPDATE compactions SET state = $2, doc = $3, version = version + 1 \
                 WHERE id = $1 AND version = $4",
            )
            .bind(c.id.to_string())
            .bind(c.state.as_str())
            .bind(encode(c))
            .bind(v.version)
            .execute(&mut **tx)
            .await?
        };
        if done.rows_affected() == 0 {
            return Ok(Written::Conflict);
        }
    }
    insert_events(tx, &w.events).await?;
    Ok(Written::Done)
}

/// Whether the fence's lease is the granted, unexpired holder of its token.
async fn holds(tx: &mut Transaction<'_, Postgres>, fence: &Fence) -> Result<bool, StoreError> {
    let held: Option<String> = sqlx::query_scalar(&format!(
        "SELECT id FROM leases WHERE id = $1 AND token = $2 AND state = 'granted' \
         AND expires_at > {NOW_MS} FOR SHARE"
    ))
    .bind(fence.lease_id.to_string())
    .bind(fence.token)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(held.is_some())
}
