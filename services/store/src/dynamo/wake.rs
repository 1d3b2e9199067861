//! Wake-ups across replicas. DynamoDB pushes nothing to a client (Streams
//! would need a shard reader per replica and a second API), so each
//! replica reads the event counter, strongly consistent, every
//! [`WAKE_INTERVAL`]; when it moved, it reads the new events and wakes the
//! long-polls on their tables. A commit is heard by the other replicas
//! within one interval plus two reads; each idle replica costs ten small
//! reads a second.

use super::items::{doc, padded, Range};
use super::write::EVENTS;
use super::{DynamoBackend, WAKE_INTERVAL};
use crate::error::StoreError;
use crate::hub::{Hub, Wake};
use sluice_core::Event;
use std::sync::Arc;

/// Most events read per look; past that, everyone re-reads.
const MAX_EVENTS_PER_LOOK: usize = 1000;
/// Ranges of own appends remembered.
const OWN_KEPT: usize = 4096;

impl DynamoBackend {
    /// Remember that this replica appended `count` events from `first`:
    /// its own long-polls were woken by its writer already.
    pub(super) fn own(&self, first: i64, count: usize) {
        if count == 0 {
            return;
        }
        let mut own = self.own_events.lock().expect("own events");
        if own.len() >= OWN_KEPT {
            own.pop_front();
        }
        own.push_back((first, first + count as i64 - 1));
    }

    fn is_own(&self, id: i64) -> bool {
        let own = self.own_events.lock().expect("own events");
        own.iter().any(|(a, b)| (*a..=*b).contains(&id))
    }

    /// Start hearing the other replicas' commits.
    pub(crate) async fn watch(
        self: Arc<Self>,
        hub: Arc<Hub>,
    ) -> Result<tokio::task::JoinHandle<()>, StoreError> {
        let mut seen = self.read_counter().await?;
        Ok(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(WAKE_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match self.look(&hub, seen).await {
                    Ok(newest) => seen = newest,
                    Err(error) => {
                        tracing::warn!(%error, "reading DynamoDB for other replicas' commits");
                    }
                }
            }
        }))
    }

    /// Wake the tables of events after `seen`; the newest id heard.
    async fn look(&self, hub: &Hub, seen: i64) -> Result<i64, StoreError> {
        let newest = self.read_counter().await?;
        if newest <= seen {
            return Ok(seen);
        }
        if (seen + 1..=newest).all(|id| self.is_own(id)) {
            // Only this replica appended: its long-polls were woken.
            return Ok(newest);
        }
        if newest - seen > MAX_EVENTS_PER_LOOK as i64 {
            hub.reload_all();
            return Ok(newest);
        }
        let items = self
            .query(
                EVENTS,
                Range::After(padded(seen)),
                true,
                MAX_EVENTS_PER_LOOK,
                |_| true,
            )
            .await?;
        let mut heard = seen;
        for item in &items {
            let event: Event = doc(item)?;
            heard = heard.max(event.id);
            if self.is_own(event.id) {
                continue;
            }
            if let Some(table) = &event.event.table {
                hub.publish(table, Wake::Reload);
            }
        }
        // Ids the counter gave but whose items a read did not see yet
        // cannot exist: they commit in the counter's transaction.
        Ok(heard.max(newest))
    }
}
