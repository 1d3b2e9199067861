//! Checking a compaction against the snapshot log, and the run state
//! machine's retries, dead letters and Glue state mapping.

use sluice_core::scheduling::compaction::{verify, CompactionFailure, TOKEN_PROPERTY};
use sluice_core::scheduling::glue::{GlueRun, GlueState};
use sluice_core::scheduling::run::{NewRun, PollPolicy, RunId, RunState, Trigger};
use sluice_core::scheduling::Backoff;
use sluice_core::snapshots::Snapshot;
use sluice_core::Millis;

fn snap(id: i64, parent: Option<i64>, op: &str, token: Option<&str>) -> Snapshot {
    Snapshot {
        id,
        parent_id: parent,
        sequence_number: id,
        timestamp: Millis(id * 1000),
        operation: op.into(),
        summary: token
            .map(|t| [(TOKEN_PROPERTY.to_string(), t.to_string())].into())
            .unwrap_or_default(),
        expired_at: None,
    }
}

#[test]
fn a_rewrite_after_the_base_with_the_lease_token_is_the_result() {
    let log = vec![
        snap(1, None, "append", None),
        snap(2, Some(1), "append", None),
        snap(3, Some(2), "overwrite", Some("7")),
        snap(4, Some(3), "append", None), // ingestion went on meanwhile
    ];
    assert_eq!(verify(&log, Some(2), Some(4), 7), Ok(3));
    // `replace` counts too, and a rewrite without a token is accepted.
    let log = vec![
        snap(1, None, "append", None),
        snap(2, Some(1), "replace", None),
    ];
    assert_eq!(verify(&log, Some(1), Some(2), 7), Ok(2));
}

#[test]
fn no_rewrite_after_the_base_is_no_new_snapshot() {
    let log = vec![
        snap(1, None, "overwrite", Some("7")),
        snap(2, Some(1), "append", None),
    ];
    // The rewrite is the base itself (or before it): nothing new.
    assert_eq!(
        verify(&log, Some(1), Some(2), 7),
        Err(CompactionFailure::NoNewSnapshot)
    );
    assert_eq!(
        verify(&log, Some(2), Some(2), 7),
        Err(CompactionFailure::NoNewSnapshot)
    );
    // A rewrite on another line of history does not descend from the base.
    let log = vec![
        snap(1, None, "append", None),
        snap(2, Some(1), "append", None),
        snap(3, Some(1), "overwrite", Some("7")),
    ];
    assert_eq!(
        verify(&log, Some(2), Some(3), 7),
        Err(CompactionFailure::NoNewSnapshot)
    );
}

#[test]
fn a_rewrite_carrying_another_token_is_a_fence_mismatch() {
    let log = vec![
        snap(1, None, "append", None),
        snap(2, Some(1), "overwrite", Some("6")),
    ];
    assert_eq!(
        verify(&log, Some(1), Some(2), 7),
        Err(CompactionFailure::FenceMismatch)
    );
}

fn glue(state: GlueState) -> GlueRun {
    GlueRun {
        id: "jr_1".into(),
        state,
        started_on: Some(Millis(1_000)),
        completed_on: None,
        dpu_seconds: Some(12.5),
        error_message: (state == GlueState::Failed).then(|| "boom".into()),
        arguments: Default::default(),
    }
}

fn new_run(max_attempts: u32) -> sluice_core::scheduling::Run {
    NewRun {
        id: RunId(uuid::Uuid::nil()),
        job: "ingest".into(),
        glue_job_name: "glue-ingest".into(),
        trigger: Trigger::Manual,
        table: None,
        arguments: Default::default(),
        sluice_arguments: Default::default(),
        max_attempts,
        backoff: Backoff {
            initial_seconds: 10,
            max_seconds: 60,
        },
        timeout_seconds: 100,
        compaction_id: None,
    }
    .queue(Millis(0))
}

const POLL: PollPolicy = PollPolicy {
    min_ms: 1_000,
    max_ms: 8_000,
};

#[test]
fn failures_retry_with_growing_back_off_then_dead_letter() {
    let mut run = new_run(3);
    let mut now = Millis(0);
    let mut waits = Vec::new();
    for attempt in 1..=3 {
        run.begin_start(now).unwrap();
        assert_eq!(run.stamp(), format!("{}/{attempt}", run.id));
        run.started(&glue(GlueState::Running), now, POLL);
        assert_eq!(run.state, RunState::Running);
        let t = run
            .observed(&glue(GlueState::Failed), now, POLL, 0.0)
            .unwrap();
        assert_eq!(t.from, RunState::Running);
        if attempt < 3 {
            assert_eq!(run.state, RunState::Retrying);
            waits.push(run.due_at.0 - now.0);
            assert!(run.retry_due(Millis(run.due_at.0 - 1)).is_none());
            now = run.due_at;
            run.retry_due(now).unwrap();
            assert_eq!(run.state, RunState::Queued);
        }
    }
    assert_eq!(run.state, RunState::DeadLetter);
    assert_eq!(run.error.as_deref(), Some("boom"));
    assert_eq!(run.attempt, 3);
    // Equal jitter at 0: half the exponential wait (10 s, then 20 s).
    assert_eq!(waits, vec![5_000, 10_000]);
    // An operator retries: a fresh budget.
    run.retry(now).unwrap();
    assert_eq!((run.state, run.failures), (RunState::Queued, 0));
    run.begin_start(now).unwrap();
    assert_eq!(run.stamp(), format!("{}/4", run.id));
}

#[test]
fn back_off_is_capped_and_jitter_stays_in_the_upper_half() {
    let b = Backoff {
        initial_seconds: 10,
        max_seconds: 60,
    };
    for failures in 1..40 {
        for jitter in [0.0, 0.3, 0.999] {
            let d = b.delay_ms(failures, jitter);
            let exp = (10_000i64 << (failures - 1).min(30)).min(60_000);
            assert!(d >= exp / 2 && d <= exp, "{failures} {jitter} {d}");
        }
    }
}

#[test]
fn concurrent_runs_exceeded_queues_without_spending_an_attempt() {
    let mut run = new_run(1);
    run.begin_start(Millis(0)).unwrap();
    run.concurrent_runs_exceeded(Millis(0));
    assert_eq!(run.state, RunState::Queued);
    assert_eq!((run.attempt, run.failures), (0, 0));
    assert!(run.due_at > Millis(0));
}

#[test]
fn glue_states_map_as_glue_documents_them() {
    for (state, expect) in [
        (GlueState::Starting, RunState::Running),
        (GlueState::Waiting, RunState::Running),
        (GlueState::Running, RunState::Running),
        (GlueState::Stopping, RunState::Running),
        (GlueState::Succeeded, RunState::Succeeded),
        (GlueState::Failed, RunState::DeadLetter),
        (GlueState::Error, RunState::DeadLetter),
        (GlueState::Timeout, RunState::DeadLetter),
        (GlueState::Stopped, RunState::Cancelled),
    ] {
        let mut run = new_run(1);
        run.begin_start(Millis(0)).unwrap();
        run.started(&glue(GlueState::Running), Millis(0), POLL);
        run.observed(&glue(state), Millis(5), POLL, 0.0);
        assert_eq!(run.state, expect, "{state:?}");
        assert_eq!(run.dpu_seconds, Some(12.5));
    }
}

#[test]
fn polls_that_see_no_change_space_out_up_to_the_cap() {
    let mut run = new_run(1);
    run.begin_start(Millis(0)).unwrap();
    run.started(&glue(GlueState::Running), Millis(0), POLL);
    let mut waits = Vec::new();
    for i in 0..6 {
        let now = Millis(i * 100_000);
        run.observed(&glue(GlueState::Running), now, POLL, 0.0);
        waits.push(run.due_at.0 - now.0);
    }
    assert_eq!(waits, vec![2_000, 4_000, 8_000, 8_000, 8_000, 8_000]);
}

#[test]
fn a_run_past_its_timeout_fails_and_only_dead_letters_can_be_retried() {
    let mut run = new_run(2);
    run.begin_start(Millis(0)).unwrap();
    run.started(&glue(GlueState::Running), Millis(1_000), POLL);
    assert!(!run.timed_out(Millis(100_000)));
    assert!(run.timed_out(Millis(101_001)));
    run.stopped_for_timeout(Millis(101_001), 0.0);
    assert_eq!(run.state, RunState::Retrying);
    assert!(run.error.as_deref().unwrap().contains("timed out"));
    // Glue then reports STOPPED: still the failure, not a cancel.
    assert!(run.retry(Millis(0)).is_err());
    assert!(run.discard(Millis(0)).is_err());
    run.cancel(Millis(1), false).unwrap();
    assert_eq!(run.state, RunState::Cancelled);
}

/// A fire while the job's scheduled run still waits queues no second run:
/// under `Once` the waiting run counts it (and what it stood for) as
/// missed; under `Skip`, and for a run not started by a schedule, nothing
/// changes.
#[test]
fn a_fire_behind_a_waiting_run_is_absorbed_by_it() {
    use sluice_core::scheduling::CatchUp;
    let mut run = new_run(1);
    run.trigger = Trigger::Schedule {
        fire_at: Millis(0),
        missed: 0,
    };
    assert!(run.absorb_fire(CatchUp::Once, 0));
    assert!(run.absorb_fire(CatchUp::Once, 3));
    assert_eq!(
        run.trigger,
        Trigger::Schedule {
            fire_at: Millis(0),
            missed: 4
        }
    );
    assert!(!run.absorb_fire(CatchUp::Skip, 1));
    let mut manual = new_run(1);
    assert!(!manual.absorb_fire(CatchUp::Once, 1));
    assert_eq!(manual.trigger, Trigger::Manual);
}
