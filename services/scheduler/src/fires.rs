//! Cron fires: each due job's planned fire becomes a queued run (or, after
//! downtime, one run for all the fires missed, or none), and its next fire
//! is planned, in one write. A job at its concurrency limit does not pile
//! runs up: a fire while its scheduled run still waits in the queue is
//! absorbed by that run (counted as missed) under `catch_up = once`, and
//! dropped under `skip`.

use crate::{write, Context, Failure};
use sluice_core::scheduling::cron::{fire, Schedule};
use sluice_core::scheduling::run;
use sluice_core::scheduling::{Run, RunState, Trigger};
use sluice_store::{ScheduleWrite, Versioned};
use std::collections::BTreeMap;

/// Jobs handled per tick at most (the rest wait for the next tick).
const PER_TICK: u32 = 500;

pub(crate) async fn fire_due(cx: &Context<'_>) -> Result<(), Failure> {
    let now = sluice_store::system_now();
    for job in cx.store.due_jobs(now, PER_TICK).await? {
        let (Some(cron), Some(due)) = (&job.spec.schedule, job.next_fire_at) else {
            continue;
        };
        let schedule = match Schedule::parse(cron, &job.spec.timezone) {
            Ok(s) => s,
            Err(error) => {
                // Checked when defined; a zone removed from the system's
                // database since then stops the schedule, loudly.
                tracing::error!(job = %job.name, %error, "schedule no longer parses; not firing");
                continue;
            }
        };
        let f = fire(&schedule, due, now, job.spec.catch_up);
        let mut w = ScheduleWrite {
            fires: vec![(job.name.clone(), Some(due), f.next)],
            ..Default::default()
        };
        let waiting = match f.run_for {
            Some(_) => waiting_run(cx, &job.name).await?,
            None => None,
        };
        if let Some(Versioned { mut value, version }) = waiting {
            if value.absorb_fire(job.spec.catch_up, f.missed) {
                w.runs.push(Versioned { value, version });
            }
            tracing::info!(job = %job.name, "a fire while its scheduled run still waits: absorbed, no second run queued");
        } else if let Some(fire_at) = f.run_for {
            let trigger = Trigger::Schedule {
                fire_at,
                missed: f.missed.saturating_sub(1),
            };
            match crate::ops::new_run(
                &job,
                trigger,
                &BTreeMap::new(),
                None,
                BTreeMap::new(),
                None,
                now,
            ) {
                Ok(r) => {
                    w.events.push(run::event(&r, None, now, None));
                    w.runs.push(Versioned {
                        value: r,
                        version: 0,
                    });
                }
                Err(error) => {
                    tracing::error!(job = %job.name, %error, "cannot fill in the run's arguments")
                }
            }
        } else {
            tracing::info!(job = %job.name, missed = f.missed, "schedule fires missed while away: skipped");
        }
        write(cx, w).await?;
    }
    Ok(())
}

/// The job's oldest run waiting in the queue that a schedule started, if
/// any (one read; two when there is one).
async fn waiting_run(cx: &Context<'_>, job: &str) -> Result<Option<Versioned<Run>>, Failure> {
    let query = sluice_store::RunQuery {
        job: Some(job.to_owned()),
        state: Some(RunState::Queued),
        limit: 1,
        ..Default::default()
    };
    let Some(queued) = cx.store.runs(&query).await?.into_iter().next() else {
        return Ok(None);
    };
    if !matches!(queued.trigger, Trigger::Schedule { .. }) {
        return Ok(None);
    }
    Ok(cx.store.run(queued.id).await?)
}
