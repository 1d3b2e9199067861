//! The event log: every change, in commit order.

use crate::auth::Caller;
use crate::dto::{self, EventBody, EventParams, EventsPage};
use crate::error::{ApiError, ErrorBody};
use crate::extract::Query;
use crate::routes::streams::authorized;
use crate::{parse_table, AppState};
use axum::extract::State;
use sluice_core::{EventKind, Permission};
use sluice_store::EventQuery;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events))
}

/// Page through the event log in commit order (ids strictly increase).
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(EventParams),
    responses(
        (status = 200, description = "A page of events", body = EventsPage),
        (status = 400, description = "Malformed query or table name", body = ErrorBody),
        (status = 422, description = "Unknown kind or limit out of range", body = ErrorBody),
    ))]
async fn list_events(
    State(app): State<AppState>,
    caller: Caller,
    Query(params): Query<EventParams>,
) -> Result<axum::Json<EventsPage>, ApiError> {
    caller.require(Permission::ReadEvents)?;
    let after = params.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid("after must not be negative"));
    }
    let kind = match params.kind.as_deref() {
        None => None,
        Some(k) => Some(EventKind::parse(k).ok_or_else(|| {
            let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            ApiError::invalid(format!("unknown kind `{k}`; one of {}", known.join(", ")))
        })?),
    };
    let table = params.table.as_deref().map(parse_table).transpose()?;
    if let Some(table) = &table {
        caller.require_table(table)?;
    }
    let stream = match params.stream.as_deref() {
        Some(raw) => Some(authorized(&app, &caller, Permission::ReadEvents, raw).await?),
        None => None,
    };
    let query = EventQuery {
        after,
        table,
        stream,
        kind,
        limit: dto::limit(params.limit)?,
        // A scoped token sees only the events of its tables and streams.
        scopes: caller.scopes().to_vec(),
    };
    let events = app.store.events(&query).await?;
    let next_after = events.last().map_or(after, |e| e.id);
    Ok(axum::Json(EventsPage {
        events: events.into_iter().map(EventBody::from).collect(),
        next_after,
    }))
}
