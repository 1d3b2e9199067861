//! A fencing token is visible to every reader of its table or stream, so it
//! proves nothing about who holds: only the principal that took a lease or
//! opened a batch acts on it, and every refusal is recorded.

use crate::any_command::{self, Command, StreamCommand, ACTOR};
use crate::support::{
    acquire_request, batch_id, heartbeat, lease_id, load_commit, release, request, revoke,
    stream_name, Stream, Table,
};
use sluice_core::{EventKind, LeaseState, Mode, RuleError};

const OTHER: &str = "other-job";

#[test]
fn another_principal_cannot_heartbeat_or_release_a_lease_and_is_recorded() {
    // Arrange
    let mut table = Table::new(60);
    let id = lease_id(1);
    let token = table.granted(id, Mode::Write, 60);
    let before = table.state.clone();

    // Act
    let mut as_other = |command: &Command| {
        any_command::apply_as(&mut table.state, command, Some(OTHER), table.now)
    };
    let beat = as_other(&heartbeat(id, Some(token)));
    let freed = as_other(&release(id, token));

    // Assert
    for (what, outcome) in [("heartbeat", &beat), ("release", &freed)] {
        assert!(
            matches!(&outcome.result, Err(RuleError::NotOwner { owner, .. }) if owner == ACTOR),
            "{what}: {:?}",
            outcome.result
        );
        let kinds: Vec<EventKind> = outcome.events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::AccessRefused], "{what} is recorded");
        assert_eq!(outcome.events[0].data["action"], what);
    }
    assert_eq!(table.state, before, "the lease is untouched");
    // Its owner still can, and an operator ends it by revoking.
    assert!(table.run(&heartbeat(id, Some(token))).result.is_ok());
    let revoked = any_command::apply_as(&mut table.state, &revoke(id), Some("oncall"), table.now);
    assert!(revoked.result.is_ok(), "{:?}", revoked.result);
    assert_eq!(table.lease_state(id), LeaseState::Revoked);
}

#[test]
fn another_principals_idempotency_key_does_not_hand_over_its_lease() {
    let mut table = Table::new(60);
    let mut ask = request(lease_id(1), Mode::Read, 60);
    ask.idempotency_key = Some("run-7".into());
    assert!(table.run(&acquire_request(ask.clone())).result.is_ok());

    ask.lease_id = lease_id(2);
    let other = any_command::apply_as(
        &mut table.state,
        &acquire_request(ask),
        Some(OTHER),
        table.now,
    );
    assert!(
        matches!(other.result, Err(RuleError::IdempotencyConflict { .. })),
        "{:?}",
        other.result
    );
}

#[test]
fn a_lease_recorded_without_an_owner_answers_any_principal() {
    let mut table = Table::new(60);
    let id = lease_id(1);
    let token = table.granted(id, Mode::Read, 60);
    table.state.live[0].principal = None;
    let freed = any_command::apply_as(
        &mut table.state,
        &release(id, token),
        Some(OTHER),
        table.now,
    );
    assert!(freed.result.is_ok(), "{:?}", freed.result);
}

#[test]
fn another_principal_cannot_commit_fail_heartbeat_or_reopen_a_batch() {
    // Arrange
    let mut stream = Stream::new();
    let (batch, _) = stream.opened("run-a", 600);
    let before = stream.state.clone();
    let commands = [
        (
            "commit",
            StreamCommand::Commit {
                stream: stream_name(),
                batch_id: batch.id,
                token: batch.token,
                commit: load_commit(&["part-1"], None, false),
                if_match: None,
            },
        ),
        (
            "fail",
            StreamCommand::Fail {
                stream: stream_name(),
                batch_id: batch.id,
                token: batch.token,
                reason: None,
            },
        ),
        (
            "heartbeat",
            StreamCommand::Heartbeat {
                stream: stream_name(),
                batch_id: batch.id,
                token: batch.token,
                ttl_seconds: None,
            },
        ),
        (
            "open",
            StreamCommand::Open {
                stream: stream_name(),
                batch_id: batch_id(99),
                run_id: "run-a".into(),
                ttl_seconds: 600,
                if_match: None,
            },
        ),
    ];

    for (what, command) in commands {
        // Act
        let outcome =
            any_command::apply_stream(&mut stream.state, &command, Some(OTHER), stream.now);

        // Assert: refused without the token, recorded, nothing changed.
        assert!(
            matches!(&outcome.result, Err(RuleError::NotOwner { owner, .. }) if owner == "test"),
            "{what}: {:?}",
            outcome.result
        );
        let kinds: Vec<EventKind> = outcome.events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::AccessRefused], "{what}");
        assert_eq!(stream.state, before, "{what} changed nothing");
    }
    // The opener still commits.
    stream.committed(&batch, load_commit(&["part-1"], None, false));
}
