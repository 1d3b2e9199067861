//! Views in a PostgreSQL container.

use crate::Timeouts;
use sluice_core::views::{check_request, plan, Plan, ViewError, ViewRequest};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Postgres, Transaction};

/// Where unqualified names are: `qualified` puts them there.
const SCHEMA: &str = "public";

pub async fn remap(
    url: &str,
    requests: &[ViewRequest],
    timeouts: Timeouts,
) -> Result<Vec<Plan>, ViewError> {
    // Refused before the container is asked anything.
    for r in requests {
        check_request(&r.view, &r.target, SCHEMA)?;
    }
    let options: PgConnectOptions = url.parse().map_err(classify)?;
    // A server that accepts the connection and never answers would hold
    // the remap (and whoever waits for it) for ever.
    let mut conn = tokio::time::timeout(timeouts.connect, PgConnection::connect_with(&options))
        .await
        .map_err(|_| {
            ViewError::Unavailable(format!(
                "no connection to the container within {:?}",
                timeouts.connect
            ))
        })?
        .map_err(classify)?;
    // The server ends what overruns its own timeouts, and says why; this
    // deadline is for one that stops answering altogether. A remap is a
    // handful of quick statements.
    let deadline = timeouts.lock + timeouts.statement * 2;
    tokio::time::timeout(deadline, switch(&mut conn, requests, timeouts))
        .await
        .map_err(|_| {
            ViewError::Unavailable(format!(
                "the container did not finish the remap within {deadline:?}"
            ))
        })?
}

/// Check and switch every view in one transaction.
async fn switch(
    conn: &mut PgConnection,
    requests: &[ViewRequest],
    timeouts: Timeouts,
) -> Result<Vec<Plan>, ViewError> {
    let mut tx = conn.begin().await.map_err(classify)?;
    // A consumer's query holds its view's lock for as long as it runs, and
    // while the remap waits for that lock every new reader of the view
    // queues behind it: give up soon and retry later instead.
    // `set_config(..., true)` is `SET LOCAL`: for this transaction only.
    sqlx::query(
        "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)",
    )
    .bind(timeouts.lock.as_millis().to_string())
    .bind(timeouts.statement.as_millis().to_string())
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    // Two remaps of one container never interleave (two replicas, or an
    // operator's remap beside the executor's).
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('sluice.remap'))")
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    let mut plans = Vec::new();
    for r in requests {
        let view_columns = columns(&mut tx, &r.view).await?;
        let target_columns = columns(&mut tx, &r.target).await?;
        plans.push(plan(
            &r.view,
            &r.target,
            SCHEMA,
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
                .map_err(classify)?;
        }
        let columns: Vec<String> = p.columns.iter().map(|c| quote(c)).collect();
        sqlx::query(&format!(
            "CREATE OR REPLACE VIEW {view} AS SELECT {} FROM {}",
            columns.join(", "),
            qualified(&p.target)
        ))
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    }
    tx.commit().await.map_err(classify)?;
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
    .map_err(classify)?;
    Ok((!found.is_empty()).then_some(found))
}

/// `schema.name`, or `name` in schema `public`.
fn split(name: &str) -> (&str, &str) {
    name.split_once('.').unwrap_or((SCHEMA, name))
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

/// Whether retrying may help. What PostgreSQL refuses for the change
/// itself (a column whose type would change, a "view" that is a table, a
/// missing schema, no privilege) stays refused until someone changes the
/// container: a refusal. Whatever depends on the moment (the connection,
/// a timeout, a lock, a deadlock, a shutting-down or full server, a
/// credential that may be rotated) is worth retrying; and so is what is
/// not known here.
fn classify(e: sqlx::Error) -> ViewError {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = format!("{} (SQLSTATE {code})", db.message());
            if is_refusal(&code) {
                ViewError::Refused(message)
            } else {
                ViewError::Unavailable(message)
            }
        }
        // The URL itself is wrong.
        sqlx::Error::Configuration(_) => ViewError::Refused(e.to_string()),
        _ => ViewError::Unavailable(e.to_string()),
    }
}

/// SQLSTATE classes of a change refused for what it is: syntax error or
/// access rule violation (42: undefined or wrong object, `cannot change
/// data type of view column`, insufficient privilege), feature not
/// supported (0A), data exception (22), integrity constraint (23),
/// dependent objects still exist (2B), invalid schema name (3F), and an
/// exception raised by a function or an event trigger (P0).
fn is_refusal(code: &str) -> bool {
    ["42", "0A", "22", "23", "2B", "3F", "P0"]
        .iter()
        .any(|class| code.starts_with(class))
}

#[cfg(test)]
mod tests {
    use super::is_refusal;

    #[test]
    fn refusals_are_told_from_what_is_worth_retrying() {
        for code in [
            "42P16", "42809", "42P01", "3F000", "42501", "0A000", "2BP01",
        ] {
            assert!(is_refusal(code), "{code}");
        }
        for code in [
            "55P03", "57014", "40001", "40P01", "57P01", "53300", "08006",
        ] {
            assert!(!is_refusal(code), "{code}");
        }
    }
}
