//! The one JSON error body, `{"error":{"type","message"}}`, and the mapping
//! of every failure onto it. Server-side failures are logged with an id and
//! answered with that id only.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sluice_core::RuleError;
use sluice_store::StoreError;
use utoipa::ToSchema;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable type, e.g. `stale_token`, `lease_expired`.
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }

    pub fn bad_request(kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, kind, message)
    }
}

/// The error type of a refusal, on its response for the metrics to count.
#[derive(Debug, Clone, Copy)]
pub struct ErrorKind(pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = ErrorKind(self.kind);
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response.extensions_mut().insert(kind);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // The database is down or overloaded: worth retrying shortly.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

impl From<RuleError> for ApiError {
    fn from(error: RuleError) -> ApiError {
        let status = match &error {
            RuleError::TableNotFound(_)
            | RuleError::LeaseNotFound(_)
            | RuleError::StreamNotFound(_)
            | RuleError::BatchNotFound(_)
            | RuleError::VersionNotFound(_)
            | RuleError::HydrationNotFound(_) => StatusCode::NOT_FOUND,
            RuleError::NotOwner { .. } => StatusCode::FORBIDDEN,
            RuleError::StaleToken { .. }
            | RuleError::LeaseEnded { .. }
            | RuleError::IdempotencyConflict { .. }
            | RuleError::StreamTableChange { .. }
            | RuleError::BatchOpen { .. }
            | RuleError::StaleBatchToken { .. }
            | RuleError::BatchFinished { .. }
            | RuleError::BatchExpired(_)
            | RuleError::BatchCommitted { .. }
            | RuleError::SchemaMismatch { .. }
            | RuleError::PhaseMismatch { .. }
            | RuleError::BookmarkRegression(_)
            | RuleError::HydrationEnded { .. }
            | RuleError::SessionHeld { .. }
            | RuleError::SessionStale { .. } => StatusCode::CONFLICT,
            RuleError::VersionMismatch { .. } => StatusCode::PRECONDITION_FAILED,
            RuleError::TokenRequired(_) => StatusCode::BAD_REQUEST,
            RuleError::Invalid(_) | RuleError::SnapshotNotFound { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            RuleError::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
        };
        ApiError::new(status, error.kind(), error.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        let (status, kind) = match &error {
            StoreError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            StoreError::Conflict(_) => (StatusCode::CONFLICT, "storage_conflict"),
            StoreError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            StoreError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            // Only a single command too large for one transaction reaches here.
            StoreError::TooLarge(_) => (StatusCode::INTERNAL_SERVER_ERROR, "transaction_too_large"),
        };
        let id = uuid::Uuid::now_v7();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error_id = %id, %error, "storage unavailable");
        } else {
            tracing::error!(error_id = %id, %error, "storage failure");
        }
        ApiError::new(
            status,
            kind,
            format!("storage failure; see the server log for error id {id}"),
        )
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        ApiError::bad_request("invalid_path", rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::bad_request("invalid_query", rejection.body_text())
    }
}
