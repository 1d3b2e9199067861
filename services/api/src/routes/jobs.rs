//! Job definitions and their runs: define, read, start on demand, list,
//! and an operator's cancel, retry and discard. The leader's loop does the
//! Glue calls; these routes only record what is asked.

use crate::auth::Caller;
use crate::dto;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::job_dto::{
    JobBody, JobsPage, PageParams, PutJobBody, RunBody, RunParams, RunsPage, StartRunBody,
};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use sluice_core::scheduling::{Job, Run, RunId, RunState};
use sluice_core::{Millis, Permission};
use sluice_scheduler::ops::{self, OpError};
use sluice_store::RunQuery;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_job, get_job, delete_job))
        .routes(routes!(list_jobs))
        .routes(routes!(start_run))
        .routes(routes!(list_runs))
        .routes(routes!(get_run))
        .routes(routes!(cancel_run))
        .routes(routes!(retry_run))
        .routes(routes!(discard_run))
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> ApiError {
        match e {
            OpError::Invalid(m) => ApiError::invalid(m),
            OpError::NotFound { kind, message } => {
                ApiError::new(StatusCode::NOT_FOUND, kind, message)
            }
            OpError::Conflict { kind, message } => {
                ApiError::new(StatusCode::CONFLICT, kind, message)
            }
            OpError::Store(e) => e.into(),
        }
    }
}

fn parse_run_id(raw: &str) -> Result<RunId, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_run_id",
            format!("`{raw}` is not a run id (a UUID)"),
        )
    })
}

/// Define a job, or replace its definition.
///
/// A schedule is a five-field cron read in `timezone` (DST handled: a time
/// skipped by spring-forward fires right after the gap, a repeated one
/// fires once). Its next fire is planned from now.
#[utoipa::path(put, path = "/v1/jobs/{name}", tag = "jobs",
    params(("name" = String, Path, description = "1 to 255 letters, digits, `_`, `-` or `.`")),
    request_body = PutJobBody,
    responses(
        (status = 201, description = "Defined", body = JobBody),
        (status = 200, description = "Replaced", body = JobBody),
        (status = 403, description = "Its table (or a job of that name) is outside the token's scopes (`out_of_scope`)", body = ErrorBody),
        (status = 422, description = "Invalid field: a bad cron or zone, an unknown placeholder, a number out of range", body = ErrorBody),
    ))]
async fn put_job(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<PutJobBody>,
) -> Result<(StatusCode, axum::Json<JobBody>), ApiError> {
    caller.require(Permission::ManageJobs)?;
    let spec = body.into_spec()?;
    caller.require_seen(spec.table.as_ref(), &format!("job `{name}`"))?;
    // Nor may a scoped caller take over another scope's job by its name.
    if let Some(existing) = app.store.job(&name).await? {
        caller.require_seen(existing.spec.table.as_ref(), &format!("job `{name}`"))?;
    }
    let (job, created) =
        ops::define_job(&app.store, &name, spec, caller.actor().as_deref()).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(job.into())))
}

#[utoipa::path(get, path = "/v1/jobs/{name}", tag = "jobs",
    params(("name" = String, Path, description = "The job's name")),
    responses(
        (status = 200, description = "The definition and its next fire", body = JobBody),
        (status = 403, description = "Its table is outside the token's scopes (`out_of_scope`)", body = ErrorBody),
        (status = 404, description = "No such job (`job_not_found`)", body = ErrorBody),
    ))]
async fn get_job(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<axum::Json<JobBody>, ApiError> {
    caller.require(Permission::ReadJobs)?;
    Ok(axum::Json(found_job(&app, &caller, &name).await?.into()))
}

/// Delete a job definition; its finished runs stay. Refused while it has
/// runs queued, retrying, starting or running: cancel them first.
#[utoipa::path(delete, path = "/v1/jobs/{name}", tag = "jobs",
    params(("name" = String, Path, description = "The job's name")),
    responses(
        (status = 200, description = "Deleted: the definition it had", body = JobBody),
        (status = 403, description = "Its table is outside the token's scopes (`out_of_scope`)", body = ErrorBody),
        (status = 404, description = "No such job (`job_not_found`)", body = ErrorBody),
        (status = 409, description = "It has runs not finished (`job_busy`)", body = ErrorBody),
    ))]
async fn delete_job(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<axum::Json<JobBody>, ApiError> {
    caller.require(Permission::ManageJobs)?;
    found_job(&app, &caller, &name).await?;
    let job = ops::delete_job(&app.store, &name, caller.actor().as_deref()).await?;
    Ok(axum::Json(job.into()))
}

/// The job, if it exists and the caller sees its table.
async fn found_job(app: &AppState, caller: &Caller, name: &str) -> Result<Job, ApiError> {
    let job = app.store.job(name).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "job_not_found",
            format!("job `{name}` is not defined"),
        )
    })?;
    caller.require_seen(job.spec.table.as_ref(), &format!("job `{name}`"))?;
    Ok(job)
}

/// The run, if it exists and the caller sees its table.
async fn found_run(app: &AppState, caller: &Caller, raw: &str) -> Result<Run, ApiError> {
    let id = parse_run_id(raw)?;
    let run = app.store.run(id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "run_not_found",
            format!("run {id} does not exist"),
        )
    })?;
    caller.require_seen(run.value.table.as_ref(), &format!("run {id}"))?;
    Ok(run.value)
}

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    params(PageParams),
    responses(
        (status = 200, description = "Definitions by name", body = JobsPage),
        (status = 400, description = "Malformed query", body = ErrorBody),
        (status = 422, description = "`limit` out of range", body = ErrorBody),
    ))]
async fn list_jobs(
    State(app): State<AppState>,
    caller: Caller,
    Query(params): Query<PageParams>,
) -> Result<axum::Json<JobsPage>, ApiError> {
    caller.require(Permission::ReadJobs)?;
    let limit = dto::limit(params.limit)?;
    let jobs = app
        .store
        .jobs(params.after.as_deref().unwrap_or(""), limit)
        .await?;
    let next_after = (jobs.len() == limit as usize)
        .then(|| jobs.last().map(|j| j.name.clone()))
        .flatten();
    // A scoped caller sees the jobs of its tables only; a page may then
    // hold fewer than `limit`, and `next_after` still pages on.
    Ok(axum::Json(JobsPage {
        jobs: jobs
            .into_iter()
            .filter(|j| caller.sees(j.spec.table.as_ref()))
            .map(Into::into)
            .collect(),
        next_after,
    }))
}

/// Queue a run of a job now; the leader starts it in Glue when the job has
/// a free slot (`max_concurrent_runs`).
#[utoipa::path(post, path = "/v1/jobs/{name}/runs", tag = "jobs",
    params(("name" = String, Path, description = "The job's name")),
    request_body = StartRunBody,
    responses(
        (status = 201, description = "Queued", body = RunBody),
        (status = 403, description = "Its table is outside the token's scopes (`out_of_scope`)", body = ErrorBody),
        (status = 404, description = "No such job (`job_not_found`)", body = ErrorBody),
        (status = 409, description = "A compaction job: request a compaction instead (`compaction_job`)", body = ErrorBody),
    ))]
async fn start_run(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<StartRunBody>,
) -> Result<(StatusCode, axum::Json<RunBody>), ApiError> {
    caller.require(Permission::StartRuns)?;
    found_job(&app, &caller, &name).await?;
    let run = ops::queue_run(&app.store, &name, body.arguments, caller.actor().as_deref()).await?;
    Ok((StatusCode::CREATED, axum::Json(run.into())))
}

/// Runs in creation order (or newest first with `order=newest`), filtered.
#[utoipa::path(get, path = "/v1/runs", tag = "jobs",
    params(RunParams),
    responses(
        (status = 200, description = "A page of runs", body = RunsPage),
        (status = 400, description = "Malformed query or `after` run id", body = ErrorBody),
        (status = 422, description = "Unknown state or bad `since`", body = ErrorBody),
    ))]
async fn list_runs(
    State(app): State<AppState>,
    caller: Caller,
    Query(params): Query<RunParams>,
) -> Result<axum::Json<RunsPage>, ApiError> {
    caller.require(Permission::ReadJobs)?;
    let limit = dto::limit(params.limit)?;
    let state = params
        .state
        .as_deref()
        .map(|s| {
            RunState::parse(s).ok_or_else(|| {
                ApiError::invalid(format!(
                    "state must be one of {}",
                    RunState::ALL.map(|s| s.as_str()).join(", ")
                ))
            })
        })
        .transpose()?;
    let since = params
        .since
        .as_deref()
        .map(|s| {
            Millis::parse_rfc3339(s)
                .ok_or_else(|| ApiError::invalid(format!("since `{s}` is not an RFC 3339 instant")))
        })
        .transpose()?;
    let after = params
        .after
        .as_deref()
        .filter(|a| !a.is_empty())
        .map(parse_run_id)
        .transpose()?;
    let runs = app
        .store
        .runs(&RunQuery {
            after,
            job: params.job,
            state,
            since,
            limit,
            newest_first: params.order == Some(crate::job_dto::RunOrder::Newest),
        })
        .await?;
    let next_after = (runs.len() == limit as usize)
        .then(|| runs.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(axum::Json(RunsPage {
        runs: runs
            .into_iter()
            .filter(|r| caller.sees(r.table.as_ref()))
            .map(Into::into)
            .collect(),
        next_after,
    }))
}

#[utoipa::path(get, path = "/v1/runs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run", body = RunBody),
        (status = 400, description = "Not a run id (`invalid_run_id`)", body = ErrorBody),
        (status = 403, description = "Its table is outside the token's scopes (`out_of_scope`)", body = ErrorBody),
        (status = 404, description = "No such run (`run_not_found`)", body = ErrorBody),
    ))]
async fn get_run(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<RunBody>, ApiError> {
    caller.require(Permission::ReadJobs)?;
    Ok(axum::Json(found_run(&app, &caller, &id).await?.into()))
}

/// Cancel a run. One that holds no Glue run is cancelled at once; for one
/// starting or running, `cancel_requested` is set and the leader stops its
/// Glue run (`BatchStopJobRun`), then marks it `cancelled`. A `starting`
/// one is looked for in Glue a last time: adopted and stopped if found,
/// cancelled unstarted if not (while Glue cannot be reached it stays
/// `starting`, its `error` saying why; `discard` gives up on it).
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "Cancelled, or its cancel requested", body = RunBody),
        (status = 400, description = "Not a run id (`invalid_run_id`)", body = ErrorBody),
        (status = 403, description = "Its table is outside the token's scopes (`out_of_scope`)", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "It has ended (`run_state`), or belongs to a compaction", body = ErrorBody),
    ))]
async fn cancel_run(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<RunBody>, ApiError> {
    caller.require(Permission::OperateRuns)?;
    let id = found_run(&app, &caller, &id).await?.id;
    let run = ops::cancel_run(&app.store, id, caller.actor().as_deref()).await?;
    Ok(axum::Json(run.into()))
}

/// Retry a dead-lettered run with a fresh budget of attempts.
#[utoipa::path(post, path = "/v1/runs/{id}/retry", tag = "jobs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "Queued again", body = RunBody),
        (status = 400, description = "Not a run id (`invalid_run_id`)", body = ErrorBody),
        (status = 403, description = "Its table is outside the token's scopes (`out_of_scope`)", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "Not dead-lettered (`run_state`)", body = ErrorBody),
    ))]
async fn retry_run(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<RunBody>, ApiError> {
    caller.require(Permission::OperateRuns)?;
    let id = found_run(&app, &caller, &id).await?.id;
    let run = ops::retry_run(&app.store, id, caller.actor().as_deref()).await?;
    Ok(axum::Json(run.into()))
}

/// Give up on a dead-lettered run, or on one stuck `starting` (Glue
/// unreachable): it becomes `failed` and sluice never starts it again.
#[utoipa::path(post, path = "/v1/runs/{id}/discard", tag = "jobs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "Discarded", body = RunBody),
        (status = 400, description = "Not a run id (`invalid_run_id`)", body = ErrorBody),
        (status = 403, description = "Its table is outside the token's scopes (`out_of_scope`)", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "Neither dead-lettered nor starting (`run_state`)", body = ErrorBody),
    ))]
async fn discard_run(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<RunBody>, ApiError> {
    caller.require(Permission::OperateRuns)?;
    let id = found_run(&app, &caller, &id).await?.id;
    let run = ops::discard_run(&app.store, id, caller.actor().as_deref()).await?;
    Ok(axum::Json(run.into()))
}
