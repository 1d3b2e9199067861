//! Who leads the background work. The scheduler's loop holds the leader
//! lease (`sluice-scheduler`'s `leader.rs`) and publishes, every tick, its
//! fence and until when it is surely valid by this process's clock; the
//! snapshot watcher's reconcile and the outbox's executor read it and act
//! only while it holds, so a follower replica makes no catalog or AWS call
//! and a deposed leader stops within its margin.

use crate::ports::Fence;
use std::time::Instant;
use tokio::sync::watch;

/// The fence and the instant after which it may no longer hold.
type Held = Option<(Fence, Instant)>;

/// What the loop that holds the lease publishes through.
pub struct Publish(watch::Sender<Held>);

/// What the background tasks read. Cheap to clone.
#[derive(Clone)]
pub struct Leadership(watch::Receiver<Held>);

/// A channel from the leader lease's loop to the tasks that follow it.
pub fn leadership() -> (Publish, Leadership) {
    let (tx, rx) = watch::channel(None);
    (Publish(tx), Leadership(rx))
}

impl Publish {
    /// This replica leads with `fence` until `until` (or does not: `None`).
    pub fn set(&self, held: Option<(Fence, Instant)>) {
        self.0.send_if_modified(|now| {
            let changed = now.map(|h| h.0) != held.map(|h| h.0);
            *now = held;
            changed
        });
    }
}

impl Leadership {
    /// The fence while this replica leads with time to spare for a call of
    /// `call`.
    pub fn fence_for(&self, call: std::time::Duration) -> Option<Fence> {
        let held = *self.0.borrow();
        held.filter(|(_, until)| Instant::now() + call < *until)
            .map(|(fence, _)| fence)
    }

    /// Whether this replica leads now.
    pub fn leading(&self) -> bool {
        self.fence_for(std::time::Duration::ZERO).is_some()
    }

    /// Wait until this replica leads (at once when it does). Wakes on a
    /// change of leader, or every second to see a lease run out.
    pub async fn until_leading(&mut self) {
        while !self.leading() {
            let second = std::time::Duration::from_secs(1);
            if let Ok(Err(_)) = tokio::time::timeout(second, self.0.changed()).await {
                // The lease's loop is gone (shutdown): nothing will change.
                tokio::time::sleep(second).await;
            }
        }
    }
}
