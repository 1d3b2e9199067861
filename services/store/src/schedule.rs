//! Jobs, runs and compactions: the store's side of the scheduler (the
//! loop itself lives in the scheduler crate; it reads here and writes
//! through [`Store::write_schedule`]).

use crate::error::StoreError;
use crate::ports::{RunQuery, ScheduleWrite, Versioned, Written};
use crate::Store;
use sluice_core::scheduling::{Compaction, Job, Run, RunId};
use sluice_core::{Millis, TableName};

impl Store {
    /// Create or replace a job definition; `true` when it is new.
    pub async fn put_job(&self, job: &Job) -> Result<bool, StoreError> {
        self.backend.put_job(job).await
    }

    pub async fn job(&self, name: &str) -> Result<Option<Job>, StoreError> {
        self.backend.job(name).await
    }

    /// Delete a definition; `false` when there was none.
    pub async fn delete_job(&self, name: &str) -> Result<bool, StoreError> {
        self.backend.delete_job(name).await
    }

    pub async fn jobs(&self, after: &str, limit: u32) -> Result<Vec<Job>, StoreError> {
        self.backend.jobs(after, limit).await
    }

    pub async fn due_jobs(&self, now: Millis, limit: u32) -> Result<Vec<Job>, StoreError> {
        self.backend.due_jobs(now, limit).await
    }

    pub async fn run(&self, id: RunId) -> Result<Option<Versioned<Run>>, StoreError> {
        self.backend.run(id).await
    }

    pub async fn runs(&self, query: &RunQuery) -> Result<Vec<Run>, StoreError> {
        self.backend.runs(query).await
    }

    pub async fn active_runs(
        &self,
        now: Millis,
        limit: u32,
    ) -> Result<Vec<Versioned<Run>>, StoreError> {
        self.backend.active_runs(now, limit).await
    }

    pub async fn occupying(&self, job: &str) -> Result<u32, StoreError> {
        self.backend.occupying(job).await
    }

    pub async fn compaction(
        &self,
        id: uuid::Uuid,
    ) -> Result<Option<Versioned<Compaction>>, StoreError> {
        self.backend.compaction(id).await
    }

    pub async fn pending_compaction(
        &self,
        table: &TableName,
    ) -> Result<Option<Versioned<Compaction>>, StoreError> {
        self.backend.pending_compaction(table).await
    }

    pub async fn compactions(
        &self,
        table: &TableName,
        before: Option<uuid::Uuid>,
        limit: u32,
    ) -> Result<Vec<Compaction>, StoreError> {
        self.backend.compactions(table, before, limit).await
    }

    pub async fn active_compactions(
        &self,
        limit: u32,
    ) -> Result<Vec<Versioned<Compaction>>, StoreError> {
        self.backend.active_compactions(limit).await
    }

    /// Write scheduling state all or nothing (versions compared, the fence
    /// checked); wakes nothing: the scheduler polls at its tick.
    pub async fn write_schedule(&self, write: &ScheduleWrite) -> Result<Written, StoreError> {
        self.backend.write_schedule(write).await
    }
}
