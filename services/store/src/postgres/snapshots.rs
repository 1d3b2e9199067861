//! The table snapshot log on PostgreSQL: a refresh locks the table's
//! catalog-state row, so replicas refreshing one table at once take turns.

use super::{database_now, insert_events, PgBackend};
use crate::error::StoreError;
use crate::ports::{Apply, CatalogState, SnapshotChanges, SnapshotPort};
use crate::rows::leases::{TableRow, TABLE_COLUMNS};
use crate::rows::snapshots::*;
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::snapshots::{Listed, Snapshot, SnapshotId};
use sluice_core::{Millis, TableName, TableSettings, TableState};

impl SnapshotPort for PgBackend {
    fn table_settings<'a>(
        &'a self,
        table: &'a TableName,
    ) -> BoxFuture<'a, Result<Option<TableSettings>, StoreError>> {
        async move {
            let row: Option<TableRow> = sqlx::query_as(&format!(
                "SELECT {TABLE_COLUMNS} FROM sluice_tables WHERE name = $1"
            ))
            .bind(table.as_str())
            .fetch_optional(&self.pool)
            .await?;
            Ok(match row {
                Some(row) => Some(TableState::try_from(row)?.settings),
                None => None,
            })
        }
        .boxed()
    }

    fn record_refresh<'a>(
        &'a self,
        table: &'a TableName,
        catalog: &'a str,
        apply: Apply<'a, Vec<(SnapshotId, bool)>, SnapshotChanges>,
    ) -> BoxFuture<'a, Result<SnapshotChanges, StoreError>> {
        async move {
            let mut tx = self.pool.begin().await?;
            sqlx::query(ENSURE_CATALOG_STATE)
                .bind(table.as_str())
                .bind(catalog)
                .execute(&mut *tx)
                .await?;
            sqlx::query("SELECT 1 FROM table_catalog_state WHERE table_name = $1 FOR UPDATE")
                .bind(table.as_str())
                .execute(&mut *tx)
                .await?;
            let now = database_now(&mut tx, None).await?;
            let known: Vec<(i64, bool)> = sqlx::query_as(KNOWN_SNAPSHOTS)
                .bind(table.as_str())
                .fetch_all(&mut *tx)
                .await?;
            let changes = apply(known, Millis(now));
            write(&mut tx, table, catalog, &changes).await?;
            if let Some(event) = &changes.event {
                insert_events(&mut tx, std::slice::from_ref(event)).await?;
            }
            tx.commit().await?;
            Ok(changes)
        }
        .boxed()
    }

    fn record_refresh_error<'a>(
        &'a self,
        table: &'a TableName,
        catalog: &'a str,
        message: &'a str,
        at: Millis,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            sqlx::query(RECORD_FAILURE)
                .bind(table.as_str())
                .bind(catalog)
                .bind(message)
                .bind(at.0)
                .execute(&self.pool)
                .await?;
            Ok(())
        }
        .boxed()
    }

    fn catalog_state<'a>(
        &'a self,
        table: &'a TableName,
    ) -> BoxFuture<'a, Result<Option<CatalogState>, StoreError>> {
        async move {
            let row: Option<CatalogStateRow> = sqlx::query_as(&format!(
                "SELECT {CATALOG_STATE_COLUMNS} FROM table_catalog_state WHERE table_name = $1"
            ))
            .bind(table.as_str())
            .fetch_optional(&self.pool)
            .await?;
            row.map(CatalogState::try_from).transpose()
        }
        .boxed()
    }

    fn catalog_states<'a>(
        &'a self,
        after: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<CatalogState>, StoreError>> {
        async move {
            let rows: Vec<CatalogStateRow> = sqlx::query_as(CATALOG_STATES_AFTER)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
            rows.into_iter().map(CatalogState::try_from).collect()
        }
        .boxed()
    }

    fn record_listing<'a>(
        &'a self,
        catalog: &'a str,
        listed: &'a Listed,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            sqlx::query(RECORD_LISTING)
                .bind(catalog)
                .bind(listed.at.0)
                .bind(unlisted_json(listed))
                .execute(&self.pool)
                .await?;
            Ok(())
        }
        .boxed()
    }

    fn catalog_listing<'a>(
        &'a self,
        catalog: &'a str,
    ) -> BoxFuture<'a, Result<Option<Listed>, StoreError>> {
        async move {
            let row: Option<(i64, String)> = sqlx::query_as(CATALOG_LISTING)
                .bind(catalog)
                .fetch_optional(&self.pool)
                .await?;
            listed(row)
        }
        .boxed()
    }

    fn snapshots<'a>(
        &'a self,
        table: &'a TableName,
        after: (i64, SnapshotId),
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Snapshot>, StoreError>> {
        async move {
            let rows: Vec<SnapshotRow> = sqlx::query_as(SNAPSHOT_PAGE)
                .bind(table.as_str())
                .bind(after.0)
                .bind(after.1)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
            rows.into_iter().map(Snapshot::try_from).collect()
        }
        .boxed()
    }

    fn has_snapshot<'a>(
        &'a self,
        table: &'a TableName,
        id: SnapshotId,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let found: Option<i64> = sqlx::query_scalar(HAS_SNAPSHOT)
                .bind(table.as_str())
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            Ok(found.is_some())
        }
        .boxed()
    }

    fn snapshot_log<'a>(
        &'a self,
        table: &'a TableName,
    ) -> BoxFuture<'a, Result<Vec<Snapshot>, StoreError>> {
        async move {
            let rows: Vec<SnapshotRow> = sqlx::query_as(SNAPSHOT_LOG)
                .bind(table.as_str())
                .fetch_all(&self.pool)
                .await?;
            rows.into_iter().map(Snapshot::try_from).collect()
        }
        .boxed()
    }
}

async fn write(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    table: &TableName,
    catalog: &str,
    changes: &SnapshotChanges,
) -> Result<(), StoreError> {
    for s in &changes.refresh.added {
        sqlx::query(INSERT_SNAPSHOT)
            .bind(table.as_str())
            .bind(s.id)
            .bind(s.parent_id)
            .bind(s.sequence_number)
            .bind(s.timestamp.0)
            .bind(&s.operation)
            .bind(summary_json(s))
            .bind(changes.refreshed_at.0)
            .execute(&mut **tx)
            .await?;
    }
    for id in &changes.refresh.expired {
        sqlx::query(EXPIRE_SNAPSHOT)
            .bind(changes.refreshed_at.0)
            .bind(table.as_str())
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(RECORD_SUCCESS)
        .bind(table.as_str())
        .bind(catalog)
        .bind(changes.metadata_location.as_deref())
        .bind(changes.current_snapshot_id)
        .bind(changes.refreshed_at.0)
        .bind(changes.refreshed_by.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
