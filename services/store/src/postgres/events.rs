//! The event log on PostgreSQL (each aggregate's write statement appends
//! its events, ids from the `event_seq` counter row in commit order).

use super::{in_scopes, PgBackend};
use crate::error::StoreError;
use crate::ports::{EventPort, EventQuery};
use crate::rows::events::{EventRow, EVENT_COLUMNS};
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::{Event, Millis};

impl EventPort for PgBackend {
    fn events<'a>(&'a self, q: &'a EventQuery) -> BoxFuture<'a, Result<Vec<Event>, StoreError>> {
        async move {
            let rows: Vec<EventRow> = sqlx::query_as(&format!(
                "SELECT {EVENT_COLUMNS} FROM events \
                 WHERE id > $1 AND ($2::text IS NULL OR table_name = $2) AND ($3::text IS NULL OR kind = $3) \
                 AND {} AND (stream_name IS NULL OR {}) AND ($6::text IS NULL OR stream_name = $6) \
                 AND ($2::text IS NOT NULL OR table_name IS NULL OR NOT starts_with(table_name, 'sluice_system.')) \
                 ORDER BY id LIMIT $4",
                // sluice's own tables (the scheduler's leader lease) only when asked by name.
                // A stream's event needs its stream and its table in scope.
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

    fn newest_event_id(&self) -> BoxFuture<'_, Result<i64, StoreError>> {
        async move {
            let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events")
                .fetch_one(&self.pool)
                .await?;
            Ok(id.unwrap_or(0))
        }
        .boxed()
    }

    fn prune_events(
        &self,
        before: Millis,
        keep_last: i64,
        limit: u32,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            // The oldest `limit` by id, of which those written before the
            // cutoff: ids follow commit order, so the walk stays at the
            // start of the log.
            let done = sqlx::query(
                "DELETE FROM events WHERE id IN (SELECT id FROM events \
                 WHERE id <= (SELECT COALESCE(MAX(id), 0) FROM events) - $2 ORDER BY id LIMIT $3) \
                 AND at < $1",
            )
            .bind(before.0)
            .bind(keep_last)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected())
        }
        .boxed()
    }
}
