//! Long-polls: a waiting lease's caller is answered by the commit that
//! grants (or ends) it, not by polling. While the poll is open it counts as
//! the waiter's heartbeat.

use crate::error::ApiError;
use sluice_core::{LeaseCommand, LeaseId, LeaseReply, LeaseState};
use sluice_store::{LeaseView, Store, Wake};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// Wait until `view`'s lease leaves `waiting` or `wait` runs out. `wakes`
/// must have been subscribed before `view` was read.
pub async fn while_waiting(
    store: &Store,
    mut view: LeaseView,
    mut wakes: broadcast::Receiver<Wake>,
    wait: Duration,
) -> Result<LeaseView, ApiError> {
    let id = view.lease.id;
    let deadline = Instant::now() + wait;
    while view.lease.state == LeaseState::Waiting {
        let now = Instant::now();
        if now >= deadline {
            // Positions move as others leave; answer a fresh one.
            return fresh(store, id).await;
        }
        // Renew the waiter's place well before its TTL runs out.
        let renew_every = Duration::from_millis(u64::from(view.lease.ttl_seconds) * 500)
            .max(Duration::from_millis(500));
        let tick = deadline.min(now + renew_every);
        tokio::select! {
            wake = wakes.recv() => match wake {
                Ok(Wake::Changed(leases)) => {
                    if let Some(lease) = leases.iter().find(|l| l.id == id) {
                        view = LeaseView { lease: lease.clone(), position: None, stale: false };
                    }
                }
                Ok(Wake::Reload) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    view = fresh(store, id).await?;
                }
                Err(broadcast::error::RecvError::Closed) => return fresh(store, id).await,
            },
            _ = tokio::time::sleep_until(tick) => {
                if tick < deadline {
                    view = keep_waiting(store, id).await?;
                }
            }
        }
    }
    Ok(view)
}

/// Touch a waiting lease (the long-poll is its heartbeat) and read it back.
pub async fn keep_waiting(store: &Store, id: LeaseId) -> Result<LeaseView, ApiError> {
    execute_lease(store, LeaseCommand::KeepWaiting { lease_id: id }, None).await
}

/// Run a command that concerns one lease and answer that lease.
pub async fn execute_lease(
    store: &Store,
    command: LeaseCommand,
    actor: Option<String>,
) -> Result<LeaseView, ApiError> {
    let LeaseReply {
        lease, position, ..
    } = store.lease_command(command, actor).await??;
    Ok(LeaseView {
        lease,
        position,
        stale: false,
    })
}

async fn fresh(store: &Store, id: LeaseId) -> Result<LeaseView, ApiError> {
    store
        .lease(id)
        .await?
        .ok_or_else(|| sluice_core::RuleError::LeaseNotFound(id).into())
}
