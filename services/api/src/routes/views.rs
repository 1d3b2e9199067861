//! Consumer views: read them with their history, remap and roll back by
//! hand, turn automatic remaps off; and the tables no view maps to any more.

use crate::auth::Caller;
use crate::dto;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::hydration_dto::IntentStatusBody;
use crate::routes::containers::{not_found, parse_name};
use crate::view_dto::{
    Orphan, OrphansBody, PutViewBody, RemapBody, RollbackBody, ViewBody, ViewParams, ViewsPage,
};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use sluice_core::containers::{Container, ContainerName};
use sluice_core::hydrations::rules::check_object_name;
use sluice_core::views::{qualified, RemapKind, View, ViewError, ViewRequest};
use sluice_core::Permission;
use sluice_store::{RemapError, RemapOrder};
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_views))
        .routes(routes!(get_view, put_view))
        .routes(routes!(remap))
        .routes(routes!(rollback))
        .routes(routes!(orphans))
}

const HISTORY: u32 = 100;

async fn find_container(app: &AppState, raw: &str) -> Result<Container, ApiError> {
    let name = parse_name(raw)?;
    app.store
        .container(&name)
        .await?
        .ok_or_else(not_found(&name))
}

fn view_name(raw: &str) -> Result<String, ApiError> {
    check_object_name("view", raw)
        .map_err(|e| ApiError::bad_request("invalid_view_name", e.to_string()))?;
    Ok(raw.to_owned())
}

fn view_not_found(container: &ContainerName, view: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "view_not_found",
        format!("container `{container}` has no view `{view}` that sluice maps"),
    )
}

async fn answer(
    app: &AppState,
    caller: &Caller,
    container: &ContainerName,
    view: &str,
) -> Result<ViewBody, ApiError> {
    let found = app
        .store
        .view(container, view)
        .await?
        .ok_or_else(|| view_not_found(container, view))?;
    require_view(app, caller, &found).await?;
    let history = app.store.view_history(container, view, HISTORY).await?;
    let mut body = ViewBody::new(found, Some(history));
    body.pending_remap = app
        .store
        .view_remap_status(container, view)
        .await?
        .map(IntentStatusBody::from);
    Ok(body)
}

/// A view belongs to the scope of the table it is fed from: 403
/// `out_of_scope` for a caller that does not see it.
pub(crate) async fn require_view(
    app: &AppState,
    caller: &Caller,
    view: &View,
) -> Result<(), ApiError> {
    if !caller.scoped() {
        return Ok(());
    }
    let table = app.store.view_table(view).await?;
    caller.require_seen(
        table.as_ref(),
        &format!("view `{}` of container `{}`", view.name, view.container),
    )
}

fn remap_error(e: RemapError) -> ApiError {
    match e {
        RemapError::Store(e) => e.into(),
        RemapError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
        RemapError::View(ViewError::Unavailable(m)) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "container_unavailable", m)
        }
        RemapError::View(refused) => {
            ApiError::new(StatusCode::CONFLICT, "remap_refused", refused.to_string())
        }
    }
}

/// Consumer views sluice maps, by container and name, a page at a time.
#[utoipa::path(get, path = "/v1/views", tag = "views",
    params(ViewParams),
    responses(
        (status = 200, description = "A page of views", body = ViewsPage),
        (status = 400, description = "Malformed query", body = ErrorBody),
        (status = 422, description = "limit out of range, or `after` not `container/view`", body = ErrorBody),
    ))]
async fn list_views(
    State(app): State<AppState>,
    caller: Caller,
    Query(params): Query<ViewParams>,
) -> Result<axum::Json<ViewsPage>, ApiError> {
    caller.require(Permission::ReadContainers)?;
    let limit = dto::limit(params.limit)?;
    let container = params.container.as_deref().map(parse_name).transpose()?;
    let after = params.after.unwrap_or_default();
    let after = if after.is_empty() {
        ("", "")
    } else {
        after.split_once('/').ok_or_else(|| {
            ApiError::invalid("`after` must be the `next_after` of a previous page")
        })?
    };
    let views = app.store.views(container.as_ref(), after, limit).await?;
    let next_after = (views.len() == limit as usize)
        .then(|| views.last().map(|v| format!("{}/{}", v.container, v.name)))
        .flatten();
    // A scoped caller sees the views fed from its tables only (a page may
    // then hold fewer than `limit`; `next_after` still pages on).
    let mut seen = Vec::with_capacity(views.len());
    for view in views {
        if require_view(&app, &caller, &view).await.is_ok() {
            seen.push(ViewBody::new(view, None));
        }
    }
    Ok(axum::Json(ViewsPage {
        views: seen,
        next_after,
    }))
}

/// A view: what it maps to now, and its remaps, newest first.
#[utoipa::path(get, path = "/v1/views/{container}/{view}", tag = "views",
    params(("container" = String, Path, description = "The container"), ("view" = String, Path, description = "`name` or `schema.name`")),
    responses(
        (status = 200, description = "The view and its history", body = ViewBody),
        (status = 400, description = "Malformed name", body = ErrorBody),
        (status = 403, description = "The view is fed from a table outside the token\'s scopes (`out_of_scope`)", body = ErrorBody),
        (status = 404, description = "Unknown container or view", body = ErrorBody),
    ))]
async fn get_view(
    State(app): State<AppState>,
    caller: Caller,
    Path((container, view)): Path<(String, String)>,
) -> Result<axum::Json<ViewBody>, ApiError> {
    caller.require(Permission::ReadContainers)?;
    let container = container_name(&app, &container).await?;
    let view = view_name(&view)?;
    Ok(axum::Json(answer(&app, &caller, &container, &view).await?))
}

async fn container_name(app: &AppState, raw: &str) -> Result<ContainerName, ApiError> {
    Ok(find_container(app, raw).await?.name)
}

/// Turn a view's automatic remap (by live hydrations) on or off.
#[utoipa::path(put, path = "/v1/views/{container}/{view}", tag = "views",
    params(("container" = String, Path, description = "The container"), ("view" = String, Path, description = "`name` or `schema.name`")),
    request_body = PutViewBody,
    responses(
        (status = 200, description = "Changed", body = ViewBody),
        (status = 400, description = "Malformed request or name", body = ErrorBody),
        (status = 403, description = "The view is fed from a table outside the token\'s scopes (`out_of_scope`)", body = ErrorBody),
        (status = 404, description = "Unknown container or view", body = ErrorBody),
    ))]
async fn put_view(
    State(app): State<AppState>,
    caller: Caller,
    Path((container, view)): Path<(String, String)>,
    Json(body): Json<PutViewBody>,
) -> Result<axum::Json<ViewBody>, ApiError> {
    caller.require(Permission::ManageViews)?;
    let container = container_name(&app, &container).await?;
    let view = view_name(&view)?;
    if let Some(found) = app.store.view(&container, &view).await? {
        require_view(&app, &caller, &found).await?;
    }
    if !app
        .store
        .set_auto_remap(&container, &view, body.auto_remap)
        .await?
    {
        return Err(view_not_found(&container, &view));
    }
    Ok(axum::Json(answer(&app, &caller, &container, &view).await?))
}

/// Point a view at another table by hand, checked like an automatic remap:
/// the target must exist and have every column the view will expose.
#[utoipa::path(post, path = "/v1/views/{container}/{view}/remap", tag = "views",
    params(("container" = String, Path, description = "The container"), ("view" = String, Path, description = "`name` or `schema.name`")),
    request_body = RemapBody,
    responses(
        (status = 200, description = "Switched", body = ViewBody),
        (status = 400, description = "Malformed request or name", body = ErrorBody),
        (status = 403, description = "The view is fed from a table outside the token\'s scopes (`out_of_scope`)", body = ErrorBody),
        (status = 404, description = "Unknown container", body = ErrorBody),
        (status = 409, description = "Refused, nothing changed: the target or a column is missing (`remap_refused`)", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
        (status = 503, description = "The container could not be reached (`container_unavailable`)", body = ErrorBody),
    ))]
async fn remap(
    State(app): State<AppState>,
    caller: Caller,
    Path((container, view)): Path<(String, String)>,
    Json(body): Json<RemapBody>,
) -> Result<axum::Json<ViewBody>, ApiError> {
    caller.require(Permission::ManageViews)?;
    let container = find_container(&app, &container).await?;
    let view = view_name(&view)?;
    check_object_name("target", &body.target).map_err(ApiError::from)?;
    if let Some(columns) = &body.columns {
        for c in columns {
            check_object_name("column", c).map_err(ApiError::from)?;
        }
    }
    let reason = dto::reason(body.reason)?;
    // By hand, a scoped caller may map only a view of its own scope; a new
    // view it maps by hand is fed from no table, so only an unscoped
    // caller may create one.
    match app.store.view(&container.name, &view).await? {
        Some(found) => require_view(&app, &caller, &found).await?,
        None => caller.require_seen(None, &format!("view `{view}`"))?,
    }
    let request = ViewRequest {
        view: view.clone(),
        target: body.target,
        columns: body.columns,
    };
    run(
        &app,
        &caller,
        &container,
        request,
        RemapKind::Remap,
        &reason,
    )
    .await?;
    Ok(axum::Json(
        answer(&app, &caller, &container.name, &view).await?,
    ))
}

/// Restore the mapping before the view's last change, the same way.
#[utoipa::path(post, path = "/v1/views/{container}/{view}/rollback", tag = "views",
    params(("container" = String, Path, description = "The container"), ("view" = String, Path, description = "`name` or `schema.name`")),
    request_body = RollbackBody,
    responses(
        (status = 200, description = "Rolled back", body = ViewBody),
        (status = 400, description = "Malformed request or name", body = ErrorBody),
        (status = 403, description = "The view is fed from a table outside the token\'s scopes (`out_of_scope`)", body = ErrorBody),
        (status = 404, description = "Unknown container or view", body = ErrorBody),
        (status = 409, description = "Nothing to roll back to (`nothing_to_roll_back`), or refused (`remap_refused`)", body = ErrorBody),
        (status = 503, description = "The container could not be reached", body = ErrorBody),
    ))]
async fn rollback(
    State(app): State<AppState>,
    caller: Caller,
    Path((container, view)): Path<(String, String)>,
    Json(body): Json<RollbackBody>,
) -> Result<axum::Json<ViewBody>, ApiError> {
    caller.require(Permission::ManageViews)?;
    let container = find_container(&app, &container).await?;
    let view = view_name(&view)?;
    let reason = dto::reason(body.reason)?;
    let found = app
        .store
        .view(&container.name, &view)
        .await?
        .ok_or_else(|| view_not_found(&container.name, &view))?;
    require_view(&app, &caller, &found).await?;
    let request = app
        .store
        .rollback_request(&container.name, &view)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "nothing_to_roll_back",
                format!("view `{view}` had no mapping before its last change"),
            )
        })?;
    run(
        &app,
        &caller,
        &container,
        request,
        RemapKind::Rollback,
        &reason,
    )
    .await?;
    Ok(axum::Json(
        answer(&app, &caller, &container.name, &view).await?,
    ))
}

async fn run(
    app: &AppState,
    caller: &Caller,
    container: &Container,
    request: ViewRequest,
    kind: RemapKind,
    reason: &str,
) -> Result<(), ApiError> {
    app.store
        .remap_views(
            app.views.as_ref(),
            RemapOrder {
                container,
                requests: &[request],
                kind,
                hydration: None,
                actor: caller.actor().as_deref(),
                reason,
                intent: None,
            },
        )
        .await
        .map_err(remap_error)?;
    Ok(())
}

/// Tables of the container that views were moved off and no view maps to
/// now, with when the last view left each. sluice never drops them.
#[utoipa::path(get, path = "/v1/containers/{name}/orphans", tag = "containers",
    params(("name" = String, Path, description = "The container")),
    responses(
        (status = 200, description = "The orphaned tables", body = OrphansBody),
        (status = 400, description = "Malformed name", body = ErrorBody),
        (status = 403, description = "The token has scopes: orphans belong to no table any more (`out_of_scope`)", body = ErrorBody),
        (status = 404, description = "Unknown container", body = ErrorBody),
    ))]
async fn orphans(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<axum::Json<OrphansBody>, ApiError> {
    caller.require(Permission::ReadContainers)?;
    // Orphans belong to no table any more: a cleanup list is for callers
    // that see every table.
    caller.require_seen(None, "a container's orphaned tables")?;
    let container = find_container(&app, &name).await?;
    let schema = container.kind.default_schema();
    let filled = filled_tables(&app, &container.name, schema).await?;
    let found: Vec<_> = app
        .store
        .orphans(&container.name)
        .await?
        .into_iter()
        .filter(|(table, _)| !filled.contains(&qualified(table, schema)))
        .collect();
    Ok(axum::Json(OrphansBody {
        container: container.name.to_string(),
        orphans: found
            .into_iter()
            .map(|(t, at)| Orphan::new(t, at))
            .collect(),
    }))
}

/// The tables of `container` a hydration still fills or keeps as its copy
/// (any not ended), as `schema.name`: no view maps to
/// them now, but dropping one would drop a copy in use. Unqualified names
/// are put in `schema`.
async fn filled_tables(
    app: &AppState,
    container: &ContainerName,
    schema: &str,
) -> Result<std::collections::HashSet<String>, ApiError> {
    const PAGE: u32 = 1000;
    let mut filled = std::collections::HashSet::new();
    let mut after = None;
    loop {
        let page = app
            .store
            .hydrations(&sluice_store::HydrationQuery {
                after,
                state: None,
                table: None,
                container: Some(container.clone()),
                limit: PAGE,
                scopes: Vec::new(),
            })
            .await?;
        for h in &page {
            if !h.state.is_final() {
                filled.insert(qualified(&h.target, schema));
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => after = Some(last.id),
            _ => return Ok(filled),
        }
    }
}
