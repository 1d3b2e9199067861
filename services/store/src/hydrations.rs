//! Hydrations' entry points. Their commands run in the lease group
//! (`leases.rs`): a hydration and its read lease change in one batch.

use crate::error::StoreError;
use crate::leases::{HydrationCommand, HydrationReply, Job};
use crate::ports::HydrationQuery;
use crate::writer::{self, Answer};
use crate::{submit, Store};
use sluice_core::hydrations::{Hydration, HydrationId, LogView};
use sluice_core::snapshots::Reader;
use sluice_core::TableName;
use std::sync::Arc;

impl Store {
    /// `table`'s snapshot log and current snapshot, as the rules read them.
    pub async fn log_view(&self, table: &TableName) -> Result<LogView, StoreError> {
        let snapshots = self.backend.snapshot_log(table).await?;
        let current = self
            .backend
            .catalog_state(table)
            .await?
            .and_then(|c| c.current_snapshot_id);
        Ok(LogView { snapshots, current })
    }

    /// Run a hydration command on behalf of `actor` through group commit.
    pub async fn hydration_command(
        &self,
        command: HydrationCommand,
        actor: Option<String>,
    ) -> Answer<HydrationReply> {
        let (slot, answer) = writer::Slot::new();
        submit(
            &self.jobs,
            Job::Hydration {
                command: Box::new(command),
                actor,
                slot: Box::new(slot),
            },
            answer,
        )
        .await
    }

    /// Recompute the lag of `table`'s unfinished hydrations from its log
    /// (after a refresh changed it); how many changed.
    pub async fn relag(&self, table: &TableName) -> Result<u32, StoreError> {
        let log = Arc::new(self.log_view(table).await?);
        let (slot, answer) = writer::Slot::new();
        let job = Job::Relag {
            table: table.clone(),
            log,
            slot,
        };
        // The table exists (it was refreshed): the rules cannot refuse.
        Ok(submit(&self.jobs, job, answer).await?.unwrap_or(0))
    }

    pub async fn hydration(&self, id: HydrationId) -> Result<Option<Hydration>, StoreError> {
        self.backend.hydration(id).await
    }

    pub async fn hydrations(&self, query: &HydrationQuery) -> Result<Vec<Hydration>, StoreError> {
        self.backend.hydrations(query).await
    }

    /// The pins of `table`'s copies past their first hydration, as
    /// retention counts readers: what they applied last must not be
    /// expired, or they could not follow the table from it.
    pub async fn follower_readers(&self, table: &TableName) -> Result<Vec<Reader>, StoreError> {
        let open = self.backend.open_hydrations(table).await?;
        Ok(open
            .iter()
            .filter_map(|h| {
                h.pin().map(|pin| Reader {
                    pin: Some(pin),
                    granted_at: h.created_at,
                })
            })
            .collect())
    }
}
