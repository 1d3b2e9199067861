//! The outbox's executor: carries out the intents the lease group recorded
//! (switching a live hydration's views; making a hydration's pin tag in
//! its table's metadata say where the pin is), records each outcome once,
//! and retries what failed for a reason worth retrying. Switching is
//! idempotent (a view already on its target is replaced by the same
//! definition), and an intent is marked done in the transaction that
//! records its remaps, so a crash between the switch and the record
//! switches again after restart and records it once. Setting a tag is
//! idempotent too (the tag is made what the hydration says now). Each
//! container's intents, and each table's tag intents, run in order in a
//! task of their own, beside the others', so a container or catalog that
//! does not answer holds back only its own.

use crate::error::StoreError;
use crate::leadership::Leadership;
use crate::leases::Job;
use crate::ports::DueIntent;
use crate::writer::Slot;
use crate::{submit, system_now, Store};
use sluice_core::containers::{Container, ContainerName};
use sluice_core::hydrations::{Hydration, HydrationId, HydrationState};
use sluice_core::outbox::{backoff_ms, Intent, IntentStatus};
use sluice_core::snapshots::{CatalogPort, TagError, TagTarget};
use sluice_core::views::{self, Remap, RemapKind, View, ViewError, ViewPort, ViewRequest};
use sluice_core::{EventKind, NewEvent};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How far back a view's history is read for the hydration that fed it.
const VIEW_HISTORY: u32 = 100;

/// How long a pin's tag outlives its snapshot's commit, past the age it
/// had when it was set: Iceberg drops a ref older than its
/// `max-ref-age-ms`, so a tag sluice forgets (its database lost) stops
/// pinning a month after it was last set. A copy whose pin has not moved
/// for that long may lose its snapshot to another engine's expiry.
pub const PIN_TAG_MARGIN_MS: i64 = 30 * 86_400_000;

/// What the executor carries intents out with.
#[derive(Clone)]
pub struct OutboxPorts {
    pub views: Arc<dyn ViewPort>,
    pub catalogs: Arc<dyn CatalogPort>,
}

/// Due intents are read this many at a time, at most `DUE_PAGES` times a
/// round.
const DUE_PAGE: u32 = 64;
const DUE_PAGES: usize = 4;

/// Why a remap did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RemapError {
    #[error(transparent)]
    View(#[from] ViewError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    NotFound(String),
}

/// One remap of a container's views: what to switch, why, and for whom.
pub struct RemapOrder<'a> {
    pub container: &'a Container,
    pub requests: &'a [ViewRequest],
    pub kind: RemapKind,
    /// The hydration whose live target the views move to, if any.
    pub hydration: Option<&'a Hydration>,
    pub actor: Option<&'a str>,
    pub reason: &'a str,
    /// The outbox intent this carries out, marked done with the record.
    pub intent: Option<i64>,
}

/// The states whose copies views map to.
pub const MAPPED: [HydrationState; 2] = [HydrationState::Live, HydrationState::Lagging];

impl Store {
    /// Switch views of `container` as `requests` say, in the container (all
    /// or none) and then in sluice's record (history, events, `intent`
    /// done). A refusal changes nothing and is recorded as an event.
    pub async fn remap_views(
        &self,
        ports: &dyn ViewPort,
        order: RemapOrder<'_>,
    ) -> Result<Vec<Remap>, RemapError> {
        let RemapOrder {
            container,
            requests,
            kind,
            hydration,
            actor,
            reason,
            intent,
        } = order;
        let mut current: Vec<Option<View>> = Vec::new();
        for r in requests {
            current.push(self.backend.view(&container.name, &r.view).await?);
        }
        let table = match hydration {
            Some(h) => Some(h.table.clone()),
            None => self.table_of_views(&current).await?,
        };
        // The container's allowed schemas, as they are now: they may have
        // narrowed since the hydration was created.
        let allowed = requests.iter().try_for_each(|r| {
            container.check_place("view", &r.view)?;
            container.check_place("target", &r.target)
        });
        let planned = match allowed {
            Ok(()) => ports.remap(container, requests).await,
            Err(e) => Err(ViewError::NotAllowed(e.0)),
        };
        let plans = match planned {
            Ok(plans) => plans,
            Err(e) => {
                if let (Some(table), false) = (&table, matches!(e, ViewError::Unavailable(_))) {
                    let event = NewEvent {
                        at: system_now(),
                        kind: EventKind::ViewRemapRefused,
                        table: Some(table.clone()),
                        lease_id: hydration.map(|h| h.id),
                        stream: None,
                        data: serde_json::json!({
                            "container": container.name, "error": e.to_string(),
                            "views": requests.iter().map(|r| &r.view).collect::<Vec<_>>(),
                        }),
                        actor: actor.map(str::to_owned),
                    };
                    self.backend
                        .record_remaps(&container.name, &[], None, &[event])
                        .await?;
                }
                return Err(e.into());
            }
        };
        let at = system_now();
        let remaps: Vec<Remap> = plans
            .into_iter()
            .zip(current)
            .map(|(plan, before)| Remap {
                view: plan.view,
                kind,
                from_target: before.map(|v| v.target),
                from_columns: plan.previous_columns,
                to_target: plan.target,
                columns: plan.columns,
                hydration_id: hydration.map(|h| h.id),
                actor: actor.map(str::to_owned),
                reason: reason.to_owned(),
                at,
            })
            .collect();
        let events: Vec<NewEvent> = match &table {
            Some(table) => remaps
                .iter()
                .map(|r| NewEvent {
                    at,
                    kind: EventKind::ViewRemapped,
                    table: Some(table.clone()),
                    lease_id: r.hydration_id,
                    stream: None,
                    data: serde_json::json!({
                        "container": container.name, "view": r.view, "kind": r.kind,
                        "from": r.from_target, "to": r.to_target, "reason": r.reason,
                    }),
                    actor: r.actor.clone(),
                })
                .collect(),
            None => Vec::new(),
        };
        let recorded = self
            .backend
            .record_remaps(&container.name, &remaps, intent, &events)
            .await?;
        if recorded {
            self.supersede(&container.name, &remaps, hydration.map(|h| h.id))
                .await?;
        }
        Ok(remaps)
    }

    /// The table events about these views are filed under: that of the
    /// hydration that last mapped one of them.
    async fn table_of_views(
        &self,
        views: &[Option<View>],
    ) -> Result<Option<sluice_core::TableName>, StoreError> {
        self.table_of(
            views
                .iter()
                .flatten()
                .filter_map(|v| v.hydration_id)
                .collect(),
        )
        .await
    }

    /// The Iceberg table a view is fed from, which gives it its scope: the
    /// table of the hydration that mapped it last (after a hand remap or a
    /// rollback, the last one in its history). A view no hydration ever
    /// mapped is fed from no table.
    pub async fn view_table(
        &self,
        view: &View,
    ) -> Result<Option<sluice_core::TableName>, StoreError> {
        if view.hydration_id.is_some() {
            return self.table_of(view.hydration_id.into_iter().collect()).await;
        }
        let history = self
            .backend
            .view_history(&view.container, &view.name, VIEW_HISTORY)
            .await?;
        self.table_of(history.iter().filter_map(|r| r.hydration_id).collect())
            .await
    }

    /// A view's switch not carried out: the newest remap that live
    /// hydrations naming it asked for, when it is still pending or failed.
    pub async fn view_remap_status(
        &self,
        container: &ContainerName,
        view: &str,
    ) -> Result<Option<IntentStatus>, StoreError> {
        // Ids are time-ordered: the last one naming the view is the newest.
        let mut mapped = Vec::new();
        for state in MAPPED {
            mapped.extend(self.container_hydrations(container, Some(state)).await?);
        }
        mapped.sort_by_key(|h| h.id);
        let newest = mapped
            .into_iter()
            .rev()
            .find(|h| h.views.iter().any(|v| v == view))
            .map(|h| h.id);
        let Some(id) = newest else { return Ok(None) };
        let status = self.latest_intent(id, Intent::REMAP_VIEWS).await?;
        Ok(status.filter(|s| s.state != sluice_core::outbox::IntentState::Done))
    }

    /// The tables a view is fed from or promised to: that of the hydration
    /// that mapped it last, and those of its container's hydrations in
    /// one of `states` that name it (one of them may go live before its
    /// remap is carried out).
    pub async fn view_claims(
        &self,
        container: &ContainerName,
        view: &str,
        states: &[HydrationState],
    ) -> Result<Vec<sluice_core::TableName>, StoreError> {
        let mut tables = Vec::new();
        if let Some(found) = self.backend.view(container, view).await? {
            tables.extend(self.view_table(&found).await?);
        }
        for state in states {
            for h in self.container_hydrations(container, Some(*state)).await? {
                if h.views.iter().any(|v| v == view) && !tables.contains(&h.table) {
                    tables.push(h.table);
                }
            }
        }
        Ok(tables)
    }

    /// Every hydration of `container` (in `state`, when given), oldest first.
    async fn container_hydrations(
        &self,
        container: &ContainerName,
        state: Option<HydrationState>,
    ) -> Result<Vec<Hydration>, StoreError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .backend
                .hydrations(&crate::HydrationQuery {
                    after,
                    state,
                    container: Some(container.clone()),
                    limit: 1000,
                    ..Default::default()
                })
                .await?;
            let full = page.len() == 1000;
            after = page.last().map(|h| h.id);
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }

    /// The table of the first of `hydrations` that exists.
    async fn table_of(
        &self,
        hydrations: Vec<HydrationId>,
    ) -> Result<Option<sluice_core::TableName>, StoreError> {
        for id in hydrations {
            if let Some(h) = self.backend.hydration(id).await? {
                return Ok(Some(h.table));
            }
        }
        Ok(None)
    }

    /// End the unfinished hydrations that filled a table these remaps moved
    /// views off.
    async fn supersede(
        &self,
        container: &ContainerName,
        remaps: &[Remap],
        by: Option<HydrationId>,
    ) -> Result<(), StoreError> {
        let Some(by) = by else { return Ok(()) };
        let left: Vec<&str> = remaps
            .iter()
            .filter_map(|r| r.from_target.as_deref())
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        let ids: Vec<HydrationId> = self
            .container_hydrations(container, None)
            .await?
            .into_iter()
            .filter(|h| h.id != by && h.state.can_be_superseded())
            .filter(|h| left.contains(&h.target.as_str()))
            .map(|h| h.id)
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let (slot, answer) = Slot::new();
        let job = Job::Supersede { ids, by, slot };
        let _ = submit(&self.jobs, job, answer).await?;
        Ok(())
    }

    /// Start what is due in the outbox: the intents of one container in
    /// order, in a task of their own, beside other containers' tasks. A
    /// container whose task is still running (say its server does not
    /// answer) is left for a later round: it delays no other container,
    /// however many of its intents wait before theirs.
    async fn start_due(&self, ports: &OutboxPorts, busy: &Busy) -> Result<(), StoreError> {
        let mut groups: Vec<(Option<String>, Group)> = Vec::new();
        for intent in self.due().await? {
            let h = self.backend.hydration(intent.intent.hydration_id()).await?;
            // A remap waits for its container, a tag for its table.
            let container = h.as_ref().map(|h| match intent.intent {
                Intent::RemapViews { .. } => format!("container/{}", h.container),
                Intent::SyncPinTag { .. } => format!("table/{}", h.table),
            });
            if container.as_ref().is_some_and(|c| Claim::is_taken(busy, c)) {
                continue;
            }
            match groups.iter_mut().find(|(c, _)| *c == container) {
                Some((_, group)) => group.push(intent),
                None => groups.push((container, vec![intent])),
            }
        }
        let mut claimed = Vec::new();
        for (container, group) in groups {
            match container {
                Some(c) => {
                    if let Some(claim) = Claim::take(busy, c) {
                        claimed.push((Some(claim), group));
                    }
                }
                None => claimed.push((None, group)),
            }
        }
        if claimed.is_empty() {
            return Ok(());
        }
        // A task that ended between the read above and its container's
        // claim has carried out some of these already: only what is still
        // due now runs (again, it could switch views back behind a newer
        // remap).
        let still: HashSet<i64> = self.due().await?.iter().map(|d| d.id).collect();
        for (claim, mut group) in claimed {
            group.retain(|d| still.contains(&d.id));
            if group.is_empty() {
                continue;
            }
            let (store, ports) = (self.clone(), ports.clone());
            tokio::spawn(async move {
                if let Err(error) = store.run_group(&ports, group).await {
                    tracing::warn!(%error, "outbox run failed");
                }
                drop(claim);
            });
        }
        Ok(())
    }

    /// The intents due now, oldest first: up to `DUE_PAGES` pages, so that
    /// a busy container's waiting intents do not hide the others'.
    async fn due(&self) -> Result<Vec<DueIntent>, StoreError> {
        let now = system_now();
        let mut due = Vec::new();
        let mut after = 0;
        for _ in 0..DUE_PAGES {
            let page = self.backend.due_intents(now, after, DUE_PAGE).await?;
            let full = page.len() == DUE_PAGE as usize;
            after = page.last().map_or(after, |d| d.id);
            due.extend(page);
            if !full {
                break;
            }
        }
        Ok(due)
    }

    /// How the newest mirroring of `hydration`'s pin as a tag went (`None`:
    /// its pin never moved).
    pub async fn pin_tag_status(
        &self,
        hydration: HydrationId,
    ) -> Result<Option<IntentStatus>, StoreError> {
        self.latest_intent(hydration, Intent::SYNC_PIN_TAG).await
    }

    /// How the newest remap of `hydration`'s views is going (`None`: it
    /// never went live, so none was asked for).
    pub async fn remap_status(
        &self,
        hydration: HydrationId,
    ) -> Result<Option<IntentStatus>, StoreError> {
        self.latest_intent(hydration, Intent::REMAP_VIEWS).await
    }

    /// How the newest remap of each of `hydrations`' views is going, for
    /// those that asked for one (went live with views): one read.
    pub async fn remap_statuses(
        &self,
        hydrations: &[HydrationId],
    ) -> Result<std::collections::HashMap<HydrationId, IntentStatus>, StoreError> {
        let found = self
            .backend
            .latest_intents_of(hydrations, Intent::REMAP_VIEWS)
            .await?;
        Ok(found
            .into_iter()
            .map(|s| (s.intent.hydration_id(), s))
            .collect())
    }

    async fn latest_intent(
        &self,
        hydration: HydrationId,
        kind: &str,
    ) -> Result<Option<IntentStatus>, StoreError> {
        let found = self.backend.latest_intents_of(&[hydration], kind).await?;
        Ok(found.into_iter().next())
    }

    /// One container's due intents, oldest first. When one fails for a
    /// reason worth retrying, those after it wait with it: they would most
    /// likely fail the same way (each after its own timeout), and must not
    /// switch the views before it.
    async fn run_group(&self, ports: &OutboxPorts, group: Group) -> Result<(), StoreError> {
        let mut group = group.into_iter();
        while let Some(due) = group.next() {
            let id = due.id;
            let outcome = match due.intent {
                Intent::RemapViews { .. } => self.run_remap(ports.views.as_ref(), due).await?,
                Intent::SyncPinTag { .. } => {
                    self.sync_pin_tag(ports.catalogs.as_ref(), due).await?
                }
            };
            if let Some((error, next)) = outcome {
                let error = format!("waits for intent {id}, which failed: {error}");
                for rest in group {
                    self.backend.retry_intent(rest.id, &error, next).await?;
                }
                break;
            }
        }
        Ok(())
    }

    /// Make a hydration's pin tag say what its pin is now (none once it
    /// ended, or where its catalog keeps no tags); the error and the time
    /// of the next attempt when it is to be retried.
    async fn sync_pin_tag(
        &self,
        catalogs: &dyn CatalogPort,
        due: DueIntent,
    ) -> Result<Option<(String, sluice_core::Millis)>, StoreError> {
        let now = system_now();
        let Some(h) = self.backend.hydration(due.intent.hydration_id()).await? else {
            self.backend.finish_intent(due.id, None, now).await?;
            return Ok(None);
        };
        let settings = self.backend.table_settings(&h.table).await?;
        let catalog = settings
            .as_ref()
            .and_then(|s| s.catalog.clone())
            .or_else(|| catalogs.default_catalog().map(str::to_owned));
        let Some(catalog) = catalog else {
            self.backend.finish_intent(due.id, None, now).await?;
            return Ok(None);
        };
        // The table's own setting first. Where neither the table nor its
        // catalog asks for tags, none was written: nothing to take back.
        let own = settings.and_then(|s| s.pin_tags);
        let wanted = own.unwrap_or_else(|| catalogs.pin_tags(&catalog));
        if own.is_none() && !wanted {
            self.backend.finish_intent(due.id, None, now).await?;
            return Ok(None);
        }
        // Turned off on the table: the tag written before goes.
        let target = match h.tag_target().filter(|_| wanted) {
            Some(snapshot_id) => {
                // Aged from the snapshot's commit (as Iceberg ages refs).
                let committed = self
                    .backend
                    .snapshot_log(&h.table)
                    .await?
                    .iter()
                    .find(|s| s.id == snapshot_id)
                    .map_or(now, |s| s.timestamp);
                Some(TagTarget {
                    snapshot_id,
                    max_ref_age_ms: (now.0 - committed.0).max(0) + PIN_TAG_MARGIN_MS,
                })
            }
            None => None,
        };
        let name = h.pin_tag_name();
        match catalogs.set_tag(&catalog, &h.table, &name, target).await {
            Ok(written) => {
                self.stats
                    .pin_tag(if written { "written" } else { "unchanged" });
                self.backend.finish_intent(due.id, None, now).await?;
                Ok(None)
            }
            Err(TagError::Unavailable(e)) => {
                self.stats.pin_tag("retried");
                let next = sluice_core::Millis(now.0 + backoff_ms(due.attempts));
                tracing::warn!(
                    hydration = %h.id, table = %h.table, attempts = due.attempts + 1,
                    error = %e, "pin tag not written; will retry"
                );
                self.backend.retry_intent(due.id, &e, next).await?;
                Ok(Some((e, next)))
            }
            Err(refused) => {
                self.stats.pin_tag("refused");
                let error = refused.to_string();
                tracing::warn!(hydration = %h.id, table = %h.table, %error, "pin tag refused");
                let event = NewEvent {
                    at: now,
                    kind: EventKind::PinTagFailed,
                    table: Some(h.table.clone()),
                    lease_id: Some(h.id),
                    stream: None,
                    data: serde_json::json!({
                        "hydration_id": h.id, "tag": name, "catalog": catalog,
                        "snapshot_id": target.map(|t| t.snapshot_id), "error": error,
                    }),
                    actor: None,
                };
                // An event alone, in the transaction that records remaps.
                self.backend
                    .record_remaps(&h.container, &[], None, &[event])
                    .await?;
                self.backend
                    .finish_intent(due.id, Some(&error), now)
                    .await?;
                Ok(None)
            }
        }
    }

    /// Carry out one remap intent; the error and the time of the next
    /// attempt when it is to be retried.
    async fn run_remap(
        &self,
        ports: &dyn ViewPort,
        due: DueIntent,
    ) -> Result<Option<(String, sluice_core::Millis)>, StoreError> {
        let hydration_id = due.intent.hydration_id();
        let now = system_now();
        // Read now, not when the round started: an intent before it in
        // the group may have changed it.
        let Some(h) = self.backend.hydration(hydration_id).await? else {
            self.backend
                .finish_intent(due.id, Some("the hydration does not exist"), now)
                .await?;
            return Ok(None);
        };
        if !h.state.is_mappable() {
            // It ended (superseded, cancelled...) before its views switched;
            // one that fell behind right after going live still switches.
            self.backend.finish_intent(due.id, None, now).await?;
            return Ok(None);
        }
        let Some(container) = self.backend.container(&h.container).await? else {
            let error = format!("container `{}` does not exist", h.container);
            self.backend
                .finish_intent(due.id, Some(&error), now)
                .await?;
            return Ok(None);
        };
        let mut requests = Vec::new();
        for view in &h.views {
            let auto = self
                .backend
                .view(&h.container, view)
                .await?
                .is_none_or(|v| v.auto_remap);
            if auto {
                requests.push(ViewRequest {
                    view: view.clone(),
                    target: h.target.clone(),
                    columns: h.columns.clone(),
                });
            }
        }
        if requests.is_empty() {
            self.backend.finish_intent(due.id, None, now).await?;
            return Ok(None);
        }
        let reason = format!("hydration {} is live", h.id);
        let outcome = self
            .remap_views(
                ports,
                RemapOrder {
                    container: &container,
                    requests: &requests,
                    kind: RemapKind::Remap,
                    hydration: Some(&h),
                    actor: None,
                    reason: &reason,
                    intent: Some(due.id),
                },
            )
            .await;
        match outcome {
            Ok(_) => Ok(None),
            Err(RemapError::View(ViewError::Unavailable(e))) => {
                // The outbox row keeps the attempts, this error and when
                // the next attempt is.
                let next = sluice_core::Millis(now.0 + backoff_ms(due.attempts));
                tracing::warn!(
                    hydration = %h.id, container = %container.name, attempts = due.attempts + 1,
                    next_attempt_at = next.0, error = %e, "view remap failed; will retry"
                );
                self.backend.retry_intent(due.id, &e, next).await?;
                Ok(Some((e, next)))
            }
            Err(RemapError::View(refused)) => {
                // `remap_views` recorded the refusal as an event.
                tracing::warn!(hydration = %h.id, error = %refused, "view remap refused");
                self.backend
                    .finish_intent(due.id, Some(&refused.to_string()), now)
                    .await?;
                Ok(None)
            }
            Err(RemapError::Store(e)) => Err(e),
            Err(RemapError::NotFound(e)) => {
                self.backend.finish_intent(due.id, Some(&e), now).await?;
                Ok(None)
            }
        }
    }

    /// The mapping before `view`'s last change, as a request.
    pub async fn rollback_request(
        &self,
        container: &ContainerName,
        view: &str,
    ) -> Result<Option<ViewRequest>, StoreError> {
        let last = self.backend.view_history(container, view, 1).await?;
        Ok(last
            .first()
            .and_then(views::rollback_of)
            .map(|(target, columns)| ViewRequest {
                view: view.to_owned(),
                target,
                columns,
            }))
    }

    pub async fn view(
        &self,
        container: &ContainerName,
        name: &str,
    ) -> Result<Option<View>, StoreError> {
        self.backend.view(container, name).await
    }

    pub async fn views(
        &self,
        container: Option<&ContainerName>,
        after: (&str, &str),
        limit: u32,
    ) -> Result<Vec<View>, StoreError> {
        self.backend.views(container, after, limit).await
    }

    pub async fn view_history(
        &self,
        container: &ContainerName,
        name: &str,
        limit: u32,
    ) -> Result<Vec<Remap>, StoreError> {
        self.backend.view_history(container, name, limit).await
    }

    pub async fn set_auto_remap(
        &self,
        container: &ContainerName,
        name: &str,
        on: bool,
    ) -> Result<bool, StoreError> {
        self.backend
            .set_auto_remap(container, name, on, system_now())
            .await
    }

    pub async fn orphans(
        &self,
        container: &ContainerName,
    ) -> Result<Vec<(String, sluice_core::Millis)>, StoreError> {
        self.backend.orphans(container).await
    }
}

/// One container's due intents, oldest first (or those whose hydration
/// does not exist).
type Group = Vec<DueIntent>;

/// The containers (`container/NAME`) and tables (`table/NAME`) whose
/// intents a task is carrying out.
type Busy = Arc<Mutex<HashSet<String>>>;

/// A container or table claimed for one task, until it is dropped (also
/// when the task panics).
struct Claim {
    busy: Busy,
    container: String,
}

impl Claim {
    fn is_taken(busy: &Busy, container: &str) -> bool {
        let set = busy.lock().unwrap_or_else(|e| e.into_inner());
        set.contains(container)
    }

    /// `None` when another task has it.
    fn take(busy: &Busy, container: String) -> Option<Claim> {
        let mut set = busy.lock().unwrap_or_else(|e| e.into_inner());
        set.insert(container.clone()).then(|| Claim {
            busy: busy.clone(),
            container,
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut set = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        set.remove(&self.container);
    }
}

/// Run the outbox at start (what a crash left pending) and every `interval`.
pub fn spawn_executor(
    store: Store,
    ports: OutboxPorts,
    interval: Duration,
    mut leadership: Leadership,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let busy = Busy::default();
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            // Only the leader carries intents out: a follower reads no
            // intent and calls no container or catalog.
            leadership.until_leading().await;
            if let Err(error) = store.start_due(&ports, &busy).await {
                tracing::warn!(%error, "outbox run failed");
            }
        }
    })
}
