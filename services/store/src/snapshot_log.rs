//! The table snapshot log's database-neutral half. A refresh reads a
//! table's metadata through the catalog port, compares it with the log by
//! the core's rule, and records what changed in one transaction; the
//! watcher refreshes every registered table at an interval, and sooner the
//! tables it is nudged about (a batch or a progress report named a
//! snapshot the log does not hold).

use crate::error::StoreError;
use crate::ports::SnapshotChanges;
use crate::Store;
use futures::StreamExt;
use sluice_core::snapshots::{self, CatalogError, CatalogPort};
use sluice_core::{EventKind, NewEvent, TableName};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("table `{0}` is not registered")]
    NotRegistered(TableName),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A refresh that went through.
#[derive(Debug, Clone)]
pub struct Refreshed {
    pub catalog: String,
    pub changes: SnapshotChanges,
}

/// Snapshot ids an event names at most (a first refresh of an old table
/// can add thousands; the log has them all).
const EVENT_IDS: usize = 100;

impl Store {
    /// Read `table`'s metadata from its catalog and bring the log up to
    /// date. A catalog failure is recorded on the table (and returned); the
    /// log keeps what the last success read.
    pub async fn refresh_snapshots(
        &self,
        catalogs: &dyn CatalogPort,
        table: &TableName,
        actor: Option<&str>,
    ) -> Result<Refreshed, RefreshError> {
        let named = self
            .backend
            .table_settings(table)
            .await?
            .ok_or_else(|| RefreshError::NotRegistered(table.clone()))?;
        let catalog = named
            .catalog
            .or_else(|| catalogs.default_catalog().map(str::to_owned))
            .ok_or(CatalogError::NoDefaultCatalog)?;
        let metadata = match catalogs.table_metadata(&catalog, table).await {
            Ok(metadata) => metadata,
            Err(e) => {
                self.backend
                    .record_refresh_error(table, &catalog, &e.to_string(), crate::system_now())
                    .await?;
                return Err(e.into());
            }
        };
        let mut apply = |known: Vec<(i64, bool)>, now| {
            let refresh = snapshots::refresh(&known, &metadata.snapshots);
            let event = (!refresh.added.is_empty() || !refresh.expired.is_empty()).then(|| {
                let added: Vec<i64> = refresh.added.iter().map(|s| s.id).collect();
                NewEvent {
                    at: now,
                    kind: EventKind::TableSnapshotsChanged,
                    table: Some(table.clone()),
                    lease_id: None,
                    stream: None,
                    data: serde_json::json!({
                        "catalog": catalog,
                        "current_snapshot_id": metadata.current_snapshot_id,
                        "added": added.len(),
                        "added_ids": &added[added.len().saturating_sub(EVENT_IDS)..],
                        "expired": refresh.expired.len(),
                        "expired_ids": &refresh.expired[..refresh.expired.len().min(EVENT_IDS)],
                    }),
                    actor: actor.map(str::to_owned),
                }
            });
            SnapshotChanges {
                refresh,
                metadata_location: metadata.metadata_location.clone(),
                current_snapshot_id: metadata.current_snapshot_id,
                refreshed_at: now,
                event,
            }
        };
        let changes = self
            .backend
            .record_refresh(table, &catalog, &mut apply)
            .await?;
        if changes.event.is_some() {
            // New or expired snapshots move the lag of its hydrations (and
            // may make one stale).
            self.relag(table).await?;
        }
        Ok(Refreshed { catalog, changes })
    }
}

/// Asks the watcher to refresh a table soon.
#[derive(Clone)]
pub struct Nudges(mpsc::Sender<(TableName, i64)>);

impl Nudges {
    /// Nudges that go nowhere (no catalog is configured, so no watcher).
    pub fn nowhere() -> Nudges {
        Nudges(mpsc::channel(1).0)
    }

    /// `table` has a snapshot `snapshot_id` (a batch or a progress report
    /// said so): refresh the table unless the log holds it already. Never
    /// waits: when the watcher is busy, its next round catches up.
    pub fn saw(&self, table: TableName, snapshot_id: i64) {
        let _ = self.0.try_send((table, snapshot_id));
    }
}

/// Refreshes at most this many tables at once.
const CONCURRENT_REFRESHES: usize = 8;

/// Refresh every registered table every `interval`, and a nudged table at
/// once. Each replica runs one (refreshes are idempotent; the log's rows
/// are locked while one is recorded).
pub fn spawn_watcher(
    store: Store,
    catalogs: Arc<dyn CatalogPort>,
    interval: Duration,
) -> (Nudges, tokio::task::JoinHandle<()>) {
    let (tx, mut nudged) = mpsc::channel::<(TableName, i64)>(1024);
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => refresh_all(&store, catalogs.as_ref()).await,
                Some((table, snapshot)) = nudged.recv() => {
                    if matches!(store.backend.has_snapshot(&table, snapshot).await, Ok(true)) {
                        continue;
                    }
                    if let Err(e) = store.refresh_snapshots(catalogs.as_ref(), &table, None).await {
                        tracing::debug!(%table, error = %e, "nudged refresh failed");
                    }
                }
            }
        }
    });
    (Nudges(tx), task)
}

async fn refresh_all(store: &Store, catalogs: &dyn CatalogPort) {
    let mut after: Option<String> = None;
    loop {
        let page = match store.tables(after.as_deref(), 500, &[]).await {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "listing tables to refresh failed");
                return;
            }
        };
        let Some(last) = page.last() else { return };
        after = Some(last.state.name.to_string());
        let full = page.len() == 500;
        futures::stream::iter(page)
            .for_each_concurrent(CONCURRENT_REFRESHES, |summary| async move {
                let table = summary.state.name;
                if let Err(e) = store.refresh_snapshots(catalogs, &table, None).await {
                    tracing::debug!(%table, error = %e, "refresh failed");
                }
            })
            .await;
        if !full {
            return;
        }
    }
}
