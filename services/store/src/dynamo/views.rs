//! Consumer views, their history and the outbox on DynamoDB.
//!
//! Items:
//! - `view` / `CONTAINER#NAME`: the `View`, version `v`, and in `remaps`
//!   how many history items it has (the last one's number). `#` sorts
//!   below every character a container or view name may hold (letters,
//!   digits, `_`, `-`, `.`), so the sort key orders views by (container,
//!   name) as the SQL backends do.
//! - `view-remap/CONTAINER` / `NAME#N`: the view's N-th `Remap` (N padded,
//!   from the view's `remaps`), written in the transaction that puts the
//!   view, so the view's version guards it. A view's history is one range
//!   of its container's partition, in the order it was made.
//! - `intent` / ID: an outbox intent with its state (`pending`, `done`,
//!   `failed`), attempts, next attempt and outcome, version `v`, and
//!   beside it `state` and `next` (ms) so that `due_intents` filters
//!   without decoding. DynamoDB has no sequence: an id is the intent's
//!   time in ms shifted left 20 bits, plus 20 bits that are unique within
//!   this process and random across processes (`intent_id`), so ids sort
//!   by time and the sort key (padded) orders the outbox oldest first.
//!
//! - `intent-pending` / ID: one per pending intent, with its `next` (ms),
//!   put or deleted in the transaction that writes the intent, so that
//!   `due_intents` reads the pending ones only, never the finished ones
//!   the outbox keeps (as the SQL backends keep theirs).
//!
//! `orphans` reads its partition whole and filters here.

use super::items::{doc, number, padded, text, version, Attrs, Range};
use super::write::{number_attr, text_attr, Committed, Expect, Write, Writes};
use super::{DynamoBackend, TRANSACT_RETRIES};
use crate::error::StoreError;
use crate::ports::{DueIntent, ViewStorePort};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use sluice_core::containers::ContainerName;
use sluice_core::hydrations::HydrationId;
use sluice_core::outbox::{Intent, IntentState, IntentStatus};
use sluice_core::views::{Remap, View};
use sluice_core::{Millis, NewEvent};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

const VIEWS: &str = "view";
const INTENTS: &str = "intent";
const PENDING_INTENTS: &str = "intent-pending";
/// `intent-of` / HYDRATION_ID: the id of the newest intent carried out
/// for a hydration (what SQL's `outbox_by_hydration` index finds).
const INTENT_OF: &str = "intent-of";

#[derive(Serialize, Deserialize)]
struct IntentOf {
    id: i64,
}

fn view_sk(container: &str, name: &str) -> String {
    format!("{container}#{name}")
}

fn history_pk(container: &ContainerName) -> String {
    format!("view-remap/{container}")
}

fn history_sk(view: &str, n: i64) -> String {
    format!("{view}#{}", padded(n))
}

fn put_view(write: &mut Write, view: &View, expect: Expect, remaps: i64) {
    write.put(
        VIEWS,
        &view_sk(view.container.as_str(), &view.name),
        expect,
        view,
        [number_attr("remaps", remaps)],
    );
}

/// An outbox row as the SQL backends hold it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredIntent {
    id: i64,
    intent: Intent,
    state: IntentState,
    attempts: u32,
    created_at: Millis,
    next_attempt_at: Millis,
    finished_at: Option<Millis>,
    error: Option<String>,
}

fn put_intent(write: &mut Write, stored: &StoredIntent, expect: Expect) {
    let id = padded(stored.id);
    write.put(
        INTENTS,
        &id,
        expect,
        stored,
        [
            text_attr("state", stored.state.as_str()),
            number_attr("next", stored.next_attempt_at.0),
        ],
    );
    // The intent's own condition guards its index item.
    if stored.state == IntentState::Pending {
        let next = number_attr("next", stored.next_attempt_at.0);
        write.put_attrs(PENDING_INTENTS, &id, Expect::Any, [next]);
    } else if expect == Expect::Absent {
        // Nothing to take back.
    } else {
        write.delete(PENDING_INTENTS, &id, Expect::Any);
    }
}

/// `sluice migrate`: the `intent-pending` items of the pending intents an
/// older sluice stored without them.
pub(super) async fn build_indexes(backend: &DynamoBackend) -> Result<Vec<Write>, StoreError> {
    let mut writes = Writes::default();
    let pending = backend
        .query(INTENTS, Range::All, true, usize::MAX, |item| {
            matches!(text(item, "state"), Ok("pending"))
        })
        .await?;
    for item in &pending {
        let stored: StoredIntent = doc(item)?;
        let next = number_attr("next", stored.next_attempt_at.0);
        writes
            .next()
            .put_attrs(PENDING_INTENTS, &padded(stored.id), Expect::Any, [next]);
    }
    Ok(writes.0)
}

/// A new intent's id: `at` in ms in the high bits, then 20 bits that this
/// process never repeats within 2^20 intents (a random start, counted up),
/// so that the intents of one transaction never share an id. Another
/// replica's intent of the same millisecond takes the same id with a
/// chance of about one in a million: the put expects the item absent, so
/// that is a conflict and the caller's retry makes new ids.
fn intent_id(at: Millis) -> i64 {
    static START: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = *START.get_or_init(|| {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    });
    let low = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) & 0xF_FFFF;
    (at.0.max(0) << 20) | i64::from(low)
}

/// The `intent-of` item of a hydration's newest intent of `kind`: a remap's
/// is keyed by the hydration alone (as before there were other kinds).
fn intent_of_key(kind: &str, hydration: HydrationId) -> String {
    if kind == Intent::REMAP_VIEWS {
        hydration.to_string()
    } else {
        format!("{kind}/{hydration}")
    }
}

/// Record a batch's intents in its transaction: pending, due at once.
pub(super) fn put_intents(write: &mut Write, intents: &[Intent], at: Millis) {
    for intent in intents {
        let stored = StoredIntent {
            id: intent_id(at),
            intent: intent.clone(),
            state: IntentState::Pending,
            attempts: 0,
            created_at: at,
            next_attempt_at: at,
            finished_at: None,
            error: None,
        };
        put_intent(write, &stored, Expect::Absent);
        let of = IntentOf { id: stored.id };
        let key = intent_of_key(intent.kind(), intent.hydration_id());
        write.put(INTENT_OF, &key, Expect::Any, &of, []);
    }
}

impl From<StoredIntent> for IntentStatus {
    fn from(s: StoredIntent) -> IntentStatus {
        IntentStatus {
            id: s.id,
            intent: s.intent,
            state: s.state,
            attempts: s.attempts,
            error: s.error,
            created_at: s.created_at,
            next_attempt_at: s.next_attempt_at,
            finished_at: s.finished_at,
        }
    }
}

/// A view as one write changes it: the version read and its history count.
struct Touched {
    view: View,
    expect: Expect,
    remaps: i64,
}

impl DynamoBackend {
    /// A pending intent and its version; `None` if there is none, or it
    /// is done or failed already.
    async fn pending_intent(&self, id: i64) -> Result<Option<(StoredIntent, i64)>, StoreError> {
        let Some(item) = self.get(INTENTS, &padded(id)).await? else {
            return Ok(None);
        };
        let stored: StoredIntent = doc(&item)?;
        Ok((stored.state == IntentState::Pending).then(|| (stored, version(&item))))
    }

    /// Change a pending intent as `change` says, read again after a lost
    /// race; nothing when it is not pending (as SQL's `WHERE state =
    /// 'pending'`).
    async fn change_intent(
        &self,
        id: i64,
        change: impl Fn(&mut StoredIntent),
    ) -> Result<(), StoreError> {
        for _ in 0..TRANSACT_RETRIES {
            let Some((mut stored, v)) = self.pending_intent(id).await? else {
                return Ok(());
            };
            change(&mut stored);
            let mut write = Write::default();
            put_intent(&mut write, &stored, Expect::Version(v));
            if let Committed::Done { .. } = self.commit(&write).await? {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(format!(
            "outbox intent {id} kept changing while it was written"
        )))
    }

    /// Every view of `container`, in name order.
    async fn container_views(&self, container: &ContainerName) -> Result<Vec<Attrs>, StoreError> {
        let prefix = view_sk(container.as_str(), "");
        self.query(VIEWS, Range::Prefix(prefix), true, usize::MAX, |_| true)
            .await
    }
}

impl ViewStorePort for DynamoBackend {
    fn due_intents(
        &self,
        now: Millis,
        after: i64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<DueIntent>, StoreError>> {
        async move {
            // Oldest first by id, through the pending ones' index.
            let range = Range::After(padded(after));
            let due = self
                .query(PENDING_INTENTS, range, true, limit as usize, |item| {
                    number(item, "next").is_some_and(|next| next <= now.0)
                })
                .await?;
            let keys: Vec<(String, String)> = due
                .iter()
                .map(|item| Ok((INTENTS.to_owned(), text(item, "sk")?.to_owned())))
                .collect::<Result<_, StoreError>>()?;
            let mut intents = Vec::with_capacity(keys.len());
            for item in self.get_in_order(&keys).await? {
                let stored: StoredIntent = doc(&item)?;
                // Finished since the index was read: not due.
                if stored.state == IntentState::Pending {
                    intents.push(DueIntent {
                        id: stored.id,
                        intent: stored.intent,
                        attempts: stored.attempts,
                    });
                }
            }
            Ok(intents)
        }
        .boxed()
    }

    fn latest_intents_of<'a>(
        &'a self,
        hydrations: &'a [HydrationId],
        kind: &'a str,
    ) -> BoxFuture<'a, Result<Vec<IntentStatus>, StoreError>> {
        async move {
            let pointers: Vec<(String, String)> = hydrations
                .iter()
                .map(|h| (INTENT_OF.to_owned(), intent_of_key(kind, *h)))
                .collect();
            let mut keys = Vec::new();
            for item in self.get_many(&pointers).await?.values() {
                let of: IntentOf = doc(item)?;
                keys.push((INTENTS.to_owned(), padded(of.id)));
            }
            self.get_many(&keys)
                .await?
                .values()
                .map(|item| Ok(doc::<StoredIntent>(item)?.into()))
                .collect()
        }
        .boxed()
    }

    fn retry_intent<'a>(
        &'a self,
        id: i64,
        error: &'a str,
        next_attempt_at: Millis,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            self.change_intent(id, |stored| {
                stored.attempts += 1;
                stored.error = Some(error.to_owned());
                stored.next_attempt_at = next_attempt_at;
            })
            .await
        }
        .boxed()
    }

    fn finish_intent<'a>(
        &'a self,
        id: i64,
        error: Option<&'a str>,
        at: Millis,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            self.change_intent(id, |stored| {
                stored.attempts += 1;
                stored.error = error.map(str::to_owned);
                stored.finished_at = Some(at);
                stored.state = match error {
                    None => IntentState::Done,
                    Some(_) => IntentState::Failed,
                };
            })
            .await
        }
        .boxed()
    }

    fn record_remaps<'a>(
        &'a self,
        container: &'a ContainerName,
        remaps: &'a [Remap],
        intent: Option<i64>,
        events: &'a [NewEvent],
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            for _ in 0..TRANSACT_RETRIES {
                let mut write = Write::default();
                if let Some(id) = intent {
                    // Done in this transaction, once: a remap is recorded once.
                    let Some((mut stored, v)) = self.pending_intent(id).await? else {
                        return Ok(false);
                    };
                    stored.state = IntentState::Done;
                    stored.attempts += 1;
                    stored.finished_at = Some(remaps.first().map_or(Millis(0), |r| r.at));
                    stored.error = None;
                    put_intent(&mut write, &stored, Expect::Version(v));
                }
                let keys: Vec<(String, String)> = remaps
                    .iter()
                    .map(|r| (VIEWS.to_owned(), view_sk(container.as_str(), &r.view)))
                    .collect();
                let found = self.get_many(&keys).await?;
                // One put per view however many of its remaps this holds: a
                // transaction may write an item once.
                let mut touched: Vec<Touched> = Vec::new();
                for r in remaps {
                    let at = match touched.iter().position(|t| t.view.name == r.view) {
                        Some(at) => at,
                        None => {
                            let key = (VIEWS.to_owned(), view_sk(container.as_str(), &r.view));
                            touched.push(match found.get(&key) {
                                Some(item) => Touched {
                                    view: doc(item)?,
                                    expect: Expect::Version(version(item)),
                                    remaps: number(item, "remaps").unwrap_or(0),
                                },
                                // A new view is remapped automatically until
                                // turned off; an existing one keeps its setting.
                                None => Touched {
                                    view: View {
                                        container: container.clone(),
                                        name: r.view.clone(),
                                        target: r.to_target.clone(),
                                        columns: r.columns.clone(),
                                        auto_remap: true,
                                        hydration_id: r.hydration_id,
                                        updated_at: r.at,
                                    },
                                    expect: Expect::Absent,
                                    remaps: 0,
                                },
                            });
                            touched.len() - 1
                        }
                    };
                    let t = &mut touched[at];
                    t.view.target = r.to_target.clone();
                    t.view.columns = r.columns.clone();
                    t.view.hydration_id = r.hydration_id;
                    t.view.updated_at = r.at;
                    t.remaps += 1;
                    write.put(
                        &history_pk(container),
                        &history_sk(&r.view, t.remaps),
                        Expect::Any,
                        r,
                        [],
                    );
                }
                for t in &touched {
                    put_view(&mut write, &t.view, t.expect, t.remaps);
                }
                write.events(events);
                if let Committed::Done { .. } = self.commit(&write).await? {
                    return Ok(true);
                }
            }
            Err(StoreError::Unavailable(format!(
                "the views of {container} kept changing while their remaps were recorded"
            )))
        }
        .boxed()
    }

    fn view<'a>(
        &'a self,
        container: &'a ContainerName,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<View>, StoreError>> {
        async move {
            self.get_doc(VIEWS, &view_sk(container.as_str(), name))
                .await
        }
        .boxed()
    }

    fn views<'a>(
        &'a self,
        container: Option<&'a ContainerName>,
        after: (&'a str, &'a str),
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<View>, StoreError>> {
        async move {
            let limit = limit as usize;
            let bound = view_sk(after.0, after.1);
            let items = match container {
                // Every container's: the sort key orders as (container, name).
                None => {
                    self.query(VIEWS, Range::After(bound), true, limit, |_| true)
                        .await?
                }
                // (container, name) > after within one container: all of
                // its views, some or none, as `after` is before, in or past it.
                Some(c) if after.0 < c.as_str() => {
                    let prefix = view_sk(c.as_str(), "");
                    self.query(VIEWS, Range::Prefix(prefix), true, limit, |_| true)
                        .await?
                }
                Some(c) if after.0 == c.as_str() => {
                    let prefix = view_sk(c.as_str(), "");
                    self.query(VIEWS, Range::Prefix(prefix), true, limit, |item| {
                        text(item, "sk").is_ok_and(|sk| sk > bound.as_str())
                    })
                    .await?
                }
                Some(_) => Vec::new(),
            };
            items.iter().map(doc).collect()
        }
        .boxed()
    }

    fn view_history<'a>(
        &'a self,
        container: &'a ContainerName,
        name: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Remap>, StoreError>> {
        async move {
            let prefix = format!("{name}#");
            let items = self
                .query(
                    &history_pk(container),
                    Range::Prefix(prefix),
                    false,
                    limit as usize,
                    |_| true,
                )
                .await?;
            items.iter().map(doc).collect()
        }
        .boxed()
    }

    fn set_auto_remap<'a>(
        &'a self,
        container: &'a ContainerName,
        name: &'a str,
        on: bool,
        at: Millis,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let sk = view_sk(container.as_str(), name);
            for _ in 0..TRANSACT_RETRIES {
                let Some(item) = self.get(VIEWS, &sk).await? else {
                    return Ok(false);
                };
                let mut view: View = doc(&item)?;
                view.auto_remap = on;
                view.updated_at = at;
                let mut write = Write::default();
                let remaps = number(&item, "remaps").unwrap_or(0);
                put_view(&mut write, &view, Expect::Version(version(&item)), remaps);
                if let Committed::Done { .. } = self.commit(&write).await? {
                    return Ok(true);
                }
            }
            Err(StoreError::Unavailable(format!(
                "view {name} of {container} kept changing while it was written"
            )))
        }
        .boxed()
    }

    fn orphans<'a>(
        &'a self,
        container: &'a ContainerName,
    ) -> BoxFuture<'a, Result<Vec<(String, Millis)>, StoreError>> {
        async move {
            // The container's whole history and views, filtered here.
            let history: Vec<Remap> = self.docs(&history_pk(container)).await?;
            let mapped: HashSet<String> = self
                .container_views(container)
                .await?
                .iter()
                .map(|item| doc::<View>(item).map(|v| v.target))
                .collect::<Result<_, _>>()?;
            let mut left: BTreeMap<String, Millis> = BTreeMap::new();
            for r in history {
                let Some(from) = r.from_target else { continue };
                if mapped.contains(&from) {
                    continue;
                }
                let last = left.entry(from).or_insert(r.at);
                *last = (*last).max(r.at);
            }
            Ok(left.into_iter().collect())
        }
        .boxed()
    }
}
