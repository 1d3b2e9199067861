//! The table snapshot log: refresh on demand, and pages of it.

use crate::auth::Caller;
use crate::dto;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::snapshot_dto::{
    cursor, parse_cursor, RefreshBody, RetentionBody, SnapshotBody, SnapshotParams, SnapshotsPage,
};
use crate::{parse_table, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use sluice_core::snapshots::{self, CatalogError, Cause};
use sluice_core::{Permission, RuleError, TableCommand};
use sluice_store::RefreshError;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(refresh))
        .routes(routes!(snapshots))
        .routes(routes!(retention))
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
        .refresh_snapshots(
            app.catalogs.as_ref(),
            &table,
            caller.actor().as_deref(),
            Cause::OnDemand,
        )
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

/// What snapshot expiry may remove now: the oldest snapshot a live read
/// lease (held, or waiting with a pin) or a live copy's pin still needs,
/// and the
/// `expire_snapshots(older_than=…)` timestamp that keeps it.
#[utoipa::path(get, path = "/v1/tables/{table}/retention", tag = "tables",
    params(("table" = String, Path, description = "`namespace.table`")),
    responses(
        (status = 200, description = "The safe expiry point", body = RetentionBody),
        (status = 400, description = "Malformed table name", body = ErrorBody),
        (status = 404, description = "Unknown table", body = ErrorBody),
    ))]
async fn retention(
    State(app): State<AppState>,
    caller: Caller,
    Path(table): Path<String>,
) -> Result<axum::Json<RetentionBody>, ApiError> {
    let table = parse_table(&table)?;
    caller.require_on(Permission::ReadTables, &table)?;
    let state = app
        .store
        .table(
            TableCommand::Sweep {
                table: table.clone(),
            },
            None,
        )
        .await??
        .state;
    let mut readers = snapshots::readers(&state.live);
    readers.extend(app.store.follower_readers(&table).await?);
    let mut log = app.store.snapshot_log(&table).await?;
    let unknown_pin = readers
        .iter()
        .filter_map(|r| r.pin)
        .any(|pin| !log.iter().any(|s| s.id == pin));
    if unknown_pin {
        // A pin the log has not seen yet: read the catalog once before
        // answering (a failure leaves the conservative answer below).
        if app
            .store
            .refresh_snapshots(
                app.catalogs.as_ref(),
                &table,
                caller.actor().as_deref(),
                Cause::OnDemand,
            )
            .await
            .is_ok()
        {
            log = app.store.snapshot_log(&table).await?;
        }
    }
    let catalog_state = app.store.catalog_state(&table).await?;
    let current = catalog_state.as_ref().and_then(|c| c.current_snapshot_id);
    let r = snapshots::retention(&log, current, &readers, sluice_store::system_now());
    let mut pinned: Vec<i64> = readers.iter().filter_map(|r| r.pin).collect();
    pinned.sort_unstable();
    pinned.dedup();
    Ok(axum::Json(RetentionBody {
        table: table.to_string(),
        current_snapshot_id: current,
        oldest_needed_snapshot_id: r.oldest_needed,
        safe_older_than: r.safe_older_than.map(|t| t.to_rfc3339()),
        readers: readers.len() as u32,
        pinned,
        log_refreshed_at: catalog_state
            .and_then(|c| c.refreshed_at)
            .map(|t| t.to_rfc3339()),
    }))
}

pub(crate) fn refresh_error(e: RefreshError) -> ApiError {
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
