//! Cron fires: each due job's planned fire becomes a queued run (or, after
//! downtime, one run for all the fires missed, or none), and its next fire
//! is planned, in one write.

use crate::{write, Context, Failure};
use sluice_core::scheduling::cron::{fire, Schedule};
use sluice_core::scheduling::run;
use sluice_core::scheduling::Trigger;
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
        if let Some(fire_at) = f.run_for {
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
