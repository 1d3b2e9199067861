//! Streams, batches and bookmark versions on DynamoDB.
//!
//! Items:
//! - `stream` / NAME: the root, versioned (`v`). Its document is the
//!   stream's [`StreamState`] with `batches` holding only its open batch
//!   (the rules keep at most one) and `versions` empty; attribute `table`
//!   (the table it feeds) lets listings filter by scope without parsing.
//! - `batch/STREAM` / BATCH_ID: every batch, open or ended, as [`Batch`].
//!   The open one is also in the root, where the transactions read it: a
//!   batch item changes only together with its root, so the root's version
//!   guards it.
//! - `finished-batch` / BATCH_ID: an ended batch's entry for pruning, with
//!   attribute `ended` (ended_at, ms). Batch ids are UUIDv7, so this one
//!   partition lists every stream's ended batches in creation order, and
//!   pruning reads the oldest without visiting each stream.
//! - `version/STREAM` / padded(VERSION): each bookmark version. Its load is
//!   stored as the SQL backends store it (`NewVersion::load`: whole, or
//!   only the files it added to the version before) and read back through
//!   the same `rows::streams::rebuild_load`, so a 20,000-file list is
//!   stored about once, not in every version. `doc` is the version as a
//!   history page shows it (no `files_done`); attributes: `at` (its time,
//!   ms) for rewinds to a time, `files` (how many files its load has done)
//!   for history pages, `whole` (1 when its load is stored whole: where a
//!   chain starts), and the stored load in `load` when it is short, else
//!   the number of `parts` it was split into:
//! - `version-part/STREAM` / padded(VERSION)/padded(I): the I-th slice of a
//!   long stored load, in `doc` (text, JSON only once joined). A whole
//!   20,000-file list is ~380 KB: in one item it would brush DynamoDB's
//!   400 KB item limit, and in the version item every history page would
//!   read it.
//!
//! A group commit loads the named roots (and the batches and versions its
//! commands name), applies the rules, and writes every changed item in one
//! transaction conditioned on each loaded root's version; roots it only
//! read are checked the same way, and named streams that do not exist are
//! checked to be still absent. A lost race loads and applies again.

use super::items::{doc, json, number, padded, text, version, Attrs, Range};
use super::write::{number_attr, text_attr, Committed, Expect, Write, MAX_ITEMS};
use super::{in_scopes, DynamoBackend};
use crate::error::StoreError;
use crate::ports::{Apply, StreamPort, VersionSummary};
use crate::rows::streams::{is_whole, rebuild_load, WHOLE_EVERY};
use crate::streams::{Changes, Loaded, NewVersion, Targets};
use aws_sdk_dynamodb::types::AttributeValue;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use sluice_core::streams::RewindTo;
use sluice_core::{Batch, BatchId, BookmarkVersion, Millis, StreamName, StreamState};
use std::collections::{BTreeSet, HashMap, HashSet};

const ROOT: &str = "stream";
const FINISHED: &str = "finished-batch";

fn batches_pk(stream: &StreamName) -> String {
    format!("batch/{stream}")
}

fn versions_pk(stream: &StreamName) -> String {
    format!("version/{stream}")
}

fn parts_pk(stream: &StreamName) -> String {
    format!("version-part/{stream}")
}

fn part_sk(version_sk: &str, part: i64) -> String {
    format!("{version_sk}/{}", padded(part))
}

/// Stored loads up to this long stay in their version's item: a history
/// page reads every item it lists, and most loads (what a batch added, a
/// short list) are this short.
const INLINE_LOAD: usize = 4 * 1024;
/// Longer ones are split into parts of at most this many bytes, well under
/// DynamoDB's 400 KB an item.
const PART_BYTES: usize = 64 * 1024;

/// What the pruning index says of an ended batch.
#[derive(Serialize, Deserialize)]
struct FinishedBatch {
    stream: StreamName,
    ended_at: Millis,
}

impl StreamPort for DynamoBackend {
    fn transact_streams<'a>(
        &'a self,
        targets: &'a Targets,
        apply: Apply<'a, Loaded, Changes>,
    ) -> BoxFuture<'a, Result<Changes, StoreError>> {
        async move {
            for _ in 0..super::TRANSACT_RETRIES {
                let (loaded, versions) = self.load_streams(targets).await?;
                // The rules change `loaded`; the roots are rebuilt from what
                // they were and what changed.
                let before = loaded.streams.clone();
                let changes = apply(loaded, self.now());
                if changes.is_empty() {
                    return Ok(changes);
                }
                let write = stream_write(targets, &before, &versions, &changes)?;
                match self.commit(&write).await? {
                    Committed::Done { .. } => return Ok(changes),
                    Committed::Conflict => continue,
                }
            }
            Err(StoreError::Unavailable(format!(
                "streams {:?} changed under every one of {} attempts to write them",
                targets
                    .streams
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>(),
                super::TRANSACT_RETRIES
            )))
        }
        .boxed()
    }

    fn stream<'a>(
        &'a self,
        name: &'a StreamName,
    ) -> BoxFuture<'a, Result<Option<StreamState>, StoreError>> {
        async move { self.get_doc(ROOT, name.as_str()).await }.boxed()
    }

    fn streams<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
        scopes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<StreamState>, StoreError>> {
        async move {
            let range = match after {
                Some(after) if !after.is_empty() => Range::After(after.to_owned()),
                _ => Range::All,
            };
            let in_scope = |value: Option<&str>| {
                scopes.is_empty() || value.is_some_and(|v| in_scopes(v, scopes))
            };
            // A stream is seen only with the table it feeds.
            let items = self
                .query(ROOT, range, true, limit as usize, |item| {
                    in_scope(text(item, "sk").ok()) && in_scope(text(item, "table").ok())
                })
                .await?;
            items.iter().map(doc).collect()
        }
        .boxed()
    }

    fn batch<'a>(
        &'a self,
        stream: &'a StreamName,
        id: BatchId,
    ) -> BoxFuture<'a, Result<Option<Batch>, StoreError>> {
        async move { self.get_doc(&batches_pk(stream), &id.to_string()).await }.boxed()
    }

    fn history<'a>(
        &'a self,
        stream: &'a StreamName,
        after_version: i64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<VersionSummary>, StoreError>> {
        async move {
            // Versions start at 1; `padded` holds non-negative numbers only.
            let range = if after_version < 0 {
                Range::All
            } else {
                Range::After(padded(after_version))
            };
            let items = self
                .query(&versions_pk(stream), range, true, limit as usize, |_| true)
                .await?;
            // As the SQL backends answer: the list counted, not sent. The
            // items hold no long list (`INLINE_LOAD`): the page stays cheap.
            items
                .iter()
                .map(|item| {
                    let files = number(item, "files")
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| corrupt(item, "no file count"))?;
                    Ok(VersionSummary {
                        version: doc(item)?,
                        files_done: files,
                    })
                })
                .collect()
        }
        .boxed()
    }

    fn prune_batches(&self, before: Millis, limit: u32) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            // Ids minted before `before` sort below its floor: the scan
            // stops there, and `ended` picks those that also ended before.
            let ended = self
                .query(
                    FINISHED,
                    Range::Before(crate::rows::v7_floor(before)),
                    true,
                    limit as usize,
                    |item| number(item, "ended").is_some_and(|at| at < before.0),
                )
                .await?;
            let mut pruned = 0;
            // A batch and its index entry go together.
            for chunk in ended.chunks(MAX_ITEMS / 2) {
                let mut write = Write::default();
                for item in chunk {
                    let id = text(item, "sk")?;
                    let entry: FinishedBatch = doc(item)?;
                    write.delete(&batches_pk(&entry.stream), id, Expect::Any);
                    write.delete(FINISHED, id, Expect::Any);
                }
                self.commit_once(&write, "ended batches").await?;
                pruned += chunk.len() as u64;
            }
            Ok(pruned)
        }
        .boxed()
    }

    fn version<'a>(
        &'a self,
        stream: &'a StreamName,
        version: i64,
    ) -> BoxFuture<'a, Result<Option<BookmarkVersion>, StoreError>> {
        async move { self.version_at(stream, version).await }.boxed()
    }
}

impl DynamoBackend {
    /// The named streams that exist with their open batch, the batches the
    /// commands name and the versions their rewinds target; and each
    /// loaded root's version.
    async fn load_streams(
        &self,
        targets: &Targets,
    ) -> Result<(Loaded, HashMap<StreamName, i64>), StoreError> {
        let keys: Vec<(String, String)> = targets
            .streams
            .iter()
            .map(|s| (ROOT.to_owned(), s.to_string()))
            .collect();
        let mut roots = self.get_many(&keys).await?;
        let mut loaded = Loaded::default();
        let mut versions = HashMap::new();
        for name in &targets.streams {
            let Some(item) = roots.remove(&(ROOT.to_owned(), name.to_string())) else {
                continue;
            };
            let mut state: StreamState = doc(&item)?;
            // Expiry is judged by this replica's clock: that much late.
            state.skew_margin = self.skew_margin;
            versions.insert(name.clone(), version(&item));
            loaded.streams.insert(name.clone(), state);
        }
        // A named batch is usually the open one, in its root already. The
        // others (a retried open, an ended batch) could be under any of the
        // loaded streams: the commands do not say which.
        let missing: Vec<BatchId> = targets
            .batches
            .iter()
            .copied()
            .filter(|id| !loaded.streams.values().any(|s| s.batch(*id).is_some()))
            .collect();
        let keys: Vec<(String, String)> = loaded
            .streams
            .keys()
            .flat_map(|stream| {
                missing
                    .iter()
                    .map(move |id| (batches_pk(stream), id.to_string()))
            })
            .collect();
        if !keys.is_empty() {
            for item in self.get_many(&keys).await?.values() {
                loaded.place_batch(doc(item)?);
            }
        }
        for (stream, to) in &targets.rewinds {
            if !loaded.streams.contains_key(stream) {
                continue;
            }
            if let Some(version) = self.rewind_target(stream, *to).await? {
                loaded.place_version(version);
            }
        }
        Ok((loaded, versions))
    }

    /// The version a rewind targets. Versions are never changed once
    /// written, and a new one changes the root, whose version the commit
    /// checks: reading it before the commit is as good as inside it.
    async fn rewind_target(
        &self,
        stream: &StreamName,
        to: RewindTo,
    ) -> Result<Option<BookmarkVersion>, StoreError> {
        match to {
            RewindTo::Version(v) => self.version_at(stream, v).await,
            RewindTo::Time(t) => {
                // The newest version written at or before `t`.
                let found = self
                    .query(&versions_pk(stream), Range::All, false, 1, |item| {
                        number(item, "at").is_some_and(|at| at <= t.0)
                    })
                    .await?;
                match found.first() {
                    Some(item) => {
                        let target: BookmarkVersion = doc(item)?;
                        self.version_at(stream, target.bookmark.version).await
                    }
                    None => Ok(None),
                }
            }
        }
    }

    /// A version whole, rebuilt from its chain as the SQL backends do.
    async fn version_at(
        &self,
        stream: &StreamName,
        version: i64,
    ) -> Result<Option<BookmarkVersion>, StoreError> {
        if version < 0 {
            return Ok(None);
        }
        // The chain starts at the last whole version at or before this one,
        // which is no older than the last multiple of `WHOLE_EVERY` (always
        // stored whole): at most that many items, read newest first.
        let oldest = version - version % WHOLE_EVERY;
        let mut chain = self
            .query(
                &versions_pk(stream),
                Range::Before(padded(version.saturating_add(1))),
                false,
                usize::try_from(version - oldest + 1).unwrap_or(1),
                |_| true,
            )
            .await?;
        let sk = padded(version);
        if chain.first().and_then(|item| text(item, "sk").ok()) != Some(sk.as_str()) {
            return Ok(None);
        }
        if let Some(start) = chain
            .iter()
            .position(|item| number(item, "whole") == Some(1))
        {
            chain.truncate(start + 1);
        }
        chain.reverse();
        let loads = self.stored_loads(stream, &chain).await?;
        chain_version(&chain, &loads)
    }

    /// The stored load of each version item of `chain`, its parts joined.
    async fn stored_loads(
        &self,
        stream: &StreamName,
        chain: &[Attrs],
    ) -> Result<Vec<String>, StoreError> {
        let pk = parts_pk(stream);
        let mut keys = Vec::new();
        for item in chain {
            if let Some(parts) = number(item, "parts") {
                let sk = text(item, "sk")?;
                keys.extend((0..parts).map(|i| (pk.clone(), part_sk(sk, i))));
            }
        }
        let found = if keys.is_empty() {
            HashMap::new()
        } else {
            self.get_many(&keys).await?
        };
        chain
            .iter()
            .map(|item| stored_load(item, &pk, &found))
            .collect()
    }
}

fn corrupt(item: &Attrs, what: &str) -> StoreError {
    StoreError::Internal(format!(
        "corrupt bookmark version {}/{}: {what}",
        text(item, "pk").unwrap_or("?"),
        text(item, "sk").unwrap_or("?")
    ))
}

/// A version item's stored load: its own `load`, or its parts' in order.
fn stored_load(
    item: &Attrs,
    parts_pk: &str,
    parts: &HashMap<(String, String), Attrs>,
) -> Result<String, StoreError> {
    if let Some(AttributeValue::S(load)) = item.get("load") {
        return Ok(load.clone());
    }
    let count = number(item, "parts").ok_or_else(|| corrupt(item, "neither load nor parts"))?;
    let sk = text(item, "sk")?;
    let mut load = String::new();
    for i in 0..count {
        let part = parts
            .get(&(parts_pk.to_owned(), part_sk(sk, i)))
            .ok_or_else(|| corrupt(item, &format!("part {i} of {count} is missing")))?;
        load.push_str(text(part, "doc")?);
    }
    Ok(load)
}

/// The last version of `chain` (version items oldest first, from a whole
/// one, with their stored loads) whole.
fn chain_version(chain: &[Attrs], loads: &[String]) -> Result<Option<BookmarkVersion>, StoreError> {
    let Some(last) = chain.last() else {
        return Ok(None);
    };
    let Some(load) = rebuild_load(loads.iter().map(String::as_str))? else {
        return Ok(None);
    };
    let mut version: BookmarkVersion = doc(last)?;
    version.bookmark.load = load;
    Ok(Some(version))
}

/// One item to put, as `Write::put_raw` takes it.
struct NewItem {
    pk: String,
    sk: String,
    doc: String,
    attrs: Vec<(&'static str, AttributeValue)>,
}

/// The items of a new version: its own, and its stored load's parts when
/// that is too long to stay in it.
fn version_items(new: &NewVersion) -> Vec<NewItem> {
    let v = &new.version;
    let stream = &v.stream;
    let sk = padded(v.bookmark.version);
    let mut header = v.clone();
    header.bookmark.load.files_done = Vec::new();
    let files = i64::try_from(v.bookmark.load.files_done.len()).unwrap_or(i64::MAX);
    let mut attrs = vec![
        number_attr("at", v.bookmark.updated_at.0),
        number_attr("files", files),
        number_attr("whole", i64::from(is_whole(&new.load))),
    ];
    let mut items = Vec::new();
    if new.load.len() <= INLINE_LOAD {
        attrs.push(text_attr("load", new.load.as_str()));
    } else {
        let parts = split(&new.load, PART_BYTES);
        attrs.push(number_attr("parts", parts.len() as i64));
        for (i, part) in parts.into_iter().enumerate() {
            items.push(NewItem {
                pk: parts_pk(stream),
                sk: part_sk(&sk, i as i64),
                doc: part.to_owned(),
                attrs: Vec::new(),
            });
        }
    }
    items.push(NewItem {
        pk: versions_pk(stream),
        sk,
        doc: json(&header),
        attrs,
    });
    items
}

/// `text` in slices of at most `max` bytes (at least 4: a character's
/// longest), cut between characters.
fn split(text: &str, max: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (part, tail) = rest.split_at(end);
        parts.push(part);
        rest = tail;
    }
    parts
}

/// A root as stored: the stream's header (`header`, changed or as loaded)
/// with its open batch after the rules, from those loaded (`old`) and
/// those that changed; no versions.
fn stored_root(header: &StreamState, old: Option<&StreamState>, changed: &[&Batch]) -> StreamState {
    let mut root = header.clone();
    root.versions.clear();
    let mut after: Vec<Batch> = old.map(|o| o.batches.clone()).unwrap_or_default();
    for batch in changed {
        match after.iter_mut().find(|b| b.id == batch.id) {
            Some(slot) => *slot = (*batch).clone(),
            None => after.push((*batch).clone()),
        }
    }
    after.retain(Batch::is_open);
    root.batches = after;
    root
}

/// The transaction that writes `changes`: each changed root on the version
/// it was loaded at, each other named root checked, the batches, versions
/// and events they bring.
fn stream_write(
    targets: &Targets,
    before: &HashMap<StreamName, StreamState>,
    versions: &HashMap<StreamName, i64>,
    changes: &Changes,
) -> Result<Write, StoreError> {
    let mut write = Write::default();
    // A batch is in `changes` once, but be sure no item is written twice
    // (a transaction refuses that): the last of each id wins.
    let mut batches: HashMap<BatchId, &Batch> = HashMap::new();
    for batch in &changes.batches {
        batches.insert(batch.id, batch);
    }
    let names: BTreeSet<&StreamName> = targets
        .streams
        .iter()
        .chain(changes.streams.iter().map(|s| &s.name))
        .chain(batches.values().map(|b| &b.stream))
        .collect();
    for name in names {
        let old = before.get(name);
        let expect = match versions.get(name) {
            Some(v) => Expect::Version(*v),
            None => Expect::Absent,
        };
        let header = changes.streams.iter().find(|s| &s.name == name);
        let changed: Vec<&Batch> = batches
            .values()
            .copied()
            .filter(|b| &b.stream == name)
            .collect();
        if header.is_none() && changed.is_empty() {
            // Read, not changed: it must still be as read (or still absent).
            write.check(ROOT, name.as_str(), expect);
            continue;
        }
        let Some(base) = header.or(old) else {
            return Err(StoreError::Internal(format!(
                "batches changed on stream {name}, which was neither loaded nor created"
            )));
        };
        let root = stored_root(base, old, &changed);
        write.put(
            ROOT,
            name.as_str(),
            expect,
            &root,
            [text_attr("table", root.settings.table.as_str())],
        );
        for batch in changed {
            let id = batch.id.to_string();
            write.put(&batches_pk(name), &id, Expect::Any, batch, []);
            if let (false, Some(ended_at)) = (batch.is_open(), batch.ended_at) {
                let entry = FinishedBatch {
                    stream: name.clone(),
                    ended_at,
                };
                write.put(
                    FINISHED,
                    &id,
                    Expect::Any,
                    &entry,
                    [number_attr("ended", ended_at.0)],
                );
            }
        }
    }
    let mut written: HashSet<(StreamName, i64)> = HashSet::new();
    for new in &changes.versions {
        let v = &new.version;
        if written.insert((v.stream.clone(), v.bookmark.version)) {
            for item in version_items(new) {
                write.put_raw(&item.pk, &item.sk, Expect::Any, item.doc, item.attrs);
            }
        }
    }
    write.events(&changes.events);
    Ok(write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::streams::{
        rules, BatchCommand, Bookmark, Cause, LoadProgress, Phase, StreamSettings,
    };
    use sluice_core::TableName;

    fn stream() -> StreamState {
        let name = StreamName::parse("orders_cdc").expect("name");
        let settings = StreamSettings {
            table: TableName::parse("sales.orders").expect("table"),
            source: serde_json::json!({}),
            expected_schema_hash: None,
        };
        let (mut state, _) = rules::put_stream(None, name, settings, None, Millis(1_000));
        state.versions.clear();
        state
    }

    fn open(state: &mut StreamState, id: BatchId, now: i64) {
        let command = BatchCommand::Open {
            stream: state.name.clone(),
            batch_id: id,
            run_id: "run".into(),
            ttl_seconds: 60,
            if_match: None,
        };
        rules::batch(state, &command, None, Millis(now))
            .result
            .expect("opens");
    }

    #[test]
    fn roots_hold_only_the_open_batch() {
        let before = stream();
        let first = BatchId::new_v7();
        let mut opened = before.clone();
        open(&mut opened, first, 2_000);
        let batch = opened.batch(first).expect("opened").clone();
        let root = stored_root(&before, Some(&before), &[&batch]);
        assert_eq!(root.batches, vec![batch.clone()]);

        // The open batch expires (settled by the next open) and another opens.
        let mut later = opened.clone();
        let second = BatchId::new_v7();
        open(&mut later, second, 200_000);
        let ended = later.batch(first).expect("kept").clone();
        assert!(!ended.is_open());
        let new = later.batch(second).expect("opened").clone();
        let root = stored_root(&later, Some(&opened), &[&ended, &new]);
        assert_eq!(root.batches, vec![new]);
        assert!(root.versions.is_empty());
    }

    #[test]
    fn unchanged_named_streams_are_checked() {
        let before = stream();
        let name = before.name.clone();
        let targets = Targets {
            streams: vec![name.clone()],
            ..Targets::default()
        };
        let loaded = HashMap::from([(name.clone(), before.clone())]);
        let versions = HashMap::from([(name, 3)]);
        let changes = Changes {
            events: Vec::new(),
            ..Changes::default()
        };
        let write = stream_write(&targets, &loaded, &versions, &changes).expect("builds");
        // One check and nothing to write.
        assert_eq!(write.len(), 1);
        assert!(write.is_empty());
    }

    /// A version as `diff` makes it: its load stored against `previous`.
    fn new_version(number: i64, cause: Cause, files: &[String], previous: &[String]) -> NewVersion {
        let version = BookmarkVersion {
            stream: stream().name,
            bookmark: Bookmark {
                version: number,
                phase: Phase::Load,
                load: LoadProgress {
                    files_done: files.to_vec(),
                    high_water: files.last().cloned(),
                    cdc_start: None,
                },
                delta: None,
                updated_at: Millis(number * 1_000),
            },
            cause,
            batch_id: None,
            run_id: Some("run".into()),
            counts: None,
            snapshot_id: None,
            rewound_to: None,
            actor: None,
            reason: None,
        };
        NewVersion {
            load: crate::rows::streams::stored_load(&version, Some(previous)),
            version,
        }
    }

    /// An item as the table would hold it.
    fn stored(item: NewItem) -> Attrs {
        let mut attrs = super::super::items::key(&item.pk, &item.sk);
        attrs.insert("doc".into(), AttributeValue::S(item.doc));
        attrs.extend(item.attrs.into_iter().map(|(k, v)| (k.to_owned(), v)));
        attrs
    }

    #[test]
    fn long_loads_are_stored_once_in_small_items_and_read_back_whole() {
        let files: Vec<String> = (1..=20_000).map(|i| format!("LOAD{i:08X}.csv")).collect();
        let more: Vec<String> = files.iter().cloned().chain(["Z.csv".to_owned()]).collect();
        let made = [
            new_version(1, Cause::Created, &[], &[]),
            new_version(2, Cause::Batch, &files, &[]),
            new_version(3, Cause::Batch, &files, &files),
            new_version(4, Cause::Batch, &more, &files),
        ];
        let mut versions = Vec::new();
        let mut parts = HashMap::new();
        for new in &made {
            for item in version_items(new).into_iter().map(stored) {
                let doc_len = text(&item, "doc").expect("doc").len();
                assert!(doc_len <= PART_BYTES, "an item of {doc_len} bytes");
                let key = (
                    text(&item, "pk").expect("pk").to_owned(),
                    text(&item, "sk").expect("sk").to_owned(),
                );
                if key.0.starts_with("version-part/") {
                    parts.insert(key, item);
                } else {
                    versions.push(item);
                }
            }
        }
        // Version 2 added the whole list (in parts); 3 and 4 almost nothing.
        assert_eq!(number(&versions[1], "parts"), Some(6));
        assert_eq!(parts.len(), 6);
        assert!(versions[2].contains_key("load") && versions[3].contains_key("load"));
        assert_eq!(number(&versions[3], "files"), Some(20_001));
        let pk = parts_pk(&stream().name);
        for upto in 1..=made.len() {
            let chain = &versions[..upto];
            let loads: Vec<String> = chain
                .iter()
                .map(|item| stored_load(item, &pk, &parts).expect("joins"))
                .collect();
            let whole = chain_version(chain, &loads).expect("rebuilds");
            assert_eq!(whole.as_ref(), Some(&made[upto - 1].version));
        }
        // A part gone is an error, not a shorter list.
        parts.remove(&(pk.clone(), part_sk(&padded(2), 5)));
        assert!(stored_load(&versions[1], &pk, &parts).is_err());
    }

    #[test]
    fn long_texts_are_cut_between_characters() {
        let text = "aé€😀".repeat(1_000);
        let parts = split(&text, 7);
        assert!(parts.iter().all(|p| !p.is_empty() && p.len() <= 7));
        assert_eq!(parts.concat(), text);
        assert!(split("", 7).is_empty());
    }
}
