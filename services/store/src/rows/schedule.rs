//! Jobs, runs and compactions as both dialects hold them: a JSON document
//! each, beside the columns queries filter and order on.

use crate::error::StoreError;
use crate::ports::Versioned;
use crate::rows::corrupt;
use sluice_core::scheduling::{Compaction, Job, JobSpec, Run};
use sluice_core::Millis;

/// The run states the scheduler still has work on, as SQL list items.
pub const ACTIVE_RUNS: &str = "'queued', 'starting', 'running', 'retrying'";
/// The compaction states that are not final, as SQL list items.
pub const PENDING_COMPACTIONS: &str = "'queued', 'waiting', 'running'";

#[derive(sqlx::FromRow)]
pub struct JobRow {
    pub name: String,
    pub doc: String,
    pub next_fire_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub const JOB_COLUMNS: &str = "name, doc, next_fire_at, created_at, updated_at";

impl TryFrom<JobRow> for Job {
    type Error = StoreError;
    fn try_from(r: JobRow) -> Result<Job, StoreError> {
        let spec: JobSpec = serde_json::from_str(&r.doc).map_err(|_| corrupt("job", &r.doc))?;
        Ok(Job {
            name: r.name,
            spec,
            next_fire_at: r.next_fire_at.map(Millis),
            created_at: Millis(r.created_at),
            updated_at: Millis(r.updated_at),
        })
    }
}

pub fn encode_spec(job: &Job) -> String {
    serde_json::to_string(&job.spec).expect("a job spec serializes")
}

#[derive(sqlx::FromRow)]
pub struct DocRow {
    pub doc: String,
    pub version: i64,
}

pub fn encode<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("a scheduling document serializes")
}

pub fn run(r: DocRow) -> Result<Versioned<Run>, StoreError> {
    Ok(Versioned {
        value: serde_json::from_str(&r.doc).map_err(|_| corrupt("run", &r.doc))?,
        version: r.version,
    })
}

pub fn compaction(r: DocRow) -> Result<Versioned<Compaction>, StoreError> {
    Ok(Versioned {
        value: serde_json::from_str(&r.doc).map_err(|_| corrupt("compaction", &r.doc))?,
        version: r.version,
    })
}

pub fn runs(rows: Vec<DocRow>) -> Result<Vec<Versioned<Run>>, StoreError> {
    rows.into_iter().map(run).collect()
}

pub fn compactions(rows: Vec<DocRow>) -> Result<Vec<Versioned<Compaction>>, StoreError> {
    rows.into_iter().map(compaction).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::scheduling::{CompactionState, RunState};

    #[test]
    fn the_lists_name_every_state_that_is_not_final() {
        for s in RunState::ALL {
            let quoted = format!("'{}'", s.as_str());
            let active = !s.is_final() && s != RunState::DeadLetter;
            assert_eq!(ACTIVE_RUNS.contains(&quoted), active, "{quoted}");
        }
        for s in CompactionState::ALL {
            let quoted = format!("'{}'", s.as_str());
            assert_eq!(
                PENDING_COMPACTIONS.contains(&quoted),
                !s.is_final(),
                "{quoted}"
            );
        }
    }
}
