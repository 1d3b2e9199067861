//! Consumer views, their history and the outbox on PostgreSQL.

use super::{insert_events, PgBackend};
use crate::error::StoreError;
use crate::ports::{DueIntent, ViewStorePort};
use crate::rows::json_list;
use crate::rows::views::*;
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::containers::ContainerName;
use sluice_core::hydrations::HydrationId;
use sluice_core::outbox::{Intent, IntentStatus};
use sluice_core::views::{Remap, View};
use sluice_core::{Millis, NewEvent};
use sqlx::{Postgres, Transaction};

/// Record a batch's intents in its transaction.
pub(super) async fn write_intents(
    tx: &mut Transaction<'_, Postgres>,
    intents: &[Intent],
    now: Millis,
) -> Result<(), StoreError> {
    for intent in intents {
        sqlx::query(INSERT_INTENT)
            .bind(intent.kind())
            .bind(intent_payload(intent))
            .bind(intent.hydration_id().to_string())
            .bind(now.0)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl ViewStorePort for PgBackend {
    fn due_intents(
        &self,
        now: Millis,
        after: i64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<DueIntent>, StoreError>> {
        async move {
            let rows: Vec<IntentRow> = sqlx::query_as(DUE_INTENTS)
                .bind(now.0)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
            rows.into_iter()
                .map(|r| {
                    Ok(DueIntent {
                        id: r.id,
                        intent: decode_intent(&r.payload)?,
                        attempts: r.attempts as u32,
                    })
                })
                .collect()
        }
        .boxed()
    }

    fn latest_intents_of<'a>(
        &'a self,
        hydrations: &'a [HydrationId],
        kind: &'a str,
    ) -> BoxFuture<'a, Result<Vec<IntentStatus>, StoreError>> {
        async move {
            if hydrations.is_empty() {
                return Ok(Vec::new());
            }
            let ids: Vec<String> = hydrations.iter().map(|h| h.to_string()).collect();
            let rows: Vec<IntentStatusRow> = sqlx::query_as(&latest_intents_of("= ANY($1)"))
                .bind(&ids)
                .bind(kind)
                .fetch_all(&self.pool)
                .await?;
            rows.into_iter().map(IntentStatus::try_from).collect()
        }
        .boxed()
    }

    fn retry_intent<'a>(
        &'a self,
        id: i64,
        error: &'a str,
        next_attempt_at: Millis,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, error = $2, next_attempt_at = $3 \
                 WHERE id = $1 AND state = 'pending'",
            )
            .bind(id)
            .bind(error)
            .bind(next_attempt_at.0)
            .execute(&self.pool)
            .await?;
            Ok(())
        }
        .boxed()
    }

    fn finish_intent<'a>(
        &'a self,
        id: i64,
        error: Option<&'a str>,
        at: Millis,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, error = $2::text, finished_at = $3, \
                 state = CASE WHEN $2::text IS NULL THEN 'done' ELSE 'failed' END \
                 WHERE id = $1 AND state = 'pending'",
            )
            .bind(id)
            .bind(error)
            .bind(at.0)
            .execute(&self.pool)
            .await?;
            Ok(())
        }
        .boxed()
    }

    fn record_remaps<'a>(
        &'a self,
        container: &'a ContainerName,
        remaps: &'a [Remap],
        intent: Option<i64>,
        events: &'a [NewEvent],
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let mut tx = self.pool.begin().await?;
            if let Some(id) = intent {
                let done = sqlx::query(
                    "UPDATE outbox SET state = 'done', attempts = attempts + 1, finished_at = $2, \
                     error = NULL WHERE id = $1 AND state = 'pending'",
                )
                .bind(id)
                .bind(remaps.first().map_or(0, |r| r.at.0))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
            }
            for r in remaps {
                sqlx::query(&format!(
                    "INSERT INTO views ({VIEW_COLUMNS}) VALUES ($1, $2, $3, $4, TRUE, $5, $6) \
                     ON CONFLICT (container, name) DO UPDATE SET target = excluded.target, \
                     columns = excluded.columns, hydration_id = excluded.hydration_id, \
                     updated_at = excluded.updated_at"
                ))
                .bind(container.as_str())
                .bind(&r.view)
                .bind(&r.to_target)
                .bind(json_list(&r.columns))
                .bind(r.hydration_id.map(|h| h.to_string()))
                .bind(r.at.0)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO view_remaps (container, view_name, doc, from_target, to_target, at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(container.as_str())
                .bind(&r.view)
                .bind(remap_doc(r))
                .bind(&r.from_target)
                .bind(&r.to_target)
                .bind(r.at.0)
                .execute(&mut *tx)
                .await?;
            }
            insert_events(&mut tx, events).await?;
            tx.commit().await?;
            Ok(true)
        }
        .boxed()
    }

    fn view<'a>(
        &'a self,
        container: &'a ContainerName,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<View>, StoreError>> {
        async move {
            let row: Option<ViewRow> = sqlx::query_as(&format!(
                "SELECT {VIEW_COLUMNS} FROM views WHERE container = $1 AND name = $2"
            ))
            .bind(container.as_str())
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
            row.map(View::try_from).transpose()
        }
        .boxed()
    }

    fn views<'a>(
        &'a self,
        container: Option<&'a ContainerName>,
        after: (&'a str, &'a str),
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<View>, StoreError>> {
        async move {
            let rows: Vec<ViewRow> = sqlx::query_as(&format!(
                "SELECT {VIEW_COLUMNS} FROM views WHERE ($1::text IS NULL OR container = $1) \
                 AND (container, name) > ($2, $3) ORDER BY container, name LIMIT $4"
            ))
            .bind(container.map(|c| c.as_str()))
            .bind(after.0)
            .bind(after.1)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter().map(View::try_from).collect()
        }
        .boxed()
    }

    fn view_history<'a>(
        &'a self,
        container: &'a ContainerName,
        name: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Remap>, StoreError>> {
        async move {
            let docs: Vec<String> = sqlx::query_scalar(
                "SELECT doc FROM view_remaps WHERE container = $1 AND view_name = $2 \
                 ORDER BY id DESC LIMIT $3",
            )
            .bind(container.as_str())
            .bind(name)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            decode_remaps(docs)
        }
        .boxed()
    }

    fn set_auto_remap<'a>(
        &'a self,
        container: &'a ContainerName,
        name: &'a str,
        on: bool,
        at: Millis,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let done = sqlx::query(
                "UPDATE views SET auto_remap = $3, updated_at = $4 WHERE container = $1 AND name = $2",
            )
            .bind(container.as_str())
            .bind(name)
            .bind(on)
            .bind(at.0)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() > 0)
        }
        .boxed()
    }

    fn orphans<'a>(
        &'a self,
        container: &'a ContainerName,
    ) -> BoxFuture<'a, Result<Vec<(String, Millis)>, StoreError>> {
        async move {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT from_target, MAX(at) FROM view_remaps WHERE container = $1 \
                 AND from_target IS NOT NULL \
                 AND from_target NOT IN (SELECT target FROM views WHERE container = $1) \
                 GROUP BY from_target ORDER BY from_target",
            )
            .bind(container.as_str())
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.into_iter().map(|(t, at)| (t, Millis(at))).collect())
        }
        .boxed()
    }
}
