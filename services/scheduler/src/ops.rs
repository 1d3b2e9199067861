//! What the API asks of the scheduler: define jobs, queue runs, request
//! compactions, and an operator's cancel, retry and discard. Each is one
//! versioned write; nothing here calls Glue (the leader does, in the loop).

use sluice_core::scheduling::job::{self, resolve_arguments, TemplateValues};
use sluice_core::scheduling::run::{self as run_rules, NewRun, RunStateError};
use sluice_core::scheduling::{compaction, Compaction, CompactionState, Job, JobKind, JobSpec};
use sluice_core::scheduling::{Run, RunId, RunState, Trigger};
use sluice_core::{Millis, TableCommand, TableName};
use sluice_store::{ScheduleWrite, Store, StoreError, Versioned, Written};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// Bad input: 422.
    #[error("{0}")]
    Invalid(String),
    /// 404 with this error type.
    #[error("{message}")]
    NotFound { kind: &'static str, message: String },
    /// A state that refuses the action: 409 with this error type.
    #[error("{message}")]
    Conflict { kind: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<RunStateError> for OpError {
    fn from(e: RunStateError) -> OpError {
        OpError::Conflict {
            kind: "run_state",
            message: e.to_string(),
        }
    }
}

fn now() -> Millis {
    sluice_store::system_now()
}

/// Create or replace a job definition; answers it and whether it is new.
pub async fn define_job(
    store: &Store,
    name: &str,
    spec: JobSpec,
    actor: Option<&str>,
) -> Result<(Job, bool), OpError> {
    job::check_name(name).map_err(OpError::Invalid)?;
    let schedule = job::check(&spec).map_err(OpError::Invalid)?;
    check_placeholders(&spec).map_err(OpError::Invalid)?;
    let now = now();
    let existing = store.job(name).await?;
    let job = Job {
        name: name.to_owned(),
        next_fire_at: schedule.as_ref().and_then(|s| s.next_after(now)),
        created_at: existing.as_ref().map_or(now, |j| j.created_at),
        updated_at: now,
        spec,
    };
    let created = store.put_job(&job).await?;
    let data = serde_json::json!({
        "job": job.name, "created": created, "spec": job.spec,
        "next_fire_at": job.next_fire_at.map(Millis::to_rfc3339),
    });
    job_event(store, &job, sluice_core::EventKind::JobDefined, data, actor).await?;
    Ok((job, created))
}

/// Record what happened to a job definition in the event log.
async fn job_event(
    store: &Store,
    job: &Job,
    kind: sluice_core::EventKind,
    data: serde_json::Value,
    actor: Option<&str>,
) -> Result<(), OpError> {
    let event = sluice_core::NewEvent {
        at: now(),
        kind,
        table: job.spec.table.clone(),
        lease_id: None,
        stream: None,
        data,
        actor: actor.map(str::to_owned),
    };
    store
        .write_schedule(&ScheduleWrite {
            events: vec![event],
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// Delete a job definition. Refused while it has runs that are queued,
/// retrying, starting or running (cancel them first: each would still
/// start or be followed); its finished runs stay, as history.
pub async fn delete_job(store: &Store, name: &str, actor: Option<&str>) -> Result<Job, OpError> {
    let job = store.job(name).await?.ok_or_else(|| OpError::NotFound {
        kind: "job_not_found",
        message: format!("job `{name}` is not defined"),
    })?;
    for state in [
        RunState::Queued,
        RunState::Retrying,
        RunState::Starting,
        RunState::Running,
    ] {
        let active = store
            .runs(&sluice_store::RunQuery {
                after: None,
                job: Some(name.to_owned()),
                state: Some(state),
                since: None,
                limit: 1,
                newest_first: false,
            })
            .await?;
        if let Some(run) = active.first() {
            return Err(OpError::Conflict {
                kind: "job_busy",
                message: format!(
                    "job `{name}` has run {} {}: cancel its runs first",
                    run.id,
                    state.as_str()
                ),
            });
        }
    }
    if !store.delete_job(name).await? {
        return Err(OpError::NotFound {
            kind: "job_not_found",
            message: format!("job `{name}` is not defined"),
        });
    }
    let data = serde_json::json!({ "job": job.name });
    job_event(store, &job, sluice_core::EventKind::JobDeleted, data, actor).await?;
    Ok(job)
}

/// A placeholder needs a value every run will have.
fn check_placeholders(spec: &JobSpec) -> Result<(), String> {
    let values = TemplateValues {
        job: String::new(),
        run_id: String::new(),
        table: spec.table.as_ref().map(|t| t.to_string()),
        stream: spec.stream.as_ref().map(|s| s.to_string()),
        lease_id: (spec.kind == JobKind::Compaction).then(String::new),
        token: (spec.kind == JobKind::Compaction).then(String::new),
    };
    resolve_arguments(&spec.arguments, &BTreeMap::new(), &values)
        .map(|_| ())
        .map_err(|e| {
            format!("{e} (`{{table}}` needs `table`, `{{stream}}` needs `stream`, `{{lease_id}}` and `{{token}}` a compaction job)")
        })
}

/// A queued run of `job`, its arguments filled in.
pub fn new_run(
    job: &Job,
    trigger: Trigger,
    overrides: &BTreeMap<String, String>,
    lease: Option<(String, String)>,
    sluice_arguments: BTreeMap<String, String>,
    table: Option<TableName>,
    at: Millis,
) -> Result<Run, String> {
    let id = RunId(uuid::Uuid::now_v7());
    let table = table.or_else(|| job.spec.table.clone());
    let values = TemplateValues {
        job: job.name.clone(),
        run_id: id.to_string(),
        table: table.as_ref().map(|t| t.to_string()),
        stream: job.spec.stream.as_ref().map(|s| s.to_string()),
        lease_id: lease.as_ref().map(|l| l.0.clone()),
        token: lease.as_ref().map(|l| l.1.clone()),
    };
    let arguments = resolve_arguments(&job.spec.arguments, overrides, &values)?;
    let compaction_id = match &trigger {
        Trigger::Compaction { compaction_id } => Some(*compaction_id),
        _ => None,
    };
    Ok(NewRun {
        id,
        job: job.name.clone(),
        glue_job_name: job.spec.glue_job_name.clone(),
        trigger,
        table,
        arguments,
        sluice_arguments,
        // A compaction counts its attempts itself: each under a new lease.
        max_attempts: if compaction_id.is_some() {
            1
        } else {
            job.spec.max_attempts
        },
        backoff: job.spec.backoff,
        timeout_seconds: job.spec.timeout_seconds,
        compaction_id,
    }
    .queue(at))
}

/// `POST /v1/jobs/{name}/runs`: queue a run now.
pub async fn queue_run(
    store: &Store,
    name: &str,
    overrides: BTreeMap<String, String>,
    actor: Option<&str>,
) -> Result<Run, OpError> {
    let job = store.job(name).await?.ok_or_else(|| OpError::NotFound {
        kind: "job_not_found",
        message: format!("job `{name}` is not defined (PUT /v1/jobs/{name} first)"),
    })?;
    if job.spec.kind == JobKind::Compaction {
        return Err(OpError::Conflict {
            kind: "compaction_job",
            message: format!(
                "job `{name}` compacts under a write lease: request a compaction (POST /v1/tables/{{table}}/compactions) instead"
            ),
        });
    }
    let now = now();
    let run = new_run(
        &job,
        Trigger::Manual,
        &overrides,
        None,
        BTreeMap::new(),
        None,
        now,
    )
    .map_err(OpError::Invalid)?;
    let event = run_rules::event(&run, None, now, actor);
    write(
        store,
        ScheduleWrite {
            runs: vec![Versioned {
                value: run.clone(),
                version: 0,
            }],
            events: vec![event],
            ..Default::default()
        },
    )
    .await?;
    Ok(run)
}

async fn write(store: &Store, w: ScheduleWrite) -> Result<(), OpError> {
    match store.write_schedule(&w).await? {
        Written::Done => Ok(()),
        _ => Err(OpError::Conflict {
            kind: "concurrent_change",
            message: "it changed meanwhile; read it again and retry".into(),
        }),
    }
}

async fn read_run(store: &Store, id: RunId) -> Result<Versioned<Run>, OpError> {
    store.run(id).await?.ok_or_else(|| OpError::NotFound {
        kind: "run_not_found",
        message: format!("run {id} does not exist"),
    })
}

/// An operator's action on a run, as one versioned write.
async fn act(
    store: &Store,
    id: RunId,
    actor: Option<&str>,
    change: impl Fn(&mut Run, Millis) -> Result<(), OpError>,
) -> Result<Run, OpError> {
    // The loop may write the run between our read and write: read again.
    for _ in 0..5 {
        let Versioned { mut value, version } = read_run(store, id).await?;
        let from = value.state;
        let now = now();
        change(&mut value, now)?;
        let events = if value.state != from {
            vec![run_rules::event(&value, Some(from), now, actor)]
        } else {
            Vec::new()
        };
        let w = ScheduleWrite {
            runs: vec![Versioned {
                value: value.clone(),
                version,
            }],
            events,
            ..Default::default()
        };
        if store.write_schedule(&w).await? == Written::Done {
            return Ok(value);
        }
    }
    Err(OpError::Conflict {
        kind: "concurrent_change",
        message: format!("run {id} keeps changing; try again"),
    })
}

/// Cancel a run: at once when it holds no Glue run; otherwise the leader
/// stops the Glue run (`BatchStopJobRun`) and then marks it cancelled.
pub async fn cancel_run(store: &Store, id: RunId, actor: Option<&str>) -> Result<Run, OpError> {
    act(store, id, actor, |run, now| {
        if run.compaction_id.is_some() && !run.state.occupies_slot() {
            return Err(OpError::Conflict {
                kind: "compaction_run",
                message: "this run belongs to a compaction: its compaction decides".into(),
            });
        }
        match run.state {
            RunState::Starting | RunState::Running => {
                run.cancel_requested = true;
                Ok(())
            }
            _ => run.cancel(now, false).map(|_| ()).map_err(Into::into),
        }
    })
    .await
}

/// Retry a dead-lettered run with a fresh budget of attempts.
pub async fn retry_run(store: &Store, id: RunId, actor: Option<&str>) -> Result<Run, OpError> {
    act(store, id, actor, |run, now| {
        if run.compaction_id.is_some() {
            return Err(OpError::Conflict {
                kind: "compaction_run",
                message: "a compaction's run needs its write lease: request the compaction again"
                    .into(),
            });
        }
        run.retry(now).map(|_| ()).map_err(Into::into)
    })
    .await
}

/// Give up on a dead-lettered run.
pub async fn discard_run(store: &Store, id: RunId, actor: Option<&str>) -> Result<Run, OpError> {
    act(store, id, actor, |run, now| {
        run.discard(now).map(|_| ()).map_err(Into::into)
    })
    .await
}

/// `POST /v1/tables/{table}/compactions`: the table's pending compaction,
/// or a new one queued for `not_before`. Answers whether it is new.
pub async fn request_compaction(
    store: &Store,
    table: &TableName,
    requested_by: String,
    reason: Option<String>,
    not_before: Option<Millis>,
    actor: Option<&str>,
) -> Result<(Compaction, bool), OpError> {
    if store.table_catalog(table).await?.is_none() {
        return Err(OpError::NotFound {
            kind: "table_not_found",
            message: format!("table `{table}` is not registered (PUT /v1/tables/{table} first)"),
        });
    }
    if let Some(pending) = store.pending_compaction(table).await? {
        return Ok((pending.value, false));
    }
    let settings = store
        .table(
            TableCommand::Sweep {
                table: table.clone(),
            },
            None,
        )
        .await?
        .map_err(|e| OpError::Invalid(e.to_string()))?
        .state
        .settings;
    let Some(job_name) = settings.compaction_job else {
        return Err(OpError::Conflict {
            kind: "no_compaction_job",
            message: format!(
                "table `{table}` names no compaction job (PUT /v1/tables/{table} with `compaction_job`)"
            ),
        });
    };
    let Some(job) = store.job(&job_name).await? else {
        return Err(OpError::Conflict {
            kind: "no_compaction_job",
            message: format!(
                "table `{table}` names compaction job `{job_name}`, which is not defined (PUT /v1/jobs/{job_name})"
            ),
        });
    };
    let now = now();
    let c = Compaction {
        id: uuid::Uuid::now_v7(),
        table: table.clone(),
        state: CompactionState::Queued,
        requested_by,
        reason,
        not_before: not_before.map_or(now, |n| n.max(now)),
        created_at: now,
        updated_at: now,
        job: job.name.clone(),
        lease_id: None,
        token: None,
        lease_requests: 0,
        runs: Vec::new(),
        failures: 0,
        max_attempts: job.spec.max_attempts,
        base_snapshot_id: None,
        result_snapshot_id: None,
        failure: None,
        error: None,
        ended_at: None,
    };
    let w = ScheduleWrite {
        compactions: vec![Versioned {
            value: c.clone(),
            version: 0,
        }],
        events: vec![compaction::event(&c, None, now, actor)],
        ..Default::default()
    };
    match store.write_schedule(&w).await? {
        Written::Done => Ok((c, true)),
        // Another request won the race: answer its compaction.
        _ => match store.pending_compaction(table).await? {
            Some(pending) => Ok((pending.value, false)),
            None => Err(OpError::Conflict {
                kind: "concurrent_change",
                message: "another request changed this table's compactions; try again".into(),
            }),
        },
    }
}
