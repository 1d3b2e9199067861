//! Builders and a small table-with-a-clock fixture shared by the tests.

use sluice_core::{
    command::AcquireRequest,
    rules::{self, Outcome},
    Command, EventKind, Lease, LeaseId, LeaseState, Millis, Mode, Reply, TableName, TableSettings,
    TableState, Token,
};

/// An arbitrary but fixed start of time (2023-11-14), far from zero so that
/// no arithmetic near the epoch is exercised by accident.
pub const START: Millis = Millis(1_700_000_000_000);

pub fn table_name() -> TableName {
    TableName::parse("lake.orders").expect("a valid table name")
}

pub fn lease_id(n: u128) -> LeaseId {
    LeaseId(uuid::Uuid::from_u128(n))
}

pub fn settings(max_compaction_deferral_seconds: u32) -> TableSettings {
    TableSettings {
        max_compaction_deferral_seconds,
        ..TableSettings::default()
    }
}

pub fn request(id: LeaseId, mode: Mode, ttl_seconds: u32) -> AcquireRequest {
    AcquireRequest {
        lease_id: id,
        mode,
        holder: "glue-job".into(),
        ttl_seconds,
        idempotency_key: None,
        purpose: None,
        pin_snapshot_id: None,
        max_waiters: u32::MAX,
    }
}

pub fn acquire_request(request: AcquireRequest) -> Command {
    Command::Acquire {
        table: table_name(),
        request,
    }
}

pub fn acquire(id: LeaseId, mode: Mode, ttl_seconds: u32) -> Command {
    acquire_request(request(id, mode, ttl_seconds))
}

pub fn heartbeat(id: LeaseId, token: Option<Token>) -> Command {
    Command::Heartbeat {
        lease_id: id,
        token,
        ttl_seconds: None,
    }
}

/// Release a granted lease: its token is required.
pub fn release(id: LeaseId, token: Token) -> Command {
    Command::Release {
        lease_id: id,
        token: Some(token),
    }
}

/// Give up a waiting lease: no token.
pub fn cancel(id: LeaseId) -> Command {
    Command::Release {
        lease_id: id,
        token: None,
    }
}

pub fn revoke(id: LeaseId) -> Command {
    Command::Revoke {
        lease_id: id,
        reason: "operator: stuck job".into(),
    }
}

pub fn keep_waiting(id: LeaseId) -> Command {
    Command::KeepWaiting { lease_id: id }
}

pub fn lookup(id: LeaseId) -> Command {
    Command::Lookup { lease_id: id }
}

pub fn sweep() -> Command {
    Command::Sweep {
        table: table_name(),
    }
}

/// One registered table and the server's clock.
pub struct Table {
    pub state: TableState,
    pub now: Millis,
}

impl Table {
    pub fn new(max_compaction_deferral_seconds: u32) -> Table {
        let (state, _) = rules::put_table(
            None,
            table_name(),
            settings(max_compaction_deferral_seconds),
            START,
        );
        Table { state, now: START }
    }

    pub fn advance_ms(&mut self, ms: i64) {
        self.now = Millis(self.now.0 + ms);
    }

    pub fn advance_secs(&mut self, secs: i64) {
        self.advance_ms(secs * 1000);
    }

    /// Seconds since the table was created, for readable assertions.
    pub fn at_secs(&mut self, secs: i64) {
        let target = Millis(START.0 + secs * 1000);
        assert!(target >= self.now, "the clock never goes back");
        self.now = target;
    }

    pub fn run(&mut self, command: &Command) -> Outcome {
        rules::apply(&mut self.state, command, self.now)
    }

    pub fn put_settings(&mut self, settings: TableSettings) -> Outcome {
        let (state, outcome) =
            rules::put_table(Some(self.state.clone()), table_name(), settings, self.now);
        self.state = state;
        outcome
    }

    pub fn lease(&self, id: LeaseId) -> &Lease {
        self.state
            .find(id)
            .unwrap_or_else(|| panic!("lease {id} is not in the table state"))
    }

    pub fn lease_state(&self, id: LeaseId) -> LeaseState {
        self.lease(id).state
    }

    pub fn token(&self, id: LeaseId) -> Token {
        self.lease(id)
            .token
            .unwrap_or_else(|| panic!("lease {id} has no token"))
    }

    /// Acquire and insist that the lease is granted at once; its token.
    pub fn granted(&mut self, id: LeaseId, mode: Mode, ttl_seconds: u32) -> Token {
        let outcome = self.run(&acquire(id, mode, ttl_seconds));
        let lease = answered_lease(&outcome);
        assert_eq!(lease.state, LeaseState::Granted, "{id} should be granted");
        lease.token.expect("a granted lease has a token")
    }

    /// Acquire and insist that the lease has to wait; its queue position.
    pub fn queued(&mut self, id: LeaseId, mode: Mode, ttl_seconds: u32) -> u32 {
        let outcome = self.run(&acquire(id, mode, ttl_seconds));
        match outcome.result {
            Ok(Reply::Lease {
                lease,
                position: Some(position),
                ..
            }) if lease.state == LeaseState::Waiting => position,
            other => panic!("{id} should be waiting, got {other:?}"),
        }
    }
}

/// The lease a successful command answered.
pub fn answered_lease(outcome: &Outcome) -> &Lease {
    match &outcome.result {
        Ok(Reply::Lease { lease, .. }) => lease,
        other => panic!("expected a lease answer, got {other:?}"),
    }
}

pub fn was_replayed(outcome: &Outcome) -> bool {
    match &outcome.result {
        Ok(Reply::Lease { replayed, .. }) => *replayed,
        other => panic!("expected a lease answer, got {other:?}"),
    }
}

/// The stable error type of a refused command.
pub fn error_kind(outcome: &Outcome) -> &'static str {
    match &outcome.result {
        Err(e) => e.kind(),
        Ok(reply) => panic!("expected an error, got {reply:?}"),
    }
}

/// The events of an outcome, as (kind, lease) pairs.
pub fn events(outcome: &Outcome) -> Vec<(EventKind, Option<LeaseId>)> {
    outcome
        .events
        .iter()
        .map(|e| (e.kind, e.lease_id))
        .collect()
}
