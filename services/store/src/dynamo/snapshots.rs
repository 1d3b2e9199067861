//! The table snapshot log on DynamoDB.
//!
//! Items:
//! - `catalog-state` / TABLE: the root, versioned (`v`): what the last
//!   refresh read or why it failed ([`CatalogDoc`]), and while a refresh too
//!   large for one transaction is being written, that refresh's claim.
//! - `snapshot/TABLE` / SEQ/ID: each snapshot ([`Snapshot`]), sorted by
//!   sequence number then id, as pages of the log are read. Both numbers
//!   are signed, so each is shifted by 2^63 into a u64 and padded to 20
//!   digits: the keys sort as the pairs do, negatives included.
//! - `snapshot-id/TABLE` / ID (shifted the same way): a small entry per
//!   snapshot, written with it in one transaction, saying where it is and
//!   whether it is expired: refreshes read the ids the log holds from
//!   these, and `has_snapshot` reads one.
//! - `catalog-listing` / CATALOG: the catalog's last completed reconcile
//!   pass ([`Listed`]), replaced by each.
//! - `table` / TABLE belongs to the leases (`leases.rs`); only the catalog
//!   its settings are read here.
//!
//! A refresh is one transaction conditioned on the root's version, when it
//! fits: the root, the snapshots it adds or marks expired (two items each)
//! and its event. One that does not fit (the first refresh of an old table
//! adds thousands) first claims the root, then writes its snapshots a part
//! at a time, each part with the root renewing the claim, and commits the
//! root with the event last (`record_in_parts`). The claim keeps other
//! refreshes of the table waiting meanwhile: were two to write parts at
//! once, each would count the other's parts as already known when it loads
//! again after losing the race, and report them in no event. The parts are
//! visible before the last commit, and that is harmless for the readers:
//! each is a snapshot the catalog listed, written whole with its id entry,
//! or a snapshot the catalog no longer lists, marked expired; `snapshots`,
//! `has_snapshot` and `snapshot_log` see the log a little ahead of
//! `catalog_state`, as if it had been refreshed part by part. Only a
//! replica that dies (or stalls past its claim) while it writes parts
//! leaves parts that the next refresh counts as known: they are in the
//! log, but no event reports them.

use super::items::{doc, version, Attrs, Range};
use super::leases::TABLES;
use super::write::{Committed, Expect, Write, MAX_ITEMS};
use super::DynamoBackend;
use crate::error::StoreError;
use crate::ports::{Apply, CatalogState, SnapshotChanges, SnapshotPort};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use sluice_core::snapshots::{Cause, Listed, Snapshot, SnapshotId};
use sluice_core::{Millis, NewEvent, TableName, TableSettings};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const ROOT: &str = "catalog-state";
const LISTINGS: &str = "catalog-listing";

/// A `catalog-listing` document.
#[derive(Serialize, Deserialize)]
struct ListedDoc {
    at: Millis,
    unlisted: Vec<String>,
}

/// How long a claim holds without being renewed (every part renews it).
const CLAIM_TTL: Millis = Millis(30_000);
/// How long a refresh waits for another replica's claim, between looks.
const CLAIM_WAIT: Duration = Duration::from_millis(500);

/// Snapshots (two items each) in one transaction with the root and an
/// event (the event and the counter: two more).
const WHOLE: usize = (MAX_ITEMS - 3) / 2;
/// Snapshots in one part of a large refresh, with the root.
const PART: usize = (MAX_ITEMS - 1) / 2;

fn log_pk(table: &TableName) -> String {
    format!("snapshot/{table}")
}

fn ids_pk(table: &TableName) -> String {
    format!("snapshot-id/{table}")
}

/// A signed number as a sort key that sorts as the number does.
fn ordered(value: i64) -> String {
    format!("{:020}", (value as u64) ^ (1 << 63))
}

fn log_sk(sequence_number: i64, id: SnapshotId) -> String {
    format!("{}/{}", ordered(sequence_number), ordered(id))
}

/// A table's catalog state as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CatalogDoc {
    table: TableName,
    catalog: String,
    metadata_location: Option<String>,
    current_snapshot_id: Option<SnapshotId>,
    refreshed_at: Option<Millis>,
    /// Absent in documents written before causes were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refreshed_by: Option<Cause>,
    error: Option<String>,
    error_at: Option<Millis>,
    /// A large refresh being written: see `record_in_parts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    claim: Option<Claim>,
}

impl From<CatalogDoc> for CatalogState {
    fn from(d: CatalogDoc) -> CatalogState {
        CatalogState {
            table: d.table,
            catalog: d.catalog,
            metadata_location: d.metadata_location,
            current_snapshot_id: d.current_snapshot_id,
            refreshed_at: d.refreshed_at,
            refreshed_by: d.refreshed_by,
            error: d.error,
            error_at: d.error_at,
        }
    }
}

impl CatalogDoc {
    fn new(table: &TableName, catalog: &str) -> CatalogDoc {
        CatalogDoc {
            table: table.clone(),
            catalog: catalog.to_owned(),
            metadata_location: None,
            current_snapshot_id: None,
            refreshed_at: None,
            refreshed_by: None,
            error: None,
            error_at: None,
            claim: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claim {
    /// Which refresh holds it.
    id: String,
    until: Millis,
}

/// A snapshot's id entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IdEntry {
    id: SnapshotId,
    sequence_number: i64,
    expired: bool,
}

/// The table's lease root, read for its settings only.
#[derive(Deserialize)]
struct TableDoc {
    settings: TableSettings,
}

/// The root as read: its document, and what a write of it must expect.
struct Root {
    doc: Option<CatalogDoc>,
    expect: Expect,
}

/// What a write expecting `expect` leaves the version at.
fn next(expect: Expect) -> Expect {
    match expect {
        Expect::Version(v) => Expect::Version(v + 1),
        Expect::Absent | Expect::Any => Expect::Version(1),
    }
}

/// Put a snapshot and its id entry.
fn put_snapshot(write: &mut Write, table: &TableName, snapshot: &Snapshot) {
    let entry = IdEntry {
        id: snapshot.id,
        sequence_number: snapshot.sequence_number,
        expired: snapshot.expired_at.is_some(),
    };
    write.put(
        &log_pk(table),
        &log_sk(snapshot.sequence_number, snapshot.id),
        Expect::Any,
        snapshot,
        [],
    );
    write.put(
        &ids_pk(table),
        &ordered(snapshot.id),
        Expect::Any,
        &entry,
        [],
    );
}

impl SnapshotPort for DynamoBackend {
    fn table_settings<'a>(
        &'a self,
        table: &'a TableName,
    ) -> BoxFuture<'a, Result<Option<TableSettings>, StoreError>> {
        async move {
            let found: Option<TableDoc> = self.get_doc(TABLES, table.as_str()).await?;
            Ok(found.map(|t| t.settings))
        }
        .boxed()
    }

    fn record_refresh<'a>(
        &'a self,
        table: &'a TableName,
        catalog: &'a str,
        apply: Apply<'a, Vec<(SnapshotId, bool)>, SnapshotChanges>,
    ) -> BoxFuture<'a, Result<SnapshotChanges, StoreError>> {
        async move {
            for _ in 0..super::TRANSACT_RETRIES {
                let root = self.catalog_root(table).await?;
                let now = self.now();
                let claimed = root.doc.as_ref().and_then(|d| d.claim.as_ref());
                if claimed.is_some_and(|c| c.until.0 + self.skew_margin.0 > now.0) {
                    // Another replica is writing a large refresh of this table.
                    tokio::time::sleep(CLAIM_WAIT).await;
                    continue;
                }
                let known = self.known_snapshots(table).await?;
                let changes = apply(known.values().map(|k| (k.id, k.expired)).collect(), now);
                let snapshots = self.snapshot_writes(table, &known, &changes).await?;
                let done = CatalogDoc {
                    metadata_location: changes.metadata_location.clone(),
                    current_snapshot_id: changes.current_snapshot_id,
                    refreshed_at: Some(changes.refreshed_at),
                    refreshed_by: Some(changes.refreshed_by),
                    ..CatalogDoc::new(table, catalog)
                };
                let committed = if snapshots.len() <= WHOLE {
                    let mut write = Write::default();
                    write.put(ROOT, table.as_str(), root.expect, &done, []);
                    for snapshot in &snapshots {
                        put_snapshot(&mut write, table, snapshot);
                    }
                    write.events(changes.event.as_slice());
                    matches!(self.commit(&write).await?, Committed::Done { .. })
                } else {
                    self.record_in_parts(table, root, &snapshots, &done, changes.event.as_ref())
                        .await?
                };
                if committed {
                    return Ok(changes);
                }
            }
            Err(StoreError::Unavailable(format!(
                "the snapshot log of {table} changed, or another replica was writing a large \
                 refresh of it, through all of {} attempts to record a refresh",
                super::TRANSACT_RETRIES
            )))
        }
        .boxed()
    }

    fn record_refresh_error<'a>(
        &'a self,
        table: &'a TableName,
        catalog: &'a str,
        message: &'a str,
        at: Millis,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            for _ in 0..super::TRANSACT_RETRIES {
                let root = self.catalog_root(table).await?;
                let mut doc = root.doc.unwrap_or_else(|| CatalogDoc::new(table, catalog));
                // The same failure again writes nothing (the watcher retries
                // every round): `error_at` says since when it has failed so.
                if root.expect != Expect::Absent
                    && doc.error.as_deref() == Some(message)
                    && doc.catalog == catalog
                {
                    return Ok(());
                }
                // What the last success read stays, and so does a claim.
                doc.catalog = catalog.to_owned();
                doc.error = Some(message.to_owned());
                doc.error_at = Some(at);
                let mut write = Write::default();
                write.put(ROOT, table.as_str(), root.expect, &doc, []);
                if let Committed::Done { .. } = self.commit(&write).await? {
                    return Ok(());
                }
            }
            Err(StoreError::Unavailable(format!(
                "the catalog state of {table} changed through all of {} attempts to record a refresh error",
                super::TRANSACT_RETRIES
            )))
        }
        .boxed()
    }

    fn catalog_state<'a>(
        &'a self,
        table: &'a TableName,
    ) -> BoxFuture<'a, Result<Option<CatalogState>, StoreError>> {
        async move {
            let found: Option<CatalogDoc> = self.get_doc(ROOT, table.as_str()).await?;
            // A root that only a large first refresh's claim created has
            // recorded nothing yet: SQL backends have no row for it.
            let recorded = found.filter(|d| d.refreshed_at.is_some() || d.error.is_some());
            Ok(recorded.map(CatalogState::from))
        }
        .boxed()
    }

    fn catalog_states<'a>(
        &'a self,
        after: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<CatalogState>, StoreError>> {
        async move {
            let range = match after {
                "" => Range::All,
                after => Range::After(after.to_owned()),
            };
            // A root that only a large first refresh's claim made has
            // recorded nothing yet: left out, as `catalog_state` does.
            let recorded = |item: &Attrs| {
                doc::<CatalogDoc>(item).is_ok_and(|d| d.refreshed_at.is_some() || d.error.is_some())
            };
            let items = self
                .query(ROOT, range, true, limit as usize, recorded)
                .await?;
            items
                .iter()
                .map(|item| doc::<CatalogDoc>(item).map(CatalogState::from))
                .collect()
        }
        .boxed()
    }

    fn record_listing<'a>(
        &'a self,
        catalog: &'a str,
        listed: &'a Listed,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let document = ListedDoc {
                at: listed.at,
                unlisted: listed.unlisted.clone(),
            };
            let mut write = Write::default();
            write.put(LISTINGS, catalog, Expect::Any, &document, []);
            self.commit_once(&write, "a catalog's listing").await
        }
        .boxed()
    }

    fn catalog_listing<'a>(
        &'a self,
        catalog: &'a str,
    ) -> BoxFuture<'a, Result<Option<Listed>, StoreError>> {
        async move {
            let found: Option<ListedDoc> = self.get_doc(LISTINGS, catalog).await?;
            Ok(found.map(|d| Listed {
                at: d.at,
                unlisted: d.unlisted,
            }))
        }
        .boxed()
    }

    fn snapshots<'a>(
        &'a self,
        table: &'a TableName,
        after: (i64, SnapshotId),
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Snapshot>, StoreError>> {
        async move {
            let range = Range::After(log_sk(after.0, after.1));
            let items = self
                .query(&log_pk(table), range, true, limit as usize, |_| true)
                .await?;
            items.iter().map(doc).collect()
        }
        .boxed()
    }

    fn has_snapshot<'a>(
        &'a self,
        table: &'a TableName,
        id: SnapshotId,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move { Ok(self.get(&ids_pk(table), &ordered(id)).await?.is_some()) }.boxed()
    }

    fn snapshot_log<'a>(
        &'a self,
        table: &'a TableName,
    ) -> BoxFuture<'a, Result<Vec<Snapshot>, StoreError>> {
        async move { self.docs(&log_pk(table)).await }.boxed()
    }
}

impl DynamoBackend {
    async fn catalog_root(&self, table: &TableName) -> Result<Root, StoreError> {
        Ok(match self.get(ROOT, table.as_str()).await? {
            Some(item) => Root {
                doc: Some(doc(&item)?),
                expect: Expect::Version(version(&item)),
            },
            None => Root {
                doc: None,
                expect: Expect::Absent,
            },
        })
    }

    /// The id entries of every snapshot the log holds, by id.
    async fn known_snapshots(
        &self,
        table: &TableName,
    ) -> Result<HashMap<SnapshotId, IdEntry>, StoreError> {
        let entries: Vec<IdEntry> = self.docs(&ids_pk(table)).await?;
        Ok(entries.into_iter().map(|e| (e.id, e)).collect())
    }

    /// The snapshots to put: each added one (unless the log holds it: an
    /// added snapshot never overwrites), then each one to mark expired
    /// (unless it is not held, or expired already), as SQLite's statements
    /// do.
    async fn snapshot_writes(
        &self,
        table: &TableName,
        known: &HashMap<SnapshotId, IdEntry>,
        changes: &SnapshotChanges,
    ) -> Result<Vec<Snapshot>, StoreError> {
        let mut seen: HashSet<SnapshotId> = HashSet::new();
        let mut writes = Vec::new();
        for added in &changes.refresh.added {
            if !known.contains_key(&added.id) && seen.insert(added.id) {
                writes.push(Snapshot {
                    expired_at: None,
                    ..added.clone()
                });
            }
        }
        let keys: Vec<(String, String)> = changes
            .refresh
            .expired
            .iter()
            .filter_map(|id| known.get(id))
            .filter(|entry| !entry.expired && seen.insert(entry.id))
            .map(|entry| (log_pk(table), log_sk(entry.sequence_number, entry.id)))
            .collect();
        if keys.is_empty() {
            return Ok(writes);
        }
        let found = self.get_many(&keys).await?;
        for key in keys {
            let item: &Attrs = found.get(&key).ok_or_else(|| {
                StoreError::Internal(format!(
                    "the snapshot log of {table} has an id entry without its snapshot at {}",
                    key.1
                ))
            })?;
            let mut snapshot: Snapshot = doc(item)?;
            snapshot.expired_at = Some(changes.refreshed_at);
            writes.push(snapshot);
        }
        Ok(writes)
    }

    /// Record a refresh too large for one transaction: claim the root
    /// (with the first part), write the snapshots a part at a time, each
    /// renewing the claim, then commit the root and the event. `false`
    /// when another writer got there first: load and apply again.
    async fn record_in_parts(
        &self,
        table: &TableName,
        root: Root,
        snapshots: &[Snapshot],
        done: &CatalogDoc,
        event: Option<&NewEvent>,
    ) -> Result<bool, StoreError> {
        let claim_id = uuid::Uuid::now_v7().to_string();
        let mut held = root
            .doc
            .unwrap_or_else(|| CatalogDoc::new(table, &done.catalog));
        let mut expect = root.expect;
        let parts: Vec<&[Snapshot]> = snapshots.chunks(PART).collect();
        for (i, part) in parts.iter().enumerate() {
            let mut attempts = 0;
            loop {
                held.claim = Some(Claim {
                    id: claim_id.clone(),
                    until: Millis(self.now().0 + CLAIM_TTL.0),
                });
                let mut write = Write::default();
                write.put(ROOT, table.as_str(), expect, &held, []);
                for snapshot in *part {
                    put_snapshot(&mut write, table, snapshot);
                }
                if let Committed::Done { .. } = self.commit(&write).await? {
                    expect = next(expect);
                    break;
                }
                // The first part claims on the version the log was loaded
                // at: a change since means the refresh is stale. Later, the
                // root changes under a claim only by a refresh error being
                // recorded: go on with it, unless the claim is gone.
                attempts += 1;
                if i == 0 || attempts >= super::TRANSACT_RETRIES {
                    return Ok(false);
                }
                match self.still_claimed(table, &claim_id).await? {
                    Some((doc, now_expect)) => {
                        held = doc;
                        expect = now_expect;
                    }
                    None => return Ok(false),
                }
            }
        }
        for _ in 0..super::TRANSACT_RETRIES {
            let mut write = Write::default();
            write.put(ROOT, table.as_str(), expect, done, []);
            if let Some(event) = event {
                write.events(std::slice::from_ref(event));
            }
            if let Committed::Done { .. } = self.commit(&write).await? {
                return Ok(true);
            }
            match self.still_claimed(table, &claim_id).await? {
                Some((_, now_expect)) => expect = now_expect,
                None => return Ok(false),
            }
        }
        Ok(false)
    }

    /// The root, if the claim `id` still holds it.
    async fn still_claimed(
        &self,
        table: &TableName,
        id: &str,
    ) -> Result<Option<(CatalogDoc, Expect)>, StoreError> {
        let root = self.catalog_root(table).await?;
        Ok(root
            .doc
            .filter(|d| d.claim.as_ref().is_some_and(|c| c.id == id))
            .map(|d| (d, root.expect)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_as_the_pairs() {
        let pairs = [
            (i64::MIN, i64::MIN),
            (i64::MIN, 5),
            (-1, i64::MAX),
            (0, -7),
            (0, 0),
            (0, 3),
            (1, -1),
            (12, 2),
            (i64::MAX, i64::MAX),
        ];
        let keys: Vec<String> = pairs.iter().map(|(s, i)| log_sk(*s, *i)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(keys.iter().all(|k| k.len() == 41));
    }
}
