//! Tables: registration, settings, listing, and who holds or waits.

use crate::auth::Caller;
use crate::dto::{
    self, LeaseBody, PutTableBody, TableBody, TableLeasesBody, TablesPage, TablesParams,
};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::snapshot_dto::LogFreshnessBody;
use crate::{parse_table, parse_user_table, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use sluice_core::{Permission, TableCommand, TableState};
use sluice_store::TableSummary;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tables))
        .routes(routes!(put_table, get_table))
        .routes(routes!(table_leases))
}

/// Register a table or replace its settings.
#[utoipa::path(put, path = "/v1/tables/{table}", tag = "tables",
    params(("table" = String, Path, description = "`namespace.table`")),
    request_body = PutTableBody,
    responses(
        (status = 201, description = "Registered", body = TableBody),
        (status = 200, description = "Settings replaced", body = TableBody),
        (status = 400, description = "Malformed request or table name", body = ErrorBody),
        (status = 409, description = "A registered table's name differs only in case", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ))]
async fn put_table(
    State(app): State<AppState>,
    caller: Caller,
    Path(table): Path<String>,
    Json(body): Json<PutTableBody>,
) -> Result<(StatusCode, axum::Json<TableBody>), ApiError> {
    let table = parse_user_table(&table)?;
    caller.require_on(Permission::ManageTables, &table)?;
    let settings = body.settings()?;
    // Glue folds case: `salesX.t` beside `salesx.t` would be two locks on
    // one table. (A unique index on the folded name backs this up.)
    if let Some(existing) = app.store.table_named_alike(&table).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "table_name_conflict",
            format!(
                "table `{table}` differs only in case from the registered `{existing}`, \
                 which the Glue catalog treats as the same table; use `{existing}`"
            ),
        ));
    }
    let reply = app
        .store
        .table(TableCommand::Put { table, settings }, caller.actor())
        .await??;
    let status = if reply.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(summary(reply.state).into())))
}

/// A table's settings and how many hold or wait for it.
#[utoipa::path(get, path = "/v1/tables/{table}", tag = "tables",
    params(("table" = String, Path, description = "`namespace.table`")),
    responses(
        (status = 200, description = "The table", body = TableBody),
        (status = 400, description = "Malformed table name", body = ErrorBody),
        (status = 404, description = "Unknown table", body = ErrorBody),
    ))]
async fn get_table(
    State(app): State<AppState>,
    caller: Caller,
    Path(table): Path<String>,
) -> Result<axum::Json<TableBody>, ApiError> {
    let state = settled(&app, &caller, &table).await?;
    let log = app.store.log_freshness(&state.name).await?;
    let mut body = TableBody::from(summary(state));
    body.snapshot_log = log.map(|f| LogFreshnessBody::new(f, sluice_store::system_now()));
    Ok(axum::Json(body))
}

/// The registered tables, by name, a page at a time.
#[utoipa::path(get, path = "/v1/tables", tag = "tables",
    params(TablesParams),
    responses(
        (status = 200, description = "A page of tables", body = TablesPage),
        (status = 400, description = "Malformed query", body = ErrorBody),
        (status = 422, description = "limit out of range", body = ErrorBody),
    ))]
async fn list_tables(
    State(app): State<AppState>,
    caller: Caller,
    Query(page): Query<TablesParams>,
) -> Result<axum::Json<TablesPage>, ApiError> {
    caller.require(Permission::ReadTables)?;
    let limit = dto::limit(page.limit)?;
    let after = dto::optional_text("after", page.after.filter(|a| !a.is_empty()), 1024)?;
    let prefix = dto::optional_text("prefix", page.prefix.filter(|p| !p.is_empty()), 1024)?;
    // A scoped token sees only its tables, pages included.
    let Some(prefixes) = narrow(caller.scopes(), prefix.as_deref()) else {
        return Ok(axum::Json(TablesPage {
            tables: Vec::new(),
            next_after: None,
        }));
    };
    let tables = app.store.tables(after.as_deref(), limit, &prefixes).await?;
    let next_after = (tables.len() == limit as usize)
        .then(|| tables.last().map(|t| t.state.name.to_string()))
        .flatten();
    Ok(axum::Json(TablesPage {
        tables: tables.into_iter().map(TableBody::from).collect(),
        next_after,
    }))
}

/// The name prefixes a listing matches: the token's scopes narrowed to
/// `prefix`. Empty: every table; `None`: no table can match.
fn narrow(scopes: &[String], prefix: Option<&str>) -> Option<Vec<String>> {
    let Some(prefix) = prefix else {
        return Some(scopes.to_vec());
    };
    if scopes.is_empty() {
        return Some(vec![prefix.to_owned()]);
    }
    // Both must hold: the longer of two nested prefixes is the narrower.
    let mut narrowed: Vec<String> = scopes
        .iter()
        .filter_map(|s| {
            if prefix.starts_with(s.as_str()) {
                Some(prefix.to_owned())
            } else if s.starts_with(prefix) {
                Some(s.clone())
            } else {
                None
            }
        })
        .collect();
    narrowed.sort();
    narrowed.dedup();
    (!narrowed.is_empty()).then_some(narrowed)
}

/// Who holds the table and who waits, in queue order.
#[utoipa::path(get, path = "/v1/tables/{table}/leases", tag = "leases",
    params(("table" = String, Path, description = "`namespace.table`")),
    responses(
        (status = 200, description = "Holders and waiters", body = TableLeasesBody),
        (status = 400, description = "Malformed table name", body = ErrorBody),
        (status = 404, description = "Unknown table", body = ErrorBody),
    ))]
async fn table_leases(
    State(app): State<AppState>,
    caller: Caller,
    Path(table): Path<String>,
) -> Result<axum::Json<TableLeasesBody>, ApiError> {
    let state = settled(&app, &caller, &table).await?;
    let holders = state
        .holders()
        .map(|l| LeaseBody::new(l.clone(), None))
        .collect();
    let waiters = state
        .waiters()
        .enumerate()
        .map(|(i, l)| LeaseBody::new(l.clone(), Some(i as u32 + 1)))
        .collect();
    Ok(axum::Json(TableLeasesBody {
        table: state.name.to_string(),
        holders,
        waiters,
    }))
}

/// The table's state after expiring what is due (an access sweeps).
async fn settled(app: &AppState, caller: &Caller, table: &str) -> Result<TableState, ApiError> {
    let table = parse_table(table)?;
    caller.require_on(Permission::ReadTables, &table)?;
    let reply = app
        .store
        .table(TableCommand::Sweep { table }, None)
        .await??;
    Ok(reply.state)
}

fn summary(state: TableState) -> TableSummary {
    TableSummary {
        holders: state.holders().count() as u32,
        waiters: state.waiters().count() as u32,
        state,
    }
}
