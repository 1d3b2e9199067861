//! Hydrations: create (acquiring the read lease, with long-poll), attach a
//! run as a session, report progress under its token, detach, read, list,
//! cancel.

use crate::auth::Caller;
use crate::dto::{self, LeaseBody};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::hydration_dto::{
    AttachBody, CancelBody, CreateHydrationBody, HydrationBody, HydrationParams, HydrationsPage,
    ProgressBody, SessionTokenBody,
};
use crate::routes::containers::{not_found, parse_name};
use crate::routes::leases::{long_poll_permit, wait_seconds};
use crate::routes::snapshots::refresh_error;
use crate::{parse_table, waiting, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use sluice_core::containers::ContainerName;
use sluice_core::hydrations::{
    rules, Attach, Hydration, HydrationId, HydrationState, LogView, NewHydration, ProgressReport,
    LEASE_PURPOSE,
};
use sluice_core::leases::AcquireRequest;
use sluice_core::snapshots::Cause;
use sluice_core::{LeaseId, LeaseState, Mode, Permission, RuleError, TableName};
use sluice_store::{HydrationCommand, HydrationQuery, HydrationReply, LeaseView};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get_hydration))
        .routes(routes!(attach))
        .routes(routes!(heartbeat))
        .routes(routes!(detach))
        .routes(routes!(progress))
        .routes(routes!(cancel))
}

const DEFAULT_LEASE_TTL_SECONDS: i64 = 600;
const DEFAULT_SESSION_TTL_SECONDS: i64 = 600;

/// A run attaching: its id and its session's TTL, checked.
fn run(run_id: String, ttl_seconds: Option<i64>) -> Result<Attach, ApiError> {
    Ok(Attach {
        run_id: dto::identity_text("run_id", run_id, dto::MAX_SHORT_TEXT)?,
        ttl_seconds: dto::in_range(
            "ttl_seconds",
            ttl_seconds.unwrap_or(DEFAULT_SESSION_TTL_SECONDS),
            1,
            dto::MAX_TTL_SECONDS,
        )?,
    })
}

fn session_token(token: i64) -> Result<u64, ApiError> {
    u64::try_from(token)
        .ok()
        .filter(|t| *t > 0)
        .ok_or_else(|| ApiError::invalid("token must be a session's token (1 or more)"))
}

fn parse_id(raw: &str) -> Result<HydrationId, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_hydration_id",
            format!("`{raw}` is not a hydration id (a UUID)"),
        )
    })
}

/// Create a hydration and acquire its read lease.
///
/// Answers 201 with the hydration and its lease, granted or still waiting
/// (the request long-polls up to `wait_seconds`; follow a waiting lease with
/// `GET /v1/leases/{lease_id}?wait_seconds=N`). The lease pins
/// `pin_snapshot_id` (default: the table's current snapshot) and is held
/// through the first hydration: sluice releases it when the copy first goes
/// live, and the hydration keeps a pin of its own from then on. With
/// `run_id` the creating run is attached in the same call (`session`);
/// each later run attaches with `POST /v1/hydrations/{id}/attach`. The
/// same `idempotency_key` answers the same hydration.
#[utoipa::path(post, path = "/v1/hydrations", tag = "hydrations",
    request_body = CreateHydrationBody,
    responses(
        (status = 201, description = "Created; its lease granted or waiting", body = HydrationBody),
        (status = 200, description = "The same idempotency key: the hydration it created", body = HydrationBody),
        (status = 400, description = "Malformed request, table or container name", body = ErrorBody),
        (status = 403, description = "The table, or a view it names, is outside the token's scopes (`out_of_scope`)", body = ErrorBody),
        (status = 404, description = "Unknown table (`table_not_found`) or container (`container_not_found`)", body = ErrorBody),
        (status = 409, description = "The idempotency key names another lease", body = ErrorBody),
        (status = 422, description = "Invalid field, or a `pin_snapshot_id` the table does not have (`snapshot_not_found`)", body = ErrorBody),
        (status = 429, description = "The table's queue is full, or too many long-polls are open", body = ErrorBody),
        (status = 503, description = "The catalog could not be read for a pin it may have (`catalog_unavailable`)", body = ErrorBody),
    ))]
async fn create(
    State(app): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateHydrationBody>,
) -> Result<(StatusCode, axum::Json<HydrationBody>), ApiError> {
    let table = crate::parse_user_table(&body.table)?;
    caller.require_on(Permission::RunHydrations, &table)?;
    let container = parse_name(&body.container)?;
    let id = LeaseId::new_v7();
    let new = NewHydration {
        id,
        table: table.clone(),
        container: container.clone(),
        target: body.target,
        views: body.views,
        columns: body.columns,
        lag_threshold_snapshots: body.lag_threshold_snapshots.map_or(Ok(0), |n| {
            dto::in_range("lag_threshold_snapshots", n, 0, 1_000_000)
        })?,
    };
    rules::check_new(&new)?;
    let ttl = dto::in_range(
        "lease_ttl_seconds",
        body.lease_ttl_seconds.unwrap_or(DEFAULT_LEASE_TTL_SECONDS),
        1,
        dto::MAX_TTL_SECONDS,
    )?;
    let holder = dto::holder(body.holder.unwrap_or_else(|| LEASE_PURPOSE.to_owned()))?;
    let attach = body
        .run_id
        .map(|r| run(r, body.session_ttl_seconds))
        .transpose()?;
    let idempotency_key = dto::idempotency_key(body.idempotency_key)?;
    let wait = wait_seconds(body.wait_seconds)?;
    let found = app
        .store
        .container(&container)
        .await?
        .ok_or_else(not_found(&container))?;
    for (what, name) in
        std::iter::once(("target", &new.target)).chain(new.views.iter().map(|v| ("view", v)))
    {
        found.check_place(what, name).map_err(|e| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "schema_not_allowed", e.0)
        })?;
    }
    if app.store.table_catalog(&table).await?.is_none() {
        return Err(RuleError::TableNotFound(table).into());
    }
    // A view belongs to the scope of the table it is fed from: a hydration
    // may name views that are free, or fed from (or promised to, by a
    // hydration not yet finished) tables its caller sees.
    // Every state but the final ones promises the views to the table.
    let unfinished: Vec<HydrationState> = HydrationState::ALL
        .into_iter()
        .filter(|s| !s.is_final())
        .collect();
    require_views(&app, &caller, &new.views, &container, &table, &unfinished).await?;
    let log = log_for(
        &app,
        &table,
        body.pin_snapshot_id,
        caller.actor().as_deref(),
    )
    .await?;
    rules::check_pin(&log, &table, body.pin_snapshot_id)?;
    let lease = AcquireRequest {
        lease_id: id,
        mode: Mode::Read,
        holder,
        ttl_seconds: ttl,
        idempotency_key,
        purpose: Some(LEASE_PURPOSE.to_owned()),
        pin_snapshot_id: body.pin_snapshot_id.or(log.current),
        max_waiters: app.max_waiters_per_table,
    };
    let _permit = long_poll_permit(&app, wait)?;
    let wakes = (wait > 0).then(|| app.store.hub().subscribe(&table));
    let reply = app
        .store
        .hydration_command(
            HydrationCommand::Create {
                new,
                lease,
                log: Arc::new(log),
                attach,
            },
            caller.actor(),
        )
        .await??;
    let status = if reply.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let HydrationReply {
        hydration, lease, ..
    } = reply;
    let lease = lease.ok_or(RuleError::LeaseNotFound(hydration.id))?;
    let mut view = LeaseView {
        lease: lease.lease,
        position: lease.position,
        stale: false,
    };
    if let Some(wakes) = wakes {
        if view.lease.state == LeaseState::Waiting {
            view =
                waiting::while_waiting(&app.store, view, wakes, Duration::from_secs(wait.into()))
                    .await?;
        }
    }
    Ok((
        status,
        axum::Json(HydrationBody::new(
            hydration,
            Some(view.into()),
            sluice_store::system_now(),
        )),
    ))
}

/// Report a hydration's progress in the attached session.
///
/// Fenced by the session's token and held by the principal that attached.
/// Moves the pin to `snapshot_id` and recomputes the lag from the table's
/// snapshot log (refreshed from the catalog first when it does not hold
/// `snapshot_id` yet). In phase `catching_up`, a hydration at most
/// `lag_threshold_snapshots` behind becomes `live` (the first time, sluice
/// releases its read lease in the same transaction), one further behind
/// after that `lagging`; one whose applied snapshot was expired from the
/// table becomes `stale`. A `replace` snapshot (a compaction) may be
/// reported as applied without copying anything.
#[utoipa::path(post, path = "/v1/hydrations/{id}/progress", tag = "hydrations",
    params(("id" = String, Path, description = "The hydration id (also its lease's)")),
    request_body = ProgressBody,
    responses(
        (status = 200, description = "Recorded", body = HydrationBody),
        (status = 400, description = "Malformed request or id", body = ErrorBody),
        (status = 403, description = "Not the principal that attached the session (`not_owner`), or a view outside the token's scopes (`out_of_scope`)", body = ErrorBody),
        (status = 404, description = "Unknown hydration", body = ErrorBody),
        (status = 409, description = "The session is not attached (`session_stale`), the read lease ended (`lease_expired`, `lease_revoked`...), or the hydration ended (`hydration_ended`, `hydration_stale`)", body = ErrorBody),
        (status = 422, description = "Invalid field, a phase or snapshot going back, or a snapshot the table does not have (`snapshot_not_found`)", body = ErrorBody),
        (status = 503, description = "The catalog could not be read (`catalog_unavailable`)", body = ErrorBody),
    ))]
async fn progress(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<ProgressBody>,
) -> Result<axum::Json<HydrationBody>, ApiError> {
    let id = parse_id(&id)?;
    caller.require(Permission::RunHydrations)?;
    let rows = |field: &str, v: Option<i64>| {
        v.map(|n| {
            u64::try_from(n).map_err(|_| ApiError::invalid(format!("{field} cannot be negative")))
        })
        .transpose()
    };
    let report = ProgressReport {
        token: session_token(body.token)?,
        phase: body.phase.into(),
        snapshot_id: body.snapshot_id,
        rows_copied: rows("rows_copied", body.rows_copied)?,
        rows_total: rows("rows_total", body.rows_total)?,
    };
    let h = found(&app, &caller, id).await?;
    // A run whose session is over is told so before any catalog is read
    // for it (the batch checks again).
    rules::check_session(&h, report.token, sluice_store::system_now())?;
    if !h.state.is_mappable() {
        // Two hydrations created while a view was free: the first to go
        // live takes it, and the other may then map it only if its caller
        // sees the table the view is fed from.
        require_views(
            &app,
            &caller,
            &h.views,
            &h.container,
            &h.table,
            &sluice_store::MAPPED,
        )
        .await?;
    }
    let log = log_for(
        &app,
        &h.table,
        Some(body.snapshot_id),
        caller.actor().as_deref(),
    )
    .await?;
    let reply = app
        .store
        .hydration_command(
            HydrationCommand::Progress {
                id,
                table: h.table.clone(),
                report,
                log: Arc::new(log),
            },
            caller.actor(),
        )
        .await??;
    Ok(axum::Json(answer(reply)))
}

/// Attach a run to a hydration: a session with its own token and TTL.
///
/// The same `run_id` again answers its session (renewed) while it is
/// attached; another run is refused (409 `session_held`, naming the run
/// attached and until when) until that session detaches or its TTL has
/// run out. In the first hydration, the session keeps the read lease alive.
#[utoipa::path(post, path = "/v1/hydrations/{id}/attach", tag = "hydrations", operation_id = "attach_hydration",
    params(("id" = String, Path, description = "The hydration id")),
    request_body = AttachBody,
    responses(
        (status = 200, description = "Attached: `session` carries the token", body = HydrationBody),
        (status = 400, description = "Malformed request or id", body = ErrorBody),
        (status = 403, description = "Its table is outside the token's scopes, or the same run id was attached by another principal (`not_owner`)", body = ErrorBody),
        (status = 404, description = "Unknown hydration", body = ErrorBody),
        (status = 409, description = "Another run is attached (`session_held`), the read lease ended, or the hydration ended (`hydration_ended`, `hydration_stale`)", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ))]
async fn attach(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<AttachBody>,
) -> Result<axum::Json<HydrationBody>, ApiError> {
    let run = run(body.run_id, body.ttl_seconds)?;
    session_command(&app, &caller, &id, |id, table| HydrationCommand::Attach {
        id,
        table,
        run,
    })
    .await
}

/// Renew the attached session's TTL (and, in the first hydration, the read
/// lease's).
#[utoipa::path(post, path = "/v1/hydrations/{id}/heartbeat", tag = "hydrations", operation_id = "heartbeat_hydration",
    params(("id" = String, Path, description = "The hydration id")),
    request_body = SessionTokenBody,
    responses(
        (status = 200, description = "Renewed", body = HydrationBody),
        (status = 400, description = "Malformed request or id", body = ErrorBody),
        (status = 403, description = "Not the principal that attached the session (`not_owner`)", body = ErrorBody),
        (status = 404, description = "Unknown hydration", body = ErrorBody),
        (status = 409, description = "The session is not attached (`session_stale`), the read lease ended, or the hydration ended", body = ErrorBody),
        (status = 422, description = "Invalid token", body = ErrorBody),
    ))]
async fn heartbeat(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<SessionTokenBody>,
) -> Result<axum::Json<HydrationBody>, ApiError> {
    let token = session_token(body.token)?;
    session_command(&app, &caller, &id, |id, table| {
        HydrationCommand::Heartbeat { id, table, token }
    })
    .await
}

/// Detach the attached run: the next run may attach at once. A live copy
/// stays mapped and its lag keeps moving. Detaching a session that is gone
/// already answers the same.
#[utoipa::path(post, path = "/v1/hydrations/{id}/detach", tag = "hydrations", operation_id = "detach_hydration",
    params(("id" = String, Path, description = "The hydration id")),
    request_body = SessionTokenBody,
    responses(
        (status = 200, description = "Detached", body = HydrationBody),
        (status = 400, description = "Malformed request or id", body = ErrorBody),
        (status = 403, description = "Not the principal that attached the session (`not_owner`)", body = ErrorBody),
        (status = 404, description = "Unknown hydration", body = ErrorBody),
        (status = 409, description = "A token no session of it had (`session_stale`)", body = ErrorBody),
        (status = 422, description = "Invalid token", body = ErrorBody),
    ))]
async fn detach(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<SessionTokenBody>,
) -> Result<axum::Json<HydrationBody>, ApiError> {
    let token = session_token(body.token)?;
    session_command(&app, &caller, &id, |id, table| HydrationCommand::Detach {
        id,
        table,
        token,
    })
    .await
}

/// A session command on hydration `raw_id` (attach, heartbeat, detach), for
/// a caller who runs hydrations and sees its table.
async fn session_command(
    app: &AppState,
    caller: &Caller,
    raw_id: &str,
    command: impl FnOnce(HydrationId, TableName) -> HydrationCommand,
) -> Result<axum::Json<HydrationBody>, ApiError> {
    let id = parse_id(raw_id)?;
    caller.require(Permission::RunHydrations)?;
    let h = found(app, caller, id).await?;
    let reply = app
        .store
        .hydration_command(command(id, h.table), caller.actor())
        .await??;
    Ok(axum::Json(answer(reply)))
}

/// Cancel a hydration: it ends `cancelled`, and its read lease, if it still
/// holds one, is ended.
///
/// Its creator may cancel it; operators and admins cancel anyone's.
#[utoipa::path(post, path = "/v1/hydrations/{id}/cancel", tag = "hydrations",
    params(("id" = String, Path, description = "The hydration id")),
    request_body = CancelBody,
    responses(
        (status = 200, description = "Cancelled", body = HydrationBody),
        (status = 400, description = "Malformed request or id", body = ErrorBody),
        (status = 403, description = "Neither its creator nor an operator", body = ErrorBody),
        (status = 404, description = "Unknown hydration", body = ErrorBody),
        (status = 409, description = "It has ended already (`hydration_ended`, `hydration_stale`)", body = ErrorBody),
        (status = 422, description = "Invalid reason", body = ErrorBody),
    ))]
async fn cancel(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<CancelBody>,
) -> Result<axum::Json<HydrationBody>, ApiError> {
    let id = parse_id(&id)?;
    let h = found(&app, &caller, id).await?;
    let own = h.principal.is_some() && h.principal == caller.actor();
    if !(own && caller.require(Permission::RunHydrations).is_ok()) {
        caller.require(Permission::CancelHydrations)?;
    }
    let reason = body
        .reason
        .map(dto::reason)
        .transpose()?
        .unwrap_or_else(|| "cancelled by its caller".to_owned());
    let reply = app
        .store
        .hydration_command(
            HydrationCommand::Cancel {
                id,
                table: h.table,
                reason,
            },
            caller.actor(),
        )
        .await??;
    Ok(axum::Json(answer(reply)))
}

/// A hydration with its progress and lag (answered from the store).
#[utoipa::path(get, path = "/v1/hydrations/{id}", tag = "hydrations",
    params(("id" = String, Path, description = "The hydration id")),
    responses(
        (status = 200, description = "The hydration", body = HydrationBody),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 403, description = "Its table is outside the token's scopes", body = ErrorBody),
        (status = 404, description = "Unknown hydration", body = ErrorBody),
    ))]
async fn get_hydration(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<HydrationBody>, ApiError> {
    let id = parse_id(&id)?;
    caller.require(Permission::ReadHydrations)?;
    let h = found(&app, &caller, id).await?;
    let remap = remap_status(&app, &h).await?;
    let pin_tag = app.store.pin_tag_status(h.id).await?;
    let log = app.store.log_freshness(&h.table).await?;
    let now = sluice_store::system_now();
    Ok(axum::Json(
        HydrationBody::new(h, None, now)
            .with_remap(remap)
            .with_pin_tag(pin_tag)
            .with_log(log, now),
    ))
}

/// How switching a hydration's views went; only one that went live with
/// views asked for it.
async fn remap_status(
    app: &AppState,
    h: &Hydration,
) -> Result<Option<sluice_core::outbox::IntentStatus>, ApiError> {
    if h.views.is_empty() || !h.state.is_mappable() {
        return Ok(None);
    }
    Ok(app.store.remap_status(h.id).await?)
}

/// Hydrations by id (creation order), filtered, a page at a time, with
/// their lag and, for those that went live with views, how switching the
/// views went (one read for the page): no catalog call.
#[utoipa::path(get, path = "/v1/hydrations", tag = "hydrations",
    params(HydrationParams),
    responses(
        (status = 200, description = "A page of hydrations", body = HydrationsPage),
        (status = 400, description = "Malformed query, table or container name", body = ErrorBody),
        (status = 422, description = "Unknown state, or limit out of range", body = ErrorBody),
    ))]
async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Query(params): Query<HydrationParams>,
) -> Result<axum::Json<HydrationsPage>, ApiError> {
    caller.require(Permission::ReadHydrations)?;
    let limit = dto::limit(params.limit)?;
    let state = params
        .state
        .map(|s| {
            HydrationState::parse(&s).ok_or_else(|| {
                ApiError::invalid(format!(
                    "state must be one of {}",
                    HydrationState::ALL.map(|s| s.as_str()).join(", ")
                ))
            })
        })
        .transpose()?;
    let table = params.table.as_deref().map(parse_table).transpose()?;
    let container = params.container.as_deref().map(parse_name).transpose()?;
    let after = params
        .after
        .filter(|a| !a.is_empty())
        .map(|a| parse_id(&a))
        .transpose()?;
    let query = HydrationQuery {
        after,
        state,
        table,
        container,
        limit,
        scopes: caller.scopes().to_vec(),
    };
    let found = app.store.hydrations(&query).await?;
    let next_after = (found.len() == limit as usize)
        .then(|| found.last().map(|h| h.id.to_string()))
        .flatten();
    let now = sluice_store::system_now();
    // One read for the page's remap statuses, not one per copy.
    let asked: Vec<HydrationId> = found
        .iter()
        .filter(|h| !h.views.is_empty() && h.state.is_mappable())
        .map(|h| h.id)
        .collect();
    let mut remaps = app.store.remap_statuses(&asked).await?;
    // Each table's log freshness once for the page.
    let mut logs = HashMap::new();
    for h in &found {
        if !logs.contains_key(&h.table) {
            logs.insert(h.table.clone(), app.store.log_freshness(&h.table).await?);
        }
    }
    let hydrations = found
        .into_iter()
        .map(|h| {
            let remap = remaps.remove(&h.id);
            let log = logs.get(&h.table).copied().flatten();
            HydrationBody::new(h, None, now)
                .with_remap(remap)
                .with_log(log, now)
        })
        .collect();
    Ok(axum::Json(HydrationsPage {
        hydrations,
        next_after,
    }))
}

/// Refuse (403 `out_of_scope`) views fed from, or promised by hydrations
/// in `states` to, a table other than `table` that `caller` does not see.
async fn require_views(
    app: &AppState,
    caller: &Caller,
    views: &[String],
    container: &ContainerName,
    table: &TableName,
    states: &[HydrationState],
) -> Result<(), ApiError> {
    if !caller.scoped() {
        return Ok(());
    }
    for name in views {
        for claimed in app.store.view_claims(container, name, states).await? {
            if &claimed != table {
                caller.require_seen(
                    Some(&claimed),
                    &format!("view `{name}` of container `{container}`"),
                )?;
            }
        }
    }
    Ok(())
}

/// The hydration, if it exists and its table is in the caller's scopes.
async fn found(app: &AppState, caller: &Caller, id: HydrationId) -> Result<Hydration, ApiError> {
    let h = app
        .store
        .hydration(id)
        .await?
        .ok_or(RuleError::HydrationNotFound(id))?;
    caller.require_table(&h.table)?;
    Ok(h)
}

/// The table's snapshot log, refreshed from its catalog first when it was
/// never read or does not hold `needed` yet. Without any catalog to read
/// (none configured), the log is what it is.
async fn log_for(
    app: &AppState,
    table: &TableName,
    needed: Option<i64>,
    actor: Option<&str>,
) -> Result<LogView, ApiError> {
    let log = app.store.log_view(table).await?;
    let never_read = app.store.catalog_state(table).await?.is_none();
    let missing = needed.is_some_and(|id| !log.snapshots.iter().any(|s| s.id == id));
    if !(never_read || missing) || app.catalogs.default_catalog().is_none() && never_read {
        return Ok(log);
    }
    match app
        .store
        .refresh_snapshots(app.catalogs.as_ref(), table, actor, Cause::OnDemand)
        .await
    {
        Ok(_) => Ok(app.store.log_view(table).await?),
        // An unreadable catalog is worth a retry when a snapshot is missing;
        // otherwise the log as it stands is the answer.
        Err(e) if missing => Err(refresh_error(e)),
        Err(e) => {
            tracing::warn!(%table, error = %e, "snapshot log refresh failed");
            Ok(log)
        }
    }
}

fn answer(reply: HydrationReply) -> HydrationBody {
    let lease = reply.lease.map(|l| {
        LeaseBody::from(LeaseView {
            lease: l.lease,
            position: l.position,
            stale: false,
        })
    });
    HydrationBody::new(reply.hydration, lease, sluice_store::system_now())
}
