//! Model-free property tests: random command sequences against one table.
//!
//! Each step advances the clock, resolves a randomly chosen operation against
//! the current state (which lease, which token), applies it with the pure
//! rules and then checks every invariant:
//!
//! - the answer is the one the contract prescribes for the state the command
//!   saw, and a refused command changes nothing beyond settling;
//! - replaying the step's events one by one, starting from the state before
//!   the step, reproduces the state after it exactly (every change has its
//!   event, every event its change), and every grant is legal at the moment
//!   it happens (exclusion, tokens, deferral, arrival order);
//! - the state after the step is settled and consistent;
//! - across steps, tokens are never reused and finished leases never change.

use crate::any_command::{self as rules, Command, Outcome, Reply};
use crate::support::{lease_id, proptest_config, settings, table_name, Coverage, START};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use sluice_core::{
    leases::AcquireRequest, leases::DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS, EventKind, Lease,
    LeaseId, LeaseState, Millis, Mode, NewEvent, TableSettings, TableState, Token,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

// ---------------------------------------------------------------------------
// What to do: operations, resolved against the state when they run.
// ---------------------------------------------------------------------------

/// Which lease a command names.
#[derive(Debug, Clone)]
enum Pick {
    /// One of the live leases (falls back to `Any`).
    Live(Index),
    /// Any lease created so far, finished ones included (falls back to `Unknown`).
    Any(Index),
    /// An id no lease ever had.
    Unknown,
}

/// Which token a command presents.
#[derive(Debug, Clone)]
enum TokenChoice {
    /// The named lease's current token (none while it waits).
    Right,
    /// A token issued earlier on this table to another grant.
    Stale(Index),
    /// The next token the table will issue: never valid yet.
    Wrong,
    Absent,
}

#[derive(Debug, Clone)]
enum Op {
    Acquire {
        mode: Mode,
        ttl_seconds: u32,
        holder: u8,
        key: Option<u8>,
        pin_snapshot: bool,
    },
    Heartbeat {
        pick: Pick,
        token: TokenChoice,
        ttl_seconds: Option<u32>,
    },
    Release {
        pick: Pick,
        token: TokenChoice,
    },
    Revoke {
        pick: Pick,
    },
    KeepWaiting {
        pick: Pick,
    },
    Lookup {
        pick: Pick,
    },
    Sweep,
    PutTable {
        max_compaction_deferral_seconds: u32,
    },
}

/// How the clock moves before a command. Besides random steps it can land
/// exactly on (or 1 ms before) a boundary, where off-by-one bugs live.
#[derive(Debug, Clone)]
enum Advance {
    /// By this many milliseconds (0: the same millisecond as the last command).
    By(i64),
    /// To a live lease's `expires_at`, plus this offset (-1 or 0).
    ToExpiry(Index, i64),
    /// To the instant a waiting writer's deferral runs out, plus this offset.
    ToDeferralDeadline(Index, i64),
}

#[derive(Debug, Clone)]
struct Step {
    advance: Advance,
    op: Op,
}

#[derive(Debug, Clone)]
struct Scenario {
    initial_deferral_seconds: u32,
    steps: Vec<Step>,
}

fn deferral() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0),
        1u32..=90,
        Just(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS)
    ]
}

fn ttl() -> impl Strategy<Value = u32> {
    1u32..=120
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        6 => any::<Index>().prop_map(Pick::Live),
        3 => any::<Index>().prop_map(Pick::Any),
        1 => Just(Pick::Unknown),
    ]
}

fn token_choice() -> impl Strategy<Value = TokenChoice> {
    prop_oneof![
        4 => Just(TokenChoice::Right),
        1 => any::<Index>().prop_map(TokenChoice::Stale),
        1 => Just(TokenChoice::Wrong),
        2 => Just(TokenChoice::Absent),
    ]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Read), Just(Mode::Write)]
}

/// Two holders and four idempotency keys: reuse (replays and conflicts)
/// is frequent. A pinned snapshot on a write request is refused.
fn acquire_op() -> impl Strategy<Value = Op> {
    let holder = 0u8..2;
    let key = prop::option::weighted(0.35, 0u8..4);
    let pin_snapshot = prop::bool::weighted(0.1);
    (mode(), ttl(), holder, key, pin_snapshot).prop_map(
        |(mode, ttl_seconds, holder, key, pin_snapshot)| Op::Acquire {
            mode,
            ttl_seconds,
            holder,
            key,
            pin_snapshot,
        },
    )
}

fn heartbeat_op() -> impl Strategy<Value = Op> {
    (pick(), token_choice(), prop::option::of(ttl())).prop_map(|(pick, token, ttl_seconds)| {
        Op::Heartbeat {
            pick,
            token,
            ttl_seconds,
        }
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => acquire_op(),
        3 => heartbeat_op(),
        3 => (pick(), token_choice()).prop_map(|(pick, token)| Op::Release { pick, token }),
        3 => pick().prop_map(|pick| Op::KeepWaiting { pick }),
        1 => pick().prop_map(|pick| Op::Revoke { pick }),
        1 => pick().prop_map(|pick| Op::Lookup { pick }),
        1 => Just(Op::Sweep),
        1 => deferral().prop_map(|max_compaction_deferral_seconds| Op::PutTable {
            max_compaction_deferral_seconds
        }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let offset = prop_oneof![Just(-1i64), Just(0i64)];
    let advance = prop_oneof![
        6 => Just(Advance::By(0)),
        6 => (1i64..1_000).prop_map(Advance::By),
        6 => (1_000i64..10_000).prop_map(Advance::By),
        4 => (10_000i64..60_000).prop_map(Advance::By),
        1 => (any::<Index>(), offset.clone()).prop_map(|(i, o)| Advance::ToExpiry(i, o)),
        1 => (any::<Index>(), offset).prop_map(|(i, o)| Advance::ToDeferralDeadline(i, o)),
    ];
    (advance, op()).prop_map(|(advance, op)| Step { advance, op })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (deferral(), prop::collection::vec(step(), 1..=60)).prop_map(
        |(initial_deferral_seconds, steps)| Scenario {
            initial_deferral_seconds,
            steps,
        },
    )
}

// ---------------------------------------------------------------------------
// The harness: runs a scenario and checks every step.
// ---------------------------------------------------------------------------

/// The situations the generator must reach for the property to mean much.
const SITUATIONS: [&str; 16] = [
    "grants",
    "grants after waiting",
    "waiters expired",
    "holders expired",
    "readers passed a waiting writer",
    "readers held back by a due writer",
    "a release granting the next waiter",
    "idempotent replays",
    "idempotency conflicts",
    "stale releases refused",
    "repeated releases answered",
    "cancels",
    "revokes",
    "settings changes",
    "steps at an expiry instant",
    "steps at a deferral deadline",
];

struct Harness {
    state: TableState,
    now: Millis,
    /// Every lease created so far, in creation order.
    ids: Vec<LeaseId>,
    next_id: u128,
    /// Every token granted so far, in grant order.
    issued: Vec<Token>,
    /// The token each lease was granted with.
    token_of: HashMap<LeaseId, Token>,
    /// Every finished lease as it was first seen finished.
    finished: HashMap<LeaseId, Lease>,
    coverage: Coverage,
}

/// Prefix a failure's message with what was going on.
fn with_context(error: TestCaseError, context: String) -> TestCaseError {
    match error {
        TestCaseError::Fail(reason) => {
            TestCaseError::fail(format!("{context}\n  {}", reason.message()))
        }
        reject => reject,
    }
}

/// An id the generator never hands out (fresh ids count up from 1).
fn unknown_id() -> LeaseId {
    lease_id(u128::MAX)
}

impl Harness {
    fn new(initial_deferral_seconds: u32) -> Harness {
        let (state, outcome) = rules::put_table(
            None,
            table_name(),
            settings(initial_deferral_seconds),
            START,
        );
        assert!(matches!(
            outcome.result,
            Ok(Reply::Table { created: true, .. })
        ));
        Harness {
            state,
            now: START,
            ids: Vec::new(),
            next_id: 1,
            issued: Vec::new(),
            token_of: HashMap::new(),
            finished: HashMap::new(),
            coverage: Coverage::new(&SITUATIONS),
        }
    }

    fn run(&mut self, scenario: &Scenario) -> Result<(), TestCaseError> {
        for (i, step) in scenario.steps.iter().enumerate() {
            self.step(step)
                .map_err(|e| with_context(e, format!("step {i} ({step:?})")))?;
        }
        Ok(())
    }

    /// The next instant; the clock never goes back.
    fn advance(&self, advance: &Advance) -> Millis {
        let state = &self.state;
        let target = match advance {
            Advance::By(ms) => Some(self.now.0 + ms),
            Advance::ToExpiry(i, offset) => (!state.live.is_empty())
                .then(|| state.live[i.index(state.live.len())].expires_at.0 + offset),
            Advance::ToDeferralDeadline(i, offset) => {
                let writers: Vec<&Lease> =
                    state.waiters().filter(|w| w.mode == Mode::Write).collect();
                let deferral_ms = i64::from(state.settings.max_compaction_deferral_seconds) * 1000;
                (!writers.is_empty())
                    .then(|| writers[i.index(writers.len())].requested_at.0 + deferral_ms + offset)
            }
        };
        Millis(target.unwrap_or(self.now.0).max(self.now.0))
    }

    fn resolve_pick(&self, pick: &Pick, seen: &TableState) -> LeaseId {
        match pick {
            Pick::Live(i) if !seen.live.is_empty() => seen.live[i.index(seen.live.len())].id,
            Pick::Live(i) | Pick::Any(i) if !self.ids.is_empty() => {
                self.ids[i.index(self.ids.len())]
            }
            _ => unknown_id(),
        }
    }

    fn resolve_token(&self, choice: &TokenChoice, id: LeaseId, seen: &TableState) -> Option<Token> {
        let current = seen.find(id).and_then(|l| l.token);
        match choice {
            TokenChoice::Right => current,
            TokenChoice::Absent => None,
            TokenChoice::Wrong => Some(seen.last_token + 1),
            TokenChoice::Stale(i) => {
                let others: Vec<Token> = self
                    .issued
                    .iter()
                    .copied()
                    .filter(|t| Some(*t) != current)
                    .collect();
                if others.is_empty() {
                    Some(seen.last_token + 1)
                } else {
                    Some(others[i.index(others.len())])
                }
            }
        }
    }

    /// The concrete command, resolved against the state the command will
    /// see (`seen`: the state after settling at `now`), as a client that had
    /// followed every answer would send it.
    fn resolve(&mut self, op: &Op, seen: &TableState) -> Command {
        match op {
            Op::Acquire {
                mode,
                ttl_seconds,
                holder,
                key,
                pin_snapshot,
            } => {
                let id = lease_id(self.next_id);
                self.next_id += 1;
                Command::Acquire {
                    table: table_name(),
                    request: AcquireRequest {
                        lease_id: id,
                        mode: *mode,
                        holder: format!("holder-{holder}"),
                        ttl_seconds: *ttl_seconds,
                        idempotency_key: key.map(|k| format!("key-{k}")),
                        purpose: Some("property test".into()),
                        pin_snapshot_id: pin_snapshot.then_some(42),
                        max_waiters: u32::MAX,
                    },
                }
            }
            Op::Heartbeat {
                pick,
                token,
                ttl_seconds,
            } => {
                let id = self.resolve_pick(pick, seen);
                Command::Heartbeat {
                    lease_id: id,
                    token: self.resolve_token(token, id, seen),
                    ttl_seconds: *ttl_seconds,
                }
            }
            Op::Release { pick, token } => {
                let id = self.resolve_pick(pick, seen);
                Command::Release {
                    lease_id: id,
                    token: self.resolve_token(token, id, seen),
                }
            }
            Op::Revoke { pick } => Command::Revoke {
                lease_id: self.resolve_pick(pick, seen),
                reason: "property test".into(),
            },
            Op::KeepWaiting { pick } => Command::KeepWaiting {
                lease_id: self.resolve_pick(pick, seen),
            },
            Op::Lookup { pick } => Command::Lookup {
                lease_id: self.resolve_pick(pick, seen),
            },
            Op::Sweep => Command::Sweep {
                table: table_name(),
            },
            Op::PutTable {
                max_compaction_deferral_seconds,
            } => Command::PutTable {
                table: table_name(),
                settings: settings(*max_compaction_deferral_seconds),
            },
        }
    }

    fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        self.now = self.advance(&step.advance);
        let now = self.now;
        let before = self.state.clone();

        // What the command sees: the table settled at `now`.
        let mut seen = before.clone();
        let mut settle_events = Vec::new();
        rules::settle(&mut seen, now, &mut settle_events);

        let command = self.resolve(&step.op, &seen);
        let outcome = match &command {
            Command::PutTable { table, settings } => {
                let (state, outcome) = rules::put_table(
                    Some(self.state.clone()),
                    table.clone(),
                    settings.clone(),
                    now,
                );
                self.state = state;
                outcome
            }
            command => rules::apply(&mut self.state, command, now),
        };
        let record = StepRecord {
            now,
            before,
            seen,
            settle_events,
            command,
            outcome,
            after: self.state.clone(),
        };
        self.check(&record).map_err(|e| {
            let events: Vec<_> = (record.outcome.events.iter())
                .map(|e| (e.kind, e.lease_id))
                .collect();
            let context = format!(
                "{:?} at {now:?} -> {:?}\n  events: {events:?}",
                record.command, record.outcome.result
            );
            with_context(e, context)
        })
    }

    fn check(&mut self, step: &StepRecord) -> Result<(), TestCaseError> {
        prop_assert!(
            step.outcome.events.starts_with(&step.settle_events),
            "a command first settles the table"
        );
        let expected = expected_answer(&step.command, &step.seen, step.now);
        self.check_answer(&expected, step)?;
        let grants = self.replay_events(step)?;
        check_settled_state(step)?;
        self.check_history(step, &grants)?;
        self.observe(&expected, step);
        Ok(())
    }

    /// The answer must be the one prescribed for the state the command saw.
    fn check_answer(
        &mut self,
        expected: &Expected,
        step: &StepRecord,
    ) -> Result<(), TestCaseError> {
        let StepRecord {
            now,
            seen,
            settle_events,
            command,
            outcome,
            after,
            ..
        } = step;
        if let Ok(Reply::Lease {
            lease, position, ..
        }) = &outcome.result
        {
            prop_assert_eq!(
                Some(lease),
                after.find(lease.id),
                "the answer is the stored lease"
            );
            let expected_position = (lease.state == LeaseState::Waiting)
                .then(|| 1 + after.waiters().take_while(|w| w.id != lease.id).count() as u32);
            prop_assert_eq!(*position, expected_position);
        }
        let unchanged = |after: &TableState| -> Result<(), TestCaseError> {
            prop_assert_eq!(after, seen, "nothing may change beyond settling");
            prop_assert_eq!(
                &outcome.events[..],
                settle_events,
                "no event beyond settling"
            );
            Ok(())
        };
        match expected {
            Expected::Refused(kind) => {
                match &outcome.result {
                    Err(e) => prop_assert_eq!(e.kind(), *kind),
                    Ok(reply) => prop_assert!(false, "expected {kind}, got {reply:?}"),
                }
                unchanged(after)?;
            }
            Expected::NoChange => {
                prop_assert!(outcome.result.is_ok(), "expected success");
                unchanged(after)?;
            }
            Expected::Replayed(id) => {
                match &outcome.result {
                    Ok(Reply::Lease {
                        lease, replayed, ..
                    }) => {
                        prop_assert_eq!(lease.id, *id, "the earlier lease is answered");
                        prop_assert!(*replayed);
                    }
                    other => prop_assert!(false, "expected a replay, got {other:?}"),
                }
                unchanged(after)?;
            }
            Expected::Created(id) => {
                match &outcome.result {
                    Ok(Reply::Lease {
                        lease, replayed, ..
                    }) => {
                        prop_assert_eq!(lease.id, *id);
                        prop_assert!(!*replayed);
                    }
                    other => prop_assert!(false, "expected a new lease, got {other:?}"),
                }
                let lease = after.find(*id).expect("created");
                prop_assert_eq!(lease.seq, seen.last_seq + 1, "a new lease queues last");
                prop_assert_eq!(lease.requested_at, *now, "requested now");
                self.ids.push(*id);
            }
            Expected::Ends(id, state) => {
                prop_assert!(outcome.result.is_ok(), "expected success");
                let lease = after.find(*id).expect("still known");
                prop_assert_eq!(lease.state, *state);
                prop_assert_eq!(
                    lease.token,
                    seen.find(*id).and_then(|l| l.token),
                    "ending a lease keeps its token"
                );
            }
            Expected::Extended(id, expires_at) => {
                prop_assert!(outcome.result.is_ok(), "expected success");
                let lease = after.find(*id).expect("still known");
                prop_assert!(lease.is_live());
                prop_assert_eq!(lease.expires_at, *expires_at);
            }
            Expected::SettingsChanged(settings) => {
                prop_assert!(outcome.result.is_ok(), "expected success");
                prop_assert_eq!(&after.settings, settings);
            }
        }
        if !matches!(command, Command::Acquire { .. }) {
            prop_assert_eq!(after.last_seq, seen.last_seq, "only acquire queues");
        }
        Ok(())
    }

    /// Replay the events from the state before the step: they must tell
    /// exactly what changed, and every grant must be legal when it happens.
    /// Returns the step's grants, in order.
    fn replay_events(&mut self, step: &StepRecord) -> Result<Vec<(LeaseId, Token)>, TestCaseError> {
        let StepRecord {
            now,
            before,
            command,
            outcome,
            after,
            ..
        } = step;
        let now = *now;
        let mut shadow: BTreeMap<LeaseId, Shadow> = before
            .live
            .iter()
            .chain(&before.finished)
            .map(|l| (l.id, Shadow::of(l)))
            .collect();
        let mut settings = before.settings.clone();
        let mut last_token = before.last_token;
        let mut last_seq = before.last_seq;
        let mut grants = Vec::new();
        let mut named: BTreeSet<LeaseId> = BTreeSet::new();

        for event in &outcome.events {
            prop_assert_eq!(event.at, now);
            prop_assert_eq!(event.table.as_ref(), Some(&before.name));
            if event.kind == EventKind::TableSettingsChanged {
                let asked = matches!(command, Command::PutTable { .. });
                prop_assert!(asked, "only put_table changes settings");
                prop_assert_eq!(event.lease_id, None);
                settings = serde_json::from_value(event.data["settings"].clone())
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                continue;
            }
            let id = event.lease_id.expect("a lease event names its lease");
            named.insert(id);
            let lease = after.find(id).expect("an event's lease is in the state");
            prop_assert_eq!(&event.data["mode"], &serde_json::json!(lease.mode));

            if event.kind == EventKind::LeaseRequested {
                let asked = matches!(
                    command,
                    Command::Acquire { request, .. } if request.lease_id == id
                );
                prop_assert!(asked, "only an acquire of that id queues it");
                prop_assert!(!shadow.contains_key(&id), "a new lease has a new id");
                prop_assert_eq!(lease.seq, last_seq + 1);
                last_seq = lease.seq;
                shadow.insert(
                    id,
                    Shadow {
                        state: LeaseState::Waiting,
                        token: None,
                        mode: lease.mode,
                        seq: lease.seq,
                        requested_at: lease.requested_at,
                    },
                );
                continue;
            }

            let current = shadow
                .get(&id)
                .cloned()
                .expect("an event's lease existed before it");
            let (next_state, token) = match event.kind {
                EventKind::LeaseGranted => {
                    prop_assert_eq!(
                        current.state,
                        LeaseState::Waiting,
                        "only waiters are granted"
                    );
                    let token = event.data["token"]
                        .as_i64()
                        .expect("a grant names its token");
                    prop_assert_eq!(token, last_token + 1, "tokens count up by one per grant");
                    last_token = token;
                    check_grant_is_legal(&shadow, &current, &settings, now)?;
                    self.note_grant(&shadow, &current, &settings, now);
                    grants.push((id, token));
                    (LeaseState::Granted, Some(token))
                }
                EventKind::LeaseExpired => {
                    prop_assert!(current.state.is_live());
                    prop_assert!(lease.expires_at <= now, "only due leases expire");
                    (LeaseState::Expired, current.token)
                }
                EventKind::LeaseReleased => {
                    prop_assert_eq!(current.state, LeaseState::Granted);
                    let asked = matches!(
                        command,
                        Command::Release { lease_id, token: Some(t) }
                            if *lease_id == id && current.token == Some(*t)
                    );
                    prop_assert!(asked, "only a release with its token releases it");
                    (LeaseState::Released, current.token)
                }
                EventKind::LeaseCancelled => {
                    prop_assert_eq!(current.state, LeaseState::Waiting);
                    let asked = matches!(
                        command,
                        Command::Release { lease_id, token: None } if *lease_id == id
                    );
                    prop_assert!(asked, "only a release without token cancels it");
                    (LeaseState::Cancelled, current.token)
                }
                EventKind::LeaseRevoked => {
                    prop_assert!(current.state.is_live());
                    let asked = matches!(
                        command,
                        Command::Revoke { lease_id, .. } if *lease_id == id
                    );
                    prop_assert!(asked, "only a revoke of it revokes it");
                    (LeaseState::Revoked, current.token)
                }
                EventKind::LeaseRequested | EventKind::TableSettingsChanged => unreachable!(),
                stream_kind => {
                    return Err(TestCaseError::fail(format!(
                        "a table command emitted the stream event {stream_kind:?}"
                    )))
                }
            };
            let entry = shadow.get_mut(&id).expect("present");
            entry.state = next_state;
            entry.token = token;
            if !next_state.is_live() {
                prop_assert_eq!(
                    lease.ended_at,
                    Some(now),
                    "a lease ends when its event says"
                );
            }
        }

        // The events told the whole story.
        let known: Vec<&Lease> = after.live.iter().chain(&after.finished).collect();
        prop_assert_eq!(
            known.len(),
            shadow.len(),
            "no lease appears or vanishes silently"
        );
        for lease in known {
            let told = shadow.get(&lease.id).expect("every lease was told of");
            prop_assert_eq!(
                lease.state,
                told.state,
                "{} changed state silently",
                lease.id
            );
            prop_assert_eq!(
                lease.token,
                told.token,
                "{} changed token silently",
                lease.id
            );
        }
        prop_assert_eq!(after.last_token, last_token);
        prop_assert_eq!(after.last_seq, last_seq);
        prop_assert_eq!(&after.settings, &settings);

        // Leases no event names are untouched, except the command's own
        // lease, whose expiry (and ttl) a heartbeat or keep-waiting moves.
        let target = command_lease(command);
        for old in before.live.iter().chain(&before.finished) {
            if named.contains(&old.id) {
                continue;
            }
            let new = after.find(old.id).expect("no lease vanishes");
            if Some(old.id) == target {
                let mut moved = old.clone();
                moved.expires_at = new.expires_at;
                moved.ttl_seconds = new.ttl_seconds;
                prop_assert_eq!(&moved, new, "only expiry and ttl move without an event");
            } else {
                prop_assert_eq!(old, new, "a lease changed without an event");
            }
        }
        Ok(grants)
    }

    fn note_grant(
        &mut self,
        shadow: &BTreeMap<LeaseId, Shadow>,
        candidate: &Shadow,
        settings: &TableSettings,
        now: Millis,
    ) {
        self.coverage.saw("grants");
        if candidate.requested_at < now {
            self.coverage.saw("grants after waiting");
        }
        if candidate.mode == Mode::Read
            && shadow.values().any(|w| {
                w.state == LeaseState::Waiting
                    && w.mode == Mode::Write
                    && w.seq < candidate.seq
                    && !w.is_due(settings, now)
            })
        {
            self.coverage.saw("readers passed a waiting writer");
        }
    }

    /// Across steps: tokens only grow and are never reused; a lease keeps
    /// the token it was granted with; finished leases never change.
    fn check_history(
        &mut self,
        step: &StepRecord,
        grants: &[(LeaseId, Token)],
    ) -> Result<(), TestCaseError> {
        let StepRecord { before, after, .. } = step;
        prop_assert!(
            after.last_token >= before.last_token,
            "last_token never decreases"
        );
        for (id, token) in grants {
            prop_assert!(
                self.issued.last().is_none_or(|last| token > last),
                "token {token} is not above every earlier token {:?}",
                self.issued.last()
            );
            prop_assert!(
                self.token_of.insert(*id, *token).is_none(),
                "granted twice: {id}"
            );
            self.issued.push(*token);
        }
        prop_assert_eq!(self.issued.last().copied().unwrap_or(0), after.last_token);
        for lease in after.live.iter().chain(&after.finished) {
            prop_assert_eq!(lease.token, self.token_of.get(&lease.id).copied());
        }
        for (id, was) in &self.finished {
            prop_assert!(
                !after.live.iter().any(|l| l.id == *id),
                "finished lease {id} is live again"
            );
            prop_assert_eq!(Some(was), after.find(*id), "a finished lease changed");
        }
        for lease in &after.finished {
            self.finished
                .entry(lease.id)
                .or_insert_with(|| lease.clone());
        }
        Ok(())
    }

    fn observe(&mut self, expected: &Expected, step: &StepRecord) {
        let StepRecord {
            now,
            before,
            command,
            outcome,
            after,
            ..
        } = step;
        let c = &mut self.coverage;
        let deferral_ms = i64::from(before.settings.max_compaction_deferral_seconds) * 1000;
        if before.live.iter().any(|l| l.expires_at == *now) {
            c.saw("steps at an expiry instant");
        }
        if before
            .waiters()
            .any(|w| w.mode == Mode::Write && w.requested_at.0 + deferral_ms == now.0)
        {
            c.saw("steps at a deferral deadline");
        }
        for event in &outcome.events {
            let lease = event.lease_id.and_then(|id| after.find(id));
            match (event.kind, lease) {
                (EventKind::LeaseExpired, Some(l)) if l.token.is_none() => c.saw("waiters expired"),
                (EventKind::LeaseExpired, Some(_)) => c.saw("holders expired"),
                (EventKind::LeaseCancelled, _) => c.saw("cancels"),
                (EventKind::LeaseRevoked, _) => c.saw("revokes"),
                (EventKind::TableSettingsChanged, _) => c.saw("settings changes"),
                _ => {}
            }
        }
        if matches!(command, Command::Release { .. })
            && outcome
                .events
                .iter()
                .any(|e| e.kind == EventKind::LeaseReleased)
            && outcome
                .events
                .iter()
                .any(|e| e.kind == EventKind::LeaseGranted)
        {
            c.saw("a release granting the next waiter");
        }
        let writer_holds = after.holders().any(|h| h.mode == Mode::Write);
        if !writer_holds && after.waiters().any(|w| w.mode == Mode::Read) {
            c.saw("readers held back by a due writer");
        }
        match (expected, command) {
            (Expected::Replayed(_), _) => c.saw("idempotent replays"),
            (Expected::Refused("idempotency_conflict"), _) => c.saw("idempotency conflicts"),
            (Expected::Refused("stale_token"), Command::Release { .. }) => {
                c.saw("stale releases refused")
            }
            (Expected::NoChange, Command::Release { .. }) => c.saw("repeated releases answered"),
            _ => {}
        }
    }
}

/// Everything about one step, for the checks.
struct StepRecord {
    now: Millis,
    /// The state before the step.
    before: TableState,
    /// `before` settled at `now`: the state the command itself sees.
    seen: TableState,
    /// The events settling alone produces.
    settle_events: Vec<NewEvent>,
    command: Command,
    outcome: Outcome,
    /// The state after the step.
    after: TableState,
}

/// A lease as the event replay tracks it.
#[derive(Debug, Clone)]
struct Shadow {
    state: LeaseState,
    token: Option<Token>,
    mode: Mode,
    seq: i64,
    requested_at: Millis,
}

impl Shadow {
    fn of(lease: &Lease) -> Shadow {
        Shadow {
            state: lease.state,
            token: lease.token,
            mode: lease.mode,
            seq: lease.seq,
            requested_at: lease.requested_at,
        }
    }

    /// A waiting writer whose deferral has run out: readers queue behind it.
    fn is_due(&self, settings: &TableSettings, now: Millis) -> bool {
        now.0 - self.requested_at.0 >= i64::from(settings.max_compaction_deferral_seconds) * 1000
    }
}

/// The queue policy, checked at the moment of each grant.
fn check_grant_is_legal(
    shadow: &BTreeMap<LeaseId, Shadow>,
    candidate: &Shadow,
    settings: &TableSettings,
    now: Millis,
) -> Result<(), TestCaseError> {
    let holders: Vec<&Shadow> = shadow
        .values()
        .filter(|l| l.state == LeaseState::Granted)
        .collect();
    let earlier_waiters: Vec<&Shadow> = shadow
        .values()
        .filter(|l| l.state == LeaseState::Waiting && l.seq < candidate.seq)
        .collect();
    match candidate.mode {
        Mode::Write => {
            prop_assert!(
                holders.is_empty(),
                "a writer was granted beside {holders:?}"
            );
            prop_assert!(
                !earlier_waiters.iter().any(|w| w.mode == Mode::Write),
                "a writer passed an earlier writer: {earlier_waiters:?}"
            );
            prop_assert!(
                earlier_waiters.is_empty(),
                "a writer passed earlier waiters: {earlier_waiters:?}"
            );
        }
        Mode::Read => {
            prop_assert!(
                !holders.iter().any(|h| h.mode == Mode::Write),
                "a reader was granted beside a writer"
            );
            let due: Vec<&&Shadow> = earlier_waiters
                .iter()
                .filter(|w| w.mode == Mode::Write && w.is_due(settings, now))
                .collect();
            prop_assert!(
                due.is_empty(),
                "a reader passed a writer whose deferral of {}s ran out: {due:?}",
                settings.max_compaction_deferral_seconds
            );
        }
    }
    Ok(())
}

/// The invariants of a table state after any step.
fn check_settled_state(step: &StepRecord) -> Result<(), TestCaseError> {
    let StepRecord {
        now, before, after, ..
    } = step;
    let now = *now;
    let mut ids = BTreeSet::new();
    for lease in after.live.iter().chain(&after.finished) {
        prop_assert!(ids.insert(lease.id), "lease {} is stored twice", lease.id);
        prop_assert!(lease.seq >= 1 && lease.seq <= after.last_seq);
    }
    prop_assert!(
        after.live.windows(2).all(|w| w[0].seq < w[1].seq),
        "live leases are in arrival order"
    );
    prop_assert!(after.live.iter().all(|l| l.is_live()));
    prop_assert!(after
        .finished
        .iter()
        .all(|l| !l.is_live() && l.ended_at.is_some()));

    // Every live lease is valid: what was due has been expired.
    for lease in &after.live {
        prop_assert!(
            now < lease.expires_at,
            "live lease {} is past expiry",
            lease.id
        );
    }
    for old in &before.live {
        if old.expires_at <= now {
            let new = after.find(old.id).expect("no lease vanishes");
            prop_assert_eq!(
                new.state,
                LeaseState::Expired,
                "a due lease was not expired"
            );
        }
    }

    // Holders: tokens, and never a writer together with anyone.
    let holders: Vec<&Lease> = after.holders().collect();
    let mut tokens = BTreeSet::new();
    for h in &holders {
        let token = h.token.expect("a granted lease has a token");
        prop_assert!(tokens.insert(token), "two holders share token {token}");
        prop_assert!(token >= 1 && token <= after.last_token);
        prop_assert!(h.granted_at.is_some_and(|g| g <= now));
    }
    if holders.iter().any(|h| h.mode == Mode::Write) {
        prop_assert_eq!(holders.len(), 1, "a writer holds together with others");
    }
    for w in after.waiters() {
        prop_assert_eq!(w.token, None, "a waiter has no token yet");
        prop_assert_eq!(w.granted_at, None);
    }

    // Nothing is stuck: no waiter the policy would grant is left waiting.
    for (i, lease) in after.live.iter().enumerate() {
        if lease.state == LeaseState::Waiting {
            prop_assert!(
                !rules::may_grant(after, i, now),
                "waiter {} could be granted but waits",
                lease.id
            );
        }
    }
    if let Some(first) = after.waiters().next() {
        let blocked = match first.mode {
            Mode::Write => !holders.is_empty(),
            Mode::Read => holders.iter().any(|h| h.mode == Mode::Write),
        };
        prop_assert!(blocked, "the first waiter {} waits for nothing", first.id);
    }
    Ok(())
}

/// The lease a command names, if any.
fn command_lease(command: &Command) -> Option<LeaseId> {
    match command {
        Command::Heartbeat { lease_id, .. }
        | Command::Release { lease_id, .. }
        | Command::Revoke { lease_id, .. }
        | Command::KeepWaiting { lease_id }
        | Command::Lookup { lease_id } => Some(*lease_id),
        Command::Acquire { .. } | Command::Sweep { .. } | Command::PutTable { .. } => None,
    }
}

// ---------------------------------------------------------------------------
// The contract: what each command must answer, given the state it sees.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Expected {
    /// Refused with this error type; nothing changes beyond settling.
    Refused(&'static str),
    /// Answered, and nothing changes beyond settling.
    NoChange,
    /// Answered from the idempotency key with this earlier lease; no change.
    Replayed(LeaseId),
    /// A new lease is queued.
    Created(LeaseId),
    /// The named live lease ends in this state.
    Ends(LeaseId, LeaseState),
    /// The named live lease stays live, valid until this instant.
    Extended(LeaseId, Millis),
    SettingsChanged(TableSettings),
}

fn ended_kind(state: LeaseState) -> &'static str {
    match state {
        LeaseState::Expired => "lease_expired",
        LeaseState::Revoked => "lease_revoked",
        LeaseState::Cancelled => "lease_cancelled",
        LeaseState::Released => "lease_released",
        LeaseState::Waiting | LeaseState::Granted => unreachable!("live"),
    }
}

fn expected_answer(command: &Command, seen: &TableState, now: Millis) -> Expected {
    use Expected::*;
    let lookup = |id: LeaseId| seen.find(id);
    match command {
        Command::PutTable { settings, .. } => {
            if *settings == seen.settings {
                NoChange
            } else {
                SettingsChanged(settings.clone())
            }
        }
        Command::Sweep { .. } => NoChange,
        Command::Acquire { request, .. } => {
            if request.mode == Mode::Write && request.pin_snapshot_id.is_some() {
                return Refused("invalid_request");
            }
            let earlier = request.idempotency_key.as_deref().and_then(|key| {
                seen.live
                    .iter()
                    .chain(&seen.finished)
                    .find(|l| l.idempotency_key.as_deref() == Some(key))
            });
            match earlier {
                Some(l) if l.mode == request.mode && l.holder == request.holder => Replayed(l.id),
                Some(_) => Refused("idempotency_conflict"),
                None => Created(request.lease_id),
            }
        }
        Command::Heartbeat {
            lease_id,
            token,
            ttl_seconds,
        } => match lookup(*lease_id) {
            None => Refused("lease_not_found"),
            Some(l) if !l.is_live() => Refused(ended_kind(l.state)),
            Some(l) if l.state == LeaseState::Granted && token.is_none() => {
                Refused("token_required")
            }
            Some(l) if token.is_some() && *token != l.token => Refused("stale_token"),
            Some(l) => Extended(l.id, now.plus_seconds(ttl_seconds.unwrap_or(l.ttl_seconds))),
        },
        Command::Release { lease_id, token } => match lookup(*lease_id) {
            None => Refused("lease_not_found"),
            // Finished: a repeat by the owner is answered; anything else refused.
            Some(l) => match (l.state, token) {
                (LeaseState::Released, Some(t)) if l.token == Some(*t) => NoChange,
                (LeaseState::Cancelled, None) => NoChange,
                (LeaseState::Released | LeaseState::Cancelled, Some(_)) => Refused("stale_token"),
                (LeaseState::Granted, None) => Refused("token_required"),
                (LeaseState::Granted, Some(t)) if l.token == Some(*t) => {
                    Ends(l.id, LeaseState::Released)
                }
                (LeaseState::Granted | LeaseState::Waiting, Some(_)) => Refused("stale_token"),
                (LeaseState::Waiting, None) => Ends(l.id, LeaseState::Cancelled),
                (ended, _) => Refused(ended_kind(ended)),
            },
        },
        Command::Revoke { lease_id, .. } => match lookup(*lease_id) {
            None => Refused("lease_not_found"),
            Some(l) if l.is_live() => Ends(l.id, LeaseState::Revoked),
            Some(l) if l.state == LeaseState::Revoked => NoChange,
            Some(l) => Refused(ended_kind(l.state)),
        },
        Command::KeepWaiting { lease_id } => match lookup(*lease_id) {
            None => Refused("lease_not_found"),
            Some(l) if l.state == LeaseState::Waiting => {
                Extended(l.id, now.plus_seconds(l.ttl_seconds))
            }
            Some(_) => NoChange,
        },
        Command::Lookup { lease_id } => match lookup(*lease_id) {
            None => Refused("lease_not_found"),
            Some(_) => NoChange,
        },
    }
}

// ---------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn every_invariant_holds_after_every_step_of_random_command_sequences(
        scenario in scenario()
    ) {
        Harness::new(scenario.initial_deferral_seconds).run(&scenario)?;
    }
}

/// Guards the property test against a generator that never reaches the
/// situations the invariants are about.
#[test]
fn the_random_sequences_reach_every_interesting_situation() {
    let mut runner = TestRunner::deterministic();
    let strategy = scenario();
    let mut total = Coverage::new(&SITUATIONS);
    for _ in 0..200 {
        let scenario = strategy
            .new_tree(&mut runner)
            .expect("a scenario")
            .current();
        let mut harness = Harness::new(scenario.initial_deferral_seconds);
        if let Err(e) = harness.run(&scenario) {
            panic!("{e}\n{scenario:#?}");
        }
        total.add(&harness.coverage);
    }
    total.assert_every_situation_reached();
}
