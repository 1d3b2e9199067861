//! Expires leases in the background, so that a waiter blocked by a holder
//! that stopped heartbeating is let in soon after the holder's TTL ends,
//! even when nobody touches the table.

use crate::hub::Hub;
use crate::leases::Job;
use crate::ports::Backend;
use crate::writer::Slot;
use sluice_core::{Millis, TableCommand};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Longest sleep between two looks, in case a lease expiry was not seen
/// (another replica made it).
const MAX_SLEEP: Duration = Duration::from_secs(1);

pub(crate) fn spawn(
    backend: Arc<dyn Backend>,
    jobs: mpsc::Sender<Job>,
    hub: Arc<Hub>,
    planned: Arc<watch::Sender<Option<Millis>>>,
) -> tokio::task::JoinHandle<()> {
    let mut changes = planned.subscribe();
    tokio::spawn(async move {
        let mut rounds: u64 = 0;
        loop {
            let sleep = match backend.due().await {
                Ok(due) => {
                    let now = due.now;
                    for table in due.tables {
                        let (slot, answer) = Slot::new();
                        let job = Job::Table {
                            command: TableCommand::Sweep { table },
                            actor: None,
                            slot,
                        };
                        if jobs.send(job).await.is_err() {
                            return;
                        }
                        let _ = answer.await;
                    }
                    let until_next = due
                        .next_expiry
                        .map(|next| Duration::from_millis((next.0 - due.now.0).max(1) as u64));
                    let sleep = until_next.map_or(MAX_SLEEP, |d| d.min(MAX_SLEEP));
                    planned.send_replace(Some(Millis(now.0 + sleep.as_millis() as i64)));
                    sleep
                }
                Err(error) => {
                    tracing::warn!(%error, "sweeper could not read expiries");
                    MAX_SLEEP
                }
            };
            changes.mark_unchanged();
            // A commit that makes an earlier expiry wakes us early.
            let _ = tokio::time::timeout(sleep, changes.changed()).await;
            rounds += 1;
            if rounds.is_multiple_of(60) {
                hub.prune();
            }
        }
    })
}
