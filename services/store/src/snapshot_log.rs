//! The table snapshot log's database-neutral half. A refresh reads a
//! table's metadata through the catalog port, compares it with the log by
//! the core's rule, and records what changed in one transaction.
//!
//! The watcher keeps the logs fresh at a cost that follows changes, not
//! tables. On the leader only, a reconcile pass lists each catalog's
//! tables with their metadata locations (Glue: a `GetTables` page per 100
//! tables of a database; the SQL catalog: one query) and reads metadata
//! only for the tables whose location moved; a catalog without a listing
//! (REST) has each table read. Every catalog call, listings, reads and
//! nudged refreshes alike, is spent from one budget, and the passes are
//! spaced so that listings take at most half of it. On every replica, a
//! nudged table (a batch or a progress report named a snapshot the log
//! does not hold) is refreshed at once.

use crate::error::StoreError;
use crate::leadership::Leadership;
use crate::ports::SnapshotChanges;
use crate::stats::PassOutcome;
use crate::Store;
use futures::StreamExt;
use sluice_core::rate::Bucket;
use sluice_core::snapshots::{
    self, reconcile, CatalogError, CatalogPort, Cause, Freshness, Known, Listed, Listing, Verdict,
};
use sluice_core::{EventKind, NewEvent, TableName};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
        cause: Cause,
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
                refreshed_by: cause,
                event,
            }
        };
        let changes = self
            .backend
            .record_refresh(table, &catalog, &mut apply)
            .await?;
        self.stats.refreshed(cause);
        if changes.event.is_some() {
            // New or expired snapshots move the lag of its hydrations (and
            // may make one stale).
            self.relag(table).await?;
        }
        Ok(Refreshed { catalog, changes })
    }

    /// As of when `table`'s log is known to match its catalog, and why:
    /// its last refresh, or its catalog's last listing pass if that
    /// confirmed it later. `None` before either.
    pub async fn log_freshness(&self, table: &TableName) -> Result<Option<Freshness>, StoreError> {
        let Some(state) = self.backend.catalog_state(table).await? else {
            return Ok(None);
        };
        let listed = self.backend.catalog_listing(&state.catalog).await?;
        // A refresh recorded before causes were kept: on demand or a batch
        // then (the watcher read every table), called on demand here.
        let refreshed = state
            .refreshed_at
            .map(|at| (at, state.refreshed_by.unwrap_or(Cause::OnDemand)));
        Ok(reconcile::freshness(
            table.as_str(),
            refreshed,
            state.error.is_some(),
            listed.as_ref(),
        ))
    }
}

/// Asks the watcher to refresh a table soon.
#[derive(Clone)]
pub struct Nudges(mpsc::Sender<(TableName, Option<i64>)>);

impl Nudges {
    /// Nudges that go nowhere (no catalog is configured, so no watcher).
    pub fn nowhere() -> Nudges {
        Nudges(mpsc::channel(1).0)
    }

    /// `table` has a snapshot `snapshot_id` (a batch or a progress report
    /// said so): refresh the table unless the log holds it already. Never
    /// waits: when the watcher is busy, its next round catches up.
    pub fn saw(&self, table: TableName, snapshot_id: i64) {
        let _ = self.0.try_send((table, Some(snapshot_id)));
    }

    /// `table` changed in its catalog (an AWS event said so): refresh it.
    /// Never waits, as `saw`.
    pub fn changed(&self, table: TableName) {
        let _ = self.0.try_send((table, None));
    }
}

/// How the watcher spends catalog calls.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// The shortest time between two reconcile passes.
    pub interval: Duration,
    /// Catalog calls a second, for all tables: listing pages, metadata
    /// reads and nudged refreshes.
    pub catalog_calls_per_second: f64,
}

/// Reads at most this many tables' metadata at once.
const CONCURRENT_REFRESHES: usize = 8;
/// Lists at most this many namespaces at once.
const CONCURRENT_LISTINGS: usize = 8;
/// Registered tables and recorded states are read in pages of this many.
const PAGE: u32 = 1_000;

/// The calls budget, shared by the reconcile and the nudges.
struct Budget(tokio::sync::Mutex<Bucket>);

impl Budget {
    /// Wait for one call's token.
    async fn spend(&self) {
        loop {
            let wait = match self.0.lock().await.take_or_wait(Instant::now()) {
                Ok(()) => return,
                Err(wait) => wait,
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Start the watcher: the reconcile on the leader, nudges everywhere.
pub fn spawn_watcher(
    store: Store,
    catalogs: Arc<dyn CatalogPort>,
    config: WatchConfig,
    leadership: Leadership,
) -> (Nudges, tokio::task::JoinHandle<()>) {
    let (tx, nudged) = mpsc::channel::<(TableName, Option<i64>)>(1024);
    let budget = Arc::new(Budget(tokio::sync::Mutex::new(Bucket::new(
        config.catalog_calls_per_second,
        Instant::now(),
    ))));
    store
        .stats
        .catalog_budget(config.catalog_calls_per_second.max(0.1));
    let task = tokio::spawn(async move {
        tokio::join!(
            reconcile_while_leading(&store, catalogs.as_ref(), &config, &budget, leadership),
            refresh_nudged(&store, catalogs.as_ref(), &budget, nudged),
        );
    });
    (Nudges(tx), task)
}

async fn refresh_nudged(
    store: &Store,
    catalogs: &dyn CatalogPort,
    budget: &Budget,
    mut nudged: mpsc::Receiver<(TableName, Option<i64>)>,
) {
    while let Some((table, snapshot)) = nudged.recv().await {
        if let Some(snapshot) = snapshot {
            if matches!(store.backend.has_snapshot(&table, snapshot).await, Ok(true)) {
                continue;
            }
        }
        // A snapshot named: a batch or a progress report; none: an event.
        let cause = match snapshot {
            Some(_) => Cause::Batch,
            None => Cause::Event,
        };
        read(store, catalogs, budget, &table, cause).await;
    }
}

/// One table's metadata read and recorded, within the budget.
async fn read(
    store: &Store,
    catalogs: &dyn CatalogPort,
    budget: &Budget,
    table: &TableName,
    cause: Cause,
) -> bool {
    budget.spend().await;
    store.stats.catalog_call("read");
    match store.refresh_snapshots(catalogs, table, None, cause).await {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(%table, error = %e, "refresh failed");
            false
        }
    }
}

async fn reconcile_while_leading(
    store: &Store,
    catalogs: &dyn CatalogPort,
    config: &WatchConfig,
    budget: &Budget,
    mut leadership: Leadership,
) {
    let mut said: Option<(usize, Duration)> = None;
    loop {
        leadership.until_leading().await;
        let began = Instant::now();
        let began_at = crate::system_now();
        let interval = match Pass::plan(store, catalogs).await {
            Ok(pass) => {
                let listing_calls = pass.listing_calls(catalogs);
                let interval = reconcile::interval(
                    listing_calls,
                    config.catalog_calls_per_second,
                    config.interval,
                );
                if said != Some((pass.tables, interval)) {
                    tracing::info!(
                        tables = pass.tables,
                        listing_calls,
                        calls_per_second = config.catalog_calls_per_second,
                        "snapshot logs reconciled every {:.1} s",
                        interval.as_secs_f64()
                    );
                    said = Some((pass.tables, interval));
                }
                store.stats.reconcile_planned(pass.tables, interval);
                let outcome = pass.run(store, catalogs, budget, &leadership).await;
                store.stats.reconciled(&outcome, began_at, began.elapsed());
                interval
            }
            Err(error) => {
                tracing::warn!(%error, "reading the tables to reconcile failed");
                config.interval
            }
        };
        tokio::time::sleep_until((began + interval).into()).await;
    }
}

/// One reconcile pass: the registered tables, by catalog and namespace,
/// with what the log last read of each.
struct Pass {
    tables: usize,
    /// Catalog -> namespace -> its tables.
    groups: BTreeMap<String, BTreeMap<String, Vec<TableName>>>,
    known: HashMap<String, Known>,
}

impl Pass {
    async fn plan(store: &Store, catalogs: &dyn CatalogPort) -> Result<Pass, StoreError> {
        let mut pass = Pass {
            tables: 0,
            groups: BTreeMap::new(),
            known: HashMap::new(),
        };
        let mut after: Option<String> = None;
        loop {
            let page = store.tables(after.as_deref(), PAGE, &[]).await?;
            let full = page.len() == PAGE as usize;
            after = page.last().map(|t| t.state.name.to_string());
            for summary in page {
                let state = summary.state;
                let Some(catalog) = state
                    .settings
                    .catalog
                    .or_else(|| catalogs.default_catalog().map(str::to_owned))
                else {
                    continue;
                };
                let (namespace, _) = state.name.as_str().rsplit_once('.').unwrap_or(("", ""));
                pass.groups
                    .entry(catalog)
                    .or_default()
                    .entry(namespace.to_owned())
                    .or_default()
                    .push(state.name.clone());
                pass.tables += 1;
            }
            if !full {
                break;
            }
        }
        let mut after = String::new();
        loop {
            let page = store.backend.catalog_states(&after, PAGE).await?;
            let full = page.len() == PAGE as usize;
            if let Some(last) = page.last() {
                after = last.table.to_string();
            }
            for state in page {
                pass.known.insert(
                    state.table.as_str().to_lowercase(),
                    Known {
                        metadata_location: state.metadata_location,
                        error: state.error,
                    },
                );
            }
            if !full {
                break;
            }
        }
        Ok(pass)
    }

    /// What listing every catalog costs, by what each offers.
    fn listing_calls(&self, catalogs: &dyn CatalogPort) -> u64 {
        self.groups
            .iter()
            .map(|(catalog, namespaces)| match catalogs.listing(catalog) {
                Listing::Catalog => 1,
                Listing::Namespace { page } => namespaces
                    .values()
                    .map(|t| reconcile::pages(t.len(), page))
                    .sum(),
                Listing::None => namespaces.values().map(|t| t.len() as u64).sum(),
            })
            .sum()
    }

    /// List, compare, read what moved. Stops early when leadership is
    /// lost.
    async fn run(
        &self,
        store: &Store,
        catalogs: &dyn CatalogPort,
        budget: &Budget,
        leadership: &Leadership,
    ) -> PassOutcome {
        let mut outcome = PassOutcome::default();
        let began = crate::system_now();
        let mut reads: Vec<&TableName> = Vec::new();
        // Catalogs listed (at least in part), with the namespaces that were not.
        let mut confirmed: Vec<(String, Vec<String>)> = Vec::new();
        for (catalog, namespaces) in &self.groups {
            let listing = catalogs.listing(catalog);
            let mut listed: HashMap<String, Option<String>> = HashMap::new();
            let mut unlisted: HashSet<String> = HashSet::new();
            match listing {
                Listing::None => {
                    reads.extend(namespaces.values().flatten());
                    continue;
                }
                Listing::Catalog => {
                    match list(store, catalogs, budget, leadership, catalog, None).await {
                        Some(tables) => listed.extend(tables),
                        None => {
                            outcome.unconfirmed += namespaces.values().map(Vec::len).sum::<usize>();
                            continue;
                        }
                    }
                    confirmed.push((catalog.clone(), Vec::new()));
                }
                Listing::Namespace { .. } => {
                    // Side by side: a listing call's time is mostly waiting.
                    let names: Vec<String> = namespaces.keys().cloned().collect();
                    let pages: Vec<_> = futures::stream::iter(names)
                        .map(|ns| async move {
                            let tables =
                                list(store, catalogs, budget, leadership, catalog, Some(&ns)).await;
                            (ns, tables)
                        })
                        .buffer_unordered(CONCURRENT_LISTINGS)
                        .collect()
                        .await;
                    for (namespace, tables) in pages {
                        match tables {
                            Some(tables) => listed.extend(tables),
                            None => {
                                unlisted.insert(namespace);
                            }
                        }
                    }
                    if unlisted.len() < namespaces.len() {
                        let mut failed: Vec<String> = unlisted.iter().cloned().collect();
                        failed.sort();
                        confirmed.push((catalog.clone(), failed));
                    }
                }
            }
            for (namespace, tables) in namespaces {
                if unlisted.contains(namespace) {
                    outcome.unconfirmed += tables.len();
                    continue;
                }
                for table in tables {
                    let key = table.as_str().to_lowercase();
                    let entry = listed.get(&key).map(Option::as_deref);
                    let missing = CatalogError::NoSuchTable {
                        catalog: catalog.clone(),
                        table: table.to_string(),
                    }
                    .to_string();
                    match reconcile::verdict(self.known.get(&key), entry, &missing) {
                        Verdict::Unchanged if known_failing(self.known.get(&key)) => {
                            outcome.unconfirmed += 1;
                        }
                        Verdict::Unchanged => {}
                        Verdict::Read => reads.push(table),
                        Verdict::Missing => {
                            outcome.unconfirmed += 1;
                            let at = crate::system_now();
                            let recorded = store
                                .backend
                                .record_refresh_error(table, catalog, &missing, at)
                                .await;
                            if let Err(e) = recorded {
                                tracing::warn!(%table, error = %e, "recording a missing table failed");
                            }
                        }
                    }
                }
            }
        }
        outcome.moved = reads.len() as u64;
        let failures = std::sync::atomic::AtomicUsize::new(0);
        futures::stream::iter(reads)
            .for_each_concurrent(CONCURRENT_REFRESHES, |table| {
                let failures = &failures;
                async move {
                    let read = leadership.leading()
                        && read(store, catalogs, budget, table, Cause::Listing).await;
                    if !read {
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
            .await;
        let failed = failures.into_inner();
        outcome.unconfirmed += failed;
        outcome.confirmed = !confirmed.is_empty() || failed < outcome.moved as usize;
        // Each listed catalog's tables that did not move are confirmed as
        // of the pass's start: one write per catalog, none per table. After
        // the reads, so that a moved table is never shown fresh before it
        // was read.
        if leadership.leading() {
            for (catalog, unlisted) in confirmed {
                let listed = Listed {
                    at: began,
                    unlisted,
                };
                if let Err(e) = store.backend.record_listing(&catalog, &listed).await {
                    tracing::warn!(catalog, error = %e, "recording a listing pass failed");
                }
            }
        }
        outcome
    }
}

/// A table whose last refresh failed and that the listing left alone (a
/// missing table already recorded, a non-Iceberg entry): not confirmed.
fn known_failing(known: Option<&Known>) -> bool {
    known.is_some_and(|k| k.error.is_some())
}

/// Every page of one listing; `None` when it failed (its tables wait for
/// the next pass) or leadership was lost.
async fn list(
    store: &Store,
    catalogs: &dyn CatalogPort,
    budget: &Budget,
    leadership: &Leadership,
    catalog: &str,
    namespace: Option<&str>,
) -> Option<Vec<(String, Option<String>)>> {
    let mut listed = Vec::new();
    let mut next: Option<String> = None;
    loop {
        budget.spend().await;
        if !leadership.leading() {
            return None;
        }
        store.stats.catalog_call("listing");
        match catalogs
            .list_page(catalog, namespace, next.as_deref())
            .await
        {
            Ok(page) => {
                listed.extend(page.tables);
                next = page.next;
                if next.is_none() {
                    return Some(listed);
                }
            }
            Err(error) => {
                tracing::warn!(catalog, namespace, %error, "listing a catalog failed");
                return None;
            }
        }
    }
}
