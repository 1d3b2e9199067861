//! Consumer data containers on PostgreSQL.

use super::PgBackend;
use crate::error::StoreError;
use crate::ports::ContainerPort;
use crate::rows::containers::*;
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::containers::{Container, ContainerName};

impl ContainerPort for PgBackend {
    fn put_container<'a>(&'a self, c: &'a Container) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let mut tx = self.pool.begin().await?;
            let existed: Option<i32> = sqlx::query_scalar(CONTAINER_EXISTS)
                .bind(c.name.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let (kind, connection, database) = kind_columns(&c.kind);
            sqlx::query(UPSERT_CONTAINER)
                .bind(c.name.as_str())
                .bind(kind)
                .bind(connection)
                .bind(database)
                .bind(schemas_column(c))
                .bind(c.updated_at.0)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(existed.is_none())
        }
        .boxed()
    }

    fn container<'a>(
        &'a self,
        name: &'a ContainerName,
    ) -> BoxFuture<'a, Result<Option<Container>, StoreError>> {
        async move {
            let row: Option<ContainerRow> = sqlx::query_as(CONTAINER_BY_NAME)
                .bind(name.as_str())
                .fetch_optional(&self.pool)
                .await?;
            row.map(Container::try_from).transpose()
        }
        .boxed()
    }

    fn containers<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Container>, StoreError>> {
        async move {
            let rows: Vec<ContainerRow> = sqlx::query_as(CONTAINER_PAGE)
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
            rows.into_iter().map(Container::try_from).collect()
        }
        .boxed()
    }
}
