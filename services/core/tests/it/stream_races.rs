//! Targeted stream scenarios: the races between ingestion runs, their
//! retries and an operator, each named as the sentence it proves.

use crate::support::{
    answered_batch, answered_bookmark, delta_commit, load_commit, position, stream_error_kind,
    stream_events, Stream,
};
use sluice_core::streams::RewindTo;
use sluice_core::streams::{BatchState, Cause, Phase, Position, EXPIRED};
use sluice_core::EventKind::{
    BatchCommitted, BatchFailed, BatchOpened, BookmarkReset, BookmarkRewound,
};
use sluice_core::RuleError;

const TTL: u32 = 30;

// --- Killed runs ------------------------------------------------------------

#[test]
fn a_killed_runs_batch_expires_and_the_next_run_resumes_from_the_last_committed_version() {
    // Arrange: run A commits one batch, opens the next and is killed.
    let mut stream = Stream::new();
    let (first, _) = stream.opened("run-a", TTL);
    let committed = stream.committed(&first, load_commit(&["part-1"], None, false));
    stream.advance_secs(1);
    let (killed, resume) = stream.opened("run-a", TTL);
    assert_eq!(
        resume, committed,
        "the second batch starts where the first ended"
    );
    assert_eq!(killed.base_version, committed.version);

    // Act 1: run B, started while A's batch still looks alive, is refused.
    stream.advance_secs(i64::from(TTL) - 1);
    let early = stream.open("run-b", TTL);

    // Assert 1
    assert_eq!(stream_error_kind(&early), "batch_open");
    assert!(early.events.is_empty());

    // Act 2: once the TTL has run out, run B gets the stream.
    stream.advance_secs(1);
    let outcome = stream.open("run-b", TTL);

    // Assert 2: A's batch fails as expired, B resumes from A's last commit
    // with the next token.
    let (batch, bookmark, replayed) = answered_batch(&outcome);
    assert!(!replayed);
    assert_eq!(bookmark, Some(&committed));
    assert_eq!(batch.base_version, committed.version);
    assert_eq!(batch.token, killed.token + 1);
    let b = batch.clone();
    assert_eq!(
        stream_events(&outcome),
        [(BatchFailed, Some(killed.id)), (BatchOpened, Some(b.id))]
    );
    let expired = stream.batch(killed.id);
    assert_eq!(expired.state, BatchState::Failed);
    assert_eq!(expired.end_reason.as_deref(), Some(EXPIRED));
    assert_eq!(stream.state.bookmark, committed, "expiry writes no version");

    // Act 3: A's process wakes up and tries to finish its batch.
    let before = stream.state.clone();
    let late_commit = stream.commit(&killed, load_commit(&["part-1", "part-2"], None, false));
    let late_heartbeat = stream.heartbeat(&killed);

    // Assert 3: fenced off, nothing changes.
    assert_eq!(stream_error_kind(&late_commit), "batch_expired");
    assert_eq!(stream_error_kind(&late_heartbeat), "batch_expired");
    assert_eq!(stream.state, before);

    // And B's work lands on the version A left.
    let next = stream.committed(&b, load_commit(&["part-1", "part-2"], None, false));
    assert_eq!(next.version, committed.version + 1);
}

#[test]
fn a_batch_kept_alive_by_heartbeats_outlives_its_first_ttl_and_expires_exactly_ttl_after_the_last()
{
    // Arrange
    let mut stream = Stream::new();
    let (batch, _) = stream.opened("run-a", TTL);
    for _ in 0..3 {
        stream.advance_secs(i64::from(TTL) - 1);
        assert!(stream.heartbeat(&batch).result.is_ok());
    }
    let last_heartbeat = stream.now;

    // Act: one millisecond before the deadline the batch still commits...
    stream.advance_ms(i64::from(TTL) * 1000 - 1);
    let mut on_time = stream.clone();
    let accepted = on_time.commit(&batch, load_commit(&["part-1"], None, false));
    // ...at the deadline it has expired.
    stream.advance_ms(1);
    assert_eq!(stream.now.0, last_heartbeat.0 + i64::from(TTL) * 1000);
    let refused = stream.commit(&batch, load_commit(&["part-1"], None, false));

    // Assert
    assert!(accepted.result.is_ok(), "{accepted:?}");
    assert_eq!(stream_error_kind(&refused), "batch_expired");
    assert_eq!(stream_events(&refused), [(BatchFailed, Some(batch.id))]);
    assert_eq!(stream.state.bookmark.version, 1);
}

#[test]
fn an_open_repeated_by_the_same_run_while_its_batch_is_open_answers_that_batch() {
    // Arrange: the first open's answer was lost.
    let mut stream = Stream::new();
    let (batch, bookmark) = stream.opened("run-a", TTL);
    let opened = stream.state.clone();

    // Act
    stream.advance_secs(2);
    let retry = stream.open("run-a", TTL);

    // Assert: the same batch and token, no second batch, nothing written.
    let (again, resume, replayed) = answered_batch(&retry);
    assert!(replayed);
    assert_eq!(again, &batch);
    assert_eq!(resume, Some(&bookmark));
    assert!(retry.events.is_empty());
    assert_eq!(stream.state, opened);
}

// --- Retried commits ----------------------------------------------------------

#[test]
fn a_commit_retried_after_its_answer_was_lost_replays_the_same_version() {
    // Arrange
    let mut stream = Stream::new();
    let (batch, _) = stream.opened("run-a", TTL);
    let first = stream.commit(&batch, load_commit(&["part-1"], None, false));
    let (_, produced, _) = answered_batch(&first);
    let produced = produced.expect("a commit answers its version").clone();
    assert_eq!(produced.version, 2);
    let after_first = stream.state.clone();

    // Act: the client retries the same commit with the same token.
    stream.advance_secs(3);
    let retry = stream.commit(&batch, load_commit(&["part-1"], None, false));

    // Assert
    let (committed, bookmark, replayed) = answered_batch(&retry);
    assert!(replayed);
    assert_eq!(committed.state, BatchState::Committed);
    assert_eq!(bookmark, Some(&produced), "the same version, not a new one");
    assert!(retry.events.is_empty());
    assert_eq!(stream.state, after_first);

    // Still the same answer after the stream has moved on.
    let (next, _) = stream.opened("run-a", TTL);
    let moved_on = stream.committed(&next, load_commit(&["part-1", "part-2"], None, false));
    let late_retry = stream.commit(&batch, load_commit(&["part-1"], None, false));
    assert_eq!(answered_batch(&late_retry).1, Some(&produced));
    assert_eq!(stream.state.bookmark, moved_on);
}

#[test]
fn a_different_commit_of_a_committed_batch_is_refused_naming_the_version_it_made() {
    // Arrange
    let mut stream = Stream::new();
    let (batch, _) = stream.opened("run-a", TTL);
    stream.committed(&batch, load_commit(&["part-1"], None, false));
    let after_first = stream.state.clone();

    // Act: a confused client sends more files and completes the load.
    let different = stream.commit(&batch, load_commit(&["part-1", "part-9"], None, true));

    // Assert: refused, not answered as if it had landed.
    match &different.result {
        Err(RuleError::BatchCommitted { batch_id, version }) => {
            assert_eq!((*batch_id, *version), (batch.id, 2));
        }
        other => panic!("expected batch_committed, got {other:?}"),
    }
    assert!(different.events.is_empty());
    assert_eq!(stream.state, after_first, "nothing changed");
}

#[test]
fn a_commit_with_an_earlier_batchs_token_is_refused_and_changes_nothing() {
    // Arrange
    let mut stream = Stream::new();
    let (first, _) = stream.opened("run-a", TTL);
    stream.committed(&first, load_commit(&["part-1"], None, false));
    let (second, _) = stream.opened("run-a", TTL);
    let open = stream.state.clone();

    // Act
    let mut forged = second.clone();
    forged.token = first.token;
    let outcome = stream.commit(&forged, load_commit(&["part-1", "part-2"], None, false));

    // Assert
    assert_eq!(stream_error_kind(&outcome), "stale_token");
    assert_eq!(stream.state, open);
}

// --- Operators racing runs ------------------------------------------------------

#[test]
fn a_rewind_racing_an_open_batch_is_refused_and_the_batch_commits_on_its_base() {
    // Arrange: two versions, and a batch open on the second.
    let mut stream = Stream::new();
    let (first, _) = stream.opened("run-a", TTL);
    let v2 = stream.committed(&first, load_commit(&["part-1"], None, false));
    let (batch, _) = stream.opened("run-a", TTL);
    let open = stream.state.clone();

    // Act 1: the operator rewinds (and resets) while the batch is open.
    let rewind = stream.rewind(RewindTo::Version(1));
    let reset = stream.reset();

    // Assert 1
    assert_eq!(stream_error_kind(&rewind), "batch_open");
    assert_eq!(stream_error_kind(&reset), "batch_open");
    assert_eq!(stream.state, open, "a refused rewind changes nothing");

    // Act 2: the batch commits on the version it started from.
    let v3 = stream.committed(&batch, load_commit(&["part-1", "part-2"], None, false));
    assert_eq!(v3.version, v2.version + 1);

    // Act 3: now the rewind goes through, as a new version.
    stream.advance_secs(1);
    let rewound = stream.rewind(RewindTo::Version(v2.version));

    // Assert 3
    let bookmark = answered_bookmark(&rewound).clone();
    assert_eq!(bookmark.version, v3.version + 1);
    assert_eq!(
        (&bookmark.phase, &bookmark.load, &bookmark.delta),
        (&v2.phase, &v2.load, &v2.delta)
    );
    assert_eq!(stream_events(&rewound), [(BookmarkRewound, None)]);
    let entry = stream.state.versions.last().expect("the rewind's version");
    assert_eq!(entry.cause, Cause::Rewind);
    assert_eq!(entry.rewound_to, Some(v2.version));
    // The batch's retry still answers what it produced, not the rewind.
    let retry = stream.commit(&batch, load_commit(&["part-1", "part-2"], None, false));
    assert_eq!(answered_batch(&retry).1, Some(&v3));
    assert_eq!(stream.state.bookmark, bookmark);
}

#[test]
fn a_rewind_after_the_batch_expired_goes_through_and_fences_the_late_commit() {
    // Arrange
    let mut stream = Stream::new();
    let (first, _) = stream.opened("run-a", TTL);
    stream.committed(&first, load_commit(&["part-1"], None, false));
    let (stuck, _) = stream.opened("run-a", TTL);
    stream.advance_secs(i64::from(TTL));

    // Act
    let rewind = stream.rewind(RewindTo::Version(1));
    let late = stream.commit(&stuck, load_commit(&["part-1", "part-2"], None, false));

    // Assert: settling failed the stuck batch first, then the rewind wrote v3.
    assert_eq!(
        stream_events(&rewind),
        [(BatchFailed, Some(stuck.id)), (BookmarkRewound, None)]
    );
    assert_eq!(answered_bookmark(&rewind).version, 3);
    assert!(answered_bookmark(&rewind).load.files_done.is_empty());
    assert_eq!(stream_error_kind(&late), "batch_expired");
    assert_eq!(stream.state.bookmark.version, 3);
}

#[test]
fn a_reset_from_delta_starts_an_empty_load_and_a_regressing_commit_needs_no_rewind_after_it() {
    // Arrange: a completed load and one delta commit.
    let mut stream = Stream::new();
    let start = position("cdc-0001.csv", "2024-05-01T00:00:00Z");
    let (batch, _) = stream.opened("run-a", TTL);
    stream.committed(&batch, load_commit(&["part-1"], Some(start.clone()), true));
    let (batch, _) = stream.opened("run-a", TTL);
    let v3 = stream.committed(
        &batch,
        delta_commit(position("cdc-0002.csv", "2024-05-01T00:01:00Z")),
    );

    // Act
    stream.advance_secs(1);
    let reset = stream.reset();

    // Assert
    let bookmark = answered_bookmark(&reset);
    assert_eq!(bookmark.version, v3.version + 1);
    assert_eq!(bookmark.phase, Phase::Load);
    assert!(bookmark.load.files_done.is_empty());
    assert_eq!(bookmark.load.cdc_start, None);
    assert_eq!(bookmark.delta, None);
    assert_eq!(stream_events(&reset), [(BookmarkReset, None)]);
    // The new load may capture another cdc_start and need not keep part-1.
    let (batch, _) = stream.opened("run-b", TTL);
    let later = position("cdc-0009.csv", "2024-05-02T00:00:00Z");
    let v5 = stream.committed(&batch, load_commit(&["part-7"], Some(later.clone()), false));
    assert_eq!(v5.load.files_done, ["part-7"]);
    assert_eq!(v5.load.cdc_start, Some(later));
}

// --- Load completion and cdc_start ----------------------------------------------

#[test]
fn completing_the_load_moves_to_delta_at_cdc_start_in_the_same_version() {
    // Arrange: cdc_start captured by the first load commit.
    let mut stream = Stream::new();
    let start = position("cdc-0001.csv", "2024-05-01T00:00:00Z");
    let (batch, _) = stream.opened("run-a", TTL);
    stream.committed(&batch, load_commit(&["part-1"], Some(start.clone()), false));

    // Act: the last load batch omits cdc_start (it is kept) and completes.
    let (batch, _) = stream.opened("run-a", TTL);
    let outcome = stream.commit(&batch, load_commit(&["part-1", "part-2"], None, true));

    // Assert
    let (_, bookmark, _) = answered_batch(&outcome);
    let bookmark = bookmark.expect("the version produced").clone();
    assert_eq!(
        bookmark.version, 3,
        "one version for the files and the phase"
    );
    assert_eq!(bookmark.phase, Phase::Delta);
    assert_eq!(bookmark.delta, Some(start.clone()));
    assert_eq!(bookmark.load.files_done, ["part-1", "part-2"]);
    assert_eq!(bookmark.load.cdc_start, Some(start));
    assert_eq!(stream_events(&outcome), [(BatchCommitted, Some(batch.id))]);

    // A load section is refused from now on, and so is completing again.
    let (batch, _) = stream.opened("run-a", TTL);
    let load = stream.commit(
        &batch,
        load_commit(&["part-1", "part-2", "part-3"], None, false),
    );
    let mut complete_again = delta_commit(position("cdc-0002.csv", "2024-05-01T00:01:00Z"));
    complete_again.load_complete = true;
    let again = stream.commit(&batch, complete_again);
    assert_eq!(stream_error_kind(&load), "phase_mismatch");
    assert_eq!(stream_error_kind(&again), "phase_mismatch");
    assert_eq!(stream.state.bookmark, bookmark);
}

#[test]
fn completing_a_load_without_cdc_start_starts_delta_at_an_empty_position() {
    // Arrange
    let mut stream = Stream::new();
    let (batch, _) = stream.opened("run-a", TTL);

    // Act
    let bookmark = stream.committed(&batch, load_commit(&["part-1"], None, true));

    // Assert: an empty position, so any first change-data position is ahead.
    assert_eq!(bookmark.phase, Phase::Delta);
    assert_eq!(bookmark.delta, Some(Position::default()));
    let (batch, _) = stream.opened("run-a", TTL);
    let first = position("cdc-0001.csv", "2024-05-01T00:00:00Z");
    let next = stream.committed(&batch, delta_commit(first.clone()));
    assert_eq!(next.delta, Some(first));
}

#[test]
fn cdc_start_cannot_change_mid_load_but_a_commit_may_omit_it() {
    // Arrange
    let mut stream = Stream::new();
    let start = position("cdc-0001.csv", "2024-05-01T00:00:00Z");
    let (batch, _) = stream.opened("run-a", TTL);
    let v2 = stream.committed(&batch, load_commit(&["part-1"], Some(start.clone()), false));
    let (batch, _) = stream.opened("run-a", TTL);
    let open = stream.state.clone();

    // Act 1: a commit that captured another start (a restarted load job).
    let moved = position("cdc-0005.csv", "2024-05-01T00:05:00Z");
    let outcome = stream.commit(
        &batch,
        load_commit(&["part-1", "part-2"], Some(moved), false),
    );

    // Assert 1: refused, the batch stays open and the bookmark unchanged.
    assert_eq!(stream_error_kind(&outcome), "bookmark_regression");
    assert_eq!(stream.state, open);
    assert_eq!(stream.state.bookmark, v2);

    // Act 2: the same files without cdc_start keep the captured one.
    let v3 = stream.committed(&batch, load_commit(&["part-1", "part-2"], None, false));

    // Assert 2
    assert_eq!(v3.load.cdc_start, Some(start));
}

#[test]
fn a_load_commit_that_drops_a_file_already_done_is_refused_until_a_rewind() {
    // Arrange
    let mut stream = Stream::new();
    let (batch, _) = stream.opened("run-a", TTL);
    stream.committed(&batch, load_commit(&["part-1", "part-2"], None, false));
    let (batch, _) = stream.opened("run-a", TTL);

    // Act 1
    let dropped = stream.commit(&batch, load_commit(&["part-2", "part-3"], None, false));

    // Assert 1
    assert_eq!(stream_error_kind(&dropped), "bookmark_regression");
    assert_eq!(stream.state.bookmark.version, 2);

    // Act 2: the run fails its batch, the operator rewinds to the start and
    // the next batch may redo the load without part-1.
    assert!(stream.fail(&batch).result.is_ok());
    let rewound = stream.rewind(RewindTo::Version(1));
    assert_eq!(answered_bookmark(&rewound).version, 3);
    let (batch, _) = stream.opened("run-a", TTL);
    let redone = stream.committed(&batch, load_commit(&["part-2", "part-3"], None, false));

    // Assert 2
    assert_eq!(redone.load.files_done, ["part-2", "part-3"]);
    assert_eq!(redone.version, 4);
}

#[test]
fn a_delta_commit_that_drops_its_file_or_timestamp_is_refused_as_going_back() {
    // Arrange: in delta at a known CDC file.
    let mut stream = Stream::new();
    let (batch, _) = stream.opened("run-a", TTL);
    stream.committed(&batch, load_commit(&["part-1"], None, true));
    let (batch, _) = stream.opened("run-a", TTL);
    stream.committed(
        &batch,
        delta_commit(position("cdc-0009.csv", "2024-05-01T00:09:00Z")),
    );
    let before = stream.state.bookmark.clone();

    // Act: an empty position would mean "from the start" for the next run.
    let (batch, _) = stream.opened("run-a", TTL);
    let dropped = stream.commit(&batch, delta_commit(Position::default()));
    let mut no_file = position("cdc-0010.csv", "2024-05-01T00:10:00Z");
    no_file.file = None;
    let without_file = stream.commit(&batch, delta_commit(no_file));

    // Assert
    assert_eq!(stream_error_kind(&dropped), "bookmark_regression");
    assert_eq!(stream_error_kind(&without_file), "bookmark_regression");
    assert_eq!(stream.state.bookmark, before);
}
