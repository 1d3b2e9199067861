//! The Glue jobs API as the scheduler needs it: a port the shell
//! implements with aws-sdk-glue, and Glue's run states mapped to sluice's.

use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A job run's state as Glue reports it (`JobRunState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GlueState {
    Starting,
    Waiting,
    Running,
    Stopping,
    Stopped,
    Succeeded,
    Failed,
    Error,
    Timeout,
}

/// What a Glue state means for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still going (queued in Glue, starting, running or stopping).
    Going,
    Succeeded,
    /// FAILED, ERROR and TIMEOUT.
    Failed,
    /// STOPPED.
    Stopped,
}

impl GlueState {
    pub fn parse(s: &str) -> Option<GlueState> {
        Some(match s {
            "STARTING" => GlueState::Starting,
            "WAITING" => GlueState::Waiting,
            "RUNNING" => GlueState::Running,
            "STOPPING" => GlueState::Stopping,
            "STOPPED" => GlueState::Stopped,
            "SUCCEEDED" => GlueState::Succeeded,
            "FAILED" => GlueState::Failed,
            "ERROR" => GlueState::Error,
            "TIMEOUT" => GlueState::Timeout,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GlueState::Starting => "STARTING",
            GlueState::Waiting => "WAITING",
            GlueState::Running => "RUNNING",
            GlueState::Stopping => "STOPPING",
            GlueState::Stopped => "STOPPED",
            GlueState::Succeeded => "SUCCEEDED",
            GlueState::Failed => "FAILED",
            GlueState::Error => "ERROR",
            GlueState::Timeout => "TIMEOUT",
        }
    }

    pub fn outcome(self) -> Outcome {
        match self {
            GlueState::Starting | GlueState::Waiting | GlueState::Running | GlueState::Stopping => {
                Outcome::Going
            }
            GlueState::Succeeded => Outcome::Succeeded,
            GlueState::Failed | GlueState::Error | GlueState::Timeout => Outcome::Failed,
            GlueState::Stopped => Outcome::Stopped,
        }
    }
}

/// One Glue job run as `GetJobRun` / `GetJobRuns` describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct GlueRun {
    pub id: String,
    pub state: GlueState,
    pub started_on: Option<Millis>,
    pub completed_on: Option<Millis>,
    /// DPU-seconds consumed, when Glue reports them (`DPUSeconds`, or
    /// `ExecutionTime` x `MaxCapacity` for jobs billed by capacity).
    pub dpu_seconds: Option<f64>,
    pub error_message: Option<String>,
    pub arguments: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlueError {
    /// The job already runs `MaxConcurrentRuns` runs: try again later.
    #[error("concurrent runs exceeded: {0}")]
    ConcurrentRunsExceeded(String),
    /// Throttled, a timeout, a lost answer or a 5xx: the call may or may
    /// not have taken effect.
    #[error("Glue is unavailable: {0}")]
    Unavailable(String),
    /// Glue refused the call (no such job, invalid input, access denied):
    /// trying again will not help.
    #[error("Glue refused the call: {0}")]
    Refused(String),
}

pub type GlueFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, GlueError>> + Send + 'a>>;

/// The Glue calls sluice makes.
pub trait GluePort: Send + Sync + 'static {
    /// `StartJobRun`; answers the Glue run id.
    fn start_job_run<'a>(
        &'a self,
        job: &'a str,
        arguments: &'a BTreeMap<String, String>,
    ) -> GlueFuture<'a, String>;
    /// The runs of `job` whose arguments carry `--sluice-run-id` equal to
    /// `stamp` (`GetJobRuns`, newest first, a bounded look-back).
    fn find_runs<'a>(&'a self, job: &'a str, stamp: &'a str) -> GlueFuture<'a, Vec<GlueRun>>;
    /// `GetJobRun`.
    fn get_job_run<'a>(&'a self, job: &'a str, run_id: &'a str) -> GlueFuture<'a, GlueRun>;
    /// `BatchStopJobRun` of one run.
    fn stop_job_run<'a>(&'a self, job: &'a str, run_id: &'a str) -> GlueFuture<'a, ()>;
}

/// The argument that carries sluice's run id (and attempt) into Glue.
pub const RUN_ID_ARG: &str = "--sluice-run-id";
/// Where the run reaches sluice (the `--advertise-url` it was started with).
pub const URL_ARG: &str = "--sluice-url";
/// With IAM authentication on: the server id the run signs its login for,
/// and the STS endpoint to sign it for, so that it needs no token.
pub const AWS_SERVER_ID_ARG: &str = "--sluice-aws-server-id";
pub const AWS_STS_ENDPOINT_ARG: &str = "--sluice-aws-sts-endpoint";

/// What `--sluice-run-id` holds for an attempt: the run id and the attempt
/// number, so a retry is never mistaken for the attempt before it.
pub fn stamp(run_id: &str, attempt: u32) -> String {
    format!("{run_id}/{attempt}")
}

/// The run id a stamp names (`None`: not a stamp of sluice's).
pub fn stamped_run(stamp: &str) -> Option<&str> {
    let (run_id, attempt) = stamp.rsplit_once('/')?;
    attempt.parse::<u32>().ok().map(|_| run_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_names_its_run() {
        let id = "01a25285-1206-72ab-a8c1-152c3a495b5d";
        assert_eq!(stamped_run(&stamp(id, 3)), Some(id));
        assert_eq!(stamped_run(id), None);
        assert_eq!(stamped_run("x/not-a-number"), None);
    }
}
