//! Scheduling: job definitions, their cron schedules, runs started in Glue
//! and followed to the end, and compaction requests that wait for their
//! table's write lease.

pub mod compaction;
pub mod cron;
pub mod glue;
pub mod job;
pub mod run;

pub use compaction::{Compaction, CompactionFailure, CompactionState};
pub use cron::{CatchUp, Cron, Schedule};
pub use glue::{GlueError, GlueFuture, GluePort, GlueRun, GlueState};
pub use job::{Backoff, Job, JobKind, JobSpec};
pub use run::{PollPolicy, Run, RunId, RunState, Trigger};
