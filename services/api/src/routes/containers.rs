//! Consumer data containers: registration and reading, never their secrets.

use crate::auth::Caller;
use crate::container_dto::{ContainerBody, ContainersPage, PutContainerBody};
use crate::dto::{self, PageParams};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use sluice_core::containers::{Container, ContainerName};
use sluice_core::Permission;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_containers))
        .routes(routes!(put_container, get_container))
}

pub(crate) fn parse_name(raw: &str) -> Result<ContainerName, ApiError> {
    ContainerName::parse(raw).map_err(|e| ApiError::bad_request("invalid_container_name", e.0))
}

/// Register a container or replace it (a token without scopes only).
#[utoipa::path(put, path = "/v1/containers/{name}", tag = "containers",
    params(("name" = String, Path, description = "1 to 128 letters, digits, `_` or `-`")),
    request_body = PutContainerBody,
    responses(
        (status = 201, description = "Registered", body = ContainerBody),
        (status = 200, description = "Replaced", body = ContainerBody),
        (status = 403, description = "The role may not, or the token has scopes (`out_of_scope`)", body = ErrorBody),
        (status = 400, description = "Malformed request or name", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid for the kind, or a schema is invalid or a system schema", body = ErrorBody),
    ))]
async fn put_container(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<PutContainerBody>,
) -> Result<(StatusCode, axum::Json<ContainerBody>), ApiError> {
    let name = parse_name(&name)?;
    caller.require(Permission::ManageContainers)?;
    // A container serves every scope that hydrates into it: where it is,
    // and so what every scope's views read, is not one scope's to change.
    caller.require_seen(None, &format!("container `{name}`"))?;
    let schemas = body.schemas()?;
    let kind = body.kind()?;
    let now = sluice_store::system_now();
    let created = app
        .store
        .put_container(&Container {
            name: name.clone(),
            kind,
            schemas,
            created_at: now,
            updated_at: now,
        })
        .await?;
    let stored = app
        .store
        .container(&name)
        .await?
        .ok_or_else(not_found(&name))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(stored.into())))
}

/// A container, its secret left out.
#[utoipa::path(get, path = "/v1/containers/{name}", tag = "containers",
    params(("name" = String, Path, description = "The container's name")),
    responses(
        (status = 200, description = "The container", body = ContainerBody),
        (status = 400, description = "Malformed name", body = ErrorBody),
        (status = 404, description = "Unknown container (`container_not_found`)", body = ErrorBody),
    ))]
async fn get_container(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<axum::Json<ContainerBody>, ApiError> {
    let name = parse_name(&name)?;
    caller.require(Permission::ReadContainers)?;
    let found = app
        .store
        .container(&name)
        .await?
        .ok_or_else(not_found(&name))?;
    Ok(axum::Json(ContainerBody::shown(found, caller.scoped())))
}

/// The containers, by name, a page at a time.
#[utoipa::path(get, path = "/v1/containers", tag = "containers",
    params(PageParams),
    responses(
        (status = 200, description = "A page of containers", body = ContainersPage),
        (status = 400, description = "Malformed query", body = ErrorBody),
        (status = 422, description = "limit out of range", body = ErrorBody),
    ))]
async fn list_containers(
    State(app): State<AppState>,
    caller: Caller,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<ContainersPage>, ApiError> {
    caller.require(Permission::ReadContainers)?;
    let limit = dto::limit(page.limit)?;
    let after = dto::optional_text("after", page.after.filter(|a| !a.is_empty()), 1024)?;
    let containers = app.store.containers(after.as_deref(), limit).await?;
    let next_after = (containers.len() == limit as usize)
        .then(|| containers.last().map(|c| c.name.to_string()))
        .flatten();
    Ok(axum::Json(ContainersPage {
        containers: containers
            .into_iter()
            .map(|c| ContainerBody::shown(c, caller.scoped()))
            .collect(),
        next_after,
    }))
}

pub(crate) fn not_found(name: &ContainerName) -> impl FnOnce() -> ApiError + '_ {
    move || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "container_not_found",
            format!("no container named `{name}`"),
        )
    }
}
