//! Runs in Glue: start what is queued (recording `starting` first), adopt
//! or restart what a crash or a lost answer left `starting`, poll what is
//! running at a bounded rate, stop what outlived its timeout or was
//! cancelled, and put retrying runs back in the queue when their back-off
//! is over.

use crate::events::RunChanged;
use crate::{jitter, write, Context, Failure};
use futures::StreamExt;
use sluice_core::rate::Bucket;
use sluice_core::scheduling::glue::{GlueError, GlueRun, GlueState};
use sluice_core::scheduling::glue::{AWS_SERVER_ID_ARG, AWS_STS_ENDPOINT_ARG, RUN_ID_ARG, URL_ARG};
use sluice_core::scheduling::run::{self, start_arguments, Transition};

use sluice_core::scheduling::{Run, RunId, RunState};
use sluice_store::{ScheduleWrite, Versioned};
use std::collections::HashMap;
use std::time::Instant;

/// Runs handled per tick at most.
const PER_TICK: u32 = 500;
/// `StartJobRun` calls in flight at once.
const CONCURRENT_STARTS: usize = 16;

/// The tick's Glue budgets: polls (`GetJobRun`, `GetJobRuns`) and starts.
pub(crate) struct Budgets {
    pub polls: Bucket,
    pub starts: Bucket,
}

pub(crate) async fn advance(cx: &Context<'_>, budgets: &mut Budgets) -> Result<(), Failure> {
    let now = sluice_store::system_now();
    let (queued, others): (Vec<_>, Vec<_>) = cx
        .store
        .active_runs(now, PER_TICK)
        .await?
        .into_iter()
        .partition(|r| r.value.state == RunState::Queued);
    // Starts first: polls one after another can take the rest of the time
    // the leader lease surely holds (a 1,000-run backlog polled at 50 calls
    // a second left no tick any of it, and ticks longer than the lease's
    // TTL lost it).
    start_queued(cx, queued, &mut budgets.starts).await?;
    for Versioned { value, version } in others {
        // The rest wait for the next tick, after the next heartbeat.
        if !cx.may_act() {
            break;
        }
        match value.state {
            RunState::Retrying => {
                let mut r = value;
                if let Some(t) = r.retry_due(now) {
                    save(cx, r, version, Some(t)).await?;
                }
            }
            RunState::Starting => reconcile(cx, value, version, &mut budgets.polls).await?,
            RunState::Running => follow(cx, value, version, &mut budgets.polls).await?,
            _ => {}
        }
    }
    Ok(())
}

/// Start queued runs, oldest first: each job's limit and occupancy read
/// once a tick however many of its runs wait, then the `StartJobRun` calls
/// side by side, as many as the start budget allows (the rest wait for the
/// next tick).
async fn start_queued(
    cx: &Context<'_>,
    queued: Vec<Versioned<Run>>,
    starts: &mut Bucket,
) -> Result<(), Failure> {
    let mut free: HashMap<String, u32> = HashMap::new();
    let mut chosen = Vec::new();
    for run in queued {
        let job = run.value.job.clone();
        if !free.contains_key(&job) {
            let max = cx
                .store
                .job(&job)
                .await?
                .map_or(1, |j| j.spec.max_concurrent_runs);
            let occupying = cx.store.occupying(&job).await?;
            free.insert(job.clone(), max.saturating_sub(occupying));
        }
        let slots = free.get_mut(&job).expect("inserted above");
        if *slots == 0 {
            continue;
        }
        if !starts.take(Instant::now()) {
            break;
        }
        *slots -= 1;
        chosen.push(run);
    }
    let outcomes: Vec<Result<(), Failure>> = futures::stream::iter(chosen)
        .map(|run| start(cx, run.value, run.version))
        .buffer_unordered(CONCURRENT_STARTS)
        .collect()
        .await;
    outcomes.into_iter().collect()
}

/// Write a run back (with the event of `t`); `None` if it changed meanwhile.
async fn save(
    cx: &Context<'_>,
    run: Run,
    version: i64,
    t: Option<Transition>,
) -> Result<Option<i64>, Failure> {
    let now = sluice_store::system_now();
    let mut w = ScheduleWrite::default();
    if let Some(t) = t {
        w.events.push(run::event(&run, Some(t.from), now, None));
    }
    w.runs.push(Versioned {
        value: run,
        version,
    });
    Ok(write(cx, w).await?.then_some(version + 1))
}

async fn start(cx: &Context<'_>, mut r: Run, version: i64) -> Result<(), Failure> {
    if !cx.may_act() {
        return Ok(());
    }
    let now = sluice_store::system_now();
    let Ok(t) = r.begin_start(now) else {
        return Ok(());
    };
    // Recorded before the call: after a crash the run is looked for in
    // Glue by its stamp before it is started again.
    let Some(version) = save(cx, r.clone(), version, Some(t)).await? else {
        return Ok(());
    };
    call_start(cx, r, version).await
}

async fn call_start(cx: &Context<'_>, mut r: Run, version: i64) -> Result<(), Failure> {
    let mut args = start_arguments(&r);
    if let Some(url) = &cx.config.advertise_url {
        args.insert(URL_ARG.to_owned(), url.clone());
    }
    if let Some((server_id, sts_endpoint)) = &cx.config.aws_login {
        args.insert(AWS_SERVER_ID_ARG.to_owned(), server_id.clone());
        args.insert(AWS_STS_ENDPOINT_ARG.to_owned(), sts_endpoint.clone());
    }
    let answer = cx.glue.start_job_run(&r.glue_job_name, &args).await;
    let now = sluice_store::system_now();
    let t = match answer {
        Ok(id) => {
            let glue = GlueRun {
                id,
                state: GlueState::Starting,
                started_on: None,
                completed_on: None,
                dpu_seconds: None,
                error_message: None,
                arguments: args,
            };
            r.started(&glue, now, cx.config.poll)
        }
        Err(GlueError::ConcurrentRunsExceeded(_)) => r.concurrent_runs_exceeded(now),
        Err(GlueError::Refused(e)) => r.start_refused(e, now, jitter()),
        Err(GlueError::Unavailable(error)) => {
            // It may or may not have started: left `starting`, to be
            // looked for by its stamp after `adopt_after`.
            return unreachable(cx, r, version, "StartJobRun", error.to_string()).await;
        }
    };
    save(cx, r, version, Some(t)).await.map(|_| ())
}

/// Glue did not answer: the run says why (an event when the reason is
/// new, one warning in the log then) and waits out its back-off.
async fn unreachable(
    cx: &Context<'_>,
    mut r: Run,
    version: i64,
    call: &str,
    error: String,
) -> Result<(), Failure> {
    let now = sluice_store::system_now();
    let error = format!("{call}: {error}");
    let new = r.glue_unreachable(&error, now);
    if new {
        tracing::warn!(run = %r.id, %error, "Glue unreachable; the run stays starting and is looked for again");
    }
    let t = new.then_some(Transition {
        from: RunState::Starting,
        to: RunState::Starting,
    });
    save(cx, r, version, t).await.map(|_| ())
}

async fn reconcile(
    cx: &Context<'_>,
    mut r: Run,
    version: i64,
    bucket: &mut Bucket,
) -> Result<(), Failure> {
    let now = sluice_store::system_now();
    let waiting = now.0 - r.updated_at.0 < cx.config.adopt_after.as_millis() as i64;
    // `due_at`: the back-off after Glue did not answer.
    if waiting || now.0 < r.due_at.0 || !bucket.take(Instant::now()) {
        return Ok(());
    }
    let stamp = r.stamp();
    match cx.glue.find_runs(&r.glue_job_name, &stamp).await {
        Ok(found) => match found.into_iter().next() {
            // Adopted even when a cancel is asked: following it stops it.
            Some(glue) => {
                tracing::info!(run = %r.id, glue_run = %glue.id, "adopted the Glue run carrying its stamp");
                let t = r.started(&glue, now, cx.config.poll);
                save(cx, r, version, Some(t)).await.map(|_| ())
            }
            // The last look found nothing: a cancelled run never starts.
            None if r.cancel_requested => match r.cancel_unstarted(now) {
                Ok(t) => save(cx, r, version, Some(t)).await.map(|_| ()),
                Err(_) => Ok(()),
            },
            None if cx.may_act() => {
                tracing::info!(run = %r.id, "no Glue run carries its stamp: starting it");
                call_start(cx, r, version).await
            }
            None => Ok(()),
        },
        Err(error) => unreachable(cx, r, version, "GetJobRuns", error.to_string()).await,
    }
}

/// What Glue says of a run, recorded.
async fn observed(
    cx: &Context<'_>,
    mut r: Run,
    version: i64,
    glue: &GlueRun,
) -> Result<(), Failure> {
    let t = r.observed(glue, sluice_store::system_now(), cx.config.poll, jitter());
    save(cx, r, version, t).await.map(|_| ())
}

/// An AWS event said a Glue run changed state: read it now (one
/// `GetJobRun`, within the poll budget; `false` when there was no token,
/// to be tried next tick) and record it if it is a run sluice follows.
pub(crate) async fn confirm(
    cx: &Context<'_>,
    changed: &RunChanged,
    bucket: &mut Bucket,
) -> Result<bool, Failure> {
    if !bucket.take(Instant::now()) {
        return Ok(false);
    }
    let glue = match cx
        .glue
        .get_job_run(&changed.job_name, &changed.run_id)
        .await
    {
        Ok(glue) => glue,
        // Not a run of a job sluice can read (another team's), or Glue
        // did not answer: the polls carry on as before.
        Err(error) => {
            tracing::debug!(glue_run = %changed.run_id, %error, "an AWS event named a run sluice cannot read");
            return Ok(true);
        }
    };
    tracing::debug!(glue_run = %changed.run_id, state = ?glue.state, "an AWS event's run read");
    let Some(id) = glue
        .arguments
        .get(RUN_ID_ARG)
        .and_then(|stamp| sluice_core::scheduling::glue::stamped_run(stamp))
        .and_then(|id| id.parse::<RunId>().ok())
    else {
        return Ok(true);
    };
    let Some(Versioned { value, version }) = cx.store.run(id).await? else {
        return Ok(true);
    };
    if value.state == RunState::Running && value.glue_run_id.as_deref() == Some(&changed.run_id) {
        observed(cx, value, version, &glue).await?;
    }
    Ok(true)
}

async fn follow(
    cx: &Context<'_>,
    mut r: Run,
    version: i64,
    bucket: &mut Bucket,
) -> Result<(), Failure> {
    let now = sluice_store::system_now();
    let glue_id = r.glue_run_id.clone().unwrap_or_default();
    let stop_for = if r.cancel_requested {
        Some("cancel")
    } else if r.timed_out(now) {
        Some("timeout")
    } else {
        None
    };
    if let (Some(why), true) = (stop_for, cx.may_act()) {
        match cx.glue.stop_job_run(&r.glue_job_name, &glue_id).await {
            Ok(()) => {
                let t = if why == "timeout" {
                    r.stopped_for_timeout(now, jitter())
                } else {
                    r.cancel(now, true).expect("a running run can be cancelled")
                };
                tracing::info!(run = %r.id, glue_run = %glue_id, why, "stopped the Glue run");
                return save(cx, r, version, Some(t)).await.map(|_| ());
            }
            // Refused: most often it ended meanwhile; the poll below says.
            Err(error) => tracing::warn!(run = %r.id, %error, "BatchStopJobRun failed"),
        }
    }
    if !bucket.take(Instant::now()) {
        return Ok(());
    }
    match cx.glue.get_job_run(&r.glue_job_name, &glue_id).await {
        Ok(glue) => observed(cx, r, version, &glue).await,
        Err(error) => {
            tracing::warn!(run = %r.id, %error, "GetJobRun failed; polling later");
            r.quiet_polls += 1;
            r.due_at = sluice_core::Millis(now.0 + cx.config.poll.delay_ms(r.quiet_polls));
            save(cx, r, version, None).await.map(|_| ())
        }
    }
}
