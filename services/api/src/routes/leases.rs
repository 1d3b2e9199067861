//! Leases: acquire (with long-poll), read, heartbeat, release, revoke.

use crate::auth::Caller;
use crate::dto::{
    self, AcquireBody, HeartbeatBody, LeaseBody, ReleaseParams, RevokeBody, WaitParams,
};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::{parse_lease_id, parse_user_table, waiting, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use sluice_core::leases::AcquireRequest;
use sluice_core::{LeaseCommand, LeaseId, LeaseState, Permission, RuleError};
use std::time::Duration;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(acquire))
        .routes(routes!(get_lease, release))
        .routes(routes!(heartbeat))
        .routes(routes!(revoke))
}

/// Acquire a read or write lease on a table.
///
/// Answers 201 when granted. When the lease must wait it is queued; the
/// request long-polls up to `wait_seconds` and answers 202 with the
/// `lease_id` and queue `position` if still waiting (poll it with
/// `GET /v1/leases/{lease_id}?wait_seconds=N`). The same `idempotency_key`
/// returns the same lease.
#[utoipa::path(post, path = "/v1/tables/{table}/leases", tag = "leases",
    params(("table" = String, Path, description = "`namespace.table`")),
    request_body = AcquireBody,
    responses(
        (status = 201, description = "Granted", body = LeaseBody),
        (status = 202, description = "Queued, still waiting", body = LeaseBody),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 404, description = "Unknown table", body = ErrorBody),
        (status = 409, description = "The idempotency key names a different or ended lease", body = ErrorBody),
        (status = 429, description = "The table's queue is full, or too many long-polls are open", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ))]
async fn acquire(
    State(app): State<AppState>,
    caller: Caller,
    Path(table): Path<String>,
    Json(body): Json<AcquireBody>,
) -> Result<(StatusCode, axum::Json<LeaseBody>), ApiError> {
    let started = tokio::time::Instant::now();
    let table = parse_user_table(&table)?;
    caller.require_on(Permission::UseLeases, &table)?;
    let request = AcquireRequest {
        lease_id: LeaseId::new_v7(),
        mode: body.mode.into(),
        holder: dto::holder(body.holder)?,
        ttl_seconds: dto::in_range("ttl_seconds", body.ttl_seconds, 1, dto::MAX_TTL_SECONDS)?,
        idempotency_key: dto::idempotency_key(body.idempotency_key)?,
        purpose: dto::purpose(body.purpose)?,
        pin_snapshot_id: body.pin_snapshot_id,
        max_waiters: app.max_waiters_per_table,
    };
    let wait = wait_seconds(body.wait_seconds)?;
    // Refuse before acquiring: a lease must not be queued for a caller we
    // then cannot answer.
    let _permit = long_poll_permit(&app, wait)?;
    // Subscribe before the acquire commits, so that a grant right after it
    // cannot slip past the long-poll.
    let wakes = (wait > 0).then(|| app.store.hub().subscribe(&table));
    let mut view = waiting::execute_lease(
        &app.store,
        LeaseCommand::Acquire { table, request },
        caller.actor(),
    )
    .await?;
    if let Some(wakes) = wakes {
        if view.lease.state == LeaseState::Waiting {
            view =
                waiting::while_waiting(&app.store, view, wakes, Duration::from_secs(wait.into()))
                    .await?;
        }
    }
    match view.lease.state {
        LeaseState::Granted => {
            app.metrics
                .granted(view.lease.mode.as_str(), started.elapsed().as_secs_f64());
            Ok((StatusCode::CREATED, axum::Json(view.into())))
        }
        LeaseState::Waiting => Ok((StatusCode::ACCEPTED, axum::Json(view.into()))),
        ended => Err(RuleError::LeaseEnded {
            lease_id: view.lease.id,
            state: ended,
        }
        .into()),
    }
}

/// Read a lease; long-polls while it waits when `wait_seconds` is given.
///
/// An open long-poll counts as the waiter's heartbeat.
#[utoipa::path(get, path = "/v1/leases/{lease_id}", tag = "leases",
    params(("lease_id" = String, Path, description = "The lease id"), WaitParams),
    responses(
        (status = 200, description = "The lease, in any state", body = LeaseBody),
        (status = 400, description = "Malformed id or query", body = ErrorBody),
        (status = 404, description = "Unknown lease", body = ErrorBody),
        (status = 422, description = "wait_seconds out of range", body = ErrorBody),
        (status = 429, description = "Too many long-polls are open", body = ErrorBody),
    ))]
async fn get_lease(
    State(app): State<AppState>,
    caller: Caller,
    Path(lease_id): Path<String>,
    Query(params): Query<WaitParams>,
) -> Result<axum::Json<LeaseBody>, ApiError> {
    caller.require(Permission::ReadLeases)?;
    let id = parse_lease_id(&lease_id)?;
    let wait = wait_seconds(params.wait_seconds)?;
    let _permit = long_poll_permit(&app, wait)?;
    let Some(mut view) = app.store.lease(id).await? else {
        return Err(RuleError::LeaseNotFound(id).into());
    };
    caller.require_table(&view.lease.table)?;
    if view.lease.state == LeaseState::Waiting && wait > 0 {
        let wakes = app.store.hub().subscribe(&view.lease.table);
        view = waiting::keep_waiting(&app.store, id).await?;
        view = waiting::while_waiting(&app.store, view, wakes, Duration::from_secs(wait.into()))
            .await?;
    } else if view.stale {
        // Not swept yet: settle its table so the answer is the truth.
        view =
            waiting::execute_lease(&app.store, LeaseCommand::Lookup { lease_id: id }, None).await?;
    }
    Ok(axum::Json(view.into()))
}

/// Extend a lease's TTL from now (or a waiter's place in the queue).
///
/// 409 if the lease was lost (expired, revoked, released) or the token is
/// not the lease's.
#[utoipa::path(post, path = "/v1/leases/{lease_id}/heartbeat", tag = "leases",
    params(("lease_id" = String, Path, description = "The lease id")),
    request_body = HeartbeatBody,
    responses(
        (status = 200, description = "Extended", body = LeaseBody),
        (status = 400, description = "Malformed request, or a granted lease without its token", body = ErrorBody),
        (status = 404, description = "Unknown lease", body = ErrorBody),
        (status = 409, description = "Lease lost or stale token", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ))]
async fn heartbeat(
    State(app): State<AppState>,
    caller: Caller,
    Path(lease_id): Path<String>,
    Json(body): Json<HeartbeatBody>,
) -> Result<axum::Json<LeaseBody>, ApiError> {
    let id = parse_lease_id(&lease_id)?;
    authorize(&app, &caller, Permission::UseLeases, id).await?;
    let ttl_seconds = body
        .ttl_seconds
        .map(|t| dto::in_range("ttl_seconds", t, 1, dto::MAX_TTL_SECONDS))
        .transpose()?;
    let command = LeaseCommand::Heartbeat {
        lease_id: id,
        token: body.token,
        ttl_seconds,
    };
    Ok(axum::Json(
        waiting::execute_lease(&app.store, command, caller.actor())
            .await?
            .into(),
    ))
}

/// Release a granted lease (`token` required), or cancel a waiting one
/// (no token).
///
/// Repeating a release with the lease's own token answers 200 and changes
/// nothing; a stale token is refused with 409 and changes nothing.
#[utoipa::path(delete, path = "/v1/leases/{lease_id}", tag = "leases",
    params(("lease_id" = String, Path, description = "The lease id"), ReleaseParams),
    responses(
        (status = 200, description = "Released or cancelled", body = LeaseBody),
        (status = 400, description = "Malformed id, or a granted lease without token", body = ErrorBody),
        (status = 404, description = "Unknown lease", body = ErrorBody),
        (status = 409, description = "Stale token, or the lease expired or was revoked", body = ErrorBody),
    ))]
async fn release(
    State(app): State<AppState>,
    caller: Caller,
    Path(lease_id): Path<String>,
    Query(params): Query<ReleaseParams>,
) -> Result<axum::Json<LeaseBody>, ApiError> {
    let id = parse_lease_id(&lease_id)?;
    authorize(&app, &caller, Permission::UseLeases, id).await?;
    let command = LeaseCommand::Release {
        lease_id: id,
        token: params.token,
    };
    Ok(axum::Json(
        waiting::execute_lease(&app.store, command, caller.actor())
            .await?
            .into(),
    ))
}

/// Revoke a lease (operators): it ends at once, waiting or granted.
#[utoipa::path(post, path = "/v1/leases/{lease_id}/revoke", tag = "leases",
    params(("lease_id" = String, Path, description = "The lease id")),
    request_body = RevokeBody,
    responses(
        (status = 200, description = "Revoked (or already revoked)", body = LeaseBody),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 404, description = "Unknown lease", body = ErrorBody),
        (status = 409, description = "The lease already ended otherwise", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ))]
async fn revoke(
    State(app): State<AppState>,
    caller: Caller,
    Path(lease_id): Path<String>,
    Json(body): Json<RevokeBody>,
) -> Result<axum::Json<LeaseBody>, ApiError> {
    let id = parse_lease_id(&lease_id)?;
    authorize(&app, &caller, Permission::RevokeLeases, id).await?;
    let command = LeaseCommand::Revoke {
        lease_id: id,
        reason: dto::reason(body.reason)?,
    };
    Ok(axum::Json(
        waiting::execute_lease(&app.store, command, caller.actor())
            .await?
            .into(),
    ))
}

/// The role check, and for a scoped token the lease's table (one read).
async fn authorize(
    app: &AppState,
    caller: &Caller,
    permission: Permission,
    id: LeaseId,
) -> Result<(), ApiError> {
    caller.require(permission)?;
    if caller.scoped() {
        let view = app
            .store
            .lease(id)
            .await?
            .ok_or(RuleError::LeaseNotFound(id))?;
        caller.require_table(&view.lease.table)?;
    }
    Ok(())
}

/// A place among the open long-polls, when the call may wait.
pub(crate) fn long_poll_permit(
    app: &AppState,
    wait: u32,
) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ApiError> {
    if wait == 0 {
        return Ok(None);
    }
    app.long_polls
        .clone()
        .try_acquire_owned()
        .map(Some)
        .map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_long_polls",
                "too many long-polls are open on this server; retry shortly",
            )
        })
}

pub(crate) fn wait_seconds(value: Option<i64>) -> Result<u32, ApiError> {
    value.map_or(Ok(0), |w| {
        dto::in_range("wait_seconds", w, 0, dto::MAX_WAIT_SECONDS)
    })
}
