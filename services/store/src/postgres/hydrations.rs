//! Hydrations on PostgreSQL: loaded and written by the lease group's
//! batches (`leases.rs`, with their tables' rows locked), read here.

use super::{in_scopes, PgBackend};
use crate::error::StoreError;
use crate::leases::{Loaded, Targets};
use crate::ports::{HydrationPort, HydrationQuery};
use crate::rows::hydrations::{decode, decode_all, encode, state, UNFINISHED};
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::hydrations::{Hydration, HydrationId};
use sluice_core::TableName;
use sqlx::{Postgres, Transaction};

/// Load the hydrations a batch needs (see [`Loaded::hydrations_to_load`]):
/// one statement, none when it needs none.
pub(super) async fn load(
    tx: &mut Transaction<'_, Postgres>,
    targets: &Targets,
    loaded: &mut Loaded,
) -> Result<(), StoreError> {
    let (ids, tables) = loaded.hydrations_to_load(targets);
    if ids.is_empty() && tables.is_empty() {
        return Ok(());
    }
    let docs: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT doc FROM hydrations WHERE id = ANY($1) \
         OR (table_name = ANY($2) AND state IN ({UNFINISHED}))"
    ))
    .bind(&ids)
    .bind(&tables)
    .fetch_all(&mut **tx)
    .await?;
    for h in decode_all(docs)? {
        loaded.hydrations.insert(h.id, h);
    }
    Ok(())
}

pub(super) async fn write(
    tx: &mut Transaction<'_, Postgres>,
    hydrations: &[Hydration],
) -> Result<(), StoreError> {
    if hydrations.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO hydrations (id, table_name, container, state, doc) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, doc = excluded.doc",
    )
    .bind(
        hydrations
            .iter()
            .map(|h| h.id.to_string())
            .collect::<Vec<_>>(),
    )
    .bind(
        hydrations
            .iter()
            .map(|h| h.table.to_string())
            .collect::<Vec<_>>(),
    )
    .bind(
        hydrations
            .iter()
            .map(|h| h.container.to_string())
            .collect::<Vec<_>>(),
    )
    .bind(hydrations.iter().map(state).collect::<Vec<_>>())
    .bind(hydrations.iter().map(encode).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl HydrationPort for PgBackend {
    fn hydration(&self, id: HydrationId) -> BoxFuture<'_, Result<Option<Hydration>, StoreError>> {
        async move {
            let doc: Option<String> =
                sqlx::query_scalar("SELECT doc FROM hydrations WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
            doc.map(|d| decode(&d)).transpose()
        }
        .boxed()
    }

    fn hydrations<'a>(
        &'a self,
        q: &'a HydrationQuery,
    ) -> BoxFuture<'a, Result<Vec<Hydration>, StoreError>> {
        async move {
            let docs: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT doc FROM hydrations WHERE id > $1 AND ($2::text IS NULL OR state = $2) \
                 AND ($3::text IS NULL OR table_name = $3) AND ($4::text IS NULL OR container = $4) \
                 AND {} ORDER BY id LIMIT $6",
                in_scopes(5, "table_name")
            ))
            .bind(q.after.map(|a| a.to_string()).unwrap_or_default())
            .bind(q.state.map(|s| s.as_str()))
            .bind(q.table.as_ref().map(|t| t.as_str()))
            .bind(q.container.as_ref().map(|c| c.as_str()))
            .bind(&q.scopes)
            .bind(i64::from(q.limit))
            .fetch_all(&self.pool)
            .await?;
            decode_all(docs)
        }
        .boxed()
    }

    fn open_hydrations<'a>(
        &'a self,
        table: &'a TableName,
    ) -> BoxFuture<'a, Result<Vec<Hydration>, StoreError>> {
        async move {
            let docs: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT doc FROM hydrations WHERE table_name = $1 AND state IN ({UNFINISHED})"
            ))
            .bind(table.as_str())
            .fetch_all(&self.pool)
            .await?;
            decode_all(docs)
        }
        .boxed()
    }
}
