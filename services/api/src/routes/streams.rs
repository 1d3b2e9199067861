//! CDC streams: registration, batches (open, heartbeat, commit, fail) and
//! the bookmark with its history, rewind and reset.

use crate::auth::Caller;
use crate::dto;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::stream_dto::{
    BatchBody, BatchHeartbeatBody, BookmarkBody, CommitBody, CommitResultBody, FailBatchBody,
    HistoryPage, HistoryParams, OpenBatchBody, PutStreamBody, ResetBody, RewindBody, StreamBody,
    StreamsPage, VersionBody, VersionSummaryBody,
};
use crate::AppState;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sluice_core::leases::TableCommand;
use sluice_core::streams::RewindTo;
use sluice_core::streams::{BatchCommand, BatchReply, BookmarkCommand, PutStream};
use sluice_core::{BatchId, Bookmark, Millis, Permission, StreamName, TableName};
use utoipa_axum::{router::OpenApiRouter, routes};

/// A commit carries the whole load bookmark, which for a large full load
/// outgrows the default body limit.
pub const MAX_COMMIT_BYTES: usize = 2 * 1024 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    let commits = OpenApiRouter::new()
        .routes(routes!(commit_batch))
        .layer(DefaultBodyLimit::max(MAX_COMMIT_BYTES));
    OpenApiRouter::new()
        .routes(routes!(list_streams))
        .routes(routes!(put_stream, get_stream))
        .routes(routes!(get_bookmark))
        .routes(routes!(history))
        .routes(routes!(version))
        .routes(routes!(rewind))
        .routes(routes!(reset))
        .routes(routes!(open_batch))
        .routes(routes!(get_batch))
        .routes(routes!(heartbeat_batch))
        .routes(routes!(fail_batch))
        .merge(commits)
}

/// Register a stream (the Iceberg table it feeds, a description of its
/// source, an optional expected schema hash) or change its settings.
#[utoipa::path(put, path = "/v1/streams/{stream}", tag = "streams",
    params(("stream" = String, Path, description = "Stream name")),
    request_body = PutStreamBody,
    responses(
        (status = 201, description = "Registered at bookmark version 1 (phase `load`, nothing done)", body = StreamBody),
        (status = 200, description = "Settings changed", body = StreamBody),
        (status = 400, description = "Malformed request or stream name", body = ErrorBody),
        (status = 404, description = "The table is not registered", body = ErrorBody),
        (status = 409, description = "The stream feeds another table", body = ErrorBody),
    ))]
async fn put_stream(
    State(app): State<AppState>,
    caller: Caller,
    Path(stream): Path<String>,
    Json(body): Json<PutStreamBody>,
) -> Result<(StatusCode, axum::Json<StreamBody>), ApiError> {
    let stream = authorized(&app, &caller, Permission::ManageStreams, &stream).await?;
    let settings = body.settings()?;
    caller.require_table(&settings.table)?;
    // As leases do, a stream needs its table registered (404 naming it);
    // tables are never deleted, so the check cannot go stale.
    app.store
        .table(
            TableCommand::Sweep {
                table: settings.table.clone(),
            },
            None,
        )
        .await??;
    let reply = app
        .store
        .put_stream(PutStream { stream, settings }, caller.actor())
        .await??;
    let status = if reply.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(reply.state.into())))
}

/// A stream: its settings, bookmark and open batch.
#[utoipa::path(get, path = "/v1/streams/{stream}", tag = "streams",
    params(("stream" = String, Path, description = "Stream name")),
    responses(
        (status = 200, description = "The stream", body = StreamBody),
        (status = 400, description = "Malformed stream name", body = ErrorBody),
        (status = 404, description = "Unknown stream", body = ErrorBody),
    ))]
async fn get_stream(
    State(app): State<AppState>,
    caller: Caller,
    Path(stream): Path<String>,
) -> Result<axum::Json<StreamBody>, ApiError> {
    let stream = authorized(&app, &caller, Permission::ReadStreams, &stream).await?;
    let state = app
        .store
        .stream(&stream)
        .await?
        .ok_or(sluice_core::RuleError::StreamNotFound(stream))?;
    Ok(axum::Json(state.into()))
}

/// The registered streams, by name, a page at a time.
#[utoipa::path(get, path = "/v1/streams", tag = "streams",
    params(dto::PageParams),
    responses(
        (status = 200, description = "A page of streams", body = StreamsPage),
        (status = 400, description = "Malformed query", body = ErrorBody),
        (status = 422, description = "limit out of range", body = ErrorBody),
    ))]
async fn list_streams(
    State(app): State<AppState>,
    caller: Caller,
    Query(page): Query<dto::PageParams>,
) -> Result<axum::Json<StreamsPage>, ApiError> {
    caller.require(Permission::ReadStreams)?;
    let limit = dto::limit(page.limit)?;
    let after = dto::optional_text("after", page.after.filter(|a| !a.is_empty()), 1024)?;
    let streams = app
        .store
        .streams(after.as_deref(), limit, caller.scopes())
        .await?;
    let next_after = (streams.len() == limit as usize)
        .then(|| streams.last().map(|s| s.name.to_string()))
        .flatten();
    Ok(axum::Json(StreamsPage {
        streams: streams.into_iter().map(StreamBody::from).collect(),
        next_after,
    }))
}

/// Where the next batch resumes. The `ETag` is the version, for `If-Match`.
#[utoipa::path(get, path = "/v1/streams/{stream}/bookmark", tag = "streams",
    params(("stream" = String, Path, description = "Stream name")),
    responses(
        (status = 200, description = "The bookmark", body = BookmarkBody,
            headers(("ETag" = String, description = "The version, quoted"))),
        (status = 400, description = "Malformed stream name", body = ErrorBody),
        (status = 404, description = "Unknown stream", body = ErrorBody),
    ))]
async fn get_bookmark(
    State(app): State<AppState>,
    caller: Caller,
    Path(stream): Path<String>,
) -> Result<Response, ApiError> {
    let stream = authorized(&app, &caller, Permission::ReadStreams, &stream).await?;
    let state = app
        .store
        .stream(&stream)
        .await?
        .ok_or(sluice_core::RuleError::StreamNotFound(stream))?;
    Ok(bookmark_response(
        StatusCode::OK,
        &state.name,
        state.bookmark,
    ))
}

/// Every version of the bookmark, oldest first: who changed it, how (a
/// committed batch, a rewind, a reset) and why. Each lists its files done
/// by count only (GET the version for the list); a page ends at `limit`
/// versions or 1 MiB, whichever comes first.
#[utoipa::path(get, path = "/v1/streams/{stream}/bookmark/history", tag = "streams",
    params(("stream" = String, Path, description = "Stream name"), HistoryParams),
    responses(
        (status = 200, description = "A page of versions", body = HistoryPage),
        (status = 400, description = "Malformed stream name or query", body = ErrorBody),
        (status = 404, description = "Unknown stream", body = ErrorBody),
        (status = 422, description = "limit or after_version out of range", body = ErrorBody),
    ))]
async fn history(
    State(app): State<AppState>,
    caller: Caller,
    Path(stream): Path<String>,
    Query(params): Query<HistoryParams>,
) -> Result<axum::Json<HistoryPage>, ApiError> {
    let stream = authorized(&app, &caller, Permission::ReadStreams, &stream).await?;
    let limit = dto::limit(params.limit)?;
    let after = params.after_version.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid("after_version must not be negative"));
    }
    let summaries = app.store.history(&stream, after, limit).await?;
    if summaries.is_empty() && app.store.stream(&stream).await?.is_none() {
        return Err(sluice_core::RuleError::StreamNotFound(stream).into());
    }
    // More may follow when the store filled the page or the byte bound cut it.
    let mut more = summaries.len() == limit as usize;
    let mut versions = Vec::with_capacity(summaries.len());
    let mut bytes = 0;
    for summary in summaries {
        let body = VersionSummaryBody::from(summary);
        bytes += serde_json::to_vec(&body).map_or(0, |b| b.len());
        if bytes > MAX_HISTORY_PAGE_BYTES && !versions.is_empty() {
            more = true;
            break;
        }
        versions.push(body);
    }
    let next_after_version = more.then(|| versions.last().map(|v| v.version)).flatten();
    Ok(axum::Json(HistoryPage {
        versions,
        next_after_version,
    }))
}

/// A history page stops adding versions past this size.
const MAX_HISTORY_PAGE_BYTES: usize = 1024 * 1024;

/// One version of the bookmark, whole: its files done listed.
#[utoipa::path(get, path = "/v1/streams/{stream}/bookmark/history/{version}", tag = "streams",
    params(("stream" = String, Path, description = "Stream name"),
        ("version" = i64, Path, description = "The version")),
    responses(
        (status = 200, description = "The version", body = VersionBody),
        (status = 400, description = "Malformed stream name or version", body = ErrorBody),
        (status = 404, description = "Unknown stream or version", body = ErrorBody),
    ))]
async fn version(
    State(app): State<AppState>,
    caller: Caller,
    Path((stream, version)): Path<(String, i64)>,
) -> Result<axum::Json<VersionBody>, ApiError> {
    let stream = authorized(&app, &caller, Permission::ReadStreams, &stream).await?;
    match app.store.version(&stream, version).await? {
        Some(v) => Ok(axum::Json(v.into())),
        None if app.store.stream(&stream).await?.is_none() => {
            Err(sluice_core::RuleError::StreamNotFound(stream).into())
        }
        None => Err(sluice_core::RuleError::VersionNotFound(format!(
            "stream `{stream}` has no version {version}"
        ))
        .into()),
    }
}

/// Restore an earlier position as a new version (history is never
/// rewritten). Refused while a batch is open.
#[utoipa::path(post, path = "/v1/streams/{stream}/bookmark/rewind", tag = "streams",
    params(("stream" = String, Path, description = "Stream name"),
        ("If-Match" = Option<String>, Header, description = "Act only if the bookmark is at this version", nullable = false, pattern = r#"^[\t ]*(\*|(W/)?("[+-]?[0-9]+"|[+-]?[0-9]+))[\t ]*$"#)),
    request_body = RewindBody,
    responses(
        (status = 200, description = "The new version", body = BookmarkBody),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 404, description = "Unknown stream or version", body = ErrorBody),
        (status = 409, description = "A batch is open", body = ErrorBody),
        (status = 412, description = "The bookmark is not at the If-Match version", body = ErrorBody),
    ))]
async fn rewind(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(stream): Path<String>,
    Json(body): Json<RewindBody>,
) -> Result<Response, ApiError> {
    let stream = authorized(&app, &caller, Permission::RewindStreams, &stream).await?;
    let to = match (body.to_version, body.to_time) {
        (Some(v), None) if v >= 1 => RewindTo::Version(v),
        (Some(v), None) => {
            return Err(ApiError::invalid(format!(
                "to_version must be at least 1, got {v}"
            )))
        }
        (None, Some(t)) => RewindTo::Time(Millis::parse_rfc3339(&t).ok_or_else(|| {
            ApiError::invalid(format!("to_time `{t}` is not an RFC 3339 instant"))
        })?),
        _ => {
            return Err(ApiError::invalid(
                "give exactly one of to_version or to_time",
            ))
        }
    };
    let command = BookmarkCommand::Rewind {
        stream: stream.clone(),
        to,
        reason: dto::reason(body.reason)?,
        if_match: if_match(&headers)?,
    };
    Ok(bookmark_response(
        StatusCode::OK,
        &stream,
        execute_bookmark(&app, &caller, command).await?,
    ))
}

/// Return the stream to an empty full load (phase `load`, nothing done), as
/// a new version. Refused while a batch is open.
#[utoipa::path(post, path = "/v1/streams/{stream}/bookmark/reset", tag = "streams",
    params(("stream" = String, Path, description = "Stream name"),
        ("If-Match" = Option<String>, Header, description = "Act only if the bookmark is at this version", nullable = false, pattern = r#"^[\t ]*(\*|(W/)?("[+-]?[0-9]+"|[+-]?[0-9]+))[\t ]*$"#)),
    request_body = ResetBody,
    responses(
        (status = 200, description = "The new version", body = BookmarkBody),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 404, description = "Unknown stream", body = ErrorBody),
        (status = 409, description = "A batch is open", body = ErrorBody),
        (status = 412, description = "The bookmark is not at the If-Match version", body = ErrorBody),
    ))]
async fn reset(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(stream): Path<String>,
    Json(body): Json<ResetBody>,
) -> Result<Response, ApiError> {
    let stream = authorized(&app, &caller, Permission::RewindStreams, &stream).await?;
    let command = BookmarkCommand::Reset {
        stream: stream.clone(),
        reason: dto::reason(body.reason)?,
        if_match: if_match(&headers)?,
    };
    Ok(bookmark_response(
        StatusCode::OK,
        &stream,
        execute_bookmark(&app, &caller, command).await?,
    ))
}

/// Open a batch: the answer holds its fencing token and the bookmark to
/// resume from. One batch is open per stream at a time; an open batch whose
/// TTL ran out is failed by this call.
#[utoipa::path(post, path = "/v1/streams/{stream}/batches", tag = "streams",
    params(("stream" = String, Path, description = "Stream name"),
        ("If-Match" = Option<String>, Header, description = "Open only if the bookmark is at this version", nullable = false, pattern = r#"^[\t ]*(\*|(W/)?("[+-]?[0-9]+"|[+-]?[0-9]+))[\t ]*$"#)),
    request_body = OpenBatchBody,
    responses(
        (status = 201, description = "Opened", body = BatchBody),
        (status = 200, description = "This run's batch was already open: the same batch", body = BatchBody),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 404, description = "Unknown stream", body = ErrorBody),
        (status = 409, description = "Another run's batch is open (the message names it)", body = ErrorBody),
        (status = 412, description = "The bookmark is not at the If-Match version", body = ErrorBody),
    ))]
async fn open_batch(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(stream): Path<String>,
    Json(body): Json<OpenBatchBody>,
) -> Result<(StatusCode, axum::Json<BatchBody>), ApiError> {
    let stream = authorized(&app, &caller, Permission::UseBatches, &stream).await?;
    let (run_id, ttl_seconds) = body.parse()?;
    let command = BatchCommand::Open {
        stream,
        batch_id: BatchId::new_v7(),
        run_id,
        ttl_seconds,
        if_match: if_match(&headers)?,
    };
    let (batch, replayed) = batch_reply(execute(&app, &caller, command).await?);
    let status = if replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, axum::Json(batch)))
}

/// A batch, open or ended.
#[utoipa::path(get, path = "/v1/streams/{stream}/batches/{batch_id}", tag = "streams",
    params(("stream" = String, Path, description = "Stream name"),
        ("batch_id" = String, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "The batch", body = BatchBody),
        (status = 400, description = "Malformed stream name or batch id", body = ErrorBody),
        (status = 404, description = "Unknown batch", body = ErrorBody),
    ))]
async fn get_batch(
    State(app): State<AppState>,
    caller: Caller,
    Path((stream, batch_id)): Path<(String, String)>,
) -> Result<axum::Json<BatchBody>, ApiError> {
    let stream = authorized(&app, &caller, Permission::ReadStreams, &stream).await?;
    let id = parse_batch_id(&batch_id)?;
    let batch = app
        .store
        .batch(&stream, id)
        .await?
        .ok_or(sluice_core::RuleError::BatchNotFound(id))?;
    Ok(axum::Json(BatchBody::new(batch, None)))
}

/// Keep an open batch alive for another TTL.
#[utoipa::path(post, path = "/v1/streams/{stream}/batches/{batch_id}/heartbeat", tag = "streams",
    params(("stream" = String, Path, description = "Stream name"),
        ("batch_id" = String, Path, description = "The batch's id")),
    request_body = BatchHeartbeatBody,
    responses(
        (status = 200, description = "The batch, with its new expiry", body = BatchBody),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 404, description = "Unknown stream or batch", body = ErrorBody),
        (status = 409, description = "Stale token, or the batch has ended or expired", body = ErrorBody),
    ))]
async fn heartbeat_batch(
    State(app): State<AppState>,
    caller: Caller,
    Path((stream, batch_id)): Path<(String, String)>,
    Json(body): Json<BatchHeartbeatBody>,
) -> Result<axum::Json<BatchBody>, ApiError> {
    let stream = authorized(&app, &caller, Permission::UseBatches, &stream).await?;
    let command = BatchCommand::Heartbeat {
        stream,
        batch_id: parse_batch_id(&batch_id)?,
        token: body.token,
        ttl_seconds: body.ttl()?,
    };
    Ok(axum::Json(
        batch_reply(execute(&app, &caller, command).await?).0,
    ))
}

/// Commit a batch: the new bookmark (in the section of the stream's
/// phase), the rows it merged, the snapshot it produced. `load_complete`
/// moves the stream to phase `delta` in the same version. A retried commit
/// of a committed batch answers the same result.
#[utoipa::path(post, path = "/v1/streams/{stream}/batches/{batch_id}/commit", tag = "streams",
    params(("stream" = String, Path, description = "Stream name"),
        ("batch_id" = String, Path, description = "The batch's id"),
        ("If-Match" = Option<String>, Header, description = "Commit only if the bookmark is at this version", nullable = false, pattern = r#"^[\t ]*(\*|(W/)?("[+-]?[0-9]+"|[+-]?[0-9]+))[\t ]*$"#)),
    request_body = CommitBody,
    responses(
        (status = 200, description = "Committed: the batch and the new bookmark version", body = CommitResultBody),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 404, description = "Unknown stream or batch", body = ErrorBody),
        (status = 409, description = "Stale token; the batch ended or expired; a schema, phase or regression conflict", body = ErrorBody),
        (status = 412, description = "The bookmark is not at the If-Match version", body = ErrorBody),
    ))]
async fn commit_batch(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((stream, batch_id)): Path<(String, String)>,
    Json(body): Json<CommitBody>,
) -> Result<Response, ApiError> {
    let stream = authorized(&app, &caller, Permission::UseBatches, &stream).await?;
    let command = BatchCommand::Commit {
        stream,
        batch_id: parse_batch_id(&batch_id)?,
        token: body.token,
        commit: body.parse()?,
        if_match: if_match(&headers)?,
    };
    let BatchReply {
        batch, bookmark, ..
    } = execute(&app, &caller, command).await?;
    // A committed batch records the version it produced.
    let bookmark = bookmark.ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the commit answered no bookmark",
        )
    })?;
    let stream = batch.stream.clone();
    // A snapshot the log does not hold yet: refresh the table soon.
    if let Some(snapshot) = batch.snapshot_id {
        if let Some(table) = stream_table(&app, &stream).await? {
            app.nudges.saw(table, snapshot);
        }
    }
    let body = CommitResultBody {
        batch: BatchBody::new(batch, None),
        bookmark: BookmarkBody::new(stream.as_str(), bookmark.clone()),
    };
    Ok(with_etag(axum::Json(body).into_response(), &bookmark))
}

/// Give up a batch: the bookmark stays where it was.
#[utoipa::path(post, path = "/v1/streams/{stream}/batches/{batch_id}/fail", tag = "streams",
    params(("stream" = String, Path, description = "Stream name"),
        ("batch_id" = String, Path, description = "The batch's id")),
    request_body = FailBatchBody,
    responses(
        (status = 200, description = "Failed (also when it already was)", body = BatchBody),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 404, description = "Unknown stream or batch", body = ErrorBody),
        (status = 409, description = "Stale token, or the batch is committed", body = ErrorBody),
    ))]
async fn fail_batch(
    State(app): State<AppState>,
    caller: Caller,
    Path((stream, batch_id)): Path<(String, String)>,
    Json(body): Json<FailBatchBody>,
) -> Result<axum::Json<BatchBody>, ApiError> {
    let stream = authorized(&app, &caller, Permission::UseBatches, &stream).await?;
    let command = BatchCommand::Fail {
        stream,
        batch_id: parse_batch_id(&batch_id)?,
        token: body.token,
        reason: dto::optional_text("reason", body.reason, 1024)?,
    };
    Ok(axum::Json(
        batch_reply(execute(&app, &caller, command).await?).0,
    ))
}

async fn execute(
    app: &AppState,
    caller: &Caller,
    command: BatchCommand,
) -> Result<BatchReply, ApiError> {
    Ok(app.store.batch_command(command, caller.actor()).await??)
}

async fn execute_bookmark(
    app: &AppState,
    caller: &Caller,
    command: BookmarkCommand,
) -> Result<Bookmark, ApiError> {
    Ok(app
        .store
        .bookmark_command(command, caller.actor())
        .await??)
}

fn parse_stream(raw: &str) -> Result<StreamName, ApiError> {
    StreamName::parse(raw).map_err(|e| ApiError::bad_request("invalid_stream_name", e.0))
}

/// The stream named in a path, once the caller may act on it: the role
/// grants `permission`, and both the stream and the table it feeds are in
/// the token's scopes (a stream in scope must not open a door to a table
/// that is not). An unknown stream passes, to be answered 404 by the call.
pub(crate) async fn authorized(
    app: &AppState,
    caller: &Caller,
    permission: Permission,
    raw: &str,
) -> Result<StreamName, ApiError> {
    let stream = parse_stream(raw)?;
    caller.require_stream(permission, &stream)?;
    if caller.scopes().is_empty() {
        return Ok(stream);
    }
    if let Some(table) = stream_table(app, &stream).await? {
        caller.require_table(&table)?;
    }
    Ok(stream)
}

/// The table a registered stream feeds (it never changes, so it is read
/// once per process).
async fn stream_table(app: &AppState, stream: &StreamName) -> Result<Option<TableName>, ApiError> {
    let known = app
        .stream_tables
        .lock()
        .expect("not poisoned")
        .get(stream)
        .cloned();
    Ok(match known {
        Some(table) => Some(table),
        None => app.store.stream(stream).await?.map(|state| {
            let table = state.settings.table;
            (app.stream_tables.lock().expect("not poisoned")).insert(stream.clone(), table.clone());
            table
        }),
    })
}

fn parse_batch_id(raw: &str) -> Result<BatchId, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_batch_id",
            format!("`{raw}` is not a batch id (a UUID)"),
        )
    })
}

/// `If-Match: "7"` (or `7`, or `W/"7"`): the bookmark version the caller
/// expects; `*` or no header: any.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::bad_request(
            "invalid_if_match",
            "If-Match must be a bookmark version such as \"7\", or *",
        )
    };
    let raw = value.to_str().map_err(|_| invalid())?.trim();
    if raw == "*" {
        return Ok(None);
    }
    let raw = raw.strip_prefix("W/").unwrap_or(raw);
    let raw = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(raw);
    raw.parse().map(Some).map_err(|_| invalid())
}

fn with_etag(mut response: Response, bookmark: &Bookmark) -> Response {
    if let Ok(value) = HeaderValue::from_str(&format!("\"{}\"", bookmark.version)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

fn bookmark_response(status: StatusCode, stream: &StreamName, bookmark: Bookmark) -> Response {
    let body = BookmarkBody::new(stream.as_str(), bookmark.clone());
    with_etag((status, axum::Json(body)).into_response(), &bookmark)
}

/// A batch answer, and whether it was a replay.
fn batch_reply(reply: BatchReply) -> (BatchBody, bool) {
    (BatchBody::new(reply.batch, reply.bookmark), reply.replayed)
}
