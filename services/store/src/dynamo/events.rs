//! The event log on DynamoDB: `events` / ID (zero-padded, so the partition
//! sorts by id), appended by `write.rs` with the counter `counter` /
//! `events` in the same transaction.

use super::items::{doc, padded, text, Range};
use super::write::EVENTS;
use super::{in_scopes, DynamoBackend, SYSTEM_PREFIX};
use crate::error::StoreError;
use crate::ports::{EventPort, EventQuery};
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::{Event, Millis};

/// Whether `event` answers `q`, as the SQL backends' WHERE clause says.
fn wanted(q: &EventQuery, event: &Event) -> bool {
    let e = &event.event;
    let table = e.table.as_ref().map(|t| t.as_str());
    let stream = e.stream.as_ref().map(|s| s.as_str());
    q.table.as_ref().is_none_or(|t| table == Some(t.as_str()))
        && q.kind.is_none_or(|k| e.kind == k)
        && q.stream.as_ref().is_none_or(|s| stream == Some(s.as_str()))
        // A stream's event needs its stream and its table in scope.
        && table.is_none_or(|t| in_scopes(t, &q.scopes))
        && stream.is_none_or(|s| in_scopes(s, &q.scopes))
        // sluice's own tables only when asked by name.
        && (q.table.is_some() || table.is_none_or(|t| !t.starts_with(SYSTEM_PREFIX)))
}

impl EventPort for DynamoBackend {
    fn events<'a>(&'a self, q: &'a EventQuery) -> BoxFuture<'a, Result<Vec<Event>, StoreError>> {
        async move {
            let mut bad = None;
            // Filtered as read: the log is walked from `after` on until a
            // page is full (the SQL backends use indexes; here a filter
            // that matches rarely reads far).
            let items = self
                .query(
                    EVENTS,
                    Range::After(padded(q.after)),
                    true,
                    q.limit as usize,
                    |item| match doc::<Event>(item) {
                        Ok(event) => wanted(q, &event),
                        Err(e) => {
                            bad = Some(e);
                            false
                        }
                    },
                )
                .await?;
            if let Some(e) = bad {
                return Err(e);
            }
            items.iter().map(doc).collect()
        }
        .boxed()
    }

    fn newest_event_id(&self) -> BoxFuture<'_, Result<i64, StoreError>> {
        async move { self.read_counter().await }.boxed()
    }

    fn prune_events(
        &self,
        before: Millis,
        keep_last: i64,
        limit: u32,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            let newest = self.read_counter().await?;
            let last = newest - keep_last;
            // The oldest `limit` by id, of which those written before the
            // cutoff: ids follow commit order, so the walk stays at the
            // start of the log.
            let oldest = self
                .query(EVENTS, Range::All, true, limit as usize, |_| true)
                .await?;
            let mut keys = Vec::new();
            for item in &oldest {
                let sk = text(item, "sk")?;
                let id: i64 = sk.parse().unwrap_or(i64::MAX);
                let event: Event = doc(item)?;
                if id <= last && event.event.at < before {
                    keys.push((EVENTS.to_owned(), sk.to_owned()));
                }
            }
            self.delete_many(&keys).await
        }
        .boxed()
    }
}
