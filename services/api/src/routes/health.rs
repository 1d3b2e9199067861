//! Liveness and readiness, outside `/v1`.

use crate::error::{ApiError, ErrorBody};
use crate::AppState;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    pub status: &'static str,
    /// `sqlite` or `postgres`.
    pub storage: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// The process can serve: its database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
async fn readyz(State(app): State<AppState>) -> Result<axum::Json<Ready>, ApiError> {
    app.store.ping().await.map_err(|error| {
        tracing::warn!(%error, "not ready");
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the database does not answer",
        )
    })?;
    Ok(axum::Json(Ready {
        status: "ready",
        storage: app.store.backend_name(),
    }))
}
