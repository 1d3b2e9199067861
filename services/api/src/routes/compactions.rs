//! Compaction requests: a scheduler asks, sluice waits for the table's
//! write lease, runs the table's compaction job under it and checks the
//! result in Iceberg.

use crate::auth::Caller;
use crate::dto;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::job_dto::{
    CompactionBody, CompactionParams, CompactionQueueBody, CompactionsPage, RequestCompactionBody,
};
use crate::{parse_table, parse_user_table, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use sluice_core::{Millis, Permission};
use sluice_scheduler::ops;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request, list))
        .routes(routes!(get_compaction))
        .routes(routes!(queue))
}

/// The most pending compactions a queue listing (or a metrics scrape)
/// reads.
pub(crate) const QUEUE_LIMIT: u32 = 10_000;

fn parse_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| {
        ApiError::bad_request(
            "invalid_compaction_id",
            format!("`{raw}` is not a compaction id (a UUID)"),
        )
    })
}

/// Ask for the table to be compacted.
///
/// While one is pending (queued, waiting or running) the same one answers
/// (200). A new one (201) asks for the table's write lease at `not_before`
/// and waits behind readers (new readers may pass it until it has waited
/// the table's `max_compaction_deferral_seconds`). Once granted, sluice
/// starts the table's `compaction_job` with `--sluice-lease-id`,
/// `--sluice-token`, `--sluice-table`, `--sluice-base-snapshot-id` and
/// `--sluice-expire-older-than`, heartbeats the lease while the run lives,
/// and on success requires a `replace` or `overwrite` snapshot after the
/// base (carrying the lease's token as `sluice.lease-token`, if it carries
/// one); otherwise it is `failed` with `no_new_snapshot` or
/// `fence_mismatch`. The lease is released either way.
#[utoipa::path(post, path = "/v1/tables/{table}/compactions", tag = "tables",
    params(("table" = String, Path, description = "`namespace.table`")),
    request_body = RequestCompactionBody,
    responses(
        (status = 201, description = "Requested", body = CompactionBody),
        (status = 200, description = "One is pending already: that one", body = CompactionBody),
        (status = 404, description = "Unknown table (`table_not_found`)", body = ErrorBody),
        (status = 409, description = "The table names no defined compaction job (`no_compaction_job`)", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ))]
async fn request(
    State(app): State<AppState>,
    caller: Caller,
    Path(table): Path<String>,
    Json(body): Json<RequestCompactionBody>,
) -> Result<(StatusCode, axum::Json<CompactionBody>), ApiError> {
    let table = parse_user_table(&table)?;
    caller.require_on(Permission::RequestCompactions, &table)?;
    if body.requested_by.trim().is_empty() || body.requested_by.len() > 256 {
        return Err(ApiError::invalid(
            "requested_by must be 1 to 256 characters",
        ));
    }
    let not_before = body
        .not_before
        .as_deref()
        .map(|s| {
            Millis::parse_rfc3339(s).ok_or_else(|| {
                ApiError::invalid(format!("not_before `{s}` is not an RFC 3339 instant"))
            })
        })
        .transpose()?;
    let (c, created) = ops::request_compaction(
        &app.store,
        &table,
        body.requested_by,
        body.reason,
        not_before,
        caller.actor().as_deref(),
    )
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(c.into())))
}

// Its own operation id: `list` is the hydrations' (ids are unique in a spec).
#[utoipa::path(get, path = "/v1/tables/{table}/compactions", tag = "tables",
    operation_id = "list_compactions",
    params(("table" = String, Path, description = "`namespace.table`"), CompactionParams),
    responses(
        (status = 200, description = "The table's compactions, newest first", body = CompactionsPage),
        (status = 400, description = "Malformed table name, query or `before` id", body = ErrorBody),
        (status = 422, description = "`limit` out of range", body = ErrorBody),
    ))]
async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Path(table): Path<String>,
    Query(params): Query<CompactionParams>,
) -> Result<axum::Json<CompactionsPage>, ApiError> {
    let table = parse_table(&table)?;
    caller.require_on(Permission::ReadJobs, &table)?;
    let limit = dto::limit(params.limit)?;
    let before = params
        .before
        .as_deref()
        .filter(|b| !b.is_empty())
        .map(parse_id)
        .transpose()?;
    let found = app.store.compactions(&table, before, limit).await?;
    let next_before = (found.len() == limit as usize)
        .then(|| found.last().map(|c| c.id.to_string()))
        .flatten();
    Ok(axum::Json(CompactionsPage {
        compactions: found.into_iter().map(Into::into).collect(),
        next_before,
    }))
}

/// The compaction queue: every pending (queued, waiting or running)
/// compaction of the tables the caller may see, oldest first.
#[utoipa::path(get, path = "/v1/compactions", tag = "tables",
    params(QueueParams),
    responses(
        (status = 200, description = "Pending compactions, oldest first", body = CompactionQueueBody),
        (status = 400, description = "Malformed query", body = ErrorBody),
        (status = 422, description = "`limit` out of range", body = ErrorBody),
    ))]
async fn queue(
    State(app): State<AppState>,
    caller: Caller,
    Query(params): Query<QueueParams>,
) -> Result<axum::Json<CompactionQueueBody>, ApiError> {
    caller.require(Permission::ReadJobs)?;
    let limit = params.limit.map_or(Ok(QUEUE_LIMIT), |n| {
        dto::in_range("limit", n, 1, QUEUE_LIMIT)
    })?;
    let pending = app.store.active_compactions(QUEUE_LIMIT).await?;
    Ok(axum::Json(CompactionQueueBody {
        compactions: pending
            .into_iter()
            .map(|c| c.value)
            .filter(|c| caller.require_table(&c.table).is_ok())
            .take(limit as usize)
            .map(Into::into)
            .collect(),
    }))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueParams {
    /// The oldest this many pending compactions: 1 to 10000, default 10000.
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/tables/{table}/compactions/{id}", tag = "tables",
    params(("table" = String, Path, description = "`namespace.table`"),
           ("id" = String, Path, description = "The compaction's id")),
    responses(
        (status = 200, description = "The compaction", body = CompactionBody),
        (status = 400, description = "Malformed table name or compaction id", body = ErrorBody),
        (status = 404, description = "No such compaction of this table (`compaction_not_found`)", body = ErrorBody),
    ))]
async fn get_compaction(
    State(app): State<AppState>,
    caller: Caller,
    Path((table, id)): Path<(String, String)>,
) -> Result<axum::Json<CompactionBody>, ApiError> {
    let table = parse_table(&table)?;
    caller.require_on(Permission::ReadJobs, &table)?;
    let id = parse_id(&id)?;
    match app.store.compaction(id).await? {
        Some(c) if c.value.table == table => Ok(axum::Json(c.value.into())),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "compaction_not_found",
            format!("table `{table}` has no compaction {id}"),
        )),
    }
}
