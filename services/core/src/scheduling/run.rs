//! A job run's state machine:
//!
//! ```text
//! queued -> starting -> running -> succeeded
//!              |           |
//!              |           +-> (failed attempt) -> retrying -> queued ...
//!              |                                 \-> dead_letter -> (retry) queued
//!              +-> queued (Glue: concurrent runs exceeded; not an attempt)   \-> (discard) failed
//! queued | retrying | running -> cancelled
//! ```
//!
//! `starting` is recorded before `StartJobRun` is called: a run found in it
//! (after a crash or a call whose answer was lost) is first looked for in
//! Glue by its stamp and adopted, so it is never launched twice.

use super::glue::{GlueRun, GlueState, Outcome};
use super::job::Backoff;
use crate::names::TableName;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub Uuid);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for RunId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<RunId, uuid::Error> {
        Uuid::parse_str(s).map(RunId)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Queued,
    Starting,
    Running,
    Succeeded,
    /// An attempt failed; the next waits for its back-off.
    Retrying,
    /// Every attempt failed: an operator retries or discards it.
    DeadLetter,
    /// A dead letter an operator discarded.
    Failed,
    Cancelled,
}

impl RunState {
    pub const ALL: [RunState; 8] = [
        RunState::Queued,
        RunState::Starting,
        RunState::Running,
        RunState::Succeeded,
        RunState::Retrying,
        RunState::DeadLetter,
        RunState::Failed,
        RunState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Starting => "starting",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Retrying => "retrying",
            RunState::DeadLetter => "dead_letter",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Nothing more happens to it by itself.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Cancelled
        )
    }

    /// It holds one of its job's concurrent slots in Glue.
    pub fn occupies_slot(self) -> bool {
        matches!(self, RunState::Starting | RunState::Running)
    }
}

/// Why a run exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// Its job's cron schedule fired (`missed`: fires it also stands for,
    /// passed while sluice was away).
    Schedule { fire_at: Millis, missed: u32 },
    /// `POST /v1/jobs/{name}/runs`.
    Manual,
    /// A compaction request whose write lease was granted.
    Compaction { compaction_id: Uuid },
}

/// Why sluice asked Glue to stop a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Timeout,
    Cancel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: RunId,
    pub job: String,
    pub glue_job_name: String,
    pub state: RunState,
    pub trigger: Trigger,
    pub table: Option<TableName>,
    /// The job arguments, filled in, without sluice's own `--sluice-*`.
    pub arguments: BTreeMap<String, String>,
    /// Arguments sluice adds for this run (a compaction's lease and token).
    pub sluice_arguments: BTreeMap<String, String>,
    /// Attempts launched in Glue so far (the one `starting` is this + 1).
    pub attempt: u32,
    /// Failed attempts since the run was created or last retried by hand.
    pub failures: u32,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub timeout_seconds: u32,
    pub glue_run_id: Option<String>,
    pub glue_state: Option<GlueState>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// When the current attempt started in Glue.
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    /// Queued or retrying: when it may start. Running: its next poll.
    pub due_at: Millis,
    /// Polls in a row that saw no change (they space out).
    pub quiet_polls: u32,
    /// Start calls in a row that Glue answered "concurrent runs exceeded".
    pub busy: u32,
    pub dpu_seconds: Option<f64>,
    pub error: Option<String>,
    pub stop: Option<StopReason>,
    /// An operator asked to cancel it while it held a Glue run: the leader
    /// stops that run, then marks it cancelled.
    #[serde(default)]
    pub cancel_requested: bool,
    /// Its compaction, when a compaction started it.
    pub compaction_id: Option<Uuid>,
}

/// How runs are polled while they live in Glue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPolicy {
    pub min_ms: i64,
    pub max_ms: i64,
}

impl PollPolicy {
    /// The wait before the next poll after `quiet` polls saw no change.
    pub fn delay_ms(&self, quiet: u32) -> i64 {
        self.min_ms
            .saturating_mul(1i64 << quiet.min(20))
            .min(self.max_ms)
    }
}

/// A concurrent-runs refusal is retried after this, doubling, at most a minute.
pub fn busy_delay_ms(busy: u32) -> i64 {
    2_000i64.saturating_mul(1 << busy.min(5)).min(60_000)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("run {run} is {}: cannot {action}", state.as_str())]
pub struct RunStateError {
    pub run: RunId,
    pub state: RunState,
    pub action: &'static str,
}

/// A change of state, for the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: RunState,
    pub to: RunState,
}

impl Run {
    fn set(&mut self, to: RunState, now: Millis) -> Transition {
        let from = self.state;
        self.state = to;
        self.updated_at = now;
        Transition { from, to }
    }

    fn refuse(&self, action: &'static str) -> RunStateError {
        RunStateError {
            run: self.id,
            state: self.state,
            action,
        }
    }

    /// The stamp of the attempt being started (or last started).
    pub fn stamp(&self) -> String {
        let n = if self.state == RunState::Starting {
            self.attempt + 1
        } else {
            self.attempt
        };
        super::glue::stamp(&self.id.to_string(), n)
    }

    /// Whether it may be started at `now` (queued and due).
    pub fn startable(&self, now: Millis) -> bool {
        self.state == RunState::Queued && self.due_at <= now
    }

    /// Recorded before `StartJobRun` is called.
    pub fn begin_start(&mut self, now: Millis) -> Result<Transition, RunStateError> {
        if self.state != RunState::Queued {
            return Err(self.refuse("start"));
        }
        self.error = None;
        Ok(self.set(RunState::Starting, now))
    }

    /// Glue started the attempt (or one carrying its stamp was found).
    pub fn started(&mut self, glue: &GlueRun, now: Millis, poll: PollPolicy) -> Transition {
        self.attempt += 1;
        self.busy = 0;
        self.glue_run_id = Some(glue.id.clone());
        self.glue_state = Some(glue.state);
        self.started_at = Some(glue.started_on.unwrap_or(now));
        self.ended_at = None;
        self.dpu_seconds = None;
        self.stop = None;
        self.quiet_polls = 0;
        self.due_at = Millis(now.0 + poll.min_ms);
        let t = self.set(RunState::Running, now);
        // A run adopted after it ended is settled by what Glue says.
        if glue.state.outcome() != Outcome::Going {
            return self.observed(glue, now, poll, 0.5).unwrap_or(t);
        }
        t
    }

    /// Glue refused to start it because the job runs its maximum already:
    /// back in the queue, not an attempt.
    pub fn concurrent_runs_exceeded(&mut self, now: Millis) -> Transition {
        self.busy += 1;
        self.due_at = Millis(now.0 + busy_delay_ms(self.busy - 1));
        self.set(RunState::Queued, now)
    }

    /// Glue refused to start it for good (no such job, bad input): a failed
    /// attempt.
    pub fn start_refused(&mut self, error: String, now: Millis, jitter: f64) -> Transition {
        self.attempt += 1;
        self.fail(error, now, jitter)
    }

    /// A failed attempt: retry after the back-off, or dead-letter.
    fn fail(&mut self, error: String, now: Millis, jitter: f64) -> Transition {
        self.failures += 1;
        self.error = Some(error);
        self.ended_at = Some(now);
        if self.failures >= self.max_attempts {
            self.set(RunState::DeadLetter, now)
        } else {
            self.due_at = Millis(now.0 + self.backoff.delay_ms(self.failures, jitter));
            self.set(RunState::Retrying, now)
        }
    }

    /// What a poll of Glue saw. `None` when the state did not change (the
    /// next poll is spaced out further).
    pub fn observed(
        &mut self,
        glue: &GlueRun,
        now: Millis,
        poll: PollPolicy,
        jitter: f64,
    ) -> Option<Transition> {
        if self.state != RunState::Running {
            return None;
        }
        let changed = self.glue_state != Some(glue.state);
        self.glue_state = Some(glue.state);
        self.dpu_seconds = glue.dpu_seconds.or(self.dpu_seconds);
        if let Some(s) = glue.started_on {
            self.started_at = Some(s);
        }
        let ended = glue.completed_on.unwrap_or(now);
        match glue.state.outcome() {
            Outcome::Going => {
                self.quiet_polls = if changed { 0 } else { self.quiet_polls + 1 };
                self.due_at = Millis(now.0 + poll.delay_ms(self.quiet_polls));
                self.updated_at = now;
                None
            }
            Outcome::Succeeded => {
                self.ended_at = Some(ended);
                self.error = None;
                Some(self.set(RunState::Succeeded, now))
            }
            Outcome::Failed => {
                let message = glue
                    .error_message
                    .clone()
                    .unwrap_or_else(|| format!("Glue run ended {}", glue.state.as_str()));
                let t = self.fail(message, now, jitter);
                self.ended_at = Some(ended);
                Some(t)
            }
            Outcome::Stopped => match self.stop {
                // Stopped for its timeout: a failure (recorded when stopped).
                Some(StopReason::Timeout) => None,
                _ => {
                    self.ended_at = Some(ended);
                    Some(self.set(RunState::Cancelled, now))
                }
            },
        }
    }

    /// Whether a running attempt has outlived its timeout at `now`.
    pub fn timed_out(&self, now: Millis) -> bool {
        self.state == RunState::Running
            && self
                .started_at
                .is_some_and(|s| now.0 - s.0 > i64::from(self.timeout_seconds) * 1000)
    }

    /// Glue was told to stop it for its timeout: a failed attempt.
    pub fn stopped_for_timeout(&mut self, now: Millis, jitter: f64) -> Transition {
        self.stop = Some(StopReason::Timeout);
        let message = format!(
            "timed out after {} s; stopped (BatchStopJobRun)",
            self.timeout_seconds
        );
        self.fail(message, now, jitter)
    }

    /// A retrying run whose back-off is over goes back to the queue.
    pub fn retry_due(&mut self, now: Millis) -> Option<Transition> {
        (self.state == RunState::Retrying && self.due_at <= now)
            .then(|| self.set(RunState::Queued, now))
    }

    /// An operator cancels it. A running one must be stopped in Glue first
    /// (`in_glue`: the shell did that).
    pub fn cancel(&mut self, now: Millis, in_glue: bool) -> Result<Transition, RunStateError> {
        match self.state {
            RunState::Queued | RunState::Retrying | RunState::DeadLetter => {}
            RunState::Running if in_glue => self.stop = Some(StopReason::Cancel),
            _ => return Err(self.refuse("cancel")),
        }
        self.ended_at = Some(now);
        Ok(self.set(RunState::Cancelled, now))
    }

    /// An operator retries a dead letter: a fresh budget of attempts.
    pub fn retry(&mut self, now: Millis) -> Result<Transition, RunStateError> {
        if self.state != RunState::DeadLetter {
            return Err(self.refuse("retry (only a dead-lettered run can be retried)"));
        }
        self.failures = 0;
        self.due_at = now;
        Ok(self.set(RunState::Queued, now))
    }

    /// An operator gives up on a dead letter, or on a run stuck `starting`
    /// (Glue unreachable): it ends `failed` and sluice never starts it
    /// again. A Glue run that did start meanwhile is left to Glue: its id
    /// was never answered, so sluice cannot follow it.
    pub fn discard(&mut self, now: Millis) -> Result<Transition, RunStateError> {
        match self.state {
            RunState::DeadLetter => {}
            RunState::Starting => {
                let why = self.error.take().unwrap_or_default();
                self.error = Some(
                    format!("discarded while starting; never started again by sluice. {why}")
                        .trim_end()
                        .to_owned(),
                );
                self.ended_at = Some(now);
            }
            _ => {
                return Err(self.refuse(
                    "discard (only a dead-lettered run, or one stuck starting, can be discarded)",
                ))
            }
        }
        Ok(self.set(RunState::Failed, now))
    }

    /// A run whose cancel was asked while `starting`, once a last look in
    /// Glue found no run carrying its stamp: cancelled, never started.
    pub fn cancel_unstarted(&mut self, now: Millis) -> Result<Transition, RunStateError> {
        if self.state != RunState::Starting || !self.cancel_requested {
            return Err(self.refuse("cancel before it started"));
        }
        self.ended_at = Some(now);
        Ok(self.set(RunState::Cancelled, now))
    }

    /// Glue could not be reached to start the attempt or to look for it:
    /// it stays `starting` (it may have started), says why on the run, and
    /// is looked at again after a back-off from 1 s doubling to a minute.
    /// Answers whether the reason is new (worth an event).
    pub fn glue_unreachable(&mut self, error: &str, now: Millis) -> bool {
        let error: String = error
            .chars()
            .filter(|c| !c.is_control())
            .take(500)
            .collect();
        let error = format!("Glue unreachable: {error}");
        let new = self.error.as_deref() != Some(error.as_str());
        self.error = Some(error);
        self.quiet_polls = self.quiet_polls.saturating_add(1);
        self.due_at = Millis(now.0 + (1000i64 << self.quiet_polls.min(6)).min(60_000));
        new
    }
}

/// A new run of a job, queued and due at `now`.
pub struct NewRun {
    pub id: RunId,
    pub job: String,
    pub glue_job_name: String,
    pub trigger: Trigger,
    pub table: Option<TableName>,
    pub arguments: BTreeMap<String, String>,
    pub sluice_arguments: BTreeMap<String, String>,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub timeout_seconds: u32,
    pub compaction_id: Option<Uuid>,
}

impl NewRun {
    pub fn queue(self, now: Millis) -> Run {
        Run {
            id: self.id,
            job: self.job,
            glue_job_name: self.glue_job_name,
            state: RunState::Queued,
            trigger: self.trigger,
            table: self.table,
            arguments: self.arguments,
            sluice_arguments: self.sluice_arguments,
            attempt: 0,
            failures: 0,
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            timeout_seconds: self.timeout_seconds,
            glue_run_id: None,
            glue_state: None,
            created_at: now,
            updated_at: now,
            started_at: None,
            ended_at: None,
            due_at: now,
            quiet_polls: 0,
            busy: 0,
            dpu_seconds: None,
            error: None,
            stop: None,
            cancel_requested: false,
            compaction_id: self.compaction_id,
        }
    }
}

/// The arguments `StartJobRun` gets for the attempt being started.
pub fn start_arguments(run: &Run) -> BTreeMap<String, String> {
    let mut args = run.arguments.clone();
    args.extend(run.sluice_arguments.clone());
    args.insert(super::glue::RUN_ID_ARG.to_owned(), run.stamp());
    args
}

/// The event of a run's change (`from`: none when it was just queued).
pub fn event(
    run: &Run,
    from: Option<RunState>,
    at: Millis,
    actor: Option<&str>,
) -> crate::event::NewEvent {
    use crate::event::{EventKind, NewEvent};
    NewEvent {
        at,
        kind: if from.is_none() {
            EventKind::RunQueued
        } else {
            EventKind::RunStateChanged
        },
        table: run.table.clone(),
        lease_id: None,
        stream: None,
        data: serde_json::json!({
            "run_id": run.id, "job": run.job, "glue_job_name": run.glue_job_name,
            "from": from.map(RunState::as_str), "to": run.state.as_str(),
            "attempt": run.attempt, "glue_run_id": run.glue_run_id,
            "glue_state": run.glue_state.map(|s| s.as_str()), "error": run.error,
            "trigger": run.trigger, "compaction_id": run.compaction_id,
        }),
        actor: actor.map(str::to_owned),
    }
}

impl Run {
    /// A fire of this run's schedule while the run still waits in the
    /// queue (its job is at its concurrency limit): no second run is
    /// queued. Under `Once` this run stands for the fire too (its trigger
    /// counts it as missed: `missed` more, plus the fire itself); under
    /// `Skip` the fire is dropped. `true` when the run changed.
    pub fn absorb_fire(&mut self, policy: super::CatchUp, missed: u32) -> bool {
        match (&mut self.trigger, policy) {
            (Trigger::Schedule { missed: m, .. }, super::CatchUp::Once) => {
                *m = m.saturating_add(missed.max(1));
                true
            }
            _ => false,
        }
    }
}
