//! Streams, the database-neutral half of their group commit: what a batch
//! of commands must load, applying the rules in arrival order, and exactly
//! which rows changed. Backends only load before and write after
//! (`sqlite/streams.rs`, `postgres/streams.rs`).

use crate::error::StoreError;
use crate::ports::Backend;
use crate::writer::{Group, Pending, Slot};
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::streams::{
    self as rules, Batch, BatchCommand, BatchId, BatchReply, Bookmark, BookmarkCommand,
    BookmarkVersion, PutStream, RewindTo, StreamReply, StreamState,
};
use sluice_core::{Millis, NewEvent, RuleError, StreamName};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// A command waiting in the writer's queue: who asked (recorded in the
/// history and the events), and where its answer goes, typed by the kind
/// of command.
// Jobs are moved into the queue once and answered in place: boxing the
// batch variant would cost an allocation per command for no saving.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Job {
    Put {
        command: PutStream,
        actor: Option<String>,
        slot: Slot<StreamReply>,
    },
    Batch {
        command: BatchCommand,
        actor: Option<String>,
        slot: Slot<BatchReply>,
    },
    Bookmark {
        command: BookmarkCommand,
        actor: Option<String>,
        slot: Slot<Bookmark>,
    },
}

impl Job {
    fn stream(&self) -> &StreamName {
        match self {
            Job::Put { command, .. } => &command.stream,
            Job::Batch { command, .. } => command.stream(),
            Job::Bookmark { command, .. } => command.stream(),
        }
    }
}

impl Pending for Job {
    fn finish(self, committed: Result<(), StoreError>) {
        match self {
            Job::Put { slot, .. } => slot.finish(committed),
            Job::Batch { slot, .. } => slot.finish(committed),
            Job::Bookmark { slot, .. } => slot.finish(committed),
        }
    }
}

/// What a backend loads, under lock, for one batch of stream commands.
#[derive(Default)]
pub struct Loaded {
    /// The named streams that exist, each with its open batch, the batches
    /// the commands name, and the versions their rewinds target.
    pub streams: HashMap<StreamName, StreamState>,
}

impl Loaded {
    /// Put a loaded batch into its stream (a batch named under another
    /// stream stays out, so it is not found there).
    pub fn place_batch(&mut self, batch: Batch) {
        if let Some(state) = self.streams.get_mut(&batch.stream) {
            if state.batch(batch.id).is_none() {
                state.batches.push(batch);
            }
        }
    }

    pub fn place_version(&mut self, version: BookmarkVersion) {
        if let Some(state) = self.streams.get_mut(&version.stream) {
            let known = state
                .versions
                .iter()
                .any(|v| v.bookmark.version == version.bookmark.version);
            if !known {
                state.versions.push(version);
            }
        }
    }
}

/// What a batch names: its streams in lock order, the batches, the rewinds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Targets {
    pub streams: Vec<StreamName>,
    pub batches: Vec<BatchId>,
    pub rewinds: Vec<(StreamName, RewindTo)>,
}

pub(crate) fn targets(jobs: &[Job]) -> Targets {
    let mut streams = BTreeSet::new();
    let mut batches = BTreeSet::new();
    let mut rewinds = Vec::new();
    for job in jobs {
        streams.insert(job.stream().clone());
        match job {
            Job::Batch { command, .. } => {
                batches.insert(command.batch_id());
            }
            Job::Bookmark {
                command: BookmarkCommand::Rewind { stream, to, .. },
                ..
            } => rewinds.push((stream.clone(), *to)),
            Job::Put { .. } | Job::Bookmark { .. } => {}
        }
    }
    Targets {
        // Sorted: two replicas lock shared streams in the same order.
        streams: streams.into_iter().collect(),
        batches: batches.into_iter().collect(),
        rewinds,
    }
}

/// A new bookmark version, with its load as stored (whole, or what it
/// added to the version before: see `rows::streams::stored_load`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewVersion {
    pub version: BookmarkVersion,
    pub load: String,
}

/// What a backend writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// New or changed streams (their header row).
    pub streams: Vec<StreamState>,
    /// New or changed batches.
    pub batches: Vec<Batch>,
    /// New bookmark versions.
    pub versions: Vec<NewVersion>,
    pub events: Vec<NewEvent>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
            && self.batches.is_empty()
            && self.versions.is_empty()
            && self.events.is_empty()
    }
}

/// Apply the jobs' commands in arrival order to the loaded streams, leaving
/// each job's answer in it; the rows to write.
pub(crate) fn apply(mut loaded: Loaded, jobs: &mut [Job], now: Millis) -> Changes {
    let before = loaded.streams.clone();
    let mut events = Vec::new();
    for job in jobs {
        let (new_events, actor) = match job {
            Job::Put {
                command,
                actor,
                slot,
            } => {
                let existing = loaded.streams.remove(&command.stream);
                let (state, outcome) = rules::put_stream(
                    existing,
                    command.stream.clone(),
                    command.settings.clone(),
                    actor.as_deref(),
                    now,
                );
                loaded.streams.insert(command.stream.clone(), state);
                slot.set(outcome.result);
                (outcome.events, actor)
            }
            Job::Batch {
                command,
                actor,
                slot,
            } => {
                let events = on_stream(&mut loaded, command.stream(), slot, |state| {
                    rules::batch(state, command, actor.as_deref(), now)
                });
                (events, actor)
            }
            Job::Bookmark {
                command,
                actor,
                slot,
            } => {
                let events = on_stream(&mut loaded, command.stream(), slot, |state| {
                    rules::bookmark(state, command, actor.as_deref(), now)
                });
                (events, actor)
            }
        };
        events.extend(new_events.into_iter().map(|mut e| {
            e.actor = actor.clone();
            e
        }));
    }
    diff(before, loaded.streams, events)
}

/// Run `rule` on a registered stream and keep its answer in `slot`; the
/// events to append.
fn on_stream<R>(
    loaded: &mut Loaded,
    stream: &StreamName,
    slot: &mut Slot<R>,
    rule: impl FnOnce(&mut StreamState) -> rules::StreamOutcome<R>,
) -> Vec<NewEvent> {
    match loaded.streams.get_mut(stream) {
        Some(state) => {
            let outcome = rule(state);
            slot.set(outcome.result);
            outcome.events
        }
        None => {
            slot.set(Err(RuleError::StreamNotFound(stream.clone())));
            Vec::new()
        }
    }
}

fn diff(
    before: HashMap<StreamName, StreamState>,
    after: HashMap<StreamName, StreamState>,
    events: Vec<NewEvent>,
) -> Changes {
    let mut applied = Changes {
        streams: Vec::new(),
        batches: Vec::new(),
        versions: Vec::new(),
        events,
    };
    for (name, state) in after {
        let old = before.get(&name);
        let old_batches: HashMap<BatchId, &Batch> = old
            .map(|o| o.batches.iter().map(|b| (b.id, b)).collect())
            .unwrap_or_default();
        applied.batches.extend(
            state
                .batches
                .iter()
                .filter(|b| old_batches.get(&b.id) != Some(b))
                .cloned(),
        );
        let old_versions = old.map_or(0, |o| o.versions.len());
        // Each new version is stored against the one before it: the
        // loaded bookmark for the first, then each other in turn.
        let mut previous = old.map(|o| o.bookmark.load.files_done.as_slice());
        for version in &state.versions[old_versions..] {
            applied.versions.push(NewVersion {
                load: crate::rows::streams::stored_load(version, previous),
                version: version.clone(),
            });
            previous = Some(version.bookmark.load.files_done.as_slice());
        }
        let header_changed = old.is_none_or(|o| {
            o.settings != state.settings
                || o.bookmark != state.bookmark
                || o.last_token != state.last_token
                || o.updated_at != state.updated_at
        });
        if header_changed {
            applied.streams.push(state);
        }
    }
    applied
}

/// Stream commands' group: nothing waits on them, so the commit is all.
pub(crate) struct Streams {
    pub backend: Arc<dyn Backend>,
}

impl Group for Streams {
    type Job = Job;
    const NAME: &'static str = "streams";

    fn commit<'a>(&'a self, jobs: &'a mut [Job]) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let targets = targets(jobs);
            self.backend
                .transact_streams(&targets, &mut |loaded, now| apply(loaded, jobs, now))
                .await?;
            Ok(())
        }
        .boxed()
    }
}
