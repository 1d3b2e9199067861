//! Views in a PostgreSQL container.

use sluice_core::views::{plan, Plan, ViewError, ViewRequest};
use sqlx::{Connection, PgConnection, Postgres, Transaction};

pub async fn remap(url: &str, requests: &[ViewRequest]) -> Result<Vec<Plan>, ViewError> {
    let mut conn = PgConnection::connect(url).await.map_err(unavailable)?;
    let mut tx = conn.begin().await.map_err(unavailable)?;
    // Two remaps of one container never interleave (two replicas, or an
    // operator's remap beside the executor's).
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('sluice.remap'))")
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    let mut plans = Vec::new();
    for r in requests {
        let view_columns = columns(&mut tx, &r.view).await?;
        let target_columns = columns(&mut tx, &r.target).await?;
        plans.push(plan(
            &r.view,
            &r.target,
            r.columns.as_deref(),
            view_columns.as_deref(),
            target_columns.as_deref(),
        )?);
    }
    for p in &plans {
        let view = qualified(&p.view);
        if p.drop_first {
            sqlx::query(&format!("DROP VIEW {view}"))
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        let columns: Vec<String> = p.columns.iter().map(|c| quote(c)).collect();
        sqlx::query(&format!(
            "CREATE OR REPLACE VIEW {view} AS SELECT {} FROM {}",
            columns.join(", "),
            qualified(&p.target)
        ))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    }
    tx.commit().await.map_err(unavailable)?;
    Ok(plans)
}

/// A table's or view's columns in order; `None` when it does not exist.
async fn columns(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
) -> Result<Option<Vec<String>>, ViewError> {
    let (schema, table) = split(name);
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(&mut **tx)
    .await
    .map_err(unavailable)?;
    Ok((!found.is_empty()).then_some(found))
}

/// `schema.name`, or `name` in schema `public`.
fn split(name: &str) -> (&str, &str) {
    name.split_once('.').unwrap_or(("public", name))
}

fn qualified(name: &str) -> String {
    let (schema, table) = split(name);
    format!("{}.{}", quote(schema), quote(table))
}

/// Names are checked to letters, digits and `_` before they get here;
/// quoting keeps them exactly as given.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn unavailable(e: sqlx::Error) -> ViewError {
    ViewError::Unavailable(e.to_string())
}
