//! The table snapshot log: refresh on demand, and pages of it.

use crate::auth::Caller;
use crate::dto;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::snapshot_dto::{
    cursor, parse_cursor, RefreshBody, SnapshotBody, SnapshotParams, SnapshotsPage,
};
use crate::{parse_table, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use sluice_core::snapshots::CatalogError;
use sluice_core::{Permission, RuleError};
use sluice_store::RefreshError;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(refresh))
        .routes(routes!(snapshots))
}

/// Read the table's metadata from its catalog now and bring its snapshot
/// log up to date.
#[utoipa::path(post, path = "/v1/tables/{table}/refresh", tag = "tables",
    params(("table" = String, Path, description = "`namespace.table`")),
    responses(
        (status = 200, description = "Refreshed: what the log gained and lost", body = RefreshBody),
        (status = 400, description = "Malformed table name", body = ErrorBody),
        (status = 404, description = "Unknown table (`table_not_found`), or the catalog has no such table (`iceberg_table_not_found`)", body = ErrorBody),
        (status = 409, description = "The table names a catalog the configuration does not define, or none when there is no default (`catalog_not_configured`)", body = ErrorBody),
        (status = 503, description = "The catalog or its storage failed (`catalog_unavailable`); worth retrying", body = ErrorBody),
    ))]
async fn refresh(
    State(app): State<AppState>,
    caller: Caller,
    Path(table): Path<String>,
) -> Result<axum::Json<RefreshBody>, ApiError> {
    let table = parse_table(&table)?;
    caller.require_on(Permission::RefreshTables, &table)?;
    let refreshed = app
        .store
        .refresh_snapshots(app.catalogs.as_ref(), &table, caller.actor().as_deref())
        .await
        .map_err(refresh_error)?;
    Ok(axum::Json(RefreshBody::new(table.to_string(), refreshed)))
}

/// The table's snapshot log, as of its last refresh, a page at a time.
#[utoipa::path(get, path = "/v1/tables/{table}/snapshots", tag = "tables",
    params(("table" = String, Path, description = "`namespace.table`"), SnapshotParams),
    responses(
        (status = 200, description = "A page of snapshots", body = SnapshotsPage),
        (status = 400, description = "Malformed table name or query", body = ErrorBody),
        (status = 404, description = "Unknown table", body = ErrorBody),
        (status = 422, description = "limit out of range, or `after` is not a cursor", body = ErrorBody),
    ))]
async fn snapshots(
    State(app): State<AppState>,
    caller: Caller,
    Path(table): Path<String>,
    Query(page): Query<SnapshotParams>,
) -> Result<axum::Json<SnapshotsPage>, ApiError> {
    let table = parse_table(&table)?;
    caller.require_on(Permission::ReadTables, &table)?;
    let limit = dto::limit(page.limit)?;
    let after = parse_cursor(page.after.as_deref())
        .ok_or_else(|| ApiError::invalid("`after` must be the `next_after` of a previous page"))?;
    if app.store.table_catalog(&table).await?.is_none() {
        return Err(RuleError::TableNotFound(table).into());
    }
    let catalog_state = app.store.catalog_state(&table).await?.map(Into::into);
    let snapshots = app.store.snapshots(&table, after, limit).await?;
    let next_after = (snapshots.len() == limit as usize)
        .then(|| snapshots.last().map(cursor))
        .flatten();
    Ok(axum::Json(SnapshotsPage {
        table: table.to_string(),
        catalog_state,
        snapshots: snapshots.into_iter().map(SnapshotBody::from).collect(),
        next_after,
    }))
}

fn refresh_error(e: RefreshError) -> ApiError {
    match e {
        RefreshError::NotRegistered(table) => RuleError::TableNotFound(table).into(),
        RefreshError::Store(e) => e.into(),
        RefreshError::Catalog(e) => {
            let (status, kind) = match &e {
                CatalogError::UnknownCatalog(_) | CatalogError::NoDefaultCatalog => {
                    (StatusCode::CONFLICT, "catalog_not_configured")
                }
                CatalogError::NoSuchTable { .. } => {
                    (StatusCode::NOT_FOUND, "iceberg_table_not_found")
                }
                CatalogError::Unavailable { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "catalog_unavailable")
                }
            };
            ApiError::new(status, kind, e.to_string())
        }
    }
}
