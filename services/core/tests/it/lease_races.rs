//! Targeted scenarios: the races and boundaries a client or operator can
//! run into, each named as the sentence it proves.

use crate::any_command::{Command, Reply};
use crate::support::{
    acquire, acquire_request, answered_lease, cancel, error_kind, events, heartbeat, keep_waiting,
    lease_id, lookup, release, request, revoke, settings, sweep, was_replayed, Table,
};
use sluice_core::{
    leases::DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS, EventKind, LeaseId, LeaseState, Mode,
};
use EventKind::{
    LeaseCancelled, LeaseExpired, LeaseGranted, LeaseReleased, LeaseRequested, LeaseRevoked,
    TableSettingsChanged,
};
use LeaseState::{Cancelled, Expired, Granted, Released, Revoked, Waiting};

const TTL: u32 = 120;

fn ids<const N: usize>() -> [LeaseId; N] {
    std::array::from_fn(|i| lease_id(i as u128 + 1))
}

// --- Revoke -----------------------------------------------------------------

#[test]
fn a_waiter_revoked_while_waiting_leaves_the_queue_and_the_next_waiter_is_granted() {
    // Arrange: a reader holds; a writer waits past its deferral (0 s), so a
    // later reader queues behind the writer.
    let mut table = Table::new(0);
    let [reader, writer, late_reader] = ids();
    table.granted(reader, Mode::Read, TTL);
    assert_eq!(table.queued(writer, Mode::Write, TTL), 1);
    assert_eq!(table.queued(late_reader, Mode::Read, TTL), 2);

    // Act
    table.advance_secs(1);
    let outcome = table.run(&revoke(writer));

    // Assert
    assert_eq!(answered_lease(&outcome).state, Revoked);
    assert_eq!(
        events(&outcome),
        [
            (LeaseRevoked, Some(writer)),
            (LeaseGranted, Some(late_reader))
        ]
    );
    assert_eq!(
        table.lease(writer).token,
        None,
        "a revoked waiter never had a token"
    );
    assert_eq!(table.lease_state(late_reader), Granted);
    assert_eq!(table.state.waiters().count(), 0);
}

#[test]
fn a_revoked_holder_hands_the_table_to_the_next_waiter_with_a_higher_token() {
    // Arrange
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [stuck, next] = ids();
    let stuck_token = table.granted(stuck, Mode::Write, TTL);
    table.queued(next, Mode::Write, TTL);

    // Act
    table.advance_secs(5);
    let outcome = table.run(&revoke(stuck));

    // Assert
    assert_eq!(
        events(&outcome),
        [(LeaseRevoked, Some(stuck)), (LeaseGranted, Some(next))]
    );
    assert!(table.token(next) > stuck_token);
    assert_eq!(
        error_kind(&table.run(&heartbeat(stuck, Some(stuck_token)))),
        "lease_revoked",
        "the revoked holder is fenced off"
    );
}

#[test]
fn revoking_twice_answers_ok_and_changes_nothing_the_second_time() {
    // Arrange
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [lease] = ids();
    table.granted(lease, Mode::Write, TTL);
    let first = table.run(&revoke(lease));
    assert_eq!(events(&first), [(LeaseRevoked, Some(lease))]);
    let after_first = table.state.clone();

    // Act
    table.advance_secs(1);
    let second = table.run(&revoke(lease));

    // Assert
    assert_eq!(answered_lease(&second).state, Revoked);
    assert!(second.events.is_empty());
    assert_eq!(table.state, after_first);
}

#[test]
fn revoking_a_lease_that_already_expired_answers_lease_expired() {
    // Arrange
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [lease] = ids();
    table.granted(lease, Mode::Read, 10);
    table.advance_secs(10);

    // Act
    let outcome = table.run(&revoke(lease));

    // Assert
    assert_eq!(error_kind(&outcome), "lease_expired");
    assert_eq!(events(&outcome), [(LeaseExpired, Some(lease))]);
}

// --- Release ----------------------------------------------------------------

#[test]
fn a_release_repeated_after_its_response_was_lost_answers_ok_and_changes_nothing() {
    // Arrange: the first release went through and handed the table on.
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [holder, next] = ids();
    let token = table.granted(holder, Mode::Write, TTL);
    table.queued(next, Mode::Write, TTL);
    let first = table.run(&release(holder, token));
    assert_eq!(
        events(&first),
        [(LeaseReleased, Some(holder)), (LeaseGranted, Some(next))]
    );
    let after_first = table.state.clone();

    // Act: the client never saw the answer and retries.
    table.advance_secs(2);
    let retry = table.run(&release(holder, token));

    // Assert
    assert_eq!(answered_lease(&retry).state, Released);
    assert_eq!(answered_lease(&retry).token, Some(token));
    assert!(retry.events.is_empty());
    assert_eq!(table.state, after_first);
}

#[test]
fn a_cancel_repeated_after_its_response_was_lost_answers_ok_and_changes_nothing() {
    // Arrange
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [holder, waiter] = ids();
    table.granted(holder, Mode::Write, TTL);
    table.queued(waiter, Mode::Write, TTL);
    assert_eq!(
        events(&table.run(&cancel(waiter))),
        [(LeaseCancelled, Some(waiter))]
    );
    let after_first = table.state.clone();

    // Act
    let retry = table.run(&cancel(waiter));

    // Assert
    assert_eq!(answered_lease(&retry).state, Cancelled);
    assert!(retry.events.is_empty());
    assert_eq!(table.state, after_first);
}

#[test]
fn a_repeated_release_with_another_token_is_refused() {
    // Arrange
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [holder] = ids();
    let token = table.granted(holder, Mode::Read, TTL);
    table.run(&release(holder, token));
    let released = table.state.clone();

    // Act
    let outcome = table.run(&release(holder, token + 1));

    // Assert
    assert_eq!(error_kind(&outcome), "stale_token");
    assert_eq!(table.state, released);
}

#[test]
fn a_release_with_a_stale_token_after_the_table_was_re_granted_changes_nothing() {
    // Arrange: A holds, B waits; A's holder stalls past its ttl, so A
    // expires and B is granted with a higher token.
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [a, b] = ids();
    let a_token = table.granted(a, Mode::Write, 10);
    table.queued(b, Mode::Write, TTL);
    table.advance_secs(10);
    let swept = table.run(&sweep());
    assert_eq!(
        events(&swept),
        [(LeaseExpired, Some(a)), (LeaseGranted, Some(b))]
    );
    let b_token = table.token(b);
    assert!(b_token > a_token);
    let regranted = table.state.clone();

    // Act: A's holder wakes up and releases with A's token.
    table.advance_secs(1);
    let outcome = table.run(&release(a, a_token));

    // Assert
    assert_eq!(error_kind(&outcome), "lease_expired");
    assert!(outcome.events.is_empty());
    assert_eq!(table.state, regranted);
    assert_eq!(table.lease_state(b), Granted);
    assert_eq!(table.lease(b).token, Some(b_token));
}

#[test]
fn a_release_of_the_current_grant_with_an_earlier_grants_token_changes_nothing() {
    // Arrange
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [a, b] = ids();
    let a_token = table.granted(a, Mode::Write, TTL);
    table.queued(b, Mode::Write, TTL);
    table.run(&release(a, a_token));
    let granted = table.state.clone();

    // Act: a confused client presents A's token for B.
    let outcome = table.run(&release(b, a_token));

    // Assert
    assert_eq!(error_kind(&outcome), "stale_token");
    assert_eq!(table.state, granted);
}

#[test]
fn releasing_a_granted_lease_without_its_token_is_refused() {
    // Arrange
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [holder] = ids();
    table.granted(holder, Mode::Write, TTL);
    let granted = table.state.clone();

    // Act
    let outcome = table.run(&cancel(holder));

    // Assert
    assert_eq!(error_kind(&outcome), "token_required");
    assert_eq!(table.state, granted);
}

#[test]
fn a_cancel_that_loses_the_race_to_its_grant_is_refused_and_the_lease_stays_granted() {
    // Arrange: W2 waits behind W1; in one millisecond W1 is released (which
    // grants W2) and W2's client, not having seen the grant, cancels.
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [w1, w2] = ids();
    let w1_token = table.granted(w1, Mode::Write, TTL);
    table.queued(w2, Mode::Write, TTL);
    table.run(&release(w1, w1_token));

    // Act
    let outcome = table.run(&cancel(w2));

    // Assert: the grant stands; the client learns its token by looking up.
    assert_eq!(error_kind(&outcome), "token_required");
    let looked_up = table.run(&lookup(w2));
    let w2_token = answered_lease(&looked_up)
        .token
        .expect("granted with a token");
    assert_eq!(
        events(&table.run(&release(w2, w2_token))),
        [(LeaseReleased, Some(w2))]
    );
}

#[test]
fn a_lease_released_and_re_granted_in_the_same_millisecond_gets_a_higher_token() {
    // Arrange
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [first, second, third] = ids();
    let first_token = table.granted(first, Mode::Write, TTL);

    // Act: no clock movement at all.
    table.run(&release(first, first_token));
    let second_token = table.granted(second, Mode::Write, TTL);
    table.run(&release(second, second_token));
    let third_token = table.granted(third, Mode::Write, TTL);

    // Assert
    assert!(first_token < second_token && second_token < third_token);
    assert_eq!(table.state.last_token, third_token);
}

fn position_of(table: &mut Table, id: LeaseId) -> Option<u32> {
    match table.run(&lookup(id)).result {
        Ok(Reply::Lease { position, .. }) => position,
        other => panic!("expected a lease answer, got {other:?}"),
    }
}

// --- Heartbeats, expiry and waiting ------------------------------------------

#[test]
fn a_lease_is_valid_until_the_millisecond_before_it_expires() {
    // Arrange
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [lease] = ids();
    let token = table.granted(lease, Mode::Write, 10);

    // Act + Assert: 9.999 s later the heartbeat extends it by another ttl.
    table.advance_ms(9_999);
    let extended = table.run(&heartbeat(lease, Some(token)));
    assert_eq!(
        answered_lease(&extended).expires_at,
        table.now.plus_seconds(10)
    );

    // ... and exactly at the new expiry it is over.
    table.advance_secs(10);
    let late = table.run(&heartbeat(lease, Some(token)));
    assert_eq!(error_kind(&late), "lease_expired");
    assert_eq!(events(&late), [(LeaseExpired, Some(lease))]);
}

#[test]
fn a_heartbeat_of_an_expired_lease_answers_lease_expired_and_does_not_revive_it() {
    // Arrange
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [lease] = ids();
    let token = table.granted(lease, Mode::Read, 5);
    table.advance_secs(60);
    table.run(&sweep());
    let expired = table.state.clone();

    // Act
    let outcome = table.run(&heartbeat(lease, Some(token)));

    // Assert
    assert_eq!(error_kind(&outcome), "lease_expired");
    assert_eq!(table.state, expired);
    assert_eq!(table.state.live.len(), 0);
}

#[test]
fn a_heartbeat_with_a_stale_token_is_refused_and_does_not_extend_the_lease() {
    // Arrange
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [holder] = ids();
    let token = table.granted(holder, Mode::Write, 30);
    table.advance_secs(20);
    let before = table.state.clone();

    // Act: with a new ttl too, which must not stick either.
    let outcome = table.run(&Command::Heartbeat {
        lease_id: holder,
        token: Some(token - 1),
        ttl_seconds: Some(3600),
    });

    // Assert
    assert_eq!(error_kind(&outcome), "stale_token");
    assert_eq!(table.state, before);
}

#[test]
fn a_waiter_that_stops_heartbeating_leaves_the_queue() {
    // Arrange: W1 holds; W2 waits with a 30 s ttl and W3 behind it.
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [w1, w2, w3] = ids();
    table.granted(w1, Mode::Write, TTL);
    assert_eq!(table.queued(w2, Mode::Write, 30), 1);
    assert_eq!(table.queued(w3, Mode::Write, TTL), 2);

    // Act: W2's long-poll keeps it in the queue once, then goes silent.
    table.at_secs(29);
    table.run(&keep_waiting(w2));
    table.at_secs(58);
    let still_there = table.run(&sweep());
    table.at_secs(59);
    let gone = table.run(&sweep());

    // Assert
    assert!(still_there.events.is_empty());
    assert_eq!(events(&gone), [(LeaseExpired, Some(w2))]);
    assert_eq!(table.lease_state(w2), Expired);
    assert_eq!(position_of(&mut table, w3), Some(1), "W3 moved up");
    // A late long-poll learns that its place is gone; a heartbeat is refused.
    assert_eq!(answered_lease(&table.run(&keep_waiting(w2))).state, Expired);
    assert_eq!(
        error_kind(&table.run(&heartbeat(w2, None))),
        "lease_expired"
    );
}

#[test]
fn keep_waiting_does_not_extend_a_granted_lease() {
    // Arrange
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [holder] = ids();
    table.granted(holder, Mode::Read, 30);
    let expires_at = table.lease(holder).expires_at;

    // Act
    table.advance_secs(20);
    table.run(&keep_waiting(holder));

    // Assert: only a heartbeat extends a grant.
    assert_eq!(table.lease(holder).expires_at, expires_at);
}

#[test]
fn a_waiter_presenting_a_token_is_refused() {
    // Arrange
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [holder, waiter] = ids();
    let token = table.granted(holder, Mode::Write, TTL);
    table.queued(waiter, Mode::Write, TTL);

    // Act + Assert: a waiter has no token; the holder's is not its own.
    assert_eq!(
        error_kind(&table.run(&heartbeat(waiter, Some(token)))),
        "stale_token"
    );
    assert_eq!(
        error_kind(&table.run(&release(waiter, token))),
        "stale_token"
    );
    assert_eq!(table.lease_state(waiter), Waiting);
}

#[test]
fn a_lease_expiring_in_the_same_millisecond_as_an_acquire_makes_room_for_it() {
    // Arrange
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [old, new] = ids();
    let old_token = table.granted(old, Mode::Write, 10);
    table.advance_secs(10);

    // Act
    let outcome = table.run(&acquire(new, Mode::Write, TTL));

    // Assert: expiry first, then the new request, then its grant.
    assert_eq!(
        events(&outcome),
        [
            (LeaseExpired, Some(old)),
            (LeaseRequested, Some(new)),
            (LeaseGranted, Some(new))
        ]
    );
    assert!(table.token(new) > old_token);
}

// --- Queue policy -------------------------------------------------------------

#[test]
fn readers_pass_a_waiting_writer_until_its_deferral_runs_out_then_queue_behind_it() {
    // Arrange: a 60 s deferral; a reader holds and a writer starts waiting.
    let mut table = Table::new(60);
    let [reader, writer, early_reader, late_reader] = ids();
    table.granted(reader, Mode::Read, TTL);
    assert_eq!(table.queued(writer, Mode::Write, TTL), 1);

    // Act + Assert: 1 ms before the deadline a new reader still passes...
    table.advance_ms(59_999);
    let early_token = table.granted(early_reader, Mode::Read, TTL);
    // ...from the deadline on, new readers queue behind the writer.
    table.advance_ms(1);
    assert_eq!(table.queued(late_reader, Mode::Read, TTL), 2);

    // When the readers are gone the writer goes first, then the late reader.
    let reader_token = table.token(reader);
    table.run(&release(reader, reader_token));
    let outcome = table.run(&release(early_reader, early_token));
    assert_eq!(
        events(&outcome),
        [
            (LeaseReleased, Some(early_reader)),
            (LeaseGranted, Some(writer))
        ]
    );
    assert_eq!(table.lease_state(late_reader), Waiting);
    let writer_token = table.token(writer);
    let outcome = table.run(&release(writer, writer_token));
    assert_eq!(
        events(&outcome),
        [
            (LeaseReleased, Some(writer)),
            (LeaseGranted, Some(late_reader))
        ]
    );
}

#[test]
fn readers_that_arrived_before_a_writer_are_served_before_it_even_after_its_deferral() {
    // Arrange: a writer holds; a reader and then a second writer wait.
    let mut table = Table::new(0);
    let [holder, reader, writer] = ids();
    let holder_token = table.granted(holder, Mode::Write, TTL);
    table.queued(reader, Mode::Read, TTL);
    table.queued(writer, Mode::Write, TTL);

    // Act
    table.advance_secs(30);
    let outcome = table.run(&release(holder, holder_token));

    // Assert
    assert_eq!(
        events(&outcome),
        [(LeaseReleased, Some(holder)), (LeaseGranted, Some(reader))]
    );
    assert_eq!(table.lease_state(writer), Waiting);
}

#[test]
fn writers_are_granted_in_arrival_order() {
    // Arrange
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [w1, w2, w3] = ids();
    let mut token = table.granted(w1, Mode::Write, TTL);
    table.queued(w2, Mode::Write, TTL);
    table.queued(w3, Mode::Write, TTL);

    // Act + Assert
    for (done, next) in [(w1, w2), (w2, w3)] {
        let outcome = table.run(&release(done, token));
        assert_eq!(
            events(&outcome),
            [(LeaseReleased, Some(done)), (LeaseGranted, Some(next))]
        );
        token = table.token(next);
    }
}

#[test]
fn raising_the_deferral_lets_readers_queued_behind_a_due_writer_in_at_once() {
    // Arrange: with no deferral a waiting writer holds new readers back.
    let mut table = Table::new(0);
    let [reader, writer, late_reader] = ids();
    table.granted(reader, Mode::Read, TTL);
    table.queued(writer, Mode::Write, TTL);
    table.queued(late_reader, Mode::Read, TTL);

    // Act
    table.advance_secs(1);
    let outcome = table.put_settings(settings(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS));

    // Assert
    assert_eq!(
        events(&outcome),
        [
            (TableSettingsChanged, None),
            (LeaseGranted, Some(late_reader))
        ]
    );
    assert_eq!(table.lease_state(writer), Waiting);
}

#[test]
fn lowering_the_deferral_queues_new_readers_but_keeps_granted_ones() {
    // Arrange: a reader holds; a writer has waited 10 s of a 24 h deferral.
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [reader, writer, late_reader] = ids();
    table.granted(reader, Mode::Read, TTL);
    table.queued(writer, Mode::Write, TTL);
    table.advance_secs(10);

    // Act
    let outcome = table.put_settings(settings(5));

    // Assert
    assert_eq!(events(&outcome), [(TableSettingsChanged, None)]);
    assert_eq!(table.lease_state(reader), Granted);
    assert_eq!(table.queued(late_reader, Mode::Read, TTL), 2);
}

// --- Idempotency --------------------------------------------------------------

fn keyed(id: LeaseId, mode: Mode, holder: &str, key: &str) -> Command {
    let mut request = request(id, mode, TTL);
    request.holder = holder.into();
    request.idempotency_key = Some(key.into());
    acquire_request(request)
}

#[test]
fn the_same_idempotency_key_returns_the_same_lease() {
    // Arrange
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [first, retry] = ids();
    let original = table.run(&keyed(first, Mode::Write, "compactor", "run-7"));
    let lease = answered_lease(&original).clone();
    let after_first = table.state.clone();

    // Act: the retry comes with a new lease id, as a fresh request would.
    table.advance_secs(1);
    let replay = table.run(&keyed(retry, Mode::Write, "compactor", "run-7"));

    // Assert
    assert!(was_replayed(&replay));
    assert_eq!(answered_lease(&replay), &lease);
    assert!(replay.events.is_empty());
    assert_eq!(table.state, after_first);
    assert!(table.state.find(retry).is_none());
}

#[test]
fn a_retried_acquire_after_its_lease_ended_answers_the_ended_lease() {
    // Arrange
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [first, retry] = ids();
    table.run(&keyed(first, Mode::Read, "hydrator", "copy-1"));
    let token = table.token(first);
    table.run(&release(first, token));

    // Act
    let replay = table.run(&keyed(retry, Mode::Read, "hydrator", "copy-1"));

    // Assert: no second grant for one request.
    assert!(was_replayed(&replay));
    assert_eq!(answered_lease(&replay).id, first);
    assert_eq!(answered_lease(&replay).state, Released);
    assert_eq!(table.state.last_token, token);
}

#[test]
fn reusing_an_idempotency_key_for_a_different_request_is_a_conflict() {
    // Arrange
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let [first, other_mode, other_holder] = ids();
    table.run(&keyed(first, Mode::Read, "hydrator", "k"));
    let after_first = table.state.clone();

    // Act
    let by_mode = table.run(&keyed(other_mode, Mode::Write, "hydrator", "k"));
    let by_holder = table.run(&keyed(other_holder, Mode::Read, "someone-else", "k"));

    // Assert
    assert_eq!(error_kind(&by_mode), "idempotency_conflict");
    assert_eq!(error_kind(&by_holder), "idempotency_conflict");
    assert_eq!(table.state, after_first);
}

#[test]
fn a_heartbeat_of_a_grant_without_its_token_is_refused_and_does_not_extend_it() {
    // Arrange
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let lease = lease_id(1);
    table.granted(lease, Mode::Read, 10);
    let before = table.lease(lease).expires_at;
    table.advance_secs(5);

    // Act
    let outcome = table.run(&heartbeat(lease, None));

    // Assert
    assert_eq!(error_kind(&outcome), "token_required");
    assert_eq!(table.lease(lease).expires_at, before);
}

#[test]
fn a_full_queue_refuses_a_newcomer_that_would_wait_but_not_one_granted_at_once() {
    // Arrange: a writer holds; two readers wait; the limit is two waiters.
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let writer = lease_id(1);
    table.granted(writer, Mode::Write, 60);
    table.queued(lease_id(2), Mode::Read, 60);
    table.queued(lease_id(3), Mode::Read, 60);
    let before = table.state.clone();
    let full = |id| {
        let mut r = request(lease_id(id), Mode::Read, 60);
        r.max_waiters = 2;
        acquire_request(r)
    };

    // Act + Assert: a third waiter is refused and changes nothing.
    let outcome = table.run(&full(4));
    assert_eq!(error_kind(&outcome), "queue_full");
    assert_eq!(table.state, before);

    // Once the writer is gone the readers hold, and a reader is let in at once.
    let token = table.token(writer);
    table.run(&release(writer, token));
    let outcome = table.run(&full(5));
    assert_eq!(answered_lease(&outcome).state, LeaseState::Granted);
}

#[test]
fn an_acquire_applied_twice_after_a_lost_commit_answer_returns_the_same_lease() {
    // Arrange: the acquire committed, but its batch is retried.
    let mut table = Table::new(DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS);
    let id = lease_id(1);
    let first = table.run(&acquire(id, Mode::Write, 60));
    let granted = answered_lease(&first).clone();
    let before = table.state.clone();

    // Act
    let again = table.run(&acquire(id, Mode::Write, 60));

    // Assert: the same grant, no second token, no events.
    assert_eq!(answered_lease(&again), &granted);
    assert!(was_replayed(&again));
    assert_eq!(table.state, before);
    assert!(events(&again).is_empty());
}
