//! sluice's HTTP API: thin axum handlers over the store, described by
//! OpenAPI (utoipa). Every error is the JSON error body.
#![forbid(unsafe_code)]

pub mod auth;
pub mod container_dto;
pub mod dashboard;
pub mod dto;
pub mod error;
pub mod extract;
pub mod hydration_dto;
pub mod job_dto;
pub mod metrics;
pub mod routes;
pub mod snapshot_dto;
pub mod stream_dto;
pub mod view_dto;
pub mod waiting;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use error::ApiError;
use sluice_core::snapshots::CatalogPort;
use sluice_core::{LeaseId, StreamName, TableName};
use sluice_store::Store;
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What handlers share; one `Arc`, so that handing it to each request
/// (axum clones the state per middleware and handler) costs one increment.
#[derive(Clone)]
pub struct AppState(std::sync::Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub store: Store,
    pub auth: std::sync::Arc<auth::Authenticator>,
    /// Acquires refuse to queue behind this many waiters.
    pub max_waiters_per_table: u32,
    /// One permit per open long-poll.
    pub long_polls: std::sync::Arc<tokio::sync::Semaphore>,
    /// The table each stream feeds, for scope checks: a stream's table
    /// never changes once registered, so what was read once stays true.
    pub stream_tables: std::sync::Mutex<std::collections::HashMap<StreamName, TableName>>,
    /// The Iceberg catalogs tables live in.
    pub catalogs: std::sync::Arc<dyn CatalogPort>,
    /// Where consumer views live (their containers).
    pub views: std::sync::Arc<dyn sluice_core::views::ViewPort>,
    /// Tells the snapshot-log watcher of snapshots that calls name.
    pub nudges: sluice_store::Nudges,
    /// What `/metrics` reports.
    pub metrics: metrics::Metrics,
    /// An event feed's consumer a page or more behind for this long is
    /// dropped.
    pub event_feed_drop_after: Duration,
    /// IAM authentication, when configured.
    pub aws_auth: Option<routes::aws_auth::AwsAuthConfig>,
    /// For sluice's own outbound calls (STS).
    pub http: reqwest::Client,
    /// One permit per IAM login being checked with STS.
    pub sts_permits: tokio::sync::Semaphore,
}

impl axum::extract::FromRef<AppState> for metrics::Metrics {
    fn from_ref(state: &AppState) -> metrics::Metrics {
        state.metrics.clone()
    }
}

impl AppState {
    pub fn new(
        store: Store,
        catalogs: std::sync::Arc<dyn CatalogPort>,
        views: std::sync::Arc<dyn sluice_core::views::ViewPort>,
        nudges: sluice_store::Nudges,
        config: &ApiConfig,
    ) -> AppState {
        let auth = auth::Authenticator::new(store.tokens().clone(), config.auth_required);
        AppState(std::sync::Arc::new(Shared {
            store,
            auth: std::sync::Arc::new(auth),
            max_waiters_per_table: config.max_waiters_per_table,
            long_polls: std::sync::Arc::new(tokio::sync::Semaphore::new(config.max_long_polls)),
            stream_tables: Default::default(),
            catalogs,
            views,
            nudges,
            metrics: metrics::Metrics::default(),
            event_feed_drop_after: config.event_feed_drop_after,
            aws_auth: config.aws_auth.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client"),
            sts_permits: tokio::sync::Semaphore::new(routes::aws_auth::MAX_LOGINS_IN_FLIGHT),
        }))
    }
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Every `/v1` call must present a valid bearer token.
    pub auth_required: bool,
    /// Longest a request may run; long-polls end before it.
    pub request_timeout: Duration,
    /// Most leases waiting on one table; more are refused with 429.
    pub max_waiters_per_table: u32,
    /// Most long-polls open at once; more are refused with 429.
    pub max_long_polls: usize,
    /// An event feed's consumer a page or more behind for this long gets a
    /// last `dropped` event (it resumes with `Last-Event-ID`).
    pub event_feed_drop_after: Duration,
    /// IAM authentication (`POST /v1/auth/aws`); `None`: off.
    pub aws_auth: Option<routes::aws_auth::AwsAuthConfig>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            auth_required: true,
            request_timeout: Duration::from_secs(u64::from(dto::MAX_WAIT_SECONDS) + 30),
            max_waiters_per_table: 1000,
            event_feed_drop_after: Duration::from_secs(60),
            max_long_polls: 10_000,
            aws_auth: None,
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sluice",
        description = "The control plane of an Iceberg data platform: the state that Glue jobs, \
                       schedulers and operators must agree on.\n\n\
                       - **Leases** (`leases`): read locks for hydrations and write locks for \
                       compactions on tables; many readers or one writer, with TTL and heartbeat, \
                       fencing tokens, waiting queues (long-polled) and a compaction deadline \
                       that stops readers from starving compaction.\n\
                       - **Streams and bookmarks** (`streams`): per CDC stream, batches that \
                       advance the LOAD -> DELTA bookmark ingestion jobs resume from, with \
                       history, rewind and reset.\n\
                       - **Tables and their snapshot log** (`tables`): registration and lease \
                       settings, the Iceberg snapshots sluice keeps for each table (refreshed \
                       from the catalog), the retention horizon that keeps what readers pinned.\n\
                       - **Hydrations** (`hydrations`): copies of a table into a consumer \
                       container, snapshot first then deltas, under a read lease that pins what \
                       they need: the hydration job reports progress, sluice reports lag and \
                       state.\n\
                       - **Containers and views** (`containers`, `views`): where copies live, and \
                       the consumer views over them, remapped atomically (by hand or when a \
                       hydration is live) with rollback.\n\
                       - **Jobs, runs and compactions** (`jobs`, `tables`): Glue job definitions \
                       with cron schedules, runs followed to the end with retries and dead \
                       letters, and compaction requests that wait for the write lease and then \
                       start the compaction job.\n\
                       - **Events** (`events`): the log of every transition, paged or followed \
                       live (Server-Sent Events, resumed with `Last-Event-ID`).\n\
                       - **Auth** (`operations`): every `/v1` call takes a bearer token (roles \
                       and table scopes); `POST /v1/auth/aws` trades a signed STS \
                       GetCallerIdentity request for a short-lived token. Health, readiness \
                       and `/metrics` are open.\n\n\
                       Errors are `{\"error\":{\"type\",\"message\"}}` with a stable `type`.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "leases", description = "Read and write leases on tables"),
        (name = "tables", description = "Tables and their lease settings, snapshot log and retention; compaction requests and the compaction queue"),
        (name = "streams", description = "CDC streams: batches and the LOAD -> DELTA bookmark ingestion jobs resume from"),
        (name = "containers", description = "Consumer data containers: where hydrations copy tables and consumer views live"),
        (name = "views", description = "Consumer views: what each maps to, remaps (automatic when a hydration is live, or by hand), rollback"),
        (name = "hydrations", description = "Copies of a table into a container: progress, lag, and the read lease that pins what they need"),
        (name = "jobs", description = "Glue job definitions (cron in a zone, retries, timeout) and their runs, followed to the end: retries, dead letters, cancel"),
        (name = "events", description = "The event log, paged or followed live"),
        (name = "operations", description = "Health, readiness, and IAM login (a signed STS request traded for a token)"),
    ),
    // Schemas only parameters name (utoipa registers those of bodies).
    components(schemas(job_dto::RunOrder))
)]
struct ApiDoc;

/// Every `/v1` route takes a bearer token and may answer 401 (no valid
/// token) or 403 (role or scope does not allow it); every route with a body
/// may refuse it (400, 413, 415, 422). Added here, once, not per handler.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        let error =
            utoipa::openapi::RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorBody"));
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            // The IAM login takes no token: its signed request is the credential.
            let public = path == routes::aws_auth::PATH;
            for op in operations(item) {
                let mut statuses = Vec::new();
                if !public {
                    op.security = Some(vec![SecurityRequirement::new(
                        "bearer",
                        Vec::<String>::new(),
                    )]);
                    statuses.extend([
                        (
                            "401",
                            "No valid token (missing, malformed, unknown, expired or revoked)",
                        ),
                        ("403", "The token's role or scopes do not allow this, or the lease or batch belongs to another principal (`not_owner`)"),
                    ]);
                }
                if op.request_body.is_some() {
                    statuses.extend([
                        ("400", "Malformed JSON or path"),
                        ("413", "Body larger than 64 KiB"),
                        ("415", "Body not sent as application/json"),
                        ("422", "Body valid JSON but not a valid request"),
                    ]);
                }
                for (status, description) in statuses {
                    if op.responses.responses.contains_key(status) {
                        continue;
                    }
                    let response = utoipa::openapi::ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            utoipa::openapi::ContentBuilder::new()
                                .schema(Some(error.clone()))
                                .build(),
                        )
                        .build();
                    op.responses
                        .responses
                        .insert(status.to_owned(), response.into());
                }
            }
        }
    }
}

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::leases::router())
        .merge(routes::tables::router())
        .merge(routes::snapshots::router())
        .merge(routes::containers::router())
        .merge(routes::hydrations::router())
        .merge(routes::views::router())
        .merge(routes::jobs::router())
        .merge(routes::compactions::router())
        .merge(routes::streams::router())
        .merge(routes::events::router())
        .merge(routes::health::router())
        .merge(routes::aws_auth::router())
}

/// The routes and their OpenAPI document.
fn parts() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut spec) = api().split_for_parts();
    // After the routes are in: the modifiers walk every path.
    utoipa::Modify::modify(&Security, &mut spec);
    utoipa::Modify::modify(&PathParameters, &mut spec);
    (router, spec)
}

/// What each path parameter accepts, as the handlers parse it, so that
/// requests generated from the spec (schemathesis, a client's validation)
/// are names and ids, not strings refused before any rule runs. A pattern
/// may be looser than its parser (the reserved `sluice_system.` tables,
/// views in system schemas are refused later), never stricter: a value the
/// spec calls invalid must be refused, which the fuzz checks.
struct PathParameters;

impl PathParameters {
    fn schema(path: &str, name: &str) -> Option<utoipa::openapi::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
        let text = |pattern: &str, max: usize| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern))
                .min_length(Some(1))
                .max_length(Some(max))
        };
        // `TableName::parse`: two or more dot-separated parts.
        let part = "[A-Za-z0-9_-]+";
        let built = match name {
            "table" => text(
                &format!("^{part}(\\.{part})+$"),
                sluice_core::names::MAX_NAME_LEN,
            ),
            // `StreamName::parse`: one part or more.
            "stream" => text(
                &format!("^{part}(\\.{part})*$"),
                sluice_core::names::MAX_NAME_LEN,
            ),
            // `ContainerName::parse`.
            "container" => text(&format!("^{part}$"), 128),
            "name" if path.starts_with("/v1/containers/") => text(&format!("^{part}$"), 128),
            // `scheduling::job::check_name`.
            "name" if path.starts_with("/v1/jobs/") => text("^[A-Za-z0-9_.-]+$", 255),
            // `check_object_name`: `name` or `schema.name`, each 1 to 63.
            "view" => text(
                "^[A-Za-z_][A-Za-z0-9_]{0,62}(\\.[A-Za-z_][A-Za-z0-9_]{0,62})?$",
                127,
            ),
            // Leases, hydrations, runs, compactions, batches: UUIDs.
            "lease_id" | "batch_id" | "id" => ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::Custom("uuid".into()))),
            _ => return None,
        };
        Some(built.into())
    }
}

/// Every operation of a path.
fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
}

impl utoipa::Modify for PathParameters {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        for (path, item) in openapi.paths.paths.iter_mut() {
            for op in operations(item) {
                for param in op.parameters.iter_mut().flatten() {
                    if param.parameter_in != ParameterIn::Path {
                        continue;
                    }
                    if let Some(schema) = Self::schema(path, &param.name) {
                        param.schema = Some(schema.into());
                    }
                }
            }
        }
    }
}

/// The OpenAPI document, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    parts().1
}

pub fn router(state: AppState, config: ApiConfig) -> Router {
    let (router, spec) = parts();
    let spec = std::sync::Arc::new(spec);
    let timeout = config.request_timeout;
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || async move { axum::Json((*spec).clone()) }),
        )
        .route("/metrics", axum::routing::get(metrics::serve))
        .merge(dashboard::router())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(limit_headers))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(axum::middleware::map_response(move |response: Response| {
            timed_out_body(response, timeout)
        }))
        // Outermost: it counts what leaves, timeouts and refusals included.
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::count,
        ))
        .with_state(state)
}

/// Largest total size of a request's headers.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Refuse oversized headers with the JSON error body. (hyper's own buffer
/// limit closes the connection with an empty 431; tower-http has no header
/// limit.)
async fn limit_headers(req: Request, next: Next) -> Response {
    let size: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if size > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("request headers exceed {MAX_HEADER_BYTES} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}

/// tower-http's timeout answers an empty 503: give it the JSON error body.
async fn timed_out_body(response: Response, limit: Duration) -> Response {
    let empty = !response
        .headers()
        .contains_key(axum::http::header::CONTENT_TYPE);
    if response.status() != StatusCode::SERVICE_UNAVAILABLE || !empty {
        return response;
    }
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
        format!("the request took longer than {} s", limit.as_secs()),
    )
    .into_response()
}

pub(crate) fn parse_table(raw: &str) -> Result<TableName, ApiError> {
    TableName::parse(raw).map_err(|e| ApiError::bad_request("invalid_table_name", e.0))
}

/// A table a caller may take leases on or change: not one of sluice's
/// own (`sluice_system.*`, whose write lease elects the scheduler leader).
/// Operators still read them, and may revoke their leases.
pub(crate) fn parse_user_table(raw: &str) -> Result<TableName, ApiError> {
    let table = parse_table(raw)?;
    if table.is_reserved() {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "reserved_table",
            format!("`{table}` is reserved for sluice itself"),
        ));
    }
    Ok(table)
}

pub(crate) fn parse_lease_id(raw: &str) -> Result<LeaseId, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_lease_id",
            format!("`{raw}` is not a lease id (a UUID)"),
        )
    })
}
