//! The snapshot watcher's reconcile on every backend, against a catalog
//! of the test's own that counts its calls: only moved tables are read,
//! missing ones are recorded without a call, and nothing happens while
//! this replica does not lead.

use crate::support::{every, put_table, table};
use sluice_core::snapshots::{
    CatalogFuture, CatalogPort, Cause, ListFuture, ListedPage, Listing, Snapshot, TableMetadata,
    TagFuture, TagTarget,
};
use sluice_core::{LeaseId, Millis, TableName};
use sluice_store::{leadership, Fence, Store, WatchConfig};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A catalog in memory: table -> its metadata version. Each version is a
/// snapshot (id = version) at a location of its own.
#[derive(Default)]
struct Counting {
    tables: Mutex<BTreeMap<String, i64>>,
    lists: Mutex<u64>,
    reads: Mutex<Vec<String>>,
}

impl Counting {
    fn set(&self, name: &str, version: i64) {
        self.tables.lock().unwrap().insert(name.to_owned(), version);
    }
    fn lists(&self) -> u64 {
        *self.lists.lock().unwrap()
    }
    fn reads(&self) -> Vec<String> {
        self.reads.lock().unwrap().clone()
    }
}

fn location(name: &str, version: i64) -> String {
    format!("mem://{name}/{version}.metadata.json")
}

impl CatalogPort for Counting {
    fn default_catalog(&self) -> Option<&str> {
        Some("mem")
    }
    fn listing(&self, _catalog: &str) -> Listing {
        Listing::Namespace { page: 2 }
    }
    fn list_page<'a>(
        &'a self,
        _catalog: &'a str,
        namespace: Option<&'a str>,
        next: Option<&'a str>,
    ) -> ListFuture<'a> {
        Box::pin(async move {
            *self.lists.lock().unwrap() += 1;
            let prefix = format!("{}.", namespace.unwrap());
            let all: Vec<(String, Option<String>)> = self
                .tables
                .lock()
                .unwrap()
                .iter()
                .filter(|(name, _)| name.starts_with(&prefix))
                .map(|(name, v)| (name.clone(), Some(location(name, *v))))
                .collect();
            let from: usize = next.map_or(0, |n| n.parse().unwrap());
            let page = all[from..].iter().take(2).cloned().collect();
            let next = (from + 2 < all.len()).then(|| (from + 2).to_string());
            Ok(ListedPage { tables: page, next })
        })
    }
    fn table_metadata<'a>(&'a self, _catalog: &'a str, table: &'a TableName) -> CatalogFuture<'a> {
        Box::pin(async move {
            let name = table.to_string();
            self.reads.lock().unwrap().push(name.clone());
            let version = self.tables.lock().unwrap()[&name];
            Ok(TableMetadata {
                metadata_location: Some(location(&name, version)),
                current_snapshot_id: Some(version),
                snapshots: vec![Snapshot {
                    id: version,
                    parent_id: None,
                    sequence_number: version,
                    timestamp: Millis(1_700_000_000_000 + version),
                    operation: "append".into(),
                    summary: BTreeMap::new(),
                    expired_at: None,
                }],
            })
        })
    }
    fn pin_tags(&self, _catalog: &str) -> bool {
        false
    }
    fn set_tag<'a>(
        &'a self,
        _catalog: &'a str,
        _table: &'a TableName,
        _name: &'a str,
        _target: Option<TagTarget>,
    ) -> TagFuture<'a> {
        Box::pin(async { Ok(false) })
    }
}

/// The passes this store's watcher finished, from its metrics.
fn passes(store: &Store) -> u64 {
    let mut text = String::new();
    store.stats().render(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix("sluice_snapshot_reconcile_passes_total "))
        .map_or(0, |n| n.parse::<f64>().unwrap() as u64)
}

async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Wait for two more passes: one that began after the call, and its end.
async fn two_passes(store: &Store) {
    let from = passes(store);
    until("two more passes", || passes(store) >= from + 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_reads_only_what_moved_and_only_while_leading() {
    for b in every().await {
        let store = &b.store;
        let catalog = std::sync::Arc::new(Counting::default());
        for name in ["a.t0", "a.t1", "a.t2", "a.t3", "a.t4", "b.x"] {
            catalog.set(name, 1);
            put_table(store, name).await;
        }
        put_table(store, "c.gone").await;
        let (publish, following) = leadership();
        let fence = Fence {
            lease_id: LeaseId::new_v7(),
            token: 1,
        };
        publish.set(Some((fence, Instant::now() + Duration::from_secs(3600))));
        let config = WatchConfig {
            interval: Duration::from_millis(20),
            catalog_calls_per_second: 10_000.0,
        };
        let (nudges, watcher) =
            sluice_store::spawn_watcher(store.clone(), catalog.clone(), config, following);

        // The first passes read every table once; the missing one is
        // recorded without a read.
        until("every table read", || catalog.reads().len() >= 6).await;
        two_passes(store).await;
        let mut reads = catalog.reads();
        reads.sort();
        assert_eq!(
            reads,
            ["a.t0", "a.t1", "a.t2", "a.t3", "a.t4", "b.x"],
            "{}",
            b.name
        );
        let gone = store
            .catalog_state(&table("c.gone"))
            .await
            .unwrap()
            .unwrap();
        assert!(
            gone.error
                .as_deref()
                .is_some_and(|e| e.contains("has no table")),
            "{}: {gone:?}",
            b.name
        );
        // Each pass: 3 pages of namespace a, 1 of b, 1 of c (empty).
        let lists = catalog.lists();
        two_passes(store).await;
        let per_pass = (catalog.lists() - lists) as f64 / 2.0;
        assert!((4.0..=7.5).contains(&per_pass), "{}: {per_pass}", b.name);
        assert_eq!(
            catalog.reads().len(),
            6,
            "{}: quiet passes read nothing",
            b.name
        );

        // One table moves: one read, and the log has its new snapshot.
        catalog.set("a.t3", 2);
        until("the moved table read", || catalog.reads().len() == 7).await;
        two_passes(store).await;
        assert_eq!(catalog.reads().len(), 7, "{}", b.name);
        assert_eq!(catalog.reads()[6], "a.t3");
        let state = store.catalog_state(&table("a.t3")).await.unwrap().unwrap();
        assert_eq!(state.current_snapshot_id, Some(2), "{}", b.name);
        assert_eq!(state.metadata_location, Some(location("a.t3", 2)));
        assert_eq!(state.refreshed_by, Some(Cause::Listing), "{}", b.name);

        // Freshness: tables the listing left alone are confirmed by each
        // pass, with no write of theirs; a missing one is not.
        let quiet = table("a.t0");
        let before = store.catalog_state(&quiet).await.unwrap().unwrap();
        let pass_began = sluice_store::system_now();
        two_passes(store).await;
        let fresh = store.log_freshness(&quiet).await.unwrap().unwrap();
        assert_eq!(fresh.by, Cause::Listing, "{}", b.name);
        assert!(fresh.checked_at >= pass_began, "{}: {fresh:?}", b.name);
        let after = store.catalog_state(&quiet).await.unwrap().unwrap();
        assert_eq!(after.refreshed_at, before.refreshed_at, "{}", b.name);
        let gone = store.log_freshness(&table("c.gone")).await.unwrap();
        assert_eq!(gone, None, "{}: never read, never confirmed", b.name);
        let mut text = String::new();
        store.stats().render(&mut text);
        assert!(
            text.contains("sluice_snapshot_reconcile_unconfirmed_tables 1\n"),
            "{}: {text}",
            b.name
        );
        // Not leading: no call at all, whatever moves.
        publish.set(None);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (lists, reads) = (catalog.lists(), catalog.reads().len());
        catalog.set("a.t1", 2);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            (catalog.lists(), catalog.reads().len()),
            (lists, reads),
            "{}",
            b.name
        );
        // Leading again: the pass picks the change up.
        publish.set(Some((fence, Instant::now() + Duration::from_secs(3600))));
        until("the table moved meanwhile read", || {
            catalog.reads().len() == 8
        })
        .await;

        // Nudges run on every replica, leading or not: a refresh a batch
        // asked for says so, and is the newest check of its table.
        publish.set(None);
        tokio::time::sleep(Duration::from_millis(100)).await;
        catalog.set("b.x", 2);
        let nudged_at = sluice_store::system_now();
        nudges.saw(table("b.x"), 2);
        let deadline = Instant::now() + Duration::from_secs(20);
        let fresh = loop {
            let f = store.log_freshness(&table("b.x")).await.unwrap().unwrap();
            if f.by == Cause::Batch {
                break f;
            }
            assert!(Instant::now() < deadline, "{}: {f:?}", b.name);
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(fresh.checked_at >= nudged_at, "{}", b.name);
        watcher.abort();
    }
}
