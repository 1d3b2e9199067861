//! Stream commands' group commit, the database-neutral half: what to load,
//! applying the rules in arrival order, and exactly which rows changed.

pub(crate) mod postgres;
pub(crate) mod rows;
pub(crate) mod sqlite;

use crate::StreamRequest;
use sluice_core::stream::{Batch, BatchId, BookmarkVersion, StreamState};
use sluice_core::stream_rules::{self, RewindTo, StreamCommand, StreamReply};
use sluice_core::{Millis, NewEvent, RuleError, StreamName};
use std::collections::{BTreeSet, HashMap};

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
pub struct Targets {
    pub streams: Vec<StreamName>,
    pub batches: Vec<BatchId>,
    pub rewinds: Vec<(StreamName, RewindTo)>,
}

pub fn targets(requests: &[StreamRequest]) -> Targets {
    let mut streams = BTreeSet::new();
    let mut batches = BTreeSet::new();
    let mut rewinds = Vec::new();
    for request in requests {
        streams.insert(request.command.stream().clone());
        batches.extend(request.command.batch_id());
        if let StreamCommand::Rewind { stream, to, .. } = &request.command {
            rewinds.push((stream.clone(), *to));
        }
    }
    Targets {
        // Sorted: two replicas lock shared streams in the same order.
        streams: streams.into_iter().collect(),
        batches: batches.into_iter().collect(),
        rewinds,
    }
}

/// What a backend writes, and what the writer answers.
pub struct Applied {
    pub answers: Vec<Result<StreamReply, RuleError>>,
    /// New or changed streams (their header row).
    pub streams: Vec<StreamState>,
    /// New or changed batches.
    pub batches: Vec<Batch>,
    /// New bookmark versions.
    pub versions: Vec<BookmarkVersion>,
    pub events: Vec<NewEvent>,
}

impl Applied {
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
            && self.batches.is_empty()
            && self.versions.is_empty()
            && self.events.is_empty()
    }
}

/// Apply the commands in arrival order to the loaded streams.
pub fn apply(mut loaded: Loaded, requests: &[StreamRequest], now: Millis) -> Applied {
    let before = loaded.streams.clone();
    let mut answers = Vec::with_capacity(requests.len());
    let mut events = Vec::new();
    for StreamRequest { command, actor } in requests {
        let actor = actor.as_deref();
        let stream = command.stream();
        let outcome = match command {
            StreamCommand::Put { settings, .. } => {
                let existing = loaded.streams.remove(stream);
                let (state, outcome) = stream_rules::put_stream(
                    existing,
                    stream.clone(),
                    settings.clone(),
                    actor,
                    now,
                );
                loaded.streams.insert(stream.clone(), state);
                outcome
            }
            _ => match loaded.streams.get_mut(stream) {
                Some(state) => stream_rules::apply(state, command, actor, now),
                None => {
                    answers.push(Err(RuleError::StreamNotFound(stream.clone())));
                    continue;
                }
            },
        };
        answers.push(outcome.result);
        events.extend(outcome.events.into_iter().map(|mut e| {
            e.actor = actor.map(str::to_owned);
            e
        }));
    }
    diff(before, loaded.streams, answers, events)
}

fn diff(
    before: HashMap<StreamName, StreamState>,
    after: HashMap<StreamName, StreamState>,
    answers: Vec<Result<StreamReply, RuleError>>,
    events: Vec<NewEvent>,
) -> Applied {
    let mut applied = Applied {
        answers,
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
        applied
            .versions
            .extend(state.versions[old_versions..].iter().cloned());
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
