//! Compaction requests through their write lease: ask for the lease when
//! due (a waiter under the lease rules: readers first, until the table's
//! `max_compaction_deferral`), start the table's compaction job the moment
//! it is granted, heartbeat the lease while the run lives, check the
//! result in the snapshot log, release the lease, and retry per the job's
//! policy (each attempt under a new lease).

use crate::{jitter, write, Context, Failure};
use sluice_core::leases::command::AcquireRequest;
use sluice_core::scheduling::compaction::{self, verify, CompactionFailure};
use sluice_core::scheduling::run;
use sluice_core::scheduling::{Compaction, CompactionState, RunState, Trigger};
use sluice_core::snapshots::{self, Cause};
use sluice_core::{LeaseCommand, LeaseId, LeaseState, Millis, Mode, RuleError, TableCommand};
use sluice_store::{ScheduleWrite, Versioned};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// The principal of compaction leases: sluice's own.
pub const PRINCIPAL: &str = "sluice:compaction";

/// When each compaction's lease was last heartbeated by this replica.
#[derive(Default)]
pub(crate) struct Beats(HashMap<uuid::Uuid, Instant>);

pub(crate) async fn advance(cx: &Context<'_>, beats: &mut Beats) -> Result<(), Failure> {
    let now = sluice_store::system_now();
    let active = cx.store.active_compactions(200).await?;
    beats
        .0
        .retain(|id, _| active.iter().any(|c| c.value.id == *id));
    for Versioned { value, version } in active {
        match value.state {
            CompactionState::Queued if value.not_before <= now => {
                acquire(cx, value, version, beats).await?
            }
            CompactionState::Waiting => waiting(cx, value, version, beats).await?,
            CompactionState::Running => running(cx, value, version, beats).await?,
            _ => {}
        }
    }
    Ok(())
}

fn actor() -> Option<String> {
    Some(PRINCIPAL.to_owned())
}

/// Write the compaction (and what goes with it) with its event.
async fn save(
    cx: &Context<'_>,
    c: Compaction,
    version: i64,
    from: CompactionState,
    mut w: ScheduleWrite,
) -> Result<bool, Failure> {
    let now = sluice_store::system_now();
    if c.state != from {
        // The compaction's change first: what it did to its run follows.
        w.events
            .insert(0, compaction::event(&c, Some(from), now, None));
    }
    w.compactions.push(Versioned { value: c, version });
    write(cx, w).await
}

async fn acquire(
    cx: &Context<'_>,
    mut c: Compaction,
    version: i64,
    beats: &mut Beats,
) -> Result<(), Failure> {
    let request = AcquireRequest {
        lease_id: LeaseId::new_v7(),
        mode: Mode::Write,
        holder: format!("compaction {}", c.id),
        ttl_seconds: cx.config.compaction_lease_ttl_seconds,
        // A retry after a crash before the write below finds its lease.
        idempotency_key: Some(format!("compaction:{}:{}", c.id, c.lease_requests)),
        purpose: Some(format!("compaction {}", c.id)),
        pin_snapshot_id: None,
        max_waiters: 10_000,
    };
    let command = LeaseCommand::Acquire {
        table: c.table.clone(),
        request,
    };
    let from = c.state;
    match cx.store.lease_command(command, actor()).await? {
        Ok(reply) => match reply.lease.state {
            LeaseState::Granted => {
                c.lease_id = Some(reply.lease.id);
                c.token = reply.lease.token;
                beats.0.insert(c.id, Instant::now());
                granted(cx, c, version, from).await
            }
            LeaseState::Waiting => {
                c.lease_id = Some(reply.lease.id);
                c.state = CompactionState::Waiting;
                c.updated_at = sluice_store::system_now();
                beats.0.insert(c.id, Instant::now());
                save(cx, c, version, from, ScheduleWrite::default())
                    .await
                    .map(|_| ())
            }
            // The key's lease ended before it was recorded: ask anew.
            _ => {
                c.lease_requests += 1;
                save(cx, c, version, from, ScheduleWrite::default())
                    .await
                    .map(|_| ())
            }
        },
        Err(error) => {
            tracing::warn!(compaction = %c.id, %error, "write lease refused; asking again shortly");
            c.not_before = Millis(sluice_store::system_now().0 + 10_000);
            c.error = Some(error.to_string());
            save(cx, c, version, from, ScheduleWrite::default())
                .await
                .map(|_| ())
        }
    }
}

async fn waiting(
    cx: &Context<'_>,
    mut c: Compaction,
    version: i64,
    beats: &mut Beats,
) -> Result<(), Failure> {
    let Some(lease_id) = c.lease_id else {
        return Ok(());
    };
    let from = c.state;
    let view = cx.store.lease(lease_id).await?;
    match view.map(|v| v.lease) {
        Some(lease) if lease.state == LeaseState::Granted => {
            c.token = lease.token;
            // Heartbeat first: the TTL counts from the grant's discovery,
            // and a lease revoked meanwhile starts nothing.
            if let Err(error) = heartbeat(cx, &c, beats, true).await? {
                tracing::warn!(compaction = %c.id, %error, "write lease gone as it was granted");
                end_lease(&mut c, true, Some(error.to_string()));
                return save(cx, c, version, from, ScheduleWrite::default())
                    .await
                    .map(|_| ());
            }
            granted(cx, c, version, from).await
        }
        Some(lease) if lease.state == LeaseState::Waiting => {
            // Waiters heartbeat too, or they leave the queue.
            heartbeat(cx, &c, beats, false).await.map(|_| ())
        }
        Some(lease) => {
            let revoked = lease.state == LeaseState::Revoked;
            end_lease(&mut c, revoked, lease.end_reason);
            save(cx, c, version, from, ScheduleWrite::default())
                .await
                .map(|_| ())
        }
        None => Ok(()),
    }
}

/// The lease ended while waiting: revoked by an operator fails the
/// compaction; expired (no leader heartbeated it) asks again.
fn end_lease(c: &mut Compaction, revoked: bool, reason: Option<String>) {
    let now = sluice_store::system_now();
    c.updated_at = now;
    c.lease_id = None;
    c.token = None;
    c.lease_requests += 1;
    if revoked {
        c.state = CompactionState::Failed;
        c.failure = Some(CompactionFailure::LeaseLost);
        c.error = Some(format!(
            "its write lease was revoked{}",
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        ));
        c.ended_at = Some(now);
    } else {
        c.state = CompactionState::Queued;
    }
}

/// Heartbeat the compaction's lease when a third of its TTL has passed
/// (or `now`); `Err(RuleError)` when the lease is gone.
async fn heartbeat(
    cx: &Context<'_>,
    c: &Compaction,
    beats: &mut Beats,
    force: bool,
) -> Result<Result<(), RuleError>, Failure> {
    let every =
        std::time::Duration::from_secs(u64::from(cx.config.compaction_lease_ttl_seconds) / 3);
    let due = beats.0.get(&c.id).is_none_or(|b| b.elapsed() >= every);
    let Some(lease_id) = c.lease_id else {
        return Ok(Ok(()));
    };
    if !(force || due) {
        return Ok(Ok(()));
    }
    let command = LeaseCommand::Heartbeat {
        lease_id,
        token: c.token,
        ttl_seconds: None,
    };
    let answer = cx.store.lease_command(command, actor()).await?;
    if answer.is_ok() {
        beats.0.insert(c.id, Instant::now());
    }
    Ok(answer.map(|_| ()))
}

/// The write lease is granted: start the compaction job under it.
async fn granted(
    cx: &Context<'_>,
    mut c: Compaction,
    version: i64,
    from: CompactionState,
) -> Result<(), Failure> {
    let now = sluice_store::system_now();
    // The base is the table's current snapshot as its catalog says now.
    if let Err(error) = cx
        .store
        .refresh_snapshots(cx.catalogs, &c.table, Some(PRINCIPAL), Cause::OnDemand)
        .await
    {
        tracing::warn!(compaction = %c.id, %error, "snapshot refresh before compaction failed; using the log as it is");
    }
    let current = cx
        .store
        .catalog_state(&c.table)
        .await?
        .and_then(|s| s.current_snapshot_id);
    let live = match cx
        .store
        .table(
            TableCommand::Sweep {
                table: c.table.clone(),
            },
            None,
        )
        .await?
    {
        Ok(reply) => reply.state.live,
        Err(_) => Vec::new(),
    };
    let log = cx.store.snapshot_log(&c.table).await?;
    // Live copies keep what they applied last: the job's expiry keeps it.
    let mut readers = snapshots::readers(&live);
    readers.extend(cx.store.follower_readers(&c.table).await?);
    let horizon = snapshots::retention(&log, current, &readers, now).safe_older_than;
    let Some(job) = cx.store.job(&c.job).await? else {
        c.state = CompactionState::Failed;
        c.failure = Some(CompactionFailure::RunFailed);
        c.error = Some(format!("compaction job `{}` is not defined", c.job));
        c.ended_at = Some(now);
        release(cx, &c).await?;
        return save(cx, c, version, from, ScheduleWrite::default())
            .await
            .map(|_| ());
    };
    let (lease_id, token) = (c.lease_id.expect("granted"), c.token.unwrap_or_default());
    let mut sluice_args = BTreeMap::from([
        ("--sluice-lease-id".to_owned(), lease_id.to_string()),
        ("--sluice-token".to_owned(), token.to_string()),
        ("--sluice-table".to_owned(), c.table.to_string()),
    ]);
    if let Some(base) = current {
        sluice_args.insert("--sluice-base-snapshot-id".into(), base.to_string());
    }
    if let Some(h) = horizon {
        sluice_args.insert("--sluice-expire-older-than".into(), h.to_rfc3339());
    }
    let lease = Some((lease_id.to_string(), token.to_string()));
    let trigger = Trigger::Compaction {
        compaction_id: c.id,
    };
    let r = match crate::ops::new_run(
        &job,
        trigger,
        &BTreeMap::new(),
        lease,
        sluice_args,
        Some(c.table.clone()),
        now,
    ) {
        Ok(r) => r,
        Err(error) => {
            c.state = CompactionState::Failed;
            c.failure = Some(CompactionFailure::RunFailed);
            c.error = Some(error);
            c.ended_at = Some(now);
            release(cx, &c).await?;
            return save(cx, c, version, from, ScheduleWrite::default())
                .await
                .map(|_| ());
        }
    };
    c.state = CompactionState::Running;
    c.base_snapshot_id = current;
    c.runs.push(r.id);
    c.error = None;
    c.updated_at = now;
    let w = ScheduleWrite {
        events: vec![run::event(&r, None, now, None)],
        runs: vec![Versioned {
            value: r,
            version: 0,
        }],
        ..Default::default()
    };
    save(cx, c, version, from, w).await.map(|_| ())
}

async fn release(cx: &Context<'_>, c: &Compaction) -> Result<(), Failure> {
    if let Some(lease_id) = c.lease_id {
        let command = LeaseCommand::Release {
            lease_id,
            token: c.token,
        };
        // A lease that ended already (expired, revoked) needs no release.
        let _ = cx.store.lease_command(command, actor()).await?;
    }
    Ok(())
}

async fn running(
    cx: &Context<'_>,
    mut c: Compaction,
    version: i64,
    beats: &mut Beats,
) -> Result<(), Failure> {
    let from = c.state;
    let Some(run_id) = c.runs.last().copied() else {
        return Ok(());
    };
    let Some(Versioned {
        value: mut r,
        version: run_version,
    }) = cx.store.run(run_id).await?
    else {
        return Ok(());
    };
    let now = sluice_store::system_now();
    if !r.state.is_final() && r.state != RunState::DeadLetter {
        // The run lives: keep its lease alive.
        if let Err(error) = heartbeat(cx, &c, beats, false).await? {
            tracing::warn!(compaction = %c.id, %error, "compaction lease lost while its run lives");
            c.state = CompactionState::Failed;
            c.failure = Some(CompactionFailure::LeaseLost);
            c.error = Some(format!("its write lease is gone: {error}"));
            c.ended_at = Some(now);
            c.updated_at = now;
            let mut w = ScheduleWrite::default();
            // Stop what runs without a lease (the leader's next tick).
            if r.state.occupies_slot() {
                r.cancel_requested = true;
            } else if let Ok(t) = r.cancel(now, false) {
                w.events.push(run::event(&r, Some(t.from), now, None));
            }
            w.runs.push(Versioned {
                value: r,
                version: run_version,
            });
            return save(cx, c, version, from, w).await.map(|_| ());
        }
        return Ok(());
    }
    let mut w = ScheduleWrite::default();
    if r.state == RunState::Succeeded {
        if let Err(error) = cx
            .store
            .refresh_snapshots(cx.catalogs, &c.table, Some(PRINCIPAL), Cause::OnDemand)
            .await
        {
            // Checking needs the catalog: keep the lease and look again.
            tracing::warn!(compaction = %c.id, %error, "cannot read the table to check the compaction; retrying");
            let _ = heartbeat(cx, &c, beats, false).await?;
            return Ok(());
        }
        let current = cx
            .store
            .catalog_state(&c.table)
            .await?
            .and_then(|s| s.current_snapshot_id);
        let log = cx.store.snapshot_log(&c.table).await?;
        match verify(
            &log,
            c.base_snapshot_id,
            current,
            c.token.unwrap_or_default(),
        ) {
            Ok(result) => {
                c.state = CompactionState::Succeeded;
                c.result_snapshot_id = Some(result);
                c.error = None;
            }
            Err(failure) => {
                c.state = CompactionState::Failed;
                c.failure = Some(failure);
                c.error = Some(match failure {
                    CompactionFailure::FenceMismatch => format!(
                        "a rewrite after snapshot {:?} carries another lease's token than {:?}",
                        c.base_snapshot_id, c.token
                    ),
                    _ => format!(
                        "the job succeeded but no replace or overwrite snapshot descends from snapshot {:?}",
                        c.base_snapshot_id
                    ),
                });
            }
        }
        c.ended_at = Some(now);
    } else {
        // Failed in Glue (dead-lettered: a compaction run has one attempt),
        // or cancelled: retry under a new lease, or give up.
        c.failures += 1;
        c.error = r
            .error
            .clone()
            .or_else(|| Some(format!("run {} ended {}", r.id, r.state.as_str())));
        if r.state == RunState::DeadLetter {
            if let Ok(t) = r.discard(now) {
                w.events.push(run::event(&r, Some(t.from), now, None));
                w.runs.push(Versioned {
                    value: r.clone(),
                    version: run_version,
                });
            }
        }
        if c.failures < c.max_attempts && r.state != RunState::Cancelled {
            let backoff = cx.store.job(&c.job).await?.map(|j| j.spec.backoff);
            let delay = backoff.map_or(60_000, |b| b.delay_ms(c.failures, jitter()));
            c.state = CompactionState::Queued;
            c.not_before = Millis(now.0 + delay);
        } else {
            c.state = CompactionState::Failed;
            c.failure = Some(CompactionFailure::RunFailed);
            c.ended_at = Some(now);
        }
    }
    // Released either way: waiting readers are granted.
    release(cx, &c).await?;
    if c.state == CompactionState::Queued {
        // The next attempt asks for a new lease; a final compaction keeps
        // the id and token of the lease it ran under, for the record.
        c.lease_id = None;
        c.token = None;
        c.lease_requests += 1;
    }
    c.updated_at = now;
    save(cx, c, version, from, w).await.map(|_| ())
}
